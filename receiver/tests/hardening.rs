//! Hostile and careless senders (issue 13), over real sockets against the real receiver, Postgres
//! and RabbitMQ: each case sends the bad input, asserts the exact answer, and checks that
//! nothing was lost or changed (what the queue holds, what the worker recorded).

mod common;

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use chrono::Utc;
use common::{
    connect_from, exchange, free_port, output_of, read_answer, receiver_process, request,
    socket_addr,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use testkit::{
    broker,
    receiver::{
        auth::{hmac, standard_webhooks},
        contest_cache::{MISS_QUERIES_PER_SEC, MISS_QUERY_BURST},
    },
    wait, App, TestEnv,
};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

const VALID: &str = r#"{"email":"buyer@example.com","orderId":"A-1","amount":"79.99"}"#;

/// Extra headers of one request.
type Headers<'a> = Vec<(&'a str, &'a str)>;

fn purchase_path(contest: &str) -> String {
    format!("/api/webhooks/purchase/{contest}")
}

/// Ready messages in the test's events queue: what the receiver has published.
async fn queued(app: &App) -> u32 {
    broker::ready_messages(&format!("{}.events", app.env.amqp_prefix)).await
}

/// Waits until the events queue holds exactly `expected` messages, then checks it stays so.
async fn assert_queued(app: &App, expected: u32) {
    wait::until("queue depth", Duration::from_secs(10), || async {
        (queued(app).await == expected).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(queued(app).await, expected, "nothing more was published");
}

/// Raises the soft open-files limit to at least `needed` (up to the hard limit), or fails
/// saying why: a test that cannot open its sockets must not pass by accident.
fn ensure_open_files(needed: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < needed {
            assert!(
                limit.rlim_max >= needed,
                "the hard open-files limit ({}) is below the {needed} this test needs",
                limit.rlim_max
            );
            limit.rlim_cur = needed;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
}

// ------------------------------------------------------------------------------------------
// Availability

/// Connections the attacker keeps stalled mid-body.
const STALLERS: usize = 1500;

/// The contract: thousands of connections from one address stall in the middle of a request
/// body (they are admitted, then send nothing more), and a valid webhook from another address
/// is still answered within 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_from_one_address_do_not_starve_another() {
    ensure_open_files(3 * STALLERS as u64 + 1024);
    let app = App::receiver_only().await;
    let contest = app.create_contest(json!({})).await;
    let config = app.env.receiver_config();
    // Premise: more stalled requests than the whole receiver has slots, so without a
    // per-address limit they would take every one of them.
    assert!(STALLERS > config.max_concurrency);
    let per_address = config.max_in_flight_per_address;
    assert!(per_address > 0 && per_address < config.max_concurrency);

    let target = socket_addr(app.public_url());
    let attacker = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    // A valid head, a body declared as 1000 bytes of which 9 ever arrive.
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: t\r\nX-Webhook-Secret: {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"email\":",
        purchase_path(&contest.id),
        contest.secret
    );
    let statuses: Arc<[AtomicUsize; 3]> = Arc::new(Default::default()); // 429, 408, other
    let started_stalling = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let mut stallers = Vec::new();
    for _ in 0..STALLERS {
        let (head, statuses, stop) = (head.clone(), statuses.clone(), stop.clone());
        let started_stalling = started_stalling.clone();
        stallers.push(tokio::spawn(async move {
            let mut first = true;
            // Stall, and stall again as soon as the receiver lets go: the attack lasts.
            while !stop.is_cancelled() {
                let Ok(mut stream) = connect_from(attacker, target).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                if stream.write_all(head.as_bytes()).await.is_err() {
                    continue;
                }
                if std::mem::take(&mut first) {
                    started_stalling.fetch_add(1, Ordering::Relaxed);
                }
                let answer = tokio::select! {
                    () = stop.cancelled() => break,
                    answer = read_answer(&mut stream, Duration::from_secs(30)) => answer,
                };
                match answer.map(|answer| answer.status) {
                    Ok(429) => {
                        statuses[0].fetch_add(1, Ordering::Relaxed);
                        // Refused at once: come back a little later, as a flood would.
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Ok(408) => {
                        statuses[1].fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        statuses[2].fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    // Every staller has sent its head and the start of its body; a moment for the receiver to
    // take them all in.
    wait::until(
        "the stalled connections reach the receiver",
        Duration::from_secs(60),
        || async { (started_stalling.load(Ordering::Relaxed) == STALLERS).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let started = Instant::now();
    let answer = client
        .post(format!(
            "{}{}",
            app.public_url(),
            purchase_path(&contest.id)
        ))
        .header("x-webhook-secret", &contest.secret)
        .header("content-type", "application/json")
        .body(VALID)
        .send()
        .await
        .expect("the valid webhook is answered within 5 s");
    let elapsed = started.elapsed();
    assert_eq!(answer.status(), StatusCode::OK);
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");

    // Premise: the admitted stallers really held their slots until the body deadline (a 408),
    // and the attack was still on when the valid webhook went through.
    wait::until(
        "a stalled body times out",
        Duration::from_secs(10),
        || async { (statuses[1].load(Ordering::Relaxed) > 0).then_some(()) },
    )
    .await;
    stop.cancel();
    for staller in stallers {
        staller.await.unwrap();
    }
    let [too_many, timed_out, other] = [0, 1, 2].map(|i| statuses[i].load(Ordering::Relaxed));
    println!("stalled: {too_many} × 429, {timed_out} × 408, valid answered in {elapsed:?}");
    assert_eq!(
        other, 0,
        "a stalled request got something other than 429 or 408"
    );
    // Every staller beyond its address's limit was refused at once, at least once.
    assert!(too_many >= STALLERS - per_address, "{too_many} refusals");
    // Only the valid purchase was published; nothing of the stalled ones.
    assert_queued(&app, 1).await;
    app.stop().await;
}

/// A declared body over 1 MiB is refused from its headers: no waiting for 5 GB that never come.
#[tokio::test]
async fn a_declared_body_over_1_mib_is_413_at_once() {
    let app = App::receiver_only().await;
    let contest = app.create_contest(json!({})).await;
    let public = socket_addr(app.public_url());
    let admin = socket_addr(app.admin_url());
    let bearer = format!("Bearer {}", app.env.admin_token);
    let cases = [
        (public, purchase_path(&contest.id), contest.secret.clone()),
        // Decided before the credential is checked.
        (public, purchase_path(&contest.id), "whsec_wrong".to_owned()),
        (
            public,
            format!("/api/webhooks/signup/{}", contest.id),
            contest.secret.clone(),
        ),
        (admin, "/api/contests".to_owned(), String::new()),
    ];
    for (to, path, secret) in cases {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nX-Webhook-Secret: {secret}\r\n\
             Authorization: {bearer}\r\nContent-Type: application/json\r\n\
             Content-Length: 5000000000\r\n\r\n"
        );
        let mut stream = tokio::net::TcpStream::connect(to).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        let started = Instant::now();
        let answer = read_answer(&mut stream, Duration::from_secs(3))
            .await
            .expect("answered without the body");
        answer.assert_envelope(413, "payload_too_large");
        assert!(started.elapsed() < Duration::from_secs(1), "{path}");
    }
    assert_queued(&app, 0).await;
    app.stop().await;
}

/// What the path and headers decide is answered before the body is read: each request below
/// declares a body and never sends it, and still gets its answer at once.
#[tokio::test]
async fn what_the_head_decides_is_answered_without_the_body() {
    let app = App::receiver_only().await;
    let contest = app
        .create_contest(json!({"providerSecrets": {"coinflow": "cf-key"}}))
        .await;
    let public = socket_addr(app.public_url());
    let id = contest.id.as_str();
    let cases: Vec<(String, Headers, u16, &str)> = vec![
        (
            purchase_path("no-such-contest"),
            vec![("X-Webhook-Secret", "x")],
            404,
            "contest_not_found",
        ),
        (
            purchase_path(id),
            vec![("X-Webhook-Secret", "whsec_wrong")],
            401,
            "unauthorized",
        ),
        (
            purchase_path(id),
            vec![("Authorization", "Bearer whsec_wrong")],
            401,
            "unauthorized",
        ),
        (
            format!("/api/webhooks/signup/{id}"),
            vec![("X-Webhook-Secret", "whsec_wrong")],
            401,
            "unauthorized",
        ),
        (
            format!("/api/webhooks/referral/stripe/{id}"),
            vec![],
            401,
            "unauthorized",
        ),
        (
            format!("/api/webhooks/referral/stripe/{id}"),
            vec![("Stripe-Signature", "t=1,v1=00")],
            401,
            "unauthorized",
        ),
        (
            format!("/api/webhooks/referral/shopify/{id}"),
            vec![("X-Shopify-Hmac-Sha256", "AAAA")],
            401,
            "unauthorized",
        ),
        (
            format!("/api/webhooks/coinflow/{id}"),
            vec![("Authorization", "not-the-key")],
            401,
            "unauthorized",
        ),
        (
            format!("/api/webhooks/coinflow/{id}"),
            vec![],
            401,
            "unauthorized",
        ),
        (
            purchase_path(id),
            vec![
                ("X-Webhook-Secret", &contest.secret),
                ("Content-Type", "text/plain"),
            ],
            415,
            "unsupported_media_type",
        ),
    ];
    for (path, headers, status, code) in cases {
        let mut head = format!("POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n");
        for (name, value) in &headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut stream = tokio::net::TcpStream::connect(public).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        // Well inside the 2 s body deadline: only an answer that did not wait for the body.
        let answer = read_answer(&mut stream, Duration::from_secs(1))
            .await
            .unwrap_or_else(|error| panic!("{path} {headers:?}: {error}"));
        answer.assert_envelope(status, code);
    }
    // Premise: a right credential does wait for the body, and gets 408 when it never comes.
    let mut stream = tokio::net::TcpStream::connect(public).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: t\r\nX-Webhook-Secret: {}\r\nContent-Length: 100\r\n\r\n",
        purchase_path(id),
        contest.secret
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    assert!(read_answer(&mut stream, Duration::from_secs(1))
        .await
        .is_err());
    let late = read_answer(&mut stream, Duration::from_secs(5))
        .await
        .unwrap();
    late.assert_envelope(408, "request_timeout");
    assert_queued(&app, 0).await;
    app.stop().await;
}

/// The receiver's `/metrics` counter of contest-cache misses, by result.
async fn misses(client: &reqwest::Client, admin: &str) -> HashMap<String, u64> {
    let text = client
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut counts = HashMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("blitz_contest_cache_misses_total{result=\"") else {
            continue;
        };
        let (result, value) = rest.split_once("\"} ").unwrap();
        counts.insert(result.to_owned(), value.trim().parse().unwrap());
    }
    counts
}

fn delta(after: &HashMap<String, u64>, before: &HashMap<String, u64>, result: &str) -> u64 {
    after.get(result).copied().unwrap_or(0) - before.get(result).copied().unwrap_or(0)
}

/// Database lookups among the misses.
fn queries(after: &HashMap<String, u64>, before: &HashMap<String, u64>) -> u64 {
    ["found", "missing", "error"]
        .iter()
        .map(|result| delta(after, before, result))
        .sum()
}

/// Probing made-up contest ids costs little: impossible ids never reach the cache's miss path
/// (let alone the database), a repeated unknown id is remembered, and 10,000 random valid ids
/// cost a bounded number of database queries. Run as a real process so its metrics are its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probing_unknown_contest_ids_is_cheap() {
    let env = TestEnv::new();
    let (public_port, admin_port) = (free_port(), free_port());
    let public = format!("http://127.0.0.1:{public_port}");
    let admin = format!("http://127.0.0.1:{admin_port}");
    let child = receiver_process(&[
        ("DATABASE_URL", &env.database_url()),
        ("AMQP_URL", &testkit::env::amqp_url()),
        ("AMQP_PREFIX", &env.amqp_prefix),
        ("ADMIN_TOKEN", &env.admin_token),
        ("RECEIVER_ADDR", &format!("127.0.0.1:{public_port}")),
        ("ADMIN_ADDR", &format!("127.0.0.1:{admin_port}")),
        ("LOG_FORMAT", "json"),
    ]);
    let client = reqwest::Client::new();
    wait::until("receiver ready", Duration::from_secs(60), || async {
        let ready = client.get(format!("{admin}/readyz")).send().await.ok()?;
        (ready.status() == StatusCode::OK).then_some(())
    })
    .await;
    let post = |id: String| {
        client
            .post(format!("{public}/api/webhooks/purchase/{id}"))
            .header("x-webhook-secret", "whsec_probe")
            .header("content-type", "application/json")
            .body(VALID)
            .send()
    };
    let not_found = |answer: reqwest::Response| async move {
        let status = answer.status();
        let body: Value = answer.json().await.unwrap();
        status == StatusCode::NOT_FOUND && body["error"]["code"] == "contest_not_found"
    };

    // Ids that cannot exist: 404 without even asking the cache's miss path.
    let before = misses(&client, &admin).await;
    for id in [
        "has.dot",
        &"x".repeat(65),
        "%FF",
        "a%20b",
        "%C3%A9t%C3%A9",
        "a%2Fb",
    ] {
        assert!(not_found(post(id.to_owned()).await.unwrap()).await, "{id}");
    }
    let after = misses(&client, &admin).await;
    assert_eq!(after, before, "impossible ids reached the miss path");

    // The same unknown id again and again: one database query, then remembered.
    let before = misses(&client, &admin).await;
    for _ in 0..20 {
        assert!(not_found(post("no-such-contest".into()).await.unwrap()).await);
    }
    let after = misses(&client, &admin).await;
    assert_eq!(delta(&after, &before, "missing"), 1);
    assert_eq!(delta(&after, &before, "remembered"), 19);

    // 10,000 random valid ids, 32 at a time.
    const PROBES: u64 = 10_000;
    let before = misses(&client, &admin).await;
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut probers = Vec::new();
    for _ in 0..32 {
        let (next, client, public) = (next.clone(), client.clone(), public.clone());
        probers.push(tokio::spawn(async move {
            let mut refused = 0;
            while next.fetch_add(1, Ordering::Relaxed) < PROBES as usize {
                let id = format!("probe-{}", testkit::env::random_suffix(20));
                let answer = client
                    .post(format!("{public}/api/webhooks/purchase/{id}"))
                    .header("x-webhook-secret", "whsec_probe")
                    .header("content-type", "application/json")
                    .body(VALID)
                    .send()
                    .await
                    .unwrap();
                refused += u64::from(answer.status() == StatusCode::NOT_FOUND);
            }
            refused
        }));
    }
    let mut refused = 0;
    for prober in probers {
        refused += prober.await.unwrap();
    }
    let elapsed = started.elapsed();
    let after = misses(&client, &admin).await;
    assert_eq!(refused, PROBES, "every probe is 404");
    let asked = queries(&after, &before);
    let skipped = delta(&after, &before, "skipped");
    let bound = u64::from(MISS_QUERY_BURST)
        + (elapsed.as_secs_f64() * f64::from(MISS_QUERIES_PER_SEC)).ceil() as u64
        + 1;
    println!("{PROBES} probes in {elapsed:?}: {asked} database queries, {skipped} answered from the cache");
    assert!(asked >= 1, "the database was asked about some of them");
    assert!(asked <= bound, "{asked} queries > {bound}");
    assert_eq!(
        asked + skipped + delta(&after, &before, "remembered"),
        PROBES
    );

    let mut child = child;
    child.start_kill().unwrap();
    let _ = output_of(child).await;
    env.cleanup().await;
}

// ------------------------------------------------------------------------------------------
// Integrity

/// Scientific notation is held exactly, and an amount with more digits than we keep is
/// `400 amount`, never rounded: the worker records exactly what was accepted, nothing else.
#[tokio::test]
async fn amounts_are_exact_or_refused() {
    let app = App::with_workers(1).await;
    let contest = app.create_contest(json!({})).await;
    let accepted = [
        ("sci-1", "1e2", "100"),
        ("sci-2", "1.5E-3", "0.0015"),
        ("sci-3", "\"1.50e1\"", "15.0"),
    ];
    for (order, amount, _) in accepted {
        let body = format!(r#"{{"email":"a@example.com","orderId":"{order}","amount":{amount}}}"#);
        let answer = app
            .post(
                &purchase_path(&contest.id),
                &[("x-webhook-secret", &contest.secret)],
                body,
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{amount}: {:?}", answer.body);
    }
    let refused = [
        "12345678901234567890",
        "1234567890.123456789",
        "1.0000000000000002e-05",
        "\"0.0000000000000000001\"",
        "1e-19",
        "1E+20",
    ];
    for (i, amount) in refused.iter().enumerate() {
        let body = format!(r#"{{"email":"a@example.com","orderId":"bad-{i}","amount":{amount}}}"#);
        let answer = app
            .post(
                &purchase_path(&contest.id),
                &[("x-webhook-secret", &contest.secret)],
                body,
            )
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{amount}");
        assert_eq!(answer.error_code(), "invalid_field");
        assert_eq!(answer.error_field(), "amount", "{amount}");
        assert!(
            answer.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("never rounded"),
            "{:?}",
            answer.body
        );
    }
    for (order, _, recorded) in accepted {
        let data = app.recorded(&contest, order, None).await;
        assert_eq!(data["amount"], recorded, "{order}");
    }
    assert_eq!(
        app.recorded(&contest, "sci-1", None).await["pointsAwarded"],
        100
    );
    assert_eq!(
        app.purchase_count(&contest).await,
        3,
        "nothing refused was recorded"
    );
    app.stop().await;
}

/// A Standard Webhooks signature over `{id}.{timestamp}.{body}` with any timestamp text.
fn sign_text(secret: &str, id: &str, timestamp: &str, body: &str) -> String {
    let key = standard_webhooks::signing_key(secret).unwrap();
    let mac = hmac::sha256(
        &key,
        &[
            id.as_bytes(),
            b".",
            timestamp.as_bytes(),
            b".",
            body.as_bytes(),
        ],
    );
    use base64::Engine;
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac)
    )
}

/// Correctly signed, but with a timestamp that overflows, is not an integer, or is far off:
/// 401 with the reason, never accepted.
#[tokio::test]
async fn standard_webhooks_timestamps_must_be_plain_fresh_integers() {
    let app = App::receiver_only().await;
    let contest = app.create_contest(json!({})).await;
    let now = Utc::now().timestamp();
    let cases = [
        ("-9223372036854775808".to_owned(), "whole number"),
        ("9223372036854775808".to_owned(), "whole number"),
        (format!("{now}.0"), "whole number"),
        ("1.7e9".to_owned(), "whole number"),
        (format!("+{now}"), "whole number"),
        ("9223372036854775807".to_owned(), "expired"),
        ((now - 301).to_string(), "expired"),
    ];
    for (timestamp, reason) in &cases {
        let signature = sign_text(&contest.secret, "msg_1", timestamp, VALID);
        let answer = app
            .post(
                &purchase_path(&contest.id),
                &[
                    ("webhook-id", "msg_1"),
                    ("webhook-timestamp", timestamp),
                    ("webhook-signature", &signature),
                ],
                VALID,
            )
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{timestamp}");
        assert_eq!(answer.error_code(), "unauthorized");
        let message = answer.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(reason), "{timestamp}: {message}");
    }
    // Premise: the same signing, fresh, is accepted.
    let stamp = now.to_string();
    let signature = sign_text(&contest.secret, "msg_1", &stamp, VALID);
    let fresh = app
        .post(
            &purchase_path(&contest.id),
            &[
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", &stamp),
                ("webhook-signature", &signature),
            ],
            VALID,
        )
        .await;
    assert_eq!(fresh.status, StatusCode::OK, "{:?}", fresh.body);
    assert_queued(&app, 1).await;
    app.stop().await;
}

/// Order ids that would corrupt logs and dashboards are `400 orderId`, in bodies and in the
/// lookup's path.
#[tokio::test]
async fn order_ids_with_control_or_bidi_characters_are_refused() {
    let app = App::receiver_only().await;
    let contest = app.create_contest(json!({})).await;
    for (escaped, code) in [
        (r"A\u202e1-A", "U+202E"),
        (r"\u202aA", "U+202A"),
        (r"A\u2066B\u2069", "U+2066"),
        (r"A\u200b1", "U+200B"),
        (r"A\u0007", "U+0007"),
        (r"A\n1", "U+000A"),
        (r"\ufeffA-1", "U+FEFF"),
    ] {
        let body = format!(r#"{{"email":"a@example.com","orderId":"{escaped}","amount":"1"}}"#);
        let answer = app
            .post(
                &purchase_path(&contest.id),
                &[("x-webhook-secret", &contest.secret)],
                body,
            )
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{escaped}");
        assert_eq!(answer.error_field(), "orderId", "{escaped}");
        let message = answer.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(code), "{escaped}: {message}");
    }
    let lookup = exchange(
        socket_addr(app.public_url()),
        &request(
            "GET",
            &format!("{}/A%E2%80%AE1", purchase_path(&contest.id)),
            &[("X-Webhook-Secret", &contest.secret)],
            "",
        ),
    )
    .await;
    lookup.assert_envelope(400, "invalid_field");
    assert_eq!(lookup.body["error"]["field"], "orderId");
    // Premise: a plain non-ASCII id is fine.
    let fine = app
        .post(
            &purchase_path(&contest.id),
            &[("x-webhook-secret", &contest.secret)],
            r#"{"email":"a@example.com","orderId":"注文-1","amount":"1"}"#,
        )
        .await;
    assert_eq!(fine.status, StatusCode::OK);
    assert_queued(&app, 1).await;
    app.stop().await;
}

// ------------------------------------------------------------------------------------------
// Answers and credentials

/// Whatever goes wrong, the answer is the JSON envelope: undecodable paths, wrong methods,
/// unknown routes, bodies that are not JSON, on both listeners.
#[tokio::test]
async fn every_answer_is_the_json_envelope() {
    let app = App::receiver_only().await;
    let contest = app.create_contest(json!({})).await;
    let public = socket_addr(app.public_url());
    let admin = socket_addr(app.admin_url());
    let secret = contest.secret.as_str();
    let bearer = format!("Bearer {}", app.env.admin_token);
    let purchase = purchase_path(&contest.id);
    let lookup = format!("{purchase}/A-1");
    // Listener, method, path, headers, body, status, error code.
    type Case<'a> = (
        std::net::SocketAddr,
        &'a str,
        String,
        Headers<'a>,
        &'a str,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            public,
            "GET",
            purchase.clone(),
            vec![],
            "",
            405,
            "method_not_allowed",
        ),
        (
            public,
            "DELETE",
            lookup.clone(),
            vec![("X-Webhook-Secret", secret)],
            "",
            405,
            "method_not_allowed",
        ),
        (
            public,
            "PUT",
            "/api/webhooks/signup/x".into(),
            vec![],
            "{}",
            405,
            "method_not_allowed",
        ),
        (
            public,
            "POST",
            "/api/webhooks/purchase/%FF".into(),
            vec![("X-Webhook-Secret", secret)],
            VALID,
            404,
            "contest_not_found",
        ),
        (
            public,
            "GET",
            format!("{purchase}/%FF"),
            vec![("X-Webhook-Secret", secret)],
            "",
            400,
            "invalid_field",
        ),
        (
            public,
            "GET",
            format!("{lookup}?source=%FF"),
            vec![("X-Webhook-Secret", secret)],
            "",
            400,
            "invalid_field",
        ),
        (public, "GET", "/nope".into(), vec![], "", 404, "not_found"),
        (
            public,
            "GET",
            "/%FF%FE".into(),
            vec![],
            "",
            404,
            "not_found",
        ),
        (
            public,
            "POST",
            purchase.clone(),
            vec![
                ("X-Webhook-Secret", secret),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            "email=a%40b.c&orderId=1&amount=1",
            415,
            "unsupported_media_type",
        ),
        (
            public,
            "POST",
            purchase.clone(),
            vec![("X-Webhook-Secret", secret), ("Content-Type", "text/plain")],
            VALID,
            415,
            "unsupported_media_type",
        ),
        (
            admin,
            "DELETE",
            "/api/contests".into(),
            vec![("Authorization", &bearer)],
            "",
            405,
            "method_not_allowed",
        ),
        (
            admin,
            "GET",
            "/api/contests/%FF".into(),
            vec![("Authorization", &bearer)],
            "",
            400,
            "invalid_request",
        ),
        (
            admin,
            "POST",
            "/api/contests".into(),
            vec![
                ("Authorization", &bearer),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            "name=x",
            415,
            "unsupported_media_type",
        ),
        (admin, "GET", "/nope".into(), vec![], "", 404, "not_found"),
    ];
    for (to, method, path, headers, body, status, code) in cases {
        let answer = exchange(to, &request(method, &path, &headers, body)).await;
        println!("{method} {path} → {} {}", answer.status, answer.text);
        answer.assert_envelope(status, code);
        if status == 405 {
            assert!(
                answer.header("allow").is_some(),
                "{method} {path} names the allowed methods"
            );
        }
        if status == 415 {
            let message = answer.body["error"]["message"].as_str().unwrap();
            assert!(
                message.contains("Content-Type: application/json"),
                "{message}"
            );
        }
    }
    // Premise: no Content-Type is read as JSON.
    let plain = exchange(
        public,
        &request("POST", &purchase, &[("X-Webhook-Secret", secret)], VALID),
    )
    .await;
    assert_eq!(plain.status, 200, "{plain:?}");
    assert_queued(&app, 1).await;
    app.stop().await;
}

/// The lookup takes a header credential only: a Standard Webhooks signature over its empty
/// body could be replayed against any order, so it is 401, with a reason that says what to send.
#[tokio::test]
async fn the_lookup_takes_header_credentials_only() {
    let app = App::receiver_only().await;
    let contest = app.create_contest(json!({})).await;
    let public = socket_addr(app.public_url());
    let path = format!("{}/A-1", purchase_path(&contest.id));
    let now = Utc::now().timestamp().to_string();
    let signature = sign_text(&contest.secret, "msg_1", &now, "");
    let bearer = format!("Bearer {}", contest.secret);
    let cases: Vec<(Headers, u16, &str)> = vec![
        (
            vec![
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", &now),
                ("webhook-signature", &signature),
            ],
            401,
            "X-Webhook-Secret or Authorization: Bearer only",
        ),
        (
            vec![("X-Shopify-Hmac-Sha256", "AAAA")],
            401,
            "X-Webhook-Secret",
        ),
        (vec![], 401, "no credential"),
        (
            vec![("X-Webhook-Secret", "whsec_wrong")],
            401,
            "credential not accepted",
        ),
        (
            vec![("X-Webhook-Secret", &contest.secret)],
            404,
            "not found",
        ),
        (vec![("Authorization", &bearer)], 404, "not found"),
    ];
    for (headers, status, message) in cases {
        let answer = exchange(public, &request("GET", &path, &headers, "")).await;
        let code = if status == 401 {
            "unauthorized"
        } else {
            "not_found"
        };
        answer.assert_envelope(status, code);
        let text = answer.body["error"]["message"].as_str().unwrap();
        assert!(text.contains(message), "{headers:?}: {text}");
    }
    app.stop().await;
}

/// `{"gracePeriodSeconds": 0}` ends the old secret at once here and within the contract's 15 s
/// on every other receiver; N keeps it N seconds; no body keeps the 24 h default; bad values are
/// 400 naming the field and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_rotation_can_revoke_the_old_secret_everywhere() {
    let mut app = App::receiver_only().await;
    let contest = app.create_contest(json!({})).await;
    let other = app.add_receiver().await.public_url.clone();
    let rotate = format!("/api/contests/{}/webhook-secret/rotate", contest.id);
    let client = reqwest::Client::new();
    let send = |base: &str, secret: &str| {
        client
            .post(format!("{base}{}", purchase_path(&contest.id)))
            .header("x-webhook-secret", secret)
            .header("content-type", "application/json")
            .body(VALID)
            .send()
    };
    let status = |answer: reqwest::Result<reqwest::Response>| answer.unwrap().status();

    // Refused bodies: 400 naming the field, and the secret stays.
    for (body, field) in [
        (json!({"gracePeriodSeconds": -1}), "gracePeriodSeconds"),
        (json!({"gracePeriodSeconds": 604_801}), "gracePeriodSeconds"),
        (json!({"gracePeriodSeconds": 1.5}), "gracePeriodSeconds"),
        (json!({"gracePeriodSeconds": "60"}), "gracePeriodSeconds"),
        (json!({"gracePeriod": 60}), "gracePeriod"),
    ] {
        let answer = app.admin(Method::POST, &rotate, Some(body.clone())).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer.error_field(), field, "{body}");
    }
    let unchanged = app
        .admin(Method::GET, &format!("/api/contests/{}", contest.id), None)
        .await;
    assert_eq!(unchanged.data()["webhookSecret"], contest.secret.as_str());

    // No body: the 24 h default.
    let default = app.admin(Method::POST, &rotate, None).await;
    assert_eq!(default.status, StatusCode::OK);
    let expires = default.data()["previousWebhookSecretExpiresAt"]
        .as_str()
        .unwrap()
        .parse::<chrono::DateTime<Utc>>()
        .unwrap();
    let grace = expires - Utc::now();
    assert!(
        (grace - chrono::Duration::hours(24)).num_seconds().abs() < 60,
        "{grace}"
    );
    let second = default.data()["webhookSecret"].as_str().unwrap().to_owned();
    assert_eq!(
        status(send(app.public_url(), &contest.secret).await),
        StatusCode::OK
    );

    // N seconds: the old secret works now, and stops after N.
    let overlap = app
        .admin(
            Method::POST,
            &rotate,
            Some(json!({"gracePeriodSeconds": 2})),
        )
        .await;
    assert_eq!(overlap.status, StatusCode::OK);
    let rotated_at = Instant::now();
    let third = overlap.data()["webhookSecret"].as_str().unwrap().to_owned();
    assert_eq!(
        status(send(app.public_url(), &second).await),
        StatusCode::OK
    );
    wait::until("the 2 s grace ends", Duration::from_secs(10), || async {
        (status(send(app.public_url(), &second).await) == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
    assert!(rotated_at.elapsed() >= Duration::from_millis(1500));

    // 0: revoked at once on this receiver, within 15 s on the other.
    let revoke = app
        .admin(
            Method::POST,
            &rotate,
            Some(json!({"gracePeriodSeconds": 0})),
        )
        .await;
    assert_eq!(revoke.status, StatusCode::OK);
    assert_eq!(revoke.data()["previousWebhookSecretExpiresAt"], Value::Null);
    let revoked_at = Instant::now();
    let fourth = revoke.data()["webhookSecret"].as_str().unwrap().to_owned();
    assert_ne!(fourth, third);
    assert_eq!(
        status(send(app.public_url(), &third).await),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(send(app.public_url(), &fourth).await),
        StatusCode::OK
    );
    wait::until(
        "the other receiver drops the old secret",
        Duration::from_secs(15),
        || async { (status(send(&other, &third).await) == StatusCode::UNAUTHORIZED).then_some(()) },
    )
    .await;
    println!(
        "revocation applied on the other receiver after {:?}",
        revoked_at.elapsed()
    );
    assert_eq!(status(send(&other, &fourth).await), StatusCode::OK);
    app.stop().await;
}

/// An empty or blank `ADMIN_TOKEN` stops the real binary at start, naming the variable.
#[tokio::test]
async fn a_blank_admin_token_is_a_configuration_error() {
    let env = TestEnv::new();
    for token in ["", "   \t"] {
        let (public, admin) = (free_port(), free_port());
        let mut child = receiver_process(&[
            ("DATABASE_URL", &env.database_url()),
            ("AMQP_URL", &testkit::env::amqp_url()),
            ("AMQP_PREFIX", &env.amqp_prefix),
            ("ADMIN_TOKEN", token),
            ("RECEIVER_ADDR", &format!("127.0.0.1:{public}")),
            ("ADMIN_ADDR", &format!("127.0.0.1:{admin}")),
        ]);
        let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
            .await
            .expect("the receiver exits at start")
            .unwrap();
        assert!(!status.success(), "{token:?}: {status}");
        let output = output_of(child).await;
        assert!(output.contains("ADMIN_TOKEN"), "{token:?}: {output}");
        // It stopped before listening (the line `run` logs once both listeners are bound).
        assert!(
            !output.contains("receiver listening"),
            "{token:?}: {output}"
        );
    }
    env.cleanup().await;
}

/// Passwords in `DATABASE_URL` (also as `?password=`) and `AMQP_URL` appear in no log line,
/// while the URLs themselves are logged (redacted) and the broker is failing loudly.
#[tokio::test]
async fn connection_passwords_never_reach_the_logs() {
    let env = TestEnv::new();
    let (public, admin) = (free_port(), free_port());
    let database = format!(
        "{}?password=pg-hunter2&application_name=blitz",
        env.database_url()
    );
    let broker = format!("amqp://guest:amqp-hunter3@127.0.0.1:{}/%2f", free_port());
    let child = receiver_process(&[
        ("DATABASE_URL", &database),
        ("AMQP_URL", &broker),
        ("AMQP_PREFIX", &env.amqp_prefix),
        ("ADMIN_TOKEN", &env.admin_token),
        ("RECEIVER_ADDR", &format!("127.0.0.1:{public}")),
        ("ADMIN_ADDR", &format!("127.0.0.1:{admin}")),
        (
            "RUST_LOG",
            "debug,lapin=warn,sqlx=warn,hyper=info,hyper_util=info",
        ),
    ]);
    let client = reqwest::Client::new();
    wait::until("receiver listening", Duration::from_secs(60), || async {
        let alive = client
            .get(format!("http://127.0.0.1:{admin}/healthz"))
            .send()
            .await
            .ok()?;
        (alive.status() == StatusCode::OK).then_some(())
    })
    .await;
    // Let the publisher fail to connect a few times.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut child = child;
    child.start_kill().unwrap();
    let output = output_of(child).await;
    assert!(!output.contains("pg-hunter2"), "{output}");
    assert!(!output.contains("amqp-hunter3"), "{output}");
    // Premise: both URLs were logged, and the broker failures too.
    assert!(output.contains("password=***"), "{output}");
    assert!(output.contains("guest:***@"), "{output}");
    env.cleanup().await;
}

/// Every 401 is logged with the scheme and why it failed, never the credential; the sender is
/// told a reason that helps it and nobody else.
#[tokio::test]
async fn refusals_are_logged_with_their_reason_never_the_secret() {
    let env = TestEnv::new();
    let (public_port, admin_port) = (free_port(), free_port());
    let public = format!("http://127.0.0.1:{public_port}");
    let admin = format!("http://127.0.0.1:{admin_port}");
    let child = receiver_process(&[
        ("DATABASE_URL", &env.database_url()),
        ("AMQP_URL", &testkit::env::amqp_url()),
        ("AMQP_PREFIX", &env.amqp_prefix),
        ("ADMIN_TOKEN", &env.admin_token),
        ("RECEIVER_ADDR", &format!("127.0.0.1:{public_port}")),
        ("ADMIN_ADDR", &format!("127.0.0.1:{admin_port}")),
        ("LOG_FORMAT", "json"),
    ]);
    let client = reqwest::Client::new();
    wait::until("receiver ready", Duration::from_secs(60), || async {
        let ready = client.get(format!("{admin}/readyz")).send().await.ok()?;
        (ready.status() == StatusCode::OK).then_some(())
    })
    .await;
    let created: Value = client
        .post(format!("{admin}/api/contests"))
        .bearer_auth(&env.admin_token)
        .json(&json!({"name": "Logged", "providerSecrets": {"stripe": "whsec_stripe_secret"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["data"]["id"].as_str().unwrap().to_owned();
    let secret = created["data"]["webhookSecret"]
        .as_str()
        .unwrap()
        .to_owned();
    let stale = (Utc::now().timestamp() - 3600).to_string();
    let stale_signature = sign_text(&secret, "msg_1", &stale, VALID);
    let wrong = "whsec_WrongSecretValue123";
    let stripe_stale = format!("t={stale},v1={}", "ab".repeat(32));
    let purchase = format!("{public}/api/webhooks/purchase/{id}");
    let cases: Vec<(String, Headers, &str, &str)> = vec![
        (
            purchase.clone(),
            vec![("x-webhook-secret", wrong)],
            "credential not accepted",
            r#""scheme":"x-webhook-secret","reason":"mismatch""#,
        ),
        (
            purchase.clone(),
            vec![("authorization", "Basic Zm9vOmJhcg==")],
            "credential not accepted",
            r#""scheme":"authorization-bearer","reason":"malformed""#,
        ),
        (
            purchase.clone(),
            vec![],
            "no credential",
            r#""scheme":"none","reason":"missing""#,
        ),
        (
            purchase.clone(),
            vec![
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", &stale),
                ("webhook-signature", &stale_signature),
            ],
            "signature expired",
            r#""scheme":"standard-webhooks","reason":"timestamp outside tolerance""#,
        ),
        (
            format!("{public}/api/webhooks/referral/stripe/{id}"),
            vec![("stripe-signature", &stripe_stale)],
            "signature expired",
            r#""scheme":"stripe-signature","reason":"timestamp outside tolerance""#,
        ),
        (
            format!("{public}/api/webhooks/referral/shopify/{id}"),
            vec![("x-shopify-hmac-sha256", "AAAA")],
            "credential not accepted",
            r#""scheme":"shopify-hmac","reason":"no secret configured""#,
        ),
        (
            format!("{admin}/api/contests"),
            vec![("authorization", "Bearer not-the-token")],
            "credential not accepted",
            r#""scheme":"admin-token","reason":"mismatch""#,
        ),
    ];
    for (url, headers, message, _) in &cases {
        let mut request = client
            .post(url)
            .header("content-type", "application/json")
            .body(r#"{"email":"a@example.com","orderId":"1","amount":"1","name":"x"}"#);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let answer = request.send().await.unwrap();
        assert_eq!(
            answer.status(),
            StatusCode::UNAUTHORIZED,
            "{url} {headers:?}"
        );
        let body: Value = answer.json().await.unwrap();
        let text = body["error"]["message"].as_str().unwrap();
        assert!(text.starts_with(message), "{url} {headers:?}: {text}");
    }
    let mut child = child;
    child.start_kill().unwrap();
    let output = output_of(child).await;
    for (url, headers, _, logged) in &cases {
        let line = output
            .lines()
            .find(|line| line.contains("request refused: 401") && line.contains(logged));
        assert!(
            line.is_some(),
            "no log line with {logged} for {url} {headers:?}:\n{output}"
        );
    }
    assert!(!output.contains(wrong), "a credential reached the logs");
    assert!(
        !output.contains("not-the-token"),
        "a credential reached the logs"
    );
    env.cleanup().await;
}
