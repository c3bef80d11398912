//! RabbitMQ: connecting and the topology both binaries declare.

pub mod topology;

pub use topology::Topology;

use lapin::{Connection, ConnectionProperties};

/// Opens a connection named after the process (`receiver`, `worker`) so operators can tell
/// connections apart in the management UI.
pub async fn connect(url: &str, name: &str) -> lapin::Result<Connection> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    Connection::connect(url, properties).await
}
