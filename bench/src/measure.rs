//! One repetition of each measurement. Every function sets up its own database and AMQP prefix
//! ([`Fixture`] or a bare [`TestEnv`]), measures, checks what it can, and cleans up.
//!
//! - ceilings: [`http_ceiling`], [`broker_ceiling`], [`database_ceiling`], [`consume_ceiling`];
//! - the baseline: [`naive`];
//! - this system: [`receiver`], [`worker_drain`], [`end_to_end`], [`pipeline`] (several
//!   receivers behind a [`Balancer`]).

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use futures::StreamExt;
use lapin::{
    options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions},
    types::FieldTable,
    Channel,
};
use shared::{amqp::Topology, event::Event};
use sqlx::{postgres::PgPoolOptions, PgPool};
use testkit::{
    app::{RunningReceiver, RunningWorker},
    TestEnv,
};

use crate::{
    balancer::Balancer,
    cpu,
    fixtures::{self, Fixture, Message},
    load::{Connector, HttpConnector, LoadGenerator, Outcome, Plan, RunResult, Session},
    naive,
    results::Sample,
    servers::{self, RunningServer},
    settings::Settings,
};

/// Warm-up then a timed run of webhook requests against `addr`.
pub async fn http_load(
    generator: &LoadGenerator,
    settings: &Settings,
    addr: SocketAddr,
    fixture_path: String,
    secret: &str,
    concurrency: usize,
    expected_rate: usize,
) -> RunResult {
    let connector = |tag: &str, duration: Duration| {
        Arc::new(HttpConnector {
            addr,
            path: fixture_path.clone(),
            secret: secret.to_owned(),
            bodies: fixtures::purchase_bodies(
                tag,
                settings.operations_for(duration, expected_rate),
            ),
            timeout: settings.client_timeout,
        })
    };
    let warm = connector("warm", settings.warmup);
    let operations = warm.bodies.len();
    generator
        .run(
            warm,
            Plan {
                concurrency,
                operations,
                duration: Some(settings.warmup),
                rate_per_s: None,
            },
        )
        .await;
    let timed = connector("run", settings.duration);
    let operations = timed.bodies.len();
    generator
        .run(
            timed,
            Plan {
                concurrency,
                operations,
                duration: Some(settings.duration),
                rate_per_s: None,
            },
        )
        .await
}

/// HTTP ceiling: the minimal axum handler at `concurrency`.
pub async fn http_ceiling(
    generator: &LoadGenerator,
    settings: &Settings,
    concurrency: usize,
) -> anyhow::Result<Sample> {
    let contest = fixtures::contest();
    let secret = contest.webhook_secret.clone();
    let path = format!("/api/webhooks/purchase/{}", contest.id.as_str());
    let server = RunningServer::start(servers::http_ceiling(contest)).await?;
    let run = http_load(
        generator,
        settings,
        server.addr,
        path,
        &secret,
        concurrency,
        80_000,
    )
    .await;
    server.stop().await;
    Ok(Sample::from_run(&run))
}

/// Publishes pre-built messages on one shared confirm channel, as the receiver does.
struct BrokerConnector {
    channel: Channel,
    exchange: String,
    messages: Arc<Vec<Message>>,
}

struct BrokerSession {
    channel: Channel,
    exchange: String,
    messages: Arc<Vec<Message>>,
}

impl Connector for BrokerConnector {
    type Session = BrokerSession;

    async fn connect(&self) -> anyhow::Result<BrokerSession> {
        Ok(BrokerSession {
            channel: self.channel.clone(),
            exchange: self.exchange.clone(),
            messages: self.messages.clone(),
        })
    }
}

impl Session for BrokerSession {
    async fn call(&mut self, index: usize) -> Outcome {
        match fixtures::publish_confirmed(&self.channel, &self.exchange, &self.messages[index])
            .await
        {
            Ok(true) => Outcome::Ok(1),
            Ok(false) | Err(_) => Outcome::Error,
        }
    }
}

