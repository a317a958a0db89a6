//! The scheduler's entry point on awkward inputs: never panics, answers fast.

use switchyard_core::accelerator::{catalog, lookup};
use switchyard_perf::{ModelSpec, best_training_rate};

#[test]
fn best_training_rate_handles_any_count_and_accelerator() {
    let started = std::time::Instant::now();
    for preset in ModelSpec::preset_names() {
        let m = ModelSpec::preset(preset).expect("preset");
        for a in catalog() {
            for count in [0u32, 1, 7, 96, 1000] {
                for fp8 in [false, true] {
                    let r = best_training_rate(&m, a, count, 1024, fp8);
                    if let Some(rate) = r {
                        assert!(
                            rate.is_finite() && rate > 0.0,
                            "{preset} {} {count}",
                            a.name
                        );
                    }
                    if count == 0 {
                        assert_eq!(r, None);
                    }
                }
            }
        }
    }
    let h100 = lookup("H100-SXM").expect("catalog");
    let m = ModelSpec::preset("llama3-8b").expect("preset");
    assert!(best_training_rate(&m, h100, 1000, 1000, false).is_some());
    assert!(best_training_rate(&m, h100, 8, 0, false).is_none());
    println!("{:?} for the sweep", started.elapsed());
}

/// Each calibration source runs the stack its publication used; keys that name a framework
/// (MaxText, torchtitan) get that framework's stack whatever their suffix, and unknown keys the
/// default.
#[test]
fn sources_map_to_their_stacks() {
    use switchyard_perf::Software;
    use switchyard_perf::validate::software_for;
    for (source, zero, stack) in [
        ("megatron_sc21", None, "megatron-2021"),
        ("megatron_sc21", Some(3), "deepspeed-2021"),
        ("korthikanti_2022", None, "megatron-2022"),
        ("megascale", Some(1), "megatron-2022"),
        ("llm_foundry", Some(3), "llm-foundry-2023"),
        ("maxtext_tpu_recipes", Some(3), "maxtext"),
        ("MaxText_v5p", None, "maxtext"),
        ("torchtitan_h100", None, "fsdp"),
        ("megatron_bridge_perf", Some(1), "megatron-core"),
        ("someone_else", None, "megatron-core"),
    ] {
        assert_eq!(software_for(source, zero).name, stack, "{source} {zero:?}");
    }
    assert_eq!(software_for("", None), Software::MEGATRON_CORE);
}

/// A cluster that states its storage's aggregate write bandwidth caps the checkpoint write: the
/// Young/Daly interval grows with the square root of the write time and goodput falls; a cap
/// above what the nodes write changes nothing.
#[test]
fn storage_bandwidth_caps_the_checkpoint_write() {
    use switchyard_perf::Hardware;
    use switchyard_perf::plan::{CHECKPOINT_WRITE_GB_S_PER_NODE, budget};
    let m = ModelSpec::preset("llama3-405b").expect("preset");
    let accel = switchyard_core::accelerator::lookup("H100-SXM").expect("in the catalog");
    let open = Hardware::from_accelerator(accel, 16_384);
    let nodes_gb_s = f64::from(open.nodes()) * CHECKPOINT_WRITE_GB_S_PER_NODE;
    let capped = Hardware {
        checkpoint_write_gb_s: Some(nodes_gb_s / 4.0),
        ..open.clone()
    };
    let roomy = Hardware {
        checkpoint_write_gb_s: Some(nodes_gb_s * 2.0),
        ..open.clone()
    };
    let (step_s, tokens_per_s, tokens) = (6.7, 2.4e6, 15.6e12);
    let budget_on = |hw| budget(&m, hw, step_s, tokens_per_s, tokens).expect("a budget");
    let (free, slow) = (budget_on(&open), budget_on(&capped));
    assert!((slow.checkpoint_write_s / free.checkpoint_write_s - 4.0).abs() < 1e-9);
    // Twice the interval, to the whole step checkpoints are taken at.
    let (slow_s, free_s) = (
        slow.checkpoint_interval_hours * 3600.0,
        free.checkpoint_interval_hours * 3600.0,
    );
    assert!(
        (slow_s - 2.0 * free_s).abs() <= 2.0 * step_s,
        "{slow_s} vs {free_s}"
    );
    assert!(slow.goodput < free.goodput);
    assert_eq!(budget_on(&roomy), free);
}

