//! `POST /api/webhooks/refund/:contestId` (the generic refund webhook), and the one place a
//! reversal, from this webhook or from a provider event, becomes a published
//! [`ReversalEvent`] and its answer.
//!
//! The receiver does not know whether the order exists (no Postgres on the request path): an
//! unknown order is accepted like any other, and the worker keeps the reversal until its purchase
//! is recorded.

use axum::{
    extract::{Path, State},
    http::HeaderMap,
};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{de::IgnoredAny, Deserialize};
use shared::{
    contest::Contest,
    event::{Envelope, Event, RefundAmount, ReversalEvent, ReversalKind, ReversalTarget},
    ids::{OrderId, ReversalId, Source},
    money::{Currency, MoneyError, MAX_AMOUNT},
};
use utoipa::ToSchema;

use super::{
    answer::{Accepted, RefundWebhookAnswer, ReversalAccepted},
    resolve_contest,
};
use crate::{
    api::{
        envelope::{
            BadRequest, Forbidden, NotFound, PayloadTooLarge, ServiceUnavailable, Unauthorized,
        },
        fields::{required, ExactDecimal, IdText, Text},
        schema::{
            self, ContestIdParam, CurrencyCode, PreferHeader, PreferenceApplied,
            StandardWebhooksHeaders,
        },
        Envelope as Answer, Reply,
    },
    auth::{self, ShopifyOrders},
    body::{self, RawBody},
    error::ApiError,
    providers::{ProviderReversal, MAX_REASON_CHARS},
    state::AppState,
    sync::{self, Asked, Published, Wait},
};

/// The refund id of a reversal that names none: the whole purchase (or its one chargeback).
pub const DEFAULT_REFUND_ID: &str = "full";

/// The `reason` that makes a generic reversal a chargeback.
pub const CHARGEBACK_REASON: &str = "chargeback";

/// The `reason` that makes a generic reversal a won chargeback.
pub const CHARGEBACK_WON_REASON: &str = "chargeback_won";

/// The generic refund webhook's body. Authenticated like the purchase webhook (a Shopify
/// signature is refused here: Shopify refunds go to the Shopify URLs as `refunds/create`). Fields
/// it does not use are ignored.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"orderId": "A-1", "refundId": "R-1", "amount": "40.00", "reason": "damaged"}))]
pub struct RefundRequest {
    /// The order id of the purchase, as sent with it (a string or an integer). The purchase need
    /// not be recorded yet: the worker keeps the reversal and applies it when it lands.
    #[serde(default)]
    #[schema(schema_with = schema::order_id, required = true)]
    pub order_id: Option<IdText>,
    /// Names this refund (or chargeback), 1–255 characters. Required with `amount` on a refund
    /// (two partial refunds of the same amount are two refunds); default `full`. With the
    /// contest, source, order and kind it is the dedupe key: the same refund sent twice counts
    /// once.
    #[serde(default)]
    #[schema(schema_with = schema::refund_id)]
    pub refund_id: Option<IdText>,
    /// The amount returned; absent means the whole purchase. A chargeback always takes back
    /// everything still held: an amount sent with one is validated and not otherwise used.
    #[serde(default)]
    #[schema(schema_with = schema::refund_amount)]
    pub amount: Option<ExactDecimal>,
    /// ISO 4217 code in any case, of a partial refund; absent means the purchase's currency. A
    /// refund in another currency than the purchase's changes nothing (the worker records it as
    /// a currency mismatch).
    #[serde(default)]
    #[schema(value_type = Option<CurrencyCode>)]
    pub currency: Option<Text>,
    /// `chargeback` makes it a chargeback, `chargeback_won` gives back what the chargeback named
    /// by `refundId` took (any letter case); any other text is the refund's reason in the ledger
    /// (at most 500 characters, no control characters).
    #[serde(default)]
    #[schema(value_type = Option<String>, max_length = 500, example = "damaged")]
    pub reason: Option<Text>,
    /// The contest's webhook secret, consulted only when no header credential and no signature
    /// is sent.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub secret: Option<IgnoredAny>,
}

