//! `mofo forgetting` (not implemented yet: placeholder until its issue lands).

use super::CliResult;

/// Arguments of `mofo forgetting`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `mofo forgetting`.
pub fn run(_args: Args) -> CliResult {
    Err("`mofo forgetting` is not implemented yet".into())
}
