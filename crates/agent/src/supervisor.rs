//! Runs assignments as processes: each in its own process group, with the launcher environment,
//! output captured line by line, stopped with SIGTERM to the group and SIGKILL after a grace
//! period, exit codes kept until reported.
//!
//! The supervisor does only what it is told ([`Supervisor::start`], [`Supervisor::stop`]) and
//! reports what it sees ([`Supervisor::poll`], [`Supervisor::observed`]); deciding is
//! [`crate::reconcile`]'s job.
//!
//! **Surviving its own restart.** With a state directory ([`Supervisor::with_state_dir`]) the
//! supervisor writes what it runs to `processes.json` there (and when the last answered
//! heartbeat was sent to `heartbeat.json`) and sends each process's output to
//! files under `logs/` instead of pipes (a process must not die of SIGPIPE because the agent did).
//! A new supervisor on the same directory adopts the processes that are still alive (same pid and
//! same start time, so a reused pid is never mistaken for one of ours): it can stop them, follows
//! their output files, and notices when they are gone. Their exit codes died with the old
//! agent unless the processes run under an [`ExitRecorder`] ([`Supervisor::with_exit_recorder`]),
//! which writes each one's end to `exits/` in the state directory. Reconciliation then stops the
//! adopted ones the control plane no longer wants.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::exit_record::{self, ExitRecorder, NOT_STARTED, STARTED};
use crate::protocol::{Assignment, ExitInfo, LogLine, ProcessState, ProcessStatus, Stream};
use crate::reconcile::{Observed, Phase};

/// Longest log line kept; longer output is split into lines of this size.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// How long killing every process (at shutdown) waits for them to die, all together.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// How often output files are checked for new lines.
const TAIL_INTERVAL: Duration = Duration::from_millis(50);

/// Lines read but not yet taken by the agent. A reader that finds the queue full waits, so a
/// process that writes faster than its output can be shipped is slowed (its pipe fills) instead
/// of the agent's memory growing without bound.
pub const LOG_QUEUE_LINES: usize = 10_000;

/// Bits of byte offset below a supervisor's first `seq` of a pipe stream: its start time in
/// milliseconds shifted left by this many bits. A replica a new agent restarts (no state
/// directory, so its predecessor's offsets are lost) then writes at positions above its
/// predecessor's unless that one averaged more than 1 GiB/s over its life; the largest base,
/// in the year 2248, still fits the server's 2^63 − 1.
const PIPE_SEQ_SHIFT: u32 = 20;

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

/// The start time of process `pid` (clock ticks after boot, field 22 of `/proc/PID/stat`), if
/// it exists and is not a zombie.
pub fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_ticks(&stat)
}

/// Field 22 (start time) of a `/proc/PID/stat` line; `None` for a zombie or a malformed line.
/// The command name (field 2) may hold spaces and parentheses, so fields are counted from the
/// last `)`.
pub fn parse_start_ticks(stat: &str) -> Option<u64> {
    stat_field(stat, 22)?.parse().ok()
}

/// Field `n` (counted from 1, `n >= 3`) of a `/proc/PID/stat` line; `None` for a zombie or a
/// malformed line.
fn stat_field(stat: &str, n: usize) -> Option<&str> {
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    // The first field after the name is field 3 (state).
    if fields.next()? == "Z" {
        return None;
    }
    fields.nth(n.checked_sub(4)?)
}

/// What runs the process: our child, or one adopted from a previous agent.
#[derive(Debug)]
enum Handle {
    Child(Child),
    Adopted { pid: u32, start_ticks: Option<u64> },
}

impl Handle {
    fn pid(&self) -> u32 {
        match self {
            Handle::Child(c) => c.id(),
            Handle::Adopted { pid, .. } => *pid,
        }
    }
}

#[derive(Debug)]
struct Managed {
    assignment: Assignment,
    handle: Option<Handle>,
    start_ticks: Option<u64>,
    state: ProcessState,
    stop_deadline: Option<Instant>,
    exited_at_ms: u64,
    /// When the process last started (0: it never did): a run of
    /// [`crate::reconcile::BACKOFF_RESET_MS`] or more ends a crash loop.
    started_at_ms: u64,
    restarts: u32,
    /// Restarts since the process last ran for [`crate::reconcile::BACKOFF_RESET_MS`].
    crash_streak: u32,
    /// How the previous copy ended, once the assignment has been restarted.
    last_exit: Option<ExitInfo>,
    reported: bool,
    /// Set when the process is gone: its output followers finish what is left and stop.
    gone: Arc<AtomicBool>,
    /// Without a state directory: the next `seq` of stdout and stderr, kept across restarts
    /// of the assignment, so that a restarted process's lines do not reuse the positions of
    /// its predecessors' (the server keeps one line per assignment, stream and seq).
    pipe_offsets: [Arc<AtomicU64>; 2],
    /// The `seq` of the latest stdout and stderr line the control plane took: where a new
    /// agent on the same state directory resumes reading the output files.
    pushed: [u64; 2],
    /// How much of the stdout and stderr files this supervisor has given back to the file
    /// system (see [`Supervisor::note_pushed`]).
    punched: [u64; 2],
    /// The threads reading this assignment's output.
    followers: Vec<JoinHandle<()>>,
}

impl Managed {
    /// Where its next restart is on the back-off: its crash streak, unless its last run was
    /// long enough to end it.
    fn backoff_step(&self) -> u32 {
        let ran_ms = self.exited_at_ms.saturating_sub(self.started_at_ms);
        if self.started_at_ms > 0 && ran_ms >= crate::reconcile::BACKOFF_RESET_MS {
            0
        } else {
            self.crash_streak
        }
    }
}

/// One line of `processes.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    assignment: Assignment,
    state: ProcessState,
    #[serde(default)]
    start_ticks: Option<u64>,
    restarts: u32,
    reported: bool,
    exited_at_ms: u64,
    /// `seq` of the latest line of stdout and stderr the control plane took.
    #[serde(default)]
    pushed: [u64; 2],
    #[serde(default)]
    started_at_ms: u64,
    #[serde(default)]
    crash_streak: u32,
    #[serde(default)]
    last_exit: Option<ExitInfo>,
}

/// Why a state directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file system failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Another agent holds the lock: it runs as this node right now.
    #[error(
        "another agent on this machine holds {path}: it runs as this node already (stop it first, or give this one another --hostname or --state-dir)"
    )]
    Busy {
        /// The lock file.
        path: PathBuf,
    },
    /// `processes.json` is not what this agent writes.
    #[error("{path} is not a state file of this agent version: {message}")]
    Corrupt {
        /// Where.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// A Unix user the supervisor starts processes as ([`Supervisor::with_run_as`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// The processes of this node's assignments.
#[derive(Debug)]
pub struct Supervisor {
    procs: BTreeMap<String, Managed>,
    log_tx: SyncSender<LogLine>,
    log_rx: Receiver<LogLine>,
    state_dir: Option<PathBuf>,
    /// First `seq` of a pipe stream started by this supervisor (see [`PIPE_SEQ_SHIFT`]).
    pipe_seq_base: u64,
    /// Without a state directory: where the process groups this supervisor runs are recorded,
    /// so that the next agent of this node stops what this one left behind.
    group_file: Option<PathBuf>,
    /// An exclusive lock held for the supervisor's life: one agent per state.
    _lock: Option<File>,
    /// The group file's lock, when a supervisor with a state directory records its groups in
    /// the node's group file too.
    group_lock: Option<File>,
    /// Output files give back what the control plane took once it is this many bytes ahead of
    /// what was given back last.
    punch_every: u64,
    /// With a state directory: what runs each process so that its exit is recorded.
    exit_recorder: Option<ExitRecorder>,
    /// The user processes start as, when not the agent's own.
    run_as: Option<RunAs>,
    /// With a state directory: when the last heartbeat the control plane answered was sent
    /// (Unix ms), by this agent or (until it has one) by the previous one on the directory.
    last_answered_heartbeat_ms: Option<u64>,
}

/// `heartbeat.json` in a state directory: when the last heartbeat the control plane answered
/// was sent. The next agent on the directory times the orphan deadline of the ranks it adopts
/// from there, not from its own start, so a crash and restart while cut off cannot stretch it.
#[derive(Debug, Serialize, Deserialize)]
struct HeartbeatRecord {
    sent_unix_ms: u64,
}

/// One process group in a group file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupRecord {
    pgid: u32,
    start_ticks: Option<u64>,
    /// What the group ran: the next agent that kills it reports it ended (how, unknown), so
    /// the server restarts its gang instead of handing the same rank out again mid-attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    assignment: Option<Assignment>,
}

/// How long an agent waits, at start, for the process groups it killed to be gone.
const KILLED_GROUPS_WAIT: Duration = Duration::from_secs(5);

/// The lock beside a group file (`path.lock`), its directory created if missing.
fn lock_group_file(path: &Path) -> Result<File, StateError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    }
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    lock_file(Path::new(&lock_path))
}

/// How long a lock another holds is tried again before it counts as busy: a process of this
/// one being started holds a copy of every descriptor between its fork and its exec (which
/// closes them), and with them the lock a moment after it was given up.
const LOCK_RETRY: Duration = Duration::from_millis(500);

/// Takes an exclusive lock on `path` (created if missing) for as long as the file is open.
fn lock_file(path: &Path) -> Result<File, StateError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err("open", path))?;
    let deadline = Instant::now() + LOCK_RETRY;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StateError::Busy {
                    path: path.to_path_buf(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err("lock", path)(e)),
        }
    }
}

