//! The training loop: resume, all-reduce each step, checkpoint every N steps, write the model.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::checkpoint::{self, Checkpoint, CheckpointError};
use crate::comm::{Comm, CommConfig, CommError, StartState};
use crate::math::{Problem, Sgd, fingerprint};

/// Everything a rank needs to train (already validated).
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// Ranks, seeds, addresses.
    pub comm: CommConfig,
    /// Where rank 0 keeps checkpoints; `None` trains without them.
    pub checkpoint_dir: Option<PathBuf>,
    /// Total steps.
    pub steps: u64,
    /// Checkpoint after every this many steps (and after the last one).
    pub checkpoint_every: u64,
    /// Checkpoints kept on disk.
    pub keep_checkpoints: usize,
    /// Sleep after each step (to make a short run last long enough to interrupt).
    pub step_sleep: Duration,
    /// Print a progress line every this many steps.
    pub log_every: u64,
    /// Number of weights.
    pub dim: usize,
    /// Examples per rank per step.
    pub batch: usize,
    /// Label noise.
    pub noise: f64,
    /// Optimizer.
    pub sgd: Sgd,
    /// Where rank 0 writes the final model.
    pub output: Option<PathBuf>,
}

/// Why training failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Talking to the other ranks failed.
    #[error(transparent)]
    Comm(#[from] CommError),
    /// A checkpoint could not be read or written.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The checkpoint directory holds another run's state.
    #[error("checkpoint {path} is of another run ({what}); use a fresh checkpoint directory")]
    Mismatch {
        /// The checkpoint.
        path: PathBuf,
        /// What differs.
        what: String,
    },
    /// The loss or a weight stopped being a finite number: the run diverged, and nothing it
    /// computes from here on means anything.
    #[error(
        "training diverged at step {step}: the {what} is {value}, not a finite number (lower \
         --lr); no checkpoint or model was written from it"
    )]
    Diverged {
        /// The step whose update diverged.
        step: u64,
        /// "loss" or "weight N".
        what: String,
        /// The value.
        value: f64,
    },
    /// Writing progress failed.
    #[error("writing progress: {0}")]
    Output(std::io::Error),
}

/// What a finished run produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The step the run resumed from (0 for a fresh start).
    pub resumed_from: u64,
    /// Final weights.
    pub weights: Vec<f64>,
    /// Fingerprint of the final weights and momentum.
    pub hash: u64,
    /// Mean loss of the last step, if any step ran in this attempt.
    pub last_loss: Option<f64>,
}

/// The text of the final model file: one weight per line as exact bits and as a decimal, then
/// the fingerprint.
pub fn model_file(weights: &[f64], hash: u64) -> String {
    let mut s = String::from("# switchyard-workload final model v1\n");
    for (i, w) in weights.iter().enumerate() {
        s.push_str(&format!("w{i} {:016x} {w:e}\n", w.to_bits()));
    }
    s.push_str(&format!("hash {hash:016x}\n"));
    s
}

