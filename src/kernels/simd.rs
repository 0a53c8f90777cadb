//! Runtime dispatch to wider vector instructions for the per-entry loops.
//!
//! The crate is built for baseline x86-64 (SSE2, 4 f32 lanes) so that the
//! binary runs on any x86-64 machine. `wide_simd_fn!` compiles a kernel
//! three times from one body, for the baseline, for AVX2 (8 lanes) and for
//! AVX-512 (16 lanes), and runs the widest one this CPU has.
//!
//! Results do not change: only plain IEEE operations are vectorised (add,
//! multiply, divide, square root, compare, select), each correctly rounded
//! per lane whatever the width; Rust never contracts a multiply and an add
//! into a fused multiply-add, so no FMA appears either. The optimizer tests
//! (reference traces, bit-exactness between paths, thread-count invariance)
//! run through this dispatch, and `wide_loops_round_like_narrow_ones`
//! compares the three widths bitwise.
//!
//! On the Intel Xeon of 2026-12-01 (2 threads, 40.6M parameters) the
//! AVX-512 loops made an AdamW step 2–4% and a MoFO-AdamW step 9–11%
//! faster than the AVX2 ones (docs/performance-log.md). `MOFO_NO_AVX512=1`
//! keeps the AVX2 loops, for A/B runs.

/// Whether this CPU has AVX2 (detected once, then a cached load).
#[inline(always)]
pub fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the per-entry loops run 16 lanes wide: the CPU has AVX-512 F,
/// VL, BW and DQ (and AVX2 and POPCNT), and `MOFO_NO_AVX512` is not set. Detected once.
#[inline(always)]
pub fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static WIDE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *WIDE.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512dq")
                && std::arch::is_x86_feature_detected!("popcnt")
                && has_avx2()
                && std::env::var_os("MOFO_NO_AVX512").is_none()
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The widest vector unit the per-entry loops use on this CPU:
/// `"avx512"`, `"avx2"` or `"baseline"` (printed by the benchmarks).
pub fn vector_width_name() -> &'static str {
    if has_avx512() {
        "avx512"
    } else if has_avx2() {
        "avx2"
    } else {
        "baseline"
    }
}

/// Defines a per-entry kernel from one body: `$name`, an `#[inline(always)]`
/// function for baseline x86-64, and `$wide`, which runs the same body
/// compiled for AVX-512 or AVX2 when the CPU has them (see [`has_avx512`],
/// [`has_avx2`]), else the baseline one. Call it through
/// `wide_simd_call!`. The baseline function is inlined into each twin by
/// `inline(always)`, which a closure handed to a `#[target_feature]`
/// function is not guaranteed (a large closure stays a separate function
/// compiled for the baseline, so its loops run 4 lanes wide).
///
/// ```text
/// wide_simd_fn! {
///     /// Docs.
///     pub(crate) fn kernel / kernel_wide [T: Scalar] (x: &mut [T], a: T) { ... }
/// }
/// wide_simd_call!(kernel / kernel_wide (xs, a));
/// ```
macro_rules! wide_simd_fn {
    (
        $(#[$attr:meta])*
        $vis:vis fn $name:ident / $wide:ident [$($gen:tt)*]
        ($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block
    ) => {
        $(#[$attr])*
        #[inline(always)]
        $vis fn $name<$($gen)*>($($arg: $ty),*) $(-> $ret)? $body

        #[doc = concat!("[`", stringify!($name), "`] on the widest vector unit of this CPU (AVX-512, AVX2 or the baseline).")]
        #[inline]
        $vis fn $wide<$($gen)*>($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,avx512f,avx512vl,avx512bw,avx512dq,popcnt")]
                fn w512<$($gen)*>($($arg: $ty),*) $(-> $ret)? {
                    $name($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                fn w256<$($gen)*>($($arg: $ty),*) $(-> $ret)? {
                    $name($($arg),*)
                }
                if $crate::kernels::simd::has_avx512() {
                    // SAFETY: the CPU has AVX2, POPCNT and AVX-512 F/VL/BW/DQ
                    // (checked by `has_avx512`), the only requirement of
                    // calling a function compiled for them.
                    return unsafe { w512($($arg),*) };
                }
                if $crate::kernels::simd::has_avx2() {
                    // SAFETY: the CPU has AVX2 (checked just above).
                    return unsafe { w256($($arg),*) };
                }
            }
            $name($($arg),*)
        }
    };
}
pub(crate) use wide_simd_fn;

/// Calls a kernel defined by `wide_simd_fn!` on the widest vector unit of
/// this CPU.
macro_rules! wide_simd_call {
    ($name:ident / $wide:ident ($($a:expr),* $(,)?)) => {
        $wide($($a),*)
    };
}
pub(crate) use wide_simd_call;

#[cfg(test)]
mod tests {
    use super::*;

    wide_simd_fn! {
        /// A loop with every vectorised operation the optimizer uses.
        fn mix / mix_wide [] (a: &[f32]) -> Vec<f32> {
            a.iter()
                .map(|x| (x.sqrt() / 3.0 + 1e-8) * 0.9 + x / 7.0)
                .collect()
        }
    }

    #[test]
    fn wide_loops_round_like_narrow_ones() {
        let a: Vec<f32> = (1..10_000).map(|i| (i as f32 * 0.37).sin() + 1.5).collect();
        let narrow = mix(&a);
        assert_eq!(narrow, wide_simd_call!(mix / mix_wide(&a)));
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2")]
            fn avx2(a: &[f32]) -> Vec<f32> {
                mix(a)
            }
            #[target_feature(enable = "avx2,avx512f,avx512vl,avx512bw,avx512dq")]
            fn avx512(a: &[f32]) -> Vec<f32> {
                mix(a)
            }
            if has_avx2() {
                // SAFETY: the CPU has AVX2 (checked just above).
                assert_eq!(narrow, unsafe { avx2(&a) });
            }
            if has_avx512() {
                // SAFETY: the CPU has AVX-512 F/VL/BW/DQ (checked just above).
                assert_eq!(narrow, unsafe { avx512(&a) });
            } else {
                println!("AVX-512 loops not compared: {}", vector_width_name());
            }
        }
    }
}
