//! Layout search: every valid layout (or every completion of a partly given one), fastest
//! first, keeping those that fit in memory.

use switchyard_core::accelerator::Accelerator;

use crate::PerfError;
use crate::hardware::Hardware;
use crate::layout::{Layout, Recompute, RecomputeModules};
use crate::model::ModelSpec;
use crate::software::Software;
use crate::train::{TrainingEstimate, TrainingSpec, estimate};

/// A partly given layout: `None` fields are chosen by the search.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayoutConstraint {
    pub tp: Option<u32>,
    pub pp: Option<u32>,
    pub dp: Option<u32>,
    pub cp: Option<u32>,
    pub ep: Option<u32>,
    pub etp: Option<u32>,
    pub microbatch: Option<u32>,
    pub virtual_stages: Option<u32>,
    pub recompute: Option<Recompute>,
    pub sequence_parallel: Option<bool>,
    pub zero: Option<u8>,
}

/// A complete layout is a constraint that gives every degree.
impl From<&Layout> for LayoutConstraint {
    fn from(l: &Layout) -> Self {
        LayoutConstraint {
            tp: Some(l.tp),
            pp: Some(l.pp),
            dp: Some(l.dp),
            cp: Some(l.cp),
            ep: Some(l.ep),
            etp: Some(l.etp),
            microbatch: Some(l.microbatch),
            virtual_stages: Some(l.virtual_stages),
            recompute: Some(l.recompute),
            sequence_parallel: Some(l.sequence_parallel),
            zero: Some(l.zero),
        }
    }
}

impl LayoutConstraint {
    /// Each given degree is at least 1 and at most [`crate::MAX_SIZE`]; the message names the
    /// `[parallelism]` key.
    pub fn check_degrees(&self) -> Result<(), PerfError> {
        for (value, field) in [
            (self.tp, "tp"),
            (self.pp, "pp"),
            (self.dp, "dp"),
            (self.cp, "cp"),
            (self.ep, "ep"),
            (self.etp, "etp"),
            (self.microbatch, "microbatch"),
            (self.virtual_stages, "virtual_stages"),
        ] {
            if let Some(value) = value {
                crate::check_size(value, || format!("[parallelism] {field}"))?;
            }
        }
        Ok(())
    }
}

/// The expert tensor parallel degrees a layout with `tp` may take: the given one, else for MoE
/// models Megatron-Core's two settings — experts split like the dense layers (`tp`, its
/// default) or kept whole (1, folded), those that divide an expert's FFN width — and `tp` for
/// dense models (no experts to split).
pub(crate) fn expert_tensor_candidates(tp: u32, given: Option<u32>, m: &ModelSpec) -> Vec<u32> {
    let Some(moe) = &m.moe else {
        return vec![tp];
    };
    let candidates = match given {
        Some(etp) => vec![etp],
        None if tp > 1 => vec![tp, 1],
        None => vec![tp],
    };
    // Each expert tensor rank takes an equal share of an expert's hidden units.
    candidates
        .into_iter()
        .filter(|&etp| etp > 0 && moe.expert_ffn_hidden.is_multiple_of(etp))
        .collect()
}

/// How wide the search looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchOptions {
    /// Layouts to return (fastest first).
    pub keep: usize,
    /// Allow tensor parallelism wider than one scale-up domain.
    pub allow_tp_beyond_scale_up: bool,
    /// Fewer micro-batch and interleaving choices (for the scheduler's cheap queries).
    pub coarse: bool,
    /// Return the fastest layouts even when none fits (validation of published runs, which
    /// did run, uses this so that a memory-model miss does not lose the row).
    pub ignore_memory: bool,
    /// With `ignore_memory`, when none fits: the layouts that come closest to fitting (least
    /// memory per device, then fastest) instead of the fastest, so that a plan says by how
    /// little the best try misses.
    pub closest_when_unfit: bool,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            keep: 5,
            allow_tp_beyond_scale_up: false,
            coarse: false,
            ignore_memory: false,
            closest_when_unfit: false,
        }
    }
}

