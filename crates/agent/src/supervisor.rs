//! Runs assignments as processes: each in its own process group, with the launcher environment,
//! output captured line by line, stopped with SIGTERM to the group and SIGKILL after a grace
//! period, exit codes kept until reported.
//!
//! The supervisor does only what it is told ([`Supervisor::start`], [`Supervisor::stop`]) and
//! reports what it sees ([`Supervisor::poll`], [`Supervisor::observed`]); deciding is
//! [`crate::reconcile`]'s job.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::protocol::{Assignment, ExitInfo, LogLine, ProcessState, ProcessStatus, Stream};
use crate::reconcile::{Observed, Phase};

/// Longest log line kept; longer output is split into lines of this size.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The environment a distributed training launcher provides, on top of the assignment's own
/// variables (the launcher's win).
pub fn launch_env(a: &Assignment) -> BTreeMap<String, String> {
    let mut env = a.env.clone();
    let mut set = |k: &str, v: String| {
        env.insert(k.to_string(), v);
    };
    set("RANK", a.rank.to_string());
    set("WORLD_SIZE", a.world_size.to_string());
    set("LOCAL_RANK", a.local_rank.to_string());
    set("MASTER_ADDR", a.master_addr.clone());
    set("MASTER_PORT", a.master_port.to_string());
    let devices = a
        .accelerators
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    set("CUDA_VISIBLE_DEVICES", devices);
    set("SWITCHYARD_JOB_ID", a.job_id.clone());
    set("SWITCHYARD_ATTEMPT", a.attempt.to_string());
    set("SWITCHYARD_ASSIGNMENT_ID", a.id.clone());
    if let Some(dir) = &a.checkpoint_dir {
        set("SWITCHYARD_CHECKPOINT_DIR", dir.clone());
    }
    env
}

#[derive(Debug)]
struct Managed {
    assignment: Assignment,
    child: Option<Child>,
    state: ProcessState,
    stop_deadline: Option<Instant>,
    exited_at_ms: u64,
    restarts: u32,
    reported: bool,
}

/// The processes of this node's assignments.
#[derive(Debug)]
pub struct Supervisor {
    procs: BTreeMap<String, Managed>,
    log_tx: Sender<LogLine>,
    log_rx: Receiver<LogLine>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Self::new()
    }
}

fn signal_group(pid: u32, sig: Signal) {
    let Ok(raw) = i32::try_from(pid) else {
        return;
    };
    match killpg(Pid::from_raw(raw), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => tracing::warn!("sending {sig} to process group {pid}: {e}"),
    }
}

