//! `switchyard server` and `switchyard token create` (tenant, admin and agent tokens).

use std::path::PathBuf;

use switchyard_server::backend::{Backend, DryRun, Routed};
use switchyard_server::{ServerConfig, serve_bound};
use switchyard_store::StoreWrite as _;

use crate::CliError;
use crate::fleet_cmd::load_fleet;

/// Run the control plane: the HTTP API, the scheduling loop and the store.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  switchyard server\n  switchyard server --db postgres://switchyard@db/switchyard --listen 0.0.0.0:7070\n\nPrints `listening on http://ADDR` on stdout once it accepts requests. API: docs/api.md."
)]
pub struct ServerArgs {
    /// Fleet file (TOML, docs/fleet.md) or built-in fleet name; the built-in default when absent.
    #[arg(long, value_name = "FILE")]
    fleet: Option<PathBuf>,
    #[command(flatten)]
    store: StoreArg,
    /// Address to listen on (port 0 picks a free port).
    #[arg(
        long,
        default_value = "127.0.0.1:7070",
        value_name = "ADDR",
        value_parser = parse_listen
    )]
    listen: String,
    /// Run the fleet's agent clusters (those without `backend = "slurm"`) with node agents
    /// (`switchyard agent`, docs/agent.md). Without it their placements are dry-run.
    #[arg(long)]
    agents: bool,
    /// How often agents heartbeat (e.g. 500ms, 2s).
    #[arg(long, default_value = "2s", value_name = "DURATION", value_parser = parse_duration, requires = "agents")]
    heartbeat_interval: std::time::Duration,
    /// Missed heartbeats after which a node is lost and its work restarted elsewhere.
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = crate::error::whole_from(1, 1000), requires = "agents")]
    lost_after: u32,
    /// Root of the jobs' checkpoint directories (ROOT/JOB), a path every agent's host sees.
    #[arg(long, default_value = "switchyard-checkpoints", value_name = "DIR")]
    checkpoint_dir: PathBuf,
    /// How long the scheduling lease lasts unrenewed (the leader renews it every third of
    /// this): when the leader dies, another replica (or this server restarted) leads after at
    /// most this long. Longer rides out a slow database; shorter fails over sooner. From 1s to
    /// 10m; with --agents keep it well below the agents' --orphan-after.
    #[arg(long, default_value = "3s", value_name = "DURATION", value_parser = parse_lease)]
    lease: std::time::Duration,
}

/// `--listen`: `HOST:PORT` (`[::1]:7070` for an IPv6 address), the port from 0 to 65535, the
/// host one that resolves — checked before the store is opened, so a mistyped address leaves
/// no database behind.
fn parse_listen(text: &str) -> Result<String, String> {
    let bad = |why: &str| format!("`{text}`: {why} (give HOST:PORT, e.g. 127.0.0.1:7070)");
    if text.contains("://") {
        return Err(bad(
            "a URL, not an address to listen on: leave out the scheme",
        ));
    }
    let (host, port) = text.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    if host.is_empty() {
        return Err(bad("no host"));
    }
    port.parse::<u16>()
        .map_err(|_| bad("the port must be a number from 0 to 65535"))?;
    // A host that names no address (`256.1.1.1`, a name nobody resolves) is as wrong.
    use std::net::ToSocketAddrs as _;
    match text.to_socket_addrs().map(|mut addrs| addrs.next()) {
        Ok(Some(_)) => Ok(text.to_owned()),
        Ok(None) => Err(bad("the host has no address")),
        Err(e) => Err(bad(&format!("the host has no address ({e})"))),
    }
}

/// `--lease`: a duration from 1 s (a few of the loop's 200 ms ticks between renewals) to 10 min.
fn parse_lease(text: &str) -> Result<std::time::Duration, String> {
    let secs = duration_secs(text)?;
    if !(1.0..=600.0).contains(&secs) {
        return Err(format!("`{text}`: the lease must be from 1s to 10m"));
    }
    Ok(whole_millis(secs))
}

/// `500ms`, `2s`, `1.5s`, `1m`.
pub(crate) fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let secs = duration_secs(text)?;
    // Whole milliseconds, at least one: agents and the loss deadline count in milliseconds,
    // and a deadline of 0 would declare every node lost on every check.
    if !(0.001..=86_400.0).contains(&secs) {
        return Err(format!("`{text}` must be from 1ms to a day"));
    }
    Ok(whole_millis(secs))
}

/// `secs` (finite, not negative) to the nearest millisecond.
fn whole_millis(secs: f64) -> std::time::Duration {
    std::time::Duration::from_millis((secs * 1000.0).round() as u64)
}

