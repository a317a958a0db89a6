//! Switchyard's control plane: the HTTP API (`/v1`, bearer tokens, one tenant each), the
//! scheduling loop that drives the same pure scheduler as the simulator, leader election
//! through the store, metrics and the backends that carry decisions out.
//!
//! Data flows one way: request → store (committed) → scheduler (decisions) → store
//! (committed) → backend (action) → events back into the scheduler.

pub mod agents;
pub mod api;
pub mod backend;
mod dashboard;
pub mod engine;
pub mod http;
pub mod leader;
pub mod listen;
pub mod metrics;
pub mod openapi;
#[cfg(test)]
mod test_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use switchyard_core::fleet::Fleet;
use tokio::sync::{Notify, watch};

/// How to run a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub fleet: Fleet,
    /// `sqlite://PATH` or `postgres://…`.
    pub db_url: String,
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: String,
    pub tick: Duration,
    pub lease_ttl: Duration,
    /// Run the fleet's agent clusters with node agents (`None`: they are dry-run).
    pub agents: Option<agents::AgentSettings>,
}

impl ServerConfig {
    pub fn new(fleet: Fleet, db_url: impl Into<String>, listen: impl Into<String>) -> Self {
        ServerConfig {
            fleet,
            db_url: db_url.into(),
            listen: listen.into(),
            tick: Duration::from_millis(200),
            lease_ttl: Duration::from_secs(3),
            agents: None,
        }
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot open the store: {0}")]
    Store(#[from] switchyard_store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
    /// Active jobs in the store that this fleet can never run: the scheduler would reject
    /// them for good. (id, why), all of them.
    #[error(
        "{} active job{} in the store cannot run on fleet {fleet}: {}; start with a fleet that \
         can run {}, or cancel {} first (with the fleet {} submitted to)",
        jobs.len(),
        if jobs.len() == 1 { "" } else { "s" },
        unrunnable_list(jobs),
        if jobs.len() == 1 { "it" } else { "them" },
        if jobs.len() == 1 { "it" } else { "them" },
        if jobs.len() == 1 { "it was" } else { "they were" },
    )]
    FleetCannotRun {
        fleet: String,
        jobs: Vec<(String, String)>,
    },
    /// The replica leading now schedules another fleet (or backends): this one would accept
    /// submissions the leader rejects.
    #[error(
        "the scheduling leader ({holder}) runs fleet {theirs}, and this replica's --fleet, \
         --agents and --checkpoint-dir make fleet {ours}: every replica on one database must \
         run the same fleet file, the same --agents and, with agents, the same \
         --checkpoint-dir (stop them all to change it)"
    )]
    FleetDiffersFromLeader {
        holder: String,
        theirs: String,
        ours: String,
    },
}

/// What the lease records of a replica's fleet: its name and the first 16 hex digits of the
/// SHA-256 of what decides where jobs may run and whether they are admitted — each cluster's
/// name, accelerator, size and backend, the tenants with their quotas — and of whether node
/// agents run its clusters, with the checkpoint root their runs are handed (`agents`: a new
/// leader with another would restart every run from nothing). Replicas on one database must
/// agree on it. Values a release fills in itself (catalog bandwidths, prices) are left out, so
/// that a new binary with the same fleet file may join a running deployment.
pub fn fleet_fingerprint(
    fleet: &switchyard_core::fleet::Fleet,
    agents: Option<&std::path::Path>,
) -> String {
    use switchyard_core::fleet::ClusterBackend;
    let clusters: Vec<serde_json::Value> = fleet
        .clusters
        .iter()
        .map(|c| {
            serde_json::json!([
                c.name,
                c.accelerator.name,
                c.nodes,
                c.accelerators_per_node,
                matches!(c.backend, ClusterBackend::Slurm(_)),
            ])
        })
        .collect();
    let quotas = |quotas: &[switchyard_core::fleet::Quota]| -> Vec<serde_json::Value> {
        quotas
            .iter()
            .map(|q| serde_json::json!([q.cluster, q.accelerators, q.borrowing_limit]))
            .collect()
    };
    let tenants: Vec<serde_json::Value> = fleet
        .tenants
        .iter()
        .map(|o| {
            let teams: Vec<serde_json::Value> = o
                .teams
                .iter()
                .map(|t| serde_json::json!([t.name, t.weight, t.priority, quotas(&t.quotas)]))
                .collect();
            serde_json::json!([o.name, o.weight, quotas(&o.quotas), teams])
        })
        .collect();
    // The scheme's version leads, so that a later release that hashes more says so.
    // With agents the scheme is v2, which adds the checkpoint root: replicas of a release
    // before it compute v1 and refuse each other (stop them all to upgrade); without agents
    // nothing changed, and it stays v1. `/ckpt/` and `/ckpt/./` are `/ckpt`.
    let text = match agents {
        None => serde_json::json!(["switchyard-fleet-v1", fleet.name, clusters, tenants, false]),
        Some(root) => {
            let root: std::path::PathBuf = root.components().collect();
            serde_json::json!([
                "switchyard-fleet-v2",
                fleet.name,
                clusters,
                tenants,
                true,
                root.to_string_lossy()
            ])
        }
    }
    .to_string();
    let digest = switchyard_store::sha256_hex(&text);
    format!("{}:{}", fleet.name, &digest[..16])
}

