//! `switchyard plan`: the plan file (TOML) and the report.
//!
//! ```toml
//! [model]        # name, layers, hidden, heads, kv_heads?, head_dim?, ffn_hidden?, gated_ffn?, vocab, seq_len,
//!                # experts?, experts_per_token?, expert_ffn_hidden?, shared_experts?, moe_layers?
//!                # MLA: kv_lora_rank?, qk_nope_head_dim?, qk_rope_head_dim?, v_head_dim?,
//!                # q_lora_rank?; sliding_window?, window_layers?
//!                # (or preset = "llama3-405b" and overrides)
//! [training]     # global_batch, precision = "bf16" | "fp8", tokens?, software?, capacity_factor?,
//!                # expert_dispatch? = "all-to-all" | "deduplicated"
//! [hardware]     # accelerator, count, per_node?; or cluster = "name" (with --fleet FILE)
//! [parallelism]  # optional: tp, pp, dp?, cp?, ep?, etp?, microbatch?, virtual_stages?,
//!                # recompute?, recompute_modules?, sequence_parallel?, zero?,
//!                # allow_tp_beyond_scale_up?
//! [inference]    # instead of [training]: precision, prompt_tokens, output_tokens,
//!                # concurrency = N | "max"
//! ```
//! Absent `[parallelism]` keys are chosen by the layout search.

use serde::{Deserialize, Serialize};
use switchyard_core::accelerator;
use switchyard_core::fleet::Fleet;

use crate::PerfError;
use crate::hardware::Hardware;
use crate::infer::{
    Concurrency, InferenceEstimate, InferenceLayout, InferenceSpec, estimate_inference,
};
use crate::layout::{Recompute, RecomputeModules};
use crate::model::{ModelFields, ModelSpec};
use crate::search::{LayoutConstraint, SearchOptions, search};
use crate::software::Software;
use crate::train::{TrainingEstimate, TrainingSpec};

/// Storage bandwidth one node writes a checkpoint at, GB/s: a parallel file system or object
/// store gives each client node a few GB/s (Llama 3 paper §3.3.4: checkpoints written from
/// every GPU in parallel to Tectonic; Lustre/GPFS clients reach 2-10 GB/s per node).
pub const CHECKPOINT_WRITE_GB_S_PER_NODE: f64 = 4.0;

/// The fastest aggregate checkpoint write a published training run reports, GB/s: Meta's
/// Tectonic sustained about 2 TB/s for Llama 3's 16,384 GPUs (Llama 3 paper §3.3.4). Where the
/// nodes' own rate adds up to more and the cluster states no storage rate, the plan says so.
pub const PUBLISHED_CHECKPOINT_WRITE_GB_S: f64 = 2000.0;

/// Checkpoint bytes per parameter: BF16 weights plus FP32 master weights and two Adam moments.
pub const CHECKPOINT_BYTES_PER_PARAM: f64 = 14.0;

/// Time to get a job running again after a failure (detect, replace the node, restart every
/// rank, reload the checkpoint), hours. Meta and MegaScale report tens of minutes at scale.
pub const RESTART_HOURS: f64 = 0.25;

