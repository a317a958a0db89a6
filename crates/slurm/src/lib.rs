//! Switchyard's Slurm backend (issue 7): runs placements on supercomputers that already run
//! Slurm, through Slurm itself (docs/slurm.md).
//!
//! Layers, lightest first: [`parse`] (pure parsers of Slurm's output), [`client`] (the
//! [`client::SlurmClient`] trait and its command-line implementation; [`rest`], the same over
//! slurmrestd), [`backend`] (the
//! server's `Backend`, a level-triggered reconciler on its own thread).

pub mod backend;
pub mod client;
pub mod logs;
pub mod parse;
pub mod rest;
pub mod script;

pub use backend::{ClusterConfig, LogPaths, Options, SlurmBackend, SlurmHandle};
pub use client::{CliClient, SlurmClient, SlurmError, Submission};
pub use rest::RestClient;
