//! Switchyard's discrete-event simulator: traces in, a virtual clock, failure injection,
//! checkpoint/restart cost, reports out. It drives the same `switchyard-sched` code as the
//! control plane.
//!
//! [`simulate`] replays jobs through a [`switchyard_sched::Scheduler`] on a virtual clock. Node
//! failures come from a seeded PCG generator, so the same inputs and seed give the same result;
//! [`report::html`] renders a run as a self-contained HTML page.

mod engine;
pub mod report;
pub mod trace;

pub use engine::{
    ClusterFigures, Figures, Progress, Series, SimError, SimOptions, SimResult,
    UNFINISHED_EXAMPLES, UnfinishedJob, simulate,
};
