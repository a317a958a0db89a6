//! The node agents' side of the control plane: the agent protocol (`/v1/agent/…`, see
//! `docs/agent.md`), the registry of live nodes, and the backend that turns the scheduler's
//! placements on agent-run clusters into per-node assignments.
//!
//! The HTTP handlers and the backend share one [`AgentHub`]. Registered nodes fill the node
//! slots of their fleet cluster (the scheduler's node numbers); a slot with no live agent is
//! down to the scheduler, so work is placed only where an agent runs. Agents fetch their full
//! desired set of assignments and report every process's status; the hub folds the statuses
//! of a gang's ranks into "finished" or "failed" for the scheduler. A node whose heartbeats
//! stop for `lost_after` intervals is lost (and with it the nodes of its gangs that have missed
//! every heartbeat but the last: cut off with it): the scheduler hears the failures at once and
//! restarts the gangs on them from their last checkpoint.
//!
//! The desired state lives in the leader's memory. A new leader (another replica, or this
//! server restarted) tells agents to keep the ranks of the gangs that were running (their
//! placement is stored) until it has heard from their nodes, places each such gang on exactly
//! the accelerators it ran on, and hands out the very assignments its ranks run: ranks that
//! survived the change of leader run on as the same attempt. A gang it cannot take over so
//! (a node gone, a rank ended, a setting changed) starts again, and the agents'
//! level-triggered reconciliation stops what is no longer wanted.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use switchyard_agent::gang::{self, GangOutcome, GangSpec, NodeSlot};
use switchyard_agent::protocol::{
    Assignment, AssignmentList, LogBatch, NodeInfo, PROTOCOL_VERSION, ProcessState, ProcessStatus,
    Registration, RestartPolicy, StatusReport, Stream,
};
use switchyard_core::fleet::{ClusterBackend, Fleet};

use sha2::{Digest, Sha256};
use switchyard_store::RankPlacement;

use crate::api::JobCommand;
use crate::backend::{Backend, Command, NodeShare, Observed, OutputLine, RanOn};
use crate::leader::now_ms;

/// How often at most a node's heartbeat is written to the store.
pub const PERSIST_HEARTBEAT_MS: i64 = 30_000;

/// How the server treats its agents.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// How often agents heartbeat (told to them at registration).
    pub heartbeat_interval: Duration,
    /// Missed intervals after which a node is lost.
    pub lost_after: u32,
    /// Root of the jobs' checkpoint directories (`ROOT/JOB`), a path every node sees.
    pub checkpoint_root: PathBuf,
    /// Ports for rank 0 of a gang.
    pub port_range: (u16, u16),
    /// Between SIGTERM and SIGKILL when processes are stopped.
    pub stop_grace: Duration,
}

impl AgentSettings {
    /// Milliseconds without a sign of life after which a node is lost.
    fn deadline_ms(&self) -> i64 {
        self.heartbeat_interval.as_millis() as i64 * i64::from(self.lost_after)
    }
}

/// Where other nodes reach a node: the address it gave, else its host name.
fn address_of(info: &NodeInfo) -> String {
    info.address
        .clone()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| info.hostname.trim().to_owned())
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            heartbeat_interval: Duration::from_secs(5),
            lost_after: 3,
            checkpoint_root: PathBuf::from("switchyard-checkpoints"),
            port_range: (29_500, 29_999),
            stop_grace: Duration::from_secs(10),
        }
    }
}

/// Why a registration or report is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    #[error("no node {0} is registered (register again)")]
    UnknownNode(String),
    #[error("{0}")]
    Invalid(String),
    /// Another live machine holds this registration.
    #[error("{0}")]
    Conflict(String),
}

#[derive(Debug, Clone)]
struct AgentCluster {
    index: u32,
    name: String,
    slots: u32,
    accelerators_per_node: u32,
    accelerator: &'static switchyard_core::Accelerator,
}

/// The variables that tell a non-NVIDIA runtime which of the node's accelerators a process
/// may use (the agent always sets `CUDA_VISIBLE_DEVICES`; these are its equivalents).
/// `indices` are chip indices on the node.
pub fn visible_accelerators_env(
    accelerator: &switchyard_core::Accelerator,
    indices: &[u32],
) -> Vec<(String, String)> {
    use switchyard_core::accelerator::Vendor;
    let list =
        |xs: &mut dyn Iterator<Item = u32>| xs.map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    let chips = list(&mut indices.iter().copied());
    match accelerator.vendor {
        Vendor::Nvidia => Vec::new(),
        Vendor::Amd => vec![
            ("ROCR_VISIBLE_DEVICES".into(), chips.clone()),
            ("HIP_VISIBLE_DEVICES".into(), chips),
        ],
        Vendor::Intel => vec![("HABANA_VISIBLE_MODULES".into(), chips)],
        Vendor::Google => vec![("TPU_VISIBLE_CHIPS".into(), chips)],
        Vendor::Aws => {
            // The Neuron runtime counts (logical) NeuronCores, not chips: 2 per Trainium1 or
            // Inferentia2 chip, 4 per Trainium2 chip in its default LNC=2 configuration.
            let per_chip = if accelerator.name == "Trainium2" {
                4
            } else {
                2
            };
            let cores = list(&mut indices.iter().flat_map(|&i| {
                let first = i.saturating_mul(per_chip);
                first..first.saturating_add(per_chip)
            }));
            vec![("NEURON_RT_VISIBLE_CORES".into(), cores)]
        }
    }
}

#[derive(Debug, Clone)]
struct Node {
    id: String,
    cluster: u32,
    slot: u32,
    hostname: String,
    address: String,
    /// The machine's boot, as the agent reported it.
    boot_id: Option<String>,
    /// Accelerator indices the node offers (declared or discovered).
    accelerators: Vec<u32>,
    last_seen_ms: i64,
    /// At most how long after `last_seen_ms` its agent, if cut off, asks its training ranks to
    /// stop (what the agent reported, or [`DEFAULT_ORPHAN_STOP_MS`]).
    orphan_stop_ms: i64,
    /// When its heartbeat was last written to the store.
    persisted_ms: i64,
    lost: bool,
    /// Statuses of its processes, as last reported.
    statuses: Vec<ProcessStatus>,
    /// Its processes its last report before it was lost said had ended (its agent stopped
    /// them as it shut down): they run nowhere, whatever became of the node. Until it reports
    /// again.
    ended_before_loss: HashSet<String>,
    /// Status reports it has sent (kept through registering again).
    status_reports: u64,
    /// `status_reports` when this hub's leader term began (0 for a node first seen since).
    term_reports: u64,
    /// Assignments the node was handed lately: its output is taken for these (and for what it
    /// is placed to run now), so a node cannot write into another job's logs.
    handed: RecentIds,
}

impl Node {
    /// Whether it is up and has reported its processes since this hub's leader term began.
    fn heard_this_term(&self) -> bool {
        !self.lost && self.status_reports > self.term_reports
    }

    /// Whether its last report has process `id` in a state `accept` takes.
    fn reports(&self, id: &str, accept: impl Fn(&ProcessState) -> bool) -> bool {
        self.statuses
            .iter()
            .any(|st| st.assignment_id == id && accept(&st.state))
    }

    /// Whether a machine at `address` with boot `boot` is another machine than this node's:
    /// another address, or another boot where both are known (clones of one image reach the
    /// same address when it is their shared host name).
    fn is_another_machine(&self, address: &str, boot: Option<&str>) -> bool {
        self.address != address
            || matches!((self.boot_id.as_deref(), boot), (Some(a), Some(b)) if a != b)
    }
}

/// Ids handed out lately, each once: at most [`RecentIds::CAPACITY`] and none older than
/// [`RecentIds::TTL_MS`] (oldest forgotten first), so that the memory a node's record holds
/// stays small however long the node lives and however large the fleet.
#[derive(Debug, Clone, Default)]
struct RecentIds {
    set: HashSet<Arc<str>>,
    /// In the order first handed, with when.
    order: VecDeque<(Arc<str>, i64)>,
}

impl RecentIds {
    /// Assignment ids remembered per node: far more than a node runs at once.
    const CAPACITY: usize = 1024;
    /// How long a handed assignment's late output is still taken: ample for the lines an agent
    /// buffers through an outage of the control plane.
    const TTL_MS: i64 = 6 * 3600 * 1000;

    fn insert(&mut self, id: &str, now_ms: i64) {
        while let Some((old, at)) = self.order.front()
            && (self.order.len() >= Self::CAPACITY || now_ms.saturating_sub(*at) > Self::TTL_MS)
        {
            self.set.remove(old);
            self.order.pop_front();
        }
        if self.set.contains(id) {
            return;
        }
        let id: Arc<str> = Arc::from(id);
        self.set.insert(id.clone());
        self.order.push_back((id, now_ms));
    }

    fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }
}

#[derive(Debug, Clone)]
enum RunKind {
    /// A training or batch gang: done when every rank exits 0, failed when one fails.
    /// A failure is held back until every node of the gang has shown a sign of life since
    /// (`failed`: when it was seen, whether it is the job's fault, and why): ranks fail when a
    /// peer's machine dies, and then the lost node — not the job — is to blame.
    Gang {
        generation: u32,
        reported: bool,
        failed: Option<(i64, bool, String)>,
    },
    /// A commandless run: nothing to start; its work is done when the scheduler expected.
    Simulated { generation: u32, end_ms: i64 },
    /// A service replica: restarted by the agent whenever it dies. Its assignment ids are
    /// `{job}/replica-{epoch}.{seq}/rank-{r}` (the epoch of the hub that started it).
    Replica {
        cluster: u32,
        nodes: Vec<NodeShare>,
        epoch: String,
        seq: u64,
    },
}

#[derive(Debug, Clone)]
struct Run {
    job: String,
    kind: RunKind,
    attempt: u32,
    world_size: u32,
    /// Its processes, per node id.
    by_node: BTreeMap<String, Vec<Assignment>>,
    /// Gangs: the assignments seen exited 0.
    succeeded: HashSet<String>,
    /// Gangs held back by their job's fences ([`Fence`]): handed out once every fence is
    /// lifted, at the latest at this.
    not_before_ms: Option<i64>,
}

impl Node {
    /// Declares it lost (`with` the node it is lost together with, if any): what it reported is
    /// forgotten.
    fn lose(&mut self, with: Option<String>) -> LostNode {
        self.lost = true;
        self.ended_before_loss = self
            .statuses
            .iter()
            .filter(|st| {
                matches!(
                    st.state,
                    ProcessState::Exited(_) | ProcessState::FailedToStart { .. }
                )
            })
            .map(|st| st.assignment_id.clone())
            .collect();
        self.statuses.clear();
        LostNode {
            cluster: self.cluster,
            slot: self.slot,
            id: self.id.clone(),
            host: self.hostname.clone(),
            with,
        }
    }
}

/// A node a poll declares lost.
struct LostNode {
    cluster: u32,
    slot: u32,
    id: String,
    host: String,
    /// The node lost on its own that this one is lost with ([`Hub::cut_off_with`]).
    with: Option<String>,
}

/// Why a gang's next attempt waits: ranks of an earlier attempt may still run on some nodes
/// (cut off from this leader, or not heard from by a new one), and two attempts must never
/// write one checkpoint directory.
#[derive(Debug, Clone)]
struct Fence {
    /// The earlier attempt's nodes. Lifted once they report, after the fence went up, that none
    /// of the job's ranks runs there any more (their agents were handed a desired set without
    /// them and stopped them): every one of them ([`Hub::lifted`]).
    nodes: Vec<FenceNode>,
    /// Or at this, when their agents must have stopped them on their own: each asks its ranks
    /// to stop once its orphan deadline has passed since its last answered heartbeat, the
    /// ranks get their stop grace, and one heartbeat interval more for the agent's checks.
    until_ms: i64,
    /// Why, in words.
    why: &'static str,
    /// The attempt whose ranks it holds back, where known: a takeover of that very attempt
    /// lifts it ([`Hub::adopt`]).
    attempt: Option<u32>,
}

/// A node of a [`Fence`].
#[derive(Debug, Clone)]
struct FenceNode {
    /// Its id (stable per cluster and host name, unlike slots, which another host may take).
    id: String,
    /// The machine (its boot) that ran the ranks, where known: another machine that takes the
    /// host name over says nothing of them.
    boot: Option<String>,
    /// Its status reports when the fence went up: a later one counts.
    reports: u64,
    /// When its ranks must have stopped without a report ([`Hub::ranks_stop_by`]).
    until_ms: i64,
}

/// [`Fence::why`] of the ranks of a gang whose nodes were cut off.
const CUT_OFF: &str = "a node of its last attempt was lost, and may only be cut off, its agent \
    running its ranks (writing its checkpoint directory) until it stops orphaned ranks \
    (--orphan-after) and their stop grace has passed; it starts then, or sooner once every node \
    of that attempt reports its ranks stopped (a lost one when it is back)";

/// [`Fence::why`] of a gang taken away while its nodes are in touch.
const STOPPING: &str = "its last attempt's ranks are being stopped, and may write its \
    checkpoint directory in their stop grace; it starts as soon as their nodes report them \
    stopped";

/// [`Fence::why`] of a gang a new leader took over.
const NEW_LEADER: &str = "a new scheduling leader took over and has not heard yet from every \
    node of its last attempt, whose agents may run its ranks (writing its checkpoint directory) \
    until they stop orphaned ranks; it starts then, or sooner once every one of those nodes \
    reports its ranks stopped";

impl Run {
    fn new(job: String, kind: RunKind, attempt: u32, world_size: u32) -> Self {
        Run {
            job,
            kind,
            attempt,
            world_size,
            by_node: BTreeMap::new(),
            succeeded: HashSet::new(),
            not_before_ms: None,
        }
    }
}

#[derive(Debug, Default)]
struct Hub {
    clusters: Vec<AgentCluster>,
    nodes: BTreeMap<String, Node>,
    /// (cluster index, slot) → node id.
    by_slot: HashMap<(u32, u32), String>,
    /// What should run, by run id; indexed by node and by job so that every agent call costs
    /// what that node runs, not what the fleet runs.
    runs: HashMap<u64, Run>,
    next_run: u64,
    on_node: HashMap<String, BTreeSet<u64>>,
    by_job: HashMap<String, BTreeSet<u64>>,
    /// Gang runs with a failure waiting for every node of the gang to be heard from.
    pending_failures: BTreeSet<u64>,
    /// Commandless runs waiting for the end the scheduler expected.
    simulated: BTreeSet<u64>,
    replica_seq: u64,
    /// Tells this hub's replica ids from those of earlier server processes (its creation
    /// time, hex): the store keeps a log line once per (assignment id, stream, seq), so a
    /// replica id reused after a restart would lose the new process's output.
    replica_epoch: String,
    /// Accelerator indices in use, per node.
    used: HashMap<String, BTreeSet<u32>>,
    observed: Vec<Observed>,
    /// Tell the scheduler which slots have no live node (at start and after a reset).
    resync_down: bool,
    /// Restart counts of replicas already reported as events.
    replica_restarts: HashMap<String, u32>,
    /// When the backend was last polled.
    last_poll_ms: Option<i64>,
    /// After a stall of the leader, no node is declared lost before this.
    no_loss_before_ms: i64,
    /// Jobs whose earlier gangs' ranks may still run (being stopped, or on nodes cut off or
    /// not heard from): their next gang waits until every fence is lifted (kept through a
    /// reset).
    fences: HashMap<String, Vec<Fence>>,
    /// The same settings as [`AgentHub::settings`], for what is decided under the lock.
    settings: Arc<AgentSettings>,
    /// When this hub's leader term began: for [`ADOPT_OUTPUT_MS`] after, lines of assignments
    /// it never handed out may be output agents held through the change of leader (see
    /// [`PushedOutput::unverified`]).
    term_started_ms: Option<i64>,
    /// The nodes on record in the store, as they last registered (with any leader), read when
    /// the term began: what a new leader knows of nodes it has not heard from yet.
    on_record: HashMap<String, NodeOnRecord>,
    /// Nodes an administrator drained, by id (from the store when the term began, and the
    /// drains and resumptions since): they take no new work, what runs on them goes on.
    drained: HashMap<String, switchyard_store::NodeDrain>,
    /// Drains and resumptions told directly ([`AgentHub::set_drain`]) so far: a read of the
    /// store's drains made before one of them is not applied ([`Backend::drains_on_record`]).
    drain_epoch: u64,
    /// Gangs running when this term began whose ranks' placement the store has, by job, until
    /// this term launches them (or the first pass after [`Hub::settled`]): their agents are
    /// told to keep those ranks, and a launch on exactly those accelerators takes them over.
    recovering: HashMap<String, RankPlacement>,
    /// Services serving when this term began whose replicas' placement the store has, by job,
    /// until they are placed again (the replicas not taken over are then not kept).
    recovering_replicas: HashMap<String, Vec<switchyard_store::ReplicaPlacement>>,
    /// The ranks of `recovering` gangs and `recovering_replicas` on each node: (job,
    /// assignment ids).
    keep_on: HashMap<String, Vec<(String, Vec<String>)>>,
    /// The accelerators they hold, by node, with the job holding them: other placements take
    /// them last.
    kept_on_node: HashMap<String, Vec<(String, Vec<u32>)>>,
    /// Whether this term's wait for the nodes of `recovering` gangs is over
    /// ([`Backend::settling`]).
    settled: bool,
    /// Services whose replicas came or went since the leader was last told.
    replicas_changed: BTreeSet<String>,
}

/// A node as the store has it from its last registration.
#[derive(Debug, Clone, PartialEq)]
struct NodeOnRecord {
    /// What its agent said it needs to stop orphaned ranks ([`orphan_stop_of`]).
    orphan_stop_ms: i64,
    /// The machine's boot then, if it sent one.
    boot: Option<String>,
    /// Where it is and what it had, for [`AgentHub::nodes`] while this term has not heard
    /// from it (`None` for a cluster the hub does not run).
    place: Option<(u32, u32)>,
    hostname: String,
    address: String,
    accelerators: u32,
    heartbeat_ms: i64,
    /// Lost in the store, or declared lost by this term for not registering within a
    /// deadline of its start: its slot goes to the next host that asks.
    lost: bool,
}

/// An agent's `orphan_stop_ms` as taken: what it said, at most a week, or the default for one
/// that does not say.
fn orphan_stop_of(said_ms: Option<u64>) -> i64 {
    said_ms.map_or(DEFAULT_ORPHAN_STOP_MS, |ms| {
        i64::try_from(ms)
            .unwrap_or(i64::MAX)
            .min(MAX_ORPHAN_STOP_MS)
    })
}

/// How long a heartbeat's answer waits for the store to record it (every 30 s per node).
const HEARTBEAT_WRITE_WAIT: Duration = Duration::from_secs(1);

/// What an agent that does not say (an older one) is taken to need, after its last heartbeat,
/// to stop orphaned training ranks: the agent's default `--orphan-after` (60 s) plus twice its
/// request timeout (30 s).
const DEFAULT_ORPHAN_STOP_MS: i64 = 120_000;

/// The most an agent's `orphan_stop_ms` is taken for (a week): a hold has an end.
const MAX_ORPHAN_STOP_MS: i64 = 7 * 24 * 3_600_000;

/// How long after this leader's term began an earlier leader may still have answered its
/// agents: it answers only while its lease has not run out unrenewed (so not past this term's
/// start), on its own clock, which may run behind this one's: a margin for that skew.
const EARLIER_LEADER_ANSWERS_MS: i64 = 15_000;

/// How long after a leader term starts the agents' output of earlier attempts is adopted:
/// ample for agents to re-register and push what they buffered through the outage.
const ADOPT_OUTPUT_MS: i64 = 15 * 60 * 1000;

/// What [`AgentHub::output`] made of a node's batch.
#[derive(Debug, Default)]
pub struct PushedOutput {
    /// Lines of assignments the node was handed: stored.
    pub lines: Vec<OutputLine>,
    /// Lines of assignments this hub never handed out, pushed early in its leader term: output
    /// of attempts that ended before the term (a restarted server, a new leader), which the
    /// node's agent held while it could not push. Stored once the store confirms the job ran
    /// on the node's cluster ([`lines_to_store`]).
    pub unverified: Vec<OutputLine>,
    /// The node's cluster.
    pub cluster: String,
    /// When the hub's leader term began (0 outside one).
    pub term_started_ms: i64,
}

/// The shared registry and desired state (cheap to clone).
#[derive(Debug, Clone)]
pub struct AgentHub {
    inner: Arc<Mutex<Hub>>,
    settings: Arc<AgentSettings>,
}

impl AgentHub {
    /// A hub for the fleet's clusters whose backend is the agents.
    pub fn new(fleet: &Fleet, settings: AgentSettings) -> Self {
        let clusters = fleet
            .clusters
            .iter()
            .enumerate()
            .filter(|(_, c)| matches!(c.backend, ClusterBackend::Agents))
            .map(|(i, c)| AgentCluster {
                index: i as u32,
                name: c.name.clone(),
                slots: c.nodes.max(1),
                accelerators_per_node: c.accelerators_per_node,
                accelerator: c.accelerator,
            })
            .collect();
        let settings = Arc::new(settings);
        AgentHub {
            inner: Arc::new(Mutex::new(Hub {
                clusters,
                resync_down: true,
                replica_epoch: format!("{:x}", now_ms()),
                settings: settings.clone(),
                ..Hub::default()
            })),
            settings,
        }
    }

    pub fn settings(&self) -> &AgentSettings {
        &self.settings
    }

    /// Names of the clusters the agents run.
    pub fn cluster_names(&self) -> Vec<String> {
        self.lock()
            .clusters
            .iter()
            .map(|c| c.name.clone())
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, Hub> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks a registration from the machine of boot `boot` (where the agent says) and says
    /// which cluster (name, node slots) the node joins.
    pub fn resolve(
        &self,
        info: &NodeInfo,
        boot: Option<&str>,
    ) -> Result<(String, u32), AgentError> {
        if info.protocol_version != PROTOCOL_VERSION {
            return Err(AgentError::Invalid(format!(
                "agent protocol version {} is not supported; this server speaks {PROTOCOL_VERSION}",
                info.protocol_version
            )));
        }
        let hostname = info.hostname.trim();
        if hostname.is_empty() || hostname.len() > 253 {
            return Err(AgentError::Invalid(
                "hostname must be 1 to 253 characters".into(),
            ));
        }
        if hostname.chars().any(char::is_control) {
            return Err(AgentError::Invalid(format!(
                "hostname {hostname:?} has a control character"
            )));
        }
        if let Some(address) = &info.address {
            // It becomes MASTER_ADDR for the ranks placed here: a host name or an IP address.
            if !address.is_empty() && !switchyard_agent::protocol::is_host_address(address) {
                return Err(AgentError::Invalid(format!(
                    "address {address:?} must be a host name or IP address: at most 253 \
                     characters, no spaces or control characters"
                )));
            }
        }
        // What the store keeps of a node (its `NodeInfo`) stays small, whatever an agent sends.
        short_text("agent_version", &info.agent_version, 128)?;
        for a in &info.accelerators {
            short_text("accelerator name", &a.name, 256)?;
            if let Some(uuid) = &a.uuid {
                short_text("accelerator uuid", uuid, 128)?;
            }
        }
        let hub = self.lock();
        let cluster = match &info.cluster {
            Some(name) => hub.cluster(name).cloned().ok_or_else(|| {
                let known: Vec<&str> = hub.clusters.iter().map(|c| c.name.as_str()).collect();
                AgentError::Invalid(format!(
                    "cluster `{name}` is not run by agents in this fleet; agent clusters: {}",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ))
            })?,
            None if hub.clusters.len() == 1 => hub.clusters[0].clone(),
            None => {
                return Err(AgentError::Invalid(
                    "say which cluster this node joins (--cluster NAME)".into(),
                ));
            }
        };
        let address = address_of(info);
        if let Some(live) = hub.nodes.values().find(|n| {
            n.cluster == cluster.index
                && n.hostname == hostname
                && !n.lost
                && n.is_another_machine(&address, boot)
        }) {
            // Two machines under one host name would both run the node's ranks.
            return Err(AgentError::Conflict(format!(
                "host {hostname} of cluster `{}` is live at {} (node {}); a machine at {address} \
                 cannot take its place until it is lost — give this one another host name",
                cluster.name, live.address, live.id
            )));
        }
        let offered = info.accelerators.len() as u32;
        if offered > cluster.accelerators_per_node {
            return Err(AgentError::Invalid(format!(
                "the node offers {offered} accelerators but nodes of cluster `{}` have {}: \
                 the scheduler would leave the others idle (declare --accelerators {}, or set \
                 the cluster's accelerators_per_node to what its nodes have)",
                cluster.name, cluster.accelerators_per_node, cluster.accelerators_per_node
            )));
        }
        // The scheduler places on every accelerator a node of the cluster has: a node with
        // fewer would be handed devices it does not have.
        if offered < cluster.accelerators_per_node {
            return Err(AgentError::Invalid(format!(
                "the node offers {offered} accelerators but nodes of cluster `{}` have {}: \
                 the scheduler would place work on the missing ones (check the node's devices, \
                 declare them with --accelerators {}, or set the cluster's \
                 accelerators_per_node)",
                cluster.name, cluster.accelerators_per_node, cluster.accelerators_per_node
            )));
        }
        if let Some(a) = info
            .accelerators
            .iter()
            .find(|a| a.index >= cluster.accelerators_per_node)
        {
            return Err(AgentError::Invalid(format!(
                "accelerator index {} is out of range: nodes of cluster `{}` have {} (indices 0 \
                 to {})",
                a.index,
                cluster.name,
                cluster.accelerators_per_node,
                cluster.accelerators_per_node - 1
            )));
        }
        // As many as the cluster's nodes have, each once: a repeated index would leave another
        // undeclared, and ranks would be handed a device the node never offered.
        let mut seen = vec![false; cluster.accelerators_per_node as usize];
        for a in &info.accelerators {
            if std::mem::replace(&mut seen[a.index as usize], true) {
                return Err(AgentError::Invalid(format!(
                    "accelerator index {} is offered twice: each of the node's {} accelerators \
                     must be offered once, with its own index",
                    a.index, cluster.accelerators_per_node
                )));
            }
        }
        Ok((cluster.name, cluster.slots))
    }

    /// Takes in a node the store registered as `id` in `slot` of `cluster` (same host, same
    /// id and slot, across server restarts).
    pub fn admit(
        &self,
        info: &NodeInfo,
        boot: Option<&str>,
        cluster: &str,
        id: &str,
        slot: u32,
        now_ms: i64,
    ) -> Result<Registration, AgentError> {
        let mut hub = self.lock();
        let Some(c) = hub.cluster(cluster).map(|c| c.index) else {
            return Err(AgentError::Invalid(format!(
                "cluster `{cluster}` is not run by agents"
            )));
        };
        let hostname = info.hostname.trim().to_owned();
        let address = address_of(info);
        // Two machines may both pass `resolve` before either is admitted (clones of one image
        // booting together): the first one in keeps the node.
        if let Some(live) = hub
            .nodes
            .get(id)
            .filter(|n| !n.lost && n.is_another_machine(&address, boot))
        {
            return Err(AgentError::Conflict(format!(
                "host {hostname} is live at {} (node {id}) as another machine; this one cannot \
                 take its place until it is lost",
                live.address
            )));
        }
        // A slot the store gave to this node may have held another node id in this process
        // (a store shared by replicas); the store's answer wins.
        if let Some(previous) = hub.by_slot.insert((c, slot), id.to_owned())
            && previous != id
        {
            hub.nodes.remove(&previous);
        }
        let mut accelerators: Vec<u32> = info.accelerators.iter().map(|a| a.index).collect();
        accelerators.sort_unstable();
        accelerators.dedup();
        let was_up = hub.nodes.get(id).is_some_and(|n| !n.lost);
        let (statuses, ended_before_loss, handed, status_reports, term_reports) = hub
            .nodes
            .remove(id)
            .map(|n| {
                (
                    n.statuses,
                    n.ended_before_loss,
                    n.handed,
                    n.status_reports,
                    n.term_reports,
                )
            })
            .unwrap_or_default();
        hub.nodes.insert(
            id.to_owned(),
            Node {
                id: id.to_owned(),
                cluster: c,
                slot,
                hostname: hostname.clone(),
                address,
                boot_id: boot.map(str::to_owned),
                accelerators,
                last_seen_ms: now_ms,
                orphan_stop_ms: orphan_stop_of(info.orphan_stop_ms),
                persisted_ms: now_ms,
                lost: false,
                statuses,
                ended_before_loss,
                status_reports,
                term_reports,
                handed,
            },
        );
        hub.observed.push(Observed::NodeNamed {
            cluster: c,
            node: slot,
            host: hostname.clone(),
        });
        if !was_up {
            hub.back_in_service(id, c, slot);
        }
        tracing::info!(node = %id, host = %hostname, cluster, slot, "agent registered");
        Ok(Registration {
            node_id: id.to_owned(),
            heartbeat_interval_ms: self.settings.heartbeat_interval.as_millis() as u64,
        })
    }

    /// Refuses a call for `node` from another machine than the one registered as it now (a
    /// machine the node was taken over from while it was cut off): as an unknown node, so that
    /// its agent registers again, which is refused while the node's machine is live. Calls that
    /// do not say their boot are taken.
    pub fn check_boot(&self, node: &str, boot: Option<&str>) -> Result<(), AgentError> {
        let hub = self.lock();
        match (hub.nodes.get(node).and_then(|n| n.boot_id.as_deref()), boot) {
            (Some(registered), Some(caller)) if registered != caller => {
                Err(AgentError::UnknownNode(node.to_owned()))
            }
            _ => Ok(()),
        }
    }

    /// A sign of life; a lost node that comes back is usable again. True when the heartbeat
    /// should be written to the store: the hub decides losses from memory, so the store's
    /// copy is refreshed only every [`PERSIST_HEARTBEAT_MS`] (a fleet of 12,544 nodes at 2 s
    /// would otherwise write 6,272 rows a second) and when a lost node comes back.
    pub fn heartbeat(&self, node: &str, now_ms: i64) -> Result<bool, AgentError> {
        let mut hub = self.lock();
        let n = hub
            .nodes
            .get_mut(node)
            .ok_or_else(|| AgentError::UnknownNode(node.to_owned()))?;
        n.last_seen_ms = now_ms;
        let persist = n.lost || now_ms - n.persisted_ms >= PERSIST_HEARTBEAT_MS;
        if persist {
            n.persisted_ms = now_ms;
        }
        if n.lost {
            n.lost = false;
            let (cluster, slot) = (n.cluster, n.slot);
            tracing::info!(node, "lost node is back");
            hub.back_in_service(node, cluster, slot);
        }
        Ok(persist)
    }

    /// Drains node `id` (`Some`: as the store now has it) or resumes it (`None`): the scheduler
    /// hears of it at once if the node is live (one down stays down until it is back, and is
    /// then drained or up as this says).
    pub fn set_drain(&self, id: &str, drain: Option<switchyard_store::NodeDrain>) {
        let mut hub = self.lock();
        hub.drain_epoch += 1;
        hub.set_drain(id, drain);
    }

    /// `ready` or `lost`, as [`AgentHub::nodes`] says; `None` for a node this hub has not seen.
    pub fn node_state(&self, id: &str) -> Option<&'static str> {
        self.lock()
            .nodes
            .get(id)
            .map(|n| if n.lost { "lost" } else { "ready" })
    }

