//! The OpenAPI 3.1 description of both listeners, generated from this module with `utoipa`.
//!
//! The handlers build their JSON with `serde_json::json!`, so the schemas here are hand-written
//! mirrors of what they produce: one `ToSchema` struct per body, one documentation-only function
//! per operation (in [`operations`]). Response schemas deny unknown properties, so a field added
//! to a handler but not here makes the schemathesis run (`scripts/api-fuzz.sh`) fail instead of
//! drifting silently. The synchronous answers (`Prefer: wait`) are the exception: their schemas
//! are the handlers' own types ([`crate::sync::answer`]), serialised as they are served. The
//! document is served at `GET /openapi.json` on the admin listener and
//! checked in as `openapi.json` (`receiver openapi > openapi.json`; a test keeps the two equal).

use std::{collections::BTreeMap, sync::OnceLock};

use crate::sync::answer::{PurchaseAnswer, RefundAnswer, SignupAnswer};
use axum::{http::header, response::IntoResponse};
use serde::Serialize;
use serde_json::json;
use utoipa::{
    openapi::{
        content::ContentBuilder,
        header::HeaderBuilder,
        response::ResponseBuilder,
        schema::{ObjectBuilder, OneOfBuilder, Type},
        security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
        server::ServerBuilder,
        RefOr, Response, Schema,
    },
    Modify, OpenApi, ToResponse, ToSchema,
};

/// The OpenAPI document of the receiver: the public listener (tag `webhooks`) and the admin
/// listener (tag `admin`).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Blitz purchase webhooks",
        description = DESCRIPTION,
    ),
    servers(
        (url = "http://localhost:8080", description = "Public listener (RECEIVER_ADDR, default 0.0.0.0:8080)"),
    ),
    tags(
        (name = "webhooks", description = "Public listener (`RECEIVER_ADDR`, default `0.0.0.0:8080`): \
            webhooks from stores and payment providers, and purchase lookups."),
        (name = "admin", description = "Admin listener (`ADMIN_ADDR`, default `127.0.0.1:8081`): \
            admin API behind `Authorization: Bearer <ADMIN_TOKEN>`, health checks, metrics and \
            this document. Keep it private."),
    ),
    paths(
        operations::receive_purchase,
        operations::lookup_purchase,
        operations::receive_signup,
        operations::receive_refund,
        operations::receive_shopify_referral,
        operations::receive_stripe_referral,
        operations::receive_coinflow,
        operations::create_contest,
        operations::get_contest,
        operations::patch_contest,
        operations::rotate_webhook_secret,
        operations::create_entry,
        operations::get_entry,
        operations::get_entry_ledger,
        operations::adjust_entry_points,
        operations::disqualify_entry,
        operations::reinstate_entry,
        operations::leaderboard,
        operations::healthz,
        operations::readyz,
        operations::metrics,
        operations::openapi_json,
    ),
    components(
        schemas(ErrorResponse, ErrorCode, Source, CurrencyCode),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            MethodNotAllowed,
            RequestTimeout,
            Conflict,
            PayloadTooLarge,
            UnsupportedMediaType,
            TooManyRequests,
            ServiceUnavailable
        )
    ),
    modifiers(&Listeners, &SecuritySchemes, &EdgeAnswers, &SyncAnswers),
)]
pub struct ApiDoc;

const DESCRIPTION: &str = "\
A queue-backed purchase-webhook service. The receiver runs two HTTP listeners:

- the **public listener** (`RECEIVER_ADDR`, default `0.0.0.0:8080`, tag `webhooks`) takes webhooks \
from stores and payment providers and answers purchase lookups;
- the **admin listener** (`ADMIN_ADDR`, default `127.0.0.1:8081`, tag `admin`) serves the admin \
API (`Authorization: Bearer <ADMIN_TOKEN>`; without `ADMIN_TOKEN` it answers 503 \
`admin_disabled`), `/healthz`, `/readyz`, `/metrics` and this document at `/openapi.json`.

The two listeners are different ports: every admin path names the admin server in its own \
`servers`, which overrides the document's (public) server. Tools that take one base URL \
(schemathesis `--url`) should be pointed at one listener and filtered by tag.

Every JSON answer has the envelope `{\"success\": true, \"data\": …}` or \
`{\"success\": false, \"error\": {\"code\", \"message\", \"field\"?}}`, whatever goes wrong: \
an unknown path is `404` `not_found`, a method a path does not take is `405` \
`method_not_allowed` with an `Allow` header (on every path, so it is not repeated per \
operation), a path that does not percent-decode is `400` or `404`. A webhook `200` means \
RabbitMQ has durably confirmed the event; the points are awarded asynchronously, unless the \
sender asks to wait for them (`Prefer: wait=N`, or a contest with `syncResponses`: see \
*Synchronous answers* on the purchase, signup and refund webhooks). `503` and \
`429` answers carry `Retry-After` (except `admin_disabled`); `500` is never an answer to a \
client's mistake.

Every operation with a body also answers `413` (a body over 1 MiB, or a declared \
`Content-Length` over it, refused before the body is read), `415` (a body declared as \
something other than JSON; no `Content-Type` is read as JSON) and `408` (a body that did not \
arrive within 2 s). Every public (`webhooks`) operation also answers `429` when the client's \
address has too many requests in flight (`RECEIVER_MAX_IN_FLIGHT_PER_ADDRESS`).";

const ADMIN_SERVER: &str = "Admin listener (ADMIN_ADDR, default 127.0.0.1:8081)";

/// The OpenAPI document.
pub fn spec() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The OpenAPI document as pretty-printed JSON with a trailing newline, exactly as checked in at
/// `openapi.json`. Every map in it is ordered by key, so the text is stable.
pub fn spec_json() -> String {
    let mut text = spec()
        .to_pretty_json()
        .expect("the OpenAPI document serialises");
    text.push('\n');
    text
}

/// `GET /openapi.json` (admin listener, no authentication): the document, built once.
pub async fn serve() -> impl IntoResponse {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.get_or_init(spec_json).as_str(),
    )
}

/// Gives every admin path the admin listener as its server.
struct Listeners;

impl Modify for Listeners {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let admin = ServerBuilder::new()
            .url("http://127.0.0.1:8081")
            .description(Some(ADMIN_SERVER))
            .build();
        for item in openapi.paths.paths.values_mut() {
            let operations = [&item.get, &item.post, &item.patch, &item.put, &item.delete];
            let is_admin = operations.into_iter().flatten().any(|operation| {
                operation
                    .tags
                    .as_ref()
                    .is_some_and(|tags| tags.iter().any(|tag| tag == "admin"))
            });
            if is_admin {
                item.servers = Some(vec![admin.clone()]);
            }
        }
    }
}

/// Every credential a sender or an operator can present.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let header_key = |name: &str, description: &str| {
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                name,
                description,
            )))
        };
        let bearer = |description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(description))
                    .build(),
            )
        };
        let schemes = [
            (
                "adminToken",
                bearer("The admin API token (`ADMIN_TOKEN`) as `Authorization: Bearer <token>`."),
            ),
            (
                "webhookSecret",
                header_key(
                    "X-Webhook-Secret",
                    "The contest's webhook secret (`whsec_…`) verbatim. Header credentials \
                     decide alone when present. During the 24 h after a rotation the previous \
                     secret is accepted too. When no header credential and no signature is sent, \
                     the body field `secret` is consulted instead.",
                ),
            ),
            (
                "webhookSecretBearer",
                bearer(
                    "The contest's webhook secret as `Authorization: Bearer <secret>` (same rules \
                     as `X-Webhook-Secret`, which wins when both are sent).",
                ),
            ),
            (
                "standardWebhooks",
                header_key(
                    "webhook-signature",
                    "Standard Webhooks: `webhook-signature` holds space-separated `v1,<base64>` \
                     entries, each an HMAC-SHA256 keyed with the base64-decoded part of the \
                     webhook secret after `whsec_`, over `{webhook-id}.{webhook-timestamp}.{raw \
                     body}`; `webhook-id` and `webhook-timestamp` (Unix seconds, within ±5 min) \
                     are required with it. Any `v1` entry may match.",
                ),
            ),
            (
                "shopifyHmac",
                header_key(
                    "X-Shopify-Hmac-Sha256",
                    "Shopify: base64 HMAC-SHA256 of the raw body keyed with the contest's \
                     Shopify secret (`providerSecrets.shopify`).",
                ),
            ),
            (
                "stripeSignature",
                header_key(
                    "Stripe-Signature",
                    "Stripe: `t=<unix seconds>,v1=<hex>[,v1=…]`, HMAC-SHA256 of `{t}.{raw body}` \
                     keyed with the whole `whsec_…` string of `providerSecrets.stripe`; 300 s \
                     tolerance; any `v1` may match.",
                ),
            ),
            (
                "coinflowKey",
                header_key(
                    "Authorization",
                    "Coinflow: the contest's Coinflow webhook validation key \
                     (`providerSecrets.coinflow`) verbatim, no scheme.",
                ),
            ),
            (
                "coinflowSignature",
                header_key(
                    "Coinflow-Signature",
                    "Coinflow: `t=<unix seconds>,v1=<hex>`, HMAC-SHA256 of `{t}.{raw body}` keyed \
                     with the Coinflow key; used when `Authorization` is absent; no time window.",
                ),
            ),
        ];
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, scheme) in schemes {
            components.add_security_scheme(name, scheme);
        }
    }
}

