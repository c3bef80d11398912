//! `/healthz` (the process is alive) and `/readyz` (it can accept webhooks right now).

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    api::{envelope::ServiceUnavailable, Envelope as Answer, Reply},
    error::ApiError,
    state::AppState,
};

/// `/healthz` and `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// `ok` (`/healthz`) or `ready` (`/readyz`).
    pub status: HealthStatus,
}

/// A health status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// The process serves HTTP.
    Ok,
    /// It can accept webhooks.
    Ready,
}

/// Liveness
///
/// `200` as long as the process serves HTTP. No authentication.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "admin",
    operation_id = "healthz",
    responses(
        (status = 200, description = "Alive: `{\"status\": \"ok\"}`.", body = Answer<Health>),
        (status = 503, response = ServiceUnavailable),
    ),
)]
pub async fn healthz() -> Reply<Health> {
    Reply::ok(Health {
        status: HealthStatus::Ok,
    })
}

/// Readiness
///
/// `200` when a confirm channel to RabbitMQ is open and the contests are loaded; otherwise
/// `503` `not_ready` naming every reason. No authentication.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "admin",
    operation_id = "readyz",
    responses(
        (status = 200, description = "Ready: `{\"status\": \"ready\"}`.", body = Answer<Health>),
        (status = 503, response = ServiceUnavailable),
    ),
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Reply<Health>, ApiError> {
    let mut problems = Vec::new();
    if let Some(reason) = state.publisher.not_ready_reason() {
        problems.push(reason);
    }
    if !state.cache.is_loaded() {
        problems.push("contest cache not loaded yet");
    }
    if problems.is_empty() {
        Ok(Reply::ok(Health {
            status: HealthStatus::Ready,
        }))
    } else {
        Err(ApiError::NotReady(problems.join("; ")))
    }
}
