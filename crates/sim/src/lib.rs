//! Switchyard's discrete-event simulator: traces in, a virtual clock, failure injection,
//! checkpoint/restart cost, reports out. It drives the same `switchyard-sched` code as the
//! control plane.

pub mod trace;
