//! `/readyz` tells the truth about the broker: it flips to 503 when the connection is cut and
//! back to 200 once the receiver has reconnected by itself; webhooks follow the same way.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use testkit::{app::RunningReceiver, env::amqp_url, proxy::Proxy, wait, App};

#[tokio::test]
async fn readyz_flips_with_the_broker_and_webhooks_recover_without_a_restart() {
    let app = App::receiver_only().await;
    let contest = app.create_contest(json!({})).await;
    let proxy = Proxy::in_front_of(&amqp_url()).await;
    let mut config = app.env.receiver_config();
    config.common.amqp_url = proxy.url_for(&amqp_url());
    let receiver = RunningReceiver::start(config).await;
    let client = reqwest::Client::new();
    let ready = format!("{}/readyz", receiver.admin_url);
    let webhook = format!(
        "{}/api/webhooks/purchase/{}",
        receiver.public_url, contest.id
    );
    let send = |order: &str| {
        client
            .post(&webhook)
            .header("x-webhook-secret", &contest.secret)
            .body(json!({"email":"r@example.com","orderId":order,"amount":"1"}).to_string())
            .send()
    };

    assert_eq!(send("before").await.unwrap().status(), StatusCode::OK);
    proxy.cut();
    let reason = wait::until("readyz 503", Duration::from_secs(10), || async {
        let response = client.get(&ready).send().await.ok()?;
        (response.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(())?;
        let body: serde_json::Value = response.json().await.ok()?;
        Some(body["error"]["message"].as_str()?.to_owned())
    })
    .await;
    assert!(reason.contains("broker"), "{reason}");

    let started = Instant::now();
    let during = send("during").await.unwrap();
    assert_eq!(during.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(during.headers().contains_key("retry-after"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered within the sender's timeout"
    );

    proxy.restore();
    wait::until("readyz 200 again", Duration::from_secs(30), || async {
        let response = client.get(&ready).send().await.ok()?;
        (response.status() == StatusCode::OK).then_some(())
    })
    .await;
    assert_eq!(send("after").await.unwrap().status(), StatusCode::OK);
    receiver.stop().await.unwrap();
    app.stop().await;
}
