//! `switchyard simulate` through the built binary.

use std::path::PathBuf;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-simulate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

const FLEET: &str = r#"
name = "small"
[[providers]]
name = "p"
kind = "cloud"
[[providers.contracts]]
accelerator = "H100-SXM"
on_demand_price = 2.0
[[providers.contracts]]
accelerator = "V100"
on_demand_price = 1.0
[[clusters]]
name = "h100"
provider = "p"
region = "r"
accelerator = "H100-SXM"
nodes = 8
accelerators_per_node = 8
capacity = "on_demand"
node_mtbf_hours = 50.0
repair_hours = 1.0
[[clusters]]
name = "v100"
provider = "p"
region = "r"
accelerator = "V100"
nodes = 8
accelerators_per_node = 8
capacity = "on_demand"
node_mtbf_hours = 50.0
repair_hours = 1.0
"#;

fn trace_text() -> String {
    let mut t = String::from("id,submit_s,accelerators,duration_s\n");
    for i in 0..200 {
        let size = [1, 2, 4, 8, 16, 32][i % 6];
        let dur = 600 + (i * 7919) % 20_000;
        t.push_str(&format!("job{i},{},{size},{dur}\n", i * 300));
    }
    t
}

fn run_json(args: &[&str]) -> serde_json::Value {
    let out = bin().args(args).output().expect("runs");
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "--json prints nothing on stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

#[test]
fn simulate_json_has_the_documented_keys_and_is_deterministic() {
    let fleet = tmp("fleet.toml");
    std::fs::write(&fleet, FLEET).expect("write fleet");
    let trace = tmp("trace.csv");
    std::fs::write(&trace, trace_text()).expect("write trace");
    let args = [
        "simulate",
        "--fleet",
        fleet.to_str().expect("utf-8"),
        "--trace",
        trace.to_str().expect("utf-8"),
        "--format",
        "canonical",
        "--seed",
        "7",
        "--json",
    ];
    let a = run_json(&args);
    for key in [
        "jobs",
        "completed",
        "avg_jct_s",
        "p50_jct_s",
        "p99_jct_s",
        "avg_wait_s",
        "makespan_s",
        "utilization",
        "goodput",
        "cost_usd",
        "failures",
        "preemptions",
        "wall_s",
        "clusters",
    ] {
        assert!(a.get(key).is_some(), "missing {key}: {a}");
    }
    assert_eq!(a["jobs"], 200);
    assert_eq!(a["completed"], 200);
    for key in [
        "jobs",
        "completed",
        "avg_jct_s",
        "utilization",
        "goodput",
        "cost_usd",
        "failures",
    ] {
        assert!(
            a["clusters"]["h100"].get(key).is_some(),
            "clusters.h100.{key}"
        );
    }
    // Same inputs and seed: byte-identical apart from wall time.
    let b = run_json(&args);
    let strip = |mut v: serde_json::Value| {
        let o = v.as_object_mut().expect("object");
        o.remove("wall_s");
        o.remove("decisions_per_s");
        serde_json::to_string(&v).expect("encode")
    };
    assert_eq!(strip(a.clone()), strip(b));
    // Every policy runs.
    for policy in ["fifo", "priority", "fair", "switchyard"] {
        let mut args = args.to_vec();
        args.extend(["--policy", policy, "--failures", "off"]);
        let r = run_json(&args);
        assert_eq!(r["completed"], 200, "{policy}");
        assert_eq!(r["failures"], 0, "{policy}");
    }
}

#[test]
fn report_is_self_contained_html_with_plots() {
    let fleet = tmp("fleet-report.toml");
    std::fs::write(&fleet, FLEET).expect("write fleet");
    let trace = tmp("trace-report.csv");
    std::fs::write(&trace, trace_text()).expect("write trace");
    let report = tmp("report.html");
    let out = bin()
        .args([
            "simulate",
            "--fleet",
            fleet.to_str().expect("utf-8"),
            "--trace",
            trace.to_str().expect("utf-8"),
            "--report",
            report.to_str().expect("utf-8"),
            "--quiet",
        ])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("avg JCT"), "{stdout}");
    let html = std::fs::read_to_string(&report).expect("report written");
    assert!(html.starts_with("<!doctype html>"));
    assert_eq!(html.matches("<svg").count(), 3, "three plots");
    assert!(
        !html.contains("<script src") && !html.contains("<link "),
        "self-contained"
    );
}