/// Broker ceiling: persistent publishes of the receiver's messages to the same quorum queue,
/// `concurrency` publishers sharing one confirm channel (so up to `concurrency` confirms are
/// outstanding), no HTTP.
pub async fn broker_ceiling(
    generator: &LoadGenerator,
    settings: &Settings,
    concurrency: usize,
) -> anyhow::Result<Sample> {
    let env = TestEnv::new();
    let topology = Topology::new(&env.amqp_prefix);
    let result = async {
        // The connection is driven by the load generator's runtime: it is the client.
        let (connection, channel) = generator
            .spawn({
                let topology = topology.clone();
                async move { fixtures::confirm_channel(&topology).await }
            })
            .await?;
        let expected = if concurrency == 1 { 5_000 } else { 40_000 };
        let connector = |tag: &str, duration: Duration| {
            Arc::new(BrokerConnector {
                channel: channel.clone(),
                exchange: topology.exchange.clone(),
                messages: fixtures::messages(fixtures::purchase_events(
                    tag,
                    settings.operations_for(duration, expected),
                )),
            })
        };
        let warm = connector("warm", settings.warmup);
        let operations = warm.messages.len();
        generator
            .run(
                warm,
                Plan {
                    concurrency,
                    operations,
                    duration: Some(settings.warmup),
                    rate_per_s: None,
                },
            )
            .await;
        let timed = connector("run", settings.duration);
        let operations = timed.messages.len();
        let run = generator
            .run(
                timed,
                Plan {
                    concurrency,
                    operations,
                    duration: Some(settings.duration),
                    rate_per_s: None,
                },
            )
            .await;
        let _ = connection.close(200, "bench".into()).await;
        Ok(Sample::from_run(&run))
    }
    .await;
    env.cleanup().await;
    result
}

/// Runs the worker's award transaction on slices of pre-built events.
struct DbConnector {
    pool: PgPool,
    events: Arc<Vec<Event>>,
    batch: usize,
}

struct DbSession {
    pool: PgPool,
    events: Arc<Vec<Event>>,
    batch: usize,
}

impl Connector for DbConnector {
    type Session = DbSession;

    async fn connect(&self) -> anyhow::Result<DbSession> {
        Ok(DbSession {
            pool: self.pool.clone(),
            events: self.events.clone(),
            batch: self.batch,
        })
    }
}

impl Session for DbSession {
    async fn call(&mut self, index: usize) -> Outcome {
        let events = &self.events[index * self.batch..(index + 1) * self.batch];
        match worker::award::award_batch(&self.pool, events).await {
            Ok(outcome) if outcome.recorded == events.len() => Outcome::Ok(events.len() as u32),
            _ => Outcome::Error,
        }
    }
}

/// Database ceiling: `clients` concurrent connections each applying the award transaction to
/// `batch` pre-built events at a time, as fast as Postgres commits them.
pub async fn database_ceiling(
    generator: &LoadGenerator,
    settings: &Settings,
    clients: usize,
    batch: usize,
) -> anyhow::Result<Sample> {
    let fixture = Fixture::new().await?;
    let result = async {
        let pool = PgPoolOptions::new()
            .max_connections(clients as u32)
            .connect(&fixture.env.database_url())
            .await?;
        // Connections are opened up front; the transactions themselves start on empty tables,
        // as the worker measurements do (no warm-up rows), so the two compare like for like.
        let mut connections = Vec::new();
        for _ in 0..clients {
            connections.push(pool.acquire().await?);
        }
        drop(connections);
        let expected = if batch == 1 { 8_000 } else { 40_000 };
        let count = settings.operations_for(settings.duration, expected) / batch * batch;
        let connector = Arc::new(DbConnector {
            pool: pool.clone(),
            events: Arc::new(fixtures::as_events(fixtures::purchase_events("run", count))),
            batch,
        });
        let run = generator
            .run(
                connector,
                Plan {
                    concurrency: clients,
                    operations: count / batch,
                    duration: Some(settings.duration),
                    rate_per_s: None,
                },
            )
            .await;
        pool.close().await;
        Ok(Sample::from_run(&run))
    }
    .await;
    fixture.cleanup().await;
    result
}

