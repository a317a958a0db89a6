//! Simulator benchmarks (docs/benchmarks.md, "Simulator"):
//!
//! ```text
//! cargo bench -p switchyard-sim --bench simulate            # all
//! cargo bench -p switchyard-sim --bench simulate -- gavel   # one group: gavel, philly, million
//! ```
//!
//! Each run prints its wall time, scheduling decisions per second and the headline figures.
//! Traces are read from `$SWITCHYARD_TRACES` (default `../shared/traces` next to the
//! workspace); a group whose files are missing is skipped with a note.

use std::path::PathBuf;
use std::time::Instant;

use switchyard_core::{Fleet, ThroughputTable};
use switchyard_sched::Policy;
use switchyard_sim::trace::{self, LoadOptions, TraceFormat};
use switchyard_sim::{SimOptions, SimResult, simulate};

/// 2,500 GPUs for the Philly list: 625 servers of 4 V100 (Philly's servers had 2, 4 or 8 GPUs),
/// 25 servers to a rack.
const PHILLY_2500: &str = r#"
name = "philly-2500"
[[providers]]
name = "msr"
kind = "on_premises"
[[providers.contracts]]
accelerator = "V100"
on_demand_price = 3.06
[[clusters]]
name = "philly"
provider = "msr"
region = "local"
accelerator = "V100"
nodes = 625
accelerators_per_node = 4
capacity = "on_demand"
node_mtbf_hours = 6328.0
repair_hours = 24.0
[clusters.topology]
scale_up = { nodes = 1, gb_s = 150.0 }
rack = { nodes = 25, gb_s = 12.5 }
cluster_gb_s = 12.5
"#;

fn traces_dir() -> PathBuf {
    std::env::var_os("SWITCHYARD_TRACES").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/traces"),
        PathBuf::from,
    )
}

fn report(name: &str, r: &SimResult) {
    println!(
        "{name:<44} {:>9} jobs {:>9} done {:>4} skipped  avg JCT {:>8.0} s (p50 {:>7.0}, wait {:>7.0})  makespan {:>6.1} d  util {:>5.1}%  failures {:>6}  {:>10} decisions  wall {:>7.3} s  {:>10.0} decisions/s",
        r.total.jobs,
        r.total.completed,
        r.rejected,
        r.total.avg_jct_s,
        r.total.p50_jct_s,
        r.total.avg_wait_s,
        r.total.makespan_s / 86_400.0,
        r.total.utilization * 100.0,
        r.total.failures,
        r.decisions,
        r.wall_s,
        r.decisions_per_s
    );
}

fn run(
    fleet: &Fleet,
    jobs: Vec<switchyard_core::JobSpec>,
    table: ThroughputTable,
    policy: Policy,
    failures: bool,
) -> SimResult {
    let opts = SimOptions {
        policy,
        failures,
        seed: 0,
        // Synthetic jobs a team's quota cap can never admit are skipped and counted.
        skip_invalid: true,
        ..SimOptions::default()
    };
    simulate(fleet, jobs, table, &opts, &mut |_| {}).expect("benchmark inputs are valid")
}

fn gavel(dir: &std::path::Path) {
    let fleet_path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/fleets/gavel-48.toml");
    let Ok(text) = std::fs::read_to_string(&fleet_path) else {
        println!("gavel: {} missing, skipped", fleet_path.display());
        return;
    };
    let fleet = Fleet::from_toml(&text, "gavel-48.toml").expect("gavel-48 is valid");
    let Ok(table) = trace::load_throughputs(&dir.join("gavel-osdi20/simulation_throughputs.json"))
    else {
        println!("gavel: throughput table missing, skipped");
        return;
    };
    for vc in ["e13805", "2869ce"] {
        let path = dir.join(format!("philly/gavel_msr_converted/{vc}_v2.trace"));
        let Ok(t) = trace::load(&path, TraceFormat::Gavel, &LoadOptions::default()) else {
            println!("gavel: {} missing, skipped", path.display());
            continue;
        };
        for policy in Policy::ALL {
            let r = run(&fleet, t.jobs.clone(), table.clone(), policy, false);
            report(&format!("gavel {vc} 16:16:16 {policy}"), &r);
        }
    }
}

fn philly(dir: &std::path::Path) {
    let path = dir.join("philly/pollux_philly_jobs.csv");
    let loaded = Instant::now();
    let Ok(t) = trace::load(&path, TraceFormat::Philly, &LoadOptions::default()) else {
        println!("philly: {} missing, skipped", path.display());
        return;
    };
    println!(
        "philly: loaded {} jobs in {:.2} s",
        t.jobs.len(),
        loaded.elapsed().as_secs_f64()
    );
    let fleet = Fleet::from_toml(PHILLY_2500, "philly-2500").expect("valid");
    for policy in Policy::ALL {
        let r = run(&fleet, t.jobs.clone(), ThroughputTable::new(), policy, true);
        report(&format!("philly 82k jobs, 2,500 GPUs, {policy}"), &r);
    }
}

fn million() {
    let fleet = Fleet::builtin("colossus-1-expanded").expect("built-in fleet");
    let made = Instant::now();
    let jobs = trace::synthetic(&fleet, 1_000_000, 0);
    println!(
        "million: generated {} jobs in {:.2} s",
        jobs.len(),
        made.elapsed().as_secs_f64()
    );
    let r = run(
        &fleet,
        jobs,
        ThroughputTable::new(),
        Policy::Switchyard,
        true,
    );
    report("1M synthetic jobs, colossus-1-expanded, failures on", &r);
}

fn main() {
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let on = |name: &str| wanted.is_empty() || wanted.iter().any(|w| w == name);
    let dir = traces_dir();
    if on("gavel") {
        gavel(&dir);
    }
    if on("philly") {
        philly(&dir);
    }
    if on("million") {
        million();
    }
}
