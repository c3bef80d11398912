//! The award transaction: a batch of purchases recorded and priced exactly once.
//!
//! One transaction per batch, three multi-row statements:
//! 1. create missing entries (`ON CONFLICT DO NOTHING`),
//! 2. insert the purchases `ON CONFLICT DO NOTHING RETURNING id` — the returned ids are the
//!    purchases this transaction is first to record, the only ones that earn points,
//! 3. add those points to their entries, locking the entries in id order first so that any
//!    number of workers can run the same or overlapping batches without deadlocking.
//!
//! Because the dedupe row and the points are committed together, a redelivery after a crash,
//! a duplicate webhook, or the same message on two workers can only ever find the purchase
//! already recorded and add nothing.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use shared::{
    contest::Contest,
    db::{self, entries::generate_referral_code},
    event::PurchaseEvent,
    ids::EntryId,
};
use sqlx::PgPool;

/// What one batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Purchases recorded for the first time.
    pub recorded: usize,
    /// Purchases already recorded (redeliveries and duplicate webhooks), including repeats
    /// within the batch.
    pub duplicates: usize,
    /// Indexes (into the input) of events naming a contest that does not exist: they can never
    /// succeed and belong in the dead-letter queue.
    pub unknown_contest: Vec<usize>,
    /// Points added across all entries.
    pub points: i64,
}

/// Records and prices `events` in one transaction.
pub async fn award_batch(
    pool: &PgPool,
    events: &[PurchaseEvent],
) -> Result<BatchOutcome, sqlx::Error> {
    let mut outcome = BatchOutcome::default();
    let mut tx = pool.begin().await?;

    let contest_ids: Vec<&str> = events
        .iter()
        .map(|event| event.contest_id.as_str())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let contests: HashMap<String, Contest> = db::contests::find_many(&mut *tx, &contest_ids)
        .await?
        .into_iter()
        .map(|contest| (contest.id.as_str().to_owned(), contest))
        .collect();

    // Price each distinct purchase once; sorted by purchase id for a stable lock order.
    let mut rows: BTreeMap<&str, PurchaseRow<'_>> = BTreeMap::new();
    for (index, event) in events.iter().enumerate() {
        let Some(contest) = contests.get(event.contest_id.as_str()) else {
            outcome.unknown_contest.push(index);
            continue;
        };
        if rows.contains_key(event.purchase_id.as_str()) {
            outcome.duplicates += 1;
            continue;
        }
        let award = contest.points_rule().award(&event.money);
        rows.insert(
            event.purchase_id.as_str(),
            PurchaseRow {
                event,
                entry_id: EntryId::derive(&event.contest_id, &event.email),
                points: award.points,
                status: award.status.as_str(),
            },
        );
    }
    if rows.is_empty() {
        tx.commit().await?;
        return Ok(outcome);
    }

    // 1. Entries, in id order.
    let entries: BTreeMap<&str, &PurchaseRow<'_>> = rows
        .values()
        .map(|row| (row.entry_id.as_str(), row))
        .collect();
    let entry_ids: Vec<&str> = entries.keys().copied().collect();
    let entry_contests: Vec<&str> = entries
        .values()
        .map(|row| row.event.contest_id.as_str())
        .collect();
    let entry_emails: Vec<&str> = entries
        .values()
        .map(|row| row.event.email.as_str())
        .collect();
    let codes: Vec<String> = entries.keys().map(|_| generate_referral_code()).collect();
    sqlx::query(
        "INSERT INTO entries (id, contest_id, email, referral_code) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&entry_ids)
    .bind(&entry_contests)
    .bind(&entry_emails)
    .bind(&codes)
    .execute(&mut *tx)
    .await?;

    // 2. Purchases, in id order; RETURNING names the ones recorded now.
    let ids: Vec<&str> = rows.keys().copied().collect();
    let contests_col: Vec<&str> = rows.values().map(|r| r.event.contest_id.as_str()).collect();
    let sources: Vec<&str> = rows.values().map(|r| r.event.source.as_str()).collect();
    let orders: Vec<&str> = rows.values().map(|r| r.event.order_id.as_str()).collect();
    let entry_col: Vec<&str> = rows.values().map(|r| r.entry_id.as_str()).collect();
    let amounts: Vec<Decimal> = rows.values().map(|r| r.event.money.amount).collect();
    let currencies: Vec<&str> = rows
        .values()
        .map(|r| r.event.money.currency.as_str())
        .collect();
    let points: Vec<i64> = rows.values().map(|r| r.points).collect();
    let statuses: Vec<&str> = rows.values().map(|r| r.status).collect();
    let received: Vec<DateTime<Utc>> = rows.values().map(|r| r.event.received_at).collect();
    let inserted: Vec<String> = sqlx::query_scalar(
        "INSERT INTO purchases (id, contest_id, source, order_id, entry_id, amount, currency, \
         points_awarded, status, received_at) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
         $6::numeric[], $7::text[], $8::bigint[], $9::text[], $10::timestamptz[]) \
         ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(&ids)
    .bind(&contests_col)
    .bind(&sources)
    .bind(&orders)
    .bind(&entry_col)
    .bind(&amounts)
    .bind(&currencies)
    .bind(&points)
    .bind(&statuses)
    .bind(&received)
    .fetch_all(&mut *tx)
    .await?;
    outcome.recorded = inserted.len();
    outcome.duplicates += rows.len() - inserted.len();

    // 3. Points for the purchases recorded now, summed per entry, entries locked in id order.
    let mut deltas: BTreeMap<&str, i64> = BTreeMap::new();
    for id in &inserted {
        if let Some(row) = rows.get(id.as_str()) {
            if row.points != 0 {
                *deltas.entry(row.entry_id.as_str()).or_default() += row.points;
            }
        }
    }
    if !deltas.is_empty() {
        let delta_ids: Vec<&str> = deltas.keys().copied().collect();
        let delta_points: Vec<i64> = deltas.values().copied().collect();
        sqlx::query("SELECT 1 FROM entries WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&delta_ids)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE entries SET points = entries.points + d.delta \
             FROM UNNEST($1::text[], $2::bigint[]) AS d(id, delta) WHERE entries.id = d.id",
        )
        .bind(&delta_ids)
        .bind(&delta_points)
        .execute(&mut *tx)
        .await?;
        outcome.points = delta_points.iter().sum();
    }

    tx.commit().await?;
    Ok(outcome)
}

/// One distinct purchase of a batch, priced.
struct PurchaseRow<'a> {
    event: &'a PurchaseEvent,
    entry_id: EntryId,
    points: i64,
    status: &'static str,
}
