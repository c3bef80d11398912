//! The message on the queue: a versioned envelope around one normalised event.
//!
//! Every provider's payload is turned into one of these by the receiver, so the worker knows
//! nothing about Shopify or Stripe. Adding an optional field keeps version 1 (old workers ignore
//! it); a change old workers would misread bumps [`SCHEMA_VERSION`], and a worker dead-letters any
//! version it does not know instead of guessing, so old and new workers can run side by side
//! during an upgrade and nothing is misapplied (replay the dead letters once all workers are new).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    email::Email,
    ids::{ContestId, EntryId, OrderId, PurchaseId, Source},
    money::Money,
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
}

impl Event {
    /// The id the message is published under (AMQP `message_id`), for tracing and dedupe.
    pub fn message_id(&self) -> &str {
        match self {
            Event::Purchase(purchase) => purchase.purchase_id.as_str(),
            Event::Signup(signup) => signup.entry_id.as_str(),
        }
    }

    /// The AMQP `type` property.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Purchase(_) => "purchase",
            Event::Signup(_) => "signup",
        }
    }

    /// The contest the event belongs to.
    pub fn contest_id(&self) -> &ContestId {
        match self {
            Event::Purchase(purchase) => &purchase.contest_id,
            Event::Signup(signup) => &signup.contest_id,
        }
    }

    /// When the receiver accepted the event.
    pub fn received_at(&self) -> DateTime<Utc> {
        match self {
            Event::Purchase(purchase) => purchase.received_at,
            Event::Signup(signup) => signup.received_at,
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
