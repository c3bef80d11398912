//! What a webhook request can be refused for before its body is read, decided from the path and
//! the headers alone, in this order: a declared body over 1 MiB (413), a contest that does not
//! exist (404, and an id that cannot exist never reaches the database), a wrong header
//! credential (401; header credentials decide alone, and so does Coinflow's key), a provider
//! endpoint without its signature header or without a secret to check it with (401), a lookup
//! without a header credential (401), and a body declared as something other than JSON (415).
//!
//! A sender refused here holds a request slot only for as long as the check takes, never while
//! its body trickles in. The handlers behind the gate call the same checks, so the gate mostly
//! changes when an answer comes; where it decides which (a declared body over 1 MiB is 413
//! whatever else is wrong with the request), that is the contract's order.

use std::borrow::Cow;

use axum::{
    extract::{MatchedPath, Request, State},
    http::{header, request::Parts, HeaderMap, Method},
    middleware::Next,
    response::{IntoResponse, Response},
};
use chrono::Utc;
use shared::contest::Contest;

use crate::{
    auth::{self, refused, Reason, Scheme},
    body,
    contest_cache::Lookup,
    error::ApiError,
    state::AppState,
};

/// The path parameter holding the contest id in every webhook route.
const CONTEST_PARAM: &str = "{contestId}";

/// The path parameter holding the order id of the lookup.
const ORDER_PARAM: &str = "{orderId}";

/// Which credentials a webhook route takes, by its route template and method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Credentials {
    /// Purchase, signup, refund: header credential, signature, or the body's `secret`.
    Generic,
    /// The purchase lookup: a header credential only; no body.
    Lookup,
    /// Shopify referral URL: `X-Shopify-Hmac-Sha256` with the contest's Shopify secret.
    Shopify,
    /// Stripe referral URL: `Stripe-Signature` with the contest's Stripe secret.
    Stripe,
    /// Coinflow URL: the Coinflow key in `Authorization`, or `Coinflow-Signature`.
    Coinflow,
}

impl Credentials {
    /// The credentials of `template` for `method`; `None` for a method the route does not take
    /// (the router answers 405).
    fn of(method: &Method, template: &str) -> Option<Self> {
        if method == Method::GET || method == Method::HEAD {
            return template
                .ends_with(ORDER_PARAM)
                .then_some(Credentials::Lookup);
        }
        if method != Method::POST || template.ends_with(ORDER_PARAM) {
            return None;
        }
        Some(if template.starts_with("/api/webhooks/referral/shopify/") {
            Credentials::Shopify
        } else if template.starts_with("/api/webhooks/referral/stripe/") {
            Credentials::Stripe
        } else if template.starts_with("/api/webhooks/coinflow/") {
            Credentials::Coinflow
        } else {
            Credentials::Generic
        })
    }
}

/// Middleware of the webhook routes: refuses what can be refused before the body is read.
pub async fn gate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // The body stays aside, untouched, while the head is checked.
    let (mut head, body) = request.into_parts();
    // A request that waits for its outcome budgets its answer time from here.
    head.extensions
        .insert(crate::sync::Arrival(tokio::time::Instant::now()));
    match check(&state, &head).await {
        Ok(()) => next.run(Request::from_parts(head, body)).await,
        Err(error) => error.into_response(),
    }
}

async fn check(state: &AppState, head: &Parts) -> Result<(), ApiError> {
    let Some(template) = head.extensions.get::<MatchedPath>() else {
        return Ok(());
    };
    let template = template.as_str();
    let Some(credentials) = Credentials::of(&head.method, template) else {
        return Ok(());
    };
    let headers = &head.headers;
    let path = head.uri.path();
    let has_body = credentials != Credentials::Lookup;
    if has_body && body::declares_too_large(headers) {
        return Err(ApiError::PayloadTooLarge);
    }
    let contest = resolve(state, segment(template, path, CONTEST_PARAM)).await?;
    let now = Utc::now();
    match credentials {
        Credentials::Generic => {
            auth::authenticate_header(headers, &contest, now)?;
        }
        Credentials::Lookup => {
            // The handler reads the order id with axum's `Path`, whose refusal of a segment that
            // is not UTF-8 would not name the field.
            if segment(template, path, ORDER_PARAM).is_none() {
                return Err(ApiError::field(
                    "orderId",
                    "is not valid UTF-8 once percent-decoded",
                ));
            }
            auth::authenticate_lookup(headers, &contest, now)?;
        }
        Credentials::Shopify => {
            let secret = contest.provider_secrets.shopify.as_deref();
            require(headers, &["x-shopify-hmac-sha256"], secret, Scheme::Shopify)?;
        }
        Credentials::Stripe => {
            let secret = contest.provider_secrets.stripe.as_deref();
            require(headers, &["stripe-signature"], secret, Scheme::Stripe)?;
        }
        Credentials::Coinflow => {
            let secret = contest.provider_secrets.coinflow.as_deref();
            let scheme = if headers.contains_key(header::AUTHORIZATION) {
                Scheme::CoinflowKey
            } else {
                Scheme::CoinflowSignature
            };
            require(
                headers,
                &["authorization", "coinflow-signature"],
                secret,
                scheme,
            )?;
            // The key in `Authorization` decides alone and needs no body: check it now.
            if scheme == Scheme::CoinflowKey {
                crate::providers::coinflow::verify(headers, &[], secret, now)?;
            }
        }
    }
    if has_body {
        body::check_media_type(headers)?;
    }
    Ok(())
}

