//! The client verbs: `submit`, `status`, `cancel`, `scale`, `events`, `logs`, `queue`.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use switchyard_server::api::{
    FleetState, Job, JobEvents, JobList, JobLogs, LogEntry, ScaleRequest, SubmitRequest, TenantList,
};

use crate::CliError;
use crate::client::{Client, ClientArgs, encode};
use crate::error::read_text;
use crate::error::{out, outln};
use crate::fleet_cmd::print_json;
use crate::table::{Table, plural, thousands};
use switchyard_core::plain_toml_words;

/// Submit a job described in a TOML file (docs/jobs.md).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  switchyard submit examples/jobs/train.toml\n  switchyard submit examples/jobs/serve.toml --json"
)]
pub struct SubmitArgs {
    /// The job file (TOML; see docs/jobs.md and examples/jobs/).
    file: PathBuf,
    #[command(flatten)]
    client: ClientArgs,
    /// Print the accepted job as JSON.
    #[arg(long)]
    json: bool,
}

/// Show one job, or list your jobs.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  switchyard status\n  switchyard status j-1f2e3d4c5b6a7980\n  switchyard status --state pending,running --json"
)]
pub struct StatusArgs {
    /// A job id; all your jobs when absent.
    #[arg(value_parser = clap::builder::NonEmptyStringValueParser::new())]
    job: Option<String>,
    /// Only jobs in these states (comma-separated: pending, running, done, failed, cancelled,
    /// rejected); for the list, not one job.
    #[arg(long, conflicts_with = "job")]
    state: Option<String>,
    /// Most jobs to list (1 to 1000); for the list, not one job.
    #[arg(long, default_value_t = 100, value_parser = crate::error::whole_from(1, 1000), conflicts_with = "job")]
    limit: u32,
    #[command(flatten)]
    client: ClientArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Cancel a job.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  switchyard cancel j-1f2e3d4c5b6a7980")]
pub struct CancelArgs {
    /// The job to cancel (its id, `j-…`).
    #[arg(value_parser = clap::builder::NonEmptyStringValueParser::new())]
    job: String,
    #[command(flatten)]
    client: ClientArgs,
    /// Print the job, as the cancellation left it, as JSON.
    #[arg(long)]
    json: bool,
}

/// Set how many replicas an inference service runs (within its submitted `replicas` range).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  switchyard scale j-1f2e3d4c5b6a7980 --replicas 3\n\n\
The server stores the count and the scheduler adds or removes replicas as capacity allows;\n\
`switchyard status JOB` shows them (allocated = replicas x accelerators), `switchyard events JOB`\n\
each replica added or removed."
)]
pub struct ScaleArgs {
    /// The inference service (its id, `j-…`).
    #[arg(value_parser = clap::builder::NonEmptyStringValueParser::new())]
    job: String,
    /// The wanted replica count, between the service's `replicas.min` and `replicas.max`.
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = crate::error::whole_from(0, switchyard_server::api::MAX_REPLICAS))]
    replicas: u32,
    #[command(flatten)]
    client: ClientArgs,
    /// Print the job as JSON.
    #[arg(long)]
    json: bool,
}

/// Show a job's events: placements, preemptions, restarts, and why it waits.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  switchyard events j-1f2e3d4c5b6a7980\n  switchyard events j-1f2e3d4c5b6a7980 --json"
)]
pub struct EventsArgs {
    /// The job (its id, `j-…`).
    #[arg(value_parser = clap::builder::NonEmptyStringValueParser::new())]
    job: String,
    #[command(flatten)]
    client: ClientArgs,
    /// Print the events (and the job's state and reason) as JSON.
    #[arg(long)]
    json: bool,
}

/// Print a job's output: the stdout and stderr lines of its processes, every rank and attempt.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  switchyard logs j-1f2e3d4c5b6a7980\n  switchyard logs j-1f2e3d4c5b6a7980 --rank 0 --follow\n\n\
Lines are printed as the processes wrote them, in the order the server stored them, all on stdout.\n\
Prefixes: `[rank R] ` when the job has more than one rank and --rank is not given; stderr lines\n\
get `[stderr] ` (or `[rank R stderr] `). `--- attempt N ---` marks where the output of a restarted\n\
attempt begins (without --attempt)."
)]
pub struct LogsArgs {
    /// The job (its id, `j-…`).
    #[arg(value_parser = clap::builder::NonEmptyStringValueParser::new())]
    job: String,
    /// Only this rank's output.
    #[arg(long, value_name = "R")]
    rank: Option<u32>,
    /// Only this attempt (1 is the first run; each restart is one more).
    #[arg(long, value_name = "A", value_parser = crate::error::whole_from(1, u32::MAX))]
    attempt: Option<u32>,
    /// Only this replica of an inference service (the name in its lines' `[replica …]`
    /// prefix, like 18f2c3a4b5c.3).
    #[arg(long, value_name = "NAME", value_parser = replica_name)]
    replica: Option<String>,
    /// Keep printing new lines, polling about once a second, until the job has ended and no
    /// more lines come.
    #[arg(long, short)]
    follow: bool,
    #[command(flatten)]
    client: ClientArgs,
    /// Print each line as a JSON object (cursor, attempt, rank, replica for services, stream,
    /// at_ms, line), one a line.
    #[arg(long)]
    json: bool,
}

