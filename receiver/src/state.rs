//! What every handler shares.

use std::sync::Arc;

use sqlx::PgPool;

use crate::{config::ReceiverConfig, contest_cache::ContestCache, publish::Publisher};

/// Shared handler state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Contest settings in memory (the webhook path's only source of contests).
    pub cache: ContestCache,
    /// The confirm-mode publisher.
    pub publisher: Publisher,
    /// Postgres, for the admin API, lookups and cache misses only.
    pub db: PgPool,
    /// The configuration the process started with.
    pub config: Arc<ReceiverConfig>,
}
