//! Inference: prefill and decode of one model replica on `tp·pp` devices.
//!
//! Offline throughput is modelled as an in-flight-batching engine (TensorRT-LLM, vLLM, SGLang):
//! every iteration decodes one token for each running request and, as requests finish, admits
//! new ones whose prompts are prefilled in chunks alongside the decode tokens. With pipeline
//! parallelism the `B` requests form `pp` micro-batches, one per stage. Per stage iteration:
//! decode GEMMs over its requests (weights read once), attention reading each request's KV
//! cache (or MLA latent), the prompt rows' compute and attention, the tensor-parallel
//! all-reduces and memory-bound kernels over all rows, and the LM head; the host's scheduling
//! is paid once per token. `B` is the requested concurrency capped at what fits, or for
//! `"max"` the most requests whose full KV cache (prompt + output) fits, capped by the
//! engine's batch limit.

use serde::Serialize;

use crate::PerfError;
use crate::hardware::{
    Collective, GIB, Hardware, MEMORY_BANDWIDTH_EFFICIENCY, RESERVED_MEMORY_GIB, kernel_facts,
};
use crate::model::ModelSpec;
use crate::train::{GemmDevice, NormKernels, elementwise_bytes_per_token};

/// Fraction of the memory left after weights and activations that the engine gives to the KV
/// cache: TensorRT-LLM's `kv_cache_free_gpu_mem_fraction` default (0.9); vLLM's
/// `gpu_memory_utilization` default is also 0.9 (of the whole device).
pub const KV_CACHE_FREE_MEMORY_FRACTION: f64 = 0.9;

/// Largest batch the engine schedules: `trtllm-bench` sizes `max_batch_size` to the requests
/// whose KV cache fits, capped at 4,096 (its `finetune_setting`).
pub const MAX_BATCH: u32 = 4096;

/// Tokens one engine iteration processes at most (prefill chunks plus decode tokens):
/// TensorRT-LLM's default `max_num_tokens` (8,192); sizes the activation workspace.
pub const MAX_NUM_TOKENS: u32 = 8192;

/// Per-iteration host work of the engine (scheduling, sampling, launching the CUDA graph):
/// about a millisecond in current engines.
pub const ITERATION_OVERHEAD_S: f64 = 1e-3;

/// Bytes per element of the FP8 copy of each GEMM input in inference: the engine fuses the
/// quantization into the kernel that produces the input (RMSNorm, SwiGLU), which writes one
/// extra byte per element (no transposed copy: inference runs only the forward GEMMs).
pub const FP8_QUANT_BYTES: f64 = 1.0;

/// How many requests run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Concurrency {
    Fixed(u32),
    /// As many as fit (offline maximum-throughput benchmarks).
    #[serde(serialize_with = "max_str")]
    Max,
}

fn max_str<S: serde::Serializer>(s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("max")
}

/// The `[inference]` table.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct InferenceSpec {
    /// FP8 weights, GEMMs and KV cache (as FP8-quantized checkpoints are served); BF16 otherwise.
    pub fp8: bool,
    pub prompt_tokens: u32,
    pub output_tokens: u32,
    pub concurrency: Concurrency,
}

/// How one replica is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct InferenceLayout {
    pub tp: u32,
    pub pp: u32,
    /// Expert parallelism inside the tensor-parallel group (TensorRT-LLM's `moe_ep_size`, with
    /// `moe_tp_size = tp/ep`): each of the `ep` ranks holds `experts/ep` whole-width experts
    /// (split `tp/ep` ways) instead of a `1/tp` slice of every expert. Tokens are replicated
    /// over the group after attention, so the layer still ends in the same all-reduce; what
    /// changes is the shape of the expert GEMMs — fewer, wider ones.
    pub ep: u32,
}

impl std::fmt::Display for InferenceLayout {
    /// `tp8 pp1 ep8`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tp{} pp{} ep{}", self.tp, self.pp, self.ep)
    }
}

/// The expert splits a replica with `tp`-way tensor parallelism can take: every `ep` dividing
/// both `tp` and the experts (just 1 for a dense model).
pub fn expert_splits(m: &ModelSpec, tp: u32) -> Vec<u32> {
    match &m.moe {
        None => vec![1],
        Some(moe) => crate::search::divisors(tp)
            .into_iter()
            .filter(|ep| moe.experts % ep == 0)
            .collect(),
    }
}

