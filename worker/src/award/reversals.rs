//! Refunds, cancellations and chargebacks: recorded once per
//! `(contest, source, target, refundId, kind)`, applied to their purchase by the rule in
//! [`super::rule`], each application one ledger row per entry it changes.
//!
//! A reversal owned by a transaction is [`Claimed`]: recorded by it (inserted `pending`, the
//! insert being the dedupe), or an earlier `pending` one it locked because its purchase has now
//! landed (the purchase path, for the purchases it records) or had landed unseen (the sweep, for
//! the race where a reversal and its purchase commit at the same time). Claimed reversals whose
//! purchase exists are applied; the others stay `pending`. Row locks make each application
//! happen once: the reversal row is held by one transaction, the purchase row too
//! (`FOR NO KEY UPDATE`, in id order, before any entry is locked).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use shared::{
    contest::Contest,
    db::ledger::LedgerKind,
    event::{RefundAmount, ReversalEvent, ReversalKind, ReversalTarget},
    ids::{ContestId, OrderId, PurchaseId, ReversalId, Source},
    money::Currency,
    points::{AwardStatus, Rounding},
};
use sqlx::{postgres::PgRow, Row};

use super::{
    books::{Books, Change},
    outcome::{ReversalOutcome, ReversalResult},
    rule::{Refused, ReversalState},
};

/// A reversal this transaction owns (its row is inserted or locked by it).
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The reversal.
    pub event: ReversalEvent,
    /// The index of the input event, when it came with this batch.
    pub index: Option<usize>,
}

/// The dedupe key of a reversal: `(contest, source, target key, refund id, kind)`.
pub type Key = (String, &'static str, String, String, &'static str);

/// The dedupe key of `event`.
pub fn key(event: &ReversalEvent) -> Key {
    (
        event.contest_id.as_str().to_owned(),
        event.source.as_str(),
        event.target.key(),
        event.refund_id.clone(),
        event.kind.as_str(),
    )
}

/// Records the batch's reversals (`pending` until applied below), deduped on their key.
/// Returns the ones recorded now and the input indexes of duplicates (already recorded, or
/// repeated within the batch).
pub async fn record(
    tx: &mut sqlx::PgConnection,
    events: &[(usize, &ReversalEvent)],
) -> Result<(Vec<Claimed>, Vec<usize>), sqlx::Error> {
    // Distinct keys in key order: every transaction inserts (and so locks) them in the same
    // order, so duplicates racing on several workers cannot deadlock.
    let mut distinct: BTreeMap<Key, (usize, &ReversalEvent)> = BTreeMap::new();
    let mut duplicates = Vec::new();
    for &(index, event) in events {
        match distinct.entry(key(event)) {
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert((index, event));
            }
            std::collections::btree_map::Entry::Occupied(_) => duplicates.push(index),
        }
    }
    if distinct.is_empty() {
        return Ok((Vec::new(), duplicates));
    }
    let rows: Vec<&ReversalEvent> = distinct.values().map(|(_, event)| *event).collect();
    let (amount_types, amounts, currencies): (Vec<&str>, Vec<Option<Decimal>>, Vec<Option<&str>>) =
        rows.iter().map(|e| amount_columns(&e.amount)).fold(
            (Vec::new(), Vec::new(), Vec::new()),
            |(mut t, mut a, mut c), (kind, amount, currency)| {
                t.push(kind);
                a.push(amount);
                c.push(currency);
                (t, a, c)
            },
        );
    let inserted: Vec<(String, String, String, String, String)> = sqlx::query_as(
        "INSERT INTO reversals (contest_id, source, target_key, refund_id, kind, id, order_id, \
         payment_intent, amount_type, amount, currency, reason, received_at, status) \
         SELECT *, 'pending' FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
         $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::numeric[], $11::text[], \
         $12::text[], $13::timestamptz[]) \
         ON CONFLICT DO NOTHING RETURNING contest_id, source, target_key, refund_id, kind",
    )
    .bind(
        rows.iter()
            .map(|e| e.contest_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|e| e.source.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|e| e.target.key()).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|e| e.refund_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|e| e.reversal_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|e| match &e.target {
                ReversalTarget::OrderId(order) => Some(order.as_str()),
                ReversalTarget::PaymentIntent(_) => None,
            })
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|e| match &e.target {
                ReversalTarget::OrderId(_) => None,
                ReversalTarget::PaymentIntent(intent) => Some(intent.as_str()),
            })
            .collect::<Vec<_>>(),
    )
    .bind(&amount_types)
    .bind(&amounts)
    .bind(&currencies)
    .bind(rows.iter().map(|e| e.reason.as_deref()).collect::<Vec<_>>())
    .bind(rows.iter().map(|e| e.received_at).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;
    let inserted: BTreeSet<(String, String, String, String, String)> =
        inserted.into_iter().collect();
    let mut claimed = Vec::new();
    for ((contest, source, target, refund, kind), (index, event)) in distinct {
        let stored = (contest, source.to_owned(), target, refund, kind.to_owned());
        if inserted.contains(&stored) {
            claimed.push(Claimed {
                event: event.clone(),
                index: Some(index),
            });
        } else {
            duplicates.push(index);
        }
    }
    Ok((claimed, duplicates))
}

