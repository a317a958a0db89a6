//! Switchyard's example workload: a small, real, CPU-only training program.
//!
//! Several ranks (processes, possibly on several hosts) train a linear regression model by
//! data-parallel SGD with momentum. Each step every rank computes the gradient on its own batch,
//! whose data is a function of `(seed, step, rank)` only; the ranks average their gradients with
//! an all-reduce over TCP that always sums in rank order; every rank applies the same update.
//! Rank 0 writes a checkpoint atomically every N steps, and on start resumes from the newest
//! complete one and hands that state to every rank. The final model after any number of
//! interruptions is therefore bit-identical to that of an uninterrupted run with the same seed
//! and world size.
//!
//! It reads what a distributed launcher provides: `RANK`, `WORLD_SIZE`, `MASTER_ADDR`,
//! `MASTER_PORT`, and Switchyard's `SWITCHYARD_CHECKPOINT_DIR`, `SWITCHYARD_ATTEMPT`,
//! `SWITCHYARD_JOB_ID`. See `docs/workload.md`.

pub mod checkpoint;
pub mod cli;
pub mod comm;
pub mod math;
pub mod serve;
pub mod train;