/// Every divisor of `n`, ascending (none for 0).
pub(crate) fn divisors(n: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut i: u32 = 1;
    while u64::from(i) * u64::from(i) <= u64::from(n) {
        if n.is_multiple_of(i) {
            out.push(i);
            if i != n / i {
                out.push(n / i);
            }
        }
        i += 1;
    }
    out.sort_unstable();
    out
}

/// The tensor-parallel degrees the search tries when the plan gives none: powers of two that
/// divide the heads and the device count, up to the scale-up domain (or the device count when
/// `beyond_scale_up`).
pub(crate) fn tensor_candidates(m: &ModelSpec, hw: &Hardware, beyond_scale_up: bool) -> Vec<u32> {
    let count = hw.count;
    let tp_max = if beyond_scale_up {
        count
    } else {
        hw.scale_up_domain.min(count)
    };
    powers_of_two_upto(tp_max.min(m.heads))
        .into_iter()
        .filter(|t| {
            count.is_multiple_of(*t)
                && m.heads.is_multiple_of(*t)
                && (m.dense_layers() == 0 || m.ffn_hidden.is_multiple_of(*t))
        })
        .collect()
}

/// The pipeline degrees the search tries when the plan gives none, for `rest` devices per
/// tensor- and context-parallel group: divisors of it, at most the layers and 128.
pub(crate) fn pipeline_candidates(rest: u32, m: &ModelSpec) -> Vec<u32> {
    divisors(rest)
        .into_iter()
        .filter(|&pp| pp <= m.layers && pp <= 128)
        .collect()
}

fn powers_of_two_upto(n: u32) -> Vec<u32> {
    let mut out = vec![1];
    let mut p: u32 = 2;
    while p <= n {
        out.push(p);
        match p.checked_mul(2) {
            Some(next) => p = next,
            None => break,
        }
    }
    out
}

fn one_or<T: Copy>(given: Option<T>, all: Vec<T>) -> Vec<T> {
    match given {
        Some(v) => vec![v],
        None => all,
    }
}

/// The recompute modes the search tries, each with the modules its selective mode repeats. A
/// given mode is used as given (its modules are the plan's). Otherwise none, selective and full
/// (last); for mixture-of-experts and latent-attention models, whose Megatron-Core recipes fit
/// large layouts with module-level recompute, also three nested module sets between them,
/// cheapest first: the output-discarding modules the model has (the norms, the experts'
/// activation, the MLA up projections), then with core attention, the dense MLP and the shared
/// experts, then with the whole MoE layer. Given modules replace the classic selective set
/// instead.
pub fn recompute_candidates(
    given: Option<Recompute>,
    modules: RecomputeModules,
    m: &ModelSpec,
) -> Vec<(Recompute, RecomputeModules)> {
    let none = RecomputeModules::default();
    if let Some(rc) = given {
        return vec![(rc, rc.modules(modules))];
    }
    let mut out = vec![(Recompute::None, none), (Recompute::Selective, modules)];
    if !modules.is_empty() || (m.moe.is_none() && m.mla.is_none()) {
        out.push((Recompute::Full, none));
        return out;
    }
    let mut cheap = RecomputeModules::LAYERNORM;
    if m.moe.is_some() {
        cheap = cheap.with(RecomputeModules::MOE_ACT);
    }
    if m.mla.is_some() {
        cheap = cheap.with(RecomputeModules::MLA_UP_PROJ);
    }
    let mut normal = cheap.with(RecomputeModules::CORE_ATTN);
    if m.dense_layers() > 0 {
        normal = normal.with(RecomputeModules::MLP);
    }
    if m.moe.as_ref().is_some_and(|x| x.shared_experts > 0) {
        normal = normal.with(RecomputeModules::SHARED_EXPERTS);
    }
    out.push((Recompute::Selective, cheap));
    out.push((Recompute::Selective, normal));
    if m.moe.is_some() {
        out.push((Recompute::Selective, normal.with(RecomputeModules::MOE)));
    }
    out.push((Recompute::Full, none));
    out
}

