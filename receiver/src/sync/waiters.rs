//! Requests waiting for their outcome, by correlation id.
//!
//! A synchronous request registers a [`Waiter`] before it publishes (so a reply can never arrive
//! before anyone waits for it), publishes with the waiter's correlation id, and waits. The reply
//! dispatcher ([`Waiters::deliver`]) hands each reply to the waiter with that id. The registry
//! cannot leak: the entry leaves it when the reply is delivered, when the waiter is dropped (its
//! wait timed out, or the request was cancelled because the client went away: axum drops the
//! handler's future, and the waiter with it), and all at once when the broker connection the
//! replies would come back on is lost ([`Waiters::abandon_all`]; those requests answer
//! `accepted` at once instead of waiting for replies that can no longer arrive).
//!
//! The number of entries is the gauge [`shared::metrics::SYNC_WAITERS`] (per process).

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
};

use shared::outcome::Outcome;
use tokio::{sync::oneshot, time::Instant};

/// Every waiting request of one publisher.
pub struct Waiters {
    /// Starts every correlation id of this registry, so that ids are unique per request even
    /// across the receivers of one process and their restarts.
    prefix: String,
    /// The next key.
    next: AtomicU64,
    /// Waiting requests by key (the correlation id without the prefix).
    waiting: Mutex<HashMap<u64, oneshot::Sender<Outcome>>>,
}

/// How a wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The worker's outcome came in time.
    Outcome(Outcome),
    /// Nothing came before the deadline.
    TimedOut,
    /// The broker connection was lost: the reply can no longer arrive.
    Abandoned,
}

/// One waiting request; leaves the registry when dropped.
pub struct Waiter {
    /// Its key in the registry.
    key: u64,
    /// The AMQP `correlation_id` to publish with.
    correlation_id: String,
    /// Where the outcome arrives.
    outcome: oneshot::Receiver<Outcome>,
    /// The registry, to leave it.
    waiters: Arc<Waiters>,
}

impl Waiters {
    /// An empty registry with a fresh random prefix.
    pub fn new() -> Arc<Self> {
        use rand::Rng;
        let prefix: u64 = rand::rng().random();
        Arc::new(Self {
            prefix: format!("{prefix:016x}-"),
            next: AtomicU64::new(1),
            waiting: Mutex::new(HashMap::new()),
        })
    }

    /// Registers a new waiting request.
    pub fn register(self: &Arc<Self>) -> Waiter {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let (sender, outcome) = oneshot::channel();
        self.lock().insert(key, sender);
        metrics::gauge!(shared::metrics::SYNC_WAITERS).increment(1.0);
        Waiter {
            key,
            correlation_id: format!("{}{key}", self.prefix),
            outcome,
            waiters: self.clone(),
        }
    }

    /// Hands `outcome` to the request waiting under `correlation_id`; false when none is (it
    /// stopped waiting, or the id is not ours).
    pub fn deliver(&self, correlation_id: &str, outcome: Outcome) -> bool {
        match self.key_of(correlation_id).and_then(|key| self.take(key)) {
            Some(sender) => sender.send(outcome).is_ok(),
            None => false,
        }
    }

    /// The key of one of our correlation ids.
    fn key_of(&self, correlation_id: &str) -> Option<u64> {
        correlation_id.strip_prefix(&self.prefix)?.parse().ok()
    }

    /// Ends the wait of the request under `correlation_id` at once, without an outcome (its
    /// reply could not be read); false when none is waiting under it.
    pub fn cancel(&self, correlation_id: &str) -> bool {
        self.key_of(correlation_id)
            .and_then(|key| self.take(key))
            .is_some()
    }

    /// Ends every wait at once (the connection replies come back on is gone); returns how many.
    pub fn abandon_all(&self) -> usize {
        let abandoned: Vec<_> = self.lock().drain().collect();
        if !abandoned.is_empty() {
            metrics::gauge!(shared::metrics::SYNC_WAITERS).decrement(abandoned.len() as f64);
        }
        // Dropping the senders wakes every waiter with `Ended::Abandoned`.
        abandoned.len()
    }

