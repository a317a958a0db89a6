//! Jobs: what a tenant asks the fleet to run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The priorities a job or a team's default may have, from `-MAX_PRIORITY` to `MAX_PRIORITY`
/// (a trace's jobs keep whatever their source gave them).
pub const MAX_PRIORITY: i32 = 1000;

/// The three kinds of work Switchyard places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// A gang: all of its accelerators at once or none, for a long time, checkpointed.
    Training,
    /// A gang that runs to completion without checkpoints (evaluations, data jobs, sweeps).
    Batch,
    /// A replica set serving a load; replicas are independent of each other.
    Inference,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Training => "training",
            JobKind::Batch => "batch",
            JobKind::Inference => "inference",
        }
    }

    /// Parses the names used in traces, job files and the API.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "training" | "train" => Some(JobKind::Training),
            "batch" => Some(JobKind::Batch),
            "inference" | "serve" | "serving" => Some(JobKind::Inference),
            _ => None,
        }
    }
}

/// How much work a job carries, and so how long it runs where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Work {
    /// Wall-clock seconds on its full allocation; `by_accelerator` overrides `seconds` for the
    /// accelerator types it names (canonical catalog names).
    Duration {
        seconds: f64,
        by_accelerator: BTreeMap<String, f64>,
    },
    /// An amount of work in abstract units (steps, samples, tokens) whose rate per accelerator
    /// type comes from a throughput table or the performance model, keyed by `profile`.
    Amount { units: f64, profile: String },
    /// Runs until cancelled (inference services).
    Open,
}

/// Replica-set shape of an inference service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replicas {
    pub min: u32,
    pub max: u32,
    /// Requests per second (or any load unit) one replica can serve.
    pub capacity_per_replica: f64,
    /// The load the service must serve over the day, in the unit of `capacity_per_replica`
    /// (`None` = no stated load: run `min` replicas).
    #[serde(default)]
    pub load: Option<DiurnalLoad>,
}

impl Replicas {
    /// Replicas needed to serve the load at `t_s` seconds, within `min..=max`.
    pub fn needed_at(&self, t_s: f64) -> u32 {
        let Some(load) = &self.load else {
            return self.min;
        };
        // A load past what f64 holds per replica (1e300 on 1e-10) needs every replica; a
        // quotient that means nothing (NaN) asks for none beyond the fewest.
        let want = load.at(t_s) / self.capacity_per_replica;
        let want = if want.is_nan() {
            0.0
        } else {
            want.ceil().clamp(0.0, f64::from(u32::MAX))
        };
        (want as u32).clamp(self.min, self.max.max(self.min))
    }
}

/// A daily load curve: `mean * (1 + amplitude * cos(2π (t - peak) / 1 day))`, where `t` is the
/// simulator's clock in seconds and `t = 0` is midnight.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DiurnalLoad {
    /// Mean load over a day.
    pub mean: f64,
    /// Relative swing, 0..=1: the peak is `mean * (1 + amplitude)`, the trough `mean * (1 - amplitude)`.
    pub amplitude: f64,
    /// Hour of the day (0..24) at which the load peaks.
    pub peak_hour: f64,
}

impl DiurnalLoad {
    /// The load at `t_s` seconds.
    pub fn at(&self, t_s: f64) -> f64 {
        let phase = (t_s / 86_400.0 - self.peak_hour / 24.0) * std::f64::consts::TAU;
        (self.mean * (1.0 + self.amplitude * phase.cos())).max(0.0)
    }
}

/// A job as submitted: who, what shape, where it may run, how much work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    pub id: String,
    /// The team (fleet-unique name) the job belongs to.
    pub tenant: String,
    pub kind: JobKind,
    /// Higher runs first under the `priority` policy.
    pub priority: i32,
    /// Submission time, seconds from the start of a trace (the simulator's clock).
    pub submit_s: f64,
    /// Gang size for training and batch jobs; accelerators per replica for inference.
    pub accelerators: u32,
    /// For elastic training: the smallest gang it can run on (`None` = fixed size).
    pub min_accelerators: Option<u32>,
    /// Inference only.
    pub replicas: Option<Replicas>,
    /// Accelerator types (canonical names) the job accepts; empty = any.
    pub accelerator_types: Vec<String>,
    /// Clusters the job accepts; empty = any.
    pub clusters: Vec<String>,
    pub work: Work,
}

/// Measured or predicted rates of work: profile (a job type) → accelerator type → work units per
/// second on the job's whole allocation. Gavel's `simulation_throughputs.json` and the performance
/// model both produce one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ThroughputTable {
    rates: BTreeMap<String, BTreeMap<String, f64>>,
}

impl ThroughputTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the rate of `profile` on `accelerator` (a canonical catalog name).
    pub fn insert(&mut self, profile: &str, accelerator: &str, units_per_s: f64) {
        self.rates
            .entry(profile.to_owned())
            .or_default()
            .insert(accelerator.to_owned(), units_per_s);
    }

    /// Units per second of `profile` on `accelerator`, if known.
    pub fn rate(&self, profile: &str, accelerator: &str) -> Option<f64> {
        self.rates.get(profile)?.get(accelerator).copied()
    }

    /// Every profile with its rates.
    pub fn profiles(&self) -> impl Iterator<Item = (&str, &BTreeMap<String, f64>)> {
        self.rates.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn is_empty(&self) -> bool {
        self.rates.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(min: u32, max: u32, capacity: f64, mean: f64) -> Replicas {
        Replicas {
            min,
            max,
            capacity_per_replica: capacity,
            load: Some(DiurnalLoad {
                mean,
                amplitude: 0.0,
                peak_hour: 20.0,
            }),
        }
    }

    #[test]
    fn replicas_needed_follow_the_load_within_the_range() {
        assert_eq!(service(1, 4, 10.0, 25.0).needed_at(0.0), 3);
        assert_eq!(service(1, 4, 10.0, 0.0).needed_at(0.0), 1);
        assert_eq!(service(1, 4, 10.0, 1e6).needed_at(0.0), 4);
        // A load too large for f64 per replica needs every replica, not the fewest.
        assert_eq!(service(1, 4, 1e-10, 1e300).needed_at(0.0), 4);
        assert_eq!(service(2, 4, 0.0, 1.0).needed_at(0.0), 4);
        // No load on no capacity means nothing: the fewest.
        assert_eq!(service(2, 4, 0.0, 0.0).needed_at(0.0), 2);
    }
}
