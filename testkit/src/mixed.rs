//! A mixed stream for the fault suite: purchases, partial refunds, full refunds, chargebacks and
//! won chargebacks through the generic webhooks, with duplicates and refunds sent before their
//! purchase; the exact final state it must end in, computed here from the contract's formulas
//! (not by the product's code); and the audit comparing that state with what Postgres and the
//! HTTP API show.
//!
//! Every purchase gets one of six shapes (by its index): nothing more; two partial refunds; a
//! full refund; a partial refund and a chargeback; a chargeback, its win and a partial refund
//! (the win may arrive first); two partial refunds adding up to more than the amount (capped).
//! A full refund is never combined with partial refunds on one purchase: the refunded total
//! then depends on their order of arrival (`Full` raises the total to the amount, a later
//! `Partial` adds to it), while the points do not; the stream keeps totals exact to check.
//!
//! Amounts are in whole cents and the contest is the default one (1 point per USD, rounding
//! `nearest`), so the expected figures are integer arithmetic:
//! `points = round(cents / 100)`, `reversed = round(points × min(refunded, cents) / cents)`,
//! or all of `points` while a chargeback is not won.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::{
    app::{App, TestContest},
    sender::{wait_for_drain, Endpoint, Report, Webhook},
    wait,
};

/// Distinct buyers the orders are spread over (several purchases per entry, so workers contend
/// on entries too; few enough for one leaderboard page).
const BUYERS: usize = 29;

/// One purchase of a mixed plan.
#[derive(Debug, Clone)]
pub struct MixedOrder {
    /// `orderId` as sent.
    pub order_id: String,
    /// The buyer.
    pub email: String,
    /// The amount in US cents.
    pub cents: i64,
}

impl MixedOrder {
    /// Points the purchase earns: `round(cents / 100)`, half away from zero.
    pub fn points(&self) -> i64 {
        round_div(self.cents, 100)
    }
}

/// What one event of the stream does to its purchase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The purchase itself.
    Purchase,
    /// A partial refund of `cents`, named `refund_id`.
    Refund {
        /// `refundId`.
        refund_id: String,
        /// The amount refunded, in cents.
        cents: i64,
    },
    /// A refund of the whole purchase (no amount, refund id `full`).
    FullRefund,
    /// A chargeback named `id`.
    Chargeback {
        /// `refundId` of the chargeback.
        id: String,
    },
    /// The chargeback `id` won by the merchant.
    ChargebackWon {
        /// `refundId` of the chargeback it reinstates.
        id: String,
    },
}

/// One distinct event of a mixed plan.
#[derive(Debug, Clone)]
pub struct MixedEvent {
    /// Names the event: `p:{order}` or `r:{order}:{refundId}:{kind}` (the dedupe key).
    pub key: String,
    /// Index of its order in the plan.
    pub order: usize,
    /// What it does.
    pub change: Change,
}

impl MixedEvent {
    fn new(order: usize, order_id: &str, change: Change) -> Self {
        let key = match &change {
            Change::Purchase => format!("p:{order_id}"),
            Change::Refund { refund_id, .. } => format!("r:{order_id}:{refund_id}:refund"),
            Change::FullRefund => format!("r:{order_id}:full:refund"),
            Change::Chargeback { id } => format!("r:{order_id}:{id}:chargeback"),
            Change::ChargebackWon { id } => format!("r:{order_id}:{id}:chargeback_won"),
        };
        Self { key, order, change }
    }

    /// True for refunds and chargebacks.
    pub fn is_reversal(&self) -> bool {
        self.change != Change::Purchase
    }

    fn webhook(&self, order: &MixedOrder) -> Webhook {
        let (endpoint, body) = match &self.change {
            Change::Purchase => (
                Endpoint::Purchase,
                json!({"email": order.email, "orderId": order.order_id, "amount": money(order.cents)}),
            ),
            Change::Refund { refund_id, cents } => (
                Endpoint::Refund,
                json!({"orderId": order.order_id, "refundId": refund_id, "amount": money(*cents)}),
            ),
            Change::FullRefund => (Endpoint::Refund, json!({"orderId": order.order_id})),
            Change::Chargeback { id } => (
                Endpoint::Refund,
                json!({"orderId": order.order_id, "refundId": id, "reason": "chargeback"}),
            ),
            Change::ChargebackWon { id } => (
                Endpoint::Refund,
                json!({"orderId": order.order_id, "refundId": id, "reason": "chargeback_won"}),
            ),
        };
        Webhook {
            key: self.key.clone(),
            endpoint,
            body: body.to_string(),
        }
    }
}

