//! Operator tools for the dead-letter queue: count, inspect and replay dead letters
//! (`worker dlq count|list|replay`).
//!
//! A dead letter is an event we still owe someone: a message the worker could not process
//! (undecodable, unknown schema version, a contest that did not exist yet) or one delivered more
//! than the delivery limit. Once the cause is fixed (the contest created, a newer worker
//! deployed), replay moves the dead letters back to the events exchange. Replay is
//! at-least-once: each dead letter is removed from the dead-letter queue only after the broker
//! has confirmed its republished copy, so a crash mid-replay loses nothing; at worst a message
//! is republished twice, which awarding makes harmless. A message that still cannot be
//! processed simply dies again.
//!
//! The commands only look: the queues and the exchange are checked passively, never declared,
//! so a mistyped `AMQP_PREFIX` is "no such queue" (and a non-zero exit) rather than a freshly
//! created, empty queue that says `0`.

use std::fmt;

use lapin::{
    options::{
        BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
        ExchangeDeclareOptions,
    },
    types::{AMQPValue, FieldTable, ShortString},
    BasicProperties, Channel, Confirmation, Connection,
};
use shared::amqp::{topology::ROUTING_KEY, Topology};

/// Dead letters republished per round trip: their confirms are awaited together, each dead
/// letter is acked after its own confirm.
const REPLAY_WINDOW: usize = 100;

/// Header counting how often a message was replayed from the dead-letter queue.
pub const REPLAY_COUNT_HEADER: &str = "blitz-replay-count";

/// Why a dead letter died, from the most recent entry of its `x-death` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Death {
    /// `rejected` (the worker gave up on it), `delivery_limit`, `expired` or `maxlen`.
    pub reason: String,
    /// The queue it died in.
    pub queue: String,
    /// How many times it died there for this reason.
    pub count: i64,
    /// When (seconds since the epoch), if the broker said.
    pub time: Option<u64>,
}

/// One dead letter, as `list` shows it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The AMQP `message_id` (the purchase id for purchase events).
    pub message_id: Option<String>,
    /// The AMQP `type` (`purchase`).
    pub kind: Option<String>,
    /// Why it died, if the broker recorded it.
    pub death: Option<Death>,
    /// How often it has been replayed already.
    pub replays: i64,
    /// The message body.
    pub body: Vec<u8>,
}

impl DeadLetter {
    fn from_parts(properties: &BasicProperties, body: Vec<u8>) -> Self {
        let headers = properties.headers().as_ref();
        Self {
            message_id: properties.message_id().as_ref().map(|s| s.to_string()),
            kind: properties.kind().as_ref().map(|s| s.to_string()),
            death: headers.and_then(latest_death),
            replays: headers.map_or(0, replay_count),
            body,
        }
    }

    /// The body as text, cut after `max_chars` characters, on one line.
    pub fn body_preview(&self, max_chars: usize) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let mut preview: String = text
            .chars()
            .take(max_chars)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if text.chars().count() > max_chars {
            preview.push('…');
        }
        preview
    }
}

impl fmt::Display for DeadLetter {
    /// `id=… type=… reason=… queue=… deaths=… replays=… body=…` (body cut at 200 characters).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (reason, queue, count) = self.death.as_ref().map_or(("unknown", "-", 0), |d| {
            (d.reason.as_str(), d.queue.as_str(), d.count)
        });
        write!(
            f,
            "id={} type={} reason={reason} queue={queue} deaths={count} replays={} body={}",
            self.message_id.as_deref().unwrap_or("-"),
            self.kind.as_deref().unwrap_or("-"),
            self.replays,
            self.body_preview(200)
        )
    }
}

/// Why a dead-letter command could not look at the queue.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// The queue does not exist (wrong `AMQP_PREFIX`, or no service ever started on it).
    #[error("no such queue: {0} (is AMQP_PREFIX right?)")]
    NoSuchQueue(String),
    /// The exchange replays go to does not exist.
    #[error("no such exchange: {0} (is AMQP_PREFIX right?)")]
    NoSuchExchange(String),
    /// Any other broker failure.
    #[error("broker error: {0}")]
    Amqp(#[from] lapin::Error),
}

/// Why a replay stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The queues or the exchange are not there; nothing was touched.
    #[error(transparent)]
    Missing(DlqError),
    /// The broker failed; dead letters not yet confirmed stay in the dead-letter queue.
    #[error("broker error after {replayed} replayed: {source}")]
    Amqp {
        /// Dead letters moved before the failure.
        replayed: usize,
        /// The failure.
        source: lapin::Error,
    },
    /// The broker refused a republish (nack, or unroutable); that dead letter was put back.
    #[error("the broker refused a republished message after {replayed} replayed")]
    Refused {
        /// Dead letters moved before the refusal.
        replayed: usize,
    },
}

/// Dead letters waiting (ready) in the dead-letter queue.
pub async fn count(connection: &Connection, topology: &Topology) -> Result<u32, DlqError> {
    let channel = open(connection, topology).await?;
    let count = ready(&channel, &topology.dead_letter_queue).await;
    let _ = channel.close(200, "counted".into()).await;
    Ok(count?)
}

