//! Runs the workload as real processes (4 ranks on loopback), kills the gang mid-run, restarts it
//! with the next attempt number, and checks the final model is bit-identical to an uninterrupted
//! run. Also checks that one rank's death ends the whole gang instead of hanging it.

use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const WORLD: usize = 4;
const STEPS: u64 = 60;
/// Generous: the CI machine has two cores shared with everything else.
const TIMEOUT: Duration = Duration::from_secs(180);

/// Every rank of one attempt; killed and reaped when dropped, whatever the test did.
struct Gang {
    children: Vec<Child>,
    logs: Vec<PathBuf>,
}

impl Drop for Gang {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Gang {
    /// Starts every rank of `attempt` on a free loopback port. The port is free when picked
    /// and taken by rank 0 a moment later; should another process take it in between, rank 0
    /// exits at once saying so, and the gang starts again on another port.
    fn start(dir: &Path, attempt: u64, step_sleep_ms: u64) -> Gang {
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("an ephemeral port");
            let mut gang = Gang {
                children: Vec::new(),
                logs: Vec::new(),
            };
            gang.spawn(dir, attempt, step_sleep_ms, port, 0);
            if gang.rank_zero_lost_its_port() {
                continue;
            }
            for rank in 1..WORLD {
                gang.spawn(dir, attempt, step_sleep_ms, port, rank);
            }
            return gang;
        }
        panic!("rank 0 lost its port to another process five times in a row");
    }

    /// Whether rank 0 (just spawned) exited because another process took its port.
    fn rank_zero_lost_its_port(&mut self) -> bool {
        let deadline = Instant::now() + TIMEOUT;
        let log = self.logs[0].clone();
        // It says it is joining just before it binds the port; a moment later it has it.
        while !fs::read_to_string(&log).is_ok_and(|l| l.contains("joining")) {
            if Instant::now() >= deadline || self.children[0].try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(200));
        self.children[0].try_wait().ok().flatten().is_some()
            && fs::read_to_string(&log).is_ok_and(|l| l.contains("Address already in use"))
    }