/// Show the pending jobs in submission order with why each waits, and usage per tenant.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  switchyard queue\n  SWITCHYARD_URL=http://cp:7070 switchyard queue --json"
)]
pub struct QueueArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Print the pending jobs and usage per tenant as JSON.
    #[arg(long)]
    json: bool,
}

/// List the nodes the server's agents registered, their state and what runs on them; drain
/// a node for maintenance and resume it.
#[derive(Debug, clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Listing needs an admin or agent token (`switchyard token create --tenant ops --admin` / `--agent`); drain and resume an admin token.\n\nExamples:\n  switchyard nodes\n  switchyard nodes --json\n  switchyard nodes drain gpu-7 --reason \"DIMM replacement\"\n  switchyard nodes resume gpu-7"
)]
pub struct NodesArgs {
    #[command(subcommand)]
    action: Option<NodesAction>,
    #[command(flatten)]
    client: ClientArgs,
    /// Print the nodes as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Subcommand)]
enum NodesAction {
    /// Take a node out of service for new work: what runs on it runs on to its end, nothing
    /// new is placed there until it is resumed (it stays drained across restarts).
    Drain(DrainArgs),
    /// Put a drained node back in service.
    Resume(ResumeArgs),
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  switchyard nodes drain gpu-7 --reason \"DIMM replacement\"")]
struct DrainArgs {
    /// The node: its id (`n-…`) or its host name.
    #[arg(value_parser = clap::builder::NonEmptyStringValueParser::new())]
    node: String,
    /// Why, shown by `switchyard nodes`.
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
    /// Print the node, as the drain left it, as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  switchyard nodes resume gpu-7")]
struct ResumeArgs {
    /// The node: its id (`n-…`) or its host name.
    #[arg(value_parser = clap::builder::NonEmptyStringValueParser::new())]
    node: String,
    #[command(flatten)]
    client: ClientArgs,
    /// Print the node, as the resumption left it, as JSON.
    #[arg(long)]
    json: bool,
}

/// Drains or resumes a node and says what it is now.
fn set_drain(
    client: &ClientArgs,
    node: &str,
    request: Option<switchyard_server::agents::DrainRequest>,
    json: bool,
) -> Result<(), CliError> {
    use switchyard_server::agents::DrainAnswer;
    let client = Client::new(client)?;
    let path = format!(
        "/v1/agent/nodes/{}/{}",
        encode(node),
        if request.is_some() { "drain" } else { "resume" }
    );
    let answer: DrainAnswer = match &request {
        Some(r) => client.post_idempotent(&path, Some(r))?,
        None => client.post_idempotent::<(), _>(&path, None)?,
    };
    if json {
        return print_json(&answer);
    }
    match &answer.drained {
        Some(d) => outln!(
            "node {} ({} of {}) is drained{}; what runs on it goes on, nothing new is placed there",
            answer.id,
            answer.hostname,
            answer.cluster,
            d.reason
                .as_deref()
                .map_or_else(String::new, |r| format!(": {r}"))
        ),
        None if answer.was_drained && answer.state.as_deref() == Some("lost") => outln!(
            "node {} ({} of {}) is no longer drained, but it is lost: it takes work once its \
             agent is back",
            answer.id,
            answer.hostname,
            answer.cluster
        ),
        None if answer.was_drained => outln!(
            "node {} ({} of {}) is back in service",
            answer.id,
            answer.hostname,
            answer.cluster
        ),
        None => outln!(
            "node {} ({} of {}) was not drained; nothing changed{}",
            answer.id,
            answer.hostname,
            answer.cluster,
            if answer.state.as_deref() == Some("lost") {
                " (it is lost: it takes work once its agent is back)"
            } else {
                ""
            }
        ),
    }
    Ok(())
}

pub fn nodes(args: NodesArgs) -> Result<(), CliError> {
    match args.action {
        Some(NodesAction::Drain(a)) => {
            let request = switchyard_server::agents::DrainRequest { reason: a.reason };
            return set_drain(&a.client, &a.node, Some(request), a.json);
        }
        Some(NodesAction::Resume(a)) => return set_drain(&a.client, &a.node, None, a.json),
        None => {}
    }
    let client = Client::new(&args.client)?;
    let nodes: Vec<switchyard_server::agents::NodeView> = client.get("/v1/agent/nodes")?;
    if args.json {
        return print_json(&nodes);
    }
    if nodes.is_empty() {
        outln!("no node agents registered");
        return Ok(());
    }
    let now = switchyard_server::leader::now_ms();
    let mut t = Table::new([
        "NODE", "HOST", "CLUSTER", "SLOT", "STATE", "ACCEL", "PROCS", "SEEN", "JOBS",
    ]);
    for n in &nodes {
        t.row([
            n.id.clone(),
            n.hostname.clone(),
            n.cluster.clone(),
            n.slot.to_string(),
            match &n.drained {
                Some(d) => match &d.reason {
                    Some(r) => format!("{}, drained: {}", n.state, shortened(r, 40)),
                    None => format!("{}, drained", n.state),
                },
                None => n.state.clone(),
            },
            n.accelerators.to_string(),
            n.processes.to_string(),
            format!(
                "{:.1} s ago",
                now.saturating_sub(n.last_seen_ms).max(0) as f64 / 1000.0
            ),
            if n.jobs.is_empty() {
                "-".into()
            } else {
                n.jobs.join(",")
            },
        ]);
    }
    out!("{}", t.render());
    let lost = nodes.iter().filter(|n| n.state == "lost").count();
    let drained = nodes
        .iter()
        .filter(|n| n.drained.is_some() && n.state != "lost")
        .count();
    outln!(
        "{} nodes, {} ready{}, {lost} lost",
        nodes.len(),
        nodes.len() - lost,
        if drained > 0 {
            format!(" ({drained} drained: no new work)")
        } else {
            String::new()
        }
    );
    Ok(())
}

/// `text` cut to at most `max` characters, with an ellipsis when cut (`--json` has it whole).
fn shortened(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// Reads a job file.
pub fn read_job_file(path: &std::path::Path) -> Result<SubmitRequest, CliError> {
    let text = read_text(path)?;
    let bad = |e: String| CliError::Input(format!("{}: {e}", path.display()));
    // JSON has no NaN or infinity: they would reach the server as null, and "needs
    // duration_s" would blame a field the file does set.
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| bad(plain_toml_words(&e.to_string())))?;
    if let Some((key, x)) = non_finite(&table, "") {
        return Err(bad(format!("{key} = {x} is not a finite number")));
    }
    toml::from_str::<SubmitRequest>(&text).map_err(|e| bad(plain_toml_words(&e.to_string())))
}

/// The first NaN or infinite number in a TOML table, with its dotted key.
fn non_finite(table: &toml::Table, prefix: &str) -> Option<(String, f64)> {
    fn walk(value: &toml::Value, key: &str) -> Option<(String, f64)> {
        match value {
            toml::Value::Float(x) if !x.is_finite() => Some((key.to_owned(), *x)),
            toml::Value::Table(t) => non_finite(t, key),
            toml::Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, v)| walk(v, &format!("{key}[{i}]"))),
            _ => None,
        }
    }
    table.iter().find_map(|(k, v)| {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        walk(v, &key)
    })
}

