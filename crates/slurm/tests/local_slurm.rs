//! Integration tests against a real Slurm on this machine (slurmctld + slurmd, started by
//! `crates/slurm/scripts/start-local-slurm.sh`). Where Slurm is not installed or the controller
//! does not answer they print why and skip, unless SWITCHYARD_REQUIRE_SLURM=1 (CI), where they
//! fail. Each test leaves Slurm as it found it: its jobs cancelled, the node resumed.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::collections::BTreeMap;
use std::sync::Arc;
use switchyard_core::fleet::SlurmSettings;
use switchyard_server::backend::{Backend, Command, Observed};
use switchyard_slurm::parse::{JobState, NodeBase};

use switchyard_server::api::JobCommand;
use switchyard_server::backend::OutputLine;
use switchyard_slurm::{CliClient, ClusterConfig, Options, SlurmBackend, SlurmClient};

/// The tests share one node (and one of them takes it down): one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The local node's name, or `None` (after saying why) when Slurm is not usable here.
fn slurm_here() -> Option<String> {
    let required = std::env::var("SWITCHYARD_REQUIRE_SLURM").is_ok_and(|v| v == "1");
    let client = CliClient {
        timeout: Duration::from_secs(10),
        ..CliClient::default()
    };
    let why = match client.nodes(None) {
        Ok(nodes) if !nodes.is_empty() => {
            return nodes
                .iter()
                .find(|n| n.state.usable())
                .or(nodes.first())
                .map(|n| n.name.clone());
        }
        Ok(_) => "sinfo lists no nodes".to_owned(),
        Err(e) => e.to_string(),
    };
    assert!(
        !required,
        "SWITCHYARD_REQUIRE_SLURM=1 but Slurm is not usable: {why} (run crates/slurm/scripts/start-local-slurm.sh)"
    );
    eprintln!(
        "SKIPPED: no usable Slurm on this machine ({why}); run crates/slurm/scripts/start-local-slurm.sh to run these tests"
    );
    None
}

fn client() -> CliClient {
    CliClient {
        timeout: Duration::from_secs(20),
        ..CliClient::default()
    }
}

fn settings(partition: &str, command: Option<&str>) -> SlurmSettings {
    SlurmSettings {
        partition: partition.into(),
        rest_url: None,
        token_env: None,
        account: None,
        log_dir: Some(format!(
            "{}/switchyard-slurm-test/logs",
            std::env::temp_dir().display()
        )),
        checkpoint_dir: Some("/tmp/switchyard-slurm-test/ckpt".into()),
        command: command.map(str::to_owned),
    }
}

fn options(tag: &str) -> Options {
    Options {
        tag: format!("sytest-{tag}-{}", std::process::id()),
        poll_interval: Duration::from_millis(200),
        capacity_interval: Duration::from_millis(300),
        max_attempts: 3,
        backoff_initial: Duration::from_millis(200),
        backoff_max: Duration::from_secs(1),
        use_segment: false,
        legacy_tag: None,
    }
}

