//! The worker's HTTP listener: `/healthz` (alive), `/readyz` (consuming, database reachable) and
//! `/metrics` (Prometheus).

use std::sync::{atomic::Ordering, Arc};

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Json, Router};
use serde_json::json;

use crate::consumer::Status;

/// Routes of the worker's listener.
pub fn router(status: Arc<Status>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(status)
}

async fn healthz() -> impl IntoResponse {
    Json(json!({ "success": true, "data": { "status": "ok" } }))
}

async fn readyz(State(status): State<Arc<Status>>) -> impl IntoResponse {
    let mut problems = Vec::new();
    if !status.consuming.load(Ordering::Acquire) {
        problems.push("not consuming from the broker");
    }
    if status.database_down.load(Ordering::Acquire) {
        problems.push("database unavailable");
    }
    if problems.is_empty() {
        (
            StatusCode::OK,
            Json(json!({ "success": true, "data": { "status": "ready" } })),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({ "success": false, "error": { "code": "not_ready", "message": problems.join("; ") } }),
            ),
        )
    }
}

async fn render_metrics() -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        shared::metrics::install().render(),
    )
}
