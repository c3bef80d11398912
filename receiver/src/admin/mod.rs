//! The admin API on `ADMIN_ADDR`, behind `Authorization: Bearer <ADMIN_TOKEN>`.
//!
//! - [`contests`]: create, read, change contests and rotate their webhook secret.
//! - [`entries`]: create, read, list and erase entries, and the leaderboard.
//! - [`paging`]: `?limit=N&after=ID` cursor paging of the lists.
//! - [`ledger`]: an entry's points ledger, manual adjustments, disqualification.

pub mod contests;
pub mod entries;
pub mod ledger;
pub mod paging;

use axum::{
    extract::{Request, State},
    http::header,
    middleware::Next,
    response::Response,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::{authenticated, hmac::constant_time_eq, refused, Reason, Scheme},
    error::ApiError,
    state::AppState,
};

/// Routes of the admin API (all behind the bearer token, see [`require_admin`]), each with its
/// OpenAPI operation: the router and the document are built from this one list.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(contests::create, contests::list))
        .routes(routes!(contests::get, contests::patch))
        .routes(routes!(contests::rotate_secret))
        .routes(routes!(entries::create, entries::list))
        .routes(routes!(entries::get, entries::erase))
        .routes(routes!(ledger::get))
        .routes(routes!(ledger::post_points))
        .routes(routes!(ledger::post_disqualify))
        .routes(routes!(ledger::post_reinstate))
        .routes(routes!(entries::leaderboard))
}

/// 503 `admin_disabled` without a configured token; 401 unless the bearer token matches.
pub async fn require_admin(
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
