//! The award transaction: a batch of events recorded and applied exactly once.
//!
//! One transaction per batch, a few multi-row statements:
//! 1. create missing entries (`ON CONFLICT DO NOTHING`),
//! 2. insert the purchases `ON CONFLICT DO NOTHING RETURNING id` — the returned ids are the
//!    purchases this transaction is first to record, the only ones that earn points (the same
//!    statement reports whether a reversal was waiting for each),
//! 3. for purchases carrying a referral code, insert the referral credits the same way (deduped
//!    separately: a credit can be new while its purchase is not),
//! 4. record the batch's reversals (deduped on `(contest, source, target, refundId, kind)`),
//!    claim the `pending` reversals the new purchases were awaited by, and lock the purchases
//!    they concern (`FOR NO KEY UPDATE`, in id order),
//! 5. lock every entry the batch changes in id order and read its points (the [`books`]), so any
//!    number of workers can run the same or overlapping batches without deadlocking; decide
//!    every change with checked arithmetic within the points limit,
//! 6. write the entries' new points and one ledger row per change in one statement, then the
//!    rare corrections (points limit) and the reversals' effects,
//! 7. apply the batch's signups (rare next to purchases) one by one, each deduped on
//!    `(contest, email)` by `shared::db::entries::sign_up`.
//!
//! Because the dedupe rows, the points and the ledger are committed together, a redelivery after
//! a crash, a duplicate webhook, or the same message on two workers can only ever find the event
//! already recorded and change nothing.
//!
//! # Layout
//!
//! - [`purchases`]: recording purchases and referral credits, awarding them.
//! - [`reversals`]: recording, claiming and applying refunds and chargebacks.
//! - [`rule`]: the reversal rule as pure arithmetic.
//! - [`books`]: the locked entries, the points limit and the ledger write.
//! - [`outcome`]: what each input event came to.

pub mod books;
pub mod outcome;
pub mod purchases;
pub mod reversals;
pub mod rule;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use shared::{
    contest::Contest,
    db::{self, entries::Signup},
    event::{Event, ReversalEvent, SignupEvent},
    ids::{EntryId, PurchaseId},
    points::AwardStatus,
};
use sqlx::PgPool;

use self::{
    books::Books,
    outcome::{EventOutcome, PurchaseOutcome, ReversalOutcome, ReversalResult, SignupOutcome},
    purchases::Priced,
    reversals::{Claimed, Targets},
};

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
    /// Purchases and credits recorded with 0 points because of the points limit.
    pub points_limited: usize,
    /// Earlier `pending` reversals applied because their purchase landed in this batch.
    pub awaited_reversals: Vec<ReversalOutcome>,
    /// What each input event came to, in input order.
    pub events: Vec<EventOutcome>,
}