pub fn submit(args: SubmitArgs) -> Result<(), CliError> {
    let req = read_job_file(&args.file)?;
    let client = Client::new(&args.client)?;
    // What the server refuses is the file's content — its form, or what it asks beyond a
    // quota, for another tenant, under a name in use: say which file, as local checks do.
    let file = args.file.display();
    let job: Job = client.post("/v1/jobs", Some(&req)).map_err(|e| match e {
        CliError::Input(m) => CliError::Input(format!("{file}: {m}")),
        CliError::Refused {
            status: status @ (403 | 409),
            message,
        } => CliError::Refused {
            status,
            message: format!("{file}: {message}"),
        },
        other => other,
    })?;
    if args.json {
        return print_json(&job);
    }
    let accelerators = job.accelerators.max(0) as u64;
    outln!(
        "submitted {} ({} {}, {} accelerator{}): {}",
        job.id,
        job.kind,
        job.name.as_deref().unwrap_or("-"),
        thousands(accelerators),
        if accelerators == 1 { "" } else { "s" },
        job.reason
    );
    Ok(())
}

fn ago(ms: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let s = (now.saturating_sub(ms) / 1000).max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

fn job_table(jobs: &[Job], reason: bool) -> Table {
    let mut head = vec![
        "ID", "NAME", "TENANT", "KIND", "STATE", "ACCEL", "CLUSTER", "AGE",
    ];
    if reason {
        head.push("WHY");
    }
    let mut t = Table::new(head);
    for j in jobs {
        let mut row = vec![
            j.id.clone(),
            j.name.clone().unwrap_or_else(|| "-".into()),
            j.tenant.clone(),
            j.kind.clone(),
            if j.cancel_requested && j.state != "cancelled" {
                format!("{} (cancelling)", j.state)
            } else {
                j.state.clone()
            },
            thousands(j.accelerators.max(0) as u64),
            j.cluster.clone().unwrap_or_else(|| "-".into()),
            ago(j.submitted_ms),
        ];
        if reason {
            row.push(j.reason.clone());
        }
        t.row(row);
    }
    t
}

/// An inference service's replicas: serving now (and wanted); `-` for other jobs.
fn replicas(job: &Job) -> String {
    if job.kind != "inference" {
        return "-".into();
    }
    let serving = job.allocated.max(0) / job.accelerators.max(1);
    match job.replicas_wanted {
        Some(w) if w != serving => format!("{serving} ({w} wanted)"),
        _ => serving.to_string(),
    }
}

pub fn status(args: StatusArgs) -> Result<(), CliError> {
    let client = Client::new(&args.client)?;
    if let Some(id) = &args.job {
        let job: Job = client.get(&format!("/v1/jobs/{}", encode(id)))?;
        if args.json {
            return print_json(&job);
        }
        let mut t = Table::new(["FIELD", "VALUE"]).flush_left();
        let opt = |x: Option<i64>| x.map_or("-".into(), |ms| format!("{} ago", ago(ms)));
        for (k, v) in [
            ("id", job.id.clone()),
            ("name", job.name.clone().unwrap_or_else(|| "-".into())),
            ("tenant", job.tenant.clone()),
            ("kind", job.kind.clone()),
            ("state", job.state.clone()),
            ("why", unrepeated(&job.state, &job.reason).to_owned()),
            ("priority", job.priority.to_string()),
            ("accelerators", thousands(job.accelerators.max(0) as u64)),
            ("allocated", thousands(job.allocated.max(0) as u64)),
            ("cluster", job.cluster.clone().unwrap_or_else(|| "-".into())),
            ("restarts", job.restarts.to_string()),
            ("replicas", replicas(&job)),
            ("submitted", format!("{} ago", ago(job.submitted_ms))),
            ("started", opt(job.started_ms)),
            ("finished", opt(job.finished_ms)),
        ] {
            t.row([k.to_string(), v]);
        }
        out!("{}", t.render());
        return Ok(());
    }
    let mut path = format!("/v1/jobs?limit={}", args.limit.clamp(1, 1000));
    if let Some(s) = &args.state {
        path.push_str(&format!("&state={}", encode(s)));
    }
    let list: JobList = client.get(&path)?;
    if args.json {
        return print_json(&list);
    }
    if list.jobs.is_empty() {
        outln!("no jobs");
    } else {
        out!("{}", job_table(&list.jobs, false).render());
        if list.next.is_some() {
            outln!("(more: raise --limit or use the API's `after` cursor)");
        }
    }
    Ok(())
}

pub fn cancel(args: CancelArgs) -> Result<(), CliError> {
    let client = Client::new(&args.client)?;
    let job: Job = client.post::<(), _>(&format!("/v1/jobs/{}/cancel", encode(&args.job)), None)?;
    if args.json {
        return print_json(&job);
    }
    outln!(
        "cancellation of {} requested (it was {})",
        job.id,
        job.state
    );
    Ok(())
}

pub fn scale(args: ScaleArgs) -> Result<(), CliError> {
    let client = Client::new(&args.client)?;
    let job: Job = client.post(
        &format!("/v1/jobs/{}/scale", encode(&args.job)),
        Some(&ScaleRequest {
            replicas: i64::from(args.replicas),
        }),
    )?;
    if args.json {
        return print_json(&job);
    }
    let wanted = job.replicas_wanted.unwrap_or(i64::from(args.replicas));
    outln!(
        "{} wants {wanted} replica{} (serving now: {}; {}): {}",
        job.id,
        if wanted == 1 { "" } else { "s" },
        job.allocated.max(0) / job.accelerators.max(1),
        job.state,
        job.reason
    );
    Ok(())
}

pub fn events(args: EventsArgs) -> Result<(), CliError> {
    let client = Client::new(&args.client)?;
    let base = format!("/v1/jobs/{}/events", encode(&args.job));
    let mut ev: JobEvents = client.get(&base)?;
    // Every page: a job that restarted thousands of times has more than one.
    while let Some(after) = ev.next.take() {
        let page: JobEvents = client.get(&format!("{base}?after={after}"))?;
        ev.events.extend(page.events);
        ev.next = page.next;
        (ev.state, ev.reason) = (page.state, page.reason);
    }
    if args.json {
        return print_json(&ev);
    }
    let mut t = Table::new(["AGO", "EVENT", "CLUSTER", "MESSAGE"]);
    for e in &ev.events {
        t.row([
            ago(e.at_ms),
            e.kind.clone(),
            e.cluster.clone().unwrap_or_else(|| "-".into()),
            e.message.clone(),
        ]);
    }
    out!("{}", t.render());
    outln!(
        "{} is {}: {}",
        ev.job,
        ev.state,
        unrepeated(&ev.state, &ev.reason)
    );
    Ok(())
}

fn replica_name(s: &str) -> Result<String, String> {
    if switchyard_store::is_replica_name(s) {
        Ok(s.to_owned())
    } else {
        Err("a replica name is hexadecimal, a dot and a number, like 18f2c3a4b5c.3 (see the `[replica …]` prefix of a service's lines)".into())
    }
}

/// How `logs` prints lines: prefixes and attempt markers, decided as lines come.
struct LogPrinter {
    /// Say which replica of a service wrote each line (no --replica).
    replicas: bool,
    /// Prefix lines with their rank.
    ranks: bool,
    /// Lines of every rank are shown (no --rank).
    all_ranks: bool,
    /// Mark where an attempt's output begins.
    attempts: bool,
    json: bool,
    last_attempt: Option<i64>,
}

impl LogPrinter {
    fn print(&mut self, out: &mut impl std::io::Write, l: &LogEntry) -> std::io::Result<()> {
        if self.json {
            let text = serde_json::to_string(l).map_err(std::io::Error::other)?;
            return writeln!(out, "{text}");
        }
        if self.attempts
            && self.last_attempt != Some(l.attempt)
            && (self.last_attempt.is_some() || l.attempt > 1)
        {
            writeln!(out, "--- attempt {} ---", l.attempt)?;
        }
        self.last_attempt = Some(l.attempt);
        // A job of one rank whose lines turn out to come from several (a service's replicas):
        // from then on, say which.
        self.ranks |= self.all_ranks && l.rank != 0;
        let mut labels = Vec::new();
        if let Some(r) = l.replica.as_deref().filter(|_| self.replicas) {
            labels.push(format!("replica {r}"));
        }
        if self.ranks {
            labels.push(format!("rank {}", l.rank));
        }
        if l.stream == "stderr" {
            labels.push("stderr".to_owned());
        }
        if !labels.is_empty() {
            write!(out, "[{}] ", labels.join(" "))?;
        }
        writeln!(out, "{}", l.line)
    }
}

/// A job's reason without the state it starts with (a failed job's reads "failed: …"), where
/// the state is printed beside it.
fn unrepeated<'a>(state: &str, reason: &'a str) -> &'a str {
    reason
        .strip_prefix(state)
        .and_then(|rest| rest.strip_prefix(": "))
        .unwrap_or(reason)
}

