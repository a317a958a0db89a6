//! Scenario generators: the frontier-lab scenario Switchyard exists for, and a scalable
//! synthetic workload for benchmarks. Both are seeded and deterministic (docs/traces.md).

use std::collections::{BTreeMap, HashMap};

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;
use switchyard_core::fleet::{Cluster, Fleet, Quota};
use switchyard_core::job::{DiurnalLoad, JobKind, JobSpec, Replicas, ThroughputTable, Work};
use switchyard_sched::RateModel;

const DAY: f64 = 86_400.0;
const HOUR: f64 = 3_600.0;

/// Fleet size (accelerators) at which the frontier-lab scenario's arrival rates apply in full;
/// smaller fleets get proportionally fewer research, eval and batch jobs.
const FULL_SCALE_ACCELERATORS: f64 = 32_768.0;

/// Days over which the frontier-lab scenario submits work.
pub const FRONTIER_LAB_DAYS: f64 = 28.0;

/// A model the scenario trains or serves; `name` is the performance model's preset name, used as
/// the `Work::Amount` profile (units: tokens).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelPreset {
    pub name: &'static str,
    /// Parameters active per token (all of them for dense models).
    pub active_params: f64,
}

impl ModelPreset {
    /// Training FLOPs per token, the usual `6 × active parameters`.
    pub fn train_flops_per_token(&self) -> f64 {
        6.0 * self.active_params
    }
}

/// Presets the scenario uses (parameter counts from the models' papers/configs).
pub const MODEL_PRESETS: &[ModelPreset] = &[
    ModelPreset {
        name: "llama3-405b",
        active_params: 405.9e9,
    },
    ModelPreset {
        name: "deepseek-v3",
        active_params: 37.0e9,
    },
    ModelPreset {
        name: "llama3-70b",
        active_params: 70.6e9,
    },
    ModelPreset {
        name: "gpt3-175b",
        active_params: 175.0e9,
    },
    ModelPreset {
        name: "llama3-8b",
        active_params: 8.0e9,
    },
    ModelPreset {
        name: "mixtral-8x7b",
        active_params: 12.9e9,
    },
];

/// Distinct RNG streams per generator, so one seed gives unrelated scenarios.
const FRONTIER_STREAM: u64 = 0x00f0_7e1e_01ab;
const SYNTHETIC_STREAM: u64 = 0x0005_1e71_c0de;

/// Dense presets giant runs train, largest first.
const PRETRAINING_PRESETS: [&str; 4] = ["llama3-405b", "gpt3-175b", "llama3-70b", "llama3-8b"];

/// Model FLOPs utilisation assumed when sizing a pretraining run's token budget.
const SIZING_MFU: f64 = 0.4;

/// What a team does in the scenario, guessed from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Pretraining,
    Research,
    Evals,
    Serving,
    BatchInference,
}

/// A team as the generator uses it.
#[derive(Debug, Clone)]
struct TeamRef {
    name: String,
    priority: i32,
    /// The largest gang its quota caps let it run on any one cluster.
    largest: u64,
}

/// The teams that play `role`: those whose name says so, else every team (so any fleet works),
/// else one `default` tenant.
fn teams_for(fleet: &Fleet, role: Role) -> Vec<TeamRef> {
    let all: Vec<TeamRef> = fleet
        .tenants
        .iter()
        .flat_map(|o| o.teams.iter())
        .map(|t| TeamRef {
            name: t.name.clone(),
            priority: t.priority,
            largest: fleet
                .clusters
                .iter()
                .map(|c| c.accelerators().min(fleet.quota_cap(&t.name, &c.name)))
                .max()
                .unwrap_or(0),
        })
        .collect();
    let matches = |name: &str| {
        let n = name.to_ascii_lowercase();
        match role {
            Role::Pretraining => n.contains("pretrain") || n.contains("pre-train"),
            Role::Research => n.contains("research"),
            Role::Evals => n.contains("eval"),
            Role::Serving => {
                (n.contains("serv") || n.contains("inference") || n.contains("product"))
                    && !n.contains("batch")
            }
            Role::BatchInference => n.contains("batch"),
        }
    };
    let chosen: Vec<TeamRef> = all.iter().filter(|t| matches(&t.name)).cloned().collect();
    if !chosen.is_empty() {
        chosen
    } else if !all.is_empty() {
        all
    } else {
        vec![TeamRef {
            name: super::canonical::DEFAULT_TENANT.to_owned(),
            priority: 0,
            largest: fleet
                .clusters
                .iter()
                .map(Cluster::accelerators)
                .max()
                .unwrap_or(0),
        }]
    }
}

