//! Operators' tools on one entry: its points ledger, manual adjustments (idempotent per
//! `Idempotency-Key`), disqualification and reinstatement.
//!
//! Each handler is a thin wrapper over a function taking the pool, the contest and the parsed
//! JSON body, which `receiver entry …` calls too: the command line and the API validate and
//! apply exactly the same way.

use axum::{
    extract::{Path, State},
    http::HeaderMap,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use shared::{
    contest::Contest,
    db::{
        self,
        ledger::LedgerKind,
        operator::{AdjustError, Adjusted, Adjustment},
    },
    points::POINTS_LIMIT,
};
use sqlx::PgPool;
use utoipa::ToSchema;

use super::entries::{parse_entry_id, EntryView};
use crate::{
    api::{
        envelope::{BadRequest, Conflict, NotFound, ServiceUnavailable, Unauthorized},
        fields::Text,
        schema::{ContestIdParam, EntryIdParam},
        Envelope as Answer, Reply,
    },
    body::{self, RawBody},
    error::ApiError,
    state::AppState,
};

/// Longest adjustment or disqualification reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// Longest `Idempotency-Key`, in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;
/// The header that makes an adjustment idempotent.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// `POST /api/contests/{contestId}/entries/{entryId}/points`: a manual change of points. Unknown
/// fields are `400` naming them.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"points": 250, "reason": "winner of the photo challenge"}))]
pub struct PointsAdjustment {
    /// The change: a non-zero whole number, may be negative, from -9·10^15 to 9·10^15.
    #[serde(default)]
    #[schema(value_type = i64, minimum = -9_000_000_000_000_000_i64, maximum = 9_000_000_000_000_000_i64, required = true)]
    pub points: Option<NonZeroPoints>,
    /// Why, written to the ledger: 1–500 characters after trimming.
    #[serde(default)]
    #[schema(value_type = String, min_length = 1, max_length = 500, required = true)]
    pub reason: Option<Text>,
}

/// A manual change of points: a non-zero whole number within ±[`POINTS_LIMIT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonZeroPoints(pub i64);

impl NonZeroPoints {
    fn message() -> String {
        format!("must be a non-zero whole number from -{POINTS_LIMIT} to {POINTS_LIMIT}")
    }
}

impl<'de> Deserialize<'de> for NonZeroPoints {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        match serde_json::Value::deserialize(deserializer)?.as_i64() {
            Some(points) if points != 0 && (-POINTS_LIMIT..=POINTS_LIMIT).contains(&points) => {
                Ok(NonZeroPoints(points))
            }
            _ => Err(D::Error::custom(Self::message())),
        }
    }
}

/// `POST /api/contests/{contestId}/entries/{entryId}/disqualify`: the body is optional. Unknown
/// fields are `400` naming them.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "card testing"}))]
pub struct Disqualification {
    /// Why: 1–500 characters after trimming. Disqualifying again keeps the first time and
    /// replaces the reason only when one is given.
    #[serde(default)]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 500)]
    pub reason: Option<Text>,
}

/// `POST /api/contests/{contestId}/entries/{entryId}/reinstate`: no body, or `{}`; any field is
/// `400` naming it.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reinstatement {}

/// An entry's points and every change of them: `points` is always the sum of `changes[].points`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ledger {
    /// The entry.
    pub entry_id: String,
    /// Its points now.
    pub points: i64,
    /// Every change, oldest first.
    pub changes: Vec<LedgerChange>,
}

/// One change of an entry's points.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LedgerChange {
    /// Why an entry's points changed: `purchase`; `referral` (credit for a purchase made with
    /// the entry's code); `signup` (signup bonuses, and the opening balance of entries older
    /// than the ledger); `refund` (points taken back for refunded money, also from the
    /// advocate's credit); `chargeback` (taken back by a chargeback, or given back, positive,
    /// when it is won); `adjustment` (an operator's manual change).
    pub kind: LedgerKind,
    /// The change (negative when points were taken back); never 0.
    pub points: i64,
    /// The purchase it concerns (purchases, referral credits, refunds, chargebacks); else null.
    #[schema(required = true)]
    pub purchase_id: Option<String>,
    /// Free text: the operator's reason, the refund or dispute id, the referral bonus; else null.
    #[schema(required = true)]
    pub reason: Option<String>,
    /// When the change was committed.
    #[schema(value_type = String, format = DateTime)]
    pub at: DateTime<Utc>,
}

