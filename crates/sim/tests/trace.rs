//! Trace readers and writer: the canonical CSV, the importers on the shipped copies in
//! data/traces, and (when ../shared/traces is present) on the full public traces.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use switchyard_core::job::{JobKind, JobSpec, Work};
use switchyard_sim::trace::{
    LoadOptions, Trace, TraceError, TraceFormat, gavel_profile, load, load_throughputs, parse,
    write_canonical,
};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/traces")
        .join(rel)
}

/// The full public traces, present in CI and on the development machine, absent in a user's clone.
fn shared(rel: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/traces")
        .join(rel);
    p.exists().then_some(p)
}

const STRICT: LoadOptions = LoadOptions {
    skip_invalid: false,
};
const LENIENT: LoadOptions = LoadOptions { skip_invalid: true };

fn canonical(text: &str) -> Result<Trace, TraceError> {
    parse(text, "trace.csv", TraceFormat::Canonical, &STRICT)
}

fn err(text: &str) -> String {
    canonical(text).expect_err("should be rejected").to_string()
}

#[test]
fn format_names_parse_and_errors_list_them() {
    for f in TraceFormat::ALL {
        assert_eq!(f.as_str().parse::<TraceFormat>().expect("own name"), f);
    }
    assert_eq!(
        "Gavel".parse::<TraceFormat>().expect("case-insensitive"),
        TraceFormat::Gavel
    );
    let e = "slurm"
        .parse::<TraceFormat>()
        .expect_err("unknown")
        .to_string();
    assert!(e.contains("slurm"), "{e}");
    for name in ["canonical", "philly", "itp", "alibaba2023", "gavel"] {
        assert!(e.contains(name), "{e}");
    }
}

#[test]
fn canonical_minimal() {
    let t =
        canonical("id,submit_s,accelerators,duration_s\na,0,8,3600\nb,10.5,1,60\n").expect("valid");
    assert_eq!(t.skipped, 0);
    assert_eq!(t.jobs.len(), 2);
    let a = &t.jobs[0];
    assert_eq!(a.id, "a");
    assert_eq!(a.tenant, "default");
    assert_eq!(a.kind, JobKind::Training);
    assert_eq!(a.priority, 0);
    assert_eq!(a.accelerators, 8);
    assert!(a.accelerator_types.is_empty());
    assert!(
        matches!(&a.work, Work::Duration { seconds, by_accelerator } if *seconds == 3600.0 && by_accelerator.is_empty())
    );
    assert_eq!(t.jobs[1].submit_s, 10.5);
}

#[test]
fn canonical_columns_in_any_order_with_every_optional_column() {
    let text = "\
# a comment line
work,tenant,kind,priority,accelerator_type,id,duration_s,accelerators,submit_s,min_accelerators,replicas,clusters,load
1e6@llama3-8b,pretrain,training,5,h100|H200,big,,1024,0,512,,colossus-1|aws-east,
open,serving,inference,9,,chat,,8,0,,2..16@40.5,,300:0.5:20
V100=100;k80=400,research,batch,-1,,eval,200,4,7,,,,
";
    let t = canonical(text).expect("valid");
    assert_eq!(t.jobs.len(), 3);
    let big = &t.jobs[0];
    assert_eq!(big.id, "big");
    assert_eq!(big.tenant, "pretrain");
    assert_eq!(big.priority, 5);
    assert_eq!(big.accelerator_types, vec!["H100-SXM", "H200"]);
    assert_eq!(big.clusters, vec!["colossus-1", "aws-east"]);
    assert_eq!(big.min_accelerators, Some(512));
    assert_eq!(
        big.work,
        Work::Amount {
            units: 1e6,
            profile: "llama3-8b".into()
        }
    );
    let chat = &t.jobs[1];
    assert_eq!(chat.kind, JobKind::Inference);
    assert_eq!(chat.work, Work::Open);
    let r = chat.replicas.as_ref().expect("replicas");
    assert_eq!((r.min, r.max, r.capacity_per_replica), (2, 16, 40.5));
    let load = r.load.expect("load");
    assert_eq!(
        (load.mean, load.amplitude, load.peak_hour),
        (300.0, 0.5, 20.0)
    );
    // Peak at 20:00 of 450 needs 12 replicas of 40.5; the trough at 08:00 (150) needs 4.
    assert_eq!(r.needed_at(20.0 * 3600.0), 12);
    assert_eq!(r.needed_at(86_400.0 + 8.0 * 3600.0), 4);
    let eval = &t.jobs[2];
    assert_eq!(eval.kind, JobKind::Batch);
    assert_eq!(eval.priority, -1);
    match &eval.work {
        Work::Duration {
            seconds,
            by_accelerator,
        } => {
            assert_eq!(*seconds, 200.0);
            assert_eq!(by_accelerator.get("V100"), Some(&100.0));
            assert_eq!(by_accelerator.get("K80"), Some(&400.0));
        }
        other => panic!("unexpected work {other:?}"),
    }
}

