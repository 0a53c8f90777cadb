//! `mofo bench optim`: one optimizer step of AdamW and of MoFO-AdamW
//! (α = 0.1) on GPT-2-small-shaped tensors (width scale 0.25, ≈40M
//! parameters by default), reported as ns/parameter, GB/s (28 bytes per
//! parameter for Adam: read θ, g, m, v, write θ, m, v) and the MoFO/Adam ratio;
//! with `--methods`, the rest of the family too (`bench_methods.rs`); with
//! `--device cuda`, the GPU optimizer's steps (`bench_gpu.rs`). It ends with
//! a digest of θ after every step it ran (FNV-1a 64 of the values' bits),
//! the same for any `--threads`: the results' thread-count invariance,
//! checked by comparing two runs.
//! `mofo bench train` is in `bench_train.rs`.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;

use super::bench_methods::{parse_methods, time_methods, GRADIENT_SETS};
use super::CliResult;
use crate::bench::bandwidth::{measure_read_bandwidth, measure_stream_bandwidth, StreamArrays};
use crate::optim::workload::{count, gpt2_shapes, gpt2_shapes_for, random_stores};
use crate::optim::{
    Adam, Clip, FiniteGrads, HugePages, Momentum, NoFilter, OptimConfig, Optimizer, StepPhases,
};

/// Arguments of `mofo bench optim`.
#[derive(Debug, clap::Args)]
pub struct OptimArgs {
    /// Approximate number of parameters (default: GPT-2 small at width scale 0.25, ≈40M).
    #[arg(long)]
    pub params: Option<usize>,
    /// Threads (default: rayon's default, all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Timed steps per optimizer (the median is reported).
    #[arg(long, default_value_t = 7)]
    pub reps: usize,
    /// Untimed steps per optimizer before the timed ones. The default times
    /// the steady state of a run: MoFO's threshold forecast needs a few
    /// steps, and in the first ones |m| grows by a large factor per step
    /// (m = (1 − β₁ᵗ)·g for a fixed g), so they run its histogram pass.
    #[arg(long, default_value_t = 30)]
    pub warmup: usize,
    /// Pairs of alternated steps (AdamW then MoFO, MoFO then AdamW, in
    /// turn) for the MoFO/Adam ratio taken side by side: the median of the
    /// per-pair ratios, which a slow drift of the machine's speed moves far
    /// less than the ratio of two medians taken a second apart.
    #[arg(long, default_value_t = 15)]
    pub pairs: usize,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Keep every buffer on the pages it gets (`HugePages::Off`, and the
    /// benchmark's parameters and gradients not advised either), to measure
    /// what 2 MiB pages bring.
    #[arg(long)]
    pub no_huge_pages: bool,
    /// Also time these methods of the family on the same tensors, each as a
    /// ratio to this run's AdamW: a comma-separated list of `mofo train
    /// --method` names (adamw, mofo, adam, nadam, rmsprop, sgd, lion,
    /// lion_mofo, grad_bcd, mv_bcd, gv_bcd, random_bcd, hft), or `all` for
    /// those thirteen.
    #[arg(long)]
    pub methods: Option<String>,
    /// Clip the gradients to this global L2 norm in every step timed (AdamW,
    /// MoFO-AdamW and the family), as `mofo train --grad-clip` does (1.0 by
    /// default there). The benchmark's gradients have a norm of about 7.4,
    /// so every step clips. Default: no clipping.
    #[arg(long)]
    pub grad_clip: Option<f64>,
    /// Where the steps run: `cpu`, or `cuda` / `cuda:N` (a build with the
    /// `cuda` feature; AdamW and MoFO-AdamW only, `bench_gpu.rs`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// The GPU ordinal of `--device`: `None` for `cpu`, `Some(N)` for `cuda` (0)
/// or `cuda:N`; anything else is an error.
pub fn parse_device(device: &str) -> CliResult<Option<usize>> {
    match device {
        "cpu" => Ok(None),
        "cuda" => Ok(Some(0)),
        _ => match device.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => Ok(Some(n)),
            _ => Err(format!("--device must be cpu, cuda or cuda:N, got `{device}`").into()),
        },
    }
}

/// The benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// One optimizer step (Adam and MoFO-Adam) on GPT-2-small-shaped tensors.
    Optim(OptimArgs),
    /// Training throughput (forward + backward + AdamW) of the S, M or L model.
    Train(super::bench_train::TrainArgs),
}

/// Runs a benchmark.
pub fn run(cmd: BenchCommand) -> CliResult {
    match cmd {
        BenchCommand::Optim(a) => run_optim(a),
        BenchCommand::Train(a) => super::bench_train::run(a),
    }
}

