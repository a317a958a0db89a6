//! Predictions against published runs: the calibration CSVs (`data/calibration/`), whose
//! columns are the plan file's keys. Empty cells are chosen by the planner, exactly as an
//! absent key in a plan file.

use std::collections::HashMap;

use serde::Serialize;
use switchyard_core::accelerator;

use crate::PerfError;
use crate::hardware::Hardware;
use crate::infer::{Concurrency, InferenceLayout, InferenceSpec, estimate_inference};
use crate::layout::{Recompute, RecomputeModules};
use crate::model::ModelFields;
use crate::search::{LayoutConstraint, SearchOptions, search};
use crate::software::Software;
use crate::train::TrainingSpec;

/// Which kind of calibration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Training,
    Inference,
}

/// One row: prediction against publication.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowResult {
    pub id: String,
    pub source: String,
    pub model: String,
    pub accelerator: String,
    pub count: u32,
    pub published: f64,
    pub predicted: f64,
    /// predicted / published − 1.
    pub error: f64,
    /// The layout the prediction used (training: `tp/pp/dp/cp/ep [etpN] mb v recompute zero`,
    /// `etpN` when the experts are not split like the dense layers).
    pub layout: String,
    /// Whether the layout fits in the modelled memory per device. Every published row ran, so
    /// a row that does not fit is a fault of the memory model (or of the row).
    pub fits: bool,
    /// Training: modelled memory per device on the busiest stage and the usable capacity, GiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_per_device_gib: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_capacity_gib: Option<f64>,
}

/// A row's error as the report lists it, beside its line and id: without a leading `row ID: `
/// and in the CSV's words, whose columns are the plan file's keys without their tables.
fn in_csv_words(id: &str, error: &str) -> String {
    let error = error.strip_prefix(&format!("row {id}: ")).unwrap_or(error);
    [
        "[model] ",
        "[training] ",
        "[inference] ",
        "[hardware] ",
        "[parallelism] ",
    ]
    .iter()
    .fold(error.to_owned(), |e, table| e.replace(table, ""))
}

/// A row that could not be evaluated (a bad cell, an accelerator the catalog lacks, a layout
/// the model cannot express): reported, and left out of the statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowFailure {
    /// The row's `id`, or `?` when the row has none.
    pub id: String,
    /// Line in the CSV file (the header is line 1).
    pub line: usize,
    pub error: String,
}

/// A whole file's results: every row that could be evaluated, the statistics over them, and
/// the rows that could not.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidationReport {
    pub kind: Kind,
    pub rows: Vec<RowResult>,
    pub failed_rows: Vec<RowFailure>,
    pub median_abs_error: f64,
    pub worst_abs_error: f64,
    pub worst_id: String,
    pub mean_error: f64,
}

type Row = HashMap<String, String>;

fn cell<'a>(row: &'a Row, key: &str) -> Option<&'a str> {
    row.get(key).map(|s| s.trim()).filter(|s| !s.is_empty())
}

fn num<T: std::str::FromStr>(row: &Row, key: &str) -> Result<Option<T>, PerfError> {
    match cell(row, key) {
        None => Ok(None),
        Some(text) => text.parse::<T>().map(Some).map_err(|_| {
            PerfError::input(format!(
                "row {}: {key} = {text:?} is not {}",
                cell(row, "id").unwrap_or("?"),
                expected::<T>()
            ))
        }),
    }
}

/// What a cell of type `T` must hold, in words.
fn expected<T>() -> &'static str {
    match std::any::type_name::<T>() {
        "u8" => "a whole number from 0 to 255",
        "u32" => "a whole number (sizes and counts go up to 16777216)",
        "u64" => "a whole number of 0 or more",
        "i32" | "i64" => "a whole number",
        _ => "a number",
    }
}

fn need<T: std::str::FromStr>(row: &Row, key: &str) -> Result<T, PerfError> {
    num(row, key)?.ok_or_else(|| {
        PerfError::input(format!(
            "row {}: {key} is empty",
            cell(row, "id").unwrap_or("?")
        ))
    })
}

