//! The agent's view of the control plane, as a trait, so the loop is tested without a server and
//! the HTTP client is one implementation among others.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::protocol::{Assignment, AssignmentList, LogLine, NodeInfo, ProcessStatus, Registration};

/// Why a call to the control plane failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlPlaneError {
    /// No answer (network, server down, timeout). The agent keeps running what it runs and
    /// tries again.
    #[error("control plane unreachable: {0}")]
    Unreachable(String),
    /// The control plane does not know this node (its registration was lost or the node was
    /// declared lost and removed): the agent registers again.
    #[error("control plane does not know node {0}")]
    UnknownNode(String),
    /// The control plane's address is not one the agent can use.
    #[error("{0}")]
    BadAddress(String),
    /// The control plane refused the request.
    #[error("control plane refused the request ({status}): {message}")]
    Rejected {
        /// HTTP status or equivalent.
        status: u16,
        /// Its message.
        message: String,
    },
}

/// What an agent asks of and tells the control plane. Every call is idempotent: the agent
/// retries after any error.
pub trait ControlPlane {
    /// Registers this node (or registers it again after a restart) and gets its id.
    fn register(&self, node: &NodeInfo) -> Result<Registration, ControlPlaneError>;
    /// "Still alive." Missing heartbeats are how the control plane notices a lost node.
    fn heartbeat(&self, node_id: &str) -> Result<(), ControlPlaneError>;
    /// The complete desired set of assignments for this node (level-triggered: the full list,
    /// not changes).
    fn fetch_assignments(&self, node_id: &str) -> Result<AssignmentList, ControlPlaneError>;
    /// The state of every assignment this node knows about, exits included.
    fn report_status(
        &self,
        node_id: &str,
        statuses: &[ProcessStatus],
    ) -> Result<(), ControlPlaneError>;
    /// Output lines, in order per assignment and stream (`seq` lets the receiver drop repeats).
    fn push_logs(&self, node_id: &str, lines: &[LogLine]) -> Result<(), ControlPlaneError>;
    /// Calls from now on give up at `deadline` when it comes before their own timeout, but
    /// get at least [`MIN_REQUEST_TIME`] (`None`: their own timeout only): the agent's deadline
    /// for orphaned ranks must not wait for a request that hangs. (The in-memory control plane
    /// never hangs.)
    fn give_up_by(&self, deadline: Option<std::time::Instant>) {
        let _ = deadline;
    }
}

/// The least time a call gets when the agent's deadline for orphaned ranks is near or past (see
/// [`ControlPlane::give_up_by`]): ample for a control plane that is up and whose store answers
/// (a heartbeat is answered within about 2 s even while the store is slow; a registration waits
/// for the store). The cap lasts only until the orphaned ranks are gone or killed.
pub const MIN_REQUEST_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// What a [`MemoryControlPlane`] holds.
#[derive(Debug, Default)]
pub struct MemoryState {
    /// Registered nodes by id.
    pub nodes: BTreeMap<String, NodeInfo>,
    /// Heartbeats received per node.
    pub heartbeats: BTreeMap<String, u64>,
    /// Desired assignments per node.
    pub desired: BTreeMap<String, Vec<Assignment>>,
    /// Assignment ids each node is told to leave as they are ([`AssignmentList::keep`]).
    pub keep: BTreeMap<String, Vec<String>>,
    /// Latest reported status per node and assignment.
    pub statuses: BTreeMap<(String, String), ProcessStatus>,
    /// Every log line received, in arrival order.
    pub logs: Vec<LogLine>,
    /// While true, every call fails as unreachable.
    pub down: bool,
    /// A push holding a line that contains this text is refused (400), as a server refuses
    /// what it cannot store.
    pub refuse_lines_containing: Option<String>,
    /// While true, pushes of output fail as unreachable (heartbeats still get through).
    pub log_pushes_fail: bool,
    /// Lines per push received, in order.
    pub push_sizes: Vec<usize>,
    /// Registrations are refused with this status (a bad token or cluster, say).
    pub refuse_registration: Option<u16>,
}

