//! `switchyard plan` (being written).

use crate::CliError;

#[derive(Debug, clap::Args)]
pub struct PlanArgs {}

pub fn run(_args: PlanArgs) -> Result<(), CliError> {
    Err(CliError::Other("`plan` is not built yet".into()))
}
