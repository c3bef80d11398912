//! Real restarts and long outages: the test's own RabbitMQ node (started by
//! `scripts/rabbitmq-cluster.sh` with one node) and the test's own PostgreSQL server are stopped
//! for real while purchases stream in, kept down longer than every retry backoff cap (5 s for
//! broker reconnects, 10 s for held batches) and the pools' acquire timeouts (1 s receiver, 5 s
//! worker), and started again. Nobody touches the services meanwhile: recovery must need no
//! operator. Each case ends with the exact-points audit after the queue is drained and nothing
//! is unacknowledged, and prints its `FAULT` line (see `faults.rs`).

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::json;
use shared::amqp::Topology;
use testkit::{
    app::{RunningReceiver, TestContest},
    broker,
    env::{amqp_url, postgres_server},
    postgres::{until_refused, StopMode, ThrowawayPostgres},
    process::ChildProcess,
    rabbit::RabbitCluster,
    sender::{Audit, Plan, Progress, Sender},
    wait, App, TestEnv,
};

/// Generous bound for anything that should take seconds.
const PATIENCE: Duration = Duration::from_secs(120);

/// Longer than the broker reconnect backoff cap (5 s), the held-batch retry cap (10 s) and the
/// pools' acquire timeouts (≤ 5 s).
const LONG_OUTAGE: Duration = Duration::from_secs(15);

/// Deliveries started per second: the plan's 2,900 deliveries take about 30 s, so the traffic
/// outlasts the stop and most of the outage on any machine (unpaced, a fast machine could send
/// everything before the server is down and the case would prove nothing).
const SEND_RATE: u32 = 100;

fn worker_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_worker"))
}

/// A receiver in-process and one worker process on `env`'s servers, with a contest.
struct Running {
    app: App,
    contest: TestContest,
    worker: ChildProcess,
}

impl Running {
    async fn start(env: TestEnv) -> Self {
        let receiver = RunningReceiver::start(env.receiver_config()).await;
        let app = App {
            env,
            receivers: vec![receiver],
            workers: Vec::new(),
            http: reqwest::Client::new(),
        };
        let worker = ChildProcess::spawn_captured(
            worker_binary(),
            &app.env,
            &[
                ("WORKER_ADDR", "127.0.0.1:0"),
                ("WORKER_BATCH_SIZE", "50"),
                ("WORKER_BATCH_WAIT_MS", "5"),
            ],
        );
        worker.logged("consuming", PATIENCE).await;
        let contest = app.create_contest(json!({})).await;
        Self {
            app,
            contest,
            worker,
        }
    }

    async fn recorded(&self, pool: &sqlx::PgPool) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM purchases WHERE contest_id = $1")
            .bind(&self.contest.id)
            .fetch_one(pool)
            .await
            .unwrap_or(-1)
    }

    async fn receiver_ready(&self) -> Option<StatusCode> {
        let url = format!("{}/readyz", self.app.admin_url());
        Some(self.app.http.get(url).send().await.ok()?.status())
    }

    async fn stop(mut self) {
        self.worker.terminate();
        let code = tokio::time::timeout(PATIENCE, self.worker.wait()).await;
        assert_eq!(
            code.ok().flatten(),
            Some(0),
            "the worker drains and exits 0"
        );
        self.app.stop().await;
    }
}

async fn flowing(progress: &Progress, running: &Running, pool: &sqlx::PgPool) {
    wait::until("purchases flowing end to end", PATIENCE, || async {
        (progress.accepted() >= 500 && running.recorded(pool).await >= 300).then_some(())
    })
    .await;
}

