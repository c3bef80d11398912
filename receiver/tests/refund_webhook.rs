//! Refunds, cancellations and chargebacks through HTTP against a real receiver and RabbitMQ: the
//! generic refund webhook (every credential, every invalid field, the contract's status codes)
//! and each provider's reversal events, read back from the test's own events queue (no worker
//! runs, so every accepted event waits there) to check that exactly the expected
//! `ReversalEvent` was published, and nothing for what is refused or ignored.

use std::str::FromStr;

use base64::{engine::general_purpose::STANDARD, Engine};
use chrono::Utc;
use reqwest::{Method, StatusCode};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use shared::{
    event::{Event, RefundAmount, ReversalEvent, ReversalKind, ReversalTarget},
    ids::{ContestId, OrderId, ReversalId, Source},
    money::Currency,
};
use testkit::{
    app::{Answer, TestContest},
    broker::{self, QueuedEvent},
    receiver::auth::{hmac::sha256, standard_webhooks},
    App,
};

const SHOPIFY_SECRET: &str = "shpss_refund_test_secret";
const STRIPE_SECRET: &str = "whsec_refund_test_stripe_secret";
const COINFLOW_KEY: &str = "coinflow-refund-test-key";

const SHOPIFY_ORDER: &str = "820982911946154508";
const INTENT: &str = "pi_3PVnF0KZ0dZRqLEK1a2b3c4d";
const CHARGE: &str = "ch_3PVnF0KZ0dZRqLEK1q2w3e4r";
const DISPUTE: &str = "dp_1PWqZ2KZ0dZRqLEKr9s8t7u6";
const COINFLOW_PAYMENT: &str = "0a4f9d6e-3b1c-4e2a-9f8d-7c6b5a493827";

fn refund_path(contest: &str) -> String {
    format!("/api/webhooks/refund/{contest}")
}

async fn contest_with_providers(app: &App) -> TestContest {
    app.create_contest(json!({
        "providerSecrets": {"shopify": SHOPIFY_SECRET, "stripe": STRIPE_SECRET, "coinflow": COINFLOW_KEY},
    }))
    .await
}

/// POSTs a generic refund with the contest's secret in `X-Webhook-Secret`.
async fn refund(app: &App, contest: &TestContest, body: Value) -> Answer {
    app.post(
        &refund_path(&contest.id),
        &[("x-webhook-secret", contest.secret.as_str())],
        body.to_string(),
    )
    .await
}

/// The events waiting in the test's queue, which must be exactly `expected` reversals.
async fn reversals(app: &App, expected: usize) -> Vec<ReversalEvent> {
    let taken = broker::take_events(&app.env.amqp_prefix, expected).await;
    assert_eq!(taken.len(), expected, "events on the queue: {taken:#?}");
    taken.into_iter().map(reversal).collect()
}

/// The reversal a queued message carries, checking its AMQP properties name it.
fn reversal(queued: QueuedEvent) -> ReversalEvent {
    assert_eq!(queued.kind.as_deref(), Some("reversal"), "{queued:?}");
    match queued.envelope.event {
        Event::Reversal(reversal) => {
            assert_eq!(
                queued.message_id.as_deref(),
                Some(reversal.reversal_id.as_str())
            );
            reversal
        }
        other => panic!("expected a reversal, got {other:?}"),
    }
}

/// Asserts that nothing was published: the queue is empty (every answer came after the broker's
/// confirm, so anything published would be there by now).
async fn nothing_published(app: &App) {
    let taken = broker::take_events(&app.env.amqp_prefix, 0).await;
    assert!(taken.is_empty(), "unexpected events: {taken:#?}");
}