/// Consume ceiling: drains a pre-published backlog with the worker's prefetch and one
/// `multiple` ack per 100 messages, doing nothing else with them (no decoding, no database).
pub async fn consume_ceiling(
    generator: &LoadGenerator,
    settings: &Settings,
) -> anyhow::Result<Sample> {
    let env = TestEnv::new();
    let topology = Topology::new(&env.amqp_prefix);
    let count = settings.consume_messages;
    let result = async {
        let messages = fixtures::messages(fixtures::purchase_events("run", count));
        fixtures::prepublish(&topology, &messages).await?;
        let before = cpu::Snapshot::take();
        let elapsed = generator
            .spawn({
                let topology = topology.clone();
                async move { drain_without_work(&topology, count, WORKER_BATCH).await }
            })
            .await?;
        let usage = before.until(&cpu::Snapshot::take());
        Ok(Sample::counted(count as u64, elapsed.as_secs_f64(), usage))
    }
    .await;
    env.cleanup().await;
    result
}

/// The worker's default batch size (the consume ceiling's prefetch is twice that).
pub const WORKER_BATCH: u16 = 100;

/// The worker's default number of batches settled at once (`WORKER_CONCURRENCY`): each holds a
/// connection, so `k` workers are `2k` database clients.
pub const WORKER_CONCURRENCY: usize = 2;

async fn drain_without_work(
    topology: &Topology,
    count: usize,
    batch: u16,
) -> anyhow::Result<Duration> {
    let connection = shared::amqp::connect(&testkit::env::amqp_url(), "bench-consume").await?;
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(batch * 2, BasicQosOptions::default())
        .await?;
    let started = Instant::now();
    let mut consumer = channel
        .basic_consume(
            topology.queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut seen = 0;
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        seen += 1;
        if seen % usize::from(batch) == 0 || seen == count {
            channel
                .basic_ack(delivery.delivery_tag, BasicAckOptions { multiple: true })
                .await?;
        }
        if seen == count {
            break;
        }
    }
    let elapsed = started.elapsed();
    let _ = connection.close(200, "bench".into()).await;
    anyhow::ensure!(seen == count, "the consumer ended after {seen} of {count}");
    Ok(elapsed)
}

/// The lean naive baseline at `concurrency` (its pool is [`naive::NAIVE_POOL`] at every
/// concurrency); fails when its books do not balance afterwards.
pub async fn naive(
    generator: &LoadGenerator,
    settings: &Settings,
    concurrency: usize,
) -> anyhow::Result<Sample> {
    let fixture = Fixture::new().await?;
    let result = async {
        let router = naive::router(fixture.contest.clone(), &fixture.env.database_url())?;
        let server = RunningServer::start(router).await?;
        let run = http_load(
            generator,
            settings,
            server.addr,
            fixture.webhook_path(),
            fixture.secret(),
            concurrency,
            8_000,
        )
        .await;
        server.stop().await;
        // Warm-up and timed run both wrote; every 200 of either must be in the books.
        naive::Books::read(&fixture).await?.check(run.ok_items())?;
        Ok(Sample::from_run(&run).with("pool_size", f64::from(naive::NAIVE_POOL)))
    }
    .await;
    fixture.cleanup().await;
    result
}

/// The receiver's configuration for the benchmark: production defaults, test addresses.
fn receiver_config(fixture: &Fixture) -> receiver::config::ReceiverConfig {
    let mut config = fixture.env.receiver_config();
    config.db_pool_size = 8;
    config.publish_timeout_ms = 2000;
    config.max_concurrency = 1024;
    config
}

/// Postgres connections of the one-transaction-per-message worker. Its 200 concurrent
/// transactions cannot each have a connection (Postgres allows 100, shared with the machine's
/// other users); 32 backends already saturate two cores many times over, and the rest of the
/// messages in flight wait for a connection inside the worker, as they would in production.
pub const UNBATCHED_POOL: u32 = 32;