/// "j-1 (it names no cluster of this fleet (colossus-1)), j-2 (…)", the first five.
fn unrunnable_list(jobs: &[(String, String)]) -> String {
    let mut listed: Vec<String> = jobs
        .iter()
        .take(5)
        .map(|(id, why)| format!("{id} (it {why})"))
        .collect();
    if jobs.len() > 5 {
        listed.push(format!("and {} more", jobs.len() - 5));
    }
    listed.join(", ")
}

/// Opens the store (migrating it), binds, calls `on_listening` with the bound address, then
/// serves until SIGINT or SIGTERM, and shuts down cleanly (giving the lease up).
pub async fn serve(
    config: ServerConfig,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), ServerError> {
    serve_with(config, Box::new(backend::DryRun::default()), on_listening).await
}

/// [`serve`] with the backend that carries out placements (the Slurm backend lives in its own
/// crate, which depends on this one, so the binary chooses and hands it in).
pub async fn serve_with(
    config: ServerConfig,
    backend: Box<dyn backend::Backend>,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), ServerError> {
    let store = switchyard_store::connect(&config.db_url).await?;
    serve_on(config, store, backend, on_listening).await
}

/// [`serve_with`] on a store the caller has opened already (from `config.db_url`), so that
/// whatever it read to build the backend (the deployment id of Slurm's job tags) comes from the
/// very database the server uses, `sqlite::memory:` included.
pub async fn serve_on(
    config: ServerConfig,
    store: switchyard_store::AnyStore,
    backend: Box<dyn backend::Backend>,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), ServerError> {
    let listener = bind(&config.listen)?;
    serve_bound(config, store, backend, listener, on_listening).await
}

