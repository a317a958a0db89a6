//! The client verbs: `submit`, `status`, `cancel`, `events`, `queue`.

use std::path::PathBuf;

use switchyard_server::api::{FleetState, Job, JobEvents, JobList, SubmitRequest, TenantList};

use crate::CliError;
use crate::client::{Client, ClientArgs, encode};
use crate::error::read_text;
use crate::fleet_cmd::print_json;
use crate::table::{Table, thousands};

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
    job: Option<String>,
    /// Only jobs in these states (comma-separated: pending, running, done, cancelled, rejected).
    #[arg(long)]
    state: Option<String>,
    /// Most jobs to list.
    #[arg(long, default_value_t = 100)]
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
    job: String,
    #[command(flatten)]
    client: ClientArgs,
    #[arg(long)]
    json: bool,
}

/// Show a job's events: placements, preemptions, restarts, and why it waits.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  switchyard events j-1f2e3d4c5b6a7980\n  switchyard events j-1f2e3d4c5b6a7980 --json"
)]
pub struct EventsArgs {
    job: String,
    #[command(flatten)]
    client: ClientArgs,
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
    #[arg(long)]
    json: bool,
}

/// Reads a job file.
pub fn read_job_file(path: &std::path::Path) -> Result<SubmitRequest, CliError> {
    let text = read_text(path)?;
    toml::from_str::<SubmitRequest>(&text)
        .map_err(|e| CliError::Input(format!("{}: {e}", path.display())))
}

pub fn submit(args: SubmitArgs) -> Result<(), CliError> {
    let req = read_job_file(&args.file)?;
    let client = Client::new(&args.client)?;
    let job: Job = client.post("/v1/jobs", Some(&req))?;
    if args.json {
        return print_json(&job);
    }
    println!(
        "submitted {} ({} {}, {} accelerators): {}",
        job.id,
        job.kind,
        job.name.as_deref().unwrap_or("-"),
        thousands(job.accelerators.max(0) as u64),
        job.reason
    );
    Ok(())
}

fn ago(ms: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let s = ((now - ms) / 1000).max(0);
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

pub fn status(args: StatusArgs) -> Result<(), CliError> {
    let client = Client::new(&args.client)?;
    if let Some(id) = &args.job {
        let job: Job = client.get(&format!("/v1/jobs/{}", encode(id)))?;
        if args.json {
            return print_json(&job);
        }
        let mut t = Table::new(["FIELD", "VALUE"]);
        let opt = |x: Option<i64>| x.map_or("-".into(), ago);
        for (k, v) in [
            ("id", job.id.clone()),
            ("name", job.name.clone().unwrap_or_else(|| "-".into())),
            ("tenant", job.tenant.clone()),
            ("kind", job.kind.clone()),
            ("state", job.state.clone()),
            ("why", job.reason.clone()),
            ("priority", job.priority.to_string()),
            ("accelerators", thousands(job.accelerators.max(0) as u64)),
            ("allocated", thousands(job.allocated.max(0) as u64)),
            ("cluster", job.cluster.clone().unwrap_or_else(|| "-".into())),
            ("restarts", job.restarts.to_string()),
            ("submitted", format!("{} ago", ago(job.submitted_ms))),
            ("started", opt(job.started_ms)),
            ("finished", opt(job.finished_ms)),
        ] {
            t.row([k.to_string(), v]);
        }
        print!("{}", t.render());
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
        println!("no jobs");
    } else {
        print!("{}", job_table(&list.jobs, false).render());
        if list.next.is_some() {
            println!("(more: raise --limit or use the API's `after` cursor)");
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
    println!(
        "cancellation of {} requested (it was {})",
        job.id, job.state
    );
    Ok(())
}

pub fn events(args: EventsArgs) -> Result<(), CliError> {
    let client = Client::new(&args.client)?;
    let ev: JobEvents = client.get(&format!("/v1/jobs/{}/events", encode(&args.job)))?;
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
    print!("{}", t.render());
    println!("{} is {}: {}", ev.job, ev.state, ev.reason);
    Ok(())
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
        println!("queue is empty");
    } else {
        print!("{}", job_table(&list.jobs, true).render());
    }
    println!();
    let mut t = Table::new(["TENANT", "PENDING", "RUNNING", "ACCELERATORS HELD"]);
    for u in &tenants.tenants {
        t.row([
            u.tenant.clone(),
            thousands(u.pending.max(0) as u64),
            thousands(u.running.max(0) as u64),
            thousands(u.allocated.max(0) as u64),
        ]);
    }
    print!("{}", t.render());
    Ok(())
}

/// `fleet show --server`: the fleet a running server schedules, with what is busy.
pub fn fleet_from_server(args: &ClientArgs, json: bool) -> Result<(), CliError> {
    let client = Client::new(args)?;
    let fleet: FleetState = client.get("/v1/fleet")?;
    if json {
        return print_json(&fleet);
    }
    println!("fleet {} (from {})", fleet.name, args.url);
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
    print!("{}", t.render());
    Ok(())
}