/// The stored form of an amount: type, amount, currency.
fn amount_columns(amount: &RefundAmount) -> (&'static str, Option<Decimal>, Option<&str>) {
    match amount {
        RefundAmount::Full => ("full", None, None),
        RefundAmount::Partial { amount, currency } => (
            "partial",
            Some(*amount),
            currency.as_ref().map(Currency::as_str),
        ),
        RefundAmount::Cumulative { amount, currency } => {
            ("cumulative", Some(*amount), Some(currency.as_str()))
        }
    }
}

const COLUMNS: &str = "id, contest_id, source, refund_id, kind, order_id, payment_intent, \
    amount_type, amount, currency, reason, received_at";

/// Rebuilds the event from a stored row.
fn from_row(row: &PgRow) -> Result<ReversalEvent, sqlx::Error> {
    let bad = |what: &str| sqlx::Error::Decode(format!("stored reversal has a bad {what}").into());
    let contest_id = ContestId::parse(row.try_get("contest_id")?).map_err(|_| bad("contest"))?;
    let source = Source::parse(row.try_get("source")?).map_err(|_| bad("source"))?;
    let order: Option<String> = row.try_get("order_id")?;
    let intent: Option<String> = row.try_get("payment_intent")?;
    let target = match (order, intent) {
        (Some(order), _) => {
            ReversalTarget::OrderId(OrderId::parse(&order).map_err(|_| bad("order id"))?)
        }
        (None, Some(intent)) => ReversalTarget::PaymentIntent(intent),
        (None, None) => return Err(bad("target")),
    };
    let kind = match row.try_get::<&str, _>("kind")? {
        "refund" => ReversalKind::Refund,
        "chargeback" => ReversalKind::Chargeback,
        "chargeback_won" => ReversalKind::ChargebackWon,
        _ => return Err(bad("kind")),
    };
    let amount: Option<Decimal> = row.try_get("amount")?;
    let currency = match row.try_get::<Option<&str>, _>("currency")? {
        Some(code) => Some(Currency::parse(code).map_err(|_| bad("currency"))?),
        None => None,
    };
    let amount = match (row.try_get::<&str, _>("amount_type")?, amount, currency) {
        ("full", _, _) => RefundAmount::Full,
        ("partial", Some(amount), currency) => RefundAmount::Partial { amount, currency },
        ("cumulative", Some(amount), Some(currency)) => {
            RefundAmount::Cumulative { amount, currency }
        }
        _ => return Err(bad("amount")),
    };
    let received_at: DateTime<Utc> = row.try_get("received_at")?;
    Ok(ReversalEvent {
        reversal_id: ReversalId::from_stored(row.try_get("id")?),
        contest_id,
        source,
        target,
        refund_id: row.try_get("refund_id")?,
        kind,
        amount,
        reason: row.try_get("reason")?,
        received_at,
    })
}

