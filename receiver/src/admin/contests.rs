//! Contest administration: create, list, read, change, rotate (or revoke) the webhook secret.
//!
//! A write goes to Postgres, then into this receiver's cache (so it applies here at once); the
//! table's trigger notifies every other receiver.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use shared::{
    contest::{generate_webhook_secret, Contest, MAX_SECRET_GRACE, PREVIOUS_SECRET_GRACE},
    db,
    ids::ContestId,
    money::Currency,
    points::Rounding,
};
use utoipa::ToSchema;

use super::paging::{Page, PageQuery};
use crate::{
    api::{
        envelope::{BadRequest, Conflict, NotFound, ServiceUnavailable, Unauthorized},
        fields::{required, ExactDecimal, Flag, Key, Number, Object, Patch, Text, WholeNumber},
        schema::{self, ContestIdParam, CurrencyCode},
        Envelope as Answer, Reply,
    },
    body::{self, RawBody},
    error::ApiError,
    state::AppState,
};

/// Largest `pointsPerUnit` (either kind) accepted.
const MAX_POINTS_PER_UNIT: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);
/// Largest exchange rate accepted.
const MAX_RATE: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);
/// Largest referral bonus accepted.
const MAX_BONUS: i64 = 1_000_000_000;
/// Longest grace period of a rotated-out secret, in seconds (a week).
const MAX_GRACE_SECONDS: i64 = MAX_SECRET_GRACE.num_seconds();

/// `POST /api/contests`: only `name` is required. Unknown fields are `400` naming them.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"id": "summer", "name": "Summer Blitz", "currency": "USD", "pointsPerUnit": 1}))]
pub struct ContestCreate {
    /// `[A-Za-z0-9_-]{1,64}`; generated (`c` + 24 base-36 characters) when absent.
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub id: Option<Text>,
    /// Display name: 1–200 characters after trimming.
    #[serde(default)]
    #[schema(value_type = String, min_length = 1, max_length = 200, required = true)]
    pub name: Option<Text>,
    /// ISO 4217 code (any case) points are counted in; default `USD`.
    #[serde(default)]
    #[schema(value_type = Option<CurrencyCode>)]
    pub currency: Option<Text>,
    /// Points per unit of the contest currency, 0 to 10^6; default 1.
    #[serde(default)]
    #[schema(schema_with = schema::points_per_unit)]
    pub points_per_unit: Option<ExactDecimal>,
    /// Rounding of fractional points; default `nearest`.
    #[serde(default)]
    #[schema(value_type = Option<Rounding>)]
    pub rounding: Option<Text>,
    /// Purchase webhooks answer 403 when false; default true.
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    pub purchase_tracking: Option<Flag>,
    /// Stripe `livemode: false` and Shopify `test: true` events award; default true.
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    pub accept_test_events: Option<Flag>,
    /// The generic purchase, signup and refund webhooks wait for the worker's outcome (as with
    /// `Prefer: wait=3`) unless the sender states a `wait` of its own; default false.
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    pub sync_responses: Option<Flag>,
    /// Referral rewards (each default 0).
    #[serde(default)]
    #[schema(value_type = Option<ReferralInput>)]
    pub referral: Option<Object<ReferralInput>>,
    /// How many units of the contest currency one unit of each currency is worth.
    #[serde(default)]
    #[schema(schema_with = schema::exchange_rates)]
    pub exchange_rates: Option<BTreeMap<Key, ExactDecimal>>,
    /// Provider signing secrets.
    #[serde(default)]
    #[schema(value_type = Option<ProviderSecretsInput>)]
    pub provider_secrets: Option<Object<ProviderSecretsInput>>,
}

