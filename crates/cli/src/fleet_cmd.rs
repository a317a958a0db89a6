//! `switchyard fleet` (being written).

use crate::CliError;

#[derive(Debug, clap::Args)]
pub struct FleetArgs {}

pub fn run(_args: FleetArgs) -> Result<(), CliError> {
    Err(CliError::Other("`fleet` is not built yet".into()))
}
