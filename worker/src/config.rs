//! The worker's configuration: environment variables only (flags exist for local use).

use std::{fmt, net::SocketAddr, time::Duration};

use shared::config::CommonConfig;

/// Everything the worker reads at start.
#[derive(Clone, clap::Args)]
pub struct WorkerConfig {
    /// Database, broker and logging settings shared with the receiver.
    #[command(flatten)]
    pub common: CommonConfig,

    /// Listener for `/metrics`, `/healthz`, `/readyz`.
    #[arg(long, env = "WORKER_ADDR", default_value = "0.0.0.0:9090")]
    pub worker_addr: SocketAddr,

    /// Most messages awarded in one database transaction.
    #[arg(long, env = "WORKER_BATCH_SIZE", default_value_t = 100)]
    pub batch_size: usize,

    /// Longest a batch waits to fill up after its first message (milliseconds). Bounds the added
    /// latency at low traffic; at high traffic batches fill long before it.
    #[arg(long, env = "WORKER_BATCH_WAIT_MS", default_value_t = 20)]
    pub batch_wait_ms: u64,

    /// Batches settled at once, each in its own transaction on its own connection: while one
    /// waits on Postgres the next is being written. 1 = strictly one batch at a time.
    #[arg(long, env = "WORKER_CONCURRENCY", default_value_t = 2)]
    pub concurrency: usize,

    /// Unacknowledged messages the broker may push to this worker (0 = batch size times
    /// concurrency plus one, so the next batch is already here while the others commit). Bounds
    /// the worker's memory whatever the queue depth.
    #[arg(long, env = "WORKER_PREFETCH", default_value_t = 0)]
    pub prefetch: u16,

    /// Postgres connections of this worker (one per concurrent batch, one spare).
    #[arg(long, env = "WORKER_DB_POOL_SIZE", default_value_t = 3)]
    pub db_pool_size: u32,

    /// How often this worker sweeps for `pending` reversals whose purchase has been recorded
    /// meanwhile (milliseconds, at least 100). A reversal that arrives before its purchase is
    /// applied by the purchase's own transaction; the sweep catches the race where both commit at
    /// the same time, each unseen by the other. The sweep is one cheap indexed query when there
    /// is nothing to do.
    #[arg(long, env = "WORKER_PENDING_SWEEP_MS", default_value_t = 10_000)]
    pub pending_sweep_ms: u64,
}

impl WorkerConfig {
    /// The batch deadline.
    pub fn batch_wait(&self) -> Duration {
        Duration::from_millis(self.batch_wait_ms)
    }

    /// The period of the pending-reversal sweep.
    pub fn pending_sweep(&self) -> Duration {
        Duration::from_millis(self.pending_sweep_ms.max(100))
    }

    /// The effective prefetch count.
    pub fn effective_prefetch(&self) -> u16 {
        if self.prefetch == 0 {
            let batches = self.concurrency.max(1).saturating_add(1);
            u16::try_from(self.batch_size.saturating_mul(batches)).unwrap_or(u16::MAX)
        } else {
            self.prefetch
        }
    }
}

impl fmt::Debug for WorkerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerConfig")
            .field("common", &self.common)
            .field("worker_addr", &self.worker_addr)
            .field("batch_size", &self.batch_size)
            .field("batch_wait_ms", &self.batch_wait_ms)
            .field("concurrency", &self.concurrency)
            .field("prefetch", &self.effective_prefetch())
            .field("db_pool_size", &self.db_pool_size)
            .field("pending_sweep_ms", &self.pending_sweep().as_millis())
            .finish()
    }
}