/// `PATCH /api/contests/{contestId}`: any settable field; absent fields keep their value.
/// `exchangeRates` replaces the whole map; `providerSecrets` merges per provider (`null` removes
/// one). The id cannot be changed. Unknown fields are `400` naming them, and a refused change
/// changes nothing.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"purchaseTracking": false}))]
pub struct ContestPatch {
    /// Display name: 1–200 characters after trimming.
    #[serde(default)]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 200)]
    pub name: Option<Text>,
    /// ISO 4217 code (any case) points are counted in.
    #[serde(default)]
    #[schema(value_type = Option<CurrencyCode>)]
    pub currency: Option<Text>,
    /// Points per unit of the contest currency, 0 to 10^6.
    #[serde(default)]
    #[schema(schema_with = schema::points_per_unit)]
    pub points_per_unit: Option<ExactDecimal>,
    /// Rounding of fractional points.
    #[serde(default)]
    #[schema(value_type = Option<Rounding>)]
    pub rounding: Option<Text>,
    /// Purchase webhooks answer 403 when false.
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    pub purchase_tracking: Option<Flag>,
    /// Whether test-mode provider events award.
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    pub accept_test_events: Option<Flag>,
    /// Whether the generic purchase, signup and refund webhooks wait for the worker's outcome
    /// (as with `Prefer: wait=3`) when the sender states no `wait`.
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    pub sync_responses: Option<Flag>,
    /// Referral rewards; absent values keep theirs.
    #[serde(default)]
    #[schema(value_type = Option<ReferralInput>)]
    pub referral: Option<Object<ReferralInput>>,
    /// Replaces the whole map of exchange rates.
    #[serde(default)]
    #[schema(schema_with = schema::exchange_rates)]
    pub exchange_rates: Option<BTreeMap<Key, ExactDecimal>>,
    /// Merged per provider: a string sets one, `null` removes it.
    #[serde(default)]
    #[schema(value_type = Option<ProviderSecretsInput>)]
    pub provider_secrets: Option<Object<ProviderSecretsInput>>,
}

/// Referral rewards, as sent; absent values keep theirs (default 0).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReferralInput {
    /// Points the code's owner earns when a friend signs up with it (0 to 10^9).
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 1_000_000_000)]
    pub advocate_points: Option<WholeNumber<0, MAX_BONUS>>,
    /// Points the friend earns for signing up with a code (0 to 10^9).
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 1_000_000_000)]
    pub friend_points: Option<WholeNumber<0, MAX_BONUS>>,
    /// Points per unit of contest currency the code's owner earns on a referred purchase
    /// (0 to 10^6).
    #[serde(default)]
    #[schema(schema_with = schema::points_per_unit)]
    pub points_per_unit: Option<ExactDecimal>,
}

/// Provider signing secrets, as sent: a non-empty string (at most 1024 characters, trimmed)
/// sets one, `null` removes it; any other key is `400` naming it.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderSecretsInput {
    /// Shopify webhook signing secret.
    #[serde(default)]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 1024)]
    pub shopify: Patch<Text>,
    /// Stripe endpoint signing secret (`whsec_…`).
    #[serde(default)]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 1024)]
    pub stripe: Patch<Text>,
    /// Coinflow webhook validation key.
    #[serde(default)]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 1024)]
    pub coinflow: Patch<Text>,
}

/// `POST /api/contests/{contestId}/webhook-secret/rotate`: how long the old secret keeps
/// working. Strict: any other field is `400` naming it.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"gracePeriodSeconds": 0}))]
pub struct RotateSecret {
    /// Seconds the old secret keeps working, 0 (revoke it now) to 604800 (a week); absent or
    /// null: 86400 (24 h).
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 604_800)]
    pub grace_period_seconds: Option<WholeNumber<0, MAX_GRACE_SECONDS>>,
}

impl RotateSecret {
    /// The overlap asked for: absent is the default 24 h.
    pub fn grace(&self) -> chrono::Duration {
        self.grace_period_seconds
            .map_or(PREVIOUS_SECRET_GRACE, |seconds| {
                chrono::Duration::seconds(seconds.0)
            })
    }
}