/// A count or size cell: a whole number from 1 to [`crate::MAX_SIZE`], as in a plan file.
fn size_opt(row: &Row, key: &str) -> Result<Option<u32>, PerfError> {
    let Some(text) = cell(row, key) else {
        return Ok(None);
    };
    let value = text.parse::<u64>().map_err(|_| {
        PerfError::input(format!(
            "row {}: {key} = {text:?} is not a whole number from 1 to {}",
            cell(row, "id").unwrap_or("?"),
            crate::MAX_SIZE
        ))
    })?;
    if value > u64::from(crate::MAX_SIZE) {
        return Err(PerfError::input(format!(
            "row {}: {key} = {value} is larger than the supported maximum {}",
            cell(row, "id").unwrap_or("?"),
            crate::MAX_SIZE
        )));
    }
    let value = u32::try_from(value).unwrap_or(u32::MAX);
    crate::check_size(value, || {
        format!("row {}: {key}", cell(row, "id").unwrap_or("?"))
    })
    .map(Some)
}

fn size(row: &Row, key: &str) -> Result<u32, PerfError> {
    size_opt(row, key)?.ok_or_else(|| {
        PerfError::input(format!(
            "row {}: {key} is empty",
            cell(row, "id").unwrap_or("?")
        ))
    })
}

/// The published throughput: a finite number above zero.
fn published(row: &Row, key: &str) -> Result<f64, PerfError> {
    let value: f64 = need(row, key)?;
    if positive_finite(value) && (PUBLISHED_MIN..=PUBLISHED_MAX).contains(&value) {
        Ok(value)
    } else {
        Err(PerfError::input(format!(
            "row {}: {key} = {} is not a throughput to compare with: it must lie between \
             {PUBLISHED_MIN:e} and {PUBLISHED_MAX:e} tokens/s",
            cell(row, "id").unwrap_or("?"),
            crate::number_in_words(value)
        )))
    }
}

/// Published throughputs outside this range are typing slips (a billion times what any fleet
/// trains or serves, or a millionth of a token a second), not runs to validate against.
const PUBLISHED_MIN: f64 = 1e-3;
const PUBLISHED_MAX: f64 = 1e12;

fn positive_finite(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

fn boolean(row: &Row, key: &str) -> Result<Option<bool>, PerfError> {
    match cell(row, key) {
        None => Ok(None),
        Some(t) => match t.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(Some(true)),
            "false" | "0" | "no" => Ok(Some(false)),
            _ => Err(PerfError::input(format!(
                "row {}: {key} = {t:?} is not true/false",
                cell(row, "id").unwrap_or("?")
            ))),
        },
    }
}

fn model_fields(row: &Row) -> Result<ModelFields, PerfError> {
    Ok(ModelFields {
        name: cell(row, "model").map(str::to_string),
        layers: num(row, "layers")?,
        hidden: num(row, "hidden")?,
        heads: num(row, "heads")?,
        kv_heads: num(row, "kv_heads")?,
        // Optional column: a per-head width other than hidden / heads.
        head_dim: num(row, "head_dim")?,
        ffn_hidden: num(row, "ffn_hidden")?,
        gated_ffn: boolean(row, "gated_ffn")?,
        vocab: num(row, "vocab")?,
        seq_len: num(row, "seq_len")?,
        experts: num(row, "experts")?,
        experts_per_token: num(row, "experts_per_token")?,
        expert_ffn_hidden: num(row, "expert_ffn_hidden")?,
        shared_experts: num(row, "shared_experts")?,
        moe_layers: num(row, "moe_layers")?,
        // Latent-attention columns, when a calibration file has them (the shared set does not).
        q_lora_rank: num(row, "q_lora_rank")?,
        kv_lora_rank: num(row, "kv_lora_rank")?,
        qk_nope_head_dim: num(row, "qk_nope_head_dim")?,
        qk_rope_head_dim: num(row, "qk_rope_head_dim")?,
        v_head_dim: num(row, "v_head_dim")?,
        sliding_window: num(row, "sliding_window")?,
        window_layers: num(row, "window_layers")?,
        preset: None,
    })
}

/// The row's accelerator, by catalog name or alias.
fn row_accelerator(row: &Row, id: &str) -> Result<&'static accelerator::Accelerator, PerfError> {
    let name = cell(row, "accelerator")
        .ok_or_else(|| PerfError::input(format!("row {id}: accelerator is empty")))?;
    accelerator::lookup(name)
        .ok_or_else(|| PerfError::input(format!("row {id}: unknown accelerator {name:?}")))
}

