//! Contest entries: lookup, lists, leaderboard, signup (with its referral bonus, written to the
//! points ledger like every change of points) and erasure.
//!
//! An erased entry keeps its row, renamed to a random id, without email, name or phone: its
//! points, ledger and purchases stay (the books balance), but no read here finds it any more.

use chrono::{DateTime, Utc};
use rand::Rng;
use sqlx::{postgres::PgRow, PgConnection, PgExecutor, Row};

use crate::{
    contest::Contest,
    db::ledger::{self, LedgerKind, NewChange},
    email::Email,
    ids::{ContestId, EntryId},
    points::checked_total,
};

/// One person's entry in a contest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Derived from `(contest, email)`.
    pub id: EntryId,
    /// The contest it belongs to.
    pub contest_id: String,
    /// Normalised email.
    pub email: String,
    /// Display name, when given at signup.
    pub name: Option<String>,
    /// Points so far.
    pub points: i64,
    /// The code friends sign up or buy with to credit this entry.
    pub referral_code: String,
    /// The entry whose code this one signed up with.
    pub referred_by: Option<String>,
    /// When the entry was created.
    pub created_at: DateTime<Utc>,
    /// Set while the entry is disqualified (off the leaderboard, still earning).
    pub disqualified_at: Option<DateTime<Utc>>,
    /// The operator's reason for the disqualification, if given.
    pub disqualification_reason: Option<String>,
}

impl Entry {
    /// True while the entry is disqualified.
    pub fn disqualified(&self) -> bool {
        self.disqualified_at.is_some()
    }
}

const COLUMNS: &str =
    "id, contest_id, email, name, points, referral_code, referred_by, created_at, \
    disqualified_at, disqualification_reason";

/// Characters of referral codes: upper case letters and digits without the look-alikes 0/O, 1/I/L.
const REFERRAL_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

/// Length of a referral code: 31^8 ≈ 8.5 × 10^11 codes, so collisions are rare and retried.
pub const REFERRAL_CODE_LEN: usize = 8;

/// A fresh, human-typable referral code such as `K7MQ2XRA`.
pub fn generate_referral_code() -> String {
    let mut rng = rand::rng();
    (0..REFERRAL_CODE_LEN)
        .map(|_| REFERRAL_ALPHABET[rng.random_range(0..REFERRAL_ALPHABET.len())] as char)
        .collect()
}

/// Normalises a referral code as typed by a person (`k7mq-2xra ` → `K7MQ2XRA`).
pub fn normalise_referral_code(raw: &str) -> String {
    raw.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_uppercase)
        .collect()
}

fn from_row(row: &PgRow) -> Result<Entry, sqlx::Error> {
    Ok(Entry {
        id: EntryId::from_stored(row.try_get("id")?),
        contest_id: row.try_get("contest_id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        points: row.try_get("points")?,
        referral_code: row.try_get("referral_code")?,
        referred_by: row.try_get("referred_by")?,
        created_at: row.try_get("created_at")?,
        disqualified_at: row.try_get("disqualified_at")?,
        disqualification_reason: row.try_get("disqualification_reason")?,
    })
}

/// One entry of a contest by id (an erased entry is not found).
pub async fn find(
    db: impl PgExecutor<'_>,
    contest: &ContestId,
    id: &str,
) -> Result<Option<Entry>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM entries WHERE contest_id = $1 AND id = $2 AND erased_at IS NULL"
    ))
    .bind(contest.as_str())
    .bind(id)
    .try_map(|row: PgRow| from_row(&row))
    .fetch_optional(db)
    .await
}

/// The owner of a referral code in a contest.
pub async fn find_by_referral_code(
    db: impl PgExecutor<'_>,
    contest: &ContestId,
    code: &str,
) -> Result<Option<Entry>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM entries WHERE contest_id = $1 AND referral_code = $2 \
         AND erased_at IS NULL"
    ))
    .bind(contest.as_str())
    .bind(normalise_referral_code(code))
    .try_map(|row: PgRow| from_row(&row))
    .fetch_optional(db)
    .await
}

/// A leaderboard row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranked {
    /// 1-based rank; equal points share a rank (1, 1, 3).
    pub rank: i64,
    /// The entry.
    pub entry: Entry,
}

/// The top `limit` entries by points; ties are ranked equal and listed oldest first.
/// Disqualified and erased entries are left out (and take no rank).
pub async fn leaderboard(
    db: impl PgExecutor<'_>,
    contest: &ContestId,
    limit: i64,
) -> Result<Vec<Ranked>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS}, RANK() OVER (ORDER BY points DESC) AS rank FROM entries \
         WHERE contest_id = $1 AND disqualified_at IS NULL AND erased_at IS NULL \
         ORDER BY points DESC, created_at, id LIMIT $2"
    ))
    .bind(contest.as_str())
    .bind(limit)
    .try_map(|row: PgRow| {
        Ok(Ranked {
            rank: row.try_get("rank")?,
            entry: from_row(&row)?,
        })
    })
    .fetch_all(db)
    .await
}

