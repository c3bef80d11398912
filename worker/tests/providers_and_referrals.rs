//! Provider webhooks and referrals end to end: Shopify, Stripe and Coinflow deliveries award the
//! buyer once, referral codes credit their owner once, signups pay advocate and friend once.

use base64::{engine::general_purpose::STANDARD, Engine};
use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use testkit::{
    app::{Answer, TestContest},
    receiver::auth::hmac::sha256,
    App,
};

const SHOPIFY_SECRET: &str = "shpss_test_secret";
const STRIPE_SECRET: &str = "whsec_test_stripe_secret";
const COINFLOW_KEY: &str = "coinflow-test-key";

async fn referral_contest(app: &App) -> TestContest {
    app.create_contest(json!({
        "referral": {"advocatePoints": 10, "friendPoints": 5, "pointsPerUnit": 0.1},
        "providerSecrets": {"shopify": SHOPIFY_SECRET, "stripe": STRIPE_SECRET, "coinflow": COINFLOW_KEY},
    }))
    .await
}

/// Creates an entry through the admin API and returns its referral code.
async fn entry_code(app: &App, contest: &TestContest, email: &str) -> String {
    let answer = app
        .admin(
            Method::POST,
            &format!("/api/contests/{}/entries", contest.id),
            Some(json!({"email": email})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    answer.data()["referralCode"].as_str().unwrap().to_owned()
}

async fn points_of(app: &App, contest: &TestContest, email: &str) -> i64 {
    app.leaderboard(contest)
        .await
        .iter()
        .find(|row| row["email"] == email)
        .and_then(|row| row["points"].as_i64())
        .unwrap_or(0)
}

fn shopify_order(id: u64, email: &str, total: &str, discount: Option<&str>) -> String {
    let codes: Vec<Value> = discount
        .map(|code| json!({"code": code, "amount": "0.00", "type": "fixed_amount"}))
        .into_iter()
        .collect();
    // Written by hand so the 64-bit id is a JSON integer, as Shopify sends it.
    format!(
        r#"{{"id":{id},"email":"{email}","total_price":"{total}","currency":"USD","financial_status":"paid","test":false,"discount_codes":{}}}"#,
        Value::Array(codes)
    )
}

async fn send_shopify(app: &App, path: &str, body: &str, topic: &str) -> Answer {
    let signature = STANDARD.encode(sha256(SHOPIFY_SECRET.as_bytes(), &[body.as_bytes()]));
    app.post(
        path,
        &[
            ("x-shopify-hmac-sha256", &signature),
            ("x-shopify-topic", topic),
        ],
        body.to_owned(),
    )
    .await
}

async fn send_stripe(app: &App, contest: &TestContest, event: &Value) -> Answer {
    let body = event.to_string();
    let t = Utc::now().timestamp().to_string();
    let mac = hex::encode(sha256(
        STRIPE_SECRET.as_bytes(),
        &[t.as_bytes(), b".", body.as_bytes()],
    ));
    let header = format!("t={t},v1={mac}");
    app.post(
        &format!("/api/webhooks/referral/stripe/{}", contest.id),
        &[("stripe-signature", &header)],
        body,
    )
    .await
}

fn stripe_session(
    event_type: &str,
    id: &str,
    status: &str,
    email: &str,
    cents: i64,
    referral: Option<&str>,
) -> Value {
    json!({
        "id": "evt_1", "object": "event", "type": event_type, "livemode": true, "created": 1_700_000_000,
        "data": {"object": {
            "id": id, "object": "checkout.session", "payment_status": status, "amount_total": cents,
            "currency": "usd", "customer_details": {"email": email},
            "metadata": referral.map(|code| json!({"referralCode": code})).unwrap_or(json!({})),
        }}
    })
}

#[tokio::test]
async fn shopify_referral_awards_the_buyer_and_credits_the_code_owner_once() {
    let app = App::with_workers(1).await;
    let contest = referral_contest(&app).await;
    let code = entry_code(&app, &contest, "advocate@example.com").await;
    let referral_path = format!("/api/webhooks/referral/shopify/{}", contest.id);
    let purchase_path = format!("/api/webhooks/purchase/{}", contest.id);
    let order_id: u64 = 820_982_911_946_154_508; // above 2^53: must survive exactly
    let body = shopify_order(order_id, "buyer@example.com", "199.90", Some(&code));

    let mut entry_ids = Vec::new();
    for path in [&referral_path, &referral_path, &purchase_path] {
        let answer = send_shopify(&app, path, &body, "orders/paid").await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        assert_eq!(answer.data()["status"], "accepted");
        assert_eq!(answer.data()["orderId"], order_id.to_string());
        entry_ids.push(answer.data()["entryId"].clone());
    }
    let recorded = app
        .recorded(&contest, &order_id.to_string(), Some("shopify"))
        .await;
    assert_eq!(recorded["pointsAwarded"], 200);
    // Every answer named, before the worker ran, the entry the lookup shows.
    assert!(recorded["entryId"]
        .as_str()
        .is_some_and(|id| id.starts_with("ent_")));
    assert_eq!(entry_ids, vec![recorded["entryId"].clone(); 3]);
    // Let every copy be processed before counting: a marker after them in the queue.
    app.purchase(
        &contest,
        json!({"email":"marker@example.com","orderId":"M","amount":"1"}),
    )
    .await;
    app.recorded(&contest, "M", None).await;

    assert_eq!(points_of(&app, &contest, "buyer@example.com").await, 200);
    assert_eq!(
        points_of(&app, &contest, "advocate@example.com").await,
        20,
        "199.90 × 0.1 = 19.99 → 20, once"
    );
    assert_eq!(app.purchase_count(&contest).await, 2);

    let other_topic = send_shopify(&app, &referral_path, &body, "orders/create").await;
    assert_eq!(other_topic.status, StatusCode::OK);
    assert_eq!(other_topic.data()["status"], "ignored");
    assert!(other_topic.data()["reason"]
        .as_str()
        .unwrap()
        .contains("orders/create"));

    let forged = app
        .post(
            &referral_path,
            &[
                ("x-shopify-hmac-sha256", "AAAA"),
                ("x-shopify-topic", "orders/paid"),
            ],
            body.clone(),
        )
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test]
async fn self_referral_and_unknown_codes_credit_nobody_but_the_purchase_counts() {
    let app = App::with_workers(1).await;
    let contest = referral_contest(&app).await;
    let code = entry_code(&app, &contest, "self@example.com").await;
    let path = format!("/api/webhooks/referral/shopify/{}", contest.id);
    send_shopify(
        &app,
        &path,
        &shopify_order(1, "self@example.com", "100", Some(&code)),
        "orders/paid",
    )
    .await;
    send_shopify(
        &app,
        &path,
        &shopify_order(2, "new@example.com", "50", Some("NOSUCHCODE")),
        "orders/paid",
    )
    .await;
    app.recorded(&contest, "1", Some("shopify")).await;
    app.recorded(&contest, "2", Some("shopify")).await;
    assert_eq!(points_of(&app, &contest, "self@example.com").await, 100);
    assert_eq!(points_of(&app, &contest, "new@example.com").await, 50);
    assert_eq!(app.total_points(&contest).await, 150);
    app.stop().await;
}

#[tokio::test]
async fn stripe_checkout_awards_paid_and_async_succeeded_sessions_only() {
    let app = App::with_workers(1).await;
    let contest = referral_contest(&app).await;
    let code = entry_code(&app, &contest, "adv@example.com").await;

    let paid = send_stripe(
        &app,
        &contest,
        &stripe_session(
            "checkout.session.completed",
            "cs_paid",
            "paid",
            "a@example.com",
            4999,
            Some(&code),
        ),
    )
    .await;
    assert_eq!(paid.status, StatusCode::OK, "{:?}", paid.body);
    assert_eq!(paid.data()["status"], "accepted");
    let paid_entry = paid.data()["entryId"].clone();

    let unpaid = send_stripe(
        &app,
        &contest,
        &stripe_session(
            "checkout.session.completed",
            "cs_async",
            "unpaid",
            "b@example.com",
            1000,
            None,
        ),
    )
    .await;
    assert_eq!(unpaid.data()["status"], "ignored");
    let succeeded = send_stripe(
        &app,
        &contest,
        &stripe_session(
            "checkout.session.async_payment_succeeded",
            "cs_async",
            "paid",
            "b@example.com",
            1000,
            None,
        ),
    )
    .await;
    assert_eq!(succeeded.data()["status"], "accepted");
    let other = send_stripe(
        &app,
        &contest,
        &stripe_session(
            "payment_intent.created",
            "pi_1",
            "paid",
            "c@example.com",
            1,
            None,
        ),
    )
    .await;
    assert_eq!(other.data()["status"], "ignored");

    let recorded = app.recorded(&contest, "cs_paid", Some("stripe")).await;
    assert_eq!(recorded["pointsAwarded"], 50);
    assert!(paid_entry.is_string());
    assert_eq!(recorded["entryId"], paid_entry);
    assert_eq!(recorded["amount"], "49.99");
    assert_eq!(
        app.recorded(&contest, "cs_async", Some("stripe")).await["pointsAwarded"],
        10
    );
    assert_eq!(
        points_of(&app, &contest, "adv@example.com").await,
        5,
        "49.99 × 0.1 → 5"
    );

    let stale = {
        let body = stripe_session(
            "checkout.session.completed",
            "cs_x",
            "paid",
            "x@example.com",
            1,
            None,
        )
        .to_string();
        let t = (Utc::now().timestamp() - 600).to_string();
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
    };
    assert_eq!(stale.status, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test]
async fn coinflow_settled_events_award_with_the_authorization_key() {
    let app = App::with_workers(1).await;
    let contest = referral_contest(&app).await;
    let path = format!("/api/webhooks/coinflow/{}", contest.id);
    let event = |kind: &str, id: &str| {
        json!({"eventType": kind, "category": "Purchase", "created": "2026-11-23T10:00:00.000Z",
               "data": {"id": id, "subtotal": {"cents": 2550, "currency": "USD"},
                        "webhookInfo": {"email": "coin@example.com"}}})
        .to_string()
    };
    let settled = app
        .post(
            &path,
            &[("authorization", COINFLOW_KEY)],
            event("Settled", "cf_1"),
        )
        .await;
    assert_eq!(settled.status, StatusCode::OK, "{:?}", settled.body);
    assert_eq!(settled.data()["status"], "accepted");
    let other = app
        .post(
            &path,
            &[("authorization", COINFLOW_KEY)],
            event("Card Payment Authorized", "cf_2"),
        )
        .await;
    assert_eq!(other.data()["status"], "ignored");
    let wrong = app
        .post(
            &path,
            &[("authorization", "nope")],
            event("Settled", "cf_3"),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let recorded = app.recorded(&contest, "cf_1", Some("coinflow")).await;
    assert_eq!(recorded["pointsAwarded"], 26);
    assert!(settled.data()["entryId"].is_string());
    assert_eq!(recorded["entryId"], settled.data()["entryId"]);
    assert_eq!(recorded["amount"], "25.50");
    app.stop().await;
}

#[tokio::test]
async fn signup_with_a_code_pays_advocate_and_friend_once() {
    let app = App::with_workers(1).await;
    let contest = referral_contest(&app).await;
    let code = entry_code(&app, &contest, "advocate@example.com").await;
    let path = format!("/api/webhooks/signup/{}", contest.id);
    let body = json!({"email": "Friend@Example.com", "name": "Friend", "referralCode": code.to_lowercase()}).to_string();
    let mut entry_ids = Vec::new();
    for _ in 0..3 {
        let answer = app
            .post(
                &path,
                &[("x-webhook-secret", &contest.secret)],
                body.clone(),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        entry_ids.push(answer.data()["entryId"].clone());
    }
    assert!(entry_ids.windows(2).all(|pair| pair[0] == pair[1]));
    let own = json!({"email": "advocate@example.com", "referralCode": code}).to_string();
    app.post(&path, &[("x-webhook-secret", &contest.secret)], own)
        .await;
    app.purchase(
        &contest,
        json!({"email":"marker@example.com","orderId":"M","amount":"1"}),
    )
    .await;
    app.recorded(&contest, "M", None).await;

    assert_eq!(points_of(&app, &contest, "advocate@example.com").await, 10);
    assert_eq!(points_of(&app, &contest, "friend@example.com").await, 5);
    let entry = app
        .admin(
            Method::GET,
            &format!(
                "/api/contests/{}/entries/{}",
                contest.id,
                entry_ids[0].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(entry.data()["name"], "Friend");
    assert!(entry.data()["referredBy"].is_string());

    let invalid = app
        .post(
            &path,
            &[("x-webhook-secret", &contest.secret)],
            json!({"email": "nope"}).to_string(),
        )
        .await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    assert_eq!(invalid.error_field(), "email");
    app.stop().await;
}

#[tokio::test]
async fn a_store_promotion_code_does_not_hide_the_referral_link() {
    let app = App::with_workers(1).await;
    let contest = referral_contest(&app).await;
    let code = entry_code(&app, &contest, "linker@example.com").await;
    let body = format!(
        r#"{{"id":77,"email":"promo@example.com","total_price":"100.00","currency":"USD","financial_status":"paid","discount_codes":[{{"code":"SUMMER10"}}],"landing_site":"/?utm_source=ig&ref={code}"}}"#
    );
    let path = format!("/api/webhooks/referral/shopify/{}", contest.id);
    let answer = send_shopify(&app, &path, &body, "orders/paid").await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    app.recorded(&contest, "77", Some("shopify")).await;
    assert_eq!(
        points_of(&app, &contest, "linker@example.com").await,
        10,
        "100 × 0.1 via the ref= link"
    );
    app.stop().await;
}