/// Node mean time between failures when the hardware names no fleet cluster, hours: the Llama 3
/// paper (Table 5) reports 419 unexpected interruptions in 54 days on 16,384 H100 in 2,048 nodes,
/// i.e. 2,048 × 54 × 24 / 419 ≈ 6,335 node-hours per interruption
/// (data/calibration reliability rows; published_reliability.csv in the shared set).
pub const DEFAULT_NODE_MTBF_HOURS: f64 = 6335.0;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainingFields {
    #[serde(default, deserialize_with = "crate::some_count")]
    global_batch: Option<u32>,
    precision: Option<String>,
    tokens: Option<f64>,
    software: Option<String>,
    capacity_factor: Option<f64>,
    expert_dispatch: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HardwareFields {
    accelerator: Option<String>,
    #[serde(default, deserialize_with = "crate::some_count")]
    count: Option<u32>,
    #[serde(default, deserialize_with = "crate::some_count")]
    per_node: Option<u32>,
    cluster: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParallelismFields {
    #[serde(default, deserialize_with = "crate::some_count")]
    tp: Option<u32>,
    #[serde(default, deserialize_with = "crate::some_count")]
    pp: Option<u32>,
    #[serde(default, deserialize_with = "crate::some_count")]
    dp: Option<u32>,
    #[serde(default, deserialize_with = "crate::some_count")]
    cp: Option<u32>,
    #[serde(default, deserialize_with = "crate::some_count")]
    ep: Option<u32>,
    #[serde(default, deserialize_with = "crate::some_count")]
    etp: Option<u32>,
    #[serde(default, deserialize_with = "crate::some_count")]
    microbatch: Option<u32>,
    #[serde(default, deserialize_with = "crate::some_count")]
    virtual_stages: Option<u32>,
    recompute: Option<String>,
    recompute_modules: Option<Vec<String>>,
    sequence_parallel: Option<bool>,
    zero: Option<u8>,
    allow_tp_beyond_scale_up: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct InferenceFields {
    precision: Option<String>,
    #[serde(default, deserialize_with = "crate::some_count")]
    prompt_tokens: Option<u32>,
    #[serde(default, deserialize_with = "crate::some_count")]
    output_tokens: Option<u32>,
    /// A whole number or "max"; read as any value so that a wrong one is named plainly.
    concurrency: Option<toml::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    model: Option<ModelFields>,
    training: Option<TrainingFields>,
    hardware: Option<HardwareFields>,
    parallelism: Option<ParallelismFields>,
    inference: Option<InferenceFields>,
}

/// What the plan asks.
#[derive(Debug, Clone, PartialEq)]
pub enum Workload {
    Training(TrainingSpec),
    Inference(InferenceSpec),
}

/// A validated plan file.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanInput {
    pub model: ModelSpec,
    pub hardware: Hardware,
    pub workload: Workload,
    pub constraint: LayoutConstraint,
    /// Whether the file had a `[parallelism]` table.
    pub layout_given: bool,
    pub allow_tp_beyond_scale_up: bool,
    /// The cluster whose every accelerator `[hardware] count` defaulted to (given `cluster`
    /// without `count`), so that errors about the device count can say where it came from.
    pub count_defaulted_to: Option<String>,
}

fn precision(text: Option<&str>, table: &str) -> Result<bool, PerfError> {
    match text.map(str::to_ascii_lowercase).as_deref() {
        None | Some("bf16") | Some("fp16") => Ok(false),
        Some("fp8") => Ok(true),
        Some(other) => Err(PerfError::input(format!(
            "[{table}] precision = \"{other}\" must be \"bf16\" or \"fp8\""
        ))),
    }
}

/// Parses and validates a plan file. `fleet` resolves `[hardware] cluster`. Errors name the
/// table and field at fault, not the file: the caller knows which file it read.
pub fn parse_plan(text: &str, fleet: &Fleet) -> Result<PlanInput, PerfError> {
    let raw: PlanFile = toml::from_str(text)
        .map_err(|e| PerfError::input(switchyard_core::plain_toml_words(&e.to_string())))?;
    let model = raw
        .model
        .ok_or_else(|| PerfError::input("the [model] table is missing"))?
        .resolve()?;
    let hw_fields = raw
        .hardware
        .ok_or_else(|| PerfError::input("the [hardware] table is missing"))?;
    let mut count_defaulted_to = None;
    let mut hardware = match (&hw_fields.accelerator, &hw_fields.cluster) {
        (Some(_), Some(_)) => {
            return Err(PerfError::input(
                "[hardware] give either accelerator or cluster, not both",
            ));
        }
        (None, None) => {
            return Err(PerfError::input(
                "[hardware] needs accelerator = \"<catalog name>\" or cluster = \"<fleet cluster>\"",
            ));
        }
        (Some(name), None) => {
            let accel = accelerator::lookup(name).ok_or_else(|| {
                PerfError::input(format!(
                    "[hardware] accelerator = \"{name}\" is not in the catalog (known: {})",
                    accelerator::names().join(", ")
                ))
            })?;
            let count = hw_fields
                .count
                .ok_or_else(|| PerfError::input("[hardware] count is missing"))?;
            let mut hw = Hardware::from_accelerator(accel, count);
            // Price from the fleet's contracts for this accelerator, if any.
            hw.price_per_accelerator_hour = cheapest_price(fleet, accel.name);
            hw
        }
        (None, Some(name)) => {
            let cluster = fleet.cluster(name).ok_or_else(|| {
                PerfError::input(format!(
                    "[hardware] cluster = \"{name}\" is not in the fleet \"{}\" (clusters: {})",
                    fleet.name,
                    fleet
                        .clusters
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            if hw_fields.count.is_none() {
                count_defaulted_to = Some(name.clone());
            }
            let count = hw_fields
                .count
                .unwrap_or_else(|| u32::try_from(cluster.accelerators()).unwrap_or(u32::MAX));
            if u64::from(count) > cluster.accelerators() {
                return Err(PerfError::input(format!(
                    "[hardware] count = {count} exceeds the {} accelerators of cluster \"{name}\"",
                    cluster.accelerators()
                )));
            }
            Hardware::from_cluster(cluster, count)
        }
    };
    if hardware.count == 0 {
        return Err(PerfError::input("[hardware] count must be at least 1"));
    }
    crate::within_max_size(hardware.count, "[hardware] count")?;
    if let Some(per_node) = hw_fields.per_node {
        if per_node == 0 {
            return Err(PerfError::input("[hardware] per_node must be at least 1"));
        }
        let per_node = crate::within_max_size(per_node, "[hardware] per_node")?;
        match &hardware.cluster {
            // A cluster already sized its servers and fabric; repeating its size changes nothing.
            Some(cluster) if per_node != hardware.per_node => {
                return Err(PerfError::input(format!(
                    "[hardware] per_node = {per_node} contradicts cluster \"{cluster}\", whose nodes hold {} accelerators each; leave per_node out when naming a cluster",
                    hardware.per_node
                )));
            }
            Some(_) => {}
            None => hardware.set_per_node(per_node),
        }
    }
    // Launchers start the same number of ranks on every node; a layout over a part of a node
    // (count below per_node) is fine, one over a node and a half is not a machine anyone runs.
    if hardware.count > hardware.per_node && hardware.count % hardware.per_node != 0 {
        let per_node = hardware.per_node;
        let whence = match (&hardware.cluster, hw_fields.per_node) {
            (Some(cluster), _) => format!("cluster \"{cluster}\"'s nodes hold {per_node}"),
            (None, Some(_)) => format!("per_node = {per_node}"),
            (None, None) => format!(
                "each {} server holds {per_node}; set per_node if yours differ",
                hardware.accelerator.name
            ),
        };
        let below = hardware.count / per_node * per_node;
        return Err(PerfError::input(format!(
            "[hardware] count = {} is not a whole number of nodes ({whence}): use {below} or {}, \
             or fewer than one node",
            hardware.count,
            below + per_node
        )));
    }
    let mut workload = match (raw.training, raw.inference) {
        (Some(_), Some(_)) => {
            return Err(PerfError::input(
                "give either a [training] or an [inference] table, not both",
            ));
        }
        (None, None) => {
            return Err(PerfError::input(
                "a [training] or an [inference] table is required",
            ));
        }
        (Some(t), None) => {
            let global_batch = t
                .global_batch
                .ok_or_else(|| PerfError::input("[training] global_batch is missing"))?;
            if global_batch == 0 {
                return Err(PerfError::input(
                    "[training] global_batch must be at least 1",
                ));
            }
            crate::within_max_size(global_batch, "[training] global_batch")?;
            if let Some(tokens) = t.tokens {
                if !(tokens >= 1.0 && tokens.is_finite()) {
                    return Err(PerfError::input(format!(
                        "[training] tokens = {} must be a number of tokens, at least 1 \
                         (e.g. 15e12)",
                        crate::number_in_words(tokens)
                    )));
                }
                if tokens > MAX_TRAINING_TOKENS {
                    return Err(PerfError::input(format!(
                        "[training] tokens = {} is larger than the supported maximum \
                         {MAX_TRAINING_TOKENS:e}",
                        crate::number_in_words(tokens)
                    )));
                }
            }
            let fp8 = precision(t.precision.as_deref(), "training")?;
            if fp8 && hardware.accelerator.fp8_tflops.is_none() {
                return Err(PerfError::input(format!(
                    "[training] precision = \"fp8\" but {} has no FP8 arithmetic",
                    hardware.accelerator.name
                )));
            }
            let mut software = match t.software.as_deref() {
                None => Software::default(),
                Some(name) => Software::named(name, "[training]")?,
            };
            software.expert_dispatch = crate::software::ExpertDispatch::choose(
                t.expert_dispatch.as_deref(),
                software.expert_dispatch,
                model.moe.is_some(),
                "[training]",
            )?;
            let capacity_factor =
                crate::train::check_capacity_factor(t.capacity_factor, &model, "[training]")?;
            Workload::Training(TrainingSpec {
                global_batch,
                fp8,
                tokens: t.tokens,
                software,
                capacity_factor,
                recompute_modules: RecomputeModules::default(),
            })
        }
        (None, Some(i)) => {
            let fp8 = precision(i.precision.as_deref(), "inference")?;
            if fp8 && hardware.accelerator.fp8_tflops.is_none() {
                return Err(PerfError::input(format!(
                    "[inference] precision = \"fp8\" but {} has no FP8 arithmetic",
                    hardware.accelerator.name
                )));
            }
            let prompt_tokens = i
                .prompt_tokens
                .ok_or_else(|| PerfError::input("[inference] prompt_tokens is missing"))?;
            let output_tokens = i
                .output_tokens
                .ok_or_else(|| PerfError::input("[inference] output_tokens is missing"))?;
            if output_tokens == 0 {
                return Err(PerfError::input(
                    "[inference] output_tokens must be at least 1",
                ));
            }
            if prompt_tokens == 0 {
                return Err(PerfError::input(
                    "[inference] prompt_tokens must be at least 1",
                ));
            }
            crate::within_max_size(prompt_tokens, "[inference] prompt_tokens")?;
            crate::within_max_size(output_tokens, "[inference] output_tokens")?;
            let concurrency = match i.concurrency {
                None => Concurrency::Max,
                Some(toml::Value::String(t)) if t.eq_ignore_ascii_case("max") => Concurrency::Max,
                Some(toml::Value::Integer(n)) if n > i64::from(crate::MAX_SIZE) => {
                    return Err(PerfError::input(format!(
                        "[inference] concurrency = {n} is larger than the supported maximum {}",
                        crate::MAX_SIZE
                    )));
                }
                Some(toml::Value::Integer(n)) if n >= 1 => {
                    Concurrency::Fixed(u32::try_from(n).unwrap_or(u32::MAX))
                }
                Some(toml::Value::Integer(n)) => {
                    return Err(PerfError::input(format!(
                        "[inference] concurrency = {n} must be at least 1 (or \"max\")"
                    )));
                }
                Some(other) => {
                    return Err(PerfError::input(format!(
                        "[inference] concurrency = {other} must be a whole number of requests \
                         from 1, or \"max\""
                    )));
                }
            };
            Workload::Inference(InferenceSpec {
                fp8,
                prompt_tokens,
                output_tokens,
                concurrency,
            })
        }
    };
    let layout_given = raw.parallelism.is_some();
    let p = raw.parallelism.unwrap_or_default();
    let recompute = match p.recompute.as_deref() {
        None => None,
        Some(t) => Some(Recompute::parse(t).ok_or_else(|| {
            PerfError::input(format!(
                "[parallelism] recompute = \"{t}\" must be \"none\", \"selective\" or \"full\""
            ))
        })?),
    };
    if let Some(names) = &p.recompute_modules {
        let place = "[parallelism] recompute_modules";
        let modules = RecomputeModules::parse(names.iter().map(String::as_str), place)?;
        match &mut workload {
            Workload::Training(spec) => {
                spec.recompute_modules = crate::train::check_recompute_modules(
                    modules,
                    recompute,
                    &model,
                    "[parallelism]",
                )?;
            }
            Workload::Inference(_) => {
                return Err(PerfError::input(format!(
                    "{place} applies to training (an [inference] plan recomputes nothing)"
                )));
            }
        }
    }
    let constraint = LayoutConstraint {
        tp: p.tp,
        pp: p.pp,
        dp: p.dp,
        cp: p.cp,
        ep: p.ep,
        etp: p.etp,
        microbatch: p.microbatch,
        virtual_stages: p.virtual_stages,
        recompute,
        sequence_parallel: p.sequence_parallel,
        zero: p.zero,
    };
    if matches!(workload, Workload::Inference(_)) {
        // Before the degrees are checked against the devices: a key an inference plan does
        // not take is the mistake to name.
        refuse_training_keys(&constraint)?;
    }
    let allow = p.allow_tp_beyond_scale_up.unwrap_or(false);
    check_constraint(
        &constraint,
        &model,
        &hardware,
        matches!(workload, Workload::Training(_)),
        allow,
    )
    .map_err(|e| match e {
        PerfError::Input(ref why) if why.contains("the device count") => {
            count_error(count_defaulted_to.as_deref(), hardware.count, e)
        }
        e => e,
    })?;
    Ok(PlanInput {
        model,
        hardware,
        workload,
        constraint,
        layout_given,
        allow_tp_beyond_scale_up: allow,
        count_defaulted_to,
    })
}

/// Refuses the `[parallelism]` keys only training layouts take, by name: an inference plan
/// would otherwise ignore them silently.
fn refuse_training_keys(c: &LayoutConstraint) -> Result<(), PerfError> {
    if let Some(etp) = c.etp {
        return Err(PerfError::input(format!(
            "[parallelism] etp = {etp} applies to training; an inference replica's experts are \
             split tp/ep ways inside its tensor-parallel group"
        )));
    }
    let training_only = [
        ("dp", c.dp.is_some()),
        ("cp", c.cp.is_some()),
        ("microbatch", c.microbatch.is_some()),
        ("virtual_stages", c.virtual_stages.is_some()),
        ("recompute", c.recompute.is_some()),
        ("sequence_parallel", c.sequence_parallel.is_some()),
        ("zero", c.zero.is_some()),
    ];
    match training_only.iter().find(|(_, given)| *given) {
        Some((key, _)) => Err(PerfError::input(format!(
            "[parallelism] {key} applies to training; an [inference] plan takes tp, pp and ep \
             (one replica on all the devices)"
        ))),
        None => Ok(()),
    }
}

/// The `[parallelism]` degrees a plan (or a validation row) gives, checked against the model and
/// the devices before any search: each one's own bounds, their product against the device
/// count, the splits each degree makes (heads and FFN over `tp`, sequences over `cp`, experts
/// over `ep`). `training`: the checks that only training layouts need (context and sequence
/// parallelism).
pub(crate) fn check_constraint(
    c: &LayoutConstraint,
    m: &ModelSpec,
    hw: &Hardware,
    training: bool,
    allow_tp_beyond_scale_up: bool,
) -> Result<(), PerfError> {
    c.check_degrees()?;
    // Four degrees of up to 2^24 each: the product needs more than 64 bits.
    let product = u128::from(c.tp.unwrap_or(1))
        * u128::from(c.pp.unwrap_or(1))
        * u128::from(c.dp.unwrap_or(1))
        * u128::from(c.cp.unwrap_or(1));
    if c.tp.is_some() && c.pp.is_some() && c.dp.is_some() && product != u128::from(hw.count) {
        return Err(PerfError::input(format!(
            "[parallelism] tp·pp·dp·cp = {product} is not the device count {}",
            hw.count
        )));
    }
    if product > u128::from(hw.count) || u128::from(hw.count) % product != 0 {
        return Err(PerfError::input(format!(
            "[parallelism] the given degrees (product {product}) do not divide the device count {}",
            hw.count
        )));
    }
    if let Some(tp) = c.tp {
        if tp > hw.scale_up_domain && !allow_tp_beyond_scale_up {
            return Err(PerfError::input(format!(
                "[parallelism] tp = {tp} is larger than the scale-up domain ({} {} devices); \
                 set allow_tp_beyond_scale_up = true to cost it over the scale-out network",
                hw.scale_up_domain, hw.accelerator.name
            )));
        }
        if !m.heads.is_multiple_of(tp) {
            return Err(PerfError::input(format!(
                "[parallelism] tp = {tp} does not divide [model] heads = {}",
                m.heads
            )));
        }
        if m.dense_layers() > 0 && !m.ffn_hidden.is_multiple_of(tp) {
            return Err(PerfError::input(format!(
                "[parallelism] tp = {tp} does not divide [model] ffn_hidden = {}: tensor \
                 parallelism gives each rank an equal share of the FFN's hidden units",
                m.ffn_hidden
            )));
        }
    }
    if training {
        let cp = c.cp.unwrap_or(1);
        if cp > 1 && !m.seq_len.is_multiple_of(2 * cp) {
            return Err(PerfError::input(format!(
                "[parallelism] cp = {cp} needs [model] seq_len = {} to be a multiple of 2·cp = \
                 {}: context parallelism cuts each sequence into two chunks per rank (one early, \
                 one late, to balance causal attention)",
                m.seq_len,
                2 * cp
            )));
        }
        if let Some(tp) = c.tp.filter(|&tp| tp > 1)
            && c.sequence_parallel == Some(true)
            && !(m.seq_len / cp).is_multiple_of(tp)
        {
            return Err(PerfError::input(format!(
                "[parallelism] sequence_parallel with tp = {tp} needs each context-parallel \
                 rank's {} tokens (seq_len / cp) to split evenly over the tp ranks",
                m.seq_len / cp
            )));
        }
    }
    if let (Some(ep), Some(moe)) = (c.ep, &m.moe)
        && moe.experts % ep != 0
    {
        return Err(PerfError::input(format!(
            "[parallelism] ep = {ep} does not divide [model] experts = {}",
            moe.experts
        )));
    }
    if c.ep.is_some_and(|ep| ep > 1) && m.moe.is_none() {
        return Err(PerfError::input(
            "[parallelism] ep > 1 needs a mixture-of-experts model ([model] experts)",
        ));
    }
    check_expert_tensor_parallel(c, m, "[parallelism]")?;
    Ok(())
}

/// `etp` splits experts, so it needs a mixture-of-experts model, and it divides `tp` (the
/// model's restriction: Megatron-Core only needs `ep·etp` to tile the ranks); MoE training with
/// tensor parallelism runs with sequence parallelism.
pub(crate) fn check_expert_tensor_parallel(
    c: &LayoutConstraint,
    model: &ModelSpec,
    place: &str,
) -> Result<(), PerfError> {
    if model.moe.is_some() && c.sequence_parallel == Some(false) && c.tp.is_some_and(|tp| tp > 1) {
        return Err(PerfError::input(format!(
            "{place} sequence_parallel = false with tp > 1 is not supported for \
             mixture-of-experts training (Megatron-Core requires sequence parallelism there)"
        )));
    }
    let Some(etp) = c.etp else {
        return Ok(());
    };
    if etp == 0 {
        return Err(PerfError::input(format!("{place} etp must be at least 1")));
    }
    let Some(moe) = &model.moe else {
        // A dense model has no experts to split: the report gives its etp as tp, and that
        // layout read back is taken.
        return match c.tp {
            Some(tp) if tp == etp => Ok(()),
            _ => Err(PerfError::input(format!(
                "{place} etp = {etp} needs a mixture-of-experts model ([model] experts); on a \
                 dense model it can only repeat tp"
            ))),
        };
    };
    if let Some(tp) = c.tp.filter(|&tp| tp > 0)
        && tp % etp != 0
    {
        return Err(PerfError::input(format!(
            "{place} etp = {etp} does not divide tp = {tp}"
        )));
    }
    if !moe.expert_ffn_hidden.is_multiple_of(etp) {
        return Err(PerfError::input(format!(
            "{place} etp = {etp} does not divide [model] expert_ffn_hidden = {}: expert tensor \
             parallelism gives each rank an equal share of an expert's hidden units",
            moe.expert_ffn_hidden
        )));
    }
    Ok(())
}

fn cheapest_price(fleet: &Fleet, accel: &str) -> Option<f64> {
    fleet
        .providers
        .iter()
        .flat_map(|p| p.contracts.iter())
        .filter(|c| accelerator::lookup(&c.accelerator).is_some_and(|a| a.name == accel))
        .filter_map(|c| {
            c.reserved
                .as_ref()
                .map(|r| r.price)
                .into_iter()
                .chain(c.on_demand_price)
                .reduce(f64::min)
        })
        .reduce(f64::min)
}

/// Largest token budget a plan takes: 10^17, over six thousand times the 15.6 T tokens Llama
/// 3 was trained on, so days, hours and cost stay numbers a report can print.
pub const MAX_TRAINING_TOKENS: f64 = 1e17;

/// Why no layout exists, naming the given setting at fault where one alone rules every layout
/// out, or else the bounds the search keeps to.
///
/// A layout given in full says why it is invalid; a partial one cannot be completed.
pub(crate) fn why_no_layout(
    c: &LayoutConstraint,
    m: &ModelSpec,
    hw: &Hardware,
    global_batch: u32,
    tp_beyond_scale_up: bool,
) -> PerfError {
    if let Some(layout) = given_layout(c, hw.count) {
        // Only when every etp the search tried is invalid is the layout itself at fault (the
        // last, folded, error says the most).
        let errors: Option<Vec<PerfError>> =
            crate::search::expert_tensor_candidates(layout.tp, c.etp, m)
                .into_iter()
                .map(|etp| {
                    crate::layout::Layout { etp, ..layout }
                        .check(hw.count, global_batch, m.layers)
                        .err()
                })
                .collect();
        if let Some(last) = errors.and_then(|mut e| e.pop()) {
            return last;
        }
    }
    no_layout_error(c, m, hw, global_batch, tp_beyond_scale_up)
}

fn no_layout_error(
    c: &LayoutConstraint,
    m: &ModelSpec,
    hw: &Hardware,
    global_batch: u32,
    tp_beyond_scale_up: bool,
) -> PerfError {
    let chunks_max = u64::from(m.layers) + 2;
    // Devices of one pipeline stage (all of them when pp is not given).
    let stage_devices = hw.count / c.pp.unwrap_or(1).max(1);
    let reason = if let Some(zero) = c.zero.filter(|&z| z > 3) {
        format!("[parallelism] zero = {zero} must be 0, 1, 2 or 3")
    } else if let Some(pp) = c.pp.filter(|&pp| u64::from(pp) > chunks_max) {
        format!(
            "[parallelism] pp = {pp} exceeds layers + 2 = {chunks_max} (a stage per layer, plus \
             one each for the embedding and the loss)"
        )
    } else if let (Some(1), Some(v)) = (c.pp, c.virtual_stages.filter(|&v| v > 1)) {
        format!("[parallelism] virtual_stages = {v} needs pipeline parallelism (pp > 1)")
    } else if let Some(stages) = c
        .virtual_stages
        // Interleaving needs two stages at least.
        .map(|v| u64::from(v) * u64::from(c.pp.unwrap_or(if v > 1 { 2 } else { 1 })))
        .filter(|&stages| stages > chunks_max)
    {
        format!(
            "[parallelism] pp·virtual_stages = {stages}{} exceeds layers + 2 = {chunks_max} (a \
             chunk per layer, plus one each for the embedding and the loss)",
            if c.pp.is_none() {
                " with the fewest stages interleaving needs (pp = 2)"
            } else {
                ""
            }
        )
    } else if let Some(ep) = c.ep.filter(|&ep| {
        // (Without a given etp the search tries the folded etp = 1 too: the least it needs.)
        u64::from(ep) * u64::from(c.etp.unwrap_or(1)) > u64::from(stage_devices)
    }) {
        let etp = c.etp.unwrap_or(1);
        format!(
            "[parallelism] ep·etp = {ep}·{etp} = {} is more than the {} devices of a pipeline \
             stage: the expert groups tile a stage's tp·dp·cp ranks",
            u64::from(ep) * u64::from(etp),
            stage_devices
        )
    } else if let Some(mb) = c.microbatch.filter(|&mb| mb > global_batch) {
        format!(
            "[parallelism] microbatch = {mb} is larger than [training] global_batch = {global_batch}"
        )
    } else if let Some(split) = [
        c.dp.zip(c.microbatch).map(|(dp, mb)| {
            (
                u64::from(dp) * u64::from(mb),
                format!("dp·microbatch = {dp}·{mb}"),
            )
        }),
        c.dp.map(|dp| (u64::from(dp), format!("dp = {dp}"))),
        c.microbatch
            .map(|mb| (u64::from(mb), format!("microbatch = {mb}"))),
    ]
    .into_iter()
    .flatten()
    .find(|(n, _)| *n > 0 && !u64::from(global_batch).is_multiple_of(*n))
    {
        format!(
            "[training] global_batch = {global_batch} is not a multiple of [parallelism] {}: each \
             data-parallel rank runs whole micro-batches of an equal share of the batch",
            split.1
        )
    } else if let Some(etp) = c.etp.filter(|&etp| {
        c.tp.is_none()
            && !crate::search::tensor_candidates(m, hw, tp_beyond_scale_up)
                .iter()
                .any(|tp| tp.is_multiple_of(etp))
    }) {
        format!(
            "[parallelism] etp = {etp} divides no tp the search tries (a power of two dividing \
             heads = {} and the device count, at most {}): give tp, or an etp that divides one",
            m.heads,
            if tp_beyond_scale_up {
                format!("the device count, {}", hw.count)
            } else {
                format!("the scale-up domain, {}", hw.scale_up_domain)
            }
        )
    } else if let Some(why) = batch_fits_no_dp(c, m, hw, global_batch, tp_beyond_scale_up) {
        why
    } else {
        format!(
            "no split of {} devices fits the search's bounds: tp a power of two dividing heads = \
             {} and at most the scale-up domain ({}), cp up to 16, pp at most layers = {} (and \
             128), dp at most global_batch = {global_batch}; give the degrees in [parallelism] \
             or change [hardware] count",
            hw.count, m.heads, hw.scale_up_domain, m.layers
        )
    };
    PerfError::input(format!(
        "no valid layout of {} on {} {} for global_batch = {global_batch}: {reason}",
        m.name, hw.count, hw.accelerator.name
    ))
}

/// When every split of the devices the search tries (a superset of it: context parallelism is
/// not narrowed to what the stack supports) leaves a data-parallel degree that does not divide
/// the global batch, says so with the split that leaves the smallest one.
fn batch_fits_no_dp(
    c: &LayoutConstraint,
    m: &ModelSpec,
    hw: &Hardware,
    global_batch: u32,
    tp_beyond_scale_up: bool,
) -> Option<String> {
    let tps = match c.tp {
        Some(tp) => vec![tp],
        None => crate::search::tensor_candidates(m, hw, tp_beyond_scale_up),
    };
    let cps: Vec<u32> = match c.cp {
        Some(cp) => vec![cp],
        None => [1, 2, 4, 8, 16].into(),
    };
    let mut smallest: Option<(u32, u32, u32, u32)> = None;
    for &tp in &tps {
        for &cp in &cps {
            let Some(tp_cp) = tp.checked_mul(cp).filter(|&n| n > 0) else {
                continue;
            };
            if !hw.count.is_multiple_of(tp_cp) {
                continue;
            }
            let rest = hw.count / tp_cp;
            let pps = match c.pp {
                Some(pp) => vec![pp],
                None => crate::search::pipeline_candidates(rest, m),
            };
            for pp in pps {
                if pp == 0 || !rest.is_multiple_of(pp) {
                    continue;
                }
                let dp = rest / pp;
                if c.dp.is_some_and(|given| given != dp) {
                    continue;
                }
                if dp <= global_batch && global_batch.is_multiple_of(dp) {
                    return None;
                }
                if smallest.is_none_or(|s| dp < s.3) {
                    smallest = Some((tp, cp, pp, dp));
                }
            }
        }
    }
    let (tp, cp, pp, dp) = smallest?;
    Some(format!(
        "[training] global_batch = {global_batch} is not a multiple of any data-parallel degree \
         the split of {} devices leaves (the smallest is dp = {dp}, with tp = {tp}, cp = {cp}, \
         pp = {pp}): each data-parallel rank runs an equal share of the batch; change \
         global_batch or [hardware] count",
        hw.count
    ))
}

/// Days, hours and dollars for a token budget, with failures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Budget {
    pub tokens: f64,
    /// Failure-free days to train: whole steps until the budget is spent.
    pub ideal_days: f64,
    /// Days including checkpoint writes, lost work and restarts (Young/Daly interval).
    pub days_to_train: f64,
    pub accelerator_hours: f64,
    /// `None` when no contract prices this accelerator.
    pub cost_usd: Option<f64>,
    pub price_per_accelerator_hour: Option<f64>,
    /// Mean time between failures of the job's nodes together, hours.
    pub job_mtbf_hours: f64,
    pub checkpoint_write_s: f64,
    /// Young/Daly interval sqrt(2·δ·M), in whole steps (at least one, at most the run), hours.
    pub checkpoint_interval_hours: f64,
    /// Checkpoints written during the run: one after each full interval of work, none at its
    /// end (0 when the run is shorter than an interval).
    pub checkpoints: u64,
    /// Useful fraction of wall-clock time.
    pub goodput: f64,
    /// Said when failures cost the job most of its time (goodput below [`LOW_GOODPUT`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// Goodput below which a budget warns that failures eat most of the job's time.
pub const LOW_GOODPUT: f64 = 0.5;

/// Goodput below which a token budget is refused: the job would practically never finish.
pub const HOPELESS_GOODPUT: f64 = 1e-6;

/// The failure-free time to spend `tokens` at `step_s` per step of `tokens_per_s · step_s`
/// tokens, then with failures: checkpoints every Young/Daly interval sqrt(2·δ·M) (δ the write,
/// M the job's MTBF), taken at step boundaries, so rounded to whole steps and at least one.
/// One is written after each full interval of work; the run's end needs none (its last save
/// is the trained model, written with or without failures), so a run shorter than an interval
/// writes none. Wall time follows Daly's model of exponential failures ("A higher order
/// estimate of the optimum checkpoint interval for restart dumps", 2006): a segment of w work
/// (and write) takes M·e^{R/M}·(e^{w/M} − 1), R the restart. For M ≫ τ, δ, R the overhead is
/// the familiar δ/τ + (τ/2 + R)/M; unlike that first-order form it stays right when failures
/// come about as often as restarts take, where the job barely progresses.
pub fn budget(
    m: &ModelSpec,
    hw: &Hardware,
    step_s: f64,
    tokens_per_s: f64,
    tokens: f64,
) -> Result<Budget, PerfError> {
    if !(step_s > 0.0 && tokens_per_s > 0.0 && step_s.is_finite() && tokens_per_s.is_finite()) {
        return Err(PerfError::input(format!(
            "[training] tokens: the layout's step ({step_s} s, {tokens_per_s} tokens/s) gives no \
             rate to spend a token budget at"
        )));
    }
    let tokens_per_step = tokens_per_s * step_s;
    let steps = (tokens / tokens_per_step).ceil().max(1.0);
    let ideal_s = steps * step_s;
    let node_count = hw.nodes().max(1);
    let nodes = f64::from(node_count);
    let mtbf_node = hw.node_mtbf_hours.unwrap_or(DEFAULT_NODE_MTBF_HOURS);
    let job_mtbf_h = mtbf_node / nodes;
    let ckpt_bytes = m.total_params() * CHECKPOINT_BYTES_PER_PARAM;
    // Every node writes its share at its client rate, up to what the storage takes in.
    let nodes_gb_s = nodes_write_gb_s(hw);
    let write_gb_s = hw
        .checkpoint_write_gb_s
        .map_or(nodes_gb_s, |storage| nodes_gb_s.min(storage));
    let write_s = ckpt_bytes / (write_gb_s * 1e9);
    let mtbf_s = job_mtbf_h * 3600.0;
    let young_s = (2.0 * write_s * mtbf_s).sqrt();
    // Whole steps, at least one, and no longer than the run itself.
    let young_steps = (young_s / step_s).round().max(1.0);
    let interval_steps = young_steps.min(steps);
    let interval_s = interval_steps * step_s;
    // One after each full interval, none at the end: the last segment is what is left.
    let checkpoints = (steps / interval_steps).ceil() - 1.0;
    let last_s = ideal_s - checkpoints * interval_s;
    let restart_s = RESTART_HOURS * 3600.0;
    // ln(wall time / work), in logs: e^{R/M} overflows long before the answer stops meaning
    // anything.
    let full_segments = if checkpoints > 0.0 {
        checkpoints * ((interval_s + write_s) / mtbf_s).exp_m1()
    } else {
        0.0
    };
    let ln_stretch = mtbf_s.ln() + restart_s / mtbf_s - ideal_s.ln()
        + (full_segments + (last_s / mtbf_s).exp_m1()).ln();
    // Nodes that (practically) never fail: an MTBF past the f64 range leaves the logs
    // meaningless (∞ − ∞); the writes are then the only cost.
    let goodput = if mtbf_s.is_finite() {
        (-ln_stretch).exp().clamp(0.0, 1.0)
    } else {
        ideal_s / (ideal_s + checkpoints * write_s)
    };
    // Said only when failures cost much.
    let mtbf_words = || {
        let writes = if checkpoints > 0.0 {
            format!(
                "{} to write a checkpoint every {}",
                human_duration(write_s),
                human_duration(interval_s)
            )
        } else {
            // The interval the run is no longer than, not cut to the run.
            format!(
                "no checkpoint within the run (it is no longer than the Young/Daly interval \
                 of {})",
                human_duration(young_steps * step_s)
            )
        };
        format!(
            "the job's {node_count} nodes fail every {} on average (node MTBF {} h ÷ \
             {node_count} nodes), against {} to restart and {writes}",
            human_duration(mtbf_s),
            crate::number_in_words(mtbf_node),
            human_duration(restart_s),
        )
    };
    if goodput.is_nan() || goodput < HOPELESS_GOODPUT {
        return Err(PerfError::input(format!(
            "[training] tokens: {}: the job would practically never finish (goodput {:.1e}); \
             use fewer devices, or a cluster whose nodes fail less often",
            mtbf_words(),
            goodput
        )));
    }
    let warning = (goodput < LOW_GOODPUT).then(|| {
        format!(
            "failures and checkpoint writes cost the job {:.0}% of its time: {}",
            (1.0 - goodput) * 100.0,
            mtbf_words()
        )
    });
    let wall_s = ideal_s / goodput;
    let accel_hours = wall_s / 3600.0 * f64::from(hw.count);
    Ok(Budget {
        tokens,
        ideal_days: ideal_s / 86400.0,
        days_to_train: wall_s / 86400.0,
        accelerator_hours: accel_hours,
        cost_usd: hw.price_per_accelerator_hour.map(|p| p * accel_hours),
        price_per_accelerator_hour: hw.price_per_accelerator_hour,
        job_mtbf_hours: job_mtbf_h,
        checkpoint_write_s: write_s,
        checkpoint_interval_hours: interval_s / 3600.0,
        checkpoints: checkpoints as u64,
        goodput,
        warning,
    })
}

/// "3 ms", "0.4 s", "12 s", "15 min", "4.8 h", "3.2 d".
pub fn human_duration(s: f64) -> String {
    if s < 0.1 {
        format!("{:.0} ms", s * 1000.0)
    } else if s < 10.0 {
        format!("{s:.1} s")
    } else if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 172_800.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.1} d", s / 86_400.0)
    }
}

/// Model and hardware as the report shows them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Subject {
    pub model: String,
    pub params_b: f64,
    pub active_params_b: f64,
    pub accelerator: String,
    pub count: u32,
    pub cluster: Option<String>,
}

/// The training report (`plan --json` prints it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainingReport {
    pub kind: &'static str,
    #[serde(flatten)]
    pub subject: Subject,
    pub precision: &'static str,
    pub global_batch: u32,
    /// The MoE capacity factor the plan gave (`[training] capacity_factor`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_factor: Option<f64>,
    /// The software stack the plan was costed for (`[training] software`, or the default).
    pub software: &'static str,
    /// How MoE tokens move between expert-parallel ranks (MoE models only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expert_dispatch: Option<crate::software::ExpertDispatch>,
    /// Whether the layout came from the search (some or all settings chosen).
    pub searched: bool,
    #[serde(flatten)]
    pub best: TrainingEstimate,
    /// `null` without `[training] tokens`.
    pub days_to_train: Option<f64>,
    /// `null` without `[training] tokens`, or when no contract prices the accelerator.
    pub cost_usd: Option<f64>,
    /// `null` without `[training] tokens`.
    pub budget: Option<Budget>,
    /// The next fastest layouts that fit.
    pub alternatives: Vec<TrainingEstimate>,
    /// What the figures assume about this hardware and precision that a reader should know
    /// ([`caveats`]); empty when nothing.
    pub notes: Vec<String>,
}

/// The inference report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InferenceReport {
    pub kind: &'static str,
    #[serde(flatten)]
    pub subject: Subject,
    pub precision: &'static str,
    pub prompt_tokens: u32,
    pub output_tokens: u32,
    /// The concurrency the plan asked for (a number or "max"); `concurrency` is what runs: the
    /// requests past what fits wait for a slot.
    pub requested_concurrency: Concurrency,
    /// Whether the layout was searched (the input left tp or pp open, or an MoE model's ep, and
    /// more than one split was possible).
    pub searched: bool,
    #[serde(flatten)]
    pub estimate: InferenceEstimate,
    /// The next best layouts that fit, fastest first.
    pub alternatives: Vec<InferenceEstimate>,
    /// As [`TrainingReport::notes`].
    pub notes: Vec<String>,
}

/// Either report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum PlanReport {
    Training(Box<TrainingReport>),
    Inference(Box<InferenceReport>),
}

