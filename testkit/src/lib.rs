//! Test support: the real receiver and worker, started in-process on port 0 (or as real
//! processes for fault tests), against the real Postgres and RabbitMQ.
//!
//! Every [`TestEnv`] has its own database (`blitz_t_<random>`) and its own `AMQP_PREFIX`, so
//! tests run in parallel, and again, without seeing each other's state. [`App::stop`] drops both.
//!
//! # Layout
//!
//! - [`env`]: per-test database and queue names, configs, clean-up.
//! - [`app`]: a running receiver (and workers) with request helpers.
//! - [`broker`]: direct RabbitMQ access (queue depths, raw publishes).
//! - [`mixed`]: a stream of purchases, refunds and chargebacks, its exact expected state, and
//!   the audit that compares it with Postgres and the API.
//! - [`deliveries`]: the worker's delivery log (a test hook), for checking a case's premises.
//! - [`process`]: the built binaries as child processes.
//! - [`proxy`]: a TCP proxy between a service and Postgres or RabbitMQ, to cut and restore the network.
//! - [`rabbit`]: RabbitMQ nodes and clusters of a test's own (through `scripts/rabbitmq-cluster.sh`).
//! - [`postgres`]: a PostgreSQL server of a test's own, to stop and start for real.
//! - [`sender`]: a load sender that retries like Shopify and Stripe, and the exact-points audit.
//! - [`wait`]: wait-until-condition instead of sleeps.

pub mod app;
pub mod broker;
pub mod deliveries;
pub mod env;
pub mod mixed;
pub mod postgres;
pub mod process;
pub mod proxy;
pub mod rabbit;
pub mod sender;
pub mod wait;

pub use app::App;
pub use env::TestEnv;
pub use receiver;
pub use worker;
