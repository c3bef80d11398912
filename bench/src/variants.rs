//! The pipeline's other paths, each its own figure with its ratio to the asynchronous purchase
//! path (`e2e.w2`, the same receiver and two workers) of the same run:
//!
//! - [`sync`] (`sync.c64`): every purchase asks for a synchronous answer (`Prefer: wait=4`), at
//!   the headline concurrency; throughput, latency, and how many answers carried the outcome
//!   (`pointsAwarded`) rather than falling back to `accepted`;
//! - [`mixed`] (`e2e.mixed`): every tenth request is a partial refund (20.00 of a 79.99 purchase
//!   sent about a thousand requests earlier, a unique `refundId` each), and the final totals are
//!   checked exactly: points = awarded − reversed.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{client::conn::http1::SendRequest, Request};

use crate::{
    cpu,
    fixtures::{self, Fixture, POINTS_EACH, SEEDED_PURCHASES},
    load::{self, Connector, LoadGenerator, Outcome, Plan, RunResult, Session},
    measure::{self, Pipeline},
    results::Sample,
    settings::Settings,
};

/// Workers of both variants (the asynchronous path they are compared with is `e2e.w2`).
pub const WORKERS: usize = 2;

/// The `Prefer` header of the synchronous run (4 s is the most the receiver waits).
const PREFER_WAIT: &str = "wait=4";

/// Every `REFUND_EVERY`-th request of the mixed run is a refund.
const REFUND_EVERY: usize = 10;

/// A refund at index `i` refunds the purchase at `i - REFUND_LAG`: sent long before, so it is
/// usually recorded already (a refund that overtakes its purchase is still applied, later). It is
/// `REFUND_EVERY - 1` modulo `REFUND_EVERY`, so the target is always a purchase.
const REFUND_LAG: usize = 999;

/// Each refund's amount, and the points it takes back: round(80 × 20.00 / 79.99) = 20.
const REFUND_AMOUNT: &str = "20.00";

/// Points each refund takes back.
const POINTS_PER_REFUND: i64 = 20;

/// One pre-built request: to the purchase or the refund webhook.
struct Call {
    refund: bool,
    body: Bytes,
}

/// Sends pre-built calls, optionally with a `Prefer` header, and counts synchronous answers.
struct VariantConnector {
    addr: SocketAddr,
    purchase_path: String,
    refund_path: String,
    secret: String,
    calls: Arc<Vec<Call>>,
    prefer: Option<&'static str>,
    timeout: Duration,
    synchronous: Arc<AtomicU64>,
}

struct VariantSession {
    sender: Option<SendRequest<Full<Bytes>>>,
    addr: SocketAddr,
    host: String,
    purchase_path: String,
    refund_path: String,
    secret: String,
    calls: Arc<Vec<Call>>,
    prefer: Option<&'static str>,
    timeout: Duration,
    synchronous: Arc<AtomicU64>,
}

impl Connector for VariantConnector {
    type Session = VariantSession;

    async fn connect(&self) -> anyhow::Result<VariantSession> {
        Ok(VariantSession {
            sender: Some(load::open(self.addr).await?),
            addr: self.addr,
            host: self.addr.to_string(),
            purchase_path: self.purchase_path.clone(),
            refund_path: self.refund_path.clone(),
            secret: self.secret.clone(),
            calls: self.calls.clone(),
            prefer: self.prefer,
            timeout: self.timeout,
            synchronous: self.synchronous.clone(),
        })
    }
}

impl Session for VariantSession {
    async fn call(&mut self, index: usize) -> Outcome {
        let call = &self.calls[index];
        let path = if call.refund {
            self.refund_path.as_str()
        } else {
            self.purchase_path.as_str()
        };
        let mut request = Request::post(path)
            .header("host", self.host.as_str())
            .header("content-type", "application/json")
            .header("x-webhook-secret", self.secret.as_str());
        if let Some(prefer) = self.prefer {
            request = request.header("prefer", prefer);
        }
        let request = request
            .body(Full::new(call.body.clone()))
            .expect("valid request");
        let exchange = async {
            if self.sender.is_none() {
                self.sender = Some(load::open(self.addr).await.map_err(|_| Outcome::Error)?);
            }
            let sender = self.sender.as_mut().expect("just connected");
            sender.ready().await.map_err(|_| Outcome::Error)?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|_| Outcome::Error)?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|_| Outcome::Error)?
                .to_bytes();
            Ok::<(u16, Bytes), Outcome>((status, body))
        };
        let outcome = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok((200, body))) => {
                if is_synchronous(&body) {
                    self.synchronous.fetch_add(1, Ordering::Relaxed);
                }
                return Outcome::Ok(1);
            }
            Ok(Ok((status, _))) => Outcome::Status(status),
            Ok(Err(outcome)) => outcome,
            Err(_) => Outcome::Timeout,
        };
        if !matches!(outcome, Outcome::Status(_)) {
            self.sender = None;
        }
        outcome
    }
}

