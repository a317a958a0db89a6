//! `switchyard plan` end to end: the built binary on example files.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn plan(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("plan")
        .args(args)
        .current_dir(root())
        .output()
        .expect("the binary runs")
}

/// Figures of a frontier run are read at a glance: counts, rates, hours and money carry
/// thousands separators in the human output.
#[test]
fn the_human_plan_groups_thousands() {
    let out = plan(&["examples/plan/llama3-405b-h100.toml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("on 16,384 × H100-SXM") && text.contains("global batch 2,048"),
        "{text}"
    );
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key} line in {text}"))
            .to_owned()
    };
    let rate = line("tokens/s");
    let figure = rate.trim_start_matches("tokens/s").trim();
    assert!(
        figure.len() > 4 && figure.contains(',') && figure.replace(',', "").parse::<u64>().is_ok(),
        "{rate}"
    );
    let budget = text
        .lines()
        .find(|l| l.contains("accelerator-hours"))
        .expect("a budget line");
    let hours = budget
        .split(", ")
        .find(|p| p.ends_with("accelerator-hours"))
        .expect("hours");
    assert!(hours.contains(','), "{budget}");
    assert!(
        budget
            .split("cost $")
            .nth(1)
            .is_some_and(|c| c.contains(',')),
        "{budget}"
    );
}

