//! The worker's `/metrics` after a known workload (its own test binary, so counts are exact).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use testkit::{wait, App};

fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn worker_metrics_count_awards_duplicates_and_lag() {
    let app = App::with_workers(1).await;
    let contest = app.create_contest(json!({})).await;
    for order in ["W-1", "W-2", "W-1", "W-3", "W-1"] {
        let answer = app
            .purchase(
                &contest,
                json!({"email":"w@example.com","orderId":order,"amount":"2.5"}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    let url = format!("{}/metrics", app.workers[0].url);
    let metrics = wait::until(
        "all five deliveries committed",
        Duration::from_secs(20),
        || async {
            let text = app.http.get(&url).send().await.ok()?.text().await.ok()?;
            let settled = sample(&text, "blitz_purchases_recorded_total")
                + sample(&text, "blitz_duplicates_total");
            (settled == 5.0).then_some(text)
        },
    )
    .await;
    assert_eq!(sample(&metrics, "blitz_deliveries_total"), 5.0);
    assert_eq!(
        sample(&metrics, "blitz_purchases_recorded_total"),
        3.0,
        "{metrics}"
    );
    assert_eq!(sample(&metrics, "blitz_duplicates_total"), 2.0);
    assert_eq!(sample(&metrics, "blitz_points_awarded_total"), 9.0);
    assert!(metrics.contains("blitz_end_to_end_lag_seconds_bucket"));
    assert!(metrics.contains("blitz_batch_size_bucket"));
    app.stop().await;
}

/// The queue gauges come with the time they were read, so an alert can tell stale readings
/// (a worker that lost the broker keeps its last ones) from fresh ones.
#[tokio::test]
async fn queue_readings_carry_their_time() {
    let app = App::with_workers(1).await;
    let url = format!("{}/metrics", app.workers[0].url);
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let metrics = wait::until("the queues inspected", Duration::from_secs(20), || async {
        let text = app.http.get(&url).send().await.ok()?.text().await.ok()?;
        (sample(&text, "blitz_queue_inspected_timestamp_seconds") > 0.0).then_some(text)
    })
    .await;
    let read_at = sample(&metrics, "blitz_queue_inspected_timestamp_seconds");
    assert!(
        (started - 1.0..started + 30.0).contains(&read_at),
        "{read_at} vs {started}"
    );
    assert_eq!(sample(&metrics, "blitz_queue_consumers"), 1.0, "{metrics}");
    app.stop().await;
}
