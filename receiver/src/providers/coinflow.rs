//! Coinflow checkout webhooks (version 2): key or `Coinflow-Signature` verification, `Settled`
//! events (purchases), and the money going back: `Refund` and the card chargeback events.
//!
//! Coinflow authenticates a delivery by sending the merchant's Webhook Validation Key verbatim in
//! `Authorization`. Where something between Coinflow and us overrides that header, Coinflow's
//! `Coinflow-Signature: t=…,v1=…` (hex HMAC-SHA256 of `{t}.{raw body}` keyed with the same key)
//! stands in for it. Coinflow publishes no time window for `t`, so none is enforced; dedupe on
//! `data.id` makes a replay harmless.
//!
//! A v2 body is `{eventType, category, created, data}`. Coinflow retries a non-2xx answer for up
//! to 36 hours, so every authentic delivery that changes nothing is [`Verdict::Ignored`].
//!
//! Coinflow's checkout webhook documentation (docs.coinflow.cash, "Checkout / Subscription
//! Webhooks") lists `Refund`, `Card Payment Chargeback Opened`, `Card Payment Chargeback Won` and
//! `Card Payment Chargeback Lost` among the checkout event types, each with the same v2 envelope
//! as `Settled` and the payment's id in `data.id`; nothing in them names a refund or a chargeback
//! of its own, so a payment has one refund (the whole payment) and one chargeback.

use axum::http::{header::AUTHORIZATION, HeaderMap};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use shared::{
    event::{RefundAmount, ReversalKind, ReversalTarget},
    ids::OrderId,
    money::{Currency, Money},
};

use super::{
    first_email, header, integer_i64, integer_text, json_object, quote, require_secret,
    ProviderPurchase, ProviderReversal, TimestampedSignature, Verdict,
};
use crate::{
    auth::{hmac::constant_time_eq, refused, Reason, Scheme},
    error::ApiError,
};

/// The signature header, consulted only when `Authorization` is absent.
pub const SIGNATURE_HEADER: &str = "coinflow-signature";

/// The only event type that awards: the payment completed and the merchant holds the funds.
pub const AWARDING_EVENT: &str = "Settled";

/// The payment was refunded: a full refund.
pub const REFUND_EVENT: &str = "Refund";

/// A chargeback was opened on the payment.
pub const CHARGEBACK_OPENED_EVENT: &str = "Card Payment Chargeback Opened";

/// The chargeback was resolved for the merchant: the points come back.
pub const CHARGEBACK_WON_EVENT: &str = "Card Payment Chargeback Won";

/// The chargeback was resolved for the cardholder: the points stay taken.
pub const CHARGEBACK_LOST_EVENT: &str = "Card Payment Chargeback Lost";

/// The refund id of a Coinflow refund (the whole payment, once).
pub const REFUND_ID: &str = "full";

/// The refund id of a Coinflow chargeback, shared by `…Opened` and `…Won` so that the won
/// event names the chargeback the opened one recorded (a payment has one chargeback).
pub const CHARGEBACK_ID: &str = "chargeback";

/// Verifies a delivery against the contest's Coinflow key.
///
/// When `Authorization` is present it decides alone: it must equal the key byte for byte (no
/// `Bearer` scheme). Only without it is `Coinflow-Signature` checked. No time window applies, so
/// `now` is unused.
pub fn verify(
    headers: &HeaderMap,
    body: &[u8],
    secret: Option<&str>,
    _now: DateTime<Utc>,
) -> Result<(), ApiError> {
    if let Some(given) = headers.get(AUTHORIZATION) {
        let key = require_secret(secret, Scheme::CoinflowKey)?;
        let authentic = constant_time_eq(given.as_bytes(), key.as_bytes());
        return crate::auth::authenticated(authentic, Scheme::CoinflowKey);
    }
    let scheme = Scheme::CoinflowSignature;
    let key = require_secret(secret, scheme)?;
    let signature = header(headers, SIGNATURE_HEADER).ok_or(refused(scheme, Reason::Missing))?;
    let signature =
        TimestampedSignature::parse(signature).ok_or(refused(scheme, Reason::Malformed))?;
    crate::auth::authenticated(signature.matches(key.as_bytes(), body), scheme)
}

