//! The training software stack: which attention kernel and which overlap a framework gives.
//!
//! The same model on the same hardware runs at different speeds under different frameworks
//! and releases. The default ([`Software::MEGATRON_CORE`]) is a current Megatron-Core/NeMo
//! stack; older stacks are named so that published runs made with them can be compared, and so
//! that a plan can ask "what would this cost with stack X". The profiles are descriptions of
//! the software (which kernel, which overlap), not throughput factors.

use serde::Serialize;

/// How attention is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttentionKernel {
    /// A fused FlashAttention-class CUDA kernel (cuDNN fused attention / FlashAttention-3 on
    /// Hopper and Blackwell, FlashAttention-2 on Ampere): causal blocks skipped, no score matrix
    /// in memory.
    Fused,
    /// FlashAttention written in Triton (MPT/llm-foundry's `attn_impl: triton` in 2023, which
    /// accepts an additive bias; the benchmark runs used learned positions, not ALiBi): fused,
    /// but compiled without Hopper's wgmma/TMA instructions.
    TritonBias,
    /// Scores materialised: QK^T and PV as batched GEMMs over the full (masked) square, and
    /// scale-mask-softmax and dropout as memory-bound kernels over it (Megatron-LM before
    /// FlashAttention, 2020-2022).
    Unfused,
}

/// How a stack moves MoE tokens between expert-parallel ranks (serialised with the names a
/// plan gives: `"all-to-all"`, `"deduplicated"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpertDispatch {
    /// One all-to-all of every (token, expert) pair (NCCL `all_to_all`, Megatron's `alltoall`
    /// dispatcher, torchtitan): a token bound for two experts in another server crosses the
    /// network twice.
    AllToAll,
    /// A token goes once to each member that holds any of its experts, crossing the scale-out
    /// network once per scale-up domain it is bound for and forwarded over the scale-up fabric
    /// there (DeepEP's normal kernels on Hopper and Blackwell servers, HybridEP on NVL72;
    /// Megatron-Core's `flex` dispatcher).
    DomainDeduplicated,
}

impl Serialize for ExpertDispatch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.label())
    }
}

impl ExpertDispatch {
    /// The name a plan gives for this dispatch (also its JSON form).
    pub fn label(self) -> &'static str {
        match self {
            ExpertDispatch::AllToAll => "all-to-all",
            ExpertDispatch::DomainDeduplicated => "deduplicated",
        }
    }

    /// Copies of one token a member receives in all, over `ep` members holding `experts`
    /// evenly, for a token routed to `k` of them: every (token, expert) pair, or one per
    /// member holding any of its experts.
    pub fn copies_delivered(self, k: u32, experts: u32, ep: u32) -> f64 {
        match self {
            ExpertDispatch::AllToAll => f64::from(k),
            ExpertDispatch::DomainDeduplicated => {
                crate::hardware::groups_holding(k, experts, f64::from(ep))
            }
        }
    }

    /// Names a plan or calibration row may use, and the dispatch each means.
    pub const NAMES: [(&'static str, ExpertDispatch); 6] = [
        ("all-to-all", ExpertDispatch::AllToAll),
        ("alltoall", ExpertDispatch::AllToAll),
        ("deduplicated", ExpertDispatch::DomainDeduplicated),
        ("deepep", ExpertDispatch::DomainDeduplicated),
        ("hybridep", ExpertDispatch::DomainDeduplicated),
        ("flex", ExpertDispatch::DomainDeduplicated),
    ];

    pub fn parse(text: &str) -> Option<ExpertDispatch> {
        let text = text.trim();
        Self::NAMES
            .into_iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(text))
            .map(|(_, d)| d)
    }

    /// A stack's dispatch, or the one a plan or row names (`place` prefixes the error, e.g.
    /// `[training]`); only mixture-of-experts models dispatch tokens.
    pub fn choose(
        named: Option<&str>,
        stack: ExpertDispatch,
        moe: bool,
        place: &str,
    ) -> Result<ExpertDispatch, crate::PerfError> {
        let Some(text) = named else {
            return Ok(stack);
        };
        if !moe {
            return Err(crate::PerfError::input(format!(
                "{place} expert_dispatch needs a mixture-of-experts model ([model] experts)"
            )));
        }
        ExpertDispatch::parse(text).ok_or_else(|| {
            crate::PerfError::input(format!(
                "{place} expert_dispatch = {text:?} must be \"all-to-all\" or \"deduplicated\" \
                 (also: alltoall, deepep, hybridep, flex)"
            ))
        })
    }
}

