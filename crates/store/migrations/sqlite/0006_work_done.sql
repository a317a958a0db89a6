-- Switchyard store, version 6 (SQLite): the progress a training run has kept.

-- The scheduling leader writes the fraction of a run's work its checkpoints hold (as the
-- scheduler predicts it), so that a new leader resumes the run from there rather than from
-- the start: the remaining time it plans with, and the dry-run backend's end of the work.
ALTER TABLE jobs ADD COLUMN work_done REAL NOT NULL DEFAULT 0;
