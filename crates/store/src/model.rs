//! The records the store keeps.

/// Where a job is. `Done`, `Failed`, `Cancelled` and `Rejected` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    Pending,
    Running,
    Done,
    /// Ran and failed for good (e.g. a rank kept failing past the retry limit).
    Failed,
    Cancelled,
    Rejected,
}

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Pending,
        JobState::Running,
        JobState::Done,
        JobState::Failed,
        JobState::Cancelled,
        JobState::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Rejected => "rejected",
        }
    }

    pub fn parse(text: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed | JobState::Cancelled | JobState::Rejected
        )
    }
}

/// A stored token: its SHA-256 (the token itself is never stored), whom it acts for, when it
/// was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub hash: String,
    pub principal: Principal,
    pub created_ms: i64,
}

/// The bearer of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The tenant it acts for; empty for agent tokens (fleet-wide, no tenant's).
    pub tenant: String,
    /// Sees and acts on every tenant's jobs.
    pub admin: bool,
    /// A node agent's token (`switchyard token create --agent`): may use the agent endpoints
    /// only, not the tenants' `/v1/jobs`. Admin tokens are not marked `agent` but may act as
    /// agents too ([`Principal::may_act_as_agent`]).
    pub agent: bool,
}

impl Principal {
    /// May call the agent endpoints: agent and admin tokens.
    pub fn may_act_as_agent(&self) -> bool {
        self.agent || self.admin
    }

    /// May use the tenant API (`/v1/jobs`, `/v1/tenants`): every token but agent tokens.
    pub fn may_use_tenant_api(&self) -> bool {
        !self.agent || self.admin
    }
}

/// A submission, as the API accepted it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub id: String,
    pub tenant: String,
    /// Optional tenant-unique name (also an idempotency key: a second submission with the
    /// same name is refused).
    pub name: Option<String>,
    pub kind: String,
    pub priority: i64,
    pub accelerators: i64,
    /// The job's specification, JSON (the API's submit request as accepted).
    pub spec: String,
    /// The initial "why pending" text.
    pub reason: String,
    pub submitted_ms: i64,
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    /// Submission order (unique, increasing, not necessarily committed in order).
    pub seq: i64,
    /// Submission order among the tenant's own jobs, from 1: the cursor of tenant-scoped
    /// lists, which must not show how many jobs other tenants submitted in between.
    pub tenant_number: i64,
    pub id: String,
    pub tenant: String,
    pub name: Option<String>,
    pub kind: String,
    pub priority: i64,
    pub accelerators: i64,
    pub spec: String,
    pub state: JobState,
    /// Why the job is where it is, in words.
    pub reason: String,
    /// The cluster it runs on or last ran on.
    pub cluster: Option<String>,
    /// Accelerators it holds now.
    pub allocated: i64,
    pub restarts: i64,
    /// Failed runs counted against the job's `max_retries`.
    pub failures: i64,
    pub cancel_requested: bool,
    /// Inference services: the replica count asked for with [`crate::StoreWrite::request_scale`]
    /// (`None`: never asked; the service runs its submitted minimum).
    pub replicas_wanted: Option<i64>,
    pub submitted_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    pub updated_ms: i64,
    /// The fraction of a training run's work its checkpoints hold, as the scheduler predicts
    /// it (0 for other jobs): where a new scheduling leader resumes it from.
    pub work_done: f64,
    /// Where node agents were last given its ranks.
    pub ran_on: Option<RanOn>,
}

/// Where a gang's ranks were last handed to node agents: their node ids (stable per cluster
/// and host name). A node cut off from the leader runs them on until its agent's orphan
/// deadline, so a new scheduling leader that has heard from none of these nodes holds the next
/// attempt back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RanOn {
    pub nodes: Vec<String>,
    /// Where each rank ran, when the agents' backend said (releases before it did not).
    pub placement: Option<RankPlacement>,
    /// A service's replicas run by node agents, each where it serves.
    pub replicas: Vec<ReplicaPlacement>,
}

/// Where a replica of a service was handed out, for a new scheduling leader to take it over as
/// it takes a gang's ranks over ([`RankPlacement`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplicaPlacement {
    pub cluster: String,
    /// Its assignment ids, one per node in `nodes` order: `{job}/replica-{epoch}.{seq}/rank-{r}`.
    pub epoch: String,
    pub seq: u64,
    /// Node id and accelerator indices, in rank order.
    pub nodes: Vec<(String, Vec<u32>)>,
    /// [`RankPlacement::digest`] of its assignments.
    pub digest: String,
}

