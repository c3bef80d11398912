//! What the webhooks answer, as types: every `200` of the public listener is one of these, in
//! the envelope.
//!
//! Each answer names what was queued and says `"status": "accepted"` (or, for an authentic
//! provider event we do not act on, `"ignored"` with a reason). The generic purchase, signup and
//! refund webhooks can also answer synchronously (the worker's outcome, waited for with
//! `Prefer: wait` or the contest's `syncResponses`): each has an answer type of its own
//! ([`PurchaseWebhookAnswer`], [`SignupWebhookAnswer`], [`RefundWebhookAnswer`]) with the
//! synchronous answer ([`crate::sync::answer`]) as one more variant, so the provider URLs'
//! [`WebhookAnswer`] documents nothing they never send, and a sender that does not wait keeps
//! getting exactly the `accepted` shapes. A synchronous variant's `status` (the purchase's
//! status, `recorded`, or what the reversal did) is one no other variant of its answer has, and
//! the `accepted` variants differ by their required ids, so the document's `oneOf` matches
//! exactly one variant for every answer served.

use serde::Serialize;
use shared::{
    event::ReversalKind,
    ids::{EntryId, PurchaseId, ReversalId},
};
use utoipa::ToSchema;

use crate::sync::answer::{PurchaseRecorded, ReversalSettled, SignupRecorded};

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

/// What the generic purchase webhook answers: what a provider URL answers ([`WebhookAnswer`]:
/// it takes Shopify deliveries too), or, when the sender waited and the worker's outcome came in
/// time, the purchase recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum PurchaseWebhookAnswer {
    /// A purchase, durably queued.
    Purchase(PurchaseAccepted),
    /// A purchase, recorded (the sender waited): `status` is the purchase's.
    Recorded(PurchaseRecorded),
    /// A Shopify refund or cancellation, durably queued.
    Reversal(ReversalAccepted),
    /// A Shopify delivery that changes nothing.
    Ignored(EventIgnored),
}

impl From<WebhookAnswer> for PurchaseWebhookAnswer {
    fn from(answer: WebhookAnswer) -> Self {
        match answer {
            WebhookAnswer::Purchase(accepted) => Self::Purchase(accepted),
            WebhookAnswer::Reversal(accepted) => Self::Reversal(accepted),
            WebhookAnswer::Ignored(ignored) => Self::Ignored(ignored),
        }
    }
}

/// What the signup webhook answers: durably queued, or, when the sender waited and the worker's
/// outcome came in time, the signup applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum SignupWebhookAnswer {
    /// Durably queued.
    Accepted(SignupAccepted),
    /// Applied (the sender waited): `status` is `recorded`.
    Recorded(SignupRecorded),
}

