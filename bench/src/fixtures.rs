//! What every measurement starts from: its own database (migrated, one contest) and AMQP prefix,
//! pre-built request bodies and events, pre-published backlogs, and the checks that every
//! purchase was awarded exactly once.

use std::{
    str::FromStr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use bytes::Bytes;
use chrono::Utc;
use futures::{stream, TryStreamExt};
use lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions},
    BasicProperties, Channel, Confirmation, Connection,
};
use rust_decimal::Decimal;
use shared::{
    amqp::{topology::ROUTING_KEY, Topology},
    contest::{Contest, ProviderSecrets, ReferralSettings},
    db::{self, PoolSettings},
    email::Email,
    event::{Envelope, Event, PurchaseEvent},
    ids::{ContestId, OrderId, PurchaseId, Source},
    money::{Currency, Money},
    points::Rounding,
};
use sqlx::PgPool;
use testkit::TestEnv;

/// The amount of every benchmark purchase; at 1 point per dollar it is worth [`POINTS_EACH`].
pub const AMOUNT: &str = "79.99";

/// Points each purchase earns (79.99 rounded to the nearest point).
pub const POINTS_EACH: i64 = 80;

/// The contest every measurement uses.
pub const CONTEST_ID: &str = "bench";

/// Purchases (each by its own buyer) already in the database when a measurement starts.
///
/// A service in production writes to tables that hold data and have planner statistics. A brand
/// new, empty table is a different case: Postgres caches a *generic* plan for a prepared
/// statement after five executions, and while the table is tiny that plan is a sequential scan,
/// kept until the table is next analyzed — so `WHERE id = ANY($1)` scans the whole growing
/// table on every batch. Seeding and analyzing first measures the steady state; the fresh-table
/// case is reported separately (`docs/performance.md`).
pub const SEEDED_PURCHASES: i64 = 20_000;

/// A fresh database with the schema, one contest and [`SEEDED_PURCHASES`] analyzed rows, plus a
/// fresh AMQP prefix.
pub struct Fixture {
    /// Names of the database and queues.
    pub env: TestEnv,
    /// A small pool for set-up and checks.
    pub pool: PgPool,
    /// The contest purchases are sent to.
    pub contest: Contest,
}

impl Fixture {
    /// Creates and migrates the database and inserts the contest.
    pub async fn new() -> anyhow::Result<Self> {
        let env = TestEnv::new();
        let url = env.database_url();
        let pool = db::lazy_pool(
            &url,
            PoolSettings {
                max_connections: 4,
                acquire_timeout: Duration::from_secs(10),
            },
        )?;
        db::prepare(&url, &pool)
            .await
            .context("preparing the database")?;
        let contest = contest();
        db::contests::insert(&pool, &contest).await?;
        seed(&pool).await.context("seeding the database")?;
        Ok(Self { env, pool, contest })
    }

    /// The contest's webhook secret.
    pub fn secret(&self) -> &str {
        &self.contest.webhook_secret
    }

    /// The generic purchase webhook's path for the contest.
    pub fn webhook_path(&self) -> String {
        format!("/api/webhooks/purchase/{}", self.contest.id.as_str())
    }

    /// The queue names of this fixture's prefix.
    pub fn topology(&self) -> Topology {
        Topology::new(&self.env.amqp_prefix)
    }

