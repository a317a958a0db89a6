//! `switchyard simulate`: replay a trace (or the frontier-lab scenario) through the scheduler on
//! a virtual clock and summarise the run.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use switchyard_core::ThroughputTable;
use switchyard_sched::Policy;
use switchyard_sim::trace::{self, LoadOptions, TraceError, TraceFormat};
use switchyard_sim::{Progress, SimOptions, SimResult, simulate};

use crate::CliError;
use crate::error::{out, outln};
use crate::fleet_cmd::{load_fleet, print_json};
use crate::table::{Table, number, plural, thousands};

/// Failure injection switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  switchyard simulate\n  switchyard simulate --policy fifo --report fifo.html\n  switchyard simulate --fleet examples/fleets/gavel-48.toml \\\n      --trace data/traces/gavel/e13805_v2.trace --format gavel \\\n      --throughputs data/traces/gavel/simulation_throughputs.json --failures off --json"
)]
pub struct SimulateArgs {
    /// Fleet file (TOML), or the name of a built-in fleet; default: the built-in default fleet.
    #[arg(long, value_name = "FILE")]
    fleet: Option<PathBuf>,
    /// Trace to replay; without one the frontier-lab scenario runs on the fleet.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Format of --trace: canonical, philly, itp, alibaba2023 or gavel.
    #[arg(
        long,
        value_name = "FORMAT",
        requires = "trace",
        default_value = "canonical"
    )]
    format: String,
    /// Gavel's per-GPU-type throughput JSON (needed by --format gavel).
    #[arg(long, value_name = "FILE")]
    throughputs: Option<PathBuf>,
    /// Scheduling policy: fifo, priority, fair or switchyard.
    #[arg(long, value_name = "NAME", default_value = "switchyard")]
    policy: String,
    /// Seed of the random numbers (failures, generated scenario).
    #[arg(long, value_name = "N", default_value_t = 0, allow_negative_numbers = true, value_parser = crate::error::seed)]
    seed: u64,
    /// Inject node failures at each cluster's rate.
    #[arg(long, value_enum, default_value = "on")]
    failures: OnOff,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// Write a self-contained HTML report with plots.
    #[arg(long, value_name = "FILE.html")]
    report: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Skip malformed rows and jobs that can never run (counted) instead of failing.
    #[arg(long)]
    skip_invalid: bool,
}

fn trace_error(e: TraceError) -> CliError {
    match e {
        TraceError::Io { file, source } => CliError::Read {
            path: PathBuf::from(file),
            source,
        },
        other => CliError::Input(other.to_string()),
    }
}

