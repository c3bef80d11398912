//! Synchronous answers, the worker's half: once a batch has committed, the outcome of every event
//! whose delivery asked for one (`reply_to` and `correlation_id`, set by a receiver whose sender
//! waits) is published to the default exchange with `reply_to` as the routing key and the same
//! `correlation_id` (RabbitMQ direct reply-to; see [`shared::outcome`]).
//!
//! Best effort, and never in the way of exactly-once: replies are built and sent by a task of
//! their own, on a channel of their own, only after the commit, so they neither delay nor fail
//! the batch or its acks. A reply that is lost (the receiver went away, the channel failed) only
//! means the sender gets the usual `accepted`. Only direct reply-to addresses are answered, so a
//! `reply_to` naming an ordinary queue can never make the worker publish into it.
//!
//! A purchase found already recorded is answered with its stored entry and status, read for
//! such requests only (one query per batch that has any), never on the award path: an entry
//! erased since is answered as the lookup shows it, with no entry id.

use std::{collections::HashMap, sync::Arc, time::Duration};

use lapin::{options::BasicPublishOptions, types::ShortString, BasicProperties, Channel};
use shared::{
    ids::EntryId,
    outcome::{
        Outcome, OutcomeMessage, PurchaseOutcome, ReversalOutcome, SignupOutcome, MESSAGE_TYPE,
        REPLY_TO_PREFIX,
    },
    points::PurchaseStatus,
};
use sqlx::PgPool;

use crate::award::outcome::{self as award, EventOutcome};

/// Longest wait to read the stored state of repeated purchases: the sender stops waiting after
/// 4 s at most, so a later reply would only be dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(4);

/// Where a delivery wants its outcome sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    /// The direct reply-to address (the routing key of the reply).
    to: ShortString,
    /// The request's correlation id.
    correlation_id: ShortString,
}

impl ReplyTo {
    /// The reply a delivery with these properties asks for; `None` for an ordinary delivery,
    /// and for a `reply_to` that is not a direct reply-to address.
    pub fn of(properties: &BasicProperties) -> Option<Self> {
        let to = properties.reply_to().as_ref()?;
        if !to.as_str().starts_with(REPLY_TO_PREFIX) {
            return None;
        }
        Some(Self {
            to: to.clone(),
            correlation_id: properties.correlation_id().clone()?,
        })
    }
}

/// Sends replies for one broker session.
pub struct Replier {
    /// A channel of its own (not confirm-mode: a reply is best effort), so that a reply can never
    /// disturb the consuming channel's acks.
    channel: Channel,
    /// For the stored state of repeated purchases.
    pool: PgPool,
}

impl Replier {
    /// A replier publishing on `channel`.
    pub fn new(channel: Channel, pool: PgPool) -> Arc<Self> {
        Arc::new(Self { channel, pool })
    }

    /// Sends the outcomes of a committed batch to the deliveries that asked: `asked[i]` is
    /// where event `i`'s outcome goes, `outcomes[i]` what it came to, and `awaited` the pending
    /// reversals the batch applied (they change the status a new purchase is answered with).
    /// Returns at once; the replies go out from a task of their own.
    pub fn send(
        self: &Arc<Self>,
        asked: &[Option<ReplyTo>],
        outcomes: &[EventOutcome],
        awaited: &[award::ReversalOutcome],
    ) {
        let requests: Vec<(ReplyTo, EventOutcome)> = asked
            .iter()
            .zip(outcomes)
            .filter_map(|(asked, outcome)| Some((asked.clone()?, outcome.clone())))
            .collect();
        if requests.is_empty() {
            return;
        }
        let statuses: HashMap<String, PurchaseStatus> = awaited
            .iter()
            .filter_map(|reversal| {
                Some((reversal.purchase_id.as_ref()?.to_string(), reversal.status?))
            })
            .collect();
        let this = self.clone();
        tokio::spawn(async move { this.reply(requests, statuses).await });
    }

