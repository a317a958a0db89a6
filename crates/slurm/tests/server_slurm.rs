//! Through the whole control plane: a server (store, scheduling leader, HTTP API) whose fleet
//! has one cluster with `backend = "slurm"` on this machine's Slurm. Jobs submitted to the API
//! run as Slurm jobs, finish, and are cancelled through the API. Skips (saying why) where Slurm
//! is not usable, unless SWITCHYARD_REQUIRE_SLURM=1.

mod common;

use std::time::{Duration, Instant};

use common::server::{Server, slurm_usable};
use serde_json::json;
use switchyard_slurm::parse::JobState;
use switchyard_slurm::{CliClient, SlurmClient};

#[test]
fn jobs_submitted_to_the_api_run_and_are_cancelled_on_slurm() {
    if !slurm_usable() {
        return;
    }
    let server = Server::start(&format!("sytest-server-{}", std::process::id()));

    let short = server.submit("short", 1.0);
    server.wait_state(&short, "done", 90);
    let runs = server.slurm_jobs(&short);
    assert_eq!(runs.len(), 1, "{runs:?}");
    let detail = CliClient::default()
        .job(&runs[0].0)
        .expect("scontrol answers")
        .expect("known");
    assert_eq!(
        detail.state,
        JobState::Completed,
        "scontrol show job says COMPLETED"
    );
    let logs = server
        .handle
        .as_ref()
        .and_then(|h| h.logs(&short))
        .expect("log paths");
    assert_eq!(logs.slurm_job.as_deref(), Some(runs[0].0.as_str()));

    let long = server.submit("long", 600.0);
    server.wait_state(&long, "running", 30);
    let end = Instant::now() + Duration::from_secs(30);
    while !server
        .slurm_jobs(&long)
        .iter()
        .any(|(_, s)| *s == JobState::Running)
    {
        assert!(Instant::now() < end, "{:?}", server.slurm_jobs(&long));
        std::thread::sleep(Duration::from_millis(200));
    }
    server.post(&format!("/v1/jobs/{long}/cancel"), json!({}));
    server.wait_state(&long, "cancelled", 30);
    let end = Instant::now() + Duration::from_secs(30);
    while !server
        .slurm_jobs(&long)
        .iter()
        .all(|(_, s)| *s == JobState::Cancelled)
    {
        assert!(Instant::now() < end, "{:?}", server.slurm_jobs(&long));
        std::thread::sleep(Duration::from_millis(200));
    }
    let events = server.get(&format!("/v1/jobs/{short}/events"));
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["kind"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        kinds.contains(&"started") && kinds.contains(&"finished"),
        "{events}"
    );
    // The backend's own events reach the job's events, with Slurm's job id.
    assert!(kinds.contains(&"slurm_submitted"), "{events}");
    let submitted = events["events"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["kind"] == "slurm_submitted"))
        .and_then(|e| e["message"].as_str())
        .unwrap_or_default();
    assert!(
        submitted.contains(&format!("Slurm job {}", runs[0].0)),
        "{submitted}"
    );

    // A job Slurm keeps queued (someone else's job holds the node) keeps its placement without
    // running: its reason says so, and it counts as started when its Slurm job starts. (In this
    // test rather than its own: a blocker would hold up a test running beside it.)
    let blocker = std::process::Command::new("sbatch")
        .args([
            "--parsable",
            "-p",
            "debug",
            "--exclusive",
            "-J",
            "sytest-blocker",
            // (No slurm-N.out left in the crate's directory.)
            "--output=/dev/null",
        ])
        .args(["--wrap", "sleep 120"])
        .output()
        .expect("run sbatch");
    assert!(blocker.status.success(), "{blocker:?}");
    let blocker = String::from_utf8_lossy(&blocker.stdout).trim().to_owned();
    let release = || {
        let _ = std::process::Command::new("scancel").arg(&blocker).status();
    };
    let end = Instant::now() + Duration::from_secs(30);
    while CliClient::default()
        .jobs()
        .expect("squeue answers")
        .iter()
        .all(|j| j.id != blocker || j.state != JobState::Running)
    {
        if Instant::now() > end {
            release();
            panic!("the blocker job {blocker} did not start");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let held = server.submit("held", 1.0);
    let end = Instant::now() + Duration::from_secs(30);
    let held_seen_ms = loop {
        let job = server.get(&format!("/v1/jobs/{held}"));
        let reason = job["reason"].as_str().unwrap_or_default();
        if job["state"] == "running" && reason.contains("not running yet") {
            assert!(reason.contains("waits in Slurm's queue"), "{job}");
            break std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
        }
        if Instant::now() > end {
            release();
            panic!("no held reason: {job}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // Held a while, so that when it started is not when it was placed.
    std::thread::sleep(Duration::from_millis(1500));
    let released_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    release();
    server.wait_state(&held, "done", 90);
    let job = server.get(&format!("/v1/jobs/{held}"));
    // Slurm's StartTime is in whole seconds.
    let started_ms = job["started_ms"].as_i64().unwrap_or_default();
    assert!(
        started_ms >= released_ms - 1000 && started_ms > held_seen_ms,
        "it started when Slurm ran it, after {released_ms} (held at {held_seen_ms}): {job}"
    );
}
