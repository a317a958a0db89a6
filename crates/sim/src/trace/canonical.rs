//! Switchyard's canonical trace CSV: reader and writer (docs/traces.md, "canonical").

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use switchyard_core::accelerator;
use switchyard_core::job::{DiurnalLoad, JobKind, JobSpec, Replicas, Work};

use super::table::{Row, Table, shorten};
use super::{LoadOptions, Trace, TraceError};

/// Columns every canonical trace has.
pub(crate) const REQUIRED: [&str; 4] = ["id", "submit_s", "accelerators", "duration_s"];
/// Columns a canonical trace may have.
pub(crate) const OPTIONAL: [&str; 9] = [
    "accelerator_type",
    "tenant",
    "kind",
    "priority",
    "min_accelerators",
    "replicas",
    "clusters",
    "load",
    "work",
];

/// Tenant of jobs whose trace has no `tenant` column (or an empty cell).
pub const DEFAULT_TENANT: &str = "default";

#[derive(Default)]
struct Cols {
    id: usize,
    submit: usize,
    accelerators: usize,
    duration: usize,
    accelerator_type: Option<usize>,
    tenant: Option<usize>,
    kind: Option<usize>,
    priority: Option<usize>,
    min_accelerators: Option<usize>,
    replicas: Option<usize>,
    clusters: Option<usize>,
    load: Option<usize>,
    work: Option<usize>,
}

pub(crate) fn parse(text: &str, file: &str, opts: &LoadOptions) -> Result<Trace, TraceError> {
    let table = Table::read_with_comments(text, file)?;
    for (i, name) in table.header.iter().enumerate() {
        let lower = name.to_ascii_lowercase();
        if !REQUIRED.contains(&lower.as_str()) && !OPTIONAL.contains(&lower.as_str()) {
            return Err(TraceError::file(
                file,
                format!(
                    "header: unknown column \"{}\" (column {}); canonical columns are {} \
                     (required) and {}",
                    shorten(name),
                    i + 1,
                    REQUIRED.join(", "),
                    OPTIONAL.join(", ")
                ),
            ));
        }
    }
    let cols = Cols {
        id: table.require("id")?,
        submit: table.require("submit_s")?,
        accelerators: table.require("accelerators")?,
        duration: table.require("duration_s")?,
        accelerator_type: table.find("accelerator_type"),
        tenant: table.find("tenant"),
        kind: table.find("kind"),
        priority: table.find("priority"),
        min_accelerators: table.find("min_accelerators"),
        replicas: table.find("replicas"),
        clusters: table.find("clusters"),
        load: table.find("load"),
        work: table.find("work"),
    };
    let width = table.header.len();
    let mut ids: HashMap<String, u64> = HashMap::new();
    let (jobs, skipped) = table.convert(opts, |row| {
        row.check_width(width)?;
        let job = job_from_row(row, &cols)?;
        if let Some(first) = ids.get(&job.id) {
            return Err(row.error(
                "id",
                format!(
                    "duplicate id \"{}\" (first on line {first})",
                    shorten(&job.id)
                ),
            ));
        }
        ids.insert(job.id.clone(), row.line);
        Ok(Some(job))
    })?;
    let mut trace = Trace {
        jobs,
        skipped,
        ..Trace::default()
    };
    trace.note_origins(file, ids);
    Ok(trace)
}

