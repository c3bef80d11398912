//! The message on the queue: a versioned envelope around one normalised event.
//!
//! Every provider's payload is turned into one of these by the receiver, so the worker knows
//! nothing about Shopify or Stripe. Adding an optional field keeps version 1 (old workers ignore
//! it); a change old workers would misread bumps [`SCHEMA_VERSION`], and a worker dead-letters any
//! version it does not know instead of guessing, so old and new workers can run side by side
//! during an upgrade and nothing is misapplied (replay the dead letters once all workers are new).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use rust_decimal::Decimal;

use crate::{
    email::Email,
    ids::{ContestId, EntryId, OrderId, PurchaseId, ReversalId, Source},
    money::{Currency, Money},
};

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: u32 = 1;

/// What travels through RabbitMQ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Schema version of `event`.
    pub version: u32,
    /// The event itself.
    pub event: Event,
}

/// One normalised event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A paid order to award the buyer for (and, with a referral code, the code's owner).
    Purchase(PurchaseEvent),
    /// A person signing up for a contest, possibly with a friend's referral code.
    Signup(SignupEvent),
    /// Money going back (refund, cancellation, chargeback) or a chargeback won by the merchant.
    Reversal(ReversalEvent),
}

impl Event {
    /// The id the message is published under (AMQP `message_id`), for tracing and dedupe.
    pub fn message_id(&self) -> &str {
        match self {
            Event::Purchase(purchase) => purchase.purchase_id.as_str(),
            Event::Signup(signup) => signup.entry_id.as_str(),
            Event::Reversal(reversal) => reversal.reversal_id.as_str(),
        }
    }

    /// The AMQP `type` property.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Purchase(_) => "purchase",
            Event::Signup(_) => "signup",
            Event::Reversal(_) => "reversal",
        }
    }

    /// The contest the event belongs to.
    pub fn contest_id(&self) -> &ContestId {
        match self {
            Event::Purchase(purchase) => &purchase.contest_id,
            Event::Signup(signup) => &signup.contest_id,
            Event::Reversal(reversal) => &reversal.contest_id,
        }
    }

    /// When the receiver accepted the event.
    pub fn received_at(&self) -> DateTime<Utc> {
        match self {
            Event::Purchase(purchase) => purchase.received_at,
            Event::Signup(signup) => signup.received_at,
            Event::Reversal(reversal) => reversal.received_at,
        }
    }
}

/// A verified purchase, ready to be priced and recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PurchaseEvent {
    /// Derived from `(contest_id, source, order_id)`; the dedupe key.
    pub purchase_id: PurchaseId,
    /// The contest to award points in.
    pub contest_id: ContestId,
    /// Which endpoint / platform sent it.
    pub source: Source,
    /// The sender's order id.
    pub order_id: OrderId,
    /// The buyer, normalised.
    pub email: Email,
    /// The amount as sent, exact.
    pub money: Money,
    /// When the receiver accepted it (for end-to-end lag).
    pub received_at: DateTime<Utc>,
    /// Candidate referral codes the order carried, in priority order (referral webhooks only):
    /// the owner of the first one that belongs to another entry is credited
    /// `referral.pointsPerUnit` per unit, deduped per `(contest, source, orderId)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub referral_codes: Vec<String>,
    /// Stripe only: the Checkout Session's `payment_intent`. Charges and disputes name the
    /// payment intent, not the session, so the purchase remembers it to be found by reversals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_intent: Option<String>,
}

/// A signup, deduped per `(contest, email)` by the worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignupEvent {
    /// Derived from `(contest_id, email)`.
    pub entry_id: EntryId,
    /// The contest signed up for.
    pub contest_id: ContestId,
    /// Who signed up, normalised.
    pub email: Email,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Phone number, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// A friend's referral code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referral_code: Option<String>,
    /// When the receiver accepted it.
    pub received_at: DateTime<Utc>,
}

/// A reversal of (part of) a purchase's points, deduped per
/// `(contest, source, target, refundId, kind)` by the worker.
///
/// It may arrive before its purchase is recorded: the worker then keeps it and applies it, once,
/// when the purchase lands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReversalEvent {
    /// Derived from the dedupe key (see [`ReversalId::derive`]); the message id.
    pub reversal_id: ReversalId,
    /// The contest of the purchase.
    pub contest_id: ContestId,
    /// The source of the purchase (`api`, `shopify`, `stripe`, `coinflow`).
    pub source: Source,
    /// Which purchase it concerns.
    pub target: ReversalTarget,
    /// The sender's id of this refund or chargeback (`full` when a whole-purchase refund names
    /// none); part of the dedupe key, so two partial refunds of the same amount are two refunds.
    pub refund_id: String,
    /// Refund, chargeback, or chargeback won.
    pub kind: ReversalKind,
    /// How much money went back.
    pub amount: RefundAmount,
    /// Free text from the sender (generic webhook `reason`, provider reason), for the ledger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the receiver accepted it.
    pub received_at: DateTime<Utc>,
}