/// The answers every operation of a kind can give, added to each so that no operation (one
/// added later included) forgets one: `408`, `413` and `415` on operations with a body, `429` on
/// the public listener's operations.
struct EdgeAnswers;

impl Modify for EdgeAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let reference = |name: &str| RefOr::Ref(utoipa::openapi::Ref::from_response_name(name));
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                let public = operation
                    .tags
                    .as_ref()
                    .is_some_and(|tags| tags.iter().any(|tag| tag == "webhooks"));
                let mut answers = Vec::new();
                if operation.request_body.is_some() {
                    answers.extend([
                        ("408", "RequestTimeout"),
                        ("413", "PayloadTooLarge"),
                        ("415", "UnsupportedMediaType"),
                    ]);
                }
                if public {
                    answers.push(("429", "TooManyRequests"));
                }
                for (status, name) in answers {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| reference(name));
                }
            }
        }
    }
}

/// The operations that take `Prefer: wait` (synchronous answers).
const WAITING_OPERATIONS: [&str; 3] = ["receivePurchase", "receiveSignup", "receiveRefund"];

/// Documents `Preference-Applied` on the `200` of every operation that can wait.
struct SyncAnswers;

impl Modify for SyncAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let header = HeaderBuilder::new()
            .schema(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^wait=[1-4]$")),
            )
            .description(Some(
                "`wait=N`, N as applied (capped at 4), when the request waited for the worker's \
                 outcome: whether it came in time or the answer is `accepted`. Absent when the \
                 request did not wait.",
            ))
            .build();
        for item in openapi.paths.paths.values_mut() {
            let Some(operation) = item.post.as_mut() else {
                continue;
            };
            let waits = operation
                .operation_id
                .as_deref()
                .is_some_and(|id| WAITING_OPERATIONS.contains(&id));
            if !waits {
                continue;
            }
            if let Some(RefOr::T(ok)) = operation.responses.responses.get_mut("200") {
                ok.headers
                    .insert("Preference-Applied".to_owned(), header.clone());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Schema helpers: values whose JSON type varies, and constants.

/// What `shared::money::parse_decimal` reads: a plain or scientific decimal, surrounding space
/// allowed.
const DECIMAL_PATTERN: &str = r"^\s*[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$";

/// An exact decimal as a JSON number (within the bounds `number` sets) or a decimal string.
fn decimal(number: ObjectBuilder, description: &str, example: serde_json::Value) -> Schema {
    OneOfBuilder::new()
        .item(number.schema_type(Type::Number))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(DECIMAL_PATTERN)),
        )
        .description(Some(format!(
            "{description} A JSON number or a decimal string; its digits are kept exactly, never \
             rounded through a float."
        )))
        .examples([example])
        .build()
        .into()
}

/// `pointsPerUnit` (both kinds): 0 to 10^6.
fn points_per_unit() -> Schema {
    decimal(
        ObjectBuilder::new()
            .minimum(Some(0))
            .maximum(Some(1_000_000)),
        "Points per one unit of the contest currency, 0 to 10^6.",
        json!(1),
    )
}

/// The purchase amount: greater than 0 and at most 10^12.
fn amount() -> Schema {
    decimal(
        ObjectBuilder::new()
            .exclusive_minimum(Some(0))
            .maximum(Some(1_000_000_000_000_i64)),
        "Amount paid in `currency`: greater than 0 and at most 10^12.",
        json!("79.99"),
    )
}

/// A refunded amount: greater than 0 and at most 10^12, like a purchase's.
fn refund_amount() -> Schema {
    decimal(
        ObjectBuilder::new()
            .exclusive_minimum(Some(0))
            .maximum(Some(1_000_000_000_000_i64)),
        "Amount returned, in `currency`: greater than 0 and at most 10^12; absent means the \
         whole purchase.",
        json!("40.00"),
    )
}

/// An exchange rate: greater than 0 and at most 10^9.
fn rate() -> Schema {
    decimal(
        ObjectBuilder::new()
            .exclusive_minimum(Some(0))
            .maximum(Some(1_000_000_000)),
        "Units of the contest currency one unit of this currency is worth: greater than 0 and at \
         most 10^9.",
        json!(1.08),
    )
}

/// An ISO 4217 code the receiver knows: the list is `shared::money::Currency`'s own, found by
/// asking it about every three-letter code.
pub struct CurrencyCode;

impl utoipa::PartialSchema for CurrencyCode {
    fn schema() -> RefOr<Schema> {
        currency().into()
    }
}

impl ToSchema for CurrencyCode {
    fn name() -> std::borrow::Cow<'static, str> {
        "Currency".into()
    }
}

/// The [`CurrencyCode`] schema (`propertyNames` takes no reference, so maps inline it).
fn currency() -> Schema {
    let letters = || b'A'..=b'Z';
    let codes: Vec<String> = letters()
        .flat_map(|a| letters().flat_map(move |b| letters().map(move |c| [a, b, c])))
        .filter_map(|code| shared::money::Currency::parse(std::str::from_utf8(&code).ok()?).ok())
        .map(|currency| currency.to_string())
        .collect();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(codes))
        .description(Some(
            "An active ISO 4217 currency code. Answers use upper case; requests may use any case \
             and surrounding spaces.",
        ))
        .examples([json!("USD")])
        .into()
}

/// An order id sent as a string or an integer (an integer's digits are kept exactly).
fn order_id() -> Schema {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(255)),
        )
        .item(ObjectBuilder::new().schema_type(Type::Integer))
        .description(Some(
            "The sender's order id: 1–255 characters without control characters, or an integer \
             (kept digit for digit). With the contest and the source it is the dedupe key.",
        ))
        .examples([json!("A-1")])
        .build()
        .into()
}

/// A refund id sent as a string or an integer (an integer's digits are kept exactly).
fn refund_id() -> Schema {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(255)),
        )
        .item(ObjectBuilder::new().schema_type(Type::Integer))
        .description(Some(
            "Names the refund or chargeback: 1–255 characters without control characters, or an \
             integer. Required with `amount` on a refund; default `full`.",
        ))
        .examples([json!("R-1")])
        .build()
        .into()
}

/// A map from currency code to exchange rate.
fn exchange_rates() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(currency()))
        .additional_properties(Some(rate()))
        .description(Some(
            "How many units of the contest currency one unit of each currency is worth.",
        ))
        .examples([json!({ "EUR": 1.08 })])
        .into()
}

/// Like [`exchange_rates`], as sent: the whole map is replaced.
fn exchange_rates_input() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(currency()))
        .additional_properties(Some(rate()))
        .description(Some(
            "Currency code → units of the contest currency one unit of it is worth. Replaces the \
             whole map.",
        ))
        .examples([json!({ "EUR": "1.08" })])
        .into()
}

/// A string that is always `value`.
fn constant(value: &'static str) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some([value]))
        .build()
        .into()
}

fn accepted() -> Schema {
    constant("accepted")
}

fn ignored() -> Schema {
    constant("ignored")
}

fn always_true() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .enum_values(Some([true]))
        .build()
        .into()
}

fn always_false() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .enum_values(Some([false]))
        .build()
        .into()
}

// ---------------------------------------------------------------------------------------------
// Envelopes.

/// Declares the success envelope `{"success": true, "data": <data>}` of one body type.
macro_rules! envelope {
    ($($name:ident => $data:ty),* $(,)?) => {$(
        #[doc = concat!("`{\"success\": true, \"data\": ", stringify!($data), "}`.")]
        #[derive(Serialize, ToSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// Always `true`.
            #[schema(schema_with = always_true)]
            pub success: bool,
            /// The answer.
            pub data: $data,
        }
    )*};
}

envelope! {
    WebhookAcceptedResponse => WebhookOutcome,
    PurchaseWebhookResponse => PurchaseWebhookAnswer,
    SignupWebhookResponse => SignupWebhookAnswer,
    RefundWebhookResponse => RefundWebhookAnswer,
    PurchaseRecordResponse => PurchaseRecord,
    ContestResponse => Contest,
    EntryCreatedResponse => EntryCreated,
    EntryResponse => Entry,
    LedgerResponse => Ledger,
    LeaderboardResponse => Leaderboard,
    HealthResponse => Health,
}

