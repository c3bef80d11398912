//! Exchange and queue names and their declarations, identical in every process so that declaring
//! is idempotent (RabbitMQ refuses a redeclaration with different arguments).
//!
//! ```text
//! {prefix}.events (direct) ──"event"──▶ {prefix}.events (quorum queue)
//!        │ rejected, or delivered more than `delivery_limit` times
//!        ▼
//! {prefix}.dead-letter (fanout) ──▶ {prefix}.dead-letter (quorum queue)
//! ```

use lapin::{
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
    Channel, ExchangeKind,
};

/// How many times a message is delivered before it is dead-lettered. High enough that crashes
/// and restarts of workers never dead-letter a healthy message (each one costs one delivery);
/// low enough that a poison message leaves the queue within seconds.
pub const DELIVERY_LIMIT: i64 = 20;

/// Routing key every event is published with.
pub const ROUTING_KEY: &str = "event";

/// The names of every exchange and queue, derived from `AMQP_PREFIX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Exchange the receiver publishes to.
    pub exchange: String,
    /// Queue the workers consume.
    pub queue: String,
    /// Exchange dead letters are routed through.
    pub dead_letter_exchange: String,
    /// Queue holding dead letters until an operator inspects or replays them.
    pub dead_letter_queue: String,
}

impl Topology {
    /// Names for `prefix` (`blitz` → `blitz.events`, `blitz.dead-letter`).
    pub fn new(prefix: &str) -> Self {
        Self {
            exchange: format!("{prefix}.events"),
            queue: format!("{prefix}.events"),
            dead_letter_exchange: format!("{prefix}.dead-letter"),
            dead_letter_queue: format!("{prefix}.dead-letter"),
        }
    }

    /// Declares everything (idempotent). Both binaries call it at start and after every reconnect,
    /// so whichever starts first (or a broker that lost its definitions) gets a working topology.
    pub async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        // Durable exchanges survive a broker restart; publishers never see "no exchange".
        let durable_exchange = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        // Direct: one routing key today, room for per-event-type queues later.
        channel
            .exchange_declare(
                self.exchange.as_str().into(),
                ExchangeKind::Direct,
                durable_exchange,
                FieldTable::default(),
            )
            .await?;
        // Fanout: every dead letter lands in the one dead-letter queue whatever its routing key.
        channel
            .exchange_declare(
                self.dead_letter_exchange.as_str().into(),
                ExchangeKind::Fanout,
                durable_exchange,
                FieldTable::default(),
            )
            .await?;

        // Quorum queues must be durable (and are: replicated Raft logs, fsynced before confirm).
        let durable_queue = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };

        let mut events_args = FieldTable::default();
        // Quorum: replicated and fsynced, the queue type RabbitMQ recommends for data safety, and
        // the only one with a delivery limit (poison-message handling).
        insert_str(&mut events_args, "x-queue-type", "quorum");
        // After this many deliveries a message is dead-lettered instead of redelivered forever.
        events_args.insert(
            ShortString::from("x-delivery-limit"),
            AMQPValue::LongLongInt(DELIVERY_LIMIT),
        );
        // Where rejected and over-delivered messages go.
        insert_str(
            &mut events_args,
            "x-dead-letter-exchange",
            &self.dead_letter_exchange,
        );
        // At-least-once dead-lettering (RabbitMQ ≥ 3.10): the message leaves this queue only once
        // the dead-letter queue has confirmed it, so dead-lettering can never lose an event.
        insert_str(&mut events_args, "x-dead-letter-strategy", "at-least-once");
        // Required by at-least-once dead-lettering; also means a length limit, if an operator sets
        // one by policy, refuses new publishes (the receiver answers 503) instead of dropping old ones.
        insert_str(&mut events_args, "x-overflow", "reject-publish");
        channel
            .queue_declare(self.queue.as_str().into(), durable_queue, events_args)
            .await?;
        channel
            .queue_bind(
                self.queue.as_str().into(),
                self.exchange.as_str().into(),
                ROUTING_KEY.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;

        let mut dead_letter_args = FieldTable::default();
        // Quorum for the same durability as the main queue: a dead letter is still an event we owe.
        insert_str(&mut dead_letter_args, "x-queue-type", "quorum");
        channel
            .queue_declare(
                self.dead_letter_queue.as_str().into(),
                durable_queue,
                dead_letter_args,
            )
            .await?;
        channel
            .queue_bind(
                self.dead_letter_queue.as_str().into(),
                self.dead_letter_exchange.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(())
    }

    /// Deletes both queues and exchanges (tests clean up after themselves with this).
    pub async fn delete(&self, channel: &Channel) -> lapin::Result<()> {
        for queue in [&self.queue, &self.dead_letter_queue] {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await?;
        }
        for exchange in [&self.exchange, &self.dead_letter_exchange] {
            channel
                .exchange_delete(exchange.as_str().into(), Default::default())
                .await?;
        }
        Ok(())
    }
}

fn insert_str(table: &mut FieldTable, key: &str, value: &str) {
    table.insert(
        ShortString::from(key),
        AMQPValue::LongString(LongString::from(value)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix() {
        let topology = Topology::new("t42");
        assert_eq!(topology.exchange, "t42.events");
        assert_eq!(topology.queue, "t42.events");
        assert_eq!(topology.dead_letter_queue, "t42.dead-letter");
    }
}
