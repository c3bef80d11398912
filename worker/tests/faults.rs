//! The fault suite: nothing lost, nothing doubled, whatever fails.
//!
//! Every case runs the real system against the real Postgres and RabbitMQ: the receiver
//! in-process, workers as real `worker` processes, and each service talking to Postgres and
//! RabbitMQ through its own [`Proxy`], so a case can cut exactly one link and restore it. A
//! [`Sender`] delivers 1,000–2,000 purchases plus duplicates, retrying every non-200 like Shopify
//! and Stripe do; the case breaks something mid-stream, repairs it, and ends with an [`Audit`]
//! asserting the exact points total. Each case prints one line:
//!
//! `FAULT case=<name> sent=<n> awarded=<n> lost=<n> doubled=<n> failed=<n> failed_but_recorded=<n> recover_ms=<n>`
//!
//! `sent` counts deliveries answered 200 (duplicates included), `awarded` distinct purchases
//! recorded, `lost` accepted purchases never recorded, `doubled` purchases whose points were
//! added twice, `failed` orders never answered 200 (they are audited too: recorded at most once),
//! `failed_but_recorded` those recorded all the same. The audit runs only once the events queue
//! is drained and nothing is unacknowledged, as the broker counts them, so trailing duplicates
//! and redeliveries are audited too. Each case also asserts its premise (the fault really hit
//! work in flight), so a case whose fault missed cannot pass. `recover_ms` runs from the repair (link restored, replacement started, contest
//! created and dead letters replayed) to the first sign of progress: a 200 for receiver faults,
//! a newly recorded purchase for worker faults.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use lapin::{
    options::{BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions},
    types::FieldTable,
    BasicProperties,
};
use reqwest::StatusCode;
use serde_json::json;
use shared::{
    amqp::{topology::ROUTING_KEY, Topology},
    event::Envelope,
    ids::{ContestId, OrderId, PurchaseId, Source},
    money::{Currency, Money},
};
use testkit::{
    app::{RunningReceiver, TestContest},
    broker,
    deliveries::{spread_over_workers, DeliveryLog},
    env::{amqp_url, random_suffix},
    process::ChildProcess,
    proxy::Proxy,
    sender::{Audit, Plan, Report, Sender},
    wait, App, TestEnv,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn worker_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_worker"))
}

/// Generous bound for anything that should take a second or two.
const PATIENCE: Duration = Duration::from_secs(60);

