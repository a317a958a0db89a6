//! `plan` for inference: the layout search and its input errors.

use switchyard_core::fleet::Fleet;
use switchyard_perf::PerfError;
use switchyard_perf::plan::{PlanReport, parse_plan, run_plan};

fn run(text: &str) -> Result<PlanReport, PerfError> {
    let fleet = Fleet::default_fleet();
    run_plan(&parse_plan(text, &fleet)?)
}

/// A plan serving `preset` in FP8 (1k/1k tokens, maximum concurrency).
fn serve_on(preset: &str, accelerator: &str, count: u32, parallelism: &str) -> String {
    format!(
        r#"
[model]
preset = "{preset}"
[inference]
precision = "fp8"
prompt_tokens = 1000
output_tokens = 1000
concurrency = "max"
[hardware]
accelerator = "{accelerator}"
count = {count}
{parallelism}
"#
    )
}

fn serve(count: u32, parallelism: &str) -> String {
    serve_on("llama3-405b", "H100-SXM", count, parallelism)
}

#[test]
fn without_parallelism_every_split_is_tried_and_the_fastest_wins() {
    let Ok(PlanReport::Inference(r)) = run(&serve(16, "")) else {
        panic!("an inference report");
    };
    assert!(r.searched);
    assert!(r.estimate.fits);
    let best = r.estimate.tokens_per_s;
    assert!(!r.alternatives.is_empty());
    for a in &r.alternatives {
        assert!(a.fits && a.tokens_per_s <= best);
        assert_eq!(a.layout.tp * a.layout.pp, 16);
        // Tensor parallelism stays inside the 8-GPU NVLink domain unless asked otherwise.
        assert!(a.layout.tp <= 8);
    }
    // Each given split is one of those searched, and none beats the search.
    for (tp, pp) in [(8, 2), (4, 4), (2, 8)] {
        let Ok(PlanReport::Inference(fixed)) =
            run(&serve(16, &format!("[parallelism]\ntp = {tp}\npp = {pp}")))
        else {
            panic!("an inference report");
        };
        assert!(!fixed.searched);
        assert_eq!(
            (fixed.estimate.layout.tp, fixed.estimate.layout.pp),
            (tp, pp)
        );
        assert!(fixed.estimate.tokens_per_s <= best * (1.0 + 1e-12));
    }
}

#[test]
fn a_given_tp_fixes_the_pipeline_depth() {
    let Ok(PlanReport::Inference(r)) = run(&serve(16, "[parallelism]\ntp = 4")) else {
        panic!("an inference report");
    };
    assert_eq!((r.estimate.layout.tp, r.estimate.layout.pp), (4, 4));
    assert!(r.alternatives.is_empty());
}

#[test]
fn a_split_that_is_not_the_device_count_is_an_input_error() {
    let err = run(&serve(16, "[parallelism]\ntp = 4\npp = 2")).expect_err("4·2 is not 16");
    assert!(err.to_string().contains("not the device count 16"), "{err}");
}

#[test]
fn an_empty_prompt_and_an_oversized_cluster_are_input_errors() {
    let empty = serve(8, "").replace("prompt_tokens = 1000", "prompt_tokens = 0");
    let err = run(&empty).expect_err("no prompt");
    assert!(err.to_string().contains("prompt_tokens"), "{err}");
    let err = run(&serve(u32::MAX, "")).expect_err("too many devices");
    assert!(
        err.to_string().contains("[hardware] count") && err.to_string().contains("maximum"),
        "{err}"
    );
}

fn serve_moe(preset: &str, parallelism: &str) -> String {
    serve_on(preset, "H200", 8, parallelism)
}

#[test]
fn moe_expert_split_is_searched_inside_the_tensor_parallel_group() {
    let Ok(PlanReport::Inference(r)) = run(&serve_moe("mixtral-8x7b", "")) else {
        panic!("an inference report");
    };
    assert!(r.searched);
    let all: Vec<_> = std::iter::once(&r.estimate)
        .chain(r.alternatives.iter())
        .collect();
    for e in &all {
        assert_eq!(e.layout.tp % e.layout.ep, 0, "{:?}", e.layout);
        assert_eq!(8 % e.layout.ep, 0, "{:?}", e.layout);
    }
    // With tp and pp given, the expert split is still searched; a given ep is kept.
    let Ok(PlanReport::Inference(tp8)) =
        run(&serve_moe("mixtral-8x7b", "[parallelism]\ntp = 8\npp = 1"))
    else {
        panic!("an inference report");
    };
    assert!(tp8.searched);
    assert_eq!(tp8.estimate.layout.tp, 8);
    let Ok(PlanReport::Inference(ep4)) = run(&serve_moe(
        "mixtral-8x7b",
        "[parallelism]\ntp = 8\npp = 1\nep = 4",
    )) else {
        panic!("an inference report");
    };
    assert!(!ep4.searched);
    assert_eq!(ep4.estimate.layout.ep, 4);
    assert!(ep4.estimate.tokens_per_s <= tp8.estimate.tokens_per_s * (1.0 + 1e-12));
    // A dense model keeps ep = 1 and is not searched over it.
    let Ok(PlanReport::Inference(dense)) =
        run(&serve_moe("llama3-70b", "[parallelism]\ntp = 8\npp = 1"))
    else {
        panic!("an inference report");
    };
    assert!(!dense.searched);
    assert_eq!(dense.estimate.layout.ep, 1);
}

#[test]
fn an_expert_split_outside_the_tensor_parallel_group_is_an_input_error() {
    for (preset, parallelism, needle) in [
        (
            "mixtral-8x7b",
            "[parallelism]\ntp = 2\npp = 4\nep = 4",
            "ep = 4 does not divide tp = 2",
        ),
        (
            "llama3-70b",
            "[parallelism]\ntp = 8\npp = 1\nep = 2",
            "ep > 1 needs a mixture-of-experts model",
        ),
        // Larger than any tensor-parallel group of 8 devices: the error names ep, not the
        // device count.
        (
            "deepseek-v3",
            "[parallelism]\nep = 16",
            "ep = 16 divides no tensor-parallel group that fits deepseek-v3 on 8 devices",
        ),
    ] {
        let err = run(&serve_moe(preset, parallelism))
            .err()
            .unwrap_or_else(|| panic!("{preset} {parallelism} must be refused"))
            .to_string();
        assert!(err.contains(needle), "{err}");
    }
}

/// With only `ep` given, the search keeps the tensor-parallel groups it divides; and at one
/// request the busiest rank of an 8-way expert split still reads a whole expert per touched
/// expert, so the split is no faster than splitting every expert 8 ways.
#[test]
fn a_given_ep_narrows_the_search_and_costs_whole_experts() {
    let Ok(PlanReport::Inference(r)) = run(&serve_moe("mixtral-8x7b", "[parallelism]\nep = 4"))
    else {
        panic!("an inference report");
    };
    assert!(r.searched);
    for e in std::iter::once(&r.estimate).chain(r.alternatives.iter()) {
        assert_eq!(e.layout.ep, 4);
        assert_eq!(e.layout.tp % 4, 0, "{:?}", e.layout);
    }
    let one = |ep: u32| {
        let text = serve_moe(
            "mixtral-8x7b",
            &format!("[parallelism]\ntp = 8\npp = 1\nep = {ep}"),
        )
        .replace("concurrency = \"max\"", "concurrency = 1");
        let Ok(PlanReport::Inference(r)) = run(&text) else {
            panic!("an inference report");
        };
        r.estimate.tpot_s
    };
    assert!(one(8) > one(1), "ep8 {} vs ep1 {}", one(8), one(1));
}
