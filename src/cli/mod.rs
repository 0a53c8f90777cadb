//! The `mofo` command line: one file per subcommand, each with its clap
//! arguments struct and a `run` function. `src/bin/mofo.rs` only parses and
//! dispatches.

use clap::{Parser, Subcommand};

pub mod bench;
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

impl Command {
    /// The `--threads` the command asks for, where it has that option.
    pub fn threads(&self) -> Option<usize> {
        match self {
            Command::Forgetting(a) => a.threads,
            Command::Train(a) => a.threads,
            Command::Bench(bench::BenchCommand::Optim(a)) => a.threads,
            Command::Bench(bench::BenchCommand::Train(a)) => a.threads,
            _ => None,
        }
    }
}

/// Runs a parsed command line: starts the worker pool (`--threads`, or one
/// thread per core) and runs the command on one of its workers
/// ([`on_worker`]).
pub fn run(cli: Cli) -> CliResult {
    init_threads(cli.command.threads())?;
    on_worker(|| dispatch(cli.command))
}

/// Runs `f` on a worker of the global pool and waits for it.
///
/// Called from outside the pool (the process's main thread), every parallel
/// kernel would hand its tasks to the pool's workers, put the calling thread
/// to sleep and be woken when they are done: a `futex` wake of a sleeping
/// worker and one of the caller for each of the ~700 parallel kernels of a
/// training step of S, which took 12% of the samples of a 2-thread profile
/// (`try_to_wake_up`, docs/performance.md). On a worker, the caller takes
/// part in its own kernels and never sleeps between them.
pub fn on_worker<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

fn dispatch(command: Command) -> CliResult {
    match command {
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

/// Stack of each worker thread: the main thread's usual 8 MiB, since every
/// command runs on a worker ([`on_worker`]).
const WORKER_STACK_BYTES: usize = 8 << 20;

/// Starts the global worker pool with `threads` workers, or one per core.
/// The pool lives as long as the process: a later call (a second command
/// run in the same process) keeps it, and fails only when it asks for a
/// different number of threads.
fn init_threads(threads: Option<usize>) -> CliResult {
    if threads == Some(0) {
        return Err("--threads must be at least 1".into());
    }
    let built = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.unwrap_or(0))
        .stack_size(WORKER_STACK_BYTES)
        .build_global();
    match (built, threads) {
        (Ok(()), _) | (Err(_), None) => Ok(()),
        (Err(_), Some(n)) if rayon::current_num_threads() == n => Ok(()),
        (Err(e), Some(n)) => Err(format!("cannot start {n} worker threads: {e}").into()),
    }
}
