//! The HTTP error type and the one place errors become responses.
//!
//! Every error answers the contract's envelope
//! `{"success": false, "error": {"code", "message", "field"?}}` ([`ErrorBody`]). Internal details are logged,
//! never sent: a client sees a stable code and a message written for it.

use crate::{
    api::envelope::{ErrorBody, ErrorCode, ErrorDetail},
    auth::AuthFailure,
};
use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};

/// Seconds a sender is asked to wait before retrying after a 503.
pub const RETRY_AFTER_SECS: u64 = 5;

/// Seconds a sender over its per-address limit is asked to wait (its other requests are
/// finishing, so a slot frees up soon).
pub const TOO_MANY_RETRY_AFTER_SECS: u64 = 1;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No credential, or a wrong one; the detail is logged, the sender gets a short reason.
    #[error("{}", .0.public_message())]
    Unauthorized(AuthFailure),
    /// The body is not JSON (or not a JSON object).
    #[error("body is not a valid JSON object: {0}")]
    MalformedJson(String),
    /// The request cannot be read (e.g. a path that does not percent-decode to UTF-8).
    #[error("{0}")]
    InvalidRequest(&'static str),
    /// The body is declared as something other than JSON (the media type as sent, if short).
    #[error(
        "the body must be JSON: send it with Content-Type: application/json{}",
        .0.as_deref().map(|sent| format!(" (got {sent})")).unwrap_or_default()
    )]
    UnsupportedMediaType(Option<String>),
    /// The path exists, the method does not (the `Allow` header lists the ones that do).
    #[error("method not allowed on this path; the Allow header lists the methods it takes")]
    MethodNotAllowed,
    /// The body did not arrive in time (a stalled or very slow client).
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    /// Too many requests in flight from the sender's address.
    #[error("too many requests in flight from your address; retry shortly")]
    TooManyRequests,
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
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::MalformedJson(_)
            | ApiError::InvalidField { .. }
            | ApiError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
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
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Unauthorized(_) => ErrorCode::Unauthorized,
            ApiError::MalformedJson(_) => ErrorCode::InvalidJson,
            ApiError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            ApiError::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            ApiError::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            ApiError::BodyTimeout => ErrorCode::RequestTimeout,
            ApiError::TooManyRequests => ErrorCode::TooManyRequests,
            ApiError::InvalidField { .. } => ErrorCode::InvalidField,
            ApiError::TrackingDisabled => ErrorCode::TrackingDisabled,
            ApiError::ContestNotFound => ErrorCode::ContestNotFound,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::ContestExists => ErrorCode::ContestExists,
            ApiError::PointsLimit(_) => ErrorCode::PointsLimit,
            ApiError::IdempotencyKeyReused => ErrorCode::IdempotencyKeyReused,
            ApiError::PayloadTooLarge => ErrorCode::PayloadTooLarge,
            ApiError::BrokerUnavailable => ErrorCode::BrokerUnavailable,
            ApiError::DatabaseUnavailable => ErrorCode::DatabaseUnavailable,
            ApiError::Overloaded => ErrorCode::Overloaded,
            ApiError::AdminDisabled => ErrorCode::AdminDisabled,
            ApiError::NotReady(_) => ErrorCode::NotReady,
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        if matches!(self, ApiError::TooManyRequests) {
            return Some(TOO_MANY_RETRY_AFTER_SECS);
        }
        (self.status_code() == StatusCode::SERVICE_UNAVAILABLE
            && !matches!(self, ApiError::AdminDisabled))
        .then_some(RETRY_AFTER_SECS)
    }

    /// The error a bare status stands for, for answers produced outside our handlers (axum's
    /// routing and extractors, tower layers) that carry no envelope of their own.
    fn for_status(status: StatusCode) -> ApiError {
        match status {
            StatusCode::NOT_FOUND => ApiError::NotFound("route"),
            StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
            StatusCode::REQUEST_TIMEOUT => ApiError::BodyTimeout,
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(None),
            StatusCode::TOO_MANY_REQUESTS => ApiError::TooManyRequests,
            StatusCode::SERVICE_UNAVAILABLE => ApiError::Overloaded,
            status if status.is_client_error() => ApiError::InvalidRequest(
                "the request cannot be read: check the URL's percent-encoding, the query \
                 string and the headers",
            ),
            _ => ApiError::Internal(anyhow::anyhow!("unenveloped {status} answer")),
        }
    }
}

/// Gives an error answer produced outside our handlers (no JSON body: axum's 405 and path or
/// query rejections, tower-http's answers) the contract's envelope, keeping its status and its
/// other headers (`Allow` on a 405). Success answers and JSON answers pass untouched, so the
/// cost on the normal path is one status comparison.
pub fn envelope_foreign(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if is_json {
        return response;
    }
    let (mut parts, _body) = response.into_parts();
    let mut envelope = ApiError::for_status(status).into_response();
    *envelope.status_mut() = status;
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in envelope.headers() {
        parts.headers.insert(name.clone(), value.clone());
    }
    Response::from_parts(parts, envelope.into_body())
}

/// The answer to a panic inside a handler (caught by the catch-panic layer): logged with what
/// the panic said, answered as the `500` envelope. The process and the connection carry on.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic payload".to_owned());
    tracing::error!(panic = %message, "a request handler panicked");
    ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
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
        match &self {
            ApiError::Internal(error) => tracing::error!(error = ?error, "request failed"),
            // Every refusal is logged with what was presented and why it failed, never the
            // credential; the request span adds the route, the contest id and the request id.
            ApiError::Unauthorized(failure) => tracing::warn!(
                scheme = failure.scheme.as_str(),
                reason = failure.reason.as_str(),
                "request refused: 401"
            ),
            _ => {}
        }
        let (message, field) = match &self {
            ApiError::InvalidField { field, message } => (message.clone(), Some(field.clone())),
            other => (other.to_string(), None),
        };
        let body = ErrorBody {
            success: false,
            error: ErrorDetail {
                code: self.code(),
                message,
                field,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_error_answers_get_the_envelope_and_keep_their_headers() {
        let foreign = Response::builder()
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .header(header::ALLOW, "POST")
            .header(header::CONTENT_LENGTH, "0")
            .body(axum::body::Body::empty())
            .unwrap();
        let answer = envelope_foreign(foreign);
        assert_eq!(answer.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(answer.headers()[header::ALLOW], "POST");
        assert_eq!(answer.headers()[header::CONTENT_TYPE], "application/json");
        assert!(answer.headers().get(header::CONTENT_LENGTH).is_none());

        let ours = ApiError::ContestNotFound.into_response();
        let passed = envelope_foreign(ApiError::ContestNotFound.into_response());
        assert_eq!(passed.status(), ours.status());
        let fine = envelope_foreign(StatusCode::OK.into_response());
        assert_eq!(fine.status(), StatusCode::OK);
        assert!(fine.headers().get(header::CONTENT_TYPE).is_none());
    }

    #[test]
    fn too_many_requests_asks_for_a_short_wait() {
        let response = ApiError::TooManyRequests.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn every_503_but_admin_disabled_carries_retry_after() {
        let response = ApiError::BrokerUnavailable.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        let response = ApiError::AdminDisabled.into_response();
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
    }
}
