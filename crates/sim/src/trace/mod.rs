//! Traces: the canonical CSV format, importers for public cluster traces, Gavel's throughput
//! table, and scenario generators. docs/traces.md describes every format.
//!
//! Every reader returns jobs as [`JobSpec`]s with canonical accelerator names, or an error that
//! names the file, the line (and data row) and the column. With
//! [`LoadOptions::skip_invalid`] bad rows are skipped and counted in [`Trace::skipped`]
//! instead. No input makes a reader panic (property tests feed them random bytes).

mod alibaba;
mod canonical;
mod gavel;
mod generate;
mod itp;
mod philly;
mod table;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use switchyard_core::job::JobSpec;

pub use canonical::{DEFAULT_TENANT, write_canonical};
pub use gavel::{gavel_profile, load_throughputs, parse_throughputs};
pub use generate::{MODEL_PRESETS, ModelPreset, frontier_lab, synthetic};

/// The trace formats Switchyard reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TraceFormat {
    /// Switchyard's own CSV (`id,submit_s,accelerators,duration_s` plus optional columns).
    Canonical,
    /// Microsoft Philly 2017 job list as published by Pollux (`pollux_philly_jobs.csv`).
    Philly,
    /// Microsoft ITP 2021 (ElasticFlow) `raw/clusterNN.csv`, one file or the `raw/` folder.
    Itp,
    /// Alibaba cluster-trace-gpu-v2023 (`openb_pod_list_*.csv`).
    Alibaba2023,
    /// Gavel's tab-separated `.trace` files (10-column current or 7-column old layout).
    Gavel,
}

impl TraceFormat {
    /// Every format, in the order `--help` lists them.
    pub const ALL: [TraceFormat; 5] = [
        TraceFormat::Canonical,
        TraceFormat::Philly,
        TraceFormat::Itp,
        TraceFormat::Alibaba2023,
        TraceFormat::Gavel,
    ];

    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            TraceFormat::Canonical => "canonical",
            TraceFormat::Philly => "philly",
            TraceFormat::Itp => "itp",
            TraceFormat::Alibaba2023 => "alibaba2023",
            TraceFormat::Gavel => "gavel",
        }
    }

    /// Valid names, comma-separated (for error messages and help text).
    pub fn names() -> String {
        Self::ALL
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for TraceFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TraceFormat {
    type Err = TraceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|f| f.as_str() == wanted)
            .ok_or_else(|| TraceError::UnknownFormat(s.to_owned()))
    }
}

/// How strictly a trace is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Skip malformed rows (and count them in [`Trace::skipped`]) instead of failing.
    pub skip_invalid: bool,
}

/// The jobs read from a trace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trace {
    pub jobs: Vec<JobSpec>,
    /// Rows that did not become jobs: malformed rows skipped under
    /// [`LoadOptions::skip_invalid`], plus rows a format's importer leaves out by design
    /// (CPU-only pods of the Alibaba trace); docs/traces.md lists them per format.
    pub skipped: usize,
    /// Where each job's row is, by job id: a job the simulator refuses is named by file and
    /// line too (readers sort jobs by submission time, so a job's index is not its row).
    pub origins: HashMap<String, RowOrigin>,
}

/// The file and line a job of a trace was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowOrigin {
    pub file: Arc<str>,
    /// 1-based line of the file where the job's row starts.
    pub line: u64,
}

impl Trace {
    /// Records that job `id` was read from `line` of `file`.
    pub(crate) fn note_origin(&mut self, id: &str, file: &Arc<str>, line: u64) {
        self.origins.insert(
            id.to_owned(),
            RowOrigin {
                file: Arc::clone(file),
                line,
            },
        );
    }

    /// Records the rows of `file` that jobs were read from: (job id, line) pairs.
    pub(crate) fn note_origins(
        &mut self,
        file: &str,
        rows: impl IntoIterator<Item = (String, u64)>,
    ) {
        let file: Arc<str> = file.into();
        for (id, line) in rows {
            self.note_origin(&id, &file, line);
        }
    }

    /// Adds `other`'s jobs, their ids prefixed with `prefix` and a slash.
    pub(crate) fn append_prefixed(&mut self, other: Trace, prefix: &str) {
        self.jobs.extend(other.jobs.into_iter().map(|mut j| {
            j.id = format!("{prefix}/{}", j.id);
            j
        }));
        self.origins.extend(
            other
                .origins
                .into_iter()
                .map(|(id, origin)| (format!("{prefix}/{id}"), origin)),
        );
        self.skipped += other.skipped;
    }
}

