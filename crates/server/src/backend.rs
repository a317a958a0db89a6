//! Backends: where placements become running work.
//!
//! The leader calls a backend only after the decisions behind its commands are committed to
//! the store, and reads back what it observed (work finished, nodes lost) as scheduler events.
//! The interface is synchronous and non-blocking, like the scheduler's: a backend that talks
//! to the outside world (node agents, Slurm) queues the work for its own tasks in `act` and
//! reports what they saw in `poll`. Backends are level-triggered: after a restart the leader
//! re-sends the desired state and the backend reconciles what it observes with it.
//!
//! Backends here: [`DryRun`] (runs nothing; each run's work is done when the scheduler
//! expected it to end) and the node agents' ([`crate::agents::AgentBackend`]). Slurm's lives in
//! its own crate.

use std::collections::HashMap;
use std::sync::Arc;

pub use switchyard_sched::NodeShare;
pub use switchyard_store::RanOn;

use crate::api::JobCommand;

/// A recovered service's replicas that serve on: (job, [(cluster, shares)]).
pub type ServingReplicas = (String, Vec<(String, Vec<NodeShare>)>);

/// What the leader asks of a backend.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Start (or restart) a gang; `generation` tells restarts apart.
    Launch {
        job: String,
        generation: u32,
        /// How many times the job has been started, this one included (from 1; survives
        /// changes of leader). What the work sees as `SWITCHYARD_ATTEMPT`.
        attempt: u32,
        cluster: String,
        accelerators: u32,
        /// The scheduler's placement: accelerators per node (node = slot in the cluster).
        nodes: Vec<NodeShare>,
        /// When the work should be done if nothing interrupts it.
        expected_end_ms: i64,
        /// What every rank runs; `None` when the submission gave no command.
        command: Option<Arc<JobCommand>>,
        /// The job was running when this leader took over and this is its first start
        /// since: the previous leader's run may still be going, or may have ended while no
        /// leader watched (a backend that can see how it ended reports that end).
        recovered: bool,
        /// For a recovered launch: where node agents were last given the job's ranks
        /// ([`Observed::RanOn`], as stored), which may still run them.
        ran_before: Option<RanOn>,
    },
    AddReplica {
        job: String,
        cluster: String,
        accelerators: u32,
        nodes: Vec<NodeShare>,
        command: Option<Arc<JobCommand>>,
    },
    /// Take down the replica of `job` on exactly these nodes.
    RemoveReplica {
        job: String,
        cluster: String,
        nodes: Vec<NodeShare>,
    },
    /// Stop everything of the job (preemption, restart, cancellation).
    Stop { job: String },
}

/// What a backend saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// A run's work is done.
    Finished {
        job: String,
        generation: u32,
    },
    /// A run's work failed (a rank exited with an error, or could not start): restarted from
    /// its checkpoint while the job's retries last.
    Failed {
        job: String,
        generation: u32,
        reason: String,
    },
    /// A run was interrupted by the infrastructure, not by its own processes (an agent shut
    /// down under it, its placement could not be made): restarted from its checkpoint without
    /// counting against the job's retries.
    Interrupted {
        job: String,
        generation: u32,
        reason: String,
    },
    /// A run's cluster keeps it queued (a Slurm job still pending): its accelerators are
    /// booked but its work has not begun, so it makes no progress until [`Observed::Began`].
    /// `why` is the cluster's reason in words; told again when it changes. `interrupted`:
    /// the run's work had begun and stopped (its Slurm job lost to the infrastructure and
    /// submitted again, or requeued): it keeps what its checkpoints hold.
    Held {
        job: String,
        generation: u32,
        why: String,
        interrupted: bool,
    },
    /// A run's work stopped where it stands (a Slurm job suspended): it keeps its progress and
    /// its accelerators, and makes no progress until [`Observed::Began`]. `why` in words.
    Paused {
        job: String,
        generation: u32,
        why: String,
    },
    /// The launch of `generation` took over the work an earlier attempt started, still going
    /// (a new leader found its Slurm job): the run goes on as that `attempt`, not a new one.
    Continued {
        job: String,
        generation: u32,
        attempt: u32,
    },
    /// A held run's work began, or a paused one's goes on: it progresses from now, or from
    /// `since_ms` where the backend knows when its work began (Slurm's StartTime of a job that
    /// started between two polls; never before the run was held, never after now).
    Began {
        job: String,
        generation: u32,
        since_ms: Option<i64>,
    },
    /// The run of `generation` was handed to the node agents of these nodes: until they are
    /// known to have stopped them, its ranks may run there (stored, for a new leader).
    RanOn {
        job: String,
        generation: u32,
        ran_on: RanOn,
    },
    /// Where the node agents run `job`'s service replicas now, all of them (stored, for a new
    /// leader to take them over).
    ReplicasOn {
        job: String,
        replicas: Vec<switchyard_store::ReplicaPlacement>,
    },
    NodeFailed {
        cluster: u32,
        node: u32,
    },
    /// The node takes no new work, but what runs on it goes on (Slurm's drain); it is back
    /// with [`Observed::NodeRepaired`], and a [`Observed::NodeFailed`] still fails it.
    NodeDrained {
        cluster: u32,
        node: u32,
    },
    NodeRepaired {
        cluster: u32,
        node: u32,
    },
    /// Node `node` of `cluster` is the host `host` (an agent registered on it, Slurm names it
    /// so): events name it by its host from now on.
    NodeNamed {
        cluster: u32,
        node: u32,
        host: String,
    },
    /// Lines the job's processes wrote (the leader stores them for `switchyard logs`).
    Output(Vec<OutputLine>),
    /// Something worth recording in the job's events (a submission the cluster refused, a
    /// replica restarted …); `kind` is a short snake_case word.
    Event {
        job: String,
        kind: String,
        message: String,
        /// The cluster it happened on, if the backend says (otherwise the job's current one;
        /// a job that has ended and been let go has none).
        cluster: Option<String>,
    },
}

