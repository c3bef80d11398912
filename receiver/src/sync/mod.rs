//! Synchronous answers: a sender that asks (`Prefer: wait=N`, RFC 7240), or any sender of a
//! contest with `syncResponses`, gets the worker's outcome in the answer instead of `accepted`.
//!
//! The request is still published with a publisher confirm first, so a `200` still means the
//! event is durably held. Then it waits up to N seconds (at most [`MAX_WAIT_SECS`], and never
//! past [`ANSWER_BUDGET`] after the request arrived) for the outcome, which the worker sends only
//! after its transaction has committed, over RabbitMQ's direct reply-to (see
//! [`shared::outcome`] and [`crate::publish`]). No outcome in time (no worker running, a backlog,
//! a lost reply, the broker connection lost) is the usual `200 accepted`: the event is safe
//! either way, and the answer is never an error because of the wait.
//!
//! Only the generic purchase, signup and refund webhooks wait: they are what a store's own
//! backend calls and reads. Shopify, Stripe and Coinflow deliveries never wait (their senders
//! read nothing but the status and only lose time).
//!
//! A request that does not wait pays for none of this: no registry entry, no reply property,
//! the publish as before.
//!
//! # Layout
//!
//! - [`prefer`]: reading the `Prefer` header.
//! - [`waiters`]: the registry of waiting requests, by correlation id.
//! - [`answer`]: the synchronous answers' types (each one variant of its operation's answer in
//!   [`crate::webhooks::answer`]).

pub mod answer;
pub mod prefer;
pub mod waiters;

use std::{convert::Infallible, time::Duration};

use axum::{
    extract::FromRequestParts,
    http::{request::Parts, HeaderName, HeaderValue},
};
use shared::{event::Envelope, ids::OrderId, outcome::Outcome};
use tokio::time::Instant;

use self::{
    answer::{PurchaseRecorded, ReversalSettled, SignupRecorded},
    prefer::{WaitPreference, PREFERENCE_APPLIED},
    waiters::Ended,
};
use crate::{
    api::Reply, error::ApiError, metrics::Outcome as RequestOutcome, state::AppState,
    webhooks::answer::ReversalAccepted,
};

/// The longest wait a sender may ask for, in seconds (`Prefer: wait=10` waits 4).
pub const MAX_WAIT_SECS: u64 = 4;

/// The wait of a contest with `syncResponses` when the sender states none, in seconds.
pub const CONTEST_WAIT_SECS: u64 = 3;

/// How long after its arrival a waiting request is answered at the latest. Senders time out at
/// 5 s and every request is cut at 4.5 s (`503`); stopping the wait at 4 s leaves room for a
/// loaded machine to write the answer, so a wait never turns into an error.
pub const ANSWER_BUDGET: Duration = Duration::from_millis(4000);

/// A wait shorter than this is not worth starting: the answer is `accepted` at once.
const SHORTEST_WAIT: Duration = Duration::from_millis(20);

/// When a webhook request arrived (set by [`crate::webhooks::gate`] before anything else), the
/// start of its [`ANSWER_BUDGET`].
#[derive(Debug, Clone, Copy)]
pub struct Arrival(pub Instant);

/// What a webhook request asked for about waiting, read from its head: the handler's extractor.
#[derive(Debug, Clone, Copy)]
pub struct Asked {
    /// The `Prefer` header's wait preference.
    preference: WaitPreference,
    /// When the request arrived.
    arrival: Instant,
}

impl<S: Send + Sync> FromRequestParts<S> for Asked {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(Self {
            preference: prefer::wait_preference(&parts.headers),
            arrival: parts
                .extensions
                .get::<Arrival>()
                .map_or_else(Instant::now, |arrival| arrival.0),
        })
    }
}

impl Asked {
    /// How long to wait at a contest whose `syncResponses` is `contest_waits`: the sender's
    /// `wait` (capped), else the contest's default; `None` when the answer is `accepted` at once.
    pub fn wait(&self, contest_waits: bool) -> Option<Wait> {
        let seconds = match self.preference {
            WaitPreference::Seconds(seconds) => seconds.min(MAX_WAIT_SECS),
            WaitPreference::DoNotWait => return None,
            WaitPreference::Unstated if contest_waits => CONTEST_WAIT_SECS,
            WaitPreference::Unstated => return None,
        };
        Some(Wait {
            seconds,
            budget_ends: self.arrival + ANSWER_BUDGET,
        })
    }
}

/// A request that waits for its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    /// The wait applied, in seconds (what `Preference-Applied` says).
    seconds: u64,
    /// The latest moment the answer may be given.
    budget_ends: Instant,
}

impl Wait {
    /// The wait applied, in seconds.
    pub fn seconds(&self) -> u64 {
        self.seconds
    }

    /// When the wait starting now ends: N seconds from now, or the end of the budget.
    fn deadline(&self) -> Instant {
        (Instant::now() + Duration::from_secs(self.seconds)).min(self.budget_ends)
    }
}

/// A published event, and its outcome when the request waited and the outcome came in time.
#[derive(Debug)]
pub struct Published {
    /// The wait, when the request waited.
    wait: Option<Wait>,
    /// The outcome, when it came in time.
    outcome: Option<Outcome>,
}

