//! The frontier-lab scenario and the synthetic generator: deterministic, fleet-aware, valid.

use std::collections::BTreeSet;

use switchyard_core::accelerator;
use switchyard_core::fleet::Fleet;
use switchyard_core::job::{JobKind, JobSpec, Work};
use switchyard_sim::trace::{
    LoadOptions, MODEL_PRESETS, TraceFormat, frontier_lab, parse, synthetic, write_canonical,
};

/// A small fleet whose team names match none of the scenario's roles.
const SMALL: &str = r#"
name = "small"

[[providers]]
name = "lab"
kind = "on_premises"
[[providers.contracts]]
accelerator = "V100"
on_demand_price = 1.0
[[providers.contracts]]
accelerator = "K80"
on_demand_price = 0.3

[[clusters]]
name = "v100s"
provider = "lab"
region = "here"
accelerator = "V100"
nodes = 16
accelerators_per_node = 8
capacity = "on_demand"
node_mtbf_hours = 5000.0
repair_hours = 12.0
[clusters.topology]
scale_up = { nodes = 1, gb_s = 150.0 }
cluster_gb_s = 12.5

[[clusters]]
name = "k80s"
provider = "lab"
region = "here"
accelerator = "K80"
nodes = 4
accelerators_per_node = 4
capacity = "on_demand"
node_mtbf_hours = 5000.0
repair_hours = 12.0
[clusters.topology]
scale_up = { nodes = 1, gb_s = 10.0 }
cluster_gb_s = 1.25

[[tenants]]
name = "uni"
weight = 1.0
[[tenants.teams]]
name = "alpha"
weight = 1.0
priority = 3
quotas = [{ accelerators = 64 }]
[[tenants.teams]]
name = "beta"
weight = 2.0
priority = 1
quotas = [{ accelerators = 64 }]
"#;

fn small() -> Fleet {
    Fleet::from_toml(SMALL, "small.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn team_names(fleet: &Fleet) -> BTreeSet<String> {
    fleet
        .tenants
        .iter()
        .flat_map(|o| o.teams.iter().map(|t| t.name.clone()))
        .collect()
}

fn check_valid(fleet: &Fleet, jobs: &[JobSpec]) {
    let teams = team_names(fleet);
    let largest = fleet
        .clusters
        .iter()
        .map(|c| c.accelerators())
        .max()
        .expect("clusters");
    let ids: BTreeSet<_> = jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids.len(), jobs.len(), "ids are unique");
    assert!(
        jobs.windows(2).all(|w| w[0].submit_s <= w[1].submit_s),
        "sorted by submit time"
    );
    for j in jobs {
        assert!(teams.contains(&j.tenant), "{}: tenant {}", j.id, j.tenant);
        let (_, team) = fleet.team(&j.tenant).expect("team");
        assert_eq!(j.priority, team.priority);
        assert!(
            j.accelerators >= 1 && u64::from(j.accelerators) <= largest,
            "{}",
            j.id
        );
        assert!(j.submit_s >= 0.0 && j.submit_s.is_finite());
        if let Some(m) = j.min_accelerators {
            assert!(m >= 1 && m <= j.accelerators);
        }
        for t in &j.accelerator_types {
            assert_eq!(accelerator::lookup(t).map(|a| a.name), Some(t.as_str()));
            let fits = fleet
                .clusters
                .iter()
                .any(|c| c.accelerator.name == t && c.accelerators() >= u64::from(j.accelerators));
            assert!(fits, "{} ({} x {t}) fits no cluster", j.id, j.accelerators);
        }
        match &j.work {
            Work::Duration {
                seconds,
                by_accelerator,
            } => {
                assert!(*seconds >= 1.0);
                for (a, s) in by_accelerator {
                    assert!(fleet.clusters.iter().any(|c| c.accelerator.name == a));
                    assert!(*s >= 1.0);
                }
            }
            Work::Amount { units, profile } => {
                assert!(*units > 0.0);
                assert!(MODEL_PRESETS.iter().any(|p| p.name == profile), "{profile}");
            }
            Work::Open => assert_eq!(j.kind, JobKind::Inference),
        }
        if j.kind == JobKind::Inference {
            let r = j.replicas.as_ref().expect("services have replicas");
            assert!(r.min >= 1 && r.min <= r.max);
            assert!(r.load.is_some());
        } else {
            assert!(j.replicas.is_none());
        }
    }
}

