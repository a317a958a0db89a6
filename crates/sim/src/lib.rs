//! switchyard-sim (being written).
