//! The discrete-event loop: arrivals from a trace, a virtual clock, failure injection from a
//! seeded RNG, and the scheduler deciding at every instant something happens.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;
use serde::Serialize;
use switchyard_core::{Fleet, JobKind, JobSpec, Replicas, ThroughputTable};
use switchyard_sched::{Action, Config, Decision, Event, JobIdx, JobState, Policy, Scheduler};

/// What to simulate and how.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub policy: Policy,
    pub seed: u64,
    pub failures: bool,
    /// Skip jobs that can never run on the fleet (counted) instead of failing.
    pub skip_invalid: bool,
    /// Stop the clock this long after the first submission even if work remains, s (traces
    /// that count time from the Unix epoch start far from 0).
    pub horizon_s: f64,
    /// Keep every decision (with its reason) in the result; costs memory on big runs.
    pub keep_decisions: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            policy: Policy::Switchyard,
            seed: 0,
            failures: true,
            skip_invalid: false,
            horizon_s: 20.0 * 365.0 * 86_400.0,
            keep_decisions: false,
        }
    }
}

/// Input that cannot be simulated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    #[error("trace job {row} (id `{id}`): {message}")]
    Job {
        /// 1-based position of the job in the trace.
        row: usize,
        id: String,
        message: String,
    },
    #[error("the fleet has no clusters")]
    EmptyFleet,
}

/// Summary figures of a whole run or one cluster. JCT and waits cover finite jobs that
/// completed (services are open-ended and excluded).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    pub jobs: u64,
    pub completed: u64,
    pub avg_jct_s: f64,
    pub p50_jct_s: f64,
    pub p99_jct_s: f64,
    pub avg_wait_s: f64,
    pub makespan_s: f64,
    /// Allocated accelerator-time over available accelerator-time across the makespan.
    pub utilization: f64,
    /// Accelerator-time that made progress that was kept, over allocated accelerator-time.
    pub goodput: f64,
    pub cost_usd: f64,
    pub failures: u64,
    pub preemptions: u64,
}

/// How many unfinished jobs a result names, with why each is unfinished.
pub const UNFINISHED_EXAMPLES: usize = 10;

/// A job left waiting or running when the run stopped, and why, in the scheduler's words.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnfinishedJob {
    pub id: String,
    pub why: String,
}

/// The result of one run.
#[derive(Debug, Clone, Serialize)]
pub struct SimResult {
    pub fleet: String,
    pub policy: Policy,
    pub seed: u64,
    pub failures_enabled: bool,
    #[serde(flatten)]
    pub total: Figures,
    pub unfinished: u64,
    /// The first unfinished jobs that arrived (at most [`UNFINISHED_EXAMPLES`], in
    /// submission order) and why each was still waiting or running when the run stopped.
    pub unfinished_examples: Vec<UnfinishedJob>,
    /// Inference services that never had a replica running when the run stopped (their
    /// first and fewest replicas never fitted, or their caps kept them out).
    pub unplaced_services: u64,
    /// The first of them (at most [`UNFINISHED_EXAMPLES`], in submission order) and why each
    /// never started, in the scheduler's words.
    pub unplaced_service_examples: Vec<UnfinishedJob>,
    /// The clock reached `SimOptions::horizon_s` after the first submission with work left:
    /// the unfinished jobs were still running or waiting, or not yet due, when the run stopped.
    pub stopped_at_horizon: bool,
    /// `SimOptions::horizon_s` of the run, s.
    pub horizon_s: f64,
    /// Training runs that failed for good: they lost nodes too often in a row to keep any
    /// progress (`Config::max_stalled_restarts`).
    pub failed: u64,
    pub rejected: u64,
    pub restarts: u64,
    pub decisions: u64,
    pub wall_s: f64,
    pub decisions_per_s: f64,
    pub clusters: BTreeMap<String, ClusterFigures>,
    #[serde(skip)]
    pub series: Series,
    #[serde(skip)]
    pub tenant_jct: BTreeMap<String, Vec<f64>>,
    #[serde(skip)]
    pub decision_log: Vec<(String, Decision)>,
}

