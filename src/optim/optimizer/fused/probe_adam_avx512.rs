//! Pass 0 of the fused step (the parent module's docs) on f32 Adam(W) with
//! the mv or gv filter, written with AVX-512 intrinsics: the keys the
//! generic [`super::probe_chunk`] and [`super::count_chunk`] compute, bit
//! for bit, sixteen entries in registers at a time. Per sixteen entries
//! (one cache line of each buffer read; nothing is written):
//!
//! ```text
//! g ← clamp(g, −c, c)·s               (under clipping: `GradMap`)
//! m ← lerp(m, g, w1)  (mv only)       v ← v·b2 + (omb2·g)·g        (not stored)
//! key = bits(score) & 0x7fff_ffff,  score =
//!       |m / bc1| / (√(v / bc2) + eps)  (mv; √ as PyTorch's, `torch_sqrt_f32x16`)
//!       |g| / (√(v / bc2) + eps)        (gv)
//! worst ← max(worst, bits(|g|))        (every g finite iff worst ≤ bits(f32::MAX))
//! probes:    count_j += [key > t_j]    (a compare and a masked subtract per probe)
//! histogram: hist[key >> 17] += 1      (the keys stored, counted one by one)
//! ```
//!
//! The generic loops run these scores through `optimizer::rooted`: each
//! line of 16 copied into local arrays, the square roots in place, and a
//! sink called per line. That is about 150 cycles per line, and it made
//! pass 0 of gv 11 ms of a 33 ms step on 40.6M parameters (2 threads,
//! Zen 5, twenty-fifth sitting), where the pass reads 8 bytes per entry (g
//! and v). The single pass of the same filters runs in
//! [`super::single_adam_avx512`], whose arithmetic ([`avx512`]'s
//! `moments`, `keys` and `mapped`) this pass shares, so the two passes'
//! keys agree by construction; the tests compare both with the generic
//! loops.
//!
//! Measured (twenty-sixth sitting, 40.6M parameters, 2 threads, Zen 5; gv
//! on fresh gradients probes nearly all its entries every step): pass 0 of
//! gv went from 11.4 to 9.6–9.8 ms. The loop stays bound by its
//! arithmetic: about 7 ns per sixteen entries with the chunk in L2, for
//! exact keys and also for a variant that decided most groups on
//! approximate scores, as the single pass does (`approx_scores`). That
//! variant was tried and dropped: no faster here, 11.0–11.8 ms.
//!
//! Under clipping the gradients were checked before this pass (the norm
//! reads them), so no NaN reaches it. Were one to, the kernel's clamp
//! would keep it and report the chunk not finite, where the generic map
//! (`f32::max`) turns it into −c·s.
//!
//! MoFO (the momentum filter) keeps the generic pass 0: its key is |m|
//! after the update, a loop the compiler vectorises without square roots,
//! bound by reading g and m.
//!
//! [`avx512`]: super::single_adam_avx512::avx512

use super::single_adam_avx512::{as_f32, clamp_scale_f32, enabled, plain_adam_f32, MOMENTUM};
use crate::optim::base::{Base, PlainAdamF32};
use crate::optim::filter::Filter;
use crate::optim::optimizer::{Ctx, View};
use crate::Scalar;

/// The gradients' map as the kernel takes it (`clamp_scale_f32`): `None`
/// for the identity, else the clamp's c and the scale.
type Map = Option<(f32, f32)>;

/// What the kernel needs of the step.
struct Step {
    /// The step's constants.
    k: PlainAdamF32,
    /// The score: `MV` or the gv one.
    score: u8,
    /// The gradients' map.
    map: Map,
}

/// The step as the kernel takes it, when it applies; `None` when the
/// generic loop must run (no AVX-512, another filter, base or scalar, a
/// pull, `MOFO_GENERIC_SINGLE_PASS` set).
fn applies<F: Filter, B: Base, T: Scalar>(ctx: &Ctx<'_, F, B, T>, c: &B::Coef<T>) -> Option<Step> {
    if !enabled() || !crate::kernels::simd::has_avx512() {
        return None;
    }
    let (k, score) = plain_adam_f32(ctx, c)?;
    if score == MOMENTUM {
        return None;
    }
    let map = clamp_scale_f32(ctx.prep)?;
    Some(Step { k, score, map })
}