/// Seconds in `500ms`, `2s`, `1.5s`, `1m` (a bare number is seconds), if finite.
fn duration_secs(text: &str) -> Result<f64, String> {
    let t = text.trim();
    // The unit is the trailing letters (`1e3ms` is 1e3 milliseconds, `1.5E1` seconds).
    let number = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = match &t[number.len()..] {
        "" => "s",
        unit => unit,
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. 500ms, 2s, 1m)"))?;
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        _ => return Err(format!("`{text}`: the unit must be ms, s or m")),
    };
    let secs = value * scale;
    if !secs.is_finite() {
        return Err(format!("`{text}` is not a finite duration"));
    }
    Ok(secs)
}

/// Manage API tokens.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Debug, clap::Subcommand)]
enum TokenCommand {
    /// Create a token for a tenant, or for node agents, and print it on stdout (the store keeps
    /// only its hash).
    #[command(
        after_help = "Examples:\n  export SWITCHYARD_TOKEN=$(switchyard token create --db sqlite://switchyard.db --tenant research)\n  AGENT_TOKEN=$(switchyard token create --db sqlite://switchyard.db --agent)"
    )]
    Create {
        #[command(flatten)]
        store: StoreArg,
        /// The tenant (team) the token acts for.
        #[arg(long, required_unless_present = "agent")]
        tenant: Option<String>,
        /// An admin token: sees and acts on every tenant's jobs (and may act as an agent).
        #[arg(long)]
        admin: bool,
        /// A token for node agents (`switchyard agent --token`): fleet-wide, no tenant's; it may
        /// use the agent endpoints only, not the jobs API.
        #[arg(long, conflicts_with_all = ["tenant", "admin"])]
        agent: bool,
    },
    /// List the database's tokens: id (the start of the token's SHA-256, which is all the store
    /// keeps), whom each acts for, when it was made.
    #[command(after_help = "Example:\n  switchyard token list --db sqlite://switchyard.db")]
    List {
        #[command(flatten)]
        store: StoreArg,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token, given itself or its id from `token list`: servers stop accepting it
    /// within 30 s (they cache a token's holder that long).
    #[command(
        after_help = "Examples:\n  switchyard token revoke --db sqlite://switchyard.db 3f9a1c0b7d2e\n  switchyard token revoke --db sqlite://switchyard.db \"$SWITCHYARD_TOKEN\""
    )]
    Revoke {
        #[command(flatten)]
        store: StoreArg,
        /// The token (`sy_…`), or its id: at least 6 leading hex digits of its SHA-256.
        #[arg(value_name = "TOKEN|ID")]
        token: String,
    },
}

/// The server's database, which the token verbs work on too.
#[derive(Debug, clap::Args)]
struct StoreArg {
    /// Database: sqlite://PATH (the server and `token create` create the file on first use) or
    /// postgres://USER@HOST/DB (several server replicas may share one; one of them schedules).
    #[arg(
        long,
        env = "SWITCHYARD_DB",
        default_value = "sqlite://switchyard.db",
        value_name = "URL"
    )]
    db: String,
}

/// Hex digits of a token's SHA-256 that `token list` shows as its id.
const TOKEN_ID_LEN: usize = 12;
/// The shortest id prefix `token revoke` takes.
const TOKEN_ID_MIN: usize = 6;

/// A token's id: the start of its SHA-256 (hex).
fn token_id(hash: &str) -> &str {
    &hash[..TOKEN_ID_LEN.min(hash.len())]
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Other(format!("cannot start the async runtime: {e}")))
}

pub fn run_server(args: ServerArgs) -> Result<(), CliError> {
    // Agents stop their gang ranks after --orphan-after (60 s by default) without an
    // answer, and only a leader answers them: a lease near that stops every gang when a
    // leader dies.
    if args.agents && args.lease >= std::time::Duration::from_secs(30) {
        tracing::warn!(
            lease = ?args.lease,
            "--lease is long for --agents: after a leader dies, agents wait this long for \
             the next one and stop their gang ranks after their --orphan-after (60 s by \
             default); keep the lease well below it"
        );
    }
    let agents = if args.agents {
        let root = checkpoint_root(&args.checkpoint_dir)?;
        Some(switchyard_server::agents::AgentSettings {
            heartbeat_interval: args.heartbeat_interval,
            lost_after: args.lost_after,
            checkpoint_root: root,
            ..Default::default()
        })
    } else {
        None
    };
    let fleet = load_fleet(args.fleet.as_deref())?;
    // Bound before the store is opened: an address this machine cannot serve (in use, not
    // one of its own) must not leave a new database behind.
    let listener = switchyard_server::bind(&args.listen).map_err(serve_error)?;
    let runtime = runtime()?;
    // One store for the server and for what its backend reads at start.
    let store = runtime
        .block_on(switchyard_store::connect(&args.store.db))
        .map_err(store_error)?;
    let backend = runtime.block_on(backend_for(&fleet, &store))?;
    let mut config = ServerConfig::new(fleet, args.store.db, args.listen);
    config.lease_ttl = args.lease;
    config.agents = agents;
    runtime
        .block_on(serve_bound(config, store, backend, listener, |addr| {
            // Whoever reads stdout may be gone; the server serves on regardless.
            let _ = crate::error::emit(&format!("listening on http://{addr}\n"));
        }))
        .map_err(serve_error)
}

