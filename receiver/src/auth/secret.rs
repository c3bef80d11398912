//! The contest's shared webhook secret, sent verbatim by the store's backend.

use axum::http::{header, HeaderMap};
use chrono::{DateTime, Utc};
use shared::contest::Contest;

use super::{hmac::constant_time_eq, refused, Reason, Scheme};
use crate::error::ApiError;

/// Header carrying the secret verbatim.
pub const SECRET_HEADER: &str = "x-webhook-secret";

/// The secret from `X-Webhook-Secret` or `Authorization: Bearer …` and which header carried it,
/// if either header is present. A present header that is not valid text, or an `Authorization`
/// of another scheme, is 401: header credentials decide alone, so they cannot fall through to
/// weaker checks.
pub fn header_credential(headers: &HeaderMap) -> Result<Option<(&str, Scheme)>, ApiError> {
    if let Some(value) = headers.get(SECRET_HEADER) {
        return value
            .to_str()
            .map(|text| Some((text.trim(), Scheme::SecretHeader)))
            .map_err(|_| refused(Scheme::SecretHeader, Reason::Malformed));
    }
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let malformed = || refused(Scheme::Bearer, Reason::Malformed);
        let text = value.to_str().map_err(|_| malformed())?.trim();
        let (scheme, token) = text.split_once(' ').ok_or_else(malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(malformed());
        }
        return Ok(Some((token.trim(), Scheme::Bearer)));
    }
    Ok(None)
}

/// Checks `given` (sent as `scheme`) against every secret the contest accepts now (current,
/// and the previous one during its grace). Every candidate is compared, so timing does not tell
/// which matched.
pub fn check(
    given: &str,
    contest: &Contest,
    now: DateTime<Utc>,
    scheme: Scheme,
) -> Result<(), ApiError> {
    let mut matched = false;
    for secret in contest.accepted_webhook_secrets(now) {
        matched |= constant_time_eq(given.as_bytes(), secret.as_bytes());
    }
    crate::auth::authenticated(matched, scheme)
}
