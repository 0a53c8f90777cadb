//! The update loop of a base whose step takes a rounded square root per
//! entry (`Base::ROOTED`: RMSProp), sixteen entries at a time:
//!
//! ```text
//! for each line of 16 entries i (copied into local arrays):
//!     r_i  ← root_arg(θ_i, g_i, state_i)                  (vectorised)
//!     r    ← torch_sqrt_16(r)                              (rsqrtps + correction, vectorised)
//!     θ'_i ← update_rooted(θ_i, g_i, state_i, r_i)         (state written, vectorised)
//!     θ_i  ← θ'_i  (every entry; a frozen block keeps θ_i and writes only the state)
//! ```
//!
//! `update_rooted` with the root of `root_arg` is bit for bit the base's
//! `update`, and `torch_sqrt_16` is lane for lane `Scalar::torch_sqrt`, so
//! the result is the per-entry loop's. Why a loop of its own: PyTorch's
//! (MKL's) float32 square root starts from the scalar `rsqrtss` estimate
//! (`kernels::torch_sqrt`), and a loop that calls it per entry is not
//! vectorised; RMSprop's step ran one entry at a time at about 6× AdamW's
//! time (docs/performance.md). Here the estimates come from the packed
//! instruction, four lanes per call, and everything else is lane-wise.
//!
//! The line is copied into arrays of constant length so that the three
//! loops have a constant trip count whatever the buffer pattern (slots the
//! base does not use stay zero and are not written back); the copies stay
//! in L1. The last, partial line runs through the same arrays, its unused
//! lanes computed on zeros and dropped.

use super::View;
use crate::kernels::prefetch;
use crate::optim::base::Base;
use crate::Scalar;

/// Entries per line of the loop (one `Scalar::torch_sqrt_16` call).
const LINE: usize = 16;

/// Runs `base.update` over every entry of the chunk, the roots a line at a
/// time (module docs); `apply` false is a frozen block's step (the state
/// only, θ kept). Only for `B::ROOTED` bases (others gain nothing).
#[inline(always)]
pub(super) fn update_chunk<B: Base, T: Scalar>(
    base: &B,
    c: B::Coef<T>,
    v: &mut View<'_, T>,
    used: [bool; 3],
    apply: bool,
) {
    let n = v.p.len();
    let p = &mut *v.p;
    let g = &v.g[..n];
    let [s0, s1, s2] = &mut v.s;
    let mut st: [&mut [T]; 3] = [&mut **s0, &mut **s1, &mut **s2];
    for (j, s) in st.iter_mut().enumerate() {
        if used[j] {
            // Bounds the slices once, so the copies below need no check.
            let whole = std::mem::take(s);
            *s = &mut whole[..n];
        }
    }
    let hint = prefetch::enabled();
    prefetch::by_lines!(
        n,
        LINE,
        hint,
        |at| {
            prefetch::prefetch_at(p, at);
            prefetch::prefetch_at(g, at);
            for (j, s) in st.iter().enumerate() {
                if used[j] {
                    prefetch::prefetch_at(s, at);
                }
            }
        },
        |lo, hi| {
            if lo < hi {
                line(base, &c, p, g, &mut st, lo..hi, used, apply);
            }
        }
    );
}

