-- Erasure at a person's request, and cursor-paged lists.
--
-- An erased entry keeps its row (its points, ledger and purchases stay, so every total still
-- balances) under a random id, without email, name or phone. Renaming it frees its derived id
-- (shared::ids::EntryId), so the next event for the same email starts a new entry from zero.
--
-- Additive and safe on a database holding earlier data: every existing entry has an email and
-- is not erased; the foreign keys are re-created with the same names and columns, validated
-- without blocking writes.

-- Erased entries have no email. Live ones still must, and (contest, email) stays unique among
-- them: NULLs are distinct in the unique constraint, so any number of erased entries fit.
ALTER TABLE entries ALTER COLUMN email DROP NOT NULL;
ALTER TABLE entries ADD COLUMN erased_at TIMESTAMPTZ;
ALTER TABLE entries ADD CONSTRAINT entries_email_unless_erased
    CHECK (erased_at IS NOT NULL OR email IS NOT NULL) NOT VALID;
ALTER TABLE entries VALIDATE CONSTRAINT entries_email_unless_erased;
ALTER TABLE entries ADD CONSTRAINT entries_erased_holds_no_personal_data
    CHECK (erased_at IS NULL OR (email IS NULL AND name IS NULL AND phone IS NULL)) NOT VALID;
ALTER TABLE entries VALIDATE CONSTRAINT entries_erased_holds_no_personal_data;

-- Renaming an entry carries its purchases, the referral credits it earned and the entries it
-- referred along (adjustment_keys already cascades). The ledger has no foreign key; the erasure
-- moves its rows in the same transaction.
ALTER TABLE purchases DROP CONSTRAINT purchases_entry_id_fkey,
    ADD CONSTRAINT purchases_entry_id_fkey FOREIGN KEY (entry_id) REFERENCES entries (id)
        ON UPDATE CASCADE NOT VALID;
ALTER TABLE purchases VALIDATE CONSTRAINT purchases_entry_id_fkey;
ALTER TABLE referral_credits DROP CONSTRAINT referral_credits_advocate_entry_id_fkey,
    ADD CONSTRAINT referral_credits_advocate_entry_id_fkey FOREIGN KEY (advocate_entry_id)
        REFERENCES entries (id) ON UPDATE CASCADE NOT VALID;
ALTER TABLE referral_credits VALIDATE CONSTRAINT referral_credits_advocate_entry_id_fkey;
ALTER TABLE entries DROP CONSTRAINT entries_referred_by_fkey,
    ADD CONSTRAINT entries_referred_by_fkey FOREIGN KEY (referred_by) REFERENCES entries (id)
        ON UPDATE CASCADE NOT VALID;
ALTER TABLE entries VALIDATE CONSTRAINT entries_referred_by_fkey;

-- The cascade to referred entries, and the erasure's rewrite of their ledger texts, find them
-- by referred_by: without an index each erasure would scan every entry.
CREATE INDEX entries_referred_by ON entries (referred_by) WHERE referred_by IS NOT NULL;

-- GET /api/contests/:id/entries?after=…: keyset paging in id order within a contest, live
-- entries only. (Contests page on their primary key.)
CREATE INDEX entries_by_contest ON entries (contest_id, id) WHERE erased_at IS NULL;