/// Runs this rank to completion, printing progress lines to `out`.
pub fn run(cfg: &TrainConfig, out: &mut dyn Write) -> Result<Outcome, TrainError> {
    let c = &cfg.comm;
    let tag = format!("[rank {} attempt {}]", c.rank, c.attempt);
    let say = |out: &mut dyn Write, line: String| -> Result<(), TrainError> {
        writeln!(out, "{tag} {line}")
            .and_then(|()| out.flush())
            .map_err(TrainError::Output)
    };
    let problem = Problem::new(c.seed, cfg.dim, cfg.batch, cfg.noise);

    let start = if c.rank == 0 {
        // Where rank 0 will write, checked before anyone trains.
        let model_dir = cfg.output.as_deref().map(|p| {
            p.parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."))
        });
        for dir in cfg.checkpoint_dir.as_deref().into_iter().chain(model_dir) {
            checkpoint::check_writable(dir)?;
        }
        if let Some(path) = cfg.output.as_deref().filter(|p| p.is_dir()) {
            return Err(CheckpointError::Io {
                action: "write the final model to",
                path: path.to_path_buf(),
                source: std::io::Error::other("it is a directory: give a file name"),
            }
            .into());
        }
        Some(initial_state(cfg, out, &say)?)
    } else {
        None
    };
    say(
        out,
        format!(
            "joining {} rank(s) via {} (job {})",
            c.world_size, c.master, c.job_id
        ),
    )?;
    let (mut comm, start) = Comm::establish(c, start)?;
    let resumed_from = start.step;
    say(
        out,
        format!(
            "training steps {}..{} of {}",
            start.step, cfg.steps, cfg.steps
        ),
    )?;

    let mut weights = start.weights;
    let mut velocity = start.velocity;
    let mut last_loss = None;
    for step in start.step..cfg.steps {
        let local = problem.local_gradient(&weights, c.seed, step, c.rank as u64);
        let mean = comm.allreduce_mean(step, &local)?;
        cfg.sgd.apply(&mut weights, &mut velocity, &mean[..cfg.dim]);
        let done = step + 1;
        // Every rank sees the same mean and weights, so every rank stops here together.
        // (Named only when found: no string per weight per step.)
        let loss = mean[cfg.dim];
        let bad = if loss.is_finite() {
            weights
                .iter()
                .position(|w| !w.is_finite())
                .map(|i| (format!("weight {i}"), weights[i]))
        } else {
            Some(("loss".to_owned(), loss))
        };
        if let Some((what, value)) = bad {
            return Err(TrainError::Diverged {
                step: done,
                what,
                value,
            });
        }
        last_loss = Some(loss);
        if done % cfg.log_every.max(1) == 0 || done == cfg.steps {
            say(
                out,
                format!("step {done}/{} loss {:.6e}", cfg.steps, mean[cfg.dim]),
            )?;
        }
        if c.rank == 0
            && (done % cfg.checkpoint_every.max(1) == 0 || done == cfg.steps)
            && let Some(dir) = &cfg.checkpoint_dir
        {
            let ckpt = Checkpoint {
                step: done,
                seed: c.seed,
                dim: cfg.dim,
                world_size: c.world_size,
                weights: weights.clone(),
                velocity: velocity.clone(),
            };
            let path = checkpoint::save(dir, &ckpt, cfg.keep_checkpoints)?;
            say(out, format!("checkpoint step {done} -> {}", path.display()))?;
        }
        if !cfg.step_sleep.is_zero() {
            std::thread::sleep(cfg.step_sleep);
        }
    }

    let hash = fingerprint(&[weights.as_slice(), velocity.as_slice()].concat());
    if c.rank == 0
        && let Some(path) = &cfg.output
    {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| CheckpointError::Io {
                action: "create directory",
                path: parent.to_path_buf(),
                source,
            })?;
        }
        checkpoint::write_atomic(path, model_file(&weights, hash).as_bytes())?;
        say(out, format!("final model written to {}", path.display()))?;
    }
    say(out, format!("done: model hash {hash:016x}"))?;
    Ok(Outcome {
        resumed_from,
        weights,
        hash,
        last_loss,
    })
}

type Say<'a> = dyn Fn(&mut dyn Write, String) -> Result<(), TrainError> + 'a;

