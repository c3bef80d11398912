-- The points ledger: every change of an entry's points is one row, and an entry's points are
-- always the sum of its rows (written in the same transaction as the change). Also operators'
-- tools on entries: disqualification and idempotent manual adjustments.
--
-- Additive and safe on a database holding earlier data: existing entries get ledger rows that
-- sum to their current points (see the backfill below).

CREATE TABLE points_ledger (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- No foreign key: rows are written only next to the entry update they describe, in the same
    -- transaction, on the award hot path where a per-row key check would cost throughput.
    entry_id    TEXT NOT NULL,
    contest_id  TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN (
                    'purchase', 'referral', 'signup', 'refund', 'chargeback', 'adjustment')),
    -- Zero-point changes write no row.
    points      BIGINT NOT NULL CHECK (points <> 0),
    purchase_id TEXT,
    reason      TEXT,
    at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX points_ledger_entry ON points_ledger (entry_id, id);

-- Backfill: one row per purchase and per referral credit that gave points, and a `signup` row
-- for whatever remains of the entry's points (signup and referral bonuses were not itemised).
INSERT INTO points_ledger (entry_id, contest_id, kind, points, purchase_id, at)
SELECT entry_id, contest_id, 'purchase', points_awarded, id, recorded_at
FROM purchases WHERE points_awarded <> 0
ORDER BY recorded_at, id;

INSERT INTO points_ledger (entry_id, contest_id, kind, points, purchase_id, at)
SELECT advocate_entry_id, contest_id, 'referral', points, purchase_id, created_at
FROM referral_credits WHERE points <> 0
ORDER BY created_at, purchase_id;

INSERT INTO points_ledger (entry_id, contest_id, kind, points, reason, at)
SELECT e.id, e.contest_id, 'signup', e.points - COALESCE(l.total, 0),
       'balance before the ledger (signup and referral bonuses)',
       COALESCE(e.signed_up_at, e.created_at)
FROM entries e
LEFT JOIN (SELECT entry_id, SUM(points) AS total FROM points_ledger GROUP BY entry_id) l
       ON l.entry_id = e.id
WHERE e.points - COALESCE(l.total, 0) <> 0
ORDER BY e.id;

-- A disqualified entry keeps its points and keeps earning, but is left off the leaderboard.
ALTER TABLE entries ADD COLUMN disqualified_at TIMESTAMPTZ;
ALTER TABLE entries ADD COLUMN disqualification_reason TEXT;

-- Manual adjustments by Idempotency-Key: the same key on the same entry applies once and
-- answers the same (the stored answer), written in the adjustment's transaction.
CREATE TABLE adjustment_keys (
    entry_id        TEXT NOT NULL REFERENCES entries (id) ON UPDATE CASCADE,
    idempotency_key TEXT NOT NULL,
    points          BIGINT NOT NULL,
    reason          TEXT NOT NULL,
    response        JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (entry_id, idempotency_key)
);
