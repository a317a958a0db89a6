//! Scheduler behaviour, with the invariant check after every pass.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use switchyard_core::{Fleet, JobKind, JobSpec, Replicas, ThroughputTable, Work};
use switchyard_sched::{Action, Config, Decision, Event, JobState, Policy, Scheduler};

fn fleet(text: &str) -> Fleet {
    Fleet::from_toml(text, "test.toml").expect("test fleet is valid")
}

const TWO_CLUSTERS: &str = r#"
name = "test"
[[providers]]
name = "p"
kind = "cloud"
[[providers.contracts]]
accelerator = "H100-SXM"
on_demand_price = 2.0
[[providers.contracts]]
accelerator = "V100"
on_demand_price = 1.0

[[clusters]]
name = "fast"
provider = "p"
region = "r"
accelerator = "H100-SXM"
nodes = 16
accelerators_per_node = 8
node_mtbf_hours = 1000.0
repair_hours = 2.0
capacity = "on_demand"
[clusters.topology]
scale_up = { nodes = 1, gb_s = 450.0 }
rack = { nodes = 4, gb_s = 50.0 }
cluster_gb_s = 50.0

[[clusters]]
name = "slow"
provider = "p"
region = "r"
accelerator = "V100"
nodes = 8
accelerators_per_node = 8
node_mtbf_hours = 1000.0
repair_hours = 2.0
capacity = "on_demand"

[[tenants]]
name = "lab"
[[tenants.teams]]
name = "a"
weight = 1.0
quotas = [{ cluster = "fast", accelerators = 64, borrowing_limit = 64 }]
[[tenants.teams]]
name = "b"
weight = 1.0
quotas = [{ cluster = "fast", accelerators = 64, borrowing_limit = 32 }]
"#;

fn job(id: &str, tenant: &str, size: u32, seconds: f64) -> JobSpec {
    JobSpec {
        id: id.into(),
        tenant: tenant.into(),
        kind: JobKind::Training,
        priority: 0,
        submit_s: 0.0,
        accelerators: size,
        min_accelerators: None,
        replicas: None,
        accelerator_types: Vec::new(),
        clusters: Vec::new(),
        work: Work::Duration {
            seconds,
            by_accelerator: BTreeMap::new(),
        },
    }
}

fn sched(policy: Policy, failures: bool) -> Scheduler {
    sched_on(TWO_CLUSTERS, policy, failures)
}

/// A scheduler on the fleet `text` under `policy`.
fn sched_on(text: &str, policy: Policy, failures: bool) -> Scheduler {
    Scheduler::new(
        &fleet(text),
        ThroughputTable::new(),
        Config {
            policy,
            failures,
            ..Config::default()
        },
    )
}

/// `spec`, accepting only the 'fast' cluster.
fn on_fast(mut spec: JobSpec) -> JobSpec {
    spec.clusters = vec!["fast".into()];
    spec
}

/// An inference service of `min..=max` replicas of `size` accelerators, with no load curve.
fn service(id: &str, tenant: &str, size: u32, min: u32, max: u32) -> JobSpec {
    let mut svc = job(id, tenant, size, 0.0);
    svc.kind = JobKind::Inference;
    svc.work = Work::Open;
    svc.replicas = Some(Replicas {
        min,
        max,
        capacity_per_replica: 1.0,
        load: None,
    });
    svc
}

fn submit(s: &mut Scheduler, now: f64, spec: JobSpec) -> u32 {
    let mut out = Vec::new();
    s.handle(now, Event::Submit(Box::new(spec)), &mut out)
        .expect("submit returns the index")
}

fn pass(s: &mut Scheduler, now: f64) -> Vec<Decision> {
    let mut out = Vec::new();
    s.schedule(now, &mut out);
    s.check_invariants()
        .expect("invariants hold after every pass");
    out
}

#[test]
fn gang_lands_in_one_rack_of_one_cluster() {
    let mut s = sched(Policy::Fifo, false);
    // Fragment: a 1-GPU job sits on the first node.
    submit(&mut s, 0.0, job("small", "a", 1, 100.0));
    pass(&mut s, 0.0);
    let j = submit(&mut s, 0.0, job("gang", "a", 32, 100.0));
    let d = pass(&mut s, 0.0);
    let start = d
        .iter()
        .find(|d| matches!(d.action, Action::Start { job, .. } if job == j));
    let start = start.expect("the gang starts");
    assert!(start.reason.contains("4 nodes, 1 rack"), "{}", start.reason);
}

#[test]
fn a_type_its_named_clusters_lack_is_the_reason() {
    let mut s = sched(Policy::Switchyard, false);
    let mut j = job("pinned", "a", 8, 10.0);
    j.accelerator_types = vec!["V100".into()];
    j.clusters = vec!["fast".into()];
    let err = s.validate(&j).expect_err("no V100 on fast");
    assert!(
        err.contains("asks for V100 on fast, which has none"),
        "{err}"
    );
}

/// A gang larger than every cluster it accepts, though not than the fleet's largest, is told
/// so, with the largest of those clusters by name.
#[test]
fn a_job_larger_than_the_clusters_it_accepts_is_told_which_is_largest() {
    let mut s = sched(Policy::Switchyard, false);
    let mut j = job("pinned", "a", 100, 10.0);
    j.clusters = vec!["slow".into()];
    let err = s.validate(&j).expect_err("slow is too small");
    assert!(
        err.contains(
            "needs 100 accelerators but the largest cluster it accepts (slow) has 64; a gang is \
             never split across clusters"
        ),
        "{err}"
    );
    let mut typed = job("typed", "a", 100, 10.0);
    typed.accelerator_types = vec!["V100".into()];
    let err = s.validate(&typed).expect_err("the V100s are too few");
    assert!(
        err.contains("the largest cluster it accepts (slow)"),
        "{err}"
    );
    // Where it fits, it is taken.
    j.accelerators = 64;
    s.validate(&j).expect("64 fit on slow");
}

#[test]
fn job_larger_than_any_cluster_is_rejected_with_a_reason() {
    let mut s = sched(Policy::Switchyard, false);
    let err = s
        .validate(&job("huge", "a", 129, 10.0))
        .expect_err("too big");
    assert!(err.contains("a gang is never split"), "{err}");
    // A service is split into replicas, but each replica is one gang on one cluster.
    let mut svc = job("svc", "a", 129, 0.0);
    svc.kind = JobKind::Inference;
    svc.work = Work::Open;
    let err = s.validate(&svc).expect_err("a replica too big");
    assert!(err.contains("a replica is never split"), "{err}");
    let mut out = Vec::new();
    s.handle(
        0.0,
        Event::Submit(Box::new(job("huge", "a", 129, 10.0))),
        &mut out,
    );
    assert!(matches!(out[0].action, Action::Reject { .. }));
    s.check_invariants().expect("invariants");

    // An accelerator the fleet lacks, and a profile with no rate, are named.
    let mut t4 = job("t4", "a", 1, 10.0);
    t4.accelerator_types = vec!["T4".into()];
    let err = s.validate(&t4).expect_err("no T4");
    assert!(
        err.contains("asks for T4") && err.contains("it has"),
        "{err}"
    );
    let mut steps = job("steps", "a", 1, 10.0);
    steps.work = Work::Amount {
        units: 1000.0,
        profile: "ResNet-50 x1".into(),
    };
    let err = s.validate(&steps).expect_err("no rate");
    assert!(err.contains("\"ResNet-50 x1\""), "{err}");
}

#[test]
fn switchyard_prefers_the_faster_cluster_from_predicted_throughput() {
    let mut s = sched(Policy::Switchyard, false);
    let mut spec = job("het", "a", 8, 1000.0);
    spec.work = Work::Duration {
        seconds: 1000.0,
        by_accelerator: BTreeMap::from([("H100-SXM".into(), 300.0), ("V100".into(), 1000.0)]),
    };
    submit(&mut s, 0.0, spec);
    let d = pass(&mut s, 0.0);
    assert!(
        matches!(d[0].action, Action::Start { cluster: 0, .. }),
        "{:?}",
        d[0]
    );
}

/// Submits to a `switchyard` scheduler on `fleet_text` an elastic job of `team`, `size`
/// accelerators down to 8, that takes `h100_s` on H100s and `v100_s` on V100s at full size,
/// and returns the cluster it starts on in the first pass (`None`: it waits, and why).
fn elastic_starts_on(
    fleet_text: &str,
    team: &str,
    size: u32,
    h100_s: f64,
    v100_s: f64,
) -> Result<u32, String> {
    let mut s = sched_on(fleet_text, Policy::Switchyard, false);
    let mut spec = job("elastic", team, size, h100_s);
    spec.min_accelerators = Some(8);
    spec.work = Work::Duration {
        seconds: h100_s,
        by_accelerator: BTreeMap::from([("H100-SXM".into(), h100_s), ("V100".into(), v100_s)]),
    };
    let e = submit(&mut s, 0.0, spec);
    pass(&mut s, 0.0)
        .iter()
        .find_map(|d| match d.action {
            Action::Start { job, cluster, .. } if job == e => Some(cluster),
            _ => None,
        })
        .ok_or_else(|| s.why(e))
}

/// An elastic job larger than every cluster is judged, on each, at the size the cluster can
/// hold: V100s would run the whole job faster, but 'slow' holds 64 of its 1,000, so 'fast'
/// (128) is its fastest, and it starts there at once instead of waiting for the impossible.
#[test]
fn an_elastic_job_larger_than_every_cluster_does_not_wait_for_the_impossible() {
    assert_eq!(
        elastic_starts_on(TWO_CLUSTERS, "a", 1000, 300.0, 250.0),
        Ok(0)
    );
}

/// The same for caps: an elastic job whose team may hold only 8 on 'fast' is judged there at
/// 8, where it runs far slower than on all of 'slow', and starts on 'slow' at once.
#[test]
fn an_elastic_job_is_judged_at_what_its_caps_let_it_hold() {
    let text = TWO_CLUSTERS.replace(
        "quotas = [{ cluster = \"fast\", accelerators = 64, borrowing_limit = 32 }]",
        "quotas = [{ cluster = \"fast\", accelerators = 8, borrowing_limit = 0 }]",
    );
    assert_ne!(text, TWO_CLUSTERS);
    assert_eq!(elastic_starts_on(&text, "b", 64, 100.0, 250.0), Ok(1));
}

/// A starving job's reservation is taken up again in every pass, and its reason keeps
/// saying so (the pass that took it up must not try the job again and replace the reason
/// with the room it lacks).
#[test]
fn a_starving_jobs_reason_names_its_reservation_in_every_pass() {
    const DAY: f64 = 86_400.0;
    let mut s = sched(Policy::Switchyard, false);
    let slow_only = |mut j: JobSpec| {
        j.clusters = vec!["slow".into()];
        j
    };
    // A batch job: no checkpoint, so it does not yield to the shorter one.
    let mut long = slow_only(job("long", "a", 64, 30.0 * DAY));
    long.kind = JobKind::Batch;
    submit(&mut s, 0.0, long);
    pass(&mut s, 0.0);
    let big = submit(&mut s, 1.0, slow_only(job("big", "b", 64, DAY)));
    pass(&mut s, 1.0);
    for at in [8.0 * DAY, 8.0 * DAY + 60.0, 9.0 * DAY] {
        pass(&mut s, at);
        assert!(
            s.why(big).starts_with("holds a reservation"),
            "at {at}: {}",
            s.why(big)
        );
    }
}

/// Between teams that hold nothing (a tie at zero usage), the larger share goes first, not the
/// team listed first: weights count when a cluster frees whole.
#[test]
fn between_idle_teams_the_larger_share_goes_first() {
    let text = TWO_CLUSTERS.replace("name = \"b\"\nweight = 1.0", "name = \"b\"\nweight = 3.0");
    assert_ne!(text, TWO_CLUSTERS);
    for policy in [Policy::Fair, Policy::Switchyard] {
        let mut s = sched_on(&text, policy, false);
        // Each needs the whole of 'slow': one at a time.
        let whole = |id: &str, team: &str| {
            let mut j = job(id, team, 64, 1000.0);
            j.clusters = vec!["slow".into()];
            j
        };
        submit(&mut s, 0.0, whole("of-a", "a"));
        let b = submit(&mut s, 0.0, whole("of-b", "b"));
        let d = pass(&mut s, 0.0);
        let started: Vec<u32> = d
            .iter()
            .filter_map(|d| match d.action {
                Action::Start { job, .. } => Some(job),
                _ => None,
            })
            .collect();
        assert_eq!(started, [b], "{policy:?}: {d:?}");
    }
}

