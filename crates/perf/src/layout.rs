//! A parallel layout: how one training job is split over its devices.

use serde::Serialize;

use crate::PerfError;

/// Activation recomputation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Recompute {
    /// Keep every activation.
    None,
    /// Recompute the cheap, memory-hungry parts (core attention, activation function, norms).
    Selective,
    /// Keep only each layer's input; recompute the whole forward in the backward pass.
    Full,
}

impl Recompute {
    pub fn as_str(self) -> &'static str {
        match self {
            Recompute::None => "none",
            Recompute::Selective => "selective",
            Recompute::Full => "full",
        }
    }

    pub fn parse(text: &str) -> Option<Recompute> {
        match text.trim().to_ascii_lowercase().as_str() {
            "none" | "no" | "off" => Some(Recompute::None),
            "selective" => Some(Recompute::Selective),
            "full" => Some(Recompute::Full),
            _ => None,
        }
    }

    pub const ALL: [Recompute; 3] = [Recompute::None, Recompute::Selective, Recompute::Full];

    /// The modules this mode repeats by name: the given ones for a selective recompute, none
    /// for the other modes (full recompute repeats everything, not modules).
    pub fn modules(self, given: RecomputeModules) -> RecomputeModules {
        if self == Recompute::Selective {
            given
        } else {
            RecomputeModules::default()
        }
    }

    /// The mode as a layout label shows it: a selective recompute names its modules when they
    /// were given (`selective[mla_up_proj+mlp]`).
    pub fn label(self, modules: RecomputeModules) -> String {
        match self {
            Recompute::Selective => format!("selective{}", modules.label()),
            other => other.as_str().to_string(),
        }
    }
}

/// The submodules a selective recompute repeats, as Megatron-Core names them
/// (`--recompute-modules`, `TransformerConfig.recompute_modules`). Empty: the classic selective
/// recompute of [`Recompute::Selective`] (core attention, the norms and the activation function).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RecomputeModules(u8);

impl RecomputeModules {
    /// Core attention (normal checkpointing: Q, K, V stay; the softmax state is recomputed).
    pub const CORE_ATTN: Self = Self(1);
    /// The two norms' outputs (output-discarding).
    pub const LAYERNORM: Self = Self(1 << 1);
    /// The routed experts' activation function output (output-discarding).
    pub const MOE_ACT: Self = Self(1 << 2);
    /// Multi-head latent attention's up projections and rotary embedding (output-discarding).
    pub const MLA_UP_PROJ: Self = Self(1 << 3);
    /// The dense layers' FFN (normal checkpointing).
    pub const MLP: Self = Self(1 << 4);
    /// The whole MoE layer: router, dispatch, experts, combine (normal checkpointing).
    pub const MOE: Self = Self(1 << 5);
    /// The shared experts (normal checkpointing).
    pub const SHARED_EXPERTS: Self = Self(1 << 6);

    /// Every module with its Megatron-Core name, in Megatron's documentation order.
    pub const NAMED: [(Self, &'static str); 7] = [
        (Self::CORE_ATTN, "core_attn"),
        (Self::MOE_ACT, "moe_act"),
        (Self::LAYERNORM, "layernorm"),
        (Self::MLA_UP_PROJ, "mla_up_proj"),
        (Self::MLP, "mlp"),
        (Self::MOE, "moe"),
        (Self::SHARED_EXPERTS, "shared_experts"),
    ];

    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, module: Self) -> bool {
        self.0 & module.0 == module.0 && module.0 != 0
    }

    pub fn with(self, module: Self) -> Self {
        Self(self.0 | module.0)
    }

