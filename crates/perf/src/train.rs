//! Training step time, MFU and memory for one model, hardware and layout.
//!
//! The step is built from the work itself (docs/perf-model.md has the derivation):
//! 1. every GEMM of a layer's forward and backward pass (and the recomputed forward) is costed
//!    by a roofline whose compute ceiling depends on the GEMM's shape (tile and wave
//!    quantization, pipeline prologue/epilogue);
//! 2. fused attention, element-wise and normalization kernels, and the optimizer, are costed by
//!    their FLOPs or bytes;
//! 3. collectives are costed on the fabric they cross (tensor parallel inside the scale-up
//!    domain, data parallel and pipeline sends over the scale-out network unless the group fits
//!    in one domain, expert all-to-all where its group lands), with the overlap frameworks get;
//! 4. the 1F1B (optionally interleaved) pipeline adds its bubble.

use serde::Serialize;

use crate::PerfError;
use crate::hardware::{
    COLLECTIVE_LATENCY_SCALE_OUT_S, Collective, GIB, Hardware, KernelFacts,
    MEMORY_BANDWIDTH_EFFICIENCY, TRITON_ATTENTION_BWD, TRITON_ATTENTION_FWD, kernel_facts,
};
use crate::layout::{Layout, Recompute, RecomputeModules};
use crate::model::{ModelSpec, TpSplit};
use crate::software::{AttentionKernel, ExpertDispatch, Software};

/// Bytes of one BF16 element.
const BF16: f64 = 2.0;

/// Bytes of one FP32 element (split-K partial sums).
const FP32: f64 = 4.0;

/// Backward element-wise kernels move about twice the bytes of the forward ones (they read the
/// saved input and the incoming gradient and write the outgoing gradient).
pub const BACKWARD_ELEMENTWISE_FACTOR: f64 = 2.0;

/// Backward GEMM FLOPs per forward FLOP: the data gradient and the weight gradient.
pub const BACKWARD_GEMM_FACTOR: f64 = 2.0;

/// FlashAttention's backward pass runs five matrix products against the forward's two
/// (it recomputes the scores), so 2.5 times the forward FLOPs.
pub const ATTENTION_BACKWARD_FACTOR: f64 = 2.5;

/// Bytes an FP8 cast-and-transpose moves per element: reads 2 B, writes an FP8 copy and its
/// transpose (Transformer Engine's `cast_transpose`).
pub const FP8_CAST_BYTES: f64 = 4.0;

/// Bytes moved per attention score by the unfused softmax path, forward: scale-mask-softmax
/// reads and writes the 2-byte score (4 B); dropout reads and writes it and writes a 1-byte mask
/// (5 B).
pub const UNFUSED_SOFTMAX_BYTES_PER_SCORE: f64 = 9.0;

/// Bytes the Adam step moves per parameter it updates: reads the FP32 master weight, gradient
/// and both moments (16 B), writes weight and moments (12 B) and the BF16 copy (2 B).
pub const OPTIMIZER_BYTES_PER_PARAM: f64 = 30.0;

/// Bytes per parameter of the gradient that data-parallel ranks reduce. Megatron-LM/NeMo keep
/// and reduce FP32 main gradients with the distributed optimizer (`accumulate_allreduce_grads_in_fp32`
/// is forced for BF16); PyTorch FSDP mixed precision (ZeRO-2/3 here) reduces in BF16.
pub fn grad_reduce_bytes(zero: u8) -> f64 {
    if zero >= 2 { 2.0 } else { 4.0 }
}

/// Per-step latency of an NCCL ring (LL128/simple protocols): about 1 µs between GPUs on one
/// NVLink fabric and about 5 µs across an InfiniBand/RoCE hop; a ring collective over n ranks
/// takes n-1 steps (all-gather and reduce-scatter have no tree algorithm before NCCL 2.23).
pub const RING_STEP_LATENCY_SCALE_UP_S: f64 = 1e-6;
pub const RING_STEP_LATENCY_SCALE_OUT_S: f64 = 5e-6;

/// Fixed host-side cost of one optimizer step, seconds: the global gradient-norm all-reduce and
/// the host synchronisation gradient clipping and loss logging need, the optimizer's kernel
/// launches over every parameter group, learning-rate scheduling and the data loader hand-off.
/// Profiles of PyTorch training loops show tens of milliseconds.
pub const STEP_OVERHEAD_S: f64 = 0.05;

/// Parameters per data-parallel gradient bucket (Megatron-LM's default bucket of 40M).
pub const DP_BUCKET_PARAMS: f64 = 40e6;

/// Compute slows while a collective runs beside it: NCCL kernels occupy SMs (8-32 of them)
/// and HBM bandwidth. Added as this fraction of the overlapped communication time.
pub const OVERLAP_INTERFERENCE: f64 = 0.1;

/// Training settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TrainingSpec {
    /// Sequences per optimizer step.
    pub global_batch: u32,
    /// FP8 GEMMs (any recipe) instead of BF16.
    pub fp8: bool,
    /// Total tokens to train on, for days-to-train and cost.
    pub tokens: Option<f64>,
    /// The framework's kernels and overlap.
    pub software: Software,
    /// MoE token capacity per expert as a multiple of the balanced load, for stacks that drop
    /// and pad (GShard/Switch, MaxText's "dropped" MoE, Megatron's
    /// `--moe-expert-capacity-factor` with `--moe-pad-expert-input-to-capacity`): every slot of
    /// every expert is computed and dispatched, filled or not. `None`: dropless with a balanced
    /// load, each expert computing exactly its tokens.
    pub capacity_factor: Option<f64>,
    /// What a selective recompute repeats (Megatron-Core's `recompute_modules`); empty: the
    /// classic set of [`Recompute::Selective`].
    #[serde(skip_serializing_if = "RecomputeModules::is_empty")]
    pub recompute_modules: RecomputeModules,
}

impl TrainingSpec {
    /// Slots each expert computes per balanced share of tokens: the capacity factor, or 1 for
    /// a dropless stack.
    pub fn expert_capacity(&self) -> f64 {
        self.capacity_factor.unwrap_or(1.0)
    }
}

/// Checks a `capacity_factor` given in `place` (the plan's `[training]` table or a CSV row):
/// only for MoE models, at least 1 (a factor below 1 drops tokens that the model FLOPs still
/// count) and at most 64.
pub fn check_capacity_factor(
    value: Option<f64>,
    m: &ModelSpec,
    place: &str,
) -> Result<Option<f64>, PerfError> {
    match value {
        None => Ok(None),
        Some(cf) if cf.is_finite() && (1.0..=64.0).contains(&cf) => {
            if m.moe.is_none() {
                return Err(PerfError::input(format!(
                    "{place} capacity_factor needs a mixture-of-experts model ([model] experts)"
                )));
            }
            Ok(Some(cf))
        }
        Some(cf) => Err(PerfError::input(format!(
            "{place} capacity_factor = {} must be a number from 1 to 64 (below 1 the stack \
             drops tokens that the model FLOPs still count)",
            crate::number_in_words(cf)
        ))),
    }
}

