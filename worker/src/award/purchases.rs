//! Purchases and the referral credits they earn: recorded once each (multi-row
//! `INSERT … ON CONFLICT DO NOTHING RETURNING`), then awarded through the [`Books`].
//!
//! Staging writes the rows and learns which are new; settling decides the points once the
//! entries are locked (an award that would take its entry beyond the points limit is recorded
//! as `points_limit` with 0 points instead, the rare correction written by [`write_limits`]).

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use shared::{
    contest::Contest,
    db::{
        entries::{generate_referral_code, normalise_referral_code},
        ledger::LedgerKind,
    },
    event::PurchaseEvent,
    ids::EntryId,
    points::AwardStatus,
};

use super::books::{Books, Change};

/// One distinct purchase of a batch, priced.
pub struct Priced<'a> {
    /// The event.
    pub event: &'a PurchaseEvent,
    /// Its contest.
    pub contest: &'a Contest,
    /// The buyer's entry.
    pub entry_id: EntryId,
    /// Points it earns (0 when not `Awarded`).
    pub points: i64,
    /// How it was priced.
    pub status: AwardStatus,
}

/// A purchase this transaction recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Its id.
    pub id: String,
    /// True when a reversal was waiting for it (stored `pending` before it landed).
    pub awaited: bool,
}

/// A referral credit this transaction recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCredit {
    /// The referred purchase.
    pub purchase_id: String,
    /// The code's owner.
    pub advocate: String,
    /// Points credited (> 0).
    pub points: i64,
}

/// What staging wrote.
#[derive(Debug, Default)]
pub struct Staged {
    /// Purchases recorded now, in id order.
    pub recorded: Vec<Recorded>,
    /// Referral credits recorded now.
    pub credits: Vec<NewCredit>,
}

impl Staged {
    /// The entries settling will change: buyers of new purchases that earn points, advocates.
    pub fn entries(&self, rows: &BTreeMap<&str, Priced<'_>>) -> Vec<String> {
        let buyers = self
            .recorded
            .iter()
            .filter_map(|r| rows.get(r.id.as_str()))
            .filter(|row| row.points != 0)
            .map(|row| row.entry_id.as_str().to_owned());
        buyers
            .chain(self.credits.iter().map(|c| c.advocate.clone()))
            .collect()
    }

    /// Purchases recorded earlier that received a credit now (the same order sent to the
    /// purchase webhook first, then to a referral webhook): if refunds already took some of the
    /// purchase back, the credit must lose the same share.
    pub fn credited_older_purchases(&self) -> Vec<String> {
        let new: HashSet<&str> = self.recorded.iter().map(|r| r.id.as_str()).collect();
        self.credits
            .iter()
            .filter(|c| !new.contains(c.purchase_id.as_str()))
            .map(|c| c.purchase_id.clone())
            .collect()
    }
}

/// Creates missing entries, records the purchases and their referral credits.
pub async fn stage(
    tx: &mut sqlx::PgConnection,
    rows: &BTreeMap<&str, Priced<'_>>,
) -> Result<Staged, sqlx::Error> {
    // Entries, in id order.
    let entries: BTreeMap<&str, &Priced<'_>> = rows
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
    // No conflict target: every unique index of `entries` (id, (contest, email), (contest,
    // referral code)) is an arbiter, so a row another transaction is inserting at the same time
    // is waited for *before* this one inserts anything. With `ON CONFLICT (id)` the (contest,
    // email) index was not an arbiter, and a concurrent insert of the same person was waited for
    // while holding a speculative tuple that the other transaction's entry update then waited
    // on: a deadlock (seen with four workers and duplicates). A referral-code collision (one in
    // ~10^11) now skips the entry instead of failing here; the purchase insert then fails its
    // foreign key, which is retried like a deadlock, with fresh codes.
    sqlx::query(
        "INSERT INTO entries (id, contest_id, email, referral_code) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&entry_ids)
    .bind(&entry_contests)
    .bind(&entry_emails)
    .bind(&codes)
    .execute(&mut *tx)
    .await?;

    // Purchases, in id order; RETURNING names the ones recorded now, and whether a reversal
    // is waiting for each (the same statement: no extra round trip on the hot path).
    let ids: Vec<&str> = rows.keys().copied().collect();
    let contests: Vec<&str> = rows.values().map(|r| r.event.contest_id.as_str()).collect();
    let sources: Vec<&str> = rows.values().map(|r| r.event.source.as_str()).collect();
    let orders: Vec<&str> = rows.values().map(|r| r.event.order_id.as_str()).collect();
    let buyers: Vec<&str> = rows.values().map(|r| r.entry_id.as_str()).collect();
    let amounts: Vec<Decimal> = rows.values().map(|r| r.event.money.amount).collect();
    let currencies: Vec<&str> = rows
        .values()
        .map(|r| r.event.money.currency.as_str())
        .collect();
    let points: Vec<i64> = rows.values().map(|r| r.points).collect();
    let statuses: Vec<&str> = rows.values().map(|r| r.status.as_str()).collect();
    let received: Vec<DateTime<Utc>> = rows.values().map(|r| r.event.received_at).collect();
    let intents: Vec<Option<&str>> = rows
        .values()
        .map(|r| r.event.payment_intent.as_deref())
        .collect();
    let recorded: Vec<(String, bool)> = sqlx::query_as(
        "WITH ins AS (INSERT INTO purchases (id, contest_id, source, order_id, entry_id, amount, \
         currency, points_awarded, status, award_status, received_at, payment_intent) \
         SELECT u.id, u.contest_id, u.source, u.order_id, u.entry_id, u.amount, u.currency, \
         u.points, u.status, u.status, u.received_at, u.payment_intent \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
         $6::numeric[], $7::text[], $8::bigint[], $9::text[], $10::timestamptz[], $11::text[]) \
         AS u(id, contest_id, source, order_id, entry_id, amount, currency, points, status, \
         received_at, payment_intent) \
         ON CONFLICT DO NOTHING RETURNING id, contest_id, source, order_id, payment_intent) \
         SELECT ins.id, EXISTS (SELECT 1 FROM reversals r WHERE r.status = 'pending' \
         AND r.contest_id = ins.contest_id AND r.source = ins.source \
         AND r.target_key = ANY (ARRAY['order:' || ins.order_id, 'pi:' || ins.payment_intent])) \
         FROM ins ORDER BY ins.id",
    )
    .bind(&ids)
    .bind(&contests)
    .bind(&sources)
    .bind(&orders)
    .bind(&buyers)
    .bind(&amounts)
    .bind(&currencies)
    .bind(&points)
    .bind(&statuses)
    .bind(&received)
    .bind(&intents)
    .fetch_all(&mut *tx)
    .await?;

    let credits = credit_referrers(&mut *tx, rows).await?;
    Ok(Staged {
        recorded: recorded
            .into_iter()
            .map(|(id, awaited)| Recorded { id, awaited })
            .collect(),
        credits,
    })
}

