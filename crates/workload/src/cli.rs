//! The command line of the example workload (`switchyard-workload`, also `switchyard
//! workload`): flags, their launcher-variable defaults, and the run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::comm::CommConfig;
use crate::math::Sgd;
use crate::serve;
use crate::train::{self, TrainConfig};

/// Data-parallel SGD on a synthetic regression problem, over TCP, with checkpoints.
///
/// Run one process per rank. The launcher variables (RANK, WORLD_SIZE, MASTER_ADDR,
/// MASTER_PORT, SWITCHYARD_*) set the defaults of the matching flags.
#[derive(Debug, Parser)]
#[command(
    name = "switchyard-workload",
    version,
    after_help = "Examples:\n  switchyard workload --steps 400 --checkpoint-dir /tmp/ckpt\n  RANK=1 WORLD_SIZE=2 MASTER_ADDR=10.0.0.1 MASTER_PORT=29500 switchyard workload --steps 400"
)]
pub struct Args {
    /// This process's rank, 0..world-size.
    #[arg(long, env = "RANK", default_value_t = 0)]
    rank: usize,
    /// Number of ranks.
    #[arg(long, env = "WORLD_SIZE", default_value_t = 1)]
    world_size: usize,
    /// Host of rank 0 (it listens there).
    #[arg(long, env = "MASTER_ADDR", default_value = "127.0.0.1")]
    master_addr: String,
    /// Port rank 0 listens on.
    #[arg(long, env = "MASTER_PORT", default_value_t = 29500)]
    master_port: u16,
    /// Directory for checkpoints (rank 0 writes and reads them). Without it, no checkpoints.
    #[arg(long, env = "SWITCHYARD_CHECKPOINT_DIR")]
    checkpoint_dir: Option<PathBuf>,
    /// Attempt number; ranks of different attempts refuse to train together.
    #[arg(long, env = "SWITCHYARD_ATTEMPT", default_value_t = 1)]
    attempt: u64,
    /// Job id; ranks of different jobs refuse to train together.
    #[arg(long, env = "SWITCHYARD_JOB_ID", default_value = "local")]
    job_id: String,
    /// Total training steps.
    #[arg(long, default_value_t = 200)]
    steps: u64,
    /// Checkpoint every this many steps (and after the last).
    #[arg(long, default_value_t = 10)]
    checkpoint_every: u64,
    /// Checkpoints kept on disk.
    #[arg(long, default_value_t = 3)]
    keep_checkpoints: usize,
    /// Milliseconds to sleep after each step (to make a run long enough to interrupt), at most
    /// 3600000 (an hour).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    step_sleep_ms: u64,
    /// Seed of the data and the true model.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Number of features.
    #[arg(long, default_value_t = 16)]
    dim: usize,
    /// Examples per rank per step.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Label noise (standard deviation).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.1)]
    noise: f64,
    /// Learning rate.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.02)]
    lr: f64,
    /// Momentum.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.9)]
    momentum: f64,
    /// Print a progress line every this many steps.
    #[arg(long, default_value_t = 10)]
    log_every: u64,
    /// Where rank 0 writes the final model [default: CHECKPOINT_DIR/final-model.txt].
    #[arg(long)]
    output: Option<PathBuf>,
    /// Seconds to wait for every rank to join (1 to 86400).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    join_timeout_secs: u64,
    /// Seconds to wait for a peer during training before giving up on the gang (1 to 86400).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    peer_timeout_secs: u64,
    /// Serve predictions on ADDR (host:port) instead of training: from --model, or else from the
    /// newest checkpoint in the checkpoint directory.
    #[arg(long, value_name = "ADDR")]
    serve: Option<String>,
    /// With --serve: a final model file to serve.
    #[arg(long, value_name = "FILE", requires = "serve")]
    model: Option<PathBuf>,
}

/// Most ranks: rank 0 holds one connection and buffer per peer.
pub const MAX_WORLD_SIZE: usize = 65_536;
/// Most features: the model and each gradient are this many numbers.
pub const MAX_DIM: usize = 1 << 24;
/// Most examples per rank per step.
pub const MAX_BATCH: usize = 1 << 20;
/// Most numbers in one rank's batch of examples (dim × batch): 2 GiB of f64.
pub const MAX_BATCH_VALUES: usize = 1 << 28;
/// Most checkpoints kept.
pub const MAX_KEPT_CHECKPOINTS: usize = 10_000;