    /// The store did not take the copy of `node`'s heartbeat: the next heartbeat writes again.
    fn persist_failed(&self, node: &str) {
        if let Some(n) = self.lock().nodes.get_mut(node) {
            n.persisted_ms = i64::MIN / 2;
        }
    }

    /// The complete set of assignments the node should run.
    pub fn assignments(&self, node: &str, now_ms: i64) -> Result<AssignmentList, AgentError> {
        let mut hub = self.lock();
        let n = hub
            .nodes
            .get_mut(node)
            .ok_or_else(|| AgentError::UnknownNode(node.to_owned()))?;
        if n.lost {
            // It was cut off and replaced: it must stop everything until it heartbeats again.
            return Ok(AssignmentList::default());
        }
        n.last_seen_ms = now_ms;
        let assignments: Vec<Assignment> = hub
            .on_node
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|id| hub.runs.get(id))
            // A gang waiting for an earlier attempt's ranks to stop is not handed out (the
            // leader's poll lets it go, and records where it runs).
            .filter(|run| run.not_before_ms.is_none())
            .filter_map(|run| run.by_node.get(node))
            .flatten()
            .cloned()
            .collect();
        // Ranks of gangs running when the term began, not placed again yet: left running
        // (the node's report tells whether they can be taken over).
        let keep: Vec<String> = hub
            .keep_on
            .get(node)
            .into_iter()
            .flatten()
            .filter(|(job, _)| hub.is_recovering(job))
            .flat_map(|(_, ids)| ids.iter().cloned())
            .collect();
        if let Some(n) = hub.nodes.get_mut(node) {
            for a in &assignments {
                n.handed.insert(&a.id, now_ms);
            }
        }
        Ok(AssignmentList { assignments, keep })
    }

    /// Every process the node knows, as it reports them.
    pub fn status(&self, node: &str, report: StatusReport, now_ms: i64) -> Result<(), AgentError> {
        let mut hub = self.lock();
        let n = hub
            .nodes
            .get_mut(node)
            .ok_or_else(|| AgentError::UnknownNode(node.to_owned()))?;
        n.last_seen_ms = now_ms;
        // What a node reports does not make its output acceptable: only what it was handed
        // does, or any node could write into any job's logs by naming its assignments.
        n.statuses = report.processes;
        n.ended_before_loss.clear();
        n.status_reports += 1;
        // A start error becomes part of a job's events and reason: a page of it is plenty.
        for st in &mut n.statuses {
            if let ProcessState::FailedToStart { error } = &mut st.state
                && error.len() > MAX_START_ERROR_BYTES
            {
                let mut end = MAX_START_ERROR_BYTES;
                while !error.is_char_boundary(end) {
                    end -= 1;
                }
                error.truncate(end);
                error.push_str(" …");
            }
        }
        hub.fold_statuses(node, now_ms);
        Ok(())
    }

    /// Output lines of the node's processes, attributed to their jobs. Lines of assignments
    /// the hub no longer runs (a run already replaced) are attributed from their id, if the
    /// node was handed that assignment; lines of assignments the node never had are dropped
    /// with a warning, as are lines whose position is out of range.
    pub fn output(
        &self,
        node: &str,
        batch: LogBatch,
        now_ms: i64,
    ) -> Result<PushedOutput, AgentError> {
        let hub = self.lock();
        let Some(this) = hub.nodes.get(node) else {
            return Err(AgentError::UnknownNode(node.to_owned()));
        };
        let cluster = hub
            .cluster_name(this.cluster)
            .unwrap_or_default()
            .to_owned();
        let term_started_ms = hub.term_started_ms.unwrap_or(0);
        let adopting = hub
            .term_started_ms
            .is_some_and(|t| now_ms < t.saturating_add(ADOPT_OUTPUT_MS));
        // Replicas this hub started carry its epoch: handed in this term, never adoptable.
        let this_term_replica = format!("/replica-{}.", hub.replica_epoch);
        let known: HashMap<&str, &Assignment> = hub
            .on_node
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|id| hub.runs.get(id)?.by_node.get(node))
            .flatten()
            .map(|a| (a.id.as_str(), a))
            .collect();
        let mut out = Vec::with_capacity(batch.lines.len());
        let mut unverified = Vec::new();
        let mut handed_elsewhere: HashMap<String, bool> = HashMap::new();
        let mut refused = 0usize;
        let mut example = None;
        for l in batch.lines {
            if i64::try_from(l.seq).is_err() {
                refused += 1;
                example.get_or_insert_with(|| format!("{} seq {}", l.assignment_id, l.seq));
                continue;
            }
            let handed = known.contains_key(l.assignment_id.as_str())
                || this.handed.contains(&l.assignment_id);
            // Early in a term, an assignment this hub never handed to anyone may be one of an
            // attempt that ended before the term; one it handed to another node is not.
            // Each id is looked up across the fleet once, and a push names at most
            // MAX_UNVERIFIED_IDS of them: a node (or a token holder) sending many made-up ids
            // must not hold the hub's lock over a fleet-wide scan per id.
            let adoptable = !handed
                && adopting
                && !l.assignment_id.contains(&this_term_replica)
                && match handed_elsewhere.get(&l.assignment_id) {
                    Some(&elsewhere) => !elsewhere,
                    None if handed_elsewhere.len() >= MAX_UNVERIFIED_IDS => false,
                    None => {
                        let elsewhere = hub.handed_anywhere(&l.assignment_id);
                        handed_elsewhere.insert(l.assignment_id.clone(), elsewhere);
                        !elsewhere
                    }
                };
            let (job, attempt, rank) = match known.get(l.assignment_id.as_str()) {
                Some(a) => (a.job_id.clone(), a.attempt, a.rank),
                None if !handed && !adoptable => {
                    refused += 1;
                    example.get_or_insert_with(|| l.assignment_id.clone());
                    continue;
                }
                None => match gang::parse_assignment_id(&l.assignment_id) {
                    Some((job, attempt, rank)) => (job.to_owned(), attempt, rank),
                    // A replica is attempt 1 of its service, as when it was handed out.
                    None => match replica_of(&l.assignment_id) {
                        Some(job) => (job.to_owned(), 1, replica_rank(&l.assignment_id)),
                        None => {
                            refused += 1;
                            example.get_or_insert_with(|| l.assignment_id.clone());
                            continue;
                        }
                    },
                },
            };
            let target = if handed { &mut out } else { &mut unverified };
            target.push(OutputLine {
                job,
                attempt,
                rank,
                source: l.assignment_id,
                stream: match l.stream {
                    Stream::Stdout => "stdout",
                    Stream::Stderr => "stderr",
                },
                seq: l.seq,
                at_ms: i64::try_from(l.at_ms).unwrap_or(i64::MAX),
                line: cut_line(l.line),
            });
        }
        if refused > 0 {
            tracing::warn!(
                node,
                refused,
                example = example.as_deref(),
                "dropped output lines of assignments this node was never handed, or out of range"
            );
        }
        Ok(PushedOutput {
            lines: out,
            unverified,
            cluster,
            term_started_ms,
        })
    }

    /// The registered nodes, for the API and the demo: (id, cluster, slot, host, lost).
    pub fn nodes(&self) -> Vec<NodeView> {
        let hub = self.lock();
        // Nodes on record this term has not heard from yet, as the store has them (lost once
        // a deadline of the term passed without their agent).
        let unheard = hub.on_record.iter().filter_map(|(id, r)| {
            let (cluster, slot) = r.place?;
            (hub.unheard_holds_its_slot(id, (cluster, slot))).then(|| NodeView {
                id: id.clone(),
                cluster: hub.cluster_name(cluster).unwrap_or_default().to_owned(),
                slot,
                hostname: r.hostname.clone(),
                address: r.address.clone(),
                accelerators: r.accelerators,
                state: if r.lost { "lost" } else { "ready" }.into(),
                drained: hub.drained.get(id).map(DrainView::from),
                last_seen_ms: r.heartbeat_ms,
                processes: 0,
                jobs: Vec::new(),
            })
        });
        let mut views: Vec<NodeView> = hub
            .nodes
            .values()
            .map(|n| NodeView {
                id: n.id.clone(),
                cluster: hub.cluster_name(n.cluster).unwrap_or_default().to_owned(),
                slot: n.slot,
                hostname: n.hostname.clone(),
                address: n.address.clone(),
                accelerators: n.accelerators.len() as u32,
                state: if n.lost { "lost" } else { "ready" }.into(),
                drained: hub.drained.get(&n.id).map(DrainView::from),
                last_seen_ms: n.last_seen_ms,
                processes: n.statuses.len() as u32,
                jobs: hub
                    .on_node
                    .get(&n.id)
                    .into_iter()
                    .flatten()
                    .filter_map(|id| hub.runs.get(id).map(|r| r.job.clone()))
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect(),
            })
            .chain(unheard)
            .collect();
        views.sort_by(|a, b| a.id.cmp(&b.id));
        views
    }
}

/// A node as `GET /v1/agent/nodes` shows it. (Answers take fields a later server adds.)
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NodeView {
    pub id: String,
    pub cluster: String,
    pub slot: u32,
    pub hostname: String,
    pub address: String,
    pub accelerators: u32,
    /// `ready` or `lost`.
    pub state: String,
    /// Drained by an administrator (`switchyard nodes drain`): it takes no new work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drained: Option<DrainView>,
    pub last_seen_ms: i64,
    /// Processes it reported.
    pub processes: u32,
    /// Jobs with work placed on it now.
    pub jobs: Vec<String>,
}

/// Why and since when a node is drained, as `GET /v1/agent/nodes` shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DrainView {
    /// Why, as the administrator said; absent when drained without a reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub since_ms: i64,
}

impl From<&switchyard_store::NodeDrain> for DrainView {
    fn from(d: &switchyard_store::NodeDrain) -> Self {
        DrainView {
            // (Stored empty: the drained columns are set together.)
            reason: (!d.reason.is_empty()).then(|| d.reason.clone()),
            since_ms: d.since_ms,
        }
    }
}

/// `POST /v1/agent/nodes/{id}/drain`'s body (it may be empty).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainRequest {
    /// Why (shown by `switchyard nodes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What draining or resuming a node answers.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DrainAnswer {
    pub id: String,
    pub cluster: String,
    pub hostname: String,
    /// `null` once resumed.
    pub drained: Option<DrainView>,
    /// Whether it was drained before this call.
    #[serde(default)]
    pub was_drained: bool,
    /// `ready` or `lost` (a resumed node that is lost takes work once its agent is back);
    /// absent when the leader has not heard of the node since it took over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// Prometheus lines about the agents' nodes.
pub fn render_metrics(nodes: &[NodeView]) -> String {
    use std::fmt::Write as _;
    let mut by: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for n in nodes {
        // Both states of a cluster with nodes, zeros included: an alert on `lost > 0` needs
        // the series before the first loss, and a rate over it no gap.
        for state in ["ready", "lost"] {
            by.entry((n.cluster.as_str(), state)).or_default();
        }
        *by.entry((n.cluster.as_str(), n.state.as_str()))
            .or_default() += 1;
    }
    let mut out = String::from(
        "# HELP switchyard_agent_nodes Registered node agents by cluster and state (ready, lost).\n# TYPE switchyard_agent_nodes gauge\n",
    );
    let mut clusters: BTreeMap<&str, u64> = BTreeMap::new();
    for ((cluster, state), count) in by {
        clusters.entry(cluster).or_default();
        let _ = writeln!(
            out,
            "switchyard_agent_nodes{{cluster=\"{cluster}\",state=\"{state}\"}} {count}"
        );
    }
    for n in nodes.iter().filter(|n| n.drained.is_some()) {
        *clusters.entry(n.cluster.as_str()).or_default() += 1;
    }
    out.push_str(
        "# HELP switchyard_agent_nodes_drained Registered nodes an administrator drained, by cluster.\n# TYPE switchyard_agent_nodes_drained gauge\n",
    );
    for (cluster, count) in clusters {
        let _ = writeln!(
            out,
            "switchyard_agent_nodes_drained{{cluster=\"{cluster}\"}} {count}"
        );
    }
    out
}

/// `{job}/replica-{epoch}.{n}/rank-{r}` → job.
fn replica_of(id: &str) -> Option<&str> {
    id.split_once("/replica-").map(|(job, _)| job)
}

/// The rank in a replica's assignment id (`…/rank-N`), 0 when it does not say.
fn replica_rank(id: &str) -> u32 {
    id.rsplit_once("/rank-")
        .and_then(|(_, r)| r.parse().ok())
        .unwrap_or(0)
}

/// The longest start error of a process kept from a status report (longer ones are cut).
pub const MAX_START_ERROR_BYTES: usize = 2048;

/// A registration's free-text field: at most `max` bytes, no control characters.
fn short_text(field: &str, value: &str, max: usize) -> Result<(), AgentError> {
    if value.len() > max || value.chars().any(char::is_control) {
        return Err(AgentError::Invalid(format!(
            "{field} {:?} must be at most {max} bytes with no control characters",
            value.chars().take(64).collect::<String>()
        )));
    }
    Ok(())
}

impl Hub {
    /// Node `id` (slot `slot` of cluster `c`) is live again: repaired, and drained at once if
    /// it is (both before the next pass places anything, so that the scheduler counts it
    /// drained rather than failed).
    fn back_in_service(&mut self, id: &str, c: u32, slot: u32) {
        self.observed.push(Observed::NodeRepaired {
            cluster: c,
            node: slot,
        });
        if self.drained.contains_key(id) {
            self.observed.push(Observed::NodeDrained {
                cluster: c,
                node: slot,
            });
        }
    }

    /// Node `id` is drained (`Some`) or not (`None`) from now: the scheduler hears of it at
    /// once if the node is live (one down stays down until it is back, and is then drained
    /// or up as this says).
    fn set_drain(&mut self, id: &str, drain: Option<switchyard_store::NodeDrain>) {
        let was = match drain {
            Some(d) => self.drained.insert(id.to_owned(), d).is_some(),
            None => self.drained.remove(id).is_some(),
        };
        let drained = self.drained.contains_key(id);
        let Some(n) = self.nodes.get(id).filter(|n| !n.lost) else {
            return;
        };
        let (cluster, node) = (n.cluster, n.slot);
        if drained && !was {
            tracing::info!(node = %id, "node drained");
            self.observed.push(Observed::NodeDrained { cluster, node });
        } else if !drained && was {
            tracing::info!(node = %id, "drained node resumed");
            self.observed.push(Observed::NodeRepaired { cluster, node });
        }
    }

    /// Nodes to lose together with `lost` (just declared lost at `now_ms`), each with the lost
    /// node it goes with: those that share a gang with one of them and have missed every
    /// heartbeat but the last one before the deadline. Nodes cut off at one moment (a switch, a
    /// partition) heartbeat at different moments and would be declared lost polls apart, each
    /// loss restarting the gang once more onto a node already gone; lost in one poll they
    /// restart it once. With fewer than 3 intervals to the deadline a late heartbeat could not
    /// be told from a missing one, and nothing is lost early.
    fn cut_off_with(&self, lost: &[LostNode], now_ms: i64) -> Vec<(String, String)> {
        if self.settings.lost_after < 3 {
            return Vec::new();
        }
        let interval = self.settings.heartbeat_interval.as_millis() as i64;
        let deadline = self.settings.deadline_ms();
        let mut with: BTreeMap<String, String> = BTreeMap::new();
        for LostNode { id, .. } in lost {
            let runs = self.on_node.get(id).into_iter().flatten();
            for run in runs.filter_map(|r| self.runs.get(r)) {
                // A gang already over (its end reported) ties its nodes no more.
                if !matches!(
                    run.kind,
                    RunKind::Gang {
                        reported: false,
                        ..
                    }
                ) {
                    continue;
                }
                for peer in run.by_node.keys() {
                    if self
                        .nodes
                        .get(peer)
                        .is_some_and(|n| !n.lost && now_ms - n.last_seen_ms > deadline - interval)
                    {
                        with.entry(peer.clone()).or_insert_with(|| id.clone());
                    }
                }
            }
        }
        with.into_iter().collect()
    }

    /// Whether any registered node is up (not lost).
    fn any_node_up(&self) -> bool {
        self.nodes.values().any(|n| !n.lost)
    }

    /// Whether any node was handed `assignment` by this hub.
    fn handed_anywhere(&self, assignment: &str) -> bool {
        self.nodes.values().any(|n| n.handed.contains(assignment))
    }

    fn cluster(&self, name: &str) -> Option<&AgentCluster> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// Whether node `id`, on record in the store but not heard from this term, still holds
    /// its slot `place`: no node of its own id registered, nor another node in the slot.
    fn unheard_holds_its_slot(&self, id: &str, place: (u32, u32)) -> bool {
        !self.nodes.contains_key(id) && self.by_slot.get(&place).is_none_or(|holder| holder == id)
    }

    /// The name of the cluster of index `index`.
    fn cluster_name(&self, index: u32) -> Option<&str> {
        self.clusters
            .iter()
            .find(|c| c.index == index)
            .map(|c| c.name.as_str())
    }

    /// Gang outcomes and replica restarts from `node`'s latest statuses (only the runs
    /// with processes there are looked at).
    fn fold_statuses(&mut self, node: &str, now_ms: i64) {
        let Some(n) = self.nodes.get(node) else {
            return;
        };
        // (Its events name it: a service's replicas may run on several clusters.)
        let cluster = self.cluster_name(n.cluster).map(str::to_owned);
        let host = n.hostname.clone();
        let reported: HashMap<&str, &ProcessStatus> = n
            .statuses
            .iter()
            .map(|s| (s.assignment_id.as_str(), s))
            .collect();
        let ids: Vec<u64> = self
            .on_node
            .get(node)
            .map(|r| r.iter().copied().collect())
            .unwrap_or_default();
        let mut observed = Vec::new();
        for id in ids {
            let Some(run) = self.runs.get_mut(&id) else {
                continue;
            };
            let Some(here) = run.by_node.get(node) else {
                continue;
            };
            let mine: Vec<ProcessStatus> = here
                .iter()
                .filter_map(|a| reported.get(a.id.as_str()).map(|s| (*s).clone()))
                .collect();
            match &mut run.kind {
                RunKind::Gang {
                    generation,
                    reported,
                    failed,
                } if !*reported && failed.is_none() => {
                    if let GangOutcome::Failed {
                        reason,
                        job_at_fault,
                        ..
                    } = gang::outcome(&run.job, run.attempt, run.world_size, &mine)
                    {
                        *failed = Some((
                            now_ms,
                            job_at_fault,
                            format!("attempt {}: {reason}", run.attempt),
                        ));
                        self.pending_failures.insert(id);
                        continue;
                    }
                    // A rank its agent stopped although it is still wanted (the agent shut
                    // down under it) did not finish, whatever its exit code: the attempt is
                    // interrupted, not the job's fault.
                    if let Some(st) = mine.iter().find(
                        |st| matches!(&st.state, ProcessState::Exited(e) if e.stopped_by_agent),
                    ) {
                        *failed = Some((
                            now_ms,
                            false,
                            format!(
                                "attempt {}: {} was stopped by its agent (the agent shut down, or \
                                 stopped the ranks it ran while cut off)",
                                run.attempt, st.assignment_id
                            ),
                        ));
                        self.pending_failures.insert(id);
                        continue;
                    }
                    for st in &mine {
                        if matches!(&st.state, ProcessState::Exited(e) if e.success()) {
                            run.succeeded.insert(st.assignment_id.clone());
                        }
                    }
                    if run.succeeded.len() == run.world_size as usize {
                        *reported = true;
                        observed.push(Observed::Finished {
                            job: run.job.clone(),
                            generation: *generation,
                        });
                    }
                }
                RunKind::Replica { .. } => {
                    for st in &mine {
                        let seen = self
                            .replica_restarts
                            .entry(st.assignment_id.clone())
                            .or_insert(0);
                        if st.restarts > *seen {
                            *seen = st.restarts;
                            let (how, then) = match (&st.state, &st.last_exit) {
                                (ProcessState::FailedToStart { error }, _) => (
                                    format!("could not start ({error})"),
                                    "its agent tries again",
                                ),
                                (_, Some(e)) => (
                                    match (e.code, e.signal) {
                                        (Some(code), _) => format!("exited with code {code}"),
                                        (None, Some(signal)) => {
                                            format!("was killed by signal {signal}")
                                        }
                                        (None, None) => "died".into(),
                                    },
                                    "its agent restarted it",
                                ),
                                (_, None) => ("died".into(), "its agent restarted it"),
                            };
                            observed.push(Observed::Event {
                                job: run.job.clone(),
                                kind: "replica_restarted".into(),
                                message: format!(
                                    "replica process {} on node {host} {how}; {then} (restart {})",
                                    st.assignment_id, st.restarts
                                ),
                                cluster: cluster.clone(),
                            });
                        }
                    }
                }
                _ => {}
            }
        }
        self.observed.extend(observed);
    }

    fn add_run(&mut self, run: Run) -> u64 {
        let id = self.next_run;
        self.next_run += 1;
        for node in run.by_node.keys() {
            self.on_node.entry(node.clone()).or_default().insert(id);
        }
        self.by_job.entry(run.job.clone()).or_default().insert(id);
        if matches!(run.kind, RunKind::Simulated { .. }) {
            self.simulated.insert(id);
        }
        self.runs.insert(id, run);
        id
    }

