//! Payment providers: each module turns the raw bytes and headers of one provider's webhook into
//! a verified, normalised [`Verdict`], and knows nothing about HTTP routing, contests or queues.
//!
//! Every provider exposes the same two pure functions:
//!
//! - `verify(headers, body, secret, now)`: authenticates the delivery over the raw body bytes and
//!   fails closed. No secret configured, no credential, a malformed credential or a wrong one are
//!   all [`ApiError::Unauthorized`], each with its [`crate::auth::Reason`] for the logs.
//! - `parse(headers, body, accept_test_events)`: says what an *authentic* delivery means for us:
//!   a purchase to award, money going back (a reversal), or nothing. It never fails: providers
//!   retry (and eventually disable the endpoint) on any non-2xx answer, so content we cannot use
//!   is [`Verdict::Ignored`] with a reason, answered `200`.
//!
//! Adding a provider means adding one module here and one route.
//!
//! - [`shopify`]: `orders/paid`, `refunds/create` and `orders/cancelled`, `X-Shopify-Hmac-Sha256`.
//! - [`stripe`]: Checkout Session, `charge.refunded` and dispute events, `Stripe-Signature`.
//! - [`coinflow`]: v2 `Settled`, `Refund` and chargeback events, `Authorization` key or
//!   `Coinflow-Signature`.

pub mod coinflow;
pub mod shopify;
pub mod stripe;

use axum::http::HeaderMap;
use serde_json::Value;
use shared::{
    email::Email,
    event::{RefundAmount, ReversalKind, ReversalTarget},
    ids::OrderId,
    money::Money,
};

use crate::{
    auth::{hmac, refused, Reason, Scheme},
    error::ApiError,
};

/// A purchase a provider event awards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderPurchase {
    /// The provider's own order identifier (Shopify order `id`, Stripe Checkout Session `id`,
    /// Coinflow `data.id`): with the source, the dedupe key of the purchase.
    pub order_id: OrderId,
    /// The buyer, whose entry earns the points.
    pub email: Email,
    /// What the buyer paid, exactly.
    pub money: Money,
    /// Candidate referral codes the order carries, in priority order; the worker credits the
    /// first one that belongs to an entry (who owns a code is the worker's business).
    pub referral_codes: Vec<String>,
    /// Stripe only: the Checkout Session's `payment_intent`, which later charges and disputes
    /// name instead of the session.
    pub payment_intent: Option<String>,
}

/// Money going back on a purchase (refund, cancellation, chargeback) or a chargeback won, as a
/// provider event describes it. The webhook layer adds the contest, the source and the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderReversal {
    /// Which purchase: by order id (Shopify, Coinflow) or by payment intent (Stripe).
    pub target: ReversalTarget,
    /// The provider's id of this refund or chargeback, chosen so that a redelivery of the same
    /// event carries the same id (and so dedupes) while a different refund carries another.
    pub refund_id: String,
    /// Refund, chargeback, or chargeback won.
    pub kind: ReversalKind,
    /// How much money went back.
    pub amount: RefundAmount,
    /// The provider's reason or note, sanitised by [`reason_text`], for the ledger.
    pub reason: Option<String>,
}

/// What an authentic provider event means for us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The event is a completed purchase: award it.
    Award(ProviderPurchase),
    /// The event returns money (or reinstates a chargeback): take points back (or give them back).
    Reverse(ProviderReversal),
    /// The event changes nothing; the reason is written for the sender and our logs
    /// (e.g. "topic orders/create does not award").
    Ignored(String),
}

impl Verdict {
    /// An [`Verdict::Ignored`] with the given reason.
    pub fn ignored(reason: impl Into<String>) -> Self {
        Verdict::Ignored(reason.into())
    }
}

/// Longest reason text carried on a reversal (the admin API's adjustment reasons are bounded
/// the same way).
pub const MAX_REASON_CHARS: usize = 500;

/// Provider text (a refund note, a dispute reason) made fit for the ledger: trimmed, control
/// characters replaced by spaces, at most [`MAX_REASON_CHARS`] characters; `None` when nothing is
/// left. Providers are not asked to resend over a note, so it is cleaned rather than refused.
pub fn reason_text(text: &str) -> Option<String> {
    let cleaned: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REASON_CHARS)
        .collect();
    let cleaned = cleaned.trim_end();
    (!cleaned.is_empty()).then(|| cleaned.to_owned())
}

