//! A receiver process stopped with SIGTERM after serving a webhook shuts down quietly: the
//! confirm channel is closed, then the connection, and nothing is logged at `ERROR` (lapin logs
//! one when a channel is dropped while its connection closes). Checked on the process's output.

use std::{path::Path, time::Duration};

use reqwest::StatusCode;
use serde_json::json;
use testkit::{process::ChildProcess, TestEnv};

fn receiver_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_receiver"))
}

#[tokio::test]
async fn sigterm_stops_the_receiver_without_an_error_in_its_log() {
    let env = TestEnv::new();
    let mut receiver = ChildProcess::spawn_captured(
        receiver_binary(),
        &env,
        &[
            ("RECEIVER_ADDR", "127.0.0.1:0"),
            ("ADMIN_ADDR", "127.0.0.1:0"),
            ("RUST_LOG", "info,lapin=info"),
        ],
    );
    let listening = receiver
        .logged("receiver listening", Duration::from_secs(60))
        .await;
    receiver
        .logged("publisher connected to the broker", Duration::from_secs(60))
        .await;
    let admin = format!(
        "http://{}",
        listening["admin"].as_str().expect("admin address")
    );
    let public = format!(
        "http://{}",
        listening["public"].as_str().expect("public address")
    );
    let http = reqwest::Client::new();

    // Serve one webhook through the confirm channel before stopping.
    let created: serde_json::Value = http
        .post(format!("{admin}/api/contests"))
        .bearer_auth(&env.admin_token)
        .json(&json!({"name": "Shutdown"}))
        .send()
        .await
        .expect("create contest")
        .json()
        .await
        .expect("contest json");
    let contest = &created["data"];
    let answer = http
        .post(format!(
            "{public}/api/webhooks/purchase/{}",
            contest["id"].as_str().expect("id")
        ))
        .header(
            "x-webhook-secret",
            contest["webhookSecret"].as_str().expect("secret"),
        )
        .header("content-type", "application/json")
        .body(json!({"email": "s@example.com", "orderId": "S-1", "amount": "1"}).to_string())
        .send()
        .await
        .expect("webhook");
    assert_eq!(answer.status(), StatusCode::OK);

    receiver.terminate();
    let code = tokio::time::timeout(Duration::from_secs(30), receiver.wait())
        .await
        .expect("the receiver exits");
    assert_eq!(code, Some(0));
    receiver
        .logged("receiver stopped", Duration::from_secs(5))
        .await;
    let output = receiver.output();
    let errors: Vec<&str> = output
        .lines()
        .filter(|line| line.contains("\"level\":\"ERROR\"") || line.contains("\"level\":\"WARN\""))
        .collect();
    assert!(
        errors.is_empty(),
        "a clean shutdown logs no error or warning: {errors:#?}"
    );
    env.cleanup().await;
}