#[test]
fn fifo_backfills_without_delaying_the_head() {
    let mut s = sched(Policy::Fifo, false);
    // Fill 'fast' and 'slow' with long work, leaving 8 GPUs free on 'fast'.
    let a = on_fast(job("long", "a", 120, 10_000.0));
    submit(&mut s, 0.0, a);
    let mut b = job("long2", "b", 64, 10_000.0);
    b.clusters = vec!["slow".into()];
    submit(&mut s, 0.0, b);
    pass(&mut s, 0.0);
    // The head needs 64 on 'fast' (not free; its team's cap there has room for it: a job its
    // cap holds back gets no reservation); a short 8-GPU job may backfill.
    let head = on_fast(job("head", "b", 64, 100.0));
    let h = submit(&mut s, 1.0, head);
    let short = on_fast(job("short", "b", 8, 50.0));
    let sh = submit(&mut s, 1.0, short);
    let d = pass(&mut s, 1.0);
    assert!(
        d.iter()
            .any(|d| matches!(d.action, Action::Start { job, .. } if job == sh))
    );
    assert!(
        !d.iter()
            .any(|d| matches!(d.action, Action::Start { job, .. } if job == h))
    );
    assert!(s.why(h).contains("reservation"), "{}", s.why(h));
}

#[test]
fn priority_preempts_the_fewest_whole_jobs() {
    let mut s = sched(Policy::Priority, false);
    for i in 0..8 {
        let mut j = job(&format!("low{i}"), "a", 8, 10_000.0);
        j.clusters = vec!["slow".into()];
        submit(&mut s, 0.0, j);
    }
    let big = on_fast(job("lowbig", "b", 64, 10_000.0));
    submit(&mut s, 0.0, big);
    pass(&mut s, 0.0);
    let mut urgent = job("urgent", "a", 8, 100.0);
    urgent.priority = 10;
    urgent.clusters = vec!["slow".into()];
    let u = submit(&mut s, 1.0, urgent);
    let d = pass(&mut s, 1.0);
    let preempted: Vec<_> = d
        .iter()
        .filter(|d| matches!(d.action, Action::Preempt { .. }))
        .collect();
    assert_eq!(preempted.len(), 1, "{d:?}");
    assert!(preempted[0].reason.contains("priority 10"));
    assert!(
        d.iter()
            .any(|d| matches!(d.action, Action::Start { job, .. } if job == u))
    );
}

/// Team a's 64-accelerator run on 'slow', then a priority-10 run of `urgent_team` that needs
/// all of it: the scheduler, a's run and the reason it was preempted with.
fn preempted_by(urgent_team: &str) -> (Scheduler, u32, String) {
    let mut s = sched(Policy::Priority, false);
    let mut low = job("low-of-a", "a", 64, 10_000.0);
    low.clusters = vec!["slow".into()];
    let l = submit(&mut s, 0.0, low);
    pass(&mut s, 0.0);
    let mut urgent = job(&format!("urgent-of-{urgent_team}"), urgent_team, 64, 100.0);
    urgent.priority = 10;
    urgent.clusters = vec!["slow".into()];
    submit(&mut s, 1.0, urgent);
    let d = pass(&mut s, 1.0);
    let reason = d
        .iter()
        .find(|d| matches!(d.action, Action::Preempt { job, .. } if job == l))
        .unwrap_or_else(|| panic!("a's job yields: {d:?}"))
        .reason
        .clone();
    (s, l, reason)
}

/// Events and reasons go to the job's own team: another team's job is never named by its id
/// (nor its priority), whether it preempts this job or holds the reservation it waits behind.
#[test]
fn messages_do_not_name_another_teams_jobs() {
    let (mut s, l, reason) = preempted_by("b");
    assert!(
        reason.contains("a job of another team") && !reason.contains("urgent"),
        "{reason}"
    );
    assert!(!reason.contains("10"), "{reason}");
    // Re-queued, it says so, and what it has waited for since.
    pass(&mut s, 2.0);
    assert_eq!(
        s.why(l),
        "re-queued after preemption; waiting for 64 free accelerators in one cluster it accepts \
         (a gang is never split)"
    );
    // Within the team, the job is named.
    let (_, _, reason) = preempted_by("a");
    assert!(
        reason.contains("preempted for urgent-of-a (priority 10 > 0)"),
        "{reason}"
    );
}

#[test]
fn node_failure_restarts_training_from_its_checkpoint() {
    let mut s = sched(Policy::Switchyard, true);
    let j = submit(&mut s, 0.0, job("run", "a", 64, 1e6));
    let d = pass(&mut s, 0.0);
    let Action::Start { cluster, .. } = d[0].action else {
        panic!("expected a start, got {:?}", d[0]);
    };
    let out = fail_nodes_until_one_hits(&mut s, 50_000.0, cluster);
    let restart = out
        .iter()
        .find(|d| matches!(d.action, Action::Restart { .. }))
        .expect("the run restarts");
    let Action::Restart { lost_s, .. } = restart.action else {
        unreachable!()
    };
    assert!((0.0..50_000.0).contains(&lost_s), "lost {lost_s}");
    s.check_invariants().expect("invariants");
    let d = pass(&mut s, 50_000.0);
    assert!(
        d.iter()
            .any(|d| matches!(d.action, Action::Start { job, .. } if job == j))
    );
}

/// Fails nodes 0, 1, … of `cluster` at `now` (left down) until one hits a job; the decisions
/// that caused.
fn fail_nodes_until_one_hits(s: &mut Scheduler, now: f64, cluster: u32) -> Vec<Decision> {
    let mut out = Vec::new();
    for node in 0..16 {
        s.handle(now, Event::NodeFailed { cluster, node }, &mut out);
        if !out.is_empty() {
            break;
        }
    }
    out
}

/// Fails one node of `job`'s gang at `now` and repairs it at once; the decisions it caused.
fn fail_a_node_of(s: &mut Scheduler, now: f64, cluster: u32) -> Vec<Decision> {
    let mut out = Vec::new();
    for node in 0..16 {
        s.handle(now, Event::NodeFailed { cluster, node }, &mut out);
        s.handle(now, Event::NodeRepaired { cluster, node }, &mut Vec::new());
        if !out.is_empty() {
            break;
        }
    }
    out.extend(pass(s, now));
    out
}

/// A run whose nodes fail faster than it restarts keeps nothing between failures: after
/// `max_stalled_restarts` of them in a row it has failed, saying why, instead of restarting for
/// ever. Failures far enough apart to checkpoint in between never add up to that.
#[test]
fn a_run_that_cannot_keep_progress_between_failures_fails() {
    let mut s = sched(Policy::Switchyard, true);
    let j = submit(&mut s, 0.0, job("run", "a", 64, 1e9));
    let d = pass(&mut s, 0.0);
    let Action::Start { cluster, .. } = d[0].action else {
        panic!("expected a start, got {:?}", d[0]);
    };
    let limit = Config::default().max_stalled_restarts;
    // Ten thousand seconds apart: each restart (300 s) is followed by a checkpoint.
    let mut now = 0.0;
    for _ in 0..limit + 20 {
        now += 10_000.0;
        let d = fail_a_node_of(&mut s, now, cluster);
        assert!(!d.iter().any(|d| matches!(d.action, Action::Fail { .. })));
    }
    // Ten seconds apart: no restart ever finishes.
    let mut failed_at = None;
    for n in 1..=limit + 5 {
        now += 10.0;
        let d = fail_a_node_of(&mut s, now, cluster);
        if let Some(fail) = d
            .iter()
            .find(|d| matches!(d.action, Action::Fail { job, .. } if job == j))
        {
            assert!(fail.reason.contains("failures in a row"), "{}", fail.reason);
            failed_at = Some(n);
            break;
        }
    }
    // Each quick failure finds nothing kept since the restart before it.
    assert_eq!(failed_at, Some(limit));
    s.check_invariants().expect("invariants");
}

#[test]
fn inference_replicas_are_replaced_after_a_failure() {
    let mut s = sched(Policy::Switchyard, true);
    let j = submit(&mut s, 0.0, service("svc", "b", 8, 3, 6));
    let d = pass(&mut s, 0.0);
    assert_eq!(
        d.iter()
            .filter(|d| matches!(d.action, Action::AddReplica { .. }))
            .count(),
        3
    );
    let Action::AddReplica { cluster, .. } = d[0].action else {
        unreachable!()
    };
    let out = fail_nodes_until_one_hits(&mut s, 10.0, cluster);
    assert!(matches!(out[0].action, Action::ReplicaLost { .. }));
    let d = pass(&mut s, 10.0);
    assert_eq!(
        d.iter()
            .filter(|d| matches!(d.action, Action::AddReplica { job, .. } if job == j))
            .count(),
        1
    );
    let mut out = Vec::new();
    s.handle(
        20.0,
        Event::Scale {
            job: j,
            replicas: 5,
        },
        &mut out,
    );
    let d = pass(&mut s, 20.0);
    assert_eq!(d.len(), 2);
}

/// Submits service `spec` at 0 s, asks for `replicas` and passes: its handle and the nodes of
/// each replica placed, in the order they were placed (all `replicas` of them).
fn placed_service(s: &mut Scheduler, spec: JobSpec, replicas: u32) -> (u32, Vec<Vec<u32>>) {
    let j = submit(s, 0.0, spec);
    s.handle(0.0, Event::Scale { job: j, replicas }, &mut Vec::new());
    let placed: Vec<Vec<u32>> = pass(s, 0.0)
        .iter()
        .filter_map(|d| match &d.action {
            Action::AddReplica { nodes, .. } => Some(nodes.iter().map(|n| n.node).collect()),
            _ => None,
        })
        .collect();
    assert_eq!(placed.len(), replicas as usize, "{placed:?}");
    (j, placed)
}

/// Scaling a service down removes a replica on a drained node first (its node is being emptied
/// for repair), otherwise the newest.
#[test]
fn scaling_down_removes_the_replica_on_a_drained_node_first() {
    let mut s = sched(Policy::Switchyard, true);
    let (j, placed) = placed_service(&mut s, on_fast(service("svc", "b", 8, 1, 4)), 4);
    let removed = |s: &mut Scheduler, at: f64, replicas: u32| -> Vec<Vec<u32>> {
        s.handle(at, Event::Scale { job: j, replicas }, &mut Vec::new());
        pass(s, at)
            .iter()
            .filter_map(|d| match &d.action {
                Action::RemoveReplica { nodes, .. } => Some(nodes.iter().map(|n| n.node).collect()),
                _ => None,
            })
            .collect()
    };
    // The second-placed replica's node is drained: it goes, not the newest.
    drain_on_fast(&mut s, 10.0, &[placed[1][0]]);
    assert_eq!(removed(&mut s, 20.0, 3), vec![placed[1].clone()]);
    // With none on a drained node, the newest goes.
    assert_eq!(removed(&mut s, 30.0, 2), vec![placed[3].clone()]);
    s.check_invariants().expect("invariants");
}

/// A replica removed for a scale-down that spans a drained node and an undrained one says
/// which one is drained.
#[test]
fn a_removed_replica_names_its_drained_node() {
    let mut s = sched(Policy::Switchyard, true);
    let (j, placed) = placed_service(&mut s, on_fast(service("svc", "b", 16, 1, 2)), 2);
    assert_eq!(placed[0].len(), 2, "{placed:?}");
    drain_on_fast(&mut s, 10.0, &[placed[0][1]]);
    s.handle(
        20.0,
        Event::Scale {
            job: j,
            replicas: 1,
        },
        &mut Vec::new(),
    );
    let d = pass(&mut s, 20.0);
    let reason = d
        .iter()
        .find(|d| matches!(d.action, Action::RemoveReplica { .. }))
        .map(|d| d.reason.clone())
        .unwrap_or_else(|| panic!("a removal: {d:?}"));
    assert_eq!(
        reason,
        format!(
            "scaled down: 1 replica wanted; the replica on nodes {}, {} of fast ({} drained) goes",
            placed[0][0], placed[0][1], placed[0][1]
        )
    );
}

#[test]
fn quota_caps_borrowing() {
    let mut s = sched(Policy::Fair, false);
    // Team b may hold at most 64 + 32 = 96 on 'fast'.
    for i in 0..16 {
        let j = on_fast(job(&format!("b{i}"), "b", 8, 1000.0));
        submit(&mut s, 0.0, j);
    }
    let d = pass(&mut s, 0.0);
    let started = d
        .iter()
        .filter(|d| matches!(d.action, Action::Start { .. }))
        .count();
    assert_eq!(started, 12);
    assert_eq!(
        s.why(12),
        "its team b is at its quota cap on fast: 96 of 96 accelerators in use, and this job \
         needs 8"
    );
}

/// A reservation holds its own cluster only: a job the policy would put there, which would
/// delay the reserved job, starts on another cluster that has room instead of waiting.
#[test]
fn a_reservation_does_not_hold_back_jobs_another_cluster_can_take() {
    let mut s = sched(Policy::Fifo, false);
    // 'fast' (128) runs a long 8-accelerator job; a 128 job for 'fast' only waits for it (its
    // team's cap there is 128).
    let long = submit(&mut s, 0.0, on_fast(job("long", "b", 8, 10_000.0)));
    pass(&mut s, 0.0);
    assert_eq!(s.job(long).state, JobState::Running);
    let big = submit(&mut s, 1.0, on_fast(job("big", "a", 128, 1000.0)));
    // Fifo puts a job where the most is free ('fast': 120 free, 'slow': 64): there it would
    // run past the reservation.
    let small = submit(&mut s, 2.0, job("small", "b", 8, 50_000.0));
    let d = pass(&mut s, 2.0);
    assert_eq!(s.job(big).state, JobState::Pending);
    let start = d
        .iter()
        .find_map(|d| match d.action {
            Action::Start { job, cluster, .. } if job == small => Some(cluster),
            _ => None,
        })
        .unwrap_or_else(|| panic!("small starts: {d:?} ({})", s.why(small)));
    assert_eq!(s.clusters()[start as usize].name, "slow");
}

