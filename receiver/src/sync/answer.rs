//! The synchronous answers: what a sender that waits gets once the worker's outcome is in, in
//! the original Blitz Rocket purchase API's shape (`purchaseId`, `entryId`, `pointsAwarded`,
//! `alreadyExists`, `message`). Each is one variant of its operation's answer
//! ([`crate::webhooks::answer`]): its `status` (the purchase's status, `recorded`, or what the
//! reversal did) is never `accepted` or `ignored`, so the document's `oneOf` matches exactly one
//! variant. They are the `data` of the usual success envelope.

use serde::Serialize;
use shared::{
    event::ReversalKind,
    ids::{EntryId, OrderId, PurchaseId, ReversalId},
    outcome::{PurchaseOutcome, ReversalOutcome, ReversalResult, SignupOutcome},
    points::PurchaseStatus,
};
use utoipa::ToSchema;

use crate::webhooks::answer::ReversalAccepted;

/// The message of a purchase recorded by this request.
pub const PURCHASE_RECORDED: &str = "Purchase recorded successfully";

/// The message of a purchase that was recorded before.
pub const PURCHASE_ALREADY_RECORDED: &str = "Purchase already recorded";

/// A purchase, recorded (the sender waited): the worker's transaction has committed, so the
/// lookup, the entry and the leaderboard already show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"purchaseId": "pur_8r3k2m1q0p9s7t6v5w4x3y2z1a", "entryId": "ent_3k9q2m7x1p0s8t6v5w4x3y2z1a", "orderId": "A-1", "pointsAwarded": 80, "alreadyExists": false, "status": "awarded", "message": "Purchase recorded successfully"}))]
pub struct PurchaseRecorded {
    /// `pur_` + a hash of (contest, source, orderId).
    #[schema(value_type = String, example = "pur_8r3k2m1q0p9s7t6v5w4x3y2z1a")]
    pub purchase_id: PurchaseId,
    /// The entry the purchase is credited to, as its lookup shows it: null when a repeat finds
    /// the buyer's entry erased (the purchase is unlinked from the person).
    #[schema(value_type = Option<String>, required = true, example = "ent_3k9q2m7x1p0s8t6v5w4x3y2z1a")]
    pub entry_id: Option<EntryId>,
    /// The order id as text.
    #[schema(example = "A-1")]
    pub order_id: String,
    /// Points this request awarded: what the purchase earned the first time, 0 for a repeat.
    pub points_awarded: i64,
    /// True when the purchase was recorded before (a retry, a duplicate): nothing was awarded.
    pub already_exists: bool,
    /// The purchase's status once the request committed (for a repeat: as stored).
    pub status: PurchaseStatus,
    /// `Purchase recorded successfully`, `Purchase already recorded`, or why a new purchase
    /// earned no points.
    pub message: String,
}

impl PurchaseRecorded {
    /// The answer to a purchase of `order_id` that came to `outcome`.
    pub fn new(outcome: &PurchaseOutcome, order_id: &OrderId) -> Self {
        let message = match (outcome.recorded_now, outcome.status) {
            (false, _) => PURCHASE_ALREADY_RECORDED,
            (true, PurchaseStatus::UnconvertibleCurrency) => {
                "Purchase recorded without points: the contest has no exchange rate for its \
                 currency"
            }
            (true, PurchaseStatus::PointsLimit) => {
                "Purchase recorded without points: the entry would pass the points limit"
            }
            (true, _) => PURCHASE_RECORDED,
        };
        Self {
            purchase_id: outcome.purchase_id.clone(),
            entry_id: outcome.entry_id.clone(),
            order_id: order_id.as_str().to_owned(),
            points_awarded: outcome.points_awarded,
            already_exists: !outcome.recorded_now,
            status: outcome.status,
            message: message.to_owned(),
        }
    }
}

/// A signup, applied (the sender waited).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"entryId": "ent_3k9q2m7x1p0s8t6v5w4x3y2z1a", "pointsAwarded": {"advocate": 10, "friend": 5}, "alreadyExists": false, "status": "recorded", "message": "Signup recorded successfully"}))]
pub struct SignupRecorded {
    /// `ent_` + a hash of (contest, email): the entry signed up.
    #[schema(value_type = String, example = "ent_3k9q2m7x1p0s8t6v5w4x3y2z1a")]
    pub entry_id: EntryId,
    /// Referral bonus this request paid (both 0 without a usable referral code, or for a
    /// repeat).
    pub points_awarded: SignupPoints,
    /// True when the email already had an entry: nothing was paid.
    pub already_exists: bool,
    /// Always `recorded` (new or not: see `alreadyExists`).
    pub status: SignupStatus,
    /// `Signup recorded successfully` or `Already signed up`.
    pub message: String,
}