fn job_from_row(row: &Row<'_>, c: &Cols) -> Result<JobSpec, TraceError> {
    let id = row.text(c.id)?.to_owned();
    let submit_s = row.submit_time(c.submit)?;
    let accelerators = row.positive_int(c.accelerators)?;
    let opt = |idx: Option<usize>| idx.map_or("", |i| row.get(i));

    let kind = match opt(c.kind) {
        "" => JobKind::Training,
        k => JobKind::parse(k).ok_or_else(|| {
            row.error(
                "kind",
                format!(
                    "expected training, batch or inference, found \"{}\"",
                    shorten(k)
                ),
            )
        })?,
    };
    let tenant = match opt(c.tenant) {
        "" => DEFAULT_TENANT.to_owned(),
        t => t.to_owned(),
    };
    let priority = match opt(c.priority) {
        "" => 0,
        p => p.parse::<i32>().map_err(|_| {
            row.error(
                "priority",
                format!(
                    "expected an integer from {} to {}, found \"{}\"",
                    i32::MIN,
                    i32::MAX,
                    shorten(p)
                ),
            )
        })?,
    };
    let min_accelerators = match c.min_accelerators {
        Some(i) if !row.get(i).is_empty() => {
            if kind != JobKind::Training {
                return Err(row.error(
                    "min_accelerators",
                    format!(
                        "min_accelerators is for (elastic) training runs only (kind is {})",
                        kind.as_str()
                    ),
                ));
            }
            let m = row.positive_int(i)?;
            if m > accelerators {
                return Err(row.error(
                    "min_accelerators",
                    format!("{m} is more than accelerators ({accelerators})"),
                ));
            }
            Some(m)
        }
        _ => None,
    };
    let replicas = match opt(c.replicas) {
        "" => None,
        r => {
            if kind != JobKind::Inference {
                return Err(row.error(
                    "replicas",
                    format!(
                        "only inference jobs have replicas (kind is {})",
                        kind.as_str()
                    ),
                ));
            }
            Some(parse_replicas(r).ok_or_else(|| {
                row.error(
                    "replicas",
                    format!(
                        "expected MIN..MAX@CAPACITY with 1 <= MIN <= MAX and CAPACITY > 0 (e.g. \
                         2..16@50), found \"{}\"",
                        shorten(r)
                    ),
                )
            })?)
        }
    };
    let replicas = match (replicas, opt(c.load)) {
        (r, "") => r,
        (None, l) => {
            return Err(row.error(
                "load",
                format!(
                    "a load needs replicas (found load \"{}\" and no replicas)",
                    shorten(l)
                ),
            ));
        }
        (Some(mut r), l) => {
            r.load = Some(parse_load(l).ok_or_else(|| {
                row.error(
                    "load",
                    format!(
                        "expected MEAN:AMPLITUDE:PEAK_HOUR (mean >= 0, amplitude 0 to 1, hour from 0 to below 24, e.g. 4000:0.6:20), found \"{}\"",
                        shorten(l)
                    ),
                )
            })?);
            Some(r)
        }
    };
    let accelerator_types = split_list(row, "accelerator_type", opt(c.accelerator_type), '|')?
        .into_iter()
        .map(|name| canonical_accelerator(row, "accelerator_type", name))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some((_, twice)) = accelerator_types
        .iter()
        .enumerate()
        .find(|(i, t)| accelerator_types[..*i].contains(t))
    {
        return Err(row.error(
            "accelerator_type",
            format!("names {twice} twice (aliases name the same accelerator)"),
        ));
    }
    let clusters: Vec<String> = split_list(row, "clusters", opt(c.clusters), '|')?
        .into_iter()
        .map(str::to_owned)
        .collect();
    if let Some((_, twice)) = clusters
        .iter()
        .enumerate()
        .find(|(i, name)| clusters[..*i].contains(name))
    {
        return Err(row.error("clusters", format!("names {twice} twice")));
    }

    let duration_text = row.get(c.duration);
    let work_text = opt(c.work);
    let work = if work_text.eq_ignore_ascii_case("open") {
        no_duration(row, duration_text, "open")?;
        Work::Open
    } else if let Some((units, profile)) = work_text.split_once('@') {
        no_duration(row, duration_text, "an amount")?;
        let units = units.trim();
        let units = units
            .parse::<f64>()
            .ok()
            .filter(|u| u.is_finite() && *u > 0.0)
            .ok_or_else(|| {
                row.error(
                    "work",
                    format!(
                        "expected UNITS@PROFILE with UNITS > 0, found \"{}\"",
                        shorten(work_text)
                    ),
                )
            })?;
        let profile = profile.trim();
        if profile.is_empty() {
            return Err(row.error("work", "UNITS@PROFILE has an empty profile"));
        }
        Work::Amount {
            units,
            profile: profile.to_owned(),
        }
    } else {
        // The work column is read first: a malformed one is the mistake to name, not the
        // duration it would have made unnecessary.
        let mut by_accelerator = BTreeMap::new();
        for part in split_list(row, "work", work_text, ';')? {
            let (name, secs) = part.split_once('=').ok_or_else(|| {
                row.error(
                    "work",
                    format!(
                        "expected open, UNITS@PROFILE or ACCELERATOR=SECONDS;…, found \"{}\"",
                        shorten(work_text)
                    ),
                )
            })?;
            let name = canonical_accelerator(row, "work", name.trim())?;
            let secs = secs
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0)
                .ok_or_else(|| {
                    row.error(
                        "work",
                        format!(
                            "expected seconds > 0 for {name}, found \"{}\"",
                            shorten(secs)
                        ),
                    )
                })?;
            if by_accelerator.contains_key(&name) {
                return Err(row.error(
                    "work",
                    format!("gives a time for {name} twice (aliases name the same accelerator)"),
                ));
            }
            by_accelerator.insert(name, secs);
        }
        let seconds = row.positive(c.duration)?;
        Work::Duration {
            seconds,
            by_accelerator,
        }
    };
    Ok(JobSpec {
        id,
        tenant,
        kind,
        priority,
        submit_s,
        accelerators,
        min_accelerators,
        replicas,
        accelerator_types,
        clusters,
        work,
    })
}