/// Whether the row runs in FP8, refused (as a plan file is) on a chip without FP8 arithmetic.
fn fp8(row: &Row, accel: &accelerator::Accelerator) -> Result<bool, PerfError> {
    match cell(row, "precision")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("fp8") if accel.fp8_tflops.is_none() => Err(PerfError::input(format!(
            "row {}: precision = \"fp8\" but {} has no FP8 arithmetic",
            cell(row, "id").unwrap_or("?"),
            accel.name
        ))),
        Some("fp8") => Ok(true),
        Some("bf16") | Some("fp16") | None => Ok(false),
        Some(other) => Err(PerfError::input(format!(
            "row {}: precision = {other:?} is not bf16 or fp8",
            cell(row, "id").unwrap_or("?")
        ))),
    }
}

/// The software stack each source ran, as the publication states it (training rows; the
/// columns cannot express it). Sources not listed get the default (current Megatron-Core).
///
/// | source | stack |
/// |---|---|
/// | `megatron_sc21` | Megatron-LM 2021 (no FlashAttention, no overlapped DP reduction, no sequence parallelism); its ZeRO-3 rows ran DeepSpeed ZeRO-3 (2021) |
/// | `korthikanti_2022` | Megatron-LM 2022 (same kernels plus sequence parallelism; the paper predates FlashAttention in Megatron) |
/// | `megascale` | the paper's Megatron-LM baseline, which lacks the FlashAttention-2 and DP/PP overlap MegaScale adds (§3) |
/// | `llm_foundry` | llm-foundry/Composer 2023: FSDP, MPT's Triton attention, flash-attn's fused cross-entropy |
/// | `maxtext_tpu_recipes` or any key naming MaxText | MaxText on TPU: all-to-all MoE dispatch, FP32 logits |
/// | any key naming torchtitan | PyTorch FSDP with fused attention |
/// | others | Megatron-Core / NeMo / Megatron-Bridge with Transformer Engine |
///
/// A row's own `software` column overrides this.
pub fn software_for(source: &str, zero: Option<u8>) -> Software {
    let key = source.trim().to_ascii_lowercase();
    match key.as_str() {
        "megatron_sc21" if zero == Some(3) => Software::DEEPSPEED_2021,
        "megatron_sc21" => Software::MEGATRON_2021,
        "korthikanti_2022" | "megascale" => Software::MEGATRON_2022,
        "llm_foundry" => Software::LLM_FOUNDRY_2023,
        _ if key.contains("maxtext") => Software::MAXTEXT,
        _ if key.contains("torchtitan") => Software::FSDP,
        _ => Software::MEGATRON_CORE,
    }
}

