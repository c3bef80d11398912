//! Contest rows: load, find, list, insert, update.

use std::{collections::BTreeMap, str::FromStr};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{
    postgres::{PgArguments, PgRow},
    query::Query,
    PgExecutor, Postgres, Row,
};

use crate::{
    contest::{Contest, ProviderSecrets, ReferralSettings},
    ids::ContestId,
    money::Currency,
    points::Rounding,
};

const COLUMNS: &str = "id, name, currency, points_per_unit, rounding, purchase_tracking, \
    accept_test_events, referral_advocate_points, referral_friend_points, referral_points_per_unit, \
    exchange_rates, provider_secrets, webhook_secret, previous_webhook_secret, \
    previous_secret_expires_at, created_at, updated_at, sync_responses";

/// Every contest (the receiver's cache is rebuilt from this).
pub async fn load_all(db: impl PgExecutor<'_>) -> Result<Vec<Contest>, sqlx::Error> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM contests"))
        .try_map(|row: PgRow| from_row(&row))
        .fetch_all(db)
        .await
}

/// One contest by id.
pub async fn find(db: impl PgExecutor<'_>, id: &ContestId) -> Result<Option<Contest>, sqlx::Error> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM contests WHERE id = $1"))
        .bind(id.as_str())
        .try_map(|row: PgRow| from_row(&row))
        .fetch_optional(db)
        .await
}

/// Up to `limit` contests with ids after `after`, in id order (keyset paging on the primary
/// key).
pub async fn list(
    db: impl PgExecutor<'_>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Contest>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM contests WHERE ($1::text IS NULL OR id > $1) ORDER BY id LIMIT $2"
    ))
    .bind(after)
    .bind(limit)
    .try_map(|row: PgRow| from_row(&row))
    .fetch_all(db)
    .await
}

/// Several contests by id (the worker prices a whole batch with one query).
pub async fn find_many(db: impl PgExecutor<'_>, ids: &[&str]) -> Result<Vec<Contest>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM contests WHERE id = ANY($1)"
    ))
    .bind(ids)
    .try_map(|row: PgRow| from_row(&row))
    .fetch_all(db)
    .await
}

/// Inserts a new contest; `false` when the id is taken.
pub async fn insert(db: impl PgExecutor<'_>, contest: &Contest) -> Result<bool, sqlx::Error> {
    let query = sqlx::query(
        "INSERT INTO contests (id, name, currency, points_per_unit, rounding, purchase_tracking, \
         accept_test_events, referral_advocate_points, referral_friend_points, \
         referral_points_per_unit, exchange_rates, provider_secrets, webhook_secret, \
         previous_webhook_secret, previous_secret_expires_at, updated_at, sync_responses, \
         created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
         ON CONFLICT (id) DO NOTHING",
    );
    let result = bind_settings(query, contest)
        .bind(contest.created_at)
        .execute(db)
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Writes every mutable setting of an existing contest; `false` when it does not exist.
pub async fn update(db: impl PgExecutor<'_>, contest: &Contest) -> Result<bool, sqlx::Error> {
    let query = sqlx::query(
        "UPDATE contests SET name = $2, currency = $3, points_per_unit = $4, rounding = $5, \
         purchase_tracking = $6, accept_test_events = $7, referral_advocate_points = $8, \
         referral_friend_points = $9, referral_points_per_unit = $10, exchange_rates = $11, \
         provider_secrets = $12, webhook_secret = $13, previous_webhook_secret = $14, \
         previous_secret_expires_at = $15, updated_at = $16, sync_responses = $17 WHERE id = $1",
    );
    let result = bind_settings(query, contest).execute(db).await?;
    Ok(result.rows_affected() == 1)
}

/// Binds `$1` (id) to `$17` (sync_responses): the columns insert and update share, in one order.
fn bind_settings<'q>(
    query: Query<'q, Postgres, PgArguments>,
    contest: &'q Contest,
) -> Query<'q, Postgres, PgArguments> {
    let previous = contest.previous_webhook_secret.as_ref();
    query
        .bind(contest.id.as_str())
        .bind(&contest.name)
        .bind(contest.currency.as_str())
        .bind(contest.points_per_unit)
        .bind(contest.rounding.as_str())
        .bind(contest.purchase_tracking)
        .bind(contest.accept_test_events)
        .bind(contest.referral.advocate_points)
        .bind(contest.referral.friend_points)
        .bind(contest.referral.points_per_unit)
        .bind(rates_to_json(&contest.exchange_rates))
        .bind(secrets_to_json(&contest.provider_secrets))
        .bind(&contest.webhook_secret)
        .bind(previous.map(|(secret, _)| secret.as_str()))
        .bind(previous.map(|(_, expires_at)| *expires_at))
        .bind(contest.updated_at)
        .bind(contest.sync_responses)
}

fn rates_to_json(rates: &BTreeMap<Currency, Decimal>) -> serde_json::Value {
    serde_json::Value::Object(
        rates
            .iter()
            .map(|(currency, rate)| (currency.to_string(), rate.to_string().into()))
            .collect(),
    )
}

fn secrets_to_json(secrets: &ProviderSecrets) -> serde_json::Value {
    serde_json::to_value(secrets).unwrap_or_else(|_| serde_json::json!({}))
}

fn decode_error(what: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("invalid stored contest {what}").into())
}

fn from_row(row: &PgRow) -> Result<Contest, sqlx::Error> {
    let id: String = row.try_get("id")?;
    let currency: String = row.try_get("currency")?;
    let rounding: String = row.try_get("rounding")?;
    let rates: serde_json::Value = row.try_get("exchange_rates")?;
    let secrets: serde_json::Value = row.try_get("provider_secrets")?;
    let previous: Option<String> = row.try_get("previous_webhook_secret")?;
    let previous_expires: Option<DateTime<Utc>> = row.try_get("previous_secret_expires_at")?;

    let exchange_rates = rates
        .as_object()
        .ok_or_else(|| decode_error("exchange_rates"))?
        .iter()
        .map(|(code, rate)| {
            let currency = Currency::parse(code).map_err(|_| decode_error("exchange_rates"))?;
            let rate = rate
                .as_str()
                .and_then(|text| Decimal::from_str(text).ok())
                .ok_or_else(|| decode_error("exchange_rates"))?;
            Ok((currency, rate))
        })
        .collect::<Result<BTreeMap<_, _>, sqlx::Error>>()?;

    Ok(Contest {
        id: ContestId::parse(&id).map_err(|_| decode_error("id"))?,
        name: row.try_get("name")?,
        currency: Currency::parse(&currency).map_err(|_| decode_error("currency"))?,
        points_per_unit: row.try_get("points_per_unit")?,
        rounding: Rounding::parse(&rounding).ok_or_else(|| decode_error("rounding"))?,
        purchase_tracking: row.try_get("purchase_tracking")?,
        accept_test_events: row.try_get("accept_test_events")?,
        sync_responses: row.try_get("sync_responses")?,
        referral: ReferralSettings {
            advocate_points: row.try_get("referral_advocate_points")?,
            friend_points: row.try_get("referral_friend_points")?,
            points_per_unit: row.try_get("referral_points_per_unit")?,
        },
        exchange_rates,
        provider_secrets: serde_json::from_value(secrets)
            .map_err(|_| decode_error("provider_secrets"))?,
        webhook_secret: row.try_get("webhook_secret")?,
        previous_webhook_secret: previous.zip(previous_expires),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}