fn backend(partition: &str, command: Option<&str>, opts: Options) -> SlurmBackend {
    SlurmBackend::new(
        vec![ClusterConfig {
            name: "local".into(),
            index: 0,
            nodes: 1,
            accelerators_per_node: 2,
            block_nodes: None,
            settings: settings(partition, command),
            client: Box::new(client()),
        }],
        opts,
    )
    .expect("the worker starts")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn launch(job: &str, generation: u32, accelerators: u32, seconds: i64) -> Command {
    Command::Launch {
        job: job.into(),
        generation,
        cluster: "local".into(),
        accelerators,
        expected_end_ms: now_ms() + seconds * 1000,
        attempt: generation,
        nodes: Vec::new(),
        recovered: false,
        ran_before: None,
        command: None,
    }
}

/// Polls the backend until `pred` holds for one observation, collecting all of them.
fn wait_for(
    b: &mut SlurmBackend,
    seen: &mut Vec<Observed>,
    secs: u64,
    pred: impl Fn(&Observed) -> bool,
) {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        let got = b.poll(now_ms());
        let hit = got.iter().any(&pred);
        seen.extend(got);
        if hit {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("not observed within {secs} s; saw {seen:?}");
}

/// An event seen so far: (job, kind, message).
fn events(seen: &[Observed]) -> Vec<(String, String, String)> {
    seen.iter()
        .filter_map(|o| match o {
            Observed::Event {
                job, kind, message, ..
            } => Some((job.clone(), kind.clone(), message.clone())),
            _ => None,
        })
        .collect()
}

/// Polls until some event seen so far (in `seen`, or new) satisfies `pred` (job, kind).
fn wait_event(
    b: &mut SlurmBackend,
    seen: &mut Vec<Observed>,
    secs: u64,
    pred: impl Fn(&str, &str) -> bool,
) {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        seen.extend(b.poll(now_ms()));
        if events(seen).iter().any(|(j, k, _)| pred(j, k)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("event not seen within {secs} s; saw {seen:#?}");
}

/// Polls until some output line seen so far (in `seen`, or new) satisfies `pred`.
fn wait_output(
    b: &mut SlurmBackend,
    seen: &mut Vec<Observed>,
    secs: u64,
    pred: impl Fn(&OutputLine) -> bool,
) {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        seen.extend(b.poll(now_ms()));
        if output(seen).iter().any(&pred) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("output not seen within {secs} s; saw {seen:#?}");
}

/// The output lines seen so far.
fn output(seen: &[Observed]) -> Vec<OutputLine> {
    seen.iter()
        .filter_map(|o| match o {
            Observed::Output(l) => Some(l.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn job_command(script: &str, attempt: u32) -> Command {
    let mut env = BTreeMap::new();
    env.insert("GREETING".to_owned(), "hello world".to_owned());
    Command::Launch {
        job: "j-cmd".into(),
        generation: 1,
        cluster: "local".into(),
        accelerators: 2,
        expected_end_ms: now_ms() + 5_000,
        attempt,
        nodes: Vec::new(),
        recovered: false,
        ran_before: None,
        command: Some(Arc::new(JobCommand {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            env,
            working_dir: Some("/tmp".into()),
        })),
    }
}

fn slurm_state(id: &str) -> Option<JobState> {
    client().job(id).expect("scontrol answers").map(|j| j.state)
}

fn wait_state(id: &str, secs: u64, pred: impl Fn(&JobState) -> bool) -> JobState {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = slurm_state(id);
        if let Some(s) = s.as_ref().filter(|s| pred(s)) {
            return s.clone();
        }
        assert!(
            Instant::now() < end,
            "Slurm job {id} is {s:?} after {secs} s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Cancels the test's leftovers when the test ends, passed or not.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        cleanup(&self.0);
    }
}

/// Cancels every job still carrying `tag` (the test's leftovers).
fn cleanup(tag: &str) {
    if let Ok(jobs) = client().jobs() {
        for j in jobs {
            if j.comment.as_deref().is_some_and(|c| c.starts_with(tag)) && !j.state.is_terminal() {
                let _ = client().cancel(&j.id);
            }
        }
    }
}

struct CancelOnDrop(String);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let _ = client().cancel(&self.0);
    }
}

fn sbatch_untagged(seconds: u32) -> String {
    let out = std::process::Command::new("sbatch")
        .args([
            "--parsable",
            "--job-name=not-switchyard",
            "--output=/dev/null",
        ])
        .arg(format!("--wrap=sleep {seconds}"))
        .output()
        .expect("sbatch runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn jobs_run_complete_and_cancel_in_slurm_and_other_jobs_are_left_alone() {
    let _g = serial();
    let Some(_node) = slurm_here() else { return };
    let opts = options("run");
    let tag = opts.tag.clone();
    let _cleanup = Cleanup(tag.clone());
    let foreign = sbatch_untagged(20);
    let _foreign_cleanup = CancelOnDrop(foreign.clone());
    let cmd = "echo \"id=$SWITCHYARD_JOB_ID gen=$SWITCHYARD_GENERATION attempt=$SWITCHYARD_ATTEMPT ckpt=$SWITCHYARD_CHECKPOINT_DIR\"";
    let mut b = backend("debug", Some(cmd), opts);
    let h = b.handle();
    b.act(vec![launch("j-short", 1, 1, 1)]);
    let mut seen = Vec::new();
    wait_for(
        &mut b,
        &mut seen,
        60,
        |o| matches!(o, Observed::Finished { job, generation: 1 } if job == "j-short"),
    );
    let logs = h.logs("j-short").expect("log paths are known");
    let id = logs.slurm_job.clone().expect("a Slurm job id");
    assert_eq!(
        slurm_state(&id),
        Some(JobState::Completed),
        "scontrol shows it completed"
    );
    let out = std::fs::read_to_string(&logs.stdout).expect("stdout file is written");
    let want = "id=j-short gen=1 attempt=1 ckpt=/tmp/switchyard-slurm-test/ckpt/j-short";
    assert_eq!(out.trim(), want);
    // The echo came back through the backend as an output line of the job.
    wait_output(&mut b, &mut seen, 10, |l| l.line == want);
    let line = output(&seen)
        .into_iter()
        .find(|l| l.line == want)
        .expect("seen");
    assert_eq!(
        (
            line.job.as_str(),
            line.attempt,
            line.rank,
            line.stream,
            line.seq
        ),
        ("j-short", 1, 0, "stdout", 0)
    );
    assert_eq!(line.source, format!("slurm-{id}"));
    drop(b);

    // A long run, cancelled through Stop.
    let mut b = backend("debug", None, options("run"));
    let h = b.handle();
    b.act(vec![launch("j-long", 1, 1, 600)]);
    let mut seen = Vec::new();
    wait_event(&mut b, &mut seen, 30, |j, k| {
        j == "j-long" && k == "slurm_submitted"
    });
    let id = h
        .logs("j-long")
        .and_then(|l| l.slurm_job)
        .expect("submitted");
    b.act(vec![Command::Stop {
        job: "j-long".into(),
    }]);
    wait_state(&id, 30, |s| *s == JobState::Cancelled);
    wait_event(&mut b, &mut seen, 10, |j, k| {
        j == "j-long" && k == "slurm_cancelled"
    });
    // The job nobody tagged was never touched.
    let foreign_state = slurm_state(&foreign);
    assert!(
        matches!(
            foreign_state,
            Some(JobState::Pending | JobState::Running | JobState::Completed)
        ),
        "{foreign_state:?}"
    );
    let _ = client().cancel(&foreign);
    drop(b);
    cleanup(&tag);
}

/// Waits until no job of any user runs or waits in Slurm (leftovers of other tests end or
/// are cancelled), at most `secs` seconds.
fn wait_until_no_jobs_run(secs: u64) {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let active: Vec<String> = client()
            .jobs()
            .expect("squeue answers")
            .into_iter()
            .filter(|j| !j.state.is_terminal())
            .map(|j| format!("{} ({})", j.id, j.name))
            .collect();
        if active.is_empty() {
            return;
        }
        assert!(
            Instant::now() < end,
            "Slurm jobs still run after {secs} s: {active:?}; this test needs the node idle"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Puts Slurm node `node` in `state` (`down`, `drain`, `resume`) with `scontrol update`.
fn set_node_state(node: &str, state: &str) {
    let mut args = vec![
        "update".to_owned(),
        format!("nodename={node}"),
        format!("state={state}"),
    ];
    if state != "resume" {
        args.push("reason=switchyard-test".into());
    }
    let st = std::process::Command::new("scontrol")
        .args(&args)
        .status()
        .expect("scontrol runs");
    assert!(st.success(), "scontrol {args:?}");
}

/// Resumes the node when dropped, so that a failed test leaves it usable.
struct ResumeOnDrop(String);

impl Drop for ResumeOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("scontrol")
            .args(["update", &format!("nodename={}", self.0), "state=resume"])
            .status();
    }
}

#[test]
fn a_node_slurm_marks_down_is_a_node_failure_until_resumed() {
    let _g = serial();
    let Some(node) = slurm_here() else { return };
    // (Another job on the node would bring it back at once: see the drained case.)
    wait_until_no_jobs_run(60);
    let _resume = ResumeOnDrop(node.clone());
    let opts = options("down");
    let _cleanup = Cleanup(opts.tag.clone());
    let mut b = backend("debug", None, opts);
    b.act(vec![]);
    // Nothing failed while the node is up; the node is named by its Slurm name (the worker's
    // first round of Slurm commands may take a while on a loaded machine).
    let named = Observed::NodeNamed {
        cluster: 0,
        node: 0,
        host: node.clone(),
    };
    let mut early = Vec::new();
    wait_for(&mut b, &mut early, 20, |o| *o == named);
    assert_eq!(early, [named], "only the node's name while it is up");
    set_node_state(&node, "down");
    let mut seen = Vec::new();
    wait_for(&mut b, &mut seen, 20, |o| {
        *o == Observed::NodeFailed {
            cluster: 0,
            node: 0,
        }
    });
    set_node_state(&node, "resume");
    wait_for(&mut b, &mut seen, 20, |o| {
        *o == Observed::NodeRepaired {
            cluster: 0,
            node: 0,
        }
    });
    // A new leader term hears about failures again (none now).
    b.reset();
    std::thread::sleep(Duration::from_millis(800));
    let after = b.poll(now_ms());
    assert!(
        !after
            .iter()
            .any(|o| matches!(o, Observed::NodeFailed { .. })),
        "{after:?}"
    );
}

/// A drained node (an administrator's maintenance) takes no new jobs in Slurm but runs the
/// ones it has to their end: Switchyard hears "drained", not "failed", and its job runs on.
#[test]
fn a_node_slurm_drains_keeps_its_running_job_until_resumed() {
    let _g = serial();
    let Some(node) = slurm_here() else { return };
    let _resume = ResumeOnDrop(node.clone());
    let opts = options("drain");
    let _cleanup = Cleanup(opts.tag.clone());
    let mut b = backend("debug", None, opts);
    let h = b.handle();
    b.act(vec![launch("j-drain", 1, 1, 600)]);
    let mut seen = Vec::new();
    wait_event(&mut b, &mut seen, 30, |j, k| {
        j == "j-drain" && k == "slurm_submitted"
    });
    let id = h
        .logs("j-drain")
        .and_then(|l| l.slurm_job)
        .expect("submitted");
    wait_state(&id, 30, |s| *s == JobState::Running);
    set_node_state(&node, "drain");
    wait_for(&mut b, &mut seen, 20, |o| {
        *o == Observed::NodeDrained {
            cluster: 0,
            node: 0,
        }
    });
    // Two more rounds: still running, nothing failed, nothing submitted again.
    std::thread::sleep(Duration::from_secs(5));
    seen.extend(b.poll(now_ms()));
    assert_eq!(slurm_state(&id), Some(JobState::Running));
    assert!(
        !seen.iter().any(|o| matches!(
            o,
            Observed::NodeFailed { .. } | Observed::Failed { .. } | Observed::Finished { .. }
        )),
        "{seen:#?}"
    );
    assert_eq!(h.counters().0, 1, "submitted once");
    set_node_state(&node, "resume");
    wait_for(&mut b, &mut seen, 20, |o| {
        *o == Observed::NodeRepaired {
            cluster: 0,
            node: 0,
        }
    });
    b.act(vec![Command::Stop {
        job: "j-drain".into(),
    }]);
    wait_state(&id, 30, |s| *s == JobState::Cancelled);
}

/// A drained node that then goes down has failed: `sinfo`'s StateComplete says `down+drain`
/// (`%T` would print `drained`), and the scheduler hears it failed, then repaired.
#[test]
fn a_drained_node_that_goes_down_is_a_node_failure() {
    let _g = serial();
    let Some(node) = slurm_here() else { return };
    // With a job on it, `state=down` kills the job and Slurm (ReturnToService=2) has the node
    // back as drained at once: down+drain would come and go between two polls.
    wait_until_no_jobs_run(60);
    let _resume = ResumeOnDrop(node.clone());
    let opts = options("drain-down");
    let _cleanup = Cleanup(opts.tag.clone());
    let mut b = backend("debug", None, opts);
    b.act(vec![]);
    set_node_state(&node, "drain");
    let mut seen = Vec::new();
    wait_for(&mut b, &mut seen, 20, |o| {
        *o == Observed::NodeDrained {
            cluster: 0,
            node: 0,
        }
    });
    set_node_state(&node, "down");
    wait_for(&mut b, &mut seen, 20, |o| {
        *o == Observed::NodeFailed {
            cluster: 0,
            node: 0,
        }
    });
    let listed = client().nodes(Some("debug")).expect("sinfo");
    assert_eq!(
        listed[0].state.base,
        NodeBase::Down,
        "{:?}",
        listed[0].state
    );
    assert!(listed[0].state.drain, "{:?}", listed[0].state);
    set_node_state(&node, "resume");
    wait_for(&mut b, &mut seen, 20, |o| {
        *o == Observed::NodeRepaired {
            cluster: 0,
            node: 0,
        }
    });
}

/// A run Slurm queued began when Slurm started it — Slurm's StartTime, not when the server
/// heard of it (here: the server takes the backend's news only after the job has ended) —
/// and then finished. (The backend's unit tests cover a job that starts and ends between two
/// of its own polls.)
#[test]
fn a_queued_run_began_at_slurms_start_time() {
    let _g = serial();
    let Some(_node) = slurm_here() else { return };
    let opts = options("unseen");
    let _cleanup = Cleanup(opts.tag.clone());
    // Another user's job on the whole node keeps the run queued.
    let out = std::process::Command::new("sbatch")
        .args([
            "--parsable",
            "--exclusive",
            "--job-name=not-switchyard",
            "--output=/dev/null",
            "--wrap=sleep 600",
        ])
        .output()
        .expect("sbatch runs");
    assert!(out.status.success(), "{out:?}");
    let blocker = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let _blocker = CancelOnDrop(blocker.clone());
    wait_state(&blocker, 30, |s| *s == JobState::Running);

    let mut b = backend("debug", None, opts);
    let h = b.handle();
    b.act(vec![launch("j-unseen", 1, 1, 2)]);
    let mut seen = Vec::new();
    wait_for(
        &mut b,
        &mut seen,
        30,
        |o| matches!(o, Observed::Held { job, .. } if job == "j-unseen"),
    );
    let id = h
        .logs("j-unseen")
        .and_then(|l| l.slurm_job)
        .expect("submitted");
    let freed_ms = now_ms();
    client().cancel(&blocker).expect("scancel");
    // The server does not hear from the backend while it runs its two seconds and ends.
    wait_state(&id, 60, |s| *s == JobState::Completed);
    std::thread::sleep(Duration::from_secs(2));
    let polled_ms = now_ms();
    wait_for(
        &mut b,
        &mut seen,
        30,
        |o| matches!(o, Observed::Finished { job, .. } if job == "j-unseen"),
    );
    let since: Vec<Option<i64>> = seen
        .iter()
        .filter_map(|o| match o {
            Observed::Began { job, since_ms, .. } if job == "j-unseen" => Some(*since_ms),
            _ => None,
        })
        .collect();
    let [Some(began_ms)] = since[..] else {
        panic!("one Began with Slurm's start time: {since:?}");
    };
    // (StartTime is in whole seconds.)
    assert!(
        began_ms >= freed_ms - 1000 && began_ms + 3000 <= polled_ms,
        "began at {began_ms}: the node was freed at {freed_ms}, the end seen at {polled_ms}"
    );
}

/// `scontrol suspend` pauses the run (it keeps its progress), `scontrol resume` lets it go on.
#[test]
fn a_suspended_job_pauses_its_run_until_resumed() {
    let _g = serial();
    let Some(_node) = slurm_here() else { return };
    let opts = options("suspend");
    let _cleanup = Cleanup(opts.tag.clone());
    let mut b = backend("debug", None, opts);
    let h = b.handle();
    b.act(vec![launch("j-pause", 1, 1, 600)]);
    let mut seen = Vec::new();
    wait_event(&mut b, &mut seen, 30, |j, k| {
        j == "j-pause" && k == "slurm_running"
    });
    let id = h
        .logs("j-pause")
        .and_then(|l| l.slurm_job)
        .expect("submitted");
    let scontrol = |verb: &str| {
        let st = std::process::Command::new("scontrol")
            .args([verb, &id])
            .status()
            .expect("scontrol runs");
        assert!(st.success(), "scontrol {verb} {id}");
    };
    scontrol("suspend");
    wait_for(&mut b, &mut seen, 20, |o| {
        matches!(o, Observed::Paused { job, generation: 1, why }
            if job == "j-pause" && why == &format!("Slurm job {id} is suspended"))
    });
    scontrol("resume");
    // Going on after a pause is not a start: Slurm's StartTime is its first start.
    wait_for(
        &mut b,
        &mut seen,
        20,
        |o| matches!(o, Observed::Began { job, generation: 1, since_ms: None } if job == "j-pause"),
    );
    // (Held before it first ran, while Slurm queued it; not since.)
    let paused_at = seen
        .iter()
        .position(|o| matches!(o, Observed::Paused { .. }))
        .expect("paused");
    assert!(
        !seen[paused_at..].iter().any(|o| matches!(
            o,
            Observed::Failed { .. } | Observed::Finished { .. } | Observed::Held { .. }
        )),
        "{seen:#?}"
    );
    assert_eq!(h.counters().0, 1, "submitted once");
    b.act(vec![Command::Stop {
        job: "j-pause".into(),
    }]);
    wait_state(&id, 30, |s| *s == JobState::Cancelled);
}

#[test]
fn after_a_restart_running_jobs_are_adopted_and_unwanted_ones_cancelled() {
    let _g = serial();
    let Some(_node) = slurm_here() else { return };
    let opts = options("adopt");
    let tag = opts.tag.clone();
    let _cleanup = Cleanup(tag.clone());
    let mut a = backend("debug", None, opts.clone());
    let ha = a.handle();
    a.act(vec![
        launch("j-keep", 1, 1, 600),
        launch("j-drop", 1, 1, 600),
    ]);
    let mut seen = Vec::new();
    wait_event(&mut a, &mut seen, 30, |j, k| {
        j == "j-drop" && k == "slurm_submitted"
    });
    wait_event(&mut a, &mut seen, 30, |j, k| {
        j == "j-keep" && k == "slurm_submitted"
    });
    let keep = ha
        .logs("j-keep")
        .and_then(|l| l.slurm_job)
        .expect("submitted");
    let dropped = ha
        .logs("j-drop")
        .and_then(|l| l.slurm_job)
        .expect("submitted");
    drop(a); // the server goes away; Slurm keeps both jobs

    // A new server wants j-keep (placed again as generation 2 by the new leader) only.
    let mut b = backend("debug", None, opts);
    let hb = b.handle();
    b.act(vec![launch("j-keep", 2, 1, 600)]);
    let mut seen = Vec::new();
    wait_event(&mut b, &mut seen, 30, |j, k| {
        j == "j-keep" && k == "slurm_adopted"
    });
    wait_state(&dropped, 30, |s| *s == JobState::Cancelled);
    assert!(
        !matches!(slurm_state(&keep), Some(JobState::Cancelled)),
        "the wanted job was adopted, not cancelled"
    );
    let (submitted, cancelled, _) = hb.counters();
    assert_eq!((submitted, cancelled), (0, 1), "{seen:#?}");
    b.act(vec![Command::Stop {
        job: "j-keep".into(),
    }]);
    wait_state(&keep, 30, |s| *s == JobState::Cancelled);
    drop(b);
    cleanup(&tag);
}

/// A partition Slurm does not have: `sinfo` lists no nodes for it (and succeeds), so nothing
/// is submitted and the run is told which partition to check, instead of waiting as if every
/// node had failed. (Slurm's own refusals of `sbatch` becoming events, retried with back-off,
/// are covered by the backend's unit tests: this one-node Slurm accepts every submission the
/// backend makes.)
#[test]
fn a_partition_slurm_does_not_have_is_named_and_nothing_is_submitted() {
    let _g = serial();
    let Some(_node) = slurm_here() else { return };
    let opts = options("err");
    let _cleanup = Cleanup(opts.tag.clone());
    let mut b = backend("no-such-partition", None, opts);
    let h = b.handle();
    b.act(vec![launch("j-err", 1, 1, 5)]);
    let mut seen = Vec::new();
    wait_event(&mut b, &mut seen, 20, |j, k| {
        j == "j-err" && k == "slurm_unreachable"
    });
    let said: Vec<String> = events(&seen)
        .into_iter()
        .filter(|e| e.1 == "slurm_unreachable")
        .map(|e| e.2)
        .collect();
    assert!(
        said[0].contains("partition no-such-partition lists no nodes: does it exist?"),
        "{said:?}"
    );
    // Some rounds later: still nothing submitted, and nothing taken for a failed node.
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end {
        seen.extend(b.poll(now_ms()));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(h.counters().0, 0, "nothing was submitted");
    assert!(
        !seen
            .iter()
            .any(|o| matches!(o, Observed::Finished { .. } | Observed::NodeFailed { .. })),
        "{seen:?}"
    );
}

#[test]
fn a_failing_job_is_a_failed_run_with_its_exit_code() {
    let _g = serial();
    let Some(_node) = slurm_here() else { return };
    let opts = options("fail");
    let _cleanup = Cleanup(opts.tag.clone());
    let mut b = backend("debug", Some("echo about to fail; exit 3"), opts);
    let h = b.handle();
    b.act(vec![launch("j-fail", 1, 1, 5)]);
    let mut seen = Vec::new();
    wait_for(
        &mut b,
        &mut seen,
        60,
        |o| matches!(o, Observed::Failed { job, generation: 1, .. } if job == "j-fail"),
    );
    let id = h
        .logs("j-fail")
        .and_then(|l| l.slurm_job)
        .expect("submitted");
    let reason = seen
        .iter()
        .find_map(|o| match o {
            Observed::Failed { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .unwrap_or_default();
    assert!(
        reason.contains(&format!("Slurm job {id} ended FAILED with exit code 3")),
        "{reason}"
    );
    // The server decides about restarts: the backend submitted it once.
    std::thread::sleep(Duration::from_millis(600));
    seen.extend(b.poll(now_ms()));
    assert_eq!(h.counters().0, 1, "{seen:#?}");
    assert!(!seen.iter().any(|o| matches!(o, Observed::Finished { .. })));
    wait_output(&mut b, &mut seen, 10, |l| l.line == "about to fail");
}

/// A job's own command (argv, env, working directory) runs once per task under `srun`, with
/// the launcher variables, and its ranks' output comes back labelled.
#[test]
fn the_jobs_own_command_runs_once_per_task_and_its_output_comes_back() {
    let _g = serial();
    let Some(_node) = slurm_here() else { return };
    let opts = options("cmd");
    let _cleanup = Cleanup(opts.tag.clone());
    let mut b = backend("debug", None, opts);
    let script = "echo \"rank=$RANK of $WORLD_SIZE local=$LOCAL_RANK attempt=$SWITCHYARD_ATTEMPT \
                  port=$MASTER_PORT addr=${MASTER_ADDR:+set} dir=$(pwd) greeting=$GREETING \
                  server_env=${CARGO_MANIFEST_DIR:-none}\"; \
                  echo \"rank $RANK says bye\" >&2";
    // The server's own environment (here the test's, as cargo set it) does not reach the job.
    assert!(std::env::var("CARGO_MANIFEST_DIR").is_ok());
    b.act(vec![job_command(script, 4)]);
    let mut seen = Vec::new();
    wait_for(
        &mut b,
        &mut seen,
        60,
        |o| matches!(o, Observed::Finished { job, generation: 1 } if job == "j-cmd"),
    );
    let port = switchyard_slurm::script::master_port("j-cmd", 4);
    for rank in 0..2u32 {
        let want = format!(
            "rank={rank} of 2 local={rank} attempt=4 port={port} addr=set dir=/tmp greeting=hello world server_env=none"
        );
        wait_output(&mut b, &mut seen, 10, |l| {
            l.line == want && l.rank == rank && l.stream == "stdout" && l.attempt == 4
        });
        let bye = format!("rank {rank} says bye");
        wait_output(&mut b, &mut seen, 10, |l| {
            l.line == bye && l.rank == rank && l.stream == "stderr"
        });
    }
    // A rank that fails fails the run, with its exit code.
    b.act(vec![job_command(
        "if [ \"$RANK\" = 1 ]; then exit 7; fi; sleep 30",
        5,
    )]);
    wait_for(&mut b, &mut seen, 60, |o| {
        matches!(o, Observed::Failed { job, reason, .. }
            if job == "j-cmd" && reason.contains("rank 1 failed first: Exited with exit code 7"))
    });
}

/// A service replica's command runs once per node of the replica (one task, its accelerators
/// in CPUs on a node without GPUs), not once per accelerator, on the replica's own port.
#[test]
fn a_replicas_command_runs_once_per_node() {
    let _g = serial();
    let Some(_node) = slurm_here() else { return };
    let opts = options("replica");
    let _cleanup = Cleanup(opts.tag.clone());
    let mut b = backend("debug", None, opts);
    b.act(vec![Command::AddReplica {
        job: "j-svc".into(),
        cluster: "local".into(),
        accelerators: 2,
        nodes: Vec::new(),
        command: Some(Arc::new(JobCommand {
            argv: vec![
                "sh".into(),
                "-c".into(),
                "echo \"serving as $RANK of $WORLD_SIZE on ${SLURM_CPUS_PER_TASK:-1} CPUs\"; exec sleep 60".into(),
            ],
            env: BTreeMap::new(),
            working_dir: None,
        })),
    }]);
    let mut seen = Vec::new();
    wait_output(&mut b, &mut seen, 60, |l| l.line.starts_with("serving as"));
    // Give a second task, if there were one, time to print too.
    std::thread::sleep(Duration::from_secs(2));
    seen.extend(b.poll(now_ms()));
    let serving: Vec<String> = output(&seen)
        .into_iter()
        .filter(|l| l.line.starts_with("serving as"))
        .map(|l| l.line)
        .collect();
    assert_eq!(serving, ["serving as 0 of 1 on 2 CPUs"], "{seen:#?}");
    b.act(vec![Command::Stop {
        job: "j-svc".into(),
    }]);
    wait_until_no_jobs_run(60);
}