/// The CLI's error for what stopped the server from serving.
fn serve_error(e: switchyard_server::ServerError) -> CliError {
    match e {
        // Not an address at all (a port in use is the machine's state, not bad input).
        switchyard_server::ServerError::Listen { ref source, .. }
            if source.kind() == std::io::ErrorKind::InvalidInput =>
        {
            CliError::Input(format!(
                "--listen: {e} (give HOST:PORT, e.g. 127.0.0.1:7070)"
            ))
        }
        e @ (switchyard_server::ServerError::FleetCannotRun { .. }
        | switchyard_server::ServerError::FleetDiffersFromLeader { .. }) => {
            CliError::Input(e.to_string())
        }
        switchyard_server::ServerError::Store(e) => store_error(e),
        other => CliError::Other(other.to_string()),
    }
}

/// The Slurm backend for the fleet's clusters with `backend = "slurm"` (docs/slurm.md), the
/// dry run for the rest (the server puts node agents in front of it with `--agents`). Its
/// Slurm jobs carry the tag `switchyard-` + the database's deployment id, so that another
/// deployment on the same Slurm cluster neither takes nor cancels them.
async fn backend_for(
    fleet: &switchyard_core::Fleet,
    store: &switchyard_store::AnyStore,
) -> Result<Box<dyn Backend>, CliError> {
    let slurm_clusters: Vec<String> = fleet
        .clusters
        .iter()
        .filter(|c| matches!(c.backend, switchyard_core::fleet::ClusterBackend::Slurm(_)))
        .map(|c| c.name.clone())
        .collect();
    if slurm_clusters.is_empty() {
        return Ok(Box::new(DryRun::default()));
    }
    let deployment = {
        use switchyard_store::StoreRead as _;
        store.deployment_id().await.map_err(store_error)?
    };
    let options = switchyard_slurm::Options {
        tag: format!("switchyard-{deployment}"),
        legacy_tag: Some("switchyard".into()),
        ..switchyard_slurm::Options::default()
    };
    match switchyard_slurm::SlurmBackend::from_fleet(fleet, options) {
        Ok(Some(slurm)) => Ok(Box::new(Routed::new(
            vec![(slurm_clusters, Box::new(slurm))],
            Box::new(DryRun::default()),
        ))),
        Ok(None) => Ok(Box::new(DryRun::default())),
        Err(e) => Err(CliError::Input(e.to_string())),
    }
}

pub fn run_token(args: TokenArgs) -> Result<(), CliError> {
    match args.command {
        TokenCommand::Create {
            store,
            tenant,
            admin,
            agent,
        } => create_token(store.db, tenant, admin, agent),
        TokenCommand::List { store, json } => list_tokens(&store.db, json),
        TokenCommand::Revoke { store, token } => revoke_token(&store.db, &token),
    }
}

fn store_error(e: switchyard_store::StoreError) -> CliError {
    match e {
        switchyard_store::StoreError::Url(_)
        | switchyard_store::StoreError::BadUrl { .. }
        | switchyard_store::StoreError::NoDatabase(_)
        | switchyard_store::StoreError::CannotOpen { .. } => CliError::Input(e.to_string()),
        switchyard_store::StoreError::Unreachable { .. } => CliError::Unreachable(e.to_string()),
        other => CliError::Other(other.to_string()),
    }
}

/// Whom a token acts for, in words.
fn holder(p: &switchyard_store::Principal) -> String {
    if p.agent {
        "node agents".to_owned()
    } else if p.admin {
        format!("tenant `{}` (admin)", p.tenant)
    } else {
        format!("tenant `{}`", p.tenant)
    }
}

