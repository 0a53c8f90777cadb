//! `mofo bench optim --device cuda[:N]` (feature `cuda`): the AdamW step and
//! the MoFO-AdamW step (α = 0.1) of the GPU optimizer on the same
//! GPT-2-small-shaped tensors as the CPU benchmark, with the gradients
//! already on the device (`GpuOptimizer::step_resident`), each step timed
//! to the stream's completion. Bytes per step are counted as on the CPU: 28
//! per parameter (read θ, g, m, v; write θ, m, v), against the card's
//! device-to-device copy bandwidth (read + write) measured in the same run.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::bench::OptimArgs;
use super::CliResult;
use crate::cuda::gpu::{GpuBase, GpuContext, GpuFilter, GpuOptimizer};
use crate::optim::workload::{count, gpt2_shapes, gpt2_shapes_for, random_stores};
use crate::optim::{Adam, BaseSpec, HugePages};

/// Median ms of `reps` calls of `f` after `warmup`, each call waited for.
fn median_ms(
    gpu: &GpuContext,
    f: &mut dyn FnMut() -> CliResult,
    warmup: usize,
    reps: usize,
) -> CliResult<f64> {
    for _ in 0..warmup.max(1) {
        f()?;
    }
    gpu.synchronize()?;
    let mut ts = Vec::with_capacity(reps.max(1));
    for _ in 0..reps.max(1) {
        let t0 = Instant::now();
        f()?;
        gpu.synchronize()?;
        ts.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    Ok(crate::bench::median(&mut ts))
}

/// Runs the GPU optimizer benchmark on device `ordinal`.
pub fn run(a: &OptimArgs, ordinal: usize) -> CliResult {
    let shapes = match a.params {
        Some(n) => gpt2_shapes_for(n),
        None => gpt2_shapes(0.25),
    };
    let n = count(&shapes);
    let gpu = Arc::new(GpuContext::new(ordinal)?);
    let (params, grads) = random_stores(&shapes, 0, HugePages::Off);
    let blocks: Vec<(String, Vec<f32>, bool)> = params
        .iter()
        .map(|p| (p.name.clone(), p.as_slice().to_vec(), true))
        .collect();
    let grads: Vec<&[f32]> = grads.iter().map(|g| g.as_slice()).collect();
    let base = GpuBase::from_spec(&BaseSpec::Adam(Adam::adamw(1e-5)));
    let mut adam = GpuOptimizer::new(gpu.clone(), base, GpuFilter::None, 1.0, false, &blocks)?;
    let mut mofo = GpuOptimizer::new(gpu.clone(), base, GpuFilter::Momentum, 0.1, false, &blocks)?;
    drop(blocks);
    adam.upload_grads(&grads)?;
    mofo.upload_grads(&grads)?;
    let adam_ms = median_ms(&gpu, &mut || Ok(adam.step_resident()?), a.warmup, a.reps)?;
    let mofo_ms = median_ms(&gpu, &mut || Ok(mofo.step_resident()?), a.warmup, a.reps)?;
    let alternated = super::bench::alternated_ratio(
        &mut |use_mofo| {
            if use_mofo {
                mofo.step_resident()?;
            } else {
                adam.step_resident()?;
            }
            gpu.synchronize()?;
            Ok(())
        },
        a.pairs,
    )?;
    let upload_ms = median_ms(&gpu, &mut || Ok(adam.upload_grads(&grads)?), 1, a.reps)?;
    let launches = (adam.launches_per_step(), mofo.launches_per_step());
    drop((adam, mofo));
    let copy_gbs = copy_bandwidth(&gpu, n, a.reps)?;
    let gbs = |ms: f64| 28.0 * n as f64 / (ms * 1e6);
    let name = gpu.name()?;
    println!(
        "GPU optimizer step on {n} parameters ({} tensors), {name}, median of {} steps after {} untimed, gradients on the device",
        shapes.len(),
        a.reps.max(1),
        a.warmup.max(1)
    );
    println!(
        "  AdamW      {adam_ms:8.3} ms/step  {:8.1} GB/s  ({} launches)",
        gbs(adam_ms),
        launches.0
    );
    println!(
        "  MoFO-AdamW {mofo_ms:8.3} ms/step  {:8.1} GB/s  ({} launches)  α = 0.1",
        gbs(mofo_ms),
        launches.1
    );
    println!(
        "  MoFO/Adam ratio {:.3}, alternated step by step (median of {} pairs) {alternated:.3}",
        mofo_ms / adam_ms,
        a.pairs.max(1)
    );
    println!(
        "  device-to-device copy {copy_gbs:.1} GB/s (read + write): AdamW reaches {:.0}%, MoFO {:.0}%",
        100.0 * gbs(adam_ms) / copy_gbs,
        100.0 * gbs(mofo_ms) / copy_gbs
    );
    println!(
        "  gradient upload from the host (not in the steps above): {upload_ms:.2} ms ({:.1} GB/s)",
        4.0 * n as f64 / (upload_ms * 1e6)
    );
    if let Some(p) = &a.json {
        let j = json!({
            "device": name,
            "params": n,
            "reps": a.reps.max(1),
            "warmup": a.warmup.max(1),
            "adam_ms": adam_ms,
            "mofo_ms": mofo_ms,
            "adam_ns_per_param": adam_ms * 1e6 / n as f64,
            "mofo_ns_per_param": mofo_ms * 1e6 / n as f64,
            "ratio": mofo_ms / adam_ms,
            "pairs": a.pairs.max(1),
            "ratio_alternated": alternated,
            "adam_gb_per_s": gbs(adam_ms),
            "mofo_gb_per_s": gbs(mofo_ms),
            "copy_gb_per_s": copy_gbs,
            "adam_launches": launches.0,
            "mofo_launches": launches.1,
            "upload_ms": upload_ms,
        });
        crate::io::write_atomic(p, serde_json::to_string_pretty(&j)?.as_bytes())?;
    }
    Ok(())
}

/// The card's streaming bandwidth: the median of `reps` device-to-device
/// copies of 4·n floats (the size of θ, g, m and v), bytes read + written.
fn copy_bandwidth(gpu: &GpuContext, n: usize, reps: usize) -> CliResult<f64> {
    let stream = gpu.stream();
    let src = stream.alloc_zeros::<f32>(4 * n)?;
    let mut dst = stream.alloc_zeros::<f32>(4 * n)?;
    let ms = median_ms(
        gpu,
        &mut || Ok(stream.memcpy_dtod(&src, &mut dst)?),
        2,
        reps,
    )?;
    Ok(2.0 * 16.0 * n as f64 / (ms * 1e6))
}
