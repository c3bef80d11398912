//! Reversals under the faults the purchase path survives, with real worker processes: every
//! copy of every reversal spread over four workers, a worker SIGKILLed in the middle of a mixed
//! stream, and a redelivery after a commit whose ack never left. Each case ends with exact totals
//! per entry and balanced books.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::Path,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{assert_books_balance, contest, points, wait_for_count, wait_for_reversals, Events};
use rand::{seq::SliceRandom, SeedableRng};
use serde_json::{json, Value};
use shared::{amqp::Topology, event::Envelope};
use testkit::{broker, process::ChildProcess, wait, App, TestEnv};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

fn worker_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_worker"))
}

/// A worker process whose JSON log lines are kept, to see which worker settled what.
struct LoggedWorker {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl LoggedWorker {
    fn spawn(env: &TestEnv, extra: &[(&str, &str)]) -> Self {
        let mut child = Command::new(worker_binary())
            .envs(env.process_env())
            .env("WORKER_ADDR", "127.0.0.1:0")
            .env("LOG_FORMAT", "json")
            .env(
                "RUST_LOG",
                "info,lapin=warn,sqlx=warn,worker::outcome_metrics=debug",
            )
            .envs(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn worker");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("piped stdout");
        let sink = lines.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap().push(value);
                }
            }
        });
        Self { child, lines }
    }

    /// `(reversal id, outcome)` of every reversal event this worker settled.
    fn settled(&self) -> Vec<(String, String)> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line["message"] == "reversal settled" && line["via"] == "event")
            .map(|line| {
                (
                    line["reversal_id"].as_str().unwrap_or("").to_owned(),
                    line["outcome"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let code = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("worker drains")
            .expect("exit status");
        assert_eq!(code.code(), Some(0), "SIGTERM drains and exits 0");
    }
}

/// Waits until `count` consumers are subscribed to the events queue.
async fn wait_for_consumers(prefix: &str, count: u32) {
    let queue = Topology::new(prefix).queue;
    wait::until("consumers subscribed", Duration::from_secs(60), || async {
        let (connection, channel) = broker::channel().await;
        let found = shared::amqp::inspect(&channel, &queue)
            .await
            .map(|q| q.consumer_count())
            .unwrap_or(0);
        let _ = connection.close(200, "done".into()).await;
        (found == count).then_some(())
    })
    .await;
}

/// Waits until the events queue holds no message, ready or unacknowledged: only then has every
/// copy (trailing duplicates included) been settled and can the books be audited.
async fn wait_for_empty_queue(prefix: &str) {
    let queue = Topology::new(prefix).queue;
    wait::until(
        "queue drained and settled",
        Duration::from_secs(60),
        || async { (broker::queue_counts(&queue).await == Some((0, 0))).then_some(()) },
    )
    .await;
}

/// One buyer's share of a mixed stream: a 100.00 purchase, refunds of 25.00 and 15.00, and for
/// some a chargeback, for some of those its win. Returns the events and the points it ends with.
fn mixed(events: &Events, i: usize) -> (Vec<Envelope>, i64) {
    let order = format!("M-{i}");
    let mut stream = vec![
        events.purchase(&order, &format!("m{i}@example.com"), "100.00"),
        events.refund(&order, "r1", "25.00"),
        events.refund(&order, "r2", "15.00"),
    ];
    let mut expected = 60;
    if i % 3 == 0 {
        stream.push(events.chargeback(&order, "dp", false));
        expected = 0;
        if i % 6 == 0 {
            stream.push(events.chargeback(&order, "dp", true));
            expected = 60;
        }
    }
    (stream, expected)
}

/// Asserts every buyer's exact points and that each purchase's reversals add up to what the
/// purchase shows taken back.
async fn assert_exact(pool: &sqlx::PgPool, events: &Events, expected: &BTreeMap<String, i64>) {
    for (email, points_expected) in expected {
        assert_eq!(
            points(pool, &events.entry(email)).await,
            *points_expected,
            "{email}"
        );
    }
    let inconsistent: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM purchases p WHERE p.points_reversed <> \
         (SELECT COALESCE(SUM(r.points_reversed), 0) FROM reversals r WHERE r.purchase_id = p.id)",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(inconsistent, 0, "each reversal's effect is recorded once");
    assert_eq!(assert_books_balance(pool).await, expected.len());
}

#[tokio::test]
async fn every_reversal_sent_three_times_to_four_workers_applies_once() {
    let app = App::receiver_only().await;
    let (_c, events) = contest(&app, json!({})).await;
    let prefix = app.env.amqp_prefix.clone();
    let pool = app.env.pool().await;
    // One message per batch and per prefetch: the broker hands consecutive messages to
    // different consumers, so the copies of one reversal meet on different workers.
    let settings = [
        ("WORKER_BATCH_SIZE", "1"),
        ("WORKER_PREFETCH", "1"),
        ("WORKER_CONCURRENCY", "1"),
    ];
    let workers: Vec<LoggedWorker> = (0..4)
        .map(|_| LoggedWorker::spawn(&app.env, &settings))
        .collect();
    wait_for_consumers(&prefix, 4).await;

    let buyers = 40;
    let mut expected = BTreeMap::new();
    let mut purchases = Vec::new();
    let mut reversals = Vec::new();
    for i in 0..buyers {
        let (stream, points) = mixed(&events, i);
        expected.insert(format!("m{i}@example.com"), points);
        purchases.push(stream[0].clone());
        reversals.extend(stream[1..].iter().cloned());
    }
    broker::publish_events(&prefix, &purchases).await;
    wait_for_count(
        &pool,
        "purchases",
        "SELECT COUNT(*) FROM purchases",
        buyers as i64,
    )
    .await;

    // Every reversal three times in a row.
    let copies: Vec<Envelope> = reversals
        .iter()
        .flat_map(|event| std::iter::repeat_n(event.clone(), 3))
        .collect();
    broker::publish_events(&prefix, &copies).await;
    wait_for_reversals(&pool, reversals.len() as i64).await;
    wait_for_empty_queue(&prefix).await;
    wait::until("every copy logged", Duration::from_secs(30), || async {
        let logged: usize = workers.iter().map(|w| w.settled().len()).sum();
        (logged == copies.len()).then_some(())
    })
    .await;

    // Which workers saw each reversal, and what each copy came to.
    let mut seen: HashMap<String, (BTreeSet<usize>, Vec<String>)> = HashMap::new();
    for (n, worker) in workers.iter().enumerate() {
        for (id, outcome) in worker.settled() {
            let slot = seen.entry(id).or_default();
            slot.0.insert(n);
            slot.1.push(outcome);
        }
    }
    assert_eq!(seen.len(), reversals.len());
    for (id, (_, outcomes)) in &seen {
        let mut outcomes = outcomes.clone();
        outcomes.sort();
        assert_eq!(
            outcomes,
            ["applied", "duplicate", "duplicate"],
            "{id}: one copy applied, the others duplicates"
        );
    }
    let spread = seen
        .values()
        .filter(|(workers, _)| workers.len() >= 2)
        .count();
    println!(
        "{} reversals × 3 copies; copies on ≥ 2 workers: {spread}; per worker: {:?}",
        reversals.len(),
        workers
            .iter()
            .map(|w| w.settled().len())
            .collect::<Vec<_>>()
    );
    assert!(
        spread * 2 > seen.len(),
        "the premise: most reversals' copies reached different workers ({spread} of {})",
        seen.len()
    );
    assert_exact(&pool, &events, &expected).await;
    for worker in workers {
        worker.stop().await;
    }
    pool.close().await;
    app.stop().await;
}

#[tokio::test]
async fn a_worker_killed_in_a_mixed_stream_loses_and_doubles_nothing() {
    let app = App::receiver_only().await;
    let (_c, events) = contest(&app, json!({})).await;
    let prefix = app.env.amqp_prefix.clone();
    let pool = app.env.pool().await;
    let settings = [
        ("WORKER_BATCH_SIZE", "10"),
        ("WORKER_ADDR", "127.0.0.1:0"),
        ("WORKER_PENDING_SWEEP_MS", "500"),
    ];

    // Purchases, partial refunds, chargebacks and wins, each sent twice, shuffled: many
    // reversals arrive before their purchase.
    let buyers = 150;
    let mut expected = BTreeMap::new();
    let mut stream = Vec::new();
    for i in 0..buyers {
        let (events, points) = mixed(&events, i);
        expected.insert(format!("m{i}@example.com"), points);
        stream.extend(events.iter().cloned());
        stream.extend(events);
    }
    let distinct_reversals = (stream.len() / 2 - buyers) as i64;
    stream.shuffle(&mut rand::rngs::StdRng::seed_from_u64(10));

    let mut doomed = ChildProcess::spawn(worker_binary(), &app.env, &settings);
    let mut survivor = ChildProcess::spawn(worker_binary(), &app.env, &settings);
    wait_for_consumers(&prefix, 2).await;
    broker::publish_events(&prefix, &stream).await;

    // Kill one worker once the stream is well under way.
    let progress = || async {
        let done: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM purchases) + \
             (SELECT COUNT(*) FROM reversals WHERE status <> 'pending')",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        done
    };
    let total = buyers as i64 + distinct_reversals;
    wait::until("a quarter done", Duration::from_secs(60), || async {
        (progress().await * 4 >= total).then_some(())
    })
    .await;
    doomed.kill().await;
    let at_kill = progress().await;
    println!("killed a worker at {at_kill} of {total} events settled");
    assert!(at_kill < total, "the premise: killed mid-stream");
    let mut replacement = ChildProcess::spawn(worker_binary(), &app.env, &settings);

    wait_for_count(
        &pool,
        "purchases",
        "SELECT COUNT(*) FROM purchases",
        buyers as i64,
    )
    .await;
    wait_for_reversals(&pool, distinct_reversals).await;
    wait_for_empty_queue(&prefix).await;
    assert_exact(&pool, &events, &expected).await;

    for worker in [&mut survivor, &mut replacement] {
        worker.terminate();
        let code = tokio::time::timeout(Duration::from_secs(30), worker.wait())
            .await
            .expect("worker drains");
        assert_eq!(code, Some(0));
    }
    pool.close().await;
    app.stop().await;
}

#[tokio::test]
async fn reversals_redelivered_after_a_commit_whose_ack_was_lost_change_nothing() {
    let app = App::receiver_only().await;
    let (_c, events) = contest(&app, json!({})).await;
    let prefix = app.env.amqp_prefix.clone();
    let pool = app.env.pool().await;
    let queue = Topology::new(&prefix).queue;

    let buyers = 20;
    let mut expected = BTreeMap::new();
    let mut purchases = Vec::new();
    let mut reversals = Vec::new();
    for i in 0..buyers {
        let (stream, points) = mixed(&events, i);
        expected.insert(format!("m{i}@example.com"), points);
        purchases.push(stream[0].clone());
        reversals.extend(stream[1..].iter().cloned());
    }
    let first = LoggedWorker::spawn(&app.env, &[]);
    broker::publish_events(&prefix, &purchases).await;
    wait_for_count(
        &pool,
        "purchases",
        "SELECT COUNT(*) FROM purchases",
        buyers as i64,
    )
    .await;
    first.stop().await;

    // The reversals wait in the queue; a worker takes them, commits, and dies before acking.
    broker::publish_events(&prefix, &reversals).await;
    let mut doomed = ChildProcess::spawn(
        worker_binary(),
        &app.env,
        &[
            ("BLITZ_FAILPOINT", "exit_after_commit"),
            ("WORKER_ADDR", "127.0.0.1:0"),
            ("WORKER_CONCURRENCY", "1"),
            ("WORKER_BATCH_SIZE", "10"),
        ],
    );
    let code = tokio::time::timeout(Duration::from_secs(30), doomed.wait())
        .await
        .expect("worker exits");
    assert_eq!(code, Some(3), "the failpoint fired");
    let committed: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM reversals WHERE status = 'applied'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        committed > 0,
        "the premise: reversals were committed before the crash"
    );
    // Everything it held, the committed batch included, is back in the queue.
    wait::until("messages requeued", Duration::from_secs(10), || async {
        (broker::ready_messages(&queue).await as usize == reversals.len()).then_some(())
    })
    .await;
    let before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM points_ledger")
        .fetch_one(&pool)
        .await
        .unwrap();

    let healthy = LoggedWorker::spawn(&app.env, &[]);
    wait_for_reversals(&pool, reversals.len() as i64).await;
    wait_for_empty_queue(&prefix).await;
    wait::until(
        "every redelivery logged",
        Duration::from_secs(30),
        || async { (healthy.settled().len() == reversals.len()).then_some(()) },
    )
    .await;
    let duplicates = healthy
        .settled()
        .iter()
        .filter(|(_, outcome)| outcome == "duplicate")
        .count();
    assert_eq!(
        duplicates as i64, committed,
        "the redelivered committed reversals were recognised as duplicates"
    );
    let after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM points_ledger")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        after > before,
        "the reversals not committed before were applied after"
    );
    assert_exact(&pool, &events, &expected).await;
    healthy.stop().await;
    pool.close().await;
    app.stop().await;
}
