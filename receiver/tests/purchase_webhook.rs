//! The generic purchase webhook through HTTP against the real Postgres and RabbitMQ: every
//! authentication form, every validation error, and the status codes of the contract.

use std::time::Duration;

use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde_json::json;
use testkit::{app::RunningReceiver, receiver::auth::standard_webhooks, wait, App, TestEnv};

const VALID: &str = r#"{"email":"buyer@example.com","orderId":"A-1","amount":"79.99"}"#;

fn path(contest: &str) -> String {
    format!("/api/webhooks/purchase/{contest}")
}

#[tokio::test]
async fn every_authentication_form_is_accepted() {
    let app = App::receiver_only().await;
    let contest = app.create_contest(json!({})).await;
    let url = path(&contest.id);
    let bearer = format!("Bearer {}", contest.secret);

    let header = app
        .post(&url, &[("x-webhook-secret", &contest.secret)], VALID)
        .await;
    assert_eq!(header.status, StatusCode::OK, "{:?}", header.body);

    let auth = app.post(&url, &[("authorization", &bearer)], VALID).await;
    assert_eq!(auth.status, StatusCode::OK, "{:?}", auth.body);

    let body = json!({"email":"buyer@example.com","orderId":"A-1","amount":"79.99","secret":contest.secret});
    let in_body = app.post(&url, &[], body.to_string()).await;
    assert_eq!(in_body.status, StatusCode::OK, "{:?}", in_body.body);

    let now = Utc::now().timestamp();
    let signature =
        standard_webhooks::sign(&contest.secret, "msg_1", now, VALID.as_bytes()).unwrap();
    let stamp = now.to_string();
    let signed = app
        .post(
            &url,
            &[
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", &stamp),
                ("webhook-signature", &signature),
            ],
            VALID,
        )
        .await;
    assert_eq!(signed.status, StatusCode::OK, "{:?}", signed.body);

    // All four name the same purchase.
    let id = header.data()["purchaseId"].clone();
    for answer in [&auth, &in_body, &signed] {
        assert_eq!(answer.data()["purchaseId"], id);
        assert_eq!(answer.data()["status"], "accepted");
        assert_eq!(answer.data()["orderId"], "A-1");
    }
    app.stop().await;
}

#[tokio::test]
async fn wrong_or_missing_credentials_are_401_before_the_body_is_looked_at() {
    let app = App::receiver_only().await;
    let contest = app.create_contest(json!({})).await;
    let url = path(&contest.id);
    let basic = format!("Basic {}", contest.secret);

    type Headers<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(&str, Headers, String)> = vec![
        ("no credential", vec![], VALID.into()),
        (
            "wrong header secret",
            vec![("x-webhook-secret", "whsec_wrong")],
            VALID.into(),
        ),
        (
            "wrong bearer",
            vec![("authorization", "Bearer nope")],
            VALID.into(),
        ),
        (
            "other auth scheme",
            vec![("authorization", &basic)],
            VALID.into(),
        ),
        (
            "wrong body secret",
            vec![],
            json!({"email":"a@example.com","orderId":"1","amount":1,"secret":"nope"}).to_string(),
        ),
        // A header credential decides alone: a right body secret does not rescue a wrong header.
        (
            "wrong header, right body secret",
            vec![("x-webhook-secret", "nope")],
            json!({"email":"a@example.com","orderId":"1","amount":1,"secret":contest.secret})
                .to_string(),
        ),
        // Authentication comes before validation: an invalid body with a wrong secret is 401.
        (
            "wrong secret, invalid body",
            vec![("x-webhook-secret", "nope")],
            r#"{"email":"not-an-email"}"#.into(),
        ),
        ("malformed body, no header", vec![], "{not json".into()),
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
        assert_eq!(answer.body["success"], false, "{name}");
    }
    app.stop().await;
}