/// Binds `listen` (`HOST:PORT`) for [`serve_bound`], so that a caller can find out that the
/// address cannot be served before it opens (and perhaps creates) the store.
pub fn bind(listen: &str) -> Result<std::net::TcpListener, ServerError> {
    let listener = std::net::TcpListener::bind(listen).map_err(|source| ServerError::Listen {
        addr: listen.to_owned(),
        source,
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| ServerError::Listen {
            addr: listen.to_owned(),
            source,
        })?;
    Ok(listener)
}

/// [`serve_on`] on a listener the caller has bound already ([`bind`]); `config.listen` names it
/// in errors.
pub async fn serve_bound(
    config: ServerConfig,
    store: switchyard_store::AnyStore,
    backend: Box<dyn backend::Backend>,
    listener: std::net::TcpListener,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), ServerError> {
    let fleet_print = fleet_fingerprint(
        &config.fleet,
        config.agents.as_ref().map(|a| a.checkpoint_root.as_path()),
    );
    // A leader running another fleet first: cancelling the jobs another fleet cannot run, as
    // the next check would advise, would not get this replica started beside it.
    if let Some(leader) = leader::other_fleet_leading(&store, &fleet_print).await? {
        return Err(ServerError::FleetDiffersFromLeader {
            holder: leader.holder,
            theirs: leader.fleet,
            ours: fleet_print,
        });
    }
    {
        use switchyard_store::StoreRead as _;
        // Jobs the store holds for a fleet this one is not (a cluster taken out, a file
        // mixed up): starting would reject them for good. Refuse to start instead.
        let jobs = leader::unrunnable(&config.fleet, &store.active_jobs().await?);
        if !jobs.is_empty() {
            return Err(ServerError::FleetCannotRun {
                fleet: config.fleet.name.clone(),
                jobs,
            });
        }
    }
    let listener =
        tokio::net::TcpListener::from_std(listener).map_err(|source| ServerError::Listen {
            addr: config.listen.clone(),
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServerError::Listen {
            addr: config.listen.clone(),
            source,
        })?;
    let fleet = Arc::new(config.fleet);
    let hub = config
        .agents
        .map(|settings| agents::AgentHub::new(&fleet, settings));
    let backend: Box<dyn backend::Backend> = match &hub {
        Some(hub) => Box::new(backend::Routed::new(
            vec![(
                hub.cluster_names(),
                Box::new(agents::AgentBackend::new(hub.clone()).with_store(store.clone())),
            )],
            backend,
        )),
        None => backend,
    };
    let metrics = Arc::new(metrics::Metrics::default());
    let wake = Arc::new(Notify::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let holder = format!(
        "{}:{}:{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into()),
        std::process::id(),
        &switchyard_store::new_job_id()?[2..10]
    );
    let scheduling = tokio::spawn(leader::run(
        store.clone(),
        fleet.clone(),
        backend,
        metrics.clone(),
        wake.clone(),
        stop_rx,
        leader::LoopConfig {
            tick: config.tick,
            lease_ttl: config.lease_ttl,
            holder,
            fleet: fleet_print,
        },
    ));
    let mut state = http::AppState::new(store, fleet, metrics, wake);
    if let Some(hub) = hub {
        state = state.with_agents(hub);
    }
    let app = http::router(state);
    tracing::info!(%addr, dashboard = %format!("http://{addr}/dashboard"), "switchyard server listening");
    on_listening(addr);
    let stop_tx = Arc::new(stop_tx);
    let mut stopping = stop_tx.subscribe();
    let on_signal = {
        let stop_tx = stop_tx.clone();
        async move {
            shutdown_signal().await;
            tracing::info!("stopping: the scheduling loop hands over its lease, requests drain");
            // The leader stops (and gives up its lease) now, not after the last client leaves:
            // another replica takes over at once.
            let _ = stop_tx.send(true);
        }
    };
    let served = tokio::select! {
        served = listen::serve(listener, app, on_signal) => served,
        () = async {
            let _ = stopping.wait_for(|stop| *stop).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!(
                "stopping: requests still open after {} s are dropped",
                SHUTDOWN_GRACE.as_secs()
            );
            Ok(())
        }
    };
    let _ = stop_tx.send(true);
    let _ = scheduling.await;
    served.map_err(ServerError::Serve)
}

/// How long a stopping server waits for open requests (a slow or stalled client) before it
/// drops them.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use switchyard_core::fleet::Fleet;

    /// The fingerprint follows what decides admission and placement, and nothing else: the same
    /// file gives the same one; a quota, a cluster's size or `--agents` changes it; a price
    /// (which a release may fill in) does not. Its scheme is pinned for the built-in fleet, so
    /// that a change of scheme is a decision (replicas of two schemes refuse each other).
    #[test]
    fn the_fleet_fingerprint_covers_admission_only() {
        let text = switchyard_core::fleet::local_fleet_toml("t", 4, 2, "");
        let fleet = |text: &str| Fleet::from_toml(text, "t.toml").expect("fleet");
        let base = fleet_fingerprint(&fleet(&text), None);
        assert_eq!(base, fleet_fingerprint(&fleet(&text), None));
        let with_agents = fleet_fingerprint(&fleet(&text), Some(Path::new("/ckpt")));
        assert_ne!(base, with_agents);
        // Another checkpoint root would make a new leader restart every run from nothing;
        // another spelling of the same one is the same.
        assert_ne!(
            with_agents,
            fleet_fingerprint(&fleet(&text), Some(Path::new("/other")))
        );
        assert_eq!(
            with_agents,
            fleet_fingerprint(&fleet(&text), Some(Path::new("/ckpt/./")))
        );
        assert_ne!(
            base,
            fleet_fingerprint(
                &fleet(&switchyard_core::fleet::local_fleet_toml("t", 5, 2, "")),
                None
            )
        );
        let mut priced = fleet(&text);
        priced.clusters[0].price_per_accelerator_hour *= 2.0;
        assert_eq!(base, fleet_fingerprint(&priced, None));
        assert!(base.starts_with("t:") && base.len() == 2 + 16, "{base}");
        let default = fleet_fingerprint(&Fleet::default_fleet(), None);
        assert_eq!(default, "frontier-lab:c8a477b821afa670");
        let mut reprioritised = Fleet::default_fleet();
        reprioritised.tenants[0].teams[0].priority += 1;
        assert_ne!(default, fleet_fingerprint(&reprioritised, None));
        let mut requota = Fleet::default_fleet();
        let team = requota
            .tenants
            .iter_mut()
            .flat_map(|o| o.teams.iter_mut())
            .find(|t| !t.quotas.is_empty())
            .expect("a team with a quota");
        team.quotas[0].accelerators += 8;
        assert_ne!(default, fleet_fingerprint(&requota, None));
    }
}
