//! Erasure at a person's request (`DELETE /api/contests/:id/entries/:entryId`), end to end with
//! real workers: the person is gone from the entry, its purchases and every lookup, the books
//! still balance, a later webhook for the same email starts a new entry from zero, and an
//! erasure racing worker batches loses no points and gives no email back.

mod common;

use std::{collections::BTreeSet, time::Duration};

use common::{assert_books_balance, wait_for_reversals, Events};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use shared::amqp::Topology;
use testkit::{broker, wait, App};

/// The entry's answer of the admin API (`None` on 404).
async fn entry(app: &App, contest: &str, entry: &str) -> Option<Value> {
    let answer = app
        .admin(
            Method::GET,
            &format!("/api/contests/{contest}/entries/{entry}"),
            None,
        )
        .await;
    match answer.status {
        StatusCode::OK => Some(answer.data().clone()),
        StatusCode::NOT_FOUND => None,
        other => panic!("GET entry: {other} {:?}", answer.body),
    }
}

async fn erase(app: &App, contest: &str, entry: &str) -> testkit::app::Answer {
    app.admin(
        Method::DELETE,
        &format!("/api/contests/{contest}/entries/{entry}"),
        None,
    )
    .await
}

#[tokio::test]
async fn erasure_forgets_the_person_keeps_the_books_and_a_later_webhook_starts_from_zero() {
    let app = App::with_workers(1).await;
    let contest = app
        .create_contest(json!({"referral": {"advocatePoints": 10, "friendPoints": 5}}))
        .await;
    let id = contest.id.clone();

    // Jane buys twice; each answer names her entry before the worker has run.
    let first = app
        .purchase(
            &contest,
            json!({"email": " Jane@Example.com", "orderId": "E-1", "amount": "79.99"}),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    let jane = first.data()["entryId"].as_str().unwrap().to_owned();
    assert!(jane.starts_with("ent_"), "{jane}");
    let second = app
        .purchase(
            &contest,
            json!({"email": "jane@example.com", "orderId": "E-2", "amount": "20.00"}),
        )
        .await;
    assert_eq!(second.data()["entryId"], jane.as_str());
    let recorded = app.recorded(&contest, "E-1", None).await;
    assert_eq!(recorded["entryId"], jane.as_str());
    assert_eq!(recorded["email"], "jane@example.com");
    app.recorded(&contest, "E-2", None).await;

    // Her signup gives her a name and a phone; her code brings Sam (+10 for her, +5 for Sam).
    let signup = app
        .post(
            &format!("/api/webhooks/signup/{id}"),
            &[("x-webhook-secret", contest.secret.as_str())],
            json!({"email": "jane@example.com", "name": "Jane Doe", "phone": "+1 555 0100"})
                .to_string(),
        )
        .await;
    assert_eq!(signup.data()["entryId"], jane.as_str());
    wait::until("signup applied", Duration::from_secs(30), || async {
        let data = entry(&app, &id, &jane).await?;
        (data["name"] == "Jane Doe").then_some(())
    })
    .await;
    let code = entry(&app, &id, &jane).await.unwrap()["referralCode"]
        .as_str()
        .unwrap()
        .to_owned();
    let sam = app
        .admin(
            Method::POST,
            &format!("/api/contests/{id}/entries"),
            Some(json!({"email": "sam@example.com", "referralCode": code})),
        )
        .await;
    assert_eq!(sam.status, StatusCode::CREATED, "{:?}", sam.body);
    assert_eq!(sam.data()["referredBy"], jane.as_str());
    let sam_id = sam.data()["entryId"].as_str().unwrap().to_owned();
    // An idempotent adjustment stores its answer, which quotes her email.
    let adjusted = app
        .http
        .post(format!(
            "{}/api/contests/{id}/entries/{jane}/points",
            app.admin_url()
        ))
        .bearer_auth(&app.env.admin_token)
        .header("idempotency-key", "goodwill-1")
        .json(&json!({"points": 3, "reason": "goodwill"}))
        .send()
        .await
        .unwrap();
    assert_eq!(adjusted.status(), StatusCode::CREATED);
    let before = entry(&app, &id, &jane).await.unwrap();
    assert_eq!(before["points"], 80 + 20 + 10 + 3);
    let total = app.total_points(&contest).await;
    assert_eq!(total, 113 + 5);

    // Erase her.
    let erased = erase(&app, &id, &jane).await;
    assert_eq!(erased.status, StatusCode::OK, "{:?}", erased.body);
    assert_eq!(erased.data(), &json!({"entryId": jane, "erased": true}));
    let again = erase(&app, &id, &jane).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(again.error_code(), "not_found");
    assert!(entry(&app, &id, &jane).await.is_none());
    let ledger = app
        .admin(
            Method::GET,
            &format!("/api/contests/{id}/entries/{jane}/ledger"),
            None,
        )
        .await;
    assert_eq!(ledger.status, StatusCode::NOT_FOUND);

    // Her purchases are unlinked from her; their figures stay.
    for (order, points) in [("E-1", 80), ("E-2", 20)] {
        let lookup = app.lookup(&contest, order, None).await;
        assert_eq!(lookup.status, StatusCode::OK);
        let data = lookup.data();
        assert!(data["email"].is_null(), "{data}");
        assert!(data["entryId"].is_null(), "{data}");
        assert_eq!(data["pointsAwarded"], points);
        assert_eq!(data["status"], "awarded");
    }
    // Off the leaderboard and the list; Sam stays.
    let board = app.leaderboard(&contest).await;
    assert_eq!(board.len(), 1, "{board:?}");
    assert_eq!(board[0]["entryId"], sam_id.as_str());
    assert_eq!(board[0]["rank"], 1);
    let listed = app
        .admin(Method::GET, &format!("/api/contests/{id}/entries"), None)
        .await;
    let listed: Vec<&str> = listed.data()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["entryId"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [sam_id.as_str()]);
    // Totals stay.
    assert_eq!(app.total_points(&contest).await, total);

    // In the database: nothing carries her email, name, phone or derived id any more.
    let pool = app.env.pool().await;
    let (erased_id, points, email, name, phone, new_code): (
        String,
        i64,
        Option<String>,
        Option<String>,
        Option<String>,
        String,
    ) = sqlx::query_as(
        "SELECT id, points, email, name, phone, referral_code FROM entries \
         WHERE erased_at IS NOT NULL",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(erased_id.starts_with("erased_"), "{erased_id}");
    assert_eq!(points, 113);
    assert_eq!((email, name, phone), (None, None, None));
    assert_ne!(new_code, code);
    let dump: String = sqlx::query_scalar(
        "SELECT concat_ws(' ', \
            (SELECT string_agg(e::text, ' ') FROM entries e), \
            (SELECT string_agg(p::text, ' ') FROM purchases p), \
            (SELECT string_agg(l::text, ' ') FROM points_ledger l), \
            (SELECT string_agg(k::text, ' ') FROM adjustment_keys k))",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    for trace in ["jane@example.com", "Jane Doe", "555 0100", jane.as_str()] {
        assert!(!dump.contains(trace), "{trace} still stored");
    }
    assert!(dump.contains(&erased_id), "the books name the erased entry");
    let referred_by: Option<String> =
        sqlx::query_scalar("SELECT referred_by FROM entries WHERE id = $1")
            .bind(&sam_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(referred_by.as_deref(), Some(erased_id.as_str()));

    // Her old referral code credits nobody now.
    let tom = app
        .admin(
            Method::POST,
            &format!("/api/contests/{id}/entries"),
            Some(json!({"email": "tom@example.com", "referralCode": code})),
        )
        .await;
    assert_eq!(tom.status, StatusCode::CREATED);
    assert_eq!(tom.data()["points"], 0);
    assert!(tom.data()["referredBy"].is_null());

    // She comes back: a new entry under the same derived id, from zero.
    let back = app
        .purchase(
            &contest,
            json!({"email": "jane@example.com", "orderId": "E-3", "amount": "10"}),
        )
        .await;
    assert_eq!(back.data()["entryId"], jane.as_str());
    let recorded = app.recorded(&contest, "E-3", None).await;
    assert_eq!(recorded["entryId"], jane.as_str());
    assert_eq!(recorded["email"], "jane@example.com");
    let fresh = entry(&app, &id, &jane).await.expect("a new entry");
    assert_eq!(fresh["points"], 10);
    assert!(fresh["name"].is_null());
    assert_ne!(fresh["referralCode"], code.as_str());
    let fresh_ledger = app
        .admin(
            Method::GET,
            &format!("/api/contests/{id}/entries/{jane}/ledger"),
            None,
        )
        .await;
    assert_eq!(fresh_ledger.data()["changes"].as_array().unwrap().len(), 1);

    // A refund of an order from before the erasure still takes its points back, from the erased
    // entry that earned them; the new entry keeps its own.
    let refund = app
        .post(
            &format!("/api/webhooks/refund/{id}"),
            &[("x-webhook-secret", contest.secret.as_str())],
            json!({"orderId": "E-2"}).to_string(),
        )
        .await;
    assert_eq!(refund.status, StatusCode::OK, "{:?}", refund.body);
    wait_for_reversals(&pool, 1).await;
    let erased_points: i64 = sqlx::query_scalar("SELECT points FROM entries WHERE id = $1")
        .bind(&erased_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(erased_points, 113 - 20);
    assert_eq!(entry(&app, &id, &jane).await.unwrap()["points"], 10);
    let lookup = app.lookup(&contest, "E-2", None).await;
    assert_eq!(lookup.data()["status"], "refunded");
    assert!(lookup.data()["email"].is_null());
    assert_eq!(app.total_points(&contest).await, total - 20 + 10);
    assert!(assert_books_balance(&pool).await >= 4);
    pool.close().await;
    app.stop().await;
}

#[tokio::test]
async fn erasures_racing_worker_batches_lose_no_points_and_give_back_no_email() {
    let app = App::with_workers(2).await;
    let contest = app.create_contest(json!({})).await;
    let events = Events::new(&contest);
    let jane = events.entry("jane@example.com");
    let prefix = app.env.amqp_prefix.clone();
    let pool = app.env.pool().await;

    // The purchases go straight to the queue (the receiver's path adds nothing here): many
    // small batches for one person while her entry is erased again and again.
    const ORDERS: i64 = 600;
    let envelopes: Vec<_> = (0..ORDERS)
        .map(|i| events.purchase(&format!("R-{i}"), "jane@example.com", "1.00"))
        .collect();
    let publisher = tokio::spawn({
        let prefix = prefix.clone();
        async move {
            for chunk in envelopes.chunks(20) {
                broker::publish_events(&prefix, chunk).await;
            }
        }
    });
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM purchases")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let mut erasures_mid_stream = 0;
    loop {
        let recorded_before = count().await;
        if recorded_before >= ORDERS {
            break;
        }
        let answer = erase(&app, &contest.id, &jane).await;
        match answer.status {
            StatusCode::OK if count().await < ORDERS => erasures_mid_stream += 1,
            StatusCode::OK | StatusCode::NOT_FOUND => {}
            other => panic!("erasure answered {other}: {:?}", answer.body),
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    publisher.await.unwrap();
    // The premise: erasures landed while purchases for the same person were being awarded.
    assert!(
        erasures_mid_stream >= 2,
        "only {erasures_mid_stream} erasures mid-stream"
    );

    // Nothing lost, nothing doubled: every purchase recorded once with its point, and the
    // entries' points add up to exactly that.
    assert_eq!(count().await, ORDERS);
    assert_eq!(app.total_points(&contest).await, ORDERS);
    // Every purchase belongs to an erased entry or to her one live entry, which holds exactly
    // its purchases' points; every erased entry holds exactly its own.
    let rows: Vec<(String, Option<String>, bool, i64, i64)> = sqlx::query_as(
        "SELECT e.id, e.email, e.erased_at IS NOT NULL, e.points, \
         (SELECT COUNT(*) FROM purchases p WHERE p.entry_id = e.id) FROM entries e",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let live: Vec<_> = rows.iter().filter(|row| !row.2).collect();
    assert!(live.len() <= 1, "{live:?}");
    for (id, email, erased, points, purchases) in &rows {
        assert_eq!(points, purchases, "{id}");
        if *erased {
            assert!(email.is_none(), "an erased entry got an email back: {id}");
            assert!(id.starts_with("erased_"), "{id}");
        } else {
            assert_eq!(id, &jane);
            assert_eq!(email.as_deref(), Some("jane@example.com"));
        }
    }
    let erased: BTreeSet<_> = rows.iter().filter(|row| row.2).map(|row| &row.0).collect();
    assert!(erased.len() >= erasures_mid_stream, "{erased:?}");
    eprintln!(
        "{erasures_mid_stream} erasures while purchases were awarded; {} erased entries, {} live",
        erased.len(),
        live.len()
    );
    assert_books_balance(&pool).await;
    // Nothing was dead-lettered: a batch that met an erasure was retried, not refused.
    let topology = Topology::new(&prefix);
    assert_eq!(broker::ready_messages(&topology.dead_letter_queue).await, 0);
    pool.close().await;
    app.stop().await;
}
