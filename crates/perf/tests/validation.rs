//! The model against the published runs in data/calibration (the issue's thresholds).

use switchyard_perf::validate::{ValidationReport, validate_csv};

fn report(file: &str) -> ValidationReport {
    let path = format!(
        "{}/../../data/calibration/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("the calibration CSV is in the repository");
    let report = validate_csv(&text).expect("every calibration row is valid input");
    if std::env::var_os("SHOW_ROWS").is_some() {
        for r in &report.rows {
            println!(
                "{:7} {:22} {:28} {:10} {:6} pub {:>10.0} pred {:>10.0} err {:+6.1}% {}",
                r.id,
                r.source,
                r.model.chars().take(28).collect::<String>(),
                r.accelerator,
                r.count,
                r.published,
                r.predicted,
                r.error * 100.0,
                r.layout
            );
        }
    }
    println!(
        "{file}: median |error| {:.1}%, worst {:.1}% ({}), mean {:+.1}%",
        report.median_abs_error * 100.0,
        report.worst_abs_error * 100.0,
        report.worst_id,
        report.mean_error * 100.0
    );
    report
}

#[test]
fn training_runs_within_issue_thresholds() {
    let r = report("published_training_runs.csv");
    assert!(r.rows.len() >= 200);
    assert!(r.median_abs_error <= 0.10, "median {}", r.median_abs_error);
    assert!(
        r.worst_abs_error <= 0.25,
        "worst {} ({})",
        r.worst_abs_error,
        r.worst_id
    );
}

#[test]
fn inference_runs_within_issue_thresholds() {
    let r = report("published_inference_runs.csv");
    assert!(r.rows.len() >= 30);
    assert!(r.median_abs_error <= 0.15, "median {}", r.median_abs_error);
    assert!(
        r.worst_abs_error <= 0.35,
        "worst {} ({})",
        r.worst_abs_error,
        r.worst_id
    );
}