/// How many copies of each event a plan sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copies {
    /// The events of every third order twice back to back (copies in flight together), those
    /// of every seventh once more after everything else (copies of processed events).
    Some,
    /// Every event this many times back to back.
    Repeated(usize),
}

/// A mixed stream: its orders, its distinct events and the deliveries in sending order.
#[derive(Debug, Clone)]
pub struct MixedPlan {
    orders: Vec<MixedOrder>,
    events: Vec<MixedEvent>,
    /// Indexes into `events`, one per delivery.
    deliveries: Vec<usize>,
}

/// How far (in orders) the reversals of most orders trail their purchase in the stream.
const TRAIL: i64 = 8;
/// How far (in orders) the reversals of every fifth order run ahead of their purchase, enough
/// to reach the worker in an earlier batch and be held until the purchase lands.
const AHEAD: i64 = 100;

impl MixedPlan {
    /// `orders` purchases named `{prefix}-{n}` with their refunds and chargebacks, sent with
    /// `copies`. The reversals of every fifth order are sent well before the purchase.
    pub fn new(prefix: &str, orders: usize, copies: Copies) -> Self {
        let orders: Vec<MixedOrder> = (0..orders)
            .map(|index| MixedOrder {
                order_id: format!("{prefix}-{index}"),
                email: format!("mixed{}@example.com", index % BUYERS),
                // 0.50 to 99.99: rounding both ways is exercised.
                cents: 50 + (index as i64 * 613) % 9950,
            })
            .collect();
        let mut events = Vec::new();
        // (slot in the stream, event index): sorted by slot, stable.
        let mut slots: Vec<(i64, usize)> = Vec::new();
        for (index, order) in orders.iter().enumerate() {
            let at = index as i64 * 10;
            slots.push((at, events.len()));
            events.push(MixedEvent::new(index, &order.order_id, Change::Purchase));
            let reversals_at = if index % 5 == 2 {
                at - AHEAD * 10
            } else {
                at + TRAIL * 10
            };
            for (k, change) in shape(index, order.cents).into_iter().enumerate() {
                slots.push((reversals_at + 1 + k as i64, events.len()));
                events.push(MixedEvent::new(index, &order.order_id, change));
            }
        }
        slots.sort_by_key(|(slot, _)| *slot);
        let mut deliveries = Vec::new();
        match copies {
            Copies::Some => {
                for &(_, event) in &slots {
                    deliveries.push(event);
                    if events[event].order % 3 == 0 {
                        deliveries.push(event);
                    }
                }
                deliveries.extend(
                    slots
                        .iter()
                        .map(|&(_, event)| event)
                        .filter(|&event| events[event].order % 7 == 0),
                );
            }
            Copies::Repeated(n) => {
                for &(_, event) in &slots {
                    deliveries.extend(std::iter::repeat_n(event, n.max(1)));
                }
            }
        }
        Self {
            orders,
            events,
            deliveries,
        }
    }

    /// The orders.
    pub fn orders(&self) -> &[MixedOrder] {
        &self.orders
    }

    /// The distinct events.
    pub fn events(&self) -> &[MixedEvent] {
        &self.events
    }

    /// How many distinct events.
    pub fn unique(&self) -> usize {
        self.events.len()
    }

    /// How many distinct refunds and chargebacks.
    pub fn reversals(&self) -> usize {
        self.events.iter().filter(|e| e.is_reversal()).count()
    }

    /// How many deliveries, copies included.
    pub fn deliveries(&self) -> usize {
        self.deliveries.len()
    }

    /// The deliveries as webhooks, in sending order.
    pub fn webhooks(&self) -> Arc<Vec<Webhook>> {
        Arc::new(
            self.deliveries
                .iter()
                .map(|&event| {
                    let event = &self.events[event];
                    event.webhook(&self.orders[event.order])
                })
                .collect(),
        )
    }

