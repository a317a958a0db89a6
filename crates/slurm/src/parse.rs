//! Parsers of Slurm's command-line output: pure functions over text, tested on outputs captured
//! from a real Slurm 22.05 (`tests/fixtures/`). They never panic: a line they cannot read is an
//! error naming the line, never a guess.

use std::collections::BTreeMap;
use std::fmt;

/// Field separator of the `--format` strings below (ASCII unit separator: never in a name).
pub const SEP: char = '\u{1f}';

/// `sinfo --Format` (`-O`) for [`parse_sinfo_nodes`]: node, partition, state, CPUs, GRES,
/// reason. `StateComplete` is the base state with every flag (`down+drain`, `idle+fail`,
/// `mixed+drain`), where `%T` prints one word and says `drained` for a node that is down and
/// drained. `:` with no width and the separator as suffix: no padding, nothing cut short.
pub fn sinfo_node_format() -> String {
    let field = |name: &str| format!("{name}:{SEP}");
    [
        field("NodeList"),
        field("Partition"),
        field("StateComplete"),
        field("CPUs"),
        field("Gres"),
        "Reason:".to_owned(),
    ]
    .join(",")
}

/// The same fields as `sinfo --format` (`-o`), with `%T` for the state: for a `sinfo` that
/// prints nothing for `StateComplete` (one that does not know the field says so on stderr
/// and succeeds).
pub fn sinfo_node_format_short_states() -> String {
    ["%N", "%P", "%T", "%c", "%G", "%E"].join(&SEP.to_string())
}

/// `squeue` format for [`parse_squeue`]: id, state, name, comment, nodes, reason, user,
/// partition, start time (epoch seconds with `SLURM_TIME_FORMAT=%s`, which the client sets).
pub fn squeue_format() -> String {
    ["%i", "%T", "%j", "%k", "%N", "%r", "%u", "%P", "%S"].join(&SEP.to_string())
}

/// A time Slurm printed with `SLURM_TIME_FORMAT=%s` (epoch seconds); `None` for `N/A`,
/// `Unknown`, `None`, 0 or anything else that is not a positive number of seconds.
pub fn epoch_seconds(text: &str) -> Option<i64> {
    text.trim().parse::<i64>().ok().filter(|&s| s > 0)
}

/// Output Slurm printed that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}: {text:?}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
    pub text: String,
}

fn err(line: usize, message: impl Into<String>, text: &str) -> ParseError {
    ParseError {
        line,
        message: message.into(),
        text: text.chars().take(200).collect(),
    }
}

/// A node's base state, as `sinfo %T` / `scontrol State=` print it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NodeBase {
    Idle,
    Allocated,
    Mixed,
    Completing,
    Down,
    Drained,
    Draining,
    Fail,
    Failing,
    Future,
    Reserved,
    Maint,
    Planned,
    /// Rebooting (`REBOOT_ISSUED`, `^` in `%T`): it comes back by itself.
    Rebooting,
    Unknown,
    Other(String),
}

/// A node's state: the base state and the flags Slurm adds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeState {
    pub base: NodeBase,
    /// `*`: slurmd does not answer.
    pub not_responding: bool,
    /// `DRAIN` flag (scontrol's `IDLE+DRAIN`).
    pub drain: bool,
    /// Powered down or powering down/up (`~`, `%`, `#`, `!` or POWERED_DOWN flags).
    pub powered_down: bool,
}

