//! The consume loop: connect, declare, consume with manual acks, award in batches, ack after
//! commit; reconnect with backoff whenever the broker goes away.
//!
//! Delivery handling, by outcome:
//! - committed (recorded or duplicate) → acked, the whole batch with one `multiple` ack; a
//!   delivery that asked for its outcome (a sender waiting for a synchronous answer) is sent it
//!   after the commit, off the ack path ([`crate::reply`]);
//! - cannot ever succeed (unparseable, unknown schema version, unknown contest, a row the
//!   database refuses) → rejected without requeue, so RabbitMQ dead-letters it;
//! - database unavailable → kept unacked and retried with capped, jittered backoff for as long
//!   as the outage lasts (nothing is redelivered, nothing counts toward the delivery limit);
//!   on shutdown during an outage they are nacked back to the queue.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use lapin::{
    message::Delivery,
    options::{
        BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
        BasicRejectOptions,
    },
    types::FieldTable,
    Channel,
};
use shared::{
    amqp::{self, Connector, Nodes, Topology},
    db,
    event::{Envelope, Event},
    retry::Backoff,
};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use shared::metrics as names;
use tracing::Instrument;

use tokio::{sync::Semaphore, task::JoinSet};

use crate::{
    acks::AckWindow,
    award::{award_batch, BatchOutcome},
    batch::{gather, Gathered},
    config::WorkerConfig,
    failpoint,
    reply::{Replier, ReplyTo},
};

/// Longest wait to connect to the broker. lapin has no handshake timeout, so without this a
/// connection into a silent network (a partition, a blackholing firewall) would wait forever,
/// and so would reconnecting and SIGTERM.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest wait for the broker to confirm a cancel or close: a dead connection never answers,
/// and lapin stops its heartbeat checks once closing has begun.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Shared flags `/readyz` reports on.
#[derive(Debug, Default)]
pub struct Status {
    /// A consumer is subscribed.
    pub consuming: AtomicBool,
    /// The last database attempt failed for unavailability.
    pub database_down: AtomicBool,
}

/// Everything the consume loop needs.
pub struct Consumer {
    /// Settings (batch size, wait, prefetch, broker URL).
    pub config: WorkerConfig,
    /// Names of the queue to consume.
    pub topology: Topology,
    /// Postgres.
    pub pool: PgPool,
    /// Readiness flags.
    pub status: Arc<Status>,
}

/// Why a consume session ended.
enum SessionEnd {
    /// Shutdown requested and everything held was settled.
    Stopped,
    /// The broker connection, channel or consumer went away.
    Lost(String),
}

