//! The parsers on outputs captured from a real Slurm 22.05 (tests/fixtures/README.md), and on
//! garbage (property tests: they never panic).

use proptest::prelude::*;
use switchyard_slurm::parse::{
    self, JobState, NodeBase, SEP, Tag, parse_gres_gpus, parse_sbatch_parsable,
    parse_scontrol_jobs, parse_scontrol_records, parse_sinfo_nodes, parse_squeue,
    parse_squeue_json,
};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn sinfo_nodes_in_every_captured_state() {
    // What the scheduler makes of each: usable, closed (drained: its jobs run on) or failed.
    #[derive(Debug, PartialEq)]
    enum Seen {
        Usable,
        Closed,
        Failed,
    }
    for (file, base, drain, seen, reason) in [
        (
            "sinfo_nodes_idle.txt",
            NodeBase::Idle,
            false,
            Seen::Usable,
            "none",
        ),
        (
            "sinfo_nodes_mixed.txt",
            NodeBase::Mixed,
            false,
            Seen::Usable,
            "none",
        ),
        (
            "sinfo_nodes_draining.txt",
            NodeBase::Allocated,
            true,
            Seen::Closed,
            "maint-test",
        ),
        (
            "sinfo_nodes_drained.txt",
            NodeBase::Idle,
            true,
            Seen::Closed,
            "drain-test",
        ),
        (
            "sinfo_nodes_fail.txt",
            NodeBase::Fail,
            false,
            Seen::Closed,
            "fail-test",
        ),
        (
            "sinfo_nodes_down.txt",
            NodeBase::Down,
            false,
            Seen::Failed,
            "down-test",
        ),
        // `%T` prints this one `drained`: only StateComplete says it is down.
        (
            "sinfo_nodes_down_drained.txt",
            NodeBase::Down,
            true,
            Seen::Failed,
            "down-test",
        ),
        // The `%T` format, read where sinfo has no StateComplete.
        (
            "sinfo_short_states_draining.txt",
            NodeBase::Draining,
            false,
            Seen::Closed,
            "maint-test",
        ),
        (
            "sinfo_short_states_down.txt",
            NodeBase::Down,
            false,
            Seen::Failed,
            "down-test",
        ),
    ] {
        let nodes = parse_sinfo_nodes(&fixture(file)).expect(file);
        assert_eq!(nodes.len(), 1, "{file}");
        let n = &nodes[0];
        assert_eq!(n.name, "vm");
        assert_eq!(n.partition, "debug");
        assert!(n.default_partition);
        assert_eq!(n.cpus, 2);
        assert_eq!(n.gpus, 0);
        assert_eq!(n.state.base, base, "{file}");
        assert_eq!(n.state.drain, drain, "{file}");
        let got = if n.state.usable() {
            Seen::Usable
        } else if n.state.closed() {
            Seen::Closed
        } else {
            Seen::Failed
        };
        assert_eq!(got, seen, "{file}");
        assert_eq!(n.reason, reason, "{file}");
    }
}

#[test]
fn the_sinfo_format_asks_for_every_flag_and_cuts_nothing() {
    // `-O` fields are 20 characters wide, cut short, unless a width follows the `:`: none
    // does, so nothing is padded or cut (as the captured long reason below shows).
    let format = parse::sinfo_node_format();
    let fields: Vec<&str> = format.split(',').collect();
    assert_eq!(fields.len(), 6, "{format}");
    assert!(fields[2].starts_with("StateComplete:"), "{format}");
    for f in &fields[..5] {
        assert!(f.ends_with(&format!(":{SEP}")), "{f:?}");
    }
    assert_eq!(fields[5], "Reason:");
    let long = parse_sinfo_nodes(&fixture("sinfo_nodes_drained_long_reason.txt")).expect("parses");
    assert_eq!(
        long[0].reason,
        "a very long reason for draining this node that is longer than twenty"
    );
}

#[test]
fn sinfo_with_gpus() {
    // Synthetic (no GPU cluster here): the shape sinfo prints for an HGX H100 partition.
    let text = [
        "gpu001",
        "gpu*",
        "mixed",
        "224",
        "gpu:h100:8(S:0-1)",
        "none",
    ]
    .join(&SEP.to_string())
        + "\n"
        + &[
            "gpu002",
            "gpu*",
            "drained*",
            "224",
            "gpu:h100:8(S:0-1)",
            "xid 79",
        ]
        .join(&SEP.to_string());
    let nodes = parse_sinfo_nodes(&text).expect("parses");
    assert_eq!(nodes[0].gpus, 8);
    assert!(nodes[0].state.usable());
    assert_eq!(nodes[1].state.base, NodeBase::Drained);
    assert!(nodes[1].state.not_responding);
    assert!(!nodes[1].state.usable());
}

