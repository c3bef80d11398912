//! Stripe Checkout webhooks: `Stripe-Signature` verification and Checkout Session events.
//!
//! Stripe signs `{t}.{raw body}` with HMAC-SHA256 keyed with the endpoint's whole `whsec_…`
//! string (not a decoding of it) and sends `t=…,v1=…`; while a secret is being rolled there is one
//! `v1` per active secret, and any may match. `v0` (test-mode legacy) and other schemes are
//! ignored. Amounts are integers in the currency's minor unit *as Stripe defines it*, which is
//! not always ISO 4217's (see [`stripe_exponent`]).

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use shared::{
    ids::OrderId,
    money::{Currency, Money},
};

use super::{
    first_email, header, integer_i64, json_object, quote, referral_code, require_secret,
    ProviderPurchase, TimestampedSignature, Verdict,
};
use crate::{
    auth::{refused, Reason, Scheme},
    error::ApiError,
};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "stripe-signature";

/// How far the signed timestamp may be from our clock, either way: Stripe's libraries default to
/// 300 s in the past; a timestamp as far in the future is as suspect.
pub const TOLERANCE_SECS: i64 = 300;

/// Zero-decimal currencies: the amount is in major units (`500` JPY is ¥500).
/// Source: Stripe's "Supported currencies" page, section "Zero-decimal currencies".
const ZERO_DECIMAL: [&str; 16] = [
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV",
    "XAF", "XOF", "XPF",
];

/// Three-decimal currencies: the amount is in thousandths (`5120` KWD is 5.120 KWD).
/// Source: Stripe's "Supported currencies" page, section "Three-decimal currencies".
const THREE_DECIMAL: [&str; 5] = ["BHD", "JOD", "KWD", "OMR", "TND"];

/// Digits after the decimal point in Stripe's integer amounts for `currency`.
///
/// Stripe's table differs from ISO 4217 where Stripe kept an older convention for backwards
/// compatibility: ISK is two-decimal in the API (ISO: 0; `100` is 1 króna), MGA is zero-decimal
/// (ISO: 2), and IQD/LYD are not three-decimal. Every currency not listed is two-decimal
/// (including HUF and TWD, which Stripe only pays out in whole units).
pub fn stripe_exponent(currency: Currency) -> u32 {
    let code = currency.as_str();
    if ZERO_DECIMAL.contains(&code) {
        0
    } else if THREE_DECIMAL.contains(&code) {
        3
    } else {
        2
    }
}

/// Verifies `Stripe-Signature` against the contest's Stripe secret (`whsec_…`) at `now`.
pub fn verify(
    headers: &HeaderMap,
    body: &[u8],
    secret: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let secret = require_secret(secret, Scheme::Stripe)?;
    let signature =
        header(headers, SIGNATURE_HEADER).ok_or(refused(Scheme::Stripe, Reason::Missing))?;
    let signature =
        TimestampedSignature::parse(signature).ok_or(refused(Scheme::Stripe, Reason::Malformed))?;
    let fresh = now
        .timestamp()
        .checked_sub(signature.seconds)
        .is_some_and(|age| (-TOLERANCE_SECS..=TOLERANCE_SECS).contains(&age));
    if !fresh {
        return Err(refused(Scheme::Stripe, Reason::Expired));
    }
    crate::auth::authenticated(signature.matches(secret.as_bytes(), body), Scheme::Stripe)
}

