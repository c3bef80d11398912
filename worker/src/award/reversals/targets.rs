//! The purchases claimed reversals concern: locked `FOR NO KEY UPDATE` in id order (before any
//! entry), with their refunded total, the chargebacks applied to them and their referral credit.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rust_decimal::Decimal;
use shared::{
    event::{ReversalEvent, ReversalTarget},
    ids::PurchaseId,
    points::AwardStatus,
};
use sqlx::Row;

use super::{super::rule::ReversalState, Claimed};

/// The referral credit a target purchase earned.
#[derive(Debug, Clone)]
pub(super) struct Credit {
    /// The code's owner.
    pub(super) advocate: String,
    /// Points credited (0 when limited).
    pub(super) points: i64,
    /// Points taken back from it so far.
    pub(super) reversed: i64,
    /// True when `reversed` changed in this transaction.
    pub(super) changed: bool,
}

/// A purchase some claimed reversal concerns, locked.
#[derive(Debug, Clone)]
pub(super) struct Target {
    /// The buyer's entry.
    pub(super) entry_id: String,
    /// The purchase's contest (for its rounding).
    pub(super) contest_id: String,
    /// What the purchase first earned.
    pub(super) points_awarded: i64,
    /// Taken back so far.
    pub(super) points_reversed: i64,
    /// Refunded total and chargebacks.
    pub(super) state: ReversalState,
    /// The referral credit it earned, if any.
    pub(super) credit: Option<Credit>,
    /// True when the purchase changed in this transaction.
    pub(super) changed: bool,
}

/// The purchases the claimed reversals concern, locked, with their credits and chargebacks.
#[derive(Debug, Default)]
pub struct Targets {
    /// The locked purchases by id.
    pub(super) by_id: BTreeMap<String, Target>,
    /// `(contest, source, payment intent)` → purchase id.
    pub(super) intents: HashMap<(String, String, String), String>,
    /// Purchases whose credit was recorded after them (see
    /// `purchases::Staged::credited_older_purchases`).
    pub(super) reconcile: BTreeSet<String>,
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
                        partial_sum: Decimal::ZERO,
                        cumulative_max: Decimal::ZERO,
                        fully_refunded: false,
                        chargebacks: BTreeSet::new(),
                        won: BTreeSet::new(),
                    },
                    credit: None,
                    changed: false,
                },
            );
        }
        let found: Vec<&str> = targets.by_id.keys().map(String::as_str).collect();
        // Locked (their purchases are, so no two transactions contend here): an erasure renames
        // the advocate's entry and cascades to these rows, so it waits for this transaction
        // rather than leaving it an advocate id that no longer exists by the time entries are
        // locked.
        let credits: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT purchase_id, advocate_entry_id, points, points_reversed \
             FROM referral_credits WHERE purchase_id = ANY($1) \
             ORDER BY purchase_id FOR NO KEY UPDATE",
        )
        .bind(&found)
        .fetch_all(&mut *tx)
        .await?;
        // Every reversal applied so far, folded into the state again: the refunded total is a
        // function of the set of refunds, whatever order they came in.
        let applied: Vec<(String, String, String, String, Option<Decimal>)> = sqlx::query_as(
            "SELECT purchase_id, kind, refund_id, amount_type, amount FROM reversals \
             WHERE purchase_id = ANY($1) AND status = 'applied'",
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
        for (purchase, kind, refund_id, amount_type, amount) in applied {
            if let Some(target) = targets.by_id.get_mut(&purchase) {
                target.state.restore(&kind, refund_id, &amount_type, amount);
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
    pub(super) fn resolve(&self, event: &ReversalEvent) -> Option<String> {
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
