//! Benchmark (docs/benchmarks.md, "Slurm"): N short jobs (`true`, one task each) submitted and
//! completed on this machine's Slurm, three ways in one run:
//!
//! 1. `sbatch` directly (the same arguments the backend uses), one process per job;
//! 2. through Switchyard's HTTP API, its scheduler and the Slurm backend;
//! 3. through Switchyard's API with the dry-run backend (no Slurm: the control plane alone);
//! 4. through Switchyard's API on its own node agents (one agent on this machine holding as many
//!    "accelerators" as Slurm's node runs jobs at once, so both run the same number at a time).
//!
//! Run: `cargo run -p switchyard-slurm --example slurm_bench -- [--jobs N] [--per-node P]
//! [--without-slurm] [--without-agents]`
//! (needs a running Slurm: crates/slurm/scripts/start-local-slurm.sh). `--per-node` is how many
//! "accelerators" the fleet says the node has (the scheduler runs at most that many at once).

#[path = "../tests/common/server.rs"]
mod server;

use std::time::{Duration, Instant};

use serde_json::json;
use server::{Server, local_fleet, slurm_usable};
use switchyard_slurm::{CliClient, SlurmClient, Submission};

fn arg(name: &str, default: u32) -> u32 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Row {
    how: String,
    submit_s: f64,
    total_s: f64,
    jobs: u32,
}