    /// How many requests are waiting.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no request is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn take(&self, key: u64) -> Option<oneshot::Sender<Outcome>> {
        let sender = self.lock().remove(&key);
        if sender.is_some() {
            metrics::gauge!(shared::metrics::SYNC_WAITERS).decrement(1.0);
        }
        sender
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, oneshot::Sender<Outcome>>> {
        // Nothing panics while holding the lock; a poisoned map is still consistent.
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Waiter {
    /// The correlation id to publish the request with.
    pub fn correlation_id(&self) -> &str {
        &self.correlation_id
    }

    /// Waits for the outcome until `deadline`.
    pub async fn outcome(mut self, deadline: Instant) -> Ended {
        match tokio::time::timeout_at(deadline, &mut self.outcome).await {
            Ok(Ok(outcome)) => Ended::Outcome(outcome),
            Ok(Err(_)) => Ended::Abandoned,
            Err(_) => Ended::TimedOut,
        }
        // `self` is dropped here, leaving the registry if the outcome did not already take it out.
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.waiters.take(self.key);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use shared::{
        ids::EntryId,
        outcome::{Outcome, SignupOutcome},
    };

    use super::*;

    fn outcome() -> Outcome {
        Outcome::Signup(SignupOutcome {
            entry_id: EntryId::from_stored("ent_1".into()),
            already_existed: false,
            advocate_points: 0,
            friend_points: 0,
        })
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn a_delivered_outcome_reaches_its_waiter_and_only_it() {
        let waiters = Waiters::new();
        let first = waiters.register();
        let second = waiters.register();
        assert_ne!(first.correlation_id(), second.correlation_id());
        assert_eq!(waiters.len(), 2);
        let second_id = second.correlation_id().to_owned();
        assert!(waiters.deliver(&second_id, outcome()));
        assert_eq!(second.outcome(soon()).await, Ended::Outcome(outcome()));
        assert_eq!(waiters.len(), 1);
        // A second reply for the same id, and ids that are not ours, find nobody.
        assert!(!waiters.deliver(&second_id, outcome()));
        assert!(!waiters.deliver("someone-else-1", outcome()));
        assert!(!waiters.deliver("", outcome()));
        drop(first);
        assert!(waiters.is_empty());
    }

    #[tokio::test]
    async fn a_timed_out_waiter_leaves_the_registry() {
        let waiters = Waiters::new();
        let waiter = waiters.register();
        let id = waiter.correlation_id().to_owned();
        let ended = waiter
            .outcome(Instant::now() + Duration::from_millis(20))
            .await;
        assert_eq!(ended, Ended::TimedOut);
        assert!(waiters.is_empty());
        // The late reply is refused, not kept.
        assert!(!waiters.deliver(&id, outcome()));
        assert!(waiters.is_empty());
    }

    #[tokio::test]
    async fn a_cancelled_request_leaves_the_registry() {
        let waiters = Waiters::new();
        let waiter = waiters.register();
        let waiting = tokio::spawn(waiter.outcome(soon()));
        tokio::task::yield_now().await;
        assert_eq!(waiters.len(), 1);
        waiting.abort();
        let _ = waiting.await;
        assert!(waiters.is_empty());
    }

    #[tokio::test]
    async fn a_cancelled_wait_ends_at_once_without_an_outcome() {
        let waiters = Waiters::new();
        let waiter = waiters.register();
        assert!(waiters.cancel(waiter.correlation_id()));
        assert!(waiters.is_empty());
        assert_eq!(waiter.outcome(soon()).await, Ended::Abandoned);
    }

    #[tokio::test]
    async fn abandoning_wakes_every_waiter_at_once() {
        let waiters = Waiters::new();
        let (a, b) = (waiters.register(), waiters.register());
        assert_eq!(waiters.abandon_all(), 2);
        assert!(waiters.is_empty());
        assert_eq!(a.outcome(soon()).await, Ended::Abandoned);
        assert_eq!(b.outcome(soon()).await, Ended::Abandoned);
        assert!(waiters.is_empty());
    }
}
