//! Recording reversals once per key (inserted `pending`; the insert is the dedupe) and claiming
//! earlier `pending` ones: those a new purchase was awaited by, and those the sweep finds.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use shared::{
    event::{RefundAmount, ReversalEvent, ReversalKind, ReversalTarget},
    ids::{ContestId, OrderId, ReversalId, Source},
    money::Currency,
};
use sqlx::{postgres::PgRow, Row};

use super::{key, Claimed, Key};

/// Records the batch's reversals (`pending` until applied below), deduped on their key.
/// Returns the ones recorded now and the input indexes of duplicates (already recorded, or
/// repeated within the batch).
pub async fn record(
    tx: &mut sqlx::PgConnection,
    events: &[(usize, &ReversalEvent)],
) -> Result<(Vec<Claimed>, Vec<usize>), sqlx::Error> {
    // Distinct keys in key order: every transaction inserts (and so locks) them in the same
    // order, so duplicates racing on several workers cannot deadlock.
    let mut distinct: BTreeMap<Key, (usize, &ReversalEvent)> = BTreeMap::new();
    let mut duplicates = Vec::new();
    for &(index, event) in events {
        match distinct.entry(key(event)) {
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert((index, event));
            }
            std::collections::btree_map::Entry::Occupied(_) => duplicates.push(index),
        }
    }
    if distinct.is_empty() {
        return Ok((Vec::new(), duplicates));
    }
    let rows: Vec<&ReversalEvent> = distinct.values().map(|(_, event)| *event).collect();
    let (amount_types, amounts, currencies): (Vec<&str>, Vec<Option<Decimal>>, Vec<Option<&str>>) =
        rows.iter().map(|e| amount_columns(&e.amount)).fold(
            (Vec::new(), Vec::new(), Vec::new()),
            |(mut t, mut a, mut c), (kind, amount, currency)| {
                t.push(kind);
                a.push(amount);
                c.push(currency);
                (t, a, c)
            },
        );
    let inserted: Vec<(String, String, String, String, String)> = sqlx::query_as(
        "INSERT INTO reversals (contest_id, source, target_key, refund_id, kind, id, order_id, \
         payment_intent, amount_type, amount, currency, reason, received_at, status) \
         SELECT *, 'pending' FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
         $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::numeric[], $11::text[], \
         $12::text[], $13::timestamptz[]) \
         ON CONFLICT DO NOTHING RETURNING contest_id, source, target_key, refund_id, kind",
    )
    .bind(
        rows.iter()
            .map(|e| e.contest_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|e| e.source.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|e| e.target.key()).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|e| e.refund_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|e| e.reversal_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|e| match &e.target {
                ReversalTarget::OrderId(order) => Some(order.as_str()),
                ReversalTarget::PaymentIntent(_) => None,
            })
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|e| match &e.target {
                ReversalTarget::OrderId(_) => None,
                ReversalTarget::PaymentIntent(intent) => Some(intent.as_str()),
            })
            .collect::<Vec<_>>(),
    )
    .bind(&amount_types)
    .bind(&amounts)
    .bind(&currencies)
    .bind(rows.iter().map(|e| e.reason.as_deref()).collect::<Vec<_>>())
    .bind(rows.iter().map(|e| e.received_at).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;
    let inserted: BTreeSet<(String, String, String, String, String)> =
        inserted.into_iter().collect();
    let mut claimed = Vec::new();
    for ((contest, source, target, refund, kind), (index, event)) in distinct {
        let stored = (contest, source.to_owned(), target, refund, kind.to_owned());
        if inserted.contains(&stored) {
            claimed.push(Claimed {
                event: event.clone(),
                index: Some(index),
            });
        } else {
            duplicates.push(index);
        }
    }
    Ok((claimed, duplicates))
}

/// The stored form of an amount: type, amount, currency.
fn amount_columns(amount: &RefundAmount) -> (&'static str, Option<Decimal>, Option<&str>) {
    match amount {
        RefundAmount::Full => ("full", None, None),
        RefundAmount::Partial { amount, currency } => (
            "partial",
            Some(*amount),
            currency.as_ref().map(Currency::as_str),
        ),
        RefundAmount::Cumulative { amount, currency } => {
            ("cumulative", Some(*amount), Some(currency.as_str()))
        }
    }
}

const COLUMNS: &str = "id, contest_id, source, refund_id, kind, order_id, payment_intent, \
    amount_type, amount, currency, reason, received_at";