/// What an authentic Coinflow delivery means.
///
/// `Settled` awards: order id `data.id`, amount `data.subtotal.cents` in minor units of
/// `data.subtotal.currency` (USD when absent), buyer `data.webhookInfo.email` (v2 carries no
/// customer email; `webhookInfo` is what the merchant passed from its checkout). `Refund` is a
/// full refund of payment `data.id`; `Card Payment Chargeback Opened` a chargeback on it and
/// `Card Payment Chargeback Won` its reinstatement; `Card Payment Chargeback Lost` changes
/// nothing more (the opened chargeback already took the points). Every other event type, and a
/// `Settled` without a buyer email, is ignored. Coinflow marks no test events (its sandbox is a
/// separate account with its own key), so `accept_test_events` does not apply, and Coinflow
/// carries no referral code.
pub fn parse(_headers: &HeaderMap, body: &[u8], _accept_test_events: bool) -> Verdict {
    let event = match json_object(body) {
        Ok(event) => event,
        Err(verdict) => return verdict,
    };
    let event_type = match event.get("eventType").and_then(Value::as_str) {
        Some(event_type) => event_type,
        None => return Verdict::ignored("event has no eventType"),
    };
    let reversal = match event_type {
        AWARDING_EVENT => None,
        REFUND_EVENT => Some((ReversalKind::Refund, REFUND_ID, "refunded")),
        CHARGEBACK_OPENED_EVENT => {
            Some((ReversalKind::Chargeback, CHARGEBACK_ID, "chargeback opened"))
        }
        CHARGEBACK_WON_EVENT => {
            Some((ReversalKind::ChargebackWon, CHARGEBACK_ID, "chargeback won"))
        }
        CHARGEBACK_LOST_EVENT => {
            return Verdict::ignored(
                "Card Payment Chargeback Lost changes nothing more: the chargeback opened \
                 earlier already took the points",
            )
        }
        other => return Verdict::ignored(format!("event type {} does not award", quote(other))),
    };
    let Some(data) = event.get("data").and_then(Value::as_object) else {
        return Verdict::ignored(format!("{event_type} event has no data object"));
    };
    if let Some((kind, refund_id, reason)) = reversal {
        let Some(order_id) = payment_id(data) else {
            return Verdict::ignored(format!("{event_type} event has no data.id"));
        };
        return Verdict::Reverse(ProviderReversal {
            target: ReversalTarget::OrderId(order_id),
            refund_id: refund_id.to_owned(),
            kind,
            amount: RefundAmount::Full,
            reason: Some(reason.to_owned()),
        });
    }
    match purchase(data) {
        Ok(purchase) => Verdict::Award(purchase),
        Err(reason) => Verdict::Ignored(reason),
    }
}

/// The payment's id, `data.id` (a string, or an integer kept digit for digit).
fn payment_id(data: &Map<String, Value>) -> Option<OrderId> {
    data.get("id")
        .and_then(|id| id.as_str().map(str::to_owned).or_else(|| integer_text(id)))
        .and_then(|id| OrderId::parse(&id).ok())
}