/// An in-process control plane for tests and single-process tools: shared state behind a mutex.
/// Cloning shares the state.
#[derive(Debug, Clone, Default)]
pub struct MemoryControlPlane {
    state: Arc<Mutex<MemoryState>>,
}

impl MemoryControlPlane {
    /// An empty one.
    pub fn new() -> Self {
        Self::default()
    }

    /// The shared state, to inspect or change.
    pub fn state(&self) -> MutexGuard<'_, MemoryState> {
        // A panic while holding the lock poisons it; the data is still fine for tests.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the desired assignments of `node_id`.
    pub fn set_desired(&self, node_id: &str, assignments: Vec<Assignment>) {
        self.state()
            .desired
            .insert(node_id.to_string(), assignments);
    }

    fn live(&self) -> Result<MutexGuard<'_, MemoryState>, ControlPlaneError> {
        let s = self.state();
        if s.down {
            return Err(ControlPlaneError::Unreachable(
                "memory control plane is down".into(),
            ));
        }
        Ok(s)
    }

    fn known<'a>(s: &MutexGuard<'a, MemoryState>, node_id: &str) -> Result<(), ControlPlaneError> {
        if s.nodes.contains_key(node_id) {
            Ok(())
        } else {
            Err(ControlPlaneError::UnknownNode(node_id.to_string()))
        }
    }
}

impl ControlPlane for MemoryControlPlane {
    fn register(&self, node: &NodeInfo) -> Result<Registration, ControlPlaneError> {
        let mut s = self.live()?;
        if let Some(status) = s.refuse_registration {
            return Err(ControlPlaneError::Rejected {
                status,
                message: "registration refused".into(),
            });
        }
        // The same host registering again gets its old id back.
        let id = s
            .nodes
            .iter()
            .find(|(_, n)| n.hostname == node.hostname && n.cluster == node.cluster)
            .map(|(id, _)| id.clone())
            .unwrap_or_else(|| format!("node-{}", s.nodes.len() + 1));
        s.nodes.insert(id.clone(), node.clone());
        Ok(Registration {
            node_id: id,
            heartbeat_interval_ms: 200,
        })
    }

    fn heartbeat(&self, node_id: &str) -> Result<(), ControlPlaneError> {
        let mut s = self.live()?;
        Self::known(&s, node_id)?;
        *s.heartbeats.entry(node_id.to_string()).or_default() += 1;
        Ok(())
    }

    fn fetch_assignments(&self, node_id: &str) -> Result<AssignmentList, ControlPlaneError> {
        let s = self.live()?;
        Self::known(&s, node_id)?;
        Ok(AssignmentList {
            assignments: s.desired.get(node_id).cloned().unwrap_or_default(),
            keep: s.keep.get(node_id).cloned().unwrap_or_default(),
        })
    }

    fn report_status(
        &self,
        node_id: &str,
        statuses: &[ProcessStatus],
    ) -> Result<(), ControlPlaneError> {
        let mut s = self.live()?;
        Self::known(&s, node_id)?;
        for st in statuses {
            s.statuses
                .insert((node_id.to_string(), st.assignment_id.clone()), st.clone());
        }
        Ok(())
    }

    fn push_logs(&self, node_id: &str, lines: &[LogLine]) -> Result<(), ControlPlaneError> {
        let mut s = self.live()?;
        Self::known(&s, node_id)?;
        if s.log_pushes_fail {
            return Err(ControlPlaneError::Unreachable(
                "memory control plane drops output pushes".into(),
            ));
        }
        if let Some(bad) = &s.refuse_lines_containing
            && let Some(l) = lines.iter().find(|l| l.line.contains(bad.as_str()))
        {
            return Err(ControlPlaneError::Rejected {
                status: 400,
                message: format!("line {} of {} cannot be stored", l.seq, l.assignment_id),
            });
        }
        s.push_sizes.push(lines.len());
        s.logs.extend_from_slice(lines);
        Ok(())
    }
}
