//! `switchyard plan`: how fast a model trains or serves on given hardware, and its best layout.

use std::fmt::Write as _;
use std::path::PathBuf;

use switchyard_perf::TrainingEstimate;
use switchyard_perf::infer::Concurrency;
use switchyard_perf::plan::{PlanReport, TrainingReport, human_duration, parse_plan, run_plan};
use switchyard_perf::validate::{Kind, ValidationReport, validate_csv};

use crate::CliError;
use crate::error::read_text;
use crate::error::{out, outln};
use crate::table::{number, plural, thousands};

/// Predict step time, MFU, memory and cost of a training run (or the throughput and latency of
/// an inference replica) from a plan file; without `[parallelism]`, search for the fastest
/// layout that fits. `--validate CSV` compares the model with published runs instead.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  switchyard plan examples/plan/llama3-405b-h100.toml\n  switchyard plan examples/plan/llama3-405b-search.toml --json\n  switchyard plan --validate data/calibration/published_training_runs.csv"
)]
pub struct PlanArgs {
    /// Plan file (TOML: [model], [training] or [inference], [hardware], optional [parallelism]).
    #[arg(required_unless_present = "validate", conflicts_with = "validate")]
    pub file: Option<PathBuf>,
    /// Compare predictions with a calibration CSV (published training or inference runs).
    #[arg(long, value_name = "CSV")]
    pub validate: Option<PathBuf>,
    /// Fleet file, or the name of a built-in fleet, that `[hardware] cluster = "..."` names a
    /// cluster of (default: the built-in default fleet). Calibration rows name accelerators,
    /// not clusters, so `--validate` takes none.
    #[arg(long, value_name = "FILE", conflicts_with = "validate")]
    pub fleet: Option<PathBuf>,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, CliError> {
    serde_json::to_string_pretty(value)
        .map_err(|e| CliError::Other(format!("cannot encode JSON: {e}")))
}

pub fn run(args: PlanArgs) -> Result<(), CliError> {
    if let Some(csv) = &args.validate {
        let text = read_text(csv)?;
        let report =
            validate_csv(&text).map_err(|e| CliError::Input(format!("{}: {e}", csv.display())))?;
        if args.json {
            outln!("{}", to_json(&report)?);
        } else {
            out!("{}", validation_table(&report));
        }
        // Rows that could not be evaluated are in the report (JSON `failed_rows`, or listed
        // under the table); stderr repeats them so that a script reading only the figures
        // still sees them.
        for f in &report.failed_rows {
            eprintln!(
                "warning: row {} (line {}) not evaluated: {}",
                f.id, f.line, f.error
            );
        }
        return Ok(());
    }
    let Some(file) = &args.file else {
        return Err(CliError::Input("give a plan FILE or --validate CSV".into()));
    };
    let fleet = crate::fleet_cmd::load_fleet(args.fleet.as_deref())?;
    let text = read_text(file)?;
    let plan = parse_plan(&text, &fleet)
        .map_err(|e| CliError::Input(format!("{}: {e}", file.display())))?;
    let report =
        run_plan(&plan).map_err(|e| CliError::Input(format!("{}: {e}", file.display())))?;
    if args.json {
        outln!("{}", to_json(&report)?);
    } else {
        out!("{}", human(&report));
    }
    Ok(())
}

fn layout_cell(e: &TrainingEstimate) -> String {
    e.layout_label()
}

/// MFU is measured against the BF16 peak whatever the precision (the definition, so
/// that FP8 and BF16 runs compare): an FP8 run's text also gives it against the FP8 peak, as
/// the figure may pass 100%.
fn of_fp8_peak(r: &TrainingReport) -> String {
    let peaks = switchyard_core::accelerator::lookup(&r.subject.accelerator)
        .and_then(|a| Some((a.bf16_tflops, a.fp8_tflops?)));
    match peaks {
        Some((bf16, fp8)) if r.precision == "fp8" && fp8 > 0.0 => format!(
            " of the BF16 peak ({:.1}% / {:.1}% of the FP8 peak)",
            r.best.mfu * bf16 / fp8 * 100.0,
            r.best.hfu * bf16 / fp8 * 100.0
        ),
        _ => String::new(),
    }
}

fn training_text(r: &TrainingReport) -> String {
    let mut s = String::new();
    let b = &r.best;
    let _ = writeln!(
        s,
        "{} ({:.1}B params, {:.1}B active) on {} × {}{} — {}, global batch {}{}, stack {}{}",
        r.subject.model,
        r.subject.params_b,
        r.subject.active_params_b,
        thousands(u64::from(r.subject.count)),
        r.subject.accelerator,
        r.subject
            .cluster
            .as_ref()
            .map(|c| format!(" (cluster {c})"))
            .unwrap_or_default(),
        r.precision,
        thousands(u64::from(r.global_batch)),
        r.capacity_factor
            .map(|cf| format!(", capacity factor {cf}"))
            .unwrap_or_default(),
        r.software,
        r.expert_dispatch
            .map(|d| format!(", {} dispatch", d.label()))
            .unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "layout            {}{}",
        layout_cell(b),
        if r.searched { "  (searched)" } else { "" }
    );
    let rows: Vec<(&str, String)> = vec![
        ("step time", format!("{:.3} s", b.step_time_s)),
        ("tokens/s", rate(b.tokens_per_s)),
        (
            "MFU / HFU",
            format!(
                "{:.1}% / {:.1}%{}",
                b.mfu * 100.0,
                b.hfu * 100.0,
                of_fp8_peak(r)
            ),
        ),
        (
            "model TFLOP/s/dev",
            format!("{:.0}", b.model_tflops_per_device),
        ),
        (
            "memory/device",
            format!(
                "{:.1} GiB of {:.1} ({}) — weights {:.1}, grads {:.1}, optimizer {:.1}, activations {:.1}",
                b.memory.total_gib,
                b.memory.capacity_gib,
                if b.fits { "fits" } else { "DOES NOT FIT" },
                b.memory.weights_gib,
                b.memory.gradients_gib,
                b.memory.optimizer_gib,
                b.memory.activations_gib
            ),
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(s, "{k:<18}{v}");
    }
    let d = &b.breakdown;
    let _ = writeln!(
        s,
        "\nper step (s)      compute {:.3} | tp {:.3} | cp {:.3} | ep {:.3} | pp {:.3} | dp {:.3} ({:.3} exposed) | bubble {:.3} | optimizer {:.3} | overhead {:.3}",
        d.compute_s,
        d.tp_comm_s,
        d.cp_comm_s,
        d.ep_comm_s,
        d.pp_comm_s,
        d.dp_comm_s,
        d.dp_comm_exposed_s,
        d.pipeline_bubble_s,
        d.optimizer_s,
        d.step_overhead_s
    );
    let _ = writeln!(
        s,
        "communication     {:.3} s exposed, {:.3} s overlapped",
        d.exposed_comm_s, d.overlapped_comm_s
    );
    if let Some(bud) = &r.budget {
        let _ = writeln!(
            s,
            "\n{:.3e} tokens: {:.1} days ({:.1} without failures; goodput {:.1}%), {} accelerator-hours, cost {}",
            bud.tokens,
            bud.days_to_train,
            bud.ideal_days,
            bud.goodput * 100.0,
            number(bud.accelerator_hours, 0),
            bud.cost_usd
                .map(|c| format!("${}", number(c, 0)))
                .unwrap_or_else(|| "unknown (no contract prices this accelerator)".into())
        );
        if bud.checkpoints > 0 {
            let _ = writeln!(
                s,
                "checkpoints       every {} (Young/Daly, in whole steps; write {}, job MTBF {})",
                human_duration(bud.checkpoint_interval_hours * 3600.0),
                human_duration(bud.checkpoint_write_s),
                human_duration(bud.job_mtbf_hours * 3600.0)
            );
        } else {
            let _ = writeln!(
                s,
                "checkpoints       none: the run is no longer than one Young/Daly interval \
                 (write {}, job MTBF {})",
                human_duration(bud.checkpoint_write_s),
                human_duration(bud.job_mtbf_hours * 3600.0)
            );
        }
        if let Some(warning) = &bud.warning {
            let _ = writeln!(s, "warning: {warning}");
        }
    }
    if !r.alternatives.is_empty() {
        let _ = writeln!(s, "\nnext best layouts");
        let cells: Vec<String> = r.alternatives.iter().map(layout_cell).collect();
        let width = cells.iter().map(|c| c.chars().count()).fold(46, usize::max);
        let _ = writeln!(
            s,
            "  {:<width$} {:>9} {:>12} {:>7} {:>9}",
            "layout", "step s", "tokens/s", "MFU", "mem GiB"
        );
        for (e, cell) in r.alternatives.iter().zip(&cells) {
            let _ = writeln!(
                s,
                "  {:<width$} {:>9.3} {:>12} {:>6.1}% {:>9.1}",
                cell,
                e.step_time_s,
                rate(e.tokens_per_s),
                e.mfu * 100.0,
                e.memory_per_device_gib
            );
        }
    }
    notes(&mut s, &r.notes);
    s
}

/// The report's caveats, one `note:` line each, after a blank line.
fn notes(s: &mut String, notes: &[String]) {
    if !notes.is_empty() {
        s.push('\n');
    }
    for note in notes {
        let _ = writeln!(s, "note: {note}");
    }
}

/// A rate in tokens per second: whole numbers from 100 up (with thousands separators),
/// three significant digits below (a model that barely runs reads 0.335, not 0).
fn rate(per_s: f64) -> String {
    if per_s >= 100.0 || per_s == 0.0 || !per_s.is_finite() {
        number(per_s, 0)
    } else {
        let decimals = (2 - per_s.log10().floor() as i32).clamp(0, 12) as usize;
        format!("{per_s:.decimals$}")
    }
}

fn human(report: &PlanReport) -> String {
    match report {
        PlanReport::Training(r) => training_text(r),
        PlanReport::Inference(r) => {
            let e = &r.estimate;
            let mut s = String::new();
            let _ = writeln!(
                s,
                "{} ({:.1}B params) on {} × {} — {} inference, {} prompt + {} output tokens",
                r.subject.model,
                r.subject.params_b,
                thousands(u64::from(r.subject.count)),
                r.subject.accelerator,
                r.precision,
                thousands(u64::from(r.prompt_tokens)),
                thousands(u64::from(r.output_tokens))
            );
            let rows: Vec<(&str, String)> = vec![
                (
                    "layout",
                    format!(
                        "{}{}",
                        e.layout,
                        if r.searched { "  (searched)" } else { "" }
                    ),
                ),
                (
                    "concurrency",
                    match r.requested_concurrency {
                        _ if e.max_concurrency == 0 => format!(
                            "{} (none fits; the figures below are as if memory allowed it)",
                            e.concurrency
                        ),
                        Concurrency::Fixed(n) if n > e.concurrency => format!(
                            "{} of {n} requested (max that fits: {}; the rest wait)",
                            e.concurrency, e.max_concurrency
                        ),
                        _ => format!("{} (max that fits: {})", e.concurrency, e.max_concurrency),
                    },
                ),
                ("output tokens/s", rate(e.tokens_per_s)),
                ("TTFT", format!("{:.1} ms", e.ttft_s * 1e3)),
                ("TPOT", format!("{:.1} ms", e.tpot_s * 1e3)),
                (
                    "memory/device",
                    format!(
                        "weights {:.1} GiB, KV cache {:.1} GiB ({:.0} KiB/token){}",
                        e.weights_per_device_gib,
                        e.kv_cache_per_device_gib,
                        e.kv_bytes_per_token / 1024.0,
                        if e.fits {
                            String::new()
                        } else {
                            format!(
                                " — DOES NOT FIT: weights and workspace take {:.1} GiB of the \
                                 {:.1} usable, and one request's KV cache needs {:.1} GiB",
                                e.weights_per_device_gib + e.workspace_per_device_gib,
                                e.usable_per_device_gib,
                                e.kv_cache_per_request_gib
                            )
                        }
                    ),
                ),
            ];
            for (k, v) in rows {
                let _ = writeln!(s, "{k:<18}{v}");
            }
            if !r.alternatives.is_empty() {
                let _ = writeln!(s, "\nnext best layouts");
                let _ = writeln!(
                    s,
                    "  {:<16} {:>12} {:>10} {:>10} {:>12}",
                    "layout", "tokens/s", "TTFT ms", "TPOT ms", "concurrency"
                );
                for a in &r.alternatives {
                    let _ = writeln!(
                        s,
                        "  {:<16} {:>12} {:>10.1} {:>10.1} {:>12}",
                        a.layout.to_string(),
                        rate(a.tokens_per_s),
                        a.ttft_s * 1e3,
                        a.tpot_s * 1e3,
                        a.concurrency
                    );
                }
            }
            notes(&mut s, &r.notes);
            s
        }
    }
}

fn validation_table(r: &ValidationReport) -> String {
    let mut s = String::new();
    let unit = match r.kind {
        Kind::Training => "tokens/s",
        Kind::Inference => "output tok/s",
    };
    let _ = writeln!(
        s,
        "{:<8} {:<22} {:<30} {:<10} {:>7} {:>13} {:>13} {:>8}  layout",
        "id",
        "source",
        "model",
        "hardware",
        "count",
        format!("published {unit}")
            .chars()
            .take(13)
            .collect::<String>(),
        "predicted",
        "error"
    );
    for row in &r.rows {
        let _ = writeln!(
            s,
            "{:<8} {:<22} {:<30} {:<10} {:>7} {:>13} {:>13} {:>+7.1}%  {}",
            row.id,
            row.source,
            row.model.chars().take(30).collect::<String>(),
            row.accelerator,
            thousands(u64::from(row.count)),
            number(row.published, 0),
            number(row.predicted, 0),
            row.error * 100.0,
            row.layout
        );
    }
    let _ = writeln!(
        s,
        "\n{}: median |error| {:.1}%, worst {:.1}% ({}), mean error {:+.1}%",
        plural(r.rows.len() as u64, "row"),
        r.median_abs_error * 100.0,
        r.worst_abs_error * 100.0,
        r.worst_id,
        r.mean_error * 100.0
    );
    if !r.failed_rows.is_empty() {
        let _ = writeln!(
            s,
            "{} not evaluated (left out of the figures above):",
            plural(r.failed_rows.len() as u64, "row")
        );
        for f in &r.failed_rows {
            let _ = writeln!(s, "  line {} ({}): {}", f.line, f.id, f.error);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::rate;

    #[test]
    fn small_rates_keep_three_significant_digits() {
        assert_eq!(rate(123_456.7), "123,457");
        assert_eq!(rate(2_453_826.4), "2,453,826");
        assert_eq!(rate(100.0), "100");
        assert_eq!(rate(12.34), "12.3");
        assert_eq!(rate(0.3349), "0.335");
        assert_eq!(rate(0.0), "0");
        assert_eq!(rate(2.5e-7), "0.000000250");
    }
}
