//! switchyard-sched (being written).
