-- Switchyard store, version 3 (PostgreSQL): an inference service's wanted replica count.

-- Set by `POST /v1/jobs/{id}/scale` (within the service's submitted range); NULL until then,
-- when the service runs its submitted minimum. The leader applies it on every pass, so a new
-- leader applies it too.
ALTER TABLE jobs ADD COLUMN replicas_wanted BIGINT;
