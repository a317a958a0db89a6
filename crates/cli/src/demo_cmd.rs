//! `switchyard demo`: the whole system on one machine, narrated. A server on embedded SQLite,
//! node agents as separate processes forming a small local cluster, a gang training run of the
//! example workload and an inference service beside it; one agent is killed mid-run (the
//! machine "dies"), and the run is seen detected, restarted elsewhere and finished from its
//! checkpoint, with a final model identical to an uninterrupted run's.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use switchyard_server::api::{Job, JobCommand, JobEvents, JobLogs, ReplicaRange, SubmitRequest};
use switchyard_store::StoreWrite as _;

use crate::CliError;
use crate::client::{Client, ClientArgs};

/// Run the whole system on this machine and watch a training run survive a node failure.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  switchyard demo\n  switchyard demo --dir /tmp/sy-demo --agents 6\n\nStarts a server (SQLite), local node agents as separate processes, a 4-rank training run of the\nexample workload and an inference service; kills one agent mid-run and shows the run restarted from\nits checkpoint. Everything it writes goes to --dir."
)]
pub struct DemoArgs {
    /// Directory for the database, checkpoints and agents' state [default: a new directory
    /// under the system's temporary directory].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Node agents to start (each a process with 2 accelerators declared; 4 at least, so the
    /// run fits beside the service once a node is gone).
    #[arg(long, default_value_t = 4, value_parser = crate::error::whole_from(4, 16))]
    agents: u32,
    /// Training steps of the example workload.
    #[arg(long, default_value_t = 400, value_parser = crate::error::whole_from(100, 100_000))]
    steps: u32,
    /// Keep the server and agents running at the end (until Ctrl-C) to explore them with
    /// `switchyard status`, `logs`, `events` and the metrics endpoint.
    #[arg(long)]
    keep_running: bool,
}

const PER_NODE: u32 = 2;
const RANKS: u32 = 4;
const STEP_SLEEP_MS: u64 = 40;
const CHECKPOINT_EVERY: u64 = 20;
const SEED: u64 = 7;
const HEARTBEAT: Duration = Duration::from_millis(500);
const LOST_AFTER: u32 = 3;
/// The agents' `--orphan-after`: above the loss deadline (1.5 s), short enough that the demo
/// does not wait a minute for the killed node's ranks to be taken as stopped.
const ORPHAN_AFTER: Duration = Duration::from_secs(3);

/// Prints a line; a closed stdout (`| head`) is not an error worth stopping the demo for.
macro_rules! out {
    ($($arg:tt)*) => {{
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, $($arg)*);
        let _ = stdout.flush();
    }};
}

struct Narrator {
    t0: Instant,
}

impl Narrator {
    fn say(&self, text: impl AsRef<str>) {
        let t = self.t0.elapsed().as_secs_f64();
        out!("[{t:6.1}s] {}", text.as_ref());
        let _ = std::io::stdout().flush();
    }
}

/// The agent processes; stopped (SIGTERM, then SIGKILL) when dropped.
struct Agents {
    children: Vec<(String, Child)>,
}