/// A Stripe or Coinflow-style identifier: a non-empty string of at most 255 characters without
/// control characters (what [`OrderId`] accepts), taken from a JSON string.
fn provider_id(value: Option<&Value>) -> Option<String> {
    let text = value?.as_str()?.trim();
    OrderId::parse(text).ok().map(|id| id.as_str().to_owned())
}

/// Most candidate referral codes passed on per order.
const MAX_REFERRAL_CANDIDATES: usize = 8;

/// Longest referral code we pass on; anything longer is not a human-typable code.
const MAX_REFERRAL_CODE_CHARS: usize = 64;

/// Longest piece of sender-controlled text quoted in an ignore reason.
const MAX_QUOTED_CHARS: usize = 64;

/// A header's value as trimmed text, when present and visible ASCII.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
}

/// The contest's secret for a provider. None configured (or an empty one, which anybody could
/// sign with) is 401: a provider endpoint never accepts unsigned deliveries.
fn require_secret(secret: Option<&str>, scheme: Scheme) -> Result<&str, ApiError> {
    secret
        .filter(|secret| !secret.is_empty())
        .ok_or_else(|| refused(scheme, Reason::NotConfigured))
}

/// A parsed `t=…,v1=…[,v1=…]` signature header (Stripe and Coinflow share the shape).
struct TimestampedSignature<'a> {
    /// The signed timestamp exactly as sent: the MAC covers this text, not a reformatting of it.
    timestamp: &'a str,
    /// The timestamp as Unix seconds.
    seconds: i64,
    /// Every well-formed `v1` signature (32 bytes after hex decoding); other schemes are skipped.
    v1: Vec<Vec<u8>>,
}

impl<'a> TimestampedSignature<'a> {
    /// Parses the header; `None` when there is no usable timestamp or no well-formed `v1`.
    fn parse(value: &'a str) -> Option<Self> {
        let mut timestamp = None;
        let mut v1 = Vec::new();
        for item in value.split(',') {
            let Some((key, value)) = item.split_once('=') else {
                continue;
            };
            match key.trim() {
                // Only the first `t` counts; the MAC covers it, so a second `t` gains nothing.
                "t" if timestamp.is_none() => timestamp = Some(value.trim()),
                "v1" => {
                    if let Ok(bytes) = hex::decode(value.trim()) {
                        if bytes.len() == 32 {
                            v1.push(bytes);
                        }
                    }
                }
                _ => {}
            }
        }
        let timestamp = timestamp?;
        let seconds = timestamp
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| timestamp.parse().ok())??;
        (!v1.is_empty()).then_some(Self {
            timestamp,
            seconds,
            v1,
        })
    }

    /// True when any `v1` is the HMAC-SHA256 of `{t}.{body}` keyed with `key`. Every candidate is
    /// compared, in constant time, so timing says nothing about which one matched.
    fn matches(&self, key: &[u8], body: &[u8]) -> bool {
        let expected = hmac::sha256(key, &[self.timestamp.as_bytes(), b".", body]);
        self.v1.iter().fold(false, |matched, given| {
            matched | hmac::constant_time_eq(given, &expected)
        })
    }
}

/// The body as a JSON object, or the reason it is not one.
fn json_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, Verdict> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(Verdict::ignored("body is not a JSON object")),
        Err(_) => Err(Verdict::ignored("body is not valid JSON")),
    }
}

/// The first candidate that is a string holding a valid email address.
fn first_email<'a>(candidates: impl IntoIterator<Item = Option<&'a Value>>) -> Option<Email> {
    candidates
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find_map(|raw| Email::parse(raw).ok())
}

/// The text of a non-negative JSON integer, digit for digit: with `arbitrary_precision` the number
/// keeps the text it was sent as, so ids above 2^53 never pass through a float. A string of
/// digits is accepted too.
fn integer_text(value: &Value) -> Option<String> {
    let text = match value {
        Value::Number(number) => number.to_string(),
        Value::String(text) => text.trim().to_owned(),
        _ => return None,
    };
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())).then_some(text)
}