/// How the training loss holds the logits, which sets the last stage's logit memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CrossEntropy {
    /// The BF16 logits are cast to FP32 before the loss (PyTorch's `cross_entropy` under
    /// autocast, torchtitan, Megatron's vocab-parallel loss on `logits.float()`): the FP32
    /// softmax kept for the backward and an FP32 gradient, 8 bytes per logit at the peak.
    Fp32Upcast,
    /// A fused kernel over the BF16 logits (flash-attn's xentropy `CrossEntropyLoss`, the
    /// `fused_crossentropy` loss llm-foundry selects by default): the BF16 logits kept and a
    /// BF16 gradient, 4 bytes per logit; the FP32 arithmetic stays in registers.
    FusedBf16,
    /// Transformer Engine's Triton cross-entropy (Megatron-Core's
    /// `cross_entropy_fusion_impl = "te"`, which Megatron-Bridge's recipes select): the loss and
    /// its gradient are computed in place of the BF16 logits, 2 bytes per logit.
    InPlaceBf16,
}

impl CrossEntropy {
    /// Bytes per logit (token × vocabulary entry) held at the loss's peak.
    pub fn peak_bytes_per_logit(self) -> f64 {
        match self {
            CrossEntropy::Fp32Upcast => 8.0,
            CrossEntropy::FusedBf16 => 4.0,
            CrossEntropy::InPlaceBf16 => 2.0,
        }
    }
}

/// A software stack's relevant behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Software {
    pub name: &'static str,
    pub attention: AttentionKernel,
    /// Data-parallel gradient reduction (and parameter all-gather) overlapped with the backward
    /// (forward) pass, in buckets (Megatron `--overlap-grad-reduce/--overlap-param-gather`,
    /// PyTorch DDP/FSDP). Without it the whole data-parallel collective follows the backward.
    pub dp_overlap: bool,
    /// ZeRO-3 parameter gathers issued per parameter partition and waited for before use (no
    /// prefetch overlap), each going over the device's own NIC rather than NCCL's multi-NIC
    /// rings (DeepSpeed ZeRO-3 as of 2021).
    pub zero3_unoverlapped: bool,
    /// Highest ZeRO stage the stack offers (the search stays within it): Megatron-LM gained
    /// its distributed optimizer (ZeRO-1) in 2022 and FSDP-style sharding later.
    pub max_zero: u8,
    /// MoE token dispatch.
    pub expert_dispatch: ExpertDispatch,
    /// Megatron's sequence parallelism (Korthikanti et al. 2022) is available.
    pub sequence_parallel: bool,
    /// Context parallelism (each sequence split over `cp` ranks, ring attention between them)
    /// is available: Megatron-Core (2024), torchtitan and MaxText; not the Megatron-LM and
    /// DeepSpeed stacks of 2021-2023, nor llm-foundry's MPT training.
    pub context_parallel: bool,
    /// Pipeline sends without sequence parallelism use Megatron-LM's scatter/gather
    /// optimisation (SC'21 §4.1: each tensor-parallel rank sends `1/tp` of the tensor over the
    /// network and the receivers all-gather it over NVLink; Megatron-LM applied it whenever
    /// sequence parallelism was off, until Megatron-Core dropped it).
    pub pipeline_scatter_gather: bool,
    /// How the loss holds the logits.
    pub cross_entropy: CrossEntropy,
}