impl Drop for Agents {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            terminate(c.id());
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for (_, c) in &mut self.children {
            while Instant::now() < deadline {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn terminate(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}

fn sigkill(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Process ids whose parent is `parent` (from /proc).
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let after = s.rsplit_once(')')?.1;
                    after.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

fn free_port() -> Result<u16, CliError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| CliError::Other(format!("cannot find a free local port: {e}")))
}

fn workload_args(steps: u64, step_sleep_ms: u64) -> Vec<String> {
    [
        "workload",
        "--steps",
        &steps.to_string(),
        "--checkpoint-every",
        &CHECKPOINT_EVERY.to_string(),
        "--step-sleep-ms",
        &step_sleep_ms.to_string(),
        "--seed",
        &SEED.to_string(),
        "--log-every",
        "20",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

/// The hash an uninterrupted 4-rank run of the same workload ends with (ranks as local
/// processes, no sleeping, no checkpoints).
fn reference_hash(exe: &Path, steps: u64) -> Result<String, CliError> {
    let port = free_port()?;
    let mut children = Vec::new();
    for rank in 0..RANKS {
        let child = Command::new(exe)
            .args(workload_args(steps, 0))
            .env("RANK", rank.to_string())
            .env("WORLD_SIZE", RANKS.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .env("SWITCHYARD_JOB_ID", "demo-reference")
            .env_remove("SWITCHYARD_CHECKPOINT_DIR")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| CliError::Other(format!("cannot start the reference run: {e}")))?;
        children.push(child);
    }
    let mut hash = None;
    for (rank, mut c) in children.into_iter().enumerate() {
        let out = c.stdout.take();
        if let Some(out) = out {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if rank == 0
                    && let Some(h) = line.split("done: model hash ").nth(1)
                {
                    hash = Some(h.trim().to_owned());
                }
            }
        }
        let _ = c.wait();
    }
    hash.ok_or_else(|| CliError::Other("the reference run did not report its model hash".into()))
}

pub fn run(args: DemoArgs) -> Result<(), CliError> {
    let exe = std::env::current_exe()
        .map_err(|e| CliError::Other(format!("cannot find this program's path: {e}")))?;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!(
            "switchyard-demo-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        )),
    };
    std::fs::create_dir_all(&dir).map_err(|source| CliError::Write {
        path: dir.clone(),
        source,
    })?;
    let dir = std::path::absolute(&dir).map_err(|source| CliError::Write {
        path: dir.clone(),
        source,
    })?;
    let db_path = dir.join("switchyard.db");
    if db_path.exists() {
        return Err(CliError::Input(format!(
            "{} already holds a demo's database; pass an empty --dir",
            dir.display()
        )));
    }
    let n = Narrator { t0: Instant::now() };
    out!(
        "Switchyard demo: a control plane, {} node agents and a training run that survives a node failure.",
        args.agents
    );
    out!("Everything goes to {}\n", dir.display());

    // 1. The server, in this process, on SQLite, with agent-run clusters.
    let fleet_text = switchyard_core::fleet::local_fleet_toml("demo", args.agents, PER_NODE, "");
    let fleet_file = dir.join("fleet.toml");
    std::fs::write(&fleet_file, &fleet_text).map_err(|source| CliError::Write {
        path: fleet_file.clone(),
        source,
    })?;
    let fleet = switchyard_core::Fleet::from_toml(&fleet_text, "demo fleet")
        .map_err(|e| CliError::Other(format!("the demo's fleet is invalid: {e}")))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::Other(format!("cannot start the async runtime: {e}")))?;
    let db = format!("sqlite://{}", db_path.display());
    let (tenant_token, agent_token) = rt
        .block_on(async {
            let store = switchyard_store::connect(&db).await?;
            let now = switchyard_server::leader::now_ms();
            let tenant = switchyard_store::new_token()?;
            store
                .insert_token(
                    &switchyard_store::hash_token(&tenant),
                    "research",
                    false,
                    now,
                )
                .await?;
            let agent = switchyard_store::new_token()?;
            store
                .insert_agent_token(&switchyard_store::hash_token(&agent), now)
                .await?;
            Ok::<_, switchyard_store::StoreError>((tenant, agent))
        })
        .map_err(|e| CliError::Other(format!("cannot prepare the demo's database: {e}")))?;
    let mut config = switchyard_server::ServerConfig::new(fleet, db.clone(), "127.0.0.1:0");
    config.agents = Some(switchyard_server::agents::AgentSettings {
        heartbeat_interval: HEARTBEAT,
        lost_after: LOST_AFTER,
        checkpoint_root: dir.join("checkpoints"),
        stop_grace: Duration::from_secs(3),
        ..Default::default()
    });
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    // The server runs on a thread of its own and ends with this process.
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("error: cannot start the server's runtime: {e}");
                return;
            }
        };
        if let Err(e) = rt.block_on(switchyard_server::serve(config, move |addr| {
            let _ = addr_tx.send(addr);
        })) {
            eprintln!("error: the demo's server stopped: {e}");
        }
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| CliError::Other("the server did not start within 30 s".into()))?;
    let url = format!("http://{addr}");
    n.say(format!(
        "server listening on {url} (SQLite at {}; heartbeats every {} ms, a node is lost after {LOST_AFTER} missed)",
        db_path.display(),
        HEARTBEAT.as_millis()
    ));
    let client = Client::new(&ClientArgs {
        url: url.clone(),
        token: Some(tenant_token.clone()),
    })?;
    let admin = Client::new(&ClientArgs {
        url: url.clone(),
        token: Some(agent_token.clone()),
    })?;
    // Agents are served by the scheduling leader; it leads within a tick of starting.
    wait_for(Duration::from_secs(30), || {
        let ready: serde_json::Value = client.get("/readyz").ok()?;
        (ready["role"] == "leader").then_some(())
    })
    .ok_or_else(|| {
        CliError::Other("the server did not take the scheduling lease within 30 s".into())
    })?;

    // 2. Agents: separate processes, each a "node" with 2 accelerators.
    let mut agents = Agents {
        children: Vec::new(),
    };
    for i in 1..=args.agents {
        let name = format!("demo-node-{i}");
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).map_err(|source| CliError::Write {
            path: log.clone(),
            source,
        })?;
        let err = out.try_clone().map_err(|source| CliError::Write {
            path: log.clone(),
            source,
        })?;
        let child = Command::new(&exe)
            .args(["agent", "--server", &url, "--cluster", "local"])
            .args(["--accelerators", &PER_NODE.to_string()])
            .args(["--hostname", &name, "--address", "127.0.0.1"])
            // The killed node's gang restarts once its ranks must have stopped, had the node
            // only been cut off (orphan deadline + 10 s + stop grace): seconds, not a minute.
            .args(["--orphan-after", &format!("{}ms", ORPHAN_AFTER.as_millis())])
            .env("SWITCHYARD_TOKEN", &agent_token)
            // Their node locks too go to the demo's directory, not the machine's temp dir.
            .env("TMPDIR", &dir)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| CliError::Other(format!("cannot start agent {name}: {e}")))?;
        agents.children.push((name, child));
    }
    let nodes = wait_for(Duration::from_secs(30), || {
        let nodes: Vec<switchyard_server::agents::NodeView> = admin.get("/v1/agent/nodes").ok()?;
        (nodes.iter().filter(|n| n.state == "ready").count() == args.agents as usize)
            .then_some(nodes)
    })
    .ok_or_else(|| {
        CliError::Other(format!(
            "the agents did not register within 30 s; see {}/demo-node-*.log",
            dir.display()
        ))
    })?;
    n.say(format!(
        "{} agents registered, {} accelerators each (declared): {}",
        nodes.len(),
        PER_NODE,
        nodes
            .iter()
            .map(|n| format!("{} (slot {})", n.hostname, n.slot))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    // 3. Work: a gang training run and an inference service.
    let mut train_cmd = vec![exe.to_string_lossy().into_owned()];
    train_cmd.extend(workload_args(u64::from(args.steps), STEP_SLEEP_MS));
    let train: Job = client.post(
        "/v1/jobs",
        Some(&SubmitRequest {
            name: Some("demo-train".into()),
            kind: switchyard_core::JobKind::Training,
            tenant: None,
            accelerators: RANKS,
            min_accelerators: None,
            priority: None,
            accelerator_types: vec![],
            clusters: vec![],
            duration_s: Some(args.steps as f64 * STEP_SLEEP_MS as f64 / 1000.0 + 5.0),
            replicas: None,
            command: Some(JobCommand {
                argv: train_cmd,
                env: Default::default(),
                working_dir: None,
            }),
            max_retries: Some(3),
        }),
    )?;
    n.say(format!(
        "submitted training run {} (`demo-train`): {RANKS} ranks of the example workload (data-parallel SGD over TCP), {} steps, a checkpoint every {CHECKPOINT_EVERY}",
        train.id, args.steps
    ));
    let serve_port = free_port()?;
    let ckpt = dir.join("checkpoints").join(&train.id);
    let serve_cmd = vec![
        exe.to_string_lossy().into_owned(),
        "workload".into(),
        "--serve".into(),
        format!("127.0.0.1:{serve_port}"),
        "--checkpoint-dir".into(),
        ckpt.to_string_lossy().into_owned(),
    ];
    let service: Job = client.post(
        "/v1/jobs",
        Some(&SubmitRequest {
            name: Some("demo-serve".into()),
            kind: switchyard_core::JobKind::Inference,
            tenant: None,
            accelerators: 1,
            min_accelerators: None,
            priority: None,
            accelerator_types: vec![],
            clusters: vec![],
            duration_s: None,
            replicas: Some(ReplicaRange { min: 1, max: 1 }),
            command: Some(JobCommand {
                argv: serve_cmd,
                env: Default::default(),
                working_dir: None,
            }),
            max_retries: None,
        }),
    )?;
    n.say(format!(
        "submitted inference service {} (`demo-serve`): 1 replica on 1 accelerator, serving the run's newest checkpoint on http://127.0.0.1:{serve_port}/predict",
        service.id
    ));

    // 4. Watch the run start and make progress.
    let mut watch = Watch::new(&client, &train.id);
    let placed = wait_for(Duration::from_secs(60), || {
        watch.poll(&n);
        let nodes: Vec<switchyard_server::agents::NodeView> = admin.get("/v1/agent/nodes").ok()?;
        let with_train: Vec<_> = nodes
            .into_iter()
            .filter(|v| v.jobs.contains(&train.id) && !v.jobs.contains(&service.id))
            .collect();
        (!with_train.is_empty() && watch.step >= 3 * CHECKPOINT_EVERY).then_some(with_train)
    })
    .ok_or_else(|| {
        CliError::Other(format!(
            "the training run did not get going within 60 s; see `switchyard events {}` and {}/demo-node-*.log",
            train.id,
            dir.display()
        ))
    })?;

    // 5. A node dies: SIGKILL its agent and the processes it started.
    let victim = &placed[0];
    let Some((_, child)) = agents
        .children
        .iter_mut()
        .find(|(name, _)| *name == victim.hostname)
    else {
        return Err(CliError::Other(format!(
            "no agent process for {}",
            victim.hostname
        )));
    };
    let pid = child.id();
    let orphans = children_of(pid);
    sigkill(pid);
    for p in &orphans {
        sigkill(*p);
    }
    let _ = child.wait();
    n.say(format!(
        ">>> killing {} with SIGKILL: its agent (pid {pid}) and the {} rank process(es) it ran, as if the machine died at step {}",
        victim.hostname,
        orphans.len(),
        watch.step
    ));

    // 6. Watch detection, restart and completion.
    let done = wait_for(Duration::from_secs(120), || {
        watch.poll(&n);
        let j: Job = client.get(&format!("/v1/jobs/{}", train.id)).ok()?;
        matches!(j.state.as_str(), "done" | "failed" | "cancelled").then_some(j)
    })
    .ok_or_else(|| CliError::Other("the training run did not finish within 120 s".into()))?;
    watch.poll(&n);
    n.say(format!(
        "training run {}: {} after {} restart(s)",
        done.id, done.state, done.restarts
    ));

    // 7. Check the result against an uninterrupted run, and ask the service.
    let expected = reference_hash(&exe, u64::from(args.steps))?;
    match &watch.final_hash {
        Some(h) if *h == expected => n.say(format!(
            "final model hash {h}: identical to an uninterrupted run of the same workload (computed just now)"
        )),
        Some(h) => n.say(format!(
            "final model hash {h} DIFFERS from an uninterrupted run's {expected}"
        )),
        None => n.say("the run's final model hash did not show up in its logs"),
    }
    match predict(serve_port) {
        Some(answer) => n.say(format!(
            "inference service answered GET /predict?x=1,…: {answer}"
        )),
        None => n.say("the inference service did not answer (see `switchyard logs` for it)"),
    }

    // 8. The final state, and where to look next.
    out!("");
    out!("Events of {}:", train.id);
    if let Ok(ev) = client.get::<JobEvents>(&format!("/v1/jobs/{}/events", train.id)) {
        for e in ev.events {
            // Whole: a message cut at a width ends mid-phrase ("predicted to").
            out!("  {:>14}  {}", e.kind, e.message);
        }
    }
    out!("");
    out!("Where to look next:");
    out!("  export SWITCHYARD_URL={url} SWITCHYARD_TOKEN={tenant_token}");
    out!("  switchyard status                 # every job and where it stands");
    out!(
        "  switchyard events {}      # what happened to the run, and why",
        train.id
    );
    out!(
        "  switchyard logs {} --rank 0  # its output, every attempt",
        train.id
    );
    out!(
        "  curl -H \"Authorization: Bearer $SWITCHYARD_TOKEN\" {url}/metrics  # Prometheus metrics"
    );
    out!("  {url}/dashboard  # in a browser: any user name, the token as password");
    out!(
        "  ls {}                          # database, checkpoints, agents' logs",
        dir.display()
    );
    let success = done.state == "done" && watch.final_hash.as_deref() == Some(expected.as_str());
    if args.keep_running {
        out!("\nThe server and agents keep running; press Ctrl-C to stop them.");
        let _ = rt.block_on(tokio::signal::ctrl_c());
    } else {
        out!(
            "\n(the server and agents stop now; `switchyard demo --keep-running` keeps them up to explore)"
        );
        let _ = client.post::<(), Job>(&format!("/v1/jobs/{}/cancel", service.id), None);
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(agents);
    rt.shutdown_timeout(Duration::from_secs(2));
    if success {
        Ok(())
    } else {
        Err(CliError::Other(format!(
            "the demo did not end as it should (run {}: {}); see {}",
            done.id,
            done.state,
            dir.display()
        )))
    }
}

fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    None
}

fn predict(port: u16) -> Option<String> {
    use std::io::Read as _;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let x = vec!["1"; 16].join(",");
    write!(
        s,
        "GET /predict?x={x} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split("\r\n\r\n").nth(1).map(|b| b.trim().to_owned())
}

/// Follows a job's events and rank 0's output, narrating what matters.
struct Watch<'a> {
    client: &'a Client,
    job: String,
    events_after: i64,
    after: i64,
    step: u64,
    last_said_step: u64,
    final_hash: Option<String>,
}

impl<'a> Watch<'a> {
    fn new(client: &'a Client, job: &str) -> Self {
        Watch {
            client,
            job: job.to_owned(),
            events_after: 0,
            after: 0,
            step: 0,
            last_said_step: 0,
            final_hash: None,
        }
    }

    fn poll(&mut self, n: &Narrator) {
        if let Ok(ev) = self.client.get::<JobEvents>(&format!(
            "/v1/jobs/{}/events?after={}",
            self.job, self.events_after
        )) {
            for e in &ev.events {
                self.events_after = self.events_after.max(e.cursor);
                let what = match e.kind.as_str() {
                    "submitted" | "waiting" => continue,
                    "started" => "scheduler: started",
                    "node_lost" => "server: NODE LOST",
                    "restarted" => "scheduler: restart",
                    "finished" => "scheduler: finished",
                    other => other,
                };
                n.say(format!("{what}: {}", e.message));
            }
        }
        loop {
            let Ok(page) = self.client.get::<JobLogs>(&format!(
                "/v1/jobs/{}/logs?rank=0&after={}&limit=1000",
                self.job, self.after
            )) else {
                return;
            };
            for l in &page.lines {
                self.after = self.after.max(l.cursor);
                let line = l.line.as_str();
                if let Some(rest) = line.split("] step ").nth(1)
                    && let Some(step) = rest.split('/').next().and_then(|s| s.parse::<u64>().ok())
                {
                    self.step = step;
                    if step >= self.last_said_step + 100 || step < self.last_said_step {
                        self.last_said_step = step;
                        n.say(format!("rank 0, attempt {}: step {step}", l.attempt));
                    }
                } else if line.contains("resuming from") || line.contains("training steps") {
                    n.say(format!(
                        "rank 0, attempt {}: {}",
                        l.attempt,
                        line.split("] ").nth(1).unwrap_or(line)
                    ));
                } else if let Some(h) = line.split("done: model hash ").nth(1) {
                    self.final_hash = Some(h.trim().to_owned());
                }
            }
            if page.next.is_none() {
                break;
            }
        }
    }
}
