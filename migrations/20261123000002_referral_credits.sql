-- Referral credit for referred purchases, deduped per (contest, source, order) independently of
-- the purchase itself: the same order sent first to the purchase webhook and later to a referral
-- webhook is one purchase and one credit.
CREATE TABLE referral_credits (
    contest_id          TEXT NOT NULL REFERENCES contests (id),
    source              TEXT NOT NULL,
    order_id            TEXT NOT NULL,
    purchase_id         TEXT NOT NULL,
    advocate_entry_id   TEXT NOT NULL REFERENCES entries (id),
    points              BIGINT NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (contest_id, source, order_id)
);

CREATE INDEX referral_credits_advocate ON referral_credits (advocate_entry_id);