/// Checks `[parallelism] recompute_modules` (or a CSV row's column, named by `place`) against
/// the model and the recompute mode: the modules refine a selective recompute, so a mode of
/// none or full is a contradiction, and each module must exist in the model.
pub fn check_recompute_modules(
    modules: RecomputeModules,
    recompute: Option<Recompute>,
    m: &ModelSpec,
    place: &str,
) -> Result<RecomputeModules, PerfError> {
    if modules.is_empty() {
        return Ok(modules);
    }
    if let Some(mode @ (Recompute::None | Recompute::Full)) = recompute {
        return Err(PerfError::input(format!(
            "{place} recompute_modules refine a selective recompute, but recompute = \"{}\"",
            mode.as_str()
        )));
    }
    let shared = m.moe.as_ref().map_or(0, |x| x.shared_experts);
    for (module, needs, what) in [
        (
            RecomputeModules::MLP,
            m.dense_layers() > 0,
            "dense layers (every layer of this model is MoE: the module for those is moe)",
        ),
        (
            RecomputeModules::MLA_UP_PROJ,
            m.mla.is_some(),
            "multi-head latent attention ([model] kv_lora_rank)",
        ),
        (
            RecomputeModules::MOE,
            m.moe.is_some(),
            "a mixture-of-experts model ([model] experts)",
        ),
        (
            RecomputeModules::MOE_ACT,
            m.moe.is_some(),
            "a mixture-of-experts model ([model] experts)",
        ),
        (
            RecomputeModules::SHARED_EXPERTS,
            shared > 0,
            "shared experts ([model] shared_experts)",
        ),
    ] {
        if modules.contains(module) && !needs {
            let name = RecomputeModules::NAMED
                .iter()
                .find(|(x, _)| *x == module)
                .map_or("", |&(_, n)| n);
            return Err(PerfError::input(format!(
                "{place} recompute module {name} needs {what}"
            )));
        }
    }
    Ok(modules)
}

/// Seconds per step by kind. `*_exposed` parts add to the step; `overlapped_s` is
/// communication hidden under compute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Breakdown {
    /// GEMMs, attention, element-wise and recompute work of all micro-batches (incl. interference).
    pub compute_s: f64,
    pub tp_comm_s: f64,
    pub cp_comm_s: f64,
    pub ep_comm_s: f64,
    pub pp_comm_s: f64,
    /// Data-parallel (and FSDP/ZeRO) communication, total.
    pub dp_comm_s: f64,
    /// The part of `dp_comm_s` (and of CP) not hidden under compute.
    pub dp_comm_exposed_s: f64,
    pub pipeline_bubble_s: f64,
    pub optimizer_s: f64,
    /// The fixed host-side cost of a step ([`STEP_OVERHEAD_S`]). The step time is `compute_s +
    /// exposed_comm_s + pipeline_bubble_s + optimizer_s + step_overhead_s`.
    pub step_overhead_s: f64,
    /// All communication that adds to the step.
    pub exposed_comm_s: f64,
    /// All communication hidden under compute.
    pub overlapped_comm_s: f64,
}

/// Memory per device (the busiest pipeline stage), GiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Memory {
    pub weights_gib: f64,
    pub gradients_gib: f64,
    pub optimizer_gib: f64,
    pub activations_gib: f64,
    pub total_gib: f64,
    /// What the device can give the job.
    pub capacity_gib: f64,
}

/// The prediction for one layout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainingEstimate {
    pub layout: Layout,
    /// What the selective recompute of `layout` repeats (Megatron-Core's modules), when not the
    /// classic set; empty for other modes.
    #[serde(skip_serializing_if = "RecomputeModules::is_empty")]
    pub recompute_modules: RecomputeModules,
    pub step_time_s: f64,
    /// Global training tokens per second.
    pub tokens_per_s: f64,
    pub mfu: f64,
    pub hfu: f64,
    pub model_tflops_per_device: f64,
    pub memory_per_device_gib: f64,
    pub fits: bool,
    pub memory: Memory,
    pub breakdown: Breakdown,
}

impl TrainingEstimate {
    /// The layout in one line: `tp8 pp2 dp4 cp1 ep1 mb1 v1 none zero1 sp`.
    pub fn layout_label(&self) -> String {
        let l = &self.layout;
        format!(
            "tp{} pp{} dp{} cp{} ep{}{} mb{} v{} {} zero{}{}",
            l.tp,
            l.pp,
            l.dp,
            l.cp,
            l.ep,
            l.etp_label(),
            l.microbatch,
            l.virtual_stages,
            l.recompute.label(self.recompute_modules),
            l.zero,
            if l.sequence_parallel { " sp" } else { "" }
        )
    }
}

/// Elements the FFN activation kernel touches per token on one device (gated: reads gate and
/// up, writes their product; plain: reads and writes the intermediate), routed and shared
/// experts included.
pub(crate) fn ffn_activation_elements(m: &ModelSpec, t: f64, moe: bool) -> f64 {
    let per_matrix = m.ffn_matrices();
    match (&m.moe, moe) {
        (Some(spec), true) => {
            let k = f64::from(spec.experts_per_token);
            let shared = f64::from(spec.shared_experts);
            per_matrix * (k + shared) * f64::from(spec.expert_ffn_hidden) / t
        }
        _ => per_matrix * f64::from(m.ffn_hidden) / t,
    }
}

/// How the residual adds and norms of a layer run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NormKernels {
    /// Separate kernels (training frameworks): two norms (read+write h each) and two residual
    /// adds (read 2h, write h each): 20h elements per token.
    Separate,
    /// Residual add fused into the norm (inference engines: TensorRT-LLM's fused
    /// residual+RMSNorm, vLLM's `fused_add_rms_norm`): each of the two reads the input and the
    /// residual and writes the new residual and the normalised output: 8h elements.
    FusedResidual,
}

/// Bytes the memory-bound kernels of one layer's forward pass move per token on one device:
/// residual adds and norms (see [`NormKernels`]), rotary embedding and the QKV split over q and
/// k (read+write), the FFN activation, MoE token permutation (read+write each copy, both ways),
/// and `fp8_cast` bytes per element for casting each GEMM input to FP8 (0 when the GEMMs run in
/// BF16). `sp` is the sequence-parallel split of the norm/residual region.
pub(crate) fn elementwise_bytes_per_token(
    m: &ModelSpec,
    t: f64,
    sp: f64,
    moe: bool,
    norms: NormKernels,
    fp8_cast: f64,
) -> f64 {
    let h = f64::from(m.hidden);
    let (q_width, k_width, _) = m.qkv_widths();
    let norm_elems = match norms {
        NormKernels::Separate => 20.0 * h,
        NormKernels::FusedResidual => 8.0 * h,
    };
    let mut elem = norm_elems * BF16 / sp + 2.0 * (q_width + k_width) * BF16 / t;
    elem += ffn_activation_elements(m, t, moe) * BF16;
    let routed = if moe { m.moe.as_ref() } else { None };
    if let Some(spec) = routed {
        elem += 4.0 * f64::from(spec.experts_per_token) * h * BF16 / t;
    }
    // FP8: the inputs of the QKV and FFN-up GEMMs (the full hidden, split by sequence
    // parallelism), of the output projection (this rank's heads), of the dense FFN-down, and
    // with MLA of the up projections (the query and key/value latents).
    let dense_down = if routed.is_some() {
        0.0
    } else {
        f64::from(m.ffn_hidden) / t
    };
    let attn_out = m.attention_output_width();
    let latents = m
        .mla
        .as_ref()
        .map_or(0.0, |a| f64::from(a.q_lora_rank + a.kv_lora_rank));
    elem + fp8_cast * (2.0 * h / sp + attn_out / t + latents + dense_down)
}

