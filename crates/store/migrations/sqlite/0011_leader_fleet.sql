-- Switchyard store, version 11: the fleet the scheduling leader runs.

-- A fingerprint of the leader's fleet and backends (`NAME:DIGEST`), written with the lease.
-- A replica started with a different fleet file is refused while that leader holds the lease,
-- and a follower that finds the leader on another fleet stops accepting submissions: it
-- would check them against clusters the leader does not schedule.
ALTER TABLE leader ADD COLUMN fleet TEXT NOT NULL DEFAULT '';
