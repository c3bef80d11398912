//! Postgres access both processes need: connecting, migrating, and the queries on contests,
//! entries, purchases, the points ledger and operators' actions on entries. The worker's award
//! transaction lives in the worker, which alone runs it.

pub mod contests;
pub mod entries;
pub mod ledger;
pub mod operator;
pub mod purchases;

use std::time::Duration;

use sqlx::{
    migrate::MigrateDatabase,
    postgres::{PgConnectOptions, PgPoolOptions},
    PgPool, Postgres,
};

/// The migrations in `migrations/`, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// [`MIGRATOR`] as the services run it: migrations applied by a *newer* release are tolerated,
/// so an older binary still starts during a rolling upgrade or after a rollback (migrations are
/// additive; see docs/operations.md, *Rollback*). sqlx would otherwise refuse to start.
fn migrator() -> sqlx::migrate::Migrator {
    let mut migrator = sqlx::migrate!("../migrations");
    migrator.set_ignore_missing(true);
    migrator
}

/// Errors while connecting or migrating.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The database could not be reached or created.
    #[error("database unavailable: {0}")]
    Connect(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Pool sizing and timeouts.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// Most connections this process holds.
    pub max_connections: u32,
    /// How long a query waits for a free connection before failing (and the caller answering 503
    /// or retrying) instead of queueing without bound.
    pub acquire_timeout: Duration,
}

/// Creates the database named in `url` if it does not exist (another process may race us: an
/// "already exists" answer is success).
pub async fn create_if_missing(url: &str) -> Result<(), SetupError> {
    if Postgres::database_exists(url).await? {
        return Ok(());
    }
    match Postgres::create_database(url).await {
        Ok(()) => Ok(()),
        // 42P04 duplicate_database; 23505 when two CREATE DATABASE race inside the catalog.
        Err(sqlx::Error::Database(error))
            if matches!(error.code().as_deref(), Some("42P04" | "23505")) =>
        {
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}

/// Opens a pool without touching the server yet, so a process can start while Postgres is down
/// and connect when it comes back.
pub fn lazy_pool(url: &str, settings: PoolSettings) -> Result<PgPool, SetupError> {
    // Custom plans always: our statements take arrays of varying length (UNNEST of 1 or 500
    // rows), and the generic plan Postgres switches to after five executions of a prepared
    // statement was measured to scan whole tables while they are small and not yet analyzed.
    let options: PgConnectOptions = url
        .parse::<PgConnectOptions>()?
        .options([("plan_cache_mode", "force_custom_plan")]);
    Ok(PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .connect_lazy_with(options))
}

/// Creates the database if missing and applies pending migrations. sqlx holds a Postgres advisory
/// lock while migrating, so concurrent starts of many processes apply each migration once.
pub async fn prepare(url: &str, pool: &PgPool) -> Result<(), SetupError> {
    create_if_missing(url).await?;
    migrator().run(pool).await?;
    Ok(())
}

/// The `migrate` subcommand of both binaries: create the database if missing, apply pending
/// migrations on a short-lived connection, done.
pub async fn migrate_now(url: &str) -> Result<(), SetupError> {
    connect_prepared(url).await?.close().await;
    tracing::info!("migrations applied");
    Ok(())
}

/// A small pool for one-off commands, on a database created and migrated if needed (so a fresh
/// installation can run `migrate` or create its first contest before any service started).
pub async fn connect_prepared(url: &str) -> Result<PgPool, SetupError> {
    create_if_missing(url).await?;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await?;
    prepare(url, &pool).await?;
    Ok(pool)
}

/// [`prepare`], waiting with backoff for Postgres to come up for at most `wait` (processes may
/// start before the database, as they do under docker compose or systemd).
pub async fn prepare_when_available(
    url: &str,
    pool: &PgPool,
    wait: Duration,
) -> Result<(), SetupError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut backoff = crate::retry::Backoff::reconnect();
    loop {
        match prepare(url, pool).await {
            Err(SetupError::Connect(error))
                if is_unavailable(&error) && tokio::time::Instant::now() < deadline =>
            {
                tracing::warn!(%error, "waiting for the database");
                tokio::time::sleep(backoff.next_delay()).await;
            }
            other => return other,
        }
    }
}

/// True for errors that say the database is unreachable or overloaded rather than that the query
/// is wrong: worth retrying later, and a reason for 503 rather than 500.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => matches!(
            db.code().as_deref(),
            // connection exceptions, insufficient resources, operator intervention (shutdown).
            Some(code) if code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
        ),
        _ => false,
    }
}

/// The unique constraint a referral-code collision violates.
pub const REFERRAL_CODE_CONSTRAINT: &str = "entries_contest_id_referral_code_key";

/// The foreign keys a purchase and a referral credit reference their entries by. A violation of
/// either means the entry was erased (renamed) between the moment the transaction found it and
/// the moment it referenced it: nothing else deletes or renames entries.
pub const ENTRY_REFERENCE_CONSTRAINTS: [&str; 2] = [
    "purchases_entry_id_fkey",
    "referral_credits_advocate_entry_id_fkey",
];

/// True for errors after which running the whole transaction again may succeed: the database
/// being unavailable, a serialization failure or deadlock (40001, 40P01), a referral-code
/// collision (a new code is drawn on the next attempt), and an entry erased under the
/// transaction's feet (the next attempt creates the person's entry afresh, or finds the erased
/// advocate's code credits nobody).
pub fn is_retryable(error: &sqlx::Error) -> bool {
    if let sqlx::Error::Database(db) = error {
        if db.constraint() == Some(REFERRAL_CODE_CONSTRAINT) {
            return true;
        }
        if db.code().as_deref() == Some("23503")
            && db
                .constraint()
                .is_some_and(|name| ENTRY_REFERENCE_CONSTRAINTS.contains(&name))
        {
            return true;
        }
        if matches!(db.code().as_deref(), Some("40001" | "40P01")) {
            return true;
        }
    }
    is_unavailable(error)
}