    /// The state the events named in `effective` must leave, by the contract's formulas:
    /// per purchase (whose own event is effective) its status, refunded total and points, per
    /// buyer the points.
    pub fn expected(&self, effective: &HashSet<&str>) -> Expected {
        let mut purchases = BTreeMap::new();
        let mut entries: BTreeMap<String, i64> = BTreeMap::new();
        for (index, order) in self.orders.iter().enumerate() {
            let mine = || {
                self.events
                    .iter()
                    .filter(move |e| e.order == index && effective.contains(e.key.as_str()))
            };
            if !mine().any(|e| e.change == Change::Purchase) {
                continue;
            }
            let mut refunded = 0;
            let mut full = false;
            let mut chargebacks = BTreeSet::new();
            let mut won = BTreeSet::new();
            for event in mine() {
                match &event.change {
                    Change::Purchase => {}
                    Change::Refund { cents, .. } => refunded += cents,
                    Change::FullRefund => full = true,
                    Change::Chargeback { id } => {
                        chargebacks.insert(id.clone());
                    }
                    Change::ChargebackWon { id } => {
                        won.insert(id.clone());
                    }
                }
            }
            if full {
                refunded = refunded.max(order.cents);
            }
            let points = order.points();
            let chargeback_active = chargebacks.iter().any(|id| !won.contains(id));
            let points_reversed = if chargeback_active {
                points
            } else {
                round_div(points * refunded.min(order.cents), order.cents)
            };
            let status = if chargeback_active {
                "reversed"
            } else if refunded >= order.cents {
                "refunded"
            } else if refunded > 0 {
                "partially_refunded"
            } else {
                "awarded"
            };
            *entries.entry(order.email.clone()).or_default() += points - points_reversed;
            purchases.insert(
                order.order_id.clone(),
                ExpectedPurchase {
                    email: order.email.clone(),
                    status,
                    refunded_cents: refunded,
                    points_awarded: points,
                    points_reversed,
                },
            );
        }
        Expected { purchases, entries }
    }
}

/// The reversals of order `index` (amount `cents`), by its shape (see the module's doc).
fn shape(index: usize, cents: i64) -> Vec<Change> {
    let refund = |id: &str, cents: i64| Change::Refund {
        refund_id: id.to_owned(),
        cents,
    };
    let chargeback = || Change::Chargeback { id: "cb1".into() };
    let won = || Change::ChargebackWon { id: "cb1".into() };
    match index % 6 {
        0 => vec![],
        1 => vec![refund("r1", cents / 3), refund("r2", cents / 4)],
        2 => vec![Change::FullRefund],
        3 => vec![refund("r1", cents / 5), chargeback()],
        // The win first: it may arrive before its chargeback and must still reinstate it.
        4 => vec![won(), chargeback(), refund("r1", cents / 2)],
        _ => vec![
            refund("r1", cents / 2),
            refund("r2", cents - cents / 2 + 100),
        ],
    }
}

/// `round(numerator / denominator)`, half away from zero, for non-negative operands.
pub fn round_div(numerator: i64, denominator: i64) -> i64 {
    (2 * numerator + denominator) / (2 * denominator)
}

/// Cents as the decimal string a sender writes (`7999` → `"79.99"`).
pub fn money(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// A decimal string as cents, when it is a whole number of cents (`"40"`, `"40.5"`, `"40.50"`,
/// `"40.500"` → 4050; `"40.505"` → `None`).
pub fn cents_of(text: &str) -> Option<i64> {
    let (units, fraction) = text.split_once('.').unwrap_or((text, ""));
    let units: i64 = units.parse().ok()?;
    let (kept, rest) = fraction.split_at(fraction.len().min(2));
    if !rest.chars().all(|c| c == '0') || !kept.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let kept: i64 = format!("{kept:0<2}").parse().ok()?;
    units.checked_mul(100)?.checked_add(kept)
}

/// One purchase's expected final state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedPurchase {
    /// The buyer.
    pub email: String,
    /// `awarded`, `partially_refunded`, `refunded` or `reversed`.
    pub status: &'static str,
    /// The total refunded, in cents (may exceed the amount).
    pub refunded_cents: i64,
    /// What the purchase first earned.
    pub points_awarded: i64,
    /// What its refunds and chargebacks took back.
    pub points_reversed: i64,
}

