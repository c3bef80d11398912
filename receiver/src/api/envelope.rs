//! The contract's envelope as types: `{"success": true, "data": T}` for every answer a handler
//! gives ([`Reply`]), `{"success": false, "error": {…}}` for every error ([`ErrorBody`], built
//! only by [`crate::error::ApiError`]), and the reusable error responses of the OpenAPI document.

use axum::{
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::{
    openapi::{
        content::ContentBuilder,
        header::HeaderBuilder,
        response::ResponseBuilder,
        schema::{ObjectBuilder, Type},
        RefOr, Schema,
    },
    ToResponse, ToSchema,
};

use crate::metrics::Outcome;

/// `{"success": true, "data": T}`: the body of every successful JSON answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Envelope<T> {
    /// Always `true`.
    #[schema(schema_with = always_true)]
    pub success: bool,
    /// The answer.
    pub data: T,
}

/// A handler's successful answer: a status and its `data`, sent in the [`Envelope`], optionally
/// marked with how a webhook ended (for the request counter) and with headers of its own (e.g.
/// `Preference-Applied`).
#[derive(Debug)]
#[must_use]
pub struct Reply<T> {
    status: StatusCode,
    data: T,
    outcome: Option<Outcome>,
    headers: HeaderMap,
}

impl<T> Reply<T> {
    /// `200` with `data`.
    pub fn ok(data: T) -> Self {
        Self::with_status(StatusCode::OK, data)
    }

    /// `201` with `data`.
    pub fn created(data: T) -> Self {
        Self::with_status(StatusCode::CREATED, data)
    }

    /// `status` with `data`.
    pub fn with_status(status: StatusCode, data: T) -> Self {
        Self {
            status,
            data,
            outcome: None,
            headers: HeaderMap::new(),
        }
    }

    /// Marks a webhook answer with its outcome (`accepted`, `answered`, `ignored`).
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = Some(outcome);
        self
    }

    /// Sends `name: value` with the answer (replacing an earlier value of `name`).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// The same answer (status, outcome, headers) with its data turned into another type, e.g.
    /// one operation's answer into the wider answer of another that shares its handling.
    pub fn map<U>(self, convert: impl FnOnce(T) -> U) -> Reply<U> {
        Reply {
            status: self.status,
            data: convert(self.data),
            outcome: self.outcome,
            headers: self.headers,
        }
    }

    /// The status the answer will have.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The answer's data.
    pub fn data(&self) -> &T {
        &self.data
    }

    /// The answer's data, taken out.
    pub fn into_data(self) -> T {
        self.data
    }
}

impl<T: Serialize> IntoResponse for Reply<T> {
    fn into_response(self) -> Response {
        let envelope = Envelope {
            success: true,
            data: self.data,
        };
        let mut response = (self.status, self.headers, axum::Json(envelope)).into_response();
        if let Some(outcome) = self.outcome {
            response.extensions_mut().insert(outcome);
        }
        response
    }
}

/// `{"success": false, "error": {"code", "message", "field"?}}`: every error answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ErrorResponse)]
pub struct ErrorBody {
    /// Always `false`.
    #[schema(schema_with = always_false)]
    pub success: bool,
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The error of an [`ErrorBody`].
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorDetail {
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation (not stable; never contains secrets or internals).
    pub message: String,
    /// With `invalid_field`: the field's name as sent, dotted for nested fields
    /// (`referral.advocatePoints`, `exchangeRates.eur`), or the query parameter or header.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub field: Option<String>,
}

/// Every error code, with its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 401: authentication missing or wrong (the message says which, without helping a guess).
    Unauthorized,
    /// 400: the body is not a JSON object.
    InvalidJson,
    /// 400: a field is missing, invalid or (admin API) unknown; `field` names it.
    InvalidField,
    /// 400: the request cannot be read (e.g. a path segment that does not percent-decode).
    InvalidRequest,
    /// 405: the path does not take this method (`Allow` lists those it takes).
    MethodNotAllowed,
    /// 408: the body did not arrive in time (2 s).
    RequestTimeout,
    /// 415: the body is declared as something other than JSON.
    UnsupportedMediaType,
    /// 429: too many requests in flight from the client's address (with `Retry-After`).
    TooManyRequests,
    /// 403: purchase tracking is disabled for the contest.
    TrackingDisabled,
    /// 404: no contest with this id.
    ContestNotFound,
    /// 404: unknown route, or the purchase or entry does not exist (yet, or any more).
    NotFound,
    /// 409: a contest with this id already exists.
    ContestExists,
    /// 409: a manual adjustment would take the entry beyond ±9·10^15 points.
    PointsLimit,
    /// 409: the `Idempotency-Key` was used on this entry before, for a different change.
    IdempotencyKeyReused,
    /// 413: body over 1 MiB.
    PayloadTooLarge,
    /// 503: RabbitMQ unavailable or no publisher confirm in time.
    BrokerUnavailable,
    /// 503: Postgres is needed and unreachable.
    DatabaseUnavailable,
    /// 503: too many requests in flight, or one ran past 4.5 s.
    Overloaded,
    /// 503: `/readyz`: a dependency is not ready (the message says which).
    NotReady,
    /// 503: the admin API is off because `ADMIN_TOKEN` is not set (no `Retry-After`).
    AdminDisabled,
    /// 500: a bug; never an answer to a client's mistake.
    Internal,
}

