//! The agent's wire types: what it tells the control plane and what it is told.
//!
//! These are the JSON bodies of the agent protocol (see `docs/agent.md`). Unknown fields are
//! errors, so a version skew shows up as a clear message instead of silently dropped data.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Protocol version the agent speaks; sent on registration.
pub const PROTOCOL_VERSION: u32 = 1;

/// The header every request of an agent carries, where the machine has one: this boot of the
/// machine (`/proc/sys/kernel/random/boot_id`). Two machines under one host name (clones of one
/// image) differ here, so the control plane neither registers the second while the first is
/// live nor takes the calls of one that was replaced for the node's current machine's. A header
/// rather than a field, so that agents and servers of either age still understand each other.
pub const BOOT_ID_HEADER: &str = "switchyard-boot-id";

/// Whether `address` can be a node's address (`MASTER_ADDR`): a host name, an IPv4 address or
/// an IPv6 address (with a `%zone`), at most 253 characters — not a URL, no port, no spaces.
pub fn is_host_address(address: &str) -> bool {
    !address.is_empty()
        && address.len() <= 253
        && address
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:%".contains(&b))
        && !address.starts_with(['-', '.'])
}

/// One accelerator on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceleratorInfo {
    /// Index as the driver numbers it (the value for `CUDA_VISIBLE_DEVICES`).
    pub index: u32,
    /// Product name, e.g. "NVIDIA H100 80GB HBM3", or "declared" for `--accelerators N`.
    pub name: String,
    /// Memory in MiB, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    /// Stable device id, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
}

/// What a node is, sent when the agent registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeInfo {
    /// Host name.
    pub hostname: String,
    /// Cluster the node joins, if the operator named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Logical CPUs.
    pub cpus: u32,
    /// Physical memory in bytes.
    pub memory_bytes: u64,
    /// Accelerators, discovered or declared.
    pub accelerators: Vec<AcceleratorInfo>,
    /// Address other nodes reach this one at (used as `MASTER_ADDR` when it hosts rank 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// At most how long after sending the last heartbeat the control plane answered the agent
    /// has asked its training ranks to stop and is ready to kill them after their grace
    /// ([`crate::AgentConfig::orphan_stop_after`]): until then, and their stop grace, a node
    /// cut off may still run them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orphan_stop_ms: Option<u64>,
    /// Agent protocol version.
    pub protocol_version: u32,
    /// Agent build version.
    pub agent_version: String,
}

/// The control plane's answer to a registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// The node's id from now on.
    pub node_id: String,
    /// How often to heartbeat, in milliseconds.
    pub heartbeat_interval_ms: u64,
}

/// When the agent restarts a process of its own accord. Training ranks use `Never`: a failed
/// rank fails the gang and the control plane decides (a new attempt has new assignment ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    /// Run once.
    #[default]
    Never,
    /// Restart after a non-zero exit or a signal.
    OnFailure,
    /// Restart whenever it exits (inference replicas).
    Always,
}

/// One process the control plane wants on this node: a rank of a training run or a replica of a
/// service. Its `id` is unique per incarnation: a new attempt is a new id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assignment {
    /// Unique id of this incarnation, e.g. `job-17/attempt-2/rank-3`.
    pub id: String,
    /// The job it belongs to (`SWITCHYARD_JOB_ID`).
    pub job_id: String,
    /// Attempt number, from 1 (`SWITCHYARD_ATTEMPT`).
    pub attempt: u32,
    /// Global rank (`RANK`).
    pub rank: u32,
    /// Ranks in the gang (`WORLD_SIZE`).
    pub world_size: u32,
    /// Rank among this job's processes on this node (`LOCAL_RANK`).
    pub local_rank: u32,
    /// Host of rank 0 (`MASTER_ADDR`).
    pub master_addr: String,
    /// Port of rank 0 (`MASTER_PORT`).
    pub master_port: u16,
    /// Program and arguments.
    pub command: Vec<String>,
    /// Extra environment; the launcher variables above win over these.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Accelerator indices this process may use (`CUDA_VISIBLE_DEVICES`).
    #[serde(default)]
    pub accelerators: Vec<u32>,
    /// Checkpoint directory (`SWITCHYARD_CHECKPOINT_DIR`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_dir: Option<String>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Whether the agent restarts it itself.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Milliseconds between SIGTERM and SIGKILL when it is stopped.
    #[serde(default = "default_grace_ms")]
    pub stop_grace_ms: u64,
}

fn default_grace_ms() -> u64 {
    10_000
}

/// The longest period the agent takes from the server (a heartbeat interval, a stop grace): a
/// day, the server's own bound; a larger figure (a server of another build, or not a server)
/// would leave the agent waiting for ever.
pub const MAX_SERVER_PERIOD: Duration = Duration::from_secs(86_400);

impl Assignment {
    /// [`Assignment::stop_grace_ms`], at most [`MAX_SERVER_PERIOD`].
    pub fn stop_grace(&self) -> Duration {
        Duration::from_millis(self.stop_grace_ms).min(MAX_SERVER_PERIOD)
    }
}

