//! `/healthz` (the process is alive) and `/readyz` (it can accept webhooks right now).

use axum::{extract::State, http::StatusCode, response::Response};
use serde_json::json;

use crate::{
    error::{success, ApiError},
    state::AppState,
};

/// Liveness: answers as long as the process serves HTTP.
pub async fn healthz() -> Response {
    success(StatusCode::OK, json!({ "status": "ok" }))
}

/// Readiness: a confirm channel to the broker is open and contests are loaded; otherwise 503
/// naming every reason.
pub async fn readyz(State(state): State<AppState>) -> Result<Response, ApiError> {
    let mut problems = Vec::new();
    if let Some(reason) = state.publisher.not_ready_reason() {
        problems.push(reason);
    }
    if !state.cache.is_loaded() {
        problems.push("contest cache not loaded yet");
    }
    if problems.is_empty() {
        Ok(success(StatusCode::OK, json!({ "status": "ready" })))
    } else {
        Err(ApiError::NotReady(problems.join("; ")))
    }
}