impl NodeState {
    /// Parses `idle`, `mixed`, `down*`, `drained`, `IDLE+DRAIN`, `DOWN+NOT_RESPONDING`, ….
    /// Never fails: an unknown word is kept as [`NodeBase::Other`].
    pub fn parse(text: &str) -> NodeState {
        let mut t = text.trim();
        let mut not_responding = false;
        let mut powered_down = false;
        let mut maint = false;
        let mut rebooting = false;
        while let Some(last) = t.chars().last() {
            match last {
                '*' => not_responding = true,
                '~' | '%' | '#' | '!' => powered_down = true,
                '$' => maint = true,
                '^' => rebooting = true,
                '@' | '-' => {}
                _ => break,
            }
            t = &t[..t.len() - last.len_utf8()];
        }
        let mut parts = t.split('+');
        let base_word = parts.next().unwrap_or("").to_ascii_lowercase();
        let mut drain = false;
        let mut fail = false;
        let mut invalid = false;
        for flag in parts {
            match flag.to_ascii_uppercase().as_str() {
                "DRAIN" => drain = true,
                "FAIL" => fail = true,
                "REBOOT_ISSUED" => rebooting = true,
                // Registered with a configuration other than slurm.conf's: `inval` in `%T`.
                "INVALID_REG" => invalid = true,
                "NOT_RESPONDING" => not_responding = true,
                "POWERED_DOWN" | "POWERING_DOWN" | "POWERING_UP" | "POWER_DOWN" => {
                    powered_down = true
                }
                "MAINTENANCE" => maint = true,
                _ => {}
            }
        }
        let base = match base_word.as_str() {
            "idle" => NodeBase::Idle,
            "allocated" | "alloc" => NodeBase::Allocated,
            "mixed" | "mix" => NodeBase::Mixed,
            "completing" | "comp" => NodeBase::Completing,
            "down" => NodeBase::Down,
            "drained" | "drain" => NodeBase::Drained,
            "draining" | "drng" => NodeBase::Draining,
            "fail" => NodeBase::Fail,
            "failing" | "failg" => NodeBase::Failing,
            "future" | "futr" => NodeBase::Future,
            "reserved" | "resv" => NodeBase::Reserved,
            "maint" => NodeBase::Maint,
            "planned" | "plnd" => NodeBase::Planned,
            "unknown" | "unk" => NodeBase::Unknown,
            _ => NodeBase::Other(base_word),
        };
        // Flags that `%T` prints as a state of their own (`inval`, `fail`, `failing`,
        // `maint`) or marks (`^`).
        let base = match base {
            NodeBase::Down => NodeBase::Down,
            _ if invalid => NodeBase::Other("invalid_reg".into()),
            NodeBase::Idle | NodeBase::Allocated | NodeBase::Mixed | NodeBase::Completing
                if rebooting =>
            {
                NodeBase::Rebooting
            }
            NodeBase::Idle if fail => NodeBase::Fail,
            NodeBase::Allocated | NodeBase::Mixed | NodeBase::Completing if fail => {
                NodeBase::Failing
            }
            NodeBase::Idle if maint => NodeBase::Maint,
            base => base,
        };
        NodeState {
            base,
            not_responding,
            drain,
            powered_down,
        }
    }

    /// Whether the node takes no new jobs while the jobs it runs go on: drained or draining,
    /// FAIL or FAILING (an administrator expects it to fail), in maintenance, rebooting or not
    /// there yet (FUTURE), and answering. (A node powered down for power saving is usable: Slurm powers
    /// it up on demand.) A node neither usable nor closed (down, not responding,
    /// a state Switchyard does not know) is a failed node to the scheduler.
    pub fn closed(&self) -> bool {
        !self.usable()
            && !self.not_responding
            && !matches!(
                self.base,
                NodeBase::Down | NodeBase::Unknown | NodeBase::Other(_)
            )
    }

    /// Not responding, though Slurm still has the node up (idle, mixed, allocated,
    /// completing) and so its jobs running: Slurm marks it down itself once it stays silent.
    pub fn briefly_unanswering(&self) -> bool {
        self.not_responding
            && matches!(
                self.base,
                NodeBase::Idle | NodeBase::Allocated | NodeBase::Mixed | NodeBase::Completing
            )
    }

    /// Whether Switchyard may count on the node: up, answering, not drained.
    pub fn usable(&self) -> bool {
        !self.not_responding
            && !self.drain
            && matches!(
                self.base,
                NodeBase::Idle
                    | NodeBase::Allocated
                    | NodeBase::Mixed
                    | NodeBase::Completing
                    | NodeBase::Reserved
                    | NodeBase::Planned
            )
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let base = match &self.base {
            NodeBase::Other(s) => s.as_str(),
            b => match b {
                NodeBase::Idle => "idle",
                NodeBase::Allocated => "allocated",
                NodeBase::Mixed => "mixed",
                NodeBase::Completing => "completing",
                NodeBase::Down => "down",
                NodeBase::Drained => "drained",
                NodeBase::Draining => "draining",
                NodeBase::Fail => "fail",
                NodeBase::Failing => "failing",
                NodeBase::Future => "future",
                NodeBase::Reserved => "reserved",
                NodeBase::Maint => "maint",
                NodeBase::Planned => "planned",
                NodeBase::Rebooting => "rebooting",
                _ => "unknown",
            },
        };
        write!(f, "{base}")?;
        if self.drain {
            write!(f, "+drain")?;
        }
        if self.not_responding {
            write!(f, "*")?;
        }
        if self.powered_down {
            write!(f, "~")?;
        }
        Ok(())
    }
}

/// One node of one partition, from `sinfo -N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    /// Without sinfo's `*` default marker.
    pub partition: String,
    pub default_partition: bool,
    pub state: NodeState,
    pub cpus: u32,
    /// GPUs from the node's GRES (`gpu:h100:8(S:0-1)` → 8).
    pub gpus: u32,
    /// Why it is down or drained (`none` when it is not).
    pub reason: String,
}

