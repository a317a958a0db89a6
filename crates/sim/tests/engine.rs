//! The simulator end to end on small generated workloads: determinism, failures, services,
//! the report.

use std::collections::BTreeMap;

use switchyard_core::{Fleet, JobKind, JobSpec, Replicas, ThroughputTable, Work};
use switchyard_sched::{Action, Policy};
use switchyard_sim::{SimError, SimOptions, simulate};

const FLEET: &str = r#"
name = "t"
[[providers]]
name = "p"
kind = "cloud"
[[providers.contracts]]
accelerator = "H100-SXM"
on_demand_price = 2.0
[[providers.contracts]]
accelerator = "TPU-v5p"
on_demand_price = 1.5
[[clusters]]
name = "gpu"
provider = "p"
region = "r"
accelerator = "H100-SXM"
nodes = 32
accelerators_per_node = 8
capacity = "on_demand"
node_mtbf_hours = 200.0
repair_hours = 4.0
[clusters.topology]
scale_up = { nodes = 1, gb_s = 450.0 }
rack = { nodes = 4, gb_s = 50.0 }
cluster_gb_s = 50.0
[[clusters]]
name = "tpu"
provider = "p"
region = "r"
accelerator = "TPU-v5p"
nodes = 64
accelerators_per_node = 4
capacity = "on_demand"
node_mtbf_hours = 200.0
repair_hours = 4.0
[clusters.topology]
scale_up = { nodes = 16, gb_s = 300.0 }
cluster_gb_s = 25.0
[[tenants]]
name = "lab"
[[tenants.teams]]
name = "research"
weight = 2.0
[[tenants.teams]]
name = "serving"
priority = 10
"#;

fn jobs(n: usize) -> Vec<JobSpec> {
    let mut out = Vec::new();
    for i in 0..n {
        let size = [1u32, 4, 8, 16, 32, 64][i % 6];
        let secs = 300.0 + ((i * 7919) % 40_000) as f64;
        out.push(JobSpec {
            id: format!("j{i}"),
            tenant: "research".into(),
            kind: if i % 3 == 0 {
                JobKind::Batch
            } else {
                JobKind::Training
            },
            priority: 0,
            submit_s: i as f64 * 120.0,
            accelerators: size,
            min_accelerators: (size >= 16 && i % 4 == 0).then_some(size / 2),
            replicas: None,
            accelerator_types: Vec::new(),
            clusters: Vec::new(),
            work: Work::Duration {
                seconds: secs,
                by_accelerator: BTreeMap::from([("TPU-v5p".into(), secs * 1.4)]),
            },
        });
    }
    out.push(JobSpec {
        id: "chat".into(),
        tenant: "serving".into(),
        kind: JobKind::Inference,
        priority: 10,
        submit_s: 0.0,
        accelerators: 8,
        min_accelerators: None,
        replicas: Some(Replicas {
            min: 2,
            max: 6,
            capacity_per_replica: 100.0,
            load: Some(switchyard_core::job::DiurnalLoad {
                mean: 300.0,
                amplitude: 0.5,
                peak_hour: 15.0,
            }),
        }),
        accelerator_types: Vec::new(),
        clusters: Vec::new(),
        work: Work::Open,
    });
    out
}

fn fleet() -> Fleet {
    Fleet::from_toml(FLEET, "t.toml").expect("valid fleet")
}

fn json(policy: Policy, seed: u64, failures: bool) -> String {
    let opts = SimOptions {
        policy,
        seed,
        failures,
        ..SimOptions::default()
    };
    let mut r = simulate(
        &fleet(),
        jobs(600),
        ThroughputTable::new(),
        &opts,
        &mut |_| {},
    )
    .expect("simulates");
    r.wall_s = 0.0;
    r.decisions_per_s = 0.0;
    serde_json::to_string(&r).expect("encodes")
}

#[test]
fn same_seed_same_json_different_seed_different_failures() {
    for policy in Policy::ALL {
        assert_eq!(json(policy, 3, true), json(policy, 3, true), "{policy}");
    }
    assert_ne!(
        json(Policy::Switchyard, 3, true),
        json(Policy::Switchyard, 4, true)
    );
}

#[test]
fn failures_cost_goodput_and_every_finite_job_completes() {
    let run = |failures| {
        let opts = SimOptions {
            failures,
            seed: 1,
            ..SimOptions::default()
        };
        simulate(
            &fleet(),
            jobs(600),
            ThroughputTable::new(),
            &opts,
            &mut |_| {},
        )
        .expect("simulates")
    };
    let off = run(false);
    let on = run(true);
    assert_eq!(off.total.completed, 600);
    assert_eq!(on.total.completed, 600);
    assert_eq!(off.total.failures, 0);
    assert!(on.total.failures > 0);
    assert!(on.restarts > 0);
    assert!(
        on.total.goodput < off.total.goodput,
        "{} vs {}",
        on.total.goodput,
        off.total.goodput
    );
    assert!(off.total.goodput > 0.99);
    assert!(on.total.utilization > 0.0 && on.total.utilization <= 1.0);
    assert_eq!(on.clusters.len(), 2);
}

#[test]
fn switchyard_beats_fifo_on_mean_jct() {
    let run = |policy| {
        let opts = SimOptions {
            policy,
            failures: false,
            ..SimOptions::default()
        };
        simulate(
            &fleet(),
            jobs(600),
            ThroughputTable::new(),
            &opts,
            &mut |_| {},
        )
        .expect("simulates")
    };
    let fifo = run(Policy::Fifo);
    let sy = run(Policy::Switchyard);
    assert!(
        sy.total.avg_jct_s < fifo.total.avg_jct_s,
        "{} vs {}",
        sy.total.avg_jct_s,
        fifo.total.avg_jct_s
    );
}

#[test]
fn report_renders() {
    let opts = SimOptions::default();
    let r = simulate(
        &fleet(),
        jobs(100),
        ThroughputTable::new(),
        &opts,
        &mut |_| {},
    )
    .expect("simulates");
    let html = switchyard_sim::report::html(&r).expect("renders");
    assert_eq!(html.matches("<svg").count(), 3);
    assert!(html.contains("research"));
    // The summary carries the text output's headline figures.
    assert_eq!(r.services(), 1, "the trace's one service");
    let summary = format!(
        "{} jobs, {} completed, {} unfinished, {} failed, {} skipped, 1 service (open-ended: \
         served to the end); makespan {:.2} h, {} restart",
        r.total.jobs,
        r.total.completed,
        r.unfinished,
        r.failed,
        r.rejected,
        r.total.makespan_s / 3600.0,
        r.restarts
    );
    assert!(html.contains(&summary), "{summary}");
    // One job of one tenant: a step drawn from 0, in words for one.
    let r = simulate(
        &fleet(),
        jobs(1)
            .into_iter()
            .filter(|j| j.kind != JobKind::Inference)
            .collect(),
        ThroughputTable::new(),
        &opts,
        &mut |_| {},
    )
    .expect("simulates");
    let html = switchyard_sim::report::html(&r).expect("renders");
    assert!(html.contains("1 job, 1 completed"), "one job");
    assert!(html.contains("(1 job)"), "legend for one job");
    assert!(!html.contains("1 jobs"));
}

#[test]
fn impossible_job_names_its_row_or_is_skipped() {
    let mut js = jobs(5);
    js[2].accelerators = 10_000;
    let err = simulate(
        &fleet(),
        js.clone(),
        ThroughputTable::new(),
        &SimOptions::default(),
        &mut |_| {},
    )
    .expect_err("too big");
    assert!(matches!(err, SimError::Job { row: 3, .. }), "{err}");
    let opts = SimOptions {
        skip_invalid: true,
        ..SimOptions::default()
    };
    let r = simulate(&fleet(), js, ThroughputTable::new(), &opts, &mut |_| {}).expect("skips");
    assert_eq!(r.rejected, 1);
    assert_eq!(r.total.completed, 4);
}

