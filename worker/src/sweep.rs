//! The pending-reversal sweep each worker runs every `WORKER_PENDING_SWEEP_MS`.
//!
//! A reversal that arrives before its purchase is stored `pending`, and the purchase's own
//! transaction applies it when it lands. When both commit at the same moment each is invisible
//! to the other, and the reversal would wait forever: the sweep finds such reversals (their
//! purchase is now visible), and applies them with the same code as a batch. Rows are claimed
//! `FOR UPDATE SKIP LOCKED`, so any number of workers sweep at once without waiting on each other
//! or applying anything twice.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::{award::sweep_pending_reversals, outcome_metrics};

/// Reversals claimed per sweep transaction.
const PAGE: i64 = 100;

/// Sweeps every `period` until `stop` is cancelled (the first sweep runs at once, picking up
/// anything left from before a restart).
pub async fn run(pool: PgPool, period: Duration, stop: CancellationToken) {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0u32;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = interval.tick() => {}
        }
        // Page through everything ready; a page with no progress ends the round.
        loop {
            match sweep_pending_reversals(&pool, PAGE).await {
                Ok(outcomes) => {
                    failures = 0;
                    outcome_metrics::record_sweep(&outcomes);
                    let progress = outcomes
                        .iter()
                        .any(|o| o.result != crate::award::outcome::ReversalResult::Pending);
                    if !outcomes.is_empty() {
                        tracing::info!(
                            claimed = outcomes.len(),
                            "applied pending reversals whose purchase was recorded meanwhile"
                        );
                    }
                    if (outcomes.len() as i64) < PAGE || !progress || stop.is_cancelled() {
                        break;
                    }
                }
                Err(error) => {
                    failures += 1;
                    // Throttled: an outage would otherwise log every period.
                    if failures == 1 || failures.is_power_of_two() {
                        tracing::warn!(%error, failures, "pending-reversal sweep failed; retrying next period");
                    }
                    break;
                }
            }
        }
    }
}