impl Consumer {
    /// Consumes until `stop` is cancelled, reconnecting as needed: to the next node listed in
    /// `AMQP_URL` that answers when the current one is lost.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let nodes = match Nodes::parse(&self.config.common.amqp_url) {
            Ok(nodes) => nodes,
            Err(error) => {
                // The configuration parser already refuses this.
                tracing::error!(%error, "AMQP_URL is unusable; not consuming");
                return;
            }
        };
        let mut connector = Connector::new(nodes, "worker", OPEN_TIMEOUT);
        let mut backoff = Backoff::reconnect();
        loop {
            match self.session(&mut connector, &stop, &mut backoff).await {
                Ok(SessionEnd::Stopped) => return,
                // Logged by the session, with the node.
                Ok(SessionEnd::Lost(_)) => {}
                Err(error) => tracing::warn!(%error, "cannot consume from the broker"),
            }
            self.status.consuming.store(false, Ordering::Release);
            if stop.is_cancelled() {
                return;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    /// One connection's worth of consuming.
    async fn session(
        self: &Arc<Self>,
        connector: &mut Connector,
        stop: &CancellationToken,
        backoff: &mut Backoff,
    ) -> lapin::Result<SessionEnd> {
        let connected = connector.connect().await?;
        let (connection, node) = (connected.connection, connected.address);
        let subscribed = tokio::time::timeout(OPEN_TIMEOUT, async {
            self.topology.ensure(&connection).await?;
            let channel = connection.create_channel().await?;
            // Prefetch bounds how many unacked messages the broker pushes us: memory stays flat
            // whatever the queue depth, and the next batch is already local while one commits.
            channel
                .basic_qos(self.config.effective_prefetch(), BasicQosOptions::default())
                .await?;
            let consumer = channel
                .basic_consume(
                    self.topology.queue.as_str().into(),
                    "".into(),
                    // no_ack = false: a message leaves the queue only when we ack it after commit.
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            let stats_channel = connection.create_channel().await?;
            let reply_channel = connection.create_channel().await?;
            Ok::<_, lapin::Error>((channel, consumer, stats_channel, reply_channel))
        })
        .await
        .unwrap_or_else(|_| Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()));
        let (channel, mut consumer, stats_channel, reply_channel) = match subscribed {
            Ok(subscribed) => subscribed,
            Err(error) => {
                amqp::close_quietly(&[], &connection, CLOSE_TIMEOUT).await;
                return Err(error);
            }
        };
        self.status.consuming.store(true, Ordering::Release);
        metrics::counter!(names::BROKER_CONNECTS, "process" => "worker").increment(1);
        let stats = crate::queue_stats::spawn(stats_channel.clone(), self.topology.clone());
        backoff.reset();
        tracing::info!(queue = %self.topology.queue, %node, "consuming");

        // Up to `concurrency` batches are settled at once, each in its own transaction: while one
        // waits on Postgres the next is already being written. Acks go through the window so a
        // batch that commits early is acked only once every earlier delivery is settled.
        let window = Arc::new(AckWindow::new(channel.clone()));
        let replier = Replier::new(reply_channel.clone(), self.pool.clone());
        let slots = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let mut in_flight: JoinSet<lapin::Result<()>> = JoinSet::new();
        let end = loop {
            if let Some(error) = first_failure(&mut in_flight) {
                break SessionEnd::Lost(error.to_string());
            }
            let slot = tokio::select! {
                biased;
                () = stop.cancelled() => break SessionEnd::Stopped,
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => break SessionEnd::Stopped,
                },
            };
            match gather(
                &mut consumer,
                self.config.batch_size.max(1),
                self.config.batch_wait(),
                stop,
            )
            .await
            {
                Gathered::Batch(batch) => {
                    window.gathered(batch.iter().map(|d| d.delivery_tag)).await;
                    let (this, window, channel, replier, task_stop) = (
                        self.clone(),
                        window.clone(),
                        channel.clone(),
                        replier.clone(),
                        stop.clone(),
                    );
                    in_flight.spawn(async move {
                        let _slot = slot;
                        let session = Session {
                            window: &window,
                            channel: &channel,
                            replier: &replier,
                        };
                        this.process(&session, batch, &task_stop).await
                    });
                    if stop.is_cancelled() {
                        break SessionEnd::Stopped;
                    }
                }
                Gathered::Stopped => break SessionEnd::Stopped,
                Gathered::Ended(error) => {
                    break SessionEnd::Lost(error.map_or_else(
                        || "consumer cancelled by the server".into(),
                        |e| e.to_string(),
                    ));
                }
            }
        };
        // Let the batches in hand finish: committed ones are acked, ones held by a database outage
        // are requeued because `stop` is set (or, if the broker is gone, redelivered anyway).
        let mut end = end;
        while let Some(joined) = in_flight.join_next().await {
            if let Ok(Err(error)) = joined {
                end = SessionEnd::Lost(error.to_string());
            }
        }
        self.status.consuming.store(false, Ordering::Release);
        stats.abort();
        let _ = stats.await;
        if matches!(end, SessionEnd::Stopped) {
            // Stop deliveries first; anything prefetched but not yet taken is returned to the
            // queue by the broker when the channel closes.
            let _ = tokio::time::timeout(
                CLOSE_TIMEOUT,
                channel.basic_cancel(consumer.tag(), BasicCancelOptions::default()),
            )
            .await;
        }
        // Channels first, then the connection, each awaited: a quiet shutdown (and after a lost
        // node, nothing to wait for: every step fails at once).
        drop(consumer);
        amqp::close_quietly(
            &[&reply_channel, &stats_channel, &channel],
            &connection,
            CLOSE_TIMEOUT,
        )
        .await;
        if let SessionEnd::Lost(reason) = &end {
            tracing::warn!(%node, %reason, "lost the broker node");
        }
        Ok(end)
    }

    /// Settles one batch. Errors only for broker failures (the session then reconnects; anything
    /// unacked is redelivered, which awarding makes harmless).
    async fn process(
        &self,
        session: &Session<'_>,
        batch: Vec<Delivery>,
        stop: &CancellationToken,
    ) -> lapin::Result<()> {
        let Session {
            window, channel, ..
        } = *session;
        let mut events: Vec<Event> = Vec::with_capacity(batch.len());
        let mut tags: Vec<u64> = Vec::with_capacity(batch.len());
        let mut asked: Vec<Option<ReplyTo>> = Vec::with_capacity(batch.len());
        metrics::counter!(names::DELIVERIES).increment(batch.len() as u64);
        failpoint::delivered(batch.iter().map(|delivery| {
            let id = delivery.properties.message_id().as_ref();
            (id.map_or("-", |id| id.as_str()), delivery.redelivered)
        }));
        for delivery in &batch {
            match Envelope::from_bytes(&delivery.data) {
                Ok(Envelope { event, .. }) => {
                    events.push(event);
                    tags.push(delivery.delivery_tag);
                    asked.push(ReplyTo::of(&delivery.properties));
                }
                Err(error) => {
                    tracing::error!(%error, delivery_tag = delivery.delivery_tag, "dead-lettering an undecodable message");
                    metrics::counter!(names::DEAD_LETTERED, "reason" => "undecodable").increment(1);
                    dead_letter(channel, delivery.delivery_tag).await?;
                    window.released(&[delivery.delivery_tag]).await?;
                }
            }
        }
        if events.is_empty() {
            return Ok(());
        }
        // The batch's span carries its purchase / entry ids, so every log line of the batch
        // (retries, dead letters, lost acks) names the events it concerns.
        let span = tracing::info_span!("batch", size = events.len(), ids = %batch_ids(&events));
        self.settle(session, &events, &tags, &asked, stop)
            .instrument(span)
            .await
    }

    /// Awards `events` (delivered under `tags`) with retries, then acks or dead-letters them;
    /// `asked[i]` is where event `i`'s outcome goes, for a delivery whose sender waits for it.
    async fn settle(
        &self,
        session: &Session<'_>,
        events: &[Event],
        tags: &[u64],
        asked: &[Option<ReplyTo>],
        stop: &CancellationToken,
    ) -> lapin::Result<()> {
        let Session {
            window,
            channel,
            replier,
        } = *session;
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(10));
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            match award_batch(&self.pool, events).await {
                Ok(outcome) => {
                    self.status.database_down.store(false, Ordering::Release);
                    failpoint::after_commit();
                    // Committed: the outcomes may be told (by a task of their own, so acks
                    // never wait for them).
                    replier.send(asked, &outcome.events, &outcome.awaited_reversals);
                    record_batch(events, &outcome);
                    for &index in &outcome.unknown_contest {
                        tracing::error!(message_id = events[index].message_id(), contest_id = %events[index].contest_id(), "dead-lettering an event for an unknown contest");
                        metrics::counter!(names::DEAD_LETTERED, "reason" => "unknown_contest")
                            .increment(1);
                        dead_letter(channel, tags[index]).await?;
                        window.released(&[tags[index]]).await?;
                    }
                    tracing::debug!(
                        recorded = outcome.recorded,
                        duplicates = outcome.duplicates,
                        points = outcome.points,
                        "batch committed"
                    );
                    let committed: Vec<u64> = tags
                        .iter()
                        .enumerate()
                        .filter(|(index, _)| !outcome.unknown_contest.contains(index))
                        .map(|(_, tag)| *tag)
                        .collect();
                    {
                        let acked = window.committed(&committed).await;
                        if let Err(error) = acked {
                            metrics::counter!(names::ACKS_LOST).increment(tags.len() as u64);
                            tracing::warn!(%error, "ack lost after commit; the redelivery will be a duplicate");
                            return Err(error);
                        }
                    }
                    return Ok(());
                }
                Err(error) if db::is_retryable(&error) => {
                    self.status
                        .database_down
                        .store(db::is_unavailable(&error), Ordering::Release);
                    if stop.is_cancelled() {
                        tracing::warn!(%error, "stopping during a database outage; returning the batch to the queue");
                        requeue(channel, tags).await?;
                        return window.released(tags).await;
                    }
                    metrics::counter!(names::DB_RETRIES).increment(1);
                    let delay = backoff.next_delay();
                    if attempts == 1 || attempts.is_power_of_two() {
                        tracing::warn!(%error, attempts, retry_in_ms = delay.as_millis() as u64, "transient database error (unavailable, deadlock or serialization); holding the batch and retrying");
                    }
                    tokio::select! {
                        () = stop.cancelled() => {}
                        () = tokio::time::sleep(delay) => {}
                    }
                }
                Err(error) if events.len() > 1 => {
                    // One bad message must not hold back the others: settle them one by one,
                    // so only the culprit is dead-lettered.
                    tracing::warn!(%error, size = events.len(), "batch refused by the database; settling messages one by one");
                    for ((event, tag), asked) in events.iter().zip(tags).zip(asked) {
                        Box::pin(self.settle(
                            session,
                            std::slice::from_ref(event),
                            std::slice::from_ref(tag),
                            std::slice::from_ref(asked),
                            stop,
                        ))
                        .await?;
                    }
                    return Ok(());
                }
                Err(error) => {
                    tracing::error!(%error, message_id = events[0].message_id(), "dead-lettering an event the database refuses");
                    metrics::counter!(names::DEAD_LETTERED, "reason" => "refused").increment(1);
                    dead_letter(channel, tags[0]).await?;
                    return window.released(&tags[..1]).await;
                }
            }
        }
    }
}

