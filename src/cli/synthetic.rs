//! `mofo synthetic`: the paper's synthetic experiment (Appendix B.5, Table 4)
//! with the crate's optimizers; see `mofo::experiments::synthetic`.

use std::path::PathBuf;

use super::CliResult;
use crate::experiments::synthetic::{format_table, run_study, Method, SyntheticConfig};
use crate::io::write_atomic;

/// Arguments of `mofo synthetic`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Dimension n of L_ft(θ) = Π_i (a_i·θ_i − b_i)².
    #[arg(long, default_value_t = 4)]
    pub n: usize,
    /// Number of random instances (seeds 0..SEEDS).
    #[arg(long, default_value_t = 3)]
    pub seeds: usize,
    /// Learning-rate grid searched per optimizer (comma separated).
    #[arg(long, value_delimiter = ',', default_values_t = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1])]
    pub lrs: Vec<f64>,
    /// Iteration budget per run.
    #[arg(long, default_value_t = 10_000)]
    pub max_iters: usize,
    /// A run converges when L_ft < TOL.
    #[arg(long, default_value_t = 1e-6)]
    pub tol: f64,
    /// λ of the L1/L2 pulls toward θ_pre.
    #[arg(long, default_value_t = 1e-3)]
    pub reg: f64,
    /// Optimizers to run, comma separated (default: all of adam, mofo, lion,
    /// random_bcd, hft, l1_pull, l2_pull).
    #[arg(long, value_delimiter = ',')]
    pub optimizers: Vec<String>,
    /// Also write the results as JSON (format "mofo-synthetic/1") to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// Runs `mofo synthetic`.
pub fn run(args: Args) -> CliResult {
    let methods = if args.optimizers.is_empty() {
        Method::ALL.to_vec()
    } else {
        args.optimizers
            .iter()
            .map(|s| Method::parse(s.trim()))
            .collect::<Result<_, _>>()?
    };
    let cfg = SyntheticConfig {
        n: args.n,
        seeds: args.seeds,
        lrs: args.lrs,
        max_iters: args.max_iters,
        tol: args.tol,
        reg: args.reg,
        methods,
    };
    let report = run_study(&cfg)?;
    print!("{}", format_table(&report));
    if let Some(path) = args.json {
        let mut text = serde_json::to_string_pretty(&report)?;
        text.push('\n');
        write_atomic(&path, text.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
