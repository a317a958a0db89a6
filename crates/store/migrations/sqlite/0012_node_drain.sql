-- Switchyard store, version 12: nodes an administrator drained.

-- A drained node takes no new work while what runs on it goes on (`switchyard nodes drain`),
-- until it is resumed; the drain outlives the agent's registrations and the server's restarts.
-- Both NULL while it is not drained.
ALTER TABLE nodes ADD COLUMN drained_reason TEXT;
ALTER TABLE nodes ADD COLUMN drained_ms BIGINT;
