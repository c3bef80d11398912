//! A load sender that behaves like Shopify or Stripe, and the audit that proves nothing was lost
//! and nothing doubled.
//!
//! A [`Plan`] is a set of purchases with deliberate duplicates (some sent twice back to back so
//! they race, some again at the end after they were processed), each buyer's orders worth the
//! same known number of points. The [`Sender`] delivers it with bounded concurrency and, like the
//! platforms, retries every answer that is not `200` (and every timeout) with capped, jittered
//! exponential backoff until it gets a `200` or a generous deadline passes. The [`Report`] keeps
//! each delivery's outcome, so the [`Audit`] can compare what was accepted with what Postgres
//! holds: every accepted order recorded once, every entry's points equal to its purchases'.
//! The sender also delivers arbitrary [`Webhook`]s (purchases and refunds mixed, see
//! [`crate::mixed`]) the same way.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use rand::Rng;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

/// Distinct buyers a plan spreads its orders over (several orders per entry, so concurrent
/// workers also contend on the same entries).
const BUYERS: usize = 37;

/// One purchase of a plan.
#[derive(Debug, Clone)]
pub struct Order {
    /// `orderId` as sent.
    pub order_id: String,
    /// The buyer.
    pub email: String,
    /// The amount as sent (a decimal string, USD).
    pub amount: String,
    /// Points it is worth in a contest with the default rule (1 point per USD, nearest).
    pub points: i64,
}

/// Purchases to send, with duplicates, in sending order.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The distinct purchases.
    orders: Vec<Order>,
    /// Indexes into `orders`, one per delivery, in sending order.
    deliveries: Vec<usize>,
}

impl Plan {
    /// `unique` purchases named `{prefix}-{n}`: every fourth is sent twice back to back
    /// (duplicates in flight together) and every fifth once more after all the others
    /// (a duplicate of something already processed).
    pub fn with_duplicates(prefix: &str, unique: usize) -> Self {
        let orders = orders(prefix, unique);
        let mut deliveries = Vec::with_capacity(unique * 3 / 2);
        for index in 0..unique {
            deliveries.push(index);
            if index % 4 == 0 {
                deliveries.push(index);
            }
        }
        deliveries.extend((0..unique).filter(|index| index % 5 == 0));
        Self { orders, deliveries }
    }

    /// `unique` purchases, each sent `copies` times back to back.
    pub fn repeated(prefix: &str, unique: usize, copies: usize) -> Self {
        let orders = orders(prefix, unique);
        let deliveries = (0..unique)
            .flat_map(|index| std::iter::repeat_n(index, copies.max(1)))
            .collect();
        Self { orders, deliveries }
    }

    /// The distinct purchases.
    pub fn orders(&self) -> &[Order] {
        &self.orders
    }

    /// How many distinct purchases.
    pub fn unique(&self) -> usize {
        self.orders.len()
    }

    /// How many deliveries, duplicates included.
    pub fn deliveries(&self) -> usize {
        self.deliveries.len()
    }

    /// Points the whole plan is worth, each purchase counted once (default contest rule).
    pub fn expected_points(&self) -> i64 {
        self.orders.iter().map(|order| order.points).sum()
    }

    /// Points the purchases in `order_ids` are worth, each counted once.
    pub fn expected_points_of(&self, order_ids: &HashSet<&str>) -> i64 {
        self.orders
            .iter()
            .filter(|order| order_ids.contains(order.order_id.as_str()))
            .map(|order| order.points)
            .sum()
    }
}

fn orders(prefix: &str, unique: usize) -> Vec<Order> {
    (0..unique)
        .map(|index| {
            let buyer = index % BUYERS;
            // 0.50 to 99.99 USD per buyer, so rounding (0.50 → 1, 79.49 → 79) is exercised.
            let cents = 50 + (buyer as i64 * 613) % 9950;
            Order {
                order_id: format!("{prefix}-{index}"),
                email: format!("buyer{buyer}@example.com"),
                amount: format!("{}.{:02}", cents / 100, cents % 100),
                // round half away from zero at 1 point per unit
                points: (cents + 50) / 100,
            }
        })
        .collect()
}

/// Counters a test can watch while a sender runs.
#[derive(Debug, Default)]
pub struct Progress {
    accepted: AtomicUsize,
    failed_attempts: AtomicUsize,
}

