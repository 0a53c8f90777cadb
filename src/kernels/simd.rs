//! Runtime dispatch to wider vector instructions for the per-entry loops.
//!
//! The crate is built for baseline x86-64 (SSE2, 4 f32 lanes) so that the
//! binary runs on any x86-64 machine. `wide_simd_fn!` defines a kernel
//! twice, for the baseline and for AVX2, and `wide_simd_call!` runs the
//! AVX2 one when the CPU has it, so the optimizer's per-entry loops are
//! vectorised 8 lanes wide.
//!
//! Results do not change: only plain IEEE operations are vectorised (add,
//! multiply, divide, square root, compare, select), each correctly rounded
//! per lane whatever the width; Rust never contracts a multiply and an add
//! into a fused multiply-add, so no FMA appears either. The optimizer tests
//! (reference traces, bit-exactness between paths, thread-count invariance)
//! run through this dispatch.

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

/// Defines a per-entry kernel twice from one body: `$name`, an
/// `#[inline(always)]` function for baseline x86-64, and `$wide`, the same
/// body compiled for AVX2 (on x86-64 only). Call it through
/// `wide_simd_call!`. The baseline function is inlined into the AVX2 one by
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

        #[doc = concat!("[`", stringify!($name), "`] compiled for AVX2 (call through `wide_simd_call!`).")]
        #[doc = ""]
        #[doc = "# Safety"]
        #[doc = ""]
        #[doc = "The CPU must support AVX2."]
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        $vis fn $wide<$($gen)*>($($arg: $ty),*) $(-> $ret)? {
            $name($($arg),*)
        }
    };
}
pub(crate) use wide_simd_fn;

/// Calls a kernel defined by `wide_simd_fn!`: its AVX2 twin when the CPU
/// has AVX2, else the baseline one.
macro_rules! wide_simd_call {
    ($name:ident / $wide:ident ($($a:expr),* $(,)?)) => {{
        #[cfg(target_arch = "x86_64")]
        let out = if $crate::kernels::simd::has_avx2() {
            // SAFETY: the CPU has AVX2 (checked just above), the only
            // requirement of calling a function compiled for it.
            unsafe { $wide($($a),*) }
        } else {
            $name($($a),*)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let out = $name($($a),*);
        out
    }};
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
        let dispatched = wide_simd_call!(mix / mix_wide(&a));
        assert_eq!(narrow, dispatched);
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: the CPU has AVX2 (checked just above).
            assert_eq!(narrow, unsafe { mix_wide(&a) });
        }
    }
}
