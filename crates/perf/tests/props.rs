//! Invariants of the model and the search.

use proptest::prelude::*;
use switchyard_core::accelerator::lookup;
use switchyard_perf::hardware::Hardware;
use switchyard_perf::layout::{Layout, Recompute};
use switchyard_perf::search::{LayoutConstraint, SearchOptions, best_training_rate, search};
use switchyard_perf::train::{TrainingSpec, estimate, memory};
use switchyard_perf::{ModelSpec, Software};

fn h100(count: u32) -> Hardware {
    Hardware::from_accelerator(lookup("H100-SXM").expect("in the catalog"), count)
}

fn spec(global_batch: u32) -> TrainingSpec {
    TrainingSpec {
        global_batch,
        fp8: false,
        tokens: None,
        software: Software::default(),
    }
}

fn recompute() -> impl Strategy<Value = Recompute> {
    prop_oneof![
        Just(Recompute::None),
        Just(Recompute::Selective),
        Just(Recompute::Full)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Bigger micro-batches never need less memory; fuller recomputation never needs more.
    #[test]
    fn memory_is_monotone(tp_pow in 0u32..4, pp_pow in 0u32..4, mb in 1u32..8, rc in recompute(), zero in 0u8..4) {
        let m = ModelSpec::preset("llama3-70b").expect("preset");
        let (tp, pp) = (1 << tp_pow, 1 << pp_pow);
        let count = 512;
        let dp = count / (tp * pp);
        let hw = h100(count);
        let s = spec(4096);
        let base = Layout { tp, pp, dp, cp: 1, ep: 1, microbatch: mb, virtual_stages: 1, recompute: rc, sequence_parallel: tp > 1, zero };
        let bigger = Layout { microbatch: mb + 1, ..base };
        prop_assert!(memory(&m, &hw, &bigger, &s).total_gib >= memory(&m, &hw, &base, &s).total_gib);
        let full = Layout { recompute: Recompute::Full, ..base };
        prop_assert!(memory(&m, &hw, &full, &s).activations_gib <= memory(&m, &hw, &base, &s).activations_gib + 1e-9);
        let more_zero = Layout { zero: (zero + 1).min(3), ..base };
        prop_assert!(memory(&m, &hw, &more_zero, &s).total_gib <= memory(&m, &hw, &base, &s).total_gib + 1e-9);
    }

    /// Every layout the search returns uses exactly the devices, fits, and is sorted fastest first;
    /// no prediction beats the hardware's peak.
    #[test]
    fn search_results_are_valid(count_pow in 3u32..10, batch_pow in 7u32..11) {
        let m = ModelSpec::preset("llama3-8b").expect("preset");
        let count = 1 << count_pow;
        let hw = h100(count);
        let s = spec(1 << batch_pow);
        let opts = SearchOptions { keep: 5, coarse: true, ..SearchOptions::default() };
        let found = search(&m, &hw, &s, &LayoutConstraint::default(), &opts).expect("valid input");
        prop_assert!(!found.is_empty());
        for pair in found.windows(2) {
            prop_assert!(pair[0].step_time_s <= pair[1].step_time_s);
        }
        for e in &found {
            prop_assert_eq!(e.layout.devices(), u64::from(count));
            prop_assert!(e.fits);
            prop_assert!(e.mfu > 0.0 && e.hfu < 1.0 && e.mfu <= e.hfu + 1e-12);
            prop_assert!(e.step_time_s > 0.0 && e.tokens_per_s.is_finite());
        }
    }

    /// More devices of the same kind never make the best layout slower (weak monotonicity of
    /// the search, not of any one layout).
    #[test]
    fn more_devices_never_slower(count_pow in 3u32..8) {
        let m = ModelSpec::preset("llama3-8b").expect("preset");
        let a = lookup("H100-SXM").expect("in the catalog");
        let small = best_training_rate(&m, a, 1 << count_pow, 1024, false).expect("fits");
        let big = best_training_rate(&m, a, 1 << (count_pow + 1), 1024, false).expect("fits");
        prop_assert!(big >= small * 0.999, "{} devices {} tok/s, twice as many {}", 1 << count_pow, small, big);
    }
}

#[test]
fn fp8_is_faster_than_bf16_on_hopper() {
    let m = ModelSpec::preset("llama3-70b").expect("preset");
    let a = lookup("H100-SXM").expect("in the catalog");
    let bf16 = best_training_rate(&m, a, 256, 512, false).expect("fits");
    let fp8 = best_training_rate(&m, a, 256, 512, true).expect("fits");
    assert!(fp8 > bf16 * 1.1, "bf16 {bf16} fp8 {fp8}");
}

#[test]
fn nothing_fits_gives_none() {
    let m = ModelSpec::preset("llama3-405b").expect("preset");
    let a = lookup("A100-40GB").expect("in the catalog");
    assert_eq!(best_training_rate(&m, a, 8, 64, false), None);
}

#[test]
fn published_405b_layout_is_matched_by_the_search() {
    let m = ModelSpec::preset("llama3-405b").expect("preset");
    let hw = h100(16_384);
    let s = spec(2048);
    let published = Layout {
        tp: 8,
        pp: 16,
        dp: 128,
        cp: 1,
        ep: 1,
        microbatch: 1,
        virtual_stages: 4,
        recompute: Recompute::Selective,
        sequence_parallel: true,
        zero: 1,
    };
    let given = estimate(&m, &hw, &published, &s);
    let found = search(
        &m,
        &hw,
        &s,
        &LayoutConstraint::default(),
        &SearchOptions::default(),
    )
    .expect("valid input");
    let best = found.first().expect("something fits");
    assert!(
        best.step_time_s <= given.step_time_s,
        "{best:?} vs {given:?}"
    );
    assert!(
        given.mfu > 0.3 && given.mfu < 0.5,
        "published layout MFU {}",
        given.mfu
    );
}

#[test]
fn deepseek_v3_on_h800_finds_an_expert_parallel_layout() {
    let m = ModelSpec::preset("deepseek-v3").expect("preset");
    let a = lookup("H800").expect("in the catalog");
    let hw = Hardware::from_accelerator(a, 2048);
    let s = TrainingSpec {
        fp8: true,
        ..spec(3840)
    };
    let found = search(
        &m,
        &hw,
        &s,
        &LayoutConstraint::default(),
        &SearchOptions::default(),
    )
    .expect("valid input");
    let best = found.first().expect("something fits");
    assert!(best.layout.ep > 1, "{:?}", best.layout);
    assert!(best.fits);
}