#[test]
fn scontrol_nodes() {
    for (file, state) in [
        ("scontrol_show_node_idle.txt", "IDLE"),
        ("scontrol_show_node_draining.txt", "MIXED+DRAIN"),
        ("scontrol_show_node_down.txt", "DOWN"),
    ] {
        let recs = parse_scontrol_records(&fixture(file));
        assert_eq!(recs.len(), 1, "{file}");
        assert_eq!(recs[0]["NodeName"], "vm");
        assert!(
            recs[0]["State"].starts_with(state),
            "{file}: {}",
            recs[0]["State"]
        );
        assert!(recs[0]["OS"].starts_with("Linux "), "{}", recs[0]["OS"]);
        let usable = parse::NodeState::parse(&recs[0]["State"]).usable();
        assert_eq!(usable, state == "IDLE", "{file}");
    }
}

#[test]
fn squeue_format_while_running_and_after() {
    let running = parse_squeue(&fixture("squeue_format_running.txt")).expect("running");
    assert_eq!(running.len(), 6);
    let ours: Vec<_> = running
        .iter()
        .filter_map(|j| Some((Tag::parse(j.comment.as_deref()?, "switchyard")?, j)))
        .collect();
    assert_eq!(ours.len(), 1, "only the tagged job is Switchyard's");
    assert_eq!(ours[0].0.job, "j1");
    assert_eq!(ours[0].1.state, JobState::Running);
    assert_eq!(ours[0].1.nodes, "vm");
    assert!(
        running
            .iter()
            .any(|j| j.state == JobState::Pending && j.reason == "Resources")
    );

    let done = parse_squeue(&fixture("squeue_format_done.txt")).expect("done");
    let state = |id: &str| done.iter().find(|j| j.id == id).map(|j| j.state.clone());
    assert_eq!(state("2"), Some(JobState::Completed));
    assert_eq!(state("3"), Some(JobState::Cancelled));
    assert_eq!(state("5"), Some(JobState::Failed));
    assert!(done.iter().all(|j| j.state.is_terminal()));
    let failed = done.iter().find(|j| j.id == "5").expect("job 5");
    assert_eq!(failed.reason, "NonZeroExitCode");

    let nd = parse_squeue(&fixture("squeue_format_nodedown.txt")).expect("node down");
    assert!(
        nd.iter()
            .any(|j| j.name == "victim" && j.state == JobState::Pending)
    );
}

