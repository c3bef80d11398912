//! Operators' actions on one entry: manual adjustments (idempotent per `Idempotency-Key`) and
//! disqualification. The admin API and the `receiver entry …` commands both call these, inside
//! a transaction the caller commits.

use serde_json::Value;
use sqlx::PgConnection;

use crate::{
    db::{
        entries::{self, Entry},
        ledger::{self, LedgerKind, NewChange},
    },
    ids::ContestId,
    points::checked_total,
};

/// What a manual adjustment asks for (validated by the caller).
#[derive(Debug, Clone, Copy)]
pub struct Adjustment<'a> {
    /// The change, non-zero, within the points limit.
    pub points: i64,
    /// Why (1–500 characters), written to the ledger.
    pub reason: &'a str,
    /// The `Idempotency-Key`, when the caller sent one.
    pub idempotency_key: Option<&'a str>,
}

/// What an adjustment did.
#[derive(Debug, Clone, PartialEq)]
pub enum Adjusted {
    /// Applied now; the answer (as rendered by the caller) was stored under the key, if any.
    Applied(Value),
    /// The key was used before on this entry with the same change: nothing applied, and this is
    /// the answer given then.
    Replayed(Value),
}

/// Why an adjustment was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdjustError {
    /// No such entry in the contest.
    #[error("entry not found")]
    NotFound,
    /// The entry's total would go beyond the points limit.
    #[error("the entry has {current} points; {points} more would go beyond ±9000000000000000")]
    PointsLimit {
        /// The entry's points now.
        current: i64,
        /// The change asked for.
        points: i64,
    },
    /// The key was used before on this entry for a different change.
    #[error("this Idempotency-Key was already used on this entry for a different change")]
    KeyReused,
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Applies a manual adjustment: the entry's points and one `adjustment` ledger row, and with a
/// key, the answer `render` makes of the changed entry, all in the caller's transaction. The
/// entry is locked first, so concurrent calls with the same key serialise and the second one
/// finds the first one's answer.
pub async fn adjust(
    tx: &mut PgConnection,
    contest: &ContestId,
    entry_id: &str,
    adjustment: Adjustment<'_>,
    render: impl FnOnce(&Entry) -> Value,
) -> Result<Adjusted, AdjustError> {
    let current: i64 = sqlx::query_scalar(
        "SELECT points FROM entries WHERE contest_id = $1 AND id = $2 FOR NO KEY UPDATE",
    )
    .bind(contest.as_str())
    .bind(entry_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(AdjustError::NotFound)?;

    if let Some(key) = adjustment.idempotency_key {
        let stored: Option<(i64, String, Value)> = sqlx::query_as(
            "SELECT points, reason, response FROM adjustment_keys \
             WHERE entry_id = $1 AND idempotency_key = $2",
        )
        .bind(entry_id)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((points, reason, response)) = stored {
            return if points == adjustment.points && reason == adjustment.reason {
                Ok(Adjusted::Replayed(response))
            } else {
                Err(AdjustError::KeyReused)
            };
        }
    }

    let total = checked_total(current, adjustment.points).ok_or(AdjustError::PointsLimit {
        current,
        points: adjustment.points,
    })?;
    sqlx::query("UPDATE entries SET points = $2 WHERE id = $1")
        .bind(entry_id)
        .bind(total)
        .execute(&mut *tx)
        .await?;
    ledger::record(
        &mut *tx,
        &[NewChange {
            entry_id,
            contest_id: contest.as_str(),
            kind: LedgerKind::Adjustment,
            points: adjustment.points,
            purchase_id: None,
            reason: Some(adjustment.reason),
        }],
    )
    .await?;
    let entry = entries::find(&mut *tx, contest, entry_id)
        .await?
        .ok_or(AdjustError::NotFound)?;
    let response = render(&entry);
    if let Some(key) = adjustment.idempotency_key {
        sqlx::query(
            "INSERT INTO adjustment_keys (entry_id, idempotency_key, points, reason, response) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(entry_id)
        .bind(key)
        .bind(adjustment.points)
        .bind(adjustment.reason)
        .bind(&response)
        .execute(&mut *tx)
        .await?;
    }
    Ok(Adjusted::Applied(response))
}

/// Disqualifies an entry (`Some(reason)`, the reason itself optional) or reinstates it
/// (`None`). Disqualifying an entry already disqualified keeps its original time and replaces
/// the reason only when a new one is given. `None` when there is no such entry.
pub async fn set_disqualified(
    tx: &mut PgConnection,
    contest: &ContestId,
    entry_id: &str,
    disqualify: Option<Option<&str>>,
) -> Result<Option<Entry>, sqlx::Error> {
    let changed = match disqualify {
        Some(reason) => sqlx::query(
            "UPDATE entries SET disqualified_at = COALESCE(disqualified_at, now()), \
             disqualification_reason = COALESCE($3, disqualification_reason) \
             WHERE contest_id = $1 AND id = $2",
        )
        .bind(contest.as_str())
        .bind(entry_id)
        .bind(reason),
        None => sqlx::query(
            "UPDATE entries SET disqualified_at = NULL, disqualification_reason = NULL \
             WHERE contest_id = $1 AND id = $2",
        )
        .bind(contest.as_str())
        .bind(entry_id),
    }
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if changed == 0 {
        return Ok(None);
    }
    entries::find(&mut *tx, contest, entry_id).await
}