fn list_tokens(db: &str, json: bool) -> Result<(), CliError> {
    use switchyard_store::StoreRead as _;
    let tokens = runtime()?
        .block_on(async { switchyard_store::connect_existing(db).await?.tokens().await })
        .map_err(store_error)?;
    let text = if json {
        let rows: Vec<serde_json::Value> = tokens
            .iter()
            .map(|t| {
                serde_json::json!({
                    "id": token_id(&t.hash),
                    "sha256": t.hash,
                    "tenant": (!t.principal.agent).then_some(&t.principal.tenant),
                    "admin": t.principal.admin,
                    "agent": t.principal.agent,
                    "created_ms": t.created_ms,
                })
            })
            .collect();
        format!(
            "{}\n",
            serde_json::to_string_pretty(&rows).map_err(|e| CliError::Other(e.to_string()))?
        )
    } else if tokens.is_empty() {
        format!(
            "no tokens in {} (create one with `switchyard token create`)\n",
            without_password(db)
        )
    } else {
        let mut t = crate::table::Table::new(["ID", "FOR", "CREATED (UTC)"]);
        for token in &tokens {
            t.row([
                token_id(&token.hash).to_owned(),
                holder(&token.principal),
                switchyard_server::leader::utc(token.created_ms),
            ]);
        }
        t.render()
    };
    crate::error::emit(&text)
}

fn revoke_token(db: &str, given: &str) -> Result<(), CliError> {
    use switchyard_store::StoreRead as _;
    let given = given.trim();
    let by_token = given.starts_with("sy_");
    let prefix = given.to_ascii_lowercase();
    if !by_token
        && (prefix.len() < TOKEN_ID_MIN
            || prefix.len() > 64
            || !prefix.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(CliError::Input(format!(
            "`{}` is neither a token (`sy_…`) nor a token id ({TOKEN_ID_MIN} to 64 hex digits, \
             as `switchyard token list` shows)",
            given.chars().take(80).collect::<String>()
        )));
    }
    let revoked = runtime()?.block_on(async {
        let store = switchyard_store::connect_existing(db).await?;
        let tokens = store.tokens().await?;
        let matching: Vec<&switchyard_store::TokenRecord> = if by_token {
            let hash = switchyard_store::hash_token(given);
            tokens.iter().filter(|t| t.hash == hash).collect()
        } else {
            tokens
                .iter()
                .filter(|t| t.hash.starts_with(&prefix))
                .collect()
        };
        match matching.as_slice() {
            [one] => {
                store.delete_token(&one.hash).await?;
                Ok(Ok((*one).clone()))
            }
            [] => Ok(Err(format!(
                "no token {} in {}: never created, or revoked already (revoking deletes it; \
                 `switchyard token list` shows those there are)",
                if by_token {
                    "like that"
                } else {
                    "with that id"
                },
                without_password(db)
            ))),
            many => Ok(Err(format!(
                "the id `{prefix}` matches {} tokens; give more of it",
                many.len()
            ))),
        }
    });
    let revoked = revoked.map_err(store_error)?.map_err(CliError::Input)?;
    crate::error::emit(&format!(
        "revoked token {} for {}; servers stop accepting it within 30 s\n",
        token_id(&revoked.hash),
        holder(&revoked.principal)
    ))
}

fn create_token(
    db: String,
    tenant: Option<String>,
    admin: bool,
    agent: bool,
) -> Result<(), CliError> {
    // `None`: an agent token.
    let tenant = match (tenant, agent) {
        (_, true) => None,
        (Some(t), false) => Some(t),
        (None, false) => {
            return Err(CliError::Input(
                "give --tenant NAME (or --agent for a node agent's token)".into(),
            ));
        }
    };
    if let Some(tenant) = &tenant
        && !switchyard_server::api::is_name(tenant)
    {
        return Err(CliError::Input(format!(
            "--tenant `{tenant}` must be 1 to 128 characters of letters, digits, `-`, `_` and `.`"
        )));
    }
    let token = runtime()?.block_on(async {
        let store = switchyard_store::connect(&db).await?;
        let token = switchyard_store::new_token()?;
        let now = switchyard_server::leader::now_ms();
        let hash = switchyard_store::hash_token(&token);
        match &tenant {
            Some(t) => store.insert_token(&hash, t, admin, now).await?,
            None => store.insert_agent_token(&hash, now).await?,
        }
        Ok::<_, switchyard_store::StoreError>(token)
    });
    let token = token.map_err(store_error)?;
    // On stderr, so `$(switchyard token create …)` still captures the token alone: where it
    // lives, because a server on another --db (or another directory) will not know it.
    let whom = holder(&switchyard_store::Principal {
        agent: tenant.is_none(),
        tenant: tenant.clone().unwrap_or_default(),
        admin,
    });
    eprintln!(
        "token for {whom} stored in {}; the server must run with that --db",
        without_password(&db)
    );
    crate::error::emit(&format!("{token}\n")).map_err(|e| {
        CliError::Other(format!(
            "the token was created but could not be written to stdout ({e}); it cannot be shown \
             again: create another"
        ))
    })
}

