//! The model being trained or served: a decoder-only transformer, dense or mixture-of-experts.
//!
//! [`ModelSpec`] is the validated `[model]` table of a plan file. Its counting functions give the
//! parameter counts, the model FLOPs per token (the formula `6·N + 12·L·d_attn·S`, with
//! `min(S, window)` on sliding-window layers) and
//! the per-layer shapes that the training and inference models cost.

use serde::Serialize;

use crate::PerfError;

/// Most experts a token may be routed to. Published models route to at most a few dozen
/// (DeepSeek-V3 8, Qwen3 8, Kimi K2 8, fine-grained research models up to 64); the bound keeps
/// the dispatch estimate, which is linear in it, cheap inside the layout search.
pub const MAX_EXPERTS_PER_TOKEN: u32 = 1024;

/// Mixture-of-experts part of a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MoeSpec {
    /// Routed experts per MoE layer.
    pub experts: u32,
    /// Routed experts each token goes to.
    pub experts_per_token: u32,
    /// FFN width of one expert (per gate/up projection when gated).
    pub expert_ffn_hidden: u32,
    /// Always-on shared experts (each `expert_ffn_hidden` wide).
    pub shared_experts: u32,
    /// How many layers are MoE; the others (the first ones) are dense with `ffn_hidden`.
    pub moe_layers: u32,
}

/// Sliding-window (local) attention on some layers: each query attends to at most the last
/// `tokens` positions (Mistral 7B, Gemma 2/3, GPT-OSS). The other layers attend globally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SlidingWindow {
    /// Positions a windowed layer's query attends to (itself included).
    pub tokens: u32,
    /// How many layers are windowed.
    pub layers: u32,
}

/// How tensor parallelism splits one projection's weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TpSplit {
    /// By output columns (column-parallel: QKV, up projections).
    Columns,
    /// By input rows (row-parallel: the output projection).
    Rows,
    /// Not split: every rank holds and runs all of it.
    Replicated,
}

impl TpSplit {
    /// The per-rank GEMM `(n, k)` of an `out × input` projection over `tp` ranks.
    pub fn per_rank(self, out: f64, input: f64, tp: f64) -> (f64, f64) {
        match self {
            TpSplit::Columns => (out / tp, input),
            TpSplit::Rows => (out, input / tp),
            TpSplit::Replicated => (out, input),
        }
    }
}

/// Multi-head latent attention (DeepSeek-V2/V3, Kimi K2): keys and values are up-projected
/// from a shared low-rank latent, which is all the KV cache holds; queries optionally go
/// through their own low-rank bottleneck. Head widths differ from `hidden/heads`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MlaSpec {
    /// Query bottleneck rank; 0 when queries are projected from the hidden state directly.
    pub q_lora_rank: u32,
    /// Rank of the shared key/value latent (what the KV cache stores per token and layer).
    pub kv_lora_rank: u32,
    /// Per-head query/key width without and with rotary position embedding.
    pub qk_nope_head_dim: u32,
    pub qk_rope_head_dim: u32,
    /// Per-head value width.
    pub v_head_dim: u32,
}

/// A decoder-only transformer: the `[model]` table of a plan file, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelSpec {
    pub name: String,
    pub layers: u32,
    /// Model width (`d_model`).
    pub hidden: u32,
    /// Attention (query) heads.
    pub heads: u32,
    /// Key/value heads (GQA/MQA); equal to `heads` for plain multi-head attention.
    pub kv_heads: u32,
    /// Width of one query, key or value head: `hidden / heads` unless the model sets its own
    /// (Qwen3, Gemma and GPT-OSS project to heads wider or narrower than `hidden / heads`).
    /// Latent attention has its own widths ([`MlaSpec`]) instead.
    pub head_dim: u32,
    /// Dense FFN width (per gate/up projection when gated).
    pub ffn_hidden: u32,
    /// SwiGLU-style FFN (three matrices) instead of a two-matrix MLP.
    pub gated_ffn: bool,
    pub vocab: u32,
    /// Tokens per training sequence (and the context the FLOP formula uses).
    pub seq_len: u32,
    pub moe: Option<MoeSpec>,
    /// Multi-head latent attention instead of multi-/grouped-query attention.
    pub mla: Option<MlaSpec>,
    /// Sliding-window attention on some or all layers.
    pub window: Option<SlidingWindow>,
}

/// The optional fields of a `[model]` table, as a file writes them.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFields {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "crate::some_count")]
    pub layers: Option<u32>,
    #[serde(default, deserialize_with = "crate::some_count")]
    pub hidden: Option<u32>,
    #[serde(default, deserialize_with = "crate::some_count")]
    pub heads: Option<u32>,
    #[serde(default, deserialize_with = "crate::some_count")]
    pub kv_heads: Option<u32>,
    /// Per-head width when it is not `hidden / heads`.
    #[serde(default, deserialize_with = "crate::some_count")]
    pub head_dim: Option<u32>,
    #[serde(default, deserialize_with = "crate::some_count")]
    pub ffn_hidden: Option<u32>,
    pub gated_ffn: Option<bool>,
    #[serde(default, deserialize_with = "crate::some_count")]
    pub vocab: Option<u32>,
    #[serde(default, deserialize_with = "crate::some_count")]
    pub seq_len: Option<u32>,
    #[serde(default, deserialize_with = "crate::some_count")]
    pub experts: Option<u32>,
    #[serde(default, deserialize_with = "crate::some_count")]
    pub experts_per_token: Option<u32>,
    #[serde(default, deserialize_with = "crate::some_count")]
    pub expert_ffn_hidden: Option<u32>,
    pub shared_experts: Option<u32>,
    pub moe_layers: Option<u32>,
    /// Multi-head latent attention ([`MlaSpec`]): all of `kv_lora_rank`, `qk_nope_head_dim`,
    /// `qk_rope_head_dim` and `v_head_dim`, plus `q_lora_rank` if queries are compressed too.
    /// With them `kv_heads` is ignored: every query head has its own key and value.
    pub q_lora_rank: Option<u32>,
    #[serde(default, deserialize_with = "crate::some_count")]
    pub kv_lora_rank: Option<u32>,
    #[serde(default, deserialize_with = "crate::some_count")]
    pub qk_nope_head_dim: Option<u32>,
    #[serde(default, deserialize_with = "crate::some_count")]
    pub qk_rope_head_dim: Option<u32>,
    #[serde(default, deserialize_with = "crate::some_count")]
    pub v_head_dim: Option<u32>,
    /// Sliding-window attention: the window in tokens, and how many layers use it (all when
    /// not given).
    #[serde(default, deserialize_with = "crate::some_count")]
    pub sliding_window: Option<u32>,
    pub window_layers: Option<u32>,
    /// A preset (see [`ModelSpec::preset`]) whose fields the others override.
    pub preset: Option<String>,
}