/// `{"success": false, "error": {"code", "message", "field"?}}`: every error answer.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorResponse {
    /// Always `false`.
    #[schema(schema_with = always_false)]
    pub success: bool,
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The error of an [`ErrorResponse`].
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorDetail {
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation (not stable; never contains secrets or internals).
    pub message: String,
    /// With `invalid_field`: the field's name as sent, dotted for nested fields
    /// (`referral.advocatePoints`, `exchangeRates.eur`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub field: Option<String>,
}

/// Every error code, with its status.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 401: authentication missing or wrong (the message says which, without helping a guess).
    Unauthorized,
    /// 400: the body is not a JSON object.
    InvalidJson,
    /// 400: a field is missing or invalid (`field` names it).
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
    /// 404: unknown route, or the purchase or entry does not exist (yet).
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
    /// 503: `/readyz` — a dependency is not ready (the message says which).
    NotReady,
    /// 503: the admin API is off because `ADMIN_TOKEN` is not set (no `Retry-After`).
    AdminDisabled,
    /// 500: a bug; never an answer to a client's mistake.
    Internal,
}

/// Builds an error response component: an [`ErrorResponse`] body, optionally `Retry-After`.
fn error_response(description: &str, retry_after: bool) -> RefOr<Response> {
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

/// Declares the reusable error responses (`#/components/responses/…`).
macro_rules! error_responses {
    ($($name:ident: $description:literal, $retry_after:literal;)*) => {$(
        #[doc = $description]
        pub struct $name;

        impl<'s> ToResponse<'s> for $name {
            fn response() -> (&'s str, RefOr<Response>) {
                (stringify!($name), error_response($description, $retry_after))
            }
        }
    )*};
}

error_responses! {
    BadRequest: "`invalid_json`: the body is not a JSON object; `invalid_field`: a field is \
        missing or invalid, and `field` names it; `invalid_request`: the request cannot be read \
        (e.g. a path segment that does not percent-decode).", false;
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
        looked up); `not_found`: the resource does not exist (yet).", false;
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

// ---------------------------------------------------------------------------------------------
// Webhook bodies.

/// The generic purchase webhook's body. (With `X-Shopify-Hmac-Sha256` and no header credential
/// or Standard Webhooks signature, the body is a Shopify order instead: see [`ShopifyOrder`].)
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"email": "jane@example.com", "orderId": "A-1", "amount": "79.99", "currency": "USD"}))]
pub struct PurchaseRequest {
    /// The buyer's email address (trimmed and lower-cased; a new address creates an entry).
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    #[schema(schema_with = order_id)]
    pub order_id: String,
    #[schema(schema_with = amount)]
    pub amount: String,
    /// ISO 4217 code in any case; `USD` when absent.
    #[schema(value_type = Option<CurrencyCode>, default = "USD")]
    pub currency: Option<String>,
    /// The contest's webhook secret, consulted only when no header credential and no signature
    /// is sent.
    pub secret: Option<String>,
}

/// The signup webhook's body.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"email": "sam@example.com", "name": "Sam", "referralCode": "K7M2QX9P"}))]
pub struct SignupRequest {
    /// The person's email address (trimmed and lower-cased).
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// Display name (trimmed; at most 200 characters).
    #[schema(max_length = 200)]
    pub name: Option<String>,
    /// Phone number (trimmed; at most 200 characters).
    #[schema(max_length = 200)]
    pub phone: Option<String>,
    /// A friend's referral code: the friend and this person earn the contest's referral bonus.
    #[schema(max_length = 200)]
    pub referral_code: Option<String>,
    /// The contest's webhook secret, consulted only when no header credential and no signature
    /// is sent.
    pub secret: Option<String>,
}

/// The generic refund webhook's body. Authenticated like the purchase webhook (a Shopify
/// signature is refused here: Shopify refunds go to the Shopify URLs as `refunds/create`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"orderId": "A-1", "refundId": "R-1", "amount": "40.00", "reason": "damaged"}))]
pub struct RefundRequest {
    /// The order id of the purchase, as sent with it (a string or an integer). The purchase need
    /// not be recorded yet: the worker keeps the reversal and applies it when it lands.
    #[schema(schema_with = order_id)]
    pub order_id: String,
    /// Names this refund (or chargeback), 1–255 characters. Required with `amount` on a refund
    /// (two partial refunds of the same amount are two refunds); default `full`. With the
    /// contest, source, order and kind it is the dedupe key: the same refund sent twice counts
    /// once.
    #[schema(schema_with = refund_id)]
    pub refund_id: Option<String>,
    /// The amount returned; absent means the whole purchase. A chargeback always takes back
    /// everything still held: an amount sent with one is validated and not otherwise used.
    #[schema(schema_with = refund_amount)]
    pub amount: Option<String>,
    /// ISO 4217 code in any case, of a partial refund; absent means the purchase's currency. A
    /// refund in another currency than the purchase's changes nothing (the worker records it as
    /// a currency mismatch).
    #[schema(value_type = Option<CurrencyCode>)]
    pub currency: Option<String>,
    /// `chargeback` makes it a chargeback, `chargeback_won` gives back what the chargeback named
    /// by `refundId` took (any letter case); any other text is the refund's reason in the ledger
    /// (at most 500 characters, no control characters).
    #[schema(max_length = 500, example = "damaged")]
    pub reason: Option<String>,
    /// The contest's webhook secret, consulted only when no header credential and no signature
    /// is sent.
    pub secret: Option<String>,
}

/// A Shopify webhook body: for `orders/paid` and `orders/cancelled` the REST Admin API `Order`
/// resource, for `refunds/create` the `Refund` resource (`id`, `order_id`, `note`,
/// `transactions`). Only the fields read are listed; any others are accepted and ignored. An
/// authentic delivery that changes nothing (another topic, unpaid, a test order, no email, a
/// refund with no successful refund transaction) is answered `200` `ignored`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": 820982911946154508_u64, "email": "jane@example.com", "total_price": "79.99", "currency": "USD", "financial_status": "paid", "test": false}))]
pub struct ShopifyOrder {
    /// Order id (a 64-bit integer, read as text so no digit is lost).
    #[schema(value_type = Option<u64>)]
    pub id: Option<u64>,
    /// Buyer email (`contact_email` and `customer.email` are fallbacks).
    pub email: Option<String>,
    /// Fallback buyer email.
    pub contact_email: Option<String>,
    /// Fallback buyer: `customer.email`.
    #[schema(value_type = Option<Object>)]
    pub customer: Option<serde_json::Value>,
    /// Total in the shop currency, a decimal string.
    pub total_price: Option<String>,
    /// Shop currency.
    pub currency: Option<String>,
    /// `paid` awards when there is no `X-Shopify-Topic` header.
    pub financial_status: Option<String>,
    /// Test order: awards only when the contest accepts test events.
    pub test: Option<bool>,
    /// Discount codes (`[{"code": …}]`): a referral code (referral endpoint only).
    #[schema(value_type = Option<Vec<Object>>)]
    pub discount_codes: Option<Vec<serde_json::Value>>,
    /// Cart attributes (`[{"name": "ref"|"referralCode", "value": …}]`): a referral code.
    #[schema(value_type = Option<Vec<Object>>)]
    pub note_attributes: Option<Vec<serde_json::Value>>,
    /// Landing URL; `ref=<code>` in it is a referral code.
    pub landing_site: Option<String>,
    /// `orders/cancelled`: Shopify's cancellation reason, kept in the ledger.
    pub cancel_reason: Option<String>,
    /// `refunds/create`: the refunded order's id (a 64-bit integer).
    #[schema(value_type = Option<u64>)]
    pub order_id: Option<u64>,
    /// `refunds/create`: the refund's note, kept in the ledger.
    pub note: Option<String>,
    /// `refunds/create`: the refund's transactions; those with `kind: refund` and `status:
    /// success` are summed (`amount`, a decimal string, in `currency`).
    #[schema(value_type = Option<Vec<Object>>)]
    pub transactions: Option<Vec<serde_json::Value>>,
}

/// A Stripe event. `checkout.session.completed` with `payment_status` `paid` or
/// `no_payment_required`, and `checkout.session.async_payment_succeeded`, award (and remember
/// the session's `payment_intent`); `charge.refunded` sets the refunded total of the purchase
/// whose payment intent the charge names to the charge's cumulative `amount_refunded`;
/// `charge.dispute.created` is a chargeback, and `charge.dispute.closed` with `status` `won`
/// (or an inquiry closed as `warning_closed`) reinstates it. Anything else authentic is
/// answered `200` `ignored`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "evt_1", "type": "checkout.session.completed", "livemode": true, "data": {"object": {"id": "cs_1", "amount_total": 7999, "currency": "usd", "payment_status": "paid", "customer_details": {"email": "jane@example.com"}}}}))]
pub struct StripeEvent {
    /// Event id.
    pub id: Option<String>,
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// `false` for test-mode events (awarded only when the contest accepts test events).
    pub livemode: Option<bool>,
    /// `{"object": <Checkout Session>}`: `id` (the order id), `amount_total` (minor units),
    /// `currency`, `payment_status`, `payment_intent`, `customer_details.email` /
    /// `customer_email`, and the referral code in `metadata.referralCode`, `metadata.ref` or
    /// `client_reference_id`. `{"object": <Charge>}`: `id`, `payment_intent`, `currency`,
    /// `amount_refunded`. `{"object": <Dispute>}`: `id`, `payment_intent`, `reason`, `status`.
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
}

