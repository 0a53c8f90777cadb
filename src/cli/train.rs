//! `mofo train` (not implemented yet: placeholder until its issue lands).

use super::CliResult;

/// Arguments of `mofo train`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `mofo train`.
pub fn run(_args: Args) -> CliResult {
    Err("`mofo train` is not implemented yet".into())
}
