//! The `switchyard` binary: every verb a user types.

mod agent_cmd;
mod client;
mod client_cmd;
mod error;
mod fleet_cmd;
mod plan_cmd;
mod server_cmd;
mod simulate_cmd;
mod table;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use error::CliError;

/// Switchyard: one control plane for AI compute sourced from many providers.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect and validate fleets and the accelerator catalog.
    Fleet(fleet_cmd::FleetArgs),
    /// Predict how fast a model trains or serves on given hardware, and pick its layout.
    Plan(plan_cmd::PlanArgs),
    /// Replay a trace (or the frontier-lab scenario) through the scheduler on a virtual clock.
    Simulate(simulate_cmd::SimulateArgs),
    /// Run the control plane: HTTP API, scheduling loop, store (docs/api.md).
    Server(server_cmd::ServerArgs),
    /// Manage API tokens.
    Token(server_cmd::TokenArgs),
    /// Submit a job file to the server (docs/jobs.md).
    Submit(client_cmd::SubmitArgs),
    /// Show one job, or list your jobs.
    Status(client_cmd::StatusArgs),
    /// Cancel a job.
    Cancel(client_cmd::CancelArgs),
    /// Show a job's events and why it waits.
    Events(client_cmd::EventsArgs),
    /// Print a job's output (every rank's stdout and stderr); --follow to keep printing.
    Logs(client_cmd::LogsArgs),
    /// Show pending jobs with why each waits, and usage per tenant.
    Queue(client_cmd::QueueArgs),
    /// Run a node agent: register this host and run what the server places on it.
    Agent(agent_cmd::AgentArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SWITCHYARD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Fleet(args) => fleet_cmd::run(args),
        Command::Plan(args) => plan_cmd::run(args),
        Command::Simulate(args) => simulate_cmd::run(args),
        Command::Server(args) => server_cmd::run_server(args),
        Command::Token(args) => server_cmd::run_token(args),
        Command::Submit(args) => client_cmd::submit(args),
        Command::Status(args) => client_cmd::status(args),
        Command::Cancel(args) => client_cmd::cancel(args),
        Command::Events(args) => client_cmd::events(args),
        Command::Logs(args) => client_cmd::logs(args),
        Command::Queue(args) => client_cmd::queue(args),
        Command::Agent(args) => agent_cmd::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}
