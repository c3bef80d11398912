//! The OpenAPI 3.1 document of both listeners, generated from the handlers themselves.
//!
//! Every handler carries its `#[utoipa::path]` next to its code, and its request and answer
//! bodies are the Rust types it reads and returns ([`crate::api`]). The routers are built with
//! `utoipa-axum` from one list per listener ([`crate::webhooks::routes`],
//! [`crate::admin::routes`], [`service_routes`]): registering a handler there both routes it
//! and documents it, so the document cannot drift from what is served. This module keeps only
//! what concerns the document as a whole: its description, servers and tags, the security
//! schemes, the error responses shared by every operation, and the answers every operation of
//! a kind gives (`408`/`413`/`415` with a body, `429` on the public listener).
//!
//! The document is served at `GET /openapi.json` on the admin listener and checked in as
//! `openapi.json` (`receiver openapi > openapi.json`; a test keeps the two equal).

use std::sync::OnceLock;

use axum::{http::header, response::IntoResponse};
use serde::Serialize;
use shared::ids::Source;
use utoipa::{
    openapi::{
        security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
        server::ServerBuilder,
        RefOr,
    },
    Modify, OpenApi, ToSchema,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    admin,
    api::{
        envelope::{
            BadRequest, Conflict, ErrorBody, ErrorCode, Forbidden, MethodNotAllowed, NotFound,
            PayloadTooLarge, RequestTimeout, ServiceUnavailable, TooManyRequests, Unauthorized,
            UnsupportedMediaType,
        },
        schema::CurrencyCode,
    },
    health, metrics,
    state::AppState,
    webhooks,
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
    components(
        schemas(ErrorBody, ErrorCode, CurrencyCode, Source),
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
    modifiers(&SecuritySchemes),
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

/// The admin listener's routes outside the admin API: health, metrics and this document (no
/// token).
pub fn service_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(metrics::render))
        .routes(routes!(serve))
}

/// The OpenAPI document: the whole-document parts above and the operations of every route list.
pub fn spec() -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi();
    document.merge(webhooks::routes().into_openapi());
    document.merge(admin::routes().into_openapi());
    document.merge(service_routes().into_openapi());
    Listeners.modify(&mut document);
    EdgeAnswers.modify(&mut document);
    document
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

/// This OpenAPI document.
#[derive(Serialize, ToSchema)]
#[schema(value_type = Object)]
pub struct OpenApiDocument(serde_json::Map<String, serde_json::Value>);

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
            let operations = [&item.get, &item.post, &item.patch, &item.delete];
            for operation in operations.into_iter().flatten() {
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
    fn the_document_is_stable() {
        assert_eq!(spec_json(), spec_json());
        assert!(spec_json().ends_with("}\n"));
    }
}
