//! Shopify order webhooks: `X-Shopify-Hmac-Sha256` verification, `orders/paid` orders, and the
//! money going back: `refunds/create` refunds and `orders/cancelled` cancellations.
//!
//! Shopify signs the raw body with HMAC-SHA256 keyed with the app's (or the store's webhook)
//! secret and sends the digest base64-encoded. The order payload is the REST Admin API `Order`
//! resource: `total_price` is a decimal string in the shop currency `currency` (the buyer's
//! `presentment_currency` applies to the `*_set.presentment_money` fields only), and `id` is a
//! 64-bit integer above 2^53, so it is read as the number's text, never as a float.
//!
//! A `refunds/create` payload is the REST Admin API `Refund` resource (shopify.dev, "Refund",
//! REST Admin API 2025-01 and later): `id`, `order_id`, `note`, and `transactions`, each an
//! order `Transaction` with `kind` (`refund`, `sale`, …), `status` (`success`, `pending`,
//! `failure`, `error`), `amount` (a decimal string) and `currency`. Only successful refund
//! transactions are money that went back. Shopify documents refund transaction amounts in the
//! order's presentment currency, so a refund of a multi-currency order may be in another
//! currency than the order's shop-currency total; the worker then records it as a currency
//! mismatch rather than guessing a rate. An `orders/cancelled` payload is the `Order` resource.
//!
//! Shopify retries a failed delivery 8 times over 4 hours and then deletes the subscription, so
//! every authentic delivery is answered `200`: what changes nothing is [`Verdict::Ignored`].

use axum::http::HeaderMap;
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use shared::{
    event::{RefundAmount, ReversalKind, ReversalTarget},
    ids::OrderId,
    money::{parse_decimal, Currency, Money},
};

use super::{
    first_email, integer_text, json_object, percent_decode, quote, reason_text, referral_code,
    valid_referral_code, ProviderPurchase, ProviderReversal, Verdict,
};

pub use crate::auth::shopify::{is_present, verify, SIGNATURE_HEADER};

/// The header naming the webhook topic (`orders/paid`, `orders/create`, …).
pub const TOPIC_HEADER: &str = "x-shopify-topic";

/// The only topic that awards: the order's payment has been captured.
pub const AWARDING_TOPIC: &str = "orders/paid";

/// A refund was created on an order: the successful refund transactions are money returned.
pub const REFUND_TOPIC: &str = "refunds/create";

/// An order was cancelled: a cancellation is a full refund.
pub const CANCELLED_TOPIC: &str = "orders/cancelled";

/// The refund id of a cancellation (a cancellation happens once per order).
pub const CANCELLATION_REFUND_ID: &str = "cancelled";

/// Note attributes (cart attributes) that carry a referral code.
const REFERRAL_ATTRIBUTES: [&str; 2] = ["ref", "referralCode"];

/// What an authentic Shopify delivery means.
///
/// `X-Shopify-Topic: orders/paid` awards; `refunds/create` takes back the refund's successful
/// refund transactions; `orders/cancelled` is a full refund of the order; any other topic is
/// ignored. Without a topic header (a store's own script replaying an order, say) the order
/// awards only when its `financial_status` is `paid`, so an unpaid order can never award by
/// dropping the header. Test orders and test refunds (`test: true`) count only when
/// `accept_test_events` is set.
pub fn parse(headers: &HeaderMap, body: &[u8], accept_test_events: bool) -> Verdict {
    let topic = match headers.get(TOPIC_HEADER).map(|value| value.to_str()) {
        None => None,
        Some(Ok(topic)) => Some(topic.trim()),
        Some(Err(_)) => return Verdict::ignored("the X-Shopify-Topic header is not readable"),
    };
    match topic {
        None | Some(AWARDING_TOPIC) => {}
        Some(REFUND_TOPIC) => {
            return match json_object(body) {
                Ok(object) => refund(&object, accept_test_events),
                Err(verdict) => verdict,
            }
        }
        Some(CANCELLED_TOPIC) => {
            return match json_object(body) {
                Ok(order) => cancellation(&order, accept_test_events),
                Err(verdict) => verdict,
            }
        }
        Some(topic) => return Verdict::ignored(format!("topic {} does not award", quote(topic))),
    }
    let order = match json_object(body) {
        Ok(order) => order,
        Err(verdict) => return verdict,
    };
    if topic.is_none() && order.get("financial_status").and_then(Value::as_str) != Some("paid") {
        return Verdict::ignored("no X-Shopify-Topic header and financial_status is not paid");
    }
    if order.get("test") == Some(&Value::Bool(true)) && !accept_test_events {
        return Verdict::ignored("test order, and the contest does not accept test events");
    }
    match purchase(&order) {
        Ok(purchase) => Verdict::Award(purchase),
        Err(reason) => Verdict::Ignored(reason),
    }
}

