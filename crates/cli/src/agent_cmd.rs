//! `switchyard agent`: the node agent (docs/agent.md).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use switchyard_agent::exit_record::ExitRecorder;
use switchyard_agent::hardware::{DiscoverOptions, discover};
use switchyard_agent::http::HttpControlPlane;
use switchyard_agent::supervisor::{Supervisor, default_group_file};

use crate::error::outln;
use switchyard_agent::{Agent, AgentConfig, NodeInfo};

use crate::CliError;

/// Run a node agent: register this host's hardware with the server, heartbeat, and run the
/// processes the server places here.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  switchyard agent --server http://10.0.0.1:7070 --token $AGENT_TOKEN --cluster lab\n  switchyard agent --accelerators 4 --discover --json   # what would be registered\n\nStops its processes (SIGTERM, then SIGKILL after their grace period) on SIGINT or SIGTERM. See docs/agent.md."
)]
pub struct AgentArgs {
    /// Server address.
    #[arg(
        long,
        env = "SWITCHYARD_URL",
        default_value = "http://127.0.0.1:7070",
        value_name = "URL"
    )]
    server: String,
    /// Token the agent authenticates with.
    #[arg(
        long,
        env = "SWITCHYARD_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,
    /// Read the token from FILE (its first line) instead: unlike --token it is not in the
    /// process list other users of the machine read. Keep FILE readable by the agent's user
    /// only.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Cluster this node joins (a cluster of the server's fleet).
    #[arg(long, value_name = "NAME")]
    cluster: Option<String>,
    /// Declare N accelerators instead of asking nvidia-smi (CPU-only hosts, tests); at most 1024.
    #[arg(long, value_name = "N", value_parser = crate::error::whole_from(0, 1024))]
    accelerators: Option<u32>,
    /// Address other nodes reach this one at (MASTER_ADDR when it hosts rank 0): a host name or
    /// IP address. Default: the host name it registers under, or with --hostname the machine's.
    #[arg(long, value_name = "HOST")]
    address: Option<String>,
    /// Register under this host name instead of the machine's (several agents on one host,
    /// as `switchyard demo` runs them).
    #[arg(long, value_name = "NAME")]
    hostname: Option<String>,
    /// Directory for the agent's state and its processes' output; with it, a restarted agent
    /// adopts the processes the previous one left running.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Start every process as USER (a name or uid), not as the agent's own user: the agent
    /// runs as root, and jobs then cannot read its token or each other's environment.
    #[arg(long, value_name = "USER")]
    run_as: Option<String>,
    /// How long the agent keeps its training ranks running while no heartbeat gets through
    /// (e.g. 60s, 5m): by then the server has declared the node lost and restarted the gang
    /// elsewhere. Services' replicas keep running.
    #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = crate::server_cmd::parse_duration)]
    orphan_after: std::time::Duration,
    /// Print what would be registered and exit.
    #[arg(long)]
    discover: bool,
    /// With --discover: JSON instead of a summary.
    #[arg(long, requires = "discover")]
    json: bool,
}

fn summary(node: &NodeInfo) -> String {
    let gib = node.memory_bytes as f64 / (1u64 << 30) as f64;
    let accel = match node.accelerators.first() {
        Some(a) => format!("{} × {}", node.accelerators.len(), a.name),
        None => "no accelerators".to_string(),
    };
    format!(
        "{} ({}): {} CPUs, {gib:.1} GiB memory, {accel}",
        node.hostname,
        node.cluster.as_deref().unwrap_or("no cluster named"),
        node.cpus
    )
}

