//! Metrics and logs of what settled events came to (the [`BatchOutcome`]'s per-event
//! outcomes), for batches and for the pending-reversal sweep.

use shared::metrics as names;

use crate::award::{
    outcome::{EventOutcome, ReversalOutcome, ReversalResult},
    BatchOutcome,
};

/// Records a committed batch's reversal outcomes and points-limit refusals.
pub fn record_batch(outcome: &BatchOutcome) {
    let mut limited_reversals = 0u64;
    for event in &outcome.events {
        if let EventOutcome::Reversal(reversal) = event {
            record_reversal(reversal, None);
            limited_reversals += u64::from(reversal.result == ReversalResult::PointsLimit);
        }
    }
    for reversal in &outcome.awaited_reversals {
        record_reversal(reversal, Some("purchase"));
    }
    if outcome.points_limited > 0 || limited_reversals > 0 {
        metrics::counter!(names::POINTS_LIMIT, "what" => "award")
            .increment(outcome.points_limited as u64);
        metrics::counter!(names::POINTS_LIMIT, "what" => "reversal").increment(limited_reversals);
    }
}

/// Records what the sweep applied.
pub fn record_sweep(outcomes: &[ReversalOutcome]) {
    for reversal in outcomes {
        record_reversal(reversal, Some("sweep"));
        if reversal.result == ReversalResult::PointsLimit {
            metrics::counter!(names::POINTS_LIMIT, "what" => "reversal").increment(1);
        }
    }
}

/// One reversal: its outcome (events of a batch) or its late application (`via`), the points it
/// moved, and a debug line naming it.
fn record_reversal(reversal: &ReversalOutcome, via: Option<&'static str>) {
    match via {
        None => {
            metrics::counter!(names::REVERSALS, "outcome" => reversal.result.as_str()).increment(1)
        }
        Some(via) if reversal.result != ReversalResult::Pending => {
            metrics::counter!(names::PENDING_REVERSALS_APPLIED, "via" => via).increment(1);
            if reversal.result == ReversalResult::CurrencyMismatch {
                metrics::counter!(names::REVERSALS, "outcome" => "currency_mismatch").increment(1);
            }
        }
        Some(_) => {}
    }
    let moved = reversal
        .points_reversed
        .saturating_add(reversal.referral_points_reversed);
    if moved > 0 {
        metrics::counter!(names::POINTS_REVERSED, "direction" => "taken").increment(moved as u64);
    } else if moved < 0 {
        metrics::counter!(names::POINTS_REVERSED, "direction" => "returned")
            .increment(moved.unsigned_abs());
    }
    tracing::debug!(
        reversal_id = %reversal.reversal_id,
        outcome = reversal.result.as_str(),
        via = via.unwrap_or("event"),
        purchase_id = reversal.purchase_id.as_ref().map(|id| id.as_str()),
        points_reversed = reversal.points_reversed,
        "reversal settled"
    );
}