/// The narrowest output tile a skinny GEMM is padded to: 16 rows, the M of the tensor cores'
/// `mma` instruction (swapped-operand Hopper kernels go to 8; GEMV kernels pad nothing).
pub const MIN_TILE_ROWS: f64 = 16.0;

/// What a GEMM runs against: the peak and achievable fraction for its precision, the kernel
/// facts of the device, its memory bandwidth and the input element size.
#[derive(Debug, Clone, Copy)]
pub struct GemmDevice {
    pub peak_flops: f64,
    pub ceiling: f64,
    pub facts: KernelFacts,
    pub hbm_bytes_per_s: f64,
    pub elem_bytes: f64,
}

impl GemmDevice {
    /// Time of one GEMM `[m×k]·[k×n]`, seconds: a roofline whose compute ceiling is the
    /// large-GEMM fraction times wave quantization (tiles over SMs), edge-tile waste and the
    /// per-tile pipeline fill/epilogue (`k/(k+k_overhead)`); the memory side moves both inputs
    /// and the BF16 output once.
    ///
    /// A GEMM with fewer output tiles than SMs (the skinny GEMMs of decoding, small experts)
    /// is split along `k` the way cuBLAS split-K and CUTLASS stream-K kernels do: each of the
    /// `split` slices is its own CTA with its own pipeline fill (a slice shallower than
    /// `k_overhead` pays for it in `k/(k+k_overhead)`), and the FP32 partial sums are written
    /// and read back once. The library's heuristic picks the split; the cheapest of the
    /// power-of-two splits that still fit in one wave stands for it.
    pub fn time(&self, m: f64, n: f64, k: f64) -> f64 {
        self.batched_time(1.0, m, n, k)
    }

    /// Time of `batch` independent GEMMs of one shape run as one batched kernel (the per-head
    /// score and context products of unfused attention, an MoE layer's local experts): their
    /// tiles share the waves. The library runs them one by one instead when that is faster
    /// (each then split along `k` on its own).
    pub fn batched_time(&self, batch: f64, m: f64, n: f64, k: f64) -> f64 {
        if batch <= 0.0 || m <= 0.0 || n <= 0.0 || k <= 0.0 {
            return 0.0;
        }
        let grouped = self.grouped_time(batch, m, n, k);
        let f = &self.facts;
        let single_tiles = (m / self.tile_rows(m)).ceil() * (n / f64::from(f.tile_n)).ceil();
        // Only a GEMM too small to fill the SMs alone (so it would split along `k`) can run
        // faster on its own than in the group.
        if batch > 1.0 && single_tiles < f64::from(f.sms) {
            grouped.min(batch * self.grouped_time(1.0, m, n, k))
        } else {
            grouped
        }
    }

    /// Rows of the output tile a library kernel uses for `m` rows: its large tile, or for fewer
    /// rows the narrow tile of the skinny-GEMM kernels (decode, small experts: GEMV-style and
    /// swapped-operand kernels), the next power of two down to [`MIN_TILE_ROWS`], so one token's
    /// row does not pay for 128.
    fn tile_rows(&self, m: f64) -> f64 {
        let large = f64::from(self.facts.tile_m);
        if m >= large {
            large
        } else {
            m.max(MIN_TILE_ROWS).log2().ceil().exp2().min(large)
        }
    }

    fn grouped_time(&self, batch: f64, m: f64, n: f64, k: f64) -> f64 {
        let f = &self.facts;
        let flops = 2.0 * batch * m * n * k;
        let (tm, tn) = (self.tile_rows(m), f64::from(f.tile_n));
        let tiles = batch * (m / tm).ceil() * (n / tn).ceil();
        let sms = f64::from(f.sms);
        // Partial tiles at the edges do full-tile work.
        let tile_eff = batch * (m * n) / (tiles * tm * tn);
        let bytes = batch * (self.elem_bytes * (m * k + k * n) + BF16 * m * n);
        let compute = |split: f64| -> f64 {
            let ctas = tiles * split;
            let waves = (ctas / sms).ceil();
            let wave_eff = ctas / (waves * sms);
            let k_slice = k / split;
            let k_eff = k_slice / (k_slice + f.k_overhead);
            let eff = self.ceiling * wave_eff * tile_eff * k_eff;
            flops / (self.peak_flops * eff)
        };
        let memory = |split: f64| -> f64 {
            let partials = if split > 1.0 {
                2.0 * FP32 * split * batch * m * n
            } else {
                0.0
            };
            (bytes + partials) / (self.hbm_bytes_per_s * MEMORY_BANDWIDTH_EFFICIENCY)
        };
        let (unsplit_compute, unsplit_memory) = (compute(1.0), memory(1.0));
        if unsplit_compute <= unsplit_memory {
            // Already on the memory roof: splitting only adds partial-sum traffic.
            return unsplit_memory;
        }
        let mut best = unsplit_compute;
        let mut split = 2.0;
        // Slices shallower than one 32-deep MMA step are not worth a CTA.
        while tiles * split <= sms && k / split >= 32.0 {
            best = best.min(compute(split).max(memory(split)));
            split *= 2.0;
        }
        best
    }
}

/// Per-device costs of one layer (or the LM head) for one micro-batch.
#[derive(Debug, Clone, Copy, Default)]
struct LayerCost {
    /// Forward compute (GEMMs + attention + element-wise), s.
    fwd: f64,
    /// Backward compute, s.
    bwd: f64,
    /// Extra forward work when recomputing, s.
    recompute: f64,
    /// Tensor-parallel communication, s (forward + backward + recompute).
    tp_comm: f64,
    /// Context-parallel KV exchange, s.
    cp_comm: f64,
    /// Expert all-to-all, s.
    ep_comm: f64,
    /// Fused-attention kernel time (forward + backward), s: what context-parallel exchange hides under.
    attn: f64,
}

struct Ctx<'a> {
    software: Software,
    m: &'a ModelSpec,
    hw: &'a Hardware,
    l: &'a Layout,
    facts: KernelFacts,
    fp8: bool,
    bf16_peak: f64,
    gemm_peak: f64,
    gemm_ceiling: f64,
    hbm: f64,
    /// [`TrainingSpec::expert_capacity`].
    expert_capacity: f64,
    /// [`TrainingSpec::recompute_modules`] when the layout's recompute is selective, else empty.
    recompute_modules: RecomputeModules,
}

