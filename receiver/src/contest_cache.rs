//! Contest settings in memory, so the webhook path never waits on Postgres.
//!
//! Loaded in full at start, then kept fresh two ways: `LISTEN contest_changed` (a trigger on the
//! contests table notifies every receiver the moment a contest is written) and a full reload every
//! few seconds as the safety net for a notification lost while the listener was reconnecting.
//! When Postgres is down the cache keeps serving what it has; only an id it has never seen needs
//! the database, and that answers 503 rather than a 404 we cannot be sure of.
//!
//! Probing made-up ids is cheap: an id that cannot exist never gets here (the caller checks its
//! pattern), an id found missing is remembered for a moment, and the database is asked about at
//! most [`MISS_QUERIES_PER_SEC`] uncached ids a second (with a burst of [`MISS_QUERY_BURST`]).
//! Past that budget an uncached id is answered from the cache alone while the cache is fresh:
//! it holds every contest (full loads, and a notification for every write), so an id it lacks
//! does not exist, except one created in the last moments elsewhere, which the contract allows
//! 15 s to appear. With a stale cache (no full load for 15 s, or a lookup failed since the last
//! one) it is 503 instead.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, RwLock,
    },
    time::{Duration, Instant},
};

use shared::{contest::Contest, db, ids::ContestId, metrics::CONTEST_MISSES};
use sqlx::{postgres::PgListener, PgPool};
use tokio_util::sync::CancellationToken;

/// How long a database lookup for an uncached id may take before we answer 503.
const MISS_LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);

/// How long an id the database did not know is answered 404 from memory (limits the database
/// work a flood of made-up contest ids can cause).
const NEGATIVE_TTL: Duration = Duration::from_secs(2);

/// Most remembered unknown ids before the memory is cleared: at most about a megabyte (an id
/// is at most 64 bytes), whatever a prober sends.
const NEGATIVE_CAPACITY: usize = 10_000;

/// Database lookups of uncached ids allowed per second (sustained), all ids together.
pub const MISS_QUERIES_PER_SEC: u32 = 20;

/// Database lookups of uncached ids allowed at once after a quiet spell.
pub const MISS_QUERY_BURST: u32 = 40;

/// How long after its last full load the cache is trusted to hold every contest: the contract
/// gives a contest created elsewhere 15 s to apply on every receiver.
const FRESH_FOR: Duration = Duration::from_secs(15);

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
    /// When the last full load succeeded.
    loaded_at: Mutex<Option<Instant>>,
    /// The budget of database lookups for uncached ids.
    miss_budget: Mutex<TokenBucket>,
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
                loaded_at: Mutex::new(None),
                miss_budget: Mutex::new(TokenBucket::new(MISS_QUERIES_PER_SEC, MISS_QUERY_BURST)),
                pool,
            }),
        }
    }

    /// True once the cache has been loaded from the database at least once.
    pub fn is_loaded(&self) -> bool {
        self.inner.loaded.load(Ordering::Acquire)
    }

    /// Looks a contest up: memory first, the database only for an id not in memory (within the
    /// budget of such lookups; past it, the cache decides while it is fresh).
    pub async fn get(&self, id: &ContestId) -> Lookup {
        if let Some(contest) = self.cached(id.as_str()) {
            return Lookup::Found(contest);
        }
        let miss = |result: &'static str| {
            metrics::counter!(CONTEST_MISSES, "result" => result).increment(1);
        };
        if self.recently_missing(id) {
            miss("remembered");
            return Lookup::NotFound;
        }
        if !self.take_miss_query() {
            miss("skipped");
            return if self.is_fresh() {
                Lookup::NotFound
            } else {
                Lookup::Unavailable
            };
        }
        match tokio::time::timeout(
            MISS_LOOKUP_TIMEOUT,
            db::contests::find(&self.inner.pool, id),
        )
        .await
        {
            Ok(Ok(Some(contest))) => {
                miss("found");
                Lookup::Found(self.put(contest))
            }
            Ok(Ok(None)) => {
                miss("missing");
                self.remember_missing(id);
                Lookup::NotFound
            }
            Ok(Err(error)) => {
                miss("error");
                tracing::warn!(%error, contest_id = %id, "contest lookup failed");
                self.distrust();
                Lookup::Unavailable
            }
            Err(_) => {
                miss("error");
                self.distrust();
                Lookup::Unavailable
            }
        }
    }

    /// The cached contest, without touching the database (found by the id's text, so a URL's
    /// path segment needs no allocation to look up).
    pub fn cached(&self, id: &str) -> Option<Arc<Contest>> {
        read(&self.inner.contests).get(id).cloned()
    }

    /// True while the last full load is recent enough for the cache to speak for the database.
    fn is_fresh(&self) -> bool {
        lock(&self.inner.loaded_at).is_some_and(|at| at.elapsed() < FRESH_FOR)
    }

    /// The database just failed us: until the next full load succeeds, the cache does not
    /// speak for it (an id it lacks is 503, not 404).
    fn distrust(&self) {
        *lock(&self.inner.loaded_at) = None;
    }

    /// Takes one database lookup from the budget, if any is left.
    fn take_miss_query(&self) -> bool {
        lock(&self.inner.miss_budget).take(Instant::now())
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
        *lock(&self.inner.loaded_at) = Some(Instant::now());
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

/// A token bucket: `rate` tokens a second, at most `burst` saved up. Only the miss path takes
/// tokens, so a plain mutex is cheap enough.
#[derive(Debug)]
struct TokenBucket {
    /// Tokens a second.
    rate: u32,
    /// Most tokens held.
    burst: u32,
    /// Tokens held, in millionths (whole-number arithmetic, no drift).
    micro_tokens: u64,
    /// When `micro_tokens` was last brought up to date.
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate,
            burst,
            micro_tokens: u64::from(burst) * 1_000_000,
            updated: Instant::now(),
        }
    }

    /// Takes a token if one is there at `now`.
    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_micros();
        let refill = elapsed.saturating_mul(u128::from(self.rate));
        let capacity = u64::from(self.burst) * 1_000_000;
        self.micro_tokens = u64::try_from(u128::from(self.micro_tokens).saturating_add(refill))
            .unwrap_or(u64::MAX)
            .min(capacity);
        self.updated = now;
        if self.micro_tokens >= 1_000_000 {
            self.micro_tokens -= 1_000_000;
            true
        } else {
            false
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(20, 40);
        bucket.updated = start;
        let taken = (0..100).filter(|_| bucket.take(start)).count();
        assert_eq!(taken, 40);
        // One second later: 20 more, not 40.
        let later = start + Duration::from_secs(1);
        let taken = (0..100).filter(|_| bucket.take(later)).count();
        assert_eq!(taken, 20);
        // 50 ms is one token at 20 a second.
        let soon = later + Duration::from_millis(50);
        assert!(bucket.take(soon));
        assert!(!bucket.take(soon));
        // A long quiet spell refills to the burst, no more.
        let much_later = soon + Duration::from_secs(3600);
        let taken = (0..100).filter(|_| bucket.take(much_later)).count();
        assert_eq!(taken, 40);
    }
}