/// Median ns per call of `f` over `reps` timed calls after `warmup`, and
/// the medians (ms) of the two phases `f` reports per call
/// (`Optimizer::last_step_phases`).
fn median_ns(
    f: &mut dyn FnMut() -> Result<StepPhases, super::CliError>,
    warmup: usize,
    reps: usize,
) -> Result<(f64, [f64; 2]), super::CliError> {
    for _ in 0..warmup.max(1) {
        f()?;
    }
    let mut ts = Vec::with_capacity(reps);
    let (mut reads, mut updates) = (Vec::new(), Vec::new());
    for _ in 0..reps.max(1) {
        let t0 = Instant::now();
        let ph = f()?;
        ts.push(t0.elapsed().as_nanos() as f64);
        reads.push(ph.read_only.as_secs_f64() * 1e3);
        updates.push(ph.update.as_secs_f64() * 1e3);
    }
    let median = crate::bench::median;
    Ok((median(&mut ts), [median(&mut reads), median(&mut updates)]))
}

/// MoFO/Adam taken side by side: `step(false)` runs an AdamW step,
/// `step(true)` a MoFO step; over `pairs` pairs, each timed back to back
/// (AdamW first in even pairs, MoFO first in odd ones, so that neither
/// always runs on the other's leftovers), the median of the per-pair ratios.
pub(super) fn alternated_ratio(
    step: &mut dyn FnMut(bool) -> Result<(), super::CliError>,
    pairs: usize,
) -> Result<f64, super::CliError> {
    let mut ratios = Vec::with_capacity(pairs.max(1));
    for i in 0..pairs.max(1) {
        let mofo_first = i % 2 == 1;
        let mut ns = [0.0f64; 2];
        for mofo in [mofo_first, !mofo_first] {
            let t0 = Instant::now();
            step(mofo)?;
            ns[usize::from(mofo)] = t0.elapsed().as_nanos() as f64;
        }
        ratios.push(ns[1] / ns[0]);
    }
    Ok(crate::bench::median(&mut ratios))
}

/// Bytes per parameter that `mofo bench optim` holds at its peak: θ, g,
/// the two optimizers' m and v, and the streaming measurement's arrays
/// (36.8 B measured at 40.6M parameters, 39.9 B with `--methods all`,
/// rounded up).
const BYTES_PER_PARAM: u64 = 40;

/// [`super::check_memory`] for `n` parameters at [`BYTES_PER_PARAM`].
fn fits_in_memory(n: usize, available: Option<u64>) -> CliResult {
    super::check_memory(
        (n as u64).saturating_mul(BYTES_PER_PARAM),
        available,
        &format!("{n} parameters ({BYTES_PER_PARAM} B each)"),
        "ask for fewer with --params",
    )
}