/// Parses `sinfo -h -N -O` with [`sinfo_node_format`] (or `-o` with
/// [`sinfo_node_format_short_states`]: the fields are the same).
pub fn parse_sinfo_nodes(text: &str) -> Result<Vec<Node>, ParseError> {
    let mut nodes = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(SEP).collect();
        if f.len() != 6 {
            return Err(err(
                i + 1,
                format!("expected 6 fields, found {}", f.len()),
                line,
            ));
        }
        let name = f[0].trim();
        if name.is_empty() {
            return Err(err(i + 1, "empty node name", line));
        }
        let partition = f[1].trim();
        let cpus = f[3]
            .trim()
            .parse::<u32>()
            .map_err(|_| err(i + 1, "CPU count is not a number", line))?;
        let gpus = parse_gres_gpus(f[4]).map_err(|m| err(i + 1, m, line))?;
        nodes.push(Node {
            name: name.to_owned(),
            partition: partition.trim_end_matches('*').to_owned(),
            default_partition: partition.ends_with('*'),
            state: NodeState::parse(f[2]),
            cpus,
            gpus,
            reason: f[5].trim().to_owned(),
        });
    }
    Ok(nodes)
}

/// GPUs in a GRES string: `(null)` → 0, `gpu:8` → 8, `gpu:h100:8(S:0-1),shard:16` → 8,
/// `gpu:a100:4,gpu:v100:2` → 6.
pub fn parse_gres_gpus(gres: &str) -> Result<u32, String> {
    let gres = gres.trim();
    if gres.is_empty() || gres == "(null)" || gres == "N/A" {
        return Ok(0);
    }
    let mut total: u32 = 0;
    for item in split_top_level(gres) {
        let item = item.split('(').next().unwrap_or("").trim();
        let mut parts = item.split(':');
        if parts.next() != Some("gpu") {
            continue;
        }
        let rest: Vec<&str> = parts.collect();
        let count = match rest.as_slice() {
            [] => 1,
            [n] if n.chars().all(|c| c.is_ascii_digit()) => parse_count(n)?,
            [_type] => 1,
            [_type, n, ..] => parse_count(n)?,
        };
        total = total.saturating_add(count);
    }
    Ok(total)
}

fn parse_count(n: &str) -> Result<u32, String> {
    n.parse::<u32>()
        .map_err(|_| format!("GRES count {n:?} is not a number"))
}

/// Splits at commas outside parentheses (`gpu:8(S:0,1),shard:2`).
fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth <= 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// A job's state (`squeue %T`, `scontrol JobState=`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JobState {
    Pending,
    Configuring,
    Running,
    Suspended,
    Completing,
    Completed,
    Cancelled,
    Failed,
    Timeout,
    NodeFail,
    Preempted,
    BootFail,
    Deadline,
    OutOfMemory,
    Requeued,
    /// Waiting in the queue under a hold of Slurm's (`REQUEUE_HOLD`, `SPECIAL_EXIT`,
    /// `RESV_DEL_HOLD`): it runs again only once released.
    HeldInQueue(String),
    Other(String),
}

impl JobState {
    pub fn parse(text: &str) -> JobState {
        let t = text.trim().to_ascii_uppercase();
        // scontrol may add flags (`CANCELLED by 0`); the first word is the state. (squeue's
        // `%T` prints a flag instead of the base state, as Slurm's job_state_string does:
        // a held requeue, a stop by signal, a resize are read as the state they amount to.)
        let word = t.split([' ', '+']).next().unwrap_or("");
        match word {
            "PENDING" | "PD" => JobState::Pending,
            "CONFIGURING" | "CF" => JobState::Configuring,
            "RUNNING" | "R" | "RESIZING" | "RS" | "SIGNALING" | "SI" => JobState::Running,
            "SUSPENDED" | "S" | "STOPPED" | "ST" => JobState::Suspended,
            "COMPLETING" | "CG" | "STAGE_OUT" | "SO" => JobState::Completing,
            "COMPLETED" | "CD" => JobState::Completed,
            "CANCELLED" | "CA" => JobState::Cancelled,
            "FAILED" | "F" => JobState::Failed,
            "TIMEOUT" | "TO" => JobState::Timeout,
            "NODE_FAIL" | "NF" => JobState::NodeFail,
            "PREEMPTED" | "PR" => JobState::Preempted,
            "BOOT_FAIL" | "BF" => JobState::BootFail,
            "DEADLINE" | "DL" => JobState::Deadline,
            "OUT_OF_MEMORY" | "OOM" => JobState::OutOfMemory,
            "REQUEUED" | "RQ" | "REQUEUE_FED" | "RF" => JobState::Requeued,
            "REQUEUE_HOLD" | "RH" | "SPECIAL_EXIT" | "SE" | "RESV_DEL_HOLD" | "RD" => {
                JobState::HeldInQueue(word.to_owned())
            }
            _ => JobState::Other(word.to_owned()),
        }
    }