/// Up to `limit` entries of a contest with ids after `after`, in id order (keyset paging on the
/// `entries_by_contest` index; erased entries are left out).
pub async fn list(
    db: impl PgExecutor<'_>,
    contest: &ContestId,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Entry>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM entries WHERE contest_id = $1 AND erased_at IS NULL \
         AND ($2::text IS NULL OR id > $2) ORDER BY id LIMIT $3"
    ))
    .bind(contest.as_str())
    .bind(after)
    .bind(limit)
    .try_map(|row: PgRow| from_row(&row))
    .fetch_all(db)
    .await
}

/// A fresh id for an erased entry: `erased_` + 26 random base-32 characters (130 bits), drawn
/// from nothing about the person, so it cannot be derived from their email the way live entry
/// ids are.
pub fn erased_entry_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut rng = rand::rng();
    let random: String = (0..26)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("erased_{random}")
}

/// Erases an entry at the person's request, in the caller's transaction; `None` when the contest
/// has no such (live) entry.
///
/// The entry is renamed to a random id ([`erased_entry_id`]) in one statement that also clears
/// its email, name and phone, gives it a fresh referral code (its old code then credits nobody)
/// and marks it erased. The foreign keys cascade the rename to its purchases, the referral
/// credits it earned, the entries it referred and its idempotency keys; the ledger (which has no
/// foreign key) is moved here, and ledger texts naming the old id are rewritten. Its points,
/// ledger and purchases stay, so every total still balances; the derived id is free again, so
/// the next event for the same email starts a new entry from zero.
///
/// Concurrency: the rename changes the row's key, so it waits for every transaction holding the
/// row (a worker that recorded a purchase for it holds a key-share lock through the foreign key
/// until it commits) and those purchases move with it. A worker that creates the entry after
/// the rename waits for this transaction and then creates a fresh one; one that found the entry
/// just before the rename and references it afterwards gets a foreign-key violation, which
/// `super::is_retryable` treats as a transient conflict: its retry creates the fresh entry.
pub async fn erase(
    tx: &mut PgConnection,
    contest: &ContestId,
    entry_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    let erased_id = erased_entry_id();
    let renamed: Option<Option<String>> = sqlx::query_scalar(
        "UPDATE entries SET id = $3, email = NULL, name = NULL, phone = NULL, \
         referral_code = $4, erased_at = now() \
         WHERE contest_id = $1 AND id = $2 AND erased_at IS NULL RETURNING referred_by",
    )
    .bind(contest.as_str())
    .bind(entry_id)
    .bind(&erased_id)
    .bind(generate_referral_code())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(referred_by) = renamed else {
        return Ok(None);
    };
    sqlx::query("UPDATE points_ledger SET entry_id = $2 WHERE entry_id = $1")
        .bind(entry_id)
        .bind(&erased_id)
        .execute(&mut *tx)
        .await?;
    // Stored answers of idempotent adjustments quote the email; the erased entry cannot be
    // addressed any more, so they can never be replayed.
    sqlx::query("DELETE FROM adjustment_keys WHERE entry_id = $1")
        .bind(&erased_id)
        .execute(&mut *tx)
        .await?;
    // Signup bonus rows name the other side of the referral by entry id: the advocate's rows
    // name this entry, and so do the rows of the entries it referred.
    sqlx::query(
        "UPDATE points_ledger SET reason = replace(reason, $1, $2) \
         WHERE entry_id IN (SELECT id FROM entries WHERE referred_by = $2 \
                            UNION ALL SELECT $3::text) \
         AND kind = 'signup' AND strpos(reason, $1) > 0",
    )
    .bind(entry_id)
    .bind(&erased_id)
    .bind(referred_by)
    .execute(&mut *tx)
    .await?;
    Ok(Some(erased_id))
}

/// What a signup asks for.
#[derive(Debug, Clone)]
pub struct Signup<'a> {
    /// The person signing up.
    pub email: &'a Email,
    /// Display name.
    pub name: Option<&'a str>,
    /// Phone number, as given.
    pub phone: Option<&'a str>,
    /// A friend's referral code.
    pub referral_code: Option<&'a str>,
}

/// What a signup did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignupOutcome {
    /// The entry after the signup.
    pub entry: Entry,
    /// True when the entry existed before (a repeated signup, or a buyer signing up later).
    pub already_exists: bool,
    /// The entry credited `advocatePoints`, if a bonus was paid by this call.
    pub credited_advocate: Option<String>,
    /// Points this call paid the advocate (0 unless this was the first signup with a valid code,
    /// or when the bonus would take the advocate beyond the points limit).
    pub advocate_points: i64,
    /// Points this call paid the person signing up (the friend bonus, same rules).
    pub friend_points: i64,
}