#[tokio::test]
async fn standard_webhooks_signatures_must_be_valid_fresh_and_non_empty() {
    let app = App::receiver_only().await;
    let contest = app.create_contest(json!({})).await;
    let url = path(&contest.id);
    let now = Utc::now().timestamp();
    let sign = |stamp: i64, body: &str| {
        standard_webhooks::sign(&contest.secret, "msg_9", stamp, body.as_bytes()).unwrap()
    };

    let send = |stamp: i64, signature: String, body: &'static str| {
        let app = &app;
        let url = url.clone();
        async move {
            let stamp = stamp.to_string();
            app.post(
                &url,
                &[
                    ("webhook-id", "msg_9"),
                    ("webhook-timestamp", &stamp),
                    ("webhook-signature", &signature),
                ],
                body,
            )
            .await
            .status
        }
    };
    assert_eq!(send(now, sign(now, VALID), VALID).await, StatusCode::OK);
    let tampered = r#"{"email":"buyer@example.com","orderId":"A-1","amount":"799.99"}"#;
    assert_eq!(
        send(now, sign(now, VALID), tampered).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(now - 600, sign(now - 600, VALID), VALID).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(now + 600, sign(now + 600, VALID), VALID).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(now, "v1,".into(), VALID).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(now, format!("v1,AAAA {}", sign(now, VALID)), VALID).await,
        StatusCode::OK
    );
    app.stop().await;
}

#[tokio::test]
async fn every_invalid_field_is_a_400_naming_it() {
    let app = App::receiver_only().await;
    let contest = app.create_contest(json!({})).await;
    let long_order = "x".repeat(256);
    let cases = [
        (json!({"orderId":"1","amount":"1"}), "email"),
        (json!({"email":"nope","orderId":"1","amount":"1"}), "email"),
        (json!({"email":42,"orderId":"1","amount":"1"}), "email"),
        (json!({"email":"a@example.com","amount":"1"}), "orderId"),
        (
            json!({"email":"a@example.com","orderId":"","amount":"1"}),
            "orderId",
        ),
        (
            json!({"email":"a@example.com","orderId":long_order,"amount":"1"}),
            "orderId",
        ),
        (json!({"email":"a@example.com","orderId":"1"}), "amount"),
        (
            json!({"email":"a@example.com","orderId":"1","amount":"0"}),
            "amount",
        ),
        (
            json!({"email":"a@example.com","orderId":"1","amount":-5}),
            "amount",
        ),
        (
            json!({"email":"a@example.com","orderId":"1","amount":"12abc"}),
            "amount",
        ),
        (
            json!({"email":"a@example.com","orderId":"1","amount":true}),
            "amount",
        ),
        (
            json!({"email":"a@example.com","orderId":"1","amount":"1","currency":"XYZ"}),
            "currency",
        ),
        (
            json!({"email":"a@example.com","orderId":"1","amount":"1","currency":7}),
            "currency",
        ),
    ];
    for (body, field) in cases {
        let answer = app.purchase(&contest, body.clone()).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{body}: {:?}",
            answer.body
        );
        assert_eq!(answer.error_code(), "invalid_field", "{body}");
        assert_eq!(answer.error_field(), field, "{body}");
    }
    for malformed in ["{not json", "[1,2]", "\"text\""] {
        let answer = app
            .post(
                &path(&contest.id),
                &[("x-webhook-secret", &contest.secret)],
                malformed,
            )
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{malformed}");
        assert_eq!(answer.error_code(), "invalid_json", "{malformed}");
    }
    app.stop().await;
}

#[tokio::test]
async fn unknown_contest_is_404_and_oversized_body_is_413() {
    let app = App::receiver_only().await;
    let contest = app.create_contest(json!({})).await;
    let unknown = app
        .post(
            &path("no-such-contest"),
            &[("x-webhook-secret", "x")],
            VALID,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.error_code(), "contest_not_found");
    let impossible = app
        .post(&path("bad%20id"), &[("x-webhook-secret", "x")], VALID)
        .await;
    assert_eq!(impossible.status, StatusCode::NOT_FOUND);

    let huge = format!(
        r#"{{"email":"a@example.com","orderId":"1","amount":"1","pad":"{}"}}"#,
        "x".repeat(1536 * 1024)
    );
    let answer = app
        .post(
            &path(&contest.id),
            &[("x-webhook-secret", &contest.secret)],
            huge,
        )
        .await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.error_code(), "payload_too_large");
    app.stop().await;
}

