//! The server's driver of the pure scheduler: store records in, [`Scheduler`] events, the
//! decisions out as store writes (a [`Batch`]) and backend [`Command`]s.
//!
//! Synchronous and clock-free like the scheduler itself (every call takes `now`), so it is
//! tested without a runtime. The only place the server touches `switchyard_sched`; if the
//! scheduler's API moves, this file moves with it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use switchyard_core::fleet::Fleet;
use switchyard_core::{JobKind, JobSpec, grouped};
use switchyard_sched::{
    Action, Config, Decision, Event, JobIdx, JobState as SchedState, Scheduler,
};
use switchyard_store::{Batch, JobRecord, JobState, JobUpdate, NewEvent};

use crate::api::{DEFAULT_MAX_RETRIES, JobCommand};
use crate::backend::{Command, NodeShare, RanOn};

/// Time in the scheduler: seconds since `origin_ms` (UTC midnight of the day this engine was
/// built, so that daily load curves line up with the time of day).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub origin_ms: i64,
}

impl Clock {
    pub fn starting_at(now_ms: i64) -> Self {
        Clock {
            origin_ms: now_ms - now_ms.rem_euclid(86_400_000),
        }
    }
    pub fn to_s(self, ms: i64) -> f64 {
        (ms - self.origin_ms) as f64 / 1000.0
    }
    pub fn to_ms(self, s: f64) -> i64 {
        if s.is_finite() {
            self.origin_ms + (s * 1000.0).round() as i64
        } else {
            i64::MAX
        }
    }
}

/// Whether two reasons say the same thing but for their figures: numbers standing on their
/// own (`8192`, `3.2`), not digits in a name (`colossus-1`, `j-00af`, `dc.1`, or one of
/// `spaced_names`, the fleet's names with a space, like `gpu 1`).
fn same_words(a: &str, b: &str, spaced_names: &[String]) -> bool {
    if spaced_names.is_empty() {
        words(a) == words(b)
    } else {
        words(&join_names(a, spaced_names)) == words(&join_names(b, spaced_names))
    }
}

/// Stands in for the whitespace of a spaced name: a control character, which no fleet name
/// holds, and which [`words`] reads as part of a name.
const NAME_JOINER: char = '\u{1}';

/// `text` with each whole-word occurrence of `names` (longest first) written as one word: its
/// whitespace replaced by [`NAME_JOINER`]. An occurrence inside a longer word (`a 1` in
/// `data 16`) is left alone.
fn join_names(text: &str, names: &[String]) -> String {
    let edge = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric() && c != NAME_JOINER);
    let mut text = text.to_owned();
    for name in names {
        let mut from = 0;
        while let Some(at) = text[from..].find(name.as_str()).map(|i| from + i) {
            let end = at + name.len();
            if edge(text[..at].chars().next_back()) && edge(text[end..].chars().next()) {
                let joined = name.replace(char::is_whitespace, &NAME_JOINER.to_string());
                text.replace_range(at..end, &joined);
                from = at + joined.len();
            } else {
                from = at + name.chars().next().map_or(1, char::len_utf8);
            }
        }
    }
    text
}

/// A reason without its figures.
fn words(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_name = false;
    let mut in_number = false;
    for c in s.chars() {
        if in_number && (c.is_ascii_digit() || c == '.' || c == ',') {
            continue;
        }
        in_number = c.is_ascii_digit() && !in_name;
        if !in_number {
            out.push(c);
        }
        in_name = c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | NAME_JOINER);
    }
    out
}

/// Why a run makes no progress though placed.
#[derive(Debug)]
struct Held {
    /// The cluster's reason, in words.
    why: String,
    since_ms: i64,
    /// Its work had begun and stands still (suspended), rather than not begun yet.
    paused: bool,
}

#[derive(Debug, Default)]
struct Tracked {
    id: String,
    size: u32,
    /// Accelerators it holds per cluster (index into the fleet's clusters): one entry for a
    /// gang, one per cluster a service's replicas run on.
    allocated_on: BTreeMap<u32, i64>,
    reason: String,
    /// Why it failed or was rejected, in the scheduler's words: its final reason says so.
    ended_why: Option<String>,
    started_ms: Option<i64>,
    finished_ms: Option<i64>,
    command: Option<Arc<JobCommand>>,
    max_retries: u32,
    /// Failed runs so far (this leader's term).
    failures: u32,
    /// Starts before this leader's term, and starts since.
    attempts_before: u32,
    attempts: u32,
    /// Restarts before this leader's term (a recovery counts as one).
    restarts_before: i64,
    /// It was running when this leader took over.
    recovered: bool,
    /// Why its cluster keeps its current run from working (queued, its work not begun; or
    /// paused), and since when, if it does.
    held: Option<Held>,
    /// Where node agents were last given its ranks (kept through changes of leader).
    ran_on: Option<switchyard_store::RanOn>,
    /// The cluster the store gave it when this leader took it in: a pending job shows where it
    /// last ran until it is placed again.
    cluster_before: Option<String>,
    /// Whether the backend said where in this term (until then its launches carry `ran_on`:
    /// an earlier leader's ranks may still run there).
    ran_on_this_term: bool,
    /// Inference services: the replica range submitted, and the count the scheduler wants
    /// (the minimum until [`Engine::scale`] says otherwise).
    replica_range: Option<(u32, u32)>,
    wanted: u32,
    /// The last count [`Engine::scale`] passed on (so that repeating it does nothing).
    scaled: Option<u32>,
    /// The kept fraction of the work last written to the store, and when.
    work_done: f64,
    work_done_ms: i64,
    /// Services: how often a replica's process was restarted by its backend in this term, and
    /// how the latest one ended (a crash-looping replica still counts as serving).
    replica_restarts: u32,
    last_replica_restart: Option<String>,
    /// Services short of replicas: why the next one waits, as the reason last written says
    /// ([`Scheduler::replicas_short_why`]), so that the reason follows it while nothing else
    /// about the job changes.
    short_why: Option<String>,
}

impl Tracked {
    /// Accelerators it holds in all.
    fn allocated(&self) -> i64 {
        self.allocated_on.values().sum()
    }

    /// The cluster where it holds the most (the first of a tie), if it holds any.
    fn main_cluster(&self) -> Option<u32> {
        self.allocated_on
            .iter()
            .max_by_key(|&(&c, &n)| (n, std::cmp::Reverse(c)))
            .map(|(&c, _)| c)
    }
}

/// How long a running job's newly kept progress may wait for a write of its own (it goes out
/// at once with any other change of the job): what a change of leader can lose beyond the
/// checkpoints themselves, against one row written per run per interval.
const WORK_DONE_WRITE_MS: i64 = 60_000;

/// What a job carries besides its scheduling spec.
#[derive(Debug, Clone, Default)]
pub struct JobExtras {
    pub command: Option<Arc<JobCommand>>,
    /// `None`: the default.
    pub max_retries: Option<u32>,
}

/// The scheduler and the mapping between its job handles and the store's ids.
#[derive(Debug)]
pub struct Engine {
    sched: Scheduler,
    clock: Clock,
    clusters: Vec<String>,
    /// The fleet's names with whitespace in them, longest first ([`same_words`]).
    spaced_names: Vec<String>,
    jobs: Vec<Tracked>,
    by_id: HashMap<String, JobIdx>,
    /// Pending or running in the scheduler.
    active: BTreeSet<JobIdx>,
    dirty: BTreeSet<JobIdx>,
    /// While the backend settles after a change of leader ([`Engine::set_settling`]).
    settling: bool,
    batch: Batch,
    commands: Vec<Command>,
    decisions: Vec<Decision>,
}

/// The names a reason may quote (clusters, accelerators, organisations, teams) that have
/// whitespace in them, longest first so that a name inside another is joined after it.
fn spaced_names(fleet: &Fleet) -> Vec<String> {
    let mut names: Vec<String> = fleet
        .clusters
        .iter()
        .flat_map(|c| [c.name.clone(), c.accelerator.name.to_owned()])
        .chain(fleet.tenants.iter().flat_map(|o| {
            std::iter::once(o.name.clone()).chain(o.teams.iter().map(|t| t.name.clone()))
        }))
        .filter(|n| n.contains(char::is_whitespace))
        .collect();
    names.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    names.dedup();
    names
}

impl Engine {
    pub fn new(fleet: &Fleet, clock: Clock) -> Self {
        Engine {
            sched: Scheduler::new(fleet, Default::default(), Config::default()),
            clock,
            clusters: fleet.clusters.iter().map(|c| c.name.clone()).collect(),
            spaced_names: spaced_names(fleet),
            jobs: Vec::new(),
            by_id: HashMap::new(),
            active: BTreeSet::new(),
            dirty: BTreeSet::new(),
            settling: false,
            batch: Batch::default(),
            commands: Vec::new(),
            decisions: Vec::new(),
        }
    }

    pub fn clock(&self) -> Clock {
        self.clock
    }

