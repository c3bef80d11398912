//! Stripe webhooks: `Stripe-Signature` verification, Checkout Session events (purchases), and
//! the money going back: `charge.refunded` and the `charge.dispute.*` events.
//!
//! Stripe signs `{t}.{raw body}` with HMAC-SHA256 keyed with the endpoint's whole `whsec_…`
//! string (not a decoding of it) and sends `t=…,v1=…`; while a secret is being rolled there is one
//! `v1` per active secret, and any may match. `v0` (test-mode legacy) and other schemes are
//! ignored. Amounts are integers in the currency's minor unit *as Stripe defines it*, which is
//! not always ISO 4217's (see [`stripe_exponent`]).
//!
//! Refunds and disputes are about a *charge*, which names its PaymentIntent but not the Checkout
//! Session the purchase was recorded under; so the purchase carries the session's
//! `payment_intent` and reversals target it. Shapes relied on (Stripe API reference, "The Charge
//! object" and "The Dispute object"): a `charge.refunded` event's `data.object` is a Charge with
//! `id` (`ch_…`), `payment_intent`, `currency` and `amount_refunded`, the *cumulative* amount
//! refunded so far in minor units; a `charge.dispute.*` event's `data.object` is a Dispute with
//! `id` (`dp_…`), `payment_intent`, `reason` and `status` (`warning_needs_response`,
//! `warning_under_review`, `warning_closed`, `needs_response`, `under_review`, `won`, `lost`,
//! `prevented`; the `warning_*` ones are inquiries).

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use shared::{
    ids::OrderId,
    money::{Currency, Money},
};

use shared::event::{RefundAmount, ReversalKind, ReversalTarget};

