//! Entries through the admin API: signup, read, list, erase, and the leaderboard (disqualified
//! and erased entries left out).

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::{
    contest::Contest,
    db::{self, entries::Entry},
    email::Email,
};
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};

use super::paging::{Page, PageQuery};
use crate::{
    api::{
        envelope::{always_true, BadRequest, NotFound, ServiceUnavailable, Unauthorized},
        fields::{required, Text},
        schema::{ContestIdParam, EntryIdParam},
        Envelope as Answer, Reply,
    },
    body::{self, RawBody},
    error::ApiError,
    state::AppState,
};

/// Default and largest leaderboard sizes.
const DEFAULT_LEADERBOARD: i64 = 10;
const MAX_LEADERBOARD: i64 = 1000;

/// `POST /api/contests/{contestId}/entries`: a signup through the admin API, applied at once.
/// Unknown fields are `400` naming them.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"email": "sam@example.com", "name": "Sam"}))]
pub struct EntryCreate {
    /// The person's email address (trimmed and lower-cased).
    #[serde(default)]
    #[schema(value_type = String, format = Email, max_length = 254, required = true)]
    pub email: Option<Text>,
    /// Display name (trimmed; at most 200 characters).
    #[serde(default)]
    #[schema(value_type = Option<String>, max_length = 200)]
    pub name: Option<Text>,
    /// A friend's referral code.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub referral_code: Option<Text>,
}

/// An entry: one person in one contest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Entry)]
pub struct EntryView {
    /// `ent_` + a hash of (contest, email).
    pub entry_id: String,
    /// Normalised email.
    pub email: String,
    /// Display name, when given.
    #[schema(required = true)]
    pub name: Option<String>,
    /// Points so far.
    pub points: i64,
    /// The code friends sign up or buy with to credit this entry.
    pub referral_code: String,
    /// The entry whose code this one signed up with.
    #[schema(required = true)]
    pub referred_by: Option<String>,
    /// When the entry was created.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    /// True while the entry is disqualified: absent from the leaderboard, still earning.
    pub disqualified: bool,
    /// When it was disqualified; null while it is not.
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    pub disqualified_at: Option<DateTime<Utc>>,
    /// The operator's reason, if one was given; null while it is not disqualified.
    #[schema(required = true)]
    pub disqualification_reason: Option<String>,
}

impl From<&Entry> for EntryView {
    fn from(entry: &Entry) -> Self {
        Self {
            entry_id: entry.id.as_str().to_owned(),
            email: entry.email.clone(),
            name: entry.name.clone(),
            points: entry.points,
            referral_code: entry.referral_code.clone(),
            referred_by: entry.referred_by.clone(),
            created_at: entry.created_at,
            disqualified: entry.disqualified(),
            disqualified_at: entry.disqualified_at,
            disqualification_reason: entry.disqualification_reason.clone(),
        }
    }
}

/// An entry, and whether it existed before this signup (`201` when created, `200` when not).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EntryCreated {
    /// The entry.
    #[serde(flatten)]
    pub entry: EntryView,
    /// True when the email already had an entry (nothing changed).
    pub already_exists: bool,
}

/// A page of entries.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryList {
    /// Entries in id order (erased ones are gone).
    pub entries: Vec<EntryView>,
    /// The `after` that fetches the next page; null on the last page.
    #[schema(required = true)]
    pub next: Option<String>,
}

/// What an erasure did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntryErased {
    /// The id the entry had (it no longer exists under it).
    pub entry_id: String,
    /// Always `true`.
    #[schema(schema_with = always_true)]
    pub erased: bool,
}

/// The top entries by points.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Leaderboard {
    /// Highest points first; equal points share a rank and are listed oldest first.
    pub entries: Vec<LeaderboardEntry>,
}

/// One leaderboard row.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaderboardEntry {
    /// 1-based; equal points share a rank (1, 1, 3).
    #[schema(minimum = 1)]
    pub rank: i64,
    /// The entry.
    pub entry_id: String,
    /// Normalised email.
    pub email: String,
    /// Display name, when given.
    #[schema(required = true)]
    pub name: Option<String>,
    /// Points.
    pub points: i64,
}

/// The leaderboard's query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LeaderboardQuery {
    /// How many entries (1–1000, default 10).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

