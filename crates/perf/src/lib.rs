//! switchyard-perf (being written).
