//! Provider refunds and disputes end to end: signed Shopify, Stripe and Coinflow deliveries over
//! HTTP, through the receiver and two workers, checked step by step with the lookup (status,
//! `refundedAmount`, `pointsReversed`), the entries' points and their ledgers. The expected
//! figures are worked out by hand in the comments from the contract's formulas.

use std::time::Duration;

use base64::{engine::general_purpose::STANDARD, Engine};
use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use shared::amqp::Topology;
use testkit::{
    app::{Answer, TestContest},
    broker,
    receiver::auth::hmac::sha256,
    sender::wait_for_drain,
    wait, App,
};

const SHOPIFY_SECRET: &str = "shpss_refund_test_secret";
const STRIPE_SECRET: &str = "whsec_refund_test_stripe_secret";
const COINFLOW_KEY: &str = "coinflow-refund-test-key";

/// A contest with every provider's secret and a referral reward of 0.1 point per USD.
async fn provider_contest(app: &App) -> TestContest {
    app.create_contest(json!({
        "referral": {"pointsPerUnit": 0.1},
        "providerSecrets": {"shopify": SHOPIFY_SECRET, "stripe": STRIPE_SECRET, "coinflow": COINFLOW_KEY},
    }))
    .await
}

fn assert_accepted(answer: &Answer) {
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(answer.data()["status"], "accepted", "{:?}", answer.body);
}

/// What the lookup shows of a purchase: `(status, refundedAmount, pointsAwarded,
/// pointsReversed)`.
type Shown = (String, String, i64, i64);

fn shown(status: &str, refunded: &str, awarded: i64, reversed: i64) -> Shown {
    (status.to_owned(), refunded.to_owned(), awarded, reversed)
}

/// Waits until the lookup of `order` (from `source`) shows `want`, and returns its data.
async fn lookup_until(
    app: &App,
    contest: &TestContest,
    order: &str,
    source: &str,
    want: &Shown,
) -> Value {
    let mut last = Value::Null;
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let answer = app.lookup(contest, order, Some(source)).await;
            if answer.status == StatusCode::OK {
                let data = answer.data().clone();
                let now: Shown = (
                    data["status"].as_str().unwrap_or("").to_owned(),
                    data["refundedAmount"].as_str().unwrap_or("").to_owned(),
                    data["pointsAwarded"].as_i64().unwrap_or(-1),
                    data["pointsReversed"].as_i64().unwrap_or(-1),
                );
                if &now == want {
                    return data;
                }
                last = data;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("{source} {order}: expected {want:?}, the lookup shows {last}"))
}