/// The prediction for one replica.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InferenceEstimate {
    pub layout: InferenceLayout,
    /// Output tokens per second over all the replica's devices.
    pub tokens_per_s: f64,
    /// Time to first token of one request (its prefill, without queueing), s.
    pub ttft_s: f64,
    /// Time per output token at the running concurrency (one engine iteration; with pipeline
    /// stages, one pass of every micro-batch through every stage), s.
    pub tpot_s: f64,
    /// Largest number of requests whose KV cache fits (capped at the engine's batch limit).
    pub max_concurrency: u32,
    /// Concurrency the figures are for.
    pub concurrency: u32,
    pub weights_per_device_gib: f64,
    /// The serving engine's activation workspace per device (its largest batch of tokens).
    pub workspace_per_device_gib: f64,
    /// Memory a device offers the engine: its HBM less the runtime's share.
    pub usable_per_device_gib: f64,
    pub kv_cache_per_device_gib: f64,
    /// KV cache one whole request (prompt + output) needs per device: when it is more than
    /// the KV cache, nothing fits.
    pub kv_cache_per_request_gib: f64,
    /// KV-cache bytes per token of a request's context, per device (averaged over a whole
    /// request: sliding-window layers hold at most their window).
    pub kv_bytes_per_token: f64,
    pub fits: bool,
}

