//! Per-test isolation: a fresh database and a unique queue prefix.

use rand::Rng;
use receiver::config::ReceiverConfig;
use shared::{config::CommonConfig, telemetry::LogFormat};
use worker::config::WorkerConfig;

/// Postgres server URL without a database (override with `BLITZ_TEST_PG`).
pub fn postgres_server() -> String {
    std::env::var("BLITZ_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// RabbitMQ URL (override with `BLITZ_TEST_AMQP`).
pub fn amqp_url() -> String {
    std::env::var("BLITZ_TEST_AMQP")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A random lower-case suffix.
pub fn random_suffix(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// One test's database and queue namespace.
#[derive(Debug, Clone)]
pub struct TestEnv {
    /// Postgres server URL without a database ([`postgres_server`] unless the test has its own).
    pub postgres: String,
    /// `AMQP_URL` of this test ([`amqp_url`] unless the test has its own broker or cluster).
    pub amqp: String,
    /// The database name (created by the first process that starts).
    pub database: String,
    /// `AMQP_PREFIX` of this test.
    pub amqp_prefix: String,
    /// Admin token of receivers started for this test.
    pub admin_token: String,
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl TestEnv {
    /// Fresh, unique names on the shared servers.
    pub fn new() -> Self {
        Self::on(&postgres_server(), &amqp_url())
    }

    /// Fresh, unique names on the given Postgres server (URL without a database) and broker
    /// (`AMQP_URL`, one node or a cluster's list).
    pub fn on(postgres: &str, amqp: &str) -> Self {
        let suffix = random_suffix(12);
        Self {
            postgres: postgres.to_owned(),
            amqp: amqp.to_owned(),
            database: format!("blitz_t_{suffix}"),
            amqp_prefix: format!("t_{suffix}"),
            admin_token: format!("admin-{suffix}"),
        }
    }

    /// `DATABASE_URL` of this test.
    pub fn database_url(&self) -> String {
        format!("{}/{}", self.postgres, self.database)
    }

    /// Settings both binaries share.
    pub fn common(&self) -> CommonConfig {
        CommonConfig {
            database_url: self.database_url(),
            amqp_url: self.amqp.clone(),
            amqp_prefix: self.amqp_prefix.clone(),
            amqp_quorum_group_size: None,
            log_format: LogFormat::Pretty,
        }
    }

    /// A receiver configuration (addresses are ignored: tests pass bound listeners).
    pub fn receiver_config(&self) -> ReceiverConfig {
        ReceiverConfig {
            common: self.common(),
            receiver_addr: "127.0.0.1:0".parse().expect("valid address"),
            admin_addr: "127.0.0.1:0".parse().expect("valid address"),
            admin_token: Some(self.admin_token.clone()),
            public_base_url: "http://localhost:8080".into(),
            publish_timeout_ms: 2000,
            contest_refresh_secs: 5,
            db_pool_size: 4,
            max_concurrency: 1024,
            max_in_flight_per_address: receiver::config::DEFAULT_MAX_IN_FLIGHT_PER_ADDRESS,
        }
    }

    /// A worker configuration with small batches and a short batch deadline.
    pub fn worker_config(&self) -> WorkerConfig {
        WorkerConfig {
            common: self.common(),
            worker_addr: "127.0.0.1:0".parse().expect("valid address"),
            batch_size: 50,
            batch_wait_ms: 5,
            concurrency: 2,
            prefetch: 0,
            db_pool_size: 3,
            // The production default; tests of the pending-reversal race shorten it.
            pending_sweep_ms: 10_000,
        }
    }

    /// The environment variables that configure a child process for this test.
    pub fn process_env(&self) -> Vec<(String, String)> {
        vec![
            ("DATABASE_URL".into(), self.database_url()),
            ("AMQP_URL".into(), self.amqp.clone()),
            ("AMQP_PREFIX".into(), self.amqp_prefix.clone()),
            ("ADMIN_TOKEN".into(), self.admin_token.clone()),
            ("RUST_LOG".into(), "info,lapin=warn,sqlx=warn".into()),
        ]
    }

    /// A pool on this test's database.
    pub async fn pool(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.database_url())
            .await
            .expect("connect to the test database")
    }

    /// Drops the database and the queues and exchanges (best effort).
    pub async fn cleanup(&self) {
        if let Ok(pool) = sqlx::PgPool::connect(&format!("{}/postgres", self.postgres)).await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.database
            ))
            .execute(&pool)
            .await;
        }
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            crate::broker::delete_topology_at(&self.amqp, &self.amqp_prefix),
        )
        .await;
    }
}
