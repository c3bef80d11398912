//! Refunds and chargebacks through real workers, RabbitMQ and Postgres: reversal events are
//! published exactly as the receiver publishes them, and the points, statuses, lookups and ledger
//! must follow the money exactly.

mod common;

use common::{assert_books_balance, contest, points, wait_for_count, wait_for_reversals};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use shared::{
    event::{RefundAmount, ReversalKind, ReversalTarget},
    ids::Source,
    money::Currency,
};
use testkit::{app::RunningWorker, broker::publish_events, App};

/// The lookup of `order` once `check` holds for it.
async fn lookup_when(
    app: &App,
    contest: &testkit::app::TestContest,
    order: &str,
    source: Option<&str>,
    check: impl Fn(&Value) -> bool,
) -> Value {
    testkit::wait::until(
        "lookup condition",
        std::time::Duration::from_secs(30),
        || async {
            let answer = app.lookup(contest, order, source).await;
            (answer.status == StatusCode::OK && check(answer.data())).then(|| answer.data().clone())
        },
    )
    .await
}

/// An entry's ledger through the admin API: (points, [(kind, points)]).
async fn ledger(app: &App, contest: &str, entry: &str) -> (i64, Vec<(String, i64)>) {
    let answer = app
        .admin(
            Method::GET,
            &format!("/api/contests/{contest}/entries/{entry}/ledger"),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    let changes = answer.data()["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap().to_owned(),
                c["points"].as_i64().unwrap(),
            )
        })
        .collect();
    (answer.data()["points"].as_i64().unwrap(), changes)
}

#[tokio::test]
async fn partial_refunds_take_back_points_in_proportion_and_add_up_exactly() {
    let app = App::with_workers(1).await;
    let (c, events) = contest(&app, json!({})).await;
    let prefix = app.env.amqp_prefix.clone();
    let pool = app.env.pool().await;

    publish_events(
        &prefix,
        &[events.purchase("A-1", "jane@example.com", "79.99")],
    )
    .await;
    let first = app.recorded(&c, "A-1", None).await;
    assert_eq!(first["pointsAwarded"], 80);
    assert_eq!(first["pointsReversed"], 0);
    assert_eq!(first["refundedAmount"], "0");

    publish_events(&prefix, &[events.refund("A-1", "r1", "40.00")]).await;
    let after = lookup_when(&app, &c, "A-1", None, |d| d["pointsReversed"] != 0).await;
    assert_eq!(after["pointsReversed"], 40);
    assert_eq!(after["pointsAwarded"], 80, "what it first earned stays");
    assert_eq!(after["refundedAmount"], "40.00");
    assert_eq!(after["status"], "partially_refunded");
    let jane = events.entry("jane@example.com");
    assert_eq!(points(&pool, &jane).await, 40);

    publish_events(&prefix, &[events.refund("A-1", "r2", "39.99")]).await;
    let after = lookup_when(&app, &c, "A-1", None, |d| d["pointsReversed"] == 80).await;
    assert_eq!(after["status"], "refunded");
    assert_eq!(after["refundedAmount"], "79.99");
    assert_eq!(points(&pool, &jane).await, 0);

    // One refund of the sum lands on the same number.
    publish_events(
        &prefix,
        &[
            events.purchase("B-1", "sam@example.com", "79.99"),
            events.refund("B-1", "r-all", "79.99"),
        ],
    )
    .await;
    let b = lookup_when(&app, &c, "B-1", None, |d| d["pointsReversed"] != 0).await;
    assert_eq!(b["pointsReversed"], 80);
    assert_eq!(b["status"], "refunded");
    assert_eq!(points(&pool, &events.entry("sam@example.com")).await, 0);

    let (total, changes) = ledger(&app, &c.id, &jane).await;
    assert_eq!(total, 0);
    assert_eq!(
        changes,
        [
            ("purchase".to_owned(), 80),
            ("refund".to_owned(), -40),
            ("refund".to_owned(), -40)
        ]
    );
    assert_eq!(assert_books_balance(&pool).await, 2);
    pool.close().await;
    app.stop().await;
}