/// A canonical trace names the fleet's teams; one it does not list (a typo, most often) runs
/// under no quota: said once per name, on stderr.
fn warn_unlisted_teams(fleet: &switchyard_core::Fleet, jobs: &[switchyard_core::job::JobSpec]) {
    let teams: Vec<&str> = fleet
        .tenants
        .iter()
        .flat_map(|o| o.teams.iter().map(|t| t.name.as_str()))
        .collect();
    if teams.is_empty() {
        return;
    }
    let mut unlisted: std::collections::BTreeMap<&str, usize> = Default::default();
    for j in jobs {
        if j.tenant != trace::DEFAULT_TENANT && !teams.contains(&j.tenant.as_str()) {
            *unlisted.entry(j.tenant.as_str()).or_default() += 1;
        }
    }
    for (name, count) in unlisted {
        // An organisation's name is the likeliest slip: say which teams it means.
        let what = match fleet.tenants.iter().find(|o| o.name == name) {
            Some(org) => format!(
                "is organisation {name} of fleet {}, not a team (its teams: {})",
                fleet.name,
                org.teams
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => format!(
                "is not a team of fleet {} (its teams: {})",
                fleet.name,
                teams.join(", ")
            ),
        };
        tracing::warn!(
            "tenant `{name}` ({}) {what}: its jobs run under no quota",
            crate::table::plural(count as u64, "job"),
        );
    }
}

pub fn run(args: SimulateArgs) -> Result<(), CliError> {
    let policy: Policy = args.policy.parse().map_err(CliError::Input)?;
    let fleet = load_fleet(args.fleet.as_deref())?;
    let throughputs = match &args.throughputs {
        Some(path) => trace::load_throughputs(path).map_err(trace_error)?,
        None => ThroughputTable::new(),
    };
    let mut skipped = 0usize;
    let mut origins = HashMap::new();
    let jobs = match &args.trace {
        Some(path) => {
            let format: TraceFormat = args.format.parse().map_err(trace_error)?;
            if format == TraceFormat::Gavel
                && throughputs.is_empty()
                && let Some(file) = &args.throughputs
            {
                return Err(CliError::Input(format!(
                    "{}: holds no throughput entries; --format gavel counts its jobs in steps \
                     and needs Gavel's per-GPU-type rates (simulation_throughputs.json)",
                    file.display()
                )));
            }
            if format == TraceFormat::Gavel && throughputs.is_empty() {
                return Err(CliError::Input(
                    "--format gavel needs --throughputs FILE (Gavel's simulation_throughputs.json): its jobs are counted in steps".into(),
                ));
            }
            let t = trace::load(
                path,
                format,
                &LoadOptions {
                    skip_invalid: args.skip_invalid,
                },
            )
            .map_err(trace_error)?;
            skipped = t.skipped;
            if format == TraceFormat::Canonical {
                warn_unlisted_teams(&fleet, &t.jobs);
            }
            origins = t.origins;
            t.jobs
        }
        None => trace::frontier_lab(&fleet, args.seed),
    };
    if jobs.is_empty() {
        let name = args.trace.as_ref().map_or_else(
            || "the built-in scenario".to_owned(),
            |p| p.display().to_string(),
        );
        return Err(CliError::Input(if skipped > 0 {
            format!(
                "{name}: the trace holds no jobs: all {skipped} of its rows were skipped (bad rows \
                 under --skip-invalid, or rows its format leaves out, docs/traces.md)"
            )
        } else {
            format!("{name}: the trace holds no jobs")
        }));
    }
    let opts = SimOptions {
        policy,
        seed: args.seed,
        failures: args.failures == OnOff::On,
        skip_invalid: args.skip_invalid,
        ..SimOptions::default()
    };
    let show = !(args.json || args.quiet);
    let started = Instant::now();
    let mut bar: Option<ProgressBar> = None;
    let mut on_progress = |p: Progress| {
        if !show || started.elapsed() < Duration::from_secs(1) {
            return;
        }
        let b = bar.get_or_insert_with(|| {
            let b = ProgressBar::with_draw_target(Some(p.total), ProgressDrawTarget::stderr());
            // Its first frame has the message too, not "()".
            b.set_message(format!("virtual day {:.1}", p.now_s / 86_400.0));
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} simulating [{bar:40}] {pos}/{len} jobs done ({msg}) {elapsed}",
                )
                .expect("the template is valid")
                .progress_chars("=> "),
            );
            b
        });
        b.set_position(p.finished);
        b.set_message(format!("virtual day {:.1}", p.now_s / 86_400.0));
    };
    let result = simulate(&fleet, jobs, throughputs, &opts, &mut on_progress).map_err(|e| {
        CliError::Input(match (&e, &args.trace) {
            // Readers sort a trace by submission time: the reader's record of where each
            // job's row was, not the job's position, finds it in the file.
            (switchyard_sim::SimError::Job { id, message, .. }, Some(path)) => {
                match origins.get(id) {
                    Some(at) => format!("{}: line {}: job `{id}`: {message}", at.file, at.line),
                    None => format!("{}: job `{id}`: {message}", path.display()),
                }
            }
            _ => e.to_string(),
        })
    })?;
    if let Some(b) = bar.take() {
        b.finish_and_clear();
    }
    // Rows the trace reader skipped are jobs of the trace too: counted in `jobs` and
    // `rejected`, as the simulator counts the jobs it skips.
    let mut result = result;
    result.rejected += skipped as u64;
    result.total.jobs += skipped as u64;
    if let Some(path) = &args.report {
        let html = switchyard_sim::report::html(&result).map_err(CliError::Other)?;
        crate::error::write_text(path, &html)?;
    }
    if args.json {
        return print_json(&result);
    }
    out!("{}", render(&result));
    if let Some(path) = &args.report {
        outln!("report written to {}", path.display());
    }
    Ok(())
}

fn hours(s: f64) -> String {
    format!("{:.2}", s / 3600.0)
}

/// Whole dollars with thousands separators, or cents where whole dollars would hide most of
/// it (a short run costs 0.45); nothing spent is 0.
fn dollars(usd: f64) -> String {
    if usd == 0.0 {
        "0".into()
    } else if usd.abs() < 100.0 {
        format!("{usd:.2}")
    } else {
        number(usd, 0)
    }
}

