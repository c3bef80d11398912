//! `POST /api/webhooks/purchase/:contestId` (the generic purchase webhook) and
//! `GET /api/webhooks/purchase/:contestId/:orderId` (has the worker recorded it yet?).

use axum::{
    extract::{Path, Query, State},
    http::HeaderMap,
};
use chrono::{DateTime, Utc};
use serde::{de::IgnoredAny, Deserialize, Serialize};
use shared::{
    email::Email,
    event::{Envelope, Event, PurchaseEvent},
    ids::{EntryId, OrderId, PurchaseId, Source},
    money::{Currency, Money},
    points::PurchaseStatus,
};
use utoipa::{IntoParams, ToSchema};

use super::{
    answer::{Accepted, PurchaseAccepted, PurchaseWebhookAnswer},
    provider::{self, Provider, Referral},
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
    auth::{self, GenericCredential, ShopifyOrders},
    body::{self, RawBody},
    error::ApiError,
    state::AppState,
    sync::{self, Asked},
};

/// The generic purchase webhook's body. (With `X-Shopify-Hmac-Sha256` and no header credential
/// or Standard Webhooks signature, the body is a Shopify order instead: see `ShopifyOrder`.)
/// Fields it does not use are ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"email": "jane@example.com", "orderId": "A-1", "amount": "79.99", "currency": "USD"}))]
pub struct PurchaseRequest {
    /// The buyer's email address (trimmed and lower-cased; a new address creates an entry).
    #[serde(default)]
    #[schema(value_type = String, format = Email, max_length = 254, required = true)]
    pub email: Option<Text>,
    /// The order id.
    #[serde(default)]
    #[schema(schema_with = schema::order_id, required = true)]
    pub order_id: Option<IdText>,
    /// The amount paid.
    #[serde(default)]
    #[schema(schema_with = schema::amount, required = true)]
    pub amount: Option<ExactDecimal>,
    /// ISO 4217 code in any case; `USD` when absent.
    #[serde(default)]
    #[schema(value_type = Option<CurrencyCode>, default = "USD")]
    pub currency: Option<Text>,
    /// The contest's webhook secret, consulted only when no header credential and no signature
    /// is sent.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub secret: Option<IgnoredAny>,
}

/// A purchase, validated: what gets published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidPurchase {
    /// The buyer.
    pub email: Email,
    /// The sender's order id.
    pub order_id: OrderId,
    /// What was paid, exactly.
    pub money: Money,
}

impl PurchaseRequest {
    /// Validates field by field, in the contract's order (every 400 names its field).
    pub fn validate(self) -> Result<ValidPurchase, ApiError> {
        let email = Email::parse(&required(self.email, "email")?.0)
            .map_err(|error| ApiError::field("email", error.to_string()))?;
        let order_id = OrderId::parse(&required(self.order_id, "orderId")?.0)
            .map_err(|error| ApiError::field("orderId", error.to_string()))?;
        let amount = required(self.amount, "amount")?.0;
        let currency = match self.currency {
            Some(code) => Currency::parse(&code.0)
                .map_err(|error| ApiError::field("currency", error.to_string()))?,
            None => Currency::USD,
        };
        let money = Money::new(amount, currency)
            .map_err(|error| ApiError::field("amount", error.to_string()))?;
        Ok(ValidPurchase {
            email,
            order_id,
            money,
        })
    }
}

