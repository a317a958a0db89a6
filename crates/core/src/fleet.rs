//! The fleet: providers, clusters, tenants. (Being written: loader lands next.)

/// A validated fleet description.
#[derive(Debug, Clone, PartialEq)]
pub struct Fleet {}

/// One cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {}

/// A fleet file that failed to load.
#[derive(Debug, thiserror::Error)]
#[error("fleet error")]
pub struct FleetError {}