/// Rebuilds the event from a stored row.
fn from_row(row: &PgRow) -> Result<ReversalEvent, sqlx::Error> {
    let bad = |what: &str| sqlx::Error::Decode(format!("stored reversal has a bad {what}").into());
    let contest_id = ContestId::parse(row.try_get("contest_id")?).map_err(|_| bad("contest"))?;
    let source = Source::parse(row.try_get("source")?).map_err(|_| bad("source"))?;
    let order: Option<String> = row.try_get("order_id")?;
    let intent: Option<String> = row.try_get("payment_intent")?;
    let target = match (order, intent) {
        (Some(order), _) => {
            ReversalTarget::OrderId(OrderId::parse(&order).map_err(|_| bad("order id"))?)
        }
        (None, Some(intent)) => ReversalTarget::PaymentIntent(intent),
        (None, None) => return Err(bad("target")),
    };
    let kind = match row.try_get::<&str, _>("kind")? {
        "refund" => ReversalKind::Refund,
        "chargeback" => ReversalKind::Chargeback,
        "chargeback_won" => ReversalKind::ChargebackWon,
        _ => return Err(bad("kind")),
    };
    let amount: Option<Decimal> = row.try_get("amount")?;
    let currency = match row.try_get::<Option<&str>, _>("currency")? {
        Some(code) => Some(Currency::parse(code).map_err(|_| bad("currency"))?),
        None => None,
    };
    let amount = match (row.try_get::<&str, _>("amount_type")?, amount, currency) {
        ("full", _, _) => RefundAmount::Full,
        ("partial", Some(amount), currency) => RefundAmount::Partial { amount, currency },
        ("cumulative", Some(amount), Some(currency)) => {
            RefundAmount::Cumulative { amount, currency }
        }
        _ => return Err(bad("amount")),
    };
    let received_at: DateTime<Utc> = row.try_get("received_at")?;
    Ok(ReversalEvent {
        reversal_id: ReversalId::from_stored(row.try_get("id")?),
        contest_id,
        source,
        target,
        refund_id: row.try_get("refund_id")?,
        kind,
        amount,
        reason: row.try_get("reason")?,
        received_at,
    })
}

/// Locks the `pending` reversals waiting for purchases this transaction just recorded
/// (`(contest, source, order id, payment intent)` each). They cannot be held by the sweep: it
/// only takes reversals whose purchase it can see, and these purchases are not committed yet.
pub async fn claim_awaited(
    tx: &mut sqlx::PgConnection,
    purchases: &[(&str, &str, &str, Option<&str>)],
) -> Result<Vec<Claimed>, sqlx::Error> {
    let mut contests = Vec::new();
    let mut sources = Vec::new();
    let mut targets = Vec::new();
    for &(contest, source, order, intent) in purchases {
        contests.push(contest);
        sources.push(source);
        targets.push(
            ReversalTarget::OrderId(
                OrderId::parse(order).map_err(|_| {
                    sqlx::Error::Decode("stored purchase has a bad order id".into())
                })?,
            )
            .key(),
        );
        if let Some(intent) = intent {
            contests.push(contest);
            sources.push(source);
            targets.push(ReversalTarget::PaymentIntent(intent.to_owned()).key());
        }
    }
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM reversals WHERE status = 'pending' \
         AND (contest_id, source, target_key) IN \
         (SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[])) \
         ORDER BY contest_id, source, target_key, refund_id, kind FOR UPDATE"
    ))
    .bind(&contests)
    .bind(&sources)
    .bind(&targets)
    .try_map(|row: PgRow| from_row(&row))
    .fetch_all(&mut *tx)
    .await
    .map(|events| {
        events
            .into_iter()
            .map(|event| Claimed { event, index: None })
            .collect()
    })
}

/// The sweep's claim: up to `limit` `pending` reversals whose purchase is recorded, skipping
/// those another transaction holds (another worker's sweep, or a batch applying them).
pub async fn claim_ready(
    tx: &mut sqlx::PgConnection,
    limit: i64,
) -> Result<Vec<Claimed>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM reversals r WHERE r.status = 'pending' AND ( \
         (r.order_id IS NOT NULL AND EXISTS (SELECT 1 FROM purchases p \
           WHERE p.contest_id = r.contest_id AND p.source = r.source AND p.order_id = r.order_id)) \
         OR (r.payment_intent IS NOT NULL AND EXISTS (SELECT 1 FROM purchases p \
           WHERE p.contest_id = r.contest_id AND p.payment_intent = r.payment_intent \
           AND p.source = r.source))) \
         ORDER BY r.contest_id, r.source, r.target_key, r.refund_id, r.kind \
         LIMIT $1 FOR UPDATE SKIP LOCKED"
    ))
    .bind(limit)
    .try_map(|row: PgRow| from_row(&row))
    .fetch_all(&mut *tx)
    .await
    .map(|events| {
        events
            .into_iter()
            .map(|event| Claimed { event, index: None })
            .collect()
    })
}
