//! Loops for steps that take a rounded square root per entry, sixteen
//! entries at a time: RMSprop's update (`Base::ROOTED`, its denominator)
//! and the fused step's passes for the mv and gv filters (`Filter::ROOTED`,
//! their scores divide by the base's denominator). Per line of 16 entries,
//! copied into local arrays ([`Line`]):
//!
//! ```text
//! phase 1, every lane i:  r_i ← pre(θ_i, g_i, state_i)          (may advance the state in the line)
//!                         r   ← torch_sqrt_16(r)                 (rsqrtps + correction, vectorised)
//! phase 2, every lane i:  out_i ← f(θ_i, g_i, state_i, r_i)      (may write θ and the state in the line)
//! then: θ and the state written back (the update loops), and the caller's
//!       `done(lo, line, out)` over the line's entries
//! ```
//!
//! RMSprop: `pre` = `root_arg`, `f` = `update_rooted`. mv/gv: `pre` =
//! `advance` then `denom_radicand_updated`, `f` = the score from
//! `score_updated_rooted` and what the pass does with it. Each `*_rooted`
//! form with the root of its radicand is bit for bit the plain one, and
//! `torch_sqrt_16` is lane for lane `Scalar::torch_sqrt`, so every result
//! is the per-entry loop's. Why loops of their own: PyTorch's (MKL's)
//! float32 square root starts from the scalar `rsqrtss` estimate
//! (`kernels::torch_sqrt`), and a loop that calls it per entry is not
//! vectorised; RMSprop's step ran one entry at a time at about 6× AdamW's
//! time, mv and gv at 14× and 27× (docs/performance-log.md). Here the
//! estimates come from the packed instruction, four lanes per call, and
//! everything else is lane-wise.
//!
//! The arrays have a constant length, so both phases have a constant trip
//! count whatever the buffer pattern (slots the base does not use stay
//! zero and are not written back); made fresh per line, the arrays stay
//! in registers or L1. The last, partial line runs through the same
//! arrays, its unused lanes computed on zeros and dropped (never written
//! back nor handed to `done`).

use super::View;
use crate::kernels::prefetch;
use crate::optim::base::Base;
use crate::Scalar;

/// Entries per line (one `Scalar::torch_sqrt_16` call).
pub(super) const LINE: usize = 16;

/// Up to [`LINE`] entries of a chunk, copied out: θ, g, the three state
/// slots, and θ as it was before phase 2.
pub(super) struct Line<T> {
    /// θ (after phase 2: the new θ).
    pub(super) p: [T; LINE],
    /// g.
    pub(super) g: [T; LINE],
    /// The state slots (after `pre` and `f`: as they left them).
    pub(super) s: [[T; LINE]; 3],
    /// θ before phase 2.
    pub(super) old: [T; LINE],
}

impl<T: Scalar> Line<T> {
    fn new() -> Self {
        let z = [T::zero(); LINE];
        Line {
            p: z,
            g: z,
            s: [z; 3],
            old: z,
        }
    }

    /// Copies the entries `r` (at most [`LINE`]) of θ, g and the state
    /// slots in use into the first lanes.
    #[inline(always)]
    fn load(
        &mut self,
        p: &[T],
        g: &[T],
        st: [&[T]; 3],
        r: std::ops::Range<usize>,
        used: [bool; 3],
    ) {
        let k = r.len();
        self.p[..k].copy_from_slice(&p[r.clone()]);
        self.g[..k].copy_from_slice(&g[r.clone()]);
        for j in 0..3 {
            if used[j] {
                self.s[j][..k].copy_from_slice(&st[j][r.clone()]);
            }
        }
    }

    /// The two phases over every lane (module docs); `out[i]` is lane i's
    /// result of `f`.
    #[inline(always)]
    fn run<M: Copy>(
        &mut self,
        pre: &mut impl FnMut(T, T, &mut [T; 3]) -> T,
        f: &mut impl FnMut(&mut T, T, &mut [T; 3], T) -> M,
        out: &mut [M; LINE],
    ) {
        let mut roots = [T::zero(); LINE];
        for (i, root) in roots.iter_mut().enumerate() {
            let mut s = [self.s[0][i], self.s[1][i], self.s[2][i]];
            *root = pre(self.p[i], self.g[i], &mut s);
            self.put_state(i, s);
        }
        T::torch_sqrt_16(&mut roots);
        for (i, o) in out.iter_mut().enumerate() {
            let mut s = [self.s[0][i], self.s[1][i], self.s[2][i]];
            self.old[i] = self.p[i];
            *o = f(&mut self.p[i], self.g[i], &mut s, roots[i]);
            self.put_state(i, s);
        }
    }

    #[inline(always)]
    fn put_state(&mut self, i: usize, s: [T; 3]) {
        self.s[0][i] = s[0];
        self.s[1][i] = s[1];
        self.s[2][i] = s[2];
    }

