//! The agent loop against the in-memory control plane, running real processes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard_agent::control::MIN_REQUEST_TIME;
use switchyard_agent::hardware::{DiscoverOptions, discover};
use switchyard_agent::protocol::{
    AssignmentList, ExitInfo, LogLine, NodeInfo, ProcessState, ProcessStatus, Registration, Stream,
};
use switchyard_agent::reconcile::{Action, Phase};
use switchyard_agent::{
    Agent, AgentConfig, Assignment, ControlPlane, ControlPlaneError, MemoryControlPlane,
    RestartPolicy,
};

const TIMEOUT: Duration = Duration::from_secs(60);

fn sh(id: &str, script: &str, restart: RestartPolicy) -> Assignment {
    Assignment {
        id: id.into(),
        job_id: "job-1".into(),
        attempt: 1,
        rank: 0,
        world_size: 1,
        local_rank: 0,
        master_addr: "127.0.0.1".into(),
        master_port: 29500,
        command: vec!["sh".into(), "-c".into(), script.into()],
        env: BTreeMap::new(),
        accelerators: vec![0],
        checkpoint_dir: None,
        working_dir: None,
        restart,
        stop_grace_ms: 2000,
    }
}

fn agent(cp: &MemoryControlPlane) -> Agent<MemoryControlPlane> {
    agent_with(cp, AgentConfig::default())
}

/// An agent of a 2-accelerator node in cluster `test`, tuned by `config`.
fn agent_with(cp: &MemoryControlPlane, config: AgentConfig) -> Agent<MemoryControlPlane> {
    let node = discover(&DiscoverOptions {
        declared_accelerators: Some(2),
        cluster: Some("test".into()),
        address: Some("127.0.0.1".into()),
    });
    Agent::new(cp.clone(), node, config)
}

/// An agent of a 1-accelerator node of cluster `test` (at its host name) whose supervisor
/// keeps its processes in `dir`: a later one on the same directory adopts them.
fn agent_on_state_dir(
    cp: &MemoryControlPlane,
    dir: &std::path::Path,
    config: AgentConfig,
) -> Agent<MemoryControlPlane> {
    let node = discover(&DiscoverOptions {
        declared_accelerators: Some(1),
        cluster: Some("test".into()),
        address: None,
    });
    let sup = switchyard_agent::supervisor::Supervisor::with_state_dir(dir).expect("state dir");
    Agent::with_supervisor(cp.clone(), node, config, sup)
}

/// Syncs until `done` holds for the control plane's state.
fn sync_until(
    agent: &mut Agent<MemoryControlPlane>,
    cp: &MemoryControlPlane,
    what: &str,
    done: impl Fn(&switchyard_agent::control::MemoryState) -> bool,
) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let _ = agent.sync();
        if done(&cp.state()) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn state_of(s: &switchyard_agent::control::MemoryState, id: &str) -> Option<ProcessState> {
    s.statuses
        .iter()
        .find(|((_, a), _)| a == id)
        .map(|(_, st)| st.state.clone())
}

#[test]
fn registers_runs_streams_and_stops_what_is_no_longer_desired() {
    let cp = MemoryControlPlane::new();
    let mut agent = agent(&cp);
    agent.sync().expect("first sync registers");
    let node_id = agent.node_id().expect("registered").to_string();
    {
        let s = cp.state();
        let node = &s.nodes[&node_id];
        assert_eq!(node.accelerators.len(), 2);
        assert_eq!(node.cluster.as_deref(), Some("test"));
        assert_eq!(s.heartbeats[&node_id], 1);
    }

    cp.set_desired(
        &node_id,
        vec![sh(
            "job-1/attempt-1/rank-0",
            "echo hello from $RANK on $CUDA_VISIBLE_DEVICES; exec sleep 300",
            RestartPolicy::Never,
        )],
    );
    let report = agent.sync().expect("sync");
    assert!(matches!(
        report.actions.as_slice(),
        [Action::Start { restart: false, .. }]
    ));
    sync_until(&mut agent, &cp, "the hello line", |s| {
        s.logs
            .iter()
            .any(|l| l.stream == Stream::Stdout && l.line == "hello from 0 on 0")
    });
    assert!(matches!(
        state_of(&cp.state(), "job-1/attempt-1/rank-0"),
        Some(ProcessState::Running { .. })
    ));

    // Cancelled: the desired state no longer has it.
    cp.set_desired(&node_id, vec![]);
    sync_until(&mut agent, &cp, "the stop to be reported", |s| {
        matches!(
            state_of(s, "job-1/attempt-1/rank-0"),
            Some(ProcessState::Exited(ExitInfo {
                stopped_by_agent: true,
                ..
            }))
        )
    });
    // Reported exits of undesired assignments are forgotten on the next pass.
    agent.sync().expect("sync");
    assert_eq!(agent.supervisor().statuses().len(), 0);
}

