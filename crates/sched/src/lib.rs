//! Switchyard's scheduler: a pure function of state, event and time.
//!
//! [`Scheduler`] holds the fleet's free capacity (a [`ClusterIndex`] per cluster, at node
//! granularity with its topology units), the jobs and their queues. A driver — the simulator,
//! later the control plane — feeds it [`Event`]s with [`Scheduler::handle`] and asks for a
//! scheduling pass with [`Scheduler::schedule`]; both append [`Decision`]s, each with a reason a
//! person can read. The scheduler does no I/O, reads no clock and draws no random numbers: the
//! same events at the same times give the same decisions.
//!
//! Policies ([`Policy`]): `fifo` with EASY backfill, `priority` with preemption of as few whole
//! lower-priority jobs as possible, `fair` (weighted fair share across teams with quotas and
//! borrowing of idle quota) and `switchyard`, which combines fair share with
//! shortest-predicted-remaining-time order, heterogeneity-aware cluster choice from predicted
//! throughput, topology-aware placement and failure-aware cost estimates.

mod index;
mod rates;
mod scheduler;

pub use index::{ClusterIndex, NodeShare, Spread};
pub use rates::{RateModel, young_daly_interval_s};
pub use scheduler::{
    Action, ClusterStats, Config, Decision, Event, JobIdx, JobState, JobView, Policy, Scheduler,
};