/// A schema that is always `true` (the success envelope's `success`).
pub fn always_true() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .enum_values(Some([true]))
        .build()
        .into()
}

/// A schema that is always `false` (the error envelope's `success`).
pub fn always_false() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .enum_values(Some([false]))
        .build()
        .into()
}

/// Builds an error response component: an [`ErrorBody`], optionally with `Retry-After`.
fn error_response(description: &str, retry_after: bool) -> RefOr<utoipa::openapi::Response> {
    let content = ContentBuilder::new()
        .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
            "ErrorResponse",
        ))))
        .build();
    let mut response = ResponseBuilder::new()
        .description(description)
        .content("application/json", content);
    if retry_after {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(0)),
                )
                .description(Some(
                    "Seconds to wait before retrying (5; 1 on `too_many_requests`); absent on \
                     `admin_disabled`.",
                ))
                .build(),
        );
    }
    response.build().into()
}

/// Declares the reusable error responses (`#/components/responses/…`): every error answer is
/// described once, here, and operations refer to these.
macro_rules! error_responses {
    ($($name:ident: $description:literal, $retry_after:literal;)*) => {$(
        #[doc = $description]
        pub struct $name;

        impl<'s> ToResponse<'s> for $name {
            fn response() -> (&'s str, RefOr<utoipa::openapi::Response>) {
                (stringify!($name), error_response($description, $retry_after))
            }
        }
    )*};
}

error_responses! {
    BadRequest: "`invalid_json`: the body is not a JSON object; `invalid_field`: a field is \
        missing or invalid (on the admin API also: unknown, e.g. misspelled), and `field` names \
        it, dotted for nested fields; `invalid_request`: the request cannot be read (e.g. a path \
        segment that does not percent-decode).", false;
    Unauthorized: "`unauthorized`: credentials missing or wrong (header credentials are checked \
        before the body is read). The message gives a reason that helps the sender without \
        helping a guess: `no credential`, `signature expired`, `signature timestamp is not a \
        whole number of Unix seconds`, which credentials the endpoint takes, or `credential not \
        accepted` (a wrong or malformed one, or a provider secret the contest does not have).", false;
    MethodNotAllowed: "`method_not_allowed`: the path does not take this method; `Allow` lists \
        those it takes.", false;
    RequestTimeout: "`request_timeout`: the body did not arrive within 2 s of the request's \
        head (a stalled or very slow client).", false;
    UnsupportedMediaType: "`unsupported_media_type`: the body is declared as something other \
        than JSON (e.g. `application/x-www-form-urlencoded`); send it with `Content-Type: \
        application/json`, or with no `Content-Type`.", false;
    TooManyRequests: "`too_many_requests`: the client's address has too many requests in \
        flight (`RECEIVER_MAX_IN_FLIGHT_PER_ADDRESS`); retry after `Retry-After` seconds.", true;
    Forbidden: "`tracking_disabled`: purchase tracking is disabled for this contest.", false;
    NotFound: "`contest_not_found`: no contest with this id (an id that cannot exist is never \
        looked up); `not_found`: the resource does not exist (yet, or any more: an erased entry \
        is gone).", false;
    Conflict: "`contest_exists`: a contest with this id already exists; `points_limit`: a manual \
        adjustment would take the entry beyond ±9·10^15 points (nothing changed); \
        `idempotency_key_reused`: the `Idempotency-Key` was used on this entry before for a \
        different change.", false;
    PayloadTooLarge: "`payload_too_large`: the body is over 1 MiB, or its declared \
        `Content-Length` is (refused at once, before the body is read).", false;
    ServiceUnavailable: "Retry later: `broker_unavailable` (RabbitMQ unreachable, blocked or no \
        confirm in time), `database_unavailable` (Postgres needed and unreachable, e.g. to be \
        sure an uncached contest does not exist), `overloaded` (too many requests in flight or \
        one past 4.5 s), `not_ready` (`/readyz`), `admin_disabled` (admin API without \
        `ADMIN_TOKEN`; no `Retry-After`).", true;
}
