//! Real worker processes dying at the worst moments, and messages that can never succeed.

use std::{path::Path, time::Duration};

use reqwest::StatusCode;
use serde_json::json;
use testkit::{broker, process::ChildProcess, wait, App};

fn worker_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_worker"))
}

#[tokio::test]
async fn a_worker_that_dies_after_commit_before_ack_awards_nothing_on_redelivery() {
    let app = App::receiver_only().await;
    let contest = app.create_contest(json!({})).await;
    let topology = shared::amqp::Topology::new(&app.env.amqp_prefix);

    // The first worker commits the purchase, then exits before its ack reaches the broker.
    let mut doomed = ChildProcess::spawn(
        worker_binary(),
        &app.env,
        &[
            ("BLITZ_FAILPOINT", "exit_after_commit"),
            ("WORKER_ADDR", "127.0.0.1:0"),
        ],
    );
    let answer = app
        .purchase(
            &contest,
            json!({"email":"crash@example.com","orderId":"C-1","amount":"79.99"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let code = tokio::time::timeout(Duration::from_secs(30), doomed.wait())
        .await
        .expect("worker exits");
    assert_eq!(code, Some(3), "the failpoint fired");
    assert_eq!(
        app.lookup(&contest, "C-1", None).await.data()["pointsAwarded"],
        80
    );

    // The unacked message is back in the queue.
    wait::until("message requeued", Duration::from_secs(10), || async {
        (broker::ready_messages(&topology.queue).await == 1).then_some(())
    })
    .await;

    // A healthy worker takes the redelivery; it finds the purchase recorded and adds nothing.
    let mut healthy =
        ChildProcess::spawn(worker_binary(), &app.env, &[("WORKER_ADDR", "127.0.0.1:0")]);
    // Settled, not merely delivered: a delivery still in the worker's hands when SIGTERM lands
    // is rightly returned to the queue, which would make the checks below race the ack.
    wait::until("redelivery acked", Duration::from_secs(30), || async {
        (broker::queue_counts(&topology.queue).await == Some((0, 0))).then_some(())
    })
    .await;
    healthy.terminate();
    let code = tokio::time::timeout(Duration::from_secs(30), healthy.wait())
        .await
        .expect("worker drains");
    assert_eq!(code, Some(0), "SIGTERM drains and exits 0");
    // Had the redelivery not been acked, stopping the worker would have returned it.
    assert_eq!(broker::ready_messages(&topology.queue).await, 0);
    assert_eq!(app.total_points(&contest).await, 80);
    assert_eq!(app.purchase_count(&contest).await, 1);
    app.stop().await;
}

#[tokio::test]
async fn poison_messages_go_to_the_dead_letter_queue_and_the_rest_still_flow() {
    let app = App::with_workers(1).await;
    let contest = app.create_contest(json!({})).await;
    let topology = shared::amqp::Topology::new(&app.env.amqp_prefix);

    broker::publish_raw(&app.env.amqp_prefix, b"this is not an event").await;
    broker::publish_raw(&app.env.amqp_prefix, br#"{"version": 99, "event": {}}"#).await;
    let answer = app
        .purchase(
            &contest,
            json!({"email":"ok@example.com","orderId":"P-1","amount":"1"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    app.recorded(&contest, "P-1", None).await;

    wait::until("two dead letters", Duration::from_secs(20), || async {
        (broker::ready_messages(&topology.dead_letter_queue).await == 2).then_some(())
    })
    .await;
    assert_eq!(broker::ready_messages(&topology.queue).await, 0);
    app.stop().await;
}
