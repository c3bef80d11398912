//! Acking when several batches are in flight on one channel.
//!
//! A `multiple` ack settles every outstanding delivery up to its tag, so with batches committing
//! out of order a worker may only ack up to the highest tag below which *everything* is settled.
//! This window tracks each delivery from the moment it is gathered until it is committed (to be
//! acked) or rejected / requeued (already settled with the broker), and sends one `multiple` ack
//! for the settled prefix. Acks are sent while the window is locked, so they leave in increasing
//! tag order (an ack for a tag already covered would make RabbitMQ close the channel).

use std::collections::BTreeMap;

use lapin::{options::BasicAckOptions, Channel};
use tokio::sync::Mutex;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Gathered, not yet committed or rejected.
    Pending,
    /// Committed: to be acked.
    Committed,
    /// Rejected or requeued: the broker no longer counts it as outstanding.
    Released,
}

/// The unsettled deliveries of one channel, in tag order.
pub struct AckWindow {
    channel: Channel,
    deliveries: Mutex<BTreeMap<u64, State>>,
}

impl AckWindow {
    /// A window for deliveries received on `channel`.
    pub fn new(channel: Channel) -> Self {
        Self {
            channel,
            deliveries: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records freshly gathered deliveries (before their batch is handed to a task).
    pub async fn gathered(&self, tags: impl IntoIterator<Item = u64>) {
        let mut deliveries = self.deliveries.lock().await;
        for tag in tags {
            deliveries.insert(tag, State::Pending);
        }
    }

    /// Marks deliveries rejected or requeued (nothing to ack for them).
    pub async fn released(&self, tags: &[u64]) -> lapin::Result<()> {
        self.settle(tags, State::Released).await
    }

    /// Marks deliveries committed and acks the settled prefix.
    pub async fn committed(&self, tags: &[u64]) -> lapin::Result<()> {
        self.settle(tags, State::Committed).await
    }

    async fn settle(&self, tags: &[u64], state: State) -> lapin::Result<()> {
        let mut deliveries = self.deliveries.lock().await;
        for tag in tags {
            if let Some(slot) = deliveries.get_mut(tag) {
                *slot = state;
            }
        }
        let (ack_up_to, covered) = pop_settled_prefix(&mut deliveries);
        if let Some(tag) = ack_up_to {
            let multiple = covered > 1;
            self.channel
                .basic_ack(tag, BasicAckOptions { multiple })
                .await?;
        }
        Ok(())
    }
}

/// Removes the settled deliveries at the front; returns the highest committed tag among them
/// (what a `multiple` ack goes up to) and how many committed deliveries that ack covers.
fn pop_settled_prefix(deliveries: &mut BTreeMap<u64, State>) -> (Option<u64>, usize) {
    let mut ack_up_to = None;
    let mut covered = 0;
    while let Some(entry) = deliveries.first_entry() {
        match *entry.get() {
            State::Pending => break,
            State::Committed => {
                ack_up_to = Some(*entry.key());
                covered += 1;
            }
            State::Released => {}
        }
        entry.remove();
    }
    (ack_up_to, covered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(states: &[(u64, State)]) -> (Option<u64>, usize) {
        let mut map: BTreeMap<u64, State> = states.iter().copied().collect();
        pop_settled_prefix(&mut map)
    }

    #[test]
    fn acks_only_up_to_the_first_pending_delivery() {
        use State::*;
        // A later batch committed first: nothing may be acked yet.
        assert_eq!(
            prefix(&[(1, Pending), (2, Pending), (3, Committed)]),
            (None, 0)
        );
        // The earlier batch commits: everything up to 3.
        assert_eq!(
            prefix(&[(1, Committed), (2, Committed), (3, Committed)]),
            (Some(3), 3)
        );
        // Rejected deliveries are skipped, not acked; the ack stops at the last committed one.
        assert_eq!(
            prefix(&[(1, Committed), (2, Released), (3, Pending)]),
            (Some(1), 1)
        );
        assert_eq!(prefix(&[(1, Released), (2, Released)]), (None, 0));
    }
}
