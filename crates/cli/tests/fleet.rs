//! `switchyard fleet …` run as a real process.

use std::path::PathBuf;
use std::process::{Command, Output};

fn switchyard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn repo_file(path: &str) -> String {
    format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"))
}

/// Writes `text` to a scratch file named after the test and returns its path.
fn scratch(name: &str, text: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, text).expect("scratch file");
    path
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn show_prints_the_default_fleet_with_totals() {
    let out = switchyard(&["fleet", "show"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        "colossus-1",
        "100,352",
        "aws-trn2-ohio",
        "Trainium2",
        "gcp-tpu-v5p",
        "fleet total",
        "pretraining",
        "serving",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn show_json_is_stable_and_adds_up() {
    let out = switchyard(&["fleet", "show", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let providers = json["providers"].as_array().expect("providers");
    let mut sum = 0;
    for p in providers {
        for c in p["clusters"].as_array().expect("clusters") {
            for key in [
                "name",
                "region",
                "accelerator",
                "nodes",
                "accelerators",
                "peak_bf16_pflops",
                "hbm_tib",
                "price_per_accelerator_hour",
                "topology",
            ] {
                assert!(!c[key].is_null(), "cluster lacks {key}: {c}");
            }
            sum += c["accelerators"].as_u64().expect("count");
        }
    }
    assert_eq!(json["totals"]["accelerators"].as_u64(), Some(sum));
    let colossus = providers
        .iter()
        .flat_map(|p| p["clusters"].as_array().into_iter().flatten())
        .find(|c| c["name"] == "colossus-1")
        .expect("colossus-1");
    assert_eq!(colossus["accelerator"], "H100-SXM");
    assert_eq!(colossus["network_efficiency"], 0.95);
}

#[test]
fn show_accepts_a_file_and_a_built_in_name() {
    let out = switchyard(&[
        "fleet",
        "show",
        "--fleet",
        &repo_file("examples/fleets/default.toml"),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = switchyard(&["fleet", "show", "--fleet", "colossus-1-expanded"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("200,704"));
}

#[test]
fn validate_accepts_every_shipped_fleet() {
    for file in [
        "examples/fleets/default.toml",
        "examples/fleets/colossus-1-expanded.toml",
    ] {
        let out = switchyard(&["fleet", "validate", &repo_file(file)]);
        assert!(out.status.success(), "{file}: {}", stderr(&out));
        assert!(stdout(&out).contains("valid fleet"));
    }
}

#[test]
fn validate_reports_each_kind_of_bad_file_precisely() {
    let good =
        std::fs::read_to_string(repo_file("examples/fleets/default.toml")).expect("default fleet");
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "unknown-accelerator",
            "accelerator = \"Trainium2\"\nnodes = 4000",
            "accelerator = \"Trainium9\"\nnodes = 4000",
            "clusters[0].accelerator: unknown accelerator \"Trainium9\"",
        ),
        (
            "zero-count",
            "nodes = 2048",
            "nodes = 0",
            "clusters[1].nodes: expected a positive node count, found 0",
        ),
        (
            "negative-count",
            "accelerators_per_node = 4\n",
            "accelerators_per_node = -4\n",
            "expected a positive accelerator count per node, found -4",
        ),
        (
            "uneven-racks",
            "nodes = 12544",
            "nodes = 12545",
            "clusters[6].nodes: 12545 nodes do not divide evenly into blocks of 64 nodes",
        ),
        (
            "uneven-rack-in-block",
            "block = { nodes = 64, gb_s = 50.0 }",
            "block = { nodes = 60, gb_s = 50.0 }",
            "clusters[6].topology.block.nodes: a block of 60 nodes does not divide evenly into racks of 8 nodes",
        ),
        (
            "duplicate-name",
            "name = \"gcp-h100-iowa\"",
            "name = \"aws-h100-virginia\"",
            "clusters[5].name: duplicate cluster name \"aws-h100-virginia\"",
        ),
        (
            "unknown-key",
            "repair_hours = 24.0\n[clusters.topology]\nscale_up = { nodes = 4",
            "repair_hour = 24.0\n[clusters.topology]\nscale_up = { nodes = 4",
            "unknown field `repair_hour`",
        ),
        (
            "quota-on-missing-cluster",
            "{ cluster = \"gcp-h100-iowa\", accelerators = 4096 }",
            "{ cluster = \"gcp-h100-oregon\", accelerators = 4096 }",
            "quota on unknown cluster \"gcp-h100-oregon\"",
        ),
    ];
    for (name, from, to, expected) in cases {
        assert!(
            good.contains(from),
            "{name}: fixture text {from:?} not in the default fleet"
        );
        let bad = good.replacen(from, to, 1);
        let path = scratch(&format!("{name}.toml"), &bad);
        let out = switchyard(&["fleet", "validate", path.to_str().expect("utf-8 path")]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stderr(&out));
        let err = stderr(&out);
        let offset = good.find(from).expect("checked above");
        let line = good[..offset].matches('\n').count() + 1;
        assert!(
            err.contains(expected),
            "{name}: expected {expected:?} in {err:?}"
        );
        let prefix = format!("error: {}:", path.display());
        assert!(
            err.starts_with(&prefix),
            "{name}: error should start with the file name: {err}"
        );
        assert!(
            err.starts_with(&format!("{prefix}{line}:")),
            "{name}: expected line {line} in {err}"
        );
    }
}

#[test]
fn validate_of_a_missing_file_says_so() {
    let out = switchyard(&["fleet", "validate", "/nonexistent/fleet.toml"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("cannot read /nonexistent/fleet.toml"));

    // A bare word that is neither a file nor a built-in fleet lists the built-in ones.
    let out = switchyard(&["fleet", "show", "--fleet", "colossus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("built-in: default, colossus-1-expanded"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn accelerators_lists_the_catalog() {
    let out = switchyard(&["fleet", "accelerators", "--json"]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let names: Vec<&str> = json
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    for name in [
        "A100-40GB",
        "H100-SXM",
        "GB200",
        "TPU-v6e",
        "Trainium2",
        "MI300X",
        "Gaudi2",
    ] {
        assert!(names.contains(&name), "{name}");
    }
    let h100 = json
        .as_array()
        .expect("array")
        .iter()
        .find(|a| a["name"] == "H100-SXM")
        .expect("H100");
    assert_eq!(h100["fp8_tflops"], 1978.9);
    assert!(
        h100["notes"]
            .as_str()
            .is_some_and(|n| n.contains("datasheet"))
    );
    let out = switchyard(&["fleet", "accelerators"]);
    assert!(stdout(&out).contains("Trainium2"));
}

#[test]
fn every_verb_has_help_with_an_example() {
    for verb in [
        &["fleet", "show"][..],
        &["fleet", "validate"],
        &["fleet", "accelerators"],
    ] {
        let mut args = verb.to_vec();
        args.push("--help");
        let out = switchyard(&args);
        assert!(out.status.success());
        assert!(
            stdout(&out).contains("Example"),
            "{verb:?} --help has no example"
        );
    }
}

#[test]
fn a_closed_stdout_ends_reports_quietly() {
    for args in [
        &["fleet", "accelerators", "--json"][..],
        &["fleet", "show"],
        &[
            "plan",
            "--validate",
            &repo_file("data/calibration/published_inference_runs.csv"),
        ],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the binary runs");
        // The reader goes away before the report is written, as `| head -0` would.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("it ends");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(
            !stderr(&out).contains("panicked"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}
