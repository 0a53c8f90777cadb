//! `mofo bench optim|train` (not implemented yet: placeholder until its issue lands).

use super::CliResult;

/// The benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// One optimizer step (Adam and MoFO-Adam) on GPT-2-small-shaped tensors.
    Optim,
    /// Training throughput (forward + backward + AdamW) of the S or M model.
    Train,
}

/// Runs a benchmark.
pub fn run(_cmd: BenchCommand) -> CliResult {
    Err("`mofo bench` is not implemented yet".into())
}