/// Receive a purchase
///
/// The generic purchase webhook. Order of checks, from the head first: declared body size
/// (413) → contest (404, or 503 while Postgres cannot be asked about an uncached id) →
/// header credential (401) → declared media type (415); then the body (413 over 1 MiB,
/// 408 when it does not arrive within 2 s) → signature or body `secret` (401, before the
/// body is validated) → purchase tracking (403) → fields (400 naming the field) → publish
/// with publisher confirm (503 + `Retry-After` on any broker trouble) → 200.
///
/// Authentication: `X-Webhook-Secret` or `Authorization: Bearer` with the contest's webhook
/// secret (header credentials decide alone); else a Standard Webhooks signature; else
/// `X-Shopify-Hmac-Sha256` with the contest's Shopify secret — the body is then a Shopify
/// delivery (see `ShopifyOrder`: `orders/paid` awards, `refunds/create` and
/// `orders/cancelled` are reversals answered with a `reversalId`) and the answer may be
/// `ignored`; else the body field `secret`. The same (contest, orderId) always yields the
/// same `purchaseId`, and the answer's `entryId` is the entry the purchase is credited to.
///
/// Synchronous answers: with `Prefer: wait=N` (or at a contest with `syncResponses`, which
/// waits 3 s unless the sender states a `wait`), the receiver still answers only after the
/// broker's confirm, then waits up to N s (at most 4, and never past 4 s after the request
/// arrived) for the worker's committed outcome and answers it: `pointsAwarded`,
/// `alreadyExists`, the purchase's `status`, `message` (`Preference-Applied: wait=N`). When it
/// does not come in time, the answer is the usual `accepted` (the event is safe either way).
/// Shopify deliveries never wait.
#[utoipa::path(
    post,
    path = "/api/webhooks/purchase/{contestId}",
    tag = "webhooks",
    operation_id = "receivePurchase",
    params(ContestIdParam, StandardWebhooksHeaders, PreferHeader),
    request_body(content = PurchaseRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Recorded (the sender waited and the outcome came in \
            time: `status` is the purchase's), durably queued (`accepted`: a purchase, or a \
            Shopify refund or cancellation), or a Shopify delivery that changes nothing \
            (`ignored`).", body = Answer<PurchaseWebhookAnswer>,
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
        ("shopifyHmac" = []),
    ),
)]
pub async fn receive(
    State(state): State<AppState>,
    Path(contest_id): Path<String>,
    asked: Asked,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Reply<PurchaseWebhookAnswer>, ApiError> {
    let contest = resolve_contest(&state, &contest_id).await?;
    let now = Utc::now();
    let credential =
        auth::authenticate_generic(&headers, &body, &contest, now, ShopifyOrders::Accepted)?;
    if credential == GenericCredential::Shopify {
        // A Shopify delivery never waits: Shopify reads nothing but the status.
        let reply = provider::accept(
            &state,
            &contest,
            &headers,
            &body,
            Provider::Shopify,
            Referral::Ignore,
            now,
        )
        .await?;
        return Ok(reply.map(PurchaseWebhookAnswer::from));
    }
    if !contest.purchase_tracking {
        return Err(ApiError::TrackingDisabled);
    }
    let purchase = body::lenient::<PurchaseRequest>(&body)?.validate()?;

    let purchase_id = PurchaseId::derive(&contest.id, Source::Api, &purchase.order_id);
    let entry_id = EntryId::derive(&contest.id, &purchase.email);
    let envelope = Envelope::new(Event::Purchase(PurchaseEvent {
        purchase_id: purchase_id.clone(),
        contest_id: contest.id.clone(),
        source: Source::Api,
        order_id: purchase.order_id.clone(),
        email: purchase.email,
        money: purchase.money,
        received_at: now,
        referral_codes: Vec::new(),
        payment_intent: None,
    }));
    let published = sync::publish(&state, &envelope, asked.wait(contest.sync_responses)).await?;
    tracing::info!(%purchase_id, contest_id = %contest.id, "purchase accepted");
    if let Some(recorded) = published.purchase_answer(&purchase.order_id) {
        return Ok(published.answered(PurchaseWebhookAnswer::Recorded(recorded)));
    }
    Ok(
        published.accepted(PurchaseWebhookAnswer::Purchase(PurchaseAccepted {
            purchase_id,
            entry_id,
            order_id: purchase.order_id.as_str().to_owned(),
            status: Accepted::Accepted,
        })),
    )
}

/// The lookup's query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LookupQuery {
    /// Where the purchase came from: `api` (default), `shopify`, `stripe` or `coinflow`.
    #[param(value_type = Option<Source>)]
    pub source: Option<String>,
}