/// Layouts the report lists besides the best.
pub const ALTERNATIVES: usize = 4;

impl PlanInput {
    /// `error`, about the device count, saying where the count came from when the file did
    /// not give it (a cluster's every accelerator).
    fn count_error(&self, error: PerfError) -> PerfError {
        count_error(
            self.count_defaulted_to.as_deref(),
            self.hardware.count,
            error,
        )
    }
}

/// [`PlanInput::count_error`] before the input is whole.
fn count_error(defaulted_to: Option<&str>, count: u32, error: PerfError) -> PerfError {
    match (defaulted_to, error) {
        (Some(cluster), PerfError::Input(why)) => PerfError::input(format!(
            "{why} ([hardware] count is not given, so it is all {count} accelerators of cluster \
             \"{cluster}\"; set count to plan on part of it)"
        )),
        (_, error) => error,
    }
}

/// Runs a plan.
pub fn run_plan(input: &PlanInput) -> Result<PlanReport, PerfError> {
    let m = &input.model;
    let hw = &input.hardware;
    let subject = Subject {
        model: m.name.clone(),
        params_b: m.total_params() / 1e9,
        active_params_b: m.active_params() / 1e9,
        accelerator: hw.accelerator.name.to_string(),
        count: hw.count,
        cluster: hw.cluster.clone(),
    };
    match &input.workload {
        Workload::Training(spec) => {
            let opts = SearchOptions {
                keep: ALTERNATIVES + 1,
                allow_tp_beyond_scale_up: input.allow_tp_beyond_scale_up,
                ..SearchOptions::default()
            };
            let c = &input.constraint;
            let experts_given =
                m.moe.is_none() || (c.ep.is_some() && (c.etp.is_some() || c.tp == Some(1)));
            let complete = c.tp.is_some()
                && c.pp.is_some()
                && c.microbatch.is_some()
                && c.recompute.is_some()
                && experts_given;
            let mut found = search(m, hw, spec, c, &opts)?;
            if found.is_empty() {
                // Nothing fits: report the given layout, or the one that comes closest to
                // fitting, anyway, marked as not fitting.
                found = search(
                    m,
                    hw,
                    spec,
                    c,
                    &SearchOptions {
                        ignore_memory: true,
                        closest_when_unfit: true,
                        ..opts
                    },
                )?;
            }
            if found.is_empty() {
                return Err(input.count_error(why_no_layout(
                    c,
                    m,
                    hw,
                    spec.global_batch,
                    input.allow_tp_beyond_scale_up,
                )));
            }
            let best = found.remove(0);
            let mut notes = caveats(hw, spec.fp8, true);
            notes.extend(unhidden_expert_traffic(&best));
            if spec.fp8 && !complete && best.fits {
                // (A note: a failed comparison leaves the plan as it is.)
                notes.extend(
                    bf16_would_be_faster(m, hw, spec, c, &opts, &best)
                        .ok()
                        .flatten(),
                );
            }
            let b = spec
                .tokens
                .map(|t| budget(m, hw, best.step_time_s, best.tokens_per_s, t))
                .transpose()?;
            if b.is_some() {
                notes.extend(unstated_storage(hw));
            }
            Ok(PlanReport::Training(Box::new(TrainingReport {
                kind: "training",
                subject,
                precision: if spec.fp8 { "fp8" } else { "bf16" },
                global_batch: spec.global_batch,
                capacity_factor: spec.capacity_factor,
                software: spec.software.name,
                expert_dispatch: m.moe.as_ref().map(|_| spec.software.expert_dispatch),
                searched: !complete,
                days_to_train: b.as_ref().map(|b| b.days_to_train),
                cost_usd: b.as_ref().and_then(|b| b.cost_usd),
                budget: b,
                best,
                alternatives: found,
                notes,
            })))
        }
        Workload::Inference(spec) => {
            let c = &input.constraint;
            if let (Some(tp), Some(pp)) = (c.tp, c.pp)
                && u64::from(tp) * u64::from(pp) != u64::from(hw.count)
            {
                return Err(input.count_error(PerfError::input(format!(
                    "[parallelism] tp·pp = {tp}·{pp} is not the device count {} \
                         (an inference replica is split by tensor and pipeline parallelism only)",
                    hw.count
                ))));
            }
            if let Some(pp) = c.pp.filter(|&pp| pp > m.layers) {
                return Err(PerfError::input(format!(
                    "[parallelism] pp = {pp} exceeds [model] layers = {} (an inference replica's \
                     pipeline stage holds at least one layer)",
                    m.layers
                )));
            }
            let candidates = inference_layouts(input);
            let searched = candidates.len() > 1 || c.tp.is_none() || c.pp.is_none();
            let mut found = candidates
                .into_iter()
                .map(|layout| estimate_inference(m, hw, &layout, spec))
                .collect::<Result<Vec<_>, _>>()?;
            if found.is_empty() {
                // A given ep that rules out every split that would fit without it is the
                // field to name, not the device count.
                if let Some(ep) = c.ep.filter(|&ep| ep > 1) {
                    let mut without_ep = input.clone();
                    without_ep.constraint.ep = None;
                    if !inference_layouts(&without_ep).is_empty() {
                        return Err(PerfError::input(format!(
                            "[parallelism] ep = {ep} divides no tensor-parallel group that fits \
                             {} on {} devices (an inference replica splits its experts within \
                             its tensor-parallel group: ep must divide tp, which divides the \
                             {} heads and stays within the scale-up domain of {})",
                            m.name, hw.count, m.heads, hw.scale_up_domain
                        )));
                    }
                }
                return Err(input.count_error(PerfError::input(format!(
                    "no tensor × pipeline split of {} devices fits {} ({} heads, {} layers) \
                     within the scale-up domain of {}",
                    hw.count, m.name, m.heads, m.layers, hw.scale_up_domain
                ))));
            }
            // Fastest first among the layouts that fit; if none fits, the one that comes
            // closest (least weight per device) is reported, marked as not fitting.
            found.sort_by(|a, b| {
                b.fits.cmp(&a.fits).then(if a.fits {
                    b.tokens_per_s.total_cmp(&a.tokens_per_s)
                } else {
                    a.weights_per_device_gib
                        .total_cmp(&b.weights_per_device_gib)
                        .then(b.tokens_per_s.total_cmp(&a.tokens_per_s))
                })
            });
            let estimate = found.remove(0);
            let alternatives = found
                .into_iter()
                .filter(|e| e.fits)
                .take(ALTERNATIVES)
                .collect();
            Ok(PlanReport::Inference(Box::new(InferenceReport {
                kind: "inference",
                subject,
                precision: if spec.fp8 { "fp8" } else { "bf16" },
                prompt_tokens: spec.prompt_tokens,
                output_tokens: spec.output_tokens,
                requested_concurrency: spec.concurrency,
                searched,
                estimate,
                alternatives,
                notes: caveats(hw, spec.fp8, false),
            })))
        }
    }
}