fn is_final(state: &str) -> bool {
    switchyard_store::JobState::parse(state).is_some_and(|s| s.is_final())
}

/// Output errors of `logs`: a closed pipe (`| head`) ends it quietly.
enum Stop {
    PipeClosed,
    Failed(CliError),
}

impl From<CliError> for Stop {
    fn from(e: CliError) -> Self {
        Stop::Failed(e)
    }
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Stop::PipeClosed
        } else {
            Stop::Failed(CliError::Other(format!("cannot write to stdout: {e}")))
        }
    }
}

/// Prints every line after `after`, page by page; moves `after` on. Returns how many.
fn print_new_lines(
    client: &Client,
    base: &str,
    after: &mut i64,
    printer: &mut LogPrinter,
) -> Result<usize, Stop> {
    let mut printed = 0;
    loop {
        let page: JobLogs = client.get(&format!("{base}&after={after}"))?;
        let mut out = std::io::stdout().lock();
        for l in &page.lines {
            printer.print(&mut out, l)?;
            *after = (*after).max(l.cursor);
        }
        out.flush()?;
        printed += page.lines.len();
        if page.next.is_none() || page.lines.is_empty() {
            return Ok(printed);
        }
    }
}

/// Consecutive failed polls `logs --follow` rides out (a server restarting) before giving up.
const FOLLOW_RETRIES: u32 = 30;

