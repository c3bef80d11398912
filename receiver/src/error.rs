//! The HTTP error type and the one place errors become responses.
//!
//! Every error answers the contract's envelope
//! `{"success": false, "error": {"code", "message", "field"?}}`. Internal details are logged,
//! never sent: a client sees a stable code and a message written for it.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::json;

/// Seconds a sender is asked to wait before retrying after a 503.
pub const RETRY_AFTER_SECS: u64 = 5;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No credential, or a wrong one.
    #[error("authentication is missing or wrong")]
    Unauthorized,
    /// The body is not JSON (or not a JSON object).
    #[error("body is not a valid JSON object: {0}")]
    MalformedJson(String),
    /// A field is missing or invalid.
    #[error("{field}: {message}")]
    InvalidField {
        /// The field's name as the client sent it (`amount`, `referral.advocatePoints`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// Purchase tracking is switched off for the contest.
    #[error("purchase tracking is disabled for this contest")]
    TrackingDisabled,
    /// No contest with this id.
    #[error("no contest with this id")]
    ContestNotFound,
    /// A purchase, entry or other resource does not exist (yet).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The contest id of a create is taken.
    #[error("a contest with this id already exists")]
    ContestExists,
    /// A manual adjustment would take the entry beyond ±9·10^15 points.
    #[error("{0}")]
    PointsLimit(String),
    /// An `Idempotency-Key` reused on the same entry for a different adjustment.
    #[error("this Idempotency-Key was already used on this entry for a different change")]
    IdempotencyKeyReused,
    /// The body is over 1 MiB.
    #[error("body larger than 1 MiB")]
    PayloadTooLarge,
    /// RabbitMQ is unreachable, blocked, or did not confirm in time.
    #[error("the message broker is unavailable; retry later")]
    BrokerUnavailable,
    /// Postgres is needed for this request and is unreachable.
    #[error("the database is unavailable; retry later")]
    DatabaseUnavailable,
    /// Too many requests in flight.
    #[error("the server is overloaded; retry later")]
    Overloaded,
    /// The admin API is off because `ADMIN_TOKEN` is not set.
    #[error("the admin API is disabled: set ADMIN_TOKEN")]
    AdminDisabled,
    /// `/readyz`: a dependency is missing (the message lists which).
    #[error("{0}")]
    NotReady(String),
    /// Anything else: logged in full, answered as a bare 500.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// Builds an [`ApiError::InvalidField`].
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::InvalidField {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The HTTP status.
    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::MalformedJson(_) | ApiError::InvalidField { .. } => StatusCode::BAD_REQUEST,
            ApiError::TrackingDisabled => StatusCode::FORBIDDEN,
            ApiError::ContestNotFound | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::ContestExists | ApiError::PointsLimit(_) | ApiError::IdempotencyKeyReused => {
                StatusCode::CONFLICT
            }
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BrokerUnavailable
            | ApiError::DatabaseUnavailable
            | ApiError::Overloaded
            | ApiError::NotReady(_)
            | ApiError::AdminDisabled => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable, snake_case error code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::MalformedJson(_) => "invalid_json",
            ApiError::InvalidField { .. } => "invalid_field",
            ApiError::TrackingDisabled => "tracking_disabled",
            ApiError::ContestNotFound => "contest_not_found",
            ApiError::NotFound(_) => "not_found",
            ApiError::ContestExists => "contest_exists",
            ApiError::PointsLimit(_) => "points_limit",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::BrokerUnavailable => "broker_unavailable",
            ApiError::DatabaseUnavailable => "database_unavailable",
            ApiError::Overloaded => "overloaded",
            ApiError::AdminDisabled => "admin_disabled",
            ApiError::NotReady(_) => "not_ready",
            ApiError::Internal(_) => "internal",
        }
    }

    fn retry_after(&self) -> Option<u64> {
        (self.status_code() == StatusCode::SERVICE_UNAVAILABLE
            && !matches!(self, ApiError::AdminDisabled))
        .then_some(RETRY_AFTER_SECS)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        // Retryable covers unavailability and transient conflicts (deadlock, serialization):
        // the client's request was fine, so it gets 503 and retries, never a 500.
        if shared::db::is_retryable(&error) {
            tracing::warn!(%error, "database unavailable or in a transient conflict");
            ApiError::DatabaseUnavailable
        } else {
            ApiError::Internal(error.into())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        if let ApiError::Internal(error) = &self {
            tracing::error!(error = ?error, "request failed");
        }
        let mut error = json!({ "code": self.code(), "message": self.to_string() });
        if let ApiError::InvalidField { field, message } = &self {
            error["field"] = field.as_str().into();
            error["message"] = message.as_str().into();
        }
        let mut response = (
            status,
            axum::Json(json!({ "success": false, "error": error })),
        )
            .into_response();
        if let Some(seconds) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// A successful answer in the contract's envelope: `{"success": true, "data": …}`.
pub fn success(status: StatusCode, data: serde_json::Value) -> Response {
    (status, axum::Json(json!({ "success": true, "data": data }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_503_but_admin_disabled_carries_retry_after() {
        let response = ApiError::BrokerUnavailable.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        let response = ApiError::AdminDisabled.into_response();
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
    }
}
