//! Request metrics and the `/metrics` endpoint. Metric names live in [`shared::metrics`].

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request},
    middleware::Next,
    response::{IntoResponse, Response},
};
use shared::metrics as names;

/// How a webhook request ended, attached to successful responses by the handlers so the request
/// counter can tell `accepted`, `answered` and `ignored` apart (everything else is counted by
/// status code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome(pub &'static str);

impl Outcome {
    /// The event was published and confirmed.
    pub const ACCEPTED: Outcome = Outcome("accepted");
    /// The event was published and confirmed, and the worker's outcome is the answer (the
    /// sender waited: `Prefer: wait`, or the contest's `syncResponses`).
    pub const ANSWERED: Outcome = Outcome("answered");
    /// An authentic provider event that awards nothing.
    pub const IGNORED: Outcome = Outcome("ignored");
}

/// Counts every request by route template and outcome, and times it.
pub async fn track(request: Request, next: Next) -> Response {
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let outcome = response.extensions().get::<Outcome>().map_or_else(
        || response.status().as_u16().to_string(),
        |outcome| outcome.0.to_owned(),
    );
    metrics::counter!(names::HTTP_REQUESTS, "endpoint" => endpoint.clone(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!(names::HTTP_DURATION, "endpoint" => endpoint)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Prometheus metrics
///
/// The receiver's metrics in the Prometheus text format (requests by endpoint and outcome,
/// publish latency, confirms, …). No authentication: keep the admin listener private.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "admin",
    operation_id = "metrics",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4.",
            body = String, content_type = "text/plain"),
        (status = 503, response = crate::api::envelope::ServiceUnavailable),
    ),
)]
pub async fn render() -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        shared::metrics::install().render(),
    )
}
