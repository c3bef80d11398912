//! The public listener: webhook endpoints and purchase lookups.
//!
//! - [`purchase`]: the generic purchase webhook and the purchase lookup.
//! - [`signup`]: the signup webhook.
//! - [`refund`]: the generic refund webhook, and the publishing of every reversal.
//! - [`provider`]: Shopify, Stripe and Coinflow endpoints.
//! - [`gate`]: what every webhook route refuses before reading the body.
//! - [`answer`]: what the webhooks answer.

pub mod answer;
pub mod gate;
pub mod provider;
pub mod purchase;
pub mod refund;
pub mod signup;

use std::sync::Arc;

use shared::{contest::Contest, ids::ContestId};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{contest_cache::Lookup, error::ApiError, state::AppState};

/// Routes of the public listener, each with its OpenAPI operation: the router and the document
/// are built from this one list, so no route can be served undocumented or documented unserved.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(purchase::receive))
        .routes(routes!(purchase::lookup))
        .routes(routes!(signup::receive))
        .routes(routes!(refund::receive))
        .routes(routes!(provider::shopify_referral))
        .routes(routes!(provider::stripe_referral))
        .routes(routes!(provider::coinflow))
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