/// Whether process group `pgid`, led at `start_ticks` when recorded, still has members. The
/// leader, if alive, must have the recorded start time (else its pid was reused). A pid is
/// never handed out while a group of that id exists, so once the leader is gone any process in
/// group `pgid` is a member of the recorded one.
fn group_alive(pgid: u32, start_ticks: Option<u64>) -> bool {
    if let Some(ticks) = process_start_ticks(pgid) {
        return Some(ticks) == start_ticks;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        e.file_name().to_str().is_some_and(|name| {
            name.bytes().all(|b| b.is_ascii_digit())
                && std::fs::read_to_string(e.path().join("stat"))
                    .ok()
                    .and_then(|stat| parse_process_group(&stat))
                    == Some(pgid)
        })
    })
}

/// Field 5 (process group) of `/proc/PID/stat`; `None` for a zombie.
fn parse_process_group(stat: &str) -> Option<u32> {
    stat_field(stat, 5)?.parse().ok()
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

/// Reads lines from `source` and sends them; `seq` is the byte offset of each line in the
/// stream, taken from `offset` (shared by the followers of one assignment's restarts, so that
/// each line gets a position of its own). With `gone` (following a file), end of file means "wait for
/// more" until `gone` is set; without it (a pipe), end of file ends the stream.
fn follow(
    mut source: impl Read + Send + 'static,
    offset: Arc<AtomicU64>,
    gone: Option<Arc<AtomicBool>>,
    id: String,
    stream: Stream,
    tx: SyncSender<LogLine>,
) -> Option<JoinHandle<()>> {
    let spawned = std::thread::Builder::new()
        .name(format!("agent-log-{id}"))
        .spawn(move || {
            let mut pending: Vec<u8> = Vec::new();
            let mut reader = BufReader::new(&mut source);
            let send = |buf: &mut Vec<u8>, at: u64| -> bool {
                while matches!(buf.last(), Some(b'\n' | b'\r')) {
                    buf.pop();
                }
                let line = LogLine {
                    assignment_id: id.clone(),
                    stream,
                    seq: at,
                    at_ms: now_ms(),
                    line: String::from_utf8_lossy(buf).into_owned(),
                };
                tx.send(line).is_ok()
            };
            loop {
                let room = MAX_LINE_BYTES.saturating_sub(pending.len()).max(1) as u64;
                let before = pending.len();
                let n = match reader.by_ref().take(room).read_until(b'\n', &mut pending) {
                    Ok(n) => n,
                    Err(_) => break,
                };
                let complete = pending.last() == Some(&b'\n') || pending.len() >= MAX_LINE_BYTES;
                if n > 0 && complete {
                    let len = pending.len() as u64;
                    if !send(&mut pending, offset.fetch_add(len, Ordering::AcqRel)) {
                        return;
                    }
                    pending.clear();
                    continue;
                }
                if n > 0 && before != pending.len() {
                    // A partial line: wait for the rest (or the end).
                    continue;
                }
                // End of input for now.
                let finished = match &gone {
                    None => true,
                    Some(flag) => flag.load(Ordering::Acquire),
                };
                if finished {
                    // One last look after the process is gone, then flush a partial line.
                    if gone.is_some() {
                        let mut tail = Vec::new();
                        let _ = reader.read_to_end(&mut tail);
                        pending.extend_from_slice(&tail);
                        for chunk in pending.split_inclusive(|b| *b == b'\n') {
                            let mut c = chunk.to_vec();
                            let len = c.len() as u64;
                            if !send(&mut c, offset.fetch_add(len, Ordering::AcqRel)) {
                                return;
                            }
                        }
                    } else if !pending.is_empty() {
                        let at = offset.fetch_add(pending.len() as u64, Ordering::AcqRel);
                        send(&mut pending, at);
                    }
                    return;
                }
                std::thread::sleep(TAIL_INTERVAL);
            }
        });
    match spawned {
        Ok(handle) => Some(handle),
        Err(e) => {
            tracing::warn!("cannot start a log reader thread: {e}; output of this process is lost");
            None
        }
    }
}

/// The [`HeartbeatRecord`] in a state directory.
const HEARTBEAT_FILE: &str = "heartbeat.json";

/// The time in a [`HeartbeatRecord`]; `None` when there is none. One that cannot be read is
/// logged and taken as none: the agent then times orphans from its own start, as one whose
/// predecessor never got a heartbeat through.
fn read_heartbeat_record(path: &Path) -> Option<u64> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(
                "cannot read {}: {e}; orphaned ranks are timed from this agent's start",
                path.display()
            );
            return None;
        }
    };
    match serde_json::from_str::<HeartbeatRecord>(&text) {
        Ok(record) => Some(record.sent_unix_ms),
        Err(e) => {
            tracing::warn!(
                "{} is not a heartbeat record ({e}); orphaned ranks are timed from this agent's start",
                path.display()
            );
            None
        }
    }
}

/// Writes `value` as JSON to `path` through a temporary file and a rename. Failures are logged:
/// the state files help after a restart; they are not a condition for running.
fn write_atomically<T: Serialize + ?Sized>(path: &Path, value: &T) {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    // Readable by the agent's user only: `processes.json` holds every assignment's `env`,
    // which jobs started under `--run-as` must not read.
    let written = serde_json::to_vec_pretty(value)
        .map_err(std::io::Error::other)
        .and_then(|bytes| {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            // (A temporary file left by an older agent keeps its mode: set it.)
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            f.write_all(&bytes)
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        tracing::warn!("cannot write {}: {e}", path.display());
    }
}

fn stream_index(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

/// Where the recorder of assignment `id` writes how it ended.
fn exit_path(state_dir: &Path, id: &str) -> PathBuf {
    state_dir
        .join("exits")
        .join(format!("{}.json", file_key(id)))
}

/// How assignment `id` ended (exit code, signal): as its recorder saw it, if it ran under one
/// that did, else `otherwise` (what its parent's wait, or nobody, saw).
fn ended_as(
    state_dir: Option<&Path>,
    id: &str,
    otherwise: (Option<i32>, Option<i32>),
) -> (Option<i32>, Option<i32>) {
    state_dir
        .and_then(|dir| exit_record::read(&exit_path(dir, id)))
        .map_or(otherwise, |r| (r.code, r.signal))
}

fn file_key(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Where an agent records the process groups it runs, whatever its state directory: one file
/// per user, control plane ([`crate::http::server_identity`]), cluster and host name under the
/// temporary directory, so the next agent of the same node finds it (with another state
/// directory or none) and agents of different nodes on one machine (as `switchyard demo` runs
/// them) do not share it.
pub fn default_group_file(server: &str, cluster: &str, hostname: &str) -> PathBuf {
    let (user_dir, file) = node_names(server, cluster, hostname);
    std::env::temp_dir().join(user_dir).join(file)
}

/// The folder (per user) and file name of a node's group file under the temporary directory.
fn node_names(server: &str, cluster: &str, hostname: &str) -> (String, String) {
    (
        format!("switchyard-agent-{}", this_uid().unwrap_or(0)),
        format!(
            "{}--{}--{}.groups",
            file_key(&crate::http::server_identity(server)),
            file_key(cluster),
            file_key(hostname)
        ),
    )
}

/// The user this process runs as.
fn this_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").map(|m| m.uid()).ok()
}

/// How a killed child ended (exit code, signal), once it has; `None` when it is still there at
/// `deadline`.
fn reap_by(child: &mut Child, deadline: Instant) -> Option<(Option<i32>, Option<i32>)> {
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some((s.code(), s.signal())),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => return None,
            Err(_) => return Some((None, Some(9))),
        }
    }
}

/// The lock one agent at a time holds for a node on this machine; it lasts as long as this.
#[derive(Debug)]
pub struct NodeLock {
    _file: File,
    /// An abstract Unix socket of the node's name: seen by every process in the machine's
    /// network namespace, whatever its temporary directory (`TMPDIR`, systemd's
    /// `PrivateTmp=`), where the lock file is not.
    #[cfg(target_os = "linux")]
    _socket: Option<std::os::unix::net::UnixListener>,
}

/// Takes the lock that one agent at a time holds for a host name of a control plane on this
/// machine, whatever its state directory and temporary directory: two agents registering under
/// one host name would both run every rank placed on the node. The cluster is not part of it:
/// an agent that leaves the cluster to the server joins the one that host name is in, so it
/// must meet one that named it. `Busy` when another agent holds it.
pub fn lock_node(server: &str, hostname: &str) -> Result<NodeLock, StateError> {
    let cluster = ANY_CLUSTER;
    let mut path = default_group_file(server, cluster, hostname).into_os_string();
    path.push(".node.lock");
    let path = PathBuf::from(path);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    }
    let file = lock_file(&path)?;
    Ok(NodeLock {
        _file: file,
        #[cfg(target_os = "linux")]
        _socket: lock_abstract_socket(&node_socket_name(server, cluster, hostname))?,
    })
}

/// What stands for the cluster in a node lock's names: a name no fleet gives a cluster
/// (names are trimmed and have no whitespace at their ends).
const ANY_CLUSTER: &str = " any cluster ";