fn required(value: Option<u32>, field: &str) -> Result<u32, PerfError> {
    match value {
        Some(v) => crate::check_size(v, || format!("[model] {field}")),
        None => Err(PerfError::input(format!("[model] {field} is missing"))),
    }
}

impl ModelFields {
    /// Validates the fields into a model, filling defaults: `kv_heads = heads`,
    /// `ffn_hidden = 4·hidden`, `gated_ffn = false`, `moe_layers = layers`, `shared_experts = 0`
    /// (an MoE model's `experts_per_token` and `expert_ffn_hidden` have none).
    pub fn resolve(&self) -> Result<ModelSpec, PerfError> {
        let base = match &self.preset {
            Some(p) => Some(ModelSpec::preset(p).ok_or_else(|| {
                PerfError::input(format!(
                    "[model] preset = \"{p}\" is not a known preset (known: {})",
                    ModelSpec::preset_names().join(", ")
                ))
            })?),
            None => None,
        };
        let b = base.as_ref();
        let pick = |v: Option<u32>, f: fn(&ModelSpec) -> u32| v.or_else(|| b.map(f));
        let layers = required(pick(self.layers, |m| m.layers), "layers")?;
        let hidden = required(pick(self.hidden, |m| m.hidden), "hidden")?;
        let heads = required(pick(self.heads, |m| m.heads), "heads")?;
        let vocab = required(pick(self.vocab, |m| m.vocab), "vocab")?;
        let seq_len = required(pick(self.seq_len, |m| m.seq_len), "seq_len")?;
        let kv_heads = required(
            pick(self.kv_heads, |m| m.kv_heads).or(Some(heads)),
            "kv_heads",
        )?;
        let ffn_given = pick(self.ffn_hidden, |m| m.ffn_hidden);
        let ffn_hidden = required(
            ffn_given.or(Some(4 * hidden)),
            if ffn_given.is_some() {
                "ffn_hidden"
            } else {
                "ffn_hidden (4 × hidden, as none was given)"
            },
        )?;
        let gated_ffn = self.gated_ffn.or(b.map(|m| m.gated_ffn)).unwrap_or(false);
        if let Some(name) = &self.name
            && (name.trim().is_empty() || name.chars().any(char::is_control))
        {
            return Err(PerfError::input(format!(
                "[model] name = {name:?} must be a non-empty name without control characters \
                 (leave it out to take the preset's, or \"model\")"
            )));
        }
        let name = self
            .name
            .clone()
            .or(b.map(|m| m.name.clone()))
            .unwrap_or_else(|| "model".to_string());
        let base_moe = b.and_then(|m| m.moe.clone());
        let experts = self.experts.or(base_moe.as_ref().map(|m| m.experts));
        let moe = match experts {
            Some(n @ (0 | 1)) => {
                return Err(PerfError::input(format!(
                    "[model] experts = {n}: a mixture of experts needs at least 2 \
                     (leave experts out for a dense model)"
                )));
            }
            None => {
                for (v, f) in [
                    (self.experts_per_token, "experts_per_token"),
                    (self.expert_ffn_hidden, "expert_ffn_hidden"),
                    (self.moe_layers, "moe_layers"),
                    (self.shared_experts, "shared_experts"),
                ] {
                    if v.is_some() && experts.is_none() {
                        return Err(PerfError::input(format!(
                            "[model] {f} is set but experts is not"
                        )));
                    }
                }
                None
            }
            Some(experts) => {
                let bm = base_moe.as_ref();
                // No guess for these: one expert per token, or experts as wide as a dense
                // FFN, would make another model than the one meant.
                let experts_per_token = required(
                    self.experts_per_token.or(bm.map(|m| m.experts_per_token)),
                    "experts_per_token (the experts each token is routed to) of a mixture of experts",
                )?;
                let expert_ffn_hidden = required(
                    self.expert_ffn_hidden.or(bm.map(|m| m.expert_ffn_hidden)),
                    "expert_ffn_hidden (each expert's FFN width) of a mixture of experts",
                )?;
                let shared_experts = self
                    .shared_experts
                    .or(bm.map(|m| m.shared_experts))
                    .unwrap_or(0);
                // A preset's leading dense layers stay dense when the file changes `layers`.
                let moe_layers = self
                    .moe_layers
                    .or(bm.map(|m| {
                        let dense = b.map_or(0, |base| base.layers - m.moe_layers);
                        layers.saturating_sub(dense)
                    }))
                    .unwrap_or(layers);
                if experts_per_token > experts {
                    return Err(PerfError::input(format!(
                        "[model] experts_per_token = {experts_per_token} exceeds experts = {experts}"
                    )));
                }
                if moe_layers == 0 {
                    return Err(PerfError::input(match (self.moe_layers, b) {
                        (None, Some(base)) => format!(
                            "[model] layers = {layers} leaves no mixture-of-experts layer: preset \
                             \"{}\" keeps its first {} layers dense (give more layers, or \
                             moe_layers)",
                            base.name,
                            base.layers - bm.map_or(0, |m| m.moe_layers)
                        ),
                        _ => "[model] moe_layers = 0: a mixture of experts needs at least one MoE \
                              layer (leave experts out for a dense model)"
                            .to_owned(),
                    }));
                }
                if moe_layers > layers {
                    return Err(PerfError::input(format!(
                        "[model] moe_layers = {moe_layers} exceeds layers = {layers}"
                    )));
                }
                Some(MoeSpec {
                    experts,
                    experts_per_token,
                    expert_ffn_hidden,
                    shared_experts,
                    moe_layers,
                })
            }
        };
        let mla = self.resolve_mla(b.and_then(|m| m.mla.clone()))?;
        let head_dim = match (self.head_dim, &mla) {
            (Some(_), Some(_)) => {
                return Err(PerfError::input(
                    "[model] head_dim does not apply to latent attention, whose heads are \
                     qk_nope_head_dim + qk_rope_head_dim (queries and keys) and v_head_dim \
                     (values) wide",
                ));
            }
            (Some(d), None) => required(Some(d), "head_dim")?,
            // Latent attention has its own widths; this one is never used.
            (None, Some(_)) => (hidden / heads).max(1),
            (None, None) => match b {
                // A preset whose heads have their own width (Qwen3, GPT-OSS) keeps it when the
                // file changes hidden or heads; one derived from hidden / heads follows them.
                Some(base) if base.head_dim * base.heads != base.hidden => base.head_dim,
                _ => {
                    if hidden % heads != 0 {
                        return Err(PerfError::input(format!(
                            "[model] heads = {heads} does not divide hidden = {hidden} \
                             (set head_dim for heads that are not hidden / heads wide)"
                        )));
                    }
                    hidden / heads
                }
            },
        };
        let base_window = b.and_then(|m| m.window);
        let window = match (
            self.sliding_window.or(base_window.map(|w| w.tokens)),
            self.window_layers,
        ) {
            (None, Some(_)) => {
                return Err(PerfError::input(
                    "[model] window_layers is set but sliding_window is not",
                ));
            }
            (None, None) => None,
            (Some(tokens), window_layers) => {
                let tokens = required(Some(tokens), "sliding_window")?;
                // A preset's share of windowed layers carries over to another `layers`.
                let window_layers = window_layers
                    .or(base_window.and_then(|w| {
                        let base_layers = u64::from(b.map_or(layers, |base| base.layers));
                        u32::try_from(u64::from(w.layers) * u64::from(layers) / base_layers).ok()
                    }))
                    .unwrap_or(layers);
                if window_layers > layers {
                    return Err(PerfError::input(format!(
                        "[model] window_layers = {window_layers} exceeds layers = {layers}"
                    )));
                }
                Some(SlidingWindow {
                    tokens,
                    layers: window_layers,
                })
            }
        };
        // A preset's kv_heads the file did not set, against heads the file did: say whose.
        if let Some(p) = &self.preset
            && self.kv_heads.is_none()
            && mla.is_none()
            && (kv_heads > heads || !heads.is_multiple_of(kv_heads))
        {
            return Err(PerfError::input(format!(
                "[model] kv_heads = {kv_heads} (preset \"{p}\"'s: the file does not set it) does \
                 not divide heads = {heads}: set kv_heads too"
            )));
        }
        let spec = ModelSpec {
            name,
            layers,
            hidden,
            heads,
            head_dim,
            // Latent attention gives every query head its own key and value.
            kv_heads: if mla.is_some() { heads } else { kv_heads },
            ffn_hidden,
            gated_ffn,
            vocab,
            seq_len,
            moe,
            mla,
            window,
        };
        spec.validate()?;
        Ok(spec)
    }

