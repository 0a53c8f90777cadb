//! `mofo forward` (not implemented yet: placeholder until its issue lands).

use super::CliResult;

/// Arguments of `mofo forward`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `mofo forward`.
pub fn run(_args: Args) -> CliResult {
    Err("`mofo forward` is not implemented yet".into())
}