    async fn reply(
        &self,
        requests: Vec<(ReplyTo, EventOutcome)>,
        awaited: HashMap<String, PurchaseStatus>,
    ) {
        let stored = self.stored_states(&requests).await;
        for (reply_to, outcome) in requests {
            let Some(outcome) = wire(outcome, &awaited, stored.as_ref()) else {
                continue;
            };
            let properties = BasicProperties::default()
                .with_correlation_id(reply_to.correlation_id)
                .with_content_type("application/json".into())
                .with_type(MESSAGE_TYPE.into());
            let published = self
                .channel
                .basic_publish(
                    "".into(),
                    reply_to.to,
                    BasicPublishOptions::default(),
                    &OutcomeMessage::new(outcome).to_bytes(),
                    properties,
                )
                .await;
            let result = match published {
                Ok(_) => "sent",
                Err(error) => {
                    tracing::debug!(%error, "an outcome reply could not be sent; its sender gets accepted");
                    "failed"
                }
            };
            metrics::counter!(shared::metrics::SYNC_REPLIES, "result" => result).increment(1);
        }
    }

    /// The stored entry (`None` once erased) and status of every repeated purchase among
    /// `requests`, by purchase id; `None` when they cannot be read (those requests then get no
    /// reply).
    async fn stored_states(
        &self,
        requests: &[(ReplyTo, EventOutcome)],
    ) -> Option<HashMap<String, StoredState>> {
        let repeats: Vec<&str> = requests
            .iter()
            .filter_map(|(_, outcome)| match outcome {
                EventOutcome::Purchase(purchase) if !purchase.recorded_now => {
                    Some(purchase.purchase_id.as_str())
                }
                _ => None,
            })
            .collect();
        if repeats.is_empty() {
            return Some(HashMap::new());
        }
        let read = shared::db::purchases::current_states(&self.pool, &repeats);
        match tokio::time::timeout(READ_TIMEOUT, read).await {
            Ok(Ok(rows)) => Some(
                rows.into_iter()
                    .filter_map(|(id, entry, status)| {
                        Some((id.to_string(), (entry, PurchaseStatus::parse(&status)?)))
                    })
                    .collect(),
            ),
            Ok(Err(error)) => {
                tracing::debug!(%error, "repeated purchases' state unreadable; their senders get accepted");
                None
            }
            Err(_) => None,
        }
    }
}

/// A recorded purchase's entry (`None` once erased) and current status.
type StoredState = (Option<String>, PurchaseStatus);

/// What travels back for one event; `None` when there is nothing to say (an unknown contest is
/// dead-lettered) or it cannot be said (a repeat whose stored state was not read).
fn wire(
    outcome: EventOutcome,
    awaited: &HashMap<String, PurchaseStatus>,
    stored: Option<&HashMap<String, StoredState>>,
) -> Option<Outcome> {
    Some(match outcome {
        EventOutcome::Purchase(purchase) if purchase.recorded_now => {
            // A pending reversal applied in the same transaction changed the status already.
            let status = awaited
                .get(purchase.purchase_id.as_str())
                .copied()
                .or_else(|| PurchaseStatus::parse(purchase.status?.as_str()))?;
            Outcome::Purchase(PurchaseOutcome {
                purchase_id: purchase.purchase_id,
                entry_id: Some(purchase.entry_id),
                recorded_now: true,
                points_awarded: purchase.points_awarded,
                status,
            })
        }
        EventOutcome::Purchase(purchase) => {
            let (entry, status) = stored?.get(purchase.purchase_id.as_str())?;
            Outcome::Purchase(PurchaseOutcome {
                purchase_id: purchase.purchase_id,
                entry_id: entry.clone().map(EntryId::from_stored),
                recorded_now: false,
                points_awarded: 0,
                status: *status,
            })
        }
        EventOutcome::Signup(signup) => Outcome::Signup(SignupOutcome {
            entry_id: signup.entry_id,
            already_existed: signup.already_existed,
            advocate_points: signup.advocate_points,
            friend_points: signup.friend_points,
        }),
        EventOutcome::Reversal(reversal) => Outcome::Reversal(ReversalOutcome {
            reversal_id: reversal.reversal_id,
            result: reversal.result,
            purchase_id: reversal.purchase_id,
            points_reversed: reversal.points_reversed,
            referral_points_reversed: reversal.referral_points_reversed,
            purchase_status: reversal.status,
        }),
        EventOutcome::UnknownContest => return None,
    })
}

#[cfg(test)]
mod tests {
    use shared::{
        ids::{PurchaseId, ReversalId},
        outcome::ReversalResult,
        points::AwardStatus,
    };