/// A batch job keeps no checkpoint: hit by a node failure where its whole run would almost
/// surely meet another (its nodes fail every 62 h together; it needs 555 h), it fails for good
/// instead of restarting for ever; a short one restarts.
#[test]
fn a_batch_job_that_could_never_run_through_fails_for_good() {
    for (seconds, gives_up) in [(2e6, true), (3600.0, false)] {
        let mut s = sched(Policy::Switchyard, true);
        let mut long = on_fast(job("batch", "a", 128, seconds));
        long.kind = JobKind::Batch;
        let b = submit(&mut s, 0.0, long);
        pass(&mut s, 0.0);
        assert_eq!(s.job(b).state, JobState::Running);
        let mut out = Vec::new();
        s.handle(
            10.0,
            Event::NodeFailed {
                cluster: 0,
                node: 0,
            },
            &mut out,
        );
        let failed = out
            .iter()
            .find(|d| matches!(d.action, Action::Fail { job, .. } if job == b));
        assert_eq!(failed.is_some(), gives_up, "{seconds} s: {out:?}");
        if let Some(d) = failed {
            assert!(
                d.reason
                    .contains("a batch job keeps no checkpoint, and it needs"),
                "{}",
                d.reason
            );
        }
    }
}

/// Work in units of a model preset that fits nowhere says the performance model found no
/// layout, rather than blaming a throughput table nobody gave.
#[test]
fn a_model_that_fits_nowhere_says_so() {
    let mut s = sched(Policy::Switchyard, false);
    let mut big = job("405b-on-8", "a", 8, 0.0);
    big.work = Work::Amount {
        units: 1e9,
        profile: "llama3-405b".into(),
    };
    let why = s
        .validate(&big)
        .expect_err("405B does not fit on 8 accelerators");
    assert!(
        why.contains("the performance model finds no layout of model llama3-405b"),
        "{why}"
    );
    // An elastic job past what the model rates is told so, not that nothing fits in memory.
    let mut wide = job("wide", "a", u32::MAX, 0.0);
    wide.min_accelerators = Some(8);
    wide.work = Work::Amount {
        units: 1e9,
        profile: "llama3-8b".into(),
    };
    let why = s.validate(&wide).expect_err("past the model's sizes");
    assert!(
        why.contains("asks for 4,294,967,295 accelerators, more than the 16,777,216"),
        "{why}"
    );
}

/// A service whose fewest replicas the fleet cannot hold at once can never run: refused.
#[test]
fn a_service_more_replicas_than_the_fleet_holds_is_refused() {
    let mut s = sched(Policy::Switchyard, false);
    let mut svc = service("huge-svc", "a", 8, 30_000, 30_000);
    let why = s.validate(&svc).expect_err("never fits");
    assert!(
        why.starts_with(
            "needs at least 30,000 replicas of 8 accelerators, but the clusters it \
             accepts hold at most"
        ),
        "{why}"
    );
    // As many as fit are fine.
    svc.replicas = Some(Replicas {
        min: 2,
        max: 30_000,
        capacity_per_replica: 1.0,
        load: None,
    });
    s.validate(&svc).expect("two replicas fit");
}

/// `TWO_CLUSTERS` with fleet-wide caps: team `capped` (organisation `lab`) may hold 16 + 8,
/// and organisation `org` 8 + 8 for its team `free`, which has none of its own.
fn capped_fleet() -> Scheduler {
    let toml = TWO_CLUSTERS.to_owned()
        + r#"
[[tenants.teams]]
name = "capped"
weight = 1.0
quotas = [{ accelerators = 16, borrowing_limit = 8 }]

[[tenants]]
name = "org"
quotas = [{ accelerators = 8, borrowing_limit = 8 }]
[[tenants.teams]]
name = "free"
weight = 1.0
"#;
    Scheduler::new(&fleet(&toml), ThroughputTable::new(), Config::default())
}

/// A job that finds no room and would be over its team's cap anyway says the cap is why it
/// waits: room freeing up would not start it.
#[test]
fn a_job_over_its_cap_names_the_cap_even_when_no_room_is_free() {
    let mut s = capped_fleet();
    // `capped` holds its 24; `a` fills the rest of both clusters (128 + 64 in all).
    submit(&mut s, 0.0, on_fast(job("held", "capped", 24, 1e6)));
    submit(&mut s, 0.0, on_fast(job("rest", "a", 104, 1e6)));
    let mut slow = job("slow", "a", 64, 1e6);
    slow.clusters = vec!["slow".into()];
    submit(&mut s, 0.0, slow);
    pass(&mut s, 0.0);
    assert_eq!(s.busy(0) + s.busy(1), 192, "the fleet is full");
    let j = submit(&mut s, 10.0, job("more", "capped", 16, 100.0));
    pass(&mut s, 10.0);
    let why = s.why(j);
    assert!(
        why.starts_with("its team capped is at its fleet-wide quota cap: 24 of 24 accelerators"),
        "{why}"
    );
}

/// A fleet-wide cap bounds a service's replicas all together, not once per cluster: with a
/// cap of 24, three replicas of 8, although each cluster alone would take three.
#[test]
fn a_service_needing_more_replicas_than_a_fleet_wide_cap_allows_is_refused() {
    let mut s = capped_fleet();
    let mut svc = job("svc", "capped", 8, 0.0);
    svc.kind = JobKind::Inference;
    svc.work = Work::Open;
    let replicas = |min| Replicas {
        min,
        max: 8,
        capacity_per_replica: 1.0,
        load: None,
    };
    svc.replicas = Some(replicas(4));
    let why = s.validate(&svc).expect_err("24 hold three");
    assert!(
        why.contains("hold at most 3 such replicas (within its team's and its organisation's"),
        "{why}"
    );
    svc.replicas = Some(replicas(3));
    s.validate(&svc).expect("three fit under the cap");
}

/// A job an organisation's cap keeps out says so, not that its team's does.
#[test]
fn an_organisations_cap_is_named_as_its_own() {
    let mut s = capped_fleet();
    let why = s
        .validate(&job("j", "free", 24, 10.0))
        .expect_err("org caps at 16");
    assert!(
        why.contains("needs 24 accelerators, more than organisation org's quota cap"),
        "{why}"
    );
    let why = s
        .validate(&job("k", "capped", 32, 10.0))
        .expect_err("team caps at 24");
    assert!(why.contains("more than team capped's quota cap"), "{why}");
}

/// An elastic run larger than its team's cap starts at what the cap leaves, not never.
#[test]
fn an_elastic_run_starts_within_its_quota_cap() {
    let mut s = sched(Policy::Fair, false);
    // Team b may hold at most 64 + 32 = 96 on 'fast', which has 128.
    let mut elastic = on_fast(job("wide", "b", 128, 1000.0));
    elastic.min_accelerators = Some(8);
    let e = submit(&mut s, 0.0, elastic);
    let d = pass(&mut s, 0.0);
    assert!(
        d.iter().any(|d| matches!(
            d.action,
            Action::Start { job, accelerators: 96, .. } if job == e
        )),
        "{d:?}"
    );
}

/// A service whose replica the fleet has room for, but not its team's fleet-wide cap, says
/// that cap is what it waits for (not free accelerators).
#[test]
fn a_service_held_back_by_a_fleet_wide_cap_says_so() {
    let text = TWO_CLUSTERS.replace(
        "quotas = [{ cluster = \"fast\", accelerators = 64, borrowing_limit = 32 }]",
        "quotas = [{ accelerators = 16, borrowing_limit = 8 }]",
    );
    let mut s = Scheduler::new(&fleet(&text), ThroughputTable::new(), Config::default());
    submit(&mut s, 0.0, job("b-run", "b", 16, 1000.0));
    pass(&mut s, 0.0);
    let v = submit(&mut s, 1.0, service("b-svc", "b", 16, 1, 2));
    pass(&mut s, 1.0);
    assert_eq!(
        s.why(v),
        "its team b is at its fleet-wide quota cap: 16 of 24 accelerators in use, and a \
         replica needs 16"
    );
}

/// Drives the scheduler through arrivals, finishes, failures and repairs, checking invariants
/// after every pass; returns the decisions.
/// A scheduler with failures on and the first events of a drive: (time, kind, a, b) where
/// kind 0 is an arrival (a = job index), 1 a finish (a job, b generation), 2 a failure (a
/// cluster, b node), 3 a repair (500 s after the failure).
fn start_driving(
    fleet: &Fleet,
    jobs: &[JobSpec],
    failures: &[(f64, u32, u32)],
    policy: Policy,
) -> (Scheduler, Vec<(f64, u8, u32, u32)>) {
    let s = Scheduler::new(
        fleet,
        ThroughputTable::new(),
        Config {
            policy,
            failures: true,
            ..Config::default()
        },
    );
    let mut events = Vec::new();
    for (i, j) in jobs.iter().enumerate() {
        events.push((j.submit_s, 0, i as u32, 0));
    }
    for &(t, c, n) in failures {
        events.push((t, 2, c, n));
        events.push((t + 500.0, 3, c, n));
    }
    (s, events)
}

/// A drive's failure (kind 2) or repair (kind 3) of `node` of `cluster`. Every fourth node
/// fails together with the one before it (which stays down until it fails and is repaired on
/// its own), as a backend's poll reports nodes cut off at once; of the others, every fifth is
/// drained instead (and may fail while drained, as the one before a fourth).
fn node_event(kind: u8, cluster: u32, node: u32) -> Event {
    if kind == 2 && node % 4 == 3 {
        Event::NodesFailed {
            cluster,
            nodes: vec![node, node - 1],
        }
    } else if kind == 2 && node % 5 == 2 {
        Event::NodesDrained {
            cluster,
            nodes: vec![node],
        }
    } else if kind == 2 {
        Event::NodeFailed { cluster, node }
    } else {
        Event::NodeRepaired { cluster, node }
    }
}

fn drive(
    fleet: &Fleet,
    jobs: Vec<JobSpec>,
    failures: Vec<(f64, u32, u32)>,
    policy: Policy,
) -> Vec<Decision> {
    let (mut s, mut events) = start_driving(fleet, &jobs, &failures, policy);
    let mut log = Vec::new();
    let mut steps = 0;
    while !events.is_empty() && steps < 10_000 {
        steps += 1;
        events.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)).then(b.2.cmp(&a.2)));
        let now = events.last().expect("not empty").0;
        let mut out = Vec::new();
        while events.last().is_some_and(|e| e.0 <= now) {
            let (_, kind, a, b) = events.pop().expect("checked");
            let ev = match kind {
                0 => Event::Submit(Box::new(jobs[a as usize].clone())),
                1 => Event::Finished {
                    job: a,
                    generation: b,
                },
                // A backend's pause, requeue (interrupted hold) and resumption of a run.
                4..=6 => {
                    match kind {
                        4 => s.paused(a, b, now),
                        5 => s.held(a, b, now, true),
                        _ => s.began(a, b, now).is_some(),
                    };
                    s.check_invariants()
                        .expect("invariants hold after a pause, requeue or resumption");
                    continue;
                }
                _ => node_event(kind, a, b),
            };
            s.handle(now, ev, &mut out);
            s.check_invariants()
                .expect("invariants hold after every event");
        }
        s.schedule(now, &mut out);
        s.check_invariants()
            .expect("invariants hold after every pass");
        for d in &out {
            if let Action::Start {
                job,
                generation,
                expected_end_s,
                ..
            } = d.action
            {
                events.push((expected_end_s.max(now), 1, job, generation));
                // Every third run is paused a while after it starts (every sixth requeued
                // while paused), then goes on.
                if job % 3 == 0 {
                    let t = now + 10.0 + f64::from(job % 7) * 50.0;
                    events.push((t, 4, job, generation));
                    if job % 6 == 0 {
                        events.push((t + 100.0, 5, job, generation));
                    }
                    events.push((t + 300.0, 6, job, generation));
                }
            }
        }
        log.extend(out);
    }
    log
}

