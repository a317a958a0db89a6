//! The scheduler state machine: events in, decisions out.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::ops::Bound::{Excluded, Unbounded};

use serde::Serialize;
use switchyard_core::fleet::{Cluster, Fleet};
use switchyard_core::{JobKind, JobSpec, ThroughputTable, Work, grouped};

use crate::index::{ClusterIndex, NodeShare};
use crate::rates::{RateModel, young_daly_interval_s};

/// A job's handle: an index into the scheduler's jobs. Handed out in submission order, except
/// that a control plane may [release](Scheduler::release) an ended job's handle for a later
/// submission to reuse.
pub type JobIdx = u32;

/// The longest a finite job may take on a cluster, s (a century): work that would take
/// longer there (a throughput of almost nothing, a duration in the wrong unit) is taken as
/// never finishing there, and a job that would nowhere finish sooner is refused.
pub const LONGEST_RUN_S: f64 = 100.0 * 365.25 * 86_400.0;

/// A named scheduling policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// First come, first served, with EASY backfill.
    Fifo,
    /// Highest priority first; preempts as few whole lower-priority jobs as possible.
    Priority,
    /// Weighted fair share across teams, quotas, borrowing of idle quota and reclaiming it.
    Fair,
    /// Fair share + shortest predicted remaining time + heterogeneity, topology and failure
    /// awareness. The default.
    Switchyard,
}

impl Policy {
    pub const ALL: [Policy; 4] = [
        Policy::Fifo,
        Policy::Priority,
        Policy::Fair,
        Policy::Switchyard,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Fifo => "fifo",
            Policy::Priority => "priority",
            Policy::Fair => "fair",
            Policy::Switchyard => "switchyard",
        }
    }

    fn per_tenant(self) -> bool {
        matches!(self, Policy::Fair | Policy::Switchyard)
    }
}

impl std::str::FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Policy::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!("unknown policy `{s}`; expected one of fifo, priority, fair, switchyard")
            })
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Knobs of the scheduler.
#[derive(Debug, Clone)]
pub struct Config {
    pub policy: Policy,
    /// Whether nodes fail: training runs then checkpoint at the Young/Daly interval.
    pub failures: bool,
    /// Time to write one checkpoint, s.
    pub checkpoint_s: f64,
    /// Time for a training run to restart (reschedule, load the checkpoint, warm up), s, on a
    /// cluster whose fleet entry does not state its own (`restart_s`).
    pub restart_s: f64,
    /// Time for a batch job to restart, s.
    pub batch_restart_s: f64,
    /// Jobs tried without success before a pass stops looking further down the queue.
    pub backfill_depth: usize,
    /// `switchyard`: a job waits for faster accelerators rather than start on ones this many
    /// times slower than its best (unless it has waited longer than its best run time).
    pub max_slowdown: f64,
    /// `switchyard`: a job waiting longer than this many seconds (and twice its run time) gets a
    /// reservation, as the head of a FIFO queue does.
    pub starvation_s: f64,
    /// `switchyard`: a waiting job may preempt a checkpointable run of no higher priority that
    /// has more than this many times its own predicted run time, plus two of the cluster's
    /// restarts, left.
    pub preempt_factor: f64,
    /// A training run that loses a node this many times in a row without having kept any
    /// progress in between (its nodes fail faster than it restarts and checkpoints) has
    /// failed: it would restart for ever.
    pub max_stalled_restarts: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            policy: Policy::Switchyard,
            failures: true,
            checkpoint_s: 60.0,
            restart_s: 300.0,
            batch_restart_s: 30.0,
            backfill_depth: 128,
            max_slowdown: 2.0,
            starvation_s: 7.0 * 86_400.0,
            preempt_factor: 2.0,
            max_stalled_restarts: 100,
        }
    }
}

/// What happened.
#[derive(Debug, Clone)]
pub enum Event {
    Submit(Box<JobSpec>),
    /// A running job's work is done (as the driver observed; stale generations are ignored).
    Finished {
        job: JobIdx,
        generation: u32,
    },
    NodeFailed {
        cluster: u32,
        node: u32,
    },
    /// Nodes of one cluster found failed at the same moment (a backend's poll that finds
    /// several silent): a gang hit on more than one of them restarts once, not once per node.
    NodesFailed {
        cluster: u32,
        nodes: Vec<u32>,
    },
    /// Nodes of one cluster taken out of service for new work while what runs on them goes
    /// on (Slurm's drain): they are offered nothing until repaired, and fail like any other
    /// node if they fail meanwhile. Nodes already down are left as they are.
    NodesDrained {
        cluster: u32,
        nodes: Vec<u32>,
    },
    /// A failed or drained node is back in service.
    NodeRepaired {
        cluster: u32,
        node: u32,
    },
    /// An inference service's wanted replica count (clamped to its range).
    Scale {
        job: JobIdx,
        replicas: u32,
    },
    Cancel {
        job: JobIdx,
    },
    /// A running gang's work failed (the driver saw a process fail). With `retry` it goes back
    /// in the queue to restart from its last checkpoint; without, the job ends as failed.
    /// Stale generations are ignored.
    Failed {
        job: JobIdx,
        generation: u32,
        retry: bool,
        reason: String,
    },
}

/// What the scheduler decided.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// A gang starts (or restarts) on `accelerators` of `cluster`; its work ends at
    /// `expected_end_s` unless something interrupts it.
    Start {
        job: JobIdx,
        cluster: u32,
        accelerators: u32,
        generation: u32,
        expected_end_s: f64,
        /// Where: accelerators per node of `cluster` (drivers that launch real work need it).
        #[serde(skip)]
        nodes: Vec<NodeShare>,
    },
    AddReplica {
        job: JobIdx,
        cluster: u32,
        accelerators: u32,
        #[serde(skip)]
        nodes: Vec<NodeShare>,
    },
    /// A replica is taken down; `nodes` says which.
    RemoveReplica {
        job: JobIdx,
        cluster: u32,
        #[serde(skip)]
        nodes: Vec<NodeShare>,
    },
    /// Taken off its accelerators to make room; back in the queue.
    Preempt {
        job: JobIdx,
        cluster: u32,
    },
    /// Hit by a node failure: loses `lost_s` of progress and goes back in the queue.
    Restart {
        job: JobIdx,
        cluster: u32,
        lost_s: f64,
    },
    ReplicaLost {
        job: JobIdx,
        cluster: u32,
        #[serde(skip)]
        nodes: Vec<NodeShare>,
    },
    Finish {
        job: JobIdx,
        cluster: u32,
    },
    /// Its work failed and it is not retried any more.
    Fail {
        job: JobIdx,
        cluster: u32,
    },
    /// Can never run on this fleet.
    Reject {
        job: JobIdx,
    },
}

impl Action {
    /// The job the decision is about.
    pub fn job(&self) -> JobIdx {
        match *self {
            Action::Start { job, .. }
            | Action::AddReplica { job, .. }
            | Action::RemoveReplica { job, .. }
            | Action::Preempt { job, .. }
            | Action::Restart { job, .. }
            | Action::ReplicaLost { job, .. }
            | Action::Finish { job, .. }
            | Action::Fail { job, .. }
            | Action::Reject { job } => job,
        }
    }

    /// Whether the job has ended with this decision (a slot [`Scheduler::release`] may free).
    pub fn ends_the_job(&self) -> bool {
        matches!(
            self,
            Action::Finish { .. } | Action::Fail { .. } | Action::Reject { .. }
        )
    }
}

/// One decision and why it was taken.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub at_s: f64,
    #[serde(flatten)]
    pub action: Action,
    pub reason: String,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Pending,
    Running,
    Done,
    Cancelled,
    Rejected,
    /// Its work failed more often than it may be retried.
    Failed,
}

/// Counters per cluster, for reports.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterStats {
    /// Accelerator-seconds allocated to jobs (closed allocations only; see `busy_at`).
    pub busy_accel_s: f64,
    /// Accelerator-seconds of progress that was kept (not lost to failures, restarts or
    /// checkpoint writes).
    pub useful_accel_s: f64,
    pub node_failures: u64,
    pub preemptions: u64,
    pub restarts: u64,
    pub completed: u64,
}

/// `n` and the noun for that many ("1 replica", "3 replicas").
fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    match n.into() {
        1 => format!("1 {one}"),
        n => format!("{} {many}", grouped(n)),
    }
}

/// A read-only view of a job for drivers and reports.
#[derive(Debug, Clone, Copy)]
pub struct JobView<'a> {
    pub id: &'a str,
    pub tenant: &'a str,
    pub kind: JobKind,
    pub accelerators: u32,
    pub submit_s: f64,
    pub state: JobState,
    pub first_start_s: Option<f64>,
    pub finish_s: Option<f64>,
    /// The cluster it runs on or last ran on.
    pub cluster: Option<u32>,
    pub restarts: u32,
    /// Its starts so far: the generation of its current or last run.
    pub generation: u32,
    /// When its current run is predicted to end (a held run's: as if it began at the last pass).
    pub end_s: Option<f64>,
}

#[derive(Debug, Clone)]
struct Run {
    cluster: u32,
    shares: Vec<NodeShare>,
    size: u32,
    start_s: f64,
    /// When progress starts (after the restart cost).
    progress_from: f64,
    /// What the run pays before it makes progress once its work begins (the restart cost).
    setup_s: f64,
    /// Its backend holds it queued: its accelerators are taken but its work has not begun
    /// (a Slurm job still pending), so it makes no progress ([`Scheduler::held`]); or it is
    /// paused.
    held: bool,
    /// Held because its backend stopped its work where it stands ([`Scheduler::paused`]), as
    /// of this time: what it did up to then counts from `progress_from`, both slid forward
    /// together while it stays paused.
    paused_at: Option<f64>,
    /// Fraction of the job per second of computing (no checkpoint overhead).
    rate: f64,
    /// Checkpoint interval (compute seconds between checkpoints); infinite without failures.
    tau: f64,
    end_s: f64,
}

#[derive(Debug, Clone)]
struct Replica {
    cluster: u32,
    shares: Vec<NodeShare>,
    start_s: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Why {
    NotTried,
    NoCapacity {
        need: u32,
    },
    /// `for_order`: the submission order of `for_job`, which tells whether the handle still
    /// names that job (see [`Scheduler::release`]).
    Reserved {
        for_job: JobIdx,
        for_order: u64,
        shadow_s: f64,
    },
    Quota(QuotaHit),
    WaitingFaster {
        best: u32,
        slowdown: f64,
    },
    /// Re-queued: first in line at its priority. `need`: accelerators it has since waited
    /// for (no cluster it accepts has them free).
    AfterFailure {
        lost_s: f64,
        need: Option<u32>,
        /// A node failed under it (otherwise its own work failed: a process exited non-zero).
        node: bool,
    },
    AfterPreemption {
        need: Option<u32>,
    },
}

#[derive(Debug, Clone)]
struct Job {
    id: Box<str>,
    tenant: u32,
    kind: JobKind,
    priority: i32,
    submit_s: f64,
    size: u32,
    min_size: u32,
    /// Inference: replica range and wanted count.
    replica_range: (u32, u32),
    target_replicas: u32,
    /// Seconds on each cluster at full size; `None` where the job cannot run.
    dur: Box<[Option<f64>]>,
    state: JobState,
    /// Fraction of the work kept (checkpointed or finished).
    done: f64,
    generation: u32,
    run: Option<Run>,
    replicas: Vec<Replica>,
    why: Why,
    key: Option<(u32, Key)>,
    first_start_s: Option<f64>,
    finish_s: Option<f64>,
    last_cluster: Option<u32>,
    restarts: u32,
    /// Failures in a row that found no progress kept since the one before (training).
    stalled: u32,
    urgent: bool,
    /// It ran under an earlier scheduling leader: its first start here is a restart (its
    /// backend may still take the running work over: [`Scheduler::continued`]).
    ran_before: bool,
    /// It started (under `switchyard`) after starving: the yield rule leaves its runs alone,
    /// or a week's wait would end in a restart behind the next shorter job, and again.
    starved: bool,
    /// Submissions before this one (ties in the queue go to the earlier submission).
    order: u64,
}

/// A queue position: policy rank, then a policy value (submission time or predicted remaining
/// time), then submission order — not the handle, which [`Scheduler::release`] lets a later
/// submission reuse — and the handle itself.
type Key = (i64, u64, u64, JobIdx);

/// A team's lowest cap and its organisation's where they bind ([`Scheduler::caps_of`]).
struct Caps<'a> {
    team: u64,
    org: u64,
    org_name: &'a str,
}

impl Caps<'_> {
    /// The lower of the two: the most the team may hold where they bind.
    fn lowest(&self) -> u64 {
        self.team.min(self.org)
    }
}

#[derive(Debug, Clone)]
struct QuotaRule {
    cluster: Option<u32>,
    /// Guaranteed accelerators.
    guaranteed: u64,
    /// Hard cap: guarantee plus borrowing limit; `None` = may borrow without limit.
    cap: Option<u64>,
}

/// The quota rule a placement would break: its team's or its organisation's, on one cluster or
/// fleet-wide, and its cap.
#[derive(Debug, Clone, Copy, PartialEq)]
struct QuotaHit {
    org: bool,
    cluster: Option<u32>,
    cap: u64,
}

#[derive(Debug, Clone)]
struct Tenant {
    name: String,
    org: u32,
    weight: f64,
    share: f64,
    rules: Vec<QuotaRule>,
    usage: Vec<u64>,
    usage_total: u64,
}

#[derive(Debug, Clone)]
struct Org {
    name: String,
    weight: f64,
    rules: Vec<QuotaRule>,
    usage: Vec<u64>,
    usage_total: u64,
}

/// Runs chosen for preemption on one cluster: what they free, node by node, and what each
/// team gives back. A run that may go only as capacity its team borrows is admitted against
/// what its team already gives back, so victims taken together never cut a team below a
/// guarantee that each alone would leave intact (the team would reclaim it at once, and the
/// two rules would hand the accelerators back and forth).
#[derive(Debug)]
struct Taken {
    cluster: u32,
    victims: Vec<(u64, JobIdx)>,
    accelerators: u64,
    released: BTreeMap<u32, u32>,
    given_back: Vec<u64>,
}

impl Taken {
    fn new(s: &Scheduler, cluster: u32) -> Self {
        Taken {
            cluster,
            victims: Vec::new(),
            accelerators: 0,
            released: BTreeMap::new(),
            given_back: vec![0; s.tenants.len()],
        }
    }

    fn has(&self, v: JobIdx) -> bool {
        self.victims.iter().any(|x| x.1 == v)
    }

    /// Whether run `v` (`size` accelerators) may be taken as well; `guarded` when it may go
    /// only as capacity its team borrows.
    fn admits(&self, s: &Scheduler, size: u64, v: JobIdx, guarded: bool) -> bool {
        self.admits_all(s, &[(size, v, guarded)])
    }

    /// Whether every run of `runs` (accelerators, job, guarded) may be taken as well, together.
    fn admits_all(&self, s: &Scheduler, runs: &[(u64, JobIdx, bool)]) -> bool {
        let mut added: Vec<(u32, u64)> = Vec::new();
        runs.iter().all(|&(size, v, guarded)| {
            let tenant = s.jobs[v as usize].tenant;
            let team = match added.iter_mut().find(|a| a.0 == tenant) {
                Some(a) => {
                    a.1 += size;
                    a.1
                }
                None => {
                    added.push((tenant, size));
                    size
                }
            };
            !guarded
                || s.keeps_guarantees(
                    tenant,
                    self.cluster,
                    self.given_back[tenant as usize] + team,
                )
        })
    }

    fn take(&mut self, s: &Scheduler, size: u64, v: JobIdx) {
        let job = &s.jobs[v as usize];
        self.victims.push((size, v));
        // Its team gives back all of it; room is made only where nodes are up.
        self.accelerators += s.room_of(self.cluster, v);
        self.given_back[job.tenant as usize] += size;
        if let Some(run) = &job.run {
            add_by_node(&mut self.released, &run.shares);
        }
    }
}

/// Adds `shares` to a count of accelerators per node.
fn add_by_node(by_node: &mut BTreeMap<u32, u32>, shares: &[NodeShare]) {
    for share in shares {
        *by_node.entry(share.node).or_default() += share.accelerators;
    }
}

/// The room that giving back shares on one cluster makes for a gang of `need` accelerators,
/// kept up as shares are added (as [`ClusterIndex::fits_after_release`] judges it, without
/// looking at every share again for each one added).
struct Room<'a> {
    index: &'a ClusterIndex,
    need: u32,
    released: BTreeMap<u32, u32>,
    /// Nodes the shares free entirely, in the order they came free.
    freed: Vec<u32>,
    /// For a gang smaller than a node: the first node that would hold it.
    holding: Option<u32>,
}

impl<'a> Room<'a> {
    fn new(index: &'a ClusterIndex, need: u32) -> Self {
        Self {
            index,
            need,
            released: BTreeMap::new(),
            freed: Vec::new(),
            holding: None,
        }
    }

    fn add(&mut self, shares: &[NodeShare]) {
        let per_node = self.index.per_node();
        for share in shares {
            if self.index.is_down(share.node) {
                continue;
            }
            let back = self.released.entry(share.node).or_default();
            let before = *back;
            *back += share.accelerators;
            let used = self.index.used_on(share.node);
            if before < used && *back >= used {
                self.freed.push(share.node);
            }
            if self.holding.is_none() && per_node - used + (*back).min(used) >= self.need {
                self.holding = Some(share.node);
            }
        }
    }

    fn fits(&self) -> bool {
        let per_node = self.index.per_node();
        if self.index.fits(self.need) {
            true
        } else if self.need < per_node {
            self.holding.is_some()
        } else {
            u64::from(self.index.idle_nodes()) + self.freed.len() as u64
                >= u64::from(self.need.div_ceil(per_node))
        }
    }

    /// The nodes whose shares make the room: the one that holds a gang smaller than a node,
    /// or the first nodes freed whole that a gang of whole nodes needs beside the idle ones.
    fn nodes_that_make_room(&self) -> HashSet<u32> {
        let per_node = self.index.per_node();
        if self.need < per_node {
            self.holding.into_iter().collect()
        } else {
            let short = self
                .need
                .div_ceil(per_node)
                .saturating_sub(self.index.idle_nodes());
            self.freed.iter().copied().take(short as usize).collect()
        }
    }
}

/// Where a replica [`Scheduler::start_replica`] starts comes from, and for whom it moved.
struct ReplicaMove<'a> {
    from: &'a str,
    for_job: &'a str,
}

#[derive(Debug, Clone, Copy)]
struct Reservation {
    job: JobIdx,
    cluster: u32,
    shadow_s: f64,
    extra: u64,
    epoch: u64,
    /// Free accelerators on its cluster, and the count of releases, when it was made: once
    /// anything starts there (a backfilled job takes some of `extra`) or ends anywhere, it is
    /// made again.
    free_then: u64,
    released_then: u64,
}

/// The scheduler: one value holding the fleet's state; see the crate docs.
#[derive(Debug, Clone)]
pub struct Scheduler {
    cfg: Config,
    clusters: Vec<Cluster>,
    index: Vec<ClusterIndex>,
    occupants: Vec<Vec<Vec<(JobIdx, u32)>>>,
    /// Running gangs per cluster by (expected end, submission order, handle).
    ends: Vec<BTreeSet<(u64, u64, JobIdx)>>,
    /// Running gangs per cluster by (priority, submission order, handle).
    running_on: Vec<BTreeSet<(i32, u64, JobIdx)>>,
    stats: Vec<ClusterStats>,
    rates: RateModel,
    jobs: Vec<Job>,
    tenants: Vec<Tenant>,
    orgs: Vec<Org>,
    tenant_by_name: HashMap<String, u32>,
    queues: Vec<BTreeSet<Key>>,
    /// Active inference services by (submission order, handle): earlier services are served
    /// first.
    services: BTreeSet<(u64, JobIdx)>,
    pending: u64,
    running: u64,
    epoch: u64,
    reservation: Option<Reservation>,
    decisions: u64,
    max_cluster: u64,
    /// Bumped whenever accelerators are given back (a job stops, a node is repaired).
    released: u64,
    /// `released` as of the last full pass and the last migration check.
    last_full_pass: u64,
    last_upgrade: u64,
    /// Whether the last full pass held a reservation.
    reserved_last_pass: bool,
    /// The earliest time a job refused for a reason that lapses with time alone (it waits
    /// for faster hardware for at most its best run time; under `switchyard` it starves after
    /// a while) may start or reserve: from then the jobs are looked at again in a full pass,
    /// though nothing was given back.
    recheck_at: f64,
    /// Jobs queued since the last pass.
    fresh: Vec<JobIdx>,
    /// Gangs that were running under an earlier scheduler ([`Scheduler::recovered`]): the next
    /// pass tries them before anything else, services included.
    recovered: Vec<JobIdx>,
    /// Where recovered gangs ran ([`Scheduler::recovered_at`]), for the next pass.
    recovered_on: HashMap<JobIdx, (u32, Vec<NodeShare>)>,
    /// Where recovered services' replicas served ([`Scheduler::recovered_replicas_at`]), for
    /// the next pass.
    recovered_replicas: HashMap<JobIdx, Vec<(u32, Vec<NodeShare>)>>,
    /// Jobs whose run was [`Scheduler::held`] (some may have begun or ended since): each pass
    /// moves a held run's predicted end to "as if it began now".
    held_runs: BTreeSet<JobIdx>,
    /// Slots of ended jobs given back with [`Self::release`], for the next submissions.
    free_slots: Vec<JobIdx>,
    /// Submissions so far.
    submitted: u64,
    /// Per cluster, the hosts behind node slots that a backend named ([`Scheduler::name_node`]):
    /// messages name a node by its host where known, by its slot otherwise.
    node_names: Vec<HashMap<u32, String>>,
}

