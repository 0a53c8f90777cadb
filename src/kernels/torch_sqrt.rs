//! The square root exactly as PyTorch's CPU tensor `sqrt` computes it.
//!
//! On x86-64, `torch.sqrt` of a float32 tensor runs Intel MKL's vector math
//! kernel `vsSqrt` in its high-accuracy mode. That kernel is not correctly
//! rounded: it starts from the hardware estimate y ≈ 1/√x (`rsqrtps`, 12
//! bits) and applies one coupled Newton–Goldschmidt correction, every
//! operation a separately rounded float32 multiply or add:
//!
//! ```text
//! s  = x·y             (≈ √x)          h  = 0.5·y          (≈ 1/(2√x))
//! r  = 0.5 − s·h
//! s₁ = s·r + s                         h₁ = h·r + h
//! √x ≈ (x − s₁·s₁)·h₁ + s₁
//! ```
//!
//! The result is within 0.75 ulp of √x and differs from the correctly
//! rounded square root on about 16% of inputs. Zero, subnormal, negative,
//! infinite and NaN inputs, and inputs above 0x7f7ff000 (where s₁² could
//! overflow), take MKL's exact path, which returns the IEEE square root.
//!
//! Why it matters: at the first step of an mv or gv filter (and of MoFO on
//! RMSProp), every score is |g|/(|g|+ε) up to rounding, so all scores of a
//! block tie and the last bit of the square root decides which entries are
//! selected. The optimizer's filter scores (and RMSProp's denominator, whose
//! momentum buffer is MoFO's score) use [`torch_sqrt_f32`] so that those
//! selections agree with PyTorch's (`Scalar::torch_sqrt`). This was pinned
//! down by disassembling `mkl_vml_kernel_sSqrt_EXHAynn` in PyTorch 2.15's
//! `libtorch_cpu.so` and matches `torch.sqrt` bit for bit on 2·10⁵ random
//! inputs on the machine that made the reference traces.
//!
//! The estimate comes from the CPU's own `rsqrtps`, whose exact values are
//! specified only to 1.5·2⁻¹² relative error and differ between CPU vendors,
//! exactly as they do for MKL. Other targets use the IEEE square root.
//!
//! This is MKL's path on the AMD CPUs the reference traces were made on.
//! On Intel CPUs MKL dispatches to another kernel: on an Intel Xeon
//! (2026-12-01, PyTorch 2.15) `torch.sqrt` matched the IEEE square root on
//! 99.3% of 2·10⁵ random inputs in [10⁻³, 10] and this function on 84.7%,
//! so there the tie-decided selections follow neither exactly
//! (`tests/optim_traces.rs`).

/// The smallest input bit pattern MKL's fast path takes (the smallest normal).
const FAST_MIN_BITS: u32 = 0x0080_0000;
/// The largest input bit pattern MKL's fast path takes.
const FAST_MAX_BITS: u32 = 0x7f7f_f000;

/// `sqrt(x)` rounded as PyTorch's (MKL's) CPU float32 `sqrt` rounds it.
#[inline(always)]
pub fn torch_sqrt_f32(x: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if (FAST_MIN_BITS..=FAST_MAX_BITS).contains(&x.to_bits()) {
            return refine(x, rsqrt_estimate(x));
        }
    }
    x.sqrt()
}

/// The hardware reciprocal square-root estimate `rsqrtss`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn rsqrt_estimate(x: f32) -> f32 {
    use std::arch::x86_64::{_mm_cvtss_f32, _mm_rsqrt_ss, _mm_set_ss};
    // SAFETY: SSE is part of the x86-64 baseline, so every x86-64 CPU has
    // these instructions; they only move a value through an xmm register.
    unsafe { _mm_cvtss_f32(_mm_rsqrt_ss(_mm_set_ss(x))) }
}

/// MKL's correction of an estimate `y ≈ 1/√x` (module docs), each operation
/// rounded separately (Rust never contracts these into fused multiply-adds).
#[inline(always)]
fn refine(x: f32, y: f32) -> f32 {
    let s = x * y;
    let h = y * 0.5;
    let r = 0.5 - s * h;
    let s1 = s * r + s;
    let h1 = h * r + h;
    let d = x - s1 * s1;
    d * h1 + s1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance from the exact square root in units of the result's ulp.
    fn error_ulps(x: f32, y: f32) -> f64 {
        let exact = (x as f64).sqrt();
        let ulp = {
            let r = exact as f32;
            (f32::from_bits(r.to_bits() + 1) - r) as f64
        };
        (y as f64 - exact).abs() / ulp
    }

    #[test]
    fn within_three_quarters_of_an_ulp_and_often_not_correctly_rounded() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let (mut differs, n) = (0usize, 200_000usize);
        for _ in 0..n {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Normal floats of every exponent.
            let bits = ((state >> 40) as u32 % (FAST_MAX_BITS - FAST_MIN_BITS)) + FAST_MIN_BITS;
            let x = f32::from_bits(bits);
            let y = torch_sqrt_f32(x);
            assert!(error_ulps(x, y) <= 0.76, "sqrt({x:e}) = {y:e}");
            differs += usize::from(y != x.sqrt());
        }
        if cfg!(target_arch = "x86_64") {
            // MKL's kernel is not correctly rounded on about 16% of inputs.
            let share = differs as f64 / n as f64;
            assert!((0.05..0.3).contains(&share), "differs on {share}");
        } else {
            assert_eq!(differs, 0);
        }
    }

    #[test]
    fn exact_on_perfect_squares_and_special_values() {
        for i in 1..5000u32 {
            let r = i as f32;
            assert_eq!(torch_sqrt_f32(r * r), r);
        }
        let specials = [
            0.0f32,
            -0.0,
            f32::from_bits(1),
            1e-40,
            f32::MIN_POSITIVE,
            f32::MAX,
            f32::INFINITY,
        ];
        for x in specials {
            assert_eq!(torch_sqrt_f32(x).to_bits(), x.sqrt().to_bits(), "{x:e}");
        }
        assert!(torch_sqrt_f32(-1.0).is_nan());
        assert!(torch_sqrt_f32(f32::NAN).is_nan());
    }

    #[test]
    fn refine_of_the_exact_reciprocal_is_close() {
        // The correction itself, independent of the hardware estimate.
        for x in [2.0f32, 3.0, 10.0, 1e-20, 1e20] {
            let y = refine(x, (1.0 / (x as f64).sqrt()) as f32);
            assert!(error_ulps(x, y) <= 0.76);
        }
    }
}
