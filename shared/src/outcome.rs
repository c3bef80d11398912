//! What one event came to, as the worker tells a receiver that waits for it (synchronous
//! answers: `Prefer: wait=N`, or a contest's `syncResponses`).
//!
//! The receiver publishes such an event with RabbitMQ's direct reply-to: `reply_to` =
//! [`REPLY_TO`] and a `correlation_id` unique to the request. After the batch holding the event
//! has committed, the worker publishes one [`OutcomeMessage`] to the default exchange with the
//! routing key the broker put in `reply_to` and the same `correlation_id`; the broker hands it
//! straight to the receiver's channel (no queue). Replies are best effort: a lost one only means
//! the sender gets the usual `accepted` answer.
//!
//! The message is versioned like [`crate::event::Envelope`]: adding an optional field keeps
//! [`OUTCOME_VERSION`]; a change an older receiver would misread bumps it, and a receiver that
//! does not know a version answers `accepted` rather than guess.

use serde::{Deserialize, Serialize};

use crate::{
    ids::{EntryId, PurchaseId, ReversalId},
    points::PurchaseStatus,
};

/// The version of [`OutcomeMessage`] this build writes and understands.
pub const OUTCOME_VERSION: u32 = 1;

/// The pseudo-queue of RabbitMQ's direct reply-to: a requester consumes it (no-ack) on the
/// channel it publishes on, and sets it as `reply_to`; the broker rewrites it per channel.
pub const REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// How every rewritten direct reply-to address begins. The worker answers only addresses like
/// this, so a `reply_to` naming an ordinary queue (a mistake, or a hostile publisher) can never
/// make it publish into one.
pub const REPLY_TO_PREFIX: &str = "amq.rabbitmq.reply-to.";

/// The AMQP `type` property of a reply.
pub const MESSAGE_TYPE: &str = "outcome";

/// What travels back to the waiting receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeMessage {
    /// Schema version of `outcome`.
    pub version: u32,
    /// What the event came to.
    pub outcome: Outcome,
}

/// What one event came to, committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Outcome {
    /// A purchase.
    Purchase(PurchaseOutcome),
    /// A signup.
    Signup(SignupOutcome),
    /// A refund, chargeback or chargeback won.
    Reversal(ReversalOutcome),
}

/// What became of a purchase event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PurchaseOutcome {
    /// The purchase.
    pub purchase_id: PurchaseId,
    /// The entry the purchase is credited to, as its lookup shows it: `None` once that entry was
    /// erased (the purchase is unlinked from the person).
    pub entry_id: Option<EntryId>,
    /// `false` when it was recorded before (a redelivery, a duplicate webhook, an earlier copy
    /// in the same batch): this event then awarded nothing.
    pub recorded_now: bool,
    /// Points this event awarded (0 for a repeat).
    pub points_awarded: i64,
    /// The purchase's status once the event committed (for a repeat: as stored then).
    pub status: PurchaseStatus,
}

/// What became of a signup event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignupOutcome {
    /// The entry signed up.
    pub entry_id: EntryId,
    /// True when the entry existed before (nothing was paid).
    pub already_existed: bool,
    /// Points this event paid the advocate (the owner of the referral code).
    pub advocate_points: i64,
    /// Points this event paid the friend (the person signing up).
    pub friend_points: i64,
}

/// What became of a reversal event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReversalOutcome {
    /// The reversal.
    pub reversal_id: ReversalId,
    /// Applied, pending, duplicate, …
    pub result: ReversalResult,
    /// The purchase it concerns, when it is recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purchase_id: Option<PurchaseId>,
    /// Points this event took from the buyer (negative: given back by a won chargeback).
    pub points_reversed: i64,
    /// Points this event took from the advocate credited for the purchase.
    pub referral_points_reversed: i64,
    /// The purchase's status after it, when it is recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purchase_status: Option<PurchaseStatus>,
}

/// The fate of one reversal event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
    /// The name used in the database (for recorded ones), metrics, logs and answers.
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

/// Why a reply body could not be turned into an [`OutcomeMessage`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON of the expected shape.
    #[error("malformed outcome: {0}")]
    Malformed(#[from] serde_json::Error),
    /// A version this build does not understand.
    #[error("unknown outcome version {0}")]
    UnknownVersion(u32),
}

impl OutcomeMessage {
    /// Wraps an outcome in the current version.
    pub fn new(outcome: Outcome) -> Self {
        Self {
            version: OUTCOME_VERSION,
            outcome,
        }
    }

    /// Serialises to the bytes published.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain data structures to a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a reply body, checking the version first so that a newer one is reported as such.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        let VersionOnly { version } = serde_json::from_slice(bytes)?;
        if version != OUTCOME_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        Ok(serde_json::from_slice(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{email::Email, ids::ContestId};

    fn purchase() -> OutcomeMessage {
        let contest = ContestId::parse("c1").unwrap();
        OutcomeMessage::new(Outcome::Purchase(PurchaseOutcome {
            purchase_id: PurchaseId::from_stored("pur_1".into()),
            entry_id: Some(EntryId::derive(
                &contest,
                &Email::parse("a@example.com").unwrap(),
            )),
            recorded_now: true,
            points_awarded: 80,
            status: PurchaseStatus::Awarded,
        }))
    }

    #[test]
    fn round_trips_each_kind() {
        let reversal = OutcomeMessage::new(Outcome::Reversal(ReversalOutcome {
            reversal_id: ReversalId::from_stored("rev_1".into()),
            result: ReversalResult::Pending,
            purchase_id: None,
            points_reversed: 0,
            referral_points_reversed: 0,
            purchase_status: None,
        }));
        let signup = OutcomeMessage::new(Outcome::Signup(SignupOutcome {
            entry_id: EntryId::from_stored("ent_1".into()),
            already_existed: false,
            advocate_points: 10,
            friend_points: 5,
        }));
        for message in [purchase(), reversal, signup] {
            assert_eq!(
                OutcomeMessage::from_bytes(&message.to_bytes()).unwrap(),
                message
            );
        }
        let text = String::from_utf8(purchase().to_bytes()).unwrap();
        assert!(text.contains(r#""type":"purchase""#), "{text}");
        assert!(text.contains(r#""pointsAwarded":80"#), "{text}");
    }

    #[test]
    fn unknown_versions_and_garbage_are_told_apart() {
        let mut value: serde_json::Value = serde_json::from_slice(&purchase().to_bytes()).unwrap();
        value["version"] = 2.into();
        assert!(matches!(
            OutcomeMessage::from_bytes(&serde_json::to_vec(&value).unwrap()),
            Err(DecodeError::UnknownVersion(2))
        ));
        assert!(matches!(
            OutcomeMessage::from_bytes(b"{}"),
            Err(DecodeError::Malformed(_))
        ));
    }
}