/// One line of a job's output.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputLine {
    pub job: String,
    pub attempt: u32,
    pub rank: u32,
    /// Which process incarnation wrote it (unique per job, attempt and rank or replica).
    pub source: String,
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    /// Byte offset of the line in its stream: with `source` and `stream`, unique (repeats
    /// after a retry are dropped).
    pub seq: u64,
    pub at_ms: i64,
    pub line: String,
}

/// Where placements run.
pub trait Backend: Send + std::fmt::Debug {
    fn name(&self) -> &'static str;
    /// Carries out commands (after their decisions are durable). Must not block. Called every
    /// pass, with an empty list when there is nothing new: after a reset, the first call says
    /// the leader has sent the desired state (what it did not launch is not wanted).
    fn act(&mut self, commands: Vec<Command>);
    /// What happened since the last call.
    fn poll(&mut self, now_ms: i64) -> Vec<Observed>;
    /// Forgets everything (a new leader term re-sends the desired state).
    fn reset(&mut self);
    /// The nodes the store has on record, read when a leader term begins (after
    /// [`Self::reset`]): what agents told earlier leaders of themselves.
    fn nodes_on_record(&mut self, _nodes: &[switchyard_store::NodeRecord]) {}
    /// The gangs that were running when a leader term began, with where the store says their
    /// ranks were handed out (after [`Self::nodes_on_record`]): a backend that can let them
    /// run on until they are placed again does.
    fn runs_on_record(&mut self, _runs: &[(String, RanOn)]) {}
    /// While true, the leader does not place work yet (it still takes in what happens): the
    /// backend is waiting, briefly, to hear what runs where after a change of leader.
    fn settling(&self, _now_ms: i64) -> bool {
        false
    }
    /// Once settled, before the first pass places anything: the replicas of recovered services
    /// that serve on, by job, as (cluster, shares) — the ones worth putting back where they
    /// are (the scheduler is told only these).
    fn live_recovered_replicas(&self) -> Vec<ServingReplicas> {
        Vec::new()
    }
    /// `Some` when the backend follows the drains the store records (node agents): a count
    /// of the drains it was told directly, which the leader hands back with what it then
    /// reads, so that a read older than a drain told since is not applied.
    fn drain_epoch(&self) -> Option<u64> {
        None
    }
    /// The drained nodes as the store had them when [`Self::drain_epoch`] was `epoch`: the
    /// backend makes its own view (and the scheduler's) agree.
    fn drains_on_record(
        &mut self,
        _drained: &[(String, switchyard_store::NodeDrain)],
        _epoch: u64,
    ) {
    }
    /// When the backend next expects to observe something without being told (the dry run:
    /// its next run's end), so that the leader polls then rather than a whole tick later.
    /// `None`: nothing it can foresee.
    fn next_due_ms(&self) -> Option<i64> {
        None
    }
}

/// Runs nothing: a gang's work is done when the scheduler expected it to end. Lets the API,
/// the queue and the policies be used and tested without hardware.
#[derive(Debug, Default)]
pub struct DryRun {
    running: HashMap<String, (u32, i64)>,
}

