//! Everything the receiver and the worker must agree on.
//!
//! # Layout
//!
//! - [`ids`]: identifiers parsed once at the edge (`ContestId`, `OrderId`, `Source`) and the
//!   deterministic `PurchaseId` / `EntryId` derived from them, so any receiver answers the same id
//!   for the same order without asking the database.
//! - [`email`]: the normalised buyer email (trimmed, lower-cased, checked).
//! - [`money`]: exact amounts (`Decimal`, never floats), ISO 4217 currency codes and their minor-unit
//!   exponents.
//! - [`points`]: the one place points are computed: currency conversion and the contest's rounding.
//! - [`contest`]: contest settings as both processes see them.
//! - [`event`]: the versioned message the receiver publishes and the worker consumes.
//! - [`outcome`]: the versioned reply the worker sends a receiver waiting for an event's outcome
//!   (synchronous answers, over RabbitMQ's direct reply-to).
//! - [`config`]: the environment variables both binaries read.
//! - [`db`]: connecting (creating the database if missing), migrations and the queries both sides run.
//! - [`amqp`]: RabbitMQ node lists (`AMQP_URL`), connecting to a node that answers, and the
//!   topology (exchange, quorum queue, dead letters).
//! - [`retry`]: capped, jittered exponential backoff for reconnect and retry loops.
//! - [`metrics`]: the Prometheus recorder and every metric name.
//! - [`healthcheck`]: the container health probe both binaries offer as a subcommand.
//! - [`telemetry`] and [`shutdown`]: logging set-up and the signal both binaries stop on.

pub mod amqp;
pub mod config;
pub mod contest;
pub mod db;
pub mod email;
pub mod event;
pub mod healthcheck;
pub mod ids;
pub mod metrics;
pub mod money;
pub mod outcome;
pub mod points;
pub mod retry;
pub mod shutdown;
pub mod telemetry;