/// Locks the `pending` reversals waiting for purchases this transaction just recorded
/// (`(contest, source, order id, payment intent)` each). They cannot be held by the sweep: it
/// only takes reversals whose purchase it can see, and these purchases are not committed yet.
pub async fn claim_awaited(
    tx: &mut sqlx::PgConnection,
    purchases: &[(&str, &str, &str, Option<&str>)],
) -> Result<Vec<Claimed>, sqlx::Error> {
    let mut contests = Vec::new();
    let mut sources = Vec::new();
    let mut targets = Vec::new();
    for &(contest, source, order, intent) in purchases {
        contests.push(contest);
        sources.push(source);
        targets.push(
            ReversalTarget::OrderId(
                OrderId::parse(order).map_err(|_| {
                    sqlx::Error::Decode("stored purchase has a bad order id".into())
                })?,
            )
            .key(),
        );
        if let Some(intent) = intent {
            contests.push(contest);
            sources.push(source);
            targets.push(ReversalTarget::PaymentIntent(intent.to_owned()).key());
        }
    }
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM reversals WHERE status = 'pending' \
         AND (contest_id, source, target_key) IN \
         (SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[])) \
         ORDER BY contest_id, source, target_key, refund_id, kind FOR UPDATE"
    ))
    .bind(&contests)
    .bind(&sources)
    .bind(&targets)
    .try_map(|row: PgRow| from_row(&row))
    .fetch_all(&mut *tx)
    .await
    .map(|events| {
        events
            .into_iter()
            .map(|event| Claimed { event, index: None })
            .collect()
    })
}

/// The sweep's claim: up to `limit` `pending` reversals whose purchase is recorded, skipping
/// those another transaction holds (another worker's sweep, or a batch applying them).
pub async fn claim_ready(
    tx: &mut sqlx::PgConnection,
    limit: i64,
) -> Result<Vec<Claimed>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM reversals r WHERE r.status = 'pending' AND ( \
         (r.order_id IS NOT NULL AND EXISTS (SELECT 1 FROM purchases p \
           WHERE p.contest_id = r.contest_id AND p.source = r.source AND p.order_id = r.order_id)) \
         OR (r.payment_intent IS NOT NULL AND EXISTS (SELECT 1 FROM purchases p \
           WHERE p.contest_id = r.contest_id AND p.payment_intent = r.payment_intent \
           AND p.source = r.source))) \
         ORDER BY r.contest_id, r.source, r.target_key, r.refund_id, r.kind \
         LIMIT $1 FOR UPDATE SKIP LOCKED"
    ))
    .bind(limit)
    .try_map(|row: PgRow| from_row(&row))
    .fetch_all(&mut *tx)
    .await
    .map(|events| {
        events
            .into_iter()
            .map(|event| Claimed { event, index: None })
            .collect()
    })
}

/// The referral credit a target purchase earned.
#[derive(Debug, Clone)]
struct Credit {
    advocate: String,
    points: i64,
    reversed: i64,
    changed: bool,
}

/// A purchase some claimed reversal concerns, locked.
#[derive(Debug, Clone)]
struct Target {
    entry_id: String,
    contest_id: String,
    points_awarded: i64,
    points_reversed: i64,
    state: ReversalState,
    credit: Option<Credit>,
    changed: bool,
}

/// The purchases the claimed reversals concern, locked, with their credits and chargebacks.
#[derive(Debug, Default)]
pub struct Targets {
    by_id: BTreeMap<String, Target>,
    /// `(contest, source, payment intent)` → purchase id.
    intents: HashMap<(String, String, String), String>,
    /// Purchases whose credit was recorded after them (see
    /// `purchases::Staged::credited_older_purchases`).
    reconcile: BTreeSet<String>,
}