impl SimResult {
    /// Inference services among the jobs: open-ended, so neither completed, unfinished, failed
    /// nor skipped.
    pub fn services(&self) -> u64 {
        self.total
            .jobs
            .saturating_sub(self.total.completed + self.unfinished + self.failed + self.rejected)
    }

    /// ", N services (open-ended: served to the end)" for the headline of the text output
    /// and the report, or "" without services.
    pub fn services_clause(&self) -> String {
        match self.services() {
            0 => String::new(),
            1 => ", 1 service (open-ended: served to the end)".into(),
            n => format!(
                ", {} services (open-ended: served to the end)",
                switchyard_core::grouped(n)
            ),
        }
    }

    /// A sentence saying that the run stopped at its horizon with work left, if it did; the
    /// makespan and job times then cover only what finished before it.
    pub fn horizon_note(&self) -> Option<String> {
        if !self.stopped_at_horizon {
            return None;
        }
        let days = self.horizon_s / 86_400.0;
        let (count, unit) = if days >= 365.0 {
            (days / 365.0, "year")
        } else {
            (days, "day")
        };
        let count = shown_number(count);
        let span = format!("{count} {unit}{}", if count == "1" { "" } else { "s" });
        Some(format!(
            "The run stopped at its horizon, {span} after the first submission, with {} {} still waiting, running or not yet due; the makespan and job times cover only what finished before it.",
            self.unfinished,
            if self.unfinished == 1 { "job" } else { "jobs" }
        ))
    }
}

fn shown_number(x: f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// Per-cluster figures plus its size.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterFigures {
    pub accelerator: String,
    pub accelerators: u64,
    #[serde(flatten)]
    pub figures: Figures,
}

/// Time series sampled on the virtual clock (for reports).
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub interval_s: f64,
    pub t: Vec<f64>,
    /// Per cluster, in fleet order: busy fraction at each sample.
    pub utilization: Vec<Vec<f64>>,
    pub queue: Vec<u64>,
    pub cluster_names: Vec<String>,
}

impl Series {
    const MAX: usize = 2000;