/// StartTime as epoch seconds: a job that ran has its start and its nodes; one still waiting
/// has none (`N/A`); one cancelled while it waited has a time (its cancellation) but no nodes.
#[test]
fn start_times_in_epoch_seconds() {
    let jobs = parse_squeue(&fixture("squeue_format_started.txt")).expect("started");
    let seen: Vec<(&str, JobState, bool, Option<i64>)> = jobs
        .iter()
        .map(|j| {
            (
                j.name.as_str(),
                j.state.clone(),
                !j.nodes.is_empty(),
                j.start_s,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("done", JobState::Completed, true, Some(1_796_263_070)),
            (
                "switchyard-j1",
                JobState::Running,
                true,
                Some(1_796_263_073)
            ),
            ("waits", JobState::Pending, false, None),
            ("gone", JobState::Cancelled, false, Some(1_796_263_074)),
        ]
    );
    // The earlier captures, without the field, read as unknown.
    let old = parse_squeue(&fixture("squeue_format_done.txt")).expect("done");
    assert!(old.iter().all(|j| j.start_s.is_none()));

    let info = parse_scontrol_jobs(&fixture("scontrol_show_job_started.txt"));
    assert_eq!(
        info.iter()
            .map(|j| (j.start_s, j.nodes.as_str()))
            .collect::<Vec<_>>(),
        [(Some(1_796_263_070), "vm")]
    );
    // Slurm's own format (no SLURM_TIME_FORMAT) is not taken for epoch seconds.
    let iso = parse_scontrol_jobs(&fixture("scontrol_show_job_done.txt"));
    assert!(iso.iter().all(|j| j.start_s.is_none()));

    let json = parse_squeue_json(&fixture("squeue_done.json")).expect("json");
    let first = json.iter().find(|j| j.id == "1").expect("job 1");
    assert_eq!(first.start_s, Some(1_796_014_909));
}

#[test]
fn squeue_json_agrees_with_the_format_output() {
    for (json, fmt) in [
        ("squeue_running.json", "squeue_format_running.txt"),
        ("squeue_done.json", "squeue_format_done.txt"),
    ] {
        let mut a = parse_squeue_json(&fixture(json)).expect(json);
        let mut b = parse_squeue(&fixture(fmt)).expect(fmt);
        a.sort_by(|x, y| x.id.cmp(&y.id));
        b.sort_by(|x, y| x.id.cmp(&y.id));
        let key = |v: &[parse::QueueJob]| {
            v.iter()
                .map(|j| {
                    (
                        j.id.clone(),
                        j.state.clone(),
                        j.name.clone(),
                        j.comment.clone(),
                    )
                })
                .collect::<Vec<_>>()
        };
        // The JSON was taken a moment after the format output; states of running jobs agree.
        assert_eq!(key(&a).len(), key(&b).len(), "{json}");
        for (x, y) in key(&a).iter().zip(key(&b).iter()) {
            assert_eq!((&x.0, &x.2, &x.3), (&y.0, &y.2, &y.3), "{json}");
        }
    }
}

#[test]
fn scontrol_jobs() {
    let jobs = parse_scontrol_jobs(&fixture("scontrol_show_job_done.txt"));
    assert_eq!(jobs.len(), 6);
    let j2 = jobs.iter().find(|j| j.id == "2").expect("job 2");
    assert_eq!(j2.state, JobState::Completed);
    assert_eq!(j2.comment.as_deref(), Some("switchyard:j1:1:1"));
    assert_eq!(j2.stdout.as_deref(), Some("/tmp/sy/2.out"));
    let j5 = jobs.iter().find(|j| j.id == "5").expect("job 5");
    assert_eq!(j5.state, JobState::Failed);
    assert_eq!(j5.exit_code, Some((3, 0)));
    let running = parse_scontrol_jobs(&fixture("scontrol_show_job_running.txt"));
    assert!(running.iter().any(|j| j.state == JobState::Running));
}

#[test]
fn sbatch_outputs() {
    assert_eq!(
        parse_sbatch_parsable(&fixture("sbatch_parsable.txt")),
        Ok("2".into())
    );
    assert_eq!(
        parse::slurm_message(&fixture("sbatch_unknown_partition.txt")),
        "invalid partition specified: nope; Batch job submission failed: Invalid partition name specified"
    );
    assert_eq!(
        parse::slurm_message(&fixture("sbatch_gpus_unavailable.txt")),
        "Invalid generic resource (gres) specification"
    );
}

proptest! {
    #[test]
    fn parsers_never_panic_on_garbage(text in "(?s).{0,400}") {
        let _ = parse_sinfo_nodes(&text);
        let _ = parse_squeue(&text);
        let _ = parse_squeue_json(&text);
        let _ = parse_scontrol_records(&text);
        let _ = parse_scontrol_jobs(&text);
        let _ = parse_sbatch_parsable(&text);
        let _ = parse_gres_gpus(&text);
        let _ = parse::NodeState::parse(&text);
        let _ = JobState::parse(&text);
        let _ = Tag::parse(&text, "switchyard");
        let _ = parse::slurm_message(&text);
    }

    #[test]
    fn parsers_never_panic_on_mangled_fixtures(
        cut in 0usize..4000,
        junk in "[\u{1f}|=:*+() a-z0-9\n]{0,40}",
    ) {
        for name in ["sinfo_nodes_mixed.txt", "squeue_format_running.txt", "scontrol_show_job_done.txt", "squeue_running.json", "rest-v0.0.38/nodes_drained.json", "rest-v0.0.38/job_failed.json"] {
            let text = fixture(name);
            let mut cut = cut.min(text.len());
            while !text.is_char_boundary(cut) { cut -= 1; }
            let mangled = format!("{}{}{}", &text[..cut], junk, &text[cut..]);
            let _ = parse_sinfo_nodes(&mangled);
            let _ = parse_squeue(&mangled);
            let _ = parse_squeue_json(&mangled);
            let _ = parse_scontrol_jobs(&mangled);
            let _ = parse::parse_rest_nodes(&mangled, None);
            let _ = parse::parse_rest_job_infos(&mangled);
            let _ = parse::parse_rest_submit(&mangled);
            let _ = parse::parse_rest_errors(&mangled);
        }
    }

    #[test]
    fn tags_round_trip(job in "[a-z0-9#:.-]{1,30}", generation: u32, attempt: u32, resubmit in prop::sample::select(vec![0u32, 1, 2, u32::MAX]), accelerators: Option<u32>) {
        let t = Tag {
            job,
            generation,
            attempt,
            resubmit,
            accelerators,
        };
        prop_assert_eq!(Tag::parse(&t.render("switchyard"), "switchyard"), Some(t));
    }

    #[test]
    fn squeue_lines_round_trip(
        id in 1u64..10_000_000,
        name in "[a-zA-Z0-9_. |-]{0,30}",
        comment in "[a-z0-9:-]{1,30}",
        state in prop::sample::select(vec!["PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "NODE_FAIL", "TIMEOUT"]),
    ) {
        let line = [id.to_string(), state.to_string(), name.clone(), comment.clone(), "n1".into(), "None".into(), "root".into(), "debug".into()].join(&SEP.to_string());
        let jobs = parse_squeue(&line).expect("a well-formed line parses");
        prop_assert_eq!(jobs.len(), 1);
        prop_assert_eq!(&jobs[0].id, &id.to_string());
        prop_assert_eq!(&jobs[0].name, &name);
        prop_assert_eq!(jobs[0].comment.as_deref(), Some(comment.as_str()));
        prop_assert_eq!(jobs[0].state.as_str(), state);
    }
}

mod rest {
    //! slurmrestd 22.05.8's answers (OpenAPI v0.0.38), captured (fixtures/README.md).

    use super::fixture;
    use switchyard_slurm::parse::{
        JobState, NodeBase, parse_rest_errors, parse_rest_job_infos, parse_rest_jobs,
        parse_rest_nodes, parse_rest_submit, wait_status,
    };

    fn rest(name: &str) -> String {
        fixture(&format!("rest-v0.0.38/{name}"))
    }

    #[test]
    fn nodes_with_their_state_flags() {
        let nodes = parse_rest_nodes(&rest("nodes_drained.json"), Some("debug")).expect("nodes");
        assert_eq!(nodes.len(), 1);
        let n = &nodes[0];
        assert_eq!((n.name.as_str(), n.partition.as_str()), ("vm", "debug"));
        assert_eq!((n.cpus, n.gpus), (2, 0));
        assert_eq!(n.state.base, NodeBase::Idle);
        assert!(n.state.drain, "state_flags DRAIN");
        assert!(!n.state.usable());
        assert_eq!(n.reason, "resttest");
        let other = parse_rest_nodes(&rest("nodes_drained.json"), Some("gpu")).expect("nodes");
        assert!(other.is_empty(), "another partition's nodes are left out");
    }

    #[test]
    fn jobs_and_their_exit_codes() {
        let jobs = parse_rest_jobs(&rest("jobs.json")).expect("jobs");
        assert_eq!(jobs.len(), 4);
        let j = jobs.iter().find(|j| j.id == "3322").expect("3322");
        assert_eq!(j.state, JobState::Cancelled);
        assert_eq!(j.comment.as_deref(), Some("resttest:j:1:1"));
        assert_eq!((j.name.as_str(), j.user.as_str()), ("sy-rest", "root"));
        let f = jobs.iter().find(|j| j.id == "3323").expect("3323");
        assert_eq!(f.state, JobState::Failed);
        assert_eq!(f.reason, "NonZeroExitCode");
        let info = parse_rest_job_infos(&rest("job_failed.json")).expect("job");
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].state, JobState::Failed);
        assert_eq!(info[0].exit_code, Some((3, 0)));
        assert_eq!(info[0].start_s, Some(1_796_021_831));
        assert_eq!(f.start_s, Some(1_796_021_831));
        assert_eq!(wait_status(15), (0, 15));
        assert_eq!(wait_status(0), (0, 0));
        assert_eq!(wait_status(-1), (0, 0));
    }

    #[test]
    fn errors_and_submissions() {
        assert_eq!(parse_rest_submit(&rest("submit.json")), Ok("3322".into()));
        assert!(parse_rest_errors(&rest("submit.json")).is_empty());
        assert_eq!(
            parse_rest_errors(&rest("submit_refused.json")),
            vec!["Invalid partition name specified".to_owned()]
        );
        assert!(parse_rest_submit(&rest("submit_refused.json")).is_err());
        let unknown = parse_rest_errors(&rest("job_unknown.json"));
        assert_eq!(
            unknown,
            vec!["Invalid job id specified (Unable to find JobId=99999999)".to_owned()]
        );
        assert!(parse_rest_errors("not json").is_empty());
        assert!(parse_rest_nodes("{}", None).is_err());
        assert!(parse_rest_job_infos("[]").is_err());
    }
}