/// Up to `limit` dead letters, oldest first, left in the queue: they are fetched unacked and
/// returned when the channel closes.
pub async fn list(
    connection: &Connection,
    topology: &Topology,
    limit: usize,
) -> Result<Vec<DeadLetter>, DlqError> {
    let channel = open(connection, topology).await?;
    let mut letters = Vec::new();
    while letters.len() < limit {
        let Some(message) = channel
            .basic_get(
                topology.dead_letter_queue.as_str().into(),
                BasicGetOptions { no_ack: false },
            )
            .await?
        else {
            break;
        };
        let delivery = message.delivery;
        letters.push(DeadLetter::from_parts(&delivery.properties, delivery.data));
    }
    // Closing the channel returns every unacked message to the queue. Not an explicit
    // nack-requeue: RabbitMQ 4 counts those as failed deliveries toward a delivery limit.
    let _ = channel.close(200, "listed".into()).await;
    Ok(letters)
}

/// Moves up to `limit` dead letters back to the events exchange and returns how many moved.
///
/// Only the dead letters present when the replay starts are taken, so a message that dies again
/// while the replay runs is not replayed in a loop. Each one is acked from the dead-letter queue
/// only after the broker confirmed its republished copy.
pub async fn replay(
    connection: &Connection,
    topology: &Topology,
    limit: usize,
) -> Result<usize, ReplayError> {
    let mut replayed = 0;
    let amqp = |replayed| move |source| ReplayError::Amqp { replayed, source };
    let source = open(connection, topology)
        .await
        .map_err(ReplayError::Missing)?;
    exchange_exists(connection, &topology.exchange)
        .await
        .map_err(ReplayError::Missing)?;
    let target = connection.create_channel().await.map_err(amqp(0))?;
    target
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(amqp(0))?;
    let waiting = ready(&source, &topology.dead_letter_queue)
        .await
        .map_err(amqp(0))?;
    let budget = limit.min(usize::try_from(waiting).unwrap_or(usize::MAX));

    while replayed < budget {
        let mut window = Vec::new();
        while window.len() < REPLAY_WINDOW && replayed + window.len() < budget {
            match source
                .basic_get(
                    topology.dead_letter_queue.as_str().into(),
                    BasicGetOptions { no_ack: false },
                )
                .await
                .map_err(amqp(replayed))?
            {
                Some(message) => window.push(message.delivery),
                None => break,
            }
        }
        if window.is_empty() {
            break;
        }
        let mut confirms = Vec::with_capacity(window.len());
        for delivery in &window {
            let confirm = target
                .basic_publish(
                    topology.exchange.as_str().into(),
                    ROUTING_KEY.into(),
                    // mandatory: an unroutable copy comes back and its dead letter stays.
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &delivery.data,
                    replay_properties(&delivery.properties),
                )
                .await
                .map_err(amqp(replayed))?;
            confirms.push(confirm);
        }
        for (delivery, confirm) in window.iter().zip(confirms) {
            match confirm.await.map_err(amqp(replayed))? {
                Confirmation::Ack(None) => {
                    source
                        .basic_ack(delivery.delivery_tag, BasicAckOptions::default())
                        .await
                        .map_err(amqp(replayed))?;
                    replayed += 1;
                }
                _ => {
                    // Closing the channel below returns this and every later one of the window.
                    let _ = source.close(200, "replay refused".into()).await;
                    return Err(ReplayError::Refused { replayed });
                }
            }
        }
    }
    let _ = source.close(200, "replayed".into()).await;
    let _ = target.close(200, "replayed".into()).await;
    Ok(replayed)
}

/// A channel on which the dead-letter queue was found to exist (passive declare: nothing is
/// created).
async fn open(connection: &Connection, topology: &Topology) -> Result<Channel, DlqError> {
    let probe = connection.create_channel().await?;
    match shared::amqp::inspect(&probe, &topology.dead_letter_queue).await {
        Ok(_) => Ok(probe),
        // The failed passive declare closed the probe channel.
        Err(error) if shared::amqp::is_not_found(&error) => {
            Err(DlqError::NoSuchQueue(topology.dead_letter_queue.clone()))
        }
        Err(error) => Err(error.into()),
    }
}

/// Checks passively that `exchange` exists.
async fn exchange_exists(connection: &Connection, exchange: &str) -> Result<(), DlqError> {
    let probe = connection.create_channel().await?;
    let passive = ExchangeDeclareOptions {
        passive: true,
        ..ExchangeDeclareOptions::default()
    };
    match probe
        .exchange_declare(
            exchange.into(),
            lapin::ExchangeKind::Direct,
            passive,
            FieldTable::default(),
        )
        .await
    {
        Ok(()) => {
            let _ = probe.close(200, "checked".into()).await;
            Ok(())
        }
        Err(error) if shared::amqp::is_not_found(&error) => {
            Err(DlqError::NoSuchExchange(exchange.to_owned()))
        }
        Err(error) => Err(error.into()),
    }
}

