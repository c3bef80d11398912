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
    topology.declare(&channel).await.expect("declare topology");
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
    let connection = shared::amqp::connect(&amqp_url(), "test-cleanup").await?;
    let channel = connection.create_channel().await?;
    let result = Topology::new(prefix).delete(&channel).await;
    let _ = connection.close(200, "done".into()).await;
    result
}