/// Receive a refund, cancellation or chargeback
///
/// Money went back on a purchase sent to the purchase webhook (source `api`): points are
/// taken back in proportion (refund), all of them (`reason: chargeback`), or given back
/// (`reason: chargeback_won`). Authenticated like the purchase webhook, except that a
/// Shopify signature is `401` here. Order of checks as for a purchase: contest (404) → body
/// size (413) → authentication (401, before the body is validated) → purchase tracking (403:
/// a paused contest takes no refunds either; the sender retries once it runs again) →
/// fields (400 naming the field) → publish with publisher confirm (503 + `Retry-After`) →
/// 200. The order need not be known: the worker keeps the reversal and applies it once, when
/// the purchase is recorded.
///
/// Synchronous answers as for a purchase (`Prefer: wait=N`, or the contest's
/// `syncResponses`): the answer is then what the reversal did (`status` `applied`,
/// `pending` while the purchase is not recorded, `duplicate`, `currency_mismatch` or
/// `points_limit`; `pointsReversed`; the purchase's status after it).
#[utoipa::path(
    post,
    path = "/api/webhooks/refund/{contestId}",
    tag = "webhooks",
    operation_id = "receiveRefund",
    params(ContestIdParam, StandardWebhooksHeaders, PreferHeader),
    request_body(content = RefundRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Settled or kept pending (the sender waited and the \
            outcome came in time: `status` is what the reversal did), or durably queued \
            (`accepted`).", body = Answer<RefundWebhookAnswer>,
            headers(("Preference-Applied" = inline(PreferenceApplied), description = "`wait=N`, \
                the wait applied (capped at 4), when the request waited for the worker's \
                outcome, whether it came in time or the answer is `accepted`; absent when the \
                request did not wait."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 503, response = ServiceUnavailable),
    ),
    security(
        ("webhookSecret" = []),
        ("webhookSecretBearer" = []),
        ("standardWebhooks" = []),
    ),
)]
pub async fn receive(
    State(state): State<AppState>,
    Path(contest_id): Path<String>,
    asked: Asked,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Reply<RefundWebhookAnswer>, ApiError> {
    let contest = resolve_contest(&state, &contest_id).await?;
    let now = Utc::now();
    auth::authenticate_generic(&headers, &body, &contest, now, ShopifyOrders::Refused)?;
    if !contest.purchase_tracking {
        return Err(ApiError::TrackingDisabled);
    }
    let reversal = parse_body(body::lenient(&body)?)?;
    let wait = asked.wait(contest.sync_responses);
    let (accepted, published) = accept(&state, &contest, Source::Api, reversal, now, wait).await?;
    if let Some(settled) = published.refund_answer(&accepted) {
        return Ok(published.answered(RefundWebhookAnswer::Settled(settled)));
    }
    Ok(published.accepted(RefundWebhookAnswer::Accepted(accepted)))
}

/// Validates a generic refund body field by field (every 400 names its field).
///
/// - `orderId` (required): the purchase's order id, a string or an integer, as for purchases.
/// - `amount` (optional): exact, greater than 0 and at most 10^12, by the purchase's rules;
///   absent means the whole purchase.
/// - `currency` (optional): ISO 4217; absent means the purchase's own. Only a partial refund
///   carries one (a whole-purchase refund is in the purchase's currency by definition).
/// - `reason` (optional): `chargeback` makes it a chargeback, `chargeback_won` reinstates one
///   (either in any letter case); any other text is kept as the refund's reason (at most
///   [`MAX_REASON_CHARS`] characters, no control characters).
/// - `refundId` (optional, 1–255 characters): names the refund or chargeback; required with an
///   `amount` on a refund, so that two partial refunds of the same amount are two refunds, and
///   [`DEFAULT_REFUND_ID`] otherwise. A chargeback always reverses everything the purchase still
///   holds: an `amount` sent with one is validated and otherwise not used.
pub fn parse_body(request: RefundRequest) -> Result<ProviderReversal, ApiError> {
    let order_id = OrderId::parse(&required(request.order_id, "orderId")?.0)
        .map_err(|error| ApiError::field("orderId", error.to_string()))?;
    let amount = match request.amount {
        Some(amount) => Some(positive_amount(amount.0)?),
        None => None,
    };
    let currency = match request.currency {
        Some(code) => Some(
            Currency::parse(&code.0)
                .map_err(|error| ApiError::field("currency", error.to_string()))?,
        ),
        None => None,
    };
    let (kind, reason) = kind_and_reason(request.reason.as_ref().map(|text| text.0.as_str()))?;
    let refund_id = optional_refund_id(request.refund_id)?;
    if kind == ReversalKind::Refund && amount.is_some() && refund_id.is_none() {
        return Err(ApiError::field(
            "refundId",
            "is required when amount is given (two partial refunds of the same amount are two \
             refunds)",
        ));
    }
    let amount = match (kind, amount) {
        (ReversalKind::Refund, Some(amount)) => RefundAmount::Partial { amount, currency },
        _ => RefundAmount::Full,
    };
    Ok(ProviderReversal {
        target: ReversalTarget::OrderId(order_id),
        refund_id: refund_id.unwrap_or_else(|| DEFAULT_REFUND_ID.to_owned()),
        kind,
        amount,
        reason,
    })
}

/// A refunded amount within the purchase's bounds (greater than 0, at most 10^12).
fn positive_amount(amount: Decimal) -> Result<Decimal, ApiError> {
    let error = if amount <= Decimal::ZERO {
        MoneyError::NotPositive
    } else if amount > MAX_AMOUNT {
        MoneyError::TooLarge
    } else {
        return Ok(amount);
    };
    Err(ApiError::field("amount", error.to_string()))
}

/// The reversal kind a `reason` asks for, and the reason text kept for a plain refund.
fn kind_and_reason(reason: Option<&str>) -> Result<(ReversalKind, Option<String>), ApiError> {
    let Some(text) = reason.map(str::trim).filter(|text| !text.is_empty()) else {
        return Ok((ReversalKind::Refund, None));
    };
    if text.eq_ignore_ascii_case(CHARGEBACK_REASON) {
        return Ok((ReversalKind::Chargeback, Some(CHARGEBACK_REASON.to_owned())));
    }
    if text.eq_ignore_ascii_case(CHARGEBACK_WON_REASON) {
        return Ok((
            ReversalKind::ChargebackWon,
            Some(CHARGEBACK_WON_REASON.to_owned()),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(ApiError::field(
            "reason",
            "must not contain control characters",
        ));
    }
    if text.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::field(
            "reason",
            format!("must be at most {MAX_REASON_CHARS} characters"),
        ));
    }
    Ok((ReversalKind::Refund, Some(text.to_owned())))
}

/// `refundId`, when sent: a string or an integer (its digits kept), 1–255 characters without
/// control characters.
fn optional_refund_id(refund_id: Option<IdText>) -> Result<Option<String>, ApiError> {
    let Some(IdText(text)) = refund_id else {
        return Ok(None);
    };
    // The same rule as order ids (1–255 characters, no control characters).
    OrderId::parse(&text)
        .map(|id| Some(id.as_str().to_owned()))
        .map_err(|error| ApiError::field("refundId", error.to_string()))
}

/// Publishes a reversal of a purchase of `source` in `contest` and, once the broker has
/// confirmed it (503 on any broker trouble), returns its `accepted` answer
/// `{"reversalId", "orderId" | "paymentIntent", "refundId", "kind", "status": "accepted"}`
/// ([`ReversalAccepted`]) and, with a `wait`, the outcome if it came in time
/// ([`Published::refund_answer`]). Provider events never wait (`None`).
///
/// `reversalId` is derived from the dedupe key `(contest, source, target, refundId, kind)`, so a
/// redelivered or repeated reversal carries the same id.
pub async fn accept(
    state: &AppState,
    contest: &Contest,
    source: Source,
    reversal: ProviderReversal,
    now: DateTime<Utc>,
    wait: Option<Wait>,
) -> Result<(ReversalAccepted, Published), ApiError> {
    let reversal_id = ReversalId::derive(
        &contest.id,
        source,
        &reversal.target.key(),
        &reversal.refund_id,
        reversal.kind.as_str(),
    );
    let (order_id, payment_intent) = match &reversal.target {
        ReversalTarget::OrderId(order_id) => (Some(order_id.as_str().to_owned()), None),
        ReversalTarget::PaymentIntent(intent) => (None, Some(intent.clone())),
    };
    let answer = ReversalAccepted {
        reversal_id: reversal_id.clone(),
        order_id,
        payment_intent,
        refund_id: reversal.refund_id.clone(),
        kind: reversal.kind,
        status: Accepted::Accepted,
    };
    let kind = reversal.kind;
    let envelope = Envelope::new(Event::Reversal(ReversalEvent {
        reversal_id: reversal_id.clone(),
        contest_id: contest.id.clone(),
        source,
        target: reversal.target,
        refund_id: reversal.refund_id,
        kind,
        amount: reversal.amount,
        reason: reversal.reason,
        received_at: now,
    }));
    let published = sync::publish(state, &envelope, wait).await?;
    tracing::info!(
        %reversal_id,
        contest_id = %contest.id,
        %source,
        kind = kind.as_str(),
        "reversal accepted"
    );
    Ok((answer, published))
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use serde_json::{json, Value};

    use super::*;

    fn parse(body: Value) -> Result<ProviderReversal, ApiError> {
        parse_body(body::lenient(body.to_string().as_bytes())?)
    }

    fn field(body: Value) -> String {
        match parse(body) {
            Err(ApiError::InvalidField { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn an_order_id_alone_is_a_full_refund_named_full() {
        let reversal = parse(json!({"orderId": "A-1"})).unwrap();
        assert_eq!(
            reversal,
            ProviderReversal {
                target: ReversalTarget::OrderId(OrderId::parse("A-1").unwrap()),
                refund_id: "full".into(),
                kind: ReversalKind::Refund,
                amount: RefundAmount::Full,
                reason: None,
            }
        );
    }

    #[test]
    fn a_partial_refund_keeps_its_exact_amount_and_currency() {
        let reversal = parse(json!({
            "orderId": 1001, "refundId": 7, "amount": "39.990", "currency": "eur",
            "reason": "  damaged  "
        }))
        .unwrap();
        assert_eq!(reversal.refund_id, "7");
        assert_eq!(
            reversal.target,
            ReversalTarget::OrderId(OrderId::parse("1001").unwrap())
        );
        assert_eq!(
            reversal.amount,
            RefundAmount::Partial {
                amount: Decimal::from_str("39.990").unwrap(),
                currency: Some(Currency::parse("EUR").unwrap()),
            }
        );
        assert_eq!(reversal.reason.as_deref(), Some("damaged"));
    }

    #[test]
    fn reasons_chargeback_and_chargeback_won_choose_the_kind() {
        let chargeback = parse(json!({"orderId": "A-1", "reason": "Chargeback"})).unwrap();
        assert_eq!(chargeback.kind, ReversalKind::Chargeback);
        assert_eq!(chargeback.refund_id, "full");
        assert_eq!(chargeback.amount, RefundAmount::Full);
        let won = parse(json!({"orderId": "A-1", "reason": "chargeback_won", "refundId": "cb_1"}))
            .unwrap();
        assert_eq!(won.kind, ReversalKind::ChargebackWon);
        assert_eq!(won.refund_id, "cb_1");
        // A chargeback takes everything back whatever amount is sent, so none is required to be
        // named; the amount is still validated.
        let with_amount =
            parse(json!({"orderId": "A-1", "reason": "chargeback", "amount": "5"})).unwrap();
        assert_eq!(with_amount.amount, RefundAmount::Full);
        assert_eq!(
            field(json!({"orderId": "A-1", "reason": "chargeback", "amount": "-5"})),
            "amount"
        );
    }

    #[test]
    fn an_amount_without_a_refund_id_is_a_400_refund_id() {
        assert_eq!(field(json!({"orderId": "A-1", "amount": "10"})), "refundId");
    }

    #[test]
    fn invalid_fields_are_named() {
        let long = "x".repeat(256);
        let cases = [
            (json!({}), "orderId"),
            (json!({"orderId": ""}), "orderId"),
            (json!({"orderId": true}), "orderId"),
            (
                json!({"orderId": "A", "refundId": "r", "amount": "0"}),
                "amount",
            ),
            (
                json!({"orderId": "A", "refundId": "r", "amount": -1}),
                "amount",
            ),
            (
                json!({"orderId": "A", "refundId": "r", "amount": "ten"}),
                "amount",
            ),
            (
                json!({"orderId": "A", "refundId": "r", "amount": [1]}),
                "amount",
            ),
            (
                json!({"orderId": "A", "refundId": "r", "amount": "1000000000000.01"}),
                "amount",
            ),
            (
                json!({"orderId": "A", "refundId": "r", "amount": "1.00000000000000000000000000001"}),
                "amount",
            ),
            (json!({"orderId": "A", "currency": "XYZ"}), "currency"),
            (json!({"orderId": "A", "currency": 840}), "currency"),
            (json!({"orderId": "A", "refundId": ""}), "refundId"),
            (json!({"orderId": "A", "refundId": long}), "refundId"),
            (json!({"orderId": "A", "refundId": 1.5}), "refundId"),
            (json!({"orderId": "A", "refundId": "a\nb"}), "refundId"),
            (json!({"orderId": "A", "reason": "a\u{1}b"}), "reason"),
            (json!({"orderId": "A", "reason": "x".repeat(501)}), "reason"),
            (json!({"orderId": "A", "reason": 5}), "reason"),
        ];
        for (body, expected) in cases {
            assert_eq!(field(body.clone()), expected, "{body}");
        }
    }

    #[test]
    fn blank_reasons_are_absent_and_long_ones_fit_exactly() {
        assert!(parse(json!({"orderId": "A", "reason": "  "}))
            .unwrap()
            .reason
            .is_none());
        let longest = "é".repeat(MAX_REASON_CHARS);
        assert_eq!(
            parse(json!({"orderId": "A", "reason": longest}))
                .unwrap()
                .reason
                .unwrap()
                .chars()
                .count(),
            MAX_REASON_CHARS
        );
    }
}
