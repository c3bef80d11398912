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

/// How long a rotated-out webhook secret keeps working.
pub const PREVIOUS_SECRET_GRACE: chrono::Duration = chrono::Duration::hours(24);

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

    /// Replaces the webhook secret with a fresh one; the old one keeps working for
    /// [`PREVIOUS_SECRET_GRACE`] (senders switch over without a window of 401s).
    pub fn rotate_webhook_secret(&mut self, now: DateTime<Utc>) {
        let old = std::mem::replace(&mut self.webhook_secret, generate_webhook_secret());
        self.previous_webhook_secret = Some((old, now + PREVIOUS_SECRET_GRACE));
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