/// What the `ran_on_placement` column holds (JSON).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct StoredPlacement {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gang: Option<RankPlacement>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    replicas: Vec<ReplicaPlacement>,
}

impl RanOn {
    /// The placements as stored (JSON), `None` when there are none.
    pub fn placement_text(&self) -> Option<String> {
        if self.placement.is_none() && self.replicas.is_empty() {
            return None;
        }
        serde_json::to_string(&StoredPlacement {
            gang: self.placement.clone(),
            replicas: self.replicas.clone(),
        })
        .ok()
    }

    /// Takes the placements [`Self::placement_text`] wrote; text that is not that (written by a
    /// later release, say) leaves none: a placement that cannot be read is not used.
    pub fn read_placement_text(&mut self, text: &str) {
        let stored: StoredPlacement = serde_json::from_str(text).unwrap_or_default();
        // (A gang's placement alone, as the first release that stored any wrote it.)
        self.placement = stored
            .gang
            .or_else(|| serde_json::from_str::<RankPlacement>(text).ok());
        self.replicas = stored.replicas;
    }
}

/// Where each rank of a gang's attempt was handed out: enough for a new scheduling leader to
/// place the gang on exactly those accelerators and hand its agents the very assignments they
/// run, so that ranks that survived the change of leader run on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RankPlacement {
    /// The attempt the ranks belong to.
    pub attempt: u32,
    /// Node id and accelerator indices, in rank order: the first node holds ranks 0.., one per
    /// accelerator, the next the ranks after them.
    pub nodes: Vec<(String, Vec<u32>)>,
    /// A digest of every assignment handed out (ids, commands, environments, ports,
    /// addresses): assignments built again from the same inputs match it.
    pub digest: String,
}

/// Something that happened to a job.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// The event's number among the job's events, from 1: the `after` of the next read.
    pub cursor: i64,
    pub job_id: String,
    pub at_ms: i64,
    /// `submitted`, `waiting`, `started`, `preempted`, `restarted`, `finished`, …
    pub kind: String,
    pub cluster: Option<String>,
    pub message: String,
}

/// An event to look for ([`crate::StoreRead::has_event`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventQuery<'a> {
    pub job_id: &'a str,
    pub kind: &'a str,
    pub cluster: &'a str,
    /// The message starts with this.
    pub prefix: &'a str,
    /// Recorded before this.
    pub before_ms: i64,
}

/// An event to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub job_id: String,
    pub at_ms: i64,
    pub kind: String,
    pub cluster: Option<String>,
    pub message: String,
}

/// The scheduler's view of a job after a pass: written as absolute values, so that writing
/// the same update twice changes nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct JobUpdate {
    pub id: String,
    pub state: JobState,
    pub reason: String,
    pub cluster: Option<String>,
    pub allocated: i64,
    /// What it holds on each cluster (`allocated` in all): one for most jobs, several for a
    /// service whose replicas span clusters; none when it holds nothing.
    pub allocated_by_cluster: Vec<(String, i64)>,
    pub restarts: i64,
    /// Failed runs counted against the job's `max_retries`.
    pub failures: i64,
    /// The job's first start as the leader sees it (a run its cluster held counts from when
    /// its work began); `None` keeps what is stored.
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    pub updated_ms: i64,
    /// [`JobRecord::work_done`].
    pub work_done: f64,
    /// [`JobRecord::ran_on`].
    pub ran_on: Option<RanOn>,
}

/// One scheduling pass's writes, applied in one transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Jobs the scheduler took in during this pass (marked seen).
    pub seen: Vec<String>,
    pub updates: Vec<JobUpdate>,
    pub events: Vec<NewEvent>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty() && self.updates.is_empty() && self.events.is_empty()
    }
}

/// Which jobs to list.
#[derive(Debug, Clone, PartialEq)]
pub struct JobFilter {
    /// `None`: every tenant (admins only).
    pub tenant: Option<String>,
    /// Empty: any state.
    pub states: Vec<JobState>,
    pub kind: Option<String>,
    /// Only jobs after this cursor in the listing's order ([`JobFilter::cursor_of`] of the
    /// last job of a page).
    pub after: Option<i64>,
    /// The latest submissions first (and `after` goes back in time); by default the earliest.
    pub newest_first: bool,
    pub limit: i64,
    /// Ends the page before a job whose specification would start past this many bytes of
    /// listed specifications (the first job is always listed), so that a page of big
    /// submissions stays bounded. `None`: `limit` alone.
    pub spec_bytes: Option<i64>,
}

