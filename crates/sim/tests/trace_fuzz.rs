//! Property tests: no reader panics on any input, lenient reading accounts for every row, and
//! the canonical writer round-trips every valid job.

use std::collections::BTreeMap;

use proptest::prelude::*;
use switchyard_core::job::{DiurnalLoad, JobKind, JobSpec, Replicas, Work};
use switchyard_sim::trace::{LoadOptions, TraceFormat, parse, parse_throughputs, write_canonical};

const STRICT: LoadOptions = LoadOptions {
    skip_invalid: false,
};
const LENIENT: LoadOptions = LoadOptions { skip_invalid: true };

fn check_jobs(jobs: &[JobSpec]) {
    for j in jobs {
        assert!(j.accelerators >= 1);
        assert!(j.submit_s.is_finite() && j.submit_s >= 0.0);
        assert!(!j.id.is_empty());
        match &j.work {
            Work::Duration { seconds, .. } => assert!(seconds.is_finite() && *seconds > 0.0),
            Work::Amount { units, profile } => {
                assert!(units.is_finite() && *units > 0.0);
                assert!(!profile.is_empty());
            }
            Work::Open => {}
        }
    }
}

fn parse_all_formats(text: &str) {
    for format in TraceFormat::ALL {
        for opts in [STRICT, LENIENT] {
            if let Ok(t) = parse(text, "fuzz.csv", format, &opts) {
                check_jobs(&t.jobs);
            }
        }
    }
    let _ = parse_throughputs(text, "fuzz.json");
}

/// Tokens that exercise the field parsers' edges.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("0".to_owned()),
        Just("1".to_owned()),
        Just("8".to_owned()),
        Just("-3".to_owned()),
        Just("4294967296".to_owned()),
        Just("1e309".to_owned()),
        Just("NaN".to_owned()),
        Just("inf".to_owned()),
        Just("2.5".to_owned()),
        Just("\"".to_owned()),
        Just("\"a,b\"".to_owned()),
        Just("open".to_owned()),
        Just("5@llama".to_owned()),
        Just("@".to_owned()),
        Just("1..2@3".to_owned()),
        Just("5:0.5:20".to_owned()),
        Just("5:2:25".to_owned()),
        Just("3..1@3".to_owned()),
        Just("V100=1;K80=2".to_owned()),
        Just("=;".to_owned()),
        Just("H100|V100".to_owned()),
        Just("|".to_owned()),
        Just("inference".to_owned()),
        Just("batch".to_owned()),
        Just("LS".to_owned()),
        Just("V100M16|G2".to_owned()),
        Just("2017-09-04 10:30:41".to_owned()),
        Just("2017-02-30 10:30:41".to_owned()),
        Just("9999-12-31 23:59:60".to_owned()),
        Just("\t".to_owned()),
        Just("é✓".to_owned()),
        "[a-z0-9 .:-]{0,8}",
    ]
}

const HEADERS: &[&str] = &[
    "id",
    "submit_s",
    "accelerators",
    "duration_s",
    "accelerator_type",
    "tenant",
    "kind",
    "priority",
    "min_accelerators",
    "replicas",
    "clusters",
    "work",
    "load",
    "timestamp",
    "duration",
    "num_gpus",
    "cluster",
    "job_id",
    "submission_time",
    "num_gpu",
    "name",
    "gpu_milli",
    "gpu_spec",
    "qos",
    "creation_time",
    "deletion_time",
    "scheduled_time",
    "bogus",
];

fn table() -> impl Strategy<Value = String> {
    (
        proptest::sample::subsequence(HEADERS, 0..HEADERS.len()),
        any::<u64>(),
        proptest::collection::vec(proptest::collection::vec(token(), 0..14), 0..12),
        prop_oneof![Just(","), Just("\t")],
    )
        .prop_map(|(mut header, shuffle, rows, sep)| {
            // A cheap deterministic shuffle so columns come in any order.
            let n = header.len();
            for i in 0..n {
                let j = (shuffle.rotate_left(i as u32 * 7) as usize) % n;
                header.swap(i, j);
            }
            let mut text = header.join(sep);
            text.push('\n');
            for row in rows {
                text.push_str(&row.join(sep));
                text.push('\n');
            }
            text
        })
}

