//! The entries a batch changes, locked in id order, and every change to them: the balances are
//! checked against the points limit as changes are made, and written with one statement that
//! updates the entries and inserts one ledger row per change.

use std::collections::{BTreeMap, BTreeSet};

use shared::{db::ledger::LedgerKind, points::checked_total};

/// One change of one entry's points (a future ledger row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The entry.
    pub entry_id: String,
    /// Why.
    pub kind: LedgerKind,
    /// The change; 0 changes nothing and writes no row.
    pub points: i64,
    /// The purchase it concerns.
    pub purchase_id: Option<String>,
    /// Free text for the ledger's reader.
    pub reason: Option<String>,
}

/// One locked entry.
#[derive(Debug)]
struct Balance {
    contest_id: String,
    points: i64,
}

/// The locked entries of one transaction and the changes made to them.
#[derive(Debug, Default)]
pub struct Books {
    balances: BTreeMap<String, Balance>,
    changes: Vec<Change>,
}

impl Books {
    /// Locks `entry_ids` in id order (`FOR NO KEY UPDATE`: it does not conflict with the
    /// `KEY SHARE` locks that foreign keys of concurrent purchase inserts take on the same
    /// entries, which would otherwise let two workers deadlock) and reads their points.
    pub async fn lock(
        tx: &mut sqlx::PgConnection,
        entry_ids: &BTreeSet<String>,
    ) -> Result<Self, sqlx::Error> {
        if entry_ids.is_empty() {
            return Ok(Self::default());
        }
        let ids: Vec<&str> = entry_ids.iter().map(String::as_str).collect();
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT id, contest_id, points FROM entries WHERE id = ANY($1) \
             ORDER BY id FOR NO KEY UPDATE",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        Ok(Self {
            balances: rows
                .into_iter()
                .map(|(id, contest_id, points)| (id, Balance { contest_id, points }))
                .collect(),
            changes: Vec::new(),
        })
    }

    /// Makes `changes` together, or none of them when any would take its entry beyond the
    /// points limit (or names an entry that is not locked): `false` then.
    pub fn apply(&mut self, changes: Vec<Change>) -> bool {
        let mut totals: BTreeMap<&str, i64> = BTreeMap::new();
        for change in &changes {
            let current = match totals.get(change.entry_id.as_str()) {
                Some(points) => *points,
                None => match self.balances.get(&change.entry_id) {
                    Some(balance) => balance.points,
                    None => return false,
                },
            };
            match checked_total(current, change.points) {
                Some(total) => {
                    totals.insert(change.entry_id.as_str(), total);
                }
                None => return false,
            }
        }
        let totals: Vec<(String, i64)> = totals
            .into_iter()
            .map(|(id, points)| (id.to_owned(), points))
            .collect();
        for (id, points) in totals {
            if let Some(balance) = self.balances.get_mut(&id) {
                balance.points = points;
            }
        }
        self.changes
            .extend(changes.into_iter().filter(|change| change.points != 0));
        true
    }

    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Writes every change: one ledger row each and the entries' new points, in one statement.
    pub async fn write(&self, tx: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
        if self.changes.is_empty() {
            return Ok(());
        }
        let mut deltas: BTreeMap<&str, i64> = BTreeMap::new();
        for change in &self.changes {
            // Within the limit by construction (`apply`), so this cannot overflow.
            *deltas.entry(change.entry_id.as_str()).or_default() += change.points;
        }
        deltas.retain(|_, delta| *delta != 0);
        let contest = |id: &str| {
            self.balances
                .get(id)
                .map_or("", |balance| balance.contest_id.as_str())
        };
        // The ledger insert is a data-modifying CTE: it runs whether or not the update below
        // reads it, in the same statement (one round trip on the award hot path).
        sqlx::query(
            "WITH ledger AS (INSERT INTO points_ledger \
             (entry_id, contest_id, kind, points, purchase_id, reason) \
             SELECT * FROM UNNEST($3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[], \
             $8::text[])) \
             UPDATE entries SET points = entries.points + d.delta \
             FROM UNNEST($1::text[], $2::bigint[]) AS d(id, delta) WHERE entries.id = d.id",
        )
        .bind(deltas.keys().copied().collect::<Vec<_>>())
        .bind(deltas.values().copied().collect::<Vec<_>>())
        .bind(
            self.changes
                .iter()
                .map(|c| c.entry_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            self.changes
                .iter()
                .map(|c| contest(&c.entry_id))
                .collect::<Vec<_>>(),
        )
        .bind(
            self.changes
                .iter()
                .map(|c| c.kind.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(self.changes.iter().map(|c| c.points).collect::<Vec<_>>())
        .bind(
            self.changes
                .iter()
                .map(|c| c.purchase_id.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            self.changes
                .iter()
                .map(|c| c.reason.as_deref())
                .collect::<Vec<_>>(),
        )
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use shared::points::POINTS_LIMIT;

    use super::*;

    fn books(balances: &[(&str, i64)]) -> Books {
        Books {
            balances: balances
                .iter()
                .map(|(id, points)| {
                    (
                        id.to_string(),
                        Balance {
                            contest_id: "c".into(),
                            points: *points,
                        },
                    )
                })
                .collect(),
            changes: Vec::new(),
        }
    }

    fn change(entry: &str, points: i64) -> Change {
        Change {
            entry_id: entry.into(),
            kind: LedgerKind::Purchase,
            points,
            purchase_id: None,
            reason: None,
        }
    }

    #[test]
    fn changes_apply_together_or_not_at_all() {
        let mut b = books(&[("a", 0), ("b", POINTS_LIMIT - 5)]);
        assert!(b.apply(vec![change("a", 10), change("b", 5)]));
        assert!(!b.apply(vec![change("a", 10), change("b", 1)]));
        assert_eq!(b.balances["a"].points, 10, "the refused pair left a alone");
        assert_eq!(b.balances["b"].points, POINTS_LIMIT);
        assert!(!b.apply(vec![change("unknown", 1)]));
        assert!(b.apply(vec![change("b", -POINTS_LIMIT), change("b", -POINTS_LIMIT)]));
        assert_eq!(b.balances["b"].points, -POINTS_LIMIT);
        assert!(b.apply(vec![change("a", 0)]));
        assert_eq!(b.changes.len(), 4, "zero-point changes write no row");
    }
}