impl Ctx<'_> {
    fn gemm(&self, m: f64, n: f64, k: f64) -> f64 {
        self.batched_gemm(1.0, m, n, k)
    }

    /// `batch` GEMMs of one shape in the step's precision as one grouped kernel.
    fn batched_gemm(&self, batch: f64, m: f64, n: f64, k: f64) -> f64 {
        GemmDevice {
            peak_flops: self.gemm_peak,
            ceiling: self.gemm_ceiling,
            facts: self.facts,
            hbm_bytes_per_s: self.hbm,
            elem_bytes: if self.fp8 { 1.0 } else { BF16 },
        }
        .batched_time(batch, m, n, k)
    }

    fn gemm_bf16(&self, m: f64, n: f64, k: f64) -> f64 {
        self.batched_gemm_bf16(1.0, m, n, k)
    }

    /// `batch` BF16 GEMMs of one shape in one batched kernel.
    fn batched_gemm_bf16(&self, batch: f64, m: f64, n: f64, k: f64) -> f64 {
        GemmDevice {
            peak_flops: self.bf16_peak,
            ceiling: self.facts.gemm_bf16,
            facts: self.facts,
            hbm_bytes_per_s: self.hbm,
            elem_bytes: BF16,
        }
        .batched_time(batch, m, n, k)
    }

    fn stream(&self, bytes: f64) -> f64 {
        bytes / (self.hbm * MEMORY_BANDWIDTH_EFFICIENCY)
    }

    /// Tokens of one micro-batch on this device's context-parallel shard.
    fn tokens(&self) -> f64 {
        f64::from(self.l.microbatch) * f64::from(self.m.seq_len) / f64::from(self.l.cp)
    }

    /// `kinds` reduce-scatter or all-gather passes of `bytes` over the tensor-parallel group
    /// (an all-reduce is two).
    fn tp_coll(&self, bytes: f64, kinds: f64) -> f64 {
        kinds
            * self
                .hw
                .nccl_time(Collective::ReduceScatter, bytes, self.l.tp)
    }

    /// Core attention of one layer for one micro-batch: (forward compute, backward compute,
    /// forward memory-bound time of a materialised score matrix).
    fn attention(&self, tok: f64) -> (f64, f64, f64) {
        let m = self.m;
        let t = f64::from(self.l.tp);
        let s_full = f64::from(m.seq_len);
        let f = &self.facts;
        match self.software.attention {
            AttentionKernel::Fused | AttentionKernel::TritonBias => {
                // Causal: each query sees on average half the sequence plus the partly masked
                // diagonal block of 128, or its window (the mean over the model's layers).
                let keys = m.causal_keys_layers(s_full) / f64::from(m.layers);
                let flops = 4.0 * tok * keys * m.attention_width() / t;
                let (ef, eb) = if self.software.attention == AttentionKernel::Fused {
                    (f.attention_fwd, f.attention_bwd)
                } else {
                    (
                        TRITON_ATTENTION_FWD * f.legacy_mma,
                        TRITON_ATTENTION_BWD * f.legacy_mma,
                    )
                };
                (
                    flops / (self.bf16_peak * ef),
                    ATTENTION_BACKWARD_FACTOR * flops / (self.bf16_peak * eb),
                    0.0,
                )
            }
            AttentionKernel::Unfused => {
                // Per head and sequence: scores = Q·K^T over the full square (masking does not
                // skip work), then P·V, each a batched GEMM over all heads and sequences; the
                // backward runs two GEMMs for each.
                let (d_qk, d_v) = (f64::from(m.qk_head_dim()), f64::from(m.v_head_dim()));
                let heads = f64::from(m.heads) / t;
                let seqs = tok / s_full.max(1.0);
                let s_q = tok / seqs.max(1e-9);
                let batch = seqs * heads;
                let qk = self.batched_gemm_bf16(batch, s_q, s_full, d_qk);
                let pv = self.batched_gemm_bf16(batch, s_q, d_v, s_full);
                let g = qk + pv;
                // Scale-mask-softmax (read and write 2 B) and dropout (read and write 2 B, 1 B
                // mask) over every score.
                let scores = seqs * heads * s_q * s_full;
                let mem = self.stream(scores * UNFUSED_SOFTMAX_BYTES_PER_SCORE);
                (g, BACKWARD_GEMM_FACTOR * g, mem)
            }
        }
    }

    /// Cost of one transformer layer for one micro-batch; `moe` picks the FFN kind.
    fn layer(&self, moe: bool) -> LayerCost {
        let m = self.m;
        let l = self.l;
        let t = f64::from(l.tp);
        let tok = self.tokens();
        let h = f64::from(m.hidden);
        let (_, k_width, v_width) = m.qkv_widths();
        let f = f64::from(m.ffn_hidden);
        let sp = if l.sequence_parallel { t } else { 1.0 };

        // Attention projections. Replicated ones (MLA's down projections) run on this rank's
        // sequence shard when sequence parallelism splits the tokens.
        // MLA's up projections (column-split, from a latent narrower than the hidden size) are
        // what `mla_up_proj` recomputes.
        let mut g_mla_up = 0.0;
        let mut g_fwd: f64 = m
            .attention_projections()
            .map(|(out, input, split)| {
                let (n, k) = split.per_rank(out, input, t);
                let rows = if split == TpSplit::Replicated {
                    tok / sp
                } else {
                    tok
                };
                let g = self.gemm(rows, n, k);
                if m.is_mla_up_projection(input, split) {
                    g_mla_up += g;
                }
                g
            })
            .sum();
        let (attn_fwd, attn_bwd, attn_mem_fwd) = self.attention(tok);

        let mut ep_comm = 0.0;
        let n_mats = m.ffn_matrices();
        // Forward GEMM time of the FFN parts a module-level recompute may repeat.
        let (mut g_experts, mut g_shared, mut g_router, mut g_dense) = (0.0, 0.0, 0.0, 0.0);
        if moe {
            let moe_spec = m.moe.as_ref().expect("moe layer of a moe model");
            let k = f64::from(moe_spec.experts_per_token);
            let e = f64::from(moe_spec.experts);
            let fe = f64::from(moe_spec.expert_ffn_hidden);
            let ep = f64::from(l.ep);
            let shared = f64::from(moe_spec.shared_experts);
            let etp = f64::from(l.etp);
            // Routed experts: each rank dispatches its tok/tp sequence-parallel tokens; an
            // expert's GEMM rows are the tokens routed to it from the ep·etp ranks of its group
            // (ep·etp·tok/tp·k/E), split etp ways along the FFN width. The local experts run
            // as one grouped GEMM.
            let capacity = self.expert_capacity;
            let rows = (tok / t * k * ep * etp / e * capacity).max(1.0);
            let local_experts = (e / ep).max(1.0);
            g_experts = self.batched_gemm(local_experts, rows, (n_mats - 1.0) * fe / etp, h)
                + self.batched_gemm(local_experts, rows, h, fe / etp);
            if shared > 0.0 {
                g_shared = self.gemm(tok, (n_mats - 1.0) * shared * fe / t, h)
                    + self.gemm(tok, h, shared * fe / t);
            }
            // Router.
            g_router = self.gemm(tok, e, h) / t;
            g_fwd += g_experts + g_shared + g_router;
            // Dispatch + combine all-to-all, forward, over ep ranks etp apart (Megatron-Core
            // orders expert ranks etp first, then ep).
            // This rank's tokens (its sequence-parallel shard), once each.
            let token_bytes = tok / t * capacity * h * BF16;
            if l.ep > 1 {
                ep_comm = 2.0
                    * match self.software.expert_dispatch {
                        ExpertDispatch::AllToAll => {
                            self.hw.all_to_all_time(token_bytes * k, l.ep, l.etp)
                        }
                        ExpertDispatch::DomainDeduplicated => self.hw.dispatch_deduplicated_time(
                            token_bytes,
                            moe_spec.experts_per_token,
                            moe_spec.experts,
                            l.ep,
                            l.etp,
                        ),
                    };
            }
            // Expert tensor parallelism: the dispatched tokens are all-gathered over the etp
            // ranks of an expert and its output reduce-scattered back; a deduplicating
            // dispatcher delivers each token once per member holding any of its experts.
            if l.etp > 1 {
                let copies = self.software.expert_dispatch.copies_delivered(
                    moe_spec.experts_per_token,
                    moe_spec.experts,
                    l.ep,
                );
                let gathered = token_bytes * etp * copies;
                ep_comm += 2.0 * self.hw.nccl_time(Collective::AllGather, gathered, l.etp);
            }
        } else {
            g_dense = self.gemm(tok, (n_mats - 1.0) * f / t, h) + self.gemm(tok, h, f / t);
            g_fwd += g_dense;
        }
        let fp8_cast = if self.fp8 { FP8_CAST_BYTES } else { 0.0 };
        let elem = elementwise_bytes_per_token(m, t, sp, moe, NormKernels::Separate, fp8_cast);
        let ffn_elems = ffn_activation_elements(m, t, moe);
        let elem_fwd = self.stream(tok * elem);
        let fwd = g_fwd + attn_fwd + attn_mem_fwd + elem_fwd;
        let bwd = BACKWARD_GEMM_FACTOR * g_fwd
            + attn_bwd
            + BACKWARD_ELEMENTWISE_FACTOR * (elem_fwd + attn_mem_fwd);
        // Empty unless the layout's selective recompute is module-level.
        let modules = self.recompute_modules;
        let by_module = !modules.is_empty();
        let recompute_moe = by_module && moe && modules.contains(RecomputeModules::MOE);
        // A recomputed FFN over the tensor-parallel group (a dense MLP, shared experts) repeats
        // its gather and reduce-scatter; recomputed MLA up projections re-gather their latents.
        let recompute_ffn_over_tp = by_module
            && if moe {
                m.moe.as_ref().is_some_and(|x| x.shared_experts > 0)
                    && (modules.contains(RecomputeModules::MOE)
                        || modules.contains(RecomputeModules::SHARED_EXPERTS))
            } else {
                modules.contains(RecomputeModules::MLP)
            };
        let recompute_latents = by_module && modules.contains(RecomputeModules::MLA_UP_PROJ);
        let recompute = match l.recompute {
            Recompute::None => 0.0,
            Recompute::Selective if modules.is_empty() => {
                attn_fwd + attn_mem_fwd + self.stream(tok * ffn_elems * BF16)
            }
            Recompute::Selective => {
                let (q_width, k_width, _) = m.qkv_widths();
                let routed_per_token = m.moe.as_ref().map_or(0.0, |x| {
                    n_mats * f64::from(x.experts_per_token) * f64::from(x.expert_ffn_hidden) / t
                });
                let shared_elems = ffn_elems - routed_per_token;
                // A dropping stack also runs the activation over its empty slots.
                let routed_elems = routed_per_token * self.expert_capacity;
                let mut r = 0.0;
                if modules.contains(RecomputeModules::CORE_ATTN) {
                    r += attn_fwd + attn_mem_fwd;
                }
                if modules.contains(RecomputeModules::LAYERNORM) {
                    // Two norms, each reading and writing the hidden state.
                    r += self.stream(tok * 4.0 * h * BF16 / sp);
                }
                if modules.contains(RecomputeModules::MLA_UP_PROJ) {
                    // The up projections and the rotary embedding of q and k.
                    r += g_mla_up + self.stream(tok * 2.0 * (q_width + k_width) * BF16 / t);
                }
                if recompute_moe {
                    // Router, dispatch (its all-to-all is counted in the passes below),
                    // permutation, every expert and the combine.
                    let permute = m
                        .moe
                        .as_ref()
                        .map_or(0.0, |x| 4.0 * f64::from(x.experts_per_token) * h * BF16 / t);
                    r += g_experts
                        + g_shared
                        + g_router
                        + self.stream(tok * (ffn_elems * BF16 + permute));
                } else if moe {
                    if modules.contains(RecomputeModules::MOE_ACT) {
                        r += self.stream(tok * routed_elems * BF16);
                    }
                    if modules.contains(RecomputeModules::SHARED_EXPERTS) {
                        r += g_shared + self.stream(tok * shared_elems * BF16);
                    }
                }
                if !moe && modules.contains(RecomputeModules::MLP) {
                    r += g_dense + self.stream(tok * ffn_elems * BF16);
                }
                r
            }
            Recompute::Full => fwd,
        };
        // Tensor parallel: two all-reduces (or all-gather + reduce-scatter pairs with SP) in the
        // forward, two in the backward, two more for a full recompute.
        let passes = if l.recompute == Recompute::Full {
            3.0
        } else {
            2.0
        };
        // The expert all-to-all runs once more when the MoE layer is recomputed.
        let ep_passes = if recompute_moe { 3.0 } else { passes };
        let act = tok * h * BF16;
        // An MoE layer's routed experts leave the tensor-parallel group (their collectives
        // are the dispatch above); a shared expert is a dense FFN over it.
        let ffn_over_tp = !moe || m.moe.as_ref().is_some_and(|x| x.shared_experts > 0);
        let tp_kinds = if ffn_over_tp { 2.0 * 2.0 } else { 2.0 };
        let mut tp_comm = self.tp_coll(act, tp_kinds * passes);
        if recompute_ffn_over_tp {
            tp_comm += self.tp_coll(act, 2.0);
        }
        // MLA with sequence parallelism: the down projections' latents (query, key/value and
        // rotary key) are gathered for the up projections, and their gradients reduce-scattered.
        if let (Some(a), true) = (&m.mla, l.sequence_parallel && l.tp > 1) {
            let latent = f64::from(a.q_lora_rank + a.kv_lora_rank + a.qk_rope_head_dim);
            let latent_passes = if recompute_latents {
                passes + 1.0
            } else {
                passes
            };
            tp_comm += self.tp_coll(tok * latent * BF16, latent_passes);
        }
        // Context parallel: ring exchange of K and V, forward, and of K, V and their gradients
        // in the backward; overlapped with the attention blocks it feeds.
        let cp_comm = if l.cp > 1 {
            let c = f64::from(l.cp);
            let kv_bytes = tok * (k_width + v_width) * BF16 / t;
            let bw = self.hw.group_bw(l.cp, l.tp);
            (passes + 1.0) * (c - 1.0) * kv_bytes / bw
        } else {
            0.0
        };
        LayerCost {
            fwd,
            bwd,
            recompute,
            tp_comm,
            cp_comm,
            ep_comm: ep_comm * ep_passes,
            attn: attn_fwd + attn_bwd + (1.0 + BACKWARD_ELEMENTWISE_FACTOR) * attn_mem_fwd,
        }
    }

    /// LM head, loss and embedding for one micro-batch on the last stage (BF16 GEMM: frameworks
    /// keep the output layer out of FP8).
    fn head(&self) -> LayerCost {
        let t = f64::from(self.l.tp);
        let tok = self.tokens();
        let h = f64::from(self.m.hidden);
        let v = f64::from(self.m.vocab);
        let g = self.gemm_bf16(tok, v / t, h);
        // Logits in FP32: written, read by the softmax-cross-entropy, gradient written and read.
        let loss = self.stream(tok * v / t * 4.0 * 4.0);
        LayerCost {
            fwd: g + loss / 2.0,
            bwd: BACKWARD_GEMM_FACTOR * g + loss / 2.0,
            recompute: 0.0,
            tp_comm: self.tp_coll(tok * h * BF16, 2.0),
            cp_comm: 0.0,
            ep_comm: 0.0,
            attn: 0.0,
        }
    }
}

