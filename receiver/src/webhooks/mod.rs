//! The public listener: webhook endpoints and purchase lookups.
//!
//! - [`purchase`]: the generic purchase webhook and the purchase lookup.
//! - [`signup`]: the signup webhook.
//! - [`refund`]: the generic refund webhook, and the publishing of every reversal.
//! - [`provider`]: Shopify, Stripe and Coinflow endpoints.
//! - [`gate`]: what every webhook route refuses before reading the body.

pub mod gate;
pub mod provider;
pub mod purchase;
pub mod refund;
pub mod signup;

use std::sync::Arc;

use axum::{routing::post, Router};
use shared::{contest::Contest, ids::ContestId};

use crate::{contest_cache::Lookup, error::ApiError, state::AppState};

/// Routes of the public listener.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/webhooks/purchase/{contest_id}",
            post(purchase::receive),
        )
        .route(
            "/api/webhooks/purchase/{contest_id}/{order_id}",
            axum::routing::get(purchase::lookup),
        )
        .route("/api/webhooks/signup/{contest_id}", post(signup::receive))
        .route("/api/webhooks/refund/{contest_id}", post(refund::receive))
        .route(
            "/api/webhooks/referral/shopify/{contest_id}",
            post(provider::shopify_referral),
        )
        .route(
            "/api/webhooks/referral/stripe/{contest_id}",
            post(provider::stripe_referral),
        )
        .route(
            "/api/webhooks/coinflow/{contest_id}",
            post(provider::coinflow),
        )
}

/// Resolves the contest of a webhook URL from the cache: an id that cannot exist is 404 without
/// a lookup; an uncached id while Postgres is unreachable is 503 (we cannot be sure it is unknown).
pub async fn resolve_contest(state: &AppState, raw_id: &str) -> Result<Arc<Contest>, ApiError> {
    let id = ContestId::parse(raw_id).map_err(|_| ApiError::ContestNotFound)?;
    match state.cache.get(&id).await {
        Lookup::Found(contest) => Ok(contest),
        Lookup::NotFound => Err(ApiError::ContestNotFound),
        Lookup::Unavailable => Err(ApiError::DatabaseUnavailable),
    }
}

/// Publishes an event, turning any broker trouble into 503.
pub async fn publish(state: &AppState, envelope: &shared::event::Envelope) -> Result<(), ApiError> {
    state.publisher.publish(envelope).await.map_err(|error| {
        tracing::warn!(%error, message_id = envelope.event.message_id(), "publish failed");
        ApiError::BrokerUnavailable
    })
}