impl Backend for DryRun {
    fn name(&self) -> &'static str {
        "dry-run"
    }

    fn act(&mut self, commands: Vec<Command>) {
        for c in commands {
            match c {
                Command::Launch {
                    job,
                    generation,
                    expected_end_ms,
                    ..
                } => {
                    self.running.insert(job, (generation, expected_end_ms));
                }
                Command::Stop { job } => {
                    self.running.remove(&job);
                }
                Command::AddReplica { .. } | Command::RemoveReplica { .. } => {}
            }
        }
    }

    fn poll(&mut self, now_ms: i64) -> Vec<Observed> {
        let mut done: Vec<(String, u32, i64)> = self
            .running
            .iter()
            .filter(|(_, (_, end))| *end <= now_ms)
            .map(|(job, (g, end))| (job.clone(), *g, *end))
            .collect();
        done.sort_by_key(|d| d.2);
        done.into_iter()
            .map(|(job, generation, _)| {
                self.running.remove(&job);
                Observed::Finished { job, generation }
            })
            .collect()
    }

    fn reset(&mut self) {
        self.running.clear();
    }

    fn next_due_ms(&self) -> Option<i64> {
        self.running.values().map(|&(_, end)| end).min()
    }
}

/// Sends each cluster's placements to the backend that runs that cluster (agents, Slurm,
/// dry-run), and stops to all of them (a service's replicas may span clusters).
#[derive(Debug)]
pub struct Routed {
    routes: Vec<(Vec<String>, Box<dyn Backend>)>,
    fallback: Box<dyn Backend>,
}

impl Routed {
    /// `routes`: the clusters each backend runs; everything else goes to `fallback`.
    pub fn new(routes: Vec<(Vec<String>, Box<dyn Backend>)>, fallback: Box<dyn Backend>) -> Self {
        Routed { routes, fallback }
    }

    fn for_cluster(&mut self, cluster: &str) -> usize {
        self.routes
            .iter()
            .position(|(clusters, _)| clusters.iter().any(|c| c == cluster))
            .unwrap_or(self.routes.len())
    }
}