/// One case's system: a receiver in-process, workers as processes, a proxy on every link.
struct System {
    app: App,
    contest: TestContest,
    topology: Topology,
    /// Receiver → RabbitMQ.
    receiver_amqp: Proxy,
    /// Receiver → Postgres.
    receiver_pg: Proxy,
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
        let receiver_pg = Proxy::in_front_of(&env.database_url()).await;
        let worker_amqp = Proxy::in_front_of(&amqp_url()).await;
        let worker_pg = Proxy::in_front_of(&env.database_url()).await;
        let mut config = env.receiver_config();
        config.common.amqp_url = receiver_amqp.url_for(&config.common.amqp_url);
        config.common.database_url = receiver_pg.url_for(&config.common.database_url);
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
            receiver_pg,
            worker_amqp,
            worker_pg,
            pool,
        }
    }

    /// A worker process on the workers' proxies, with batches of 50 and a 5 ms batch wait.
    fn spawn_worker(&self, extra: &[(&str, &str)]) -> ChildProcess {
        let amqp = self.worker_amqp.url_for(&amqp_url());
        let database = self.worker_pg.url_for(&self.app.env.database_url());
        let mut vars = vec![
            ("AMQP_URL", amqp.as_str()),
            ("DATABASE_URL", database.as_str()),
            ("WORKER_ADDR", "127.0.0.1:0"),
            ("WORKER_BATCH_SIZE", "50"),
            ("WORKER_BATCH_WAIT_MS", "5"),
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

    /// Purchases recorded so far in the case's contest.
    async fn recorded(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM purchases WHERE contest_id = $1")
            .bind(&self.contest.id)
            .fetch_one(&self.pool)
            .await
            .expect("count purchases")
    }

    /// Waits until at least `n` purchases are recorded.
    async fn until_recorded(&self, n: i64) {
        wait::until("purchases recorded", PATIENCE, || async {
            (self.recorded().await >= n).then_some(())
        })
        .await;
    }

    /// Time from `since` until one more purchase than `recorded_then` is recorded.
    async fn progress_after(&self, since: Instant, recorded_then: i64) -> Duration {
        self.until_recorded(recorded_then + 1).await;
        since.elapsed()
    }

    /// `(ready messages, consumers)` of the events queue.
    async fn events_queue(&self) -> (u32, u32) {
        let (connection, channel) = broker::channel().await;
        let queue = channel
            .queue_declare(
                self.topology.queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        let _ = connection.close(200, "done".into()).await;
        queue.map_or((0, 0), |q| (q.message_count(), q.consumer_count()))
    }

    /// `/readyz` of the receiver.
    async fn receiver_ready(&self) -> Option<StatusCode> {
        let url = format!("{}/readyz", self.app.admin_url());
        Some(self.app.http.get(url).send().await.ok()?.status())
    }

    /// Audits, prints the case's line, asserts exactness, stops everything.
    async fn finish(
        self,
        case: &str,
        plan: &Plan,
        report: &Report,
        recover: Duration,
        workers: Vec<ChildProcess>,
    ) {
        let queue = self.topology.queue.clone();
        let audit =
            Audit::after_drain(&self.pool, &self.contest.id, plan, report, PATIENCE, || {
                broker::queue_counts(&queue)
            })
            .await;
        println!("{}", audit.line(case, recover));
        println!(
            "  {case}: {} unique, {} deliveries, failed attempts {:?}, sender outage {} ms, {:.1} s",
            plan.unique(),
            plan.deliveries(),
            report.failures(),
            report.outage().as_millis(),
            report.finished.duration_since(report.started).as_secs_f64()
        );
        // Exactly once first, whatever else went wrong: deliveries that never got a 200 are
        // accounted for in the audit, not excluded from it.
        audit.assert_exact();
        assert!(
            report.given_up().is_empty(),
            "{case}: {} deliveries were never accepted",
            report.given_up().len()
        );
        for mut worker in workers {
            worker.terminate();
            let _ = tokio::time::timeout(PATIENCE, worker.wait()).await;
        }
        self.pool.close().await;
        self.app.stop().await;
    }
}

/// Waits for a worker process to exit, with a bound.
async fn exit_code(worker: &mut ChildProcess) -> Option<i32> {
    tokio::time::timeout(PATIENCE, worker.wait())
        .await
        .expect("the worker exits in time")
}

/// Case 1: a worker is SIGKILLed mid-stream with a batch in hand; a replacement takes over.
/// Whatever the dead worker held unacked is redelivered; what it had committed awards nothing
/// again. Premise: the dead worker really held unacknowledged messages: the replacement got
/// messages the broker marks redelivered, and the dead worker was the only consumer before it.
/// (Not all of them are in the dead worker's delivery log: what the broker had pushed into its
/// prefetch buffer but it had not yet taken into a batch is unacknowledged too.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_mid_stream_then_replaced() {
    let system = System::start().await;
    let (doomed_log, replacement_log) = (DeliveryLog::new(), DeliveryLog::new());
    let mut doomed = system.spawn_worker(&[delivery_log(&doomed_log)]);
    let plan = Arc::new(Plan::with_duplicates("kill", 2000));
    let sending = system.sender().spawn(plan.clone());

    system.until_recorded(400).await;
    doomed.kill().await;
    let killed = Instant::now();
    let recorded_then = system.recorded().await;
    let replacement = system.spawn_worker(&[delivery_log(&replacement_log)]);
    let recover = system.progress_after(killed, recorded_then).await;

    let report = sending.await.expect("sender");
    system
        .finish("worker_sigkill", &plan, &report, recover, vec![replacement])
        .await;
    let redelivered = replacement_log.redelivered();
    let taken_by_doomed = doomed_log.ids();
    println!(
        "  worker_sigkill: the killed worker had taken {}, {} came back redelivered",
        taken_by_doomed.len(),
        redelivered.len()
    );
    assert!(
        !redelivered.is_empty(),
        "premise: the killed worker held unacknowledged messages"
    );
}

/// `BLITZ_DELIVERY_LOG` for a worker process (the test hook of the `failpoints` feature).
fn delivery_log(log: &DeliveryLog) -> (&'static str, &str) {
    (
        "BLITZ_DELIVERY_LOG",
        log.path().to_str().expect("utf-8 path"),
    )
}

/// Case 2, receiver: the receiver's broker connection is reset mid-stream. Webhooks get a fast
/// 503 with `Retry-After`, `/readyz` says not ready, and once the link is back the receiver
/// reconnects by itself and 200s resume; the senders' retries lose nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_cut_for_the_receiver() {
    let system = System::start().await;
    let worker = system.spawn_worker(&[]);
    let plan = Arc::new(Plan::with_duplicates("bcr", 2000));
    let sender = system.sender();
    let progress = sender.progress();
    let sending = sender.spawn(plan.clone());

    wait::until("load flowing", PATIENCE, || async {
        (progress.accepted() >= 300).then_some(())
    })
    .await;
    system.receiver_amqp.cut();

    let probe_started = Instant::now();
    let answer = system
        .app
        .purchase(
            &system.contest,
            json!({"email": "probe@example.com", "orderId": "probe-cut", "amount": "1"}),
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
    println!(
        "  broker_cut_receiver: a webhook during the cut got 503 in {} ms",
        probe_took.as_millis()
    );
    system
        .finish("broker_cut_receiver", &plan, &report, recover, vec![worker])
        .await;
}

/// Case 2, receiver, silent variant: the broker link goes dead without a reset (a partition).
/// Confirms stop coming: webhooks get 503 once the publish timeout (2 s) passes, never a hang
/// past the sender's 5 s; the receiver abandons the dead connection and, once the network is
/// back, a new one carries the 200s again (the dead one stays dead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_partition_for_the_receiver() {
    let system = System::start().await;
    let worker = system.spawn_worker(&[]);
    let plan = Arc::new(Plan::with_duplicates("bpr", 2000));
    let sender = system.sender();
    let progress = sender.progress();
    let sending = sender.spawn(plan.clone());

    wait::until("load flowing", PATIENCE, || async {
        (progress.accepted() >= 300).then_some(())
    })
    .await;
    system.receiver_amqp.blackhole();

    let probe_started = Instant::now();
    let answer = system
        .app
        .purchase(
            &system.contest,
            json!({"email": "probe@example.com", "orderId": "probe-partition", "amount": "1"}),
        )
        .await;
    let probe_took = probe_started.elapsed();
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        answer.body
    );
    assert!(
        probe_took < Duration::from_secs(5),
        "503 took {probe_took:?}"
    );
    let failed_before = progress.failed_attempts();
    wait::until("senders see 503s", PATIENCE, || async {
        (progress.failed_attempts() >= failed_before + 50).then_some(())
    })
    .await;

    let restored = Instant::now();
    system.receiver_amqp.restore();
    let report = sending.await.expect("sender");
    let recover = report
        .first_accepted_after(restored)
        .map_or(Duration::ZERO, |at| at.duration_since(restored));
    println!(
        "  broker_partition_receiver: a webhook during the partition got 503 in {} ms",
        probe_took.as_millis()
    );
    system
        .finish(
            "broker_partition_receiver",
            &plan,
            &report,
            recover,
            vec![worker],
        )
        .await;
}

