//! The Slurm backend: the server's [`Backend`] over one or more Slurm clusters.
//!
//! `act` and `poll` never block: commands go over a channel to a worker thread the backend
//! owns, which runs Slurm's tools; what it sees comes back through a shared outbox. The worker
//! is a level-triggered reconciler (kube-rs style): each round it re-reads Slurm (capacity with
//! `sinfo`, jobs with `squeue`) and fixes the difference with what the leader wants:
//!
//! - a wanted run without a Slurm job is submitted (`sbatch`); a failed submission becomes an
//!   [`Observed::Event`] carrying Slurm's message and is retried with exponential back-off,
//!   never dropped;
//! - a Slurm job carrying Switchyard's tag that nobody wants any more is cancelled (`scancel`);
//!   jobs without the tag are never touched;
//! - a job that completed is [`Observed::Finished`]; one whose work failed (`FAILED`,
//!   `TIMEOUT`, `OUT_OF_MEMORY`, `DEADLINE`, cancelled outside Switchyard) is
//!   [`Observed::Failed`] with Slurm's state, reason and exit code, and the server decides
//!   whether to restart it; one lost to the infrastructure (`NODE_FAIL`, `BOOT_FAIL`,
//!   `PREEMPTED`, or gone from Slurm) is submitted again by the backend, up to `max_attempts`
//!   Slurm jobs per run, then reported failed;
//! - a node Slurm reports down or not responding is [`Observed::NodeFailed`]; one it closes to
//!   new jobs while its jobs run on (drained, draining, failing, maintenance) is
//!   [`Observed::NodeDrained`]; either is [`Observed::NodeRepaired`] when it is back;
//! - the output files of the runs' Slurm jobs are followed and their new lines reported as
//!   [`Observed::Output`].
//!
//! After a restart of the server (or a new leader term, [`Backend::reset`]) the first launch
//! of each job adopts the Slurm job already running for it instead of starting it again.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use switchyard_core::fleet::{ClusterBackend, Fleet, LevelKind, SlurmSettings};
use switchyard_server::api::JobCommand;
use switchyard_server::backend::{Backend, Command, Observed, OutputLine};

use crate::client::{CliClient, SlurmClient, SlurmError, Submission};
use crate::logs;
use crate::parse::{JobState, Node, QueueJob, Tag};
use crate::rest::RestClient;
use crate::script;

/// Timing and policy of the reconciler.
#[derive(Debug, Clone)]
pub struct Options {
    /// Prefix of the `--comment` tag; two Switchyard deployments sharing a Slurm cluster
    /// need different prefixes (the server uses `switchyard-` and its database's deployment
    /// id).
    pub tag: String,
    /// The prefix of an earlier release (`switchyard`, one for every deployment): a job
    /// carrying it is taken over by a wanted run it matches, as if it carried [`Self::tag`],
    /// and cancelled once unwanted only if this backend took it over — it may be another
    /// deployment's.
    pub legacy_tag: Option<String>,
    /// Longest wait between rounds (new commands start one sooner).
    pub poll_interval: Duration,
    /// How often capacity (`sinfo`) is re-read.
    pub capacity_interval: Duration,
    /// Slurm jobs per run (the first submission and resubmissions after infrastructure
    /// failures: node failure, boot failure, preemption, a job Slurm lost) before the run is
    /// reported failed to the server.
    pub max_attempts: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Also pass `--segment` (Slurm 24.11's topology/block) for gangs on a block topology.
    pub use_segment: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tag: "switchyard".into(),
            legacy_tag: None,
            poll_interval: Duration::from_secs(2),
            capacity_interval: Duration::from_secs(10),
            max_attempts: 3,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            use_segment: false,
        }
    }
}

/// One Slurm cluster of the fleet.
#[derive(Debug)]
pub struct ClusterConfig {
    /// Name in the fleet (commands name clusters this way).
    pub name: String,
    /// Index in the fleet (observations name clusters this way).
    pub index: u32,
    /// Nodes the fleet declares; Slurm nodes map to 0.. in natural name order.
    pub nodes: u32,
    pub accelerators_per_node: u32,
    /// Nodes per block of the cluster's topology, if it has one.
    pub block_nodes: Option<u32>,
    pub settings: SlurmSettings,
    pub client: Box<dyn SlurmClient>,
}

/// Where a job's output goes.
#[derive(Debug, Clone, PartialEq)]
pub struct LogPaths {
    pub slurm_job: Option<String>,
    pub stdout: String,
    pub stderr: String,
}

#[derive(Debug, Default)]
struct Outbox {
    observed: Vec<Observed>,
    /// Where the latest runs write, by run key: the last [`KEPT_LOG_PATHS`] runs submitted or
    /// adopted (`logs_order` says which came first), so a server that runs for months does not
    /// keep one entry per run it ever had.
    logs: HashMap<String, LogPaths>,
    logs_order: std::collections::VecDeque<String>,
    /// Submissions, cancellations and rounds so far (for tests and benchmarks).
    submitted: u64,
    cancelled: u64,
    rounds: u64,
}

/// Runs whose log paths [`SlurmHandle::logs`] keeps.
const KEPT_LOG_PATHS: usize = 10_000;

impl Outbox {
    fn note_logs(&mut self, key: &str, paths: LogPaths) {
        if self.logs.insert(key.to_owned(), paths).is_some() {
            // Noted again (a new attempt): the latest now.
            self.logs_order.retain(|k| k != key);
        }
        self.logs_order.push_back(key.to_owned());
        while self.logs_order.len() > KEPT_LOG_PATHS {
            if let Some(old) = self.logs_order.pop_front() {
                self.logs.remove(&old);
            }
        }
    }
}

/// A cloneable view of the backend's extras (log paths, counters), taken before the backend
/// is boxed for the server.
#[derive(Debug, Clone)]
pub struct SlurmHandle {
    shared: Arc<Mutex<Outbox>>,
}

impl SlurmHandle {
    /// Where the latest run of `job` (or replica key `job#r<n>`) writes stdout/stderr.
    pub fn logs(&self, job: &str) -> Option<LogPaths> {
        lock(&self.shared).logs.get(job).cloned()
    }

    /// (submissions, cancellations, rounds) so far.
    pub fn counters(&self) -> (u64, u64, u64) {
        let o = lock(&self.shared);
        (o.submitted, o.cancelled, o.rounds)
    }
}

fn lock(m: &Mutex<Outbox>) -> MutexGuard<'_, Outbox> {
    // A panic elsewhere while holding the lock leaves plain data behind: keep using it.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Why the backend could not be built from a fleet.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cluster {cluster:?}: slurmrestd at {url}: {message}")]
    Rest {
        cluster: String,
        url: String,
        message: String,
    },
    #[error("cannot start the Slurm worker thread: {0}")]
    Thread(std::io::Error),
}

enum Msg {
    Commands(Vec<Command>),
    Reset,
}

/// The Slurm backend (see the module documentation).
#[derive(Debug)]
pub struct SlurmBackend {
    tx: Option<Sender<Msg>>,
    shared: Arc<Mutex<Outbox>>,
    worker: Option<JoinHandle<()>>,
    /// The leader has spoken since the last reset: passes with nothing new need not wake the
    /// worker.
    spoken: bool,
}

impl SlurmBackend {
    /// A backend for the fleet's clusters that say `backend = "slurm"`; `None` when there are
    /// none. Uses the command-line tools on this host, or slurmrestd for a cluster with a
    /// `rest_url` (its token read from the variable `token_env` names, at start).
    pub fn from_fleet(fleet: &Fleet, options: Options) -> Result<Option<Self>, SetupError> {
        let mut clusters = Vec::new();
        for (i, c) in fleet.clusters.iter().enumerate() {
            let ClusterBackend::Slurm(s) = &c.backend else {
                continue;
            };
            let client: Box<dyn SlurmClient> = match &s.rest_url {
                None => Box::new(CliClient::default()),
                Some(url) => {
                    let fail = |message: String| SetupError::Rest {
                        cluster: c.name.clone(),
                        url: url.clone(),
                        message,
                    };
                    let var = s.token_env.as_deref().ok_or_else(|| {
                        fail("`token_env` must name the variable holding its token (from `scontrol token`)".into())
                    })?;
                    let token = std::env::var(var).map_err(|_| {
                        fail(format!("the variable {var} (`token_env`) is not set"))
                    })?;
                    let token = token.strip_prefix("SLURM_JWT=").unwrap_or(&token);
                    Box::new(
                        RestClient::new(url, token, None, Duration::from_secs(30)).map_err(fail)?,
                    )
                }
            };
            clusters.push(ClusterConfig {
                name: c.name.clone(),
                index: i as u32,
                nodes: c.nodes,
                accelerators_per_node: c.accelerators_per_node,
                block_nodes: c.topology.level(LevelKind::Block).map(|l| l.nodes),
                settings: s.clone(),
                client,
            });
        }
        if clusters.is_empty() {
            return Ok(None);
        }
        Self::new(clusters, options).map(Some)
    }

    /// A backend over the given clusters; starts its worker thread.
    pub fn new(clusters: Vec<ClusterConfig>, options: Options) -> Result<Self, SetupError> {
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Mutex::new(Outbox::default()));
        let worker = Worker::new(clusters, options, shared.clone());
        let handle = std::thread::Builder::new()
            .name("switchyard-slurm".into())
            .spawn(move || worker.run(rx))
            .map_err(SetupError::Thread)?;
        Ok(SlurmBackend {
            tx: Some(tx),
            shared,
            worker: Some(handle),
            spoken: false,
        })
    }

    pub fn handle(&self) -> SlurmHandle {
        SlurmHandle {
            shared: self.shared.clone(),
        }
    }

    fn send(&self, msg: Msg) {
        if let Some(tx) = &self.tx
            && tx.send(msg).is_err()
        {
            tracing::error!("the Slurm worker thread is gone; commands are not carried out");
        }
    }
}

