//! The ledger and reversal migrations on a database that holds data written by the schema
//! before them: every existing entry gets ledger rows summing to its points, and a worker
//! started on it (which applies the migrations itself) refunds an old purchase correctly.

mod common;

use std::{borrow::Cow, time::Duration};

use serde_json::json;
use shared::db::MIGRATOR;
use sqlx::migrate::Migrator;
use testkit::{app::RunningWorker, broker, TestEnv};

/// The first migration of the ledger release; everything before it is the old schema.
const LEDGER_RELEASE: i64 = 20261124000001;

#[tokio::test]
async fn existing_entries_get_ledger_rows_that_sum_to_their_points() {
    let env = TestEnv::new();
    let url = env.database_url();
    shared::db::create_if_missing(&url).await.unwrap();
    let pool = env.pool().await;

    let old = Migrator {
        migrations: Cow::Owned(
            MIGRATOR
                .migrations
                .iter()
                .filter(|m| m.version < LEDGER_RELEASE)
                .cloned()
                .collect(),
        ),
        ..Migrator::DEFAULT
    };
    assert!(
        old.migrations.len() >= 2 && old.migrations.len() < MIGRATOR.migrations.len(),
        "the premise: old and new migrations exist"
    );
    old.run(&pool).await.unwrap();

    // Data as the old worker wrote it: purchases, referral credits, signup bonuses folded into
    // the points, an unconvertible purchase, and an entry with nothing at all.
    let id = |order: &str| {
        shared::ids::PurchaseId::derive(
            &shared::ids::ContestId::parse("old").unwrap(),
            shared::ids::Source::Api,
            &shared::ids::OrderId::parse(order).unwrap(),
        )
        .as_str()
        .to_owned()
    };
    let sql =
        "INSERT INTO contests (id, name, currency, points_per_unit, rounding, purchase_tracking, \
           accept_test_events, webhook_secret) \
         VALUES ('old', 'Old', 'USD', 1, 'nearest', true, true, 'whsec_x'); \
         INSERT INTO entries (id, contest_id, email, points, referral_code, signed_up_at) VALUES \
           ('ent_a', 'old', 'a@example.com', 95, 'AAAAAAAA', now()), \
           ('ent_b', 'old', 'b@example.com', 215, 'BBBBBBBB', now()), \
           ('ent_c', 'old', 'c@example.com', 0, 'CCCCCCCC', NULL), \
           ('ent_d', 'old', 'd@example.com', 7, 'DDDDDDDD', now()); \
         INSERT INTO purchases (id, contest_id, source, order_id, entry_id, amount, currency, \
           points_awarded, status, received_at) VALUES \
           ('pur_1', 'old', 'api', 'O-1', 'ent_a', 80, 'USD', 80, 'awarded', now()), \
           ('pur_2', 'old', 'api', 'O-2', 'ent_b', 200, 'USD', 200, 'awarded', now()), \
           ('pur_3', 'old', 'api', 'O-3', 'ent_c', 10, 'GBP', 0, 'unconvertible_currency', now()); \
         INSERT INTO referral_credits (contest_id, source, order_id, purchase_id, \
           advocate_entry_id, points) VALUES ('old', 'api', 'O-2', 'pur_2', 'ent_a', 10);"
            .replace("pur_1", &id("O-1"))
            .replace("pur_2", &id("O-2"))
            .replace("pur_3", &id("O-3"));
    sqlx::raw_sql(&sql).execute(&pool).await.unwrap();
    // a: 80 purchase + 10 credit + 5 signup bonus; b: 200 + 15 bonus; d: 7 bonus only.

    MIGRATOR.run(&pool).await.unwrap();
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT entry_id, kind, points FROM points_ledger ORDER BY entry_id, kind")
            .fetch_all(&pool)
            .await
            .unwrap();
    let expected = [
        ("ent_a", "purchase", 80),
        ("ent_a", "referral", 10),
        ("ent_a", "signup", 5),
        ("ent_b", "purchase", 200),
        ("ent_b", "signup", 15),
        ("ent_d", "signup", 7),
    ];
    assert_eq!(
        rows,
        expected
            .iter()
            .map(|(e, k, p)| (e.to_string(), k.to_string(), *p))
            .collect::<Vec<_>>()
    );
    assert_eq!(common::assert_books_balance(&pool).await, 4);
    let kept: Vec<(String, String, String)> =
        sqlx::query_as("SELECT order_id, status, award_status FROM purchases ORDER BY order_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(kept[2].1, "unconvertible_currency");
    assert_eq!(
        kept[2].2, "unconvertible_currency",
        "the original status is kept apart"
    );
    assert_eq!(kept[0].2, "awarded");

    // A worker on the migrated database refunds an old purchase, and the books still balance.
    let worker = RunningWorker::start(env.worker_config()).await;
    let contest = testkit::app::TestContest {
        id: "old".into(),
        secret: String::new(),
        data: json!({}),
    };
    let events = common::Events::new(&contest);
    broker::publish_events(&env.amqp_prefix, &[events.refund("O-2", "r1", "100")]).await;
    common::wait_for_reversals(&pool, 1).await;
    assert_eq!(common::points(&pool, "ent_b").await, 115);
    assert_eq!(
        common::points(&pool, "ent_a").await,
        90,
        "half the credit clawed back"
    );
    common::assert_books_balance(&pool).await;
    tokio::time::timeout(Duration::from_secs(30), worker.stop())
        .await
        .unwrap()
        .unwrap();
    pool.close().await;
    env.cleanup().await;
}