impl Progress {
    /// Deliveries answered `200` so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Attempts that did not get `200` so far (they are retried).
    pub fn failed_attempts(&self) -> usize {
        self.failed_attempts.load(Ordering::Relaxed)
    }
}

/// What happened to one delivery.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The order delivered (for a [`Webhook`], its key).
    pub order_id: String,
    /// HTTP attempts made.
    pub attempts: u32,
    /// When the `200` came, if it did.
    pub accepted_at: Option<Instant>,
    /// Each failed attempt: when its answer (or error) came, and what it was
    /// (`503 broker_unavailable`, `timeout`, `connect`…).
    pub failures: Vec<(Instant, String)>,
}

/// Everything a sender run did.
#[derive(Debug, Clone)]
pub struct Report {
    /// One per delivery, in the order they settled.
    pub outcomes: Vec<Outcome>,
    /// When sending started.
    pub started: Instant,
    /// When the last delivery settled.
    pub finished: Instant,
}

impl Report {
    /// Deliveries that got `200` (duplicates included).
    pub fn accepted(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| o.accepted_at.is_some())
            .count()
    }

    /// Distinct orders that got at least one `200`.
    pub fn accepted_orders(&self) -> HashSet<&str> {
        self.outcomes
            .iter()
            .filter(|o| o.accepted_at.is_some())
            .map(|o| o.order_id.as_str())
            .collect()
    }

    /// Deliveries that never got `200` before the deadline.
    pub fn given_up(&self) -> Vec<&Outcome> {
        self.outcomes
            .iter()
            .filter(|o| o.accepted_at.is_none())
            .collect()
    }

    /// Failed attempts by kind (`503 broker_unavailable` → 120).
    pub fn failures(&self) -> BTreeMap<&str, usize> {
        let mut counts = BTreeMap::new();
        for (_, kind) in self.outcomes.iter().flat_map(|o| &o.failures) {
            *counts.entry(kind.as_str()).or_default() += 1;
        }
        counts
    }

    /// When the first failed attempt came back.
    pub fn first_failure(&self) -> Option<Instant> {
        self.outcomes
            .iter()
            .flat_map(|o| o.failures.iter().map(|(at, _)| *at))
            .min()
    }

    /// When the last failed attempt came back.
    pub fn last_failure(&self) -> Option<Instant> {
        self.outcomes
            .iter()
            .flat_map(|o| o.failures.iter().map(|(at, _)| *at))
            .max()
    }

    /// The first `200` that came at or after `since`.
    pub fn first_accepted_after(&self, since: Instant) -> Option<Instant> {
        self.outcomes
            .iter()
            .filter_map(|o| o.accepted_at)
            .filter(|at| *at >= since)
            .min()
    }

    /// How long senders saw trouble: from the first failed attempt to the first `200` after the
    /// last failed attempt (zero when nothing failed).
    pub fn outage(&self) -> Duration {
        match (self.first_failure(), self.last_failure()) {
            (Some(first), Some(last)) => self
                .first_accepted_after(last)
                .unwrap_or(self.finished)
                .saturating_duration_since(first),
            _ => Duration::ZERO,
        }
    }
}

/// Which generic webhook a [`Webhook`] goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /api/webhooks/purchase/{contestId}`.
    Purchase,
    /// `POST /api/webhooks/refund/{contestId}`.
    Refund,
}

/// One webhook delivery of any kind: where it goes, its body, and the key that names the event
/// it carries (copies of one event share the key), which its [`Outcome`] reports.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// Names the event (copies share it).
    pub key: String,
    /// The webhook it is sent to.
    pub endpoint: Endpoint,
    /// The JSON body.
    pub body: String,
}

/// Delivers plans to one contest's generic webhooks, retrying like a platform does.
#[derive(Clone)]
pub struct Sender {
    http: reqwest::Client,
    /// `…/api/webhooks/purchase/{contestId}`.
    url: String,
    /// `…/api/webhooks/refund/{contestId}`.
    refund_url: String,
    /// The contest's webhook secret.
    secret: String,
    /// Deliveries in flight at once.
    concurrency: usize,
    /// Longest a delivery keeps being retried.
    deadline: Duration,
    /// First retry delay (doubles, jittered).
    retry_min: Duration,
    /// Longest retry delay.
    retry_max: Duration,
    /// When set, the time between the first attempts of consecutive deliveries (a steady rate
    /// instead of as fast as the receiver answers).
    pace: Option<Duration>,
    /// Live counters.
    progress: Arc<Progress>,
}

