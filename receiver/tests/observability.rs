//! Metrics, request ids and readiness, as an operator sees them. One test per binary on purpose:
//! the metrics recorder is per process, so exact counts need a process of their own.

use reqwest::StatusCode;
use serde_json::json;
use testkit::App;

/// The value of one sample line (`name{labels} value`) in Prometheus text.
fn sample(metrics: &str, name_and_labels: &str) -> f64 {
    metrics
        .lines()
        .find(|line| line.starts_with(name_and_labels))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_requests_by_outcome_and_request_ids_are_echoed() {
    let app = App::receiver_only().await;
    let contest = app.create_contest(json!({})).await;
    for order in ["M-1", "M-2", "M-3"] {
        let answer = app
            .purchase(
                &contest,
                json!({"email":"m@example.com","orderId":order,"amount":"1"}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    let path = format!("/api/webhooks/purchase/{}", contest.id);
    let unauthorized = app
        .post(&path, &[("x-webhook-secret", "wrong")], "{}")
        .await;
    assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED);
    let invalid = app
        .purchase(&contest, json!({"email":"m@example.com"}))
        .await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);

    let metrics = app
        .http
        .get(format!("{}/metrics", app.admin_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let endpoint = r#"endpoint="/api/webhooks/purchase/{contestId}""#;
    assert_eq!(
        sample(
            &metrics,
            &format!("blitz_http_requests_total{{{endpoint},outcome=\"accepted\"}}")
        ),
        3.0,
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            &format!("blitz_http_requests_total{{{endpoint},outcome=\"401\"}}")
        ),
        1.0
    );
    assert_eq!(
        sample(
            &metrics,
            &format!("blitz_http_requests_total{{{endpoint},outcome=\"400\"}}")
        ),
        1.0
    );
    assert_eq!(
        sample(&metrics, r#"blitz_publish_total{result="confirmed"}"#),
        3.0
    );
    assert!(metrics.contains("blitz_publish_duration_seconds_bucket"));
    assert!(metrics.contains("blitz_http_request_duration_seconds_bucket"));
    // The cache gauge counts the contests loaded; it follows the full reloads
    // (`CONTEST_REFRESH_SECS`, 5 s in tests), so the one contest shows up within seconds.
    // (`sample` reads a missing metric as 0, so this cannot pass without the gauge.)
    let cache_size = testkit::wait::until(
        "the contest cache gauge counts the contest",
        std::time::Duration::from_secs(20),
        || async {
            let text = app
                .http
                .get(format!("{}/metrics", app.admin_url()))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let size = sample(&text, "blitz_contest_cache_size ");
            (size >= 1.0).then_some(size)
        },
    )
    .await;
    assert_eq!(cache_size, 1.0, "exactly the test's one contest");

    // An incoming X-Request-Id is kept; without one, a fresh id is made and returned.
    let traced = app
        .http
        .post(format!("{}{path}", app.public_url()))
        .header("x-webhook-secret", &contest.secret)
        .header("x-request-id", "req-42")
        .body(json!({"email":"m@example.com","orderId":"M-4","amount":"1"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(traced.headers()["x-request-id"], "req-42");
    let fresh = app
        .http
        .get(format!("{}/healthz", app.admin_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.headers()["x-request-id"].to_str().unwrap().len(), 36);
    app.stop().await;
}