/// Whether recompute mode `a` repeats at least the work `b` does, so never runs faster on the
/// same layout: anything repeats at least nothing, full recompute repeats everything, and a
/// module set repeats what its subsets do.
fn repeats_at_least(a: (Recompute, RecomputeModules), b: (Recompute, RecomputeModules)) -> bool {
    match (a.0, b.0) {
        (_, Recompute::None) | (Recompute::Full, _) => true,
        (Recompute::Selective, Recompute::Selective) => {
            if b.1.is_empty() {
                a.1.is_empty()
            } else {
                a.1.contains(b.1)
            }
        }
        _ => false,
    }
}

/// Searches layouts for `count` devices. Returns up to `opts.keep` estimates, fastest first;
/// empty when nothing valid fits (or nothing is valid).
pub fn search(
    m: &ModelSpec,
    hw: &Hardware,
    spec: &TrainingSpec,
    c: &LayoutConstraint,
    opts: &SearchOptions,
) -> Result<Vec<TrainingEstimate>, PerfError> {
    c.check_degrees()?;
    let count = hw.count;
    if count == 0 {
        return Err(PerfError::input("[hardware] count must be at least 1"));
    }
    if m.moe.is_some() && c.tp.is_some_and(|tp| tp > 1) && !spec.software.sequence_parallel {
        return Err(PerfError::input(format!(
            "[parallelism] tp > 1 for a mixture-of-experts model needs sequence parallelism, \
             which the {} stack lacks (Megatron-LM added it in 2022)",
            spec.software.name
        )));
    }
    if c.sequence_parallel == Some(true) && !spec.software.sequence_parallel {
        return Err(PerfError::input(format!(
            "[parallelism] sequence_parallel = true, but the {} stack has no sequence \
             parallelism (Megatron-LM added it in 2022)",
            spec.software.name
        )));
    }
    if c.cp.is_some_and(|cp| cp > 1) && !spec.software.context_parallel {
        return Err(PerfError::input(format!(
            "[parallelism] cp > 1, but the {} stack has no context parallelism (Megatron-Core \
             added it in 2024)",
            spec.software.name
        )));
    }
    // (A zero beyond 3 is no ZeRO stage at all; the layout's check says so.)
    if let Some(zero) = c.zero
        && zero > spec.software.max_zero
        && zero <= 3
    {
        return Err(PerfError::input(format!(
            "[parallelism] zero = {zero}, but the {} stack {}",
            spec.software.name,
            match spec.software.max_zero {
                0 => "has no ZeRO (its optimizer state is replicated on every data-parallel rank)"
                    .to_owned(),
                n => format!("goes up to ZeRO-{n}"),
            }
        )));
    }
    if let Some(tp) = c.tp
        && tp > hw.scale_up_domain
        && !opts.allow_tp_beyond_scale_up
    {
        return Err(PerfError::input(format!(
            "[parallelism] tp = {tp} is larger than the scale-up domain of {} {} devices; \
                 set allow_tp_beyond_scale_up = true to cost it over the scale-out network",
            hw.scale_up_domain, hw.accelerator.name
        )));
    }
    let tps: Vec<u32> = one_or(
        c.tp,
        tensor_candidates(m, hw, opts.allow_tp_beyond_scale_up),
    );
    let cps_all: Vec<u32> = powers_of_two_upto(16)
        .into_iter()
        .filter(|&cp| cp == 1 || spec.software.context_parallel)
        .filter(|&cp| cp == 1 || (m.seq_len / cp >= 2048 && m.seq_len.is_multiple_of(2 * cp)))
        .collect();
    let cps = one_or(c.cp, cps_all);
    let recomputes = recompute_candidates(c.recompute, spec.recompute_modules, m);
    let mut results: Vec<TrainingEstimate> = Vec::new();
    let mut best_unfit: Vec<TrainingEstimate> = Vec::new();
    for &tp in &tps {
        for &cp in &cps {
            let Some(tp_cp) = tp.checked_mul(cp) else {
                continue;
            };
            if tp_cp == 0 || !count.is_multiple_of(tp_cp) {
                continue;
            }
            let rest = count / tp_cp;
            let pps: Vec<u32> = match (c.pp, c.dp) {
                (Some(pp), _) => vec![pp],
                (None, Some(dp)) if rest.is_multiple_of(dp) => vec![rest / dp],
                (None, Some(_)) => vec![],
                (None, None) => pipeline_candidates(rest, m),
            };
            for &pp in &pps {
                if pp == 0 || !rest.is_multiple_of(pp) {
                    continue;
                }
                let dp = rest / pp;
                if let Some(given) = c.dp
                    && given != dp
                {
                    continue;
                }
                // Each data-parallel rank takes the same share of the batch, in whole
                // micro-batches (as every framework splits it; `Layout::check` insists).
                if dp > spec.global_batch || !spec.global_batch.is_multiple_of(dp) {
                    continue;
                }
                let per_dp = (spec.global_batch / dp).max(1);
                let mb_max = if opts.coarse { 4 } else { 16 };
                let mbs: Vec<u32> = one_or(
                    c.microbatch,
                    divisors(per_dp)
                        .into_iter()
                        .filter(|&b| b <= mb_max)
                        .collect(),
                );
                // Expert splits: (ep, etp) pairs whose ep·etp ranks tile tp·dp·cp.
                let ranks = tp * dp * cp;
                let etps = expert_tensor_candidates(tp, c.etp, m);
                let expert_splits: Vec<(u32, u32)> = match &m.moe {
                    None => etps.iter().map(|&etp| (c.ep.unwrap_or(1), etp)).collect(),
                    Some(moe) => etps
                        .into_iter()
                        .flat_map(|etp| {
                            one_or(
                                c.ep,
                                powers_of_two_upto(moe.experts.min(ranks / etp.max(1)))
                                    .into_iter()
                                    .filter(|&e| {
                                        moe.experts % e == 0
                                            && u64::from(ranks) % (u64::from(e) * u64::from(etp))
                                                == 0
                                    })
                                    .collect(),
                            )
                            .into_iter()
                            .map(move |ep| (ep, etp))
                        })
                        .collect(),
                };
                let vs: Vec<u32> = one_or(
                    c.virtual_stages,
                    if pp == 1 {
                        vec![1]
                    } else if opts.coarse {
                        vec![1, 2]
                    } else {
                        [1u32, 2, 3, 4, 6, 8]
                            .into_iter()
                            // v = 1 always: a given pp may exceed the layers by the
                            // embedding and loss stages.
                            .filter(|&v| {
                                v == 1 || u64::from(pp) * u64::from(v) <= u64::from(m.layers)
                            })
                            .collect()
                    },
                );
                let zeros: Vec<u8> = one_or(
                    c.zero,
                    [1u8, 3]
                        .into_iter()
                        .filter(|&z| dp * cp > 1 && z <= spec.software.max_zero)
                        .chain((dp * cp == 1 || spec.software.max_zero == 0).then_some(0))
                        .collect(),
                );
                // Megatron-Core refuses MoE training with tensor parallelism but without
                // sequence parallelism; the expert costs assume each rank's token shard.
                // Without tensor parallelism there is no sequence to split: it is off (as
                // Megatron-LM turns it off), whatever the plan asked.
                // Each rank keeps an equal share of its context-parallel rank's tokens.
                let sp_splits = (m.seq_len / cp).is_multiple_of(tp);
                let sps: Vec<bool> = one_or(
                    c.sequence_parallel.map(|sp| sp && tp > 1),
                    vec![tp > 1 && spec.software.sequence_parallel && sp_splits],
                )
                .into_iter()
                .filter(|&sp| sp || tp == 1 || m.moe.is_none())
                .collect();
                for &(ep, etp) in &expert_splits {
                    for &mb in &mbs {
                        for &v in &vs {
                            for &zero in &zeros {
                                for &sp in &sps {
                                    let base = Layout {
                                        tp,
                                        pp,
                                        dp,
                                        cp,
                                        ep,
                                        etp,
                                        microbatch: mb,
                                        virtual_stages: v,
                                        recompute: Recompute::None,
                                        sequence_parallel: sp,
                                        zero,
                                    };
                                    if base.check(count, spec.global_batch, m.layers).is_err() {
                                        continue;
                                    }
                                    // Recomputing more only adds work: a mode that repeats at
                                    // least what a fitting one does is no faster, so it is
                                    // skipped when that one's time cannot enter the kept list.
                                    let mut fitted: Vec<((Recompute, RecomputeModules), f64)> =
                                        Vec::new();
                                    for &(rc, modules) in &recomputes {
                                        let dominated = results.len() >= opts.keep
                                            && results.last().is_some_and(|worst| {
                                                fitted.iter().any(|&(lighter, t)| {
                                                    t >= worst.step_time_s
                                                        && repeats_at_least((rc, modules), lighter)
                                                })
                                            });
                                        if dominated {
                                            continue;
                                        }
                                        let layout = Layout {
                                            recompute: rc,
                                            ..base
                                        };
                                        let spec = TrainingSpec {
                                            recompute_modules: modules,
                                            ..*spec
                                        };
                                        let est = estimate(m, hw, &layout, &spec);
                                        if est.fits {
                                            fitted.push(((rc, modules), est.step_time_s));
                                            insert_top(&mut results, est, opts.keep);
                                        } else if opts.ignore_memory && opts.closest_when_unfit {
                                            insert_closest(&mut best_unfit, est, opts.keep);
                                        } else if opts.ignore_memory {
                                            insert_top(&mut best_unfit, est, opts.keep);
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    if results.is_empty() && opts.ignore_memory {
        return Ok(best_unfit);
    }
    Ok(results)
}

/// Keeps `top` sorted by memory per device, then step time, at most `keep` long.
fn insert_closest(top: &mut Vec<TrainingEstimate>, est: TrainingEstimate, keep: usize) {
    insert_ordered(top, est, keep, |a, b| {
        a.memory_per_device_gib
            .total_cmp(&b.memory_per_device_gib)
            .then(a.step_time_s.total_cmp(&b.step_time_s))
    });
}

/// Keeps `top` sorted by step time, at most `keep` long.
fn insert_top(top: &mut Vec<TrainingEstimate>, est: TrainingEstimate, keep: usize) {
    insert_ordered(top, est, keep, |a, b| {
        a.step_time_s.total_cmp(&b.step_time_s)
    });
}

/// Inserts `est` after every entry of `top` that `order` does not put after it, keeping at
/// most `keep`.
fn insert_ordered(
    top: &mut Vec<TrainingEstimate>,
    est: TrainingEstimate,
    keep: usize,
    order: impl Fn(&TrainingEstimate, &TrainingEstimate) -> std::cmp::Ordering,
) {
    let pos = top
        .iter()
        .position(|e| order(e, &est) == std::cmp::Ordering::Greater)
        .unwrap_or(top.len());
    if pos < keep {
        top.insert(pos, est);
        top.truncate(keep);
    }
}

/// Global training tokens/s of the fastest layout of `model` on `count` devices of
/// `accelerator` (in its usual servers, on an InfiniBand-class network) that fits in memory;
/// `None` if nothing fits or the input is invalid. A coarse search (micro-batch up to 4, at
/// most two interleaved stages): a few milliseconds for frontier-size jobs. Callers may cache
/// the answer per (model, accelerator, count, batch, precision).
pub fn best_training_rate(
    model: &ModelSpec,
    accelerator: &'static Accelerator,
    count: u32,
    global_batch: u32,
    fp8: bool,
) -> Option<f64> {
    let hw = Hardware::from_accelerator(accelerator, count);
    best_training_rate_on(model, &hw, global_batch, fp8)
}

/// [`best_training_rate`] on explicit hardware (e.g. [`Hardware::from_cluster`]).
pub fn best_training_rate_on(
    model: &ModelSpec,
    hw: &Hardware,
    global_batch: u32,
    fp8: bool,
) -> Option<f64> {
    if hw.count == 0 || global_batch == 0 {
        return None;
    }
    let spec = TrainingSpec {
        global_batch,
        fp8,
        tokens: None,
        software: Software::default(),
        capacity_factor: None,
        recompute_modules: Default::default(),
    };
    let opts = SearchOptions {
        keep: 1,
        coarse: true,
        ..SearchOptions::default()
    };
    search(model, hw, &spec, &LayoutConstraint::default(), &opts)
        .ok()?
        .first()
        .map(|e| e.tokens_per_s)
}
