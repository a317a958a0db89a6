//! Switchyard's node agent.
//!
//! An agent runs on every host of a cluster the control plane drives directly. It registers the
//! host's hardware ([`hardware`]), then keeps what runs there equal to what the control plane
//! wants ([`reconcile`], level-triggered: the desired state wins, strays are stopped), running
//! each assignment as a process group with the environment a distributed launcher provides
//! ([`supervisor`]), reporting exits and streaming output. The control plane is reached through
//! the [`control::ControlPlane`] trait. See `docs/agent.md`.

pub mod agent;
pub mod control;
pub mod exit_record;
pub mod gang;
pub mod hardware;
pub mod http;
pub mod protocol;
pub mod reconcile;
pub mod supervisor;

pub use agent::{Agent, AgentConfig, SyncReport};
pub use control::{ControlPlane, ControlPlaneError, MemoryControlPlane};
pub use protocol::{Assignment, LogLine, NodeInfo, ProcessState, ProcessStatus, RestartPolicy};
