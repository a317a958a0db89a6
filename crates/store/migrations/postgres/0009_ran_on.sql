-- Switchyard store, version 9 (PostgreSQL): where a gang's ranks were last handed out.

-- The node ids (comma-separated) of the last attempt whose ranks node agents were given. Ranks
-- on a node cut off from the leader run on until its agent's orphan deadline; a new scheduling
-- leader that has heard from none of these nodes holds the gang's next attempt back until then,
-- so that two attempts never write one checkpoint directory.
ALTER TABLE jobs ADD COLUMN ran_on_nodes TEXT;