use super::{
    first_email, header, integer_i64, json_object, provider_id, quote, reason_text, referral_code,
    require_secret, ProviderPurchase, ProviderReversal, TimestampedSignature, Verdict,
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

/// A Checkout Session completed (with a payment or none needed): awards when paid.
pub const CHECKOUT_COMPLETED: &str = "checkout.session.completed";

/// A delayed payment of a Checkout Session arrived: awards.
pub const ASYNC_PAYMENT_SUCCEEDED: &str = "checkout.session.async_payment_succeeded";

/// A charge was refunded, fully or partly: carries the cumulative refunded amount.
pub const CHARGE_REFUNDED: &str = "charge.refunded";

/// A dispute (chargeback or inquiry) was opened on a charge.
pub const DISPUTE_CREATED: &str = "charge.dispute.created";

/// A dispute was closed: `won` (or an inquiry closed, `warning_closed`) gives the points back.
pub const DISPUTE_CLOSED: &str = "charge.dispute.closed";

/// What an authentic Stripe event means.
///
/// - `checkout.session.completed` awards when `payment_status` is `paid` or
///   `no_payment_required`; `unpaid` (a delayed payment method such as a bank debit) is ignored
///   until `checkout.session.async_payment_succeeded`, which awards.
/// - `charge.refunded` sets the purchase's refunded total to the charge's cumulative
///   `amount_refunded`.
/// - `charge.dispute.created` is a chargeback and `charge.dispute.closed` won reinstates it
///   (an inquiry closed without escalating, `warning_closed`, reinstates it too).
///
/// Every other event type is ignored, as are test-mode events (`livemode: false`) unless
/// `accept_test_events` is set.
pub fn parse(_headers: &HeaderMap, body: &[u8], accept_test_events: bool) -> Verdict {
    let event = match json_object(body) {
        Ok(event) => event,
        Err(verdict) => return verdict,
    };
    let Some(event_type) = event.get("type").and_then(Value::as_str) else {
        return Verdict::ignored("event has no type");
    };
    if ![
        CHECKOUT_COMPLETED,
        ASYNC_PAYMENT_SUCCEEDED,
        CHARGE_REFUNDED,
        DISPUTE_CREATED,
        DISPUTE_CLOSED,
    ]
    .contains(&event_type)
    {
        return Verdict::ignored(format!("event type {} does not award", quote(event_type)));
    }
    let Some(object) = event
        .get("data")
        .and_then(|data| data.get("object"))
        .and_then(Value::as_object)
    else {
        return Verdict::ignored("event has no data.object");
    };
    let test_mode = event.get("livemode") == Some(&Value::Bool(false)) && !accept_test_events;
    let ignored_test_event = || {
        Verdict::ignored(
            "test-mode event (livemode false), and the contest does not accept test events",
        )
    };
    match event_type {
        CHARGE_REFUNDED | DISPUTE_CREATED | DISPUTE_CLOSED if test_mode => ignored_test_event(),
        CHARGE_REFUNDED => charge_refunded(object),
        DISPUTE_CREATED => dispute_created(object),
        DISPUTE_CLOSED => dispute_closed(object),
        _ => {
            // `async_payment_succeeded` is itself the news that the payment arrived.
            if event_type == CHECKOUT_COMPLETED {
                if let Some(verdict) = unpaid(object) {
                    return verdict;
                }
            }
            if test_mode {
                return ignored_test_event();
            }
            match purchase(object) {
                Ok(purchase) => Verdict::Award(purchase),
                Err(reason) => Verdict::Ignored(reason),
            }
        }
    }
}

/// Why a completed Checkout Session does not award yet, if it does not.
fn unpaid(session: &Map<String, Value>) -> Option<Verdict> {
    match session.get("payment_status").and_then(Value::as_str) {
        Some("paid" | "no_payment_required") => None,
        Some("unpaid") => Some(Verdict::ignored(
            "awaiting async payment: payment_status is unpaid; \
             checkout.session.async_payment_succeeded will award it",
        )),
        Some(status) => Some(Verdict::ignored(format!(
            "payment_status {} does not award",
            quote(status)
        ))),
        None => Some(Verdict::ignored("session has no payment_status")),
    }
}

/// The id of the PaymentIntent an object names (`payment_intent`, a string, or an expanded
/// object with an `id`).
fn payment_intent(object: &Map<String, Value>) -> Option<String> {
    let value = object.get("payment_intent")?;
    provider_id(Some(value)).or_else(|| provider_id(value.get("id")))
}

/// `charge.refunded`: a [`RefundAmount::Cumulative`] refund of the charge's `amount_refunded`
/// (the total refunded so far, in Stripe's minor units of the charge's `currency`) on the
/// purchase whose payment intent the charge names. The refund id is `{charge id}:{amount
/// refunded}`: a replay of the same event dedupes, while a later refund, whose event carries a
/// larger total, is a new reversal (and a total never counts twice: the worker keeps the largest
/// total seen, so events arriving out of order are harmless too).
fn charge_refunded(charge: &Map<String, Value>) -> Verdict {
    let Some(charge_id) = provider_id(charge.get("id")) else {
        return Verdict::ignored("charge has no id");
    };
    let Some(intent) = payment_intent(charge) else {
        return Verdict::ignored(
            "charge has no payment_intent, so it cannot belong to a Checkout purchase",
        );
    };
    let currency = match charge.get("currency").and_then(Value::as_str) {
        Some(code) => match Currency::parse(code) {
            Ok(currency) => currency,
            Err(_) => {
                return Verdict::ignored(format!(
                    "currency {} is not an ISO 4217 code",
                    quote(code)
                ))
            }
        },
        None => return Verdict::ignored("charge has no currency"),
    };
    let Some(minor) = charge.get("amount_refunded").and_then(integer_i64) else {
        return Verdict::ignored("charge has no integer amount_refunded");
    };
    let amount = match Money::new(Decimal::new(minor, stripe_exponent(currency)), currency) {
        Ok(money) => money.amount,
        Err(error) => return Verdict::ignored(format!("amount_refunded {error}")),
    };
    Verdict::Reverse(ProviderReversal {
        target: ReversalTarget::PaymentIntent(intent),
        refund_id: format!("{charge_id}:{minor}"),
        kind: ReversalKind::Refund,
        amount: RefundAmount::Cumulative { amount, currency },
        reason: None,
    })
}

/// A dispute's id and the payment intent it names, or why it has none.
fn dispute_parts(dispute: &Map<String, Value>) -> Result<(String, String), Verdict> {
    let dispute_id =
        provider_id(dispute.get("id")).ok_or_else(|| Verdict::ignored("dispute has no id"))?;
    let intent = payment_intent(dispute).ok_or_else(|| {
        Verdict::ignored(
            "dispute has no payment_intent, so it cannot belong to a Checkout purchase",
        )
    })?;
    Ok((dispute_id, intent))
}

/// `charge.dispute.created`: a chargeback (everything the purchase still holds is taken back),
/// named by the dispute id. Inquiries (`warning_needs_response`) count too: an inquiry that
/// escalates may do so on the same dispute object (its status moving on to `needs_response`),
/// with no second `created` event to wait for; an inquiry that closes without escalating gives
/// the points back (see `dispute_closed`).
fn dispute_created(dispute: &Map<String, Value>) -> Verdict {
    let (dispute_id, intent) = match dispute_parts(dispute) {
        Ok(parts) => parts,
        Err(verdict) => return verdict,
    };
    let reason = dispute
        .get("reason")
        .and_then(Value::as_str)
        .and_then(reason_text)
        .map_or_else(
            || "dispute opened".to_owned(),
            |why| format!("dispute opened: {why}"),
        );
    Verdict::Reverse(ProviderReversal {
        target: ReversalTarget::PaymentIntent(intent),
        refund_id: dispute_id,
        kind: ReversalKind::Chargeback,
        amount: RefundAmount::Full,
        reason: reason_text(&reason),
    })
}

/// `charge.dispute.closed`: `won` gives back what the dispute's chargeback took (a
/// `chargeback_won` naming the same dispute id), and so does `warning_closed`, an inquiry closed
/// without becoming a chargeback (the money never left). Any other outcome (`lost`, `prevented`,
/// …) changes nothing more: the points stay taken.
fn dispute_closed(dispute: &Map<String, Value>) -> Verdict {
    let status = match dispute.get("status").and_then(Value::as_str) {
        Some(status) => status,
        None => return Verdict::ignored("dispute has no status"),
    };
    if status != "won" && status != "warning_closed" {
        return Verdict::ignored(format!(
            "dispute closed with status {}: the points stay taken",
            quote(status)
        ));
    }
    let (dispute_id, intent) = match dispute_parts(dispute) {
        Ok(parts) => parts,
        Err(verdict) => return verdict,
    };
    Verdict::Reverse(ProviderReversal {
        target: ReversalTarget::PaymentIntent(intent),
        refund_id: dispute_id,
        kind: ReversalKind::ChargebackWon,
        amount: RefundAmount::Full,
        reason: reason_text(&format!("dispute closed: {status}")),
    })
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
        payment_intent: payment_intent(session),
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

    /// A `charge.refunded` event modelled on Stripe's documented Event and Charge objects
    /// (trimmed): 5.00 of a 19.99 charge refunded so far.
    const CHARGE_REFUNDED_EVENT: &str = r#"{"id":"evt_3PVnF0KZ0dZRqLEK0c8r9f2a","object":"event","api_version":"2024-06-20","created":1719486400,"data":{"object":{"id":"ch_3PVnF0KZ0dZRqLEK1q2w3e4r","object":"charge","amount":1999,"amount_captured":1999,"amount_refunded":500,"captured":true,"currency":"usd","customer":"cus_QMzJ4m0n1p2q3r","livemode":true,"paid":true,"payment_intent":"pi_3PVnF0KZ0dZRqLEK1a2b3c4d","refunded":false,"status":"succeeded"},"previous_attributes":{"amount_refunded":0}},"livemode":true,"pending_webhooks":1,"request":{"id":"req_Jq8p2m4n6b","idempotency_key":null},"type":"charge.refunded"}"#;

    /// When the charge event was signed.
    const CHARGE_SIGNED_AT: i64 = 1_719_486_405;

    /// Hex HMAC-SHA256 of `"{CHARGE_SIGNED_AT}.{CHARGE_REFUNDED_EVENT}"` keyed with `SECRET`,
    /// computed independently with Python's `hmac` module.
    const CHARGE_V1: &str = "2df51336ace1ce3bb71a065aa5d34c0ff9d927dc432b34f10ece7ddcd873940d";

    /// A `charge.dispute.created` event modelled on Stripe's documented Event and Dispute objects
    /// (trimmed).
    const DISPUTE_CREATED_EVENT: &str = r#"{"id":"evt_1PWqZ3KZ0dZRqLEKd1s2p3t4","object":"event","api_version":"2024-06-20","created":1719572800,"data":{"object":{"id":"dp_1PWqZ2KZ0dZRqLEKr9s8t7u6","object":"dispute","amount":1999,"charge":"ch_3PVnF0KZ0dZRqLEK1q2w3e4r","created":1719572800,"currency":"usd","is_charge_refundable":false,"livemode":true,"payment_intent":"pi_3PVnF0KZ0dZRqLEK1a2b3c4d","reason":"fraudulent","status":"needs_response"}},"livemode":true,"pending_webhooks":1,"request":{"id":null,"idempotency_key":null},"type":"charge.dispute.created"}"#;

    /// When the dispute event was signed.
    const DISPUTE_SIGNED_AT: i64 = 1_719_572_805;

    /// Hex HMAC-SHA256 of `"{DISPUTE_SIGNED_AT}.{DISPUTE_CREATED_EVENT}"` keyed with `SECRET`,
    /// computed independently with Python's `hmac` module.
    const DISPUTE_V1: &str = "aea20863eff3904552c0b0343a131d3f7c06ccf677fb09b97aa5b1f2a05ff92d";

    const INTENT: &str = "pi_3PVnF0KZ0dZRqLEK1a2b3c4d";
    const CHARGE_ID: &str = "ch_3PVnF0KZ0dZRqLEK1q2w3e4r";
    const DISPUTE_ID: &str = "dp_1PWqZ2KZ0dZRqLEKr9s8t7u6";

    /// `base` (an event) with `change` applied to its `data.object`.
    fn object_with(base: &str, change: impl FnOnce(&mut Map<String, Value>)) -> String {
        let mut event: Value = serde_json::from_str(base).unwrap();
        change(event["data"]["object"].as_object_mut().unwrap());
        event.to_string()
    }

    /// A `charge.dispute.closed` event for the sample dispute, closed with `status`.
    fn dispute_closed_with(status: &str) -> String {
        let mut event: Value = serde_json::from_str(DISPUTE_CREATED_EVENT).unwrap();
        event["type"] = json!("charge.dispute.closed");
        event["data"]["object"]["status"] = json!(status);
        event.to_string()
    }

    fn reverse(body: &str, accept_test_events: bool) -> ProviderReversal {
        match parse(&HeaderMap::new(), body.as_bytes(), accept_test_events) {
            Verdict::Reverse(reversal) => reversal,
            other => panic!("expected a reversal, got {other:?}"),
        }
    }

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
            other => panic!("expected an award, got {other:?}"),
        }
    }

    fn reason(body: &str, accept_test_events: bool) -> String {
        match parse(&HeaderMap::new(), body.as_bytes(), accept_test_events) {
            Verdict::Ignored(reason) => reason,
            other => panic!("expected ignored, got {other:?}"),
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
            "charge.refund.updated",
            "charge.dispute.updated",
            "charge.dispute.funds_reinstated",
        ] {
            let body = event_with(|event| event["type"] = json!(event_type));
            assert_eq!(
                reason(&body, true),
                format!("event type {event_type} does not award")
            );
        }
        let untyped = event_with(|event| {
            event.as_object_mut().unwrap().remove("type");
        });
        assert_eq!(reason(&untyped, true), "event has no type");
    }

    #[test]
    fn purchase_carries_the_sessions_payment_intent() {
        assert_eq!(award(EVENT).payment_intent.as_deref(), Some(INTENT));
        let expanded = session_with(|session| {
            session.insert(
                "payment_intent".into(),
                json!({"id": "pi_expanded", "object": "payment_intent"}),
            );
        });
        assert_eq!(
            award(&expanded).payment_intent.as_deref(),
            Some("pi_expanded")
        );
        // No payment (`no_payment_required`): no intent, still a purchase.
        let none = session_with(|session| {
            session.insert("payment_intent".into(), json!(null));
            session.insert("payment_status".into(), json!("no_payment_required"));
        });
        assert_eq!(award(&none).payment_intent, None);
    }

    #[test]
    fn charge_and_dispute_signatures_verify() {
        for (body, signed_at, v1) in [
            (CHARGE_REFUNDED_EVENT, CHARGE_SIGNED_AT, CHARGE_V1),
            (DISPUTE_CREATED_EVENT, DISPUTE_SIGNED_AT, DISPUTE_V1),
        ] {
            let headers = signed(&format!("t={signed_at},v1={v1}"));
            assert!(verify(&headers, body.as_bytes(), Some(SECRET), at(signed_at)).is_ok());
            let tampered = body.replace(INTENT, "pi_3PVnF0KZ0dZRqLEK1a2b3c4e");
            assert_ne!(tampered, body);
            assert!(unauthorized(verify(
                &headers,
                tampered.as_bytes(),
                Some(SECRET),
                at(signed_at)
            )));
        }
    }

    #[test]
    fn charge_refunded_sets_the_cumulative_refunded_total_of_the_payment_intent() {
        assert_eq!(
            reverse(CHARGE_REFUNDED_EVENT, false),
            ProviderReversal {
                target: ReversalTarget::PaymentIntent(INTENT.into()),
                refund_id: format!("{CHARGE_ID}:500"),
                kind: ReversalKind::Refund,
                amount: RefundAmount::Cumulative {
                    amount: Decimal::new(500, 2),
                    currency: Currency::USD,
                },
                reason: None,
            }
        );
    }

    #[test]
    fn a_replay_keeps_the_refund_id_and_a_larger_total_is_a_new_one() {
        let first = reverse(CHARGE_REFUNDED_EVENT, false);
        assert_eq!(reverse(CHARGE_REFUNDED_EVENT, false), first);
        let rest = object_with(CHARGE_REFUNDED_EVENT, |charge| {
            charge.insert("amount_refunded".into(), json!(1999));
            charge.insert("refunded".into(), json!(true));
        });
        let second = reverse(&rest, false);
        assert_ne!(second.refund_id, first.refund_id);
        assert_eq!(second.refund_id, format!("{CHARGE_ID}:1999"));
        assert_eq!(
            second.amount,
            RefundAmount::Cumulative {
                amount: Decimal::new(1999, 2),
                currency: Currency::USD,
            }
        );
    }

    #[test]
    fn refunded_amounts_use_stripes_minor_units() {
        let yen = object_with(CHARGE_REFUNDED_EVENT, |charge| {
            charge.insert("currency".into(), json!("jpy"));
            charge.insert("amount_refunded".into(), json!(500));
        });
        assert_eq!(
            reverse(&yen, false).amount,
            RefundAmount::Cumulative {
                amount: Decimal::from(500),
                currency: Currency::parse("JPY").unwrap(),
            }
        );
        let dinar = object_with(CHARGE_REFUNDED_EVENT, |charge| {
            charge.insert("currency".into(), json!("kwd"));
            charge.insert("amount_refunded".into(), json!(5120));
        });
        assert!(matches!(
            reverse(&dinar, false).amount,
            RefundAmount::Cumulative { amount, .. } if amount.to_string() == "5.120"
        ));
    }

    #[test]
    fn unusable_charges_are_ignored() {
        let cases: [(&str, Value, &str); 8] = [
            (
                "payment_intent",
                json!(null),
                "charge has no payment_intent, so it cannot belong to a Checkout purchase",
            ),
            (
                "amount_refunded",
                json!(0),
                "amount_refunded must be greater than zero",
            ),
            (
                "amount_refunded",
                json!(-5),
                "amount_refunded must be greater than zero",
            ),
            (
                "amount_refunded",
                json!(null),
                "charge has no integer amount_refunded",
            ),
            (
                "amount_refunded",
                json!("500"),
                "charge has no integer amount_refunded",
            ),
            (
                "currency",
                json!("xyz"),
                "currency xyz is not an ISO 4217 code",
            ),
            ("currency", json!(null), "charge has no currency"),
            ("id", json!(null), "charge has no id"),
        ];
        for (field, value, expected) in cases {
            let body = object_with(CHARGE_REFUNDED_EVENT, |charge| {
                charge.insert(field.into(), value);
            });
            assert_eq!(reason(&body, true), expected, "{field}");
        }
        let no_object =
            CHARGE_REFUNDED_EVENT.replace("\"data\":{\"object\":", "\"data\":{\"thing\":");
        assert_ne!(no_object, CHARGE_REFUNDED_EVENT);
        assert_eq!(reason(&no_object, true), "event has no data.object");
    }

    #[test]
    fn test_mode_reversals_count_only_when_the_contest_accepts_test_events() {
        for base in [
            CHARGE_REFUNDED_EVENT,
            DISPUTE_CREATED_EVENT,
            &dispute_closed_with("won"),
        ] {
            let mut event: Value = serde_json::from_str(base).unwrap();
            event["livemode"] = json!(false);
            let body = event.to_string();
            assert!(
                reason(&body, false).starts_with("test-mode event"),
                "{base}"
            );
            assert_eq!(
                reverse(&body, true).target,
                ReversalTarget::PaymentIntent(INTENT.into())
            );
        }
    }

    #[test]
    fn dispute_created_is_a_chargeback_named_by_the_dispute() {
        assert_eq!(
            reverse(DISPUTE_CREATED_EVENT, false),
            ProviderReversal {
                target: ReversalTarget::PaymentIntent(INTENT.into()),
                refund_id: DISPUTE_ID.into(),
                kind: ReversalKind::Chargeback,
                amount: RefundAmount::Full,
                reason: Some("dispute opened: fraudulent".into()),
            }
        );
        // An inquiry is taken as seriously: it may escalate without another `created` event.
        let inquiry = object_with(DISPUTE_CREATED_EVENT, |dispute| {
            dispute.insert("status".into(), json!("warning_needs_response"));
            dispute.remove("reason");
        });
        let reversal = reverse(&inquiry, false);
        assert_eq!(reversal.kind, ReversalKind::Chargeback);
        assert_eq!(reversal.reason.as_deref(), Some("dispute opened"));
    }

    #[test]
    fn a_won_dispute_reinstates_the_chargeback_it_names() {
        for status in ["won", "warning_closed"] {
            let reversal = reverse(&dispute_closed_with(status), false);
            assert_eq!(
                reversal,
                ProviderReversal {
                    target: ReversalTarget::PaymentIntent(INTENT.into()),
                    refund_id: DISPUTE_ID.into(),
                    kind: ReversalKind::ChargebackWon,
                    amount: RefundAmount::Full,
                    reason: Some(format!("dispute closed: {status}")),
                }
            );
        }
    }

    #[test]
    fn other_dispute_outcomes_leave_the_points_taken() {
        for status in ["lost", "prevented", "under_review"] {
            assert_eq!(
                reason(&dispute_closed_with(status), true),
                format!("dispute closed with status {status}: the points stay taken")
            );
        }
        let no_status = object_with(&dispute_closed_with("won"), |dispute| {
            dispute.remove("status");
        });
        assert_eq!(reason(&no_status, true), "dispute has no status");
    }

    #[test]
    fn disputes_without_id_or_payment_intent_are_ignored() {
        for base in [DISPUTE_CREATED_EVENT.to_owned(), dispute_closed_with("won")] {
            let no_intent = object_with(&base, |dispute| {
                dispute.remove("payment_intent");
            });
            assert_eq!(
                reason(&no_intent, true),
                "dispute has no payment_intent, so it cannot belong to a Checkout purchase"
            );
            let no_id = object_with(&base, |dispute| {
                dispute.insert("id".into(), json!(""));
            });
            assert_eq!(reason(&no_id, true), "dispute has no id");
        }
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

        #[test]
        fn arbitrary_charges_and_disputes_never_panic(
            object in fuzz::body(&[
                "id", "payment_intent", "amount_refunded", "currency", "status", "reason",
                "object",
            ]),
            event_type in proptest::sample::select(vec![
                CHECKOUT_COMPLETED, CHARGE_REFUNDED, DISPUTE_CREATED, DISPUTE_CLOSED,
            ]),
            livemode in any::<bool>(),
            accept_test_events in any::<bool>(),
        ) {
            // The arbitrary bytes go where the event's object goes, when they are JSON.
            let object: Value = serde_json::from_slice(&object).unwrap_or(Value::Null);
            let body = json!({
                "type": event_type, "livemode": livemode, "data": {"object": object},
            })
            .to_string();
            let _ = parse(&HeaderMap::new(), body.as_bytes(), accept_test_events);
        }
    }
}