/// One cluster of `nodes` 8-GPU servers; tenant `a` with team `t` (guaranteed 32 accelerators)
/// and team `u` (no quota), tenant `b` with team `v` (no quota).
fn quota_fleet(nodes: u32) -> Fleet {
    quota_fleet_with(nodes, "")
}

/// `quota_fleet` with team `u`'s quota line (`quotas = [...]`, or nothing).
fn quota_fleet_with(nodes: u32, u_quotas: &str) -> Fleet {
    let text = format!(
        r#"
name = "q"
[[providers]]
name = "p"
kind = "cloud"
[[providers.contracts]]
accelerator = "H100-SXM"
on_demand_price = 2.0
[[clusters]]
name = "c"
provider = "p"
region = "r"
accelerator = "H100-SXM"
nodes = {nodes}
accelerators_per_node = 8
capacity = "on_demand"
node_mtbf_hours = 1000.0
repair_hours = 24.0
[[tenants]]
name = "a"
[[tenants.teams]]
name = "t"
quotas = [{{ accelerators = 32 }}]
[[tenants.teams]]
name = "u"
{u_quotas}
[[tenants]]
name = "b"
[[tenants.teams]]
name = "v"
"#
    );
    Fleet::from_toml(&text, "q.toml").expect("valid fleet")
}