impl Targets {
    /// Locks the purchases `claimed` reversals name (and `credited`, purchases that received a
    /// referral credit only now), in id order, and reads their reversal state.
    pub async fn load(
        tx: &mut sqlx::PgConnection,
        claimed: &[Claimed],
        credited: &[String],
    ) -> Result<Self, sqlx::Error> {
        let mut targets = Targets::default();
        let mut ids: BTreeSet<String> = credited.iter().cloned().collect();
        let mut intents: BTreeSet<(String, String, String)> = BTreeSet::new();
        for claim in claimed {
            let event = &claim.event;
            match &event.target {
                ReversalTarget::OrderId(order) => {
                    ids.insert(
                        PurchaseId::derive(&event.contest_id, event.source, order)
                            .as_str()
                            .to_owned(),
                    );
                }
                ReversalTarget::PaymentIntent(intent) => {
                    intents.insert((
                        event.contest_id.as_str().to_owned(),
                        event.source.as_str().to_owned(),
                        intent.clone(),
                    ));
                }
            }
        }
        if !intents.is_empty() {
            // A payment intent never changes once recorded, so resolving it needs no lock; the
            // earliest purchase wins should a payment intent ever appear twice.
            let resolved: Vec<(String, String, String, String)> = sqlx::query_as(
                "SELECT p.contest_id, p.source, p.payment_intent, p.id FROM purchases p \
                 JOIN UNNEST($1::text[], $2::text[], $3::text[]) AS t(contest_id, source, intent) \
                 ON p.contest_id = t.contest_id AND p.payment_intent = t.intent \
                 AND p.source = t.source ORDER BY p.recorded_at DESC, p.id DESC",
            )
            .bind(intents.iter().map(|t| t.0.as_str()).collect::<Vec<_>>())
            .bind(intents.iter().map(|t| t.1.as_str()).collect::<Vec<_>>())
            .bind(intents.iter().map(|t| t.2.as_str()).collect::<Vec<_>>())
            .fetch_all(&mut *tx)
            .await?;
            for (contest, source, intent, id) in resolved {
                ids.insert(id.clone());
                // Newest first, so the earliest is written last and wins.
                targets.intents.insert((contest, source, intent), id);
            }
        }
        targets.reconcile = credited.iter().cloned().collect();
        if ids.is_empty() {
            return Ok(targets);
        }
        let ids: Vec<String> = ids.into_iter().collect();
        let purchases = sqlx::query(
            "SELECT id, contest_id, entry_id, amount, currency, points_awarded, award_status, \
             refunded_amount, points_reversed FROM purchases WHERE id = ANY($1) \
             ORDER BY id FOR NO KEY UPDATE",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        for row in purchases {
            let award_status: &str = row.try_get("award_status")?;
            targets.by_id.insert(
                row.try_get("id")?,
                Target {
                    entry_id: row.try_get("entry_id")?,
                    contest_id: row.try_get("contest_id")?,
                    points_awarded: row.try_get("points_awarded")?,
                    points_reversed: row.try_get("points_reversed")?,
                    state: ReversalState {
                        amount: row.try_get("amount")?,
                        currency: row.try_get("currency")?,
                        award_status: AwardStatus::parse(award_status)
                            .unwrap_or(AwardStatus::Awarded),
                        refunded: row.try_get("refunded_amount")?,
                        chargebacks: BTreeSet::new(),
                        won: BTreeSet::new(),
                    },
                    credit: None,
                    changed: false,
                },
            );
        }
        let found: Vec<&str> = targets.by_id.keys().map(String::as_str).collect();
        let credits: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT purchase_id, advocate_entry_id, points, points_reversed \
             FROM referral_credits WHERE purchase_id = ANY($1)",
        )
        .bind(&found)
        .fetch_all(&mut *tx)
        .await?;
        let chargebacks: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT purchase_id, kind, refund_id FROM reversals WHERE purchase_id = ANY($1) \
             AND status = 'applied' AND kind <> 'refund'",
        )
        .bind(&found)
        .fetch_all(&mut *tx)
        .await?;
        for (purchase, advocate, points, reversed) in credits {
            if let Some(target) = targets.by_id.get_mut(&purchase) {
                target.credit = Some(Credit {
                    advocate,
                    points,
                    reversed,
                    changed: false,
                });
            }
        }
        for (purchase, kind, refund_id) in chargebacks {
            if let Some(target) = targets.by_id.get_mut(&purchase) {
                if kind == "chargeback" {
                    target.state.chargebacks.insert(refund_id);
                } else {
                    target.state.won.insert(refund_id);
                }
            }
        }
        Ok(targets)
    }

    /// Every entry applying the reversals may change: buyers and advocates.
    pub fn entries(&self) -> impl Iterator<Item = String> + '_ {
        self.by_id.values().flat_map(|target| {
            std::iter::once(target.entry_id.clone())
                .chain(target.credit.iter().map(|credit| credit.advocate.clone()))
        })
    }

    /// Records that a purchase (recorded in this transaction) got 0 points at the points limit.
    pub fn limit_purchase(&mut self, id: &str) {
        if let Some(target) = self.by_id.get_mut(id) {
            target.points_awarded = 0;
            target.state.award_status = AwardStatus::PointsLimit;
        }
    }

    /// Records that a credit (recorded in this transaction) got 0 points at the points limit.
    pub fn limit_credit(&mut self, purchase_id: &str) {
        if let Some(credit) = self
            .by_id
            .get_mut(purchase_id)
            .and_then(|target| target.credit.as_mut())
        {
            credit.points = 0;
        }
    }

    /// The purchase a reversal names, if recorded.
    fn resolve(&self, event: &ReversalEvent) -> Option<String> {
        let id = match &event.target {
            ReversalTarget::OrderId(order) => {
                PurchaseId::derive(&event.contest_id, event.source, order)
                    .as_str()
                    .to_owned()
            }
            ReversalTarget::PaymentIntent(intent) => self
                .intents
                .get(&(
                    event.contest_id.as_str().to_owned(),
                    event.source.as_str().to_owned(),
                    intent.clone(),
                ))?
                .clone(),
        };
        self.by_id.contains_key(&id).then_some(id)
    }
}

