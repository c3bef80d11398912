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

    /// Requests in flight from one client address on the public listener; beyond it that
    /// address gets 429 at once, so no single address (e.g. thousands of stalled connections)
    /// can take the slots other senders need. 0 turns the limit off: do that behind a reverse
    /// proxy, where every request comes from the proxy's address, and let the proxy limit
    /// per client instead.
    #[arg(
        long,
        env = "RECEIVER_MAX_IN_FLIGHT_PER_ADDRESS",
        default_value_t = DEFAULT_MAX_IN_FLIGHT_PER_ADDRESS
    )]
    pub max_in_flight_per_address: usize,
}

/// Default of [`ReceiverConfig::max_in_flight_per_address`]: a quarter of the default
/// concurrency cap, so at least three quarters of the slots stay for other addresses, and well
/// above what one store's backend keeps in flight (the benchmark's 256 clients fit).
pub const DEFAULT_MAX_IN_FLIGHT_PER_ADDRESS: usize = 256;

/// A setting the receiver refuses to start with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `ADMIN_TOKEN` is set but empty or blank: an admin API nobody can use, or, with a
    /// lenient comparison, anybody can. Unset it to disable the admin API instead.
    #[error(
        "ADMIN_TOKEN is set but empty or blank: set it to a secret token, or unset it to \
         disable the admin API"
    )]
    BlankAdminToken,
}

impl ReceiverConfig {
    /// Refuses settings that cannot be what the operator meant (checked at start-up).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self
            .admin_token
            .as_deref()
            .is_some_and(|token| token.trim().is_empty())
        {
            return Err(ConfigError::BlankAdminToken);
        }
        Ok(())
    }

    /// Like [`ReceiverConfig::validate`], and also refuses an `ADMIN_TOKEN` set in the
    /// environment to an empty or blank value (which argument parsing may read as unset).
    pub fn validate_with_environment(&self) -> Result<(), ConfigError> {
        self.validate()?;
        if std::env::var_os("ADMIN_TOKEN")
            .is_some_and(|token| token.to_string_lossy().trim().is_empty())
        {
            return Err(ConfigError::BlankAdminToken);
        }
        Ok(())
    }

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
            .field("max_in_flight_per_address", &self.max_in_flight_per_address)
            .finish()
    }
}
