//! Invariants of the model and the search.

use proptest::prelude::*;
use switchyard_core::accelerator::lookup;
use switchyard_perf::hardware::{
    Hardware, MEMORY_BANDWIDTH_EFFICIENCY, groups_holding, kernel_facts,
};
use switchyard_perf::infer::{Concurrency, InferenceLayout, InferenceSpec, estimate_inference};
use switchyard_perf::layout::{Layout, Recompute, RecomputeModules};
use switchyard_perf::search::{
    LayoutConstraint, SearchOptions, best_training_rate, recompute_candidates, search,
};
use switchyard_perf::train::{GemmDevice, TrainingSpec, estimate, memory};
use switchyard_perf::{CrossEntropy, ModelSpec, Software};

fn h100(count: u32) -> Hardware {
    Hardware::from_accelerator(lookup("H100-SXM").expect("in the catalog"), count)
}

/// 64 data-parallel ranks with 8-way expert parallelism, micro-batch 1, ZeRO-1.
fn expert_parallel_on_64(recompute: Recompute) -> Layout {
    Layout {
        tp: 1,
        pp: 1,
        dp: 64,
        cp: 1,
        ep: 8,
        etp: 1,
        microbatch: 1,
        virtual_stages: 1,
        recompute,
        sequence_parallel: false,
        zero: 1,
    }
}

