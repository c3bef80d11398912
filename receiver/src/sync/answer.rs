//! The synchronous answers: what a sender that waits gets once the worker's outcome is in, in
//! the original Blitz Rocket purchase API's shape (`purchaseId`, `entryId`, `pointsAwarded`,
//! `alreadyExists`, `message`). Each answer is a type (serde and utoipa), so the OpenAPI document
//! describes exactly what is served. They are the `data` of the usual success envelope.

use serde::Serialize;
use shared::{
    event::ReversalKind,
    ids::OrderId,
    outcome::{PurchaseOutcome, ReversalOutcome, ReversalResult, SignupOutcome},
    points::PurchaseStatus,
};
use utoipa::ToSchema;

/// The message of a purchase recorded by this request.
pub const PURCHASE_RECORDED: &str = "Purchase recorded successfully";

/// The message of a purchase that was recorded before.
pub const PURCHASE_ALREADY_RECORDED: &str = "Purchase already recorded";

/// A purchase, recorded: the worker's transaction has committed, so the lookup, the entry and
/// the leaderboard already show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"purchaseId": "pur_8r3k2m1q0p9s7t6v5w4x3y2z1a", "entryId": "ent_3k9q2m7x1p0s8t6v5w4x3y2z1a", "orderId": "A-1", "pointsAwarded": 80, "alreadyExists": false, "status": "awarded", "message": "Purchase recorded successfully"}))]
pub struct PurchaseAnswer {
    /// `pur_` + a hash of (contest, source, orderId).
    pub purchase_id: String,
    /// The entry the purchase is credited to (the one its lookup shows).
    pub entry_id: String,
    /// The order id as text.
    pub order_id: String,
    /// Points this request awarded: what the purchase earned the first time, 0 for a repeat.
    pub points_awarded: i64,
    /// True when the purchase was recorded before (a retry, a duplicate): nothing was awarded.
    pub already_exists: bool,
    /// The purchase's status once the request committed (for a repeat: as stored).
    #[schema(value_type = crate::openapi::PurchaseStatus)]
    pub status: String,
    /// `Purchase recorded successfully`, `Purchase already recorded`, or why a new purchase
    /// earned no points.
    pub message: String,
}

impl PurchaseAnswer {
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
            purchase_id: outcome.purchase_id.to_string(),
            entry_id: outcome.entry_id.to_string(),
            order_id: order_id.to_string(),
            points_awarded: outcome.points_awarded,
            already_exists: !outcome.recorded_now,
            status: outcome.status.as_str().to_owned(),
            message: message.to_owned(),
        }
    }
}

/// A signup, applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"entryId": "ent_3k9q2m7x1p0s8t6v5w4x3y2z1a", "pointsAwarded": {"advocate": 10, "friend": 5}, "alreadyExists": false, "status": "recorded", "message": "Signup recorded successfully"}))]
pub struct SignupAnswer {
    /// `ent_` + a hash of (contest, email): the entry signed up.
    pub entry_id: String,
    /// Referral bonus this request paid (both 0 without a usable referral code, or for a
    /// repeat).
    pub points_awarded: SignupPoints,
    /// True when the email already had an entry: nothing was paid.
    pub already_exists: bool,
    pub status: SignupStatus,
    /// `Signup recorded successfully` or `Already signed up`.
    pub message: String,
}

/// The referral bonus a signup paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupPoints {
    /// Paid to the owner of the referral code.
    pub advocate: i64,
    /// Paid to the person signing up.
    pub friend: i64,
}

/// A signup's status: `recorded` (new or not, see `alreadyExists`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignupStatus {
    Recorded,
}