    /// The module names, in [`Self::NAMED`] order.
    pub fn names(self) -> Vec<&'static str> {
        Self::NAMED
            .iter()
            .filter(|(m, _)| self.contains(*m))
            .map(|&(_, name)| name)
            .collect()
    }

    /// Parses module names (`place` names the key or column in errors); an empty list is an
    /// error, since Megatron then recomputes nothing and plain `recompute = "none"` says that.
    pub fn parse<'a>(
        names: impl IntoIterator<Item = &'a str>,
        place: &str,
    ) -> Result<Self, PerfError> {
        let mut set = Self::default();
        for name in names {
            let key = name.trim().to_ascii_lowercase();
            let Some(&(module, _)) = Self::NAMED.iter().find(|(_, n)| *n == key) else {
                let known: Vec<&str> = Self::NAMED.iter().map(|&(_, n)| n).collect();
                return Err(PerfError::input(format!(
                    "{place}: unknown recompute module {name:?}; the modules are {}",
                    known.join(", ")
                )));
            };
            set = set.with(module);
        }
        if set.is_empty() {
            return Err(PerfError::input(format!(
                "{place} lists no module (recompute = \"none\" recomputes nothing)"
            )));
        }
        Ok(set)
    }

    /// Parses a CSV cell: names separated by spaces, commas, `+`, `;` or `|`, optionally in
    /// brackets and quotes as Megatron prints the list (`[mla_up_proj, mlp]`).
    pub fn parse_cell(cell: &str, place: &str) -> Result<Self, PerfError> {
        Self::parse(
            cell.split([' ', '\t', ',', '+', ';', '|', '[', ']', '"', '\''])
                .filter(|s| !s.trim().is_empty()),
            place,
        )
    }

    /// The label part a layout shows for these modules: `[core_attn+mla_up_proj]`, or nothing.
    pub fn label(self) -> String {
        if self.is_empty() {
            String::new()
        } else {
            format!("[{}]", self.names().join("+"))
        }
    }
}

impl Serialize for RecomputeModules {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.names())
    }
}

/// A complete layout. `tp·pp·dp·cp` is the device count. A mixture-of-experts layer maps the
/// same `tp·dp·cp` ranks of a pipeline stage differently (Megatron-Core's MoE parallel folding):
/// each expert is split `etp` ways and the experts `ep` ways, so `ep·etp` divides `tp·dp·cp`.
/// Without folding `etp = tp` and `ep` divides `dp·cp`; `etp = 1` keeps experts whole and lets
/// the expert-parallel group take in the tensor-parallel ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Layout {
    pub tp: u32,
    pub pp: u32,
    pub dp: u32,
    pub cp: u32,
    pub ep: u32,
    /// Expert tensor parallelism: ways each expert's FFN is split (`expert_tensor_parallel_size`);
    /// a divisor of `tp`, equal to `tp` for dense models.
    pub etp: u32,
    /// Sequences per micro-batch.
    pub microbatch: u32,
    /// Interleaved-pipeline model chunks per pipeline rank (1 = plain 1F1B).
    pub virtual_stages: u32,
    pub recompute: Recompute,
    pub sequence_parallel: bool,
    /// Training-state sharding over data-parallel ranks: 0 none, 1 optimizer states, 2 plus
    /// gradients, 3 plus parameters (FSDP).
    pub zero: u8,
}

impl Layout {
    /// Devices the layout uses.
    pub fn devices(&self) -> u64 {
        u64::from(self.tp) * u64::from(self.pp) * u64::from(self.dp) * u64::from(self.cp)
    }

    /// ` etpN` when the experts are not split like the dense layers, else nothing: the part of a
    /// layout's label that only folded MoE layouts need.
    pub fn etp_label(&self) -> String {
        if self.etp == self.tp {
            String::new()
        } else {
            format!(" etp{}", self.etp)
        }
    }

    /// Data-parallel replicas of each expert: `tp·dp·cp / (ep·etp)`.
    pub fn expert_data_parallel(&self) -> f64 {
        let ranks = f64::from(self.tp) * f64::from(self.dp) * f64::from(self.cp);
        (ranks / (f64::from(self.ep) * f64::from(self.etp)).max(1.0)).max(1.0)
    }

    /// Micro-batches per step on the busiest data-parallel rank for a global batch (sequences).
    pub fn microbatches(&self, global_batch: u32) -> u32 {
        let per_step = u64::from(self.dp) * u64::from(self.microbatch);
        u32::try_from(u64::from(global_batch).div_ceil(per_step.max(1)))
            .unwrap_or(u32::MAX)
            .max(1)
    }

