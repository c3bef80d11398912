//! Exchange and queue names and their declarations, identical in every process so that declaring
//! is idempotent (RabbitMQ refuses a redeclaration with different arguments).
//!
//! ```text
//! {prefix}.events (direct) ──"event"──▶ {prefix}.events (quorum queue)
//!        │ rejected, or delivered more than `delivery_limit` times
//!        ▼
//! {prefix}.dead-letter (fanout) ──▶ {prefix}.dead-letter (quorum queue)
//! ```
//!
//! The services call [`Topology::ensure`]: everything is declared (idempotent, nothing
//! destructive), and a queue that already exists with other arguments is used as it is. A
//! queue's arguments are fixed when it is created and RabbitMQ refuses a redeclaration with
//! different ones, so a process with another node list (and so another default group size), or
//! a queue created by an older version before an argument was added, must not turn into a
//! process that can never connect.

use lapin::{
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
    Channel, Connection, ExchangeKind,
};

use crate::{amqp::nodes::Nodes, config::CommonConfig};

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
    /// Replicas of each quorum queue when it is created (`x-quorum-initial-group-size`); `None`
    /// leaves it to the broker (every cluster node in RabbitMQ 3.x).
    pub quorum_group_size: Option<u32>,
}

impl Topology {
    /// Names for `prefix` (`blitz` → `blitz.events`, `blitz.dead-letter`).
    pub fn new(prefix: &str) -> Self {
        Self {
            exchange: format!("{prefix}.events"),
            queue: format!("{prefix}.events"),
            dead_letter_exchange: format!("{prefix}.dead-letter"),
            dead_letter_queue: format!("{prefix}.dead-letter"),
            quorum_group_size: None,
        }
    }

    /// The services' topology: names from `AMQP_PREFIX`, quorum group size from
    /// `AMQP_QUORUM_GROUP_SIZE`, else one replica per node listed in `AMQP_URL`, at most 3.
    pub fn for_config(config: &CommonConfig) -> Self {
        let listed =
            Nodes::parse(&config.amqp_url).map_or(1, |nodes| nodes.default_quorum_group_size());
        let size = config
            .amqp_quorum_group_size
            .filter(|size| *size > 0)
            .unwrap_or(listed);
        Self::new(&config.amqp_prefix).with_quorum_group_size(size)
    }

    /// The same names, with queues created with `size` replicas.
    pub fn with_quorum_group_size(mut self, size: u32) -> Self {
        self.quorum_group_size = Some(size.max(1));
        self
    }

    /// Makes sure everything exists without ever redeclaring an existing queue (see the module
    /// documentation). Runs on a channel of its own, closed before returning, because a failed
    /// passive declare closes its channel. Both services call it at start and after every
    /// reconnect, so a broker that lost its definitions still gets a working topology.
    pub async fn ensure(&self, connection: &Connection) -> lapin::Result<()> {
        let channel = connection.create_channel().await?;
        self.declare_exchanges(&channel).await?;
        let mut channel = channel;
        for (queue, arguments) in [
            (&self.queue, self.events_arguments()),
            (&self.dead_letter_queue, self.dead_letter_arguments()),
        ] {
            channel = ensure_queue(connection, channel, queue, arguments).await?;
        }
        self.bind(&channel).await?;
        let _ = channel.close(200, "topology ensured".into()).await;
        Ok(())
    }