/// An entry's points ledger
///
/// Every change of the entry's points, oldest first; `points` is their sum.
#[utoipa::path(
    get,
    path = "/api/contests/{contestId}/entries/{entryId}/ledger",
    tag = "admin",
    operation_id = "getEntryLedger",
    params(ContestIdParam, EntryIdParam),
    responses(
        (status = 200, description = "The ledger.", body = Answer<Ledger>),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    ),
    security(("adminToken" = [])),
)]
pub async fn get(
    State(state): State<AppState>,
    Path((contest_id, entry_id)): Path<(String, String)>,
) -> Result<Reply<Ledger>, ApiError> {
    let contest = super::load_contest(&state, &contest_id).await?;
    Ok(Reply::ok(ledger(&state.db, &contest, &entry_id).await?))
}

/// Adjust an entry's points
///
/// A manual change with a reason, written to the ledger as an `adjustment`. With an
/// `Idempotency-Key`, repeating the call on the same entry applies it once and answers the
/// same; the same key with a different change is `409` `idempotency_key_reused`. A change
/// that would take the entry beyond ±9·10^15 points is `409` `points_limit`.
#[utoipa::path(
    post,
    path = "/api/contests/{contestId}/entries/{entryId}/points",
    tag = "admin",
    operation_id = "adjustEntryPoints",
    params(
        ContestIdParam,
        EntryIdParam,
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255,
            pattern = "^[!-~]{1,255}$", description = "Applies the change once per entry, \
            however often it is sent (1–255 visible ASCII characters)."),
    ),
    request_body(content = PointsAdjustment, content_type = "application/json"),
    responses(
        (status = 201, description = "The entry after the change (or, for a repeated \
            `Idempotency-Key`, the answer given the first time).", body = Answer<EntryView>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = ServiceUnavailable),
    ),
    security(("adminToken" = [])),
)]
pub async fn post_points(
    State(state): State<AppState>,
    Path((contest_id, entry_id)): Path<(String, String)>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Reply<EntryView>, ApiError> {
    let contest = super::load_contest(&state, &contest_id).await?;
    let key = match headers.get(IDEMPOTENCY_KEY) {
        Some(value) => Some(value.to_str().map_err(|_| invalid_key())?.to_owned()),
        None => None,
    };
    let request = body::strict::<PointsAdjustment>(&body)?;
    let entry = adjust(&state.db, &contest, &entry_id, request, key.as_deref()).await?;
    Ok(Reply::created(entry))
}

/// Disqualify an entry
///
/// The entry leaves the leaderboard; it keeps its points and ledger and keeps earning from
/// its purchases, so reinstating it shows the truth.
#[utoipa::path(
    post,
    path = "/api/contests/{contestId}/entries/{entryId}/disqualify",
    tag = "admin",
    operation_id = "disqualifyEntry",
    params(ContestIdParam, EntryIdParam),
    request_body(content = Option<Disqualification>, content_type = "application/json"),
    responses(
        (status = 200, description = "The entry, `disqualified: true`.", body = Answer<EntryView>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    ),
    security(("adminToken" = [])),
)]
pub async fn post_disqualify(
    State(state): State<AppState>,
    Path((contest_id, entry_id)): Path<(String, String)>,
    RawBody(body): RawBody,
) -> Result<Reply<EntryView>, ApiError> {
    let contest = super::load_contest(&state, &contest_id).await?;
    let request = body::strict_or_empty::<Disqualification>(&body)?;
    let entry = disqualify(&state.db, &contest, &entry_id, Some(request)).await?;
    Ok(Reply::ok(entry))
}