#[test]
fn canonical_errors_name_file_line_row_and_column() {
    let h = "id,submit_s,accelerators,duration_s\n";
    assert_eq!(
        err(&format!("{h}a,0,1,10\nb,0,-3,10\n")),
        "trace.csv: line 3 (row 2), column accelerators: expected a positive integer, found \"-3\""
    );
    assert_eq!(
        err(&format!("{h}a,x,1,10\n")),
        "trace.csv: line 2 (row 1), column submit_s: expected a number >= 0, found \"x\""
    );
    assert_eq!(
        err(&format!("{h}a,0,1,0\n")),
        "trace.csv: line 2 (row 1), column duration_s: expected a number > 0, found \"0\""
    );
    assert_eq!(
        err(&format!("{h}a,0,1,10\na,5,1,10\n")),
        "trace.csv: line 3 (row 2), column id: duplicate id \"a\" (first on line 2)"
    );
    assert!(
        err(&format!("{h}a,0,1\n"))
            .starts_with("trace.csv: line 2 (row 1), column duration_s: row has 3 fields")
    );
    assert!(err(&format!("{h}a,0,1,5,9\n")).contains("row has 5 fields, expected 4"));
    assert!(err(&format!("{h}\"a,0,1,5\n")).contains("row has 1 field, expected 4"));
    assert!(
        err("id,submit_s,accelerators,duration_s,color\n").contains("unknown column \"color\"")
    );
    assert!(err("id,submit_s,accelerators\n").contains("lacks column \"duration_s\""));
    assert!(err("").contains("no header"));
    let e = err("id,submit_s,accelerators,duration_s,accelerator_type\na,0,1,5,Z900\n");
    assert!(
        e.starts_with(
            "trace.csv: line 2 (row 1), column accelerator_type: unknown accelerator \"Z900\""
        ),
        "{e}"
    );
    let e = err("id,submit_s,accelerators,duration_s,kind\na,0,1,5,dance\n");
    assert!(e.contains("column kind"), "{e}");
    let e = err("id,submit_s,accelerators,duration_s,work\na,0,1,5,open\n");
    assert!(
        e.contains("column duration_s: must be empty when work is open"),
        "{e}"
    );
    let e = err("id,submit_s,accelerators,duration_s,work\na,0,1,,-4@x\n");
    assert!(e.contains("column work"), "{e}");
    let e = err("id,submit_s,accelerators,duration_s,replicas\na,0,1,5,1..2@3\n");
    assert!(e.contains("only inference jobs have replicas"), "{e}");
    let e = err(
        "id,submit_s,accelerators,duration_s,kind,replicas,load\na,0,4,,inference,1..2@3,5:2:1\n",
    );
    assert!(
        e.contains("column load: expected MEAN:AMPLITUDE:PEAK_HOUR"),
        "{e}"
    );
    let e = err("id,submit_s,accelerators,duration_s,load\na,0,4,5,5:0.5:1\n");
    assert!(e.contains("column load: a load needs replicas"), "{e}");
    let e = err("id,submit_s,accelerators,duration_s,min_accelerators\na,0,4,5,8\n");
    assert!(e.contains("column min_accelerators"), "{e}");
    // The rules the server's job files follow.
    let e = err("id,submit_s,accelerators,duration_s,kind,min_accelerators\na,0,4,5,batch,2\n");
    assert!(
        e.contains("column min_accelerators: min_accelerators is for (elastic) training runs only (kind is batch)"),
        "{e}"
    );
    let e = err(
        "id,submit_s,accelerators,duration_s,kind,replicas,work\na,0,8,,inference,0..4@50,open\n",
    );
    assert!(
        e.contains("column replicas: expected MIN..MAX@CAPACITY with 1 <= MIN"),
        "{e}"
    );
    let e = err("id,submit_s,accelerators,duration_s,clusters\na,0,8,5,fast|fast\n");
    assert!(e.contains("column clusters: names fast twice"), "{e}");
    let e = err("id,submit_s,accelerators,duration_s,accelerator_type\na,0,8,5,H100|h100\n");
    assert!(
        e.contains("column accelerator_type: names H100-SXM twice"),
        "{e}"
    );
    let e = err("id,submit_s,accelerators,duration_s,work\na,0,8,5,H100=5;h100=6\n");
    assert!(
        e.contains("column work: gives a time for H100-SXM twice"),
        "{e}"
    );
    assert_eq!(
        err(&format!("{h}a,1e12,1,10\n")),
        "trace.csv: line 2 (row 1), column submit_s: 1e12 s is more than 1e11 s (3,000 years) \
         after the trace's zero: times are seconds (a trace in milliseconds or microseconds needs \
         converting)"
    );
}