    /// Declares everything on `channel`, queues included, with their arguments. For fresh
    /// prefixes (tests, the benchmark); the services use [`Topology::ensure`].
    pub async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        self.declare_exchanges(channel).await?;
        channel
            .queue_declare(
                self.queue.as_str().into(),
                durable_queue(),
                self.events_arguments(),
            )
            .await?;
        channel
            .queue_declare(
                self.dead_letter_queue.as_str().into(),
                durable_queue(),
                self.dead_letter_arguments(),
            )
            .await?;
        self.bind(channel).await
    }

    async fn declare_exchanges(&self, channel: &Channel) -> lapin::Result<()> {
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
            .await
    }

    /// The events queue's arguments.
    fn events_arguments(&self) -> FieldTable {
        let mut events_args = FieldTable::default();
        // Quorum: replicated and fsynced, the queue type RabbitMQ recommends for data safety, and
        // the only one with a delivery limit (poison-message handling).
        insert_str(&mut events_args, "x-queue-type", "quorum");
        self.insert_group_size(&mut events_args);
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
        events_args
    }

    /// The dead-letter queue's arguments.
    fn dead_letter_arguments(&self) -> FieldTable {
        let mut dead_letter_args = FieldTable::default();
        // Quorum for the same durability as the main queue: a dead letter is still an event we owe.
        insert_str(&mut dead_letter_args, "x-queue-type", "quorum");
        self.insert_group_size(&mut dead_letter_args);
        dead_letter_args
    }

    /// Replicas at creation: with 3 a quorum queue keeps accepting (and confirming) with one
    /// node down; confirms wait for a majority of them.
    fn insert_group_size(&self, arguments: &mut FieldTable) {
        if let Some(size) = self.quorum_group_size {
            arguments.insert(
                ShortString::from("x-quorum-initial-group-size"),
                AMQPValue::LongLongInt(i64::from(size)),
            );
        }
    }

    async fn bind(&self, channel: &Channel) -> lapin::Result<()> {
        channel
            .queue_bind(
                self.queue.as_str().into(),
                self.exchange.as_str().into(),
                ROUTING_KEY.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
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

/// Quorum queues must be durable (and are: replicated Raft logs, fsynced before confirm).
fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

/// Declares `queue` with `arguments` (creating it, or confirming an identical existing one) and
/// returns a usable channel. An existing queue with other arguments (declared by an older
/// version, or by a process with another node list and so another group size) is refused by
/// the broker with `406 PRECONDITION_FAILED`, which closes the channel: it is then checked
/// passively on a new channel and used as it is, with a warning, instead of failing forever.
async fn ensure_queue(
    connection: &Connection,
    channel: Channel,
    queue: &str,
    arguments: FieldTable,
) -> lapin::Result<Channel> {
    match channel
        .queue_declare(queue.into(), durable_queue(), arguments)
        .await
    {
        Ok(_) => Ok(channel),
        Err(error) if super::is_precondition_failed(&error) => {
            tracing::warn!(
                queue,
                %error,
                "the queue exists with other arguments; using it as it is (change them with a \
                 policy, see docs/operations.md)"
            );
            let channel = connection.create_channel().await?;
            super::inspect(&channel, queue).await?;
            Ok(channel)
        }
        Err(error) => Err(error),
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
        assert_eq!(topology.quorum_group_size, None);
    }

    fn group_size(arguments: &FieldTable) -> Option<i64> {
        match arguments.inner().get("x-quorum-initial-group-size") {
            Some(AMQPValue::LongLongInt(size)) => Some(*size),
            _ => None,
        }
    }

    #[test]
    fn group_size_defaults_to_the_listed_nodes_up_to_three() {
        let config = |url: &str, size: Option<u32>| CommonConfig {
            database_url: String::new(),
            amqp_url: url.into(),
            amqp_prefix: "p".into(),
            amqp_quorum_group_size: size,
            log_format: crate::telemetry::LogFormat::Pretty,
        };
        let single = Topology::for_config(&config("amqp://h:5672", None));
        assert_eq!(single.quorum_group_size, Some(1));
        let three = "amqp://a:1,amqp://b:2,amqp://c:3";
        assert_eq!(
            Topology::for_config(&config(three, None)).quorum_group_size,
            Some(3)
        );
        let five = "amqp://a:1,amqp://b:2,amqp://c:3,amqp://d:4,amqp://e:5";
        let topology = Topology::for_config(&config(five, None));
        assert_eq!(topology.quorum_group_size, Some(3));
        assert_eq!(group_size(&topology.events_arguments()), Some(3));
        assert_eq!(group_size(&topology.dead_letter_arguments()), Some(3));
        // Configured explicitly; 0 means "the default".
        assert_eq!(
            Topology::for_config(&config(five, Some(5))).quorum_group_size,
            Some(5)
        );
        assert_eq!(
            Topology::for_config(&config(five, Some(0))).quorum_group_size,
            Some(3)
        );
        // Without a size (tests, the benchmark) the argument is not sent at all.
        assert_eq!(group_size(&Topology::new("p").events_arguments()), None);
    }
}
