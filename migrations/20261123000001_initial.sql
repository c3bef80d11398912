-- Contests, entries and purchases. Amounts are NUMERIC (exact), points BIGINT: never floating point.

CREATE TABLE contests (
    id                          TEXT PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{1,64}$'),
    name                        TEXT NOT NULL,
    currency                    TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    points_per_unit             NUMERIC NOT NULL CHECK (points_per_unit >= 0),
    rounding                    TEXT NOT NULL CHECK (rounding IN ('nearest', 'floor', 'ceil')),
    purchase_tracking           BOOLEAN NOT NULL,
    accept_test_events          BOOLEAN NOT NULL,
    referral_advocate_points    BIGINT NOT NULL DEFAULT 0,
    referral_friend_points      BIGINT NOT NULL DEFAULT 0,
    referral_points_per_unit    NUMERIC NOT NULL DEFAULT 0,
    -- {"EUR": "1.08"}: rates kept as decimal strings so JSON never rounds them.
    exchange_rates              JSONB NOT NULL DEFAULT '{}',
    -- {"shopify": "...", "stripe": "whsec_...", "coinflow": "..."}
    provider_secrets            JSONB NOT NULL DEFAULT '{}',
    webhook_secret              TEXT NOT NULL,
    previous_webhook_secret     TEXT,
    previous_secret_expires_at  TIMESTAMPTZ,
    created_at                  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Receivers keep contests in memory; this tells them at once when one changes.
CREATE FUNCTION notify_contest_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('contest_changed', NEW.id);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER contests_notify
    AFTER INSERT OR UPDATE ON contests
    FOR EACH ROW EXECUTE FUNCTION notify_contest_changed();

CREATE TABLE entries (
    -- Derived from (contest, email): see shared::ids::EntryId.
    id              TEXT PRIMARY KEY,
    contest_id      TEXT NOT NULL REFERENCES contests (id),
    email           TEXT NOT NULL,
    name            TEXT,
    phone           TEXT,
    points          BIGINT NOT NULL DEFAULT 0,
    referral_code   TEXT NOT NULL,
    referred_by     TEXT REFERENCES entries (id),
    -- Set by the first signup (webhook or admin API); referral bonuses are paid exactly then.
    signed_up_at    TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (contest_id, email),
    UNIQUE (contest_id, referral_code)
);

CREATE INDEX entries_leaderboard ON entries (contest_id, points DESC, created_at, id);

CREATE TABLE purchases (
    -- Derived from (contest, source, order_id): see shared::ids::PurchaseId.
    id              TEXT PRIMARY KEY,
    contest_id      TEXT NOT NULL REFERENCES contests (id),
    source          TEXT NOT NULL CHECK (source IN ('api', 'shopify', 'stripe', 'coinflow')),
    order_id        TEXT NOT NULL,
    entry_id        TEXT NOT NULL REFERENCES entries (id),
    amount          NUMERIC NOT NULL CHECK (amount > 0),
    currency        TEXT NOT NULL,
    points_awarded  BIGINT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('awarded', 'unconvertible_currency', 'reversed')),
    received_at     TIMESTAMPTZ NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (contest_id, source, order_id)
);

CREATE INDEX purchases_entry ON purchases (entry_id);