/// The expected final state of a mixed plan.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    /// By order id.
    pub purchases: BTreeMap<String, ExpectedPurchase>,
    /// Points by buyer email.
    pub entries: BTreeMap<String, i64>,
}

impl Expected {
    /// The contest's total points.
    pub fn total(&self) -> i64 {
        self.entries.values().sum()
    }
}

/// A purchase as Postgres holds it: id, order id, buyer email, status, refunded total (text),
/// points awarded, points reversed.
type PurchaseRow = (String, String, String, String, String, i64, i64);

/// A reversal as Postgres holds it: order id, refund id, kind, status, whether it was applied
/// in a later transaction than the one that recorded it (held), the purchase it was applied to,
/// the points it took back.
type ReversalRow = (String, String, String, String, bool, Option<String>, i64);

/// What Postgres (and the API) holds after a mixed plan, compared with the expected state.
#[derive(Debug, Clone, Default)]
pub struct MixedAudit {
    /// Deliveries answered `200` (copies included).
    pub sent: usize,
    /// Distinct purchases of the plan recorded.
    pub purchases: usize,
    /// Distinct refunds and chargebacks applied.
    pub reversals_applied: usize,
    /// Reversals held `pending` when recorded and applied later, when their purchase landed
    /// (by the purchase's transaction or the sweep): proof the stream really was reordered.
    pub held: usize,
    /// Reversals still `pending` though their purchase was recorded when the queue had drained
    /// (left to the periodic sweep; the audit waits for it).
    pub pending_at_drain: usize,
    /// Accepted events (purchases or reversals) Postgres has no trace of.
    pub lost: usize,
    /// Effects counted twice: purchase ledger rows beyond one per purchase, and refund or
    /// chargeback ledger rows beyond the reversals that changed points.
    pub doubled: usize,
    /// Purchases, reversals or entries Postgres holds that the plan does not explain.
    pub unexpected: usize,
    /// Distinct events never answered `200` (the sender gave up).
    pub failed: usize,
    /// Of those, the ones recorded all the same (published, but the `200` was lost).
    pub failed_but_recorded: usize,
    /// Points in the contest's entries.
    pub points: i64,
    /// Points the expected state holds.
    pub expected_points: i64,
    /// Every difference from the expected state, one line each.
    pub mismatches: Vec<String>,
    /// The expected state (of every event accepted or recorded).
    pub expected: Expected,
}

impl MixedAudit {
    /// Waits until the events queue is drained (`counts`: `(ready, unacked)` as the broker
    /// counts them, see [`wait_for_drain`]), then until no reversal is `pending` whose purchase
    /// is recorded (the sweep's work), within `timeout` each, then audits.
    pub async fn after_drain<F, Fut>(
        pool: &PgPool,
        contest_id: &str,
        plan: &MixedPlan,
        report: &Report,
        timeout: Duration,
        counts: F,
    ) -> Self
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<(u64, u64)>>,
    {
        wait_for_drain(timeout, counts).await;
        let pending_at_drain = stranded(pool, contest_id).await;
        let deadline = tokio::time::Instant::now() + timeout;
        while stranded(pool, contest_id).await > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut audit = Self::now(pool, contest_id, plan, report).await;
        audit.pending_at_drain = pending_at_drain;
        audit
    }