/// The line an error names is the one an editor shows: blank and comment lines count, and so
/// does every line ending, LF, CR LF or a lone CR.
#[test]
fn error_lines_count_blank_lines_comments_and_every_line_ending() {
    let header = "id,submit_s,accelerators,duration_s";
    let e = err(&format!("{header}\n\n\n\na,0,8,x\n"));
    assert!(
        e.starts_with("trace.csv: line 5 (row 1), column duration_s"),
        "{e}"
    );
    let e = err(&format!("{header}\n# one\n\na,0,8,1\n# two\n\nb,0,8,x\n"));
    assert!(
        e.starts_with("trace.csv: line 7 (row 2), column duration_s"),
        "{e}"
    );
    let e = err(&format!("{header}\n\n\na,0,8,1\n\nb,0,8,1\na,0,8,1\n"));
    assert_eq!(
        e,
        "trace.csv: line 7 (row 3), column id: duplicate id \"a\" (first on line 4)"
    );
    let e = err(&format!("{header}\r\na,0,8,1\r\nb,0,8,1\r\nc,0,8,x\r\n"));
    assert!(e.starts_with("trace.csv: line 4 (row 3)"), "{e}");
    let e = err(&format!("{header}\r\na,0,8,x\r\n"));
    assert!(e.starts_with("trace.csv: line 2 (row 1)"), "{e}");
    let e = err(&format!("{header}\ra,0,8,1\rb,0,8,1\rc,0,8,x\r"));
    assert!(e.starts_with("trace.csv: line 4 (row 3)"), "{e}");
    // A comment in a file of lone CRs ends at its CR, like every other line there.
    let e = err(&format!("{header}\r# one\ra,0,8,1\rb,0,8,x\r"));
    assert!(e.starts_with("trace.csv: line 4 (row 2)"), "{e}");
    let trace = parse(
        &format!("{header}\r# one\ra,0,8,1\r\r# two\rb,0,8,1\r"),
        "trace.csv",
        TraceFormat::Canonical,
        &STRICT,
    )
    .expect("valid");
    assert_eq!(trace.jobs.len(), 2, "no row is lost to a comment");
    let philly = "timestamp,duration,num_gpus,gpu_time,cluster\r\n\r\n2017-10-09 07:01:55,66.0,1,66.0,a\r\n\r\n2017-02-30 00:00:00,1,1,1,b\r\n";
    let e = parse(philly, "p.csv", TraceFormat::Philly, &STRICT)
        .expect_err("bad date")
        .to_string();
    assert!(
        e.starts_with("p.csv: line 5 (row 2), column timestamp"),
        "{e}"
    );
}

/// A column named twice would have one copy read and the other dropped without a word, in
/// every CSV format.
#[test]
fn a_column_named_twice_is_refused_in_every_csv_format() {
    for (format, text) in [
        (
            TraceFormat::Canonical,
            "id,submit_s,accelerators,duration_s,ID\na,0,8,1,b\n",
        ),
        (
            TraceFormat::Philly,
            "timestamp,duration,num_gpus,gpu_time,cluster,duration\n2017-10-09 07:01:55,66,1,66.0,a,77\n",
        ),
        (
            TraceFormat::Itp,
            "job_id,submission_time,duration,num_gpu,num_gpu\nj1,0,60,8,2000000\n",
        ),
        (
            TraceFormat::Alibaba2023,
            "name,cpu_milli,memory_mib,num_gpu,gpu_milli,num_gpu\nm0,1,1,1,1000,2000000\n",
        ),
    ] {
        let e = parse(text, "t.csv", format, &STRICT)
            .expect_err("a repeated column")
            .to_string();
        assert!(e.starts_with("t.csv: header: column \""), "{format:?}: {e}");
        assert!(e.contains("appears twice (columns"), "{format:?}: {e}");
    }
}

/// Readers sort jobs by submission time, so a job's index is not its row: each trace records
/// the file and line of every job, for messages about a job the simulator refuses.
#[test]
fn every_job_knows_the_line_it_came_from() {
    let philly = "timestamp,duration,num_gpus,gpu_time,cluster\n\n2017-10-09 07:01:55,66.0,1,66.0,a\n2017-10-09 06:13:03,2951.0,2,5902.0,b\n";
    let t = parse(philly, "p.csv", TraceFormat::Philly, &STRICT).expect("valid");
    let lines: Vec<(String, u64)> = t
        .jobs
        .iter()
        .map(|j| (j.id.clone(), t.origins[&j.id].line))
        .collect();
    assert_eq!(lines, [("2".to_owned(), 4), ("1".to_owned(), 3)]);
    assert_eq!(&*t.origins["2"].file, "p.csv");
    let canonical =
        canonical("# c\nid,submit_s,accelerators,duration_s\nlate,50,8,1\n\nearly,0,8,1\n")
            .expect("valid");
    assert_eq!(canonical.origins["early"].line, 5);
    assert_eq!(canonical.origins["late"].line, 3);
    let itp = parse(
        "job_id,submission_time,duration,num_gpu\nx,9,2,1\ny,1,2,1\n",
        "cluster07.csv",
        TraceFormat::Itp,
        &STRICT,
    )
    .expect("valid");
    assert_eq!(itp.origins["cluster07/x"].line, 2);
    assert_eq!(itp.origins["cluster07/y"].line, 3);
    let gavel = parse(
        "\nR\tcmd\twd\t-n\t1\t1000\t1\t1\t-1\t9\nR\tcmd\twd\t-n\t1\t1000\t1\t1\t-1\t0\n",
        "vc.trace",
        TraceFormat::Gavel,
        &STRICT,
    )
    .expect("valid");
    assert_eq!(gavel.origins["0"].line, 2);
    assert_eq!(gavel.origins["1"].line, 3);
    let folder = load(&data("gavel"), TraceFormat::Gavel, &STRICT).expect("folder");
    assert_eq!(folder.origins.len(), folder.jobs.len());
    let origin = &folder.origins["2869ce_v2/532"];
    assert!(origin.file.ends_with("2869ce_v2.trace"), "{origin:?}");
    assert_eq!(origin.line, 533);
    for (format, path) in [
        (TraceFormat::Itp, "itp/raw"),
        (TraceFormat::Philly, "philly/pollux_philly_jobs.csv"),
    ] {
        let t = load(&data(path), format, &STRICT).expect(path);
        assert_eq!(t.origins.len(), t.jobs.len(), "{path}");
    }
}