impl SignupAnswer {
    /// The answer to a signup that came to `outcome`.
    pub fn new(outcome: &SignupOutcome) -> Self {
        Self {
            entry_id: outcome.entry_id.to_string(),
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

/// A refund, cancellation, chargeback or won chargeback, settled (or kept until its purchase
/// is recorded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"reversalId": "rev_3k2m1q0p9s7t6v5w4x3y2z1a8r", "orderId": "A-1", "refundId": "R-1", "kind": "refund", "purchaseId": "pur_8r3k2m1q0p9s7t6v5w4x3y2z1a", "pointsReversed": 40, "referralPointsReversed": 0, "alreadyExists": false, "status": "applied", "purchaseStatus": "partially_refunded", "message": "Refund applied"}))]
pub struct RefundAnswer {
    /// `rev_` + a hash of (contest, source, order, refundId, kind).
    pub reversal_id: String,
    /// The purchase's order id as text.
    pub order_id: String,
    /// The refund or chargeback id (`full` when none was named).
    pub refund_id: String,
    #[schema(value_type = crate::openapi::ReversalKind)]
    pub kind: String,
    /// The purchase, once recorded; null while the reversal is `pending`.
    #[schema(required = true)]
    pub purchase_id: Option<String>,
    /// Points this request took from the buyer (negative: given back by a won chargeback; 0 when
    /// `pending`, a repeat, or refused).
    pub points_reversed: i64,
    /// Points this request took from the advocate credited for the purchase.
    pub referral_points_reversed: i64,
    /// True when this reversal was recorded before (a retry, a duplicate): nothing changed.
    pub already_exists: bool,
    pub status: RefundStatus,
    /// The purchase's status after the reversal; null while `pending` or for a repeat.
    #[schema(value_type = Option<crate::openapi::PurchaseStatus>, required = true)]
    pub purchase_status: Option<String>,
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
    Applied,
    Pending,
    Duplicate,
    CurrencyMismatch,
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

impl RefundAnswer {
    /// The answer to a reversal of `order_id` named `refund_id` of `kind` that came to
    /// `outcome`.
    pub fn new(
        outcome: &ReversalOutcome,
        order_id: &OrderId,
        refund_id: &str,
        kind: ReversalKind,
    ) -> Self {
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
        Self {
            reversal_id: outcome.reversal_id.to_string(),
            order_id: order_id.to_string(),
            refund_id: refund_id.to_owned(),
            kind: kind.as_str().to_owned(),
            purchase_id: outcome.purchase_id.as_ref().map(ToString::to_string),
            points_reversed: outcome.points_reversed,
            referral_points_reversed: outcome.referral_points_reversed,
            already_exists: outcome.result == ReversalResult::Duplicate,
            status: outcome.result.into(),
            purchase_status: outcome.purchase_status.map(|s| s.as_str().to_owned()),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use shared::ids::{EntryId, PurchaseId, ReversalId};

    use super::*;

    #[test]
    fn purchases_answer_like_the_original_api() {
        let mut outcome = PurchaseOutcome {
            purchase_id: PurchaseId::from_stored("pur_1".into()),
            entry_id: EntryId::from_stored("ent_1".into()),
            recorded_now: true,
            points_awarded: 80,
            status: PurchaseStatus::Awarded,
        };
        let order = OrderId::parse("A-1").unwrap();
        let first = serde_json::to_value(PurchaseAnswer::new(&outcome, &order)).unwrap();
        assert_eq!(
            first,
            serde_json::json!({"purchaseId": "pur_1", "entryId": "ent_1", "orderId": "A-1",
                "pointsAwarded": 80, "alreadyExists": false, "status": "awarded",
                "message": "Purchase recorded successfully"})
        );
        outcome.recorded_now = false;
        outcome.points_awarded = 0;
        let repeat = PurchaseAnswer::new(&outcome, &order);
        assert_eq!(
            (
                repeat.points_awarded,
                repeat.already_exists,
                repeat.message.as_str()
            ),
            (0, true, "Purchase already recorded")
        );
    }

    #[test]
    fn refunds_say_what_they_reversed_or_that_they_wait() {
        let order = OrderId::parse("A-1").unwrap();
        let pending = ReversalOutcome {
            reversal_id: ReversalId::from_stored("rev_1".into()),
            result: ReversalResult::Pending,
            purchase_id: None,
            points_reversed: 0,
            referral_points_reversed: 0,
            purchase_status: None,
        };
        let answer = RefundAnswer::new(&pending, &order, "full", ReversalKind::Refund);
        let value = serde_json::to_value(&answer).unwrap();
        assert_eq!(value["status"], "pending");
        assert_eq!(value["purchaseId"], serde_json::Value::Null);
        assert_eq!(value["alreadyExists"], false);
        let duplicate = ReversalOutcome {
            result: ReversalResult::Duplicate,
            ..pending
        };
        let answer = RefundAnswer::new(&duplicate, &order, "R-1", ReversalKind::Chargeback);
        assert!(answer.already_exists);
        assert_eq!(answer.message, "Chargeback already recorded");
    }
}
