-- Switchyard store, version 4 (SQLite): failed runs counted against a job's max_retries.

-- Written by the scheduling leader with the job's other state, so that a new leader does not
-- give a job that keeps failing a fresh set of retries.
ALTER TABLE jobs ADD COLUMN failures BIGINT NOT NULL DEFAULT 0;