#[test]
fn bad_input_is_an_error_with_the_row_not_a_panic() {
    let fleet = tmp("fleet-bad.toml");
    std::fs::write(&fleet, FLEET).expect("write fleet");
    // Row 3 asks for more accelerators than any cluster has.
    let trace = tmp("too-big.csv");
    std::fs::write(
        &trace,
        "id,submit_s,accelerators,duration_s\na,0,8,100\nb,10,8,100\nhuge,20,4096,100\n",
    )
    .expect("write");
    let out = bin()
        .args([
            "simulate",
            "--fleet",
            fleet.to_str().expect("utf-8"),
            "--trace",
            trace.to_str().expect("utf-8"),
            "--json",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}: line 4: job `huge`: needs 4,096 accelerators",
            trace.display()
        )),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // A service given an end is refused: a service runs until cancelled.
    let ending = tmp("ending-service.csv");
    std::fs::write(
        &ending,
        "id,submit_s,accelerators,duration_s,kind\nsvc,0,8,3600,inference\n",
    )
    .expect("write");
    let out = bin()
        .args([
            "simulate",
            "--trace",
            ending.to_str().expect("utf-8"),
            "--quiet",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("job `svc`: is an inference service with an end"),
        "{err}"
    );
    // A time far past any real trace's (milliseconds taken for seconds) names its cell.
    let far = tmp("far.csv");
    std::fs::write(
        &far,
        "id,submit_s,accelerators,duration_s\na,0,8,100\nb,1e12,8,100\n",
    )
    .expect("write");
    let out = bin()
        .args([
            "simulate",
            "--quiet",
            "--trace",
            far.to_str().expect("utf-8"),
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 3 (row 2), column submit_s: 1e12 s is more than"),
        "{err}"
    );
    // A trace of a header alone: exit 2, naming the file.
    let empty = tmp("header-only.csv");
    std::fs::write(&empty, "id,submit_s,accelerators,duration_s\n").expect("write");
    let out = bin()
        .args(["simulate", "--trace", empty.to_str().expect("utf-8")])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("header-only.csv: the trace holds no jobs"),
        "{err}"
    );
    // With --skip-invalid the job is skipped and counted.
    let out = bin()
        .args([
            "simulate",
            "--fleet",
            fleet.to_str().expect("utf-8"),
            "--trace",
            trace.to_str().expect("utf-8"),
            "--json",
            "--skip-invalid",
        ])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["rejected"], 1);
    assert_eq!(v["completed"], 2);
    // A malformed row and an unknown format.
    let bad = tmp("malformed.csv");
    std::fs::write(
        &bad,
        "id,submit_s,accelerators,duration_s\na,0,8,100\nb,ten,8,100\n",
    )
    .expect("write");
    let out = bin()
        .args([
            "simulate",
            "--fleet",
            fleet.to_str().expect("utf-8"),
            "--trace",
            bad.to_str().expect("utf-8"),
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("row 2"), "{err}");
    // Skipped by the reader, the malformed row still counts: jobs = completed + rejected.
    let v = run_json(&[
        "simulate",
        "--fleet",
        fleet.to_str().expect("utf-8"),
        "--trace",
        bad.to_str().expect("utf-8"),
        "--skip-invalid",
        "--quiet",
        "--json",
    ]);
    assert_eq!(
        (&v["jobs"], &v["completed"], &v["rejected"]),
        (&2.into(), &1.into(), &1.into())
    );
    let out = bin()
        .args([
            "simulate",
            "--trace",
            bad.to_str().expect("utf-8"),
            "--format",
            "nope",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown trace format"));
    let out = bin()
        .args(["simulate", "--policy", "lottery"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown policy"));
}

/// An Alibaba pod list without time columns is a packing snapshot: its pods are placed and hold
/// their accelerators (as services), rather than being refused as work that never ends.
#[test]
fn an_alibaba_snapshot_without_times_is_simulated() {
    let path = tmp("snapshot.csv");
    std::fs::write(
        &path,
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\n\
         p0,1000,1000,1,1000,\np1,1000,1000,2,1000,\np2,1000,1000,8,1000,\n",
    )
    .expect("write");
    let v = run_json(&[
        "simulate",
        "--trace",
        path.to_str().expect("utf-8 path"),
        "--format",
        "alibaba2023",
        "--quiet",
        "--json",
    ]);
    assert_eq!(v["jobs"], 3);
    assert_eq!(v["rejected"], 0);
}

/// The built-in scenario sizes each team's jobs within its quota caps, so a fleet whose team
/// may hold at most 16 accelerators still simulates; a trace naming a team the fleet does not
/// list says so on stderr (its jobs run under no quota).
#[test]
fn teams_quota_caps_bound_the_scenario_and_unlisted_teams_are_named() {
    let capped = format!(
        "{FLEET}\n[[tenants]]\nname = \"lab\"\n[[tenants.teams]]\nname = \"research\"\n\
         quotas = [{{ accelerators = 8, borrowing_limit = 8 }}]\n"
    );
    let fleet = tmp("capped-fleet.toml");
    std::fs::write(&fleet, capped).expect("write");
    let fleet = fleet.to_str().expect("utf-8");
    let report = run_json(&["simulate", "--fleet", fleet, "--json", "--failures", "off"]);
    assert!(report["jobs"].as_u64().is_some_and(|n| n > 0), "{report}");
    // Caps below a replica of 8 on the serving organisation, and a cap on one cluster only
    // (research jobs pinned to that cluster's type must fit it): nothing generated is refused.
    for (name, tenants) in [
        (
            "org-cap",
            "[[tenants]]\nname = \"lab\"\nquotas = [{ accelerators = 4, borrowing_limit = 0 }]\n\
             [[tenants.teams]]\nname = \"serving\"\n\
             quotas = [{ accelerators = 0, borrowing_limit = 16 }]\n\
             [[tenants.teams]]\nname = \"research\"\n",
        ),
        (
            "cluster-cap",
            "[[tenants]]\nname = \"lab\"\n[[tenants.teams]]\nname = \"research\"\n\
             quotas = [{ cluster = \"h100\", accelerators = 8, borrowing_limit = 0 }]\n",
        ),
    ] {
        let file = tmp(&format!("{name}.toml"));
        std::fs::write(
            &file,
            format!("{}\n{tenants}", FLEET.replace("nodes = 8", "nodes = 256")),
        )
        .expect("write");
        let file = file.to_str().expect("utf-8");
        let report = run_json(&["simulate", "--fleet", file, "--json", "--failures", "off"]);
        assert!(
            report["jobs"].as_u64().is_some_and(|n| n > 0),
            "{name}: {report}"
        );
    }

    let trace = tmp("unlisted.csv");
    std::fs::write(
        &trace,
        "id,submit_s,accelerators,duration_s,tenant\na,0,8,60,research\nb,0,8,60,reserch\n\
         c,0,8,60,lab\n",
    )
    .expect("write");
    let out = bin()
        .args(["simulate", "--quiet", "--fleet", fleet, "--trace"])
        .arg(&trace)
        .output()
        .expect("runs");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tenant `reserch` (1 job) is not a team of fleet small")
            && !stderr.contains("`research`"),
        "{stderr}"
    );
    // An organisation's name is said to be one.
    assert!(
        stderr.contains(
            "tenant `lab` (1 job) is organisation lab of fleet small, not a team (its teams: \
             research"
        ),
        "{stderr}"
    );
    // Said to the person who typed the command: no timestamp, no module path.
    assert!(
        stderr
            .lines()
            .all(|l| l.trim_start().starts_with("WARN tenant `"))
            && !stderr.contains("simulate_cmd"),
        "{stderr}"
    );
}