fn training_row(row: &Row) -> Result<RowResult, PerfError> {
    let id = cell(row, "id").unwrap_or("?").to_string();
    let mut fields = model_fields(row)?;
    if fields.seq_len.is_none() {
        fields.seq_len = Some(2048);
    }
    let model = fields.resolve()?;
    let accel = row_accelerator(row, &id)?;
    let count = size(row, "count")?;
    let mut hw = Hardware::from_accelerator(accel, count);
    if let Some(per_node) = size_opt(row, "per_node")? {
        hw.set_per_node(per_node);
    }
    // Optional column: the stack the run used, by name; otherwise the source's.
    let mut software = match cell(row, "software") {
        Some(name) => Software::named(name, &format!("row {id}:"))?,
        None => software_for(cell(row, "source").unwrap_or(""), num(row, "zero")?),
    };
    // Optional column: the MoE dispatcher the source names.
    software.expert_dispatch = crate::software::ExpertDispatch::choose(
        cell(row, "expert_dispatch"),
        software.expert_dispatch,
        model.moe.is_some(),
        &format!("row {id}:"),
    )?;
    let recompute = match cell(row, "recompute") {
        None => None,
        Some(t) => Some(Recompute::parse(t).ok_or_else(|| {
            PerfError::input(format!(
                "row {id}: recompute = {t:?} is not none/selective/full"
            ))
        })?),
    };
    // Optional column: Megatron-Core's recompute modules, e.g. "mla_up_proj mlp".
    let recompute_modules = match cell(row, "recompute_modules") {
        None => RecomputeModules::default(),
        Some(t) => crate::train::check_recompute_modules(
            RecomputeModules::parse_cell(t, &format!("row {id}: recompute_modules"))?,
            recompute,
            &model,
            &format!("row {id}:"),
        )?,
    };
    let spec = TrainingSpec {
        global_batch: size(row, "global_batch")?,
        fp8: fp8(row, accel)?,
        tokens: None,
        software,
        // Optional column: token capacity of a dropping MoE stack.
        capacity_factor: crate::train::check_capacity_factor(
            num(row, "capacity_factor")?,
            &model,
            &format!("row {id}:"),
        )?,
        recompute_modules,
    };
    let constraint = LayoutConstraint {
        tp: num(row, "tp")?,
        pp: num(row, "pp")?,
        dp: num(row, "dp")?,
        cp: num(row, "cp")?,
        ep: num(row, "ep")?,
        etp: num(row, "etp")?,
        microbatch: num(row, "microbatch")?,
        virtual_stages: num(row, "virtual_stages")?,
        recompute,
        sequence_parallel: boolean(row, "sequence_parallel")?,
        zero: num(row, "zero")?,
    };
    // The plan file's checks.
    crate::plan::check_constraint(&constraint, &model, &hw, true, true)?;
    let opts = SearchOptions {
        keep: 1,
        allow_tp_beyond_scale_up: true,
        ignore_memory: true,
        ..SearchOptions::default()
    };
    let best = search(&model, &hw, &spec, &constraint, &opts)?;
    let est = best.first().ok_or_else(|| {
        let why = crate::plan::why_no_layout(
            &constraint,
            &model,
            &hw,
            spec.global_batch,
            opts.allow_tp_beyond_scale_up,
        );
        PerfError::input(format!("row {id}: {why}"))
    })?;
    let published = published(row, "published_tokens_per_s")?;
    let error = relative_error(&id, est.tokens_per_s, published)?;
    let l = est.layout;
    Ok(RowResult {
        id,
        source: cell(row, "source").unwrap_or("").to_string(),
        model: model.name.clone(),
        accelerator: accel.name.to_string(),
        count,
        published,
        predicted: est.tokens_per_s,
        error,
        layout: format!(
            "{}/{}/{}/{}/{}{} mb{} v{} {} z{}{}",
            l.tp,
            l.pp,
            l.dp,
            l.cp,
            l.ep,
            l.etp_label(),
            l.microbatch,
            l.virtual_stages,
            l.recompute.label(est.recompute_modules),
            l.zero,
            if est.fits {
                String::new()
            } else {
                format!(
                    " (over memory {:.0}/{:.0} GiB)",
                    est.memory.total_gib, est.memory.capacity_gib
                )
            }
        ),
        fits: est.fits,
        memory_per_device_gib: Some(est.memory.total_gib),
        memory_capacity_gib: Some(est.memory.capacity_gib),
    })
}

fn inference_row(row: &Row) -> Result<RowResult, PerfError> {
    let id = cell(row, "id").unwrap_or("?").to_string();
    let mut fields = model_fields(row)?;
    let input = size(row, "input_tokens")?;
    let output = size(row, "output_tokens")?;
    if fields.seq_len.is_none() {
        fields.seq_len = Some(input + output);
    }
    let model = fields.resolve()?;
    let accel = row_accelerator(row, &id)?;
    let count = size(row, "count")?;
    let mut hw = Hardware::from_accelerator(accel, count);
    if let Some(per_node) = size_opt(row, "per_node")? {
        hw.set_per_node(per_node);
    }
    let concurrency = match cell(row, "concurrency") {
        None => Concurrency::Max,
        Some(t) if t.eq_ignore_ascii_case("max") => Concurrency::Max,
        Some(_) => Concurrency::Fixed(size(row, "concurrency")?),
    };
    let spec = InferenceSpec {
        fp8: fp8(row, accel)?,
        prompt_tokens: input,
        output_tokens: output,
        concurrency,
    };
    let tp = size_opt(row, "tp")?.unwrap_or(count);
    let pp = size_opt(row, "pp")?.unwrap_or(1);
    // An MoE row that does not say how its experts were split gets the planner's choice: the
    // fastest expert split of the tensor-parallel group that fits.
    let eps =
        size_opt(row, "ep")?.map_or_else(|| crate::infer::expert_splits(&model, tp), |ep| vec![ep]);
    let mut est: Option<crate::infer::InferenceEstimate> = None;
    for ep in eps {
        let e = estimate_inference(&model, &hw, &InferenceLayout { tp, pp, ep }, &spec)?;
        if est
            .as_ref()
            .is_none_or(|b| (e.fits, e.tokens_per_s) > (b.fits, b.tokens_per_s))
        {
            est = Some(e);
        }
    }
    let est = est.ok_or_else(|| PerfError::input(format!("row {id}: no expert split to cost")))?;
    let published = published(row, "published_output_tokens_per_s")?;
    let error = relative_error(&id, est.tokens_per_s, published)?;
    Ok(RowResult {
        id,
        source: cell(row, "source").unwrap_or("").to_string(),
        model: model.name.clone(),
        accelerator: accel.name.to_string(),
        count,
        published,
        predicted: est.tokens_per_s,
        error,
        layout: format!(
            "tp{} pp{}{} in{} out{} conc{}",
            tp,
            pp,
            if est.layout.ep > 1 {
                format!(" ep{}", est.layout.ep)
            } else {
                String::new()
            },
            input,
            output,
            est.concurrency
        ),
        fits: est.fits,
        memory_per_device_gib: None,
        memory_capacity_gib: None,
    })
}

