//! Contest settings, as the receiver caches them and the worker prices purchases with them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::{
    ids::ContestId,
    money::Currency,
    points::{PointsRule, Rounding},
};

/// How long a rotated-out webhook secret keeps working unless the rotation says otherwise.
pub const PREVIOUS_SECRET_GRACE: chrono::Duration = chrono::Duration::hours(24);

/// The longest overlap a rotation may give the old secret: a week covers any deploy to every
/// sender; a longer one would keep a secret someone wanted gone alive for longer than helps.
pub const MAX_SECRET_GRACE: chrono::Duration = chrono::Duration::days(7);

/// Referral rewards of a contest.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferralSettings {
    /// Points the owner of a referral code earns when a friend signs up with it.
    pub advocate_points: i64,
    /// Points the friend earns for signing up with a code.
    pub friend_points: i64,
    /// Points per unit of contest currency a code's owner earns on a referred purchase.
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub points_per_unit: Decimal,
}

/// Per-provider signing secrets of a contest.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProviderSecrets {
    /// Shopify app / webhook signing secret (`X-Shopify-Hmac-Sha256`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shopify: Option<String>,
    /// Stripe endpoint signing secret (`whsec_…`, `Stripe-Signature`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stripe: Option<String>,
    /// Coinflow webhook validation key (`Authorization`, `Coinflow-Signature`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coinflow: Option<String>,
}

/// One contest with every setting the services act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contest {
    /// Public identifier, part of every webhook URL.
    pub id: ContestId,
    /// Display name.
    pub name: String,
    /// Currency points are counted in.
    pub currency: Currency,
    /// Points per one unit of [`Contest::currency`].
    pub points_per_unit: Decimal,
    /// Rounding of fractional points.
    pub rounding: Rounding,
    /// When false, purchase webhooks answer 403.
    pub purchase_tracking: bool,
    /// When false, Stripe `livemode: false` and Shopify `test: true` events are ignored.
    pub accept_test_events: bool,
    /// When true, the generic purchase, signup and refund webhooks wait for the worker's
    /// outcome (as with `Prefer: wait=3`) unless the sender says otherwise.
    pub sync_responses: bool,
    /// Referral rewards.
    pub referral: ReferralSettings,
    /// Units of contest currency one unit of each other currency is worth.
    pub exchange_rates: BTreeMap<Currency, Decimal>,
    /// Provider signing secrets.
    pub provider_secrets: ProviderSecrets,
    /// The current shared secret of the generic webhooks (`whsec_…`).
    pub webhook_secret: String,
    /// The secret replaced by the last rotation, and when it stops working.
    pub previous_webhook_secret: Option<(String, DateTime<Utc>)>,
    /// When the contest was created.
    pub created_at: DateTime<Utc>,
    /// When the contest was last changed.
    pub updated_at: DateTime<Utc>,
}

impl Contest {
    /// The rule that prices a purchase for this contest.
    pub fn points_rule(&self) -> PointsRule<'_> {
        PointsRule {
            currency: self.currency,
            points_per_unit: self.points_per_unit,
            rounding: self.rounding,
            exchange_rates: &self.exchange_rates,
        }
    }

    /// Replaces the webhook secret with a fresh one. The old one keeps working for `grace`
    /// (senders switch over without a window of 401s; [`PREVIOUS_SECRET_GRACE`] is the usual
    /// overlap); a zero (or negative) grace revokes it at once, e.g. after a leak, and forgets
    /// it. Either way a secret replaced by an earlier rotation stops working now.
    pub fn rotate_webhook_secret(&mut self, now: DateTime<Utc>, grace: chrono::Duration) {
        let old = std::mem::replace(&mut self.webhook_secret, generate_webhook_secret());
        self.previous_webhook_secret =
            (grace > chrono::Duration::zero()).then(|| (old, now + grace));
        self.updated_at = now;
    }

    /// The webhook secrets accepted at `now`: the current one, and the previous one during its grace.
    pub fn accepted_webhook_secrets(&self, now: DateTime<Utc>) -> impl Iterator<Item = &str> {
        let previous = self
            .previous_webhook_secret
            .as_ref()
            .filter(|(_, expires_at)| now < *expires_at)
            .map(|(secret, _)| secret.as_str());
        std::iter::once(self.webhook_secret.as_str()).chain(previous)
    }
}

/// Generates a webhook secret: `whsec_` + base64 of 32 random bytes (the Standard Webhooks form).
pub fn generate_webhook_secret() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contest(now: DateTime<Utc>) -> Contest {
        Contest {
            id: ContestId::parse("c1").unwrap(),
            name: "C".into(),
            currency: Currency::USD,
            points_per_unit: Decimal::ONE,
            rounding: Rounding::Nearest,
            purchase_tracking: true,
            accept_test_events: true,
            sync_responses: false,
            referral: Default::default(),
            exchange_rates: Default::default(),
            provider_secrets: Default::default(),
            webhook_secret: generate_webhook_secret(),
            previous_webhook_secret: None,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn rotation_keeps_the_old_secret_for_the_grace_only() {
        let now = Utc::now();
        let mut contest = contest(now);
        let old = contest.webhook_secret.clone();
        contest.rotate_webhook_secret(now, chrono::Duration::seconds(60));
        let accepted = |at| contest.accepted_webhook_secrets(at).collect::<Vec<_>>();
        assert_eq!(
            accepted(now),
            [contest.webhook_secret.as_str(), old.as_str()]
        );
        assert_eq!(
            accepted(now + chrono::Duration::seconds(60)),
            [contest.webhook_secret.as_str()]
        );
    }

    #[test]
    fn rotation_with_zero_grace_revokes_the_old_secret_at_once() {
        let now = Utc::now();
        let mut contest = contest(now);
        let old = contest.webhook_secret.clone();
        contest.rotate_webhook_secret(now, PREVIOUS_SECRET_GRACE);
        let first = contest.webhook_secret.clone();
        contest.rotate_webhook_secret(now, chrono::Duration::zero());
        assert_ne!(contest.webhook_secret, first);
        assert_eq!(contest.previous_webhook_secret, None);
        let accepted: Vec<_> = contest.accepted_webhook_secrets(now).collect();
        assert_eq!(accepted, [contest.webhook_secret.as_str()]);
        assert!(!accepted.contains(&old.as_str()) && !accepted.contains(&first.as_str()));
    }

    #[test]
    fn webhook_secret_has_the_standard_webhooks_form() {
        use base64::Engine;
        let secret = generate_webhook_secret();
        let key = secret.strip_prefix("whsec_").unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key)
            .unwrap();
        assert_eq!(bytes.len(), 32);
        assert_ne!(secret, generate_webhook_secret());
    }
}