/// The abstract socket name of a node: a 64-bit FNV-1a hash of its group file's folder (the
/// user) and name (control plane, cluster, host name), whatever the temporary directory above
/// them; a hash every build computes alike, so that agents of two releases exclude each other
/// too.
#[cfg(target_os = "linux")]
fn node_socket_name(server: &str, cluster: &str, hostname: &str) -> String {
    let (user_dir, file) = node_names(server, cluster, hostname);
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in user_dir
        .as_bytes()
        .iter()
        .chain(b"/")
        .chain(file.as_bytes())
    {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("switchyard-agent-node-{hash:016x}")
}

/// Binds abstract socket `name`, trying again for [`LOCK_RETRY`] while another holds it (an
/// agent on its way out); `Busy` (its path shown as `@name`) after that.
#[cfg(target_os = "linux")]
fn lock_abstract_socket(
    name: &str,
) -> Result<Option<std::os::unix::net::UnixListener>, StateError> {
    use std::os::linux::net::SocketAddrExt as _;
    use std::os::unix::net::{SocketAddr, UnixListener};
    let shown = PathBuf::from(format!("@{name}"));
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).map_err(io_err("name", &shown))?;
    let deadline = Instant::now() + LOCK_RETRY;
    loop {
        match UnixListener::bind_addr(&addr) {
            Ok(socket) => return Ok(Some(socket)),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                // Abstract names have no permissions: only an agent of this user counts (any
                // user could take the name first and keep every agent out).
                if !held_by_this_user(&addr) {
                    tracing::warn!(
                        socket = %shown.display(),
                        "the node's lock socket is held by another user's process: relying on \
                         the lock file alone"
                    );
                    return Ok(None);
                }
                if Instant::now() >= deadline {
                    return Err(StateError::Busy { path: shown });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(io_err("bind", &shown)(e)),
        }
    }
}

/// Whether the process listening on abstract socket `addr` runs as this user (as an agent of
/// this node would). One that does not listen, or cannot be asked, is not ours.
#[cfg(target_os = "linux")]
fn held_by_this_user(addr: &std::os::unix::net::SocketAddr) -> bool {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let Ok(stream) = std::os::unix::net::UnixStream::connect_addr(addr) else {
        return false;
    };
    let Some(me) = this_uid() else {
        return true;
    };
    getsockopt(&stream, PeerCredentials).is_ok_and(|c| c.uid() == me)
}

/// How far the control plane's copy of an output file may run ahead of the disk space given
/// back before more is given back (one `fallocate` per this many bytes printed).
const PUNCH_EVERY_BYTES: u64 = 64 << 20;

/// The unit file systems free space in.
const PAGE_BYTES: u64 = 4096;

/// Frees the disk blocks of `path` before `upto`, keeping its length (reads there give zeros;
/// nobody reads there: a new agent resumes after them). The process writing it appends, so
/// nothing it writes meanwhile is touched.
#[cfg(target_os = "linux")]
fn punch_hole(path: &Path, upto: u64) -> std::io::Result<()> {
    use nix::fcntl::{FallocateFlags, fallocate};
    let f = OpenOptions::new().write(true).open(path)?;
    let len = i64::try_from(upto).map_err(std::io::Error::other)?;
    fallocate(
        &f,
        FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
        0,
        len,
    )
    .map_err(std::io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn punch_hole(_path: &Path, _upto: u64) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "punching holes in files needs Linux",
    ))
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StateError {
    let path = path.to_path_buf();
    move |source| StateError::Io { what, path, source }
}

impl Supervisor {
    /// A supervisor that keeps no state on disk: output through pipes, and every process dies
    /// with it.
    pub fn new() -> Self {
        let (log_tx, log_rx) = sync_channel(LOG_QUEUE_LINES);
        Self {
            procs: BTreeMap::new(),
            log_tx,
            log_rx,
            state_dir: None,
            pipe_seq_base: (now_ms() << PIPE_SEQ_SHIFT).min(i64::MAX as u64 / 2),
            group_file: None,
            _lock: None,
            group_lock: None,
            punch_every: PUNCH_EVERY_BYTES,
            exit_recorder: None,
            run_as: None,
            last_answered_heartbeat_ms: None,
        }
    }

    /// Starts every process as `user` (the agent runs as root): the processes then cannot
    /// read the agent's token, state or other users' jobs (docs/agent.md, "Who may read what").
    pub fn with_run_as(mut self, user: RunAs) -> Self {
        self.run_as = Some(user);
        self
    }

    /// Runs every process under `recorder`, which writes how it ended to `exits/` in the state
    /// directory, so that a supervisor that adopts it learns its exit code (see
    /// [`crate::exit_record`]). Without a state directory nothing is adopted and the recorder
    /// is not used.
    pub fn with_exit_recorder(mut self, recorder: ExitRecorder) -> Self {
        self.exit_recorder = Some(recorder);
        self
    }

    /// A supervisor without a state directory whose processes still do not outlive it for
    /// long: it records their process groups in `path` (a lock beside it, `path.lock`, keeps a
    /// second agent off) and first kills the groups a previous supervisor on the same file left
    /// running — an agent killed outright cannot stop them itself, and a process that never
    /// writes would not notice its output pipe closing.
    pub fn with_group_file(path: &Path) -> Result<Self, StateError> {
        let mut sup = Self::new();
        sup._lock = Some(lock_group_file(path)?);
        sup.take_over_group_file(path)?;
        Ok(sup)
    }

    /// Also records this supervisor's process groups in the node's group file `path`, and
    /// first kills the groups recorded there that it did not adopt: those of a previous agent
    /// of the node that ran without this state directory (another one, or none). Without
    /// this, an agent restarted on another state directory would run a second copy of every
    /// rank beside the survivors, which nothing would then stop.
    ///
    /// On an error the supervisor comes back with it, untouched: dropping it would kill what it
    /// adopted ([`Supervisor::detach`] leaves that running for the next try).
    pub fn with_node_group_file(mut self, path: &Path) -> Result<Self, Box<(Self, StateError)>> {
        let lock = match lock_group_file(path) {
            Ok(lock) => lock,
            Err(e) => return Err(Box::new((self, e))),
        };
        self.group_lock = Some(lock);
        match self.take_over_group_file(path) {
            Ok(()) => Ok(self),
            Err(e) => {
                self.group_lock = None;
                self.group_file = None;
                Err(Box::new((self, e)))
            }
        }
    }

    /// Kills the live groups recorded in `path` that are not this supervisor's own, then
    /// records its own there from now on.
    fn take_over_group_file(&mut self, path: &Path) -> Result<(), StateError> {
        let records: Vec<GroupRecord> = match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err("read", path)(e)),
        };
        let mut killed = Vec::new();
        for r in records {
            let adopted = self.procs.values().any(|m| {
                m.handle.as_ref().is_some_and(|h| h.pid() == r.pgid)
                    && m.start_ticks == r.start_ticks
            });
            if !adopted && group_alive(r.pgid, r.start_ticks) {
                tracing::warn!(
                    pgid = r.pgid,
                    "killing a process group a previous agent of this node left running"
                );
                signal_group(r.pgid, Signal::SIGKILL);
                killed.push((r.pgid, r.start_ticks));
                // Its end, as far as anyone can tell: unknown (not the job's fault, so the
                // server restarts the attempt without spending a retry).
                if let Some(a) = r.assignment
                    && !self.procs.contains_key(&a.id)
                {
                    let m = Managed {
                        assignment: a,
                        handle: None,
                        start_ticks: r.start_ticks,
                        state: ProcessState::Exited(ExitInfo {
                            code: None,
                            signal: None,
                            stopped_by_agent: false,
                        }),
                        stop_deadline: None,
                        exited_at_ms: now_ms(),
                        started_at_ms: 0,
                        restarts: 0,
                        crash_streak: 0,
                        last_exit: None,
                        reported: false,
                        gone: Arc::new(AtomicBool::new(true)),
                        pipe_offsets: self.fresh_pipe_offsets(),
                        pushed: [0, 0],
                        punched: [0, 0],
                        followers: Vec::new(),
                    };
                    self.procs.insert(m.assignment.id.clone(), m);
                }
            }
        }
        // Gone before this agent starts anything: a killed rank may hold accelerator memory
        // until it has exited. Bounded: a process stuck in the kernel cannot hold the agent.
        let deadline = Instant::now() + KILLED_GROUPS_WAIT;
        while killed.iter().any(|&(pgid, ticks)| group_alive(pgid, ticks)) {
            if Instant::now() >= deadline {
                tracing::warn!(
                    "process groups a previous agent left are still there {} s after SIGKILL",
                    KILLED_GROUPS_WAIT.as_secs()
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.group_file = Some(path.to_path_buf());
        self.save();
        Ok(())
    }

    fn fresh_pipe_offsets(&self) -> [Arc<AtomicU64>; 2] {
        [
            Arc::new(AtomicU64::new(self.pipe_seq_base)),
            Arc::new(AtomicU64::new(self.pipe_seq_base)),
        ]
    }

    /// A supervisor that records what it runs in `dir` (created if missing) and adopts what a
    /// previous supervisor on the same directory left running. Processes that are gone are
    /// reported as exited, with the end their recorder wrote (no known code without one).
    pub fn with_state_dir(dir: &Path) -> Result<Self, StateError> {
        // Absolute, because the recorder is handed paths in it and may run in another
        // working directory.
        let dir = &std::path::absolute(dir).map_err(io_err("resolve", dir))?;
        // The directory (when made here) and what it holds are the agent's user's alone: the
        // records hold assignments' `env` and the logs their output, which jobs started under
        // `--run-as` (as another user) must not read. A directory given that others may
        // enter is left as it is: it may hold more than this.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err("create", dir))?;
        for sub in ["logs", "exits"] {
            let path = dir.join(sub);
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&path)
                .map_err(io_err("create", &path))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
                .map_err(io_err("restrict", &path))?;
        }
        let lock = lock_file(&dir.join("agent.lock"))?;
        let mut sup = Self::new();
        sup._lock = Some(lock);
        sup.state_dir = Some(dir.to_path_buf());
        sup.last_answered_heartbeat_ms = read_heartbeat_record(&dir.join(HEARTBEAT_FILE));
        let path = dir.join("processes.json");
        let records: Vec<Record> = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
                path: path.clone(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        for r in records {
            let gone = Arc::new(AtomicBool::new(false));
            let mut m = Managed {
                assignment: r.assignment,
                handle: None,
                start_ticks: r.start_ticks,
                state: r.state,
                stop_deadline: None,
                exited_at_ms: r.exited_at_ms,
                started_at_ms: r.started_at_ms,
                restarts: r.restarts,
                crash_streak: r.crash_streak,
                last_exit: r.last_exit,
                reported: r.reported,
                gone,
                pipe_offsets: Default::default(),
                pushed: r.pushed,
                punched: [0, 0],
                followers: Vec::new(),
            };
            if let ProcessState::Running { pid } | ProcessState::Stopping { pid } = m.state {
                let alive = process_start_ticks(pid).is_some_and(|t| Some(t) == r.start_ticks);
                if alive {
                    tracing::info!(id = %m.assignment.id, pid, "adopted a process left by a previous agent");
                    m.handle = Some(Handle::Adopted {
                        pid,
                        start_ticks: r.start_ticks,
                    });
                    if matches!(m.state, ProcessState::Stopping { .. }) {
                        // Finish the stop the previous agent began.
                        m.stop_deadline = Some(Instant::now() + m.assignment.stop_grace());
                        signal_group(pid, Signal::SIGTERM);
                    }
                } else {
                    tracing::info!(id = %m.assignment.id, pid, "a process of a previous agent is gone");
                    // What is left of its group (a trainer under a wrapper that died) would
                    // hold the accelerators and the checkpoint directory of the next attempt.
                    if group_alive(pid, None) {
                        tracing::warn!(id = %m.assignment.id, pid, "killing what is left of its process group");
                        signal_group(pid, Signal::SIGKILL);
                    }
                    // Its recorder, if it ran under one, saw how it ended.
                    let (code, signal) = ended_as(Some(dir), &m.assignment.id, (None, None));
                    m.state = ProcessState::Exited(ExitInfo {
                        code,
                        signal,
                        stopped_by_agent: matches!(m.state, ProcessState::Stopping { .. }),
                    });
                    m.exited_at_ms = now_ms();
                    m.reported = false;
                }
            }
            // Resume the output where the control plane's copy ends (that one line again, a
            // repeat the server drops), so nothing written while no agent read it is lost.
            // Followers of processes that are gone read to the end and stop.
            m.gone.store(m.handle.is_none(), Ordering::Release);
            m.followers = sup.follow_files(&m);
            sup.procs.insert(m.assignment.id.clone(), m);
        }
        sup.save();
        Ok(sup)
    }

    fn log_path(&self, id: &str, stream: Stream) -> Option<PathBuf> {
        let ext = match stream {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        };
        self.state_dir
            .as_ref()
            .map(|d| d.join("logs").join(format!("{}.{ext}", file_key(id))))
    }

    /// Follows the output files of `m` from the latest line the control plane took (or from
    /// their start).
    fn follow_files(&self, m: &Managed) -> Vec<JoinHandle<()>> {
        let mut followers = Vec::new();
        for stream in [Stream::Stdout, Stream::Stderr] {
            let Some(path) = self.log_path(&m.assignment.id, stream) else {
                continue;
            };
            let Ok(mut f) = OpenOptions::new().read(true).open(&path) else {
                continue;
            };
            let len = f.metadata().map(|md| md.len()).unwrap_or(0);
            let offset = m.pushed[stream_index(stream)].min(len);
            if f.seek(SeekFrom::Start(offset)).is_err() {
                continue;
            }
            followers.extend(follow(
                f,
                Arc::new(AtomicU64::new(offset)),
                Some(m.gone.clone()),
                m.assignment.id.clone(),
                stream,
                self.log_tx.clone(),
            ));
        }
        followers
    }

    /// Records that the control plane took `lines`: a new agent on the same state directory
    /// resumes the output files after them. What it took is given back to the file system
    /// (a hole punched in the file, its length and offsets unchanged) every
    /// [`PUNCH_EVERY_BYTES`], so a service that prints for months does not fill the disk.
    pub fn note_pushed(&mut self, lines: &[LogLine]) {
        // Through pipes there are no files to resume: nothing to record.
        if self.state_dir.is_none() {
            return;
        }
        let mut changed = BTreeSet::new();
        for line in lines {
            if let Some(m) = self.procs.get_mut(&line.assignment_id) {
                let at = &mut m.pushed[stream_index(line.stream)];
                if line.seq > *at {
                    *at = line.seq;
                    changed.insert((line.assignment_id.clone(), line.stream));
                }
            }
        }
        if changed.is_empty() {
            return;
        }
        self.save();
        for (id, stream) in changed {
            let i = stream_index(stream);
            let Some(m) = self.procs.get(&id) else {
                continue;
            };
            // Whole pages before the line the next agent would resume at.
            let upto = m.pushed[i] & !(PAGE_BYTES - 1);
            if upto < m.punched[i].saturating_add(self.punch_every) {
                continue;
            }
            if let Some(path) = self.log_path(&id, stream)
                && let Err(e) = punch_hole(&path, upto)
            {
                tracing::warn!(path = %path.display(), error = %e, "could not give back the disk space of output already sent; the file keeps growing");
            }
            if let Some(m) = self.procs.get_mut(&id) {
                m.punched[i] = upto;
            }
        }
    }

    /// Gives output back to the file system every `bytes` (tests).
    #[cfg(test)]
    fn punch_every(&mut self, bytes: u64) {
        self.punch_every = bytes;
    }

    /// Whether every output reader has finished: the output of the processes that are gone
    /// has all been read.
    pub fn output_finished(&self) -> bool {
        self.procs
            .values()
            .flat_map(|m| &m.followers)
            .all(JoinHandle::is_finished)
    }

    /// Writes `processes.json` (atomically: temporary file and rename). Failures are logged: the
    /// state file is a help after a restart, not a condition for running.
    fn save(&self) {
        if let Some(path) = &self.group_file {
            let groups: Vec<GroupRecord> = self
                .procs
                .values()
                .filter_map(|m| {
                    m.handle.as_ref().map(|h| GroupRecord {
                        pgid: h.pid(),
                        start_ticks: m.start_ticks,
                        assignment: Some(m.assignment.clone()),
                    })
                })
                .collect();
            write_atomically(path, &groups);
        }
        let Some(dir) = &self.state_dir else {
            return;
        };
        let records: Vec<Record> = self
            .procs
            .values()
            .map(|m| Record {
                assignment: m.assignment.clone(),
                state: m.state.clone(),
                start_ticks: m.start_ticks,
                restarts: m.restarts,
                reported: m.reported,
                exited_at_ms: m.exited_at_ms,
                pushed: m.pushed,
                started_at_ms: m.started_at_ms,
                crash_streak: m.crash_streak,
                last_exit: m.last_exit.clone(),
            })
            .collect();
        write_atomically(&dir.join("processes.json"), &records);
    }

    /// Starts `a` in a new process group. A program that cannot be started is recorded as
    /// [`ProcessState::FailedToStart`] (and reported like an exit), not returned as an error.
    /// Replaces an exited record with the same id; refuses (returns false) if one is live.
    pub fn start(&mut self, a: &Assignment, restart: bool) -> bool {
        let (restarts, crash_streak, pipe_offsets, pushed, last_exit) = match self.procs.get(&a.id)
        {
            Some(m) if m.handle.is_some() => {
                tracing::warn!("not starting {}: a copy is still running", a.id);
                return false;
            }
            Some(m) => (
                m.restarts + u32::from(restart),
                m.backoff_step() + u32::from(restart),
                m.pipe_offsets.clone(),
                m.pushed,
                // How the copy before this restart ended; none when it never started.
                match &m.state {
                    ProcessState::Exited(e) if restart => Some(e.clone()),
                    _ => None,
                },
            ),
            None => (0, 0, self.fresh_pipe_offsets(), [0, 0], None),
        };
        let mut managed = Managed {
            assignment: a.clone(),
            handle: None,
            start_ticks: None,
            state: ProcessState::FailedToStart {
                error: String::new(),
            },
            stop_deadline: None,
            exited_at_ms: 0,
            started_at_ms: now_ms(),
            restarts,
            crash_streak,
            last_exit,
            reported: false,
            gone: Arc::new(AtomicBool::new(false)),
            pipe_offsets,
            pushed,
            punched: [0, 0],
            followers: Vec::new(),
        };
        match self.spawn(
            a,
            &managed.gone,
            &managed.pipe_offsets,
            &mut managed.followers,
        ) {
            Ok(child) => {
                let pid = child.id();
                tracing::info!(id = %a.id, pid, "started");
                managed.state = ProcessState::Running { pid };
                managed.start_ticks = process_start_ticks(pid);
                managed.handle = Some(Handle::Child(child));
            }
            Err(error) => {
                tracing::warn!(id = %a.id, "failed to start: {error}");
                managed.state = ProcessState::FailedToStart { error };
                managed.exited_at_ms = now_ms();
            }
        }
        // The readers of a predecessor may still be finishing its output.
        if let Some(old) = self.procs.get_mut(&a.id) {
            managed
                .followers
                .extend(old.followers.drain(..).filter(|h| !h.is_finished()));
        }
        self.procs.insert(a.id.clone(), managed);
        self.save();
        true
    }

    fn spawn(
        &self,
        a: &Assignment,
        gone: &Arc<AtomicBool>,
        pipe_offsets: &[Arc<AtomicU64>; 2],
        followers: &mut Vec<JoinHandle<()>>,
    ) -> Result<Child, String> {
        let (program, args) = a
            .command
            .split_first()
            .ok_or_else(|| "empty command".to_string())?;
        // An earlier attempt's recorded end must not pass for this one's.
        if let Some(dir) = &self.state_dir {
            let status = exit_path(dir, &a.id);
            match std::fs::remove_file(&status) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("removing {}: {e}", status.display())),
            }
        }
        // With a state directory and a recorder, the recorder starts the program and says on
        // a pipe (its standard input) whether that worked.
        let recorder = match (&self.exit_recorder, &self.state_dir) {
            (Some(recorder), Some(dir)) => Some((recorder, exit_path(dir, &a.id))),
            _ => None,
        };
        let mut handshake = None;
        let mut cmd = match &recorder {
            Some((recorder, status)) => {
                let (reader, writer) =
                    std::io::pipe().map_err(|e| format!("creating a pipe: {e}"))?;
                handshake = Some((reader, *recorder));
                let user = self.run_as.as_ref().map(|u| exit_record::RunAsIds {
                    uid: u.uid,
                    gid: u.gid,
                    cwd: a.working_dir.as_deref().map(Path::new),
                });
                let mut cmd = recorder.command(status, &a.command, user);
                cmd.stdin(writer);
                cmd
            }
            None => {
                let mut cmd = Command::new(program);
                cmd.args(args).stdin(Stdio::null());
                if let Some(user) = &self.run_as {
                    // (Started by root, the process also drops root's supplementary groups.)
                    std::os::unix::process::CommandExt::uid(&mut cmd, user.uid);
                    std::os::unix::process::CommandExt::gid(&mut cmd, user.gid);
                }
                cmd
            }
        };
        if let Some(user) = &self.run_as {
            // The user's own, not root's; a job's `env` may still set them.
            cmd.env("HOME", &user.home)
                .env("USER", &user.name)
                .env("LOGNAME", &user.name);
        }
        // The agent's own token (given to it in the environment) is not the job's: a rank
        // holding it could act as any node agent of the fleet.
        cmd.env_remove("SWITCHYARD_TOKEN")
            .envs(launch_env(a))
            .process_group(0);
        if let Some(dir) = &a.working_dir {
            // Checked here so the error names the directory, not the program.
            match std::fs::metadata(dir) {
                Ok(md) if md.is_dir() => {}
                Ok(_) => return Err(format!("working directory {dir}: not a directory")),
                Err(e) => return Err(format!("working directory {dir}: {e}")),
            }
            cmd.current_dir(dir);
        }
        // With a state directory, output goes to append-only files the process can keep
        // writing to whatever happens to the agent; otherwise through pipes.
        let mut files = Vec::new();
        for stream in [Stream::Stdout, Stream::Stderr] {
            if let Some(path) = self.log_path(&a.id, stream) {
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| format!("opening {}: {e}", path.display()))?;
                let offset = f.metadata().map(|m| m.len()).unwrap_or(0);
                let reader = File::open(&path)
                    .and_then(|mut r| r.seek(SeekFrom::Start(offset)).map(|_| r))
                    .map_err(|e| format!("opening {}: {e}", path.display()))?;
                files.push((stream, reader, offset));
                match stream {
                    Stream::Stdout => cmd.stdout(f),
                    Stream::Stderr => cmd.stderr(f),
                };
            }
        }
        if files.is_empty() {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        let mut child = match (cmd.spawn(), &recorder) {
            (Ok(child), _) => child,
            (Err(e), Some((recorder, _))) => {
                return Err(format!(
                    "starting the exit recorder {}: {e}",
                    recorder.program.display()
                ));
            }
            (Err(e), None) => {
                let user = self.run_as.as_ref().map(|u| exit_record::RunAsIds {
                    uid: u.uid,
                    gid: u.gid,
                    cwd: a.working_dir.as_deref().map(Path::new),
                });
                return Err(exit_record::start_error(program, user, &e));
            }
        };
        // Our copy of the handshake's write end goes with the command, so that a recorder
        // that dies before answering reads as the end of the pipe, not a hang.
        drop(cmd);
        if let Some((reader, recorder)) = handshake {
            let mut line = String::new();
            let _ = BufReader::new(reader).read_line(&mut line);
            let line = line.trim_end();
            if line != STARTED {
                let _ = child.kill();
                let _ = child.wait();
                return Err(match line.strip_prefix(NOT_STARTED) {
                    Some(reason) => reason.to_string(),
                    None => format!(
                        "the exit recorder {} ended without starting {program}",
                        recorder.program.display()
                    ),
                });
            }
        }
        for (stream, reader, offset) in files {
            followers.extend(follow(
                reader,
                Arc::new(AtomicU64::new(offset)),
                Some(gone.clone()),
                a.id.clone(),
                stream,
                self.log_tx.clone(),
            ));
        }
        if let Some(out) = child.stdout.take() {
            followers.extend(follow(
                out,
                pipe_offsets[0].clone(),
                None,
                a.id.clone(),
                Stream::Stdout,
                self.log_tx.clone(),
            ));
        }
        if let Some(err) = child.stderr.take() {
            followers.extend(follow(
                err,
                pipe_offsets[1].clone(),
                None,
                a.id.clone(),
                Stream::Stderr,
                self.log_tx.clone(),
            ));
        }
        Ok(child)
    }

    /// Asks `id` to stop within its assignment's `stop_grace_ms`; see
    /// [`Supervisor::stop_within`].
    pub fn stop(&mut self, id: &str) {
        if let Some(m) = self.procs.get(id) {
            let grace = m.assignment.stop_grace();
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
            self.save();
        }
    }

    /// Reaps exited processes (and kills whatever is left of their groups), escalates stops
    /// whose grace period has passed. Returns the ids that exited in this call, with how.
    pub fn poll(&mut self) -> Vec<(String, ExitInfo)> {
        let mut exited = Vec::new();
        let now = Instant::now();
        let state_dir = self.state_dir.as_deref();
        for (id, m) in &mut self.procs {
            let Some(handle) = m.handle.as_mut() else {
                continue;
            };
            let pid = handle.pid();
            // A recorder's account is the program's own end; without one (or with a recorder
            // killed before its program ended), what the leader's wait or absence says.
            let ended = match handle {
                Handle::Child(child) => match child.try_wait() {
                    Ok(Some(status)) => {
                        Some(ended_as(state_dir, id, (status.code(), status.signal())))
                    }
                    Ok(None) => None,
                    Err(e) => {
                        tracing::warn!(id, pid, "cannot check process: {e}");
                        None
                    }
                },
                Handle::Adopted { pid, start_ticks } => {
                    let alive = process_start_ticks(*pid).is_some_and(|t| Some(t) == *start_ticks);
                    (!alive).then(|| ended_as(state_dir, id, (None, None)))
                }
            };
            // A stop's grace period is the group's, not its leader's: a wrapper shell that
            // dies at once on SIGTERM must not take down the trainer still writing its
            // checkpoint. The process counts as running (holding its accelerators) until its
            // group is empty or the grace period is over.
            let draining = ended.is_some()
                && matches!(m.state, ProcessState::Stopping { .. })
                && m.stop_deadline.is_some_and(|d| now < d)
                && group_alive(pid, None);
            match ended.filter(|_| !draining) {
                Some((code, signal)) => {
                    // The leader is gone; stragglers in its group go too.
                    signal_group(pid, Signal::SIGKILL);
                    let info = ExitInfo {
                        code,
                        signal,
                        stopped_by_agent: matches!(m.state, ProcessState::Stopping { .. }),
                    };
                    tracing::info!(id, pid, ?info, "exited");
                    m.state = ProcessState::Exited(info.clone());
                    m.handle = None;
                    m.gone.store(true, Ordering::Release);
                    m.exited_at_ms = now_ms();
                    m.stop_deadline = None;
                    exited.push((id.clone(), info));
                }
                None => {
                    if !draining && m.stop_deadline.is_some_and(|d| now >= d) {
                        tracing::warn!(id, pid, "grace period over: SIGKILL to the process group");
                        signal_group(pid, Signal::SIGKILL);
                        m.stop_deadline = None;
                    }
                }
            }
        }
        if !exited.is_empty() {
            self.save();
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
                backoff_step: m.backoff_step(),
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
                last_exit: m.last_exit.clone(),
            })
            .collect()
    }

    /// Records that the control plane has received these statuses: the exits among them may now
    /// be forgotten.
    pub fn mark_reported(&mut self, sent: &[ProcessStatus]) {
        let mut changed = false;
        for s in sent {
            if let Some(m) = self.procs.get_mut(&s.assignment_id)
                && !m.reported
                && m.state == s.state
                && matches!(
                    m.state,
                    ProcessState::Exited(_) | ProcessState::FailedToStart { .. }
                )
            {
                m.reported = true;
                changed = true;
            }
        }
        if changed {
            self.save();
        }
    }

    /// Drops the record of an exited process (and its output files). No-op for a live one.
    pub fn forget(&mut self, id: &str) {
        if self.procs.get(id).is_some_and(|m| m.handle.is_none()) {
            self.procs.remove(id);
            for stream in [Stream::Stdout, Stream::Stderr] {
                if let Some(p) = self.log_path(id, stream) {
                    let _ = std::fs::remove_file(p);
                }
            }
            if let Some(dir) = &self.state_dir {
                let record = exit_path(dir, id);
                let _ = std::fs::remove_file(exit_record::unfinished_path(&record));
                let _ = std::fs::remove_file(record);
            }
            self.save();
        }
    }

    /// Log lines read since the last call, in the order read.
    pub fn drain_logs(&self) -> Vec<LogLine> {
        self.log_rx.try_iter().collect()
    }

    /// The next log line read and not yet taken, if any.
    pub fn next_log(&self) -> Option<LogLine> {
        self.log_rx.try_recv().ok()
    }

    /// Whether output goes to files (a state directory) that keep what is not yet read: then
    /// lines left in them wait there, and none need be dropped.
    pub fn output_in_files(&self) -> bool {
        self.state_dir.is_some()
    }

    /// Number of live processes.
    pub fn live(&self) -> usize {
        self.procs.values().filter(|m| m.handle.is_some()).count()
    }

    /// Asks everything to stop within `grace` (see [`Supervisor::stop_within`]). Whoever
    /// waits for it must keep polling and taking the output, or a process printing on its way
    /// out blocks on the full queue and misses its grace; [`Supervisor::kill_remaining`] ends
    /// what is left.
    pub fn stop_all(&mut self, grace: Duration) {
        let ids: Vec<String> = self.procs.keys().cloned().collect();
        for id in &ids {
            self.stop_within(id, grace);
        }
    }

    /// Kills every process still running (SIGKILL to its group), waiting at most 5 s in all
    /// for them to go; one still there after that stays recorded as stopping, for the next
    /// agent on the state directory to finish.
    pub fn kill_remaining(&mut self) {
        self.kill_all();
    }

    /// When the last heartbeat the control plane answered was sent (Unix ms): the one noted
    /// with [`Supervisor::note_answered_heartbeat`], or the one a previous agent on the same
    /// state directory noted. `None` without a state directory or before any.
    pub fn last_answered_heartbeat_ms(&self) -> Option<u64> {
        self.last_answered_heartbeat_ms
    }

    /// Notes that the control plane answered a heartbeat sent at `sent_unix_ms`; with a state
    /// directory it is written to `heartbeat.json` for the next agent there.
    pub fn note_answered_heartbeat(&mut self, sent_unix_ms: u64) {
        let Some(dir) = &self.state_dir else {
            return;
        };
        self.last_answered_heartbeat_ms = Some(sent_unix_ms);
        write_atomically(&dir.join(HEARTBEAT_FILE), &HeartbeatRecord { sent_unix_ms });
    }

    /// When the next SIGKILL is due: the earliest end of a stopping process's grace period.
    pub fn next_kill_at(&self) -> Option<Instant> {
        self.procs
            .values()
            .filter(|m| m.handle.is_some())
            .filter_map(|m| m.stop_deadline)
            .min()
    }

    /// Leaves every process running and forgets them (they stay in the state file for the next
    /// supervisor to adopt). Without a state directory this is the same as dropping.
    pub fn detach(mut self) {
        if self.state_dir.is_some() {
            self.save();
            for m in self.procs.values_mut() {
                m.handle = None;
                m.gone.store(true, Ordering::Release);
            }
        }
    }

    fn kill_all(&mut self) {
        // Every group is signalled before any is waited for, and the wait is bounded: a
        // process stuck in the kernel (a hung file system or device driver) dies only when
        // the kernel lets it, and must not hold the agent's shutdown, or the others' kills.
        let mut killed = Vec::new();
        for (id, m) in &mut self.procs {
            let Some(mut handle) = m.handle.take() else {
                continue;
            };
            signal_group(handle.pid(), Signal::SIGKILL);
            if let Handle::Child(child) = &mut handle {
                let _ = child.kill();
            }
            killed.push((id.clone(), handle));
        }
        if killed.is_empty() {
            return;
        }
        let deadline = Instant::now() + KILL_WAIT;
        let state_dir = self.state_dir.clone();
        for (id, handle) in killed {
            let ended = match handle {
                Handle::Child(mut child) => {
                    let ended = reap_by(&mut child, deadline);
                    if ended.is_none() {
                        tracing::warn!(
                            %id,
                            pid = child.id(),
                            "still there {} s after SIGKILL (stuck in the kernel?); the next \
                             agent on this state directory finishes the kill",
                            KILL_WAIT.as_secs()
                        );
                    }
                    ended
                }
                Handle::Adopted { .. } => Some((None, Some(9))),
            };
            // A program that ended before the kill reached it ended as its recorder saw.
            let ended = ended.map(|killed| ended_as(state_dir.as_deref(), &id, killed));
            let Some(m) = self.procs.get_mut(&id) else {
                continue;
            };
            m.gone.store(true, Ordering::Release);
            match ended {
                Some((code, signal)) => {
                    m.state = ProcessState::Exited(ExitInfo {
                        code,
                        signal,
                        stopped_by_agent: true,
                    });
                    m.exited_at_ms = now_ms();
                }
                // Still holding its accelerators: recorded as stopping (with its start time),
                // so the next agent adopts it and starts nothing in its place until it is gone.
                None => {
                    if let ProcessState::Running { pid } = m.state {
                        m.state = ProcessState::Stopping { pid };
                    }
                }
            }
        }
        self.save();
    }
}

