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
        if fast(x) {
            return refine(x, rsqrt_estimate(x));
        }
    }
    x.sqrt()
}

/// Whether MKL takes its fast path (estimate and correction) for `x`.
#[inline(always)]
fn fast(x: f32) -> bool {
    (FAST_MIN_BITS..=FAST_MAX_BITS).contains(&x.to_bits())
}

/// [`torch_sqrt_f32`] of 16 values at once, bit for bit: the estimates
/// from the packed `rsqrtps` (four of them, baseline SSE, so every x86-64
/// build and every `wide_simd_fn!` twin can call this; each lane gets the
/// estimate `rsqrtss` gives its value), then the correction and the
/// exact path's select as lane-wise arithmetic, a loop the compiler
/// vectorises. The scalar intrinsic keeps any loop that calls
/// [`torch_sqrt_f32`] one entry at a time; a loop that gathers its
/// arguments into a line first and calls this runs vector-wide
/// (`optim::optimizer::rooted`).
#[inline(always)]
pub fn torch_sqrt_f32_16(x: &mut [f32; 16]) {
    #[cfg(target_arch = "x86_64")]
    {
        let mut y = [0f32; 16];
        for q in 0..4 {
            rsqrt_estimate_4(&x[4 * q..4 * q + 4], &mut y[4 * q..4 * q + 4]);
        }
        for (x, y) in x.iter_mut().zip(y) {
            let r = refine(*x, y);
            *x = if fast(*x) { r } else { x.sqrt() };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    for x in x.iter_mut() {
        *x = x.sqrt();
    }
}

/// [`torch_sqrt_f32`] of the sixteen lanes of an AVX-512 register, bit for
/// bit, for the hand-written kernels: the estimates from AVX's `vrsqrtps`
/// on each 256-bit half (lane for lane the `rsqrtss` estimate; AVX-512's
/// own `vrsqrt14ps` is a finer estimate and would not match), the
/// correction of [`refine`] in separately rounded products and sums (no
/// fused multiply-add), and the IEEE root on the lanes outside MKL's fast
/// path (computed only when there are such lanes).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,avx512f,avx512dq")]
#[inline]
pub(crate) fn torch_sqrt_f32x16(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let lo = _mm256_rsqrt_ps(_mm512_castps512_ps256(x));
    let hi = _mm256_rsqrt_ps(_mm512_extractf32x8_ps::<1>(x));
    let y = _mm512_insertf32x8::<1>(_mm512_castps256_ps512(lo), hi);
    let half = _mm512_set1_ps(0.5);
    let s = _mm512_mul_ps(x, y);
    let h = _mm512_mul_ps(y, half);
    let r = _mm512_sub_ps(half, _mm512_mul_ps(s, h));
    let s1 = _mm512_add_ps(_mm512_mul_ps(s, r), s);
    let h1 = _mm512_add_ps(_mm512_mul_ps(h, r), h);
    let d = _mm512_sub_ps(x, _mm512_mul_ps(s1, s1));
    let refined = _mm512_add_ps(_mm512_mul_ps(d, h1), s1);
    let bits = _mm512_castps_si512(x);
    let fast = _mm512_cmpge_epu32_mask(bits, _mm512_set1_epi32(FAST_MIN_BITS as i32))
        & _mm512_cmple_epu32_mask(bits, _mm512_set1_epi32(FAST_MAX_BITS as i32));
    // The IEEE root only when a lane needs it: `vsqrtps` shares the
    // divider with the callers' divisions, and positive normal inputs (the
    // common case) never take it.
    if fast == 0xffff {
        refined
    } else {
        _mm512_mask_blend_ps(fast, _mm512_sqrt_ps(x), refined)
    }
}

/// The packed estimate `rsqrtps` of four values (`y[i] ≈ 1/√x[i]`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn rsqrt_estimate_4(x: &[f32], y: &mut [f32]) {
    use std::arch::x86_64::{_mm_loadu_ps, _mm_rsqrt_ps, _mm_storeu_ps};
    let (x, y): (&[f32; 4], &mut [f32; 4]) = (x.try_into().unwrap(), y.try_into().unwrap());
    // SAFETY: SSE is part of the x86-64 baseline; the unaligned load and
    // store touch exactly the four floats of the arrays just borrowed.
    unsafe { _mm_storeu_ps(y.as_mut_ptr(), _mm_rsqrt_ps(_mm_loadu_ps(x.as_ptr()))) }
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

    /// Lines of 16 inputs: the special values, then `n` lines of random
    /// bit patterns (negative and non-finite included), every other one of
    /// normal positives only when `normals`.
    fn lines(seed: u64, n: usize, normals: bool) -> Vec<[f32; 16]> {
        let mut state = seed;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let specials = [
            0.0f32,
            -0.0,
            f32::from_bits(1),
            f32::MIN_POSITIVE,
            f32::from_bits(FAST_MAX_BITS),
            f32::from_bits(FAST_MAX_BITS + 1),
            f32::MAX,
            f32::INFINITY,
            -1.0,
            f32::NAN,
            1.0,
            4.0,
            2.0,
            1e-30,
            1e30,
            f32::from_bits(FAST_MIN_BITS - 1),
        ];
        let mut lines = vec![specials];
        for j in 0..n {
            lines.push(std::array::from_fn(|_| {
                let bits = (next() >> 32) as u32;
                if normals && j % 2 == 1 {
                    f32::from_bits(bits % (FAST_MAX_BITS - FAST_MIN_BITS) + FAST_MIN_BITS)
                } else {
                    f32::from_bits(bits)
                }
            }));
        }
        lines
    }

    #[test]
    fn sixteen_at_once_are_the_scalar_roots_bit_for_bit() {
        let lines = lines(0x9e37_79b9_7f4a_7c15, 20_000, false);
        crate::kernels::simd::wide_simd_fn! {
            /// The line kernel as the optimizer's loops compile it: inlined
            /// into an AVX-512 (or AVX2) function where the CPU has one.
            fn roots / roots_wide [] (x: &mut [f32; 16]) {
                torch_sqrt_f32_16(x)
            }
        }
        for line in lines {
            let mut wide = line;
            crate::kernels::simd::wide_simd_call!(roots / roots_wide(&mut wide));
            let mut narrow = line;
            roots(&mut narrow);
            for ((x, y), n) in line.iter().zip(wide).zip(narrow) {
                assert_eq!(y.to_bits(), n.to_bits(), "sqrt({x:e}) by width");
                let want = torch_sqrt_f32(*x);
                assert!(
                    y.to_bits() == want.to_bits() || (y.is_nan() && want.is_nan()),
                    "sqrt({x:e}): {y:e} against {want:e}"
                );
            }
        }
    }

    #[test]
    fn the_avx512_register_form_is_the_scalar_root_bit_for_bit() {
        if !crate::kernels::simd::has_avx512() {
            eprintln!("skipped: this CPU has no AVX-512");
            return;
        }
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm512_loadu_ps, _mm512_storeu_ps};
            let lines = lines(0x2545_f491_4f6c_dd1d, 40_000, true);
            for line in lines {
                let mut out = [0f32; 16];
                // SAFETY: the CPU has AVX-512 (checked above, with DQ and
                // AVX); the loads and stores touch the two 16-float arrays.
                unsafe {
                    let y = torch_sqrt_f32x16(_mm512_loadu_ps(line.as_ptr()));
                    _mm512_storeu_ps(out.as_mut_ptr(), y);
                }
                for (x, y) in line.iter().zip(out) {
                    let want = torch_sqrt_f32(*x);
                    assert!(
                        y.to_bits() == want.to_bits() || (y.is_nan() && want.is_nan()),
                        "sqrt({x:e}): {y:e} against {want:e}"
                    );
                }
            }
        }
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