    /// Audits what Postgres holds right now.
    pub async fn now(pool: &PgPool, contest_id: &str, plan: &MixedPlan, report: &Report) -> Self {
        let mut audit = Self {
            sent: report.accepted(),
            ..Self::default()
        };
        let purchases: Vec<PurchaseRow> = sqlx::query_as(
            "SELECT p.id, p.order_id, e.email, p.status, p.refunded_amount::text, \
             p.points_awarded, p.points_reversed \
             FROM purchases p JOIN entries e ON e.id = p.entry_id WHERE p.contest_id = $1",
        )
        .bind(contest_id)
        .fetch_all(pool)
        .await
        .expect("read purchases");
        let reversals: Vec<ReversalRow> = sqlx::query_as(
                "SELECT COALESCE(order_id, ''), refund_id, kind, status, \
                 settled_at IS NOT NULL AND settled_at <> recorded_at, purchase_id, points_reversed \
                 FROM reversals WHERE contest_id = $1",
            )
            .bind(contest_id)
            .fetch_all(pool)
            .await
            .expect("read reversals");

        // What Postgres has a trace of, by event key.
        let mut recorded: HashSet<String> =
            purchases.iter().map(|row| format!("p:{}", row.1)).collect();
        recorded.extend(
            reversals
                .iter()
                .map(|(order, refund, kind, ..)| format!("r:{order}:{refund}:{kind}")),
        );
        let planned: HashSet<&str> = plan.events.iter().map(|e| e.key.as_str()).collect();
        let accepted = report.accepted_orders();
        let attempted: HashSet<&str> = report
            .outcomes
            .iter()
            .map(|o| o.order_id.as_str())
            .collect();
        let failed: Vec<&str> = attempted.difference(&accepted).copied().collect();
        audit.failed = failed.len();
        audit.failed_but_recorded = failed.iter().filter(|k| recorded.contains(**k)).count();
        audit.lost = accepted.iter().filter(|k| !recorded.contains(**k)).count();
        audit.unexpected = recorded
            .iter()
            .filter(|k| !planned.contains(k.as_str()))
            .count();
        for key in accepted.iter().filter(|k| !recorded.contains(**k)) {
            audit
                .mismatches
                .push(format!("{key}: accepted, never recorded"));
        }
        let effective: HashSet<&str> = planned
            .iter()
            .copied()
            .filter(|k| accepted.contains(k) || recorded.contains(*k))
            .collect();
        audit.expected = plan.expected(&effective);
        audit.expected_points = audit.expected.total();

        // Per purchase: status, refunded total, points awarded and taken back.
        let mut purchase_ids = HashMap::new();
        for (id, order, email, status, refunded, awarded, reversed) in &purchases {
            purchase_ids.insert(id.clone(), (order.clone(), email.clone(), *reversed));
            let Some(want) = audit.expected.purchases.get(order) else {
                continue;
            };
            audit.purchases += 1;
            let got = ExpectedPurchase {
                email: email.clone(),
                status: want.status,
                refunded_cents: cents_of(refunded).unwrap_or(-1),
                points_awarded: *awarded,
                points_reversed: *reversed,
            };
            if got != *want || status != want.status {
                audit.mismatches.push(format!(
                    "purchase {order}: expected {want:?}, Postgres holds status {status}, \
                     refunded {refunded}, awarded {awarded}, reversed {reversed}"
                ));
            }
        }
        for order in audit.expected.purchases.keys() {
            if !purchases.iter().any(|row| &row.1 == order) {
                audit
                    .mismatches
                    .push(format!("purchase {order}: not recorded"));
            }
        }

        // Per reversal: applied (none is left pending or refused in this stream).
        for (order, refund, kind, status, held, purchase_id, _) in &reversals {
            match status.as_str() {
                "applied" => audit.reversals_applied += 1,
                // Held for a purchase that was never accepted: nothing to apply it to.
                "pending" if !audit.expected.purchases.contains_key(order) => {}
                other => audit.mismatches.push(format!(
                    "reversal {order}/{refund}/{kind}: {other}, expected applied"
                )),
            }
            audit.held += usize::from(*held);
            if let Some(id) = purchase_id {
                let named = purchase_ids.get(id).map(|(order, ..)| order.as_str());
                if named != Some(order.as_str()) {
                    audit
                        .mismatches
                        .push(format!("reversal {order}/{refund}/{kind}: applied to {id}"));
                }
            }
        }

        // Per purchase: one purchase row in the buyer's ledger, and refund or chargeback rows
        // that add up to what the purchase shows taken back, no more of them than reversals
        // that changed points (none applied twice).
        let ledger: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT purchase_id, kind, COUNT(*), SUM(points)::BIGINT FROM points_ledger \
             WHERE contest_id = $1 AND purchase_id IS NOT NULL GROUP BY purchase_id, kind",
        )
        .bind(contest_id)
        .fetch_all(pool)
        .await
        .expect("read the ledger");
        let mut taken_back: HashMap<&str, (i64, i64)> = HashMap::new();
        for (purchase_id, kind, rows, points) in &ledger {
            let order = purchase_ids
                .get(purchase_id)
                .map_or("?", |(order, ..)| order.as_str());
            match kind.as_str() {
                "purchase" => {
                    audit.doubled += usize::try_from(rows - 1).unwrap_or(0);
                    let want = audit
                        .expected
                        .purchases
                        .get(order)
                        .map_or(0, |p| p.points_awarded);
                    if *rows != 1 || *points != want {
                        audit.mismatches.push(format!(
                            "purchase {order}: {rows} purchase ledger rows for {points} points, \
                             expected one for {want}"
                        ));
                    }
                }
                "refund" | "chargeback" => {
                    let slot = taken_back.entry(purchase_id.as_str()).or_default();
                    slot.0 += rows;
                    slot.1 += points;
                }
                other => audit
                    .mismatches
                    .push(format!("purchase {order}: unexpected ledger kind {other}")),
            }
        }
        for (id, (order, _, reversed)) in &purchase_ids {
            let (rows, points) = taken_back.get(id.as_str()).copied().unwrap_or_default();
            let changed = reversals
                .iter()
                .filter(|r| r.5.as_deref() == Some(id.as_str()) && r.6 != 0)
                .count() as i64;
            let by_reversals: i64 = reversals
                .iter()
                .filter(|r| r.5.as_deref() == Some(id.as_str()))
                .map(|r| r.6)
                .sum();
            audit.doubled += usize::try_from(rows - changed).unwrap_or(0);
            if -points != *reversed || by_reversals != *reversed || rows != changed {
                audit.mismatches.push(format!(
                    "purchase {order}: {rows} reversal ledger rows summing to {points}, \
                     {changed} reversals changing points by {by_reversals}, \
                     purchase shows {reversed} taken back"
                ));
            }
        }

