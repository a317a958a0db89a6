//! Scenario generators (being written).

use switchyard_core::fleet::Fleet;
use switchyard_core::job::JobSpec;

/// A model preset the frontier-lab scenario names in `Work::Amount` profiles.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelPreset {
    pub name: &'static str,
}

pub const MODEL_PRESETS: &[ModelPreset] = &[];

pub fn frontier_lab(_fleet: &Fleet, _seed: u64) -> Vec<JobSpec> {
    Vec::new()
}

pub fn synthetic(_fleet: &Fleet, _jobs: usize, _seed: u64) -> Vec<JobSpec> {
    Vec::new()
}
