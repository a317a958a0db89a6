//! The agent loop: register, then over and over: heartbeat, fetch the desired assignments,
//! reconcile them with what runs, report statuses, push logs.
//!
//! [`Agent::sync`] is one pass and is what tests drive; [`Agent::run`] repeats it on a timer
//! until told to stop. If the control plane cannot be reached the agent keeps running what it
//! runs (it never reconciles against a state it could not read) and buffers logs up to a bound.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::control::{ControlPlane, ControlPlaneError, MIN_REQUEST_TIME};
use crate::protocol::NodeInfo;
use crate::reconcile::{Action, reconcile_keeping};
use crate::supervisor::{Supervisor, now_ms};

/// Tunables of the loop.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Time between syncs until the control plane says otherwise at registration.
    pub sync_interval: Duration,
    /// Time between checks of the processes (reaping, SIGKILL after grace).
    pub poll_interval: Duration,
    /// Log lines kept while the control plane is unreachable (or slower than the output).
    /// Output through pipes drops older ones beyond it; output in files (a state directory)
    /// waits in the files instead.
    pub max_buffered_logs: usize,
    /// The same bound in bytes of text.
    pub max_buffered_bytes: usize,
    /// Lines per push.
    pub log_batch: usize,
    /// Grace period for processes when the agent itself shuts down.
    pub shutdown_grace: Duration,
    /// How long a registered agent keeps its gang ranks running without a heartbeat the
    /// control plane answered. By then the control plane has declared the node lost (after a
    /// few missed heartbeats) and restarted the gang elsewhere from the same checkpoint
    /// directory; a rank still running here would be a second writer. Replicas of services
    /// keep running.
    pub orphan_after: Duration,
}

impl AgentConfig {
    /// At most how long after sending its last answered heartbeat a cut-off agent has asked
    /// its gang ranks to stop and is ready to kill them after their grace: `orphan_after`,
    /// plus a call cut short at that deadline ([`MIN_REQUEST_TIME`]) before the stop, and one
    /// more before the SIGKILL. Agents report it as [`NodeInfo::orphan_stop_ms`].
    pub fn orphan_stop_after(&self) -> Duration {
        self.orphan_after.saturating_add(2 * MIN_REQUEST_TIME)
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            sync_interval: Duration::from_secs(2),
            poll_interval: Duration::from_millis(100),
            max_buffered_logs: 100_000,
            max_buffered_bytes: 256 << 20,
            log_batch: 1000,
            shutdown_grace: Duration::from_secs(10),
            orphan_after: Duration::from_secs(60),
        }
    }
}

/// Largest JSON size of one push of output lines: half the server's 16 MiB limit on agent
/// bodies, so escaping and framing never push a batch over it.
pub const MAX_LOG_BATCH_BYTES: usize = 8 << 20;

/// Failed pushes of the same batch after which it is halved.
const PUSHES_BEFORE_HALVING: u32 = 3;

/// How long a stopping agent waits for the output of its processes to be read, and then to be
/// pushed.
const SHUTDOWN_OUTPUT_WAIT: Duration = Duration::from_secs(5);

/// Heartbeat intervals below which `--orphan-after` is warned about at registration: the
/// server's default `--lost-after`.
const ORPHAN_HEARTBEATS: u32 = 3;

/// An upper bound on the bytes `line` takes in a batch's JSON: quotes and backslashes escape
/// to two bytes, other control characters to up to six, plus the fields around the text.
fn json_size(line: &crate::protocol::LogLine) -> usize {
    const FIELDS: usize = 160;
    let text: usize = line
        .line
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum();
    FIELDS + line.assignment_id.len() + text
}

/// `t + d`, or a moment as good as never when that is past what the clock holds.
fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(t)
}

/// What one [`Agent::sync`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Reconciliation actions applied.
    pub actions: Vec<Action>,
    /// Statuses reported.
    pub statuses: usize,
    /// Log lines pushed.
    pub logs_pushed: usize,
}