/// How one claimed reversal was settled.
#[derive(Debug, Clone)]
pub struct Settled {
    /// The input index, for reversals that came with the batch.
    pub index: Option<usize>,
    /// What became of it.
    pub outcome: ReversalOutcome,
    /// Its key columns, to update its row (unless still pending).
    key: Key,
}

/// Applies the claimed reversals to their (locked) purchases, in a fixed order, through the
/// books: each one's delta to the buyer and to the advocate together, within the points limit,
/// or nothing.
pub fn settle(
    books: &mut Books,
    targets: &mut Targets,
    claimed: &[Claimed],
    contests: &HashMap<String, Contest>,
) -> Vec<Settled> {
    let mut order: Vec<(Option<String>, &Claimed)> = claimed
        .iter()
        .map(|claim| (targets.resolve(&claim.event), claim))
        .collect();
    order.sort_by(|(a, x), (b, y)| {
        (a, x.event.received_at, key(&x.event)).cmp(&(b, y.event.received_at, key(&y.event)))
    });
    let mut settled = Vec::with_capacity(order.len());
    for (purchase_id, claim) in order {
        let event = &claim.event;
        let mut outcome = ReversalOutcome {
            reversal_id: event.reversal_id.clone(),
            result: ReversalResult::Pending,
            purchase_id: None,
            points_reversed: 0,
            referral_points_reversed: 0,
            status: None,
        };
        if let Some(id) = purchase_id {
            let rounding = contests
                .get(event.contest_id.as_str())
                .map_or(Rounding::default(), |contest| contest.rounding);
            let target = targets.by_id.get_mut(&id).expect("resolved above");
            apply(books, &id, target, event, rounding, &mut outcome);
            outcome.purchase_id = Some(PurchaseId::from_stored(id));
        }
        settled.push(Settled {
            index: claim.index,
            outcome,
            key: key(event),
        });
    }
    for id in std::mem::take(&mut targets.reconcile) {
        if let Some(target) = targets.by_id.get_mut(&id) {
            let rounding = contests
                .get(&target.contest_id)
                .map_or(Rounding::default(), |contest| contest.rounding);
            reconcile_credit(books, &id, target, rounding);
        }
    }
    settled
}