/// An entry's points and ledger through the admin API: `(points, [(kind, points)])`, oldest
/// first. Asserts the changes sum to the points.
async fn ledger(app: &App, contest: &TestContest, entry_id: &str) -> (i64, Vec<(String, i64)>) {
    let answer = app
        .admin(
            Method::GET,
            &format!("/api/contests/{}/entries/{entry_id}/ledger", contest.id),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    let points = answer.data()["points"].as_i64().expect("points");
    let changes: Vec<(String, i64)> = answer.data()["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap_or("").to_owned(),
                c["points"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        changes.iter().map(|(_, p)| p).sum::<i64>(),
        points,
        "the ledger sums to the entry's points: {changes:?}"
    );
    (points, changes)
}

fn changes(rows: &[(&str, i64)]) -> Vec<(String, i64)> {
    rows.iter().map(|(k, p)| (k.to_string(), *p)).collect()
}

/// Waits until the reversal `reversal_id` is recorded by a worker with `status`.
async fn reversal_recorded(app: &App, reversal_id: &str, status: &str) {
    let pool = app.env.pool().await;
    wait::until("reversal recorded", Duration::from_secs(30), || async {
        let found: Option<String> =
            sqlx::query_scalar("SELECT status FROM reversals WHERE id = $1")
                .bind(reversal_id)
                .fetch_optional(&pool)
                .await
                .expect("read the reversal");
        (found.as_deref() == Some(status)).then_some(())
    })
    .await;
    pool.close().await;
}

/// Waits until every event sent so far is processed: the events queue has nothing ready and
/// nothing unacknowledged (so a duplicate still in flight cannot change the figures later).
async fn drained(app: &App) {
    let queue = Topology::new(&app.env.amqp_prefix).queue;
    wait_for_drain(Duration::from_secs(30), || broker::queue_counts(&queue)).await;
}

/// The entry id the lookup shows for a purchase.
fn entry_of(data: &Value) -> String {
    data["entryId"].as_str().expect("entryId").to_owned()
}

/// Points on the leaderboard of `email` (0 when absent).
async fn board_points(app: &App, contest: &TestContest, email: &str) -> i64 {
    app.leaderboard(contest)
        .await
        .iter()
        .find(|row| row["email"] == email)
        .and_then(|row| row["points"].as_i64())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Shopify

async fn send_shopify(
    app: &App,
    contest: &TestContest,
    url: &str,
    body: &str,
    topic: &str,
) -> Answer {
    let signature = STANDARD.encode(sha256(SHOPIFY_SECRET.as_bytes(), &[body.as_bytes()]));
    app.post(
        &format!("/api/webhooks/{url}/{}", contest.id),
        &[
            ("x-shopify-hmac-sha256", &signature),
            ("x-shopify-topic", topic),
        ],
        body.to_owned(),
    )
    .await
}

/// An `orders/paid` order (ids written as JSON integers, as Shopify sends them).
fn shopify_order(id: u64, email: &str, total: &str, discount: Option<&str>) -> String {
    let codes: Vec<Value> = discount
        .map(|code| json!({"code": code, "amount": "0.00", "type": "fixed_amount"}))
        .into_iter()
        .collect();
    format!(
        r#"{{"id":{id},"email":"{email}","total_price":"{total}","currency":"USD","financial_status":"paid","test":false,"discount_codes":{}}}"#,
        Value::Array(codes)
    )
}

/// A `refunds/create` refund of `order` with one transaction per `(amount, status)`.
fn shopify_refund(refund: u64, order: u64, transactions: &[(&str, &str)]) -> String {
    let transactions: Vec<Value> = transactions
        .iter()
        .map(|(amount, status)| {
            json!({"kind": "refund", "status": status, "amount": amount, "currency": "USD",
                   "gateway": "shopify_payments", "test": false})
        })
        .collect();
    format!(
        r#"{{"id":{refund},"order_id":{order},"note":"damaged","refund_line_items":[],"transactions":{}}}"#,
        Value::Array(transactions)
    )
}

#[tokio::test]
async fn shopify_paid_refund_and_cancellation_take_back_buyer_and_referral_points() {
    let app = App::with_workers(2).await;
    let contest = provider_contest(&app).await;
    let code = app
        .admin(
            Method::POST,
            &format!("/api/contests/{}/entries", contest.id),
            Some(json!({"email": "advocate@example.com"})),
        )
        .await
        .data()["referralCode"]
        .as_str()
        .expect("referral code")
        .to_owned();
    let order: u64 = 820_982_911_946_154_508;
    let order_id = order.to_string();

    // 199.90 → 200 points; the advocate's credit: 199.90 × 0.1 = 19.99 → 20.
    let paid = shopify_order(order, "buyer@example.com", "199.90", Some(&code));
    assert_accepted(&send_shopify(&app, &contest, "referral/shopify", &paid, "orders/paid").await);
    let data = lookup_until(
        &app,
        &contest,
        &order_id,
        "shopify",
        &shown("awarded", "0", 200, 0),
    )
    .await;
    let buyer = entry_of(&data);
    assert_eq!(
        board_points(&app, &contest, "advocate@example.com").await,
        20
    );

    // A partial refund: 50.00 succeeded (the failed 20.00 is not money back), sent to both
    // Shopify URLs (one refund). 200 × 50 / 199.90 = 50.03 → 50 back; the credit loses
    // 20 × 50 / 199.90 = 5.003 → 5.
    let refund = shopify_refund(
        1_027_188_934_001,
        order,
        &[("50.00", "success"), ("20.00", "failure")],
    );
    for url in ["referral/shopify", "purchase", "referral/shopify"] {
        assert_accepted(&send_shopify(&app, &contest, url, &refund, "refunds/create").await);
    }
    drained(&app).await;
    lookup_until(
        &app,
        &contest,
        &order_id,
        "shopify",
        &shown("partially_refunded", "50.00", 200, 50),
    )
    .await;
    wait::until("advocate clawed back", Duration::from_secs(30), || async {
        (board_points(&app, &contest, "advocate@example.com").await == 15).then_some(())
    })
    .await;

    // The order is cancelled: a full refund. Refunded total = the amount; everything back.
    let cancelled = format!(r#"{{"id":{order},"cancel_reason":"customer","test":false}}"#);
    let answer = send_shopify(&app, &contest, "purchase", &cancelled, "orders/cancelled").await;
    assert_accepted(&answer);
    assert_eq!(answer.data()["refundId"], "cancelled");
    lookup_until(
        &app,
        &contest,
        &order_id,
        "shopify",
        &shown("refunded", "199.90", 200, 200),
    )
    .await;
    wait::until(
        "advocate credit all back",
        Duration::from_secs(30),
        || async {
            (board_points(&app, &contest, "advocate@example.com").await == 0).then_some(())
        },
    )
    .await;
    assert_eq!(
        ledger(&app, &contest, &buyer).await,
        (
            0,
            changes(&[("purchase", 200), ("refund", -50), ("refund", -150)])
        )
    );
    let advocate = app
        .leaderboard(&contest)
        .await
        .iter()
        .find(|row| row["email"] == "advocate@example.com")
        .and_then(|row| row["entryId"].as_str().map(str::to_owned))
        .expect("advocate on the board");
    assert_eq!(
        ledger(&app, &contest, &advocate).await,
        (
            0,
            changes(&[("referral", 20), ("refund", -5), ("refund", -15)])
        )
    );

    // A refund that arrives before its order: held, then applied once when the order lands.
    // 80.00 of 120.00: 120 × 80 / 120 = 80 back.
    let early = 930_000_000_000_000_001_u64;
    let answer = send_shopify(
        &app,
        &contest,
        "referral/shopify",
        &shopify_refund(1_027_188_934_002, early, &[("80.00", "success")]),
        "refunds/create",
    )
    .await;
    assert_accepted(&answer);
    reversal_recorded(
        &app,
        answer.data()["reversalId"].as_str().unwrap(),
        "pending",
    )
    .await;
    let paid = shopify_order(early, "early@example.com", "120.00", None);
    assert_accepted(&send_shopify(&app, &contest, "purchase", &paid, "orders/paid").await);
    let data = lookup_until(
        &app,
        &contest,
        &early.to_string(),
        "shopify",
        &shown("partially_refunded", "80.00", 120, 80),
    )
    .await;
    assert_eq!(
        ledger(&app, &contest, &entry_of(&data)).await,
        (40, changes(&[("purchase", 120), ("refund", -80)]))
    );
    assert_eq!(board_points(&app, &contest, "buyer@example.com").await, 0);
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Stripe

async fn send_stripe(app: &App, contest: &TestContest, event: &Value) -> Answer {
    let body = event.to_string();
    let t = Utc::now().timestamp().to_string();
    let mac = hex::encode(sha256(
        STRIPE_SECRET.as_bytes(),
        &[t.as_bytes(), b".", body.as_bytes()],
    ));
    app.post(
        &format!("/api/webhooks/referral/stripe/{}", contest.id),
        &[("stripe-signature", &format!("t={t},v1={mac}"))],
        body,
    )
    .await
}

fn stripe_event(id: &str, event_type: &str, object: Value) -> Value {
    json!({"id": id, "object": "event", "type": event_type, "livemode": true,
           "created": 1_719_486_400, "data": {"object": object}})
}

fn stripe_checkout(session: &str, intent: &str, email: &str, cents: i64) -> Value {
    stripe_event(
        &format!("evt_{session}"),
        "checkout.session.completed",
        json!({"id": session, "object": "checkout.session", "payment_status": "paid",
               "amount_total": cents, "currency": "usd", "payment_intent": intent,
               "customer_details": {"email": email}}),
    )
}

fn stripe_refunded(charge: &str, intent: &str, cents: i64, refunded: i64) -> Value {
    stripe_event(
        &format!("evt_{charge}_{refunded}"),
        "charge.refunded",
        json!({"id": charge, "object": "charge", "amount": cents, "amount_refunded": refunded,
               "currency": "usd", "payment_intent": intent, "refunded": refunded == cents}),
    )
}

fn stripe_dispute(
    event_type: &str,
    dispute: &str,
    charge: &str,
    intent: &str,
    status: &str,
) -> Value {
    stripe_event(
        &format!("evt_{dispute}_{status}"),
        event_type,
        json!({"id": dispute, "object": "dispute", "amount": 4999, "charge": charge,
               "currency": "usd", "payment_intent": intent, "reason": "fraudulent",
               "status": status}),
    )
}

#[tokio::test]
async fn stripe_cumulative_refunds_replays_and_a_won_dispute_follow_the_money() {
    let app = App::with_workers(2).await;
    let contest = provider_contest(&app).await;
    let (session, intent, charge) = ("cs_live_r1", "pi_live_r1", "ch_live_r1");

    // 49.99 → 50 points.
    assert_accepted(
        &send_stripe(
            &app,
            &contest,
            &stripe_checkout(session, intent, "stripe@example.com", 4999),
        )
        .await,
    );
    let data = lookup_until(
        &app,
        &contest,
        session,
        "stripe",
        &shown("awarded", "0", 50, 0),
    )
    .await;
    let buyer = entry_of(&data);

    // charge.refunded with 10.00 refunded so far: 50 × 10 / 49.99 = 10.002 → 10.
    let first = stripe_refunded(charge, intent, 4999, 1000);
    let answer = send_stripe(&app, &contest, &first).await;
    assert_accepted(&answer);
    assert_eq!(answer.data()["paymentIntent"], intent);
    lookup_until(
        &app,
        &contest,
        session,
        "stripe",
        &shown("partially_refunded", "10.00", 50, 10),
    )
    .await;
    // A second refund: 25.00 refunded in all (cumulative): 50 × 25 / 49.99 = 25.005 → 25.
    assert_accepted(
        &send_stripe(&app, &contest, &stripe_refunded(charge, intent, 4999, 2500)).await,
    );
    lookup_until(
        &app,
        &contest,
        session,
        "stripe",
        &shown("partially_refunded", "25.00", 50, 25),
    )
    .await;
    // The first event replayed late: an older total, nothing changes.
    assert_accepted(&send_stripe(&app, &contest, &first).await);
    drained(&app).await;
    lookup_until(
        &app,
        &contest,
        session,
        "stripe",
        &shown("partially_refunded", "25.00", 50, 25),
    )
    .await;
    // The dispute opens: everything still held goes (chargeback); won: exactly that comes back.
    assert_accepted(
        &send_stripe(
            &app,
            &contest,
            &stripe_dispute(
                "charge.dispute.created",
                "dp_r1",
                charge,
                intent,
                "needs_response",
            ),
        )
        .await,
    );
    lookup_until(
        &app,
        &contest,
        session,
        "stripe",
        &shown("reversed", "25.00", 50, 50),
    )
    .await;
    let won = send_stripe(
        &app,
        &contest,
        &stripe_dispute("charge.dispute.closed", "dp_r1", charge, intent, "won"),
    )
    .await;
    assert_accepted(&won);
    assert_eq!(won.data()["kind"], "chargeback_won");
    lookup_until(
        &app,
        &contest,
        session,
        "stripe",
        &shown("partially_refunded", "25.00", 50, 25),
    )
    .await;
    // The ledger shows each change once.
    assert_eq!(
        ledger(&app, &contest, &buyer).await,
        (
            25,
            changes(&[
                ("purchase", 50),
                ("refund", -10),
                ("refund", -15),
                ("chargeback", -25),
                ("chargeback", 25),
            ])
        )
    );
    assert_eq!(board_points(&app, &contest, "stripe@example.com").await, 25);

    // A charge refunded before its Checkout Session lands: held by payment intent, applied once.
    // 19.99 refunded of 19.99: everything back.
    let answer = send_stripe(
        &app,
        &contest,
        &stripe_refunded("ch_live_r2", "pi_live_r2", 1999, 1999),
    )
    .await;
    assert_accepted(&answer);
    reversal_recorded(
        &app,
        answer.data()["reversalId"].as_str().unwrap(),
        "pending",
    )
    .await;
    assert_accepted(
        &send_stripe(
            &app,
            &contest,
            &stripe_checkout("cs_live_r2", "pi_live_r2", "late@example.com", 1999),
        )
        .await,
    );
    let data = lookup_until(
        &app,
        &contest,
        "cs_live_r2",
        "stripe",
        &shown("refunded", "19.99", 20, 20),
    )
    .await;
    assert_eq!(
        ledger(&app, &contest, &entry_of(&data)).await,
        (0, changes(&[("purchase", 20), ("refund", -20)]))
    );
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Coinflow

async fn send_coinflow(
    app: &App,
    contest: &TestContest,
    event_type: &str,
    id: &str,
    email: &str,
    cents: i64,
) -> Answer {
    let body = json!({"eventType": event_type, "category": "Purchase",
                      "created": "2026-11-23T10:00:00.000Z",
                      "data": {"id": id, "subtotal": {"cents": cents, "currency": "USD"},
                               "webhookInfo": {"email": email}}})
    .to_string();
    app.post(
        &format!("/api/webhooks/coinflow/{}", contest.id),
        &[("authorization", COINFLOW_KEY)],
        body,
    )
    .await
}

#[tokio::test]
async fn coinflow_chargeback_won_then_refund_and_a_refund_before_its_settlement() {
    let app = App::with_workers(2).await;
    let contest = provider_contest(&app).await;
    let (id, email) = ("cf_pay_r1", "coin@example.com");

    // 25.50 → 26 points.
    assert_accepted(&send_coinflow(&app, &contest, "Settled", id, email, 2550).await);
    let data = lookup_until(
        &app,
        &contest,
        id,
        "coinflow",
        &shown("awarded", "0", 26, 0),
    )
    .await;
    let buyer = entry_of(&data);
    assert_accepted(
        &send_coinflow(
            &app,
            &contest,
            "Card Payment Chargeback Opened",
            id,
            email,
            2550,
        )
        .await,
    );
    lookup_until(
        &app,
        &contest,
        id,
        "coinflow",
        &shown("reversed", "0", 26, 26),
    )
    .await;
    assert_accepted(
        &send_coinflow(
            &app,
            &contest,
            "Card Payment Chargeback Won",
            id,
            email,
            2550,
        )
        .await,
    );
    lookup_until(
        &app,
        &contest,
        id,
        "coinflow",
        &shown("awarded", "0", 26, 0),
    )
    .await;
    // A refund of the whole payment, twice (Coinflow retries): counted once.
    for _ in 0..2 {
        assert_accepted(&send_coinflow(&app, &contest, "Refund", id, email, 2550).await);
    }
    drained(&app).await;
    lookup_until(
        &app,
        &contest,
        id,
        "coinflow",
        &shown("refunded", "25.50", 26, 26),
    )
    .await;
    assert_eq!(
        ledger(&app, &contest, &buyer).await,
        (
            0,
            changes(&[
                ("purchase", 26),
                ("chargeback", -26),
                ("chargeback", 26),
                ("refund", -26),
            ])
        )
    );

    // A refund delivered before the settlement it refunds: held, applied once on settlement.
    let answer = send_coinflow(
        &app,
        &contest,
        "Refund",
        "cf_pay_r2",
        "early@example.com",
        999,
    )
    .await;
    assert_accepted(&answer);
    reversal_recorded(
        &app,
        answer.data()["reversalId"].as_str().unwrap(),
        "pending",
    )
    .await;
    assert_accepted(
        &send_coinflow(
            &app,
            &contest,
            "Settled",
            "cf_pay_r2",
            "early@example.com",
            999,
        )
        .await,
    );
    let data = lookup_until(
        &app,
        &contest,
        "cf_pay_r2",
        "coinflow",
        &shown("refunded", "9.99", 10, 10),
    )
    .await;
    assert_eq!(
        ledger(&app, &contest, &entry_of(&data)).await,
        (0, changes(&[("purchase", 10), ("refund", -10)]))
    );
    assert_eq!(app.total_points(&contest).await, 0);
    app.stop().await;
}