impl Software {
    /// Current Megatron-Core / NeMo / Megatron-Bridge with Transformer Engine (2024-): fused
    /// attention, DP overlap, the `flex` MoE dispatcher (DeepEP / HybridEP) that the MoE
    /// recipes enable, and Transformer Engine's in-place cross-entropy that Megatron-Bridge's
    /// recipes select. The default.
    pub const MEGATRON_CORE: Software = Software {
        name: "megatron-core",
        attention: AttentionKernel::Fused,
        dp_overlap: true,
        zero3_unoverlapped: false,
        max_zero: 3,
        expert_dispatch: ExpertDispatch::DomainDeduplicated,
        sequence_parallel: true,
        context_parallel: true,
        pipeline_scatter_gather: false,
        cross_entropy: CrossEntropy::InPlaceBf16,
    };
    /// PyTorch FSDP trainers with fused attention (torchtitan, llm-foundry with FlashAttention-2).
    pub const FSDP: Software = Software {
        name: "fsdp",
        attention: AttentionKernel::Fused,
        dp_overlap: true,
        zero3_unoverlapped: false,
        max_zero: 3,
        expert_dispatch: ExpertDispatch::AllToAll,
        sequence_parallel: true,
        context_parallel: true,
        pipeline_scatter_gather: false,
        cross_entropy: CrossEntropy::Fp32Upcast,
    };
    /// llm-foundry / Composer (2023): PyTorch FSDP, MPT's Triton attention, flash-attn's fused
    /// cross-entropy (`loss_fn: fused_crossentropy`, the default of llm-foundry's MPT model).
    pub const LLM_FOUNDRY_2023: Software = Software {
        name: "llm-foundry-2023",
        attention: AttentionKernel::TritonBias,
        dp_overlap: true,
        zero3_unoverlapped: false,
        max_zero: 3,
        expert_dispatch: ExpertDispatch::AllToAll,
        sequence_parallel: true,
        context_parallel: false,
        pipeline_scatter_gather: false,
        cross_entropy: CrossEntropy::FusedBf16,
    };
    /// MaxText on TPU (JAX/XLA): fused (splash) attention, FSDP-style sharding that XLA
    /// overlaps with compute, MoE tokens moved as every (token, expert) pair, and the logits
    /// cast to FP32 before the loss (`cast_logits_to_fp32`, on by default).
    pub const MAXTEXT: Software = Software {
        name: "maxtext",
        expert_dispatch: ExpertDispatch::AllToAll,
        cross_entropy: CrossEntropy::Fp32Upcast,
        ..Software::MEGATRON_CORE
    };
    /// Megatron-LM as of SC'21: before FlashAttention, overlapped gradient reduction and
    /// sequence parallelism (pipeline sends use the scatter/gather optimisation).
    pub const MEGATRON_2021: Software = Software {
        name: "megatron-2021",
        attention: AttentionKernel::Unfused,
        dp_overlap: false,
        zero3_unoverlapped: false,
        max_zero: 0,
        expert_dispatch: ExpertDispatch::AllToAll,
        sequence_parallel: false,
        context_parallel: false,
        pipeline_scatter_gather: true,
        cross_entropy: CrossEntropy::Fp32Upcast,
    };
    /// Megatron-LM 2022-2023 (the selective-recompute paper, MegaScale's baseline): the 2021
    /// kernels with sequence parallelism.
    pub const MEGATRON_2022: Software = Software {
        name: "megatron-2022",
        sequence_parallel: true,
        ..Software::MEGATRON_2021
    };
    /// DeepSpeed ZeRO-3 as benchmarked in 2021 (Megatron SC'21 Table 2): unfused attention,
    /// un-prefetched per-partition parameter gathers.
    pub const DEEPSPEED_2021: Software = Software {
        name: "deepspeed-2021",
        attention: AttentionKernel::Unfused,
        dp_overlap: false,
        zero3_unoverlapped: true,
        max_zero: 3,
        expert_dispatch: ExpertDispatch::AllToAll,
        sequence_parallel: false,
        context_parallel: false,
        pipeline_scatter_gather: false,
        cross_entropy: CrossEntropy::Fp32Upcast,
    };

    pub const ALL: [Software; 7] = [
        Software::MEGATRON_CORE,
        Software::FSDP,
        Software::LLM_FOUNDRY_2023,
        Software::MAXTEXT,
        Software::MEGATRON_2021,
        Software::MEGATRON_2022,
        Software::DEEPSPEED_2021,
    ];

    /// A stack named at `place` (`[training] software`, a CSV row), or an error listing the
    /// known names.
    pub fn named(name: &str, place: &str) -> Result<Software, crate::PerfError> {
        Software::by_name(name).ok_or_else(|| {
            crate::PerfError::input(format!(
                "{place} software = {name:?} is not a known stack (known: {})",
                Software::names().join(", ")
            ))
        })
    }

    /// A stack by name.
    pub fn by_name(name: &str) -> Option<Software> {
        Software::ALL
            .into_iter()
            .find(|s| s.name.eq_ignore_ascii_case(name.trim()))
    }

    pub fn names() -> Vec<&'static str> {
        Software::ALL.iter().map(|s| s.name).collect()
    }
}

impl Default for Software {
    fn default() -> Self {
        Software::MEGATRON_CORE
    }
}