    /// The job will not run any more.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            JobState::Completed
                | JobState::Cancelled
                | JobState::Failed
                | JobState::Timeout
                | JobState::NodeFail
                | JobState::Preempted
                | JobState::BootFail
                | JobState::Deadline
                | JobState::OutOfMemory
        )
    }

    pub fn as_str(&self) -> &str {
        match self {
            JobState::Pending => "PENDING",
            JobState::Configuring => "CONFIGURING",
            JobState::Running => "RUNNING",
            JobState::Suspended => "SUSPENDED",
            JobState::Completing => "COMPLETING",
            JobState::Completed => "COMPLETED",
            JobState::Cancelled => "CANCELLED",
            JobState::Failed => "FAILED",
            JobState::Timeout => "TIMEOUT",
            JobState::NodeFail => "NODE_FAIL",
            JobState::Preempted => "PREEMPTED",
            JobState::BootFail => "BOOT_FAIL",
            JobState::Deadline => "DEADLINE",
            JobState::OutOfMemory => "OUT_OF_MEMORY",
            JobState::Requeued => "REQUEUED",
            JobState::HeldInQueue(s) | JobState::Other(s) => s,
        }
    }
}

/// One job from `squeue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueJob {
    /// Slurm's id (`1234`, or `1234_5` for an array task).
    pub id: String,
    pub state: JobState,
    pub name: String,
    /// `None` when Slurm prints `(null)`.
    pub comment: Option<String>,
    pub nodes: String,
    pub reason: String,
    pub user: String,
    pub partition: String,
    /// Slurm's StartTime in epoch seconds: when the job started for one that was given nodes;
    /// for one still pending Slurm's forecast, and for one cancelled while pending the time it
    /// was cancelled. `None` where Slurm did not say (`N/A`) or the listing has no such field.
    pub start_s: Option<i64>,
}

/// Parses `squeue -h -o` with [`squeue_format`] (or without its last field, start time, as
/// listings captured before it was read).
pub fn parse_squeue(text: &str) -> Result<Vec<QueueJob>, ParseError> {
    let mut jobs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(SEP).collect();
        if !(8..=9).contains(&f.len()) {
            return Err(err(
                i + 1,
                format!("expected 9 fields, found {}", f.len()),
                line,
            ));
        }
        let id = f[0].trim();
        if id.is_empty() || !id.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(err(i + 1, "job id is not a number", line));
        }
        let comment = f[3].trim();
        jobs.push(QueueJob {
            id: id.to_owned(),
            state: JobState::parse(f[1]),
            name: f[2].to_owned(),
            comment: (comment != "(null)" && !comment.is_empty()).then(|| comment.to_owned()),
            nodes: f[4].trim().to_owned(),
            reason: f[5].trim().to_owned(),
            user: f[6].trim().to_owned(),
            partition: f[7].trim().to_owned(),
            start_s: f.get(8).and_then(|t| epoch_seconds(t)),
        });
    }
    Ok(jobs)
}

/// Parses `squeue --json` (OpenAPI v0.0.38 of 22.05, where `job_state` is a string, and later
/// versions, where it is a list and numbers may be `{ "number": … }`).
pub fn parse_squeue_json(text: &str) -> Result<Vec<QueueJob>, ParseError> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| err(e.line(), format!("not JSON: {e}"), ""))?;
    let Some(list) = v.get("jobs").and_then(|j| j.as_array()) else {
        return Err(err(1, "no `jobs` list", ""));
    };
    let s = |j: &serde_json::Value, k: &str| -> String {
        match j.get(k) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join("+"),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            Some(serde_json::Value::Object(o)) => {
                o.get("number").map(|n| n.to_string()).unwrap_or_default()
            }
            _ => String::new(),
        }
    };
    let mut jobs = Vec::with_capacity(list.len());
    for (i, j) in list.iter().enumerate() {
        let id = s(j, "job_id");
        if id.is_empty() {
            return Err(err(i + 1, "a job without `job_id`", ""));
        }
        let comment = s(j, "comment");
        jobs.push(QueueJob {
            id,
            state: JobState::parse(&s(j, "job_state")),
            name: s(j, "name"),
            comment: (!comment.is_empty()).then_some(comment),
            nodes: s(j, "nodes"),
            reason: s(j, "state_reason"),
            user: s(j, "user_name"),
            partition: s(j, "partition"),
            start_s: epoch_seconds(&s(j, "start_time")),
        });
    }
    Ok(jobs)
}