impl Sender {
    /// A sender to `{public_url}/api/webhooks/purchase/{contest_id}`: 32 deliveries in flight,
    /// each attempt timed out after 5 s (as Shopify does), retries from 50 ms doubling to 1 s
    /// with jitter (the platforms' schedule, compressed from hours to seconds), giving up on a
    /// delivery after 120 s.
    pub fn new(public_url: &str, contest_id: &str, secret: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .pool_max_idle_per_host(64)
                .build()
                .expect("http client"),
            url: format!("{public_url}/api/webhooks/purchase/{contest_id}"),
            refund_url: format!("{public_url}/api/webhooks/refund/{contest_id}"),
            secret: secret.to_owned(),
            concurrency: 32,
            deadline: Duration::from_secs(120),
            retry_min: Duration::from_millis(50),
            retry_max: Duration::from_secs(1),
            pace: None,
            progress: Arc::new(Progress::default()),
        }
    }

    /// Deliveries in flight at once.
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Longest a delivery keeps being retried before it is given up.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Starts at most `per_second` deliveries a second, so a plan's traffic lasts a known time
    /// (a fault injected after it began still finds requests to hit) whatever the machine's speed.
    pub fn pace(mut self, per_second: u32) -> Self {
        self.pace = Some(Duration::from_secs(1) / per_second.max(1));
        self
    }

    /// Live counters of this sender.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// Sends `plan` in the background.
    pub fn spawn(&self, plan: Arc<Plan>) -> tokio::task::JoinHandle<Report> {
        let sender = self.clone();
        tokio::spawn(async move { sender.send(&plan).await })
    }

    /// Sends every delivery of `plan` and waits for each to be accepted or given up.
    pub async fn send(&self, plan: &Plan) -> Report {
        let started = Instant::now();
        let outcomes = futures::stream::iter(plan.deliveries.iter().copied().enumerate())
            .map(|(position, index)| async move {
                if let Some(pace) = self.pace {
                    let due = started + pace * u32::try_from(position).unwrap_or(u32::MAX);
                    tokio::time::sleep_until(due.into()).await;
                }
                self.deliver(&plan.orders[index]).await
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        Report {
            outcomes,
            started,
            finished: Instant::now(),
        }
    }

    /// Sends `webhooks` in the background (see [`Sender::send_webhooks`]).
    pub fn spawn_webhooks(&self, webhooks: Arc<Vec<Webhook>>) -> tokio::task::JoinHandle<Report> {
        let sender = self.clone();
        tokio::spawn(async move { sender.send_webhooks(&webhooks).await })
    }

    /// Sends every webhook, in order with the sender's concurrency, retrying each until `200`
    /// or the deadline, and waits for all of them.
    pub async fn send_webhooks(&self, webhooks: &[Webhook]) -> Report {
        let started = Instant::now();
        let outcomes = futures::stream::iter(0..webhooks.len())
            .map(|index| {
                let webhook = &webhooks[index];
                let url = match webhook.endpoint {
                    Endpoint::Purchase => &self.url,
                    Endpoint::Refund => &self.refund_url,
                };
                self.deliver_body(url, &webhook.key, &webhook.body)
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        Report {
            outcomes,
            started,
            finished: Instant::now(),
        }
    }

    /// One purchase of a plan.
    async fn deliver(&self, order: &Order) -> Outcome {
        let body = json!({
            "email": order.email,
            "orderId": order.order_id,
            "amount": order.amount,
        })
        .to_string();
        self.deliver_body(&self.url, &order.order_id, &body).await
    }

    /// One delivery: attempt, back off, attempt again, until `200` or the deadline.
    async fn deliver_body(&self, url: &str, key: &str, body: &str) -> Outcome {
        let give_up = Instant::now() + self.deadline;
        let mut outcome = Outcome {
            order_id: key.to_owned(),
            attempts: 0,
            accepted_at: None,
            failures: Vec::new(),
        };
        let mut delay = self.retry_min;
        loop {
            outcome.attempts += 1;
            let answer = self
                .http
                .post(url)
                .header("content-type", "application/json")
                .header("x-webhook-secret", &self.secret)
                .body(body.to_owned())
                .send()
                .await;
            let failure = match answer {
                Ok(response) if response.status() == StatusCode::OK => {
                    // Read the body so the connection goes back to the pool.
                    let _ = response.bytes().await;
                    outcome.accepted_at = Some(Instant::now());
                    self.progress.accepted.fetch_add(1, Ordering::Relaxed);
                    return outcome;
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    let code = response
                        .json::<Value>()
                        .await
                        .ok()
                        .and_then(|body| body["error"]["code"].as_str().map(str::to_owned))
                        .unwrap_or_default();
                    format!("{status} {code}").trim_end().to_owned()
                }
                Err(error) if error.is_timeout() => "timeout".to_owned(),
                Err(error) if error.is_connect() => "connect".to_owned(),
                Err(_) => "transport".to_owned(),
            };
            outcome.failures.push((Instant::now(), failure));
            self.progress
                .failed_attempts
                .fetch_add(1, Ordering::Relaxed);
            if Instant::now() >= give_up {
                return outcome;
            }
            // Full jitter over the upper half, so retries of one outage do not arrive in waves.
            let jittered = delay.mul_f64(rand::rng().random_range(0.5..=1.0));
            tokio::time::sleep(jittered).await;
            delay = (delay * 2).min(self.retry_max);
        }
    }
}

/// What Postgres holds for a plan, compared with what the sender was told was accepted.
///
/// Deliveries that never got a `200` are accounted for, not excluded: such an order may have
/// reached the queue anyway (its confirm was lost with a connection, or came after the sender's
/// timeout), so it may be recorded once or not at all, but never twice; the expected points are
/// those of every order accepted or recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    /// Deliveries answered `200` (duplicates included).
    pub sent: usize,
    /// Distinct purchases of the plan recorded (and so awarded).
    pub awarded: usize,
    /// Accepted orders that were never recorded.
    pub lost: usize,
    /// Purchases whose points were added more than once (per entry: surplus points over the
    /// entry's recorded purchases, divided by what one of that buyer's orders is worth).
    pub doubled: usize,
    /// Recorded purchases the plan does not contain.
    pub unexpected: usize,
    /// Orders never accepted (every attempt failed until the sender gave up).
    pub failed: usize,
    /// Of those, the ones recorded all the same (published, but the `200` never arrived).
    pub failed_but_recorded: usize,
    /// Points in the contest's entries.
    pub points: i64,
    /// Points the accepted (or recorded) orders are worth, each counted once.
    pub expected_points: i64,
}

/// How long the queue must look drained, twice in a row this far apart, before the audit runs.
const DRAIN_CONFIRMATION: Duration = Duration::from_millis(1500);

/// Waits until the events queue is drained, nothing ready and nothing unacknowledged as the
/// broker counts them (`counts` returns `(ready, unacked)`; `None` when it cannot be asked),
/// twice in a row [`DRAIN_CONFIRMATION`] apart. Panics if that does not happen within `timeout`,
/// naming what was left.
pub async fn wait_for_drain<F, Fut>(timeout: Duration, mut counts: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<(u64, u64)>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = None;
    let mut drained_once = false;
    loop {
        // A reading the broker could not give confirms nothing: the next must start over.
        let reading = counts().await;
        match reading {
            Some((0, 0)) if drained_once => return,
            Some((0, 0)) => drained_once = true,
            _ => drained_once = false,
        }
        last = reading.or(last);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the events queue did not drain within {timeout:?}: (ready, unacked) = {last:?}"
        );
        tokio::time::sleep(DRAIN_CONFIRMATION).await;
    }
}

impl Audit {
    /// Waits until the events queue is drained, nothing ready and nothing unacknowledged as the
    /// broker counts them (`counts` returns `(ready, unacked)`; `None` when it cannot be asked),
    /// twice in a row, then audits. Only then can no redelivery or trailing duplicate still
    /// change the totals. Panics if that does not happen within `timeout`, naming what was left.
    pub async fn after_drain<F, Fut>(
        pool: &PgPool,
        contest_id: &str,
        plan: &Plan,
        report: &Report,
        timeout: Duration,
        counts: F,
    ) -> Self
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<(u64, u64)>>,
    {
        wait_for_drain(timeout, counts).await;
        Self::now(pool, contest_id, plan, report).await
    }

    /// Audits what is in the database right now.
    pub async fn now(pool: &PgPool, contest_id: &str, plan: &Plan, report: &Report) -> Self {
        let recorded: HashSet<String> =
            sqlx::query_scalar("SELECT order_id FROM purchases WHERE contest_id = $1")
                .bind(contest_id)
                .fetch_all(pool)
                .await
                .expect("read purchases")
                .into_iter()
                .collect();
        let planned: HashSet<&str> = plan.orders.iter().map(|o| o.order_id.as_str()).collect();
        let accepted = report.accepted_orders();
        let failed: HashSet<&str> = report
            .outcomes
            .iter()
            .map(|o| o.order_id.as_str())
            .filter(|id| !accepted.contains(id))
            .collect();
        let failed_but_recorded = failed.iter().filter(|id| recorded.contains(**id)).count();
        let owed: HashSet<&str> = accepted
            .iter()
            .copied()
            .chain(planned.iter().copied().filter(|id| recorded.contains(*id)))
            .collect();

        let per_order: HashMap<&str, i64> = plan
            .orders
            .iter()
            .map(|o| (o.email.as_str(), o.points))
            .collect();
        let entries: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT e.email, e.points, COALESCE(SUM(p.points_awarded), 0)::BIGINT \
             FROM entries e LEFT JOIN purchases p ON p.entry_id = e.id \
             WHERE e.contest_id = $1 GROUP BY e.id, e.email, e.points",
        )
        .bind(contest_id)
        .fetch_all(pool)
        .await
        .expect("read entries");
        let doubled = entries
            .iter()
            .map(|(email, points, owed)| {
                let surplus = (points - owed).max(0);
                let each = per_order.get(email.as_str()).copied().unwrap_or(1).max(1);
                (surplus + each - 1) / each
            })
            .sum::<i64>();

        Self {
            sent: report.accepted(),
            awarded: recorded
                .iter()
                .filter(|id| planned.contains(id.as_str()))
                .count(),
            lost: accepted
                .iter()
                .filter(|id| !recorded.contains(**id))
                .count(),
            doubled: usize::try_from(doubled).unwrap_or(usize::MAX),
            unexpected: recorded
                .iter()
                .filter(|id| !planned.contains(id.as_str()))
                .count(),
            failed: failed.len(),
            failed_but_recorded,
            points: entries.iter().map(|(_, points, _)| points).sum(),
            expected_points: plan.expected_points_of(&owed),
        }
    }

    /// The one-line summary the fault suite prints.
    pub fn line(&self, case: &str, recover: Duration) -> String {
        format!(
            "FAULT case={case} sent={} awarded={} lost={} doubled={} failed={} \
             failed_but_recorded={} recover_ms={}",
            self.sent,
            self.awarded,
            self.lost,
            self.doubled,
            self.failed,
            self.failed_but_recorded,
            recover.as_millis()
        )
    }

    /// Panics unless nothing was lost, nothing doubled, and the points are exactly right
    /// (deliveries that never got a `200` included, see [`Audit`]).
    pub fn assert_exact(&self) {
        assert_eq!(self.lost, 0, "lost purchases: {self:?}");
        assert_eq!(self.doubled, 0, "doubled purchases: {self:?}");
        assert_eq!(self.unexpected, 0, "unexpected purchases: {self:?}");
        assert_eq!(self.points, self.expected_points, "points: {self:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_carry_duplicates_and_exact_points() {
        let plan = Plan::with_duplicates("o", 100);
        assert_eq!(plan.unique(), 100);
        assert_eq!(plan.deliveries(), 100 + 25 + 20);
        // buyer 0 pays 0.50 (1 point under nearest); every order is worth at least a point
        assert_eq!(plan.orders()[0].amount, "0.50");
        assert_eq!(plan.orders()[0].points, 1);
        assert!(plan.orders().iter().all(|o| o.points >= 1));
        let repeated = Plan::repeated("o", 10, 3);
        assert_eq!(repeated.deliveries(), 30);
        assert_eq!(
            repeated.expected_points(),
            plan.orders()[..10].iter().map(|o| o.points).sum::<i64>()
        );
    }

    #[tokio::test]
    async fn a_reading_the_broker_could_not_give_does_not_confirm_a_drain() {
        let readings = [Some((0, 0)), None, Some((0, 0)), Some((0, 0))];
        let calls = std::sync::atomic::AtomicUsize::new(0);
        wait_for_drain(Duration::from_secs(20), || {
            let reading = readings[calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed)];
            async move { reading }
        })
        .await;
        assert_eq!(
            calls.into_inner(),
            4,
            "two good readings in a row, after the failed one"
        );
    }
}
