//! `POST /api/webhooks/signup/:contestId`: a person joins a contest, possibly with a friend's
//! referral code. Published like a purchase; the worker dedupes on `(contest, email)` and pays
//! the referral bonus once.

use axum::{
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use chrono::Utc;
use serde_json::json;
use shared::{
    email::Email,
    event::{Envelope, Event, SignupEvent},
    ids::EntryId,
};

use super::resolve_contest;
use crate::{
    auth::{self, ShopifyOrders},
    body::{parse_object, Fields, RawBody},
    error::{success, ApiError},
    metrics::{with_outcome, Outcome},
    state::AppState,
    sync::{self, Asked},
};

/// Longest name, phone number or referral code accepted.
const MAX_TEXT_CHARS: usize = 200;

/// Receives one signup: contest → authentication → body → publish → 200 with the entry id (and
/// the worker's outcome when the sender, or the contest, waits for it).
pub async fn receive(
    State(state): State<AppState>,
    Path(contest_id): Path<String>,
    asked: Asked,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let contest = resolve_contest(&state, &contest_id).await?;
    let now = Utc::now();
    auth::authenticate_generic(&headers, &body, &contest, now, ShopifyOrders::Refused)?;
    let object = parse_object(&body)?;
    let fields = Fields::new(&object);
    let email = Email::parse(fields.required_str("email")?)
        .map_err(|error| ApiError::field("email", error.to_string()))?;
    let text = |key: &str| -> Result<Option<String>, ApiError> {
        let value = fields
            .optional_str(key)?
            .map(str::trim)
            .filter(|v| !v.is_empty());
        if value.is_some_and(|v| v.chars().count() > MAX_TEXT_CHARS) {
            return Err(ApiError::field(
                key,
                format!("must be at most {MAX_TEXT_CHARS} characters"),
            ));
        }
        Ok(value.map(str::to_owned))
    };
    let name = text("name")?;
    let phone = text("phone")?;
    let referral_code = text("referralCode")?;

    let entry_id = EntryId::derive(&contest.id, &email);
    let envelope = Envelope::new(Event::Signup(SignupEvent {
        entry_id: entry_id.clone(),
        contest_id: contest.id.clone(),
        email,
        name,
        phone,
        referral_code,
        received_at: now,
    }));
    let published = sync::publish(&state, &envelope, asked.wait(contest.sync_responses)).await?;
    tracing::info!(%entry_id, contest_id = %contest.id, "signup accepted");
    if let Some(answer) = published.signup_answer() {
        return Ok(answer);
    }
    Ok(published.accepted(with_outcome(
        success(
            StatusCode::OK,
            json!({ "entryId": entry_id, "status": "accepted" }),
        ),
        Outcome::ACCEPTED,
    )))
}