/// Parses `scontrol show … -o` (one record a line, `Key=Value` separated by spaces; a value
/// may itself hold spaces, as `OS=Linux 6.1 #1 SMP` does) into one map per record.
pub fn parse_scontrol_records(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut records = Vec::new();
    for line in text.lines() {
        let mut rec: BTreeMap<String, String> = BTreeMap::new();
        let mut last: Option<String> = None;
        for tok in line.split(' ').filter(|t| !t.is_empty()) {
            match tok.split_once('=') {
                Some((k, v))
                    if !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "_:/".contains(c)) =>
                {
                    rec.insert(k.to_owned(), v.to_owned());
                    last = Some(k.to_owned());
                }
                _ => {
                    if let Some(k) = &last
                        && let Some(v) = rec.get_mut(k)
                    {
                        v.push(' ');
                        v.push_str(tok);
                    }
                }
            }
        }
        if !rec.is_empty() {
            records.push(rec);
        }
    }
    records
}

/// A job as `scontrol show job -o` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    pub id: String,
    pub name: String,
    pub state: JobState,
    pub reason: String,
    /// `ExitCode=3:0` → (3, 0): exit status and signal.
    pub exit_code: Option<(i32, i32)>,
    pub comment: Option<String>,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    pub nodes: String,
    /// StartTime in epoch seconds (as [`QueueJob::start_s`]).
    pub start_s: Option<i64>,
}

/// Jobs of `scontrol show job -o`; records without `JobId` are skipped.
pub fn parse_scontrol_jobs(text: &str) -> Vec<JobInfo> {
    parse_scontrol_records(text)
        .into_iter()
        .filter_map(|r| {
            let get = |k: &str| r.get(k).cloned().filter(|v| v != "(null)");
            Some(JobInfo {
                id: get("JobId")?,
                name: get("JobName").unwrap_or_default(),
                state: JobState::parse(&get("JobState").unwrap_or_default()),
                reason: get("Reason").unwrap_or_default(),
                exit_code: get("ExitCode").and_then(|e| {
                    let (a, b) = e.split_once(':')?;
                    Some((a.parse().ok()?, b.parse().ok()?))
                }),
                comment: get("Comment"),
                stdout: get("StdOut"),
                stderr: get("StdErr"),
                nodes: get("NodeList").unwrap_or_default(),
                start_s: get("StartTime").as_deref().and_then(epoch_seconds),
            })
        })
        .collect()
}

/// The job id `sbatch --parsable` prints (`1234` or `1234;cluster`).
pub fn parse_sbatch_parsable(text: &str) -> Result<String, ParseError> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or_else(|| err(1, "sbatch printed no job id", text))?;
    let id = line.split(';').next().unwrap_or("").trim();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(err(1, "sbatch printed no job id", line));
    }
    Ok(id.to_owned())
}

/// Slurm's own message from a command's stderr: the `sbatch: error: …` lines, without the
/// prefixes, joined; the whole trimmed text when there are none.
pub fn slurm_message(stderr: &str) -> String {
    let errors: Vec<&str> = stderr
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let (_, rest) = l.split_once(": error: ")?;
            Some(rest.trim())
        })
        .collect();
    if errors.is_empty() {
        stderr.trim().chars().take(2000).collect()
    } else {
        errors.join("; ")
    }
}

/// slurmrestd's (OpenAPI plugin v0.0.38, Slurm 22.05) answer as JSON, or why it is not one.
fn rest_json(text: &str) -> Result<serde_json::Value, ParseError> {
    serde_json::from_str(text).map_err(|e| err(e.line(), format!("not JSON: {e}"), text))
}

/// The errors slurmrestd listed in an answer (`errors[].error`, and `description` where it
/// says more); empty when there are none or the text is not JSON.
pub fn parse_rest_errors(text: &str) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return Vec::new();
    };
    let Some(list) = v.get("errors").and_then(|e| e.as_array()) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|e| {
            let error = e.get("error").and_then(|x| x.as_str()).unwrap_or("").trim();
            let description = e
                .get("description")
                .and_then(|x| x.as_str())
                .unwrap_or("")
                .trim();
            match (error.is_empty(), description.is_empty()) {
                (true, true) => None,
                (false, true) => Some(error.to_owned()),
                (true, false) => Some(description.to_owned()),
                (false, false) if description.contains(error) => Some(description.to_owned()),
                (false, false) => Some(format!("{error} ({description})")),
            }
        })
        .collect()
}

