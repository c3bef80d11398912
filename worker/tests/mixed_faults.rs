//! The fault suite's mixed stream: points follow the money whatever fails.
//!
//! Each case sends a [`MixedPlan`] through the real receiver over HTTP: purchases, partial
//! refunds (`refundId` + `amount`), full refunds, chargebacks (`reason: chargeback`) and their
//! wins (`reason: chargeback_won`), with copies of each and the refunds of every fifth order sent
//! well before its purchase. The [`Sender`] retries every answer that is not `200`, as Shopify
//! and Stripe do. Workers are real `worker` processes; the receiver and workers reach RabbitMQ
//! and Postgres through [`Proxy`]s so a case can cut one link. Mid-stream, a case breaks
//! something, repairs it, and ends with a [`MixedAudit`] once the queue is drained and nothing
//! is unacknowledged: the exact state the contract's formulas give for the events accepted (or
//! recorded without their `200`), per purchase (status, `refundedAmount`, `pointsReversed`,
//! through Postgres and the lookup) and per entry (points; its ledger, table and endpoint, sums
//! to them; the leaderboard's total is the sum of all ledger rows), every reversal applied once
//! (ledger rows per purchase match the reversals that changed points), nothing left `pending`
//! whose purchase exists. Each case asserts its premise. Each prints one line:
//!
//! `FAULT case=<name> sent=<n> awarded=<n> reversals_applied=<n> held=<n> pending_at_drain=<n> lost=<n> doubled=<n> failed=<n> failed_but_recorded=<n> recover_ms=<n>`
//!
//! `held` counts reversals recorded before their purchase and applied when it landed (proof of
//! the reordering); `pending_at_drain` those the periodic sweep still had to apply when the queue
//! drained (a reversal and its purchase committed at the same moment).

use std::{
    path::Path,
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::json;
use shared::amqp::Topology;
use testkit::{
    app::{RunningReceiver, TestContest},
    broker,
    deliveries::DeliveryLog,
    env::amqp_url,
    mixed::{settled, settled_at_least, Copies, MixedAudit, MixedPlan},
    process::ChildProcess,
    proxy::Proxy,
    sender::{Report, Sender},
    wait, App, TestEnv,
};

fn worker_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_worker"))
}

/// Generous bound for anything that should take a second or two.
const PATIENCE: Duration = Duration::from_secs(60);

/// Orders per case (each with 0–3 reversals: about 2.7 distinct events per order).
const ORDERS: usize = 900;

/// One case's system: a receiver in-process, workers as processes, proxies on the links cut.
struct System {
    app: App,
    contest: TestContest,
    topology: Topology,
    /// Receiver → RabbitMQ.
    receiver_amqp: Proxy,
    /// Workers → RabbitMQ.
    worker_amqp: Proxy,
    /// Workers → Postgres.
    worker_pg: Proxy,
    /// Direct to this case's database, for the audit.
    pool: sqlx::PgPool,
}

impl System {
    async fn start() -> Self {
        let env = TestEnv::new();
        let receiver_amqp = Proxy::in_front_of(&amqp_url()).await;
        let worker_amqp = Proxy::in_front_of(&amqp_url()).await;
        let worker_pg = Proxy::in_front_of(&env.database_url()).await;
        let mut config = env.receiver_config();
        config.common.amqp_url = receiver_amqp.url_for(&config.common.amqp_url);
        let receiver = RunningReceiver::start(config).await;
        let app = App {
            env,
            receivers: vec![receiver],
            workers: Vec::new(),
            http: reqwest::Client::new(),
        };
        let contest = app.create_contest(json!({})).await;
        let pool = app.env.pool().await;
        Self {
            topology: Topology::new(&app.env.amqp_prefix),
            app,
            contest,
            receiver_amqp,
            worker_amqp,
            worker_pg,
            pool,
        }
    }