/// Case 2, worker: the worker's broker connection is reset mid-stream (its unacked deliveries
/// go back to the queue), then restored: it reconnects, redeclares, resubscribes and drains the
/// backlog. Before the load, the server cancels its consumer (the queue is deleted while empty):
/// it redeclares the queue and subscribes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_cut_for_the_worker() {
    let system = System::start().await;
    let worker = system.spawn_worker(&[]);
    wait::until("worker subscribed", PATIENCE, || async {
        (system.events_queue().await.1 >= 1).then_some(())
    })
    .await;

    // Consumer cancelled by the server: nothing is in the queue, so nothing is lost.
    let (connection, channel) = broker::channel().await;
    channel
        .queue_delete(
            system.topology.queue.as_str().into(),
            QueueDeleteOptions::default(),
        )
        .await
        .expect("delete the empty events queue");
    let _ = connection.close(200, "done".into()).await;
    wait::until("worker resubscribed", PATIENCE, || async {
        (system.events_queue().await.1 >= 1).then_some(())
    })
    .await;

    let plan = Arc::new(Plan::with_duplicates("bcw", 2000));
    let sender = system.sender();
    let progress = sender.progress();
    let sending = sender.spawn(plan.clone());
    system.until_recorded(400).await;
    system.worker_amqp.cut();
    let accepted_at_cut = progress.accepted();
    wait::until(
        "a backlog builds while the worker is away",
        PATIENCE,
        || async {
            (progress.accepted() >= (accepted_at_cut + 500).min(plan.deliveries())).then_some(())
        },
    )
    .await;
    assert!(
        system.events_queue().await.0 > 0,
        "messages wait in the queue"
    );

    let recorded_then = system.recorded().await;
    let restored = Instant::now();
    system.worker_amqp.restore();
    let recover = system.progress_after(restored, recorded_then).await;
    let report = sending.await.expect("sender");
    system
        .finish("broker_cut_worker", &plan, &report, recover, vec![worker])
        .await;
}

