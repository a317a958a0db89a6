-- Switchyard store, version 5 (SQLite): cursors numbered within what a reader may see.

-- The API's cursors used to be global sequences: the gaps between a tenant's own jobs, a job's
-- events or its log lines showed how much every other tenant submitted, logged and did. Each
-- is now numbered from 1 within its scope: a tenant's jobs, a job's events, a job's lines.
-- Writers assign the next number under the same lock that orders their commits.
ALTER TABLE jobs ADD COLUMN tenant_number BIGINT NOT NULL DEFAULT 0;
UPDATE jobs SET tenant_number = numbered.n
    FROM (SELECT seq, ROW_NUMBER() OVER (PARTITION BY tenant ORDER BY seq) AS n FROM jobs) AS numbered
    WHERE jobs.seq = numbered.seq;
CREATE UNIQUE INDEX jobs_tenant_number ON jobs (tenant, tenant_number);

ALTER TABLE events ADD COLUMN job_number BIGINT NOT NULL DEFAULT 0;
UPDATE events SET job_number = numbered.n
    FROM (SELECT seq, ROW_NUMBER() OVER (PARTITION BY job_id ORDER BY seq) AS n FROM events) AS numbered
    WHERE events.seq = numbered.seq;
DROP INDEX events_job;
CREATE UNIQUE INDEX events_job_number ON events (job_id, job_number);

ALTER TABLE job_logs ADD COLUMN job_number BIGINT NOT NULL DEFAULT 0;
UPDATE job_logs SET job_number = numbered.n
    FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY job_id ORDER BY id) AS n FROM job_logs) AS numbered
    WHERE job_logs.id = numbered.id;
DROP INDEX job_logs_job;
CREATE UNIQUE INDEX job_logs_job_number ON job_logs (job_id, job_number);
