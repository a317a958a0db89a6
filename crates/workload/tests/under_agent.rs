//! The example workload run by node agents, end to end but without a server: two agents (in
//! threads, over the in-memory control plane) run a 4-rank gang; one node is killed mid-run;
//! the test plays the control plane's part (detect the failure, stop the gang, place attempt 2 on
//! the surviving node); the run resumes from its checkpoint and ends with the same model as an
//! uninterrupted run.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use switchyard_agent::control::MemoryState;
use switchyard_agent::gang::{self, GangOutcome, GangSpec, NodeSlot};
use switchyard_agent::hardware::{DiscoverOptions, discover};
use switchyard_agent::protocol::{ExitInfo, ProcessState};
use switchyard_agent::{Agent, AgentConfig, Assignment, MemoryControlPlane, RestartPolicy};

const TIMEOUT: Duration = Duration::from_secs(180);
const STEPS: u64 = 60;

/// An agent running in a thread; stopped (its processes killed) when dropped.
struct Node {
    name: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Node {
    fn start(cp: &MemoryControlPlane, name: &str) -> Node {
        let mut node = discover(&DiscoverOptions {
            declared_accelerators: Some(4),
            cluster: Some("local".into()),
            address: Some("127.0.0.1".into()),
        });
        node.hostname = name.to_string();
        let config = AgentConfig {
            poll_interval: Duration::from_millis(20),
            shutdown_grace: Duration::ZERO,
            ..AgentConfig::default()
        };
        let mut agent = Agent::new(cp.clone(), node, config);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            agent
                .run(&flag)
                .expect("the in-memory control plane registers every node");
        });
        Node {
            name: name.to_string(),
            stop,
            thread: Some(thread),
        }
    }

    fn kill(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn node_id(cp: &MemoryControlPlane, name: &str) -> String {
    wait_for(&format!("{name} to register"), || {
        cp.state()
            .nodes
            .iter()
            .find(|(_, n)| n.hostname == name)
            .map(|(id, _)| id.clone())
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("ephemeral port")
}

struct Job<'a> {
    id: &'a str,
    dir: &'a Path,
    sleep_ms: u64,
}

impl Job<'_> {
    /// Attempt `attempt` of this job as the control plane would make it: a gang spec placed
    /// over the given nodes' free accelerators.
    fn place(&self, attempt: u32, nodes: &[NodeSlot]) -> BTreeMap<String, Vec<Assignment>> {
        let spec = GangSpec {
            job_id: self.id.to_string(),
            attempt,
            world_size: 4,
            command: vec![
                env!("CARGO_BIN_EXE_switchyard-workload").to_string(),
                "--steps".into(),
                STEPS.to_string(),
                "--checkpoint-every".into(),
                "5".into(),
                "--step-sleep-ms".into(),
                self.sleep_ms.to_string(),
                "--seed".into(),
                "77".into(),
                "--output".into(),
                self.dir.join("model.txt").to_string_lossy().into_owned(),
            ],
            env: BTreeMap::new(),
            checkpoint_dir: Some(self.dir.join("ckpt").to_string_lossy().into_owned()),
            working_dir: None,
            // A free port rather than gang::master_port's range: tests run side by side.
            master_port: free_port(),
            restart: RestartPolicy::Never,
            stop_grace_ms: 2000,
        };
        gang::place(&spec, nodes).expect("the gang fits")
    }

    fn outcome(&self, cp: &MemoryControlPlane, attempt: u32) -> GangOutcome {
        let statuses: Vec<_> = cp.state().statuses.values().cloned().collect();
        gang::outcome(self.id, attempt, 4, &statuses)
    }
}

fn slot(cp: &MemoryControlPlane, node_id: &str, accelerators: &[u32]) -> NodeSlot {
    NodeSlot {
        node_id: node_id.to_string(),
        address: cp.state().nodes[node_id]
            .address
            .clone()
            .expect("test nodes have an address"),
        accelerators: accelerators.to_vec(),
    }
}

fn set_all(cp: &MemoryControlPlane, placed: BTreeMap<String, Vec<Assignment>>) {
    for (node, list) in placed {
        cp.set_desired(&node, list);
    }
}

fn exit_of(s: &MemoryState, assignment_id: &str) -> Option<ExitInfo> {
    s.statuses
        .values()
        .find(|st| st.assignment_id == assignment_id)
        .and_then(|st| match &st.state {
            ProcessState::Exited(info) => Some(info.clone()),
            _ => None,
        })
}

fn logs_of(cp: &MemoryControlPlane, prefix: &str) -> String {
    cp.state()
        .logs
        .iter()
        .filter(|l| l.assignment_id.starts_with(prefix))
        .map(|l| format!("{}: {}\n", l.assignment_id, l.line))
        .collect()
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sywl-agent-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

#[test]
fn a_gang_survives_the_loss_of_a_node_with_the_uninterrupted_model() {
    let cp = MemoryControlPlane::new();
    let mut a = Node::start(&cp, "node-a");
    let mut b = Node::start(&cp, "node-b");
    let (ida, idb) = (node_id(&cp, &a.name), node_id(&cp, &b.name));

    // Reference: an uninterrupted run, all four ranks on node-a.
    let ref_dir = scratch("reference");
    let reference = Job {
        id: "reference",
        dir: &ref_dir,
        sleep_ms: 0,
    };
    set_all(&cp, reference.place(1, &[slot(&cp, &ida, &[0, 1, 2, 3])]));
    wait_for("the reference run", || {
        (reference.outcome(&cp, 1) == GangOutcome::Succeeded).then_some(())
    });
    let expected = std::fs::read_to_string(ref_dir.join("model.txt")).expect("reference model");
    cp.set_desired(&ida, vec![]);

    // Attempt 1: ranks 0-1 on node-a, 2-3 on node-b. Slow steps while there is something to
    // interrupt, so a loaded machine cannot finish the run before the node is killed.
    let dir = scratch("gang");
    let mut job = Job {
        id: "train",
        dir: &dir,
        sleep_ms: 150,
    };
    let placed = job.place(1, &[slot(&cp, &ida, &[0, 1]), slot(&cp, &idb, &[0, 1])]);
    assert_eq!(
        placed[&idb].iter().map(|x| x.rank).collect::<Vec<_>>(),
        vec![2, 3]
    );
    set_all(&cp, placed);
    wait_for("a checkpoint at step 10", || {
        logs_of(&cp, "train/attempt-1/rank-0")
            .contains("checkpoint step 10 ")
            .then_some(())
    });

    // node-b dies: its agent stops and kills its processes.
    b.kill();

    // The control plane's part: a rank failed (or its node went silent), so the gang is
    // stopped and placed again, on the surviving node, as attempt 2.
    let failure = wait_for("attempt 1 to fail", || match job.outcome(&cp, 1) {
        GangOutcome::Failed { reason, .. } => Some(reason),
        _ => None,
    });
    assert!(failure.contains("rank"), "{failure}");
    cp.set_desired(&idb, vec![]);
    cp.set_desired(&ida, vec![]);
    wait_for("attempt 1 to be gone from node-a", || {
        let s = cp.state();
        (0..2)
            .all(|r| exit_of(&s, &gang::assignment_id("train", 1, r)).is_some())
            .then_some(())
    });
    assert!(
        !dir.join("model.txt").exists(),
        "attempt 1 must not have finished"
    );

    job.sleep_ms = 0;
    set_all(&cp, job.place(2, &[slot(&cp, &ida, &[0, 1, 2, 3])]));
    wait_for("attempt 2 to finish", || {
        (job.outcome(&cp, 2) == GangOutcome::Succeeded).then_some(())
    });

    let log = logs_of(&cp, "train/attempt-2/rank-0");
    assert!(log.contains("resuming from checkpoint step"), "{log}");
    let got = std::fs::read_to_string(dir.join("model.txt")).expect("resumed model");
    assert_eq!(got, expected, "model after losing a node differs");

    a.kill();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&ref_dir);
}

fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}