    /// Purchases recorded so far by the measurement (the seed excluded).
    pub async fn recorded(&self) -> anyhow::Result<i64> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM purchases")
            .fetch_one(&self.pool)
            .await?;
        Ok(count - SEEDED_PURCHASES)
    }

    /// Purchases recorded by the measurement and the points they added (the seed excluded).
    pub async fn totals(&self) -> anyhow::Result<(i64, i64)> {
        let (count, points): (i64, Option<i64>) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM purchases), (SELECT SUM(points)::BIGINT FROM entries)",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((
            count - SEEDED_PURCHASES,
            points.unwrap_or(0) - SEEDED_PURCHASES * POINTS_EACH,
        ))
    }

    /// Waits until `expected` purchases are recorded and returns when that was seen. A count
    /// costs Postgres a few milliseconds on a large table, so it polls every 200 ms far from the
    /// goal (about 2 % of a core) and every 20 ms in the last 3 %.
    pub async fn wait_recorded(
        &self,
        expected: usize,
        timeout: Duration,
    ) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            let recorded = self.recorded().await? as usize;
            if recorded >= expected {
                return Ok(Instant::now());
            }
            if Instant::now() >= deadline {
                anyhow::bail!("only {recorded} of {expected} purchases recorded after {timeout:?}");
            }
            let pause = if recorded * 100 >= expected * 97 {
                20
            } else {
                200
            };
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }

    /// Checks that exactly `expected` purchases are recorded and that the points add up to
    /// [`POINTS_EACH`] for each of them: nothing lost, nothing awarded twice.
    pub async fn check_exactly_once(&self, expected: usize) -> anyhow::Result<()> {
        let (count, points) = self.totals().await?;
        anyhow::ensure!(
            count == expected as i64 && points == expected as i64 * POINTS_EACH,
            "expected {expected} purchases and {} points, found {count} and {points}",
            expected as i64 * POINTS_EACH
        );
        Ok(())
    }

    /// Drops the database and the queues.
    pub async fn cleanup(self) {
        self.pool.close().await;
        self.env.cleanup().await;
    }
}

/// Inserts [`SEEDED_PURCHASES`] awarded purchases and their entries, then analyzes.
async fn seed(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO entries (id, contest_id, email, referral_code, points) \
         SELECT 'ent_seed' || i, $1, 'seed' || i || '@example.com', 'SEED' || i, $3 \
         FROM generate_series(1, $2) AS i",
    )
    .bind(CONTEST_ID)
    .bind(SEEDED_PURCHASES)
    .bind(POINTS_EACH)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO purchases (id, contest_id, source, order_id, entry_id, amount, currency, \
         points_awarded, status, received_at) \
         SELECT 'pur_seed' || i, $1, 'api', 'seed-' || i, 'ent_seed' || i, $4::numeric, 'USD', $3, \
         'awarded', now() FROM generate_series(1, $2) AS i",
    )
    .bind(CONTEST_ID)
    .bind(SEEDED_PURCHASES)
    .bind(POINTS_EACH)
    .bind(AMOUNT)
    .execute(pool)
    .await?;
    sqlx::query("ANALYZE").execute(pool).await?;
    Ok(())
}

/// The benchmark contest: USD, 1 point per dollar, nearest rounding.
pub fn contest() -> Contest {
    let now = Utc::now();
    Contest {
        id: ContestId::parse(CONTEST_ID).expect("valid contest id"),
        name: "Benchmark".into(),
        currency: Currency::USD,
        points_per_unit: Decimal::ONE,
        rounding: Rounding::Nearest,
        purchase_tracking: true,
        accept_test_events: true,
        sync_responses: false,
        referral: ReferralSettings::default(),
        exchange_rates: Default::default(),
        provider_secrets: ProviderSecrets::default(),
        webhook_secret: shared::contest::generate_webhook_secret(),
        previous_webhook_secret: None,
        created_at: now,
        updated_at: now,
    }
}

/// Request bodies `0..n` of run `tag`: unique order ids, one new buyer per purchase (a flash
/// sale's shape: mostly first-time buyers, so every purchase also creates an entry).
pub fn purchase_bodies(tag: &str, n: usize) -> Arc<Vec<Bytes>> {
    Arc::new(
        (0..n)
            .map(|i| {
                Bytes::from(format!(
                    r#"{{"email":"{}","orderId":"{}","amount":"{AMOUNT}","currency":"USD"}}"#,
                    email(tag, i),
                    order_id(tag, i)
                ))
            })
            .collect(),
    )
}

fn email(tag: &str, i: usize) -> String {
    format!("buyer{i}.{tag}@example.com")
}

fn order_id(tag: &str, i: usize) -> String {
    format!("{tag}-{i}")
}