fn round_trip(jobs: &[JobSpec]) {
    let mut out = Vec::new();
    write_canonical(jobs, &mut out).expect("write");
    let text = String::from_utf8(out).expect("utf-8");
    let back = parse(
        &text,
        "gen.csv",
        TraceFormat::Canonical,
        &LoadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back.jobs, jobs);
}

#[test]
fn frontier_lab_on_the_default_fleet() {
    let fleet = Fleet::default_fleet();
    let jobs = frontier_lab(&fleet, 7);
    check_valid(&fleet, &jobs);
    assert_eq!(jobs, frontier_lab(&fleet, 7), "deterministic");
    assert_ne!(jobs, frontier_lab(&fleet, 8), "the seed matters");

    let giants: Vec<_> = jobs.iter().filter(|j| j.accelerators >= 16_384).collect();
    assert!(
        (2..=4).contains(&giants.len()),
        "{} giant runs",
        giants.len()
    );
    assert!(
        giants.iter().any(|j| j.accelerators >= 90_000),
        "a ~100k-accelerator run"
    );
    for g in &giants {
        assert_eq!(g.kind, JobKind::Training);
        assert_eq!(g.tenant, "pretraining");
        assert!(g.min_accelerators.is_some(), "elastic");
        assert_eq!(g.accelerator_types.len(), 1);
        // Tokens of a preset, or the fallback duration where the rate model cannot rate it.
        match &g.work {
            Work::Amount { units, .. } => assert!(*units > 1e12),
            Work::Duration {
                seconds,
                by_accelerator,
            } => {
                assert!((14.0 * 86_400.0..=28.0 * 86_400.0).contains(seconds));
                assert_eq!(
                    by_accelerator.keys().collect::<Vec<_>>(),
                    vec![&g.accelerator_types[0]]
                );
            }
            Work::Open => panic!("{} is open-ended", g.id),
        }
    }
    let research: Vec<_> = jobs.iter().filter(|j| j.tenant == "research").collect();
    assert!(research.len() > 500, "{} research jobs", research.len());
    assert!(
        research
            .iter()
            .all(|j| (8..=1024).contains(&j.accelerators))
    );
    let evals = jobs.iter().filter(|j| j.tenant == "evals").count();
    assert!(
        evals > 300
            && jobs
                .iter()
                .filter(|j| j.tenant == "evals")
                .all(|j| j.kind == JobKind::Batch)
    );
    assert!(jobs.iter().any(|j| j.tenant == "batch-inference"));
    let services: Vec<_> = jobs
        .iter()
        .filter(|j| j.kind == JobKind::Inference)
        .collect();
    assert_eq!(services.len(), 8);
    assert!(services.iter().all(|s| s.tenant == "serving"));
    // Load follows the day: the peak needs more replicas than the trough.
    for s in &services {
        let r = s.replicas.as_ref().expect("replicas");
        let l = r.load.expect("load");
        let peak = r.needed_at(l.peak_hour * 3600.0);
        let trough = r.needed_at((l.peak_hour + 12.0) * 3600.0);
        assert!(peak > trough, "{}: {peak} vs {trough}", s.id);
        assert!(peak <= r.max);
    }
    let max_submit = jobs.last().expect("jobs").submit_s;
    assert!(max_submit < 28.0 * 86_400.0);
    round_trip(&jobs);
}

