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
