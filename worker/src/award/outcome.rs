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

/// The fate of one reversal event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReversalResult {
    /// Applied now.
    Applied,
    /// Its purchase is not recorded yet: kept, and applied once when the purchase lands.
    Pending,
    /// Already recorded (a redelivery or a duplicate webhook): nothing changed.
    Duplicate,
    /// A refund in a currency other than the purchase's: recorded, nothing changed.
    CurrencyMismatch,
    /// It would take an entry beyond the points limit: recorded, nothing changed.
    PointsLimit,
}

impl ReversalResult {
    /// The name used in the database (for recorded ones), metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ReversalResult::Applied => "applied",
            ReversalResult::Pending => "pending",
            ReversalResult::Duplicate => "duplicate",
            ReversalResult::CurrencyMismatch => "currency_mismatch",
            ReversalResult::PointsLimit => "points_limit",
        }
    }
}