/// The accelerators of the published runs under data/calibration that the model is validated
/// against (`crates/perf/tests/validation.rs` checks this list against the files).
pub const VALIDATED_ON: &[&str] = &[
    "A100-40GB",
    "A100-80GB",
    "H100-SXM",
    "H200",
    "B200",
    "GB200",
    "GB300",
    "TPU-v6e",
];

/// A note when a searched FP8 training plan is slower than the same search in BF16: FP8 keeps
/// an FP8 copy of the weights beside the BF16 ones and adds casts, and where that pushes the
/// fastest layouts out of memory, or the casts cost more than the faster multiplies save, the
/// user asked for the slower precision. (On chips whose FP8 peak is no higher than BF16's a
/// general note says so too; this one gives the figures.)
fn bf16_would_be_faster(
    m: &ModelSpec,
    hw: &Hardware,
    spec: &TrainingSpec,
    c: &LayoutConstraint,
    opts: &SearchOptions,
    fp8_best: &TrainingEstimate,
) -> Result<Option<String>, PerfError> {
    let bf16 = TrainingSpec {
        fp8: false,
        ..*spec
    };
    let found = search(m, hw, &bf16, c, &SearchOptions { keep: 1, ..*opts })?;
    Ok(found
        .first()
        .filter(|b| b.fits && b.step_time_s < fp8_best.step_time_s * BF16_FASTER_BY)
        .map(|b| {
            format!(
                "BF16 trains faster on these devices: {} a step ({}) against {} in FP8, \
                 whose extra copy of the weights and casts cost more here than its faster \
                 matrix multiplies save",
                seconds(b.step_time_s),
                b.layout_label(),
                seconds(fp8_best.step_time_s),
            )
        }))
}