/// A synchronous purchase answer carries the outcome (`pointsAwarded`); the fallback is
/// `"status": "accepted"` without it.
fn is_synchronous(body: &[u8]) -> bool {
    const FIELD: &[u8] = b"\"pointsAwarded\"";
    body.windows(FIELD.len()).any(|window| window == FIELD)
}

/// `n` purchases (the bodies of [`fixtures::purchase_bodies`]).
fn purchases(n: usize) -> Vec<Call> {
    fixtures::purchase_bodies("run", n)
        .iter()
        .map(|body| Call {
            refund: false,
            body: body.clone(),
        })
        .collect()
}

/// `n` requests, every [`REFUND_EVERY`]-th (from index [`REFUND_LAG`] on) a partial refund of
/// the purchase [`REFUND_LAG`] requests earlier; the others purchases.
fn mixed_calls(n: usize) -> Vec<Call> {
    let bodies = fixtures::purchase_bodies("run", n);
    (0..n)
        .map(|i| {
            if is_refund(i) {
                Call {
                    refund: true,
                    body: Bytes::from(format!(
                        r#"{{"orderId":"run-{}","refundId":"bench-refund-{i}","amount":"{REFUND_AMOUNT}","currency":"USD"}}"#,
                        i - REFUND_LAG
                    )),
                }
            } else {
                Call {
                    refund: false,
                    body: bodies[i].clone(),
                }
            }
        })
        .collect()
}

fn is_refund(i: usize) -> bool {
    i >= REFUND_LAG && i % REFUND_EVERY == REFUND_EVERY - 1
}

/// Runs `calls` through the receiver and [`WORKERS`] workers at the headline concurrency.
async fn run_calls(
    generator: &LoadGenerator,
    settings: &Settings,
    fixture: &Fixture,
    running: &Pipeline,
    calls: Vec<Call>,
    prefer: Option<&'static str>,
) -> (RunResult, u64) {
    let synchronous = Arc::new(AtomicU64::new(0));
    let operations = calls.len();
    let connector = Arc::new(VariantConnector {
        addr: running.addr,
        purchase_path: fixture.webhook_path(),
        refund_path: format!("/api/webhooks/refund/{}", fixture.contest.id.as_str()),
        secret: fixture.secret().to_owned(),
        calls: Arc::new(calls),
        prefer,
        timeout: settings.client_timeout,
        synchronous: synchronous.clone(),
    });
    let run = generator
        .run(
            connector,
            Plan {
                concurrency: settings.headline_concurrency,
                operations,
                duration: None,
                rate_per_s: None,
            },
        )
        .await;
    (run, synchronous.load(Ordering::Relaxed))
}

/// `sync.c64`: `e2e_purchases` purchases with `Prefer: wait=4` at the headline concurrency, to
/// the receiver with [`WORKERS`] workers; the time until every purchase is committed.
pub async fn sync(generator: &LoadGenerator, settings: &Settings) -> anyhow::Result<Sample> {
    let fixture = Fixture::new().await?;
    let result = async {
        let running = Pipeline::start(&fixture, 1, WORKERS).await?;
        let count = settings.e2e_purchases;
        let before = cpu::Snapshot::take();
        let started = Instant::now();
        let (run, synchronous) = run_calls(
            generator,
            settings,
            &fixture,
            &running,
            purchases(count),
            Some(PREFER_WAIT),
        )
        .await;
        let accepted = run.ok_items() as usize;
        let done = fixture
            .wait_recorded(accepted, measure::drain_timeout(count, settings))
            .await?;
        let usage = before.until(&cpu::Snapshot::take());
        running.stop().await?;
        if run.failures() == 0 {
            fixture.check_exactly_once(accepted).await?;
        }
        let mut sample = Sample::counted(
            accepted as u64,
            done.duration_since(started).as_secs_f64(),
            usage,
        );
        sample.latency = run.latency();
        sample.failures = run.failures();
        sample.timeouts = run.timeouts();
        Ok(sample
            .with("answers_per_s", run.throughput())
            .with("synchronous_answers", synchronous as f64)
            .with(
                "accepted_fallbacks",
                accepted.saturating_sub(synchronous as usize) as f64,
            ))
    }
    .await;
    fixture.cleanup().await;
    result
}

