//! Benchmark (docs/benchmarks.md, "Slurm"): N short jobs (`true`, one task each) submitted and
//! completed on this machine's Slurm, three ways in one run:
//!
//! 1. `sbatch` directly (the same arguments the backend uses), one process per job;
//! 2. through Switchyard's HTTP API, its scheduler and the Slurm backend;
//! 3. through Switchyard's API with the dry-run backend (no Slurm: the control plane alone).
//!
//! Run: `cargo run -p switchyard-slurm --example slurm_bench -- [--jobs N] [--per-node P]`
//! (needs a running Slurm: crates/slurm/scripts/start-local-slurm.sh). `--per-node` is how many
//! "accelerators" the fleet says the node has (the scheduler runs at most that many at once).

#[path = "../tests/common/server.rs"]
mod server;

use std::time::{Duration, Instant};

use serde_json::json;
use server::{Server, local_fleet, slurm_usable};
use switchyard_slurm::{CliClient, SlurmClient, Submission};

fn arg(name: &str, default: u32) -> u32 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Row {
    how: String,
    submit_s: f64,
    total_s: f64,
    jobs: u32,
}

fn direct(jobs: u32) -> Row {
    let client = CliClient::default();
    let tag = format!("bench-direct-{}", std::process::id());
    let t0 = Instant::now();
    let mut ids = Vec::with_capacity(jobs as usize);
    for i in 0..jobs {
        let s = Submission {
            job_name: format!("bench-{i}"),
            comment: tag.clone(),
            partition: "debug".into(),
            nodes: 1,
            ntasks_per_node: 1,
            stdout: "/dev/null".into(),
            stderr: "/dev/null".into(),
            command: "true".into(),
            ..Submission::default()
        };
        ids.push(client.submit(&s).expect("sbatch accepts the job"));
    }
    let submit_s = t0.elapsed().as_secs_f64();
    // Slurm forgets ended jobs after MinJobAge (300 s): count each one as it is seen ended.
    let mut ended = std::collections::HashSet::new();
    while ended.len() < ids.len() {
        for j in client.jobs().expect("squeue answers") {
            if j.comment.as_deref() == Some(tag.as_str()) && j.state.is_terminal() {
                ended.insert(j.id);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Row {
        how: "`sbatch` directly".into(),
        submit_s,
        total_s: t0.elapsed().as_secs_f64(),
        jobs,
    }
}

fn through_switchyard(jobs: u32, per_node: u32, slurm: bool) -> Row {
    let tag = format!("bench-sy-{}", std::process::id());
    let server = Server::start_with(&tag, local_fleet(per_node, Some("true")), slurm);
    let t0 = Instant::now();
    for i in 0..jobs {
        server.post(
            "/v1/jobs",
            json!({ "name": format!("bench-{i}"), "kind": "batch", "accelerators": 1, "duration_s": if slurm { 1.0 } else { 0.001 } }),
        );
    }
    let submit_s = t0.elapsed().as_secs_f64();
    loop {
        let mut done = 0;
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(a) => format!("/v1/jobs?state=done&limit=1000&after={a}"),
                None => "/v1/jobs?state=done&limit=1000".to_owned(),
            };
            let page = server.get(&path);
            done += page["jobs"].as_array().map_or(0, Vec::len);
            match page["next"].as_str() {
                Some(n) => after = Some(n.to_owned()),
                None => break,
            }
        }
        if done >= jobs as usize {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Row {
        how: if slurm {
            format!("Switchyard API → scheduler → Slurm backend (fleet: {per_node} per node)")
        } else {
            "Switchyard API → scheduler → dry-run backend (no Slurm)".into()
        },
        submit_s,
        total_s: t0.elapsed().as_secs_f64(),
        jobs,
    }
}

fn main() {
    if !slurm_usable() {
        std::process::exit(2);
    }
    let jobs = arg("--jobs", 1000);
    let per_node = arg("--per-node", 2);
    eprintln!("{jobs} jobs, sbatch directly …");
    let a = direct(jobs);
    eprintln!("… through Switchyard on Slurm …");
    let b = through_switchyard(jobs, per_node, true);
    eprintln!("… through Switchyard, dry run …");
    let c = through_switchyard(jobs, per_node, false);
    println!("| path | jobs | submitted in | submissions/s | all completed in | completed/s |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in [a, b, c] {
        println!(
            "| {} | {} | {:.1} s | {:.0} | {:.1} s | {:.1} |",
            r.how,
            r.jobs,
            r.submit_s,
            f64::from(r.jobs) / r.submit_s,
            r.total_s,
            f64::from(r.jobs) / r.total_s
        );
    }
}
