//! `mofo landscape` (not implemented yet: placeholder until its issue lands).

use super::CliResult;

/// Arguments of `mofo landscape`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `mofo landscape`.
pub fn run(_args: Args) -> CliResult {
    Err("`mofo landscape` is not implemented yet".into())
}
