//! Contest settings in memory, so the webhook path never waits on Postgres.
//!
//! Loaded in full at start, then kept fresh two ways: `LISTEN contest_changed` (a trigger on the
//! contests table notifies every receiver the moment a contest is written) and a full reload every
//! few seconds as the safety net for a notification lost while the listener was reconnecting.
//! When Postgres is down the cache keeps serving what it has; only an id it has never seen needs
//! the database, and that answers 503 rather than a 404 we cannot be sure of.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, RwLock,
    },
    time::{Duration, Instant},
};

use shared::{contest::Contest, db, ids::ContestId};
use sqlx::{postgres::PgListener, PgPool};
use tokio_util::sync::CancellationToken;

/// How long a database lookup for an uncached id may take before we answer 503.
const MISS_LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);

/// How long an id the database did not know is answered 404 from memory (limits the database
/// work a flood of made-up contest ids can cause).
const NEGATIVE_TTL: Duration = Duration::from_secs(2);

/// Most remembered unknown ids before the memory is cleared.
const NEGATIVE_CAPACITY: usize = 10_000;

/// The result of looking a contest up.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// The contest, as last loaded.
    Found(Arc<Contest>),
    /// The database says there is no such contest.
    NotFound,
    /// Not cached, and the database could not be asked.
    Unavailable,
}

/// Contest settings by id, shared by all request handlers.
#[derive(Clone)]
pub struct ContestCache {
    inner: Arc<Inner>,
}

struct Inner {
    /// The cached contests.
    contests: RwLock<HashMap<ContestId, Arc<Contest>>>,
    /// Ids recently confirmed missing, with when.
    missing: RwLock<HashMap<ContestId, Instant>>,
    /// Set after the first successful full load (`/readyz` waits for it).
    loaded: AtomicBool,
    /// Used for full loads and cache misses.
    pool: PgPool,
}

impl ContestCache {
    /// An empty cache reading from `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self {
            inner: Arc::new(Inner {
                contests: RwLock::new(HashMap::new()),
                missing: RwLock::new(HashMap::new()),
                loaded: AtomicBool::new(false),
                pool,
            }),
        }
    }

    /// True once the cache has been loaded from the database at least once.
    pub fn is_loaded(&self) -> bool {
        self.inner.loaded.load(Ordering::Acquire)
    }

    /// Looks a contest up: memory first, the database only for an id not in memory.
    pub async fn get(&self, id: &ContestId) -> Lookup {
        if let Some(contest) = self.cached(id) {
            return Lookup::Found(contest);
        }
        if self.recently_missing(id) {
            return Lookup::NotFound;
        }
        match tokio::time::timeout(
            MISS_LOOKUP_TIMEOUT,
            db::contests::find(&self.inner.pool, id),
        )
        .await
        {
            Ok(Ok(Some(contest))) => Lookup::Found(self.put(contest)),
            Ok(Ok(None)) => {
                self.remember_missing(id);
                Lookup::NotFound
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, contest_id = %id, "contest lookup failed");
                Lookup::Unavailable
            }
            Err(_) => Lookup::Unavailable,
        }
    }

    /// The cached contest, without touching the database.
    pub fn cached(&self, id: &ContestId) -> Option<Arc<Contest>> {
        read(&self.inner.contests).get(id).cloned()
    }

    /// Stores a contest just written by this process, so the change applies here at once.
    pub fn put(&self, contest: Contest) -> Arc<Contest> {
        let contest = Arc::new(contest);
        write(&self.inner.missing).remove(&contest.id);
        write(&self.inner.contests).insert(contest.id.clone(), contest.clone());
        contest
    }

    /// Replaces everything with a full load from the database.
    pub async fn reload(&self) -> Result<usize, sqlx::Error> {
        let contests = db::contests::load_all(&self.inner.pool).await?;
        let count = contests.len();
        let map = contests
            .into_iter()
            .map(|contest| (contest.id.clone(), Arc::new(contest)))
            .collect();
        *write(&self.inner.contests) = map;
        metrics::gauge!(shared::metrics::CONTEST_CACHE_SIZE).set(count as f64);
        self.inner.loaded.store(true, Ordering::Release);
        Ok(count)
    }

    /// Reloads one contest after a change notification.
    async fn refresh_one(&self, id: &ContestId) -> Result<(), sqlx::Error> {
        if let Some(contest) = db::contests::find(&self.inner.pool, id).await? {
            self.put(contest);
        }
        Ok(())
    }

    fn recently_missing(&self, id: &ContestId) -> bool {
        read(&self.inner.missing)
            .get(id)
            .is_some_and(|at| at.elapsed() < NEGATIVE_TTL)
    }

    fn remember_missing(&self, id: &ContestId) {
        let mut missing = write(&self.inner.missing);
        if missing.len() >= NEGATIVE_CAPACITY {
            missing.clear();
        }
        missing.insert(id.clone(), Instant::now());
    }

    /// Keeps the cache fresh until `stop` is cancelled: LISTEN for changes, full reload every
    /// `every`, reconnecting with backoff whenever the database goes away.
    pub fn spawn_refresher(
        &self,
        every: Duration,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let cache = self.clone();
        tokio::spawn(async move {
            let mut backoff = shared::retry::Backoff::reconnect();
            loop {
                let outcome = tokio::select! {
                    () = stop.cancelled() => return,
                    outcome = cache.listen_and_reload(every) => outcome,
                };
                let delay = backoff.next_delay();
                if let Err(error) = outcome {
                    tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "contest cache refresh failed");
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        })
    }

    /// One listener session: subscribe, full reload (so nothing between sessions is missed),
    /// then apply notifications and periodic reloads until something fails.
    async fn listen_and_reload(&self, every: Duration) -> Result<(), sqlx::Error> {
        let mut listener = PgListener::connect_with(&self.inner.pool).await?;
        listener.listen("contest_changed").await?;
        let count = self.reload().await?;
        tracing::debug!(count, "contest cache loaded");
        let mut ticker = tokio::time::interval(every);
        ticker.tick().await;
        loop {
            tokio::select! {
                notification = listener.try_recv() => {
                    match notification? {
                        Some(notification) => {
                            if let Ok(id) = ContestId::parse(notification.payload()) {
                                self.refresh_one(&id).await?;
                            }
                        }
                        // The connection dropped; a reload after reconnecting covers the gap.
                        None => return Err(sqlx::Error::PoolClosed),
                    }
                }
                _ = ticker.tick() => {
                    self.reload().await?;
                }
            }
        }
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