    /// A worker process on the workers' proxies: batches of 50, a 5 ms batch wait, the
    /// pending-reversal sweep every second.
    fn spawn_worker(&self, extra: &[(&str, &str)]) -> ChildProcess {
        let amqp = self.worker_amqp.url_for(&amqp_url());
        let database = self.worker_pg.url_for(&self.app.env.database_url());
        let mut vars = vec![
            ("AMQP_URL", amqp.as_str()),
            ("DATABASE_URL", database.as_str()),
            ("WORKER_ADDR", "127.0.0.1:0"),
            ("WORKER_BATCH_SIZE", "50"),
            ("WORKER_BATCH_WAIT_MS", "5"),
            ("WORKER_PENDING_SWEEP_MS", "1000"),
        ];
        vars.extend_from_slice(extra);
        ChildProcess::spawn(worker_binary(), &self.app.env, &vars)
    }

    fn sender(&self) -> Sender {
        Sender::new(
            self.app.public_url(),
            &self.contest.id,
            &self.contest.secret,
        )
    }

    /// Purchases recorded plus reversals settled so far.
    async fn settled(&self) -> i64 {
        settled(&self.pool, &self.contest.id).await
    }

    /// Time from `since` until more events than `settled_then` are settled.
    async fn progress_after(&self, since: Instant, settled_then: i64) -> Duration {
        settled_at_least(&self.pool, &self.contest.id, settled_then + 1).await;
        since.elapsed()
    }

    /// Consumers of the events queue.
    async fn consumers(&self) -> u32 {
        let (connection, channel) = broker::channel().await;
        let found = shared::amqp::inspect(&channel, &self.topology.queue)
            .await
            .map(|q| q.consumer_count())
            .unwrap_or(0);
        let _ = connection.close(200, "done".into()).await;
        found
    }

    /// `/readyz` of the receiver.
    async fn receiver_ready(&self) -> Option<StatusCode> {
        let url = format!("{}/readyz", self.app.admin_url());
        Some(self.app.http.get(url).send().await.ok()?.status())
    }

    /// Audits Postgres and the API once the queue is drained.
    async fn audit(&self, plan: &MixedPlan, report: &Report) -> MixedAudit {
        let queue = self.topology.queue.clone();
        let mut audit =
            MixedAudit::after_drain(&self.pool, &self.contest.id, plan, report, PATIENCE, || {
                broker::queue_counts(&queue)
            })
            .await;
        audit
            .check_over_http(&self.app, &self.contest, &self.pool)
            .await;
        audit
    }

    /// Audits (Postgres and HTTP), prints the case's line, asserts the exact state, checks the
    /// stream really was reordered, stops everything.
    async fn finish(
        self,
        case: &str,
        plan: &MixedPlan,
        report: &Report,
        recover: Duration,
        workers: Vec<ChildProcess>,
    ) {
        let audit = self.audit(plan, report).await;
        println!("{}", audit.line(case, recover));
        println!(
            "  {case}: {} distinct events ({} reversals), {} deliveries, failed attempts {:?}, \
             sender outage {} ms, {:.1} s",
            plan.unique(),
            plan.reversals(),
            plan.deliveries(),
            report.failures(),
            report.outage().as_millis(),
            report.finished.duration_since(report.started).as_secs_f64()
        );
        // Exactly the expected state first, whatever else went wrong: deliveries that never got
        // a 200 are accounted for in the audit, not excluded from it.
        audit.assert_exact();
        assert!(
            report.given_up().is_empty(),
            "{case}: {} deliveries were never accepted",
            report.given_up().len()
        );
        assert!(
            audit.held > 0,
            "premise: some reversals were recorded before their purchase and applied when it landed"
        );
        for mut worker in workers {
            worker.terminate();
            let _ = tokio::time::timeout(PATIENCE, worker.wait()).await;
        }
        self.pool.close().await;
        self.app.stop().await;
    }
}

/// `BLITZ_DELIVERY_LOG` for a worker process (the test hook of the `failpoints` feature).
fn delivery_log(log: &DeliveryLog) -> (&'static str, &str) {
    (
        "BLITZ_DELIVERY_LOG",
        log.path().to_str().expect("utf-8 path"),
    )
}

