//! The points ledger: every change of an entry's points is one row, and an entry's `points`
//! always equals the sum of its rows because both are written in the same transaction.
//!
//! The worker's award transaction writes its rows with one multi-row statement of its own (next
//! to the entry update); signups and operators' adjustments use [`record`].

use chrono::{DateTime, Utc};
use sqlx::{postgres::PgRow, PgConnection, PgExecutor, Row};

/// Why an entry's points changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum LedgerKind {
    /// A purchase's points.
    Purchase,
    /// Credit for a purchase made with this entry's referral code.
    Referral,
    /// A signup bonus (advocate or friend), and the opening balance of entries that existed
    /// before the ledger.
    Signup,
    /// Points taken back because money was refunded (also a referral credit's share).
    Refund,
    /// Points taken back by a chargeback, or given back (positive) by a chargeback won.
    Chargeback,
    /// An operator's manual change.
    Adjustment,
}

impl LedgerKind {
    /// The name stored and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::Purchase => "purchase",
            LedgerKind::Referral => "referral",
            LedgerKind::Signup => "signup",
            LedgerKind::Refund => "refund",
            LedgerKind::Chargeback => "chargeback",
            LedgerKind::Adjustment => "adjustment",
        }
    }

    /// Parses the stored name.
    pub fn parse(raw: &str) -> Option<Self> {
        [
            LedgerKind::Purchase,
            LedgerKind::Referral,
            LedgerKind::Signup,
            LedgerKind::Refund,
            LedgerKind::Chargeback,
            LedgerKind::Adjustment,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == raw)
    }
}

/// A change to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewChange<'a> {
    /// The entry whose points change.
    pub entry_id: &'a str,
    /// Its contest.
    pub contest_id: &'a str,
    /// Why.
    pub kind: LedgerKind,
    /// The change, never 0.
    pub points: i64,
    /// The purchase it concerns, if any.
    pub purchase_id: Option<&'a str>,
    /// Free text for the reader.
    pub reason: Option<&'a str>,
}

/// Writes `changes` (zero-point ones are skipped) in one statement. The caller updates the
/// entries' points in the same transaction.
pub async fn record(tx: &mut PgConnection, changes: &[NewChange<'_>]) -> Result<(), sqlx::Error> {
    let changes: Vec<&NewChange<'_>> = changes.iter().filter(|c| c.points != 0).collect();
    if changes.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO points_ledger (entry_id, contest_id, kind, points, purchase_id, reason) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], \
         $6::text[])",
    )
    .bind(changes.iter().map(|c| c.entry_id).collect::<Vec<_>>())
    .bind(changes.iter().map(|c| c.contest_id).collect::<Vec<_>>())
    .bind(changes.iter().map(|c| c.kind.as_str()).collect::<Vec<_>>())
    .bind(changes.iter().map(|c| c.points).collect::<Vec<_>>())
    .bind(changes.iter().map(|c| c.purchase_id).collect::<Vec<_>>())
    .bind(changes.iter().map(|c| c.reason).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// One row of an entry's ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Why the points changed.
    pub kind: LedgerKind,
    /// The change (negative when points were taken).
    pub points: i64,
    /// The purchase it concerns, if any.
    pub purchase_id: Option<String>,
    /// Free text, if any.
    pub reason: Option<String>,
    /// When it was committed.
    pub at: DateTime<Utc>,
}

/// Every change of an entry, oldest first.
pub async fn history(db: impl PgExecutor<'_>, entry_id: &str) -> Result<Vec<Change>, sqlx::Error> {
    sqlx::query(
        "SELECT kind, points, purchase_id, reason, at FROM points_ledger \
         WHERE entry_id = $1 ORDER BY id",
    )
    .bind(entry_id)
    .try_map(|row: PgRow| {
        Ok(Change {
            kind: {
                let kind: String = row.try_get("kind")?;
                LedgerKind::parse(&kind).ok_or_else(|| {
                    sqlx::Error::Decode(format!("unknown ledger kind {kind:?}").into())
                })?
            },
            points: row.try_get("points")?,
            purchase_id: row.try_get("purchase_id")?,
            reason: row.try_get("reason")?,
            at: row.try_get("at")?,
        })
    })
    .fetch_all(db)
    .await
}