fn run_optim(a: OptimArgs) -> CliResult {
    super::at_least_one("--reps", a.reps)?;
    super::at_least_one("--pairs", a.pairs)?;
    if let Some(n) = a.params {
        super::at_least_one("--params", n)?;
    }
    if let Some(ordinal) = parse_device(&a.device)? {
        let cpu_only = [
            ("--methods", a.methods.is_some()),
            ("--threads", a.threads.is_some()),
            ("--no-huge-pages", a.no_huge_pages),
            ("--grad-clip", a.grad_clip.is_some()),
        ];
        if let Some((flag, _)) = cpu_only.iter().find(|(_, given)| *given) {
            return Err(format!(
                "{flag} applies to --device cpu only (the GPU benchmark times AdamW and MoFO-AdamW on the device)"
            )
            .into());
        }
        #[cfg(feature = "cuda")]
        return super::bench_gpu::run(&a, ordinal);
        #[cfg(not(feature = "cuda"))]
        return Err(format!(
            "--device cuda:{ordinal}: this mofo was built without the `cuda` feature (cargo build --release --features cuda)"
        )
        .into());
    }
    let shapes = match a.params {
        Some(n) => gpt2_shapes_for(n),
        None => gpt2_shapes(0.25),
    };
    let n = count(&shapes);
    fits_in_memory(n, super::available_memory())?;
    let method_names = a.methods.as_deref().map(parse_methods).transpose()?;
    super::init_threads(a.threads)?;
    let threads = rayon::current_num_threads();
    let huge = if a.no_huge_pages {
        HugePages::Off
    } else {
        HugePages::Use
    };
    if let Some(c) = a.grad_clip {
        if !(c.is_finite() && c > 0.0) {
            return Err(format!("--grad-clip must be a positive finite norm, not {c}").into());
        }
    }
    let clip = Clip {
        max_norm: a.grad_clip,
        max_value: None,
    };
    let config = OptimConfig {
        huge_pages: huge,
        clip,
        ..OptimConfig::default()
    };
    let (mut params, grads) = random_stores(&shapes, 0, huge);
    let mut adam = Optimizer::new(NoFilter, Adam::adamw(1e-5), config.clone(), &params)?;
    let (adam_ns, adam_phases) = median_ns(
        &mut || {
            adam.step(&mut params, &grads)?;
            Ok(adam.last_step_phases())
        },
        a.warmup,
        a.reps,
    )?;
    let huge_bytes = crate::kernels::huge_pages::process_huge_page_bytes();
    // The same steps on gradients the caller has checked (the training
    // loop's path): the check is made once, outside the timed steps.
    let finite = FiniteGrads::check(&grads).map_err(|e| e.to_string())?;
    let (adam_finite_ns, _) = median_ns(
        &mut || {
            adam.step_finite(&mut params, finite)?;
            Ok(adam.last_step_phases())
        },
        a.warmup,
        a.reps,
    )?;
    let shared = config.clone();
    let mut mofo = Optimizer::new(Momentum::new(0.1), Adam::adamw(1e-5), config, &params)?;
    let (mofo_ns, mofo_phases) = median_ns(
        &mut || {
            mofo.step(&mut params, &grads)?;
            Ok(mofo.last_step_phases())
        },
        a.warmup,
        a.reps,
    )?;
    let (mofo_finite_ns, _) = median_ns(
        &mut || {
            mofo.step_finite(&mut params, finite)?;
            Ok(mofo.last_step_phases())
        },
        a.warmup,
        a.reps,
    )?;
    let (hits, misses, crowded) = mofo.fused_path_counts();
    let (single, redone) = mofo.fused_single_pass_counts();
    let (cands, cands_of) = mofo.fused_single_pass_candidates();
    let band_share = cands as f64 / cands_of.max(1) as f64;
    // Both optimizers are warm: now the two side by side, step by step.
    let alternated = alternated_ratio(
        &mut |use_mofo| {
            if use_mofo {
                mofo.step(&mut params, &grads)?;
            } else {
                adam.step(&mut params, &grads)?;
            }
            Ok(())
        },
        a.pairs,
    )?;
    let alternated_finite = alternated_ratio(
        &mut |use_mofo| {
            if use_mofo {
                mofo.step_finite(&mut params, finite)?;
            } else {
                adam.step_finite(&mut params, finite)?;
            }
            Ok(())
        },
        a.pairs,
    )?;
    // The share of the entries that the alternated (warm) MoFO steps ran
    // in a single pass: their blocks' lengths over every entry of each step.
    let mofo_alternated_steps = 2 * a.pairs.max(1) as u64;
    let warm_single_share = (mofo.fused_single_pass_candidates().1 - cands_of) as f64
        / (n as u64 * mofo_alternated_steps) as f64;
    // Every step above ran on the same θ: its digest after them is the
    // same for any thread count (the selection and the sums are fixed by
    // the data alone), which two runs with different `--threads` show.
    let digest = crate::bench::values_digest(&params);
    drop(mofo);
    // AdamW's default step next to the bound of a checked step, pair by
    // pair, on stream arrays of the same length; then the two streams'
    // medians on the same arrays. θ is put back after these steps, so that
    // the family's steps below start from the θ the digest saw.
    let theta: Vec<Vec<f32>> = params.iter().map(|p| p.as_slice().to_vec()).collect();
    let mut streams = StreamArrays::new(n);
    // Pair by pair, a step and one read-only plus one 4-read/3-write pass
    // (in turn first): the median of bound / step, the share of the
    // bound's speed the step reaches.
    let bound_share = alternated_ratio(
        &mut |bound| {
            if bound {
                streams.time_checked_bound();
            } else {
                adam.step(&mut params, &grads)?;
            }
            Ok(())
        },
        a.pairs,
    )?;
    let stream = measure_stream_bandwidth(&mut streams, a.reps);
    let read_stream = measure_read_bandwidth(&streams, a.reps);
    drop(streams);
    for (p, saved) in params.iter_mut().zip(&theta) {
        p.as_slice_mut().copy_from_slice(saved);
    }
    drop(theta);
    drop(adam);
    let methods = match &method_names {
        Some(names) => time_methods(
            names,
            &mut params,
            &std::iter::once(grads)
                .chain((1..GRADIENT_SETS as u64).map(|seed| random_stores(&shapes, seed, huge).1))
                .collect::<Vec<_>>(),
            &shared,
            a.warmup,
            a.reps,
            median_ns,
        )?,
        None => {
            drop(grads);
            Vec::new()
        }
    };
    let methods_digest = (!methods.is_empty()).then(|| crate::bench::values_digest(&params));
    drop(params);
    // A checked step at both streams: g read once for the check, then the
    // update's 28 bytes per parameter (ms).
    let checked_bound_ms = (4.0 * n as f64 / read_stream + 28.0 * n as f64 / stream) / 1e6;
    let check_gbs = if adam_phases[0] > 0.0 {
        4.0 * n as f64 / (adam_phases[0] * 1e6)
    } else {
        0.0
    };
    let adam_pp = adam_ns / n as f64;
    let mofo_pp = mofo_ns / n as f64;
    let gbs = |ns: f64| 28.0 * n as f64 / ns;
    println!(
        "optimizer step on {n} parameters ({} tensors), {threads} threads, median of {} steps after {} untimed, loops on {}",
        shapes.len(),
        a.reps,
        a.warmup.max(1),
        crate::kernels::simd::vector_width_name()
    );
    if let Some(c) = a.grad_clip {
        println!("  every step clips the gradients to global norm {c} (--grad-clip)");
    }
    println!(
        "  AdamW      {adam_pp:8.3} ns/param  {:7.2} GB/s  ({:.1} ms/step)",
        gbs(adam_ns),
        adam_ns / 1e6
    );
    println!(
        "  MoFO-AdamW {mofo_pp:8.3} ns/param  {:7.2} GB/s  ({:.1} ms/step)  α = 0.1",
        gbs(mofo_ns),
        mofo_ns / 1e6
    );
    println!("  MoFO/Adam ratio {:.3}", mofo_ns / adam_ns);
    println!(
        "  on gradients checked by the caller (step_finite): AdamW {:.3} ns/param {:.2} GB/s ({:.1} ms), MoFO-AdamW {:.3} ns/param ({:.1} ms), ratio {:.3}",
        adam_finite_ns / n as f64,
        gbs(adam_finite_ns),
        adam_finite_ns / 1e6,
        mofo_finite_ns / n as f64,
        mofo_finite_ns / 1e6,
        mofo_finite_ns / adam_finite_ns
    );
    println!(
        "  MoFO/Adam alternated step by step (median of {} pairs' ratios): {alternated:.3}, on checked gradients {alternated_finite:.3}",
        a.pairs.max(1)
    );
    println!(
        "  phases (median ms): AdamW gradient check {:.1} + update {:.1}; MoFO pass 0 {:.1} + pass 1 {:.1}",
        adam_phases[0], adam_phases[1], mofo_phases[0], mofo_phases[1]
    );
    // θ, g, m, v: the buffers an AdamW step streams.
    let step_bytes = 16 * n as u64;
    if let Some(h) = huge_bytes {
        println!(
            "  on 2 MiB pages during the AdamW steps: {:.0} of the {:.0} MB they stream ({:.0}%)",
            h as f64 / 1e6,
            step_bytes as f64 / 1e6,
            100.0 * h as f64 / step_bytes as f64
        );
    }
    println!(
        "  MoFO thresholds over blocks × steps: {hits} forecast ({single} in a single pass), {misses} by histogram or redone ({redone} single passes redone), {crowded} crowded (general step); the single passes' bands held {:.3}% of their blocks' entries",
        100.0 * band_share
    );
    println!(
        "  warm MoFO steps (the {mofo_alternated_steps} alternated ones): {:.1}% of their entries in a single pass",
        100.0 * warm_single_share
    );
    println!(
        "  streaming bandwidth (same 4-read/3-write pattern, {n} entries) {stream:.2} GB/s: Adam reaches {:.0}% ({:.0}% on checked gradients)",
        100.0 * gbs(adam_ns) / stream,
        100.0 * gbs(adam_finite_ns) / stream
    );
    println!(
        "  read-only streaming bandwidth (one array, {n} entries) {read_stream:.2} GB/s: the AdamW gradient check reads g at {:.0}% of it; a checked step at both streams takes {checked_bound_ms:.1} ms, AdamW {:.0}% of that speed",
        100.0 * check_gbs / read_stream,
        100.0 * checked_bound_ms / (adam_ns / 1e6)
    );
    println!(
        "  AdamW's default step next to that bound, alternated step by step (median of {} pairs' ratios): {:.0}% of the bound's speed",
        a.pairs.max(1),
        100.0 * bound_share
    );
    println!(
        "  θ after every AdamW and MoFO step above: FNV-1a 64 {digest:016x} (bit for bit the same for any --threads)"
    );
    if !methods.is_empty() {
        println!(
            "  the family (α = 0.1) on gradients that change every step ({GRADIENT_SETS} seeded draws in turn), median ms/step and ratio to the AdamW above:"
        );
    }
    for m in &methods {
        let (hits, misses, crowded) = m.thresholds;
        let paths = if hits + misses + crowded > 0 {
            format!("  thresholds {hits} forecast, {misses} histogram or redone, {crowded} crowded")
        } else {
            String::new()
        };
        println!(
            "    {:<11} {:<17} {:8.1} ms  {:8.3} ns/param  {:6.2}× AdamW{paths}",
            m.name,
            m.describe,
            m.ns / 1e6,
            m.ns / n as f64,
            m.ns / adam_ns
        );
    }
    if let Some(d) = methods_digest {
        println!(
            "  θ after the family's steps too: FNV-1a 64 {d:016x} (the same for any --threads)"
        );
    }
    if let Some(p) = &a.json {
        // Outside the object below: one more nesting passes json!'s
        // recursion limit.
        let methods_json: Vec<_> = methods
            .iter()
            .map(|m| {
                json!({
                    "method": m.name,
                    "optimizer": m.describe,
                    "ms": m.ns / 1e6,
                    "ns_per_param": m.ns / n as f64,
                    "ratio_to_adamw": m.ns / adam_ns,
                    "thresholds_forecast": m.thresholds.0,
                    "thresholds_histogram_or_redone": m.thresholds.1,
                    "thresholds_crowded": m.thresholds.2,
                })
            })
            .collect::<Vec<_>>();
        let j = json!({
            "params": n,
            "threads": threads,
            "reps": a.reps,
            "warmup": a.warmup.max(1),
            "adam_ns_per_param": adam_pp,
            "mofo_ns_per_param": mofo_pp,
            "ratio": mofo_ns / adam_ns,
            "adam_finite_ns_per_param": adam_finite_ns / n as f64,
            "mofo_finite_ns_per_param": mofo_finite_ns / n as f64,
            "ratio_finite": mofo_finite_ns / adam_finite_ns,
            "pairs": a.pairs.max(1),
            "ratio_alternated": alternated,
            "ratio_finite_alternated": alternated_finite,
            "adam_check_ms": adam_phases[0],
            "adam_update_ms": adam_phases[1],
            "mofo_pass0_ms": mofo_phases[0],
            "mofo_pass1_ms": mofo_phases[1],
            "adam_gb_per_s": gbs(adam_ns),
            "mofo_gb_per_s": gbs(mofo_ns),
            "stream_gb_per_s": stream,
            "adam_bandwidth_share": gbs(adam_ns) / stream,
            "read_stream_gb_per_s": read_stream,
            "adam_check_read_share": check_gbs / read_stream,
            "checked_step_bound_ms": checked_bound_ms,
            "adam_checked_bound_share_alternated": bound_share,
            "mofo_forecast_hits": hits,
            "mofo_histogram_passes": misses,
            "mofo_crowded_blocks": crowded,
            "mofo_single_passes": single,
            "mofo_single_passes_redone": redone,
            "mofo_band_share": band_share,
            "mofo_warm_single_pass_share": warm_single_share,
            "huge_pages": !a.no_huge_pages,
            "grad_clip": a.grad_clip,
            "huge_page_bytes": huge_bytes,
            "step_buffer_bytes": step_bytes,
            "vector_width": crate::kernels::simd::vector_width_name(),
            "methods": methods_json,
            "params_digest": format!("{digest:016x}"),
            "params_digest_after_methods": methods_digest.map(|d| format!("{d:016x}")),
        });
        crate::io::write_atomic(p, serde_json::to_string_pretty(&j)?.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_larger_than_the_memory_available_is_refused() {
        let n = 1_000_000_000;
        let need = n as u64 * BYTES_PER_PARAM;
        assert!(fits_in_memory(n, Some(need)).is_ok());
        assert!(fits_in_memory(n, None).is_ok());
        let err = fits_in_memory(n, Some(need - 1)).unwrap_err().to_string();
        assert!(
            err.contains("1000000000 parameters (40 B each) need about 40.0 GB"),
            "{err}"
        );
        assert!(fits_in_memory(usize::MAX, Some(u64::MAX - 1)).is_err());
    }
}