fn pump(source: impl Read + Send + 'static, id: String, stream: Stream, tx: Sender<LogLine>) {
    let spawned = std::thread::Builder::new()
        .name(format!("agent-log-{id}"))
        .spawn(move || {
            let mut reader = BufReader::new(source);
            let mut buf = Vec::new();
            let mut seq = 0;
            loop {
                buf.clear();
                match reader
                    .by_ref()
                    .take(MAX_LINE_BYTES as u64)
                    .read_until(b'\n', &mut buf)
                {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                while matches!(buf.last(), Some(b'\n' | b'\r')) {
                    buf.pop();
                }
                let line = LogLine {
                    assignment_id: id.clone(),
                    stream,
                    seq,
                    at_ms: now_ms(),
                    line: String::from_utf8_lossy(&buf).into_owned(),
                };
                seq += 1;
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start a log reader thread: {e}; output of this process is lost");
    }
}

impl Supervisor {
    /// An empty supervisor.
    pub fn new() -> Self {
        let (log_tx, log_rx) = channel();
        Self {
            procs: BTreeMap::new(),
            log_tx,
            log_rx,
        }
    }

    /// Starts `a` in a new process group. A program that cannot be started is recorded as
    /// [`ProcessState::FailedToStart`] (and reported like an exit), not returned as an error.
    /// Replaces an exited record with the same id; refuses (returns false) if one is live.
    pub fn start(&mut self, a: &Assignment, restart: bool) -> bool {
        let restarts = match self.procs.get(&a.id) {
            Some(m) if m.child.is_some() => {
                tracing::warn!("not starting {}: a copy is still running", a.id);
                return false;
            }
            Some(m) => m.restarts + u32::from(restart),
            None => 0,
        };
        let mut managed = Managed {
            assignment: a.clone(),
            child: None,
            state: ProcessState::FailedToStart {
                error: String::new(),
            },
            stop_deadline: None,
            exited_at_ms: 0,
            restarts,
            reported: false,
        };
        match self.spawn(a) {
            Ok(child) => {
                let pid = child.id();
                tracing::info!(id = %a.id, pid, "started");
                managed.state = ProcessState::Running { pid };
                managed.child = Some(child);
            }
            Err(error) => {
                tracing::warn!(id = %a.id, "failed to start: {error}");
                managed.state = ProcessState::FailedToStart { error };
                managed.exited_at_ms = now_ms();
            }
        }
        self.procs.insert(a.id.clone(), managed);
        true
    }

    fn spawn(&self, a: &Assignment) -> Result<Child, String> {
        let (program, args) = a
            .command
            .split_first()
            .ok_or_else(|| "empty command".to_string())?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .envs(launch_env(a))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = &a.working_dir {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().map_err(|e| format!("{program}: {e}"))?;
        if let Some(out) = child.stdout.take() {
            pump(out, a.id.clone(), Stream::Stdout, self.log_tx.clone());
        }
        if let Some(err) = child.stderr.take() {
            pump(err, a.id.clone(), Stream::Stderr, self.log_tx.clone());
        }
        Ok(child)
    }

    /// Asks `id` to stop within its assignment's `stop_grace_ms`; see
    /// [`Supervisor::stop_within`].
    pub fn stop(&mut self, id: &str) {
        if let Some(m) = self.procs.get(id) {
            let grace = Duration::from_millis(m.assignment.stop_grace_ms);
            self.stop_within(id, grace);
        }
    }

    /// Asks `id` to stop: SIGTERM to its process group now, SIGKILL once `grace` has passed
    /// (on a later [`Supervisor::poll`]). No-op unless it is running.
    pub fn stop_within(&mut self, id: &str, grace: Duration) {
        let Some(m) = self.procs.get_mut(id) else {
            return;
        };
        if let ProcessState::Running { pid } = m.state {
            tracing::info!(id, pid, "stopping (SIGTERM to the process group)");
            signal_group(pid, Signal::SIGTERM);
            m.state = ProcessState::Stopping { pid };
            m.stop_deadline = Some(Instant::now() + grace);
        }
    }

    /// Reaps exited processes (and kills whatever is left of their groups), escalates stops
    /// whose grace period has passed. Returns the ids that exited in this call, with how.
    pub fn poll(&mut self) -> Vec<(String, ExitInfo)> {
        let mut exited = Vec::new();
        let now = Instant::now();
        for (id, m) in &mut self.procs {
            let Some(child) = m.child.as_mut() else {
                continue;
            };
            let pid = child.id();
            match child.try_wait() {
                Ok(Some(status)) => {
                    // The leader is gone; stragglers in its group go too.
                    signal_group(pid, Signal::SIGKILL);
                    let info = ExitInfo {
                        code: status.code(),
                        signal: status.signal(),
                        stopped_by_agent: matches!(m.state, ProcessState::Stopping { .. }),
                    };
                    tracing::info!(id, pid, ?info, "exited");
                    m.state = ProcessState::Exited(info.clone());
                    m.child = None;
                    m.exited_at_ms = now_ms();
                    m.stop_deadline = None;
                    exited.push((id.clone(), info));
                }
                Ok(None) => {
                    if m.stop_deadline.is_some_and(|d| now >= d) {
                        tracing::warn!(id, pid, "grace period over: SIGKILL to the process group");
                        signal_group(pid, Signal::SIGKILL);
                        m.stop_deadline = None;
                    }
                }
                Err(e) => tracing::warn!(id, pid, "cannot check process: {e}"),
            }
        }
        exited
    }

    /// What runs, for [`crate::reconcile::reconcile`].
    pub fn observed(&self) -> Vec<Observed> {
        self.procs
            .values()
            .map(|m| Observed {
                assignment: m.assignment.clone(),
                phase: match &m.state {
                    ProcessState::Running { .. } => Phase::Running,
                    ProcessState::Stopping { .. } => Phase::Stopping,
                    ProcessState::Exited(info) => Phase::Exited {
                        success: info.success(),
                        at_ms: m.exited_at_ms,
                        reported: m.reported,
                    },
                    ProcessState::FailedToStart { .. } => Phase::Exited {
                        success: false,
                        at_ms: m.exited_at_ms,
                        reported: m.reported,
                    },
                },
                restarts: m.restarts,
            })
            .collect()
    }

    /// The state of every assignment, for the control plane.
    pub fn statuses(&self) -> Vec<ProcessStatus> {
        self.procs
            .iter()
            .map(|(id, m)| ProcessStatus {
                assignment_id: id.clone(),
                state: m.state.clone(),
                restarts: m.restarts,
            })
            .collect()
    }

    /// Records that the control plane has received these statuses: the exits among them may now
    /// be forgotten.
    pub fn mark_reported(&mut self, sent: &[ProcessStatus]) {
        for s in sent {
            if let Some(m) = self.procs.get_mut(&s.assignment_id) {
                if m.state == s.state
                    && matches!(
                        m.state,
                        ProcessState::Exited(_) | ProcessState::FailedToStart { .. }
                    )
                {
                    m.reported = true;
                }
            }
        }
    }

    /// Drops the record of an exited process. No-op for a live one.
    pub fn forget(&mut self, id: &str) {
        if self.procs.get(id).is_some_and(|m| m.child.is_none()) {
            self.procs.remove(id);
        }
    }

    /// Log lines read since the last call, in the order read.
    pub fn drain_logs(&self) -> Vec<LogLine> {
        self.log_rx.try_iter().collect()
    }

    /// Number of live processes.
    pub fn live(&self) -> usize {
        self.procs.values().filter(|m| m.child.is_some()).count()
    }

    /// Stops everything, waits up to `grace` for it to go, then kills what is left.
    pub fn shutdown(&mut self, grace: Duration) {
        let ids: Vec<String> = self.procs.keys().cloned().collect();
        for id in &ids {
            self.stop_within(id, grace);
        }
        let deadline = Instant::now() + grace;
        while self.live() > 0 && Instant::now() < deadline {
            self.poll();
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill_all();
    }

    fn kill_all(&mut self) {
        for m in self.procs.values_mut() {
            if let Some(mut child) = m.child.take() {
                signal_group(child.id(), Signal::SIGKILL);
                let _ = child.kill();
                if let Ok(status) = child.wait() {
                    m.state = ProcessState::Exited(ExitInfo {
                        code: status.code(),
                        signal: status.signal(),
                        stopped_by_agent: true,
                    });
                }
            }
        }
    }
}

impl Drop for Supervisor {
    /// Nothing outlives the supervisor: every process group still running is killed.
    fn drop(&mut self) {
        self.kill_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::RestartPolicy;

    fn sh(id: &str, script: &str) -> Assignment {
        Assignment {
            id: id.into(),
            job_id: "job-9".into(),
            attempt: 3,
            rank: 2,
            world_size: 4,
            local_rank: 1,
            master_addr: "10.1.2.3".into(),
            master_port: 29501,
            command: vec!["sh".into(), "-c".into(), script.into()],
            env: BTreeMap::from([
                ("RANK".into(), "spoofed".into()),
                ("MINE".into(), "x".into()),
            ]),
            accelerators: vec![2, 3],
            checkpoint_dir: Some("/ckpt/job-9".into()),
            working_dir: None,
            restart: RestartPolicy::Never,
            stop_grace_ms: 1000,
        }
    }

    fn wait_exit(s: &mut Supervisor, id: &str) -> ExitInfo {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            s.poll();
            if let Some(st) = s.statuses().into_iter().find(|st| st.assignment_id == id) {
                if let ProcessState::Exited(info) = st.state {
                    return info;
                }
            }
            assert!(Instant::now() < deadline, "{id} did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn logs_until(s: &Supervisor, want: usize) -> Vec<LogLine> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut all = Vec::new();
        while all.len() < want && Instant::now() < deadline {
            all.extend(s.drain_logs());
            std::thread::sleep(Duration::from_millis(10));
        }
        all
    }

    #[test]
    fn launcher_environment() {
        let env = launch_env(&sh("a", "true"));
        assert_eq!(env["RANK"], "2");
        assert_eq!(env["WORLD_SIZE"], "4");
        assert_eq!(env["LOCAL_RANK"], "1");
        assert_eq!(env["MASTER_ADDR"], "10.1.2.3");
        assert_eq!(env["MASTER_PORT"], "29501");
        assert_eq!(env["CUDA_VISIBLE_DEVICES"], "2,3");
        assert_eq!(env["SWITCHYARD_JOB_ID"], "job-9");
        assert_eq!(env["SWITCHYARD_ATTEMPT"], "3");
        assert_eq!(env["SWITCHYARD_CHECKPOINT_DIR"], "/ckpt/job-9");
        assert_eq!(env["MINE"], "x");
    }

    #[test]
    fn runs_with_the_environment_and_captures_both_streams() {
        let mut s = Supervisor::new();
        let a = sh(
            "echo",
            "echo rank=$RANK world=$WORLD_SIZE devices=$CUDA_VISIBLE_DEVICES; echo oops >&2; exit 3",
        );
        assert!(s.start(&a, false));
        let info = wait_exit(&mut s, "echo");
        assert_eq!(info.code, Some(3));
        assert!(!info.stopped_by_agent);
        let logs = logs_until(&s, 2);
        let out: Vec<_> = logs.iter().filter(|l| l.stream == Stream::Stdout).collect();
        let err: Vec<_> = logs.iter().filter(|l| l.stream == Stream::Stderr).collect();
        assert_eq!(out.len(), 1, "{logs:?}");
        assert_eq!(out[0].line, "rank=2 world=4 devices=2,3");
        assert_eq!(err[0].line, "oops");
        assert_eq!(out[0].seq, 0);
    }

    #[test]
    fn stop_terms_the_whole_group() {
        let mut s = Supervisor::new();
        // A child process in the same group must go too.
        let a = sh("tree", "sleep 300 & echo child=$!; wait");
        s.start(&a, false);
        let logs = logs_until(&s, 1);
        let child: i32 = logs[0]
            .line
            .strip_prefix("child=")
            .and_then(|p| p.parse().ok())
            .expect("child pid line");
        s.stop_within("tree", Duration::from_secs(30));
        let info = wait_exit(&mut s, "tree");
        assert!(info.stopped_by_agent);
        assert_eq!(info.signal, Some(15), "{info:?}");
        // The grandchild got the group's SIGTERM (or the clean-up SIGKILL): gone soon.
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::path::Path::new(&format!("/proc/{child}")).exists()
            && std::fs::read_to_string(format!("/proc/{child}/stat"))
                .map(|st| !st.contains(") Z "))
                .unwrap_or(false)
        {
            assert!(Instant::now() < deadline, "grandchild {child} survived");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_process_ignoring_sigterm_is_killed_after_the_grace_period() {
        let mut s = Supervisor::new();
        let a = sh(
            "stubborn",
            "trap '' TERM; echo ready; while true; do sleep 1; done",
        );
        s.start(&a, false);
        logs_until(&s, 1);
        let t0 = Instant::now();
        s.stop_within("stubborn", Duration::from_millis(300));
        let info = wait_exit(&mut s, "stubborn");
        assert_eq!(info.signal, Some(9), "{info:?}");
        assert!(t0.elapsed() >= Duration::from_millis(300));
        assert!(info.stopped_by_agent);
    }

    #[test]
    fn a_missing_program_is_a_failed_start_not_a_panic() {
        let mut s = Supervisor::new();
        let mut a = sh("missing", "");
        a.command = vec!["/nonexistent/program".into()];
        assert!(s.start(&a, false));
        let st = &s.statuses()[0];
        assert!(
            matches!(st.state, ProcessState::FailedToStart { .. }),
            "{st:?}"
        );
        assert!(matches!(
            s.observed()[0].phase,
            Phase::Exited { success: false, .. }
        ));
        let empty = Assignment {
            command: vec![],
            id: "empty".into(),
            ..a
        };
        s.start(&empty, false);
        assert_eq!(s.live(), 0);
    }

    #[test]
    fn exits_are_kept_until_reported_and_forgotten() {
        let mut s = Supervisor::new();
        s.start(&sh("quick", "exit 0"), false);
        wait_exit(&mut s, "quick");
        assert!(matches!(
            s.observed()[0].phase,
            Phase::Exited {
                reported: false,
                success: true,
                ..
            }
        ));
        let statuses = s.statuses();
        s.mark_reported(&statuses);
        assert!(matches!(
            s.observed()[0].phase,
            Phase::Exited { reported: true, .. }
        ));
        s.forget("quick");
        assert!(s.statuses().is_empty());
    }

    #[test]
    fn a_live_copy_is_never_started_twice_and_drop_kills_everything() {
        let mut s = Supervisor::new();
        let a = sh("long", "echo up; sleep 300");
        assert!(s.start(&a, false));
        assert!(!s.start(&a, false));
        logs_until(&s, 1);
        let pid = match s.statuses()[0].state {
            ProcessState::Running { pid } => pid,
            ref other => panic!("{other:?}"),
        };
        drop(s);
        // Reaped by drop: the pid is gone or at least not our sleeping shell.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(!stat.contains("(sh) S"), "{stat}");
    }
}