/// A recorded purchase, as the lookup shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PurchaseRecord {
    /// The purchase id.
    #[schema(value_type = String)]
    pub purchase_id: PurchaseId,
    /// The order id as text.
    pub order_id: String,
    /// The buyer's entry; null once the buyer's entry was erased (the purchase is unlinked).
    #[schema(required = true)]
    pub entry_id: Option<String>,
    /// The buyer's normalised email; null once the buyer's entry was erased.
    #[schema(required = true)]
    pub email: Option<String>,
    /// The amount as sent, a decimal string.
    #[schema(example = "79.99")]
    pub amount: String,
    /// The currency code as sent (upper case).
    #[schema(value_type = CurrencyCode)]
    pub currency: String,
    /// Points the purchase first earned.
    pub points_awarded: i64,
    /// Points refunds and chargebacks have taken back so far.
    pub points_reversed: i64,
    /// The total of the refunds received, a decimal string (may exceed `amount`; the points
    /// taken back are capped at `pointsAwarded`).
    #[schema(example = "40.00")]
    pub refunded_amount: String,
    /// `awarded`; `unconvertible_currency` (no exchange rate: recorded with 0 points);
    /// `points_limit` (the award, or the buyer's total with it, would pass ±9·10^15: recorded
    /// with 0 points); `partially_refunded`; `refunded` (refunds reached the amount); `reversed`
    /// (a chargeback is open or lost). A won chargeback returns the purchase to its earlier
    /// status.
    pub status: PurchaseStatus,
    /// When the worker committed it.
    #[schema(value_type = String, format = DateTime)]
    pub recorded_at: DateTime<Utc>,
}

/// Look up a purchase
///
/// `200` once the worker has recorded the purchase, `404` `not_found` before. A header
/// credential only (`X-Webhook-Secret` or `Authorization: Bearer`): a GET has no body, and a
/// signature over the empty body proves nothing about the URL (it could be replayed
/// against any order), so a signature is `401` here.
#[utoipa::path(
    get,
    path = "/api/webhooks/purchase/{contestId}/{orderId}",
    tag = "webhooks",
    operation_id = "lookupPurchase",
    params(
        ContestIdParam,
        ("orderId" = String, Path, min_length = 1, example = "A-1", description = "The order id as sent \
            (for `stripe` the Checkout Session id, for `coinflow` `data.id`, for `shopify` \
            the order `id`)."),
        LookupQuery,
    ),
    responses(
        (status = 200, description = "The recorded purchase.", body = Answer<PurchaseRecord>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    ),
    security(("webhookSecret" = []), ("webhookSecretBearer" = [])),
)]
pub async fn lookup(
    State(state): State<AppState>,
    Path((contest_id, order_id)): Path<(String, String)>,
    Query(query): Query<LookupQuery>,
    headers: HeaderMap,
) -> Result<Reply<PurchaseRecord>, ApiError> {
    let contest = resolve_contest(&state, &contest_id).await?;
    // A header credential only: a GET has no body, and a signature over the empty body would
    // prove nothing about the URL.
    auth::authenticate_lookup(&headers, &contest, Utc::now())?;

    let source = match query.source.as_deref() {
        Some(raw) => {
            Source::parse(raw).map_err(|error| ApiError::field("source", error.to_string()))?
        }
        None => Source::Api,
    };
    let order_id =
        OrderId::parse(&order_id).map_err(|error| ApiError::field("orderId", error.to_string()))?;
    let purchase_id = PurchaseId::derive(&contest.id, source, &order_id);
    let record = shared::db::purchases::find(&state.db, &contest.id, &purchase_id)
        .await?
        .ok_or(ApiError::NotFound("purchase"))?;
    let status = PurchaseStatus::parse(&record.status).ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!(
            "stored purchase status {:?}",
            record.status
        ))
    })?;
    Ok(Reply::ok(PurchaseRecord {
        purchase_id: record.id,
        order_id: order_id.as_str().to_owned(),
        entry_id: record.entry_id,
        email: record.email,
        amount: record.amount.to_string(),
        currency: record.currency,
        points_awarded: record.points_awarded,
        points_reversed: record.points_reversed,
        refunded_amount: record.refunded_amount.to_string(),
        status,
        recorded_at: record.recorded_at,
    }))
}
