-- Switchyard store, version 8 (SQLite): what each job holds on each cluster.

-- A job's `cluster` and `allocated` say where it runs and how much it holds in all, but an
-- inference service's replicas may run on several clusters: the fleet view and the busy-
-- accelerator metric sum these rows per cluster instead. The scheduling leader rewrites a
-- job's rows with every update of the job; a job that holds nothing has none.
CREATE TABLE IF NOT EXISTS job_clusters (
    job_id    TEXT NOT NULL,
    cluster   TEXT NOT NULL,
    allocated BIGINT NOT NULL,
    PRIMARY KEY (job_id, cluster)
);
-- What runs already is on the one cluster the job names.
INSERT INTO job_clusters (job_id, cluster, allocated)
SELECT id, cluster, allocated FROM jobs
WHERE state = 'running' AND cluster IS NOT NULL AND allocated > 0;
