//! `mofo replay` (not implemented yet: placeholder until its issue lands).

use super::CliResult;

/// Arguments of `mofo replay`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `mofo replay`.
pub fn run(_args: Args) -> CliResult {
    Err("`mofo replay` is not implemented yet".into())
}
