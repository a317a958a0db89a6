-- Switchyard store, version 7 (PostgreSQL): who this deployment is.

-- One random id per database, shared by every server on it: what sets this deployment's
-- marks (its Slurm jobs' tag) apart from another deployment's on shared infrastructure.
CREATE TABLE IF NOT EXISTS deployment (id TEXT NOT NULL);
INSERT INTO deployment (id)
SELECT substr(md5(random()::text || clock_timestamp()::text), 1, 12)
WHERE NOT EXISTS (SELECT 1 FROM deployment);