impl Drop for Supervisor {
    /// Nothing outlives the supervisor unless it was [detached](Supervisor::detach): every
    /// process group still running is killed.
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
            if let Some(st) = s.statuses().into_iter().find(|st| st.assignment_id == id)
                && let ProcessState::Exited(info) = st.state
            {
                return info;
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
        assert_eq!(out[0].seq, s.pipe_seq_base);
    }

    #[test]
    fn a_later_supervisor_writes_pipes_above_an_earlier_ones_positions() {
        // Without a state directory a new agent cannot know where its predecessor's copy of a
        // replica stopped writing; starting above it keeps the server from dropping the new
        // lines as repeats.
        let first = Supervisor::new();
        std::thread::sleep(Duration::from_millis(2));
        let second = Supervisor::new();
        assert!(second.pipe_seq_base >= first.pipe_seq_base + (2 << PIPE_SEQ_SHIFT));
        assert!(second.pipe_seq_base <= i64::MAX as u64);
    }

    #[test]
    fn a_missing_working_directory_is_named() {
        let mut s = Supervisor::new();
        let mut a = sh("nowhere", "true");
        a.working_dir = Some("/nonexistent/switchyard-dir".into());
        assert!(s.start(&a, false));
        match &s.statuses()[0].state {
            ProcessState::FailedToStart { error } => assert!(
                error.starts_with("working directory /nonexistent/switchyard-dir: "),
                "{error}"
            ),
            other => panic!("{other:?}"),
        }
    }

