//! The registry of requests waiting for their outcome (`Prefer: wait`) cannot leak: on the real
//! `receiver` binary (its own process, so `blitz_sync_waiters` counts its requests alone), with
//! no worker running, waits that time out and requests whose client goes away both leave it,
//! and the gauge returns to 0.

mod common;

use std::time::{Duration, Instant};

use common::{free_port, receiver_process};
use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::{wait, TestEnv};

/// Reads one sample of the receiver's `/metrics` (`name` with its labels, as rendered).
async fn sample(client: &reqwest::Client, admin: &str, name: &str) -> f64 {
    let text = client
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waiter_registry_empties_after_timeouts_and_cancellations() {
    let env = TestEnv::new();
    let (public_port, admin_port) = (free_port(), free_port());
    let public = format!("http://127.0.0.1:{public_port}");
    let admin = format!("http://127.0.0.1:{admin_port}");
    let _child = receiver_process(&[
        ("DATABASE_URL", &env.database_url()),
        ("AMQP_URL", &testkit::env::amqp_url()),
        ("AMQP_PREFIX", &env.amqp_prefix),
        ("ADMIN_TOKEN", &env.admin_token),
        ("RECEIVER_ADDR", &format!("127.0.0.1:{public_port}")),
        ("ADMIN_ADDR", &format!("127.0.0.1:{admin_port}")),
    ]);
    let client = reqwest::Client::new();
    wait::until("receiver ready", Duration::from_secs(60), || async {
        let ready = client.get(format!("{admin}/readyz")).send().await.ok()?;
        (ready.status() == StatusCode::OK).then_some(())
    })
    .await;
    let created: Value = client
        .post(format!("{admin}/api/contests"))
        .bearer_auth(&env.admin_token)
        .json(&json!({"name": "Waiters"}))
        .send()
        .await
        .expect("create contest")
        .json()
        .await
        .expect("contest JSON");
    let (contest, secret) = (
        created["data"]["id"].as_str().unwrap().to_owned(),
        created["data"]["webhookSecret"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let waiting_purchase = |order: String| {
        let (client, url, secret) = (
            client.clone(),
            format!("{public}/api/webhooks/purchase/{contest}"),
            secret.clone(),
        );
        async move {
            let started = Instant::now();
            let answer = client
                .post(url)
                .header("x-webhook-secret", secret)
                .header("prefer", "wait=4")
                .json(&json!({"email": "jane@example.com", "orderId": order, "amount": "1"}))
                .send()
                .await
                .expect("answer");
            let status = answer.status();
            let body: Value = answer.json().await.expect("JSON");
            (status, body, started.elapsed())
        }
    };
    let waiters = || sample(&client, &admin, "blitz_sync_waiters");
    let timeouts = || {
        sample(
            &client,
            &admin,
            "blitz_sync_answers_total{result=\"timeout\"}",
        )
    };

    // Twenty waits that time out (no worker runs).
    let timing_out: Vec<_> = (0..20)
        .map(|n| tokio::spawn(waiting_purchase(format!("T-{n}"))))
        .collect();
    wait::until(
        "twenty requests waiting",
        Duration::from_secs(4),
        || async { (waiters().await == 20.0).then_some(()) },
    )
    .await;
    for request in timing_out {
        let (status, body, took) = request.await.expect("request task");
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"]["status"], "accepted", "{body}");
        assert!(took < Duration::from_secs(5), "answered after {took:?}");
    }
    assert_eq!(waiters().await, 0.0, "timed-out waits left the registry");
    assert_eq!(timeouts().await, 20.0);

    // Ten waits whose client goes away: the handler is dropped, and its waiter with it.
    let abandoned: Vec<_> = (0..10)
        .map(|n| tokio::spawn(waiting_purchase(format!("C-{n}"))))
        .collect();
    wait::until("ten requests waiting", Duration::from_secs(4), || async {
        (waiters().await == 10.0).then_some(())
    })
    .await;
    for request in &abandoned {
        request.abort();
    }
    wait::until(
        "the registry empty again",
        Duration::from_secs(10),
        || async { (waiters().await == 0.0).then_some(()) },
    )
    .await;
    // They left as cancellations, not by timing out: past the end of their waits, none has been
    // counted as one.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_eq!(timeouts().await, 20.0);
    assert_eq!(waiters().await, 0.0);
    env.cleanup().await;
}