    /// The latent-attention fields, over a preset's: none of them, or all four widths (the
    /// query rank is optional).
    fn resolve_mla(&self, base: Option<MlaSpec>) -> Result<Option<MlaSpec>, PerfError> {
        let given = [
            ("kv_lora_rank", self.kv_lora_rank),
            ("qk_nope_head_dim", self.qk_nope_head_dim),
            ("qk_rope_head_dim", self.qk_rope_head_dim),
            ("v_head_dim", self.v_head_dim),
        ];
        if given.iter().all(|(_, v)| v.is_none()) && self.q_lora_rank.is_none() {
            return Ok(base);
        }
        let b = base.as_ref();
        let field = |name: &str,
                     own: Option<u32>,
                     of_base: Option<u32>|
         -> Result<u32, PerfError> {
            match own.or(of_base) {
                Some(v) => required(Some(v), name),
                None => Err(PerfError::input(format!(
                    "[model] multi-head latent attention needs {name} as well (give kv_lora_rank, \
                     qk_nope_head_dim, qk_rope_head_dim and v_head_dim together)"
                ))),
            }
        };
        let q_lora_rank = self.q_lora_rank.or(b.map(|m| m.q_lora_rank)).unwrap_or(0);
        Ok(Some(MlaSpec {
            q_lora_rank: crate::within_max_size(q_lora_rank, "[model] q_lora_rank")?,
            kv_lora_rank: field("kv_lora_rank", self.kv_lora_rank, b.map(|m| m.kv_lora_rank))?,
            qk_nope_head_dim: field(
                "qk_nope_head_dim",
                self.qk_nope_head_dim,
                b.map(|m| m.qk_nope_head_dim),
            )?,
            qk_rope_head_dim: field(
                "qk_rope_head_dim",
                self.qk_rope_head_dim,
                b.map(|m| m.qk_rope_head_dim),
            )?,
            v_head_dim: field("v_head_dim", self.v_head_dim, b.map(|m| m.v_head_dim))?,
        }))
    }
}