/// Records and applies `events` in one transaction.
pub async fn award_batch(pool: &PgPool, events: &[Event]) -> Result<BatchOutcome, sqlx::Error> {
    let mut outcome = BatchOutcome::default();
    let mut tx = pool.begin().await?;

    let contests = load_contests(&mut tx, events.iter().map(|e| e.contest_id().as_str())).await?;

    // Price each distinct purchase once; sorted by purchase id for a stable lock order.
    let mut rows: BTreeMap<&str, Priced<'_>> = BTreeMap::new();
    let mut slots: Vec<Option<EventOutcome>> = vec![None; events.len()];
    let mut purchase_slots: Vec<(usize, &str, bool)> = Vec::new();
    let mut signups: Vec<(usize, &Contest, &SignupEvent)> = Vec::new();
    let mut reversal_events: Vec<(usize, &ReversalEvent)> = Vec::new();
    for (index, event) in events.iter().enumerate() {
        let Some(contest) = contests.get(event.contest_id().as_str()) else {
            outcome.unknown_contest.push(index);
            slots[index] = Some(EventOutcome::UnknownContest);
            continue;
        };
        let event = match event {
            Event::Purchase(purchase) => purchase,
            Event::Signup(signup) => {
                signups.push((index, contest, signup));
                continue;
            }
            Event::Reversal(reversal) => {
                reversal_events.push((index, reversal));
                continue;
            }
        };
        let id = event.purchase_id.as_str();
        if rows.contains_key(id) {
            purchase_slots.push((index, id, false));
            continue;
        }
        purchase_slots.push((index, id, true));
        let award = contest.points_rule().award(&event.money);
        rows.insert(
            id,
            Priced {
                event,
                contest,
                entry_id: EntryId::derive(&event.contest_id, &event.email),
                points: award.points,
                status: award.status,
            },
        );
    }

    // Steps 1–3.
    let staged = if rows.is_empty() {
        purchases::Staged::default()
    } else {
        purchases::stage(&mut tx, &rows).await?
    };
    // Step 4.
    let mut claimed: Vec<Claimed> = Vec::new();
    if !reversal_events.is_empty() {
        let (recorded, duplicates) = reversals::record(&mut tx, &reversal_events).await?;
        claimed = recorded;
        for index in duplicates {
            let Event::Reversal(event) = &events[index] else {
                continue;
            };
            slots[index] = Some(EventOutcome::Reversal(ReversalOutcome {
                reversal_id: event.reversal_id.clone(),
                result: ReversalResult::Duplicate,
                purchase_id: None,
                points_reversed: 0,
                referral_points_reversed: 0,
                status: None,
            }));
        }
    }
    let awaited: Vec<(&str, &str, &str, Option<&str>)> = staged
        .recorded
        .iter()
        .filter(|r| r.awaited)
        .filter_map(|r| rows.get(r.id.as_str()))
        .map(|row| {
            (
                row.event.contest_id.as_str(),
                row.event.source.as_str(),
                row.event.order_id.as_str(),
                row.event.payment_intent.as_deref(),
            )
        })
        .collect();
    if !awaited.is_empty() {
        // The batch's own reversals for these purchases were just inserted `pending` too, and
        // this transaction sees them: they are claimed already.
        let own: HashSet<_> = claimed.iter().map(|c| reversals::key(&c.event)).collect();
        claimed.extend(
            reversals::claim_awaited(&mut tx, &awaited)
                .await?
                .into_iter()
                .filter(|claim| !own.contains(&reversals::key(&claim.event))),
        );
    }
    let credited_older = staged.credited_older_purchases();
    let mut targets = if claimed.is_empty() && credited_older.is_empty() {
        Targets::default()
    } else {
        Targets::load(&mut tx, &claimed, &credited_older).await?
    };

    // Step 5.
    let entry_ids: BTreeSet<String> = staged
        .entries(&rows)
        .into_iter()
        .chain(targets.entries())
        .collect();
    let mut books = Books::lock(&mut tx, &entry_ids).await?;
    let awarded = purchases::settle(&mut books, &rows, &staged);
    for id in &awarded.limited_purchases {
        targets.limit_purchase(id);
    }
    for id in &awarded.limited_credits {
        targets.limit_credit(id);
    }
    let settled = reversals::settle(&mut books, &mut targets, &claimed, &contests);

    // Step 6.
    books.write(&mut tx).await?;
    purchases::write_limits(&mut tx, &awarded).await?;
    if !settled.is_empty() || !credited_older.is_empty() {
        reversals::write(&mut tx, &targets, &settled).await?;
    }

    // Step 7.
    for &(index, contest, signup) in &signups {
        let done = apply_signup(&mut tx, contest, signup).await?;
        slots[index] = Some(EventOutcome::Signup(SignupOutcome {
            entry_id: done.entry.id.clone(),
            already_existed: done.already_exists,
            advocate_entry_id: done.credited_advocate,
            advocate_points: done.advocate_points,
            friend_points: done.friend_points,
        }));
    }
    tx.commit().await?;

    // Outcomes, now that they are committed.
    let recorded: HashSet<&str> = staged.recorded.iter().map(|r| r.id.as_str()).collect();
    let limited: HashSet<&str> = awarded
        .limited_purchases
        .iter()
        .map(String::as_str)
        .collect();
    for (index, id, first) in purchase_slots {
        let Some(row) = rows.get(id) else { continue };
        let now = first && recorded.contains(id);
        let (points, status) = match (now, limited.contains(id)) {
            (false, _) => (0, None),
            (true, true) => (0, Some(AwardStatus::PointsLimit)),
            (true, false) => (row.points, Some(row.status)),
        };
        slots[index] = Some(EventOutcome::Purchase(PurchaseOutcome {
            purchase_id: PurchaseId::from_stored(id.to_owned()),
            entry_id: row.entry_id.clone(),
            recorded_now: now,
            points_awarded: points,
            status,
        }));
    }
    for settled in settled {
        match settled.index {
            Some(index) => slots[index] = Some(EventOutcome::Reversal(settled.outcome)),
            None => outcome.awaited_reversals.push(settled.outcome),
        }
    }
    outcome.recorded = staged.recorded.len();
    outcome.duplicates = purchase_duplicates(&slots);
    outcome.points = awarded.points;
    outcome.referral_credits = staged.credits.len();
    outcome.signups = signups.len();
    outcome.points_limited = awarded.limited_purchases.len() + awarded.limited_credits.len();
    outcome.events = slots
        .into_iter()
        .map(|slot| slot.unwrap_or(EventOutcome::UnknownContest))
        .collect();
    Ok(outcome)
}