#[tokio::test]
async fn the_same_order_always_gets_the_same_purchase_id() {
    let app = App::receiver_only().await;
    let contest = app.create_contest(json!({})).await;
    let mut ids = Vec::new();
    for amount in ["79.99", "79.99", "80"] {
        let answer = app
            .purchase(
                &contest,
                json!({"email":"a@example.com","orderId":"SAME","amount":amount}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK);
        ids.push(answer.data()["purchaseId"].clone());
    }
    assert!(ids.windows(2).all(|pair| pair[0] == pair[1]), "{ids:?}");
    let other = app
        .purchase(
            &contest,
            json!({"email":"a@example.com","orderId":"OTHER","amount":"1"}),
        )
        .await;
    assert_ne!(other.data()["purchaseId"], ids[0]);
    app.stop().await;
}

#[tokio::test]
async fn disabling_tracking_gives_403_here_at_once_and_on_another_receiver_within_seconds() {
    let mut app = App::receiver_only().await;
    let contest = app.create_contest(json!({})).await;
    let second = app.add_receiver().await.public_url.clone();
    let body = json!({"email":"a@example.com","orderId":"T-1","amount":"5"}).to_string();
    let post_second = |app: &App| {
        let request = app
            .http
            .post(format!("{second}{}", path(&contest.id)))
            .header("x-webhook-secret", &contest.secret)
            .body(body.clone())
            .send();
        async move { request.await.expect("request").status() }
    };
    assert_eq!(post_second(&app).await, StatusCode::OK);

    let patched = app
        .admin(
            Method::PATCH,
            &format!("/api/contests/{}", contest.id),
            Some(json!({"purchaseTracking": false})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK);
    assert_eq!(patched.data()["purchaseTracking"], false);

    let here = app
        .purchase(&contest, serde_json::from_str(&body).unwrap())
        .await;
    assert_eq!(here.status, StatusCode::FORBIDDEN);
    assert_eq!(here.error_code(), "tracking_disabled");

    wait::until(
        "403 on the second receiver",
        Duration::from_secs(15),
        || async { (post_second(&app).await == StatusCode::FORBIDDEN).then_some(()) },
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn rotated_secret_keeps_the_old_one_working() {
    let app = App::receiver_only().await;
    let contest = app.create_contest(json!({})).await;
    let rotated = app
        .admin(
            Method::POST,
            &format!("/api/contests/{}/webhook-secret/rotate", contest.id),
            None,
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK);
    let new_secret = rotated.data()["webhookSecret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, contest.secret);
    for secret in [&contest.secret, &new_secret] {
        let answer = app
            .post(&path(&contest.id), &[("x-webhook-secret", secret)], VALID)
            .await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    app.stop().await;
}

#[tokio::test]
async fn broker_unreachable_is_a_fast_503_with_retry_after() {
    // A known contest, a receiver whose broker address has nothing listening.
    let app = App::receiver_only().await;
    let contest = app.create_contest(json!({})).await;
    let mut config = app.env.receiver_config();
    config.common.amqp_url = "amqp://guest:guest@127.0.0.1:1/%2f".into();
    let offline = RunningReceiver::start_unready(config).await;
    let client = reqwest::Client::new();
    let url = format!("{}{}", offline.public_url, path(&contest.id));
    let answer = wait::until("receiver answers", Duration::from_secs(20), || {
        let request = client
            .post(&url)
            .header("x-webhook-secret", &contest.secret)
            .body(VALID)
            .send();
        async move { request.await.ok() }
    })
    .await;
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.headers()["retry-after"], "5");
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "broker_unavailable");

    let ready = client
        .get(format!("{}/readyz", offline.admin_url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    offline.stop().await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn admin_api_requires_the_token_and_is_disabled_without_one() {
    let app = App::receiver_only().await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/contests", app.admin_url());
    let missing = client
        .post(&url)
        .json(&json!({"name":"x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    let wrong = client
        .post(&url)
        .bearer_auth("nope")
        .json(&json!({"name":"x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    let mut config = TestEnv::new().receiver_config();
    config.common = app.env.common();
    config.admin_token = None;
    let tokenless = RunningReceiver::start(config).await;
    let disabled = client
        .post(format!("{}/api/contests", tokenless.admin_url))
        .bearer_auth("anything")
        .json(&json!({"name":"x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = disabled.json().await.unwrap();
    assert_eq!(body["error"]["code"], "admin_disabled");
    tokenless.stop().await.unwrap();
    app.stop().await;
}