#[test]
fn a_replica_that_dies_is_restarted_by_its_agent_and_serves_again() {
    let cp = MemoryControlPlane::new();
    let _node = Node::start(&cp, "node-s");
    let id = node_id(&cp, "node-s");
    let dir = scratch("serve");
    std::fs::write(
        dir.join("model.txt"),
        "w0 3ff0000000000000 1e0\nw1 4000000000000000 2e0\nhash 0000000000000001\n",
    )
    .expect("model file");
    let port = free_port();
    let replica = Assignment {
        id: "svc/replica-0".into(),
        job_id: "svc".into(),
        attempt: 1,
        rank: 0,
        world_size: 1,
        local_rank: 0,
        master_addr: "127.0.0.1".into(),
        master_port: 0,
        command: vec![
            env!("CARGO_BIN_EXE_switchyard-workload").to_string(),
            "--serve".into(),
            format!("127.0.0.1:{port}"),
            "--model".into(),
            dir.join("model.txt").to_string_lossy().into_owned(),
        ],
        env: BTreeMap::new(),
        accelerators: vec![],
        checkpoint_dir: None,
        working_dir: None,
        restart: RestartPolicy::Always,
        stop_grace_ms: 2000,
    };
    cp.set_desired(&id, vec![replica]);
    let predict = || http_get(port, "/predict?x=1,1");
    let body = wait_for("the replica to serve", predict);
    assert!(body.contains("\"y\":3e0"), "{body}");

    let pid = wait_for("the replica's pid", || {
        cp.state().statuses.values().find_map(|st| match st.state {
            ProcessState::Running { pid } => Some(pid),
            _ => None,
        })
    });
    // The replica crashes.
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    wait_for("the restart to be reported", || {
        cp.state()
            .statuses
            .values()
            .any(|st| st.restarts >= 1 && matches!(st.state, ProcessState::Running { .. }))
            .then_some(())
    });
    let body = wait_for("the restarted replica to serve", predict);
    assert!(body.contains("\"y\":3e0"), "{body}");
    let _ = std::fs::remove_dir_all(&dir);
}