    pub fn knows(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    /// Jobs held in memory: pending, running, or ended since the last [`Engine::take`].
    pub fn held_jobs(&self) -> usize {
        self.by_id.len()
    }

    /// Jobs pending in the scheduler.
    pub fn pending(&self) -> u64 {
        self.sched.pending_jobs()
    }

    /// Decisions taken so far.
    pub fn decisions(&self) -> u64 {
        self.sched.decisions()
    }

    /// Takes a stored job into the scheduler (a new submission, or an active job a new
    /// leader recovers). The spec is the stored submission.
    pub fn admit(&mut self, now_ms: i64, record: &JobRecord, spec: JobSpec) {
        self.admit_with(now_ms, record, spec, JobExtras::default());
    }

    /// [`Engine::admit`] with the job's command and retry limit.
    pub fn admit_with(
        &mut self,
        now_ms: i64,
        record: &JobRecord,
        mut spec: JobSpec,
        extras: JobExtras,
    ) {
        if self.knows(&record.id) {
            self.batch.seen.push(record.id.clone());
            return;
        }
        spec.id = record.id.clone();
        spec.tenant = record.tenant.clone();
        spec.submit_s = self.clock.to_s(record.submitted_ms);
        let size = spec.accelerators;
        let replica_range = (spec.kind == JobKind::Inference).then(|| {
            spec.replicas
                .as_ref()
                .map_or((1, 1), |r| (r.min, r.max.max(r.min)))
        });
        let now = self.clock.to_s(now_ms);
        let idx = self
            .sched
            .handle(now, Event::Submit(Box::new(spec)), &mut self.decisions)
            .expect("a submission always returns its job handle");
        let tracked = Tracked {
            id: record.id.clone(),
            size,
            allocated_on: BTreeMap::new(),
            // Until the first pass places it, a recovered run is not "running on" anything.
            reason: match (&record.state, &record.cluster) {
                (JobState::Running, Some(cluster)) => {
                    format!("a new scheduling leader places it again (it was running on {cluster})")
                }
                (JobState::Running, None) => "a new scheduling leader places it again".into(),
                _ => record.reason.clone(),
            },
            ended_why: None,
            started_ms: record.started_ms,
            finished_ms: None,
            command: extras.command,
            max_retries: extras.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
            failures: u32::try_from(record.failures).unwrap_or(0),
            // (A service's recovery is no restart: its replicas serve on where they are taken
            // over, and those started anew are told one by one.)
            attempts_before: u32::try_from(record.restarts).unwrap_or(0)
                + u32::from(record.state == JobState::Running && replica_range.is_none()),
            attempts: 0,
            restarts_before: record.restarts
                + i64::from(record.state == JobState::Running && replica_range.is_none()),
            recovered: record.state == JobState::Running,
            held: None,
            ran_on: record.ran_on.clone(),
            cluster_before: record.cluster.clone(),
            ran_on_this_term: false,
            replica_range,
            wanted: replica_range.map_or(1, |r| r.0),
            scaled: None,
            work_done: record.work_done,
            work_done_ms: now_ms,
            replica_restarts: 0,
            last_replica_restart: None,
            short_why: None,
        };
        // Recovered by a new leader: the run goes on from the progress the last one kept, and
        // its queueing ended at its first start then.
        self.sched.resume(idx, record.work_done);
        if let Some(ms) = record.started_ms {
            self.sched.started_before(idx, self.clock.to_s(ms));
        }
        // The scheduler hands out the slots of released jobs again.
        match self.jobs.get_mut(idx as usize) {
            Some(slot) => *slot = tracked,
            None => {
                debug_assert_eq!(idx as usize, self.jobs.len());
                self.jobs.push(tracked);
            }
        }
        self.by_id.insert(record.id.clone(), idx);
        self.active.insert(idx);
        self.batch.seen.push(record.id.clone());
        if record.state == JobState::Running {
            // Recovered after a change of leader: the scheduler places it again, ahead of the
            // work that was waiting behind it.
            self.sched.recovered(idx);
            self.batch.events.push(NewEvent {
                job_id: record.id.clone(),
                at_ms: now_ms,
                kind: "recovered".into(),
                cluster: record.cluster.clone(),
                message: if self.jobs[idx as usize].replica_range.is_some() {
                    // Its replicas come back (replica_added, with no replica_removed for the
                    // earlier ones: a backend stops or takes over what they ran).
                    "a scheduling leader took over (a new one, or this one again after losing \
                     its lease or a restart); the service's replicas are placed again, where \
                     they served if they can be (node agents' replicas that serve on there are \
                     taken over), as new replicas otherwise"
                        .into()
                } else {
                    "a scheduling leader took over (a new one, or this one again after losing \
                     its lease or a restart); the job is placed again"
                        .into()
                },
            });
            self.dirty.insert(idx);
        }
        self.drain(now_ms);
    }

    /// The recovered gangs with where their ranks were last handed out, as the store has it
    /// ([`Backend::runs_on_record`](crate::backend::Backend::runs_on_record)).
    pub fn recovering_runs(&self) -> Vec<(String, RanOn)> {
        self.active
            .iter()
            .filter_map(|&j| {
                let t = &self.jobs[j as usize];
                let ran_on = t.ran_on.as_ref().filter(|r| match t.replica_range {
                    None => r.placement.is_some(),
                    Some(_) => !r.replicas.is_empty(),
                })?;
                t.recovered.then(|| (t.id.clone(), ran_on.clone()))
            })
            .collect()
    }

    /// Places recovered job `id` on exactly `shares` of `cluster` in the next pass if it can
    /// ([`switchyard_sched::Scheduler::recovered_at`]): where its ranks may still run.
    pub fn recovered_at(&mut self, id: &str, cluster: &str, shares: Vec<NodeShare>) {
        let Some(&job) = self.by_id.get(id) else {
            return;
        };
        let Some(c) = self.clusters.iter().position(|name| name == cluster) else {
            return;
        };
        if self.jobs[job as usize].recovered {
            self.sched.recovered_at(job, c as u32, shares);
        }
    }

    /// Starts recovered service `id`'s replicas on exactly these shares of these clusters in
    /// the next pass where it can ([`switchyard_sched::Scheduler::recovered_replicas_at`]).
    pub fn recovered_replicas_at(&mut self, id: &str, replicas: Vec<(String, Vec<NodeShare>)>) {
        let Some(&job) = self.by_id.get(id) else {
            return;
        };
        let on: Vec<(u32, Vec<NodeShare>)> = replicas
            .into_iter()
            .filter_map(|(cluster, shares)| {
                let c = self.clusters.iter().position(|name| *name == cluster)?;
                Some((c as u32, shares))
            })
            .collect();
        if self.jobs[job as usize].recovered {
            self.sched.recovered_replicas_at(job, on);
        }
    }

    /// Where the backend runs service `id`'s replicas now ([`crate::backend::Observed::ReplicasOn`]).
    pub fn replicas_on(&mut self, id: &str, replicas: Vec<switchyard_store::ReplicaPlacement>) {
        let Some(&job) = self.by_id.get(id) else {
            return;
        };
        let t = &mut self.jobs[job as usize];
        if t.replica_range.is_none() {
            return;
        }
        let mut nodes: Vec<String> = replicas
            .iter()
            .flat_map(|r| r.nodes.iter().map(|(n, _)| n.clone()))
            .collect();
        nodes.sort();
        nodes.dedup();
        let ran_on = RanOn {
            nodes,
            placement: None,
            replicas,
        };
        if t.ran_on.as_ref() != Some(&ran_on) {
            t.ran_on = Some(ran_on);
            self.dirty.insert(job);
        }
    }

    /// A stored job the scheduler cannot take in (its stored specification does not parse):
    /// rejected with `why`, so that it does not come back every pass.
    pub fn refuse(&mut self, now_ms: i64, record: &JobRecord, why: &str) {
        self.batch.seen.push(record.id.clone());
        self.batch.updates.push(JobUpdate {
            id: record.id.clone(),
            state: JobState::Rejected,
            reason: why.to_owned(),
            cluster: None,
            allocated: 0,
            allocated_by_cluster: Vec::new(),
            restarts: record.restarts,
            failures: record.failures,
            started_ms: record.started_ms,
            finished_ms: Some(now_ms),
            updated_ms: now_ms,
            work_done: record.work_done,
            ran_on: record.ran_on.clone(),
        });
        self.batch.events.push(NewEvent {
            job_id: record.id.clone(),
            at_ms: now_ms,
            kind: "rejected".into(),
            cluster: None,
            message: why.to_owned(),
        });
    }

    /// A cancellation (no-op for unknown or finished jobs).
    pub fn cancel(&mut self, now_ms: i64, id: &str) {
        if let Some(&job) = self.by_id.get(id) {
            let now = self.clock.to_s(now_ms);
            self.sched
                .handle(now, Event::Cancel { job }, &mut self.decisions);
            self.dirty.insert(job);
            self.drain(now_ms);
        }
    }

    /// An inference service's wanted replica count (from the store's scale requests, every
    /// pass). Passed on to the scheduler, which clamps it to the service's range, only when it
    /// differs from the last count passed on for the job: calling it again with the same count
    /// does nothing. No-op for unknown jobs and jobs that are not active services.
    pub fn scale(&mut self, now_ms: i64, id: &str, replicas: i64) {
        let Some(&job) = self.by_id.get(id) else {
            return;
        };
        let replicas = u32::try_from(replicas.max(0)).unwrap_or(u32::MAX);
        let t = &mut self.jobs[job as usize];
        let Some((lo, hi)) = t.replica_range else {
            return;
        };
        if t.scaled == Some(replicas)
            || !matches!(
                self.sched.job(job).state,
                SchedState::Pending | SchedState::Running
            )
        {
            return;
        }
        t.scaled = Some(replicas);
        t.wanted = replicas.clamp(lo, hi);
        let now = self.clock.to_s(now_ms);
        self.sched
            .handle(now, Event::Scale { job, replicas }, &mut self.decisions);
        // Its reason says how many replicas it wants, even before any can be placed.
        self.dirty.insert(job);
        self.drain(now_ms);
    }

    /// The backend reports a run's work done.
    pub fn finished(&mut self, now_ms: i64, id: &str, generation: u32) {
        if let Some(&job) = self.by_id.get(id) {
            let now = self.clock.to_s(now_ms);
            self.sched.handle(
                now,
                Event::Finished { job, generation },
                &mut self.decisions,
            );
            self.drain(now_ms);
        }
    }

    /// The backend reports a run's processes failed: restarted from its checkpoint while the
    /// job's retries last, failed after.
    pub fn failed(&mut self, now_ms: i64, id: &str, generation: u32, reason: &str) {
        self.run_ended_badly(now_ms, id, generation, reason, true);
    }

    /// The backend reports a run interrupted by the infrastructure: restarted from its
    /// checkpoint, not counted against the job's retries.
    pub fn interrupted(&mut self, now_ms: i64, id: &str, generation: u32, reason: &str) {
        self.run_ended_badly(now_ms, id, generation, reason, false);
    }

    fn run_ended_badly(
        &mut self,
        now_ms: i64,
        id: &str,
        generation: u32,
        reason: &str,
        counts: bool,
    ) {
        let Some(&job) = self.by_id.get(id) else {
            return;
        };
        if self.sched.job(job).state != SchedState::Running {
            return;
        }
        let t = &mut self.jobs[job as usize];
        let retry = !counts || t.failures < t.max_retries;
        let reason = if !counts {
            format!("{reason} (not the job's fault: not counted against max_retries)")
        } else if retry {
            format!(
                "{reason} (failure {} of at most {} retried)",
                t.failures + 1,
                t.max_retries
            )
        } else {
            format!(
                "{reason}; giving up after {} retries (max_retries = {})",
                t.failures, t.max_retries
            )
        };
        let now = self.clock.to_s(now_ms);
        let before = self.decisions.len();
        self.sched.handle(
            now,
            Event::Failed {
                job,
                generation,
                retry,
                reason,
            },
            &mut self.decisions,
        );
        // A stale report (an older generation) changes nothing and must not count.
        if counts && retry && self.decisions.len() > before {
            self.jobs[job as usize].failures += 1;
        }

        self.dirty.insert(job);
        self.drain(now_ms);
    }

    /// The backend reports a run its cluster keeps queued, and why: the run holds its
    /// accelerators without progressing, and the job's reason says so ([`Scheduler::held`]).
    pub fn held(&mut self, now_ms: i64, id: &str, generation: u32, why: &str, interrupted: bool) {
        let now = self.clock.to_s(now_ms);
        if let Some(&job) = self.by_id.get(id)
            && self.sched.held(job, generation, now, interrupted)
        {
            let t = &mut self.jobs[job as usize];
            // A paused run held now, interrupted (its Slurm job requeued), waits anew and says
            // so; one that is not stays paused (the scheduler keeps it so).
            if !interrupted && t.held.as_ref().is_some_and(|h| h.paused) {
                return;
            }
            let since = t.held.as_ref().filter(|h| !h.paused).map(|h| h.since_ms);
            t.held = Some(Held {
                why: why.to_owned(),
                since_ms: since.unwrap_or(now_ms),
                paused: false,
            });
            if since.is_none() {
                // Once per run (a Slurm job reports its queue reason every poll): the history
                // shows the attempt waiting, and `began` when it stops.
                let attempt = t.attempts_before + t.attempts;
                self.note(
                    now_ms,
                    id,
                    "held",
                    &format!("attempt {attempt}: placed, not running yet: {why}"),
                    None,
                );
            }
            self.dirty.insert(job);
        }
    }

    /// The backend reports that a run's work stopped where it stands (Slurm's suspend): it
    /// keeps its progress and its accelerators, and makes no progress until
    /// [`Engine::began`].
    pub fn paused(&mut self, now_ms: i64, id: &str, generation: u32, why: &str) {
        let now = self.clock.to_s(now_ms);
        if let Some(&job) = self.by_id.get(id)
            && self.sched.paused(job, generation, now)
        {
            let t = &mut self.jobs[job as usize];
            if t.held.is_none() {
                t.held = Some(Held {
                    why: why.to_owned(),
                    since_ms: now_ms,
                    paused: true,
                });
                let attempt = t.attempts_before + t.attempts;
                self.note(
                    now_ms,
                    id,
                    "paused",
                    &format!("attempt {attempt}: paused where it stands, no progress: {why}"),
                    None,
                );
                self.dirty.insert(job);
            }
        }
    }

    /// The backend reports that a held run's work began, or a paused one's goes on: it
    /// progresses from now — or from `since_ms`, where the backend knows when the work began,
    /// kept between when the run was held and now — its predicted end moves by as long as it
    /// was held, and a job's first run counts as started then.
    pub fn began(&mut self, now_ms: i64, id: &str, generation: u32, since_ms: Option<i64>) {
        let Some(&job) = self.by_id.get(id) else {
            return;
        };
        let held_since = self.jobs[job as usize]
            .held
            .as_ref()
            .filter(|h| !h.paused)
            .map(|h| h.since_ms);
        let began_ms = match (since_ms, held_since) {
            (Some(since), Some(held)) => since.max(held).min(now_ms),
            _ => now_ms,
        };
        let first_start = self.sched.job(job).first_start_s;
        if self
            .sched
            .began(job, generation, self.clock.to_s(began_ms))
            .is_some()
        {
            let moved = self.sched.job(job).first_start_s != first_start;
            let t = &mut self.jobs[job as usize];
            if let Some(held) = t.held.take() {
                let attempt = t.attempts_before + t.attempts;
                let waited = (began_ms - held.since_ms) as f64 / 1000.0;
                let (kind, text) = if held.paused {
                    (
                        "resumed",
                        format!("attempt {attempt}: goes on after it was paused {waited:.1} s"),
                    )
                } else {
                    (
                        "began",
                        format!(
                            "attempt {attempt}: its work began after it was held {waited:.1} s"
                        ),
                    )
                };
                self.note(now_ms, id, kind, &text, None);
            }
            let t = &mut self.jobs[job as usize];
            // Only where the scheduler moved it too (a run that had not begun since the job's
            // first start), so that started_ms and the queued time it reports agree.
            if moved {
                t.started_ms = Some(began_ms);
            }
            self.dirty.insert(job);
        }
    }

    /// The run of `generation` was handed to node agents on `ran_on`'s nodes: stored, so that a
    /// new leader knows where its ranks may still run. No-op for another generation's.
    pub fn ran_on(&mut self, id: &str, generation: u32, ran_on: switchyard_store::RanOn) {
        let Some(&job) = self.by_id.get(id) else {
            return;
        };
        let v = self.sched.job(job);
        if v.state != SchedState::Running || v.generation != generation {
            return;
        }
        let t = &mut self.jobs[job as usize];
        t.ran_on_this_term = true;
        if t.ran_on.as_ref() != Some(&ran_on) {
            t.ran_on = Some(ran_on);
            self.dirty.insert(job);
        }
    }

    /// The backend took over the work of an earlier `attempt` for the job's first launch in
    /// this term (a Slurm job an earlier leader started is still there, running or ended): the
    /// run is that attempt, so its number, the job's restarts and its logs stay those of the
    /// work itself. No-op unless the run of `generation` is that first launch and `attempt` is
    /// older.
    pub fn continued(&mut self, now_ms: i64, id: &str, generation: u32, attempt: u32) {
        let Some(&job) = self.by_id.get(id) else {
            return;
        };
        let v = self.sched.job(job);
        let t = &mut self.jobs[job as usize];
        if v.state != SchedState::Running
            || v.generation != generation
            || t.attempts != 1
            || attempt == 0
            || attempt >= t.attempts_before + t.attempts
        {
            return;
        }
        t.attempts_before = attempt - 1;
        // Every start after the first is a restart: attempt N has N - 1 before it (whatever an
        // earlier leader that counted a recovery and died before taking it back wrote).
        t.restarts_before = i64::from(attempt) - 1;
        let cluster = v.cluster.map(|c| self.clusters[c as usize].clone());
        // Nothing restarted: the run progresses from its placement, not after a restart.
        self.sched.continued(job, generation);
        self.batch.events.push(NewEvent {
            job_id: id.to_owned(),
            at_ms: now_ms,
            kind: "continued".into(),
            cluster,
            message: format!(
                "the run is attempt {attempt} again: its backend took over that attempt's work, which an earlier leader had started, so no new attempt began"
            ),
        });
        self.dirty.insert(job);
    }

    /// Something a backend wants in a job's events (also of a job that has just ended and been
    /// let go: a backend's last word about it, like a replica restarted as it was stopped).
    pub fn note(
        &mut self,
        now_ms: i64,
        id: &str,
        kind: &str,
        message: &str,
        cluster: Option<String>,
    ) {
        // A replica restarted by its backend serves on as far as the scheduler knows: the
        // service's reason says how often, and how the last one ended.
        if matches!(kind, "replica_restarted" | "slurm_replica_restarted") {
            let Some(&job) = self.by_id.get(id) else {
                // Of a service already ended (its replica restarted as it was being stopped):
                // after `cancelled`, "restarted it" would read as if it served on.
                return;
            };
            let t = &mut self.jobs[job as usize];
            t.replica_restarts += 1;
            t.last_replica_restart = Some(message.to_owned());
            self.dirty.insert(job);
        }
        let cluster = cluster.or_else(|| {
            self.by_id.get(id).and_then(|&job| {
                self.sched
                    .job(job)
                    .cluster
                    .map(|c| self.clusters[c as usize].clone())
            })
        });
        self.batch.events.push(NewEvent {
            job_id: id.to_owned(),
            at_ms: now_ms,
            kind: kind.to_owned(),
            cluster,
            message: message.to_owned(),
        });
    }

    /// Nodes of `cluster` failed at once (as a backend found them): a gang on several of them
    /// restarts once.
    pub fn nodes_failed(&mut self, now_ms: i64, cluster: u32, nodes: Vec<u32>) {
        let now = self.clock.to_s(now_ms);
        self.sched.handle(
            now,
            Event::NodesFailed { cluster, nodes },
            &mut self.decisions,
        );
        self.drain(now_ms);
    }

    /// Nodes were drained (from a backend): nothing new goes there; what runs there goes on.
    pub fn nodes_drained(&mut self, now_ms: i64, cluster: u32, nodes: Vec<u32>) {
        let now = self.clock.to_s(now_ms);
        self.sched.handle(
            now,
            Event::NodesDrained { cluster, nodes },
            &mut self.decisions,
        );
        self.drain(now_ms);
    }

    /// A node came back (from a backend).
    pub fn node_repaired(&mut self, now_ms: i64, cluster: u32, node: u32) {
        let now = self.clock.to_s(now_ms);
        self.sched.handle(
            now,
            Event::NodeRepaired { cluster, node },
            &mut self.decisions,
        );
        self.drain(now_ms);
    }

    /// Node `node` of `cluster` is the host `host` (from a backend): events name it so.
    pub fn name_node(&mut self, cluster: u32, node: u32, host: &str) {
        self.sched.name_node(cluster, node, host);
    }

    /// A scheduling pass.
    pub fn schedule(&mut self, now_ms: i64) {
        let now = self.clock.to_s(now_ms);
        self.sched.schedule(now, &mut self.decisions);
        self.drain(now_ms);
    }

    /// Turns the decisions taken since the last call into events, updates and commands.
    fn drain(&mut self, now_ms: i64) {
        let decisions = std::mem::take(&mut self.decisions);
        for d in &decisions {
            let at_ms = self
                .clock
                .to_ms(d.at_s)
                .min(now_ms.max(self.clock.origin_ms));
            let mut message = d.reason.clone();
            let (job, cluster, kind) = match d.action {
                Action::Start {
                    job,
                    cluster,
                    accelerators,
                    generation,
                    expected_end_s,
                    ref nodes,
                } => {
                    let t = &mut self.jobs[job as usize];
                    t.allocated_on = BTreeMap::from([(cluster, i64::from(accelerators))]);
                    t.started_ms.get_or_insert(at_ms);
                    t.attempts += 1;
                    t.held = None;
                    message = format!("attempt {}: {message}", t.attempts_before + t.attempts);
                    self.commands.push(Command::Launch {
                        job: t.id.clone(),
                        generation,
                        attempt: t.attempts_before + t.attempts,
                        cluster: self.clusters[cluster as usize].clone(),
                        accelerators,
                        nodes: nodes.clone(),
                        expected_end_ms: self.clock.to_ms(expected_end_s),
                        command: t.command.clone(),
                        recovered: t.recovered && t.attempts == 1,
                        ran_before: if t.ran_on_this_term {
                            None
                        } else {
                            t.ran_on.clone()
                        },
                    });
                    (job, Some(cluster), "started")
                }
                Action::AddReplica {
                    job,
                    cluster,
                    accelerators,
                    ref nodes,
                } => {
                    let t = &mut self.jobs[job as usize];
                    *t.allocated_on.entry(cluster).or_default() += i64::from(accelerators);
                    t.started_ms.get_or_insert(at_ms);
                    self.commands.push(Command::AddReplica {
                        job: t.id.clone(),
                        cluster: self.clusters[cluster as usize].clone(),
                        accelerators,
                        nodes: nodes.clone(),
                        command: t.command.clone(),
                    });
                    (job, Some(cluster), "replica_added")
                }
                Action::RemoveReplica {
                    job,
                    cluster,
                    ref nodes,
                }
                | Action::ReplicaLost {
                    job,
                    cluster,
                    ref nodes,
                } => {
                    let t = &mut self.jobs[job as usize];
                    if let Some(held) = t.allocated_on.get_mut(&cluster) {
                        *held -= i64::from(t.size);
                        if *held <= 0 {
                            t.allocated_on.remove(&cluster);
                        }
                    }
                    self.commands.push(Command::RemoveReplica {
                        job: t.id.clone(),
                        cluster: self.clusters[cluster as usize].clone(),
                        nodes: nodes.clone(),
                    });
                    let kind = if matches!(d.action, Action::ReplicaLost { .. }) {
                        "replica_lost"
                    } else {
                        "replica_removed"
                    };
                    (job, Some(cluster), kind)
                }
                Action::Preempt { job, cluster } => {
                    self.stop(job);
                    (job, Some(cluster), "preempted")
                }
                Action::Restart { job, cluster, .. } => {
                    self.stop(job);
                    (job, Some(cluster), "restarted")
                }
                Action::Finish { job, cluster } => {
                    let was_running = self.jobs[job as usize].allocated() > 0;
                    // Recovered and not placed again yet (a new leader settling): its backend
                    // may still let the earlier run go on, and must hear it is not wanted.
                    let t = &self.jobs[job as usize];
                    if was_running || (t.recovered && t.attempts == 0) {
                        self.stop(job);
                    }
                    self.jobs[job as usize].finished_ms = Some(at_ms);
                    let cancelled = self.sched.job(job).state == SchedState::Cancelled;
                    let cluster = was_running.then_some(cluster);
                    (
                        job,
                        cluster,
                        if cancelled { "cancelled" } else { "finished" },
                    )
                }
                Action::Fail { job, cluster } => {
                    self.stop(job);
                    self.jobs[job as usize].finished_ms = Some(at_ms);
                    self.jobs[job as usize].ended_why = Some(message.clone());
                    (job, Some(cluster), "failed")
                }
                Action::Reject { job } => {
                    self.jobs[job as usize].finished_ms = Some(at_ms);
                    self.jobs[job as usize].ended_why = Some(message.clone());
                    (job, None, "rejected")
                }
            };
            self.dirty.insert(job);
            self.batch.events.push(NewEvent {
                job_id: self.jobs[job as usize].id.clone(),
                at_ms,
                kind: kind.into(),
                cluster: cluster.map(|c| self.clusters[c as usize].clone()),
                message,
            });
        }
    }

    /// Why pending job `j` waits: the scheduler's words once a pass of this term has looked at
    /// it; until then what the store says (an earlier leader's reason), rather than "not yet
    /// considered" for every job a new leader's first passes do not reach.
    fn pending_why(&self, j: JobIdx) -> String {
        if self.sched.considered(j) {
            self.sched.why(j)
        } else {
            self.jobs[j as usize].reason.clone()
        }
    }

    fn stop(&mut self, job: JobIdx) {
        // A run that ended without its work beginning was no start of the job: the next run
        // to start (or begin) is its first.
        let started = self.sched.job(job).first_start_s.is_some();
        let t = &mut self.jobs[job as usize];
        if !started {
            t.started_ms = None;
        }
        t.allocated_on.clear();
        t.held = None;
        self.commands.push(Command::Stop { job: t.id.clone() });
    }

    /// Whether the backend is settling after a change of leader (nothing is placed): the
    /// recovered jobs it has not placed again are not written meanwhile, so the store keeps
    /// them running as they were (a leader that takes over in that moment recovers them as
    /// such) and readers see no flicker through pending.
    pub fn set_settling(&mut self, settling: bool) {
        self.settling = settling;
    }

    /// A recovered job this leader has not placed again yet.
    fn unplaced_recovered(&self, j: JobIdx) -> bool {
        let t = &self.jobs[j as usize];
        t.recovered && t.attempts == 0 && self.sched.job(j).state == SchedState::Pending
    }

    /// The store writes and backend commands of everything since the last call. Pending
    /// jobs whose reason changed get a `waiting` event ("why is it pending").
    pub fn take(&mut self, now_ms: i64) -> (Batch, Vec<Command>) {
        let mut finished = Vec::new();
        let now = self.clock.to_s(now_ms);
        for &j in &self.active {
            let v = self.sched.job(j);
            if v.state == SchedState::Running {
                let t = &self.jobs[j as usize];
                if now_ms - t.work_done_ms >= WORK_DONE_WRITE_MS
                    && self.sched.kept_fraction(j, now) != t.work_done
                {
                    self.dirty.insert(j);
                }
                if t.replica_range.is_some() && self.sched.replicas_short_why(j) != t.short_why {
                    self.dirty.insert(j);
                }
            }
            if v.state == SchedState::Pending && !(self.settling && self.unplaced_recovered(j)) {
                let why = self.pending_why(j);
                let t = &mut self.jobs[j as usize];
                if why != t.reason {
                    // The reason carries live figures (a team's use, free accelerators): the
                    // job's row follows them, its events only a change of words.
                    if !same_words(&why, &t.reason, &self.spaced_names) {
                        self.batch.events.push(NewEvent {
                            job_id: t.id.clone(),
                            at_ms: now_ms,
                            kind: "waiting".into(),
                            cluster: None,
                            message: why,
                        });
                    }
                    self.dirty.insert(j);
                }
            }
            if !matches!(v.state, SchedState::Pending | SchedState::Running) {
                finished.push(j);
            }
        }
        for j in finished {
            self.active.remove(&j);
        }
        let mut ended = Vec::new();
        let mut dirty = std::mem::take(&mut self.dirty);
        if self.settling {
            let later: Vec<JobIdx> = dirty
                .iter()
                .copied()
                .filter(|&j| self.unplaced_recovered(j))
                .collect();
            for j in later {
                dirty.remove(&j);
                self.dirty.insert(j);
            }
        }
        for j in dirty {
            let v = self.sched.job(j);
            let waiting = (v.state == SchedState::Pending).then(|| self.pending_why(j));
            let short = self.sched.replicas_short_why(j);
            let t = &mut self.jobs[j as usize];
            t.short_why.clone_from(&short);
            let why = match (v.state, v.cluster) {
                (SchedState::Running, Some(_)) if t.replica_range.is_some() => {
                    let size = i64::from(t.size.max(1));
                    let have = t.allocated() / size;
                    let wanted = if i64::from(t.wanted) == have {
                        String::new()
                    } else {
                        format!(" of {} wanted", t.wanted)
                    };
                    let on = match t.allocated_on.len() {
                        0 => String::new(),
                        1 => t
                            .allocated_on
                            .keys()
                            .map(|&c| format!(", on {}", self.clusters[c as usize]))
                            .collect(),
                        _ => {
                            let each: Vec<String> = t
                                .allocated_on
                                .iter()
                                .map(|(&c, &n)| {
                                    format!("{} on {}", n / size, self.clusters[c as usize])
                                })
                                .collect();
                            format!(": {}", each.join(", "))
                        }
                    };
                    let restarts = match &t.last_replica_restart {
                        Some(last) => format!(
                            "; replica processes restarted {} time{} (the last: {last})",
                            t.replica_restarts,
                            if t.replica_restarts == 1 { "" } else { "s" }
                        ),
                        None => String::new(),
                    };
                    // Short of what it wants: why the next replica waits.
                    let short = match short {
                        Some(why) if i64::from(t.wanted) > have => {
                            format!("; the next replica is {why}")
                        }
                        _ => String::new(),
                    };
                    format!(
                        "serving with {have}{wanted} replica{} of {} accelerator{} ({} in \
                         all{on}){short}{restarts}",
                        if have == 1 && wanted.is_empty() {
                            ""
                        } else {
                            "s"
                        },
                        grouped(t.size.into()),
                        if t.size == 1 { "" } else { "s" },
                        grouped(t.allocated().max(0) as u64),
                    )
                }
                (SchedState::Running, Some(c)) if t.held.is_some() => {
                    let on = format!(
                        "{} accelerator{} of {}",
                        grouped(t.allocated().max(0) as u64),
                        if t.allocated() == 1 { "" } else { "s" },
                        self.clusters[c as usize],
                    );
                    match &t.held {
                        Some(h) if h.paused => format!("paused on {on}: {}", h.why),
                        h => format!(
                            "placed on {on}, not running yet: {}",
                            h.as_ref().map_or("", |h| h.why.as_str())
                        ),
                    }
                }
                // The scheduler's own words give its clock's start time; say it plainly.
                (SchedState::Running, Some(c)) => format!(
                    "running on {} accelerator{} of {}",
                    grouped(t.allocated().max(0) as u64),
                    if t.allocated() == 1 { "" } else { "s" },
                    self.clusters[c as usize]
                ),
                (SchedState::Failed, _) if t.ended_why.is_some() => {
                    format!("failed: {}", t.ended_why.as_deref().unwrap_or_default())
                }
                (SchedState::Rejected, _) if t.ended_why.is_some() => {
                    format!("rejected: {}", t.ended_why.as_deref().unwrap_or_default())
                }
                _ => waiting.unwrap_or_else(|| self.sched.why(j)),
            };
            t.reason = why.clone();
            let state = match v.state {
                SchedState::Pending => JobState::Pending,
                SchedState::Running => JobState::Running,
                SchedState::Done => JobState::Done,
                SchedState::Cancelled => JobState::Cancelled,
                SchedState::Rejected => JobState::Rejected,
                SchedState::Failed => JobState::Failed,
            };
            if state.is_final() {
                t.allocated_on.clear();
                ended.push(j);
            }
            t.work_done = self.sched.kept_fraction(j, now);
            t.work_done_ms = now_ms;
            self.batch.updates.push(JobUpdate {
                id: t.id.clone(),
                state,
                reason: why,
                cluster: t
                    .main_cluster()
                    .or(v.cluster)
                    .map(|c| self.clusters[c as usize].clone())
                    .or_else(|| t.cluster_before.clone()),
                allocated: t.allocated(),
                allocated_by_cluster: t
                    .allocated_on
                    .iter()
                    .map(|(&c, &n)| (self.clusters[c as usize].clone(), n))
                    .collect(),
                // Every start after the first counts (failures, preemptions, migrations), so
                // that a new leader's attempt numbers never repeat an earlier attempt's.
                restarts: (t.restarts_before + i64::from(v.restarts))
                    .max(i64::from(t.attempts_before + t.attempts).saturating_sub(1)),
                failures: i64::from(t.failures),
                started_ms: t.started_ms,
                finished_ms: if state.is_final() {
                    t.finished_ms.or(Some(now_ms))
                } else {
                    None
                },
                updated_ms: now_ms,
                work_done: t.work_done,
                ran_on: t.ran_on.clone(),
            });
        }
        // Its final state is in the batch: forget the job, so that the leader's memory follows
        // the active jobs rather than every job since it took the lease. Later reports about
        // it (a straggling exit) name an id no longer known and change nothing.
        for j in ended {
            // (Already out of `active`: it ended.)
            if self.sched.release(j) {
                let t = std::mem::take(&mut self.jobs[j as usize]);
                self.by_id.remove(&t.id);
            }
        }
        (
            std::mem::take(&mut self.batch),
            std::mem::take(&mut self.commands),
        )
    }

    /// Checks the scheduler's invariants (tests).
    pub fn check(&self) -> Result<(), String> {
        self.sched.check_invariants()
    }
}

#[cfg(test)]
mod tests {
    use switchyard_core::{JobKind, Work};