/// Applies one reversal to its purchase.
fn apply(
    books: &mut Books,
    purchase_id: &str,
    target: &mut Target,
    event: &ReversalEvent,
    rounding: Rounding,
    outcome: &mut ReversalOutcome,
) {
    let mut next = target.state.clone();
    let refused = |outcome: &mut ReversalOutcome, result| {
        outcome.result = result;
        outcome.status = Some(target.state.status());
    };
    match next.absorb(event.kind, &event.refund_id, &event.amount) {
        Ok(()) => {}
        Err(Refused::CurrencyMismatch) => {
            tracing::warn!(reversal_id = %event.reversal_id, %purchase_id, purchase_currency = %target.state.currency, "refund in another currency than its purchase: recorded, nothing changed");
            return refused(outcome, ReversalResult::CurrencyMismatch);
        }
        Err(Refused::OutOfRange) => return refused(outcome, ReversalResult::PointsLimit),
    }
    let buyer = next.reversed(target.points_awarded, rounding);
    let credit = match &target.credit {
        Some(credit) => next.reversed(credit.points, rounding).map(Some),
        None => Some(None),
    };
    let (Some(buyer), Some(credit_target)) = (buyer, credit) else {
        return refused(outcome, ReversalResult::PointsLimit);
    };
    let kind = match event.kind {
        ReversalKind::Refund => LedgerKind::Refund,
        ReversalKind::Chargeback | ReversalKind::ChargebackWon => LedgerKind::Chargeback,
    };
    let what = match event.kind {
        ReversalKind::Refund => "refund",
        ReversalKind::Chargeback => "chargeback",
        ReversalKind::ChargebackWon => "chargeback won",
    };
    let reason = match &event.reason {
        Some(reason) => format!("{what} {}: {reason}", event.refund_id),
        None => format!("{what} {}", event.refund_id),
    };
    // Both targets lie in [0, points], so the deltas cannot overflow.
    let buyer_delta = buyer - target.points_reversed;
    let mut changes = vec![Change {
        entry_id: target.entry_id.clone(),
        kind,
        points: -buyer_delta,
        purchase_id: Some(purchase_id.to_owned()),
        reason: Some(reason.clone()),
    }];
    let mut credit_delta = 0;
    if let (Some(credit), Some(credit_target)) = (&target.credit, credit_target) {
        credit_delta = credit_target - credit.reversed;
        changes.push(Change {
            entry_id: credit.advocate.clone(),
            kind,
            points: -credit_delta,
            purchase_id: Some(purchase_id.to_owned()),
            reason: Some(format!("referral credit: {reason}")),
        });
    }
    if !books.apply(changes) {
        tracing::warn!(reversal_id = %event.reversal_id, %purchase_id, "points limit: reversal recorded, nothing changed");
        return refused(outcome, ReversalResult::PointsLimit);
    }
    target.state = next;
    target.points_reversed = buyer;
    target.changed = true;
    if let (Some(credit), Some(credit_target)) = (target.credit.as_mut(), credit_target) {
        credit.reversed = credit_target;
        credit.changed |= credit_delta != 0;
    }
    outcome.result = ReversalResult::Applied;
    outcome.points_reversed = buyer_delta;
    outcome.referral_points_reversed = credit_delta;
    outcome.status = Some(target.state.status());
}

