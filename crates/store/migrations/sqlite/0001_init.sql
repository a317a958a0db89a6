-- Switchyard store, version 1 (SQLite).
CREATE TABLE IF NOT EXISTS tokens (
    hash        TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    admin       BOOLEAN NOT NULL,
    created_ms  BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS jobs (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    id                TEXT NOT NULL UNIQUE,
    tenant            TEXT NOT NULL,
    name              TEXT,
    kind              TEXT NOT NULL,
    priority          BIGINT NOT NULL,
    accelerators      BIGINT NOT NULL,
    spec              TEXT NOT NULL,
    state             TEXT NOT NULL,
    reason            TEXT NOT NULL,
    cluster           TEXT,
    allocated         BIGINT NOT NULL DEFAULT 0,
    restarts          BIGINT NOT NULL DEFAULT 0,
    cancel_requested  BOOLEAN NOT NULL DEFAULT FALSE,
    -- Set by the leader once the scheduler has taken the job in (in the same transaction as
    -- the decisions that follow); new jobs are found by this flag, not by `seq`, because
    -- sequence numbers are not committed in order.
    seen              BOOLEAN NOT NULL DEFAULT FALSE,
    submitted_ms      BIGINT NOT NULL,
    started_ms        BIGINT,
    finished_ms       BIGINT,
    updated_ms        BIGINT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_tenant_name ON jobs (tenant, name);
CREATE INDEX IF NOT EXISTS jobs_tenant_seq ON jobs (tenant, seq);
CREATE INDEX IF NOT EXISTS jobs_state_seq ON jobs (state, seq);
CREATE INDEX IF NOT EXISTS jobs_seen ON jobs (seen, seq);

CREATE TABLE IF NOT EXISTS events (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id   TEXT NOT NULL,
    at_ms    BIGINT NOT NULL,
    kind     TEXT NOT NULL,
    cluster  TEXT,
    message  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_job ON events (job_id, seq);

CREATE TABLE IF NOT EXISTS leader (
    id          INTEGER PRIMARY KEY,
    holder      TEXT NOT NULL,
    term        BIGINT NOT NULL,
    expires_ms  BIGINT NOT NULL
);
INSERT INTO leader (id, holder, term, expires_ms) VALUES (1, '', 0, 0) ON CONFLICT (id) DO NOTHING;