#[test]
fn plan_json_has_the_documented_keys() {
    let out = plan(&["examples/plan/llama3-405b-h100.toml", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    for key in [
        "step_time_s",
        "tokens_per_s",
        "mfu",
        "hfu",
        "model_tflops_per_device",
        "memory_per_device_gib",
        "fits",
        "layout",
        "breakdown",
        "days_to_train",
        "cost_usd",
        "alternatives",
        "notes",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    // H100 is among the validated chips and trains in BF16: nothing to note about the chip;
    // 2,048 nodes at their own checkpoint rate are more than Llama 3's storage took in.
    let notes = v["notes"].as_array().expect("a notes list");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0]
            .as_str()
            .is_some_and(|n| n.starts_with("checkpoints are written at 8.2 TB/s (2048 nodes")),
        "{notes:?}"
    );
    for key in ["tp", "pp", "dp", "cp", "ep", "microbatch", "recompute"] {
        assert!(v["layout"].get(key).is_some(), "missing layout.{key}");
    }
    assert_eq!(v["layout"]["tp"], 8);
    assert_eq!(v["layout"]["pp"], 16);
    assert!(v["layout"]["recompute"].is_string());
    assert_eq!(v["fits"], true);
    let mfu = v["mfu"].as_f64().expect("number");
    assert!(mfu > 0.3 && mfu < 0.5, "mfu {mfu}");
    for key in [
        "compute_s",
        "tp_comm_s",
        "dp_comm_s",
        "pipeline_bubble_s",
        "exposed_comm_s",
        "overlapped_comm_s",
    ] {
        assert!(v["breakdown"].get(key).is_some(), "missing breakdown.{key}");
    }
    // The parts of a step add up to it.
    let parts: f64 = [
        "compute_s",
        "exposed_comm_s",
        "pipeline_bubble_s",
        "optimizer_s",
        "step_overhead_s",
    ]
    .iter()
    .map(|k| v["breakdown"][k].as_f64().unwrap_or(f64::NAN))
    .sum();
    let step = v["step_time_s"].as_f64().expect("a step time");
    assert!(
        (parts - step).abs() <= 1e-9 * step,
        "the breakdown adds up to {parts} s, the step takes {step} s"
    );
}

/// Without a token budget the budget's keys are there, and null.
#[test]
fn plan_json_without_tokens_has_null_budget_keys() {
    let out = plan(&["examples/plan/qwen3-235b-h100-folded.toml", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    for key in ["days_to_train", "cost_usd", "budget"] {
        assert_eq!(v.get(key), Some(&serde_json::Value::Null), "{key} in {v}");
    }
}

#[test]
fn plan_without_parallelism_searches() {
    let out = plan(&["examples/plan/llama3-405b-search.toml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("(searched)"), "{text}");
    assert!(text.contains("next best layouts"), "{text}");
}

#[test]
fn inference_plan_reports_latency_and_capacity() {
    let out = plan(&["examples/plan/llama3-70b-serve.toml", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    for key in ["tokens_per_s", "ttft_s", "tpot_s", "max_concurrency"] {
        assert!(v[key].as_f64().is_some_and(|x| x > 0.0), "{key} in {v}");
    }
}

/// A plan says what its figures assume about the hardware: a chip without BF16 is costed in
/// the format it trains in, an FP8 peak equal to the BF16 one buys no speed, and a chip no
/// published run checks gets assumed kernel efficiencies.
#[test]
fn a_plan_notes_what_it_assumes_about_the_hardware() {
    let cases = [
        (
            "V100",
            "bf16",
            &[
                "V100 has no BF16 arithmetic: the plan is costed at its FP16 rate",
                "no published run on V100 checks the model",
            ][..],
        ),
        (
            "Gaudi3",
            "fp8",
            &[
                "Gaudi3's FP8 peak is no higher than its BF16 peak (1835 TFLOP/s): FP8 training \
                 gains no matrix-multiply time here and adds casts and an FP8 copy of the \
                 weights, so expect it slower than BF16",
                "no published run on Gaudi3",
                "BF16 trains faster on these devices: ",
            ][..],
        ),
        ("A100-40GB", "bf16", &[][..]),
    ];
    for (accelerator, precision, wanted) in cases {
        let file = std::env::temp_dir().join(format!(
            "sy-plan-notes-{accelerator}-{}.toml",
            std::process::id()
        ));
        std::fs::write(
            &file,
            format!(
                "[model]\npreset = \"llama3-8b\"\n[training]\nglobal_batch = 256\n\
                 precision = \"{precision}\"\n[hardware]\naccelerator = \"{accelerator}\"\n\
                 count = 64\n"
            ),
        )
        .expect("writes");
        let text_out = plan(&[file.to_str().expect("a UTF-8 path")]);
        let json_out = plan(&[file.to_str().expect("a UTF-8 path"), "--json"]);
        let _ = std::fs::remove_file(&file);
        let text = String::from_utf8_lossy(&text_out.stdout);
        assert!(text_out.status.success(), "{accelerator}: {text}");
        let v: serde_json::Value =
            serde_json::from_slice(&json_out.stdout).expect("JSON on stdout");
        let notes = v["notes"].as_array().expect("a notes list");
        assert_eq!(notes.len(), wanted.len(), "{accelerator}: {notes:?}");
        for (note, start) in notes.iter().zip(wanted) {
            let note = note.as_str().expect("a string");
            assert!(note.starts_with(start), "{accelerator}: {note}");
            assert!(text.contains(&format!("note: {note}\n")), "{text}");
        }
        if wanted.is_empty() {
            assert!(!text.contains("note:"), "{text}");
        }
    }
}

#[test]
fn an_inference_plan_that_fits_no_sequence_says_so() {
    let file = std::env::temp_dir().join(format!("sy-plan-too-big-{}.toml", std::process::id()));
    std::fs::write(
        &file,
        "[model]\npreset = \"llama3-405b\"\n[inference]\nprompt_tokens = 1000\noutput_tokens = 200\nconcurrency = 1\n[hardware]\naccelerator = \"H100\"\ncount = 8\n",
    )
    .expect("writes");
    let out = plan(&[file.to_str().expect("a UTF-8 path")]);
    let _ = std::fs::remove_file(&file);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(
            "concurrency       1 (none fits; the figures below are as if memory allowed it)"
        ),
        "{text}"
    );
    // By how much: what the weights and workspace take of the usable memory, and what one
    // request's KV cache needs.
    assert!(
        text.contains("DOES NOT FIT: weights and workspace take ")
            && text.contains(" GiB of the 78.0 usable, and one request's KV cache needs "),
        "{text}"
    );
    assert!(!text.contains("max that fits: 0"), "{text}");
}

#[test]
fn bad_file_is_a_clear_input_error() {
    let out = plan(&["examples/plan/bad-heads.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[model] heads = 7 does not divide hidden = 4096"),
        "{err}"
    );
}

#[test]
fn bad_inputs_name_the_field() {
    let dir = std::env::temp_dir().join(format!("switchyard-plan-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cases = [
        (
            "[model]\npreset = \"llama3-8b\"\n[training]\nglobal_batch = 64\n[hardware]\naccelerator = \"H1000\"\ncount = 8\n",
            "accelerator = \"H1000\" is not in the catalog",
        ),
        (
            "[model]\npreset = \"llama3-8b\"\n[training]\nglobal_batch = 64\n[hardware]\naccelerator = \"H100\"\ncount = 16\n[parallelism]\ntp = 16\npp = 1\ndp = 1\n",
            "tp = 16 is larger than the scale-up domain",
        ),
        (
            "[model]\npreset = \"llama3-8b\"\n[training]\nglobal_batch = 64\n[hardware]\naccelerator = \"H100\"\ncount = 16\n[parallelism]\ntp = 4\npp = 2\ndp = 4\n",
            "is not the device count 16",
        ),
        ("[model]\nlayers = \n", "plan"),
        (
            "[model]\npreset = \"llama3-8b\"\nname = \" \"\n[training]\nglobal_batch = 64\n[hardware]\naccelerator = \"H100\"\ncount = 8\n",
            "[model] name = \" \" must be a non-empty name",
        ),
        (
            "[model]\npreset = \"llama3-8b\"\n[training]\nglobal_batch = 64\ntokens = 1e-300\n[hardware]\naccelerator = \"H100\"\ncount = 8\n",
            "tokens = 1e-300 must be a number of tokens, at least 1",
        ),
        (
            "[model]\npreset = \"llama3-8b\"\n[training]\nglobal_batch = 512\n[hardware]\naccelerator = \"H100\"\ncount = 64\n[parallelism]\ndp = 64\nmicrobatch = 3\n",
            "global_batch = 512 is not a multiple of [parallelism] dp·microbatch = 64·3",
        ),
        // A mixture of experts says how it routes and how wide its experts are.
        (
            "[model]\nname = \"moe\"\nlayers = 16\nhidden = 2048\nheads = 16\nvocab = 32000\nseq_len = 4096\nexperts = 8\nexpert_ffn_hidden = 1024\n[training]\nglobal_batch = 256\n[hardware]\naccelerator = \"H100\"\ncount = 16\n",
            "[model] experts_per_token (the experts each token is routed to) of a mixture of experts is missing",
        ),
        (
            "[model]\npreset = \"deepseek-v3\"\nlayers = 3\n[training]\nglobal_batch = 256\n[hardware]\naccelerator = \"H100\"\ncount = 16\n",
            "preset \"deepseek-v3\" keeps its first 3 layers dense",
        ),
        (
            "[model]\npreset = \"mixtral-8x7b\"\nmoe_layers = 0\n[training]\nglobal_batch = 256\n[hardware]\naccelerator = \"H100\"\ncount = 16\n",
            "moe_layers = 0",
        ),
        // Degrees whose product passes 64 bits, and settings that rule out every layout.
        (
            "[model]\npreset = \"llama3-8b\"\n[training]\nglobal_batch = 64\n[hardware]\naccelerator = \"H100\"\ncount = 64\n[parallelism]\ntp = 65536\npp = 65536\ndp = 65536\ncp = 65536\n",
            "tp·pp·dp·cp = 18446744073709551616 is not the device count 64",
        ),
        (
            "[model]\npreset = \"llama3-8b\"\n[training]\nglobal_batch = 64\n[hardware]\naccelerator = \"H100\"\ncount = 64\n[parallelism]\npp = 64\n",
            "pp = 64 exceeds layers + 2 = 34",
        ),
        (
            "[model]\npreset = \"llama3-8b\"\n[training]\nglobal_batch = 64\n[hardware]\naccelerator = \"H100\"\ncount = 64\n[parallelism]\nmicrobatch = 128\n",
            "microbatch = 128 is larger than [training] global_batch = 64",
        ),
        (
            "[model]\npreset = \"llama3-8b\"\n[training]\nglobal_batch = 64\n[hardware]\naccelerator = \"H100\"\ncount = 64\n[parallelism]\nzero = 7\n",
            "zero = 7 must be 0, 1, 2 or 3",
        ),
        (
            "[model]\npreset = \"llama3-8b\"\n[training]\nglobal_batch = 64\n[hardware]\naccelerator = \"H100\"\ncount = 8\n[parallelism]\ntp = 8\npp = 1\ndp = 1\nvirtual_stages = 2\n",
            "virtual_stages = 2 needs pipeline parallelism (pp > 1)",
        ),
        (
            "[model]\npreset = \"llama3-8b\"\n[training]\nglobal_batch = 64\n[hardware]\naccelerator = \"H100\"\ncount = 7919\nper_node = 1\n",
            "global_batch = 64 is not a multiple of any data-parallel degree the split of 7919 devices leaves (the smallest is dp = 7919",
        ),
        (
            "[model]\npreset = \"llama3-8b\"\nexperts = 4096\nexperts_per_token = 4096\nexpert_ffn_hidden = 14336\n[training]\nglobal_batch = 64\n[hardware]\naccelerator = \"H100\"\ncount = 8\n",
            "experts_per_token = 4096 is larger than the supported maximum 1024",
        ),
        (
            "[model]\npreset = \"llama3-8b\"\nexperts = 1\n[training]\nglobal_batch = 64\n[hardware]\naccelerator = \"H100\"\ncount = 8\n",
            "a mixture of experts needs at least 2",
        ),
        (
            "[model]\npreset = \"llama3-8b\"\n[training]\nglobal_batch = 64\ntokens = 1e308\n[hardware]\naccelerator = \"H100\"\ncount = 8\n",
            "tokens = 1e308 is larger than the supported maximum 1e17",
        ),
        (
            "[model]\npreset = \"llama3-8b\"\n[inference]\nprompt_tokens = 100\noutput_tokens = 100\nconcurrency = 8\n[hardware]\naccelerator = \"H100\"\ncount = 8\n[parallelism]\ndp = 8\n",
            "[parallelism] dp applies to training",
        ),
        (
            "[model]\nlayers = 2\nhidden = 16777216\nheads = 8\nvocab = 1000\nseq_len = 128\n[training]\nglobal_batch = 8\n[hardware]\naccelerator = \"H100\"\ncount = 8\n",
            "ffn_hidden (4 × hidden, as none was given) = 67108864 is larger than the supported maximum",
        ),
        (
            "[model]\npreset = \"llama3-8b\"\n[training]\nglobal_batch = 100\n[hardware]\naccelerator = \"H100\"\ncount = 64\n[parallelism]\ntp = 1\npp = 1\ndp = 64\nmicrobatch = 1\nrecompute = \"none\"\n",
            "global_batch = 100 is not a multiple of dp·microbatch = 64·1 = 64",
        ),
        (
            "[model]\npreset = \"llama3-8b\"\n[inference]\nprompt_tokens = 100\noutput_tokens = 100\nconcurrency = 1.5\n[hardware]\naccelerator = \"H100\"\ncount = 8\n",
            "concurrency = 1.5 must be a whole number of requests from 1, or \"max\"",
        ),
        (
            "[model]\npreset = \"llama3-8b\"\n[inference]\nprompt_tokens = 100\noutput_tokens = 100\nconcurrency = \"most\"\n[hardware]\naccelerator = \"H100\"\ncount = 8\n",
            "concurrency = \"most\" must be a whole number of requests from 1, or \"max\"",
        ),
        (
            "[model]\npreset = \"llama3-8b\"\n[training]\nglobal_batch = 64\n[hardware]\naccelerator = \"H100\"\ncount = 8\n[parallelism]\ntp = 1\npp = 1\ndp = 8\nmicrobatch = 1\nrecompute = \"none\"\nzero = 9\n",
            "zero = 9 must be 0, 1, 2 or 3",
        ),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let path = dir.join(format!("case{i}.toml"));
        std::fs::write(&path, text).expect("write");
        let out = plan(&[path.to_str().expect("utf-8 path")]);
        assert_eq!(out.status.code(), Some(2), "case {i}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "case {i}: {err}");
        let file = path.to_str().expect("utf-8 path");
        assert_eq!(
            err.matches(file).count(),
            1,
            "case {i} names its file once: {err}"
        );
    }
    let out = plan(&["/nonexistent/plan.toml"]);
    assert_eq!(out.status.code(), Some(3));

    // Read but not text: bad input (2), named by file and line, not an I/O failure (3).
    let binary = dir.join("binary.toml");
    std::fs::write(&binary, b"[model]\npreset = \"llama3-8b\"\n\xff\xfe\n").expect("write");
    let out = plan(&[binary.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("binary.toml: line 3: not valid UTF-8"),
        "{err}"
    );
}

#[test]
fn validate_prints_rows_and_summary() {
    let out = plan(&[
        "--validate",
        "data/calibration/published_inference_runs.csv",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["rows"].as_array().map(Vec::len), Some(30));
    assert!(v["median_abs_error"].as_f64().is_some());
    let out = plan(&["--validate", "data/calibration/published_training_runs.csv"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("median |error|"), "{text}");
}

#[test]
fn every_example_plan_answers() {
    let dir = root().join("examples/plan");
    let mut ran = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/plan exists") {
        let path = entry.expect("readable entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if !name.ends_with(".toml") || name.starts_with("bad-") {
            continue;
        }
        let out = plan(&[path.to_str().expect("utf-8 path"), "--json"]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
        assert!(
            v["tokens_per_s"].as_f64().is_some_and(|t| t > 0.0),
            "{name}: {v}"
        );
        ran += 1;
    }
    assert!(ran >= 5, "only {ran} examples ran");
}

#[test]
fn every_calibration_file_validates() {
    let dir = root().join("data/calibration");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).expect("data/calibration exists") {
        let path = entry.expect("readable entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("csv") {
            continue;
        }
        let out = plan(&["--validate", path.to_str().expect("utf-8 path"), "--json"]);
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
        let rows = v["rows"].as_array().map_or(0, Vec::len);
        assert!(rows > 0, "{}: no rows", path.display());
        assert_eq!(
            v["failed_rows"].as_array().map(Vec::len),
            Some(0),
            "{}: {}",
            path.display(),
            v["failed_rows"]
        );
        files += 1;
    }
    // The two shared files and the five holdouts.
    assert!(files >= 7, "{files} calibration files");
}

/// A row the model cannot evaluate is reported with its line and reason and left out of the
/// figures; the other rows still count. A file with no row left is an input error.
#[test]
fn validate_reports_bad_rows_and_keeps_the_rest() {
    let text =
        std::fs::read_to_string(root().join("data/calibration/published_inference_runs.csv"))
            .expect("the inference file is in the repository");
    let mut lines = text.lines();
    let header = lines.next().expect("a header");
    let good = lines.next().expect("a first row");
    let second = lines.next().expect("a second row");
    let bad = second.replacen(",H100-SXM,", ",H100-XYZ,", 1);
    assert_ne!(bad, second, "the row names its accelerator");
    let dir = std::env::temp_dir().join(format!("switchyard-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mixed = dir.join("mixed.csv");
    std::fs::write(&mixed, format!("{header}\n{good}\n{bad}\n")).expect("write");
    let out = plan(&["--validate", mixed.to_str().expect("utf-8"), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["rows"].as_array().map(Vec::len), Some(1));
    let failed = v["failed_rows"].as_array().expect("failed_rows");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["line"], 3);
    let reason = failed[0]["error"].as_str().unwrap_or_default();
    assert!(
        reason.contains("unknown accelerator \"H100-XYZ\""),
        "{reason}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("H100-XYZ"), "{stderr}");
    // The warning goes to a pipe here: plain text, no terminal colour codes, and it reads as
    // a warning to the user, not a log line with a timestamp and a module path.
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
    assert!(
        stderr.starts_with("warning: row ") && !stderr.contains("plan_cmd"),
        "{stderr}"
    );
    let out = plan(&["--validate", mixed.to_str().expect("utf-8")]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("1 row not evaluated"), "{table}");
    assert!(table.contains("line 3"), "{table}");

    let all_bad = dir.join("all-bad.csv");
    std::fs::write(&all_bad, format!("{header}\n{bad}\n")).expect("write");
    let out = plan(&["--validate", all_bad.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no row could be evaluated"), "{stderr}");
    assert!(stderr.contains("H100-XYZ"), "{stderr}");
    // A fleet means nothing to calibration rows: refused, not silently ignored.
    let out = plan(&[
        "--validate",
        mixed.to_str().expect("utf-8"),
        "--fleet",
        "no-such-fleet",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn validate_names_what_a_bad_cell_should_hold() {
    let dir = std::env::temp_dir().join(format!("switchyard-cells-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let header = "id,source,model,accelerator,count,layers,hidden,heads,vocab,seq_len,global_batch,precision,tp,pp,dp,zero,published_tokens_per_s";
    for (row, expected) in [
        (
            "R1,x,m,H100-SXM,64,32,4096,32,32000,4096,512,bf16,,,,300,5e5",
            "zero = \"300\" is not a whole number from 0 to 255",
        ),
        (
            "R2,x,m,H100-SXM,64,32,4096,32,32000,4096,512,bf16,1.5,,,,5e5",
            "tp = \"1.5\" is not a whole number (sizes and counts go up to 16777216)",
        ),
        (
            "R5,x,m,H100-SXM,6x4,32,4096,32,32000,4096,512,bf16,,,,,5e5",
            "count = \"6x4\" is not a whole number from 1 to 16777216",
        ),
        (
            "R4,x,m,H100-SXM,64,32,4096,32,32000,4096,512,bf16,,,,9,5e5",
            "line 2: no valid layout of m on 64 H100-SXM for global_batch = 512: zero = 9 must be 0, 1, 2 or 3",
        ),
        (
            "R3,x,m,H100-SXM,64,32,4096,32,32000,4096,512,bf16,,,,,5e-324",
            "must lie between 1e-3 and 1e12 tokens/s",
        ),
    ] {
        let file = dir.join("cells.csv");
        std::fs::write(&file, format!("{header}\n{row}\n")).expect("write");
        let out = plan(&["--validate", file.to_str().expect("utf-8")]);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{err}");
    }
}

/// `--fleet` takes a built-in fleet's name as well as a file, as `simulate` and `server` do.
#[test]
fn plan_takes_a_built_in_fleet_by_name() {
    let text = std::fs::read_to_string(root().join("examples/plan/llama3-70b-serve.toml"))
        .expect("example plan");
    let start = text.find("[hardware]").expect("a hardware table");
    let end = start + text[start..].find("\n\n").expect("a blank line after it");
    let on_cluster = format!(
        "{}[hardware]\ncluster = \"aws-h100-virginia\"\ncount = 2{}",
        &text[..start],
        &text[end..]
    );
    let path = std::env::temp_dir().join(format!("sy-plan-cluster-{}.toml", std::process::id()));
    std::fs::write(&path, on_cluster).expect("write the plan");
    let file = path.to_string_lossy().into_owned();
    let out = plan(&[&file, "--fleet", "default", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = plan(&[&file, "--fleet", "no-such-fleet"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("built-in: default"), "{err}");
    let _ = std::fs::remove_file(&path);
}

/// An endless input (`/dev/zero`, a file given by mistake) is refused once past the limit, not
/// read until memory runs out.
#[cfg(unix)]
#[test]
fn an_endless_input_is_refused() {
    let out = plan(&["/dev/zero"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/dev/zero: larger than 16 MiB"), "{err}");
}

/// MFU is measured against the BF16 peak (the definition) whatever the precision; an
/// FP8 plan's text also gives it against the FP8 peak, and a BF16 plan's does not.
#[test]
fn an_fp8_plan_also_gives_mfu_against_the_fp8_peak() {
    let mfu_line = |file: &str| {
        let out = plan(&[file]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with("MFU / HFU"))
            .unwrap_or_else(|| panic!("an MFU line in {file}"))
            .to_owned()
    };
    let fp8 = mfu_line("examples/plan/deepseek-v3-h800.toml");
    assert!(
        fp8.contains("of the BF16 peak (") && fp8.contains("of the FP8 peak)"),
        "{fp8}"
    );
    let bf16 = mfu_line("examples/plan/llama3-405b-h100.toml");
    assert!(!bf16.contains("peak"), "{bf16}");
}

/// A `[model]` table's sizes are refused in the plan's own range, not the type's 0 to
/// 4294967295: a negative, a fraction or a number past 32 bits.
#[test]
fn model_sizes_out_of_range_name_the_plans_range() {
    let dir = std::env::temp_dir().join(format!("switchyard-model-sizes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for (line, value) in [("layers", "-3"), ("heads", "1.5"), ("vocab", "5000000000")] {
        let text = "[model]\nlayers = 32\nhidden = 4096\nheads = 32\nffn_hidden = 14336\n\
                    vocab = 128000\nseq_len = 8192\n[training]\nglobal_batch = 256\n\
                    precision = \"bf16\"\n[hardware]\naccelerator = \"H100-SXM\"\ncount = 64\n"
            .replacen(
                &format!("\n{line} = "),
                &format!("\n{line} = {value}\n# was "),
                1,
            );
        let path = dir.join(format!("{line}.toml"));
        std::fs::write(&path, text).expect("write");
        let out = plan(&[path.to_str().expect("utf-8")]);
        assert_eq!(out.status.code(), Some(2), "{line}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("{value} is not a whole number from 1 to 16777216")),
            "{line}: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