/// Sign someone up
///
/// Applied at once (not through the queue): `201` when the entry is created, `200` with
/// `alreadyExists: true` when the email already had one.
#[utoipa::path(
    post,
    path = "/api/contests/{contestId}/entries",
    tag = "admin",
    operation_id = "createEntry",
    params(ContestIdParam),
    request_body(content = EntryCreate, content_type = "application/json"),
    responses(
        (status = 200, description = "The email already had an entry.", body = Answer<EntryCreated>),
        (status = 201, description = "Created.", body = Answer<EntryCreated>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    ),
    security(("adminToken" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    Path(contest_id): Path<String>,
    RawBody(body): RawBody,
) -> Result<Reply<EntryCreated>, ApiError> {
    let contest = super::load_contest(&state, &contest_id).await?;
    let request = body::strict::<EntryCreate>(&body)?;
    let email = Email::parse(&required(request.email, "email")?.0)
        .map_err(|error| ApiError::field("email", error.to_string()))?;
    let name = request.name.as_ref().and_then(Text::trimmed);
    if name.is_some_and(|n| n.chars().count() > 200) {
        return Err(ApiError::field("name", "must be at most 200 characters"));
    }
    let referral_code = request.referral_code.as_ref().map(|code| code.0.as_str());

    let signup = db::entries::Signup {
        email: &email,
        name,
        phone: None,
        referral_code,
    };
    let mut attempts = 0;
    let outcome = loop {
        attempts += 1;
        let mut tx = state.db.begin().await?;
        match db::entries::sign_up(&mut tx, &contest, signup.clone()).await {
            Ok(outcome) => {
                tx.commit().await?;
                break outcome;
            }
            Err(error) if attempts < 3 && db::is_retryable(&error) => continue,
            Err(error) => return Err(error.into()),
        }
    };
    let status = if outcome.already_exists {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(Reply::with_status(
        status,
        EntryCreated {
            entry: EntryView::from(&outcome.entry),
            already_exists: outcome.already_exists,
        },
    ))
}

/// Get an entry
#[utoipa::path(
    get,
    path = "/api/contests/{contestId}/entries/{entryId}",
    tag = "admin",
    operation_id = "getEntry",
    params(ContestIdParam, EntryIdParam),
    responses(
        (status = 200, description = "The entry.", body = Answer<EntryView>),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    ),
    security(("adminToken" = [])),
)]
pub async fn get(
    State(state): State<AppState>,
    Path((contest_id, entry_id)): Path<(String, String)>,
) -> Result<Reply<EntryView>, ApiError> {
    let contest = super::load_contest(&state, &contest_id).await?;
    let entry_id = parse_entry_id(&entry_id)?;
    let entry = db::entries::find(&state.db, &contest.id, entry_id)
        .await?
        .ok_or(ApiError::NotFound("entry"))?;
    Ok(Reply::ok(EntryView::from(&entry)))
}

/// List entries
///
/// A contest's entries in id order, `limit` at a time (default 25, at most 100); `next` is the
/// `after` of the following page, null on the last one. Erased entries are not listed;
/// disqualified ones are (with `disqualified: true`).
#[utoipa::path(
    get,
    path = "/api/contests/{contestId}/entries",
    tag = "admin",
    operation_id = "listEntries",
    params(ContestIdParam, PageQuery),
    responses(
        (status = 200, description = "A page of entries.", body = Answer<EntryList>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    ),
    security(("adminToken" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    Path(contest_id): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<Reply<EntryList>, ApiError> {
    let contest = super::load_contest(&state, &contest_id).await?;
    let page = list_entries(&state.db, &contest, &query).await?;
    Ok(Reply::ok(EntryList {
        entries: page.items.iter().map(EntryView::from).collect(),
        next: page.next,
    }))
}

/// One page of a contest's entries: `after` must be an entry id (400 `after`), `limit` 1–100
/// (400 `limit`). Shared by `GET …/entries` and `receiver entry list`.
pub async fn list_entries(
    db: &PgPool,
    contest: &Contest,
    query: &PageQuery,
) -> Result<Page<Entry>, ApiError> {
    let paging = query.parse(|after| {
        parse_entry_id(after)
            .map(|_| ())
            .map_err(|_| "must be an entry id (ent_…), the next of the previous page".to_owned())
    })?;
    let rows = db::entries::list(db, &contest.id, paging.after.as_deref(), paging.fetch()).await?;
    Ok(paging.page(rows, |entry| entry.id.as_str().to_owned()))
}

/// Erase an entry
///
/// At the person's request: their email, name and phone are gone from the entry and its
/// purchases (their lookups answer `email` and `entryId` null), the entry leaves the
/// leaderboard and the lists, and a later event for the same email starts a new entry from
/// zero. Points totals stay: the erased entry keeps its points and ledger, unreachable, so the
/// books balance. Erasing it again is `404`.
#[utoipa::path(
    delete,
    path = "/api/contests/{contestId}/entries/{entryId}",
    tag = "admin",
    operation_id = "eraseEntry",
    params(ContestIdParam, EntryIdParam),
    responses(
        (status = 200, description = "Erased.", body = Answer<EntryErased>),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    ),
    security(("adminToken" = [])),
)]
pub async fn erase(
    State(state): State<AppState>,
    Path((contest_id, entry_id)): Path<(String, String)>,
) -> Result<Reply<EntryErased>, ApiError> {
    let contest = super::load_contest(&state, &contest_id).await?;
    Ok(Reply::ok(
        erase_entry(&state.db, &contest, &entry_id).await?,
    ))
}

/// Erases an entry (see [`db::entries::erase`]) in its own transaction, retried on transient
/// conflicts (a deadlock with a worker batch touching the same entry, say). Shared by the
/// endpoint and `receiver entry erase`.
pub async fn erase_entry(
    db: &PgPool,
    contest: &Contest,
    raw_id: &str,
) -> Result<EntryErased, ApiError> {
    let entry_id = parse_entry_id(raw_id)?;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut tx = db.begin().await?;
        match db::entries::erase(&mut tx, &contest.id, entry_id).await {
            Ok(Some(_)) => {
                tx.commit().await?;
                // Neither the email nor the new id is logged: the log says only that it happened.
                tracing::info!(contest_id = %contest.id, entry_id, "entry erased");
                return Ok(EntryErased {
                    entry_id: entry_id.to_owned(),
                    erased: true,
                });
            }
            Ok(None) => return Err(ApiError::NotFound("entry")),
            Err(error) if attempts < 3 && db::is_retryable(&error) => continue,
            Err(error) => return Err(error.into()),
        }
    }
}

/// Leaderboard
///
/// Disqualified and erased entries are left out (and take no rank).
#[utoipa::path(
    get,
    path = "/api/contests/{contestId}/leaderboard",
    tag = "admin",
    operation_id = "leaderboard",
    params(ContestIdParam, LeaderboardQuery),
    responses(
        (status = 200, description = "The top entries.", body = Answer<Leaderboard>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    ),
    security(("adminToken" = [])),
)]
pub async fn leaderboard(
    State(state): State<AppState>,
    Path(contest_id): Path<String>,
    Query(query): Query<LeaderboardQuery>,
) -> Result<Reply<Leaderboard>, ApiError> {
    let contest = super::load_contest(&state, &contest_id).await?;
    let limit = match query.limit.as_deref() {
        None => DEFAULT_LEADERBOARD,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_LEADERBOARD).contains(n))
            .ok_or_else(|| {
                ApiError::field(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_LEADERBOARD}"),
                )
            })?,
    };
    let rows = db::entries::leaderboard(&state.db, &contest.id, limit).await?;
    Ok(Reply::ok(Leaderboard {
        entries: rows
            .into_iter()
            .map(|row| LeaderboardEntry {
                rank: row.rank,
                entry_id: row.entry.id.as_str().to_owned(),
                email: row.entry.email,
                name: row.entry.name,
                points: row.entry.points,
            })
            .collect(),
    }))
}

/// An entry id from a path: `ent_` + base-32; anything else (a NUL byte, an erased entry's id)
/// cannot be a live entry and is 404 without a query.
pub fn parse_entry_id(raw: &str) -> Result<&str, ApiError> {
    let valid = raw.starts_with("ent_")
        && raw.len() <= 64
        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if valid {
        Ok(raw)
    } else {
        Err(ApiError::NotFound("entry"))
    }
}
