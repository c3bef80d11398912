//! Contest administration: create, read, change, rotate (or revoke) the webhook secret.
//!
//! A write goes to Postgres, then into this receiver's cache (so it applies here at once); the
//! table's trigger notifies every other receiver.

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::Response,
};
use chrono::Utc;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use shared::{
    contest::{generate_webhook_secret, Contest, MAX_SECRET_GRACE, PREVIOUS_SECRET_GRACE},
    db,
    ids::ContestId,
    money::Currency,
    points::Rounding,
};

use crate::{
    body::{decimal_to_json, parse_object, Fields, RawBody},
    error::{success, ApiError},
    state::AppState,
};

/// Largest `pointsPerUnit` (either kind) accepted.
const MAX_POINTS_PER_UNIT: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);
/// Largest exchange rate accepted.
const MAX_RATE: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);
/// Largest referral bonus accepted.
const MAX_BONUS: i64 = 1_000_000_000;

/// `POST /api/contests` → 201 with the contest, its webhook secret and URLs.
pub async fn create(
    State(state): State<AppState>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let object = parse_object(&body)?;
    let contest = create_contest(&state.db, &object).await?;
    let contest = state.cache.put(contest);
    tracing::info!(contest_id = %contest.id, "contest created");
    Ok(success(
        StatusCode::CREATED,
        contest_json(&contest, state.config.base_url()),
    ))
}

/// Validates a create body (only `name` is required), fills in the defaults, generates the id
/// when absent and the webhook secret, and inserts the contest: 400 naming the field, 409 when
/// the id is taken. The table's trigger tells every running receiver. Shared by
/// `POST /api/contests` and `receiver contest create`.
pub async fn create_contest(
    db: &sqlx::PgPool,
    body: &serde_json::Map<String, Value>,
) -> Result<Contest, ApiError> {
    let fields = Fields::new(body);
    let id = match fields.optional_str("id")? {
        Some(raw) => {
            ContestId::parse(raw).map_err(|error| ApiError::field("id", error.to_string()))?
        }
        None => ContestId::generate(),
    };
    fields.required("name")?;
    let now = Utc::now();
    let mut contest = Contest {
        id,
        name: String::new(),
        currency: Currency::USD,
        points_per_unit: Decimal::ONE,
        rounding: Rounding::Nearest,
        purchase_tracking: true,
        accept_test_events: true,
        sync_responses: false,
        referral: Default::default(),
        exchange_rates: Default::default(),
        provider_secrets: Default::default(),
        webhook_secret: generate_webhook_secret(),
        previous_webhook_secret: None,
        created_at: now,
        updated_at: now,
    };
    apply_settings(&fields, &mut contest)?;
    if !db::contests::insert(db, &contest).await? {
        return Err(ApiError::ContestExists);
    }
    Ok(contest)
}

/// `GET /api/contests/:id`.
pub async fn get(
    State(state): State<AppState>,
    Path(contest_id): Path<String>,
) -> Result<Response, ApiError> {
    let contest = super::load_contest(&state, &contest_id).await?;
    Ok(success(
        StatusCode::OK,
        contest_json(&contest, state.config.base_url()),
    ))
}

/// `PATCH /api/contests/:id` with any settable field.
pub async fn patch(
    State(state): State<AppState>,
    Path(contest_id): Path<String>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let mut contest = super::load_contest(&state, &contest_id).await?;
    let object = parse_object(&body)?;
    apply_settings(&Fields::new(&object), &mut contest)?;
    contest.updated_at = Utc::now();
    if !db::contests::update(&state.db, &contest).await? {
        return Err(ApiError::ContestNotFound);
    }
    let contest = state.cache.put(contest);
    tracing::info!(contest_id = %contest.id, "contest changed");
    Ok(success(
        StatusCode::OK,
        contest_json(&contest, state.config.base_url()),
    ))
}

