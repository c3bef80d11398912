//! Rolling back a release: the previous binary must start against a database a newer release
//! has already migrated (migrations are additive), or a rollback, and every rolling upgrade,
//! would stop at "migration … was previously applied but is missing".

use std::time::Duration;

use testkit::{app::RunningWorker, wait, TestEnv};

#[tokio::test]
async fn an_older_release_starts_on_a_database_migrated_by_a_newer_one() {
    let env = TestEnv::new();
    let pool = shared::db::connect_prepared(&env.database_url())
        .await
        .expect("migrated");
    // A migration this build does not know, as a newer release would have left it.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'from a newer release', TRUE, '\\x00'::bytea, 1)",
    )
    .execute(&pool)
    .await
    .expect("record a newer migration");
    pool.close().await;

    let worker = RunningWorker::start(env.worker_config()).await;
    let client = reqwest::Client::new();
    let url = format!("{}/readyz", worker.url);
    wait::until("the worker is ready", Duration::from_secs(30), || async {
        let status = client.get(&url).send().await.ok()?.status();
        status.is_success().then_some(())
    })
    .await;
    worker
        .stop()
        .await
        .expect("the worker ran and stopped cleanly");
    env.cleanup().await;
}
