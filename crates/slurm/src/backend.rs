//! The Slurm backend: the server's [`Backend`] over one or more Slurm clusters.
//!
//! `act` and `poll` never block: commands go over a channel to a worker thread the backend
//! owns, which runs Slurm's tools; what it sees comes back through a shared outbox. The worker
//! is a level-triggered reconciler (kube-rs style): each round it re-reads Slurm (capacity with
//! `sinfo`, jobs with `squeue`) and fixes the difference with what the leader wants:
//!
//! - a wanted run without a Slurm job is submitted (`sbatch`); a failed submission becomes an
//!   event carrying Slurm's message and is retried with exponential back-off, never dropped;
//! - a Slurm job carrying Switchyard's tag that nobody wants any more is cancelled (`scancel`);
//!   jobs without the tag are never touched;
//! - a job that completed is reported [`Observed::Finished`]; one that failed, timed out or
//!   vanished is resubmitted as the next attempt (up to `max_attempts`);
//! - a node Slurm reports down, drained or not responding is [`Observed::NodeFailed`], and
//!   [`Observed::NodeRepaired`] when it is back.
//!
//! After a restart of the server (or a new leader term, [`Backend::reset`]) the first launch
//! of each job adopts the Slurm job already running for it instead of starting it again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use switchyard_core::fleet::{ClusterBackend, Fleet, LevelKind, SlurmSettings};
use switchyard_server::backend::{Backend, Command, Observed};

use crate::client::{CliClient, SlurmClient, Submission};
use crate::parse::{JobState, QueueJob, Tag};

/// Timing and policy of the reconciler.
#[derive(Debug, Clone)]
pub struct Options {
    /// Prefix of the `--comment` tag; two Switchyard deployments sharing a Slurm cluster
    /// need different prefixes.
    pub tag: String,
    /// Longest wait between rounds (new commands start one sooner).
    pub poll_interval: Duration,
    /// How often capacity (`sinfo`) is re-read.
    pub capacity_interval: Duration,
    /// Attempts of one generation before giving up (failed, timed out or vanished jobs).
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

/// Something that happened to a job on Slurm, with Slurm's own words (the server's trait has
/// no place for these yet: see [`SlurmHandle`]).
#[derive(Debug, Clone, PartialEq)]
pub struct JobEvent {
    pub job: String,
    pub at_ms: i64,
    /// slurm_submitted, slurm_submit_failed, slurm_running, slurm_ended, slurm_retry,
    /// slurm_gave_up, slurm_adopted, slurm_cancelled, slurm_vanished.
    pub kind: String,
    pub cluster: String,
    pub message: String,
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
    events: Vec<JobEvent>,
    logs: HashMap<String, LogPaths>,
    /// Submissions, cancellations and rounds so far (for tests and benchmarks).
    submitted: u64,
    cancelled: u64,
    rounds: u64,
}

/// A cloneable view of the backend's extras (events, log paths), taken before the backend is
/// boxed for the server. Proposed for the server's trait: `Observed::Event` and
/// `Backend::logs(job)`.
#[derive(Debug, Clone)]
pub struct SlurmHandle {
    shared: Arc<Mutex<Outbox>>,
}

impl SlurmHandle {
    /// Events since the last call.
    pub fn take_events(&self) -> Vec<JobEvent> {
        std::mem::take(&mut lock(&self.shared).events)
    }

    /// Where the latest run of `job` writes stdout/stderr.
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
    #[error(
        "cluster {cluster:?}: slurmrestd ({url}) is not supported yet; leave out `rest_url` to use the command-line tools on the server's host"
    )]
    RestNotSupported { cluster: String, url: String },
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
}

