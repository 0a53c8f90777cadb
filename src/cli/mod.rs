//! The `mofo` command line: one file per subcommand, each with its clap
//! arguments struct and a `run` function. `src/bin/mofo.rs` only parses and
//! dispatches.

use clap::{Parser, Subcommand};

pub mod bench;
#[cfg(feature = "cuda")]
pub mod bench_gpu;
pub mod bench_methods;
pub mod bench_train;
pub mod forgetting;
pub mod forward;
pub mod generate;
pub mod init_model;
pub mod landscape;
pub mod replay;
pub mod synthetic;
pub mod train;

/// Error type of the command line: any error, printed with its chain.
pub type CliError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result type of the command line.
pub type CliResult<T = ()> = Result<T, CliError>;

/// mofo: fine-tuning without forgetting (MoFO and its family).
#[derive(Debug, Parser)]
#[command(name = "mofo", version, about, long_about = None)]
pub struct Cli {
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The main job: pre-train a small Llama, fine-tune it with each method, and measure forgetting.
    Forgetting(forgetting::Args),
    /// Train or fine-tune on your own text file.
    Train(train::Args),
    /// Replay a `mofo-trace/1` optimizer trace and compare with its expected parameters.
    Replay(replay::Args),
    /// Write a randomly initialised Llama model in Hugging Face format.
    InitModel(init_model::Args),
    /// Run forward and backward of a model on token ids; write logits, loss and gradients.
    Forward(forward::Args),
    /// Generate text from a model (greedy or sampled, with a key/value cache).
    Generate(generate::Args),
    /// The paper's synthetic experiment (Appendix B.5, Table 4).
    Synthetic(synthetic::Args),
    /// The 2-D loss landscape of the paper's Example 1 with optimizer paths (PNG + CSV).
    Landscape(landscape::Args),
    /// Benchmarks: optimizer step and training throughput.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// `Err("{flag} must be at least 1")` where `value` is 0: for counts that a
/// zero would make meaningless (steps, batch sizes, pairs, shards,
/// parameters), of any unsigned integer type.
pub(crate) fn at_least_one<N: Copy + PartialEq + Default>(flag: &str, value: N) -> CliResult {
    if value == N::default() {
        return Err(format!("{flag} must be at least 1").into());
    }
    Ok(())
}

/// Bytes of memory this machine has available (`MemAvailable` of
/// `/proc/meminfo`; `None` where Linux does not report it).
pub(crate) fn available_memory() -> Option<u64> {
    crate::io::proc_kb::read_kb("/proc/meminfo", "MemAvailable").map(|kb| kb.saturating_mul(1024))
}

/// Refuses, before anything is allocated, a run whose buffers (`need`
/// bytes, described by `what`) exceed the `available` memory: a failed
/// allocation aborts the process, and an overcommitted one meets the
/// kernel's out-of-memory killer half-way through. `hint` says what to ask
/// for instead. Nothing is refused where `available` is unknown.
pub(crate) fn check_memory(need: u64, available: Option<u64>, what: &str, hint: &str) -> CliResult {
    match available {
        Some(available) if need > available => Err(format!(
            "{what} need about {:.1} GB, more than the {:.1} GB this machine has available; {hint}",
            need as f64 / 1e9,
            available as f64 / 1e9
        )
        .into()),
        _ => Ok(()),
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> CliResult {
    match cli.command {
        Command::Forgetting(a) => forgetting::run(a),
        Command::Train(a) => train::run(a),
        Command::Replay(a) => replay::run(a),
        Command::InitModel(a) => init_model::run(a),
        Command::Forward(a) => forward::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Synthetic(a) => synthetic::run(a),
        Command::Landscape(a) => landscape::run(a),
        Command::Bench(c) => bench::run(c),
    }
}

/// The most worker threads `--threads` may ask for: far more than the cores
/// of any machine these commands are meant for (oversubscribing a few cores
/// stays possible), and far fewer than the 100 000 with which starting the
/// pool ran out of memory maps and aborted the process (std cannot set up a
/// thread's guard page, and rayon has no error to return for that).
pub(crate) const MAX_THREADS: usize = 1024;

/// Sets the size of the global worker pool (once per process): `--threads`
/// from 1 to [`MAX_THREADS`].
pub(crate) fn init_threads(threads: Option<usize>) -> CliResult {
    if let Some(n) = threads {
        at_least_one("--threads", n)?;
        if n > MAX_THREADS {
            return Err(format!("--threads must be at most {MAX_THREADS}, not {n}").into());
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| format!("cannot start {n} worker threads: {e}"))?;
    }
    Ok(())
}
