//! The `Prefer` request header (RFC 7240), as far as synchronous answers care: `wait=N` and
//! `respond-async`.
//!
//! A preference is advice, never a reason to refuse a request: a malformed `Prefer` header, or a
//! malformed `wait`, is ignored (as if it were not sent), and the request is served as usual.
//! What is read:
//!
//! - the header may appear several times and each value is a comma-separated list of
//!   preferences (`Prefer: respond-async, wait=3`), each possibly followed by `;` parameters,
//!   which are ignored;
//! - names are case-insensitive, optional whitespace around `=` is allowed, and a value may be a
//!   token or a quoted string (`wait="3"`);
//! - `wait` takes delta-seconds (one or more digits; a value too large to hold is read as the
//!   largest one, which the cap brings down anyway); only its first occurrence counts (RFC 7240
//!   § 2), so a first `wait` that is malformed is ignored rather than replaced by a later one;
//! - `wait=0`, and `respond-async` without a `wait`, ask for the answer at once (so a sender
//!   can opt out of a contest's `syncResponses`).

use axum::http::{header::HeaderName, HeaderMap};

/// The request header.
pub const PREFER: HeaderName = HeaderName::from_static("prefer");

/// The answer header saying which preferences were applied.
pub const PREFERENCE_APPLIED: HeaderName = HeaderName::from_static("preference-applied");

/// What a request's `Prefer` header says about waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitPreference {
    /// No usable `wait` and no `respond-async`: the contest's setting decides.
    Unstated,
    /// `wait=0`, or `respond-async` without a `wait`: answer as soon as the event is held.
    DoNotWait,
    /// `wait=N` with N ≥ 1, as sent (not capped yet).
    Seconds(u64),
}

/// Reads the waiting preference of `headers` (every `Prefer` header, in order).
pub fn wait_preference(headers: &HeaderMap) -> WaitPreference {
    let mut wait: Option<Option<u64>> = None;
    let mut respond_async = false;
    for value in headers.get_all(PREFER) {
        // A value that is not visible ASCII cannot hold a preference we understand.
        let Ok(text) = value.to_str() else { continue };
        for element in split_outside_quotes(text, ',') {
            let preference = split_outside_quotes(element, ';').next().unwrap_or("");
            let (name, value) = match preference.split_once('=') {
                Some((name, value)) => (name.trim(), Some(value.trim())),
                None => (preference.trim(), None),
            };
            if name.eq_ignore_ascii_case("wait") {
                // Only the first occurrence counts, even when it is unusable.
                wait.get_or_insert_with(|| value.and_then(delta_seconds));
            } else if name.eq_ignore_ascii_case("respond-async") {
                respond_async = true;
            }
        }
    }
    match wait.flatten() {
        Some(0) => WaitPreference::DoNotWait,
        Some(seconds) => WaitPreference::Seconds(seconds),
        None if respond_async => WaitPreference::DoNotWait,
        None => WaitPreference::Unstated,
    }
}

/// Delta-seconds: one or more ASCII digits, as a token or inside a quoted string; saturates
/// rather than fails on values too large to hold.
fn delta_seconds(value: &str) -> Option<u64> {
    let digits = value
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse().unwrap_or(u64::MAX))
}

/// Splits `text` at `separator`, except inside double-quoted strings (with `\` escapes).
fn split_outside_quotes(text: &str, separator: char) -> impl Iterator<Item = &str> {
    let mut pieces = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (index, character) in text.char_indices() {
        match character {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                pieces.push(&text[start..index]);
                start = index + c.len_utf8();
            }
            _ => {}
        }
    }
    pieces.push(&text[start..]);
    pieces.into_iter()
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn read(values: &[&str]) -> WaitPreference {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(PREFER, HeaderValue::from_str(value).unwrap());
        }
        wait_preference(&headers)
    }

    #[test]
    fn wait_is_read_in_every_form_rfc_7240_allows() {
        use WaitPreference::Seconds;
        assert_eq!(read(&["wait=3"]), Seconds(3));
        assert_eq!(read(&["WAIT=3"]), Seconds(3));
        assert_eq!(read(&["  wait = 3  "]), Seconds(3));
        assert_eq!(read(&["wait=\"3\""]), Seconds(3));
        assert_eq!(read(&["respond-async, wait=10"]), Seconds(10));
        assert_eq!(read(&["handling=lenient;foo=\"a,b\", wait=2"]), Seconds(2));
        assert_eq!(read(&["return=minimal", "wait=2"]), Seconds(2));
        assert_eq!(read(&["wait=4; ignored-parameter"]), Seconds(4));
        assert_eq!(read(&["wait=99999999999999999999999"]), Seconds(u64::MAX));
    }

    #[test]
    fn only_the_first_wait_counts() {
        assert_eq!(read(&["wait=2, wait=4"]), WaitPreference::Seconds(2));
        assert_eq!(read(&["wait=2", "wait=4"]), WaitPreference::Seconds(2));
        assert_eq!(read(&["wait=soon, wait=4"]), WaitPreference::Unstated);
    }

    #[test]
    fn zero_and_respond_async_mean_do_not_wait() {
        assert_eq!(read(&["wait=0"]), WaitPreference::DoNotWait);
        assert_eq!(read(&["respond-async"]), WaitPreference::DoNotWait);
        assert_eq!(read(&["Respond-Async; x=1"]), WaitPreference::DoNotWait);
    }

    #[test]
    fn malformed_or_absent_preferences_are_ignored() {
        use WaitPreference::Unstated;
        assert_eq!(read(&[]), Unstated);
        assert_eq!(read(&[""]), Unstated);
        for malformed in [
            "wait",
            "wait=",
            "wait=-1",
            "wait=1.5",
            "wait=3s",
            "wait= 3 4",
            "wait=\"3",
            "wait=+3",
            "wait==3",
            "waiting=3",
            "return=minimal",
            ",,,",
            "\"wait=3\"",
            "w\"ait=3",
        ] {
            assert_eq!(read(&[malformed]), Unstated, "{malformed:?}");
        }
        // Not visible ASCII: skipped, the next header still counts.
        let mut headers = HeaderMap::new();
        headers.append(PREFER, HeaderValue::from_bytes(b"wait=\xff").unwrap());
        headers.append(PREFER, HeaderValue::from_static("wait=1"));
        assert_eq!(wait_preference(&headers), WaitPreference::Seconds(1));
    }
}
