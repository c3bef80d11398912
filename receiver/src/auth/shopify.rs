//! Shopify's webhook signature, `X-Shopify-Hmac-Sha256`: the base64 HMAC-SHA256 of the raw body
//! keyed with the contest's Shopify secret.
//!
//! Its own module because two callers need it: the generic purchase webhook accepts a Shopify
//! delivery signed this way ([`super::authenticate_generic`]), and the Shopify provider
//! ([`crate::providers::shopify`]) verifies its own deliveries with it. Authentication depends on
//! no provider code; providers depend on authentication.

use axum::http::HeaderMap;
use base64::{engine::general_purpose::STANDARD, Engine};
use chrono::{DateTime, Utc};

use super::{
    authenticated,
    hmac::{constant_time_eq, sha256},
    refused, Reason, Scheme,
};
use crate::error::ApiError;

/// The header carrying the base64 HMAC-SHA256 of the raw body.
pub const SIGNATURE_HEADER: &str = "x-shopify-hmac-sha256";

/// True when the request carries a Shopify signature (the generic purchase endpoint uses this to
/// pick the Shopify scheme).
pub fn is_present(headers: &HeaderMap) -> bool {
    headers.contains_key(SIGNATURE_HEADER)
}

/// Verifies `X-Shopify-Hmac-Sha256` against the contest's Shopify secret. No secret configured
/// (or an empty one) is 401: a Shopify delivery is never accepted unsigned. Shopify deliveries
/// carry no signed timestamp, so `now` is unused (dedupe makes replays harmless).
pub fn verify(
    headers: &HeaderMap,
    body: &[u8],
    secret: Option<&str>,
    _now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let secret = secret
        .filter(|secret| !secret.is_empty())
        .ok_or_else(|| refused(Scheme::Shopify, Reason::NotConfigured))?;
    let given = headers
        .get(SIGNATURE_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .ok_or(refused(Scheme::Shopify, Reason::Missing))?;
    let given = STANDARD
        .decode(given)
        .ok()
        .filter(|bytes| bytes.len() == 32)
        .ok_or(refused(Scheme::Shopify, Reason::Malformed))?;
    let expected = sha256(secret.as_bytes(), &[body]);
    authenticated(constant_time_eq(&given, &expected), Scheme::Shopify)
}
