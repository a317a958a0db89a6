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

/// The performance model's prediction (global work units per second) for a profile that names a
/// model preset; `None` until the model knows the preset.
fn perf_model_rate(_profile: &str, _cluster: &Cluster, _accelerators: u32) -> Option<f64> {
    None
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
    fn young_daly_matches_formula() {
        // 1,000 nodes of 50,000 h MTBF: the gang fails every 50 h = 180,000 s.
        let t = young_daly_interval_s(60.0, 50_000.0, 1000);
        assert!((t - (2.0f64 * 60.0 * 180_000.0).sqrt()).abs() < 1e-6);
        assert!(young_daly_interval_s(60.0, 0.0, 10).is_infinite());
    }
}