/// `switchyard record-exit --status FILE -- PROGRAM…` (hidden; the agent runs it): runs the
/// program, says on standard input (a pipe from the agent) whether it started, and records how
/// it ended in FILE; see `switchyard_agent::exit_record`.
pub fn record_exit(
    status: &std::path::Path,
    user: Option<switchyard_agent::exit_record::RunAsIds<'_>>,
    argv: &[std::ffi::OsString],
) -> std::process::ExitCode {
    use std::os::fd::AsFd as _;
    let _signals = catch_stop_signals();
    let mut handshake: Box<dyn std::io::Write> = match std::io::stdin().as_fd().try_clone_to_owned()
    {
        Ok(fd) => Box::new(std::fs::File::from(fd)),
        Err(_) => Box::new(std::io::sink()),
    };
    let code = switchyard_agent::exit_record::run_and_record(status, argv, user, &mut handshake);
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Keeps signals sent to the process group (a stop's SIGTERM, a terminal's SIGINT, a
/// framework's SIGUSR1) from ending the recorder before the program it waits for, which gets
/// them too: every standard signal whose default action ends a process, except SIGKILL and
/// those the hardware raises in a faulting process (SIGSEGV, SIGBUS, SIGFPE, SIGILL).
/// Handled, not ignored: a program starts with the default action of a signal its parent
/// handles, but keeps an ignored one. The handlers stay for the life of the process; the
/// runtime returned delivers nothing anyone reads.
fn catch_stop_signals() -> Option<tokio::runtime::Runtime> {
    use nix::sys::signal::Signal::*;
    use tokio::signal::unix::{SignalKind, signal};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async {
        for sig in [
            SIGHUP, SIGINT, SIGQUIT, SIGTRAP, SIGABRT, SIGUSR1, SIGUSR2, SIGPIPE, SIGALRM, SIGTERM,
            SIGSTKFLT, SIGXCPU, SIGXFSZ, SIGVTALRM, SIGPROF, SIGIO, SIGPWR, SIGSYS,
        ] {
            if let Err(e) = signal(SignalKind::from_raw(sig as i32)) {
                eprintln!("record-exit: cannot catch {sig}: {e}");
            }
        }
    });
    Some(rt)
}

/// Sets the returned flag on SIGINT or SIGTERM.
fn stop_on_signal() -> Result<Arc<AtomicBool>, CliError> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Other(format!("cannot start the signal handler: {e}")))?;
    std::thread::Builder::new()
        .name("agent-signals".into())
        .spawn(move || {
            rt.block_on(async {
                let term = async {
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    {
                        Ok(mut s) => {
                            s.recv().await;
                        }
                        Err(_) => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term => {}
                }
            });
            flag.store(true, Ordering::Relaxed);
        })
        .map_err(|e| CliError::Other(format!("cannot start the signal handler: {e}")))?;
    Ok(stop)
}

/// How long the agent waits for an answer from the server.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub fn run(args: AgentArgs) -> Result<(), CliError> {
    let mut node = discover(&DiscoverOptions {
        declared_accelerators: args.accelerators,
        cluster: args.cluster.clone(),
        address: args.address.clone(),
    });
    if let Some(address) = &args.address
        && !switchyard_agent::protocol::is_host_address(address)
    {
        return Err(CliError::Input(format!(
            "--address {address:?} must be a host name or IP address other nodes reach this one \
             at (no scheme, port or spaces), e.g. 10.0.0.7"
        )));
    }
    if let Some(h) = &args.hostname {
        if h.trim().is_empty() || h.len() > 253 || h.chars().any(char::is_control) {
            return Err(CliError::Input(
                "--hostname must be 1 to 253 characters, none of them control characters".into(),
            ));
        }
        // The name given is only a name: other nodes still reach this one at the machine's.
        if node.address.is_none() {
            node.address = Some(node.hostname.clone());
        }
        node.hostname = h.trim().to_owned();
    }
    let config = AgentConfig {
        orphan_after: args.orphan_after,
        ..AgentConfig::default()
    };
    // Registered with the node, so `--discover` shows it too.
    node.orphan_stop_ms =
        Some(u64::try_from(config.orphan_stop_after().as_millis()).unwrap_or(u64::MAX));
    if args.discover {
        if args.json {
            let text = serde_json::to_string_pretty(&node)
                .map_err(|e| CliError::Other(format!("cannot print the node: {e}")))?;
            outln!("{text}");
        } else {
            outln!("{}", summary(&node));
        }
        return Ok(());
    }
    // Before the token: a flag that cannot work is the first thing to say.
    let run_as = args.run_as.as_deref().map(run_as_user).transpose()?;
    let token = match &args.token_file {
        Some(path) => token_from_file(path)?,
        None => args.token.filter(|t| !t.is_empty()).ok_or_else(|| {
            CliError::Input(
                "no token: pass --token-file, set SWITCHYARD_TOKEN or pass --token (create one \
                 with `switchyard token create --agent`)"
                    .into(),
            )
        })?,
    };
    let control = HttpControlPlane::new(&args.server, &token, REQUEST_TIMEOUT).map_err(|e| {
        let source = crate::client::url_source(&args.server, "--server");
        CliError::Input(format!("{source}: {e}"))
    })?;
    let cluster = node.cluster.as_deref().unwrap_or("default");
    // Held for the agent's life, with or without a state directory.
    let _node_lock = switchyard_agent::supervisor::lock_node(&args.server, &node.hostname)
        .map_err(|e| match e {
            switchyard_agent::supervisor::StateError::Busy { path } => CliError::Input(format!(
                "another agent on this machine already runs as host {} for {} (it holds {}; \
                 with --cluster or without, one host name is one node): stop it, or give this \
                 one another --hostname",
                node.hostname,
                args.server,
                path.display()
            )),
            other => CliError::Input(other.to_string()),
        })?;
    let supervisor = match &args.state_dir {
        // Under a recorder, so that the next agent on this directory learns the exit codes
        // of the processes it adopts.
        // The node's group file too: the next agent of this node kills what this one leaves
        // running, whatever state directory it is given.
        Some(dir) => Supervisor::with_state_dir(dir)
            .map_err(|e| CliError::Input(format!("--state-dir: {e}")))?
            .with_exit_recorder(ExitRecorder::this_binary())
            .with_node_group_file(&default_group_file(&args.server, cluster, &node.hostname))
            .map_err(|failed| {
                let (supervisor, e) = *failed;
                // What it adopted runs on for the next agent on the directory.
                supervisor.detach();
                CliError::Input(e.to_string())
            })?,
        None => {
            Supervisor::with_group_file(&default_group_file(&args.server, cluster, &node.hostname))
                .map_err(|e| CliError::Input(e.to_string()))?
        }
    };
    let supervisor = match run_as {
        Some(user) => supervisor.with_run_as(user),
        None => supervisor,
    };
    let stop = stop_on_signal()?;
    // Whoever reads stdout may be gone; the agent runs on regardless.
    let _ = crate::error::emit(&format!(
        "agent on {}; server {}\n",
        summary(&node),
        args.server
    ));
    let mut agent = Agent::with_supervisor(control, node, config, supervisor);
    agent
        .run(&stop)
        .map_err(|e| CliError::Input(format!("the server refused to register this node: {e}")))?;
    let _ = crate::error::emit("agent stopped\n");
    Ok(())
}