/// Case 3, worker: Postgres is cut from the worker mid-stream. It holds its batch and retries
/// with capped, jittered backoff, nothing is acked or dead-lettered meanwhile, and it carries
/// on when Postgres is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cut_for_the_worker() {
    let system = System::start().await;
    let worker = system.spawn_worker(&[]);
    let plan = Arc::new(Plan::with_duplicates("pcw", 2000));
    let sender = system.sender();
    let progress = sender.progress();
    let sending = sender.spawn(plan.clone());

    system.until_recorded(400).await;
    system.worker_pg.cut();
    let accepted_at_cut = progress.accepted();
    wait::until(
        "a backlog builds while the database is away",
        PATIENCE,
        || async {
            (progress.accepted() >= (accepted_at_cut + 500).min(plan.deliveries())).then_some(())
        },
    )
    .await;
    assert_eq!(
        broker::ready_messages(&system.topology.dead_letter_queue).await,
        0,
        "an outage dead-letters nothing"
    );
    // Premise: the outage caught the worker with work in hand, held unacked at the broker.
    let (_, held) = wait::until("the worker holds unacked messages", PATIENCE, || async {
        broker::queue_counts(&system.topology.queue)
            .await
            .filter(|(_, unacked)| *unacked > 0)
    })
    .await;
    println!("  postgres_cut_worker: {held} messages held unacked during the outage");

    let recorded_then = system.recorded().await;
    let restored = Instant::now();
    system.worker_pg.restore();
    let recover = system.progress_after(restored, recorded_then).await;
    let report = sending.await.expect("sender");
    assert_eq!(
        broker::ready_messages(&system.topology.dead_letter_queue).await,
        0
    );
    system
        .finish("postgres_cut_worker", &plan, &report, recover, vec![worker])
        .await;
}

