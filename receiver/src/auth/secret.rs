//! The contest's shared webhook secret, sent verbatim by the store's backend.

use axum::http::{header, HeaderMap};
use chrono::{DateTime, Utc};
use shared::contest::Contest;

use super::hmac::constant_time_eq;
use crate::error::ApiError;

/// Header carrying the secret verbatim.
pub const SECRET_HEADER: &str = "x-webhook-secret";

/// The secret from `X-Webhook-Secret` or `Authorization: Bearer …`, if either header is present.
/// A present header that is not valid text, or an `Authorization` of another scheme, is 401:
/// header credentials decide alone, so they cannot fall through to weaker checks.
pub fn header_credential(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    if let Some(value) = headers.get(SECRET_HEADER) {
        return value
            .to_str()
            .map(|text| Some(text.trim()))
            .map_err(|_| ApiError::Unauthorized);
    }
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let text = value.to_str().map_err(|_| ApiError::Unauthorized)?.trim();
        let (scheme, token) = text.split_once(' ').ok_or(ApiError::Unauthorized)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::Unauthorized);
        }
        return Ok(Some(token.trim()));
    }
    Ok(None)
}

/// Checks `given` against every secret the contest accepts now (current, and the previous one
/// during its 24 h grace). Every candidate is compared, so timing does not tell which matched.
pub fn check(given: &str, contest: &Contest, now: DateTime<Utc>) -> Result<(), ApiError> {
    let mut matched = false;
    for secret in contest.accepted_webhook_secrets(now) {
        matched |= constant_time_eq(given.as_bytes(), secret.as_bytes());
    }
    crate::auth::authenticated(matched)
}
