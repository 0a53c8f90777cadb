//! `mofo generate` (not implemented yet: placeholder until its issue lands).

use super::CliResult;

/// Arguments of `mofo generate`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `mofo generate`.
pub fn run(_args: Args) -> CliResult {
    Err("`mofo generate` is not implemented yet".into())
}