/// Records the credit for the owner of each purchase's referral code, once per
/// `(contest, source, order)` (deduped separately: a credit can be new while its purchase is
/// not). Unknown codes and self-referrals credit nobody (the purchase itself still counts).
async fn credit_referrers(
    tx: &mut sqlx::PgConnection,
    rows: &BTreeMap<&str, Priced<'_>>,
) -> Result<Vec<NewCredit>, sqlx::Error> {
    // Every (purchase, candidate code) pair, candidates in the order the provider ranked them.
    let referred: Vec<(&Priced<'_>, String)> = rows
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
        return Ok(Vec::new());
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
    let mut credits: Vec<(&Priced<'_>, &str, i64)> = Vec::new();
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
        return Ok(Vec::new());
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
    let inserted: Vec<(String, String, i64)> = sqlx::query_as(
        "INSERT INTO referral_credits (contest_id, source, order_id, purchase_id, advocate_entry_id, points) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[]) \
         ON CONFLICT DO NOTHING RETURNING purchase_id, advocate_entry_id, points",
    )
    .bind(&contest_col)
    .bind(&sources)
    .bind(&orders)
    .bind(&purchases)
    .bind(&advocates)
    .bind(&points)
    .fetch_all(&mut *tx)
    .await?;
    Ok(inserted
        .into_iter()
        .map(|(purchase_id, advocate, points)| NewCredit {
            purchase_id,
            advocate,
            points,
        })
        .collect())
}

/// What settling decided.
#[derive(Debug, Default)]
pub struct Settled {
    /// Purchases recorded now whose points would have taken the buyer beyond the limit.
    pub limited_purchases: Vec<String>,
    /// Purchase ids of credits recorded now that would have taken the advocate beyond it.
    pub limited_credits: Vec<String>,
    /// Points added by purchases and credits (for metrics).
    pub points: i64,
}

/// Awards the new purchases, then the new credits, in a fixed order, each one within the
/// points limit or not at all.
pub fn settle(books: &mut Books, rows: &BTreeMap<&str, Priced<'_>>, staged: &Staged) -> Settled {
    let mut settled = Settled::default();
    for recorded in &staged.recorded {
        let Some(row) = rows.get(recorded.id.as_str()) else {
            continue;
        };
        if row.points == 0 {
            continue;
        }
        let change = Change {
            entry_id: row.entry_id.as_str().to_owned(),
            kind: LedgerKind::Purchase,
            points: row.points,
            purchase_id: Some(recorded.id.clone()),
            reason: None,
        };
        if books.apply(vec![change]) {
            settled.points = settled.points.saturating_add(row.points);
        } else {
            tracing::warn!(purchase_id = %recorded.id, points = row.points, "points limit: purchase recorded with 0 points");
            settled.limited_purchases.push(recorded.id.clone());
        }
    }
    for credit in &staged.credits {
        let change = Change {
            entry_id: credit.advocate.clone(),
            kind: LedgerKind::Referral,
            points: credit.points,
            purchase_id: Some(credit.purchase_id.clone()),
            reason: None,
        };
        if books.apply(vec![change]) {
            settled.points = settled.points.saturating_add(credit.points);
        } else {
            tracing::warn!(purchase_id = %credit.purchase_id, points = credit.points, "points limit: referral credit recorded with 0 points");
            settled.limited_credits.push(credit.purchase_id.clone());
        }
    }
    settled
}

/// Writes the rare points-limit corrections: such purchases and credits keep their row (so they
/// are still deduped) with 0 points.
pub async fn write_limits(
    tx: &mut sqlx::PgConnection,
    settled: &Settled,
) -> Result<(), sqlx::Error> {
    if !settled.limited_purchases.is_empty() {
        sqlx::query(
            "UPDATE purchases SET points_awarded = 0, status = 'points_limit', \
             award_status = 'points_limit' WHERE id = ANY($1)",
        )
        .bind(&settled.limited_purchases)
        .execute(&mut *tx)
        .await?;
    }
    if !settled.limited_credits.is_empty() {
        sqlx::query("UPDATE referral_credits SET points = 0 WHERE purchase_id = ANY($1)")
            .bind(&settled.limited_credits)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}
