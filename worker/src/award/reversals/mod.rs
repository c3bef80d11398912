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
//!
//! # Layout
//!
//! - [`claim`]: recording reversals (the dedupe) and claiming `pending` ones.
//! - [`targets`]: the purchases claimed reversals concern, locked, with their reversal state.
//! - [`mod@settle`]: applying them through the books and writing what changed.

pub mod claim;
pub mod settle;
pub mod targets;

use shared::event::ReversalEvent;

pub use self::{
    claim::{claim_awaited, claim_ready, record},
    settle::{settle, write, Settled},
    targets::Targets,
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
