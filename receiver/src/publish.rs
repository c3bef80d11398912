//! Publishing events to RabbitMQ with publisher confirms, over a connection that heals itself.
//!
//! One long-lived connection and one confirm-mode channel are shared by every request: lapin
//! tracks each publish's confirm separately, so hundreds of requests can each wait for their own
//! confirm at once (pipelined) instead of one outstanding confirm capping us near 1k msg/s.
//! A background task owns the connection: it connects, declares the topology, and on any failure
//! clears the channel (requests then get 503 at once) and reconnects with capped, jittered
//! exponential backoff. We do not use `deadpool-lapin`: it pools connections, while what we need
//! is one confirm channel kept open and replaced when it dies.
//!
//! With several nodes in `AMQP_URL` (one RabbitMQ cluster), a lost node is left for the next one
//! in the list ([`shared::amqp::Connector`]): requests get `503` only from the moment the loss is
//! noticed until the next node's channel is open, typically well under a second. Publishes whose
//! confirm was still outstanding on the lost connection fail (lapin rejects every pending confirm
//! when its channel dies) and are answered `503`, never `200`: the sender retries, and the
//! event's deterministic purchase id makes a copy that did reach the queue harmless.
//!
//! The same channel carries synchronous answers back ([`crate::sync`]): when it opens, before
//! any publish, it starts consuming RabbitMQ's direct reply-to pseudo-queue (no-ack, as direct
//! reply-to requires), and a dispatcher task hands each reply to the request waiting under its
//! correlation id. A request that waits publishes with `reply_to` and its correlation id
//! ([`Publisher::publish_awaiting_reply`]); every other request publishes exactly as before. Direct
//! reply-to works on a confirm-mode channel (RabbitMQ 3.10 checked), so it needs no queue of its
//! own: replies go from the worker's channel straight to ours. When the connection is lost, the
//! requests still waiting are answered `accepted` at once (their replies can no longer arrive),
//! and the next connection's channel consumes the pseudo-queue again before it is used.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc, RwLock,
    },
    time::Duration,
};

