-- Refunds, cancellations and chargebacks: purchases keep what was refunded and taken back, and
-- every reversal is recorded once per (contest, source, target, refund id, kind).
--
-- Additive and safe on a database holding earlier data: new columns have constant defaults (no
-- table rewrite), existing purchases keep their status, and the new status values only widen
-- the CHECK constraint.

-- Stripe Checkout Sessions carry a payment intent; charges and disputes name only that.
ALTER TABLE purchases ADD COLUMN payment_intent TEXT;
-- The total of the refunds received (may exceed the amount; the points taken back are capped).
ALTER TABLE purchases ADD COLUMN refunded_amount NUMERIC NOT NULL DEFAULT 0;
-- Points taken back from the buyer so far (points_awarded stays what the purchase first earned).
ALTER TABLE purchases ADD COLUMN points_reversed BIGINT NOT NULL DEFAULT 0;
-- The status the purchase was recorded with (awarded, unconvertible_currency, points_limit),
-- kept apart from the current status so a won chargeback can return to it.
ALTER TABLE purchases ADD COLUMN award_status TEXT NOT NULL DEFAULT 'awarded';
UPDATE purchases SET award_status = status WHERE status <> 'awarded';

ALTER TABLE purchases DROP CONSTRAINT purchases_status_check;
ALTER TABLE purchases ADD CONSTRAINT purchases_status_check CHECK (status IN (
    'awarded', 'unconvertible_currency', 'points_limit', 'partially_refunded', 'refunded',
    'reversed')) NOT VALID;
ALTER TABLE purchases VALIDATE CONSTRAINT purchases_status_check;
ALTER TABLE purchases ADD CONSTRAINT purchases_award_status_check CHECK (award_status IN (
    'awarded', 'unconvertible_currency', 'points_limit')) NOT VALID;
ALTER TABLE purchases VALIDATE CONSTRAINT purchases_award_status_check;

-- Stripe reversals find their purchase by (contest, payment intent).
CREATE INDEX purchases_payment_intent ON purchases (contest_id, payment_intent)
    WHERE payment_intent IS NOT NULL;

-- What refunds and chargebacks of the referred purchase took back from the advocate.
ALTER TABLE referral_credits ADD COLUMN points_reversed BIGINT NOT NULL DEFAULT 0;
CREATE INDEX referral_credits_purchase ON referral_credits (purchase_id);

CREATE TABLE reversals (
    contest_id          TEXT NOT NULL REFERENCES contests (id),
    source              TEXT NOT NULL CHECK (source IN ('api', 'shopify', 'stripe', 'coinflow')),
    -- How the reversal names its purchase: 'order:<orderId>' or 'pi:<paymentIntent>'.
    target_key          TEXT NOT NULL,
    refund_id           TEXT NOT NULL,
    kind                TEXT NOT NULL CHECK (kind IN ('refund', 'chargeback', 'chargeback_won')),
    -- rev_… (the message id), derived from the five key columns.
    id                  TEXT NOT NULL,
    -- The target split for joins: exactly one is set.
    order_id            TEXT,
    payment_intent      TEXT,
    -- full | partial (added to the refunded total) | cumulative (the refunded total so far).
    amount_type         TEXT NOT NULL CHECK (amount_type IN ('full', 'partial', 'cumulative')),
    amount              NUMERIC,
    -- NULL = the purchase's currency.
    currency            TEXT,
    reason              TEXT,
    -- pending: its purchase is not recorded yet (applied once when it lands);
    -- applied; currency_mismatch: changed nothing; points_limit: would have taken an entry
    -- beyond ±9·10^15 points, changed nothing.
    status              TEXT NOT NULL CHECK (status IN (
                            'pending', 'applied', 'currency_mismatch', 'points_limit')),
    -- Set when applied (or found mismatched): the purchase it concerned.
    purchase_id         TEXT,
    -- What applying it changed: points taken from the buyer (negative: given back, as a won
    -- chargeback does) and from the advocate credited for the purchase.
    points_reversed     BIGINT NOT NULL DEFAULT 0,
    referral_points_reversed BIGINT NOT NULL DEFAULT 0,
    received_at         TIMESTAMPTZ NOT NULL,
    recorded_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    settled_at          TIMESTAMPTZ,
    PRIMARY KEY (contest_id, source, target_key, refund_id, kind),
    CHECK ((order_id IS NULL) <> (payment_intent IS NULL))
);

-- Purchases landing look for reversals waiting for them; the sweep walks this index too.
CREATE INDEX reversals_pending ON reversals (contest_id, source, target_key)
    WHERE status = 'pending';
-- Active chargebacks of a purchase.
CREATE INDEX reversals_purchase ON reversals (purchase_id) WHERE purchase_id IS NOT NULL;