/// The gradients and the moments of `v` as f32 slices of one length.
fn buffers<'a, T: Scalar>(v: &'a View<'_, T>) -> Option<[&'a [f32]; 3]> {
    let n = v.p.len();
    Some([
        as_f32(&v.g[..n])?,
        as_f32(&v.s[0][..n])?,
        as_f32(&v.s[1][..n])?,
    ])
}

/// Pass 0 with the forecast's probes over one chunk by the kernel, when it
/// applies: per probe the number of keys above it, and whether every
/// gradient is finite, as [`super::probe_chunk`] returns them. `None`:
/// the caller runs the generic loop.
pub(super) fn try_probe_chunk<F: Filter, B: Base, T: Scalar, const N: usize>(
    ctx: &Ctx<'_, F, B, T>,
    c: &B::Coef<T>,
    v: &View<'_, T>,
    probes: &[u64; N],
) -> Option<([u64; N], bool)> {
    let step = applies(ctx, c)?;
    let bufs = buffers(v)?;
    // The keys of f32 and the probes lie below 2^31: a signed compare, as
    // `key_gt` makes it.
    let t = probes.map(|t| t as u32 as i32);
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the CPU has AVX-512 (`applies`); the three slices have
        // one length (`buffers`).
        Some(unsafe { avx512::probe(&step, bufs, t) })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (step, bufs, t);
        unreachable!("has_avx512 is false off x86-64")
    }
}

