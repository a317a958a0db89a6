//! Microsoft Philly (2017) job list as published with Pollux (`pollux_philly_jobs.csv`):
//! `timestamp,duration,num_gpus,gpu_time,cluster`.

use std::collections::BTreeMap;
use std::sync::Arc;

use switchyard_core::job::{JobKind, JobSpec, Work};

use super::table::{Row, Table, shorten};
use super::{LoadOptions, Trace, TraceError};

pub(crate) fn parse(text: &str, file: &str, opts: &LoadOptions) -> Result<Trace, TraceError> {
    let table = Table::read(text, file)?;
    let ts = table.require("timestamp")?;
    let duration = table.require("duration")?;
    let gpus = table.require("num_gpus")?;
    let cluster = table.require("cluster")?;
    let width = table.header.len();
    let (rows, skipped) = table.convert(opts, |row| {
        row.check_width(width)?;
        let submit = parse_timestamp(row, ts)?;
        let seconds = row.positive(duration)?;
        let accelerators = row.positive_int(gpus)?;
        let tenant = row.text(cluster)?.to_owned();
        Ok(Some((
            row.line,
            submit,
            JobSpec {
                id: row.row.to_string(),
                tenant,
                kind: JobKind::Training,
                priority: 0,
                submit_s: 0.0,
                accelerators,
                min_accelerators: None,
                replicas: None,
                accelerator_types: Vec::new(),
                clusters: Vec::new(),
                work: Work::Duration {
                    seconds,
                    by_accelerator: BTreeMap::new(),
                },
            },
        )))
    })?;
    let first = rows.iter().map(|(_, t, _)| *t).min().unwrap_or(0);
    let mut trace = Trace {
        skipped,
        ..Trace::default()
    };
    let file: Arc<str> = file.into();
    for (line, t, mut job) in rows {
        job.submit_s = (t - first) as f64;
        trace.note_origin(&job.id, &file, line);
        trace.jobs.push(job);
    }
    super::sort_by_submit(&mut trace.jobs);
    Ok(trace)
}

/// `YYYY-MM-DD HH:MM:SS` (also with a `T`) → seconds since 1970-01-01 (UTC; the trace's own
/// zone does not matter because times are taken relative to the first submission).
fn parse_timestamp(row: &Row<'_>, idx: usize) -> Result<i64, TraceError> {
    let v = row.get(idx);
    seconds_since_epoch(v).ok_or_else(|| {
        row.error(
            &row.column_name(idx),
            format!(
                "expected a time YYYY-MM-DD HH:MM:SS, found \"{}\"",
                shorten(v)
            ),
        )
    })
}

pub(crate) fn seconds_since_epoch(v: &str) -> Option<i64> {
    let (date, time) = v.split_once([' ', 'T'])?;
    let mut d = date.splitn(3, '-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    let mut t = time.trim().splitn(3, ':');
    let hour: i64 = t.next()?.parse().ok()?;
    let minute: i64 = t.next()?.parse().ok()?;
    let second: f64 = t.next()?.parse().ok()?;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => return None,
    };
    if !(1..=9999).contains(&year)
        || day == 0
        || day > days_in_month
        || !(0..24).contains(&hour)
        || !(0..60).contains(&minute)
        || !(0.0..61.0).contains(&second)
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second as i64)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_arithmetic() {
        assert_eq!(seconds_since_epoch("1970-01-01 00:00:00"), Some(0));
        assert_eq!(
            seconds_since_epoch("2017-09-04 10:30:41"),
            Some(1_504_521_041)
        );
        assert_eq!(
            seconds_since_epoch("2000-02-29 00:00:00"),
            Some(951_782_400)
        );
        assert_eq!(seconds_since_epoch("2017-02-29 00:00:00"), None);
        assert_eq!(seconds_since_epoch("2017-13-01 00:00:00"), None);
        assert_eq!(seconds_since_epoch("garbage"), None);
    }
}
