//! Payment-provider endpoints: Shopify and Stripe referral webhooks, Coinflow, and Shopify
//! deliveries sent to the generic purchase URL. Verification and parsing live in
//! [`crate::providers`]; this module turns a verdict into a published purchase, a published
//! reversal (through [`super::refund::accept`]), or an `ignored` 200.

use axum::{
    extract::{Path, State},
    http::HeaderMap,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::{
    contest::Contest,
    event::{Envelope, Event, PurchaseEvent},
    ids::{EntryId, PurchaseId, Source},
};
use utoipa::ToSchema;

use super::{
    answer::{Accepted, EventIgnored, Ignored, PurchaseAccepted, WebhookAnswer},
    publish, refund, resolve_contest,
};
use crate::{
    api::{
        envelope::{
            BadRequest, Forbidden, NotFound, PayloadTooLarge, ServiceUnavailable, Unauthorized,
        },
        schema::ContestIdParam,
        Envelope as Answer, Reply,
    },
    body::RawBody,
    error::ApiError,
    metrics::Outcome,
    providers::{self, Verdict},
    state::AppState,
};

/// The providers we accept webhooks from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Shopify `orders/paid`, `refunds/create`, `orders/cancelled`.
    Shopify,
    /// Stripe Checkout, charge refund and dispute events.
    Stripe,
    /// Coinflow v2 `Settled`, `Refund` and chargeback events.
    Coinflow,
}

impl Provider {
    /// The purchase source (part of the dedupe key).
    pub fn source(self) -> Source {
        match self {
            Provider::Shopify => Source::Shopify,
            Provider::Stripe => Source::Stripe,
            Provider::Coinflow => Source::Coinflow,
        }
    }

    fn secret(self, contest: &Contest) -> Option<&str> {
        let secrets = &contest.provider_secrets;
        match self {
            Provider::Shopify => secrets.shopify.as_deref(),
            Provider::Stripe => secrets.stripe.as_deref(),
            Provider::Coinflow => secrets.coinflow.as_deref(),
        }
    }

    /// Authenticates a delivery with the contest's secret for this provider.
    pub fn verify(
        self,
        headers: &HeaderMap,
        body: &[u8],
        contest: &Contest,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        let secret = self.secret(contest);
        match self {
            Provider::Shopify => providers::shopify::verify(headers, body, secret, now),
            Provider::Stripe => providers::stripe::verify(headers, body, secret, now),
            Provider::Coinflow => providers::coinflow::verify(headers, body, secret, now),
        }
    }

    fn parse(self, headers: &HeaderMap, body: &[u8], accept_test_events: bool) -> Verdict {
        match self {
            Provider::Shopify => providers::shopify::parse(headers, body, accept_test_events),
            Provider::Stripe => providers::stripe::parse(headers, body, accept_test_events),
            Provider::Coinflow => providers::coinflow::parse(headers, body, accept_test_events),
        }
    }
}

/// Whether an endpoint credits the order's referral code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Referral {
    /// Referral endpoints: the code's owner is credited.
    Credit,
    /// Purchase endpoints: only the buyer is awarded.
    Ignore,
}