/// The broker itself restarts: the test's RabbitMQ node is stopped (`rabbitmqctl stop`) while
/// purchases stream in, stays down past the reconnect backoff cap, and starts again with its
/// data. Webhooks answer 503 meanwhile (senders retry), the worker's unacked batch is returned
/// by the restart, receiver and worker reconnect on their own, and every 200 is awarded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_node_restarted_while_purchases_flow() {
    let node = RabbitCluster::start(1).await;
    let env = TestEnv::on(&postgres_server(), &node.amqp_url());
    let running = Running::start(env).await;
    let topology = Topology::new(&running.app.env.amqp_prefix);
    let pool = running.app.env.pool().await;
    let plan = Arc::new(Plan::with_duplicates("rmq-restart", 2000));
    let sender = Sender::new(
        running.app.public_url(),
        &running.contest.id,
        &running.contest.secret,
    )
    .pace(SEND_RATE);
    let progress = sender.progress();
    let sending = sender.spawn(plan.clone());
    flowing(&progress, &running, &pool).await;

    let accepted_before = progress.accepted();
    let failed_before = progress.failed_attempts();
    let stopped_at = Instant::now();
    node.stop_node(1).await;
    until_refused(node.port(1), PATIENCE).await;
    wait::until("readyz reports the broker down", PATIENCE, || async {
        (running.receiver_ready().await == Some(StatusCode::SERVICE_UNAVAILABLE)).then_some(())
    })
    .await;
    let remaining = LONG_OUTAGE.saturating_sub(stopped_at.elapsed());
    tokio::time::sleep(remaining).await;
    let failed_during = progress.failed_attempts() - failed_before;
    node.start_node(1).await;
    // Recovery is measured from the moment the node is back up (its boot takes seconds).
    let restarted_at = Instant::now();
    let outage = restarted_at.duration_since(stopped_at);

    wait::until("readyz recovers without help", PATIENCE, || async {
        (running.receiver_ready().await == Some(StatusCode::OK)).then_some(())
    })
    .await;
    // The worker's own signal that it subscribed again (a second `consuming`). Counting records
    // instead would race: the senders' retries may all be recorded before a count is taken.
    wait::until("the worker consumes again", PATIENCE, || async {
        (running.worker.logged_count("consuming") >= 2).then_some(())
    })
    .await;
    let recover = restarted_at.elapsed();

    let report = sending.await.expect("sender");
    let queue = topology.queue.clone();
    let audit = Audit::after_drain(&pool, &running.contest.id, &plan, &report, PATIENCE, || {
        node.queue_counts(&queue)
    })
    .await;
    println!("{}", audit.line("rabbitmq_restart", recover));
    println!(
        "  rabbitmq_restart: broker down {} ms (stop, {} s down, boot); {failed_during} \
         attempts refused while it was down; failed attempts {:?}",
        outage.as_millis(),
        LONG_OUTAGE.as_secs(),
        report.failures()
    );
    audit.assert_exact();
    assert!(
        report.given_up().is_empty(),
        "every delivery accepted in the end"
    );
    // Premises: the outage was real, long, and hit requests in flight.
    assert!(
        outage > Duration::from_secs(5),
        "outage longer than the backoff cap"
    );
    assert!(failed_during > 0, "requests were refused during the outage");
    assert!(
        report.accepted() > accepted_before + 100,
        "purchases were still streaming after the stop"
    );
    // The deliveries refused during the outage were all accepted in the end (asserted above), so
    // through the receiver and worker that reconnected on their own, and the audit found each
    // awarded once.

    pool.close().await;
    running.stop().await;
    drop(node);
}

/// Postgres itself goes away: the test's own server is stopped (immediate mode, as a crash)
/// while purchases stream in, stays down longer than the held-batch backoff cap and the pools'
/// acquire timeouts, and is started again. The receiver keeps answering 200 from its contest
/// cache (the backlog waits in RabbitMQ), the worker holds its batch unacked and retries, and
/// both recover without anyone's help.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_after_a_long_outage() {
    let server = ThrowawayPostgres::start().await;
    let env = TestEnv::on(&server.server_url(), &amqp_url());
    let running = Running::start(env).await;
    let topology = Topology::new(&running.app.env.amqp_prefix);
    let pool = running.app.env.pool().await;
    let plan = Arc::new(Plan::with_duplicates("pg-restart", 2000));
    let sender = Sender::new(
        running.app.public_url(),
        &running.contest.id,
        &running.contest.secret,
    )
    .pace(SEND_RATE);
    let progress = sender.progress();
    let sending = sender.spawn(plan.clone());
    flowing(&progress, &running, &pool).await;

    let accepted_before = progress.accepted();
    let stopped_at = Instant::now();
    server.stop(StopMode::Immediate).await;
    until_refused(server.port(), PATIENCE).await;
    // Premise: the worker really holds messages it cannot settle (unacked at the broker) while
    // the database is away, and webhooks keep being accepted meanwhile.
    let held = wait::until("the worker holds unacked messages", PATIENCE, || async {
        broker::queue_counts(&topology.queue)
            .await
            .filter(|(_, unacked)| *unacked > 0)
    })
    .await;
    let remaining = LONG_OUTAGE.saturating_sub(stopped_at.elapsed());
    tokio::time::sleep(remaining).await;
    let accepted_during = progress.accepted() - accepted_before;
    let restarted_at = Instant::now();
    server.start_again().await;
    let outage = restarted_at.duration_since(stopped_at);

    let pool = {
        // The audit's own connections died with the server.
        pool.close().await;
        running.app.env.pool().await
    };
    let recorded_then = running.recorded(&pool).await;
    wait::until("the worker records again", PATIENCE, || async {
        (running.recorded(&pool).await > recorded_then).then_some(())
    })
    .await;
    let recover = restarted_at.elapsed();
    let report = sending.await.expect("sender");
    let queue = topology.queue.clone();
    let audit = Audit::after_drain(&pool, &running.contest.id, &plan, &report, PATIENCE, || {
        broker::queue_counts(&queue)
    })
    .await;
    println!("{}", audit.line("postgres_restart", recover));
    println!(
        "  postgres_restart: database down {} ms; {accepted_during} webhooks accepted meanwhile; \
         the worker held {} unacked; failed attempts {:?}",
        outage.as_millis(),
        held.1,
        report.failures()
    );
    audit.assert_exact();
    assert!(
        report.given_up().is_empty(),
        "every delivery accepted in the end"
    );
    assert!(
        outage > Duration::from_secs(10),
        "outage longer than the backoff cap"
    );
    assert!(
        accepted_during > 100,
        "webhooks kept being accepted from the contest cache during the outage"
    );
    assert_eq!(
        broker::ready_messages(&topology.dead_letter_queue).await,
        0,
        "an outage dead-letters nothing"
    );
    // The receiver answers lookups from the database again.
    let lookup = running
        .app
        .lookup(&running.contest, &plan.orders()[0].order_id, None)
        .await;
    assert_eq!(lookup.status, StatusCode::OK, "{:?}", lookup.body);

    pool.close().await;
    running.stop().await;
    drop(server);
}
