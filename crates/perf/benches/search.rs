//! Layout search must stay interactive: the two frontier cases.
//!
//! `CARGO_TARGET_DIR=target-perf cargo bench -p switchyard-perf --bench search`

use switchyard_core::accelerator::lookup;
use switchyard_perf::hardware::Hardware;
use switchyard_perf::search::{LayoutConstraint, SearchOptions, best_training_rate, search};
use switchyard_perf::{ModelSpec, Software, TrainingSpec};

fn main() {
    divan::main();
}

fn run(model: &str, accel: &str, count: u32, batch: u32, fp8: bool) -> usize {
    let m = ModelSpec::preset(model).expect("preset");
    let hw = Hardware::from_accelerator(lookup(accel).expect("catalog"), count);
    let spec = TrainingSpec {
        global_batch: batch,
        fp8,
        tokens: None,
        software: Software::default(),
        capacity_factor: None,
        recompute_modules: Default::default(),
    };
    search(
        &m,
        &hw,
        &spec,
        &LayoutConstraint::default(),
        &SearchOptions::default(),
    )
    .expect("valid")
    .len()
}

/// Full search: Llama 3 405B (dense) on 16,384 H100, 2,048 × 8,192-token sequences.
#[divan::bench(sample_count = 10)]
fn llama3_405b_on_16384_h100() -> usize {
    run("llama3-405b", "H100-SXM", 16_384, 2048, false)
}

/// Full search: DeepSeek-V3 (671B MoE) on 2,048 H800 in FP8, 3,840 × 4,096-token sequences.
#[divan::bench(sample_count = 10)]
fn deepseek_v3_on_2048_h800() -> usize {
    run("deepseek-v3", "H800", 2048, 3840, true)
}

/// The scheduler's cheap query (coarse search) for the same two jobs.
#[divan::bench(sample_count = 20)]
fn best_training_rate_405b() -> Option<f64> {
    let m = ModelSpec::preset("llama3-405b").expect("preset");
    best_training_rate(
        &m,
        lookup("H100-SXM").expect("catalog"),
        16_384,
        2048,
        false,
    )
}

#[divan::bench(sample_count = 20)]
fn best_training_rate_deepseek_v3() -> Option<f64> {
    let m = ModelSpec::preset("deepseek-v3").expect("preset");
    best_training_rate(&m, lookup("H800").expect("catalog"), 2048, 3840, true)
}