#[tokio::test]
async fn refunds_beyond_the_purchase_cap_at_it_and_a_refund_without_amount_is_full() {
    let app = App::with_workers(1).await;
    let (c, events) = contest(&app, json!({"rounding": "ceil"})).await;
    let prefix = app.env.amqp_prefix.clone();
    let pool = app.env.pool().await;

    publish_events(
        &prefix,
        &[
            events.purchase("O-1", "over@example.com", "50.10"),
            events.purchase("F-1", "full@example.com", "12.34"),
        ],
    )
    .await;
    assert_eq!(app.recorded(&c, "O-1", None).await["pointsAwarded"], 51);
    assert_eq!(app.recorded(&c, "F-1", None).await["pointsAwarded"], 13);

    publish_events(
        &prefix,
        &[
            events.refund("O-1", "r1", "30"),
            events.refund("O-1", "r2", "50"),
            events.full_refund("F-1"),
        ],
    )
    .await;
    wait_for_reversals(&pool, 3).await;
    let over = app.recorded(&c, "O-1", None).await;
    assert_eq!(over["pointsReversed"], 51, "capped at what it earned");
    assert_eq!(
        over["refundedAmount"], "80",
        "the money received is shown as is"
    );
    assert_eq!(over["status"], "refunded");
    let full = app.recorded(&c, "F-1", None).await;
    assert_eq!(full["pointsReversed"], 13);
    assert_eq!(full["refundedAmount"], "12.34");
    assert_eq!(full["status"], "refunded");
    assert_eq!(app.total_points(&c).await, 0);
    assert_books_balance(&pool).await;
    pool.close().await;
    app.stop().await;
}

#[tokio::test]
async fn a_chargeback_takes_what_is_left_and_its_win_gives_back_exactly_that() {
    let app = App::with_workers(1).await;
    let (c, events) = contest(&app, json!({})).await;
    let prefix = app.env.amqp_prefix.clone();
    let pool = app.env.pool().await;
    let jane = events.entry("jane@example.com");

    publish_events(
        &prefix,
        &[
            events.purchase("A-1", "jane@example.com", "79.99"),
            events.refund("A-1", "r1", "40.00"),
        ],
    )
    .await;
    wait_for_reversals(&pool, 1).await;
    assert_eq!(points(&pool, &jane).await, 40);

    publish_events(&prefix, &[events.chargeback("A-1", "dp_1", false)]).await;
    wait_for_reversals(&pool, 2).await;
    let reversed = app.recorded(&c, "A-1", None).await;
    assert_eq!(reversed["status"], "reversed");
    assert_eq!(reversed["pointsReversed"], 80);
    assert_eq!(points(&pool, &jane).await, 0);
    let took: i64 = sqlx::query_scalar(
        "SELECT points_reversed FROM reversals WHERE kind = 'chargeback' AND refund_id = 'dp_1'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(took, 40, "the chargeback took what the refund had left");

    // The win (twice: the copy counts once) gives back exactly what the chargeback took.
    publish_events(
        &prefix,
        &[
            events.chargeback("A-1", "dp_1", true),
            events.chargeback("A-1", "dp_1", true),
        ],
    )
    .await;
    wait_for_reversals(&pool, 3).await;
    let won = app.recorded(&c, "A-1", None).await;
    assert_eq!(
        won["status"], "partially_refunded",
        "back to the refunds' share"
    );
    assert_eq!(won["pointsReversed"], 40);
    assert_eq!(points(&pool, &jane).await, 40);

    // A second dispute; a refund during it takes nothing more (all is taken already), so its
    // win gives back what the chargeback took less that refund's share.
    publish_events(&prefix, &[events.chargeback("A-1", "dp_2", false)]).await;
    wait_for_reversals(&pool, 4).await;
    assert_eq!(points(&pool, &jane).await, 0);
    publish_events(&prefix, &[events.refund("A-1", "r2", "10.00")]).await;
    wait_for_reversals(&pool, 5).await;
    assert_eq!(points(&pool, &jane).await, 0);
    publish_events(&prefix, &[events.chargeback("A-1", "dp_2", true)]).await;
    wait_for_reversals(&pool, 6).await;
    let won = app.recorded(&c, "A-1", None).await;
    assert_eq!(won["refundedAmount"], "50.00");
    // round(80 × 50 / 79.99) = round(50.006…) = 50.
    assert_eq!(won["pointsReversed"], 50);
    assert_eq!(points(&pool, &jane).await, 30);

    let (total, changes) = ledger(&app, &c.id, &jane).await;
    assert_eq!(total, 30);
    assert_eq!(
        changes,
        [
            ("purchase".to_owned(), 80),
            ("refund".to_owned(), -40),
            ("chargeback".to_owned(), -40),
            ("chargeback".to_owned(), 40),
            ("chargeback".to_owned(), -40),
            ("chargeback".to_owned(), 30),
        ]
    );
    assert_books_balance(&pool).await;
    pool.close().await;
    app.stop().await;
}

#[tokio::test]
async fn a_refund_that_arrives_before_its_purchase_is_held_and_applied_once() {
    // No sweep during the test: the purchase's own transaction must apply the held refund.
    let mut app = App::receiver_only().await;
    let mut config = app.env.worker_config();
    config.pending_sweep_ms = 600_000;
    app.workers.push(RunningWorker::start(config).await);
    let (c, events) = contest(&app, json!({})).await;
    let prefix = app.env.amqp_prefix.clone();
    let pool = app.env.pool().await;

    publish_events(&prefix, &[events.refund("EARLY-1", "r1", "25")]).await;
    wait_for_count(
        &pool,
        "the refund held as pending",
        "SELECT COUNT(*) FROM reversals WHERE status = 'pending'",
        1,
    )
    .await;
    assert_eq!(
        app.lookup(&c, "EARLY-1", None).await.status,
        StatusCode::NOT_FOUND
    );

    publish_events(
        &prefix,
        &[events.purchase("EARLY-1", "early@example.com", "100")],
    )
    .await;
    let landed = lookup_when(&app, &c, "EARLY-1", None, |d| d["pointsReversed"] != 0).await;
    assert_eq!(landed["pointsAwarded"], 100);
    assert_eq!(landed["pointsReversed"], 25);
    assert_eq!(landed["status"], "partially_refunded");

    // The same refund again, and the purchase again: nothing more.
    publish_events(
        &prefix,
        &[
            events.refund("EARLY-1", "r1", "25"),
            events.purchase("EARLY-1", "early@example.com", "100"),
            events.purchase("MARK", "mark@example.com", "1"),
        ],
    )
    .await;
    app.recorded(&c, "MARK", None).await;
    assert_eq!(points(&pool, &events.entry("early@example.com")).await, 75);
    let applied: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM points_ledger WHERE kind = 'refund' AND purchase_id = $1",
    )
    .bind(landed["purchaseId"].as_str().unwrap())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(applied, 1, "applied exactly once");
    assert_books_balance(&pool).await;
    pool.close().await;
    app.stop().await;
}