/// Records a signup in one transaction: creates the entry if needed and, on the entry's *first*
/// signup with a valid code that is not its own, gives the code's owner `advocatePoints` and the
/// friend `friendPoints`. Repeating a signup changes nothing (deduped on contest + email).
///
/// Rows are locked in id order so concurrent signups referring each other cannot deadlock.
pub async fn sign_up(
    tx: &mut PgConnection,
    contest: &Contest,
    signup: Signup<'_>,
) -> Result<SignupOutcome, sqlx::Error> {
    let entry_id = EntryId::derive(&contest.id, signup.email);
    let mut inserted = insert_if_missing(&mut *tx, &contest.id, &entry_id, signup.email).await?;

    let mut referrer = match signup.referral_code {
        Some(code) => find_by_referral_code(&mut *tx, &contest.id, code)
            .await?
            .filter(|owner| owner.id != entry_id),
        None => None,
    };

    let mut lock_ids = vec![entry_id.as_str().to_owned()];
    if let Some(owner) = &referrer {
        lock_ids.push(owner.id.as_str().to_owned());
    }
    lock_ids.sort();
    let mut balances = lock_balances(&mut *tx, &lock_ids).await?;
    // An erasure may have renamed the entry (or the advocate) between the insert and the lock;
    // the lock waited for it to commit. The person's entry is then created afresh (the derived
    // id is free again), and an erased advocate credits nobody.
    for _ in 0..3 {
        if balances.iter().any(|(id, _)| id == entry_id.as_str()) {
            break;
        }
        inserted = insert_if_missing(&mut *tx, &contest.id, &entry_id, signup.email).await?;
        balances = lock_balances(&mut *tx, &lock_ids).await?;
    }
    referrer = referrer.filter(|owner| balances.iter().any(|(id, _)| id == owner.id.as_str()));
    let balance = |id: &str| {
        balances
            .iter()
            .find(|(entry, _)| entry == id)
            .map_or(0, |(_, points)| *points)
    };

    // A bonus that would take its entry beyond the points limit is not paid (the signup itself
    // still counts).
    let bonus = |id: &str, points: i64| {
        if checked_total(balance(id), points).is_some() {
            points
        } else {
            tracing::warn!(entry_id = id, points, "signup bonus not paid: points limit");
            0
        }
    };
    let friend_points = match &referrer {
        Some(_) => bonus(entry_id.as_str(), contest.referral.friend_points),
        None => 0,
    };
    let first_signup = sqlx::query(
        "UPDATE entries SET signed_up_at = now(), name = COALESCE($2, name), \
         phone = COALESCE($3, phone), referred_by = $4, points = points + $5 \
         WHERE id = $1 AND signed_up_at IS NULL",
    )
    .bind(entry_id.as_str())
    .bind(signup.name)
    .bind(signup.phone)
    .bind(referrer.as_ref().map(|owner| owner.id.as_str()))
    .bind(friend_points)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;

    let mut credited_advocate = None;
    let mut paid = (0, 0);
    if first_signup {
        if let Some(owner) = &referrer {
            let advocate_points = bonus(owner.id.as_str(), contest.referral.advocate_points);
            sqlx::query("UPDATE entries SET points = points + $2 WHERE id = $1")
                .bind(owner.id.as_str())
                .bind(advocate_points)
                .execute(&mut *tx)
                .await?;
            credited_advocate = Some(owner.id.as_str().to_owned());
            paid = (advocate_points, friend_points);
            let friend_reason = format!("referral bonus: signed up with the code of {}", owner.id);
            let advocate_reason = format!("referral bonus: {entry_id} signed up with this code");
            let changes = [
                NewChange {
                    entry_id: entry_id.as_str(),
                    contest_id: contest.id.as_str(),
                    kind: LedgerKind::Signup,
                    points: friend_points,
                    purchase_id: None,
                    reason: Some(&friend_reason),
                },
                NewChange {
                    entry_id: owner.id.as_str(),
                    contest_id: contest.id.as_str(),
                    kind: LedgerKind::Signup,
                    points: advocate_points,
                    purchase_id: None,
                    reason: Some(&advocate_reason),
                },
            ];
            ledger::record(&mut *tx, &changes).await?;
        }
    }

    let entry = find(&mut *tx, &contest.id, entry_id.as_str())
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    Ok(SignupOutcome {
        entry,
        already_exists: !inserted,
        credited_advocate,
        advocate_points: paid.0,
        friend_points: paid.1,
    })
}

/// Locks `ids` (sorted) `FOR NO KEY UPDATE` and reads their points; erased entries are not
/// among the rows (their ids changed).
async fn lock_balances(
    tx: &mut PgConnection,
    ids: &[String],
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, points FROM entries WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE",
    )
    .bind(ids)
    .fetch_all(&mut *tx)
    .await
}

/// Creates an empty entry for `email` unless one exists; true when this call created it.
///
/// A referral-code collision (one in ~10^11 per pair of entries) surfaces as a unique violation
/// that [`super::is_retryable`] reports, and the caller retries its whole transaction.
pub async fn insert_if_missing(
    tx: &mut PgConnection,
    contest: &ContestId,
    entry_id: &EntryId,
    email: &Email,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO entries (id, contest_id, email, referral_code) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(entry_id.as_str())
    .bind(contest.as_str())
    .bind(email.as_str())
    .bind(generate_referral_code())
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected() == 1)
}
