//! RabbitMQ: connecting and the topology both binaries declare.

pub mod topology;

pub use topology::Topology;

use lapin::{BasicProperties, Connection, ConnectionProperties};

use crate::event::Envelope;

/// The properties every event is published with (by the receiver, and by anything that must
/// publish exactly like it, such as the benchmark).
pub fn message_properties(envelope: &Envelope) -> BasicProperties {
    BasicProperties::default()
        // 2 = persistent: written to disk, survives a broker restart.
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(envelope.event.message_id().into())
        .with_type(envelope.event.kind().into())
        .with_timestamp(envelope.event.received_at().timestamp().max(0) as u64)
}

/// A queue's message and consumer counts, by passive declare (no management plugin needed). A
/// missing queue is an error, and like any failed declare it closes the channel.
pub async fn inspect(channel: &lapin::Channel, queue: &str) -> lapin::Result<lapin::Queue> {
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.into(), passive, lapin::types::FieldTable::default())
        .await
}

/// Opens a connection named after the process (`receiver`, `worker`) so operators can tell
/// connections apart in the management UI.
pub async fn connect(url: &str, name: &str) -> lapin::Result<Connection> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    Connection::connect(url, properties).await
}
