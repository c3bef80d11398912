//! Synchronous answers (`Prefer: wait=N`, a contest's `syncResponses`), end to end against the
//! real receiver, workers, RabbitMQ and Postgres: the answer carries what the worker committed,
//! the lookup already shows it when the answer arrives, repeats answer `alreadyExists`, and
//! whatever goes wrong (no worker, a lost broker connection) the answer is the usual `accepted`
//! within 5 s, with nothing lost.

use std::{
    collections::HashMap,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use testkit::{
    app::{Answer, RunningReceiver, TestContest},
    deliveries::{spread_over_workers, DeliveryLog},
    env::amqp_url,
    process::ChildProcess,
    proxy::Proxy,
    wait, App, TestEnv,
};

/// The contract: every answer, waiting or not, within 5 s.
const ANSWER_LIMIT: Duration = Duration::from_secs(5);

/// Generous bound for anything that should take a second or two.
const PATIENCE: Duration = Duration::from_secs(60);

fn purchase_path(contest: &TestContest) -> String {
    format!("/api/webhooks/purchase/{}", contest.id)
}

/// POSTs `body` to `path` with the contest's secret and, when given, a `Prefer` header; returns
/// the answer and how long it took.
async fn post(
    app: &App,
    contest: &TestContest,
    path: &str,
    prefer: Option<&str>,
    body: Value,
) -> (Answer, Duration) {
    let mut headers = vec![("x-webhook-secret", contest.secret.as_str())];
    if let Some(prefer) = prefer {
        headers.push(("prefer", prefer));
    }
    let started = Instant::now();
    let answer = app.post(path, &headers, body.to_string()).await;
    let took = started.elapsed();
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert!(took < ANSWER_LIMIT, "answered after {took:?}");
    (answer, took)
}

/// A purchase with `Prefer: wait=4`.
async fn purchase_waiting(app: &App, contest: &TestContest, body: Value) -> Answer {
    post(app, contest, &purchase_path(contest), Some("wait=4"), body)
        .await
        .0
}

fn applied(answer: &Answer) -> Option<&str> {
    answer
        .headers
        .get("preference-applied")
        .map(|value| value.to_str().expect("visible ASCII"))
}

/// True when the answer is the worker's outcome rather than `accepted`.
fn answered(answer: &Answer) -> bool {
    answer.data().get("alreadyExists").is_some()
}

#[tokio::test]
async fn a_first_purchase_answers_its_points_and_the_lookup_already_shows_them() {
    let app = App::with_workers(1).await;
    let contest = app.create_contest(json!({})).await;
    let body = json!({"email": "Jane@Example.com", "orderId": "A-1", "amount": "79.99"});

    let first = purchase_waiting(&app, &contest, body.clone()).await;
    assert_eq!(applied(&first), Some("wait=4"));
    let data = first.data();
    assert_eq!(data["pointsAwarded"], 80, "{data}");
    assert_eq!(data["alreadyExists"], false);
    assert_eq!(data["status"], "awarded");
    assert_eq!(data["message"], "Purchase recorded successfully");
    assert_eq!(data["orderId"], "A-1");
    // Committed before the answer was sent: the lookup and the leaderboard show it at once,
    // without waiting.
    let lookup = app.lookup(&contest, "A-1", None).await;
    assert_eq!(lookup.status, StatusCode::OK, "{:?}", lookup.body);
    assert_eq!(lookup.data()["pointsAwarded"], 80);
    assert_eq!(lookup.data()["purchaseId"], data["purchaseId"]);
    assert_eq!(lookup.data()["entryId"], data["entryId"]);
    let board = app.leaderboard(&contest).await;
    assert_eq!(board[0]["entryId"], data["entryId"]);
    assert_eq!(board[0]["points"], 80);

    let repeat = purchase_waiting(&app, &contest, body.clone()).await;
    let again = repeat.data();
    assert_eq!(again["pointsAwarded"], 0, "{again}");
    assert_eq!(again["alreadyExists"], true);
    assert_eq!(again["message"], "Purchase already recorded");
    assert_eq!(again["status"], "awarded");
    assert_eq!(again["purchaseId"], data["purchaseId"]);
    assert_eq!(again["entryId"], data["entryId"]);

    // Without Prefer the answer is the usual one, and says nothing about a preference.
    let (plain, _) = post(&app, &contest, &purchase_path(&contest), None, body).await;
    assert_eq!(plain.data()["status"], "accepted");
    assert_eq!(applied(&plain), None);
    assert_eq!(app.total_points(&contest).await, 80);
    app.stop().await;
}

#[tokio::test]
async fn a_repeat_after_erasure_names_no_entry_like_the_lookup() {
    let app = App::with_workers(1).await;
    let contest = app.create_contest(json!({})).await;
    let body = json!({"email": "jane@example.com", "orderId": "E-1", "amount": "10"});
    let first = purchase_waiting(&app, &contest, body.clone()).await;
    let entry = first.data()["entryId"]
        .as_str()
        .expect("entry id")
        .to_owned();
    assert_eq!(first.data()["alreadyExists"], false, "{:?}", first.body);

    let erased = app
        .admin(
            Method::DELETE,
            &format!("/api/contests/{}/entries/{entry}", contest.id),
            None,
        )
        .await;
    assert_eq!(erased.status, StatusCode::OK, "{:?}", erased.body);
    let lookup = app.lookup(&contest, "E-1", None).await;
    assert_eq!(lookup.data()["entryId"], Value::Null, "{:?}", lookup.body);

    // The repeat reads the stored purchase: unlinked from the person, as the lookup shows it.
    let repeat = purchase_waiting(&app, &contest, body).await;
    let again = repeat.data();
    assert_eq!(again["alreadyExists"], true, "{again}");
    assert_eq!(again["pointsAwarded"], 0);
    assert_eq!(again["entryId"], Value::Null, "{again}");
    assert_eq!(again["purchaseId"], first.data()["purchaseId"]);
    assert_eq!(again["status"], "awarded");
    app.stop().await;
}

#[tokio::test]
async fn two_concurrent_duplicates_each_get_their_own_answer() {
    let app = App::with_workers(1).await;
    let contest = app.create_contest(json!({})).await;
    for order in 0..5 {
        let body = json!({"email": format!("d{order}@example.com"), "orderId": format!("D-{order}"), "amount": "10"});
        let (a, b) = tokio::join!(
            purchase_waiting(&app, &contest, body.clone()),
            purchase_waiting(&app, &contest, body.clone())
        );
        let mut seen: Vec<(bool, i64)> = [&a, &b]
            .iter()
            .map(|answer| {
                assert!(answered(answer), "{:?}", answer.body);
                (
                    answer.data()["alreadyExists"].as_bool().unwrap(),
                    answer.data()["pointsAwarded"].as_i64().unwrap(),
                )
            })
            .collect();
        seen.sort();
        assert_eq!(seen, [(false, 10), (true, 0)], "order D-{order}");
        assert_eq!(a.data()["purchaseId"], b.data()["purchaseId"]);
    }
    assert_eq!(app.total_points(&contest).await, 50);
    app.stop().await;
}

#[tokio::test]
async fn a_signup_with_a_referral_code_answers_the_bonus_paid() {
    let app = App::with_workers(1).await;
    let contest = app
        .create_contest(json!({"referral": {"advocatePoints": 10, "friendPoints": 5}}))
        .await;
    let advocate = app
        .admin(
            Method::POST,
            &format!("/api/contests/{}/entries", contest.id),
            Some(json!({"email": "advocate@example.com"})),
        )
        .await;
    assert_eq!(advocate.status, StatusCode::CREATED, "{:?}", advocate.body);
    let code = advocate.data()["referralCode"].as_str().unwrap().to_owned();
    let path = format!("/api/webhooks/signup/{}", contest.id);
    let body = json!({"email": "friend@example.com", "referralCode": code});

    let (first, _) = post(&app, &contest, &path, Some("wait=4"), body.clone()).await;
    assert_eq!(applied(&first), Some("wait=4"));
    let data = first.data();
    assert_eq!(
        data["pointsAwarded"],
        json!({"advocate": 10, "friend": 5}),
        "{data}"
    );
    assert_eq!(data["alreadyExists"], false);
    assert_eq!(data["status"], "recorded");
    // Committed: both entries hold their bonus already.
    let friend = app
        .admin(
            Method::GET,
            &format!(
                "/api/contests/{}/entries/{}",
                contest.id,
                data["entryId"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(friend.data()["points"], 5, "{:?}", friend.body);
    assert_eq!(friend.data()["email"], "friend@example.com");

    let (again, _) = post(&app, &contest, &path, Some("wait=4"), body).await;
    assert_eq!(
        again.data()["pointsAwarded"],
        json!({"advocate": 0, "friend": 0})
    );
    assert_eq!(again.data()["alreadyExists"], true);
    assert_eq!(again.data()["entryId"], data["entryId"]);
    assert_eq!(app.total_points(&contest).await, 15);
    app.stop().await;
}

#[tokio::test]
async fn a_refund_answers_what_it_reversed_and_pending_before_its_purchase() {
    let app = App::with_workers(1).await;
    let contest = app.create_contest(json!({})).await;
    let refund = format!("/api/webhooks/refund/{}", contest.id);

    // Before its purchase: kept, pending.
    let (early, _) = post(
        &app,
        &contest,
        &refund,
        Some("wait=4"),
        json!({"orderId": "B-1"}),
    )
    .await;
    let data = early.data();
    assert_eq!(data["status"], "pending", "{data}");
    assert_eq!(data["purchaseId"], Value::Null);
    assert_eq!(data["pointsReversed"], 0);
    assert_eq!(data["alreadyExists"], false);
    assert_eq!(data["refundId"], "full");
    assert_eq!(data["kind"], "refund");

    // A partial refund of a recorded purchase: what it took back.
    purchase_waiting(
        &app,
        &contest,
        json!({"email": "jane@example.com", "orderId": "A-1", "amount": "79.99"}),
    )
    .await;
    let partial = json!({"orderId": "A-1", "refundId": "R-1", "amount": "40.00"});
    let (applied_now, _) = post(&app, &contest, &refund, Some("wait=4"), partial.clone()).await;
    let data = applied_now.data();
    assert_eq!(data["status"], "applied", "{data}");
    assert_eq!(data["pointsReversed"], 40);
    assert_eq!(data["purchaseStatus"], "partially_refunded");
    assert_eq!(data["alreadyExists"], false);
    assert_eq!(data["message"], "Refund applied");
    let lookup = app.lookup(&contest, "A-1", None).await;
    assert_eq!(lookup.data()["pointsReversed"], 40);
    assert_eq!(lookup.data()["purchaseId"], data["purchaseId"]);
    let (repeat, _) = post(&app, &contest, &refund, Some("wait=4"), partial).await;
    assert_eq!(repeat.data()["status"], "duplicate");
    assert_eq!(repeat.data()["alreadyExists"], true);
    assert_eq!(repeat.data()["pointsReversed"], 0);

    // The held refund lands with its purchase, in the same transaction: the purchase's answer
    // says what it earned and the status the refund left it in.
    let late = purchase_waiting(
        &app,
        &contest,
        json!({"email": "sam@example.com", "orderId": "B-1", "amount": "50"}),
    )
    .await;
    assert_eq!(late.data()["pointsAwarded"], 50, "{:?}", late.body);
    assert_eq!(late.data()["alreadyExists"], false);
    assert_eq!(late.data()["status"], "refunded");
    let lookup = app.lookup(&contest, "B-1", None).await;
    assert_eq!(lookup.data()["status"], "refunded");
    assert_eq!(lookup.data()["pointsReversed"], 50);
    assert_eq!(app.total_points(&contest).await, 40);
    app.stop().await;
}

#[tokio::test]
async fn a_sync_responses_contest_waits_without_prefer() {
    let app = App::with_workers(1).await;
    let contest = app.create_contest(json!({"syncResponses": true})).await;
    assert_eq!(contest.data["syncResponses"], true);
    let body = |order: &str| json!({"email": "jane@example.com", "orderId": order, "amount": "5"});

    let (waited, _) = post(&app, &contest, &purchase_path(&contest), None, body("S-1")).await;
    assert_eq!(applied(&waited), Some("wait=3"));
    assert_eq!(waited.data()["pointsAwarded"], 5, "{:?}", waited.body);
    let signup = format!("/api/webhooks/signup/{}", contest.id);
    let (signed, _) = post(
        &app,
        &contest,
        &signup,
        None,
        json!({"email": "sam@example.com"}),
    )
    .await;
    assert_eq!(applied(&signed), Some("wait=3"));
    assert_eq!(signed.data()["status"], "recorded", "{:?}", signed.body);

    // The sender may still ask for less, or for nothing at all.
    let (shorter, _) = post(
        &app,
        &contest,
        &purchase_path(&contest),
        Some("wait=1"),
        body("S-2"),
    )
    .await;
    assert_eq!(applied(&shorter), Some("wait=1"));
    let (at_once, _) = post(
        &app,
        &contest,
        &purchase_path(&contest),
        Some("wait=0"),
        body("S-3"),
    )
    .await;
    assert_eq!(applied(&at_once), None);
    assert_eq!(at_once.data()["status"], "accepted");
    let (async_, _) = post(
        &app,
        &contest,
        &purchase_path(&contest),
        Some("respond-async"),
        body("S-4"),
    )
    .await;
    assert_eq!(async_.data()["status"], "accepted");

    // Switched off, the contest answers at once again.
    let patched = app
        .admin(
            Method::PATCH,
            &format!("/api/contests/{}", contest.id),
            Some(json!({"syncResponses": false})),
        )
        .await;
    assert_eq!(patched.data()["syncResponses"], false, "{:?}", patched.body);
    let (plain, _) = post(&app, &contest, &purchase_path(&contest), None, body("S-5")).await;
    assert_eq!(applied(&plain), None);
    assert_eq!(plain.data()["status"], "accepted");
    let got = app
        .admin(Method::GET, &format!("/api/contests/{}", contest.id), None)
        .await;
    assert_eq!(got.data()["syncResponses"], false);
    app.stop().await;
}

#[tokio::test]
async fn prefer_wait_is_capped_at_four_and_malformed_preferences_are_ignored() {
    let app = App::with_workers(1).await;
    let contest = app.create_contest(json!({})).await;
    let body = |order: &str| json!({"email": "jane@example.com", "orderId": order, "amount": "5"});
    let path = purchase_path(&contest);

    let (capped, _) = post(&app, &contest, &path, Some("wait=10"), body("P-1")).await;
    assert_eq!(applied(&capped), Some("wait=4"));
    assert!(answered(&capped), "{:?}", capped.body);
    let (listed, _) = post(
        &app,
        &contest,
        &path,
        Some("respond-async, WAIT = 2; x=y"),
        body("P-2"),
    )
    .await;
    assert_eq!(applied(&listed), Some("wait=2"));
    assert!(answered(&listed), "{:?}", listed.body);
    for malformed in [
        "wait=soon",
        "wait=-1",
        "wait",
        "wait=1.5",
        "=3",
        "return=minimal",
    ] {
        let (answer, _) = post(&app, &contest, &path, Some(malformed), body("P-3")).await;
        assert_eq!(applied(&answer), None, "{malformed}");
        assert_eq!(answer.data()["status"], "accepted", "{malformed}");
    }
    app.stop().await;
}

#[tokio::test]
async fn without_a_worker_the_answer_is_accepted_within_the_wait_and_nothing_is_lost() {
    let mut app = App::receiver_only().await;
    let contest = app.create_contest(json!({})).await;
    let path = purchase_path(&contest);
    for (order, prefer) in [("N-1", "wait=1"), ("N-2", "wait=4"), ("N-3", "wait=10")] {
        let (answer, took) = post(
            &app,
            &contest,
            &path,
            Some(prefer),
            json!({"email": "jane@example.com", "orderId": order, "amount": "7"}),
        )
        .await;
        assert_eq!(answer.data()["status"], "accepted", "{:?}", answer.body);
        assert!(applied(&answer).is_some());
        println!("  {prefer} without a worker: accepted after {took:?}");
    }
    app.add_worker().await;
    for order in ["N-1", "N-2", "N-3"] {
        assert_eq!(
            app.recorded(&contest, order, None).await["pointsAwarded"],
            7
        );
    }
    assert_eq!(app.total_points(&contest).await, 21);
    app.stop().await;
}

/// The receiver's broker connection is cut while a request waits: it still gets its answer (the
/// event was confirmed: `accepted`) within 5 s, nothing is lost, and once the connection is back
/// the outcomes flow again (the new channel consumes replies again).
#[tokio::test]
async fn a_cut_broker_connection_during_a_wait_still_answers_within_five_seconds() {
    let env = TestEnv::new();
    let proxy = Proxy::in_front_of(&amqp_url()).await;
    let mut config = env.receiver_config();
    config.common.amqp_url = proxy.url_for(&config.common.amqp_url);
    let receiver = RunningReceiver::start(config).await;
    let app = App {
        env,
        receivers: vec![receiver],
        workers: Vec::new(),
        http: reqwest::Client::new(),
    };
    let contest = app.create_contest(json!({})).await;
    let app = Arc::new(app);
    let connections = proxy.connections_accepted();

    let waiting = tokio::spawn({
        let (app, contest) = (app.clone(), contest.clone());
        async move {
            post(
                &app,
                &contest,
                &purchase_path(&contest),
                Some("wait=4"),
                json!({"email": "jane@example.com", "orderId": "L-1", "amount": "3"}),
            )
            .await
        }
    });
    // Confirmed and waiting (no worker runs) when the connection is cut.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "premise: the request was still waiting"
    );
    proxy.cut();
    let (answer, took) = waiting.await.expect("request task");
    assert_eq!(answer.data()["status"], "accepted", "{:?}", answer.body);
    assert_eq!(applied(&answer), Some("wait=4"));
    println!("  cut during a wait: accepted after {took:?}");

    proxy.restore();
    let ready = format!("{}/readyz", app.admin_url());
    wait::until("receiver reconnected", PATIENCE, || async {
        let answer = app.http.get(&ready).send().await.ok()?;
        (answer.status() == StatusCode::OK && proxy.connections_accepted() > connections)
            .then_some(())
    })
    .await;
    let mut app = Arc::try_unwrap(app).unwrap_or_else(|_| panic!("no request in flight"));
    app.add_worker().await;
    assert_eq!(
        app.recorded(&contest, "L-1", None).await["pointsAwarded"],
        3
    );
    let after = purchase_waiting(
        &app,
        &contest,
        json!({"email": "jane@example.com", "orderId": "L-2", "amount": "3"}),
    )
    .await;
    assert_eq!(after.data()["pointsAwarded"], 3, "{:?}", after.body);
    assert_eq!(app.total_points(&contest).await, 6);
    app.stop().await;
}

fn worker_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_worker"))
}

/// Four worker processes, every order sent three times at once with `Prefer: wait=4`: every
/// answer that carries an outcome matches what was committed (one new answer per order at most,
/// with the order's points; repeats 0), and the totals are exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_with_duplicates_answer_what_was_committed() {
    const ORDERS: usize = 150;
    const COPIES: usize = 3;
    let app = App::receiver_only().await;
    let contest = app.create_contest(json!({})).await;
    let logs: Vec<DeliveryLog> = (0..4).map(|_| DeliveryLog::new()).collect();
    let workers: Vec<ChildProcess> = logs
        .iter()
        .map(|log| {
            let (name, path) = log.env();
            ChildProcess::spawn(
                worker_binary(),
                &app.env,
                &[
                    ("WORKER_ADDR", "127.0.0.1:0"),
                    ("WORKER_BATCH_SIZE", "10"),
                    ("WORKER_BATCH_WAIT_MS", "5"),
                    (name, path.as_str()),
                ],
            )
        })
        .collect();
    let queue = format!("{}.events", app.env.amqp_prefix);
    wait::until("four consumers", PATIENCE, || async {
        let (connection, channel) = testkit::broker::channel().await;
        let consumers = shared::amqp::inspect(&channel, &queue)
            .await
            .ok()
            .map(|queue| queue.consumer_count());
        let _ = connection.close(200, "done".into()).await;
        (consumers >= Some(4)).then_some(())
    })
    .await;

    let app = Arc::new(app);
    let limit = Arc::new(tokio::sync::Semaphore::new(48));
    let mut requests = tokio::task::JoinSet::new();
    for order in 0..ORDERS {
        for _ in 0..COPIES {
            let (app, contest, limit) = (app.clone(), contest.clone(), limit.clone());
            requests.spawn(async move {
                let _slot = limit.acquire().await.expect("semaphore");
                let body = json!({
                    "email": format!("buyer{}@example.com", order % 20),
                    "orderId": format!("F-{order}"),
                    "amount": (10 + order).to_string(),
                });
                (order, purchase_waiting(&app, &contest, body).await)
            });
        }
    }
    let mut by_order: HashMap<usize, Vec<Answer>> = HashMap::new();
    while let Some(joined) = requests.join_next().await {
        let (order, answer) = joined.expect("request task");
        by_order.entry(order).or_default().push(answer);
    }

    // Drain, then audit against what was committed.
    wait::until("every order recorded", PATIENCE, || async {
        (app.purchase_count(&contest).await == ORDERS as i64).then_some(())
    })
    .await;
    let (mut new, mut repeats, mut accepted) = (0, 0, 0);
    for order in 0..ORDERS {
        let answers = &by_order[&order];
        assert_eq!(answers.len(), COPIES);
        let lookup = app.lookup(&contest, &format!("F-{order}"), None).await;
        let record = lookup.data();
        assert_eq!(record["pointsAwarded"], 10 + order as i64, "{record}");
        let mut firsts = 0;
        for answer in answers {
            if !answered(answer) {
                assert_eq!(answer.data()["status"], "accepted", "{:?}", answer.body);
                accepted += 1;
                continue;
            }
            let data = answer.data();
            assert_eq!(data["purchaseId"], record["purchaseId"], "{data}");
            assert_eq!(data["entryId"], record["entryId"], "{data}");
            if data["alreadyExists"] == false {
                firsts += 1;
                new += 1;
                assert_eq!(data["pointsAwarded"], record["pointsAwarded"], "{data}");
                assert_eq!(data["message"], "Purchase recorded successfully");
            } else {
                repeats += 1;
                assert_eq!(data["pointsAwarded"], 0, "{data}");
                assert_eq!(data["message"], "Purchase already recorded");
            }
        }
        assert!(
            firsts <= 1,
            "order F-{order}: {firsts} answers claim the first record"
        );
        if answers.iter().all(answered) {
            assert_eq!(
                firsts, 1,
                "order F-{order}: every copy answered, one must be new"
            );
        }
    }
    let expected: i64 = (0..ORDERS as i64).map(|order| 10 + order).sum();
    assert_eq!(app.total_points(&contest).await, expected);
    println!(
        "  four workers: {new} new, {repeats} repeats, {accepted} accepted (no outcome in time) \
         of {} answers",
        ORDERS * COPIES
    );
    // Premises: the outcomes really came back under four workers, and copies of the same order
    // reached different workers.
    assert!(new > 0 && repeats > 0, "premise: outcomes were answered");
    let spread = spread_over_workers(&logs.iter().collect::<Vec<_>>());
    let busy = logs.iter().filter(|log| !log.ids().is_empty()).count();
    println!("  four workers: {spread} orders had copies taken by two or more of {busy} workers");
    assert_eq!(busy, 4, "premise: all four workers took deliveries");
    assert!(
        spread > 0,
        "premise: copies of one order reached different workers"
    );

    for mut worker in workers {
        worker.terminate();
        assert_eq!(worker.wait().await, Some(0));
    }
    let app = Arc::try_unwrap(app).unwrap_or_else(|_| panic!("no request in flight"));
    app.stop().await;
}
