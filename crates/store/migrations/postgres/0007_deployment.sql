-- Switchyard store, version 7 (PostgreSQL): who this deployment is.

-- One random id per database, shared by every server on it: what sets this deployment's
-- marks (its Slurm jobs' tag) apart from another deployment's on shared infrastructure.
-- gen_random_uuid() (core since PostgreSQL 13) rather than md5(), which a FIPS build refuses;
-- the first 12 hex digits of a version-4 UUID are all random.
CREATE TABLE IF NOT EXISTS deployment (id TEXT NOT NULL);
INSERT INTO deployment (id)
SELECT substr(replace(gen_random_uuid()::text, '-', ''), 1, 12)
WHERE NOT EXISTS (SELECT 1 FROM deployment);