impl Default for JobFilter {
    fn default() -> Self {
        JobFilter {
            tenant: None,
            states: Vec::new(),
            kind: None,
            after: None,
            newest_first: false,
            limit: 100,
            spec_bytes: None,
        }
    }
}

impl JobFilter {
    /// A listed job's place in this listing, for the next page's `after`: its number among its
    /// tenant's jobs when the list is one tenant's, its global submission order otherwise
    /// (only admins list every tenant's jobs).
    pub fn cursor_of(&self, job: &JobRecord) -> i64 {
        if self.tenant.is_some() {
            job.tenant_number
        } else {
            job.seq
        }
    }

    /// This filter reading one job more than its page: [`JobFilter::page`] then tells from it
    /// whether another page follows.
    pub fn with_lookahead(&self) -> JobFilter {
        JobFilter {
            limit: self.limit.saturating_add(1),
            ..self.clone()
        }
    }

    /// The page of this filter's listing in `rows` (read with [`JobFilter::with_lookahead`]),
    /// and the cursor of the page after it: `None` when no job follows. A page the byte budget
    /// ended may have more.
    pub fn page(&self, mut rows: Vec<JobRecord>) -> (Vec<JobRecord>, Option<i64>) {
        let beyond = rows.len() as i64 > self.limit;
        rows.truncate(usize::try_from(self.limit).unwrap_or(usize::MAX));
        let spec_bytes: usize = rows.iter().map(|j| j.spec.len()).sum();
        let more = beyond
            || self
                .spec_bytes
                .is_some_and(|budget| spec_bytes as i64 >= budget);
        let next = rows.last().filter(|_| more).map(|j| self.cursor_of(j));
        (rows, next)
    }

    /// The column a listing pages on ([`JobFilter::cursor_of`]).
    pub(crate) fn cursor_column(&self) -> &'static str {
        if self.tenant.is_some() {
            "tenant_number"
        } else {
            "seq"
        }
    }
}

/// The scheduling lease: who schedules, in which term, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    /// Increases each time the lease changes hands; fences the old leader's writes.
    pub term: i64,
    pub expires_ms: i64,
}

/// The scheduling lease as the store has it: who holds it, until when, and the fleet it
/// schedules (`NAME:DIGEST`, empty when the holder did not say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderInfo {
    pub holder: String,
    pub term: i64,
    pub expires_ms: i64,
    pub fleet: String,
}

/// Active jobs of one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantUsage {
    pub tenant: String,
    pub pending: i64,
    pub running: i64,
    pub allocated: i64,
}

/// What runs on one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterUsage {
    pub cluster: String,
    pub running: i64,
    pub allocated: i64,
}

/// What a node agent registers with (`POST /v1/agent/register`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRegistration {
    /// The fleet cluster the node joins.
    pub cluster: String,
    pub hostname: String,
    /// Where other nodes reach it (`MASTER_ADDR` when it hosts rank 0).
    pub address: String,
    pub cpus: i64,
    pub memory_bytes: i64,
    pub accelerators: i64,
    /// The agent's `NodeInfo`, JSON.
    pub info: String,
    /// The machine's boot id, as the agent's requests carry it (`None`: it sent none).
    pub boot_id: Option<String>,
    pub now_ms: i64,
    /// How many nodes the fleet cluster has: the node takes a slot in `0..slots`.
    pub slots: i64,
}

/// Whether a node answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeState {
    Ready,
    /// Its heartbeats stopped; it is ready again when it registers or heartbeats.
    Lost,
}

impl NodeState {
    pub const ALL: [NodeState; 2] = [NodeState::Ready, NodeState::Lost];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Ready => "ready",
            NodeState::Lost => "lost",
        }
    }

    pub fn parse(text: &str) -> Option<NodeState> {
        NodeState::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A registered node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// `n-` and 12 hex digits; the same for every registration of (cluster, hostname).
    pub id: String,
    pub cluster: String,
    /// Its node index in the cluster, `0..slots` (lowest free at first registration; kept).
    pub slot: i64,
    pub hostname: String,
    pub address: String,
    pub cpus: i64,
    pub memory_bytes: i64,
    pub accelerators: i64,
    /// The agent's `NodeInfo`, JSON, as last registered.
    pub info: String,
    pub state: NodeState,
    /// Its first registration.
    pub registered_ms: i64,
    /// Its last registration or heartbeat.
    pub heartbeat_ms: i64,
    /// When it was marked lost (`None` while ready).
    pub lost_ms: Option<i64>,
    /// The machine's boot id at its last registration (`None`: it sent none).
    pub boot_id: Option<String>,
    /// Drained by an administrator: it takes no new work (`None` while it is not).
    pub drained: Option<NodeDrain>,
}