/// What the refund webhook answers: durably queued, or, when the sender waited and the worker's
/// outcome came in time, what the reversal did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum RefundWebhookAnswer {
    /// Durably queued.
    Accepted(ReversalAccepted),
    /// Settled, or kept until its purchase is recorded (the sender waited): `status` is what
    /// the reversal did.
    Settled(ReversalSettled),
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

    /// Whether `value` fits `schema` as far as these flat answers go: every required property
    /// present, no other property (`additionalProperties: false`), and each string property
    /// whose schema is an enum holding one of its values.
    fn fits(
        value: &serde_json::Value,
        schema: &serde_json::Value,
        schemas: &serde_json::Value,
    ) -> bool {
        let resolve = |schema: &serde_json::Value| match schema["$ref"].as_str() {
            Some(reference) => schemas[reference.rsplit('/').next().unwrap()].clone(),
            None => schema.clone(),
        };
        let schema = resolve(schema);
        let (Some(object), Some(properties)) =
            (value.as_object(), schema["properties"].as_object())
        else {
            return false;
        };
        let required = schema["required"].as_array().cloned().unwrap_or_default();
        required
            .iter()
            .all(|name| object.contains_key(name.as_str().unwrap()))
            && object.iter().all(|(name, value)| {
                let Some(property) = properties.get(name) else {
                    return false;
                };
                match (value.as_str(), resolve(property)["enum"].as_array()) {
                    (Some(text), Some(values)) => values.iter().any(|allowed| allowed == text),
                    _ => true,
                }
            })
    }

    #[test]
    fn every_answer_served_fits_exactly_one_variant_of_its_schema() {
        use shared::{
            ids::{PurchaseId, ReversalId},
            outcome::{PurchaseOutcome, ReversalOutcome, ReversalResult, SignupOutcome},
            points::PurchaseStatus,
        };

        let spec = serde_json::to_value(crate::openapi::spec()).unwrap();
        let schemas = &spec["components"]["schemas"];
        let contest = ContestId::parse("summer").unwrap();
        let order = OrderId::parse("A-1").unwrap();
        let entry = EntryId::derive(&contest, &Email::parse("jane@example.com").unwrap());
        let purchase_id = PurchaseId::derive(&contest, Source::Api, &order);
        let queued = PurchaseAccepted {
            purchase_id: purchase_id.clone(),
            entry_id: entry.clone(),
            order_id: "A-1".into(),
            status: Accepted::Accepted,
        };
        let reversal = ReversalAccepted {
            reversal_id: ReversalId::from_stored("rev_1".into()),
            order_id: Some("A-1".into()),
            payment_intent: None,
            refund_id: "R-1".into(),
            kind: ReversalKind::Refund,
            status: Accepted::Accepted,
        };
        let ignored = EventIgnored {
            status: Ignored::Ignored,
            reason: "not paid".into(),
        };
        let statuses = [
            PurchaseStatus::Awarded,
            PurchaseStatus::UnconvertibleCurrency,
            PurchaseStatus::PointsLimit,
            PurchaseStatus::PartiallyRefunded,
            PurchaseStatus::Refunded,
            PurchaseStatus::Reversed,
        ];
        let mut purchases = vec![
            PurchaseWebhookAnswer::Purchase(queued.clone()),
            PurchaseWebhookAnswer::Reversal(reversal.clone()),
            PurchaseWebhookAnswer::Ignored(ignored.clone()),
        ];
        for (status, entry_id) in statuses
            .into_iter()
            .flat_map(|status| [(status, Some(entry.clone())), (status, None)])
        {
            let outcome = PurchaseOutcome {
                purchase_id: purchase_id.clone(),
                entry_id,
                recorded_now: true,
                points_awarded: 80,
                status,
            };
            purchases.push(PurchaseWebhookAnswer::Recorded(PurchaseRecorded::new(
                &outcome, &order,
            )));
        }
        let signups = [
            SignupWebhookAnswer::Accepted(SignupAccepted {
                entry_id: entry.clone(),
                status: Accepted::Accepted,
            }),
            SignupWebhookAnswer::Recorded(SignupRecorded::new(&SignupOutcome {
                entry_id: entry.clone(),
                already_existed: false,
                advocate_points: 10,
                friend_points: 5,
            })),
        ];
        let mut refunds = vec![RefundWebhookAnswer::Accepted(reversal.clone())];
        for result in [
            ReversalResult::Applied,
            ReversalResult::Pending,
            ReversalResult::Duplicate,
            ReversalResult::CurrencyMismatch,
            ReversalResult::PointsLimit,
        ] {
            let applied = result == ReversalResult::Applied;
            let outcome = ReversalOutcome {
                reversal_id: ReversalId::from_stored("rev_1".into()),
                result,
                purchase_id: applied.then(|| purchase_id.clone()),
                points_reversed: if applied { 40 } else { 0 },
                referral_points_reversed: 0,
                purchase_status: applied.then_some(PurchaseStatus::PartiallyRefunded),
            };
            let settled = ReversalSettled::new(&outcome, &reversal).expect("an order's reversal");
            refunds.push(RefundWebhookAnswer::Settled(settled));
        }
        let served: Vec<(&str, serde_json::Value)> = purchases
            .iter()
            .map(|answer| {
                (
                    "PurchaseWebhookAnswer",
                    serde_json::to_value(answer).unwrap(),
                )
            })
            .chain(
                signups
                    .iter()
                    .map(|answer| ("SignupWebhookAnswer", serde_json::to_value(answer).unwrap())),
            )
            .chain(
                refunds
                    .iter()
                    .map(|answer| ("RefundWebhookAnswer", serde_json::to_value(answer).unwrap())),
            )
            .collect();
        for (answer, value) in served {
            let variants = schemas[answer]["oneOf"].as_array().expect(answer);
            let fitting = variants
                .iter()
                .filter(|variant| fits(&value, variant, schemas))
                .count();
            assert_eq!(fitting, 1, "{answer}: {value} fits {fitting} variants");
        }
        // The check can tell: a synchronous purchase answer with `status: accepted` would fit
        // none (it is not a purchase status, and the queued answer has no `pointsAwarded`).
        let mut confusable = serde_json::to_value(&purchases[3]).unwrap();
        confusable["status"] = "accepted".into();
        let variants = schemas["PurchaseWebhookAnswer"]["oneOf"]
            .as_array()
            .unwrap();
        assert!(!variants
            .iter()
            .any(|variant| fits(&confusable, variant, schemas)));
    }
}
