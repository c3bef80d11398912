//! Authentication of webhook senders. Every check runs over the raw body bytes and compares in
//! constant time; every scheme fails closed (an unknown or malformed credential is 401, never
//! "accept unsigned").
//!
//! - [`secret`]: the contest's shared webhook secret in a header or the body.
//! - [`standard_webhooks`]: Standard Webhooks signatures (`webhook-id/-timestamp/-signature`).
//! - [`hmac`]: the HMAC primitives the provider schemes share.

pub mod hmac;
pub mod secret;
pub mod standard_webhooks;

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use shared::contest::Contest;

use crate::error::ApiError;

/// The verdict of a credential check: `Ok` when it matched, else 401 (the one place a failed
/// check becomes an error, so no scheme can forget to fail closed).
pub fn authenticated(matched: bool) -> Result<(), ApiError> {
    if matched {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// Which generic credential authenticated a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenericCredential {
    /// The webhook secret in `X-Webhook-Secret` or `Authorization: Bearer`.
    Header,
    /// A valid Standard Webhooks signature.
    StandardWebhooks,
    /// The webhook secret in the body field `secret`.
    BodySecret,
    /// A valid `X-Shopify-Hmac-Sha256` with the contest's Shopify secret: the body is a Shopify
    /// order, not the generic body.
    Shopify,
}

/// Whether an endpoint takes Shopify orders signed with `X-Shopify-Hmac-Sha256`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShopifyOrders {
    /// The purchase webhook: a Shopify signature authenticates, and the body is a Shopify order.
    Accepted,
    /// Signup and lookup: a Shopify signature authenticates orders, not these, so it is 401.
    Refused,
}

/// Authenticates a generic webhook (purchase, signup, lookup) in the contract's order:
/// a header credential decides alone when present; otherwise a Standard Webhooks signature;
/// otherwise a Shopify signature (where `shopify` accepts it; the body is then a Shopify
/// order); otherwise the body field `secret`. A body that is not a JSON object has no `secret`:
/// 401.
pub fn authenticate_generic(
    headers: &HeaderMap,
    body: &[u8],
    contest: &Contest,
    now: DateTime<Utc>,
    shopify: ShopifyOrders,
) -> Result<GenericCredential, ApiError> {
    if let Some(given) = secret::header_credential(headers)? {
        return secret::check(given, contest, now).map(|()| GenericCredential::Header);
    }
    if standard_webhooks::is_present(headers) {
        return standard_webhooks::verify(
            headers,
            body,
            contest.accepted_webhook_secrets(now),
            now,
        )
        .map(|()| GenericCredential::StandardWebhooks);
    }
    if crate::providers::shopify::is_present(headers) {
        if shopify == ShopifyOrders::Refused {
            return Err(ApiError::Unauthorized);
        }
        let secret = contest.provider_secrets.shopify.as_deref();
        return crate::providers::shopify::verify(headers, body, secret, now)
            .map(|()| GenericCredential::Shopify);
    }
    let given = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| value.get("secret")?.as_str().map(str::to_owned))
        .ok_or(ApiError::Unauthorized)?;
    secret::check(&given, contest, now).map(|()| GenericCredential::BodySecret)
}
