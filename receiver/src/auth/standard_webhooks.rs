//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): HMAC-SHA256 keyed with the
//! base64-decoded part of `whsec_…`, over `{webhook-id}.{webhook-timestamp}.{raw body}`, sent as
//! space-separated `v1,<base64>` entries, any of which may match, within ±5 minutes.

use axum::http::HeaderMap;
use base64::{engine::general_purpose::STANDARD, Engine};
use chrono::{DateTime, Utc};

use super::hmac::{constant_time_eq, sha256};
use crate::error::ApiError;

/// How far the signed timestamp may be from our clock, either way (replay protection).
pub const TOLERANCE_SECS: i64 = 5 * 60;

/// True when the request carries a Standard Webhooks signature header.
pub fn is_present(headers: &HeaderMap) -> bool {
    headers.contains_key("webhook-signature")
}

/// Verifies the signature against each of `secrets` (current and, during rotation, previous).
pub fn verify<'a>(
    headers: &HeaderMap,
    body: &[u8],
    secrets: impl Iterator<Item = &'a str>,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .ok_or(ApiError::Unauthorized)
    };
    let id = header("webhook-id")?;
    let timestamp = header("webhook-timestamp")?;
    let signatures = header("webhook-signature")?;

    let seconds: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| ApiError::Unauthorized)?;
    if (now.timestamp() - seconds).abs() > TOLERANCE_SECS {
        return Err(ApiError::Unauthorized);
    }

    let given: Vec<Vec<u8>> = signatures
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|encoded| STANDARD.decode(encoded).ok())
        .filter(|bytes| bytes.len() == 32)
        .collect();
    if given.is_empty() {
        return Err(ApiError::Unauthorized);
    }

    let mut matched = false;
    for secret in secrets {
        let Some(key) = signing_key(secret) else {
            continue;
        };
        let expected = sha256(
            &key,
            &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
        );
        for signature in &given {
            matched |= constant_time_eq(signature, &expected);
        }
    }
    crate::auth::authenticated(matched)
}

/// The HMAC key of a `whsec_…` secret: the base64-decoded bytes after the prefix.
pub fn signing_key(secret: &str) -> Option<Vec<u8>> {
    STANDARD.decode(secret.strip_prefix("whsec_")?).ok()
}

/// Signs like a Standard Webhooks sender would (tests and the load generator use it).
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = signing_key(secret)?;
    let stamp = timestamp.to_string();
    let mac = sha256(&key, &[id.as_bytes(), b".", stamp.as_bytes(), b".", body]);
    Some(format!("v1,{}", STANDARD.encode(mac)))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use chrono::TimeZone;

    use super::*;

    // The reference vector published with the Standard Webhooks libraries.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn headers(signature: &str, timestamp: i64) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", HeaderValue::from_static(ID));
        headers.insert("webhook-timestamp", timestamp.to_string().parse().unwrap());
        headers.insert("webhook-signature", signature.parse().unwrap());
        headers
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(seconds, 0).unwrap()
    }

    #[test]
    fn reference_vector_verifies() {
        assert_eq!(sign(SECRET, ID, TIMESTAMP, BODY).unwrap(), SIGNATURE);
        let headers = headers(SIGNATURE, TIMESTAMP);
        assert!(verify(&headers, BODY, [SECRET].into_iter(), at(TIMESTAMP)).is_ok());
    }

    #[test]
    fn any_v1_entry_may_match() {
        let list = format!("v1,AAAA v2,xyz {SIGNATURE}");
        let headers = headers(&list, TIMESTAMP);
        assert!(verify(&headers, BODY, [SECRET].into_iter(), at(TIMESTAMP + 299)).is_ok());
    }

    #[test]
    fn tampered_stale_and_empty_signatures_fail() {
        let now = at(TIMESTAMP);
        let good = headers(SIGNATURE, TIMESTAMP);
        assert!(verify(&good, br#"{"test": 2432232315}"#, [SECRET].into_iter(), now).is_err());
        assert!(verify(&good, BODY, [SECRET].into_iter(), at(TIMESTAMP + 301)).is_err());
        assert!(verify(&good, BODY, [SECRET].into_iter(), at(TIMESTAMP - 301)).is_err());
        assert!(verify(&headers("v1,", TIMESTAMP), BODY, [SECRET].into_iter(), now).is_err());
        assert!(verify(&good, BODY, ["whsec_AAAA"].into_iter(), now).is_err());
        assert!(verify(&good, BODY, std::iter::empty(), now).is_err());
    }
}