/// A `refunds/create` refund: a partial refund of order `order_id`, named by the refund's `id`
/// (so a redelivery dedupes and a second refund of the same amount is another refund), of the
/// sum of its transactions with `kind: refund` and `status: success`, in their currency. A
/// refund with no such transaction (only restocking, or a refund still pending at the gateway)
/// returned no money yet and is ignored.
fn refund(refund: &Map<String, Value>, accept_test_events: bool) -> Verdict {
    let Some(order_id) = refund
        .get("order_id")
        .and_then(integer_text)
        .and_then(|id| OrderId::parse(&id).ok())
    else {
        return Verdict::ignored("refund has no integer order_id");
    };
    let Some(refund_id) = refund.get("id").and_then(integer_text) else {
        return Verdict::ignored("refund has no integer id");
    };
    let transactions = refund
        .get("transactions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let successful: Vec<&Value> = transactions
        .iter()
        .filter(|transaction| {
            transaction.get("kind").and_then(Value::as_str) == Some("refund")
                && transaction.get("status").and_then(Value::as_str) == Some("success")
        })
        .collect();
    if successful.is_empty() {
        return Verdict::ignored("refund has no successful refund transaction");
    }
    let is_test = successful
        .iter()
        .any(|transaction| transaction.get("test") == Some(&Value::Bool(true)));
    if is_test && !accept_test_events {
        return Verdict::ignored("test refund, and the contest does not accept test events");
    }
    let (amount, currency) = match refunded_total(&successful) {
        Ok(total) => total,
        Err(reason) => return Verdict::Ignored(reason),
    };
    Verdict::Reverse(ProviderReversal {
        target: ReversalTarget::OrderId(order_id),
        refund_id,
        kind: ReversalKind::Refund,
        amount: RefundAmount::Partial { amount, currency },
        reason: refund
            .get("note")
            .and_then(Value::as_str)
            .and_then(reason_text),
    })
}

/// The exact sum of refund transactions and their one currency (`None` when they name none:
/// the purchase's own), or why there is none.
fn refunded_total(transactions: &[&Value]) -> Result<(Decimal, Option<Currency>), String> {
    let mut total = Decimal::ZERO;
    let mut currencies: Vec<Option<Currency>> = Vec::new();
    for transaction in transactions {
        let amount = match transaction.get("amount") {
            Some(Value::String(text)) => parse_decimal(text).ok(),
            Some(Value::Number(number)) => parse_decimal(&number.to_string()).ok(),
            _ => None,
        }
        .ok_or("refund transaction amount is not a decimal number")?;
        let currency = match transaction.get("currency") {
            None | Some(Value::Null) => None,
            Some(Value::String(code)) => Some(
                Currency::parse(code)
                    .map_err(|_| format!("currency {} is not an ISO 4217 code", quote(code)))?,
            ),
            Some(_) => return Err("refund transaction currency is not a string".into()),
        };
        if !currencies.contains(&currency) {
            currencies.push(currency);
        }
        total = total
            .checked_add(amount)
            .ok_or("refund transaction amounts are out of range")?;
    }
    if currencies.len() > 1 {
        return Err("refund transactions are in several currencies".into());
    }
    if total <= Decimal::ZERO {
        return Err("refunded amount must be greater than zero".into());
    }
    if total > shared::money::MAX_AMOUNT {
        return Err("refunded amount must be at most 1000000000000".into());
    }
    Ok((total, currencies.into_iter().next().flatten()))
}

/// An `orders/cancelled` order: a full refund of order `id`, refund id
/// [`CANCELLATION_REFUND_ID`], with Shopify's `cancel_reason` for the ledger. (A cancellation
/// after partial refunds takes back the rest: the worker raises the refunded total to the whole
/// purchase, never adds to it.)
fn cancellation(order: &Map<String, Value>, accept_test_events: bool) -> Verdict {
    let Some(order_id) = order
        .get("id")
        .and_then(integer_text)
        .and_then(|id| OrderId::parse(&id).ok())
    else {
        return Verdict::ignored("order has no integer id");
    };
    if order.get("test") == Some(&Value::Bool(true)) && !accept_test_events {
        return Verdict::ignored("test order, and the contest does not accept test events");
    }
    let reason = match order
        .get("cancel_reason")
        .and_then(Value::as_str)
        .and_then(reason_text)
    {
        Some(why) => format!("order cancelled: {why}"),
        None => "order cancelled".to_owned(),
    };
    Verdict::Reverse(ProviderReversal {
        target: ReversalTarget::OrderId(order_id),
        refund_id: CANCELLATION_REFUND_ID.to_owned(),
        kind: ReversalKind::Refund,
        amount: RefundAmount::Full,
        reason: reason_text(&reason),
    })
}

/// The purchase an order describes, or why it describes none.
fn purchase(order: &Map<String, Value>) -> Result<ProviderPurchase, String> {
    let order_id = order
        .get("id")
        .and_then(integer_text)
        .and_then(|id| OrderId::parse(&id).ok())
        .ok_or("order has no integer id")?;
    let email = first_email([
        order.get("email"),
        order.get("contact_email"),
        order
            .get("customer")
            .and_then(|customer| customer.get("email")),
    ])
    .ok_or("order has no buyer email")?;
    let currency = match order.get("currency").and_then(Value::as_str) {
        Some(code) => Currency::parse(code)
            .map_err(|_| format!("currency {} is not an ISO 4217 code", quote(code)))?,
        None => return Err("order has no currency".into()),
    };
    let total = match order.get("total_price") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Number(number)) => number.to_string(),
        _ => return Err("order has no total_price".into()),
    };
    let amount = parse_decimal(&total).map_err(|_| "total_price is not a decimal number")?;
    let money = Money::new(amount, currency).map_err(|error| format!("total_price {error}"))?;
    Ok(ProviderPurchase {
        order_id,
        email,
        money,
        referral_codes: order_referral_codes(order),
        payment_intent: None,
    })
}