        // Per entry: the expected points, equal to the sum of its ledger rows.
        let entries: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT e.email, e.points, \
             (SELECT SUM(points)::BIGINT FROM points_ledger l WHERE l.entry_id = e.id) \
             FROM entries e WHERE e.contest_id = $1",
        )
        .bind(contest_id)
        .fetch_all(pool)
        .await
        .expect("read entries");
        for (email, points, ledger) in &entries {
            audit.points += points;
            match audit.expected.entries.get(email) {
                Some(want) if want == points => {}
                Some(want) => audit
                    .mismatches
                    .push(format!("entry {email}: {points} points, expected {want}")),
                None => audit.unexpected += 1,
            }
            if ledger.unwrap_or(0) != *points {
                audit.mismatches.push(format!(
                    "entry {email}: {points} points, ledger sums to {ledger:?}"
                ));
            }
        }
        for email in audit.expected.entries.keys() {
            if !entries.iter().any(|(e, ..)| e == email) {
                audit.mismatches.push(format!("entry {email}: missing"));
            }
        }
        audit
    }

    /// Checks the same state through the HTTP API: every purchase's lookup (status,
    /// `refundedAmount`, `pointsAwarded`, `pointsReversed`), every entry's ledger endpoint (its
    /// changes sum to its points, the expected ones), and the leaderboard (its total is the sum
    /// of all ledger rows). Differences go to [`MixedAudit::mismatches`].
    pub async fn check_over_http(&mut self, app: &App, contest: &TestContest, pool: &PgPool) {
        let lookups: Vec<(String, Option<Value>)> =
            futures::stream::iter(self.expected.purchases.keys().cloned())
                .map(|order| async move {
                    let answer = app.lookup(contest, &order, None).await;
                    let data = (answer.status == StatusCode::OK).then(|| answer.data().clone());
                    (order, data)
                })
                .buffer_unordered(16)
                .collect()
                .await;
        for (order, data) in lookups {
            let want = &self.expected.purchases[&order];
            let Some(data) = data else {
                self.mismatches.push(format!("lookup {order}: not 200"));
                continue;
            };
            let refunded = data["refundedAmount"].as_str().and_then(cents_of);
            if data["status"] != want.status
                || refunded != Some(want.refunded_cents)
                || data["pointsAwarded"] != want.points_awarded
                || data["pointsReversed"] != want.points_reversed
            {
                self.mismatches
                    .push(format!("lookup {order}: {data}, expected {want:?}"));
            }
        }

        let leaderboard = app.leaderboard(contest).await;
        let board_total: i64 = leaderboard
            .iter()
            .map(|row| row["points"].as_i64().unwrap_or(0))
            .sum();
        let ledger_total: Option<i64> = sqlx::query_scalar(
            "SELECT SUM(points)::BIGINT FROM points_ledger WHERE contest_id = $1",
        )
        .bind(&contest.id)
        .fetch_one(pool)
        .await
        .expect("sum the ledger");
        if leaderboard.len() != self.expected.entries.len()
            || board_total != ledger_total.unwrap_or(0)
            || board_total != self.expected_points
        {
            self.mismatches.push(format!(
                "leaderboard: {} entries totalling {board_total}, ledger rows total {ledger_total:?}, \
                 expected {} entries totalling {}",
                leaderboard.len(),
                self.expected.entries.len(),
                self.expected_points
            ));
        }
        for row in &leaderboard {
            let (Some(email), Some(entry_id)) = (row["email"].as_str(), row["entryId"].as_str())
            else {
                continue;
            };
            let answer = app
                .admin(
                    reqwest::Method::GET,
                    &format!("/api/contests/{}/entries/{entry_id}/ledger", contest.id),
                    None,
                )
                .await;
            let points = answer.data()["points"].as_i64();
            let sum: i64 = answer.data()["changes"]
                .as_array()
                .map(|changes| changes.iter().filter_map(|c| c["points"].as_i64()).sum())
                .unwrap_or(i64::MIN);
            let want = self.expected.entries.get(email).copied();
            if answer.status != StatusCode::OK || points != Some(sum) || points != want {
                self.mismatches.push(format!(
                    "ledger of {email}: points {points:?}, changes sum to {sum}, expected {want:?}"
                ));
            }
        }
    }

    /// The one-line summary the fault suite prints.
    pub fn line(&self, case: &str, recover: Duration) -> String {
        format!(
            "FAULT case={case} sent={} awarded={} reversals_applied={} held={} \
             pending_at_drain={} lost={} doubled={} failed={} failed_but_recorded={} recover_ms={}",
            self.sent,
            self.purchases,
            self.reversals_applied,
            self.held,
            self.pending_at_drain,
            self.lost,
            self.doubled,
            self.failed,
            self.failed_but_recorded,
            recover.as_millis()
        )
    }

    /// Panics unless nothing was lost, nothing doubled, nothing unexplained, and every purchase,
    /// entry, ledger and the leaderboard hold exactly the expected state.
    pub fn assert_exact(&self) {
        let shown: Vec<&String> = self.mismatches.iter().take(20).collect();
        assert_eq!(self.lost, 0, "lost events: {shown:#?}");
        assert_eq!(self.doubled, 0, "doubled effects: {shown:#?}");
        assert_eq!(self.unexpected, 0, "unexpected rows: {shown:#?}");
        assert!(
            self.mismatches.is_empty(),
            "{} differences from the expected state, first ones: {shown:#?}",
            self.mismatches.len()
        );
        assert_eq!(self.points, self.expected_points, "total points");
    }
}