/// How a reversal names its purchase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ReversalTarget {
    /// By the order id the purchase was recorded under (with the event's source).
    OrderId(OrderId),
    /// Stripe charges and disputes: by the `payment_intent` of the Checkout Session.
    PaymentIntent(String),
}

impl ReversalTarget {
    /// The target as one string for dedupe keys and storage (`order:A-1`, `pi:pi_123`).
    pub fn key(&self) -> String {
        match self {
            ReversalTarget::OrderId(order) => format!("order:{order}"),
            ReversalTarget::PaymentIntent(intent) => format!("pi:{intent}"),
        }
    }
}

/// What kind of reversal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ReversalKind {
    /// Money returned (a refund or a cancellation): points taken back in proportion.
    Refund,
    /// A dispute opened (or lost): all of the purchase's remaining points taken back.
    Chargeback,
    /// A dispute won by the merchant: what the named chargeback took is given back.
    ChargebackWon,
}

impl ReversalKind {
    /// The name used in dedupe keys, the database and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ReversalKind::Refund => "refund",
            ReversalKind::Chargeback => "chargeback",
            ReversalKind::ChargebackWon => "chargeback_won",
        }
    }
}

/// How much money a reversal returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum RefundAmount {
    /// The whole purchase (a full refund, a cancellation; chargebacks always use this): the
    /// refunded total becomes at least the purchase amount.
    Full,
    /// One refund of several, added to the refunded total. `currency: None` = the purchase's.
    Partial {
        /// The amount refunded by this refund, exact.
        #[serde(with = "rust_decimal::serde::str")]
        amount: Decimal,
        /// Its currency; absent means the purchase's own.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        currency: Option<Currency>,
    },
    /// The total refunded so far on the order (Stripe's `amount_refunded`): never added; the
    /// largest total seen wins, so replays and reordering never double-count.
    Cumulative {
        /// The cumulative refunded amount, exact.
        #[serde(with = "rust_decimal::serde::str")]
        amount: Decimal,
        /// Its currency.
        currency: Currency,
    },
}

/// Why a message body could not be turned into an [`Envelope`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON of the expected shape.
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
    /// A version this build does not understand.
    #[error("unknown schema version {0}")]
    UnknownVersion(u32),
}

impl Envelope {
    /// Wraps an event in the current schema version.
    pub fn new(event: Event) -> Self {
        Self {
            version: SCHEMA_VERSION,
            event,
        }
    }

    /// Serialises to the bytes published.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain data structures to a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a message body, checking the version before the event so that a newer schema is
    /// reported as such rather than as malformed.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        let VersionOnly { version } = serde_json::from_slice(bytes)?;
        if version != SCHEMA_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        Ok(serde_json::from_slice(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use rust_decimal::Decimal;

    use super::*;
    use crate::money::Currency;

    fn sample() -> Envelope {
        let contest_id = ContestId::parse("c1").unwrap();
        let order_id = OrderId::parse("A-1").unwrap();
        Envelope::new(Event::Purchase(PurchaseEvent {
            purchase_id: PurchaseId::derive(&contest_id, Source::Api, &order_id),
            contest_id,
            source: Source::Api,
            order_id,
            email: Email::parse("a@example.com").unwrap(),
            money: Money::new(Decimal::from_str("79.90").unwrap(), Currency::USD).unwrap(),
            received_at: Utc::now(),
            referral_codes: Vec::new(),
            payment_intent: None,
        }))
    }

    #[test]
    fn round_trips_and_keeps_the_amount_exact() {
        let envelope = sample();
        let bytes = envelope.to_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains(r#""amount":"79.90""#), "{text}");
        assert_eq!(Envelope::from_bytes(&bytes).unwrap(), envelope);
    }

    #[test]
    fn unknown_versions_and_garbage_are_told_apart() {
        let mut value: serde_json::Value = serde_json::from_slice(&sample().to_bytes()).unwrap();
        value["version"] = 2.into();
        let bytes = serde_json::to_vec(&value).unwrap();
        assert!(matches!(
            Envelope::from_bytes(&bytes),
            Err(DecodeError::UnknownVersion(2))
        ));
        assert!(matches!(
            Envelope::from_bytes(b"not json"),
            Err(DecodeError::Malformed(_))
        ));
    }
}