fn valid_job() -> impl Strategy<Value = JobSpec> {
    let accel = prop_oneof![Just("H100-SXM"), Just("V100"), Just("TPU-v5p"), Just("K80")];
    (
        "[a-zA-Z0-9_/ ,\"-]{0,6}[a-z0-9]",
        "[a-z][a-z0-9-]{0,8}",
        0u8..3,
        -5i32..50,
        0.0f64..1e7,
        1u32..100_000,
        proptest::collection::vec(accel.clone(), 0..3),
        proptest::collection::vec("[a-z][a-z0-9-]{0,6}", 0..3),
        (0u8..3, 1.0f64..1e9, "[a-z][a-z0-9 ().-]{0,12}[a-z)]"),
        proptest::collection::btree_map(accel, 1.0f64..1e6, 0..3),
        (1u32..4, 1u32..64, 0.5f64..1e4),
        (
            proptest::option::of(1u32..=1),
            proptest::option::of((0.0f64..1e6, 0.0f64..=1.0, 0.0f64..24.0)),
        ),
    )
        .prop_map(
            |(
                id,
                tenant,
                kind,
                priority,
                submit_s,
                accelerators,
                types,
                clusters,
                (w, amount, profile),
                by,
                (rmin, rextra, cap),
                (elastic, load),
            )| {
                let kind =
                    [JobKind::Training, JobKind::Batch, JobKind::Inference][usize::from(kind)];
                let mut accelerator_types: Vec<String> =
                    types.iter().map(|s| (*s).to_owned()).collect();
                accelerator_types.sort_unstable();
                accelerator_types.dedup();
                // (A cluster named twice is refused, as a type named twice is.)
                let mut clusters = clusters;
                clusters.sort_unstable();
                clusters.dedup();
                let work = match w {
                    0 => Work::Duration {
                        seconds: amount,
                        by_accelerator: by
                            .into_iter()
                            .map(|(k, v)| (k.to_owned(), v))
                            .collect::<BTreeMap<_, _>>(),
                    },
                    1 => Work::Amount {
                        units: amount,
                        profile,
                    },
                    _ => Work::Open,
                };
                JobSpec {
                    id,
                    tenant,
                    kind,
                    priority,
                    submit_s,
                    accelerators,
                    min_accelerators: elastic
                        .filter(|_| kind == JobKind::Training)
                        .map(|m| m.max(accelerators / 2).max(1)),
                    replicas: (kind == JobKind::Inference).then_some(Replicas {
                        min: rmin,
                        max: rmin + rextra,
                        capacity_per_replica: cap,
                        load: load.map(|(mean, amplitude, peak_hour)| DiurnalLoad {
                            mean,
                            amplitude,
                            peak_hour,
                        }),
                    }),
                    accelerator_types,
                    clusters,
                    work,
                }
            },
        )
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        parse_all_formats(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn random_tables_never_panic(text in table()) {
        parse_all_formats(&text);
    }

    #[test]
    fn lenient_canonical_accounts_for_every_row(
        rows in proptest::collection::vec(proptest::collection::vec(token(), 4..=4), 0..20)
    ) {
        // No quotes, so one line is one row.
        let rows: Vec<Vec<String>> = rows
            .into_iter()
            .map(|r| r.into_iter().map(|f| f.replace(['"', '\t'], "x")).collect())
            .collect();
        let mut text = "id,submit_s,accelerators,duration_s\n".to_owned();
        let mut nonblank = 0;
        for r in &rows {
            let line = r.join(",");
            if r.iter().any(|f| !f.trim().is_empty()) {
                nonblank += 1;
            }
            text.push_str(&line);
            text.push('\n');
        }
        let t = parse(&text, "t.csv", TraceFormat::Canonical, &LENIENT).expect("lenient never fails on rows");
        prop_assert_eq!(t.jobs.len() + t.skipped, nonblank);
        check_jobs(&t.jobs);
    }

    #[test]
    fn canonical_round_trips(jobs in proptest::collection::vec(valid_job(), 0..12)) {
        // Ids must be unique and keep their edges (fields are trimmed on reading).
        let mut jobs = jobs;
        for (i, j) in jobs.iter_mut().enumerate() {
            j.id = format!("{i}{}", j.id);
        }
        let mut out = Vec::new();
        write_canonical(&jobs, &mut out).expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        let back = parse(&text, "rt.csv", TraceFormat::Canonical, &STRICT)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        prop_assert_eq!(back.jobs, jobs);
    }

    #[test]
    fn gavel_lines_never_panic(
        rows in proptest::collection::vec(proptest::collection::vec(token(), 0..12), 0..10)
    ) {
        let text: String = rows.iter().map(|r| r.join("\t") + "\n").collect();
        for opts in [STRICT, LENIENT] {
            if let Ok(t) = parse(&text, "x_v2.trace", TraceFormat::Gavel, &opts) {
                check_jobs(&t.jobs);
            }
        }
    }
}
