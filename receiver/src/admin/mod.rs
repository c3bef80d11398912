//! The admin API on `ADMIN_ADDR`, behind `Authorization: Bearer <ADMIN_TOKEN>`.
//!
//! - [`contests`]: create, read, change contests and rotate their webhook secret.
//! - [`entries`]: create and read entries, and the leaderboard.
//! - [`ledger`]: an entry's points ledger, manual adjustments, disqualification.

pub mod contests;
pub mod entries;
pub mod ledger;

use axum::{
    extract::{Request, State},
    http::header,
    middleware::{self, Next},
    response::Response,
    routing::{get, post},
    Router,
};

use crate::{
    auth::{authenticated, hmac::constant_time_eq, refused, Reason, Scheme},
    error::ApiError,
    state::AppState,
};

/// Routes of the admin API, all behind the bearer token.
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/api/contests", post(contests::create))
        .route(
            "/api/contests/{contest_id}",
            get(contests::get).patch(contests::patch),
        )
        .route(
            "/api/contests/{contest_id}/webhook-secret/rotate",
            post(contests::rotate_secret),
        )
        .route("/api/contests/{contest_id}/entries", post(entries::create))
        .route(
            "/api/contests/{contest_id}/entries/{entry_id}",
            get(entries::get),
        )
        .route(
            "/api/contests/{contest_id}/entries/{entry_id}/ledger",
            get(ledger::get),
        )
        .route(
            "/api/contests/{contest_id}/entries/{entry_id}/points",
            post(ledger::post_points),
        )
        .route(
            "/api/contests/{contest_id}/entries/{entry_id}/disqualify",
            post(ledger::post_disqualify),
        )
        .route(
            "/api/contests/{contest_id}/entries/{entry_id}/reinstate",
            post(ledger::post_reinstate),
        )
        .route(
            "/api/contests/{contest_id}/leaderboard",
            get(entries::leaderboard),
        )
        .route_layer(middleware::from_fn_with_state(state, require_admin))
}

/// 503 `admin_disabled` without a configured token; 401 unless the bearer token matches.
async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(expected) = state.config.admin_token.as_deref() else {
        return Err(ApiError::AdminDisabled);
    };
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return Err(refused(Scheme::AdminToken, Reason::Missing));
    };
    let given = value
        .to_str()
        .ok()
        .and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .ok_or(refused(Scheme::AdminToken, Reason::Malformed))?;
    authenticated(
        constant_time_eq(given.as_bytes(), expected.as_bytes()),
        Scheme::AdminToken,
    )?;
    Ok(next.run(request).await)
}

/// Reads a contest from the database: the admin API always sees the latest write, whatever the
/// cache holds.
pub async fn load_contest(
    state: &AppState,
    raw_id: &str,
) -> Result<shared::contest::Contest, ApiError> {
    let id = shared::ids::ContestId::parse(raw_id).map_err(|_| ApiError::ContestNotFound)?;
    shared::db::contests::find(&state.db, &id)
        .await?
        .ok_or(ApiError::ContestNotFound)
}