    fn spawn(&mut self, dir: &Path, attempt: u64, step_sleep_ms: u64, port: u16, rank: usize) {
        let log = dir.join(format!("attempt{attempt}-rank{rank}.log"));
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file handle");
        let child = Command::new(env!("CARGO_BIN_EXE_switchyard-workload"))
            .env("RANK", rank.to_string())
            .env("WORLD_SIZE", WORLD.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .env("SWITCHYARD_CHECKPOINT_DIR", dir.join("ckpt"))
            .env("SWITCHYARD_ATTEMPT", attempt.to_string())
            // One job per scratch directory: two gangs of this file's tests running at once,
            // should they get one port, refuse each other's ranks.
            .env(
                "SWITCHYARD_JOB_ID",
                format!(
                    "job-{}",
                    dir.file_name().unwrap_or_default().to_string_lossy()
                ),
            )
            .args(["--steps", &STEPS.to_string(), "--checkpoint-every", "5"])
            .args([
                "--step-sleep-ms",
                &step_sleep_ms.to_string(),
                "--seed",
                "2024",
            ])
            .args(["--output", &dir.join("model.txt").to_string_lossy()])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn the workload");
        self.children.push(child);
        self.logs.push(log);
    }

    /// Waits for every rank to exit; their statuses.
    fn wait(&mut self) -> Vec<ExitStatus> {
        let deadline = Instant::now() + TIMEOUT;
        let mut statuses = vec![None; self.children.len()];
        while statuses.iter().any(Option::is_none) {
            assert!(
                Instant::now() < deadline,
                "gang did not exit:\n{}",
                self.dump()
            );
            for (c, s) in self.children.iter_mut().zip(statuses.iter_mut()) {
                if s.is_none() {
                    *s = c.try_wait().expect("try_wait");
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        statuses.into_iter().flatten().collect()
    }

    fn kill_all(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn dump(&self) -> String {
        self.logs
            .iter()
            .map(|p| {
                format!(
                    "--- {}\n{}",
                    p.display(),
                    fs::read_to_string(p).unwrap_or_default()
                )
            })
            .collect()
    }
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sywl-it-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// The newest checkpoint step in `dir/ckpt`, from file names.
fn newest_checkpoint(dir: &Path) -> u64 {
    fs::read_dir(dir.join("ckpt"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.strip_prefix("ckpt-")?.strip_suffix(".sywl")?.parse().ok()
                })
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

fn wait_for_checkpoint(dir: &Path, at_least: u64, gang: &Gang) -> u64 {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let step = newest_checkpoint(dir);
        if step >= at_least {
            return step;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint at step {at_least}:\n{}",
            gang.dump()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn interrupted_runs_end_with_the_uninterrupted_model() {
    let whole = scratch("whole");
    let mut gang = Gang::start(&whole, 1, 0);
    let statuses = gang.wait();
    assert!(statuses.iter().all(ExitStatus::success), "{}", gang.dump());
    let expected = fs::read_to_string(whole.join("model.txt")).expect("uninterrupted model");
    assert!(expected.contains("hash "), "{expected}");

    let pieces = scratch("pieces");
    // Attempt 1: killed (SIGKILL, every rank) after the checkpoint at step 10.
    let mut gang = Gang::start(&pieces, 1, 150);
    let first = wait_for_checkpoint(&pieces, 10, &gang);
    gang.kill_all();
    assert!(
        first < STEPS,
        "attempt 1 finished before it could be killed"
    );
    // Attempt 2: resumes, is killed again a few checkpoints later.
    let mut gang = Gang::start(&pieces, 2, 150);
    let second = wait_for_checkpoint(&pieces, first + 10, &gang);
    gang.kill_all();
    assert!(
        second < STEPS,
        "attempt 2 finished before it could be killed"
    );
    assert!(!pieces.join("model.txt").exists());
    // Attempt 3: runs to the end.
    let mut gang = Gang::start(&pieces, 3, 0);
    let statuses = gang.wait();
    assert!(statuses.iter().all(ExitStatus::success), "{}", gang.dump());
    let log0 = fs::read_to_string(&gang.logs[0]).expect("rank 0 log");
    assert!(log0.contains("resuming from checkpoint step"), "{log0}");

    let got = fs::read_to_string(pieces.join("model.txt")).expect("resumed model");
    assert_eq!(got, expected, "model after interruptions differs");
    // Every rank agrees on the hash.
    let hash_line = expected
        .lines()
        .last()
        .expect("hash line")
        .replace("hash ", "");
    for log in &gang.logs {
        let text = fs::read_to_string(log).expect("log");
        assert!(text.contains(&format!("model hash {hash_line}")), "{text}");
    }
    drop(gang);
    let _ = fs::remove_dir_all(&whole);
    let _ = fs::remove_dir_all(&pieces);
}

#[test]
fn one_dead_rank_stops_the_whole_gang() {
    let dir = scratch("dead-rank");
    let mut gang = Gang::start(&dir, 1, 150);
    wait_for_checkpoint(&dir, 5, &gang);
    let victim = &mut gang.children[2];
    victim.kill().expect("kill rank 2");
    victim.wait().expect("reap rank 2");
    let statuses = gang.wait();
    for (rank, s) in statuses.iter().enumerate() {
        assert!(
            !s.success(),
            "rank {rank} exited successfully:\n{}",
            gang.dump()
        );
    }
    assert!(!dir.join("model.txt").exists());
    drop(gang);
    let _ = fs::remove_dir_all(&dir);
}

/// One rank alone, in `dir` as its working directory, with `args`: its exit and output.
fn solo(dir: &Path, args: &[&str]) -> std::process::Output {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("an ephemeral port");
    Command::new(env!("CARGO_BIN_EXE_switchyard-workload"))
        .current_dir(dir)
        .args(["--world-size", "1", "--rank", "0"])
        .args([
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            &port.to_string(),
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the workload")
}

/// `--output` given as a bare file name writes the model into the working directory and the
/// run succeeds (the directory to fsync after the rename is `.`, not the empty path).
#[test]
fn a_bare_output_file_name_is_written_in_the_working_directory() {
    let dir = scratch("bare");
    let out = solo(&dir, &["--steps", "3", "--output", "bare.txt"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.join("bare.txt").is_file());
    let _ = fs::remove_dir_all(&dir);
}

/// A run whose loss stops being a finite number fails, saying so, and leaves no model: it
/// used to end "done" with exit 0 and a model of NaN weights.
#[test]
fn a_diverged_run_fails_and_writes_no_model() {
    let dir = scratch("diverge");
    let out = solo(
        &dir,
        &["--steps", "60", "--lr", "1e10", "--output", "model.txt"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("training diverged at step"), "{err}");
    assert!(!dir.join("model.txt").exists());
    let _ = fs::remove_dir_all(&dir);
}
