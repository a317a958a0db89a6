//! Alibaba cluster-trace-gpu-v2023 ("openb", FGD ATC'23) pod lists:
//! `name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,
//! deletion_time,scheduled_time` (times in seconds from the trace start). The `multigpu*`
//! variants carry only the first five columns.

use std::collections::{BTreeMap, HashMap};

use switchyard_core::accelerator;
use switchyard_core::job::{JobKind, JobSpec, Work};

use super::table::{Row, Table, shorten};
use super::{LoadOptions, Trace, TraceError};

/// Tenant of every pod (the trace names no owners).
pub const TENANT: &str = "openb";

/// Maps a `gpu_spec` model to a catalog name; `None` for the undisclosed models (G1, G2, G3)
/// and anything else the catalog does not know.
fn model(name: &str) -> Option<&'static str> {
    match name.to_ascii_uppercase().as_str() {
        "V100M16" | "V100M32" => Some("V100"),
        "G1" | "G2" | "G3" => None,
        other => accelerator::lookup(other).map(|a| a.name),
    }
}

/// Priority of a pod from its QoS class.
fn priority(row: &Row<'_>, idx: Option<usize>) -> Result<i32, TraceError> {
    let Some(idx) = idx else { return Ok(0) };
    let written = row.get(idx);
    match written.to_ascii_lowercase().as_str() {
        "" | "be" => Ok(0),
        "burstable" => Ok(1),
        "ls" => Ok(2),
        "guaranteed" => Ok(3),
        _ => Err(row.error(
            "qos",
            format!(
                "expected LS, BE, Burstable or Guaranteed, found \"{}\"",
                shorten(written)
            ),
        )),
    }
}

pub(crate) fn parse(text: &str, file: &str, opts: &LoadOptions) -> Result<Trace, TraceError> {
    let table = Table::read(text, file)?;
    let name = table.require("name")?;
    let num_gpu = table.require("num_gpu")?;
    let gpu_milli = table.require("gpu_milli")?;
    let gpu_spec = table.find("gpu_spec");
    let qos = table.find("qos");
    let creation = table.find("creation_time");
    let deletion = table.find("deletion_time");
    let scheduled = table.find("scheduled_time");
    if creation.is_some() != deletion.is_some() {
        return Err(TraceError::file(
            file,
            "header has only one of creation_time and deletion_time",
        ));
    }
    let width = table.header.len();
    let mut names: HashMap<String, u64> = HashMap::new();
    let (jobs, skipped) = table.convert(opts, |row| {
        row.check_width(width)?;
        let id = row.text(name)?;
        let gpus = row.count(num_gpu)?;
        let milli = row.count(gpu_milli)?;
        if milli > 1000 {
            return Err(row.error(
                "gpu_milli",
                format!("expected 0 to 1000 (thousandths of one GPU), found {milli}"),
            ));
        }
        if let Some(first) = names.get(id) {
            return Err(row.error(
                "name",
                format!(
                    "duplicate pod name \"{}\" (first on line {first})",
                    shorten(id)
                ),
            ));
        }
        // A name is taken once its row is read in full: a row skipped as bad (under
        // --skip-invalid) must not make a later good pod of that name a duplicate.
        if gpus == 0 {
            names.insert(id.to_owned(), row.line);
            return Ok(None); // CPU-only pod: not accelerator work.
        }
        let mut types: Vec<String> = Vec::new();
        if let Some(spec) = gpu_spec {
            for m in row
                .get(spec)
                .split('|')
                .map(str::trim)
                .filter(|m| !m.is_empty())
            {
                if let Some(m) = model(m)
                    && !types.iter().any(|t| t == m)
                {
                    types.push(m.to_owned());
                }
            }
        }
        let (submit_s, work) = match (creation, deletion) {
            (Some(c), Some(d)) => {
                let created = row.non_negative(c)?;
                let deleted = row.non_negative(d)?;
                let started = match scheduled {
                    Some(s) if !row.get(s).is_empty() => row.non_negative(s)?,
                    _ => created,
                };
                if started < created {
                    return Err(row.error(
                        "scheduled_time",
                        format!("{started} is before creation_time {created}"),
                    ));
                }
                if deleted < started {
                    return Err(row.error(
                        "deletion_time",
                        format!("{deleted} is before the pod started ({started})"),
                    ));
                }
                (
                    created,
                    Work::Duration {
                        // A pod deleted the second it started still held its GPU briefly.
                        seconds: (deleted - started).max(1.0),
                        by_accelerator: BTreeMap::new(),
                    },
                )
            }
            _ => (0.0, Work::Open),
        };
        // Without times the list is a packing snapshot: pods that hold their GPUs for as long
        // as the simulation runs, which is what a service is to the scheduler.
        let kind = if matches!(work, Work::Open) {
            JobKind::Inference
        } else {
            JobKind::Batch
        };
        let priority = priority(row, qos)?;
        names.insert(id.to_owned(), row.line);
        Ok(Some(JobSpec {
            id: id.to_owned(),
            tenant: TENANT.to_owned(),
            kind,
            priority,
            submit_s,
            accelerators: gpus,
            min_accelerators: None,
            replicas: None,
            accelerator_types: types,
            clusters: Vec::new(),
            work,
        }))
    })?;
    let mut trace = Trace {
        jobs,
        skipped,
        ..Trace::default()
    };
    super::sort_by_submit(&mut trace.jobs);
    trace.note_origins(file, names);
    Ok(trace)
}
