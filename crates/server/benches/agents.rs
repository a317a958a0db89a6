//! The agent hub at the scale of Colossus 1: 12,544 nodes × 8 accelerators registered, one
//! gang of 100,352 ranks placed on all of them. What each agent call costs the server then
//! (every node syncs every heartbeat interval: 12,544 nodes at 2 s is 6,272 calls of each kind
//! per second), what placing and stopping the whole gang costs the scheduling leader, and what
//! a new leader's takeover of the running gang costs (rebuilding and checking every assignment).
//!
//! `cargo bench -p switchyard-server --bench agents`

use std::sync::Arc;

use switchyard_agent::protocol::{
    AcceleratorInfo, NodeInfo, PROTOCOL_VERSION, ProcessState, ProcessStatus, StatusReport,
};
use switchyard_server::agents::{AgentBackend, AgentHub, AgentSettings};
use switchyard_server::api::JobCommand;
use switchyard_server::backend::{Backend, Command, NodeShare, Observed};

const NODES: u32 = 12_544;
const PER_NODE: u32 = 8;

fn main() {
    divan::main();
}

fn info(i: u32) -> NodeInfo {
    NodeInfo {
        hostname: format!("node-{i:05}"),
        cluster: Some("local".into()),
        cpus: 224,
        memory_bytes: 2 << 40,
        accelerators: (0..PER_NODE)
            .map(|index| AcceleratorInfo {
                index,
                name: "H100".into(),
                memory_mib: Some(81_559),
                uuid: None,
            })
            .collect(),
        address: Some(format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255)),
        orphan_stop_ms: None,
        protocol_version: PROTOCOL_VERSION,
        agent_version: "bench".into(),
    }
}

fn launch(generation: u32) -> Command {
    Command::Launch {
        job: "pretrain".into(),
        generation,
        attempt: generation,
        cluster: "local".into(),
        accelerators: NODES * PER_NODE,
        nodes: (0..NODES)
            .map(|node| NodeShare {
                node,
                accelerators: PER_NODE,
            })
            .collect(),
        expected_end_ms: i64::MAX,
        recovered: false,
        ran_before: None,
        command: Some(Arc::new(JobCommand {
            argv: vec!["torchrun".into(), "train.py".into()],
            env: Default::default(),
            working_dir: None,
        })),
    }
}

/// A hub with every node registered and the 100,352-rank gang placed.
fn fleet_with_gang() -> (AgentHub, AgentBackend) {
    let fleet = switchyard_core::Fleet::from_toml(
        &switchyard_core::fleet::local_fleet_toml("bench", NODES, PER_NODE, ""),
        "bench.toml",
    )
    .expect("fleet");
    let hub = AgentHub::new(&fleet, AgentSettings::default());
    for i in 0..NODES {
        let node = info(i);
        let (cluster, _) = hub.resolve(&node, None).expect("resolves");
        hub.admit(&node, None, &cluster, &format!("n-{i:05}"), i, 0)
            .expect("admitted");
    }
    let mut backend = AgentBackend::new(hub.clone());
    backend.poll(0);
    backend.act(vec![launch(1)]);
    (hub, backend)
}