/// predicted / published − 1. A prediction that is not a finite positive number (an input the
/// checks missed), or an error too large to state (a published figure near zero), fails the row
/// instead of slipping past the median and the worst case.
fn relative_error(id: &str, predicted: f64, published: f64) -> Result<f64, PerfError> {
    if !positive_finite(predicted) {
        return Err(PerfError::input(format!(
            "row {id}: the model gave no finite prediction ({predicted} tokens/s)"
        )));
    }
    let error = predicted / published - 1.0;
    if error.is_finite() {
        Ok(error)
    } else {
        Err(PerfError::input(format!(
            "row {id}: the published {published:e} tokens/s is too small to compare with the \
             prediction of {predicted:.0}"
        )))
    }
}

/// Median of a non-empty list.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Every column a calibration CSV may have: the plan file's keys, the published figure, and
/// where it comes from (`source`, `source_location`, `basis`: read by people, and `source` by
/// the software-stack lookup). A misspelt column would otherwise be an empty one, which the
/// planner fills in silently.
const COLUMNS: &[&str] = &[
    "id",
    "source",
    "source_location",
    "basis",
    "model",
    "accelerator",
    "count",
    "per_node",
    "layers",
    "hidden",
    "heads",
    "kv_heads",
    "head_dim",
    "ffn_hidden",
    "gated_ffn",
    "vocab",
    "seq_len",
    "experts",
    "experts_per_token",
    "expert_ffn_hidden",
    "shared_experts",
    "moe_layers",
    "q_lora_rank",
    "kv_lora_rank",
    "qk_nope_head_dim",
    "qk_rope_head_dim",
    "v_head_dim",
    "sliding_window",
    "window_layers",
    "global_batch",
    "precision",
    "software",
    "capacity_factor",
    "expert_dispatch",
    "tp",
    "pp",
    "dp",
    "cp",
    "ep",
    "etp",
    "microbatch",
    "virtual_stages",
    "recompute",
    "recompute_modules",
    "sequence_parallel",
    "zero",
    "input_tokens",
    "output_tokens",
    "concurrency",
    "published_tokens_per_s",
    "published_output_tokens_per_s",
];

/// Columns only an inference file reads.
const INFERENCE_ONLY: [&str; 3] = ["input_tokens", "output_tokens", "concurrency"];

/// Columns only a training file reads.
const TRAINING_ONLY: [&str; 13] = [
    "global_batch",
    "software",
    "capacity_factor",
    "expert_dispatch",
    "dp",
    "cp",
    "etp",
    "microbatch",
    "virtual_stages",
    "recompute",
    "recompute_modules",
    "sequence_parallel",
    "zero",
];