/// Reinstate an entry
///
/// A disqualified entry returns to the leaderboard with all its points.
#[utoipa::path(
    post,
    path = "/api/contests/{contestId}/entries/{entryId}/reinstate",
    tag = "admin",
    operation_id = "reinstateEntry",
    params(ContestIdParam, EntryIdParam),
    request_body(content = Option<Reinstatement>, content_type = "application/json"),
    responses(
        (status = 200, description = "The entry, `disqualified: false`.", body = Answer<EntryView>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    ),
    security(("adminToken" = [])),
)]
pub async fn post_reinstate(
    State(state): State<AppState>,
    Path((contest_id, entry_id)): Path<(String, String)>,
    RawBody(body): RawBody,
) -> Result<Reply<EntryView>, ApiError> {
    let contest = super::load_contest(&state, &contest_id).await?;
    body::strict_or_empty::<Reinstatement>(&body)?;
    let entry = disqualify(&state.db, &contest, &entry_id, None).await?;
    Ok(Reply::ok(entry))
}

/// The entry's points and every change of them, oldest first.
pub async fn ledger(db: &PgPool, contest: &Contest, entry_id: &str) -> Result<Ledger, ApiError> {
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
    Ok(Ledger {
        entry_id: entry.id.as_str().to_owned(),
        points: entry.points,
        changes: changes
            .into_iter()
            .map(|change| LedgerChange {
                kind: change.kind,
                points: change.points,
                purchase_id: change.purchase_id,
                reason: change.reason,
                at: change.at,
            })
            .collect(),
    })
}

/// Validates and applies a manual adjustment; returns the entry (the stored answer when `key`
/// was used before on this entry with the same change).
pub async fn adjust(
    db: &PgPool,
    contest: &Contest,
    entry_id: &str,
    request: PointsAdjustment,
    key: Option<&str>,
) -> Result<EntryView, ApiError> {
    let entry_id = parse_entry_id(entry_id)?;
    if let Some(key) = key {
        let visible = key.bytes().all(|b| b.is_ascii_graphic());
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || !visible {
            return Err(invalid_key());
        }
    }
    let points = request
        .points
        .ok_or_else(|| ApiError::field("points", NonZeroPoints::message()))?
        .0;
    let reason = required_reason(request.reason.as_ref())?;
    let adjustment = Adjustment {
        points,
        reason,
        idempotency_key: key,
    };
    let render = |entry: &db::entries::Entry| {
        serde_json::to_value(EntryView::from(entry)).unwrap_or(serde_json::Value::Null)
    };

    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut tx = db.begin().await?;
        let result = db::operator::adjust(&mut tx, &contest.id, entry_id, adjustment, render).await;
        let stored = match result {
            Ok(Adjusted::Applied(entry)) => {
                tx.commit().await?;
                tracing::info!(contest_id = %contest.id, entry_id, points, "points adjusted");
                entry
            }
            Ok(Adjusted::Replayed(entry)) => entry,
            Err(AdjustError::Database(error)) if attempts < 3 && db::is_retryable(&error) => {
                continue
            }
            Err(AdjustError::Database(error)) => return Err(error.into()),
            Err(AdjustError::NotFound) => return Err(ApiError::NotFound("entry")),
            Err(AdjustError::KeyReused) => return Err(ApiError::IdempotencyKeyReused),
            Err(error @ AdjustError::PointsLimit { .. }) => {
                return Err(ApiError::PointsLimit(error.to_string()))
            }
        };
        return serde_json::from_value(stored).map_err(|error| {
            ApiError::Internal(anyhow::anyhow!("stored adjustment answer: {error}"))
        });
    }
}

/// Disqualifies (`Some`, with its optional reason) or reinstates (`None`) an entry; returns it.
pub async fn disqualify(
    db: &PgPool,
    contest: &Contest,
    entry_id: &str,
    disqualification: Option<Disqualification>,
) -> Result<EntryView, ApiError> {
    let entry_id = parse_entry_id(entry_id)?;
    let reason = match &disqualification {
        Some(Disqualification {
            reason: Some(reason),
        }) => Some(required_reason(Some(reason))?),
        _ => None,
    };
    let disqualify = disqualification.is_some();
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
    Ok(EntryView::from(&entry))
}

/// `reason`: required, trimmed, 1–500 characters.
fn required_reason(reason: Option<&Text>) -> Result<&str, ApiError> {
    let reason = reason
        .ok_or_else(|| ApiError::field("reason", "is required"))?
        .0
        .trim();
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