/// [`drive`] as a control plane runs it: every ended job's slot is released at once (so later
/// submissions reuse handles), and finish events name jobs by id. Decisions come back as
/// (time, job id, the action with its handle blanked, reason), comparable across runs.
fn drive_by_id(
    fleet: &Fleet,
    jobs: &[JobSpec],
    failures: &[(f64, u32, u32)],
    policy: Policy,
    release: bool,
) -> (Vec<(u64, String, String, String)>, usize) {
    let (mut s, mut events) = start_driving(fleet, jobs, failures, policy);
    let mut handle: HashMap<String, u32> = HashMap::new();
    let mut id_of: HashMap<u32, String> = HashMap::new();
    let mut log = Vec::new();
    let mut most_held = 0;
    let mut steps = 0;
    while !events.is_empty() && steps < 10_000 {
        steps += 1;
        events.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)).then(b.2.cmp(&a.2)));
        let now = events.last().expect("not empty").0;
        let mut out = Vec::new();
        while events.last().is_some_and(|e| e.0 <= now) {
            let (_, kind, a, b) = events.pop().expect("checked");
            let ev = match kind {
                0 => {
                    let spec = jobs[a as usize].clone();
                    let id = spec.id.clone();
                    let h = s
                        .handle(now, Event::Submit(Box::new(spec)), &mut out)
                        .expect("a handle");
                    handle.insert(id.clone(), h);
                    id_of.insert(h, id);
                    continue;
                }
                1 => match handle.get(&jobs[a as usize].id) {
                    Some(&job) => Event::Finished { job, generation: b },
                    None => continue,
                },
                _ => node_event(kind, a, b),
            };
            s.handle(now, ev, &mut out);
        }
        s.schedule(now, &mut out);
        for d in &out {
            let id = id_of[&d.action.job()].clone();
            if let Action::Start {
                generation,
                expected_end_s,
                ..
            } = d.action
            {
                let index = jobs.iter().position(|j| j.id == id).expect("known") as u32;
                events.push((expected_end_s.max(now), 1, index, generation));
            }
            // The handle differs between the runs; the job's id stands for it.
            let action = format!("{:?}", d.action).replacen(
                &format!("job: {}", d.action.job()),
                "job: _",
                1,
            );
            log.push((d.at_s.to_bits(), id, action, d.reason.clone()));
        }
        most_held = most_held.max(s.held_jobs());
        if release {
            for d in &out {
                let j = d.action.job();
                if d.action.ends_the_job() && id_of.contains_key(&j) {
                    assert!(s.release(j), "an ended job's slot is released");
                    assert!(!s.release(j), "a slot is released once");
                    handle.remove(&id_of.remove(&j).expect("known"));
                }
            }
        }
        s.check_invariants()
            .expect("invariants hold after every pass and release");
    }
    (log, most_held)
}

fn arb_fleet() -> impl Strategy<Value = Fleet> {
    prop::collection::vec((1u32..12, prop::sample::select(vec![1u32, 2, 4, 8]), 1u32..4, any::<bool>()), 1..4)
        .prop_map(|cs| {
            let mut t = String::from("name = \"p\"\n[[providers]]\nname = \"p\"\nkind = \"cloud\"\n");
            for a in ["H100-SXM", "V100", "K80"] {
                t.push_str(&format!("[[providers.contracts]]\naccelerator = \"{a}\"\non_demand_price = 1.0\n"));
            }
            for (i, (nodes, per, rack, _)) in cs.iter().enumerate() {
                let acc = ["H100-SXM", "V100", "K80"][i % 3];
                let rack = (*rack).min(*nodes);
                // Rack size must divide the cluster level; use whole racks.
                let nodes = nodes.div_ceil(rack) * rack;
                t.push_str(&format!(
                    "[[clusters]]\nname = \"c{i}\"\nprovider = \"p\"\nregion = \"r\"\naccelerator = \"{acc}\"\nnodes = {nodes}\naccelerators_per_node = {per}\nnode_mtbf_hours = 100.0\nrepair_hours = 1.0\ncapacity = \"on_demand\"\n[clusters.topology]\nscale_up = {{ nodes = 1, gb_s = 100.0 }}\nrack = {{ nodes = {rack}, gb_s = 10.0 }}\ncluster_gb_s = 10.0\n"
                ));
            }
            t.push_str("[[tenants]]\nname = \"o\"\n[[tenants.teams]]\nname = \"t0\"\nquotas = [{ accelerators = 16, borrowing_limit = 16 }]\n[[tenants.teams]]\nname = \"t1\"\nweight = 2.0\n");
            Fleet::from_toml(&t, "prop.toml").expect("generated fleet is valid")
        })
}

fn arb_jobs() -> impl Strategy<Value = Vec<JobSpec>> {
    prop::collection::vec(
        (
            0u32..3,
            1u32..40,
            0.0f64..5000.0,
            1.0f64..3000.0,
            -2i32..3,
            0u8..4,
            any::<bool>(),
        ),
        1..40,
    )
    .prop_map(|v| {
        let mut jobs: Vec<JobSpec> = v
            .into_iter()
            .enumerate()
            .map(|(i, (tenant, size, submit, dur, prio, kind, elastic))| {
                let tenant = ["t0", "t1", "unlisted"][tenant as usize];
                let mut j = job(&format!("j{i}"), tenant, size, dur);
                j.submit_s = submit;
                j.priority = prio;
                j.kind = match kind {
                    0 | 1 => JobKind::Training,
                    2 => JobKind::Batch,
                    _ => JobKind::Inference,
                };
                if j.kind == JobKind::Inference {
                    j.work = Work::Open;
                    j.accelerators = size.min(8);
                    j.replicas = Some(Replicas {
                        min: 1,
                        max: 3,
                        capacity_per_replica: 1.0,
                        load: None,
                    });
                } else if elastic && size > 2 {
                    j.min_accelerators = Some(size / 2);
                }
                j
            })
            .collect();
        // Submission order = scheduler index order.
        jobs.sort_by(|a, b| a.submit_s.total_cmp(&b.submit_s));
        jobs
    })
}

/// Generated failures (time, cluster, node) that name a cluster of `fleet`, on one of its nodes.
fn on_the_fleet(fleet: &Fleet, fails: Vec<(f64, u32, u32)>) -> Vec<(f64, u32, u32)> {
    fails
        .into_iter()
        .filter(|&(_, c, _)| (c as usize) < fleet.clusters.len())
        .map(|(t, c, n)| (t, c, n % fleet.clusters[c as usize].nodes))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_on_random_fleets_and_jobs(
        fleet in arb_fleet(),
        jobs in arb_jobs(),
        fails in prop::collection::vec((0.0f64..8000.0, 0u32..3, 0u32..40), 0..8),
        policy in prop::sample::select(Policy::ALL.to_vec()),
    ) {
        let failures = on_the_fleet(&fleet, fails);
        let log = drive(&fleet, jobs.clone(), failures, policy);
        // No job finishes twice, and no service "finishes".
        let mut finished: Vec<u32> = log
            .iter()
            .filter_map(|d| match d.action { Action::Finish { job, .. } => Some(job), _ => None })
            .collect();
        let n = finished.len();
        finished.sort_unstable();
        finished.dedup();
        prop_assert_eq!(n, finished.len(), "a job finished twice");
        prop_assert!(finished.iter().all(|&j| jobs[j as usize].kind != JobKind::Inference));
        prop_assert!(log.iter().all(|d| !d.reason.is_empty()));
    }

    #[test]
    fn released_slots_change_no_decision(
        fleet in arb_fleet(),
        jobs in arb_jobs(),
        fails in prop::collection::vec((0.0f64..8000.0, 0u32..3, 0u32..40), 0..4),
        policy in prop::sample::select(Policy::ALL.to_vec()),
    ) {
        let failures = on_the_fleet(&fleet, fails);
        let (kept, held_kept) = drive_by_id(&fleet, &jobs, &failures, policy, false);
        let (released, held_released) = drive_by_id(&fleet, &jobs, &failures, policy, true);
        prop_assert_eq!(kept, released);
        prop_assert_eq!(held_kept, jobs.len());
        prop_assert!(held_released <= held_kept);
    }

    #[test]
    fn same_events_give_same_decisions(fleet in arb_fleet(), jobs in arb_jobs()) {
        let a = drive(&fleet, jobs.clone(), vec![], Policy::Switchyard);
        let b = drive(&fleet, jobs, vec![], Policy::Switchyard);
        prop_assert_eq!(a, b);
    }
}

#[test]
fn failed_node_is_replaced_by_a_spare_in_place() {
    let mut s = sched(Policy::Switchyard, true);
    let run = on_fast(job("run", "a", 64, 1e6));
    let j = submit(&mut s, 0.0, run);
    let d = pass(&mut s, 0.0);
    assert!(matches!(d[0].action, Action::Start { cluster: 0, .. }));
    let out = fail_nodes_until_one_hits(&mut s, 50_000.0, 0);
    s.check_invariants().expect("invariants");
    assert!(matches!(out[0].action, Action::Restart { .. }), "{out:?}");
    assert!(
        matches!(out[1].action, Action::Start { job, generation: 2, .. } if job == j),
        "{out:?}"
    );
    assert!(out[1].reason.contains("spare node"), "{}", out[1].reason);
}

/// Nodes found failed at the same moment restart a gang once: one restart, one new generation,
/// spares for every failed node of it (or, without enough spares, back to the queue once).
#[test]
fn nodes_failed_at_once_restart_a_gang_once() {
    for (size, spares) in [(64, true), (128, false)] {
        let mut s = sched(Policy::Switchyard, true);
        let run = on_fast(job("run", "a", size, 1e6));
        let j = submit(&mut s, 0.0, run);
        let Action::Start { ref nodes, .. } = pass(&mut s, 0.0)[0].action else {
            panic!("a start");
        };
        let failed: Vec<u32> = nodes.iter().take(2).map(|n| n.node).collect();
        let mut out = Vec::new();
        s.handle(
            50_000.0,
            Event::NodesFailed {
                cluster: 0,
                nodes: failed.clone(),
            },
            &mut out,
        );
        s.check_invariants().expect("invariants");
        let restarts = out
            .iter()
            .filter(|d| matches!(d.action, Action::Restart { .. }))
            .count();
        assert_eq!(restarts, 1, "{out:?}");
        assert_eq!(s.job(j).restarts, 1);
        if spares {
            let Some(Action::Start {
                generation, nodes, ..
            }) = out
                .iter()
                .map(|d| &d.action)
                .find(|a| matches!(a, Action::Start { .. }))
            else {
                panic!("a restart in place: {out:?}");
            };
            assert_eq!(*generation, 2);
            assert!(nodes.iter().all(|n| !failed.contains(&n.node)), "{nodes:?}");
            assert!(
                out[0].reason.starts_with(&format!(
                    "nodes {}, {} of fast failed",
                    failed[0], failed[1]
                )),
                "{}",
                out[0].reason
            );
            assert!(out[1].reason.contains("spare nodes"), "{}", out[1].reason);
        } else {
            assert_eq!(out.len(), 1, "back to the queue, nothing else: {out:?}");
            assert_eq!(s.job(j).state, JobState::Pending);
        }
        // Reporting one of them again changes nothing.
        let mut again = Vec::new();
        s.handle(
            50_000.0,
            Event::NodeFailed {
                cluster: 0,
                node: failed[1],
            },
            &mut again,
        );
        assert!(again.is_empty(), "{again:?}");
    }
}

/// With a spare for one of two failed nodes only, the gang goes back to the queue and the
/// spare it took is given back; a gang whose every node failed keeps nothing, and says so.
#[test]
fn spares_for_some_failed_nodes_only_are_given_back() {
    let mut s = sched(Policy::Switchyard, true);
    let blocker = on_fast(job("blocker", "b", 56, 1e6));
    submit(&mut s, 0.0, blocker);
    let run = on_fast(job("run", "a", 64, 1e6));
    let j = submit(&mut s, 0.0, run);
    let d = pass(&mut s, 0.0);
    let Some(Action::Start { nodes, .. }) = d
        .iter()
        .map(|d| &d.action)
        .find(|a| matches!(a, Action::Start { job, .. } if *job == j))
    else {
        panic!("the run starts: {d:?}");
    };
    assert_eq!(s.busy(0), 120, "one spare node left");
    let failed: Vec<u32> = nodes.iter().take(2).map(|n| n.node).collect();
    let mut out = Vec::new();
    s.handle(
        50_000.0,
        Event::NodesFailed {
            cluster: 0,
            nodes: failed,
        },
        &mut out,
    );
    s.check_invariants().expect("invariants");
    assert_eq!(out.len(), 1, "one restart, back to the queue: {out:?}");
    assert_eq!(s.job(j).state, JobState::Pending);
    assert_eq!(
        s.busy(0),
        56,
        "the spare taken for the first node is given back"
    );

    // A one-node gang whose node fails restarts on a spare and keeps nothing.
    let mut s = sched(Policy::Switchyard, true);
    let one = on_fast(job("one", "a", 8, 1e6));
    submit(&mut s, 0.0, one);
    let Action::Start { ref nodes, .. } = pass(&mut s, 0.0)[0].action else {
        panic!("a start");
    };
    let node = nodes[0].node;
    let mut out = Vec::new();
    s.handle(50_000.0, Event::NodeFailed { cluster: 0, node }, &mut out);
    assert!(
        out[1]
            .reason
            .contains(&format!("in place of failed node {node}; predicted")),
        "{}",
        out[1].reason
    );
}