/// A Coinflow v2 event. `Settled` awards: order id `data.id`, amount `data.subtotal.cents` in
/// minor units of `data.subtotal.currency` (USD when absent), buyer `data.webhookInfo.email`.
/// `Refund` is a full refund of payment `data.id`, `Card Payment Chargeback Opened` a chargeback
/// and `Card Payment Chargeback Won` its reinstatement; `Card Payment Chargeback Lost` changes
/// nothing more. Anything else authentic is answered `200` `ignored`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"eventType": "Settled", "category": "Purchase", "created": "2026-11-01T12:00:00Z", "data": {"id": "cf_1", "subtotal": {"cents": 7999, "currency": "USD"}, "webhookInfo": {"email": "jane@example.com"}}}))]
pub struct CoinflowEvent {
    /// Event type: `Settled` awards; `Refund` and the `Card Payment Chargeback …` events take
    /// points back or give them back.
    pub event_type: Option<String>,
    /// Event category.
    pub category: Option<String>,
    /// When Coinflow created the event.
    pub created: Option<String>,
    /// The payment.
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
}

/// A webhook's `200`: a purchase is durably queued (`accepted` with its `purchaseId`), a
/// provider event that returns money is durably queued (`accepted` with its `reversalId`), or an
/// authentic provider event changes nothing (`ignored`).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum WebhookOutcome {
    /// A purchase, durably queued.
    Accepted(WebhookAccepted),
    /// A refund, cancellation, chargeback or won chargeback, durably queued.
    Reversal(ReversalAccepted),
    /// Authentic, changes nothing.
    Ignored(EventIgnored),
}

/// The generic purchase webhook's `200`: the worker's outcome when the sender waited for it and
/// it came in time, else what [`WebhookOutcome`] describes.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum PurchaseWebhookAnswer {
    /// Recorded (the sender waited).
    Recorded(PurchaseAnswer),
    /// Durably queued, or (a Shopify delivery) ignored.
    Queued(WebhookOutcome),
}

/// The signup webhook's `200`: the worker's outcome when the sender waited for it and it came in
/// time, else `accepted`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum SignupWebhookAnswer {
    /// Applied (the sender waited).
    Recorded(SignupAnswer),
    /// Durably queued.
    Queued(SignupAccepted),
}

/// The refund webhook's `200`: what the reversal did when the sender waited for it and the
/// outcome came in time, else `accepted`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum RefundWebhookAnswer {
    /// Settled, or kept until its purchase is recorded (the sender waited).
    Settled(RefundAnswer),
    /// Durably queued.
    Queued(ReversalAccepted),
}

/// A reversal (refund, cancellation, chargeback, or chargeback won) is durably held by RabbitMQ;
/// the worker applies it once its purchase is recorded (at once if it already is).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReversalAccepted {
    /// `rev_` + a hash of (contest, source, order or payment intent, refundId, kind): the same
    /// reversal, sent again or to another URL, always has the same id.
    #[schema(example = "rev_3k2m1q0p9s7t6v5w4x3y2z1a8r")]
    pub reversal_id: String,
    /// The purchase's order id as text (generic webhook, Shopify, Coinflow).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub order_id: Option<String>,
    /// Stripe: the PaymentIntent that names the purchase (its Checkout Session's).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, example = "pi_3PVnF0KZ0dZRqLEK1a2b3c4d")]
    pub payment_intent: Option<String>,
    /// The refund or chargeback id: as sent, `full` when none was named, the Shopify refund
    /// `id`, `cancelled` for a Shopify cancellation, `{charge}:{amount_refunded}` for a Stripe
    /// refund, the dispute id for Stripe disputes, `full` / `chargeback` for Coinflow.
    pub refund_id: String,
    pub kind: ReversalKind,
    #[schema(schema_with = accepted)]
    pub status: String,
}

/// What a reversal does: `refund` takes points back in proportion to the money returned,
/// `chargeback` takes back everything the purchase still holds, `chargeback_won` gives back what
/// the named chargeback took.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReversalKind {
    Refund,
    Chargeback,
    ChargebackWon,
}

/// The event is durably held by RabbitMQ; the worker awards it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookAccepted {
    /// `pur_` + a hash of (contest, source, orderId): the same order always has the same id.
    #[schema(example = "pur_8r3k2m1q0p9s7t6v5w4x3y2z1a")]
    pub purchase_id: String,
    /// The order id as text.
    pub order_id: String,
    #[schema(schema_with = accepted)]
    pub status: String,
}

/// An authentic provider event that awards nothing (answered `200` so the sender does not retry).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventIgnored {
    #[schema(schema_with = ignored)]
    pub status: String,
    /// Why, e.g. `topic orders/create does not award`.
    pub reason: String,
}

/// A signup is durably queued.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignupAccepted {
    /// `ent_` + a hash of (contest, email): the entry the signup creates or finds.
    pub entry_id: String,
    #[schema(schema_with = accepted)]
    pub status: String,
}

/// A recorded purchase.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PurchaseRecord {
    /// The purchase id.
    pub purchase_id: String,
    /// The order id as text.
    pub order_id: String,
    /// The buyer's entry.
    pub entry_id: String,
    /// The buyer's normalised email.
    pub email: String,
    /// The amount as sent, a decimal string.
    #[schema(example = "79.99")]
    pub amount: String,
    /// The currency code as sent (upper case).
    #[schema(value_type = CurrencyCode)]
    pub currency: String,
    /// Points the purchase first earned.
    pub points_awarded: i64,
    /// Points refunds and chargebacks have taken back so far.
    pub points_reversed: i64,
    /// The total of the refunds received, a decimal string (may exceed `amount`; the points
    /// taken back are capped at `pointsAwarded`).
    #[schema(example = "40.00")]
    pub refunded_amount: String,
    pub status: PurchaseStatus,
    /// When the worker committed it.
    #[schema(format = DateTime)]
    pub recorded_at: String,
}

/// `awarded`; `unconvertible_currency` (no exchange rate: recorded with 0 points);
/// `points_limit` (the award, or the buyer's total with it, would pass ±9·10^15: recorded with 0
/// points); `partially_refunded`; `refunded` (refunds reached the amount); `reversed` (a
/// chargeback is open or lost). A won chargeback returns the purchase to its earlier status.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PurchaseStatus {
    Awarded,
    UnconvertibleCurrency,
    PointsLimit,
    PartiallyRefunded,
    Refunded,
    Reversed,
}

// ---------------------------------------------------------------------------------------------
// Admin bodies.

/// `POST /api/contests`: only `name` is required. Unknown fields are ignored.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"id": "summer", "name": "Summer Blitz", "currency": "USD", "pointsPerUnit": 1}))]
pub struct ContestCreate {
    /// `[A-Za-z0-9_-]{1,64}`; generated (`c` + 24 base-36 characters) when absent.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub id: Option<String>,
    /// Display name: 1–200 characters after trimming.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[serde(flatten)]
    pub settings: ContestSettings,
}

/// `PATCH /api/contests/{contestId}`: any settable field; absent fields keep their value.
/// `exchangeRates` replaces the whole map; `providerSecrets` merges per provider (`null` removes
/// one). The id cannot be changed. Unknown fields are ignored.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"purchaseTracking": false}))]
pub struct ContestPatch {
    /// Display name: 1–200 characters after trimming.
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    #[serde(flatten)]
    pub settings: ContestSettings,
}

/// `POST /api/contests/{contestId}/webhook-secret/rotate`: how long the old secret keeps
/// working. Strict: any other field is `400` naming it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"gracePeriodSeconds": 0}))]
pub struct RotateSecret {
    /// Seconds the old secret keeps working, 0 (revoke it now) to 604800 (a week); absent or
    /// null: 86400 (24 h).
    #[schema(minimum = 0, maximum = 604_800)]
    pub grace_period_seconds: Option<i64>,
}