/// `POST /api/contests/:id/webhook-secret/rotate`, optional body `{"gracePeriodSeconds": N}`
/// (no body, or `null`, is the default):
/// a new secret; the old one keeps working for N seconds (default 24 h; 0 revokes it at once).
pub async fn rotate_secret(
    State(state): State<AppState>,
    Path(contest_id): Path<String>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    // No body (or JSON `null`) is the default rotation.
    let grace = if body.iter().all(u8::is_ascii_whitespace) || body.trim_ascii() == b"null" {
        PREVIOUS_SECRET_GRACE
    } else {
        grace_period(&parse_object(&body)?)?
    };
    let contest = rotate_contest_secret(&state.db, &contest_id, grace).await?;
    let contest = state.cache.put(contest);
    tracing::info!(
        contest_id = %contest.id,
        grace_seconds = grace.num_seconds(),
        "webhook secret rotated"
    );
    Ok(success(
        StatusCode::OK,
        contest_json(&contest, state.config.base_url()),
    ))
}

/// The overlap a rotation body asks for: `gracePeriodSeconds`, a whole number of seconds from 0
/// (revoke the old secret now) to [`MAX_SECRET_GRACE`]; absent or null is the default 24 h.
/// The body is strict: any other field is 400 naming it. Shared by the rotate endpoint and
/// `receiver contest rotate-secret --grace-period-seconds`.
pub fn grace_period(body: &serde_json::Map<String, Value>) -> Result<chrono::Duration, ApiError> {
    if let Some(unknown) = body.keys().find(|key| *key != "gracePeriodSeconds") {
        return Err(ApiError::field(
            unknown.as_str(),
            "unknown field; the only field is gracePeriodSeconds",
        ));
    }
    let max = MAX_SECRET_GRACE.num_seconds();
    Ok(Fields::new(body)
        .optional_i64("gracePeriodSeconds", 0..=max)?
        .map_or(PREVIOUS_SECRET_GRACE, chrono::Duration::seconds))
}

/// Replaces a contest's webhook secret in the database; the old one works for `grace` more
/// (none when zero). Every receiver applies it through the table's trigger (this one at once
/// when the caller also puts it in its cache). Shared by the rotate endpoint and the CLI.
pub async fn rotate_contest_secret(
    db: &sqlx::PgPool,
    raw_id: &str,
    grace: chrono::Duration,
) -> Result<Contest, ApiError> {
    let id = ContestId::parse(raw_id).map_err(|_| ApiError::ContestNotFound)?;
    let mut contest = db::contests::find(db, &id)
        .await?
        .ok_or(ApiError::ContestNotFound)?;
    contest.rotate_webhook_secret(Utc::now(), grace);
    if !db::contests::update(db, &contest).await? {
        return Err(ApiError::ContestNotFound);
    }
    Ok(contest)
}