/// Drains `nodes` of the 'fast' cluster at `at`; the decisions that caused.
fn drain_on_fast(s: &mut Scheduler, at: f64, nodes: &[u32]) -> Vec<Decision> {
    let mut out = Vec::new();
    s.handle(
        at,
        Event::NodesDrained {
            cluster: 0,
            nodes: nodes.to_vec(),
        },
        &mut out,
    );
    out
}

/// A job that waits because too few nodes are up says how many of them are drained, as it
/// does when it waits for busy ones: the wait may be an administrator's.
#[test]
fn a_job_waiting_for_nodes_up_counts_the_drained_ones() {
    let mut s = sched(Policy::Switchyard, true);
    let nodes: Vec<u32> = (0..16).collect();
    drain_on_fast(&mut s, 0.0, &nodes);
    let j = submit(&mut s, 10.0, on_fast(job("run", "a", 8, 100.0)));
    pass(&mut s, 10.0);
    let why = s.why(j);
    assert!(
        why.contains("too few nodes are up")
            && why.ends_with("; 16 drained nodes take no new work"),
        "{why}"
    );
}

/// A drained node (Slurm's drain) keeps the work it runs and takes nothing new until it is
/// repaired; if it then fails, its gang restarts like on any failed node; a gang that restarts
/// in place for another node's failure leaves the drained node too.
#[test]
fn a_drained_node_keeps_its_work_and_takes_nothing_new() {
    let started_on = |d: &[Decision], j: u32| -> Vec<u32> {
        d.iter()
            .find_map(|d| match &d.action {
                Action::Start { job, nodes, .. } if *job == j => {
                    Some(nodes.iter().map(|n| n.node).collect())
                }
                _ => None,
            })
            .unwrap_or_default()
    };
    let mut s = sched(Policy::Switchyard, true);
    // 14 of the 16 nodes busy for long; "run" on two more.
    submit(&mut s, 0.0, on_fast(job("filler", "a", 112, 1e6)));
    let j = submit(&mut s, 0.0, on_fast(job("run", "a", 16, 1e6)));
    let d = pass(&mut s, 0.0);
    let ran_on = started_on(&d, j);
    assert_eq!(ran_on.len(), 2, "{d:?}");
    let out = drain_on_fast(&mut s, 10.0, &[ran_on[0]]);
    assert!(out.is_empty(), "a drain stops nothing: {out:?}");
    assert_eq!(s.job(j).state, JobState::Running);
    assert_eq!(s.busy(0), 128, "the drained node's work is still counted");
    s.check_invariants()
        .expect("a run on a drained node is fine");

    // Its end frees nothing there: of two one-node jobs, one starts on the other node it
    // left, one waits although the drained node is empty, until the node is repaired.
    s.handle(20.0, Event::Cancel { job: j }, &mut Vec::new());
    let first = submit(&mut s, 30.0, on_fast(job("first", "a", 8, 100.0)));
    let second = submit(&mut s, 30.0, on_fast(job("second", "a", 8, 100.0)));
    let d = pass(&mut s, 30.0);
    assert_eq!(started_on(&d, first), vec![ran_on[1]], "{d:?}");
    assert!(started_on(&d, second).is_empty(), "{d:?}");
    assert!(
        s.why(second).ends_with(
            "waiting for 8 free accelerators in one cluster it accepts (a gang is never \
             split); 1 drained node takes no new work"
        ),
        "{}",
        s.why(second)
    );
    s.handle(
        40.0,
        Event::NodeRepaired {
            cluster: 0,
            node: ran_on[0],
        },
        &mut Vec::new(),
    );
    let d = pass(&mut s, 40.0);
    assert_eq!(started_on(&d, second), vec![ran_on[0]], "{d:?}");

    // Drained, then failed: its gang restarts, once.
    let mut s = sched(Policy::Switchyard, true);
    let j = submit(&mut s, 0.0, on_fast(job("run", "a", 32, 1e6)));
    let ran_on = started_on(&pass(&mut s, 0.0), j);
    let drain = |s: &mut Scheduler, node| {
        let out = drain_on_fast(s, 100.0, &[node]);
        assert!(out.is_empty(), "{out:?}");
    };
    drain(&mut s, ran_on[0]);
    drain(&mut s, ran_on[0]);
    let mut out = Vec::new();
    s.handle(
        50_000.0,
        Event::NodeFailed {
            cluster: 0,
            node: ran_on[0],
        },
        &mut out,
    );
    s.check_invariants().expect("invariants");
    assert_eq!(
        out.iter()
            .filter(|d| matches!(d.action, Action::Restart { .. }))
            .count(),
        1,
        "{out:?}"
    );
    let respun = started_on(&out, j);
    assert_eq!(respun.len(), 4, "restarted in place: {out:?}");
    assert!(!respun.contains(&ran_on[0]), "{respun:?}");
    // Failing it again (it is failed now, not drained) changes nothing.
    let mut again = Vec::new();
    s.handle(
        50_001.0,
        Event::NodeFailed {
            cluster: 0,
            node: ran_on[0],
        },
        &mut again,
    );
    assert!(again.is_empty(), "{again:?}");

    // Another node of the gang fails: the restart leaves the drained node as well.
    drain(&mut s, respun[1]);
    let mut out = Vec::new();
    s.handle(
        60_000.0,
        Event::NodeFailed {
            cluster: 0,
            node: respun[2],
        },
        &mut out,
    );
    s.check_invariants().expect("invariants");
    let reasons: Vec<&str> = out.iter().map(|d| d.reason.as_str()).collect();
    assert!(
        reasons[0].starts_with(&format!("node {} of fast failed", respun[2])),
        "only the failed node failed: {reasons:?}"
    );
    assert!(
        reasons[1].contains(&format!(
            "in place of failed node {} and drained node {}",
            respun[2], respun[1]
        )),
        "{reasons:?}"
    );
    // Two spares take the places of the two it leaves: nodes, plural.
    assert!(reasons[1].contains("on spare nodes "), "{reasons:?}");
    let moved = started_on(&out, j);
    assert_eq!(moved.len(), 4, "restarted in place: {out:?}");
    assert!(
        !moved.contains(&respun[1]) && !moved.contains(&respun[2]),
        "neither the failed nor the drained node: {moved:?} from {respun:?}"
    );
    assert!(moved.contains(&respun[0]) && moved.contains(&respun[3]));
}

/// The first node each of `jobs` started on in `d`, by job.
fn first_nodes(d: &[Decision]) -> HashMap<u32, Vec<u32>> {
    d.iter()
        .filter_map(|d| match &d.action {
            Action::Start { job, nodes, .. } => {
                Some((*job, nodes.iter().map(|n| n.node).collect()))
            }
            _ => None,
        })
        .collect()
}

/// A run on a drained node makes no room: it is not preempted for a job that could not use
/// its node, and its end is not counted on by a reservation.
#[test]
fn a_run_on_a_drained_node_is_neither_preempted_nor_counted_on() {
    // Priority: "mid" and "low" (8 each, priority 0) on a node each, the other 14 nodes held
    // by a job of the newcomer's priority. Drained, low's node would not hold the newcomer
    // (half a node): only mid goes.
    let mut s = sched(Policy::Priority, false);
    let mut mid = on_fast(job("mid", "a", 8, 1e6));
    mid.priority = 0;
    let mid = submit(&mut s, 0.0, mid);
    let mut low = on_fast(job("low", "a", 8, 1e6));
    low.priority = 0;
    let low = submit(&mut s, 0.0, low);
    let mut high = on_fast(job("high", "a", 112, 1e6));
    high.priority = 5;
    submit(&mut s, 0.0, high);
    let started = first_nodes(&pass(&mut s, 0.0));
    drain_on_fast(&mut s, 10.0, &started[&low]);
    let mut newcomer = on_fast(job("new", "b", 4, 100.0));
    newcomer.priority = 5;
    submit(&mut s, 20.0, newcomer);
    let d = pass(&mut s, 20.0);
    let preempted: Vec<u32> = d
        .iter()
        .filter_map(|d| match d.action {
            Action::Preempt { job, .. } => Some(job),
            _ => None,
        })
        .collect();
    assert_eq!(preempted, [mid], "{d:?}");
    assert_eq!(s.job(low).state, JobState::Running);

    // FIFO: 12 nodes busy for long, "b" on one node until 1,000 s, "a" on two drained nodes
    // until 100 s, one node free. The head needs 16: its room comes when b ends (a's nodes
    // stay drained), so a job of 8 for 5,000 s must not take the free node.
    let mut s = sched(Policy::Fifo, false);
    submit(&mut s, 0.0, on_fast(job("long", "a", 96, 1e6)));
    let b = submit(&mut s, 0.0, on_fast(job("b", "a", 8, 1000.0)));
    let a = submit(&mut s, 0.0, on_fast(job("a", "a", 16, 100.0)));
    let started = first_nodes(&pass(&mut s, 0.0));
    drain_on_fast(&mut s, 10.0, &started[&a]);
    let head = submit(&mut s, 20.0, on_fast(job("head", "b", 16, 100.0)));
    let filler = submit(&mut s, 21.0, on_fast(job("filler", "b", 8, 5000.0)));
    let d = pass(&mut s, 21.0);
    assert!(
        !first_nodes(&d).contains_key(&filler),
        "the free node is the head's at 1,000 s: {d:?}"
    );
    let mut out = Vec::new();
    let generation = s.job(b).generation;
    s.handle(1000.0, Event::Finished { job: b, generation }, &mut out);
    let d = pass(&mut s, 1000.0);
    assert!(first_nodes(&d).contains_key(&head), "{d:?}");
}

/// A paused run (Slurm's suspend) keeps what it did and does nothing meanwhile: going on, it
/// ends later by the pause; a failure during the pause loses only what it did since its last
/// checkpoint before the pause; a requeue of a paused run (held again, interrupted) costs a
/// restart and loses the same.
#[test]
fn a_paused_run_stands_still_and_goes_on_where_it_stood() {
    let run_spec = || on_fast(job("run", "a", 8, 100_000.0));
    let start = |s: &mut Scheduler| -> (u32, u32, u32) {
        let j = submit(s, 0.0, run_spec());
        let d = pass(s, 0.0);
        let Some(Action::Start {
            generation, nodes, ..
        }) = d
            .iter()
            .map(|d| &d.action)
            .find(|a| matches!(a, Action::Start { .. }))
        else {
            panic!("a start: {d:?}");
        };
        (j, *generation, nodes[0].node)
    };
    let lost_on_failure = |s: &mut Scheduler, node: u32, at: f64| -> f64 {
        let mut out = Vec::new();
        s.handle(at, Event::NodeFailed { cluster: 0, node }, &mut out);
        s.check_invariants().expect("invariants");
        out.iter()
            .find_map(|d| match d.action {
                Action::Restart { lost_s, .. } => Some(lost_s),
                _ => None,
            })
            .unwrap_or_else(|| panic!("a restart: {out:?}"))
    };

    // Unpaused, a failure at 30,000 s loses what the last checkpoint does not hold.
    let mut s = sched(Policy::Switchyard, true);
    let (_, _, node) = start(&mut s);
    let unpaused_loss = lost_on_failure(&mut s, node, 30_000.0);

    // Paused at 30,000 s for 50,000 s: the end moves by the pause, and a failure at the end
    // of the pause loses as much as one at its start.
    let mut s = sched(Policy::Switchyard, true);
    let (j, generation, node) = start(&mut s);
    let end = s.job(j).end_s.expect("running");
    assert!(s.paused(j, generation, 30_000.0));
    assert!(!s.paused(j, generation + 1, 30_000.0), "another generation");
    pass(&mut s, 80_000.0);
    assert!(
        (s.job(j).end_s.expect("running") - end - 50_000.0).abs() < 1e-6,
        "{end} then {:?}",
        s.job(j).end_s
    );
    let mut went_on = s.clone();
    assert_eq!(went_on.began(j, generation, 80_000.0), Some(end + 50_000.0));
    let lost = lost_on_failure(&mut s, node, 80_000.0);
    assert!(
        (lost - unpaused_loss).abs() < 1e-6,
        "{lost} vs {unpaused_loss}"
    );
    // Gone on, it fails 1 s later as if it had not stopped at all.
    let lost = lost_on_failure(&mut went_on, node, 80_001.0);
    assert!(
        (lost - unpaused_loss - 1.0).abs() < 1e-6,
        "{lost} vs {unpaused_loss}"
    );

    // Requeued while paused: as if it had been requeued when it was paused — the same loss,
    // the same restart before it goes on, the same end.
    let requeued = |pause: bool| {
        let mut s = sched(Policy::Switchyard, true);
        let (j, generation, _) = start(&mut s);
        if pause {
            s.paused(j, generation, 30_000.0);
            assert!(s.held(j, generation, 40_000.0, true));
        } else {
            assert!(s.held(j, generation, 30_000.0, true));
        }
        let kept = s.kept_fraction(j, 40_000.0);
        (kept, s.began(j, generation, 50_000.0).expect("held"))
    };
    let (kept, end) = requeued(true);
    assert!(
        kept > 0.0 && kept * 100_000.0 <= 30_000.0 - unpaused_loss + 1e-6,
        "kept only what its checkpoints held: {kept}"
    );
    let (kept_unpaused, end_unpaused) = requeued(false);
    assert!(
        (kept - kept_unpaused).abs() < 1e-12,
        "{kept} vs {kept_unpaused}"
    );
    assert!((end - end_unpaused).abs() < 1e-6, "{end} vs {end_unpaused}");

    // Preempted while paused: Slurm kills a suspended job outright, so it keeps only what its
    // checkpoints hold, and its reason says so.
    let mut s = sched(Policy::Priority, true);
    let (j, generation, _) = start(&mut s);
    submit(&mut s, 1.0, on_fast(job("filler", "b", 96, 1e6)));
    pass(&mut s, 1.0);
    s.paused(j, generation, 30_000.0);
    let mut urgent = on_fast(job("urgent", "a", 32, 100.0));
    urgent.priority = 9;
    submit(&mut s, 40_000.0, urgent);
    let d = pass(&mut s, 40_000.0);
    let preempted = d
        .iter()
        .find(|d| matches!(d.action, Action::Preempt { job, .. } if job == j))
        .unwrap_or_else(|| panic!("preempted: {d:?}"));
    assert!(
        preempted
            .reason
            .contains("suspended, it could not checkpoint"),
        "{}",
        preempted.reason
    );
    assert!(
        (s.kept_fraction(j, 40_000.0) - kept).abs() < 1e-12,
        "{} vs {kept}",
        s.kept_fraction(j, 40_000.0)
    );
}