/// The optional settings of a contest, as sent.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContestSettings {
    /// ISO 4217 code (any case) points are counted in; default `USD`.
    #[schema(value_type = Option<CurrencyCode>)]
    pub currency: Option<String>,
    /// Points per unit of the contest currency, 0 to 10^6; default 1.
    #[schema(schema_with = points_per_unit)]
    pub points_per_unit: Option<String>,
    pub rounding: Option<Rounding>,
    /// Purchase webhooks answer 403 when false; default true.
    pub purchase_tracking: Option<bool>,
    /// Stripe `livemode: false` and Shopify `test: true` events award; default true.
    pub accept_test_events: Option<bool>,
    /// The generic purchase, signup and refund webhooks wait for the worker's outcome (as with
    /// `Prefer: wait=3`) unless the sender states a `wait` of its own; default false.
    pub sync_responses: Option<bool>,
    pub referral: Option<ReferralInput>,
    #[schema(schema_with = exchange_rates_input)]
    pub exchange_rates: Option<BTreeMap<String, String>>,
    pub provider_secrets: Option<ProviderSecretsInput>,
}

/// Referral rewards, as sent; absent values keep theirs (default 0).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReferralInput {
    /// Points the code's owner earns when a friend signs up with it (0 to 10^9).
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub advocate_points: Option<i64>,
    /// Points the friend earns for signing up with a code (0 to 10^9).
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub friend_points: Option<i64>,
    /// Points per unit of contest currency the code's owner earns on a referred purchase
    /// (0 to 10^6).
    #[schema(schema_with = points_per_unit)]
    pub points_per_unit: Option<String>,
}

/// Provider signing secrets, as sent: a non-empty string (at most 1024 characters, trimmed)
/// sets one, `null` removes it; other keys are a 400.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderSecretsInput {
    /// Shopify webhook signing secret.
    #[schema(min_length = 1, max_length = 1024)]
    pub shopify: Option<String>,
    /// Stripe endpoint signing secret (`whsec_…`).
    #[schema(min_length = 1, max_length = 1024)]
    pub stripe: Option<String>,
    /// Coinflow webhook validation key.
    #[schema(min_length = 1, max_length = 1024)]
    pub coinflow: Option<String>,
}

/// A contest as the admin API shows it, with its webhook secret and the URLs to give senders.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Contest {
    /// The contest id (part of every webhook URL).
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$", example = "summer")]
    pub id: String,
    /// Display name.
    pub name: String,
    /// Currency points are counted in.
    #[schema(value_type = CurrencyCode)]
    pub currency: String,
    /// Points per unit of the contest currency.
    #[schema(schema_with = points_per_unit)]
    pub points_per_unit: String,
    pub rounding: Rounding,
    /// Purchase webhooks answer 403 when false.
    pub purchase_tracking: bool,
    /// Whether test-mode provider events award.
    pub accept_test_events: bool,
    /// Whether the generic purchase, signup and refund webhooks wait for the worker's outcome
    /// when the sender states no `wait`.
    pub sync_responses: bool,
    pub referral: Referral,
    #[schema(schema_with = exchange_rates)]
    pub exchange_rates: BTreeMap<String, String>,
    pub provider_secrets: ProviderSecrets,
    /// The shared secret of the generic webhooks: `whsec_` + base64 of 32 random bytes.
    #[schema(pattern = "^whsec_[A-Za-z0-9+/]{43}=$")]
    pub webhook_secret: String,
    /// While a rotated-out secret still works: when it stops; otherwise null.
    #[schema(format = DateTime, required = true)]
    pub previous_webhook_secret_expires_at: Option<String>,
    pub webhook_urls: WebhookUrls,
    /// When the contest was created.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it was last changed.
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// Rounding of fractional points: `nearest` (half away from zero), `floor` or `ceil`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Rounding {
    Nearest,
    Floor,
    Ceil,
}

/// Referral rewards of a contest.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Referral {
    /// Points the code's owner earns when a friend signs up with it.
    pub advocate_points: i64,
    /// Points the friend earns for signing up with a code.
    pub friend_points: i64,
    /// Points per unit of contest currency the code's owner earns on a referred purchase.
    #[schema(schema_with = points_per_unit)]
    pub points_per_unit: String,
}

/// The provider secrets that are set (unset ones are absent).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderSecrets {
    /// Shopify webhook signing secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub shopify: Option<String>,
    /// Stripe endpoint signing secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub stripe: Option<String>,
    /// Coinflow webhook validation key.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub coinflow: Option<String>,
}

/// The contest's webhook URLs, under `PUBLIC_BASE_URL`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookUrls {
    /// Generic purchase webhook.
    #[schema(format = "uri")]
    pub purchase: String,
    /// Signup webhook.
    #[schema(format = "uri")]
    pub signup: String,
    /// Shopify referral webhook.
    #[schema(format = "uri")]
    pub shopify: String,
    /// Stripe referral webhook.
    #[schema(format = "uri")]
    pub stripe: String,
    /// Coinflow webhook.
    #[schema(format = "uri")]
    pub coinflow: String,
}

/// `POST /api/contests/{contestId}/entries`: a signup through the admin API, applied at once.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"email": "sam@example.com", "name": "Sam"}))]
pub struct EntryCreate {
    /// The person's email address (trimmed and lower-cased).
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// Display name (trimmed; at most 200 characters).
    #[schema(max_length = 200)]
    pub name: Option<String>,
    /// A friend's referral code.
    pub referral_code: Option<String>,
}

/// An entry: one person in one contest.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Entry {
    /// `ent_` + a hash of (contest, email).
    pub entry_id: String,
    /// Normalised email.
    pub email: String,
    /// Display name, when given.
    #[schema(required = true)]
    pub name: Option<String>,
    /// Points so far.
    pub points: i64,
    /// The code friends sign up or buy with to credit this entry.
    pub referral_code: String,
    /// The entry whose code this one signed up with.
    #[schema(required = true)]
    pub referred_by: Option<String>,
    /// When the entry was created.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// True while the entry is disqualified: absent from the leaderboard, still earning.
    pub disqualified: bool,
    /// When it was disqualified; null while it is not.
    #[schema(format = DateTime, required = true)]
    pub disqualified_at: Option<String>,
    /// The operator's reason, if one was given; null while it is not disqualified.
    #[schema(required = true)]
    pub disqualification_reason: Option<String>,
}

/// An entry, and whether it existed before this signup (`201` when created, `200` when not).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntryCreated {
    /// `ent_` + a hash of (contest, email).
    pub entry_id: String,
    /// Normalised email.
    pub email: String,
    /// Display name, when given.
    #[schema(required = true)]
    pub name: Option<String>,
    /// Points so far.
    pub points: i64,
    /// The code friends sign up or buy with to credit this entry.
    pub referral_code: String,
    /// The entry whose code this one signed up with.
    #[schema(required = true)]
    pub referred_by: Option<String>,
    /// When the entry was created.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// True while the entry is disqualified: absent from the leaderboard, still earning.
    pub disqualified: bool,
    /// When it was disqualified; null while it is not.
    #[schema(format = DateTime, required = true)]
    pub disqualified_at: Option<String>,
    /// The operator's reason, if one was given; null while it is not disqualified.
    #[schema(required = true)]
    pub disqualification_reason: Option<String>,
    /// True when the email already had an entry (nothing changed).
    pub already_exists: bool,
}

/// `POST /api/contests/{contestId}/entries/{entryId}/points`: a manual change of points.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"points": 250, "reason": "winner of the photo challenge"}))]
pub struct PointsAdjustment {
    /// The change: a non-zero whole number, may be negative, from -9·10^15 to 9·10^15.
    #[schema(minimum = -9_000_000_000_000_000_i64, maximum = 9_000_000_000_000_000_i64)]
    pub points: i64,
    /// Why, written to the ledger: 1–500 characters after trimming.
    #[schema(min_length = 1, max_length = 500)]
    pub reason: String,
}

/// `POST /api/contests/{contestId}/entries/{entryId}/disqualify`: the body is optional.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "card testing"}))]
pub struct Disqualification {
    /// Why: 1–500 characters after trimming. Disqualifying again keeps the first time and
    /// replaces the reason only when one is given.
    #[schema(min_length = 1, max_length = 500)]
    pub reason: Option<String>,
}

/// `POST /api/contests/{contestId}/entries/{entryId}/reinstate`: no body, or `{}`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reinstatement {}

/// An entry's points and every change of them: `points` is always the sum of `changes[].points`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ledger {
    /// The entry.
    pub entry_id: String,
    /// Its points now.
    pub points: i64,
    /// Every change, oldest first.
    pub changes: Vec<LedgerChange>,
}

/// One change of an entry's points.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LedgerChange {
    pub kind: LedgerKind,
    /// The change (negative when points were taken back); never 0.
    pub points: i64,
    /// The purchase it concerns (purchases, referral credits, refunds, chargebacks); else null.
    #[schema(required = true)]
    pub purchase_id: Option<String>,
    /// Free text: the operator's reason, the refund or dispute id, the referral bonus; else null.
    #[schema(required = true)]
    pub reason: Option<String>,
    /// When the change was committed.
    #[schema(format = DateTime)]
    pub at: String,
}

