//! The naive baseline, made lean: the handler a competent engineer would write to award points
//! inside the webhook request. It verifies the secret and the body like the receiver, prices the
//! purchase, and runs **one prepared statement** — a single CTE that records the purchase
//! (`ON CONFLICT DO NOTHING`, so a retried webhook is a no-op), upserts the buyer's entry with the
//! points and writes the `purchase` ledger row, exactly the rows our worker writes for it — on a
//! right-sized pool ([`NAIVE_POOL`]) with custom plans (the services' own pool settings). Its
//! contest comes from memory, as ours does, so it pays only for the write.

use std::{sync::Arc, time::Duration};

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
    Router,
};
use shared::{
    contest::Contest,
    db::entries::generate_referral_code,
    db::{self, PoolSettings},
    ids::EntryId,
};
use sqlx::PgPool;

use crate::{
    fixtures::{Fixture, POINTS_EACH, SEEDED_PURCHASES},
    servers,
};

/// Postgres connections of the naive handler's pool at every concurrency: on two cores, Postgres
/// commits no faster with more backends than this, and more only queue inside Postgres instead
/// of in the pool.
pub const NAIVE_POOL: u32 = 8;

/// How long a request waits for a pooled connection before answering 503 (longer than the
/// client timeout, so under a stall the client gives up first, as it would in production).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// The one statement per request. `$1` entry id, `$2` contest, `$3` email, `$4` fresh referral
/// code, `$5` purchase id, `$6` source, `$7` order id, `$8` amount, `$9` currency, `$10` points,
/// `$11` award status, `$12` received at.
///
/// The purchase is inserted first; the entry upsert and the ledger row read its `RETURNING`, so
/// a duplicate webhook changes nothing. The purchase's foreign key to the entry is checked at
/// the end of the statement, after the entry was inserted.
const AWARD_ONE: &str = "\
WITH purchase AS (
    INSERT INTO purchases (id, contest_id, source, order_id, entry_id, amount, currency,
        points_awarded, status, award_status, received_at)
    VALUES ($5, $2, $6, $7, $1, $8, $9, $10, $11, $11, $12)
    ON CONFLICT DO NOTHING
    RETURNING id, points_awarded
), entry AS (
    INSERT INTO entries AS e (id, contest_id, email, referral_code, points)
    SELECT $1, $2, $3, $4, points_awarded FROM purchase
    ON CONFLICT (contest_id, email) DO UPDATE SET points = e.points + EXCLUDED.points
    RETURNING e.id
), ledger AS (
    INSERT INTO points_ledger (entry_id, contest_id, kind, points, purchase_id)
    SELECT $1, $2, 'purchase', points_awarded, id FROM purchase WHERE points_awarded <> 0
)
SELECT COUNT(*) FROM entry";

#[derive(Clone)]
struct Naive {
    contest: Arc<Contest>,
    pool: PgPool,
}

/// The naive baseline's router, with its own pool of [`NAIVE_POOL`] connections to
/// `database_url`.
pub fn router(contest: Contest, database_url: &str) -> anyhow::Result<Router> {
    let pool = db::lazy_pool(
        database_url,
        PoolSettings {
            max_connections: NAIVE_POOL,
            acquire_timeout: ACQUIRE_TIMEOUT,
        },
    )?;
    Ok(Router::new()
        .route("/api/webhooks/purchase/{contest_id}", post(handler))
        .with_state(Naive {
            contest: Arc::new(contest),
            pool,
        }))
}

async fn handler(
    State(naive): State<Naive>,
    Path(contest_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let event = match servers::verify_and_parse(&naive.contest, &contest_id, &headers, &body) {
        Ok(event) => event,
        Err(status) => return status.into_response(),
    };
    let award = naive.contest.points_rule().award(&event.money);
    let entry_id = EntryId::derive(&event.contest_id, &event.email);
    let written = sqlx::query(AWARD_ONE)
        .bind(entry_id.as_str())
        .bind(event.contest_id.as_str())
        .bind(event.email.as_str())
        .bind(generate_referral_code())
        .bind(event.purchase_id.as_str())
        .bind(event.source.as_str())
        .bind(event.order_id.as_str())
        .bind(event.money.amount)
        .bind(event.money.currency.as_str())
        .bind(award.points)
        .bind(award.status.as_str())
        .bind(event.received_at)
        .execute(&naive.pool)
        .await;
    match written {
        Ok(_) => servers::accepted(&event),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// The books of a run, the seed excluded: purchases recorded, points on the entries, points in
/// the ledger and points the purchases say they awarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Books {
    /// Purchases recorded.
    pub purchases: i64,
    /// Σ `entries.points`.
    pub entry_points: i64,
    /// Σ `points_ledger.points`.
    pub ledger_points: i64,
    /// Σ `purchases.points_awarded`.
    pub purchase_points: i64,
}

impl Books {
    /// Reads the totals of `fixture`'s database.
    pub async fn read(fixture: &Fixture) -> anyhow::Result<Self> {
        let (purchases, entry_points, ledger_points, purchase_points): (i64, i64, i64, i64) =
            sqlx::query_as(
                "SELECT (SELECT COUNT(*) FROM purchases), \
                 (SELECT COALESCE(SUM(points), 0)::BIGINT FROM entries), \
                 (SELECT COALESCE(SUM(points), 0)::BIGINT FROM points_ledger), \
                 (SELECT COALESCE(SUM(points_awarded), 0)::BIGINT FROM purchases)",
            )
            .fetch_one(&fixture.pool)
            .await?;
        // The seed's entries and purchases carry points but no ledger rows.
        let seeded = SEEDED_PURCHASES * POINTS_EACH;
        Ok(Self {
            purchases: purchases - SEEDED_PURCHASES,
            entry_points: entry_points - seeded,
            ledger_points,
            purchase_points: purchase_points - seeded,
        })
    }

    /// Checks that the books balance — entry points = ledger = purchases' points =
    /// [`POINTS_EACH`] per purchase — and that at least `answered` purchases were recorded (a
    /// request the client gave up on may still have committed).
    pub fn check(&self, answered: u64) -> Result<(), Unbalanced> {
        let expected = self.purchases * POINTS_EACH;
        let balanced = self.entry_points == expected
            && self.ledger_points == expected
            && self.purchase_points == expected
            && self.purchases >= answered as i64;
        if balanced {
            Ok(())
        } else {
            Err(Unbalanced {
                books: *self,
                answered,
            })
        }
    }
}

/// The naive handler's books do not balance: the baseline is wrong, and its figures with it.
#[derive(Debug, thiserror::Error)]
#[error(
    "the naive handler's books do not balance: {} purchases ({answered} answered 200), entries \
     {} points, ledger {}, purchases {} (expected {} each)",
    books.purchases, books.entry_points, books.ledger_points, books.purchase_points, POINTS_EACH
)]
pub struct Unbalanced {
    /// What was found.
    pub books: Books,
    /// Requests answered 200.
    pub answered: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_books_pass_and_others_fail() {
        let books = Books {
            purchases: 3,
            entry_points: 3 * POINTS_EACH,
            ledger_points: 3 * POINTS_EACH,
            purchase_points: 3 * POINTS_EACH,
        };
        assert!(books.check(3).is_ok());
        assert!(books.check(4).is_err());
        let short = Books {
            ledger_points: 2 * POINTS_EACH,
            ..books
        };
        assert!(short.check(3).is_err());
    }
}
