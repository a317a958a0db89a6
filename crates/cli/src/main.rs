//! The `switchyard` binary: every verb a user types.

mod agent_cmd;
mod client;
mod client_cmd;
mod demo_cmd;
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
    /// Set how many replicas an inference service runs.
    Scale(client_cmd::ScaleArgs),
    /// Show a job's events and why it waits.
    Events(client_cmd::EventsArgs),
    /// Print a job's output (every rank's stdout and stderr); --follow to keep printing.
    Logs(client_cmd::LogsArgs),
    /// Show pending jobs with why each waits, and usage per tenant.
    Queue(client_cmd::QueueArgs),
    /// Run a node agent: register this host and run what the server places on it.
    Agent(agent_cmd::AgentArgs),
    /// The nodes the server's agents registered, their state and the jobs on them.
    Nodes(client_cmd::NodesArgs),
    /// The whole system on this machine: server, agents, a training run that survives a node
    /// failure, an inference service — narrated.
    Demo(demo_cmd::DemoArgs),
    /// The example workload (`switchyard-workload`): data-parallel SGD over TCP with
    /// checkpoints; `switchyard workload --help` for its flags.
    #[command(disable_help_flag = true)]
    Workload {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Internal to `switchyard agent --state-dir`: runs one process and records how it ended,
    /// so that an agent restarted in place learns its exit code (docs/agent.md).
    #[command(hide = true)]
    RecordExit {
        /// Where the exit code or signal is written.
        #[arg(long)]
        status: std::path::PathBuf,
        /// Start the program as this uid (with --gid); the recorder stays the agent's.
        #[arg(long, requires = "gid")]
        uid: Option<u32>,
        #[arg(long, requires = "uid")]
        gid: Option<u32>,
        /// The program's working directory, entered as --uid.
        #[arg(long, requires = "uid")]
        cwd: Option<std::path::PathBuf>,
        /// The program and its arguments.
        #[arg(last = true, required = true)]
        argv: Vec<std::ffi::OsString>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::RecordExit {
        status,
        uid,
        gid,
        cwd,
        argv,
    } = &cli.command
    {
        // Before logging is set up: whatever the recorder printed would land in the
        // process's own output.
        let user = uid
            .zip(*gid)
            .map(|(uid, gid)| switchyard_agent::exit_record::RunAsIds {
                uid,
                gid,
                cwd: cwd.as_deref(),
            });
        return agent_cmd::record_exit(status, user, argv);
    }
    // The demo narrates what matters itself; its server's warnings (a lost node) are the story.
    // A server or an agent runs for months: what it did (a lease taken, a node registered or
    // drained, a process started) is its log. A command that answers and ends only warns.
    let default_level = match cli.command {
        Command::Demo(_) => "error",
        Command::Server(_) | Command::Agent(_) => "info",
        _ => "warn",
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SWITCHYARD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        // Colours for a person at a terminal; a log file or a pipe gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // Long-running processes stamp their lines for the log they go to; a command that
    // answers and ends warns the person who typed it, without a timestamp or a module path.
    if matches!(
        cli.command,
        Command::Server(_) | Command::Agent(_) | Command::Demo(_)
    ) {
        logs.init();
    } else {
        logs.without_time().with_target(false).init();
    }
    let result = match cli.command {
        Command::Workload { args } => {
            return switchyard_workload::cli::main_from(
                std::iter::once(std::ffi::OsString::from("switchyard workload")).chain(args),
            );
        }
        Command::Demo(args) => demo_cmd::run(args),
        Command::Fleet(args) => fleet_cmd::run(args),
        Command::Plan(args) => plan_cmd::run(args),
        Command::Simulate(args) => simulate_cmd::run(args),
        Command::Server(args) => server_cmd::run_server(args),
        Command::Token(args) => server_cmd::run_token(args),
        Command::Submit(args) => client_cmd::submit(args),
        Command::Status(args) => client_cmd::status(args),
        Command::Cancel(args) => client_cmd::cancel(args),
        Command::Scale(args) => client_cmd::scale(args),
        Command::Events(args) => client_cmd::events(args),
        Command::Logs(args) => client_cmd::logs(args),
        Command::Queue(args) => client_cmd::queue(args),
        Command::Agent(args) => agent_cmd::run(args),
        Command::Nodes(args) => client_cmd::nodes(args),
        Command::RecordExit { .. } => unreachable!("handled before logging is set up"),
    };
    match result {
        Ok(()) | Err(CliError::PipeClosed) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    /// Every flag and argument of every verb says in `--help` what it is for (the hidden
    /// ones and the workload's pass-through arguments aside).
    #[test]
    fn every_flag_says_what_it_is_for() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.is_hide_set() || matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.is_hide_set() || sub.get_name() == "workload" {
                    continue;
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "switchyard", &mut missing);
        assert!(missing.is_empty(), "no help: {missing:#?}");
    }

    /// Every verb that does something (not one that only groups others) shows an example.
    #[test]
    fn every_verb_has_an_example() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let example = cmd
                .get_after_help()
                .is_some_and(|h| h.to_string().contains("Example"));
            if !cmd.has_subcommands() && !example {
                missing.push(path.to_owned());
            }
            for sub in cmd.get_subcommands() {
                if sub.is_hide_set() || sub.get_name() == "help" {
                    continue;
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        for sub in super::Cli::command().get_subcommands() {
            // The workload's own help lives in its crate (checked there).
            if sub.is_hide_set() || matches!(sub.get_name(), "help" | "workload") {
                continue;
            }
            walk(sub, &format!("switchyard {}", sub.get_name()), &mut missing);
        }
        assert!(missing.is_empty(), "no example: {missing:#?}");
    }
}