fn pick<'a, T>(rng: &mut Pcg64Mcg, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// Picks from `(value, weight)` pairs.
fn weighted<T: Copy>(rng: &mut Pcg64Mcg, items: &[(T, f64)]) -> T {
    let total: f64 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.random::<f64>() * total;
    for (v, w) in items {
        if x < *w {
            return *v;
        }
        x -= w;
    }
    items[items.len() - 1].0
}

/// Log-uniform in `[lo, hi)`.
fn log_uniform(rng: &mut Pcg64Mcg, lo: f64, hi: f64) -> f64 {
    (lo.ln() + rng.random::<f64>() * (hi.ln() - lo.ln())).exp()
}

/// Exponential with the given mean.
fn exponential(rng: &mut Pcg64Mcg, mean: f64) -> f64 {
    -mean * (1.0 - rng.random::<f64>()).ln()
}

/// Poisson arrival times over `[0, horizon)` with `per_day` mean arrivals a day; weekdays busier
/// than weekends and working hours busier than nights (thinning a rate-`peak` process).
fn arrivals(rng: &mut Pcg64Mcg, per_day: f64, horizon: f64) -> Vec<f64> {
    let shape = |t: f64| {
        let day = (t / DAY).floor() as i64;
        let hour = (t % DAY) / HOUR;
        let weekday = if day.rem_euclid(7) >= 5 { 0.5 } else { 1.0 };
        let daytime = 0.6 + 0.4 * ((hour - 14.0) / 24.0 * std::f64::consts::TAU).cos();
        weekday * daytime
    };
    // Mean of `shape` over a week is (5 + 2 × 0.5)/7 × 0.6 = 0.514…; scale so the mean rate is per_day.
    let mean_shape = (5.0 + 2.0 * 0.5) / 7.0 * 0.6;
    let peak = per_day / DAY / mean_shape;
    let mut out = Vec::new();
    let mut t = 0.0;
    loop {
        t += exponential(rng, 1.0 / peak);
        if t >= horizon {
            return out;
        }
        if rng.random::<f64>() < shape(t) {
            out.push(t);
        }
    }
}

/// An accelerator type of the fleet.
#[derive(Debug, Clone, Copy)]
struct AccType {
    name: &'static str,
    bf16_tflops: f64,
    /// Accelerators of this type over the fleet.
    total: u64,
}

/// Accelerator types of the fleet, most accelerators first.
fn accelerator_types(fleet: &Fleet) -> Vec<AccType> {
    let mut types: BTreeMap<&'static str, AccType> = BTreeMap::new();
    for c in &fleet.clusters {
        let e = types.entry(c.accelerator.name).or_insert(AccType {
            name: c.accelerator.name,
            bf16_tflops: c.accelerator.bf16_tflops,
            total: 0,
        });
        e.total += c.accelerators();
    }
    let mut v: Vec<AccType> = types.into_values().collect();
    v.sort_by(|a, b| b.total.cmp(&a.total).then(a.name.cmp(b.name)));
    v
}

/// Run times of one job on every accelerator type of the fleet: `seconds` on the reference type
/// (the fleet's most common), scaled by relative BF16 peak to the power 0.8 (real jobs gain less
/// than the peak ratio) with ±20% per-job affinity noise.
fn durations_by_type(rng: &mut Pcg64Mcg, types: &[AccType], seconds: f64) -> Work {
    let reference = types.first().map_or(1.0, |t| t.bf16_tflops);
    let mut by_accelerator = BTreeMap::new();
    for t in types {
        let noise = 0.8 + 0.4 * rng.random::<f64>();
        let s = seconds * (reference / t.bf16_tflops).powf(0.8) * noise;
        by_accelerator.insert(t.name.to_owned(), round_s(s));
    }
    Work::Duration {
        seconds: round_s(seconds),
        by_accelerator,
    }
}

fn round_s(s: f64) -> f64 {
    s.round().max(1.0)
}

/// Rounds `n` down to a multiple of `granule` (at least one granule).
fn round_down(n: u64, granule: u64) -> u32 {
    let g = granule.max(1);
    let r = (n / g).max(1) * g;
    u32::try_from(r).unwrap_or(u32::MAX)
}