/// Reversal message ids (`rev_…`) among `ids`.
fn reversal_ids<'a>(ids: impl IntoIterator<Item = &'a String>) -> usize {
    ids.into_iter().filter(|id| id.starts_with("rev_")).count()
}

/// (a) A worker is SIGKILLed mid-stream with purchases and reversals in hand; a replacement
/// takes over. What the dead worker held unacked is redelivered, what it had committed changes
/// nothing again. Premise: the sender was still sending, and the replacement got messages the
/// broker marks redelivered (the dead worker was the only consumer before it), reversals among
/// them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_stream_worker_killed_mid_stream_then_replaced() {
    let system = System::start().await;
    let (doomed_log, replacement_log) = (DeliveryLog::new(), DeliveryLog::new());
    let mut doomed = system.spawn_worker(&[delivery_log(&doomed_log)]);
    let plan = MixedPlan::new("kill", ORDERS, Copies::Some);
    let sending = system.sender().spawn_webhooks(plan.webhooks());

    settled_at_least(&system.pool, &system.contest.id, 200).await;
    doomed.kill().await;
    let killed = Instant::now();
    assert!(!sending.is_finished(), "premise: killed mid-stream");
    let settled_then = system.settled().await;
    let replacement = system.spawn_worker(&[delivery_log(&replacement_log)]);
    let recover = system.progress_after(killed, settled_then).await;

    let report = sending.await.expect("sender");
    system
        .finish(
            "mixed_worker_sigkill",
            &plan,
            &report,
            recover,
            vec![replacement],
        )
        .await;
    let redelivered = replacement_log.redelivered();
    println!(
        "  mixed_worker_sigkill: killed at {settled_then} of {} events settled; the killed worker \
         had taken {}, {} came back redelivered ({} of them reversals)",
        plan.unique(),
        doomed_log.ids().len(),
        redelivered.len(),
        reversal_ids(&redelivered)
    );
    assert!(
        !redelivered.is_empty(),
        "premise: the killed worker held unacknowledged messages"
    );
    assert!(
        reversal_ids(&redelivered) > 0,
        "premise: reversals were among the messages it held"
    );
}

/// (b) The receiver's broker connection is reset mid-stream: purchases and refunds alike get a
/// fast 503 with `Retry-After`, `/readyz` says not ready; once the link is back the receiver
/// reconnects by itself and the senders' retries lose nothing. Premise: refunds as well as
/// purchases were refused during the cut and retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_stream_broker_cut_for_the_receiver() {
    let system = System::start().await;
    let worker = system.spawn_worker(&[]);
    let plan = MixedPlan::new("bcr", ORDERS, Copies::Some);
    let sender = system.sender();
    let progress = sender.progress();
    let sending = sender.spawn_webhooks(plan.webhooks());

    wait::until("load flowing", PATIENCE, || async {
        (progress.accepted() >= 300).then_some(())
    })
    .await;
    system.receiver_amqp.cut();

    let probe_started = Instant::now();
    let answer = system
        .app
        .post(
            &format!("/api/webhooks/refund/{}", system.contest.id),
            &[("x-webhook-secret", system.contest.secret.as_str())],
            json!({"orderId": "probe-cut", "refundId": "probe", "amount": "1"}).to_string(),
        )
        .await;
    let probe_took = probe_started.elapsed();
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        answer.body
    );
    assert!(answer.headers.contains_key("retry-after"));
    assert!(
        probe_took < Duration::from_secs(5),
        "503 took {probe_took:?}"
    );
    wait::until("readyz reports the broker down", PATIENCE, || async {
        (system.receiver_ready().await == Some(StatusCode::SERVICE_UNAVAILABLE)).then_some(())
    })
    .await;
    let failed_before = progress.failed_attempts();
    wait::until("senders see 503s", PATIENCE, || async {
        (progress.failed_attempts() >= failed_before + 50).then_some(())
    })
    .await;
    assert!(!sending.is_finished(), "premise: the cut came mid-stream");

    let restored = Instant::now();
    system.receiver_amqp.restore();
    wait::until("readyz recovers", PATIENCE, || async {
        (system.receiver_ready().await == Some(StatusCode::OK)).then_some(())
    })
    .await;

    let report = sending.await.expect("sender");
    let recover = report
        .first_accepted_after(restored)
        .map_or(Duration::ZERO, |at| at.duration_since(restored));
    let refused = |prefix: &str| {
        report
            .outcomes
            .iter()
            .filter(|o| o.order_id.starts_with(prefix) && !o.failures.is_empty())
            .count()
    };
    let (refunds_refused, purchases_refused) = (refused("r:"), refused("p:"));
    println!(
        "  mixed_broker_cut_receiver: a refund during the cut got 503 in {} ms; deliveries \
         refused then retried: {refunds_refused} reversals, {purchases_refused} purchases",
        probe_took.as_millis()
    );
    system
        .finish(
            "mixed_broker_cut_receiver",
            &plan,
            &report,
            recover,
            vec![worker],
        )
        .await;
    assert!(
        refunds_refused > 0 && purchases_refused > 0,
        "premise: the cut refused refunds and purchases in flight"
    );
}