/// Why a trace could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error(
        "unknown trace format \"{0}\"; valid formats: canonical, philly, itp, alibaba2023, gavel"
    )]
    UnknownFormat(String),
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// A problem with one row. `line` is the 1-based line of the file where the row starts;
    /// `row` is the 1-based data row (not counting a header).
    #[error("{file}: line {line} (row {row}), column {column}: {message}")]
    Row {
        file: String,
        line: u64,
        row: u64,
        column: String,
        message: String,
    },
    /// A problem with the file as a whole (header, structure, empty folder).
    #[error("{file}: {message}")]
    File { file: String, message: String },
    #[error("writing canonical trace: {0}")]
    Write(#[source] std::io::Error),
}

impl TraceError {
    pub(crate) fn file(file: &str, message: impl Into<String>) -> Self {
        TraceError::File {
            file: file.to_owned(),
            message: message.into(),
        }
    }
}

fn io_error(path: &Path, source: std::io::Error) -> TraceError {
    TraceError::Io {
        file: path.display().to_string(),
        source,
    }
}

/// Reads a trace file (or, for some formats, a folder) in `format`.
///
/// Folders: `itp` reads every `cluster*.csv` in the folder (or in its `raw/` subfolder) in
/// name order; `alibaba2023` reads `openb_pod_list_default.csv` from the folder; `gavel` reads
/// every `*.trace` file in the folder in name order, job ids becoming `FILE-STEM/N`. Other
/// formats need a file.
pub fn load(path: &Path, format: TraceFormat, opts: &LoadOptions) -> Result<Trace, TraceError> {
    if path.is_dir() {
        return load_dir(path, format, opts);
    }
    let text = read_text(path)?;
    parse(&text, &source_name(path), format, opts)
}

/// Parses a trace held in memory; `source_name` names it in error messages.
pub fn parse(
    text: &str,
    source_name: &str,
    format: TraceFormat,
    opts: &LoadOptions,
) -> Result<Trace, TraceError> {
    match format {
        TraceFormat::Canonical => canonical::parse(text, source_name, opts),
        TraceFormat::Philly => philly::parse(text, source_name, opts),
        TraceFormat::Itp => itp::parse_many(&[(source_name.to_owned(), text.to_owned())], opts),
        TraceFormat::Alibaba2023 => alibaba::parse(text, source_name, opts),
        TraceFormat::Gavel => gavel::parse(text, source_name, opts),
    }
}

pub(crate) fn read_text(path: &Path) -> Result<String, TraceError> {
    let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = 1 + valid.iter().filter(|&&b| b == b'\n').count();
        TraceError::file(
            &source_name(path),
            format!("line {line}: not valid UTF-8 text"),
        )
    })
}

/// How a file is named in error messages: its path as given.
fn source_name(path: &Path) -> String {
    path.display().to_string()
}

fn files_in(dir: &Path, keep: impl Fn(&str) -> bool) -> Result<Vec<PathBuf>, TraceError> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_file() && keep(&name) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn load_dir(dir: &Path, format: TraceFormat, opts: &LoadOptions) -> Result<Trace, TraceError> {
    let dir_name = source_name(dir);
    match format {
        TraceFormat::Itp => {
            let raw = dir.join("raw");
            let folder = if raw.is_dir() { raw } else { dir.to_path_buf() };
            let files = files_in(&folder, |n| n.starts_with("cluster") && n.ends_with(".csv"))?;
            if files.is_empty() {
                return Err(TraceError::file(
                    &source_name(&folder),
                    "folder holds no cluster*.csv files (expected ITP raw/clusterNN.csv)",
                ));
            }
            let mut texts = Vec::new();
            for f in &files {
                texts.push((source_name(f), read_text(f)?));
            }
            itp::parse_many(&texts, opts)
        }
        TraceFormat::Alibaba2023 => {
            let file = dir.join("openb_pod_list_default.csv");
            if !file.is_file() {
                return Err(TraceError::file(
                    &dir_name,
                    "folder has no openb_pod_list_default.csv; name a pod list file instead",
                ));
            }
            load(&file, format, opts)
        }
        TraceFormat::Gavel => {
            let files = files_in(dir, |n| n.ends_with(".trace"))?;
            if files.is_empty() {
                return Err(TraceError::file(&dir_name, "folder holds no *.trace files"));
            }
            let mut trace = Trace::default();
            for f in &files {
                let t = load(f, format, opts)?;
                // Job ids restart at 0 in every file: prefix them with the file stem.
                let stem = f
                    .file_stem()
                    .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
                trace.append_prefixed(t, &stem);
            }
            sort_by_submit(&mut trace.jobs);
            Ok(trace)
        }
        TraceFormat::Canonical | TraceFormat::Philly => Err(TraceError::file(
            &dir_name,
            format!("is a folder; the {format} format reads one file"),
        )),
    }
}

/// Stable sort by submission time (importers return jobs in arrival order).
pub(crate) fn sort_by_submit(jobs: &mut [JobSpec]) {
    jobs.sort_by(|a, b| a.submit_s.total_cmp(&b.submit_s));
}