/// A job size capped to the largest cluster (a gang never spans clusters).
fn capped(size: u32, largest: u64) -> u32 {
    let largest = u32::try_from(largest).unwrap_or(u32::MAX).max(1);
    size.min(largest)
}

/// What services may hold at their most replicas, per team, per organisation and in all.
#[derive(Debug, Default)]
struct Held {
    team: HashMap<String, u64>,
    org: HashMap<String, u64>,
    all: u64,
}

impl Held {
    fn add(&mut self, fleet: &Fleet, team: &str, n: u64) {
        self.all += n;
        *self.team.entry(team.to_owned()).or_default() += n;
        if let Some((org, _)) = fleet.team(team) {
            *self.org.entry(org.name.clone()).or_default() += n;
        }
    }

    /// How large a gang team `team` could start on `cluster` beside what the services may
    /// hold: its own caps less its services' most, its organisation's caps less all of the
    /// organisation's. (They count against per-cluster caps too: a service may sit anywhere.)
    /// The cluster itself keeps room for whatever of all services' most the other clusters
    /// cannot hold: services run for good, so a gang needing that room would never start.
    fn room_on(&self, fleet: &Fleet, team: &str, cluster: &Cluster) -> u64 {
        let elsewhere = fleet.total_accelerators() - cluster.accelerators();
        let free = cluster
            .accelerators()
            .saturating_sub(self.all.saturating_sub(elsewhere));
        let Some((org, t)) = fleet.team(team) else {
            return free;
        };
        let team_held = self.team.get(team).copied().unwrap_or(0);
        let org_held = self.org.get(&org.name).copied().unwrap_or(0);
        free.min(Quota::cap(&t.quotas, &cluster.name).saturating_sub(team_held))
            .min(Quota::cap(&org.quotas, &cluster.name).saturating_sub(org_held))
    }

    /// [`Held::room_on`] on the cluster where it is largest.
    fn room(&self, fleet: &Fleet, team: &str) -> u64 {
        fleet
            .clusters
            .iter()
            .map(|c| self.room_on(fleet, team, c))
            .max()
            .unwrap_or(0)
    }
}

/// One inference service of the scenario, as far as it decides room: its team, its replica
/// size and its fewest and most replicas.
struct ServicePlan {
    team: TeamRef,
    size: u32,
    min: u32,
    max: u32,
}

/// The scenario's inference services (`None` for one its team has no room for): their maximum
/// replicas add up to the serving teams' quotas (at most a quarter of the fleet; 10% without
/// quotas), and a team's services hold at most half of what its caps (its own and its
/// organisation's) let it run at their most replicas, so that its training, evaluation and
/// batch jobs keep room however the load swings. Draws nothing from the scenario's random
/// stream: the other jobs are sized knowing what services may hold.
fn plan_services(fleet: &Fleet, serving: &[TeamRef], largest: u64) -> Vec<Option<ServicePlan>> {
    const SERVICES: usize = 8;
    let serving_quota: u64 = fleet
        .tenants
        .iter()
        .flat_map(|o| o.teams.iter())
        .filter(|t| serving.iter().any(|s| s.name == t.name))
        .flat_map(|t| t.quotas.iter())
        .map(|q| q.accelerators)
        .sum();
    let budget = if serving_quota > 0 {
        serving_quota.min(fleet.total_accelerators() / 4)
    } else {
        fleet.total_accelerators() / 10
    };
    let size = capped(8, largest);
    // Every service holds at least one replica: no more services than the budget holds.
    let services = SERVICES.min(usize::try_from(budget / u64::from(size)).unwrap_or(SERVICES));
    let per_service = budget / services.max(1) as u64;
    let mut held = Held::default();
    (0..services)
        .map(|s| {
            let team = &serving[s % serving.len()];
            if team.largest == 0 {
                return None;
            }
            // Replicas within the team's quota caps, and no more of them at the most than fit.
            let size = capped(size, team.largest);
            let team_held = held.team.get(&team.name).copied().unwrap_or(0);
            let mut left = (team.largest / 2).saturating_sub(team_held);
            // Under an organisation's cap, at most half of it for all its teams' services.
            if let Some((org, _)) = fleet.team(&team.name) {
                let org_largest = fleet
                    .clusters
                    .iter()
                    .map(|c| c.accelerators().min(Quota::cap(&org.quotas, &c.name)))
                    .max()
                    .unwrap_or(0);
                if fleet
                    .clusters
                    .iter()
                    .any(|c| Quota::cap(&org.quotas, &c.name) < u64::MAX)
                {
                    let org_held = held.org.get(&org.name).copied().unwrap_or(0);
                    left = left.min((org_largest / 2).saturating_sub(org_held));
                }
            }
            let fit = u32::try_from(left / u64::from(size)).unwrap_or(u32::MAX);
            if fit == 0 {
                return None;
            }
            let max = u32::try_from((per_service / u64::from(size)).max(1))
                .unwrap_or(u32::MAX)
                .min(fit);
            let min = (max / 8).max(1);
            held.add(fleet, &team.name, u64::from(max) * u64::from(size));
            Some(ServicePlan {
                team: team.clone(),
                size,
                min,
                max,
            })
        })
        .collect()
}

