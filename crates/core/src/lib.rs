//! Switchyard's domain types: the accelerator catalog, the fleet (providers and their contracts,
//! clusters and their topology, tenants and their quotas) and the jobs that run on it.
//!
//! This crate does no I/O beyond parsing text it is handed; reading files is the caller's job,
//! so the scheduler, the simulator and the control plane share one validated model.

pub mod accelerator;
pub mod fleet;
pub mod job;
pub mod words;

pub use accelerator::{Accelerator, lookup as lookup_accelerator};
pub use fleet::{Cluster, Fleet, FleetError};
pub use job::{DiurnalLoad, JobKind, JobSpec, Replicas, ThroughputTable, Work};
pub use words::{grouped, plain_toml_words, plain_type_words};