fn initial_state(
    cfg: &TrainConfig,
    out: &mut dyn Write,
    say: &Say<'_>,
) -> Result<StartState, TrainError> {
    let fresh = StartState {
        step: 0,
        weights: vec![0.0; cfg.dim],
        velocity: vec![0.0; cfg.dim],
    };
    let Some(dir) = &cfg.checkpoint_dir else {
        say(
            out,
            "no checkpoint directory: starting fresh, not checkpointing".into(),
        )?;
        return Ok(fresh);
    };
    let found = checkpoint::latest(dir)?;
    for (path, why) in &found.skipped {
        say(
            out,
            format!("skipping checkpoint {}: {why}", path.display()),
        )?;
    }
    let Some((ckpt, path)) = found.checkpoint else {
        say(
            out,
            format!("no checkpoint in {}: starting fresh", dir.display()),
        )?;
        return Ok(fresh);
    };
    if ckpt.seed != cfg.comm.seed || ckpt.dim != cfg.dim {
        return Err(TrainError::Mismatch {
            path,
            what: format!(
                "seed {} dim {}, this run has seed {} dim {}",
                ckpt.seed, ckpt.dim, cfg.comm.seed, cfg.dim
            ),
        });
    }
    if ckpt.step > cfg.steps {
        return Err(TrainError::Mismatch {
            path,
            what: format!(
                "it is at step {}, past this run's --steps {}",
                ckpt.step, cfg.steps
            ),
        });
    }
    if ckpt.world_size != cfg.comm.world_size {
        say(
            out,
            format!(
                "checkpoint was trained with {} ranks, resuming with {}: the result will differ from an uninterrupted run",
                ckpt.world_size, cfg.comm.world_size
            ),
        )?;
    }
    say(
        out,
        format!(
            "resuming from checkpoint step {} ({})",
            ckpt.step,
            path.display()
        ),
    )?;
    Ok(StartState {
        step: ckpt.step,
        weights: ckpt.weights,
        velocity: ckpt.velocity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: Option<PathBuf>, steps: u64) -> TrainConfig {
        TrainConfig {
            comm: CommConfig {
                rank: 0,
                world_size: 1,
                master: "127.0.0.1:1".into(),
                job_id: "t".into(),
                attempt: 1,
                seed: 11,
                settings: String::new(),
                join_timeout: Duration::from_secs(5),
                peer_timeout: Duration::from_secs(5),
            },
            checkpoint_dir: dir,
            steps,
            checkpoint_every: 7,
            keep_checkpoints: 2,
            step_sleep: Duration::ZERO,
            log_every: 10,
            dim: 5,
            batch: 8,
            noise: 0.1,
            sgd: Sgd {
                lr: 0.05,
                momentum: 0.9,
            },
            output: None,
        }
    }

    #[test]
    fn resuming_in_pieces_matches_one_uninterrupted_run() {
        let whole = run(&cfg(None, 50), &mut Vec::new()).expect("whole run");
        let dir = std::env::temp_dir().join(format!("sywl-train-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // Run to 20 (checkpoint at 14 and 20), then to 33 (checkpoints 21, 28, 33), then to 50.
        for (steps, attempt) in [(20, 1), (33, 2), (50, 3)] {
            let mut c = cfg(Some(dir.clone()), steps);
            c.comm.attempt = attempt;
            run(&c, &mut Vec::new()).expect("piece");
        }
        // A torn newer checkpoint must be skipped, not trusted.
        std::fs::write(dir.join(checkpoint::file_name(60)), "garbage").expect("write");
        let mut last = cfg(Some(dir.clone()), 50);
        last.comm.attempt = 4;
        let resumed = run(&last, &mut Vec::new()).expect("resumed");
        assert_eq!(resumed.resumed_from, 50);
        assert_eq!(resumed.hash, whole.hash);
        let bits = |w: &[f64]| w.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&resumed.weights), bits(&whole.weights));
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    /// A checkpoint past the run's last step is of a longer run: resuming from it would
    /// write that run's model as this one's.
    #[test]
    fn a_checkpoint_past_the_last_step_is_refused() {
        let dir = std::env::temp_dir().join(format!("sywl-past-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        run(&cfg(Some(dir.clone()), 14), &mut Vec::new()).expect("first");
        let e = run(&cfg(Some(dir.clone()), 10), &mut Vec::new()).expect_err("past its end");
        assert!(
            e.to_string()
                .contains("it is at step 14, past this run's --steps 10"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    /// A model path that is a directory is found out before any training, too.
    #[test]
    fn an_output_that_is_a_directory_fails_before_training() {
        let dir = std::env::temp_dir().join(format!("sywl-outdir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory");
        let mut c = cfg(None, 14);
        c.output = Some(dir.clone());
        let mut out = Vec::new();
        let e = run(&c, &mut out).expect_err("a directory");
        assert!(e.to_string().contains("it is a directory"), "{e}");
        assert!(!String::from_utf8_lossy(&out).contains("training steps"));
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    /// A checkpoint directory that cannot be written is found out before any training.
    #[test]
    fn an_unwritable_checkpoint_directory_fails_before_training() {
        let file = std::env::temp_dir().join(format!("sywl-notadir-{}", std::process::id()));
        std::fs::write(&file, "a file").expect("write");
        let mut out = Vec::new();
        let e = run(&cfg(Some(file.join("ckpt")), 14), &mut out).expect_err("not a directory");
        assert!(e.to_string().contains("create directory"), "{e}");
        let said = String::from_utf8_lossy(&out);
        assert!(!said.contains("training steps"), "{said}");
        std::fs::remove_file(&file).expect("clean up");
    }

    #[test]
    fn a_checkpoint_of_another_seed_is_refused() {
        let dir = std::env::temp_dir().join(format!("sywl-seed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        run(&cfg(Some(dir.clone()), 7), &mut Vec::new()).expect("first");
        let mut other = cfg(Some(dir.clone()), 14);
        other.comm.seed = 12;
        assert!(matches!(
            run(&other, &mut Vec::new()),
            Err(TrainError::Mismatch { .. })
        ));
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