/// A span in hours, or in seconds where it is under an hour ("makespan 0.0 h" says nothing).
fn span(s: f64) -> String {
    if s < 3600.0 {
        format!("{s:.0} s")
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

fn render(r: &SimResult) -> String {
    let t = &r.total;
    let mut out = format!(
        "Simulated {} on {} under `{}` (seed {}, failures {}): {} completed, {} unfinished, {}{} skipped{}; {} in {:.2} s ({}/s)\n\n",
        crate::table::plural(t.jobs, "job"),
        r.fleet,
        r.policy,
        r.seed,
        if r.failures_enabled { "on" } else { "off" },
        thousands(t.completed),
        thousands(r.unfinished),
        if r.failed > 0 {
            format!(
                "{} failed (their nodes fail too often for them to keep or finish work), ",
                thousands(r.failed)
            )
        } else {
            String::new()
        },
        thousands(r.rejected),
        r.services_clause(),
        crate::table::plural(r.decisions, "decision"),
        r.wall_s,
        number(r.decisions_per_s, 0)
    );
    if let Some(note) = r.horizon_note() {
        out.push_str(&note);
        out.push_str("\n\n");
    }
    let mut table = Table::new([
        "scope",
        "accelerators",
        "jobs",
        "completed",
        "avg JCT h",
        "p50 JCT h",
        "p99 JCT h",
        "avg wait h",
        "util",
        "goodput",
        "cost $",
        "failures",
        "preempted",
    ]);
    let row = |table: &mut Table, name: &str, acc: String, f: &switchyard_sim::Figures| {
        table.row([
            name.to_owned(),
            acc,
            thousands(f.jobs),
            thousands(f.completed),
            hours(f.avg_jct_s),
            hours(f.p50_jct_s),
            hours(f.p99_jct_s),
            hours(f.avg_wait_s),
            format!("{:.1}%", f.utilization * 100.0),
            // Nothing ran there: goodput is 0 of 0, not all work lost.
            if f.utilization == 0.0 && f.goodput == 0.0 {
                "-".to_owned()
            } else {
                format!("{:.1}%", f.goodput * 100.0)
            },
            dollars(f.cost_usd),
            thousands(f.failures),
            thousands(f.preemptions),
        ]);
    };
    for (name, c) in &r.clusters {
        row(
            &mut table,
            name,
            format!("{} {}", thousands(c.accelerators), c.accelerator),
            &c.figures,
        );
    }
    table.rule();
    let total_acc: u64 = r.clusters.values().map(|c| c.accelerators).sum();
    row(&mut table, "fleet", thousands(total_acc), t);
    out.push_str(&table.render());
    out.push_str(&format!(
        "\nmakespan {}; avg JCT {} s; {}, {}, {}\n",
        span(t.makespan_s),
        number(t.avg_jct_s, 0),
        plural(t.failures, "node failure"),
        plural(r.restarts, "restart"),
        plural(t.preemptions, "preemption")
    ));
    list_examples(&mut out, "unfinished", r.unfinished, &r.unfinished_examples);
    list_examples(
        &mut out,
        "services that never had a replica",
        r.unplaced_services,
        &r.unplaced_service_examples,
    );
    out
}

/// A titled section of `examples` (the first of `total`), each with why; nothing when none.
fn list_examples(
    out: &mut String,
    title: &str,
    total: u64,
    examples: &[switchyard_sim::UnfinishedJob],
) {
    if examples.is_empty() {
        return;
    }
    let shown = examples.len() as u64;
    out.push_str(&if shown < total {
        format!("\n{title} (the first {shown} of {}):\n", thousands(total))
    } else {
        format!("\n{title}:\n")
    });
    for u in examples {
        out.push_str(&format!("  {}: {}\n", u.id, u.why));
    }
}

#[cfg(test)]
mod tests {
    use super::{dollars, span};

    #[test]
    fn small_costs_and_spans_keep_their_digits() {
        assert_eq!(dollars(0.45), "0.45");
        assert_eq!(dollars(99.994), "99.99");
        assert_eq!(dollars(126_750_903.65), "126,750,904");
        assert_eq!(dollars(0.0), "0");
        assert_eq!(span(10.0), "10 s");
        assert_eq!(span(7200.0), "2.0 h");
    }
}