fn config(a: Args) -> Result<TrainConfig, String> {
    if a.world_size == 0 {
        return Err("--world-size must be at least 1".into());
    }
    if a.rank >= a.world_size {
        return Err(format!(
            "--rank {} is out of range for --world-size {}",
            a.rank, a.world_size
        ));
    }
    if a.steps == 0
        || a.dim == 0
        || a.batch == 0
        || a.checkpoint_every == 0
        || a.keep_checkpoints == 0
    {
        return Err(
            "--steps, --dim, --batch, --checkpoint-every and --keep-checkpoints must be positive"
                .into(),
        );
    }
    // Bounds that keep every buffer the flags size (one per peer, the model, a batch of
    // examples) far below any machine's memory, so a typo is an error rather than an abort.
    for (flag, value, max) in [
        ("--world-size", a.world_size, MAX_WORLD_SIZE),
        ("--dim", a.dim, MAX_DIM),
        ("--batch", a.batch, MAX_BATCH),
        (
            "--keep-checkpoints",
            a.keep_checkpoints,
            MAX_KEPT_CHECKPOINTS,
        ),
    ] {
        if value > max {
            return Err(format!("{flag} {value} is larger than the supported {max}"));
        }
    }
    if a.dim.saturating_mul(a.batch) > MAX_BATCH_VALUES {
        return Err(format!(
            "--dim {} × --batch {} is more than {MAX_BATCH_VALUES} values per step",
            a.dim, a.batch
        ));
    }
    if !a.noise.is_finite() || a.noise < 0.0 {
        return Err("--noise must be a finite number at least 0".into());
    }
    if !(a.lr.is_finite()
        && a.lr > 0.0
        && a.momentum.is_finite()
        && (0.0..1.0).contains(&a.momentum))
    {
        return Err("--lr must be positive and --momentum in [0, 1)".into());
    }
    let step_sleep = Duration::from_millis(a.step_sleep_ms);
    let output = a
        .output
        .or_else(|| a.checkpoint_dir.as_ref().map(|d| d.join("final-model.txt")));
    Ok(TrainConfig {
        comm: CommConfig {
            rank: a.rank,
            world_size: a.world_size,
            master: format!("{}:{}", a.master_addr, a.master_port),
            job_id: a.job_id,
            attempt: a.attempt,
            seed: a.seed,
            // What makes the model and its steps: the same on every rank, or they diverge.
            settings: format!(
                "steps={} dim={} batch={} noise={} lr={} momentum={}",
                a.steps, a.dim, a.batch, a.noise, a.lr, a.momentum
            ),
            join_timeout: Duration::from_secs(a.join_timeout_secs),
            peer_timeout: Duration::from_secs(a.peer_timeout_secs).max(step_sleep * 10),
        },
        checkpoint_dir: a.checkpoint_dir,
        steps: a.steps,
        checkpoint_every: a.checkpoint_every,
        keep_checkpoints: a.keep_checkpoints,
        step_sleep,
        log_every: a.log_every,
        dim: a.dim,
        batch: a.batch,
        noise: a.noise,
        sgd: Sgd {
            lr: a.lr,
            momentum: a.momentum,
        },
        output,
    })
}

/// Parses `args` (the program name first) and runs: what `switchyard-workload` and
/// `switchyard workload` do.
pub fn main_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if let Some(addr) = &args.serve {
        if std::net::ToSocketAddrs::to_socket_addrs(addr.as_str()).is_err() {
            eprintln!(
                "error: --serve {addr:?} is not an address to listen on: give HOST:PORT, e.g. \
                 127.0.0.1:8080"
            );
            return ExitCode::from(2);
        }
        let Some(source) = serve::source(args.model.as_deref(), args.checkpoint_dir.as_deref())
        else {
            eprintln!("error: --serve needs --model or a checkpoint directory");
            return ExitCode::from(2);
        };
        return match serve::serve(addr, &source, &mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: serving on {addr}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let cfg = match config(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match train::run(&cfg, &mut std::io::stdout()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "[rank {} attempt {}] error: {e}",
                cfg.comm.rank, cfg.comm.attempt
            );
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(extra: &[&str]) -> Result<TrainConfig, String> {
        let mut argv = vec!["switchyard-workload"];
        argv.extend_from_slice(extra);
        config(Args::try_parse_from(argv).map_err(|e| e.to_string())?)
    }

    #[test]
    fn flags_that_would_exhaust_memory_are_errors() {
        assert!(parsed(&[]).is_ok());
        for (flags, needle) in [
            (&["--world-size", "100000000000"][..], "--world-size"),
            (&["--dim", "1000000000000"], "--dim"),
            (&["--batch", "99999999999"], "--batch"),
            (
                &["--dim", "1000000", "--batch", "1000000"],
                "values per step",
            ),
            (
                &["--keep-checkpoints", "18446744073709551615"],
                "--keep-checkpoints",
            ),
            (&["--noise", "NaN"], "--noise"),
            // A zero timeout would only fail later, when the socket is set up.
            (&["--peer-timeout-secs", "0"], "--peer-timeout-secs"),
            (&["--join-timeout-secs", "0"], "--join-timeout-secs"),
            // A sleep past an hour a step is a typo (u64::MAX ms never ends).
            (
                &["--step-sleep-ms", "18446744073709551615"],
                "--step-sleep-ms",
            ),
            (&["--steps", "0"], "--steps"),
            // Negative numbers reach the range check, not clap's "unexpected argument".
            (&["--lr", "-1"], "--lr must be positive"),
            (&["--noise", "-1"], "--noise must be"),
        ] {
            let err = parsed(flags).expect_err("refused");
            assert!(err.contains(needle), "{flags:?}: {err}");
        }
    }

    #[test]
    fn a_serve_address_that_is_none_is_an_input_error() {
        let code = main_from(["switchyard-workload", "--serve", "nonsense", "--model", "m"]);
        assert_eq!(code, ExitCode::from(2));
    }
}