#[test]
fn messages_escape_control_characters_and_point_at_an_open_quote() {
    let e = err("id,submit_s,accelerators,duration_s\na,0,8,100\u{0}\n");
    assert!(e.ends_with("found \"100\\u{0}\""), "{e}");
    let e = err("id,submit_s,accelerators,duration_s\n\"a,0,8,100\nb,1,8,100\n");
    assert!(e.contains("is a quote left open?"), "{e}");
    // On the last line, the open quote takes the rest of that line only.
    let e = err("id,submit_s,accelerators,duration_s\n\"a,0,8,100\n");
    assert!(
        e.contains("holds the commas of the fields after it: is a quote left open?"),
        "{e}"
    );
}

#[test]
fn list_columns_refuse_empty_entries_and_bad_work_is_named_first() {
    let e = err("id,submit_s,accelerators,duration_s,accelerator_type\na,0,8,100,H100|\n");
    assert_eq!(
        e,
        "trace.csv: line 2 (row 1), column accelerator_type: entry 2 of the list \"H100|\" is \
         empty (entries are separated by '|')"
    );
    let e = err("id,submit_s,accelerators,duration_s,work\na,0,8,100,V100=10;;\n");
    assert!(e.contains("column work: entry 2 of the list"), "{e}");
    let e = err("id,submit_s,accelerators,duration_s,clusters\na,0,8,100,x||y\n");
    assert!(e.contains("column clusters: entry 2 of the list"), "{e}");
    let e = err("id,submit_s,accelerators,duration_s,work\na,0,8,,blah\n");
    assert!(
        e.contains("column work: expected open, UNITS@PROFILE or ACCELERATOR=SECONDS"),
        "{e}"
    );
    let t = canonical("id,submit_s,accelerators,duration_s,clusters\na,0,8,100, x | y \n")
        .expect("spaces around entries are fine");
    assert_eq!(t.jobs[0].clusters, ["x", "y"]);
}

#[test]
fn canonical_skip_invalid_counts_bad_rows() {
    let text =
        "id,submit_s,accelerators,duration_s\na,0,1,10\nb,0,-3,10\nc,0,1\nd,1,2,3\na,0,1,1\n";
    let t = parse(text, "t.csv", TraceFormat::Canonical, &LENIENT).expect("lenient");
    assert_eq!(t.skipped, 3);
    let ids: Vec<_> = t.jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, ["a", "d"]);
}

#[test]
fn canonical_round_trips() {
    let text = "\
id,submit_s,accelerators,duration_s,accelerator_type,tenant,kind,priority,min_accelerators,replicas,clusters,load,work
\"with,comma\",0.1,1024,,H100|TPU-v5p,pre,training,3,512,,c1|c2,,2.5e9@llama3-405b
s,3,8,,,serve,inference,9,,1..4@12.25,,10:0.25:13.5,open
e,1e-3,4,99.5,,r,batch,-2,,,,,V100=1;P100=2.5
\"#1\",2,8,60,,r,batch,0,,,,,
";
    let t = canonical(text).expect("valid");
    let mut out = Vec::new();
    write_canonical(&t.jobs, &mut out).expect("write");
    let again = canonical(std::str::from_utf8(&out).expect("utf-8")).expect("reads back");
    assert_eq!(again.jobs, t.jobs);
    // An id starting with the comment character is written quoted, not lost as a comment.
    assert_eq!(t.jobs.len(), 4);
}

#[test]
fn loading_a_folder_in_a_one_file_format_is_an_error() {
    let e = load(&data("gavel"), TraceFormat::Canonical, &STRICT)
        .expect_err("folder")
        .to_string();
    assert!(e.contains("is a folder"), "{e}");
    let e = load(&data("nope.csv"), TraceFormat::Canonical, &STRICT)
        .expect_err("missing")
        .to_string();
    assert!(e.contains("nope.csv"), "{e}");
}