/// The entries `range` of the chunk (at most [`LINE`]): copied into local
/// arrays, stepped, copied back.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn line<B: Base, T: Scalar>(
    base: &B,
    c: &B::Coef<T>,
    p: &mut [T],
    g: &[T],
    st: &mut [&mut [T]; 3],
    range: std::ops::Range<usize>,
    used: [bool; 3],
    apply: bool,
) {
    let k = range.len();
    let z = T::zero();
    let (mut lp, mut lg) = ([z; LINE], [z; LINE]);
    let mut ls = [[z; LINE]; 3];
    lp[..k].copy_from_slice(&p[range.clone()]);
    lg[..k].copy_from_slice(&g[range.clone()]);
    for j in 0..3 {
        if used[j] {
            ls[j][..k].copy_from_slice(&st[j][range.clone()]);
        }
    }
    let mut roots = [z; LINE];
    for i in 0..LINE {
        let s = [ls[0][i], ls[1][i], ls[2][i]];
        roots[i] = base.root_arg(c, lp[i], lg[i], &s);
    }
    T::torch_sqrt_16(&mut roots);
    for i in 0..LINE {
        let mut s = [ls[0][i], ls[1][i], ls[2][i]];
        let pn = base.update_rooted(c, lp[i], lg[i], &mut s, roots[i]);
        lp[i] = if apply { pn } else { lp[i] };
        ls[0][i] = s[0];
        ls[1][i] = s[1];
        ls[2][i] = s[2];
    }
    if apply {
        p[range.clone()].copy_from_slice(&lp[..k]);
    }
    for j in 0..3 {
        if used[j] {
            st[j][range.clone()].copy_from_slice(&ls[j][..k]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::simd::{wide_simd_call, wide_simd_fn};
    use crate::optim::base::RmsProp;
    use crate::optim::base::{BaseScalars, RmsPropCoef};

    wide_simd_fn! {
        /// The loop as the optimizer compiles it (inside its wide twin).
        fn run / run_wide [T: Scalar] (
            base: &RmsProp,
            c: RmsPropCoef<T>,
            v: &mut View<'_, T>,
            used: [bool; 3],
            apply: bool,
        ) {
            update_chunk(base, c, v, used, apply)
        }
    }

    /// Values of every sign and a wide range of magnitudes, zeros included.
    fn values<T: Scalar>(n: usize, seed: u64) -> Vec<T> {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let u = (state >> 11) as f64 / (1u64 << 53) as f64;
                let scale = 10f64.powi((state % 13) as i32 - 8);
                if i % 29 == 3 {
                    T::zero()
                } else {
                    T::of((u - 0.5) * scale)
                }
            })
            .collect()
    }

    /// Three steps of the rooted loop against the per-entry `update` on the
    /// same inputs, every configuration of RMSprop, both element types,
    /// lengths around the line, applied and frozen: the same bits.
    fn matches_per_entry<T: Scalar>() {
        for centered in [false, true] {
            for momentum in [0.0, 0.9] {
                for weight_decay in [0.0, 0.1] {
                    let base = RmsProp {
                        lr: 1e-2,
                        centered,
                        momentum,
                        weight_decay,
                        ..RmsProp::default()
                    };
                    let used = base.buffers().map(|b| b.is_some());
                    for n in [1, 15, 16, 17, 33, 1000] {
                        for apply in [true, false] {
                            let mut p = values::<T>(n, 1 + n as u64);
                            let mut s: [Vec<T>; 3] = std::array::from_fn(|_| vec![T::zero(); n]);
                            let (mut q, mut r) = (p.clone(), s.clone());
                            for t in 1..=3u64 {
                                let g = values::<T>(n, 100 * t + n as u64);
                                let c = base.coef::<T>(
                                    t,
                                    base.lr,
                                    base.weight_decay,
                                    &BaseScalars::default(),
                                );
                                let [a, b, d] = &mut s;
                                let mut v = View {
                                    p: &mut p,
                                    g: &g,
                                    pre: &[],
                                    s: [&mut a[..], &mut b[..], &mut d[..]],
                                    off: 0,
                                };
                                wide_simd_call!(run / run_wide(&base, c, &mut v, used, apply));
                                for i in 0..n {
                                    let mut st = [r[0][i], r[1][i], r[2][i]];
                                    let pn = base.update(&c, q[i], g[i], &mut st);
                                    if apply {
                                        q[i] = pn;
                                    }
                                    for j in 0..3 {
                                        r[j][i] = st[j];
                                    }
                                }
                                let bits = |x: &[T]| {
                                    x.iter().map(|v| v.as_f64().to_bits()).collect::<Vec<_>>()
                                };
                                let what = format!("{} centered {centered} momentum {momentum} wd {weight_decay} n {n} apply {apply} t {t}", T::NAME);
                                assert_eq!(bits(&p), bits(&q), "θ, {what}");
                                for j in 0..3 {
                                    assert_eq!(bits(&s[j]), bits(&r[j]), "state {j}, {what}");
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_rooted_loop_is_the_per_entry_update_bit_for_bit() {
        matches_per_entry::<f32>();
        matches_per_entry::<f64>();
    }
}
