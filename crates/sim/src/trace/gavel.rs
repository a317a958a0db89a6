//! Gavel (OSDI'20): its tab-separated `.trace` files and `simulation_throughputs.json`.
//!
//! A trace line is either the current 10-column layout read by Gavel's `utils.parse_trace`
//! (`job_type, command, working_dir, num_steps_arg, needs_data_dir, total_steps, scale_factor,
//! priority_weight, SLO, arrival_time`) or the old 7-column layout of `traces/msr/`
//! (`job_type, command, num_steps_arg, needs_data_dir, total_steps, arrival_time,
//! scale_factor`). Each becomes a training job whose work is `total_steps` steps of the
//! profile [`gavel_profile`]`(job_type, scale_factor)`, the key [`load_throughputs`] gives the
//! same job in the throughput table.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use switchyard_core::accelerator;
use switchyard_core::job::{JobKind, JobSpec, ThroughputTable, Work};

use super::table::{parse_count, shorten};
use super::{LoadOptions, Trace, TraceError};

/// The throughput-table profile of a Gavel job type run on `scale_factor` GPUs,
/// e.g. `ResNet-18 (batch size 64) x4`.
pub fn gavel_profile(job_type: &str, scale_factor: u32) -> String {
    format!("{job_type} x{scale_factor}")
}

/// Column names of the current 10-column layout (for error messages).
const COLUMNS_10: [&str; 10] = [
    "job_type",
    "command",
    "working_dir",
    "num_steps_arg",
    "needs_data_dir",
    "total_steps",
    "scale_factor",
    "priority_weight",
    "SLO",
    "arrival_time",
];
/// Column names of the old 7-column layout.
const COLUMNS_7: [&str; 7] = [
    "job_type",
    "command",
    "num_steps_arg",
    "needs_data_dir",
    "total_steps",
    "arrival_time",
    "scale_factor",
];

/// Tenant of a Gavel trace's jobs: the virtual-cluster name at the start of the file name
/// (`e13805_v2.trace` → `e13805`).
fn tenant_of(source_name: &str) -> String {
    let file = Path::new(source_name).file_name().map_or_else(
        || source_name.to_owned(),
        |f| f.to_string_lossy().into_owned(),
    );
    let stem = file.split('.').next().unwrap_or("");
    let vc = stem.split('_').next().unwrap_or("");
    if vc.is_empty() {
        super::canonical::DEFAULT_TENANT.to_owned()
    } else {
        vc.to_owned()
    }
}

struct Line<'a> {
    file: &'a str,
    line: u64,
    row: u64,
    names: &'static [&'static str],
}

impl Line<'_> {
    fn error(&self, column: usize, message: impl Into<String>) -> TraceError {
        TraceError::Row {
            file: self.file.to_owned(),
            line: self.line,
            row: self.row,
            column: self
                .names
                .get(column)
                .map_or_else(|| format!("{}", column + 1), |n| (*n).to_owned()),
            message: message.into(),
        }
    }
}

pub(crate) fn parse(text: &str, file: &str, opts: &LoadOptions) -> Result<Trace, TraceError> {
    // A byte-order mark some editors add is not part of the first field.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let tenant = tenant_of(file);
    let mut trace = Trace::default();
    let file_name: Arc<str> = file.into();
    let mut row = 0u64;
    // One layout per file, set by its first row: a line cut short by a truncated copy must
    // not be read as the other layout with its fields shifted.
    let mut layout: Option<(usize, u64)> = None;
    for (i, raw) in text.lines().enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.trim().is_empty() {
            continue;
        }
        let index = row;
        row += 1;
        let fields: Vec<&str> = raw.split('\t').collect();
        let line = i as u64 + 1;
        // Set by the first line of a known width: a malformed first line decides nothing.
        if layout.is_none() && matches!(fields.len(), 7 | 10) {
            layout = Some((fields.len(), line));
        }
        let known = layout.is_some();
        let (width, first_line) = layout.unwrap_or((10, line));
        let at = Line {
            file,
            line,
            row,
            names: if width == 7 { &COLUMNS_7 } else { &COLUMNS_10 },
        };
        let parsed = if fields.len() == width {
            job_from_fields(&fields, &at, index, &tenant)
        } else {
            Err(width_error(&at, fields.len(), width, first_line, known))
        };
        match parsed {
            Ok(job) => {
                trace.note_origin(&job.id, &file_name, line);
                trace.jobs.push(job);
            }
            Err(_) if opts.skip_invalid => trace.skipped += 1,
            Err(e) => return Err(e),
        }
    }
    super::sort_by_submit(&mut trace.jobs);
    Ok(trace)
}

