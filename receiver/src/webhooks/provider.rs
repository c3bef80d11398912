//! Payment-provider endpoints: Shopify and Stripe referral webhooks, Coinflow, and Shopify
//! deliveries sent to the generic purchase URL. Verification and parsing live in
//! [`crate::providers`]; this module turns a verdict into a published purchase, a published
//! reversal (through [`super::refund::accept`]), or an `ignored` 200.

use axum::{
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use chrono::{DateTime, Utc};
use serde_json::json;
use shared::{
    contest::Contest,
    event::{Envelope, Event, PurchaseEvent},
    ids::{PurchaseId, Source},
};

use super::{publish, refund, resolve_contest};
use crate::{
    body::RawBody,
    error::{success, ApiError},
    metrics::{with_outcome, Outcome},
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

/// `POST /api/webhooks/referral/shopify/:contestId`.
pub async fn shopify_referral(
    State(state): State<AppState>,
    Path(contest_id): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
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

/// `POST /api/webhooks/referral/stripe/:contestId`.
pub async fn stripe_referral(
    State(state): State<AppState>,
    Path(contest_id): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
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

/// `POST /api/webhooks/coinflow/:contestId`.
pub async fn coinflow(
    State(state): State<AppState>,
    Path(contest_id): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
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
) -> Result<Response, ApiError> {
    let contest = resolve_contest(state, contest_id).await?;
    let now = Utc::now();
    provider.verify(headers, body, &contest, now)?;
    accept(state, &contest, headers, body, provider, referral, now).await
}

/// Handles an already authenticated provider delivery: a purchase is published and answered
/// with its `purchaseId`, a reversal with its `reversalId`, anything else is `200 ignored`.
pub async fn accept(
    state: &AppState,
    contest: &Contest,
    headers: &HeaderMap,
    body: &[u8],
    provider: Provider,
    referral: Referral,
    now: DateTime<Utc>,
) -> Result<Response, ApiError> {
    if !contest.purchase_tracking {
        return Err(ApiError::TrackingDisabled);
    }
    let purchase = match provider.parse(headers, body, contest.accept_test_events) {
        Verdict::Award(purchase) => purchase,
        Verdict::Reverse(reversal) => {
            return refund::accept(state, contest, provider.source(), reversal, now, None).await
        }
        Verdict::Ignored(reason) => {
            tracing::info!(contest_id = %contest.id, source = %provider.source(), %reason, "provider event ignored");
            return Ok(with_outcome(
                success(
                    StatusCode::OK,
                    json!({ "status": "ignored", "reason": reason }),
                ),
                Outcome::IGNORED,
            ));
        }
    };
    let source = provider.source();
    let purchase_id = PurchaseId::derive(&contest.id, source, &purchase.order_id);
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
    Ok(with_outcome(
        success(
            StatusCode::OK,
            json!({ "purchaseId": purchase_id, "orderId": purchase.order_id, "status": "accepted" }),
        ),
        Outcome::ACCEPTED,
    ))
}