/// Parameters one device stores on the busiest pipeline stage, before ZeRO sharding:
/// (dense and attention weights, expert weights).
fn stage_params(m: &ModelSpec, l: &Layout) -> (f64, f64) {
    let t = f64::from(l.tp);
    let pp = f64::from(l.pp);
    let layers = f64::from(m.layers) / pp;
    let dense_frac = f64::from(m.dense_layers()) / f64::from(m.layers);
    let moe_frac = 1.0 - dense_frac;
    let mut dense = layers
        * (m.attention_params_per_rank(t) + dense_frac * m.dense_ffn_params() / t)
        + layers * moe_frac * m.router_params();
    if let Some(moe) = &m.moe {
        dense += layers * moe_frac * f64::from(moe.shared_experts) * m.expert_params() / t;
    }
    let experts = m.moe.as_ref().map_or(0.0, |moe| {
        layers * moe_frac * f64::from(moe.experts) / f64::from(l.ep) * m.expert_params()
            / f64::from(l.etp)
    });
    // Embedding on the first stage, LM head on the last (both when pp = 1).
    let emb = if l.pp == 1 { 2.0 } else { 1.0 } * m.embedding_params() / t;
    (dense + emb, experts)
}

/// Activation bytes one layer keeps per micro-batch on one device.
fn layer_activation_bytes(
    m: &ModelSpec,
    l: &Layout,
    tokens: f64,
    recompute: Recompute,
    modules: RecomputeModules,
    capacity: f64,
) -> f64 {
    let t = f64::from(l.tp);
    let sp = if l.sequence_parallel { t } else { 1.0 };
    let h = f64::from(m.hidden);
    let (q_width, k_width, v_width) = m.qkv_widths();
    let qkv = q_width + k_width + v_width;
    let attn_out = m.attention_output_width();
    let moe_frac = f64::from(m.moe_layers()) / f64::from(m.layers);
    let ffn_width = match &m.moe {
        Some(moe) => {
            (1.0 - moe_frac) * f64::from(m.ffn_hidden)
                + moe_frac
                    * (f64::from(moe.experts_per_token) * capacity + f64::from(moe.shared_experts))
                    * f64::from(moe.expert_ffn_hidden)
        }
        None => f64::from(m.ffn_hidden),
    };
    let ffn_act = if m.gated_ffn { 6.0 } else { 4.0 } * ffn_width;
    // The routed experts' input, kept for their weight gradient: each dispatched copy of a
    // token (k per token, × capacity), gathered over the expert's etp ranks.
    let expert_input = m.moe.as_ref().map_or(0.0, |moe| {
        moe_frac * f64::from(moe.experts_per_token) * capacity * h * BF16 * f64::from(l.etp) / t
    });
    match recompute {
        Recompute::Full => tokens * h * BF16 / sp,
        // Norm inputs/outputs and FFN input (4 h-wide tensors), Q, K, V, attention output, the
        // FFN intermediate tensors (BF16). Selective drops the norm outputs and the activation
        // function output (about a third of `ffn_act`), recomputed in the backward.
        Recompute::None => {
            tokens * (8.0 * h / sp + (2.0 * qkv + 2.0 * attn_out + ffn_act) / t + expert_input)
        }
        // Megatron-Core's modules: each drops what its checkpointing discards (core attention
        // keeps its Q, K, V inputs and the output the projection needs, so it frees only the
        // softmax statistics, which are not counted).
        Recompute::Selective if !modules.is_empty() => {
            let act_per_width = if m.gated_ffn { 6.0 } else { 4.0 };
            // Share of an FFN's saved bytes that is the activation function's output.
            let act_out_share = 2.0 / act_per_width;
            let (routed_act, shared_act) = m.moe.as_ref().map_or((0.0, 0.0), |moe| {
                let fe = f64::from(moe.expert_ffn_hidden);
                (
                    moe_frac * act_per_width * f64::from(moe.experts_per_token) * capacity * fe,
                    moe_frac * act_per_width * f64::from(moe.shared_experts) * fe,
                )
            });
            let dense_act = ffn_act - routed_act - shared_act;
            let mut bytes =
                8.0 * h / sp + (2.0 * qkv + 2.0 * attn_out + ffn_act) / t + expert_input;
            if modules.contains(RecomputeModules::LAYERNORM) {
                bytes -= 4.0 * h / sp;
            }
            if modules.contains(RecomputeModules::MLA_UP_PROJ) {
                bytes -= 2.0 * qkv / t;
            }
            if modules.contains(RecomputeModules::MLP) {
                bytes -= dense_act / t;
            }
            if modules.contains(RecomputeModules::MOE) {
                bytes -= (routed_act + shared_act) / t + expert_input;
            } else {
                if modules.contains(RecomputeModules::MOE_ACT) {
                    bytes -= act_out_share * routed_act / t;
                }
                if modules.contains(RecomputeModules::SHARED_EXPERTS) {
                    bytes -= shared_act / t;
                }
            }
            tokens * bytes
        }
        Recompute::Selective => {
            tokens
                * (4.0 * h / sp
                    + (2.0 * qkv + 2.0 * attn_out + ffn_act * 2.0 / 3.0) / t
                    + expert_input)
        }
    }
}