fn no_duration(row: &Row<'_>, duration: &str, what: &str) -> Result<(), TraceError> {
    if duration.is_empty() {
        Ok(())
    } else {
        Err(row.error(
            "duration_s",
            format!(
                "must be empty when work is {what} (found \"{}\")",
                shorten(duration)
            ),
        ))
    }
}

fn parse_replicas(text: &str) -> Option<Replicas> {
    let (range, capacity) = text.split_once('@')?;
    let (min, max) = range.split_once("..")?;
    let min = min.trim().parse::<u32>().ok()?;
    let max = max.trim().parse::<u32>().ok()?;
    let capacity = capacity.trim().parse::<f64>().ok()?;
    (min >= 1 && min <= max && capacity.is_finite() && capacity > 0.0).then_some(Replicas {
        min,
        max,
        capacity_per_replica: capacity,
        load: None,
    })
}

fn parse_load(text: &str) -> Option<DiurnalLoad> {
    let mut parts = text.split(':').map(|p| p.trim().parse::<f64>().ok());
    let (mean, amplitude, peak_hour) = (parts.next()??, parts.next()??, parts.next()??);
    if parts.next().is_some() {
        return None;
    }
    (mean.is_finite()
        && mean >= 0.0
        && (0.0..=1.0).contains(&amplitude)
        && (0.0..24.0).contains(&peak_hour))
    .then_some(DiurnalLoad {
        mean,
        amplitude,
        peak_hour,
    })
}

/// The entries of a `sep`-separated list (none for an empty cell). An empty entry, as in `a||b`
/// or `a|`, is refused: it is more likely a name lost in editing than nothing.
fn split_list<'t>(
    row: &Row<'_>,
    column: &str,
    text: &'t str,
    sep: char,
) -> Result<Vec<&'t str>, TraceError> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let entries: Vec<&str> = text.split(sep).map(str::trim).collect();
    if let Some(i) = entries.iter().position(|e| e.is_empty()) {
        return Err(row.error(
            column,
            format!(
                "entry {} of the list \"{}\" is empty (entries are separated by '{sep}')",
                i + 1,
                shorten(text)
            ),
        ));
    }
    Ok(entries)
}

/// Resolves an accelerator name or alias to its canonical catalog name.
pub(crate) fn canonical_accelerator(
    row: &Row<'_>,
    column: &str,
    name: &str,
) -> Result<String, TraceError> {
    accelerator::lookup(name)
        .map(|a| a.name.to_owned())
        .ok_or_else(|| {
            row.error(
                column,
                format!(
                    "unknown accelerator \"{}\" (known: {})",
                    shorten(name),
                    accelerator::names().join(", ")
                ),
            )
        })
}

/// Writes jobs as a canonical trace with every column; [`super::parse`] with
/// [`super::TraceFormat::Canonical`] reads it back to the same jobs.
pub fn write_canonical(jobs: &[JobSpec], out: &mut impl Write) -> Result<(), TraceError> {
    // Quote any field holding the comment character, so an id starting with `#` is read back
    // as a job rather than skipped as a comment.
    let mut w = csv::WriterBuilder::new()
        .comment(Some(b'#'))
        .from_writer(out);
    let header: Vec<&str> = REQUIRED.iter().chain(OPTIONAL.iter()).copied().collect();
    w.write_record(&header).map_err(csv_write_error)?;
    for job in jobs {
        let (duration, work) = match &job.work {
            Work::Duration {
                seconds,
                by_accelerator,
            } => (
                seconds.to_string(),
                by_accelerator
                    .iter()
                    .map(|(a, s)| format!("{a}={s}"))
                    .collect::<Vec<_>>()
                    .join(";"),
            ),
            Work::Amount { units, profile } => (String::new(), format!("{units}@{profile}")),
            Work::Open => (String::new(), "open".to_owned()),
        };
        let replicas = job.replicas.as_ref().map_or(String::new(), |r| {
            format!("{}..{}@{}", r.min, r.max, r.capacity_per_replica)
        });
        let record = [
            job.id.clone(),
            job.submit_s.to_string(),
            job.accelerators.to_string(),
            duration,
            job.accelerator_types.join("|"),
            job.tenant.clone(),
            job.kind.as_str().to_owned(),
            job.priority.to_string(),
            job.min_accelerators
                .map_or(String::new(), |m| m.to_string()),
            replicas,
            job.clusters.join("|"),
            job.replicas
                .as_ref()
                .and_then(|r| r.load.as_ref())
                .map_or(String::new(), |l| {
                    format!("{}:{}:{}", l.mean, l.amplitude, l.peak_hour)
                }),
            work,
        ];
        w.write_record(&record).map_err(csv_write_error)?;
    }
    w.flush().map_err(TraceError::Write)?;
    Ok(())
}

fn csv_write_error(e: csv::Error) -> TraceError {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => TraceError::Write(io),
        other => TraceError::Write(std::io::Error::other(format!("{other:?}"))),
    }
}
