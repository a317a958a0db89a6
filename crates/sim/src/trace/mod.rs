//! Trace formats and importers (being written).
