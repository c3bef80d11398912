//! Helpers shared by the refund, ledger and fault tests: building events exactly as the receiver
//! would publish them, and checking that the books balance.

#![allow(dead_code)]

use std::{str::FromStr, time::Duration};

use chrono::Utc;
use rust_decimal::Decimal;
use shared::{
    email::Email,
    event::{
        Envelope, Event, PurchaseEvent, RefundAmount, ReversalEvent, ReversalKind, ReversalTarget,
    },
    ids::{ContestId, EntryId, OrderId, PurchaseId, ReversalId, Source},
    money::{Currency, Money},
};
use sqlx::PgPool;
use testkit::{app::TestContest, wait, App};

/// Builds the events of one contest.
pub struct Events {
    /// The contest.
    pub contest: ContestId,
}

impl Events {
    /// Events for `contest`.
    pub fn new(contest: &TestContest) -> Self {
        Self {
            contest: ContestId::parse(&contest.id).expect("contest id"),
        }
    }

    /// A generic (`api`) purchase in USD.
    pub fn purchase(&self, order: &str, email: &str, amount: &str) -> Envelope {
        self.purchase_from(Source::Api, order, email, amount, None, &[])
    }

    /// A purchase from `source`, optionally with a payment intent and referral codes.
    pub fn purchase_from(
        &self,
        source: Source,
        order: &str,
        email: &str,
        amount: &str,
        payment_intent: Option<&str>,
        referral_codes: &[&str],
    ) -> Envelope {
        let order_id = OrderId::parse(order).expect("order id");
        Envelope::new(Event::Purchase(PurchaseEvent {
            purchase_id: PurchaseId::derive(&self.contest, source, &order_id),
            contest_id: self.contest.clone(),
            source,
            order_id,
            email: Email::parse(email).expect("email"),
            money: Money::new(dec(amount), Currency::USD).expect("money"),
            received_at: Utc::now(),
            referral_codes: referral_codes.iter().map(|c| c.to_string()).collect(),
            payment_intent: payment_intent.map(str::to_owned),
        }))
    }

    /// A partial refund of a generic purchase (`amount` in the purchase's currency).
    pub fn refund(&self, order: &str, refund_id: &str, amount: &str) -> Envelope {
        self.reversal(
            Source::Api,
            ReversalTarget::OrderId(OrderId::parse(order).expect("order id")),
            refund_id,
            ReversalKind::Refund,
            RefundAmount::Partial {
                amount: dec(amount),
                currency: None,
            },
        )
    }

    /// A whole-purchase refund of a generic purchase (refund id `full`).
    pub fn full_refund(&self, order: &str) -> Envelope {
        self.reversal(
            Source::Api,
            ReversalTarget::OrderId(OrderId::parse(order).expect("order id")),
            "full",
            ReversalKind::Refund,
            RefundAmount::Full,
        )
    }

    /// A chargeback (`won` = false) or its win on a generic purchase.
    pub fn chargeback(&self, order: &str, dispute: &str, won: bool) -> Envelope {
        self.reversal(
            Source::Api,
            ReversalTarget::OrderId(OrderId::parse(order).expect("order id")),
            dispute,
            if won {
                ReversalKind::ChargebackWon
            } else {
                ReversalKind::Chargeback
            },
            RefundAmount::Full,
        )
    }

    /// Any reversal.
    pub fn reversal(
        &self,
        source: Source,
        target: ReversalTarget,
        refund_id: &str,
        kind: ReversalKind,
        amount: RefundAmount,
    ) -> Envelope {
        Envelope::new(Event::Reversal(ReversalEvent {
            reversal_id: ReversalId::derive(
                &self.contest,
                source,
                &target.key(),
                refund_id,
                kind.as_str(),
            ),
            contest_id: self.contest.clone(),
            source,
            target,
            refund_id: refund_id.to_owned(),
            kind,
            amount,
            reason: None,
            received_at: Utc::now(),
        }))
    }

    /// The entry id of `email`.
    pub fn entry(&self, email: &str) -> String {
        EntryId::derive(&self.contest, &Email::parse(email).expect("email"))
            .as_str()
            .to_owned()
    }
}

/// An exact decimal.
pub fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).expect("decimal")
}

/// An entry's points, straight from the database (0 when it does not exist).
pub async fn points(pool: &PgPool, entry_id: &str) -> i64 {
    sqlx::query_scalar("SELECT points FROM entries WHERE id = $1")
        .bind(entry_id)
        .fetch_optional(pool)
        .await
        .expect("read points")
        .unwrap_or(0)
}

/// Waits until `sql` (a query returning one BIGINT) returns `expected`.
pub async fn wait_for_count(pool: &PgPool, what: &str, sql: &str, expected: i64) {
    wait::until(what, Duration::from_secs(60), || async {
        let count: i64 = sqlx::query_scalar(sql)
            .fetch_one(pool)
            .await
            .expect("count query");
        (count == expected).then_some(())
    })
    .await;
}

/// Waits until every reversal recorded is settled (none `pending`) and `settled` are.
pub async fn wait_for_reversals(pool: &PgPool, settled: i64) {
    wait_for_count(
        pool,
        "reversals settled",
        "SELECT COUNT(*) FROM reversals WHERE status <> 'pending'",
        settled,
    )
    .await;
}

/// One entry's figures: id, points, ledger sum, purchases' net, credits' net, bonuses and
/// adjustments.
type BookRow = (
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// Asserts the books balance for every entry of the database: its points equal the sum of its
/// ledger rows, and equal what its purchases kept (awarded − reversed), plus what its referral
/// credits kept, plus its signup and adjustment rows. Returns the number of entries checked.
pub async fn assert_books_balance(pool: &PgPool) -> usize {
    let rows: Vec<BookRow> = sqlx::query_as(
        "SELECT e.id, e.points, \
             (SELECT SUM(points)::BIGINT FROM points_ledger l WHERE l.entry_id = e.id), \
             (SELECT SUM(points_awarded - points_reversed)::BIGINT FROM purchases p \
              WHERE p.entry_id = e.id), \
             (SELECT SUM(points - points_reversed)::BIGINT FROM referral_credits c \
              WHERE c.advocate_entry_id = e.id), \
             (SELECT SUM(points)::BIGINT FROM points_ledger l WHERE l.entry_id = e.id \
              AND l.kind IN ('signup', 'adjustment')) \
             FROM entries e ORDER BY e.id",
    )
    .fetch_all(pool)
    .await
    .expect("read the books");
    for (id, points, ledger, purchases, credits, other) in &rows {
        assert_eq!(
            *points,
            ledger.unwrap_or(0),
            "entry {id}: points must equal the sum of its ledger"
        );
        assert_eq!(
            *points,
            purchases.unwrap_or(0) + credits.unwrap_or(0) + other.unwrap_or(0),
            "entry {id}: points must equal its purchases' net points + credits + bonuses"
        );
    }
    rows.len()
}

/// Creates a contest on `app` and returns it with its event builder.
pub async fn contest(app: &App, settings: serde_json::Value) -> (TestContest, Events) {
    let contest = app.create_contest(settings).await;
    let events = Events::new(&contest);
    (contest, events)
}
