//! Recorded purchases, as the lookup endpoint reads them.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{postgres::PgRow, PgExecutor, Row};

use crate::ids::{ContestId, PurchaseId};

/// A purchase the worker has recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseRecord {
    /// The derived purchase id.
    pub id: PurchaseId,
    /// The buyer's entry; `None` once that entry was erased (the purchase is unlinked from the
    /// person, though it still counts in the erased entry's books).
    pub entry_id: Option<String>,
    /// The buyer's normalised email; `None` once the buyer's entry was erased.
    pub email: Option<String>,
    /// The amount as sent.
    pub amount: Decimal,
    /// The currency as sent.
    pub currency: String,
    /// Points the purchase first earned.
    pub points_awarded: i64,
    /// The current status: `awarded`, `unconvertible_currency`, `points_limit`,
    /// `partially_refunded`, `refunded` or `reversed`.
    pub status: String,
    /// The total of the refunds received (may exceed the amount).
    pub refunded_amount: Decimal,
    /// Points taken back so far by refunds and chargebacks.
    pub points_reversed: i64,
    /// When the worker committed it.
    pub recorded_at: DateTime<Utc>,
}

/// A recorded purchase by its id, within a contest.
pub async fn find(
    db: impl PgExecutor<'_>,
    contest: &ContestId,
    id: &PurchaseId,
) -> Result<Option<PurchaseRecord>, sqlx::Error> {
    sqlx::query(
        "SELECT p.id, CASE WHEN e.erased_at IS NULL THEN p.entry_id END AS entry_id, \
         e.email, p.amount, p.currency, p.points_awarded, p.status, \
         p.refunded_amount, p.points_reversed, p.recorded_at \
         FROM purchases p JOIN entries e ON e.id = p.entry_id \
         WHERE p.contest_id = $1 AND p.id = $2",
    )
    .bind(contest.as_str())
    .bind(id.as_str())
    .try_map(|row: PgRow| {
        Ok(PurchaseRecord {
            id: PurchaseId::from_stored(row.try_get("id")?),
            entry_id: row.try_get("entry_id")?,
            email: row.try_get("email")?,
            amount: row.try_get("amount")?,
            currency: row.try_get("currency")?,
            points_awarded: row.try_get("points_awarded")?,
            status: row.try_get("status")?,
            refunded_amount: row.try_get("refunded_amount")?,
            points_reversed: row.try_get("points_reversed")?,
            recorded_at: row.try_get("recorded_at")?,
        })
    })
    .fetch_optional(db)
    .await
}

/// The entry and current status of recorded purchases, by id: what the worker answers a sender
/// that waits for a purchase it finds already recorded (read only for such senders, after the
/// batch has committed, never on the award path). The entry is `None` once it was erased, as
/// the lookup shows it.
pub async fn current_states(
    db: impl PgExecutor<'_>,
    ids: &[&str],
) -> Result<Vec<(PurchaseId, Option<String>, String)>, sqlx::Error> {
    sqlx::query(
        "SELECT p.id, CASE WHEN e.erased_at IS NULL THEN p.entry_id END AS entry_id, p.status \
         FROM purchases p JOIN entries e ON e.id = p.entry_id WHERE p.id = ANY($1)",
    )
    .bind(ids)
    .try_map(|row: PgRow| {
        Ok((
            PurchaseId::from_stored(row.try_get("id")?),
            row.try_get("entry_id")?,
            row.try_get("status")?,
        ))
    })
    .fetch_all(db)
    .await
}