impl Backend for Routed {
    fn name(&self) -> &'static str {
        "routed"
    }

    fn act(&mut self, commands: Vec<Command>) {
        let mut per: Vec<Vec<Command>> = vec![Vec::new(); self.routes.len() + 1];
        for c in commands {
            match &c {
                Command::Launch { cluster, .. }
                | Command::AddReplica { cluster, .. }
                | Command::RemoveReplica { cluster, .. } => {
                    let i = self.for_cluster(cluster);
                    per[i].push(c);
                }
                Command::Stop { .. } => {
                    for list in &mut per {
                        list.push(c.clone());
                    }
                }
            }
        }
        // Every backend hears every pass, with nothing if need be: a backend that was sent no
        // command after a reset must still learn that its leftovers are unwanted.
        let fallback = per.pop().unwrap_or_default();
        for ((_, b), list) in self.routes.iter_mut().zip(per) {
            b.act(list);
        }
        self.fallback.act(fallback);
    }

    fn poll(&mut self, now_ms: i64) -> Vec<Observed> {
        let mut out = Vec::new();
        for (_, b) in &mut self.routes {
            out.extend(b.poll(now_ms));
        }
        out.extend(self.fallback.poll(now_ms));
        out
    }

    fn reset(&mut self) {
        for (_, b) in &mut self.routes {
            b.reset();
        }
        self.fallback.reset();
    }

    fn nodes_on_record(&mut self, nodes: &[switchyard_store::NodeRecord]) {
        for (_, b) in &mut self.routes {
            b.nodes_on_record(nodes);
        }
        self.fallback.nodes_on_record(nodes);
    }

    fn runs_on_record(&mut self, runs: &[(String, RanOn)]) {
        for (_, b) in &mut self.routes {
            b.runs_on_record(runs);
        }
        self.fallback.runs_on_record(runs);
    }

    fn settling(&self, now_ms: i64) -> bool {
        // Each is asked (no short cut), so that each can tell when it has settled.
        let mut any = false;
        for b in self
            .routes
            .iter()
            .map(|(_, b)| b)
            .chain(std::iter::once(&self.fallback))
        {
            any |= b.settling(now_ms);
        }
        any
    }

    fn live_recovered_replicas(&self) -> Vec<ServingReplicas> {
        self.routes
            .iter()
            .map(|(_, b)| b)
            .chain(std::iter::once(&self.fallback))
            .flat_map(|b| b.live_recovered_replicas())
            .collect()
    }

    fn drain_epoch(&self) -> Option<u64> {
        self.routes
            .iter()
            .map(|(_, b)| b)
            .chain(std::iter::once(&self.fallback))
            .find_map(|b| b.drain_epoch())
    }

    fn drains_on_record(&mut self, drained: &[(String, switchyard_store::NodeDrain)], epoch: u64) {
        for (_, b) in &mut self.routes {
            b.drains_on_record(drained, epoch);
        }
        self.fallback.drains_on_record(drained, epoch);
    }

    fn next_due_ms(&self) -> Option<i64> {
        self.routes
            .iter()
            .map(|(_, b)| b)
            .chain(std::iter::once(&self.fallback))
            .filter_map(|b| b.next_due_ms())
            .min()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Records what it was asked; reports one event per poll.
    #[derive(Debug, Clone, Default)]
    struct Recorder {
        name: &'static str,
        seen: Arc<Mutex<Vec<Command>>>,
        resets: Arc<Mutex<u32>>,
        acts: Arc<Mutex<u32>>,
    }

    impl Backend for Recorder {
        fn name(&self) -> &'static str {
            self.name
        }
        fn act(&mut self, commands: Vec<Command>) {
            *self.acts.lock().expect("lock") += 1;
            self.seen.lock().expect("lock").extend(commands);
        }
        fn poll(&mut self, _now_ms: i64) -> Vec<Observed> {
            vec![Observed::Event {
                job: self.name.into(),
                kind: "polled".into(),
                message: String::new(),
                cluster: None,
            }]
        }
        fn reset(&mut self) {
            *self.resets.lock().expect("lock") += 1;
        }
    }

    fn launch(job: &str, cluster: &str) -> Command {
        Command::Launch {
            job: job.into(),
            generation: 1,
            attempt: 1,
            cluster: cluster.into(),
            accelerators: 8,
            nodes: vec![NodeShare {
                node: 0,
                accelerators: 8,
            }],
            expected_end_ms: 0,
            command: None,
            recovered: false,
            ran_before: None,
        }
    }

    #[test]
    fn placements_go_to_their_cluster_s_backend_and_stops_to_all() {
        let slurm = Recorder {
            name: "slurm",
            ..Default::default()
        };
        let agents = Recorder {
            name: "agents",
            ..Default::default()
        };
        let rest = Recorder {
            name: "rest",
            ..Default::default()
        };
        let mut r = Routed::new(
            vec![
                (vec!["hpc".into()], Box::new(slurm.clone())),
                (
                    vec!["lab-a".into(), "lab-b".into()],
                    Box::new(agents.clone()),
                ),
            ],
            Box::new(rest.clone()),
        );
        r.act(vec![
            launch("a", "hpc"),
            launch("b", "lab-b"),
            launch("c", "cloud"),
            Command::RemoveReplica {
                job: "s".into(),
                cluster: "lab-a".into(),
                nodes: vec![],
            },
            Command::Stop { job: "a".into() },
        ]);
        let jobs = |r: &Recorder| -> Vec<String> {
            r.seen
                .lock()
                .expect("lock")
                .iter()
                .map(|c| match c {
                    Command::Launch { job, .. } => format!("launch {job}"),
                    Command::AddReplica { job, .. } => format!("add {job}"),
                    Command::RemoveReplica { job, .. } => format!("remove {job}"),
                    Command::Stop { job } => format!("stop {job}"),
                })
                .collect()
        };
        assert_eq!(jobs(&slurm), ["launch a", "stop a"]);
        assert_eq!(jobs(&agents), ["launch b", "remove s", "stop a"]);
        assert_eq!(jobs(&rest), ["launch c", "stop a"]);
        let polled: Vec<String> = r
            .poll(0)
            .into_iter()
            .filter_map(|o| match o {
                Observed::Event { job, .. } => Some(job),
                _ => None,
            })
            .collect();
        assert_eq!(polled, ["slurm", "agents", "rest"]);
        r.reset();
        assert_eq!(
            [&slurm, &agents, &rest].map(|b| *b.resets.lock().expect("lock")),
            [1, 1, 1]
        );
        // A pass with nothing to do still reaches every backend.
        r.act(vec![launch("d", "hpc")]);
        assert_eq!(
            [&slurm, &agents, &rest].map(|b| *b.acts.lock().expect("lock")),
            [2, 2, 2]
        );
    }
}