    fn push(&mut self, t: f64, util: impl Iterator<Item = f64>, queue: u64) {
        self.t.push(t);
        for (c, u) in util.enumerate() {
            self.utilization[c].push(u);
        }
        self.queue.push(queue);
        if self.t.len() >= Self::MAX {
            // Keep every other sample and double the interval: bounded memory, same shape.
            let keep = |v: &mut Vec<f64>| {
                let mut i = 0;
                v.retain(|_| {
                    i += 1;
                    i % 2 == 1
                });
            };
            keep(&mut self.t);
            for u in &mut self.utilization {
                keep(u);
            }
            let mut i = 0;
            self.queue.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            self.interval_s *= 2.0;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Finish { job: JobIdx, generation: u32 },
    Repair { cluster: u32, node: u32 },
    Fail { cluster: u32 },
    Diurnal,
    Sample,
}

/// Progress of a run, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub finished: u64,
    pub total: u64,
    pub now_s: f64,
}

fn key(t: f64) -> u64 {
    if t <= 0.0 { 0 } else { t.to_bits() }
}

/// Seconds in a day: the period of the services' load curves.
const DAY_S: f64 = 86_400.0;

/// How many of the longest repair times a job waits, with nothing running, for nodes that are
/// down: long enough for a run that needs a whole cluster to see a moment when none is down.
const REPAIR_WAITS: f64 = 100.0;
/// The longest that wait lasts, s (a year): with repairs of months, a job that needs every
/// node of a cluster whose nodes fail by the hour would wait to the horizon.
const MAX_REPAIR_WAIT_S: f64 = 365.0 * DAY_S;

/// Latest submission time a trace may give, seconds: Unix-epoch seconds are about 1.8e9; at
/// 1e11 a double still tells microseconds apart, so events keep moving the clock.
pub const MAX_SUBMIT_S: f64 = 1e11;

/// Runs the simulation. `progress` is called now and then with how far it got.
pub fn simulate(
    fleet: &Fleet,
    mut jobs: Vec<JobSpec>,
    throughputs: ThroughputTable,
    opts: &SimOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<SimResult, SimError> {
    let wall = std::time::Instant::now();
    if fleet.clusters.is_empty() {
        return Err(SimError::EmptyFleet);
    }
    let cfg = Config {
        policy: opts.policy,
        failures: opts.failures,
        ..Config::default()
    };
    let mut sched = Scheduler::new(fleet, throughputs, cfg);
    // Validate first: a bad job is an error naming its row, or skipped and counted.
    let mut rejected = 0u64;
    let mut valid = Vec::with_capacity(jobs.len());
    for (i, spec) in jobs.drain(..).enumerate() {
        let problem = if !(spec.submit_s.is_finite() && spec.submit_s >= 0.0) {
            Some(format!(
                "submit time {} is not a finite, non-negative number",
                spec.submit_s
            ))
        } else if spec.submit_s > MAX_SUBMIT_S {
            Some(format!(
                "submit time {:e} s is more than {MAX_SUBMIT_S:e} s (3,000 years) after the trace's \
                 zero: times are seconds (a trace in milliseconds or microseconds needs \
                 converting; dates that far apart are mistyped)",
                spec.submit_s
            ))
        } else {
            sched.validate(&spec).err()
        };
        match problem {
            None => valid.push(spec),
            Some(message) if opts.skip_invalid => {
                let _ = message;
                rejected += 1;
            }
            Some(message) => {
                return Err(SimError::Job {
                    row: i + 1,
                    id: spec.id,
                    message,
                });
            }
        }
    }
    let mut jobs = valid;
    // Stable: ties keep trace order.
    jobs.sort_by(|a, b| a.submit_s.total_cmp(&b.submit_s));
    let total_jobs = jobs.len() as u64;
    let finite_total = jobs.iter().filter(|j| j.kind != JobKind::Inference).count() as u64;
    // Services never finish: each is watched through at least one day after it arrives (a
    // whole turn of its load curve), even when the finite jobs are done sooner or there are
    // none, so that what they hold and cost is part of the figures.
    let services_until = jobs
        .iter()
        .filter(|j| j.kind == JobKind::Inference)
        .map(|j| j.submit_s + DAY_S)
        .fold(f64::NEG_INFINITY, f64::max);
    let first_submit = jobs.first().map_or(0.0, |j| j.submit_s);

    let mut rng = Pcg64::seed_from_u64(opts.seed);
    let mut heap: BinaryHeap<Reverse<(u64, u64, Ev)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push = |heap: &mut BinaryHeap<Reverse<(u64, u64, Ev)>>, t: f64, ev: Ev| {
        seq += 1;
        heap.push(Reverse((key(t), seq, ev)));
    };
    let exp = |rng: &mut Pcg64, rate: f64| -> f64 {
        let u: f64 = rng.random::<f64>();
        -(1.0 - u).ln() / rate
    };
    let clusters = &fleet.clusters;
    if opts.failures {
        for (c, cl) in clusters.iter().enumerate() {
            let rate = f64::from(cl.nodes) / (cl.node_mtbf_hours * 3600.0);
            if rate.is_finite() && rate > 0.0 {
                let t = first_submit + exp(&mut rng, rate);
                push(&mut heap, t, Ev::Fail { cluster: c as u32 });
            }
        }
    }
    let has_services = jobs.iter().any(|j| j.kind == JobKind::Inference);
    if has_services {
        push(&mut heap, first_submit, Ev::Diurnal);
    }
    let mut series = Series {
        interval_s: 600.0,
        utilization: vec![Vec::new(); clusters.len()],
        cluster_names: clusters.iter().map(|c| c.name.clone()).collect(),
        ..Series::default()
    };
    push(&mut heap, first_submit, Ev::Sample);

    let mut services: Vec<(JobIdx, Replicas)> = Vec::new();
    let mut decisions: Vec<Decision> = Vec::new();
    let mut log: Vec<(String, Decision)> = Vec::new();
    let mut next_arrival = 0usize;
    let mut finished = 0u64;
    let mut pending_finishes = 0u64;
    let mut pending_repairs = 0u64;
    let mut now = first_submit;
    let mut last_finish = first_submit;
    let mut arrivals = jobs.into_iter().peekable();
    let mut steps = 0u64;
    let mut idle_since: Option<f64> = None;
    let mut stopped_at_horizon = false;
    let max_repair_s = clusters
        .iter()
        .map(|c| c.repair_hours * 3600.0)
        .fold(0.0, f64::max)
        + 1.0;
    // Services are watched to `services_until` itself, not to the last event before it
    // (samples come every 10 minutes), nor past the horizon.
    let watched_through = services_until.min(first_submit + opts.horizon_s);
    loop {
        let t_arr = arrivals.peek().map(|j| j.submit_s);
        let t_ev = heap.peek().map(|Reverse((k, _, _))| f64::from_bits(*k));
        let t = match (t_arr, t_ev) {
            (Some(a), Some(e)) => a.min(e),
            (Some(a), None) => a,
            (None, Some(e)) => e,
            (None, None) => break,
        };
        if finished >= finite_total && t_arr.is_none() && t > services_until {
            now = now.max(watched_through);
            // The horizon cut the services' watch short.
            stopped_at_horizon = watched_through < services_until;
            break;
        }
        if t_arr.is_none() && pending_finishes == 0 && sched.pending_jobs() > 0 {
            // Nothing running can free capacity and nothing more arrives. While nodes are down
            // a job may be waiting for them (one that needs the whole cluster waits for a
            // moment when none is down, however often others fail meanwhile): it gets
            // REPAIR_WAITS repair times from when the waiting began (at most a year). Services
            // that follow a load curve get a whole day of it (they shrink at their trough).
            // What still waits after that can never start.
            let since = *idle_since.get_or_insert(now);
            let repairs_s = if pending_repairs > 0 {
                (REPAIR_WAITS * max_repair_s).min(MAX_REPAIR_WAIT_S)
            } else {
                0.0
            };
            let services_s = if services.iter().any(|(_, r)| r.load.is_some()) {
                DAY_S + 3600.0
            } else {
                0.0
            };
            let wait_s = repairs_s.max(services_s);
            // Services are watched through their day whatever else is stuck.
            if (wait_s == 0.0 || t - since > wait_s) && t > services_until {
                now = now.max(watched_through);
                break;
            }
        } else {
            idle_since = None;
        }
        if t - first_submit > opts.horizon_s {
            stopped_at_horizon = true;
            // What runs is accounted up to the horizon itself, not to the last event before
            // it (report samples grow sparse: up to a week would be missing).
            now = now.max(first_submit + opts.horizon_s);
            break;
        }
        now = t;
        while arrivals.peek().is_some_and(|j| j.submit_s <= now) {
            let spec = arrivals.next().expect("peeked");
            let kind = spec.kind;
            let replicas = spec.replicas.clone();
            if let Some(idx) = sched.handle(now, Event::Submit(Box::new(spec)), &mut decisions)
                && kind == JobKind::Inference
                && let Some(r) = replicas
            {
                services.push((idx, r));
            }
            next_arrival += 1;
        }
        while let Some(Reverse((k, _, _))) = heap.peek() {
            if f64::from_bits(*k) > now {
                break;
            }
            let Some(Reverse((_, _, ev))) = heap.pop() else {
                break;
            };
            match ev {
                Ev::Finish { job, generation } => {
                    pending_finishes -= 1;
                    sched.handle(now, Event::Finished { job, generation }, &mut decisions);
                }
                Ev::Repair { cluster, node } => {
                    pending_repairs -= 1;
                    sched.handle(now, Event::NodeRepaired { cluster, node }, &mut decisions);
                }
                Ev::Fail { cluster } => {
                    let cl = &clusters[cluster as usize];
                    let node = (rng.random::<f64>() * f64::from(cl.nodes)) as u32;
                    let node = node.min(cl.nodes.saturating_sub(1));
                    if !sched.cluster_index(cluster).is_down(node) {
                        sched.handle(now, Event::NodeFailed { cluster, node }, &mut decisions);
                        pending_repairs += 1;
                        push(
                            &mut heap,
                            now + cl.repair_hours * 3600.0,
                            Ev::Repair { cluster, node },
                        );
                    }
                    let rate = f64::from(cl.nodes) / (cl.node_mtbf_hours * 3600.0);
                    push(&mut heap, now + exp(&mut rng, rate), Ev::Fail { cluster });
                }
                Ev::Diurnal => {
                    // Services follow their daily load curve, re-sized every hour.
                    for (job, r) in &services {
                        let replicas = r.needed_at(now);
                        sched.handle(
                            now,
                            Event::Scale {
                                job: *job,
                                replicas,
                            },
                            &mut decisions,
                        );
                    }
                    push(&mut heap, now + 3600.0, Ev::Diurnal);
                }
                Ev::Sample => {
                    let util = (0..clusters.len() as u32).map(|c| {
                        let cap = sched.cluster_index(c).capacity() as f64;
                        sched.busy(c) as f64 / cap.max(1.0)
                    });
                    series.push(now, util, sched.pending_jobs());
                    push(&mut heap, now + series.interval_s, Ev::Sample);
                }
            }
        }
        sched.schedule(now, &mut decisions);
        for d in decisions.drain(..) {
            match d.action {
                Action::Start {
                    job,
                    generation,
                    expected_end_s,
                    ..
                } if expected_end_s.is_finite() => {
                    pending_finishes += 1;
                    push(
                        &mut heap,
                        expected_end_s.max(now),
                        Ev::Finish { job, generation },
                    );
                }
                Action::Finish { job, .. }
                    if sched.job(job).kind != JobKind::Inference
                        && sched.job(job).state == JobState::Done =>
                {
                    finished += 1;
                    last_finish = last_finish.max(now);
                }
                Action::Reject { .. } => {
                    rejected += 1;
                    finished += 1;
                }
                // Over for good too: a run that could not keep progress between failures. Its
                // accelerators were busy until now, so the watched time runs to here at least.
                Action::Fail { .. } => {
                    finished += 1;
                    last_finish = last_finish.max(now);
                }
                _ => {}
            }
            if opts.keep_decisions {
                let id = sched.job(d.action.job()).id.to_owned();
                log.push((id, d));
            }
        }
        steps += 1;
        if steps.is_multiple_of(4096) {
            progress(Progress {
                finished,
                total: finite_total,
                now_s: now,
            });
        }
    }
    let _ = next_arrival;
    // Why the first unfinished jobs, and the services that never had a replica, stand where
    // they do, asked before the services stop. (A service with none is named too, rather than
    // counted silently among the jobs.)
    let waiting = |j: JobIdx| {
        let v = sched.job(j);
        v.kind != JobKind::Inference && matches!(v.state, JobState::Pending | JobState::Running)
    };
    let unplaced = |j: JobIdx| {
        let v = sched.job(j);
        v.kind == JobKind::Inference && v.first_start_s.is_none() && v.state == JobState::Pending
    };
    let jobs = || 0..sched.job_count() as JobIdx;
    let examples = |of: &dyn Fn(JobIdx) -> bool| -> Vec<UnfinishedJob> {
        jobs()
            .filter(|&j| of(j))
            .take(UNFINISHED_EXAMPLES)
            .map(|j| UnfinishedJob {
                id: sched.job(j).id.to_owned(),
                why: sched.why(j),
            })
            .collect()
    };
    let unfinished_examples = examples(&waiting);
    let unplaced_service_examples = examples(&unplaced);
    let unplaced_services = jobs().filter(|&j| unplaced(j)).count() as u64;
    // Jobs due after the horizon never arrived: they are unfinished, not forgotten.
    let never_arrived = arrivals.filter(|j| j.kind != JobKind::Inference).count() as u64;
    sched.stop_services(now, &mut decisions);
    decisions.clear();
    progress(Progress {
        finished,
        total: finite_total,
        now_s: now,
    });

    // Figures.
    let end = last_finish.max(first_submit);
    let makespan = (end - first_submit).max(0.0);
    let open = sched.open_accel_s(now);
    let stats = sched.stats();
    let n = clusters.len();
    let mut jct_all = Vec::new();
    let mut wait_all = Vec::new();
    let mut jct_c: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut wait_c: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut jobs_c = vec![0u64; n];
    let mut tenant_jct: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut unfinished = 0u64;
    let mut failed = 0u64;
    for j in 0..sched.job_count() as JobIdx {
        let v = sched.job(j);
        if let Some(c) = v.cluster {
            jobs_c[c as usize] += 1;
        }
        if v.kind == JobKind::Inference {
            continue;
        }
        match v.state {
            JobState::Done => {
                let jct = v.finish_s.unwrap_or(now) - v.submit_s;
                let wait = v.first_start_s.unwrap_or(now) - v.submit_s;
                jct_all.push(jct);
                wait_all.push(wait);
                if let Some(c) = v.cluster {
                    jct_c[c as usize].push(jct);
                    wait_c[c as usize].push(wait);
                }
                tenant_jct.entry(v.tenant.to_owned()).or_default().push(jct);
            }
            JobState::Pending | JobState::Running => unfinished += 1,
            JobState::Failed => failed += 1,
            _ => {}
        }
    }
    unfinished += never_arrived;
    // Utilisation is over the time the fleet was watched: up to the last completion, or up to
    // where the run stopped when work was left unfinished or services were watched longer.
    let span = if unfinished > 0 || services_until.is_finite() {
        (now.max(end) - first_submit).max(0.0)
    } else {
        makespan
    };
    let mut clusters_out = BTreeMap::new();
    let mut busy_total = 0.0;
    let mut useful_total = 0.0;
    let mut cap_total = 0.0;
    let mut cost_total = 0.0;
    for (c, cl) in clusters.iter().enumerate() {
        let busy = stats[c].busy_accel_s + open[c].0;
        let useful = stats[c].useful_accel_s + open[c].1;
        let cap = cl.accelerators() as f64;
        let cost = busy / 3600.0 * cl.price_per_accelerator_hour;
        busy_total += busy;
        useful_total += useful;
        cap_total += cap;
        cost_total += cost;
        let mut f = figures(&mut jct_c[c], &wait_c[c]);
        f.jobs = jobs_c[c];
        f.makespan_s = round2(makespan);
        f.utilization = ratio(busy, cap * span);
        f.goodput = ratio(useful, busy);
        f.cost_usd = round2(cost);
        f.failures = stats[c].node_failures;
        f.preemptions = stats[c].preemptions;
        clusters_out.insert(
            cl.name.clone(),
            ClusterFigures {
                accelerator: cl.accelerator.name.to_owned(),
                accelerators: cl.accelerators(),
                figures: f,
            },
        );
    }
    let mut total = figures(&mut jct_all, &wait_all);
    total.jobs = total_jobs + rejected;
    total.makespan_s = round2(makespan);
    total.utilization = ratio(busy_total, cap_total * span);
    total.goodput = ratio(useful_total, busy_total);
    total.cost_usd = round2(cost_total);
    total.failures = stats.iter().map(|s| s.node_failures).sum();
    total.preemptions = stats.iter().map(|s| s.preemptions).sum();
    let wall_s = wall.elapsed().as_secs_f64();
    let decisions_n = sched.decisions();
    Ok(SimResult {
        fleet: fleet.name.clone(),
        policy: opts.policy,
        seed: opts.seed,
        failures_enabled: opts.failures,
        total,
        unfinished,
        unfinished_examples,
        unplaced_services,
        unplaced_service_examples,
        stopped_at_horizon,
        horizon_s: opts.horizon_s,
        failed,
        rejected,
        restarts: stats.iter().map(|s| s.restarts).sum(),
        decisions: decisions_n,
        wall_s,
        decisions_per_s: if wall_s > 0.0 {
            decisions_n as f64 / wall_s
        } else {
            0.0
        },
        clusters: clusters_out,
        series,
        tenant_jct,
        decision_log: log,
    })
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { round6(a / b) } else { 0.0 }
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn figures(jct: &mut [f64], wait: &[f64]) -> Figures {
    jct.sort_by(f64::total_cmp);
    let pct = |p: f64| -> f64 {
        if jct.is_empty() {
            0.0
        } else {
            let i = ((p * jct.len() as f64).ceil() as usize).clamp(1, jct.len()) - 1;
            jct[i]
        }
    };
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    Figures {
        completed: jct.len() as u64,
        avg_jct_s: round2(mean(jct)),
        p50_jct_s: round2(pct(0.5)),
        p99_jct_s: round2(pct(0.99)),
        avg_wait_s: round2(mean(wait)),
        ..Figures::default()
    }
}