/// (c) Postgres is cut from the worker mid-stream. It holds its batch of purchases and
/// reversals, retrying with backoff; nothing is acked or dead-lettered meanwhile; it carries on
/// when Postgres is back. Premise: the worker held unacked messages during the outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_stream_postgres_cut_for_the_worker() {
    let system = System::start().await;
    let worker = system.spawn_worker(&[]);
    let plan = MixedPlan::new("pcw", ORDERS, Copies::Some);
    let sender = system.sender();
    let progress = sender.progress();
    let sending = sender.spawn_webhooks(plan.webhooks());

    settled_at_least(&system.pool, &system.contest.id, 300).await;
    system.worker_pg.cut();
    let accepted_at_cut = progress.accepted();
    wait::until(
        "a backlog builds while the database is away",
        PATIENCE,
        || async {
            (progress.accepted() >= (accepted_at_cut + 300).min(plan.deliveries())).then_some(())
        },
    )
    .await;
    let (_, held) = wait::until("the worker holds unacked messages", PATIENCE, || async {
        broker::queue_counts(&system.topology.queue)
            .await
            .filter(|(_, unacked)| *unacked > 0)
    })
    .await;
    assert_eq!(
        broker::ready_messages(&system.topology.dead_letter_queue).await,
        0,
        "an outage dead-letters nothing"
    );
    println!("  mixed_postgres_cut_worker: {held} messages held unacked during the outage");

    let settled_then = system.settled().await;
    let restored = Instant::now();
    system.worker_pg.restore();
    let recover = system.progress_after(restored, settled_then).await;
    let report = sending.await.expect("sender");
    assert_eq!(
        broker::ready_messages(&system.topology.dead_letter_queue).await,
        0
    );
    system
        .finish(
            "mixed_postgres_cut_worker",
            &plan,
            &report,
            recover,
            vec![worker],
        )
        .await;
}