/// The reversal event the receiver must publish for these parts (the id derived independently
/// of the handler, from the dedupe key); `received_at` is checked by [`assert_reversal`].
fn expected(
    contest: &TestContest,
    source: Source,
    target: ReversalTarget,
    refund_id: &str,
    kind: ReversalKind,
    amount: RefundAmount,
    reason: Option<&str>,
) -> ReversalEvent {
    let contest_id = ContestId::parse(&contest.id).unwrap();
    ReversalEvent {
        reversal_id: ReversalId::derive(
            &contest_id,
            source,
            &target.key(),
            refund_id,
            kind.as_str(),
        ),
        contest_id,
        source,
        target,
        refund_id: refund_id.to_owned(),
        kind,
        amount,
        reason: reason.map(str::to_owned),
        received_at: chrono::DateTime::UNIX_EPOCH,
    }
}

/// Asserts that `actual` is `want`, received within the last minute.
fn assert_reversal(actual: &ReversalEvent, want: &ReversalEvent) {
    let age = Utc::now() - actual.received_at;
    assert!(
        (chrono::Duration::zero()..chrono::Duration::minutes(1)).contains(&age),
        "received_at {} is not now",
        actual.received_at
    );
    let want = ReversalEvent {
        received_at: actual.received_at,
        ..want.clone()
    };
    assert_eq!(actual, &want);
}

fn order(id: &str) -> ReversalTarget {
    ReversalTarget::OrderId(OrderId::parse(id).unwrap())
}