/// The purchase a `Settled` event's `data` describes, or why it describes none.
fn purchase(data: &Map<String, Value>) -> Result<ProviderPurchase, String> {
    let order_id = payment_id(data).ok_or("Settled event has no data.id")?;
    let email = webhook_info_email(data.get("webhookInfo"))
        .ok_or("Settled event has no buyer email in data.webhookInfo.email")?;
    let subtotal = data
        .get("subtotal")
        .and_then(Value::as_object)
        .ok_or("Settled event has no data.subtotal")?;
    let cents = subtotal
        .get("cents")
        .and_then(integer_i64)
        .ok_or("Settled event has no integer data.subtotal.cents")?;
    let currency = match subtotal.get("currency") {
        None | Some(Value::Null) => Currency::USD,
        Some(Value::String(code)) => Currency::parse(code)
            .map_err(|_| format!("currency {} is not an ISO 4217 code", quote(code)))?,
        Some(_) => return Err("data.subtotal.currency is not a string".into()),
    };
    let money =
        Money::from_minor(cents, currency).map_err(|error| format!("data.subtotal {error}"))?;
    Ok(ProviderPurchase {
        order_id,
        email,
        money,
        referral_codes: Vec::new(),
        payment_intent: None,
    })
}

/// `webhookInfo.email`. `webhookInfo` is whatever the merchant attached at checkout: usually an
/// object, but some integrations attach it as a JSON string, which is decoded first.
fn webhook_info_email(info: Option<&Value>) -> Option<shared::email::Email> {
    match info? {
        Value::String(text) => {
            let decoded = serde_json::from_str::<Value>(text).ok()?;
            first_email([decoded.get("email")])
        }
        info => first_email([info.get("email")]),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::providers::fuzz;

    const KEY: &str = "cf_whk_7Hq2xLm9Pz4Rt6Vb8Nc1Kd3Fg5Js0Aw";

    /// A v2 `Settled` event modelled on Coinflow's documented checkout webhook payload.
    const SETTLED: &str = r#"{"eventType":"Settled","category":"Purchase","created":"2024-06-26T16:00:00.000Z","data":{"id":"0a4f9d6e-3b1c-4e2a-9f8d-7c6b5a493827","signature":"","wallet":"9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin","webhookInfo":{"email":"Buyer@Example.com","userId":"u_123"},"subtotal":{"cents":2500,"currency":"USD"},"fees":{"cents":129},"chargebackProtectionFees":{"cents":75},"gasFees":{"cents":0},"total":{"cents":2704},"customerId":"u_123","merchantId":"blitz-demo"}}"#;

    const SIGNED_AT: &str = "1717012345";

    /// Hex HMAC-SHA256 of `"{SIGNED_AT}.{SETTLED}"` keyed with `KEY`, computed independently with
    /// Python's `hmac` module.
    const SETTLED_V1: &str = "9b2d7d73fbc213c7a2e47a0e028b4855f4cc66f8c55d8e84f946887a696c72c1";

    /// A v2 `Refund` event for the same payment, modelled on the `Settled` one.
    const REFUND: &str = r#"{"eventType":"Refund","category":"Purchase","created":"2024-07-01T12:00:00.000Z","data":{"id":"0a4f9d6e-3b1c-4e2a-9f8d-7c6b5a493827","signature":"","wallet":"9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin","webhookInfo":{"email":"Buyer@Example.com","userId":"u_123"},"subtotal":{"cents":2500,"currency":"USD"},"total":{"cents":2704},"customerId":"u_123","merchantId":"blitz-demo"}}"#;

    const REFUND_SIGNED_AT: &str = "1719835200";

    /// Hex HMAC-SHA256 of `"{REFUND_SIGNED_AT}.{REFUND}"` keyed with `KEY`, computed
    /// independently with Python's `hmac` module.
    const REFUND_V1: &str = "bea6f56ec3ee482221bb35f9b30759b69c6f26d62aa6b041c583acacbd60a35c";

    const PAYMENT_ID: &str = "0a4f9d6e-3b1c-4e2a-9f8d-7c6b5a493827";

    fn reverse(body: &str) -> ProviderReversal {
        match parse(&HeaderMap::new(), body.as_bytes(), false) {
            Verdict::Reverse(reversal) => reversal,
            other => panic!("expected a reversal, got {other:?}"),
        }
    }

    /// The sample refund event with another `eventType`.
    fn refund_event(event_type: &str) -> String {
        let mut event: Value = serde_json::from_str(REFUND).unwrap();
        event["eventType"] = json!(event_type);
        event.to_string()
    }

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, value.parse().unwrap());
        headers
    }

    fn with_signature(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(SIGNATURE_HEADER, value.parse().unwrap());
        headers
    }

    fn valid_signature() -> String {
        format!("t={SIGNED_AT},v1={SETTLED_V1}")
    }

    fn check(headers: &HeaderMap, body: &str, key: Option<&str>) -> Result<(), ApiError> {
        verify(headers, body.as_bytes(), key, Utc::now())
    }

    fn unauthorized(result: Result<(), ApiError>) -> bool {
        matches!(result, Err(ApiError::Unauthorized(_)))
    }

    fn event_with(change: impl FnOnce(&mut Value)) -> String {
        let mut event: Value = serde_json::from_str(SETTLED).unwrap();
        change(&mut event);
        event.to_string()
    }

    fn award(body: &str) -> ProviderPurchase {
        match parse(&HeaderMap::new(), body.as_bytes(), false) {
            Verdict::Award(purchase) => purchase,
            other => panic!("expected an award, got {other:?}"),
        }
    }

    fn reason(body: &str) -> String {
        match parse(&HeaderMap::new(), body.as_bytes(), true) {
            Verdict::Ignored(reason) => reason,
            other => panic!("expected ignored, got {other:?}"),
        }
    }

    #[test]
    fn authorization_equal_to_the_key_verifies() {
        assert!(check(&with_authorization(KEY), SETTLED, Some(KEY)).is_ok());
    }

    #[test]
    fn wrong_or_decorated_authorization_is_unauthorized() {
        for value in [
            "cf_whk_wrong",
            &format!("Bearer {KEY}"),
            &KEY[..KEY.len() - 1],
            &format!("{KEY}x"),
        ] {
            assert!(
                unauthorized(check(&with_authorization(value), SETTLED, Some(KEY))),
                "{value}"
            );
        }
    }

    #[test]
    fn valid_signature_verifies_without_a_time_window() {
        // Signed long ago: Coinflow publishes no tolerance, so age does not matter.
        let result = verify(
            &with_signature(&valid_signature()),
            SETTLED.as_bytes(),
            Some(KEY),
            Utc::now() + chrono::Duration::days(3650),
        );
        assert!(result.is_ok());
    }

    #[test]
    fn authorization_decides_alone_when_present() {
        let mut headers = with_signature(&valid_signature());
        headers.insert(AUTHORIZATION, HeaderValue::from_static("not-the-key"));
        assert!(unauthorized(check(&headers, SETTLED, Some(KEY))));
    }

    #[test]
    fn wrong_key_is_unauthorized() {
        let other = Some("cf_whk_7Hq2xLm9Pz4Rt6Vb8Nc1Kd3Fg5Js0Ax");
        assert!(unauthorized(check(
            &with_authorization(KEY),
            SETTLED,
            other
        )));
        assert!(unauthorized(check(
            &with_signature(&valid_signature()),
            SETTLED,
            other
        )));
    }

    #[test]
    fn missing_key_is_unauthorized() {
        for key in [None, Some("")] {
            assert!(unauthorized(check(&with_authorization(KEY), SETTLED, key)));
            assert!(unauthorized(check(
                &with_signature(&valid_signature()),
                SETTLED,
                key
            )));
        }
        // An empty key must not be matched by an empty Authorization header either.
        assert!(unauthorized(check(
            &with_authorization(""),
            SETTLED,
            Some("")
        )));
    }

    #[test]
    fn missing_or_malformed_credentials_are_unauthorized() {
        assert!(unauthorized(check(&HeaderMap::new(), SETTLED, Some(KEY))));
        for value in [
            String::new(),
            format!("v1={SETTLED_V1}"),
            format!("t={SIGNED_AT}"),
            format!("t={SIGNED_AT},v1={}", &SETTLED_V1[..63]),
            format!("t={SIGNED_AT},v1=not-hex"),
            format!("t=1717012346,v1={SETTLED_V1}"),
        ] {
            assert!(
                unauthorized(check(&with_signature(&value), SETTLED, Some(KEY))),
                "{value}"
            );
        }
    }

    #[test]
    fn tampered_body_is_unauthorized() {
        let tampered = SETTLED.replace("\"cents\":2500", "\"cents\":250000");
        assert_ne!(tampered, SETTLED);
        let headers = with_signature(&valid_signature());
        assert!(unauthorized(check(&headers, &tampered, Some(KEY))));
    }

    #[test]
    fn settled_event_awards_the_buyer() {
        let purchase = award(SETTLED);
        assert_eq!(
            purchase.order_id.as_str(),
            "0a4f9d6e-3b1c-4e2a-9f8d-7c6b5a493827"
        );
        assert_eq!(purchase.email.as_str(), "buyer@example.com");
        assert_eq!(purchase.money.amount.to_string(), "25.00");
        assert_eq!(purchase.money.currency, Currency::USD);
        assert!(purchase.referral_codes.is_empty());
    }

    #[test]
    fn currency_defaults_to_usd_and_uses_its_minor_unit() {
        let no_currency = event_with(|event| {
            event["data"]["subtotal"] = json!({"cents": 1999});
        });
        let money = award(&no_currency).money;
        assert_eq!(money.amount.to_string(), "19.99");
        assert_eq!(money.currency, Currency::USD);
        let yen = event_with(|event| {
            event["data"]["subtotal"] = json!({"cents": 1500, "currency": "JPY"});
        });
        assert_eq!(award(&yen).money.amount.to_string(), "1500");
    }

    #[test]
    fn webhook_info_sent_as_a_json_string_is_decoded() {
        let body = event_with(|event| {
            event["data"]["webhookInfo"] = json!(r#"{"email":"Str@Example.com"}"#);
        });
        assert_eq!(award(&body).email.as_str(), "str@example.com");
    }

    #[test]
    fn other_event_types_are_ignored() {
        for event_type in [
            "Card Payment Authorized",
            "Card Payment Declined",
            "Card Payment Suspected Fraud",
            "refund",
            "Refunded",
        ] {
            let body = event_with(|event| event["eventType"] = json!(event_type));
            assert_eq!(
                reason(&body),
                format!("event type {event_type} does not award")
            );
        }
        let untyped = event_with(|event| {
            event.as_object_mut().unwrap().remove("eventType");
        });
        assert_eq!(reason(&untyped), "event has no eventType");
    }

    #[test]
    fn refund_signature_verifies() {
        let signature = format!("t={REFUND_SIGNED_AT},v1={REFUND_V1}");
        assert!(check(&with_signature(&signature), REFUND, Some(KEY)).is_ok());
        let tampered = REFUND.replace(PAYMENT_ID, "0a4f9d6e-3b1c-4e2a-9f8d-7c6b5a493828");
        assert_ne!(tampered, REFUND);
        assert!(unauthorized(check(
            &with_signature(&signature),
            &tampered,
            Some(KEY)
        )));
    }

    #[test]
    fn refund_is_a_full_refund_of_the_payment() {
        assert_eq!(
            reverse(REFUND),
            ProviderReversal {
                target: ReversalTarget::OrderId(OrderId::parse(PAYMENT_ID).unwrap()),
                refund_id: REFUND_ID.into(),
                kind: ReversalKind::Refund,
                amount: RefundAmount::Full,
                reason: Some("refunded".into()),
            }
        );
    }

    #[test]
    fn chargeback_opened_and_won_name_the_same_chargeback() {
        let opened = reverse(&refund_event(CHARGEBACK_OPENED_EVENT));
        let won = reverse(&refund_event(CHARGEBACK_WON_EVENT));
        assert_eq!(opened.kind, ReversalKind::Chargeback);
        assert_eq!(won.kind, ReversalKind::ChargebackWon);
        assert_eq!(opened.refund_id, won.refund_id);
        assert_eq!(opened.refund_id, CHARGEBACK_ID);
        assert_eq!(opened.target, won.target);
        assert_eq!(
            opened.target,
            ReversalTarget::OrderId(OrderId::parse(PAYMENT_ID).unwrap())
        );
        assert_eq!(opened.amount, RefundAmount::Full);
        assert_eq!(won.amount, RefundAmount::Full);
    }

    #[test]
    fn chargeback_lost_changes_nothing_more() {
        assert!(reason(&refund_event(CHARGEBACK_LOST_EVENT)).contains("changes nothing more"));
    }

    #[test]
    fn reversals_without_a_payment_id_are_ignored() {
        for event_type in [REFUND_EVENT, CHARGEBACK_OPENED_EVENT, CHARGEBACK_WON_EVENT] {
            let mut event: Value = serde_json::from_str(&refund_event(event_type)).unwrap();
            event["data"]["id"] = json!("");
            assert_eq!(
                reason(&event.to_string()),
                format!("{event_type} event has no data.id")
            );
            event["data"] = json!(null);
            assert_eq!(
                reason(&event.to_string()),
                format!("{event_type} event has no data object")
            );
        }
        // An integer payment id keeps its digits.
        let mut numeric: Value = serde_json::from_str(REFUND).unwrap();
        numeric["data"]["id"] = serde_json::from_str("820982911946154508").unwrap();
        assert_eq!(
            reverse(&numeric.to_string()).target,
            ReversalTarget::OrderId(OrderId::parse("820982911946154508").unwrap())
        );
    }

    #[test]
    fn settled_without_buyer_email_is_ignored() {
        for info in [
            json!(null),
            json!({}),
            json!({"email": "not an email"}),
            json!("{"),
        ] {
            let body = event_with(|event| event["data"]["webhookInfo"] = info);
            assert_eq!(
                reason(&body),
                "Settled event has no buyer email in data.webhookInfo.email"
            );
        }
    }

    #[test]
    fn unusable_amounts_are_ignored() {
        let cases = [
            (
                json!({"cents": 0}),
                "data.subtotal must be greater than zero",
            ),
            (
                json!({"cents": -250}),
                "data.subtotal must be greater than zero",
            ),
            (
                json!({"cents": "2500"}),
                "Settled event has no integer data.subtotal.cents",
            ),
            (
                json!({"cents": 25.5}),
                "Settled event has no integer data.subtotal.cents",
            ),
            (
                json!({"cents": 2500, "currency": "DOGE"}),
                "currency DOGE is not an ISO 4217 code",
            ),
            (
                json!({"cents": 2500, "currency": 840}),
                "data.subtotal.currency is not a string",
            ),
            (json!(null), "Settled event has no data.subtotal"),
        ];
        for (subtotal, expected) in cases {
            let body = event_with(|event| event["data"]["subtotal"] = subtotal);
            assert_eq!(reason(&body), expected);
        }
    }

    #[test]
    fn settled_without_id_or_data_is_ignored() {
        let no_id = event_with(|event| {
            event["data"].as_object_mut().unwrap().remove("id");
        });
        assert_eq!(reason(&no_id), "Settled event has no data.id");
        let no_data = event_with(|event| event["data"] = json!("x"));
        assert_eq!(reason(&no_data), "Settled event has no data object");
        assert_eq!(reason("null"), "body is not a JSON object");
        assert_eq!(reason("\u{0}"), "body is not valid JSON");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn arbitrary_input_never_panics(
            body in fuzz::body(&[
                "eventType", "category", "created", "data", "id", "webhookInfo", "email",
                "subtotal", "cents", "currency",
            ]),
            headers in fuzz::headers(&["authorization", SIGNATURE_HEADER]),
            secret in proptest::option::of(".{0,40}"),
            accept_test_events in any::<bool>(),
        ) {
            let _ = verify(&headers, &body, secret.as_deref(), Utc::now());
            let _ = parse(&headers, &body, accept_test_events);
        }
    }
}
