//! Fault cases on a real 3-node RabbitMQ cluster (started by `scripts/rabbitmq-cluster.sh`,
//! nodes of this test's own): a node is SIGKILLed while purchases stream in, and it stays down.
//!
//! Each case places the queue's leader on a chosen node (quorum queues put the leader where the
//! declaring client is connected), starts the receiver and a worker process with `AMQP_URL`
//! listing the three nodes (both connect to node 1, the first listed), checks that placement,
//! kills one node mid-stream, and ends with the exact-points audit after the queue is drained
//! and nothing is unacknowledged. Each prints
//!
//! `FAULT case=<name> sent=… awarded=… lost=… doubled=… failed=… failed_but_recorded=… recover_ms=…`
//!
//! - `cluster_follower_killed`: a node that is neither the leader nor the clients' node.
//! - `cluster_leader_killed`: the queue leader's node; a new leader is elected.
//! - `cluster_connected_node_killed`: the node the receiver and the worker are connected to;
//!   both move to another node, webhooks answer 503 for at most 10 s (the contract), and
//!   confirms outstanding on the lost connection are answered 503, never 200.
//!
//! The cases run one at a time (a lock), each cluster being three Erlang VMs.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::json;
use shared::amqp::{Connector, Nodes, Topology};
use testkit::{
    app::RunningReceiver,
    deliveries::DeliveryLog,
    env::postgres_server,
    process::ChildProcess,
    rabbit::RabbitCluster,
    sender::{Audit, Plan, Sender},
    wait, App, TestEnv,
};
use tokio::sync::Mutex;

/// One cluster at a time: three nodes per case are enough for two shared cores.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// Generous bound for anything that should take seconds.
const PATIENCE: Duration = Duration::from_secs(90);

fn worker_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_worker"))
}

/// Which node a case kills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Victim {
    /// Neither the leader nor the clients' node.
    Follower,
    /// The queue leader's node (clients elsewhere).
    Leader,
    /// The node the receiver and the worker are connected to (the leader elsewhere).
    Connected,
}

impl Victim {
    /// `(node the leader is placed on, node killed)`; clients are always on node 1.
    fn layout(self) -> (usize, usize) {
        match self {
            Victim::Follower => (2, 3),
            Victim::Leader => (3, 3),
            Victim::Connected => (2, 1),
        }
    }