/// A JSON integer as `i64` (e.g. minor units), refusing fractions, exponents and overflow.
fn integer_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(number) => {
            let text = number.to_string();
            let digits = text.strip_prefix('-').unwrap_or(&text);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            text.parse().ok()
        }
        _ => None,
    }
}

/// A candidate referral code: a non-empty string (or integer) of at most
/// [`MAX_REFERRAL_CODE_CHARS`] characters, trimmed.
fn referral_code(value: Option<&Value>) -> Option<String> {
    let code = match value? {
        Value::String(text) => text.trim().to_owned(),
        Value::Number(number) => number.to_string(),
        _ => return None,
    };
    valid_referral_code(code)
}

/// `code` when it is plausible as a referral code.
fn valid_referral_code(code: String) -> Option<String> {
    let count = code.chars().count();
    ((1..=MAX_REFERRAL_CODE_CHARS).contains(&count) && !code.chars().any(char::is_control))
        .then_some(code)
}

/// Sender-controlled text made safe to quote in a reason: bounded and free of control characters.
fn quote(text: &str) -> String {
    let mut quoted: String = text
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(MAX_QUOTED_CHARS)
        .collect();
    if text.chars().count() > MAX_QUOTED_CHARS {
        quoted.push('…');
    }
    quoted
}