/// Validates every row of a calibration CSV (training or inference, told apart by the
/// throughput column).
pub fn validate_csv(text: &str) -> Result<ValidationReport, PerfError> {
    if text.trim().is_empty() {
        return Err(PerfError::input(
            "the CSV is empty: it needs a header line (the columns) and a row per run",
        ));
    }
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| PerfError::input(format!("cannot read the CSV header: {e}")))?
        .clone();
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = headers.iter().find(|h| !seen.insert(*h)) {
        return Err(PerfError::input(format!(
            "the CSV header names the column {twice:?} twice"
        )));
    }
    if let Some(unknown) = headers.iter().find(|h| !COLUMNS.contains(h)) {
        return Err(PerfError::input(format!(
            "unknown column {unknown:?} in the CSV header; the columns are these (mostly the plan \
             file's keys; an inference file's prompt length is input_tokens): {}",
            COLUMNS.join(", ")
        )));
    }
    if headers.iter().any(|h| h == "published_tokens_per_s")
        && headers.iter().any(|h| h == "published_output_tokens_per_s")
    {
        return Err(PerfError::input(
            "the CSV has both published_tokens_per_s (training) and \
             published_output_tokens_per_s (inference): a file holds one kind of run",
        ));
    }
    if !headers.iter().any(|h| h == "id") {
        return Err(PerfError::input(
            "the CSV has no id column: the report names each row by its id",
        ));
    }
    let kind = if headers.iter().any(|h| h == "published_tokens_per_s") {
        Kind::Training
    } else if headers.iter().any(|h| h == "published_output_tokens_per_s") {
        Kind::Inference
    } else {
        return Err(PerfError::input(
            "the CSV has neither a published_tokens_per_s nor a published_output_tokens_per_s column",
        ));
    };
    // A column of the other kind of run would be read by nothing: refuse it by name.
    let (other_kind, what) = match kind {
        Kind::Training => (&INFERENCE_ONLY[..], "an inference"),
        Kind::Inference => (&TRAINING_ONLY[..], "a training"),
    };
    if let Some(column) = headers.iter().find(|h| other_kind.contains(h)) {
        return Err(PerfError::input(format!(
            "the CSV's column {column:?} belongs to {what} file (this one's throughput column \
             makes it {} file): nothing would read it",
            match kind {
                Kind::Training => "a training",
                Kind::Inference => "an inference",
            }
        )));
    }
    let mut rows = Vec::new();
    let mut failed_rows = Vec::new();
    // The line each id was first seen on: a row given twice would count twice in the figures.
    let mut first_seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    // Lines are counted as the records go by (the newlines before each record's start).
    let bytes = text.as_bytes();
    let (mut counted_to, mut newlines) = (0usize, 0usize);
    for (i, record) in reader.records().enumerate() {
        // The line the record starts on (a quoted cell may span lines). The reader's byte
        // offset can point at the previous line's terminator; skip it.
        let position = match &record {
            Ok(r) => r.position(),
            Err(e) => e.position(),
        };
        let line = position.map_or(i + 2, |p| {
            let mut start = usize::try_from(p.byte())
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            while start < bytes.len() && matches!(bytes[start], b'\r' | b'\n') {
                start += 1;
            }
            if start > counted_to {
                newlines += bytes[counted_to..start]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count();
                counted_to = start;
            }
            newlines + 1
        });
        let (id, outcome) = match record {
            Err(e) => (
                "?".to_string(),
                Err(PerfError::input(format!("CSV line {line}: {e}"))),
            ),
            Ok(record) => {
                let row: Row = headers
                    .iter()
                    .zip(record.iter())
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                let id = cell(&row, "id").unwrap_or("?").to_string();
                let outcome = match cell(&row, "id") {
                    None => Err(PerfError::input("the row has no id")),
                    Some(given) => match first_seen.get(given) {
                        Some(first) => Err(PerfError::input(format!(
                            "id {given} is also the row on line {first}; a row is counted once"
                        ))),
                        None => {
                            first_seen.insert(given.to_owned(), line);
                            match kind {
                                Kind::Training => training_row(&row),
                                Kind::Inference => inference_row(&row),
                            }
                        }
                    },
                };
                (id, outcome)
            }
        };
        match outcome {
            Ok(result) => rows.push(result),
            Err(e) => failed_rows.push(RowFailure {
                error: in_csv_words(&id, &e.to_string()),
                id,
                line,
            }),
        }
    }
    if rows.is_empty() {
        return Err(match failed_rows.first() {
            None => PerfError::input("the CSV has no rows"),
            Some(f) => PerfError::input(format!(
                "no row could be evaluated ({} failed; the first, line {}: {})",
                failed_rows.len(),
                f.line,
                f.error
            )),
        });
    }
    let abs: Vec<f64> = rows.iter().map(|r| r.error.abs()).collect();
    let (worst_i, worst) =
        abs.iter().enumerate().fold(
            (0, 0.0f64),
            |acc, (i, &e)| if e > acc.1 { (i, e) } else { acc },
        );
    let mean_error = rows.iter().map(|r| r.error).sum::<f64>() / rows.len() as f64;
    Ok(ValidationReport {
        kind,
        median_abs_error: median(&abs),
        worst_abs_error: worst,
        worst_id: rows[worst_i].id.clone(),
        mean_error,
        rows,
        failed_rows,
    })
}