/// A line whose field count is not the file's layout: it names the first missing field, or
/// the first extra one.
/// `known`: a row so far set the layout; without one, either layout would do.
fn width_error(
    at: &Line<'_>,
    found: usize,
    width: usize,
    first_line: u64,
    known: bool,
) -> TraceError {
    let layout = if !known {
        "10 (or, in Gavel's old layout, 7)"
    } else if width == 7 {
        "Gavel's old layout of 7"
    } else {
        "10"
    };
    let set_by = if first_line == at.line {
        String::new()
    } else {
        format!(", as the file's first row on line {first_line}")
    };
    at.error(
        found.min(width),
        format!("expected {layout} tab-separated fields{set_by}, found {found}"),
    )
}

fn job_from_fields(
    fields: &[&str],
    at: &Line<'_>,
    index: u64,
    tenant: &str,
) -> Result<JobSpec, TraceError> {
    // (job_type, total_steps, scale_factor, arrival_time) positions.
    let (steps_i, scale_i, arrival_i) = match fields.len() {
        10 => (5, 6, 9),
        7 => (4, 6, 5),
        n => return Err(width_error(at, n, 10, at.line, false)),
    };
    let job_type = fields[0].trim();
    if job_type.is_empty() {
        return Err(at.error(0, "is empty"));
    }
    let field = |i: usize| fields[i].trim();
    let steps = field(steps_i)
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
        .ok_or_else(|| {
            at.error(
                steps_i,
                format!(
                    "expected a number > 0, found \"{}\"",
                    shorten(field(steps_i))
                ),
            )
        })?;
    let scale_factor = parse_count(field(scale_i))
        .filter(|&n| n >= 1)
        .ok_or_else(|| {
            at.error(
                scale_i,
                format!(
                    "expected a positive integer, found \"{}\"",
                    shorten(field(scale_i))
                ),
            )
        })?;
    let arrival = field(arrival_i)
        .parse::<f64>()
        .ok()
        .filter(|a| a.is_finite() && *a >= 0.0)
        .ok_or_else(|| {
            at.error(
                arrival_i,
                format!(
                    "expected a number >= 0, found \"{}\"",
                    shorten(field(arrival_i))
                ),
            )
        })?;
    if fields.len() == 10 {
        for i in [7, 8] {
            if field(i).parse::<f64>().map_or(true, |v| !v.is_finite()) {
                return Err(at.error(
                    i,
                    format!("expected a number, found \"{}\"", shorten(field(i))),
                ));
            }
        }
    }
    Ok(JobSpec {
        id: index.to_string(),
        tenant: tenant.to_owned(),
        kind: JobKind::Training,
        priority: 0,
        submit_s: arrival,
        accelerators: scale_factor,
        min_accelerators: None,
        replicas: None,
        accelerator_types: Vec::new(),
        clusters: Vec::new(),
        work: Work::Amount {
            units: steps,
            profile: gavel_profile(job_type, scale_factor),
        },
    })
}

/// Reads Gavel's `simulation_throughputs.json` (or `physical_cluster_throughputs.json`).
///
/// For each worker type (`k80`, `p100`, `v100`, resolved to catalog names) and each key
/// `('<job type>', <scale factor>)`, the isolated (`"null"`) throughput in steps per second of
/// the whole job becomes the rate of profile [`gavel_profile`]`(job type, scale factor)`.
/// Space-sharing entries and the `*_unconsolidated` worker types are left out.
pub fn load_throughputs(path: &Path) -> Result<ThroughputTable, TraceError> {
    let text = super::read_text(path)?;
    parse_throughputs(&text, &path.display().to_string())
}

/// A serde_json message without the " at line L column C" it ends with.
fn without_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i) if message[i..].contains(" column ") => &message[..i],
        _ => message,
    }
}