/// (d) Four workers, every event of the stream delivered three times back to back, so copies
/// of one purchase or reversal are in flight on different workers at once. Premise: all four
/// workers took deliveries, and copies of the same reversal really reached different workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_stream_four_workers_with_concurrent_duplicates() {
    let system = System::start().await;
    let logs: Vec<DeliveryLog> = (0..4).map(|_| DeliveryLog::new()).collect();
    let workers: Vec<_> = logs
        .iter()
        .map(|log| system.spawn_worker(&[("WORKER_BATCH_SIZE", "10"), delivery_log(log)]))
        .collect();
    wait::until("four consumers", PATIENCE, || async {
        (system.consumers().await >= 4).then_some(())
    })
    .await;
    let plan = MixedPlan::new("dup", ORDERS / 2, Copies::Repeated(3));
    let report = system
        .sender()
        .concurrency(48)
        .send_webhooks(&plan.webhooks())
        .await;
    system
        .finish(
            "mixed_four_workers_duplicates",
            &plan,
            &report,
            Duration::ZERO,
            workers,
        )
        .await;
    // Which workers took each message id.
    let mut takers: std::collections::HashMap<String, std::collections::HashSet<usize>> =
        Default::default();
    for (n, log) in logs.iter().enumerate() {
        for id in log.ids() {
            takers.entry(id).or_default().insert(n);
        }
    }
    let spread = |reversals: bool| {
        takers
            .iter()
            .filter(|(id, workers)| id.starts_with("rev_") == reversals && workers.len() >= 2)
            .count()
    };
    let busy = logs.iter().filter(|log| !log.ids().is_empty()).count();
    println!(
        "  mixed_four_workers_duplicates: copies taken by two or more of {busy} workers: \
         {} of {} reversals, {} of {} purchases",
        spread(true),
        plan.reversals(),
        spread(false),
        plan.unique() - plan.reversals()
    );
    assert_eq!(busy, 4, "premise: all four workers took deliveries");
    assert!(
        spread(true) >= plan.reversals() / 10,
        "premise: copies of the same reversal reached different workers"
    );
}

/// The audit itself can fail. After a clean run (exact), Postgres is tampered with as a bug
/// would: one refund's ledger row and points applied a second time, and one purchase's status
/// left behind; and the report claims one more accepted refund that never reached the queue.
/// The audit sees each of them, through Postgres and through the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mixed_audit_catches_doubled_lost_and_wrong_states() {
    let system = System::start().await;
    let mut worker = system.spawn_worker(&[]);
    let plan = MixedPlan::new("audit", 60, Copies::Some);
    let mut report = system.sender().send_webhooks(&plan.webhooks()).await;
    system.audit(&plan, &report).await.assert_exact();

    // A refund applied twice: its ledger row again, and the points with it.
    sqlx::query(
        "WITH again AS (INSERT INTO points_ledger (entry_id, contest_id, kind, points, purchase_id, reason) \
         SELECT entry_id, contest_id, kind, points, purchase_id, reason FROM points_ledger \
         WHERE contest_id = $1 AND kind = 'refund' ORDER BY id LIMIT 1 RETURNING entry_id, points) \
         UPDATE entries e SET points = e.points + again.points FROM again WHERE e.id = again.entry_id",
    )
    .bind(&system.contest.id)
    .execute(&system.pool)
    .await
    .expect("double a refund");
    // A fully refunded purchase whose status was never updated.
    sqlx::query(
        "UPDATE purchases SET status = 'awarded' WHERE contest_id = $1 AND order_id = 'audit-2'",
    )
    .bind(&system.contest.id)
    .execute(&system.pool)
    .await
    .expect("stale status");
    // A refund answered 200 that never reached the queue.
    let mut ghost = report.outcomes[0].clone();
    ghost.order_id = "r:audit-0:ghost:refund".into();
    ghost.accepted_at = Some(Instant::now());
    report.outcomes.push(ghost);

    let tampered = system.audit(&plan, &report).await;
    println!("{}", tampered.line("tampered", Duration::ZERO));
    assert_eq!(tampered.doubled, 1, "{:#?}", tampered.mismatches);
    assert_eq!(tampered.lost, 1, "{:#?}", tampered.mismatches);
    let mentions = |what: &str| tampered.mismatches.iter().any(|m| m.contains(what));
    assert!(
        mentions("purchase audit-2: expected"),
        "{:#?}",
        tampered.mismatches
    );
    assert!(mentions("lookup audit-2"), "{:#?}", tampered.mismatches);
    assert!(mentions("leaderboard"), "{:#?}", tampered.mismatches);
    assert!(mentions("ledger of"), "{:#?}", tampered.mismatches);
    assert_ne!(tampered.points, tampered.expected_points);
    worker.terminate();
    let _ = tokio::time::timeout(PATIENCE, worker.wait()).await;
    system.pool.close().await;
    system.app.stop().await;
}