/// A training run of `team` on `size` accelerators taking `seconds`.
fn training(
    id: &str,
    team: &str,
    submit_s: f64,
    size: u32,
    seconds: f64,
    priority: i32,
) -> JobSpec {
    JobSpec {
        id: id.into(),
        tenant: team.into(),
        kind: JobKind::Training,
        priority,
        submit_s,
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

/// An inference service of `team` submitted at 0 with `size` accelerators per replica.
fn service(id: &str, team: &str, size: u32, replicas: Replicas) -> JobSpec {
    JobSpec {
        id: id.into(),
        tenant: team.into(),
        kind: JobKind::Inference,
        priority: 0,
        submit_s: 0.0,
        accelerators: size,
        min_accelerators: None,
        replicas: Some(replicas),
        accelerator_types: Vec::new(),
        clusters: Vec::new(),
        work: Work::Open,
    }
}

/// The decisions of a kept log that match, as (job id, time).
fn decided<'a>(
    r: &'a switchyard_sim::SimResult,
    what: impl Fn(&Action) -> bool + 'a,
) -> impl Iterator<Item = (&'a str, f64)> + 'a {
    r.decision_log
        .iter()
        .filter(move |(_, d)| what(&d.action))
        .map(|(id, d)| (id.as_str(), d.at_s))
}

/// `jobs` on `fleet` under `policy`, failures off, with the decision log kept.
fn simulated(fleet: &Fleet, jobs: Vec<JobSpec>, policy: Policy) -> switchyard_sim::SimResult {
    let opts = SimOptions {
        policy,
        failures: false,
        keep_decisions: true,
        ..SimOptions::default()
    };
    simulate(fleet, jobs, ThroughputTable::new(), &opts, &mut |_| {}).expect("simulates")
}

/// When `job` first started, if it did.
fn started_at(r: &switchyard_sim::SimResult, job: &str) -> Option<f64> {
    decided(r, |a| matches!(a, Action::Start { .. }))
        .find(|&(id, _)| id == job)
        .map(|(_, at)| at)
}

/// A service that never gets a replica is named, with why, not only counted among the jobs.
#[test]
fn a_service_that_never_had_a_replica_is_named() {
    let one = || Replicas {
        min: 1,
        max: 1,
        capacity_per_replica: 1.0,
        load: None,
    };
    let mut late = service("late", "u", 8, one());
    late.submit_s = 10.0;
    let r = simulated(
        &quota_fleet(1),
        vec![service("first", "u", 8, one()), late],
        Policy::Switchyard,
    );
    assert_eq!(r.unplaced_services, 1);
    assert_eq!(r.unplaced_service_examples.len(), 1);
    let example = &r.unplaced_service_examples[0];
    assert_eq!(example.id, "late");
    assert!(
        example.why.starts_with("waiting for 8 free accelerators"),
        "{}",
        example.why
    );
}

/// Services are watched through a day past the last one's arrival exactly, not to the last
/// ten-minute sample before it: two one-replica services of 8 accelerators at $2 an hour, the
/// second arriving at 599 s, run to 86,999 s: 8 × $2/h × (86,999 + 86,400) s.
#[test]
fn services_are_watched_a_whole_day_past_the_last_arrival() {
    let one = || Replicas {
        min: 1,
        max: 1,
        capacity_per_replica: 1.0,
        load: None,
    };
    let mut second = service("second", "u", 8, one());
    second.submit_s = 599.0;
    let r = simulated(
        &quota_fleet(2),
        vec![service("first", "u", 8, one()), second],
        Policy::Switchyard,
    );
    let expected = 8.0 * 2.0 * (86_999.0 + 86_400.0) / 3600.0;
    assert!(
        (r.total.cost_usd - expected).abs() < 0.01,
        "{} against {expected}",
        r.total.cost_usd
    );
}

/// A run still going at the horizon is accounted up to the horizon itself: 8 on-demand
/// accelerators at $2 an hour for exactly the horizon.
#[test]
fn a_run_at_the_horizon_is_accounted_up_to_it() {
    let opts = SimOptions {
        failures: false,
        horizon_s: 1_000_000.0,
        ..SimOptions::default()
    };
    let jobs = vec![training("long", "u", 0.0, 8, 1e9, 0)];
    let r = simulate(
        &quota_fleet(1),
        jobs,
        ThroughputTable::new(),
        &opts,
        &mut |_| {},
    )
    .expect("runs");
    assert!(r.stopped_at_horizon);
    let expected = 8.0 * 1_000_000.0 / 3600.0 * 2.0;
    assert!(
        (r.total.cost_usd - expected).abs() < 0.01,
        "{} against {expected}",
        r.total.cost_usd
    );
}

/// A training run that started after starving is not made to yield to the next shorter job:
/// behind a stream of short jobs it used to start after a week, yield within the half hour,
/// wait for the cluster to drain whole again, and so on 48 times, leaving half the cluster
/// idle each time. It now runs through, and the run takes as long as under `fifo`.
#[test]
fn a_run_that_started_after_starving_does_not_yield() {
    let mut jobs = vec![
        training("s0", "u", 0.0, 8, 3600.0, 0),
        training("big", "u", 1.0, 16, 100_000.0, 0),
    ];
    for i in 1..=480 {
        jobs.push(training(
            &format!("s{i}"),
            "u",
            f64::from(i) * 1800.0,
            8,
            3600.0,
            0,
        ));
    }
    let run = |policy: Policy| {
        let opts = SimOptions {
            policy,
            failures: false,
            ..SimOptions::default()
        };
        simulate(
            &quota_fleet(2),
            jobs.clone(),
            ThroughputTable::new(),
            &opts,
            &mut |_| {},
        )
        .expect("runs")
    };
    let switchyard = run(Policy::Switchyard);
    let fifo = run(Policy::Fifo);
    assert_eq!(switchyard.total.preemptions, 0);
    assert_eq!(switchyard.total.makespan_s, fifo.total.makespan_s);
}

/// Goodput counts the kept progress of runs still going at the horizon: a training run
/// without failures keeps all its time, a batch job (no checkpoints) none of it yet, and a
/// training run that checkpoints keeps what its last checkpoint holds.
#[test]
fn goodput_counts_what_runs_open_at_the_horizon_have_kept() {
    let at_horizon = |job: JobSpec, failures: bool| {
        let opts = SimOptions {
            failures,
            horizon_s: 1_000_000.0,
            ..SimOptions::default()
        };
        let r = simulate(
            &quota_fleet(1),
            vec![job],
            ThroughputTable::new(),
            &opts,
            &mut |_| {},
        )
        .expect("runs");
        assert!(r.stopped_at_horizon);
        r.total.goodput
    };
    let long = training("long", "u", 0.0, 8, 1e9, 0);
    assert_eq!(at_horizon(long.clone(), false), 1.0);
    let mut batch = long.clone();
    batch.kind = JobKind::Batch;
    assert_eq!(at_horizon(batch, false), 0.0);
    let checkpointed = at_horizon(long, true);
    assert!(
        checkpointed > 0.9 && checkpointed < 1.0,
        "goodput {checkpointed}"
    );
}

/// `switchyard`'s starvation guard holds for a job that sorts behind a stream of shorter jobs
/// of its own team: the reservation it earns after a week holds in every pass until it starts,
/// so the shorter jobs stop taking what frees up first (it used to wait until the stream
/// ended, 22 days).
#[test]
fn a_starving_job_behind_its_teams_shorter_jobs_starts_once_reserved() {
    const DAY: f64 = 86_400.0;
    let mut jobs = vec![
        training("small0", "u", 0.0, 4, 2.0 * DAY, 0),
        training("big", "u", 1.0, 8, 3.0 * DAY, 0),
    ];
    for i in 1..=20 {
        jobs.push(training(
            &format!("small{i}"),
            "u",
            f64::from(i) * DAY,
            4,
            2.0 * DAY,
            0,
        ));
    }
    let r = simulated(&quota_fleet(1), jobs, Policy::Switchyard);
    let big = started_at(&r, "big").expect("big starts");
    // Starving after a week; the two shorter runs it found running end within two days.
    assert!(
        big <= 9.0 * DAY + 1.0,
        "big started on day {:.1}",
        big / DAY
    );
}

/// A team with a guaranteed quota and teams without one, with priorities that cut across them:
/// priority preemption and quota reclaim used to hand the same accelerators back and forth every
/// scheduling pass, forever (the run never ended).
#[test]
fn priority_does_not_take_a_guaranteed_quota_back_and_forth() {
    let fleet = quota_fleet(4);
    let job =
        |id: &str, submit_s: f64, size: u32, secs: f64, team: &str, priority, min, kind| JobSpec {
            id: id.into(),
            tenant: team.into(),
            kind,
            priority,
            submit_s,
            accelerators: size,
            min_accelerators: min,
            replicas: None,
            accelerator_types: Vec::new(),
            clusters: Vec::new(),
            work: Work::Duration {
                seconds: secs,
                by_accelerator: BTreeMap::new(),
            },
        };
    let jobs = vec![
        job("a", 0.0, 32, 18000.0, "t", -1, Some(16), JobKind::Batch),
        job("c", 100.0, 16, 4700.0, "u", 0, Some(8), JobKind::Training),
        job("d", 200.0, 1, 14000.0, "v", 1, None, JobKind::Training),
        job("b", 300.0, 32, 10000.0, "t", 0, Some(16), JobKind::Training),
    ];
    let opts = SimOptions {
        failures: false,
        ..SimOptions::default()
    };
    // A livelock (two rules handing the same accelerators back and forth while the clock
    // stands still) would run forever: fail instead once it has taken a million steps.
    let mut reports = 0;
    let mut watchdog = |p: switchyard_sim::Progress| {
        reports += 1;
        assert!(reports < 250, "no end in sight: still at {} s", p.now_s);
    };
    let r =
        simulate(&fleet, jobs, ThroughputTable::new(), &opts, &mut watchdog).expect("simulates");
    assert_eq!(r.total.completed, 4);
    assert!(
        r.total.preemptions <= 4,
        "{} preemptions",
        r.total.preemptions
    );
}

/// A team over its guarantee by less than a run's size is not borrowing that run: priority
/// from another team may take a run that leaves the guarantee whole, never one that would cut
/// into it.
#[test]
fn priority_takes_only_what_a_team_borrows() {
    let fleet = quota_fleet(5);
    let job = |id: &str, submit_s, size, team: &str, priority| {
        training(id, team, submit_s, size, 36_000.0, priority)
    };
    // Team t holds all 40: its guaranteed 32 and 8 borrowed. Then v's urgent 16 arrives:
    // only the guaranteed run could make room for it, so it waits.
    let jobs = vec![
        job("big", 0.0, 32, "t", 0),
        job("small", 1.0, 8, "t", 0),
        job("wide", 100.0, 16, "v", 5),
    ];
    let opts = SimOptions {
        policy: Policy::Switchyard,
        failures: false,
        keep_decisions: true,
        ..SimOptions::default()
    };
    let r = simulate(&fleet, jobs, ThroughputTable::new(), &opts, &mut |_| {}).expect("simulates");
    let preempted: Vec<&str> = decided(&r, |a| matches!(a, Action::Preempt { .. }))
        .map(|(id, _)| id)
        .collect();
    assert!(preempted.is_empty(), "{:#?}", r.decision_log);
    assert_eq!(r.total.completed, 3);
}

/// Victims are checked against their team's guarantee together, not one by one: taking any
/// one of four 8-accelerator runs leaves a team guaranteed 16 whole, taking three leaves it at
/// 8 (it reclaimed them at once, and the rules took turns hundreds of times).
#[test]
fn preemption_never_takes_a_guarantee_in_several_runs() {
    let fleet = quota_fleet_with(4, "quotas = [{ accelerators = 16 }]");
    for (urgent, preempted) in [(24, 0), (16, 2)] {
        let mut jobs: Vec<JobSpec> = (0..4)
            .map(|i| training(&format!("u{i}"), "u", 0.0, 8, 36_000.0, 0))
            .collect();
        jobs.push(training("urgent", "v", 100.0, urgent, 3_600.0, 10));
        let r = simulated(&fleet, jobs, Policy::Switchyard);
        assert_eq!(
            r.total.preemptions, preempted,
            "{urgent}: {:#?}",
            r.decision_log
        );
        assert_eq!(r.total.completed, 5);
    }
}

/// A team within its guarantee may still take long runs of a team below its own when its job
/// is far shorter (the yield rule ignores the other team's guarantee then, as documented),
/// even where quota reclaim alone would stop at that guarantee.
#[test]
fn a_short_guaranteed_job_takes_long_runs_past_anothers_guarantee() {
    let fleet = quota_fleet_with(4, "quotas = [{ accelerators = 16 }]");
    let mut jobs: Vec<JobSpec> = (0..4)
        .map(|i| training(&format!("u{i}"), "u", 0.0, 8, 360_000.0, 0))
        .collect();
    jobs.push(training("short", "t", 100.0, 24, 3_600.0, 0));
    let r = simulated(&fleet, jobs, Policy::Switchyard);
    assert_eq!(
        started_at(&r, "short"),
        Some(100.0),
        "{:#?}",
        r.decision_log
    );
    assert_eq!(r.total.preemptions, 3);
    // Two are capacity team u borrowed; the third is its guarantee, taken by the yield rule,
    // and its event says so.
    let reasons: Vec<&str> = r
        .decision_log
        .iter()
        .filter(|(_, d)| matches!(d.action, Action::Preempt { .. }))
        .map(|(_, d)| d.reason.as_str())
        .collect();
    let reclaimed = reasons
        .iter()
        .filter(|r| r.contains("reclaims quota"))
        .count();
    let yielded = reasons
        .iter()
        .filter(|r| r.contains("needs far less time"))
        .count();
    assert_eq!((reclaimed, yielded), (2, 1), "{reasons:#?}");
}

/// A team below its guarantee reclaims it when its job arrives, under `fair` as under
/// `switchyard`, not only in a pass after something ended (it used to wait for the borrowers
/// to finish).
#[test]
fn a_guarantee_is_reclaimed_when_the_job_arrives() {
    let fleet = quota_fleet(4);
    let mut jobs: Vec<JobSpec> = (0..4)
        .map(|i| training(&format!("u{i}"), "u", 0.0, 8, 36_000.0, 0))
        .collect();
    jobs.push(training("guaranteed", "t", 100.0, 8, 3_600.0, 0));
    for policy in [Policy::Fair, Policy::Switchyard] {
        let r = simulated(&fleet, jobs.clone(), policy);
        assert_eq!(
            started_at(&r, "guaranteed"),
            Some(100.0),
            "{policy:?}: {:#?}",
            r.decision_log
        );
        assert_eq!(r.total.preemptions, 1, "{policy:?}");
    }
}

/// EASY backfill under `fifo`: the accelerators a reservation does not need are given out
/// once. Two jobs each fitting the 8 spare ones, arriving in separate passes, both took them,
/// and the reserved job started 1,002 s late.
#[test]
fn backfill_uses_the_spare_accelerators_once() {
    let fleet = quota_fleet(5);
    let jobs = vec![
        training("x", "v", 0.0, 16, 1_000.0, 0),
        training("y", "v", 0.0, 8, 5_000.0, 0),
        training("reserved", "v", 1.0, 24, 3_600.0, 0),
        training("b1", "v", 2.0, 8, 2_000.0, 0),
        training("b2", "v", 4.0, 8, 2_000.0, 0),
    ];
    let r = simulated(&fleet, jobs, Policy::Fifo);
    let started = |job: &str| started_at(&r, job);
    assert_eq!(started("reserved"), Some(1_000.0), "{:#?}", r.decision_log);
    assert_eq!(started("b1"), Some(2.0), "backfilled into the spare 8");
    assert_eq!(started("b2"), Some(2_002.0), "waits for b1's accelerators");
}

/// An elastic run started small grows in place to the largest gang its own accelerators and
/// the freed ones make (it was moved onto the freed ones alone), and within its team's cap.
#[test]
fn an_elastic_run_grows_onto_its_own_and_the_freed_accelerators() {
    let grown_to = |fleet: &Fleet, team: &str| {
        let mut elastic = training("elastic", team, 1.0, 32, 100_000.0, 0);
        elastic.min_accelerators = Some(8);
        let jobs = vec![training("first", "v", 0.0, 24, 500.0, 0), elastic];
        let r = simulated(fleet, jobs, Policy::Switchyard);
        r.decision_log
            .iter()
            .filter(|(id, d)| id == "elastic" && d.at_s == 500.0)
            .find_map(|(_, d)| d.reason.split("grows from 8 to ").nth(1))
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse::<u32>().ok())
    };
    assert_eq!(grown_to(&quota_fleet(4), "v"), Some(32));
    // Team u may hold 16 at most (a guarantee of 8 and 8 borrowed).
    let capped = quota_fleet_with(4, "quotas = [{ accelerators = 8, borrowing_limit = 8 }]");
    assert_eq!(grown_to(&capped, "u"), Some(16));
}

/// A service of a team without a guarantee that took a whole cluster gives back replicas
/// when a team with a guarantee there needs it; it keeps serving with the rest.
#[test]
fn a_guarantee_is_reclaimed_from_a_borrowing_service() {
    let fleet = quota_fleet(4);
    let svc = service(
        "svc",
        "u",
        8,
        Replicas {
            min: 4,
            max: 4,
            capacity_per_replica: 1.0,
            load: None,
        },
    );
    let run = training("guaranteed", "t", 100.0, 16, 3600.0, 0);
    for policy in [Policy::Fair, Policy::Switchyard] {
        let opts = SimOptions {
            policy,
            failures: false,
            keep_decisions: true,
            horizon_s: 100_000.0,
            ..SimOptions::default()
        };
        let r = simulate(
            &fleet,
            vec![svc.clone(), run.clone()],
            ThroughputTable::new(),
            &opts,
            &mut |_| {},
        )
        .expect("simulates");
        let started_at = decided(&r, |a| matches!(a, Action::Start { .. }))
            .find(|&(id, _)| id == "guaranteed")
            .map(|(_, at)| at);
        assert_eq!(started_at, Some(100.0), "{policy:?}: {:#?}", r.decision_log);
        let removed = decided(&r, |a| matches!(a, Action::RemoveReplica { .. }))
            .filter(|&(id, _)| id == "svc")
            .count();
        assert_eq!(
            removed, 2,
            "{policy:?}: two 8-accelerator replicas make room for 16"
        );
    }
}

/// A service's team with a guarantee of its own gives back only what it borrows: a run that
/// needs more than that waits, and no replica is taken for nothing.
#[test]
fn a_service_gives_back_only_what_its_team_borrows() {
    let fleet = quota_fleet_with(4, "quotas = [{ accelerators = 16 }]");
    let svc = service(
        "svc",
        "u",
        8,
        Replicas {
            min: 4,
            max: 4,
            capacity_per_replica: 1.0,
            load: None,
        },
    );
    for (size, reclaimed) in [(16, 2), (24, 0)] {
        let run = training("guaranteed", "t", 100.0, size, 3600.0, 0);
        let opts = SimOptions {
            policy: Policy::Switchyard,
            failures: false,
            keep_decisions: true,
            horizon_s: 100_000.0,
            ..SimOptions::default()
        };
        let r = simulate(
            &fleet,
            vec![svc.clone(), run],
            ThroughputTable::new(),
            &opts,
            &mut |_| {},
        )
        .expect("simulates");
        let removed = decided(&r, |a| matches!(a, Action::RemoveReplica { .. })).count();
        assert_eq!(removed, reclaimed, "{size}: {:#?}", r.decision_log);
        let started =
            decided(&r, |a| matches!(a, Action::Start { .. })).any(|(id, _)| id == "guaranteed");
        assert_eq!(started, reclaimed > 0, "{size}: {:#?}", r.decision_log);
    }
}

/// A job that only fits once a service shrinks at the trough of its load curve waits for it;
/// the simulation does not give up on it while the service holds the room.
#[test]
fn a_job_waits_for_a_service_to_shrink_at_its_trough() {
    let fleet = quota_fleet(2);
    let chat = service(
        "chat",
        "u",
        1,
        Replicas {
            min: 0,
            max: 16,
            capacity_per_replica: 1.0,
            // 16 replicas at midnight, none at noon.
            load: Some(switchyard_core::job::DiurnalLoad {
                mean: 8.0,
                amplitude: 1.0,
                peak_hour: 0.0,
            }),
        },
    );
    let run = training("train", "u", 0.0, 16, 3600.0, 0);
    let opts = SimOptions {
        failures: false,
        ..SimOptions::default()
    };
    let r = simulate(
        &fleet,
        vec![chat, run],
        ThroughputTable::new(),
        &opts,
        &mut |_| {},
    )
    .expect("simulates");
    assert_eq!((r.total.completed, r.unfinished), (1, 0));
    assert!(r.total.makespan_s > 3600.0, "{}", r.total.makespan_s);
}

/// Preemption makes room a gang can use: an 8-GPU job on two 8-GPU nodes, each half held by
/// lower-priority 4-GPU runs (one node's pair both preemptible), empties one node — the
/// cheapest — instead of taking one run from each node and leaving neither free.
#[test]
fn preemption_frees_whole_nodes_for_a_gang() {
    let fleet = quota_fleet(2);
    let job =
        |id: &str, submit_s, size, priority| training(id, "u", submit_s, size, 36_000.0, priority);
    let jobs = vec![
        job("j0", 0.0, 4, 0),
        job("j1", 1.0, 4, 0),
        job("j2", 2.0, 4, 10),
        job("j3", 3.0, 4, 0),
        job("d", 10.0, 8, 5),
    ];
    let opts = SimOptions {
        policy: Policy::Priority,
        failures: false,
        keep_decisions: true,
        ..SimOptions::default()
    };
    let r = simulate(&fleet, jobs, ThroughputTable::new(), &opts, &mut |_| {}).expect("simulates");
    let preempted: Vec<&str> = decided(&r, |a| matches!(a, Action::Preempt { .. }))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(preempted.len(), 2, "{:#?}", r.decision_log);
    let d_start = decided(&r, |a| matches!(a, Action::Start { .. }))
        .find(|&(id, _)| id == "d")
        .map(|(_, at)| at);
    assert_eq!(d_start, Some(10.0), "{:#?}", r.decision_log);
}

#[test]
fn work_that_never_ends_is_refused_and_late_jobs_are_unfinished() {
    // Open work is a service's; a training run must end.
    let mut js = jobs(3);
    js[1].kind = JobKind::Training;
    js[1].replicas = None;
    js[1].work = Work::Open;
    let err = simulate(
        &fleet(),
        js,
        ThroughputTable::new(),
        &SimOptions::default(),
        &mut |_| {},
    )
    .expect_err("open training");
    assert!(
        matches!(&err, SimError::Job { row: 2, message, .. } if message.contains("work = open, which is for inference services")),
        "{err}"
    );

    // A job due after the horizon never arrives: it is unfinished, not lost from the counts.
    let mut js = jobs(4);
    js.retain(|j| j.kind != JobKind::Inference);
    for j in &mut js {
        j.kind = JobKind::Training;
        j.replicas = None;
        j.work = Work::Duration {
            seconds: 600.0,
            by_accelerator: BTreeMap::new(),
        };
    }
    js[3].submit_s = 1e10;
    let opts = SimOptions {
        failures: false,
        horizon_s: 86_400.0,
        ..SimOptions::default()
    };
    let r = simulate(
        &fleet(),
        js.clone(),
        ThroughputTable::new(),
        &opts,
        &mut |_| {},
    )
    .expect("runs");
    assert_eq!((r.total.jobs, r.total.completed, r.unfinished), (4, 3, 1));
    assert!(r.total.utilization > 0.0 && r.total.utilization < 1.0);
    assert!(r.stopped_at_horizon);
    let note = r.horizon_note().expect("a note on the horizon");
    assert!(
        note.contains("1 day after the first submission, with 1 job still waiting"),
        "{note}"
    );
    let whole = simulate(
        &fleet(),
        js[..3].to_vec(),
        ThroughputTable::new(),
        &opts,
        &mut |_| {},
    )
    .expect("runs");
    assert!(!whole.stopped_at_horizon && whole.horizon_note().is_none());

    // The horizon counts from the first submission: a trace in Unix-epoch seconds runs too.
    let epoch: Vec<JobSpec> = js
        .into_iter()
        .map(|mut j| {
            j.submit_s += 1.7e9;
            j
        })
        .collect();
    let r = simulate(&fleet(), epoch, ThroughputTable::new(), &opts, &mut |_| {}).expect("runs");
    assert_eq!((r.total.jobs, r.total.completed, r.unfinished), (4, 3, 1));
}

/// A run that needs every node of its cluster waits through failures for a moment when none is
/// down, however often another node fails while it waits, and finishes; the simulation does
/// not call it unfinished while repairs are still to come.
#[test]
fn a_whole_cluster_run_outlasts_the_failures_it_waits_through() {
    // 64 nodes failing once every 15.6 h between them, each down for 24 h: the whole cluster
    // is up about a fifth of the time.
    let fleet = quota_fleet(64);
    for seed in 0..6 {
        let opts = SimOptions {
            seed,
            ..SimOptions::default()
        };
        let r = simulate(
            &fleet,
            vec![training("all", "u", 0.0, 512, 36_000.0, 0)],
            ThroughputTable::new(),
            &opts,
            &mut |_| {},
        )
        .expect("simulates");
        assert_eq!(
            (r.total.completed, r.unfinished),
            (1, 0),
            "seed {seed}: {} node failures",
            r.total.failures
        );
    }
}

/// With repairs of a year, a run that needs every node of a cluster whose nodes fail by the
/// hour never sees them all up: it is left unfinished after a year of waiting, not watched to
/// the 20-year horizon.
#[test]
fn a_run_stuck_behind_year_long_repairs_waits_a_year_not_the_horizon() {
    let text = r#"
name = "slow-repairs"
[[providers]]
name = "p"
kind = "cloud"
[[providers.contracts]]
accelerator = "H100-SXM"
on_demand_price = 2.0
[[clusters]]
name = "c"
provider = "p"
region = "r"
accelerator = "H100-SXM"
nodes = 16
accelerators_per_node = 8
capacity = "on_demand"
node_mtbf_hours = 1.0
repair_hours = 8760.0
"#;
    let fleet = Fleet::from_toml(text, "slow-repairs.toml").expect("valid fleet");
    let r = simulate(
        &fleet,
        vec![training("all", "u", 0.0, 128, 864_000.0, 0)],
        ThroughputTable::new(),
        &SimOptions::default(),
        &mut |_| {},
    )
    .expect("simulates");
    assert_eq!(r.unfinished, 1);
    assert!(!r.stopped_at_horizon, "{} failures", r.total.failures);
}

/// Submission times beyond what a trace in seconds can hold (a trace in milliseconds or
/// microseconds read as seconds) are refused, naming the row, rather than simulated at a
/// precision where failures stop moving the clock.
#[test]
fn submission_times_past_three_thousand_years_are_refused() {
    let fleet = quota_fleet(2);
    let err = simulate(
        &fleet,
        vec![
            training("ok", "u", 1.7e9, 8, 10.0, 0),
            training("far", "u", 1e21, 8, 10.0, 0),
        ],
        ThroughputTable::new(),
        &SimOptions::default(),
        &mut |_| {},
    )
    .expect_err("refused");
    let text = err.to_string();
    assert!(text.contains("job 2") && text.contains("1e21"), "{text}");
}

/// Finite work that would take more than a century (a duration in the wrong unit, a
/// throughput of almost nothing) never finishes: it is refused, naming the job, rather than
/// run to the 20-year horizon; under `--skip-invalid` it is skipped and counted.
#[test]
fn work_longer_than_a_century_is_refused() {
    let fleet = quota_fleet(2);
    let jobs = vec![
        training("ok", "u", 0.0, 8, 1000.0, 0),
        // Longer than the 20-year horizon, within a century: taken, and left unfinished.
        training("long", "u", 0.0, 8, 99.0 * 365.25 * 86_400.0, 0),
        training("slow", "u", 1.0, 8, 1e300, 0),
    ];
    let err = simulate(
        &fleet,
        jobs.clone(),
        ThroughputTable::new(),
        &SimOptions::default(),
        &mut |_| {},
    )
    .expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("job 3") && text.contains("more than a century"),
        "{text}"
    );
    let r = simulate(
        &fleet,
        jobs,
        ThroughputTable::new(),
        &SimOptions {
            skip_invalid: true,
            failures: false,
            ..SimOptions::default()
        },
        &mut |_| {},
    )
    .expect("skipped");
    assert_eq!((r.rejected, r.total.completed, r.unfinished), (1, 1, 1));
}