/// Forward FLOPs per token that a module-level selective recompute repeats (for the HFU).
/// A dropping stack's padded expert slots are counted with the other padding, not here.
fn recomputed_module_flops_per_token(m: &ModelSpec, modules: RecomputeModules) -> f64 {
    let mut flops = 0.0;
    if modules.contains(RecomputeModules::CORE_ATTN) {
        flops += m.attention_forward_flops_per_token();
    }
    if modules.contains(RecomputeModules::MLA_UP_PROJ) {
        let up: f64 = m
            .attention_projections()
            .filter(|&(_, input, split)| m.is_mla_up_projection(input, split))
            .map(|(out, input, _)| out * input)
            .sum();
        flops += 2.0 * up * f64::from(m.layers);
    }
    if modules.contains(RecomputeModules::MLP) {
        flops += 2.0 * m.dense_ffn_params() * f64::from(m.dense_layers());
    }
    if let Some(moe) = &m.moe {
        let moe_layers = f64::from(m.moe_layers());
        let shared = f64::from(moe.shared_experts) * m.expert_params();
        if modules.contains(RecomputeModules::MOE) {
            let routed = f64::from(moe.experts_per_token) * m.expert_params();
            flops += 2.0 * (routed + shared + m.router_params()) * moe_layers;
        } else if modules.contains(RecomputeModules::SHARED_EXPERTS) {
            flops += 2.0 * shared * moe_layers;
        }
    }
    flops
}