fn decimal(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The generic refund webhook.

#[tokio::test]
async fn a_full_refund_is_accepted_with_every_credential_and_published_once_per_request() {
    let app = App::receiver_only().await;
    let contest = app.create_contest(json!({})).await;
    let url = refund_path(&contest.id);
    let body = json!({"orderId": "A-1"}).to_string();
    let bearer = format!("Bearer {}", contest.secret);
    let now = Utc::now().timestamp();
    let signature =
        standard_webhooks::sign(&contest.secret, "msg_r1", now, body.as_bytes()).unwrap();
    let stamp = now.to_string();
    let with_secret = json!({"orderId": "A-1", "secret": contest.secret}).to_string();

    let answers = [
        app.post(&url, &[("x-webhook-secret", &contest.secret)], body.clone())
            .await,
        app.post(&url, &[("authorization", &bearer)], body.clone())
            .await,
        app.post(&url, &[], with_secret).await,
        app.post(
            &url,
            &[
                ("webhook-id", "msg_r1"),
                ("webhook-timestamp", &stamp),
                ("webhook-signature", &signature),
            ],
            body.clone(),
        )
        .await,
    ];
    let published = reversals(&app, answers.len()).await;
    let want = expected(
        &contest,
        Source::Api,
        order("A-1"),
        "full",
        ReversalKind::Refund,
        RefundAmount::Full,
        None,
    );
    for (answer, event) in answers.iter().zip(&published) {
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        assert_eq!(
            answer.data(),
            &json!({
                "reversalId": want.reversal_id, "orderId": "A-1", "refundId": "full",
                "kind": "refund", "status": "accepted",
            })
        );
        // A repeat is published again (the worker dedupes) and carries the same id.
        assert_reversal(event, &want);
    }
    app.stop().await;
}

#[tokio::test]
async fn a_partial_refund_carries_its_exact_amount_currency_and_reason() {
    let app = App::receiver_only().await;
    let contest = app.create_contest(json!({})).await;
    // Raw text, so the number is sent exactly as written (trailing zero included).
    let body = r#"{"orderId":1001,"refundId":"R-1","amount":39.990,"currency":"eur","reason":"damaged box","unknownField":true}"#;
    let answer = app
        .post(
            &refund_path(&contest.id),
            &[("x-webhook-secret", &contest.secret)],
            body,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(answer.data()["orderId"], "1001");
    assert_eq!(answer.data()["refundId"], "R-1");
    let published = reversals(&app, 1).await;
    assert_reversal(
        &published[0],
        &expected(
            &contest,
            Source::Api,
            order("1001"),
            "R-1",
            ReversalKind::Refund,
            RefundAmount::Partial {
                // The digits as sent: never through a float.
                amount: decimal("39.990"),
                currency: Some(Currency::parse("EUR").unwrap()),
            },
            Some("damaged box"),
        ),
    );
    match &published[0].amount {
        RefundAmount::Partial { amount, .. } => assert_eq!(amount.to_string(), "39.990"),
        other => panic!("expected a partial refund, got {other:?}"),
    }
    app.stop().await;
}

#[tokio::test]
async fn two_partial_refunds_of_the_same_amount_are_two_reversals_and_a_repeat_is_the_same() {
    let app = App::receiver_only().await;
    let contest = app.create_contest(json!({})).await;
    for refund_id in ["R-1", "R-2", "R-1"] {
        let answer = refund(
            &app,
            &contest,
            json!({"orderId": "A-1", "refundId": refund_id, "amount": "10.00"}),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    }
    let ids: Vec<_> = reversals(&app, 3)
        .await
        .into_iter()
        .map(|event| event.reversal_id)
        .collect();
    assert_ne!(ids[0], ids[1]);
    assert_eq!(ids[0], ids[2]);
    app.stop().await;
}

#[tokio::test]
async fn reasons_chargeback_and_chargeback_won_publish_those_kinds() {
    let app = App::receiver_only().await;
    let contest = app.create_contest(json!({})).await;
    let opened = refund(
        &app,
        &contest,
        json!({"orderId": "A-1", "reason": "chargeback"}),
    )
    .await;
    let won = refund(
        &app,
        &contest,
        json!({"orderId": "A-1", "reason": "chargeback_won"}),
    )
    .await;
    assert_eq!(opened.status, StatusCode::OK, "{:?}", opened.body);
    assert_eq!(opened.data()["kind"], "chargeback");
    assert_eq!(won.data()["kind"], "chargeback_won");
    let published = reversals(&app, 2).await;
    let kinds: Vec<_> = published.iter().map(|event| event.kind).collect();
    assert_eq!(
        kinds,
        [ReversalKind::Chargeback, ReversalKind::ChargebackWon]
    );
    for event in &published {
        // The won chargeback names the chargeback it reinstates (`full`, none named).
        assert_eq!(event.refund_id, "full");
        assert_eq!(event.amount, RefundAmount::Full);
        assert_eq!(event.target, order("A-1"));
    }
    assert_ne!(published[0].reversal_id, published[1].reversal_id);
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_order_is_accepted_because_it_may_still_arrive() {
    let app = App::receiver_only().await;
    let contest = app.create_contest(json!({})).await;
    // Nothing was ever sold: the receiver does not look (no database on the request path).
    let answer = refund(&app, &contest, json!({"orderId": "never-sold"})).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(answer.data()["status"], "accepted");
    let published = reversals(&app, 1).await;
    assert_eq!(published[0].target, order("never-sold"));
    app.stop().await;
}

#[tokio::test]
async fn wrong_or_missing_credentials_are_401_before_the_body_is_looked_at() {
    let (app, contest) = contest_app().await;
    let url = refund_path(&contest.id);
    let valid = json!({"orderId": "A-1"}).to_string();
    let basic = format!("Basic {}", contest.secret);
    let shopify = STANDARD.encode(sha256(SHOPIFY_SECRET.as_bytes(), &[valid.as_bytes()]));

    type Headers<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(&str, Headers, String)> = vec![
        ("no credential", vec![], valid.clone()),
        (
            "wrong header secret",
            vec![("x-webhook-secret", "whsec_wrong")],
            valid.clone(),
        ),
        (
            "wrong bearer",
            vec![("authorization", "Bearer nope")],
            valid.clone(),
        ),
        (
            "other auth scheme",
            vec![("authorization", &basic)],
            valid.clone(),
        ),
        (
            "wrong body secret",
            vec![],
            json!({"orderId": "A-1", "secret": "nope"}).to_string(),
        ),
        (
            "wrong header, right body secret",
            vec![("x-webhook-secret", "nope")],
            json!({"orderId": "A-1", "secret": contest.secret}).to_string(),
        ),
        (
            "wrong secret, invalid body",
            vec![("x-webhook-secret", "nope")],
            json!({"amount": "-1"}).to_string(),
        ),
        ("malformed body, no header", vec![], "{not json".into()),
        // A genuine Shopify signature: Shopify refunds go to the Shopify URLs, not here.
        (
            "Shopify signature",
            vec![
                ("x-shopify-hmac-sha256", &shopify),
                ("x-shopify-topic", "refunds/create"),
            ],
            valid.clone(),
        ),
        (
            "stale Standard Webhooks signature",
            vec![
                ("webhook-id", "msg_old"),
                ("webhook-timestamp", "1700000000"),
                ("webhook-signature", "v1,AAAA"),
            ],
            valid.clone(),
        ),
    ];
    for (name, headers, body) in cases {
        let answer = app.post(&url, &headers, body).await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{name}: {:?}",
            answer.body
        );
        assert_eq!(answer.error_code(), "unauthorized", "{name}");
    }
    nothing_published(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn every_invalid_field_is_a_400_naming_it_and_publishes_nothing() {
    let app = App::receiver_only().await;
    let contest = app.create_contest(json!({})).await;
    let cases = [
        (json!({"refundId": "R"}), "orderId"),
        (json!({"orderId": ""}), "orderId"),
        (json!({"orderId": "x".repeat(256)}), "orderId"),
        // A partial refund must be named: two of the same amount are two refunds.
        (json!({"orderId": "A-1", "amount": "10.00"}), "refundId"),
        (json!({"orderId": "A-1", "amount": 10}), "refundId"),
        (
            json!({"orderId": "A-1", "refundId": "R", "amount": "-5"}),
            "amount",
        ),
        (
            json!({"orderId": "A-1", "refundId": "R", "amount": -5}),
            "amount",
        ),
        (
            json!({"orderId": "A-1", "refundId": "R", "amount": "0"}),
            "amount",
        ),
        (
            json!({"orderId": "A-1", "refundId": "R", "amount": 0}),
            "amount",
        ),
        (
            json!({"orderId": "A-1", "refundId": "R", "amount": "ten"}),
            "amount",
        ),
        (
            json!({"orderId": "A-1", "refundId": "R", "amount": "12abc"}),
            "amount",
        ),
        (
            json!({"orderId": "A-1", "refundId": "R", "amount": true}),
            "amount",
        ),
        // More significant digits than are kept exactly: refused, never rounded.
        (
            json!({"orderId": "A-1", "refundId": "R", "amount": "1.00000000000000000000000000001"}),
            "amount",
        ),
        (
            json!({"orderId": "A-1", "refundId": "R", "amount": "1000000000000.01"}),
            "amount",
        ),
        // Without a refund id too: the amount itself is what is wrong.
        (json!({"orderId": "A-1", "amount": "-1"}), "amount"),
        (
            json!({"orderId": "A-1", "refundId": "R", "amount": "1", "currency": "XYZ"}),
            "currency",
        ),
        (json!({"orderId": "A-1", "currency": 978}), "currency"),
        (json!({"orderId": "A-1", "refundId": ""}), "refundId"),
        (json!({"orderId": "A-1", "refundId": {"id": 1}}), "refundId"),
        (
            json!({"orderId": "A-1", "reason": "bad\u{7}bell"}),
            "reason",
        ),
        (
            json!({"orderId": "A-1", "reason": "x".repeat(501)}),
            "reason",
        ),
    ];
    for (body, field) in cases {
        let answer = refund(&app, &contest, body.clone()).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{body}: {:?}",
            answer.body
        );
        assert_eq!(answer.error_code(), "invalid_field", "{body}");
        assert_eq!(answer.error_field(), field, "{body}");
    }
    let nul = r#"{"orderId":"A-1","reason":"a\u0000b"}"#;
    let answer = app
        .post(
            &refund_path(&contest.id),
            &[("x-webhook-secret", &contest.secret)],
            nul,
        )
        .await;
    assert_eq!(answer.error_field(), "reason", "{:?}", answer.body);
    for malformed in ["{not json", "[1,2]", "\"text\"", ""] {
        let answer = app
            .post(
                &refund_path(&contest.id),
                &[("x-webhook-secret", &contest.secret)],
                malformed,
            )
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{malformed:?}");
        assert_eq!(answer.error_code(), "invalid_json", "{malformed:?}");
    }
    nothing_published(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn unknown_contest_is_404_and_oversized_body_is_413() {
    let app = App::receiver_only().await;
    let contest = app.create_contest(json!({})).await;
    let body = json!({"orderId": "A-1"}).to_string();
    let unknown = app
        .post(
            &refund_path("no-such-contest"),
            &[("x-webhook-secret", &contest.secret)],
            body.clone(),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.error_code(), "contest_not_found");
    let impossible = app
        .post(
            &refund_path("bad%20id"),
            &[("x-webhook-secret", &contest.secret)],
            body,
        )
        .await;
    assert_eq!(impossible.status, StatusCode::NOT_FOUND);

    let huge = format!(r#"{{"orderId":"A-1","pad":"{}"}}"#, "x".repeat(1536 * 1024));
    let answer = app
        .post(
            &refund_path(&contest.id),
            &[("x-webhook-secret", &contest.secret)],
            huge,
        )
        .await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.error_code(), "payload_too_large");
    nothing_published(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn a_body_declared_as_another_media_type_is_answered_as_for_a_purchase() {
    let app = App::receiver_only().await;
    let contest = app.create_contest(json!({})).await;
    // Whatever the purchase webhook answers a form-encoded body (the same body reader), the
    // refund webhook answers the same, and neither publishes anything.
    let send = |path: String, body: &'static str| {
        let request = app
            .http
            .post(format!("{}{path}", app.public_url()))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-webhook-secret", &contest.secret)
            .body(body)
            .send();
        async move { request.await.expect("request").status() }
    };
    let purchase = send(
        format!("/api/webhooks/purchase/{}", contest.id),
        "email=a%40example.com&orderId=A-1&amount=1",
    )
    .await;
    let refund = send(refund_path(&contest.id), "orderId=A-1").await;
    assert!(purchase.is_client_error(), "{purchase}");
    assert_eq!(refund, purchase);
    nothing_published(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn paused_tracking_refuses_refunds_and_provider_reversals_with_403() {
    let (app, contest) = contest_app().await;
    let patched = app
        .admin(
            Method::PATCH,
            &format!("/api/contests/{}", contest.id),
            Some(json!({"purchaseTracking": false})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK);
    let generic = refund(&app, &contest, json!({"orderId": "A-1"})).await;
    assert_eq!(generic.status, StatusCode::FORBIDDEN);
    assert_eq!(generic.error_code(), "tracking_disabled");
    let shopify = send_shopify(
        &app,
        &shopify_path(&contest),
        &shopify_refund(&[("30.00", "success")]),
        "refunds/create",
    )
    .await;
    assert_eq!(shopify.status, StatusCode::FORBIDDEN);
    let coinflow = send_coinflow(&app, &contest, &coinflow_event("Refund"), None).await;
    assert_eq!(coinflow.status, StatusCode::FORBIDDEN);
    nothing_published(&app).await;
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Providers.

/// A receiver and a contest holding every provider secret.
async fn contest_app() -> (App, TestContest) {
    let app = App::receiver_only().await;
    let contest = contest_with_providers(&app).await;
    (app, contest)
}

fn shopify_path(contest: &TestContest) -> String {
    format!("/api/webhooks/referral/shopify/{}", contest.id)
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

/// A `refunds/create` payload with one refund transaction per `(amount, status)`.
fn shopify_refund(transactions: &[(&str, &str)]) -> String {
    let transactions: Vec<Value> = transactions
        .iter()
        .map(|(amount, status)| {
            json!({"kind": "refund", "status": status, "amount": amount, "currency": "USD",
                   "gateway": "bogus", "test": false})
        })
        .collect();
    // Written by hand so the 64-bit ids are JSON integers, as Shopify sends them.
    format!(
        r#"{{"id":890088186047892319,"order_id":{SHOPIFY_ORDER},"note":"damaged","refund_line_items":[],"transactions":{}}}"#,
        Value::Array(transactions)
    )
}

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

fn stripe_event(event_type: &str, object: Value) -> Value {
    json!({"id": "evt_1", "object": "event", "type": event_type, "livemode": true,
           "created": 1_719_486_400, "data": {"object": object}})
}

fn stripe_charge(amount_refunded: i64) -> Value {
    stripe_event(
        "charge.refunded",
        json!({"id": CHARGE, "object": "charge", "amount": 1999, "amount_refunded": amount_refunded,
               "currency": "usd", "payment_intent": INTENT, "refunded": amount_refunded == 1999}),
    )
}

fn stripe_dispute(event_type: &str, status: &str) -> Value {
    stripe_event(
        event_type,
        json!({"id": DISPUTE, "object": "dispute", "amount": 1999, "charge": CHARGE,
               "currency": "usd", "payment_intent": INTENT, "reason": "fraudulent", "status": status}),
    )
}

/// Sends a Coinflow event with the key in `Authorization`, or signed when `signed_at` is given.
async fn send_coinflow(
    app: &App,
    contest: &TestContest,
    event: &Value,
    signed_at: Option<i64>,
) -> Answer {
    let body = event.to_string();
    let path = format!("/api/webhooks/coinflow/{}", contest.id);
    match signed_at {
        None => {
            app.post(&path, &[("authorization", COINFLOW_KEY)], body)
                .await
        }
        Some(t) => {
            let t = t.to_string();
            let mac = hex::encode(sha256(
                COINFLOW_KEY.as_bytes(),
                &[t.as_bytes(), b".", body.as_bytes()],
            ));
            let header = format!("t={t},v1={mac}");
            app.post(&path, &[("coinflow-signature", &header)], body)
                .await
        }
    }
}

fn coinflow_event(event_type: &str) -> Value {
    json!({"eventType": event_type, "category": "Purchase", "created": "2024-07-01T12:00:00.000Z",
           "data": {"id": COINFLOW_PAYMENT, "subtotal": {"cents": 2500, "currency": "USD"},
                    "webhookInfo": {"email": "buyer@example.com"}}})
}

fn assert_accepted(answer: &Answer) {
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(answer.data()["status"], "accepted", "{:?}", answer.body);
}

#[tokio::test]
async fn shopify_refunds_and_cancellations_on_both_urls_are_published_as_reversals() {
    let (app, contest) = contest_app().await;
    let purchase_path = format!("/api/webhooks/purchase/{}", contest.id);
    let body = shopify_refund(&[
        ("30.00", "success"),
        ("10.00", "success"),
        ("99", "failure"),
    ]);
    let referral = send_shopify(&app, &shopify_path(&contest), &body, "refunds/create").await;
    let purchase = send_shopify(&app, &purchase_path, &body, "refunds/create").await;
    let cancelled = send_shopify(
        &app,
        &purchase_path,
        &format!(r#"{{"id":{SHOPIFY_ORDER},"cancel_reason":"customer","test":false}}"#),
        "orders/cancelled",
    )
    .await;
    for answer in [&referral, &purchase, &cancelled] {
        assert_accepted(answer);
        assert_eq!(answer.data()["orderId"], SHOPIFY_ORDER);
    }
    assert_eq!(referral.data()["refundId"], "890088186047892319");
    assert_eq!(cancelled.data()["refundId"], "cancelled");

    let published = reversals(&app, 3).await;
    let refund = expected(
        &contest,
        Source::Shopify,
        order(SHOPIFY_ORDER),
        "890088186047892319",
        ReversalKind::Refund,
        RefundAmount::Partial {
            amount: decimal("40.00"),
            currency: Some(Currency::USD),
        },
        Some("damaged"),
    );
    assert_reversal(&published[0], &refund);
    // The same refund delivered to the other URL is the same reversal (one purchase, one refund).
    assert_reversal(&published[1], &refund);
    assert_eq!(referral.data()["reversalId"], purchase.data()["reversalId"]);
    assert_reversal(
        &published[2],
        &expected(
            &contest,
            Source::Shopify,
            order(SHOPIFY_ORDER),
            "cancelled",
            ReversalKind::Refund,
            RefundAmount::Full,
            Some("order cancelled: customer"),
        ),
    );
    app.stop().await;
}

#[tokio::test]
async fn stripe_refunds_and_disputes_name_the_payment_intent_and_checkouts_carry_it() {
    let (app, contest) = contest_app().await;
    let checkout = stripe_event(
        "checkout.session.completed",
        json!({"id": "cs_live_1", "object": "checkout.session", "payment_status": "paid",
               "amount_total": 1999, "currency": "usd", "payment_intent": INTENT,
               "customer_details": {"email": "buyer@example.com"}}),
    );
    let answer = send_stripe(&app, &contest, &checkout).await;
    assert_accepted(&answer);
    let taken = broker::take_events(&app.env.amqp_prefix, 1).await;
    assert_eq!(taken.len(), 1);
    match &taken[0].envelope.event {
        Event::Purchase(purchase) => {
            assert_eq!(purchase.payment_intent.as_deref(), Some(INTENT));
            assert_eq!(purchase.order_id.as_str(), "cs_live_1");
        }
        other => panic!("expected the purchase, got {other:?}"),
    }

    let answers = [
        send_stripe(&app, &contest, &stripe_charge(500)).await,
        // A replay of the same event: the same reversal.
        send_stripe(&app, &contest, &stripe_charge(500)).await,
        // A later refund: a larger cumulative total, a new reversal.
        send_stripe(&app, &contest, &stripe_charge(1999)).await,
        send_stripe(
            &app,
            &contest,
            &stripe_dispute("charge.dispute.created", "needs_response"),
        )
        .await,
        send_stripe(
            &app,
            &contest,
            &stripe_dispute("charge.dispute.closed", "won"),
        )
        .await,
    ];
    for answer in &answers {
        assert_accepted(answer);
        assert_eq!(answer.data()["paymentIntent"], INTENT, "{:?}", answer.body);
        assert!(answer.data().get("orderId").is_none(), "{:?}", answer.body);
    }
    let published = reversals(&app, 5).await;
    let cumulative = |refund_id: &str, amount: &str| {
        expected(
            &contest,
            Source::Stripe,
            ReversalTarget::PaymentIntent(INTENT.into()),
            refund_id,
            ReversalKind::Refund,
            RefundAmount::Cumulative {
                amount: decimal(amount),
                currency: Currency::USD,
            },
            None,
        )
    };
    assert_reversal(&published[0], &cumulative(&format!("{CHARGE}:500"), "5.00"));
    assert_reversal(&published[1], &published[0]);
    assert_reversal(
        &published[2],
        &cumulative(&format!("{CHARGE}:1999"), "19.99"),
    );
    assert_reversal(
        &published[3],
        &expected(
            &contest,
            Source::Stripe,
            ReversalTarget::PaymentIntent(INTENT.into()),
            DISPUTE,
            ReversalKind::Chargeback,
            RefundAmount::Full,
            Some("dispute opened: fraudulent"),
        ),
    );
    assert_eq!(published[4].kind, ReversalKind::ChargebackWon);
    assert_eq!(published[4].refund_id, DISPUTE);
    assert_eq!(published[4].target, published[3].target);
    app.stop().await;
}

#[tokio::test]
async fn coinflow_refunds_and_chargebacks_are_published_with_either_credential() {
    let (app, contest) = contest_app().await;
    let now = Utc::now().timestamp();
    let answers = [
        send_coinflow(&app, &contest, &coinflow_event("Refund"), None).await,
        send_coinflow(
            &app,
            &contest,
            &coinflow_event("Card Payment Chargeback Opened"),
            Some(now),
        )
        .await,
        send_coinflow(
            &app,
            &contest,
            &coinflow_event("Card Payment Chargeback Won"),
            None,
        )
        .await,
    ];
    for answer in &answers {
        assert_accepted(answer);
        assert_eq!(answer.data()["orderId"], COINFLOW_PAYMENT);
    }
    let published = reversals(&app, 3).await;
    assert_reversal(
        &published[0],
        &expected(
            &contest,
            Source::Coinflow,
            order(COINFLOW_PAYMENT),
            "full",
            ReversalKind::Refund,
            RefundAmount::Full,
            Some("refunded"),
        ),
    );
    assert_eq!(published[1].kind, ReversalKind::Chargeback);
    assert_eq!(published[2].kind, ReversalKind::ChargebackWon);
    // The won event names the chargeback the opened one recorded.
    assert_eq!(published[1].refund_id, published[2].refund_id);
    assert_eq!(published[1].target, published[2].target);
    app.stop().await;
}

#[tokio::test]
async fn ignored_provider_events_publish_nothing() {
    let (app, contest) = contest_app().await;
    let shopify = shopify_path(&contest);
    let ignored = [
        send_shopify(
            &app,
            &shopify,
            &shopify_refund(&[("30.00", "pending")]),
            "refunds/create",
        )
        .await,
        send_shopify(
            &app,
            &shopify,
            &shopify_refund(&[("30.00", "success")]),
            "orders/updated",
        )
        .await,
        send_stripe(
            &app,
            &contest,
            &stripe_dispute("charge.dispute.closed", "lost"),
        )
        .await,
        send_stripe(&app, &contest, &{
            let mut charge = stripe_charge(500);
            charge["data"]["object"]["payment_intent"] = Value::Null;
            charge
        })
        .await,
        send_coinflow(
            &app,
            &contest,
            &coinflow_event("Card Payment Chargeback Lost"),
            None,
        )
        .await,
    ];
    for answer in &ignored {
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        assert_eq!(answer.data()["status"], "ignored", "{:?}", answer.body);
        assert!(
            !answer.data()["reason"].as_str().unwrap_or("").is_empty(),
            "{:?}",
            answer.body
        );
    }
    nothing_published(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn forged_or_unsigned_provider_reversals_are_401_and_publish_nothing() {
    let (app, contest) = contest_app().await;
    let body = shopify_refund(&[("30.00", "success")]);
    let forged = app
        .post(
            &shopify_path(&contest),
            &[
                ("x-shopify-hmac-sha256", &STANDARD.encode([0u8; 32])),
                ("x-shopify-topic", "refunds/create"),
            ],
            body,
        )
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    let stripe = app
        .post(
            &format!("/api/webhooks/referral/stripe/{}", contest.id),
            &[("stripe-signature", "t=1,v1=00")],
            stripe_charge(500).to_string(),
        )
        .await;
    assert_eq!(stripe.status, StatusCode::UNAUTHORIZED);
    let coinflow = app
        .post(
            &format!("/api/webhooks/coinflow/{}", contest.id),
            &[("authorization", "not-the-key")],
            coinflow_event("Refund").to_string(),
        )
        .await;
    assert_eq!(coinflow.status, StatusCode::UNAUTHORIZED);
    // A contest without provider secrets refuses every provider delivery (fail closed).
    let bare = app.create_contest(json!({})).await;
    let unsigned = send_coinflow(&app, &bare, &coinflow_event("Refund"), None).await;
    assert_eq!(unsigned.status, StatusCode::UNAUTHORIZED);
    nothing_published(&app).await;
    app.stop().await;
}