/// A run that needs every node of a cluster where some node is always in repair never sees a
/// moment when none is down: the simulation gives up on it after waiting out 100 repair times,
/// not at the 20-year horizon.
#[test]
fn a_run_that_never_sees_its_whole_cluster_up_is_given_up_after_the_repairs() {
    // 2,000 nodes failing twice an hour between them, each down for 24 h: about 48 down at any
    // moment.
    let fleet = quota_fleet(2000);
    let r = simulate(
        &fleet,
        vec![training("all", "u", 0.0, 16_000, 36_000.0, 0)],
        ThroughputTable::new(),
        &SimOptions::default(),
        &mut |_| {},
    )
    .expect("simulates");
    assert_eq!((r.total.completed, r.unfinished), (0, 1));
    let last = r.series.t.last().copied().unwrap_or(0.0);
    assert!(
        last > 50.0 * 86_400.0 && last < 120.0 * 86_400.0,
        "simulated until day {:.0}",
        last / 86_400.0
    );
}

/// A run that fails for good held its accelerators until then: the watched time runs at least
/// that far, so utilisation stays within 100% (it once reached 258% when the last completion
/// came before the failure).
#[test]
fn a_run_failed_for_good_counts_within_the_watched_time() {
    let fleet = one_h100_cluster(2000, 10.0, "");
    let js = vec![
        training("big", "default", 0.0, 15_000, 86_400.0, 0),
        training("small", "default", 0.0, 8, 600.0, 0),
    ];
    let r = simulate(
        &fleet,
        js,
        ThroughputTable::new(),
        &SimOptions::default(),
        &mut |_| {},
    )
    .expect("runs");
    assert_eq!((r.total.completed, r.failed), (1, 1), "{r:?}");
    assert!(
        r.total.utilization > 0.0 && r.total.utilization <= 1.0,
        "{}",
        r.total.utilization
    );
}