impl Drop for SlurmBackend {
    fn drop(&mut self) {
        // Closing the channel stops the worker after its current round; Slurm jobs keep
        // running and are adopted by the next backend.
        self.tx.take();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl Backend for SlurmBackend {
    fn name(&self) -> &'static str {
        "slurm"
    }

    fn act(&mut self, commands: Vec<Command>) {
        if commands.is_empty() && self.spoken {
            return;
        }
        self.spoken = true;
        self.send(Msg::Commands(commands));
    }

    fn poll(&mut self, _now_ms: i64) -> Vec<Observed> {
        std::mem::take(&mut lock(&self.shared).observed)
    }

    fn reset(&mut self) {
        lock(&self.shared).observed.clear();
        self.spoken = false;
        self.send(Msg::Reset);
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The name a replica's output lines go by (`logs` shows `[replica NAME]` and filters on
/// it): its Slurm job id and serial, `SLURMID.n` for key `job#r<n>` — the form of a node
/// agent's replica names, unique (Slurm never reuses an id), and the same for a job taken over
/// after a restart, whose lines are read again from the start and must keep their source.
/// `None` for a gang's key, and for a Slurm id that is not a plain number.
fn replica_output_name(key: &str, slurm_id: &str) -> Option<String> {
    let (_, n) = key.split_once("#r")?;
    let plain = !slurm_id.is_empty()
        && slurm_id.len() <= 16
        && slurm_id.bytes().all(|b| b.is_ascii_digit())
        && !n.is_empty()
        && n.len() <= 10
        && n.bytes().all(|b| b.is_ascii_digit());
    plain.then(|| format!("{slurm_id}.{n}"))
}

/// The job a run key belongs to (`job#r3` → `job`).
fn base_job(key: &str) -> &str {
    key.split("#r").next().unwrap_or(key)
}

/// A run the leader wants: a gang (`key` = job id) or one replica (`job#r<n>`).
#[derive(Debug)]
struct Want {
    /// The job's id (a replica's job, not its key).
    job: String,
    cluster: String,
    generation: u32,
    accelerators: u32,
    expected_end_ms: i64,
    replica: bool,
    /// A gang: the server's attempt. A replica: its starts so far.
    attempt: u32,
    /// Resubmissions after infrastructure failures (0 = the first submission).
    resubmit: u32,
    /// The generation in the tag of a Slurm job this run took over from an earlier leader,
    /// where it differs from the run's: the job's resubmissions keep it (and with it
    /// `SWITCHYARD_GENERATION` and the log paths), as they keep its attempt.
    tag_generation: Option<u32>,
    command: Option<Arc<JobCommand>>,
    slurm_id: Option<String>,
    running_seen: bool,
    /// Why Slurm last said its job waits in Slurm's own queue (reported when it changes).
    pending_reason: Option<String>,
    /// What the server was last told holds the run (its Slurm job pending), until it is told
    /// that the run began.
    held_why: Option<String>,
    /// A Slurm job of this run has been seen running: a later pending one (resubmitted after
    /// an infrastructure failure, or requeued) interrupts work that had begun.
    ran: bool,
    /// Its Slurm job was last listed suspended (`scontrol suspend`).
    suspended: bool,
    /// First launch after a reset: may take over a Slurm job already there.
    adoptable: bool,
    /// The job was running when the leader took over: its newest Slurm job is the previous
    /// leader's run even if it ended unsuccessfully while no leader watched.
    recovered: bool,
    /// Since when a job of the run that it might take over has been completing; whether
    /// the run waits for it to end (not submitted meanwhile).
    completing_since: Option<Instant>,
    awaits_end: bool,
    /// Since when its current Slurm job has been seen running.
    running_since: Option<Instant>,
    next_try: Instant,
    backoff: Duration,
    /// Refused submissions in a row, and the last message reported.
    refusals: u32,
    last_refusal: Option<String>,
}

impl Want {
    /// Tells the server its run is held for `why` (a gang's, not a replica's, and only when
    /// the reason changed); the run has not stopped work that had begun unless its job ran.
    fn hold(&mut self, why: String) -> Option<Observed> {
        if self.replica || self.held_why.as_deref() == Some(why.as_str()) {
            return None;
        }
        // (A suspended job's work had begun: queued again, it is interrupted.)
        let interrupted = self.ran && (self.held_why.is_none() || self.suspended);
        self.suspended = false;
        self.held_why = Some(why.clone());
        Some(Observed::Held {
            job: self.job.clone(),
            generation: self.generation,
            why,
            interrupted,
        })
    }
}

/// An output file being followed.
#[derive(Debug)]
struct Follow {
    cluster: usize,
    job: String,
    /// A service replica's name (`SLURMID.n`, [`replica_output_name`]): its lines are told
    /// apart by it.
    replica: Option<String>,
    attempt: u32,
    /// Written through `srun --label` (ranks prefix the lines).
    labelled: bool,
    stream: &'static str,
    path: PathBuf,
    offset: u64,
    /// The first task failure `srun` reported in this file.
    failure: Option<String>,
}

struct Cluster {
    cfg: ClusterConfig,
    /// Slurm node name → fleet node index.
    node_index: BTreeMap<String, u32>,
    /// Fleet node indices currently reported failed.
    failed: HashSet<u32>,
    /// Whether the server log has said that Slurm's nodes hold fewer accelerators than the
    /// fleet gives them.
    told_short_nodes: bool,
    /// Nodes Slurm last listed as not responding while it still had them up (idle, mixed,
    /// allocated): failed only if the next listing says so again.
    suspect: HashSet<u32>,
    /// Fleet node indices currently reported drained (their jobs go on).
    drained: HashSet<u32>,
    has_gpus: bool,
    capacity_read: bool,
    /// The last error listing jobs, so that an unreachable controller is reported once, not
    /// every round.
    list_error: Option<String>,
    /// Jobs were listed since the leader's first commands of this term: later launches are
    /// new runs and never adopt a job already there.
    listed: bool,
    /// Why the partition's nodes could not be read, while they never have been; reported to
    /// each run waiting to be submitted once (`told_nodes_error`), also to runs that come later.
    nodes_error: Option<String>,
    told_nodes_error: HashSet<String>,
    /// Slurm jobs cancelled as unwanted and still listed (a cancelled job is `COMPLETING`
    /// for a while): not cancelled, nor reported cancelled, again every round.
    cancelled: HashSet<String>,
    /// Failed cancellations in a row of each job, and the last message: told on a new
    /// message and on the 1st, 2nd, 4th, 8th … failure, not every round.
    cancel_failures: HashMap<String, (u32, String)>,
    /// Jobs carrying the legacy tag that a run of this backend took over: its own, to cancel
    /// once unwanted.
    owned_legacy: HashSet<String>,
    /// Runs told in this outage of the controller that nothing is submitted.
    told_unreachable: HashSet<String>,
    /// Runs in Slurm (run key, Slurm job id) told in this outage that their job's state is
    /// unknown; told again, in this order, when Slurm answers.
    told_unknown: BTreeSet<(String, String)>,
}

struct Worker {
    clusters: Vec<Cluster>,
    options: Options,
    shared: Arc<Mutex<Outbox>>,
    wants: BTreeMap<String, Want>,
    /// Replica keys per (job, cluster), in the order they were added.
    replicas: HashMap<(String, String), Vec<String>>,
    replica_serial: HashMap<String, u32>,
    /// Jobs stopped since the last reset (their next launch may not adopt).
    stopped: HashSet<String>,
    /// Commands arrived since the last reset: only then are unwanted tagged jobs cancelled.
    synced: bool,
    next_capacity: Instant,
    /// Output files followed, by (Slurm job id, stream).
    follows: BTreeMap<(String, &'static str), Follow>,
    /// Slurm jobs of runs stopped (cancelled, preempted, scaled down) that are not yet known
    /// cancelled, by Slurm job id: (cluster, run key, whether an outage was told). While Slurm
    /// cannot be reached the job's events say the cancellation is still owed; each stays the
    /// cluster's own, whatever partition Slurm lists it in, until it is cancelled or ended.
    owed_cancels: BTreeMap<String, (String, String, bool)>,
}

/// How a run's Slurm job ended, as far as the backend is concerned.
enum Ending {
    Completed,
    /// The work failed: the server decides about a restart.
    Work(String),
    /// The infrastructure failed the run: the backend submits it again.
    Infrastructure(String),
}

impl Worker {
    fn new(clusters: Vec<ClusterConfig>, options: Options, shared: Arc<Mutex<Outbox>>) -> Self {
        Worker {
            clusters: clusters
                .into_iter()
                .map(|cfg| Cluster {
                    cfg,
                    node_index: BTreeMap::new(),
                    failed: HashSet::new(),
                    told_short_nodes: false,
                    suspect: HashSet::new(),
                    drained: HashSet::new(),
                    has_gpus: false,
                    capacity_read: false,
                    list_error: None,
                    listed: false,
                    cancelled: HashSet::new(),
                    cancel_failures: HashMap::new(),
                    owned_legacy: HashSet::new(),
                    told_unreachable: HashSet::new(),
                    told_unknown: BTreeSet::new(),
                    nodes_error: None,
                    told_nodes_error: HashSet::new(),
                })
                .collect(),
            options,
            shared,
            wants: BTreeMap::new(),
            replicas: HashMap::new(),
            replica_serial: HashMap::new(),
            stopped: HashSet::new(),
            synced: false,
            next_capacity: Instant::now(),
            follows: BTreeMap::new(),
            owed_cancels: BTreeMap::new(),
        }
    }

    /// Stops wanting run `key`; its Slurm job, if it has one, is owed a cancellation.
    fn unwant(&mut self, key: &str) {
        if let Some(w) = self.wants.remove(key)
            && let Some(id) = w.slurm_id
        {
            self.owed_cancels
                .insert(id, (w.cluster, key.to_owned(), false));
        }
    }

    fn run(mut self, rx: Receiver<Msg>) {
        let mut next_round = Instant::now();
        loop {
            let wait = next_round.saturating_duration_since(Instant::now());
            let mut got = false;
            match rx.recv_timeout(wait) {
                Ok(m) => got |= self.apply(m),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            loop {
                match rx.try_recv() {
                    Ok(m) => got |= self.apply(m),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => return,
                }
            }
            let due = Instant::now() >= next_round;
            if due || got {
                self.round();
                next_round = Instant::now() + self.options.poll_interval;
            }
        }
    }

    /// Keys of the wanted jobs on `cluster` that have no Slurm job yet and pass `keep`.
    fn unsubmitted(&self, cluster: &str, keep: impl Fn(&Want) -> bool) -> Vec<String> {
        self.wants
            .iter()
            .filter(|(_, w)| w.cluster == cluster && w.slurm_id.is_none() && keep(w))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Records `message` in the events of the job `key` belongs to (through the server).
    fn event(&self, key: &str, cluster: &str, kind: &str, message: String) {
        tracing::info!(job = key, cluster, kind, %message, "slurm");
        let job = base_job(key);
        let message = if job == key {
            message
        } else {
            format!("replica {key}: {message}")
        };
        self.observe(Observed::Event {
            job: job.to_owned(),
            kind: kind.to_owned(),
            message,
            cluster: Some(cluster.to_owned()),
        });
    }

    /// Says once per run, while Slurm cannot be reached, that its stopped Slurm job is not
    /// cancelled yet: the run reads as ended while Slurm's job may still run.
    fn tell_owed_cancels(&mut self, cluster: &str, why: &str) {
        let mut tell = Vec::new();
        for (id, (c, key, told)) in &mut self.owed_cancels {
            if c == cluster && !*told {
                *told = true;
                tell.push((key.clone(), id.clone()));
            }
        }
        for (key, id) in tell {
            self.event(
                &key,
                cluster,
                "slurm_cancel_pending",
                format!(
                    "Slurm job {id} is not cancelled yet: cannot reach Slurm ({why}); it is \
                     cancelled once Slurm answers"
                ),
            );
        }
    }

    fn observe(&self, o: Observed) {
        lock(&self.shared).observed.push(o);
    }

    /// Applies a message; true when it asks for something to be done now.
    fn apply(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Reset => {
                self.wants.clear();
                self.owed_cancels.clear();
                self.replicas.clear();
                self.replica_serial.clear();
                self.stopped.clear();
                self.synced = false;
                // What was read for the old term may not have reached it: read again (the
                // server drops repeated lines).
                self.follows.clear();
                // The new term's scheduler believes every node is up: say again which are not.
                for c in &mut self.clusters {
                    c.failed.clear();
                    c.drained.clear();
                    c.suspect.clear();
                    c.node_index.clear();
                    c.listed = false;
                }
                self.next_capacity = Instant::now();
                true
            }
            Msg::Commands(cmds) => {
                self.synced = true;
                let any = !cmds.is_empty();
                for c in cmds {
                    self.command(c);
                }
                any
            }
        }
    }

    fn want(&self, run: Run, adoptable: bool, recovered: bool) -> Want {
        Want {
            job: run.job,
            cluster: run.cluster,
            generation: run.generation,
            accelerators: run.accelerators,
            expected_end_ms: run.expected_end_ms,
            replica: run.replica,
            attempt: run.attempt.max(1),
            resubmit: 0,
            tag_generation: None,
            command: run.command,
            slurm_id: None,
            running_seen: false,
            pending_reason: None,
            held_why: None,
            ran: false,
            suspended: false,
            adoptable,
            recovered,
            completing_since: None,
            awaits_end: false,
            running_since: None,
            next_try: Instant::now(),
            backoff: self.options.backoff_initial,
            refusals: 0,
            last_refusal: None,
        }
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Launch {
                job,
                generation,
                attempt,
                cluster,
                accelerators,
                expected_end_ms,
                command,
                recovered,
                ..
            } => {
                let Some(c) = self.clusters.iter().find(|c| c.cfg.name == cluster) else {
                    tracing::warn!(%job, %cluster, "launch for a cluster that is not on Slurm; ignored");
                    return;
                };
                let adoptable =
                    !c.listed && !self.stopped.contains(&job) && !self.wants.contains_key(&job);
                let run = Run {
                    job: job.clone(),
                    cluster,
                    generation,
                    attempt,
                    accelerators,
                    expected_end_ms,
                    replica: false,
                    command,
                };
                let w = self.want(run, adoptable, recovered);
                self.wants.insert(job, w);
            }
            Command::AddReplica {
                job,
                cluster,
                accelerators,
                command,
                ..
            } => {
                let Some(c) = self.clusters.iter().find(|c| c.cfg.name == cluster) else {
                    return;
                };
                let adoptable = !c.listed && !self.stopped.contains(&job);
                let serial = self.replica_serial.entry(job.clone()).or_default();
                let key = format!("{job}#r{serial}");
                *serial += 1;
                let run = Run {
                    job: job.clone(),
                    cluster: cluster.clone(),
                    generation: 1,
                    attempt: 1,
                    accelerators,
                    expected_end_ms: i64::MAX,
                    replica: true,
                    command,
                };
                let w = self.want(run, adoptable, false);
                self.wants.insert(key.clone(), w);
                self.replicas.entry((job, cluster)).or_default().push(key);
            }
            Command::RemoveReplica { job, cluster, .. } => {
                if let Some(keys) = self.replicas.get_mut(&(job, cluster))
                    && let Some(key) = keys.pop()
                {
                    self.unwant(&key);
                }
            }
            Command::Stop { job } => {
                // (Only while a cluster has not been listed in this term: later launches never
                // adopt anyway, and every job's end comes here.)
                if self.clusters.iter().any(|c| !c.listed) {
                    self.stopped.insert(job.clone());
                }
                let prefix = format!("{job}#r");
                let keys: Vec<String> = self
                    .wants
                    .keys()
                    .filter(|k| **k == job || k.starts_with(&prefix))
                    .cloned()
                    .collect();
                for key in keys {
                    self.unwant(&key);
                }
                self.replicas.retain(|(j, _), _| *j != job);
            }
        }
    }

    /// One reconciliation round over every cluster.
    fn round(&mut self) {
        lock(&self.shared).rounds += 1;
        let due = Instant::now() >= self.next_capacity;
        for i in 0..self.clusters.len() {
            // A cluster whose nodes were never read is asked every round: nothing is
            // submitted to it until then.
            if due || !self.clusters[i].capacity_read {
                self.refresh_capacity(i);
            }
        }
        if due {
            self.next_capacity = Instant::now() + self.options.capacity_interval;
        }
        for i in 0..self.clusters.len() {
            self.reconcile(i);
        }
    }

    fn refresh_capacity(&mut self, i: usize) {
        let c = &mut self.clusters[i];
        let partition = &c.cfg.settings.partition;
        // `sinfo` answers a partition that does not exist with nothing at all (and success):
        // that is a setting to fix, not a cluster whose every node failed.
        let listed = c.cfg.client.nodes(Some(partition)).and_then(|n| {
            if n.is_empty() {
                Err(SlurmError::Failed {
                    command: format!("listing the nodes of partition {partition}"),
                    status: "no nodes".into(),
                    message: format!(
                        "partition {partition} lists no nodes: does it exist? (the fleet's \
                         `[clusters.slurm] partition`)"
                    ),
                })
            } else {
                Ok(n)
            }
        });
        let nodes = match listed {
            Ok(n) => n,
            Err(e) => {
                // Until the nodes are first read they are asked for every round (2 s): the
                // same error is a warning once, then at debug level.
                if c.capacity_read || c.nodes_error.as_ref() != Some(&e.message()) {
                    tracing::warn!(cluster = %c.cfg.name, error = %e, "cannot read Slurm's nodes; keeping what was known");
                } else {
                    tracing::debug!(cluster = %c.cfg.name, error = %e, "cannot read Slurm's nodes yet");
                }
                if !c.capacity_read {
                    let message = e.message();
                    if c.nodes_error.as_ref() != Some(&message) {
                        c.nodes_error = Some(message);
                        c.told_nodes_error.clear();
                    }
                }
                return;
            }
        };
        let mut names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        names.sort_by(|a, b| natural_cmp(a, b));
        names.dedup();
        let index = c.cfg.index;
        let mut out = Vec::new();
        for name in names {
            if !c.node_index.contains_key(name) {
                let next = c.node_index.len() as u32;
                c.node_index.insert(name.to_owned(), next);
                if next < c.cfg.nodes {
                    out.push(Observed::NodeNamed {
                        cluster: index,
                        node: next,
                        host: name.to_owned(),
                    });
                }
            }
        }
        c.has_gpus = nodes.iter().any(|n| n.gpus > 0);
        if !c.told_short_nodes {
            let ours: Vec<&Node> = nodes
                .iter()
                .filter(|n| c.node_index.get(&n.name).is_some_and(|&i| i < c.cfg.nodes))
                .collect();
            if let Some(warning) = short_nodes(c.cfg.accelerators_per_node, c.has_gpus, &ours) {
                c.told_short_nodes = true;
                tracing::warn!(cluster = %c.cfg.name, "{warning}");
            }
        }
        let mut now_failed: HashSet<u32> = HashSet::new();
        let mut now_drained: HashSet<u32> = HashSet::new();
        let mut now_suspect: HashSet<u32> = HashSet::new();
        for n in &nodes {
            if let Some(&idx) = c.node_index.get(&n.name)
                && idx < c.cfg.nodes
                && !n.state.usable()
            {
                if n.state.closed() {
                    now_drained.insert(idx);
                } else if n.state.briefly_unanswering()
                    && !c.suspect.contains(&idx)
                    && !c.failed.contains(&idx)
                {
                    // Slurm reports a node it has just resumed (or one a heartbeat came late
                    // from) as not responding for a moment while it keeps it up and its jobs
                    // running: one listing so is not a failure, two in a row are. Drained, or
                    // drained before, it stays drained meanwhile (not repaired).
                    now_suspect.insert(idx);
                    if n.state.drain || c.drained.contains(&idx) {
                        now_drained.insert(idx);
                    }
                } else {
                    now_failed.insert(idx);
                }
            }
        }
        c.suspect = now_suspect;
        // A node listed twice (in two partitions) counts in the worse state.
        now_drained.retain(|idx| !now_failed.contains(idx));
        // Fleet nodes Slurm does not have are not there to be used either: never listed, or
        // listed before and not now (taken out of the partition, hidden by sinfo).
        let listed: HashSet<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        for (name, &idx) in &c.node_index {
            if idx < c.cfg.nodes && !listed.contains(name.as_str()) {
                now_failed.insert(idx);
            }
        }
        let present = c.node_index.len() as u32;
        for idx in present..c.cfg.nodes {
            now_failed.insert(idx);
        }
        let mut newly: Vec<u32> = now_failed.difference(&c.failed).copied().collect();
        newly.sort_unstable();
        for node in newly {
            out.push(Observed::NodeFailed {
                cluster: index,
                node,
            });
        }
        // A failed node that is drained now stays down to the scheduler (no work is on it).
        let mut drained: Vec<u32> = now_drained
            .iter()
            .filter(|idx| !c.drained.contains(idx) && !c.failed.contains(idx))
            .copied()
            .collect();
        drained.sort_unstable();
        for node in drained {
            out.push(Observed::NodeDrained {
                cluster: index,
                node,
            });
        }
        let mut back: Vec<u32> = c
            .failed
            .union(&c.drained)
            .filter(|idx| !now_failed.contains(idx) && !now_drained.contains(idx))
            .copied()
            .collect();
        back.sort_unstable();
        for node in back {
            out.push(Observed::NodeRepaired {
                cluster: index,
                node,
            });
        }
        if out.iter().any(|o| !matches!(o, Observed::NodeNamed { .. })) {
            tracing::info!(cluster = %c.cfg.name, changes = ?out, "Slurm node states changed");
        }
        c.failed = now_failed;
        c.drained = now_drained;
        c.capacity_read = true;
        c.nodes_error = None;
        c.told_nodes_error.clear();
        lock(&self.shared).observed.extend(out);
    }

    fn reconcile(&mut self, i: usize) {
        let cluster_name = self.clusters[i].cfg.name.clone();
        let listing = match self.clusters[i].cfg.client.jobs() {
            Ok(l) => l,
            Err(e) => {
                let msg = e.message();
                // Every round (2 s) while it lasts: a warning when the error is new (or
                // changes), then at debug level; "Slurm answers again" ends it.
                if self.clusters[i].list_error.as_ref() != Some(&msg) {
                    tracing::warn!(cluster = %cluster_name, error = %msg, "cannot list Slurm's jobs; retrying every round");
                    self.clusters[i].list_error = Some(msg.clone());
                    self.clusters[i].told_unreachable.clear();
                } else {
                    tracing::debug!(cluster = %cluster_name, error = %msg, "cannot list Slurm's jobs yet");
                }
                // Tell the jobs waiting to be submitted why nothing happens: each once per
                // outage, also those that arrive while it lasts.
                let message = format!("cannot list Slurm's jobs on cluster {cluster_name}: {msg}");
                self.tell_waiting_runs(i, |c| &mut c.told_unreachable, &message);
                self.tell_runs_in_slurm(i, &message);
                self.tell_owed_cancels(&cluster_name, &msg);
                return;
            }
        };
        // Listed: the cancellations owed here are made (or reported) below.
        let owed_here: HashSet<String> = self
            .owed_cancels
            .iter()
            .filter(|(_, (c, _, _))| *c == cluster_name)
            .map(|(id, _)| id.clone())
            .collect();
        if self.clusters[i].list_error.take().is_some() {
            tracing::info!(cluster = %cluster_name, "Slurm answers again");
            self.clusters[i].told_unreachable.clear();
            let told = std::mem::take(&mut self.clusters[i].told_unknown);
            for (k, id) in &told {
                if self.wants.get(k).and_then(|w| w.slurm_id.as_deref()) != Some(id.as_str()) {
                    continue;
                }
                self.event(
                    k,
                    &cluster_name,
                    "slurm_reachable",
                    format!("Slurm answers again on cluster {cluster_name}"),
                );
            }
        }
        let prefix = self.options.tag.clone();
        // This cluster's partition only: two clusters of one fleet on one controller (two
        // partitions) must not adopt or cancel each other's jobs.
        // A job this cluster already follows stays its own whatever partition Slurm lists (a
        // job_submit plugin may rewrite it), and so does, after a restart, a job of a run
        // wanted here that Slurm lists in a partition no other cluster of the fleet uses.
        let partition = self.clusters[i].cfg.settings.partition.clone();
        let mut followed: HashSet<&str> = HashSet::new();
        let mut wanted_here: HashSet<&str> = HashSet::new();
        for (key, w) in self.wants.iter().filter(|(_, w)| w.cluster == cluster_name) {
            wanted_here.insert(key);
            followed.extend(w.slurm_id.as_deref());
        }
        let others: HashSet<&str> = self
            .clusters
            .iter()
            .enumerate()
            .filter(|&(k, _)| k != i)
            .map(|(_, c)| c.cfg.settings.partition.as_str())
            .collect();
        let ours = |prefix: &str| -> Vec<(Tag, &QueueJob)> {
            listing
                .iter()
                .filter_map(|j| Some((Tag::parse(j.comment.as_deref()?, prefix)?, j)))
                .filter(|(t, j)| {
                    j.partition == partition
                        || followed.contains(j.id.as_str())
                        || owed_here.contains(&j.id)
                        || (wanted_here.contains(t.job.as_str())
                            && !others.contains(j.partition.as_str()))
                })
                .collect()
        };
        let mut tagged = ours(&prefix);
        // An earlier release's jobs: ours only once a run took one over.
        let legacy = self
            .options
            .legacy_tag
            .as_deref()
            .map(ours)
            .unwrap_or_default();
        let mut takeable = tagged.clone();
        takeable.extend(legacy.iter().cloned());
        let by_id: HashMap<&str, &QueueJob> =
            takeable.iter().map(|(_, j)| (j.id.as_str(), *j)).collect();

        self.adopt(i, &cluster_name, &takeable);
        let claimed: HashSet<String> = self
            .wants
            .values()
            .filter_map(|w| w.slurm_id.clone())
            .collect();
        let owned = &mut self.clusters[i].owned_legacy;
        owned.extend(
            legacy
                .iter()
                .filter(|(_, j)| claimed.contains(&j.id))
                .map(|(_, j)| j.id.clone()),
        );
        owned.retain(|id| by_id.contains_key(id.as_str()));
        tagged.extend(
            legacy
                .into_iter()
                .filter(|(_, j)| self.clusters[i].owned_legacy.contains(&j.id)),
        );

        // 2. Cancel tagged, unfinished jobs nobody wants (only once the leader has spoken).
        let live = |id: &str| by_id.get(id).is_some_and(|j| !j.state.is_terminal());
        self.clusters[i].cancelled.retain(|id| live(id));
        self.clusters[i].cancel_failures.retain(|id, _| live(id));
        if self.synced {
            let unwanted: Vec<(String, String)> = tagged
                .iter()
                .filter(|(_, j)| {
                    // (A completing job is ending already: scancel does nothing to it.)
                    !j.state.is_terminal()
                        && j.state != JobState::Completing
                        && !claimed.contains(&j.id)
                        && !self.clusters[i].cancelled.contains(&j.id)
                })
                .map(|(t, j)| (t.job.clone(), j.id.clone()))
                .collect();
            for (key, id) in unwanted {
                match self.clusters[i].cfg.client.cancel(&id) {
                    Ok(()) => {
                        self.clusters[i].cancel_failures.remove(&id);
                        self.clusters[i].cancelled.insert(id.clone());
                        lock(&self.shared).cancelled += 1;
                        self.event(
                            &key,
                            &cluster_name,
                            "slurm_cancelled",
                            format!("cancelled Slurm job {id} (no longer wanted)"),
                        );
                    }
                    Err(e) => {
                        let message = e.message();
                        let (count, last) = self.clusters[i]
                            .cancel_failures
                            .entry(id.clone())
                            .or_insert((0, String::new()));
                        *count += 1;
                        let tell = *last != message || count.is_power_of_two();
                        *last = message.clone();
                        if tell {
                            let times = if *count > 1 {
                                format!(" ({count} times in a row)")
                            } else {
                                String::new()
                            };
                            self.event(
                                &key,
                                &cluster_name,
                                "slurm_cancel_failed",
                                format!("scancel {id} failed{times}: {message}; retrying"),
                            );
                        }
                    }
                }
            }
        }

        // Owed cancellations end once made, or once their job ended or is gone from Slurm's
        // listing (or another run took it over).
        let cancelled_here = &self.clusters[i].cancelled;
        self.owed_cancels.retain(|id, (c, _, _)| {
            *c != cluster_name
                || by_id.get(id.as_str()).is_some_and(|j| {
                    !j.state.is_terminal() && !cancelled_here.contains(id) && !claimed.contains(id)
                })
        });

        // 3. What the runs wrote (before new submissions: their jobs are not listed yet), and
        //    which rank failed first in the jobs that did.
        let failures = self.read_output(i, &by_id);

        // 4. Follow the wanted runs' Slurm jobs.
        let followed: Vec<(String, String)> = self
            .wants
            .iter()
            .filter(|(_, w)| w.cluster == cluster_name)
            .filter_map(|(k, w)| Some((k.clone(), w.slurm_id.clone()?)))
            .collect();
        for (key, id) in followed {
            // (When its work began: Slurm's StartTime of a job it gave nodes to; a pending
            // job's is a forecast, and one cancelled while pending has none.)
            let started = |start_s: Option<i64>, nodes: &str| {
                start_s
                    .filter(|_| !nodes.trim().is_empty())
                    .map(|s| s.saturating_mul(1000))
            };
            let (state, reason, exit, started_ms) = match by_id.get(id.as_str()) {
                // An unsuccessful end: ask for the details (exit code) once.
                Some(j) if j.state.is_terminal() && j.state != JobState::Completed => {
                    let started_ms = started(j.start_s, &j.nodes);
                    match self.clusters[i].cfg.client.job(&id) {
                        Ok(Some(info)) => (
                            j.state.clone(),
                            j.reason.clone(),
                            info.exit_code,
                            started_ms,
                        ),
                        Ok(None) => (j.state.clone(), j.reason.clone(), None, started_ms),
                        Err(e) => {
                            // Reported without its exit code; the cause is in the log.
                            tracing::warn!(job = %key, slurm_job = %id, error = %e.message(), "cannot read how an ended Slurm job exited");
                            (j.state.clone(), j.reason.clone(), None, started_ms)
                        }
                    }
                }
                Some(j) => (
                    j.state.clone(),
                    j.reason.clone(),
                    None,
                    started(j.start_s, &j.nodes),
                ),
                None => match self.clusters[i].cfg.client.job(&id) {
                    Ok(Some(info)) => {
                        let started_ms = started(info.start_s, &info.nodes);
                        (info.state, info.reason, info.exit_code, started_ms)
                    }
                    Ok(None) => {
                        let why = format!("Slurm no longer knows job {id}");
                        self.ended(&key, &cluster_name, Ending::Infrastructure(why));
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(job = %key, error = %e.message(), "cannot look Slurm job up");
                        continue;
                    }
                },
            };
            let failure = failures.get(&id).map(String::as_str);
            if let Some(ending) = ending(&id, &state, &reason, exit, failure) {
                // Held at the last poll, it started and ended since: its work began (when
                // Slurm says) before it finished or failed. (An infrastructure end holds it
                // again.)
                if let (Some(since_ms), false) =
                    (started_ms, matches!(ending, Ending::Infrastructure(_)))
                    && let Some(w) = self.wants.get_mut(&key)
                    && !w.replica
                    && !w.suspended
                    && w.held_why.take().is_some()
                {
                    let began = Observed::Began {
                        job: w.job.clone(),
                        generation: w.generation,
                        since_ms: Some(since_ms),
                    };
                    self.observe(began);
                }
                self.ended(&key, &cluster_name, ending);
                continue;
            }
            let Some(w) = self.wants.get_mut(&key) else {
                continue;
            };
            let waits = match &state {
                JobState::Pending => Some("waits in Slurm's queue".to_owned()),
                JobState::Requeued => Some("was requeued and waits in Slurm's queue".to_owned()),
                JobState::HeldInQueue(flag) => Some(format!(
                    "is held in Slurm's queue ({flag}) until an administrator releases it"
                )),
                // Its nodes are being readied (powered up, the prolog): not running yet.
                JobState::Configuring => Some("waits for its nodes to be readied".to_owned()),
                _ => None,
            };
            if let Some(waits) = waits {
                // Placed by Switchyard but queued by Slurm (other users' jobs, limits, a
                // partition that cannot run it, a hold): the run does not progress, and Slurm
                // says why. (Requeued, it is said to run again when it does.)
                w.running_seen = false;
                let known = !matches!(reason.as_str(), "" | "None");
                // What is said: Slurm's reason, and the state where it is not plain pending
                // (nothing for nodes being readied, which every start may pass through).
                let said = match &state {
                    JobState::Pending if known => Some(reason.clone()),
                    JobState::Pending | JobState::Configuring => None,
                    other => Some(format!("{} {reason}", other.as_str())),
                };
                let tell = said.is_some()
                    && w.pending_reason != said
                    // A busy cluster's jobs flip between these two all day: said once.
                    && !(state == JobState::Pending
                        && w.pending_reason.is_some()
                        && matches!(reason.as_str(), "Priority" | "Resources"));
                if tell {
                    w.pending_reason = said;
                }
                let why = if known {
                    format!("Slurm job {id} {waits}: {reason}")
                } else {
                    format!("Slurm job {id} {waits}")
                };
                // A gang's run is held until its job runs, with Slurm's reason of the moment
                // (a service's replicas come and go on their own).
                if let Some(held) = w.hold(why.clone()) {
                    self.observe(held);
                }
                if tell {
                    self.event(&key, &cluster_name, "slurm_pending", why);
                }
            } else if state == JobState::Suspended {
                // `scontrol suspend`: its processes are stopped where they are, and go on
                // from there when resumed. Said once; a gang's run is paused (it keeps its
                // progress and makes none) until its job runs again.
                if !std::mem::replace(&mut w.suspended, true) {
                    // (A job taken over suspended has run.)
                    w.ran = true;
                    // ("Suspended" says it ran; no "is running" before it.)
                    w.running_seen = true;
                    let why = format!("Slurm job {id} is suspended");
                    let mut seen = Vec::new();
                    if !w.replica {
                        // Held in Slurm's queue until the last poll, it began in between.
                        if w.held_why.take().is_some() {
                            seen.push(Observed::Began {
                                job: w.job.clone(),
                                generation: w.generation,
                                since_ms: started_ms,
                            });
                        }
                        w.held_why = Some(why.clone());
                        seen.push(Observed::Paused {
                            job: w.job.clone(),
                            generation: w.generation,
                            why: why.clone(),
                        });
                    }
                    for o in seen {
                        self.observe(o);
                    }
                    self.event(&key, &cluster_name, "slurm_suspended", why);
                }
            } else if state == JobState::Running {
                let resumed = std::mem::replace(&mut w.suspended, false);
                if resumed {
                    self.event(
                        &key,
                        &cluster_name,
                        "slurm_resumed",
                        format!("Slurm job {id} runs again"),
                    );
                }
                let Some(w) = self.wants.get_mut(&key) else {
                    continue;
                };
                w.ran = true;
                w.running_since.get_or_insert_with(Instant::now);
                let began = w.held_why.take().map(|_| Observed::Began {
                    job: w.job.clone(),
                    generation: w.generation,
                    // A resumed job's StartTime is its first start, not its resumption.
                    since_ms: started_ms.filter(|_| !resumed),
                });
                let first = !std::mem::replace(&mut w.running_seen, true);
                if let Some(began) = began {
                    self.observe(began);
                }
                if first {
                    self.event(
                        &key,
                        &cluster_name,
                        "slurm_running",
                        format!("Slurm job {id} is running"),
                    );
                }
            }
        }

        // 5. Submit what is wanted and has no Slurm job — once the partition's nodes have been
        //    read: whether they have GPUs decides `--gpus-per-node` and one GPU per rank, and a
        //    gang submitted without them would run on no GPU at all.
        if !self.clusters[i].capacity_read {
            if let Some(error) = self.clusters[i].nodes_error.clone() {
                let partition = &self.clusters[i].cfg.settings.partition;
                let message = format!(
                    "cannot read the nodes of partition {partition} on cluster {cluster_name}: \
                     {error}; nothing is submitted until they are read"
                );
                self.tell_waiting_runs(i, |c| &mut c.told_nodes_error, &message);
            }
            return;
        }
        let now = Instant::now();
        let ready = self.unsubmitted(&cluster_name, |w| w.next_try <= now && !w.awaits_end);
        for key in ready {
            self.submit(i, &key);
        }
    }

    /// A `slurm_unreachable` event with `message` for each run of cluster `i` waiting to be
    /// submitted that `told` (its set for this trouble) does not hold yet: once per run.
    fn tell_waiting_runs(
        &mut self,
        i: usize,
        told: impl Fn(&mut Cluster) -> &mut HashSet<String>,
        message: &str,
    ) {
        let cluster_name = self.clusters[i].cfg.name.clone();
        let untold: Vec<String> = self
            .unsubmitted(&cluster_name, |_| true)
            .into_iter()
            .filter(|k| !told(&mut self.clusters[i]).contains(k))
            .collect();
        told(&mut self.clusters[i]).extend(untold.iter().cloned());
        for k in untold {
            // Not running, so making no progress: held until its job runs. Not a run that was
            // running when this leader took over: its Slurm job may well be running still,
            // and the listing that would say so is what failed.
            let held = self
                .wants
                .get_mut(&k)
                .filter(|w| !w.recovered)
                .and_then(|w| w.hold(format!("not submitted: {message}")));
            if let Some(held) = held {
                self.observe(held);
            }
            self.event(&k, &cluster_name, "slurm_unreachable", message.to_owned());
        }
    }

    /// Tells each run already in Slurm on cluster `i`, once per outage, that its job's state
    /// is unknown: it shows running (or held) as last seen, which is no longer known.
    fn tell_runs_in_slurm(&mut self, i: usize, message: &str) {
        let cluster_name = self.clusters[i].cfg.name.clone();
        let untold: Vec<(String, String)> = self
            .wants
            .iter()
            .filter(|(_, w)| w.cluster == cluster_name)
            .filter_map(|(k, w)| Some((k.clone(), w.slurm_id.clone()?)))
            .filter(|told| !self.clusters[i].told_unknown.contains(told))
            .collect();
        for (k, id) in untold {
            self.clusters[i]
                .told_unknown
                .insert((k.clone(), id.clone()));
            self.event(
                &k,
                &cluster_name,
                "slurm_unreachable",
                format!(
                    "{message}; Slurm job {id}'s state is unknown until Slurm answers (it is \
                     left as it was)"
                ),
            );
        }
    }

    /// 1. Wanted runs without a Slurm job take over the matching tagged job: the one of the
    ///    same generation, attempt and resubmission (a submission whose answer was lost), or,
    ///    on the first launch after a reset, the latest live (or completed) one.
    fn adopt(&mut self, i: usize, cluster_name: &str, tagged: &[(Tag, &QueueJob)]) {
        let mut claimed: HashSet<String> = self
            .wants
            .values()
            .filter_map(|w| w.slurm_id.clone())
            .collect();
        // Replica keys are numbered afresh each term: a replica may take over a job of another
        // replica key of its service that no want of this term has (a spare), so a gap left by
        // a replica removed earlier does not cost a needless restart. Keys with a job of their
        // own go first.
        let mut keys = self.unsubmitted(cluster_name, |_| true);
        keys.sort_by_key(|k| !tagged.iter().any(|(t, _)| t.job == *k));
        let spares: HashSet<&str> = tagged
            .iter()
            .map(|(t, _)| t.job.as_str())
            .filter(|k| k.contains("#r") && !self.wants.contains_key(*k))
            .collect();
        for key in keys {
            let Some(w) = self.wants.get(&key) else {
                continue;
            };
            let spare = |t: &Tag| {
                w.replica
                    && w.adoptable
                    && base_job(&t.job) == base_job(&key)
                    && spares.contains(t.job.as_str())
            };
            // A replica taking over after a reset takes a live job only: an ended one (one
            // this backend cancelled when the replica was removed) would only be started again.
            let replica_after_reset = w.replica && w.adoptable;
            // A live job of another size is not this run (the new leader placed it anew,
            // elastic or after a change of the service's shape): it is cancelled as unwanted,
            // and the run submitted at its size. A completed one did the work at any size.
            let candidates: Vec<&(Tag, &QueueJob)> = tagged
                .iter()
                .filter(|(t, j)| {
                    (t.job == key || spare(t))
                        && !claimed.contains(&j.id)
                        && !(replica_after_reset && j.state.is_terminal())
                        && (j.state.is_terminal()
                            || t.accelerators.is_none_or(|n| n == w.accelerators))
                })
                .collect();
            let exact = candidates
                .iter()
                .copied()
                .filter(|(t, _)| {
                    t.job == key
                        && t.generation == w.tag_generation.unwrap_or(w.generation)
                        && t.attempt == w.attempt
                        && t.resubmit == w.resubmit
                })
                .max_by_key(|(_, j)| numeric_id(&j.id));
            // A job still completing (its epilog runs) hides how it ended: one an earlier
            // leader cancelled ends CANCELLED, which is no end of this run's. It is not taken
            // over, and nothing is submitted for the run, until Slurm says how it ended — for
            // at most COMPLETING_WAIT (a node that stopped answering keeps a job completing
            // until Slurm marks it down); then the run is submitted anew.
            let completing = exact.is_none()
                && w.adoptable
                && candidates
                    .iter()
                    .any(|(_, j)| j.state == JobState::Completing);
            let awaits = completing
                && w.completing_since
                    .is_none_or(|t| t.elapsed() < COMPLETING_WAIT);
            let adoptable = w.adoptable;
            if let Some(w) = self.wants.get_mut(&key) {
                w.awaits_end = awaits;
                if awaits {
                    w.completing_since.get_or_insert_with(Instant::now);
                }
            }
            if awaits {
                continue;
            }
            let Some(w) = self.wants.get(&key) else {
                continue;
            };
            let candidates = candidates
                .into_iter()
                .filter(|(_, j)| j.state != JobState::Completing || !adoptable);
            let adopt = exact.or_else(|| {
                if !w.adoptable {
                    return None;
                }
                candidates
                    .clone()
                    .filter(|(_, j)| !j.state.is_terminal())
                    .max_by_key(|(_, j)| numeric_id(&j.id))
                    .or_else(|| {
                        candidates
                            .clone()
                            .filter(|(_, j)| j.state == JobState::Completed)
                            .max_by_key(|(_, j)| numeric_id(&j.id))
                    })
                    .or_else(|| {
                        // A run that was running when the leader changed and whose newest
                        // job ended unsuccessfully meanwhile: that end is reported (the
                        // server decides about a retry), not run again unseen. Its tag may be
                        // several attempts behind (every recovery counts one, and a job taken
                        // over keeps its tag). Only the newest job of the run: an older one's
                        // end was reported before. (A leader that died between restarting a
                        // failed run and submitting it leaves that failure newest: it is
                        // then counted twice, a retry spent in a window of seconds.)
                        if !w.recovered || w.replica {
                            return None;
                        }
                        let (_, newest) = tagged
                            .iter()
                            .filter(|(t, _)| t.job == key)
                            .max_by_key(|(_, j)| numeric_id(&j.id))?;
                        candidates
                            .clone()
                            .find(|(t, j)| j.id == newest.id && t.attempt < w.attempt)
                    })
            });
            let Some((t, j)) = adopt else { continue };
            let id = j.id.clone();
            let msg = format!(
                "took over Slurm job {id} ({}, generation {} attempt {})",
                j.state.as_str(),
                t.generation,
                t.attempt
            );
            let labelled = w.command.is_some();
            let mut continued = None;
            if let Some(w) = self.wants.get_mut(&key) {
                w.slurm_id = Some(id.clone());
                w.resubmit = w.resubmit.max(t.resubmit);
                w.adoptable = false;
                if !w.replica && t.generation != w.generation {
                    w.tag_generation = Some(t.generation);
                }
                if w.replica {
                    // A replica's attempts count its starts: they go on from the job's.
                    w.attempt = w.attempt.max(t.attempt);
                } else if t.attempt > 0 && t.attempt < w.attempt {
                    // The work is the earlier attempt's, and goes on as that one.
                    w.attempt = t.attempt;
                    continued = Some(Observed::Continued {
                        job: w.job.clone(),
                        generation: w.generation,
                        attempt: t.attempt,
                    });
                }
            }
            // The job writes where its own tag says.
            let (stdout, stderr) = log_paths(&self.clusters[i].cfg.settings, &t.job, t);
            self.follow(i, &id, &key, t.attempt, labelled, (&stdout, &stderr));
            lock(&self.shared).note_logs(
                &key,
                LogPaths {
                    slurm_job: Some(id.clone()),
                    stdout,
                    stderr,
                },
            );
            claimed.insert(id);
            self.event(&key, cluster_name, "slurm_adopted", msg);
            if let Some(o) = continued {
                self.observe(o);
            }
        }
        // Once a round has seen the listing, later launches of this term never adopt (one
        // that waits for a completing job to end still may, once it has).
        for w in self.wants.values_mut() {
            if w.cluster == cluster_name && !w.awaits_end {
                w.adoptable = false;
            }
        }
        if self.synced {
            self.clusters[i].listed = true;
            if self.clusters.iter().all(|c| c.listed) {
                self.stopped = HashSet::new();
            }
        }
    }

    /// A wanted run's Slurm job ended.
    fn ended(&mut self, key: &str, cluster: &str, how: Ending) {
        let max = self.options.max_attempts;
        let Some(w) = self.wants.get_mut(key) else {
            return;
        };
        w.slurm_id = None;
        w.running_seen = false;
        w.pending_reason = None;
        // A job that ran long enough ends a streak of quick failures: the next starts after
        // the first back-off again (as node agents do).
        if w.running_since
            .take()
            .is_some_and(|t| t.elapsed() >= BACKOFF_RESET_AFTER)
        {
            w.backoff = self.options.backoff_initial;
        }
        // A paused run's work had begun: held now, it is interrupted. (Also a replica's flag
        // goes: its next job starts afresh.)
        let suspended = std::mem::take(&mut w.suspended);
        let was_held = w.held_why.take().is_some() && !suspended;
        if w.replica {
            // A service replica is never done: start it again (after back-off).
            let why = match how {
                Ending::Completed => "its Slurm job completed".to_owned(),
                Ending::Work(why) | Ending::Infrastructure(why) => why,
            };
            w.attempt += 1;
            w.resubmit = 0;
            w.next_try = Instant::now() + w.backoff;
            // Worded to stay true after the fact: the service's reason quotes the last one.
            let msg = format!("{why}; submitted again after a {:?} back-off", w.backoff);
            w.backoff = (w.backoff * 2).min(self.options.backoff_max);
            self.event(key, cluster, "slurm_replica_restarted", msg);
            return;
        }
        match how {
            Ending::Completed => {
                if let Some(w) = self.wants.remove(key) {
                    self.observe(Observed::Finished {
                        job: w.job,
                        generation: w.generation,
                    });
                }
            }
            Ending::Work(reason) => {
                if let Some(w) = self.wants.remove(key) {
                    self.observe(Observed::Failed {
                        job: w.job,
                        generation: w.generation,
                        reason,
                    });
                }
            }
            Ending::Infrastructure(why) if w.resubmit + 1 >= max => {
                let reason = format!(
                    "{why}; gave up after {} Slurm job(s) for this run",
                    w.resubmit + 1
                );
                if let Some(w) = self.wants.remove(key) {
                    self.observe(Observed::Failed {
                        job: w.job,
                        generation: w.generation,
                        reason,
                    });
                }
            }
            Ending::Infrastructure(why) => {
                w.resubmit += 1;
                w.next_try = Instant::now() + w.backoff;
                let msg = format!(
                    "{why}; submitting it again in {:?} (Slurm job {} of at most {max} for this run)",
                    w.backoff,
                    w.resubmit + 1
                );
                w.backoff = (w.backoff * 2).min(self.options.backoff_max);
                // Its work stopped here (if it had begun): held until the next job runs.
                let why = format!("{why}; submitted again");
                w.held_why = Some(why.clone());
                let held = Observed::Held {
                    job: w.job.clone(),
                    generation: w.generation,
                    why,
                    interrupted: w.ran && !was_held,
                };
                self.observe(held);
                self.event(key, cluster, "slurm_resubmitted", msg);
            }
        }
    }

    /// Starts following a Slurm job's output files.
    fn follow(
        &mut self,
        i: usize,
        id: &str,
        key: &str,
        attempt: u32,
        labelled: bool,
        (stdout, stderr): (&str, &str),
    ) {
        let replica = replica_output_name(key, id);
        for (stream, path) in [("stdout", stdout), ("stderr", stderr)] {
            self.follows
                .entry((id.to_owned(), stream))
                .or_insert_with(|| Follow {
                    cluster: i,
                    job: base_job(key).to_owned(),
                    replica: replica.clone(),
                    attempt,
                    labelled,
                    stream,
                    path: PathBuf::from(path),
                    offset: 0,
                    failure: None,
                });
        }
    }

    /// Reads the new lines of cluster `i`'s followed files; a file whose job has ended (or left
    /// the listing) is read one last time, its unfinished last line included, and dropped.
    /// Returns the first task failure `srun` reported, by Slurm job id.
    fn read_output(
        &mut self,
        i: usize,
        by_id: &HashMap<&str, &QueueJob>,
    ) -> HashMap<String, String> {
        let now = now_ms();
        let mut lines = Vec::new();
        let mut done = Vec::new();
        let mut failures = HashMap::new();
        for ((id, _), f) in self.follows.iter_mut().filter(|(_, f)| f.cluster == i) {
            let last = by_id.get(id.as_str()).is_none_or(|j| j.state.is_terminal());
            // Followed until read to the end after the job ended: a read takes at most
            // `logs::MAX_READ_BYTES`, and what the job wrote last (its failing rank) matters most.
            let mut finished = last;
            match logs::read_new_lines(&f.path, &mut f.offset, f.labelled, last) {
                Ok(got) => {
                    finished &= got.at_end;
                    lines.extend(got.lines.into_iter().map(|l| {
                        if f.failure.is_none()
                            && f.stream == "stderr"
                            && let Some((task, what)) = logs::srun_task_failure(&l.text)
                        {
                            f.failure = Some(format!("{task} failed first: {what}"));
                        }
                        OutputLine {
                            job: f.job.clone(),
                            attempt: f.attempt,
                            rank: l.rank,
                            // A replica's lines carry its name where a node agent's do.
                            source: match &f.replica {
                                Some(r) => format!("{}/replica-{r}/slurm-{id}", f.job),
                                None => format!("slurm-{id}"),
                            },
                            stream: f.stream,
                            seq: l.seq,
                            at_ms: now,
                            line: l.text,
                        }
                    }));
                }
                Err(e) => {
                    tracing::warn!(path = %f.path.display(), error = %e, "cannot read a Slurm job's output");
                }
            }
            if let Some(why) = &f.failure {
                failures.insert(id.clone(), why.clone());
            }
            if finished {
                done.push((id.clone(), f.stream));
            }
        }
        for k in done {
            self.follows.remove(&k);
        }
        if !lines.is_empty() {
            self.observe(Observed::Output(lines));
        }
        failures
    }

    fn submit(&mut self, i: usize, key: &str) {
        let Some(w) = self.wants.get(key) else { return };
        let c = &self.clusters[i];
        let s = submission(c, w, key, &self.options);
        // Slurm cannot open output files in a directory that is not there: the job would fail
        // to launch on every retry, its reason only "JobLaunchFailure". Not submitted, then,
        // and the run is told why (retried like a refused submission).
        let log_dir = std::path::Path::new(&s.stdout).parent().map(|d| {
            std::fs::create_dir_all(d).map_err(|e| SlurmError::Failed {
                command: "mkdir".into(),
                status: e.kind().to_string(),
                message: format!(
                    "cannot create the log directory {}: {e} (the fleet's `[clusters.slurm] \
                     log_dir` must be writable by the server and shared with the compute nodes)",
                    d.display()
                ),
            })
        });
        // Files of an earlier job with the same tag (no job of this tag is in Slurm's listing,
        // or it would have been adopted) would be read as this one's until Slurm truncates them.
        for p in [&s.stdout, &s.stderr] {
            let _ = std::fs::remove_file(p);
        }
        let result = match log_dir {
            Some(Err(e)) => Err(e),
            _ => c.cfg.client.submit(&s),
        };
        let cluster = c.cfg.name.clone();
        match result {
            Ok(id) => {
                {
                    let mut o = lock(&self.shared);
                    o.submitted += 1;
                    o.note_logs(
                        key,
                        LogPaths {
                            slurm_job: Some(id.clone()),
                            stdout: s.stdout.clone(),
                            stderr: s.stderr.clone(),
                        },
                    );
                }
                let msg = format!(
                    "submitted as Slurm job {id} ({} node(s), {} task(s) per node, attempt {}{})",
                    s.nodes,
                    s.ntasks_per_node,
                    w.attempt,
                    if w.resubmit > 0 {
                        format!(", resubmission {}", w.resubmit)
                    } else {
                        String::new()
                    }
                );
                let (attempt, labelled) = (w.attempt, w.command.is_some());
                if let Some(w) = self.wants.get_mut(key) {
                    w.slurm_id = Some(id.clone());
                    w.refusals = 0;
                    w.last_refusal = None;
                }
                self.follow(i, &id, key, attempt, labelled, (&s.stdout, &s.stderr));
                self.event(key, &cluster, "slurm_submitted", msg);
            }
            Err(e) => {
                let backoff = w.backoff;
                let message = e.message();
                // Every refusal is retried; the same message is reported on the 1st, 2nd,
                // 4th, 8th … refusal in a row, so a run stuck for days does not flood its events.
                let refusals = w.refusals + 1;
                let report =
                    w.last_refusal.as_deref() != Some(&message) || refusals.is_power_of_two();
                let msg = format!(
                    "not submitted: {message}; retrying in {backoff:?} (refusal {refusals} in a row)"
                );
                let mut held = None;
                if let Some(w) = self.wants.get_mut(key) {
                    w.next_try = Instant::now() + backoff;
                    w.backoff = (backoff * 2).min(self.options.backoff_max);
                    w.refusals = refusals;
                    held = w.hold(format!("not submitted: {message}"));
                    w.last_refusal = Some(message);
                }
                if let Some(held) = held {
                    self.observe(held);
                }
                if report {
                    self.event(key, &cluster, "slurm_submit_failed", msg);
                } else {
                    tracing::info!(job = key, %msg, "slurm");
                }
            }
        }
    }
}

/// What a new wanted run is made of.
struct Run {
    job: String,
    cluster: String,
    generation: u32,
    attempt: u32,
    accelerators: u32,
    expected_end_ms: i64,
    replica: bool,
    command: Option<Arc<JobCommand>>,
}

/// How a Slurm job in `state` ended (`None`: it has not). `NODE_FAIL`, `BOOT_FAIL` and
/// `PREEMPTED` are the infrastructure's doing (a node died or could not boot, a more important
/// job took the nodes): like a lost node for the agents, they do not count against the job's
/// retries. Any other unsuccessful end is the work's: `FAILED` (non-zero exit), `TIMEOUT`,
/// `OUT_OF_MEMORY`, `DEADLINE`, and `CANCELLED` by someone other than Switchyard (Switchyard
/// cancels only jobs nobody wants, whose ends are not followed).
fn ending(
    id: &str,
    state: &JobState,
    reason: &str,
    exit: Option<(i32, i32)>,
    task_failure: Option<&str>,
) -> Option<Ending> {
    if !state.is_terminal() {
        return None;
    }
    if *state == JobState::Completed {
        return Some(Ending::Completed);
    }
    let exit = match exit {
        Some((0, 0)) | None => String::new(),
        Some((c, 0)) => format!(" with exit code {c}"),
        Some((_, sig)) => format!(" killed by signal {sig}"),
    };
    // A job cancelled while it waited keeps its last reason for waiting (`Resources`,
    // `Priority`, a limit, a hold …), which says nothing of why it ended.
    let reason = match reason.trim() {
        "" | "None" | "(null)" => String::new(),
        r if is_waiting_reason(r) => String::new(),
        r => format!(" (reason {r})"),
    };
    // Switchyard cancels only jobs it no longer wants, which it does not report: this one was
    // cancelled in Slurm (scancel, an administrator), and its ranks' ends (SIGTERM) are that.
    let cancelled = *state == JobState::Cancelled;
    let task = match task_failure {
        Some(t) if !cancelled => format!("; {t}"),
        _ => String::new(),
    };
    // Slurm says no more than this when the job's own user cannot open its output files or
    // enter its working directory: the job never ran, and nothing of it is in its logs.
    let launch = if reason.contains("JobLaunchFailure") {
        "; Slurm could not launch it: can the job's user (over slurmrestd, the token's) write \
         its output files under log_dir and enter its working directory?"
    } else {
        ""
    };
    let by = if cancelled {
        " (cancelled in Slurm, not by Switchyard: scancel or an administrator)"
    } else {
        ""
    };
    let why = format!(
        "Slurm job {id} ended {}{by}{exit}{reason}{task}{launch}",
        state.as_str()
    );
    Some(match state {
        JobState::NodeFail | JobState::BootFail | JobState::Preempted => {
            Ending::Infrastructure(why)
        }
        _ => Ending::Work(why),
    })
}

/// What to say when Slurm's `nodes` hold fewer accelerators than the fleet gives each
/// (`per_node`): GPUs from GRES where the partition has any, otherwise CPUs, since a job takes a
/// task per accelerator. A gang that needs a whole node would wait in Slurm's queue for ever.
fn short_nodes(per_node: u32, has_gpus: bool, nodes: &[&Node]) -> Option<String> {
    let slots = |n: &Node| if has_gpus { n.gpus } else { n.cpus };
    let short: Vec<&&Node> = nodes
        .iter()
        .filter(|n| slots(n) > 0 && slots(n) < per_node)
        .collect();
    let first = short.first()?;
    Some(format!(
        "the fleet gives this cluster {per_node} accelerators per node, but Slurm's node {} has \
         {} {} ({} such node{}): a gang that needs a whole node waits in Slurm's queue for ever \
         there; set accelerators_per_node to what the nodes have",
        first.name,
        slots(first),
        if has_gpus { "GPUs" } else { "CPUs and no GPUs" },
        short.len(),
        if short.len() == 1 { "" } else { "s" }
    ))
}

/// Whether `reason` is one of Slurm's reasons for a job to wait (squeue's `%r` of a pending
/// job): resources, priority, a start time, a dependency, a node or partition that is not
/// available, a QOS or association limit, a hold.
fn is_waiting_reason(reason: &str) -> bool {
    matches!(
        reason,
        "Resources" | "Priority" | "BeginTime" | "Dependency" | "Licenses" | "Reservation"
    ) || [
        "ReqNodeNotAvail",
        "Partition",
        "QOS",
        "Assoc",
        "JobHeld",
        "NodeDown",
        "Nodes_required",
    ]
    .iter()
    .any(|prefix| reason.starts_with(prefix))
}

fn log_dir(settings: &SlurmSettings) -> String {
    settings
        .log_dir
        .clone()
        .unwrap_or_else(|| "/tmp/switchyard-slurm/logs".into())
}

/// The `--output`/`--error` files of the Slurm job tagged `t` for run `key`.
fn log_paths(settings: &SlurmSettings, key: &str, t: &Tag) -> (String, String) {
    let dir = log_dir(settings);
    let r = if t.resubmit > 0 {
        format!("-r{}", t.resubmit)
    } else {
        String::new()
    };
    let stem = format!("{dir}/{key}/g{}-a{}{r}", t.generation, t.attempt);
    (format!("{stem}.out"), format!("{stem}.err"))
}

/// A Slurm job of a run that ran this long resets the run's back-off.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(600);

/// How long a run waits for a completing job it might take over after a reset to say how it
/// ended ([`Worker::adopt`]).
const COMPLETING_WAIT: Duration = Duration::from_secs(60);

/// The `sbatch` submission of a wanted run.
fn submission(c: &Cluster, w: &Want, key: &str, options: &Options) -> Submission {
    let per_node = c.cfg.accelerators_per_node.max(1);
    let nodes = w.accelerators.div_ceil(per_node).max(1);
    let tasks = if nodes == 1 {
        w.accelerators.clamp(1, per_node)
    } else {
        per_node
    };
    let settings = &c.cfg.settings;
    let ckpt_root = settings
        .checkpoint_dir
        .clone()
        .unwrap_or_else(|| "/tmp/switchyard-slurm/checkpoints".into());
    let remaining_s = if w.expected_end_ms == i64::MAX {
        None
    } else {
        Some(((w.expected_end_ms - now_ms()).max(0) as u64).div_ceil(1000))
    };
    let mut env = Vec::new();
    // A service replica's command runs once per node of the replica with all of its
    // accelerators there (as node agents run it), on a port of its own: replicas Slurm packs
    // on one node must not share one. A gang's runs once per accelerator.
    let (tasks_per_node, cpus_per_task) = if w.replica {
        (1, (!c.has_gpus && tasks > 1).then_some(tasks))
    } else {
        (tasks, None)
    };
    let command = match (&w.command, &settings.command, remaining_s) {
        (Some(cmd), _, _) => {
            env.extend(script::job_env(cmd));
            let port = if w.replica {
                script::master_port(key, w.attempt)
            } else {
                script::master_port(&w.job, w.attempt)
            };
            script::gang_command(cmd, port, c.has_gpus && !w.replica)
        }
        (None, Some(cmd), _) => cmd.clone(),
        (None, None, Some(s)) => format!("exec sleep {s}"),
        (None, None, None) => "exec sleep infinity".into(),
    };
    let time_limit_min = match (&w.command, &settings.command, remaining_s) {
        // A placeholder sleeps for the expected time: give it twice that plus 5 minutes.
        (None, None, Some(s)) => Some((2 * s + 300).div_ceil(60)),
        // Real work ends when it ends: the partition's limit applies.
        _ => None,
    };
    let block = c.cfg.block_nodes.filter(|_| nodes > 1);
    let generation = w.tag_generation.unwrap_or(w.generation);
    let tag = Tag {
        job: key.to_owned(),
        generation,
        attempt: w.attempt,
        resubmit: w.resubmit,
        accelerators: Some(w.accelerators),
    };
    let (stdout, stderr) = log_paths(settings, key, &tag);
    env.extend([
        ("SWITCHYARD_JOB_ID".into(), w.job.clone()),
        ("SWITCHYARD_GENERATION".into(), generation.to_string()),
        ("SWITCHYARD_ATTEMPT".into(), w.attempt.to_string()),
        (
            "SWITCHYARD_CHECKPOINT_DIR".into(),
            format!("{ckpt_root}/{}", w.job),
        ),
    ]);
    Submission {
        job_name: format!("sy-{key}"),
        comment: tag.render(&options.tag),
        partition: settings.partition.clone(),
        account: settings.account.clone(),
        nodes,
        ntasks_per_node: tasks_per_node,
        gpus_per_node: c.has_gpus.then_some(tasks),
        cpus_per_task,
        time_limit_min,
        switches: block.map(|b| nodes.div_ceil(b)),
        segment: block.filter(|_| options.use_segment).map(|b| b.min(nodes)),
        stdout,
        stderr,
        env,
        command,
    }
}

fn numeric_id(id: &str) -> u64 {
    id.split('_')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Orders `node2` before `node10`.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let mut digit = None;
        for (i, c) in s.char_indices() {
            let d = c.is_ascii_digit();
            if digit.is_some_and(|x| x != d) {
                out.push((digit.unwrap_or(false), &s[start..i]));
                start = i;
            }
            digit = Some(d);
        }
        if start < s.len() {
            out.push((digit.unwrap_or(false), &s[start..]));
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(cb.iter()) {
        let o = match (x, y) {
            ((true, xs), (true, ys)) => {
                let xt = xs.trim_start_matches('0');
                let yt = ys.trim_start_matches('0');
                xt.len().cmp(&yt.len()).then(xt.cmp(yt))
            }
            ((_, xs), (_, ys)) => xs.cmp(ys),
        };
        if o != std::cmp::Ordering::Equal {
            return o;
        }
    }
    ca.len().cmp(&cb.len()).then(a.cmp(b))
}

#[cfg(test)]
mod tests {
    //! The reconciler on an in-memory Slurm: the cheapest tests that catch its mistakes.

    use super::*;
    use crate::client::SlurmError;
    use crate::parse::{JobInfo, NodeState};
    use proptest::prelude::*;

    #[derive(Debug, Default)]
    struct FakeState {
        next_id: u64,
        jobs: Vec<QueueJob>,
        submitted: Vec<Submission>,
        cancelled: Vec<String>,
        nodes: Vec<Node>,
        refuse: Option<String>,
        /// `scancel` fails with this message.
        refuse_cancel: Option<String>,
        /// The controller does not answer.
        down: bool,
        /// `sinfo` fails (the nodes cannot be read).
        sinfo_down: bool,
        /// Exit codes `scontrol show job` reports (default 0:0).
        exit: HashMap<String, (i32, i32)>,
    }

    #[derive(Debug, Clone, Default)]
    struct Fake(Arc<std::sync::Mutex<FakeState>>);

    impl Fake {
        fn st(&self) -> std::sync::MutexGuard<'_, FakeState> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }
        fn add_job(&self, comment: Option<&str>, state: JobState) -> String {
            let mut s = self.st();
            s.next_id += 1;
            let id = (1000 + s.next_id).to_string();
            s.jobs.push(QueueJob {
                id: id.clone(),
                state,
                name: "x".into(),
                comment: comment.map(str::to_owned),
                nodes: String::new(),
                reason: "None".into(),
                user: "u".into(),
                partition: "gpu".into(),
                start_s: None,
            });
            id
        }
        fn set_state(&self, id: &str, state: JobState) {
            if let Some(j) = self.st().jobs.iter_mut().find(|j| j.id == id) {
                j.state = state;
            }
        }
        fn active_tagged(&self, prefix: &str) -> Vec<(Tag, String)> {
            self.st()
                .jobs
                .iter()
                .filter(|j| !j.state.is_terminal())
                .filter_map(|j| Some((Tag::parse(j.comment.as_deref()?, prefix)?, j.id.clone())))
                .collect()
        }
    }

    impl SlurmClient for Fake {
        fn nodes(&self, _partition: Option<&str>) -> Result<Vec<Node>, SlurmError> {
            if self.st().sinfo_down {
                return Err(SlurmError::Timeout {
                    command: "sinfo".into(),
                    seconds: 30,
                });
            }
            Ok(self.st().nodes.clone())
        }
        fn jobs(&self) -> Result<Vec<QueueJob>, SlurmError> {
            if self.st().down {
                return Err(SlurmError::Timeout {
                    command: "squeue".into(),
                    seconds: 30,
                });
            }
            Ok(self.st().jobs.clone())
        }
        fn job(&self, id: &str) -> Result<Option<JobInfo>, SlurmError> {
            let st = self.st();
            Ok(st.jobs.iter().find(|j| j.id == id).map(|j| JobInfo {
                id: j.id.clone(),
                name: j.name.clone(),
                state: j.state.clone(),
                reason: j.reason.clone(),
                exit_code: Some(st.exit.get(&j.id).copied().unwrap_or((0, 0))),
                comment: j.comment.clone(),
                stdout: None,
                stderr: None,
                nodes: j.nodes.clone(),
                start_s: j.start_s,
            }))
        }
        fn submit(&self, sub: &Submission) -> Result<String, SlurmError> {
            if let Some(m) = self.st().refuse.clone() {
                return Err(SlurmError::Failed {
                    command: "sbatch".into(),
                    status: "exit status: 1".into(),
                    message: m,
                });
            }
            let id = self.add_job(Some(&sub.comment), JobState::Pending);
            self.st().submitted.push(sub.clone());
            Ok(id)
        }
        fn cancel(&self, id: &str) -> Result<(), SlurmError> {
            if let Some(m) = self.st().refuse_cancel.clone() {
                return Err(SlurmError::Failed {
                    command: "scancel".into(),
                    status: "exit status: 1".into(),
                    message: m,
                });
            }
            self.st().cancelled.push(id.to_owned());
            self.set_state(id, JobState::Cancelled);
            Ok(())
        }
    }

    fn node(name: &str, state: &str, gpus: u32) -> Node {
        Node {
            name: name.into(),
            partition: "gpu".into(),
            default_partition: true,
            state: NodeState::parse(state),
            cpus: 64,
            gpus,
            reason: "none".into(),
        }
    }

    /// Nodes with fewer GPUs (or, without GPUs, CPUs) than the fleet's accelerators per node
    /// are named in a warning; enough, or none counted, say nothing.
    #[test]
    fn nodes_short_of_the_fleets_accelerators_are_named() {
        let gpu = [node("g1", "idle", 8), node("g2", "idle", 4)];
        let gpu: Vec<&Node> = gpu.iter().collect();
        let said = short_nodes(8, true, &gpu).expect("g2 has 4");
        assert!(
            said.contains("Slurm's node g2 has 4 GPUs (1 such node)"),
            "{said}"
        );
        assert_eq!(short_nodes(4, true, &gpu), None);
        let mut cpu = node("vm", "idle", 0);
        cpu.cpus = 2;
        let said = short_nodes(4, false, &[&cpu]).expect("2 CPUs");
        assert!(said.contains("has 2 CPUs and no GPUs"), "{said}");
        assert_eq!(short_nodes(2, false, &[&cpu]), None);
    }

    fn worker(fake: &Fake, nodes: u32) -> Worker {
        // A partition lists its nodes (one that lists none does not exist): CPU nodes unless
        // the test gave its own.
        if fake.st().nodes.is_empty() {
            fake.st().nodes = (1..=nodes)
                .map(|i| node(&format!("cpu{i}"), "idle", 0))
                .collect();
        }
        let options = Options {
            backoff_initial: Duration::from_secs(3600),
            ..Options::default()
        };
        let cfg = ClusterConfig {
            name: "c".into(),
            index: 2,
            nodes,
            accelerators_per_node: 8,
            block_nodes: Some(4),
            settings: SlurmSettings {
                partition: "gpu".into(),
                rest_url: None,
                token_env: None,
                account: Some("lab".into()),
                log_dir: Some(std::env::temp_dir().join("sy-unit").display().to_string()),
                checkpoint_dir: Some("/ckpt".into()),
                command: Some("srun ./train.sh".into()),
            },
            client: Box::new(fake.clone()),
        };
        Worker::new(vec![cfg], options, Arc::new(Mutex::new(Outbox::default())))
    }

    fn launch(job: &str, generation: u32, accelerators: u32) -> Command {
        Command::Launch {
            job: job.into(),
            generation,
            cluster: "c".into(),
            accelerators,
            expected_end_ms: now_ms() + 3_600_000,
            attempt: generation,
            nodes: Vec::new(),
            recovered: false,
            ran_before: None,
            command: None,
        }
    }

    fn observed(w: &Worker) -> Vec<Observed> {
        std::mem::take(&mut lock(&w.shared).observed)
    }

    /// The events among what the worker observed: (job, kind, message).
    fn events(obs: &[Observed]) -> Vec<(String, String, String)> {
        obs.iter()
            .filter_map(|o| match o {
                Observed::Event {
                    job, kind, message, ..
                } => Some((job.clone(), kind.clone(), message.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_gang_is_one_sbatch_with_nodes_tasks_gpus_and_switches() {
        let fake = Fake::default();
        fake.st().nodes = (1..=8)
            .map(|i| node(&format!("gpu{i:03}"), "idle", 8))
            .collect();
        let mut w = worker(&fake, 8);
        w.apply(Msg::Commands(vec![launch("j-1", 1, 64)]));
        w.round();
        w.round();
        let subs = fake.st().submitted.clone();
        assert_eq!(subs.len(), 1, "submitted once, not every round");
        let a = subs[0].args();
        for want in [
            "--nodes=8",
            "--ntasks-per-node=8",
            "--gpus-per-node=8",
            "--switches=2",
            "--partition=gpu",
            "--account=lab",
            "--comment=switchyard:j-1:1:1:a64",
            "--job-name=sy-j-1",
            "--no-requeue",
            "--open-mode=append",
            "--export=NONE",
        ] {
            assert!(a.iter().any(|x| x == want), "{want} missing from {a:?}");
        }
        let script = subs[0].script();
        assert!(
            script.contains("export SWITCHYARD_JOB_ID='j-1'"),
            "{script}"
        );
        assert!(script.contains("export SWITCHYARD_ATTEMPT='1'"), "{script}");
        assert!(
            script.contains("export SWITCHYARD_CHECKPOINT_DIR='/ckpt/j-1'"),
            "{script}"
        );
        assert!(script.trim_end().ends_with("srun ./train.sh"), "{script}");
        assert!(
            script.starts_with(
                "#!/bin/sh\nunset SLURM_JWT\nexport PATH=\"${PATH:+$PATH:}\"'/usr/local/sbin:"
            ),
            "{script}"
        );
        assert!(script.contains("export SLURM_EXPORT_ENV=ALL\n"), "{script}");
        // No GPUs in the partition: no --gpus-per-node; one node, tasks = accelerators.
        let fake = Fake::default();
        fake.st().nodes = vec![node("cpu1", "idle", 0)];
        let mut w = worker(&fake, 1);
        w.apply(Msg::Commands(vec![launch("j-2", 1, 3)]));
        w.round();
        let a = fake.st().submitted[0].args();
        assert!(a.iter().all(|x| !x.starts_with("--gpus-per-node")), "{a:?}");
        assert!(a.iter().all(|x| !x.starts_with("--switches")), "{a:?}");
        assert!(a.contains(&"--ntasks-per-node=3".to_owned()), "{a:?}");
    }

    #[test]
    fn a_restart_cancels_the_old_generation_and_submits_the_new() {
        let fake = Fake::default();
        let mut w = worker(&fake, 1);
        w.apply(Msg::Commands(vec![launch("j", 1, 8)]));
        w.round();
        let old = fake.active_tagged("switchyard");
        assert_eq!(old.len(), 1);
        fake.set_state(&old[0].1, JobState::Running);
        w.apply(Msg::Commands(vec![
            Command::Stop { job: "j".into() },
            launch("j", 2, 8),
        ]));
        w.round();
        assert_eq!(fake.st().cancelled, vec![old[0].1.clone()]);
        let now = fake.active_tagged("switchyard");
        assert_eq!(now.len(), 1);
        assert_eq!(now[0].0.generation, 2);
    }

    /// A run stopped while Slurm cannot be reached says, once, that its Slurm job is not
    /// cancelled yet; it is cancelled once Slurm answers.
    #[test]
    fn a_stop_slurm_cannot_hear_yet_says_the_cancellation_is_owed() {
        let fake = Fake::default();
        let mut w = worker(&fake, 1);
        w.apply(Msg::Commands(vec![launch("j", 1, 8)]));
        w.round();
        let old = fake.active_tagged("switchyard");
        fake.set_state(&old[0].1, JobState::Running);
        w.round();
        observed(&w);
        fake.st().down = true;
        w.apply(Msg::Commands(vec![Command::Stop { job: "j".into() }]));
        for _ in 0..3 {
            w.round();
        }
        let owed: Vec<_> = events(&observed(&w))
            .into_iter()
            .filter(|(_, kind, _)| kind == "slurm_cancel_pending")
            .collect();
        assert_eq!(owed.len(), 1, "{owed:?}");
        assert_eq!(owed[0].0, "j");
        assert!(
            owed[0]
                .2
                .starts_with(&format!("Slurm job {} is not cancelled yet", old[0].1)),
            "{}",
            owed[0].2
        );
        assert!(fake.st().cancelled.is_empty());
        fake.st().down = false;
        w.round();
        assert_eq!(fake.st().cancelled, vec![old[0].1.clone()]);
        assert!(w.owed_cancels.is_empty());
    }

    /// `sinfo` answers a partition that does not exist with no nodes and success: the runs
    /// are told the partition lists none, instead of waiting as if every node had failed.
    #[test]
    fn a_partition_without_nodes_is_named_not_taken_for_failed_nodes() {
        let fake = Fake::default();
        let mut w = worker(&fake, 2);
        fake.st().nodes.clear();
        w.apply(Msg::Commands(vec![launch("j-1", 1, 8)]));
        w.round();
        w.round();
        assert!(fake.st().submitted.is_empty());
        let obs = observed(&w);
        assert!(
            !obs.iter().any(|o| matches!(o, Observed::NodeFailed { .. })),
            "{obs:?}"
        );
        let said = events(&obs);
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(
            said[0]
                .2
                .contains("partition gpu lists no nodes: does it exist?"),
            "{said:?}"
        );
        // A run that comes later is told too, once.
        w.apply(Msg::Commands(vec![
            launch("j-1", 1, 8),
            launch("j-2", 1, 8),
        ]));
        w.round();
        w.round();
        let later = events(&observed(&w));
        assert_eq!(later.len(), 1, "{later:?}");
        assert_eq!(later[0].0, "j-2");
    }

    /// A log directory the server cannot create is a refused submission naming it, not a job
    /// that fails to launch on every retry.
    #[test]
    fn a_log_directory_that_cannot_be_made_is_named_and_nothing_is_submitted() {
        let fake = Fake::default();
        let mut w = worker(&fake, 1);
        w.clusters[0].cfg.settings.log_dir = Some("/proc/sy-no-logs-here".into());
        w.apply(Msg::Commands(vec![launch("j-1", 1, 8)]));
        w.round();
        assert!(fake.st().submitted.is_empty());
        let said = events(&observed(&w));
        assert_eq!(said.len(), 1, "{said:?}");
        assert_eq!(said[0].1, "slurm_submit_failed");
        assert!(
            said[0]
                .2
                .contains("cannot create the log directory /proc/sy-no-logs-here/j-1"),
            "{said:?}"
        );
    }

    /// A run Switchyard placed that Slurm keeps in its own queue says so, with Slurm's reason,
    /// once per reason.
    #[test]
    fn a_job_slurm_keeps_queued_says_why() {
        let fake = Fake::default();
        let mut w = worker(&fake, 1);
        let id = running(&fake, &mut w, launch("j-1", 1, 8));
        let set_reason = |reason: &str| {
            if let Some(j) = fake.st().jobs.iter_mut().find(|j| j.id == id) {
                j.state = JobState::Pending;
                j.reason = reason.into();
            }
        };
        for reason in [
            "None",
            "Resources",
            "Resources",
            "PartitionConfig",
            "Resources",
        ] {
            set_reason(reason);
            w.round();
        }
        let seen = observed(&w);
        let said: Vec<String> = events(&seen)
            .into_iter()
            .filter(|e| e.1 == "slurm_pending")
            .map(|e| e.2)
            .collect();
        assert_eq!(
            said,
            [
                format!("Slurm job {id} waits in Slurm's queue: Resources"),
                format!("Slurm job {id} waits in Slurm's queue: PartitionConfig"),
            ]
        );
        // The server holds the run (no progress) from the first pending listing (its job ran
        // before: requeued, its work was interrupted), and hears every new reason, also the
        // flip back to Resources that makes no event; then that its work began, once.
        let held: Vec<(&str, bool)> = seen
            .iter()
            .filter_map(|o| match o {
                Observed::Held {
                    job,
                    generation: 1,
                    why,
                    interrupted,
                } if job == "j-1" => Some((why.as_str(), *interrupted)),
                _ => None,
            })
            .collect();
        let waits = format!("Slurm job {id} waits in Slurm's queue");
        let resources = format!("{waits}: Resources");
        let config = format!("{waits}: PartitionConfig");
        assert_eq!(
            held,
            [
                (waits.as_str(), true),
                (resources.as_str(), false),
                (config.as_str(), false),
                (resources.as_str(), false),
            ]
        );
        assert!(!seen.iter().any(|o| matches!(o, Observed::Began { .. })));
        fake.set_state(&id, JobState::Running);
        w.round();
        w.round();
        let began: Vec<Observed> = observed(&w)
            .into_iter()
            .filter(|o| matches!(o, Observed::Held { .. } | Observed::Began { .. }))
            .collect();
        assert_eq!(
            began,
            [Observed::Began {
                job: "j-1".into(),
                generation: 1,
                since_ms: None,
            }]
        );
    }

    /// squeue prints a flag instead of PENDING for a job held after a requeue (an
    /// administrator's `scontrol requeuehold`, `RequeueExitHold`): the run is held, its work
    /// interrupted, and says so; nodes being readied (CONFIGURING) hold it without an event.
    #[test]
    fn a_job_held_in_slurms_queue_or_configuring_holds_its_run() {
        let fake = Fake::default();
        let mut w = worker(&fake, 1);
        let id = running(&fake, &mut w, launch("j-1", 1, 8));
        observed(&w);
        if let Some(j) = fake.st().jobs.iter_mut().find(|j| j.id == id) {
            j.state = JobState::parse("REQUEUE_HOLD");
            j.reason = "JobHeldAdmin".into();
        }
        w.round();
        w.round();
        let seen = observed(&w);
        let why = format!(
            "Slurm job {id} is held in Slurm's queue (REQUEUE_HOLD) until an administrator \
             releases it: JobHeldAdmin"
        );
        assert_eq!(held_whys(&seen), [(why.clone(), true)]);
        let said: Vec<String> = events(&seen)
            .into_iter()
            .filter(|e| e.1 == "slurm_pending")
            .map(|e| e.2)
            .collect();
        assert_eq!(said, [why]);
        // Released, its nodes are readied first: still held, nothing more said; then it runs.
        if let Some(j) = fake.st().jobs.iter_mut().find(|j| j.id == id) {
            j.state = JobState::Configuring;
            j.reason = "None".into();
        }
        w.round();
        let seen = observed(&w);
        assert_eq!(
            held_whys(&seen),
            [(
                format!("Slurm job {id} waits for its nodes to be readied"),
                false
            )]
        );
        assert!(
            events(&seen).iter().all(|e| e.1 != "slurm_pending"),
            "{seen:?}"
        );
        fake.set_state(&id, JobState::Running);
        w.round();
        assert!(
            observed(&w)
                .iter()
                .any(|o| matches!(o, Observed::Began { .. }))
        );
    }

    /// A held run whose Slurm job started between two polls began when Slurm says it started
    /// (StartTime), not at the poll that saw it; one that started and ended between two polls
    /// began, then finished or failed; one cancelled while it waited (given no nodes, its
    /// StartTime the cancellation) never began.
    #[test]
    fn a_held_run_begins_at_slurms_start_time() {
        let fake = Fake::default();
        let mut w = worker(&fake, 4);
        let jobs = ["j-run", "j-done", "j-failed", "j-cancelled"];
        w.apply(Msg::Commands(
            jobs.iter().map(|job| launch(job, 1, 8)).collect(),
        ));
        w.round();
        w.round();
        let held = observed(&w)
            .iter()
            .filter(|o| matches!(o, Observed::Held { .. }))
            .count();
        assert_eq!(held, 4, "all four wait in Slurm's queue");
        let ids: HashMap<String, String> = fake
            .active_tagged("switchyard")
            .into_iter()
            .map(|(tag, id)| (tag.job, id))
            .collect();
        let t0 = 1_796_000_000;
        for (k, (job, state)) in jobs
            .iter()
            .zip([
                JobState::Running,
                JobState::Completed,
                JobState::Failed,
                JobState::Cancelled,
            ])
            .enumerate()
        {
            let mut st = fake.st();
            let j = st.jobs.iter_mut().find(|j| j.id == ids[*job]).expect("job");
            j.state = state;
            j.start_s = Some(t0 + k as i64);
            if *job != "j-cancelled" {
                j.nodes = "gpu1".into();
            }
        }
        w.round();
        let seen = observed(&w);
        let of = |job: &str| -> Vec<String> {
            seen.iter()
                .filter_map(|o| match o {
                    Observed::Began {
                        job: j, since_ms, ..
                    } if j == job => Some(format!("began {since_ms:?}")),
                    Observed::Finished { job: j, .. } if j == job => Some("finished".into()),
                    Observed::Failed { job: j, .. } if j == job => Some("failed".into()),
                    _ => None,
                })
                .collect()
        };
        let since = |k: i64| format!("began Some({})", (t0 + k) * 1000);
        assert_eq!(of("j-run"), [since(0)]);
        assert_eq!(of("j-done"), [since(1), "finished".into()]);
        assert_eq!(of("j-failed"), [since(2), "failed".into()]);
        assert_eq!(of("j-cancelled"), ["failed"]);
    }

    /// A run whose first Slurm job is listed pending has not begun: held, not interrupted.
    #[test]
    fn a_run_whose_first_job_waits_is_held_from_its_placement() {
        let fake = Fake::default();
        let mut w = worker(&fake, 1);
        w.apply(Msg::Commands(vec![launch("j-1", 1, 8)]));
        w.round();
        w.round();
        let held: Vec<bool> = observed(&w)
            .iter()
            .filter_map(|o| match o {
                Observed::Held { interrupted, .. } => Some(*interrupted),
                _ => None,
            })
            .collect();
        assert_eq!(held, [false]);
    }

    #[test]
    fn nothing_is_submitted_before_the_partitions_nodes_are_read() {
        let fake = Fake::default();
        fake.st().nodes = (1..=2)
            .map(|i| node(&format!("gpu{i}"), "idle", 8))
            .collect();
        fake.st().sinfo_down = true;
        let mut w = worker(&fake, 2);
        w.apply(Msg::Commands(vec![launch("j-1", 1, 16)]));
        w.round();
        w.round();
        assert!(
            fake.st().submitted.is_empty(),
            "without the nodes, whether they have GPUs is unknown"
        );
        let said: Vec<String> = lock(&w.shared)
            .observed
            .iter()
            .filter_map(|o| match o {
                Observed::Event { kind, message, .. } if kind == "slurm_unreachable" => {
                    Some(message.clone())
                }
                _ => None,
            })
            .collect();
        assert_eq!(said.len(), 1, "once per outage: {said:?}");
        assert!(said[0].contains("nothing is submitted until"), "{said:?}");
        fake.st().sinfo_down = false;
        w.round();
        let subs = fake.st().submitted.clone();
        assert_eq!(subs.len(), 1);
        assert!(subs[0].args().iter().any(|a| a == "--gpus-per-node=8"));
    }

    #[test]
    fn untagged_jobs_are_never_touched_and_nothing_is_cancelled_before_the_leader_speaks() {
        let fake = Fake::default();
        let mine = fake.add_job(Some("switchyard:j-old:1:1"), JobState::Running);
        let user = fake.add_job(None, JobState::Running);
        let other = fake.add_job(Some("switchyard-staging:j-old:1:1"), JobState::Running);
        let note = fake.add_job(Some("switchyard says hi"), JobState::Running);
        let mut w = worker(&fake, 1);
        w.round();
        w.round();
        assert!(
            fake.st().cancelled.is_empty(),
            "no command yet: nothing is known to be unwanted"
        );
        w.apply(Msg::Commands(vec![]));
        w.round();
        assert_eq!(fake.st().cancelled, vec![mine.clone()]);
        for id in [user, other, note] {
            assert!(!fake.st().cancelled.contains(&id));
        }
        // A cancelled job lingers as COMPLETING: it is not cancelled (or reported) again.
        fake.set_state(&mine, JobState::Completing);
        w.round();
        w.round();
        assert_eq!(fake.st().cancelled, vec![mine.clone()]);
        let reported = lock(&w.shared)
            .observed
            .iter()
            .filter(|o| matches!(o, Observed::Event { kind, .. } if kind == "slurm_cancelled"))
            .count();
        assert_eq!(reported, 1);
        // A tagged job of this prefix in another partition is another cluster's: left alone.
        let elsewhere = fake.add_job(Some("switchyard:j-gone:1:1"), JobState::Running);
        if let Some(j) = fake.st().jobs.iter_mut().find(|j| j.id == elsewhere) {
            j.partition = "cpu".into();
        }
        w.round();
        assert!(!fake.st().cancelled.contains(&elsewhere));
    }

    /// With a deployment's own tag, another deployment's jobs (another tag) are never touched;
    /// jobs of the earlier release's one tag are taken over by the runs they match and
    /// cancelled once unwanted only if taken over here.
    #[test]
    fn a_deployment_leaves_other_deployments_jobs_alone_and_takes_over_its_legacy_ones() {
        let fake = Fake::default();
        let other = fake.add_job(Some("switchyard-b2b2b2b2b2b2:j-x:1:1"), JobState::Running);
        let legacy_mine = fake.add_job(Some("switchyard:j-run:1:1"), JobState::Running);
        let legacy_unknown = fake.add_job(Some("switchyard:j-theirs:1:1"), JobState::Running);
        let mut w = worker(&fake, 1);
        w.options.tag = "switchyard-a1a1a1a1a1a1".into();
        w.options.legacy_tag = Some("switchyard".into());
        w.apply(Msg::Reset);
        w.apply(Msg::Commands(vec![launch("j-run", 1, 8)]));
        w.round();
        w.round();
        assert!(fake.st().submitted.is_empty(), "{:?}", fake.st().submitted);
        assert_eq!(
            w.wants["j-run"].slurm_id.as_deref(),
            Some(legacy_mine.as_str()),
            "the earlier release's job is taken over"
        );
        assert!(
            fake.st().cancelled.is_empty(),
            "neither another deployment's job nor an unknown legacy one is cancelled: {:?}",
            fake.st().cancelled
        );
        // The run restarts (a new generation): the job it took over is now unwanted.
        w.apply(Msg::Commands(vec![launch("j-run", 2, 8)]));
        w.round();
        assert_eq!(fake.st().cancelled, vec![legacy_mine.clone()]);
        let submitted = fake.st().submitted.clone();
        assert_eq!(submitted.len(), 1, "{submitted:?}");
        assert!(
            submitted[0]
                .comment
                .starts_with("switchyard-a1a1a1a1a1a1:j-run:2:"),
            "{}",
            submitted[0].comment
        );
        for id in [other, legacy_unknown] {
            assert!(!fake.st().cancelled.contains(&id));
        }
    }

    #[test]
    fn completion_is_reported_once_with_the_wanted_generation() {
        let fake = Fake::default();
        let mut w = worker(&fake, 1);
        w.apply(Msg::Commands(vec![launch("j", 4, 8)]));
        w.round();
        let id = fake.active_tagged("switchyard")[0].1.clone();
        fake.set_state(&id, JobState::Running);
        // A job_submit plugin moved it to another partition: still the run's job.
        if let Some(j) = fake.st().jobs.iter_mut().find(|j| j.id == id) {
            j.partition = "rewritten".into();
        }
        w.round();
        assert!(
            observed(&w)
                .iter()
                .all(|o| !matches!(o, Observed::Finished { .. }))
        );
        fake.set_state(&id, JobState::Completed);
        w.round();
        w.round();
        let got: Vec<_> = observed(&w)
            .into_iter()
            .filter(|o| matches!(o, Observed::Finished { .. }))
            .collect();
        assert_eq!(
            got,
            vec![Observed::Finished {
                job: "j".into(),
                generation: 4
            }]
        );
        assert_eq!(fake.st().submitted.len(), 1);
    }

    /// The jobs stopped in a term are kept only until every cluster has been listed (what
    /// they decide, adoption, ends there): a server's months of ended jobs are not.
    #[test]
    fn stopped_jobs_are_kept_only_until_the_first_listing() {
        let fake = Fake::default();
        let mut w = worker(&fake, 1);
        w.apply(Msg::Reset);
        w.apply(Msg::Commands(vec![Command::Stop { job: "a".into() }]));
        assert!(w.stopped.contains("a"));
        w.round();
        assert!(w.stopped.is_empty());
        w.apply(Msg::Commands(
            (0..100)
                .map(|k| Command::Stop {
                    job: format!("j-{k}"),
                })
                .collect(),
        ));
        assert!(w.stopped.is_empty());
    }

    /// A cancellation Slurm keeps refusing is told on the 1st, 2nd, 4th, 8th … refusal and on
    /// a new message, not every round; it is made once Slurm takes it.
    #[test]
    fn a_refused_cancellation_is_told_ever_more_rarely() {
        let fake = Fake::default();
        let mut w = worker(&fake, 1);
        let id = running(&fake, &mut w, launch("j", 4, 8));
        fake.st().refuse_cancel = Some("Access/permission denied".into());
        w.apply(Msg::Commands(vec![Command::Stop { job: "j".into() }]));
        for _ in 0..8 {
            w.round();
        }
        fake.st().refuse_cancel = Some("Socket timed out".into());
        w.round();
        let told: Vec<String> = events(&observed(&w))
            .into_iter()
            .filter(|e| e.1 == "slurm_cancel_failed")
            .map(|e| e.2)
            .collect();
        let denied = "Access/permission denied; retrying";
        assert_eq!(
            told,
            [
                format!("scancel {id} failed: {denied}"),
                format!("scancel {id} failed (2 times in a row): {denied}"),
                format!("scancel {id} failed (4 times in a row): {denied}"),
                format!("scancel {id} failed (8 times in a row): {denied}"),
                format!(
                    "scancel {id} failed (9 times in a row): Socket timed out; \
                     retrying"
                ),
            ]
        );
        fake.st().refuse_cancel = None;
        w.round();
        assert_eq!(fake.st().cancelled, [id]);
    }

    /// A stopped run's job that a job_submit plugin moved to another partition is still the
    /// cluster's to cancel (it was followed only while wanted), through an outage too.
    #[test]
    fn a_stopped_run_in_a_rewritten_partition_is_cancelled() {
        let fake = Fake::default();
        let mut w = worker(&fake, 1);
        let id = running(&fake, &mut w, launch("j", 4, 8));
        if let Some(j) = fake.st().jobs.iter_mut().find(|j| j.id == id) {
            j.partition = "rewritten".into();
        }
        w.round();
        fake.st().down = true;
        w.apply(Msg::Commands(vec![Command::Stop { job: "j".into() }]));
        w.round();
        w.round();
        assert!(fake.st().cancelled.is_empty());
        fake.st().down = false;
        w.round();
        assert_eq!(fake.st().cancelled, vec![id]);
        w.round();
        assert!(w.owed_cancels.is_empty(), "{:?}", w.owed_cancels);
    }

    #[test]
    fn a_refused_submission_is_an_event_and_waits_for_its_back_off() {
        let fake = Fake::default();
        fake.st().refuse = Some("Invalid partition name specified".into());
        let mut w = worker(&fake, 1);
        w.apply(Msg::Commands(vec![launch("j", 1, 8)]));
        w.round();
        w.round();
        let seen = observed(&w);
        // Not in Slurm, so not running: held (no progress counted) with Slurm's refusal.
        assert_eq!(
            held_whys(&seen),
            [(
                "not submitted: Invalid partition name specified".to_owned(),
                false
            )]
        );
        let first = events(&seen);
        let failed: Vec<_> = first
            .iter()
            .filter(|e| e.1 == "slurm_submit_failed")
            .collect();
        assert_eq!(
            failed.len(),
            1,
            "the second round waits for the back-off: {first:?}"
        );
        assert_eq!(failed[0].0, "j", "an event of the job");
        assert!(failed[0].2.contains("Invalid partition name specified"));
        assert!(w.wants.contains_key("j"), "the run is not lost");
        // Retries go on; the same message is reported on refusals 1, 2, 4, 8 …
        w.options.backoff_initial = Duration::ZERO;
        if let Some(w) = w.wants.get_mut("j") {
            w.backoff = Duration::ZERO;
            w.next_try = Instant::now();
        }
        for _ in 0..7 {
            w.round();
        }
        let again = events(&observed(&w))
            .into_iter()
            .filter(|e| e.1 == "slurm_submit_failed")
            .map(|e| e.2)
            .collect::<Vec<_>>();
        assert_eq!(again.len(), 3, "{again:?}");
        assert!(again[0].contains("refusal 2 in a row"), "{again:?}");
        assert!(again[2].contains("refusal 8 in a row"), "{again:?}");
        fake.st().refuse = Some("Invalid account or account/partition combination".into());
        w.round();
        let seen = observed(&w);
        assert_eq!(
            held_whys(&seen),
            [(
                "not submitted: Invalid account or account/partition combination".to_owned(),
                false
            )],
            "held anew only when the reason changes"
        );
        let new = events(&seen);
        assert!(
            new.iter().any(|e| e.2.contains("Invalid account")),
            "a new message is reported at once: {new:?}"
        );
        // Accepted at last, and run: the run begins then.
        fake.st().refuse = None;
        begins_once_submitted_and_running(&fake, &mut w, "j");
    }

    /// The next round submits `job`'s run; once its Slurm job runs, the run begins.
    fn begins_once_submitted_and_running(fake: &Fake, w: &mut Worker, job: &str) {
        w.round();
        let id = fake.active_tagged("switchyard")[0].1.clone();
        fake.set_state(&id, JobState::Running);
        w.round();
        assert!(
            observed(w).iter().any(|o| matches!(
                o,
                Observed::Began { job: j, generation: 1, .. } if j == job
            )),
            "the run begins when its job runs"
        );
    }

    /// A suspended job is said once, and so is its resumption; the run is not held (the
    /// A suspended job is said once, and so is its resumption; a gang's run is paused until its
    /// job runs again (then it began again), a suspended replica is only said, once too.
    #[test]
    fn a_suspended_job_is_said_once_and_so_is_its_resumption() {
        let fake = Fake::default();
        let mut w = worker(&fake, 2);
        let id = running(&fake, &mut w, launch("j", 1, 8));
        running(&fake, &mut w, add_replica("svc"));
        let replica = fake
            .active_tagged("switchyard")
            .into_iter()
            .find(|(t, _)| t.job == "svc#r0")
            .map(|(_, id)| id)
            .expect("the replica's job");
        fake.set_state(&replica, JobState::Running);
        w.round();
        fake.set_state(&id, JobState::Suspended);
        fake.set_state(&replica, JobState::Suspended);
        w.round();
        w.round();
        let seen = observed(&w);
        assert_eq!(held_whys(&seen), []);
        let paused: Vec<_> = seen
            .iter()
            .filter_map(|o| match o {
                Observed::Paused {
                    job,
                    generation,
                    why,
                } => Some((job.as_str(), *generation, why.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(paused, [("j", 1, format!("Slurm job {id} is suspended"))]);
        let said: Vec<_> = events(&seen)
            .into_iter()
            .filter(|e| e.1 == "slurm_suspended")
            .map(|e| e.0)
            .collect();
        assert_eq!(said, ["j", "svc"], "once each");
        fake.set_state(&id, JobState::Running);
        w.round();
        w.round();
        let seen = observed(&w);
        let resumed: Vec<_> = events(&seen)
            .into_iter()
            .filter(|e| e.1 == "slurm_resumed" || e.1 == "slurm_running")
            .map(|e| (e.0, e.1))
            .collect();
        assert_eq!(resumed, [("j".to_owned(), "slurm_resumed".to_owned())]);
        assert_eq!(
            seen.iter()
                .filter(|o| matches!(o, Observed::Began { job, generation: 1, .. } if job == "j"))
                .count(),
            1,
            "{seen:?}"
        );
    }

    /// A waiting job's last reason for waiting is not given as the reason it ended.
    #[test]
    fn a_job_cancelled_while_waiting_does_not_blame_its_wait() {
        let Some(Ending::Work(why)) = ending("99", &JobState::Cancelled, "Resources", None, None)
        else {
            panic!("a cancelled job is the work's ending");
        };
        assert_eq!(
            why,
            "Slurm job 99 ended CANCELLED (cancelled in Slurm, not by Switchyard: scancel or an \
             administrator)"
        );
        for waited in [
            "ReqNodeNotAvail, UnavailableNodes:gpu[1-2]",
            "QOSMaxGRESPerUser",
            "AssocGrpGRES",
            "JobHeldAdmin",
            "PartitionConfig",
        ] {
            let Some(Ending::Work(why)) = ending("99", &JobState::Cancelled, waited, None, None)
            else {
                panic!("a cancelled job is the work's ending");
            };
            assert!(
                why.ends_with("scancel or an administrator)"),
                "{waited}: {why}"
            );
        }
        // Cancelled behind Switchyard's back: its ranks' SIGTERM is not "a rank failed".
        let Some(Ending::Work(why)) = ending(
            "137",
            &JobState::Cancelled,
            "None",
            Some((143, 0)),
            Some("rank 0 failed first: Terminated"),
        ) else {
            panic!("a cancelled job is the work's ending");
        };
        assert!(
            why.starts_with("Slurm job 137 ended CANCELLED (cancelled in Slurm, not by Switchyard")
                && !why.contains("failed first"),
            "{why}"
        );
        // A reason that is not a wait is kept.
        let Some(Ending::Work(why)) = ending("7", &JobState::Failed, "NonZeroExitCode", None, None)
        else {
            panic!("a failed job is the work's ending");
        };
        assert!(why.contains("(reason NonZeroExitCode)"), "{why}");
    }

    #[test]
    fn a_launch_failure_says_what_to_check() {
        let Some(Ending::Work(why)) = ending(
            "844",
            &JobState::Failed,
            "JobLaunchFailure",
            Some((0, 53)),
            None,
        ) else {
            panic!("a failed job is the work's ending");
        };
        assert!(
            why.starts_with(
                "Slurm job 844 ended FAILED killed by signal 53 (reason JobLaunchFailure); \
                 Slurm could not launch it: can the job's user"
            ),
            "{why}"
        );
    }

    /// The `why` and `interrupted` of each `Held` in `seen`.
    fn held_whys(seen: &[Observed]) -> Vec<(String, bool)> {
        seen.iter()
            .filter_map(|o| match o {
                Observed::Held {
                    why, interrupted, ..
                } => Some((why.clone(), *interrupted)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_unreachable_controller_is_reported_once_and_nothing_is_submitted_blind() {
        let fake = Fake::default();
        fake.st().down = true;
        let mut w = worker(&fake, 1);
        w.apply(Msg::Commands(vec![launch("j", 1, 8)]));
        for _ in 0..3 {
            w.round();
        }
        let seen = observed(&w);
        let held = held_whys(&seen);
        assert_eq!(
            held.len(),
            1,
            "held while nothing can be submitted: {held:?}"
        );
        let events = events(&seen);
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].0, "j");
        assert_eq!(events[0].1, "slurm_unreachable");
        assert!(events[0].2.contains("did not answer"), "{}", events[0].2);
        // A run that arrives while the outage lasts is told too, once.
        w.apply(Msg::Commands(vec![launch("j", 1, 8), launch("k", 1, 8)]));
        for _ in 0..3 {
            w.round();
        }
        let later = self::events(&observed(&w));
        assert_eq!(later.len(), 1, "{later:?}");
        assert_eq!(
            (later[0].0.as_str(), later[0].1.as_str()),
            ("k", "slurm_unreachable")
        );
        assert!(fake.st().submitted.is_empty());
        fake.st().down = false;
        w.round();
        assert_eq!(fake.st().submitted.len(), 2, "submitted once Slurm answers");
    }

    /// A run already in Slurm is told once per outage that its state is unknown, and told
    /// when Slurm answers again.
    #[test]
    fn a_submitted_run_is_told_of_an_outage_and_of_its_end() {
        let fake = Fake::default();
        let mut w = worker(&fake, 1);
        let id = running(&fake, &mut w, launch("j", 1, 8));
        fake.st().down = true;
        for _ in 0..3 {
            w.round();
        }
        fake.st().down = false;
        w.round();
        w.round();
        let seen = events(&observed(&w));
        let outage: Vec<_> = seen
            .iter()
            .filter(|e| e.0 == "j")
            .map(|e| (e.1.as_str(), e.2.as_str()))
            .collect();
        assert_eq!(outage.len(), 2, "{outage:?}");
        assert_eq!(outage[0].0, "slurm_unreachable");
        assert!(
            outage[0]
                .1
                .contains(&format!("Slurm job {id}'s state is unknown")),
            "{outage:?}"
        );
        assert_eq!(outage[1].0, "slurm_reachable");
    }

    /// A run started again while the controller does not answer (the same key, a new
    /// generation) is not in Slurm: it is held and told, though its earlier run was told of
    /// the outage already.
    #[test]
    fn a_run_relaunched_in_an_outage_is_held_and_told() {
        let fake = Fake::default();
        let mut w = worker(&fake, 1);
        running(&fake, &mut w, launch("j", 1, 8));
        fake.st().down = true;
        w.round();
        w.apply(Msg::Commands(vec![launch("j", 2, 8)]));
        w.round();
        w.round();
        let seen = observed(&w);
        let held = held_whys(&seen);
        assert_eq!(held.len(), 1, "{held:?}");
        assert!(held[0].0.starts_with("not submitted: "), "{held:?}");
        let told: Vec<_> = events(&seen)
            .into_iter()
            .filter(|e| e.1 == "slurm_unreachable")
            .collect();
        assert_eq!(told.len(), 2, "the first run's and the new run's: {told:?}");
    }

    /// A run that was running when this leader took over is not held while the controller
    /// does not answer: its Slurm job may be running still.
    #[test]
    fn a_recovered_run_is_not_held_while_the_listing_fails() {
        let fake = Fake::default();
        fake.st().down = true;
        let mut w = worker(&fake, 1);
        w.apply(Msg::Reset);
        let mut run = launch("j", 1, 8);
        if let Command::Launch { recovered, .. } = &mut run {
            *recovered = true;
        }
        w.apply(Msg::Commands(vec![run]));
        for _ in 0..3 {
            w.round();
        }
        let seen = observed(&w);
        assert_eq!(held_whys(&seen), []);
        assert!(
            events(&seen).iter().any(|e| e.1 == "slurm_unreachable"),
            "said, though"
        );
    }

    /// A run launched once the listing was seen, while the controller does not answer, is not
    /// in Slurm: held (no progress counted) until a job of it runs.
    #[test]
    fn a_run_that_cannot_be_submitted_is_held_until_its_job_runs() {
        let fake = Fake::default();
        let mut w = worker(&fake, 1);
        // The term's first pass had nothing for Slurm, and the listing was seen.
        w.apply(Msg::Commands(Vec::new()));
        w.round();
        fake.st().down = true;
        w.apply(Msg::Commands(vec![launch("j", 1, 8)]));
        for _ in 0..3 {
            w.round();
        }
        let held = held_whys(&observed(&w));
        assert_eq!(held.len(), 1, "{held:?}");
        assert!(held[0].0.starts_with("not submitted: "), "{held:?}");
        assert!(held[0].0.contains("did not answer"), "{held:?}");
        assert!(!held[0].1, "nothing had begun");
        fake.st().down = false;
        begins_once_submitted_and_running(&fake, &mut w, "j");
    }

    #[test]
    fn after_a_reset_the_first_launch_adopts_and_a_completed_run_is_finished() {
        let fake = Fake::default();
        let running = fake.add_job(Some("switchyard:j-run:3:1"), JobState::Running);
        fake.add_job(Some("switchyard:j-done:1:2"), JobState::Completed);
        let mut w = worker(&fake, 1);
        w.apply(Msg::Reset);
        w.apply(Msg::Commands(vec![
            launch("j-run", 1, 8),
            launch("j-done", 1, 8),
        ]));
        w.round();
        assert!(fake.st().submitted.is_empty(), "{:?}", fake.st().submitted);
        assert!(fake.st().cancelled.is_empty());
        assert_eq!(w.wants["j-run"].slurm_id.as_deref(), Some(running.as_str()));
        assert!(observed(&w).contains(&Observed::Finished {
            job: "j-done".into(),
            generation: 1
        }));
    }

    /// After a restart, a job of a run wanted here that Slurm lists in another partition (a
    /// job_submit plugin rewrote it, or a partition list was given) is taken over, not
    /// submitted again beside it; a tagged job of a run not wanted here in another partition
    /// is left alone (another deployment's, or another cluster's).
    #[test]
    fn after_a_reset_a_job_in_a_rewritten_partition_is_taken_over() {
        let fake = Fake::default();
        let running = fake.add_job(Some("switchyard:j-run:3:1"), JobState::Running);
        let stranger = fake.add_job(Some("switchyard:j-else:3:1"), JobState::Running);
        for job in &mut fake.st().jobs {
            job.partition = "gpu-rewritten".into();
        }
        let mut w = worker(&fake, 1);
        w.apply(Msg::Reset);
        w.apply(Msg::Commands(vec![launch("j-run", 1, 8)]));
        w.round();
        w.round();
        assert!(fake.st().submitted.is_empty(), "{:?}", fake.st().submitted);
        assert!(
            !fake.st().cancelled.contains(&stranger),
            "{:?}",
            fake.st().cancelled
        );
        assert_eq!(w.wants["j-run"].slurm_id.as_deref(), Some(running.as_str()));
    }

    /// After a reset, a run's job that is still completing (an earlier leader cancelled it,
    /// or it is finishing) is neither taken over nor submitted beside until Slurm says how it
    /// ended: cancelled, the run is submitted anew (not failed as "cancelled in Slurm");
    /// completed, the run finished.
    #[test]
    fn after_a_reset_a_completing_job_is_waited_for() {
        for (end, submitted) in [(JobState::Cancelled, 1), (JobState::Completed, 0)] {
            let fake = Fake::default();
            let old = fake.add_job(Some("switchyard:j-run:1:1:a8"), JobState::Completing);
            let mut w = worker(&fake, 1);
            w.options.poll_interval = Duration::ZERO;
            w.apply(Msg::Reset);
            w.apply(Msg::Commands(vec![launch("j-run", 2, 8)]));
            w.round();
            w.round();
            assert!(fake.st().submitted.is_empty(), "{:?}", fake.st().submitted);
            assert_eq!(w.wants["j-run"].slurm_id, None);
            fake.set_state(&old, end.clone());
            w.round();
            w.round();
            assert_eq!(fake.st().submitted.len(), submitted, "{end:?}");
            let seen = observed(&w);
            assert!(
                !seen.iter().any(|o| matches!(o, Observed::Failed { .. })),
                "{end:?}: {seen:?}"
            );
            assert_eq!(
                seen.iter().any(|o| matches!(o, Observed::Finished { .. })),
                end == JobState::Completed,
                "{end:?}: {seen:?}"
            );
        }
    }

    /// A job taken over after a reset keeps its own generation and attempt when Slurm loses it
    /// and it is submitted again: its tag, `SWITCHYARD_GENERATION` and log paths go on.
    #[test]
    fn a_taken_over_job_resubmitted_keeps_its_generation() {
        let fake = Fake::default();
        let old = fake.add_job(Some("switchyard:j-run:3:1:a8"), JobState::Running);
        let mut w = worker(&fake, 1);
        w.options.backoff_initial = Duration::ZERO;
        w.apply(Msg::Reset);
        w.apply(Msg::Commands(vec![launch("j-run", 5, 8)]));
        w.round();
        assert_eq!(w.wants["j-run"].slurm_id.as_deref(), Some(old.as_str()));
        fake.set_state(&old, JobState::NodeFail);
        w.round();
        let sub = fake
            .st()
            .submitted
            .last()
            .cloned()
            .expect("submitted again");
        assert_eq!(sub.comment, "switchyard:j-run:3:1.1:a8");
        assert!(
            sub.script().contains("export SWITCHYARD_GENERATION='3'"),
            "{}",
            sub.script()
        );
        assert!(
            sub.stdout.ends_with("/j-run/g3-a1-r1.out"),
            "{}",
            sub.stdout
        );
    }

    /// A suspended job that Slurm requeues, or loses to a node failure, interrupts its run
    /// (its work had begun): held again with `interrupted`, and not "resumed" when the next
    /// job runs. One seen queued, then suspended (it ran between two polls) began, then paused.
    #[test]
    fn a_suspended_job_requeued_or_lost_interrupts_its_run() {
        for lost in [false, true] {
            let fake = Fake::default();
            let mut w = worker(&fake, 1);
            w.options.backoff_initial = Duration::ZERO;
            let id = running(&fake, &mut w, launch("j", 1, 8));
            fake.set_state(&id, JobState::Suspended);
            w.round();
            observed(&w);
            if lost {
                fake.set_state(&id, JobState::NodeFail);
            } else {
                fake.set_state(&id, JobState::Pending);
            }
            w.round();
            w.round();
            let seen = observed(&w);
            let held = held_whys(&seen);
            // (Reasons told while it stays held are not new interruptions.)
            assert!(held.first().is_some_and(|h| h.1), "lost {lost}: {seen:?}");
            let next = fake
                .active_tagged("switchyard")
                .last()
                .map(|(_, id)| id.clone())
                .expect("a job");
            fake.set_state(&next, JobState::Running);
            w.round();
            let seen = observed(&w);
            let kinds: Vec<String> = events(&seen).into_iter().map(|e| e.1).collect();
            assert!(!kinds.contains(&"slurm_resumed".to_owned()), "{kinds:?}");
            assert!(kinds.contains(&"slurm_running".to_owned()), "{kinds:?}");
            assert!(
                seen.iter().any(|o| matches!(o, Observed::Began { .. })),
                "{seen:?}"
            );
        }

        let fake = Fake::default();
        let mut w = worker(&fake, 1);
        w.apply(Msg::Commands(vec![launch("j", 1, 8)]));
        w.round();
        let id = fake.active_tagged("switchyard")[0].1.clone();
        fake.set_state(&id, JobState::Pending);
        w.round();
        assert_eq!(held_whys(&observed(&w)).len(), 1, "held while queued");
        fake.set_state(&id, JobState::Suspended);
        w.round();
        let seen = observed(&w);
        let order: Vec<&str> = seen
            .iter()
            .filter_map(|o| match o {
                Observed::Began { .. } => Some("began"),
                Observed::Paused { .. } => Some("paused"),
                _ => None,
            })
            .collect();
        assert_eq!(order, ["began", "paused"], "{seen:?}");
    }

    /// A suspended replica whose job ends starts afresh: its next job is not "resumed".
    #[test]
    fn a_suspended_replica_that_ends_starts_afresh() {
        let fake = Fake::default();
        let mut w = worker(&fake, 1);
        w.options.backoff_initial = Duration::ZERO;
        let id = running(&fake, &mut w, add_replica("svc"));
        fake.set_state(&id, JobState::Running);
        w.round();
        fake.set_state(&id, JobState::Suspended);
        w.round();
        fake.set_state(&id, JobState::NodeFail);
        w.round();
        w.round();
        observed(&w);
        let next = fake
            .active_tagged("switchyard")
            .into_iter()
            .map(|(_, id)| id)
            .find(|n| *n != id)
            .expect("a new job for the replica");
        fake.set_state(&next, JobState::Running);
        w.round();
        let kinds: Vec<String> = events(&observed(&w)).into_iter().map(|e| e.1).collect();
        assert!(!kinds.contains(&"slurm_resumed".to_owned()), "{kinds:?}");
    }

    /// A job taken over while suspended pauses the run, and its resumption is said as such,
    /// not as a first "is running".
    #[test]
    fn a_job_taken_over_suspended_is_paused_and_resumed() {
        let fake = Fake::default();
        let old = fake.add_job(Some("switchyard:j-run:1:1:a8"), JobState::Suspended);
        let mut w = worker(&fake, 1);
        w.apply(Msg::Reset);
        w.apply(Msg::Commands(vec![launch("j-run", 1, 8)]));
        w.round();
        w.round();
        let seen = observed(&w);
        assert!(
            seen.iter()
                .any(|o| matches!(o, Observed::Paused { job, .. } if job == "j-run")),
            "{seen:?}"
        );
        fake.set_state(&old, JobState::Running);
        w.round();
        let seen = observed(&w);
        let kinds: Vec<String> = events(&seen).into_iter().map(|e| e.1).collect();
        assert_eq!(kinds, ["slurm_resumed"], "{seen:?}");
        assert!(
            seen.iter()
                .any(|o| matches!(o, Observed::Began { job, .. } if job == "j-run")),
            "{seen:?}"
        );
    }

    /// A run that was running when the leader changed and whose Slurm job failed while no
    /// leader watched reports that failure (its retry is spent), instead of being submitted
    /// again as if nothing had happened; a run that was not running does not take an old
    /// failure for its own.
    #[test]
    fn a_recovered_run_whose_job_failed_meanwhile_reports_the_failure() {
        let fake = Fake::default();
        let failed = fake.add_job(Some("switchyard:j-run:1:3"), JobState::Failed);
        // j-older: attempt 2 failed and was reported; attempt 3, the newest, still runs.
        fake.add_job(Some("switchyard:j-older:1:2"), JobState::Failed);
        let live = fake.add_job(Some("switchyard:j-older:1:3"), JobState::Running);
        // j-fresh failed, and its launch is not a recovery (it was pending at the takeover).
        fake.add_job(Some("switchyard:j-fresh:1:1"), JobState::Failed);
        let mut w = worker(&fake, 2);
        w.apply(Msg::Reset);
        let recovered = |job: &str, attempt: u32| match launch(job, 1, 8) {
            Command::Launch {
                job,
                generation,
                cluster,
                accelerators,
                expected_end_ms,
                nodes,
                command,
                ..
            } => Command::Launch {
                job,
                generation,
                attempt,
                cluster,
                accelerators,
                expected_end_ms,
                nodes,
                command,
                recovered: true,
                ran_before: None,
            },
            other => other,
        };
        // Two recoveries since j-run's attempt 3 was launched: the launch says attempt 5.
        w.apply(Msg::Commands(vec![
            recovered("j-run", 5),
            recovered("j-older", 5),
            launch("j-fresh", 2, 8),
        ]));
        w.round();
        let obs = observed(&w);
        assert!(
            obs.iter()
                .any(|o| matches!(o, Observed::Failed { job, .. } if job == "j-run")),
            "{obs:?}"
        );
        // The runs taken over go on as the attempts their jobs are (before any end is told).
        let mut continued: Vec<(&str, u32, u32)> = obs
            .iter()
            .filter_map(|o| match o {
                Observed::Continued {
                    job,
                    generation,
                    attempt,
                } => Some((job.as_str(), *generation, *attempt)),
                _ => None,
            })
            .collect();
        continued.sort_unstable();
        assert_eq!(continued, [("j-older", 1, 3), ("j-run", 1, 3)], "{obs:?}");
        let first = |want: fn(&Observed) -> bool| obs.iter().position(want);
        assert!(
            first(|o| matches!(o, Observed::Continued { job, .. } if job == "j-run"))
                < first(|o| matches!(o, Observed::Failed { job, .. } if job == "j-run")),
            "{obs:?}"
        );
        assert_eq!(w.wants["j-older"].attempt, 3);
        assert!(
            !obs.iter()
                .any(|o| matches!(o, Observed::Failed { job, .. } if job == "j-older")),
            "{obs:?}"
        );
        assert!(
            !obs.iter()
                .any(|o| matches!(o, Observed::Failed { job, .. } if job == "j-fresh")),
            "{obs:?}"
        );
        assert_eq!(
            w.wants["j-older"].slurm_id.as_deref(),
            Some(live.as_str()),
            "the live newest job is taken over"
        );
        let submitted: Vec<String> = fake
            .st()
            .submitted
            .iter()
            .map(|s| s.comment.clone())
            .collect();
        assert_eq!(submitted.len(), 1, "{submitted:?}");
        assert!(
            submitted[0].starts_with("switchyard:j-fresh:2:"),
            "{submitted:?} (the failed job {failed} is not run again)"
        );
    }

    /// After a reset, a live job of the run's key but of another size (the new leader placed
    /// the run anew at a different size) is not taken over: it is cancelled, and the run is
    /// submitted at its size. A job whose tag predates the size is taken over as before, and
    /// one that completed at another size finishes the run.
    #[test]
    fn after_a_reset_a_job_of_another_size_is_not_taken_over() {
        let fake = Fake::default();
        fake.st().nodes = (1..=4)
            .map(|i| node(&format!("gpu{i}"), "idle", 8))
            .collect();
        let resized = fake.add_job(Some("switchyard:j-resized:3:1:a8"), JobState::Running);
        let same = fake.add_job(Some("switchyard:j-same:3:1:a16"), JobState::Running);
        let older = fake.add_job(Some("switchyard:j-older:3:1"), JobState::Running);
        fake.add_job(Some("switchyard:j-done:3:1:a8"), JobState::Completed);
        let mut w = worker(&fake, 4);
        w.apply(Msg::Reset);
        w.apply(Msg::Commands(vec![
            launch("j-resized", 4, 16),
            launch("j-same", 4, 16),
            launch("j-older", 4, 8),
            launch("j-done", 4, 16),
        ]));
        w.round();
        w.round();
        // The work that completed at another size is done all the same.
        assert!(observed(&w).contains(&Observed::Finished {
            job: "j-done".into(),
            generation: 4
        }));
        assert_eq!(w.wants["j-same"].slurm_id.as_deref(), Some(same.as_str()));
        assert_eq!(w.wants["j-older"].slurm_id.as_deref(), Some(older.as_str()));
        let st = fake.st();
        assert!(st.cancelled.contains(&resized), "{:?}", st.cancelled);
        assert_eq!(st.submitted.len(), 1, "{:?}", st.submitted);
        assert_eq!(st.submitted[0].comment, "switchyard:j-resized:4:4:a16");
        assert_eq!(st.submitted[0].nodes, 2);
    }

    #[test]
    fn a_later_launch_of_the_same_term_never_adopts() {
        let fake = Fake::default();
        let mut w = worker(&fake, 1);
        w.round(); // before the leader speaks: adoption stays possible
        w.apply(Msg::Commands(vec![launch("j", 1, 8)]));
        w.round();
        let first = fake.active_tagged("switchyard")[0].1.clone();
        fake.set_state(&first, JobState::Completed);
        w.round();
        assert!(observed(&w).contains(&Observed::Finished {
            job: "j".into(),
            generation: 1
        }));
        // The same job again (a new run of this term): submitted, not the completed one.
        w.apply(Msg::Commands(vec![launch("j", 2, 8)]));
        w.round();
        w.round();
        assert_eq!(fake.st().submitted.len(), 2);
        assert!(
            !observed(&w)
                .iter()
                .any(|o| matches!(o, Observed::Finished { .. }))
        );
    }

    #[test]
    /// A node Slurm lists as not responding for a moment while it keeps it up (just resumed,
    /// a late heartbeat) is not failed: only a second listing in a row so fails it, and a
    /// node Slurm has down fails at once.
    fn a_node_not_responding_for_one_listing_is_not_failed() {
        let fake = Fake::default();
        fake.st().nodes = vec![node("n1", "mixed", 0), node("n2", "idle", 0)];
        let mut w = worker(&fake, 2);
        w.round();
        let _ = observed(&w);
        let failed = |got: &[Observed]| {
            got.iter()
                .filter(|o| matches!(o, Observed::NodeFailed { .. }))
                .count()
        };
        // One listing of `mixed*`: nothing; back to `mixed`: nothing either.
        fake.st().nodes = vec![node("n1", "mixed*", 0), node("n2", "idle", 0)];
        w.next_capacity = Instant::now();
        w.round();
        assert_eq!(failed(&observed(&w)), 0);
        fake.st().nodes = vec![node("n1", "mixed", 0), node("n2", "idle", 0)];
        w.next_capacity = Instant::now();
        w.round();
        assert_eq!(observed(&w), vec![]);
        // Two in a row: failed, on the second.
        for (round, expected) in [(1, 0), (2, 1)] {
            fake.st().nodes = vec![node("n1", "mixed*", 0), node("n2", "idle", 0)];
            w.next_capacity = Instant::now();
            w.round();
            assert_eq!(failed(&observed(&w)), expected, "listing {round}");
        }
        // Down (Slurm's own verdict): at once.
        fake.st().nodes = vec![node("n1", "mixed*", 0), node("n2", "down*", 0)];
        w.next_capacity = Instant::now();
        w.round();
        assert_eq!(failed(&observed(&w)), 1);
    }

    #[test]
    fn node_states_become_failures_and_repairs() {
        let fake = Fake::default();
        fake.st().nodes = vec![node("n10", "idle", 0), node("n2", "down*", 0)];
        let mut w = worker(&fake, 3);
        w.round();
        // n2 sorts before n10: n2 is node 0; the fleet's third node does not exist in Slurm.
        let mut got = observed(&w);
        got.sort_by_key(|o| format!("{o:?}"));
        assert_eq!(
            got,
            vec![
                Observed::NodeFailed {
                    cluster: 2,
                    node: 0
                },
                Observed::NodeFailed {
                    cluster: 2,
                    node: 2
                },
                Observed::NodeNamed {
                    cluster: 2,
                    node: 0,
                    host: "n2".into()
                },
                Observed::NodeNamed {
                    cluster: 2,
                    node: 1,
                    host: "n10".into()
                },
            ]
        );
        fake.st().nodes = vec![node("n10", "drained", 0), node("n2", "mixed", 0)];
        w.next_capacity = Instant::now();
        w.round();
        let mut got = observed(&w);
        got.sort_by_key(|o| format!("{o:?}"));
        assert_eq!(
            got,
            vec![
                Observed::NodeDrained {
                    cluster: 2,
                    node: 1
                },
                Observed::NodeRepaired {
                    cluster: 2,
                    node: 0
                },
            ]
        );
        // Drained, then down: it fails. Down, then drained (back but held out of service):
        // nothing, it is still down to the scheduler. Then both come back.
        let states = [
            (
                "draining",
                "MIXED+DRAIN",
                vec![Observed::NodeDrained {
                    cluster: 2,
                    node: 0,
                }],
            ),
            (
                "down+drain",
                "MIXED+DRAIN",
                vec![Observed::NodeFailed {
                    cluster: 2,
                    node: 1,
                }],
            ),
            (
                "idle+drain",
                "idle",
                vec![Observed::NodeRepaired {
                    cluster: 2,
                    node: 0,
                }],
            ),
            ("IDLE+DRAIN", "idle", vec![]),
            (
                "idle",
                "idle",
                vec![Observed::NodeRepaired {
                    cluster: 2,
                    node: 1,
                }],
            ),
        ];
        for (n10, n2, want) in states {
            fake.st().nodes = vec![node("n10", n10, 0), node("n2", n2, 0)];
            w.next_capacity = Instant::now();
            w.round();
            assert_eq!(observed(&w), want, "n10 {n10}, n2 {n2}");
        }
        // A drained node not responding for a listing stays drained (not repaired); two
        // listings so, it has failed.
        let states = [
            (
                "idle+drain",
                vec![Observed::NodeDrained {
                    cluster: 2,
                    node: 0,
                }],
            ),
            ("idle+drain+not_responding", vec![]),
            (
                "idle+drain+not_responding",
                vec![Observed::NodeFailed {
                    cluster: 2,
                    node: 0,
                }],
            ),
            (
                "idle",
                vec![Observed::NodeRepaired {
                    cluster: 2,
                    node: 0,
                }],
            ),
        ];
        for (n2, want) in states {
            fake.st().nodes = vec![node("n10", "idle", 0), node("n2", n2, 0)];
            w.next_capacity = Instant::now();
            w.round();
            assert_eq!(observed(&w), want, "n2 {n2}");
        }
        // A node Slurm stops listing (taken out of the partition) is not there to be used;
        // listed again, it is back. One that failed is not repaired by leaving the listing.
        fake.st().nodes = vec![node("n10", "idle", 0)];
        w.next_capacity = Instant::now();
        w.round();
        assert_eq!(
            observed(&w),
            [Observed::NodeFailed {
                cluster: 2,
                node: 0
            }]
        );
        fake.st().nodes = vec![node("n10", "down", 0)];
        w.next_capacity = Instant::now();
        w.round();
        let _ = observed(&w);
        fake.st().nodes = vec![node("n2", "idle", 0)];
        w.next_capacity = Instant::now();
        w.round();
        assert_eq!(
            observed(&w),
            [Observed::NodeRepaired {
                cluster: 2,
                node: 0
            }],
            "n10 left the listing while down: still failed; n2 is back"
        );
    }

    /// A replica of 8 accelerators of `job` on cluster `c`, and one taken down.
    fn add_replica(job: &str) -> Command {
        Command::AddReplica {
            job: job.into(),
            cluster: "c".into(),
            accelerators: 8,
            nodes: Vec::new(),
            command: None,
        }
    }

    fn remove_replica(job: &str) -> Command {
        Command::RemoveReplica {
            job: job.into(),
            cluster: "c".into(),
            nodes: Vec::new(),
        }
    }

    #[test]
    fn replicas_are_jobs_of_their_own() {
        let fake = Fake::default();
        let mut w = worker(&fake, 4);
        let add = add_replica("svc");
        w.apply(Msg::Commands(vec![add.clone(), add]));
        w.round();
        assert_eq!(fake.active_tagged("switchyard").len(), 2);
        w.apply(Msg::Commands(vec![remove_replica("svc")]));
        w.round();
        assert_eq!(fake.active_tagged("switchyard").len(), 1);
        w.apply(Msg::Commands(vec![Command::Stop { job: "svc".into() }]));
        w.round();
        assert!(fake.active_tagged("switchyard").is_empty());
    }

    /// After a reset the service's replicas are numbered afresh: each takes over a live job of
    /// the service, whatever replica number its tag carries, so a gap left by a replica
    /// removed earlier costs no restart.
    #[test]
    fn after_a_reset_replicas_take_over_the_services_jobs_whatever_their_numbers() {
        let fake = Fake::default();
        let mut w = worker(&fake, 4);
        let add = add_replica("svc");
        w.apply(Msg::Commands(vec![add.clone(), add.clone(), add.clone()]));
        w.round();
        w.apply(Msg::Commands(vec![remove_replica("svc")]));
        w.round();
        w.apply(Msg::Commands(vec![add.clone()]));
        w.round();
        let live = fake.active_tagged("switchyard");
        let mut keys: Vec<&str> = live.iter().map(|(t, _)| t.job.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["svc#r0", "svc#r1", "svc#r3"]);
        for (_, id) in &live {
            fake.set_state(id, JobState::Running);
        }
        let submitted = fake.st().submitted.len();
        let cancelled = fake.st().cancelled.len();
        w.apply(Msg::Reset);
        w.apply(Msg::Commands(vec![add.clone(), add.clone(), add]));
        w.round();
        w.round();
        assert_eq!(
            fake.st().submitted.len(),
            submitted,
            "nothing submitted again"
        );
        assert_eq!(fake.st().cancelled.len(), cancelled, "nothing cancelled");
        let adopted = observed(&w)
            .iter()
            .filter(|o| matches!(o, Observed::Event { kind, .. } if kind == "slurm_adopted"))
            .count();
        assert_eq!(adopted, 3);
        assert_eq!(fake.active_tagged("switchyard").len(), 3);
    }

    fn launch_cmd(job: &str, generation: u32, attempt: u32, argv: &[&str]) -> Command {
        let mut env = std::collections::BTreeMap::new();
        env.insert("NCCL_DEBUG".to_owned(), "INFO".to_owned());
        env.insert("SWITCHYARD_ATTEMPT".to_owned(), "999".to_owned());
        Command::Launch {
            job: job.into(),
            generation,
            cluster: "c".into(),
            accelerators: 16,
            expected_end_ms: now_ms() + 3_600_000,
            attempt,
            nodes: Vec::new(),
            recovered: false,
            ran_before: None,
            command: Some(Arc::new(JobCommand {
                argv: argv.iter().map(|a| (*a).to_owned()).collect(),
                env,
                working_dir: Some("/shared/run".into()),
            })),
        }
    }

    /// A service replica's command runs once per node with all of the replica's accelerators
    /// there (no GPU per task), each replica on its own port; without GPUs, its one task
    /// stands for its accelerators in CPUs.
    #[test]
    fn a_replicas_command_runs_once_per_node_on_a_port_of_its_own() {
        let replica = |job: &str| Command::AddReplica {
            job: job.into(),
            cluster: "c".into(),
            accelerators: 8,
            nodes: Vec::new(),
            command: Some(Arc::new(JobCommand {
                argv: vec!["serve".into()],
                env: Default::default(),
                working_dir: None,
            })),
        };
        for gpus in [8, 0] {
            let fake = Fake::default();
            fake.st().nodes = (1..=2)
                .map(|i| node(&format!("gpu{i}"), "idle", gpus))
                .collect();
            let mut w = worker(&fake, 2);
            w.apply(Msg::Commands(vec![replica("svc"), replica("svc")]));
            w.round();
            let subs = fake.st().submitted.clone();
            assert_eq!(subs.len(), 2, "{subs:?}");
            let port = |sub: &Submission| {
                let script = sub.script();
                script
                    .lines()
                    .find_map(|l| l.strip_prefix("export MASTER_PORT="))
                    .map(str::to_owned)
                    .unwrap_or_else(|| panic!("no MASTER_PORT in {script}"))
            };
            assert_ne!(port(&subs[0]), port(&subs[1]));
            for sub in &subs {
                assert_eq!((sub.nodes, sub.ntasks_per_node), (1, 1), "{sub:?}");
                if gpus > 0 {
                    assert_eq!((sub.gpus_per_node, sub.cpus_per_task), (Some(8), None));
                    assert!(!sub.script().contains("CUDA_VISIBLE_DEVICES=$d"));
                } else {
                    assert_eq!((sub.gpus_per_node, sub.cpus_per_task), (None, Some(8)));
                }
            }
        }
    }

    #[test]
    fn the_jobs_command_runs_once_per_task_with_the_servers_attempt() {
        let fake = Fake::default();
        fake.st().nodes = (1..=2)
            .map(|i| node(&format!("gpu{i}"), "idle", 8))
            .collect();
        let mut w = worker(&fake, 2);
        w.apply(Msg::Commands(vec![launch_cmd(
            "j",
            3,
            5,
            &["python3", "train.py", "--tag", "a b"],
        )]));
        w.round();
        let sub = fake.st().submitted[0].clone();
        assert_eq!(
            sub.comment, "switchyard:j:3:5:a16",
            "the tag carries the attempt"
        );
        assert!(sub.stdout.ends_with("/j/g3-a5.out"), "{}", sub.stdout);
        assert_eq!((sub.nodes, sub.ntasks_per_node), (2, 8));
        assert_eq!(sub.time_limit_min, None, "real work: the partition's limit");
        let script = sub.script();
        // The job's own variables first, Switchyard's after (they win); no override of ours.
        let nccl = script.find("export NCCL_DEBUG='INFO'");
        let attempt = script.find("export SWITCHYARD_ATTEMPT='5'");
        assert!(
            nccl.is_some() && attempt.is_some() && nccl < attempt,
            "{script}"
        );
        assert!(!script.contains("999"), "{script}");
        let port = script::master_port("j", 5);
        assert!(
            script.contains(&format!("export MASTER_PORT={port}\n")),
            "{script}"
        );
        assert!(
            script
                .trim_end()
                .ends_with("switchyard-rank 'python3' 'train.py' '--tag' 'a b'"),
            "{script}"
        );
        assert!(
            script.contains(
                "exec srun --label --kill-on-bad-exit=1 sh -c 'cd -- '\\''/shared/run'\\''"
            )
        );
        assert!(
            !script.contains("srun ./train.sh"),
            "the job's command replaces the cluster's"
        );
        assert!(
            script.contains("CUDA_VISIBLE_DEVICES"),
            "GPU nodes: one GPU per rank"
        );
    }

    /// Runs `j` (generation 1) to a Slurm job and returns its id.
    fn running(fake: &Fake, w: &mut Worker, cmd: Command) -> String {
        w.apply(Msg::Commands(vec![cmd]));
        w.round();
        let id = fake.active_tagged("switchyard")[0].1.clone();
        fake.set_state(&id, JobState::Running);
        w.round();
        observed(w);
        id
    }

    #[test]
    fn a_failed_job_is_a_failed_run_with_slurms_state_and_exit_code() {
        for (state, exit, want) in [
            (JobState::Failed, (3, 0), "ended FAILED with exit code 3"),
            (
                JobState::Timeout,
                (0, 15),
                "ended TIMEOUT killed by signal 15",
            ),
            (
                JobState::OutOfMemory,
                (0, 9),
                "ended OUT_OF_MEMORY killed by signal 9",
            ),
            (JobState::Cancelled, (0, 0), "ended CANCELLED"),
        ] {
            let fake = Fake::default();
            let mut w = worker(&fake, 2);
            let id = running(&fake, &mut w, launch_cmd("j", 1, 2, &["./x"]));
            fake.set_state(&id, state.clone());
            fake.st().exit.insert(id.clone(), exit);
            w.round();
            w.round();
            let got: Vec<_> = observed(&w)
                .into_iter()
                .filter(|o| matches!(o, Observed::Failed { .. } | Observed::Finished { .. }))
                .collect();
            let [
                Observed::Failed {
                    job,
                    generation,
                    reason,
                },
            ] = got.as_slice()
            else {
                panic!("{state:?}: {got:?}");
            };
            assert_eq!((job.as_str(), *generation), ("j", 1));
            assert!(
                reason.contains(&format!("Slurm job {id} {want}")),
                "{reason}"
            );
            assert_eq!(
                fake.st().submitted.len(),
                1,
                "the server decides the restart"
            );
            assert!(!w.wants.contains_key("j"));
        }
    }

    #[test]
    fn node_failures_are_resubmitted_then_reported_failed() {
        let fake = Fake::default();
        let mut w = worker(&fake, 2);
        w.options.backoff_initial = Duration::ZERO;
        let mut id = running(&fake, &mut w, launch_cmd("j", 2, 4, &["./x"]));
        for (n, state) in [JobState::NodeFail, JobState::BootFail]
            .into_iter()
            .enumerate()
        {
            fake.set_state(&id, state);
            w.round();
            let obs = observed(&w);
            let ev = events(&obs);
            assert!(ev.iter().any(|e| e.1 == "slurm_resubmitted"), "{ev:?}");
            // The run's work stopped with the job (the first had run; the second, submitted
            // again, never began): held until a job of it runs.
            let held: Vec<bool> = obs
                .iter()
                .filter_map(|o| match o {
                    Observed::Held {
                        generation: 2,
                        interrupted,
                        why,
                        ..
                    } if why.ends_with("submitted again") => Some(*interrupted),
                    _ => None,
                })
                .collect();
            assert_eq!(held, [n == 0], "{obs:?}");
            let live = fake.active_tagged("switchyard");
            assert_eq!(live.len(), 1, "{live:?}");
            assert_eq!(live[0].0.resubmit, n as u32 + 1);
            assert_eq!((live[0].0.generation, live[0].0.attempt), (2, 4));
            id = live[0].1.clone();
            let sub = fake.st().submitted.last().cloned().unwrap_or_default();
            assert!(sub.script().contains("export SWITCHYARD_ATTEMPT='4'"));
            assert!(
                sub.stdout.ends_with(&format!("g2-a4-r{}.out", n + 1)),
                "{}",
                sub.stdout
            );
        }
        // The third Slurm job of the run (max_attempts = 3) fails too: the run failed.
        fake.set_state(&id, JobState::NodeFail);
        w.round();
        let got = observed(&w);
        assert!(
            got.iter().any(
                |o| matches!(o, Observed::Failed { job, generation: 2, reason }
                if job == "j" && reason.contains("NODE_FAIL") && reason.contains("gave up after 3"))
            ),
            "{got:?}"
        );
        assert_eq!(fake.st().submitted.len(), 3);
    }

    #[test]
    fn a_replica_that_ends_is_started_again_with_the_next_attempt() {
        let fake = Fake::default();
        let mut w = worker(&fake, 2);
        w.options.backoff_initial = Duration::ZERO;
        let add = add_replica("svc");
        let id = running(&fake, &mut w, add);
        fake.set_state(&id, JobState::Failed);
        w.round();
        let got = observed(&w);
        assert!(
            !got.iter().any(|o| matches!(o, Observed::Failed { .. })),
            "{got:?}"
        );
        let ev = events(&got);
        assert!(
            ev.iter().any(|e| e.0 == "svc"
                && e.1 == "slurm_replica_restarted"
                && e.2.starts_with("replica svc#r0: ")),
            "{ev:?}"
        );
        w.round();
        let live = fake.active_tagged("switchyard");
        assert_eq!(live.len(), 1);
        assert_eq!((live[0].0.job.as_str(), live[0].0.attempt), ("svc#r0", 2));
    }

    /// A replica that keeps failing at once waits ever longer before its next job (1 s, 2 s,
    /// 4 s …); one whose job ran ten minutes or more starts again after the first back-off.
    #[test]
    fn a_replica_that_ran_long_restarts_after_the_first_back_off() {
        let fake = Fake::default();
        let mut w = worker(&fake, 2);
        w.options.backoff_initial = Duration::from_secs(1);
        w.options.backoff_max = Duration::from_secs(60);
        let add = add_replica("svc");
        let mut id = running(&fake, &mut w, add);
        let mut said = Vec::new();
        for ran_long in [false, false, true] {
            if ran_long {
                let long_ago = Instant::now().checked_sub(BACKOFF_RESET_AFTER);
                if let Some(want) = w.wants.get_mut("svc#r0") {
                    want.running_since = long_ago;
                }
            }
            fake.set_state(&id, JobState::Failed);
            w.round();
            said.extend(
                events(&observed(&w))
                    .into_iter()
                    .filter(|e| e.1 == "slurm_replica_restarted")
                    .filter_map(|e| Some(e.2.split("after a ").nth(1)?.to_owned())),
            );
            if let Some(want) = w.wants.get_mut("svc#r0") {
                want.next_try = Instant::now();
            }
            w.round();
            id = fake.active_tagged("switchyard")[0].1.clone();
            fake.set_state(&id, JobState::Running);
            w.round();
        }
        assert_eq!(said, ["1s back-off", "2s back-off", "1s back-off"]);
    }

    /// A replica's lines carry its name (`SLURMID.n`), so that `logs` prefixes and filters
    /// them as it does a node agent's; the name is the job's, so a term that takes the job over
    /// and reads its files again gives its lines the same source (the server drops repeats).
    #[test]
    fn a_replicas_output_carries_its_name() {
        let fake = Fake::default();
        let mut w = worker(&fake, 2);
        let dir = std::env::temp_dir().join(format!("sy-unit-rout-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        w.clusters[0].cfg.settings.log_dir = Some(dir.display().to_string());
        let id = running(&fake, &mut w, add_replica("svc"));
        let sub = fake.st().submitted[0].clone();
        std::fs::write(&sub.stdout, "serving\n").ok();
        w.round();
        let sources = |obs: Vec<Observed>| -> Vec<(String, String)> {
            obs.into_iter()
                .filter_map(|o| match o {
                    Observed::Output(l) => Some(l),
                    _ => None,
                })
                .flatten()
                .map(|l| (l.source, l.line))
                .collect()
        };
        let first = sources(observed(&w));
        let name = format!("{id}.0");
        assert_eq!(
            first,
            [(
                format!("svc/replica-{name}/slurm-{id}"),
                "serving".to_owned()
            )]
        );
        assert!(switchyard_store::is_replica_name(&name), "{name}");
        assert_eq!(
            switchyard_store::replica_of_assignment(&first[0].0),
            Some(name.as_str())
        );
        // A new term takes the job over and reads its file again: the same source.
        w.apply(Msg::Reset);
        w.apply(Msg::Commands(vec![add_replica("svc")]));
        w.round();
        w.round();
        assert_eq!(sources(observed(&w)), first);
        assert_eq!(replica_output_name("svc", "844"), None, "a gang's lines");
        assert_eq!(
            replica_output_name("svc#r2", "844_1"),
            None,
            "an array's id"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn output_files_are_followed_until_their_job_ends() {
        let fake = Fake::default();
        let mut w = worker(&fake, 2);
        let dir = std::env::temp_dir().join(format!("sy-unit-out-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        w.clusters[0].cfg.settings.log_dir = Some(dir.display().to_string());
        let id = running(&fake, &mut w, launch_cmd("j", 1, 7, &["./x"]));
        let sub = fake.st().submitted[0].clone();
        std::fs::write(&sub.stdout, "0: hello\n1: world\n0: part").ok();
        std::fs::write(&sub.stderr, "1: oops\n").ok();
        w.round();
        let lines = |obs: Vec<Observed>| -> Vec<OutputLine> {
            obs.into_iter()
                .filter_map(|o| match o {
                    Observed::Output(l) => Some(l),
                    _ => None,
                })
                .flatten()
                .collect()
        };
        let got = lines(observed(&w));
        let brief: Vec<_> = got
            .iter()
            .map(|l| (l.stream, l.seq, l.rank, l.line.as_str()))
            .collect();
        assert_eq!(
            brief,
            vec![
                ("stderr", 0, 1, "oops"),
                ("stdout", 0, 0, "hello"),
                ("stdout", 9, 1, "world"),
            ]
        );
        assert!(
            got.iter()
                .all(|l| l.job == "j" && l.attempt == 7 && l.source == format!("slurm-{id}"))
        );
        w.round();
        assert!(lines(observed(&w)).is_empty(), "nothing new, nothing sent");
        // The job ends: the unfinished last line comes too, and the files are let go.
        fake.set_state(&id, JobState::Completed);
        w.round();
        let got = lines(observed(&w));
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!((got[0].seq, got[0].line.as_str()), (18, "part"));
        assert!(w.follows.is_empty());

        // A job that wrote more after its last read than one read takes (1 MiB): every line
        // comes, over as many rounds as it needs, before its files are let go.
        let id = running(&fake, &mut w, launch_cmd("k", 1, 1, &["./x"]));
        let sub = fake.st().submitted.last().cloned().expect("submitted");
        std::fs::write(&sub.stdout, "0: ".to_owned() + &"y".repeat(997) + "\n").ok();
        w.round();
        assert_eq!(lines(observed(&w)).len(), 1);
        let line = "0: ".to_owned() + &"y".repeat(997) + "\n";
        std::fs::write(&sub.stdout, line.repeat(3001)).ok();
        fake.set_state(&id, JobState::Failed);
        let mut total = 0;
        for _ in 0..10 {
            w.round();
            total += lines(observed(&w)).len();
        }
        assert_eq!(total, 3000, "every line written before the end");
        assert!(w.follows.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn log_paths_are_kept_for_the_latest_runs_only() {
        let mut o = Outbox::default();
        let paths = |n: usize| LogPaths {
            slurm_job: Some(n.to_string()),
            stdout: format!("{n}.out"),
            stderr: format!("{n}.err"),
        };
        for n in 0..KEPT_LOG_PATHS + 5 {
            o.note_logs(&format!("j-{n}"), paths(n));
        }
        // A run submitted again replaces its entry, not adds one, and counts as the latest.
        o.note_logs("j-5", paths(1));
        assert_eq!(o.logs.len(), KEPT_LOG_PATHS);
        assert_eq!(o.logs_order.len(), KEPT_LOG_PATHS);
        assert!(!o.logs.contains_key("j-4") && o.logs.contains_key("j-6"));
        assert_eq!(o.logs["j-5"].slurm_job.as_deref(), Some("1"));
        o.note_logs("j-new", paths(2));
        assert!(o.logs.contains_key("j-5") && !o.logs.contains_key("j-6"));
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["n10", "n2", "n1", "a", "n02"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, vec!["a", "n1", "n02", "n2", "n10"]);
    }

    #[derive(Debug, Clone)]
    enum Step {
        Launch(u8, u32),
        Stop(u8),
        Reset,
        Empty,
        SlurmEnds(u8, bool),
        Foreign,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0u8..4, 1u32..4).prop_map(|(j, g)| Step::Launch(j, g)),
            (0u8..4).prop_map(Step::Stop),
            Just(Step::Reset),
            Just(Step::Empty),
            (0u8..4, any::<bool>()).prop_map(|(j, ok)| Step::SlurmEnds(j, ok)),
            Just(Step::Foreign),
        ]
    }

    proptest! {
        /// Whatever the leader and Slurm do: untagged jobs are never cancelled, and once a
        /// round has run each wanted run has at most one live Slurm job.
        #[test]
        fn reconciler_invariants(steps in prop::collection::vec(step(), 1..40)) {
            let fake = Fake::default();
            let mut w = worker(&fake, 1);
            w.options.backoff_initial = Duration::ZERO;
            let mut foreign = Vec::new();
            for s in steps {
                match s {
                    Step::Launch(j, g) => w.apply(Msg::Commands(vec![launch(&format!("j{j}"), g, 8)])),
                    Step::Stop(j) => w.apply(Msg::Commands(vec![Command::Stop { job: format!("j{j}") }])),
                    Step::Reset => w.apply(Msg::Reset),
                    Step::Empty => w.apply(Msg::Commands(vec![])),
                    Step::SlurmEnds(j, ok) => {
                        let live = fake.active_tagged("switchyard");
                        if let Some((_, id)) = live.iter().find(|(t, _)| t.job == format!("j{j}")) {
                            fake.set_state(id, if ok { JobState::Completed } else { JobState::Failed });
                        }
                        false
                    }
                    Step::Foreign => {
                        foreign.push(fake.add_job(None, JobState::Running));
                        false
                    }
                };
                w.round();
                for id in &foreign {
                    prop_assert!(!fake.st().cancelled.contains(id));
                }
                let live = fake.active_tagged("switchyard");
                for key in w.wants.keys() {
                    let n = live.iter().filter(|(t, _)| &t.job == key).count();
                    prop_assert!(n <= 1, "{key} has {n} live Slurm jobs");
                }
                if w.synced {
                    for (t, id) in &live {
                        prop_assert!(w.wants.contains_key(&t.job), "unwanted live job {id} of {}", t.job);
                    }
                }
            }
        }
    }
}
