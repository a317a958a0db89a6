//! How long a job runs where: from its stated durations, a throughput table, or the
//! performance model.

use std::collections::HashMap;

use switchyard_core::fleet::Cluster;
use switchyard_core::{JobSpec, ThroughputTable, Work};

/// Predicted run times of jobs on clusters. Pure: the table and the cache are values.
#[derive(Debug, Clone, Default)]
pub struct RateModel {
    table: ThroughputTable,
    /// Work units per second of a performance-model profile on (cluster, accelerators).
    perf_cache: HashMap<(String, usize, u32), Option<f64>>,
}

impl RateModel {
    pub fn new(table: ThroughputTable) -> Self {
        Self {
            table,
            perf_cache: HashMap::new(),
        }
    }

    /// Seconds the job needs on `cluster` at its full size, or `None` if nothing says how fast
    /// it runs there. Open-ended work (services) gives infinity.
    pub fn duration_s(
        &mut self,
        spec: &JobSpec,
        cluster_idx: usize,
        cluster: &Cluster,
    ) -> Option<f64> {
        match &spec.work {
            Work::Open => Some(f64::INFINITY),
            Work::Duration {
                seconds,
                by_accelerator,
            } => {
                let specific = by_accelerator
                    .iter()
                    .find(|(name, _)| cluster.accelerator.matches(name))
                    .map(|(_, s)| *s);
                let s = specific.unwrap_or(*seconds);
                (s.is_finite() && s >= 0.0).then_some(s)
            }
            Work::Amount { units, profile } => {
                let rate = match self.table.rate(profile, cluster.accelerator.name) {
                    Some(r) => Some(r),
                    None => self.perf_rate(profile, cluster_idx, cluster, spec.accelerators),
                }?;
                (rate > 0.0 && rate.is_finite() && *units >= 0.0).then(|| units / rate)
            }
        }
    }

    /// Rate from the performance model for profiles that name a model preset; cached.
    fn perf_rate(
        &mut self,
        profile: &str,
        cluster_idx: usize,
        cluster: &Cluster,
        accelerators: u32,
    ) -> Option<f64> {
        let key = (profile.to_owned(), cluster_idx, accelerators);
        if let Some(r) = self.perf_cache.get(&key) {
            return *r;
        }
        let rate = perf_model_rate(profile, cluster, accelerators);
        self.perf_cache.insert(key, rate);
        rate
    }
}

/// Tokens per optimizer step assumed for performance-model profiles: 16 Mi tokens, the batch of
/// Llama 3 405B's main pre-training phase (Llama 3 paper, section 3.4.1).
const TOKENS_PER_STEP: u32 = 16 * 1024 * 1024;

/// The performance model's prediction (global tokens per second) for a profile that names a
/// model preset (e.g. `llama3-405b`), on `accelerators` of `cluster` with its servers and
/// network; `None` if the profile is no preset or no layout fits.
fn perf_model_rate(profile: &str, cluster: &Cluster, accelerators: u32) -> Option<f64> {
    let model = switchyard_perf::ModelSpec::preset(profile)?;
    let hw = switchyard_perf::Hardware::from_cluster(cluster, accelerators);
    let sequences = (TOKENS_PER_STEP / model.seq_len.max(1))
        .max(accelerators / 8)
        .max(1);
    // A layout splits the batch evenly over its data-parallel ranks; every such degree divides
    // the gang, so a batch that is a multiple of the gang leaves every layout open.
    let even = sequences
        .checked_next_multiple_of(accelerators.max(1))
        .unwrap_or(sequences);
    switchyard_perf::best_training_rate_on(&model, &hw, sequences, false)
        .or_else(|| switchyard_perf::best_training_rate_on(&model, &hw, even, false))
        .filter(|r| r.is_finite() && *r > 0.0)
}

/// Young/Daly optimal checkpoint interval, seconds: `sqrt(2 * checkpoint cost * MTBF)` where the
/// MTBF is that of the job's whole allocation (a node's MTBF divided by the nodes it spans).
pub fn young_daly_interval_s(checkpoint_s: f64, node_mtbf_hours: f64, nodes: u32) -> f64 {
    if !(node_mtbf_hours.is_finite() && node_mtbf_hours > 0.0) || nodes == 0 {
        return f64::INFINITY;
    }
    let mtbf_s = node_mtbf_hours * 3600.0 / f64::from(nodes);
    (2.0 * checkpoint_s * mtbf_s).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_presets_are_rated_by_the_performance_model() {
        let fleet = switchyard_core::Fleet::default_fleet();
        let (idx, cluster) = fleet
            .clusters
            .iter()
            .enumerate()
            .find(|(_, c)| c.name == "colossus-1")
            .expect("the default fleet has colossus-1");
        let spec = JobSpec {
            id: "run".into(),
            tenant: "t".into(),
            kind: switchyard_core::JobKind::Training,
            priority: 0,
            submit_s: 0.0,
            accelerators: 8192,
            min_accelerators: None,
            replicas: None,
            accelerator_types: Vec::new(),
            clusters: Vec::new(),
            work: Work::Amount {
                units: 1e12,
                profile: "llama3-70b".into(),
            },
        };
        let mut model = RateModel::default();
        let d = model
            .duration_s(&spec, idx, cluster)
            .expect("llama3-70b is rated");
        // 1e12 tokens × 6 × 70e9 FLOP = 4.2e23 FLOP on 8,192 H100 (8.1e18 FLOP/s peak) at
        // 25-70 % MFU: 0.85 to 2.4 days.
        assert!(d > 0.8 * 86_400.0 && d < 2.5 * 86_400.0, "{d} s");
        let unknown = JobSpec {
            work: Work::Amount {
                units: 1.0,
                profile: "no-such-model".into(),
            },
            ..spec.clone()
        };
        assert!(model.duration_s(&unknown, idx, cluster).is_none());
        // A gang the preset's batch does not divide evenly (1,000 = 8 × 125) is rated too.
        let odd = JobSpec {
            accelerators: 1000,
            ..spec
        };
        assert!(model.duration_s(&odd, idx, cluster).is_some());
    }

    #[test]
    fn young_daly_matches_formula() {
        // 1,000 nodes of 50,000 h MTBF: the gang fails every 50 h = 180,000 s.
        let t = young_daly_interval_s(60.0, 50_000.0, 1000);
        assert!((t - (2.0f64 * 60.0 * 180_000.0).sqrt()).abs() < 1e-6);
        assert!(young_daly_interval_s(60.0, 0.0, 10).is_infinite());
    }
}
