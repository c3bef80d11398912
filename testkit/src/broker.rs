//! Direct RabbitMQ access for assertions and fault injection.

use lapin::{options::BasicPublishOptions, BasicProperties, Channel, Confirmation, Connection};
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

/// Publishes `envelopes` to the events exchange of `prefix` exactly as the receiver does (the
/// JSON envelope with `shared::amqp::message_properties`, persistent, publisher-confirmed), in
/// order, on one connection; returns once every one is confirmed. For tests that need events
/// the public endpoints cannot produce yet, or in an exact order and number of copies.
pub async fn publish_events(prefix: &str, envelopes: &[Envelope]) {
    let (connection, channel) = channel().await;
    let topology = Topology::new(prefix);
    topology.declare(&channel).await.expect("declare topology");
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
    let connection = shared::amqp::connect(&amqp_url(), "test-cleanup").await?;
    let channel = connection.create_channel().await?;
    let result = Topology::new(prefix).delete(&channel).await;
    let _ = connection.close(200, "done".into()).await;
    result
}
