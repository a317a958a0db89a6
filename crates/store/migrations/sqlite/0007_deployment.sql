-- Switchyard store, version 7 (SQLite): who this deployment is.

-- One random id per database, shared by every server on it: what sets this deployment's
-- marks (its Slurm jobs' tag) apart from another deployment's on shared infrastructure.
CREATE TABLE IF NOT EXISTS deployment (id TEXT NOT NULL);
INSERT INTO deployment (id)
SELECT lower(hex(randomblob(6))) WHERE NOT EXISTS (SELECT 1 FROM deployment);