    /// `last_exit` is how the copy before the latest restart ended: none after a copy that
    /// never started, none on a start that is no restart.
    #[test]
    fn last_exit_is_the_copy_before_only() {
        let mut s = Supervisor::new();
        let a = sh("again", "exit 3");
        assert!(s.start(&a, false));
        wait_exit(&mut s, "again");
        assert!(s.start(&a, false));
        assert_eq!(s.statuses()[0].last_exit, None, "not a restart");
        wait_exit(&mut s, "again");
        let mut broken = a.clone();
        broken.command = vec!["/nonexistent/switchyard-test-binary".into()];
        assert!(s.start(&broken, true));
        assert!(matches!(
            s.statuses()[0].state,
            ProcessState::FailedToStart { .. }
        ));
        assert!(s.start(&a, true));
        assert_eq!(
            s.statuses()[0].last_exit,
            None,
            "the copy before never started"
        );
    }

    #[test]
    fn a_restarted_process_continues_its_streams_positions() {
        // Through pipes: the server keeps one line per (assignment, stream, seq), so a restart
        // must not print at positions its predecessor used.
        let mut s = Supervisor::new();
        let a = sh("again", "echo start; echo err >&2; exit 3");
        assert!(s.start(&a, false));
        wait_exit(&mut s, "again");
        let first = logs_until(&s, 2);
        assert_eq!(s.statuses()[0].last_exit, None, "not restarted yet");
        assert!(s.start(&a, true));
        // The restarted copy's status says how the one before it ended.
        assert_eq!(
            s.statuses()[0].last_exit.as_ref().map(|e| e.code),
            Some(Some(3))
        );
        wait_exit(&mut s, "again");
        let second = logs_until(&s, 2);
        for stream in [Stream::Stdout, Stream::Stderr] {
            let seqs: Vec<u64> = first
                .iter()
                .chain(&second)
                .filter(|l| l.stream == stream)
                .map(|l| l.seq)
                .collect();
            let len = if stream == Stream::Stdout { 6 } else { 4 };
            let base = s.pipe_seq_base;
            assert_eq!(seqs, [base, base + len], "{stream:?}: {first:?} {second:?}");
        }
        assert_eq!(s.statuses()[0].restarts, 1);
    }

