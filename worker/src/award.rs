//! The award transaction: a batch of purchases recorded and priced exactly once.
//!
//! One transaction per batch, a few multi-row statements:
//! 1. create missing entries (`ON CONFLICT DO NOTHING`),
//! 2. insert the purchases `ON CONFLICT DO NOTHING RETURNING id` — the returned ids are the
//!    purchases this transaction is first to record, the only ones that earn points,
//! 3. for purchases carrying a referral code, insert the referral credits the same way (deduped
//!    separately: a credit can be new while its purchase is not),
//! 4. add those points to their entries, locking the entries in id order first so that any
//!    number of workers can run the same or overlapping batches without deadlocking,
//! 5. apply the batch's signups (rare next to purchases) one by one, each deduped on
//!    `(contest, email)` by `shared::db::entries::sign_up`.
//!
//! Because the dedupe row and the points are committed together, a redelivery after a crash,
//! a duplicate webhook, or the same message on two workers can only ever find the purchase
//! already recorded and add nothing.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use shared::{
    contest::Contest,
    db::entries::{normalise_referral_code, Signup},
    db::{self, entries::generate_referral_code},
    event::{Event, PurchaseEvent, SignupEvent},
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
    /// Points added across all entries by purchases and referral credits.
    pub points: i64,
    /// Referral credits recorded for the first time.
    pub referral_credits: usize,
    /// Signups applied (first or repeated).
    pub signups: usize,
}

/// Records and prices `events` in one transaction.
pub async fn award_batch(pool: &PgPool, events: &[Event]) -> Result<BatchOutcome, sqlx::Error> {
    let mut outcome = BatchOutcome::default();
    let mut tx = pool.begin().await?;

    let contest_ids: Vec<&str> = events
        .iter()
        .map(|event| event.contest_id().as_str())
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
    let mut signups: Vec<(&Contest, &SignupEvent)> = Vec::new();
    for (index, event) in events.iter().enumerate() {
        let Some(contest) = contests.get(event.contest_id().as_str()) else {
            outcome.unknown_contest.push(index);
            continue;
        };
        let event = match event {
            Event::Purchase(purchase) => purchase,
            Event::Signup(signup) => {
                signups.push((contest, signup));
                continue;
            }
            // Not applied by this build yet (nothing publishes them so far): dead-lettered, so a
            // later worker can be given them by `dlq replay`.
            Event::Reversal(_) => {
                outcome.unknown_contest.push(index);
                continue;
            }
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
                contest,
                entry_id: EntryId::derive(&event.contest_id, &event.email),
                points: award.points,
                status: award.status.as_str(),
            },
        );
    }
    if !rows.is_empty() {
        record_purchases(&mut tx, &rows, &mut outcome).await?;
    }
    for (contest, signup) in signups {
        apply_signup(&mut tx, contest, signup).await?;
        outcome.signups += 1;
    }
    tx.commit().await?;
    Ok(outcome)
}