/// What a batch task settles its deliveries with, for one broker session.
#[derive(Clone, Copy)]
struct Session<'a> {
    /// Acks in tag order.
    window: &'a AckWindow,
    /// The consuming channel (rejects and requeues).
    channel: &'a Channel,
    /// Sends outcomes to deliveries that asked for them.
    replier: &'a Arc<Replier>,
}

/// The error of the first in-flight batch that failed with a broker error, if any finished so.
fn first_failure(in_flight: &mut JoinSet<lapin::Result<()>>) -> Option<lapin::Error> {
    while let Some(joined) = in_flight.try_join_next() {
        if let Ok(Err(error)) = joined {
            return Some(error);
        }
    }
    None
}

/// Rejects without requeue: the queue's dead-letter exchange takes the message.
async fn dead_letter(channel: &Channel, tag: u64) -> lapin::Result<()> {
    channel
        .basic_reject(tag, BasicRejectOptions { requeue: false })
        .await
}

/// Returns deliveries to the queue for another worker (or a later start of this one).
async fn requeue(channel: &Channel, tags: &[u64]) -> lapin::Result<()> {
    for &tag in tags {
        channel
            .basic_nack(
                tag,
                BasicNackOptions {
                    multiple: false,
                    requeue: true,
                },
            )
            .await?;
    }
    Ok(())
}