/// The built-in scenario on a fleet whose one team may hold 8 accelerators: its services leave
/// the team room (they once took the whole cap and nothing else ever ran).
#[test]
fn the_scenario_leaves_a_small_team_room_for_its_jobs() {
    let fleet = one_h100_cluster(
        64,
        6328.0,
        "[[tenants]]\nname = \"lab\"\n[[tenants.teams]]\nname = \"research\"\n\
         quotas = [{ accelerators = 8, borrowing_limit = 0 }]\n",
    );

    let jobs = switchyard_sim::trace::frontier_lab(&fleet, 0);
    let opts = SimOptions {
        failures: false,
        ..SimOptions::default()
    };
    let r = simulate(&fleet, jobs, ThroughputTable::new(), &opts, &mut |_| {}).expect("runs");
    assert!(r.total.completed > 0, "{r:?}");
    assert_eq!(r.unfinished, 0, "{r:?}");
}

/// The built-in scenario on a large H100 cluster beside a small, cheap L4 one: under
/// `switchyard` the services take the L4s, and jobs pinned to L4 that need more than the
/// services leave there once waited for ever. Every job finishes, under every policy and
/// over several seeds.
#[test]
fn the_scenario_finishes_beside_services_on_a_small_cheap_cluster() {
    let fleet = Fleet::from_toml(
        r#"
name = "mini"
[[providers]]
name = "p"
kind = "cloud"
[[providers.contracts]]
accelerator = "H100"
on_demand_price = 4.0
[[providers.contracts]]
accelerator = "L4"
on_demand_price = 0.5
[[clusters]]
name = "h100"
provider = "p"
region = "r"
accelerator = "H100"
nodes = 512
capacity = "on_demand"
node_mtbf_hours = 5000.0
repair_hours = 24.0
[[clusters]]
name = "l4"
provider = "p"
region = "r"
accelerator = "L4"
nodes = 100
accelerators_per_node = 1
capacity = "on_demand"
node_mtbf_hours = 5000.0
repair_hours = 24.0
"#,
        "mini.toml",
    )
    .expect("fleet");
    for policy in [Policy::Switchyard, Policy::Fair] {
        for seed in [0, 1, 2, 5] {
            let jobs = switchyard_sim::trace::frontier_lab(&fleet, seed);
            let opts = SimOptions {
                failures: false,
                policy,
                seed,
                ..SimOptions::default()
            };
            let r =
                simulate(&fleet, jobs, ThroughputTable::new(), &opts, &mut |_| {}).expect("runs");
            assert_eq!(
                r.unfinished, 0,
                "{policy:?} seed {seed}: {:?}",
                r.unfinished_examples
            );
        }
    }
}