#[tokio::test]
async fn a_refund_in_another_currency_changes_nothing_and_is_recorded_as_such() {
    let app = App::with_workers(1).await;
    let (c, events) = contest(&app, json!({"exchangeRates": {"EUR": 1.08}})).await;
    let prefix = app.env.amqp_prefix.clone();
    let pool = app.env.pool().await;
    let eur = Currency::parse("EUR").unwrap();

    publish_events(
        &prefix,
        &[
            events.purchase("M-1", "mismatch@example.com", "20"),
            events.reversal(
                Source::Api,
                ReversalTarget::OrderId(shared::ids::OrderId::parse("M-1").unwrap()),
                "r-eur",
                ReversalKind::Refund,
                RefundAmount::Partial {
                    amount: common::dec("10"),
                    currency: Some(eur),
                },
            ),
        ],
    )
    .await;
    wait_for_reversals(&pool, 1).await;
    let status: String =
        sqlx::query_scalar("SELECT status FROM reversals WHERE refund_id = 'r-eur'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(status, "currency_mismatch");
    let lookup = app.recorded(&c, "M-1", None).await;
    assert_eq!(lookup["pointsReversed"], 0);
    assert_eq!(lookup["refundedAmount"], "0");
    assert_eq!(lookup["status"], "awarded");
    assert_eq!(app.total_points(&c).await, 20);

    let metrics = app
        .http
        .get(format!("{}/metrics", app.workers[0].url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("blitz_reversals_total{outcome=\"currency_mismatch\"}"))
        .unwrap_or_else(|| panic!("no currency_mismatch metric in:\n{metrics}"));
    let count: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 1.0, "{line}");
    assert_books_balance(&pool).await;
    pool.close().await;
    app.stop().await;
}

#[tokio::test]
async fn stripe_reversals_find_their_purchase_by_payment_intent() {
    let app = App::with_workers(1).await;
    let (c, events) = contest(&app, json!({})).await;
    let prefix = app.env.amqp_prefix.clone();
    let pool = app.env.pool().await;
    let by_intent = || ReversalTarget::PaymentIntent("pi_3Nabc".into());
    let cumulative = |amount: &str| RefundAmount::Cumulative {
        amount: common::dec(amount),
        currency: Currency::USD,
    };

    publish_events(
        &prefix,
        &[events.purchase_from(
            Source::Stripe,
            "cs_test_1",
            "buyer@example.com",
            "100.00",
            Some("pi_3Nabc"),
            &[],
        )],
    )
    .await;
    assert_eq!(
        app.recorded(&c, "cs_test_1", Some("stripe")).await["pointsAwarded"],
        100
    );
    let stored: Option<String> =
        sqlx::query_scalar("SELECT payment_intent FROM purchases WHERE order_id = 'cs_test_1'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(stored.as_deref(), Some("pi_3Nabc"));

    // charge.refunded carries the cumulative total: a replay or an older total never adds.
    publish_events(
        &prefix,
        &[
            events.reversal(
                Source::Stripe,
                by_intent(),
                "ch_1:3000",
                ReversalKind::Refund,
                cumulative("30.00"),
            ),
            events.reversal(
                Source::Stripe,
                by_intent(),
                "ch_1:3000",
                ReversalKind::Refund,
                cumulative("30.00"),
            ),
            events.reversal(
                Source::Stripe,
                by_intent(),
                "ch_1:2000",
                ReversalKind::Refund,
                cumulative("20.00"),
            ),
        ],
    )
    .await;
    wait_for_reversals(&pool, 2).await;
    let lookup = app.recorded(&c, "cs_test_1", Some("stripe")).await;
    assert_eq!(lookup["pointsReversed"], 30);
    assert_eq!(lookup["refundedAmount"], "30.00");

    publish_events(
        &prefix,
        &[events.reversal(
            Source::Stripe,
            by_intent(),
            "dp_1",
            ReversalKind::Chargeback,
            RefundAmount::Full,
        )],
    )
    .await;
    wait_for_reversals(&pool, 3).await;
    let lookup = app.recorded(&c, "cs_test_1", Some("stripe")).await;
    assert_eq!(lookup["status"], "reversed");
    assert_eq!(lookup["pointsReversed"], 100);
    // An intent nobody bought with stays pending (it may still arrive).
    publish_events(
        &prefix,
        &[events.reversal(
            Source::Stripe,
            ReversalTarget::PaymentIntent("pi_unknown".into()),
            "dp_2",
            ReversalKind::Chargeback,
            RefundAmount::Full,
        )],
    )
    .await;
    wait_for_count(
        &pool,
        "unknown intent pending",
        "SELECT COUNT(*) FROM reversals WHERE status = 'pending' AND payment_intent = 'pi_unknown'",
        1,
    )
    .await;
    assert_eq!(points(&pool, &events.entry("buyer@example.com")).await, 0);

    // The session with that intent lands: the held chargeback applies to it.
    publish_events(
        &prefix,
        &[events.purchase_from(
            Source::Stripe,
            "cs_test_2",
            "late@example.com",
            "10.00",
            Some("pi_unknown"),
            &[],
        )],
    )
    .await;
    let late = lookup_when(&app, &c, "cs_test_2", Some("stripe"), |d| {
        d["pointsReversed"] != 0
    })
    .await;
    assert_eq!(late["status"], "reversed");
    assert_eq!(late["pointsReversed"], 10);
    assert_eq!(points(&pool, &events.entry("late@example.com")).await, 0);
    assert_books_balance(&pool).await;
    pool.close().await;
    app.stop().await;
}

#[tokio::test]
async fn referral_credit_is_clawed_back_in_proportion_and_signup_bonuses_are_not() {
    let app = App::with_workers(1).await;
    let (c, events) = contest(
        &app,
        json!({"referral": {"advocatePoints": 10, "friendPoints": 5, "pointsPerUnit": 0.1}}),
    )
    .await;
    let prefix = app.env.amqp_prefix.clone();
    let pool = app.env.pool().await;

    let advocate = app
        .admin(
            Method::POST,
            &format!("/api/contests/{}/entries", c.id),
            Some(json!({"email": "advocate@example.com"})),
        )
        .await;
    let code = advocate.data()["referralCode"].as_str().unwrap().to_owned();
    let friend = app
        .admin(
            Method::POST,
            &format!("/api/contests/{}/entries", c.id),
            Some(json!({"email": "friend@example.com", "referralCode": code})),
        )
        .await;
    assert_eq!(friend.data()["points"], 5);
    let advocate_id = events.entry("advocate@example.com");
    let friend_id = events.entry("friend@example.com");
    assert_eq!(points(&pool, &advocate_id).await, 10);

    publish_events(
        &prefix,
        &[events.purchase_from(
            Source::Shopify,
            "1001",
            "friend@example.com",
            "100.00",
            None,
            &[&code],
        )],
    )
    .await;
    app.recorded(&c, "1001", Some("shopify")).await;
    assert_eq!(
        points(&pool, &advocate_id).await,
        20,
        "bonus 10 + credit 10"
    );
    assert_eq!(points(&pool, &friend_id).await, 105);

    let order = || ReversalTarget::OrderId(shared::ids::OrderId::parse("1001").unwrap());
    publish_events(
        &prefix,
        &[events.reversal(
            Source::Shopify,
            order(),
            "refund-77",
            ReversalKind::Refund,
            RefundAmount::Partial {
                amount: common::dec("50.00"),
                currency: None,
            },
        )],
    )
    .await;
    wait_for_reversals(&pool, 1).await;
    assert_eq!(points(&pool, &friend_id).await, 55);
    assert_eq!(
        points(&pool, &advocate_id).await,
        15,
        "half the credit back"
    );

    publish_events(
        &prefix,
        &[events.reversal(
            Source::Shopify,
            order(),
            "cb-1",
            ReversalKind::Chargeback,
            RefundAmount::Full,
        )],
    )
    .await;
    wait_for_reversals(&pool, 2).await;
    assert_eq!(points(&pool, &friend_id).await, 5, "the signup bonus stays");
    assert_eq!(
        points(&pool, &advocate_id).await,
        10,
        "the signup bonus stays"
    );
    let (_, changes) = ledger(&app, &c.id, &advocate_id).await;
    assert_eq!(
        changes,
        [
            ("signup".to_owned(), 10),
            ("referral".to_owned(), 10),
            ("refund".to_owned(), -5),
            ("chargeback".to_owned(), -5)
        ]
    );
    assert_books_balance(&pool).await;
    pool.close().await;
    app.stop().await;
}

#[tokio::test]
async fn reversals_racing_their_purchase_are_swept_and_applied_once_by_four_workers() {
    let mut app = App::receiver_only().await;
    for _ in 0..4 {
        let mut config = app.env.worker_config();
        config.pending_sweep_ms = 200;
        app.workers.push(RunningWorker::start(config).await);
    }
    let (c, events) = contest(&app, json!({})).await;
    let prefix = app.env.amqp_prefix.clone();
    let pool = app.env.pool().await;

    // 30 purchases, recorded.
    let purchases: Vec<_> = (0..30)
        .map(|i| events.purchase(&format!("R-{i}"), &format!("r{i}@example.com"), "10"))
        .collect();
    publish_events(&prefix, &purchases).await;
    wait_for_count(&pool, "purchases", "SELECT COUNT(*) FROM purchases", 30).await;

    // The race's result: each refund committed as `pending` while its purchase committed, each
    // unseen by the other (written here exactly as a worker writes a pending reversal).
    for i in 0..30 {
        let order = format!("R-{i}");
        sqlx::query(
            "INSERT INTO reversals (contest_id, source, target_key, refund_id, kind, id, order_id, \
             amount_type, amount, status, received_at) \
             VALUES ($1, 'api', $2, 'r1', 'refund', $3, $4, 'partial', 4, 'pending', now())",
        )
        .bind(&c.id)
        .bind(format!("order:{order}"))
        .bind(format!("rev_test_{i}"))
        .bind(&order)
        .execute(&pool)
        .await
        .unwrap();
    }
    // Every worker sweeps every 200 ms; each reversal is applied once.
    wait_for_reversals(&pool, 30).await;
    assert_eq!(app.total_points(&c).await, 30 * 6);
    let refund_rows: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM points_ledger WHERE kind = 'refund'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(refund_rows, 30);
    for i in [0, 17, 29] {
        let lookup = app.recorded(&c, &format!("R-{i}"), None).await;
        assert_eq!(lookup["pointsReversed"], 4);
        assert_eq!(lookup["status"], "partially_refunded");
    }
    assert_eq!(assert_books_balance(&pool).await, 30);
    pool.close().await;
    app.stop().await;
}

#[tokio::test]
async fn nothing_goes_beyond_the_points_limit_and_the_books_still_balance() {
    let app = App::with_workers(1).await;
    let (c, events) = contest(&app, json!({"pointsPerUnit": 1000000})).await;
    let prefix = app.env.amqp_prefix.clone();
    let pool = app.env.pool().await;

    publish_events(
        &prefix,
        &[
            // 10^12 × 10^6 = 10^18 points in one award: beyond 9·10^15.
            events.purchase("HUGE", "whale@example.com", "1000000000000"),
            // 5·10^15, then 5·10^15 more for the same buyer: the second would pass the limit.
            events.purchase("BIG-1", "big@example.com", "5000000000"),
        ],
    )
    .await;
    let huge = app.recorded(&c, "HUGE", None).await;
    assert_eq!(huge["status"], "points_limit");
    assert_eq!(huge["pointsAwarded"], 0);
    assert_eq!(
        app.recorded(&c, "BIG-1", None).await["pointsAwarded"],
        5_000_000_000_000_000_i64
    );
    publish_events(
        &prefix,
        &[events.purchase("BIG-2", "big@example.com", "5000000000")],
    )
    .await;
    let second = app.recorded(&c, "BIG-2", None).await;
    assert_eq!(second["status"], "points_limit");
    assert_eq!(second["pointsAwarded"], 0);
    let big = events.entry("big@example.com");
    assert_eq!(points(&pool, &big).await, 5_000_000_000_000_000);

    // A refund of the limited purchase takes nothing (it gave nothing).
    publish_events(&prefix, &[events.full_refund("BIG-2")]).await;
    wait_for_reversals(&pool, 1).await;
    let refunded = app.recorded(&c, "BIG-2", None).await;
    assert_eq!(refunded["status"], "refunded");
    assert_eq!(refunded["pointsReversed"], 0);

    // Adjustments: up to the limit exactly, then refused with 409; beyond it in one go is 400.
    let path = format!("/api/contests/{}/entries/{big}/points", c.id);
    let up = app
        .admin(
            Method::POST,
            &path,
            Some(json!({"points": 4_000_000_000_000_000_i64, "reason": "to the limit"})),
        )
        .await;
    assert_eq!(up.status, StatusCode::CREATED, "{:?}", up.body);
    assert_eq!(up.data()["points"], 9_000_000_000_000_000_i64);
    let over = app
        .admin(
            Method::POST,
            &path,
            Some(json!({"points": 1, "reason": "one more"})),
        )
        .await;
    assert_eq!(over.status, StatusCode::CONFLICT, "{:?}", over.body);
    assert_eq!(over.error_code(), "points_limit");
    let single = app
        .admin(
            Method::POST,
            &path,
            Some(json!({"points": -9_000_000_000_000_001_i64, "reason": "too much at once"})),
        )
        .await;
    assert_eq!(single.status, StatusCode::BAD_REQUEST);
    assert_eq!(single.error_field(), "points");
    let wrapped = app
        .admin(
            Method::POST,
            &path,
            Some(json!({"points": i64::MAX, "reason": "wrap"})),
        )
        .await;
    assert_eq!(wrapped.status, StatusCode::BAD_REQUEST);
    assert_eq!(points(&pool, &big).await, 9_000_000_000_000_000);

    // The books balance: every point on the board is an award, credit, bonus or adjustment.
    assert_books_balance(&pool).await;
    let board: i64 = app
        .leaderboard(&c)
        .await
        .iter()
        .map(|e| e["points"].as_i64().unwrap())
        .sum();
    let ledger_total: i64 =
        sqlx::query_scalar("SELECT SUM(points)::BIGINT FROM points_ledger WHERE contest_id = $1")
            .bind(&c.id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(board, ledger_total);
    assert_eq!(board, 9_000_000_000_000_000);
    pool.close().await;
    app.stop().await;
}

#[tokio::test]
async fn a_purchase_landing_with_a_new_refund_and_a_held_one_applies_each_once() {
    let mut app = App::receiver_only().await;
    let (c, events) = contest(&app, json!({})).await;
    let prefix = app.env.amqp_prefix.clone();
    let pool = app.env.pool().await;

    // A refund held for a purchase not yet recorded.
    app.add_worker().await;
    publish_events(&prefix, &[events.refund("P-1", "r1", "30")]).await;
    wait_for_count(
        &pool,
        "held refund",
        "SELECT COUNT(*) FROM reversals WHERE status = 'pending'",
        1,
    )
    .await;
    app.workers.pop().unwrap().stop().await.unwrap();

    // The purchase and a second refund wait in the queue, so one batch takes both.
    publish_events(
        &prefix,
        &[
            events.purchase("P-1", "pair@example.com", "100"),
            events.refund("P-1", "r2", "20"),
        ],
    )
    .await;
    let mut config = app.env.worker_config();
    config.pending_sweep_ms = 600_000;
    app.workers.push(RunningWorker::start(config).await);
    wait_for_reversals(&pool, 2).await;
    let lookup = app.recorded(&c, "P-1", None).await;
    assert_eq!(lookup["pointsReversed"], 50);
    assert_eq!(lookup["refundedAmount"], "50");
    assert_eq!(points(&pool, &events.entry("pair@example.com")).await, 50);
    let (_, changes) = ledger(&app, &c.id, &events.entry("pair@example.com")).await;
    assert_eq!(
        changes.len(),
        3,
        "one purchase row and one row per refund: {changes:?}"
    );
    assert_books_balance(&pool).await;
    pool.close().await;
    app.stop().await;
}

#[tokio::test]
async fn a_referral_credit_recorded_after_its_purchase_was_refunded_loses_the_same_share() {
    let app = App::with_workers(1).await;
    let (c, events) = contest(&app, json!({"referral": {"pointsPerUnit": 0.1}})).await;
    let prefix = app.env.amqp_prefix.clone();
    let pool = app.env.pool().await;
    let advocate = app
        .admin(
            Method::POST,
            &format!("/api/contests/{}/entries", c.id),
            Some(json!({"email": "late-advocate@example.com"})),
        )
        .await;
    let code = advocate.data()["referralCode"].as_str().unwrap().to_owned();
    let order = || ReversalTarget::OrderId(shared::ids::OrderId::parse("2001").unwrap());

    // The order reaches the purchase URL first (no code), is half refunded, and only then
    // reaches the referral URL (same source and order: the same purchase, a new credit).
    publish_events(
        &prefix,
        &[events.purchase_from(
            Source::Shopify,
            "2001",
            "buyer2@example.com",
            "100",
            None,
            &[],
        )],
    )
    .await;
    app.recorded(&c, "2001", Some("shopify")).await;
    publish_events(
        &prefix,
        &[events.reversal(
            Source::Shopify,
            order(),
            "refund-1",
            ReversalKind::Refund,
            RefundAmount::Partial {
                amount: common::dec("50"),
                currency: None,
            },
        )],
    )
    .await;
    wait_for_reversals(&pool, 1).await;
    publish_events(
        &prefix,
        &[events.purchase_from(
            Source::Shopify,
            "2001",
            "buyer2@example.com",
            "100",
            None,
            &[&code],
        )],
    )
    .await;
    wait_for_count(&pool, "credit", "SELECT COUNT(*) FROM referral_credits", 1).await;
    let advocate_id = events.entry("late-advocate@example.com");
    testkit::wait::until(
        "credit reconciled",
        std::time::Duration::from_secs(30),
        || async { (points(&pool, &advocate_id).await == 5).then_some(()) },
    )
    .await;
    assert_eq!(points(&pool, &events.entry("buyer2@example.com")).await, 50);
    let (_, changes) = ledger(&app, &c.id, &advocate_id).await;
    assert_eq!(
        changes,
        [("referral".to_owned(), 10), ("refund".to_owned(), -5)]
    );
    assert_books_balance(&pool).await;
    pool.close().await;
    app.stop().await;
}