/// How long `logs --follow` keeps polling after the job ended and no new line came.
const FOLLOW_QUIET_AFTER_END: Duration = Duration::from_secs(5);

/// A job that ended longer ago than this (by the server's record and this machine's clock,
/// a margin for their skew) has had its lines pushed: `logs --follow` prints them and stops.
const FOLLOW_ENDED_LONG_AGO_MS: i64 = 60_000;

/// Whether `logs --follow` may stop at once after printing: the job ended long enough ago
/// that no line written before its end is still on its way.
fn ended_long_ago(job: &Job, now_ms: i64) -> bool {
    is_final(&job.state)
        && job
            .finished_ms
            .is_some_and(|end| now_ms.saturating_sub(end) > FOLLOW_ENDED_LONG_AGO_MS)
}

pub fn logs(args: LogsArgs) -> Result<(), CliError> {
    let client = Client::new(&args.client)?;
    let job_path = format!("/v1/jobs/{}", encode(&args.job));
    let job: Job = client.get(&job_path)?;
    let mut base = format!("{job_path}/logs?limit=1000");
    if let Some(r) = args.rank {
        base.push_str(&format!("&rank={r}"));
    }
    if let Some(a) = args.attempt {
        base.push_str(&format!("&attempt={a}"));
    }
    if let Some(r) = &args.replica {
        base.push_str(&format!("&replica={r}"));
    }
    let mut printer = LogPrinter {
        replicas: args.replica.is_none(),
        // A service's replica of one node has one process, rank 0: its lines are told apart
        // by replica, and ranks are shown once a replica of several nodes shows up.
        ranks: args.rank.is_none() && job.accelerators > 1 && job.kind != "inference",
        all_ranks: args.rank.is_none(),
        // A service's replicas are all attempt 1: no markers between them.
        attempts: args.attempt.is_none() && job.kind != "inference",
        json: args.json,
        last_attempt: None,
    };
    let mut after = 0;
    let result = (|| -> Result<(), Stop> {
        if !args.follow {
            let printed = print_new_lines(&client, &base, &mut after, &mut printer)?;
            if printed == 0
                && let Some(note) =
                    why_no_lines(&job, args.rank, args.attempt, args.replica.as_deref())
            {
                eprintln!("{note}");
            }
            return Ok(());
        }
        // Stop once the job has ended and no line has come for a while: lines written before
        // the end still arrive after it (a node pushes them on its next sync; the Slurm
        // backend reads its jobs' files a slice every round).
        let mut quiet_since: Option<std::time::Instant> = None;
        let mut failures = 0;
        let mut printed = 0;
        loop {
            let poll = (|| -> Result<(bool, bool, usize), Stop> {
                // The state first: every line written before the job ended is then either in
                // this poll or a later one.
                let job: Job = client.get(&job_path)?;
                let n = print_new_lines(&client, &base, &mut after, &mut printer)?;
                let long_ago = ended_long_ago(&job, switchyard_server::leader::now_ms());
                Ok((is_final(&job.state), long_ago, n))
            })();
            match poll {
                Ok((_, true, n)) => {
                    // Nothing more will come: the same note as without --follow.
                    if printed + n == 0
                        && let Some(note) =
                            why_no_lines(&job, args.rank, args.attempt, args.replica.as_deref())
                    {
                        eprintln!("{note}");
                    }
                    return Ok(());
                }
                Ok((ended, false, n)) => {
                    printed += n;
                    failures = 0;
                    if ended {
                        let since = quiet_since.get_or_insert_with(std::time::Instant::now);
                        if n > 0 {
                            *since = std::time::Instant::now();
                        } else if since.elapsed() >= FOLLOW_QUIET_AFTER_END {
                            return Ok(());
                        }
                    }
                }
                Err(Stop::Failed(CliError::Unreachable(why))) if failures < FOLLOW_RETRIES => {
                    failures += 1;
                    if failures == 1 {
                        eprintln!("warning: {why}; retrying");
                    }
                }
                Err(e) => return Err(e),
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    })();
    match result {
        Ok(()) | Err(Stop::PipeClosed) => Ok(()),
        Err(Stop::Failed(e)) => Err(e),
    }
}

pub fn queue(args: QueueArgs) -> Result<(), CliError> {
    let client = Client::new(&args.client)?;
    let list: JobList = client.get("/v1/jobs?state=pending&limit=1000")?;
    let tenants: TenantList = client.get("/v1/tenants")?;
    if args.json {
        return print_json(
            &serde_json::json!({ "pending": list.jobs, "tenants": tenants.tenants }),
        );
    }
    if list.jobs.is_empty() {
        outln!("queue is empty");
    } else {
        out!("{}", job_table(&list.jobs, true).render());
        if list.next.is_some() {
            // The per-tenant counts below are complete; the list is the first page.
            let total: i64 = tenants.tenants.iter().map(|u| u.pending.max(0)).sum();
            outln!(
                "(the first {} of {} pending jobs; GET /v1/jobs?state=pending&after=… pages through the rest)",
                list.jobs.len(),
                thousands(total as u64)
            );
        }
    }
    outln!();
    let mut t = Table::new(["TENANT", "PENDING", "RUNNING", "ACCELERATORS HELD"]);
    for u in &tenants.tenants {
        t.row([
            u.tenant.clone(),
            thousands(u.pending.max(0) as u64),
            thousands(u.running.max(0) as u64),
            thousands(u.allocated.max(0) as u64),
        ]);
    }
    out!("{}", t.render());
    Ok(())
}

/// `fleet show --server`: the fleet a running server schedules, with what is busy.
pub fn fleet_from_server(args: &ClientArgs, json: bool) -> Result<(), CliError> {
    let client = Client::new(args)?;
    let fleet: FleetState = client.get("/v1/fleet")?;
    if json {
        return print_json(&fleet);
    }
    outln!("fleet {} (from {})", fleet.name, args.url);
    let mut t = Table::new([
        "CLUSTER",
        "PROVIDER",
        "REGION",
        "ACCELERATOR",
        "NODES",
        "ACCELERATORS",
        "BUSY",
        "JOBS",
    ]);
    for c in &fleet.clusters {
        t.row([
            c.name.clone(),
            c.provider.clone(),
            c.region.clone(),
            c.accelerator.clone(),
            thousands(u64::from(c.nodes)),
            thousands(c.accelerators),
            thousands(c.busy.max(0) as u64),
            thousands(c.running_jobs.max(0) as u64),
        ]);
    }
    out!("{}", t.render());
    Ok(())
}

/// Why `logs` with a rank or attempt printed nothing, when the filter is past what the job
/// has (a typo reads the same as a quiet job otherwise). A hint, not a verdict: a Slurm gang
/// padded to whole nodes may run more ranks than it asked accelerators for, and a service's
/// replicas count attempts of their own.
fn why_no_lines(
    job: &Job,
    rank: Option<u32>,
    attempt: Option<u32>,
    replica: Option<&str>,
) -> Option<String> {
    if let Some(name) = replica {
        return Some(if job.kind == "inference" {
            format!(
                "no output from replica {name} of service {id}: a replica's name is the \
                 `[replica …]` prefix of the service's lines (`switchyard logs {id}`)",
                id = job.id
            )
        } else {
            format!(
                "no output from replica {name}: job {} is a {} job, whose lines have ranks \
                 and attempts (--rank, --attempt), not replicas",
                job.id, job.kind
            )
        });
    }
    if job.kind == "inference" {
        // A replica runs one rank per node it spans. (Its attempts are its own: on Slurm each
        // start of a replica is one; nothing to say about them.)
        return match (attempt, rank) {
            (None, Some(r)) if r > 0 => Some(format!(
                "no output from rank {r}: a replica of service {id} runs one rank per node it \
                 spans (only rank 0 for a replica on one node); its lines are told apart by \
                 replica (--replica NAME, the `[replica …]` prefix of `switchyard logs {id}`)",
                id = job.id
            )),
            _ => None,
        };
    }
    let ranks = job.accelerators.max(1);
    if let Some(r) = rank
        && i64::from(r) >= ranks
    {
        return Some(format!(
            "no output from rank {r}: job {} asks for {}, one rank each (0 to {})",
            job.id,
            plural(ranks as u64, "accelerator"),
            ranks - 1
        ));
    }
    let attempts = if job.started_ms.is_some() {
        job.restarts.max(0) + 1
    } else {
        0
    };
    if let Some(a) = attempt
        && i64::from(a) > attempts
    {
        return Some(match attempts {
            0 => format!("no output: job {} has not started yet", job.id),
            n => format!(
                "no output from attempt {a}: job {} has been started {} so far",
                job.id,
                plural(n as u64, "time")
            ),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `logs --follow` on a job that ended a while ago prints and stops; on one that just
    /// ended (or that runs) it waits for lines still on their way.
    #[test]
    fn follow_stops_at_once_only_for_a_job_that_ended_long_ago() {
        let job = |state: &str, finished_ms: Option<i64>| Job {
            id: "j-1".into(),
            name: None,
            tenant: "t".into(),
            kind: "training".into(),
            state: state.into(),
            reason: String::new(),
            priority: 0,
            accelerators: 1,
            cluster: None,
            allocated: 0,
            restarts: 0,
            cancel_requested: false,
            replicas_wanted: None,
            submitted_ms: 0,
            started_ms: None,
            finished_ms,
            spec: serde_json::Value::Null,
        };
        let now = 1_000_000;
        assert!(ended_long_ago(&job("done", Some(now - 61_000)), now));
        assert!(ended_long_ago(
            &job("cancelled", Some(now - 3_600_000)),
            now
        ));
        assert!(!ended_long_ago(&job("done", Some(now - 5_000)), now));
        assert!(
            !ended_long_ago(&job("done", Some(now + 30_000)), now),
            "a clock behind"
        );
        assert!(!ended_long_ago(&job("failed", None), now));
        assert!(!ended_long_ago(&job("running", Some(now - 61_000)), now));
    }

    #[test]
    fn a_reason_does_not_repeat_its_state() {
        assert_eq!(unrepeated("failed", "failed: attempt 4: x"), "attempt 4: x");
        assert_eq!(unrepeated("rejected", "rejected: too big"), "too big");
        assert_eq!(unrepeated("running", "running on 8"), "running on 8");
        assert_eq!(unrepeated("failed", "failedness"), "failedness");
    }

    #[test]
    fn job_files_give_objects_as_tables_not_arrays() {
        let dir = std::env::temp_dir().join(format!("sy-job-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let read = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write");
            read_job_file(&path)
        };
        let good = read(
            "good.toml",
            "kind = \"inference\"\naccelerators = 1\nreplicas = { min = 1, max = 2 }\n",
        )
        .expect("a service");
        assert_eq!(good.replicas.map(|r| (r.min, r.max)), Some((1, 2)));
        for (name, text, says) in [
            (
                "array.toml",
                "kind = \"inference\"\naccelerators = 1\nreplicas = [1, 2]\n",
                "expected an object",
            ),
            (
                "kind.toml",
                "accelerators = 1\nduration_s = 5.0\n[kind]\nbatch = 1\n",
                "expected one of its names as a string",
            ),
        ] {
            let err = read(name, text).expect_err(name).to_string();
            assert!(err.contains(says), "{name}: {err}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn logs_hint_when_a_rank_or_attempt_is_past_the_jobs() {
        let job: Job = serde_json::from_value(serde_json::json!({
            "id": "j-1", "name": null, "tenant": "t", "kind": "training", "state": "running",
            "reason": "", "priority": 0, "accelerators": 6, "cluster": "c", "allocated": 6,
            "restarts": 1, "cancel_requested": false, "replicas_wanted": null,
            "submitted_ms": 0, "started_ms": 5, "finished_ms": null, "spec": {}
        }))
        .expect("a job");
        assert_eq!(
            why_no_lines(&job, Some(9), None, None).as_deref(),
            Some("no output from rank 9: job j-1 asks for 6 accelerators, one rank each (0 to 5)")
        );
        assert_eq!(
            why_no_lines(&job, Some(5), None, None),
            None,
            "a quiet rank"
        );
        assert_eq!(
            why_no_lines(&job, None, Some(99), None).as_deref(),
            Some("no output from attempt 99: job j-1 has been started 2 times so far")
        );
        assert_eq!(why_no_lines(&job, None, Some(2), None), None);
        let service = Job {
            kind: "inference".into(),
            ..job.clone()
        };
        assert_eq!(
            why_no_lines(&service, Some(9), Some(99), None),
            None,
            "replicas count attempts of their own"
        );
        assert_eq!(
            why_no_lines(&service, Some(2), None, None).as_deref(),
            Some(
                "no output from rank 2: a replica of service j-1 runs one rank per node it spans \
                 (only rank 0 for a replica on one node); its lines are told apart by replica \
                 (--replica NAME, the `[replica …]` prefix of `switchyard logs j-1`)"
            )
        );
        assert_eq!(why_no_lines(&service, Some(0), None, None), None);
        assert_eq!(
            why_no_lines(&service, None, None, Some("999.9")).as_deref(),
            Some(
                "no output from replica 999.9 of service j-1: a replica's name is the \
                 `[replica …]` prefix of the service's lines (`switchyard logs j-1`)"
            )
        );
        assert_eq!(
            why_no_lines(&job, None, None, Some("999.9")).as_deref(),
            Some(
                "no output from replica 999.9: job j-1 is a training job, whose lines have \
                 ranks and attempts (--rank, --attempt), not replicas"
            )
        );
    }

    #[test]
    fn a_number_past_64_bits_in_a_job_file_is_said_plainly() {
        let dir = std::env::temp_dir().join(format!("switchyard-job-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("big.toml");
        std::fs::write(
            &file,
            "kind = \"batch\"\naccelerators = 99999999999999999999\nduration_s = 10\n",
        )
        .expect("write");
        let e = read_job_file(&file).expect_err("too large").to_string();
        assert!(
            e.contains("line 2")
                && e.contains(
                    "the number 99999999999999999999 is too large: whole numbers in TOML go up \
                     to 9223372036854775807"
                ),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
