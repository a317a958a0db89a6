-- Switchyard store, version 10 (PostgreSQL): the boot of the machine behind each node.

-- The agent's boot id (/proc/sys/kernel/random/boot_id) at its last registration, NULL when it
-- sent none. A new scheduling leader that has not heard from a node of a gang's last attempt
-- counts a report from it only from this boot: another machine that takes the host name over,
-- or the same one rebooted, ran none of those ranks and says nothing of the old ones.
ALTER TABLE nodes ADD COLUMN boot_id TEXT;
