//! The `mofo` binary: parses the command line and runs it (see `mofo::cli`).

use clap::Parser;

fn main() {
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