/// Why an entry's points changed: `purchase`; `referral` (credit for a purchase made with the
/// entry's code); `signup` (signup bonuses, and the opening balance of entries older than the
/// ledger); `refund` (points taken back for refunded money, also from the advocate's credit);
/// `chargeback` (taken back by a chargeback, or given back, positive, when it is won);
/// `adjustment` (an operator's manual change).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LedgerKind {
    Purchase,
    Referral,
    Signup,
    Refund,
    Chargeback,
    Adjustment,
}

/// The top entries by points.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Leaderboard {
    /// Highest points first; equal points share a rank and are listed oldest first.
    pub entries: Vec<LeaderboardEntry>,
}

/// One leaderboard row.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaderboardEntry {
    /// 1-based; equal points share a rank (1, 1, 3).
    #[schema(minimum = 1)]
    pub rank: i64,
    /// The entry.
    pub entry_id: String,
    /// Normalised email.
    pub email: String,
    /// Display name, when given.
    #[schema(required = true)]
    pub name: Option<String>,
    /// Points.
    pub points: i64,
}

/// `/healthz` and `/readyz`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// `ok` (`/healthz`) or `ready` (`/readyz`).
    pub status: HealthStatus,
}

/// A health status.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
    Ready,
}

/// This OpenAPI document.
#[derive(Serialize, ToSchema)]
#[schema(value_type = Object)]
pub struct OpenApiDocument(serde_json::Map<String, serde_json::Value>);

// ---------------------------------------------------------------------------------------------
// Operations: documentation only; the handlers are in `webhooks` and `admin`.

/// One documentation-only function per operation; `utoipa::path` turns each into a path item.
#[allow(dead_code)]
mod operations {
    use super::*;

