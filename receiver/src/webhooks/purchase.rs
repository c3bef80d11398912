//! `POST /api/webhooks/purchase/:contestId` (the generic purchase webhook) and
//! `GET /api/webhooks/purchase/:contestId/:orderId` (has the worker recorded it yet?).

use std::collections::HashMap;

use axum::{
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use chrono::Utc;
use serde_json::json;
use shared::{
    email::Email,
    event::{Envelope, Event, PurchaseEvent},
    ids::{OrderId, PurchaseId, Source},
    money::{Currency, Money},
};

use super::{
    provider::{self, Provider, Referral},
    resolve_contest,
};
use crate::{
    auth::{self, GenericCredential, ShopifyOrders},
    body::{parse_object, Fields, RawBody},
    error::{success, ApiError},
    metrics::{with_outcome, Outcome},
    state::AppState,
    sync::{self, Asked},
};

/// Receives one purchase: contest → authentication → tracking switch → body → publish → 200
/// (with the worker's outcome when the sender, or the contest, waits for it).
pub async fn receive(
    State(state): State<AppState>,
    Path(contest_id): Path<String>,
    asked: Asked,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let contest = resolve_contest(&state, &contest_id).await?;
    let now = Utc::now();
    let credential =
        auth::authenticate_generic(&headers, &body, &contest, now, ShopifyOrders::Accepted)?;
    if credential == GenericCredential::Shopify {
        return provider::accept(
            &state,
            &contest,
            &headers,
            &body,
            Provider::Shopify,
            Referral::Ignore,
            now,
        )
        .await;
    }
    if !contest.purchase_tracking {
        return Err(ApiError::TrackingDisabled);
    }

    let object = parse_object(&body)?;
    let fields = Fields::new(&object);
    let email = Email::parse(fields.required_str("email")?)
        .map_err(|error| ApiError::field("email", error.to_string()))?;
    let order_id = OrderId::parse(&fields.required_id("orderId")?)
        .map_err(|error| ApiError::field("orderId", error.to_string()))?;
    let amount = fields.decimal("amount", fields.required("amount")?)?;
    let currency = match fields.optional_str("currency")? {
        Some(code) => {
            Currency::parse(code).map_err(|error| ApiError::field("currency", error.to_string()))?
        }
        None => Currency::USD,
    };
    let money = Money::new(amount, currency)
        .map_err(|error| ApiError::field("amount", error.to_string()))?;

    let purchase_id = PurchaseId::derive(&contest.id, Source::Api, &order_id);
    let envelope = Envelope::new(Event::Purchase(PurchaseEvent {
        purchase_id: purchase_id.clone(),
        contest_id: contest.id.clone(),
        source: Source::Api,
        order_id: order_id.clone(),
        email,
        money,
        received_at: now,
        referral_codes: Vec::new(),
        payment_intent: None,
    }));
    let published = sync::publish(&state, &envelope, asked.wait(contest.sync_responses)).await?;
    tracing::info!(%purchase_id, contest_id = %contest.id, "purchase accepted");
    if let Some(answer) = published.purchase_answer(&order_id) {
        return Ok(answer);
    }
    Ok(published.accepted(with_outcome(
        success(
            StatusCode::OK,
            json!({ "purchaseId": purchase_id, "orderId": order_id, "status": "accepted" }),
        ),
        Outcome::ACCEPTED,
    )))
}

/// Looks up a purchase by order id: 200 once the worker has recorded it, 404 before.
pub async fn lookup(
    State(state): State<AppState>,
    Path((contest_id, order_id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let contest = resolve_contest(&state, &contest_id).await?;
    // A header credential only: a GET has no body, and a signature over the empty body would
    // prove nothing about the URL.
    auth::authenticate_lookup(&headers, &contest, Utc::now())?;

    let source = match query.get("source") {
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
    Ok(success(
        StatusCode::OK,
        json!({
            "purchaseId": record.id,
            "orderId": order_id,
            "entryId": record.entry_id,
            "email": record.email,
            "amount": record.amount.to_string(),
            "currency": record.currency,
            "pointsAwarded": record.points_awarded,
            "pointsReversed": record.points_reversed,
            "refundedAmount": record.refunded_amount.to_string(),
            "status": record.status,
            "recordedAt": record.recorded_at,
        }),
    ))
}
