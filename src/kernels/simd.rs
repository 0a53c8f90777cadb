//! Runtime dispatch to wider vector instructions for the per-entry loops.
//!
//! The crate is built for baseline x86-64 (SSE2, 4 f32 lanes) so that the
//! binary runs on any x86-64 machine. [`with_wide_simd`] runs a closure
//! inside a function compiled for AVX2 when the CPU has it, so the
//! optimizer's per-entry loops, inlined into it, are vectorised 8 lanes wide.
//!
//! Results do not change: only plain IEEE operations are vectorised (add,
//! multiply, divide, square root, compare, select), each correctly rounded
//! per lane whatever the width; Rust never contracts a multiply and an add
//! into a fused multiply-add, so no FMA appears either. The optimizer tests
//! (reference traces, bit-exactness between paths, thread-count invariance)
//! run through this dispatch.

/// Runs `f`, compiled for AVX2 when the CPU supports it (module docs).
#[inline(always)]
pub fn with_wide_simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above), the only
            // requirement of calling a function compiled for it.
            return unsafe { run_avx2(f) };
        }
    }
    f()
}

/// `f()` compiled with AVX2 enabled (its body is inlined here).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_loops_round_like_narrow_ones() {
        let a: Vec<f32> = (1..10_000).map(|i| (i as f32 * 0.37).sin() + 1.5).collect();
        let narrow: Vec<f32> = a
            .iter()
            .map(|x| (x.sqrt() / 3.0 + 1e-8) * 0.9 + x / 7.0)
            .collect();
        let wide = with_wide_simd(|| {
            a.iter()
                .map(|x| (x.sqrt() / 3.0 + 1e-8) * 0.9 + x / 7.0)
                .collect::<Vec<f32>>()
        });
        assert_eq!(narrow, wide);
    }
}