/// What an authentic Stripe event means.
///
/// `checkout.session.completed` awards when `payment_status` is `paid` or `no_payment_required`;
/// `unpaid` (a delayed payment method such as a bank debit) is ignored until
/// `checkout.session.async_payment_succeeded`, which awards. Every other event type is ignored,
/// as are test-mode events (`livemode: false`) unless `accept_test_events` is set.
pub fn parse(_headers: &HeaderMap, body: &[u8], accept_test_events: bool) -> Verdict {
    let event = match json_object(body) {
        Ok(event) => event,
        Err(verdict) => return verdict,
    };
    let Some(event_type) = event.get("type").and_then(Value::as_str) else {
        return Verdict::ignored("event has no type");
    };
    const COMPLETED: &str = "checkout.session.completed";
    const ASYNC_SUCCEEDED: &str = "checkout.session.async_payment_succeeded";
    if event_type != COMPLETED && event_type != ASYNC_SUCCEEDED {
        return Verdict::ignored(format!("event type {} does not award", quote(event_type)));
    }
    let Some(session) = event
        .get("data")
        .and_then(|data| data.get("object"))
        .and_then(Value::as_object)
    else {
        return Verdict::ignored("event has no data.object");
    };
    // `async_payment_succeeded` is itself the news that the payment arrived.
    if event_type == COMPLETED {
        match session.get("payment_status").and_then(Value::as_str) {
            Some("paid" | "no_payment_required") => {}
            Some("unpaid") => {
                return Verdict::ignored(
                    "awaiting async payment: payment_status is unpaid; \
                     checkout.session.async_payment_succeeded will award it",
                )
            }
            Some(status) => {
                return Verdict::ignored(format!("payment_status {} does not award", quote(status)))
            }
            None => return Verdict::ignored("session has no payment_status"),
        }
    }
    if event.get("livemode") == Some(&Value::Bool(false)) && !accept_test_events {
        return Verdict::ignored(
            "test-mode event (livemode false), and the contest does not accept test events",
        );
    }
    match purchase(session) {
        Ok(purchase) => Verdict::Award(purchase),
        Err(reason) => Verdict::Ignored(reason),
    }
}

