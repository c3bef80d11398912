//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): HMAC-SHA256 keyed with the
//! base64-decoded part of `whsec_…`, over `{webhook-id}.{webhook-timestamp}.{raw body}`, sent as
//! space-separated `v1,<base64>` entries, any of which may match, within ±5 minutes.

use axum::http::HeaderMap;
use base64::{engine::general_purpose::STANDARD, Engine};
use chrono::{DateTime, Utc};

use super::{
    hmac::{constant_time_eq, sha256},
    refused, Reason, Scheme,
};
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
    let malformed = || refused(Scheme::StandardWebhooks, Reason::Malformed);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(malformed)
    };
    let id = header("webhook-id")?;
    let timestamp = header("webhook-timestamp")?;
    let signatures = header("webhook-signature")?;

    let seconds = parse_timestamp(timestamp)
        .ok_or_else(|| refused(Scheme::StandardWebhooks, Reason::BadTimestamp))?;
    let fresh = now
        .timestamp()
        .checked_sub(seconds)
        .is_some_and(|age| (-TOLERANCE_SECS..=TOLERANCE_SECS).contains(&age));
    if !fresh {
        return Err(refused(Scheme::StandardWebhooks, Reason::Expired));
    }

    let given: Vec<Vec<u8>> = signatures
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|encoded| STANDARD.decode(encoded).ok())
        .filter(|bytes| bytes.len() == 32)
        .collect();
    if given.is_empty() {
        return Err(malformed());
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
    crate::auth::authenticated(matched, Scheme::StandardWebhooks)
}

/// The signed timestamp: Unix seconds as plain ASCII digits (no sign, space, fraction or
/// exponent), small enough for an `i64`. Anything else is refused rather than interpreted: the
/// MAC covers the text, so a lenient reading could make one signature mean two instants.
fn parse_timestamp(text: &str) -> Option<i64> {
    if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
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

    fn reason(result: Result<(), ApiError>) -> Reason {
        match result {
            Err(ApiError::Unauthorized(failure)) => {
                assert_eq!(failure.scheme, Scheme::StandardWebhooks);
                failure.reason
            }
            other => panic!("expected 401, got {other:?}"),
        }
    }

    #[test]
    fn timestamps_that_are_not_plain_integers_are_refused() {
        let now = at(TIMESTAMP);
        for (stamp, expected) in [
            ("-9223372036854775808", Reason::BadTimestamp), // -2^63: `now - stamp` overflows
            ("9223372036854775808", Reason::BadTimestamp),  // 2^63: does not fit
            ("99999999999999999999999", Reason::BadTimestamp),
            ("1614265330.0", Reason::BadTimestamp),
            ("1.61426533e9", Reason::BadTimestamp),
            ("+1614265330", Reason::BadTimestamp),
            ("-1614265330", Reason::BadTimestamp),
            ("1614265330 ", Reason::BadTimestamp),
            ("0x6037", Reason::BadTimestamp),
            ("", Reason::BadTimestamp),
            ("9223372036854775807", Reason::Expired), // i64::MAX: valid, far in the future
            ("0", Reason::Expired),
        ] {
            let mut headers = headers(SIGNATURE, TIMESTAMP);
            headers.insert("webhook-timestamp", stamp.parse().unwrap());
            let result = verify(&headers, BODY, [SECRET].into_iter(), now);
            assert_eq!(reason(result), expected, "{stamp:?}");
        }
    }

    #[test]
    fn a_signature_at_the_far_end_of_the_clock_is_never_accepted() {
        // However the timestamp is chosen, a correct MAC over it is still refused unless fresh.
        for stamp in [
            0,
            i64::MAX,
            i64::MAX - TIMESTAMP,
            TIMESTAMP + TOLERANCE_SECS + 1,
        ] {
            let signature = sign(SECRET, ID, stamp, BODY).unwrap();
            let headers = headers(&signature, stamp);
            let result = verify(&headers, BODY, [SECRET].into_iter(), at(TIMESTAMP));
            assert_eq!(reason(result), Reason::Expired, "{stamp}");
        }
    }

    #[test]
    fn tampered_stale_and_empty_signatures_fail() {
        let now = at(TIMESTAMP);
        let good = headers(SIGNATURE, TIMESTAMP);
        let tampered = br#"{"test": 2432232315}"#;
        let check = |headers: &HeaderMap, body: &[u8], secrets: &[&str], now| {
            reason(verify(headers, body, secrets.iter().copied(), now))
        };
        assert_eq!(check(&good, tampered, &[SECRET], now), Reason::Mismatch);
        assert_eq!(
            check(&good, BODY, &[SECRET], at(TIMESTAMP + 301)),
            Reason::Expired
        );
        assert_eq!(
            check(&good, BODY, &[SECRET], at(TIMESTAMP - 301)),
            Reason::Expired
        );
        let empty = headers("v1,", TIMESTAMP);
        assert_eq!(check(&empty, BODY, &[SECRET], now), Reason::Malformed);
        assert_eq!(check(&good, BODY, &["whsec_AAAA"], now), Reason::Mismatch);
        assert_eq!(check(&good, BODY, &[], now), Reason::Mismatch);
        let mut no_id = good.clone();
        no_id.remove("webhook-id");
        assert_eq!(check(&no_id, BODY, &[SECRET], now), Reason::Malformed);
    }
}