/// The frontier-lab scenario on `fleet`: four weeks of a lab's work.
///
/// - **Pretraining** (teams named `*pretrain*`): one giant run per cluster with at least 16,384
///   accelerators (the four largest; the largest cluster alone if none is that big), 90–98% of
///   the cluster, elastic down to 75%, restricted to that cluster's accelerator type, submitted
///   in the first week. Work: `Amount` of tokens of a dense model preset, the token budget
///   sized so the run takes 14–28 days at 40% MFU (6 × parameters FLOPs per token) on its
///   hardware, and the model the largest of `llama3-405b`, `gpt3-175b`, `llama3-70b`,
///   `llama3-8b` that budget trains on at least 20 tokens per parameter. Duration fallback:
///   where the scheduler's rate model cannot rate that preset on the run's cluster (the
///   performance model does not know it, or is not wired in yet), the run's work is instead
///   `Duration` of the sizing estimate (14–28 days) on its accelerator type; the id still
///   names the preset.
/// - **Research** (`*research*`): about 40 jobs a day (on fleets under 32,768 accelerators,
///   and for evals and batch inference too, proportionally fewer), 8–1,024 accelerators (mostly small),
///   0.5–48 hours, `Duration` with a time for every accelerator type of the fleet; a fifth of
///   those with 64 or more accelerators are elastic down to half.
/// - **Evals** (`*eval*`): about 30 batch jobs a day, 8–256 accelerators, 10 minutes–4 hours.
/// - **Batch inference** (`*batch*`): about 10 batch jobs a day, 8–64 accelerators, 1–12 hours.
/// - **Serving** (`*serv*`, `*inference*`): eight inference services (two launched in weeks 2
///   and 3), replicas of 8 accelerators, a diurnal load peaking between 17:00 and 22:00 whose
///   peak needs about 70% of the maximum replicas, `Work::Open`; their maximum replicas add up
///   to the serving teams' quotas (at most a quarter of the fleet; 10% without quotas), and
///   there are fewer services when that budget holds fewer than eight replicas.
///
/// Arrivals follow a weekly and daily rhythm. Tenants are the fleet's team names, priorities the
/// teams' defaults. Jobs are sorted by submission time; ids are unique.
pub fn frontier_lab(fleet: &Fleet, seed: u64) -> Vec<JobSpec> {
    let mut rng = Pcg64Mcg::seed_from_u64(seed ^ FRONTIER_STREAM);
    let horizon = FRONTIER_LAB_DAYS * DAY;
    let types = accelerator_types(fleet);
    let largest = fleet
        .clusters
        .iter()
        .map(Cluster::accelerators)
        .max()
        .unwrap_or(0);
    let mut jobs = Vec::new();
    if largest == 0 {
        return jobs;
    }
    // The arrival rates are a large lab's; a smaller fleet gets proportionally fewer jobs, so
    // the scenario asks a question the fleet can answer rather than an endless queue.
    let scale = (fleet.total_accelerators() as f64 / FULL_SCALE_ACCELERATORS).min(1.0);
    // What each team's services may hold at their most replicas: its other jobs are sized
    // within what its caps leave beside them, or they could wait for a trough that never
    // comes low enough.
    let services = plan_services(fleet, &teams_for(fleet, Role::Serving), largest);
    let mut held = Held::default();
    for f in services.iter().flatten() {
        held.add(fleet, &f.team.name, u64::from(f.max) * u64::from(f.size));
    }
    let room = |team: &TeamRef| team.largest.min(held.room(fleet, &team.name));

    // Giant pretraining runs.
    let pretrain = teams_for(fleet, Role::Pretraining);
    let mut clusters: Vec<&Cluster> = fleet.clusters.iter().collect();
    clusters.sort_by(|a, b| {
        b.accelerators()
            .cmp(&a.accelerators())
            .then(a.name.cmp(&b.name))
    });
    let mut giants: Vec<&Cluster> = clusters
        .iter()
        .copied()
        .filter(|c| c.accelerators() >= 16_384)
        .take(4)
        .collect();
    if giants.is_empty() {
        giants.push(clusters[0]);
    }
    for (i, cluster) in giants.iter().enumerate() {
        let team = &pretrain[i % pretrain.len()];
        let granule = if cluster.accelerators() >= 16_384 {
            1024
        } else {
            u64::from(cluster.scale_up_accelerators().max(8)).min(cluster.accelerators())
        };
        let frac = 0.90 + 0.08 * rng.random::<f64>();
        // Within what the team's quota caps let it hold there.
        let cap = held.room_on(fleet, &team.name, cluster);
        if cap == 0 {
            continue;
        }
        let wanted = ((cluster.accelerators() as f64 * frac) as u64).min(cap);
        let size = round_down(wanted, granule).min(u32::try_from(cap).unwrap_or(u32::MAX));
        let min = round_down(u64::from(size) * 3 / 4, granule);
        let days = 14.0 + 14.0 * rng.random::<f64>();
        let flops =
            f64::from(size) * cluster.accelerator.bf16_tflops * 1e12 * SIZING_MFU * days * DAY;
        // The largest dense preset this compute trains on at least 20 tokens per parameter
        // (Chinchilla), the smallest if none.
        let preset = PRETRAINING_PRESETS
            .iter()
            .filter_map(|n| MODEL_PRESETS.iter().find(|p| p.name == *n))
            .find(|p| flops / p.train_flops_per_token() >= 20.0 * p.active_params)
            .or_else(|| MODEL_PRESETS.iter().find(|p| p.name == "llama3-8b"))
            .copied()
            .unwrap_or(MODEL_PRESETS[0]);
        let tokens = (flops / preset.train_flops_per_token() / 1e9)
            .round()
            .max(1.0)
            * 1e9;
        let mut run = JobSpec {
            id: format!("pretrain-{}-{}", i + 1, preset.name),
            tenant: team.name.clone(),
            kind: JobKind::Training,
            priority: team.priority,
            submit_s: (i as f64 * 1.5 + rng.random::<f64>()) * DAY,
            accelerators: size,
            min_accelerators: (min < size).then_some(min),
            replicas: None,
            accelerator_types: vec![cluster.accelerator.name.to_owned()],
            clusters: Vec::new(),
            work: Work::Amount {
                units: tokens,
                profile: preset.name.to_owned(),
            },
        };
        // Duration fallback: where the scheduler's rate model (the performance model) cannot
        // rate the preset on the cluster the run was sized for, the run carries the sizing
        // estimate as a duration on its accelerator type instead.
        let rated = fleet
            .clusters
            .iter()
            .position(|c| c.name == cluster.name)
            .and_then(|idx| RateModel::new(ThroughputTable::new()).duration_s(&run, idx, cluster))
            .is_some_and(|d| d.is_finite() && d > 0.0);
        if !rated {
            let seconds = round_s(days * DAY);
            run.work = Work::Duration {
                seconds,
                by_accelerator: BTreeMap::from([(cluster.accelerator.name.to_owned(), seconds)]),
            };
        }
        jobs.push(run);
    }

    // Research jobs.
    let research = teams_for(fleet, Role::Research);
    let sizes = [
        (8u32, 0.30),
        (16, 0.20),
        (32, 0.15),
        (64, 0.12),
        (128, 0.10),
        (256, 0.07),
        (512, 0.04),
        (1024, 0.02),
    ];
    for (n, t) in arrivals(&mut rng, 40.0 * scale, horizon)
        .into_iter()
        .enumerate()
    {
        let team = pick(&mut rng, &research);
        if room(team) == 0 {
            continue;
        }
        let size = capped(weighted(&mut rng, &sizes), room(team));
        let seconds = log_uniform(&mut rng, 0.5 * HOUR, 48.0 * HOUR);
        let elastic = size >= 64 && rng.random::<f64>() < 0.2;
        // Three in ten pin one accelerator type (code written for GPUs, or for TPUs), among the
        // types with a cluster big enough for the gang.
        let hosts: Vec<AccType> = types
            .iter()
            .copied()
            .filter(|t| {
                fleet.clusters.iter().any(|c| {
                    c.accelerator.name == t.name
                        && held.room_on(fleet, &team.name, c) >= u64::from(size)
                })
            })
            .collect();
        let pinned = rng.random::<f64>() < 0.3 && !hosts.is_empty();
        let accelerator_types = if pinned {
            vec![pick(&mut rng, &hosts).name.to_owned()]
        } else {
            Vec::new()
        };
        jobs.push(JobSpec {
            id: format!("research-{:05}", n + 1),
            tenant: team.name.clone(),
            kind: JobKind::Training,
            priority: team.priority,
            submit_s: t.round(),
            accelerators: size,
            min_accelerators: elastic.then_some(size / 2),
            replicas: None,
            accelerator_types,
            clusters: Vec::new(),
            work: durations_by_type(&mut rng, &types, seconds),
        });
    }

    // Evals and batch inference.
    let evals = teams_for(fleet, Role::Evals);
    let eval_sizes = [
        (8u32, 0.40),
        (16, 0.20),
        (32, 0.20),
        (64, 0.10),
        (128, 0.07),
        (256, 0.03),
    ];
    for (n, t) in arrivals(&mut rng, 30.0 * scale, horizon)
        .into_iter()
        .enumerate()
    {
        let team = pick(&mut rng, &evals);
        if room(team) == 0 {
            continue;
        }
        let size = capped(weighted(&mut rng, &eval_sizes), room(team));
        let seconds = log_uniform(&mut rng, 600.0, 4.0 * HOUR);
        jobs.push(JobSpec {
            id: format!("eval-{:05}", n + 1),
            tenant: team.name.clone(),
            kind: JobKind::Batch,
            priority: team.priority,
            submit_s: t.round(),
            accelerators: size,
            min_accelerators: None,
            replicas: None,
            accelerator_types: Vec::new(),
            clusters: Vec::new(),
            work: durations_by_type(&mut rng, &types, seconds),
        });
    }
    let batch = teams_for(fleet, Role::BatchInference);
    let batch_sizes = [(8u32, 0.5), (16, 0.25), (32, 0.15), (64, 0.10)];
    for (n, t) in arrivals(&mut rng, 10.0 * scale, horizon)
        .into_iter()
        .enumerate()
    {
        let team = pick(&mut rng, &batch);
        if room(team) == 0 {
            continue;
        }
        let size = capped(weighted(&mut rng, &batch_sizes), room(team));
        let seconds = log_uniform(&mut rng, HOUR, 12.0 * HOUR);
        jobs.push(JobSpec {
            id: format!("batch-{:05}", n + 1),
            tenant: team.name.clone(),
            kind: JobKind::Batch,
            priority: team.priority,
            submit_s: t.round(),
            accelerators: size,
            min_accelerators: None,
            replicas: None,
            accelerator_types: Vec::new(),
            clusters: Vec::new(),
            work: durations_by_type(&mut rng, &types, seconds),
        });
    }

    // Inference services.
    let served = [
        "llama3-405b",
        "llama3-70b",
        "llama3-8b",
        "deepseek-v3",
        "mixtral-8x7b",
    ];
    for (s, plan) in services.iter().enumerate() {
        let Some(ServicePlan {
            team,
            size,
            min,
            max,
        }) = plan
        else {
            continue;
        };
        let model = served[s % served.len()];
        let capacity = (log_uniform(&mut rng, 20.0, 200.0) * 10.0).round() / 10.0;
        let amplitude = ((0.3 + 0.4 * rng.random::<f64>()) * 100.0).round() / 100.0;
        let peak_hour = ((17.0 + 5.0 * rng.random::<f64>()) * 4.0).round() / 4.0;
        // The evening peak needs about 70% of the maximum replicas.
        let mean = (0.7 * f64::from(*max) * capacity / (1.0 + amplitude)).round();
        let submit_s = match s {
            6 => 7.0 * DAY + 10.0 * HOUR,
            7 => 14.0 * DAY + 10.0 * HOUR,
            _ => 0.0,
        };
        jobs.push(JobSpec {
            id: format!("serve-{}-{}", s + 1, model),
            tenant: team.name.clone(),
            kind: JobKind::Inference,
            priority: team.priority,
            submit_s,
            accelerators: *size,
            min_accelerators: None,
            replicas: Some(Replicas {
                min: *min,
                max: *max,
                capacity_per_replica: capacity,
                load: Some(DiurnalLoad {
                    mean,
                    amplitude,
                    peak_hour,
                }),
            }),
            accelerator_types: Vec::new(),
            clusters: Vec::new(),
            work: Work::Open,
        });
    }

    super::sort_by_submit(&mut jobs);
    jobs
}