/// Case 3, receiver: Postgres is cut from the receiver mid-stream. Webhooks for the known
/// contest keep getting 200 from the cache, not one retry needed; an unknown contest gets 503
/// (it cannot be checked), not 404; once Postgres is back, unknown contests are 404 again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cut_for_the_receiver() {
    let system = System::start().await;
    let worker = system.spawn_worker(&[]);
    let plan = Arc::new(Plan::with_duplicates("pcr", 2000));
    let sender = system.sender();
    let progress = sender.progress();
    let sending = sender.spawn(plan.clone());

    wait::until("load flowing", PATIENCE, || async {
        (progress.accepted() >= 300).then_some(())
    })
    .await;
    system.receiver_pg.cut();
    let accepted_at_cut = progress.accepted();

    let unknown = TestContest {
        id: format!("nope-{}", random_suffix(8)),
        secret: "whatever".into(),
        data: json!({}),
    };
    let probe = json!({"email": "probe@example.com", "orderId": "probe-db", "amount": "1"});
    let answer = system.app.purchase(&unknown, probe.clone()).await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        answer.body
    );
    assert_eq!(answer.error_code(), "database_unavailable");
    wait::until(
        "known contest accepted during the outage",
        PATIENCE,
        || async {
            (progress.accepted() >= (accepted_at_cut + 500).min(plan.deliveries())).then_some(())
        },
    )
    .await;

    let restored = Instant::now();
    system.receiver_pg.restore();
    let unknown_again = TestContest {
        id: format!("nope-{}", random_suffix(8)),
        ..unknown
    };
    wait::until("unknown contests are 404 again", PATIENCE, || async {
        let answer = system.app.purchase(&unknown_again, probe.clone()).await;
        (answer.status == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    let recover = restored.elapsed();

    let report = sending.await.expect("sender");
    assert!(
        report.failures().is_empty(),
        "known contests never failed: {:?}",
        report.failures()
    );
    system
        .finish(
            "postgres_cut_receiver",
            &plan,
            &report,
            recover,
            vec![worker],
        )
        .await;
}

/// Case 4: SIGTERM during load. The worker stops taking deliveries, finishes and acks the batch
/// it holds and exits 0; a new worker takes the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_load_drains() {
    let system = System::start().await;
    let mut draining = system.spawn_worker(&[]);
    let plan = Arc::new(Plan::with_duplicates("term", 2000));
    let sending = system.sender().spawn(plan.clone());

    system.until_recorded(400).await;
    let terminated = Instant::now();
    draining.terminate();
    assert_eq!(
        exit_code(&mut draining).await,
        Some(0),
        "drains and exits 0"
    );
    let drained_in = terminated.elapsed();

    let recorded_then = system.recorded().await;
    let started = Instant::now();
    let successor = system.spawn_worker(&[]);
    let recover = system.progress_after(started, recorded_then).await;
    let report = sending.await.expect("sender");
    println!(
        "  sigterm_drain: exited 0 after {} ms",
        drained_in.as_millis()
    );
    system
        .finish("sigterm_drain", &plan, &report, recover, vec![successor])
        .await;
}

/// Case 5: four workers, every order delivered three times back to back, so copies of the same
/// order are in flight on different workers at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_with_concurrent_duplicates() {
    let system = System::start().await;
    let logs: Vec<DeliveryLog> = (0..4).map(|_| DeliveryLog::new()).collect();
    let workers: Vec<_> = logs
        .iter()
        .map(|log| system.spawn_worker(&[("WORKER_BATCH_SIZE", "10"), delivery_log(log)]))
        .collect();
    wait::until("four consumers", PATIENCE, || async {
        (system.events_queue().await.1 >= 4).then_some(())
    })
    .await;
    let plan = Plan::repeated("dup", 1000, 3);
    let report = system.sender().concurrency(48).send(&plan).await;
    system
        .finish(
            "four_workers_duplicates",
            &plan,
            &report,
            Duration::ZERO,
            workers,
        )
        .await;
    // Premise: copies of the same order really reached different workers.
    let spread = spread_over_workers(&logs.iter().collect::<Vec<_>>());
    let busy = logs.iter().filter(|log| !log.ids().is_empty()).count();
    println!("  four_workers_duplicates: {spread} orders had copies taken by two or more of {busy} workers");
    assert_eq!(busy, 4, "premise: all four workers took deliveries");
    assert!(
        spread >= plan.unique() / 10,
        "premise: copies of the same order reached different workers ({spread} orders)"
    );
}