    fn case(self) -> &'static str {
        match self {
            Victim::Follower => "cluster_follower_killed",
            Victim::Leader => "cluster_leader_killed",
            Victim::Connected => "cluster_connected_node_killed",
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_node_killed_during_purchases() {
    run_case(Victim::Follower).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_node_killed_during_purchases() {
    run_case(Victim::Leader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_node_killed_during_purchases() {
    run_case(Victim::Connected).await;
}

async fn run_case(victim: Victim) {
    let _serial = SERIAL.lock().await;
    let case = victim.case();
    let (leader_node, killed) = victim.layout();
    let cluster = RabbitCluster::start(3).await;
    let env = TestEnv::on(&postgres_server(), &cluster.amqp_url());
    let topology = Topology::for_config(&env.receiver_config().common);
    assert_eq!(
        topology.quorum_group_size,
        Some(3),
        "three nodes listed: three replicas"
    );

    // The queue is created through `leader_node`, so its leader lives there.
    let nodes = Nodes::parse(&cluster.url(leader_node)).expect("node url");
    let declaring = Connector::new(nodes, "test-declare", Duration::from_secs(10))
        .connect()
        .await
        .expect("connect to the leader's node")
        .connection;
    topology.ensure(&declaring).await.expect("declare");
    let _ = declaring.close(200, "declared".into()).await;
    assert_eq!(
        cluster.members(&topology.queue).await,
        Some(vec![1, 2, 3]),
        "a replica on every node"
    );
    assert_eq!(
        cluster.leader(&topology.queue).await,
        Some(leader_node),
        "premise: the leader is where the queue was declared"
    );

    let receiver = RunningReceiver::start(env.receiver_config()).await;
    let app = App {
        env,
        receivers: vec![receiver],
        workers: Vec::new(),
        http: reqwest::Client::new(),
    };
    let worker_log = DeliveryLog::new();
    let (log_var, log_path) = worker_log.env();
    let worker = ChildProcess::spawn_captured(
        worker_binary(),
        &app.env,
        &[
            ("WORKER_ADDR", "127.0.0.1:0"),
            ("WORKER_BATCH_SIZE", "50"),
            ("WORKER_BATCH_WAIT_MS", "5"),
            (log_var, log_path.as_str()),
        ],
    );
    worker.logged("consuming", PATIENCE).await;
    let contest = app.create_contest(json!({})).await;

    // Premise: both clients are on node 1, the first node listed.
    wait::until(
        "receiver and worker connected to node 1",
        PATIENCE,
        || async {
            let receiver = cluster.connections_of("receiver").await?;
            let worker = cluster.connections_of("worker").await?;
            (receiver == [1] && worker == [1]).then_some(())
        },
    )
    .await;

    let plan = Arc::new(Plan::with_duplicates(case, 2000));
    // Paced, so the stream (about 15 s) is still flowing when the node dies on any machine.
    let sender = Sender::new(app.public_url(), &contest.id, &contest.secret).pace(200);
    let progress = sender.progress();
    let sending = sender.spawn(plan.clone());
    let pool = app.env.pool().await;
    let recorded = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM purchases WHERE contest_id = $1")
            .bind(&contest.id)
            .fetch_one(&pool)
            .await
            .unwrap_or(0)
    };
    wait::until("purchases flowing end to end", PATIENCE, || async {
        (progress.accepted() >= 600 && recorded().await >= 300).then_some(())
    })
    .await;

    let publishes_before = publish_failures(&app).await;
    let accepted_at_kill = progress.accepted();
    let recorded_at_kill = recorded().await;
    let failed_before = progress.failed_attempts();
    cluster.kill(killed).await;
    let killed_at = Instant::now();
    println!("  {case}: node {killed} SIGKILLed after {accepted_at_kill} accepted, {recorded_at_kill} recorded");

    // The system goes on without the dead node.
    wait::until("purchases recorded after the kill", PATIENCE, || async {
        (recorded().await > recorded_at_kill + 100).then_some(())
    })
    .await;
    let recover = killed_at.elapsed();
    match victim {
        Victim::Follower => {}
        Victim::Leader => {
            let elected = wait::until("a new leader elected", PATIENCE, || async {
                cluster
                    .leader(&topology.queue)
                    .await
                    .filter(|node| *node != killed)
            })
            .await;
            println!("  {case}: new leader on node {elected}");
            assert_eq!(
                cluster.connections_of("receiver").await,
                Some(vec![1]),
                "the receiver kept its node"
            );
        }
        Victim::Connected => {
            let moved = wait::until("receiver and worker on another node", PATIENCE, || async {
                let receiver = cluster.connections_of("receiver").await?;
                let worker = cluster.connections_of("worker").await?;
                let elsewhere = |nodes: &[usize]| !nodes.is_empty() && !nodes.contains(&killed);
                (elsewhere(&receiver) && elsewhere(&worker)).then_some((receiver, worker))
            })
            .await;
            println!(
                "  {case}: receiver moved to node {:?}, worker to node {:?}",
                moved.0, moved.1
            );
            worker.logged("lost the broker node", PATIENCE).await;
        }
    }

    let report = sending.await.expect("sender");
    let queue = topology.queue.clone();
    let audit = Audit::after_drain(&pool, &contest.id, &plan, &report, PATIENCE, || {
        cluster.queue_counts(&queue)
    })
    .await;
    println!("{}", audit.line(case, recover));
    let failures_after = progress.failed_attempts() - failed_before;
    let publish_failures_after = publish_failures(&app).await - publishes_before;
    println!(
        "  {case}: {} deliveries, failed attempts {:?}, sender outage {} ms, \
         publishes answered 503 after the kill {publish_failures_after}",
        plan.deliveries(),
        report.failures(),
        report.outage().as_millis(),
    );
    // The proof first, whatever else failed: every 200 awarded exactly once.
    audit.assert_exact();
    assert!(
        report.given_up().is_empty(),
        "{case}: {} deliveries were never accepted",
        report.given_up().len()
    );
    assert!(
        accepted_at_kill < report.accepted(),
        "premise: purchases were still streaming when the node died"
    );
    if victim == Victim::Connected {
        // Premise: the loss hit requests in flight (confirms outstanding, or requests arriving
        // before the reconnect), and they were answered 503, never 200.
        assert!(
            failures_after > 0 && publish_failures_after > 0.0,
            "premise: the kill overlapped requests in flight ({failures_after} failed attempts, \
             {publish_failures_after} failed publishes)"
        );
        assert!(
            report.outage() <= Duration::from_secs(10),
            "webhooks answered 503 for {:?}, the contract allows 10 s",
            report.outage()
        );
    }
    let logged = worker_log.ids();
    assert!(
        logged.len() >= plan.unique() / 2,
        "the worker's delivery log saw the stream"
    );

    let mut worker = worker;
    worker.terminate();
    let _ = tokio::time::timeout(PATIENCE, worker.wait()).await;
    pool.close().await;
    app.stop().await;
    drop(cluster);
}

/// Publishes that failed (not confirmed, answered 503) so far, from the receiver's `/metrics`.
async fn publish_failures(app: &App) -> f64 {
    let text = app
        .http
        .get(format!("{}/metrics", app.admin_url()))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|line| line.starts_with("blitz_publish_total{") && !line.contains("confirmed"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