/// Nodes of `GET /slurm/v0.0.38/nodes`, one per (node, partition) like `sinfo -N`; only those
/// of `partition` when given. The state is `state` with its `state_flags` (`idle` + `DRAIN` →
/// `IDLE+DRAIN`).
pub fn parse_rest_nodes(text: &str, partition: Option<&str>) -> Result<Vec<Node>, ParseError> {
    let v = rest_json(text)?;
    let Some(list) = v.get("nodes").and_then(|n| n.as_array()) else {
        return Err(err(1, "no `nodes` list", ""));
    };
    let mut nodes = Vec::new();
    for (i, n) in list.iter().enumerate() {
        let name = n.get("name").and_then(|x| x.as_str()).unwrap_or("").trim();
        if name.is_empty() {
            return Err(err(i + 1, "a node without `name`", ""));
        }
        let mut state = n
            .get("state")
            .and_then(|x| x.as_str())
            .unwrap_or("unknown")
            .to_owned();
        for f in n
            .get("state_flags")
            .and_then(|x| x.as_array())
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str())
        {
            state.push('+');
            state.push_str(f);
        }
        let cpus = n.get("cpus").and_then(|x| x.as_u64()).unwrap_or(0);
        let gres = n.get("gres").and_then(|x| x.as_str()).unwrap_or("");
        let gpus = parse_gres_gpus(gres).map_err(|m| err(i + 1, m, gres))?;
        let reason = n
            .get("reason")
            .and_then(|x| x.as_str())
            .filter(|r| !r.is_empty())
            .unwrap_or("none");
        let partitions: Vec<&str> = n
            .get("partitions")
            .and_then(|x| x.as_array())
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str())
            .collect();
        for p in partitions {
            if partition.is_some_and(|want| want != p) {
                continue;
            }
            nodes.push(Node {
                name: name.to_owned(),
                partition: p.to_owned(),
                default_partition: false,
                state: NodeState::parse(&state),
                cpus: u32::try_from(cpus).unwrap_or(u32::MAX),
                gpus,
                reason: reason.to_owned(),
            });
        }
    }
    Ok(nodes)
}

/// A wait status as slurmrestd v0.0.38 gives `exit_code` (`768` = exit code 3, `15` =
/// killed by signal 15) → (exit code, signal), like `scontrol`'s `ExitCode=3:0`.
pub fn wait_status(raw: i64) -> (i32, i32) {
    let raw = raw.clamp(0, i64::from(i32::MAX)) as i32;
    if raw & 0x7f != 0 {
        (0, raw & 0x7f)
    } else {
        ((raw >> 8) & 0xff, 0)
    }
}

/// Jobs of `GET /slurm/v0.0.38/jobs` (every job slurmctld still knows, all users and states).
pub fn parse_rest_jobs(text: &str) -> Result<Vec<QueueJob>, ParseError> {
    parse_squeue_json(text)
}

