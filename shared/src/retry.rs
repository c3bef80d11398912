//! Capped exponential backoff with jitter, for every reconnect and retry loop.
//!
//! Built on `backon` rather than the `backoff` crate the design card names: `backoff` is
//! unmaintained (RUSTSEC-2025-0012, which recommends `backon`), and `backon` is what lapin itself
//! uses. A loop that must go on for as long as an outage lasts takes delays from [`Backoff`] and
//! resets it on success; bounded retries use `backon::Retryable` directly.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// An endless sequence of growing, jittered delays, capped at a maximum.
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    current: ExponentialBackoff,
    max: Duration,
}

impl Backoff {
    /// Delays from `min`, doubling, capped at `max`, each with random jitter (so a fleet of
    /// processes that lost the same server does not reconnect in lock-step).
    pub fn new(min: Duration, max: Duration) -> Self {
        let builder = ExponentialBuilder::default()
            .with_min_delay(min)
            .with_max_delay(max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Self {
            current: builder.build(),
            builder,
            max,
        }
    }

    /// The schedule for reconnecting to Postgres or RabbitMQ: 100 ms doubling to 5 s.
    pub fn reconnect() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(5))
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        self.current.next().unwrap_or(self.max)
    }

    /// Starts again from the minimum (call after a success).
    pub fn reset(&mut self) {
        self.current = self.builder.build();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_is_capped_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(80));
        let first = backoff.next_delay();
        assert!(first >= Duration::from_millis(10) && first <= Duration::from_millis(20));
        for _ in 0..20 {
            // jitter adds at most one more delay's worth
            assert!(backoff.next_delay() <= Duration::from_millis(160));
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(20));
    }
}