/// A node agent over some [`ControlPlane`].
#[derive(Debug)]
pub struct Agent<C: ControlPlane> {
    control: C,
    node: NodeInfo,
    node_id: Option<String>,
    supervisor: Supervisor,
    config: AgentConfig,
    logs: VecDeque<crate::protocol::LogLine>,
    /// Bytes of text in `logs`.
    buffered_bytes: usize,
    dropped_logs: u64,
    /// When dropped lines were last warned about.
    last_drop_warning: Option<Instant>,
    refused_logs: u64,
    /// Lines per push now: `log_batch`, halved while pushes fail.
    batch_lines: usize,
    push_failures: u32,
    /// Whether the last pass's heartbeat got through.
    heartbeat_ok: bool,
    /// Whether the control plane ever registered this agent.
    registered_once: bool,
    /// When the gang ranks are orphans unless a heartbeat gets through first: `orphan_after`
    /// after the last heartbeat that got through was sent. Before this agent has one, that of
    /// the previous agent on its state directory counts (its ranks are adopted, and the server
    /// has not heard from this node since), or else this agent's start.
    orphans_at: Instant,
    /// Whether, since `orphans_at` passed, every gang rank has gone or been sent its SIGKILL.
    orphans_gone: bool,
    /// Once the orphaned ranks are asked to stop: by when their SIGKILL has been sent.
    orphans_killed_by: Option<Instant>,
}

impl<C: ControlPlane> Agent<C> {
    /// An agent for `node` (see [`crate::hardware::discover`]); registers on the first sync.
    /// Its processes die with it; see [`Agent::with_supervisor`] for one that survives restarts.
    pub fn new(control: C, node: NodeInfo, config: AgentConfig) -> Self {
        Self::with_supervisor(control, node, config, Supervisor::new())
    }

    /// An agent over a given supervisor, e.g. [`Supervisor::with_state_dir`], which adopts
    /// the processes a previous agent on this node left running.
    pub fn with_supervisor(
        control: C,
        node: NodeInfo,
        config: AgentConfig,
        supervisor: Supervisor,
    ) -> Self {
        let since_last_heartbeat = supervisor
            .last_answered_heartbeat_ms()
            .map(|sent| Duration::from_millis(now_ms().saturating_sub(sent)))
            .unwrap_or_default();
        let orphans_at = later(
            Instant::now(),
            config.orphan_after.saturating_sub(since_last_heartbeat),
        );
        Self {
            control,
            node,
            node_id: None,
            orphans_at,
            orphans_gone: false,
            orphans_killed_by: None,
            supervisor,
            batch_lines: config.log_batch.max(1),
            config,
            logs: VecDeque::new(),
            buffered_bytes: 0,
            dropped_logs: 0,
            last_drop_warning: None,
            refused_logs: 0,
            push_failures: 0,
            heartbeat_ok: false,
            registered_once: false,
        }
    }

    /// The node id, once registered.
    pub fn node_id(&self) -> Option<&str> {
        self.node_id.as_deref()
    }