impl ModelSpec {
    /// Names [`ModelSpec::preset`] knows.
    pub fn preset_names() -> &'static [&'static str] {
        &[
            "llama3-8b",
            "llama3-70b",
            "llama3-405b",
            "deepseek-v3",
            "gpt3-175b",
            "mixtral-8x7b",
            "qwen3-30b-a3b",
            "qwen3-235b-a22b",
            "gpt-oss-120b",
        ]
    }

    /// Well-known architectures: Llama 3 8B/70B/405B (Llama 3 paper, Table 3; vocabulary
    /// 128,256; sequence 8,192), DeepSeek-V3 (config_671B.json, multi-head latent attention
    /// with ranks 1,536/512 and head widths 128+64/128; sequence 4,096), GPT-3 175B (Brown et al. 2020, sequence 2,048) and
    /// Mixtral 8x7B (Mistral's release config, sequence 4,096), Qwen3-30B-A3B and
    /// Qwen3-235B-A22B (their release `config.json`: 128 experts, top-8, heads 128 wide over a
    /// narrower model; sequence 4,096) and GPT-OSS-120B (its `config.json`: 128 experts, top-4,
    /// 64-wide heads, a 128-token sliding window on every other layer; sequence 8,192; its
    /// attention sinks, a per-head bias on the softmax, cost nothing measurable).
    pub fn preset(name: &str) -> Option<ModelSpec> {
        let key: String = name
            .chars()
            .filter(|c| !matches!(c, ' ' | '_' | '-' | '.'))
            .flat_map(char::to_lowercase)
            .collect();
        let dense =
            |name: &str, layers, hidden: u32, heads: u32, kv_heads, ffn_hidden, vocab, seq_len| {
                ModelSpec {
                    name: name.to_string(),
                    layers,
                    hidden,
                    heads,
                    head_dim: hidden / heads,
                    kv_heads,
                    ffn_hidden,
                    gated_ffn: true,
                    vocab,
                    seq_len,
                    moe: None,
                    mla: None,
                    window: None,
                }
            };
        // All layers routed, no shared expert, heads `head_dim` wide.
        let routed = |mut m: ModelSpec, head_dim, experts, experts_per_token, expert_ffn_hidden| {
            m.head_dim = head_dim;
            m.moe = Some(MoeSpec {
                experts,
                experts_per_token,
                expert_ffn_hidden,
                shared_experts: 0,
                moe_layers: m.layers,
            });
            m
        };
        match key.as_str() {
            "llama38b" | "llama318b" => {
                Some(dense("llama3-8b", 32, 4096, 32, 8, 14336, 128_256, 8192))
            }
            "llama370b" | "llama3170b" | "llama3370b" => {
                Some(dense("llama3-70b", 80, 8192, 64, 8, 28672, 128_256, 8192))
            }
            "llama3405b" | "llama31405b" => Some(dense(
                "llama3-405b",
                126,
                16384,
                128,
                8,
                53248,
                128_256,
                8192,
            )),
            "gpt3175b" => {
                let mut m = dense("gpt3-175b", 96, 12288, 96, 96, 49152, 50_257, 2048);
                m.gated_ffn = false;
                Some(m)
            }
            "deepseekv3" | "deepseekv3671b" => {
                let mut m = dense("deepseek-v3", 61, 7168, 128, 128, 18432, 129_280, 4096);
                m.moe = Some(MoeSpec {
                    experts: 256,
                    experts_per_token: 8,
                    expert_ffn_hidden: 2048,
                    shared_experts: 1,
                    moe_layers: 58,
                });
                m.mla = Some(MlaSpec {
                    q_lora_rank: 1536,
                    kv_lora_rank: 512,
                    qk_nope_head_dim: 128,
                    qk_rope_head_dim: 64,
                    v_head_dim: 128,
                });
                Some(m)
            }
            "qwen330ba3b" => Some(routed(
                dense("qwen3-30b-a3b", 48, 2048, 32, 4, 6144, 151_936, 4096),
                128,
                128,
                8,
                768,
            )),
            "qwen3235ba22b" => Some(routed(
                dense("qwen3-235b-a22b", 94, 4096, 64, 4, 12288, 151_936, 4096),
                128,
                128,
                8,
                1536,
            )),
            "gptoss120b" => {
                let mut m = routed(
                    dense("gpt-oss-120b", 36, 2880, 64, 8, 2880, 201_088, 8192),
                    64,
                    128,
                    4,
                    2880,
                );
                // Every other layer attends over a 128-token window.
                m.window = Some(SlidingWindow {
                    tokens: 128,
                    layers: 18,
                });
                Some(m)
            }
            "mixtral8x7b" => {
                let mut m = dense("mixtral-8x7b", 32, 4096, 32, 8, 14336, 32_000, 4096);
                m.moe = Some(MoeSpec {
                    experts: 8,
                    experts_per_token: 2,
                    expert_ffn_hidden: 14336,
                    shared_experts: 0,
                    moe_layers: 32,
                });
                Some(m)
            }
            _ => None,
        }
    }

    /// Checks the shape rules; the message names the field.
    pub fn validate(&self) -> Result<(), PerfError> {
        for (v, f) in [
            (self.layers, "layers"),
            (self.hidden, "hidden"),
            (self.heads, "heads"),
            (self.kv_heads, "kv_heads"),
            (self.head_dim, "head_dim"),
            (self.ffn_hidden, "ffn_hidden"),
            (self.vocab, "vocab"),
            (self.seq_len, "seq_len"),
        ] {
            crate::check_size(v, || format!("[model] {f}"))?;
        }
        crate::within_max_size(
            self.heads.saturating_mul(self.head_dim),
            "[model] heads × head_dim",
        )?;
        if self.kv_heads > self.heads || !self.heads.is_multiple_of(self.kv_heads) {
            return Err(PerfError::input(format!(
                "[model] kv_heads = {} does not divide heads = {}",
                self.kv_heads, self.heads
            )));
        }
        if let Some(w) = &self.window {
            if w.tokens == 0 {
                return Err(PerfError::input(
                    "[model] sliding_window must be at least 1",
                ));
            }
            crate::within_max_size(w.tokens, "[model] sliding_window")?;
            if w.layers > self.layers {
                return Err(PerfError::input(format!(
                    "[model] window_layers = {} exceeds layers = {}",
                    w.layers, self.layers
                )));
            }
        }
        if let Some(moe) = &self.moe {
            if moe.experts_per_token == 0 || moe.expert_ffn_hidden == 0 {
                return Err(PerfError::input(
                    "[model] experts_per_token and expert_ffn_hidden must be at least 1",
                ));
            }
            for (v, f) in [
                (moe.experts, "experts"),
                (moe.expert_ffn_hidden, "expert_ffn_hidden"),
                (moe.shared_experts, "shared_experts"),
            ] {
                crate::within_max_size(v, &format!("[model] {f}"))?;
            }
            if moe.experts_per_token > moe.experts {
                return Err(PerfError::input(format!(
                    "[model] experts_per_token = {} exceeds experts = {}",
                    moe.experts_per_token, moe.experts
                )));
            }
            if moe.experts_per_token > MAX_EXPERTS_PER_TOKEN {
                return Err(PerfError::input(format!(
                    "[model] experts_per_token = {} is larger than the supported maximum \
                     {MAX_EXPERTS_PER_TOKEN}",
                    moe.experts_per_token
                )));
            }
            if moe.moe_layers > self.layers {
                return Err(PerfError::input(format!(
                    "[model] moe_layers = {} exceeds layers = {}",
                    moe.moe_layers, self.layers
                )));
            }
        }
        Ok(())
    }

    pub fn head_dim(&self) -> u32 {
        self.head_dim
    }

    /// Width of the key (or value) projection output.
    pub fn kv_dim(&self) -> u32 {
        self.kv_heads * self.head_dim()
    }

    /// Per-head query/key width (`head_dim`, or MLA's no-rope plus rope widths).
    pub fn qk_head_dim(&self) -> u32 {
        self.mla
            .as_ref()
            .map_or(self.head_dim(), |a| a.qk_nope_head_dim + a.qk_rope_head_dim)
    }

    /// Per-head value width.
    pub fn v_head_dim(&self) -> u32 {
        self.mla.as_ref().map_or(self.head_dim(), |a| a.v_head_dim)
    }

    /// Widths of one token's queries, keys and values after projection (all heads).
    pub fn qkv_widths(&self) -> (f64, f64, f64) {
        let kv_heads = f64::from(self.kv_heads);
        (
            f64::from(self.heads) * f64::from(self.qk_head_dim()),
            kv_heads * f64::from(self.qk_head_dim()),
            kv_heads * f64::from(self.v_head_dim()),
        )
    }

    /// Width of one token's attention output (all heads' weighted values): the output
    /// projection's input: heads × `head_dim` (`hidden` for plain multi-head attention).
    pub fn attention_output_width(&self) -> f64 {
        f64::from(self.heads) * f64::from(self.v_head_dim())
    }

    /// `d_attn` of the FLOP formula: heads × the mean of the query/key and value head widths
    /// (heads × `head_dim` without latent attention). Scores cost `2·S·heads·d_qk` per token and the
    /// weighted values `2·S·heads·d_v`, so attention FLOPs scale with this width.
    pub fn attention_width(&self) -> f64 {
        f64::from(self.heads) * (f64::from(self.qk_head_dim()) + f64::from(self.v_head_dim())) / 2.0
    }

    /// Whether an attention projection (`input` wide, split `split`) is one of MLA's up
    /// projections: column-split, from a latent narrower than the hidden size.
    pub fn is_mla_up_projection(&self, input: f64, split: TpSplit) -> bool {
        self.mla.is_some() && split == TpSplit::Columns && input < f64::from(self.hidden)
    }

    /// The attention projections of one layer as GEMMs over a token: (output width, input
    /// width, how tensor parallelism splits it). Multi-/grouped-query attention: fused QKV
    /// (split by columns) and the output projection (by rows). Latent attention: the query
    /// down (if any) and up projections, the joint key/value-latent-plus-rope down projection,
    /// the key/value up projection and the output projection; the down projections are
    /// replicated on every tensor-parallel rank (Megatron-Core's MLA), the rest split by heads.
    pub fn attention_projections(&self) -> impl Iterator<Item = (f64, f64, TpSplit)> {
        let h = f64::from(self.hidden);
        let heads = f64::from(self.heads);
        let shapes: [Option<(f64, f64, TpSplit)>; 5] = match &self.mla {
            None => {
                let (q, k, v) = self.qkv_widths();
                [
                    Some((q + k + v, h, TpSplit::Columns)),
                    Some((h, q, TpSplit::Rows)),
                    None,
                    None,
                    None,
                ]
            }
            Some(a) => {
                let dqk = f64::from(a.qk_nope_head_dim + a.qk_rope_head_dim);
                let dv = f64::from(a.v_head_dim);
                let kv_lora = f64::from(a.kv_lora_rank);
                let q_lora = f64::from(a.q_lora_rank);
                let (q_down, q_up) = if a.q_lora_rank > 0 {
                    (
                        Some((q_lora, h, TpSplit::Replicated)),
                        (heads * dqk, q_lora, TpSplit::Columns),
                    )
                } else {
                    (None, (heads * dqk, h, TpSplit::Columns))
                };
                [
                    q_down,
                    Some(q_up),
                    Some((
                        kv_lora + f64::from(a.qk_rope_head_dim),
                        h,
                        TpSplit::Replicated,
                    )),
                    Some((
                        heads * (f64::from(a.qk_nope_head_dim) + dv),
                        kv_lora,
                        TpSplit::Columns,
                    )),
                    Some((h, self.attention_output_width(), TpSplit::Rows)),
                ]
            }
        };
        shapes.into_iter().flatten()
    }

    /// Attention projection weights one tensor-parallel rank holds of one layer: the split
    /// projections' share plus the replicated ones whole.
    pub fn attention_params_per_rank(&self, tp: f64) -> f64 {
        self.attention_projections()
            .map(|(out, input, split)| {
                let (n, k) = split.per_rank(out, input, tp);
                n * k
            })
            .sum()
    }

    /// Attention width a decoding token's scores and weighted values cost against each cached
    /// token (`4·width` FLOPs): `hidden` for multi-/grouped-query attention; for latent
    /// attention, with the up projections absorbed into the query and output (as FlashMLA and
    /// the serving engines run it), every head scores the latent plus rotary key and weights
    /// the latent: `heads·(2·kv_lora_rank + qk_rope_head_dim)/2`.
    pub fn decode_attention_width(&self) -> f64 {
        match &self.mla {
            None => self.attention_width(),
            Some(a) => {
                f64::from(self.heads)
                    * (2.0 * f64::from(a.kv_lora_rank) + f64::from(a.qk_rope_head_dim))
                    / 2.0
            }
        }
    }

    /// Values the KV cache holds per token and layer: keys and values of the KV heads, or
    /// MLA's latent and rotary key (shared by all heads).
    pub fn kv_cache_elems_per_layer(&self) -> f64 {
        match &self.mla {
            None => 2.0 * f64::from(self.kv_dim()),
            Some(a) => f64::from(a.kv_lora_rank + a.qk_rope_head_dim),
        }
    }

    /// Matrices per FFN (3 gated, 2 plain).
    pub fn ffn_matrices(&self) -> f64 {
        if self.gated_ffn { 3.0 } else { 2.0 }
    }

    /// Attention projection weights of one layer (Q, K, V, O; or MLA's down and up
    /// projections).
    pub fn attention_params(&self) -> f64 {
        self.attention_projections()
            .map(|(out, input, _)| out * input)
            .sum()
    }

    /// Dense FFN weights of one layer.
    pub fn dense_ffn_params(&self) -> f64 {
        self.ffn_matrices() * f64::from(self.hidden) * f64::from(self.ffn_hidden)
    }

    /// Weights of one expert.
    pub fn expert_params(&self) -> f64 {
        self.moe.as_ref().map_or(0.0, |m| {
            self.ffn_matrices() * f64::from(self.hidden) * f64::from(m.expert_ffn_hidden)
        })
    }

    pub fn moe_layers(&self) -> u32 {
        self.moe.as_ref().map_or(0, |m| m.moe_layers)
    }

    pub fn dense_layers(&self) -> u32 {
        self.layers - self.moe_layers()
    }

    /// Router weights of one MoE layer.
    pub fn router_params(&self) -> f64 {
        self.moe
            .as_ref()
            .map_or(0.0, |m| f64::from(self.hidden) * f64::from(m.experts))
    }

    /// Input embedding (or LM head) weights.
    pub fn embedding_params(&self) -> f64 {
        f64::from(self.vocab) * f64::from(self.hidden)
    }

    /// Every weight stored (embedding and LM head counted separately, i.e. untied).
    pub fn total_params(&self) -> f64 {
        let (routed, shared) = self.moe.as_ref().map_or((0.0, 0.0), |m| {
            (f64::from(m.experts), f64::from(m.shared_experts))
        });
        f64::from(self.layers) * self.attention_params()
            + f64::from(self.dense_layers()) * self.dense_ffn_params()
            + f64::from(self.moe_layers())
                * (self.router_params() + (routed + shared) * self.expert_params())
            + 2.0 * self.embedding_params()
    }

    /// `N` of the FLOP formula: every weight one token's forward pass multiplies (attention
    /// projections, the dense FFN or the active plus shared experts and the router, and the LM
    /// head; not the embedding lookup).
    pub fn active_params(&self) -> f64 {
        let active = self
            .moe
            .as_ref()
            .map_or(0.0, |m| f64::from(m.experts_per_token + m.shared_experts));
        f64::from(self.layers) * self.attention_params()
            + f64::from(self.dense_layers()) * self.dense_ffn_params()
            + f64::from(self.moe_layers()) * (self.router_params() + active * self.expert_params())
            + self.embedding_params()
    }

    /// Model FLOPs per trained token: `6·N + 12·L·d_attn·S` (d_attn = heads × head dim; for
    /// latent attention the mean of the query/key and value head widths, see
    /// [`ModelSpec::attention_width`]); sliding-window layers count `min(S, window)` for `S`
    /// ([`ModelSpec::span_layers`]).
    pub fn model_flops_per_token(&self) -> f64 {
        6.0 * self.active_params() + 3.0 * self.attention_forward_flops_per_token()
    }

    /// Score and weighted-value FLOPs of one token's forward pass over all layers, in the FLOP
    /// formula's convention (the whole span, not half of it for causality): `4·d_attn·Σ S_layer`.
    /// Backward doubles it; selective and full recompute repeat it.
    pub fn attention_forward_flops_per_token(&self) -> f64 {
        4.0 * self.attention_width() * self.span_layers(f64::from(self.seq_len))
    }

    /// `Σ over layers of min(tokens, window)`: the positions each layer attends to (or caches)
    /// for `tokens` of context, summed over layers — `L·tokens` without sliding windows. The
    /// FLOP formula's `L·S` is this at `S`; the KV cache holds this many token-layers per
    /// request.
    pub fn span_layers(&self, tokens: f64) -> f64 {
        let layers = f64::from(self.layers);
        match &self.window {
            None => layers * tokens,
            Some(w) => {
                let windowed = f64::from(w.layers);
                (layers - windowed) * tokens + windowed * tokens.min(f64::from(w.tokens))
            }
        }
    }

    /// [`ModelSpec::span_layers`] over the busiest `stage_layers` consecutive layers (a
    /// pipeline stage's cache): windowed layers are taken as interleaved evenly with global
    /// ones (GPT-OSS alternates, Gemma 3 runs five local to one global), so a stage holds its
    /// share of global layers rounded up.
    pub fn stage_span_layers(&self, tokens: f64, stage_layers: u32) -> f64 {
        let stage_layers = stage_layers.min(self.layers);
        match &self.window {
            None => f64::from(stage_layers) * tokens,
            Some(w) => {
                let global = u64::from(self.layers - w.layers);
                let share = (global * u64::from(stage_layers)).div_ceil(u64::from(self.layers));
                let global_here = f64::from(u32::try_from(share).unwrap_or(stage_layers));
                let global_here = global_here.min(f64::from(stage_layers));
                global_here * tokens
                    + (f64::from(stage_layers) - global_here) * tokens.min(f64::from(w.tokens))
            }
        }
    }

    /// Keys a fused (FlashAttention-class) causal kernel scores per query over a sequence of
    /// `s` tokens, summed over layers: it runs 128×128 tiles, so a global layer costs `s/2 + 64`
    /// (half the square plus the partly masked diagonal tile) and a windowed one `w − w²/2s`
    /// (the mean window, shorter at the sequence start) plus one partly masked tile at each
    /// edge of the window.
    pub fn causal_keys_layers(&self, s: f64) -> f64 {
        let global = s / 2.0 + 64.0;
        let layers = f64::from(self.layers);
        match &self.window {
            None => layers * global,
            Some(w) => {
                let tokens = f64::from(w.tokens);
                let local = if tokens >= s {
                    global
                } else {
                    (tokens - tokens * tokens / (2.0 * s) + 128.0).min(global)
                };
                let windowed = f64::from(w.layers);
                (layers - windowed) * global + windowed * local
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_published_sizes() {
        let b = |n: &str| ModelSpec::preset(n).expect("preset").total_params() / 1e9;
        // Llama 3 paper: 8B, 70B, 405B (untied embeddings counted twice here).
        assert!((b("llama3-8b") - 8.0).abs() < 0.2, "{}", b("llama3-8b"));
        assert!((b("llama3-70b") - 70.6).abs() < 0.5, "{}", b("llama3-70b"));
        assert!(
            (b("llama3-405b") - 405.8).abs() < 1.5,
            "{}",
            b("llama3-405b")
        );
        // DeepSeek-V3 report: 671B total, 37B active (without the multi-token-prediction
        // module); with its latent attention the counts land within 1%.
        let ds = ModelSpec::preset("deepseek-v3").expect("preset");
        assert!(
            (ds.total_params() / 1e9 - 671.0).abs() < 3.0,
            "{}",
            ds.total_params()
        );
        assert!(
            (ds.active_params() / 1e9 - 37.0).abs() < 0.8,
            "{}",
            ds.active_params()
        );
        assert!((b("gpt3-175b") - 175.0).abs() < 2.0);
        // Release model cards: Qwen3-30B-A3B 30.5B total / 3.3B active, Qwen3-235B-A22B 235B /
        // 22B, GPT-OSS-120B 116.8B / 5.13B (norms and biases, a fraction of a percent, are not
        // counted here).
        // Qwen's activated counts include the input embedding, which `N` leaves out.
        let active = |n: &str| {
            let m = ModelSpec::preset(n).expect("preset");
            (m.active_params() + m.embedding_params()) / 1e9
        };
        assert!(
            (b("qwen3-30b-a3b") - 30.5).abs() < 0.3,
            "{}",
            b("qwen3-30b-a3b")
        );
        assert!(
            (active("qwen3-30b-a3b") - 3.3).abs() < 0.15,
            "{}",
            active("qwen3-30b-a3b")
        );
        assert!(
            (b("qwen3-235b-a22b") - 235.0).abs() < 1.5,
            "{}",
            b("qwen3-235b-a22b")
        );
        assert!(
            (active("qwen3-235b-a22b") - 22.0).abs() < 0.5,
            "{}",
            active("qwen3-235b-a22b")
        );
        assert!(
            (b("gpt-oss-120b") - 116.8).abs() < 1.0,
            "{}",
            b("gpt-oss-120b")
        );
        // OpenAI's 5.13B active leaves the embedding out, as `N` does.
        let oss = ModelSpec::preset("gpt-oss-120b").expect("preset");
        assert!(
            (oss.active_params() / 1e9 - 5.13).abs() < 0.05,
            "{}",
            oss.active_params()
        );
    }

    fn mla_fields() -> ModelFields {
        ModelFields {
            layers: Some(61),
            hidden: Some(7168),
            heads: Some(128),
            kv_heads: Some(1),
            vocab: Some(129_280),
            seq_len: Some(4096),
            q_lora_rank: Some(1536),
            kv_lora_rank: Some(512),
            qk_nope_head_dim: Some(128),
            qk_rope_head_dim: Some(64),
            v_head_dim: Some(128),
            ..ModelFields::default()
        }
    }

    #[test]
    fn latent_attention_has_its_own_widths_and_cache() {
        let m = mla_fields().resolve().expect("valid");
        // Every query head has its own key and value; heads are 192 (query/key) and 128 wide.
        assert_eq!(m.kv_heads, 128);
        assert_eq!((m.qk_head_dim(), m.v_head_dim()), (192, 128));
        assert_eq!(m.attention_width(), 128.0 * 160.0);
        // The cache holds the 512-wide latent and the 64-wide rotary key per token and layer.
        assert_eq!(m.kv_cache_elems_per_layer(), 576.0);
        // Projections: q down 7168·1536, q up 1536·128·192, kv down 7168·576, kv up
        // 512·128·256, out 128·128·7168.
        let expected = 7168.0 * 1536.0
            + 1536.0 * 128.0 * 192.0
            + 7168.0 * 576.0
            + 512.0 * 128.0 * 256.0
            + 128.0 * 128.0 * 7168.0;
        assert_eq!(m.attention_params(), expected);
        // The down projections are replicated: each of 8 tensor-parallel ranks holds them whole.
        let replicated = 7168.0 * 1536.0 + 7168.0 * 576.0;
        assert_eq!(
            m.attention_params_per_rank(8.0),
            (expected - replicated) / 8.0 + replicated
        );
        let mha = ModelFields {
            q_lora_rank: None,
            kv_lora_rank: None,
            qk_nope_head_dim: None,
            qk_rope_head_dim: None,
            v_head_dim: None,
            kv_heads: Some(128),
            ..mla_fields()
        }
        .resolve()
        .expect("valid");
        assert!(m.model_flops_per_token() > mha.model_flops_per_token());
        assert_eq!(
            mha.attention_params_per_rank(8.0),
            mha.attention_params() / 8.0
        );
    }

    #[test]
    fn latent_attention_needs_all_its_widths() {
        let err = ModelFields {
            v_head_dim: None,
            ..mla_fields()
        }
        .resolve()
        .expect_err("incomplete");
        assert!(err.to_string().contains("v_head_dim"), "{err}");
    }

    #[test]
    fn heads_must_divide_hidden() {
        let fields = ModelFields {
            layers: Some(2),
            hidden: Some(4096),
            heads: Some(7),
            vocab: Some(100),
            seq_len: Some(128),
            ..ModelFields::default()
        };
        let err = fields.resolve().expect_err("must fail").to_string();
        assert!(
            err.starts_with("[model] heads = 7 does not divide hidden = 4096"),
            "{err}"
        );
    }

    #[test]
    fn head_dim_sets_the_attention_widths() {
        // Qwen3-30B-A3B: 32 query heads and 4 key/value heads of 128 over a 2,048-wide model.
        let fields = ModelFields {
            layers: Some(48),
            hidden: Some(2048),
            heads: Some(32),
            kv_heads: Some(4),
            head_dim: Some(128),
            vocab: Some(151_936),
            seq_len: Some(4096),
            ..ModelFields::default()
        };
        let m = fields.resolve().expect("valid");
        assert_eq!(m.qkv_widths(), (4096.0, 512.0, 512.0));
        assert_eq!(m.attention_output_width(), 4096.0);
        assert_eq!(m.attention_width(), 4096.0);
        // QKV 2,048 → 5,120 and output 4,096 → 2,048.
        assert_eq!(m.attention_params(), 2048.0 * 5120.0 + 4096.0 * 2048.0);
        assert_eq!(m.kv_cache_elems_per_layer(), 1024.0);
        // Without head_dim the same heads are 64 wide.
        let narrow = ModelFields {
            head_dim: None,
            ..fields.clone()
        }
        .resolve()
        .expect("valid");
        assert_eq!(narrow.head_dim(), 64);
        assert!(narrow.model_flops_per_token() < m.model_flops_per_token());
        // An explicit width lifts the divisibility rule, and 0 is refused by name.
        let odd = ModelFields {
            hidden: Some(2880),
            heads: Some(64),
            head_dim: Some(64),
            ..fields.clone()
        };
        assert_eq!(odd.resolve().expect("valid").attention_width(), 4096.0);
        let err = ModelFields {
            head_dim: Some(0),
            ..fields
        }
        .resolve()
        .expect_err("zero width");
        assert!(err.to_string().contains("head_dim"), "{err}");
    }

    #[test]
    fn sliding_windows_shorten_attention_and_the_cache() {
        let oss = ModelSpec::preset("gpt-oss-120b").expect("preset");
        let full = ModelSpec {
            window: None,
            ..oss.clone()
        };
        // 18 global layers over 8,192 tokens and 18 windowed ones over 128.
        assert_eq!(oss.span_layers(8192.0), 18.0 * 8192.0 + 18.0 * 128.0);
        assert_eq!(full.span_layers(8192.0), 36.0 * 8192.0);
        // Below the window both attend to everything.
        assert_eq!(oss.span_layers(100.0), full.span_layers(100.0));
        // A windowed layer scores its 128-token window (less at the start) plus the two edge
        // tiles; a global one half the sequence plus the diagonal tile.
        let local = 128.0 - 128.0 * 128.0 / (2.0 * 8192.0) + 128.0;
        assert_eq!(
            oss.causal_keys_layers(8192.0),
            18.0 * (4096.0 + 64.0) + 18.0 * local
        );
        assert!(oss.model_flops_per_token() < full.model_flops_per_token());
        // A quarter of the alternating layers (a pipeline stage of 9): 5 global, 4 windowed.
        assert_eq!(oss.stage_span_layers(8192.0, 9), 5.0 * 8192.0 + 4.0 * 128.0);
        assert_eq!(oss.stage_span_layers(8192.0, 36), oss.span_layers(8192.0));
        assert_eq!(full.stage_span_layers(1000.0, 9), 9.0 * 1000.0);
        // The window never costs more than global attention, even when it spans the sequence.
        let wide = ModelSpec {
            window: Some(SlidingWindow {
                tokens: 8000,
                layers: 36,
            }),
            ..oss.clone()
        };
        assert!(wide.causal_keys_layers(8192.0) <= full.causal_keys_layers(8192.0));
        assert_eq!(
            wide.causal_keys_layers(4096.0),
            full.causal_keys_layers(4096.0)
        );
    }

    #[test]
    fn sliding_window_fields_are_checked() {
        let base = ModelFields {
            preset: Some("llama3-8b".into()),
            ..ModelFields::default()
        };
        let all = ModelFields {
            sliding_window: Some(4096),
            ..base.clone()
        }
        .resolve()
        .expect("valid");
        assert_eq!(
            all.window,
            Some(SlidingWindow {
                tokens: 4096,
                layers: 32
            })
        );
        for (fields, needle) in [
            (
                ModelFields {
                    window_layers: Some(4),
                    ..base.clone()
                },
                "window_layers is set but sliding_window is not",
            ),
            (
                ModelFields {
                    sliding_window: Some(4096),
                    window_layers: Some(33),
                    ..base.clone()
                },
                "window_layers = 33 exceeds layers = 32",
            ),
            (
                ModelFields {
                    sliding_window: Some(0),
                    ..base.clone()
                },
                "sliding_window must be at least 1",
            ),
        ] {
            let err = fields.resolve().expect_err(needle).to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn preset_overrides_keep_the_architecture_s_own_choices() {
        let over = |preset: &str, f: ModelFields| {
            ModelFields {
                preset: Some(preset.into()),
                ..f
            }
            .resolve()
        };
        // GPT-OSS's heads stay 64 wide with fewer of them; Llama's follow hidden / heads.
        let oss = over(
            "gpt-oss-120b",
            ModelFields {
                heads: Some(32),
                kv_heads: Some(8),
                ..ModelFields::default()
            },
        )
        .expect("valid");
        assert_eq!(oss.head_dim(), 64);
        let llama = over(
            "llama3-8b",
            ModelFields {
                heads: Some(64),
                ..ModelFields::default()
            },
        )
        .expect("valid");
        assert_eq!(llama.head_dim(), 64);
        // Fewer layers: GPT-OSS stays all-MoE with half its layers windowed; DeepSeek-V3 keeps
        // its three dense layers.
        let short = over(
            "gpt-oss-120b",
            ModelFields {
                layers: Some(24),
                ..ModelFields::default()
            },
        )
        .expect("valid");
        assert_eq!(short.moe_layers(), 24);
        assert_eq!(short.window.map(|w| w.layers), Some(12));
        let ds = over(
            "deepseek-v3",
            ModelFields {
                layers: Some(30),
                ..ModelFields::default()
            },
        )
        .expect("valid");
        assert_eq!((ds.dense_layers(), ds.moe_layers()), (3, 27));
        // Latent attention with more heads than hidden units: its widths are its own.
        let wide = over(
            "deepseek-v3",
            ModelFields {
                heads: Some(8192),
                ..ModelFields::default()
            },
        )
        .expect("latent attention does not use hidden / heads");
        assert_eq!(wide.qk_head_dim(), 192);
    }

    #[test]
    fn head_dim_is_refused_with_latent_attention() {
        let err = ModelFields {
            head_dim: Some(128),
            ..mla_fields()
        }
        .resolve()
        .expect_err("latent attention has its own widths");
        assert!(err.to_string().contains("head_dim"), "{err}");
    }
}