/// Steps 1–4 for the distinct purchases of a batch.
async fn record_purchases(
    tx: &mut sqlx::PgConnection,
    rows: &BTreeMap<&str, PurchaseRow<'_>>,
    outcome: &mut BatchOutcome,
) -> Result<(), sqlx::Error> {
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

    // Points for the purchases recorded now, summed per entry.
    let mut deltas: BTreeMap<String, i64> = BTreeMap::new();
    for id in &inserted {
        if let Some(row) = rows.get(id.as_str()) {
            if row.points != 0 {
                *deltas.entry(row.entry_id.as_str().to_owned()).or_default() += row.points;
            }
        }
    }

    // 3. Referral credits, deduped on their own key.
    outcome.referral_credits = credit_referrers(&mut *tx, rows, &mut deltas).await?;

    // 4. Entries locked in id order, then updated.
    if !deltas.is_empty() {
        let delta_ids: Vec<&str> = deltas.keys().map(String::as_str).collect();
        let delta_points: Vec<i64> = deltas.values().copied().collect();
        // NO KEY UPDATE, not UPDATE: it does not conflict with the KEY SHARE locks that the
        // foreign keys of concurrent purchase inserts take on the same entries (in purchase
        // order), which is what would otherwise let two workers deadlock.
        sqlx::query("SELECT 1 FROM entries WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE")
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
    Ok(())
}

/// Credits the owners of the referral codes purchases carry, each credit recorded once per
/// `(contest, source, order)`; adds the credited points to `deltas`. Unknown codes and
/// self-referrals credit nobody (the purchase itself still counts).
async fn credit_referrers(
    tx: &mut sqlx::PgConnection,
    rows: &BTreeMap<&str, PurchaseRow<'_>>,
    deltas: &mut BTreeMap<String, i64>,
) -> Result<usize, sqlx::Error> {
    // Every (purchase, candidate code) pair, candidates in the order the provider ranked them.
    let referred: Vec<(&PurchaseRow<'_>, String)> = rows
        .values()
        .flat_map(|row| {
            row.event
                .referral_codes
                .iter()
                .map(|code| normalise_referral_code(code))
                .filter(|code| !code.is_empty())
                .map(move |code| (row, code))
        })
        .collect();
    if referred.is_empty() {
        return Ok(0);
    }
    let contests: Vec<&str> = referred
        .iter()
        .map(|(row, _)| row.event.contest_id.as_str())
        .collect();
    let codes: Vec<&str> = referred.iter().map(|(_, code)| code.as_str()).collect();
    let owners: HashMap<(String, String), String> = sqlx::query_as::<_, (String, String, String)>(
        "SELECT e.contest_id, e.referral_code, e.id FROM entries e \
         JOIN UNNEST($1::text[], $2::text[]) AS c(contest_id, code) \
         ON e.contest_id = c.contest_id AND e.referral_code = c.code",
    )
    .bind(&contests)
    .bind(&codes)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|(contest, code, id)| ((contest, code), id))
    .collect();

    // Per purchase, the first candidate owned by someone other than the buyer.
    let mut credits: Vec<(&PurchaseRow<'_>, &str, i64)> = Vec::new();
    let mut credited: HashSet<&str> = HashSet::new();
    for (row, code) in &referred {
        if credited.contains(row.event.purchase_id.as_str()) {
            continue;
        }
        let Some(owner) = owners.get(&(row.event.contest_id.as_str().to_owned(), code.clone()))
        else {
            continue;
        };
        if owner == row.entry_id.as_str() {
            continue;
        }
        credited.insert(row.event.purchase_id.as_str());
        let award = row
            .contest
            .points_rule()
            .award_with(&row.event.money, row.contest.referral.points_per_unit);
        if award.points > 0 {
            credits.push((row, owner.as_str(), award.points));
        }
    }
    if credits.is_empty() {
        return Ok(0);
    }
    let contest_col: Vec<&str> = credits
        .iter()
        .map(|(r, _, _)| r.event.contest_id.as_str())
        .collect();
    let sources: Vec<&str> = credits
        .iter()
        .map(|(r, _, _)| r.event.source.as_str())
        .collect();
    let orders: Vec<&str> = credits
        .iter()
        .map(|(r, _, _)| r.event.order_id.as_str())
        .collect();
    let purchases: Vec<&str> = credits
        .iter()
        .map(|(r, _, _)| r.event.purchase_id.as_str())
        .collect();
    let advocates: Vec<&str> = credits.iter().map(|(_, owner, _)| *owner).collect();
    let points: Vec<i64> = credits.iter().map(|(_, _, points)| *points).collect();
    let inserted: Vec<(String, i64)> = sqlx::query_as(
        "INSERT INTO referral_credits (contest_id, source, order_id, purchase_id, advocate_entry_id, points) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[]) \
         ON CONFLICT DO NOTHING RETURNING advocate_entry_id, points",
    )
    .bind(&contest_col)
    .bind(&sources)
    .bind(&orders)
    .bind(&purchases)
    .bind(&advocates)
    .bind(&points)
    .fetch_all(&mut *tx)
    .await?;
    for (advocate, points) in &inserted {
        *deltas.entry(advocate.clone()).or_default() += points;
    }
    Ok(inserted.len())
}

/// Step 5: one signup, through the same code path as the admin API's entry creation.
async fn apply_signup(
    tx: &mut sqlx::PgConnection,
    contest: &Contest,
    signup: &SignupEvent,
) -> Result<(), sqlx::Error> {
    db::entries::sign_up(
        tx,
        contest,
        Signup {
            email: &signup.email,
            name: signup.name.as_deref(),
            phone: signup.phone.as_deref(),
            referral_code: signup.referral_code.as_deref(),
        },
    )
    .await?;
    Ok(())
}

/// One distinct purchase of a batch, priced.
struct PurchaseRow<'a> {
    event: &'a PurchaseEvent,
    contest: &'a Contest,
    entry_id: EntryId,
    points: i64,
    status: &'static str,
}
