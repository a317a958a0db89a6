//! Harness for end-to-end tests of agent-run clusters: a real `switchyard server --agents`,
//! real `switchyard agent` processes, and gang runs of the example workload
//! (`switchyard workload`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

#[path = "../server_common/mod.rs"]
pub mod server_common;

pub use server_common::{BIN, Server, call, wait_for};

pub const STEPS: u64 = 200;
pub const CHECKPOINT_EVERY: u64 = 10;
pub const SEED: u64 = 11;

/// A fleet with one agent-run cluster `local` of `nodes` nodes × `per_node` accelerators.
pub fn fleet_file(dir: &Path, nodes: u32, per_node: u32) -> PathBuf {
    let text = switchyard_core::fleet::local_fleet_toml("agents-test", nodes, per_node, "");
    let path = dir.join("fleet.toml");
    std::fs::write(&path, text).expect("write the fleet");
    path
}

/// A fresh scratch directory.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A server with agents on (heartbeats every 300 ms, lost after 10 missed: 3 s, so an agent
/// starved of the CPU for a moment on a loaded 2-core machine is not taken for a dead one).
pub struct AgentServer {
    pub server: Server,
    pub tenant_token: String,
    pub agent_token: String,
    pub checkpoints: PathBuf,
}

impl AgentServer {
    pub fn start(dir: &Path, fleet: &Path, listen: &str) -> AgentServer {
        AgentServer::start_with_deadline(dir, fleet, listen, "300ms", 10)
    }

    /// A server whose agents heartbeat every `heartbeat` and are lost after `lost_after`
    /// missed heartbeats.
    pub fn start_with_deadline(
        dir: &Path,
        fleet: &Path,
        listen: &str,
        heartbeat: &str,
        lost_after: u32,
    ) -> AgentServer {
        let db = format!("sqlite://{}", dir.join("switchyard.db").display());
        let checkpoints = dir.join("checkpoints");
        let tenant_token = server_common::token(&db, "research", false);
        let agent_token = agent_token(&db);
        let server = Server::start_on(
            &db,
            listen,
            &server_args(fleet, &checkpoints, heartbeat, lost_after)
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
        // Agents are served by the scheduling leader only; wait for it to lead.
        wait_for(30, "the server to lead", || {
            (server.role() == "leader").then_some(())
        });
        AgentServer {
            server,
            tenant_token,
            agent_token,
            checkpoints,
        }
    }

    pub fn url(&self) -> &str {
        &self.server.url
    }

    /// Submits a gang run of the example workload; its id.
    pub fn submit_training(&self, ranks: u32, step_sleep_ms: u64, max_retries: u32) -> String {
        let mut argv = vec![BIN.to_owned()];
        argv.extend(workload_args(step_sleep_ms));
        self.submit(&json!({
            "kind": "training",
            "accelerators": ranks,
            "duration_s": 30.0,
            "max_retries": max_retries,
            "command": {"argv": argv},
        }))
    }

    /// Submits a job (its JSON body); its id.
    pub fn submit(&self, body: &Value) -> String {
        let (status, job) = call(
            "POST",
            &format!("{}/v1/jobs", self.url()),
            Some(&self.tenant_token),
            Some(&body.to_string()),
        );
        assert_eq!(status, 201, "{job}");
        job["id"].as_str().expect("job id").to_owned()
    }

    pub fn job(&self, id: &str) -> Value {
        call(
            "GET",
            &format!("{}/v1/jobs/{id}", self.url()),
            Some(&self.tenant_token),
            None,
        )
        .1
    }

    pub fn events(&self, id: &str) -> Vec<Value> {
        let (_, v) = call(
            "GET",
            &format!("{}/v1/jobs/{id}/events", self.url()),
            Some(&self.tenant_token),
            None,
        );
        v["events"].as_array().cloned().unwrap_or_default()
    }

    /// Every stored output line of the job (all pages).
    pub fn logs(&self, id: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let (status, page) = call(
                "GET",
                &format!("{}/v1/jobs/{id}/logs?after={after}", self.url()),
                Some(&self.tenant_token),
                None,
            );
            assert_eq!(status, 200, "{page}");
            let lines = page["lines"].as_array().cloned().unwrap_or_default();
            out.extend(lines);
            match page["next"].as_i64() {
                Some(n) => after = n,
                None => return out,
            }
        }
    }

    pub fn nodes(&self) -> Vec<Value> {
        let (status, v) = call(
            "GET",
            &format!("{}/v1/agent/nodes", self.url()),
            Some(&self.agent_token),
            None,
        );
        assert_eq!(status, 200, "{v}");
        v.as_array().cloned().unwrap_or_default()
    }

    /// Starts `n` agents on this machine (`node-1`…, 2 accelerators each, logs in `dir`) and
    /// waits for them to be ready.
    pub fn start_local_agents(&self, dir: &Path, n: u32) -> Vec<AgentProcess> {
        let agents = (1..=n)
            .map(|i| {
                let name = format!("node-{i}");
                start_agent(
                    &[],
                    self.url(),
                    &self.agent_token,
                    &name,
                    "127.0.0.1",
                    2,
                    &dir.join(format!("{name}.log")),
                )
            })
            .collect();
        self.wait_ready(n as usize);
        agents
    }