/// A database URL fit to print: the password of `scheme://user:password@host/…` masked.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((user_info, host)) if user_info.contains(':') => {
            let user = user_info.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

/// `dir` made absolute on the working directory with `.` and `..` taken out by their names
/// alone: agents on other hosts use the path, so this host's symbolic links say nothing about
/// it, and two replicas given the same directory from different working directories must
/// agree on it.
fn checkpoint_root(dir: &std::path::Path) -> Result<PathBuf, CliError> {
    use std::path::Component;
    let absolute = std::path::absolute(dir)
        .map_err(|e| CliError::Input(format!("--checkpoint-dir {}: {e}", dir.display())))?;
    let mut root = PathBuf::new();
    for part in absolute.components() {
        match part {
            Component::CurDir => {}
            // (`..` of the root is the root.)
            Component::ParentDir => {
                root.pop();
            }
            other => root.push(other),
        }
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::{checkpoint_root, parse_duration, without_password};

    #[test]
    fn checkpoint_roots_are_absolute_without_dots() {
        let cwd = std::env::current_dir().expect("cwd");
        let root = |d: &str| checkpoint_root(std::path::Path::new(d)).expect("a root");
        assert_eq!(
            root("/shared/./a/../ckpt"),
            std::path::Path::new("/shared/ckpt")
        );
        assert_eq!(root("/../ckpt"), std::path::Path::new("/ckpt"));
        assert_eq!(root("ckpt"), cwd.join("ckpt"));
        assert_eq!(root("../ckpt"), cwd.parent().unwrap_or(&cwd).join("ckpt"));
    }

    #[test]
    fn printed_database_urls_hide_the_password() {
        assert_eq!(
            without_password("postgres://sy:secret@db:5432/sy"),
            "postgres://sy:***@db:5432/sy"
        );
        assert_eq!(
            without_password("sqlite://switchyard.db"),
            "sqlite://switchyard.db"
        );
        assert_eq!(
            without_password("postgres://sy@db/sy"),
            "postgres://sy@db/sy"
        );
    }
    use std::time::Duration;

    #[test]
    fn durations_are_whole_milliseconds_from_one_to_a_day() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1ms"), Ok(Duration::from_millis(1)));
        // Exponents are numbers, the unit is the trailing letters.
        assert_eq!(parse_duration("1e3ms"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("1.5E1"), Ok(Duration::from_secs(15)));
        for bad in [
            "0.5ms", "0", "-1s", "2d", "x", "NaN", "inf", "25h", "1441m", "2e",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_duration("2d"),
            Err("`2d`: the unit must be ms, s or m".into())
        );
    }

    #[test]
    fn a_listen_address_needs_a_host_and_a_port() {
        use super::parse_listen;
        for ok in [
            "127.0.0.1:7070",
            "0.0.0.0:0",
            "[::1]:7070",
            "localhost:65535",
        ] {
            assert_eq!(parse_listen(ok).as_deref(), Ok(ok));
        }
        for (bad, why) in [
            ("127.0.0.1:99999", "from 0 to 65535"),
            ("127.0.0.1", "no port"),
            (":7070", "no host"),
            ("127.0.0.1:http", "from 0 to 65535"),
            ("256.1.1.1:80", "no address"),
            ("http://127.0.0.1:7070", "leave out the scheme"),
        ] {
            let e = parse_listen(bad).expect_err(bad);
            assert!(e.contains(why) && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn a_lease_is_from_a_second_to_ten_minutes() {
        use super::parse_lease;
        assert_eq!(parse_lease("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_lease("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_lease("10m"), Ok(Duration::from_secs(600)));
        let short = parse_lease("500ms").expect_err("too short");
        assert!(short.contains("from 1s to 10m"), "{short}");
        assert!(parse_lease("11m").is_err());
        // Whatever is out of range, the lease's own range is named.
        for out in ["0s", "0", "100000s", "0.5s"] {
            let e = parse_lease(out).expect_err("out of range");
            assert!(e.contains("from 1s to 10m"), "{out}: {e}");
        }
        assert!(
            parse_lease("soon")
                .expect_err("no duration")
                .contains("not a duration")
        );
    }
}
