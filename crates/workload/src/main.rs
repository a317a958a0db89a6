//! `switchyard-workload`: the example training program. See `docs/workload.md`.

fn main() -> std::process::ExitCode {
    switchyard_workload::cli::main_from(std::env::args_os())
}
