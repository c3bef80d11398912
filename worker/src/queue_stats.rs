//! Queue depth and consumer count for `/metrics`, from a passive declare every few seconds (no
//! management plugin needed). The dead-letter queue's depth is the number to alert on.

use std::time::Duration;

use lapin::Channel;
use shared::{
    amqp::{inspect, Topology},
    metrics as names,
};

/// How often the queues are inspected.
const INTERVAL: Duration = Duration::from_secs(5);

/// Polls both queues on `channel` until aborted (or the channel dies with the session).
pub fn spawn(channel: Channel, topology: Topology) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(INTERVAL);
        loop {
            ticker.tick().await;
            let events = inspect(&channel, &topology.queue).await;
            let dead = inspect(&channel, &topology.dead_letter_queue).await;
            match (events, dead) {
                (Ok(events), Ok(dead)) => {
                    metrics::gauge!(names::QUEUE_DEPTH).set(f64::from(events.message_count()));
                    metrics::gauge!(names::QUEUE_CONSUMERS).set(f64::from(events.consumer_count()));
                    metrics::gauge!(names::DEAD_LETTER_DEPTH).set(f64::from(dead.message_count()));
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default();
                    metrics::gauge!(names::QUEUE_INSPECTED_AT).set(now.as_secs_f64());
                }
                // A failed passive declare closes the channel; the session will notice the
                // broker trouble on its own, so stop quietly.
                _ => return,
            }
        }
    })
}
