-- Switchyard store, version 2 (PostgreSQL): agent tokens, the node registry, job logs.
-- (Job state `failed` needs no change: the state column is free text.)

-- Agent tokens are fleet-wide: their `tenant` is empty, which no tenant name can be.
ALTER TABLE tokens ADD COLUMN agent BOOLEAN NOT NULL DEFAULT FALSE;

-- One row per registered node agent. A node keeps its id and slot across registrations of the
-- same (cluster, hostname); the slot (0 .. the cluster's node count in the fleet) is the node
-- index the scheduler's NodeFailed/NodeRepaired name.
CREATE TABLE IF NOT EXISTS nodes (
    id             TEXT PRIMARY KEY,
    cluster        TEXT NOT NULL,
    slot           BIGINT NOT NULL,
    hostname       TEXT NOT NULL,
    address        TEXT NOT NULL,
    cpus           BIGINT NOT NULL,
    memory_bytes   BIGINT NOT NULL,
    accelerators   BIGINT NOT NULL,
    -- The agent's NodeInfo, JSON.
    info           TEXT NOT NULL,
    -- ready or lost.
    state          TEXT NOT NULL,
    registered_ms  BIGINT NOT NULL,
    heartbeat_ms   BIGINT NOT NULL,
    -- When it was marked lost; NULL while ready.
    lost_ms        BIGINT,
    UNIQUE (cluster, hostname),
    UNIQUE (cluster, slot)
);

-- Output lines of jobs' processes, as agents push them. `id` is the read cursor; a line is
-- stored once per (assignment, stream, seq) however often an agent retries its batch.
CREATE TABLE IF NOT EXISTS job_logs (
    id             BIGSERIAL PRIMARY KEY,
    job_id         TEXT NOT NULL,
    attempt        BIGINT NOT NULL,
    rank           BIGINT NOT NULL,
    assignment_id  TEXT NOT NULL,
    stream         TEXT NOT NULL,
    seq            BIGINT NOT NULL,
    at_ms          BIGINT NOT NULL,
    line           TEXT NOT NULL,
    UNIQUE (assignment_id, stream, seq)
);
CREATE INDEX IF NOT EXISTS job_logs_job ON job_logs (job_id, id);