/// A note when expert-parallel all-to-all is a large share of the step: the model overlaps
/// none of it, as Megatron-Core's default schedules do not, while schedules built to hide it
/// (DeepSeek-V3's DualPipe, which overlaps a micro-batch's dispatch with another's compute)
/// train faster than predicted.
fn unhidden_expert_traffic(best: &TrainingEstimate) -> Option<String> {
    let ep = best.breakdown.ep_comm_s;
    (ep > UNHIDDEN_EXPERT_TRAFFIC_SHARE * best.step_time_s).then(|| {
        format!(
            "expert-parallel all-to-all takes {} of the {} step ({:.0}%), none of it overlapped \
             with compute: a schedule that hides it (DeepSeek-V3's DualPipe) trains faster \
             than this",
            seconds(ep),
            seconds(best.step_time_s),
            ep / best.step_time_s * 100.0
        )
    })
}

/// The share of a step spent in expert-parallel all-to-all above which a plan says that it is
/// not overlapped ([`unhidden_expert_traffic`]).
const UNHIDDEN_EXPERT_TRAFFIC_SHARE: f64 = 0.25;

/// What `hw`'s nodes write a checkpoint at together, each at its own client rate, GB/s.
fn nodes_write_gb_s(hw: &Hardware) -> f64 {
    f64::from(hw.nodes().max(1)) * CHECKPOINT_WRITE_GB_S_PER_NODE
}