/// Predicts inference throughput and latency.
pub fn estimate_inference(
    m: &ModelSpec,
    hw: &Hardware,
    l: &InferenceLayout,
    spec: &InferenceSpec,
) -> Result<InferenceEstimate, PerfError> {
    if l.tp == 0 || l.pp == 0 || l.ep == 0 {
        return Err(PerfError::input(
            "[parallelism] tp, pp and ep must be at least 1",
        ));
    }
    if u64::from(l.tp) * u64::from(l.pp) != u64::from(hw.count) {
        return Err(PerfError::input(format!(
            "[parallelism] tp·pp = {}·{} is not the device count {}",
            l.tp, l.pp, hw.count
        )));
    }
    if l.ep > 1 {
        let Some(moe) = &m.moe else {
            return Err(PerfError::input(
                "[parallelism] ep > 1 needs a mixture-of-experts model ([model] experts)",
            ));
        };
        if !l.tp.is_multiple_of(l.ep) {
            return Err(PerfError::input(format!(
                "[parallelism] ep = {} does not divide tp = {} (an inference replica's experts \
                 are split inside its tensor-parallel group)",
                l.ep, l.tp
            )));
        }
        if moe.experts % l.ep != 0 {
            return Err(PerfError::input(format!(
                "[parallelism] ep = {} does not divide [model] experts = {}",
                l.ep, moe.experts
            )));
        }
    }
    if !m.heads.is_multiple_of(l.tp) {
        return Err(PerfError::input(format!(
            "[parallelism] tp = {} does not divide heads = {}",
            l.tp, m.heads
        )));
    }
    if spec.output_tokens == 0 {
        return Err(PerfError::input(
            "[inference] output_tokens must be at least 1",
        ));
    }
    if spec.prompt_tokens == 0 {
        return Err(PerfError::input(
            "[inference] prompt_tokens must be at least 1",
        ));
    }
    let a = hw.accelerator;
    let facts = kernel_facts(a);
    let fp8 = spec.fp8 && a.fp8_tflops.is_some();
    let elem = if fp8 { 1.0 } else { 2.0 };
    let (peak, ceiling) = if fp8 {
        (a.fp8_tflops.unwrap_or(a.bf16_tflops) * 1e12, facts.gemm_fp8)
    } else {
        (a.bf16_tflops * 1e12, facts.gemm_bf16)
    };
    let bf16_peak = a.bf16_tflops * 1e12;
    let hbm = hw.hbm_bytes_per_s();
    let t = f64::from(l.tp);
    let pp = f64::from(l.pp);
    let h = f64::from(m.hidden);
    let (q_width, k_width, v_width) = m.qkv_widths();
    let layers = f64::from(m.layers);
    let v = f64::from(m.vocab);

    // Memory.
    // Everything split over the tensor-parallel group, except replicated projections (MLA's
    // down projections), which every rank holds whole.
    let attention_all = layers * m.attention_params();
    let attention_rank = layers * m.attention_params_per_rank(t);
    let weights = ((m.total_params() - attention_all) / t + attention_rank) * elem / pp;
    // K and V heads split over TP (replicated when TP exceeds the KV heads); a latent-attention
    // cache is one latent per token, which every tensor-parallel rank holds whole.
    let kv_split = if m.mla.is_some() {
        1.0
    } else {
        f64::from(l.tp.min(m.kv_heads))
    };
    // Bytes one cached token costs one device in one layer, over the busiest pipeline stage's
    // layers; windowed layers keep only their window of each request's context.
    let kv_bytes_per_token_layer = m.kv_cache_elems_per_layer() / kv_split * elem;
    let stage_layers = m.layers.div_ceil(l.pp);
    let kv_bytes =
        |context: f64| kv_bytes_per_token_layer * m.stage_span_layers(context, stage_layers);
    let workspace = f64::from(MAX_NUM_TOKENS)
        * (2.0 * (q_width + k_width + v_width) / t
            + 3.0 * f64::from(m.ffn_hidden.max(1)) / t * 2.0
            + v / t * 4.0);
    // The runtime's share (CUDA context, communication buffers) as in training, but no
    // fragmentation allowance: the KV cache is one pre-allocated pool.
    let device = (a.hbm_gib - RESERVED_MEMORY_GIB).max(0.0) * GIB;
    let free = device - weights - workspace;
    let kv_capacity = (free * KV_CACHE_FREE_MEMORY_FRACTION).max(0.0);
    let per_request = f64::from(spec.prompt_tokens) + f64::from(spec.output_tokens);
    let kv_bytes_per_request = kv_bytes(per_request);
    let kv_bytes_per_token = kv_bytes_per_request / per_request;
    let fit_requests = (kv_capacity / kv_bytes_per_request).floor();
    let max_concurrency = fit_requests.min(f64::from(MAX_BATCH)).max(0.0) as u32;
    let b = match spec.concurrency {
        Concurrency::Max => max_concurrency,
        Concurrency::Fixed(n) => n.min(max_concurrency.max(1)),
    }
    .max(1);
    let fits = max_concurrency >= 1;
    let bf = f64::from(b);

    let dev = GemmDevice {
        peak_flops: peak,
        ceiling,
        facts,
        hbm_bytes_per_s: hbm,
        elem_bytes: elem,
    };
    let head_dev = GemmDevice {
        peak_flops: bf16_peak,
        ceiling: facts.gemm_bf16,
        elem_bytes: 2.0,
        ..dev
    };
    let gemm = |rows: f64, n: f64, k: f64| dev.time(rows, n, k);
    let n_mats = m.ffn_matrices();
    // One layer's GEMMs for `rows` tokens.
    let layer_gemms = |rows: f64, moe: bool| -> f64 {
        let mut g: f64 = m
            .attention_projections()
            .map(|(out, input, split)| {
                let (n, k) = split.per_rank(out, input, t);
                gemm(rows, n, k)
            })
            .sum();
        if moe {
            let moe_spec = m.moe.as_ref().expect("moe layer of a moe model");
            let e = f64::from(moe_spec.experts);
            let k = f64::from(moe_spec.experts_per_token);
            let fe = f64::from(moe_spec.expert_ffn_hidden);
            // Experts touched by `rows` tokens, each with rows·k/touched tokens; with expert
            // parallelism a rank runs its share of them, each split only tp/ep ways.
            let touched = e * (1.0 - (1.0 - k / e).powf(rows));
            let per = (rows * k / touched).max(1.0);
            let ep = f64::from(l.ep);
            // The busiest rank runs at least one whole expert once any is touched.
            let (local, moe_tp) = ((touched / ep).max(touched.min(1.0)), t / ep);
            // The touched experts run as one grouped GEMM.
            g += dev.batched_time(local, per, (n_mats - 1.0) * fe / moe_tp, h)
                + dev.batched_time(local, per, h, fe / moe_tp);
            let shared = f64::from(moe_spec.shared_experts);
            if shared > 0.0 {
                g += gemm(rows, (n_mats - 1.0) * shared * fe / t, h)
                    + gemm(rows, h, shared * fe / t);
            }
        } else {
            let f = f64::from(m.ffn_hidden);
            g += gemm(rows, (n_mats - 1.0) * f / t, h) + gemm(rows, h, f / t);
        }
        g
    };
    let moe_layers = f64::from(m.moe_layers());
    let dense_layers = layers - moe_layers;
    let all_gemms = |rows: f64| -> f64 {
        (dense_layers * layer_gemms(rows, false)
            + moe_layers
                * if m.moe.is_some() {
                    layer_gemms(rows, true)
                } else {
                    0.0
                })
            / pp
    };
    // Two all-reduces per layer (after attention and after the FFN) over the tensor-parallel
    // group.
    let allreduce = |rows: f64| -> f64 {
        2.0 * layers / pp * hw.nccl_time(Collective::AllReduce, rows * h * 2.0, l.tp)
    };
    let head = |rows: f64| head_dev.time(rows, v / t, h);
    // Norms, residual adds, rotary embedding, the FFN activation (and FP8 quantization) of
    // every layer: memory-bound kernels over each token processed.
    let fp8_quant = if fp8 { FP8_QUANT_BYTES } else { 0.0 };
    let per_layer = |moe: bool| {
        elementwise_bytes_per_token(m, t, 1.0, moe, NormKernels::FusedResidual, fp8_quant)
    };
    let elem_per_token = (dense_layers * per_layer(false) + moe_layers * per_layer(true)) / pp;
    let elementwise = |rows: f64| rows * elem_per_token / (hbm * MEMORY_BANDWIDTH_EFFICIENCY);

    // One engine iteration: B requests decode a token each at their mean context, and on
    // average B/output_tokens prompts are prefilled in chunks alongside. The decode rows read
    // the weights; the prompt rows add their compute, their attention, and their share of
    // each all-reduce and element-wise kernel (which run once per iteration over all rows).
    // With pipeline parallelism the B requests form `pp` micro-batches in flight, one per
    // stage: a stage's iteration covers B/pp requests on its layers.
    let micro = (bf / pp).max(1.0);
    let ctx = f64::from(spec.prompt_tokens) + f64::from(spec.output_tokens) / 2.0;
    let kv_read = micro * kv_bytes(ctx) / (hbm * MEMORY_BANDWIDTH_EFFICIENCY);
    let attn_flops = 4.0 * micro * m.span_layers(ctx) * m.decode_attention_width() / t / pp;
    let attn = kv_read.max(attn_flops / (bf16_peak * facts.attention_fwd));
    let p = f64::from(spec.prompt_tokens);
    let prefill_attn_flops = 4.0 * p * m.causal_keys_layers(p) * m.attention_width() / t / pp;
    let prefill_attn = prefill_attn_flops / (bf16_peak * facts.attention_fwd);
    let prefill_flops =
        2.0 * ((m.active_params() - m.embedding_params() - attention_all) / t + attention_rank) * p
            / pp;
    let prompts = micro / f64::from(spec.output_tokens);
    let rows = micro + prompts * p;
    // The busiest stage: the last one also runs the LM head.
    let stage = all_gemms(micro)
        + attn
        + prompts * (prefill_flops / (peak * ceiling) + prefill_attn)
        + allreduce(rows)
        + elementwise(rows)
        + head(micro);

    // Time to first token: one prompt prefilled alone, in chunks of at most the engine's
    // token budget.
    let chunk = p.min(f64::from(MAX_NUM_TOKENS));
    let prefill_stage = (all_gemms(chunk) + allreduce(chunk) + elementwise(chunk)) * (p / chunk)
        + prefill_attn
        + head(1.0);
    // Every request gets a token once all `pp` micro-batches have passed a stage; the host's
    // scheduling of one micro-batch overlaps the other stages' work, so it is paid once.
    let tpot = stage * pp + ITERATION_OVERHEAD_S;
    let tokens_per_s = bf / tpot;
    Ok(InferenceEstimate {
        layout: *l,
        tokens_per_s,
        ttft_s: prefill_stage * pp + ITERATION_OVERHEAD_S,
        tpot_s: tpot,
        max_concurrency,
        concurrency: b,
        weights_per_device_gib: weights / GIB,
        workspace_per_device_gib: workspace / GIB,
        usable_per_device_gib: device / GIB,
        kv_cache_per_device_gib: kv_capacity / GIB,
        kv_cache_per_request_gib: kv_bytes_per_request / GIB,
        kv_bytes_per_token,
        fits,
    })
}