/// The purchase a Checkout Session describes, or why it describes none.
fn purchase(session: &Map<String, Value>) -> Result<ProviderPurchase, String> {
    let order_id = session
        .get("id")
        .and_then(Value::as_str)
        .and_then(|id| OrderId::parse(id).ok())
        .ok_or("session has no id")?;
    let email = first_email([
        session
            .get("customer_details")
            .and_then(|details| details.get("email")),
        session.get("customer_email"),
    ])
    .ok_or("session has no buyer email")?;
    let currency = match session.get("currency").and_then(Value::as_str) {
        Some(code) => Currency::parse(code)
            .map_err(|_| format!("currency {} is not an ISO 4217 code", quote(code)))?,
        None => return Err("session has no currency".into()),
    };
    let minor = session
        .get("amount_total")
        .and_then(integer_i64)
        .ok_or("session has no integer amount_total")?;
    let money = Money::new(Decimal::new(minor, stripe_exponent(currency)), currency)
        .map_err(|error| format!("amount_total {error}"))?;
    let metadata = session.get("metadata");
    // Every candidate, in priority order; the worker credits the first that belongs to an entry
    // (`client_reference_id` is often a store's own customer id, not a referral code).
    let mut referral_codes: Vec<String> = Vec::new();
    let candidates = [
        metadata.and_then(|metadata| metadata.get("referralCode")),
        metadata.and_then(|metadata| metadata.get("ref")),
        session.get("client_reference_id"),
    ];
    for code in candidates.into_iter().filter_map(referral_code) {
        if !referral_codes.contains(&code) {
            referral_codes.push(code);
        }
    }
    Ok(ProviderPurchase {
        order_id,
        email,
        money,
        referral_codes,
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::providers::fuzz;

    const SECRET: &str = "whsec_6f1d2c3b4a5e6f708192a3b4c5d6e7f8";

    /// When the test deliveries were signed.
    const SIGNED_AT: i64 = 1_719_400_005;

    /// A `checkout.session.completed` event modelled on Stripe's documented event and Checkout
    /// Session objects (trimmed).
    const EVENT: &str = r#"{"id":"evt_1PVnF2KZ0dZRqLEKq5Y1xT0b","object":"event","api_version":"2024-06-20","created":1719400000,"data":{"object":{"id":"cs_live_a1B2c3D4e5F6g7H8i9J0kLmNoPqRsTuVwXyZ","object":"checkout.session","amount_subtotal":2499,"amount_total":1999,"client_reference_id":"CLIENT-REF-7","currency":"usd","customer":"cus_QMzJ4m0n1p2q3r","customer_details":{"address":{"city":"Austin","country":"US","line1":"1 Main St","line2":null,"postal_code":"78701","state":"TX"},"email":"Jenny.Rosen@Example.com","name":"Jenny Rosen","phone":null,"tax_exempt":"none","tax_ids":[]},"customer_email":null,"livemode":true,"metadata":{"referralCode":"ALICE1","ref":"BOB2"},"mode":"payment","payment_intent":"pi_3PVnF0KZ0dZRqLEK1a2b3c4d","payment_status":"paid","status":"complete","success_url":"https://example.com/thanks"}},"livemode":true,"pending_webhooks":1,"request":{"id":null,"idempotency_key":null},"type":"checkout.session.completed"}"#;

    /// Hex HMAC-SHA256 of `"{SIGNED_AT}.{EVENT}"` keyed with the whole `SECRET` string, computed
    /// independently with Python's `hmac` module.
    const EVENT_V1: &str = "fe7febaa29ce92c32b06d297285ed914f89aecc62f375e0520ed9c14934febe1";

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(seconds, 0).unwrap()
    }

    fn signed(signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(SIGNATURE_HEADER, signature.parse().unwrap());
        headers
    }

    fn valid_header() -> String {
        format!("t={SIGNED_AT},v1={EVENT_V1},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39")
    }

    fn event_with(change: impl FnOnce(&mut Value)) -> String {
        let mut event: Value = serde_json::from_str(EVENT).unwrap();
        change(&mut event);
        event.to_string()
    }

    fn session_with(change: impl FnOnce(&mut Map<String, Value>)) -> String {
        event_with(|event| change(event["data"]["object"].as_object_mut().unwrap()))
    }

    fn award(body: &str) -> ProviderPurchase {
        match parse(&HeaderMap::new(), body.as_bytes(), false) {
            Verdict::Award(purchase) => purchase,
            Verdict::Ignored(reason) => panic!("expected an award, got ignored: {reason}"),
        }
    }

    fn reason(body: &str, accept_test_events: bool) -> String {
        match parse(&HeaderMap::new(), body.as_bytes(), accept_test_events) {
            Verdict::Ignored(reason) => reason,
            Verdict::Award(purchase) => panic!("expected ignored, got an award: {purchase:?}"),
        }
    }

    fn unauthorized(result: Result<(), ApiError>) -> bool {
        matches!(result, Err(ApiError::Unauthorized(_)))
    }

    #[test]
    fn valid_signature_verifies_within_the_tolerance() {
        let headers = signed(&valid_header());
        for now in [SIGNED_AT, SIGNED_AT + 300, SIGNED_AT - 300] {
            assert!(verify(&headers, EVENT.as_bytes(), Some(SECRET), at(now)).is_ok());
        }
    }

    #[test]
    fn any_v1_may_match_while_a_secret_is_rolled() {
        let other = "0".repeat(64);
        let header = format!("t={SIGNED_AT},v1={other},v1={EVENT_V1}");
        let result = verify(
            &signed(&header),
            EVENT.as_bytes(),
            Some(SECRET),
            at(SIGNED_AT),
        );
        assert!(result.is_ok());
    }

    #[test]
    fn stale_and_future_timestamps_are_unauthorized() {
        let headers = signed(&valid_header());
        for now in [SIGNED_AT + 301, SIGNED_AT - 301, SIGNED_AT + 86_400] {
            assert!(unauthorized(verify(
                &headers,
                EVENT.as_bytes(),
                Some(SECRET),
                at(now)
            )));
        }
    }

    #[test]
    fn wrong_secret_is_unauthorized() {
        let headers = signed(&valid_header());
        let wrong = "whsec_6f1d2c3b4a5e6f708192a3b4c5d6e7f9";
        assert!(unauthorized(verify(
            &headers,
            EVENT.as_bytes(),
            Some(wrong),
            at(SIGNED_AT)
        )));
        // Keyed with only the part after `whsec_` (the Standard Webhooks habit): not Stripe's scheme.
        let stripped = SECRET.trim_start_matches("whsec_");
        assert!(unauthorized(verify(
            &headers,
            EVENT.as_bytes(),
            Some(stripped),
            at(SIGNED_AT)
        )));
    }

    #[test]
    fn missing_secret_is_unauthorized() {
        let headers = signed(&valid_header());
        for secret in [None, Some("")] {
            assert!(unauthorized(verify(
                &headers,
                EVENT.as_bytes(),
                secret,
                at(SIGNED_AT)
            )));
        }
    }

    #[test]
    fn missing_or_malformed_signature_is_unauthorized() {
        let now = at(SIGNED_AT);
        assert!(unauthorized(verify(
            &HeaderMap::new(),
            EVENT.as_bytes(),
            Some(SECRET),
            now
        )));
        for header in [
            String::new(),
            format!("v1={EVENT_V1}"),
            format!("t=,v1={EVENT_V1}"),
            format!("t=abc,v1={EVENT_V1}"),
            format!("t={SIGNED_AT}"),
            format!("t={SIGNED_AT},v0={EVENT_V1}"),
            format!("t={SIGNED_AT},v1={}", &EVENT_V1[..62]),
            format!("t={SIGNED_AT},v1={EVENT_V1}00"),
            format!("t={SIGNED_AT},v2={EVENT_V1}"),
        ] {
            let result = verify(&signed(&header), EVENT.as_bytes(), Some(SECRET), now);
            assert!(unauthorized(result), "{header}");
        }
    }

    #[test]
    fn tampered_body_is_unauthorized() {
        let tampered = EVENT.replace("\"amount_total\":1999", "\"amount_total\":199900");
        assert_ne!(tampered, EVENT);
        let headers = signed(&valid_header());
        assert!(unauthorized(verify(
            &headers,
            tampered.as_bytes(),
            Some(SECRET),
            at(SIGNED_AT)
        )));
    }

    #[test]
    fn paid_checkout_session_awards_the_buyer() {
        let purchase = award(EVENT);
        assert_eq!(
            purchase.order_id.as_str(),
            "cs_live_a1B2c3D4e5F6g7H8i9J0kLmNoPqRsTuVwXyZ"
        );
        assert_eq!(purchase.email.as_str(), "jenny.rosen@example.com");
        assert_eq!(purchase.money.amount.to_string(), "19.99");
        assert_eq!(purchase.money.currency, Currency::USD);
        assert_eq!(
            purchase.referral_codes.first().map(String::as_str),
            Some("ALICE1")
        );
    }

    #[test]
    fn no_payment_required_awards() {
        let body = session_with(|session| {
            session.insert("payment_status".into(), json!("no_payment_required"));
        });
        assert_eq!(award(&body).money.amount.to_string(), "19.99");
    }

    #[test]
    fn unpaid_session_awaits_async_payment() {
        let body = session_with(|session| {
            session.insert("payment_status".into(), json!("unpaid"));
        });
        assert!(reason(&body, true).starts_with("awaiting async payment"));
    }

    #[test]
    fn async_payment_succeeded_awards() {
        let body = event_with(|event| {
            event["type"] = json!("checkout.session.async_payment_succeeded");
        });
        assert_eq!(
            award(&body).order_id.as_str(),
            "cs_live_a1B2c3D4e5F6g7H8i9J0kLmNoPqRsTuVwXyZ"
        );
    }

    #[test]
    fn other_event_types_are_ignored() {
        for event_type in [
            "checkout.session.async_payment_failed",
            "checkout.session.expired",
            "payment_intent.succeeded",
            "charge.refunded",
        ] {
            let body = event_with(|event| event["type"] = json!(event_type));
            assert_eq!(
                reason(&body, true),
                format!("event type {event_type} does not award")
            );
        }
        let refund_without_session = event_with(|event| {
            event["type"] = json!("charge.refunded");
            event["data"] = json!({});
        });
        assert_eq!(
            reason(&refund_without_session, true),
            "event type charge.refunded does not award"
        );
        let untyped = event_with(|event| {
            event.as_object_mut().unwrap().remove("type");
        });
        assert_eq!(reason(&untyped, true), "event has no type");
    }

    #[test]
    fn other_payment_statuses_are_ignored() {
        let body = session_with(|session| {
            session.insert("payment_status".into(), json!("processing"));
        });
        assert_eq!(
            reason(&body, true),
            "payment_status processing does not award"
        );
        let missing = session_with(|session| {
            session.remove("payment_status");
        });
        assert_eq!(reason(&missing, true), "session has no payment_status");
    }

    #[test]
    fn test_mode_events_award_only_when_the_contest_accepts_them() {
        let body = event_with(|event| event["livemode"] = json!(false));
        assert!(reason(&body, false).starts_with("test-mode event"));
        assert!(matches!(
            parse(&HeaderMap::new(), body.as_bytes(), true),
            Verdict::Award(_)
        ));
    }

    #[test]
    fn buyer_email_falls_back_to_customer_email() {
        let body = session_with(|session| {
            session["customer_details"]["email"] = json!(null);
            session.insert("customer_email".into(), json!("Fallback@Example.com"));
        });
        assert_eq!(award(&body).email.as_str(), "fallback@example.com");
        let anonymous = session_with(|session| {
            session.remove("customer_details");
        });
        assert_eq!(reason(&anonymous, true), "session has no buyer email");
    }

    #[test]
    fn zero_decimal_currency_amounts_are_whole_units() {
        let body = session_with(|session| {
            session.insert("currency".into(), json!("jpy"));
            session.insert("amount_total".into(), json!(500));
        });
        let money = award(&body).money;
        assert_eq!(money.amount, Decimal::from(500));
        assert_eq!(money.currency.as_str(), "JPY");
    }

    #[test]
    fn three_decimal_currency_amounts_are_thousandths() {
        let body = session_with(|session| {
            session.insert("currency".into(), json!("kwd"));
            session.insert("amount_total".into(), json!(5120));
        });
        let money = award(&body).money;
        assert_eq!(money.amount.to_string(), "5.120");
        assert_eq!(money.currency.as_str(), "KWD");
    }

    #[test]
    fn stripe_exponents_differ_from_iso_where_stripe_says_so() {
        let exponent = |code: &str| stripe_exponent(Currency::parse(code).unwrap());
        assert_eq!(exponent("usd"), 2);
        assert_eq!(exponent("jpy"), 0);
        assert_eq!(exponent("krw"), 0);
        assert_eq!(exponent("bhd"), 3);
        // ISO says 0, Stripe amounts are in hundredths.
        assert_eq!(exponent("isk"), 2);
        // ISO says 2, Stripe treats it as zero-decimal.
        assert_eq!(exponent("mga"), 0);
        // ISO says 3, Stripe does not list it as three-decimal.
        assert_eq!(exponent("iqd"), 2);
        assert_eq!(exponent("huf"), 2);
    }

    #[test]
    fn unusable_amounts_and_currencies_are_ignored() {
        let cases = [
            (
                "amount_total",
                json!(0),
                "amount_total must be greater than zero",
            ),
            (
                "amount_total",
                json!(-100),
                "amount_total must be greater than zero",
            ),
            (
                "amount_total",
                json!(null),
                "session has no integer amount_total",
            ),
            (
                "amount_total",
                json!("1999"),
                "session has no integer amount_total",
            ),
            (
                "currency",
                json!("xyz"),
                "currency xyz is not an ISO 4217 code",
            ),
            ("currency", json!(null), "session has no currency"),
        ];
        for (field, value, expected) in cases {
            let body = session_with(|session| {
                session.insert(field.into(), value);
            });
            assert_eq!(reason(&body, true), expected, "{field}");
        }
        let fractional = EVENT.replace("\"amount_total\":1999", "\"amount_total\":19.99");
        assert_eq!(
            reason(&fractional, true),
            "session has no integer amount_total"
        );
    }

    #[test]
    fn session_without_id_or_object_is_ignored() {
        let no_id = session_with(|session| {
            session.remove("id");
        });
        assert_eq!(reason(&no_id, true), "session has no id");
        let no_object = event_with(|event| event["data"] = json!({}));
        assert_eq!(reason(&no_object, true), "event has no data.object");
        assert_eq!(reason("[]", true), "body is not a JSON object");
        assert_eq!(reason("{", true), "body is not valid JSON");
    }

    #[test]
    fn referral_code_falls_back_to_ref_then_client_reference_id() {
        let only_ref = session_with(|session| {
            session["metadata"] = json!({"ref": "BOB2"});
        });
        assert_eq!(
            award(&only_ref).referral_codes.first().map(String::as_str),
            Some("BOB2")
        );
        let only_client_reference = session_with(|session| {
            session["metadata"] = json!({});
        });
        assert_eq!(
            award(&only_client_reference)
                .referral_codes
                .first()
                .map(String::as_str),
            Some("CLIENT-REF-7")
        );
        let none = session_with(|session| {
            session["metadata"] = json!({});
            session.insert("client_reference_id".into(), json!(null));
        });
        assert!(award(&none).referral_codes.is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn arbitrary_input_never_panics(
            body in fuzz::body(&[
                "type", "livemode", "data", "object", "id", "payment_status", "customer_details",
                "email", "customer_email", "currency", "amount_total", "metadata", "ref",
                "referralCode", "client_reference_id",
            ]),
            headers in fuzz::headers(&[SIGNATURE_HEADER]),
            secret in proptest::option::of(".{0,40}"),
            now in any::<i64>(),
            accept_test_events in any::<bool>(),
        ) {
            let now = DateTime::from_timestamp(now % 100_000_000_000, 0).unwrap_or_default();
            let _ = verify(&headers, &body, secret.as_deref(), now);
            let _ = parse(&headers, &body, accept_test_events);
        }
    }
}