/// A note when the token budget's checkpoint writes assume the nodes' own rate adds up to
/// more than any published storage took in, because the cluster states no storage rate.
fn unstated_storage(hw: &Hardware) -> Option<String> {
    let nodes = hw.nodes().max(1);
    let nodes_gb_s = nodes_write_gb_s(hw);
    (hw.checkpoint_write_gb_s.is_none() && nodes_gb_s > PUBLISHED_CHECKPOINT_WRITE_GB_S).then(
        || {
            format!(
                "checkpoints are written at {:.1} TB/s ({nodes} nodes at \
                 {CHECKPOINT_WRITE_GB_S_PER_NODE} GB/s each), more than any published run's \
                 storage took in (Llama 3's: about 2 TB/s); a fleet cluster that states its \
                 storage's rate (checkpoint_write_gb_s) gives a truer checkpoint interval and \
                 goodput",
                nodes_gb_s / 1000.0
            )
        },
    )
}

/// How much faster BF16 must be for [`bf16_would_be_faster`] to say so: differences under 1%
/// are within the model's rounding of kernel efficiencies.
const BF16_FASTER_BY: f64 = 0.99;

fn seconds(s: f64) -> String {
    if s >= 10.0 {
        format!("{s:.1} s")
    } else {
        format!("{s:.3} s")
    }
}

