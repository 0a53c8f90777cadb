//! `mofo bench train --config S|M|L [--threads T] [--steps N] [--shards K]
//! [--json FILE]`:
//! training throughput (forward + backward + AdamW) in tokens/s and GFLOP/s
//! (6·N·tokens, as the PyTorch script counts), the share of the
//! machine's peak f32 FLOP/s measured in the same run (`crate::bench::peak`),
//! and the process's peak resident memory (`crate::bench::memory`).

use std::path::PathBuf;

use serde_json::json;

use super::CliResult;
use crate::bench::peak::{fma_lanes, measure_peak_flops};
use crate::bench::train::{run_train_bench, TrainBenchConfig};

/// Arguments of `mofo bench train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Model configuration: S (0.82M parameters), M (4.9M) or L (25M); see ../shared/bench/README.md.
    #[arg(long, default_value = "S")]
    pub config: String,
    /// Threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Timed steps (the median is reported), after 2 warm-up steps.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Skip measuring the machine's peak FLOP/s.
    #[arg(long)]
    pub no_peak: bool,
    /// Shards of the batch run side by side (1: one tape for the whole batch).
    #[arg(long, default_value_t = crate::model::shard::SHARDS)]
    pub shards: usize,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Runs `mofo bench train`.
pub fn run(a: TrainArgs) -> CliResult {
    let cfg = TrainBenchConfig::preset(&a.config)
        .ok_or_else(|| format!("unknown --config `{}` (expected S, M or L)", a.config))?;
    super::at_least_one("--shards", a.shards)?;
    super::at_least_one("--steps", a.steps)?;
    super::init_threads(a.threads)?;
    let threads = rayon::current_num_threads();
    let r = run_train_bench(&cfg, 2, a.steps, 0, a.shards)?;
    let rss_kb = crate::bench::memory::peak_resident_kb();
    let peak = (!a.no_peak).then(|| measure_peak_flops(threads, 3.0));
    println!(
        "train {}: {} parameters, {} tokens/step in {} shards, {threads} threads, median of {} steps",
        cfg.name,
        r.params,
        r.tokens_per_step,
        cfg.batch.min(a.shards),
        a.steps
    );
    println!(
        "  {:.1} ms/step  {:.0} tokens/s  {:.1} GFLOP/s (6·N·tokens)  final loss {:.3}",
        r.ms_per_step, r.tokens_per_s, r.approx_gflops, r.last_loss
    );
    println!("  f32 products: {}", crate::kernels::gemm::f32_kernel());
    if let Some(kb) = rss_kb {
        println!("  peak resident memory {kb} kB (VmHWM, the whole process)");
    }
    if let Some(p) = peak {
        println!(
            "  measured peak {:.1} GFLOP/s ({threads} threads of {}-wide FMA): {:.1}% reached",
            p / 1e9,
            fma_lanes(),
            100.0 * r.approx_gflops * 1e9 / p
        );
    }
    if let Some(path) = &a.json {
        let j = json!({
            "config": cfg.name,
            "params": r.params,
            "threads": threads,
            "tokens_per_step": r.tokens_per_step,
            "shards": cfg.batch.min(a.shards),
            "ms_per_step": r.ms_per_step,
            "tokens_per_s": r.tokens_per_s,
            "approx_gflops": r.approx_gflops,
            "peak_gflops": peak.map(|p| p / 1e9),
            "peak_share": peak.map(|p| r.approx_gflops * 1e9 / p),
            "peak_fma_lanes": fma_lanes(),
            "final_loss": r.last_loss,
            "gemm_kernel": crate::kernels::gemm::f32_kernel(),
            "peak_rss_kb": rss_kb,
        });
        crate::io::write_atomic(path, serde_json::to_string_pretty(&j)?.as_bytes())?;
    }
    Ok(())
}