/// [`load_throughputs`] on text held in memory; `file` names it in error messages.
pub fn parse_throughputs(text: &str, file: &str) -> Result<ThroughputTable, TraceError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // A key given twice would otherwise keep its last value without a word.
    let value: Value = serde_json::from_str::<KeysOnce>(text)
        .and_then(|_| serde_json::from_str(text))
        .map_err(|e| {
            TraceError::file(
                file,
                // serde_json's message ends with its own position; say it once, in front.
                format!(
                    "line {}, column {}: {} (a throughput table is Gavel's JSON of worker types, \
                 simulation_throughputs.json)",
                    e.line(),
                    e.column(),
                    without_position(&e.to_string())
                ),
            )
        })?;
    let workers = value
        .as_object()
        .ok_or_else(|| TraceError::file(file, "expected a JSON object of worker types"))?;
    let mut table = ThroughputTable::new();
    let mut seen = std::collections::HashMap::new();
    for (worker, jobs) in workers {
        if worker.ends_with("_unconsolidated") {
            continue;
        }
        let acc = accelerator::lookup(worker).ok_or_else(|| {
            TraceError::file(
                file,
                format!(
                    "worker type \"{}\" is no known accelerator (known: {})",
                    shorten(worker),
                    accelerator::names().join(", ")
                ),
            )
        })?;
        let jobs = jobs.as_object().ok_or_else(|| {
            TraceError::file(file, format!("{worker}: expected an object of job types"))
        })?;
        for (key, entry) in jobs {
            let (job_type, scale_factor) = parse_key(key).ok_or_else(|| {
                TraceError::file(
                    file,
                    format!(
                        "{worker}: key \"{}\" is not of the form ('<job type>', <scale factor>)",
                        shorten(key)
                    ),
                )
            })?;
            let rate = entry
                .get("null")
                .and_then(Value::as_f64)
                .filter(|r| r.is_finite() && *r >= 0.0)
                .ok_or_else(|| {
                    TraceError::file(
                        file,
                        format!(
                            "{worker}: {key}: no isolated (\"null\") throughput in steps per \
                             second, a number >= 0 (0: the job type cannot run on this worker)"
                        ),
                    )
                })?;
            let profile = gavel_profile(&job_type, scale_factor);
            // Two spellings of one worker type (`v100`, `V100`) or of one key (spaces,
            // quotes) name the same rate; taking either silently would hide the other.
            if let Some(earlier) = seen.insert((acc.name, profile.clone()), (worker, key)) {
                return Err(TraceError::file(
                    file,
                    format!(
                        "{worker}: {key}: the same rate as {}: {} ({} of {profile}) is given twice",
                        earlier.0, earlier.1, acc.name
                    ),
                ));
            }
            table.insert(&profile, acc.name, rate);
        }
    }
    Ok(table)
}

/// JSON read only to refuse an object that gives one key twice (serde_json keeps the last).
struct KeysOnce;

impl<'de> serde::Deserialize<'de> for KeysOnce {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = KeysOnce;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<KeysOnce, A::Error> {
                let mut keys = std::collections::HashSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    if !keys.insert(key.clone()) {
                        return Err(serde::de::Error::custom(format!(
                            "key \"{}\" is given twice in one object",
                            shorten(&key)
                        )));
                    }
                    map.next_value::<KeysOnce>()?;
                }
                Ok(KeysOnce)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<KeysOnce, A::Error> {
                while seq.next_element::<KeysOnce>()?.is_some() {}
                Ok(KeysOnce)
            }
            fn visit_bool<E>(self, _: bool) -> Result<KeysOnce, E> {
                Ok(KeysOnce)
            }
            fn visit_i64<E>(self, _: i64) -> Result<KeysOnce, E> {
                Ok(KeysOnce)
            }
            fn visit_u64<E>(self, _: u64) -> Result<KeysOnce, E> {
                Ok(KeysOnce)
            }
            fn visit_f64<E>(self, _: f64) -> Result<KeysOnce, E> {
                Ok(KeysOnce)
            }
            fn visit_str<E>(self, _: &str) -> Result<KeysOnce, E> {
                Ok(KeysOnce)
            }
            fn visit_unit<E>(self) -> Result<KeysOnce, E> {
                Ok(KeysOnce)
            }
        }
        d.deserialize_any(Visit)
    }
}

/// Parses `('ResNet-18 (batch size 16)', 1)`.
fn parse_key(key: &str) -> Option<(String, u32)> {
    let inner = key.trim().strip_prefix('(')?.strip_suffix(')')?;
    let (name, scale) = inner.rsplit_once(',')?;
    let name = name.trim();
    let name = name
        .strip_prefix('\'')
        .and_then(|n| n.strip_suffix('\''))
        .or_else(|| name.strip_prefix('"').and_then(|n| n.strip_suffix('"')))?;
    if name.is_empty() {
        return None;
    }
    let scale = scale.trim().parse::<u32>().ok().filter(|&s| s >= 1)?;
    Some((name.to_owned(), scale))
}