/// Brings a credit recorded after its purchase's reversals in line with them.
fn reconcile_credit(books: &mut Books, purchase_id: &str, target: &mut Target, rounding: Rounding) {
    let Some(credit) = target.credit.as_mut() else {
        return;
    };
    let Some(goal) = target.state.reversed(credit.points, rounding) else {
        return;
    };
    let delta = goal - credit.reversed;
    if delta == 0 {
        return;
    }
    let kind = if target.state.chargeback_active() {
        LedgerKind::Chargeback
    } else {
        LedgerKind::Refund
    };
    let change = Change {
        entry_id: credit.advocate.clone(),
        kind,
        points: -delta,
        purchase_id: Some(purchase_id.to_owned()),
        reason: Some(
            "referral credit: the purchase was refunded before the credit was recorded".into(),
        ),
    };
    if books.apply(vec![change]) {
        credit.reversed = goal;
        credit.changed = true;
    }
}

/// Writes what settling changed: purchases, credits and the reversals' rows.
pub async fn write(
    tx: &mut sqlx::PgConnection,
    targets: &Targets,
    settled: &[Settled],
) -> Result<(), sqlx::Error> {
    let changed: Vec<(&String, &Target)> =
        targets.by_id.iter().filter(|(_, t)| t.changed).collect();
    if !changed.is_empty() {
        sqlx::query(
            "UPDATE purchases p SET refunded_amount = u.refunded, points_reversed = u.reversed, \
             status = u.status FROM UNNEST($1::text[], $2::numeric[], $3::bigint[], $4::text[]) \
             AS u(id, refunded, reversed, status) WHERE p.id = u.id",
        )
        .bind(
            changed
                .iter()
                .map(|(id, _)| id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            changed
                .iter()
                .map(|(_, t)| t.state.refunded)
                .collect::<Vec<_>>(),
        )
        .bind(
            changed
                .iter()
                .map(|(_, t)| t.points_reversed)
                .collect::<Vec<_>>(),
        )
        .bind(
            changed
                .iter()
                .map(|(_, t)| t.state.status().as_str())
                .collect::<Vec<_>>(),
        )
        .execute(&mut *tx)
        .await?;
    }
    let credits: Vec<(&String, i64)> = targets
        .by_id
        .iter()
        .filter_map(|(id, t)| {
            t.credit
                .as_ref()
                .filter(|c| c.changed)
                .map(|c| (id, c.reversed))
        })
        .collect();
    if !credits.is_empty() {
        sqlx::query(
            "UPDATE referral_credits c SET points_reversed = u.reversed \
             FROM UNNEST($1::text[], $2::bigint[]) AS u(purchase_id, reversed) \
             WHERE c.purchase_id = u.purchase_id",
        )
        .bind(
            credits
                .iter()
                .map(|(id, _)| id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            credits
                .iter()
                .map(|(_, reversed)| *reversed)
                .collect::<Vec<_>>(),
        )
        .execute(&mut *tx)
        .await?;
    }
    let rows: Vec<&Settled> = settled
        .iter()
        .filter(|s| s.outcome.result != ReversalResult::Pending)
        .collect();
    if !rows.is_empty() {
        sqlx::query(
            "UPDATE reversals r SET status = u.status, purchase_id = u.purchase_id, \
             points_reversed = u.points, referral_points_reversed = u.referral, settled_at = now() \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
             $7::text[], $8::bigint[], $9::bigint[]) \
             AS u(contest_id, source, target_key, refund_id, kind, status, purchase_id, points, referral) \
             WHERE (r.contest_id, r.source, r.target_key, r.refund_id, r.kind) = \
             (u.contest_id, u.source, u.target_key, u.refund_id, u.kind)",
        )
        .bind(rows.iter().map(|s| s.key.0.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|s| s.key.1).collect::<Vec<_>>())
        .bind(rows.iter().map(|s| s.key.2.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|s| s.key.3.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|s| s.key.4).collect::<Vec<_>>())
        .bind(rows.iter().map(|s| s.outcome.result.as_str()).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|s| s.outcome.purchase_id.as_ref().map(PurchaseId::as_str))
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|s| s.outcome.points_reversed).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|s| s.outcome.referral_points_reversed)
                .collect::<Vec<_>>(),
        )
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}