    /// Forgets a run and gives its accelerators back.
    fn remove_run(&mut self, id: u64) -> Option<Run> {
        let run = self.runs.remove(&id)?;
        self.fence_if_running(&run, self.last_poll_ms.unwrap_or_else(now_ms));
        for (node, list) in &run.by_node {
            if let Some(ids) = self.on_node.get_mut(node) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.on_node.remove(node);
                }
            }
            for a in list {
                self.replica_restarts.remove(&a.id);
                if let Some(u) = self.used.get_mut(node) {
                    for acc in &a.accelerators {
                        u.remove(acc);
                    }
                }
            }
        }
        if let Some(ids) = self.by_job.get_mut(&run.job) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_job.remove(&run.job);
            }
        }
        self.pending_failures.remove(&id);
        self.simulated.remove(&id);
        Some(run)
    }

    /// Until when ranks may still run on a node cut off after `last_seen_ms`, whose agent asks
    /// orphaned ranks to stop within `orphan_stop_ms` and gives them `grace_ms`: see
    /// [`Fence::until_ms`].
    fn ranks_stop_by(&self, last_seen_ms: i64, orphan_stop_ms: i64, grace_ms: u64) -> i64 {
        let margin =
            i64::try_from(self.settings.heartbeat_interval.as_millis()).unwrap_or(i64::MAX);
        last_seen_ms
            .saturating_add(orphan_stop_ms)
            .saturating_add(i64::try_from(grace_ms).unwrap_or(i64::MAX))
            .saturating_add(margin)
    }

    /// The fence `run` leaves when it is taken away (at `now_ms`: restarted, preempted,
    /// cancelled) while ranks of it may still run: its agents stop them only at their next sync,
    /// and a rank gets its stop grace (in which it may save a checkpoint); on a node cut off
    /// (lost, or not declared lost yet: nodes heartbeat at different moments) they go on until
    /// the agent's orphan deadline. `None` when every rank of it is known to have ended, or for
    /// runs that are not gangs.
    fn fence_of(&self, run: &Run, now_ms: i64) -> Option<Fence> {
        // (A run held back was never handed out: nothing of it runs anywhere.)
        if !matches!(run.kind, RunKind::Gang { .. })
            || run.by_node.is_empty()
            || run.not_before_ms.is_some()
        {
            return None;
        }
        let ended = |node: &str, id: &str| {
            self.nodes.get(node).is_some_and(|n| {
                n.ended_before_loss.contains(id)
                    || n.statuses.iter().any(|st| {
                        st.assignment_id == id
                            && matches!(
                                st.state,
                                ProcessState::Exited(_) | ProcessState::FailedToStart { .. }
                            )
                    })
            })
        };
        if run
            .by_node
            .iter()
            .all(|(node, assignments)| assignments.iter().all(|a| ended(node, &a.id)))
        {
            return None;
        }
        let mut lost = false;
        let mut nodes = Vec::with_capacity(run.by_node.len());
        for (node, assignments) in &run.by_node {
            // A node whose report says its ranks of the run have ended (its agent stopped them
            // as it shut down) runs nothing of it, even if it is lost since.
            if assignments.iter().all(|a| ended(node, &a.id)) {
                continue;
            }
            let grace = assignments
                .iter()
                .map(|a| a.stop_grace_ms)
                .max()
                .unwrap_or(0);
            let until = match self.nodes.get(node) {
                Some(n) => {
                    lost |= n.lost;
                    self.ranks_stop_by(n.last_seen_ms, n.orphan_stop_ms, grace)
                }
                // (Its record was replaced: another machine took the host name over.)
                None => {
                    lost = true;
                    self.ranks_stop_by(now_ms, DEFAULT_ORPHAN_STOP_MS, grace)
                }
            };
            nodes.push(self.fence_node(node, until));
        }
        Some(Fence {
            until_ms: nodes.iter().map(|n| n.until_ms).max()?,
            nodes,
            why: if lost { CUT_OFF } else { STOPPING },
            attempt: Some(run.attempt),
        })
    }

    /// The fence of a gang whose last attempt ran on `before` (as the store says) for a new
    /// leader, until one of those nodes reports in its term: from the term's start, when
    /// an earlier leader (another replica, or this process before it lost the lease, which
    /// another replica may have held since) may have answered them a while longer
    /// ([`EARLIER_LEADER_ANSWERS_MS`]), with the agent's orphan deadline (the longer of what it
    /// told this process and what the store has; assumed for one with neither). A node's report
    /// counts from the machine the store has on record, by its boot.
    fn new_leader_fence(&self, before: &RanOn, grace_ms: u64) -> Option<Fence> {
        let term_started = self.term_started_ms?;
        let answered_until = term_started.saturating_add(EARLIER_LEADER_ANSWERS_MS);
        let nodes: Vec<FenceNode> = before
            .nodes
            .iter()
            .map(|id| {
                // The longer of what it told this process and what the store has (it may have
                // registered since with another leader, with another --orphan-after).
                let (known, record) = (self.nodes.get(id), self.on_record.get(id));
                let orphan_stop = match (known, record) {
                    (Some(n), Some(r)) => n.orphan_stop_ms.max(r.orphan_stop_ms),
                    (Some(n), None) => n.orphan_stop_ms,
                    (None, Some(r)) => r.orphan_stop_ms,
                    (None, None) => DEFAULT_ORPHAN_STOP_MS,
                };
                let until = self.ranks_stop_by(answered_until, orphan_stop, grace_ms);
                let node = self.fence_node(id, until);
                FenceNode {
                    // A report since the term began counts: the node was handed this term's
                    // desired set.
                    reports: known.map_or(0, |n| n.term_reports),
                    // The machine that ran the ranks registered last before this term: a report
                    // counts from that boot (not from another machine that took the host name
                    // over since, nor from the same one rebooted).
                    boot: record.and_then(|r| r.boot.clone()).or(node.boot),
                    ..node
                }
            })
            .collect();
        Some(Fence {
            until_ms: nodes.iter().map(|n| n.until_ms).max()?,
            nodes,
            why: NEW_LEADER,
            attempt: before.placement.as_ref().map(|p| p.attempt),
        })
    }

    /// Node `id` as a fence records it now. One this hub does not know (a new leader's) may be
    /// any machine that registers under it.
    fn fence_node(&self, id: &str, until_ms: i64) -> FenceNode {
        let node = self.nodes.get(id);
        FenceNode {
            id: id.to_owned(),
            boot: node.and_then(|n| n.boot_id.clone()),
            reports: node.map_or(0, |n| n.status_reports),
            until_ms,
        }
    }

    /// Whether `job`'s `fence` no longer holds anything back at `now_ms`: every node of it has
    /// reported, since the fence went up and from the same boot, that no rank of the job runs
    /// there, or has come to its own bound.
    fn lifted(&self, job: &str, fence: &Fence, now_ms: i64) -> bool {
        let prefix = format!("{job}/");
        let clean = |f: &FenceNode| {
            self.nodes.get(&f.id).is_some_and(|n| {
                n.status_reports > f.reports
                    && (f.boot.is_none() || n.boot_id == f.boot)
                    && !n.statuses.iter().any(|st| {
                        st.assignment_id.starts_with(&prefix)
                            && matches!(
                                st.state,
                                ProcessState::Running { .. } | ProcessState::Stopping { .. }
                            )
                    })
            })
        };
        // A node lost or unknown here may be cut off with the ranks running: a rank whose
        // peers are gone may still write (a save on SIGTERM at its agent's orphan deadline),
        // so it holds the fence until it reports or its own bound. So does one back with
        // another boot: the same machine rebooted (its ranks gone) cannot be told from another
        // machine that took the host name over while the one that ran them is cut off.
        now_ms >= fence.until_ms || fence.nodes.iter().all(|f| clean(f) || now_ms >= f.until_ms)
    }

    /// Keeps the fence `run` leaves, if any ([`Hub::fence_of`]).
    fn fence_if_running(&mut self, run: &Run, now_ms: i64) {
        if let Some(fence) = self.fence_of(run, now_ms) {
            self.fences.entry(run.job.clone()).or_default().push(fence);
        }
    }

    /// The fences of `job` that still hold at `now_ms`: the latest end among them, and why.
    fn holding(&self, job: &str, now_ms: i64) -> Option<(i64, &'static str)> {
        self.fences
            .get(job)?
            .iter()
            .filter(|f| !self.lifted(job, f, now_ms))
            .max_by_key(|f| f.until_ms)
            .map(|f| (f.until_ms, f.why))
    }

    /// Where `run`'s ranks are handed out, as stored for a new leader.
    fn ran_on(run: &Run) -> RanOn {
        RanOn {
            nodes: run.by_node.keys().cloned().collect(),
            placement: Some(RankPlacement {
                attempt: run.attempt,
                nodes: rank_order(&run.by_node),
                digest: assignments_digest(&run.by_node),
            }),
            replicas: Vec::new(),
        }
    }

    /// Whether `job` is a gang or service this term has not placed again yet whose ranks or
    /// replicas its agents are told to keep.
    fn is_recovering(&self, job: &str) -> bool {
        self.recovering.contains_key(job) || self.recovering_replicas.contains_key(job)
    }

    /// Notes that `job`'s replicas changed: [`Hub::report_replicas`] tells the leader.
    fn replicas_changed(&mut self, job: &str) {
        self.replicas_changed.insert(job.to_owned());
    }

    /// Tells the leader where the services whose replicas changed serve now (stored, for a new
    /// leader): once per service however many of its replicas came or went.
    fn report_replicas(&mut self) {
        for job in std::mem::take(&mut self.replicas_changed) {
            self.report_replicas_of(&job);
        }
    }

    fn report_replicas_of(&mut self, job: &str) {
        let mut replicas: Vec<switchyard_store::ReplicaPlacement> = self
            .runs_of(job, |r| matches!(r.kind, RunKind::Replica { .. }))
            .into_iter()
            .filter_map(|id| {
                let run = self.runs.get(&id)?;
                let RunKind::Replica {
                    cluster,
                    epoch,
                    seq,
                    ..
                } = &run.kind
                else {
                    return None;
                };
                Some(switchyard_store::ReplicaPlacement {
                    cluster: self.cluster_name(*cluster)?.to_owned(),
                    epoch: epoch.clone(),
                    seq: *seq,
                    nodes: rank_order(&run.by_node),
                    digest: assignments_digest(&run.by_node),
                })
            })
            .collect();
        replicas.sort_by(|a, b| (&a.epoch, a.seq).cmp(&(&b.epoch, b.seq)));
        self.observed.push(Observed::ReplicasOn {
            job: job.to_owned(),
            replicas,
        });
    }

    /// A recovered service's replica, as the store has it, that serves on exactly `shares` of
    /// cluster `c` ([`Hub::takeover_slots`]): its slots, and where it is in
    /// `recovering_replicas`.
    fn replica_to_take_over(
        &self,
        job: &str,
        c: u32,
        shares: &[NodeShare],
    ) -> Option<(usize, Vec<NodeSlot>)> {
        let cluster = self.cluster_name(c)?;
        let candidates = self.recovering_replicas.get(job)?;
        candidates.iter().enumerate().find_map(|(at, r)| {
            if r.cluster != cluster {
                return None;
            }
            let ids = |k: usize, _, _| vec![replica_assignment_id(job, &r.epoch, r.seq, k)];
            let slots = self
                .takeover_slots(c, shares, &r.nodes, ids, running)
                .ok()?;
            Some((at, slots))
        })
    }

    /// The slots of work an earlier leader placed on `stored` (node ids with their
    /// accelerators, in rank order) that a placement on `shares` of cluster `c` takes over:
    /// the same nodes in those slots with as many accelerators, each heard from in this term
    /// with every process `ids(node's place, first rank there, ranks there)` names reported in
    /// a state `alive` takes, and those accelerators free here. `Err` says why not.
    fn takeover_slots(
        &self,
        c: u32,
        shares: &[NodeShare],
        stored: &[(String, Vec<u32>)],
        ids: impl Fn(usize, u32, u32) -> Vec<String>,
        alive: impl Fn(&ProcessState) -> bool,
    ) -> Result<Vec<NodeSlot>, String> {
        if shares.len() != stored.len() {
            return Err(format!(
                "placed on {} nodes, ran on {}",
                shares.len(),
                stored.len()
            ));
        }
        let mut slots = Vec::with_capacity(shares.len());
        let mut rank = 0u32;
        for (k, (share, (id, accelerators))) in shares.iter().zip(stored).enumerate() {
            if self.by_slot.get(&(c, share.node)) != Some(id)
                || share.accelerators as usize != accelerators.len()
            {
                return Err(format!("node slot {} is not where {id} ran", share.node));
            }
            let n = match self.nodes.get(id) {
                Some(n) if n.heard_this_term() => n,
                _ => return Err(format!("node {id} has not reported in this term")),
            };
            if let Some(gone) = ids(k, rank, share.accelerators)
                .into_iter()
                .find(|process| !n.reports(process, &alive))
            {
                return Err(format!("{gone} is not running on node {id}"));
            }
            rank += share.accelerators;
            if self
                .used
                .get(id)
                .is_some_and(|u| accelerators.iter().any(|a| u.contains(a)))
            {
                return Err(format!("accelerators of node {id} are taken"));
            }
            slots.push(NodeSlot {
                node_id: id.clone(),
                address: n.address.clone(),
                accelerators: accelerators.clone(),
            });
        }
        Ok(slots)
    }

    /// Marks the accelerators of `slots` used.
    fn take_slots(&mut self, slots: &[NodeSlot]) {
        for slot in slots {
            self.used
                .entry(slot.node_id.clone())
                .or_default()
                .extend(slot.accelerators.iter().copied());
        }
    }

    /// Takes over the ranks of `placement` (attempt N of `job`, as the store has it) for a
    /// recovered launch of `generation` on `shares` of cluster `c`: the assignments built
    /// again from the same inputs must be the very ones the agents were handed (the digest),
    /// on the same nodes and accelerators, and every node must have reported each of its ranks
    /// running in this term. `Err` says why not (the launch then starts a new attempt).
    fn adopt(
        &mut self,
        placed: Placed<'_>,
        placement: &RankPlacement,
        gang: impl Fn(u32, u32) -> GangSpec,
    ) -> Result<Run, String> {
        let Placed {
            job,
            generation,
            cluster,
            shares,
            accelerator,
        } = placed;
        // (This process leading again: the fences it left on its runs hold the very ranks
        // taken over, which is no reason to wait; another attempt's ranks are.)
        if self.fences.get(job).is_some_and(|f| {
            f.iter()
                .any(|fence| fence.attempt != Some(placement.attempt))
        }) {
            return Err("ranks of another attempt may still be running or stopping".into());
        }
        let attempt = placement.attempt;
        let ids = |_, first: u32, count: u32| {
            (first..first + count)
                .map(|r| gang::assignment_id(job, attempt, r))
                .collect()
        };
        // Running, or done: a rank that finished its work (its end is judged again).
        let alive = |state: &ProcessState| match state {
            ProcessState::Running { .. } => true,
            ProcessState::Exited(e) => e.success() && !e.stopped_by_agent,
            _ => false,
        };
        let slots = self.takeover_slots(cluster, shares, &placement.nodes, ids, alive)?;
        let rank: u32 = shares.iter().map(|s| s.accelerators).sum();
        let mut by_node =
            gang::place(&gang(placement.attempt, rank), &slots).map_err(|e| e.to_string())?;
        for a in by_node.values_mut().flatten() {
            a.env
                .extend(visible_accelerators_env(accelerator, &a.accelerators));
        }
        if assignments_digest(&by_node) != placement.digest {
            return Err(
                "its assignments would differ from those its agents run (a changed \
                 setting or address)"
                    .into(),
            );
        }
        self.take_slots(&slots);
        let mut run = Run::new(
            job.to_owned(),
            RunKind::Gang {
                generation,
                reported: false,
                failed: None,
            },
            placement.attempt,
            rank,
        );
        run.by_node = by_node;
        Ok(run)
    }

    /// Run ids of `job` that `keep` selects.
    fn runs_of(&self, job: &str, keep: impl Fn(&Run) -> bool) -> Vec<u64> {
        self.by_job
            .get(job)
            .into_iter()
            .flatten()
            .copied()
            .filter(|id| self.runs.get(id).is_some_and(&keep))
            .collect()
    }

    /// Accelerator indices for `count` ranks of `job` on `node`: the lowest free ones it
    /// offers, or (a node that declared fewer than the fleet says) numbers past them. While the
    /// term recovers, those that ranks or replicas still to be taken over hold come after the
    /// others: the job's own first, another job's last.
    fn take_accelerators(&mut self, job: &str, node: &str, count: u32) -> Vec<u32> {
        let offered = self
            .nodes
            .get(node)
            .map(|n| n.accelerators.clone())
            .unwrap_or_default();
        let kept = self.kept_on_node.get(node);
        let rank = |i: u32| match kept {
            Some(list) => list
                .iter()
                .filter(|(_, accelerators)| accelerators.contains(&i))
                .map(|(holder, _)| if holder == job { 1 } else { 2 })
                .max()
                .unwrap_or(0),
            None => 0,
        };
        let used = self.used.entry(node.to_owned()).or_default();
        let kept_count = kept.map_or(0, |k| k.iter().map(|(_, a)| a.len()).sum::<usize>());
        // Enough numbers past the offered ones to hold `count` whatever is used or kept.
        let past = u32::try_from(used.len() + kept_count)
            .unwrap_or(u32::MAX)
            .saturating_add(count)
            .saturating_add(
                offered
                    .iter()
                    .copied()
                    .max()
                    .map_or(0, |m| m.saturating_add(1)),
            );
        // Offered ones before numbers past them; within each, free before kept.
        let mut candidates: Vec<(bool, u8, usize, u32)> = offered
            .iter()
            .copied()
            .chain((0..past).filter(|i| !offered.contains(i)))
            .enumerate()
            .filter(|(_, i)| !used.contains(i))
            .map(|(at, i)| (at >= offered.len(), rank(i), at, i))
            .collect();
        candidates.sort_unstable();
        let out: Vec<u32> = candidates
            .into_iter()
            .take(count as usize)
            .map(|(_, _, _, i)| i)
            .collect();
        used.extend(out.iter().copied());
        out
    }

    /// Gives back accelerators taken for a placement that was not made.
    fn untake(&mut self, slots: &[NodeSlot]) {
        for slot in slots {
            if let Some(u) = self.used.get_mut(&slot.node_id) {
                for a in &slot.accelerators {
                    u.remove(a);
                }
            }
        }
    }

    /// The live nodes of a placement, with accelerator indices for it; `Err` names a slot
    /// that has no live node.
    fn slots(
        &mut self,
        job: &str,
        cluster: u32,
        shares: &[NodeShare],
    ) -> Result<Vec<NodeSlot>, String> {
        let mut out = Vec::with_capacity(shares.len());
        for s in shares {
            let live = match self.by_slot.get(&(cluster, s.node)) {
                None => Err(format!("node slot {} has no registered agent", s.node)),
                Some(id) => match self.nodes.get(id) {
                    None => Err(format!("node {id} is not registered")),
                    Some(n) if n.lost => Err(format!("node {id} ({}) is lost", n.hostname)),
                    Some(n) => Ok((id.clone(), n.address.clone())),
                },
            };
            let (id, address) = match live {
                Ok(node) => node,
                Err(why) => {
                    self.untake(&out);
                    // The scheduler placed work on a slot it believes is up: tell it
                    // otherwise, so that its books (the gang's restart, the replica's
                    // replacement) follow.
                    self.observed.push(Observed::NodeFailed {
                        cluster,
                        node: s.node,
                    });
                    return Err(why);
                }
            };
            let accelerators = self.take_accelerators(job, &id, s.accelerators);
            out.push(NodeSlot {
                node_id: id,
                address,
                accelerators,
            });
        }
        Ok(out)
    }
}

/// The id of process `rank` (its node's place in the replica) of replica `seq` of `job`,
/// started by the hub of `epoch`.
fn replica_assignment_id(job: &str, epoch: &str, seq: u64, rank: usize) -> String {
    format!("{job}/replica-{epoch}.{seq}/rank-{rank}")
}

fn running(state: &ProcessState) -> bool {
    matches!(state, ProcessState::Running { .. })
}

/// Node ids with their accelerator indices, in rank order.
fn rank_order(by_node: &BTreeMap<String, Vec<Assignment>>) -> Vec<(String, Vec<u32>)> {
    let mut by_rank: Vec<(u32, String, Vec<u32>)> = by_node
        .iter()
        .map(|(node, list)| {
            let mut ranks: Vec<&Assignment> = list.iter().collect();
            ranks.sort_by_key(|a| a.rank);
            let first = ranks.first().map_or(u32::MAX, |a| a.rank);
            let accelerators = ranks
                .iter()
                .flat_map(|a| a.accelerators.iter().copied())
                .collect();
            (first, node.clone(), accelerators)
        })
        .collect();
    by_rank.sort_by_key(|r| r.0);
    by_rank.into_iter().map(|(_, n, a)| (n, a)).collect()
}

/// A digest of a gang's assignments (hex SHA-256 of their JSON, node by node in id order):
/// assignments built again from the same inputs have the same one.
fn assignments_digest(by_node: &BTreeMap<String, Vec<Assignment>>) -> String {
    let json = serde_json::to_vec(by_node).unwrap_or_default();
    Sha256::digest(&json)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Where a recovered launch was placed, for [`Hub::adopt`].
struct Placed<'a> {
    job: &'a str,
    generation: u32,
    cluster: u32,
    shares: &'a [NodeShare],
    accelerator: &'static switchyard_core::Accelerator,
}

/// The backend for agent-run clusters.
#[derive(Debug)]
pub struct AgentBackend {
    hub: AgentHub,
    /// Where lost nodes are recorded (`None` in unit tests).
    store: Option<switchyard_store::AnyStore>,
}

impl AgentBackend {
    pub fn new(hub: AgentHub) -> Self {
        AgentBackend { hub, store: None }
    }

    /// Records lost nodes in `store` too.
    pub fn with_store(mut self, store: switchyard_store::AnyStore) -> Self {
        self.store = Some(store);
        self
    }

    /// After the first pass once the term settled ([`Backend::settling`]): the running gangs
    /// it did not place again are no longer kept for it; their agents stop their ranks.
    fn end_recovery(hub: &mut Hub) {
        if hub.settled {
            hub.recovering.clear();
            // Where the services serve now, also those with no replica taken over or started
            // here (placed elsewhere, or not at all): the store forgets the earlier ones.
            let services: Vec<String> = hub.recovering_replicas.keys().cloned().collect();
            for job in services {
                hub.replicas_changed(&job);
            }
            hub.recovering_replicas.clear();
            hub.keep_on.clear();
            hub.kept_on_node.clear();
        }
    }

    /// A gang's placement (a [`Command::Launch`]) becomes per-node assignments.
    fn launch(&self, hub: &mut Hub, launch: Command) {
        let Command::Launch {
            job,
            generation,
            attempt,
            cluster,
            nodes,
            expected_end_ms,
            command,
            recovered,
            ran_before,
            ..
        } = launch
        else {
            return;
        };
        let (cluster, nodes, command) = (cluster.as_str(), nodes.as_slice(), command.as_deref());
        for id in hub.runs_of(&job, |r| !matches!(r.kind, RunKind::Replica { .. })) {
            hub.remove_run(id);
        }
        // Placed again: its earlier ranks are taken over now or not at all.
        let ran_where = hub.recovering.remove(&job).filter(|_| recovered);
        let Some(command) = command else {
            hub.add_run(Run::new(
                job,
                RunKind::Simulated {
                    generation,
                    end_ms: expected_end_ms,
                },
                attempt,
                0,
            ));
            return;
        };
        let Some((c, accelerator)) = hub.cluster(cluster).map(|c| (c.index, c.accelerator)) else {
            hub.observed.push(Observed::Failed {
                job,
                generation,
                reason: format!("cluster {cluster} is not run by agents"),
            });
            return;
        };
        let world_size: u32 = nodes.iter().map(|n| n.accelerators).sum();
        let settings = &self.hub.settings;
        let gang = |attempt: u32, world_size: u32| GangSpec {
            job_id: job.clone(),
            attempt,
            world_size,
            command: command.argv.clone(),
            env: command.env.clone(),
            checkpoint_dir: Some(checkpoint_dir(settings, &job)),
            working_dir: command.working_dir.clone(),
            master_port: gang::master_port(
                &job,
                attempt,
                settings.port_range.0,
                settings.port_range.1,
            ),
            restart: RestartPolicy::Never,
            stop_grace_ms: settings.stop_grace.as_millis() as u64,
        };
        if let Some(placement) = ran_where {
            let placed = Placed {
                job: &job,
                generation,
                cluster: c,
                shares: nodes,
                accelerator,
            };
            match hub.adopt(placed, &placement, gang) {
                Ok(run) => {
                    // What held its ranks back is the run itself now.
                    hub.fences.remove(&job);
                    tracing::info!(
                        job = %job,
                        attempt = run.attempt,
                        "took over the running ranks of the job's attempt"
                    );
                    hub.observed.push(Observed::Continued {
                        job: job.clone(),
                        generation,
                        attempt: run.attempt,
                    });
                    hub.observed.push(Observed::RanOn {
                        job: job.clone(),
                        generation,
                        ran_on: Hub::ran_on(&run),
                    });
                    hub.add_run(run);
                    return;
                }
                Err(why) => {
                    // Put back on a drained node for its ranks' sake only: a new attempt
                    // does not start there (the node takes no new work).
                    let drained = nodes.iter().find_map(|s| {
                        let id = hub.by_slot.get(&(c, s.node))?;
                        hub.drained.contains_key(id).then(|| id.clone())
                    });
                    if let Some(node) = drained {
                        hub.observed.push(Observed::Interrupted {
                            job,
                            generation,
                            reason: format!(
                                "attempt {} could not be taken over ({why}), and node {node} \
                                 is drained: placed again elsewhere",
                                placement.attempt
                            ),
                        });
                        return;
                    }
                    tracing::info!(
                        job = %job,
                        attempt,
                        "not taking over the ranks of attempt {}: {why}; starting attempt \
                         {attempt}",
                        placement.attempt
                    );
                }
            }
        }
        let spec = gang(attempt, world_size);
        let placed = hub.slots(&job, c, nodes).and_then(|slots| {
            gang::place(&spec, &slots).map_err(|e| {
                hub.untake(&slots);
                e.to_string()
            })
        });
        match placed {
            Ok(mut by_node) => {
                for a in by_node.values_mut().flatten() {
                    a.env
                        .extend(visible_accelerators_env(accelerator, &a.accelerators));
                }
                let mut run = Run::new(
                    job,
                    RunKind::Gang {
                        generation,
                        reported: false,
                        failed: None,
                    },
                    attempt,
                    world_size,
                );
                run.by_node = by_node;
                let now = hub.last_poll_ms.unwrap_or_else(now_ms);
                // What a new leader knows of where the job's ranks ran last (also when this
                // launch is a later one of its term: the first may have been held and replaced).
                if let Some(before) = ran_before
                    && !hub
                        .fences
                        .get(&run.job)
                        .is_some_and(|f| f.iter().any(|f| f.why == NEW_LEADER))
                    && let Some(fence) = hub
                        .new_leader_fence(&before, self.hub.settings.stop_grace.as_millis() as u64)
                {
                    hub.fences.entry(run.job.clone()).or_default().push(fence);
                }
                if let Some((until, why)) = hub.holding(&run.job, now) {
                    // An earlier attempt's ranks may still run: this one waits.
                    run.not_before_ms = Some(until);
                    hub.observed.push(Observed::Held {
                        job: run.job.clone(),
                        generation,
                        // A moment, not a countdown: the reason is written once.
                        why: format!(
                            "held back until {} UTC at the latest ({} s after it was placed): \
                             {why}",
                            crate::leader::utc(until.saturating_add(999)),
                            until.saturating_sub(now).saturating_add(999) / 1000
                        ),
                        interrupted: false,
                    });
                } else {
                    hub.observed.push(Observed::RanOn {
                        job: run.job.clone(),
                        generation,
                        ran_on: Hub::ran_on(&run),
                    });
                }
                hub.add_run(run);
            }
            Err(why) => {
                hub.observed.push(Observed::Interrupted {
                    job,
                    generation,
                    reason: format!("attempt {attempt} could not be placed: {why}"),
                });
            }
        }
    }