/// A new leader (a fresh hub, every node registered again and reporting its 8 ranks running)
/// with the recovered launch of the gang to take over.
fn new_leader_with_running_gang() -> (AgentHub, AgentBackend, Command) {
    let (_, mut before) = fleet_with_gang();
    let ran_on = before
        .poll(0)
        .into_iter()
        .find_map(|o| match o {
            Observed::RanOn { ran_on, .. } => Some(ran_on),
            _ => None,
        })
        .expect("where the gang runs");
    let fleet = switchyard_core::Fleet::from_toml(
        &switchyard_core::fleet::local_fleet_toml("bench", NODES, PER_NODE, ""),
        "bench.toml",
    )
    .expect("fleet");
    let hub = AgentHub::new(&fleet, AgentSettings::default());
    let mut backend = AgentBackend::new(hub.clone());
    backend.reset();
    backend.runs_on_record(&[("pretrain".into(), ran_on.clone())]);
    for i in 0..NODES {
        let node = info(i);
        let id = format!("n-{i:05}");
        let (cluster, _) = hub.resolve(&node, None).expect("resolves");
        hub.admit(&node, None, &cluster, &id, i, 0)
            .expect("admitted");
        let processes = (i * PER_NODE..(i + 1) * PER_NODE)
            .map(|rank| ProcessStatus {
                assignment_id: format!("pretrain/attempt-1/rank-{rank}"),
                state: ProcessState::Running { pid: 100 + rank },
                restarts: 0,
                last_exit: None,
            })
            .collect();
        hub.status(&id, StatusReport { processes }, 0)
            .expect("reports");
    }
    assert!(!backend.settling(0), "every node has reported");
    backend.poll(0);
    let Command::Launch {
        job,
        cluster,
        accelerators,
        nodes,
        expected_end_ms,
        command,
        ..
    } = launch(2)
    else {
        unreachable!()
    };
    let recovered = Command::Launch {
        job,
        generation: 1,
        attempt: 2,
        cluster,
        accelerators,
        nodes,
        expected_end_ms,
        command,
        recovered: true,
        ran_before: Some(ran_on),
    };
    (hub, backend, recovered)
}

/// A new leader taking over the running 100,352-rank gang: every rank's assignment built
/// again, checked against what its node reported and the stored digest, and handed out as is.
#[divan::bench(sample_count = 5)]
fn take_over_100k_ranks(bencher: divan::Bencher) {
    bencher
        .with_inputs(new_leader_with_running_gang)
        .bench_local_values(|(hub, mut backend, recovered)| {
            backend.act(vec![recovered]);
            let seen = backend.poll(0);
            assert!(
                seen.iter()
                    .any(|o| matches!(o, Observed::Continued { attempt: 1, .. })),
                "taken over"
            );
            (hub, backend)
        });
}

/// Placing the whole gang (100,352 assignments on 12,544 nodes) and stopping it.
#[divan::bench(sample_count = 10)]
fn launch_and_stop_100k_ranks(bencher: divan::Bencher) {
    let (_hub, mut backend) = fleet_with_gang();
    let mut generation = 1;
    bencher.bench_local(|| {
        generation += 1;
        backend.act(vec![
            Command::Stop {
                job: "pretrain".into(),
            },
            launch(generation),
        ]);
    });
}

/// One node fetching its desired set (8 ranks of the gang).
#[divan::bench]
fn assignments_of_one_node(bencher: divan::Bencher) {
    let (hub, _backend) = fleet_with_gang();
    bencher.bench_local(|| {
        hub.assignments("n-06000", 1)
            .expect("known")
            .assignments
            .len()
    });
}

/// One node reporting its 8 running ranks.
#[divan::bench]
fn status_report_of_one_node(bencher: divan::Bencher) {
    let (hub, _backend) = fleet_with_gang();
    let list = hub.assignments("n-06000", 1).expect("known").assignments;
    let report = StatusReport {
        processes: list
            .iter()
            .map(|a| ProcessStatus {
                assignment_id: a.id.clone(),
                state: ProcessState::Running { pid: 4242 },
                restarts: 0,
                last_exit: None,
            })
            .collect(),
    };
    bencher.bench_local(|| hub.status("n-06000", report.clone(), 2).expect("known"));
}

/// One node's heartbeat.
#[divan::bench]
fn heartbeat_of_one_node(bencher: divan::Bencher) {
    let (hub, _backend) = fleet_with_gang();
    bencher.bench_local(|| hub.heartbeat("n-06000", 3).expect("known"));
}

/// The leader's poll of the backend (lost-node check over all nodes, pending failures).
#[divan::bench]
fn poll_with_12544_nodes(bencher: divan::Bencher) {
    let (_hub, mut backend) = fleet_with_gang();
    bencher.bench_local(|| backend.poll(4).len());
}