#[test]
fn frontier_lab_on_a_small_fleet_with_other_team_names() {
    let fleet = small();
    let jobs = frontier_lab(&fleet, 1);
    check_valid(&fleet, &jobs);
    // No cluster has 16k accelerators: one "giant" run on the largest cluster.
    let pretrain: Vec<_> = jobs
        .iter()
        .filter(|j| j.id.starts_with("pretrain-"))
        .collect();
    assert_eq!(pretrain.len(), 1);
    assert_eq!(pretrain[0].accelerator_types, vec!["V100"]);
    assert!(pretrain[0].accelerators <= 128);
    round_trip(&jobs);
}

#[test]
fn synthetic_is_deterministic_valid_and_scales() {
    let fleet = Fleet::default_fleet();
    let jobs = synthetic(&fleet, 20_000, 3);
    assert_eq!(jobs.len(), 20_000);
    check_valid(&fleet, &jobs);
    assert_eq!(jobs, synthetic(&fleet, 20_000, 3));
    assert_ne!(jobs, synthetic(&fleet, 20_000, 4));
    // A prefix of a longer run is the shorter run.
    assert_eq!(synthetic(&fleet, 1_000, 3), jobs[..1_000]);
    assert!(synthetic(&fleet, 0, 3).is_empty());

    let small = small();
    let jobs = synthetic(&small, 5_000, 1);
    check_valid(&small, &jobs);
    assert!(jobs.iter().all(|j| j.accelerators <= 128));
    round_trip(&jobs[..500]);
}