    /// Receive a purchase
    ///
    /// The generic purchase webhook. Order of checks, from the head first: declared body size
    /// (413) → contest (404, or 503 while Postgres cannot be asked about an uncached id) →
    /// header credential (401) → declared media type (415); then the body (413 over 1 MiB,
    /// 408 when it does not arrive within 2 s) → signature or body `secret` (401, before the
    /// body is validated) → purchase tracking (403) → fields (400 naming the field) → publish
    /// with publisher confirm (503 + `Retry-After` on any broker trouble) → 200.
    ///
    /// Authentication: `X-Webhook-Secret` or `Authorization: Bearer` with the contest's webhook
    /// secret (header credentials decide alone); else a Standard Webhooks signature; else
    /// `X-Shopify-Hmac-Sha256` with the contest's Shopify secret — the body is then a Shopify
    /// delivery (see `ShopifyOrder`: `orders/paid` awards, `refunds/create` and
    /// `orders/cancelled` are reversals answered with a `reversalId`) and the answer may be
    /// `ignored`; else the body field `secret`. The same (contest, orderId) always yields the
    /// same `purchaseId`.
    ///
    /// Synchronous answers: with `Prefer: wait=N` (or at a contest with `syncResponses`, which
    /// waits 3 s unless the sender states a `wait`), the receiver still answers only after the
    /// broker's confirm, then waits up to N s (at most 4, and never past 4 s after the request
    /// arrived) for the worker's committed outcome and answers it: `pointsAwarded`,
    /// `alreadyExists`, `status`, `message` (`Preference-Applied: wait=N`). When it does not come
    /// in time, the answer is the usual `accepted` (the event is safe either way). Shopify
    /// deliveries never wait.
    #[utoipa::path(
        post,
        path = "/api/webhooks/purchase/{contestId}",
        tag = "webhooks",
        operation_id = "receivePurchase",
        params(ContestIdParam, StandardWebhooksHeaders, PreferHeader),
        request_body(content = PurchaseRequest, content_type = "application/json"),
        responses(
            (status = 200, description = "Recorded (the sender waited and the outcome came in \
                time), durably queued (`accepted`: a purchase, or a Shopify refund or \
                cancellation), or a Shopify delivery that changes nothing (`ignored`).",
                body = PurchaseWebhookResponse),
            (status = 400, response = BadRequest),
            (status = 401, response = Unauthorized),
            (status = 403, response = Forbidden),
            (status = 404, response = NotFound),
            (status = 413, response = PayloadTooLarge),
            (status = 503, response = ServiceUnavailable),
        ),
        security(
            ("webhookSecret" = []),
            ("webhookSecretBearer" = []),
            ("standardWebhooks" = []),
            ("shopifyHmac" = []),
        ),
    )]
    pub fn receive_purchase() {}

    /// Look up a purchase
    ///
    /// `200` once the worker has recorded the purchase, `404` `not_found` before. A header
    /// credential only (`X-Webhook-Secret` or `Authorization: Bearer`): a GET has no body, and a
    /// signature over the empty body proves nothing about the URL (it could be replayed
    /// against any order), so a signature is `401` here.
    #[utoipa::path(
        get,
        path = "/api/webhooks/purchase/{contestId}/{orderId}",
        tag = "webhooks",
        operation_id = "lookupPurchase",
        params(
            ContestIdParam,
            ("orderId" = String, Path, min_length = 1, example = "A-1", description = "The order id as sent \
                (for `stripe` the Checkout Session id, for `coinflow` `data.id`, for `shopify` \
                the order `id`)."),
            ("source" = Option<Source>, Query, description = "Where the purchase came from; \
                default `api`."),
        ),
        responses(
            (status = 200, description = "The recorded purchase.", body = PurchaseRecordResponse),
            (status = 400, response = BadRequest),
            (status = 401, response = Unauthorized),
            (status = 404, response = NotFound),
            (status = 503, response = ServiceUnavailable),
        ),
        security(("webhookSecret" = []), ("webhookSecretBearer" = [])),
    )]
    pub fn lookup_purchase() {}

    /// Receive a signup
    ///
    /// A person joins the contest, possibly with a friend's referral code. Authenticated like
    /// the purchase webhook (a Shopify signature is not accepted here). The worker creates the
    /// entry once per (contest, email) and pays the referral bonus once.
    ///
    /// Synchronous answers as for a purchase (`Prefer: wait=N`, or the contest's
    /// `syncResponses`): the answer is then the referral bonus paid, `pointsAwarded: {advocate,
    /// friend}`, and `alreadyExists`.
    #[utoipa::path(
        post,
        path = "/api/webhooks/signup/{contestId}",
        tag = "webhooks",
        operation_id = "receiveSignup",
        params(ContestIdParam, StandardWebhooksHeaders, PreferHeader),
        request_body(content = SignupRequest, content_type = "application/json"),
        responses(
            (status = 200, description = "Applied (the sender waited and the outcome came in \
                time), or durably queued (`accepted`).", body = SignupWebhookResponse),
            (status = 400, response = BadRequest),
            (status = 401, response = Unauthorized),
            (status = 404, response = NotFound),
            (status = 413, response = PayloadTooLarge),
            (status = 503, response = ServiceUnavailable),
        ),
        security(
            ("webhookSecret" = []),
            ("webhookSecretBearer" = []),
            ("standardWebhooks" = []),
        ),
    )]
    pub fn receive_signup() {}

    /// Receive a refund, cancellation or chargeback
    ///
    /// Money went back on a purchase sent to the purchase webhook (source `api`): points are
    /// taken back in proportion (refund), all of them (`reason: chargeback`), or given back
    /// (`reason: chargeback_won`). Authenticated like the purchase webhook, except that a
    /// Shopify signature is `401` here. Order of checks as for a purchase: contest (404) → body
    /// size (413) → authentication (401, before the body is validated) → purchase tracking (403:
    /// a paused contest takes no refunds either; the sender retries once it runs again) →
    /// fields (400 naming the field) → publish with publisher confirm (503 + `Retry-After`) →
    /// 200. The order need not be known: the worker keeps the reversal and applies it once, when
    /// the purchase is recorded.
    ///
    /// Synchronous answers as for a purchase (`Prefer: wait=N`, or the contest's
    /// `syncResponses`): the answer is then what the reversal did (`status` `applied`,
    /// `pending` while the purchase is not recorded, `duplicate`, `currency_mismatch` or
    /// `points_limit`; `pointsReversed`; the purchase's status after it).
    #[utoipa::path(
        post,
        path = "/api/webhooks/refund/{contestId}",
        tag = "webhooks",
        operation_id = "receiveRefund",
        params(ContestIdParam, StandardWebhooksHeaders, PreferHeader),
        request_body(content = RefundRequest, content_type = "application/json"),
        responses(
            (status = 200, description = "Settled or kept pending (the sender waited and the \
                outcome came in time), or durably queued (`accepted`).",
                body = RefundWebhookResponse),
            (status = 400, response = BadRequest),
            (status = 401, response = Unauthorized),
            (status = 403, response = Forbidden),
            (status = 404, response = NotFound),
            (status = 413, response = PayloadTooLarge),
            (status = 503, response = ServiceUnavailable),
        ),
        security(
            ("webhookSecret" = []),
            ("webhookSecretBearer" = []),
            ("standardWebhooks" = []),
        ),
    )]
    pub fn receive_refund() {}

    /// Receive a Shopify order, refund or cancellation (referral)
    ///
    /// Shopify `orders/paid`: records the buyer's purchase exactly as the purchase webhook
    /// would (source `shopify`, order `id`) and credits the owner of the order's referral code.
    /// Only `X-Shopify-Topic: orders/paid` awards (without the header, `financial_status: paid`).
    /// `refunds/create` takes back the sum of the refund's successful refund transactions
    /// (refund id = the refund's `id`) and `orders/cancelled` is a full refund of the order
    /// (refund id `cancelled`): both are answered `accepted` with a `reversalId`. Every other
    /// authentic delivery is `200` `ignored`.
    #[utoipa::path(
        post,
        path = "/api/webhooks/referral/shopify/{contestId}",
        tag = "webhooks",
        operation_id = "receiveShopifyReferral",
        params(
            ContestIdParam,
            ("X-Shopify-Topic" = Option<String>, Header, description = "The webhook topic; \
                `orders/paid` awards, `refunds/create` and `orders/cancelled` take points \
                back."),
        ),
        request_body(content = ShopifyOrder, content_type = "application/json"),
        responses(
            (status = 200, description = "Durably queued (`accepted`: a purchase or a \
                reversal) or changes nothing (`ignored`).", body = WebhookAcceptedResponse),
            (status = 400, response = BadRequest),
            (status = 401, response = Unauthorized),
            (status = 403, response = Forbidden),
            (status = 404, response = NotFound),
            (status = 413, response = PayloadTooLarge),
            (status = 503, response = ServiceUnavailable),
        ),
        security(("shopifyHmac" = [])),
    )]
    pub fn receive_shopify_referral() {}

    /// Receive a Stripe event (referral)
    ///
    /// Stripe Checkout events: records the purchase (source `stripe`, order id = Checkout
    /// Session id, remembering its `payment_intent`) and credits the owner of the referral code
    /// in `metadata.referralCode`, `metadata.ref` or `client_reference_id`. `charge.refunded`,
    /// `charge.dispute.created` and `charge.dispute.closed` (won) are reversals of the purchase
    /// whose payment intent they name, answered `accepted` with a `reversalId` and that
    /// `paymentIntent`. Other authentic events are `200` `ignored`.
    #[utoipa::path(
        post,
        path = "/api/webhooks/referral/stripe/{contestId}",
        tag = "webhooks",
        operation_id = "receiveStripeReferral",
        params(ContestIdParam),
        request_body(content = StripeEvent, content_type = "application/json"),
        responses(
            (status = 200, description = "Durably queued (`accepted`: a purchase or a \
                reversal) or changes nothing (`ignored`).", body = WebhookAcceptedResponse),
            (status = 400, response = BadRequest),
            (status = 401, response = Unauthorized),
            (status = 403, response = Forbidden),
            (status = 404, response = NotFound),
            (status = 413, response = PayloadTooLarge),
            (status = 503, response = ServiceUnavailable),
        ),
        security(("stripeSignature" = [])),
    )]
    pub fn receive_stripe_referral() {}

    /// Receive a Coinflow event
    ///
    /// Coinflow v2 events: `Settled` records the purchase (source `coinflow`, order id
    /// `data.id`); `Refund`, `Card Payment Chargeback Opened` and `Card Payment Chargeback Won`
    /// are reversals of that purchase, answered `accepted` with a `reversalId`; other authentic
    /// events (`Card Payment Chargeback Lost` among them) are `200` `ignored`. No referral
    /// credit.
    #[utoipa::path(
        post,
        path = "/api/webhooks/coinflow/{contestId}",
        tag = "webhooks",
        operation_id = "receiveCoinflow",
        params(ContestIdParam),
        request_body(content = CoinflowEvent, content_type = "application/json"),
        responses(
            (status = 200, description = "Durably queued (`accepted`: a purchase or a \
                reversal) or changes nothing (`ignored`).", body = WebhookAcceptedResponse),
            (status = 400, response = BadRequest),
            (status = 401, response = Unauthorized),
            (status = 403, response = Forbidden),
            (status = 404, response = NotFound),
            (status = 413, response = PayloadTooLarge),
            (status = 503, response = ServiceUnavailable),
        ),
        security(("coinflowKey" = []), ("coinflowSignature" = [])),
    )]
    pub fn receive_coinflow() {}

    /// Create a contest
    ///
    /// Applies at once on this receiver and within seconds on every other one.
    #[utoipa::path(
        post,
        path = "/api/contests",
        tag = "admin",
        operation_id = "createContest",
        request_body(content = ContestCreate, content_type = "application/json"),
        responses(
            (status = 201, description = "Created.", body = ContestResponse),
            (status = 400, response = BadRequest),
            (status = 401, response = Unauthorized),
            (status = 409, response = Conflict),
            (status = 413, response = PayloadTooLarge),
            (status = 503, response = ServiceUnavailable),
        ),
        security(("adminToken" = [])),
    )]
    pub fn create_contest() {}

    /// Get a contest
    #[utoipa::path(
        get,
        path = "/api/contests/{contestId}",
        tag = "admin",
        operation_id = "getContest",
        params(ContestIdParam),
        responses(
            (status = 200, description = "The contest.", body = ContestResponse),
            (status = 401, response = Unauthorized),
            (status = 404, response = NotFound),
            (status = 503, response = ServiceUnavailable),
        ),
        security(("adminToken" = [])),
    )]
    pub fn get_contest() {}

    /// Change a contest
    ///
    /// Any settable field; applies at once on this receiver and within seconds on every other.
    #[utoipa::path(
        patch,
        path = "/api/contests/{contestId}",
        tag = "admin",
        operation_id = "patchContest",
        params(ContestIdParam),
        request_body(content = ContestPatch, content_type = "application/json"),
        responses(
            (status = 200, description = "The changed contest.", body = ContestResponse),
            (status = 400, response = BadRequest),
            (status = 401, response = Unauthorized),
            (status = 404, response = NotFound),
            (status = 413, response = PayloadTooLarge),
            (status = 503, response = ServiceUnavailable),
        ),
        security(("adminToken" = [])),
    )]
    pub fn patch_contest() {}

    /// Rotate the webhook secret
    ///
    /// A new webhook secret. The previous one keeps working for `gracePeriodSeconds` (default
    /// 24 hours; `previousWebhookSecretExpiresAt` says until when); `0` revokes it at once,
    /// e.g. after a leak (`previousWebhookSecretExpiresAt` is then null). The body is optional.
    /// Applies at once on this receiver and within 15 s on every other one.
    #[utoipa::path(
        post,
        path = "/api/contests/{contestId}/webhook-secret/rotate",
        tag = "admin",
        operation_id = "rotateWebhookSecret",
        params(ContestIdParam),
        request_body(content = Option<RotateSecret>, content_type = "application/json"),
        responses(
            (status = 200, description = "The contest with its new secret.", body = ContestResponse),
            (status = 400, response = BadRequest),
            (status = 401, response = Unauthorized),
            (status = 404, response = NotFound),
            (status = 503, response = ServiceUnavailable),
        ),
        security(("adminToken" = [])),
    )]
    pub fn rotate_webhook_secret() {}

    /// Sign someone up
    ///
    /// Applied at once (not through the queue): `201` when the entry is created, `200` with
    /// `alreadyExists: true` when the email already had one.
    #[utoipa::path(
        post,
        path = "/api/contests/{contestId}/entries",
        tag = "admin",
        operation_id = "createEntry",
        params(ContestIdParam),
        request_body(content = EntryCreate, content_type = "application/json"),
        responses(
            (status = 200, description = "The email already had an entry.", body = EntryCreatedResponse),
            (status = 201, description = "Created.", body = EntryCreatedResponse),
            (status = 400, response = BadRequest),
            (status = 401, response = Unauthorized),
            (status = 404, response = NotFound),
            (status = 413, response = PayloadTooLarge),
            (status = 503, response = ServiceUnavailable),
        ),
        security(("adminToken" = [])),
    )]
    pub fn create_entry() {}

    /// Get an entry
    #[utoipa::path(
        get,
        path = "/api/contests/{contestId}/entries/{entryId}",
        tag = "admin",
        operation_id = "getEntry",
        params(
            ContestIdParam,
            ("entryId" = String, Path, min_length = 1, description = "The entry id (`ent_…`)."),
        ),
        responses(
            (status = 200, description = "The entry.", body = EntryResponse),
            (status = 401, response = Unauthorized),
            (status = 404, response = NotFound),
            (status = 503, response = ServiceUnavailable),
        ),
        security(("adminToken" = [])),
    )]
    pub fn get_entry() {}

    /// An entry's points ledger
    ///
    /// Every change of the entry's points, oldest first; `points` is their sum.
    #[utoipa::path(
        get,
        path = "/api/contests/{contestId}/entries/{entryId}/ledger",
        tag = "admin",
        operation_id = "getEntryLedger",
        params(ContestIdParam, EntryIdParam),
        responses(
            (status = 200, description = "The ledger.", body = LedgerResponse),
            (status = 401, response = Unauthorized),
            (status = 404, response = NotFound),
            (status = 503, response = ServiceUnavailable),
        ),
        security(("adminToken" = [])),
    )]
    pub fn get_entry_ledger() {}

    /// Adjust an entry's points
    ///
    /// A manual change with a reason, written to the ledger as an `adjustment`. With an
    /// `Idempotency-Key`, repeating the call on the same entry applies it once and answers the
    /// same; the same key with a different change is `409` `idempotency_key_reused`. A change
    /// that would take the entry beyond ±9·10^15 points is `409` `points_limit`.
    #[utoipa::path(
        post,
        path = "/api/contests/{contestId}/entries/{entryId}/points",
        tag = "admin",
        operation_id = "adjustEntryPoints",
        params(
            ContestIdParam,
            EntryIdParam,
            ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255,
                pattern = "^[!-~]{1,255}$", description = "Applies the change once per entry, \
                however often it is sent (1–255 visible ASCII characters)."),
        ),
        request_body(content = PointsAdjustment, content_type = "application/json"),
        responses(
            (status = 201, description = "The entry after the change (or, for a repeated \
                `Idempotency-Key`, the answer given the first time).", body = EntryResponse),
            (status = 400, response = BadRequest),
            (status = 401, response = Unauthorized),
            (status = 404, response = NotFound),
            (status = 409, response = Conflict),
            (status = 413, response = PayloadTooLarge),
            (status = 503, response = ServiceUnavailable),
        ),
        security(("adminToken" = [])),
    )]
    pub fn adjust_entry_points() {}

    /// Disqualify an entry
    ///
    /// The entry leaves the leaderboard; it keeps its points and ledger and keeps earning from
    /// its purchases, so reinstating it shows the truth.
    #[utoipa::path(
        post,
        path = "/api/contests/{contestId}/entries/{entryId}/disqualify",
        tag = "admin",
        operation_id = "disqualifyEntry",
        params(ContestIdParam, EntryIdParam),
        request_body(content = Option<Disqualification>, content_type = "application/json"),
        responses(
            (status = 200, description = "The entry, `disqualified: true`.", body = EntryResponse),
            (status = 400, response = BadRequest),
            (status = 401, response = Unauthorized),
            (status = 404, response = NotFound),
            (status = 413, response = PayloadTooLarge),
            (status = 503, response = ServiceUnavailable),
        ),
        security(("adminToken" = [])),
    )]
    pub fn disqualify_entry() {}

    /// Reinstate an entry
    ///
    /// A disqualified entry returns to the leaderboard with all its points.
    #[utoipa::path(
        post,
        path = "/api/contests/{contestId}/entries/{entryId}/reinstate",
        tag = "admin",
        operation_id = "reinstateEntry",
        params(ContestIdParam, EntryIdParam),
        request_body(content = Option<Reinstatement>, content_type = "application/json"),
        responses(
            (status = 200, description = "The entry, `disqualified: false`.", body = EntryResponse),
            (status = 400, response = BadRequest),
            (status = 401, response = Unauthorized),
            (status = 404, response = NotFound),
            (status = 413, response = PayloadTooLarge),
            (status = 503, response = ServiceUnavailable),
        ),
        security(("adminToken" = [])),
    )]
    pub fn reinstate_entry() {}

    /// Leaderboard
    ///
    /// Disqualified entries are left out (and take no rank).
    #[utoipa::path(
        get,
        path = "/api/contests/{contestId}/leaderboard",
        tag = "admin",
        operation_id = "leaderboard",
        params(
            ContestIdParam,
            ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "How many \
                entries (1–1000, default 10)."),
        ),
        responses(
            (status = 200, description = "The top entries.", body = LeaderboardResponse),
            (status = 400, response = BadRequest),
            (status = 401, response = Unauthorized),
            (status = 404, response = NotFound),
            (status = 503, response = ServiceUnavailable),
        ),
        security(("adminToken" = [])),
    )]
    pub fn leaderboard() {}

    /// Liveness
    ///
    /// `200` as long as the process serves HTTP. No authentication.
    #[utoipa::path(
        get,
        path = "/healthz",
        tag = "admin",
        operation_id = "healthz",
        responses(
            (status = 200, description = "Alive: `{\"status\": \"ok\"}`.", body = HealthResponse),
            (status = 503, response = ServiceUnavailable),
        ),
    )]
    pub fn healthz() {}

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
            (status = 200, description = "Ready: `{\"status\": \"ready\"}`.", body = HealthResponse),
            (status = 503, response = ServiceUnavailable),
        ),
    )]
    pub fn readyz() {}

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
            (status = 503, response = ServiceUnavailable),
        ),
    )]
    pub fn metrics() {}

    /// This document
    ///
    /// The OpenAPI document of both listeners. No authentication.
    #[utoipa::path(
        get,
        path = "/openapi.json",
        tag = "admin",
        operation_id = "openapi",
        responses(
            (status = 200, description = "The OpenAPI document (not enveloped).", body = OpenApiDocument),
            (status = 503, response = ServiceUnavailable),
        ),
    )]
    pub fn openapi_json() {}
}