/// A fleet of one on-demand cluster of `nodes` H100 servers whose nodes fail every
/// `node_mtbf_hours`, and `tenants` (TOML) after it.
fn one_h100_cluster(nodes: u32, node_mtbf_hours: f64, tenants: &str) -> Fleet {
    let text = format!(
        "name = \"one\"\n[[providers]]\nname = \"p\"\nkind = \"cloud\"\n\
         [[providers.contracts]]\naccelerator = \"H100-SXM\"\non_demand_price = 2.0\n\
         [[clusters]]\nname = \"c\"\nprovider = \"p\"\nregion = \"r\"\n\
         accelerator = \"H100-SXM\"\nnodes = {nodes}\ncapacity = \"on_demand\"\n\
         node_mtbf_hours = {node_mtbf_hours}\nrepair_hours = 24.0\n{tenants}"
    );
    Fleet::from_toml(&text, "one.toml").expect("fleet")
}

/// A trace of services alone is watched through a day of their load: what they hold and cost
/// is in the figures (the run once ended at the first instant, everything zero).
#[test]
fn services_alone_are_watched_through_a_day() {
    let fleet = quota_fleet(2);
    let fixed = service(
        "fixed",
        "u",
        8,
        Replicas {
            min: 1,
            max: 1,
            capacity_per_replica: 1.0,
            load: None,
        },
    );
    let opts = SimOptions {
        failures: false,
        ..SimOptions::default()
    };
    // Alone, and beside a run that can never start (the service holds what it needs): the
    // stuck run once ended the simulation at once, with the service's figures zero.
    let stuck = training("stuck", "u", 0.0, 16, 60.0, 0);
    for jobs in [vec![fixed.clone()], vec![fixed, stuck]] {
        let stuck = jobs.len() > 1;
        let r =
            simulate(&fleet, jobs, ThroughputTable::new(), &opts, &mut |_| {}).expect("simulates");
        // 8 of 16 accelerators for a day at $2 an hour.
        assert!(
            (r.total.utilization - 0.5).abs() < 0.05,
            "stuck {stuck}: {}",
            r.total.utilization
        );
        assert!(
            (r.total.cost_usd - 8.0 * 24.0 * 2.0).abs() < 8.0 * 2.0,
            "stuck {stuck}: {}",
            r.total.cost_usd
        );
        assert_eq!(r.unfinished, u64::from(stuck));
        // The service is counted as one, beside the stuck job.
        assert_eq!(r.services(), 1, "stuck {stuck}");
    }
}

/// A fleet of one provider with `clusters` (name, accelerator, nodes, per node) and one
/// organisation of `teams` (name, TOML of its quotas or "").
fn small_fleet(clusters: &[(&str, &str, u32, u32)], teams: &[(&str, &str)]) -> Fleet {
    let mut text =
        String::from("name = \"small\"\n[[providers]]\nname = \"p\"\nkind = \"cloud\"\n");
    let mut accelerators: Vec<&str> = clusters.iter().map(|c| c.1).collect();
    accelerators.sort_unstable();
    accelerators.dedup();
    for a in accelerators {
        text.push_str(&format!(
            "[[providers.contracts]]\naccelerator = \"{a}\"\non_demand_price = 1.0\n"
        ));
    }
    for (name, accelerator, nodes, per_node) in clusters {
        text.push_str(&format!(
            "[[clusters]]\nname = \"{name}\"\nprovider = \"p\"\nregion = \"r\"\n\
             accelerator = \"{accelerator}\"\nnodes = {nodes}\naccelerators_per_node = {per_node}\n\
             capacity = \"on_demand\"\nnode_mtbf_hours = 6000.0\nrepair_hours = 1.0\n"
        ));
    }
    text.push_str("[[tenants]]\nname = \"org\"\n");
    for (name, quotas) in teams {
        text.push_str(&format!("[[tenants.teams]]\nname = \"{name}\"\n{quotas}\n"));
    }
    Fleet::from_toml(&text, "small.toml").expect("a valid fleet")
}

