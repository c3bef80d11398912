//! What the webhooks answer, as types: every `200` of the public listener is one of these, in
//! the envelope.
//!
//! Each answer names what was queued and says `"status": "accepted"` (or, for an authentic
//! provider event we do not act on, `"ignored"` with a reason). A synchronous answer (the
//! worker's outcome, waited for with `Prefer: wait`) is meant to be one more variant of
//! [`WebhookAnswer`] (and of the signup and refund answers), carrying `pointsAwarded`,
//! `alreadyExists` and `message` beside the ids these already carry, so a sender that does not
//! wait keeps getting exactly these shapes.

use serde::Serialize;
use shared::{
    event::ReversalKind,
    ids::{EntryId, PurchaseId, ReversalId},
};
use utoipa::ToSchema;

/// `"accepted"`: the event is durably held by RabbitMQ (publisher confirm received); the worker
/// applies it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Accepted {
    /// Durably queued.
    #[default]
    Accepted,
}

/// `"ignored"`: an authentic provider event that changes nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Ignored {
    /// Changes nothing.
    #[default]
    Ignored,
}

/// A purchase is durably queued; the worker awards it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PurchaseAccepted {
    /// `pur_` + a hash of (contest, source, orderId): the same order always has the same id.
    #[schema(value_type = String, example = "pur_8r3k2m1q0p9s7t6v5w4x3y2z1a")]
    pub purchase_id: PurchaseId,
    /// `ent_` + a hash of (contest, buyer email): the entry the purchase is (or will be)
    /// credited to, the one its lookup shows. Derived, not looked up.
    #[schema(value_type = String, example = "ent_3k9q2m7x1p0s8t6v5w4x3y2z1a")]
    pub entry_id: EntryId,
    /// The order id as text.
    #[schema(example = "A-1")]
    pub order_id: String,
    /// Always `accepted`.
    pub status: Accepted,
}

/// A reversal (refund, cancellation, chargeback, or chargeback won) is durably queued; the
/// worker applies it once its purchase is recorded (at once if it already is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReversalAccepted {
    /// `rev_` + a hash of (contest, source, order or payment intent, refundId, kind): the same
    /// reversal, sent again or to another URL, always has the same id.
    #[schema(value_type = String, example = "rev_3k2m1q0p9s7t6v5w4x3y2z1a8r")]
    pub reversal_id: ReversalId,
    /// The purchase's order id as text (generic webhook, Shopify, Coinflow).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub order_id: Option<String>,
    /// Stripe: the PaymentIntent that names the purchase (its Checkout Session's).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, example = "pi_3PVnF0KZ0dZRqLEK1a2b3c4d")]
    pub payment_intent: Option<String>,
    /// The refund or chargeback id: as sent, `full` when none was named, the Shopify refund
    /// `id`, `cancelled` for a Shopify cancellation, `{charge}:{amount_refunded}` for a Stripe
    /// refund, the dispute id for Stripe disputes, `full` / `chargeback` for Coinflow.
    pub refund_id: String,
    /// `refund` takes points back in proportion to the money returned, `chargeback` takes back
    /// everything the purchase still holds, `chargeback_won` gives back what the named
    /// chargeback took.
    pub kind: ReversalKind,
    /// Always `accepted`.
    pub status: Accepted,
}

/// A signup is durably queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignupAccepted {
    /// `ent_` + a hash of (contest, email): the entry the signup creates or finds.
    #[schema(value_type = String, example = "ent_3k9q2m7x1p0s8t6v5w4x3y2z1a")]
    pub entry_id: EntryId,
    /// Always `accepted`.
    pub status: Accepted,
}

/// An authentic provider event that changes nothing (answered `200` so the sender does not
/// retry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventIgnored {
    /// Always `ignored`.
    pub status: Ignored,
    /// Why, e.g. `topic orders/create does not award`.
    pub reason: String,
}

/// What a webhook that takes provider deliveries answers: a purchase durably queued, a reversal
/// durably queued, or an authentic event that changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum WebhookAnswer {
    /// A purchase, durably queued.
    Purchase(PurchaseAccepted),
    /// A refund, cancellation, chargeback or won chargeback, durably queued.
    Reversal(ReversalAccepted),
    /// Authentic, changes nothing.
    Ignored(EventIgnored),
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use shared::{
        email::Email,
        ids::{ContestId, OrderId, Source},
    };

    use super::*;

    #[test]
    fn answers_serialise_as_the_contract_says() {
        let contest = ContestId::parse("summer").unwrap();
        let order = OrderId::parse("A-1").unwrap();
        let email = Email::parse("jane@example.com").unwrap();
        let purchase = PurchaseAccepted {
            purchase_id: PurchaseId::derive(&contest, Source::Api, &order),
            entry_id: EntryId::derive(&contest, &email),
            order_id: "A-1".into(),
            status: Accepted::Accepted,
        };
        let value = serde_json::to_value(WebhookAnswer::Purchase(purchase.clone())).unwrap();
        assert_eq!(
            value,
            json!({
                "purchaseId": purchase.purchase_id.as_str(),
                "entryId": purchase.entry_id.as_str(),
                "orderId": "A-1",
                "status": "accepted",
            })
        );
        let ignored = WebhookAnswer::Ignored(EventIgnored {
            status: Ignored::Ignored,
            reason: "not paid".into(),
        });
        assert_eq!(
            serde_json::to_value(ignored).unwrap(),
            json!({"status": "ignored", "reason": "not paid"})
        );
    }
}
