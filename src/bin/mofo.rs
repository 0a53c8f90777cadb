//! The `mofo` binary: parses the command line and runs it (see `mofo::cli`).

use clap::Parser;

fn main() {
    default_sigpipe();
    let cli = mofo::cli::Cli::parse();
    if let Err(err) = mofo::cli::run(cli) {
        eprintln!("error: {err}");
        let mut source = err.source();
        while let Some(cause) = source {
            eprintln!("  caused by: {cause}");
            source = cause.source();
        }
        std::process::exit(1);
    }
}

/// Gives SIGPIPE back its default action (end the process), which Rust's
/// runtime replaces with "ignore" before `main`: a write to a closed pipe
/// (`mofo … | head`) then ends the process as it ends `cat`, where it would
/// make every `println!` panic. Checkpoints, models and the JSON and CSV
/// results are written under a temporary name and renamed into place
/// (`mofo::io::write_atomic`), so a process ended this way leaves each of
/// them whole, the old version or the new.
fn default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: `signal` with a valid signal number and `SIG_DFL` only sets
    // the process's disposition; called first in `main`, before any thread
    // of ours exists or any handler of ours is installed.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
