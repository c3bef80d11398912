//! End to end through the real receiver, RabbitMQ, worker(s) and Postgres: points are exact and
//! awarded exactly once.

use reqwest::{Method, StatusCode};
use serde_json::json;
use testkit::App;

#[tokio::test]
async fn a_79_99_purchase_awards_80_points_visible_in_lookup_and_leaderboard() {
    let app = App::with_workers(1).await;
    let contest = app.create_contest(json!({})).await;
    let accepted = app
        .purchase(
            &contest,
            json!({"email":"Jane@Example.com","orderId":"A-1","amount":"79.99"}),
        )
        .await;
    assert_eq!(accepted.status, StatusCode::OK, "{:?}", accepted.body);

    let recorded = app.recorded(&contest, "A-1", None).await;
    assert_eq!(recorded["pointsAwarded"], 80);
    assert_eq!(recorded["amount"], "79.99");
    assert_eq!(recorded["currency"], "USD");
    assert_eq!(recorded["status"], "awarded");
    assert_eq!(recorded["email"], "jane@example.com");
    assert_eq!(recorded["purchaseId"], accepted.data()["purchaseId"]);

    let board = app.leaderboard(&contest).await;
    assert_eq!(board.len(), 1);
    assert_eq!(board[0]["rank"], 1);
    assert_eq!(board[0]["points"], 80);
    assert_eq!(board[0]["entryId"], recorded["entryId"]);

    let entry = app
        .admin(
            Method::GET,
            &format!(
                "/api/contests/{}/entries/{}",
                contest.id,
                recorded["entryId"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(entry.status, StatusCode::OK);
    assert_eq!(entry.data()["points"], 80);
    app.stop().await;
}

#[tokio::test]
async fn a_lookup_before_the_purchase_is_recorded_is_404() {
    let app = App::receiver_only().await;
    let contest = app.create_contest(json!({})).await;
    let answer = app.lookup(&contest, "never-sent", None).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    let bad_source = app.lookup(&contest, "x", Some("paypal")).await;
    assert_eq!(bad_source.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad_source.error_field(), "source");
    app.stop().await;
}

#[tokio::test]
async fn duplicate_order_awards_points_once() {
    let app = App::with_workers(1).await;
    let contest = app.create_contest(json!({})).await;
    let body = json!({"email":"dup@example.com","orderId":"D-1","amount":"10"});
    let mut ids = Vec::new();
    for _ in 0..3 {
        let answer = app.purchase(&contest, body.clone()).await;
        assert_eq!(answer.status, StatusCode::OK);
        ids.push(answer.data()["purchaseId"].clone());
    }
    app.recorded(&contest, "D-1", None).await;
    // Again, after it was processed, and a marker order to know the worker got past it.
    let again = app.purchase(&contest, body.clone()).await;
    ids.push(again.data()["purchaseId"].clone());
    app.purchase(
        &contest,
        json!({"email":"marker@example.com","orderId":"M","amount":"1"}),
    )
    .await;
    app.recorded(&contest, "M", None).await;

    assert!(ids.windows(2).all(|pair| pair[0] == pair[1]));
    assert_eq!(app.purchase_count(&contest).await, 2);
    assert_eq!(app.total_points(&contest).await, 11);
    app.stop().await;
}

#[tokio::test]
async fn amounts_are_exact_and_every_rounding_mode_applies() {
    let app = App::with_workers(1).await;
    let nearest = app.create_contest(json!({"pointsPerUnit": 100})).await;
    let floor = app.create_contest(json!({"rounding": "floor"})).await;
    let ceil = app.create_contest(json!({"rounding": "ceil"})).await;
    let half = app.create_contest(json!({})).await;
    let cases = [
        (&nearest, json!("1.005"), 101),
        (&nearest, json!(0.1), 10),
        (&floor, json!("79.99"), 79),
        (&ceil, json!("79.01"), 80),
        (&half, json!("0.5"), 1),
        (&half, json!(79.99), 80),
    ];
    for (index, (contest, amount, _)) in cases.iter().enumerate() {
        let answer = app
            .purchase(
                contest,
                json!({"email":"r@example.com","orderId":format!("R-{index}"),"amount":amount}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    }
    for (index, (contest, amount, expected)) in cases.iter().enumerate() {
        let recorded = app.recorded(contest, &format!("R-{index}"), None).await;
        assert_eq!(
            recorded["pointsAwarded"], *expected,
            "{amount} in {}",
            contest.id
        );
    }
    // The amount is echoed exactly as sent, never through a float.
    assert_eq!(app.recorded(&nearest, "R-0", None).await["amount"], "1.005");
    app.stop().await;
}

#[tokio::test]
async fn emails_are_normalised_into_one_entry() {
    let app = App::with_workers(1).await;
    let contest = app.create_contest(json!({})).await;
    for (order, email) in [
        ("E-1", "  Alice@Example.COM"),
        ("E-2", "alice@example.com "),
        ("E-3", "ALICE@EXAMPLE.COM"),
    ] {
        let answer = app
            .purchase(
                &contest,
                json!({"email":email,"orderId":order,"amount":"2"}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    for order in ["E-1", "E-2", "E-3"] {
        app.recorded(&contest, order, None).await;
    }
    let board = app.leaderboard(&contest).await;
    assert_eq!(board.len(), 1, "{board:?}");
    assert_eq!(board[0]["email"], "alice@example.com");
    assert_eq!(board[0]["points"], 6);
    app.stop().await;
}

#[tokio::test]
async fn foreign_currency_converts_or_is_kept_as_unconvertible() {
    let app = App::with_workers(1).await;
    let contest = app
        .create_contest(json!({"exchangeRates": {"EUR": 1.08}}))
        .await;
    app.purchase(
        &contest,
        json!({"email":"f@example.com","orderId":"EUR-1","amount":"50","currency":"EUR"}),
    )
    .await;
    app.purchase(
        &contest,
        json!({"email":"f@example.com","orderId":"GBP-1","amount":"50","currency":"gbp"}),
    )
    .await;

    let eur = app.recorded(&contest, "EUR-1", None).await;
    assert_eq!(eur["pointsAwarded"], 54);
    assert_eq!(eur["status"], "awarded");
    assert_eq!(eur["currency"], "EUR");

    let gbp = app.recorded(&contest, "GBP-1", None).await;
    assert_eq!(gbp["pointsAwarded"], 0);
    assert_eq!(gbp["status"], "unconvertible_currency");
    assert_eq!(gbp["amount"], "50");
    assert_eq!(app.total_points(&contest).await, 54);
    app.stop().await;
}

#[tokio::test]
async fn three_workers_with_concurrent_duplicates_award_exact_totals() {
    let app = App::with_workers(3).await;
    let contest = app.create_contest(json!({})).await;
    let orders = 150;
    // Every order three times, sent concurrently so the copies land on different workers.
    let mut sends = Vec::new();
    for _copy in 0..3 {
        for order in 0..orders {
            let body = json!({"email":format!("buyer{}@example.com", order % 7),"orderId":format!("O-{order}"),"amount":"3.50"});
            sends.push(app.purchase(&contest, body));
        }
    }
    for answer in futures::future::join_all(sends).await {
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    }
    testkit::wait::until(
        "all orders recorded",
        std::time::Duration::from_secs(60),
        || async { (app.purchase_count(&contest).await == orders).then_some(()) },
    )
    .await;
    // 3.50 rounds to 4 (half away from zero) per order.
    assert_eq!(app.total_points(&contest).await, 4 * orders);
    app.stop().await;
}