/// Why and since when a node is drained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDrain {
    pub reason: String,
    pub since_ms: i64,
}

/// One output line of a job's process, as an agent pushed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub job_id: String,
    pub attempt: i64,
    pub rank: i64,
    /// The assignment that printed it (with `stream` and `seq`, what makes it unique).
    pub assignment_id: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// Position in that stream of that assignment, from 0.
    pub seq: i64,
    pub at_ms: i64,
    pub line: String,
}

/// A stored log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// The line's number among the job's stored lines, from 1 (increasing, with gaps where a
    /// line was sent twice): the `after` of the next read.
    pub cursor: i64,
    pub job_id: String,
    pub attempt: i64,
    pub rank: i64,
    pub assignment_id: String,
    pub stream: String,
    pub seq: i64,
    pub at_ms: i64,
    pub line: String,
}

/// Which log lines of a job to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery {
    pub job_id: String,
    /// Only this rank.
    pub rank: Option<i64>,
    /// Only this attempt.
    pub attempt: Option<i64>,
    /// Only this replica of an inference service: the `EPOCH.N` of its processes' assignment
    /// ids (`{job}/replica-EPOCH.N/rank-R`); see [`replica_of_assignment`].
    pub replica: Option<String>,
    /// Only lines with a cursor above this (0: from the start).
    pub after: i64,
    /// At most this many lines.
    pub limit: i64,
}

impl LogQuery {
    /// Every line of `job_id` from the start, 1000 at a time.
    pub fn new(job_id: impl Into<String>) -> Self {
        LogQuery {
            job_id: job_id.into(),
            rank: None,
            attempt: None,
            replica: None,
            after: 0,
            limit: 1000,
        }
    }
}

/// The replica an assignment id names (`{job}/replica-EPOCH.N/rank-R` → `EPOCH.N`), for the
/// processes of inference services; `None` for gangs (`{job}/attempt-A/rank-R`) and runs of
/// other backends.
pub fn replica_of_assignment(assignment_id: &str) -> Option<&str> {
    let (_, rest) = assignment_id.split_once("/replica-")?;
    let (replica, _) = rest.split_once('/')?;
    is_replica_name(replica).then_some(replica)
}

/// Whether `name` has the form of a replica name: lower-case hexadecimal, a dot, decimal.
pub fn is_replica_name(name: &str) -> bool {
    name.split_once('.').is_some_and(|(epoch, n)| {
        !epoch.is_empty()
            && !n.is_empty()
            && epoch.len() <= 16
            && n.len() <= 10
            && epoch
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && n.bytes().all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placements_read_back_and_garbage_is_none() {
        let gang = RanOn {
            nodes: vec!["n-a".into(), "n-b".into()],
            placement: Some(RankPlacement {
                attempt: 3,
                nodes: vec![("n-a".into(), vec![0, 1]), ("n-b".into(), vec![7])],
                digest: "abc".into(),
            }),
            replicas: Vec::new(),
        };
        let service = RanOn {
            nodes: vec!["n-a".into()],
            placement: None,
            replicas: vec![ReplicaPlacement {
                cluster: "c".into(),
                epoch: "e1".into(),
                seq: 4,
                nodes: vec![("n-a".into(), vec![2, 3])],
                digest: "def".into(),
            }],
        };
        for ran_on in [gang, service] {
            let mut back = RanOn {
                nodes: ran_on.nodes.clone(),
                ..RanOn::default()
            };
            back.read_placement_text(&ran_on.placement_text().expect("some"));
            assert_eq!(back, ran_on);
        }
        assert_eq!(RanOn::default().placement_text(), None);
        let bare = RankPlacement {
            attempt: 2,
            nodes: vec![("n-a".into(), vec![0])],
            digest: "d".into(),
        };
        let mut r = RanOn::default();
        r.read_placement_text(&serde_json::to_string(&bare).expect("json"));
        assert_eq!(r.placement, Some(bare), "a gang's placement alone");
        for garbage in ["n-a,n-b", "{\"gang\": {\"attempt\": -1}}"] {
            let mut r = RanOn::default();
            r.read_placement_text(garbage);
            assert_eq!(r, RanOn::default(), "{garbage}");
        }
    }
}
