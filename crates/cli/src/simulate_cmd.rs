//! `switchyard simulate` (being written).

use crate::CliError;

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {}

pub fn run(_args: SimulateArgs) -> Result<(), CliError> {
    Err(CliError::Other("`simulate` is not built yet".into()))
}