/// Case 6: workers that die after their commit and before their ack, three times in a row; the
/// redeliveries find the purchases recorded and award nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_commit_before_ack() {
    let system = System::start().await;
    let plan = Arc::new(Plan::with_duplicates("cac", 1500));
    let sending = system.sender().spawn(plan.clone());

    let mut crashed_at = Instant::now();
    for _ in 0..3 {
        let mut doomed = system.spawn_worker(&[("BLITZ_FAILPOINT", "exit_after_commit")]);
        assert_eq!(
            exit_code(&mut doomed).await,
            Some(3),
            "the failpoint fired after a commit"
        );
        crashed_at = Instant::now();
    }
    let recorded_then = system.recorded().await;
    assert!(recorded_then > 0, "the crashed workers committed");
    let healthy = system.spawn_worker(&[]);
    let recover = system.progress_after(crashed_at, recorded_then).await;
    let report = sending.await.expect("sender");
    system
        .finish("crash_after_commit", &plan, &report, recover, vec![healthy])
        .await;
}

/// Case 7: a purchase for a contest that does not exist yet, and a message that is not an
/// event at all, are dead-lettered while the load flows. `worker dlq count|list` show them; a
/// replay before the contest exists sends the purchase straight back to the dead-letter queue;
/// once the contest is created, a replay brings it back and it awards exactly once. The garbage
/// dies again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_dead_letter_and_replay_once() {
    let system = System::start().await;
    let worker = system.spawn_worker(&[]);
    let plan = Arc::new(Plan::with_duplicates("poison", 1500));
    let sending = system.sender().spawn(plan.clone());

    let late_id = format!("late-{}", random_suffix(8));
    let poison = late_purchase(&late_id);
    publish(&system.topology, &poison.0, Some(&poison.1)).await;
    publish(&system.topology, b"this is not an event", None).await;

    let connection = shared::amqp::connect(&amqp_url(), "test-dlq")
        .await
        .expect("connect");
    wait::until("two dead letters", PATIENCE, || async {
        let count = worker::dlq::count(&connection, &system.topology)
            .await
            .ok()?;
        (count == 2).then_some(())
    })
    .await;

    // The operator's view, through the real binary.
    let listed = dlq_cli(&system.app.env, &["list"]).await;
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(
        listed.contains(&format!("id={}", poison.1)) && listed.contains("reason=rejected"),
        "{listed}"
    );
    assert_eq!(dlq_cli(&system.app.env, &["count"]).await.trim(), "2");

    // Replayed too early: the contest still does not exist, so it dies again.
    assert_eq!(
        worker::dlq::replay(&connection, &system.topology, usize::MAX)
            .await
            .expect("replay"),
        2
    );
    wait::until("both dead again", PATIENCE, || async {
        let letters = worker::dlq::list(&connection, &system.topology, 10)
            .await
            .ok()?;
        (letters.len() == 2 && letters.iter().all(|l| l.replays == 1)).then_some(())
    })
    .await;

    // The cause is fixed: the contest now exists. Replay brings the purchase back once.
    let late = system.app.create_contest(json!({ "id": late_id })).await;
    let replayed_at = Instant::now();
    assert_eq!(
        worker::dlq::replay(&connection, &system.topology, usize::MAX)
            .await
            .expect("replay"),
        2
    );
    let data = system.app.recorded(&late, "late-1", None).await;
    let recover = replayed_at.elapsed();
    assert_eq!(data["pointsAwarded"], 80);
    wait::until("only the garbage is left", PATIENCE, || async {
        let letters = worker::dlq::list(&connection, &system.topology, 10)
            .await
            .ok()?;
        (letters.len() == 1 && letters[0].message_id.is_none()).then_some(())
    })
    .await;
    assert_eq!(system.app.total_points(&late).await, 80);
    assert_eq!(system.app.purchase_count(&late).await, 1);
    let _ = connection.close(200, "done".into()).await;

    let report = sending.await.expect("sender");
    system
        .finish("poison_replay", &plan, &report, recover, vec![worker])
        .await;
}