#[test]
fn elastic_run_starts_small_and_grows_when_room_frees() {
    let mut s = sched(Policy::Switchyard, false);
    let blocker = on_fast(job("blocker", "b", 96, 1000.0));
    submit(&mut s, 0.0, blocker);
    pass(&mut s, 0.0);
    let mut el = on_fast(job("elastic", "a", 128, 100_000.0));
    el.min_accelerators = Some(32);
    let e = submit(&mut s, 0.0, el);
    let d = pass(&mut s, 0.0);
    assert!(
        d.iter()
            .any(|d| matches!(d.action, Action::Start { job, accelerators: 32, .. } if job == e)),
        "{d:?}"
    );
    let mut out = Vec::new();
    s.handle(
        1000.0,
        Event::Finished {
            job: 0,
            generation: 1,
        },
        &mut out,
    );
    s.schedule(1000.0, &mut out);
    s.check_invariants().expect("invariants");
    let grow = out
        .iter()
        .find(|d| matches!(d.action, Action::Start { job, accelerators: 128, .. } if job == e))
        .expect("the elastic run grows onto its own and the freed accelerators");
    assert!(
        grow.reason.contains("grows from 32 to 128"),
        "{}",
        grow.reason
    );
}

/// A scheduler that takes over a training run (a new control-plane leader) resumes it from the
/// progress the last one kept: its periodic checkpoints with failures modelled, all of it
/// without; it then runs only what is left.
#[test]
fn a_resumed_run_runs_only_what_its_checkpoints_left() {
    for failures in [false, true] {
        let mut first = sched(Policy::Switchyard, failures);
        let j = submit(&mut first, 0.0, job("run", "a", 64, 100_000.0));
        let Action::Start { expected_end_s, .. } = pass(&mut first, 0.0)[0].action else {
            panic!("a start");
        };
        assert!(first.kept_fraction(j, 0.0) == 0.0);
        let kept = first.kept_fraction(j, 60_000.0);
        let ran = 60_000.0 / expected_end_s;
        if failures {
            // Checkpoints every few hours: some progress since the last one is not kept.
            assert!(kept > 0.0 && kept < ran, "kept {kept}, ran {ran}");
        } else {
            assert!((kept - ran).abs() < 1e-9, "kept {kept}, ran {ran}");
        }
        assert!(first.kept_fraction(j, 60_000.0) <= first.kept_fraction(j, 70_000.0));

        let mut second = sched(Policy::Switchyard, failures);
        let k = submit(&mut second, 60_000.0, job("run", "a", 64, 100_000.0));
        second.resume(k, kept);
        let Action::Start {
            expected_end_s: resumed_end,
            ..
        } = pass(&mut second, 60_000.0)[0].action
        else {
            panic!("a start");
        };
        let left = (resumed_end - 60_000.0) / expected_end_s;
        assert!(
            (left - (1.0 - kept)).abs() < 1e-6,
            "failures {failures}: kept {kept}, left {left}"
        );
        // Out-of-range fractions and jobs that started here are left alone.
        second.resume(k, 0.5);
        assert_eq!(second.kept_fraction(k, 60_000.0), kept);
    }
}