/// A contest as the admin API shows it, with its webhook secret and the URLs to give senders.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Contest)]
pub struct ContestView {
    /// The contest id (part of every webhook URL).
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$", example = "summer")]
    pub id: String,
    /// Display name.
    pub name: String,
    /// Currency points are counted in.
    #[schema(value_type = CurrencyCode)]
    pub currency: Currency,
    /// Points per unit of the contest currency.
    #[schema(schema_with = schema::points_per_unit)]
    pub points_per_unit: Number,
    /// Rounding of fractional points: `nearest` (half away from zero), `floor` or `ceil`.
    pub rounding: Rounding,
    /// Purchase webhooks answer 403 when false.
    pub purchase_tracking: bool,
    /// Whether test-mode provider events award.
    pub accept_test_events: bool,
    /// Whether the generic purchase, signup and refund webhooks wait for the worker's outcome
    /// (as with `Prefer: wait=3`) when the sender states no `wait`.
    pub sync_responses: bool,
    /// Referral rewards.
    pub referral: ReferralView,
    /// Units of the contest currency one unit of each currency is worth.
    #[schema(schema_with = schema::exchange_rates)]
    pub exchange_rates: BTreeMap<String, Number>,
    /// The provider secrets that are set.
    pub provider_secrets: ProviderSecretsView,
    /// The shared secret of the generic webhooks: `whsec_` + base64 of 32 random bytes.
    #[schema(pattern = "^whsec_[A-Za-z0-9+/]{43}=$")]
    pub webhook_secret: String,
    /// While a rotated-out secret still works: when it stops; otherwise null.
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    pub previous_webhook_secret_expires_at: Option<DateTime<Utc>>,
    /// One URL per webhook endpoint.
    pub webhook_urls: WebhookUrls,
    /// When the contest was created.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: DateTime<Utc>,
}

/// Referral rewards of a contest.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Referral)]
pub struct ReferralView {
    /// Points the code's owner earns when a friend signs up with it.
    pub advocate_points: i64,
    /// Points the friend earns for signing up with a code.
    pub friend_points: i64,
    /// Points per unit of contest currency the code's owner earns on a referred purchase.
    #[schema(schema_with = schema::points_per_unit)]
    pub points_per_unit: Number,
}

/// The provider secrets that are set (unset ones are absent).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ProviderSecrets)]
pub struct ProviderSecretsView {
    /// Shopify webhook signing secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub shopify: Option<String>,
    /// Stripe endpoint signing secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub stripe: Option<String>,
    /// Coinflow webhook validation key.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub coinflow: Option<String>,
}

/// The contest's webhook URLs, one per endpoint, under `PUBLIC_BASE_URL`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookUrls {
    /// Generic purchase webhook (also takes Shopify deliveries signed with the Shopify secret).
    #[schema(format = "uri")]
    pub purchase: String,
    /// Signup webhook.
    #[schema(format = "uri")]
    pub signup: String,
    /// Generic refund webhook (refunds, cancellations, chargebacks of generic purchases).
    #[schema(format = "uri")]
    pub refund: String,
    /// Shopify referral webhook.
    #[schema(format = "uri")]
    pub shopify: String,
    /// Stripe referral webhook.
    #[schema(format = "uri")]
    pub stripe: String,
    /// Coinflow webhook.
    #[schema(format = "uri")]
    pub coinflow: String,
}

impl WebhookUrls {
    /// The URLs of contest `id` under `base_url`.
    pub fn of(base_url: &str, id: &ContestId) -> Self {
        Self {
            purchase: format!("{base_url}/api/webhooks/purchase/{id}"),
            signup: format!("{base_url}/api/webhooks/signup/{id}"),
            refund: format!("{base_url}/api/webhooks/refund/{id}"),
            shopify: format!("{base_url}/api/webhooks/referral/shopify/{id}"),
            stripe: format!("{base_url}/api/webhooks/referral/stripe/{id}"),
            coinflow: format!("{base_url}/api/webhooks/coinflow/{id}"),
        }
    }

