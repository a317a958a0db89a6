//! The `switchyard` binary: every verb a user types.

mod error;
mod fleet_cmd;
mod plan_cmd;
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}