/// A run shorter than one Young/Daly interval writes no checkpoint (its end needs none): a few
/// steps on one node are nearly all goodput, not charged a 28 s write every step or two. A
/// longer one writes one after each full interval.
#[test]
fn a_run_shorter_than_an_interval_writes_no_checkpoint() {
    use switchyard_perf::Hardware;
    use switchyard_perf::plan::budget;
    let m = ModelSpec::preset("llama3-8b").expect("preset");
    let accel = switchyard_core::accelerator::lookup("H100-SXM").expect("in the catalog");
    let one_node = Hardware::from_accelerator(accel, 8);
    let (step_s, tokens_per_s) = (6.7, 78_000.0);
    let short = budget(&m, &one_node, step_s, tokens_per_s, 1e6).expect("a budget");
    assert_eq!(short.checkpoints, 0);
    assert!(short.goodput > 0.99, "{short:?}");
    assert!(short.warning.is_none(), "{:?}", short.warning);
    // Two and a half intervals of work: two checkpoints, the last half interval none.
    let year = budget(&m, &one_node, step_s, tokens_per_s, 1e12).expect("a budget");
    let interval_s = year.checkpoint_interval_hours * 3600.0;
    assert!(interval_s > 3600.0, "{year:?}");
    let tokens = 2.5 * interval_s * tokens_per_s;
    let long = budget(&m, &one_node, step_s, tokens_per_s, tokens).expect("a budget");
    assert_eq!(long.checkpoints, 2, "{long:?}");
    // Nodes that fail every quarter hour: a run of two steps writes no checkpoint, and its
    // warning names the Young/Daly interval (about 112 s), not the run's own 5 s.
    let flaky = Hardware {
        node_mtbf_hours: Some(1.0),
        ..Hardware::from_accelerator(accel, 32)
    };
    let two_steps = budget(&m, &flaky, 2.5, 200_000.0, 1e6).expect("a budget");
    assert_eq!(two_steps.checkpoints, 0);
    let warning = two_steps.warning.expect("failures cost most of its time");
    let young_s = (2.0 * two_steps.checkpoint_write_s * 900.0).sqrt();
    let named = switchyard_perf::plan::human_duration((young_s / 2.5).round() * 2.5);
    assert!(
        warning.contains(&format!(
            "no longer than the Young/Daly interval of {named}"
        )),
        "{warning}"
    );
    let ideal_s = long.ideal_days * 86400.0;
    let writes = 2.0 * long.checkpoint_write_s;
    assert!(
        long.days_to_train * 86400.0 > ideal_s + writes,
        "the writes and the failures both cost: {long:?}"
    );
}

/// A budget is spent in whole steps, checkpoints fall on step boundaries, and failures that
/// come about as often as a restart takes are told (warned of, or refused when the job would
/// never finish) rather than priced by a formula that only holds for rare failures.
#[test]
fn budgets_count_whole_steps_and_say_when_failures_dominate() {
    use switchyard_perf::Hardware;
    use switchyard_perf::plan::{RESTART_HOURS, budget};
    let m = ModelSpec::preset("llama3-8b").expect("preset");
    let accel = switchyard_core::accelerator::lookup("H100-SXM").expect("in the catalog");
    let step_s = 2.0;
    let tokens_per_s = 1e6;
    // A few nodes: rare failures; the first-order overhead δ/τ + (τ/2 + R)/M holds.
    let small = Hardware::from_accelerator(accel, 64);
    let b = budget(&m, &small, step_s, tokens_per_s, 1e12).expect("a budget");
    let (write, mtbf) = (b.checkpoint_write_s, b.job_mtbf_hours * 3600.0);
    let interval = b.checkpoint_interval_hours * 3600.0;
    assert!((interval / step_s).fract() == 0.0, "{interval}");
    let first_order = write / interval + (interval / 2.0 + RESTART_HOURS * 3600.0) / mtbf;
    assert!(
        ((1.0 / b.goodput - 1.0) / first_order - 1.0).abs() < 0.01,
        "{} vs {first_order}",
        1.0 / b.goodput - 1.0
    );
    assert!(b.warning.is_none(), "{:?}", b.warning);
    // One token still takes a step.
    let one = budget(&m, &small, step_s, tokens_per_s, 1.0).expect("a budget");
    assert!(
        (one.ideal_days * 86400.0 - step_s).abs() < 1e-9,
        "{}",
        one.ideal_days
    );
    // A million devices: the job fails every few minutes, about as often as it restarts; the
    // checkpoint interval is at least a step and the budget warns.
    let huge = Hardware::from_accelerator(accel, 1 << 20);
    let b = budget(&m, &huge, step_s, tokens_per_s, 1e12).expect("a budget");
    assert!(b.checkpoint_interval_hours * 3600.0 >= step_s);
    assert!(b.goodput < 0.05, "{}", b.goodput);
    let warning = b.warning.expect("a warning");
    assert!(warning.contains("131072 nodes fail every"), "{warning}");
    // Sixteen million: it would never finish.
    let hopeless = Hardware::from_accelerator(accel, 1 << 24);
    let e = budget(&m, &hopeless, step_s, tokens_per_s, 1e12).expect_err("never finishes");
    assert!(
        e.to_string().contains("would practically never finish"),
        "{e}"
    );
}

/// Nodes that never fail (an MTBF past the f64 range) leave only the checkpoint writes to pay:
/// a number, not NaN.
#[test]
fn a_budget_with_nodes_that_never_fail_is_a_number() {
    use switchyard_perf::Hardware;
    use switchyard_perf::plan::budget;
    let m = ModelSpec::preset("llama3-8b").expect("preset");
    let accel = switchyard_core::accelerator::lookup("H100-SXM").expect("in the catalog");
    let hw = Hardware {
        node_mtbf_hours: Some(1e306),
        ..Hardware::from_accelerator(accel, 8)
    };
    let b = budget(&m, &hw, 2.0, 1e5, 1e12).expect("a budget");
    assert!(b.goodput > 0.99 && b.goodput <= 1.0, "{}", b.goodput);
    assert!(b.days_to_train.is_finite(), "{}", b.days_to_train);
    assert!(budget(&m, &hw, 0.0, 1e5, 1e12).is_err());
}