/// The worker's configuration: production defaults (batch 100, 2 batches at once, prefetch
/// 300) except the batch size.
///
/// The one-transaction-per-message baseline (`batch_size == 1`) is made fair: it keeps as many
/// messages in flight as ours (concurrency = our batch size × our concurrency, each message its
/// own transaction) with the same prefetch, on [`UNBATCHED_POOL`] connections — so the ratio
/// between the two measures batching, not parallelism.
pub fn worker_config(fixture: &Fixture, batch_size: usize) -> worker::config::WorkerConfig {
    let mut config = fixture.env.worker_config();
    config.batch_size = usize::from(WORKER_BATCH);
    config.batch_wait_ms = 20;
    config.concurrency = WORKER_CONCURRENCY;
    config.prefetch = 0;
    if batch_size == 1 {
        let in_flight = config.batch_size * config.concurrency;
        config.prefetch = config.effective_prefetch();
        config.concurrency = in_flight;
        config.batch_size = 1;
        config.db_pool_size = UNBATCHED_POOL;
    } else {
        config.batch_size = batch_size;
        config.db_pool_size = u32::try_from(config.concurrency + 1).unwrap_or(3);
    }
    config
}

/// The in-process receiver alone (no worker) at `concurrency`.
pub async fn receiver(
    generator: &LoadGenerator,
    settings: &Settings,
    concurrency: usize,
) -> anyhow::Result<Sample> {
    let fixture = Fixture::new().await?;
    let result = async {
        let receiver = RunningReceiver::start(receiver_config(&fixture)).await;
        let addr = socket_addr(&receiver.public_url)?;
        let run = http_load(
            generator,
            settings,
            addr,
            fixture.webhook_path(),
            fixture.secret(),
            concurrency,
            30_000,
        )
        .await;
        receiver.stop().await?;
        Ok(Sample::from_run(&run))
    }
    .await;
    fixture.cleanup().await;
    result
}

/// Worker throughput: `count` messages pre-published, then `workers` in-process workers with
/// batches of `batch_size` started; the time until every purchase is committed.
pub async fn worker_drain(
    settings: &Settings,
    workers: usize,
    batch_size: usize,
    count: usize,
) -> anyhow::Result<Sample> {
    let fixture = Fixture::new().await?;
    let result = async {
        let messages = fixtures::messages(fixtures::purchase_events("run", count));
        let published = fixtures::prepublish(&fixture.topology(), &messages).await?;
        drop(messages);
        let config = worker_config(&fixture, batch_size);
        let before = cpu::Snapshot::take();
        let started = Instant::now();
        let mut running = Vec::new();
        for _ in 0..workers {
            running.push(RunningWorker::start(config.clone()).await);
        }
        let done = fixture
            .wait_recorded(count, drain_timeout(count, settings))
            .await?;
        let usage = before.until(&cpu::Snapshot::take());
        for worker in running {
            worker.stop().await?;
        }
        fixture.check_exactly_once(count).await?;
        Ok(Sample::counted(
            count as u64,
            done.duration_since(started).as_secs_f64(),
            usage,
        )
        .with(
            "prepublish_msg_per_s",
            count as f64 / published.as_secs_f64(),
        )
        .with("worker_concurrency", config.concurrency as f64)
        .with("worker_prefetch", f64::from(config.effective_prefetch()))
        .with("worker_db_pool", f64::from(config.db_pool_size)))
    }
    .await;
    fixture.cleanup().await;
    result
}

/// How long a drain of `count` messages may take before the measurement fails.
pub fn drain_timeout(count: usize, settings: &Settings) -> Duration {
    Duration::from_secs(60 + count as u64 / 200) + settings.duration
}

/// End to end: `e2e_purchases` webhooks sent at the headline concurrency to the in-process
/// receiver with `workers` in-process workers running; the time from the first request until
/// every purchase is committed.
pub async fn end_to_end(
    generator: &LoadGenerator,
    settings: &Settings,
    workers: usize,
) -> anyhow::Result<Sample> {
    pipeline(generator, settings, 1, workers).await
}

