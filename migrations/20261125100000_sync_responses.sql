-- Synchronous answers (`Prefer: wait`): a contest may ask every generic purchase, signup and
-- refund webhook to wait for the worker's outcome by default (`syncResponses`).
--
-- Additive: an older build never names the column and keeps working on a migrated database.
ALTER TABLE contests ADD COLUMN sync_responses BOOLEAN NOT NULL DEFAULT false;