    /// Every URL with its endpoint's name, in the order they are printed.
    pub fn named(&self) -> [(&'static str, &str); 6] {
        [
            ("purchase", &self.purchase),
            ("signup", &self.signup),
            ("refund", &self.refund),
            ("shopify", &self.shopify),
            ("stripe", &self.stripe),
            ("coinflow", &self.coinflow),
        ]
    }
}

impl ContestView {
    /// The contest as the admin API shows it, with its URLs under `base_url`.
    pub fn of(contest: &Contest, base_url: &str) -> Self {
        Self {
            id: contest.id.as_str().to_owned(),
            name: contest.name.clone(),
            currency: contest.currency,
            points_per_unit: Number(contest.points_per_unit),
            rounding: contest.rounding,
            purchase_tracking: contest.purchase_tracking,
            accept_test_events: contest.accept_test_events,
            sync_responses: contest.sync_responses,
            referral: ReferralView {
                advocate_points: contest.referral.advocate_points,
                friend_points: contest.referral.friend_points,
                points_per_unit: Number(contest.referral.points_per_unit),
            },
            exchange_rates: contest
                .exchange_rates
                .iter()
                .map(|(currency, rate)| (currency.to_string(), Number(*rate)))
                .collect(),
            provider_secrets: ProviderSecretsView {
                shopify: contest.provider_secrets.shopify.clone(),
                stripe: contest.provider_secrets.stripe.clone(),
                coinflow: contest.provider_secrets.coinflow.clone(),
            },
            webhook_secret: contest.webhook_secret.clone(),
            previous_webhook_secret_expires_at: contest
                .previous_webhook_secret
                .as_ref()
                .map(|(_, at)| *at),
            webhook_urls: WebhookUrls::of(base_url, &contest.id),
            created_at: contest.created_at,
            updated_at: contest.updated_at,
        }
    }
}

/// A page of contests.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContestList {
    /// Contests in id order.
    pub contests: Vec<ContestView>,
    /// The `after` that fetches the next page; null on the last page.
    #[schema(required = true)]
    pub next: Option<String>,
}

/// Create a contest
///
/// Applies at once on this receiver and within seconds on every other one.
#[utoipa::path(
    post,
    path = "/api/contests",
    tag = "admin",
    operation_id = "createContest",
    request_body(content = ContestCreate, content_type = "application/json"),
    responses(
        (status = 201, description = "Created.", body = Answer<ContestView>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 409, response = Conflict),
        (status = 503, response = ServiceUnavailable),
    ),
    security(("adminToken" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    RawBody(body): RawBody,
) -> Result<Reply<ContestView>, ApiError> {
    let request = body::strict::<ContestCreate>(&body)?;
    let contest = create_contest(&state.db, request).await?;
    let contest = state.cache.put(contest);
    tracing::info!(contest_id = %contest.id, "contest created");
    Ok(Reply::created(ContestView::of(
        &contest,
        state.config.base_url(),
    )))
}

/// List contests
///
/// Contests in id order, `limit` at a time (default 25, at most 100); `next` is the `after`
/// of the following page, null on the last one. Keyset paging: a page is as fast whatever its
/// position, and contests created meanwhile are neither skipped nor repeated.
#[utoipa::path(
    get,
    path = "/api/contests",
    tag = "admin",
    operation_id = "listContests",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of contests.", body = Answer<ContestList>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 503, response = ServiceUnavailable),
    ),
    security(("adminToken" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<PageQuery>,
) -> Result<Reply<ContestList>, ApiError> {
    let page = list_contests(&state.db, &query).await?;
    let base_url = state.config.base_url();
    Ok(Reply::ok(ContestList {
        contests: page
            .items
            .iter()
            .map(|contest| ContestView::of(contest, base_url))
            .collect(),
        next: page.next,
    }))
}

/// One page of contests: `after` must be a contest id (400 `after`), `limit` 1–100 (400
/// `limit`). Shared by `GET /api/contests` and `receiver contest list`.
pub async fn list_contests(
    db: &sqlx::PgPool,
    query: &PageQuery,
) -> Result<Page<Contest>, ApiError> {
    let paging = query.parse(|after| {
        ContestId::parse(after)
            .map(|_| ())
            .map_err(|error| error.to_string())
    })?;
    let rows = db::contests::list(db, paging.after.as_deref(), paging.fetch()).await?;
    Ok(paging.page(rows, |contest| contest.id.as_str().to_owned()))
}

/// Validates a create body (only `name` is required), fills in the defaults, generates the id
/// when absent and the webhook secret, and inserts the contest: 400 naming the field, 409 when
/// the id is taken. The table's trigger tells every running receiver. Shared by
/// `POST /api/contests` and `receiver contest create`.
pub async fn create_contest(
    db: &sqlx::PgPool,
    request: ContestCreate,
) -> Result<Contest, ApiError> {
    let id = match &request.id {
        Some(raw) => {
            ContestId::parse(&raw.0).map_err(|error| ApiError::field("id", error.to_string()))?
        }
        None => ContestId::generate(),
    };
    let name = required(request.name, "name")?;
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
    Settings {
        name: Some(name),
        currency: request.currency,
        points_per_unit: request.points_per_unit,
        rounding: request.rounding,
        purchase_tracking: request.purchase_tracking,
        accept_test_events: request.accept_test_events,
        sync_responses: request.sync_responses,
        referral: request.referral,
        exchange_rates: request.exchange_rates,
        provider_secrets: request.provider_secrets,
    }
    .apply(&mut contest)?;
    if !db::contests::insert(db, &contest).await? {
        return Err(ApiError::ContestExists);
    }
    Ok(contest)
}

/// Get a contest
#[utoipa::path(
    get,
    path = "/api/contests/{contestId}",
    tag = "admin",
    operation_id = "getContest",
    params(ContestIdParam),
    responses(
        (status = 200, description = "The contest.", body = Answer<ContestView>),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    ),
    security(("adminToken" = [])),
)]
pub async fn get(
    State(state): State<AppState>,
    Path(contest_id): Path<String>,
) -> Result<Reply<ContestView>, ApiError> {
    let contest = super::load_contest(&state, &contest_id).await?;
    Ok(Reply::ok(ContestView::of(
        &contest,
        state.config.base_url(),
    )))
}

