//! `POST /api/webhooks/signup/:contestId`: a person joins a contest, possibly with a friend's
//! referral code. Published like a purchase; the worker dedupes on `(contest, email)` and pays
//! the referral bonus once.

use axum::{
    extract::{Path, State},
    http::HeaderMap,
};
use chrono::Utc;
use serde::{de::IgnoredAny, Deserialize};
use shared::{
    email::Email,
    event::{Envelope, Event, SignupEvent},
    ids::EntryId,
};
use utoipa::ToSchema;

use super::{
    answer::{Accepted, SignupAccepted, SignupWebhookAnswer},
    resolve_contest,
};
use crate::{
    api::{
        envelope::{BadRequest, NotFound, PayloadTooLarge, ServiceUnavailable, Unauthorized},
        fields::{required, Text},
        schema::{ContestIdParam, PreferHeader, PreferenceApplied, StandardWebhooksHeaders},
        Envelope as Answer, Reply,
    },
    auth::{self, ShopifyOrders},
    body::{self, RawBody},
    error::ApiError,
    state::AppState,
    sync::{self, Asked},
};

/// Longest name, phone number or referral code accepted.
const MAX_TEXT_CHARS: usize = 200;

/// The signup webhook's body. Fields it does not use are ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"email": "sam@example.com", "name": "Sam", "referralCode": "K7M2QX9P"}))]
pub struct SignupRequest {
    /// The person's email address (trimmed and lower-cased).
    #[serde(default)]
    #[schema(value_type = String, format = Email, max_length = 254, required = true)]
    pub email: Option<Text>,
    /// Display name (trimmed; at most 200 characters).
    #[serde(default)]
    #[schema(value_type = Option<String>, max_length = 200)]
    pub name: Option<Text>,
    /// Phone number (trimmed; at most 200 characters).
    #[serde(default)]
    #[schema(value_type = Option<String>, max_length = 200)]
    pub phone: Option<Text>,
    /// A friend's referral code: the friend and this person earn the contest's referral bonus.
    #[serde(default)]
    #[schema(value_type = Option<String>, max_length = 200)]
    pub referral_code: Option<Text>,
    /// The contest's webhook secret, consulted only when no header credential and no signature
    /// is sent.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub secret: Option<IgnoredAny>,
}

/// An optional text field: trimmed, blank is absent, at most [`MAX_TEXT_CHARS`] characters.
fn short_text(value: Option<Text>, field: &str) -> Result<Option<String>, ApiError> {
    let value = value.as_ref().and_then(Text::trimmed);
    if value.is_some_and(|v| v.chars().count() > MAX_TEXT_CHARS) {
        return Err(ApiError::field(
            field,
            format!("must be at most {MAX_TEXT_CHARS} characters"),
        ));
    }
    Ok(value.map(str::to_owned))
}

/// Receive a signup
///
/// A person joins the contest, possibly with a friend's referral code. Authenticated like
/// the purchase webhook (a Shopify signature is not accepted here). The worker creates the
/// entry once per (contest, email) and pays the referral bonus once.
///
/// Synchronous answers as for a purchase (`Prefer: wait=N`, or the contest's
/// `syncResponses`): the answer is then the referral bonus paid, `pointsAwarded: {advocate,
/// friend}`, and `alreadyExists`, with `status` `recorded`.
#[utoipa::path(
    post,
    path = "/api/webhooks/signup/{contestId}",
    tag = "webhooks",
    operation_id = "receiveSignup",
    params(ContestIdParam, StandardWebhooksHeaders, PreferHeader),
    request_body(content = SignupRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Applied (`recorded`: the sender waited and the outcome \
            came in time), or durably queued (`accepted`).", body = Answer<SignupWebhookAnswer>,
            headers(("Preference-Applied" = inline(PreferenceApplied), description = "`wait=N`, \
                the wait applied (capped at 4), when the request waited for the worker's \
                outcome, whether it came in time or the answer is `accepted`; absent when the \
                request did not wait."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 503, response = ServiceUnavailable),
    ),
    security(
        ("webhookSecret" = []),
        ("webhookSecretBearer" = []),
        ("standardWebhooks" = []),
    ),
)]
pub async fn receive(
    State(state): State<AppState>,
    Path(contest_id): Path<String>,
    asked: Asked,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Reply<SignupWebhookAnswer>, ApiError> {
    let contest = resolve_contest(&state, &contest_id).await?;
    let now = Utc::now();
    auth::authenticate_generic(&headers, &body, &contest, now, ShopifyOrders::Refused)?;
    let request = body::lenient::<SignupRequest>(&body)?;
    let email = Email::parse(&required(request.email, "email")?.0)
        .map_err(|error| ApiError::field("email", error.to_string()))?;
    let name = short_text(request.name, "name")?;
    let phone = short_text(request.phone, "phone")?;
    let referral_code = short_text(request.referral_code, "referralCode")?;

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
    if let Some(recorded) = published.signup_answer() {
        return Ok(published.answered(SignupWebhookAnswer::Recorded(recorded)));
    }
    Ok(
        published.accepted(SignupWebhookAnswer::Accepted(SignupAccepted {
            entry_id,
            status: Accepted::Accepted,
        })),
    )
}