const NO_REPLICA: u32 = u32::MAX;

/// A replica placed on at most this many nodes names them in its reason; a larger one only
/// counts them (its events would otherwise carry a list as long as the replica).
const NAMED_REPLICA_NODES: usize = 8;

/// "node" or "nodes", for `n` of them.
fn node_noun(n: usize) -> &'static str {
    if n == 1 { "node" } else { "nodes" }
}

/// Expected attempts beyond which a batch job (no checkpoints) is failed when a node failure
/// hits it: it would practically never finish ([`Scheduler::batch_beyond_hope`]).
const HOPELESS_BATCH_ATTEMPTS: f64 = 1000.0;

fn bits(x: f64) -> u64 {
    if x.is_nan() || x <= 0.0 {
        0
    } else {
        x.to_bits()
    }
}

impl Scheduler {
    pub fn new(fleet: &Fleet, throughputs: ThroughputTable, cfg: Config) -> Self {
        let clusters = fleet.clusters.clone();
        let index: Vec<ClusterIndex> = clusters.iter().map(ClusterIndex::new).collect();
        let occupants = index
            .iter()
            .map(|i| vec![Vec::new(); i.nodes() as usize])
            .collect();
        let n = clusters.len();
        let cluster_id = |name: &str| {
            clusters
                .iter()
                .position(|c| c.name == name)
                .map(|i| i as u32)
        };
        let rules = |quotas: &[switchyard_core::fleet::Quota]| -> Vec<QuotaRule> {
            quotas
                .iter()
                .filter_map(|q| {
                    let cluster = match &q.cluster {
                        Some(name) => Some(cluster_id(name)?),
                        None => None,
                    };
                    Some(QuotaRule {
                        cluster,
                        guaranteed: q.accelerators,
                        cap: q.borrowing_limit.map(|b| q.accelerators + b),
                    })
                })
                .collect()
        };
        let mut orgs = Vec::new();
        let mut tenants = Vec::new();
        let mut tenant_by_name = HashMap::new();
        for org in &fleet.tenants {
            let o = orgs.len() as u32;
            orgs.push(Org {
                name: org.name.clone(),
                weight: org.weight.max(0.0),
                rules: rules(&org.quotas),
                usage: vec![0; n],
                usage_total: 0,
            });
            for team in &org.teams {
                tenant_by_name.insert(team.name.clone(), tenants.len() as u32);
                tenants.push(Tenant {
                    name: team.name.clone(),
                    org: o,
                    weight: team.weight.max(0.0),
                    share: 0.0,
                    rules: rules(&team.quotas),
                    usage: vec![0; n],
                    usage_total: 0,
                });
            }
        }
        let max_cluster = index.iter().map(ClusterIndex::capacity).max().unwrap_or(0);
        let mut s = Self {
            ends: vec![BTreeSet::new(); n],
            running_on: vec![BTreeSet::new(); n],
            stats: vec![ClusterStats::default(); n],
            cfg,
            clusters,
            index,
            occupants,
            rates: RateModel::new(throughputs),
            jobs: Vec::new(),
            tenants,
            orgs,
            tenant_by_name,
            queues: vec![BTreeSet::new()],
            services: BTreeSet::new(),
            pending: 0,
            running: 0,
            epoch: 0,
            reservation: None,
            decisions: 0,
            max_cluster,
            released: 1,
            last_full_pass: 0,
            last_upgrade: 0,
            reserved_last_pass: false,
            recheck_at: f64::INFINITY,
            fresh: Vec::new(),
            recovered: Vec::new(),
            recovered_on: HashMap::new(),
            recovered_replicas: HashMap::new(),
            held_runs: BTreeSet::new(),
            free_slots: Vec::new(),
            submitted: 0,
            node_names: vec![HashMap::new(); n],
        };
        s.recompute_shares();
        s.queues = vec![BTreeSet::new(); s.tenants.len().max(1)];
        s
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Node `node` of `cluster` is the host `name` (a node agent registered on it, Slurm calls
    /// it so): the scheduler's messages name it so from now on. Nothing else changes.
    pub fn name_node(&mut self, cluster: u32, node: u32, name: &str) {
        let Some(names) = self.node_names.get_mut(cluster as usize) else {
            return;
        };
        if self.index[cluster as usize].nodes() > node
            && names.get(&node).map(String::as_str) != Some(name)
        {
            names.insert(node, name.to_owned());
        }
    }

    /// "node gpu-7 of NAME", "nodes gpu-7, gpu-9 of NAME"; slots stand in for hosts no backend
    /// named ("node 3 of NAME").
    fn nodes_of(&self, cluster: u32, nodes: &[u32]) -> String {
        let c = cluster as usize;
        let what = node_noun(nodes.len());
        format!(
            "{what} {} of {}",
            self.node_list(c, nodes),
            self.clusters[c].name
        )
    }

    /// "gpu-7, 3, gpu-9": each node's host where named, else its slot.
    fn node_list(&self, c: usize, nodes: &[u32]) -> String {
        nodes
            .iter()
            .map(|n| match self.node_names[c].get(n) {
                Some(name) => name.clone(),
                None => n.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn clusters(&self) -> &[Cluster] {
        &self.clusters
    }

    pub fn cluster_index(&self, cluster: u32) -> &ClusterIndex {
        &self.index[cluster as usize]
    }

    pub fn stats(&self) -> &[ClusterStats] {
        &self.stats
    }

    /// Decisions taken so far.
    pub fn decisions(&self) -> u64 {
        self.decisions
    }

    pub fn pending_jobs(&self) -> u64 {
        self.pending
    }

    pub fn running_jobs(&self) -> u64 {
        self.running
    }

    pub fn job_count(&self) -> usize {
        self.jobs.len()
    }

    /// Accelerators run `v`'s gang holds on nodes of `cluster` that are up: the room stopping
    /// it makes (none on drained nodes).
    fn room_of(&self, cluster: u32, v: JobIdx) -> u64 {
        let index = &self.index[cluster as usize];
        self.jobs[v as usize].run.as_ref().map_or(0, |r| {
            if index.drained_nodes() == 0 {
                // (A failed node's runs are gone from it at once.)
                return u64::from(r.size);
            }
            r.shares
                .iter()
                .filter(|s| !index.is_down(s.node))
                .map(|s| u64::from(s.accelerators))
                .sum()
        })
    }

    /// Accelerators allocated right now on `cluster` (drained nodes' included).
    pub fn busy(&self, cluster: u32) -> u64 {
        self.index[cluster as usize].allocated()
    }

    pub fn job(&self, job: JobIdx) -> JobView<'_> {
        let j = &self.jobs[job as usize];
        JobView {
            id: &j.id,
            tenant: &self.tenants[j.tenant as usize].name,
            kind: j.kind,
            accelerators: j.size,
            submit_s: j.submit_s,
            state: j.state,
            first_start_s: j.first_start_s,
            finish_s: j.finish_s,
            cluster: j.run.as_ref().map(|r| r.cluster).or(j.last_cluster),
            restarts: j.restarts,
            generation: j.generation,
            end_s: j.run.as_ref().map(|r| r.end_s),
        }
    }

    /// Accelerator-seconds of the allocations still open at `now` (running gangs and
    /// replicas, from their start), per cluster: `(busy, kept)` as [`ClusterStats`] would book
    /// them were they closed now without warning. A training run keeps what its last
    /// checkpoint holds, a batch job nothing until it finishes, a replica all its time.
    pub fn open_accel_s(&self, now: f64) -> Vec<(f64, f64)> {
        let mut out = vec![(0.0, 0.0); self.clusters.len()];
        for (i, j) in self.jobs.iter().enumerate() {
            if let Some(r) = &j.run {
                let size = f64::from(r.size);
                let kept = if j.kind == JobKind::Training {
                    self.kept_and_lost(now, i as JobIdx, r, false, false).0
                } else {
                    0.0
                };
                let o = &mut out[r.cluster as usize];
                o.0 += (now - r.start_s).max(0.0) * size;
                o.1 += kept * size;
            }
            for rep in &j.replicas {
                let t = (now - rep.start_s).max(0.0) * f64::from(j.size);
                let o = &mut out[rep.cluster as usize];
                o.0 += t;
                o.1 += t;
            }
        }
        out
    }

    fn recompute_shares(&mut self) {
        let org_total: f64 = self.orgs.iter().map(|o| o.weight).sum();
        // Linear in the teams: traces that name thousands of users add a team per user.
        let mut team_totals = vec![0.0; self.orgs.len()];
        for x in &self.tenants {
            team_totals[x.org as usize] += x.weight;
        }
        for t in 0..self.tenants.len() {
            let org = self.tenants[t].org as usize;
            let team_total = team_totals[org];
            let org_share = if org_total > 0.0 {
                self.orgs[org].weight / org_total
            } else {
                1.0
            };
            let team_share = if team_total > 0.0 {
                self.tenants[t].weight / team_total
            } else {
                1.0
            };
            self.tenants[t].share = (org_share * team_share).max(1e-9);
        }
    }

    fn tenant_for(&mut self, name: &str) -> u32 {
        if let Some(&t) = self.tenant_by_name.get(name) {
            return t;
        }
        // A team the fleet does not list (public traces name their own users or virtual
        // clusters): weight 1 in one organisation of such teams, no quota.
        let org = match self.orgs.iter().position(|o| o.weight.is_nan()) {
            Some(o) => o as u32,
            None => {
                self.orgs.push(Org {
                    name: String::new(),
                    weight: f64::NAN,
                    rules: Vec::new(),
                    usage: vec![0; self.clusters.len()],
                    usage_total: 0,
                });
                (self.orgs.len() - 1) as u32
            }
        };
        let t = self.tenants.len() as u32;
        self.tenants.push(Tenant {
            name: name.to_owned(),
            org,
            weight: 1.0,
            share: 0.0,
            rules: Vec::new(),
            usage: vec![0; self.clusters.len()],
            usage_total: 0,
        });
        self.tenant_by_name.insert(name.to_owned(), t);
        // The organisation of unlisted teams weighs as much as an average listed one.
        let listed: Vec<f64> = self
            .orgs
            .iter()
            .map(|o| o.weight)
            .filter(|w| !w.is_nan())
            .collect();
        let mean = if listed.is_empty() {
            1.0
        } else {
            listed.iter().sum::<f64>() / listed.len() as f64
        };
        let saved = self.orgs[org as usize].weight;
        self.orgs[org as usize].weight = mean;
        self.recompute_shares();
        self.orgs[org as usize].weight = saved;
        if self.queues.len() < self.tenants.len() {
            self.queues.resize(self.tenants.len(), BTreeSet::new());
        }
        t
    }

    /// Checks a job against the fleet without submitting it: `Err` says why it can never run.
    pub fn validate(&mut self, spec: &JobSpec) -> Result<(), String> {
        if matches!(spec.work, Work::Open) && spec.kind != JobKind::Inference {
            return Err(format!(
                "has work = open, which is for inference services; a {} job needs a duration or \
                 an amount of work",
                spec.kind.as_str()
            ));
        }
        if spec.kind == JobKind::Inference && !matches!(spec.work, Work::Open) {
            return Err(
                "is an inference service with an end: a service runs until it is cancelled (work \
                 = open, no duration); finite inference work, such as offline scoring, is a \
                 batch job"
                    .into(),
            );
        }
        let (dur, reason) = self.durations(spec);
        if dur.iter().any(Option::is_some) {
            Ok(())
        } else {
            Err(reason)
        }
    }

    fn durations(&mut self, spec: &JobSpec) -> (Box<[Option<f64>]>, String) {
        let mut why = String::new();
        let mut endless = false;
        let min_size = spec.min_accelerators.unwrap_or(spec.accelerators).max(1);
        let mut dur = Vec::with_capacity(self.clusters.len());
        for (i, c) in self.clusters.iter().enumerate() {
            let ok_cluster = spec.clusters.is_empty() || spec.clusters.contains(&c.name);
            let ok_type = spec.accelerator_types.is_empty()
                || spec
                    .accelerator_types
                    .iter()
                    .any(|t| c.accelerator.matches(t));
            let fits = u64::from(min_size) <= self.index[i].capacity()
                && u64::from(min_size) <= self.quota_cap(&spec.tenant, i as u32);
            let d = if ok_cluster && ok_type && fits && spec.accelerators > 0 {
                self.rates.duration_s(spec, i, c)
            } else {
                None
            };
            // Finite work taking an infinite (or NaN) time, or longer than any fleet lasts: a
            // rate of (almost) nothing there; the job could never finish. (Open work, a
            // service's, is endless by design.)
            let d = if !matches!(spec.work, Work::Open)
                && d.is_some_and(|d| !d.is_finite() || d > LONGEST_RUN_S)
            {
                endless = true;
                None
            } else {
                d
            };
            dur.push(d);
        }
        if dur.iter().all(Option::is_none) {
            // The clusters it accepts by name and accelerator type, whatever their size.
            let accepted: Vec<usize> = self
                .clusters
                .iter()
                .enumerate()
                .filter(|(_, c)| {
                    (spec.clusters.is_empty() || spec.clusters.contains(&c.name))
                        && (spec.accelerator_types.is_empty()
                            || spec
                                .accelerator_types
                                .iter()
                                .any(|t| c.accelerator.matches(t)))
                })
                .map(|(i, _)| i)
                .collect();
            why = if spec.accelerators == 0 {
                "asks for 0 accelerators".into()
            } else if endless {
                "would take forever (more than a century wherever it could run) at the duration \
                 or throughput given for it"
                    .into()
            } else if u64::from(min_size) > self.max_cluster {
                format!(
                    "needs {} accelerators but the largest cluster has {}; {} is never split across clusters",
                    grouped(min_size.into()),
                    grouped(self.max_cluster),
                    unsplit(spec.kind)
                )
            } else if (0..self.clusters.len() as u32)
                .all(|c| u64::from(min_size) > self.quota_cap(&spec.tenant, c))
            {
                let all: Vec<usize> = (0..self.clusters.len()).collect();
                format!(
                    "needs {} accelerators, more than {} (quota plus borrowing limit) \
                     allows on any cluster",
                    grouped(min_size.into()),
                    self.whose_caps(&spec.tenant, &all, u64::from(min_size))
                )
            } else if !spec.clusters.is_empty()
                && !spec
                    .clusters
                    .iter()
                    .any(|n| self.clusters.iter().any(|c| c.name == *n))
            {
                format!(
                    "names no cluster of this fleet ({})",
                    spec.clusters.join(", ")
                )
            } else if !spec.accelerator_types.is_empty()
                && !self.clusters.iter().any(|c| {
                    spec.accelerator_types
                        .iter()
                        .any(|t| c.accelerator.matches(t))
                })
            {
                let mut have: Vec<&str> =
                    self.clusters.iter().map(|c| c.accelerator.name).collect();
                have.sort_unstable();
                have.dedup();
                format!(
                    "asks for {} but no cluster of this fleet has that accelerator (it has {})",
                    spec.accelerator_types.join(" or "),
                    have.join(", ")
                )
            } else if !spec.clusters.is_empty()
                && !spec.accelerator_types.is_empty()
                && !self.clusters.iter().any(|c| {
                    spec.clusters.contains(&c.name)
                        && spec
                            .accelerator_types
                            .iter()
                            .any(|t| c.accelerator.matches(t))
                })
            {
                format!(
                    "asks for {} on {}, which {} none",
                    spec.accelerator_types.join(" or "),
                    spec.clusters.join(", "),
                    if spec.clusters.len() == 1 {
                        "has"
                    } else {
                        "have"
                    }
                )
            } else if let Some((largest, capacity)) = accepted
                .iter()
                .map(|&i| (self.clusters[i].name.as_str(), self.index[i].capacity()))
                .max_by_key(|&(_, capacity)| capacity)
                .filter(|&(_, capacity)| u64::from(min_size) > capacity)
            {
                format!(
                    "needs {} accelerators but the largest cluster it accepts ({largest}) \
                     has {}; {} is never split across clusters",
                    grouped(min_size.into()),
                    grouped(capacity),
                    unsplit(spec.kind)
                )
            } else if !accepted.is_empty()
                && accepted
                    .iter()
                    .all(|&i| u64::from(min_size) > self.quota_cap(&spec.tenant, i as u32))
            {
                format!(
                    "needs {} accelerators, more than {} (quota plus borrowing limit) \
                     allows on any cluster it accepts",
                    grouped(min_size.into()),
                    self.whose_caps(&spec.tenant, &accepted, u64::from(min_size))
                )
            } else if let Work::Amount { profile, .. } = &spec.work {
                let preset = switchyard_perf::ModelSpec::preset(profile).is_some();
                if preset && spec.accelerators > switchyard_perf::MAX_SIZE {
                    format!(
                        "asks for {} accelerators, more than the {} the performance model \
                         rates work for (model {profile})",
                        grouped(spec.accelerators.into()),
                        grouped(switchyard_perf::MAX_SIZE.into())
                    )
                } else if preset {
                    format!(
                        "fits on no cluster it accepts: on {} accelerators the performance model \
                         finds no layout of model {profile} that fits in memory there, and the \
                         throughput table gives none of them a rate for it",
                        grouped(spec.accelerators.into())
                    )
                } else {
                    format!(
                        "fits on no cluster it accepts: its profile \"{profile}\" is no \
                         performance-model preset, and the throughput table gives it no rate \
                         above zero on any of them"
                    )
                }
            } else {
                "fits on no cluster it accepts that says how fast it runs there".into()
            };
        } else if let Some(r) = spec
            .replicas
            .as_ref()
            .filter(|_| spec.kind == JobKind::Inference)
        {
            // Its fewest replicas must fit at once, each whole within one cluster, within the
            // caps on each cluster and, all together, within the fleet-wide ones. Replicas pack
            // as placement packs them: several to a node when smaller than one, else each on
            // whole nodes of its own (a 12-accelerator replica takes two nodes of 8).
            let size = u64::from(spec.accelerators.max(1));
            let per_cluster: u64 = dur
                .iter()
                .enumerate()
                .filter(|(_, d)| d.is_some())
                .map(|(i, _)| {
                    let within_cap = self.quota_cap(&spec.tenant, i as u32) / size;
                    let index = &self.index[i];
                    let (nodes, per_node) =
                        (u64::from(index.nodes()), u64::from(index.per_node().max(1)));
                    let packed = if size < per_node {
                        nodes * (per_node / size)
                    } else {
                        nodes / size.div_ceil(per_node)
                    };
                    packed.min(within_cap)
                })
                .sum();
            let fleet_wide = self.caps_of(&spec.tenant, None);
            let room = per_cluster.min(fleet_wide.lowest() / size);
            if u64::from(r.min) > room {
                why = format!(
                    "needs at least {} of {} accelerators, but the clusters it accepts \
                     hold at most {} (within its team's and its organisation's quota caps)",
                    count(r.min, "replica", "replicas"),
                    grouped(size),
                    count(room, "such replica", "such replicas"),
                );
                dur.iter_mut().for_each(|d| *d = None);
            }
        }
        (dur.into_boxed_slice(), why)
    }

    /// The most accelerators a team may ever hold on `cluster` under its and its
    /// organisation's quota caps (`u64::MAX` without caps).
    fn quota_cap(&self, team: &str, cluster: u32) -> u64 {
        self.caps_of(team, Some(cluster)).lowest()
    }

    /// The lowest caps of `team`'s own rules and of its organisation's that bind on `cluster`
    /// (fleet-wide rules included), or fleet-wide only (`None`); `u64::MAX` where none does.
    fn caps_of(&self, team: &str, cluster: Option<u32>) -> Caps<'_> {
        match self.tenant_by_name.get(team) {
            Some(&t) => self.caps_of_team(t, cluster),
            None => Caps {
                team: u64::MAX,
                org: u64::MAX,
                org_name: "",
            },
        }
    }

    /// [`Self::caps_of`] for the team at index `t`.
    fn caps_of_team(&self, t: u32, cluster: Option<u32>) -> Caps<'_> {
        let t = &self.tenants[t as usize];
        let o = &self.orgs[t.org as usize];
        let lowest = |rules: &[QuotaRule]| {
            rules
                .iter()
                .filter(|r| r.cluster.is_none() || r.cluster == cluster)
                .filter_map(|r| r.cap)
                .min()
                .unwrap_or(u64::MAX)
        };
        Caps {
            team: lowest(&t.rules),
            org: lowest(&o.rules),
            org_name: &o.name,
        }
    }

    /// Whose caps `min_size` accelerators break on every one of `clusters`: "team T's quota
    /// cap", "organisation O's quota cap", or both (each binds somewhere).
    fn whose_caps(&self, team: &str, clusters: &[usize], min_size: u64) -> String {
        let (mut by_team, mut by_org, mut org_name) = (false, false, "");
        for &c in clusters {
            let caps = self.caps_of(team, Some(c as u32));
            org_name = caps.org_name;
            by_team |= min_size > caps.team;
            by_org |= min_size > caps.org && caps.org < caps.team;
        }
        match (by_team, by_org) {
            (false, true) => format!("organisation {org_name}'s quota cap"),
            (true, true) => format!("team {team}'s and organisation {org_name}'s quota caps"),
            _ => format!("team {team}'s quota cap"),
        }
    }

    fn key(&self, j: JobIdx) -> (u32, Key) {
        let job = &self.jobs[j as usize];
        let slot = if self.cfg.policy.per_tenant() {
            job.tenant
        } else {
            0
        };
        let urgent = i64::from(job.urgent);
        let prio = -(i64::from(job.priority)) * 2 - urgent;
        let key = match self.cfg.policy {
            Policy::Fifo => (-urgent, bits(job.submit_s), job.order, j),
            Policy::Priority | Policy::Fair => (prio, bits(job.submit_s), job.order, j),
            Policy::Switchyard => (prio, bits(self.best_remaining(j)), job.order, j),
        };
        (slot, key)
    }

    fn best_remaining(&self, j: JobIdx) -> f64 {
        let job = &self.jobs[j as usize];
        let best = job
            .dur
            .iter()
            .flatten()
            .copied()
            .fold(f64::INFINITY, f64::min);
        best * (1.0 - job.done)
    }

    fn enqueue(&mut self, j: JobIdx) {
        let (slot, key) = self.key(j);
        self.queues[slot as usize].insert(key);
        let job = &mut self.jobs[j as usize];
        job.key = Some((slot, key));
        job.state = JobState::Pending;
        self.pending += 1;
        self.fresh.push(j);
    }

    fn dequeue(&mut self, j: JobIdx) {
        if let Some((slot, key)) = self.jobs[j as usize].key.take() {
            self.queues[slot as usize].remove(&key);
            self.pending -= 1;
        }
    }

    fn emit(&mut self, out: &mut Vec<Decision>, at_s: f64, action: Action, reason: String) {
        self.decisions += 1;
        out.push(Decision {
            at_s,
            action,
            reason,
        });
    }

    /// Applies one event. Decisions it forces (a restart after a failure, a rejection) are
    /// appended to `out`; placing work waits for [`Self::schedule`].
    pub fn handle(&mut self, now: f64, event: Event, out: &mut Vec<Decision>) -> Option<JobIdx> {
        match event {
            Event::Submit(spec) => return Some(self.submit(now, *spec, out)),
            Event::Finished { job, generation } => self.finished(now, job, generation, out),
            Event::NodeFailed { cluster, node } => self.nodes_failed(now, cluster, &[node], out),
            Event::NodesFailed { cluster, nodes } => self.nodes_failed(now, cluster, &nodes, out),
            Event::NodesDrained { cluster, nodes } => self.nodes_drained(cluster, &nodes),
            Event::NodeRepaired { cluster, node } => {
                if let Some(i) = self.index.get_mut(cluster as usize)
                    && node < i.nodes()
                {
                    i.set_down(node, false);
                    self.epoch += 1;
                    self.released += 1;
                }
            }
            Event::Scale { job, replicas } => {
                if let Some(j) = self.jobs.get_mut(job as usize)
                    && j.kind == JobKind::Inference
                    && matches!(j.state, JobState::Pending | JobState::Running)
                {
                    j.target_replicas = replicas.clamp(j.replica_range.0, j.replica_range.1);
                }
            }
            Event::Cancel { job } => self.cancel(now, job, out),
            Event::Failed {
                job,
                generation,
                retry,
                reason,
            } => self.failed(now, job, generation, retry, reason, out),
        }
        None
    }

    /// Gives an ended job's slot back: a later submission may get its handle, so memory follows
    /// the jobs still pending or running rather than every job ever submitted (a control plane
    /// runs for months; a simulation, which reports on every job at the end, never calls
    /// this). The caller must not use the handle again. Returns `false`, and keeps the job, when
    /// it has not ended.
    pub fn release(&mut self, j: JobIdx) -> bool {
        let Some(job) = self.jobs.get_mut(j as usize) else {
            return false;
        };
        if matches!(job.state, JobState::Pending | JobState::Running)
            || job.run.is_some()
            || !job.replicas.is_empty()
            || job.key.is_some()
            || job.id.is_empty()
        {
            return false;
        }
        job.id = Box::default();
        job.dur = Box::default();
        job.replicas = Vec::new();
        job.why = Why::NotTried;
        let order = job.order;
        self.services.remove(&(order, j));
        self.fresh.retain(|&f| f != j);
        // (A job ended before the first pass after its recovery: its slot's next job is new.)
        self.recovered.retain(|&r| r != j);
        self.recovered_on.remove(&j);
        self.recovered_replicas.remove(&j);
        if self.reservation.is_some_and(|r| r.job == j) {
            self.reservation = None;
        }
        self.free_slots.push(j);
        true
    }

    /// Jobs held, pending, running or ended and not released (the slots in use).
    pub fn held_jobs(&self) -> usize {
        self.jobs.len() - self.free_slots.len()
    }

    fn submit(&mut self, now: f64, spec: JobSpec, out: &mut Vec<Decision>) -> JobIdx {
        let tenant = self.tenant_for(&spec.tenant);
        let (dur, reason) = self.durations(&spec);
        let (lo, hi) = spec
            .replicas
            .as_ref()
            .map_or((1, 1), |r| (r.min, r.max.max(r.min)));
        let inference = spec.kind == JobKind::Inference;
        let wanted = spec.replicas.as_ref().map_or(lo, |r| r.needed_at(now));
        let job = Job {
            id: spec.id.into_boxed_str(),
            tenant,
            kind: spec.kind,
            priority: spec.priority,
            submit_s: spec.submit_s,
            size: spec.accelerators,
            min_size: spec
                .min_accelerators
                .unwrap_or(spec.accelerators)
                .clamp(1, spec.accelerators.max(1)),
            replica_range: (lo, hi),
            target_replicas: if inference { wanted.clamp(lo, hi) } else { 1 },
            dur,
            state: JobState::Pending,
            done: 0.0,
            generation: 0,
            run: None,
            replicas: Vec::new(),
            why: Why::NotTried,
            key: None,
            first_start_s: None,
            finish_s: None,
            last_cluster: None,
            restarts: 0,
            stalled: 0,
            urgent: false,
            ran_before: false,
            starved: false,
            order: self.submitted,
        };
        self.submitted += 1;
        let idx = match self.free_slots.pop() {
            Some(idx) => {
                self.jobs[idx as usize] = job;
                idx
            }
            None => {
                self.jobs.push(job);
                (self.jobs.len() - 1) as JobIdx
            }
        };
        if !reason.is_empty() {
            self.jobs[idx as usize].state = JobState::Rejected;
            self.emit(out, now, Action::Reject { job: idx }, reason);
        } else if inference {
            self.services.insert((self.jobs[idx as usize].order, idx));
        } else {
            self.enqueue(idx);
        }
        idx
    }

    fn charge(&mut self, j: JobIdx, cluster: u32, n: u32, add: bool) {
        let t = self.jobs[j as usize].tenant as usize;
        let o = self.tenants[t].org as usize;
        let n = u64::from(n);
        let c = cluster as usize;
        if add {
            self.tenants[t].usage[c] += n;
            self.tenants[t].usage_total += n;
            self.orgs[o].usage[c] += n;
            self.orgs[o].usage_total += n;
        } else {
            self.tenants[t].usage[c] -= n;
            self.tenants[t].usage_total -= n;
            self.orgs[o].usage[c] -= n;
            self.orgs[o].usage_total -= n;
        }
    }

    /// Whether `n` more accelerators on `cluster` keep the job's team and organisation within
    /// their quota caps; `Err` names the cluster whose cap binds.
    fn quota_ok(&self, j: JobIdx, cluster: u32, n: u32) -> bool {
        self.quota_hit(j, cluster, n).is_none()
    }

    /// How many more accelerators job `j`'s team may take on `cluster` within every cap that
    /// covers it (the team's and its organisation's); `u64::MAX` without a cap.
    fn quota_room(&self, j: JobIdx, cluster: u32) -> u64 {
        let t = &self.tenants[self.jobs[j as usize].tenant as usize];
        let o = &self.orgs[t.org as usize];
        let room = |rules: &[QuotaRule], usage: &[u64], total: u64| {
            rules
                .iter()
                .filter_map(|r| {
                    let cap = r.cap?;
                    match r.cluster {
                        Some(c) if c != cluster => None,
                        Some(c) => Some(cap.saturating_sub(usage[c as usize])),
                        None => Some(cap.saturating_sub(total)),
                    }
                })
                .min()
                .unwrap_or(u64::MAX)
        };
        room(&t.rules, &t.usage, t.usage_total).min(room(&o.rules, &o.usage, o.usage_total))
    }

    /// The first quota rule (the team's, then its organisation's) that `n` more accelerators
    /// of job `j` on `cluster` would break.
    fn quota_hit(&self, j: JobIdx, cluster: u32, n: u32) -> Option<QuotaHit> {
        let t = &self.tenants[self.jobs[j as usize].tenant as usize];
        let o = &self.orgs[t.org as usize];
        let n = u64::from(n);
        let broken = |rules: &[QuotaRule], usage: &[u64], total: u64, org: bool| {
            rules.iter().find_map(|r| {
                let cap = r.cap?;
                let over = match r.cluster {
                    Some(c) => c == cluster && usage[c as usize] + n > cap,
                    None => total + n > cap,
                };
                over.then_some(QuotaHit {
                    org,
                    cluster: r.cluster,
                    cap,
                })
            })
        };
        broken(&t.rules, &t.usage, t.usage_total, false)
            .or_else(|| broken(&o.rules, &o.usage, o.usage_total, true))
    }

    /// Whether team `team` may move `team_moved` accelerators (its organisation
    /// `org_moved`, all its teams' together) onto `cluster` from elsewhere: only the caps on
    /// that cluster count, since a move leaves the fleet-wide totals as they are.
    fn move_within_caps(&self, team: u32, cluster: u32, team_moved: u64, org_moved: u64) -> bool {
        let t = &self.tenants[team as usize];
        let o = &self.orgs[t.org as usize];
        let within = |rules: &[QuotaRule], usage: &[u64], moved: u64| {
            rules.iter().all(|r| match (r.cap, r.cluster) {
                (Some(cap), Some(c)) if c == cluster => usage[c as usize] + moved <= cap,
                _ => true,
            })
        };
        within(&t.rules, &t.usage, team_moved) && within(&o.rules, &o.usage, org_moved)
    }

    /// Whether the job's team is below its guaranteed quota on `cluster` (it may reclaim lent
    /// capacity).
    fn under_guarantee(&self, j: JobIdx, cluster: u32, n: u32) -> bool {
        let t = &self.tenants[self.jobs[j as usize].tenant as usize];
        let n = u64::from(n);
        t.rules.iter().any(|r| match r.cluster {
            Some(c) => c == cluster && t.usage[c as usize] + n <= r.guaranteed,
            None => t.usage_total + n <= r.guaranteed,
        })
    }

    /// Whether running job `j` on `cluster` is capacity its team borrows: taking all of it
    /// back leaves the team at or above every guarantee that covers the cluster (a team with
    /// no quota borrows all it holds). A team over its guarantee by less than the run's size
    /// is not borrowing that run: preempting it would cut into the guarantee, and the team
    /// would reclaim it at once.
    fn borrowing(&self, j: JobIdx, cluster: u32) -> bool {
        let job = &self.jobs[j as usize];
        let size = job.run.as_ref().map_or(0, |r| u64::from(r.size));
        self.keeps_guarantees(job.tenant, cluster, size)
    }

    /// Whether team `tenant` stays at or above every guarantee covering `cluster` after giving
    /// back `removed` accelerators there.
    fn keeps_guarantees(&self, tenant: u32, cluster: u32, removed: u64) -> bool {
        self.guarantees_over(tenant, cluster)
            .all(|(usage, guaranteed)| usage.saturating_sub(removed) >= guaranteed)
    }

    /// The most accelerators team `tenant` could give back on `cluster` and stay at or above
    /// every guarantee covering it (an upper bound of what `keeps_guarantees` allows).
    fn givable(&self, tenant: u32, cluster: u32) -> u64 {
        self.guarantees_over(tenant, cluster)
            .map(|(usage, guaranteed)| usage.saturating_sub(guaranteed))
            .fold(
                self.tenants[tenant as usize].usage[cluster as usize],
                u64::min,
            )
    }

    /// (the team's use, its guarantee) under each of team `tenant`'s quota rules that covers
    /// `cluster` (that cluster's, and the fleet-wide one).
    fn guarantees_over(&self, tenant: u32, cluster: u32) -> impl Iterator<Item = (u64, u64)> + '_ {
        let t = &self.tenants[tenant as usize];
        t.rules
            .iter()
            .filter(move |r| r.cluster.is_none_or(|c| c == cluster))
            .map(|r| {
                let usage = match r.cluster {
                    Some(c) => t.usage[c as usize],
                    None => t.usage_total,
                };
                (usage, r.guaranteed)
            })
    }

    /// Frees room for `j`, whose team is below its guarantee on a cluster, by removing replicas
    /// of other teams' services that those teams borrow there (never cutting a team below its
    /// own guarantee). A service holds on to whatever it was given; without this, one large
    /// service of a team with no hard cap would keep every guarantee it overlaps from being
    /// honoured. The services get the replicas back when room frees up.
    fn reclaim_replicas(
        &mut self,
        now: f64,
        j: JobIdx,
        res: Option<&Reservation>,
        out: &mut Vec<Decision>,
    ) -> bool {
        if self.cfg.policy == Policy::Priority {
            return false;
        }
        let (need_size, tenant) = (self.jobs[j as usize].min_size, self.jobs[j as usize].tenant);
        for c in 0..self.clusters.len() as u32 {
            let Some(short) = self.short_of_room(now, j, c, res) else {
                continue;
            };
            if !self.under_guarantee(j, c, need_size) {
                continue;
            }
            // Other teams' guarantees may leave too little to take whatever their replicas are:
            // then there is no need to look at each replica.
            let givable: u64 = (0..self.tenants.len() as u32)
                .filter(|&t| t != tenant)
                .map(|t| self.givable(t, c))
                .sum();
            if givable < short {
                continue;
            }
            // Accelerators each team has given back so far, by team index. This loop runs for
            // every waiting job a pass cannot place, so the cheap tests come first.
            let mut given_back: Vec<u64> = vec![0; self.tenants.len()];
            let mut chosen: Vec<(JobIdx, usize)> = Vec::new();
            let mut got = 0u64;
            let mut cands = self.replicas_on(now, c, |sj| sj.tenant != tenant);
            self.order_for_room(c, &mut cands);
            // Enough accelerators is not enough room: a gang needs them on nodes it can use
            // (free accelerators scattered over busy nodes do not hold a gang of whole nodes).
            let mut room = Room::new(&self.index[c as usize], need_size);
            for (svc, i) in cands {
                let sj = &self.jobs[svc as usize];
                let size = u64::from(sj.size);
                let back = &mut given_back[sj.tenant as usize];
                if !self.keeps_guarantees(sj.tenant, c, *back + size) {
                    continue;
                }
                *back += size;
                chosen.push((svc, i));
                room.add(&sj.replicas[i].shares);
                got += size;
                if got >= short && room.fits() {
                    break;
                }
            }
            if got < short || !room.fits() {
                continue;
            }
            // Only the replicas on the nodes that make the room go: a node counts as freed (or
            // as holding a small gang) only once every share on it is a chosen replica's, so
            // those replicas free it as all the chosen ones did.
            let needed = room.nodes_that_make_room();
            chosen.retain(|&(svc, i)| {
                self.jobs[svc as usize].replicas[i]
                    .shares
                    .iter()
                    .any(|s| needed.contains(&s.node))
            });
            debug_assert!({
                let mut kept = BTreeMap::new();
                for &(svc, i) in &chosen {
                    add_by_node(&mut kept, &self.jobs[svc as usize].replicas[i].shares);
                }
                self.index[c as usize].fits_after_release(need_size, &kept)
            });
            let cluster_name = self.clusters[c as usize].name.clone();
            // In submission order, highest replica index first, so the indices still to
            // remove stay valid.
            chosen.sort_by_key(|&(svc, i)| (self.jobs[svc as usize].order, std::cmp::Reverse(i)));
            for (svc, i) in chosen {
                let rep = self.jobs[svc as usize].replicas.remove(i);
                let nodes = rep.shares.clone();
                self.release_replica(now, svc, rep);
                if self.jobs[svc as usize].replicas.is_empty() {
                    self.jobs[svc as usize].state = JobState::Pending;
                    self.running -= 1;
                }
                self.epoch += 1;
                self.emit(
                    out,
                    now,
                    Action::RemoveReplica {
                        job: svc,
                        cluster: c,
                        nodes,
                    },
                    format!(
                        "reclaimed for {}: its team is below its guaranteed quota on \
                         {cluster_name}, where this service's team borrows beyond its own",
                        self.other_job_named_for(j, svc)
                    ),
                );
            }
            return true;
        }
        false
    }

    /// How many accelerators `j` is short of on cluster `c`, where room made there would start
    /// it (it accepts the cluster, waits for no faster one and no reservation there, and its
    /// quota lets it in) and it does not fit now; `None` otherwise.
    fn short_of_room(&self, now: f64, j: JobIdx, c: u32, res: Option<&Reservation>) -> Option<u64> {
        let need_size = self.jobs[j as usize].min_size;
        if self.jobs[j as usize].dur[c as usize].is_none()
            || self.would_not_start_there(now, j, c, res)
            || !self.quota_ok(j, c, need_size)
            || self.index[c as usize].fits(need_size)
        {
            return None;
        }
        let need = u64::from(need_size);
        Some(need - self.index[c as usize].free().min(need.saturating_sub(1)))
    }

    /// Replicas on cluster `c` of the services `keep` selects, as (service, replica index),
    /// that could make room now: not started this instant, and not wholly on nodes that are
    /// down or drained (those make no room: they serve on).
    fn replicas_on(&self, now: f64, c: u32, keep: impl Fn(&Job) -> bool) -> Vec<(JobIdx, usize)> {
        let index = &self.index[c as usize];
        let mut out = Vec::new();
        for &(_, svc) in &self.services {
            let sj = &self.jobs[svc as usize];
            if !keep(sj) {
                continue;
            }
            for (i, rep) in sj.replicas.iter().enumerate().rev() {
                if rep.cluster == c
                    && rep.start_s < now
                    && !rep.shares.iter().all(|s| index.is_down(s.node))
                {
                    out.push((svc, i));
                }
            }
        }
        out
    }

    /// Orders replicas `cands` on cluster `c` so that those on nodes they could free whole
    /// (nothing else on them) come first, node by node: taken in this order, the fewest
    /// replicas make room for a gang. Taken in service order instead, a team's allowance
    /// could go to one replica on each of two nodes and free neither.
    fn order_for_room(&self, c: u32, cands: &mut [(JobIdx, usize)]) {
        let index = &self.index[c as usize];
        let mut movable: HashMap<u32, u32> = HashMap::new();
        for &(svc, i) in cands.iter() {
            for s in &self.jobs[svc as usize].replicas[i].shares {
                *movable.entry(s.node).or_default() += s.accelerators;
            }
        }
        let stays = |node: u32| {
            index
                .used_on(node)
                .saturating_sub(movable.get(&node).copied().unwrap_or(0))
        };
        cands.sort_by_cached_key(|&(svc, i)| {
            let shares = &self.jobs[svc as usize].replicas[i].shares;
            (
                shares.iter().map(|s| stays(s.node)).max().unwrap_or(0),
                shares.iter().map(|s| s.node).min().unwrap_or(0),
                self.jobs[svc as usize].order,
                std::cmp::Reverse(i),
            )
        });
    }

    /// Makes room for `j` where only services' replicas keep it out, by moving replicas that
    /// another cluster their service accepts can take now. A gang runs only where it fits
    /// whole, and under `switchyard` services go to the cheapest cluster with room and stay:
    /// without this, a job that accepts only that cluster (or is too large for the others)
    /// would wait for ever behind replicas that could serve as well elsewhere. A replica that
    /// cannot move stays; no service loses a replica for good.
    fn relocate_replicas(
        &mut self,
        now: f64,
        j: JobIdx,
        res: Option<&Reservation>,
        out: &mut Vec<Decision>,
    ) -> bool {
        if self.cfg.policy == Policy::Fifo {
            return false;
        }
        let need_size = self.jobs[j as usize].min_size;
        let clusters = self.clusters.len();
        for c in 0..clusters as u32 {
            let Some(short) = self.short_of_room(now, j, c, res) else {
                continue;
            };
            // Nowhere else has that much room: nothing to look at.
            let elsewhere: u64 = (0..clusters)
                .filter(|&d| d != c as usize)
                .map(|d| self.index[d].free())
                .sum();
            if elsewhere < short {
                continue;
            }
            // Replica sizes promised so far to each other cluster, and accelerators per
            // (team, cluster) and (organisation, cluster) for their caps there.
            let mut promised: Vec<Vec<u32>> = vec![Vec::new(); clusters];
            let mut to_team: HashMap<(u32, u32), u64> = HashMap::new();
            let mut to_org: HashMap<(u32, u32), u64> = HashMap::new();
            // (service, replica index, where it goes)
            let mut chosen: Vec<(JobIdx, usize, u32)> = Vec::new();
            let mut got = 0u64;
            let mut room = Room::new(&self.index[c as usize], need_size);
            let mut cands = self.replicas_on(now, c, |_| true);
            self.order_for_room(c, &mut cands);
            for (svc, i) in cands {
                let sj = &self.jobs[svc as usize];
                let size = sj.size;
                let team = sj.tenant;
                let org = self.tenants[team as usize].org;
                let takes = |d: usize| {
                    if d == c as usize
                        || sj.dur[d].is_none()
                        // Not onto room a starving job's reservation holds.
                        || res.is_some_and(|r| r.cluster as usize == d && r.job != j)
                    {
                        return false;
                    }
                    let mut sizes = promised[d].clone();
                    sizes.push(size);
                    let team_moved =
                        to_team.get(&(team, d as u32)).copied().unwrap_or(0) + u64::from(size);
                    let org_moved =
                        to_org.get(&(org, d as u32)).copied().unwrap_or(0) + u64::from(size);
                    self.index[d].fits_all(&sizes)
                        && self.move_within_caps(team, d as u32, team_moved, org_moved)
                };
                let score = |d: usize| match self.cfg.policy {
                    Policy::Switchyard => self.clusters[d].price_per_accelerator_hour,
                    _ => {
                        let promised: u64 = promised[d].iter().map(|&s| u64::from(s)).sum();
                        -(self.index[d].free().saturating_sub(promised) as f64)
                    }
                };
                let Some(dest) = (0..clusters)
                    .filter(|&d| takes(d))
                    .min_by(|&a, &b| score(a).total_cmp(&score(b)))
                else {
                    continue;
                };
                promised[dest].push(size);
                *to_team.entry((team, dest as u32)).or_default() += u64::from(size);
                *to_org.entry((org, dest as u32)).or_default() += u64::from(size);
                chosen.push((svc, i, dest as u32));
                room.add(&sj.replicas[i].shares);
                got += u64::from(size);
                if got >= short && room.fits() {
                    break;
                }
            }
            if got < short || !room.fits() {
                continue;
            }
            // Only the replicas on the nodes that make the room move.
            let needed = room.nodes_that_make_room();
            chosen.retain(|&(svc, i, _)| {
                self.jobs[svc as usize].replicas[i]
                    .shares
                    .iter()
                    .any(|s| needed.contains(&s.node))
            });
            let from = self.clusters[c as usize].name.clone();
            // In submission order, highest replica index first, so the indices still to
            // remove stay valid (a moved replica is added at the end).
            chosen
                .sort_by_key(|&(svc, i, _)| (self.jobs[svc as usize].order, std::cmp::Reverse(i)));
            for (svc, i, dest) in chosen {
                let for_job = self.other_job_named_for(j, svc);
                // Started there first: a replica the index finds no room for after all stays
                // where it is, and the service keeps its count either way.
                let moved = ReplicaMove {
                    from: &from,
                    for_job: &for_job,
                };
                if !self.start_replica(now, svc, dest, Some(&moved), out) {
                    continue;
                }
                let rep = self.jobs[svc as usize].replicas.remove(i);
                let nodes = rep.shares.clone();
                self.release_replica(now, svc, rep);
                self.epoch += 1;
                let to = self.clusters[dest as usize].name.clone();
                self.emit(
                    out,
                    now,
                    Action::RemoveReplica {
                        job: svc,
                        cluster: c,
                        nodes,
                    },
                    format!(
                        "moved to {to} to make room for {for_job}, which can start on {from} \
                         only in the room this service's replicas hold there"
                    ),
                );
            }
            return true;
        }
        false
    }

    fn eff_rate(&self, r: &Run) -> f64 {
        if r.tau.is_finite() {
            r.rate * r.tau / (r.tau + self.cfg.checkpoint_s)
        } else {
            r.rate
        }
    }

    /// Rate (fraction of the job per compute second) on `cluster` with `size` accelerators.
    fn rate_on(&self, j: JobIdx, cluster: u32, size: u32) -> Option<f64> {
        let job = &self.jobs[j as usize];
        let d = job.dur[cluster as usize]?;
        if !(d.is_finite()) {
            return None;
        }
        let scale = f64::from(size) / f64::from(job.size.max(1));
        Some(if d <= 0.0 { f64::INFINITY } else { scale / d })
    }

    fn checkpoint_interval(&self, j: JobIdx, cluster: u32, size: u32) -> f64 {
        let job = &self.jobs[j as usize];
        if !self.cfg.failures || job.kind != JobKind::Training {
            return f64::INFINITY;
        }
        let c = &self.clusters[cluster as usize];
        let nodes = size.div_ceil(c.accelerators_per_node.max(1));
        young_daly_interval_s(self.cfg.checkpoint_s, c.node_mtbf_hours, nodes)
    }

    /// How long a training run takes to restart on `cluster`: the cluster's own figure, or
    /// the configured default.
    fn training_restart_s(&self, cluster: u32) -> f64 {
        self.clusters[cluster as usize]
            .restart_s
            .unwrap_or(self.cfg.restart_s)
    }

    /// What (re)starting job `j` on `cluster` costs before it makes progress: nothing for its
    /// first start, unless it ran under an earlier scheduling leader.
    fn restart_cost(&self, j: JobIdx, cluster: u32) -> f64 {
        let job = &self.jobs[j as usize];
        if job.generation == 0 && !job.ran_before {
            return 0.0;
        }
        match job.kind {
            JobKind::Training => self.training_restart_s(cluster),
            JobKind::Batch => self.cfg.batch_restart_s,
            JobKind::Inference => 0.0,
        }
    }

    /// Predicted seconds from now to completion on `cluster` at `size`, including the restart
    /// cost and (for `switchyard`) the expected loss to failures.
    fn predicted_s(&self, j: JobIdx, cluster: u32, size: u32) -> f64 {
        self.predicted_from(j, cluster, size, self.jobs[j as usize].done)
    }

    /// [`Self::predicted_s`] for the work left past the fraction `done`.
    fn predicted_from(&self, j: JobIdx, cluster: u32, size: u32, done: f64) -> f64 {
        let Some(rate) = self.rate_on(j, cluster, size) else {
            return f64::INFINITY;
        };
        let compute = (1.0 - done) / rate;
        let tau = self.checkpoint_interval(j, cluster, size);
        let mut t = self.restart_cost(j, cluster) + compute;
        if tau.is_finite() {
            let c = &self.clusters[cluster as usize];
            let nodes = size.div_ceil(c.accelerators_per_node.max(1));
            let mtbf_s = c.node_mtbf_hours * 3600.0 / f64::from(nodes.max(1));
            // Checkpoint writes, plus per failure half an interval redone and a restart.
            t += compute * self.cfg.checkpoint_s / tau;
            t += compute / mtbf_s * (tau / 2.0 + self.training_restart_s(cluster));
        }
        t
    }

    /// Whether job `j` starves at `now` under `switchyard`: it has waited past
    /// [`Config::starvation_s`] (and twice its best remaining time), and earns a reservation.
    fn starving(&self, j: JobIdx, now: f64) -> bool {
        self.cfg.policy == Policy::Switchyard
            && now - self.jobs[j as usize].submit_s
                > self.cfg.starvation_s.max(2.0 * self.best_remaining(j))
    }

    fn start(
        &mut self,
        now: f64,
        j: JobIdx,
        cluster: u32,
        shares: Vec<NodeShare>,
        why: &str,
        out: &mut Vec<Decision>,
    ) {
        // (From the queue: a run moved or grown is not a job that waited.)
        if self.jobs[j as usize].key.is_some() && self.starving(j, now) {
            self.jobs[j as usize].starved = true;
        }
        self.dequeue(j);
        let size: u32 = shares.iter().map(|s| s.accelerators).sum();
        let rate = self.rate_on(j, cluster, size).unwrap_or(f64::INFINITY);
        let tau = self.checkpoint_interval(j, cluster, size);
        let restart = self.restart_cost(j, cluster);
        for s in &shares {
            self.occupants[cluster as usize][s.node as usize].push((j, NO_REPLICA));
        }
        self.charge(j, cluster, size, true);
        let spread = self.index[cluster as usize].spread(&shares);
        let mut run = Run {
            cluster,
            shares,
            size,
            start_s: now,
            progress_from: now + restart,
            setup_s: restart,
            held: false,
            paused_at: None,
            rate,
            tau,
            end_s: 0.0,
        };
        run.end_s = self.end_of(j, &run);
        let end = run.end_s;
        let job = &self.jobs[j as usize];
        let (priority, order) = (job.priority, job.order);
        let job = &mut self.jobs[j as usize];
        job.generation += 1;
        job.state = JobState::Running;
        job.urgent = false;
        job.first_start_s.get_or_insert(now);
        job.last_cluster = Some(cluster);
        let nodes = run.shares.clone();
        job.run = Some(run);
        job.why = Why::NotTried;
        let generation = job.generation;
        self.ends[cluster as usize].insert((bits(end), order, j));
        self.running_on[cluster as usize].insert((priority, order, j));
        self.running += 1;
        let c = &self.clusters[cluster as usize];
        let mut reason = format!(
            "{why}; {size} {} on {} in {spread}; predicted to finish in {}",
            c.accelerator.name,
            c.name,
            human_s(end - now)
        );
        if tau.is_finite() {
            let _ = write!(
                reason,
                ", checkpointing every {} (Young/Daly)",
                human_s(tau)
            );
        }
        self.emit(
            out,
            now,
            Action::Start {
                job: j,
                cluster,
                accelerators: size,
                generation,
                expected_end_s: end,
                nodes,
            },
            reason,
        );
    }

    /// Takes a running gang off its accelerators. `graceful` (preemption) checkpoints first;
    /// otherwise (failure) progress since the last periodic checkpoint is lost. Returns the
    /// seconds of computing lost.
    fn stop(&mut self, now: f64, j: JobIdx, finished: bool, graceful: bool) -> f64 {
        let Some(run) = self.jobs[j as usize].run.take() else {
            return 0.0;
        };
        let c = run.cluster as usize;
        self.index[c].release(&run.shares);
        self.released += 1;
        for s in &run.shares {
            let occ = &mut self.occupants[c][s.node as usize];
            if let Some(p) = occ.iter().position(|&(x, r)| x == j && r == NO_REPLICA) {
                occ.swap_remove(p);
            }
        }
        self.charge(j, run.cluster, run.size, false);
        let (priority, order) = (self.jobs[j as usize].priority, self.jobs[j as usize].order);
        self.ends[c].remove(&(bits(run.end_s), order, j));
        self.running_on[c].remove(&(priority, order, j));
        self.running -= 1;
        // A run held since the job's first start ends without its work ever beginning (a
        // Slurm job cancelled while it waited): the job has not started yet, and its next run
        // that begins is its first start.
        let job = &mut self.jobs[j as usize];
        if !finished
            && run.held
            && run.paused_at.is_none()
            && job.first_start_s == Some(run.start_s)
        {
            job.first_start_s = None;
        }
        self.settle(now, j, &run, finished, graceful)
    }

    /// Seconds of computing of `run` up to `now` that a stop keeps, and those it loses: all of
    /// it when `finished` or `graceful` (checkpointed first) or without periodic checkpoints;
    /// otherwise what the last periodic checkpoint holds. A batch job keeps nothing.
    fn kept_and_lost(
        &self,
        now: f64,
        j: JobIdx,
        run: &Run,
        finished: bool,
        graceful: bool,
    ) -> (f64, f64) {
        // A suspended job cannot checkpoint on the way out: Slurm kills it outright.
        let graceful = graceful && run.paused_at.is_none();
        let elapsed = match (run.held, run.paused_at) {
            (false, _) => (now - run.progress_from).max(0.0),
            (true, Some(paused_at)) => (paused_at - run.progress_from).max(0.0),
            (true, None) => 0.0,
        };
        let kind = self.jobs[j as usize].kind;
        if finished {
            let kept = (1.0 - self.jobs[j as usize].done) / run.rate;
            (if kept.is_finite() { kept } else { 0.0 }, 0.0)
        } else if kind == JobKind::Batch {
            (0.0, elapsed + self.jobs[j as usize].done / run.rate)
        } else if graceful || !run.tau.is_finite() {
            let eff = self.eff_rate(run);
            (elapsed * eff / run.rate, 0.0)
        } else {
            let period = run.tau + self.cfg.checkpoint_s;
            let k = (elapsed / period).floor();
            (k * run.tau, elapsed - k * period)
        }
    }

    /// The fraction of `job`'s work kept if its run stopped at `now` without warning (a
    /// failure, or the loss of the control plane that drives it): its checkpointed progress.
    /// What a new scheduler [`Scheduler::resume`]s it from.
    pub fn kept_fraction(&self, job: JobIdx, now: f64) -> f64 {
        let j = &self.jobs[job as usize];
        match &j.run {
            Some(run) if j.kind == JobKind::Training => {
                let (kept, _) = self.kept_and_lost(now, job, run, false, false);
                (j.done + kept * run.rate).min(1.0 - 1e-12)
            }
            _ => j.done,
        }
    }

    /// Gives a training run submitted to this scheduler the progress an earlier scheduler
    /// kept for it ([`Scheduler::kept_fraction`]), before it first starts here: it then runs
    /// only what is left, and the policies rank it by that. No-op for other jobs, jobs that
    /// have started here and fractions outside (0, 1).
    pub fn resume(&mut self, job: JobIdx, kept: f64) {
        let Some(j) = self.jobs.get(job as usize) else {
            return;
        };
        if j.kind != JobKind::Training
            || j.state != JobState::Pending
            || j.generation != 0
            || !(kept > 0.0 && kept < 1.0)
        {
            return;
        }
        self.rekey(job, |j| j.done = kept);
    }

    /// Changes what orders `job` in its queue (its progress, its urgency) while it is out of
    /// the queue, so that its place follows.
    fn rekey(&mut self, job: JobIdx, change: impl FnOnce(&mut Job)) {
        let queued = self.jobs[job as usize].key.is_some();
        if queued {
            self.dequeue(job);
        }
        change(&mut self.jobs[job as usize]);
        if queued {
            self.enqueue(job);
        }
    }

    /// Records that `job` first started at `at_s`, under an earlier scheduler (a job recovered
    /// or resumed after a change of leader): its reports then count its queueing up to there,
    /// not up to its start here. No-op once it has a first start.
    pub fn started_before(&mut self, job: JobIdx, at_s: f64) {
        if let Some(j) = self.jobs.get_mut(job as usize)
            && j.first_start_s.is_none()
            && at_s.is_finite()
        {
            j.first_start_s = Some(at_s.max(j.submit_s));
        }
    }

    /// The backend holds `job`'s run of `generation` queued at `now` (its cluster's own queue
    /// keeps it, like a Slurm job still pending): it keeps its accelerators but makes no
    /// progress until [`Scheduler::began`]. `interrupted`: its work had begun and stopped (a
    /// Slurm job lost to the infrastructure and submitted again): what its checkpoints hold is
    /// kept, the rest is lost, and beginning again costs a restart; otherwise it has not begun
    /// since its placement and has made no progress. Its predicted end is as if it began now;
    /// telling it again while it is held only moves that. Returns whether the run is held
    /// (false, and nothing done, for another generation, a job not running, a service).
    pub fn held(&mut self, job: JobIdx, generation: u32, now: f64, interrupted: bool) -> bool {
        let Some(j) = self.jobs.get(job as usize) else {
            return false;
        };
        if j.state != JobState::Running || j.generation != generation {
            return false;
        }
        let Some(mut run) = j.run.clone() else {
            return false;
        };
        let order = j.order;
        if interrupted && (!run.held || run.paused_at.is_some()) {
            // Booked as an unwarned stop, without counting as a stall: its backend goes on.
            // (A paused run loses what it did up to its pause that no checkpoint holds.)
            self.book(now, job, &run, false, false);
            run.start_s = now;
            run.setup_s = self.restart_cost(job, run.cluster);
        } else if run.paused_at.is_some() {
            // Still paused where it stands: it has not lost its work.
            self.held_runs.insert(job);
            return true;
        }
        run.held = true;
        run.paused_at = None;
        self.progress_from(job, order, &mut run, now);
        self.jobs[job as usize].run = Some(run);
        self.held_runs.insert(job);
        true
    }

    /// The backend stopped `job`'s run of `generation` where it stands at `now` (Slurm's
    /// suspend): it keeps its accelerators and its progress, makes none until
    /// [`Scheduler::began`], and then goes on where it stood (what was left of its setup
    /// included), its predicted end later by the pause; a failure meanwhile loses what it
    /// did since its last checkpoint before the pause, as ever. Returns whether the run is
    /// paused (false, and nothing done, for another generation, a job not running, a
    /// service); a run already held stays held.
    pub fn paused(&mut self, job: JobIdx, generation: u32, now: f64) -> bool {
        let Some(j) = self.jobs.get_mut(job as usize) else {
            return false;
        };
        if j.state != JobState::Running || j.generation != generation {
            return false;
        }
        let Some(run) = j.run.as_mut() else {
            return false;
        };
        if !run.held {
            run.held = true;
            run.paused_at = Some(now);
        }
        self.held_runs.insert(job);
        true
    }

    /// Slides a paused `run` of `job` to `now`: its progress and its predicted end move by
    /// the time since it was last slid, what it did stays the same.
    fn slide_paused(&mut self, job: JobIdx, order: u64, run: &mut Run, now: f64) {
        let Some(paused_at) = run.paused_at else {
            return;
        };
        if now <= paused_at {
            return;
        }
        let old_end = run.end_s;
        run.progress_from += now - paused_at;
        run.paused_at = Some(now);
        run.end_s = self.end_of(job, run);
        let ends = &mut self.ends[run.cluster as usize];
        ends.remove(&(bits(old_end), order, job));
        ends.insert((bits(run.end_s), order, job));
    }

    /// Moves every held run's predicted end to "as if it began at `now`": while it waits, its
    /// end keeps moving, and reservations and backfill must not count on accelerators freeing
    /// up at an end long past.
    fn refresh_held(&mut self, now: f64) {
        for job in std::mem::take(&mut self.held_runs) {
            let j = &self.jobs[job as usize];
            let Some(mut run) = j
                .run
                .clone()
                .filter(|r| r.held && j.state == JobState::Running)
            else {
                continue;
            };
            let order = j.order;
            if run.paused_at.is_some() {
                self.slide_paused(job, order, &mut run, now);
                self.jobs[job as usize].run = Some(run);
            } else if run.progress_from < now + run.setup_s {
                self.progress_from(job, order, &mut run, now);
                self.jobs[job as usize].run = Some(run);
            }
            self.held_runs.insert(job);
        }
    }

    /// Lets `run` of `job` make progress from `now` plus its setup, moving its predicted end
    /// (and its place in `ends`) to match.
    fn progress_from(&mut self, job: JobIdx, order: u64, run: &mut Run, now: f64) {
        let old_end = run.end_s;
        run.progress_from = now + run.setup_s;
        run.end_s = self.end_of(job, run);
        let ends = &mut self.ends[run.cluster as usize];
        ends.remove(&(bits(old_end), order, job));
        ends.insert((bits(run.end_s), order, job));
    }

    /// When `run` of `job` ends if it progresses from its `progress_from` on.
    fn end_of(&self, job: JobIdx, run: &Run) -> f64 {
        let eff = self.eff_rate(run);
        run.progress_from
            + if eff.is_infinite() {
                0.0
            } else {
                (1.0 - self.jobs[job as usize].done) / eff
            }
    }

    /// The work of `job`'s held run of `generation` began at `now`: its progress starts after
    /// its restart cost from now, and its predicted end moves by as long as it was held; a
    /// paused run goes on where it stood, its end later by the pause. A run
    /// that has not begun since the job's first start moves that start to now too, so that its
    /// queueing counts up to here. Returns the new predicted end; `None` (nothing changed)
    /// unless the run was [`Scheduler::held`].
    pub fn began(&mut self, job: JobIdx, generation: u32, now: f64) -> Option<f64> {
        let j = self.jobs.get(job as usize)?;
        if j.state != JobState::Running || j.generation != generation {
            return None;
        }
        let mut run = j.run.clone().filter(|r| r.held)?;
        let order = j.order;
        if run.paused_at.is_some() {
            // It goes on where it stood.
            self.slide_paused(job, order, &mut run, now);
            run.held = false;
            run.paused_at = None;
            let end = run.end_s;
            self.jobs[job as usize].run = Some(run);
            return Some(end);
        }
        // (An interrupted run's start moved when it was held again.)
        let first_run = j.first_start_s == Some(run.start_s);
        run.held = false;
        self.progress_from(job, order, &mut run, now);
        let end = run.end_s;
        let j = &mut self.jobs[job as usize];
        if first_run {
            j.first_start_s = Some(now.max(j.submit_s));
        }
        j.run = Some(run);
        Some(end)
    }

    /// Marks a job submitted to this scheduler as one that was running under an earlier one
    /// (a change of leader, a server restart): the next pass tries it before anything else,
    /// services included, and it stays at the front of its queue, as a run restarting after a
    /// failure does — work that was waiting behind it must not take its place. No-op for a job
    /// that is not pending.
    pub fn recovered(&mut self, job: JobIdx) {
        let Some(j) = self.jobs.get(job as usize) else {
            return;
        };
        if j.state != JobState::Pending {
            return;
        }
        if j.kind != JobKind::Inference {
            self.recovered.push(job);
            self.jobs[job as usize].ran_before = true;
        }
        if !self.jobs[job as usize].urgent {
            self.rekey(job, |j| j.urgent = true);
        }
    }

    /// The backend took over the work that `job`'s run of `generation` recovered from an
    /// earlier scheduling leader (its ranks or its Slurm job ran on): nothing restarts, so the
    /// run progresses from its start, not after a restart. Returns the new predicted end;
    /// `None` (nothing changed) for another generation, a job not running, or a run that
    /// restarts nothing.
    pub fn continued(&mut self, job: JobIdx, generation: u32) -> Option<f64> {
        let j = self.jobs.get(job as usize)?;
        if j.state != JobState::Running || j.generation != generation {
            return None;
        }
        let mut run = j.run.clone().filter(|r| r.setup_s > 0.0)?;
        let order = j.order;
        run.setup_s = 0.0;
        if !run.held && run.paused_at.is_none() {
            let start = run.start_s;
            self.progress_from(job, order, &mut run, start);
        }
        let end = run.end_s;
        self.jobs[job as usize].run = Some(run);
        Some(end)
    }

    /// [`Scheduler::recovered`], for a gang whose ranks may still run where the earlier
    /// scheduler put them: the next pass places it on exactly `shares` of `cluster` if they
    /// are up and free and its quotas allow (so that its backend can let those ranks run on),
    /// and like any recovered job otherwise.
    pub fn recovered_at(&mut self, job: JobIdx, cluster: u32, shares: Vec<NodeShare>) {
        if !self.recovered.contains(&job) {
            self.recovered(job);
        }
        if self.recovered.contains(&job) && (cluster as usize) < self.clusters.len() {
            self.recovered_on.insert(job, (cluster, shares));
        }
    }

    /// For a service that was serving under an earlier scheduler: the next pass starts its
    /// replicas on exactly these shares of these clusters first, where they are up and free
    /// and its quotas allow (so that its backend can let them serve on), as many as it wants.
    pub fn recovered_replicas_at(&mut self, job: JobIdx, replicas: Vec<(u32, Vec<NodeShare>)>) {
        let Some(j) = self.jobs.get(job as usize) else {
            return;
        };
        if j.kind == JobKind::Inference && j.state == JobState::Pending {
            self.recovered_replicas.insert(job, replicas);
        }
    }

    /// Starts recovered `j` on the shares it ran on ([`Scheduler::recovered_at`]); false when
    /// it cannot run there now.
    fn start_where_it_ran(
        &mut self,
        now: f64,
        j: JobIdx,
        cluster: u32,
        shares: Vec<NodeShare>,
        out: &mut Vec<Decision>,
    ) -> bool {
        let job = &self.jobs[j as usize];
        let size: u32 = shares.iter().map(|s| s.accelerators).sum();
        if job.dur[cluster as usize].is_none()
            || size < job.min_size
            || size > job.size
            || self.quota_hit(j, cluster, size).is_some()
            || !self.index[cluster as usize].place_exact(&shares)
        {
            return false;
        }
        self.start(
            now,
            j,
            cluster,
            shares,
            "recovered: placed where its ranks ran under the earlier scheduling leader",
            out,
        );
        true
    }

    /// Books the progress of `run` up to `now` (kept or lost) into the job and the cluster's
    /// counters; returns the seconds of computing lost.
    fn settle(&mut self, now: f64, j: JobIdx, run: &Run, finished: bool, graceful: bool) -> f64 {
        let (kept_compute, lost) = self.book(now, j, run, finished, graceful);
        let job = &mut self.jobs[j as usize];
        if kept_compute > 0.0 || graceful || finished {
            job.stalled = 0;
        } else if job.kind != JobKind::Batch {
            job.stalled += 1;
        }
        lost
    }

    /// [`Scheduler::settle`]'s booking alone: the kept progress into the job, the cluster's
    /// busy and useful time; returns the compute seconds kept and lost.
    fn book(
        &mut self,
        now: f64,
        j: JobIdx,
        run: &Run,
        finished: bool,
        graceful: bool,
    ) -> (f64, f64) {
        let c = run.cluster as usize;
        let kind = self.jobs[j as usize].kind;
        let (kept_compute, lost) = self.kept_and_lost(now, j, run, finished, graceful);
        let size = f64::from(run.size);
        let st = &mut self.stats[c];
        st.busy_accel_s += (now - run.start_s).max(0.0) * size;
        st.useful_accel_s += kept_compute * size;
        let job = &mut self.jobs[j as usize];
        if finished {
            job.done = 1.0;
        } else if kind == JobKind::Batch {
            job.done = 0.0;
        } else {
            job.done = (job.done + kept_compute * run.rate).min(1.0 - 1e-12);
        }
        (kept_compute, lost)
    }

    /// Whether a failure at `now` is the one too many for training run `j`: the
    /// [`Config::max_stalled_restarts`]-th in a row with no progress kept since the last.
    fn stalls_for_good(&self, now: f64, j: JobIdx) -> bool {
        let job = &self.jobs[j as usize];
        let Some(run) = job.run.as_ref() else {
            return false;
        };
        job.kind == JobKind::Training
            && job.stalled + 1 >= self.cfg.max_stalled_restarts
            && self.kept_and_lost(now, j, run, false, false).0 <= 0.0
    }

    /// Why batch job `j`, which keeps no checkpoint, would practically never finish where it
    /// runs: it needs its whole run without a node failure, and with its nodes failing every
    /// M on average an attempt of T succeeds with odds e^(−T/M); below one in
    /// [`HOPELESS_BATCH_ATTEMPTS`] it would restart (almost) for ever. `None` otherwise, and
    /// when the scheduler does not model failures.
    fn batch_beyond_hope(&self, j: JobIdx) -> Option<String> {
        let job = &self.jobs[j as usize];
        let run = job.run.as_ref()?;
        if job.kind != JobKind::Batch || !self.cfg.failures || run.rate <= 0.0 {
            return None;
        }
        let c = &self.clusters[run.cluster as usize];
        let nodes = run.shares.len().max(1) as f64;
        let mtbf_s = c.node_mtbf_hours * 3600.0 / nodes;
        let need_s = 1.0 / run.rate;
        let exponent = need_s / mtbf_s;
        (exponent > HOPELESS_BATCH_ATTEMPTS.ln()).then(|| {
            format!(
                "a batch job keeps no checkpoint, and it needs {} without a failure on nodes that \
                 fail every {} on average (one attempt in {:.0e} would succeed), so it would \
                 restart for ever",
                human_s(need_s),
                human_s(mtbf_s),
                exponent.exp().min(1e300)
            )
        })
    }

    fn finished(&mut self, now: f64, j: JobIdx, generation: u32, out: &mut Vec<Decision>) {
        let Some(job) = self.jobs.get(j as usize) else {
            return;
        };
        if job.generation != generation || job.state != JobState::Running || job.run.is_none() {
            return;
        }
        let cluster = job.run.as_ref().map_or(0, |r| r.cluster);
        self.stop(now, j, true, false);
        let job = &mut self.jobs[j as usize];
        job.state = JobState::Done;
        job.finish_s = Some(now);
        self.stats[cluster as usize].completed += 1;
        let reason = format!(
            "work complete after {} ({} queued before its first start)",
            human_s(now - job.submit_s),
            human_s(job.first_start_s.unwrap_or(now) - job.submit_s)
        );
        self.emit(out, now, Action::Finish { job: j, cluster }, reason);
    }

    /// The work of a running gang failed: back in the queue (from its last checkpoint), or
    /// ended as failed when it may not be retried.
    fn failed(
        &mut self,
        now: f64,
        j: JobIdx,
        generation: u32,
        retry: bool,
        reason: String,
        out: &mut Vec<Decision>,
    ) {
        let Some(job) = self.jobs.get(j as usize) else {
            return;
        };
        if job.generation != generation || job.state != JobState::Running || job.run.is_none() {
            return;
        }
        let cluster = job.run.as_ref().map_or(0, |r| r.cluster);
        let lost = self.stop(now, j, false, false);
        self.stats[cluster as usize].restarts += u64::from(retry);
        let job = &mut self.jobs[j as usize];
        if retry {
            job.restarts += 1;
            job.urgent = true;
            job.why = Why::AfterFailure {
                lost_s: lost,
                need: None,
                node: false,
            };
            let from = restart_origin(job.kind);
            self.enqueue(j);
            self.emit(
                out,
                now,
                Action::Restart {
                    job: j,
                    cluster,
                    lost_s: lost,
                },
                format!("{reason}; restarts {from} (lost {})", human_s(lost)),
            );
        } else {
            self.ended_failed(now, j, cluster, reason, out);
        }
    }

    /// Ends `j`, already off its accelerators, as failed for good.
    fn ended_failed(
        &mut self,
        now: f64,
        j: JobIdx,
        cluster: u32,
        reason: String,
        out: &mut Vec<Decision>,
    ) {
        let job = &mut self.jobs[j as usize];
        job.state = JobState::Failed;
        job.finish_s = Some(now);
        self.emit(out, now, Action::Fail { job: j, cluster }, reason);
    }

    fn cancel(&mut self, now: f64, j: JobIdx, out: &mut Vec<Decision>) {
        let Some(job) = self.jobs.get(j as usize) else {
            return;
        };
        if !matches!(job.state, JobState::Pending | JobState::Running) {
            return;
        }
        self.dequeue(j);
        if self.jobs[j as usize].run.is_some() {
            self.stop(now, j, false, true);
        }
        if !self.jobs[j as usize].replicas.is_empty() {
            self.running -= 1;
        }
        while let Some(rep) = self.jobs[j as usize].replicas.pop() {
            self.release_replica(now, j, rep);
        }
        self.services.remove(&(self.jobs[j as usize].order, j));
        let job = &mut self.jobs[j as usize];
        job.state = JobState::Cancelled;
        job.finish_s = Some(now);
        let cluster = job.last_cluster.unwrap_or(0);
        self.emit(
            out,
            now,
            Action::Finish { job: j, cluster },
            "cancelled".into(),
        );
    }

    /// Releases one of a running service's replicas; the service is pending again without any.
    fn drop_replica(&mut self, now: f64, j: JobIdx, rep: Replica) {
        self.release_replica(now, j, rep);
        if self.jobs[j as usize].replicas.is_empty() {
            self.jobs[j as usize].state = JobState::Pending;
            self.running -= 1;
        }
    }

    fn release_replica(&mut self, now: f64, j: JobIdx, rep: Replica) {
        let c = rep.cluster as usize;
        self.released += 1;
        self.index[c].release(&rep.shares);
        for s in &rep.shares {
            let occ = &mut self.occupants[c][s.node as usize];
            if let Some(p) = occ.iter().position(|&(x, r)| x == j && r != NO_REPLICA) {
                occ.swap_remove(p);
            }
        }
        let size = self.jobs[j as usize].size;
        self.charge(j, rep.cluster, size, false);
        let t = (now - rep.start_s).max(0.0) * f64::from(size);
        self.stats[c].busy_accel_s += t;
        self.stats[c].useful_accel_s += t;
    }

    /// A gang hit by the failure of `failed` (its nodes that failed at once) restarts from its
    /// checkpoint on spare nodes as close to them as the topology allows, keeping the rest of its
    /// allocation; `false` if there are not enough spares.
    fn restart_in_place(
        &mut self,
        now: f64,
        j: JobIdx,
        cluster: u32,
        failed: &[u32],
        out: &mut Vec<Decision>,
    ) -> bool {
        let c = cluster as usize;
        let Some(run) = self.jobs[j as usize].run.as_ref() else {
            return false;
        };
        let positions: Vec<usize> = failed
            .iter()
            .filter_map(|&node| run.shares.iter().position(|s| s.node == node))
            .collect();
        if positions.is_empty() {
            return false;
        }
        // The restart is a new launch, which a drained node takes no more of: its shares move
        // to spares as well.
        let on_drained: Vec<usize> = (0..run.shares.len())
            .filter(|&p| self.index[c].is_drained(run.shares[p].node) && !positions.contains(&p))
            .collect();
        let mut positions = positions;
        positions.extend(on_drained);
        let old: Vec<NodeShare> = positions.iter().map(|&p| run.shares[p]).collect();
        let mut spares = Vec::with_capacity(old.len());
        for share in &old {
            match self.index[c].place_near(share.accelerators, share.node) {
                Some(spare) => spares.push(spare),
                None => {
                    self.index[c].release(&spares);
                    return false;
                }
            }
        }
        let Some(mut run) = self.jobs[j as usize].run.take() else {
            self.index[c].release(&spares);
            return false;
        };
        let lost = self.settle(now, j, &run, false, false);
        self.index[c].release(&old);
        for (&p, (share, spare)) in positions.iter().zip(old.iter().zip(&spares)) {
            let occ = &mut self.occupants[c][share.node as usize];
            if let Some(i) = occ.iter().position(|&(x, r)| x == j && r == NO_REPLICA) {
                occ.swap_remove(i);
            }
            self.occupants[c][spare.node as usize].push((j, NO_REPLICA));
            run.shares[p] = *spare;
        }
        let order = self.jobs[j as usize].order;
        self.ends[c].remove(&(bits(run.end_s), order, j));
        let job = &mut self.jobs[j as usize];
        job.generation += 1;
        job.restarts += 1;
        let restart = self.restart_cost(j, c as u32);
        run.start_s = now;
        run.progress_from = now + restart;
        run.setup_s = restart;
        run.held = false;
        run.paused_at = None;
        run.end_s = self.end_of(j, &run);
        let (end, size) = (run.end_s, run.size);
        let nodes = run.shares.clone();
        self.ends[c].insert((bits(end), order, j));
        let job = &mut self.jobs[j as usize];
        job.run = Some(run);
        let generation = job.generation;
        let kind = job.kind;
        self.stats[c].restarts += 1;
        let name = self.clusters[c].name.clone();
        let from = restart_origin(kind);
        // The nodes it leaves: those that failed, and drained ones (a restart is a new launch).
        let (failed, drained): (Vec<u32>, Vec<u32>) =
            old.iter().map(|s| s.node).partition(|n| failed.contains(n));
        self.emit(
            out,
            now,
            Action::Restart {
                job: j,
                cluster,
                lost_s: lost,
            },
            format!(
                "{} failed; lost {} of progress",
                self.nodes_of(cluster, &failed),
                human_s(lost)
            ),
        );
        let spare_nodes: Vec<u32> = spares.iter().map(|s| s.node).collect();
        // (A gang whose every node failed keeps nothing.)
        let kept = if old.len() == nodes.len() {
            String::new()
        } else {
            format!(", keeping the rest of its {size} accelerators")
        };
        let (spares_named, failed_named) =
            (self.node_list(c, &spare_nodes), self.node_list(c, &failed));
        let mut in_place = format!(
            "spare {} {spares_named} of {name} in place of failed {} {failed_named}",
            node_noun(spare_nodes.len()),
            node_noun(failed.len())
        );
        if !drained.is_empty() {
            in_place += &format!(
                " and drained {} {}",
                node_noun(drained.len()),
                self.node_list(c, &drained)
            );
        }
        self.emit(
            out,
            now,
            Action::Start {
                job: j,
                cluster,
                accelerators: size,
                generation,
                expected_end_s: end,
                nodes,
            },
            format!(
                "restarts {from} on {in_place}{kept}; predicted to finish in {}",
                human_s(end - now)
            ),
        );
        true
    }

    /// `nodes` of `cluster` are drained (see [`Event::NodesDrained`]).
    fn nodes_drained(&mut self, cluster: u32, nodes: &[u32]) {
        let Some(index) = self.index.get_mut(cluster as usize) else {
            return;
        };
        let mut changed = false;
        for &node in nodes {
            if node < index.nodes() {
                changed |= index.set_drained(node);
            }
        }
        if changed {
            self.epoch += 1;
        }
    }

    /// `nodes` of `cluster` failed at once (nodes already failed, or not in the cluster, are
    /// ignored; drained nodes fail): every gang on them restarts once, every replica on them
    /// is replaced.
    fn nodes_failed(&mut self, now: f64, cluster: u32, nodes: &[u32], out: &mut Vec<Decision>) {
        let c = cluster as usize;
        if c >= self.index.len() {
            return;
        }
        let mut failed: Vec<u32> = Vec::with_capacity(nodes.len());
        for &node in nodes {
            if node >= self.index[c].nodes()
                || (self.index[c].is_down(node) && !self.index[c].is_drained(node))
            {
                continue;
            }
            self.stats[c].node_failures += 1;
            self.index[c].set_down(node, true);
            failed.push(node);
        }
        if failed.is_empty() {
            return;
        }
        self.epoch += 1;
        let mut seen = BTreeSet::new();
        for &node in &failed {
            let hit: Vec<(JobIdx, u32)> = self.occupants[c][node as usize].clone();
            for (j, slot) in hit {
                if slot != NO_REPLICA {
                    self.replica_hit(now, j, cluster, node, &failed, out);
                } else if seen.insert(j) {
                    let its = match &self.jobs[j as usize].run {
                        Some(run) => on_shares(&failed, &run.shares),
                        None => Vec::new(),
                    };
                    // (Only a run's own shares make it an occupant; the node hit it at least.)
                    let its = if its.is_empty() { vec![node] } else { its };
                    self.gang_hit(now, j, cluster, &its, out);
                }
            }
        }
    }

    /// Gang `j` lost its nodes `its` of `cluster`: it fails for good if it keeps no progress
    /// between failures, restarts in place on spares if there are enough, else is queued again.
    fn gang_hit(
        &mut self,
        now: f64,
        j: JobIdx,
        cluster: u32,
        its: &[u32],
        out: &mut Vec<Decision>,
    ) {
        let c = cluster as usize;
        let what = self.nodes_of(cluster, its);
        // A run that would restart for ever ends here instead.
        let for_good = if self.stalls_for_good(now, j) {
            Some(format!(
                "{} failures in a row with no progress kept in between — its nodes fail faster \
                 than it restarts ({}) and writes a checkpoint, so it would restart for ever",
                self.cfg.max_stalled_restarts,
                human_s(self.training_restart_s(cluster))
            ))
        } else {
            self.batch_beyond_hope(j)
        };
        if let Some(why) = for_good {
            self.stop(now, j, false, false);
            self.ended_failed(
                now,
                j,
                cluster,
                format!("{what} failed: {why}; failed"),
                out,
            );
            return;
        }
        if self.restart_in_place(now, j, cluster, its, out) {
            return;
        }
        let lost = self.stop(now, j, false, false);
        self.stats[c].restarts += 1;
        let job = &mut self.jobs[j as usize];
        job.restarts += 1;
        job.urgent = true;
        job.why = Why::AfterFailure {
            lost_s: lost,
            need: None,
            node: true,
        };
        self.enqueue(j);
        let kind = self.jobs[j as usize].kind;
        let reason = if kind == JobKind::Batch {
            format!(
                "{what} failed; batch job restarts from the beginning (lost {})",
                human_s(lost)
            )
        } else {
            format!(
                "{what} failed; restarts from its last checkpoint (lost {} of progress)",
                human_s(lost)
            )
        };
        self.emit(
            out,
            now,
            Action::Restart {
                job: j,
                cluster,
                lost_s: lost,
            },
            reason,
        );
    }

    /// Service `j`'s replica on `node` of `cluster` (if it still has one there) is lost with
    /// the `failed` nodes; the next pass replaces it.
    fn replica_hit(
        &mut self,
        now: f64,
        j: JobIdx,
        cluster: u32,
        node: u32,
        failed: &[u32],
        out: &mut Vec<Decision>,
    ) {
        let reps = &mut self.jobs[j as usize].replicas;
        let Some(p) = reps
            .iter()
            .position(|r| r.cluster == cluster && r.shares.iter().any(|s| s.node == node))
        else {
            return;
        };
        // (Replicas stay in the order they were placed: the newest is last.)
        let rep = reps.remove(p);
        let nodes = rep.shares.clone();
        let down = on_shares(failed, &nodes);
        self.drop_replica(now, j, rep);
        let reason = format!(
            "{} failed; a new replica takes its place where there is room",
            self.nodes_of(cluster, &down)
        );
        self.emit(
            out,
            now,
            Action::ReplicaLost {
                job: j,
                cluster,
                nodes,
            },
            reason,
        );
    }

    /// One scheduling pass at `now`: places what the policy allows, appending decisions.
    pub fn schedule(&mut self, now: f64, out: &mut Vec<Decision>) {
        self.refresh_held(now);
        // Every gang that can go back where it ran does, before any other is placed anew: one
        // placed anew first could take the slots another's ranks still run on.
        let recovered = std::mem::take(&mut self.recovered);
        let mut recovered_on = std::mem::take(&mut self.recovered_on);
        let waiting = |s: &Self, j: JobIdx| {
            s.jobs[j as usize].state == JobState::Pending && s.jobs[j as usize].key.is_some()
        };
        for &j in &recovered {
            if waiting(self, j)
                && let Some((cluster, shares)) = recovered_on.remove(&j)
            {
                self.start_where_it_ran(now, j, cluster, shares, out);
            }
        }
        // Then every service's replicas that can go back where they served (a gang placed
        // anew, or another service's new replica, must not take their room).
        let mut services: Vec<JobIdx> = self.recovered_replicas.keys().copied().collect();
        services.sort_unstable();
        for j in services {
            self.replicas_back_where_they_served(now, j, out);
        }
        for j in recovered {
            if waiting(self, j) {
                self.try_start(now, j, None, out);
            }
        }
        self.place_services(now, out);
        self.place_queue(now, out);
        if self.cfg.policy == Policy::Switchyard {
            self.upgrade(now, out);
        }
    }

    fn place_queue(&mut self, now: f64, out: &mut Vec<Decision>) {
        if self.pending == 0 {
            self.fresh.clear();
            return;
        }
        // Nothing was given back since the last full pass: the jobs it could not start still
        // cannot (free capacity only shrank), so only jobs queued since then are tried. FIFO
        // and passes holding a reservation always look at the whole queue, and so does a pass
        // once a refusal that lapses with time has lapsed. Per-team policies take the full
        // pass for fresh jobs of several teams, which the team furthest below its share must
        // pick from.
        if self.released == self.last_full_pass
            && self.cfg.policy != Policy::Fifo
            && !self.reserved_last_pass
            && now < self.recheck_at
            && !(self.cfg.policy.per_tenant() && self.fresh_span_teams())
        {
            let mut fresh = std::mem::take(&mut self.fresh);
            fresh.sort_unstable();
            fresh.dedup();
            let mut keyed: Vec<Key> = fresh
                .into_iter()
                .filter_map(|j| self.jobs[j as usize].key.map(|(_, k)| k))
                .collect();
            keyed.sort_unstable();
            for (tries, key) in keyed.into_iter().enumerate() {
                let j = key.3;
                if self.jobs[j as usize].key.is_none() || self.try_start(now, j, None, out) {
                    continue;
                }
                // (FIFO, which never preempts, always takes the full pass.)
                if tries < 4 && self.try_preempt(now, j, None, out) {
                    self.try_start(now, j, None, out);
                }
            }
            return;
        }
        self.last_full_pass = self.released;
        self.fresh.clear();
        self.reserved_last_pass = false;
        self.recheck_at = f64::INFINITY;
        if self.index.iter().all(|i| i.free() == 0) && self.cfg.policy == Policy::Fifo {
            return;
        }
        // A starving job's reservation holds from the pass that made it until the job starts:
        // made again only when the pass reached the job, it came too late in every pass after
        // the first — shorter jobs of its own team, tried before it, took what freed up.
        // (Room is made for it first, as the pass would when it reached the job.)
        let mut res: Option<Reservation> = None;
        if self.cfg.policy == Policy::Switchyard
            && let Some(r) = self.reservation
            && self.jobs[r.job as usize].key.is_some()
            && !self.try_start(now, r.job, None, out)
            && !(self.try_preempt(now, r.job, None, out) && self.try_start(now, r.job, None, out))
        {
            res = self.reserve(now, r.job);
            self.reserved_last_pass |= res.is_some();
            if let Some(r) = res {
                self.jobs[r.job as usize].why = Why::Reserved {
                    for_job: r.job,
                    for_order: self.jobs[r.job as usize].order,
                    shadow_s: r.shadow_s,
                };
            }
        }
        let slots = self.queues.len();
        let mut cursor: Vec<Option<Key>> = vec![None; slots];
        let mut active: Vec<u32> = (0..slots as u32)
            .filter(|&s| !self.queues[s as usize].is_empty())
            .collect();
        // Per-team policies pick the team furthest below its share each time: keep the active
        // teams ordered by that (usage / share; on a tie the larger share, so that weights
        // count between idle teams too; then the team), so a pick is O(log teams) — traces
        // that name thousands of users make thousands of teams. Only a start (the picked team)
        // or a preemption (the victims' teams) changes a key.
        let per_tenant = self.cfg.policy.per_tenant();
        let below_share = |this: &Self, s: u32| {
            let t = &this.tenants[s as usize];
            // Non-negative and finite (share > 0): the bits order as the numbers do.
            (
                (t.usage_total as f64 / t.share).to_bits(),
                !t.share.to_bits(),
            )
        };
        let mut by_share: BTreeSet<((u64, u64), u32)> = if per_tenant {
            active.iter().map(|&s| (below_share(self, s), s)).collect()
        } else {
            BTreeSet::new()
        };
        // A pass gives up on a team after `per_slot` jobs that could not start (the rest of its
        // queue most likely cannot either: it is at its quota cap or its jobs are too big for
        // what is free) and on the whole queue after `backfill_depth` per team.
        let mut misses = 0usize;
        let mut slot_misses = vec![0usize; slots];
        let per_slot = if per_tenant {
            (self.cfg.backfill_depth / active.len().max(1)).max(16)
        } else {
            self.cfg.backfill_depth
        };
        let depth = self.cfg.backfill_depth.max(per_slot * active.len());
        let mut preempt_tries = 0usize;
        let mut first_blocked = true;
        loop {
            let remaining = if per_tenant {
                by_share.len()
            } else {
                active.len()
            };
            if remaining == 0 || misses >= depth {
                break;
            }
            // The team furthest below its share goes next (one slot unless the policy is per team).
            let picked = if per_tenant {
                *by_share.first().expect("not empty")
            } else {
                ((0, 0), active[0])
            };
            let slot = picked.1 as usize;
            let drop_slot = |active: &mut Vec<u32>, by_share: &mut BTreeSet<((u64, u64), u32)>| {
                if per_tenant {
                    by_share.remove(&picked);
                } else {
                    active.remove(0);
                }
            };
            let next = match cursor[slot] {
                None => self.queues[slot].iter().next().copied(),
                Some(k) => self.queues[slot]
                    .range((Excluded(k), Unbounded))
                    .next()
                    .copied(),
            };
            let Some(key) = next else {
                drop_slot(&mut active, &mut by_share);
                continue;
            };
            cursor[slot] = Some(key);
            let j = key.3;
            // The job whose reservation this pass took up again was tried first: trying it
            // again would only replace its reason (the reservation it holds) with the room it
            // lacks.
            if res.is_some_and(|r| r.job == j) {
                continue;
            }
            if self.try_start(now, j, res.as_mut(), out) {
                if per_tenant && by_share.remove(&picked) {
                    by_share.insert((below_share(self, picked.1), picked.1));
                }
                continue;
            }
            misses += 1;
            slot_misses[slot] += 1;
            if slot_misses[slot] >= per_slot {
                drop_slot(&mut active, &mut by_share);
            }
            // Blocked: reserve for it (fifo head, or a starving job under `switchyard`), or
            // make room by preemption (priority, quota reclaim).
            let policy = self.cfg.policy;
            if matches!(policy, Policy::Priority | Policy::Fair | Policy::Switchyard)
                && preempt_tries < 4
            {
                preempt_tries += 1;
                let preempted = self.try_preempt(now, j, res.as_ref(), out);
                let started = preempted && self.try_start(now, j, res.as_mut(), out);
                if preempted && per_tenant {
                    // The victims' teams (and, if it started, this one) hold less or more now.
                    by_share = by_share
                        .iter()
                        .map(|&(_, s)| (below_share(self, s), s))
                        .collect();
                }
                if started {
                    continue;
                }
            }
            if res.is_none() {
                let starving = self.starving(j, now);
                if (policy == Policy::Fifo && first_blocked) || starving {
                    res = self.reserve(now, j);
                    self.reserved_last_pass |= res.is_some();
                    if let Some(r) = res {
                        self.jobs[j as usize].why = Why::Reserved {
                            for_job: j,
                            for_order: self.jobs[j as usize].order,
                            shadow_s: r.shadow_s,
                        };
                    }
                }
            }
            // FIFO holds room for the first job that waits for room; one its team's caps keep
            // out of every cluster it accepts waits for its team's jobs instead (no reservation
            // holds room for it), and the next in line takes its turn.
            if res.is_some() || !self.capped_everywhere(j) {
                first_blocked = false;
            }
        }
    }

    /// `switchyard`: moves training runs to accelerators that free up and would finish them
    /// much sooner (after the pass, so waiting jobs had the first pick). A run checkpoints and
    /// pays one restart; it moves only if it still finishes well ahead.
    fn upgrade(&mut self, now: f64, out: &mut Vec<Decision>) {
        if self.released == self.last_upgrade || self.index.iter().all(|i| i.free() == 0) {
            self.last_upgrade = self.released;
            return;
        }
        let mut cands: Vec<(u64, u64, JobIdx)> = Vec::new();
        for c in 0..self.clusters.len() {
            for &(end, order, v) in self.ends[c].iter().rev().take(64) {
                if self.jobs[v as usize].kind == JobKind::Training {
                    cands.push((end, order, v));
                }
            }
        }
        cands.sort_by(|a, b| b.cmp(a));
        // A starving job's reservation holds its cluster: a run grows or moves there only if
        // it would end before the reserved start (what is spare beside the reservation goes
        // to the queue's backfill, which knows how much is left).
        let held = self
            .reservation
            .filter(|r| self.jobs[r.job as usize].key.is_some())
            .map(|r| (r.job, r.cluster, r.shadow_s));
        for (end, _, v) in cands {
            let Some(run) = self.jobs[v as usize].run.as_ref() else {
                continue;
            };
            let (cur, size) = (run.cluster, run.size);
            let (lo, hi) = (self.jobs[v as usize].min_size, self.jobs[v as usize].size);
            let left = f64::from_bits(end) - now;
            // Its progress as a checkpoint now would keep it (`done` counts only what earlier
            // runs kept): the move is priced on the work truly left.
            let done_now = (self.jobs[v as usize].done
                + self.kept_and_lost(now, v, run, false, true).0 * run.rate)
                .min(1.0 - 1e-12);
            let mut best: Option<(f64, u32, u32)> = None;
            for c in 0..self.clusters.len() as u32 {
                if self.jobs[v as usize].dur[c as usize].is_none() {
                    continue;
                }
                let i = &self.index[c as usize];
                // What the team's caps let it add on this cluster.
                let room = u32::try_from(self.quota_room(v, c)).unwrap_or(u32::MAX);
                // Elsewhere: the largest size in range that fits; here: grow an elastic run
                // below its full size to the largest gang that fits on its own accelerators
                // and those free beside it.
                let target = if c == cur {
                    let upper = hi.min(size.saturating_add(room));
                    if upper <= size {
                        continue;
                    }
                    // Growing takes at least one accelerator that is free now.
                    if i.free() == 0 {
                        continue;
                    }
                    match i.largest_growth(size + 1, upper, &run.shares) {
                        Some(t) => t,
                        None => continue,
                    }
                } else if lo < hi {
                    match i.largest_fit(lo, hi.min(room)) {
                        Some(t) if t >= lo => t,
                        _ => continue,
                    }
                } else if i.fits(size) {
                    size
                } else {
                    continue;
                };
                let extra = if c == cur { target - size } else { target };
                if !self.quota_ok(v, c, extra) {
                    continue;
                }
                let pred = self.predicted_from(v, c, target, done_now);
                if held.is_some_and(|(r, rc, shadow)| r != v && rc == c && now + pred > shadow) {
                    continue;
                }
                if best.is_none_or(|b| pred < b.0) {
                    best = Some((pred, c, target));
                }
            }
            let Some((pred, c, target)) = best else {
                continue;
            };
            if pred > 0.7 * left - 2.0 * self.training_restart_s(c) {
                continue;
            }
            self.stop(now, v, false, true);
            let Some(shares) = self.index[c as usize].place(target) else {
                // Cannot happen (it fitted before this run's own accelerators were freed);
                // back to the queue to be safe.
                self.enqueue(v);
                continue;
            };
            let why = if c == cur {
                format!(
                    "switchyard: elastic run grows from {size} to {target} accelerators on {} (had {} left); checkpointed and restarted",
                    self.clusters[c as usize].name,
                    human_s(left)
                )
            } else {
                format!(
                    "switchyard: migrated from {} where it had {} left; {} frees up and finishes it sooner",
                    self.clusters[cur as usize].name,
                    human_s(left),
                    self.clusters[c as usize].name
                )
            };
            self.start(now, v, c, shares, &why, out);
        }
        self.last_upgrade = self.released;
    }

    /// EASY reservation for `j`: the earliest time enough accelerators free up on one cluster
    /// it accepts, given running jobs' expected ends.
    fn reserve(&mut self, now: f64, j: JobIdx) -> Option<Reservation> {
        let min_size = self.jobs[j as usize].min_size;
        // Where its team's caps keep the job out, freed accelerators would not start it, and
        // holding them would only keep others from backfilling: FIFO never reserves there. A
        // starving job under `switchyard` does only when its caps keep it out of every cluster
        // it accepts, so that the room is there when its team's own runs end (a week of
        // waiting has earned it).
        // (Not one its team's or organisation's services keep out for good: no run ending
        // would ever let it start, and the room would be held idle for ever.)
        let hold_capped = self.cfg.policy != Policy::Fifo
            && self.capped_everywhere(j)
            && self.fits_beside_service_floors(j);
        let may_hold = |c: usize| hold_capped || self.quota_ok(j, c as u32, min_size);
        if let Some(r) = self.reservation
            && r.job == j
            && r.epoch == self.epoch
            && self.index[r.cluster as usize].free() == r.free_then
            && self.released == r.released_then
            && may_hold(r.cluster as usize)
        {
            return Some(r);
        }
        let mut best: Option<Reservation> = None;
        for c in 0..self.clusters.len() {
            if self.jobs[j as usize].dur[c].is_none() || !may_hold(c) {
                continue;
            }
            // Room counts in nodes, as placement does: a gang of whole nodes starts once
            // enough nodes are idle, a smaller job once one node has room for it (so many
            // accelerators free across busy nodes are not a start). What is spare beside it
            // may be backfilled by runs that end later: idle nodes beyond the gang's, or the
            // room left on the node a smaller job will take.
            let index = &self.index[c];
            let free_then = index.free();
            let per_node = index.per_node().max(1);
            let whole_nodes = min_size.div_ceil(per_node);
            let mut back: HashMap<u32, u32> = HashMap::new();
            let mut idle = index.idle_nodes();
            let mut best_room = 0u32;
            let mut shadow = now;
            let spare = |idle: u32, best_room: u32| -> Option<u64> {
                if min_size >= per_node {
                    (idle >= whole_nodes)
                        .then(|| u64::from(idle - whole_nodes) * u64::from(per_node))
                } else {
                    (best_room >= min_size).then(|| u64::from(best_room - min_size))
                }
            };
            let mut extra = spare(idle, best_room);
            for &(end, _, k) in self.ends[c].iter().take(200_000) {
                if extra.is_some() {
                    break;
                }
                // (What ends on a drained node does not come free.)
                for share in self.jobs[k as usize].run.iter().flat_map(|r| &r.shares) {
                    let given = back.entry(share.node).or_default();
                    let before = index.room_after(share.node, *given);
                    *given += share.accelerators;
                    let after = index.room_after(share.node, *given);
                    if after == per_node && before < per_node {
                        idle += 1;
                    }
                    best_room = best_room.max(after);
                }
                shadow = f64::from_bits(end);
                extra = spare(idle, best_room);
            }
            let Some(extra) = extra else {
                continue;
            };
            if best.is_none_or(|b| shadow < b.shadow_s) {
                best = Some(Reservation {
                    job: j,
                    cluster: c as u32,
                    shadow_s: shadow,
                    extra,
                    epoch: self.epoch,
                    free_then,
                    released_then: self.released,
                });
            }
        }
        self.reservation = best;
        best
    }

    /// `switchyard`: the fastest cluster of `j` and the slowdown, when a run predicted to take
    /// `predicted_s` on `c` would be more than [`Config::max_slowdown`] times slower than
    /// there and `j` has not yet waited as long as its run there would take. The fastest cluster counts whether or not it is free:
    /// a job is not sent somewhere much slower because its best cluster is held for another.
    fn waits_for_faster(
        &self,
        now: f64,
        j: JobIdx,
        c: u32,
        predicted_s: f64,
    ) -> Option<(u32, f64)> {
        if self.cfg.policy != Policy::Switchyard {
            return None;
        }
        let job = &self.jobs[j as usize];
        let (fastest, best_s) = self.fastest_run(j)?;
        if fastest == c {
            return None;
        }
        let slowdown = predicted_s / best_s.max(1e-9);
        (slowdown > self.cfg.max_slowdown && now - job.submit_s < best_s)
            .then_some((fastest, slowdown))
    }

    /// The cluster where `j` runs fastest (the first of equals) and its predicted time there,
    /// each cluster judged at the largest size it could ever hold there — its capacity, and
    /// its team's and organisation's caps (an elastic job larger than that runs smaller, and
    /// slower, there); `None` when it runs nowhere.
    fn fastest_run(&self, j: JobIdx) -> Option<(u32, f64)> {
        let job = &self.jobs[j as usize];
        let mut fastest: Option<(f64, u32, u32)> = None;
        for (k, d) in job.dur.iter().enumerate() {
            let Some(d) = *d else { continue };
            // Smaller than the whole job it only runs slower: no faster than the best so far.
            if fastest.is_some_and(|(best, _, _)| d >= best) {
                continue;
            }
            let held = self.index[k]
                .capacity()
                .min(self.caps_of_team(job.tenant, Some(k as u32)).lowest())
                .min(u64::from(job.size));
            let size = u32::try_from(held).unwrap_or(job.size);
            if size == 0 || size < job.min_size {
                continue;
            }
            // Seconds per job at that size; exactly `d` where it holds the whole job.
            let at_size = d * f64::from(job.size) / f64::from(size);
            if fastest.is_none_or(|(best, _, _)| at_size < best) {
                fastest = Some((at_size, k as u32, size));
            }
        }
        let (_, c, size) = fastest?;
        Some((c, self.predicted_s(j, c, size)))
    }

    /// Whether `j`'s team's caps keep it out of every cluster it accepts (at its minimum size).
    fn capped_everywhere(&self, j: JobIdx) -> bool {
        let min_size = self.jobs[j as usize].min_size;
        (0..self.clusters.len() as u32).all(|c| {
            self.jobs[j as usize].dur[c as usize].is_none() || !self.quota_ok(j, c, min_size)
        })
    }

    /// Whether job `j`'s caps would let it start on some cluster it accepts once every run of
    /// its team and organisation has ended but their services, which never go below their
    /// fewest replicas: what those hold stays held for good.
    fn fits_beside_service_floors(&self, j: JobIdx) -> bool {
        let job = &self.jobs[j as usize];
        let team = job.tenant;
        let org = self.tenants[team as usize].org;
        let n = self.clusters.len();
        // Accelerators the services' fewest replicas hold: on each cluster, those placed
        // there; fleet-wide, all of them, placed or not yet (one below its fewest, after a
        // failure or before it is first placed, takes them back). The team's, the
        // organisation's.
        let (mut team_floor, mut org_floor) = (vec![0u64; n], vec![0u64; n]);
        let (mut team_total, mut org_total) = (0u64, 0u64);
        for &(_, s) in &self.services {
            let svc = &self.jobs[s as usize];
            if self.tenants[svc.tenant as usize].org != org {
                continue;
            }
            let ours = svc.tenant == team;
            let floor = u64::from(svc.replica_range.0) * u64::from(svc.size);
            org_total += floor;
            if ours {
                team_total += floor;
            }
            for r in svc.replicas.iter().take(svc.replica_range.0 as usize) {
                org_floor[r.cluster as usize] += u64::from(svc.size);
                if ours {
                    team_floor[r.cluster as usize] += u64::from(svc.size);
                }
            }
        }
        let need = u64::from(job.min_size);
        let fits = |rules: &[QuotaRule], floor: &[u64], total: u64, c: usize| {
            rules.iter().all(|r| match (r.cap, r.cluster) {
                (None, _) => true,
                (Some(_), Some(rc)) if rc as usize != c => true,
                (Some(cap), Some(_)) => floor[c] + need <= cap,
                (Some(cap), None) => total + need <= cap,
            })
        };
        (0..n).any(|c| {
            job.dur[c].is_some()
                && fits(
                    &self.tenants[team as usize].rules,
                    &team_floor,
                    team_total,
                    c,
                )
                && fits(&self.orgs[org as usize].rules, &org_floor, org_total, c)
        })
    }

    /// Whether the jobs queued since the last pass belong to more than one team.
    fn fresh_span_teams(&self) -> bool {
        let mut teams = self
            .fresh
            .iter()
            .filter(|&&j| self.jobs[j as usize].key.is_some())
            .map(|&j| self.jobs[j as usize].tenant);
        teams
            .next()
            .is_some_and(|first| teams.any(|other| other != first))
    }

    /// The cluster and size the policy would start `j` on now, if any; never on `skip`.
    fn choose(&self, now: f64, j: JobIdx, skip: Option<u32>) -> Result<(u32, u32), Why> {
        let job = &self.jobs[j as usize];
        let policy = self.cfg.policy;
        let mut best: Option<(f64, f64, u32, u32)> = None;
        let mut blocked_by_quota = None;
        for c in 0..self.clusters.len() as u32 {
            if job.dur[c as usize].is_none() || skip == Some(c) {
                continue;
            }
            let i = &self.index[c as usize];
            let size = if job.min_size < job.size {
                i.largest_fit(job.min_size, job.size)
            } else if i.fits(job.size) {
                Some(job.size)
            } else {
                None
            };
            let Some(mut size) = size else {
                // No room now; a quota that would refuse it anyway is the wait to name: room
                // that frees up would not start it.
                if blocked_by_quota.is_none() {
                    blocked_by_quota = self.quota_hit(j, c, job.min_size);
                }
                continue;
            };
            if let Some(hit) = self.quota_hit(j, c, size) {
                // An elastic run over a cap takes what the caps leave, down to its minimum.
                let room = (job.min_size < job.size)
                    .then(|| u32::try_from(self.quota_room(j, c)).unwrap_or(u32::MAX))
                    .filter(|&room| room >= job.min_size);
                match room.and_then(|room| i.largest_fit(job.min_size, size.min(room))) {
                    Some(within) => size = within,
                    None => {
                        blocked_by_quota = Some(hit);
                        continue;
                    }
                }
            }
            let price = self.clusters[c as usize].price_per_accelerator_hour;
            let score = match policy {
                Policy::Switchyard => (self.predicted_s(j, c, size), price),
                // Heterogeneity-agnostic: the cluster with the most free accelerators.
                _ => (-(i.free() as f64), f64::from(c)),
            };
            if best.is_none_or(|b| (score.0, score.1) < (b.0, b.1)) {
                best = Some((score.0, score.1, c, size));
            }
        }
        match best {
            Some((score, _, c, size)) => {
                if policy == Policy::Switchyard
                    && let Some((best, slowdown)) = self.waits_for_faster(now, j, c, score)
                {
                    return Err(Why::WaitingFaster { best, slowdown });
                }
                Ok((c, size))
            }
            None => Err(match blocked_by_quota {
                Some(hit) => Why::Quota(hit),
                None => Why::NoCapacity { need: job.min_size },
            }),
        }
    }

    fn try_start(
        &mut self,
        now: f64,
        j: JobIdx,
        res: Option<&mut Reservation>,
        out: &mut Vec<Decision>,
    ) -> bool {
        let (mut cluster, mut size) = match self.choose(now, j, None) {
            Ok(x) => x,
            Err(why) => {
                self.note_when_refusal_lapses(now, j);
                // A re-queued job keeps saying why it was re-queued while it waits for room,
                // and what room it waits for.
                let job = &mut self.jobs[j as usize];
                match (&mut job.why, why) {
                    (
                        Why::AfterFailure { need, .. } | Why::AfterPreemption { need },
                        Why::NoCapacity { need: wanted },
                    ) => *need = Some(wanted),
                    (current, why) => *current = why,
                }
                return false;
            }
        };
        let mut why = match self.cfg.policy {
            Policy::Fifo => "fifo: first in line that fits".to_owned(),
            Policy::Priority => format!(
                "priority {}: highest waiting that fits",
                self.jobs[j as usize].priority
            ),
            Policy::Fair => format!(
                "fair share: team {} furthest below its share",
                self.tenants[self.jobs[j as usize].tenant as usize].name
            ),
            Policy::Switchyard => format!(
                "switchyard: team {} below its share, shortest predicted remaining time; fastest predicted finish",
                self.tenants[self.jobs[j as usize].tenant as usize].name
            ),
        };
        if let Some(r) = res
            && r.job != j
            && r.cluster == cluster
        {
            let end = now + self.predicted_s(j, cluster, size);
            if end <= r.shadow_s {
                why.push_str(" (backfilled: ends before the reservation)");
            } else if u64::from(size) <= r.extra {
                r.extra -= u64::from(size);
                why.push_str(" (backfilled: uses accelerators the reservation does not need)");
            } else if let Ok((other, other_size)) = self.choose(now, j, Some(r.cluster)) {
                // The reservation holds only its own cluster: another one may take the job.
                (cluster, size) = (other, other_size);
            } else {
                self.jobs[j as usize].why = Why::Reserved {
                    for_job: r.job,
                    for_order: self.jobs[r.job as usize].order,
                    shadow_s: r.shadow_s,
                };
                return false;
            }
        }
        let Some(shares) = self.index[cluster as usize].place(size) else {
            self.jobs[j as usize].why = Why::NoCapacity { need: size };
            return false;
        };
        self.start(now, j, cluster, shares, &why, out);
        true
    }

    /// Brings [`Scheduler::recheck_at`] forward to when a refusal of `j` may lapse with time
    /// alone (under `switchyard`): its wait for faster hardware ends (then it may start, or
    /// make room by preemption, on slower clusters), or it starts to starve and gets a
    /// reservation.
    fn note_when_refusal_lapses(&mut self, now: f64, j: JobIdx) {
        if self.cfg.policy != Policy::Switchyard {
            return;
        }
        let job = &self.jobs[j as usize];
        let mut at = job.submit_s + self.cfg.starvation_s.max(2.0 * self.best_remaining(j));
        if let Some((fastest, best_s)) = self.fastest_run(j)
            && now < job.submit_s + best_s
            && (0..self.clusters.len() as u32).any(|c| {
                c != fastest
                    && job.dur[c as usize].is_some()
                    && self.predicted_s(j, c, job.min_size) / best_s.max(1e-9)
                        > self.cfg.max_slowdown
            })
        {
            at = at.min(job.submit_s + best_s);
        }
        // At `at` itself the refusal still holds (it lapses after): a pass then looks again.
        if at >= now {
            self.recheck_at = self.recheck_at.min(at);
        }
    }

    /// Whether `j` would be refused on cluster `c` even with room made for it: a reservation
    /// for another job holds `c` (`res`), or `switchyard` finds `c` too slow for it yet.
    /// Room is made (runs preempted, replicas reclaimed) only where neither holds.
    fn would_not_start_there(
        &self,
        now: f64,
        j: JobIdx,
        c: u32,
        res: Option<&Reservation>,
    ) -> bool {
        res.is_some_and(|r| r.job != j && r.cluster == c)
            || self
                .waits_for_faster(
                    now,
                    j,
                    c,
                    self.predicted_s(j, c, self.jobs[j as usize].min_size),
                )
                .is_some()
    }

    /// Frees room for `j` by preempting as few whole jobs as possible that the policy lets it
    /// displace: lower priority, or (fair, switchyard) teams borrowing beyond their guarantee
    /// when `j`'s team is within its own.
    /// Never on a cluster where `j` would not start once the room is made: one a reservation
    /// for another job holds (`res`), or one `switchyard` finds too slow for it yet.
    fn try_preempt(
        &mut self,
        now: f64,
        j: JobIdx,
        res: Option<&Reservation>,
        out: &mut Vec<Decision>,
    ) -> bool {
        let passed_fresh_runs = std::cell::Cell::new(false);
        let made_room = self.preempt_for(now, j, res, out, &passed_fresh_runs);
        if passed_fresh_runs.get() {
            // A run it could have displaced had only just started: that refusal lapses as
            // soon as the clock moves, so the next pass looks at the whole queue again (the
            // quick pass over new jobs alone would leave `j` waiting for a release).
            self.recheck_at = self.recheck_at.min(now);
        }
        made_room
    }

    /// [`Scheduler::try_preempt`]; `passed_fresh_runs` says whether a run was left alone
    /// only because it started at this instant.
    fn preempt_for(
        &mut self,
        now: f64,
        j: JobIdx,
        res: Option<&Reservation>,
        out: &mut Vec<Decision>,
        passed_fresh_runs: &std::cell::Cell<bool>,
    ) -> bool {
        let job = &self.jobs[j as usize];
        let need = u64::from(job.min_size);
        let prio = job.priority;
        let policy = self.cfg.policy;
        let mut best: Option<(usize, u64, u32, Vec<JobIdx>)> = None;
        for c in 0..self.clusters.len() as u32 {
            if self.jobs[j as usize].dur[c as usize].is_none()
                || !self.quota_ok(j, c, job.min_size)
                || self.would_not_start_there(now, j, c, res)
            {
                continue;
            }
            let free = self.index[c as usize].free();
            if self.index[c as usize].fits(job.min_size) {
                continue;
            }
            let free = free.min(need.saturating_sub(1));
            let reclaim = policy != Policy::Priority && self.under_guarantee(j, c, job.min_size);
            // A run started at this very instant has made no progress: preempting it again
            // now would only thrash (and two rules could hand the same accelerators back and
            // forth forever without the clock moving).
            let started_now = |v: JobIdx| {
                let fresh = self.jobs[v as usize]
                    .run
                    .as_ref()
                    .is_some_and(|r| r.start_s >= now);
                if fresh {
                    passed_fresh_runs.set(true);
                }
                fresh
            };
            // Candidates: (accelerators, job, whether it may go only as capacity its team
            // borrows). Each is checked on its own here; `Taken` checks them together.
            let mut cands: Vec<(u64, JobIdx, bool)> = Vec::new();
            for &(p, _, v) in self.running_on[c as usize].iter().take(10_000) {
                // (A run only on drained nodes makes no room: it runs on to its end.)
                if self.room_of(c, v) == 0 {
                    continue;
                }
                let same_team = self.jobs[v as usize].tenant == self.jobs[j as usize].tenant;
                // Priority orders jobs within a team and over capacity a team borrows; it
                // does not take another team's guaranteed quota (that team would reclaim it at
                // once, and the two rules would hand the accelerators back and forth).
                let by_priority = policy != Policy::Fair
                    && p < prio
                    && (policy == Policy::Priority || same_team || self.borrowing(v, c));
                let by_quota = reclaim && !same_team && self.borrowing(v, c);
                if !(by_priority || by_quota) {
                    if p >= prio && !reclaim {
                        break;
                    }
                    continue;
                }
                if started_now(v) {
                    continue;
                }
                let size = u64::from(self.jobs[v as usize].run.as_ref().map_or(0, |r| r.size));
                cands.push((size, v, policy != Policy::Priority && !same_team));
            }
            if policy == Policy::Switchyard {
                // Shortest remaining time first: a training run with far more left to do than
                // this job needs in all checkpoints and yields (it loses only a restart).
                let mine = self.predicted_s(j, c, job.min_size);
                let threshold = self.cfg.preempt_factor * mine + 2.0 * self.training_restart_s(c);
                for &(end, _, v) in self.ends[c as usize].iter().rev().take(256) {
                    if f64::from_bits(end) - now <= threshold {
                        break;
                    }
                    let vj = &self.jobs[v as usize];
                    // Speed never overrides a guarantee: a run within its team's guaranteed
                    // quota yields only to a job that is within its own.
                    // (A paused run would not checkpoint on the way out.)
                    if vj.kind != JobKind::Training
                        || vj.starved
                        || vj.priority > prio
                        || (!reclaim && !self.borrowing(v, c))
                        || self.room_of(c, v) == 0
                        || vj.run.as_ref().is_some_and(|r| r.paused_at.is_some())
                        || started_now(v)
                    {
                        continue;
                    }
                    let same_team = vj.tenant == self.jobs[j as usize].tenant;
                    let guarded = !reclaim && !same_team;
                    // A run another rule listed already: it is guarded only if both rules
                    // guard it.
                    if let Some(listed) = cands.iter_mut().find(|x| x.1 == v) {
                        listed.2 &= guarded;
                        continue;
                    }
                    let size = u64::from(vj.run.as_ref().map_or(0, |r| r.size));
                    cands.push((size, v, guarded));
                }
            }
            let short = need - free;
            let jobs = &self.jobs;
            let largest_first = |cands: &mut Vec<(u64, JobIdx, bool)>| {
                cands.sort_by_key(|&(s, v, _)| {
                    (
                        std::cmp::Reverse(s),
                        std::cmp::Reverse(jobs[v as usize].order),
                    )
                });
            };
            let mut taken = Taken::new(self, c);
            if let Some(&(s, v, _)) = cands
                .iter()
                .filter(|&&(_, v, _)| self.room_of(c, v) >= short)
                .min_by_key(|&&(s, v, _)| (s, std::cmp::Reverse(jobs[v as usize].order)))
            {
                // Admissible on its own: its team was checked as borrowing it.
                taken.take(self, s, v);
            } else {
                largest_first(&mut cands);
                for &(s, v, guarded) in &cands {
                    if taken.accelerators >= short {
                        break;
                    }
                    if taken.admits(self, s, v, guarded) {
                        taken.take(self, s, v);
                    }
                }
                if taken.accelerators < short {
                    continue;
                }
            }
            // Enough accelerators is not enough room: a gang of whole nodes needs nodes that
            // come free entirely. Take more candidates (largest first) until the victims' nodes
            // make room, or leave this cluster alone rather than evict for nothing.
            let index = &self.index[c as usize];
            if !index.fits_after_release(job.min_size, &taken.released)
                && job.min_size >= index.per_node()
            {
                // A gang of whole nodes: free the nodes that are cheapest to empty (every job
                // on them a candidate), counting each victim once.
                let cand_of: HashMap<JobIdx, (u64, bool)> =
                    cands.iter().map(|&(s, v, g)| (v, (s, g))).collect();
                let mut touched: Vec<u32> = cands
                    .iter()
                    .flat_map(|&(_, v, _)| jobs[v as usize].run.iter().flat_map(|r| &r.shares))
                    .map(|s| s.node)
                    .collect();
                touched.sort_unstable();
                touched.dedup();
                let mut nodes: Vec<(u64, u32, Vec<JobIdx>)> = Vec::new();
                for node in touched {
                    if index.is_down(node) {
                        continue;
                    }
                    let mut on: Vec<JobIdx> = self.occupants[c as usize][node as usize]
                        .iter()
                        .map(|&(x, _)| x)
                        .collect();
                    on.sort_unstable_by_key(|&x| (jobs[x as usize].order, x));
                    on.dedup();
                    if on.iter().all(|x| cand_of.contains_key(x)) {
                        let cost = on.iter().map(|x| cand_of[x].0).sum();
                        nodes.push((cost, node, on));
                    }
                }
                nodes.sort_unstable();
                let mut by_nodes = Taken::new(self, c);
                for (_, _, on) in nodes {
                    // A node is emptied whole or not at all.
                    let runs: Vec<(u64, JobIdx, bool)> = on
                        .into_iter()
                        .filter(|&v| !by_nodes.has(v))
                        .map(|v| (cand_of[&v].0, v, cand_of[&v].1))
                        .collect();
                    if !by_nodes.admits_all(self, &runs) {
                        continue;
                    }
                    for (s, v, _) in runs {
                        by_nodes.take(self, s, v);
                    }
                    if index.fits_after_release(job.min_size, &by_nodes.released) {
                        taken = by_nodes;
                        break;
                    }
                }
            }
            if !index.fits_after_release(job.min_size, &taken.released) {
                largest_first(&mut cands);
                let mut room = false;
                for &(s, v, guarded) in &cands {
                    if !taken.has(v) && taken.admits(self, s, v, guarded) {
                        taken.take(self, s, v);
                        if index.fits_after_release(job.min_size, &taken.released) {
                            room = true;
                            break;
                        }
                    }
                }
                if !room {
                    continue;
                }
            }
            let victims = taken.victims;
            let evicted: u64 = victims.iter().map(|v| v.0).sum();
            let ids: Vec<JobIdx> = victims.iter().map(|v| v.1).collect();
            if best
                .as_ref()
                .is_none_or(|b| (ids.len(), evicted) < (b.0, b.1))
            {
                best = Some((ids.len(), evicted, c, ids));
            }
        }
        let Some((_, _, c, victims)) = best else {
            return self.reclaim_replicas(now, j, res, out)
                || self.relocate_replicas(now, j, res, out);
        };
        // Which rule took each victim, decided before any is stopped (stopping one changes
        // what its team borrows).
        let reclaim = policy != Policy::Priority
            && self.under_guarantee(j, c, self.jobs[j as usize].min_size);
        // A team's runs are taken as borrowed capacity only while, taken together, they leave
        // its guarantees whole (as `Taken` admitted them); past that the yield rule took them.
        let mut given = Taken::new(self, c);
        let reasons: Vec<String> = victims
            .iter()
            .map(|&v| {
                let vj = &self.jobs[v as usize];
                let same_team = vj.tenant == self.jobs[j as usize].tenant;
                let by = self.other_job_named_for(j, v);
                let size = vj.run.as_ref().map_or(0, |r| u64::from(r.size));
                let borrowed = given.admits(self, size, v, true);
                given.take(self, size, v);
                // The rule that picked it, as the candidate search applies them.
                if vj.priority < prio
                    && policy != Policy::Fair
                    && (policy == Policy::Priority || same_team || borrowed)
                {
                    if same_team {
                        format!("preempted for {by} (priority {prio} > {})", vj.priority)
                    } else {
                        format!("preempted for {by}, of a higher priority than this job's {}", vj.priority)
                    }
                } else if reclaim && !same_team && borrowed {
                    format!("preempted for {by}: its team reclaims quota this team was borrowing")
                } else {
                    format!(
                        "preempted for {by}, which needs far less time than this job has left (checkpointed; loses only a restart)"
                    )
                }
            })
            .collect();
        for (v, reason) in victims.into_iter().zip(reasons) {
            let paused = self.jobs[v as usize]
                .run
                .as_ref()
                .is_some_and(|r| r.paused_at.is_some());
            self.stop(now, v, false, true);
            self.stats[c as usize].preemptions += 1;
            self.epoch += 1;
            let vj = &mut self.jobs[v as usize];
            vj.restarts += 1;
            vj.why = Why::AfterPreemption { need: None };
            let reason = if self.jobs[v as usize].kind == JobKind::Batch {
                format!("{reason}; a batch job does not checkpoint: it starts over")
            } else if paused {
                format!(
                    "{reason}; suspended, it could not checkpoint: it goes on from its last \
                     checkpoint"
                )
            } else {
                reason
            };
            self.enqueue(v);
            self.emit(out, now, Action::Preempt { job: v, cluster: c }, reason);
        }
        true
    }

    /// Brings every inference service to its wanted replica count where capacity allows.
    fn place_services(&mut self, now: f64, out: &mut Vec<Decision>) {
        let services: Vec<JobIdx> = self.services.iter().map(|&(_, j)| j).collect();
        for j in services {
            loop {
                let job = &self.jobs[j as usize];
                let have = job.replicas.len() as u32;
                if have > job.target_replicas {
                    // The newest replica on a drained node goes first: its node is being
                    // emptied for repair. Otherwise the newest.
                    let index = &self.index;
                    let at = job
                        .replicas
                        .iter()
                        .rposition(|r| {
                            let i = &index[r.cluster as usize];
                            r.shares.iter().any(|s| i.is_drained(s.node))
                        })
                        .unwrap_or(job.replicas.len() - 1);
                    let rep = self.jobs[j as usize].replicas.remove(at);
                    let c = rep.cluster;
                    let nodes = rep.shares.clone();
                    let on: Vec<u32> = nodes.iter().map(|s| s.node).collect();
                    let drained: Vec<u32> = on
                        .iter()
                        .copied()
                        .filter(|&n| self.index[c as usize].is_drained(n))
                        .collect();
                    let cluster = &self.clusters[c as usize].name;
                    let named = match self.replica_node_list(c, &on) {
                        Some(list) => format!("{} {list} of {cluster}", node_noun(on.len())),
                        None => format!("{} nodes of {cluster}", on.len()),
                    };
                    // Which of its nodes is drained, where that is not all of them.
                    let drained = match drained.len() {
                        0 => String::new(),
                        n if n == on.len() => " (drained)".into(),
                        _ => format!(" ({} drained)", self.node_list(c as usize, &drained)),
                    };
                    let reason = format!(
                        "scaled down: {} wanted; the replica on {named}{drained} goes",
                        count(self.jobs[j as usize].target_replicas, "replica", "replicas"),
                    );
                    self.drop_replica(now, j, rep);
                    self.emit(
                        out,
                        now,
                        Action::RemoveReplica {
                            job: j,
                            cluster: c,
                            nodes,
                        },
                        reason,
                    );
                    continue;
                }
                if have == job.target_replicas {
                    break;
                }
                // Cheapest cluster that fits (switchyard); otherwise the one with most room.
                let size = job.size;
                let mut best: Option<(f64, u32)> = None;
                let mut blocked_by_quota = None;
                for c in 0..self.clusters.len() as u32 {
                    if job.dur[c as usize].is_none() || !self.index[c as usize].fits(size) {
                        continue;
                    }
                    if let Some(hit) = self.quota_hit(j, c, size) {
                        blocked_by_quota = Some(hit);
                        continue;
                    }
                    let score = match self.cfg.policy {
                        Policy::Switchyard => self.clusters[c as usize].price_per_accelerator_hour,
                        _ => -(self.index[c as usize].free() as f64),
                    };
                    if best.is_none_or(|b| score < b.0) {
                        best = Some((score, c));
                    }
                }
                let Some((_, c)) = best else {
                    self.jobs[j as usize].why = match blocked_by_quota {
                        Some(hit) => Why::Quota(hit),
                        None => Why::NoCapacity { need: size },
                    };
                    break;
                };
                if !self.start_replica(now, j, c, None, out) {
                    break;
                }
            }
        }
    }

    /// Starts service `j`'s replicas on the shares they served on under an earlier scheduler
    /// ([`Scheduler::recovered_replicas_at`]) where those are up (or drained) with room and
    /// its quotas allow, up to the replicas it wants.
    fn replicas_back_where_they_served(&mut self, now: f64, j: JobIdx, out: &mut Vec<Decision>) {
        for (c, shares) in self.recovered_replicas.remove(&j).unwrap_or_default() {
            let job = &self.jobs[j as usize];
            if !matches!(job.state, JobState::Pending | JobState::Running) {
                return;
            }
            let size: u32 = shares.iter().map(|s| s.accelerators).sum();
            if job.replicas.len() as u32 >= job.target_replicas
                || (c as usize) >= self.clusters.len()
                || job.dur[c as usize].is_none()
                || size != job.size
                || self.quota_hit(j, c, size).is_some()
                || !self.index[c as usize].place_exact(&shares)
            {
                continue;
            }
            self.add_replica_on(
                now,
                j,
                c,
                shares,
                None,
                "; recovered: placed where it served under the earlier scheduling leader",
                out,
            );
        }
    }

    /// Places one more replica of service `j` on cluster `c`, where it fits: a new one, or one
    /// `moved` from another cluster (which the caller then removes there). False when the
    /// cluster's index finds no room after all.
    fn start_replica(
        &mut self,
        now: f64,
        j: JobIdx,
        c: u32,
        moved: Option<&ReplicaMove>,
        out: &mut Vec<Decision>,
    ) -> bool {
        let note = if moved.is_none() && self.cfg.policy == Policy::Switchyard {
            ", cheapest cluster with room"
        } else {
            ""
        };
        let size = self.jobs[j as usize].size;
        let Some(shares) = self.index[c as usize].place(size) else {
            return false;
        };
        self.add_replica_on(now, j, c, shares, moved, note, out);
        true
    }

    /// Starts a replica of service `j` on `shares` of cluster `c`, already taken in its index.
    #[allow(clippy::too_many_arguments)]
    fn add_replica_on(
        &mut self,
        now: f64,
        j: JobIdx,
        c: u32,
        shares: Vec<NodeShare>,
        moved: Option<&ReplicaMove>,
        note: &str,
        out: &mut Vec<Decision>,
    ) {
        let size = self.jobs[j as usize].size;
        for s in &shares {
            self.occupants[c as usize][s.node as usize].push((j, 0));
        }
        self.charge(j, c, size, true);
        let spread = self.index[c as usize].spread(&shares);
        let job = &mut self.jobs[j as usize];
        if job.replicas.is_empty() {
            job.state = JobState::Running;
            self.running += 1;
        }
        job.first_start_s.get_or_insert(now);
        job.last_cluster = Some(c);
        job.replicas.push(Replica {
            cluster: c,
            shares: shares.clone(),
            start_s: now,
        });
        let target = job.target_replicas;
        let have = job.replicas.len();
        let cl = &self.clusters[c as usize];
        // A replica spans a few nodes: they are named, as a failure or a scale-down
        // would name them.
        let on: Vec<u32> = shares.iter().map(|s| s.node).collect();
        let named = self
            .replica_node_list(c, &on)
            .map(|list| format!(" ({} {list})", node_noun(on.len())))
            .unwrap_or_default();
        let reason = match moved {
            Some(m) => format!(
                "replica moved from {} to make room for {}: {size} {} on {} in {spread}{named}",
                m.from, m.for_job, cl.accelerator.name, cl.name,
            ),
            None => format!(
                "replica {have} of {target} wanted; {size} {} on {} in {spread}{named}{note}",
                cl.accelerator.name, cl.name,
            ),
        };
        self.emit(
            out,
            now,
            Action::AddReplica {
                job: j,
                cluster: c,
                accelerators: size,
                nodes: shares,
            },
            reason,
        );
    }

    /// Ends every service (the driver calls this when the finite work is done).
    pub fn stop_services(&mut self, now: f64, out: &mut Vec<Decision>) {
        let services: Vec<JobIdx> = self.services.iter().map(|&(_, j)| j).collect();
        for j in services {
            self.cancel(now, j, out);
        }
    }

    /// Whether some cluster job `j` accepts has `need` accelerators on nodes that are up,
    /// busy or not.
    fn enough_nodes_up(&self, j: JobIdx, need: u32) -> bool {
        let job = &self.jobs[j as usize];
        (0..self.clusters.len()).any(|c| {
            job.dur[c].is_some() && self.index[c].healthy_accelerators() >= u64::from(need)
        })
    }

    /// Whether a pass has looked at job `j` yet (its `why` is more than "not yet considered").
    pub fn considered(&self, j: JobIdx) -> bool {
        self.jobs
            .get(j as usize)
            .is_some_and(|job| !matches!(job.why, Why::NotTried))
    }

    /// Why a job is where it is, in words.
    pub fn why(&self, j: JobIdx) -> String {
        let Some(job) = self.jobs.get(j as usize) else {
            return format!("no job #{j}");
        };
        match job.state {
            JobState::Running => {
                if let Some(r) = &job.run {
                    format!(
                        "running on {} of {} since {}",
                        count(r.size, "accelerator", "accelerators"),
                        self.clusters[r.cluster as usize].name,
                        human_s(r.start_s)
                    )
                } else {
                    format!(
                        "serving with {}",
                        count(job.replicas.len() as u64, "replica", "replicas")
                    )
                }
            }
            JobState::Done => "finished".into(),
            JobState::Cancelled => "cancelled".into(),
            JobState::Rejected => "rejected: it can never run on this fleet".into(),
            JobState::Failed => "failed".into(),
            JobState::Pending => match job.why {
                Why::NotTried => "queued; not yet considered".into(),
                Why::NoCapacity { need } => self.waiting_for(j, need),
                Why::Reserved {
                    for_job,
                    for_order,
                    shadow_s,
                } => {
                    if for_job == j {
                        format!(
                            "holds a reservation: enough accelerators free up by {}",
                            human_s(shadow_s)
                        )
                    } else if self.jobs[for_job as usize].order != for_order
                        || self.jobs[for_job as usize].id.is_empty()
                    {
                        "waited for a reservation of a job that has since ended; tried again on the next pass".into()
                    } else {
                        format!(
                            "would delay {}, which has a reservation at {}",
                            self.other_job_named_for(for_job, j),
                            human_s(shadow_s)
                        )
                    }
                }
                Why::Quota(hit) => self.quota_words(j, hit),
                Why::WaitingFaster { best, slowdown } => format!(
                    "waiting for {}: the free clusters would run it {slowdown:.1}x slower",
                    self.clusters[best as usize].name
                ),
                Why::AfterFailure { lost_s, need, node } => format!(
                    "re-queued after {} (lost {}); first in line at its priority{}",
                    if node {
                        "a node failure"
                    } else {
                        "its run failed"
                    },
                    human_s(lost_s),
                    need.map(|n| format!("; {}", self.waiting_for(j, n)))
                        .unwrap_or_default()
                ),
                Why::AfterPreemption { need } => format!(
                    "re-queued after preemption{}",
                    need.map(|n| format!("; {}", self.waiting_for(j, n)))
                        .unwrap_or_default()
                ),
            },
        }
    }

    /// Why a running service has fewer replicas than it wants, in words, after the last pass
    /// that tried to place one more: `None` when it has them all (or is no running service).
    pub fn replicas_short_why(&self, j: JobIdx) -> Option<String> {
        let job = self.jobs.get(j as usize)?;
        if job.state != JobState::Running
            || job.kind != JobKind::Inference
            || job.replicas.len() as u32 >= job.target_replicas
        {
            return None;
        }
        match job.why {
            Why::NoCapacity { need } => Some(self.waiting_for(j, need)),
            Why::Quota(hit) => Some(self.quota_words(j, hit)),
            _ => None,
        }
    }

    /// Job `j`'s team or organisation is at the quota cap `hit`, in words.
    fn quota_words(&self, j: JobIdx, hit: QuotaHit) -> String {
        let job = &self.jobs[j as usize];
        let t = &self.tenants[job.tenant as usize];
        let (whose, usage, total) = if hit.org {
            let o = &self.orgs[t.org as usize];
            (
                format!("its organisation {}", o.name),
                &o.usage,
                o.usage_total,
            )
        } else {
            (format!("its team {}", t.name), &t.usage, t.usage_total)
        };
        let (where_, used) = match hit.cluster {
            Some(c) => (
                format!("quota cap on {}", self.clusters[c as usize].name),
                usage[c as usize],
            ),
            None => ("fleet-wide quota cap".to_owned(), total),
        };
        let needs = match job.kind {
            JobKind::Inference => format!("a replica needs {}", grouped(job.size.into())),
            _ if job.min_size < job.size => {
                format!("this job needs at least {}", grouped(job.min_size.into()))
            }
            _ => format!("this job needs {}", grouped(job.size.into())),
        };
        format!(
            "{whose} is at its {where_}: {} of {} accelerators in use, and {needs}",
            grouped(used),
            grouped(hit.cap)
        )
    }

    /// A replica's `nodes` of cluster `c` by name, when it spans few enough to list
    /// ([`NAMED_REPLICA_NODES`]).
    fn replica_node_list(&self, c: u32, nodes: &[u32]) -> Option<String> {
        (nodes.len() <= NAMED_REPLICA_NODES).then(|| self.node_list(c as usize, nodes))
    }

    /// "waiting for 64 free accelerators in one cluster it accepts (…)", or that too few nodes
    /// are up when they are down rather than busy.
    fn waiting_for(&self, j: JobIdx, need: u32) -> String {
        // Capacity an administrator took out of service is named: the wait may be theirs.
        let drained: u32 = (0..self.clusters.len())
            .filter(|&c| self.jobs[j as usize].dur[c].is_some())
            .map(|c| self.index[c].drained_nodes())
            .sum();
        let drained = if drained > 0 {
            format!(
                "; {} no new work",
                count(drained, "drained node takes", "drained nodes take")
            )
        } else {
            String::new()
        };
        if !self.enough_nodes_up(j, need) {
            // Not busy: down (failed, drained, or never registered by an agent).
            format!(
                "waiting for {}: too few nodes are up in the clusters it accepts \
                 (failed, drained, or not registered yet){drained}",
                count(need, "free accelerator", "free accelerators")
            )
        } else {
            if need == 1 {
                format!("waiting for 1 free accelerator in a cluster it accepts{drained}")
            } else {
                format!(
                    "waiting for {} free accelerators in one cluster it accepts ({} is never \
                     split){drained}",
                    grouped(need.into()),
                    unsplit(self.jobs[j as usize].kind)
                )
            }
        }
    }

    /// Job `other` as a message to `viewer`'s team names it: by its id within the team, as "a
    /// job of another team" beyond it (events and reasons are read by the job's team; another
    /// team's job ids are not theirs to see).
    fn other_job_named_for(&self, other: JobIdx, viewer: JobIdx) -> String {
        let (o, v) = (&self.jobs[other as usize], &self.jobs[viewer as usize]);
        if o.tenant == v.tenant {
            o.id.to_string()
        } else {
            "a job of another team".to_owned()
        }
    }

    /// Checks the scheduler's invariants; `Err` says which one broke. Costs O(nodes + jobs):
    /// for tests.
    pub fn check_invariants(&self) -> Result<(), String> {
        let n = self.clusters.len();
        let runs = self.jobs.iter().filter(|j| j.run.is_some()).count();
        let entries: usize = self.ends.iter().map(BTreeSet::len).sum();
        if runs != entries {
            return Err(format!("{entries} predicted ends for {runs} runs"));
        }
        let mut used: Vec<Vec<u32>> = self
            .index
            .iter()
            .map(|i| vec![0; i.nodes() as usize])
            .collect();
        let mut shares_on = used.clone();
        let mut tenant_use = vec![vec![0u64; n]; self.tenants.len()];
        let mut queued = 0u64;
        let mut running = 0u64;
        for (idx, j) in self.jobs.iter().enumerate() {
            let in_queue = j
                .key
                .as_ref()
                .is_some_and(|(s, k)| self.queues[*s as usize].contains(k));
            if j.key.is_some() && !in_queue {
                return Err(format!("job {} has a stale queue key", j.id));
            }
            let mut allocs: Vec<(u32, u32, &[NodeShare])> = Vec::new();
            if let Some(r) = &j.run {
                allocs.push((r.cluster, r.size, &r.shares));
                if !self.ends[r.cluster as usize].contains(&(bits(r.end_s), j.order, idx as JobIdx))
                {
                    return Err(format!("job {}'s predicted end is stale in `ends`", j.id));
                }
                if r.paused_at.is_some() && !r.held {
                    return Err(format!("job {} is paused but not held", j.id));
                }
            }
            for rep in &j.replicas {
                allocs.push((rep.cluster, j.size, &rep.shares));
            }
            match j.state {
                JobState::Pending => {
                    if j.kind != JobKind::Inference && !in_queue {
                        return Err(format!("pending job {} is not queued", j.id));
                    }
                    if !allocs.is_empty() {
                        return Err(format!("pending job {} holds accelerators", j.id));
                    }
                    if in_queue {
                        queued += 1;
                    }
                }
                JobState::Running => {
                    running += 1;
                    if in_queue {
                        return Err(format!("running job {} is also queued", j.id));
                    }
                    if allocs.is_empty() {
                        return Err(format!("running job {} holds nothing", j.id));
                    }
                }
                _ => {
                    if in_queue || !allocs.is_empty() {
                        return Err(format!(
                            "finished job {} is queued or holds accelerators",
                            j.id
                        ));
                    }
                }
            }
            if let Some(r) = &j.run
                && (r.size < j.min_size || r.size > j.size)
            {
                return Err(format!("job {} runs on {} outside its range", j.id, r.size));
            }
            for (c, size, shares) in allocs {
                let total: u32 = shares.iter().map(|s| s.accelerators).sum();
                if total != size {
                    return Err(format!(
                        "gang {} holds {total} accelerators, not all-or-nothing {size}",
                        j.id
                    ));
                }
                for s in shares {
                    let index = &self.index[c as usize];
                    if index.is_down(s.node) && !index.is_drained(s.node) {
                        return Err(format!("job {} on failed node {}", j.id, s.node));
                    }
                    if !self.occupants[c as usize][s.node as usize]
                        .iter()
                        .any(|&(x, _)| x == idx as JobIdx)
                    {
                        return Err(format!(
                            "job {} missing from node {}'s occupants",
                            j.id, s.node
                        ));
                    }
                    used[c as usize][s.node as usize] += s.accelerators;
                    shares_on[c as usize][s.node as usize] += 1;
                }
                tenant_use[j.tenant as usize][c as usize] += u64::from(size);
            }
        }
        if queued != self.pending {
            return Err(format!(
                "{queued} queued jobs but pending counter {}",
                self.pending
            ));
        }
        if running != self.running {
            return Err(format!(
                "{running} running jobs but counter {}",
                self.running
            ));
        }
        let queue_total: usize = self.queues.iter().map(BTreeSet::len).sum();
        if queue_total as u64 != queued {
            return Err(format!(
                "queues hold {queue_total} entries for {queued} pending jobs"
            ));
        }
        for (c, i) in self.index.iter().enumerate() {
            i.check()
                .map_err(|e| format!("{}: {e}", self.clusters[c].name))?;
            for node in 0..i.nodes() {
                let entries = self.occupants[c][node as usize].len();
                if entries != shares_on[c][node as usize] as usize {
                    return Err(format!(
                        "{} node {node}: {entries} occupant entries for {} allocations (a stale one?)",
                        self.clusters[c].name, shares_on[c][node as usize]
                    ));
                }
                if used[c][node as usize] != i.used_on(node) {
                    return Err(format!(
                        "{} node {node}: jobs hold {} accelerators, index says {} (an accelerator given twice?)",
                        self.clusters[c].name,
                        used[c][node as usize],
                        i.used_on(node)
                    ));
                }
            }
        }
        for (t, tenant) in self.tenants.iter().enumerate() {
            if tenant_use[t] != tenant.usage {
                return Err(format!("team {} usage drifted", tenant.name));
            }
            for r in &tenant.rules {
                let (u, cap) = match r.cluster {
                    Some(c) => (tenant.usage[c as usize], r.cap),
                    None => (tenant.usage_total, r.cap),
                };
                if cap.is_some_and(|cap| u > cap) {
                    return Err(format!("team {} above its quota cap", tenant.name));
                }
            }
        }
        // A released slot is referenced nowhere until a submission takes it again.
        let released: HashSet<JobIdx> = self.free_slots.iter().copied().collect();
        if released.len() != self.free_slots.len() {
            return Err("a slot was released twice".into());
        }
        let referenced = self
            .ends
            .iter()
            .flatten()
            .map(|&(_, _, j)| j)
            .chain(self.running_on.iter().flatten().map(|&(_, _, j)| j))
            .chain(self.occupants.iter().flatten().flatten().map(|&(j, _)| j))
            .chain(self.services.iter().map(|&(_, j)| j))
            .chain(self.reservation.map(|r| r.job));
        for j in referenced {
            if released.contains(&j) {
                return Err(format!("released slot {j} is still referenced"));
            }
        }
        Ok(())
    }
}

/// What of a job of `kind` is placed whole on one cluster, in words.
fn unsplit(kind: JobKind) -> &'static str {
    if kind == JobKind::Inference {
        "a replica"
    } else {
        "a gang"
    }
}

/// Seconds in the unit a person reads most easily.
pub fn human_s(s: f64) -> String {
    if !s.is_finite() {
        "forever".into()
    } else if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.1} min", s / 60.0)
    } else if s < 172_800.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.1} d", s / 86_400.0)
    }
}

/// Those of `failed` that `shares` are on.
fn on_shares(failed: &[u32], shares: &[NodeShare]) -> Vec<u32> {
    failed
        .iter()
        .copied()
        .filter(|&n| shares.iter().any(|s| s.node == n))
        .collect()
}

/// Where a restarted job resumes: batch jobs keep no checkpoint.
fn restart_origin(kind: JobKind) -> &'static str {
    if kind == JobKind::Batch {
        "from the beginning"
    } else {
        "from its last checkpoint"
    }
}
