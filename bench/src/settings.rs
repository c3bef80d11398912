//! How big each measurement is, for the full run and the `--quick` smoke run.

use std::time::Duration;

use serde::Serialize;

/// Sizes and durations of every measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// `--quick`: one short run of everything, to check the harness, not to quote.
    pub quick: bool,
    /// Repetitions of each measurement (medians are reported).
    pub runs: usize,
    /// Length of each timed throughput measurement.
    pub duration: Duration,
    /// Unmeasured load before it (connections, caches, JIT of the broker's code paths).
    pub warmup: Duration,
    /// Concurrencies of the HTTP, broker, receiver and naive measurements.
    pub concurrencies: Vec<usize>,
    /// Concurrency of the end-to-end runs and of the headline ratios.
    pub headline_concurrency: usize,
    /// Database ceiling: clients of the one-message-per-transaction runs.
    pub db_single_clients: Vec<usize>,
    /// Database ceiling: clients of the batched runs.
    pub db_batch_clients: Vec<usize>,
    /// Messages per transaction of the batched runs (the worker's default batch size).
    pub db_batch_size: usize,
    /// Backlog drained by the consume ceiling.
    pub consume_messages: usize,
    /// Backlog drained by batching workers.
    pub drain_messages: usize,
    /// Backlog drained by the one-message-per-transaction worker (it is slower).
    pub drain_messages_unbatched: usize,
    /// Worker counts of the drain and end-to-end runs.
    pub worker_counts: Vec<usize>,
    /// Purchases sent in each end-to-end run.
    pub e2e_purchases: usize,
    /// Stall comparison: seconds of load before the lock, the lock, and after it.
    pub stall_phases: (Duration, Duration, Duration),
    /// Stall comparison: request rate (both systems sustain it comfortably when healthy).
    pub stall_rate_per_s: f64,
    /// Client timeout (a sender gives up after 5 s).
    pub client_timeout: Duration,
    /// Load on the receiver process while its peak memory is measured.
    pub memory_load: Duration,
    /// Backlogs the worker process drains while its peak memory is measured.
    pub memory_backlogs: Vec<usize>,
}

impl Settings {
    /// The full run (about 16 minutes on the 2-core reference machine).
    pub fn full() -> Self {
        Self {
            quick: false,
            runs: 3,
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            concurrencies: vec![8, 64, 256],
            headline_concurrency: 64,
            db_single_clients: vec![1, 8],
            db_batch_clients: vec![1, 2, 4, 8, 16],
            db_batch_size: 100,
            consume_messages: 100_000,
            drain_messages: 50_000,
            drain_messages_unbatched: 20_000,
            worker_counts: vec![1, 2, 4, 8],
            e2e_purchases: 50_000,
            stall_phases: (
                Duration::from_secs(5),
                Duration::from_secs(10),
                Duration::from_secs(5),
            ),
            stall_rate_per_s: 1000.0,
            client_timeout: Duration::from_secs(5),
            memory_load: Duration::from_secs(5),
            memory_backlogs: vec![10_000, 1_000_000],
        }
    }

    /// The smoke run (about two minutes on the 2-core machine, the binaries already built):
    /// every measurement once, small.
    pub fn quick() -> Self {
        Self {
            quick: true,
            runs: 1,
            duration: Duration::from_millis(1500),
            warmup: Duration::from_millis(300),
            consume_messages: 20_000,
            drain_messages: 10_000,
            drain_messages_unbatched: 5_000,
            e2e_purchases: 10_000,
            // Longer than the 5 s client timeout, so the naive handler's failure mode shows.
            stall_phases: (
                Duration::from_secs(2),
                Duration::from_secs(6),
                Duration::from_secs(2),
            ),
            memory_load: Duration::from_secs(2),
            memory_backlogs: vec![2_000, 20_000],
            ..Self::full()
        }
    }

    /// Bodies or events to pre-build for a timed run expected to reach `rate_per_s` at most.
    pub fn operations_for(&self, duration: Duration, rate_per_s: usize) -> usize {
        ((duration.as_secs_f64() + 0.5) * rate_per_s as f64) as usize
    }
}
