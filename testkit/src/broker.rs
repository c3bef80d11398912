//! Direct RabbitMQ access for assertions and fault injection.

use std::time::Duration;

use lapin::{
    options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions},
    BasicProperties, Channel, Confirmation, Connection,
};
use shared::{
    amqp::{topology::ROUTING_KEY, Topology},
    event::Envelope,
};

use crate::env::amqp_url;

/// A channel on a fresh connection (kept alive by returning both).
pub async fn channel() -> (Connection, Channel) {
    let connection = shared::amqp::connect(&amqp_url(), "test")
        .await
        .expect("connect to RabbitMQ");
    let channel = connection.create_channel().await.expect("open a channel");
    (connection, channel)
}

/// Ready messages in `queue` (passive declare: fails if the queue does not exist).
pub async fn ready_messages(queue: &str) -> u32 {
    let (connection, channel) = channel().await;
    let queue = shared::amqp::inspect(&channel, queue)
        .await
        .expect("queue exists");
    let _ = connection.close(200, "done".into()).await;
    queue.message_count()
}

/// Publishes raw bytes to the events exchange of `prefix`, as a buggy or hostile producer would.
pub async fn publish_raw(prefix: &str, payload: &[u8]) {
    let (connection, channel) = channel().await;
    let topology = Topology::new(prefix);
    // As the services do: an existing queue (created with a group size) is used as it is.
    topology
        .ensure(&connection)
        .await
        .expect("declare topology");
    channel
        .confirm_select(Default::default())
        .await
        .expect("confirm mode");
    channel
        .basic_publish(
            topology.exchange.as_str().into(),
            ROUTING_KEY.into(),
            BasicPublishOptions::default(),
            payload,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    let _ = connection.close(200, "done".into()).await;
}

/// Publishes `envelopes` to the events exchange of `prefix` exactly as the receiver does (the
/// JSON envelope with `shared::amqp::message_properties`, persistent, publisher-confirmed), in
/// order, on one connection; returns once every one is confirmed. For tests that need events
/// the public endpoints cannot produce yet, or in an exact order and number of copies.
pub async fn publish_events(prefix: &str, envelopes: &[Envelope]) {
    let (connection, channel) = channel().await;
    let topology = Topology::new(prefix);
    // As the services do: an existing queue (created with a group size) is used as it is.
    topology
        .ensure(&connection)
        .await
        .expect("declare topology");
    channel
        .confirm_select(Default::default())
        .await
        .expect("confirm mode");
    let mut confirms = Vec::with_capacity(envelopes.len());
    for envelope in envelopes {
        confirms.push(
            channel
                .basic_publish(
                    topology.exchange.as_str().into(),
                    ROUTING_KEY.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &envelope.to_bytes(),
                    shared::amqp::message_properties(envelope),
                )
                .await
                .expect("publish"),
        );
    }
    for confirm in confirms {
        let confirmation = confirm.await.expect("confirm");
        assert!(
            matches!(confirmation, Confirmation::Ack(None)),
            "the broker confirmed (and routed) the publish: {confirmation:?}"
        );
    }
    let _ = connection.close(200, "done".into()).await;
}

/// Deletes the queues and exchanges of `prefix`.
pub async fn delete_topology(prefix: &str) -> lapin::Result<()> {
    delete_topology_at(&amqp_url(), prefix).await
}

/// Deletes the queues and exchanges of `prefix` on the broker (or cluster) `amqp_url`.
pub async fn delete_topology_at(amqp_url: &str, prefix: &str) -> lapin::Result<()> {
    let nodes = shared::amqp::Nodes::parse(amqp_url)
        .map_err(|error| lapin::Error::from(std::io::Error::other(error)))?;
    let mut connector =
        shared::amqp::Connector::new(nodes, "test-cleanup", std::time::Duration::from_secs(5));
    let connection = connector.connect().await?.connection;
    let channel = connection.create_channel().await?;
    let result = Topology::new(prefix).delete(&channel).await;
    shared::amqp::close_quietly(&[&channel], &connection, std::time::Duration::from_secs(2)).await;
    result
}

/// One message taken off a test's events queue.
#[derive(Debug, Clone)]
pub struct QueuedEvent {
    /// The decoded body.
    pub envelope: Envelope,
    /// The AMQP `message_id` property (the purchase, entry or reversal id).
    pub message_id: Option<String>,
    /// The AMQP `type` property (`purchase`, `signup`, `reversal`).
    pub kind: Option<String>,
}

/// Takes the messages waiting in the events queue of `prefix` (no worker must be running), oldest
/// first, acknowledging each so it is gone. Waits up to 10 s for `expected` messages to be there,
/// then takes whatever else is there too, so a caller asserting on the length sees any extra
/// message rather than missing it. Panics on a body that is not an [`Envelope`].
pub async fn take_events(prefix: &str, expected: usize) -> Vec<QueuedEvent> {
    let (connection, channel) = channel().await;
    let queue = Topology::new(prefix).queue;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut taken = Vec::new();
    loop {
        let message = channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
            .await
            .expect("basic.get on the events queue");
        match message {
            Some(message) => {
                let delivery = message.delivery;
                delivery
                    .acker
                    .ack(BasicAckOptions::default())
                    .await
                    .expect("ack a taken event");
                let envelope = Envelope::from_bytes(&delivery.data).unwrap_or_else(|error| {
                    panic!(
                        "not an event ({error}): {}",
                        String::from_utf8_lossy(&delivery.data)
                    )
                });
                let properties = &delivery.properties;
                taken.push(QueuedEvent {
                    envelope,
                    message_id: properties.message_id().as_ref().map(|id| id.to_string()),
                    kind: properties.kind().as_ref().map(|kind| kind.to_string()),
                });
            }
            // Empty: done once enough arrived (or the wait is over), else look again shortly.
            None if taken.len() >= expected || tokio::time::Instant::now() >= deadline => break,
            None => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
    let _ = connection.close(200, "done".into()).await;
    taken
}

/// `(ready, unacknowledged)` messages of `queue` on the shared broker, as the broker counts them
/// (`rabbitmqctl list_queues`, read-only; the command is `BLITZ_TEST_RABBITMQCTL`, default
/// `rabbitmqctl`). AMQP alone cannot see unacknowledged messages, and an audit that runs while
/// some are still held by a worker would miss what their redelivery does.
pub async fn queue_counts(queue: &str) -> Option<(u64, u64)> {
    let command = std::env::var("BLITZ_TEST_RABBITMQCTL").unwrap_or_else(|_| "rabbitmqctl".into());
    let mut parts = command.split_whitespace();
    let program = parts.next()?;
    let vhost = vhost_of(&amqp_url());
    let output = tokio::process::Command::new(program)
        .args(parts)
        .args(["-q", "list_queues", "-p", &vhost, "--formatter", "json"])
        .args(["name", "messages_ready", "messages_unacknowledged"])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    crate::rabbit::queue_counts_in(&rows, queue)
}

/// The vhost of an AMQP URL (`…/%2f` → `/`; none → `/`).
fn vhost_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = rest.split_once('/').map_or("", |(_, path)| path);
    let path = path.split('?').next().unwrap_or("");
    if path.is_empty() {
        "/".into()
    } else {
        path.replace("%2f", "/").replace("%2F", "/")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn vhosts_are_decoded() {
        assert_eq!(super::vhost_of("amqp://g:g@127.0.0.1:5672/%2f"), "/");
        assert_eq!(super::vhost_of("amqp://g:g@127.0.0.1:5672"), "/");
        assert_eq!(
            super::vhost_of("amqp://b:b@127.0.0.1:5701/blitz?heartbeat=5"),
            "blitz"
        );
    }
}