/// Slow and hostile clients: a client that never finishes its headers is disconnected, and
/// more requests than the concurrency cap get 503 at once instead of queueing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_overload_is_503() {
    let env = TestEnv::new();
    let mut config = env.receiver_config();
    config.max_concurrency = 2;
    let receiver = RunningReceiver::start(config).await;
    let app = App {
        env,
        receivers: vec![receiver],
        workers: Vec::new(),
        http: reqwest::Client::new(),
    };
    let contest = app.create_contest(json!({})).await;
    let address = app.public_url().trim_start_matches("http://").to_owned();
    let path = format!("/api/webhooks/purchase/{}", contest.id);

    // Headers trickled and never finished: the connection is closed (well before a minute).
    let mut trickler = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    trickler
        .write_all(format!("POST {path} HTTP/1.1\r\nHost: x\r\n").as_bytes())
        .await
        .expect("write");
    let mut buffer = [0u8; 512];
    let closed = tokio::time::timeout(PATIENCE, async {
        loop {
            match trickler.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a client stuck in its headers is disconnected"
    );

    // Two requests whose bodies never come hold both slots; a third is turned away at once.
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut stream = tokio::net::TcpStream::connect(&address)
            .await
            .expect("connect");
        stream
            .write_all(
                format!(
                    "POST {path} HTTP/1.1\r\nHost: x\r\nX-Webhook-Secret: {}\r\n\
                     Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
                    contest.secret
                )
                .as_bytes(),
            )
            .await
            .expect("write");
        holders.push(stream);
    }
    let answer = wait::until("the cap turns requests away", PATIENCE, || async {
        let answer = app
            .purchase(
                &contest,
                json!({"email": "x@example.com", "orderId": "over", "amount": "1"}),
            )
            .await;
        (answer.status == StatusCode::SERVICE_UNAVAILABLE).then_some(answer)
    })
    .await;
    assert_eq!(answer.error_code(), "overloaded");
    assert!(answer.headers.contains_key("retry-after"));
    // The cap is one for the whole listener, not one per route.
    let other_route = app.lookup(&contest, "over", None).await;
    assert_eq!(
        other_route.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        other_route.body
    );
    // The held requests end with 408 once the body deadline passes, freeing the slots.
    for mut stream in holders {
        let mut head = Vec::new();
        let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut head)).await;
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 408"), "{head}");
        assert!(head.contains(r#""code":"request_timeout""#), "{head}");
    }
    app.stop().await;
}

/// A valid purchase envelope for `contest_id` (79.99 USD, 80 points) and its message id.
fn late_purchase(contest_id: &str) -> (Vec<u8>, String) {
    let contest = ContestId::parse(contest_id).expect("contest id");
    let order = OrderId::parse("late-1").expect("order id");
    let purchase_id = PurchaseId::derive(&contest, Source::Api, &order);
    let body = json!({
        "version": shared::event::SCHEMA_VERSION,
        "event": {
            "type": "purchase",
            "purchaseId": purchase_id,
            "contestId": contest_id,
            "source": "api",
            "orderId": "late-1",
            "email": "late@example.com",
            "money": Money::from_minor(7999, Currency::USD).expect("money"),
            "receivedAt": chrono::Utc::now(),
        }
    })
    .to_string()
    .into_bytes();
    Envelope::from_bytes(&body).expect("a valid event, only its contest is missing");
    (body, purchase_id.to_string())
}

/// Publishes straight to the events exchange with a confirm, as a producer would.
async fn publish(topology: &Topology, body: &[u8], message_id: Option<&str>) {
    let (connection, channel) = broker::channel().await;
    topology.ensure(&connection).await.expect("declare");
    channel
        .confirm_select(Default::default())
        .await
        .expect("confirm mode");
    let mut properties = BasicProperties::default().with_delivery_mode(2);
    if let Some(id) = message_id {
        properties = properties
            .with_message_id(id.into())
            .with_type("purchase".into());
    }
    channel
        .basic_publish(
            topology.exchange.as_str().into(),
            ROUTING_KEY.into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    let _ = connection.close(200, "done".into()).await;
}

/// Runs `worker dlq <args>` for this test's queues and returns its standard output.
async fn dlq_cli(env: &TestEnv, args: &[&str]) -> String {
    let output = tokio::process::Command::new(worker_binary())
        .arg("dlq")
        .args(args)
        .envs(env.process_env())
        .env("RUST_LOG", "error")
        .output()
        .await
        .expect("run worker dlq");
    assert!(output.status.success(), "worker dlq {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}
