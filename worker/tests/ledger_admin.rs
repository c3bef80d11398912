//! The operators' side of the ledger through the real admin API: reading a ledger, manual
//! adjustments with `Idempotency-Key`, disqualification and the leaderboard.

mod common;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use testkit::{app::Answer, App};

/// POSTs to an entry's admin path with optional `Idempotency-Key`.
async fn post(app: &App, path: &str, key: Option<&str>, body: &str) -> Answer {
    let mut request = app
        .http
        .post(format!("{}{path}", app.admin_url()))
        .bearer_auth(&app.env.admin_token)
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.expect("admin request");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    Answer {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

/// Signs `email` up through the admin API; returns the entry id.
async fn sign_up(app: &App, contest: &str, email: &str) -> String {
    let answer = app
        .admin(
            Method::POST,
            &format!("/api/contests/{contest}/entries"),
            Some(json!({ "email": email })),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    answer.data()["entryId"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_ledger_lists_every_change_and_sums_to_the_points() {
    let app = App::with_workers(1).await;
    let c = app.create_contest(json!({})).await;
    let accepted = app
        .purchase(
            &c,
            json!({"email": "jane@example.com", "orderId": "L-1", "amount": "79.99"}),
        )
        .await;
    assert_eq!(accepted.status, StatusCode::OK);
    let recorded = app.recorded(&c, "L-1", None).await;
    let entry = recorded["entryId"].as_str().unwrap().to_owned();
    let adjusted = post(
        &app,
        &format!("/api/contests/{}/entries/{entry}/points", c.id),
        None,
        r#"{"points": -5, "reason": "duplicate account merged"}"#,
    )
    .await;
    assert_eq!(adjusted.status, StatusCode::CREATED, "{:?}", adjusted.body);
    assert_eq!(adjusted.data()["points"], 75);
    assert_eq!(adjusted.data()["disqualified"], false);

    let ledger = app
        .admin(
            Method::GET,
            &format!("/api/contests/{}/entries/{entry}/ledger", c.id),
            None,
        )
        .await;
    assert_eq!(ledger.status, StatusCode::OK, "{:?}", ledger.body);
    let data = ledger.data();
    assert_eq!(data["points"], 75);
    assert_eq!(data["entryId"], entry.as_str());
    let changes = data["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0]["kind"], "purchase");
    assert_eq!(changes[0]["points"], 80);
    assert_eq!(changes[0]["purchaseId"], recorded["purchaseId"]);
    assert_eq!(changes[0]["reason"], Value::Null);
    assert_eq!(changes[1]["kind"], "adjustment");
    assert_eq!(changes[1]["points"], -5);
    assert_eq!(changes[1]["purchaseId"], Value::Null);
    assert_eq!(changes[1]["reason"], "duplicate account merged");
    assert!(changes[1]["at"].as_str().unwrap().contains('T'));

    for path in [
        format!("/api/contests/{}/entries/ent_nobody/ledger", c.id),
        format!("/api/contests/{}/entries/not-an-id/ledger", c.id),
    ] {
        let missing = app.admin(Method::GET, &path, None).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(missing.error_code(), "not_found");
    }
    let no_contest = app
        .admin(
            Method::GET,
            &format!("/api/contests/nope/entries/{entry}/ledger"),
            None,
        )
        .await;
    assert_eq!(no_contest.error_code(), "contest_not_found");
    let pool = app.env.pool().await;
    common::assert_books_balance(&pool).await;
    pool.close().await;
    app.stop().await;
}

#[tokio::test]
async fn adjustments_need_a_reason_and_apply_once_per_idempotency_key() {
    let app = App::receiver_only().await;
    let c = app.create_contest(json!({})).await;
    let entry = sign_up(&app, &c.id, "adjust@example.com").await;
    let path = format!("/api/contests/{}/entries/{entry}/points", c.id);
    let body = r#"{"points": 250, "reason": "winner of the photo challenge"}"#;

    let first = post(&app, &path, Some("photo-2026"), body).await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    assert_eq!(first.data()["points"], 250);
    let again = post(&app, &path, Some("photo-2026"), body).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.body, first.body, "the same answer");

    // Eight at once with one key: one applies, all answer the same.
    let racing: Vec<_> = (0..8)
        .map(|_| {
            post(
                &app,
                &path,
                Some("race"),
                r#"{"points": 1, "reason": "race"}"#,
            )
        })
        .collect();
    let answers = futures::future::join_all(racing).await;
    for answer in &answers {
        assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
        assert_eq!(answer.data()["points"], 251);
    }
    // Without a key, each call applies.
    for _ in 0..2 {
        let plain = post(&app, &path, None, r#"{"points": -1, "reason": "plain"}"#).await;
        assert_eq!(plain.status, StatusCode::CREATED);
    }
    let reused = post(
        &app,
        &path,
        Some("photo-2026"),
        r#"{"points": 999, "reason": "x"}"#,
    )
    .await;
    assert_eq!(reused.status, StatusCode::CONFLICT);
    assert_eq!(reused.error_code(), "idempotency_key_reused");

    let entry_now = app
        .admin(
            Method::GET,
            &format!("/api/contests/{}/entries/{entry}", c.id),
            None,
        )
        .await;
    assert_eq!(entry_now.data()["points"], 249);
    let ledger = app
        .admin(
            Method::GET,
            &format!("/api/contests/{}/entries/{entry}/ledger", c.id),
            None,
        )
        .await;
    assert_eq!(ledger.status, StatusCode::OK, "{:?}", ledger.body);
    assert_eq!(ledger.data()["changes"].as_array().unwrap().len(), 4);

    let long_reason = "x".repeat(501);
    let long_key = "k".repeat(256);
    let long_body = json!({"points": 1, "reason": long_reason}).to_string();
    let cases: Vec<(&str, Option<&str>, &str)> = vec![
        (r#"{"points": 5}"#, None, "reason"),
        (r#"{"points": 5, "reason": "   "}"#, None, "reason"),
        (long_body.as_str(), None, "reason"),
        (r#"{"points": 5, "reason": 7}"#, None, "reason"),
        (r#"{"points": 0, "reason": "zero"}"#, None, "points"),
        (r#"{"points": 1.5, "reason": "half"}"#, None, "points"),
        (r#"{"points": "5", "reason": "text"}"#, None, "points"),
        (r#"{"reason": "no points"}"#, None, "points"),
        (r#"{"points": 5, "reasn": "typo"}"#, None, "reasn"),
        (
            r#"{"points": 5, "reason": "ok", "extra": 1}"#,
            None,
            "extra",
        ),
        (body, Some("has space"), "Idempotency-Key"),
        (body, Some(long_key.as_str()), "Idempotency-Key"),
    ];
    for (body, key, field) in cases {
        let answer = post(&app, &path, key, body).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{body}: {:?}",
            answer.body
        );
        assert_eq!(answer.error_code(), "invalid_field", "{body}");
        assert_eq!(answer.error_field(), field, "{body}");
    }
    let malformed = post(&app, &path, None, "{not json").await;
    assert_eq!(malformed.error_code(), "invalid_json");
    let unknown = post(
        &app,
        &format!("/api/contests/{}/entries/ent_nobody/points", c.id),
        None,
        body,
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let unauthorised = app
        .http
        .post(format!("{}{path}", app.admin_url()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorised.status(), StatusCode::UNAUTHORIZED);

    let pool = app.env.pool().await;
    let keys: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM adjustment_keys")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(keys, 2, "each key stored once");
    common::assert_books_balance(&pool).await;
    pool.close().await;
    app.stop().await;
}

#[tokio::test]
async fn disqualified_entries_leave_the_leaderboard_keep_earning_and_come_back() {
    let app = App::with_workers(1).await;
    let c = app.create_contest(json!({})).await;
    for (order, email, amount) in [
        ("D-1", "cheat@example.com", "90"),
        ("D-2", "honest@example.com", "50"),
    ] {
        app.purchase(
            &c,
            json!({"email": email, "orderId": order, "amount": amount}),
        )
        .await;
    }
    let cheat = app.recorded(&c, "D-1", None).await["entryId"]
        .as_str()
        .unwrap()
        .to_owned();
    app.recorded(&c, "D-2", None).await;
    assert_eq!(app.leaderboard(&c).await[0]["entryId"], cheat.as_str());

    let base = format!("/api/contests/{}/entries/{cheat}", c.id);
    let out = post(
        &app,
        &format!("{base}/disqualify"),
        None,
        r#"{"reason": "card testing"}"#,
    )
    .await;
    assert_eq!(out.status, StatusCode::OK, "{:?}", out.body);
    assert_eq!(out.data()["disqualified"], true);
    assert_eq!(out.data()["disqualificationReason"], "card testing");
    assert_eq!(out.data()["points"], 90, "points are kept");
    let board = app.leaderboard(&c).await;
    assert_eq!(board.len(), 1);
    assert_eq!(board[0]["email"], "honest@example.com");
    assert_eq!(board[0]["rank"], 1);

    // It keeps earning while off the board.
    app.purchase(
        &c,
        json!({"email": "cheat@example.com", "orderId": "D-3", "amount": "10"}),
    )
    .await;
    app.recorded(&c, "D-3", None).await;
    let entry = app.admin(Method::GET, &base, None).await;
    assert_eq!(entry.data()["points"], 100);
    assert_eq!(entry.data()["disqualified"], true);
    assert_eq!(app.leaderboard(&c).await.len(), 1);

    // Disqualifying again keeps it so (no body needed); bodies stay strict.
    let again = post(&app, &format!("{base}/disqualify"), None, "").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.data()["disqualificationReason"], "card testing");
    let typo = post(
        &app,
        &format!("{base}/disqualify"),
        None,
        r#"{"reasons": "x"}"#,
    )
    .await;
    assert_eq!(typo.error_field(), "reasons");
    let long = json!({ "reason": "y".repeat(501) }).to_string();
    assert_eq!(
        post(&app, &format!("{base}/disqualify"), None, &long)
            .await
            .error_field(),
        "reason"
    );
    let reinstate_body = post(
        &app,
        &format!("{base}/reinstate"),
        None,
        r#"{"reason": "x"}"#,
    )
    .await;
    assert_eq!(reinstate_body.status, StatusCode::BAD_REQUEST);
    assert_eq!(reinstate_body.error_field(), "reason");

    let back = post(&app, &format!("{base}/reinstate"), None, "{}").await;
    assert_eq!(back.status, StatusCode::OK, "{:?}", back.body);
    assert_eq!(back.data()["disqualified"], false);
    assert_eq!(back.data()["disqualificationReason"], Value::Null);
    let board = app.leaderboard(&c).await;
    assert_eq!(board.len(), 2);
    assert_eq!(board[0]["entryId"], cheat.as_str());
    assert_eq!(
        board[0]["points"], 100,
        "the truth, including what it earned meanwhile"
    );

    let missing = post(
        &app,
        &format!("/api/contests/{}/entries/ent_nobody/disqualify", c.id),
        None,
        "",
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    app.stop().await;
}
