//! switchyard-perf: an analytical performance model of transformer training and inference.
//!
//! * [`ModelSpec`]: the model (dense or mixture-of-experts; multi-/grouped-query or multi-head
//!   latent attention), with presets;
//! * [`train::estimate`]: step time, MFU/HFU, memory and a breakdown for one layout;
//! * [`search::search`]: the fastest layouts that fit; [`best_training_rate`] for the scheduler;
//! * [`infer`]: prefill/decode throughput, latency and KV-cache capacity;
//! * [`plan`]: the `switchyard plan` input and report; [`validate`]: predictions against the
//!   published runs in `data/calibration`.
//!
//! The crate does no I/O: callers pass text in and get values back. docs/perf-model.md explains
//! the model and its constants.

pub mod hardware;
pub mod infer;
pub mod layout;
pub mod model;
pub mod plan;
pub mod search;
pub mod software;
pub mod train;
pub mod validate;

pub use hardware::Hardware;
pub use layout::{Layout, Recompute, RecomputeModules};
pub use model::{MlaSpec, ModelSpec, MoeSpec, TpSplit};
pub use search::{
    LayoutConstraint, SearchOptions, best_training_rate, best_training_rate_on, search,
};
pub use software::{AttentionKernel, CrossEntropy, ExpertDispatch, Software};
pub use train::{TrainingEstimate, TrainingSpec, estimate};

/// Largest value any count or dimension of a plan may take (16,777,216): far beyond real
/// models, clusters and batches, and small enough that products of a few of them stay exact
/// and never overflow.
pub const MAX_SIZE: u32 = 1 << 24;

/// Reads an optional count of a plan file as a whole number from 1 to [`MAX_SIZE`] in the
/// words of a refusal: a negative number, a fraction (`8.0`) or one past 32 bits is refused
/// naming that range, not the type's "from 0 to 4294967295". (0 and numbers above the range
/// that 32 bits hold are read, and refused by the checks after with their own words.)
pub(crate) fn some_count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    struct Count(u32);
    impl<'de> serde::Deserialize<'de> for Count {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visit;
            impl serde::de::Visitor<'_> for Visit {
                type Value = u32;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    write!(f, "a whole number from 1 to {MAX_SIZE}")
                }
                fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<u32, E> {
                    u32::try_from(n).map_err(|_| not_a_count(n))
                }
                fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<u32, E> {
                    u32::try_from(n).map_err(|_| not_a_count(n))
                }
                fn visit_f64<E: serde::de::Error>(self, x: f64) -> Result<u32, E> {
                    // (As written: `8.0`, not the `8` it displays as.)
                    Err(not_a_count(format!("{x:?}")))
                }
            }
            fn not_a_count<E: serde::de::Error>(n: impl std::fmt::Display) -> E {
                E::custom(format!("{n} is not a whole number from 1 to {MAX_SIZE}"))
            }
            d.deserialize_any(Visit).map(Count)
        }
    }
    <Option<Count> as serde::Deserialize>::deserialize(d).map(|c| c.map(|c| c.0))
}

/// A count or size given at `place` (formatted only on failure: the search checks every layout
/// it costs): at least 1 and at most [`MAX_SIZE`].
pub(crate) fn check_size(value: u32, place: impl FnOnce() -> String) -> Result<u32, PerfError> {
    match value {
        0 => Err(PerfError::input(format!("{} must be at least 1", place()))),
        v if v > MAX_SIZE => within_max_size(v, &place()),
        v => Ok(v),
    }
}

/// `Err` naming `field` (e.g. "[model] hidden") when `value` exceeds [`MAX_SIZE`].
pub(crate) fn within_max_size(value: u32, field: &str) -> Result<u32, PerfError> {
    if value > MAX_SIZE {
        Err(PerfError::input(format!(
            "{field} = {value} is larger than the supported maximum {MAX_SIZE}"
        )))
    } else {
        Ok(value)
    }
}

/// A number as a person wrote it in a plan or a CSV: plainly when it reads well that way
/// (`0`, `-1`, `0.5`, `235571`), in exponent form when it is very large or small (`1.5e13`).
pub(crate) fn number_in_words(x: f64) -> String {
    let magnitude = x.abs();
    if x == 0.0 || (1e-3..1e9).contains(&magnitude) || !x.is_finite() {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

/// What went wrong; every message names the table and field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PerfError {
    /// The input is wrong (a field, a value, a combination).
    #[error("{0}")]
    Input(String),
}

impl PerfError {
    pub fn input(msg: impl Into<String>) -> PerfError {
        PerfError::Input(msg.into())
    }
}