#[test]
fn an_unreachable_control_plane_changes_nothing_that_runs() {
    let cp = MemoryControlPlane::new();
    let mut agent = agent(&cp);
    agent.sync().expect("register");
    let node_id = agent.node_id().expect("registered").to_string();
    cp.set_desired(
        &node_id,
        vec![sh("svc", "echo up; exec sleep 300", RestartPolicy::Never)],
    );
    sync_until(&mut agent, &cp, "svc running", |s| {
        matches!(state_of(s, "svc"), Some(ProcessState::Running { .. }))
    });
    cp.state().down = true;
    for _ in 0..5 {
        assert!(agent.sync().is_err());
    }
    assert_eq!(
        agent.supervisor().live(),
        1,
        "kept running while the server was away"
    );
    // Back, and it forgot the node (e.g. declared it lost): the agent registers again and the
    // desired state (nothing) wins.
    {
        let mut s = cp.state();
        s.down = false;
        s.nodes.clear();
        s.desired.clear();
    }
    let deadline = Instant::now() + TIMEOUT;
    while agent.supervisor().live() > 0 {
        let _ = agent.sync();
        assert!(Instant::now() < deadline, "stray not stopped");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(cp.state().nodes.len(), 1, "registered again");
}

#[test]
fn failed_ranks_are_reported_not_restarted_but_replicas_restart() {
    let cp = MemoryControlPlane::new();
    let mut agent = agent(&cp);
    agent.sync().expect("register");
    let node_id = agent.node_id().expect("registered").to_string();
    cp.set_desired(
        &node_id,
        vec![
            sh("rank", "exit 7", RestartPolicy::Never),
            sh("replica", "echo serving; exit 0", RestartPolicy::Always),
        ],
    );
    sync_until(&mut agent, &cp, "the replica's restart", |s| {
        s.statuses
            .values()
            .any(|st| st.assignment_id == "replica" && st.restarts >= 1)
    });
    let s = cp.state();
    match state_of(&s, "rank") {
        Some(ProcessState::Exited(info)) => {
            assert_eq!(info.code, Some(7));
            assert!(!info.stopped_by_agent);
        }
        other => panic!("rank should have exited 7, is {other:?}"),
    }
    let rank_status = s.statuses.values().find(|st| st.assignment_id == "rank");
    assert_eq!(rank_status.map(|st| st.restarts), Some(0));
    let serving = s.logs.iter().filter(|l| l.line == "serving").count();
    assert!(serving >= 1);
}

#[test]
fn a_restarted_agent_adopts_its_processes_and_the_desired_state_wins() {
    let dir = std::env::temp_dir().join(format!("sy-agent-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cp = MemoryControlPlane::new();
    let mut first = agent_on_state_dir(&cp, &dir, AgentConfig::default());
    first.sync().expect("register");
    let node_id = first.node_id().expect("registered").to_string();
    cp.set_desired(
        &node_id,
        vec![
            sh("keep", "echo keep; exec sleep 300", RestartPolicy::Never),
            sh("drop", "echo drop; exec sleep 300", RestartPolicy::Never),
        ],
    );
    sync_until(&mut first, &cp, "both running", |s| {
        ["keep", "drop"]
            .iter()
            .all(|id| matches!(state_of(s, id), Some(ProcessState::Running { .. })))
    });
    let pid_of = |s: &switchyard_agent::control::MemoryState, id: &str| match state_of(s, id) {
        Some(ProcessState::Running { pid }) => pid,
        other => panic!("{id}: {other:?}"),
    };
    let keep_pid = pid_of(&cp.state(), "keep");
    first.detach(); // the agent restarts in place

    // While it was away, "drop" was cancelled.
    cp.set_desired(
        &node_id,
        vec![sh(
            "keep",
            "echo keep; exec sleep 300",
            RestartPolicy::Never,
        )],
    );
    let mut second = agent_on_state_dir(&cp, &dir, AgentConfig::default());
    let report = second.sync().expect("sync");
    assert_eq!(second.node_id(), Some(node_id.as_str()), "same node id");
    assert!(
        !report
            .actions
            .iter()
            .any(|a| matches!(a, Action::Start { .. })),
        "nothing started twice: {:?}",
        report.actions
    );
    sync_until(&mut second, &cp, "the stray to be stopped", |s| {
        matches!(
            state_of(s, "drop"),
            Some(ProcessState::Exited(ExitInfo {
                stopped_by_agent: true,
                ..
            }))
        )
    });
    assert_eq!(
        pid_of(&cp.state(), "keep"),
        keep_pid,
        "kept running, same process"
    );
    drop(second); // kills "keep"
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_refused_output_line_is_dropped_alone_and_the_rest_gets_through() {
    let cp = MemoryControlPlane::new();
    cp.state().refuse_lines_containing = Some("POISON".into());
    let mut agent = agent(&cp);
    agent.sync().expect("registers");
    let node_id = agent.node_id().expect("registered").to_string();
    cp.set_desired(
        &node_id,
        vec![sh(
            "a-1",
            "i=0; while [ $i -lt 2500 ]; do if [ $i = 1700 ]; then echo POISON; else echo line $i; fi; i=$((i+1)); done",
            RestartPolicy::Never,
        )],
    );
    sync_until(&mut agent, &cp, "every good line", |s| {
        s.logs.iter().filter(|l| l.stream == Stream::Stdout).count() >= 2499
    });
    let s = cp.state();
    let lines: Vec<&str> = s.logs.iter().map(|l| l.line.as_str()).collect();
    assert_eq!(lines.len(), 2499, "every line but the refused one");
    assert!(!lines.contains(&"POISON"));
    let expected: Vec<String> = (0..2500)
        .filter(|&i| i != 1700)
        .map(|i| format!("line {i}"))
        .collect();
    assert_eq!(
        lines, expected,
        "in order, nothing lost but the refused line"
    );
    assert_eq!(agent.refused_logs(), 1);
}

#[test]
fn failing_output_pushes_keep_the_lines_and_the_heartbeats() {
    let cp = MemoryControlPlane::new();
    let mut agent = agent(&cp);
    agent.sync().expect("registers");
    let node_id = agent.node_id().expect("registered").to_string();
    cp.state().log_pushes_fail = true;
    cp.set_desired(
        &node_id,
        vec![sh("a-1", "echo one; echo two", RestartPolicy::Never)],
    );
    let deadline = Instant::now() + TIMEOUT;
    while agent.buffered_logs() < 2 {
        agent
            .sync()
            .expect("a failing output push does not fail the sync");
        assert!(Instant::now() < deadline, "timed out waiting for output");
        std::thread::sleep(Duration::from_millis(20));
    }
    let beats = cp.state().heartbeats[&node_id];
    for _ in 0..5 {
        agent
            .sync()
            .expect("a failing output push does not fail the sync");
    }
    assert_eq!(cp.state().heartbeats[&node_id], beats + 5);
    assert!(cp.state().logs.is_empty());
    cp.state().log_pushes_fail = false;
    agent.sync().expect("sync");
    let s = cp.state();
    let lines: Vec<&str> = s.logs.iter().map(|l| l.line.as_str()).collect();
    assert_eq!(lines, ["one", "two"]);
}

#[test]
fn output_pushes_stay_under_the_byte_bound() {
    let cp = MemoryControlPlane::new();
    let mut agent = agent(&cp);
    agent.sync().expect("registers");
    let node_id = agent.node_id().expect("registered").to_string();
    // 1,000 lines of 16,000 quotes: 32 MB of JSON in one 1,000-line batch.
    cp.set_desired(
        &node_id,
        vec![sh(
            "a-1",
            "q=$(printf '%*s' 16000 '' | tr ' ' '\"'); i=0; while [ $i -lt 1000 ]; do echo \"$q\"; i=$((i+1)); done",
            RestartPolicy::Never,
        )],
    );
    sync_until(&mut agent, &cp, "every line", |s| s.logs.len() >= 1000);
    let s = cp.state();
    assert_eq!(s.logs.len(), 1000);
    let largest = *s.push_sizes.iter().max().expect("pushes");
    assert!(
        largest * 16_000 * 2 <= switchyard_agent::agent::MAX_LOG_BATCH_BYTES,
        "pushes of {:?} lines",
        s.push_sizes
    );
}

#[test]
fn output_the_control_plane_cannot_take_is_bounded_in_bytes_newest_kept() {
    let cp = MemoryControlPlane::new();
    let mut agent = agent_with(
        &cp,
        AgentConfig {
            max_buffered_bytes: 10_000,
            ..AgentConfig::default()
        },
    );
    agent.sync().expect("registers");
    let node_id = agent.node_id().expect("registered").to_string();
    cp.state().log_pushes_fail = true;
    // 2,000 lines of 100 bytes: 200 kB, twenty times the bound.
    cp.set_desired(
        &node_id,
        vec![sh(
            "loud",
            "i=0; while [ $i -lt 2000 ]; do printf '%099d\\n' $i; i=$((i+1)); done",
            RestartPolicy::Never,
        )],
    );
    let deadline = Instant::now() + TIMEOUT;
    while !matches!(state_of(&cp.state(), "loud"), Some(ProcessState::Exited(_))) {
        let _ = agent.sync();
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The exit is seen as the process ends; its pipe's reader may still be reading. Once the
    // reader is done, one more sync takes what it queued.
    while !agent.supervisor().output_finished() {
        let _ = agent.sync();
        assert!(Instant::now() < deadline, "timed out reading the output");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = agent.sync();
    // Lines of 99 bytes of text (the newline is not kept).
    assert!(
        agent.buffered_logs() <= 10_000 / 99,
        "{}",
        agent.buffered_logs()
    );
    assert_eq!(agent.dropped_logs() + agent.buffered_logs() as u64, 2000);
    cp.state().log_pushes_fail = false;
    agent.sync().expect("sync");
    let s = cp.state();
    let last = s.logs.last().expect("the newest lines are kept");
    assert_eq!(last.line, format!("{:099}", 1999));
}

/// With a state directory the output is in files: lines beyond the buffer wait there instead
/// of being dropped, and every one arrives, in order, once the control plane takes them.
#[test]
fn output_in_files_waits_in_them_and_none_is_lost() {
    let dir = std::env::temp_dir().join(format!("sy-agent-files-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cp = MemoryControlPlane::new();
    let mut agent = agent_on_state_dir(
        &cp,
        &dir,
        AgentConfig {
            max_buffered_logs: 100,
            ..AgentConfig::default()
        },
    );
    agent.sync().expect("registers");
    let node_id = agent.node_id().expect("registered").to_string();
    cp.state().log_pushes_fail = true;
    cp.set_desired(
        &node_id,
        vec![sh(
            "loud",
            "i=0; while [ $i -lt 2000 ]; do echo $i; i=$((i+1)); done; echo END >&2",
            RestartPolicy::Never,
        )],
    );
    let deadline = Instant::now() + TIMEOUT;
    while !matches!(state_of(&cp.state(), "loud"), Some(ProcessState::Exited(_))) {
        let _ = agent.sync();
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..5 {
        let _ = agent.sync();
    }
    assert!(agent.buffered_logs() <= 100, "{}", agent.buffered_logs());
    assert_eq!(agent.dropped_logs(), 0);
    cp.state().log_pushes_fail = false;
    sync_until(&mut agent, &cp, "every line", |s| s.logs.len() >= 2001);
    let s = cp.state();
    let stdout: Vec<String> = s
        .logs
        .iter()
        .filter(|l| l.stream == switchyard_agent::protocol::Stream::Stdout)
        .map(|l| l.line.clone())
        .collect();
    let expected: Vec<String> = (0..2000).map(|i| i.to_string()).collect();
    assert_eq!(stdout, expected);
    assert!(s.logs.iter().any(|l| l.line == "END"));
    drop(s);
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_registration_refused_for_good_ends_the_agent_with_the_reason() {
    let cp = MemoryControlPlane::new();
    cp.state().refuse_registration = Some(403);
    let mut agent = agent(&cp);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let err = agent.run(&stop).expect_err("a 403 is not retried forever");
    assert!(err.to_string().contains("403"), "{err}");

    // Refusals that may pass (the server is busy, 503) are retried until told to stop.
    cp.state().refuse_registration = Some(503);
    let mut agent = agent_with_fast_sync(&cp);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let runner = std::thread::spawn(move || agent.run(&flag));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!runner.is_finished(), "a 503 is retried");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    runner.join().expect("joins").expect("stopped, not refused");
}

fn agent_with_fast_sync(cp: &MemoryControlPlane) -> Agent<MemoryControlPlane> {
    agent_with(
        cp,
        AgentConfig {
            sync_interval: Duration::from_millis(20),
            poll_interval: Duration::from_millis(10),
            ..AgentConfig::default()
        },
    )
}

#[test]
fn a_stopping_agent_keeps_taking_output_so_last_words_neither_block_nor_vanish() {
    let cp = MemoryControlPlane::new();
    let mut agent = agent_with_fast_sync(&cp);
    agent.sync().expect("registers");
    let node_id = agent.node_id().expect("registered").to_string();
    // On SIGTERM it prints 20,000 lines (twice the reader queue) and exits 0.
    cp.set_desired(
        &node_id,
        vec![sh(
            "talker",
            "trap 'i=0; while [ $i -lt 20000 ]; do echo last-$i; i=$((i+1)); done; exit 0' TERM; \
             echo ready; while true; do sleep 0.05; done",
            RestartPolicy::Never,
        )],
    );
    sync_until(&mut agent, &cp, "the ready line", |s| {
        s.logs.iter().any(|l| l.line == "ready")
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = stop.clone();
    let runner = std::thread::spawn(move || agent.run(&flag));
    runner.join().expect("joins").expect("stops");
    let s = cp.state();
    match state_of(&s, "talker") {
        Some(ProcessState::Exited(e)) => assert_eq!(
            (e.code, e.signal),
            (Some(0), None),
            "it finished within its grace"
        ),
        other => panic!("{other:?}"),
    }
    let last: Vec<&str> = s
        .logs
        .iter()
        .filter(|l| l.line.starts_with("last-"))
        .map(|l| l.line.as_str())
        .collect();
    assert_eq!(last.len(), 20_000);
    assert_eq!(last.last(), Some(&"last-19999"));
}

/// A registered agent that hears nothing back for `orphan_after` stops its gang ranks (the
/// control plane has restarted the gang elsewhere by then; two writers of one checkpoint
/// directory would corrupt it), keeps its services' replicas, and reports the stop once the
/// control plane answers again.
#[test]
fn a_cut_off_agent_stops_its_gang_ranks_after_orphan_after() {
    let cp = MemoryControlPlane::new();
    let mut agent = agent_with(
        &cp,
        AgentConfig {
            orphan_after: Duration::from_millis(400),
            ..AgentConfig::default()
        },
    );
    agent.sync().expect("register");
    let node_id = agent.node_id().expect("registered").to_string();
    let mut replica = sh("replica", "echo up; exec sleep 300", RestartPolicy::Always);
    replica.accelerators = vec![1];
    cp.set_desired(
        &node_id,
        vec![
            sh("rank", "echo up; exec sleep 300", RestartPolicy::Never),
            replica,
        ],
    );
    sync_until(&mut agent, &cp, "both running", |s| {
        matches!(state_of(s, "rank"), Some(ProcessState::Running { .. }))
            && matches!(state_of(s, "replica"), Some(ProcessState::Running { .. }))
    });
    cp.state().down = true;
    // A short outage changes nothing.
    assert!(agent.sync().is_err());
    assert_eq!(agent.supervisor().live(), 2);
    std::thread::sleep(Duration::from_millis(500));
    let deadline = Instant::now() + TIMEOUT;
    while agent.supervisor().live() > 1 {
        assert!(agent.sync().is_err());
        assert!(Instant::now() < deadline, "the rank was not stopped");
        std::thread::sleep(Duration::from_millis(20));
    }
    cp.state().down = false;
    sync_until(&mut agent, &cp, "the stop reported", |s| {
        matches!(
            state_of(s, "rank"),
            Some(ProcessState::Exited(ExitInfo {
                stopped_by_agent: true,
                ..
            }))
        )
    });
    assert!(matches!(
        state_of(&cp.state(), "replica"),
        Some(ProcessState::Running { .. })
    ));
}

/// Starts a gang rank under an agent on `dir`, then leaves it running for the next agent there
/// and cuts the control plane off. Returns when the rank's last heartbeat got through.
fn leave_a_rank_and_cut_off(cp: &MemoryControlPlane, dir: &std::path::Path) -> Instant {
    let _ = std::fs::remove_dir_all(dir);
    let mut first = agent_on_state_dir(cp, dir, AgentConfig::default());
    first.sync().expect("register");
    let node_id = first.node_id().expect("registered").to_string();
    cp.set_desired(
        &node_id,
        vec![sh("rank", "echo up; exec sleep 300", RestartPolicy::Never)],
    );
    sync_until(&mut first, cp, "the rank running", |s| {
        matches!(state_of(s, "rank"), Some(ProcessState::Running { .. }))
    });
    first.sync().expect("a last heartbeat");
    // After the sync, not before: the heartbeat it recorded is no later than this, so the
    // caller's wait from here covers the orphan deadline however slow the sync was.
    let last_heartbeat = Instant::now();
    first.detach();
    cp.state().down = true;
    last_heartbeat
}

/// An agent restarted while the control plane cannot be reached, whose predecessor left no
/// record of its last heartbeat (an older release), counts its orphan deadline from its own
/// start: the gang ranks it adopted are stopped too, not left running for ever.
#[test]
fn a_restarted_agent_that_is_cut_off_stops_the_ranks_it_adopted() {
    let dir = std::env::temp_dir().join(format!("sy-agent-orphan-{}", std::process::id()));
    let cp = MemoryControlPlane::new();
    leave_a_rank_and_cut_off(&cp, &dir);
    std::fs::remove_file(dir.join("heartbeat.json")).expect("the first agent's heartbeat record");
    let mut second = agent_on_state_dir(
        &cp,
        &dir,
        AgentConfig {
            orphan_after: Duration::from_millis(400),
            ..AgentConfig::default()
        },
    );
    assert!(second.sync().is_err());
    assert_eq!(second.supervisor().live(), 1, "adopted, still running");
    std::thread::sleep(Duration::from_millis(500));
    let deadline = Instant::now() + TIMEOUT;
    while second.supervisor().live() > 0 {
        assert!(second.sync().is_err());
        assert!(
            Instant::now() < deadline,
            "the adopted rank was not stopped"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(second);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An agent restarted while cut off times the orphan deadline of the ranks it adopted from the
/// last heartbeat its predecessor got through (the server's last word from this node, from
/// which it times its hold of the gang's next attempt), not from its own start: a crash and
/// restart cannot keep a rank running past the hold, beside the next attempt.
#[test]
fn a_restarted_agent_times_orphans_from_its_predecessors_last_heartbeat() {
    let dir = std::env::temp_dir().join(format!("sy-agent-orphan-from-{}", std::process::id()));
    let cp = MemoryControlPlane::new();
    let orphan_after = Duration::from_secs(2);
    let last_heartbeat = leave_a_rank_and_cut_off(&cp, &dir);
    // (The heartbeat was recorded no later than `last_heartbeat`, and its time is kept in
    // whole milliseconds: a little to spare.)
    std::thread::sleep(
        (orphan_after + Duration::from_millis(200)).saturating_sub(last_heartbeat.elapsed()),
    );
    let mut second = agent_on_state_dir(
        &cp,
        &dir,
        AgentConfig {
            orphan_after,
            ..AgentConfig::default()
        },
    );
    assert!(second.sync().is_err());
    let rank = second
        .supervisor()
        .observed()
        .into_iter()
        .find(|o| o.assignment.id == "rank")
        .expect("the rank adopted");
    assert_ne!(
        rank.phase,
        Phase::Running,
        "{orphan_after:?} have passed since the last heartbeat got through, so the rank is \
         stopped at the first pass"
    );
    let deadline = Instant::now() + TIMEOUT;
    while second.supervisor().live() > 0 {
        assert!(Instant::now() < deadline, "the adopted rank did not stop");
        second.poll();
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(second);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The in-memory control plane, whose calls hang like those of a network that drops every
/// packet once `hang` is set: each gives up at its deadline ([`ControlPlane::give_up_by`], at
/// least [`MIN_REQUEST_TIME`]) or else after the agent's 30 s request timeout.
#[derive(Clone)]
struct HangingControlPlane {
    inner: MemoryControlPlane,
    hang: Arc<AtomicBool>,
    give_up_by: Arc<Mutex<Option<Instant>>>,
}

impl HangingControlPlane {
    fn call<T>(
        &self,
        f: impl FnOnce() -> Result<T, ControlPlaneError>,
    ) -> Result<T, ControlPlaneError> {
        if !self.hang.load(Ordering::Relaxed) {
            return f();
        }
        let limit = match *self.give_up_by.lock().expect("lock") {
            Some(deadline) => deadline
                .saturating_duration_since(Instant::now())
                .clamp(MIN_REQUEST_TIME, Duration::from_secs(30)),
            None => Duration::from_secs(30),
        };
        let gives_up = Instant::now() + limit;
        // (Until the test lets the network recover.)
        while Instant::now() < gives_up && self.hang.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(ControlPlaneError::Unreachable("timed out".into()))
    }
}

impl ControlPlane for HangingControlPlane {
    fn register(&self, node: &NodeInfo) -> Result<Registration, ControlPlaneError> {
        self.call(|| self.inner.register(node))
    }
    fn heartbeat(&self, node_id: &str) -> Result<(), ControlPlaneError> {
        self.call(|| self.inner.heartbeat(node_id))
    }
    fn fetch_assignments(&self, node_id: &str) -> Result<AssignmentList, ControlPlaneError> {
        self.call(|| self.inner.fetch_assignments(node_id))
    }
    fn report_status(&self, node_id: &str, s: &[ProcessStatus]) -> Result<(), ControlPlaneError> {
        self.call(|| self.inner.report_status(node_id, s))
    }
    fn push_logs(&self, node_id: &str, lines: &[LogLine]) -> Result<(), ControlPlaneError> {
        self.call(|| self.inner.push_logs(node_id, lines))
    }
    fn give_up_by(&self, deadline: Option<Instant>) {
        *self.give_up_by.lock().expect("lock") = deadline;
    }
}

/// An agent over a [`HangingControlPlane`] (answering for now) running one gang rank that
/// ignores SIGTERM (only the SIGKILL after `grace_ms` ends it), in `dir`: the agent, its node
/// id, and the rank's pid.
fn an_agent_with_a_rank_that_ignores_sigterm(
    cp: &HangingControlPlane,
    config: AgentConfig,
    dir: &std::path::Path,
    grace_ms: u64,
) -> (Agent<HangingControlPlane>, String, i32) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("a temporary directory");
    let mut agent = Agent::new(cp.clone(), discover(&DiscoverOptions::default()), config);
    agent.sync().expect("register");
    let node_id = agent.node_id().expect("registered").to_string();
    let mut rank = sh(
        "rank",
        &format!(
            "trap '' TERM; echo $$ > {}/pid; while :; do sleep 0.05; done",
            dir.display()
        ),
        RestartPolicy::Never,
    );
    rank.stop_grace_ms = grace_ms;
    cp.inner.set_desired(&node_id, vec![rank]);
    let pid_file = dir.join("pid");
    let deadline = Instant::now() + TIMEOUT;
    while !pid_file.exists() {
        assert!(Instant::now() < deadline, "the rank did not start");
        agent.sync().expect("sync");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = std::fs::read_to_string(&pid_file)
        .expect("the rank's pid")
        .trim()
        .parse()
        .expect("a pid");
    (agent, node_id, pid)
}

/// Makes every call of `cp` hang from now on, runs `agent` in the background, waits for `pid`
/// to be gone and returns how long that took; then lets the network recover, after
/// `while_hanging` (given the control plane) has looked at it, and stops the agent.
fn hang_and_wait_for_the_end_of(
    cp: &HangingControlPlane,
    mut agent: Agent<HangingControlPlane>,
    pid: i32,
    while_hanging: impl FnOnce(&HangingControlPlane),
) -> Duration {
    let since = Instant::now();
    cp.hang.store(true, Ordering::Relaxed);
    let stop = Arc::new(AtomicBool::new(false));
    let running = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            agent.run(&stop).expect("the agent runs on");
        })
    };
    while std::path::Path::new(&format!("/proc/{pid}")).exists() && since.elapsed() < TIMEOUT {
        std::thread::sleep(Duration::from_millis(20));
    }
    let gone_after = since.elapsed();
    while_hanging(cp);
    cp.hang.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    running.join().expect("the agent's thread");
    gone_after
}

fn hanging_control_plane() -> HangingControlPlane {
    HangingControlPlane {
        inner: MemoryControlPlane::new(),
        hang: Arc::new(AtomicBool::new(false)),
        give_up_by: Arc::new(Mutex::new(None)),
    }
}

/// A call that hangs holds neither the agent's stop of its orphaned ranks nor the SIGKILL after
/// their grace for the request timeout: calls give up by the orphan deadline, and the deadline
/// is checked between syncs too. So the ranks are gone within what the agent reports as its
/// `orphan_stop_ms` plus their grace, which is how long the server holds a gang cut off whole.
#[test]
fn a_hanging_control_plane_does_not_delay_stopping_orphaned_ranks() {
    let dir = std::env::temp_dir().join(format!("sy-agent-hang-{}", std::process::id()));
    let cp = hanging_control_plane();
    let config = AgentConfig {
        orphan_after: Duration::from_secs(1),
        ..AgentConfig::default()
    };
    let bound = config.orphan_stop_after() + Duration::from_millis(500);
    let (mut agent, _, pid) = an_agent_with_a_rank_that_ignores_sigterm(&cp, config, &dir, 500);
    // A heartbeat gets through just now; from here on every call hangs.
    agent.sync().expect("a last heartbeat");
    let gone_after = hang_and_wait_for_the_end_of(&cp, agent, pid, |cp| {
        // Once the ranks are gone (or sent their SIGKILL), calls get their full time again: a
        // slow control plane is not out of reach for good.
        let released = Instant::now() + Duration::from_secs(10);
        while cp.give_up_by.lock().expect("lock").is_some() {
            assert!(
                Instant::now() < released,
                "calls are still cut short after the orphaned rank is gone"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    assert!(
        gone_after <= bound + Duration::from_secs(2),
        "the orphaned rank was killed {gone_after:?} after the cut, not within {bound:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A call that hangs does not hold the SIGKILL of a process whose stop grace has ended for the
/// request timeout: calls give up by the SIGKILL's moment too.
#[test]
fn a_hanging_control_plane_does_not_delay_a_sigkill() {
    let dir = std::env::temp_dir().join(format!("sy-agent-hang-kill-{}", std::process::id()));
    let cp = hanging_control_plane();
    let grace = Duration::from_secs(1);
    let (mut agent, node_id, pid) = an_agent_with_a_rank_that_ignores_sigterm(
        &cp,
        AgentConfig::default(),
        &dir,
        grace.as_millis() as u64,
    );
    // No longer wanted: this sync stops it (SIGTERM); then every call hangs.
    cp.inner.set_desired(&node_id, Vec::new());
    agent.sync().expect("the stop");
    let gone_after = hang_and_wait_for_the_end_of(&cp, agent, pid, |_| {});
    let bound = grace + MIN_REQUEST_TIME + Duration::from_secs(2);
    assert!(
        gone_after <= bound,
        "the rank was killed {gone_after:?} after its stop, not within {bound:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