    /// Waits for `n` ready nodes.
    pub fn wait_ready(&self, n: usize) {
        wait_for(60, &format!("{n} ready nodes"), || {
            (self
                .nodes()
                .iter()
                .filter(|v| v["state"] == "ready")
                .count()
                == n)
                .then_some(())
        });
    }

    /// The highest training step rank 0 has logged.
    pub fn step(&self, id: &str) -> u64 {
        self.logs(id)
            .iter()
            .filter_map(|l| {
                let line = l["line"].as_str()?;
                let rest = line.split("] step ").nth(1)?;
                rest.split('/').next()?.parse::<u64>().ok()
            })
            .max()
            .unwrap_or(0)
    }

    /// The final model the run wrote (rank 0, `CHECKPOINT_DIR/final-model.txt`).
    pub fn final_model(&self, id: &str) -> String {
        std::fs::read_to_string(self.checkpoints.join(id).join("final-model.txt"))
            .expect("the run wrote its final model")
    }
}

pub fn agent_token(db: &str) -> String {
    let out = Command::new(BIN)
        .args(["token", "create", "--db", db, "--agent"])
        .output()
        .expect("switchyard token create --agent");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A server for an agent-run fleet (heartbeats every 300 ms, lost after 10 missed).
pub fn start_server(db: &str, fleet: &Path, listen: &str, checkpoints: &Path) -> Server {
    let args = server_args(fleet, checkpoints, "300ms", 10);
    Server::start_on(
        db,
        listen,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
}

/// `switchyard server` flags for an agent-run fleet.
pub fn server_args(
    fleet: &Path,
    checkpoints: &Path,
    heartbeat: &str,
    lost_after: u32,
) -> Vec<String> {
    vec![
        "--fleet".into(),
        fleet.to_string_lossy().into_owned(),
        "--agents".into(),
        "--heartbeat-interval".into(),
        heartbeat.into(),
        "--lost-after".into(),
        lost_after.to_string(),
        "--checkpoint-dir".into(),
        checkpoints.to_string_lossy().into_owned(),
    ]
}

/// The example workload's flags for these tests.
pub fn workload_args(step_sleep_ms: u64) -> Vec<String> {
    [
        "workload",
        "--steps",
        &STEPS.to_string(),
        "--checkpoint-every",
        &CHECKPOINT_EVERY.to_string(),
        "--step-sleep-ms",
        &step_sleep_ms.to_string(),
        "--seed",
        &SEED.to_string(),
        "--log-every",
        "5",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

/// An agent process; SIGKILLed when dropped.
pub struct AgentProcess {
    pub name: String,
    pub child: Child,
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `switchyard agent` (through `prefix`, e.g. `ip netns exec NS`, when given).
pub fn start_agent(
    prefix: &[&str],
    server_url: &str,
    token: &str,
    name: &str,
    address: &str,
    accelerators: u32,
    log: &Path,
) -> AgentProcess {
    let out = std::fs::File::create(log).expect("agent log");
    let err = out.try_clone().expect("agent log");
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(BIN);
            c
        }
        None => Command::new(BIN),
    };
    let child = cmd
        .args(["agent", "--server", server_url, "--cluster", "local"])
        .args(["--accelerators", &accelerators.to_string()])
        .args(["--hostname", name, "--address", address])
        .env("SWITCHYARD_TOKEN", token)
        // The agent's node lock goes beside its log, not into the machine's temp dir for good.
        .env("TMPDIR", log.parent().unwrap_or(Path::new(".")))
        .env("SWITCHYARD_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start an agent");
    AgentProcess {
        name: name.to_owned(),
        child,
    }
}

/// The final model of an uninterrupted 4-rank run of the same workload (ranks as local
/// processes, no sleeping).
pub fn reference_model(dir: &Path, ranks: u32) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let out = dir.join("reference-model.txt");
    let children: Vec<Child> = (0..ranks)
        .map(|rank| {
            Command::new(BIN)
                .args(workload_args(0))
                .args(["--output", &out.to_string_lossy()])
                .env("RANK", rank.to_string())
                .env("WORLD_SIZE", ranks.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string())
                .env("SWITCHYARD_JOB_ID", "reference")
                .env_remove("SWITCHYARD_CHECKPOINT_DIR")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("a reference rank")
        })
        .collect();
    for mut c in children {
        let status = c.wait().expect("reference rank");
        assert!(status.success(), "a reference rank failed: {status}");
    }
    std::fs::read_to_string(&out).expect("the reference model")
}

/// Waits for the job to reach a final state (up to `secs`); its record.
pub fn wait_final(s: &AgentServer, id: &str, secs: u64) -> Value {
    wait_for(secs, &format!("job {id} to end"), || {
        let j = s.job(id);
        matches!(
            j["state"].as_str(),
            Some("done" | "failed" | "cancelled" | "rejected")
        )
        .then_some(j)
    })
}

pub const POLL: Duration = Duration::from_millis(200);