    use super::*;

    const T0: i64 = 1_800_000_000_000;

    fn record(id: &str, seq: i64) -> JobRecord {
        JobRecord {
            seq,
            tenant_number: seq,
            id: id.into(),
            tenant: "research".into(),
            name: None,
            kind: "batch".into(),
            priority: 0,
            accelerators: 8,
            spec: "{}".into(),
            state: JobState::Pending,
            reason: "queued; not yet considered".into(),
            cluster: None,
            allocated: 0,
            restarts: 0,
            failures: 0,
            cancel_requested: false,
            replicas_wanted: None,
            submitted_ms: T0,
            started_ms: None,
            finished_ms: None,
            updated_ms: T0,
            work_done: 0.0,
            ran_on: None,
        }
    }

    fn spec(seconds: f64) -> JobSpec {
        JobSpec {
            id: String::new(),
            tenant: String::new(),
            kind: JobKind::Batch,
            priority: 0,
            submit_s: 0.0,
            accelerators: 8,
            min_accelerators: None,
            replicas: None,
            accelerator_types: vec!["H100".into()],
            clusters: vec![],
            work: Work::Duration {
                seconds,
                by_accelerator: Default::default(),
            },
        }
    }

    /// An engine on the default fleet at T0 that admitted job "a" of `seconds` and launched
    /// it; the launch's generation.
    fn launched_a(seconds: f64) -> (Engine, u32) {
        let mut e = Engine::new(&Fleet::default_fleet(), Clock::starting_at(T0));
        e.admit(T0, &record("a", 1), spec(seconds));
        e.schedule(T0);
        let (_, cmds) = e.take(T0);
        let Some(&Command::Launch { generation, .. }) = cmds.first() else {
            panic!("a launch: {cmds:?}");
        };
        (e, generation)
    }

