//! The machine's peak f32 FLOP/s, measured: every thread runs a loop of
//! independent fused multiply-adds on the widest vectors the CPU has (16
//! lanes with AVX-512, else 8 with AVX2+FMA; 10 accumulators, to hide the FMA
//! latency), so the figure is cores × FMA units × lanes × 2 FLOP × clock, as
//! reached on this machine now (turbo, AVX-512 clock reduction and sharing
//! included). The matmuls use the same width: `matrixmultiply` runs its
//! AVX-512 kernel when the CPU has AVX-512F (its default `avx512` feature,
//! compiled in from Rust 1.89), else its AVX2/FMA one. Without AVX2+FMA the
//! portable loop measures what the compiler makes of it.

use std::time::Instant;

/// Independent accumulators of the FMA loop.
const ACCUMULATORS: u64 = 10;

/// f32 lanes of the FMA loop on this CPU: 16 with AVX-512F, 8 otherwise.
pub fn fma_lanes() -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return 16;
        }
    }
    8
}

/// FLOPs of one call of [`fma_loop`] with `iters` iterations: 10 vectors ×
/// [`fma_lanes`] lanes × 2 FLOP per iteration.
pub fn flops_per_call(iters: u64) -> f64 {
    (iters * ACCUMULATORS * fma_lanes() as u64 * 2) as f64
}

/// Runs `iters` iterations of 10 independent FMAs [`fma_lanes`] wide;
/// returns the sum of every lane of every accumulator (so nothing is
/// optimised away).
pub fn fma_loop(iters: u64) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked just above).
            return unsafe { fma_loop_avx512(iters) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { fma_loop_avx2(iters) };
        }
    }
    fma_loop_portable(iters, fma_lanes())
}

/// [`fma_loop`] on 16-lane AVX-512 vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_loop_avx512(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let a = _mm512_set1_ps(0.999_999);
    let b = _mm512_set1_ps(1e-7);
    let mut acc = [_mm512_set1_ps(1.0); ACCUMULATORS as usize];
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = _mm512_fmadd_ps(*x, a, b);
        }
    }
    let mut sum = _mm512_setzero_ps();
    for x in acc {
        sum = _mm512_add_ps(sum, x);
    }
    _mm512_reduce_add_ps(sum)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_loop_avx2(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let a = _mm256_set1_ps(0.999_999);
    let b = _mm256_set1_ps(1e-7);
    let mut acc = [_mm256_set1_ps(1.0); ACCUMULATORS as usize];
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = _mm256_fmadd_ps(*x, a, b);
        }
    }
    let mut out = [0f32; 8];
    let mut sum = _mm256_setzero_ps();
    for x in acc {
        sum = _mm256_add_ps(sum, x);
    }
    _mm256_storeu_ps(out.as_mut_ptr(), sum);
    out.iter().sum()
}

/// The same computation without intrinsics on `lanes` lanes (reference and
/// fallback).
pub fn fma_loop_portable(iters: u64, lanes: usize) -> f32 {
    let mut acc = vec![vec![1.0f32; lanes]; ACCUMULATORS as usize];
    for _ in 0..iters {
        for v in acc.iter_mut() {
            for x in v.iter_mut() {
                *x = x.mul_add(0.999_999, 1e-7);
            }
        }
    }
    acc.iter().flatten().sum()
}

/// Measured peak f32 FLOP/s with `threads` threads running [`fma_loop`]
/// concurrently for about `seconds` (best of 3 rounds).
pub fn measure_peak_flops(threads: usize, seconds: f64) -> f64 {
    let iters = 20_000_000u64;
    let t0 = Instant::now();
    std::hint::black_box(fma_loop(iters / 20));
    let per_call = t0.elapsed().as_secs_f64() * 20.0;
    let calls = ((seconds / 3.0) / per_call.max(1e-9)).ceil().max(1.0) as u64;
    let mut best = 0.0f64;
    for _ in 0..3 {
        let t = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads.max(1) {
                s.spawn(|| {
                    for _ in 0..calls {
                        std::hint::black_box(fma_loop(std::hint::black_box(iters)));
                    }
                });
            }
        });
        let flops = flops_per_call(iters) * calls as f64 * threads.max(1) as f64;
        best = best.max(flops / t.elapsed().as_secs_f64());
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_loop_matches_portable_reference() {
        let (a, b) = (fma_loop(1000), fma_loop_portable(1000, fma_lanes()));
        assert!((a - b).abs() <= 1e-4 * b.abs(), "{a} vs {b}");
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_width_matches_portable_reference() {
        if std::arch::is_x86_feature_detected!("avx512f") {
            let want = fma_loop_portable(1000, 16);
            // SAFETY: the CPU supports AVX-512F (checked just above).
            let got = unsafe { fma_loop_avx512(1000) };
            assert!((got - want).abs() <= 1e-4 * want.abs(), "{got} vs {want}");
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            let want = fma_loop_portable(1000, 8);
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            let got = unsafe { fma_loop_avx2(1000) };
            assert!((got - want).abs() <= 1e-4 * want.abs(), "{got} vs {want}");
        }
    }
}
