//! `worker dlq count|list|replay` only look: with a prefix that has no queues (a typo in
//! `AMQP_PREFIX`) they say "no such queue" and exit non-zero, and create nothing.

use std::path::Path;

use testkit::{broker, env::random_suffix, TestEnv};

fn worker_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_worker"))
}

#[tokio::test]
async fn a_wrong_prefix_is_no_such_queue_and_creates_nothing() {
    let env = TestEnv::new();
    let typo = format!("typo_{}", random_suffix(8));
    for command in [&["count"][..], &["list"], &["replay"]] {
        let output = tokio::process::Command::new(worker_binary())
            .arg("dlq")
            .args(command)
            .envs(env.process_env())
            .env("AMQP_PREFIX", &typo)
            // The operator's default: the command's own answer, no library logs.
            .env_remove("RUST_LOG")
            .output()
            .await
            .expect("run worker dlq");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "dlq {command:?} must fail: {output:?}"
        );
        assert!(
            stderr.contains(&format!("no such queue: {typo}.dead-letter")),
            "dlq {command:?}: {stderr}"
        );
        assert!(output.stdout.is_empty(), "dlq {command:?} printed a result");
    }
    // Nothing was declared: a passive look finds neither queue (each failed look closes its
    // channel, so each gets its own).
    let (connection, _) = broker::channel().await;
    for queue in [format!("{typo}.dead-letter"), format!("{typo}.events")] {
        let channel = connection.create_channel().await.expect("channel");
        let error = shared::amqp::inspect(&channel, &queue)
            .await
            .expect_err("the queue must not exist");
        assert!(shared::amqp::is_not_found(&error), "{queue}: {error}");
    }
    let _ = connection.close(200, "done".into()).await;
}