impl SlurmBackend {
    /// A backend for the fleet's clusters that say `backend = "slurm"`; `None` when there are
    /// none. Uses the command-line tools on this host.
    pub fn from_fleet(fleet: &Fleet, options: Options) -> Result<Option<Self>, SetupError> {
        let mut clusters = Vec::new();
        for (i, c) in fleet.clusters.iter().enumerate() {
            let ClusterBackend::Slurm(s) = &c.backend else {
                continue;
            };
            if let Some(url) = &s.rest_url {
                return Err(SetupError::RestNotSupported {
                    cluster: c.name.clone(),
                    url: url.clone(),
                });
            }
            clusters.push(ClusterConfig {
                name: c.name.clone(),
                index: i as u32,
                nodes: c.nodes,
                accelerators_per_node: c.accelerators_per_node,
                block_nodes: c.topology.level(LevelKind::Block).map(|l| l.nodes),
                settings: s.clone(),
                client: Box::new(CliClient::default()),
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
        self.send(Msg::Commands(commands));
    }

    fn poll(&mut self, _now_ms: i64) -> Vec<Observed> {
        std::mem::take(&mut lock(&self.shared).observed)
    }

    fn reset(&mut self) {
        lock(&self.shared).observed.clear();
        self.send(Msg::Reset);
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A run the leader wants: a gang (`key` = job id) or one replica (`job#r<n>`).
#[derive(Debug)]
struct Want {
    job: String,
    cluster: String,
    generation: u32,
    accelerators: u32,
    expected_end_ms: i64,
    replica: bool,
    attempt: u32,
    slurm_id: Option<String>,
    running_seen: bool,
    /// First launch after a reset: may take over a Slurm job already there.
    adoptable: bool,
    next_try: Instant,
    backoff: Duration,
    gave_up: bool,
}

struct Cluster {
    cfg: ClusterConfig,
    /// Slurm node name → fleet node index.
    node_index: BTreeMap<String, u32>,
    /// Fleet node indices currently reported failed.
    failed: HashSet<u32>,
    has_gpus: bool,
    capacity_read: bool,
    /// The last error listing jobs, so that an unreachable controller is reported once, not
    /// every round.
    list_error: Option<String>,
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
                    has_gpus: false,
                    capacity_read: false,
                    list_error: None,
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

    fn event(&self, job: &str, cluster: &str, kind: &str, message: String) {
        tracing::info!(job, cluster, kind, %message, "slurm");
        lock(&self.shared).events.push(JobEvent {
            job: job.to_owned(),
            at_ms: now_ms(),
            kind: kind.to_owned(),
            cluster: cluster.to_owned(),
            message,
        });
    }

    fn observe(&self, o: Observed) {
        lock(&self.shared).observed.push(o);
    }

    /// Applies a message; true when it asks for something to be done now.
    fn apply(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Reset => {
                self.wants.clear();
                self.replicas.clear();
                self.replica_serial.clear();
                self.stopped.clear();
                self.synced = false;
                // The new term's scheduler believes every node is up: say again which are not.
                for c in &mut self.clusters {
                    c.failed.clear();
                    c.node_index.clear();
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

    /// A new wanted run: (job, cluster, generation, accelerators, expected end).
    fn want(&self, what: (&str, &str, u32, u32, i64), replica: bool, adoptable: bool) -> Want {
        let (job, cluster, generation, accelerators, expected_end_ms) = what;
        Want {
            job: job.to_owned(),
            cluster: cluster.to_owned(),
            generation,
            accelerators,
            expected_end_ms,
            replica,
            attempt: 1,
            slurm_id: None,
            running_seen: false,
            adoptable,
            next_try: Instant::now(),
            backoff: self.options.backoff_initial,
            gave_up: false,
        }
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Launch {
                job,
                generation,
                cluster,
                accelerators,
                expected_end_ms,
                ..
            } => {
                if !self.clusters.iter().any(|c| c.cfg.name == cluster) {
                    tracing::warn!(%job, %cluster, "launch for a cluster that is not on Slurm; ignored");
                    return;
                }
                let adoptable = !self.stopped.contains(&job) && !self.wants.contains_key(&job);
                let what = (
                    job.as_str(),
                    cluster.as_str(),
                    generation,
                    accelerators,
                    expected_end_ms,
                );
                let w = self.want(what, false, adoptable);
                self.wants.insert(job, w);
            }
            Command::AddReplica {
                job,
                cluster,
                accelerators,
                ..
            } => {
                if !self.clusters.iter().any(|c| c.cfg.name == cluster) {
                    return;
                }
                let serial = self.replica_serial.entry(job.clone()).or_default();
                let key = format!("{job}#r{serial}");
                *serial += 1;
                let adoptable = !self.stopped.contains(&job);
                let w = self.want((&key, &cluster, 1, accelerators, i64::MAX), true, adoptable);
                self.wants.insert(key.clone(), w);
                self.replicas.entry((job, cluster)).or_default().push(key);
            }
            Command::RemoveReplica { job, cluster, .. } => {
                if let Some(keys) = self.replicas.get_mut(&(job, cluster))
                    && let Some(key) = keys.pop()
                {
                    self.wants.remove(&key);
                }
            }
            Command::Stop { job } => {
                self.stopped.insert(job.clone());
                self.wants.remove(&job);
                let prefix = format!("{job}#r");
                self.wants.retain(|k, _| !k.starts_with(&prefix));
                self.replicas.retain(|(j, _), _| *j != job);
            }
        }
    }

    /// One reconciliation round over every cluster.
    fn round(&mut self) {
        lock(&self.shared).rounds += 1;
        if Instant::now() >= self.next_capacity {
            for i in 0..self.clusters.len() {
                self.refresh_capacity(i);
            }
            self.next_capacity = Instant::now() + self.options.capacity_interval;
        }
        for i in 0..self.clusters.len() {
            self.reconcile(i);
        }
    }

    fn refresh_capacity(&mut self, i: usize) {
        let c = &mut self.clusters[i];
        let nodes = match c.cfg.client.nodes(Some(&c.cfg.settings.partition)) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(cluster = %c.cfg.name, error = %e, "cannot read Slurm's nodes; keeping what was known");
                return;
            }
        };
        let mut names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        names.sort_by(|a, b| natural_cmp(a, b));
        names.dedup();
        for name in names {
            if !c.node_index.contains_key(name) {
                let next = c.node_index.len() as u32;
                c.node_index.insert(name.to_owned(), next);
            }
        }
        c.has_gpus = nodes.iter().any(|n| n.gpus > 0);
        let mut now_failed: HashSet<u32> = HashSet::new();
        for n in &nodes {
            if let Some(&idx) = c.node_index.get(&n.name)
                && idx < c.cfg.nodes
                && !n.state.usable()
            {
                now_failed.insert(idx);
            }
        }
        // Fleet nodes Slurm does not have are not there to be used either.
        let present = c.node_index.len() as u32;
        for idx in present..c.cfg.nodes {
            now_failed.insert(idx);
        }
        let index = c.cfg.index;
        let mut out = Vec::new();
        let mut newly: Vec<u32> = now_failed.difference(&c.failed).copied().collect();
        newly.sort_unstable();
        for node in newly {
            out.push(Observed::NodeFailed {
                cluster: index,
                node,
            });
        }
        let mut back: Vec<u32> = c.failed.difference(&now_failed).copied().collect();
        back.sort_unstable();
        for node in back {
            out.push(Observed::NodeRepaired {
                cluster: index,
                node,
            });
        }
        if !out.is_empty() {
            tracing::info!(cluster = %c.cfg.name, changes = ?out, "Slurm node states changed");
        }
        c.failed = now_failed;
        c.capacity_read = true;
        lock(&self.shared).observed.extend(out);
    }

    fn reconcile(&mut self, i: usize) {
        let cluster_name = self.clusters[i].cfg.name.clone();
        let listing = match self.clusters[i].cfg.client.jobs() {
            Ok(l) => l,
            Err(e) => {
                let msg = e.message();
                tracing::warn!(cluster = %cluster_name, error = %msg, "cannot list Slurm's jobs; retrying next round");
                if self.clusters[i].list_error.as_ref() == Some(&msg) {
                    return;
                }
                self.clusters[i].list_error = Some(msg.clone());
                // Tell the jobs waiting to be submitted why nothing happens.
                let waiting: Vec<String> = self
                    .wants
                    .iter()
                    .filter(|(_, w)| {
                        w.cluster == cluster_name && w.slurm_id.is_none() && !w.gave_up
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in waiting {
                    self.event(
                        &k,
                        &cluster_name,
                        "slurm_unreachable",
                        format!("cannot list Slurm's jobs: {msg}"),
                    );
                }
                return;
            }
        };
        if self.clusters[i].list_error.take().is_some() {
            tracing::info!(cluster = %cluster_name, "Slurm answers again");
        }
        let prefix = self.options.tag.clone();
        let tagged: Vec<(Tag, &QueueJob)> = listing
            .iter()
            .filter_map(|j| Some((Tag::parse(j.comment.as_deref()?, &prefix)?, j)))
            .collect();
        let by_id: HashMap<&str, &QueueJob> =
            tagged.iter().map(|(_, j)| (j.id.as_str(), *j)).collect();

        // 1. Adopt: wanted runs without a Slurm job take over the matching tagged job.
        let mut claimed: HashSet<String> = self
            .wants
            .values()
            .filter_map(|w| w.slurm_id.clone())
            .collect();
        let keys: Vec<String> = self
            .wants
            .iter()
            .filter(|(_, w)| w.cluster == cluster_name && w.slurm_id.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            let Some(w) = self.wants.get(&key) else {
                continue;
            };
            let candidates = tagged
                .iter()
                .filter(|(t, j)| t.job == key && !claimed.contains(&j.id));
            // The same generation and attempt: a submission whose answer was lost.
            let exact = candidates
                .clone()
                .filter(|(t, _)| t.generation == w.generation && t.attempt == w.attempt)
                .max_by_key(|(_, j)| numeric_id(&j.id));
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
            });
            if let Some((t, j)) = adopt {
                let id = j.id.clone();
                let msg = format!(
                    "took over Slurm job {id} ({}, generation {} attempt {})",
                    j.state.as_str(),
                    t.generation,
                    t.attempt
                );
                if let Some(w) = self.wants.get_mut(&key) {
                    w.slurm_id = Some(id.clone());
                    w.attempt = t.attempt.max(w.attempt);
                    w.adoptable = false;
                }
                claimed.insert(id);
                self.event(&key, &cluster_name, "slurm_adopted", msg);
            }
        }
        // Once a round has seen the listing, later launches of this term never adopt.
        for w in self.wants.values_mut() {
            if w.cluster == cluster_name {
                w.adoptable = false;
            }
        }

        // 2. Cancel tagged, unfinished jobs nobody wants (only once the leader has spoken).
        if self.synced {
            let unwanted: Vec<(String, String)> = tagged
                .iter()
                .filter(|(_, j)| !j.state.is_terminal() && !claimed.contains(&j.id))
                .map(|(t, j)| (t.job.clone(), j.id.clone()))
                .collect();
            for (key, id) in unwanted {
                match self.clusters[i].cfg.client.cancel(&id) {
                    Ok(()) => {
                        lock(&self.shared).cancelled += 1;
                        self.event(
                            &key,
                            &cluster_name,
                            "slurm_cancelled",
                            format!("cancelled Slurm job {id} (no longer wanted)"),
                        );
                    }
                    Err(e) => self.event(
                        &key,
                        &cluster_name,
                        "slurm_cancel_failed",
                        format!("scancel {id} failed: {}; retrying", e.message()),
                    ),
                }
            }
        }

        // 3. Follow the wanted runs' Slurm jobs.
        let followed: Vec<(String, String)> = self
            .wants
            .iter()
            .filter(|(_, w)| w.cluster == cluster_name)
            .filter_map(|(k, w)| Some((k.clone(), w.slurm_id.clone()?)))
            .collect();
        for (key, id) in followed {
            let (state, reason, exit) = match by_id.get(id.as_str()) {
                // An unsuccessful end: ask for the details (exit code) once.
                Some(j) if j.state.is_terminal() && j.state != JobState::Completed => {
                    match self.clusters[i].cfg.client.job(&id) {
                        Ok(Some(info)) => (j.state.clone(), j.reason.clone(), info.exit_code),
                        _ => (j.state.clone(), j.reason.clone(), None),
                    }
                }
                Some(j) => (j.state.clone(), j.reason.clone(), None),
                None => match self.clusters[i].cfg.client.job(&id) {
                    Ok(Some(info)) => (info.state, info.reason, info.exit_code),
                    Ok(None) => {
                        self.event(
                            &key,
                            &cluster_name,
                            "slurm_vanished",
                            format!("Slurm no longer knows job {id}; it is submitted again"),
                        );
                        self.retry(&key, &cluster_name);
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(job = %key, error = %e.message(), "cannot look Slurm job up");
                        continue;
                    }
                },
            };
            match state {
                JobState::Completed => {
                    let Some(w) = self.wants.remove(&key) else {
                        continue;
                    };
                    self.event(
                        &key,
                        &cluster_name,
                        "slurm_ended",
                        format!("Slurm job {id} COMPLETED"),
                    );
                    if w.replica {
                        // A service replica is never done: start it again.
                        self.wants.insert(
                            key.clone(),
                            Want {
                                slurm_id: None,
                                ..w
                            },
                        );
                        self.retry(&key, &cluster_name);
                    } else {
                        self.observe(Observed::Finished {
                            job: w.job,
                            generation: w.generation,
                        });
                    }
                }
                s if s.is_terminal() => {
                    let exit =
                        exit.map_or(String::new(), |(c, sig)| format!(", exit code {c}:{sig}"));
                    self.event(
                        &key,
                        &cluster_name,
                        "slurm_ended",
                        format!(
                            "Slurm job {id} ended {} (reason {reason}{exit})",
                            s.as_str()
                        ),
                    );
                    self.retry(&key, &cluster_name);
                }
                JobState::Running => {
                    if let Some(w) = self.wants.get_mut(&key)
                        && !w.running_seen
                    {
                        w.running_seen = true;
                        self.event(
                            &key,
                            &cluster_name,
                            "slurm_running",
                            format!("Slurm job {id} is running"),
                        );
                    }
                }
                _ => {}
            }
        }

        // 4. Submit what is wanted and has no Slurm job.
        let now = Instant::now();
        let ready: Vec<String> = self
            .wants
            .iter()
            .filter(|(_, w)| {
                w.cluster == cluster_name && w.slurm_id.is_none() && !w.gave_up && w.next_try <= now
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in ready {
            self.submit(i, &key);
        }
    }

    /// The run's Slurm job ended without completing: the next attempt, after back-off.
    fn retry(&mut self, key: &str, cluster: &str) {
        let max = self.options.max_attempts;
        let Some(w) = self.wants.get_mut(key) else {
            return;
        };
        w.slurm_id = None;
        w.running_seen = false;
        if w.attempt >= max && !w.replica {
            w.gave_up = true;
            let msg = format!(
                "gave up after {} attempts of generation {}",
                w.attempt, w.generation
            );
            self.event(key, cluster, "slurm_gave_up", msg);
            return;
        }
        w.attempt += 1;
        w.next_try = Instant::now() + w.backoff;
        let msg = format!("attempt {} in {:?}", w.attempt, w.backoff);
        w.backoff = (w.backoff * 2).min(self.options.backoff_max);
        self.event(key, cluster, "slurm_retry", msg);
    }

    fn submit(&mut self, i: usize, key: &str) {
        let Some(w) = self.wants.get(key) else { return };
        let c = &self.clusters[i];
        let s = submission(c, w, key, &self.options);
        if let Some(dir) = std::path::Path::new(&s.stdout).parent()
            && let Err(e) = std::fs::create_dir_all(dir)
        {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot create the log directory");
        }
        let result = c.cfg.client.submit(&s);
        let cluster = c.cfg.name.clone();
        match result {
            Ok(id) => {
                {
                    let mut o = lock(&self.shared);
                    o.submitted += 1;
                    o.logs.insert(
                        key.to_owned(),
                        LogPaths {
                            slurm_job: Some(id.clone()),
                            stdout: s.stdout.clone(),
                            stderr: s.stderr.clone(),
                        },
                    );
                }
                let msg = format!(
                    "submitted as Slurm job {id} ({} node(s), attempt {})",
                    s.nodes, w.attempt
                );
                if let Some(w) = self.wants.get_mut(key) {
                    w.slurm_id = Some(id);
                    w.backoff = self.options.backoff_initial;
                }
                self.event(key, &cluster, "slurm_submitted", msg);
            }
            Err(e) => {
                let backoff = w.backoff;
                let msg = format!("sbatch failed: {}; retrying in {backoff:?}", e.message());
                if let Some(w) = self.wants.get_mut(key) {
                    w.next_try = Instant::now() + backoff;
                    w.backoff = (backoff * 2).min(self.options.backoff_max);
                }
                self.event(key, &cluster, "slurm_submit_failed", msg);
            }
        }
    }
}

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
    let log_dir = settings
        .log_dir
        .clone()
        .unwrap_or_else(|| "/tmp/switchyard-slurm/logs".into());
    let ckpt_root = settings
        .checkpoint_dir
        .clone()
        .unwrap_or_else(|| "/tmp/switchyard-slurm/checkpoints".into());
    let remaining_s = if w.expected_end_ms == i64::MAX {
        None
    } else {
        Some(((w.expected_end_ms - now_ms()).max(0) as u64).div_ceil(1000))
    };
    let command = match (&settings.command, remaining_s) {
        (Some(cmd), _) => cmd.clone(),
        (None, Some(s)) => format!("exec sleep {s}"),
        (None, None) => "exec sleep infinity".into(),
    };
    let time_limit_min = match (&settings.command, remaining_s) {
        // A placeholder sleeps for the expected time: give it twice that plus 5 minutes.
        (None, Some(s)) => Some((2 * s + 300).div_ceil(60)),
        // Real work ends when it ends: the partition's limit applies.
        _ => None,
    };
    let block = c.cfg.block_nodes.filter(|_| nodes > 1);
    Submission {
        job_name: format!("sy-{key}"),
        comment: Tag {
            job: key.to_owned(),
            generation: w.generation,
            attempt: w.attempt,
        }
        .render(&options.tag),
        partition: settings.partition.clone(),
        account: settings.account.clone(),
        nodes,
        ntasks_per_node: tasks,
        gpus_per_node: c.has_gpus.then_some(tasks),
        time_limit_min,
        switches: block.map(|b| nodes.div_ceil(b)),
        segment: block.filter(|_| options.use_segment).map(|b| b.min(nodes)),
        stdout: format!("{log_dir}/{key}/g{}-a{}.out", w.generation, w.attempt),
        stderr: format!("{log_dir}/{key}/g{}-a{}.err", w.generation, w.attempt),
        env: vec![
            (
                "SWITCHYARD_JOB_ID".into(),
                w.job.split("#r").next().unwrap_or(&w.job).to_owned(),
            ),
            ("SWITCHYARD_GENERATION".into(), w.generation.to_string()),
            ("SWITCHYARD_ATTEMPT".into(), w.attempt.to_string()),
            (
                "SWITCHYARD_CHECKPOINT_DIR".into(),
                format!("{ckpt_root}/{}", w.job.split("#r").next().unwrap_or(&w.job)),
            ),
        ],
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
    use crate::parse::{JobInfo, Node, NodeState};
    use proptest::prelude::*;

    #[derive(Debug, Default)]
    struct FakeState {
        next_id: u64,
        jobs: Vec<QueueJob>,
        submitted: Vec<Submission>,
        cancelled: Vec<String>,
        nodes: Vec<Node>,
        refuse: Option<String>,
        /// The controller does not answer.
        down: bool,
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
            Ok(self.st().jobs.iter().find(|j| j.id == id).map(|j| JobInfo {
                id: j.id.clone(),
                name: j.name.clone(),
                state: j.state.clone(),
                reason: j.reason.clone(),
                exit_code: Some((1, 0)),
                comment: j.comment.clone(),
                stdout: None,
                stderr: None,
                nodes: String::new(),
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

    fn worker(fake: &Fake, nodes: u32) -> Worker {
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
            command: None,
        }
    }

    fn observed(w: &Worker) -> Vec<Observed> {
        std::mem::take(&mut lock(&w.shared).observed)
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
            "--comment=switchyard:j-1:1:1",
            "--job-name=sy-j-1",
            "--no-requeue",
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
        assert_eq!(fake.st().cancelled, vec![mine]);
        for id in [user, other, note] {
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

    #[test]
    fn a_refused_submission_is_an_event_and_waits_for_its_back_off() {
        let fake = Fake::default();
        fake.st().refuse = Some("Invalid partition name specified".into());
        let mut w = worker(&fake, 1);
        w.apply(Msg::Commands(vec![launch("j", 1, 8)]));
        w.round();
        w.round();
        let events = std::mem::take(&mut lock(&w.shared).events);
        let failed: Vec<_> = events
            .iter()
            .filter(|e| e.kind == "slurm_submit_failed")
            .collect();
        assert_eq!(
            failed.len(),
            1,
            "the second round waits for the back-off: {events:?}"
        );
        assert!(
            failed[0]
                .message
                .contains("Invalid partition name specified")
        );
        assert!(w.wants.contains_key("j"), "the run is not lost");
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
        let events = std::mem::take(&mut lock(&w.shared).events);
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].kind, "slurm_unreachable");
        assert!(
            events[0].message.contains("did not answer"),
            "{}",
            events[0].message
        );
        assert!(fake.st().submitted.is_empty());
        fake.st().down = false;
        w.round();
        assert_eq!(fake.st().submitted.len(), 1, "submitted once Slurm answers");
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
                Observed::NodeFailed {
                    cluster: 2,
                    node: 1
                },
                Observed::NodeRepaired {
                    cluster: 2,
                    node: 0
                },
            ]
        );
    }

    #[test]
    fn replicas_are_jobs_of_their_own() {
        let fake = Fake::default();
        let mut w = worker(&fake, 4);
        let add = Command::AddReplica {
            job: "svc".into(),
            cluster: "c".into(),
            accelerators: 8,
            nodes: Vec::new(),
            command: None,
        };
        w.apply(Msg::Commands(vec![add.clone(), add]));
        w.round();
        assert_eq!(fake.active_tagged("switchyard").len(), 2);
        w.apply(Msg::Commands(vec![Command::RemoveReplica {
            job: "svc".into(),
            cluster: "c".into(),
            nodes: Vec::new(),
        }]));
        w.round();
        assert_eq!(fake.active_tagged("switchyard").len(), 1);
        w.apply(Msg::Commands(vec![Command::Stop { job: "svc".into() }]));
        w.round();
        assert!(fake.active_tagged("switchyard").is_empty());
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
