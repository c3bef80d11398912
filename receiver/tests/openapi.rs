//! The OpenAPI document: the checked-in `openapi.json` is what the code generates, and a running
//! receiver serves the same document at `/openapi.json` on its admin listener, without a token.

use reqwest::StatusCode;
use testkit::App;

/// How to bring the checked-in file up to date after changing `receiver/src/openapi.rs`.
const REGENERATE: &str =
    "openapi.json is out of date: regenerate it with `cargo run -p receiver -- openapi > openapi.json`";

fn checked_in() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.json");
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("reading {path}: {error}"))
}

#[test]
fn checked_in_spec_matches_the_code() {
    // Compared as text, so formatting drift is caught too; the message says how to fix it.
    assert!(
        checked_in() == receiver::openapi::spec_json(),
        "{REGENERATE}"
    );
}

#[tokio::test]
async fn admin_listener_serves_the_spec_without_a_token() {
    let app = App::receiver_only().await;
    let response = app
        .http
        .get(format!("{}/openapi.json", app.admin_url()))
        .send()
        .await
        .expect("GET /openapi.json");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let served = response.text().await.expect("body");
    assert!(
        served == receiver::openapi::spec_json(),
        "served document differs from the code"
    );
    assert!(served == checked_in(), "{REGENERATE}");

    // Only the admin listener has it.
    let public = app
        .http
        .get(format!("{}/openapi.json", app.public_url()))
        .send()
        .await
        .expect("GET public /openapi.json");
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}