/// Change a contest
///
/// Any settable field; applies at once on this receiver and within seconds on every other.
/// An unknown field, or any invalid one, is `400` naming it and changes nothing.
#[utoipa::path(
    patch,
    path = "/api/contests/{contestId}",
    tag = "admin",
    operation_id = "patchContest",
    params(ContestIdParam),
    request_body(content = ContestPatch, content_type = "application/json"),
    responses(
        (status = 200, description = "The changed contest.", body = Answer<ContestView>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    ),
    security(("adminToken" = [])),
)]
pub async fn patch(
    State(state): State<AppState>,
    Path(contest_id): Path<String>,
    RawBody(body): RawBody,
) -> Result<Reply<ContestView>, ApiError> {
    let mut contest = super::load_contest(&state, &contest_id).await?;
    let request = body::strict::<ContestPatch>(&body)?;
    // Every field is validated before anything is written: a refused change changes nothing.
    Settings {
        name: request.name,
        currency: request.currency,
        points_per_unit: request.points_per_unit,
        rounding: request.rounding,
        purchase_tracking: request.purchase_tracking,
        accept_test_events: request.accept_test_events,
        sync_responses: request.sync_responses,
        referral: request.referral,
        exchange_rates: request.exchange_rates,
        provider_secrets: request.provider_secrets,
    }
    .apply(&mut contest)?;
    contest.updated_at = Utc::now();
    if !db::contests::update(&state.db, &contest).await? {
        return Err(ApiError::ContestNotFound);
    }
    let contest = state.cache.put(contest);
    tracing::info!(contest_id = %contest.id, "contest changed");
    Ok(Reply::ok(ContestView::of(
        &contest,
        state.config.base_url(),
    )))
}