#[test]
fn frontier_lab_on_a_tiny_fleet_runs_to_completion() {
    // Four single-accelerator nodes: every job fits, the services do not take the whole
    // fleet, and every finite job completes.
    let fleet = Fleet::from_toml(
        r#"
name = "tiny"
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
nodes = 4
accelerators_per_node = 1
capacity = "on_demand"
node_mtbf_hours = 1000.0
repair_hours = 4.0
[clusters.topology]
scale_up = { nodes = 1 }
[[tenants]]
name = "lab"
[[tenants.teams]]
name = "research"
[[tenants.teams]]
name = "serving"
"#,
        "tiny.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let jobs = frontier_lab(&fleet, 0);
    check_valid(&fleet, &jobs);
    let finite = jobs.iter().filter(|j| j.kind != JobKind::Inference).count() as u64;
    let r = switchyard_sim::simulate(
        &fleet,
        jobs,
        switchyard_core::ThroughputTable::new(),
        &switchyard_sim::SimOptions::default(),
        &mut |_| {},
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(finite > 0);
    assert_eq!((r.total.completed, r.unfinished), (finite, 0));
}

#[test]
fn frontier_lab_sizes_jobs_beside_what_a_teams_services_hold() {
    // One capped team plays every role: its services' fewest replicas hold 8 of its 24 for
    // good, so its other jobs are sized within the 16 left (a job of 24 could never start),
    // and every finite job completes.
    let fleet = one_cluster_of_4096_nodes(
        r#"
[[tenants]]
name = "org"
[[tenants.teams]]
name = "team1"
quotas = [{ accelerators = 16, borrowing_limit = 8 }]
"#,
    );
    let jobs = frontier_lab(&fleet, 0);
    check_valid(&fleet, &jobs);
    let floor: u32 = jobs
        .iter()
        .filter_map(|j| j.replicas.as_ref().map(|r| r.min * j.accelerators))
        .sum();
    assert_eq!(floor, 8);
    let finite: Vec<_> = jobs
        .iter()
        .filter(|j| j.kind != JobKind::Inference)
        .collect();
    assert!(
        finite.iter().all(|j| j.accelerators <= 16),
        "sized beside the services"
    );
    assert!(finite.iter().any(|j| j.accelerators == 16));
    let r = without_failures(&fleet, jobs.clone());
    assert_eq!(
        (r.total.completed, r.unfinished),
        (finite.len() as u64, 0),
        "{:?}",
        r.unfinished_examples
    );
}

#[test]
fn frontier_lab_counts_an_organisations_services_against_its_cap() {
    // The organisation's cap of 24 binds its two teams together. The serving team has no cap
    // of its own (a tenth of the fleet for its services' load): its services may hold at most
    // half of the organisation's, 8 at their most replicas, which leaves the research team 16.
    let fleet = one_cluster_of_4096_nodes(
        r#"
[[tenants]]
name = "org"
quotas = [{ accelerators = 16, borrowing_limit = 8 }]
[[tenants.teams]]
name = "serving"
[[tenants.teams]]
name = "research"
"#,
    );
    let jobs = frontier_lab(&fleet, 0);
    check_valid(&fleet, &jobs);
    let floor: u32 = jobs
        .iter()
        .filter_map(|j| j.replicas.as_ref().map(|r| r.min * j.accelerators))
        .sum();
    assert_eq!(floor, 8);
    let research: Vec<_> = jobs.iter().filter(|j| j.tenant == "research").collect();
    assert!(!research.is_empty());
    assert!(
        research.iter().all(|j| j.accelerators <= 16),
        "sized beside the organisation's services"
    );
    assert!(research.iter().any(|j| j.accelerators == 16));
    // However the services' load swings, every finite job starts and completes.
    let finite = jobs.iter().filter(|j| j.kind != JobKind::Inference).count() as u64;
    for seed in 0..3 {
        let r = without_failures(&fleet, frontier_lab(&fleet, seed));
        assert_eq!(r.unfinished, 0, "seed {seed}: {:?}", r.unfinished_examples);
        if seed == 0 {
            assert_eq!(r.total.completed, finite);
        }
    }
}

#[test]
fn frontier_lab_leaves_a_small_cluster_room_for_the_services_beside_its_gangs() {
    // A guarantee without a cap bounds nothing: the team's services hold 8 of the one
    // cluster's 32 for good, so no gang may ask for all 32 (it would wait forever).
    let fleet = Fleet::from_toml(
        r#"
[[providers]]
name = "acme"
kind = "cloud"
[[providers.contracts]]
accelerator = "H100"
on_demand_price = 4.0
[[clusters]]
name = "c1"
provider = "acme"
region = "us"
accelerator = "H100"
nodes = 4
capacity = "on_demand"
node_mtbf_hours = 1000.0
repair_hours = 24.0
[[tenants]]
name = "org"
[[tenants.teams]]
name = "t1"
quotas = [{ cluster = "c1", accelerators = 16 }]
"#,
        "small.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for seed in 0..8 {
        let jobs = frontier_lab(&fleet, seed);
        check_valid(&fleet, &jobs);
        let floor: u32 = jobs
            .iter()
            .filter_map(|j| j.replicas.as_ref().map(|r| r.min * j.accelerators))
            .sum();
        assert_eq!(floor, 8, "seed {seed}");
        assert!(
            jobs.iter()
                .filter(|j| j.kind != JobKind::Inference)
                .all(|j| j.accelerators <= 24),
            "seed {seed}: sized beside the services"
        );
        let r = without_failures(&fleet, jobs);
        assert_eq!(r.unfinished, 0, "seed {seed}: {:?}", r.unfinished_examples);
    }
}

/// One cluster of 4,096 nodes of 8 H100s with the `[[tenants]]` tables given.
fn one_cluster_of_4096_nodes(tenants: &str) -> Fleet {
    let text = format!(
        r#"
name = "one-cluster"
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
nodes = 4096
capacity = "on_demand"
node_mtbf_hours = 1000.0
repair_hours = 24.0
{tenants}"#
    );
    Fleet::from_toml(&text, "one-cluster.toml").unwrap_or_else(|e| panic!("{e}"))
}

/// `jobs` simulated on `fleet` with failures off: whether every job the scenario sized can
/// start, apart from luck with failures.
fn without_failures(fleet: &Fleet, jobs: Vec<JobSpec>) -> switchyard_sim::SimResult {
    switchyard_sim::simulate(
        fleet,
        jobs,
        switchyard_core::ThroughputTable::new(),
        &switchyard_sim::SimOptions {
            failures: false,
            ..switchyard_sim::SimOptions::default()
        },
        &mut |_| {},
    )
    .unwrap_or_else(|e| panic!("{e}"))
}