/// Receive a Shopify order, refund or cancellation (referral)
///
/// Shopify `orders/paid`: records the buyer's purchase exactly as the purchase webhook
/// would (source `shopify`, order `id`) and credits the owner of the order's referral code.
/// Only `X-Shopify-Topic: orders/paid` awards (without the header, `financial_status: paid`).
/// `refunds/create` takes back the sum of the refund's successful refund transactions
/// (refund id = the refund's `id`) and `orders/cancelled` is a full refund of the order
/// (refund id `cancelled`): both are answered `accepted` with a `reversalId`. Every other
/// authentic delivery is `200` `ignored`.
#[utoipa::path(
    post,
    path = "/api/webhooks/referral/shopify/{contestId}",
    tag = "webhooks",
    operation_id = "receiveShopifyReferral",
    params(
        ContestIdParam,
        ("X-Shopify-Topic" = Option<String>, Header, description = "The webhook topic; \
            `orders/paid` awards, `refunds/create` and `orders/cancelled` take points \
            back."),
    ),
    request_body(content = ShopifyOrder, content_type = "application/json"),
    responses(
        (status = 200, description = "Durably queued (`accepted`: a purchase or a \
            reversal) or changes nothing (`ignored`).", body = Answer<WebhookAnswer>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 503, response = ServiceUnavailable),
    ),
    security(("shopifyHmac" = [])),
)]
pub async fn shopify_referral(
    State(state): State<AppState>,
    Path(contest_id): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Reply<WebhookAnswer>, ApiError> {
    receive(
        &state,
        &contest_id,
        &headers,
        &body,
        Provider::Shopify,
        Referral::Credit,
    )
    .await
}

/// Receive a Stripe event (referral)
///
/// Stripe Checkout events: records the purchase (source `stripe`, order id = Checkout
/// Session id, remembering its `payment_intent`) and credits the owner of the referral code
/// in `metadata.referralCode`, `metadata.ref` or `client_reference_id`. `charge.refunded`,
/// `charge.dispute.created` and `charge.dispute.closed` (won) are reversals of the purchase
/// whose payment intent they name, answered `accepted` with a `reversalId` and that
/// `paymentIntent`. Other authentic events are `200` `ignored`.
#[utoipa::path(
    post,
    path = "/api/webhooks/referral/stripe/{contestId}",
    tag = "webhooks",
    operation_id = "receiveStripeReferral",
    params(ContestIdParam),
    request_body(content = StripeEvent, content_type = "application/json"),
    responses(
        (status = 200, description = "Durably queued (`accepted`: a purchase or a \
            reversal) or changes nothing (`ignored`).", body = Answer<WebhookAnswer>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 503, response = ServiceUnavailable),
    ),
    security(("stripeSignature" = [])),
)]
pub async fn stripe_referral(
    State(state): State<AppState>,
    Path(contest_id): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Reply<WebhookAnswer>, ApiError> {
    receive(
        &state,
        &contest_id,
        &headers,
        &body,
        Provider::Stripe,
        Referral::Credit,
    )
    .await
}

/// Receive a Coinflow event
///
/// Coinflow v2 events: `Settled` records the purchase (source `coinflow`, order id
/// `data.id`); `Refund`, `Card Payment Chargeback Opened` and `Card Payment Chargeback Won`
/// are reversals of that purchase, answered `accepted` with a `reversalId`; other authentic
/// events (`Card Payment Chargeback Lost` among them) are `200` `ignored`. No referral
/// credit.
#[utoipa::path(
    post,
    path = "/api/webhooks/coinflow/{contestId}",
    tag = "webhooks",
    operation_id = "receiveCoinflow",
    params(ContestIdParam),
    request_body(content = CoinflowEvent, content_type = "application/json"),
    responses(
        (status = 200, description = "Durably queued (`accepted`: a purchase or a \
            reversal) or changes nothing (`ignored`).", body = Answer<WebhookAnswer>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 503, response = ServiceUnavailable),
    ),
    security(("coinflowKey" = []), ("coinflowSignature" = [])),
)]
pub async fn coinflow(
    State(state): State<AppState>,
    Path(contest_id): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Reply<WebhookAnswer>, ApiError> {
    receive(
        &state,
        &contest_id,
        &headers,
        &body,
        Provider::Coinflow,
        Referral::Ignore,
    )
    .await
}

/// Contest → provider signature (401) → tracking switch (403) → verdict → publish or ignore.
async fn receive(
    state: &AppState,
    contest_id: &str,
    headers: &HeaderMap,
    body: &[u8],
    provider: Provider,
    referral: Referral,
) -> Result<Reply<WebhookAnswer>, ApiError> {
    let contest = resolve_contest(state, contest_id).await?;
    let now = Utc::now();
    provider.verify(headers, body, &contest, now)?;
    accept(state, &contest, headers, body, provider, referral, now).await
}

/// Handles an already authenticated provider delivery: a purchase is published and answered
/// with its `purchaseId` and `entryId`, a reversal with its `reversalId`, anything else is
/// `200 ignored`.
pub async fn accept(
    state: &AppState,
    contest: &Contest,
    headers: &HeaderMap,
    body: &[u8],
    provider: Provider,
    referral: Referral,
    now: DateTime<Utc>,
) -> Result<Reply<WebhookAnswer>, ApiError> {
    if !contest.purchase_tracking {
        return Err(ApiError::TrackingDisabled);
    }
    let purchase = match provider.parse(headers, body, contest.accept_test_events) {
        Verdict::Award(purchase) => purchase,
        Verdict::Reverse(reversal) => {
            // Provider deliveries never wait: their senders read nothing but the status.
            let (accepted, _) =
                refund::accept(state, contest, provider.source(), reversal, now, None).await?;
            return Ok(Reply::ok(WebhookAnswer::Reversal(accepted)).outcome(Outcome::ACCEPTED));
        }
        Verdict::Ignored(reason) => {
            tracing::info!(contest_id = %contest.id, source = %provider.source(), %reason, "provider event ignored");
            return Ok(Reply::ok(WebhookAnswer::Ignored(EventIgnored {
                status: Ignored::Ignored,
                reason,
            }))
            .outcome(Outcome::IGNORED));
        }
    };
    let source = provider.source();
    let purchase_id = PurchaseId::derive(&contest.id, source, &purchase.order_id);
    let entry_id = EntryId::derive(&contest.id, &purchase.email);
    let envelope = Envelope::new(Event::Purchase(PurchaseEvent {
        purchase_id: purchase_id.clone(),
        contest_id: contest.id.clone(),
        source,
        order_id: purchase.order_id.clone(),
        email: purchase.email,
        money: purchase.money,
        received_at: now,
        referral_codes: match referral {
            Referral::Credit => purchase.referral_codes,
            Referral::Ignore => Vec::new(),
        },
        payment_intent: purchase.payment_intent,
    }));
    publish(state, &envelope).await?;
    tracing::info!(%purchase_id, contest_id = %contest.id, %source, "provider purchase accepted");
    Ok(Reply::ok(WebhookAnswer::Purchase(PurchaseAccepted {
        purchase_id,
        entry_id,
        order_id: purchase.order_id.as_str().to_owned(),
        status: Accepted::Accepted,
    }))
    .outcome(Outcome::ACCEPTED))
}

// Provider payloads. Their parsers (`crate::providers`) read the raw JSON tolerantly, the way
// each provider documents it; these types describe, for the OpenAPI document, the fields they
// read. Any other field is accepted and ignored.

/// A Shopify webhook body: for `orders/paid` and `orders/cancelled` the REST Admin API `Order`
/// resource, for `refunds/create` the `Refund` resource (`id`, `order_id`, `note`,
/// `transactions`). Only the fields read are listed; any others are accepted and ignored. An
/// authentic delivery that changes nothing (another topic, unpaid, a test order, no email, a
/// refund with no successful refund transaction) is answered `200` `ignored`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": 820982911946154508_u64, "email": "jane@example.com", "total_price": "79.99", "currency": "USD", "financial_status": "paid", "test": false}))]
pub struct ShopifyOrder {
    /// Order id (a 64-bit integer, read as text so no digit is lost).
    pub id: Option<u64>,
    /// Buyer email (`contact_email` and `customer.email` are fallbacks).
    pub email: Option<String>,
    /// Fallback buyer email.
    pub contact_email: Option<String>,
    /// Fallback buyer: `customer.email`.
    #[schema(value_type = Option<Object>)]
    pub customer: Option<serde_json::Value>,
    /// Total in the shop currency, a decimal string.
    pub total_price: Option<String>,
    /// Shop currency.
    pub currency: Option<String>,
    /// `paid` awards when there is no `X-Shopify-Topic` header.
    pub financial_status: Option<String>,
    /// Test order: awards only when the contest accepts test events.
    pub test: Option<bool>,
    /// Discount codes (`[{"code": …}]`): a referral code (referral endpoint only).
    #[schema(value_type = Option<Vec<Object>>)]
    pub discount_codes: Option<Vec<serde_json::Value>>,
    /// Cart attributes (`[{"name": "ref"|"referralCode", "value": …}]`): a referral code.
    #[schema(value_type = Option<Vec<Object>>)]
    pub note_attributes: Option<Vec<serde_json::Value>>,
    /// Landing URL; `ref=<code>` in it is a referral code.
    pub landing_site: Option<String>,
    /// `orders/cancelled`: Shopify's cancellation reason, kept in the ledger.
    pub cancel_reason: Option<String>,
    /// `refunds/create`: the refunded order's id (a 64-bit integer).
    pub order_id: Option<u64>,
    /// `refunds/create`: the refund's note, kept in the ledger.
    pub note: Option<String>,
    /// `refunds/create`: the refund's transactions; those with `kind: refund` and `status:
    /// success` are summed (`amount`, a decimal string, in `currency`).
    #[schema(value_type = Option<Vec<Object>>)]
    pub transactions: Option<Vec<serde_json::Value>>,
}

/// A Stripe event. `checkout.session.completed` with `payment_status` `paid` or
/// `no_payment_required`, and `checkout.session.async_payment_succeeded`, award (and remember
/// the session's `payment_intent`); `charge.refunded` sets the refunded total of the purchase
/// whose payment intent the charge names to the charge's cumulative `amount_refunded`;
/// `charge.dispute.created` is a chargeback, and `charge.dispute.closed` with `status` `won`
/// (or an inquiry closed as `warning_closed`) reinstates it. Anything else authentic is
/// answered `200` `ignored`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "evt_1", "type": "checkout.session.completed", "livemode": true, "data": {"object": {"id": "cs_1", "amount_total": 7999, "currency": "usd", "payment_status": "paid", "customer_details": {"email": "jane@example.com"}}}}))]
pub struct StripeEvent {
    /// Event id.
    pub id: Option<String>,
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// `false` for test-mode events (awarded only when the contest accepts test events).
    pub livemode: Option<bool>,
    /// `{"object": <Checkout Session>}`: `id` (the order id), `amount_total` (minor units),
    /// `currency`, `payment_status`, `payment_intent`, `customer_details.email` /
    /// `customer_email`, and the referral code in `metadata.referralCode`, `metadata.ref` or
    /// `client_reference_id`. `{"object": <Charge>}`: `id`, `payment_intent`, `currency`,
    /// `amount_refunded`. `{"object": <Dispute>}`: `id`, `payment_intent`, `reason`, `status`.
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
}

/// A Coinflow v2 event. `Settled` awards: order id `data.id`, amount `data.subtotal.cents` in
/// minor units of `data.subtotal.currency` (USD when absent), buyer `data.webhookInfo.email`.
/// `Refund` is a full refund of payment `data.id`, `Card Payment Chargeback Opened` a chargeback
/// and `Card Payment Chargeback Won` its reinstatement; `Card Payment Chargeback Lost` changes
/// nothing more. Anything else authentic is answered `200` `ignored`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"eventType": "Settled", "category": "Purchase", "created": "2026-11-01T12:00:00Z", "data": {"id": "cf_1", "subtotal": {"cents": 7999, "currency": "USD"}, "webhookInfo": {"email": "jane@example.com"}}}))]
pub struct CoinflowEvent {
    /// Event type: `Settled` awards; `Refund` and the `Card Payment Chargeback …` events take
    /// points back or give them back.
    pub event_type: Option<String>,
    /// Event category.
    pub category: Option<String>,
    /// When Coinflow created the event.
    pub created: Option<String>,
    /// The payment.
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
}