/// Rotate the webhook secret
///
/// A new webhook secret. The previous one keeps working for `gracePeriodSeconds` (default
/// 24 hours; `previousWebhookSecretExpiresAt` says until when); `0` revokes it at once,
/// e.g. after a leak (`previousWebhookSecretExpiresAt` is then null). The body is optional.
/// Applies at once on this receiver and within 15 s on every other one.
#[utoipa::path(
    post,
    path = "/api/contests/{contestId}/webhook-secret/rotate",
    tag = "admin",
    operation_id = "rotateWebhookSecret",
    params(ContestIdParam),
    request_body(content = Option<RotateSecret>, content_type = "application/json"),
    responses(
        (status = 200, description = "The contest with its new secret.", body = Answer<ContestView>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    ),
    security(("adminToken" = [])),
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    Path(contest_id): Path<String>,
    RawBody(body): RawBody,
) -> Result<Reply<ContestView>, ApiError> {
    let grace = body::strict_or_empty::<RotateSecret>(&body)?.grace();
    let contest = rotate_contest_secret(&state.db, &contest_id, grace).await?;
    let contest = state.cache.put(contest);
    tracing::info!(
        contest_id = %contest.id,
        grace_seconds = grace.num_seconds(),
        "webhook secret rotated"
    );
    Ok(Reply::ok(ContestView::of(
        &contest,
        state.config.base_url(),
    )))
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

/// The settable fields of a create or a change, as sent.
struct Settings {
    name: Option<Text>,
    currency: Option<Text>,
    points_per_unit: Option<ExactDecimal>,
    rounding: Option<Text>,
    purchase_tracking: Option<Flag>,
    accept_test_events: Option<Flag>,
    sync_responses: Option<Flag>,
    referral: Option<Object<ReferralInput>>,
    exchange_rates: Option<BTreeMap<Key, ExactDecimal>>,
    provider_secrets: Option<Object<ProviderSecretsInput>>,
}

impl Settings {
    /// Applies every field present to `contest`, validating each (400 naming the first invalid
    /// one; `contest` is a copy the caller writes only on success).
    fn apply(self, contest: &mut Contest) -> Result<(), ApiError> {
        if let Some(name) = self.name {
            let name = name.0.trim();
            if name.is_empty() || name.chars().count() > 200 {
                return Err(ApiError::field("name", "must be 1 to 200 characters"));
            }
            contest.name = name.to_owned();
        }
        if let Some(code) = self.currency {
            contest.currency = Currency::parse(&code.0)
                .map_err(|error| ApiError::field("currency", error.to_string()))?;
        }
        if let Some(per_unit) = self.points_per_unit {
            contest.points_per_unit = points_per_unit(per_unit, "pointsPerUnit")?;
        }
        if let Some(rounding) = self.rounding {
            contest.rounding = Rounding::parse(&rounding.0)
                .ok_or_else(|| ApiError::field("rounding", "must be nearest, floor or ceil"))?;
        }
        if let Some(flag) = self.purchase_tracking {
            contest.purchase_tracking = flag.0;
        }
        if let Some(flag) = self.accept_test_events {
            contest.accept_test_events = flag.0;
        }
        if let Some(flag) = self.sync_responses {
            contest.sync_responses = flag.0;
        }
        if let Some(Object(referral)) = self.referral {
            if let Some(points) = referral.advocate_points {
                contest.referral.advocate_points = points.0;
            }
            if let Some(points) = referral.friend_points {
                contest.referral.friend_points = points.0;
            }
            if let Some(per_unit) = referral.points_per_unit {
                contest.referral.points_per_unit =
                    points_per_unit(per_unit, "referral.pointsPerUnit")?;
            }
        }
        if let Some(rates) = self.exchange_rates {
            let mut parsed = BTreeMap::new();
            for (code, rate) in rates {
                let name = format!("exchangeRates.{code}");
                let currency = Currency::parse(&code.0)
                    .map_err(|error| ApiError::field(name.clone(), error.to_string()))?;
                if rate.0 <= Decimal::ZERO || rate.0 > MAX_RATE {
                    return Err(ApiError::field(
                        name,
                        format!("must be greater than 0 and at most {MAX_RATE}"),
                    ));
                }
                parsed.insert(currency, rate.0);
            }
            contest.exchange_rates = parsed;
        }
        if let Some(Object(secrets)) = self.provider_secrets {
            let slots = [
                (
                    "shopify",
                    secrets.shopify,
                    &mut contest.provider_secrets.shopify,
                ),
                (
                    "stripe",
                    secrets.stripe,
                    &mut contest.provider_secrets.stripe,
                ),
                (
                    "coinflow",
                    secrets.coinflow,
                    &mut contest.provider_secrets.coinflow,
                ),
            ];
            for (provider, change, slot) in slots {
                match change {
                    Patch::Absent => {}
                    Patch::Null => *slot = None,
                    Patch::Set(Text(secret))
                        if (1..=1024).contains(&secret.trim().len())
                            && !secret.chars().any(char::is_control) =>
                    {
                        *slot = Some(secret.trim().to_owned());
                    }
                    Patch::Set(_) => {
                        return Err(ApiError::field(
                            format!("providerSecrets.{provider}"),
                            "must be a non-empty string or null",
                        ))
                    }
                }
            }
        }
        Ok(())
    }
}

/// A `pointsPerUnit` (either kind): 0 to 10^6.
fn points_per_unit(value: ExactDecimal, field: &str) -> Result<Decimal, ApiError> {
    if value.0 < Decimal::ZERO || value.0 > MAX_POINTS_PER_UNIT {
        return Err(ApiError::field(
            field,
            format!("must be from {} to {MAX_POINTS_PER_UNIT}", Decimal::ZERO),
        ));
    }
    Ok(value.0)
}