fn spec(global_batch: u32) -> TrainingSpec {
    TrainingSpec {
        global_batch,
        fp8: false,
        tokens: None,
        software: Software::default(),
        capacity_factor: None,
        recompute_modules: Default::default(),
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
        let base = Layout { tp, pp, dp, cp: 1, ep: 1, etp: tp, microbatch: mb, virtual_stages: 1, recompute: rc, sequence_parallel: tp > 1, zero };
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
        etp: 8,
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

fn h100_gemm(fp8: bool) -> GemmDevice {
    let a = lookup("H100-SXM").expect("in the catalog");
    let facts = kernel_facts(a);
    GemmDevice {
        peak_flops: if fp8 {
            a.fp8_tflops.expect("Hopper has FP8")
        } else {
            a.bf16_tflops
        } * 1e12,
        ceiling: if fp8 { facts.gemm_fp8 } else { facts.gemm_bf16 },
        facts,
        hbm_bytes_per_s: a.hbm_tb_s * 1e12,
        elem_bytes: if fp8 { 1.0 } else { 2.0 },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// A GEMM never beats its compute peak or its memory roof; `batch` GEMMs in one batched
    /// kernel never take longer than one after another nor less than their peak time.
    #[test]
    fn gemm_respects_both_roofs(m in 1u32..20_000, n in 64u32..60_000, k in 64u32..30_000, batch in 1u32..64, fp8 in any::<bool>()) {
        let dev = h100_gemm(fp8);
        let (m, n, k, b) = (f64::from(m), f64::from(n), f64::from(k), f64::from(batch));
        let one = dev.time(m, n, k);
        let peak_time = 2.0 * m * n * k / dev.peak_flops;
        let roof = dev.elem_bytes * (m * k + k * n) / dev.hbm_bytes_per_s;
        prop_assert!(one >= peak_time && one >= roof, "{one} vs {peak_time} / {roof}");
        let batched = dev.batched_time(b, m, n, k);
        prop_assert!(batched <= b * one * (1.0 + 1e-9), "{batched} > {b} × {one}");
        prop_assert!(batched >= b * peak_time);
    }

    /// More work never takes less time: growing any dimension of a GEMM (tile, wave and
    /// split-K choices included) does not make it faster.
    #[test]
    fn gemm_time_grows_with_every_dimension(m in 1u32..20_000, n in 64u32..60_000, k in 64u32..30_000, grow in 1u32..4096, fp8 in any::<bool>()) {
        let dev = h100_gemm(fp8);
        let (m, n, k, g) = (f64::from(m), f64::from(n), f64::from(k), f64::from(grow));
        let base = dev.time(m, n, k) * (1.0 - 1e-9);
        prop_assert!(dev.time(m + g, n, k) >= base, "m + {g}");
        prop_assert!(dev.time(m, n + g, k) >= base, "n + {g}");
        prop_assert!(dev.time(m, n, k + g) >= base, "k + {g}");
    }
}

/// Decoding one token for a few requests reads the weights once: the skinny GEMMs sit on the
/// memory roof (split-K keeps them from being costed as 20 tiles on 132 SMs).
#[test]
fn skinny_decode_gemms_are_memory_bound() {
    let dev = h100_gemm(true);
    // Llama 3 70B FFN up/gate at TP 2 for 100 decode rows.
    let (m, n, k) = (100.0, 2.0 * 28_672.0 / 2.0, 8_192.0);
    let roof = (dev.elem_bytes * (m * k + k * n) + 2.0 * m * n)
        / (dev.hbm_bytes_per_s * MEMORY_BANDWIDTH_EFFICIENCY);
    let t = dev.time(m, n, k);
    assert!(
        (t / roof - 1.0).abs() < 0.01,
        "{t} s against the roof {roof} s"
    );
}

/// Time per output token at concurrency 1 is about one read of the weights; more concurrent
/// requests raise throughput until compute binds.
#[test]
fn decode_is_weight_bound_at_low_concurrency() {
    let m = ModelSpec::preset("llama3-8b").expect("preset");
    let hw = h100(1);
    let layout = InferenceLayout {
        tp: 1,
        pp: 1,
        ep: 1,
    };
    let at = |concurrency: u32| {
        let spec = InferenceSpec {
            fp8: true,
            prompt_tokens: 128,
            output_tokens: 1024,
            concurrency: Concurrency::Fixed(concurrency),
        };
        estimate_inference(&m, &hw, &layout, &spec).expect("valid")
    };
    let weights_read = m.total_params() / hw.hbm_bytes_per_s();
    let one = at(1);
    assert!(
        one.tpot_s > weights_read && one.tpot_s < 2.0 * weights_read + 2e-3,
        "tpot {} s against a weight read of {weights_read} s",
        one.tpot_s
    );
    let (b32, b256) = (at(32), at(256));
    assert!(b32.tokens_per_s > 20.0 * one.tokens_per_s);
    assert!(b256.tokens_per_s > b32.tokens_per_s);
    assert!(b256.tpot_s > b32.tpot_s);
}

/// A pipeline does not make one request faster: each token still passes every stage, so at
/// concurrency 1 two pipeline stages decode no faster than one device, while tensor
/// parallelism splits each token's weight reads.
#[test]
fn pipeline_stages_do_not_speed_up_a_single_request() {
    let m = ModelSpec::preset("llama3-8b").expect("preset");
    let spec = InferenceSpec {
        fp8: false,
        prompt_tokens: 128,
        output_tokens: 512,
        concurrency: Concurrency::Fixed(1),
    };
    let run = |count: u32, tp: u32, pp: u32| {
        estimate_inference(&m, &h100(count), &InferenceLayout { tp, pp, ep: 1 }, &spec)
            .expect("valid")
    };
    let (one, pipeline, tensor) = (run(1, 1, 1), run(2, 1, 2), run(2, 2, 1));
    let ratio = pipeline.tokens_per_s / one.tokens_per_s;
    assert!((0.8..1.25).contains(&ratio), "pp2 / one device = {ratio}");
    assert!(tensor.tokens_per_s > 1.4 * pipeline.tokens_per_s);
}

/// One request on Llama 3 70B in FP8 over 8 H100: each token reads 1/8 of the weights per
/// device and pays 160 small all-reduces of about 10 µs (NCCL's LL protocol), so the time per
/// output token is a few milliseconds — below the 4-way tensor × 2-stage pipeline split, whose
/// token crosses both stages.
#[test]
fn tensor_parallel_decode_latency_is_a_few_milliseconds() {
    let m = ModelSpec::preset("llama3-70b").expect("preset");
    let spec = InferenceSpec {
        fp8: true,
        prompt_tokens: 128,
        output_tokens: 512,
        concurrency: Concurrency::Fixed(1),
    };
    let run = |tp: u32, pp: u32| {
        estimate_inference(&m, &h100(8), &InferenceLayout { tp, pp, ep: 1 }, &spec).expect("valid")
    };
    let (tp8, tp4_pp2) = (run(8, 1), run(4, 2));
    let weight_read = m.total_params() / 8.0 / h100(8).hbm_bytes_per_s();
    assert!(
        tp8.tpot_s > weight_read && tp8.tpot_s < 8e-3,
        "tpot {} s, weight read {weight_read} s",
        tp8.tpot_s
    );
    assert!(tp8.tpot_s < tp4_pp2.tpot_s);
}

/// DeepSeek-V3 served in FP8 on 8 H200: each token's cache is its 576-value latent per layer,
/// held whole by every tensor-parallel rank (61 × 576 B), a third of what 128 full key/value
/// heads of 56 would need per rank.
#[test]
fn latent_attention_cache_is_one_latent_per_token_and_layer() {
    let m = ModelSpec::preset("deepseek-v3").expect("preset");
    let hw = Hardware::from_accelerator(lookup("H200").expect("in the catalog"), 8);
    let spec = InferenceSpec {
        fp8: true,
        prompt_tokens: 1000,
        output_tokens: 1000,
        concurrency: Concurrency::Max,
    };
    let tp8 = |model: &ModelSpec| {
        estimate_inference(
            model,
            &hw,
            &InferenceLayout {
                tp: 8,
                pp: 1,
                ep: 1,
            },
            &spec,
        )
        .expect("valid")
    };
    let est = tp8(&m);
    assert_eq!(est.kv_bytes_per_token, 61.0 * 576.0);
    let mut mha = m.clone();
    mha.mla = None;
    let mha_est = tp8(&mha);
    assert!(mha_est.kv_bytes_per_token > 3.0 * est.kv_bytes_per_token);
    assert!(est.max_concurrency > mha_est.max_concurrency);
}

/// Many small GEMMs of one shape (an MoE layer's experts) share the waves of one grouped
/// kernel: 64 problems of 256 × 256 tiles' worth finish well before 64 launches would.
#[test]
fn grouped_gemms_share_the_waves() {
    let dev = h100_gemm(true);
    let (m, n, k) = (256.0, 512.0, 7168.0);
    let grouped = dev.batched_time(64.0, m, n, k);
    assert!(grouped < 0.5 * 64.0 * dev.time(m, n, k), "{grouped}");
}

/// A data-parallel ring across two NVL72 racks crosses between them over the NICs of every
/// member in a rack, not only the four of one compute tray.
#[test]
fn nvl72_rings_use_every_nic_in_the_rack() {
    let gb200 = Hardware::from_accelerator(lookup("GB200").expect("in the catalog"), 144);
    let nic = gb200.scale_out_gb_s * 1e9 * gb200.network_efficiency;
    // 72 ranks two apart span both racks: 36 of them share each rack.
    let bw = gb200.group_bw(72, 2);
    assert!(bw > 8.0 * nic, "{bw} against one NIC's {nic}");
    assert!(bw <= gb200.scale_up_gb_s * 1e9);
}

/// In an 8-GPU PCIe server whose cards are NVLink-bridged in pairs, a ring over the server
/// runs at the rate between the pairs (two NICs' worth per pair), as in servers of two; and
/// a 16-GPU server of two 8-GPU NVLink boards is two domains, not one.
#[test]
fn rings_between_domains_in_one_server_pay_the_level_above() {
    for name in ["H100-NVL", "H100-PCIe"] {
        let a = lookup(name).expect("in the catalog");
        let server = Hardware::from_accelerator(a, 16);
        let mut pairs = Hardware::from_accelerator(a, 16);
        pairs.set_per_node(2);
        assert_eq!(server.scale_up_domain, 2, "{name}");
        assert_eq!(server.group_bw(8, 1), pairs.group_bw(8, 1), "{name}");
        assert_eq!(
            server.all_to_all_time(1e9, 8, 1),
            pairs.all_to_all_time(1e9, 8, 1),
            "{name}"
        );
    }
    let h100 = lookup("H100-SXM").expect("in the catalog");
    let eights = Hardware::from_accelerator(h100, 16);
    let mut sixteens = Hardware::from_accelerator(h100, 16);
    sixteens.set_per_node(16);
    assert_eq!(eights.group_bw(16, 1), sixteens.group_bw(16, 1));
}

/// Decoding one request reads the weights once: a GPU with more memory bandwidth and far fewer
/// FLOPs (H20 against H100) decodes it at least as fast. One token's row used to pay for a
/// 128-row tile, which made H20 4x slower.
#[test]
fn single_request_decode_is_bound_by_memory_bandwidth() {
    let m = ModelSpec::preset("llama3-8b").expect("preset");
    let spec = InferenceSpec {
        fp8: false,
        prompt_tokens: 128,
        output_tokens: 1000,
        concurrency: Concurrency::Fixed(1),
    };
    let layout = InferenceLayout {
        tp: 1,
        pp: 1,
        ep: 1,
    };
    let tpot = |name: &str| {
        let hw = Hardware::from_accelerator(lookup(name).expect("in the catalog"), 1);
        estimate_inference(&m, &hw, &layout, &spec)
            .expect("valid")
            .tpot_s
    };
    let (h20, h100) = (tpot("H20"), tpot("H100-SXM"));
    assert!(h20 <= h100, "H20 {h20} s against H100 {h100} s");
    // About 16 GB of weights at 80% of H20's 4 TB/s, plus the step's fixed costs.
    assert!(h20 < 0.008, "{h20}");
}

/// `concurrency = "max"` fills the KV cache up to the engine's 4,096-request batch limit:
/// Llama 3 8B in FP8 at 128 + 128 tokens fits more than TensorRT-LLM's 2,048 default.
#[test]
fn max_concurrency_reaches_past_2048_up_to_4096() {
    let m = ModelSpec::preset("llama3-8b").expect("preset");
    let spec = InferenceSpec {
        fp8: true,
        prompt_tokens: 128,
        output_tokens: 128,
        concurrency: Concurrency::Max,
    };
    let est = estimate_inference(
        &m,
        &h100(1),
        &InferenceLayout {
            tp: 1,
            pp: 1,
            ep: 1,
        },
        &spec,
    )
    .expect("valid");
    assert!(
        est.max_concurrency > 2048 && est.max_concurrency <= 4096,
        "{}",
        est.max_concurrency
    );
}

/// GPT-OSS-120B served on 8 H200 with 8k-token requests: its windowed half of the layers cache
/// 128 tokens per request instead of the whole context, so a request's cache is about half of
/// what global attention everywhere would need, more requests fit, and each decode step reads
/// less.
#[test]
fn sliding_window_layers_cache_only_their_window() {
    let oss = ModelSpec::preset("gpt-oss-120b").expect("preset");
    let mut full = oss.clone();
    full.window = None;
    let hw = Hardware::from_accelerator(lookup("H200").expect("in the catalog"), 8);
    let spec = InferenceSpec {
        fp8: true,
        prompt_tokens: 7000,
        output_tokens: 1000,
        concurrency: Concurrency::Max,
    };
    let layout = InferenceLayout {
        tp: 8,
        pp: 1,
        ep: 1,
    };
    let windowed = estimate_inference(&oss, &hw, &layout, &spec).expect("valid");
    let global = estimate_inference(&full, &hw, &layout, &spec).expect("valid");
    // Per token of an 8,000-token request: 18 layers hold every token, 18 hold 128 of 8,000.
    let ratio = windowed.kv_bytes_per_token / global.kv_bytes_per_token;
    let expected = (18.0 * 8000.0 + 18.0 * 128.0) / (36.0 * 8000.0);
    assert!((ratio - expected).abs() < 1e-12, "{ratio} vs {expected}");
    assert!(windowed.max_concurrency > global.max_concurrency);
    let at = |n: u32, model: &ModelSpec| {
        estimate_inference(
            model,
            &hw,
            &layout,
            &InferenceSpec {
                concurrency: Concurrency::Fixed(n),
                ..spec
            },
        )
        .expect("valid")
    };
    assert!(at(64, &oss).tpot_s < at(64, &full).tpot_s);
    assert!(at(64, &oss).ttft_s < at(64, &full).ttft_s);
}

/// Training GPT-OSS-120B at 8k tokens: the windowed layers' attention costs a fraction of
/// global attention, so a step is shorter, and the model FLOPs count only what is attended.
#[test]
fn sliding_window_training_attends_less() {
    let oss = ModelSpec::preset("gpt-oss-120b").expect("preset");
    let mut full = oss.clone();
    full.window = None;
    let hw = h100(64);
    let l = expert_parallel_on_64(Recompute::Selective);
    let windowed = estimate(&oss, &hw, &l, &spec(512));
    let global = estimate(&full, &hw, &l, &spec(512));
    assert!(windowed.step_time_s < global.step_time_s);
    assert!(oss.model_flops_per_token() < full.model_flops_per_token());
}

/// A pipeline's first stage holds `pp` micro-batches of activations and its last stage one plus
/// the logits; the busiest of the two is what must fit, not their sum. GPT-OSS-120B with its
/// 201,088-token vocabulary on 64 H100 (pp 4, 16k tokens per micro-batch, full recompute), as
/// Megatron-Bridge ran it, with a loss that upcasts the logits to FP32 (8 bytes each), so that
/// the logits alone are 24.5 GiB.
#[test]
fn pipeline_memory_is_the_busiest_stage_not_the_sum() {
    let oss = ModelSpec::preset("gpt-oss-120b").expect("preset");
    let mut short = oss.clone();
    short.seq_len = 4096;
    let l = Layout {
        tp: 1,
        pp: 4,
        dp: 16,
        cp: 1,
        ep: 8,
        etp: 1,
        microbatch: 4,
        virtual_stages: 1,
        recompute: Recompute::Full,
        sequence_parallel: false,
        zero: 1,
    };
    let upcast = TrainingSpec {
        software: Software {
            cross_entropy: CrossEntropy::Fp32Upcast,
            ..Software::MEGATRON_CORE
        },
        ..spec(512)
    };
    let mem = memory(&short, &h100(64), &l, &upcast);
    let logits_gib = 4.0 * 4096.0 * 8.0 * 201_088.0 / f64::from(1u32 << 30);
    assert!(mem.activations_gib >= logits_gib);
    // Plus one micro-batch of the last stage's nine layer checkpoints and the layer being
    // recomputed: a few GiB, not four micro-batches' worth.
    assert!(mem.activations_gib < logits_gib + 4.0, "{mem:?}");
    assert!(mem.total_gib <= mem.capacity_gib, "{mem:?}");
    // Without a pipeline the one stage holds both.
    let flat = Layout { pp: 1, dp: 64, ..l };
    let whole = memory(&short, &h100(64), &flat, &upcast);
    assert!(whole.activations_gib > logits_gib);
}

/// Activations in flight on the first pipeline stage: `pp` micro-batches under plain 1F1B
/// (warm-up of pp − 1 forward passes), `pp + (pp − 1)/v` with `v` interleaved chunks (Megatron's
/// interleaved warm-up), and never more micro-batches than the step has.
#[test]
fn first_stage_holds_pp_micro_batches_plus_the_interleaving_spread() {
    let m = ModelSpec::preset("llama3-70b").expect("preset");
    let layout = |virtual_stages: u32| Layout {
        tp: 8,
        pp: 8,
        dp: 1,
        cp: 1,
        ep: 1,
        etp: 8,
        microbatch: 1,
        virtual_stages,
        recompute: Recompute::None,
        sequence_parallel: true,
        zero: 1,
    };
    let acts = |v: u32, global_batch: u32| {
        memory(&m, &h100(64), &layout(v), &spec(global_batch)).activations_gib
    };
    let plain = acts(1, 64);
    let interleaved = acts(5, 64);
    assert!(
        (interleaved / plain - (8.0 + 7.0 / 5.0) / 8.0).abs() < 1e-9,
        "{interleaved} / {plain}"
    );
    // Two micro-batches per step: at most two in flight.
    assert!((acts(1, 2) / plain - 2.0 / 8.0).abs() < 1e-9);
}

/// A dropping MoE stack computes and dispatches every capacity slot: Mixtral 8x7B with a
/// capacity factor of 1.25 runs its expert GEMMs over 25% more rows than the dropless balanced
/// load, so its step is longer; a factor of 1 costs the same as dropless.
#[test]
fn capacity_slots_are_computed_and_dispatched() {
    let m = ModelSpec::preset("mixtral-8x7b").expect("preset");
    let l = expert_parallel_on_64(Recompute::Full);
    let with = |cf: Option<f64>| {
        estimate(
            &m,
            &h100(64),
            &l,
            &TrainingSpec {
                capacity_factor: cf,
                ..spec(512)
            },
        )
    };
    let dropless = with(None);
    let padded = with(Some(1.25));
    assert!(padded.step_time_s > dropless.step_time_s);
    assert!(padded.breakdown.ep_comm_s > dropless.breakdown.ep_comm_s * 1.2);
    assert_eq!(with(Some(1.0)).step_time_s, dropless.step_time_s);
    // The model FLOPs count only real tokens: MFU falls with the padding.
    assert!(padded.mfu < dropless.mfu);
}

/// Qwen3-235B on 256 H100 with 2-way tensor parallelism and 8-way expert parallelism.
fn qwen3_folding(etp: u32) -> Layout {
    Layout {
        tp: 2,
        pp: 1,
        dp: 128,
        cp: 1,
        ep: 8,
        etp,
        microbatch: 1,
        virtual_stages: 1,
        recompute: Recompute::Full,
        sequence_parallel: true,
        zero: 3,
    }
}

/// MoE parallel folding: with `etp = 1` the eight expert-parallel ranks are one server's
/// consecutive GPUs, so the dispatch stays on NVLink; with `etp = tp = 2` they sit two apart
/// and span two servers (and the dispatched tokens are gathered over the expert's two ranks as
/// well). Whole experts also mean `tp` times the expert weights per device, while the
/// experts' work per device is the same.
#[test]
fn folding_experts_keeps_dispatch_inside_the_server() {
    let m = ModelSpec::preset("qwen3-235b-a22b").expect("preset");
    let hw = h100(256);
    let s = spec(2048);
    let (whole, split) = (qwen3_folding(1), qwen3_folding(2));
    whole.check(256, 2048, m.layers).expect("folded layout");
    split.check(256, 2048, m.layers).expect("unfolded layout");
    let (a, b) = (estimate(&m, &hw, &whole, &s), estimate(&m, &hw, &split, &s));
    assert!(
        a.breakdown.ep_comm_s * 2.0 < b.breakdown.ep_comm_s,
        "{:?} vs {:?}",
        a.breakdown,
        b.breakdown
    );
    let (mw, ms) = (memory(&m, &hw, &whole, &s), memory(&m, &hw, &split, &s));
    assert!(mw.weights_gib > ms.weights_gib, "{mw:?} vs {ms:?}");
    // Without full recompute the experts' gathered inputs are kept: etp times as many rows.
    let keep = |l: Layout| {
        memory(
            &m,
            &hw,
            &Layout {
                recompute: Recompute::None,
                ..l
            },
            &s,
        )
    };
    assert!(
        keep(split).activations_gib > keep(whole).activations_gib,
        "{:?} vs {:?}",
        keep(split),
        keep(whole)
    );
    // Same FLOPs per device: the compute differs by GEMM shape only.
    let ratio = a.breakdown.compute_s / b.breakdown.compute_s;
    assert!((0.8..1.25).contains(&ratio), "{ratio}");
    // 32-way expert parallelism needs the tensor-parallel ranks: only folded.
    let wide = Layout {
        pp: 8,
        dp: 16,
        ep: 32,
        ..whole
    };
    wide.check(256, 2048, m.layers)
        .expect("ep·etp = 32 tiles tp·dp = 32");
    let err = Layout { etp: 2, ..wide }
        .check(256, 2048, m.layers)
        .expect_err("ep = 32 does not divide dp = 16");
    assert!(
        err.to_string()
            .contains("ep = 32 does not divide dp·cp = 16"),
        "{err}"
    );
}

/// A stack that sends each token once per member and over the network once per server it is
/// bound for moves no more than one that sends every (token, expert) pair, and exactly as much
/// when a token has one expert or, inside one scale-up domain, each member holds one expert.
#[test]
fn deduplicated_dispatch_never_moves_more_than_all_to_all() {
    let hw = h100(1024);
    let bytes = 4096.0 * 7168.0 * 2.0;
    for (k, experts, size, stride) in [
        (8, 256, 64, 1),
        (8, 256, 64, 2),
        (8, 128, 32, 1),
        (2, 8, 8, 1),
        (2, 8, 8, 2),
        (1, 64, 64, 1),
        (6, 64, 16, 4),
        (8, 256, 256, 1),
    ] {
        let all = hw.all_to_all_time(bytes * f64::from(k), size, stride);
        let dedup = hw.dispatch_deduplicated_time(bytes, k, experts, size, stride);
        assert!(
            dedup <= all * (1.0 + 1e-9),
            "k{k} E{experts} ep{size}/{stride}: {dedup} > {all}"
        );
        if k == 1 || (size * stride <= 8 && experts == size) {
            assert!(
                (dedup - all).abs() <= all * 1e-9,
                "k{k} ep{size}/{stride}: {dedup} vs {all}"
            );
        }
    }
    // One member per server (ranks 8 apart): every remote expert is its own server, yet a token
    // with two experts on one server still crosses once.
    let spread = hw.dispatch_deduplicated_time(bytes, 8, 256, 32, 8);
    assert!(spread <= hw.all_to_all_time(bytes * 8.0, 32, 8) * (1.0 + 1e-9));
    // A whole NVL72 rack is one scale-up domain: no server to deduplicate, but a token goes to
    // each member holding any of its experts once. With 4 of 256 experts per member, 8 experts
    // reach 7.6 members on average, not 8.
    let members = groups_holding(8, 256, 64.0);
    assert!((7.5..7.7).contains(&members), "{members}");
    let rack = Hardware::from_accelerator(lookup("GB200").expect("in the catalog"), 72);
    let (d, a) = (
        rack.dispatch_deduplicated_time(bytes, 8, 256, 64, 1),
        rack.all_to_all_time(bytes * 8.0, 64, 1),
    );
    assert!((d - a * members / 8.0).abs() <= a * 1e-9, "{d} vs {a}");
    // Qwen3-30B-A3B's 8 of 128 experts over 8 members (16 each): a token reaches 5.3 of them.
    assert!((5.2..5.4).contains(&groups_holding(8, 128, 8.0)));
    // One expert per member, or one chosen expert: every copy is sent.
    assert_eq!(groups_holding(8, 64, 64.0), 8.0);
    assert!((groups_holding(1, 256, 64.0) - 1.0).abs() < 1e-12);
    // With a network as fast as NVLink the fan-out inside each server is the bound: every copy
    // bound for the server's other members crosses NVLink once, wherever it came from.
    let mut fast = h100(1024);
    fast.scale_out_gb_s = 1e4;
    let up = fast.scale_up_gb_s * 1e9 * switchyard_perf::hardware::SCALE_UP_COLLECTIVE_EFFICIENCY;
    let fan_out = bytes * members * 7.0 / 8.0 / up;
    let t = fast.dispatch_deduplicated_time(bytes, 8, 256, 64, 1);
    let latency = switchyard_perf::hardware::COLLECTIVE_LATENCY_ALL_TO_ALL_S;
    assert!(
        (t - fan_out - latency).abs() <= fan_out * 1e-9,
        "{t} vs {fan_out}"
    );
    // DeepSeek-V3's 8 of 256 experts over 64 ranks in 8 servers: each token reaches about 4.6
    // of the 7 other servers instead of crossing the network 7 times.
    let all = hw.all_to_all_time(bytes * 8.0, 64, 1);
    let dedup = hw.dispatch_deduplicated_time(bytes, 8, 256, 64, 1);
    assert!((0.6..0.72).contains(&(dedup / all)), "{}", dedup / all);
}

/// The profile decides the dispatch: torchtitan-style FSDP stacks send every (token, expert)
/// pair, the Megatron-Core default deduplicates per server.
#[test]
fn the_software_profile_chooses_the_dispatch() {
    let m = ModelSpec::preset("deepseek-v3").expect("preset");
    let hw = h100(1024);
    let l = Layout {
        tp: 2,
        pp: 8,
        dp: 64,
        cp: 1,
        ep: 64,
        etp: 1,
        microbatch: 1,
        virtual_stages: 4,
        recompute: Recompute::None,
        sequence_parallel: true,
        zero: 1,
    };
    let megatron = estimate(&m, &hw, &l, &spec(8192));
    let fsdp = estimate(
        &m,
        &hw,
        &l,
        &TrainingSpec {
            software: Software::FSDP,
            ..spec(8192)
        },
    );
    assert!(
        megatron.breakdown.ep_comm_s * 1.3 < fsdp.breakdown.ep_comm_s,
        "{} vs {}",
        megatron.breakdown.ep_comm_s,
        fsdp.breakdown.ep_comm_s
    );
}

/// The loss decides the logits' memory: an FP32 upcast holds 8 bytes per logit on the last
/// stage, a fused BF16 cross-entropy (llm-foundry's default) 4, Transformer Engine's in-place
/// kernel (Megatron-Core's default here) 2; nothing else moves.
#[test]
fn the_loss_kernel_sets_the_logit_memory() {
    let m = ModelSpec::preset("llama3-8b").expect("preset");
    let hw = h100(8);
    let l = Layout {
        tp: 2,
        pp: 1,
        dp: 4,
        cp: 1,
        ep: 1,
        etp: 1,
        microbatch: 4,
        virtual_stages: 1,
        recompute: Recompute::Selective,
        sequence_parallel: true,
        zero: 1,
    };
    let with = |layout: &Layout, loss: CrossEntropy| {
        memory(
            &m,
            &hw,
            layout,
            &TrainingSpec {
                software: Software {
                    cross_entropy: loss,
                    ..Software::MEGATRON_CORE
                },
                ..spec(64)
            },
        )
    };
    let upcast = with(&l, CrossEntropy::Fp32Upcast);
    let logits_per_rank = 4.0 * f64::from(m.seq_len) * f64::from(m.vocab) / 2.0;
    for (loss, bytes) in [
        (CrossEntropy::FusedBf16, 4.0),
        (CrossEntropy::InPlaceBf16, 2.0),
    ] {
        let other = with(&l, loss);
        let saved_gib = (8.0 - bytes) * logits_per_rank / (1u64 << 30) as f64;
        assert!(
            (upcast.activations_gib - other.activations_gib - saved_gib).abs() < 1e-9,
            "{loss:?}: {} - {} != {saved_gib}",
            upcast.activations_gib,
            other.activations_gib
        );
        assert_eq!(upcast.weights_gib, other.weights_gib);
        assert_eq!(upcast.optimizer_gib, other.optimizer_gib);
    }
    // With pipeline stages only the last holds the logits: when the first stage (pp micro-
    // batches in flight) is the busiest, the loss changes nothing.
    let staged = Layout {
        pp: 4,
        dp: 1,
        microbatch: 1,
        ..l
    };
    assert_eq!(
        with(&staged, CrossEntropy::Fp32Upcast).activations_gib,
        with(&staged, CrossEntropy::InPlaceBf16).activations_gib
    );
}

/// `groups_holding` is the expected number of equal groups holding at least one of a token's
/// `k` distinct experts, checked against the exact count over every choice of experts for
/// small cases, and never more than `k` or the groups.
#[test]
fn groups_holding_counts_the_groups_a_token_reaches() {
    // Exact: average over all C(E, k) expert sets of the number of groups touched.
    fn exact(k: usize, experts: usize, groups: usize) -> f64 {
        let per = experts / groups;
        let mut total = 0u64;
        let mut sets = 0u64;
        for mask in 0u32..(1u32 << experts) {
            if mask.count_ones() as usize != k {
                continue;
            }
            sets += 1;
            total += (0..groups)
                .filter(|g| (mask >> (g * per)) & ((1u32 << per) - 1) != 0)
                .count() as u64;
        }
        total as f64 / sets as f64
    }
    for (k, experts, groups) in [
        (2, 8, 4),
        (2, 8, 2),
        (3, 12, 4),
        (4, 16, 8),
        (6, 16, 4),
        (1, 16, 8),
    ] {
        let got = groups_holding(k as u32, experts as u32, groups as f64);
        let want = exact(k, experts, groups);
        assert!(
            (got - want).abs() < 1e-12,
            "k{k} E{experts} g{groups}: {got} vs {want}"
        );
    }
    for k in 1..=8u32 {
        let mut last = 0.0;
        for groups in [2.0, 4.0, 8.0, 16.0, 32.0, 64.0] {
            let h = groups_holding(k, 256, groups);
            assert!(h <= f64::from(k).min(groups) + 1e-12, "k{k} g{groups}: {h}");
            assert!(h >= last, "more groups never reach fewer: k{k} g{groups}");
            last = h;
        }
    }
}

/// A zero degree in a constraint is an input error, not a division by zero.
#[test]
fn a_zero_degree_is_refused_by_the_search() {
    let m = ModelSpec::preset("qwen3-235b-a22b").expect("preset");
    for c in [
        LayoutConstraint {
            etp: Some(0),
            ..LayoutConstraint::default()
        },
        LayoutConstraint {
            tp: Some(2),
            etp: Some(0),
            ..LayoutConstraint::default()
        },
        LayoutConstraint {
            ep: Some(0),
            ..LayoutConstraint::default()
        },
    ] {
        let err = search(&m, &h100(256), &spec(2048), &c, &SearchOptions::default())
            .expect_err("a zero degree");
        assert!(err.to_string().contains("must be at least 1"), "{err}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// The search skips a recompute mode that repeats at least what a fitting mode of the same
    /// layout does once that mode's time cannot enter the kept list; that shortcut is exact:
    /// the kept step times equal those of searching each mode on its own and merging.
    #[test]
    fn skipping_heavier_recompute_modes_changes_nothing(
        preset_index in 0usize..3,
        count_pow in 3u32..7,
        keep in 1usize..6,
    ) {
        let preset = ["qwen3-30b-a3b", "deepseek-v3", "llama3-8b"][preset_index];
        let m = ModelSpec::preset(preset).expect("preset");
        let hw = h100(1 << (count_pow + if preset == "deepseek-v3" { 3 } else { 0 }));
        let s = spec(1024);
        let opts = SearchOptions { keep, coarse: true, ..SearchOptions::default() };
        let (kept, merged) = kept_and_merged_per_mode(&m, &hw, &s, &opts);
        prop_assert_eq!(kept, merged);
    }
}

/// The same check where a bug once hid: few layers and a huge vocabulary on many devices, so the
/// LM head weighs on how pipeline stages are split (the split once counted recompute time, so
/// a heavier recompute could shorten the busiest stage and run faster).
#[test]
fn skipping_heavier_recompute_modes_is_exact_with_a_heavy_head() {
    let b200 = lookup("B200").expect("in the catalog");
    for base in ["llama3-8b", "qwen3-30b-a3b"] {
        let mut m = ModelSpec::preset(base).expect("preset");
        m.layers = 4;
        m.vocab = 1_000_000;
        if let Some(moe) = &mut m.moe {
            moe.moe_layers = 4;
        }
        for count in [64, 256] {
            let hw = Hardware::from_accelerator(b200, count);
            let s = spec(64);
            for coarse in [true, false] {
                for keep in [1, 3, 5] {
                    let opts = SearchOptions {
                        keep,
                        coarse,
                        ..SearchOptions::default()
                    };
                    let (kept, merged) = kept_and_merged_per_mode(&m, &hw, &s, &opts);
                    assert_eq!(
                        kept, merged,
                        "{base} on {count} B200, coarse {coarse}, keep {keep}"
                    );
                }
            }
        }
    }
}

/// For a latent-attention MoE model the search also tries Megatron-Core's module-level
/// recompute: DeepSeek-V3 on 1,024 H100 in BF16 with the recipe's degrees fits without full
/// recompute only that way.
#[test]
fn the_search_finds_module_level_recompute() {
    let m = ModelSpec::preset("deepseek-v3").expect("preset");
    let hw = h100(1024);
    let s = spec(16_384);
    let c = LayoutConstraint {
        tp: Some(2),
        pp: Some(8),
        dp: Some(64),
        ep: Some(64),
        etp: Some(1),
        microbatch: Some(1),
        virtual_stages: Some(4),
        zero: Some(1),
        ..LayoutConstraint::default()
    };
    let found = search(&m, &hw, &s, &c, &SearchOptions::default()).expect("fits");
    let best = &found[0];
    assert_eq!(best.layout.recompute, Recompute::Selective);
    assert!(
        !best.recompute_modules.is_empty(),
        "{:?}",
        best.recompute_modules
    );
    let full = LayoutConstraint {
        recompute: Some(Recompute::Full),
        ..c
    };
    let full = search(&m, &hw, &s, &full, &SearchOptions::default()).expect("fits");
    assert!(best.step_time_s < full[0].step_time_s);
}

/// The step times the search keeps, and those of searching each recompute mode on its own,
/// merged and cut to the same length (they must agree: the search's skip is exact).
fn kept_and_merged_per_mode(
    m: &ModelSpec,
    hw: &Hardware,
    s: &TrainingSpec,
    opts: &SearchOptions,
) -> (Vec<f64>, Vec<f64>) {
    let all = search(m, hw, s, &LayoutConstraint::default(), opts).unwrap_or_default();
    let mut merged: Vec<f64> = Vec::new();
    for (rc, modules) in recompute_candidates(None, RecomputeModules::default(), m) {
        let c = LayoutConstraint {
            recompute: Some(rc),
            ..LayoutConstraint::default()
        };
        let one = TrainingSpec {
            recompute_modules: modules,
            ..*s
        };
        if let Ok(found) = search(m, hw, &one, &c, opts) {
            merged.extend(found.iter().map(|e| e.step_time_s));
        }
    }
    merged.sort_by(f64::total_cmp);
    merged.truncate(opts.keep);
    (all.iter().map(|e| e.step_time_s).collect(), merged)
}

/// A stack without overlapped gradient reduction (`dp_overlap` off, DeepSpeed 2021) waits for
/// all of it at every ZeRO stage: ZeRO-2's four times the traffic once hid behind compute and
/// made it the fastest.
#[test]
fn without_dp_overlap_every_zero_stage_exposes_its_traffic() {
    let m = ModelSpec::preset("llama3-8b").expect("preset");
    let hw = h100(32);
    let s = TrainingSpec {
        software: Software::DEEPSPEED_2021,
        ..spec(256)
    };
    let step = |zero| {
        let l = Layout {
            tp: 1,
            pp: 1,
            dp: 32,
            cp: 1,
            ep: 1,
            etp: 1,
            microbatch: 1,
            virtual_stages: 1,
            recompute: Recompute::Full,
            sequence_parallel: false,
            zero,
        };
        estimate(&m, &hw, &l, &s)
    };
    for zero in [0, 1, 2] {
        let b = step(zero).breakdown;
        assert!(
            (b.dp_comm_exposed_s - b.dp_comm_s).abs() < 1e-9,
            "zero {zero}: {b:?}"
        );
    }
    assert!(step(2).step_time_s > step(1).step_time_s);
}

/// The LM head is not split across pipeline stages: with a layer per stage, the last stage's
/// head (about 1.8 layers of work for Llama 3 8B's 128k vocabulary) sets the pace, and
/// doubling the stages from 16 to 32 no longer halves the busiest stage's compute.
#[test]
fn a_deep_pipeline_is_paced_by_the_stage_holding_the_head() {
    let m = ModelSpec::preset("llama3-8b").expect("preset");
    let compute = |pp: u32| {
        let l = Layout {
            tp: 1,
            pp,
            dp: 1,
            cp: 1,
            ep: 1,
            etp: 1,
            microbatch: 1,
            virtual_stages: 1,
            recompute: Recompute::None,
            sequence_parallel: false,
            zero: 1,
        };
        estimate(&m, &h100(pp), &l, &spec(64)).breakdown.compute_s
    };
    let (sixteen, thirty_two) = (compute(16), compute(32));
    assert!(
        thirty_two > 0.75 * sixteen,
        "pp32 {thirty_two} s against pp16 {sixteen} s"
    );
    assert!(thirty_two <= sixteen);
}