/// Applies every field present in `fields` to `contest`, validating each.
fn apply_settings(fields: &Fields<'_>, contest: &mut Contest) -> Result<(), ApiError> {
    if fields.get("name").is_some() {
        let name = fields.required_str("name")?.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(ApiError::field("name", "must be 1 to 200 characters"));
        }
        contest.name = name.to_owned();
    }
    if let Some(code) = fields.optional_str("currency")? {
        contest.currency = Currency::parse(code)
            .map_err(|error| ApiError::field("currency", error.to_string()))?;
    }
    if let Some(per_unit) =
        fields.optional_decimal("pointsPerUnit", Decimal::ZERO, MAX_POINTS_PER_UNIT)?
    {
        contest.points_per_unit = per_unit;
    }
    if let Some(rounding) = fields.optional_str("rounding")? {
        contest.rounding = Rounding::parse(rounding)
            .ok_or_else(|| ApiError::field("rounding", "must be nearest, floor or ceil"))?;
    }
    if let Some(flag) = fields.optional_bool("purchaseTracking")? {
        contest.purchase_tracking = flag;
    }
    if let Some(flag) = fields.optional_bool("acceptTestEvents")? {
        contest.accept_test_events = flag;
    }
    if let Some(flag) = fields.optional_bool("syncResponses")? {
        contest.sync_responses = flag;
    }
    if let Some(referral) = fields.optional_object("referral")? {
        if let Some(points) = referral.optional_i64("advocatePoints", 0..=MAX_BONUS)? {
            contest.referral.advocate_points = points;
        }
        if let Some(points) = referral.optional_i64("friendPoints", 0..=MAX_BONUS)? {
            contest.referral.friend_points = points;
        }
        if let Some(per_unit) =
            referral.optional_decimal("pointsPerUnit", Decimal::ZERO, MAX_POINTS_PER_UNIT)?
        {
            contest.referral.points_per_unit = per_unit;
        }
    }
    if let Some(rates) = fields.optional_object("exchangeRates")? {
        let mut parsed = std::collections::BTreeMap::new();
        for (code, value) in rates.entries() {
            let name = rates.name(code);
            let currency = Currency::parse(code)
                .map_err(|error| ApiError::field(name.clone(), error.to_string()))?;
            let rate = rates.decimal(code, value)?;
            if rate <= Decimal::ZERO || rate > MAX_RATE {
                return Err(ApiError::field(
                    name,
                    format!("must be greater than 0 and at most {MAX_RATE}"),
                ));
            }
            parsed.insert(currency, rate);
        }
        contest.exchange_rates = parsed;
    }
    if let Some(secrets) = fields.optional_object("providerSecrets")? {
        for (provider, value) in secrets.entries() {
            let name = secrets.name(provider);
            let slot = match provider.as_str() {
                "shopify" => &mut contest.provider_secrets.shopify,
                "stripe" => &mut contest.provider_secrets.stripe,
                "coinflow" => &mut contest.provider_secrets.coinflow,
                _ => {
                    return Err(ApiError::field(
                        name,
                        "must be one of shopify, stripe, coinflow",
                    ))
                }
            };
            *slot = match value {
                Value::Null => None,
                Value::String(secret)
                    if (1..=1024).contains(&secret.trim().len())
                        && !secret.chars().any(char::is_control) =>
                {
                    Some(secret.trim().to_owned())
                }
                _ => return Err(ApiError::field(name, "must be a non-empty string or null")),
            };
        }
    }
    Ok(())
}

/// The contest as the admin API shows it, with its secret and the URLs to give senders.
pub fn contest_json(contest: &Contest, base_url: &str) -> Value {
    let id = &contest.id;
    let rates: serde_json::Map<String, Value> = contest
        .exchange_rates
        .iter()
        .map(|(currency, rate)| (currency.to_string(), decimal_to_json(*rate)))
        .collect();
    json!({
        "id": id,
        "name": contest.name,
        "currency": contest.currency,
        "pointsPerUnit": decimal_to_json(contest.points_per_unit),
        "rounding": contest.rounding,
        "purchaseTracking": contest.purchase_tracking,
        "acceptTestEvents": contest.accept_test_events,
        "syncResponses": contest.sync_responses,
        "referral": {
            "advocatePoints": contest.referral.advocate_points,
            "friendPoints": contest.referral.friend_points,
            "pointsPerUnit": decimal_to_json(contest.referral.points_per_unit),
        },
        "exchangeRates": rates,
        "providerSecrets": contest.provider_secrets,
        "webhookSecret": contest.webhook_secret,
        "previousWebhookSecretExpiresAt": contest.previous_webhook_secret.as_ref().map(|(_, at)| at),
        "webhookUrls": {
            "purchase": format!("{base_url}/api/webhooks/purchase/{id}"),
            "signup": format!("{base_url}/api/webhooks/signup/{id}"),
            "shopify": format!("{base_url}/api/webhooks/referral/shopify/{id}"),
            "stripe": format!("{base_url}/api/webhooks/referral/stripe/{id}"),
            "coinflow": format!("{base_url}/api/webhooks/coinflow/{id}"),
        },
        "createdAt": contest.created_at,
        "updatedAt": contest.updated_at,
    })
}