/// The referral bonus a signup paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupPoints {
    /// Paid to the owner of the referral code.
    pub advocate: i64,
    /// Paid to the person signing up.
    pub friend: i64,
}

/// A signup's status once the worker applied it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignupStatus {
    /// The entry exists (created now or before: see `alreadyExists`).
    Recorded,
}

impl SignupRecorded {
    /// The answer to a signup that came to `outcome`.
    pub fn new(outcome: &SignupOutcome) -> Self {
        Self {
            entry_id: outcome.entry_id.clone(),
            points_awarded: SignupPoints {
                advocate: outcome.advocate_points,
                friend: outcome.friend_points,
            },
            already_exists: outcome.already_existed,
            status: SignupStatus::Recorded,
            message: if outcome.already_existed {
                "Already signed up"
            } else {
                "Signup recorded successfully"
            }
            .to_owned(),
        }
    }
}

/// A refund, cancellation, chargeback or won chargeback, settled, or kept until its purchase is
/// recorded (the sender waited).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"reversalId": "rev_3k2m1q0p9s7t6v5w4x3y2z1a8r", "orderId": "A-1", "refundId": "R-1", "kind": "refund", "purchaseId": "pur_8r3k2m1q0p9s7t6v5w4x3y2z1a", "pointsReversed": 40, "referralPointsReversed": 0, "alreadyExists": false, "status": "applied", "purchaseStatus": "partially_refunded", "message": "Refund applied"}))]
pub struct ReversalSettled {
    /// `rev_` + a hash of (contest, source, order, refundId, kind).
    #[schema(value_type = String, example = "rev_3k2m1q0p9s7t6v5w4x3y2z1a8r")]
    pub reversal_id: ReversalId,
    /// The purchase's order id as text.
    #[schema(example = "A-1")]
    pub order_id: String,
    /// The refund or chargeback id (`full` when none was named).
    pub refund_id: String,
    /// `refund`, `chargeback` or `chargeback_won`.
    pub kind: ReversalKind,
    /// The purchase, once recorded; null while the reversal is `pending`.
    #[schema(value_type = Option<String>, required = true)]
    pub purchase_id: Option<PurchaseId>,
    /// Points this request took from the buyer (negative: given back by a won chargeback; 0 when
    /// `pending`, a repeat, or refused).
    pub points_reversed: i64,
    /// Points this request took from the advocate credited for the purchase.
    pub referral_points_reversed: i64,
    /// True when this reversal was recorded before (a retry, a duplicate): nothing changed.
    pub already_exists: bool,
    /// What the reversal did.
    pub status: RefundStatus,
    /// The purchase's status after the reversal; null while `pending` or for a repeat.
    #[schema(required = true)]
    pub purchase_status: Option<PurchaseStatus>,
    /// What happened, in a sentence.
    pub message: String,
}

/// What became of a reversal: `applied`; `pending` (its purchase is not recorded yet: it is kept
/// and applied once, when the purchase arrives); `duplicate` (recorded before, nothing changed);
/// `currency_mismatch` (a refund in another currency than its purchase's: recorded, nothing
/// changed); `points_limit` (it would take an entry beyond ±9·10^15 points: nothing changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    /// Applied now.
    Applied,
    /// Kept until its purchase is recorded, then applied once.
    Pending,
    /// Recorded before: nothing changed.
    Duplicate,
    /// In another currency than its purchase's: recorded, nothing changed.
    CurrencyMismatch,
    /// Beyond the points limit: nothing changed.
    PointsLimit,
}

impl From<ReversalResult> for RefundStatus {
    fn from(result: ReversalResult) -> Self {
        match result {
            ReversalResult::Applied => RefundStatus::Applied,
            ReversalResult::Pending => RefundStatus::Pending,
            ReversalResult::Duplicate => RefundStatus::Duplicate,
            ReversalResult::CurrencyMismatch => RefundStatus::CurrencyMismatch,
            ReversalResult::PointsLimit => RefundStatus::PointsLimit,
        }
    }
}