    fn add_replica(
        &self,
        hub: &mut Hub,
        job: String,
        cluster: &str,
        nodes: Vec<NodeShare>,
        command: Option<&JobCommand>,
    ) {
        let Some(command) = command else {
            // Nothing to run: the replica exists only in the scheduler's books.
            return;
        };
        let Some((c, accelerator)) = hub.cluster(cluster).map(|c| (c.index, c.accelerator)) else {
            return;
        };
        // One its agents still run where it is placed again (a new leader's first pass): the
        // same assignments, if built again they are the ones handed out before.
        if let Some((at, slots)) = hub.replica_to_take_over(&job, c, &nodes)
            && let Some(before) = hub
                .recovering_replicas
                .get_mut(&job)
                .map(|list| list.remove(at))
        {
            let by_node = self.replica_assignments(
                &job,
                (&before.epoch, before.seq),
                slots.clone(),
                command,
                accelerator,
            );
            if assignments_digest(&by_node) == before.digest {
                hub.take_slots(&slots);
                // Restarts its agent made before count as reported.
                let restarts: Vec<(String, u32)> = by_node
                    .iter()
                    .flat_map(|(node, list)| {
                        let statuses = hub.nodes.get(node).map(|n| &n.statuses);
                        list.iter().filter_map(move |a| {
                            let st = statuses?.iter().find(|st| st.assignment_id == a.id)?;
                            Some((a.id.clone(), st.restarts))
                        })
                    })
                    .collect();
                hub.replica_restarts.extend(restarts);
                tracing::info!(job = %job, seq = before.seq, "took over a serving replica");
                let world_size = slots.len() as u32;
                let mut run = Run::new(
                    job.clone(),
                    RunKind::Replica {
                        cluster: c,
                        nodes,
                        epoch: before.epoch,
                        seq: before.seq,
                    },
                    1,
                    world_size,
                );
                run.by_node = by_node;
                hub.add_run(run);
                hub.replicas_changed(&job);
                return;
            }
            tracing::info!(
                job = %job,
                "not taking over a replica: its assignments would differ from those its agents run"
            );
        }
        hub.replica_seq += 1;
        let seq = hub.replica_seq;
        let slots = match hub.slots(&job, c, &nodes) {
            Ok(s) => s,
            Err(why) => {
                hub.observed.push(Observed::Event {
                    job,
                    kind: "replica_not_started".into(),
                    message: format!(
                        "a replica could not be started: {why}; the scheduler places it again"
                    ),
                    cluster: Some(cluster.to_owned()),
                });
                return;
            }
        };
        let epoch = hub.replica_epoch.clone();
        let world_size = slots.len() as u32;
        let by_node = self.replica_assignments(&job, (&epoch, seq), slots, command, accelerator);
        let mut run = Run::new(
            job.clone(),
            RunKind::Replica {
                cluster: c,
                nodes,
                epoch,
                seq,
            },
            1,
            world_size,
        );
        run.by_node = by_node;
        hub.add_run(run);
        hub.replicas_changed(&job);
    }

    /// The assignments of replica `seq` of `job` started by the hub of `epoch`, on `slots`.
    fn replica_assignments(
        &self,
        job: &str,
        (epoch, seq): (&str, u64),
        slots: Vec<NodeSlot>,
        command: &JobCommand,
        accelerator: &switchyard_core::Accelerator,
    ) -> BTreeMap<String, Vec<Assignment>> {
        let master_addr = slots.first().map(|s| s.address.clone()).unwrap_or_default();
        let master_port = gang::master_port(
            job,
            seq as u32,
            self.hub.settings.port_range.0,
            self.hub.settings.port_range.1,
        );
        let world_size = slots.len() as u32;
        // One process per node of the replica, holding all its accelerators there (a
        // serving engine spreads itself over the devices it is given).
        slots
            .into_iter()
            .enumerate()
            .map(|(rank, slot)| {
                let node = slot.node_id.clone();
                let assignment = Assignment {
                    id: replica_assignment_id(job, epoch, seq, rank),
                    job_id: job.to_owned(),
                    attempt: 1,
                    rank: rank as u32,
                    world_size,
                    local_rank: 0,
                    master_addr: master_addr.clone(),
                    master_port,
                    command: command.argv.clone(),
                    env: {
                        let mut env = command.env.clone();
                        env.extend(visible_accelerators_env(accelerator, &slot.accelerators));
                        env
                    },
                    accelerators: slot.accelerators,
                    checkpoint_dir: Some(checkpoint_dir(&self.hub.settings, job)),
                    working_dir: command.working_dir.clone(),
                    restart: RestartPolicy::Always,
                    stop_grace_ms: self.hub.settings.stop_grace.as_millis() as u64,
                };
                (node, vec![assignment])
            })
            .collect()
    }
}

fn checkpoint_dir(settings: &AgentSettings, job: &str) -> String {
    settings
        .checkpoint_root
        .join(job)
        .to_string_lossy()
        .into_owned()
}

impl Backend for AgentBackend {
    fn name(&self) -> &'static str {
        "agents"
    }

    /// A quarter of the liveness deadline after the last poll, while any node is up: a poll
    /// that comes later than half a deadline is taken for a stalled leader (no node is
    /// declared lost for one more deadline), so with a deadline shorter than the leader's tick
    /// a dead node would otherwise never be declared lost.
    fn next_due_ms(&self) -> Option<i64> {
        let deadline = self.hub.settings.deadline_ms();
        let hub = self.hub.lock();
        let last = hub.last_poll_ms?;
        // A launch just held back: the job's reason says so at once, not a tick later (until
        // then it reads as running).
        if hub
            .observed
            .iter()
            .any(|o| matches!(o, Observed::Held { .. }))
        {
            return Some(last);
        }
        hub.any_node_up().then(|| last + (deadline / 4).max(1))
    }

    fn act(&mut self, commands: Vec<Command>) {
        let hub_handle = self.hub.clone();
        let mut hub = hub_handle.lock();
        if commands.is_empty() {
            Self::end_recovery(&mut hub);
            hub.report_replicas();
            return;
        }
        for c in commands {
            match c {
                launch @ Command::Launch { .. } => self.launch(&mut hub, launch),
                Command::AddReplica {
                    job,
                    cluster,
                    nodes,
                    command,
                    ..
                } => self.add_replica(&mut hub, job, &cluster, nodes, command.as_deref()),
                Command::RemoveReplica {
                    job,
                    cluster,
                    nodes,
                } => {
                    let c = hub.cluster(&cluster).map(|c| c.index);
                    let matching = hub.runs_of(&job, |r| {
                        matches!(&r.kind, RunKind::Replica { cluster: rc, nodes: rn, .. }
                            if Some(*rc) == c && *rn == nodes)
                    });
                    if let Some(id) = matching.first() {
                        hub.remove_run(*id);
                        hub.replicas_changed(&job);
                    }
                }
                Command::Stop { job } => {
                    for id in hub.runs_of(&job, |_| true) {
                        hub.remove_run(id);
                    }
                    hub.recovering.remove(&job);
                    hub.recovering_replicas.remove(&job);
                }
            }
        }
        Self::end_recovery(&mut hub);
        hub.report_replicas();
    }

    fn poll(&mut self, now_ms: i64) -> Vec<Observed> {
        let settings = self.hub.settings.clone();
        let mut hub = self.hub.lock();
        // Names first: events of this very poll (a restart on a node found down) name hosts.
        let (mut out, rest): (Vec<Observed>, Vec<Observed>) = std::mem::take(&mut hub.observed)
            .into_iter()
            .partition(|o| matches!(o, Observed::NodeNamed { .. }));
        hub.observed = rest;
        if std::mem::take(&mut hub.resync_down) {
            for c in &hub.clusters {
                for slot in 0..c.slots {
                    let live = hub
                        .by_slot
                        .get(&(c.index, slot))
                        .and_then(|id| hub.nodes.get(id))
                        .is_some_and(|n| !n.lost);
                    if !live {
                        out.push(Observed::NodeFailed {
                            cluster: c.index,
                            node: slot,
                        });
                    } else if hub
                        .by_slot
                        .get(&(c.index, slot))
                        .is_some_and(|id| hub.drained.contains_key(id))
                    {
                        out.push(Observed::NodeDrained {
                            cluster: c.index,
                            node: slot,
                        });
                    }
                }
            }
            // Repairs queued before this point are stale: the list above is the truth.
            hub.observed.retain(|o| {
                !matches!(
                    o,
                    Observed::NodeRepaired { .. }
                        | Observed::NodeFailed { .. }
                        | Observed::NodeDrained { .. }
                )
            });
        }
        // What handlers queued (repairs, finished gangs, events) happened before anything this
        // poll finds: deliver it first, so a repair never overtakes a later loss.
        out.append(&mut hub.observed);
        let deadline = settings.deadline_ms();
        // A poll long after the previous one means this process (or its clock) stood still,
        // not that every node went silent: give every node a full deadline from now before
        // declaring it lost (without pretending to have heard from it).
        // (With no node up there is nothing to declare lost, and no need to poll often.)
        if let Some(prev) = hub.last_poll_ms
            && now_ms - prev > deadline / 2
            && hub.any_node_up()
        {
            tracing::warn!(
                gap_ms = now_ms - prev,
                "the agents' backend was not polled for a while; no node is declared lost for one more deadline"
            );
            hub.no_loss_before_ms = now_ms + deadline;
        }
        hub.last_poll_ms = Some(now_ms);
        let grace = now_ms < hub.no_loss_before_ms;
        let mut lost = Vec::new();
        for n in hub.nodes.values_mut() {
            if !grace && !n.lost && now_ms - n.last_seen_ms > deadline {
                lost.push(n.lose(None));
            }
        }
        for (id, peer) in hub.cut_off_with(&lost, now_ms) {
            if let Some(n) = hub.nodes.get_mut(&id) {
                lost.push(n.lose(Some(peer)));
            }
        }
        // A node the store has as ready whose agent has not registered with this term within
        // a deadline of its start (it died around the change of leader, and no leader of
        // this process ever heard from it) is lost too: its slot is free for another host.
        // Nothing of this term runs on it, so only the store and the node list hear of it.
        let mut unheard: Vec<String> = Vec::new();
        if let Some(started) = hub.term_started_ms
            && !grace
            && now_ms - started > deadline
        {
            unheard = hub
                .on_record
                .iter()
                .filter(|(id, r)| {
                    !r.lost && r.place.is_some_and(|p| hub.unheard_holds_its_slot(id, p))
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in &unheard {
                if let Some(r) = hub.on_record.get_mut(id) {
                    r.lost = true;
                    tracing::warn!(
                        node = %id,
                        host = %r.hostname,
                        "node lost: node {id} ({}) has not registered since this leader's term \
                         began {} ms ago",
                        r.hostname,
                        now_ms - started
                    );
                }
            }
        }
        if let (Some(store), Ok(rt)) = (&self.store, tokio::runtime::Handle::try_current())
            && !(lost.is_empty() && unheard.is_empty())
        {
            let store = store.clone();
            let ids: Vec<String> = lost.iter().map(|l| l.id.clone()).chain(unheard).collect();
            rt.spawn(async move {
                use switchyard_store::StoreWrite as _;
                for id in ids {
                    if let Err(e) = store.mark_node_lost(&id, now_ms).await {
                        tracing::warn!(node = %id, error = %e, "could not record a lost node");
                    }
                }
            });
        }
        for LostNode {
            cluster,
            id,
            host,
            with,
            ..
        } in &lost
        {
            let message = match with {
                None => format!(
                    "node {id} ({host}) missed {} heartbeats ({deadline} ms)",
                    settings.lost_after
                ),
                Some(peer) => format!(
                    "node {id} ({host}) was silent for {} ms when node {peer}, which shares a \
                     gang with it, was lost: taken as cut off with it",
                    now_ms - hub.nodes.get(id).map_or(now_ms, |n| n.last_seen_ms)
                ),
            };
            tracing::warn!(node = %id, host = %host, "node lost: {message}");
            // Its processes are gone as far as the control plane knows.
            let affected: BTreeSet<String> = hub
                .on_node
                .get(id)
                .into_iter()
                .flatten()
                .filter_map(|r| hub.runs.get(r).map(|r| r.job.clone()))
                .collect();
            for job in affected {
                out.push(Observed::Event {
                    job,
                    kind: "node_lost".into(),
                    message: message.clone(),
                    cluster: hub.cluster_name(*cluster).map(str::to_owned),
                });
            }
        }
        // Side by side, after every note (those lost on their own first): the nodes this poll
        // lost fail together, so a gang on several of them restarts once.
        lost.sort_unstable_by_key(|l| (l.cluster, l.slot));
        for l in lost {
            out.push(Observed::NodeFailed {
                cluster: l.cluster,
                node: l.slot,
            });
        }
        let waiting: Vec<u64> = hub.pending_failures.iter().copied().collect();
        for id in waiting {
            let Some(run) = hub.runs.get(&id) else {
                hub.pending_failures.remove(&id);
                continue;
            };
            let RunKind::Gang {
                generation,
                reported: false,
                failed: Some((at, blame_job, reason)),
            } = &run.kind
            else {
                hub.pending_failures.remove(&id);
                continue;
            };
            let heard = run.by_node.keys().all(|node| {
                hub.nodes
                    .get(node)
                    .is_some_and(|n| !n.lost && n.last_seen_ms > *at)
            });
            if !heard {
                continue;
            }
            let (job, generation, reason) = (run.job.clone(), *generation, reason.clone());
            out.push(if *blame_job {
                Observed::Failed {
                    job,
                    generation,
                    reason,
                }
            } else {
                Observed::Interrupted {
                    job,
                    generation,
                    reason,
                }
            });
            if let Some(RunKind::Gang { reported, .. }) = hub.runs.get_mut(&id).map(|r| &mut r.kind)
            {
                *reported = true;
            }
            hub.pending_failures.remove(&id);
        }
        let fences = std::mem::take(&mut hub.fences);
        hub.fences = fences
            .into_iter()
            .filter_map(|(job, fences)| {
                let fences: Vec<Fence> = fences
                    .into_iter()
                    .filter(|f| !hub.lifted(&job, f, now_ms))
                    .collect();
                (!fences.is_empty()).then_some((job, fences))
            })
            .collect();
        let due: Vec<u64> = hub
            .runs
            .iter()
            // (A fence past its end was pruned just now.)
            .filter(|(_, run)| run.not_before_ms.is_some() && !hub.fences.contains_key(&run.job))
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            let Some(run) = hub.runs.get_mut(&id) else {
                continue;
            };
            run.not_before_ms = None;
            if let RunKind::Gang { generation, .. } = run.kind {
                out.push(Observed::Began {
                    job: run.job.clone(),
                    generation,
                    since_ms: None,
                });
                out.push(Observed::RanOn {
                    job: run.job.clone(),
                    generation,
                    ran_on: Hub::ran_on(run),
                });
            }
        }
        let due: Vec<u64> = hub
            .simulated
            .iter()
            .copied()
            .filter(|id| {
                hub.runs.get(id).is_some_and(
                    |r| matches!(r.kind, RunKind::Simulated { end_ms, .. } if end_ms <= now_ms),
                )
            })
            .collect();
        for id in due {
            hub.simulated.remove(&id);
            if let Some(run) = hub.runs.get(&id)
                && let RunKind::Simulated { generation, .. } = run.kind
            {
                out.push(Observed::Finished {
                    job: run.job.clone(),
                    generation,
                });
            }
        }
        out.append(&mut hub.observed);
        out
    }

    fn reset(&mut self) {
        let mut hub = self.hub.lock();
        // What runs on nodes cut off goes on through a change of term: fence it.
        let now = hub.last_poll_ms.unwrap_or_else(now_ms);
        for run in std::mem::take(&mut hub.runs).into_values() {
            hub.fence_if_running(&run, now);
        }
        for n in hub.nodes.values_mut() {
            n.term_reports = n.status_reports;
        }
        hub.on_node.clear();
        hub.by_job.clear();
        hub.pending_failures.clear();
        hub.simulated.clear();
        hub.used.clear();
        hub.observed.clear();
        hub.resync_down = true;
        hub.term_started_ms = Some(now_ms());
        hub.recovering.clear();
        hub.recovering_replicas.clear();
        hub.keep_on.clear();
        hub.kept_on_node.clear();
        hub.replicas_changed.clear();
        hub.settled = false;
    }

    fn live_recovered_replicas(&self) -> Vec<crate::backend::ServingReplicas> {
        let hub = self.hub.lock();
        hub.recovering_replicas
            .iter()
            .map(|(job, replicas)| {
                let live = replicas
                    .iter()
                    .filter_map(|r| {
                        let shares = r
                            .nodes
                            .iter()
                            .enumerate()
                            .map(|(rank, (id, accelerators))| {
                                // (Not one on a drained node: were it not taken over after
                                // all, a new replica would start there.)
                                let n = hub.nodes.get(id).filter(|n| {
                                    n.heard_this_term()
                                        && hub.cluster_name(n.cluster) == Some(r.cluster.as_str())
                                        && !hub.drained.contains_key(id.as_str())
                                })?;
                                let process = replica_assignment_id(job, &r.epoch, r.seq, rank);
                                n.reports(&process, running).then_some(NodeShare {
                                    node: n.slot,
                                    accelerators: accelerators.len() as u32,
                                })
                            })
                            .collect::<Option<Vec<NodeShare>>>()?;
                        Some((r.cluster.clone(), shares))
                    })
                    .collect();
                (job.clone(), live)
            })
            .collect()
    }

    fn runs_on_record(&mut self, runs: &[(String, RanOn)]) {
        let mut hub = self.hub.lock();
        for (job, ran_on) in runs {
            for r in &ran_on.replicas {
                for (node, accelerators) in &r.nodes {
                    hub.kept_on_node
                        .entry(node.clone())
                        .or_default()
                        .push((job.clone(), accelerators.clone()));
                }
                for (rank, (node, _)) in r.nodes.iter().enumerate() {
                    let id = replica_assignment_id(job, &r.epoch, r.seq, rank);
                    hub.keep_on
                        .entry(node.clone())
                        .or_default()
                        .push((job.clone(), vec![id]));
                }
            }
            if !ran_on.replicas.is_empty() {
                // New replicas' numbers (and so their ports) follow those taken over.
                let last = ran_on.replicas.iter().map(|r| r.seq).max().unwrap_or(0);
                hub.replica_seq = hub.replica_seq.max(last);
                hub.recovering_replicas
                    .insert(job.clone(), ran_on.replicas.clone());
            }
            let Some(placement) = &ran_on.placement else {
                continue;
            };
            let mut rank = 0u32;
            for (node, accelerators) in &placement.nodes {
                hub.kept_on_node
                    .entry(node.clone())
                    .or_default()
                    .push((job.clone(), accelerators.clone()));
                let n = u32::try_from(accelerators.len()).unwrap_or(u32::MAX);
                let ids = (rank..rank.saturating_add(n))
                    .map(|r| gang::assignment_id(job, placement.attempt, r))
                    .collect();
                rank = rank.saturating_add(n);
                hub.keep_on
                    .entry(node.clone())
                    .or_default()
                    .push((job.clone(), ids));
            }
            hub.recovering.insert(job.clone(), placement.clone());
        }
    }

    /// Until every node of a gang running when the term began has reported in this term (or
    /// a node-loss deadline has passed since it began): the scheduler then knows which of
    /// those nodes are up, and the ranks they run can be taken over.
    fn settling(&self, now_ms: i64) -> bool {
        let deadline = self.hub.settings.deadline_ms();
        let mut hub = self.hub.lock();
        if hub.settled {
            return false;
        }
        let within = hub
            .term_started_ms
            .is_some_and(|t| now_ms < t.saturating_add(deadline));
        let unheard = hub.keep_on.iter().any(|(node, jobs)| {
            jobs.iter().any(|(job, _)| hub.is_recovering(job))
                && !hub.nodes.get(node).is_some_and(Node::heard_this_term)
        });
        hub.settled = (hub.recovering.is_empty() && hub.recovering_replicas.is_empty())
            || !within
            || !unheard;
        !hub.settled
    }

    fn drain_epoch(&self) -> Option<u64> {
        Some(self.hub.lock().drain_epoch)
    }

    fn drains_on_record(&mut self, drained: &[(String, switchyard_store::NodeDrain)], epoch: u64) {
        let mut hub = self.hub.lock();
        if hub.drain_epoch != epoch {
            // A drain was told since the store was read: the next read has it.
            return;
        }
        let now: HashMap<&str, &switchyard_store::NodeDrain> =
            drained.iter().map(|(id, d)| (id.as_str(), d)).collect();
        let gone: Vec<String> = hub
            .drained
            .keys()
            .filter(|id| !now.contains_key(id.as_str()))
            .cloned()
            .collect();
        for id in gone {
            hub.set_drain(&id, None);
        }
        for (id, d) in now {
            if hub.drained.get(id) != Some(d) {
                hub.set_drain(id, Some(d.clone()));
            }
        }
    }

    fn nodes_on_record(&mut self, nodes: &[switchyard_store::NodeRecord]) {
        let mut hub = self.hub.lock();
        // Events name the nodes of the store's records by their hosts before they register.
        let named: Vec<Observed> = nodes
            .iter()
            .filter_map(|n| {
                Some(Observed::NodeNamed {
                    cluster: hub.cluster(&n.cluster)?.index,
                    node: u32::try_from(n.slot).ok()?,
                    host: n.hostname.clone(),
                })
            })
            .collect();
        hub.observed.extend(named);
        hub.drained = nodes
            .iter()
            .filter_map(|n| Some((n.id.clone(), n.drained.clone()?)))
            .collect();
        hub.on_record = nodes
            .iter()
            .map(|n| {
                // Only the one field is read: a record another release wrote may hold fields
                // this one's `NodeInfo` refuses. One that does not say takes the default.
                let said = serde_json::from_str::<serde_json::Value>(&n.info)
                    .ok()
                    .and_then(|v| v.get("orphan_stop_ms")?.as_u64());
                let record = NodeOnRecord {
                    orphan_stop_ms: orphan_stop_of(said),
                    boot: n.boot_id.clone(),
                    place: hub
                        .cluster(&n.cluster)
                        .zip(u32::try_from(n.slot).ok())
                        .map(|(c, slot)| (c.index, slot)),
                    hostname: n.hostname.clone(),
                    address: n.address.clone(),
                    accelerators: u32::try_from(n.accelerators).unwrap_or(0),
                    heartbeat_ms: n.heartbeat_ms,
                    lost: n.state == switchyard_store::NodeState::Lost,
                };
                (n.id.clone(), record)
            })
            .collect();
    }
}

/// Most runs (job and attempt) one push may name among its [`PushedOutput::unverified`] lines
/// (each costs store reads); lines of further runs are dropped.
const MAX_ADOPTED_RUNS: usize = 64;

/// The most of one output line the server keeps, in bytes: an agent splits lines at
/// [`switchyard_agent::supervisor::MAX_LINE_BYTES`] of the process's bytes, and each byte
/// that is not UTF-8 becomes U+FFFD (three bytes), so an agent's line is never longer; a longer
/// one (not from an agent) is cut, so that a page of logs stays bounded.
pub const MAX_STORED_LINE_BYTES: usize = 3 * switchyard_agent::supervisor::MAX_LINE_BYTES;

/// `line` cut to [`MAX_STORED_LINE_BYTES`] at a character boundary.
fn cut_line(mut line: String) -> String {
    if line.len() > MAX_STORED_LINE_BYTES {
        let mut end = MAX_STORED_LINE_BYTES;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
    }
    line
}

/// Assignment ids, handed to no node this term, whose lines one push may offer for adoption
/// (each is looked up across the fleet); lines of further ones are refused.
const MAX_UNVERIFIED_IDS: usize = 4 * MAX_ADOPTED_RUNS;

/// The lines of a push to store: those of assignments the node was handed, and the
/// [`PushedOutput::unverified`] ones the store vouches for — a gang rank's line when its attempt
/// started on the node's cluster before the leader term (the `started` event says
/// `attempt N:`) and its rank is within the job's size; a service replica's when the service had
/// a replica added on that cluster before the term. Others are dropped with a warning.
pub(crate) async fn lines_to_store(
    store: &switchyard_store::AnyStore,
    pushed: PushedOutput,
) -> Result<Vec<OutputLine>, switchyard_store::StoreError> {
    use switchyard_store::{EventQuery, StoreRead as _};
    let PushedOutput {
        mut lines,
        unverified,
        cluster,
        term_started_ms,
    } = pushed;
    if unverified.is_empty() {
        return Ok(lines);
    }
    // (job, attempt; 0 for a replica) → the job's size when the store vouches for the run.
    let mut vouched: HashMap<(String, u32), Option<i64>> = HashMap::new();
    for l in &unverified {
        let key = (l.job.clone(), l.attempt);
        if vouched.contains_key(&key) {
            continue;
        }
        let mut size = None;
        if vouched.len() < MAX_ADOPTED_RUNS
            && let Some(job) = store.get_job(&l.job, None).await?
        {
            let replica = replica_of(&l.source).is_some();
            let prefix = format!("attempt {}:", l.attempt);
            let ran = store
                .has_event(&EventQuery {
                    job_id: &l.job,
                    kind: if replica { "replica_added" } else { "started" },
                    cluster: &cluster,
                    prefix: if replica { "" } else { &prefix },
                    before_ms: term_started_ms,
                })
                .await?;
            if ran && (!replica || job.kind == "inference") {
                size = Some(job.accelerators);
            }
        }
        vouched.insert(key, size);
    }
    let (kept, dropped): (Vec<OutputLine>, Vec<OutputLine>) =
        unverified.into_iter().partition(|l| {
            vouched[&(l.job.clone(), l.attempt)]
                .is_some_and(|size| l.attempt == 0 || i64::from(l.rank) < size)
        });
    if let Some(example) = dropped.first() {
        tracing::warn!(
            cluster = %cluster,
            dropped = dropped.len(),
            example = %example.source,
            "dropped output lines of assignments no node was handed in this leader term and the store does not show running on this node's cluster before it"
        );
    }
    lines.extend(kept);
    Ok(lines)
}

/// The agent protocol's routes (`/v1/agent/…`). Agents send bigger bodies than the API's
/// clients (batches of output lines), so these routes take up to [`MAX_AGENT_BODY_BYTES`].
pub(crate) fn routes() -> axum::Router<crate::http::AppState> {
    use axum::routing::{get, post, put};
    axum::Router::new()
        .route("/v1/agent/register", post(handlers::register))
        .route("/v1/agent/nodes", get(handlers::list))
        .route("/v1/agent/nodes/{id}/heartbeat", post(handlers::heartbeat))
        .route(
            "/v1/agent/nodes/{id}/assignments",
            get(handlers::assignments),
        )
        .route("/v1/agent/nodes/{id}/status", put(handlers::status))
        .route("/v1/agent/nodes/{id}/logs", post(handlers::logs))
        .route("/v1/agent/nodes/{id}/drain", post(handlers::drain))
        .route("/v1/agent/nodes/{id}/resume", post(handlers::resume))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_AGENT_BODY_BYTES))
        // None of them takes a query parameter: one given is refused rather than ignored
        // (`drain?force=1` must not drain as if it meant something).
        .layer(axum::middleware::from_fn(no_query_parameters))
}

