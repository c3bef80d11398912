//! Entries through the admin API: signup, read, leaderboard (disqualified entries left out).

use std::collections::HashMap;

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::Response,
};
use serde_json::{json, Value};
use shared::{
    db::{self, entries::Entry},
    email::Email,
};

use crate::{
    body::{parse_object, Fields, RawBody},
    error::{success, ApiError},
    state::AppState,
};

/// Default and largest leaderboard sizes.
const DEFAULT_LIMIT: i64 = 10;
const MAX_LIMIT: i64 = 1000;

/// `POST /api/contests/:id/entries` `{email, name?, referralCode?}`: a signup, applied at once
/// (201 when created, 200 with `alreadyExists` when the email already had an entry).
pub async fn create(
    State(state): State<AppState>,
    Path(contest_id): Path<String>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let contest = super::load_contest(&state, &contest_id).await?;
    let object = parse_object(&body)?;
    let fields = Fields::new(&object);
    let email = Email::parse(fields.required_str("email")?)
        .map_err(|error| ApiError::field("email", error.to_string()))?;
    let name = fields
        .optional_str("name")?
        .map(str::trim)
        .filter(|n| !n.is_empty());
    if name.is_some_and(|n| n.chars().count() > 200) {
        return Err(ApiError::field("name", "must be at most 200 characters"));
    }
    let referral_code = fields.optional_str("referralCode")?;

    let signup = db::entries::Signup {
        email: &email,
        name,
        phone: None,
        referral_code,
    };
    let mut attempts = 0;
    let outcome = loop {
        attempts += 1;
        let mut tx = state.db.begin().await?;
        match db::entries::sign_up(&mut tx, &contest, signup.clone()).await {
            Ok(outcome) => {
                tx.commit().await?;
                break outcome;
            }
            Err(error) if attempts < 3 && db::is_retryable(&error) => continue,
            Err(error) => return Err(error.into()),
        }
    };
    let status = if outcome.already_exists {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut data = entry_json(&outcome.entry);
    data["alreadyExists"] = outcome.already_exists.into();
    Ok(success(status, data))
}

/// `GET /api/contests/:id/entries/:entryId`.
pub async fn get(
    State(state): State<AppState>,
    Path((contest_id, entry_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let contest = super::load_contest(&state, &contest_id).await?;
    let entry_id = parse_entry_id(&entry_id)?;
    let entry = db::entries::find(&state.db, &contest.id, entry_id)
        .await?
        .ok_or(ApiError::NotFound("entry"))?;
    Ok(success(StatusCode::OK, entry_json(&entry)))
}

/// `GET /api/contests/:id/leaderboard?limit=N` (default 10, at most 1000).
pub async fn leaderboard(
    State(state): State<AppState>,
    Path(contest_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let contest = super::load_contest(&state, &contest_id).await?;
    let limit = match query.get("limit") {
        None => DEFAULT_LIMIT,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::field(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_LIMIT}"),
                )
            })?,
    };
    let rows = db::entries::leaderboard(&state.db, &contest.id, limit).await?;
    let entries: Vec<Value> = rows
        .iter()
        .map(|row| {
            json!({
                "rank": row.rank,
                "entryId": row.entry.id,
                "email": row.entry.email,
                "name": row.entry.name,
                "points": row.entry.points,
            })
        })
        .collect();
    Ok(success(StatusCode::OK, json!({ "entries": entries })))
}

/// An entry id from a path: `ent_` + base-32; anything else (a NUL byte included) cannot exist
/// and is 404 without a query.
pub fn parse_entry_id(raw: &str) -> Result<&str, ApiError> {
    let valid = raw.starts_with("ent_")
        && raw.len() <= 64
        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if valid {
        Ok(raw)
    } else {
        Err(ApiError::NotFound("entry"))
    }
}

/// An entry as the API shows it.
pub fn entry_json(entry: &Entry) -> Value {
    json!({
        "entryId": entry.id,
        "email": entry.email,
        "name": entry.name,
        "points": entry.points,
        "referralCode": entry.referral_code,
        "referredBy": entry.referred_by,
        "createdAt": entry.created_at,
        "disqualified": entry.disqualified(),
        "disqualifiedAt": entry.disqualified_at,
        "disqualificationReason": entry.disqualification_reason,
    })
}