impl ReversalSettled {
    /// The answer to the reversal `accepted` describes, which came to `outcome`; `None` for a
    /// reversal that names its purchase by a Stripe PaymentIntent (provider deliveries, which
    /// never wait).
    pub fn new(outcome: &ReversalOutcome, accepted: &ReversalAccepted) -> Option<Self> {
        let order_id = accepted.order_id.clone()?;
        let kind = accepted.kind;
        let what = match kind {
            ReversalKind::Refund => "Refund",
            ReversalKind::Chargeback => "Chargeback",
            ReversalKind::ChargebackWon => "Chargeback won",
        };
        let message = match outcome.result {
            ReversalResult::Applied => format!("{what} applied"),
            ReversalResult::Pending => format!(
                "{what} kept: the purchase is not recorded yet; it applies once the purchase is"
            ),
            ReversalResult::Duplicate => format!("{what} already recorded"),
            ReversalResult::CurrencyMismatch => {
                "Refund recorded without effect: its currency differs from the purchase's".into()
            }
            ReversalResult::PointsLimit => {
                format!("{what} not applied: it would take an entry beyond the points limit")
            }
        };
        Some(Self {
            reversal_id: outcome.reversal_id.clone(),
            order_id,
            refund_id: accepted.refund_id.clone(),
            kind,
            purchase_id: outcome.purchase_id.clone(),
            points_reversed: outcome.points_reversed,
            referral_points_reversed: outcome.referral_points_reversed,
            already_exists: outcome.result == ReversalResult::Duplicate,
            status: outcome.result.into(),
            purchase_status: outcome.purchase_status,
            message,
        })
    }
}

#[cfg(test)]
mod tests {
    use shared::ids::{EntryId, PurchaseId, ReversalId};

    use super::*;
    use crate::webhooks::answer::Accepted;

    #[test]
    fn purchases_answer_like_the_original_api() {
        let mut outcome = PurchaseOutcome {
            purchase_id: PurchaseId::from_stored("pur_1".into()),
            entry_id: Some(EntryId::from_stored("ent_1".into())),
            recorded_now: true,
            points_awarded: 80,
            status: PurchaseStatus::Awarded,
        };
        let order = OrderId::parse("A-1").unwrap();
        let first = serde_json::to_value(PurchaseRecorded::new(&outcome, &order)).unwrap();
        assert_eq!(
            first,
            serde_json::json!({"purchaseId": "pur_1", "entryId": "ent_1", "orderId": "A-1",
                "pointsAwarded": 80, "alreadyExists": false, "status": "awarded",
                "message": "Purchase recorded successfully"})
        );
        outcome.recorded_now = false;
        outcome.points_awarded = 0;
        let repeat = PurchaseRecorded::new(&outcome, &order);
        assert_eq!(
            (
                repeat.points_awarded,
                repeat.already_exists,
                repeat.message.as_str()
            ),
            (0, true, "Purchase already recorded")
        );
        // A repeat whose buyer's entry was erased names no entry, as the lookup does.
        outcome.entry_id = None;
        let erased = serde_json::to_value(PurchaseRecorded::new(&outcome, &order)).unwrap();
        assert_eq!(erased["entryId"], serde_json::Value::Null);
        assert_eq!(erased["purchaseId"], "pur_1");
    }

    #[test]
    fn refunds_say_what_they_reversed_or_that_they_wait() {
        let accepted = |refund_id: &str, kind| ReversalAccepted {
            reversal_id: ReversalId::from_stored("rev_1".into()),
            order_id: Some("A-1".into()),
            payment_intent: None,
            refund_id: refund_id.into(),
            kind,
            status: Accepted::Accepted,
        };
        let pending = ReversalOutcome {
            reversal_id: ReversalId::from_stored("rev_1".into()),
            result: ReversalResult::Pending,
            purchase_id: None,
            points_reversed: 0,
            referral_points_reversed: 0,
            purchase_status: None,
        };
        let answer = ReversalSettled::new(&pending, &accepted("full", ReversalKind::Refund))
            .expect("an order's reversal");
        let value = serde_json::to_value(&answer).unwrap();
        assert_eq!(value["status"], "pending");
        assert_eq!(value["purchaseId"], serde_json::Value::Null);
        assert_eq!(value["purchaseStatus"], serde_json::Value::Null);
        assert_eq!(value["alreadyExists"], false);
        let duplicate = ReversalOutcome {
            result: ReversalResult::Duplicate,
            ..pending.clone()
        };
        let answer = ReversalSettled::new(&duplicate, &accepted("R-1", ReversalKind::Chargeback))
            .expect("an order's reversal");
        assert!(answer.already_exists);
        assert_eq!(answer.message, "Chargeback already recorded");
        let by_intent = ReversalAccepted {
            order_id: None,
            payment_intent: Some("pi_1".into()),
            ..accepted("full", ReversalKind::Refund)
        };
        assert_eq!(ReversalSettled::new(&pending, &by_intent), None);
    }
}