/// What the figures assume about `hw` at this precision that the reader should know: a chip
/// without BF16 costed in the format it trains in, an FP8 peak no higher than the BF16 one,
/// kernel efficiencies that no published run on the chip checks.
pub fn caveats(hw: &Hardware, fp8: bool, training: bool) -> Vec<String> {
    let a = hw.accelerator;
    let mut notes = Vec::new();
    let format = a.training_format();
    if !fp8 && format != "BF16" {
        notes.push(format!(
            "{} has no BF16 arithmetic: the plan is costed at its {format} rate ({} TFLOP/s), {}",
            a.name,
            a.bf16_tflops,
            if format == "FP16" {
                "as mixed-precision FP16 training with loss scaling runs on it"
            } else {
                "its fastest matrix arithmetic"
            }
        ));
    }
    if fp8 && a.fp8_tflops.is_some_and(|f| f <= a.bf16_tflops) {
        let effect = if training {
            "FP8 training gains no matrix-multiply time here and adds casts and an FP8 copy of \
             the weights, so expect it slower than BF16 and to need more memory"
        } else {
            "FP8 halves the weights and the KV cache here but gains no matrix-multiply time"
        };
        notes.push(format!(
            "{}'s FP8 peak is no higher than its BF16 peak ({} TFLOP/s): {effect}",
            a.name, a.bf16_tflops
        ));
    }
    if !VALIDATED_ON.contains(&a.name) {
        notes.push(format!(
            "no published run on {} checks the model (the runs it is validated against are on \
             {}): its kernel efficiencies are assumed (docs/perf-model.md, \"Named \
             constants\"), so take the figures as an estimate",
            a.name,
            VALIDATED_ON.join(", ")
        ));
    }
    notes
}