    fn update<'a>(b: &'a Batch, id: &str) -> &'a JobUpdate {
        b.updates
            .iter()
            .rev()
            .find(|u| u.id == id)
            .expect("an update for the job")
    }

    #[test]
    fn submit_place_finish() {
        let mut e = Engine::new(&Fleet::default_fleet(), Clock::starting_at(T0));
        e.admit(T0, &record("a", 1), spec(10.0));
        e.schedule(T0);
        let (batch, cmds) = e.take(T0);
        assert_eq!(batch.seen, ["a"]);
        let u = update(&batch, "a");
        assert_eq!((u.state, u.allocated), (JobState::Running, 8));
        assert!(
            u.reason.starts_with("running on 8 accelerators of "),
            "{}",
            u.reason
        );
        let Some(Command::Launch {
            expected_end_ms,
            generation,
            ..
        }) = cmds.first().cloned()
        else {
            panic!("a launch: {cmds:?}");
        };
        assert_eq!(expected_end_ms, T0 + 10_000);
        assert!(batch.events.iter().any(|ev| ev.kind == "started"));
        e.finished(T0 + 10_000, "a", generation);
        let (batch, cmds) = e.take(T0 + 10_000);
        let u = update(&batch, "a");
        assert_eq!(
            (u.state, u.allocated, u.finished_ms),
            (JobState::Done, 0, Some(T0 + 10_000))
        );
        assert_eq!(cmds, [Command::Stop { job: "a".into() }]);
        e.check().expect("invariants");
    }

    /// A run its cluster keeps queued (a Slurm job still pending) says so in its reason, and
    /// counts as started, and queued until, when its work began.
    #[test]
    fn a_run_its_cluster_keeps_queued_says_so_and_starts_when_it_begins() {
        let (mut e, generation) = launched_a(10.0);
        e.held(T0 + 500, "a", generation + 1, "an older run's word", false);
        e.began(T0 + 500, "a", generation, None);
        let (batch, _) = e.take(T0 + 500);
        assert!(batch.updates.is_empty(), "{:?}", batch.updates);

        e.held(
            T0 + 1000,
            "a",
            generation,
            "Slurm job 7 waits in Slurm's queue (Resources)",
            false,
        );
        let (batch, _) = e.take(T0 + 1000);
        let u = update(&batch, "a");
        assert_eq!((u.state, u.started_ms), (JobState::Running, Some(T0)));
        assert_eq!(
            u.reason,
            format!(
                "placed on 8 accelerators of {}, not running yet: Slurm job 7 waits in Slurm's queue (Resources)",
                u.cluster.as_deref().unwrap_or_default()
            )
        );

        e.began(T0 + 60_000, "a", generation, None);
        let (batch, _) = e.take(T0 + 60_000);
        let u = update(&batch, "a");
        assert!(
            u.reason.starts_with("running on 8 accelerators"),
            "{}",
            u.reason
        );
        assert_eq!(u.started_ms, Some(T0 + 60_000));
        e.finished(T0 + 70_000, "a", generation);
        let (batch, _) = e.take(T0 + 70_000);
        let finish = batch
            .events
            .iter()
            .find(|ev| ev.kind == "finished")
            .expect("a finished event");
        assert!(
            finish
                .message
                .contains("(60 s queued before its first start)"),
            "{}",
            finish.message
        );
        e.check().expect("invariants");
    }

    /// A run held from its start whose Slurm job is cancelled while it waits never began: the
    /// next run's beginning is the job's start, and its queueing counts up to there.
    #[test]
    fn a_job_whose_first_run_never_began_starts_when_a_later_one_does() {
        // The next run held again and then begun, or running at once.
        for held_again in [true, false] {
            let (mut e, generation) = launched_a(10.0);
            e.held(T0 + 1_000, "a", generation, "Slurm job 7 waits", false);
            e.take(T0 + 1_000);
            e.interrupted(T0 + 4_000, "a", generation, "Slurm job 7 ended CANCELLED");
            let (batch, _) = e.take(T0 + 4_000);
            assert_eq!(update(&batch, "a").started_ms, None, "not started yet");
            let mut at = T0 + 4_000;
            let relaunched = loop {
                at += 1_000;
                e.schedule(at);
                let (_, cmds) = e.take(at);
                if let Some(&Command::Launch { generation, .. }) = cmds.first() {
                    break generation;
                }
                assert!(at < T0 + 600_000, "never launched again");
            };
            let began_at = if held_again {
                e.held(at, "a", relaunched, "Slurm job 8 waits", false);
                e.take(at);
                let began_at = (T0 + 16_000).max(at + 1_000);
                e.began(began_at, "a", relaunched, None);
                let (batch, _) = e.take(began_at);
                assert_eq!(update(&batch, "a").started_ms, Some(began_at));
                began_at
            } else {
                at
            };
            e.finished(began_at + 2_000, "a", relaunched);
            let (batch, _) = e.take(began_at + 2_000);
            assert_eq!(update(&batch, "a").started_ms, Some(began_at));
            let finish = batch
                .events
                .iter()
                .find(|ev| ev.kind == "finished")
                .expect("a finished event");
            let queued = (began_at - T0) / 1000;
            assert!(
                finish
                    .message
                    .contains(&format!("({queued} s queued before its first start)")),
                "held again {held_again}: {}",
                finish.message
            );
            e.check().expect("invariants");
        }
    }

    /// A run whose work the backend says began at a known time (Slurm's StartTime, seen at a
    /// later poll) counts as started then, and queued until then — never before it was held,
    /// never after now; its predicted end counts from then too.
    #[test]
    fn a_held_run_begins_when_its_backend_says_it_did() {
        let held_then_began = |since_ms: Option<i64>| {
            let (mut e, generation) = launched_a(100.0);
            e.held(T0 + 1_000, "a", generation, "Slurm job 7 waits", false);
            e.take(T0 + 1_000);
            e.began(T0 + 90_000, "a", generation, since_ms);
            let (batch, _) = e.take(T0 + 90_000);
            let began = batch
                .events
                .iter()
                .find(|ev| ev.kind == "began")
                .map(|ev| ev.message.clone())
                .expect("a began event");
            let u = update(&batch, "a");
            let end_s = e.sched.job(e.by_id["a"]).end_s.expect("running");
            (u.started_ms, end_s, began)
        };
        let (started, end, began) = held_then_began(Some(T0 + 30_000));
        assert_eq!(started, Some(T0 + 30_000));
        assert!(began.contains("held 29.0 s"), "{began}");
        let (_, end_at_poll, _) = held_then_began(None);
        assert!(
            (end_at_poll - end - 60.0).abs() < 1e-6,
            "its end counts from when it began: {end} against {end_at_poll} at the poll"
        );
        // A start before the hold (a clock off between the machines) is the hold's time; one
        // after now is now.
        assert_eq!(held_then_began(Some(T0 - 5_000)).0, Some(T0 + 1_000));
        assert_eq!(held_then_began(Some(T0 + 500_000)).0, Some(T0 + 90_000));
    }

    #[test]
    fn ended_jobs_are_forgotten_and_their_slots_reused() {
        let mut e = Engine::new(&Fleet::default_fleet(), Clock::starting_at(T0));
        e.admit(T0, &record("long", 1), spec(1e6));
        e.schedule(T0);
        let (_, cmds) = e.take(T0);
        let Some(Command::Launch {
            generation: long_generation,
            ..
        }) = cmds.first().cloned()
        else {
            panic!("a launch: {cmds:?}");
        };
        let mut now = T0;
        for wave in 0..50 {
            let id = format!("w{wave}");
            e.admit(now, &record(&id, wave + 2), spec(10.0));
            e.schedule(now);
            let (_, cmds) = e.take(now);
            let Some(Command::Launch {
                job, generation, ..
            }) = cmds.first().cloned()
            else {
                panic!("a launch: {cmds:?}");
            };
            assert_eq!(job, id);
            now += 10_000;
            e.finished(now, &id, generation);
            let (batch, _) = e.take(now);
            assert_eq!(update(&batch, &id).state, JobState::Done);
            assert!(!e.knows(&id));
            assert_eq!(e.held_jobs(), 1, "only the long run is held");
            // Straggling reports about a forgotten job change nothing; a backend's note is
            // still recorded.
            e.finished(now, &id, generation);
            e.failed(now, &id, generation, "late");
            e.cancel(now, &id);
            let (batch, cmds) = e.take(now);
            assert!(batch.is_empty() && cmds.is_empty(), "{batch:?} {cmds:?}");
            // (A replica restarted as its service ended is not: it would read as serving on.)
            e.note(now, &id, "replica_restarted", "late word", None);
            e.note(now, &id, "slurm_state", "late word", None);
            e.note(
                now,
                &id,
                "slurm_cancelled",
                "the backend names it",
                Some("hpc".into()),
            );
            let (batch, _) = e.take(now);
            assert_eq!(batch.events.len(), 2, "{:?}", batch.events);
            assert_eq!(batch.events[0].kind, "slurm_state");
            assert_eq!(batch.events[0].cluster, None, "let go: no cluster known");
            assert_eq!(batch.events[1].cluster.as_deref(), Some("hpc"));
            assert!(batch.updates.is_empty());
            e.check().expect("invariants");
        }
        assert_eq!(e.sched.job_count(), 2, "fifty jobs ran in one reused slot");
        e.finished(now, "long", long_generation);
        let (batch, cmds) = e.take(now);
        assert_eq!(update(&batch, "long").state, JobState::Done);
        assert_eq!(cmds, [Command::Stop { job: "long".into() }]);
        assert_eq!(e.held_jobs(), 0);
    }

    #[test]
    fn cancel_pending_and_running_and_idempotent_admission() {
        let mut e = Engine::new(&Fleet::default_fleet(), Clock::starting_at(T0));
        e.admit(T0, &record("a", 1), spec(3600.0));
        e.admit(T0, &record("a", 1), spec(3600.0));
        e.schedule(T0);
        let (batch, _) = e.take(T0);
        assert_eq!(
            batch.seen,
            ["a", "a"],
            "a second admission only marks it seen"
        );
        e.cancel(T0 + 1, "a");
        e.cancel(T0 + 2, "a");
        e.cancel(T0 + 2, "unknown");
        let (batch, cmds) = e.take(T0 + 2);
        assert_eq!(update(&batch, "a").state, JobState::Cancelled);
        assert_eq!(
            batch
                .events
                .iter()
                .filter(|ev| ev.kind == "cancelled")
                .count(),
            1
        );
        assert_eq!(cmds, [Command::Stop { job: "a".into() }]);
        e.check().expect("invariants");
    }

    #[test]
    fn pending_jobs_say_why_once() {
        let mut e = Engine::new(&Fleet::default_fleet(), Clock::starting_at(T0));
        // Bigger than the free H100 capacity once the first one runs.
        let mut big = spec(3600.0);
        big.accelerators = 16_384;
        big.clusters = vec!["aws-h100-virginia".into()];
        e.admit(T0, &record("a", 1), big.clone());
        e.admit(T0, &record("b", 2), big);
        e.schedule(T0);
        let (batch, _) = e.take(T0);
        assert_eq!(update(&batch, "a").state, JobState::Running);
        let b = update(&batch, "b");
        assert_eq!(b.state, JobState::Pending);
        assert!(
            b.reason.contains("waiting") || b.reason.contains("reservation"),
            "{}",
            b.reason
        );
        assert_eq!(
            batch
                .events
                .iter()
                .filter(|ev| ev.job_id == "b" && ev.kind == "waiting")
                .count(),
            1
        );
        e.schedule(T0 + 1000);
        let (batch, _) = e.take(T0 + 1000);
        assert!(
            batch.events.iter().all(|ev| ev.job_id != "b"),
            "no repeat while the reason holds"
        );
    }

    #[test]
    fn failed_runs_restart_until_the_retry_limit_then_fail() {
        let mut e = Engine::new(&Fleet::default_fleet(), Clock::starting_at(T0));
        let mut sp = spec(3600.0);
        sp.kind = JobKind::Training;
        e.admit_with(
            T0,
            &record("a", 1),
            sp,
            JobExtras {
                command: None,
                max_retries: Some(1),
            },
        );
        e.schedule(T0);
        let (_, cmds) = e.take(T0);
        let launch = |cmds: &[Command]| {
            cmds.iter()
                .find_map(|c| match c {
                    Command::Launch {
                        generation,
                        attempt,
                        nodes,
                        accelerators,
                        ..
                    } => Some((*generation, *attempt, nodes.clone(), *accelerators)),
                    _ => None,
                })
                .expect("a launch")
        };
        let (g1, a1, nodes, size) = launch(&cmds);
        assert_eq!(a1, 1);
        assert_eq!(nodes.iter().map(|n| n.accelerators).sum::<u32>(), size);
        e.failed(T0 + 1000, "a", g1, "rank 3 exited with code 1");
        e.failed(T0 + 1000, "a", g1, "a stale report of the same run");
        let (batch, cmds) = e.take(T0 + 1000);
        assert_eq!(cmds, [Command::Stop { job: "a".into() }]);
        let restarted: Vec<_> = batch
            .events
            .iter()
            .filter(|ev| ev.kind == "restarted")
            .collect();
        assert_eq!(restarted.len(), 1, "{:?}", batch.events);
        assert!(
            restarted[0].message.contains("rank 3 exited with code 1")
                && restarted[0].message.contains("failure 1 of at most 1"),
            "{}",
            restarted[0].message
        );
        e.schedule(T0 + 2000);
        let (batch, cmds) = e.take(T0 + 2000);
        let (g2, a2, _, _) = launch(&cmds);
        assert!(g2 > g1);
        assert_eq!(a2, 2);
        assert_eq!(update(&batch, "a").restarts, 1);
        e.failed(T0 + 3000, "a", g2, "rank 0 exited with code 2");
        let (batch, cmds) = e.take(T0 + 3000);
        assert_eq!(cmds, [Command::Stop { job: "a".into() }]);
        let u = update(&batch, "a");
        assert_eq!(u.state, JobState::Failed);
        // Its reason says why, not only that it failed.
        assert!(
            u.reason.starts_with("failed: ") && u.reason.contains("rank 0 exited with code 2"),
            "{}",
            u.reason
        );
        let failed = batch
            .events
            .iter()
            .find(|ev| ev.kind == "failed")
            .expect("a failed event");
        assert!(
            failed.message.contains("rank 0 exited with code 2")
                && failed.message.contains("max_retries = 1"),
            "{}",
            failed.message
        );
        e.check().expect("invariants");
    }

    fn service(min: u32, max: u32) -> JobSpec {
        JobSpec {
            kind: JobKind::Inference,
            replicas: Some(switchyard_core::Replicas {
                min,
                max,
                capacity_per_replica: 1.0,
                load: None,
            }),
            work: Work::Open,
            ..spec(1.0)
        }
    }

    /// (replicas added, replicas removed) among `cmds`; every one names its nodes, and
    /// their shares add up to the replica's size.
    fn replica_commands(cmds: &[Command]) -> (usize, usize) {
        let (mut added, mut removed) = (0, 0);
        for c in cmds {
            match c {
                Command::AddReplica {
                    job,
                    accelerators,
                    nodes,
                    ..
                } => {
                    assert_eq!(job, "s");
                    assert!(!nodes.is_empty(), "{c:?}");
                    assert_eq!(
                        nodes.iter().map(|n| n.accelerators).sum::<u32>(),
                        *accelerators
                    );
                    added += 1;
                }
                Command::RemoveReplica { job, nodes, .. } => {
                    assert_eq!(job, "s");
                    assert!(!nodes.is_empty(), "{c:?}");
                    removed += 1;
                }
                other => panic!("unexpected command {other:?}"),
            }
        }
        (added, removed)
    }

    /// A replica its backend keeps restarting still serves as far as the scheduler knows;
    /// the service's reason says how often, and how the last one ended.
    #[test]
    fn a_service_reason_counts_its_replica_restarts() {
        let mut e = Engine::new(&Fleet::default_fleet(), Clock::starting_at(T0));
        let mut r = record("s", 1);
        r.kind = "inference".into();
        e.admit(T0, &r, service(1, 4));
        e.schedule(T0);
        let _ = e.take(T0);
        for n in 1..=2 {
            e.note(
                T0 + n,
                "s",
                "replica_restarted",
                &format!("replica process s/replica-1.0/rank-0 exited with code 3; its agent restarted it (restart {n})"),
                None,
            );
        }
        e.schedule(T0 + 3);
        let (batch, _) = e.take(T0 + 3);
        let u = update(&batch, "s");
        assert!(
            u.reason.ends_with(
                "; replica processes restarted 2 times (the last: replica process \
                 s/replica-1.0/rank-0 exited with code 3; its agent restarted it (restart 2))"
            ),
            "{}",
            u.reason
        );
        assert!(
            u.reason.starts_with("serving with 1 replica"),
            "{}",
            u.reason
        );
    }

    #[test]
    fn services_scale_within_their_range_once_per_request() {
        let mut e = Engine::new(&Fleet::default_fleet(), Clock::starting_at(T0));
        let mut r = record("s", 1);
        r.kind = "inference".into();
        e.admit(T0, &r, service(1, 4));
        e.schedule(T0);
        let (batch, cmds) = e.take(T0);
        assert_eq!(replica_commands(&cmds), (1, 0));
        let u = update(&batch, "s");
        assert_eq!((u.state, u.allocated), (JobState::Running, 8));
        assert!(
            u.reason
                .starts_with("serving with 1 replica of 8 accelerators (8 in all"),
            "{}",
            u.reason
        );

        // Up to 3: two more replicas, each with its nodes.
        e.scale(T0 + 1000, "s", 3);
        e.schedule(T0 + 1000);
        let (batch, cmds) = e.take(T0 + 1000);
        assert_eq!(replica_commands(&cmds), (2, 0));
        let u = update(&batch, "s");
        assert_eq!(u.allocated, 24);
        assert!(
            u.reason.starts_with("serving with 3 replicas"),
            "{}",
            u.reason
        );
        assert_eq!(
            batch
                .events
                .iter()
                .filter(|ev| ev.kind == "replica_added")
                .count(),
            2
        );

        // The same request again (the next pass reads it again): nothing.
        e.scale(T0 + 2000, "s", 3);
        e.schedule(T0 + 2000);
        let (batch, cmds) = e.take(T0 + 2000);
        assert!(cmds.is_empty(), "{cmds:?}");
        assert!(
            batch.updates.is_empty() && batch.events.is_empty(),
            "{batch:?}"
        );

        // Down to 1: two replicas removed, by their nodes.
        e.scale(T0 + 3000, "s", 1);
        e.schedule(T0 + 3000);
        let (batch, cmds) = e.take(T0 + 3000);
        assert_eq!(replica_commands(&cmds), (0, 2));
        let u = update(&batch, "s");
        assert_eq!((u.state, u.allocated), (JobState::Running, 8));
        // An operator's request, not a fall in load (the words fit both).
        let removed: Vec<&str> = batch
            .events
            .iter()
            .filter(|e| e.kind == "replica_removed")
            .map(|e| e.message.as_str())
            .collect();
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(
            removed
                .iter()
                .all(|m| m.contains("scaled down: 1 replica wanted")),
            "{removed:?}"
        );

        // Beyond the range: clamped to max 4, then to min 1 (never to none).
        e.scale(T0 + 4000, "s", 10);
        e.schedule(T0 + 4000);
        let (batch, cmds) = e.take(T0 + 4000);
        assert_eq!(replica_commands(&cmds), (3, 0));
        assert_eq!(update(&batch, "s").allocated, 32);
        e.scale(T0 + 5000, "s", 0);
        e.schedule(T0 + 5000);
        let (batch, cmds) = e.take(T0 + 5000);
        assert_eq!(replica_commands(&cmds), (0, 3));
        assert_eq!(update(&batch, "s").allocated, 8);

        // Unknown jobs and jobs that are not services are left alone.
        e.admit(T0 + 6000, &record("a", 2), spec(3600.0));
        e.schedule(T0 + 6000);
        let _ = e.take(T0 + 6000);
        e.scale(T0 + 7000, "a", 3);
        e.scale(T0 + 7000, "unknown", 3);
        e.schedule(T0 + 7000);
        let (batch, cmds) = e.take(T0 + 7000);
        assert!(
            cmds.is_empty() && batch.updates.is_empty(),
            "{cmds:?} {batch:?}"
        );
        e.check().expect("invariants");
    }

    /// A fleet of one cloud provider selling H100 on demand, with the `clusters` (TOML) given.
    fn h100_fleet(clusters: &str) -> Fleet {
        let text = format!(
            "name = \"test\"\n[[providers]]\nname = \"p\"\nkind = \"cloud\"\n\
             [[providers.contracts]]\naccelerator = \"H100-SXM\"\non_demand_price = 4.0\n\
             {clusters}"
        );
        Fleet::from_toml(&text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    /// The on-demand cluster "lab" of `nodes` H100 servers, for [`h100_fleet`].
    fn lab_cluster(nodes: u32) -> String {
        format!(
            "[[clusters]]\nname = \"lab\"\nprovider = \"p\"\nregion = \"r\"\n\
             accelerator = \"H100\"\nnodes = {nodes}\ncapacity = \"on_demand\"\n\
             node_mtbf_hours = 1000.0\nrepair_hours = 24.0\n"
        )
    }

    /// A service with fewer replicas than it wants says why the next one waits, as a pending
    /// job would: here the one cluster holds two of its four.
    #[test]
    fn a_service_short_of_replicas_says_why() {
        let fleet = h100_fleet(&lab_cluster(2));
        let mut e = Engine::new(&fleet, Clock::starting_at(T0));
        let mut r = record("s", 1);
        r.kind = "inference".into();
        e.admit(T0, &r, service(1, 4));
        e.schedule(T0);
        let _ = e.take(T0);
        e.scale(T0 + 1000, "s", 4);
        e.schedule(T0 + 1000);
        let (batch, _) = e.take(T0 + 1000);
        let u = update(&batch, "s");
        assert_eq!(u.allocated, 16);
        assert!(
            u.reason.starts_with("serving with 2 of 4 wanted replicas")
                && u.reason.contains(
                    "; the next replica is waiting for 8 free accelerators in one cluster it \
                     accepts"
                ),
            "{}",
            u.reason
        );
        // With all it wants, no such words.
        e.scale(T0 + 2000, "s", 2);
        e.schedule(T0 + 2000);
        let (batch, _) = e.take(T0 + 2000);
        let u = update(&batch, "s");
        assert!(
            u.reason.starts_with("serving with 2 replicas") && !u.reason.contains("next"),
            "{}",
            u.reason
        );
    }

    /// The words on why the next replica waits follow what they say while nothing about the
    /// service itself changes: here a node under another job is drained.
    #[test]
    fn a_short_services_reason_follows_a_drain_elsewhere() {
        let fleet = h100_fleet(&lab_cluster(3));
        let mut e = Engine::new(&fleet, Clock::starting_at(T0));
        e.admit(T0, &record("b", 1), spec(3600.0));
        let mut r = record("s", 2);
        r.kind = "inference".into();
        e.admit(T0, &r, service(1, 4));
        e.schedule(T0);
        let _ = e.take(T0);
        e.scale(T0 + 1000, "s", 4);
        e.schedule(T0 + 1000);
        let (batch, _) = e.take(T0 + 1000);
        let before = update(&batch, "s").reason.clone();
        assert!(
            before.starts_with("serving with 2 of 4 wanted replicas")
                && before.contains("; the next replica is waiting for 8 free accelerators")
                && !before.contains("drained"),
            "{before}"
        );
        // The batch job holds one node: drain all three (what runs goes on).
        e.nodes_drained(T0 + 2000, 0, vec![0, 1, 2]);
        e.schedule(T0 + 2000);
        let (batch, _) = e.take(T0 + 2000);
        let after = update(&batch, "s").reason.clone();
        assert!(
            after.contains("; 3 drained nodes take no new work"),
            "{after}"
        );
        // Nothing changed since: nothing is written again.
        e.schedule(T0 + 3000);
        let (batch, _) = e.take(T0 + 3000);
        assert!(
            !batch.updates.iter().any(|u| u.id == "s"),
            "{:?}",
            batch.updates
        );
    }

    /// A service whose replicas run on two clusters holds accelerators on each, as the store
    /// (the fleet view, the busy metric) must count them; its cluster is where it holds most.
    #[test]
    fn a_service_across_clusters_is_counted_on_each() {
        let fleet = h100_fleet(
            r#"
[[clusters]]
name = "lab"
provider = "p"
region = "r"
accelerator = "H100"
nodes = 2
accelerators_per_node = 2
capacity = "on_demand"
node_mtbf_hours = 1000.0
repair_hours = 24.0
[[clusters]]
name = "big"
provider = "p"
region = "r"
accelerator = "H100"
nodes = 4
capacity = "on_demand"
node_mtbf_hours = 1000.0
repair_hours = 24.0
"#,
        );
        let mut e = Engine::new(&fleet, Clock::starting_at(T0));
        let mut r = record("s", 1);
        r.kind = "inference".into();
        e.admit(
            T0,
            &r,
            JobSpec {
                accelerators: 2,
                ..service(1, 4)
            },
        );
        // What each cluster holds, by the replica events.
        let mut held: BTreeMap<String, i64> = BTreeMap::new();
        let mut check = |batch: &Batch| {
            for ev in &batch.events {
                let cluster = ev
                    .cluster
                    .clone()
                    .expect("replica events name their cluster");
                match ev.kind.as_str() {
                    "replica_added" => *held.entry(cluster).or_default() += 2,
                    "replica_removed" => *held.entry(cluster).or_default() -= 2,
                    _ => {}
                }
            }
            held.retain(|_, n| *n > 0);
            let u = update(batch, "s");
            let by_cluster: BTreeMap<String, i64> =
                u.allocated_by_cluster.iter().cloned().collect();
            assert_eq!(by_cluster, held, "{u:?}");
            assert_eq!(u.allocated, held.values().sum::<i64>());
            let most = held.values().max().copied().unwrap_or(0);
            let main = u.cluster.clone().expect("a cluster");
            assert_eq!(held.get(&main), Some(&most), "{u:?}");
            u.clone()
        };
        e.schedule(T0);
        let _ = check(&e.take(T0).0);
        e.scale(T0 + 1000, "s", 3);
        e.schedule(T0 + 1000);
        let u = check(&e.take(T0 + 1000).0);
        assert_eq!(
            u.allocated_by_cluster.len(),
            2,
            "3 replicas of 2 do not fit the 4 accelerators of lab: {u:?}"
        );
        assert!(
            u.reason.contains(" on lab") && u.reason.contains(" on big"),
            "{}",
            u.reason
        );
        e.scale(T0 + 2000, "s", 2);
        e.schedule(T0 + 2000);
        let u = check(&e.take(T0 + 2000).0);
        assert_eq!(u.allocated, 4);
        e.scale(T0 + 3000, "s", 1);
        e.schedule(T0 + 3000);
        let u = check(&e.take(T0 + 3000).0);
        assert_eq!(u.allocated_by_cluster.len(), 1, "{u:?}");
        e.check().expect("invariants");
    }

    #[test]
    fn a_new_leader_applies_the_stored_count() {
        // What a recovery does: the job comes back running, then the first pass scales it.
        let mut e = Engine::new(&Fleet::default_fleet(), Clock::starting_at(T0));
        let mut r = record("s", 1);
        r.kind = "inference".into();
        r.state = JobState::Running;
        r.allocated = 16;
        r.replicas_wanted = Some(2);
        e.admit(T0, &r, service(1, 4));
        e.scale(T0, "s", 2);
        e.schedule(T0);
        let (batch, cmds) = e.take(T0);
        assert_eq!(replica_commands(&cmds), (2, 0));
        assert_eq!(update(&batch, "s").allocated, 16);
    }

    #[test]
    fn interruptions_and_stale_reports_do_not_use_up_retries() {
        let mut e = Engine::new(&Fleet::default_fleet(), Clock::starting_at(T0));
        let mut sp = spec(3600.0);
        sp.kind = JobKind::Training;
        e.admit_with(
            T0,
            &record("a", 1),
            sp,
            JobExtras {
                command: None,
                max_retries: Some(0),
            },
        );
        let generation = |cmds: &[Command]| {
            cmds.iter()
                .find_map(|c| match c {
                    Command::Launch { generation, .. } => Some(*generation),
                    _ => None,
                })
                .expect("a launch")
        };
        e.schedule(T0);
        let (_, cmds) = e.take(T0);
        let g1 = generation(&cmds);
        e.interrupted(T0 + 1, "a", g1, "rank 0 was stopped by its agent");
        let (batch, _) = e.take(T0 + 1);
        assert_eq!(
            update(&batch, "a").state,
            JobState::Pending,
            "requeued, not failed"
        );
        assert!(
            batch
                .events
                .iter()
                .any(|ev| ev.kind == "restarted" && ev.message.contains("not counted")),
            "{:?}",
            batch.events
        );
        e.schedule(T0 + 2);
        let (_, cmds) = e.take(T0 + 2);
        let g2 = generation(&cmds);
        // A late report about the first run changes nothing.
        e.failed(T0 + 3, "a", g1, "rank 1 exited with code 1");
        let (batch, cmds) = e.take(T0 + 3);
        assert!(cmds.is_empty(), "{cmds:?}");
        assert!(batch.updates.iter().all(|u| u.state == JobState::Running));
        // With no retries, the first real failure ends it.
        e.failed(T0 + 4, "a", g2, "rank 1 exited with code 1");
        let (batch, _) = e.take(T0 + 4);
        assert_eq!(update(&batch, "a").state, JobState::Failed);
        e.check().expect("invariants");
    }

    #[test]
    fn a_new_leader_keeps_counting_failures_from_the_store() {
        let mut e = Engine::new(&Fleet::default_fleet(), Clock::starting_at(T0));
        let mut sp = spec(3600.0);
        sp.kind = JobKind::Training;
        let mut r = record("a", 1);
        r.state = JobState::Running;
        r.restarts = 2;
        r.failures = 2;
        e.admit_with(
            T0,
            &r,
            sp,
            JobExtras {
                command: None,
                max_retries: Some(2),
            },
        );
        e.schedule(T0);
        let (batch, cmds) = e.take(T0);
        assert_eq!(update(&batch, "a").failures, 2);
        let Some(Command::Launch {
            generation,
            attempt,
            recovered,
            ..
        }) = cmds.first().cloned()
        else {
            panic!("a launch: {cmds:?}");
        };
        assert_eq!(
            attempt, 4,
            "after 3 starts, the recovery's start is the 4th"
        );
        assert!(recovered, "the first start after a recovery says so");
        e.failed(T0 + 1, "a", generation, "rank 0 exited with code 1");
        assert_eq!(
            update(&e.take(T0 + 1).0, "a").state,
            JobState::Failed,
            "its retries were used up under the previous leader"
        );
    }

    /// A waiting job's reason follows its team's use and the free accelerators; an event is
    /// written only when its words change (thousands of waiting jobs wrote one each time any
    /// figure moved: 68,744 events for 2,918 jobs in 25 minutes).
    #[test]
    fn waiting_events_follow_the_words_not_the_figures() {
        assert!(same_words(
            "quota: team research holds 8192 of its cap 16384 and needs 64 more",
            "quota: team research holds 8200 of its cap 16384 and needs 64 more",
            &[]
        ));
        assert!(!same_words(
            "waiting for 64 free accelerators",
            "quota: team research holds 8200 of its cap 16384 and needs 64 more",
            &[]
        ));
        assert!(same_words(
            "predicted to finish in 3.2 h, checkpointing every 41.3 min",
            "predicted to finish in 12.75 h, checkpointing every 9 min",
            &[]
        ));
        assert!(!same_words(
            "waiting for 8 accelerators on colossus-1",
            "waiting for 8 accelerators on colossus-2",
            &[]
        ));
        assert!(!same_words("quota cap on dc.1", "quota cap on dc.2", &[]));
        // A fleet name with a space before its digits is a name, not a figure.
        let mut fleet = Fleet::default_fleet();
        fleet.clusters[0].name = "gpu 1".into();
        fleet.clusters[1].name = "gpu 2".into();
        fleet.tenants[0].teams[0].name = "team gpu 1".into();
        let spaced = spaced_names(&fleet);
        assert_eq!(spaced, ["team gpu 1", "gpu 1", "gpu 2"], "longest first");
        assert!(!same_words(
            "waiting for 8 accelerators on gpu 1",
            "waiting for 8 accelerators on gpu 2",
            &spaced
        ));
        assert!(same_words(
            "waiting for 8 accelerators on gpu 1",
            "waiting for 16 accelerators on gpu 1",
            &spaced
        ));
        // Whole words only: a figure after a word that ends like a name stays a figure, and
        // `gpu 1` is not `gpu_1`.
        let short = vec!["a 1".to_owned(), "gpu 1".to_owned()];
        assert!(same_words("data 16384 held", "data 16 held", &short));
        assert!(!same_words("on gpu 1", "on gpu_1", &short));
        assert!(!same_words("on a 1 now", "on a 2 now", &short));
    }

    /// A new leader keeps a pending job's stored reason until a pass of its own looks at the
    /// job (its first passes do not reach every job: they all read "not yet considered" for
    /// minutes), and the cluster it last ran on until it is placed again.
    #[test]
    fn a_new_leader_keeps_a_waiting_jobs_reason_and_last_cluster() {
        let mut e = Engine::new(&Fleet::default_fleet(), Clock::starting_at(T0));
        let mut big = record("big", 1);
        big.state = JobState::Running;
        big.cluster = Some("aws-h100-spot".into());
        big.started_ms = Some(T0 - 5000);
        let full = JobSpec {
            accelerators: 2048,
            clusters: vec!["aws-h100-spot".into()],
            ..spec(36_000.0)
        };
        e.admit(T0, &big, full);
        let mut waiting = record("a", 2);
        waiting.reason = "re-queued after preemption; waiting for 8 accelerators".into();
        waiting.cluster = Some("aws-h100-spot".into());
        waiting.restarts = 1;
        let pinned = JobSpec {
            clusters: vec!["aws-h100-spot".into()],
            ..spec(3600.0)
        };
        e.admit(T0, &waiting, pinned);
        let (batch, _) = e.take(T0);
        assert!(
            !batch
                .events
                .iter()
                .any(|ev| ev.message.contains("not yet considered")),
            "{:?}",
            batch.events
        );
        assert!(
            batch
                .updates
                .iter()
                .all(|u| u.id != "a" || u.reason == waiting.reason),
            "{:?}",
            batch.updates
        );
        // A pass looks at it: new words, and still the cluster it last ran on.
        e.schedule(T0);
        let (batch, _) = e.take(T0);
        let u = update(&batch, "a");
        assert_eq!(u.state, JobState::Pending);
        assert_ne!(u.reason, waiting.reason);
        assert_eq!(u.cluster.as_deref(), Some("aws-h100-spot"));
    }

    /// An engine that has just recovered job `a`, running on colossus-1 since T0 - 5 s.
    fn recovered_a() -> Engine {
        let mut e = Engine::new(&Fleet::default_fleet(), Clock::starting_at(T0));
        let mut r = record("a", 1);
        r.state = JobState::Running;
        r.cluster = Some("colossus-1".into());
        r.started_ms = Some(T0 - 5000);
        e.admit(T0, &r, spec(3600.0));
        e
    }

    /// A recovered job cancelled before the new leader places it again is stopped in its
    /// backend, which may be keeping its earlier run going meanwhile.
    #[test]
    fn a_recovered_job_cancelled_before_it_is_placed_again_is_stopped() {
        let mut e = recovered_a();
        e.cancel(T0 + 10, "a");
        let (batch, cmds) = e.take(T0 + 10);
        assert_eq!(cmds, [Command::Stop { job: "a".into() }]);
        assert_eq!(update(&batch, "a").state, JobState::Cancelled);
    }

    /// While the backend settles, a recovered job not placed again is not written (the store
    /// keeps it running); its `recovered` event is, and the job is written once placed.
    #[test]
    fn a_recovered_job_is_not_written_as_pending_while_the_backend_settles() {
        let mut e = recovered_a();
        e.set_settling(true);
        let (batch, _) = e.take(T0);
        assert!(batch.updates.is_empty(), "{:?}", batch.updates);
        assert!(batch.events.iter().any(|ev| ev.kind == "recovered"));
        let (batch, _) = e.take(T0 + 500);
        assert!(
            batch.updates.is_empty() && batch.events.is_empty(),
            "{batch:?}"
        );
        e.set_settling(false);
        e.schedule(T0 + 1000);
        let (batch, cmds) = e.take(T0 + 1000);
        assert_eq!(update(&batch, "a").state, JobState::Running);
        assert!(matches!(
            cmds.as_slice(),
            [Command::Launch {
                recovered: true,
                ..
            }]
        ));
    }

    #[test]
    fn recovery_of_a_running_job_is_recorded() {
        let mut e = recovered_a();
        e.schedule(T0);
        let (batch, _) = e.take(T0);
        assert!(batch.events.iter().any(|ev| ev.kind == "recovered"));
        let u = update(&batch, "a");
        assert_eq!(u.state, JobState::Running);
        assert_eq!(u.started_ms, Some(T0 - 5000), "the first start is kept");
    }

    /// Until a new leader's first pass places it again, a recovered run reads as being placed
    /// again, not as still "running on" the cluster its old reason names.
    #[test]
    fn a_recovered_run_waiting_for_its_first_pass_says_so() {
        let mut e = Engine::new(&Fleet::default_fleet(), Clock::starting_at(T0));
        let mut r = record("a", 1);
        r.state = JobState::Running;
        r.cluster = Some("colossus-1".into());
        r.reason = "running on colossus-1".into();
        r.started_ms = Some(T0 - 5000);
        e.admit(T0, &r, spec(3600.0));
        let (batch, _) = e.take(T0);
        let u = update(&batch, "a");
        assert_eq!(u.state, JobState::Pending);
        assert!(
            u.reason
                .starts_with("a new scheduling leader places it again"),
            "{}",
            u.reason
        );
    }

    /// Where node agents were given a run's ranks is stored, and a new leader's launches of the
    /// job carry it (so that the backend can wait for those ranks to stop) until the backend
    /// says where in this term.
    #[test]
    fn where_ranks_ran_is_stored_and_handed_to_a_new_leaders_launch() {
        let before = switchyard_store::RanOn {
            nodes: vec!["n-000000000004".into(), "n-000000000005".into()],
            placement: None,
            replicas: Vec::new(),
        };
        let mut e = Engine::new(&Fleet::default_fleet(), Clock::starting_at(T0));
        let mut r = record("a", 1);
        r.state = JobState::Running;
        r.cluster = Some("colossus-1".into());
        r.ran_on = Some(before.clone());
        e.admit(T0, &r, spec(3600.0));
        e.schedule(T0);
        let (batch, cmds) = e.take(T0);
        let Some(&Command::Launch {
            generation,
            recovered: true,
            ref ran_before,
            ..
        }) = cmds.first()
        else {
            panic!("a recovered launch: {cmds:?}");
        };
        assert_eq!(ran_before.as_ref(), Some(&before));
        assert_eq!(update(&batch, "a").ran_on, Some(before.clone()), "kept");

        // The backend hands the new attempt out: stored. A stale generation's is ignored.
        let now = switchyard_store::RanOn {
            nodes: vec!["n-000000000000".into()],
            placement: None,
            replicas: Vec::new(),
        };
        e.ran_on("a", generation + 1, before.clone());
        e.ran_on("a", generation, now.clone());
        e.schedule(T0 + 1000);
        let (batch, _) = e.take(T0 + 1000);
        assert_eq!(update(&batch, "a").ran_on, Some(now));

        // A later launch (a restart in this term, after the backend said where) carries none.
        e.interrupted(T0 + 2000, "a", generation, "lost");
        e.schedule(T0 + 2000);
        let (_, cmds) = e.take(T0 + 2000);
        let launch = cmds.iter().find(|c| matches!(c, Command::Launch { .. }));
        assert!(
            matches!(
                launch,
                Some(Command::Launch {
                    recovered: false,
                    ran_before: None,
                    ..
                })
            ),
            "{cmds:?}"
        );
    }

    /// A recovered job whose backend took over the work of its earlier attempt is that attempt
    /// again: attempt N has N - 1 restarts (also when an earlier leader counted its recovery and
    /// died before taking it back), and a retry after it is the next attempt.
    #[test]
    fn a_recovered_run_whose_work_was_taken_over_keeps_its_attempt() {
        for (stored_restarts, launched) in [(2, 4), (3, 5)] {
            let mut e = Engine::new(&Fleet::default_fleet(), Clock::starting_at(T0));
            let mut r = record("a", 1);
            r.state = JobState::Running;
            r.cluster = Some("colossus-1".into());
            r.started_ms = Some(T0 - 5000);
            r.restarts = stored_restarts;
            e.admit(T0, &r, spec(3600.0));
            e.schedule(T0);
            let (_, cmds) = e.take(T0);
            let Some(&Command::Launch {
                generation,
                attempt,
                recovered: true,
                ..
            }) = cmds.first()
            else {
                panic!("a recovered launch: {cmds:?}");
            };
            assert_eq!(attempt, launched);
            // Only an older attempt of this very run counts.
            e.continued(T0 + 100, "a", generation + 1, 3);
            e.continued(T0 + 100, "a", generation, launched);
            let (batch, _) = e.take(T0 + 100);
            assert!(batch.events.is_empty(), "{:?}", batch.events);
            e.continued(T0 + 200, "a", generation, 3);
            let (batch, _) = e.take(T0 + 200);
            let u = update(&batch, "a");
            assert_eq!(u.restarts, 2, "attempt 3 has two restarts before it");
            assert!(
                batch.events.iter().any(|ev| ev.kind == "continued"
                    && ev.message.starts_with("the run is attempt 3 again")),
                "{:?}",
                batch.events
            );
            e.failed(T0 + 300, "a", generation, "rank 0 exited with code 1");
            e.schedule(T0 + 300);
            let (batch, cmds) = e.take(T0 + 300);
            assert!(
                cmds.iter().any(|c| matches!(
                    c,
                    Command::Launch {
                        attempt: 4,
                        recovered: false,
                        ..
                    }
                )),
                "{cmds:?}"
            );
            assert_eq!(update(&batch, "a").restarts, 3);
            e.check().expect("invariants");
        }
    }

    /// A recovered run taken over as its first attempt, whose Slurm job was still pending,
    /// keeps the job's first start when it begins: the scheduler's first start is the earlier
    /// leader's, and started_ms must agree with the queued time it reports.
    #[test]
    fn a_taken_over_first_attempt_that_begins_keeps_its_first_start() {
        let mut e = Engine::new(&Fleet::default_fleet(), Clock::starting_at(T0));
        let mut r = record("a", 1);
        r.state = JobState::Running;
        r.cluster = Some("colossus-1".into());
        r.submitted_ms = T0 - 10_000;
        r.started_ms = Some(T0 - 5000);
        e.admit(T0, &r, spec(3600.0));
        e.schedule(T0);
        let (_, cmds) = e.take(T0);
        let Some(&Command::Launch { generation, .. }) = cmds.first() else {
            panic!("a launch: {cmds:?}");
        };
        e.continued(T0 + 100, "a", generation, 1);
        e.held(T0 + 100, "a", generation, "Slurm job 7 waits", false);
        e.began(T0 + 60_000, "a", generation, None);
        let (batch, _) = e.take(T0 + 60_000);
        let u = update(&batch, "a");
        assert_eq!((u.restarts, u.started_ms), (0, Some(T0 - 5000)));
        assert!(u.reason.starts_with("running on"), "{}", u.reason);
    }

    /// A recovered run is predicted to end after a restart (its first start here starts its
    /// work again from its checkpoint) until its backend takes the running work over: then it
    /// ends when the same run placed afresh would.
    #[test]
    fn a_recovered_run_taken_over_sheds_its_restart_from_its_predicted_end() {
        let (fresh, _) = launched_a(3600.0);
        let fresh_end = fresh.sched.job(fresh.by_id["a"]).end_s.expect("running");
        let mut e = Engine::new(&Fleet::default_fleet(), Clock::starting_at(T0));
        let mut r = record("a", 1);
        r.state = JobState::Running;
        r.cluster = Some("colossus-1".into());
        e.admit(T0, &r, spec(3600.0));
        e.schedule(T0);
        let (_, cmds) = e.take(T0);
        let Some(&Command::Launch { generation, .. }) = cmds.first() else {
            panic!("a launch: {cmds:?}");
        };
        let job = e.by_id["a"];
        let end = |e: &Engine| e.sched.job(job).end_s.expect("running");
        let restarting = end(&e);
        assert!(
            restarting > fresh_end + 1.0,
            "a restart is charged: {restarting} vs {fresh_end}"
        );
        e.continued(T0 + 100, "a", generation, 1);
        assert!(
            (end(&e) - fresh_end).abs() < 1e-6,
            "taken over, no restart: {} vs {fresh_end}",
            end(&e)
        );
    }

    /// A suspended run is paused: it keeps what it did, its reason and events say so once,
    /// and when it goes on its predicted end has moved by exactly the pause, with no restart.
    #[test]
    fn a_paused_run_keeps_its_progress_and_ends_later_by_the_pause() {
        let (mut e, generation) = launched_a(3600.0);
        let job = e.by_id["a"];
        let end = |e: &Engine| e.sched.job(job).end_s.expect("running");
        let before = end(&e);
        let why = "Slurm job 7 is suspended";
        e.paused(T0 + 600_000, "a", generation, why);
        e.paused(T0 + 602_000, "a", generation, why);
        e.schedule(T0 + 602_000);
        let (batch, cmds) = e.take(T0 + 602_000);
        assert!(cmds.is_empty(), "{cmds:?}");
        let paused: Vec<_> = batch
            .events
            .iter()
            .filter(|ev| ev.kind == "paused")
            .collect();
        assert_eq!(paused.len(), 1, "{:?}", batch.events);
        assert_eq!(
            paused[0].message,
            "attempt 1: paused where it stands, no progress: Slurm job 7 is suspended"
        );
        let u = update(&batch, "a");
        assert!(u.reason.starts_with("paused on "), "{}", u.reason);
        assert!(
            u.reason.ends_with(": Slurm job 7 is suspended"),
            "{}",
            u.reason
        );
        // A hold that does not interrupt it leaves it paused.
        e.held(T0 + 603_000, "a", generation, "Slurm job 7 waits", false);
        e.schedule(T0 + 603_000);
        let (batch, _) = e.take(T0 + 603_000);
        assert!(
            !batch.events.iter().any(|ev| ev.kind == "held"),
            "{:?}",
            batch.events
        );
        e.began(T0 + 1_200_000, "a", generation, None);
        e.schedule(T0 + 1_200_000);
        let (batch, cmds) = e.take(T0 + 1_200_000);
        assert!(cmds.is_empty(), "no restart: {cmds:?}");
        let resumed: Vec<_> = batch
            .events
            .iter()
            .filter(|ev| ev.kind == "resumed" || ev.kind == "began")
            .map(|ev| (ev.kind.as_str(), ev.message.as_str()))
            .collect();
        assert_eq!(
            resumed,
            [("resumed", "attempt 1: goes on after it was paused 600.0 s")]
        );
        assert!(
            (end(&e) - before - 600.0).abs() < 1e-6,
            "moved by the pause: {} then {}",
            before,
            end(&e)
        );
        assert!(update(&batch, "a").reason.starts_with("running on"));
        e.check().expect("invariants");
    }

    /// A job recovered by a new leader reports the queueing it had before its first start,
    /// not the time up to its start under the new leader.
    #[test]
    fn a_recovered_job_counts_its_queueing_up_to_its_first_start() {
        let mut e = Engine::new(&Fleet::default_fleet(), Clock::starting_at(T0));
        let mut r = record("a", 1);
        r.state = JobState::Running;
        r.cluster = Some("colossus-1".into());
        r.submitted_ms = T0 - 3_600_000;
        r.started_ms = Some(T0 - 3_590_000);
        e.admit(T0, &r, spec(60.0));
        e.schedule(T0);
        let (_, cmds) = e.take(T0);
        let Some(Command::Launch { generation, .. }) = cmds.first().cloned() else {
            panic!("a launch: {cmds:?}");
        };
        e.finished(T0 + 60_000, "a", generation);
        let (batch, _) = e.take(T0 + 60_000);
        let finished = batch
            .events
            .iter()
            .find(|ev| ev.kind == "finished")
            .unwrap_or_else(|| panic!("{:?}", batch.events));
        assert!(
            finished
                .message
                .contains("(10 s queued before its first start)"),
            "{}",
            finished.message
        );
    }

    /// A run recovered by a new leader keeps its place: a service that was waiting for the
    /// same accelerators (services are placed first in a pass) does not take them.
    #[test]
    fn a_recovered_run_is_placed_before_waiting_services() {
        let mut e = Engine::new(&Fleet::default_fleet(), Clock::starting_at(T0));
        let whole_cluster = |s: JobSpec| JobSpec {
            accelerators: 2048,
            clusters: vec!["aws-h100-spot".into()],
            ..s
        };
        let mut run = record("run", 1);
        run.kind = "training".into();
        run.state = JobState::Running;
        run.cluster = Some("aws-h100-spot".into());
        run.started_ms = Some(T0 - 5000);
        let training = JobSpec {
            kind: JobKind::Training,
            ..whole_cluster(spec(3600.0))
        };
        e.admit(T0, &run, training);
        let mut svc = record("svc", 2);
        svc.kind = "inference".into();
        e.admit(T0, &svc, whole_cluster(service(1, 2)));
        e.schedule(T0);
        let (batch, _) = e.take(T0);
        assert_eq!(update(&batch, "run").state, JobState::Running);
        assert!(
            batch
                .updates
                .iter()
                .filter(|u| u.id == "svc")
                .all(|u| u.state == JobState::Pending),
            "{:?}",
            batch.updates
        );
    }

    /// The progress a training run's checkpoints hold is written as it grows, and a new
    /// leader resumes the run from it: the work left, not the whole, decides when it ends.
    #[test]
    fn a_new_leader_resumes_a_run_from_its_kept_progress() {
        let training = || JobSpec {
            kind: JobKind::Training,
            ..spec(100_000.0)
        };
        let mut first = Engine::new(&Fleet::default_fleet(), Clock::starting_at(T0));
        let mut r = record("a", 1);
        r.kind = "training".into();
        first.admit(T0, &r, training());
        first.schedule(T0);
        let (batch, cmds) = first.take(T0);
        assert_eq!(update(&batch, "a").work_done, 0.0);
        let Some(Command::Launch {
            expected_end_ms: whole_end,
            ..
        }) = cmds.first().cloned()
        else {
            panic!("a launch: {cmds:?}");
        };
        let whole_ms = (whole_end - T0) as f64;
        // Nothing else changes about the job; its kept progress is written all the same, at
        // most once a minute.
        let later = T0 + 60_000_000;
        first.schedule(later);
        let (batch, _) = first.take(later);
        let kept = update(&batch, "a").work_done;
        assert!(kept > 0.0 && kept <= 0.6 + 1e-9, "kept {kept}");
        let (batch, _) = first.take(later + 1_000);
        assert!(batch.updates.is_empty(), "{:?}", batch.updates);

        let mut second = Engine::new(&Fleet::default_fleet(), Clock::starting_at(T0));
        r.state = JobState::Running;
        r.started_ms = Some(T0);
        r.work_done = kept;
        second.admit(later, &r, training());
        second.schedule(later);
        let (_, cmds) = second.take(later);
        let Some(Command::Launch {
            expected_end_ms, ..
        }) = cmds.first().cloned()
        else {
            panic!("a launch: {cmds:?}");
        };
        // What is left, after a restart (the scheduler's default of 300 s: the fleet's
        // clusters state none) unless its backend takes the running work over.
        let restart_ms = (expected_end_ms - later) as f64 - (1.0 - kept) * whole_ms;
        assert!(
            (restart_ms - 300_000.0).abs() < 0.001 * whole_ms,
            "kept {kept}, restart {restart_ms} ms"
        );
    }
}