/// The contest id in a path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ContestIdParam {
    /// The contest id, `[A-Za-z0-9_-]{1,64}`. Anything else is `404` without a lookup.
    #[param(
        rename = "contestId",
        pattern = "^[A-Za-z0-9_-]{1,64}$",
        example = "summer"
    )]
    pub contest_id: String,
}

/// The entry id in a path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct EntryIdParam {
    /// The entry id (`ent_…`); anything else is `404` without a lookup.
    #[param(
        rename = "entryId",
        min_length = 1,
        example = "ent_3k9q2m7x1p0s8t6v5w4x3y2z1a"
    )]
    pub entry_id: String,
}

/// Standard Webhooks signature headers (all three together, or none).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct StandardWebhooksHeaders {
    /// Standard Webhooks message id (signed).
    #[param(rename = "webhook-id")]
    pub webhook_id: Option<String>,
    /// Standard Webhooks timestamp, Unix seconds within ±5 minutes (signed).
    #[param(rename = "webhook-timestamp")]
    pub webhook_timestamp: Option<String>,
    /// Space-separated `v1,<base64 HMAC-SHA256>` entries.
    #[param(rename = "webhook-signature")]
    pub webhook_signature: Option<String>,
}

/// `Prefer` (RFC 7240) on the generic purchase, signup and refund webhooks.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct PreferHeader {
    /// `wait=N`: wait up to N seconds (capped at 4) for the worker's outcome and answer it
    /// instead of `accepted`; `wait=0` or `respond-async` answer at once even at a contest with
    /// `syncResponses`. Comma-separated preferences, RFC 7240; anything malformed is ignored.
    #[param(rename = "Prefer", example = "wait=3")]
    pub prefer: Option<String>,
}

/// Where a looked-up purchase came from.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Api,
    Shopify,
    Stripe,
    Coinflow,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_tagged_for_its_listener() {
        let spec = spec();
        for (path, item) in &spec.paths.paths {
            let admin = path.starts_with("/api/contests")
                || ["/healthz", "/readyz", "/metrics", "/openapi.json"].contains(&path.as_str());
            let expected = if admin { "admin" } else { "webhooks" };
            for operation in [&item.get, &item.post, &item.patch].into_iter().flatten() {
                assert_eq!(
                    operation.tags.as_deref(),
                    Some(&[expected.to_owned()][..]),
                    "{path}"
                );
            }
            assert_eq!(item.servers.is_some(), admin, "{path} servers");
        }
    }

    #[test]
    fn exactly_the_waiting_operations_document_prefer_and_preference_applied() {
        let spec = spec();
        let mut waiting = Vec::new();
        for item in spec.paths.paths.values() {
            for operation in [&item.get, &item.post, &item.patch].into_iter().flatten() {
                let prefer = operation
                    .parameters
                    .iter()
                    .flatten()
                    .any(|parameter| parameter.name == "Prefer");
                let applied = match operation.responses.responses.get("200") {
                    Some(RefOr::T(ok)) => ok.headers.contains_key("Preference-Applied"),
                    _ => false,
                };
                assert_eq!(prefer, applied, "{:?}", operation.operation_id);
                if prefer {
                    waiting.extend(operation.operation_id.clone());
                }
            }
        }
        waiting.sort();
        assert_eq!(
            waiting,
            ["receivePurchase", "receiveRefund", "receiveSignup"]
        );
    }

    #[test]
    fn the_document_is_stable() {
        assert_eq!(spec_json(), spec_json());
        assert!(spec_json().ends_with("}\n"));
    }
}