/// The layout a constraint names when it gives the tensor and pipeline degrees (the data
/// degree follows from the device count), with the search's defaults for the rest.
fn given_layout(c: &LayoutConstraint, count: u32) -> Option<crate::layout::Layout> {
    let (tp, pp) = (c.tp?, c.pp?);
    let cp = c.cp.unwrap_or(1);
    let tp_pp_cp = tp.checked_mul(pp)?.checked_mul(cp)?;
    let dp = c.dp.unwrap_or_else(|| (count / tp_pp_cp.max(1)).max(1));
    Some(crate::layout::Layout {
        tp,
        pp,
        dp,
        cp,
        ep: c.ep.unwrap_or(1),
        etp: c.etp.unwrap_or(tp),
        microbatch: c.microbatch.unwrap_or(1),
        virtual_stages: c.virtual_stages.unwrap_or(1),
        recompute: c.recompute.unwrap_or(Recompute::None),
        sequence_parallel: c.sequence_parallel.unwrap_or(true) && tp > 1,
        zero: c.zero.unwrap_or(1),
    })
}

/// Tensor × pipeline (× expert, for MoE models) splits of one inference replica that the input
/// allows: a given `tp`, `pp` or `ep` is kept; otherwise every `tp` that divides the heads and
/// fits the scale-up domain (unless `allow_tp_beyond_scale_up`), with `pp` the rest of the
/// devices and at most one stage per layer, and every `ep` dividing both `tp` and the experts.
fn inference_layouts(input: &PlanInput) -> Vec<InferenceLayout> {
    let (m, hw, c) = (&input.model, &input.hardware, &input.constraint);
    let count = hw.count;
    crate::search::divisors(count)
        .into_iter()
        .map(|tp| (tp, count / tp))
        .filter(|&(tp, pp)| c.tp.is_none_or(|t| t == tp) && c.pp.is_none_or(|p| p == pp))
        .filter(|&(tp, pp)| {
            let given = c.tp == Some(tp);
            // A given ep must divide the tensor-parallel group: a searched tp it does not
            // divide is skipped (a given one is the estimate's input error).
            let ep_fits = given || c.ep.is_none_or(|ep| tp % ep == 0);
            m.heads % tp == 0
                && pp <= m.layers
                && ep_fits
                && (given || input.allow_tp_beyond_scale_up || tp <= hw.scale_up_domain)
        })
        .flat_map(|(tp, pp)| {
            // A given ep is kept (its errors are the estimate's); otherwise an MoE model tries
            // every expert split of its tensor-parallel group.
            let eps =
                c.ep.map_or_else(|| crate::infer::expert_splits(m, tp), |ep| vec![ep]);
            eps.into_iter()
                .map(move |ep| InferenceLayout { tp, pp, ep })
        })
        .collect()
}
