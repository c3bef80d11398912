//! Operators' tools on one entry: its points ledger, manual adjustments (idempotent per
//! `Idempotency-Key`), disqualification and reinstatement.
//!
//! Each handler is a thin wrapper over a function taking the pool, the contest and the parsed
//! JSON body, which `receiver entry …` calls too: the command line and the API validate and
//! apply exactly the same way.

use axum::{
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use serde_json::{json, Map, Value};
use shared::{
    contest::Contest,
    db::{
        self,
        operator::{AdjustError, Adjusted, Adjustment},
    },
    points::POINTS_LIMIT,
};
use sqlx::PgPool;

use super::entries::{entry_json, parse_entry_id};
use crate::{
    body::{parse_object, parse_optional_object, Fields, RawBody},
    error::{success, ApiError},
    state::AppState,
};

/// Longest adjustment or disqualification reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// Longest `Idempotency-Key`, in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;
/// The header that makes an adjustment idempotent.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// `GET /api/contests/:id/entries/:entryId/ledger`.
pub async fn get(
    State(state): State<AppState>,
    Path((contest_id, entry_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let contest = super::load_contest(&state, &contest_id).await?;
    Ok(success(
        StatusCode::OK,
        ledger(&state.db, &contest, &entry_id).await?,
    ))
}

/// `POST /api/contests/:id/entries/:entryId/points` `{points, reason}` → 201 with the entry.
pub async fn post_points(
    State(state): State<AppState>,
    Path((contest_id, entry_id)): Path<(String, String)>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let contest = super::load_contest(&state, &contest_id).await?;
    let key = match headers.get(IDEMPOTENCY_KEY) {
        Some(value) => Some(value.to_str().map_err(|_| invalid_key())?.to_owned()),
        None => None,
    };
    let object = parse_object(&body)?;
    let entry = adjust(&state.db, &contest, &entry_id, &object, key.as_deref()).await?;
    Ok(success(StatusCode::CREATED, entry))
}

/// `POST /api/contests/:id/entries/:entryId/disqualify` `{reason?}` → 200 with the entry.
pub async fn post_disqualify(
    State(state): State<AppState>,
    Path((contest_id, entry_id)): Path<(String, String)>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let contest = super::load_contest(&state, &contest_id).await?;
    let object = parse_optional_object(&body)?;
    let entry = disqualify(&state.db, &contest, &entry_id, &object, true).await?;
    Ok(success(StatusCode::OK, entry))
}

/// `POST /api/contests/:id/entries/:entryId/reinstate` (no body, or `{}`) → 200 with the entry.
pub async fn post_reinstate(
    State(state): State<AppState>,
    Path((contest_id, entry_id)): Path<(String, String)>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let contest = super::load_contest(&state, &contest_id).await?;
    let object = parse_optional_object(&body)?;
    let entry = disqualify(&state.db, &contest, &entry_id, &object, false).await?;
    Ok(success(StatusCode::OK, entry))
}

/// The entry's points and every change of them, oldest first: `{points, changes}`.
pub async fn ledger(db: &PgPool, contest: &Contest, entry_id: &str) -> Result<Value, ApiError> {
    let entry_id = parse_entry_id(entry_id)?;
    // One snapshot for both reads, so `points` is exactly the sum of `changes`.
    let mut tx = db.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let entry = db::entries::find(&mut *tx, &contest.id, entry_id)
        .await?
        .ok_or(ApiError::NotFound("entry"))?;
    let changes = db::ledger::history(&mut *tx, entry_id).await?;
    tx.commit().await?;
    let changes: Vec<Value> = changes
        .iter()
        .map(|change| {
            json!({
                "kind": change.kind,
                "points": change.points,
                "purchaseId": change.purchase_id,
                "reason": change.reason,
                "at": change.at,
            })
        })
        .collect();
    Ok(json!({ "entryId": entry.id, "points": entry.points, "changes": changes }))
}

/// Validates and applies a manual adjustment `{points, reason}`; returns the entry JSON (the
/// stored one when `key` was used before on this entry with the same change).
pub async fn adjust(
    db: &PgPool,
    contest: &Contest,
    entry_id: &str,
    body: &Map<String, Value>,
    key: Option<&str>,
) -> Result<Value, ApiError> {
    let entry_id = parse_entry_id(entry_id)?;
    if let Some(key) = key {
        let visible = key.bytes().all(|b| b.is_ascii_graphic());
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || !visible {
            return Err(invalid_key());
        }
    }
    let fields = Fields::new(body);
    fields.only(&["points", "reason"])?;
    let limit = POINTS_LIMIT;
    let points = fields
        .optional_i64("points", -limit..=limit)?
        .filter(|points| *points != 0)
        .ok_or_else(|| {
            ApiError::field(
                "points",
                format!("must be a non-zero whole number from -{limit} to {limit}"),
            )
        })?;
    let reason = required_reason(&fields)?;
    let adjustment = Adjustment {
        points,
        reason,
        idempotency_key: key,
    };

    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut tx = db.begin().await?;
        let result =
            db::operator::adjust(&mut tx, &contest.id, entry_id, adjustment, entry_json).await;
        match result {
            Ok(Adjusted::Applied(entry)) => {
                tx.commit().await?;
                tracing::info!(contest_id = %contest.id, entry_id, points, "points adjusted");
                return Ok(entry);
            }
            Ok(Adjusted::Replayed(entry)) => return Ok(entry),
            Err(AdjustError::Database(error)) if attempts < 3 && db::is_retryable(&error) => {
                continue
            }
            Err(AdjustError::Database(error)) => return Err(error.into()),
            Err(AdjustError::NotFound) => return Err(ApiError::NotFound("entry")),
            Err(AdjustError::KeyReused) => return Err(ApiError::IdempotencyKeyReused),
            Err(error @ AdjustError::PointsLimit { .. }) => {
                return Err(ApiError::PointsLimit(error.to_string()))
            }
        }
    }
}

/// Disqualifies (`{reason?}`) or reinstates (`{}`) an entry; returns the entry JSON.
pub async fn disqualify(
    db: &PgPool,
    contest: &Contest,
    entry_id: &str,
    body: &Map<String, Value>,
    disqualify: bool,
) -> Result<Value, ApiError> {
    let entry_id = parse_entry_id(entry_id)?;
    let fields = Fields::new(body);
    let reason = if disqualify {
        fields.only(&["reason"])?;
        match fields.get("reason") {
            Some(_) => Some(required_reason(&fields)?),
            None => None,
        }
    } else {
        fields.only(&[])?;
        None
    };
    let mut tx = db.begin().await?;
    let entry = db::operator::set_disqualified(
        &mut tx,
        &contest.id,
        entry_id,
        disqualify.then_some(reason),
    )
    .await?
    .ok_or(ApiError::NotFound("entry"))?;
    tx.commit().await?;
    tracing::info!(contest_id = %contest.id, entry_id, disqualified = disqualify, "entry disqualification changed");
    Ok(entry_json(&entry))
}

/// `reason`: required, trimmed, 1–500 characters.
fn required_reason<'a>(fields: &Fields<'a>) -> Result<&'a str, ApiError> {
    let reason = fields.required_str("reason")?.trim();
    if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::field(
            "reason",
            format!("must be 1 to {MAX_REASON_CHARS} characters"),
        ));
    }
    Ok(reason)
}

fn invalid_key() -> ApiError {
    ApiError::field(
        IDEMPOTENCY_KEY,
        format!("must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"),
    )
}
