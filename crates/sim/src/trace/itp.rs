//! Microsoft ITP (ElasticFlow, ASPLOS'23) `raw/clusterNN.csv`:
//! `job_id,submission_time,duration,num_gpu` (seconds). The `elasticflow/clusterNN.csv` files
//! carry the same columns among others and load too.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use switchyard_core::job::{JobKind, JobSpec, Work};

use super::table::{Table, shorten};
use super::{LoadOptions, Trace, TraceError};

/// The tenant of one file's jobs: its name without extension (`cluster04`).
fn tenant_of(file: &str) -> String {
    let name = Path::new(file)
        .file_stem()
        .map_or_else(|| file.to_owned(), |s| s.to_string_lossy().into_owned());
    if name.is_empty() {
        super::canonical::DEFAULT_TENANT.to_owned()
    } else {
        name
    }
}

/// Reads one or several ITP cluster files (name, text). Submission times are shifted so the
/// earliest submission over all of them is 0 (the files share one time origin).
pub(crate) fn parse_many(
    files: &[(String, String)],
    opts: &LoadOptions,
) -> Result<Trace, TraceError> {
    let mut trace = Trace::default();
    for (file, text) in files {
        let table = Table::read(text, file)?;
        let id = table.require("job_id")?;
        let submit = table.require("submission_time")?;
        let duration = table.require("duration")?;
        let gpus = table.require("num_gpu")?;
        let width = table.header.len();
        let tenant = tenant_of(file);
        let mut ids: HashMap<String, u64> = HashMap::new();
        let (jobs, skipped) = table.convert(opts, |row| {
            row.check_width(width)?;
            let job_id = row.text(id)?;
            let submit_s = row.non_negative(submit)?;
            let seconds = row.positive(duration)?;
            let accelerators = row.positive_int(gpus)?;
            if let Some(first) = ids.get(job_id) {
                return Err(row.error(
                    &row.column_name(id),
                    format!(
                        "duplicate job_id \"{}\" (first on line {first})",
                        shorten(job_id)
                    ),
                ));
            }
            ids.insert(job_id.to_owned(), row.line);
            Ok(Some(JobSpec {
                id: format!("{tenant}/{job_id}"),
                tenant: tenant.clone(),
                kind: JobKind::Training,
                priority: 0,
                submit_s,
                accelerators,
                min_accelerators: None,
                replicas: None,
                accelerator_types: Vec::new(),
                clusters: Vec::new(),
                work: Work::Duration {
                    seconds,
                    by_accelerator: BTreeMap::new(),
                },
            }))
        })?;
        trace.jobs.extend(jobs);
        trace.skipped += skipped;
        trace.note_origins(
            file,
            ids.into_iter()
                .map(|(job_id, line)| (format!("{tenant}/{job_id}"), line)),
        );
    }
    let first = trace
        .jobs
        .iter()
        .map(|j| j.submit_s)
        .fold(f64::INFINITY, f64::min);
    if first.is_finite() {
        for job in &mut trace.jobs {
            job.submit_s -= first;
        }
    }
    super::sort_by_submit(&mut trace.jobs);
    Ok(trace)
}