    /// The first `k` lanes of the state slots in use (empty slices for the
    /// others), as the line sinks take them.
    #[inline(always)]
    pub(super) fn state(&self, k: usize, used: [bool; 3]) -> [&[T]; 3] {
        std::array::from_fn(|j| if used[j] { &self.s[j][..k] } else { &[] })
    }
}

/// The chunk's state slots in use bounded to its `n` entries (unused ones
/// left as they are, never read).
#[inline(always)]
fn bounded<'a, T>(s: &'a mut [&mut [T]; 3], used: [bool; 3], n: usize) -> [&'a mut [T]; 3] {
    let [a, b, c] = s;
    let mut st: [&mut [T]; 3] = [&mut **a, &mut **b, &mut **c];
    for (j, s) in st.iter_mut().enumerate() {
        if used[j] {
            let whole = std::mem::take(s);
            *s = &mut whole[..n];
        }
    }
    st
}

/// The hints for the line at `at` of θ, g and the state slots in use.
#[inline(always)]
fn hint_line<T>(p: &[T], g: &[T], st: [&[T]; 3], used: [bool; 3], at: usize) {
    prefetch::prefetch_at(p, at);
    prefetch::prefetch_at(g, at);
    for (s, used) in st.into_iter().zip(used) {
        if used {
            prefetch::prefetch_at(s, at);
        }
    }
}

/// Runs the two phases over every line of the chunk (module docs), writing
/// back the state and, when `apply`, θ; then `done(lo, line, out)` with the
/// line's first `k` results (`k` its entries).
#[inline(always)]
pub(super) fn for_each_line_mut<T: Scalar, M: Copy + Default>(
    v: &mut View<'_, T>,
    used: [bool; 3],
    apply: bool,
    mut pre: impl FnMut(T, T, &mut [T; 3]) -> T,
    mut f: impl FnMut(&mut T, T, &mut [T; 3], T) -> M,
    mut done: impl FnMut(usize, &Line<T>, &[M]),
) {
    let n = v.p.len();
    let p = &mut *v.p;
    let g = &v.g[..n];
    let st = bounded(&mut v.s, used, n);
    let hint = prefetch::enabled();
    prefetch::by_lines!(
        n,
        LINE,
        hint,
        |at| {
            let [a, b, c] = &st;
            hint_line(p, g, [&**a, &**b, &**c], used, at);
        },
        |lo, hi| {
            if lo < hi {
                // Fresh per line: the compiler then keeps the arrays in
                // registers rather than in memory across lines.
                let (mut line, mut out) = (Line::new(), [M::default(); LINE]);
                let k = hi - lo;
                {
                    let [a, b, c] = &st;
                    line.load(p, g, [&**a, &**b, &**c], lo..hi, used);
                }
                line.run(&mut pre, &mut f, &mut out);
                if apply {
                    p[lo..hi].copy_from_slice(&line.p[..k]);
                }
                for j in 0..3 {
                    if used[j] {
                        st[j][lo..hi].copy_from_slice(&line.s[j][..k]);
                    }
                }
                done(lo, &line, &out[..k]);
            }
        }
    );
}

/// [`for_each_line_mut`] reading only: nothing is written back.
#[inline(always)]
pub(super) fn for_each_line<T: Scalar, M: Copy + Default>(
    v: &View<'_, T>,
    used: [bool; 3],
    mut pre: impl FnMut(T, T, &mut [T; 3]) -> T,
    mut f: impl FnMut(&mut T, T, &mut [T; 3], T) -> M,
    mut done: impl FnMut(usize, &Line<T>, &[M]),
) {
    let n = v.p.len();
    let p = &v.p[..n];
    let g = &v.g[..n];
    let st = super::used_state(&v.s, used, n);
    let hint = prefetch::enabled();
    prefetch::by_lines!(
        n,
        LINE,
        hint,
        |at| { hint_line(p, g, st, used, at) },
        |lo, hi| {
            if lo < hi {
                let (mut line, mut out) = (Line::new(), [M::default(); LINE]);
                line.load(p, g, st, lo..hi, used);
                line.run(&mut pre, &mut f, &mut out);
                done(lo, &line, &out[..hi - lo]);
            }
        }
    );
}

/// RMSprop's update over a chunk (a `Base::ROOTED` base): `base.update`
/// on every entry, its roots a line at a time; `apply` false is a frozen
/// block's step (the state only, θ kept). Each gradient is taken as
/// `map(g)` (the clipping's map, or the identity).
#[inline(always)]
pub(super) fn update_chunk<B: Base, T: Scalar>(
    base: &B,
    c: B::Coef<T>,
    v: &mut View<'_, T>,
    used: [bool; 3],
    apply: bool,
    map: impl Fn(T) -> T + Copy,
) {
    for_each_line_mut(
        v,
        used,
        apply,
        |p, g, s| base.root_arg(&c, p, map(g), s),
        |p, g, s, root| *p = base.update_rooted(&c, *p, map(g), s, root),
        |_, _, _: &[()]| {},
    );
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
            update_chunk(base, c, v, used, apply, |g| g)
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