use futures::StreamExt;
use lapin::{
    options::{BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions},
    types::FieldTable,
    BasicProperties, Channel, Confirmation, Connection,
};
use shared::{
    amqp::{self, topology::ROUTING_KEY, Connector, Nodes, Topology},
    event::Envelope,
    outcome::{OutcomeMessage, REPLY_TO},
    retry::Backoff,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::sync::waiters::{Waiter, Waiters};

/// Consecutive confirm timeouts after which the connection is presumed dead and replaced
/// (a half-open TCP connection would otherwise only be noticed at the next heartbeat).
const TIMEOUTS_BEFORE_RECONNECT: u32 = 3;

/// How often the connection's state is polled, besides its event stream.
const HEALTH_POLL: Duration = Duration::from_millis(500);

/// Longest wait to connect, enable confirms and declare the topology. lapin has no handshake
/// timeout, so without this a connection into a silent network (a partition, a blackholing
/// firewall) would wait forever and the receiver would never reconnect.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest wait for the broker to confirm closing a connection we are abandoning: a dead
/// connection never answers, and lapin stops its heartbeat checks once closing has begun.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Why an event was not durably accepted by the broker. Every variant means "answer 503".
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// No open channel (broker down or reconnecting).
    #[error("not connected to the broker")]
    NotConnected,
    /// The broker blocked publishers (memory or disk alarm).
    #[error("the broker is blocking publishers")]
    Blocked,
    /// No confirm within the deadline.
    #[error("no publisher confirm in time")]
    Timeout,
    /// The broker refused the message (`basic.nack`), e.g. a full queue with `reject-publish`.
    #[error("the broker refused the message")]
    Nacked,
    /// The message could not be routed to any queue (`mandatory` return).
    #[error("the message was unroutable")]
    Returned,
    /// The channel or connection failed during the publish.
    #[error("broker error: {0}")]
    Amqp(#[from] lapin::Error),
}

/// Publishes envelopes with confirms; cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

struct Inner {
    /// The confirm-mode channel, `None` while disconnected.
    channel: RwLock<Option<Channel>>,
    /// Set while the broker has blocked the connection (resource alarm).
    blocked: AtomicBool,
    /// Names of the exchange to publish to.
    topology: Topology,
    /// Longest wait for a confirm.
    timeout: Duration,
    /// Consecutive confirm timeouts, reset by any confirm.
    timeouts: AtomicU32,
    /// Asks the connection task to drop and replace the connection.
    reconnect: tokio::sync::Notify,
    /// Requests waiting for their outcome (synchronous answers).
    waiters: Arc<Waiters>,
}

/// One open connection: what [`Publisher::open`] sets up and the connection task tears down.
struct Session {
    /// The connection.
    connection: Connection,
    /// The node it is to.
    node: String,
    /// Hands replies that arrive on the channel to their waiting requests.
    dispatcher: JoinHandle<()>,
}

impl Publisher {
    /// Starts the connection task over the node list `url` (`AMQP_URL`); it runs until `stop`
    /// is cancelled, then closes the channel and the connection.
    pub fn start(
        url: String,
        topology: Topology,
        timeout: Duration,
        stop: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let publisher = Self {
            inner: Arc::new(Inner {
                channel: RwLock::new(None),
                blocked: AtomicBool::new(false),
                topology,
                timeout,
                timeouts: AtomicU32::new(0),
                reconnect: tokio::sync::Notify::new(),
                waiters: Waiters::new(),
            }),
        };
        let task = tokio::spawn(publisher.clone().maintain(url, stop));
        (publisher, task)
    }

    /// True when a channel is open and the broker is not blocking us.
    pub fn is_ready(&self) -> bool {
        self.current_channel()
            .is_some_and(|channel| channel.status().connected())
            && !self.inner.blocked.load(Ordering::Acquire)
    }

    /// Why the publisher is not ready, for `/readyz`.
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        if self.inner.blocked.load(Ordering::Acquire) {
            Some("broker is blocking publishers")
        } else if !self.is_ready() {
            Some("not connected to the broker")
        } else {
            None
        }
    }

    /// Publishes one persistent event and waits for the broker's confirm, bounded by the timeout.
    /// `Ok` means the broker has the message durably (in a quorum queue: on a majority of nodes).
    pub async fn publish(&self, envelope: &Envelope) -> Result<(), PublishError> {
        self.publish_with(envelope, amqp::message_properties(envelope))
            .await
    }

    /// Like [`Publisher::publish`], for a request that waits for the event's outcome: registers
    /// a waiter first (so its reply cannot arrive before anyone waits), then publishes with
    /// `reply_to` (direct reply-to) and the waiter's correlation id. A failed publish drops the
    /// waiter (it leaves the registry).
    pub async fn publish_awaiting_reply(
        &self,
        envelope: &Envelope,
    ) -> Result<Waiter, PublishError> {
        let waiter = self.inner.waiters.register();
        let properties = amqp::message_properties(envelope)
            .with_reply_to(REPLY_TO.into())
            .with_correlation_id(waiter.correlation_id().into());
        self.publish_with(envelope, properties).await?;
        Ok(waiter)
    }

    /// How many requests are waiting for their outcome.
    pub fn waiting(&self) -> usize {
        self.inner.waiters.len()
    }

    async fn publish_with(
        &self,
        envelope: &Envelope,
        properties: BasicProperties,
    ) -> Result<(), PublishError> {
        let started = std::time::Instant::now();
        let result = self.publish_untimed(envelope, properties).await;
        let label = match &result {
            Ok(()) => "confirmed",
            Err(PublishError::NotConnected) => "not_connected",
            Err(PublishError::Blocked) => "blocked",
            Err(PublishError::Timeout) => "timeout",
            Err(PublishError::Nacked) => "nacked",
            Err(PublishError::Returned) => "returned",
            Err(PublishError::Amqp(_)) => "error",
        };
        metrics::counter!(shared::metrics::PUBLISHES, "result" => label).increment(1);
        if result.is_ok() {
            metrics::histogram!(shared::metrics::PUBLISH_DURATION)
                .record(started.elapsed().as_secs_f64());
        }
        result
    }

    async fn publish_untimed(
        &self,
        envelope: &Envelope,
        properties: BasicProperties,
    ) -> Result<(), PublishError> {
        let channel = self.current_channel().ok_or(PublishError::NotConnected)?;
        if self.inner.blocked.load(Ordering::Acquire) {
            return Err(PublishError::Blocked);
        }
        let payload = envelope.to_bytes();
        let exchange = self.inner.topology.exchange.as_str();
        let publish = async {
            let confirm = channel
                .basic_publish(
                    exchange.into(),
                    ROUTING_KEY.into(),
                    // mandatory: an unroutable message comes back instead of vanishing.
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &payload,
                    properties,
                )
                .await?;
            match confirm.await? {
                Confirmation::Ack(None) => Ok(()),
                Confirmation::Ack(Some(_returned)) => Err(PublishError::Returned),
                Confirmation::Nack(_) => Err(PublishError::Nacked),
                // Only possible if confirm mode were off, which would make 200 a lie.
                Confirmation::NotRequested => Err(PublishError::NotConnected),
            }
        };
        match tokio::time::timeout(self.inner.timeout, publish).await {
            Ok(result) => {
                self.inner.timeouts.store(0, Ordering::Relaxed);
                result
            }
            Err(_) => {
                let count = self.inner.timeouts.fetch_add(1, Ordering::Relaxed) + 1;
                if count >= TIMEOUTS_BEFORE_RECONNECT {
                    self.inner.reconnect.notify_one();
                }
                Err(PublishError::Timeout)
            }
        }
    }

    fn current_channel(&self) -> Option<Channel> {
        self.inner
            .channel
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn set_channel(&self, channel: Option<Channel>) {
        *self
            .inner
            .channel
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = channel;
    }

    fn take_channel(&self) -> Option<Channel> {
        self.inner
            .channel
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    /// The connection task: connect to a node, serve until the connection fails, back off,
    /// connect to the next node that answers, repeat.
    async fn maintain(self, url: String, stop: CancellationToken) {
        let nodes = match Nodes::parse(&url) {
            Ok(nodes) => nodes,
            Err(error) => {
                // The configuration parser already refuses this; never connected, never ready.
                tracing::error!(%error, "AMQP_URL is unusable; the publisher stays disconnected");
                return;
            }
        };
        let mut connector = Connector::new(nodes, "receiver", OPEN_TIMEOUT);
        let mut backoff = Backoff::reconnect();
        loop {
            let session = tokio::select! {
                () = stop.cancelled() => return,
                session = self.open(&mut connector) => session,
            };
            match session {
                Ok(Session {
                    connection,
                    node,
                    dispatcher,
                }) => {
                    backoff.reset();
                    metrics::counter!(shared::metrics::BROKER_CONNECTS, "process" => "receiver")
                        .increment(1);
                    tracing::info!(%node, "publisher connected to the broker");
                    let stopped = self.watch(&connection, &stop).await;
                    // Requests get 503 at once from here on; the channel is closed before the
                    // connection, so the shutdown is quiet.
                    let channel = self.take_channel();
                    self.inner.blocked.store(false, Ordering::Release);
                    // Their replies would come back on this channel: answer them now.
                    let abandoned = self.inner.waiters.abandon_all();
                    if abandoned > 0 {
                        tracing::info!(
                            abandoned,
                            "waiting requests answered accepted: the broker connection is going"
                        );
                    }
                    amqp::close_quietly(
                        &channel.iter().collect::<Vec<_>>(),
                        &connection,
                        CLOSE_TIMEOUT,
                    )
                    .await;
                    dispatcher.abort();
                    if stopped {
                        return;
                    }
                    tracing::warn!(%node, "publisher lost the broker node; reconnecting");
                }
                Err(error) => {
                    tracing::warn!(%error, "publisher cannot reach any broker node");
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    /// Connects to a node, enables confirms, starts consuming replies, ensures the topology and
    /// installs the channel. Each step is bounded: the connect per node, the rest by
    /// [`OPEN_TIMEOUT`].
    async fn open(&self, connector: &mut Connector) -> lapin::Result<Session> {
        let connected = connector.connect().await?;
        let connection = connected.connection;
        let prepared = tokio::time::timeout(OPEN_TIMEOUT, async {
            self.inner.topology.ensure(&connection).await?;
            let channel = connection.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            // Direct reply-to: consumed in no-ack mode on the channel requests are published on,
            // before the channel is used.
            let replies = channel
                .basic_consume(
                    REPLY_TO.into(),
                    "".into(),
                    BasicConsumeOptions {
                        no_ack: true,
                        ..BasicConsumeOptions::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            Ok::<_, lapin::Error>((channel, replies))
        })
        .await
        .unwrap_or_else(|_| Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()));
        match prepared {
            Ok((channel, replies)) => {
                self.inner.timeouts.store(0, Ordering::Relaxed);
                let dispatcher = tokio::spawn(dispatch(replies, self.inner.waiters.clone()));
                self.set_channel(Some(channel));
                Ok(Session {
                    connection,
                    node: connected.address,
                    dispatcher,
                })
            }
            Err(error) => {
                amqp::close_quietly(&[], &connection, CLOSE_TIMEOUT).await;
                Err(error)
            }
        }
    }

    /// Follows the connection until it fails (false) or `stop` is cancelled (true).
    async fn watch(&self, connection: &Connection, stop: &CancellationToken) -> bool {
        let mut events = connection.events_listener();
        let mut poll = tokio::time::interval(HEALTH_POLL);
        loop {
            tokio::select! {
                () = stop.cancelled() => return true,
                () = self.inner.reconnect.notified() => {
                    // A request left over from the previous connection is stale: `open` reset
                    // the count, so only act on timeouts of this connection.
                    if self.inner.timeouts.load(Ordering::Relaxed) >= TIMEOUTS_BEFORE_RECONNECT {
                        tracing::warn!("confirms keep timing out; replacing the broker connection");
                        return false;
                    }
                }
                event = events.next() => match event {
                    Some(lapin::Event::ConnectionBlocked(reason)) => {
                        tracing::warn!(%reason, "broker blocked publishing");
                        self.inner.blocked.store(true, Ordering::Release);
                    }
                    Some(lapin::Event::ConnectionUnblocked) => {
                        tracing::info!("broker unblocked publishing");
                        self.inner.blocked.store(false, Ordering::Release);
                    }
                    Some(lapin::Event::Error(error)) => {
                        tracing::warn!(%error, "broker connection error");
                        return false;
                    }
                    Some(_) => {}
                    None => return false,
                },
                _ = poll.tick() => {
                    let channel_open = self.current_channel().is_some_and(|c| c.status().connected());
                    if !connection.status().connected() || !channel_open {
                        return false;
                    }
                }
            }
        }
    }
}

/// Hands every reply that arrives on the channel to the request waiting under its correlation
/// id, until the channel closes. A reply nobody waits for any more (the request timed out or
/// went away) is dropped; one that cannot be read ends its request's wait at once (`accepted`).
async fn dispatch(mut replies: lapin::Consumer, waiters: Arc<Waiters>) {
    while let Some(Ok(reply)) = replies.next().await {
        let correlation_id = reply
            .properties
            .correlation_id()
            .as_ref()
            .map_or("", |id| id.as_str());
        let unmatched = match OutcomeMessage::from_bytes(&reply.data) {
            Ok(message) => (!waiters.deliver(correlation_id, message.outcome)).then_some("late"),
            Err(error) => {
                tracing::warn!(%error, "an outcome reply cannot be read; its request answers accepted");
                waiters.cancel(correlation_id);
                Some("undecodable")
            }
        };
        if let Some(reason) = unmatched {
            metrics::counter!(shared::metrics::SYNC_REPLIES_UNMATCHED, "reason" => reason)
                .increment(1);
        }
    }
}