    /// The processes.
    pub fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }

    /// Ends this agent but leaves its processes running, for the next agent on the same state
    /// directory to adopt (an upgrade or restart in place).
    pub fn detach(self) {
        self.supervisor.detach();
    }

    /// Log lines dropped because the buffer was full (the control plane away, or slower than
    /// the output).
    pub fn dropped_logs(&self) -> u64 {
        self.dropped_logs
    }

    /// Reaps and escalates (cheap; call often).
    pub fn poll(&mut self) {
        self.supervisor.poll();
        self.buffer_logs();
    }

    fn buffer_logs(&mut self) {
        let max_lines = self.config.max_buffered_logs.max(1);
        if self.supervisor.output_in_files() {
            // The files keep what is not read yet: take lines only while the buffer has
            // room, and the readers wait (the queue fills) until pushes make more.
            while self.logs.len() < max_lines
                && (self.buffered_bytes < self.config.max_buffered_bytes || self.logs.is_empty())
            {
                let Some(line) = self.supervisor.next_log() else {
                    break;
                };
                self.buffered_bytes += line.line.len();
                self.logs.push_back(line);
            }
            return;
        }
        // Pipes: a process that cannot write waits, so while the control plane is away the
        // oldest lines make room.
        let dropped_before = self.dropped_logs;
        for line in self.supervisor.drain_logs() {
            self.buffered_bytes += line.line.len();
            self.logs.push_back(line);
            while self.logs.len() > max_lines
                || (self.buffered_bytes > self.config.max_buffered_bytes && self.logs.len() > 1)
            {
                let Some(old) = self.logs.pop_front() else {
                    break;
                };
                self.buffered_bytes -= old.line.len();
                self.dropped_logs += 1;
            }
        }
        if self.dropped_logs > dropped_before
            && self
                .last_drop_warning
                .is_none_or(|at| at.elapsed() >= Duration::from_secs(10))
        {
            self.last_drop_warning = Some(Instant::now());
            tracing::warn!(
                dropped = self.dropped_logs,
                buffered = self.logs.len(),
                "output lines dropped, oldest first: the buffer is full (the control plane is \
                 away or slower than the output); --state-dir keeps output in files instead"
            );
        }
    }

    /// Removes the first `n` buffered lines.
    fn take_logs(&mut self, n: usize) {
        for old in self.logs.drain(..n.min(self.logs.len())) {
            self.buffered_bytes -= old.line.len();
        }
    }

    fn registered(&mut self) -> Result<String, ControlPlaneError> {
        if let Some(id) = &self.node_id {
            return Ok(id.clone());
        }
        let reg = self.control.register(&self.node)?;
        tracing::info!(node_id = %reg.node_id, "registered");
        if reg.heartbeat_interval_ms > 0 {
            self.config.sync_interval = reg.heartbeat_interval();
            // The server declares a node lost after `--lost-after` (3 by default) missed
            // heartbeats: ranks orphaned sooner stop on a blip the server would ride out.
            let floor = self.config.sync_interval.saturating_mul(ORPHAN_HEARTBEATS);
            if self.config.orphan_after < floor && !self.registered_once {
                tracing::warn!(
                    orphan_after = ?self.config.orphan_after,
                    heartbeat_interval = ?self.config.sync_interval,
                    "--orphan-after is shorter than {ORPHAN_HEARTBEATS} heartbeat intervals: \
                     training ranks stop when a few heartbeats fail, before the server (at its \
                     default --lost-after 3) takes the node for lost; keep it above \
                     --lost-after × the heartbeat interval"
                );
            }
        }
        self.node_id = Some(reg.node_id.clone());
        self.registered_once = true;
        Ok(reg.node_id)
    }

    /// One pass: register if needed, heartbeat, fetch, reconcile, report, push logs.
    pub fn sync(&mut self) -> Result<SyncReport, ControlPlaneError> {
        let result = self.sync_inner();
        if let Err(ControlPlaneError::UnknownNode(_)) = &result {
            tracing::warn!("the control plane forgot this node: registering again");
            self.node_id = None;
        }
        if !self.heartbeat_ok {
            self.stop_orphaned_ranks();
        }
        result
    }

    /// Stops the gang ranks once no heartbeat has got through for `orphan_after` (see
    /// [`AgentConfig::orphan_after`]). Their exits are reported when the control plane answers
    /// again, as stopped by the agent: an interruption, not the job's failure.
    ///
    /// Until then, and until the ranks are gone or sent their SIGKILL, calls to the control
    /// plane give up by that deadline ([`Agent::limit_calls`]). Then they get their full time
    /// again (also when a killed rank is stuck in the kernel), so that a slow control plane is
    /// not out of reach for good.
    fn stop_orphaned_ranks(&mut self) {
        let now = Instant::now();
        if self.orphans_gone || now < self.orphans_at {
            return;
        }
        let mut longest_grace: Option<Duration> = None;
        for o in self.supervisor.observed() {
            if o.assignment.restart != crate::protocol::RestartPolicy::Never {
                continue;
            }
            let grace = o.assignment.stop_grace();
            match o.phase {
                crate::reconcile::Phase::Running => {
                    // (Since the last answered heartbeat, this agent's or its predecessor's.)
                    let silent = self.config.orphan_after + now.duration_since(self.orphans_at);
                    tracing::warn!(
                        id = o.assignment.id,
                        "no heartbeat answered for {} s (--orphan-after {:?}): the control plane \
                         has declared this node lost and restarted the gang elsewhere; stopping \
                         this rank",
                        silent.as_secs(),
                        self.config.orphan_after
                    );
                    self.supervisor.stop(&o.assignment.id);
                    longest_grace = longest_grace.max(Some(grace));
                }
                crate::reconcile::Phase::Stopping => longest_grace = longest_grace.max(Some(grace)),
                crate::reconcile::Phase::Exited { .. } => {}
            }
        }
        let done = match longest_grace {
            None => true,
            // (A poll interval to spare: the SIGKILL goes out at a poll.)
            Some(grace) => {
                now >= *self
                    .orphans_killed_by
                    .get_or_insert_with(|| later(later(now, grace), self.config.poll_interval * 2))
            }
        };
        if done {
            self.orphans_gone = true;
        }
    }

    /// Cuts the next call to the control plane short ([`ControlPlane::give_up_by`]) so that it
    /// holds nothing due meanwhile: the stop of orphaned ranks (until they are gone or killed),
    /// and the SIGKILL of a process whose stop grace ends. What is due already is done first.
    fn limit_calls(&mut self) {
        // (Reaping and escalating only: the output buffer may be mid-push.)
        self.supervisor.poll();
        self.stop_orphaned_ranks();
        let orphans = (!self.orphans_gone).then_some(self.orphans_at);
        let kill = self.supervisor.next_kill_at();
        self.control.give_up_by(match (orphans, kill) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        });
    }

    fn sync_inner(&mut self) -> Result<SyncReport, ControlPlaneError> {
        self.poll();
        self.heartbeat_ok = false;
        // Before each call that could hang until the deadline: the stop must not wait for two.
        self.limit_calls();
        let node_id = self.registered()?;
        self.limit_calls();
        // Timed from the request, not the answer: the server may have seen it (its last sign of
        // life from this node) long before the answer came back.
        let (asked, asked_unix_ms) = (Instant::now(), now_ms());
        self.control.heartbeat(&node_id)?;
        self.heartbeat_ok = true;
        self.orphans_at = later(asked, self.config.orphan_after);
        self.orphans_gone = false;
        self.orphans_killed_by = None;
        self.supervisor.note_answered_heartbeat(asked_unix_ms);
        self.limit_calls();
        let desired = self.control.fetch_assignments(&node_id)?;
        let actions = reconcile_keeping(
            &desired.assignments,
            &desired.keep,
            &self.supervisor.observed(),
            now_ms(),
        );
        for action in &actions {
            match action {
                Action::Stop { id, reason } => {
                    tracing::info!(id, ?reason, "stopping");
                    self.supervisor.stop(id);
                }
                Action::Forget { id } => self.supervisor.forget(id),
                Action::Start {
                    assignment,
                    restart,
                } => {
                    tracing::info!(id = %assignment.id, restart, "starting");
                    self.supervisor.start(assignment, *restart);
                }
            }
        }
        self.poll();
        let statuses = self.supervisor.statuses();
        // (A stop the reconciliation began has a SIGKILL due.)
        self.limit_calls();
        self.control.report_status(&node_id, &statuses)?;
        self.supervisor.mark_reported(&statuses);
        // Output gets at most half the interval, so the next heartbeat is never late for it.
        let pushed = self.push_logs(&node_id, Instant::now() + self.config.sync_interval / 2)?;
        Ok(SyncReport {
            actions,
            statuses: statuses.len(),
            logs_pushed: pushed,
        })
    }

    /// Pushes buffered output in batches of at most `log_batch` lines and
    /// [`MAX_LOG_BATCH_BYTES`]. A batch the control plane refuses for its content (400, 413,
    /// 422) is halved until the refused line is alone, and that line is dropped with a warning:
    /// the rest gets through and one bad line never blocks a node's output. Other failures
    /// (including 401, 403 and 404: the request, not its lines, is refused) keep the lines for the
    /// next sync (halving the batch after repeated failures, in case its size is the trouble)
    /// and do not fail the sync: output is not a reason to miss a heartbeat. No batch starts
    /// after `deadline`; what is left waits for the next sync.
    fn push_logs(&mut self, node_id: &str, deadline: Instant) -> Result<usize, ControlPlaneError> {
        let mut pushed = 0;
        while !self.logs.is_empty() && Instant::now() < deadline {
            let n = self.next_batch_len();
            let batch: Vec<_> = self.logs.iter().take(n).cloned().collect();
            self.limit_calls();
            match self.control.push_logs(node_id, &batch) {
                Ok(()) => {
                    self.take_logs(n);
                    self.supervisor.note_pushed(&batch);
                    pushed += n;
                    self.push_failures = 0;
                    self.batch_lines = self.config.log_batch.max(1);
                }
                Err(e @ ControlPlaneError::UnknownNode(_)) => return Err(e),
                Err(ControlPlaneError::Rejected { status, message })
                    if matches!(status, 400 | 413 | 422) =>
                {
                    if n == 1 {
                        let line = self.logs.front().cloned();
                        self.take_logs(1);
                        self.refused_logs += 1;
                        tracing::warn!(
                            assignment = line.as_ref().map(|l| l.assignment_id.as_str()),
                            "the control plane refused an output line ({status}), dropping it: {message}"
                        );
                    } else {
                        self.batch_lines = n / 2;
                    }
                }
                Err(e) => {
                    self.push_failures += 1;
                    if self.push_failures >= PUSHES_BEFORE_HALVING && n > 1 {
                        self.push_failures = 0;
                        self.batch_lines = n / 2;
                    }
                    tracing::warn!(
                        buffered = self.logs.len(),
                        "pushing output failed; keeping it for the next sync: {e}"
                    );
                    break;
                }
            }
        }
        Ok(pushed)
    }

    /// Lines in the next batch: the line limit, cut where the batch's JSON would pass
    /// [`MAX_LOG_BATCH_BYTES`] (at least one line; a line is at most 16 KiB of text).
    fn next_batch_len(&self) -> usize {
        let mut bytes = 0;
        let mut n = 0;
        for line in self.logs.iter().take(self.batch_lines.max(1)) {
            bytes += json_size(line);
            if n > 0 && bytes > MAX_LOG_BATCH_BYTES {
                break;
            }
            n += 1;
        }
        n.max(1)
    }

    /// Output lines waiting to be pushed.
    pub fn buffered_logs(&self) -> usize {
        self.logs.len()
    }

    /// Output lines the control plane refused and the agent dropped.
    pub fn refused_logs(&self) -> u64 {
        self.refused_logs
    }

    /// Syncs every interval and polls processes in between until `stop` is set, then stops
    /// every process (SIGTERM, SIGKILL after the shutdown grace).
    ///
    /// A registration the control plane refuses for good (a bad request, token or cluster:
    /// 400, 401, 403, 422) ends the agent with that error while it runs nothing yet; trying
    /// again would only repeat it. With processes to look after (adopted from a previous
    /// agent) it keeps trying, with back-off.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), ControlPlaneError> {
        // Adopted ranks already past their deadline stop before the first call, which could
        // take until the cap.
        self.stop_orphaned_ranks();
        let mut next_sync = Instant::now();
        let mut failures: u32 = 0;
        while !stop.load(Ordering::Relaxed) {
            if Instant::now() >= next_sync {
                let pass_started = Instant::now();
                let wait = match self.sync() {
                    Ok(_) => {
                        failures = 0;
                        self.config.sync_interval
                    }
                    Err(ControlPlaneError::Rejected { status, message })
                        if self.node_id.is_none()
                            && matches!(status, 400 | 401 | 403 | 422)
                            && self.supervisor.live() == 0 =>
                    {
                        return Err(ControlPlaneError::Rejected { status, message });
                    }
                    // A control plane that forgot this node (a restarted server) is answering:
                    // the next sync registers again, and ends the run of failures, if any.
                    Err(ControlPlaneError::UnknownNode(_)) => {
                        failures = 0;
                        self.retry_after(1)
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        // Said on failures 1, 2, 4, 8 … in a row: a long outage (or a revoked
                        // token) does not fill the log twice a second.
                        if failures.is_power_of_two() {
                            tracing::warn!("sync failed ({failures} in a row): {e}");
                        } else {
                            tracing::debug!("sync failed ({failures} in a row): {e}");
                        }
                        self.retry_after(failures)
                    }
                };
                // From the pass's start: a slow pass does not stretch the heartbeat period.
                next_sync = pass_started + wait;
            }
            self.poll();
            // Between syncs too: the deadline does not wait for the next one.
            self.stop_orphaned_ranks();
            std::thread::sleep(self.config.poll_interval);
        }
        tracing::info!("agent stopping: stopping its processes");
        self.supervisor.stop_all(self.config.shutdown_grace);
        let deadline = Instant::now() + self.config.shutdown_grace;
        let mut next_beat = Instant::now() + self.config.sync_interval;
        // Polling takes their output too, so one printing on its way out is not blocked.
        while self.supervisor.live() > 0 && Instant::now() < deadline {
            self.poll();
            self.heartbeat_while_stopping(&mut next_beat);
            std::thread::sleep(Duration::from_millis(20));
        }
        self.supervisor.kill_remaining();
        // What the processes wrote last (often the most telling) is still being read.
        let deadline = Instant::now() + SHUTDOWN_OUTPUT_WAIT;
        while !self.supervisor.output_finished() && Instant::now() < deadline {
            self.poll();
            self.heartbeat_while_stopping(&mut next_beat);
            std::thread::sleep(Duration::from_millis(20));
        }
        // Best effort: tell the control plane how they ended.
        let _ = self.sync_statuses_only();
        Ok(())
    }

    /// How long after the `failures`-th failed sync in a row the next one starts. An agent that
    /// has been registered keeps the heartbeat's pace: a short outage (or an error elsewhere in
    /// the pass) must not become a node declared lost while it backs off, and one the control
    /// plane forgot (a restarted server) registers again at its next sync, which a new leader
    /// waits for before it starts the gangs that ran there. Before its first registration it
    /// backs off, up to 10 s.
    fn retry_after(&self, failures: u32) -> Duration {
        if self.registered_once {
            self.config.sync_interval
        } else {
            (self.config.sync_interval * failures.min(5)).min(Duration::from_secs(10))
        }
    }

    /// While its processes take their grace on the way out, the agent keeps heartbeating at
    /// the pace the server asked for: a server declares a silent node lost within a few
    /// intervals, and the ranks' end would then read as a node failure rather than as the
    /// agent stopping them (which its last report says). Best effort, when `next` is due.
    fn heartbeat_while_stopping(&mut self, next: &mut Instant) {
        let now = Instant::now();
        if now < *next {
            return;
        }
        *next = now + self.config.sync_interval;
        if let Some(id) = &self.node_id {
            self.control.give_up_by(Some(now));
            if let Err(e) = self.control.heartbeat(id) {
                tracing::debug!("heartbeat while stopping failed: {e}");
            }
        }
    }

    fn sync_statuses_only(&mut self) -> Result<(), ControlPlaneError> {
        // Everything is stopped; the agent waits this long for the server, not a timeout.
        self.control
            .give_up_by(Some(Instant::now() + SHUTDOWN_OUTPUT_WAIT));
        let node_id = self.registered()?;
        self.poll();
        let statuses = self.supervisor.statuses();
        self.control.report_status(&node_id, &statuses)?;
        self.push_logs(&node_id, Instant::now() + SHUTDOWN_OUTPUT_WAIT)
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::MemoryControlPlane;
    use crate::hardware::{DiscoverOptions, discover};
    use crate::protocol::Assignment;
    use std::collections::BTreeMap;

    /// An agent the control plane forgot (a restarted server answers `unknown_node`) registers
    /// again at the heartbeat's pace, however many calls failed while the server was away; one
    /// never registered backs off.
    #[test]
    fn a_forgotten_agent_registers_again_without_backing_off() {
        let cp = MemoryControlPlane::new();
        let mut agent = Agent::new(
            cp.clone(),
            discover(&DiscoverOptions::default()),
            AgentConfig::default(),
        );
        let interval = agent.config.sync_interval;
        assert_eq!(
            agent.retry_after(4),
            (interval * 4).min(Duration::from_secs(10)),
            "never registered: backs off"
        );
        agent.sync().expect("register");
        let interval = agent.config.sync_interval;
        cp.state().down = true;
        assert!(agent.sync().is_err());
        assert_eq!(agent.retry_after(3), interval, "the server is away");
        cp.state().down = false;
        cp.state().nodes.clear();
        assert!(matches!(
            agent.sync(),
            Err(ControlPlaneError::UnknownNode(_))
        ));
        assert_eq!(agent.node_id(), None);
        assert_eq!(
            agent.retry_after(4),
            interval,
            "forgotten: registers again at once"
        );
    }

    /// An agent shutting down keeps heartbeating while its processes take their grace, so the
    /// server does not declare the node lost meanwhile.
    #[test]
    fn a_stopping_agent_heartbeats_while_its_processes_take_their_grace() {
        let cp = MemoryControlPlane::new();
        let config = AgentConfig {
            shutdown_grace: Duration::from_millis(1500),
            ..AgentConfig::default()
        };
        let mut agent = Agent::new(cp.clone(), discover(&DiscoverOptions::default()), config);
        agent.sync().expect("register");
        let node = agent.node_id().expect("registered").to_owned();
        // A process that ignores SIGTERM: it takes the whole grace. (It says when its trap is
        // set: a SIGTERM before that would end it at once.)
        let mark = std::env::temp_dir().join(format!("sy-agent-trap-{}", std::process::id()));
        let _ = std::fs::remove_file(&mark);
        cp.set_desired(
            &node,
            vec![Assignment {
                id: "j/attempt-1/rank-0".into(),
                job_id: "j".into(),
                attempt: 1,
                rank: 0,
                world_size: 1,
                local_rank: 0,
                master_addr: "127.0.0.1".into(),
                master_port: 29500,
                command: vec![
                    "sh".into(),
                    "-c".into(),
                    "trap '' TERM; touch \"$MARK\"; sleep 30".into(),
                ],
                env: BTreeMap::from([("MARK".to_owned(), mark.display().to_string())]),
                accelerators: Vec::new(),
                checkpoint_dir: None,
                working_dir: None,
                restart: crate::protocol::RestartPolicy::Never,
                stop_grace_ms: 1500,
            }],
        );
        agent.sync().expect("start it");
        let start = Instant::now();
        while !mark.exists() && start.elapsed() < Duration::from_secs(10) {
            agent.poll();
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(mark.exists(), "the process set its trap");
        assert_eq!(agent.supervisor.live(), 1, "the process runs");
        let before = cp.state().heartbeats.get(&node).copied().unwrap_or(0);
        let stop = AtomicBool::new(true);
        agent.run(&stop).expect("stops");
        let during = cp.state().heartbeats.get(&node).copied().unwrap_or(0) - before;
        // 1.5 s of grace at the 200 ms the memory control plane asks for.
        assert!(during >= 3, "{during} heartbeats while stopping");
        let _ = std::fs::remove_file(&mark);
    }
}