/// The order's candidate referral codes, in priority order: every discount code, then
/// `note_attributes` entries named `ref` or `referralCode`, then `ref=` in the query of
/// `landing_site`. All are passed on because only the worker knows which one belongs to an entry:
/// an ordinary promotion code (`SUMMER10`) must not hide the referral link the buyer arrived by.
fn order_referral_codes(order: &Map<String, Value>) -> Vec<String> {
    let entries = |key: &str| {
        order
            .get(key)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    };
    let discounts = entries("discount_codes")
        .iter()
        .filter_map(|discount| referral_code(discount.get("code")));
    let attributes = entries("note_attributes")
        .iter()
        .filter(|attribute| {
            attribute
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|name| REFERRAL_ATTRIBUTES.contains(&name.trim()))
        })
        .filter_map(|attribute| referral_code(attribute.get("value")));
    let landing = order
        .get("landing_site")
        .and_then(Value::as_str)
        .and_then(landing_site_ref);
    let mut codes: Vec<String> = Vec::new();
    for code in discounts.chain(attributes).chain(landing) {
        if !codes.contains(&code) && codes.len() < super::MAX_REFERRAL_CANDIDATES {
            codes.push(code);
        }
    }
    codes
}

/// The `ref` query parameter of a landing path or URL (`/?ref=ALICE1&utm_source=ig`).
fn landing_site_ref(landing_site: &str) -> Option<String> {
    let (_, query) = landing_site.split_once('?')?;
    let query = query.split('#').next().unwrap_or_default();
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(key, _)| *key == "ref")
        .find_map(|(_, value)| valid_referral_code(percent_decode(value)?.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use base64::{engine::general_purpose::STANDARD, Engine};
    use chrono::Utc;
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::error::ApiError;
    use crate::providers::fuzz;

    const SECRET: &str = "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";

    /// An `orders/paid` payload modelled on Shopify's documented sample order (trimmed).
    const ORDER: &str = r##"{"id":820982911946154508,"admin_graphql_api_id":"gid://shopify/Order/820982911946154508","browser_ip":"203.0.113.7","buyer_accepts_marketing":true,"cancel_reason":null,"cancelled_at":null,"confirmation_number":"XPAV284CT","confirmed":true,"contact_email":"jane.buyer@example.com","created_at":"2024-06-26T12:00:00-04:00","currency":"USD","current_total_price":"79.99","customer_locale":"en","discount_codes":[{"code":"ALICE-2024","amount":"10.00","type":"fixed_amount"}],"email":"Jane.Buyer@Example.com","financial_status":"paid","landing_site":"/?ref=BOB7&utm_source=ig","name":"#1001","note":null,"note_attributes":[{"name":"ref","value":"CAROL9"}],"order_number":1001,"presentment_currency":"EUR","subtotal_price":"74.99","tags":"","test":false,"total_price":"79.99","total_price_set":{"shop_money":{"amount":"79.99","currency_code":"USD"},"presentment_money":{"amount":"73.50","currency_code":"EUR"}},"total_tax":"5.00","customer":{"id":115310627314723954,"email":"jane.buyer@example.com","first_name":"Jane","last_name":"Buyer"},"line_items":[{"id":866550311766439020,"price":"84.99","quantity":1,"sku":"TEE-BLK-M","title":"Blitz Tee"}]}"##;

    /// base64(HMAC-SHA256(ORDER, SECRET)), computed independently with Python's `hmac` module.
    const ORDER_SIGNATURE: &str = "Iqejl/1RXPazJdVXB5OO90HDg8PT+JGzZ0HjpeibIi8=";

    /// A `refunds/create` payload modelled on the REST Admin API `Refund` resource (trimmed): two
    /// successful refund transactions (30.00 and 10.00) and a failed one (99.00).
    const REFUND: &str = r##"{"id":890088186047892319,"order_id":820982911946154508,"created_at":"2024-06-27T10:00:00-04:00","note":"Item damaged in transit","user_id":548380009,"processed_at":"2024-06-27T10:00:00-04:00","restock":false,"duties":[],"admin_graphql_api_id":"gid://shopify/Refund/890088186047892319","refund_line_items":[{"id":487817672276298627,"quantity":1,"line_item_id":866550311766439020,"restock_type":"no_restock","subtotal":"40.00","total_tax":"0.00"}],"transactions":[{"id":245135271498392012,"order_id":820982911946154508,"kind":"refund","gateway":"bogus","status":"success","message":null,"created_at":"2024-06-27T10:00:00-04:00","test":false,"authorization":null,"parent_id":389404469,"amount":"30.00","currency":"USD"},{"id":245135271498392013,"order_id":820982911946154508,"kind":"refund","gateway":"gift_card","status":"success","message":null,"created_at":"2024-06-27T10:00:00-04:00","test":false,"authorization":null,"parent_id":389404470,"amount":"10.00","currency":"USD"},{"id":245135271498392014,"order_id":820982911946154508,"kind":"refund","gateway":"bogus","status":"failure","message":"declined","created_at":"2024-06-27T10:00:00-04:00","test":false,"authorization":null,"parent_id":389404469,"amount":"99.00","currency":"USD"}],"order_adjustments":[]}"##;

    /// base64(HMAC-SHA256(REFUND, SECRET)), computed independently with Python's `hmac` module.
    const REFUND_SIGNATURE: &str = "j3wo31L+OQB/bDHKH8EEDFADW6+1MmBWlUVhFh8i12A=";

    /// An `orders/cancelled` payload: the sample order, cancelled (trimmed).
    const CANCELLED: &str = r##"{"id":820982911946154508,"admin_graphql_api_id":"gid://shopify/Order/820982911946154508","cancel_reason":"customer","cancelled_at":"2024-06-28T09:00:00-04:00","contact_email":"jane.buyer@example.com","currency":"USD","email":"Jane.Buyer@Example.com","financial_status":"refunded","name":"#1001","order_number":1001,"test":false,"total_price":"79.99"}"##;

    /// base64(HMAC-SHA256(CANCELLED, SECRET)), computed independently with Python's `hmac` module.
    const CANCELLED_SIGNATURE: &str = "g4mBD3/0e4HZG7+2qIjvbT7GSRGQo6oMReUkUjxT/Vc=";

    fn headers(signature: Option<&str>, topic: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(signature) = signature {
            headers.insert(SIGNATURE_HEADER, signature.parse().unwrap());
        }
        if let Some(topic) = topic {
            headers.insert(TOPIC_HEADER, topic.parse().unwrap());
        }
        headers
    }

    fn paid(body: &str) -> Verdict {
        parse(&headers(None, Some("orders/paid")), body.as_bytes(), false)
    }

    /// The sample order with `change` applied to its JSON.
    fn order_with(change: impl FnOnce(&mut Map<String, Value>)) -> String {
        let mut order: Map<String, Value> = serde_json::from_str(ORDER).unwrap();
        change(&mut order);
        Value::Object(order).to_string()
    }

    fn award(verdict: Verdict) -> ProviderPurchase {
        match verdict {
            Verdict::Award(purchase) => purchase,
            other => panic!("expected an award, got {other:?}"),
        }
    }

    fn reverse(verdict: Verdict) -> ProviderReversal {
        match verdict {
            Verdict::Reverse(reversal) => reversal,
            other => panic!("expected a reversal, got {other:?}"),
        }
    }

    fn reason(verdict: Verdict) -> String {
        match verdict {
            Verdict::Ignored(reason) => reason,
            other => panic!("expected ignored, got {other:?}"),
        }
    }

    fn refunded(body: &str, accept_test_events: bool) -> Verdict {
        let headers = headers(None, Some(REFUND_TOPIC));
        parse(&headers, body.as_bytes(), accept_test_events)
    }

    fn cancelled(body: &str, accept_test_events: bool) -> Verdict {
        let headers = headers(None, Some(CANCELLED_TOPIC));
        parse(&headers, body.as_bytes(), accept_test_events)
    }

    /// The sample refund with `change` applied to its JSON.
    fn refund_with(change: impl FnOnce(&mut Map<String, Value>)) -> String {
        let mut refund: Map<String, Value> = serde_json::from_str(REFUND).unwrap();
        change(&mut refund);
        Value::Object(refund).to_string()
    }

    /// The sample refund with the given transactions.
    fn refund_of(transactions: Value) -> String {
        refund_with(|refund| {
            refund.insert("transactions".into(), transactions);
        })
    }

    #[test]
    fn valid_signature_verifies() {
        let headers = headers(Some(ORDER_SIGNATURE), Some("orders/paid"));
        assert!(verify(&headers, ORDER.as_bytes(), Some(SECRET), Utc::now()).is_ok());
    }

    #[test]
    fn wrong_secret_is_unauthorized() {
        let headers = headers(Some(ORDER_SIGNATURE), Some("orders/paid"));
        let result = verify(&headers, ORDER.as_bytes(), Some("shpss_other"), Utc::now());
        assert!(matches!(result, Err(ApiError::Unauthorized(_))));
    }

    #[test]
    fn missing_secret_is_unauthorized() {
        let headers = headers(Some(ORDER_SIGNATURE), Some("orders/paid"));
        for secret in [None, Some("")] {
            let result = verify(&headers, ORDER.as_bytes(), secret, Utc::now());
            assert!(
                matches!(result, Err(ApiError::Unauthorized(_))),
                "{secret:?}"
            );
        }
    }

    #[test]
    fn missing_or_malformed_signature_is_unauthorized() {
        let short = STANDARD.encode([0u8; 16]);
        for signature in [None, Some(""), Some("not base64!"), Some(short.as_str())] {
            let headers = headers(signature, Some("orders/paid"));
            let result = verify(&headers, ORDER.as_bytes(), Some(SECRET), Utc::now());
            assert!(
                matches!(result, Err(ApiError::Unauthorized(_))),
                "{signature:?}"
            );
        }
    }

    #[test]
    fn tampered_body_is_unauthorized() {
        let tampered = ORDER.replace("\"total_price\":\"79.99\"", "\"total_price\":\"7999\"");
        assert_ne!(tampered, ORDER);
        let headers = headers(Some(ORDER_SIGNATURE), Some("orders/paid"));
        let result = verify(&headers, tampered.as_bytes(), Some(SECRET), Utc::now());
        assert!(matches!(result, Err(ApiError::Unauthorized(_))));
    }

    #[test]
    fn paid_order_awards_the_buyer_with_the_exact_order_id() {
        let purchase = award(paid(ORDER));
        // 820982911946154508 > 2^53: a float would have made it ...504.
        assert_eq!(purchase.order_id.as_str(), "820982911946154508");
        assert_eq!(purchase.email.as_str(), "jane.buyer@example.com");
        assert_eq!(purchase.money.amount.to_string(), "79.99");
        assert_eq!(purchase.money.currency.as_str(), "USD");
        assert_eq!(
            purchase.referral_codes.first().map(String::as_str),
            Some("ALICE-2024")
        );
    }

    #[test]
    fn amount_is_the_shop_currency_total_not_the_presentment_one() {
        let purchase = award(paid(ORDER));
        assert_eq!(purchase.money.currency, Currency::USD);
    }

    #[test]
    fn refund_and_cancellation_signatures_verify() {
        for (body, signature, topic) in [
            (REFUND, REFUND_SIGNATURE, REFUND_TOPIC),
            (CANCELLED, CANCELLED_SIGNATURE, CANCELLED_TOPIC),
        ] {
            let signed = headers(Some(signature), Some(topic));
            assert!(verify(&signed, body.as_bytes(), Some(SECRET), Utc::now()).is_ok());
            let tampered = body.replace("820982911946154508", "820982911946154509");
            assert_ne!(tampered, body);
            assert!(matches!(
                verify(&signed, tampered.as_bytes(), Some(SECRET), Utc::now()),
                Err(ApiError::Unauthorized(_))
            ));
        }
    }

    #[test]
    fn refund_takes_back_the_sum_of_its_successful_refund_transactions() {
        let reversal = reverse(refunded(REFUND, false));
        assert_eq!(
            reversal,
            ProviderReversal {
                // 64-bit ids kept digit for digit.
                target: ReversalTarget::OrderId(OrderId::parse("820982911946154508").unwrap()),
                refund_id: "890088186047892319".into(),
                kind: ReversalKind::Refund,
                // 30.00 + 10.00; the failed 99.00 does not count.
                amount: RefundAmount::Partial {
                    amount: Decimal::new(4000, 2),
                    currency: Some(Currency::USD),
                },
                reason: Some("Item damaged in transit".into()),
            }
        );
    }

    #[test]
    fn refund_amounts_are_summed_exactly_in_their_currency() {
        let body = refund_of(json!([
            {"kind": "refund", "status": "success", "amount": "0.10", "currency": "eur"},
            {"kind": "refund", "status": "success", "amount": 0.2, "currency": "EUR"},
            {"kind": "refund", "status": "pending", "amount": "50.00", "currency": "EUR"},
        ]));
        let amount = reverse(refunded(&body, false)).amount;
        assert_eq!(
            amount,
            RefundAmount::Partial {
                amount: Decimal::new(30, 2),
                currency: Some(Currency::parse("EUR").unwrap()),
            }
        );
        // No currency on the transactions: the purchase's own.
        let bare = refund_of(json!([{"kind": "refund", "status": "success", "amount": "5"}]));
        assert_eq!(
            reverse(refunded(&bare, false)).amount,
            RefundAmount::Partial {
                amount: Decimal::from(5),
                currency: None
            }
        );
    }

    #[test]
    fn refund_without_a_successful_refund_transaction_is_ignored() {
        for transactions in [
            json!([]),
            json!(null),
            json!([{"kind": "refund", "status": "pending", "amount": "5.00", "currency": "USD"}]),
            json!([{"kind": "refund", "status": "failure", "amount": "5.00", "currency": "USD"}]),
            json!([{"kind": "sale", "status": "success", "amount": "5.00", "currency": "USD"}]),
            json!(["refund"]),
        ] {
            let body = refund_of(transactions.clone());
            assert_eq!(
                reason(refunded(&body, true)),
                "refund has no successful refund transaction",
                "{transactions}"
            );
        }
    }

    #[test]
    fn refunds_with_unusable_transactions_are_ignored() {
        let cases = [
            (
                json!([{"kind": "refund", "status": "success", "amount": "five", "currency": "USD"}]),
                "refund transaction amount is not a decimal number",
            ),
            (
                json!([{"kind": "refund", "status": "success", "currency": "USD"}]),
                "refund transaction amount is not a decimal number",
            ),
            (
                json!([{"kind": "refund", "status": "success", "amount": "5", "currency": "XYZ"}]),
                "currency XYZ is not an ISO 4217 code",
            ),
            (
                json!([{"kind": "refund", "status": "success", "amount": "5", "currency": 840}]),
                "refund transaction currency is not a string",
            ),
            (
                json!([
                    {"kind": "refund", "status": "success", "amount": "5", "currency": "USD"},
                    {"kind": "refund", "status": "success", "amount": "5", "currency": "EUR"},
                ]),
                "refund transactions are in several currencies",
            ),
            (
                json!([{"kind": "refund", "status": "success", "amount": "0.00", "currency": "USD"}]),
                "refunded amount must be greater than zero",
            ),
            (
                json!([{"kind": "refund", "status": "success", "amount": "-3", "currency": "USD"}]),
                "refunded amount must be greater than zero",
            ),
            (
                json!([{"kind": "refund", "status": "success", "amount": "1000000000000.01", "currency": "USD"}]),
                "refunded amount must be at most 1000000000000",
            ),
            (
                json!([
                    {"kind": "refund", "status": "success", "amount": "79228162514264337593543950335"},
                    {"kind": "refund", "status": "success", "amount": "79228162514264337593543950335"},
                ]),
                "refund transaction amount is not a decimal number",
            ),
        ];
        for (transactions, expected) in cases {
            let body = refund_of(transactions.clone());
            assert_eq!(reason(refunded(&body, true)), expected, "{transactions}");
        }
    }

    #[test]
    fn refund_without_integer_ids_is_ignored() {
        for (field, expected) in [
            ("order_id", "refund has no integer order_id"),
            ("id", "refund has no integer id"),
        ] {
            for value in [json!(null), json!("gid://shopify/Refund/1"), json!(-1)] {
                let body = refund_with(|refund| {
                    refund.insert(field.into(), value);
                });
                assert_eq!(reason(refunded(&body, true)), expected);
            }
        }
        assert_eq!(reason(refunded("[]", true)), "body is not a JSON object");
    }

    #[test]
    fn test_refunds_count_only_when_the_contest_accepts_test_events() {
        let body = refund_of(
            json!([{"kind": "refund", "status": "success", "amount": "5", "currency": "USD", "test": true}]),
        );
        assert!(reason(refunded(&body, false)).starts_with("test refund"));
        assert_eq!(reverse(refunded(&body, true)).kind, ReversalKind::Refund);
    }

    #[test]
    fn a_refund_without_a_note_has_no_reason() {
        let body = refund_with(|refund| {
            refund.insert("note".into(), json!("  "));
        });
        assert_eq!(reverse(refunded(&body, false)).reason, None);
    }

    #[test]
    fn cancellation_is_a_full_refund_of_the_order() {
        let reversal = reverse(cancelled(CANCELLED, false));
        assert_eq!(
            reversal,
            ProviderReversal {
                target: ReversalTarget::OrderId(OrderId::parse("820982911946154508").unwrap()),
                refund_id: CANCELLATION_REFUND_ID.into(),
                kind: ReversalKind::Refund,
                amount: RefundAmount::Full,
                reason: Some("order cancelled: customer".into()),
            }
        );
        let no_reason =
            CANCELLED.replace("\"cancel_reason\":\"customer\"", "\"cancel_reason\":null");
        assert_ne!(no_reason, CANCELLED);
        assert_eq!(
            reverse(cancelled(&no_reason, false)).reason.as_deref(),
            Some("order cancelled")
        );
    }

    #[test]
    fn cancellations_without_an_id_or_of_test_orders_are_ignored() {
        let no_id = CANCELLED.replace("\"id\":820982911946154508,", "");
        assert_ne!(no_id, CANCELLED);
        assert_eq!(reason(cancelled(&no_id, true)), "order has no integer id");
        let test_order = CANCELLED.replace("\"test\":false", "\"test\":true");
        assert_ne!(test_order, CANCELLED);
        assert!(reason(cancelled(&test_order, false)).starts_with("test order"));
        assert_eq!(
            reverse(cancelled(&test_order, true)).amount,
            RefundAmount::Full
        );
        assert_eq!(reason(cancelled("nope", true)), "body is not valid JSON");
    }

    #[test]
    fn a_refund_payload_under_the_paid_topic_awards_nothing() {
        // A refund has no buyer email or total: under `orders/paid` it is not mistaken for a
        // purchase, and a paid order under `refunds/create` is not mistaken for a refund.
        let verdict = parse(
            &headers(None, Some(AWARDING_TOPIC)),
            REFUND.as_bytes(),
            true,
        );
        assert!(matches!(verdict, Verdict::Ignored(_)), "{verdict:?}");
        assert_eq!(
            reason(refunded(ORDER, true)),
            "refund has no integer order_id"
        );
    }

    #[test]
    fn other_topics_are_ignored() {
        for topic in [
            "orders/create",
            "orders/updated",
            "orders/fulfilled",
            "refunds/update",
        ] {
            let verdict = parse(&headers(None, Some(topic)), ORDER.as_bytes(), true);
            assert_eq!(reason(verdict), format!("topic {topic} does not award"));
        }
    }

    #[test]
    fn missing_topic_awards_only_a_paid_order() {
        assert!(matches!(
            parse(&HeaderMap::new(), ORDER.as_bytes(), false),
            Verdict::Award(_)
        ));
        let pending = order_with(|order| {
            order.insert("financial_status".into(), json!("pending"));
        });
        let verdict = parse(&HeaderMap::new(), pending.as_bytes(), false);
        assert!(reason(verdict).contains("financial_status is not paid"));
    }

    #[test]
    fn unreadable_topic_is_ignored() {
        let mut headers = HeaderMap::new();
        headers.insert(
            TOPIC_HEADER,
            HeaderValue::from_bytes(b"orders/\xffpaid").unwrap(),
        );
        assert!(reason(parse(&headers, ORDER.as_bytes(), true)).contains("not readable"));
    }

    #[test]
    fn test_orders_award_only_when_the_contest_accepts_them() {
        let test_order = order_with(|order| {
            order.insert("test".into(), json!(true));
        });
        let headers = headers(None, Some("orders/paid"));
        assert!(reason(parse(&headers, test_order.as_bytes(), false)).contains("test order"));
        assert!(matches!(
            parse(&headers, test_order.as_bytes(), true),
            Verdict::Award(_)
        ));
    }

    #[test]
    fn buyer_email_falls_back_to_contact_then_customer_email() {
        let contact_only = order_with(|order| {
            order.insert("email".into(), json!(""));
            order.insert("contact_email".into(), json!("Contact@Example.com"));
        });
        assert_eq!(
            award(paid(&contact_only)).email.as_str(),
            "contact@example.com"
        );
        let customer_only = order_with(|order| {
            order.remove("email");
            order.insert("contact_email".into(), json!(null));
            order["customer"]["email"] = json!("customer@example.com");
        });
        assert_eq!(
            award(paid(&customer_only)).email.as_str(),
            "customer@example.com"
        );
    }

    #[test]
    fn order_without_buyer_email_is_ignored() {
        let anonymous = order_with(|order| {
            order.remove("email");
            order.remove("contact_email");
            order.remove("customer");
        });
        assert_eq!(reason(paid(&anonymous)), "order has no buyer email");
    }

    #[test]
    fn unusable_amounts_and_currencies_are_ignored() {
        let cases: [(&str, Value, &str); 5] = [
            (
                "total_price",
                json!("0.00"),
                "total_price must be greater than zero",
            ),
            (
                "total_price",
                json!("-5.00"),
                "total_price must be greater than zero",
            ),
            (
                "total_price",
                json!("free"),
                "total_price is not a decimal number",
            ),
            (
                "currency",
                json!("XYZ"),
                "currency XYZ is not an ISO 4217 code",
            ),
            ("total_price", json!(null), "order has no total_price"),
        ];
        for (field, value, expected) in cases {
            let order = order_with(|order| {
                order.insert(field.into(), value);
            });
            assert_eq!(reason(paid(&order)), expected, "{field}");
        }
        let no_currency = order_with(|order| {
            order.remove("currency");
        });
        assert_eq!(reason(paid(&no_currency)), "order has no currency");
    }

    #[test]
    fn order_without_integer_id_is_ignored() {
        for id in [
            json!(null),
            json!("gid://shopify/Order/1"),
            json!(1.5),
            json!(-3),
        ] {
            let order = order_with(|order| {
                order.insert("id".into(), id);
            });
            assert_eq!(reason(paid(&order)), "order has no integer id");
        }
    }

    #[test]
    fn bodies_that_are_not_json_objects_are_ignored() {
        assert_eq!(reason(paid("not json")), "body is not valid JSON");
        assert_eq!(reason(paid("[1,2]")), "body is not a JSON object");
        assert_eq!(reason(paid("")), "body is not valid JSON");
    }

    #[test]
    fn referral_code_falls_back_to_note_attributes_then_landing_site() {
        let no_discount = order_with(|order| {
            order.insert("discount_codes".into(), json!([]));
        });
        assert_eq!(
            award(paid(&no_discount))
                .referral_codes
                .first()
                .map(String::as_str),
            Some("CAROL9")
        );
        let named_referral_code = order_with(|order| {
            order.insert("discount_codes".into(), json!([]));
            order.insert(
                "note_attributes".into(),
                json!([{"name": "gift", "value": "yes"}, {"name": "referralCode", "value": "DAN3"}]),
            );
        });
        assert_eq!(
            award(paid(&named_referral_code))
                .referral_codes
                .first()
                .map(String::as_str),
            Some("DAN3")
        );
        let landing_only = order_with(|order| {
            order.insert("discount_codes".into(), json!([]));
            order.insert("note_attributes".into(), json!([]));
            order.insert(
                "landing_site".into(),
                json!("https://shop.example.com/products/tee?utm_source=x&ref=EVE%2D5#top"),
            );
        });
        assert_eq!(
            award(paid(&landing_only))
                .referral_codes
                .first()
                .map(String::as_str),
            Some("EVE-5")
        );
        let none = order_with(|order| {
            order.insert("discount_codes".into(), json!([]));
            order.insert("note_attributes".into(), json!([]));
            order.insert(
                "landing_site".into(),
                json!("/collections/all?utm_source=x"),
            );
        });
        assert!(award(paid(&none)).referral_codes.is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn arbitrary_input_never_panics(
            body in fuzz::body(&[
                "id", "email", "contact_email", "customer", "currency", "total_price", "test",
                "financial_status", "discount_codes", "code", "note_attributes", "name",
                "value", "landing_site", "order_id", "transactions", "kind", "status", "amount",
                "note", "cancel_reason",
            ]),
            headers in fuzz::headers(&[SIGNATURE_HEADER, TOPIC_HEADER]),
            secret in proptest::option::of(".{0,40}"),
            accept_test_events in any::<bool>(),
        ) {
            let _ = verify(&headers, &body, secret.as_deref(), Utc::now());
            let _ = parse(&headers, &body, accept_test_events);
        }

        #[test]
        fn arbitrary_bodies_under_every_used_topic_never_panic(
            body in fuzz::body(&[
                "id", "order_id", "transactions", "kind", "status", "amount", "currency", "test",
                "note", "cancel_reason", "email", "total_price", "financial_status",
            ]),
            topic in proptest::sample::select(vec![AWARDING_TOPIC, REFUND_TOPIC, CANCELLED_TOPIC]),
            accept_test_events in any::<bool>(),
        ) {
            let _ = parse(&headers(None, Some(topic)), &body, accept_test_events);
        }
    }
}