/// The token in `path`'s first line. A file other users may read is named in a warning: the
/// token lets its holder act as any node agent of the fleet.
fn token_from_file(path: &std::path::Path) -> Result<String, CliError> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let read = |source| CliError::Read {
        path: path.to_owned(),
        source,
    };
    // (A token is 67 bytes: the first 4 KiB hold its line whatever else the file has.)
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(4096).read_to_string(&mut text))
        .map_err(read)?;
    let token = text.lines().next().unwrap_or("").trim().to_owned();
    if token.is_empty() {
        return Err(CliError::Input(format!(
            "--token-file {}: its first line is empty; put the token from `switchyard token \
             create --agent` there",
            path.display()
        )));
    }
    if let Ok(md) = std::fs::metadata(path)
        && md.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            "--token-file {} may be read by other users (mode {:o}): `chmod 600` it",
            path.display(),
            md.permissions().mode() & 0o777
        );
    }
    Ok(token)
}

/// `--run-as USER`: a user of this machine (by name, or by uid) other than root, for an agent
/// running as root.
fn run_as_user(user: &str) -> Result<switchyard_agent::supervisor::RunAs, CliError> {
    use nix::unistd::{Uid, User, geteuid};
    let found = match user.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)),
        Err(_) => User::from_name(user),
    }
    .map_err(|e| CliError::Input(format!("--run-as {user}: cannot look the user up: {e}")))?
    .ok_or_else(|| CliError::Input(format!("--run-as {user}: no such user on this machine")))?;
    if found.uid.is_root() {
        return Err(CliError::Input(format!(
            "--run-as {user}: that is root; name the unprivileged user jobs should run as"
        )));
    }
    if !geteuid().is_root() {
        return Err(CliError::Input(format!(
            "--run-as {user}: the agent must run as root to start processes as another user \
             (it runs as uid {})",
            geteuid()
        )));
    }
    Ok(switchyard_agent::supervisor::RunAs {
        name: found.name,
        uid: found.uid.as_raw(),
        gid: found.gid.as_raw(),
        home: found.dir,
    })
}