/// Purchase events that recorded nothing (already recorded, or repeated within the batch).
fn purchase_duplicates(slots: &[Option<EventOutcome>]) -> usize {
    slots
        .iter()
        .filter(|slot| matches!(slot, Some(EventOutcome::Purchase(p)) if !p.recorded_now))
        .count()
}

/// The contests named by `ids`, by id.
async fn load_contests(
    tx: &mut sqlx::PgConnection,
    ids: impl Iterator<Item = &str>,
) -> Result<HashMap<String, Contest>, sqlx::Error> {
    let ids: Vec<&str> = ids.collect::<HashSet<_>>().into_iter().collect();
    Ok(db::contests::find_many(&mut *tx, &ids)
        .await?
        .into_iter()
        .map(|contest| (contest.id.as_str().to_owned(), contest))
        .collect())
}

/// Applies up to `limit` `pending` reversals whose purchase is recorded (the race where a
/// reversal and its purchase commit at the same time, each unseen by the other), in one
/// transaction. Reversals held by another transaction are skipped, so several workers can sweep
/// at once. Returns what each claimed reversal came to.
pub async fn sweep_pending_reversals(
    pool: &PgPool,
    limit: i64,
) -> Result<Vec<ReversalOutcome>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let claimed = reversals::claim_ready(&mut tx, limit).await?;
    if claimed.is_empty() {
        tx.rollback().await?;
        return Ok(Vec::new());
    }
    let contests = load_contests(
        &mut tx,
        claimed.iter().map(|claim| claim.event.contest_id.as_str()),
    )
    .await?;
    let mut targets = Targets::load(&mut tx, &claimed, &[]).await?;
    let entry_ids: BTreeSet<String> = targets.entries().collect();
    let mut books = Books::lock(&mut tx, &entry_ids).await?;
    let settled = reversals::settle(&mut books, &mut targets, &claimed, &contests);
    books.write(&mut tx).await?;
    reversals::write(&mut tx, &targets, &settled).await?;
    tx.commit().await?;
    Ok(settled.into_iter().map(|s| s.outcome).collect())
}

/// Step 7: one signup, through the same code path as the admin API's entry creation.
async fn apply_signup(
    tx: &mut sqlx::PgConnection,
    contest: &Contest,
    signup: &SignupEvent,
) -> Result<db::entries::SignupOutcome, sqlx::Error> {
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
    .await
}