/// Decodes `%XX` escapes and `+` (form encoding) in a query-string value; `None` when the result
/// is not UTF-8.
fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex_pair = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex_pair.and_then(|pair| u8::from_str_radix(pair, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Input generators shared by the providers' property tests: bodies and headers that are mostly
/// garbage, sometimes JSON with the provider's own field names, so the parsers are exercised
/// beyond their first `serde_json` error.
#[cfg(test)]
mod fuzz {
    use axum::http::{HeaderMap, HeaderName, HeaderValue};
    use proptest::prelude::*;
    use serde_json::Value;

    /// Arbitrary bytes, or a JSON document built from `keys` and provider-flavoured values.
    pub(super) fn body(keys: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..256),
            json(keys).prop_map(|value| value.to_string().into_bytes()),
        ]
    }

    /// JSON values whose object keys come from `keys`.
    fn json(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
        let number = "-?[1-9][0-9]{0,24}(\\.[0-9]{1,4})?(e[0-9])?"
            .prop_filter_map("valid JSON number", |text| serde_json::from_str(&text).ok());
        let words = proptest::sample::select(vec![
            "paid",
            "unpaid",
            "no_payment_required",
            "Settled",
            "orders/paid",
            "usd",
            "JPY",
            "kwd",
            "USD",
            "0",
            "79.99",
            "-1",
            "a@b.co",
            "Jane@Example.com",
            "checkout.session.completed",
            "checkout.session.async_payment_succeeded",
            "ref",
            "referralCode",
            "/?ref=A%2",
            "refunds/create",
            "orders/cancelled",
            "refund",
            "success",
            "pending",
            "charge.refunded",
            "charge.dispute.created",
            "charge.dispute.closed",
            "won",
            "lost",
            "warning_closed",
            "pi_3PVnF0KZ0dZRqLEK1a2b3c4d",
            "Refund",
            "Card Payment Chargeback Opened",
            "Card Payment Chargeback Won",
            "Card Payment Chargeback Lost",
            "",
        ])
        .prop_map(Value::from);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            number,
            words,
            ".{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec((proptest::sample::select(keys), inner), 0..8).prop_map(
                    |entries| Value::Object(
                        entries
                            .into_iter()
                            .map(|(key, value)| (key.to_owned(), value))
                            .collect()
                    )
                ),
            ]
        })
    }

    /// Each of `names` absent, arbitrary header bytes, or a `t=…,v1=…`-shaped value.
    pub(super) fn headers(names: &'static [&'static str]) -> impl Strategy<Value = HeaderMap> {
        let value = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..96),
            "(t=-?[0-9]{0,12}|v1=[0-9a-f]{0,66}|v0=[0-9a-f]{0,8}|[a-z=,/ ]{0,4}){0,5}"
                .prop_map(String::into_bytes),
            "[A-Za-z0-9+/=]{0,48}".prop_map(String::into_bytes),
        ];
        proptest::collection::vec(proptest::option::of(value), names.len()).prop_map(
            move |values| {
                let mut headers = HeaderMap::new();
                for (name, value) in names.iter().zip(values) {
                    let value = value.and_then(|bytes| HeaderValue::from_bytes(&bytes).ok());
                    if let Some(value) = value {
                        headers.insert(HeaderName::from_static(name), value);
                    }
                }
                headers
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn signature_header_keeps_well_formed_v1_entries_only() {
        let good = "a".repeat(64);
        let header = format!("t=1700000000, v1={good},v0={good},v1=zz,v1=abcd,v2={good}");
        let parsed = TimestampedSignature::parse(&header).unwrap();
        assert_eq!(parsed.timestamp, "1700000000");
        assert_eq!(parsed.seconds, 1_700_000_000);
        assert_eq!(parsed.v1.len(), 1);
        assert!(TimestampedSignature::parse(&format!("v1={good}")).is_none());
        assert!(TimestampedSignature::parse(&format!("t=-5,v1={good}")).is_none());
        assert!(TimestampedSignature::parse(&format!("t=1e3,v1={good}")).is_none());
        assert!(TimestampedSignature::parse("t=1700000000,v0=abc").is_none());
        assert!(TimestampedSignature::parse("").is_none());
    }

    #[test]
    fn integers_keep_their_exact_text() {
        let value: Value = serde_json::from_str("820982911946154508").unwrap();
        assert_eq!(integer_text(&value).unwrap(), "820982911946154508");
        assert_eq!(integer_text(&json!("42")).unwrap(), "42");
        assert!(integer_text(&json!(-1)).is_none());
        assert!(integer_text(&serde_json::from_str("1.5").unwrap()).is_none());
        assert!(integer_text(&serde_json::from_str("1e3").unwrap()).is_none());
        assert_eq!(integer_i64(&json!(1999)), Some(1999));
        assert_eq!(integer_i64(&json!(-5)), Some(-5));
        assert!(integer_i64(&serde_json::from_str("19.99").unwrap()).is_none());
        assert!(integer_i64(&serde_json::from_str("99999999999999999999").unwrap()).is_none());
    }

    #[test]
    fn referral_codes_are_trimmed_and_bounded() {
        assert_eq!(referral_code(Some(&json!(" ALICE1 "))).unwrap(), "ALICE1");
        assert!(referral_code(Some(&json!("   "))).is_none());
        assert!(referral_code(Some(&json!("x".repeat(65)))).is_none());
        assert!(referral_code(Some(&json!(null))).is_none());
        assert!(referral_code(None).is_none());
    }

    #[test]
    fn percent_decoding_handles_escapes_plus_and_garbage() {
        assert_eq!(percent_decode("ALICE%2D1+x").unwrap(), "ALICE-1 x");
        assert_eq!(percent_decode("100%").unwrap(), "100%");
        assert_eq!(percent_decode("%zz%4").unwrap(), "%zz%4");
        assert!(percent_decode("%ff").is_none());
    }

    #[test]
    fn quoted_text_is_bounded() {
        assert_eq!(quote("orders/create"), "orders/create");
        assert_eq!(
            quote(&"x".repeat(100)).chars().count(),
            MAX_QUOTED_CHARS + 1
        );
        assert_eq!(quote("a\nb"), "a?b");
    }

    #[test]
    fn reason_text_is_trimmed_cleaned_and_bounded() {
        assert_eq!(reason_text("  damaged box \n").unwrap(), "damaged box");
        assert_eq!(reason_text("a\tb\u{7}c").unwrap(), "a b c");
        assert!(reason_text("   ").is_none());
        assert!(reason_text("\n\r").is_none());
        assert_eq!(
            reason_text(&"é".repeat(600)).unwrap().chars().count(),
            MAX_REASON_CHARS
        );
    }

    #[test]
    fn provider_ids_are_bounded_text_without_control_characters() {
        assert_eq!(provider_id(Some(&json!(" pi_1 "))).unwrap(), "pi_1");
        assert!(provider_id(Some(&json!(""))).is_none());
        assert!(provider_id(Some(&json!("a\nb"))).is_none());
        assert!(provider_id(Some(&json!("x".repeat(256)))).is_none());
        assert!(provider_id(Some(&json!(42))).is_none());
        assert!(provider_id(None).is_none());
    }
}
