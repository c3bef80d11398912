//! RabbitMQ: the node list, connecting, and the topology both binaries declare.

pub mod nodes;
pub mod topology;

pub use nodes::{Connector, Nodes};
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

/// True when the broker answered `404 NOT_FOUND` (a passive declare of something missing).
pub fn is_not_found(error: &lapin::Error) -> bool {
    reply_code(error) == Some(404)
}

/// True when the broker answered `406 PRECONDITION_FAILED` (e.g. a redeclaration with other
/// arguments).
pub fn is_precondition_failed(error: &lapin::Error) -> bool {
    reply_code(error) == Some(406)
}

fn reply_code(error: &lapin::Error) -> Option<u16> {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => Some(amqp.get_id()),
        _ => None,
    }
}

/// Closes `channels`, then `connection`, each bounded by `timeout`, ignoring failures: the
/// quiet, ordered shutdown. Dropping a channel while its connection closes makes lapin log an
/// `ERROR` (its background close races the connection's), so every channel is closed and
/// awaited first.
pub async fn close_quietly(
    channels: &[&lapin::Channel],
    connection: &Connection,
    timeout: std::time::Duration,
) {
    for channel in channels {
        if channel.status().connected() {
            let _ = tokio::time::timeout(timeout, channel.close(200, "closing".into())).await;
        }
    }
    if connection.status().connected() {
        let _ = tokio::time::timeout(timeout, connection.close(200, "closing".into())).await;
    }
}