/// The jobs of a canonical CSV trace.
fn trace_jobs(csv: &str) -> Vec<JobSpec> {
    switchyard_sim::trace::parse(
        csv,
        "t.csv",
        switchyard_sim::trace::TraceFormat::Canonical,
        &switchyard_sim::trace::LoadOptions::default(),
    )
    .expect("a valid trace")
    .jobs
}

/// The (time, cluster) of each start of job `id`.
fn starts_of(r: &switchyard_sim::SimResult, fleet: &Fleet, id: &str) -> Vec<(f64, String)> {
    r.decision_log
        .iter()
        .filter(|(job, _)| job == id)
        .filter_map(|(_, d)| match d.action {
            Action::Start { cluster, .. } => {
                Some((d.at_s, fleet.clusters[cluster as usize].name.clone()))
            }
            _ => None,
        })
        .collect()
}

fn fast_and_slow() -> Fleet {
    small_fleet(
        &[("fast", "H100-SXM", 1, 8), ("slow", "V100", 1, 8)],
        &[("a", ""), ("b", "")],
    )
}

/// A job that would refuse the slower cluster does not preempt there: before its wait for
/// faster hardware lapses nothing is evicted, and then one lower-priority run is, once.
#[test]
fn a_preemption_makes_room_only_where_the_job_then_starts() {
    let fleet = fast_and_slow();
    let jobs = trace_jobs(
        "id,submit_s,accelerators,duration_s,tenant,priority,clusters,work\n\
         blocker,0,8,100000,a,10,fast,\n\
         victim,0,8,100000,a,0,slow,\n\
         j,10,8,1000,a,5,,V100=10000\n",
    );
    let r = simulated(&fleet, jobs, Policy::Switchyard);
    let preempted: Vec<_> = decided(&r, |a| matches!(a, Action::Preempt { .. })).collect();
    assert_eq!(preempted.len(), 1, "{:#?}", r.decision_log);
    let started = starts_of(&r, &fleet, "j");
    assert_eq!(started.len(), 1, "{started:?}");
    assert_eq!(started[0].1, "slow");
    // It waited as long as its run on the faster cluster would take, and no longer than the
    // next look after that.
    assert!(
        started[0].0 >= 1000.0 && started[0].0 < 2000.0,
        "{started:?}"
    );
    assert_eq!(preempted[0].1, started[0].0);
}

/// A refusal that lapses with time is looked at again although nothing is given back: a job
/// waiting for faster hardware takes the idle slower cluster once it has waited long enough.
#[test]
fn a_wait_for_faster_hardware_ends_without_anything_freed() {
    let fleet = fast_and_slow();
    let jobs = trace_jobs(
        "id,submit_s,accelerators,duration_s,tenant,priority,clusters,work\n\
         blocker,0,8,100000,b,10,fast,\n\
         j,10,8,1000,a,0,,V100=10000\n",
    );
    let r = simulated(&fleet, jobs, Policy::Switchyard);
    let started = starts_of(&r, &fleet, "j");
    assert_eq!(started.len(), 1, "{started:?}");
    assert_eq!(started[0].1, "slow");
    assert!(
        started[0].0 >= 1000.0 && started[0].0 < 2000.0,
        "{started:?}"
    );
}

/// A migration is priced on the work a run has left, not on what it had at its start.
#[test]
fn a_run_half_done_moves_when_faster_hardware_frees() {
    let fleet = fast_and_slow();
    let jobs = trace_jobs(
        "id,submit_s,accelerators,duration_s,tenant,priority,clusters,work\n\
         blocker,0,8,42500,b,10,fast,\n\
         j,1,8,45000,a,0,,V100=85000\n",
    );
    let r = simulated(&fleet, jobs, Policy::Switchyard);
    let started = starts_of(&r, &fleet, "j");
    assert_eq!(
        started,
        [(1.0, "slow".to_owned()), (42_500.0, "fast".to_owned())],
        "{:#?}",
        r.decision_log
    );
    assert!(r.total.makespan_s < 70_000.0, "{}", r.total.makespan_s);
}

/// Jobs of several teams queued in one instant are started by fair share, not by team name.
#[test]
fn jobs_of_several_teams_queued_at_once_share_by_team() {
    let fleet = small_fleet(
        &[("c", "H100-SXM", 4, 8), ("o", "H100-SXM", 1, 8)],
        &[("x", ""), ("y", ""), ("z", "")],
    );
    // `pend` keeps the queue from emptying, so that the pass after `warm` ends is a full one
    // and the jobs of x and y, queued after it with nothing freed since, are the fresh ones.
    let mut csv = String::from(
        "id,submit_s,accelerators,duration_s,tenant,clusters\nwarm,0,8,50,z,c\n\
         blk,0,8,100000,z,o\npend,0,8,1000,z,o\n",
    );
    // All of x's rows first: an order by submission alone would start x's four.
    for n in 1..=4 {
        csv.push_str(&format!("x{n},100,8,10000,x,c\n"));
    }
    for n in 1..=4 {
        csv.push_str(&format!("y{n},100,8,20000,y,c\n"));
    }
    for policy in [Policy::Fair, Policy::Switchyard] {
        let r = simulated(&fleet, trace_jobs(&csv), policy);
        let first: Vec<&str> = decided(&r, |a| matches!(a, Action::Start { .. }))
            .filter(|&(_, at)| at == 100.0)
            .map(|(id, _)| &id[..1])
            .collect();
        let xs = first.iter().filter(|&&t| t == "x").count();
        assert_eq!((first.len(), xs), (4, 2), "{policy:?}: {first:?}");
    }
}

/// Service replicas are reclaimed for a gang only where taking them makes room for it: two
/// replicas on two half-busy nodes do not hold a gang of a whole node.
#[test]
fn replicas_are_reclaimed_only_where_they_make_room() {
    let fleet = small_fleet(
        &[("c", "H100-SXM", 2, 8)],
        &[
            ("a", "quotas = [{ cluster = \"c\", accelerators = 8 }]"),
            ("b", ""),
            ("c", "quotas = [{ cluster = \"c\", accelerators = 8 }]"),
        ],
    );
    let jobs = trace_jobs(
        "id,submit_s,accelerators,duration_s,tenant,kind,replicas,clusters,work\n\
         s1,0,4,,b,inference,1..1@10,c,open\n\
         c1,1,4,86400,c,batch,,c,\n\
         s2,2,4,,b,inference,1..1@10,c,open\n\
         c2,3,4,86400,c,batch,,c,\n\
         a1,10,8,1000,a,training,,c,\n",
    );
    for policy in [Policy::Fair, Policy::Switchyard] {
        let r = simulated(&fleet, jobs.clone(), policy);
        let removed: Vec<_> = decided(&r, |a| matches!(a, Action::RemoveReplica { .. })).collect();
        // Only once c1 ends does a node empty but for one replica, which then goes.
        assert_eq!(
            removed,
            [("s1", 86_401.0)],
            "{policy:?}: {:#?}",
            r.decision_log
        );
        assert_eq!(starts_of(&r, &fleet, "a1")[0].0, 86_401.0);
    }
}

/// A job does not preempt on a cluster a reservation holds for another job: it could not start
/// there, and the evicted run would have stopped for nothing.
#[test]
fn no_preemption_on_a_cluster_held_for_another_job() {
    let fleet = small_fleet(
        &[("c", "H100-SXM", 2, 8), ("o", "H100-SXM", 1, 8)],
        &[("a", ""), ("b", ""), ("c", ""), ("d", "")],
    );
    // r (two nodes) starves after a week and holds c; p arrives later with r's priority.
    let jobs = trace_jobs(
        "id,submit_s,accelerators,duration_s,tenant,priority,clusters\n\
         h,0,8,800000,c,10,c\n\
         v,0,8,900000,b,0,c\n\
         r,1,16,1000,a,5,c\n\
         tick,640000,8,10000,d,0,o\n\
         p,700000,8,500000,a,5,c\n",
    );
    let r = simulated(&fleet, jobs, Policy::Switchyard);
    let preempted: Vec<_> = decided(&r, |a| matches!(a, Action::Preempt { .. })).collect();
    assert!(
        preempted.iter().all(|&(_, at)| at > 799_000.0),
        "{:#?}",
        r.decision_log
    );
    assert!(starts_of(&r, &fleet, "p")[0].0 > 799_000.0);
}

