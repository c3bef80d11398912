//! Authentication of webhook senders. Every check runs over the raw body bytes and compares in
//! constant time; every scheme fails closed (an unknown or malformed credential is 401, never
//! "accept unsigned").
//!
//! - [`secret`]: the contest's shared webhook secret in a header or the body.
//! - [`standard_webhooks`]: Standard Webhooks signatures (`webhook-id/-timestamp/-signature`).
//! - [`shopify`]: Shopify's `X-Shopify-Hmac-Sha256` (the generic purchase webhook takes it too).
//! - [`hmac`]: the HMAC primitives the provider schemes share.
//! - [`failure`]: why a credential was refused (logged in full, told to the sender briefly).

pub mod failure;
pub mod hmac;
pub mod secret;
pub mod shopify;
pub mod standard_webhooks;

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use shared::contest::Contest;

pub use self::failure::{AuthFailure, Reason, Scheme};
use crate::error::ApiError;

/// The verdict of a credential check: `Ok` when it matched, else 401 naming `scheme` (the one
/// place a failed check becomes an error, so no scheme can forget to fail closed).
pub fn authenticated(matched: bool, scheme: Scheme) -> Result<(), ApiError> {
    if matched {
        Ok(())
    } else {
        Err(refused(scheme, Reason::Mismatch))
    }
}

/// A 401 for `scheme` because of `reason`.
pub fn refused(scheme: Scheme, reason: Reason) -> ApiError {
    ApiError::Unauthorized(AuthFailure::new(scheme, reason))
}

/// What the lookup tells a sender who signed instead of sending the secret.
const HEADER_ONLY_HINT: &str =
    "this endpoint takes the webhook secret in X-Webhook-Secret or Authorization: Bearer only";

/// What an endpoint that takes no Shopify orders (signup) tells a sender who sent a Shopify
/// signature.
const NO_SHOPIFY_HINT: &str =
    "a Shopify signature is accepted on the purchase and Shopify URLs only";

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
    /// Signup (and other non-order bodies): a Shopify signature authenticates orders, not
    /// these, so it is 401.
    Refused,
}

/// Authenticates a generic webhook (purchase, signup, refund) in the contract's order:
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
    if let Some(credential) = authenticate_header(headers, contest, now)? {
        return Ok(credential);
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
    if shopify::is_present(headers) {
        if shopify == ShopifyOrders::Refused {
            return Err(refused(
                Scheme::Shopify,
                Reason::WrongScheme(NO_SHOPIFY_HINT),
            ));
        }
        let secret = contest.provider_secrets.shopify.as_deref();
        return shopify::verify(headers, body, secret, now).map(|()| GenericCredential::Shopify);
    }
    let given = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| value.get("secret")?.as_str().map(str::to_owned))
        .ok_or(ApiError::Unauthorized(AuthFailure::MISSING))?;
    secret::check(&given, contest, now, Scheme::BodySecret).map(|()| GenericCredential::BodySecret)
}

/// Checks a header credential (`X-Webhook-Secret` or `Authorization: Bearer`), which decides
/// alone when present: `Some` when it is right, 401 when it is wrong, `None` when there is none
/// (the caller then looks for a signature or the body's `secret`). It needs no body, so it runs
/// before the body is read.
pub fn authenticate_header(
    headers: &HeaderMap,
    contest: &Contest,
    now: DateTime<Utc>,
) -> Result<Option<GenericCredential>, ApiError> {
    match secret::header_credential(headers)? {
        Some((given, scheme)) => {
            secret::check(given, contest, now, scheme).map(|()| Some(GenericCredential::Header))
        }
        None => Ok(None),
    }
}

/// Authenticates the purchase lookup: a header credential only. A GET has no body, and a
/// signature over the empty body proves nothing about the URL (it could be replayed against any
/// order), so a signature is 401 here, as is a Shopify signature.
pub fn authenticate_lookup(
    headers: &HeaderMap,
    contest: &Contest,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    if authenticate_header(headers, contest, now)?.is_some() {
        return Ok(());
    }
    if standard_webhooks::is_present(headers) {
        return Err(refused(
            Scheme::StandardWebhooks,
            Reason::WrongScheme(HEADER_ONLY_HINT),
        ));
    }
    if shopify::is_present(headers) {
        return Err(refused(
            Scheme::Shopify,
            Reason::WrongScheme(HEADER_ONLY_HINT),
        ));
    }
    Err(ApiError::Unauthorized(AuthFailure::MISSING))
}
