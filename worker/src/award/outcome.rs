//! What a batch did, per input event: the worker's answer to "what happened to this event?",
//! for metrics and logs now, and for the synchronous webhook answers that wait for it.

use shared::{
    ids::{EntryId, PurchaseId, ReversalId},
    points::{AwardStatus, PurchaseStatus},
};

/// What one input event came to (`BatchOutcome::events[i]` is about `events[i]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventOutcome {
    /// A purchase.
    Purchase(PurchaseOutcome),
    /// A signup.
    Signup(SignupOutcome),
    /// A refund, chargeback or chargeback won.
    Reversal(ReversalOutcome),
    /// The event names a contest that does not exist: it is dead-lettered.
    UnknownContest,
}

/// What became of a purchase event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseOutcome {
    /// The purchase.
    pub purchase_id: PurchaseId,
    /// The buyer's entry (derived from contest and email).
    pub entry_id: EntryId,
    /// `false` when the purchase was already recorded (a redelivery, a duplicate webhook, or a
    /// repeat within the batch): it then awarded nothing.
    pub recorded_now: bool,
    /// Points this event awarded (0 for a repeat).
    pub points_awarded: i64,
    /// The status it was recorded with by this event; `None` for a repeat (the stored status
    /// is not read back, to keep the hot path lean).
    pub status: Option<AwardStatus>,
}

/// What became of a signup event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignupOutcome {
    /// The entry signed up.
    pub entry_id: EntryId,
    /// True when the entry existed before.
    pub already_existed: bool,
    /// The advocate credited by this signup, if any.
    pub advocate_entry_id: Option<String>,
    /// Points paid to the advocate by this event.
    pub advocate_points: i64,
    /// Points paid to the friend (the person signing up) by this event.
    pub friend_points: i64,
}

/// What became of a reversal event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReversalOutcome {
    /// The reversal.
    pub reversal_id: ReversalId,
    /// Applied, pending, duplicate, …
    pub result: ReversalResult,
    /// The purchase it concerns, once found.
    pub purchase_id: Option<PurchaseId>,
    /// Points this event took from the buyer (negative: given back, by a won chargeback).
    pub points_reversed: i64,
    /// Points this event took from the advocate credited for the purchase.
    pub referral_points_reversed: i64,
    /// The purchase's status after it, once found.
    pub status: Option<PurchaseStatus>,
}

/// The fate of one reversal event (shared with the receiver, which answers it to senders that
/// wait for it).
pub use shared::outcome::ReversalResult;