/// The contest of the URL: an id that does not decode or cannot exist is 404 without a lookup;
/// an uncached id asks the cache (and, within its budget, the database).
async fn resolve(
    state: &AppState,
    raw_id: Option<Cow<'_, str>>,
) -> Result<std::sync::Arc<Contest>, ApiError> {
    let raw_id = raw_id.ok_or(ApiError::ContestNotFound)?;
    if let Some(contest) = state.cache.cached(&raw_id) {
        return Ok(contest);
    }
    let id = shared::ids::ContestId::parse(&raw_id).map_err(|_| ApiError::ContestNotFound)?;
    match state.cache.get(&id).await {
        Lookup::Found(contest) => Ok(contest),
        Lookup::NotFound => Err(ApiError::ContestNotFound),
        Lookup::Unavailable => Err(ApiError::DatabaseUnavailable),
    }
}

/// A provider endpoint needs one of its credential headers and a secret to check it with (a
/// signature covers the body, so the handler checks it).
fn require(
    headers: &HeaderMap,
    names: &[&str],
    secret: Option<&str>,
    scheme: Scheme,
) -> Result<(), ApiError> {
    if !names.iter().any(|name| headers.contains_key(*name)) {
        return Err(refused(scheme, Reason::Missing));
    }
    if secret.is_none_or(str::is_empty) {
        return Err(refused(scheme, Reason::NotConfigured));
    }
    Ok(())
}

/// The percent-decoded segment of `path` where `template` has `param`, or `None` when it does
/// not decode to UTF-8. Borrowed (no allocation) unless it holds a `%`.
fn segment<'a>(template: &str, path: &'a str, param: &str) -> Option<Cow<'a, str>> {
    let index = template.split('/').position(|part| part == param)?;
    let raw = path.split('/').nth(index)?;
    if !raw.contains('%') {
        return Some(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let hex = |at: usize| {
        bytes
            .get(at)
            .and_then(|&b| char::from(b).to_digit(16))
            .map(|digit| digit as u8)
    };
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                decoded.push(high * 16 + low);
                i += 3;
            }
            // A `%` not followed by two hex digits stands for itself, as axum reads it.
            (byte, _, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(decoded).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOKUP: &str = "/api/webhooks/purchase/{contestId}/{orderId}";
    const PURCHASE: &str = "/api/webhooks/purchase/{contestId}";

    #[test]
    fn segments_are_found_by_their_parameter_and_decoded() {
        let path = "/api/webhooks/purchase/summer/A%2D1";
        assert_eq!(
            segment(LOOKUP, path, CONTEST_PARAM).as_deref(),
            Some("summer")
        );
        assert_eq!(segment(LOOKUP, path, ORDER_PARAM).as_deref(), Some("A-1"));
        let path = "/api/webhooks/purchase/sum%6Der";
        assert_eq!(
            segment(PURCHASE, path, CONTEST_PARAM).as_deref(),
            Some("summer")
        );
        assert_eq!(
            segment(PURCHASE, "/api/webhooks/purchase/%FF", CONTEST_PARAM),
            None
        );
        assert_eq!(
            segment(PURCHASE, "/api/webhooks/purchase/100%", CONTEST_PARAM).as_deref(),
            Some("100%")
        );
        assert_eq!(
            segment(LOOKUP, "/api/webhooks/purchase/c/%C3%A9", ORDER_PARAM).as_deref(),
            Some("é")
        );
    }

    #[test]
    fn routes_take_their_own_credentials() {
        let of = |method: Method, template: &str| Credentials::of(&method, template);
        assert_eq!(of(Method::POST, PURCHASE), Some(Credentials::Generic));
        assert_eq!(of(Method::GET, LOOKUP), Some(Credentials::Lookup));
        assert_eq!(of(Method::POST, LOOKUP), None);
        assert_eq!(of(Method::GET, PURCHASE), None);
        assert_eq!(
            of(Method::POST, "/api/webhooks/referral/stripe/{contestId}"),
            Some(Credentials::Stripe)
        );
        assert_eq!(
            of(Method::POST, "/api/webhooks/referral/shopify/{contestId}"),
            Some(Credentials::Shopify)
        );
        assert_eq!(
            of(Method::POST, "/api/webhooks/coinflow/{contestId}"),
            Some(Credentials::Coinflow)
        );
        assert_eq!(
            of(Method::POST, "/api/webhooks/refund/{contestId}"),
            Some(Credentials::Generic)
        );
    }
}
