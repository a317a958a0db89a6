//! The records the store keeps.

/// Where a job is. `Done`, `Cancelled`, `Rejected` and `Failed` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    Pending,
    Running,
    Done,
    Cancelled,
    Rejected,
    /// Its processes kept failing beyond its retry limit.
    Failed,
}

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Pending,
        JobState::Running,
        JobState::Done,
        JobState::Cancelled,
        JobState::Rejected,
        JobState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Cancelled => "cancelled",
            JobState::Rejected => "rejected",
            JobState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Cancelled | JobState::Rejected | JobState::Failed
        )
    }
}

/// The bearer of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: String,
    /// Sees and acts on every tenant's jobs.
    pub admin: bool,
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
    pub cancel_requested: bool,
    pub submitted_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    pub updated_ms: i64,
}

/// Something that happened to a job.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub seq: i64,
    pub job_id: String,
    pub at_ms: i64,
    /// `submitted`, `waiting`, `started`, `preempted`, `restarted`, `finished`, …
    pub kind: String,
    pub cluster: Option<String>,
    pub message: String,
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
    pub restarts: i64,
    /// Kept if already set.
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    pub updated_ms: i64,
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
    /// Only jobs with `seq` above this (pagination cursor).
    pub after_seq: Option<i64>,
    pub limit: i64,
}

impl Default for JobFilter {
    fn default() -> Self {
        JobFilter {
            tenant: None,
            states: Vec::new(),
            kind: None,
            after_seq: None,
            limit: 100,
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