/// The pipeline with `receivers` in-process receivers (behind a round-robin TCP [`Balancer`]
/// when more than one) and `workers` in-process workers, loaded like [`end_to_end`].
pub async fn pipeline(
    generator: &LoadGenerator,
    settings: &Settings,
    receivers: usize,
    workers: usize,
) -> anyhow::Result<Sample> {
    let fixture = Fixture::new().await?;
    let result = async {
        let running = Pipeline::start(&fixture, receivers, workers).await?;
        let count = settings.e2e_purchases;
        let connector = Arc::new(HttpConnector {
            addr: running.addr,
            path: fixture.webhook_path(),
            secret: fixture.secret().to_owned(),
            bodies: fixtures::purchase_bodies("run", count),
            timeout: settings.client_timeout,
        });
        let before = cpu::Snapshot::take();
        let started = Instant::now();
        let run = generator
            .run(
                connector,
                Plan {
                    concurrency: settings.headline_concurrency,
                    operations: count,
                    duration: None,
                    rate_per_s: None,
                },
            )
            .await;
        let sent = Instant::now();
        let accepted = run.ok_items() as usize;
        let done = fixture
            .wait_recorded(accepted, drain_timeout(count, settings))
            .await?;
        let usage = before.until(&cpu::Snapshot::take());
        running.stop().await?;
        if run.failures() == 0 {
            fixture.check_exactly_once(accepted).await?;
        }
        let mut sample = Sample::counted(
            accepted as u64,
            done.duration_since(started).as_secs_f64(),
            usage,
        );
        sample.latency = run.latency();
        sample.failures = run.failures();
        sample.timeouts = run.timeouts();
        Ok(sample
            .with("receiver_req_per_s", run.throughput())
            .with(
                "lag_after_last_send_s",
                done.duration_since(sent).as_secs_f64(),
            )
            .with("receivers", receivers as f64)
            .with("workers", workers as f64))
    }
    .await;
    fixture.cleanup().await;
    result
}

/// Receivers (behind a balancer when more than one) and workers, running in-process.
pub struct Pipeline {
    /// Where the load goes: the receiver, or the balancer in front of the receivers.
    pub addr: SocketAddr,
    receivers: Vec<RunningReceiver>,
    workers: Vec<RunningWorker>,
    balancer: Option<Balancer>,
}

impl Pipeline {
    /// Starts `receivers` receivers and `workers` workers with the benchmark's configurations.
    pub async fn start(
        fixture: &Fixture,
        receivers: usize,
        workers: usize,
    ) -> anyhow::Result<Self> {
        let mut running = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            receivers: Vec::new(),
            workers: Vec::new(),
            balancer: None,
        };
        for _ in 0..receivers.max(1) {
            running
                .receivers
                .push(RunningReceiver::start(receiver_config(fixture)).await);
        }
        for _ in 0..workers {
            running.workers.push(
                RunningWorker::start(worker_config(fixture, usize::from(WORKER_BATCH))).await,
            );
        }
        let addrs = running
            .receivers
            .iter()
            .map(|r| socket_addr(&r.public_url))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if addrs.len() == 1 {
            running.addr = addrs[0];
        } else {
            let balancer = Balancer::start(addrs).await?;
            running.addr = balancer.addr;
            running.balancer = Some(balancer);
        }
        Ok(running)
    }

    /// Stops the balancer, the workers and the receivers.
    pub async fn stop(self) -> anyhow::Result<()> {
        if let Some(balancer) = self.balancer {
            balancer.stop().await;
        }
        for worker in self.workers {
            worker.stop().await?;
        }
        for receiver in self.receivers {
            receiver.stop().await?;
        }
        Ok(())
    }
}

/// `http://127.0.0.1:1234` → `127.0.0.1:1234`.
pub fn socket_addr(url: &str) -> anyhow::Result<SocketAddr> {
    url.trim_start_matches("http://")
        .parse()
        .with_context(|| format!("not an http://host:port URL: {url}"))
}
