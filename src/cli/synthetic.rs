//! `mofo synthetic` (not implemented yet: placeholder until its issue lands).

use super::CliResult;

/// Arguments of `mofo synthetic`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `mofo synthetic`.
pub fn run(_args: Args) -> CliResult {
    Err("`mofo synthetic` is not implemented yet".into())
}