    #[test]
    fn a_long_healthy_run_ends_the_crash_loops_back_off() {
        let mut s = Supervisor::new();
        let a = sh("flaky", "exit 3");
        let step = |s: &Supervisor| s.observed()[0].backoff_step;
        assert!(s.start(&a, false));
        wait_exit(&mut s, "flaky");
        assert_eq!(step(&s), 0);
        for n in 1..=3 {
            assert!(s.start(&a, true));
            wait_exit(&mut s, "flaky");
            assert_eq!(step(&s), n, "crash {n} climbs the back-off");
        }
        // The next run lasts longer than the reset: its exit starts the back-off over, and the
        // restart count the control plane sees still grows.
        assert!(s.start(&a, true));
        wait_exit(&mut s, "flaky");
        let m = s.procs.get_mut("flaky").expect("known");
        m.started_at_ms = m.exited_at_ms - crate::reconcile::BACKOFF_RESET_MS;
        assert_eq!(step(&s), 0);
        assert!(s.start(&a, true));
        wait_exit(&mut s, "flaky");
        assert_eq!(step(&s), 1);
        assert_eq!(s.statuses()[0].restarts, 5);
    }

    #[test]
    fn the_crash_streak_survives_an_agent_restart() {
        let dir = state_dir("streak");
        let mut s = Supervisor::with_state_dir(&dir).expect("state dir");
        let a = sh("flaky", "exit 3");
        assert!(s.start(&a, false));
        wait_exit(&mut s, "flaky");
        for _ in 0..2 {
            assert!(s.start(&a, true));
            wait_exit(&mut s, "flaky");
        }
        assert_eq!(s.observed()[0].backoff_step, 2);
        s.detach();
        let s = Supervisor::with_state_dir(&dir).expect("the next agent");
        assert_eq!(s.observed()[0].backoff_step, 2);
        assert_eq!(s.statuses()[0].restarts, 2);
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
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

    /// The grace period of a stop is the group's: a wrapper shell that dies at once on SIGTERM
    /// does not take down the child still saving its checkpoint, and the stop ends when the
    /// group is empty, not at the deadline.
    #[test]
    fn a_stop_gives_the_whole_group_its_grace_period() {
        let saved = std::env::temp_dir().join(format!("sy-grace-{}", std::process::id()));
        let _ = std::fs::remove_file(&saved);
        let mut s = Supervisor::new();
        let a = sh(
            "wrapped",
            &format!(
                "sh -c 'trap \"sleep 0.5; echo saved > {}; exit 0\" TERM; echo ready; \
                 while true; do sleep 0.05; done' & wait",
                saved.display()
            ),
        );
        s.start(&a, false);
        logs_until(&s, 1);
        let t0 = Instant::now();
        s.stop_within("wrapped", Duration::from_secs(20));
        let info = wait_exit(&mut s, "wrapped");
        assert!(info.stopped_by_agent, "{info:?}");
        assert_eq!(
            std::fs::read_to_string(&saved).ok().as_deref(),
            Some("saved\n"),
            "the child was killed before it saved"
        );
        assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
        let _ = std::fs::remove_file(&saved);
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
        assert!(s.start(&sh("other", "echo up; sleep 300"), false));
        logs_until(&s, 2);
        let pids: Vec<u32> = s
            .statuses()
            .iter()
            .map(|st| match st.state {
                ProcessState::Running { pid } => pid,
                ref other => panic!("{other:?}"),
            })
            .collect();
        drop(s);
        // Killed and reaped by drop: neither our sleeping shell nor a zombie of it is left.
        for pid in pids {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            assert!(!stat.contains("(sh) "), "{stat}");
        }
    }
    #[test]
    fn start_ticks_from_proc_stat() {
        let stat = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 200";
        assert_eq!(parse_start_ticks(stat), Some(98765));
        let zombie = "1234 (sh) Z 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 0 0";
        assert_eq!(parse_start_ticks(zombie), None);
        assert_eq!(parse_start_ticks("garbage"), None);
        let me = process_start_ticks(std::process::id()).expect("this process has a start time");
        assert!(me > 0);
    }

    fn state_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sy-agent-state-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn the_last_answered_heartbeat_is_kept_for_the_next_agent_on_the_directory() {
        let dir = state_dir("heartbeat");
        let mut s = Supervisor::with_state_dir(&dir).expect("state dir");
        assert_eq!(s.last_answered_heartbeat_ms(), None);
        s.note_answered_heartbeat(1_700_000_000_000);
        s.note_answered_heartbeat(1_700_000_005_000);
        drop(s);
        let s = Supervisor::with_state_dir(&dir).expect("the next agent");
        assert_eq!(s.last_answered_heartbeat_ms(), Some(1_700_000_005_000));
        drop(s);
        // A record that cannot be read is no reason not to run: the next agent times orphans
        // from its own start.
        std::fs::write(dir.join(HEARTBEAT_FILE), "{\"sent_unix_ms\": \"soon\"}")
            .expect("a bad record");
        let s = Supervisor::with_state_dir(&dir).expect("a state dir with a bad record");
        assert_eq!(s.last_answered_heartbeat_ms(), None);
        drop(s);
        // Without a state directory nothing is kept.
        let mut s = Supervisor::new();
        s.note_answered_heartbeat(1_700_000_000_000);
        assert_eq!(s.last_answered_heartbeat_ms(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn output_the_control_plane_took_gives_its_disk_space_back() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = state_dir("punch");
        let mut s = Supervisor::with_state_dir(&dir).expect("state dir");
        s.punch_every(256 << 10);
        // 2 MiB of 64-byte lines, then one more line later, then it idles.
        let a = sh(
            "chatty",
            "head -c 2064384 /dev/zero | tr '\\0' x | fold -w 63; echo; sleep 0.3; echo last; sleep 30",
        );
        assert!(s.start(&a, false));
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut got = Vec::new();
        while got.last().is_none_or(|l: &LogLine| l.line != "last") {
            assert!(Instant::now() < deadline, "only {} lines", got.len());
            let batch = s.drain_logs();
            s.note_pushed(&batch);
            got.extend(batch);
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(got.len(), 2064384 / 63 + 1);
        assert!(got.iter().rev().skip(1).all(|l| l.line.len() == 63));
        let last = got.last().expect("last");
        assert_eq!(last.seq, 2064384 / 63 * 64, "offsets are unchanged");
        let md = std::fs::metadata(dir.join("logs").join("chatty.stdout")).expect("output file");
        assert_eq!(md.len(), last.seq + 5, "the file keeps its length");
        let on_disk = md.blocks() * 512;
        assert!(
            on_disk < 512 << 10,
            "{on_disk} bytes of a {}-byte file still on disk",
            md.len()
        );
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_new_supervisor_adopts_what_the_old_one_left_running() {
        let dir = state_dir("adopt");
        let mut old = Supervisor::with_state_dir(&dir).expect("state dir");
        let a = sh(
            "svc",
            "echo first; while true; do sleep 0.05; [ -f $MARK ] && echo second && rm $MARK; done",
        );
        let mark = dir.join("mark");
        let mut a = a;
        a.env
            .insert("MARK".into(), mark.to_string_lossy().into_owned());
        old.start(&a, false);
        let first = logs_until(&old, 1);
        assert_eq!(first[0].line, "first");
        assert_eq!(first[0].seq, 0);
        old.note_pushed(&first);
        let pid = match old.statuses()[0].state {
            ProcessState::Running { pid } => pid,
            ref other => panic!("{other:?}"),
        };
        old.detach(); // the agent "crashes"; the process lives on

        // The process writes while no agent reads it.
        std::fs::write(&mark, "").expect("mark");
        let out = dir.join("logs").join("svc.stdout");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::fs::read_to_string(&out).is_ok_and(|t| !t.contains("second")) {
            assert!(Instant::now() < deadline, "no second line");
            std::thread::sleep(Duration::from_millis(20));
        }

        let mut new = Supervisor::with_state_dir(&dir).expect("state dir again");
        assert_eq!(new.live(), 1);
        assert_eq!(new.statuses()[0].state, ProcessState::Running { pid });
        // Reading resumes at the last line the control plane took (a repeat it drops), so
        // what was written in between is not lost; each line keeps its byte offset.
        let resumed = logs_until(&new, 2);
        let got: Vec<(&str, u64)> = resumed.iter().map(|l| (l.line.as_str(), l.seq)).collect();
        assert_eq!(got, [("first", 0), ("second", "first\n".len() as u64)]);
        new.stop_within("svc", Duration::from_secs(30));
        let info = wait_exit(&mut new, "svc");
        assert!(info.stopped_by_agent);
        assert_eq!(
            info.code, None,
            "the exit code of an adopted process is unknown"
        );
        drop(new);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A recorder in shell, speaking the protocol of `switchyard record-exit` (which this
    /// crate cannot run): handshake on fd 0, the program's end written to `--status`.
    fn shell_recorder() -> ExitRecorder {
        let script = r#"status=$2; shift 3; trap : TERM INT HUP; echo started >&0
"$@" </dev/null; c=$?
printf '{"code":%d,"signal":null}' "$c" > "$status.tmp" && mv "$status.tmp" "$status"; exit "$c""#;
        ExitRecorder {
            program: "sh".into(),
            arg0: None,
            args: vec!["-c".into(), script.into(), "recorder".into()],
        }
    }

    /// `path` (absolute) as seen from the working directory, through the root.
    fn relative_to_cwd(path: &Path) -> PathBuf {
        let cwd = std::env::current_dir().expect("working directory");
        let up: PathBuf = cwd.components().skip(1).map(|_| "..").collect();
        up.join(path.strip_prefix("/").expect("absolute"))
    }

    #[test]
    fn under_a_recorder_an_adopted_process_reports_its_exit_code() {
        let dir = state_dir("recorded");
        // A relative state directory, and a process that runs elsewhere: the recorder still
        // finds where to write.
        let mut old = Supervisor::with_state_dir(&relative_to_cwd(&dir))
            .expect("state dir")
            .with_exit_recorder(shell_recorder());
        let release = dir.join("release");
        let mut slow = sh(
            "slow",
            "while [ ! -f $RELEASE ]; do sleep 0.02; done; exit 7",
        );
        slow.env
            .insert("RELEASE".into(), release.to_string_lossy().into_owned());
        // Deeper than the test's working directory, so the relative path means another place
        // from there.
        let elsewhere = dir.join("a/b/c/d/e/f/g/h");
        std::fs::create_dir_all(&elsewhere).expect("working directory");
        slow.working_dir = Some(elsewhere.to_string_lossy().into_owned());
        // An earlier attempt's record is not this one's.
        let stale = dir.join("exits").join("slow.json");
        std::fs::write(&stale, r#"{"code":0,"signal":null}"#).expect("a stale record");
        assert!(old.start(&slow, false));
        assert!(
            !stale.exists(),
            "starting an attempt drops the last one's record"
        );
        assert!(old.start(&sh("quick", "exit 5"), false));
        assert!(old.start(&sh("fine", "true"), false));
        old.detach(); // the agent "crashes"
        // "quick" and "fine" end while no agent is there.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(dir.join("exits/quick.json").exists() && dir.join("exits/fine.json").exists()) {
            assert!(Instant::now() < deadline, "no records");
            std::thread::sleep(Duration::from_millis(10));
        }

        let mut new = Supervisor::with_state_dir(&dir).expect("state dir again");
        assert_eq!(new.live(), 1, "{:?}", new.statuses());
        let code = |s: &Supervisor, id: &str| match &s
            .statuses()
            .iter()
            .find(|st| st.assignment_id == id)
            .expect(id)
            .state
        {
            ProcessState::Exited(info) => info.code,
            other => panic!("{id}: {other:?}"),
        };
        assert_eq!(code(&new, "quick"), Some(5));
        assert_eq!(code(&new, "fine"), Some(0));
        std::fs::write(&release, "").expect("release");
        let info = wait_exit(&mut new, "slow");
        assert_eq!(info.code, Some(7), "the recorder saw it end");
        assert!(!info.stopped_by_agent);
        // A record goes with the process's.
        new.forget("quick");
        assert!(!dir.join("exits").join("quick.json").exists());
        drop(new);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_new_attempt_drops_the_last_ones_exit_record_even_without_a_recorder() {
        let dir = state_dir("stale-record");
        let mut s = Supervisor::with_state_dir(&dir).expect("state dir");
        let stale = dir.join("exits").join("x.json");
        std::fs::write(&stale, r#"{"code":0,"signal":null}"#).expect("a stale record");
        assert!(s.start(&sh("x", "exit 4"), false));
        assert!(!stale.exists());
        assert_eq!(wait_exit(&mut s, "x").code, Some(4));
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Waits (up to 30 s: a loaded machine may run a short script late) until `pid`, a child
    /// of this test that nobody reaps, has ended: a zombie, or gone.
    fn wait_until_ended(pid: u32) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|st| !st.contains(") Z "))
        {
            assert!(Instant::now() < deadline, "process {pid} did not end");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn processes_that_died_while_the_agent_was_away_are_reported_exited() {
        let dir = state_dir("died");
        let mut old = Supervisor::with_state_dir(&dir).expect("state dir");
        old.start(&sh("short", "sleep 0.2; echo last words"), false);
        let pid = old.procs["short"].handle.as_ref().expect("running").pid();
        old.detach();
        wait_until_ended(pid);
        // Nobody reaps it here (it was this test's child), so it is a zombie: that counts as gone,
        // as it would be after init reaped it.
        let new = Supervisor::with_state_dir(&dir).expect("state dir again");
        assert_eq!(new.live(), 0);
        match &new.statuses()[0].state {
            ProcessState::Exited(info) => {
                assert_eq!(info.code, None);
                assert!(!info.stopped_by_agent);
            }
            other => panic!("{other:?}"),
        }
        // What it wrote while no agent read it still reaches the control plane.
        let lines = logs_until(&new, 1);
        assert_eq!(lines[0].line, "last words");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !new.output_finished() {
            assert!(
                Instant::now() < deadline,
                "the reader of a gone process stops"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A process whose leader died while no agent watched, but whose group lives on (a trainer
    /// under a wrapper that died), is killed by the next agent: it would hold the accelerators
    /// and checkpoint directory of the next attempt.
    #[test]
    fn the_next_agent_kills_the_group_a_dead_leader_left() {
        let dir = state_dir("orphans");
        let mut old = Supervisor::with_state_dir(&dir).expect("state dir");
        old.start(
            &sh("wrapped", "sleep 300 & echo child=$!; sleep 0.2; exit 0"),
            false,
        );
        let lines = logs_until(&old, 1);
        let child: i32 = lines[0]
            .line
            .strip_prefix("child=")
            .and_then(|p| p.parse().ok())
            .expect("child pid line");
        let leader = old.procs["wrapped"].handle.as_ref().expect("running").pid();
        old.detach();
        wait_until_ended(leader);
        let alive = |pid: i32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|st| !st.contains(") Z "))
        };
        assert!(alive(child), "the child outlives its leader");
        let new = Supervisor::with_state_dir(&dir).expect("state dir again");
        assert_eq!(new.live(), 0);
        let deadline = Instant::now() + Duration::from_secs(30);
        while alive(child) {
            assert!(
                Instant::now() < deadline,
                "the orphaned child {child} survived"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_next_agent_kills_the_groups_a_killed_one_left_and_only_one_runs_at_a_time() {
        let dir = state_dir("groups");
        let file = dir.join("node.groups");
        let mut first = Supervisor::with_group_file(&file).expect("group file");
        // Silent, with a child of its own: the closed pipe of a dead agent would never stop it.
        first.start(
            &sh("quiet", "sleep 1000 & while true; do sleep 0.1; done"),
            false,
        );
        let pgid = match first.statuses()[0].state {
            ProcessState::Running { pid } => pid,
            ref other => panic!("{other:?}"),
        };
        let ticks = process_start_ticks(pgid);
        assert!(group_alive(pgid, ticks));
        let busy = Supervisor::with_group_file(&file).expect_err("one agent at a time");
        assert!(matches!(busy, StateError::Busy { .. }), "{busy}");

        // The agent is killed outright: its lock goes with it, its processes stay.
        drop(first._lock.take());
        std::mem::forget(first);

        let second = Supervisor::with_group_file(&file).expect("the next agent");
        // Gone by the time the next agent is ready to start anything.
        assert!(!group_alive(pgid, ticks), "group {pgid} still runs");
        // And reported ended, how unknown: the server restarts its gang rather than hand the
        // same rank to this agent again in the middle of the attempt.
        let statuses = second.statuses();
        assert_eq!(statuses.len(), 1, "{statuses:?}");
        assert_eq!(statuses[0].assignment_id, "quiet");
        assert_eq!(
            statuses[0].state,
            ProcessState::Exited(ExitInfo {
                code: None,
                signal: None,
                stopped_by_agent: false
            })
        );
        drop(second);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// An agent with a state directory records its groups in the node's group file too: the
    /// same directory adopts them, and an agent of the node on another directory (or none)
    /// kills them instead of running a second copy of every rank beside them.
    #[test]
    fn a_node_group_file_stops_a_state_dir_agents_survivors_whatever_the_next_one_uses() {
        let dir = state_dir("node-groups");
        let file = dir.join("node.groups");
        let (st1, st2) = (dir.join("st1"), dir.join("st2"));
        let start = |state: &Path| {
            let mut sup = Supervisor::with_state_dir(state)
                .expect("state dir")
                .with_node_group_file(&file)
                .expect("group file");
            sup.start(
                &sh("quiet", "sleep 1000 & while true; do sleep 0.1; done"),
                false,
            );
            let pgid = match sup.statuses()[0].state {
                ProcessState::Running { pid } => pid,
                ref other => panic!("{other:?}"),
            };
            (sup, pgid, process_start_ticks(pgid))
        };
        let killed_outright = |mut sup: Supervisor| {
            drop(sup._lock.take());
            drop(sup.group_lock.take());
            std::mem::forget(sup);
        };
        let (first, pgid, ticks) = start(&st1);
        let busy = Supervisor::with_group_file(&file).expect_err("the node's agent runs");
        assert!(matches!(busy, StateError::Busy { .. }), "{busy}");
        killed_outright(first);

        // The same directory adopts the survivor: nothing is killed.
        let again = Supervisor::with_state_dir(&st1)
            .expect("state dir")
            .with_node_group_file(&file)
            .expect("group file");
        std::thread::sleep(Duration::from_millis(200));
        assert!(group_alive(pgid, ticks), "adopted, not killed");
        assert_eq!(again.statuses().len(), 1);
        killed_outright(again);

        // A start that fails on the group file (here: another agent holds it) hands the
        // supervisor back; detached, what it adopted runs on.
        let holder = lock_group_file(&file).expect("lock");
        let failed = Supervisor::with_state_dir(&st1)
            .expect("state dir")
            .with_node_group_file(&file)
            .expect_err("the group file is busy");
        let (sup, e) = *failed;
        assert!(matches!(e, StateError::Busy { .. }), "{e}");
        sup.detach();
        drop(holder);
        std::thread::sleep(Duration::from_millis(200));
        assert!(group_alive(pgid, ticks), "a failed start kills nothing");

        // Another directory kills it.
        let other = Supervisor::with_state_dir(&st2)
            .expect("state dir")
            .with_node_group_file(&file)
            .expect("group file");
        let deadline = Instant::now() + Duration::from_secs(30);
        while group_alive(pgid, ticks) {
            assert!(Instant::now() < deadline, "group {pgid} still runs");
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(other);

        // And so does an agent without a state directory.
        let (third, pgid, ticks) = start(&st2);
        killed_outright(third);
        let plain = Supervisor::with_group_file(&file).expect("the next agent");
        let deadline = Instant::now() + Duration::from_secs(30);
        while group_alive(pgid, ticks) {
            assert!(Instant::now() < deadline, "group {pgid} still runs");
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(plain);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_state_directory_serves_one_agent_at_a_time() {
        let dir = state_dir("busy");
        let first = Supervisor::with_state_dir(&dir).expect("state dir");
        let err = Supervisor::with_state_dir(&dir).expect_err("busy");
        assert!(err.to_string().contains("agent.lock"), "{err}");
        drop(first);
        Supervisor::with_state_dir(&dir).expect("free again");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn process_group_from_proc_stat() {
        let stat = "1234 (a (b) c) S 1 777 777 0 -1 4194560 0 0 0 0";
        assert_eq!(parse_process_group(stat), Some(777));
        assert_eq!(parse_process_group("1 (x) Z 1 5 5"), None);
    }

    #[test]
    fn a_corrupt_state_file_is_a_clear_error() {
        let dir = state_dir("corrupt");
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("processes.json"), "{not json").expect("write");
        let err = Supervisor::with_state_dir(&dir).expect_err("corrupt");
        assert!(err.to_string().contains("processes.json"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
