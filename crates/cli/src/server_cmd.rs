//! `switchyard server` and `switchyard token create` (tenant, admin and agent tokens).

use std::io::Write as _;
use std::path::PathBuf;

use switchyard_server::backend::{Backend, DryRun};
use switchyard_server::{ServerConfig, serve_with};
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
    /// Database: sqlite://PATH (created on first start) or postgres://USER@HOST/DB (several
    /// replicas may share one; one of them schedules).
    #[arg(
        long,
        env = "SWITCHYARD_DB",
        default_value = "sqlite://switchyard.db",
        value_name = "URL"
    )]
    db: String,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:7070", value_name = "ADDR")]
    listen: String,
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
        /// The server's database.
        #[arg(
            long,
            env = "SWITCHYARD_DB",
            default_value = "sqlite://switchyard.db",
            value_name = "URL"
        )]
        db: String,
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
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Other(format!("cannot start the async runtime: {e}")))
}

pub fn run_server(args: ServerArgs) -> Result<(), CliError> {
    let fleet = load_fleet(args.fleet.as_deref())?;
    let backend = backend_for(&fleet)?;
    let config = ServerConfig::new(fleet, args.db, args.listen);
    runtime()?
        .block_on(serve_with(config, backend, |addr| {
            println!("listening on http://{addr}");
            let _ = std::io::stdout().flush();
        }))
        .map_err(|e| match e {
            switchyard_server::ServerError::Store(switchyard_store::StoreError::Url(_)) => {
                CliError::Input(e.to_string())
            }
            other => CliError::Other(other.to_string()),
        })
}

/// The Slurm backend when the fleet has clusters with `backend = "slurm"` (docs/slurm.md), else
/// the dry run. A fleet mixing Slurm and agent clusters sends every placement to Slurm's backend
/// until a per-cluster router exists (issue 7's notes).
fn backend_for(fleet: &switchyard_core::Fleet) -> Result<Box<dyn Backend>, CliError> {
    match switchyard_slurm::SlurmBackend::from_fleet(fleet, switchyard_slurm::Options::default()) {
        Ok(Some(slurm)) => Ok(Box::new(slurm)),
        Ok(None) => Ok(Box::new(DryRun::default())),
        Err(e) => Err(CliError::Input(e.to_string())),
    }
}

pub fn run_token(args: TokenArgs) -> Result<(), CliError> {
    let TokenCommand::Create {
        db,
        tenant,
        admin,
        agent,
    } = args.command;
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
    if let Some(tenant) = &tenant {
        let valid = !tenant.is_empty()
            && tenant.len() <= 128
            && tenant
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(CliError::Input(format!(
                "--tenant `{tenant}` must be 1 to 128 characters of letters, digits, `-`, `_` and `.`"
            )));
        }
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
    let token = token.map_err(|e| match e {
        switchyard_store::StoreError::Url(_) => CliError::Input(e.to_string()),
        other => CliError::Other(other.to_string()),
    })?;
    println!("{token}");
    Ok(())
}
