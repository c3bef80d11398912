//! The worker: consumes purchase, signup and reversal events from RabbitMQ and awards (or takes
//! back) contest points in Postgres, exactly once per event however often a message is delivered,
//! writing every change of points to the ledger.
//!
//! # Layout
//!
//! - [`config`]: the environment variables the worker reads.
//! - [`consumer`]: connect, consume with manual acks, settle batches, reconnect.
//! - [`batch`]: gathering deliveries into batches (size or deadline).
//! - [`acks`]: acking in tag order while several batches are in flight.
//! - [`award`]: the one transaction that records purchases and reversals and changes points.
//! - [`sweep`]: the periodic sweep that applies reversals whose purchase committed concurrently.
//! - [`outcome_metrics`]: metrics and logs of what each event came to.
//! - [`reply`]: after commit, each event's outcome to the receiver waiting for it (synchronous
//!   answers, over RabbitMQ's direct reply-to).
//! - [`health`]: `/healthz`, `/readyz` and `/metrics`.
//! - [`queue_stats`]: queue depth and consumer gauges from passive declares.
//! - [`dlq`]: operator commands on the dead-letter queue: count, list, replay.
//! - [`failpoint`]: test-only hooks, compiled in only with the `failpoints` cargo feature.

pub mod acks;
pub mod award;
pub mod batch;
pub mod config;
pub mod consumer;
pub mod dlq;
pub mod failpoint;
pub mod health;
pub mod outcome_metrics;
pub mod queue_stats;
pub mod reply;
pub mod sweep;

use std::{future::Future, sync::Arc, time::Duration};

use shared::{
    amqp::Topology,
    db::{self, PoolSettings},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    config::WorkerConfig,
    consumer::{Consumer, Status},
};

/// How long start-up waits for Postgres before giving up.
const STARTUP_DB_WAIT: Duration = Duration::from_secs(60);

/// Runs the worker until `shutdown` completes: it then stops taking deliveries, finishes and
/// acks the batch it holds, closes its connections and returns.
pub async fn run(
    config: WorkerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    shared::metrics::install();
    let pool = db::lazy_pool(
        &config.common.database_url,
        PoolSettings {
            max_connections: config.db_pool_size.max(1),
            acquire_timeout: Duration::from_secs(5),
        },
    )?;
    db::prepare_when_available(&config.common.database_url, &pool, STARTUP_DB_WAIT).await?;

    let stop = CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown.await;
            stop.cancel();
        }
    });

    let status = Arc::new(Status::default());
    tracing::info!(addr = %listener.local_addr()?, "worker health listener");
    let health = tokio::spawn({
        let stop = stop.clone();
        let app = health::router(status.clone());
        async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        }
    });

    failpoint::start();
    let sweeper = tokio::spawn(sweep::run(
        pool.clone(),
        config.pending_sweep(),
        stop.clone(),
    ));
    let consumer = Consumer {
        topology: Topology::for_config(&config.common),
        config,
        pool: pool.clone(),
        status,
    };
    Arc::new(consumer).run(stop.clone()).await;
    stop.cancel();
    let _ = health.await;
    let _ = sweeper.await;
    pool.close().await;
    tracing::info!("worker stopped");
    Ok(())
}