/// Memory per device on the busiest stage.
pub fn memory(m: &ModelSpec, hw: &Hardware, l: &Layout, spec: &TrainingSpec) -> Memory {
    let (dense, experts) = stage_params(m, l);
    let params = dense + experts;
    let dp = f64::from(l.dp * l.cp);
    // Expert weights are replicated over tp·dp·cp/(ep·etp) ranks only.
    let edp = l.expert_data_parallel();
    let shard = |x: f64, y: f64| dense / x + experts / y;
    let weight_bytes = if spec.fp8 { BF16 + 1.0 } else { BF16 };
    let weights = if l.zero >= 3 {
        // Sharded, plus two gathered layers in flight (prefetch).
        shard(dp, edp) * weight_bytes
            + 2.0 * params / f64::from(m.layers).max(1.0) * f64::from(l.pp) * weight_bytes
    } else {
        params * weight_bytes
    };
    let grad_bytes = grad_reduce_bytes(l.zero);
    let grads = if l.zero >= 2 {
        shard(dp, edp) * grad_bytes
    } else {
        params * grad_bytes
    };
    let opt = if l.zero >= 1 {
        shard(dp, edp) * 12.0
    } else {
        params * 12.0
    };
    let tokens = f64::from(l.microbatch) * f64::from(m.seq_len) / f64::from(l.cp);
    let layers_stage = (f64::from(m.layers) / f64::from(l.pp)).ceil();
    let capacity = spec.expert_capacity();
    let modules = l.recompute.modules(spec.recompute_modules);
    let per_layer = layer_activation_bytes(m, l, tokens, l.recompute, modules, capacity);
    let pp = f64::from(l.pp);
    let v = f64::from(l.virtual_stages);
    let microbatches = f64::from(l.microbatches(spec.global_batch));
    // Micro-batches whose activations a stage holds, in units of the stage's layers: 1F1B
    // (warm-up of pp-1-r forward passes on rank r) keeps pp in flight on the first stage and
    // one on the last; interleaving (v chunks per rank, warm-up of 2(pp-1-r) + (v-1)pp chunks)
    // gives the first rank pp + (pp-1)/v and the last pp - (pp-1)/v. Never more than the
    // step's micro-batches.
    let cap = microbatches.max(1.0);
    let (first_in_flight, last_in_flight) = if l.pp == 1 {
        (1.0, 1.0)
    } else if l.virtual_stages == 1 {
        (pp.min(cap), 1.0)
    } else {
        let spread = (pp - 1.0) / v;
        ((pp + spread).min(cap), (pp - spread).min(cap))
    };
    // One layer's full activations while it is recomputed.
    let recompute_layer = match l.recompute {
        Recompute::Full => layer_activation_bytes(m, l, tokens, Recompute::None, modules, capacity),
        // What the modules discarded comes back one layer at a time in the backward.
        Recompute::Selective if !modules.is_empty() => {
            layer_activation_bytes(m, l, tokens, Recompute::None, modules, capacity) - per_layer
        }
        _ => 0.0,
    };
    // The logits and their gradient on the last stage, as the stack's loss holds them.
    let logits = tokens * f64::from(m.vocab) / f64::from(l.tp)
        * spec.software.cross_entropy.peak_bytes_per_logit();
    // The busiest stage: the first (most micro-batches in flight) or the last (the logits).
    let acts = recompute_layer
        + (per_layer * layers_stage * first_in_flight)
            .max(per_layer * layers_stage * last_in_flight + logits);
    let total = weights + grads + opt + acts;
    Memory {
        weights_gib: weights / GIB,
        gradients_gib: grads / GIB,
        optimizer_gib: opt / GIB,
        activations_gib: acts / GIB,
        total_gib: total / GIB,
        capacity_gib: hw.usable_memory_bytes() / GIB,
    }
}