/// Publishes `envelope` with a publisher confirm (503 on any broker trouble, as always) and,
/// when `wait` is set, waits for its outcome. The one call every waiting handler makes.
pub async fn publish(
    state: &AppState,
    envelope: &Envelope,
    wait: Option<Wait>,
) -> Result<Published, ApiError> {
    let Some(wait) = wait else {
        crate::webhooks::publish(state, envelope).await?;
        return Ok(Published {
            wait: None,
            outcome: None,
        });
    };
    let waiter = state
        .publisher
        .publish_awaiting_reply(envelope)
        .await
        .map_err(|error| {
            tracing::warn!(%error, message_id = envelope.event.message_id(), "publish failed");
            ApiError::BrokerUnavailable
        })?;
    let deadline = wait.deadline();
    let ended = if deadline > Instant::now() + SHORTEST_WAIT {
        waiter.outcome(deadline).await
    } else {
        Ended::TimedOut
    };
    let (label, outcome) = match ended {
        Ended::Outcome(outcome) => ("outcome", Some(outcome)),
        Ended::TimedOut => ("timeout", None),
        Ended::Abandoned => ("lost", None),
    };
    metrics::counter!(shared::metrics::SYNC_ANSWERS, "result" => label).increment(1);
    if outcome.is_none() {
        tracing::debug!(
            message_id = envelope.event.message_id(),
            result = label,
            "no outcome in time; answering accepted"
        );
    }
    Ok(Published {
        wait: Some(wait),
        outcome,
    })
}

impl Published {
    /// The worker's outcome, when the request waited and it came in time.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// The `Preference-Applied` header the answer carries, when the request waited (whether the
    /// outcome came or not).
    pub fn preference_applied(&self) -> Option<(HeaderName, HeaderValue)> {
        let wait = self.wait?;
        let value = HeaderValue::from_str(&format!("wait={}", wait.seconds)).ok()?;
        Some((PREFERENCE_APPLIED, value))
    }

    /// The synchronous answer to a purchase of `order_id`, when its outcome came in time.
    pub fn purchase_answer(&self, order_id: &OrderId) -> Option<PurchaseRecorded> {
        match &self.outcome {
            Some(Outcome::Purchase(outcome)) => Some(PurchaseRecorded::new(outcome, order_id)),
            _ => None,
        }
    }

    /// The synchronous answer to a signup, when its outcome came in time.
    pub fn signup_answer(&self) -> Option<SignupRecorded> {
        match &self.outcome {
            Some(Outcome::Signup(outcome)) => Some(SignupRecorded::new(outcome)),
            _ => None,
        }
    }

    /// The synchronous answer to the reversal `accepted` describes, when its outcome came in
    /// time.
    pub fn refund_answer(&self, accepted: &ReversalAccepted) -> Option<ReversalSettled> {
        match &self.outcome {
            Some(Outcome::Reversal(outcome)) => ReversalSettled::new(outcome, accepted),
            _ => None,
        }
    }

    /// `data`, a synchronous answer: `200`, counted as `answered`, with `Preference-Applied`.
    pub fn answered<T>(&self, data: T) -> Reply<T> {
        self.mark(Reply::ok(data).outcome(RequestOutcome::ANSWERED))
    }

    /// `data`, the usual `accepted` answer: `200`, counted as `accepted`, with
    /// `Preference-Applied` when the request waited (and the outcome did not come in time).
    pub fn accepted<T>(&self, data: T) -> Reply<T> {
        self.mark(Reply::ok(data).outcome(RequestOutcome::ACCEPTED))
    }

    fn mark<T>(&self, reply: Reply<T>) -> Reply<T> {
        match self.preference_applied() {
            Some((name, value)) => reply.header(name, value),
            None => reply,
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};

    use super::*;

    fn asked(prefer: Option<&str>) -> Asked {
        let mut headers = HeaderMap::new();
        if let Some(value) = prefer {
            headers.insert(prefer::PREFER, HeaderValue::from_str(value).unwrap());
        }
        Asked {
            preference: prefer::wait_preference(&headers),
            arrival: Instant::now(),
        }
    }

    #[test]
    fn the_sender_decides_else_the_contest() {
        let seconds = |asked: Asked, contest| asked.wait(contest).map(|wait| wait.seconds());
        assert_eq!(seconds(asked(None), false), None);
        assert_eq!(seconds(asked(None), true), Some(CONTEST_WAIT_SECS));
        assert_eq!(seconds(asked(Some("wait=1")), false), Some(1));
        assert_eq!(seconds(asked(Some("wait=1")), true), Some(1));
        assert_eq!(seconds(asked(Some("wait=10")), false), Some(MAX_WAIT_SECS));
        assert_eq!(seconds(asked(Some("wait=0")), true), None);
        assert_eq!(seconds(asked(Some("respond-async")), true), None);
        assert_eq!(
            seconds(asked(Some("wait=soon")), true),
            Some(CONTEST_WAIT_SECS)
        );
        assert_eq!(seconds(asked(Some("wait=soon")), false), None);
    }

    #[test]
    fn a_wait_never_runs_past_the_budget() {
        let late = Asked {
            preference: WaitPreference::Seconds(4),
            arrival: Instant::now() - Duration::from_millis(3500),
        };
        let wait = late.wait(false).unwrap();
        assert_eq!(wait.seconds(), 4);
        assert!(wait.deadline() <= late.arrival + ANSWER_BUDGET);
        let fresh = asked(Some("wait=1")).wait(false).unwrap();
        assert!(fresh.deadline() <= Instant::now() + Duration::from_secs(1));
    }
}