/// `jobs` synthetic jobs on `fleet` for scale benchmarks (the 1,000,000-job run on
/// `colossus-1-expanded`).
///
/// Sizes follow the Philly shape (mostly 1–8 accelerators, a tail to 1,024 and a few runs of
/// 2,048–16,384, capped to the largest cluster); run times are log-normal (median 30 minutes,
/// capped at 7 days) as `Work::Duration`; tenants cycle over the fleet's teams (weighted by team
/// weight); arrivals are Poisson at the rate that offers about 90% of the fleet's accelerators
/// over time. Training and batch jobs only. Generating a million jobs takes well under a second.
pub fn synthetic(fleet: &Fleet, jobs: usize, seed: u64) -> Vec<JobSpec> {
    let mut rng = Pcg64Mcg::seed_from_u64(seed ^ SYNTHETIC_STREAM);
    let largest = fleet
        .clusters
        .iter()
        .map(Cluster::accelerators)
        .max()
        .unwrap_or(0);
    if largest == 0 || jobs == 0 {
        return Vec::new();
    }
    let mut teams: Vec<(String, i32, f64)> = fleet
        .tenants
        .iter()
        .flat_map(|o| {
            o.teams
                .iter()
                .map(move |t| (t.name.clone(), t.priority, (o.weight * t.weight).max(1e-9)))
        })
        .collect();
    if teams.is_empty() {
        teams.push((super::canonical::DEFAULT_TENANT.to_owned(), 0, 1.0));
    }
    let team_weights: Vec<(usize, f64)> = teams.iter().enumerate().map(|(i, t)| (i, t.2)).collect();
    let sizes: Vec<(u32, f64)> = [
        (1u32, 0.55),
        (2, 0.05),
        (4, 0.07),
        (8, 0.18),
        (16, 0.05),
        (32, 0.04),
        (64, 0.025),
        (128, 0.015),
        (256, 0.01),
        (512, 0.006),
        (1024, 0.003),
        (2048, 0.0007),
        (4096, 0.0002),
        (16384, 0.0001),
    ]
    .into_iter()
    .map(|(s, w)| (capped(s, largest), w))
    .collect();
    // Log-normal run time: median 1,800 s, sigma 1.6, capped at 7 days.
    let (mu, sigma, cap) = (1800f64.ln(), 1.6f64, 7.0 * DAY);
    // Offered accelerator-seconds per job, estimated by sampling the mix once (deterministic).
    let mean_size: f64 = sizes.iter().map(|(s, w)| f64::from(*s) * w).sum::<f64>()
        / sizes.iter().map(|(_, w)| w).sum::<f64>();
    let mean_duration = (mu + sigma * sigma / 2.0).exp().min(cap);
    let total = fleet.total_accelerators() as f64;
    let mean_gap = mean_size * mean_duration / (0.9 * total);

    let mut out = Vec::with_capacity(jobs);
    let mut t = 0.0;
    for n in 0..jobs {
        t += exponential(&mut rng, mean_gap);
        let team = &teams[weighted(&mut rng, &team_weights)];
        let size = weighted(&mut rng, &sizes);
        // Box–Muller normal.
        let (u1, u2) = (1.0 - rng.random::<f64>(), rng.random::<f64>());
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        let seconds = (mu + sigma * z).exp().clamp(60.0, cap).round();
        out.push(JobSpec {
            id: format!("syn-{n:07}"),
            tenant: team.0.clone(),
            kind: if size >= 64 || rng.random::<f64>() < 0.5 {
                JobKind::Training
            } else {
                JobKind::Batch
            },
            priority: team.1,
            submit_s: (t * 1000.0).round() / 1000.0,
            accelerators: size,
            min_accelerators: None,
            replicas: None,
            accelerator_types: Vec::new(),
            clusters: Vec::new(),
            work: Work::Duration {
                seconds,
                by_accelerator: BTreeMap::new(),
            },
        });
    }
    out
}