    use super::*;

    fn purchase(recorded_now: bool) -> EventOutcome {
        EventOutcome::Purchase(award::PurchaseOutcome {
            purchase_id: PurchaseId::from_stored("pur_1".into()),
            entry_id: EntryId::from_stored("ent_derived".into()),
            recorded_now,
            points_awarded: if recorded_now { 80 } else { 0 },
            status: recorded_now.then_some(AwardStatus::Awarded),
        })
    }

    #[test]
    fn only_direct_reply_to_addresses_with_a_correlation_id_are_answered() {
        let asked = |to: &str, id: Option<&str>| {
            let mut properties = BasicProperties::default().with_reply_to(to.into());
            if let Some(id) = id {
                properties = properties.with_correlation_id(id.into());
            }
            ReplyTo::of(&properties)
        };
        assert!(asked("amq.rabbitmq.reply-to.g1h2AA", Some("c-1")).is_some());
        assert!(asked("amq.rabbitmq.reply-to.g1h2AA", None).is_none());
        assert!(asked("blitz.events", Some("c-1")).is_none());
        assert!(asked("amq.rabbitmq.reply-to", Some("c-1")).is_none());
        assert!(ReplyTo::of(&BasicProperties::default()).is_none());
    }

    #[test]
    fn a_new_purchase_answers_its_award_or_the_status_a_held_refund_gave_it() {
        let none = HashMap::new();
        let Some(Outcome::Purchase(new)) = wire(purchase(true), &none, None) else {
            panic!("a purchase outcome");
        };
        assert_eq!(
            (new.points_awarded, new.status),
            (80, PurchaseStatus::Awarded)
        );
        let refunded = HashMap::from([("pur_1".to_owned(), PurchaseStatus::PartiallyRefunded)]);
        let Some(Outcome::Purchase(new)) = wire(purchase(true), &refunded, None) else {
            panic!("a purchase outcome");
        };
        assert_eq!(new.status, PurchaseStatus::PartiallyRefunded);
    }

    #[test]
    fn a_repeat_answers_the_stored_entry_and_status_or_nothing() {
        let stored = HashMap::from([(
            "pur_1".to_owned(),
            (Some("ent_stored".to_owned()), PurchaseStatus::Refunded),
        )]);
        let Some(Outcome::Purchase(repeat)) = wire(purchase(false), &HashMap::new(), Some(&stored))
        else {
            panic!("a purchase outcome");
        };
        assert!(!repeat.recorded_now);
        assert_eq!(repeat.points_awarded, 0);
        assert_eq!(
            repeat.entry_id.as_ref().map(EntryId::as_str),
            Some("ent_stored")
        );
        assert_eq!(repeat.status, PurchaseStatus::Refunded);
        let erased = HashMap::from([("pur_1".to_owned(), (None, PurchaseStatus::Awarded))]);
        let Some(Outcome::Purchase(repeat)) = wire(purchase(false), &HashMap::new(), Some(&erased))
        else {
            panic!("a purchase outcome");
        };
        assert_eq!(repeat.entry_id, None, "an erased entry is not named");
        assert_eq!(wire(purchase(false), &HashMap::new(), None), None);
        assert_eq!(
            wire(purchase(false), &HashMap::new(), Some(&HashMap::new())),
            None
        );
    }

    #[test]
    fn reversals_carry_their_result_and_unknown_contests_nothing() {
        let reversal = EventOutcome::Reversal(award::ReversalOutcome {
            reversal_id: ReversalId::from_stored("rev_1".into()),
            result: ReversalResult::Applied,
            purchase_id: Some(PurchaseId::from_stored("pur_1".into())),
            points_reversed: 40,
            referral_points_reversed: 4,
            status: Some(PurchaseStatus::PartiallyRefunded),
        });
        let Some(Outcome::Reversal(sent)) = wire(reversal, &HashMap::new(), None) else {
            panic!("a reversal outcome");
        };
        assert_eq!(sent.points_reversed, 40);
        assert_eq!(
            sent.purchase_status,
            Some(PurchaseStatus::PartiallyRefunded)
        );
        assert_eq!(
            wire(EventOutcome::UnknownContest, &HashMap::new(), None),
            None
        );
    }
}