// ---- Gavel ----

fn check_gavel(t: &Trace, jobs: usize, tenant: &str) {
    assert_eq!(t.jobs.len(), jobs);
    assert_eq!(t.skipped, 0);
    assert!(
        t.jobs
            .iter()
            .all(|j| j.tenant == tenant && j.kind == JobKind::Training)
    );
    assert!(t.jobs.windows(2).all(|w| w[0].submit_s <= w[1].submit_s));
    assert_eq!(t.jobs[0].submit_s, 0.0);
    let ids: BTreeSet<_> = t.jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids.len(), jobs);
}

#[test]
fn gavel_traces_and_throughputs_fit_together() {
    let table = load_throughputs(&data("gavel/simulation_throughputs.json")).expect("table");
    assert_eq!(table.profiles().count(), 83);
    for (profile, rates) in table.profiles() {
        let types: Vec<_> = rates.keys().map(String::as_str).collect();
        assert_eq!(types, ["K80", "P100", "V100"], "{profile}");
    }
    let r18 = gavel_profile("ResNet-18 (batch size 16)", 1);
    assert_eq!(r18, "ResNet-18 (batch size 16) x1");
    assert_eq!(table.rate(&r18, "V100"), Some(32.353384328946916));

    for (file, jobs, tenant) in [
        ("gavel/e13805_v2.trace", 607, "e13805"),
        ("gavel/2869ce_v2.trace", 533, "2869ce"),
    ] {
        let t = load(&data(file), TraceFormat::Gavel, &STRICT).expect("gavel trace");
        check_gavel(&t, jobs, tenant);
        for j in &t.jobs {
            let Work::Amount { units, profile } = &j.work else {
                panic!("gavel job {} has no amount", j.id)
            };
            assert!(*units > 0.0);
            assert!(profile.ends_with(&format!(" x{}", j.accelerators)));
            for acc in ["K80", "P100", "V100"] {
                assert!(
                    table.rate(profile, acc).is_some(),
                    "{file}: {profile} on {acc}"
                );
            }
        }
    }
    // First line of e13805: Transformer (batch size 128), 6,959,399 steps on 8 GPUs at t=0.
    let t = load(&data("gavel/e13805_v2.trace"), TraceFormat::Gavel, &STRICT).expect("trace");
    let j0 = t.jobs.iter().find(|j| j.id == "0").expect("job 0");
    assert_eq!(j0.accelerators, 8);
    assert_eq!(
        j0.work,
        Work::Amount {
            units: 6_959_399.0,
            profile: "Transformer (batch size 128) x8".into()
        }
    );
}

