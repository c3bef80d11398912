//! The admin API's strict bodies and its lists, against a real receiver and Postgres: every admin
//! POST and PATCH refuses an unknown or misspelled field (nested ones too) with `400` naming it
//! and changes nothing; contests and entries page through in id order, every row exactly once.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use testkit::{app::Answer, App};

/// Sends `body` (raw text) to an admin path.
async fn send(app: &App, method: Method, path: &str, body: &str) -> Answer {
    let response = app
        .http
        .request(method, format!("{}{path}", app.admin_url()))
        .bearer_auth(&app.env.admin_token)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("admin request");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    Answer {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

/// The contest as stored, read through the API, without what a rotation or patch must change.
async fn contest_state(app: &App, id: &str) -> Value {
    let answer = app
        .admin(Method::GET, &format!("/api/contests/{id}"), None)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    answer.data().clone()
}

/// The entry as stored, read through the API.
async fn entry_state(app: &App, contest: &str, entry: &str) -> Value {
    let answer = app
        .admin(
            Method::GET,
            &format!("/api/contests/{contest}/entries/{entry}"),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    answer.data().clone()
}

/// Asserts a `400 invalid_field` naming `field`.
fn assert_refused(answer: &Answer, field: &str, what: &str) {
    assert_eq!(
        answer.status,
        StatusCode::BAD_REQUEST,
        "{what}: {:?}",
        answer.body
    );
    assert_eq!(answer.error_code(), "invalid_field", "{what}");
    assert_eq!(answer.error_field(), field, "{what}: {:?}", answer.body);
}

#[tokio::test]
async fn every_admin_body_refuses_unknown_fields_naming_them_and_changes_nothing() {
    let app = App::receiver_only().await;
    let contest = app
        .create_contest(json!({
            "id": "strict",
            "referral": {"advocatePoints": 10, "friendPoints": 5, "pointsPerUnit": 0.1},
            "exchangeRates": {"EUR": 1.08},
            "providerSecrets": {"shopify": "shpss_1", "stripe": "whsec_x"},
        }))
        .await;
    let id = contest.id.as_str();

    // Create: an unknown top-level field, a nested one, and a valid body with a typo: nothing
    // is created.
    for (body, field) in [
        (
            json!({"id": "typo-1", "name": "T", "purchase_tracking": false}),
            "purchase_tracking",
        ),
        (
            json!({"id": "typo-2", "name": "T", "referral": {"advocatePont": 3}}),
            "referral.advocatePont",
        ),
        (
            json!({"id": "typo-3", "name": "T", "providerSecrets": {"paypal": "x"}}),
            "providerSecrets.paypal",
        ),
        (json!({"id": "typo-4", "nmae": "T"}), "nmae"),
    ] {
        let answer = send(&app, Method::POST, "/api/contests", &body.to_string()).await;
        assert_refused(&answer, field, &body.to_string());
        let premise = body["id"].as_str().unwrap();
        let missing = app
            .admin(Method::GET, &format!("/api/contests/{premise}"), None)
            .await;
        assert_eq!(
            missing.status,
            StatusCode::NOT_FOUND,
            "{premise} not created"
        );
    }

    // Patch: refused bodies leave every setting as it was, even the valid fields beside the
    // unknown one.
    let before = contest_state(&app, id).await;
    for (body, field) in [
        (
            json!({"name": "Changed", "purchase_tracking": false}),
            "purchase_tracking",
        ),
        (
            json!({"name": "Changed", "referral": {"advocatePoints": 1, "advocatePont": 3}}),
            "referral.advocatePont",
        ),
        (
            json!({"purchaseTracking": false, "providerSecrets": {"shopify": null, "paypal": "x"}}),
            "providerSecrets.paypal",
        ),
        (json!({"id": "renamed"}), "id"),
        (
            json!({"exchangeRates": {"GBP": 0.8}, "pointsPerUnit": -1}),
            "pointsPerUnit",
        ),
    ] {
        let answer = send(
            &app,
            Method::PATCH,
            &format!("/api/contests/{id}"),
            &body.to_string(),
        )
        .await;
        assert_refused(&answer, field, &body.to_string());
        assert_eq!(contest_state(&app, id).await, before, "{body}");
    }

    // Patch semantics stay exact: null removes one provider secret, exchangeRates replaces the
    // map, referral values merge.
    let patched = send(
        &app,
        Method::PATCH,
        &format!("/api/contests/{id}"),
        r#"{"providerSecrets": {"shopify": null}, "exchangeRates": {"GBP": "0.79"}, "referral": {"friendPoints": 7}}"#,
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK, "{:?}", patched.body);
    let data = patched.data();
    assert_eq!(data["providerSecrets"], json!({"stripe": "whsec_x"}));
    assert_eq!(data["exchangeRates"], json!({"GBP": 0.79}));
    assert_eq!(
        data["referral"],
        json!({"advocatePoints": 10, "friendPoints": 7, "pointsPerUnit": 0.1})
    );

    // Rotate: an unknown field changes no secret.
    let secret = contest_state(&app, id).await["webhookSecret"].clone();
    let rotate = format!("/api/contests/{id}/webhook-secret/rotate");
    let answer = send(&app, Method::POST, &rotate, r#"{"gracePeriod": 0}"#).await;
    assert_refused(&answer, "gracePeriod", "rotate");
    assert_eq!(contest_state(&app, id).await["webhookSecret"], secret);

    // Entries: create refuses a typo and creates nothing.
    let entries = format!("/api/contests/{id}/entries");
    let answer = send(
        &app,
        Method::POST,
        &entries,
        r#"{"email": "typo@example.com", "referal_code": "X"}"#,
    )
    .await;
    assert_refused(&answer, "referal_code", "entry create");
    let listed = app.admin(Method::GET, &entries, None).await;
    assert_eq!(listed.data()["entries"], json!([]));

    let created = send(
        &app,
        Method::POST,
        &entries,
        r#"{"email": "jane@example.com"}"#,
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let entry = created.data()["entryId"].as_str().unwrap().to_owned();
    let before = entry_state(&app, id, &entry).await;

    // Points adjustment, disqualification and reinstatement: each refuses a typo and changes
    // nothing (no points, no ledger row, no disqualification).
    let base = format!("/api/contests/{id}/entries/{entry}");
    for (path, body, field) in [
        (
            format!("{base}/points"),
            r#"{"points": 5, "reason": "ok", "idempotencyKey": "k"}"#,
            "idempotencyKey",
        ),
        (
            format!("{base}/disqualify"),
            r#"{"reason": "fraud", "until": "never"}"#,
            "until",
        ),
        (format!("{base}/reinstate"), r#"{"reason": "x"}"#, "reason"),
    ] {
        let answer = send(&app, Method::POST, &path, body).await;
        assert_refused(&answer, field, &path);
        assert_eq!(entry_state(&app, id, &entry).await, before, "{path}");
    }
    let ledger = app
        .admin(Method::GET, &format!("{base}/ledger"), None)
        .await;
    assert_eq!(ledger.data()["changes"], json!([]));

    // Webhook bodies still ignore fields they do not use.
    let purchase = app
        .purchase(
            &contest,
            json!({"email": "a@example.com", "orderId": "W-1", "amount": "5", "coupon": "X"}),
        )
        .await;
    assert_eq!(purchase.status, StatusCode::OK, "{:?}", purchase.body);
    app.stop().await;
}

#[tokio::test]
async fn the_contest_lists_one_url_per_webhook_endpoint() {
    let app = App::receiver_only().await;
    let contest = app.create_contest(json!({"id": "urls"})).await;
    let config = app.env.receiver_config();
    let base = config.base_url();
    assert_eq!(
        contest.data["webhookUrls"],
        json!({
            "purchase": format!("{base}/api/webhooks/purchase/urls"),
            "signup": format!("{base}/api/webhooks/signup/urls"),
            "refund": format!("{base}/api/webhooks/refund/urls"),
            "shopify": format!("{base}/api/webhooks/referral/shopify/urls"),
            "stripe": format!("{base}/api/webhooks/referral/stripe/urls"),
            "coinflow": format!("{base}/api/webhooks/coinflow/urls"),
        })
    );
    // Every URL is one the public listener serves: a refund without credentials is 401 there,
    // not 404.
    let refund = app
        .http
        .post(format!("{}/api/webhooks/refund/urls", app.public_url()))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refund.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

/// Pages through `path` (`?limit=` given) collecting `key`'s ids; returns them and the pages.
async fn page_through(app: &App, path: &str, key: &str, limit: usize) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut url = format!("{path}?limit={limit}");
        if let Some(after) = &after {
            url.push_str(&format!("&after={after}"));
        }
        let answer = app.admin(Method::GET, &url, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{url}: {:?}", answer.body);
        pages += 1;
        let rows = answer.data()[key].as_array().expect("rows").clone();
        assert!(rows.len() <= limit, "{url}: {} rows", rows.len());
        let id_key = if key == "contests" { "id" } else { "entryId" };
        let page_ids: Vec<String> = rows
            .iter()
            .map(|row| row[id_key].as_str().unwrap().to_owned())
            .collect();
        match answer.data()["next"].as_str() {
            Some(next) => {
                assert_eq!(rows.len(), limit, "a page before the last is full");
                assert_eq!(Some(next), page_ids.last().map(String::as_str));
                after = Some(next.to_owned());
            }
            None => {
                assert!(answer.data()["next"].is_null());
                ids.extend(page_ids);
                return (ids, pages);
            }
        }
        ids.extend(page_ids);
    }
}

#[tokio::test]
async fn contests_and_entries_page_through_every_row_once_in_id_order() {
    let app = App::receiver_only().await;
    // 103 contests (the limit is at most 100, so the largest page cannot hold them all).
    let mut created = BTreeSet::new();
    for i in 0..103 {
        let contest = app
            .create_contest(json!({ "id": format!("page-{i:03}") }))
            .await;
        created.insert(contest.id);
    }
    let (ids, pages) = page_through(&app, "/api/contests", "contests", 100).await;
    assert_eq!(pages, 2);
    assert_eq!(ids.len(), 103, "no contest twice");
    assert_eq!(ids.iter().cloned().collect::<BTreeSet<_>>(), created);
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "id order");
    let (small, pages) = page_through(&app, "/api/contests", "contests", 7).await;
    assert_eq!((small.len(), pages), (103, 15));
    assert_eq!(small, ids);

    // The default page is 25 and a contest's answer is the GET answer.
    let first = app.admin(Method::GET, "/api/contests", None).await;
    let rows = first.data()["contests"].as_array().unwrap();
    assert_eq!(rows.len(), 25);
    assert_eq!(first.data()["next"], rows[24]["id"]);
    assert_eq!(rows[0], contest_state(&app, "page-000").await);

    // 105 entries of one contest, and one of another contest that must not show.
    let entries_path = "/api/contests/page-000/entries";
    let mut entry_ids = BTreeSet::new();
    for i in 0..105 {
        let answer = send(
            &app,
            Method::POST,
            entries_path,
            &json!({ "email": format!("person{i}@example.com") }).to_string(),
        )
        .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
        entry_ids.insert(answer.data()["entryId"].as_str().unwrap().to_owned());
    }
    let other = send(
        &app,
        Method::POST,
        "/api/contests/page-001/entries",
        r#"{"email": "elsewhere@example.com"}"#,
    )
    .await;
    assert_eq!(other.status, StatusCode::CREATED);
    let (ids, pages) = page_through(&app, entries_path, "entries", 100).await;
    assert_eq!(pages, 2);
    assert_eq!(ids.len(), 105);
    assert_eq!(ids.iter().cloned().collect::<BTreeSet<_>>(), entry_ids);
    let (small, _) = page_through(&app, entries_path, "entries", 10).await;
    assert_eq!(small, ids);
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "id order");

    // Bad paging is a 400 naming the parameter.
    for (query, field) in [
        ("limit=101", "limit"),
        ("limit=0", "limit"),
        ("limit=ten", "limit"),
        ("after=not%20an%20id", "after"),
    ] {
        let answer = app
            .admin(Method::GET, &format!("/api/contests?{query}"), None)
            .await;
        assert_refused(&answer, field, query);
    }
    for (query, field) in [("limit=1000", "limit"), ("after=pur_x", "after")] {
        let answer = app
            .admin(Method::GET, &format!("{entries_path}?{query}"), None)
            .await;
        assert_refused(&answer, field, query);
    }
    let unknown = app
        .admin(Method::GET, "/api/contests/nope/entries", None)
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn the_lists_are_index_backed_keyset_scans() {
    let app = App::receiver_only().await;
    app.create_contest(json!({"id": "plan"})).await;
    let pool = app.env.pool().await;
    // Postgres may choose a sequential scan on tiny tables; forbid it to see which index the
    // query can use.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET LOCAL enable_seqscan = off")
        .execute(&mut *tx)
        .await
        .unwrap();
    // The query of `shared::db::entries::list`, with its parameters.
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT id FROM entries WHERE contest_id = $1 AND erased_at IS NULL \
         AND ($2::text IS NULL OR id > $2) ORDER BY id LIMIT $3",
    )
    .bind("plan")
    .bind("ent_a")
    .bind(26_i64)
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    let plan = plan.join("\n");
    assert!(plan.contains("entries_by_contest"), "{plan}");
    assert!(!plan.contains("Sort"), "rows come in index order: {plan}");
    tx.rollback().await.unwrap();
    pool.close().await;
    app.stop().await;
}