/// A cluster that states its own restart time (`restart_s`) is paid that, not the scheduler's
/// default, when a run restarts on it: the same failure pushes the run's end back by the
/// difference exactly.
#[test]
fn a_clusters_own_restart_time_is_what_a_restart_costs_there() {
    let restarted_end = |fleet_text: &str| {
        let mut s = Scheduler::new(
            &fleet(fleet_text),
            ThroughputTable::new(),
            Config {
                policy: Policy::Switchyard,
                failures: true,
                ..Config::default()
            },
        );
        let run = on_fast(job("run", "a", 64, 1e6));
        let j = submit(&mut s, 0.0, run);
        pass(&mut s, 0.0);
        let out = fail_nodes_until_one_hits(&mut s, 50_000.0, 0);
        s.check_invariants().expect("invariants");
        out.iter()
            .find_map(|d| match d.action {
                Action::Start {
                    job,
                    generation: 2,
                    expected_end_s,
                    ..
                } if job == j => Some(expected_end_s),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no restart in place: {out:?}"))
    };
    let stated = TWO_CLUSTERS.replacen(
        "repair_hours = 2.0\n",
        "repair_hours = 2.0\nrestart_s = 5.0\n",
        1,
    );
    assert_ne!(stated, TWO_CLUSTERS);
    let default_s = Config::default().restart_s;
    let gap = restarted_end(TWO_CLUSTERS) - restarted_end(&stated);
    assert!(
        (gap - (default_s - 5.0)).abs() < 1e-3,
        "restarting took {gap} s less, expected {}",
        default_s - 5.0
    );
}

/// A run its cluster keeps queued (a Slurm job still pending) holds its accelerators but makes
/// no progress: its predicted end moves by as long as it was held, its queueing counts up to
/// when its work began, and a failure while held keeps nothing.
#[test]
fn a_held_run_progresses_only_once_its_work_begins() {
    let mut s = sched(Policy::Switchyard, false);
    let spec = on_fast(job("run", "a", 64, 1000.0));
    let j = submit(&mut s, 0.0, spec);
    let started = pass(&mut s, 0.0);
    assert!(
        started.iter().any(|d| matches!(d.action,
            Action::Start { job, generation: 1, expected_end_s, .. }
                if job == j && (expected_end_s - 1000.0).abs() < 1e-9)),
        "{started:?}"
    );
    assert!(!s.held(j, 2, 10.0, false), "another generation is not held");
    assert_eq!(
        s.began(j, 1, 10.0),
        None,
        "a run not held has begun already"
    );
    assert!(s.held(j, 1, 10.0, false));
    assert!(s.held(j, 1, 20.0, false), "told again: still held");
    assert_eq!(s.kept_fraction(j, 390.0), 0.0, "no progress while held");
    assert_eq!(
        s.job(j).end_s,
        Some(1020.0),
        "as if it began when last told"
    );
    pass(&mut s, 390.0);
    assert_eq!(
        s.job(j).end_s,
        Some(1390.0),
        "each pass moves a held run's predicted end: reservations must not count on an end \
         long past"
    );
    s.check_invariants().expect("invariants");
    let end = s.began(j, 1, 400.0).expect("it was held");
    assert!((end - 1400.0).abs() < 1e-9, "{end}");
    assert_eq!(s.began(j, 1, 500.0), None, "began once");
    assert!((s.kept_fraction(j, 900.0) - 0.5).abs() < 1e-9);
    assert_eq!(s.job(j).first_start_s, Some(400.0));
    pass(&mut s, 900.0);

    // Its work stops (a Slurm job lost to the infrastructure, submitted again): the progress
    // made is kept (no periodic checkpoints here: all of it), the first start stays, and
    // beginning again costs a restart.
    assert!(s.held(j, 1, 900.0, true));
    assert!((s.kept_fraction(j, 1000.0) - 0.5).abs() < 1e-9);
    pass(&mut s, 1000.0);
    let restart = Config::default().restart_s;
    let end = s.began(j, 1, 1000.0).expect("held again");
    assert!((end - (1000.0 + restart + 500.0)).abs() < 1e-9, "{end}");
    assert_eq!(s.job(j).first_start_s, Some(400.0));
    pass(&mut s, 1000.0);
    let mut out = Vec::new();
    s.handle(
        end,
        Event::Finished {
            job: j,
            generation: 1,
        },
        &mut out,
    );
    assert!(
        out.iter()
            .any(|d| matches!(d.action, Action::Finish { job, .. } if job == j)),
        "{out:?}"
    );
    s.check_invariants().expect("invariants");
}

/// A run held from its start that ends without its work beginning (its Slurm job cancelled
/// while it waited) leaves the job unstarted: the run after it that begins is its first start,
/// and its queueing counts up to there.
#[test]
fn a_run_that_never_began_is_not_the_jobs_first_start() {
    let mut s = sched(Policy::Switchyard, false);
    let j = submit(&mut s, 0.0, on_fast(job("run", "a", 64, 1000.0)));
    pass(&mut s, 0.0);
    assert!(s.held(j, 1, 0.0, false));
    let mut out = Vec::new();
    s.handle(
        50.0,
        Event::Failed {
            job: j,
            generation: 1,
            retry: true,
            reason: "Slurm job ended CANCELLED".into(),
        },
        &mut out,
    );
    assert_eq!(s.job(j).first_start_s, None, "its work never began");
    pass(&mut s, 60.0);
    let generation = s.job(j).generation;
    assert!(s.held(j, generation, 60.0, false));
    pass(&mut s, 100.0);
    s.began(j, generation, 120.0).expect("it was held");
    assert_eq!(s.job(j).first_start_s, Some(120.0));
    s.check_invariants().expect("invariants");
}

/// A short job that takes the accelerators of its own team's long run (shortest remaining
/// time first) says so; it is not a team reclaiming quota from itself.
#[test]
fn a_preemption_for_a_shorter_job_of_the_same_team_says_why() {
    let text = switchyard_core::fleet::local_fleet_toml("small", 1, 2, "");
    let mut s = Scheduler::new(
        &fleet(&text),
        ThroughputTable::new(),
        Config {
            policy: Policy::Switchyard,
            failures: false,
            ..Config::default()
        },
    );
    let long = submit(&mut s, 0.0, job("long", "research", 2, 1e6));
    pass(&mut s, 0.0);
    let mut short = job("short", "research", 1, 3.0);
    short.kind = JobKind::Batch;
    submit(&mut s, 100.0, short);
    let d = pass(&mut s, 100.0);
    let preempt = d
        .iter()
        .find(|d| matches!(d.action, Action::Preempt { job, .. } if job == long))
        .unwrap_or_else(|| panic!("the long run yields: {d:?}"));
    assert!(
        preempt.reason.contains("needs far less time"),
        "{}",
        preempt.reason
    );
    assert!(
        !preempt.reason.contains("reclaims quota"),
        "{}",
        preempt.reason
    );
}

/// A job that waits because the nodes of the clusters it accepts are down (failed, or never
/// registered by an agent) says so, rather than blaming busy accelerators.
#[test]
fn a_job_waiting_on_down_nodes_says_so() {
    let mut s = sched(Policy::Switchyard, false);
    let mut out = Vec::new();
    for node in 0..8 {
        s.handle(0.0, Event::NodeFailed { cluster: 1, node }, &mut out);
    }
    let mut pinned = job("pinned", "a", 8, 60.0);
    pinned.clusters = vec!["slow".into()];
    let j = submit(&mut s, 0.0, pinned);
    pass(&mut s, 0.0);
    let why = s.why(j);
    assert!(why.contains("too few nodes are up"), "{why}");
    // Up again: it starts.
    for node in 0..8 {
        s.handle(1.0, Event::NodeRepaired { cluster: 1, node }, &mut out);
    }
    let d = pass(&mut s, 1.0);
    assert!(
        d.iter()
            .any(|d| matches!(d.action, Action::Start { job, .. } if job == j)),
        "{d:?}"
    );
}

/// Under `switchyard` services take the cheapest cluster with room and stay there. A gang that
/// can run only there, where their replicas hold the room it needs, gets it: replicas that
/// another cluster can take now move there (the service keeps its count), and the gang
/// starts. Before, it waited for ever. Under FIFO nothing moves.
#[test]
fn replicas_move_to_make_room_for_a_gang_that_can_run_only_where_they_are() {
    for policy in [Policy::Switchyard, Policy::Fair, Policy::Fifo] {
        let mut s = sched(policy, false);
        // Fill `fast` (a ten-hour run) so the service lands on `slow` under every policy.
        let filler = submit(&mut s, 0.0, on_fast(job("filler", "a", 128, 36_000.0)));
        let d = pass(&mut s, 0.0);
        assert!(
            d.iter()
                .any(|d| matches!(d.action, Action::Start { job, .. } if job == filler)),
            "{policy:?}: {d:?}"
        );
        let svc = submit(&mut s, 1.0, service("svc", "b", 8, 7, 7));
        let d = pass(&mut s, 1.0);
        let on_slow = d
            .iter()
            .filter(
                |d| matches!(d.action, Action::AddReplica { job, cluster: 1, .. } if job == svc),
            )
            .count();
        assert_eq!(on_slow, 7, "{policy:?}: {d:?}");
        // The filler ends; a gang that runs only on `slow` needs 24 of its 64 (8 are free).
        let mut gang = job("gang", "a", 24, 3600.0);
        gang.clusters = vec!["slow".into()];
        let g = submit(&mut s, 100.0, gang);
        let mut out = Vec::new();
        let generation = s.job(filler).generation;
        s.handle(
            36_000.0,
            Event::Finished {
                job: filler,
                generation,
            },
            &mut out,
        );
        let d = pass(&mut s, 36_000.0);
        let started = d
            .iter()
            .any(|d| matches!(d.action, Action::Start { job, .. } if job == g));
        if policy == Policy::Fifo {
            assert!(!started, "FIFO moves nothing: {d:?}");
            continue;
        }
        assert!(started, "{policy:?}: {d:?}");
        let moved: Vec<&Decision> = d
            .iter()
            .filter(
                |d| matches!(d.action, Action::RemoveReplica { job, cluster: 1, .. } if job == svc),
            )
            .collect();
        assert_eq!(moved.len(), 2, "two replicas make the room: {d:?}");
        assert!(
            moved[0]
                .reason
                .starts_with("moved to fast to make room for a job of another team"),
            "{}",
            moved[0].reason
        );
        let added: Vec<&Decision> = d
            .iter()
            .filter(
                |d| matches!(d.action, Action::AddReplica { job, cluster: 0, .. } if job == svc),
            )
            .collect();
        assert_eq!(added.len(), 2, "{d:?}");
        assert!(
            added[0].reason.starts_with(
                "replica moved from slow to make room for a job of another team: 8 H100-SXM on fast"
            ),
            "{}",
            added[0].reason
        );
        // Nothing moves back, and nothing more changes.
        let d = pass(&mut s, 36_001.0);
        assert!(d.is_empty(), "{policy:?}: {d:?}");
    }
}

/// A run whose own work failed is re-queued saying so; one whose node failed says that.
#[test]
fn a_requeued_run_says_whether_its_node_or_its_work_failed() {
    let mut s = sched(Policy::Switchyard, false);
    let j = submit(&mut s, 0.0, on_fast(job("j", "a", 128, 3600.0)));
    pass(&mut s, 0.0);
    let mut out = Vec::new();
    let generation = s.job(j).generation;
    s.handle(
        50.0,
        Event::Failed {
            job: j,
            generation,
            retry: true,
            reason: "rank 1 exited with code 3".into(),
        },
        &mut out,
    );
    let why = s.why(j);
    assert!(why.starts_with("re-queued after its run failed"), "{why}");
    assert!(!why.contains("node"), "{why}");
    let d = pass(&mut s, 51.0);
    assert!(
        d.iter()
            .any(|d| matches!(d.action, Action::Start { job, .. } if job == j)),
        "{d:?}"
    );
    let mut out = Vec::new();
    s.handle(
        60.0,
        Event::NodeFailed {
            cluster: 0,
            node: 0,
        },
        &mut out,
    );
    let why = s.why(j);
    assert!(
        why.starts_with("re-queued after a node failure") || why.contains("spare"),
        "{why}"
    );
}

/// A team below its guarantee reclaims replicas another team borrows node by node: with the
/// borrowed allowance enough for one node's replicas, it takes those on one node (which frees
/// it for the gang), not one replica on each of two nodes (which frees neither).
#[test]
fn a_guarantee_reclaims_the_replicas_of_one_node_not_one_of_each() {
    let fleet = r#"
name = "small"
[[providers]]
name = "p"
kind = "cloud"
[[providers.contracts]]
accelerator = "H100-SXM"
on_demand_price = 2.0
[[clusters]]
name = "local"
provider = "p"
region = "r"
accelerator = "H100-SXM"
nodes = 3
accelerators_per_node = 2
node_mtbf_hours = 1000.0
repair_hours = 2.0
capacity = "on_demand"
[[tenants]]
name = "lab"
[[tenants.teams]]
name = "research"
quotas = [{ accelerators = 4, borrowing_limit = 2 }]
[[tenants.teams]]
name = "serving"
quotas = [{ accelerators = 2, borrowing_limit = 2 }]
"#;
    let mut s = sched_on(fleet, Policy::Fair, false);
    // Six one-accelerator runs fill the three nodes.
    let fillers: Vec<u32> = (0..6)
        .map(|k| submit(&mut s, 0.0, job(&format!("f{k}"), "research", 1, 36_000.0)))
        .collect();
    let placed = first_nodes(&pass(&mut s, 0.0));
    let node_of = |f: u32| placed[&f][0];
    let on = |node: u32| -> Vec<u32> {
        fillers
            .iter()
            .copied()
            .filter(|&f| node_of(f) == node)
            .collect()
    };
    let (x, y) = (node_of(fillers[0]), {
        let first = node_of(fillers[0]);
        fillers
            .iter()
            .map(|&f| node_of(f))
            .find(|&n| n != first)
            .expect("two nodes")
    });
    let finish = |s: &mut Scheduler, f: u32, now: f64| {
        let mut out = Vec::new();
        let generation = s.job(f).generation;
        s.handle(now, Event::Finished { job: f, generation }, &mut out);
    };
    // Two services of the serving team, each with a replica on node x and one on node y.
    for (k, now) in [(0usize, 10.0), (1, 20.0)] {
        finish(&mut s, on(x)[k], now);
        finish(&mut s, on(y)[k], now);
        submit(&mut s, now, service(&format!("svc{k}"), "serving", 1, 2, 2));
        let d = pass(&mut s, now);
        let nodes: Vec<u32> = d
            .iter()
            .filter_map(|d| match &d.action {
                Action::AddReplica { nodes, .. } => Some(nodes[0].node),
                _ => None,
            })
            .collect();
        assert_eq!(nodes.len(), 2, "{d:?}");
        assert!(nodes.contains(&x) && nodes.contains(&y), "{d:?}");
    }
    // Research holds 2 of its guaranteed 4; serving borrows 2. A gang of 2 needs a node.
    let gang = submit(&mut s, 30.0, job("gang", "research", 2, 3600.0));
    let d = pass(&mut s, 30.0);
    let removed: Vec<u32> = d
        .iter()
        .filter_map(|d| match &d.action {
            Action::RemoveReplica { nodes, .. } => Some(nodes[0].node),
            _ => None,
        })
        .collect();
    assert_eq!(removed.len(), 2, "{d:?}");
    assert_eq!(removed[0], removed[1], "both from one node: {d:?}");
    assert!(
        d.iter()
            .any(|d| matches!(d.action, Action::Start { job, .. } if job == gang)),
        "{d:?}"
    );
}

/// Two clusters for replica moves: `c`, 2 × 8 V100 (cheap, where `switchyard` puts services),
/// and `d`, `d_nodes` × 8 H100; then `tenants` (TOML).
fn moves_fleet(d_nodes: u32, tenants: &str) -> String {
    format!(
        r#"
name = "t"
[[providers]]
name = "p"
kind = "cloud"
[[providers.contracts]]
accelerator = "H100-SXM"
on_demand_price = 2.0
[[providers.contracts]]
accelerator = "V100"
on_demand_price = 1.0
[[clusters]]
name = "c"
provider = "p"
region = "r"
accelerator = "V100"
nodes = 2
accelerators_per_node = 8
node_mtbf_hours = 1000.0
repair_hours = 2.0
capacity = "on_demand"
[[clusters]]
name = "d"
provider = "p"
region = "r"
accelerator = "H100-SXM"
nodes = {d_nodes}
accelerators_per_node = 8
node_mtbf_hours = 1000.0
repair_hours = 2.0
capacity = "on_demand"
{tenants}
"#
    )
}

fn pinned_to(mut spec: JobSpec, cluster: &str) -> JobSpec {
    spec.clusters = vec![cluster.into()];
    spec
}

/// Replicas of services `of` added and removed among `d`.
fn replica_changes(d: &[Decision], of: &[u32]) -> (usize, usize) {
    let added = d
        .iter()
        .filter(|d| matches!(d.action, Action::AddReplica { job, .. } if of.contains(&job)))
        .count();
    let removed = d
        .iter()
        .filter(|d| matches!(d.action, Action::RemoveReplica { job, .. } if of.contains(&job)))
        .count();
    (added, removed)
}

/// A move never loses a replica: where the other cluster holds one of two whole-node replicas
/// (one idle node, free accelerators scattered over the rest), none moves, and the gang that
/// needed both nodes waits.
#[test]
fn a_move_never_loses_a_replica() {
    let mut s = sched_on(&moves_fleet(4, ""), Policy::Switchyard, false);
    let svc = submit(&mut s, 0.0, service("svc", "b", 8, 2, 2));
    let d = pass(&mut s, 0.0);
    assert_eq!(replica_changes(&d, &[svc]), (2, 0), "{d:?}");
    for k in 0..3 {
        submit(
            &mut s,
            1.0,
            pinned_to(job(&format!("f{k}"), "a", 5, 1e6), "d"),
        );
    }
    pass(&mut s, 1.0);
    let g = submit(&mut s, 2.0, pinned_to(job("gang", "a", 16, 3600.0), "c"));
    let d = pass(&mut s, 2.0);
    let (added, removed) = replica_changes(&d, &[svc]);
    assert_eq!(added, removed, "{d:?}");
    assert!(
        !d.iter()
            .any(|d| matches!(d.action, Action::Start { job, .. } if job == g)),
        "{d:?}"
    );
}

/// An organisation's cap on the destination counts every one of its teams' moves.
#[test]
fn moves_keep_an_organisations_cap_on_the_destination() {
    let tenants = r#"
[[tenants]]
name = "lab"
quotas = [{ cluster = "d", accelerators = 8, borrowing_limit = 0 }]
[[tenants.teams]]
name = "t1"
[[tenants.teams]]
name = "t2"
[[tenants]]
name = "other"
[[tenants.teams]]
name = "a"
"#;
    let mut s = sched_on(&moves_fleet(4, tenants), Policy::Switchyard, false);
    let s1 = submit(&mut s, 0.0, service("s1", "t1", 8, 1, 1));
    let s2 = submit(&mut s, 0.0, service("s2", "t2", 8, 1, 1));
    pass(&mut s, 0.0);
    submit(&mut s, 2.0, pinned_to(job("gang", "a", 16, 3600.0), "c"));
    let d = pass(&mut s, 2.0);
    let onto_d = d
        .iter()
        .filter(|d| {
            matches!(d.action, Action::AddReplica { job, cluster: 1, .. } if job == s1 || job == s2)
        })
        .count();
    assert!(onto_d <= 1, "lab's cap on d holds one replica: {d:?}");
}

/// A team at its fleet-wide cap still has its replicas moved: a move keeps its total.
#[test]
fn a_fleet_wide_cap_does_not_stop_a_move() {
    for capped in [false, true] {
        let tenants = if capped {
            "[[tenants]]\nname = \"lab\"\n[[tenants.teams]]\nname = \"b\"\n\
             quotas = [{ accelerators = 16, borrowing_limit = 0 }]\n[[tenants.teams]]\nname = \"a\"\n"
        } else {
            ""
        };
        let mut s = sched_on(&moves_fleet(4, tenants), Policy::Switchyard, false);
        submit(&mut s, 0.0, service("svc", "b", 8, 2, 2));
        pass(&mut s, 0.0);
        let g = submit(&mut s, 2.0, pinned_to(job("gang", "a", 16, 3600.0), "c"));
        let d = pass(&mut s, 2.0);
        assert!(
            d.iter()
                .any(|d| matches!(d.action, Action::Start { job, .. } if job == g)),
            "capped {capped}: {d:?}"
        );
    }
}

/// A `switchyard` scheduler on `moves_fleet(4, "")`, failures off, where a job starves after
/// `starvation_s`.
fn starving_after(starvation_s: f64) -> Scheduler {
    Scheduler::new(
        &fleet(&moves_fleet(4, "")),
        ThroughputTable::new(),
        Config {
            policy: Policy::Switchyard,
            failures: false,
            starvation_s,
            ..Config::default()
        },
    )
}

/// Replicas are not moved onto room a starving job's reservation holds: the reserved job
/// starts at its shadow time.
#[test]
fn moves_leave_a_reservation_its_room() {
    let mut s = starving_after(100.0);
    submit(&mut s, 0.0, service("svc", "b", 8, 2, 2));
    let mut filler = pinned_to(job("f", "f", 8, 1000.0), "d");
    filler.kind = JobKind::Batch;
    let f = submit(&mut s, 0.0, filler);
    let r = submit(&mut s, 0.0, pinned_to(job("r", "x", 32, 10.0), "d"));
    pass(&mut s, 0.0);
    pass(&mut s, 150.0);
    submit(&mut s, 200.0, pinned_to(job("gang", "a", 16, 3600.0), "c"));
    pass(&mut s, 200.0);
    let mut out = Vec::new();
    let generation = s.job(f).generation;
    s.handle(1000.0, Event::Finished { job: f, generation }, &mut out);
    let d = pass(&mut s, 1000.0);
    assert!(
        d.iter()
            .any(|d| matches!(d.action, Action::Start { job, .. } if job == r)),
        "the reserved job starts at its shadow time: {d:?}"
    );
}

/// A gang recovered by a new scheduler goes back on exactly the node shares it ran on when
/// they are up and free (so its ranks there can run on), ahead of waiting work; elsewhere
/// when one of them is down.
#[test]
fn a_recovered_gang_goes_back_where_it_ran_when_it_can() {
    use switchyard_sched::NodeShare;
    let shares = vec![
        NodeShare {
            node: 9,
            accelerators: 8,
        },
        NodeShare {
            node: 3,
            accelerators: 8,
        },
    ];
    for down in [None, Some(3)] {
        let mut s = sched(Policy::Switchyard, false);
        let waiting = submit(&mut s, 0.0, on_fast(job("waiting", "b", 64, 100.0)));
        let j = submit(&mut s, 0.0, on_fast(job("run", "a", 16, 1e5)));
        if let Some(node) = down {
            s.handle(0.0, Event::NodeFailed { cluster: 0, node }, &mut Vec::new());
        }
        s.recovered_at(j, 0, shares.clone());
        let d = pass(&mut s, 0.0);
        let Some(Action::Start {
            cluster,
            nodes: got,
            ..
        }) = d
            .iter()
            .map(|d| &d.action)
            .find(|a| matches!(a, Action::Start { job, .. } if *job == j))
        else {
            panic!("the recovered gang starts: {d:?}");
        };
        assert_eq!(*cluster, 0);
        assert_eq!(
            *got == shares,
            down.is_none(),
            "{got:?} with node {down:?} down"
        );
        let reason = &d
            .iter()
            .find(|d| matches!(d.action, Action::Start { job, .. } if job == j))
            .expect("start")
            .reason;
        assert_eq!(
            reason.contains("where its ranks ran"),
            down.is_none(),
            "{reason}"
        );
        assert!(
            d.iter()
                .any(|d| matches!(d.action, Action::Start { job, .. } if job == waiting)),
            "the rest is placed around it: {d:?}"
        );
    }
}

/// A service recovered by a new scheduler gets its replicas back on exactly the shares they
/// served on where those are up and free, as many as it wants; the rest are placed as usual.
#[test]
fn a_recovered_services_replicas_go_back_where_they_served() {
    use switchyard_sched::NodeShare;
    let share = |node| {
        vec![NodeShare {
            node,
            accelerators: 8,
        }]
    };
    for (served, want) in [
        (
            vec![11, 6, 13, 14, 15],
            vec![(11, true), (13, true), (14, true)],
        ),
        (vec![6, 11], vec![(11, true), (0, false), (0, false)]),
    ] {
        let mut s = sched(Policy::Switchyard, false);
        let j = submit(&mut s, 0.0, on_fast(service("svc", "b", 8, 3, 3)));
        // Node 6 is down.
        s.handle(
            0.0,
            Event::NodeFailed {
                cluster: 0,
                node: 6,
            },
            &mut Vec::new(),
        );
        s.recovered_replicas_at(j, served.iter().map(|&n| (0, share(n))).collect());
        let placed: Vec<(u32, bool)> = pass(&mut s, 0.0)
            .iter()
            .filter_map(|d| match &d.action {
                Action::AddReplica { nodes, .. } => {
                    let where_it_served = d.reason.contains("where it served");
                    // (Elsewhere: any node but the down one.)
                    Some((
                        if where_it_served { nodes[0].node } else { 0 },
                        where_it_served,
                    ))
                    .filter(|_| nodes[0].node != 6)
                }
                _ => None,
            })
            .collect();
        assert_eq!(placed, want, "served on {served:?}");
    }
}

/// Recovered gangs that can go back where they ran all do before one that cannot is placed
/// anew, whatever their order: the one placed anew must not take the others' nodes.
#[test]
fn a_recovered_gang_placed_anew_leaves_the_others_their_nodes() {
    use switchyard_sched::NodeShare;
    let on = |nodes: [u32; 2]| {
        nodes
            .iter()
            .map(|&node| NodeShare {
                node,
                accelerators: 8,
            })
            .collect::<Vec<_>>()
    };
    let mut s = sched(Policy::Switchyard, false);
    let a = submit(&mut s, 0.0, on_fast(job("a", "a", 16, 1e5)));
    let b = submit(&mut s, 0.0, on_fast(job("b", "a", 16, 1e5)));
    // a ran on nodes 0 and 1, b on 2 and 3; node 1 did not come back.
    s.handle(
        0.0,
        Event::NodeFailed {
            cluster: 0,
            node: 1,
        },
        &mut Vec::new(),
    );
    s.recovered_at(a, 0, on([0, 1]));
    s.recovered_at(b, 0, on([2, 3]));
    let d = pass(&mut s, 0.0);
    let placed = |j| {
        d.iter()
            .find_map(|d| match &d.action {
                Action::Start { job, nodes, .. } if *job == j => {
                    Some(nodes.iter().map(|n| n.node).collect::<Vec<_>>())
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("job {j} starts: {d:?}"))
    };
    assert_eq!(placed(b), [2, 3]);
    let elsewhere = placed(a);
    assert!(
        !elsewhere.iter().any(|n| [1, 2, 3].contains(n)),
        "{elsewhere:?}"
    );
}

/// Every service's replicas go back where they served before any service gets a new one: an
/// older service short of replicas must not take the node a younger one's replica serves on.
#[test]
fn recovered_replicas_go_back_before_any_new_replica_is_placed() {
    use switchyard_sched::NodeShare;
    let share = |node| {
        vec![NodeShare {
            node,
            accelerators: 8,
        }]
    };
    let mut s = sched(Policy::Switchyard, false);
    let a = submit(&mut s, 0.0, on_fast(service("a", "b", 8, 2, 2)));
    let b = submit(&mut s, 0.0, on_fast(service("b", "b", 8, 1, 1)));
    s.recovered_replicas_at(a, vec![(0, share(0))]);
    s.recovered_replicas_at(b, vec![(0, share(1))]);
    let d = pass(&mut s, 0.0);
    let on = |j| -> Vec<u32> {
        d.iter()
            .filter_map(|d| match &d.action {
                Action::AddReplica { job, nodes, .. } if *job == j => Some(nodes[0].node),
                _ => None,
            })
            .collect()
    };
    assert_eq!(on(b), [1], "{d:?}");
    let mut a_on = on(a);
    a_on.sort_unstable();
    assert_eq!(a_on.len(), 2);
    assert_eq!(a_on[0], 0);
    assert_ne!(a_on[1], 1);
}

/// A run left alone only because it started this very instant (a recovered run placed first)
/// is preempted at the next pass: the quick pass over new jobs alone would leave the
/// higher-priority job waiting for a release.
#[test]
fn a_refusal_for_a_run_that_just_started_lapses_at_the_next_pass() {
    let mut s = sched(Policy::Priority, false);
    let mut low = job("low", "a", 64, 1e6);
    low.clusters = vec!["slow".into()];
    let l = submit(&mut s, 0.0, low);
    let mut high = job("high", "a", 64, 100.0);
    high.priority = 10;
    high.clusters = vec!["slow".into()];
    let h = submit(&mut s, 0.0, high);
    s.recovered(l);
    let d = pass(&mut s, 0.0);
    assert!(
        d.iter()
            .any(|d| matches!(d.action, Action::Start { job, .. } if job == l)),
        "{d:?}"
    );
    let d = pass(&mut s, 10.0);
    assert!(
        d.iter()
            .any(|d| matches!(d.action, Action::Preempt { job, .. } if job == l)),
        "{d:?}"
    );
    assert!(
        d.iter()
            .any(|d| matches!(d.action, Action::Start { job, .. } if job == h)),
        "{d:?}"
    );
}

/// Replicas pack as placement packs them: one 5-accelerator replica per 8-accelerator node
/// (24 on the 24 nodes), a 12-accelerator one on two whole nodes (12): a minimum past that is
/// refused, not left running below its minimum for ever.
#[test]
fn a_services_minimum_counts_replicas_as_nodes_hold_them() {
    let mut s = sched(Policy::Switchyard, false);
    for (size, fits, too_many) in [(5, 24, 30), (12, 12, 13)] {
        let why = s
            .validate(&service("svc", "a", size, too_many, too_many))
            .expect_err("more than the nodes hold");
        assert!(
            why.contains(&format!("hold at most {fits} such replicas")),
            "{size}: {why}"
        );
        s.validate(&service("svc", "a", size, fits, fits))
            .expect("as many as the nodes hold");
    }
}

/// A reservation counts nodes, not accelerators: with a 16-accelerator gang waiting for the
/// node a 100 s run frees (beside the one idle node), the accelerators free across two busy
/// nodes are no spare room, and a long 6-accelerator job may not take the idle node the gang
/// needs; the gang starts when the short run ends.
#[test]
fn a_reservation_counts_the_nodes_a_gang_needs() {
    let mut s = sched_on(&moves_fleet(4, ""), Policy::Fifo, false);
    for (id, size, secs) in [("a", 5, 1000.0), ("b", 5, 1000.0), ("d", 8, 100.0)] {
        submit(&mut s, 0.0, pinned_to(job(id, "a", size, secs), "d"));
    }
    pass(&mut s, 0.0);
    let d = s.job(2).generation;
    let gang = submit(&mut s, 1.0, pinned_to(job("gang", "a", 16, 100.0), "d"));
    let long = submit(&mut s, 1.0, pinned_to(job("long", "a", 6, 10_000.0), "d"));
    let started = pass(&mut s, 1.0);
    assert!(
        !started
            .iter()
            .any(|d| matches!(d.action, Action::Start { job, .. } if job == long)),
        "the long job would take the gang's idle node: {started:?}"
    );
    let mut out = Vec::new();
    s.handle(
        100.0,
        Event::Finished {
            job: 2,
            generation: d,
        },
        &mut out,
    );
    let started = pass(&mut s, 100.0);
    assert!(
        started
            .iter()
            .any(|d| matches!(d.action, Action::Start { job, .. } if job == gang)),
        "{started:?}"
    );
}

/// An elastic run does not grow into the room a starving job's reservation holds: the
/// reserved job starts at its shadow time, not after the grown run (of higher priority, which
/// it may not preempt) ends.
#[test]
fn an_elastic_run_leaves_a_reservation_its_room() {
    let mut s = starving_after(50.0);
    let mut ks = Vec::new();
    for (id, secs) in [("k1", 200.0), ("k2", 400.0), ("k3", 600.0)] {
        let mut k = pinned_to(job(id, "a", 8, secs), "d");
        k.kind = JobKind::Batch;
        ks.push(submit(&mut s, 0.0, k));
    }
    pass(&mut s, 0.0);
    let mut elastic = pinned_to(job("elastic", "b", 32, 4e6), "d");
    elastic.min_accelerators = Some(8);
    elastic.priority = 5;
    let e = submit(&mut s, 1.0, elastic);
    let waiting = submit(&mut s, 1.0, pinned_to(job("waiting", "c", 24, 10.0), "d"));
    pass(&mut s, 1.0);
    assert_eq!(s.job(e).state, JobState::Running);
    let mut started_waiting = None;
    for (k, at) in ks.iter().zip([200.0, 400.0, 600.0]) {
        let generation = s.job(*k).generation;
        let mut out = Vec::new();
        s.handle(
            at,
            Event::Finished {
                job: *k,
                generation,
            },
            &mut out,
        );
        let d = pass(&mut s, at);
        assert!(
            !d.iter()
                .any(|d| matches!(d.action, Action::Start { job, .. } if job == e)),
            "the elastic run grew into the reserved room at {at}: {d:?}"
        );
        if d.iter()
            .any(|d| matches!(d.action, Action::Start { job, .. } if job == waiting))
        {
            started_waiting = Some(at);
            break;
        }
    }
    assert_eq!(started_waiting, Some(600.0));
}