/// Predicts one training step. The layout must already be checked ([`Layout::check`]).
pub fn estimate(m: &ModelSpec, hw: &Hardware, l: &Layout, spec: &TrainingSpec) -> TrainingEstimate {
    let a = hw.accelerator;
    let facts = kernel_facts(a);
    let fp8 = spec.fp8 && a.fp8_tflops.is_some();
    let bf16_peak = a.bf16_tflops * 1e12;
    let (gemm_peak, gemm_ceiling) = if fp8 {
        (a.fp8_tflops.unwrap_or(a.bf16_tflops) * 1e12, facts.gemm_fp8)
    } else {
        (bf16_peak, facts.gemm_bf16)
    };
    let ctx = Ctx {
        software: spec.software,
        m,
        hw,
        l,
        facts,
        fp8,
        bf16_peak,
        gemm_peak,
        gemm_ceiling,
        hbm: hw.hbm_bytes_per_s(),
        expert_capacity: spec.expert_capacity(),
        recompute_modules: l.recompute.modules(spec.recompute_modules),
    };
    let dense = ctx.layer(false);
    let moe = if m.moe.is_some() {
        ctx.layer(true)
    } else {
        dense
    };
    let head = ctx.head();
    let layers = f64::from(m.layers);
    let moe_frac = f64::from(m.moe_layers()) / layers;
    let mix = |f: fn(&LayerCost) -> f64| (1.0 - moe_frac) * f(&dense) + moe_frac * f(&moe);
    let layer_compute = mix(|c| c.fwd + c.bwd + c.recompute);
    let layer_tp = mix(|c| c.tp_comm);
    let layer_cp = mix(|c| c.cp_comm);
    let layer_ep = mix(|c| c.ep_comm);
    let head_compute = head.fwd + head.bwd;

    // Busiest stage: balanced split with the head counted (in layers of forward and backward
    // work: how the split is balanced does not depend on what the backward recomputes), but
    // never below the stage that gets ceil(L/pp) layers, nor below the last stage's head (it
    // is not split across stages: with a layer or two per stage, a head larger than a layer
    // sets the pace).
    let pp = f64::from(l.pp);
    let layer_work = mix(|c| c.fwd + c.bwd);
    let head_layers = head_compute / layer_work.max(1e-12);
    let stage_layers = if l.pp == 1 {
        layers
    } else {
        (layers / pp)
            .ceil()
            .max((layers + head_layers) / pp)
            .max(head_layers)
    };
    let head_share = if l.pp == 1 { 1.0 } else { 0.0 };
    let tokens_mb = ctx.tokens();
    let h = f64::from(m.hidden);

    let compute_mb = stage_layers * layer_compute + head_share * head_compute;
    let tp_mb = stage_layers * layer_tp + head.tp_comm;
    let ep_mb = stage_layers * layer_ep;
    let cp_total_mb = stage_layers * layer_cp;
    // CP exchange hides under attention; only the excess shows.
    let attn_time_mb = stage_layers * mix(|c| c.attn);
    let cp_exposed_mb = (cp_total_mb - attn_time_mb).max(0.0);
    // Pipeline sends: one activation tensor forward and one gradient backward per model chunk.
    let v = f64::from(l.virtual_stages);
    let pp_mb = if l.pp > 1 {
        let sp = if l.sequence_parallel {
            f64::from(l.tp)
        } else {
            1.0
        };
        // Neighbouring stages sit tp·cp·dp ranks apart; the pipeline runs at the pace of its
        // slowest hop, which leaves the scale-up domain (over each rank's own NIC) as soon as
        // the stages do not all fit in one.
        let stride = l.tp * l.cp * l.dp;
        let bw = if l.pp.saturating_mul(stride) <= hw.scale_up_domain {
            hw.group_bw(2, stride)
        } else {
            hw.scale_out_gb_s * 1e9 * hw.network_efficiency
        };
        if spec.software.pipeline_scatter_gather && !l.sequence_parallel && l.tp > 1 {
            // Scatter/gather: 1/tp of the tensor per rank over the network, then an
            // all-gather inside the tensor-parallel group.
            let full = tokens_mb * h * BF16;
            let t = f64::from(l.tp);
            2.0 * v
                * (full / t / bw
                    + COLLECTIVE_LATENCY_SCALE_OUT_S
                    + hw.nccl_time(Collective::AllGather, full, l.tp))
        } else {
            let bytes = tokens_mb * h * BF16 / sp;
            2.0 * v * (bytes / bw + COLLECTIVE_LATENCY_SCALE_OUT_S)
        }
    } else {
        0.0
    };
    let stage_mb = compute_mb + tp_mb + ep_mb + cp_exposed_mb + pp_mb;
    let microbatches = f64::from(l.microbatches(spec.global_batch));
    let bubble = (pp - 1.0) / v * stage_mb;

    // Data-parallel communication.
    let (dense_p, expert_p) = stage_params(m, l);
    let dp = l.dp * l.cp;
    let dpf = f64::from(dp);
    let edp = l.expert_data_parallel();
    let dp_span = l.tp * l.cp * l.dp;
    let zero3_flat = l.zero == 3 && spec.software.zero3_unoverlapped;
    let bw_dp = if zero3_flat && dp_span > hw.scale_up_domain {
        // Per-partition gathers over the device's own NIC (no multi-NIC rings).
        hw.scale_out_gb_s * 1e9 * hw.network_efficiency
    } else {
        hw.group_bw(l.dp * l.cp, l.tp)
    };
    // Replicas of an expert sit ep·etp ranks apart.
    let bw_edp = hw.group_bw(edp as u32, l.ep.saturating_mul(l.etp));
    let ring = |n: f64| if n > 1.0 { (n - 1.0) / n } else { 0.0 };
    // One pass (all-gather or reduce-scatter) of `bytes_per_param` over all stage parameters.
    // Ring latency: n-1 sequential steps, each as slow as its slowest hop.
    let hop = if dp_span <= hw.scale_up_domain {
        RING_STEP_LATENCY_SCALE_UP_S
    } else {
        RING_STEP_LATENCY_SCALE_OUT_S
    };
    // Collectives per pass: one per layer for FSDP/ZeRO-2/3 (each layer's parameters), one per
    // gradient bucket otherwise.
    let collectives = if l.zero >= 2 {
        stage_layers.max(1.0)
    } else {
        ((dense_p + expert_p) / DP_BUCKET_PARAMS).ceil().max(1.0)
    };
    let pass = |bytes_per_param: f64| {
        ring(dpf) * dense_p * bytes_per_param / bw_dp
            + ring(edp) * expert_p * bytes_per_param / bw_edp
            + if dp > 1 {
                collectives * (dpf - 1.0) * hop
            } else {
                0.0
            }
    };
    let gb = grad_reduce_bytes(l.zero);
    let (dp_total, dp_exposed) = match l.zero {
        3 => {
            // FSDP: gather for forward, gather again for backward (the recompute reuses it),
            // reduce-scatter gradients, every micro-batch; prefetched one layer ahead.
            let per_mb = 2.0 * pass(BF16) + pass(gb);
            let exposed_mb = if zero3_flat {
                // Prefetch hides the forward gathers under the forward pass; the backward's
                // gathers and gradient reduce-scatters sit on the critical path.
                let fwd_mb = stage_layers * mix(|c| c.fwd) + head_share * head.fwd;
                per_mb - pass(BF16).min(fwd_mb)
            } else {
                (per_mb - compute_mb).max(0.0) + per_mb / (3.0 * stage_layers.max(1.0))
            };
            (per_mb * microbatches, exposed_mb.min(per_mb) * microbatches)
        }
        2 => {
            let per_mb = pass(BF16) + pass(gb);
            // A stack without overlapped gradient reduction (`dp_overlap`) waits for it all.
            let exposed_mb = if spec.software.dp_overlap {
                (per_mb - compute_mb).max(0.0) + per_mb / (2.0 * stage_layers.max(1.0))
            } else {
                per_mb
            };
            (per_mb * microbatches, exposed_mb.min(per_mb) * microbatches)
        }
        z => {
            // Gradient reduce-scatter (all-reduce without ZeRO) in buckets under the last
            // micro-batch's backward; parameter all-gather under the first forward.
            let rs = if z == 1 { pass(gb) } else { 2.0 * pass(gb) };
            let ag = if z == 1 { pass(BF16) } else { 0.0 };
            let bwd_window = stage_layers * (mix(|c| c.bwd + c.recompute));
            let fwd_window = stage_layers * mix(|c| c.fwd);
            let tail = (rs + ag) / stage_layers.max(1.0);
            let exposed = if spec.software.dp_overlap {
                (rs - bwd_window).max(0.0) + (ag - fwd_window).max(0.0) + tail
            } else {
                rs + ag
            };
            (rs + ag, exposed.min(rs + ag))
        }
    };
    let overlapped_dp = dp_total - dp_exposed;
    let cp_overlapped = (cp_total_mb - cp_exposed_mb) * microbatches;
    let interference = OVERLAP_INTERFERENCE * (overlapped_dp + cp_overlapped);

    // Optimizer step over this device's shard.
    let opt_params = if l.zero >= 1 {
        dense_p / dpf + expert_p / edp
    } else {
        dense_p + expert_p
    };
    let optimizer = ctx.stream(opt_params * OPTIMIZER_BYTES_PER_PARAM);

    let step =
        microbatches * stage_mb + bubble + dp_exposed + interference + optimizer + STEP_OVERHEAD_S;
    let tokens_step = f64::from(spec.global_batch) * f64::from(m.seq_len);
    let tokens_per_s = tokens_step / step;
    let count = f64::from(hw.count);
    let model_flops = m.model_flops_per_token() * tokens_per_s;
    let modules = ctx.recompute_modules;
    let recompute_flops_per_token = match l.recompute {
        Recompute::None => 0.0,
        Recompute::Selective if !modules.is_empty() => {
            recomputed_module_flops_per_token(m, modules)
        }
        Recompute::Selective => m.attention_forward_flops_per_token(),
        Recompute::Full => {
            2.0 * (m.active_params() - m.embedding_params()) + m.attention_forward_flops_per_token()
        }
    };
    // A dropping stack also computes its empty capacity slots: (factor − 1) of the routed
    // experts' work, forward and backward, and the forward again under full recompute.
    let routed = m.moe.as_ref().map_or(0.0, |moe| {
        f64::from(m.moe_layers()) * f64::from(moe.experts_per_token) * m.expert_params()
    });
    let passes = if l.recompute == Recompute::Full || modules.contains(RecomputeModules::MOE) {
        8.0
    } else {
        6.0
    };
    let padded_flops_per_token = (spec.expert_capacity() - 1.0).max(0.0) * passes * routed;
    let hw_flops =
        model_flops + (recompute_flops_per_token + padded_flops_per_token) * tokens_per_s;
    let peak = bf16_peak * count;
    let mem = memory(m, hw, l, spec);
    let fits = mem.total_gib <= mem.capacity_gib;
    let compute_s = microbatches * compute_mb + interference;
    let tp_s = microbatches * tp_mb;
    let ep_s = microbatches * ep_mb;
    let pp_s = microbatches * pp_mb;
    let cp_s = microbatches * cp_total_mb;
    let breakdown = Breakdown {
        compute_s,
        tp_comm_s: tp_s,
        cp_comm_s: cp_s,
        ep_comm_s: ep_s,
        pp_comm_s: pp_s,
        dp_comm_s: dp_total,
        dp_comm_exposed_s: dp_exposed,
        pipeline_bubble_s: bubble,
        optimizer_s: optimizer,
        step_overhead_s: STEP_OVERHEAD_S,
        exposed_comm_s: tp_s + ep_s + pp_s + microbatches * cp_exposed_mb + dp_exposed,
        overlapped_comm_s: overlapped_dp + cp_overlapped,
    };
    TrainingEstimate {
        layout: *l,
        recompute_modules: modules,
        step_time_s: step,
        tokens_per_s,
        mfu: model_flops / peak,
        hfu: hw_flops / peak,
        model_tflops_per_device: model_flops / count / 1e12,
        memory_per_device_gib: mem.total_gib,
        fits,
        memory: mem,
        breakdown,
    }
}