/// Pass 0 without a forecast over one chunk by the kernel, when it applies:
/// the keys' histogram added to `hist` and whether every gradient is
/// finite, as [`super::count_chunk`] does. `None`: the caller runs the
/// generic loop.
pub(super) fn try_count_chunk<F: Filter, B: Base, T: Scalar>(
    ctx: &Ctx<'_, F, B, T>,
    c: &B::Coef<T>,
    v: &View<'_, T>,
    hist: &mut [u32],
) -> Option<bool> {
    let step = applies(ctx, c)?;
    let bufs = buffers(v)?;
    let hist = &mut hist[..super::BUCKETS];
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: as in `try_probe_chunk`.
        Some(unsafe { avx512::count(&step, bufs, hist) })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (step, bufs, hist);
        unreachable!("has_avx512 is false off x86-64")
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::super::single_adam_avx512::avx512::{keys, mapped, moments, Consts};
    use super::super::single_adam_avx512::MV;
    use super::super::{bucket, BUCKETS};
    use super::Step;
    use crate::kernels::prefetch::{prefetch_ptr, AHEAD};

    /// The three buffers' base pointers: g, m, v.
    type Ptrs = (*const f32, *const f32, *const f32);

    /// The sixteen entries at `i` (those of the mask `lanes`, all 16 when
    /// `full`; the others are zeros): g as mapped, and the moments after
    /// the update. `SCORE` is [`MV`] or the gv one; m is read for mv only
    /// (its moment is then meaningless, and unread).
    ///
    /// # Safety
    /// The CPU has AVX-512 F; the lanes of `lanes` from `i` lie inside
    /// each buffer.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn sixteen<const NEAR: bool, const MAPPED: bool, const SCORE: u8>(
        c: &Consts,
        (gp, mp, vp): Ptrs,
        i: usize,
        lanes: __mmask16,
        full: bool,
    ) -> [__m512; 3] {
        // SAFETY: the lanes read lie in the buffers (the contract).
        let (g, m0, v0) = unsafe {
            let zero = _mm512_setzero_ps();
            if full {
                (
                    _mm512_loadu_ps(gp.add(i)),
                    if SCORE == MV {
                        _mm512_loadu_ps(mp.add(i))
                    } else {
                        zero
                    },
                    _mm512_loadu_ps(vp.add(i)),
                )
            } else {
                (
                    _mm512_maskz_loadu_ps(lanes, gp.add(i)),
                    if SCORE == MV {
                        _mm512_maskz_loadu_ps(lanes, mp.add(i))
                    } else {
                        zero
                    },
                    _mm512_maskz_loadu_ps(lanes, vp.add(i)),
                )
            }
        };
        let g = if MAPPED { mapped(c, g) } else { g };
        let [m1, v1] = moments::<NEAR>(c, g, m0, v0);
        [g, m1, v1]
    }

    /// Walks the `n` entries sixteen at a time, handing each group's g (as
    /// mapped), moments and lanes to `see`; returns whether every gradient
    /// (as mapped) is finite: the largest |g|'s bits, lane by lane, at most
    /// f32::MAX's (NaN's lie above infinity's).
    ///
    /// # Safety
    /// The CPU has AVX-512 F/DQ; each buffer holds `n` entries.
    #[target_feature(enable = "avx,avx2,avx512f,avx512vl,avx512bw,avx512dq")]
    #[inline]
    unsafe fn walk<const NEAR: bool, const MAPPED: bool, const SCORE: u8>(
        c: &Consts,
        ptrs: Ptrs,
        n: usize,
        hint: bool,
        mut see: impl FnMut([__m512; 3], __mmask16),
    ) -> bool {
        let abs = _mm512_set1_epi32(0x7fff_ffff);
        let mut worst = _mm512_setzero_si512();
        let mut lo = 0;
        while lo < n {
            let rem = n - lo;
            let (full, lanes) = if rem >= 16 {
                (true, !0u16)
            } else {
                (false, (1u16 << rem) - 1)
            };
            if hint && full {
                let at = lo + AHEAD;
                prefetch_ptr(ptrs.0, at);
                if SCORE == MV {
                    prefetch_ptr(ptrs.1, at);
                }
                prefetch_ptr(ptrs.2, at);
            }
            // SAFETY: the lanes passed lie in the buffers (`lo + 16 <= n`,
            // or the mask of the `rem` left).
            let gmv = unsafe { sixteen::<NEAR, MAPPED, SCORE>(c, ptrs, lo, lanes, full) };
            let g = _mm512_castps_si512(gmv[0]);
            worst = _mm512_max_epu32(worst, _mm512_and_si512(g, abs));
            see(gmv, lanes);
            lo += 16;
        }
        _mm512_reduce_max_epu32(worst) <= f32::MAX.to_bits()
    }

    /// The constants, pointers, length and prefetch choice of a pass over
    /// `g`, `m`, `v` (one length, at most `i32::MAX`: the per-lane counts
    /// are u32).
    ///
    /// # Safety
    /// The CPU has AVX-512 F.
    #[target_feature(enable = "avx512f")]
    unsafe fn setup(step: &Step, [g, m, v]: [&[f32]; 3]) -> (Consts, Ptrs, usize, bool) {
        let n = g.len();
        assert!(m.len() == n && v.len() == n && n <= i32::MAX as usize);
        let map = step.map.unwrap_or((f32::INFINITY, 1.0));
        let ptrs = (g.as_ptr(), m.as_ptr(), v.as_ptr());
        let hint = crate::kernels::prefetch::enabled();
        (Consts::new(&step.k, map, (0, 0)), ptrs, n, hint)
    }

    /// Calls `$pass::<NEAR, MAPPED, SCORE, $gen>($args)` for the runtime choices
    /// (`near`, `mapped`, `score`): mv's lerp form by `near`, gv (which
    /// reads no m) in one form.
    macro_rules! dispatch {
        ($pass:ident [$($gen:tt)*], $near:expr, $mapped:expr, $score:expr, ($($args:expr),*)) => {{
            use super::super::single_adam_avx512::GV;
            match ($score == MV, $near, $mapped) {
                (true, true, true) => $pass::<true, true, MV $($gen)*>($($args),*),
                (true, true, false) => $pass::<true, false, MV $($gen)*>($($args),*),
                (true, false, true) => $pass::<false, true, MV $($gen)*>($($args),*),
                (true, false, false) => $pass::<false, false, MV $($gen)*>($($args),*),
                (false, _, true) => $pass::<true, true, GV $($gen)*>($($args),*),
                (false, _, false) => $pass::<true, false, GV $($gen)*>($($args),*),
            }
        }};
    }

    /// Per probe `t[j]`, the number of keys above it; and whether every
    /// gradient is finite.
    ///
    /// # Safety
    /// The CPU has AVX-512 F/VL/BW/DQ and AVX2; the buffers have one
    /// length, at most `i32::MAX`.
    pub(super) unsafe fn probe<const N: usize>(
        step: &Step,
        bufs: [&[f32]; 3],
        t: [i32; N],
    ) -> ([u64; N], bool) {
        // SAFETY: the CPU has AVX-512 (the contract).
        let (c, ptrs, n, hint) = unsafe { setup(step, bufs) };
        // SAFETY: as above; each buffer holds `n` entries.
        unsafe {
            dispatch!(
                probe_with[, N],
                step.k.w1 < 0.5,
                step.map.is_some(),
                step.score,
                (&c, ptrs, n, hint, t)
            )
        }
    }

    /// [`probe`] for one choice of `NEAR`, `MAPPED` and `SCORE`.
    ///
    /// # Safety
    /// As [`walk`].
    #[target_feature(enable = "avx,avx2,avx512f,avx512vl,avx512bw,avx512dq")]
    unsafe fn probe_with<const NEAR: bool, const MAPPED: bool, const SCORE: u8, const N: usize>(
        c: &Consts,
        ptrs: Ptrs,
        n: usize,
        hint: bool,
        t: [i32; N],
    ) -> ([u64; N], bool) {
        let probes = t.map(|x| _mm512_set1_epi32(x));
        let minus_one = _mm512_set1_epi32(-1);
        // Per probe, per lane: the count of keys above the probe.
        let mut counts = [_mm512_setzero_si512(); N];
        // SAFETY: the contract.
        let finite = unsafe {
            walk::<NEAR, MAPPED, SCORE>(c, ptrs, n, hint, |[g, m1, v1], lanes| {
                let key = keys::<SCORE>(c, g, m1, v1);
                for (count, &probe) in counts.iter_mut().zip(&probes) {
                    let above = _mm512_mask_cmpgt_epi32_mask(lanes, key, probe);
                    *count = _mm512_mask_sub_epi32(*count, above, *count, minus_one);
                }
            })
        };
        let counts = counts.map(|x| u64::from(_mm512_reduce_add_epi32(x) as u32));
        (counts, finite)
    }

    /// The keys' histogram (by [`bucket`]) added to `hist` ([`BUCKETS`]
    /// long); and whether every gradient is finite.
    ///
    /// # Safety
    /// As [`probe`].
    pub(super) unsafe fn count(step: &Step, bufs: [&[f32]; 3], hist: &mut [u32]) -> bool {
        assert_eq!(hist.len(), BUCKETS);
        // SAFETY: the CPU has AVX-512 (the contract).
        let (c, ptrs, n, hint) = unsafe { setup(step, bufs) };
        // SAFETY: as above; each buffer holds `n` entries.
        unsafe {
            dispatch!(
                count_with[],
                step.k.w1 < 0.5,
                step.map.is_some(),
                step.score,
                (&c, ptrs, n, hint, hist)
            )
        }
    }

    /// [`count`] for one choice of `NEAR`, `MAPPED` and `SCORE`.
    ///
    /// # Safety
    /// As [`walk`]; `hist` holds [`BUCKETS`] counts.
    #[target_feature(enable = "avx,avx2,avx512f,avx512vl,avx512bw,avx512dq")]
    unsafe fn count_with<const NEAR: bool, const MAPPED: bool, const SCORE: u8>(
        c: &Consts,
        ptrs: Ptrs,
        n: usize,
        hint: bool,
        hist: &mut [u32],
    ) -> bool {
        let mut out = [0u32; 16];
        // SAFETY: the contract.
        unsafe {
            walk::<NEAR, MAPPED, SCORE>(c, ptrs, n, hint, |[g, m1, v1], lanes| {
                let key = self::keys::<SCORE>(c, g, m1, v1);
                _mm512_storeu_si512(out.as_mut_ptr().cast(), key);
                for (lane, &key) in out.iter().enumerate() {
                    if lanes >> lane & 1 == 1 {
                        hist[bucket::<f32>(u64::from(key)) as usize & (BUCKETS - 1)] += 1;
                    }
                }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::base::{Adam, AdamCoef};
    use crate::optim::filter::{Gv, Momentum, Mv};
    use crate::optim::optimizer::fused::single_adam_avx512::tests::{
        chunk as single_pass_chunk, clipped, kernel_absent, kernel_bases,
    };
    use crate::optim::optimizer::fused::{count_chunk_wide, probe_chunk_wide, BUCKETS};
    use crate::optim::optimizer::mapped::with_mapped;
    use crate::optim::transform::GradPrep;

    /// g, m, v of one chunk (the single pass tests' inputs, with zeros of
    /// both signs in m), zeros of both signs in g, and `specials`
    /// (non-finite gradients, huge moments) at a few places when asked.
    fn chunk(n: usize, seed: u64, specials: bool) -> [Vec<f32>; 3] {
        let [_, mut g, mut m, mut v] = single_pass_chunk(n, seed);
        for i in 0..n {
            match i % 17 {
                3 => m[i] = -0.0,
                4 => g[i] = -0.0,
                5 => (g[i], v[i]) = (0.0, 0.0),
                _ => {}
            }
        }
        if specials && n > 40 {
            g[n / 3] = f32::INFINITY;
            g[n / 2] = f32::NAN;
            m[n / 4] = f32::MAX;
            v[n / 5] = f32::MAX;
        }
        [g, m, v]
    }

    /// Probes on the keys of ranks n/10 to 19n/20 (six), as
    /// the generic pass sees them, so that each count is neither 0 nor n.
    fn probes_for(keys: &mut [u64]) -> [u64; 6] {
        keys.sort_unstable();
        let n = keys.len();
        if n == 0 {
            return [0, 1, 2, 3, 4, 5];
        }
        let at = |q: usize| keys[(n * q / 20).min(n - 1)];
        [at(2), at(6), at(10), at(16), at(18), at(19) + 1]
    }

    /// The step's context for `filter` on `adam` (m and v in use, scope
    /// `Selected`, gradients unchecked).
    fn ctx_of<'a, F: Filter, T: Scalar>(
        filter: &'a F,
        adam: &'a Adam,
        c: &'a AdamCoef<T>,
        prep: GradPrep<T>,
    ) -> Ctx<'a, F, Adam, T> {
        Ctx {
            filter,
            base: adam,
            coefs: std::slice::from_ref(c),
            prep,
            used: [true, true, false],
            scope_all: false,
            track: false,
            fused: true,
            known_finite: false,
            t: 9,
        }
    }

    /// The kernel's pass 0 and the generic one on the same chunk: probe
    /// counts (2, 4 and 6 probes), histogram and finiteness equal.
    fn compare<F: Filter>(filter: &F, adam: &Adam, prep: GradPrep<f32>, n: usize, seed: u64) {
        let t = 9;
        let c = adam.coef::<f32>(t, adam.lr, adam.weight_decay, &Default::default());
        let specials = prep.map().is_none();
        let [g, mut m, mut v] = chunk(n, seed, specials);
        let mut p = vec![0.5f32; n];
        let mut z = Vec::new();
        let ctx = ctx_of(filter, adam, &c, prep);
        let mut view = View {
            p: &mut p,
            g: &g,
            pre: &[],
            s: [&mut m, &mut v, &mut z],
            off: 0,
        };
        let reads = [false, true, true, false];
        let what = format!("{} n {n} seed {seed} {adam:?} {prep:?}", filter.name());
        // The generic histogram first, to place the probes.
        let mut hist = vec![0u32; BUCKETS];
        let generic_finite = with_mapped(prep.map(), &mut view, |view| {
            count_chunk_wide(&ctx, c, view, &mut hist, reads)
        });
        let mut hand_hist = vec![0u32; BUCKETS];
        let hand_finite =
            try_count_chunk(&ctx, &c, &view, &mut hand_hist).expect("the kernel applies");
        assert_eq!(hand_hist, hist, "histogram, {what}");
        assert_eq!(hand_finite, generic_finite, "finite (histogram), {what}");
        assert_eq!(generic_finite, !specials || n <= 40, "{what}");
        // The probes from the keys, recomputed by the generic pass's own
        // arithmetic (a probe of 0 keys or n would test less).
        let mut keys: Vec<u64> = (0..n)
            .map(|i| {
                let g = prep.map().map_or(g[i], |map| map.apply(g[i]));
                super::super::key_after_update(
                    filter,
                    adam,
                    &c,
                    0.5,
                    g,
                    &[view.s[0][i], view.s[1][i], 0.0],
                )
            })
            .collect();
        let six = probes_for(&mut keys);
        let four = [six[0], six[2], six[3], six[5]];
        let two = [six[0], six[3]];
        let generic4 = with_mapped(prep.map(), &mut view, |view| {
            probe_chunk_wide(&ctx, c, view, &four, reads)
        });
        let generic = (
            with_mapped(prep.map(), &mut view, |view| {
                probe_chunk_wide(&ctx, c, view, &two, reads)
            }),
            with_mapped(prep.map(), &mut view, |view| {
                probe_chunk_wide(&ctx, c, view, &six, reads)
            }),
        );
        let hand = (
            try_probe_chunk(&ctx, &c, &view, &two),
            try_probe_chunk(&ctx, &c, &view, &four),
            try_probe_chunk(&ctx, &c, &view, &six),
        );
        assert_eq!(hand.0, Some(generic.0), "2 probes, {what}");
        assert_eq!(hand.1, Some(generic4), "4 probes, {what}");
        assert_eq!(hand.2, Some(generic.1), "6 probes, {what}");
        if n >= 100 {
            assert!(
                generic4.0[0] > 0 && generic4.0[3] < n as u64,
                "a test that tests: {what} {generic4:?}"
            );
        }
    }

    #[test]
    fn hand_written_pass_0_counts_as_the_generic_one() {
        if kernel_absent() {
            return;
        }
        let (mv, gv) = (Mv::new(0.1), Gv::new(0.1));
        let scaled = GradPrep {
            clip_value: None,
            scale: Some(2.5),
            pull: None,
        };
        let lens = [0usize, 1, 15, 16, 17, 33, 63, 257, 1000, 4099];
        for (s, &n) in lens.iter().enumerate() {
            for base in &kernel_bases() {
                for prep in [GradPrep::identity(), clipped(), scaled] {
                    let seed = 10 * s as u64;
                    compare(&mv, base, prep, n, seed);
                    compare(&gv, base, prep, n, seed + 1);
                }
            }
        }
    }

    #[test]
    fn the_kernel_declines_momentum_and_f64() {
        let adam = Adam::adamw(1e-3);
        let c32 = adam.coef::<f32>(3, adam.lr, adam.weight_decay, &Default::default());
        let c64 = adam.coef::<f64>(3, adam.lr, adam.weight_decay, &Default::default());
        let (momentum, gv) = (Momentum::new(0.1), Gv::new(0.1));
        let id = GradPrep::identity();
        assert!(applies(&ctx_of(&momentum, &adam, &c32, id), &c32).is_none());
        assert!(applies(&ctx_of(&gv, &adam, &c64, GradPrep::identity()), &c64).is_none());
        let pull = GradPrep {
            pull: Some((false, 0.1)),
            ..id
        };
        assert!(applies(&ctx_of(&gv, &adam, &c32, pull), &c32).is_none());
        if crate::kernels::simd::has_avx512() && enabled() {
            assert!(applies(&ctx_of(&gv, &adam, &c32, id), &c32).is_some());
        }
    }
}