/// The first few message ids of a batch, for its span.
fn batch_ids(events: &[Event]) -> String {
    const SHOWN: usize = 5;
    let mut ids: Vec<&str> = events.iter().take(SHOWN).map(Event::message_id).collect();
    if events.len() > SHOWN {
        ids.push("…");
    }
    ids.join(",")
}

/// Metrics of a committed batch, including each event's end-to-end lag.
fn record_batch(events: &[Event], outcome: &BatchOutcome) {
    metrics::histogram!(names::BATCH_SIZE).record(events.len() as f64);
    metrics::counter!(names::PURCHASES_RECORDED).increment(outcome.recorded as u64);
    metrics::counter!(names::DUPLICATES).increment(outcome.duplicates as u64);
    metrics::counter!(names::POINTS_AWARDED).increment(outcome.points.max(0) as u64);
    metrics::counter!(names::REFERRAL_CREDITS).increment(outcome.referral_credits as u64);
    metrics::counter!(names::SIGNUPS).increment(outcome.signups as u64);
    crate::outcome_metrics::record_batch(outcome);
    let now = chrono::Utc::now();
    for event in events {
        let lag = (now - event.received_at())
            .num_microseconds()
            .unwrap_or(0)
            .max(0);
        metrics::histogram!(names::END_TO_END_LAG).record(lag as f64 / 1e6);
    }
}