fn direct(jobs: u32) -> Row {
    let client = CliClient::default();
    let tag = format!("bench-direct-{}", std::process::id());
    let t0 = Instant::now();
    let mut ids = Vec::with_capacity(jobs as usize);
    for i in 0..jobs {
        let s = Submission {
            job_name: format!("bench-{i}"),
            comment: tag.clone(),
            partition: "debug".into(),
            nodes: 1,
            ntasks_per_node: 1,
            stdout: "/dev/null".into(),
            stderr: "/dev/null".into(),
            command: "true".into(),
            ..Submission::default()
        };
        ids.push(client.submit(&s).expect("sbatch accepts the job"));
    }
    let submit_s = t0.elapsed().as_secs_f64();
    // Slurm forgets ended jobs after MinJobAge (300 s): count each one as it is seen ended.
    let mut ended = std::collections::HashSet::new();
    while ended.len() < ids.len() {
        for j in client.jobs().expect("squeue answers") {
            if j.comment.as_deref() == Some(tag.as_str()) && j.state.is_terminal() {
                ended.insert(j.id);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Row {
        how: "`sbatch` directly".into(),
        submit_s,
        total_s: t0.elapsed().as_secs_f64(),
        jobs,
    }
}

/// Waits until the API lists `jobs` jobs as done (every page of `state=done`).
fn wait_all_done(jobs: u32, get: impl Fn(&str) -> serde_json::Value) {
    loop {
        let mut done = 0;
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(a) => format!("/v1/jobs?state=done&limit=1000&after={a}"),
                None => "/v1/jobs?state=done&limit=1000".to_owned(),
            };
            let page = get(&path);
            done += page["jobs"].as_array().map_or(0, Vec::len);
            match page["next"].as_str() {
                Some(n) => after = Some(n.to_owned()),
                None => break,
            }
        }
        if done >= jobs as usize {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn through_switchyard(jobs: u32, per_node: u32, slurm: bool) -> Row {
    let tag = format!("bench-sy-{}", std::process::id());
    let server = Server::start_with(&tag, local_fleet(per_node, Some("true")), slurm);
    let t0 = Instant::now();
    for i in 0..jobs {
        server.post(
            "/v1/jobs",
            json!({ "name": format!("bench-{i}"), "kind": "batch", "accelerators": 1, "duration_s": if slurm { 1.0 } else { 0.001 } }),
        );
    }
    let submit_s = t0.elapsed().as_secs_f64();
    wait_all_done(jobs, |path| server.get(path));
    Row {
        how: if slurm {
            format!("Switchyard API → scheduler → Slurm backend (fleet: {per_node} per node)")
        } else {
            "Switchyard API → scheduler → dry-run backend (no Slurm)".into()
        },
        submit_s,
        total_s: t0.elapsed().as_secs_f64(),
        jobs,
    }
}

/// Switchyard on its own agents: a server with `--agents` (heartbeat `interval`) and one
/// in-process agent with `per_node` declared accelerators; each job runs `true`.
fn through_agents(jobs: u32, per_node: u32, interval: Duration) -> Row {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use switchyard_agent::hardware::{DiscoverOptions, discover};
    use switchyard_store::StoreWrite as _;

    let dir = std::env::temp_dir().join(format!("switchyard-agents-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let db = format!("sqlite://{}", dir.join("bench.db").display());
    let fleet_text = switchyard_core::fleet::local_fleet_toml("agents-bench", 1, per_node, "");
    let fleet = switchyard_core::Fleet::from_toml(&fleet_text, "bench").expect("fleet");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let token = rt.block_on(async {
        let store = switchyard_store::connect(&db).await.expect("store");
        let token = switchyard_store::new_token().expect("token");
        store
            .insert_token(&switchyard_store::hash_token(&token), "research", true, 0)
            .await
            .expect("insert token");
        token
    });
    let mut config = switchyard_server::ServerConfig::new(fleet, db, "127.0.0.1:0");
    config.agents = Some(switchyard_server::agents::AgentSettings {
        heartbeat_interval: interval,
        checkpoint_root: dir.join("ckpt"),
        ..Default::default()
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let _ = rt.block_on(switchyard_server::serve(config, move |a| {
            let _ = tx.send(a);
        }));
    });
    let url = format!("http://{}", rx.recv().expect("the server listens"));
    let stop = Arc::new(AtomicBool::new(false));
    {
        let (url, token, stop) = (url.clone(), token.clone(), stop.clone());
        std::thread::spawn(move || {
            let node = discover(&DiscoverOptions {
                declared_accelerators: Some(per_node),
                cluster: Some("local".into()),
                address: Some("127.0.0.1".into()),
            });
            let control = switchyard_agent::http::HttpControlPlane::new(
                &url,
                &token,
                Duration::from_secs(10),
            )
            .expect("client");
            let mut agent = switchyard_agent::Agent::new(
                control,
                node,
                switchyard_agent::AgentConfig::default(),
            );
            if let Err(e) = agent.run(&stop) {
                eprintln!("agent stopped: {e}");
            }
        });
    }
    let http = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let call = |path: &str, body: Option<serde_json::Value>| -> serde_json::Value {
        let auth = format!("Bearer {token}");
        let res = match body {
            Some(b) => http
                .post(format!("{url}{path}"))
                .header("Authorization", &auth)
                .send_json(b),
            None => http
                .get(format!("{url}{path}"))
                .header("Authorization", &auth)
                .call(),
        };
        res.expect("the server answers")
            .body_mut()
            .read_json()
            .expect("JSON")
    };
    // Wait for the node to register before timing.
    let deadline = Instant::now() + Duration::from_secs(30);
    while call("/v1/agent/nodes", None)
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        assert!(Instant::now() < deadline, "the agent did not register");
        std::thread::sleep(Duration::from_millis(50));
    }
    let t0 = Instant::now();
    for i in 0..jobs {
        call(
            "/v1/jobs",
            Some(
                json!({ "name": format!("bench-{i}"), "kind": "batch", "accelerators": 1,
                "duration_s": 1.0, "command": { "argv": ["true"] } }),
            ),
        );
    }
    let submit_s = t0.elapsed().as_secs_f64();
    wait_all_done(jobs, |path| call(path, None));
    let total_s = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = std::fs::remove_dir_all(&dir);
    Row {
        how: format!(
            "Switchyard API → scheduler → its own node agent (1 node × {per_node}, heartbeat {} ms)",
            interval.as_millis()
        ),
        submit_s,
        total_s,
        jobs,
    }
}

/// Whether the command line has `flag`.
fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

fn main() {
    // `--without-slurm` and `--without-agents` leave those rows out (the dry-run row alone
    // measures the control plane's own path in seconds).
    let with_slurm = !flag("--without-slurm");
    let with_agents = !flag("--without-agents");
    if with_slurm && !slurm_usable() {
        std::process::exit(2);
    }
    let jobs = arg("--jobs", 1000);
    let per_node = arg("--per-node", 2);
    let mut rows = Vec::new();
    if with_slurm {
        eprintln!("{jobs} jobs, sbatch directly …");
        rows.push(direct(jobs));
        eprintln!("… through Switchyard on Slurm …");
        rows.push(through_switchyard(jobs, per_node, true));
    }
    eprintln!("… through Switchyard, dry run …");
    rows.push(through_switchyard(jobs, per_node, false));
    if with_agents {
        eprintln!("… through Switchyard on its own agents …");
        let interval = Duration::from_millis(u64::from(arg("--heartbeat-ms", 250)));
        rows.push(through_agents(jobs, per_node, interval));
    }
    println!("| path | jobs | submitted in | submissions/s | all completed in | completed/s |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {:.1} s | {:.0} | {:.1} s | {:.1} |",
            r.how,
            r.jobs,
            r.submit_s,
            f64::from(r.jobs) / r.submit_s,
            r.total_s,
            f64::from(r.jobs) / r.total_s
        );
    }
}