/// FIFO holds no room for a job its team's cap keeps waiting: a job behind it that fits starts.
#[test]
fn fifo_reserves_nothing_for_a_job_its_cap_holds_back() {
    let fleet = small_fleet(
        &[("c", "H100-SXM", 2, 8), ("o", "H100-SXM", 1, 8)],
        &[
            (
                "a",
                "quotas = [{ cluster = \"c\", accelerators = 0, borrowing_limit = 8 }]",
            ),
            ("b", ""),
        ],
    );
    let jobs = trace_jobs(
        "id,submit_s,accelerators,duration_s,tenant,clusters\n\
         a1,0,8,100000,a,c\n\
         a2,1,8,1000,a,c\n\
         b1,2,8,5000,b,c\n",
    );
    for policy in Policy::ALL {
        let r = simulated(&fleet, jobs.clone(), policy);
        assert_eq!(starts_of(&r, &fleet, "b1")[0].0, 2.0, "{policy:?}");
    }
}

/// Replicas are reclaimed for a gang only on the nodes that make its room: none of those
/// picked on the way whose node would stay busy.
#[test]
fn only_the_replicas_that_make_room_are_reclaimed() {
    let fleet = small_fleet(
        &[("c", "H100-SXM", 3, 8)],
        &[
            ("a", "quotas = [{ cluster = \"c\", accelerators = 8 }]"),
            ("b", ""),
            ("c", "quotas = [{ cluster = \"c\", accelerators = 16 }]"),
        ],
    );
    // Node 0: s1 and c1; node 1: s2 and s3; node 2: c2. Only node 1 can be emptied.
    let jobs = trace_jobs(
        "id,submit_s,accelerators,duration_s,tenant,kind,replicas,clusters,work\n\
         s1,0,4,,b,inference,1..1@10,c,open\n\
         c1,1,4,86400,c,batch,,c,\n\
         s2,2,4,,b,inference,1..1@10,c,open\n\
         s3,3,4,,b,inference,1..1@10,c,open\n\
         c2,4,8,86400,c,batch,,c,\n\
         a1,10,8,1000,a,training,,c,\n",
    );
    for policy in [Policy::Fair, Policy::Switchyard] {
        let r = simulated(&fleet, jobs.clone(), policy);
        let mut removed: Vec<_> = decided(&r, |a| matches!(a, Action::RemoveReplica { .. }))
            .filter(|&(_, at)| at < 1000.0)
            .map(|(id, _)| id)
            .collect();
        removed.sort_unstable();
        assert_eq!(removed, ["s2", "s3"], "{policy:?}: {:#?}", r.decision_log);
        assert_eq!(starts_of(&r, &fleet, "a1")[0].0, 10.0, "{policy:?}");
    }
}

/// FIFO gives the reservation to the first job that waits for room: past a job its team's
/// cap keeps out, the next one holds room, and a long job behind it does not take that room.
#[test]
fn fifo_reserves_for_the_next_in_line_past_a_capped_job() {
    let fleet = small_fleet(
        &[("c", "H100-SXM", 4, 8)],
        &[
            (
                "a",
                "quotas = [{ cluster = \"c\", accelerators = 0, borrowing_limit = 16 }]",
            ),
            ("b", ""),
            ("z", ""),
        ],
    );
    // a1 and x1 hold 24 of 32; a2 is capped; b1 needs 16 and so waits for x1 (8 free now).
    let jobs = trace_jobs(
        "id,submit_s,accelerators,duration_s,tenant,clusters\n\
         a1,0,16,100000,a,c\n\
         x1,0,8,50000,z,c\n\
         a2,1,16,1000,a,c\n\
         b1,2,16,1000,b,c\n\
         z1,3,8,200000,z,c\n",
    );
    let r = simulated(&fleet, jobs, Policy::Fifo);
    let b1 = starts_of(&r, &fleet, "b1");
    assert!(
        (b1[0].0 - 50_000.0).abs() < 1.0,
        "{b1:?}: {:#?}",
        r.decision_log
    );
}

/// A starving job that its team's services keep out for good (their fewest replicas hold
/// part of the team's cap, so no run ending lets it start) holds no room: another team's job
/// starts rather than wait behind a reservation that would never be used.
#[test]
fn a_job_its_teams_services_keep_out_holds_no_room() {
    let fleet = small_fleet(
        &[("c", "H100-SXM", 4, 8)],
        &[
            ("t", "quotas = [{ accelerators = 16, borrowing_limit = 8 }]"),
            ("o", ""),
        ],
    );
    // s holds 8 of t's cap of 24 for good: big (24) can never start. o1 keeps 8 busy until
    // 1,000,000 s, so a reservation for big would wait for o1 and hold 16 free ones; x (16,
    // 400,000 s) arrives after big starves (a week) and would end after that.
    let jobs = trace_jobs(
        "id,submit_s,accelerators,duration_s,tenant,kind,replicas,work\n\
         s,0,8,,t,inference,1..1@10,open\n\
         o1,0,8,1000000,o,training,,\n\
         big,1,24,1000,t,training,,\n\
         x,700000,16,400000,o,training,,\n",
    );
    let r = simulated(&fleet, jobs, Policy::Switchyard);
    assert_eq!(
        starts_of(&r, &fleet, "x")[0].0,
        700_000.0,
        "{:#?}",
        r.decision_log
    );
    assert!(starts_of(&r, &fleet, "big").is_empty());
    assert_eq!(r.unfinished, 1);
    assert_eq!(r.unfinished_examples.len(), 1);
    assert_eq!(r.unfinished_examples[0].id, "big");
    assert!(
        r.unfinished_examples[0].why.contains("quota cap"),
        "{:?}",
        r.unfinished_examples
    );
}

/// A starving job under `switchyard` holds room where it can start: not on a cluster its
/// team's cap keeps it out of while another cluster it accepts will have room.
#[test]
fn a_starving_job_reserves_where_its_cap_lets_it_start() {
    let fleet = small_fleet(
        &[("a", "H100-SXM", 2, 8), ("b", "H100-SXM", 2, 8)],
        &[
            (
                "t",
                "quotas = [{ cluster = \"a\", accelerators = 0, borrowing_limit = 8 }]",
            ),
            ("o", ""),
            ("u", ""),
        ],
    );
    // t1 holds t's cap on a (8 of a's 16 free besides); o1 and o2 (of a higher priority: they
    // do not yield) fill b until 900,000 s. j waits for b, starves after a week, and must not
    // hold a's free half, which x (of o, which uses more than t, so that j is tried first in
    // a pass) then takes.
    let jobs = trace_jobs(
        "id,submit_s,accelerators,duration_s,tenant,priority,clusters\n\
         t1,0,8,10000000,t,0,a\n\
         o1,0,8,900000,o,10,b\n\
         o2,0,8,900000,o,10,b\n\
         j,1,8,1000,t,0,\n\
         x,700000,8,100,o,0,a\n",
    );
    let r = simulated(&fleet, jobs, Policy::Switchyard);
    assert_eq!(
        starts_of(&r, &fleet, "x")[0].0,
        700_000.0,
        "{:#?}",
        r.decision_log
    );
    let j = starts_of(&r, &fleet, "j");
    assert_eq!(j[0].1, "b", "{:#?}", r.decision_log);
    assert!((j[0].0 - 900_000.0).abs() < 1.0, "{j:?}");
}