/// Reversals still `pending` whose purchase is recorded.
async fn stranded(pool: &PgPool, contest_id: &str) -> usize {
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM reversals r JOIN purchases p ON p.contest_id = r.contest_id \
         AND p.source = r.source AND p.order_id = r.order_id \
         WHERE r.contest_id = $1 AND r.status = 'pending'",
    )
    .bind(contest_id)
    .fetch_one(pool)
    .await
    .expect("count stranded reversals");
    usize::try_from(count).unwrap_or(0)
}

/// Waits until at least `at_least` events of the contest are settled (purchases recorded plus
/// reversals no longer pending) and returns how many are.
pub async fn settled_at_least(pool: &PgPool, contest_id: &str, at_least: i64) -> i64 {
    wait::until("events settled", Duration::from_secs(60), || async {
        let done = settled(pool, contest_id).await;
        (done >= at_least).then_some(done)
    })
    .await
}

/// Purchases recorded plus reversals no longer pending, in the contest.
pub async fn settled(pool: &PgPool, contest_id: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM purchases WHERE contest_id = $1) + \
         (SELECT COUNT(*) FROM reversals WHERE contest_id = $1 AND status <> 'pending')",
    )
    .bind(contest_id)
    .fetch_one(pool)
    .await
    .expect("count settled events")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_examples_hold_in_the_model() {
        // 79.99 → 80 points; refund 40.00 → 40 back; then 39.99 more → all 80 back.
        assert_eq!(round_div(7999, 100), 80);
        assert_eq!(round_div(80 * 4000, 7999), 40);
        assert_eq!(round_div(80 * 7999, 7999), 80);
        // 0.50 → 1 under nearest.
        assert_eq!(round_div(50, 100), 1);
        assert_eq!(round_div(7949, 100), 79);
    }

    #[test]
    fn cents_are_read_exactly() {
        assert_eq!(cents_of("40"), Some(4000));
        assert_eq!(cents_of("40.5"), Some(4050));
        assert_eq!(cents_of("40.50"), Some(4050));
        assert_eq!(cents_of("40.500"), Some(4050));
        assert_eq!(cents_of("0"), Some(0));
        assert_eq!(cents_of("40.505"), None);
        assert_eq!(cents_of("x"), None);
        assert_eq!(money(7999), "79.99");
        assert_eq!(money(50), "0.50");
    }

    #[test]
    fn plans_reorder_and_duplicate_and_expect_exact_states() {
        let plan = MixedPlan::new("m", 60, Copies::Some);
        assert_eq!(plan.orders().len(), 60);
        // Shapes: 0, 2, 1, 2, 3, 2 reversals for indexes 0..6, ten times.
        assert_eq!(plan.reversals(), 100);
        assert_eq!(plan.unique(), 160);
        // Some reversals are sent before their purchase.
        let webhooks = plan.webhooks();
        let position = |key: &str| webhooks.iter().position(|w| w.key == key).unwrap();
        assert!(position("r:m-2:full:refund") < position("p:m-2"));
        assert!(position("r:m-1:r1:refund") > position("p:m-1"));
        // Order 0's events twice back to back, and once more at the end.
        assert_eq!(webhooks.iter().filter(|w| w.key == "p:m-0").count(), 3);
        assert_eq!(webhooks.iter().filter(|w| w.key == "p:m-1").count(), 1);

        let all: HashSet<&str> = plan.events().iter().map(|e| e.key.as_str()).collect();
        let expected = plan.expected(&all);
        // m-1: 0.50 + 613 cents = 6.63 → 7 points; refunds 2.21 + 1.65 = 3.86 → round(7 × 386 / 663) = 4.
        let m1 = &expected.purchases["m-1"];
        assert_eq!(
            (
                m1.status,
                m1.refunded_cents,
                m1.points_awarded,
                m1.points_reversed
            ),
            ("partially_refunded", 386, 7, 4)
        );
        let m2 = &expected.purchases["m-2"];
        assert_eq!(
            (m2.status, m2.points_reversed),
            ("refunded", m2.points_awarded)
        );
        let m3 = &expected.purchases["m-3"];
        assert_eq!(
            (m3.status, m3.points_reversed),
            ("reversed", m3.points_awarded)
        );
        let m4 = &expected.purchases["m-4"];
        assert_eq!(m4.status, "partially_refunded", "the chargeback was won");
        assert_eq!(
            m4.points_reversed,
            round_div(m4.points_awarded * (2502 / 2), 2502)
        );
        let m5 = &expected.purchases["m-5"];
        assert_eq!(m5.refunded_cents, 3115 + 100, "beyond the amount");
        assert_eq!(
            (m5.status, m5.points_reversed),
            ("refunded", m5.points_awarded)
        );

        // Without its chargeback, m-4's win changes nothing; without m-0's purchase, nothing
        // of m-0 is expected.
        let mut partial = all.clone();
        partial.remove("r:m-4:cb1:chargeback");
        partial.remove("p:m-0");
        let expected = plan.expected(&partial);
        assert_eq!(expected.purchases["m-4"].status, "partially_refunded");
        assert!(!expected.purchases.contains_key("m-0"));

        let repeated = MixedPlan::new("m", 12, Copies::Repeated(3));
        assert_eq!(repeated.deliveries(), repeated.unique() * 3);
    }
}