/// Ready messages in `queue`.
async fn ready(channel: &Channel, queue: &str) -> lapin::Result<u32> {
    Ok(shared::amqp::inspect(channel, queue).await?.message_count())
}

/// The republished copy's properties: the original ones, persistent, without the broker's
/// death bookkeeping (it belongs to the dead-lettered copy, and a new death will write its own),
/// with the replay count raised by one.
fn replay_properties(original: &BasicProperties) -> BasicProperties {
    let mut headers = FieldTable::default();
    let mut replays = 0;
    if let Some(old) = original.headers() {
        replays = replay_count(old);
        for (key, value) in old.inner() {
            let name = key.as_str();
            let bookkeeping = name == "x-death"
                || name == "x-delivery-count"
                || name.starts_with("x-first-death-")
                || name.starts_with("x-last-death-")
                || name == REPLAY_COUNT_HEADER;
            if !bookkeeping {
                headers.insert(key.clone(), value.clone());
            }
        }
    }
    headers.insert(
        ShortString::from(REPLAY_COUNT_HEADER),
        AMQPValue::LongLongInt(replays + 1),
    );
    original
        .clone()
        // 2 = persistent, whatever the dead letter said.
        .with_delivery_mode(2)
        .with_headers(headers)
}

fn replay_count(headers: &FieldTable) -> i64 {
    headers
        .inner()
        .get(REPLAY_COUNT_HEADER)
        .and_then(as_integer)
        .unwrap_or(0)
}

/// The most recent `x-death` entry (the broker keeps the latest first).
fn latest_death(headers: &FieldTable) -> Option<Death> {
    let deaths = headers.inner().get("x-death")?.as_array()?;
    let entry = deaths.as_slice().first()?.as_field_table()?.inner();
    let text = |key: &str| match entry.get(key) {
        Some(AMQPValue::LongString(value)) => {
            Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
        }
        Some(AMQPValue::ShortString(value)) => Some(value.as_str().to_owned()),
        _ => None,
    };
    Some(Death {
        reason: text("reason").unwrap_or_else(|| "unknown".into()),
        queue: text("queue").unwrap_or_else(|| "-".into()),
        count: entry.get("count").and_then(as_integer).unwrap_or(1),
        time: entry.get("time").and_then(AMQPValue::as_timestamp),
    })
}

fn as_integer(value: &AMQPValue) -> Option<i64> {
    match value {
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use lapin::types::{FieldArray, LongString};

    use super::*;

    fn dead_letter_headers() -> FieldTable {
        let mut death = FieldTable::default();
        death.insert(
            "reason".into(),
            AMQPValue::LongString(LongString::from("rejected")),
        );
        death.insert(
            "queue".into(),
            AMQPValue::LongString(LongString::from("blitz.events")),
        );
        death.insert("count".into(), AMQPValue::LongLongInt(2));
        death.insert("time".into(), AMQPValue::Timestamp(1_700_000_000));
        let mut headers = FieldTable::default();
        headers.insert(
            "x-death".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)])),
        );
        headers.insert(
            "x-first-death-reason".into(),
            AMQPValue::LongString(LongString::from("rejected")),
        );
        headers.insert("x-delivery-count".into(), AMQPValue::LongLongInt(3));
        headers.insert(
            "trace".into(),
            AMQPValue::LongString(LongString::from("keep me")),
        );
        headers
    }

    #[test]
    fn the_death_reason_comes_from_x_death() {
        let properties = BasicProperties::default()
            .with_message_id("pur_1".into())
            .with_type("purchase".into())
            .with_headers(dead_letter_headers());
        let letter = DeadLetter::from_parts(&properties, b"{\"version\":1}".to_vec());
        assert_eq!(
            letter.death,
            Some(Death {
                reason: "rejected".into(),
                queue: "blitz.events".into(),
                count: 2,
                time: Some(1_700_000_000),
            })
        );
        assert_eq!(
            letter.to_string(),
            "id=pur_1 type=purchase reason=rejected queue=blitz.events deaths=2 replays=0 \
             body={\"version\":1}"
        );
    }

    #[test]
    fn replayed_copies_drop_death_bookkeeping_and_count_replays() {
        let original = BasicProperties::default().with_headers(dead_letter_headers());
        let once = replay_properties(&original);
        let headers = once.headers().as_ref().unwrap();
        assert!(!headers.contains_key("x-death"));
        assert!(!headers.contains_key("x-first-death-reason"));
        assert!(!headers.contains_key("x-delivery-count"));
        assert!(headers.contains_key("trace"));
        assert_eq!(replay_count(headers), 1);
        assert_eq!(once.delivery_mode(), &Some(2));
        let twice = replay_properties(&once);
        assert_eq!(replay_count(twice.headers().as_ref().unwrap()), 2);
    }

    #[test]
    fn bodies_are_cut_on_one_line() {
        let letter = DeadLetter::from_parts(&BasicProperties::default(), b"ab\ncdef".to_vec());
        assert_eq!(letter.body_preview(4), "ab c…");
        assert_eq!(letter.body_preview(10), "ab cdef");
    }
}