impl Registration {
    /// [`Registration::heartbeat_interval_ms`], at most [`MAX_SERVER_PERIOD`].
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms).min(MAX_SERVER_PERIOD)
    }
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExitInfo {
    /// Exit code, if it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// Signal number, if a signal ended it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Whether the agent stopped it (cancel, preemption, not desired any more).
    pub stopped_by_agent: bool,
}

impl ExitInfo {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Where a process is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProcessState {
    /// Running with this process id (also its process group id).
    Running {
        /// Process id.
        pid: u32,
    },
    /// Sent SIGTERM; SIGKILL follows after the grace period.
    Stopping {
        /// Process id.
        pid: u32,
    },
    /// Gone.
    Exited(ExitInfo),
    /// Could not be started at all (missing program, bad directory).
    FailedToStart {
        /// Why.
        error: String,
    },
}

/// The state of one assignment on this node, reported to the control plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessStatus {
    /// The assignment.
    pub assignment_id: String,
    /// Its state.
    pub state: ProcessState,
    /// Times the agent restarted it under its restart policy.
    pub restarts: u32,
    /// How the copy before the latest restart ended (absent before any restart, or when it
    /// never started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<ExitInfo>,
}

/// Which output stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line a process printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogLine {
    /// The assignment that printed it.
    pub assignment_id: String,
    /// Which stream.
    pub stream: Stream,
    /// Position in that stream, from 0 (lets the server drop duplicates after a retry).
    pub seq: u64,
    /// When the agent read it, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The text, without the newline (invalid UTF-8 replaced; very long lines cut).
    pub line: String,
}

/// Body of `GET /v1/agent/nodes/{node}/assignments`: the complete desired set.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignmentList {
    /// Every assignment the node should run now.
    pub assignments: Vec<Assignment>,
    /// Assignment ids to leave as they are, neither stopped nor started: ranks a new
    /// scheduling leader has not placed yet and may let run on (it checks what the node
    /// reports before it does). Sent only when there are some: an agent of a release before
    /// this field refuses the answer and keeps what runs until the next one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keep: Vec<String>,
}

/// Body of `PUT /v1/agent/nodes/{node}/status`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusReport {
    /// Every assignment the node knows about.
    pub processes: Vec<ProcessStatus>,
}

/// Body of `POST /v1/agent/nodes/{node}/logs`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogBatch {
    /// Lines in the order read.
    pub lines: Vec<LogLine>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment() -> Assignment {
        Assignment {
            id: "job-1/attempt-1/rank-0".into(),
            job_id: "job-1".into(),
            attempt: 1,
            rank: 0,
            world_size: 4,
            local_rank: 0,
            master_addr: "10.0.0.1".into(),
            master_port: 29500,
            command: vec!["switchyard-workload".into(), "--steps".into(), "100".into()],
            env: BTreeMap::new(),
            accelerators: vec![0, 1],
            checkpoint_dir: Some("/ckpt/job-1".into()),
            working_dir: None,
            restart: RestartPolicy::Never,
            stop_grace_ms: 5000,
        }
    }

    /// A period past a day from the server (no server of this build sends one) is a day.
    #[test]
    fn periods_from_the_server_are_at_most_a_day() {
        let mut a = assignment();
        assert_eq!(a.stop_grace(), Duration::from_secs(5));
        a.stop_grace_ms = u64::MAX;
        assert_eq!(a.stop_grace(), MAX_SERVER_PERIOD);
        let reg = Registration {
            node_id: "n".into(),
            heartbeat_interval_ms: u64::MAX,
        };
        assert_eq!(reg.heartbeat_interval(), MAX_SERVER_PERIOD);
    }

    #[test]
    fn assignment_round_trips_and_defaults_apply() {
        let a = assignment();
        let text = serde_json::to_string(&a).expect("serialize");
        let back: Assignment = serde_json::from_str(&text).expect("deserialize");
        assert_eq!(a, back);
        let minimal = r#"{"id":"x","job_id":"j","attempt":1,"rank":0,"world_size":1,
            "local_rank":0,"master_addr":"127.0.0.1","master_port":1,"command":["true"]}"#;
        let m: Assignment = serde_json::from_str(minimal).expect("minimal assignment");
        assert_eq!(m.restart, RestartPolicy::Never);
        assert_eq!(m.stop_grace_ms, 10_000);
    }

    #[test]
    fn unknown_fields_are_errors() {
        let mut v = serde_json::to_value(assignment()).expect("to value");
        v["surprise"] = serde_json::json!(1);
        let err = serde_json::from_value::<Assignment>(v).expect_err("unknown field");
        assert!(err.to_string().contains("surprise"), "{err}");
    }

    #[test]
    fn status_round_trips() {
        let s = ProcessStatus {
            assignment_id: "a".into(),
            state: ProcessState::Exited(ExitInfo {
                code: Some(1),
                signal: None,
                stopped_by_agent: false,
            }),
            restarts: 0,
            last_exit: None,
        };
        let v = serde_json::to_value(&s).expect("to value");
        assert_eq!(v["state"]["phase"], "exited");
        assert_eq!(v["state"]["code"], 1);
        let back: ProcessStatus = serde_json::from_value(v).expect("from value");
        assert_eq!(back, s);
    }
}