async fn no_query_parameters(
    q: crate::http::QueryParams,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<axum::response::Response, crate::http::ApiError> {
    crate::http::query(q, &[])?;
    Ok(next.run(request).await)
}

/// Largest body an agent may send.
pub const MAX_AGENT_BODY_BYTES: usize = 16 << 20;

mod handlers {
    use axum::Json;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::extract::rejection::BytesRejection;
    use axum::http::{HeaderMap, StatusCode};
    use switchyard_agent::protocol::{
        AssignmentList, BOOT_ID_HEADER, LogBatch, NodeInfo, Registration, StatusReport,
    };

    use switchyard_store::{
        NodeDrain, NodeRecord, NodeRegistration, StoreRead as _, StoreWrite as _,
    };

    use super::{
        AgentError, AgentHub, DrainAnswer, DrainRequest, DrainView, MAX_AGENT_BODY_BYTES, NodeView,
    };
    use crate::http::{ApiError, AppState, Auth, PathId, spawned_within};
    use crate::leader::now_ms;

    /// The hub, once the caller may act as an agent.
    fn hub(s: &AppState, auth: &Auth) -> Result<AgentHub, ApiError> {
        if !auth.may_act_as_agent() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "only agent and admin tokens may use /v1/agent (for a node agent `switchyard token create --agent`; for a person listing or draining nodes `switchyard token create --tenant TEAM --admin`)",
            ));
        }
        let hub = s.agents.clone().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "this server does not run node agents (start it with `switchyard server --agents`)",
            )
        })?;
        // Only the scheduling leader knows the desired state; a follower answering would hand
        // agents an empty set and make them stop everything. Agents retry a 503 and keep
        // running what they run. A leader whose lease ran out unrenewed (its store is slow or
        // gone) may have been replaced already: a new leader counts on its silence.
        if !s.metrics.holds_lease(now_ms()) {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "this replica is not the scheduling leader (see /readyz): node agents, and \
                 `switchyard nodes` with its drains, must reach the leader",
            ));
        }
        Ok(hub)
    }

    fn refused(e: AgentError) -> ApiError {
        match e {
            AgentError::UnknownNode(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_node", e.to_string())
            }
            AgentError::Invalid(_) => ApiError::bad(e.to_string()),
            AgentError::Conflict(_) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
        }
    }

    fn body<T: serde::de::DeserializeOwned>(
        body: Result<Bytes, BytesRejection>,
        what: &str,
    ) -> Result<T, ApiError> {
        let body =
            body.map_err(|r| crate::listen::body_rejected(&r, what, MAX_AGENT_BODY_BYTES))?;
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the body is not a valid {what}: {e}"),
            )
        })
    }

    /// The caller's boot id ([`BOOT_ID_HEADER`]), if it sent one.
    fn boot(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
        let Some(value) = headers.get(BOOT_ID_HEADER) else {
            return Ok(None);
        };
        match value.to_str() {
            Ok(v) if !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()) => {
                Ok(Some(v.to_owned()))
            }
            _ => Err(ApiError::bad(format!(
                "header {BOOT_ID_HEADER} must be 1 to 64 visible ASCII characters"
            ))),
        }
    }

    /// The hub, for a call about `node` from the machine registered as it.
    fn node_hub(
        s: &AppState,
        auth: &Auth,
        headers: &HeaderMap,
        node: &str,
    ) -> Result<AgentHub, ApiError> {
        let hub = hub(s, auth)?;
        hub.check_boot(node, boot(headers)?.as_deref())
            .map_err(refused)?;
        Ok(hub)
    }

    pub(super) async fn register(
        State(s): State<AppState>,
        auth: Auth,
        headers: HeaderMap,
        raw: Result<Bytes, BytesRejection>,
    ) -> Result<Json<Registration>, ApiError> {
        let hub = hub(&s, &auth)?;
        let info: NodeInfo = body(raw, "node description (NodeInfo)")?;
        let boot = boot(&headers)?;
        let (cluster, slots) = hub.resolve(&info, boot.as_deref()).map_err(refused)?;
        let now = now_ms();
        let record = s
            .store
            .register_node(&NodeRegistration {
                cluster: cluster.clone(),
                hostname: info.hostname.trim().to_owned(),
                address: info.address.clone().unwrap_or_default(),
                cpus: i64::from(info.cpus),
                memory_bytes: i64::try_from(info.memory_bytes).unwrap_or(i64::MAX),
                accelerators: info.accelerators.len() as i64,
                info: serde_json::to_string(&info).unwrap_or_default(),
                boot_id: boot.clone(),
                now_ms: now,
                slots: i64::from(slots),
            })
            .await?;
        let slot = u32::try_from(record.slot)
            .map_err(|_| ApiError::bad(format!("stored slot {} is invalid", record.slot)))?;
        let r = hub
            .admit(&info, boot.as_deref(), &cluster, &record.id, slot, now)
            .map_err(refused)?;
        s.wake.notify_one();
        Ok(Json(r))
    }

    /// Longest drain reason kept.
    const MAX_REASON_BYTES: usize = 1024;

    /// The stored node `node` names: its id, or its host name where that is one node's.
    async fn stored_node(s: &AppState, node: &str) -> Result<NodeRecord, ApiError> {
        let nodes = s.store.nodes().await?;
        let by_host: Vec<&NodeRecord> = nodes.iter().filter(|n| n.hostname == node).collect();
        if let Some(n) = nodes.iter().find(|n| n.id == node) {
            return Ok(n.clone());
        }
        match by_host.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_node",
                format!("no node has the id or host name `{node}` (see `switchyard nodes`)"),
            )),
            many => Err(ApiError::new(
                StatusCode::CONFLICT,
                "ambiguous_node",
                format!(
                    "host `{node}` is registered in several clusters: give one of its node ids ({})",
                    many.iter()
                        .map(|n| format!("{} in {}", n.id, n.cluster))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }

    /// Drains or resumes the node `node` names, for an admin.
    async fn set_drain(
        s: &AppState,
        auth: &Auth,
        node: &str,
        reason: Option<String>,
        drain: bool,
    ) -> Result<Json<DrainAnswer>, ApiError> {
        if !auth.0.admin {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "only admin tokens may drain or resume nodes \
                 (`switchyard token create --tenant ops --admin`)",
            ));
        }
        let hub = hub(s, auth)?;
        let record = stored_node(s, node).await?;
        // Drained again: a new reason replaces the old, none given keeps it; the time stays.
        let drain = drain.then(|| NodeDrain {
            reason: reason
                .map(|r| r.trim().to_owned())
                .filter(|r| !r.is_empty())
                .or_else(|| record.drained.as_ref().map(|d| d.reason.clone()))
                .unwrap_or_default(),
            since_ms: record.drained.as_ref().map_or_else(now_ms, |d| d.since_ms),
        });
        let stored = s
            .store
            .set_node_drain(&record.id, drain.as_ref())
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "unknown_node",
                    format!("node {} is no longer registered", record.id),
                )
            })?;
        match &stored.drained {
            Some(d) => tracing::info!(
                node = %stored.id, host = %stored.hostname, cluster = %stored.cluster,
                by = %auth.0.tenant, reason = %d.reason, "node drained"
            ),
            None => tracing::info!(
                node = %stored.id, host = %stored.hostname, cluster = %stored.cluster,
                by = %auth.0.tenant, was_drained = record.drained.is_some(), "node resumed"
            ),
        }
        hub.set_drain(&stored.id, stored.drained.clone());
        s.wake.notify_one();
        let state = hub.node_state(&stored.id).map(str::to_owned);
        Ok(Json(DrainAnswer {
            id: stored.id,
            cluster: stored.cluster,
            hostname: stored.hostname,
            drained: stored.drained.as_ref().map(DrainView::from),
            was_drained: record.drained.is_some(),
            state,
        }))
    }

    pub(super) async fn drain(
        State(s): State<AppState>,
        auth: Auth,
        PathId(node): PathId,
        raw: Result<Bytes, BytesRejection>,
    ) -> Result<Json<DrainAnswer>, ApiError> {
        let empty = raw
            .as_ref()
            .is_ok_and(|b| b.iter().all(u8::is_ascii_whitespace));
        let what = "drain request ({\"reason\": \"…\"})";
        let request: DrainRequest = if empty {
            DrainRequest { reason: None }
        } else {
            // (An object: serde would also take the fields as an array.)
            let value: serde_json::Value = body(raw, what)?;
            if !value.is_object() {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    format!("the body is not a valid {what}: expected a JSON object"),
                ));
            }
            serde_json::from_value(value).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    format!("the body is not a valid {what}: {e}"),
                )
            })?
        };
        if let Some(reason) = &request.reason {
            check_reason(reason)?;
        }
        set_drain(&s, &auth, &node, request.reason, true).await
    }

    /// A drain reason is shown in tables and logs: at most [`MAX_REASON_BYTES`], and nothing
    /// that moves the cursor or hides text (control, bidirectional and zero-width characters).
    pub(super) fn check_reason(reason: &str) -> Result<(), ApiError> {
        if reason.len() > MAX_REASON_BYTES {
            return Err(ApiError::bad(format!(
                "reason: at most {MAX_REASON_BYTES} bytes"
            )));
        }
        // Unicode's control (Cc), format (Cf) and line/paragraph separator (Zl, Zp) characters.
        let hidden = |c: char| {
            c.is_control()
                || matches!(
                    c,
                    '\u{00AD}'
                        | '\u{0600}'..='\u{0605}'
                        | '\u{061C}'
                        | '\u{06DD}'
                        | '\u{070F}'
                        | '\u{0890}'..='\u{0891}'
                        | '\u{08E2}'
                        | '\u{180E}'
                        | '\u{200B}'..='\u{200F}'
                        | '\u{2028}'..='\u{202E}'
                        | '\u{2060}'..='\u{2064}'
                        | '\u{2066}'..='\u{206F}'
                        | '\u{FEFF}'
                        | '\u{FFF9}'..='\u{FFFB}'
                        | '\u{110BD}'
                        | '\u{110CD}'
                        | '\u{13430}'..='\u{1343F}'
                        | '\u{1BCA0}'..='\u{1BCA3}'
                        | '\u{1D173}'..='\u{1D17A}'
                        | '\u{E0001}'
                        | '\u{E0020}'..='\u{E007F}'
                )
        };
        if let Some(c) = reason.chars().find(|&c| hidden(c)) {
            return Err(ApiError::bad(format!(
                "reason: {:?} is a control or invisible character; give plain text on one line",
                c
            )));
        }
        Ok(())
    }

    pub(super) async fn resume(
        State(s): State<AppState>,
        auth: Auth,
        PathId(node): PathId,
        raw: Result<Bytes, BytesRejection>,
    ) -> Result<Json<DrainAnswer>, ApiError> {
        if !raw
            .as_ref()
            .is_ok_and(|b| b.iter().all(u8::is_ascii_whitespace))
        {
            return Err(ApiError::bad("resume takes no body"));
        }
        set_drain(&s, &auth, &node, None, false).await
    }

    pub(super) async fn list(
        State(s): State<AppState>,
        auth: Auth,
    ) -> Result<Json<Vec<NodeView>>, ApiError> {
        let hub = hub(&s, &auth)?;
        Ok(Json(hub.nodes()))
    }

    pub(super) async fn heartbeat(
        State(s): State<AppState>,
        auth: Auth,
        headers: HeaderMap,
        PathId(id): PathId,
    ) -> Result<StatusCode, ApiError> {
        let now = now_ms();
        let hub = node_hub(&s, &auth, &headers, &id)?;
        if hub.heartbeat(&id, now).map_err(refused)? {
            // The hub has taken the sign of life; the agent waits for the store's copy a moment
            // only, or a stalled store would hold its next heartbeat past the loss deadline. A
            // copy the store did not take is written again at the next heartbeat (a late one
            // never overwrites a newer state: the store checks the times).
            let store = s.store.clone();
            let write = async move {
                if let Err(e) = store.node_heartbeat(&id, now).await {
                    tracing::warn!(node = %id, error = %e, "could not record a heartbeat");
                    hub.persist_failed(&id);
                }
            };
            if spawned_within(super::HEARTBEAT_WRITE_WAIT, write)
                .await
                .is_none()
            {
                tracing::warn!("a heartbeat's store write is slow; answering meanwhile");
            }
        }
        Ok(StatusCode::NO_CONTENT)
    }

    pub(super) async fn assignments(
        State(s): State<AppState>,
        auth: Auth,
        headers: HeaderMap,
        PathId(id): PathId,
    ) -> Result<Json<AssignmentList>, ApiError> {
        let list = node_hub(&s, &auth, &headers, &id)?
            .assignments(&id, now_ms())
            .map_err(refused)?;
        Ok(Json(list))
    }

    pub(super) async fn status(
        State(s): State<AppState>,
        auth: Auth,
        headers: HeaderMap,
        PathId(id): PathId,
        raw: Result<Bytes, BytesRejection>,
    ) -> Result<StatusCode, ApiError> {
        let hub = node_hub(&s, &auth, &headers, &id)?;
        let report: StatusReport = body(raw, "status report")?;
        hub.status(&id, report, now_ms()).map_err(refused)?;
        s.wake.notify_one();
        Ok(StatusCode::NO_CONTENT)
    }

    pub(super) async fn logs(
        State(s): State<AppState>,
        auth: Auth,
        headers: HeaderMap,
        PathId(id): PathId,
        raw: Result<Bytes, BytesRejection>,
    ) -> Result<StatusCode, ApiError> {
        let hub = node_hub(&s, &auth, &headers, &id)?;
        let batch: LogBatch = body(raw, "log batch")?;
        let pushed = hub.output(&id, batch, now_ms()).map_err(refused)?;
        // Stored in a task of its own; the agent waits one heartbeat interval at most, or a
        // stalled store would hold its next heartbeat (one sync does both) past the loss
        // deadline. Told to push again meanwhile, it keeps the lines; the store drops repeats.
        let store = s.store.clone();
        let write = async move {
            let lines = super::lines_to_store(&store, pushed).await?;
            crate::leader::store_output(&store, lines).await
        };
        match spawned_within(hub.settings().heartbeat_interval, write).await {
            Some(stored) => {
                stored?;
                Ok(StatusCode::NO_CONTENT)
            }
            None => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the store is slow to take these lines: push them again (repeats are dropped)",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use switchyard_agent::protocol::{AcceleratorInfo, ExitInfo};

    use super::*;

    fn hub() -> AgentHub {
        let fleet = Fleet::from_toml(
            &switchyard_core::fleet::local_fleet_toml("t", 3, 2, ""),
            "t.toml",
        )
        .expect("fleet");
        AgentHub::new(
            &fleet,
            AgentSettings {
                heartbeat_interval: Duration::from_millis(100),
                lost_after: 3,
                checkpoint_root: PathBuf::from("/ckpt"),
                ..Default::default()
            },
        )
    }

    fn info(host: &str, accelerators: u32) -> NodeInfo {
        NodeInfo {
            hostname: host.into(),
            cluster: Some("local".into()),
            cpus: 4,
            memory_bytes: 1 << 30,
            accelerators: (0..accelerators)
                .map(|index| AcceleratorInfo {
                    index,
                    name: "declared".into(),
                    memory_mib: None,
                    uuid: None,
                })
                .collect(),
            address: Some(format!("10.0.0.{}", host.len())),
            orphan_stop_ms: Some(5_000),
            protocol_version: PROTOCOL_VERSION,
            agent_version: "test".into(),
        }
    }

    /// Registers `host` in `slot` (as the store would assign).
    fn join(h: &AgentHub, host: &str, slot: u32, now: i64) -> String {
        let boot = format!("boot-of-{host}");
        let (cluster, slots) = h.resolve(&info(host, 2), Some(&boot)).expect("resolves");
        assert_eq!((cluster.as_str(), slots), ("local", 3));
        let id = format!("n-{host}");
        h.admit(&info(host, 2), Some(&boot), &cluster, &id, slot, now)
            .expect("admitted");
        id
    }

    /// A node must offer each of its accelerators once: two with index 0 on a 2-accelerator
    /// cluster would leave index 1 undeclared, and a rank would be handed it.
    #[test]
    fn an_accelerator_offered_twice_is_refused() {
        let h = hub();
        let mut twice = info("a", 2);
        twice.accelerators[1].index = 0;
        let e = h.resolve(&twice, Some("boot")).expect_err("index 0 twice");
        assert!(e.to_string().contains("index 0 is offered twice"), "{e}");
        let mut out = info("a", 2);
        out.accelerators[1].index = 2;
        let e = h.resolve(&out, Some("boot")).expect_err("index 2 of 2");
        assert!(e.to_string().contains("(indices 0 to 1)"), "{e}");
    }

    /// A node the store has as ready that never registers with this term (its agent died
    /// around the change of leader) is lost a deadline after the term began: listed, and its
    /// slot freed in the store; a node that registered is not.
    #[test]
    fn a_node_on_record_that_never_registers_with_the_term_is_lost() {
        let h = hub();
        let mut b = AgentBackend::new(h.clone());
        b.reset();
        let t0 = now_ms();
        let record = |id: &str, slot: i64| switchyard_store::NodeRecord {
            id: id.into(),
            cluster: "local".into(),
            slot,
            hostname: format!("host-{id}"),
            address: String::new(),
            cpus: 4,
            memory_bytes: 1 << 30,
            accelerators: 2,
            info: serde_json::to_string(&info(id, 2)).expect("json"),
            state: switchyard_store::NodeState::Ready,
            registered_ms: t0 - 60_000,
            heartbeat_ms: t0 - 1_000,
            lost_ms: None,
            boot_id: None,
            drained: None,
        };
        b.nodes_on_record(&[record("n-dead", 2), record("n-alive", 0)]);
        let alive = join(&h, "alive", 0, t0);
        let state = |id: &str| {
            h.nodes()
                .into_iter()
                .find(|n| n.hostname.ends_with(id))
                .map(|n| n.state)
        };
        let _ = b.poll(t0);
        assert_eq!(
            state("dead").as_deref(),
            Some("ready"),
            "on record, not yet lost"
        );
        let deadline = h.settings.deadline_ms();
        for t in (1..=5).map(|k| t0 + k * deadline / 4) {
            h.heartbeat(&alive, t).expect("alive beats");
            let _ = b.poll(t);
        }
        assert_eq!(state("dead").as_deref(), Some("lost"));
        assert_eq!(state("alive").as_deref(), Some("ready"));
        assert_eq!(
            h.nodes()
                .iter()
                .filter(|n| n.hostname == "host-n-dead")
                .count(),
            1,
            "listed once"
        );
        // A new host in its slot replaces it in the list, as in the store.
        let _new = join(&h, "new", 2, t0 + 2 * deadline);
        assert_eq!(state("dead"), None, "{:?}", h.nodes());
        assert_eq!(state("new").as_deref(), Some("ready"));
        assert_eq!(h.nodes().len(), 2, "{:?}", h.nodes());
    }

    /// A hub and its backend with nodes a, bb and c joined at `now` in slots 0, 1 and 2.
    fn three_nodes(now: i64) -> (AgentHub, AgentBackend, [String; 3]) {
        let h = hub();
        let b = AgentBackend::new(h.clone());
        let nodes = [
            join(&h, "a", 0, now),
            join(&h, "bb", 1, now),
            join(&h, "c", 2, now),
        ];
        (h, b, nodes)
    }

    /// Nodes a, bb and c joined now, and gang `j` (attempt 1) handed out on a and bb.
    fn gang_on_a_and_bb() -> (AgentHub, AgentBackend, i64, [String; 3]) {
        let t0 = now_ms();
        let (h, mut b, [a, bb, c]) = three_nodes(t0);
        let _ = b.poll(t0);
        b.act(vec![launch("j", 1, 1, &[(0, 2), (1, 2)])]);
        let _ = b.poll(t0);
        (h, b, t0, [a, bb, c])
    }

    /// `node` reports that nothing runs there.
    fn runs_nothing(h: &AgentHub, node: &str, now: i64) {
        h.status(
            node,
            StatusReport {
                processes: Vec::new(),
            },
            now,
        )
        .expect("a status report");
    }

    /// Whether `seen` says `job`'s held run began.
    fn began(seen: &[Observed], job: &str) -> bool {
        seen.iter()
            .any(|o| matches!(o, Observed::Began { job: j, .. } if j == job))
    }

    /// What a poll saw, without the [`Observed::RanOn`] every hand-out makes (tested on their
    /// own).
    fn outcomes(seen: Vec<Observed>) -> Vec<Observed> {
        seen.into_iter()
            .filter(|o| !matches!(o, Observed::RanOn { .. }))
            .collect()
    }

    fn launch(job: &str, generation: u32, attempt: u32, nodes: &[(u32, u32)]) -> Command {
        Command::Launch {
            job: job.into(),
            generation,
            attempt,
            cluster: "local".into(),
            accelerators: nodes.iter().map(|n| n.1).sum(),
            nodes: nodes
                .iter()
                .map(|&(node, accelerators)| NodeShare { node, accelerators })
                .collect(),
            expected_end_ms: 1_000_000,
            command: Some(Arc::new(JobCommand {
                argv: vec!["train".into()],
                env: Default::default(),
                working_dir: None,
            })),
            recovered: false,
            ran_before: None,
        }
    }

    /// Where attempt 1 of a gang ran as the store has it: on node a, these accelerators.
    fn attempt_1_on_a(accelerators: &[u32], digest: &str) -> RanOn {
        RanOn {
            nodes: vec!["n-a".into()],
            placement: Some(RankPlacement {
                attempt: 1,
                nodes: vec![("n-a".into(), accelerators.to_vec())],
                digest: digest.into(),
            }),
            replicas: Vec::new(),
        }
    }

    /// A new leader's launch of recovered `job`, which last ran as `ran_before` says.
    fn recovered_launch(
        job: &str,
        generation: u32,
        attempt: u32,
        nodes: &[(u32, u32)],
        ran_before: RanOn,
    ) -> Command {
        let mut l = launch(job, generation, attempt, nodes);
        if let Command::Launch {
            recovered,
            ran_before: before,
            ..
        } = &mut l
        {
            *recovered = true;
            *before = Some(ran_before);
        }
        l
    }

    /// `seen` with where ranks ran reduced to their nodes.
    fn nodes_only(mut seen: Vec<Observed>) -> Vec<Observed> {
        for o in &mut seen {
            if let Observed::RanOn { ran_on, .. } = o {
                ran_on.placement = None;
            }
        }
        seen
    }

    fn exited(id: &str, code: i32) -> ProcessStatus {
        ProcessStatus {
            assignment_id: id.into(),
            state: ProcessState::Exited(ExitInfo {
                code: Some(code),
                signal: None,
                stopped_by_agent: false,
            }),
            restarts: 0,
            last_exit: None,
        }
    }

    /// The node's desired assignment ids, read without counting as a sign of life.
    fn ids(h: &AgentHub, node: &str) -> Vec<String> {
        let hub = h.lock();
        if hub.nodes.get(node).expect("known node").lost {
            return Vec::new();
        }
        hub.on_node
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|id| hub.runs.get(id)?.by_node.get(node))
            .flatten()
            .map(|a| a.id.clone())
            .collect()
    }

    #[test]
    fn non_nvidia_accelerators_get_their_runtime_s_visible_devices_variable() {
        let env = |name: &str, idx: &[u32]| {
            visible_accelerators_env(
                switchyard_core::lookup_accelerator(name).expect("in the catalog"),
                idx,
            )
        };
        assert!(
            env("H100", &[0, 1]).is_empty(),
            "the agent sets CUDA_VISIBLE_DEVICES"
        );
        assert_eq!(
            env("MI300X", &[2, 3]),
            [
                ("ROCR_VISIBLE_DEVICES".to_owned(), "2,3".to_owned()),
                ("HIP_VISIBLE_DEVICES".to_owned(), "2,3".to_owned())
            ]
        );
        assert_eq!(
            env("Gaudi2", &[5]),
            [("HABANA_VISIBLE_MODULES".to_owned(), "5".to_owned())]
        );
        assert_eq!(
            env("TPU-v5p", &[0, 1, 2, 3]),
            [("TPU_VISIBLE_CHIPS".to_owned(), "0,1,2,3".to_owned())]
        );
        assert_eq!(
            env("Trainium2", &[1]),
            [("NEURON_RT_VISIBLE_CORES".to_owned(), "4,5,6,7".to_owned())]
        );
        assert_eq!(
            env("Trainium1", &[0, 3]),
            [("NEURON_RT_VISIBLE_CORES".to_owned(), "0,1,6,7".to_owned())]
        );
    }

    #[test]
    fn registration_is_checked() {
        let h = hub();
        let mut bad = info("a", 2);
        bad.cluster = Some("elsewhere".into());
        let e = h.resolve(&bad, None).expect_err("unknown cluster");
        assert!(e.to_string().contains("agent clusters: local"), "{e}");
        let e = h
            .resolve(&info("a", 3), None)
            .expect_err("too many accelerators");
        assert!(e.to_string().contains("have 2"), "{e}");
        let e = h
            .resolve(&info("a", 1), None)
            .expect_err("too few accelerators");
        assert!(e.to_string().contains("offers 1 accelerators"), "{e}");
        let mut old = info("a", 2);
        old.protocol_version = 99;
        assert!(h.resolve(&old, None).is_err());
        let mut blank = info(" ", 2);
        blank.cluster = None;
        assert!(h.resolve(&blank, None).is_err());
        // A second machine under a live node's host name is refused; the same machine is not.
        join(&h, "a", 0, 0);
        let mut twin = info("a", 2);
        twin.address = Some("10.9.9.9".into());
        let e = h.resolve(&twin, None).expect_err("a twin");
        assert!(matches!(e, AgentError::Conflict(_)), "{e}");
        assert!(e.to_string().contains("is live at 10.0.0.1"), "{e}");
        // A clone of its image: same host name and address, another boot.
        let e = h
            .resolve(&info("a", 2), Some("another-boot"))
            .expect_err("a clone");
        assert!(matches!(e, AgentError::Conflict(_)), "{e}");
        // An agent that does not say (an older one) is told apart by its address, as before.
        assert!(h.resolve(&info("a", 2), None).is_ok());
        assert!(
            h.resolve(&info("a", 2), Some("boot-of-a")).is_ok(),
            "the same machine registers again"
        );
        let e = h
            .resolve(&info("h\0x", 2), None)
            .expect_err("NUL in hostname");
        assert!(e.to_string().contains("control character"), "{e}");
        let mut long_version = info("a", 2);
        long_version.agent_version = "v".repeat(129);
        let e = h.resolve(&long_version, None).expect_err("a long version");
        assert!(e.to_string().contains("agent_version"), "{e}");
        let mut odd_name = info("a", 2);
        odd_name.accelerators[1].name = "H100\n".into();
        let e = h.resolve(&odd_name, None).expect_err("a control character");
        assert!(e.to_string().contains("accelerator name"), "{e}");
        let mut long_uuid = info("a", 2);
        long_uuid.accelerators[0].uuid = Some("u".repeat(129));
        assert!(h.resolve(&long_uuid, None).is_err());
        for address in ["\0", "10.0.0.1 evil", &"a".repeat(254), "http://x:1"] {
            let mut odd = info("a", 2);
            odd.address = Some(address.to_owned());
            let e = h.resolve(&odd, None).expect_err("bad address");
            assert!(e.to_string().contains("host name or IP address"), "{e}");
        }
        assert_eq!(
            h.heartbeat("n-nobody", 0),
            Err(AgentError::UnknownNode("n-nobody".into()))
        );
    }

    #[test]
    fn slots_without_a_live_agent_are_down_to_the_scheduler() {
        let h = hub();
        let mut b = AgentBackend::new(h.clone());
        join(&h, "a", 1, 0);
        let seen = b.poll(0);
        // Names come first, so that what this poll reports can name hosts.
        assert_eq!(
            seen,
            [
                Observed::NodeNamed {
                    cluster: 0,
                    node: 1,
                    host: "a".into()
                },
                Observed::NodeFailed {
                    cluster: 0,
                    node: 0
                },
                Observed::NodeFailed {
                    cluster: 0,
                    node: 2
                },
            ]
        );
        join(&h, "b", 0, 10);
        assert_eq!(
            b.poll(10),
            [
                Observed::NodeNamed {
                    cluster: 0,
                    node: 0,
                    host: "b".into()
                },
                Observed::NodeRepaired {
                    cluster: 0,
                    node: 0
                }
            ]
        );
        // A reset (new leader) tells the whole truth again.
        b.reset();
        assert_eq!(
            b.poll(20),
            [Observed::NodeFailed {
                cluster: 0,
                node: 2
            }]
        );
    }

    /// A drained node is told to the scheduler as drained (not failed), and as repaired when
    /// resumed; lost and back while drained, it is not repaired; a new leader reads drains
    /// from the store's records and tells them with the rest of the truth.
    #[test]
    fn a_drained_node_stays_out_of_service_until_resumed() {
        let drain = || switchyard_store::NodeDrain {
            reason: "DIMM swap".into(),
            since_ms: 5,
        };
        let node_events = |seen: Vec<Observed>| -> Vec<Observed> {
            seen.into_iter()
                .filter(|o| !matches!(o, Observed::NodeNamed { .. }))
                .collect()
        };
        let h = hub();
        let mut b = AgentBackend::new(h.clone());
        let a = join(&h, "a", 0, 0);
        join(&h, "bb", 1, 0);
        let _ = b.poll(0);
        h.set_drain(&a, Some(drain()));
        h.set_drain(&a, Some(drain()));
        assert_eq!(
            node_events(b.poll(10)),
            [Observed::NodeDrained {
                cluster: 0,
                node: 0
            }]
        );
        let view = h.nodes().into_iter().find(|n| n.id == a).expect("a");
        assert_eq!(
            view.drained,
            Some(DrainView {
                reason: Some("DIMM swap".into()),
                since_ms: 5
            })
        );
        let metrics = render_metrics(&h.nodes());
        assert!(
            metrics.contains("switchyard_agent_nodes_drained{cluster=\"local\"} 1")
                && metrics.contains("switchyard_agent_nodes{cluster=\"local\",state=\"lost\"} 0\n"),
            "{metrics}"
        );
        // Lost (silent past its deadline), then back: still drained, so no repair.
        let mut seen = Vec::new();
        for t in [100, 200, 300, 400] {
            h.heartbeat("n-bb", t).expect("bb lives");
            seen.extend(node_events(b.poll(t)));
        }
        assert!(
            seen.contains(&Observed::NodeFailed {
                cluster: 0,
                node: 0
            }),
            "{seen:?}"
        );
        // Back from lost while drained: up, and drained at once (so the scheduler counts it
        // drained, not failed).
        h.heartbeat(&a, 450).expect("a is back");
        assert_eq!(
            node_events(b.poll(450)),
            [
                Observed::NodeRepaired {
                    cluster: 0,
                    node: 0
                },
                Observed::NodeDrained {
                    cluster: 0,
                    node: 0
                }
            ]
        );
        // Resumed: repaired.
        h.set_drain(&a, None);
        assert_eq!(
            node_events(b.poll(460)),
            [Observed::NodeRepaired {
                cluster: 0,
                node: 0
            }]
        );
        // The store's drains, read every pass: followed, unless a drain was told since the read.
        let epoch = b.drain_epoch().expect("agents follow drains");
        b.drains_on_record(&[("n-bb".into(), drain())], epoch);
        assert_eq!(
            node_events(b.poll(462)),
            [Observed::NodeDrained {
                cluster: 0,
                node: 1
            }]
        );
        let stale = b.drain_epoch().expect("agents follow drains");
        h.set_drain("n-bb", None);
        b.drains_on_record(&[("n-bb".into(), drain())], stale);
        assert_eq!(
            node_events(b.poll(464)),
            [Observed::NodeRepaired {
                cluster: 0,
                node: 1
            }],
            "the older read is not applied"
        );
        let epoch = b.drain_epoch().expect("agents follow drains");
        b.drains_on_record(&[], epoch);
        assert_eq!(node_events(b.poll(466)), []);
        // A new leader: the store's record says drained.
        b.reset();
        let record = |id: &str, host: &str, slot: i64, drained| switchyard_store::NodeRecord {
            id: id.into(),
            cluster: "local".into(),
            slot,
            hostname: host.into(),
            address: String::new(),
            cpus: 1,
            memory_bytes: 1,
            accelerators: 2,
            info: "{}".into(),
            state: switchyard_store::NodeState::Ready,
            registered_ms: 0,
            heartbeat_ms: 0,
            lost_ms: None,
            boot_id: None,
            drained,
        };
        b.nodes_on_record(&[
            record(&a, "a", 0, Some(drain())),
            record("n-bb", "bb", 1, None),
        ]);
        assert_eq!(
            node_events(b.poll(470)),
            [
                Observed::NodeDrained {
                    cluster: 0,
                    node: 0
                },
                Observed::NodeFailed {
                    cluster: 0,
                    node: 2
                },
            ]
        );
    }

    /// A drain reason is plain text on one line: control, format and separator characters are
    /// refused, other text (accents, dashes, emoji) is taken.
    #[test]
    fn a_drain_reason_is_plain_text() {
        for bad in [
            "a\nb",
            "a\u{1b}[31m",
            "a\u{202E}b",
            "a\u{2028}b",
            "a\u{061C}b",
            "a\u{2060}b",
        ] {
            assert!(handlers::check_reason(bad).is_err(), "{bad:?}");
        }
        for good in ["DIMM swap — slot 3", "réparation", "fan 🔧"] {
            assert!(handlers::check_reason(good).is_ok(), "{good:?}");
        }
        assert!(handlers::check_reason(&"x".repeat(1025)).is_err());
    }

    #[test]
    fn a_gang_runs_on_its_nodes_and_finishes_when_every_rank_succeeds() {
        let h = hub();
        let mut b = AgentBackend::new(h.clone());
        let a = join(&h, "a", 0, 0);
        let c = join(&h, "c", 2, 0);
        b.poll(0);
        b.act(vec![launch("j", 1, 1, &[(0, 2), (2, 2)])]);
        let on_a = h.assignments(&a, 0).expect("a").assignments;
        let on_c = h.assignments(&c, 0).expect("c").assignments;
        assert_eq!(on_a.len(), 2);
        assert_eq!(on_c.len(), 2);
        assert_eq!(
            on_a.iter().map(|x| x.rank).collect::<Vec<_>>(),
            [0, 1],
            "ranks fill the first node first"
        );
        assert!(on_c.iter().all(|x| x.master_addr == on_a[0].master_addr));
        assert_eq!(on_a[0].checkpoint_dir.as_deref(), Some("/ckpt/j"));
        assert_ne!(on_a[0].accelerators, on_a[1].accelerators);
        h.status(
            &a,
            StatusReport {
                processes: on_a.iter().map(|x| exited(&x.id, 0)).collect(),
            },
            5,
        )
        .expect("status");
        assert_eq!(outcomes(b.poll(5)), [], "two ranks still run");
        h.status(
            &c,
            StatusReport {
                processes: on_c.iter().map(|x| exited(&x.id, 0)).collect(),
            },
            6,
        )
        .expect("status");
        assert_eq!(
            b.poll(6),
            [Observed::Finished {
                job: "j".into(),
                generation: 1
            }]
        );
        assert_eq!(b.poll(7), [], "reported once");
        b.act(vec![Command::Stop { job: "j".into() }]);
        assert!(ids(&h, &a).is_empty());
    }

    #[test]
    fn a_huge_start_error_is_cut_before_it_becomes_the_jobs_reason() {
        let h = hub();
        let mut b = AgentBackend::new(h.clone());
        let a = join(&h, "a", 0, 0);
        b.poll(0);
        b.act(vec![launch("j", 1, 1, &[(0, 1)])]);
        let on_a = h.assignments(&a, 0).expect("a").assignments;
        h.status(
            &a,
            StatusReport {
                processes: vec![ProcessStatus {
                    assignment_id: on_a[0].id.clone(),
                    state: ProcessState::FailedToStart {
                        error: "é".repeat(100_000),
                    },
                    restarts: 0,
                    last_exit: None,
                }],
            },
            5,
        )
        .expect("status");
        // Failures are reported once every node of the gang was heard from after them.
        h.heartbeat(&a, 6).expect("heartbeat");
        let reasons: Vec<String> = b
            .poll(6)
            .into_iter()
            .filter_map(|o| match o {
                Observed::Failed { reason, .. } => Some(reason),
                _ => None,
            })
            .collect();
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(reasons[0].contains("could not start"));
        assert!(reasons[0].ends_with(" …"));
        assert!(reasons[0].len() < MAX_START_ERROR_BYTES + 200);
    }

    #[test]
    fn a_node_writes_only_the_output_of_assignments_it_was_handed() {
        let h = hub();
        let mut b = AgentBackend::new(h.clone());
        let a = join(&h, "a", 0, 0);
        let c = join(&h, "c", 2, 0);
        b.poll(0);
        b.act(vec![launch("j", 1, 1, &[(0, 2)])]);
        let on_a = h.assignments(&a, 0).expect("a").assignments;
        let line = |id: &str, seq: u64| switchyard_agent::protocol::LogLine {
            assignment_id: id.into(),
            stream: switchyard_agent::protocol::Stream::Stdout,
            seq,
            at_ms: 1,
            line: "hello".into(),
        };
        let batch = |lines| LogBatch { lines };
        let own = h
            .output(
                &a,
                batch(vec![line(&on_a[0].id, 0), line(&on_a[1].id, 0)]),
                0,
            )
            .expect("a's own lines")
            .lines;
        assert_eq!(own.len(), 2);
        assert!(own.iter().all(|l| l.job == "j"));
        // A line longer than any agent sends is cut at a character boundary.
        let mut long = line(&on_a[0].id, 5);
        long.line = format!("a{}", "€".repeat(MAX_STORED_LINE_BYTES));
        let kept = h
            .output(&a, batch(vec![long]), 0)
            .expect("a long line")
            .lines;
        assert_eq!(kept.len(), 1);
        assert!(
            (MAX_STORED_LINE_BYTES - 2..=MAX_STORED_LINE_BYTES).contains(&kept[0].line.len()),
            "{}",
            kept[0].line.len()
        );
        assert!(kept[0].line.starts_with("a€€"));
        // Another node, or a made-up assignment, cannot write into j's output — not even
        // after reporting a's assignment as its own.
        h.status(
            &c,
            StatusReport {
                processes: vec![ProcessStatus {
                    assignment_id: on_a[0].id.clone(),
                    state: ProcessState::Running { pid: 1 },
                    restarts: 0,
                    last_exit: None,
                }],
            },
            10,
        )
        .expect("status");
        let foreign = h
            .output(
                &c,
                batch(vec![line(&on_a[0].id, 1), line("j-x/attempt-1/rank-0", 0)]),
                10,
            )
            .expect("answered");
        assert!(
            foreign.lines.is_empty() && foreign.unverified.is_empty(),
            "{foreign:?}"
        );
        // Once the run is gone, a's late lines of it still find their job.
        b.act(vec![Command::Stop { job: "j".into() }]);
        let late = h
            .output(&a, batch(vec![line(&on_a[0].id, 2)]), 20)
            .expect("late lines")
            .lines;
        assert_eq!(late.len(), 1);
        assert_eq!((late[0].job.as_str(), late[0].rank), ("j", 0));
        // A position past what the store keeps is refused, not clamped onto another line.
        let far = h
            .output(&a, batch(vec![line(&on_a[0].id, u64::MAX)]), 30)
            .expect("answered");
        assert!(far.lines.is_empty() && far.unverified.is_empty());

        // Early in a leader term, lines of assignments no node was handed in it are output of
        // attempts that ended before the term: held for the store to vouch for. One handed to
        // another node is still refused; after the window, nothing unknown is held.
        b.reset();
        let now = now_ms();
        let this_term = format!("j-svc/replica-{}.9/rank-0", h.lock().replica_epoch);
        let early = h
            .output(
                &c,
                batch(vec![
                    line("j-old/attempt-1/rank-1", 0),
                    line(&on_a[0].id, 3),
                    line("not-an-assignment", 0),
                    line(&this_term, 0),
                    line("j-svc/replica-1a2b.4/rank-2", 0),
                ]),
                now,
            )
            .expect("answered");
        assert!(early.lines.is_empty(), "{early:?}");
        assert_eq!(early.unverified.len(), 2, "{early:?}");
        assert_eq!(
            (
                early.unverified[0].job.as_str(),
                early.unverified[0].attempt,
                early.unverified[0].rank
            ),
            ("j-old", 1, 1)
        );
        // An earlier term's replica is attempt 1 of its service, as every replica is (not 0,
        // which no query can select), at the rank its id says.
        assert_eq!(
            (
                early.unverified[1].job.as_str(),
                early.unverified[1].attempt,
                early.unverified[1].rank
            ),
            ("j-svc", 1, 2)
        );
        assert_eq!(early.cluster, "local");
        assert!(early.term_started_ms > 0 && early.term_started_ms <= now);
        // One push offers the lines of at most MAX_UNVERIFIED_IDS unknown assignments (each is
        // looked up across the fleet); the rest are refused.
        let many = h
            .output(
                &c,
                batch(
                    (0..MAX_UNVERIFIED_IDS + 50)
                        .map(|i| line(&format!("j-old{i}/attempt-1/rank-0"), 0))
                        .collect(),
                ),
                now,
            )
            .expect("answered");
        assert_eq!(many.unverified.len(), MAX_UNVERIFIED_IDS);
        let later = h
            .output(
                &c,
                batch(vec![line("j-old/attempt-1/rank-1", 1)]),
                now + ADOPT_OUTPUT_MS + 1,
            )
            .expect("answered");
        assert!(later.lines.is_empty() && later.unverified.is_empty());
    }

    #[test]
    fn a_failed_rank_is_reported_once_every_node_of_the_gang_is_heard_from() {
        let h = hub();
        let mut b = AgentBackend::new(h.clone());
        let a = join(&h, "a", 0, 0);
        let c = join(&h, "c", 1, 0);
        b.poll(0);
        b.act(vec![launch("j", 3, 2, &[(0, 2), (1, 2)])]);
        let failing = ids(&h, &c)[0].clone();
        h.status(
            &c,
            StatusReport {
                processes: vec![exited(&failing, 1)],
            },
            50,
        )
        .expect("status");
        assert_eq!(
            outcomes(b.poll(50)),
            [],
            "node a has not been heard from since"
        );
        h.heartbeat(&a, 60).expect("a lives");
        h.heartbeat(&c, 60).expect("c lives");
        let seen = b.poll(60);
        let [
            Observed::Failed {
                job,
                generation,
                reason,
            },
        ] = seen.as_slice()
        else {
            panic!("one failure: {seen:?}");
        };
        assert_eq!((job.as_str(), *generation), ("j", 3));
        assert!(
            reason.contains("attempt 2") && reason.contains("exited with code 1"),
            "{reason}"
        );
    }

    #[test]
    fn one_machine_at_a_time_holds_a_host_name() {
        let h = hub();
        let mut b = AgentBackend::new(h.clone());
        // Two clones register at once: both pass the check, the first admitted keeps the node.
        let node = info("a", 2);
        let (cluster, _) = h.resolve(&node, Some("boot-1")).expect("first");
        h.resolve(&node, Some("boot-2"))
            .expect("second, not yet admitted");
        h.admit(&node, Some("boot-1"), &cluster, "n-a", 0, 0)
            .expect("first in");
        let e = h
            .admit(&node, Some("boot-2"), &cluster, "n-a", 0, 0)
            .expect_err("the clone");
        assert!(matches!(e, AgentError::Conflict(_)), "{e}");
        assert_eq!(h.check_boot("n-a", Some("boot-1")), Ok(()));
        assert_eq!(
            h.check_boot("n-a", None),
            Ok(()),
            "an agent that does not say"
        );

        // Cut off, the node is lost; the clone takes it over. The first machine's calls are
        // then refused as an unknown node's (so its agent registers again, and is refused).
        for t in (0..=1_000).step_by(100) {
            b.poll(t);
        }
        assert!(h.lock().nodes["n-a"].lost);
        assert_eq!(h.node_state("n-a"), Some("lost"), "what a resume reports");
        assert_eq!(h.node_state("n-unknown"), None);
        h.resolve(&node, Some("boot-2")).expect("the node is lost");
        h.admit(&node, Some("boot-2"), &cluster, "n-a", 0, 1_000)
            .expect("taken over");
        assert_eq!(h.node_state("n-a"), Some("ready"));
        assert_eq!(
            h.check_boot("n-a", Some("boot-1")),
            Err(AgentError::UnknownNode("n-a".into()))
        );
        assert!(h.resolve(&node, Some("boot-1")).is_err());
        assert_eq!(h.check_boot("n-a", Some("boot-2")), Ok(()));
    }

    #[test]
    fn a_silent_node_is_lost_its_gang_is_not_blamed_and_it_gets_nothing_to_run() {
        let h = hub();
        let mut b = AgentBackend::new(h.clone());
        let a = join(&h, "a", 0, 0);
        let c = join(&h, "c", 1, 0);
        b.poll(0);
        b.act(vec![launch("j", 1, 1, &[(0, 2), (1, 2)])]);
        // c's ranks fail because a died; a never reports again.
        let on_c = ids(&h, &c);
        h.status(
            &c,
            StatusReport {
                processes: vec![exited(&on_c[0], 1)],
            },
            100,
        )
        .expect("status");
        // The leader polls every tick; nothing is decided before a is overdue.
        for t in [100, 200, 300] {
            assert_eq!(outcomes(b.poll(t)), [], "at {t} ms");
        }
        h.heartbeat(&c, 350).expect("c lives");
        let seen = b.poll(350);
        assert!(
            seen.iter().any(|o| matches!(
                o,
                Observed::NodeFailed {
                    cluster: 0,
                    node: 0
                }
            )),
            "{seen:?}"
        );
        assert!(
            seen.iter().any(
                |o| matches!(o, Observed::Event { kind, message, cluster: Some(c), .. }
                if kind == "node_lost" && message.contains("n-a") && c == "local")
            ),
            "{seen:?}"
        );
        assert!(
            !seen.iter().any(|o| matches!(o, Observed::Failed { .. })),
            "the lost node, not the job, is to blame: {seen:?}"
        );
        assert!(ids(&h, &a).is_empty(), "a lost node must stop everything");
        // The scheduler restarts the gang elsewhere; the old failure is gone with it.
        // It waits for c's next call, which hands c's agent a desired set without attempt 1
        // (c may have been cut off with a and not be declared lost yet).
        b.act(vec![
            Command::Stop { job: "j".into() },
            launch("j", 2, 2, &[(1, 2)]),
        ]);
        h.heartbeat(&c, 400).expect("c lives");
        assert!(
            matches!(outcomes(b.poll(400)).as_slice(), [Observed::Held { .. }]),
            "a heartbeat says nothing of the old ranks"
        );
        // c reports that nothing of attempt 1 runs there any more; a, lost, may only be cut
        // off, its rank running on (and writing at its agent's orphan deadline): still held.
        runs_nothing(&h, &c, 450);
        assert_eq!(outcomes(b.poll(450)), []);
        // a comes back.
        assert!(
            h.heartbeat(&a, 500).expect("a is back"),
            "a lost node's return is written to the store"
        );
        assert!(
            !h.heartbeat(&a, 600).expect("a lives"),
            "ordinary heartbeats are not, until {PERSIST_HEARTBEAT_MS} ms have passed"
        );
        // and reports nothing of attempt 1 running there: the hold lifts.
        runs_nothing(&h, &a, 650);
        let seen = nodes_only(b.poll(650));
        assert_eq!(
            seen,
            [
                Observed::NodeRepaired {
                    cluster: 0,
                    node: 0
                },
                Observed::Began {
                    job: "j".into(),
                    generation: 2,
                    since_ms: None,
                },
                Observed::RanOn {
                    job: "j".into(),
                    generation: 2,
                    ran_on: RanOn {
                        nodes: vec![c.clone()],
                        placement: None,
                        replicas: Vec::new(),
                    }
                }
            ]
        );
        assert_eq!(ids(&h, &c), ["j/attempt-2/rank-0", "j/attempt-2/rank-1"]);
        assert!(
            h.heartbeat(&a, 500 + PERSIST_HEARTBEAT_MS)
                .expect("a lives")
        );
    }

    /// A gang whose nodes are all cut off at once may still run there (each agent stops its
    /// ranks only once its own orphan deadline has passed): its next attempt is held back until
    /// then, so that two attempts never write one checkpoint directory. With every node of the
    /// gang in touch (its agent stops its ranks at once) the next attempt starts once they
    /// report.
    #[test]
    fn a_gang_cut_off_whole_holds_its_next_attempt_until_its_ranks_must_have_stopped() {
        let (h, mut b, [_a, _bb, c]) = three_nodes(0);
        b.poll(0);
        b.act(vec![launch("j", 1, 1, &[(0, 2), (1, 2)])]);
        let mut seen = Vec::new();
        for t in [100, 200, 300, 350] {
            h.heartbeat(&c, t).expect("c lives");
            seen.extend(b.poll(t));
        }
        assert_eq!(
            seen.iter()
                .filter(|o| matches!(o, Observed::NodeFailed { .. }))
                .count(),
            2,
            "{seen:?}"
        );
        b.act(vec![
            Command::Stop { job: "j".into() },
            launch("j", 2, 2, &[(2, 2)]),
        ]);
        // Last seen at 0; the agents ask within 5 s, the ranks get their 10 s stop grace, and
        // one heartbeat interval (100 ms) more.
        let until = 5_000 + 10_000 + 100;
        let held = b.poll(400);
        assert!(
            held.iter().any(|o| matches!(o,
                Observed::Held { job, generation: 2, interrupted: false, why }
                    if job == "j" && why.contains("cut off"))),
            "{held:?}"
        );
        for t in (400..until).step_by(100).chain([until - 1]) {
            h.heartbeat(&c, t).expect("c lives");
            let got = h.assignments(&c, t).expect("assignments").assignments;
            assert!(got.is_empty(), "at {t} ms: {got:?}");
            assert!(
                !b.poll(t)
                    .iter()
                    .any(|o| matches!(o, Observed::Began { .. })),
                "at {t} ms"
            );
        }
        h.heartbeat(&c, until).expect("c lives");
        assert_eq!(
            outcomes(b.poll(until)),
            [Observed::Began {
                job: "j".into(),
                generation: 2,
                since_ms: None,
            }]
        );
        let got = h.assignments(&c, until).expect("assignments").assignments;
        assert_eq!(got.len(), 2, "{got:?}");

        // On a node in touch: held only until its agent reports the old ranks stopped (their
        // stop grace, in which they may save a checkpoint), not for the orphan bound.
        b.act(vec![launch("k", 1, 1, &[(2, 2)])]);
        let _ = b.poll(until);
        let old = ids(&h, &c);
        let running = |ids: &[String]| StatusReport {
            processes: ids
                .iter()
                .map(|id| ProcessStatus {
                    assignment_id: id.clone(),
                    state: ProcessState::Running { pid: 7 },
                    restarts: 0,
                    last_exit: None,
                })
                .collect(),
        };
        h.status(&c, running(&old), until).expect("status");
        b.act(vec![
            Command::Stop { job: "k".into() },
            launch("k", 2, 2, &[(2, 2)]),
        ]);
        let held = b.poll(until);
        assert!(
            held.iter()
                .any(|o| matches!(o, Observed::Held { job, why, .. }
                if job == "k" && why.contains("being stopped"))),
            "{held:?}"
        );
        h.status(&c, running(&old), until + 1)
            .expect("still stopping");
        assert!(
            !b.poll(until + 1)
                .iter()
                .any(|o| matches!(o, Observed::Began { .. }))
        );
        h.status(
            &c,
            StatusReport {
                processes: old.iter().map(|id| exited(id, 143)).collect(),
            },
            until + 2,
        )
        .expect("stopped");
        assert!(
            began(&b.poll(until + 2), "k"),
            "handed out once the old ranks are reported stopped"
        );
    }

    /// A launch handed to agents records where its ranks run (stored, for a new leader).
    /// A new leader that has heard from none of the nodes a gang last ran on holds its next
    /// attempt back until their agents must have stopped its ranks, or until one of those nodes
    /// reports none of them running (its agent stopped its rank, and the others cannot get past
    /// their next collective). Also a later launch of the term carrying the same nodes stays
    /// held.
    #[test]
    fn a_new_leader_holds_a_gang_until_it_hears_from_a_node_of_its_last_attempt() {
        fn relaunch(job: &str, generation: u32, slot: u32, before: &[&str]) -> Command {
            let mut l = launch(job, generation, generation, &[(slot, 2)]);
            if let Command::Launch {
                recovered,
                ran_before,
                ..
            } = &mut l
            {
                *recovered = generation == 1;
                *ran_before = Some(RanOn {
                    nodes: before.iter().map(|n| (*n).to_owned()).collect(),
                    placement: None,
                    replicas: Vec::new(),
                });
            }
            l
        }
        let ran_on = |job: &str, generation: u32, nodes: &[&str]| Observed::RanOn {
            job: job.into(),
            generation,
            ran_on: RanOn {
                nodes: nodes.iter().map(|n| (*n).to_owned()).collect(),
                placement: None,
                replicas: Vec::new(),
            },
        };
        let h = hub();
        let mut b = AgentBackend::new(h.clone());
        // A server process that has just become the leader.
        b.reset();
        let t0 = now_ms();
        let c = join(&h, "c", 2, t0 + 1);
        runs_nothing(&h, &c, t0 + 1);
        let _ = b.poll(t0 + 1);

        // Its last attempt ran on c, which has reported in this term: no hold.
        b.act(vec![relaunch("k", 1, 2, &["n-c"])]);
        assert_eq!(nodes_only(b.poll(t0 + 1)), [ran_on("k", 1, &["n-c"])]);
        b.act(vec![Command::Stop { job: "k".into() }]);

        // Its last attempt ran on c, which has reported, and a, not heard from: held, nothing
        // handed out.
        b.act(vec![relaunch("j", 1, 2, &["n-a", "n-c"])]);
        let held = b.poll(t0 + 1);
        assert!(
            matches!(held.as_slice(), [Observed::Held { job, generation: 1, why, interrupted: false }]
                if job == "j" && why.contains("new scheduling leader")),
            "{held:?}"
        );
        h.heartbeat(&c, t0 + 100).expect("c lives");
        assert!(
            h.assignments(&c, t0 + 100)
                .expect("assignments")
                .assignments
                .is_empty()
        );
        assert!(outcomes(b.poll(t0 + 100)).is_empty());
        // Placed again in the term (its placement failed, say): still held.
        b.act(vec![relaunch("j", 2, 2, &["n-a", "n-c"])]);
        assert!(
            b.poll(t0 + 100)
                .iter()
                .any(|o| matches!(o, Observed::Held { job, generation: 2, .. } if job == "j")),
            "a later launch of the term is held too"
        );
        // a reports nothing of j running there: the gang starts.
        let _a = join(&h, "a", 0, t0 + 200);
        h.heartbeat(&c, t0 + 200).expect("c lives");
        runs_nothing(&h, &_a, t0 + 200);
        let lifted: Vec<Observed> = b
            .poll(t0 + 200)
            .into_iter()
            .filter(|o| {
                !matches!(
                    o,
                    Observed::NodeRepaired { .. } | Observed::NodeNamed { .. }
                )
            })
            .collect();
        assert_eq!(
            nodes_only(lifted),
            [
                Observed::Began {
                    job: "j".into(),
                    generation: 2,
                    since_ms: None,
                },
                ran_on("j", 2, &["n-c"])
            ]
        );
        assert_eq!(
            h.assignments(&c, t0 + 200)
                .expect("assignments")
                .assignments
                .len(),
            2
        );

        // Never heard from: held until an earlier leader's answers (15 s), an agent's orphan
        // deadline (120 s for one this hub does not know), the ranks' stop grace (10 s) and one
        // heartbeat interval (100 ms) have passed.
        let until = h.lock().term_started_ms.expect("a term") + 15_000 + 120_000 + 10_000 + 100;
        b.act(vec![
            Command::Stop { job: "j".into() },
            relaunch("m", 1, 2, &["n-gone"]),
        ]);
        let held = b.poll(t0 + 200);
        assert!(
            held.iter()
                .any(|o| matches!(o, Observed::Held { job, .. } if job == "m")),
            "{held:?}"
        );
        for t in [until - 1_000, until] {
            h.heartbeat(&c, t).expect("c lives");
            h.heartbeat(&_a, t).expect("a lives");
            let seen = outcomes(b.poll(t));
            assert_eq!(
                seen.iter()
                    .any(|o| matches!(o, Observed::Began { job, .. } if job == "m")),
                t == until,
                "at {} ms: {seen:?}",
                t - t0
            );
        }

        // Not heard from, but on record in the store with a longer orphan deadline (an agent
        // run with --orphan-after 290s) than the default: held by what it said.
        let far = NodeInfo {
            orphan_stop_ms: Some(300_000),
            ..info("far", 2)
        };
        let record = |id: &str, info: String| switchyard_store::NodeRecord {
            id: id.into(),
            cluster: "local".into(),
            slot: 1,
            hostname: id.into(),
            address: String::new(),
            cpus: 4,
            memory_bytes: 1 << 30,
            accelerators: 2,
            info,
            state: switchyard_store::NodeState::Lost,
            registered_ms: t0,
            heartbeat_ms: t0,
            lost_ms: Some(t0),
            boot_id: None,
            drained: None,
        };
        // (A field this release does not know, as a later one may write, is no obstacle.)
        let mut far = serde_json::to_value(&far).expect("json");
        far["gpu_topology"] = serde_json::json!("nvl72");
        b.nodes_on_record(&[
            record("n-far", far.to_string()),
            record("n-garbled", "{".into()),
        ]);
        let term = h.lock().term_started_ms.expect("a term");
        // (A record that does not parse says nothing: the default.)
        assert_eq!(
            h.lock()
                .on_record
                .get("n-garbled")
                .map(|r| r.orphan_stop_ms),
            Some(DEFAULT_ORPHAN_STOP_MS)
        );
        b.act(vec![relaunch("p", 1, 2, &["n-far"])]);
        let _ = b.poll(until);
        let locked = h.lock();
        let held = locked
            .by_job
            .get("p")
            .and_then(|runs| runs.iter().find_map(|r| locked.runs.get(r)?.not_before_ms));
        drop(locked);
        assert_eq!(held, Some(term + 15_000 + 300_000 + 10_000 + 100));
        b.act(vec![Command::Stop { job: "p".into() }]);

        // The store has d from an earlier boot (another machine, or d before a reboot): a
        // machine registering as d now, from another boot, ran none of the last attempt's
        // ranks, and its report does not lift the hold.
        b.nodes_on_record(&[switchyard_store::NodeRecord {
            boot_id: Some("boot-of-d-before".into()),
            drained: None,
            ..record(
                "n-d",
                serde_json::to_string(&NodeInfo {
                    orphan_stop_ms: Some(300_000),
                    ..info("d", 2)
                })
                .expect("json"),
            )
        }]);
        b.act(vec![relaunch("s", 1, 2, &["n-d"])]);
        let d = join(&h, "d", 1, until);
        runs_nothing(&h, &d, until);
        h.heartbeat(&c, until).expect("c lives");
        let seen = b.poll(until);
        assert!(
            seen.iter()
                .any(|o| matches!(o, Observed::Held { job, .. } if job == "s"))
                && !began(&seen, "s"),
            "a report from another boot does not count: {seen:?}"
        );

        // A process that leads again: a node it knows counts only once it reports in the new
        // term (another replica may have led in between, or the node may be cut off).
        let h = hub();
        let mut b = AgentBackend::new(h.clone());
        let t1 = now_ms();
        let c = join(&h, "c", 2, t1 - 50);
        let _ = b.poll(t1 - 50);
        b.reset();
        // c told this process 5 s; it registered since with another leader, saying 300 s.
        let mut said = serde_json::to_value(info("c", 2)).expect("json");
        said["orphan_stop_ms"] = serde_json::json!(300_000);
        b.nodes_on_record(&[record("n-c", said.to_string())]);
        let term = h.lock().term_started_ms.expect("a term");
        let _ = b.poll(term);
        b.act(vec![relaunch("n", 1, 2, &["n-c"])]);
        assert!(
            b.poll(term)
                .iter()
                .any(|o| matches!(o, Observed::Held { job, .. } if job == "n")),
            "held until c calls"
        );
        let locked = h.lock();
        let held = locked
            .by_job
            .get("n")
            .and_then(|runs| runs.iter().find_map(|r| locked.runs.get(r)?.not_before_ms));
        drop(locked);
        assert_eq!(
            held,
            Some(term + 15_000 + 300_000 + 10_000 + 100),
            "the longer"
        );
        runs_nothing(&h, &c, term + 1);
        assert!(began(&b.poll(term + 1), "n"), "handed out once c reports");
    }

    /// A new server process (or replica) that leads takes over a gang whose ranks run on:
    /// until every node of its last attempt has reported, agents are told to keep those ranks
    /// and no work is placed; a recovered launch on exactly the same accelerators hands out the
    /// very assignments the agents run, as the same attempt. A rank that did not survive, or a
    /// placement elsewhere, starts a new attempt instead.
    #[test]
    fn a_new_leader_takes_over_the_ranks_that_run_on() {
        let running = |id: &str| ProcessStatus {
            assignment_id: id.into(),
            state: ProcessState::Running { pid: 7 },
            restarts: 0,
            last_exit: None,
        };
        // The earlier leader: gang j on a (slot 0) and bb (slot 1), attempt 3.
        let (h1, mut b1, t0, [a, bb, _c]) = {
            let t0 = now_ms();
            let (h, mut b, nodes) = three_nodes(t0);
            let _ = b.poll(t0);
            b.act(vec![launch("j", 1, 3, &[(1, 2), (0, 1)])]);
            (h, b, t0, nodes)
        };
        let ran_on = b1
            .poll(t0)
            .into_iter()
            .find_map(|o| match o {
                Observed::RanOn { ran_on, .. } => Some(ran_on),
                _ => None,
            })
            .expect("where it ran");
        let placement = ran_on.placement.clone().expect("a placement");
        assert_eq!(
            (placement.attempt, placement.nodes.clone()),
            (3, vec![(bb.clone(), vec![0, 1]), (a.clone(), vec![0])]),
            "in rank order"
        );
        let handed = |h: &AgentHub, node: &str| h.assignments(node, t0).expect("list");
        let (on_a, on_bb) = (handed(&h1, &a).assignments, handed(&h1, &bb).assignments);
        assert_eq!(on_bb.len(), 2);

        for case in ["taken over", "a rank ended", "placed elsewhere"] {
            let h = hub();
            let mut b = AgentBackend::new(h.clone());
            b.reset();
            b.runs_on_record(&[("j".into(), ran_on.clone())]);
            let t = now_ms();
            assert!(b.settling(t), "{case}: nothing heard yet");
            let a2 = join(&h, "a", 0, t);
            let bb2 = join(&h, "bb", 1, t);
            let c2 = join(&h, "c", 2, t);
            runs_nothing(&h, &c2, t);
            let kept = handed(&h, &a2);
            assert!(kept.assignments.is_empty());
            assert_eq!(kept.keep, ["j/attempt-3/rank-2"], "{case}");
            assert_eq!(
                handed(&h, &bb2).keep,
                ["j/attempt-3/rank-0", "j/attempt-3/rank-1"]
            );
            h.status(
                &a2,
                StatusReport {
                    processes: vec![running("j/attempt-3/rank-2")],
                },
                t,
            )
            .expect("a reports");
            assert!(b.settling(t), "{case}: bb not heard yet");
            let rank1 = if case == "a rank ended" {
                exited("j/attempt-3/rank-1", 1)
            } else {
                running("j/attempt-3/rank-1")
            };
            h.status(
                &bb2,
                StatusReport {
                    processes: vec![running("j/attempt-3/rank-0"), rank1],
                },
                t,
            )
            .expect("bb reports");
            assert!(!b.settling(t), "{case}: every node heard from");
            let _ = b.poll(t);
            let shares: &[(u32, u32)] = if case == "placed elsewhere" {
                &[(1, 2), (2, 1)]
            } else {
                &[(1, 2), (0, 1)]
            };
            let relaunch = recovered_launch("j", 1, 4, shares, ran_on.clone());
            b.act(vec![relaunch]);
            let seen = b.poll(t);
            let continued = seen.iter().any(|o| {
                matches!(o, Observed::Continued { job, generation: 1, attempt: 3 } if job == "j")
            });
            assert_eq!(continued, case == "taken over", "{case}: {seen:?}");
            if case == "taken over" {
                assert_eq!(
                    handed(&h, &a2).assignments,
                    on_a,
                    "the very same assignments"
                );
                assert_eq!(handed(&h, &bb2).assignments, on_bb);
                assert!(handed(&h, &a2).keep.is_empty());
                let stored = seen
                    .iter()
                    .find_map(|o| match o {
                        Observed::RanOn { ran_on, .. } => Some(ran_on),
                        _ => None,
                    })
                    .expect("stored again");
                assert_eq!(stored, &ran_on);
            } else {
                // A new attempt, held until the old ranks are known stopped; nothing is kept.
                assert!(
                    seen.iter().any(|o| matches!(o, Observed::Held { .. })),
                    "{case}: {seen:?}"
                );
                assert!(handed(&h, &a2).keep.is_empty(), "{case}");
                assert!(handed(&h, &bb2).assignments.is_empty(), "{case}");
            }
        }
        drop(b1.poll(t0));
    }

    /// The same process leading again (its lease lost and taken back) takes its own gang over:
    /// the fence its reset left on that very attempt is no obstacle. A rank that already
    /// finished its work (exited 0) is taken over as done.
    #[test]
    fn a_process_leading_again_takes_its_own_gang_over() {
        let running = |id: &str| ProcessStatus {
            assignment_id: id.into(),
            state: ProcessState::Running { pid: 7 },
            restarts: 0,
            last_exit: None,
        };
        let (h, mut b, t0, [a, bb, _c]) = gang_on_a_and_bb();
        let ran_on = Hub::ran_on(h.lock().runs.values().next().expect("the gang"));
        let before_a = h.assignments(&a, t0).expect("a").assignments;
        b.reset();
        assert!(
            h.lock().fences.get("j").is_some_and(|f| !f.is_empty()),
            "fenced"
        );
        b.runs_on_record(&[("j".into(), ran_on.clone())]);
        let t = now_ms();
        h.status(
            &a,
            StatusReport {
                processes: vec![
                    running("j/attempt-1/rank-0"),
                    exited("j/attempt-1/rank-1", 0),
                ],
            },
            t,
        )
        .expect("a reports");
        h.status(
            &bb,
            StatusReport {
                processes: vec![running("j/attempt-1/rank-2"), running("j/attempt-1/rank-3")],
            },
            t,
        )
        .expect("bb reports");
        assert!(!b.settling(t));
        let _ = b.poll(t);
        let relaunch = recovered_launch("j", 1, 2, &[(0, 2), (1, 2)], ran_on);
        b.act(vec![relaunch]);
        let seen = b.poll(t);
        assert!(
            seen.iter()
                .any(|o| matches!(o, Observed::Continued { attempt: 1, .. })),
            "{seen:?}"
        );
        assert_eq!(h.assignments(&a, t).expect("a").assignments, before_a);
        assert!(
            h.lock().fences.get("j").is_none_or(|f| f.is_empty()),
            "lifted"
        );
    }

    /// A new leader takes over a service's replicas that serve on where they are placed again:
    /// the same assignments (ids of the earlier hub's epoch), restarts its agent made before
    /// not reported again; one whose process is gone is started anew.
    #[test]
    fn a_new_leader_takes_over_the_replicas_that_serve_on() {
        let command = Some(Arc::new(JobCommand {
            argv: vec!["serve".into()],
            env: Default::default(),
            working_dir: None,
        }));
        let add = |node: u32| Command::AddReplica {
            job: "svc".into(),
            cluster: "local".into(),
            accelerators: 2,
            nodes: vec![NodeShare {
                node,
                accelerators: 2,
            }],
            command: command.clone(),
        };
        // The earlier leader: replicas on a (slot 0) and bb (slot 1).
        let h1 = hub();
        let mut b1 = AgentBackend::new(h1.clone());
        let (a, bb) = (join(&h1, "a", 0, 0), join(&h1, "bb", 1, 0));
        let _ = b1.poll(0);
        b1.act(vec![add(0), add(1)]);
        let replicas = b1
            .poll(0)
            .into_iter()
            .filter_map(|o| match o {
                Observed::ReplicasOn { replicas, .. } => Some(replicas),
                _ => None,
            })
            .next_back()
            .expect("where they serve");
        assert_eq!(replicas.len(), 2);
        let handed = |h: &AgentHub, node: &str| h.assignments(node, 0).expect("list");
        let (on_a, on_bb) = (handed(&h1, &a).assignments, handed(&h1, &bb).assignments);
        let ran_on = RanOn {
            nodes: vec![a.clone(), bb.clone()],
            placement: None,
            replicas,
        };

        let h = hub();
        let mut b = AgentBackend::new(h.clone());
        b.reset();
        b.runs_on_record(&[("svc".into(), ran_on)]);
        let t = now_ms();
        let (a2, bb2) = (join(&h, "a", 0, t), join(&h, "bb", 1, t));
        assert_eq!(handed(&h, &a2).keep, [on_a[0].id.clone()]);
        let report = |node: &str, state: ProcessState, restarts: u32| {
            let id = if node == a2 {
                &on_a[0].id
            } else {
                &on_bb[0].id
            };
            h.status(
                node,
                StatusReport {
                    processes: vec![ProcessStatus {
                        assignment_id: id.clone(),
                        state,
                        restarts,
                        last_exit: None,
                    }],
                },
                t,
            )
            .expect("reports");
        };
        report(&a2, ProcessState::Running { pid: 9 }, 3);
        assert!(b.settling(t), "bb not heard yet");
        report(
            &bb2,
            ProcessState::Exited(ExitInfo {
                code: Some(1),
                signal: None,
                stopped_by_agent: false,
            }),
            0,
        );
        assert!(!b.settling(t));
        let _ = b.poll(t);
        b.act(vec![add(0), add(1)]);
        assert_eq!(handed(&h, &a2).assignments, on_a, "taken over");
        let on_bb2 = handed(&h, &bb2).assignments;
        assert_eq!(on_bb2.len(), 1);
        assert_ne!(on_bb2[0].id, on_bb[0].id, "started anew");
        assert!(handed(&h, &bb2).keep.is_empty());
        report(&a2, ProcessState::Running { pid: 9 }, 3);
        let seen = b.poll(t);
        assert!(
            !seen
                .iter()
                .any(|o| matches!(o, Observed::Event { kind, .. } if kind == "replica_restarted")),
            "its earlier restarts are not news: {seen:?}"
        );
        let now_on = seen
            .iter()
            .filter_map(|o| match o {
                Observed::ReplicasOn { replicas, .. } => Some(replicas),
                _ => None,
            })
            .next_back()
            .expect("stored again");
        assert_eq!(now_on.len(), 2);
    }

    /// While a term recovers: other placements take the accelerators of replicas still to be
    /// taken over last, new replicas are numbered after them (their ports differ), only the
    /// replicas reported serving are offered to the scheduler, and a service with none taken
    /// over or started here has its stored replicas cleared once the term settles.
    #[test]
    fn recovering_replicas_keep_their_accelerators_numbers_and_records_straight() {
        let replica = |node: &str, seq: u64| switchyard_store::ReplicaPlacement {
            cluster: "local".into(),
            epoch: "old".into(),
            seq,
            nodes: vec![(node.into(), vec![0])],
            digest: "x".into(),
        };
        let h = hub();
        let mut b = AgentBackend::new(h.clone());
        b.reset();
        b.runs_on_record(&[
            (
                "svc".into(),
                RanOn {
                    nodes: vec!["n-a".into(), "n-bb".into()],
                    placement: None,
                    replicas: vec![replica("n-a", 5), replica("n-bb", 3)],
                },
            ),
            (
                "gone".into(),
                RanOn {
                    nodes: vec!["n-c".into()],
                    placement: None,
                    replicas: vec![replica("n-c", 1)],
                },
            ),
        ]);
        let t = now_ms();
        let (a, bb, c) = (
            join(&h, "a", 0, t),
            join(&h, "bb", 1, t),
            join(&h, "c", 2, t),
        );
        let report = |node: &str, id: &str, running: bool| {
            let state = if running {
                ProcessState::Running { pid: 3 }
            } else {
                ProcessState::Exited(ExitInfo {
                    code: Some(1),
                    signal: None,
                    stopped_by_agent: false,
                })
            };
            h.status(
                node,
                StatusReport {
                    processes: vec![ProcessStatus {
                        assignment_id: id.into(),
                        state,
                        restarts: 0,
                        last_exit: None,
                    }],
                },
                t,
            )
            .expect("reports");
        };
        report(&a, "svc/replica-old.5/rank-0", true);
        report(&bb, "svc/replica-old.3/rank-0", false);
        report(&c, "gone/replica-old.1/rank-0", true);
        assert!(!b.settling(t));
        let live = b.live_recovered_replicas();
        let svc = live.iter().find(|(j, _)| j == "svc").expect("svc");
        assert_eq!(
            svc.1,
            [(
                "local".to_owned(),
                vec![NodeShare {
                    node: 0,
                    accelerators: 1
                }]
            )],
            "only the replica that serves"
        );
        let _ = b.poll(t);
        // A gang of one placed on a first: it gets accelerator 1, not the one the replica to
        // take over holds.
        b.act(vec![
            launch("j", 1, 1, &[(0, 1)]),
            Command::AddReplica {
                job: "svc".into(),
                cluster: "local".into(),
                accelerators: 1,
                nodes: vec![NodeShare {
                    node: 0,
                    accelerators: 1,
                }],
                command: Some(Arc::new(JobCommand {
                    argv: vec!["serve".into()],
                    env: Default::default(),
                    working_dir: None,
                })),
            },
            Command::AddReplica {
                job: "svc".into(),
                cluster: "local".into(),
                accelerators: 1,
                nodes: vec![NodeShare {
                    node: 1,
                    accelerators: 1,
                }],
                command: Some(Arc::new(JobCommand {
                    argv: vec!["serve".into()],
                    env: Default::default(),
                    working_dir: None,
                })),
            },
        ]);
        let on_a = h.assignments(&a, t).expect("a").assignments;
        let rank = on_a
            .iter()
            .find(|x| x.job_id == "j")
            .expect("the gang's rank");
        assert_eq!(rank.accelerators, [1]);
        let on_bb = h.assignments(&bb, t).expect("bb").assignments;
        assert_eq!(on_bb.len(), 1);
        // (Neither is taken over here: the stored digests are made up. Both are numbered
        // after the earlier ones: a's 6, bb's 7.)
        assert!(
            on_bb[0]
                .id
                .starts_with(&format!("svc/replica-{}.7/", h.lock().replica_epoch)),
            "numbered after the earlier replicas: {}",
            on_bb[0].id
        );
        let stored: Vec<(String, usize)> = b
            .poll(t)
            .into_iter()
            .filter_map(|o| match o {
                Observed::ReplicasOn { job, replicas } => Some((job, replicas.len())),
                _ => None,
            })
            .collect();
        assert!(stored.contains(&("gone".into(), 0)), "{stored:?}");
        assert_eq!(
            stored.iter().rev().find(|(j, _)| j == "svc"),
            Some(&("svc".into(), 2)),
            "{stored:?}"
        );
    }

    /// A job started anew where it ran takes the accelerators it held itself before those
    /// another job still to be taken over holds; a replica on a drained node is not offered for
    /// a takeover (it is placed anew elsewhere).
    #[test]
    fn a_job_started_anew_takes_its_own_kept_accelerators_first() {
        let gang = |accelerator: u32| attempt_1_on_a(&[accelerator], "not these");
        let h = hub();
        let mut b = AgentBackend::new(h.clone());
        b.reset();
        b.runs_on_record(&[("first".into(), gang(1)), ("second".into(), gang(0))]);
        let t = now_ms();
        let a = join(&h, "a", 0, t);
        runs_nothing(&h, &a, t);
        assert!(!b.settling(t));
        let _ = b.poll(t);
        let mut relaunch = launch("first", 1, 2, &[(0, 1)]);
        if let Command::Launch { recovered, .. } = &mut relaunch {
            *recovered = true;
        }
        b.act(vec![relaunch]);
        let h2 = h.lock();
        let run = h2
            .by_job
            .get("first")
            .and_then(|ids| h2.runs.get(ids.iter().next()?))
            .expect("started anew");
        assert_eq!(
            run.by_node[&a][0].accelerators,
            [1],
            "its own, not second's 0"
        );
        drop(h2);

        let h = hub();
        let mut b = AgentBackend::new(h.clone());
        b.reset();
        b.runs_on_record(&[(
            "svc".into(),
            RanOn {
                nodes: vec!["n-a".into()],
                placement: None,
                replicas: vec![switchyard_store::ReplicaPlacement {
                    cluster: "local".into(),
                    epoch: "old".into(),
                    seq: 1,
                    nodes: vec![("n-a".into(), vec![0])],
                    digest: "x".into(),
                }],
            },
        )]);
        let a = join(&h, "a", 0, t);
        h.status(
            &a,
            StatusReport {
                processes: vec![ProcessStatus {
                    assignment_id: "svc/replica-old.1/rank-0".into(),
                    state: ProcessState::Running { pid: 4 },
                    restarts: 0,
                    last_exit: None,
                }],
            },
            t,
        )
        .expect("reports");
        assert_eq!(b.live_recovered_replicas()[0].1.len(), 1, "serving");
        h.set_drain(
            &a,
            Some(switchyard_store::NodeDrain {
                reason: "repair".into(),
                since_ms: t,
            }),
        );
        assert!(
            b.live_recovered_replicas()[0].1.is_empty(),
            "not on a drained node"
        );
    }

    /// A gang put back on a drained node for its ranks' sake that cannot be taken over does
    /// not start a new attempt there: it is interrupted, to be placed elsewhere.
    #[test]
    fn a_gang_not_taken_over_on_a_drained_node_is_placed_elsewhere() {
        let h = hub();
        let mut b = AgentBackend::new(h.clone());
        b.reset();
        let ran_on = attempt_1_on_a(&[0, 1], "not these assignments");
        b.runs_on_record(&[("j".into(), ran_on.clone())]);
        let t = now_ms();
        let a = join(&h, "a", 0, t);
        h.set_drain(
            &a,
            Some(switchyard_store::NodeDrain {
                reason: "repair".into(),
                since_ms: t,
            }),
        );
        runs_nothing(&h, &a, t);
        assert!(!b.settling(t));
        let _ = b.poll(t);
        let relaunch = recovered_launch("j", 1, 2, &[(0, 2)], ran_on);
        b.act(vec![relaunch]);
        let seen = b.poll(t);
        assert!(
            seen.iter()
                .any(|o| matches!(o, Observed::Interrupted { reason, .. }
                if reason.contains("is drained: placed again elsewhere"))),
            "{seen:?}"
        );
        assert!(h.assignments(&a, t).expect("a").assignments.is_empty());
    }

    /// A new leader waits for the nodes of recovering gangs for one node-loss deadline at
    /// most; a job that is not placed again in the first pass after is no longer kept.
    #[test]
    fn a_new_leader_waits_for_silent_nodes_one_deadline_then_stops_keeping() {
        let h = hub();
        let mut b = AgentBackend::new(h.clone());
        b.reset();
        let ran_on = attempt_1_on_a(&[0, 1], "x");
        b.runs_on_record(&[("j".into(), ran_on)]);
        let t0 = h.lock().term_started_ms.expect("a term");
        let a = join(&h, "a", 0, t0);
        let deadline = h.settings.deadline_ms();
        assert!(b.settling(t0 + deadline - 1), "a has not reported");
        assert_eq!(h.assignments(&a, t0).expect("list").keep.len(), 2);
        assert!(!b.settling(t0 + deadline), "waited long enough");
        assert!(!b.settling(t0), "and settled for good");
        assert_eq!(
            h.assignments(&a, t0).expect("list").keep.len(),
            2,
            "until the pass"
        );
        b.act(Vec::new());
        assert!(h.assignments(&a, t0).expect("list").keep.is_empty());
        // Nothing recovering: nothing to wait for.
        let mut fresh = AgentBackend::new(hub());
        fresh.reset();
        assert!(!fresh.settling(now_ms()));
    }

    /// Nodes of a gang cut off at the same moment heartbeat at different moments, so one
    /// crosses the deadline first; the others, which have missed every heartbeat but the last,
    /// are lost with it in the same poll, side by side, and the gang restarts once. A node
    /// equally silent that shares no gang with it waits for its own deadline.
    #[test]
    fn nodes_of_a_gang_cut_off_together_are_lost_in_one_poll() {
        let (h, mut b, t0, [a, bb, c]) = gang_on_a_and_bb();
        // All three are cut off; a's and c's last heartbeats came half an interval after bb's.
        h.heartbeat(&a, t0 + 50).expect("a lives");
        h.heartbeat(&c, t0 + 50).expect("c lives");
        let mut t = t0;
        let mut seen = Vec::new();
        while !seen
            .iter()
            .any(|o| matches!(o, Observed::NodeFailed { .. }))
        {
            t += 10;
            seen = b.poll(t);
        }
        assert_eq!(t, t0 + 310, "bb crosses the deadline first");
        let failed: Vec<&Observed> = seen
            .iter()
            .filter(|o| matches!(o, Observed::NodeFailed { .. }))
            .collect();
        assert_eq!(
            failed,
            [
                &Observed::NodeFailed {
                    cluster: 0,
                    node: 0
                },
                &Observed::NodeFailed {
                    cluster: 0,
                    node: 1
                }
            ],
            "a and bb side by side, not c: {seen:?}"
        );
        let notes: Vec<&str> = seen
            .iter()
            .filter_map(|o| match o {
                Observed::Event { message, .. } => Some(message.as_str()),
                _ => None,
            })
            .collect();
        assert!(
            notes.len() == 2 && notes[0].contains("missed 3 heartbeats"),
            "the node lost on its own first: {notes:?}"
        );
        let last = seen
            .iter()
            .rposition(|o| matches!(o, Observed::Event { .. }));
        let first_failure = seen
            .iter()
            .position(|o| matches!(o, Observed::NodeFailed { .. }));
        assert!(last < first_failure, "notes first: {seen:?}");
        assert!(
            seen.iter()
                .any(|o| matches!(o, Observed::Event { kind, message, .. }
                if kind == "node_lost" && message.contains(&format!("node {a} "))
                    && message.contains(&format!("when node {bb},"))
                    && message.contains("cut off with it"))),
            "{seen:?}"
        );
        let lost = |id: &str| h.lock().nodes.get(id).is_some_and(|n| n.lost);
        assert!(lost(&a) && lost(&bb) && !lost(&c));
        // c is lost at its own deadline.
        while !lost(&c) {
            t += 10;
            let _ = b.poll(t);
        }
        assert_eq!(t, t0 + 360);
    }

    /// With fewer than 3 intervals to the deadline nothing is lost before its own deadline.
    #[test]
    fn with_a_short_deadline_no_node_is_lost_early() {
        let fleet = Fleet::from_toml(
            &switchyard_core::fleet::local_fleet_toml("t", 3, 2, ""),
            "t.toml",
        )
        .expect("fleet");
        let h = AgentHub::new(
            &fleet,
            AgentSettings {
                heartbeat_interval: Duration::from_millis(100),
                lost_after: 2,
                ..Default::default()
            },
        );
        let mut b = AgentBackend::new(h.clone());
        let t0 = now_ms();
        let _a = join(&h, "a", 0, t0);
        let bb = join(&h, "bb", 1, t0);
        let _ = b.poll(t0);
        b.act(vec![launch("j", 1, 1, &[(0, 2), (1, 2)])]);
        let _ = b.poll(t0);
        h.heartbeat(&bb, t0 + 50).expect("bb lives");
        let failed = |seen: Vec<Observed>| {
            seen.into_iter()
                .filter(|o| matches!(o, Observed::NodeFailed { .. }))
                .count()
        };
        let mut at = Vec::new();
        for t in (t0 + 10..=t0 + 300).step_by(10) {
            let n = failed(b.poll(t));
            if n > 0 {
                at.push((t - t0, n));
            }
        }
        assert_eq!(
            at,
            [(210, 1), (260, 1)],
            "a alone, then bb at its own deadline"
        );
    }

    /// Nodes of a gang cut off a little apart are declared lost polls apart: the restart after
    /// the first loss, placed on the other node still counted ready, is held too, and so is the
    /// one after the second loss, until a node of the first attempt reports its rank stopped or
    /// their agents must have stopped its ranks.
    #[test]
    fn a_gang_cut_off_whole_but_lost_one_node_at_a_time_is_held() {
        let (h, mut b, t0, [a, bb, c]) = gang_on_a_and_bb();
        // a and bb are cut off; bb's last heartbeat came more than an interval after a's, so
        // when a is lost bb has missed only one heartbeat and is not lost with it.
        h.heartbeat(&bb, t0 + 160).expect("bb lives");
        let mut t = t0;
        let mut lost = Vec::new();
        while lost.is_empty() {
            t += 50;
            h.heartbeat(&c, t).expect("c lives");
            lost.extend(
                b.poll(t)
                    .into_iter()
                    .filter(|o| matches!(o, Observed::NodeFailed { .. })),
            );
        }
        assert_eq!(
            lost,
            [Observed::NodeFailed {
                cluster: 0,
                node: 0
            }],
            "a first"
        );
        // The restart keeps bb, which is not declared lost yet: held all the same.
        b.act(vec![
            Command::Stop { job: "j".into() },
            launch("j", 2, 2, &[(1, 2), (2, 2)]),
        ]);
        assert_eq!(
            b.next_due_ms(),
            Some(t),
            "a held launch is due at once, so that its reason is seen"
        );
        assert!(
            b.poll(t).iter().any(
                |o| matches!(o, Observed::Held { job, generation: 2, why, .. }
                    if job == "j" && why.contains("cut off")
                        && why.starts_with("held back until ")
                        && why.contains(" UTC at the latest ("))
            ),
            "held while bb may be cut off too"
        );
        // bb is lost in turn; the next restart is held by the same fence.
        while !h.lock().nodes.get(&bb).is_some_and(|n| n.lost) {
            t += 50;
            h.heartbeat(&c, t).expect("c lives");
            let _ = b.poll(t);
        }
        b.act(vec![
            Command::Stop { job: "j".into() },
            launch("j", 3, 3, &[(2, 2)]),
        ]);
        let seen = b.poll(t);
        assert!(
            seen.iter()
                .any(|o| matches!(o, Observed::Held { job, generation: 3, .. } if job == "j")),
            "{seen:?}"
        );
        h.heartbeat(&c, t + 1).expect("c lives");
        assert!(
            h.assignments(&c, t + 1)
                .expect("assignments")
                .assignments
                .is_empty()
        );
        // a is back: its agent is handed a desired set without attempt 1, and stops it.
        h.heartbeat(&a, t + 2).expect("a is back");
        assert!(
            !b.poll(t + 2)
                .iter()
                .any(|o| matches!(o, Observed::Began { .. })),
            "a heartbeat says nothing of the old ranks"
        );
        runs_nothing(&h, &a, t + 3);
        let seen = b.poll(t + 3);
        assert!(
            !seen.iter().any(|o| matches!(o, Observed::Began { .. })),
            "bb, still lost, may run its rank on: {seen:?}"
        );
        // bb is back too and reports its rank stopped.
        h.heartbeat(&bb, t + 4).expect("bb is back");
        runs_nothing(&h, &bb, t + 5);
        let seen = b.poll(t + 5);
        assert!(
            seen.iter()
                .any(|o| matches!(o, Observed::Began { job, generation: 3, .. } if job == "j")),
            "{seen:?}"
        );
    }

    /// A gang restarted after a rank failed (its nodes all in touch) waits until every node
    /// reports its old ranks stopped: a rank in its stop grace may still write the checkpoint
    /// directory the next attempt reads.
    #[test]
    fn a_restart_waits_for_every_node_in_touch_to_report_its_old_ranks_stopped() {
        let (h, mut b, [a, bb, c]) = three_nodes(0);
        let _ = b.poll(0);
        b.act(vec![launch("j", 1, 1, &[(0, 2), (1, 2)])]);
        let _ = b.poll(0);
        let (on_a, on_bb) = (ids(&h, &a), ids(&h, &bb));
        let report = |node: &str, ids: &[String], code: Option<i32>, t: i64| {
            let processes = ids
                .iter()
                .map(|id| match code {
                    Some(code) => exited(id, code),
                    None => ProcessStatus {
                        assignment_id: id.clone(),
                        state: ProcessState::Stopping { pid: 9 },
                        restarts: 0,
                        last_exit: None,
                    },
                })
                .collect();
            h.status(node, StatusReport { processes }, t)
                .expect("status");
        };
        // Rank 0 fails; bb's ranks are still going.
        report(&a, &on_a[..1], Some(1), 10);
        report(&bb, &on_bb, None, 10);
        b.act(vec![
            Command::Stop { job: "j".into() },
            launch("j", 2, 2, &[(2, 2)]),
        ]);
        let held = b.poll(20);
        assert!(
            held.iter()
                .any(|o| matches!(o, Observed::Held { job, generation: 2, .. } if job == "j")),
            "{held:?}"
        );
        h.heartbeat(&c, 30).expect("c lives");
        report(&a, &on_a, Some(143), 30);
        assert!(
            !b.poll(30)
                .iter()
                .any(|o| matches!(o, Observed::Began { .. })),
            "bb's old ranks are still stopping"
        );
        report(&bb, &on_bb, Some(143), 40);
        h.heartbeat(&c, 40).expect("c lives");
        assert!(
            b.poll(40)
                .iter()
                .any(|o| matches!(o, Observed::Began { job, generation: 2, .. } if job == "j")),
            "every node in touch reported its old ranks stopped"
        );

        // A node back with another boot may be the same machine rebooted (its ranks gone) or
        // another that took the host name over while the one that ran them is cut off: it
        // holds the fence to its own bound, whatever it reports.
        b.act(vec![launch("k", 1, 1, &[(0, 2), (1, 2)])]);
        let _ = b.poll(50);
        report(&bb, &ids(&h, &bb), None, 50);
        report(&a, &ids(&h, &a), None, 50);
        b.act(vec![
            Command::Stop { job: "k".into() },
            launch("k", 2, 2, &[(2, 2)]),
        ]);
        // bb reboots: silent until it is declared lost, then back with another boot.
        let mut t = 60;
        while !h.lock().nodes[&bb].lost {
            t += 50;
            h.heartbeat(&a, t).expect("a lives");
            h.heartbeat(&c, t).expect("c lives");
            let _ = b.poll(t);
        }
        let (cluster, _) = h
            .resolve(&info("bb", 2), Some("another-boot"))
            .expect("resolves");
        h.admit(&info("bb", 2), Some("another-boot"), &cluster, &bb, 1, t)
            .expect("back after a reboot");
        report(&a, &[], Some(0), t);
        runs_nothing(&h, &bb, t);
        h.heartbeat(&c, t).expect("c lives");
        assert!(
            !b.poll(t)
                .iter()
                .any(|o| matches!(o, Observed::Began { .. })),
            "a report from another boot is not bb's"
        );
        let until = h.lock().fences["k"]
            .iter()
            .flat_map(|f| &f.nodes)
            .find(|n| n.id == bb)
            .map(|n| n.until_ms)
            .expect("bb in k's fence");
        while t < until {
            t = (t + 50).min(until);
            for n in [&a, &bb, &c] {
                h.heartbeat(n, t).expect("lives");
            }
            let seen = b.poll(t);
            assert_eq!(
                seen.iter()
                    .any(|o| matches!(o, Observed::Began { job, generation: 2, .. } if job == "k")),
                t == until,
                "at {t}: {seen:?}"
            );
        }
    }

    /// Each node of a fence counts to its own bound: with the node in touch reported, the
    /// hold ends at the lost node's bound, not at the later one of the node that reported.
    #[test]
    fn a_fence_ends_at_the_bound_of_the_nodes_that_have_not_reported() {
        let (h, mut b, [a, _bb, c]) = three_nodes(0);
        b.poll(0);
        b.act(vec![launch("j", 1, 1, &[(0, 2), (2, 2)])]);
        let mut t = 0;
        while !h.lock().nodes[&a].lost {
            t += 50;
            h.heartbeat(&c, t).expect("c lives");
            h.heartbeat(&_bb, t).expect("bb lives");
            let _ = b.poll(t);
        }
        b.act(vec![
            Command::Stop { job: "j".into() },
            launch("j", 2, 2, &[(1, 2), (2, 2)]),
        ]);
        runs_nothing(&h, &c, t);
        // a, last seen at 0: its agent asks within 5 s, the ranks get their 10 s stop grace,
        // and one heartbeat interval (100 ms) more. c's bound is t later.
        let until = 5_000 + 10_000 + 100;
        while t < until {
            t = (t + 100).min(until);
            h.heartbeat(&c, t).expect("c lives");
            h.heartbeat(&_bb, t).expect("bb lives");
            assert_eq!(began(&b.poll(t), "j"), t == until, "at {t} ms");
        }
    }

    /// A node whose last report said its ranks of the gang had ended (its agent stopped
    /// them as it shut down) holds nothing back when it is then lost: the next attempt waits
    /// only for the nodes still in touch to report theirs stopped, not for the lost node's
    /// orphan bound.
    #[test]
    fn a_node_that_reported_its_ranks_ended_before_it_was_lost_holds_nothing_back() {
        let (h, mut b, [a, bb, c]) = three_nodes(0);
        b.poll(0);
        b.act(vec![launch("j", 1, 1, &[(0, 2), (2, 2)])]);
        let _ = b.poll(0);
        // a's agent shuts down: it stops its ranks and says so in a last report.
        let stopped: Vec<ProcessStatus> = ids(&h, &a)
            .iter()
            .map(|id| ProcessStatus {
                state: ProcessState::Exited(ExitInfo {
                    code: None,
                    signal: Some(15),
                    stopped_by_agent: true,
                }),
                ..exited(id, 0)
            })
            .collect();
        assert_eq!(stopped.len(), 2, "a runs two ranks of j");
        h.status(&a, StatusReport { processes: stopped }, 0)
            .expect("a's last report");
        let mut t = 0;
        while !h.lock().nodes[&a].lost {
            t += 50;
            h.heartbeat(&c, t).expect("c lives");
            h.heartbeat(&bb, t).expect("bb lives");
            let _ = b.poll(t);
        }
        b.act(vec![
            Command::Stop { job: "j".into() },
            launch("j", 2, 2, &[(1, 2), (2, 2)]),
        ]);
        let _ = b.poll(t);
        t += 100;
        h.heartbeat(&c, t).expect("c lives");
        runs_nothing(&h, &c, t);
        // Long before a's bound (5 s to ask + 10 s grace + 100 ms).
        assert!(began(&b.poll(t), "j"), "began at {t} ms");
        assert!(t < 5_000, "{t}");
    }

    /// The hold survives this process losing and retaking the lease (a reset clears the runs
    /// it would be computed from).
    #[test]
    fn a_gang_cut_off_whole_is_held_back_also_after_a_reset() {
        let h = hub();
        let mut b = AgentBackend::new(h.clone());
        let _a = join(&h, "a", 0, 0);
        let c = join(&h, "c", 2, 0);
        b.poll(0);
        b.act(vec![launch("j", 1, 1, &[(0, 2)])]);
        for t in [100, 200, 300, 350] {
            h.heartbeat(&c, t).expect("c lives");
            b.poll(t);
        }
        b.reset();
        let _ = b.poll(400);
        b.act(vec![launch("j", 1, 2, &[(2, 2)])]);
        assert!(
            b.poll(400)
                .iter()
                .any(|o| matches!(o, Observed::Held { job, .. } if job == "j")),
            "held back after the reset"
        );
        h.heartbeat(&c, 500).expect("c lives");
        assert!(
            h.assignments(&c, 500)
                .expect("assignments")
                .assignments
                .is_empty()
        );
    }

    /// A heartbeat whose store write hangs (a stalled database connection) is answered once
    /// the hub has it, not after the pool's 10 s: the agent's next heartbeat must not be late.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_heartbeat_is_answered_while_its_store_write_hangs() {
        use crate::http::PathId;
        use axum::extract::State;
        use axum::http::{HeaderMap, HeaderValue, StatusCode};
        let Some(url) = crate::test_support::postgres_url() else {
            return;
        };
        let (store, silent) = crate::test_support::postgres_behind_a_silenceable_proxy(&url).await;
        let fleet = Fleet::from_toml(
            &switchyard_core::fleet::local_fleet_toml("t", 3, 2, ""),
            "t.toml",
        )
        .expect("fleet");
        let h = hub();
        let state = crate::http::AppState::new(
            store,
            Arc::new(fleet),
            Arc::new(crate::metrics::Metrics::default()),
            Arc::new(tokio::sync::Notify::new()),
        )
        .with_agents(h.clone());
        state
            .metrics
            .leader
            .store(true, std::sync::atomic::Ordering::SeqCst);
        state
            .metrics
            .lease_expires_ms
            .store(i64::MAX, std::sync::atomic::Ordering::SeqCst);
        // Registered long enough ago that this heartbeat is one the store gets a copy of.
        let id = join(&h, "a", 0, now_ms() - 2 * PERSIST_HEARTBEAT_MS);
        // A rank to write output.
        let mut b = AgentBackend::new(h.clone());
        b.act(vec![launch("j", 1, 1, &[(0, 1)])]);
        let handed = h
            .assignments(&id, now_ms())
            .expect("assignments")
            .assignments;
        silent.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut headers = HeaderMap::new();
        headers.insert(
            switchyard_agent::protocol::BOOT_ID_HEADER,
            HeaderValue::from_static("boot-of-a"),
        );
        let auth = crate::http::Auth(switchyard_store::Principal {
            tenant: String::new(),
            admin: false,
            agent: true,
        });
        let answer = handlers::heartbeat(
            State(state.clone()),
            auth.clone(),
            headers.clone(),
            PathId(id.clone()),
        )
        .await;
        assert!(matches!(answer, Ok(StatusCode::NO_CONTENT)), "{answer:?}");
        assert!(h.lock().nodes[&id].last_seen_ms > now_ms() - 60_000);
        // Output the store cannot take in time is refused for now (the agent keeps it and
        // pushes it again), not held for the pool's 10 s.
        let batch = LogBatch {
            lines: vec![switchyard_agent::protocol::LogLine {
                assignment_id: handed[0].id.clone(),
                stream: switchyard_agent::protocol::Stream::Stdout,
                seq: 0,
                at_ms: 0,
                line: "step 1".into(),
            }],
        };
        let body = axum::body::Bytes::from(serde_json::to_vec(&batch).expect("json"));
        let answer = handlers::logs(State(state), auth, headers, PathId(id), Ok(body)).await;
        assert!(
            matches!(&answer, Err(e) if e.status() == StatusCode::SERVICE_UNAVAILABLE)
                && format!("{answer:?}").contains("push them again"),
            "{answer:?}"
        );
    }

    /// A leader whose lease ran out unrenewed answers no agent: another replica may lead by
    /// now, and a new leader's hold of a gang counts on the old one's silence.
    #[tokio::test]
    async fn a_leader_past_its_lease_does_not_answer_agents() {
        use crate::http::PathId;
        use axum::extract::State;
        use axum::http::{HeaderMap, StatusCode};
        let store = switchyard_store::connect("sqlite::memory:")
            .await
            .expect("a store");
        let state = crate::http::AppState::new(
            store,
            Arc::new(Fleet::default_fleet()),
            Arc::new(crate::metrics::Metrics::default()),
            Arc::new(tokio::sync::Notify::new()),
        )
        .with_agents(hub());
        let auth = crate::http::Auth(switchyard_store::Principal {
            tenant: String::new(),
            admin: false,
            agent: true,
        });
        let call = || {
            handlers::heartbeat(
                State(state.clone()),
                auth.clone(),
                HeaderMap::new(),
                PathId("n-unknown".to_owned()),
            )
        };
        let leader = |expires_ms: i64| {
            state
                .metrics
                .leader
                .store(true, std::sync::atomic::Ordering::SeqCst);
            state
                .metrics
                .lease_expires_ms
                .store(expires_ms, std::sync::atomic::Ordering::SeqCst);
        };
        leader(now_ms() - 1);
        let answer = call().await;
        assert!(
            matches!(&answer, Err(e) if e.status() == StatusCode::SERVICE_UNAVAILABLE),
            "{answer:?}"
        );
        leader(now_ms() + 60_000);
        let answer = call().await;
        assert!(
            matches!(&answer, Err(e) if e.status() == StatusCode::NOT_FOUND),
            "a leader in its lease answers (this node it does not know): {answer:?}"
        );
    }

    #[test]
    fn a_stalled_leader_does_not_declare_every_node_lost() {
        let h = hub();
        let mut b = AgentBackend::new(h.clone());
        let a = join(&h, "a", 0, 0);
        b.poll(0);
        // The process stood still for 10 s (or the clock jumped): a is overdue only because
        // nobody polled.
        assert_eq!(b.poll(10_000), [], "a grace of one deadline");
        h.heartbeat(&a, 10_100).expect("a lives");
        assert_eq!(b.poll(10_200), []);
        // A node that really stays silent is still found.
        let mut lost = Vec::new();
        for t in (10_300..=10_800).step_by(100) {
            lost.extend(b.poll(t));
        }
        assert!(
            lost.iter().any(|o| matches!(
                o,
                Observed::NodeFailed {
                    cluster: 0,
                    node: 0
                }
            )),
            "{lost:?}"
        );
    }

    /// Ends that are not the job's doing interrupt the attempt without spending a retry: the
    /// agent shut down under its ranks (they saved a checkpoint on SIGTERM and exited 0, but did
    /// not finish), or an agent restarted in place adopted a rank and saw it end, exit code
    /// unknown.
    #[test]
    fn ranks_that_ended_through_no_fault_of_the_job_interrupt_the_attempt() {
        for (exit, why) in [
            (
                ExitInfo {
                    code: Some(0),
                    signal: None,
                    stopped_by_agent: true,
                },
                "stopped by its agent",
            ),
            (
                ExitInfo {
                    code: None,
                    signal: None,
                    stopped_by_agent: false,
                },
                "exit code unknown",
            ),
        ] {
            let h = hub();
            let mut b = AgentBackend::new(h.clone());
            let a = join(&h, "a", 0, 0);
            b.poll(0);
            b.act(vec![launch("j", 1, 1, &[(0, 2)])]);
            let processes = ids(&h, &a)
                .into_iter()
                .map(|id| ProcessStatus {
                    assignment_id: id,
                    state: ProcessState::Exited(exit.clone()),
                    restarts: 0,
                    last_exit: None,
                })
                .collect();
            h.status(&a, StatusReport { processes }, 50)
                .expect("status");
            h.heartbeat(&a, 60).expect("a lives");
            let seen = outcomes(b.poll(60));
            assert!(
                matches!(seen.as_slice(), [Observed::Interrupted { job, generation: 1, reason }]
                    if job == "j" && reason.contains(why)),
                "{why}: not finished, and not the job's failure: {seen:?}"
            );
        }
    }

    #[test]
    fn handed_ids_are_kept_once_and_forgotten_when_old_or_too_many() {
        let mut ids = RecentIds::default();
        ids.insert("a", 0);
        ids.insert("a", 10);
        assert_eq!(ids.order.len(), 1);
        assert!(ids.contains("a"));
        ids.insert("b", RecentIds::TTL_MS + 1);
        assert!(!ids.contains("a"), "older than the TTL");
        assert!(ids.contains("b"));
        for i in 0..2 * RecentIds::CAPACITY {
            ids.insert(&format!("x{i}"), RecentIds::TTL_MS + 2);
        }
        assert_eq!(ids.order.len(), RecentIds::CAPACITY);
        assert_eq!(ids.set.len(), RecentIds::CAPACITY);
        assert!(ids.contains(&format!("x{}", 2 * RecentIds::CAPACITY - 1)));
        assert!(!ids.contains("x0"));
    }

    #[test]
    fn a_placement_on_a_slot_without_an_agent_fails_the_attempt() {
        let h = hub();
        let mut b = AgentBackend::new(h.clone());
        join(&h, "a", 0, 0);
        b.poll(0);
        b.act(vec![launch("j", 1, 1, &[(0, 2), (2, 2)])]);
        let seen = b.poll(1);
        assert!(
            matches!(seen.as_slice(), [
                Observed::NodeFailed { cluster: 0, node: 2 },
                Observed::Interrupted { reason, .. },
            ] if reason.contains("slot 2")),
            "the scheduler hears the slot is down, and the attempt is interrupted: {seen:?}"
        );
        // Nothing was taken on node a for the placement that was not made.
        b.act(vec![launch("k", 1, 1, &[(0, 2)])]);
        let list = h
            .lock()
            .runs
            .values()
            .flat_map(|r| r.by_node.values().flatten().map(|a| a.accelerators.clone()))
            .collect::<Vec<_>>();
        assert_eq!(list, [vec![0], vec![1]]);
    }

    #[test]
    fn replicas_come_and_go_by_their_nodes_and_commandless_runs_are_simulated() {
        let h = hub();
        let mut b = AgentBackend::new(h.clone());
        let a = join(&h, "a", 0, 0);
        b.poll(0);
        let command = Some(Arc::new(JobCommand {
            argv: vec!["serve".into()],
            env: Default::default(),
            working_dir: None,
        }));
        let share = |n: u32| {
            vec![NodeShare {
                node: n,
                accelerators: 1,
            }]
        };
        b.act(vec![
            Command::AddReplica {
                job: "svc".into(),
                cluster: "local".into(),
                accelerators: 1,
                nodes: share(0),
                command: command.clone(),
            },
            Command::AddReplica {
                job: "svc".into(),
                cluster: "local".into(),
                accelerators: 1,
                nodes: share(0),
                command,
            },
        ]);
        let list = h.assignments(&a, 0).expect("a").assignments;
        assert_eq!(list.len(), 2);
        assert!(list.iter().all(|x| x.restart == RestartPolicy::Always));
        assert_ne!(list[0].accelerators, list[1].accelerators);
        // A replica its agent restarted: the event says how the copy before ended.
        let mut restarted = |state: ProcessState, restarts: u32, last_exit: Option<ExitInfo>| {
            h.status(
                &a,
                StatusReport {
                    processes: vec![ProcessStatus {
                        assignment_id: list[0].id.clone(),
                        state,
                        restarts,
                        last_exit,
                    }],
                },
                1,
            )
            .expect("status");
            b.poll(1)
                .into_iter()
                .filter_map(|o| match o {
                    Observed::Event { kind, message, .. } if kind == "replica_restarted" => {
                        Some(message)
                    }
                    _ => None,
                })
                .collect::<Vec<String>>()
        };
        let events = restarted(
            ProcessState::Running { pid: 7 },
            1,
            Some(ExitInfo {
                code: Some(3),
                signal: None,
                stopped_by_agent: false,
            }),
        );
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(
            events[0].contains(" on node a exited with code 3; its agent restarted it (restart 1)"),
            "{events:?}"
        );
        // One whose program cannot start: its agent tries again, and the event says so.
        let events = restarted(
            ProcessState::FailedToStart {
                error: "No such file or directory".into(),
            },
            2,
            None,
        );
        assert!(
            matches!(events.as_slice(), [m] if m.ends_with(
                " on node a could not start (No such file or directory); its agent tries again \
                 (restart 2)"
            )),
            "{events:?}"
        );
        b.act(vec![Command::RemoveReplica {
            job: "svc".into(),
            cluster: "local".into(),
            nodes: share(0),
        }]);
        assert_eq!(ids(&h, &a).len(), 1);
        let mut sim = launch("sim", 4, 1, &[(0, 1)]);
        if let Command::Launch {
            command,
            expected_end_ms,
            ..
        } = &mut sim
        {
            *command = None;
            *expected_end_ms = 1000;
        }
        b.act(vec![sim]);
        h.heartbeat(&a, 990).expect("a lives");
        let seen = b.poll(999);
        assert!(
            matches!(seen.as_slice(), [Observed::ReplicasOn { job, replicas }]
                if job == "svc" && replicas.len() == 1 && replicas[0].nodes == [("n-a".to_owned(), vec![1])]),
            "where the service's one replica left serves: {seen:?}"
        );
        assert_eq!(
            b.poll(1000),
            [Observed::Finished {
                job: "sim".into(),
                generation: 4
            }]
        );
    }
}