/// `e2e.mixed`: `e2e_purchases` requests, a tenth of them partial refunds, to the receiver with
/// [`WORKERS`] workers; the time until every purchase and refund is committed, then the exact
/// totals.
pub async fn mixed(generator: &LoadGenerator, settings: &Settings) -> anyhow::Result<Sample> {
    let fixture = Fixture::new().await?;
    let result = async {
        let running = Pipeline::start(&fixture, 1, WORKERS).await?;
        let count = settings.e2e_purchases;
        let refunds = (0..count).filter(|&i| is_refund(i)).count();
        let purchases = count - refunds;
        let before = cpu::Snapshot::take();
        let started = Instant::now();
        let (run, _) = run_calls(
            generator,
            settings,
            &fixture,
            &running,
            mixed_calls(count),
            None,
        )
        .await;
        let clean = run.failures() == 0;
        let timeout = measure::drain_timeout(count, settings);
        // Without failures every purchase and refund must land; with some, what was answered.
        let (want_purchases, want_refunds) = if clean { (purchases, refunds) } else { (0, 0) };
        fixture.wait_recorded(want_purchases, timeout).await?;
        let done = wait_reversals(&fixture, want_refunds, timeout).await?;
        let usage = before.until(&cpu::Snapshot::take());
        running.stop().await?;
        if clean {
            check_mixed_totals(&fixture, purchases as i64, refunds as i64).await?;
        }
        let mut sample = Sample::counted(
            run.ok_items(),
            done.duration_since(started).as_secs_f64(),
            usage,
        );
        sample.latency = run.latency();
        sample.failures = run.failures();
        sample.timeouts = run.timeouts();
        Ok(sample
            .with("receiver_req_per_s", run.throughput())
            .with("purchases", purchases as f64)
            .with("refunds", refunds as f64))
    }
    .await;
    fixture.cleanup().await;
    result
}

/// Waits until `expected` refunds are applied; returns when that was seen.
async fn wait_reversals(
    fixture: &Fixture,
    expected: usize,
    timeout: Duration,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM reversals WHERE status = 'applied'")
                .fetch_one(&fixture.pool)
                .await?;
        if applied as usize >= expected {
            return Ok(Instant::now());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {applied} of {expected} refunds applied after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The exact books of the mixed run (the seed excluded): `purchases` recorded with
/// [`POINTS_EACH`] each, [`POINTS_PER_REFUND`] reversed per refund, entries holding exactly
/// awarded − reversed, and the ledger adding up to the same.
async fn check_mixed_totals(fixture: &Fixture, purchases: i64, refunds: i64) -> anyhow::Result<()> {
    let (count, awarded, reversed, entries, ledger): (i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM purchases), \
         (SELECT COALESCE(SUM(points_awarded), 0)::BIGINT FROM purchases), \
         (SELECT COALESCE(SUM(points_reversed), 0)::BIGINT FROM purchases), \
         (SELECT COALESCE(SUM(points), 0)::BIGINT FROM entries), \
         (SELECT COALESCE(SUM(points), 0)::BIGINT FROM points_ledger)",
    )
    .fetch_one(&fixture.pool)
    .await?;
    let seeded = SEEDED_PURCHASES * POINTS_EACH;
    let found = (
        count - SEEDED_PURCHASES,
        awarded - seeded,
        reversed,
        entries - seeded,
        ledger,
    );
    let net = purchases * POINTS_EACH - refunds * POINTS_PER_REFUND;
    let expected = (
        purchases,
        purchases * POINTS_EACH,
        refunds * POINTS_PER_REFUND,
        net,
        net,
    );
    anyhow::ensure!(
        found == expected,
        "mixed run: (purchases, awarded, reversed, entry points, ledger) = {found:?}, expected {expected:?}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refunds_are_a_tenth_and_target_earlier_purchases() {
        let calls = mixed_calls(3_000);
        let refunds: Vec<usize> = (0..calls.len()).filter(|&i| calls[i].refund).collect();
        assert_eq!(refunds.first(), Some(&999));
        assert_eq!(refunds.len(), 201);
        for &i in &refunds {
            assert!(!is_refund(i - REFUND_LAG));
        }
        let body = std::str::from_utf8(&calls[999].body).unwrap();
        assert!(body.contains(r#""orderId":"run-0""#), "{body}");
        assert!(body.contains(r#""refundId":"bench-refund-999""#), "{body}");
    }

    #[test]
    fn synchronous_answers_are_told_from_accepted() {
        assert!(is_synchronous(
            br#"{"success":true,"data":{"pointsAwarded":80,"status":"awarded"}}"#
        ));
        assert!(!is_synchronous(
            br#"{"success":true,"data":{"status":"accepted"}}"#
        ));
    }
}
