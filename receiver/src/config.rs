//! The receiver's configuration: environment variables only (flags exist for local use).

use std::{fmt, net::SocketAddr, time::Duration};

use shared::config::CommonConfig;

/// Everything the receiver reads at start.
#[derive(Clone, clap::Args)]
pub struct ReceiverConfig {
    /// Database, broker and logging settings shared with the worker.
    #[command(flatten)]
    pub common: CommonConfig,

    /// Public listener: webhooks and purchase lookups.
    #[arg(long, env = "RECEIVER_ADDR", default_value = "0.0.0.0:8080")]
    pub receiver_addr: SocketAddr,

    /// Admin listener: admin API, `/metrics`, `/healthz`, `/readyz`. Keep it private.
    #[arg(long, env = "ADMIN_ADDR", default_value = "127.0.0.1:8081")]
    pub admin_addr: SocketAddr,

    /// Bearer token of the admin API; without it the admin API answers 503 `admin_disabled`.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Base URL printed in webhook URLs given to stores.
    #[arg(long, env = "PUBLIC_BASE_URL", default_value = "http://localhost:8080")]
    pub public_base_url: String,

    /// Longest wait for a publisher confirm before answering 503 (milliseconds).
    #[arg(long, env = "PUBLISH_TIMEOUT_MS", default_value_t = 2000)]
    pub publish_timeout_ms: u64,

    /// Seconds between full reloads of the contest cache (LISTEN/NOTIFY makes changes visible at
    /// once; the reload is the safety net for a missed notification).
    #[arg(long, env = "CONTEST_REFRESH_SECS", default_value_t = 5)]
    pub contest_refresh_secs: u64,

    /// Postgres connections of this receiver (admin API, lookups, cache misses).
    #[arg(long, env = "RECEIVER_DB_POOL_SIZE", default_value_t = 8)]
    pub db_pool_size: u32,

    /// Requests handled at once; beyond it requests get 503 at once instead of queueing in memory.
    #[arg(long, env = "RECEIVER_MAX_CONCURRENCY", default_value_t = 1024)]
    pub max_concurrency: usize,
}

impl ReceiverConfig {
    /// The publisher-confirm deadline.
    pub fn publish_timeout(&self) -> Duration {
        Duration::from_millis(self.publish_timeout_ms)
    }

    /// The public base URL without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.public_base_url.trim_end_matches('/')
    }
}

impl fmt::Debug for ReceiverConfig {
    /// Prints whether an admin token is set, never the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceiverConfig")
            .field("common", &self.common)
            .field("receiver_addr", &self.receiver_addr)
            .field("admin_addr", &self.admin_addr)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "***"))
            .field("public_base_url", &self.public_base_url)
            .field("publish_timeout_ms", &self.publish_timeout_ms)
            .field("contest_refresh_secs", &self.contest_refresh_secs)
            .field("db_pool_size", &self.db_pool_size)
            .field("max_concurrency", &self.max_concurrency)
            .finish()
    }
}
