//! Why a request was refused with `401`: which credential it presented and what was wrong with
//! it. The whole reason goes to our logs (never the credential itself); the sender gets a short
//! reason that helps an honest integrator and tells an attacker nothing they did not send
//! themselves ("no credential", "signature expired", "credential not accepted").

use std::fmt;

/// The credential a refused request presented (or the one the endpoint expected).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Nothing we recognise was sent.
    None,
    /// The webhook secret in `X-Webhook-Secret`.
    SecretHeader,
    /// The webhook secret in `Authorization: Bearer …`, or `Authorization` of another scheme.
    Bearer,
    /// The webhook secret in the body field `secret`.
    BodySecret,
    /// A Standard Webhooks signature (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    StandardWebhooks,
    /// `X-Shopify-Hmac-Sha256`.
    Shopify,
    /// `Stripe-Signature`.
    Stripe,
    /// Coinflow's key in `Authorization`.
    CoinflowKey,
    /// `Coinflow-Signature`.
    CoinflowSignature,
    /// The admin API's bearer token.
    AdminToken,
}

impl Scheme {
    /// The name used in log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::None => "none",
            Scheme::SecretHeader => "x-webhook-secret",
            Scheme::Bearer => "authorization-bearer",
            Scheme::BodySecret => "body-secret",
            Scheme::StandardWebhooks => "standard-webhooks",
            Scheme::Shopify => "shopify-hmac",
            Scheme::Stripe => "stripe-signature",
            Scheme::CoinflowKey => "coinflow-key",
            Scheme::CoinflowSignature => "coinflow-signature",
            Scheme::AdminToken => "admin-token",
        }
    }
}

/// What was wrong with the credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No credential at all (for this endpoint's schemes).
    Missing,
    /// A credential that cannot be read: not visible ASCII, another `Authorization` scheme, a
    /// signature header without its companions or in the wrong shape.
    Malformed,
    /// Well formed, but it matches no secret the contest accepts now.
    Mismatch,
    /// The signed timestamp is outside the tolerance (a replay, or a clock that is off).
    Expired,
    /// The signed timestamp is not a whole number of Unix seconds (or does not fit in 64 bits).
    BadTimestamp,
    /// The contest has no secret for this provider, so nothing can authenticate here.
    NotConfigured,
    /// A scheme this endpoint does not take (`hint` says which it takes).
    WrongScheme(&'static str),
}

impl Reason {
    /// The name used in log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Malformed => "malformed",
            Reason::Mismatch => "mismatch",
            Reason::Expired => "timestamp outside tolerance",
            Reason::BadTimestamp => "timestamp not an integer",
            Reason::NotConfigured => "no secret configured",
            Reason::WrongScheme(_) => "scheme not accepted on this endpoint",
        }
    }
}

/// A refused credential: the detail of an [`crate::error::ApiError::Unauthorized`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthFailure {
    /// What was presented.
    pub scheme: Scheme,
    /// What was wrong with it.
    pub reason: Reason,
}

impl AuthFailure {
    /// A failure of `scheme` for `reason`.
    pub const fn new(scheme: Scheme, reason: Reason) -> Self {
        Self { scheme, reason }
    }

    /// No credential of any scheme the endpoint takes.
    pub const MISSING: AuthFailure = AuthFailure::new(Scheme::None, Reason::Missing);

    /// What the sender is told. A wrong secret, a malformed header and a contest without a
    /// provider secret all read "credential not accepted", so probing learns nothing; missing,
    /// stale and wrongly-placed credentials say so, since the sender sent them and can fix them.
    pub fn public_message(&self) -> &'static str {
        match self.reason {
            Reason::Missing if self.scheme == Scheme::AdminToken => {
                "no credential: send the admin token as Authorization: Bearer <ADMIN_TOKEN>"
            }
            Reason::Missing => "no credential: send the webhook secret or a signature",
            Reason::Expired => "signature expired: the signed timestamp is too far from our clock",
            Reason::BadTimestamp => "signature timestamp is not a whole number of Unix seconds",
            Reason::WrongScheme(hint) => hint,
            Reason::Malformed | Reason::Mismatch | Reason::NotConfigured => {
                "credential not accepted"
            }
        }
    }
}

impl fmt::Display for AuthFailure {
    /// The full reason, for logs: `stripe-signature: timestamp outside tolerance`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.scheme.as_str(), self.reason.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_cannot_tell_a_wrong_secret_from_an_unconfigured_one() {
        let message = |scheme, reason| AuthFailure::new(scheme, reason).public_message();
        let wrong = message(Scheme::Shopify, Reason::Mismatch);
        assert_eq!(wrong, message(Scheme::Shopify, Reason::NotConfigured));
        assert_eq!(wrong, message(Scheme::SecretHeader, Reason::Malformed));
        assert_ne!(wrong, message(Scheme::None, Reason::Missing));
        assert_ne!(wrong, message(Scheme::Stripe, Reason::Expired));
    }

    #[test]
    fn a_missing_admin_token_is_not_called_a_webhook_secret() {
        let admin = AuthFailure::new(Scheme::AdminToken, Reason::Missing).public_message();
        assert!(admin.starts_with("no credential"), "{admin}");
        assert!(admin.contains("ADMIN_TOKEN"), "{admin}");
        assert!(!admin.contains("webhook secret"), "{admin}");
        let webhook = AuthFailure::MISSING.public_message();
        assert!(webhook.contains("webhook secret"), "{webhook}");
    }

    #[test]
    fn the_log_form_names_scheme_and_reason() {
        let failure = AuthFailure::new(Scheme::Stripe, Reason::Expired);
        assert_eq!(
            failure.to_string(),
            "stripe-signature: timestamp outside tolerance"
        );
    }
}
