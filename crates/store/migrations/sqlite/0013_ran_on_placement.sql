-- Switchyard store, version 13 (SQLite): where each rank of a gang's last attempt runs.

-- JSON: the attempt, each node's accelerator indices in rank order, and a digest of what its
-- agents were handed. A new scheduling leader places a recovered gang on exactly these and hands
-- its agents the same assignments, so ranks that survived the change of leader run on.
ALTER TABLE jobs ADD COLUMN ran_on_placement TEXT;
