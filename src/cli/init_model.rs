//! `mofo init-model` (not implemented yet: placeholder until its issue lands).

use super::CliResult;

/// Arguments of `mofo init-model`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `mofo init-model`.
pub fn run(_args: Args) -> CliResult {
    Err("`mofo init-model` is not implemented yet".into())
}
