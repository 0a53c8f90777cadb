//! `mofo landscape`: the 2-D landscape of the paper's Example 1 with optimizer
//! paths (Appendix B.4, Figure 3); see `mofo::experiments::landscape`.

use std::path::PathBuf;

use super::CliResult;
use crate::experiments::example1::Example1;
use crate::experiments::landscape::{compute_paths, draw_png, paths_csv, problem, LandscapeConfig};
use crate::io::write_atomic;

/// Arguments of `mofo landscape`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output directory (created): landscape.png and landscape_paths.csv.
    #[arg(long, default_value = "landscape")]
    pub out: PathBuf,
    /// Coefficients a_1,a_2 of L_ft = (a_1·θ_1 − b_1)²·(a_2·θ_2 − b_2)².
    #[arg(long, value_delimiter = ',', num_args = 1, default_values_t = [1.0, 1.0])]
    pub a: Vec<f64>,
    /// Coefficients b_1,b_2.
    #[arg(long, value_delimiter = ',', num_args = 1, default_values_t = [1.0, 1.0])]
    pub b: Vec<f64>,
    /// Learning rate of every path.
    #[arg(long, default_value_t = 1e-2)]
    pub lr: f64,
    /// Step budget per path.
    #[arg(long, default_value_t = 10_000)]
    pub max_iters: usize,
    /// A path stops when L_ft < TOL.
    #[arg(long, default_value_t = 1e-6)]
    pub tol: f64,
    /// λ of the L1 pull toward θ_pre.
    #[arg(long, default_value_t = 1e-2)]
    pub reg: f64,
    /// Slope of the rank-1 LoRA line θ_2 = slope·θ_1.
    #[arg(long, default_value_t = 0.5)]
    pub lora_slope: f64,
    /// Seed of the random-coordinate path.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

fn pair(name: &str, v: &[f64]) -> Result<[f64; 2], String> {
    match v {
        [x, y] => Ok([*x, *y]),
        _ => Err(format!(
            "--{name} needs exactly two values, got {}",
            v.len()
        )),
    }
}

/// Runs `mofo landscape`.
pub fn run(args: Args) -> CliResult {
    let cfg = LandscapeConfig {
        a: pair("a", &args.a)?,
        b: pair("b", &args.b)?,
        lr: args.lr,
        max_iters: args.max_iters,
        tol: args.tol,
        reg: args.reg,
        lora_slope: args.lora_slope,
        seed: args.seed,
    };
    let p = problem(&cfg)?;
    let paths = compute_paths(&cfg)?;
    std::fs::create_dir_all(&args.out)?;
    let png = args.out.join("landscape.png");
    let csv = args.out.join("landscape_paths.csv");
    draw_png(&p, &paths, &png)?;
    write_atomic(&csv, paths_csv(&p, &paths).as_bytes())?;
    println!(
        "{:<32} {:>6} {:>10} {:>10} {:>10} {:>10} {:>9}",
        "path", "steps", "theta1", "theta2", "distance", "L_pre", "converged"
    );
    for t in &paths {
        let e = t.end();
        println!(
            "{:<32} {:>6} {:>10.4} {:>10.4} {:>10.4} {:>10.4} {:>9}",
            t.name,
            t.points.len() - 1,
            e[0],
            e[1],
            Example1::distance(&e),
            Example1::pre_loss(&e),
            t.converged
        );
    }
    println!("wrote {} and {}", png.display(), csv.display());
    Ok(())
}