/// Jobs of `GET /slurm/v0.0.38/job/{id}` in detail.
pub fn parse_rest_job_infos(text: &str) -> Result<Vec<JobInfo>, ParseError> {
    let v = rest_json(text)?;
    let Some(list) = v.get("jobs").and_then(|j| j.as_array()) else {
        return Err(err(1, "no `jobs` list", ""));
    };
    let s = |j: &serde_json::Value, k: &str| -> Option<String> {
        match j.get(k)? {
            serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let mut out = Vec::new();
    for (i, j) in list.iter().enumerate() {
        let Some(id) = s(j, "job_id") else {
            return Err(err(i + 1, "a job without `job_id`", ""));
        };
        out.push(JobInfo {
            id,
            name: s(j, "name").unwrap_or_default(),
            state: JobState::parse(&s(j, "job_state").unwrap_or_default()),
            reason: s(j, "state_reason").unwrap_or_default(),
            exit_code: j.get("exit_code").and_then(|x| x.as_i64()).map(wait_status),
            comment: s(j, "comment"),
            stdout: s(j, "standard_output"),
            stderr: s(j, "standard_error"),
            nodes: s(j, "nodes").unwrap_or_default(),
            start_s: match j.get("start_time") {
                // Later versions: `{ "set": true, "number": … }`.
                Some(serde_json::Value::Object(o)) => o.get("number").and_then(|n| n.as_i64()),
                Some(v) => v.as_i64(),
                None => None,
            }
            .filter(|&t| t > 0),
        });
    }
    Ok(out)
}

/// The job id of a `POST /slurm/v0.0.38/job/submit` answer.
pub fn parse_rest_submit(text: &str) -> Result<String, ParseError> {
    let v = rest_json(text)?;
    match v.get("job_id") {
        Some(serde_json::Value::Number(n)) if n.as_u64().is_some_and(|n| n > 0) => {
            Ok(n.to_string())
        }
        _ => Err(err(1, "no `job_id` in the answer", text)),
    }
}

/// The tag Switchyard puts in the `--comment` of its jobs:
/// `<prefix>:<job>:<generation>:<attempt>:a<accelerators>`, with `<attempt>.<resubmit>` when
/// the backend submitted the same run again after an infrastructure failure (node failure, job
/// lost). Tags written before the size was part of them (no `:a<accelerators>`) still parse.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tag {
    pub job: String,
    pub generation: u32,
    /// The server's attempt (what the work sees as `SWITCHYARD_ATTEMPT`).
    pub attempt: u32,
    /// Resubmissions of this run by the backend itself (0 for the first submission).
    pub resubmit: u32,
    /// The accelerators the job was submitted with (a gang's, or one replica's); `None` in an
    /// older tag.
    pub accelerators: Option<u32>,
}

impl Tag {
    pub fn render(&self, prefix: &str) -> String {
        let mut tag = format!("{prefix}:{}:{}:{}", self.job, self.generation, self.attempt);
        if self.resubmit > 0 {
            tag.push_str(&format!(".{}", self.resubmit));
        }
        if let Some(n) = self.accelerators {
            tag.push_str(&format!(":a{n}"));
        }
        tag
    }

    /// The tag of a comment, if it is one of `prefix`'s; anything else (another tool's
    /// comment, a user's job) is `None` and is never touched.
    pub fn parse(comment: &str, prefix: &str) -> Option<Tag> {
        let rest = comment.trim().strip_prefix(prefix)?.strip_prefix(':')?;
        // The size, last: an attempt is all digits, so a final field starting with `a` is one.
        let (rest, accelerators) = match rest.rsplit_once(':') {
            Some((before, last)) if last.starts_with('a') => {
                (before, Some(last[1..].parse().ok()?))
            }
            _ => (rest, None),
        };
        let mut it = rest.rsplitn(3, ':');
        let last = it.next()?;
        let (attempt, resubmit) = match last.split_once('.') {
            Some((a, r)) => (a.parse().ok()?, r.parse().ok()?),
            None => (last.parse().ok()?, 0),
        };
        let generation = it.next()?.parse().ok()?;
        let job = it.next()?;
        if job.is_empty() {
            return None;
        }
        Some(Tag {
            job: job.to_owned(),
            generation,
            attempt,
            resubmit,
            accelerators,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// squeue's `%T` prints a flag in place of the base state (Slurm's job_state_string):
    /// each is read as the state it amounts to; slurmrestd lists the base state first.
    #[test]
    fn job_state_flags_read_as_what_they_amount_to() {
        for (text, state) in [
            ("REQUEUE_HOLD", JobState::HeldInQueue("REQUEUE_HOLD".into())),
            ("SPECIAL_EXIT", JobState::HeldInQueue("SPECIAL_EXIT".into())),
            (
                "RESV_DEL_HOLD",
                JobState::HeldInQueue("RESV_DEL_HOLD".into()),
            ),
            ("REQUEUED", JobState::Requeued),
            ("REQUEUE_FED", JobState::Requeued),
            ("STOPPED", JobState::Suspended),
            ("RESIZING", JobState::Running),
            ("SIGNALING", JobState::Running),
            ("STAGE_OUT", JobState::Completing),
            ("PENDING+REQUEUE_HOLD", JobState::Pending),
            ("REVOKED", JobState::Other("REVOKED".into())),
        ] {
            assert_eq!(JobState::parse(text), state, "{text}");
        }
        assert_eq!(JobState::parse("special_exit").as_str(), "SPECIAL_EXIT");
    }

    #[test]
    fn node_states() {
        assert!(NodeState::parse("idle").usable());
        assert!(NodeState::parse("mixed").usable());
        assert!(NodeState::parse("allocated").usable());
        assert!(!NodeState::parse("idle*").usable());
        assert!(!NodeState::parse("down").usable());
        assert!(!NodeState::parse("drained").usable());
        assert!(!NodeState::parse("draining").usable());
        assert!(!NodeState::parse("IDLE+DRAIN").usable());
        assert!(!NodeState::parse("DOWN+NOT_RESPONDING").usable());
        // Powered down by power saving: Slurm powers it up on demand.
        assert!(NodeState::parse("idle~").usable());
        assert!(!NodeState::parse("down~").usable());
        assert_eq!(NodeState::parse("down*").base, NodeBase::Down);
        // Closed to new jobs, its own go on; or failed, its jobs lost.
        for closed in [
            "drained",
            "draining",
            "MIXED+DRAIN",
            "fail",
            "failing",
            "maint",
            // sinfo's StateComplete and slurmrestd's state_flags.
            "idle+drain",
            "allocated+drain",
            "idle+fail",
            "mixed+fail",
            "IDLE+FAIL",
            "idle+maintenance+reserved",
            "idle+reboot_issued",
            "idle^",
        ] {
            assert!(NodeState::parse(closed).closed(), "{closed}");
        }
        for failed in [
            "down",
            "down+drain",
            "drained*",
            "MIXED+DRAIN*",
            "down+drain+not_responding",
            "idle+drain+not_responding",
            "down+fail",
            "idle+invalid_reg",
            "inval",
            "unknown",
            "weird",
        ] {
            let state = NodeState::parse(failed);
            assert!(!state.usable() && !state.closed(), "{failed}");
        }
        assert!(!NodeState::parse("mixed").closed());
        assert_eq!(NodeState::parse("idle+fail").base, NodeBase::Fail);
        assert_eq!(NodeState::parse("allocated+fail").base, NodeBase::Failing);
        assert!(NodeState::parse("idle+cloud+powered_down").usable());
        assert!(NodeState::parse("mixed+planned").usable());
        // A reboot asked for when the node is idle (`@`): it still takes work until then.
        assert!(NodeState::parse("mixed@").usable());
        assert!(NodeState::parse("mixed+reboot_requested").usable());
        assert_eq!(
            NodeState::parse("idle+reboot_issued").base,
            NodeBase::Rebooting
        );
        assert_eq!(
            NodeState::parse("weird").base,
            NodeBase::Other("weird".into())
        );
    }

    #[test]
    fn gres() {
        assert_eq!(parse_gres_gpus("(null)"), Ok(0));
        assert_eq!(parse_gres_gpus("gpu:8"), Ok(8));
        assert_eq!(parse_gres_gpus("gpu:h100:8(S:0-1)"), Ok(8));
        assert_eq!(parse_gres_gpus("gpu:a100:4,gpu:v100:2"), Ok(6));
        assert_eq!(parse_gres_gpus("gpu:h100:8(S:0,1),shard:16"), Ok(8));
        assert_eq!(parse_gres_gpus("mps:100"), Ok(0));
        assert!(parse_gres_gpus("gpu:h100:x").is_err());
    }

    #[test]
    fn tags() {
        let t = Tag {
            job: "j-00ff".into(),
            generation: 3,
            attempt: 2,
            resubmit: 0,
            accelerators: None,
        };
        assert_eq!(t.render("switchyard"), "switchyard:j-00ff:3:2");
        assert_eq!(
            Tag::parse("switchyard:j-00ff:3:2", "switchyard"),
            Some(t.clone())
        );
        let again = Tag { resubmit: 1, ..t };
        assert_eq!(again.render("switchyard"), "switchyard:j-00ff:3:2.1");
        assert_eq!(
            Tag::parse("switchyard:j-00ff:3:2.1", "switchyard"),
            Some(again.clone())
        );
        assert_eq!(Tag::parse("switchyard:j:1:2.x", "switchyard"), None);
        assert_eq!(Tag::parse("switchyard:j:1:.1", "switchyard"), None);
        assert_eq!(
            Tag::parse("switchyard:a:b:3:2", "switchyard").map(|t| t.job),
            Some("a:b".into())
        );
        assert_eq!(Tag::parse("switchyardx:j:1:1", "switchyard"), None);
        assert_eq!(Tag::parse("my own comment", "switchyard"), None);
        assert_eq!(Tag::parse("switchyard::1:1", "switchyard"), None);
        assert_eq!(Tag::parse("switchyard:j:one:1", "switchyard"), None);
        // With the size (tags since it is written).
        let sized = Tag {
            accelerators: Some(16),
            ..again.clone()
        };
        assert_eq!(sized.render("switchyard"), "switchyard:j-00ff:3:2.1:a16");
        assert_eq!(
            Tag::parse("switchyard:j-00ff:3:2.1:a16", "switchyard"),
            Some(sized.clone())
        );
        let first = Tag {
            resubmit: 0,
            ..sized
        };
        assert_eq!(
            Tag::parse(&first.render("switchyard"), "switchyard"),
            Some(first)
        );
        assert_eq!(Tag::parse("switchyard:j:1:2:a", "switchyard"), None);
        assert_eq!(Tag::parse("switchyard:j:1:2:ax", "switchyard"), None);
        assert_eq!(Tag::parse("switchyard:j:1:a16", "switchyard"), None);
    }

    #[test]
    fn sbatch_output() {
        assert_eq!(parse_sbatch_parsable("42\n"), Ok("42".into()));
        assert_eq!(parse_sbatch_parsable("42;cluster1\n"), Ok("42".into()));
        assert!(parse_sbatch_parsable("").is_err());
        assert!(parse_sbatch_parsable("Submitted batch job 42").is_err());
        assert_eq!(
            slurm_message(
                "sbatch: error: invalid partition specified: nope\nsbatch: error: Batch job submission failed: Invalid partition name specified\n"
            ),
            "invalid partition specified: nope; Batch job submission failed: Invalid partition name specified"
        );
    }

    #[test]
    fn scontrol_values_with_spaces() {
        let r = parse_scontrol_records(
            "NodeName=a OS=Linux 6.1 #1 SMP State=IDLE CfgTRES=cpu=2,mem=1M",
        );
        assert_eq!(r.len(), 1);
        assert_eq!(r[0]["OS"], "Linux 6.1 #1 SMP");
        assert_eq!(r[0]["State"], "IDLE");
        assert_eq!(r[0]["CfgTRES"], "cpu=2,mem=1M");
    }
}
