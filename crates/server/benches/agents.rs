//! The agent hub at the scale of Colossus 1: 12,544 nodes × 8 accelerators registered, one
//! gang of 100,352 ranks placed on all of them. What each agent call costs the server then
//! (every node syncs every heartbeat interval: 12,544 nodes at 2 s is 6,272 calls of each kind
//! per second), and what placing and stopping the whole gang costs the scheduling leader.
//!
//! `cargo bench -p switchyard-server --bench agents`

use std::sync::Arc;

use switchyard_agent::protocol::{
    AcceleratorInfo, NodeInfo, PROTOCOL_VERSION, ProcessState, ProcessStatus, StatusReport,
};
use switchyard_server::agents::{AgentBackend, AgentHub, AgentSettings};
use switchyard_server::api::JobCommand;
use switchyard_server::backend::{Backend, Command, NodeShare};

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
