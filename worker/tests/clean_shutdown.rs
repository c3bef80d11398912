//! A worker process stopped with SIGTERM shuts down quietly: consumer cancelled, channels closed,
//! then the connection, in that order, and nothing logged at `ERROR` (lapin logs one when a
//! channel is dropped while its connection closes). Checked on the process's own output.

use std::{path::Path, time::Duration};

use testkit::{process::ChildProcess, TestEnv};

fn worker_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_worker"))
}

#[tokio::test]
async fn sigterm_stops_the_worker_without_an_error_in_its_log() {
    let env = TestEnv::new();
    let mut worker = ChildProcess::spawn_captured(
        worker_binary(),
        &env,
        &[
            ("WORKER_ADDR", "127.0.0.1:0"),
            // lapin's own records included, whatever the default filter says.
            ("RUST_LOG", "info,lapin=info"),
        ],
    );
    worker.logged("consuming", Duration::from_secs(60)).await;
    // Let the queue-stats channel do a round of passive declares, so every channel is in use.
    tokio::time::sleep(Duration::from_millis(500)).await;

    worker.terminate();
    let code = tokio::time::timeout(Duration::from_secs(30), worker.wait())
        .await
        .expect("the worker exits");
    assert_eq!(code, Some(0));
    worker
        .logged("worker stopped", Duration::from_secs(5))
        .await;
    let output = worker.output();
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