/// The events the receiver would publish for [`purchase_bodies`] `(tag, n)`.
pub fn purchase_events(tag: &str, n: usize) -> Vec<PurchaseEvent> {
    let contest_id = ContestId::parse(CONTEST_ID).expect("valid contest id");
    let amount = Decimal::from_str(AMOUNT).expect("valid amount");
    let received_at = Utc::now();
    (0..n)
        .map(|i| {
            let order_id = OrderId::parse(&order_id(tag, i)).expect("valid order id");
            PurchaseEvent {
                purchase_id: PurchaseId::derive(&contest_id, Source::Api, &order_id),
                contest_id: contest_id.clone(),
                source: Source::Api,
                order_id,
                email: Email::parse(&email(tag, i)).expect("valid email"),
                money: Money::new(amount, Currency::USD).expect("valid money"),
                received_at,
                referral_codes: Vec::new(),
                payment_intent: None,
            }
        })
        .collect()
}

/// The same events as the worker's award transaction takes them.
pub fn as_events(purchases: Vec<PurchaseEvent>) -> Vec<Event> {
    purchases.into_iter().map(Event::Purchase).collect()
}

/// A message exactly as the receiver publishes it: body and properties.
#[derive(Clone)]
pub struct Message {
    /// The envelope's bytes.
    pub payload: Bytes,
    /// The publish properties (persistent, JSON, message id, type, timestamp).
    pub properties: BasicProperties,
}

/// The messages of `events`, built like `receiver::publish::Publisher::publish` builds them.
pub fn messages(events: Vec<PurchaseEvent>) -> Arc<Vec<Message>> {
    Arc::new(
        events
            .into_iter()
            .map(|event| {
                // Built exactly as the receiver builds its messages.
                let envelope = Envelope::new(Event::Purchase(event));
                Message {
                    properties: shared::amqp::message_properties(&envelope),
                    payload: Bytes::from(envelope.to_bytes()),
                }
            })
            .collect(),
    )
}

/// A confirm-mode channel on a new connection, with the topology of `topology` declared.
pub async fn confirm_channel(topology: &Topology) -> anyhow::Result<(Connection, Channel)> {
    let connection = shared::amqp::connect(&testkit::env::amqp_url(), "bench").await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    // As the services do: a queue they created (with a group size) is used as it is.
    topology.ensure(&connection).await?;
    Ok((connection, channel))
}

/// Publishes one message on `channel` and waits for its confirm; `true` when acked.
pub async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    message: &Message,
) -> lapin::Result<bool> {
    let confirm = channel
        .basic_publish(
            exchange.into(),
            ROUTING_KEY.into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            &message.payload,
            message.properties.clone(),
        )
        .await?;
    Ok(matches!(confirm.await?, Confirmation::Ack(None)))
}

/// Fills the queue with `messages` as fast as the broker confirms them (1024 in flight) and
/// returns how long it took: the backlog a worker then starts on.
pub async fn prepublish(topology: &Topology, messages: &[Message]) -> anyhow::Result<Duration> {
    let (connection, channel) = confirm_channel(topology).await?;
    let started = Instant::now();
    let exchange = topology.exchange.as_str();
    stream::iter(messages.iter().map(Ok::<_, anyhow::Error>))
        .try_for_each_concurrent(1024, |message| {
            let channel = &channel;
            async move {
                anyhow::ensure!(
                    publish_confirmed(channel, exchange, message).await?,
                    "the broker refused a pre-published message"
                );
                Ok(())
            }
        })
        .await?;
    let elapsed = started.elapsed();
    let _ = connection.close(200, "bench".into()).await;
    Ok(elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_unique_and_match_the_events() {
        let bodies = purchase_bodies("t", 3);
        assert_eq!(
            bodies[1],
            r#"{"email":"buyer1.t@example.com","orderId":"t-1","amount":"79.99","currency":"USD"}"#
        );
        let events = purchase_events("t", 3);
        assert_eq!(events[1].order_id.as_str(), "t-1");
        assert_eq!(events[1].email.as_str(), "buyer1.t@example.com");
        assert_ne!(events[0].purchase_id, events[1].purchase_id);
    }

    #[test]
    fn messages_are_persistent_envelopes() {
        let messages = messages(purchase_events("t", 1));
        assert_eq!(messages[0].properties.delivery_mode(), &Some(2));
        let envelope = Envelope::from_bytes(&messages[0].payload).unwrap();
        assert_eq!(
            envelope.event.message_id(),
            messages[0]
                .properties
                .message_id()
                .as_ref()
                .unwrap()
                .as_str()
        );
    }
}