/// A byte-order mark before a Gavel trace or throughputs file is not part of its first field.
#[test]
fn gavel_files_may_start_with_a_byte_order_mark() {
    let text = std::fs::read_to_string(data("gavel/e13805_v2.trace")).expect("trace");
    let first: String = text.lines().take(3).map(|l| format!("{l}\n")).collect();
    let plain = parse(&first, "e13805_v2.trace", TraceFormat::Gavel, &STRICT).expect("plain");
    let marked = parse(
        &format!("\u{feff}{first}"),
        "e13805_v2.trace",
        TraceFormat::Gavel,
        &STRICT,
    )
    .expect("with a BOM");
    assert_eq!(plain.jobs, marked.jobs);
    let rates = std::fs::read_to_string(data("gavel/simulation_throughputs.json")).expect("json");
    let dir = std::env::temp_dir().join(format!("switchyard-bom-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("rates.json");
    std::fs::write(&path, format!("\u{feff}{rates}")).expect("write");
    assert_eq!(
        load_throughputs(&path)
            .expect("with a BOM")
            .profiles()
            .count(),
        83
    );
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// A throughputs file that is not text is bad input named by line, not an I/O failure.
#[test]
fn throughputs_that_are_not_text_are_refused_by_line() {
    let dir = std::env::temp_dir().join(format!("switchyard-throughputs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("rates.json");
    std::fs::write(&path, b"{\n\"v100\": \xff}\n").expect("write");
    let err = load_throughputs(&path).expect_err("not UTF-8");
    assert!(!matches!(err, TraceError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("line 2: not valid UTF-8"), "{err}");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn gavel_old_layout_and_folder() {
    let t = load(
        &data("gavel-old-layout/e13805_seed0_old_first100.trace"),
        TraceFormat::Gavel,
        &STRICT,
    )
    .expect("old layout");
    check_gavel(&t, 100, "e13805");
    let all = load(&data("gavel"), TraceFormat::Gavel, &STRICT).expect("folder");
    assert_eq!(all.jobs.len(), 607 + 533);
    let ids: BTreeSet<_> = all.jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids.len(), all.jobs.len());
    assert!(ids.contains("e13805_v2/0") && ids.contains("2869ce_v2/532"));
}

#[test]
fn gavel_errors() {
    let e = parse(
        "A\tcmd\t\t-n\t1\tx\t1\t1\t-1\t0\n",
        "vc_v2.trace",
        TraceFormat::Gavel,
        &STRICT,
    )
    .expect_err("bad steps")
    .to_string();
    assert_eq!(
        e,
        "vc_v2.trace: line 1 (row 1), column total_steps: expected a number > 0, found \"x\""
    );
    let e = parse("A\tb\tc\n", "vc.trace", TraceFormat::Gavel, &STRICT)
        .expect_err("short")
        .to_string();
    assert!(
        e.contains("expected 10 (or, in Gavel's old layout, 7) tab-separated fields, found 3"),
        "{e}"
    );
    // A line cut to 7 fields in a file of 10-field lines is not read as the old layout with
    // its fields shifted (steps from `needs_data_dir`, arrival from `total_steps`).
    let truncated = "R\tcmd\twd\t-n\t1\t1000\t1\t1\t-1\t0\nR\tcmd\twd\t-n\t1\t3000\t1\n";
    let e = parse(truncated, "t.trace", TraceFormat::Gavel, &STRICT)
        .expect_err("truncated")
        .to_string();
    assert_eq!(
        e,
        "t.trace: line 2 (row 2), column priority_weight: expected 10 tab-separated fields, \
         as the file's first row on line 1, found 7"
    );
    // A malformed first line decides no layout: the old-layout lines after it are read.
    let old_after_bad = "R\tcmd\n\
                         R\tcmd\t-n\t1\t1000\t5\t1\n\
                         R\tcmd\t-n\t1\t1000\t9\t2\n";
    let t = parse(old_after_bad, "t.trace", TraceFormat::Gavel, &LENIENT).expect("lenient");
    assert_eq!((t.jobs.len(), t.skipped), (2, 1));
    let long = "R\tcmd\twd\t-n\t1\t1000\t1\t1\t-1\t0\t5\n";
    let e = parse(long, "t.trace", TraceFormat::Gavel, &STRICT)
        .expect_err("long")
        .to_string();
    assert_eq!(
        e,
        "t.trace: line 1 (row 1), column 11: expected 10 (or, in Gavel's old layout, 7) \
         tab-separated fields, found 11"
    );
    let t = parse(
        "A\tb\tc\n\nA\tcmd\t\t-n\t1\t5\t2\t1\t-1\t7\n",
        "vc.trace",
        TraceFormat::Gavel,
        &LENIENT,
    )
    .expect("lenient");
    assert_eq!((t.jobs.len(), t.skipped), (1, 1));
    assert_eq!(t.jobs[0].id, "1");
    assert!(
        switchyard_sim::trace::parse_throughputs("{\"v100\": {\"('A', 1)\": {}}}", "t.json")
            .is_err()
    );
    assert!(switchyard_sim::trace::parse_throughputs("{\"tpu9\": {}}", "t.json").is_err());
    let e = switchyard_sim::trace::parse_throughputs("{", "t.json")
        .expect_err("bad json")
        .to_string();
    assert!(e.starts_with("t.json: line 1"), "{e}");
    assert_eq!(
        e.matches("line").count(),
        1,
        "the position is said once: {e}"
    );
    // A file given by mistake (a trace as --throughputs) is told what it was read as.
    let e = switchyard_sim::trace::parse_throughputs("id,arrival\n", "t.csv")
        .expect_err("not json")
        .to_string();
    assert!(e.contains("a throughput table is Gavel's JSON"), "{e}");
    // One rate given twice is refused, not the last one kept: a key repeated in an object, a
    // worker type under two spellings, or a job key written two ways.
    for (json, says) in [
        (
            "{\"v100\": {\"('A', 1)\": {\"null\": 1.0}, \"('A', 1)\": {\"null\": 2.0}}}",
            "line 1, column 47: key \"('A', 1)\" is given twice in one object",
        ),
        (
            "{\"v100\": {\"('A', 1)\": {\"null\": 1.0}}, \"V100\": {\"('A', 1)\": {\"null\": 2.0}}}",
            "('A', 1) (V100 of A x1) is given twice",
        ),
        (
            "{\"v100\": {\"('A', 1)\": {\"null\": 1.0}, \"(\\\"A\\\", 1)\": {\"null\": 2.0}}}",
            "(V100 of A x1) is given twice",
        ),
    ] {
        let e = switchyard_sim::trace::parse_throughputs(json, "t.json")
            .expect_err(json)
            .to_string();
        assert!(e.contains(says), "{json}: {e}");
    }
}

// ---- Philly ----

#[test]
fn philly_full_list() {
    let t = load(
        &data("philly/pollux_philly_jobs.csv"),
        TraceFormat::Philly,
        &STRICT,
    )
    .expect("philly");
    assert_eq!(t.jobs.len(), 82_247);
    assert_eq!(t.skipped, 0);
    assert_eq!(t.jobs[0].submit_s, 0.0);
    assert!(t.jobs.windows(2).all(|w| w[0].submit_s <= w[1].submit_s));
    let tenants: BTreeSet<_> = t.jobs.iter().map(|j| j.tenant.as_str()).collect();
    assert_eq!(tenants.len(), 15);
    assert_eq!(
        t.jobs.iter().filter(|j| j.accelerators == 1).count(),
        76_627
    );
    assert_eq!(t.jobs.iter().filter(|j| j.accelerators == 128).count(), 3);
    // 2017-09-04 10:30:41 .. 2017-12-22: about 109 days.
    let last = t.jobs.last().expect("jobs").submit_s;
    assert!(
        (100.0 * 86_400.0..110.0 * 86_400.0).contains(&last),
        "{last}"
    );
}

#[test]
fn philly_rows_and_errors() {
    let text = "timestamp,duration,num_gpus,gpu_time,cluster\n2017-10-09 07:01:55,66.0,1,66.0,11cb48\n2017-10-09 06:13:03,2951.0,2,5902.0,6214e9\n";
    let t = parse(text, "p.csv", TraceFormat::Philly, &STRICT).expect("valid");
    assert_eq!(t.jobs[0].tenant, "6214e9");
    assert_eq!(t.jobs[0].submit_s, 0.0);
    assert_eq!(t.jobs[1].submit_s, 2932.0);
    assert_eq!(t.jobs[0].id, "2");
    let bad = "timestamp,duration,num_gpus,gpu_time,cluster\n2017-10-09 07:01:55,66.0,1,66.0,a\n2017-02-30 00:00:00,1,1,1,b\n";
    let e = parse(bad, "p.csv", TraceFormat::Philly, &STRICT)
        .expect_err("bad date")
        .to_string();
    assert!(
        e.starts_with("p.csv: line 3 (row 2), column timestamp: expected a time"),
        "{e}"
    );
    let t = parse(bad, "p.csv", TraceFormat::Philly, &LENIENT).expect("lenient");
    assert_eq!((t.jobs.len(), t.skipped), (1, 1));
}

// ---- ITP ----

#[test]
fn itp_shipped_excerpt() {
    let t = load(&data("itp/raw"), TraceFormat::Itp, &STRICT).expect("itp folder");
    assert_eq!(t.jobs.len(), 300 + 260);
    assert_eq!(t.jobs[0].submit_s, 0.0);
    let tenants: BTreeSet<_> = t.jobs.iter().map(|j| j.tenant.as_str()).collect();
    assert_eq!(tenants, BTreeSet::from(["cluster05", "cluster10"]));
    assert!(
        t.jobs
            .iter()
            .all(|j| j.id.starts_with(&format!("{}/", j.tenant)))
    );
    let one = load(&data("itp/raw/cluster10.csv"), TraceFormat::Itp, &STRICT).expect("itp file");
    assert_eq!(one.jobs.len(), 260);
    assert_eq!(one.jobs[0].submit_s, 0.0);
}

#[test]
fn itp_errors() {
    let e = parse(
        "job_id,submission_time,duration,num_gpu\nx,1,2,0\n",
        "cluster01.csv",
        TraceFormat::Itp,
        &STRICT,
    )
    .expect_err("zero gpus")
    .to_string();
    assert_eq!(
        e,
        "cluster01.csv: line 2 (row 1), column num_gpu: expected a positive integer, found \"0\""
    );
    let e = parse("job,submission_time\n", "c.csv", TraceFormat::Itp, &STRICT)
        .expect_err("header")
        .to_string();
    assert!(e.contains("lacks column \"job_id\""), "{e}");
}

// ---- Alibaba 2023 ----

const OPENB: &str = "\
name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time
openb-pod-0000,12000,16384,1,1000,,LS,Running,0,12537496,0
openb-pod-0001,6000,12288,1,460,V100M16|V100M32,BE,Running,427061,12902960,427061
openb-pod-0002,8000,30000,0,0,,LS,Running,5,100,6
openb-pod-0003,8000,30000,8,1000,G2|T4,Burstable,Pending,100,400,
";

#[test]
fn alibaba_pods() {
    let t = parse(OPENB, "openb.csv", TraceFormat::Alibaba2023, &STRICT).expect("valid");
    assert_eq!((t.jobs.len(), t.skipped), (3, 1));
    let p0 = &t.jobs[0];
    assert_eq!(
        (p0.id.as_str(), p0.accelerators, p0.priority),
        ("openb-pod-0000", 1, 2)
    );
    let p3 = t
        .jobs
        .iter()
        .find(|j| j.id == "openb-pod-0003")
        .expect("pending pod");
    assert_eq!(p3.accelerators, 8);
    assert_eq!(p3.accelerator_types, vec!["T4"]);
    assert!(matches!(p3.work, Work::Duration { seconds, .. } if seconds == 300.0));
    let p1 = t
        .jobs
        .iter()
        .find(|j| j.id == "openb-pod-0001")
        .expect("shared pod");
    assert_eq!(p1.accelerators, 1);
    assert_eq!(p1.priority, 0);
    assert_eq!(p1.accelerator_types, vec!["V100"]);
    assert!(
        t.jobs
            .iter()
            .all(|j| j.kind == JobKind::Batch && j.tenant == "openb")
    );

    let multigpu =
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli\nopenb-pod-0000,12000,16384,2,1000\n";
    let t = parse(multigpu, "m.csv", TraceFormat::Alibaba2023, &STRICT).expect("multigpu");
    assert_eq!(t.jobs[0].work, Work::Open);
    assert_eq!(
        t.jobs[0].kind,
        JobKind::Inference,
        "a snapshot's pods hold on"
    );

    let bad = OPENB.replace("427061,12902960,427061", "427061,5,427061");
    let e = parse(&bad, "openb.csv", TraceFormat::Alibaba2023, &STRICT)
        .expect_err("bad")
        .to_string();
    assert!(
        e.starts_with("openb.csv: line 3 (row 2), column deletion_time:"),
        "{e}"
    );
    let bad_qos = OPENB.replace(",BE,Running", ",Premium,Running");
    let e = parse(&bad_qos, "openb.csv", TraceFormat::Alibaba2023, &STRICT)
        .expect_err("bad qos")
        .to_string();
    assert!(e.ends_with("found \"Premium\""), "as written: {e}");
    // Skipped as bad, that row's name is free for a later good pod.
    let again = format!("{bad}openb-pod-0001,6000,12288,1,1000,,BE,Running,1,9,1\n");
    let t = parse(&again, "openb.csv", TraceFormat::Alibaba2023, &LENIENT)
        .expect("the bad row skipped");
    assert!(
        t.jobs.iter().any(|j| j.id == "openb-pod-0001"),
        "{:?}",
        t.jobs
    );
}

// ---- Full public traces (skipped when ../shared/traces is absent) ----

#[test]
fn full_public_traces_load() {
    if let Some(p) = shared("microsoft-itp-elasticflow/raw") {
        let t = load(&p, TraceFormat::Itp, &STRICT).expect("ITP raw");
        assert_eq!(t.jobs.len(), 69_351);
        assert_eq!(t.skipped, 0);
        let tenants: BTreeSet<_> = t.jobs.iter().map(|j| j.tenant.as_str()).collect();
        assert_eq!(tenants.len(), 10);
    }
    if let Some(p) = shared("microsoft-itp-elasticflow") {
        let t = load(&p, TraceFormat::Itp, &STRICT).expect("ITP folder above raw/");
        assert_eq!(t.jobs.len(), 69_351);
    }
    if let Some(p) = shared("microsoft-itp-elasticflow/elasticflow") {
        let t = load(&p, TraceFormat::Itp, &STRICT).expect("ElasticFlow-augmented ITP files");
        assert_eq!(t.jobs.len(), 69_351);
    }
    if let Some(p) = shared("alibaba-gpu-v2023") {
        let t = load(&p, TraceFormat::Alibaba2023, &STRICT).expect("openb default");
        assert_eq!(t.jobs.len() + t.skipped, 8_152);
        assert_eq!(t.skipped, 1_088);
        for entry in std::fs::read_dir(&p).expect("folder") {
            let f = entry.expect("entry").path();
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.starts_with("openb_pod_list_") {
                let t =
                    load(&f, TraceFormat::Alibaba2023, &STRICT).unwrap_or_else(|e| panic!("{e}"));
                assert!(!t.jobs.is_empty(), "{name}");
            }
        }
    }
    if let Some(p) = shared("philly/pollux_philly_jobs.csv") {
        let t = load(&p, TraceFormat::Philly, &STRICT).expect("philly");
        assert_eq!(t.jobs.len(), 82_247);
    }
    if let Some(p) = shared("philly/gavel_msr_converted") {
        let t = load(&p, TraceFormat::Gavel, &STRICT).expect("converted gavel traces");
        assert!(t.jobs.len() > 4_000);
    }
    if let Some(p) = shared("philly/gavel_msr/seed=0") {
        let t = load(&p, TraceFormat::Gavel, &STRICT).expect("old-layout gavel traces");
        assert_eq!(t.jobs.len(), 15_264);
    }
    if let Some(p) = shared("gavel-osdi20/physical_cluster_throughputs.json") {
        let table = load_throughputs(&p).expect("physical throughputs");
        assert!(!table.is_empty());
    }
}

#[test]
fn write_canonical_of_imported_traces_round_trips() {
    let t = load(&data("gavel/e13805_v2.trace"), TraceFormat::Gavel, &STRICT).expect("gavel");
    let i = load(&data("itp/raw"), TraceFormat::Itp, &STRICT).expect("itp");
    let jobs: Vec<JobSpec> = t.jobs.into_iter().chain(i.jobs).collect();
    let mut out = Vec::new();
    write_canonical(&jobs, &mut out).expect("write");
    let back = canonical(std::str::from_utf8(&out).expect("utf-8")).expect("read");
    assert_eq!(back.jobs, jobs);
}
