//! Direct RabbitMQ access for assertions and fault injection.

use lapin::{options::BasicPublishOptions, BasicProperties, Channel, Connection};
use shared::amqp::{topology::ROUTING_KEY, Topology};

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
