//! Applying claimed reversals to their locked purchases through the books, in a fixed order,
//! and writing what changed.

use std::collections::HashMap;

use shared::{
    contest::Contest,
    db::ledger::LedgerKind,
    event::{ReversalEvent, ReversalKind},
    ids::PurchaseId,
    points::Rounding,
};

use super::{
    super::{
        books::{Books, Change},
        outcome::{ReversalOutcome, ReversalResult},
        rule::Refused,
    },
    key,
    targets::{Target, Targets},
    Claimed, Key,
};

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
                .map(|(_, t)| t.state.refunded())
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