    /// Checks the layout against a device count, global batch and layer count.
    pub fn check(&self, count: u32, global_batch: u32, layers: u32) -> Result<(), PerfError> {
        crate::search::LayoutConstraint::from(self).check_degrees()?;
        if self.devices() != u64::from(count) {
            return Err(PerfError::input(format!(
                "[parallelism] tp·pp·dp·cp = {}·{}·{}·{} = {} is not the device count {count}",
                self.tp,
                self.pp,
                self.dp,
                self.cp,
                self.devices()
            )));
        }
        if self.zero > 3 {
            return Err(PerfError::input(format!(
                "[parallelism] zero = {} must be 0, 1, 2 or 3",
                self.zero
            )));
        }
        // Megatron-Core can give the embedding and the loss a pipeline chunk each
        // (`--account-for-embedding-in-pipeline-split`, `--account-for-loss-in-pipeline-split`
        // or a `--pipeline-model-parallel-layout`), so a layout may have two chunks more than
        // the model has layers.
        let chunks_max = u64::from(layers) + 2;
        if u64::from(self.pp) > chunks_max {
            return Err(PerfError::input(format!(
                "[parallelism] pp = {} exceeds layers + 2 = {chunks_max} (a stage per layer, \
                 plus one each for the embedding and the loss)",
                self.pp
            )));
        }
        if self.pp == 1 && self.virtual_stages > 1 {
            return Err(PerfError::input(format!(
                "[parallelism] virtual_stages = {} needs pipeline parallelism (pp > 1)",
                self.virtual_stages
            )));
        }
        let stages = u64::from(self.pp) * u64::from(self.virtual_stages);
        if stages > chunks_max {
            return Err(PerfError::input(format!(
                "[parallelism] pp·virtual_stages = {stages} exceeds layers + 2 = {chunks_max} \
                 (a chunk per layer, plus one each for the embedding and the loss)"
            )));
        }
        let per_step = u64::from(self.dp) * u64::from(self.microbatch);
        if u64::from(global_batch) < per_step {
            return Err(PerfError::input(format!(
                "[training] global_batch = {global_batch} is smaller than dp·microbatch = {per_step}"
            )));
        }
        // Every framework splits the global batch evenly: each data-parallel rank runs the same
        // number of whole micro-batches (Megatron and DeepSpeed refuse anything else).
        if u64::from(global_batch) % per_step != 0 {
            return Err(PerfError::input(format!(
                "[training] global_batch = {global_batch} is not a multiple of dp·microbatch = \
                 {}·{} = {per_step}: every data-parallel rank runs the same whole micro-batches",
                self.dp, self.microbatch
            )));
        }
        if !self.tp.is_multiple_of(self.etp) {
            return Err(PerfError::input(format!(
                "[parallelism] etp = {} does not divide tp = {}",
                self.etp, self.tp
            )));
        }
        let dp_cp = u64::from(self.dp) * u64::from(self.cp);
        let ranks = u64::from(self.tp) * dp_cp;
        if self.etp == self.tp && dp_cp % u64::from(self.ep) != 0 {
            // Folding helps only when the expert group fits the tensor-parallel ranks too.
            let hint = if self.tp > 1 && ranks % u64::from(self.ep) == 0 {
                " (with etp = tp; etp = 1 folds the tensor-parallel ranks into the \
                 expert-parallel group)"
            } else {
                ""
            };
            return Err(PerfError::input(format!(
                "[parallelism] ep = {} does not divide dp·cp = {dp_cp}{hint}",
                self.ep
            )));
        }
        let expert_ranks = u64::from(self.ep) * u64::from(self.etp);
        if ranks % expert_ranks != 0 {
            return Err(PerfError::input(format!(
                "[parallelism] ep·etp = {}·{} = {expert_ranks} does not divide tp·dp·cp = {ranks}",
                self.ep, self.etp
            )));
        }
        Ok(())
    }
}
