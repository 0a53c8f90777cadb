//! The single pass on f32 Adam(W) (no AMSGrad, no coupled L2 term) with the
//! momentum filter (MoFO), or the mv or gv filter, written with AVX-512
//! intrinsics: the same pass as the generic [`super::single_chunk`], bit
//! for bit, with its bookkeeping cut down. Per sixteen entries (one cache
//! line of each buffer):
//!
//! ```text
//! g ← clamp(g, −c, c)·s               (under clipping: `GradMap`)
//! m ← lerp(m, g, w1)                  v ← v·b2 + (omb2·g)·g        (stored)
//! key = bits(score) & 0x7fff_ffff      (a signed 32-bit compare), score =
//!       m                              (momentum)
//!       |m / bc1| / (√(v / bc2) + eps) (mv; √ as PyTorch's, `torch_sqrt_f32x16`)
//!       |g| / (√(v / bc2) + eps)       (gv)
//! above = key > hi                     band = lo ≤ key ≤ hi
//! θ ← above ? θ·decay + (neg_step_size·m) / (√v / bc2_sqrt + eps) : θ
//! log: old θ of `above` packed by vcompressps, gathered into whole
//!      cache lines in a register (vexpandps), each line streamed to the
//!      log (no read for ownership, no cache kept: the log is read only
//!      when the forecast missed);
//!      per 32 entries its mask, in place (the index is the position)
//! band entries (rare) → staged in L1 from the vectors already computed,
//!      pushed as candidates after each batch of 256 entries
//! ```
//!
//! What the generic pass spends beyond AdamW's update, and this one does
//! not: a byte of marks and the old θ per entry stored to the stack and
//! read back per line, the marks' test, the log's capacity checked and its
//! two cursors loaded and stored per line (the compiler keeps them in
//! memory, behind the sink's reference), and 8 bytes of line entry per 32
//! entries. Here the one cursor lives in a register, the capacity is
//! checked once per [`BATCH`] entries, and the masks go from the compares
//! straight to the compress and the log. Measured on 40.6M parameters, 2
//! threads, Zen 5 (docs/performance-log.md, twentieth sitting): the pass
//! 9.9–10.3 ms against the generic loop's 12.4–13.4; the streamed old θ and the
//! dense masks took MoFO/Adam from 1.128–1.134 to 1.101–1.108 (three
//! alternations); the log's writes are about 1 ms of the pass.
//! Twenty-first sitting: the old θ packed in a register rather than an L1
//! stage (whose whole-line loads could not be forwarded from the packed
//! stores), and the band's candidates staged and pushed after the batch
//! (no call in the loop, so the constants stay in registers): MoFO/Adam
//! alternated 1.067–1.072 against 1.079–1.083 on one thread; on two,
//! 1.043–1.048 against 1.054–1.060 at 73 GB/s and 1.061–1.085 against
//! 1.089–1.110 at 117–134 GB/s (docs/performance-log.md).
//!
//! Under clipping (a map of g alone, no pull) the map is taken in
//! registers as g is loaded, rather than through the L2 buffer of
//! `mapped.rs` that the generic kernels read (twenty-fifth sitting).
//!
//! Approximate scores decide first (twenty-sixth sitting). An exact mv or
//! gv key takes two or three divisions and PyTorch's square root. Most
//! entries lie far from the band, so the kernel first computes an estimate
//! Q' of the score with `vrcp14ps` and `vrsqrt14ps` in place of the
//! divisions and the root (`approx_scores`: within 2⁻¹²·⁹ of the exact
//! score, relative). When every lane of the sixteen lies above `hi`'s
//! value by a margin of 2⁻¹¹ ([`avx512::MARGIN`]), below `lo`'s value by
//! it, or has a zero score, those decisions are the exact keys' ones, and
//! no exact key is computed (no lane is in the band). Otherwise (a lane
//! near a bound or in the band, or an intermediate out of range) the exact
//! keys decide, as before. The mv single pass on 40.6M parameters went
//! from 14.8 to 12.2–12.4 ms (2 threads, Zen 5). The test `approximate_scores_stay_within_their_bound`
//! measures the estimate's worst error on millions of lanes, 9.2·10⁻⁵
//! (2⁻¹³·⁴) against the margin's 4.9·10⁻⁴. With the margin cut to 2⁻²⁰,
//! the bit-for-bit tests fail.
//!
//! The mv and gv scores (twenty-fifth sitting): the generic rooted loop
//! (`optimizer::rooted`, a line of 16 copied out and a sink called per
//! line) took 41 ms for the single pass of mv on 40.6M parameters against
//! 14.4 here (2 threads, Zen 5). Pass 1 under decay scope `Selected` is
//! the single pass with a band known to hold K, and runs this kernel too.
//!
//! [`try_single_chunk`] runs it when the CPU has AVX-512, `T` is `f32`, the
//! filter is [`Momentum`], [`Mv`] or [`Gv`], the base a plain [`Adam`] and
//! the gradients' transform the identity or a map of g alone;
//! `MOFO_GENERIC_SINGLE_PASS=1` turns it off, to compare. Its test runs both
//! on the same inputs and compares θ, m, v, the log, the candidates and the
//! completion flag bit for bit.

use std::any::{Any, TypeId};

use super::{Band, Candidate, UndoLog};
use crate::optim::base::{Adam, AdamCoef, Base, PlainAdamF32};
use crate::optim::filter::{Filter, Gv, Momentum, Mv};
use crate::optim::optimizer::{Ctx, View};
use crate::optim::transform::{GradMap, GradPrep};
use crate::Scalar;

/// Entries between two checks of the log's capacity (eight groups of 32).
const BATCH: usize = 256;

/// Entries per log line: two cache lines of f32.
const GROUP: usize = 32;

/// Whether `MOFO_GENERIC_SINGLE_PASS` is unset (read once): set, the
/// single pass runs the generic loop on every CPU, for A/B runs.
pub(super) fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("MOFO_GENERIC_SINGLE_PASS").is_none())
}

/// The single pass over one chunk by the hand-written kernel, when it
/// applies (module docs): `Some(complete)` as [`super::single_chunk`]
/// returns it, `None` when the caller must run the generic loop.
pub(super) fn try_single_chunk<F: Filter, B: Base, T: Scalar>(
    ctx: &Ctx<'_, F, B, T>,
    c: &B::Coef<T>,
    v: &mut View<'_, T>,
    band: Band,
    cap: usize,
    cands: &mut Vec<Candidate>,
    undo: &mut UndoLog<T>,
) -> Option<bool> {
    if !enabled() || !crate::kernels::simd::has_avx512() {
        return None;
    }
    let (k, score) = plain_adam_f32(ctx, c)?;
    let map = clamp_scale_f32(ctx.prep)?;
    let n = v.p.len();
    let [a, b, _] = &mut v.s;
    Some(run_f32(
        &k,
        score,
        map,
        as_f32_mut(v.p)?,
        as_f32(&v.g[..n])?,
        as_f32_mut(&mut a[..n])?,
        as_f32_mut(&mut b[..n])?,
        band,
        ctx.scope_all,
        cap,
        cands,
        undo_f32(undo)?,
    ))
}

/// The score of the selection: |m| (MoFO), |m̂| / (√v̂ + ε) (mv) or
/// |g| / (√v̂ + ε) (gv), the square roots as [`torch_sqrt_f32`] takes them.
///
/// [`torch_sqrt_f32`]: crate::kernels::torch_sqrt::torch_sqrt_f32
pub(super) const MOMENTUM: u8 = 0;
/// See [`MOMENTUM`].
pub(super) const MV: u8 = 1;
/// See [`MOMENTUM`].
pub(super) const GV: u8 = 2;

/// The step's constants and its score ([`MOMENTUM`], [`MV`] or [`GV`]) when
/// the pass is the momentum, mv or gv filter on a plain f32 Adam(W) with m
/// and v in use (and nothing else).
pub(super) fn plain_adam_f32<F: Filter, B: Base, T: Scalar>(
    ctx: &Ctx<'_, F, B, T>,
    c: &B::Coef<T>,
) -> Option<(PlainAdamF32, u8)> {
    if TypeId::of::<T>() != TypeId::of::<f32>() || ctx.used != [true, true, false] {
        return None;
    }
    let filter = ctx.filter as &dyn Any;
    let score = if filter.is::<Momentum>() {
        MOMENTUM
    } else if filter.is::<Mv>() {
        MV
    } else if filter.is::<Gv>() {
        GV
    } else {
        return None;
    };
    (ctx.base as &dyn Any).downcast_ref::<Adam>()?;
    // SAFETY: `B` is `Adam` (the downcast above succeeded, so their type
    // ids agree) and `T` is `f32` (checked above), so `B::Coef<T>` is
    // `AdamCoef<f32>`: the cast is to the reference's own type.
    let c = unsafe { &*(c as *const B::Coef<T>).cast::<AdamCoef<f32>>() };
    Some((c.plain()?, score))
}

/// The gradients' map as the kernel takes it: `Some(None)` for the
/// identity, `Some(Some((c, s)))` for `clamp(g, −c, c)·s` (c = +∞ for the
/// scale alone: the clamp then leaves every finite g as it is), `None`
/// when the transform is not a map of g alone (a pull) or `T` is not f32.
pub(super) fn clamp_scale_f32<T: Scalar>(prep: GradPrep<T>) -> Option<Option<(f32, f32)>> {
    if TypeId::of::<T>() != TypeId::of::<f32>() {
        return None;
    }
    // `T` is f32: the conversions are exact.
    let f = |x: T| x.as_f64() as f32;
    match prep.map() {
        None => prep.is_identity().then_some(None),
        Some(GradMap::Scale(s)) => Some(Some((f32::INFINITY, f(s)))),
        Some(GradMap::ClampScale(c, s)) => Some(Some((f(c), f(s)))),
    }
}

/// `s` as `&mut [f32]` when `T` is `f32`.
fn as_f32_mut<T: Scalar>(s: &mut [T]) -> Option<&mut [f32]> {
    (TypeId::of::<T>() == TypeId::of::<f32>()).then(|| {
        // SAFETY: `T` is `f32` (same type id), so this is the same slice.
        unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<f32>(), s.len()) }
    })
}

/// `s` as `&[f32]` when `T` is `f32`.
pub(super) fn as_f32<T: Scalar>(s: &[T]) -> Option<&[f32]> {
    (TypeId::of::<T>() == TypeId::of::<f32>()).then(|| {
        // SAFETY: `T` is `f32` (same type id), so this is the same slice.
        unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<f32>(), s.len()) }
    })
}

/// `u` as `&mut UndoLog<f32>` when `T` is `f32`.
fn undo_f32<T: Scalar>(u: &mut UndoLog<T>) -> Option<&mut UndoLog<f32>> {
    (TypeId::of::<T>() == TypeId::of::<f32>()).then(|| {
        // SAFETY: `T` is `f32` (same type id), so this is the same type.
        unsafe { &mut *(u as *mut UndoLog<T>).cast::<UndoLog<f32>>() }
    })
}

/// The pass over one chunk of f32 entries on a CPU with AVX-512 (checked
/// by the caller), its gradients mapped by `map` (`clamp_scale_f32`) as
/// they are loaded. Returns false when the chunk recorded more than `cap`
/// candidates and stopped recording, as [`super::single_chunk`].
#[allow(clippy::too_many_arguments)]
pub(super) fn run_f32(
    k: &PlainAdamF32,
    score: u8,
    map: Option<(f32, f32)>,
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    band: Band,
    scope_all: bool,
    cap: usize,
    cands: &mut Vec<Candidate>,
    undo: &mut UndoLog<f32>,
) -> bool {
    let n = p.len();
    assert!(g.len() == n && m.len() == n && v.len() == n);
    assert!(n <= u32::MAX as usize, "chunk indices are logged as u32");
    assert!(crate::kernels::simd::has_avx512());
    #[cfg(target_arch = "x86_64")]
    {
        let keys = (band.lo as u32 as i32, band.hi as u32 as i32);
        let hint = crate::kernels::prefetch::enabled();
        // The four loop-invariant choices, made once for the chunk
        // (`avx512::sixteen`'s `NEAR`, `DECOUPLED`, `MAPPED`, `SCORE`).
        let pass = avx512::pick(k.w1 < 0.5, k.decoupled, map.is_some(), score);
        let map = map.unwrap_or((f32::INFINITY, 1.0));
        // SAFETY: the CPU has AVX-512 F/BW/DQ/VL and POPCNT (asserted just
        // above); the slices have the same length `n` (asserted).
        unsafe { pass(k, map, p, g, m, v, keys, scope_all, hint, cap, cands, undo) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (k, score, map, band, scope_all, cap, cands, undo);
        unreachable!("has_avx512 is false off x86-64")
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx512 {
    use std::arch::x86_64::*;

    use super::{Candidate, PlainAdamF32, UndoLog, BATCH, GROUP, GV, MOMENTUM, MV};
    use crate::kernels::prefetch::{prefetch_ptr, AHEAD};
    use crate::kernels::torch_sqrt::torch_sqrt_f32x16;

    /// The arithmetic's constants, broadcast.
    pub(in crate::optim::optimizer::fused) struct Consts {
        w1: __m512,
        omw1: __m512,
        b2: __m512,
        omb2: __m512,
        nss: __m512,
        bc2s: __m512,
        eps: __m512,
        decay: __m512,
        bc1: __m512,
        bc2: __m512,
        /// The gradients' map (`MAPPED`): −c, c and s of `clamp(g)·s`.
        neg_clamp: __m512,
        clamp: __m512,
        scale: __m512,
        abs: __m512i,
        lo: __m512i,
        hi: __m512i,
        /// The band's bounds for the approximate scores (`approx_scores`):
        /// above it when Q' > `up` (hi's value raised by [`MARGIN`]), below
        /// it when Q' < `down` (lo's value lowered by it); used when
        /// `approx` (the scores and both bounds within range).
        up: __m512,
        down: __m512,
        approx: bool,
        /// 1 / bc1 and 1 / bc2, rounded.
        ibc1: __m512,
        ibc2: __m512,
        /// All lanes when a zero numerator means a zero score (ε > 0):
        /// `approx_scores`' `zero` lanes.
        zero_ok: __mmask16,
    }

    /// The relative margin of a decision taken on an approximate score:
    /// 2⁻¹¹, four times the approximation's error bound (2⁻¹³ and a few
    /// roundings, `approx_scores`).
    pub(in crate::optim::optimizer::fused) const MARGIN: f32 = 1.0 / 2048.0;

    /// Bits of 2⁻¹²⁰, 2⁻¹⁰⁰, 2¹⁰⁰ and 2¹²⁰: the ranges inside which the
    /// approximations keep their relative error bound (no subnormal, no
    /// overflow, the estimates' inputs normal).
    const EXP_M120: u32 = (127 - 120) << 23;
    const EXP_M100: u32 = (127 - 100) << 23;
    const EXP_100: u32 = (127 + 100) << 23;
    const EXP_120: u32 = (127 + 120) << 23;

    /// The decision thresholds of an approximate score against the key
    /// `b` (a bound's bit pattern): (`up`, `down`) = b's value times
    /// (1 ± [`MARGIN`]), or `None` when that value lies outside
    /// [2⁻¹⁰⁰, 2¹⁰⁰] (the decisions are then left to the exact keys).
    pub(in crate::optim::optimizer::fused) fn approx_bounds(b: u64) -> Option<(f32, f32)> {
        let b = u32::try_from(b).ok()?;
        let x = f32::from_bits(b);
        (EXP_M100..=EXP_100)
            .contains(&b)
            .then_some((x * (1.0 + MARGIN), x * (1.0 - MARGIN)))
    }

    /// Whether the step's ε lets the approximate scores decide: (ε at most
    /// 2⁶⁰, so that √v̂ + ε stays in range; ε a positive normal too, so that
    /// a zero numerator gives a zero score).
    pub(in crate::optim::optimizer::fused) fn approx_eps(k: &PlainAdamF32) -> (bool, bool) {
        let ok = (0.0..=2f32.powi(60)).contains(&k.eps);
        (ok, ok && k.eps >= f32::MIN_POSITIVE)
    }

    impl Consts {
        /// The step's constants `k`, the gradients' map (the clamp's c and
        /// the scale) and the band's (lo, hi) as signed 32-bit keys.
        #[target_feature(enable = "avx512f")]
        #[inline]
        pub(in crate::optim::optimizer::fused) fn new(
            k: &PlainAdamF32,
            map: (f32, f32),
            keys: (i32, i32),
        ) -> Consts {
            let (eps_ok, zero_ok) = approx_eps(k);
            let bounds =
                approx_bounds(keys.1 as u32 as u64).zip(approx_bounds(keys.0 as u32 as u64));
            let approx = eps_ok && bounds.is_some();
            let ((up, _), (_, down)) = bounds.unwrap_or(((f32::INFINITY, 0.0), (0.0, 0.0)));
            Consts {
                w1: _mm512_set1_ps(k.w1),
                omw1: _mm512_set1_ps(k.omw1),
                b2: _mm512_set1_ps(k.b2),
                omb2: _mm512_set1_ps(k.omb2),
                nss: _mm512_set1_ps(k.neg_step_size),
                bc2s: _mm512_set1_ps(k.bc2_sqrt),
                eps: _mm512_set1_ps(k.eps),
                decay: _mm512_set1_ps(k.decay),
                bc1: _mm512_set1_ps(k.bc1),
                bc2: _mm512_set1_ps(k.bc2),
                neg_clamp: _mm512_set1_ps(-map.0),
                clamp: _mm512_set1_ps(map.0),
                scale: _mm512_set1_ps(map.1),
                abs: _mm512_set1_epi32(0x7fff_ffff),
                lo: _mm512_set1_epi32(keys.0),
                hi: _mm512_set1_epi32(keys.1),
                up: _mm512_set1_ps(up),
                down: _mm512_set1_ps(down),
                approx,
                ibc1: _mm512_set1_ps(1.0 / k.bc1),
                ibc2: _mm512_set1_ps(1.0 / k.bc2),
                zero_ok: if zero_ok { !0 } else { 0 },
            }
        }
    }

    /// The mv or gv score (`SCORE`) without a division or a square root:
    /// Q' = num' · rcp14(√'(v·ibc2) + eps), √'(x) = x · rsqrt14(x), num' =
    /// |m·ibc1| (mv) or |g| (gv); with the lanes `safe` where every
    /// intermediate lies in range, and `zero` where the exact score is 0
    /// (a zero numerator over a positive denominator, when `zero_ok`).
    ///
    /// On a `safe` lane |Q'/Q − 1| < 2⁻¹²·⁹ for the exact score Q of
    /// [`keys`]: the two estimates' relative errors are below 2⁻¹⁴ each
    /// (`vrcp14ps`, `vrsqrt14ps`, on normal inputs); ibc1, ibc2, the
    /// products, the sum with eps ≥ 0 and the exact score's own divisions
    /// and rounded root add a few units of 2⁻²⁴. So Q' > b·(1 + 2⁻¹¹)
    /// implies Q > b, and Q' < b·(1 − 2⁻¹¹) implies Q < b: a decision
    /// against a bound with the [`MARGIN`] is the exact keys' decision
    /// (keys order as the non-negative values they encode). The test
    /// `approximate_scores_stay_within_their_bound` checks the bound.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(in crate::optim::optimizer::fused) fn approx_scores<const SCORE: u8>(
        c: &Consts,
        g: __m512,
        m1: __m512,
        v1: __m512,
    ) -> (__m512, __mmask16, __mmask16) {
        let num = if SCORE == MV {
            _mm512_mul_ps(m1, c.ibc1)
        } else {
            g
        };
        let num = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(num), c.abs));
        let x = _mm512_mul_ps(v1, c.ibc2);
        let root = _mm512_mul_ps(x, _mm512_rsqrt14_ps(x));
        let q = _mm512_mul_ps(num, _mm512_rcp14_ps(_mm512_add_ps(root, c.eps)));
        // lo ≤ bits ≤ hi, unsigned (a negative value's sign bit puts it
        // above every range here, NaN's bits above +∞'s).
        let within = |v: __m512, lo: u32, hi: u32| {
            let shifted = _mm512_sub_epi32(_mm512_castps_si512(v), _mm512_set1_epi32(lo as i32));
            _mm512_cmple_epu32_mask(shifted, _mm512_set1_epi32((hi - lo) as i32))
        };
        let safe = within(x, EXP_M120, EXP_120)
            & within(num, EXP_M120, EXP_120)
            & within(q, EXP_M100, EXP_100);
        // A zero numerator: the exact score is 0 / (√x̂ + ε) = 0 when x ≥ 0
        // or +∞ (not NaN, not negative) and ε > 0.
        let zero = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(num, _mm512_setzero_ps())
            & within(x, 0, f32::INFINITY.to_bits())
            & c.zero_ok;
        (q, safe, zero)
    }

    /// What [`sixteen`] leaves of its entries: the masks of those above
    /// the band and in it, the old θ of those above, packed into the first
    /// lanes of `packed`, and for the band's candidates their keys, new θ,
    /// decayed θ and old θ (dead, so free, unless the band holds some).
    struct Sixteen {
        above: u16,
        inb: u16,
        packed: __m512,
        key: __m512i,
        new: __m512,
        decayed: __m512,
        old: __m512,
    }

    impl Sixteen {
        /// No entry (past a chunk's end).
        #[target_feature(enable = "avx512f")]
        #[inline]
        fn none() -> Sixteen {
            Sixteen {
                above: 0,
                inb: 0,
                packed: _mm512_setzero_ps(),
                key: _mm512_setzero_si512(),
                new: _mm512_setzero_ps(),
                decayed: _mm512_setzero_ps(),
                old: _mm512_setzero_ps(),
            }
        }
    }

    /// The four buffers' base pointers: θ, g, m, v.
    type Ptrs = (*mut f32, *const f32, *mut f32, *mut f32);

    /// The new moments from the old ones and the gradient. `NEAR`:
    /// `w1 < 0.5`, lerp's first form (`m + w1·(g − m)`), else the second
    /// (`g − (g − m)·(1 − w1)`).
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(in crate::optim::optimizer::fused) fn moments<const NEAR: bool>(
        c: &Consts,
        g: __m512,
        m0: __m512,
        v0: __m512,
    ) -> [__m512; 2] {
        let m1 = if NEAR {
            _mm512_add_ps(m0, _mm512_mul_ps(c.w1, _mm512_sub_ps(g, m0)))
        } else {
            _mm512_sub_ps(g, _mm512_mul_ps(_mm512_sub_ps(g, m0), c.omw1))
        };
        let v1 = _mm512_add_ps(
            _mm512_mul_ps(v0, c.b2),
            _mm512_mul_ps(_mm512_mul_ps(c.omb2, g), g),
        );
        [m1, v1]
    }

    /// θ decayed (by `decay` when `DECOUPLED`, else as it is) and θ
    /// updated: `decayed + (nss·m) / (√v / bc2s + eps)`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn updated<const DECOUPLED: bool>(
        c: &Consts,
        p0: __m512,
        m1: __m512,
        v1: __m512,
    ) -> [__m512; 2] {
        let decayed = if DECOUPLED {
            _mm512_mul_ps(p0, c.decay)
        } else {
            p0
        };
        let denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(v1), c.bc2s), c.eps);
        let new = _mm512_add_ps(decayed, _mm512_div_ps(_mm512_mul_ps(c.nss, m1), denom));
        [decayed, new]
    }

    /// The scores' keys, their bits without the sign (compared as signed
    /// 32-bit): |m| ([`MOMENTUM`]); |m / bc1| / (√(v / bc2) + eps) ([`MV`])
    /// or |g| / (√(v / bc2) + eps) ([`GV`]), as the filters' rooted scores
    /// compute them (the square root [`torch_sqrt_f32x16`]).
    #[target_feature(enable = "avx,avx512f,avx512dq")]
    #[inline]
    pub(in crate::optim::optimizer::fused) fn keys<const SCORE: u8>(
        c: &Consts,
        g: __m512,
        m1: __m512,
        v1: __m512,
    ) -> __m512i {
        if SCORE == MOMENTUM {
            return _mm512_and_si512(_mm512_castps_si512(m1), c.abs);
        }
        let num = if SCORE == MV {
            _mm512_div_ps(m1, c.bc1)
        } else {
            debug_assert_eq!(SCORE, GV);
            g
        };
        let num = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(num), c.abs));
        let denom = _mm512_add_ps(torch_sqrt_f32x16(_mm512_div_ps(v1, c.bc2)), c.eps);
        _mm512_and_si512(_mm512_castps_si512(_mm512_div_ps(num, denom)), c.abs)
    }

    /// The gradients' map, `clamp(g, −c, c)·s`, as `f32::max` and
    /// `f32::min` then the product compute it (`GradMap`) on every finite
    /// g: the clamp's operands in the order that returns g itself when g
    /// equals the bound (so a zero keeps its sign, as LLVM's lowering of
    /// the scalar `max` and `min` keeps it).
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(in crate::optim::optimizer::fused) fn mapped(c: &Consts, g: __m512) -> __m512 {
        let clamped = _mm512_min_ps(c.clamp, _mm512_max_ps(c.neg_clamp, g));
        _mm512_mul_ps(clamped, c.scale)
    }

    /// The keys of the entries `lanes` and the masks of those above the
    /// band and in it. For mv and gv, when the approximate scores
    /// (`approx_scores`) decide every lane (each above the band or below
    /// it by the [`MARGIN`], or a zero score), no exact key is computed
    /// (the keys returned are then zeros, unread: no lane is in the band);
    /// otherwise, and for MoFO, the exact keys decide.
    #[target_feature(enable = "avx,avx512f,avx512dq")]
    #[inline]
    fn classify<const SCORE: u8>(
        c: &Consts,
        g: __m512,
        m1: __m512,
        v1: __m512,
        lanes: __mmask16,
    ) -> (__m512i, __mmask16, __mmask16) {
        if SCORE != MOMENTUM && c.approx {
            let (q, safe, zero) = approx_scores::<SCORE>(c, g, m1, v1);
            let above = _mm512_mask_cmp_ps_mask::<_CMP_GT_OQ>(safe, q, c.up);
            let below = _mm512_mask_cmp_ps_mask::<_CMP_LT_OQ>(safe, q, c.down) | zero;
            if (above | below) & lanes == lanes {
                return (_mm512_setzero_si512(), above & lanes, 0);
            }
        }
        let key = keys::<SCORE>(c, g, m1, v1);
        let above = _mm512_mask_cmpgt_epi32_mask(lanes, key, c.hi);
        let inb = _mm512_mask_cmpge_epi32_mask(lanes, key, c.lo) & !above;
        (key, above, inb)
    }

    /// Sixteen entries at `i`, those of the mask `lanes` (all of them when
    /// `full`): state stored, θ updated above the band. `MAPPED`: the
    /// gradients are taken through [`mapped`].
    ///
    /// # Safety
    /// The CPU has AVX-512 F; the lanes of `lanes` (all 16 when `full`)
    /// from `i` lie inside each buffer.
    #[target_feature(enable = "avx,avx512f,avx512dq")]
    #[inline]
    unsafe fn sixteen<
        const NEAR: bool,
        const DECOUPLED: bool,
        const MAPPED: bool,
        const SCORE: u8,
    >(
        c: &Consts,
        ptrs: Ptrs,
        i: usize,
        lanes: __mmask16,
        full: bool,
    ) -> Sixteen {
        let (pp, gp, mp, vp) = ptrs;
        // SAFETY: the lanes read and written lie in the buffers (the
        // function's contract).
        let (p0, g, m0, v0) = unsafe {
            if full {
                (
                    _mm512_loadu_ps(pp.add(i)),
                    _mm512_loadu_ps(gp.add(i)),
                    _mm512_loadu_ps(mp.add(i)),
                    _mm512_loadu_ps(vp.add(i)),
                )
            } else {
                (
                    _mm512_maskz_loadu_ps(lanes, pp.add(i)),
                    _mm512_maskz_loadu_ps(lanes, gp.add(i)),
                    _mm512_maskz_loadu_ps(lanes, mp.add(i)),
                    _mm512_maskz_loadu_ps(lanes, vp.add(i)),
                )
            }
        };
        let g = if MAPPED { mapped(c, g) } else { g };
        let [m1, v1] = moments::<NEAR>(c, g, m0, v0);
        let (key, above, inb) = classify::<SCORE>(c, g, m1, v1, lanes);
        let [decayed, new] = updated::<DECOUPLED>(c, p0, m1, v1);
        let p1 = _mm512_mask_mov_ps(p0, above, new);
        // SAFETY: as the loads above.
        unsafe {
            if full {
                _mm512_storeu_ps(pp.add(i), p1);
                _mm512_storeu_ps(mp.add(i), m1);
                _mm512_storeu_ps(vp.add(i), v1);
            } else {
                _mm512_mask_storeu_ps(pp.add(i), lanes, p1);
                _mm512_mask_storeu_ps(mp.add(i), lanes, m1);
                _mm512_mask_storeu_ps(vp.add(i), lanes, v1);
            }
        }
        Sixteen {
            above,
            inb,
            packed: _mm512_maskz_compress_ps(above, p0),
            key,
            new,
            decayed,
            old: p0,
        }
    }

    /// The band's entries of a batch, staged in L1 (from the vectors
    /// [`sixteen`] computed, with no call in the loop) and pushed as
    /// candidates after it: index in the chunk, key, new θ, and the θ kept
    /// (`rest`: the old θ, or the decayed one under scope `All`), the
    /// values the generic pass's `record_band` computes. Pushing from the
    /// loop made its registers spill around the call; recomputing the
    /// values after the loop from what `sixteen` stored made the loads wait
    /// for those stores.
    struct Staged {
        i: [u32; BATCH + 16],
        key: [u32; BATCH + 16],
        new: [f32; BATCH + 16],
        rest: [f32; BATCH + 16],
        n: usize,
    }

    impl Staged {
        /// Stages the band's entries of `s`, the sixteen at `lo`.
        ///
        /// # Safety
        /// The CPU has AVX-512 F; at most `BATCH − 16` entries were staged
        /// before (a batch stages at most its own entries, `BATCH`).
        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn put(&mut self, s: &Sixteen, lo: usize, scope_all: bool) {
            let iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            let at = _mm512_add_epi32(iota, _mm512_set1_epi32(lo as i32));
            let rest = if scope_all { s.decayed } else { s.old };
            let n = self.n;
            // SAFETY: room for 16 lanes past `n` (the contract).
            unsafe {
                _mm512_storeu_si512(
                    self.i.as_mut_ptr().add(n).cast(),
                    _mm512_maskz_compress_epi32(s.inb, at),
                );
                _mm512_storeu_si512(
                    self.key.as_mut_ptr().add(n).cast(),
                    _mm512_maskz_compress_epi32(s.inb, s.key),
                );
                _mm512_storeu_ps(
                    self.new.as_mut_ptr().add(n),
                    _mm512_maskz_compress_ps(s.inb, s.new),
                );
                _mm512_storeu_ps(
                    self.rest.as_mut_ptr().add(n),
                    _mm512_maskz_compress_ps(s.inb, rest),
                );
            }
            self.n += s.inb.count_ones() as usize;
        }

        /// The staged entries pushed as candidates, in index order, group
        /// by group (32 entries) until their count passes `cap`; returns
        /// whether it never did (the generic pass's completion flag).
        /// Empties the stage.
        fn push_to(&mut self, cands: &mut Vec<Candidate>, cap: usize) -> bool {
            let mut group = u32::MAX;
            let n = std::mem::take(&mut self.n);
            for j in 0..n {
                let i = self.i[j];
                if i / GROUP as u32 != group {
                    if cands.len() > cap {
                        return false;
                    }
                    group = i / GROUP as u32;
                }
                cands.push(Candidate {
                    i,
                    key: u64::from(self.key[j]),
                    new: f64::from(self.new[j]),
                    rest: f64::from(self.rest[j]),
                });
            }
            cands.len() <= cap
        }
    }

    /// Old values packed into whole cache lines in a register: the first
    /// `n` (< 16) lanes of `v` are values not yet written.
    struct Pack {
        v: __m512,
        n: usize,
    }

    impl Pack {
        /// Appends the first `k` lanes of `packed`; a completed line goes
        /// by a streaming store (no read for ownership, no cache kept: the
        /// log is read only when the forecast missed) to `out`, which then
        /// moves on by 16.
        ///
        /// # Safety
        /// The CPU has AVX-512 F; `out` is 64-byte aligned with room for
        /// 16 values.
        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn push(&mut self, packed: __m512, k: usize, out: &mut *mut f32) {
            // Lanes n.. take packed's first 16 − n.
            self.v = _mm512_mask_expand_ps(self.v, !0u16 << self.n, packed);
            let total = self.n + k;
            if total >= 16 {
                // SAFETY: `out` is aligned with room for a line (contract).
                unsafe {
                    _mm512_stream_ps(*out, self.v);
                    *out = out.add(16);
                }
                // The rest: packed's lanes from 16 − n on.
                self.v = _mm512_maskz_compress_ps((!0u32 << (16 - self.n)) as u16, packed);
                self.n = total - 16;
            } else {
                self.n = total;
            }
        }
    }

    /// The chunk's pass (see `run_f32`) for one choice of `NEAR`,
    /// `DECOUPLED`, `MAPPED` (`map` = the clamp's c and the scale, read
    /// only when `MAPPED`). `keys` = the band's (lo, hi) as signed 32-bit
    /// keys.
    ///
    /// # Safety
    /// The CPU has AVX-512 F/VL/BW/DQ, AVX2 and POPCNT; `p`, `g`, `m`, `v`
    /// have the same length.
    #[target_feature(enable = "avx2,avx512f,avx512vl,avx512bw,avx512dq,popcnt")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn pass_with<
        const NEAR: bool,
        const DECOUPLED: bool,
        const MAPPED: bool,
        const SCORE: u8,
    >(
        k: &PlainAdamF32,
        map: (f32, f32),
        p: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
        keys: (i32, i32),
        scope_all: bool,
        hint: bool,
        cap: usize,
        cands: &mut Vec<Candidate>,
        undo: &mut UndoLog<f32>,
    ) -> bool {
        let n = p.len();
        let c = Consts::new(k, map, keys);
        let mut complete = true;
        // The log is empty (cleared by the caller): its old values start
        // at the first 64-byte boundary of the buffer (`lead`), packed in
        // a register and written whole cache lines at a time (`Pack`).
        debug_assert!(undo.n_olds == 0 && undo.n_lines == 0 && undo.lead == 0);
        // One mask per group of 32, written in place (no cursor).
        let groups = n.div_ceil(GROUP);
        if undo.masks.len() < groups {
            undo.masks.resize(groups.max(2 * undo.masks.len()), 0);
        }
        undo.n_masks = groups;
        let masks = undo.masks.as_mut_ptr();
        let mut pack = Pack {
            v: _mm512_setzero_ps(),
            n: 0,
        };
        let mut flushed = 0usize;
        let mut staged = Staged {
            i: [0; BATCH + 16],
            key: [0; BATCH + 16],
            new: [0.0; BATCH + 16],
            rest: [0.0; BATCH + 16],
            n: 0,
        };
        undo.reserve(0, 32);
        undo.lead = align_lead(undo.olds.as_ptr());
        let mut lo = 0;
        while lo < n {
            let end = (lo + BATCH).min(n);
            // Room for the batch's entries past those flushed, those
            // packed, and the 16 lanes of the last partial line.
            let need = pack.n + (end - lo) + 32;
            if undo.olds.len() < undo.lead + flushed + need {
                undo.n_olds = flushed;
                undo.reserve(0, need);
                let lead = align_lead(undo.olds.as_ptr());
                undo.olds.copy_within(undo.lead..undo.lead + flushed, lead);
                undo.lead = lead;
            }
            // SAFETY: `lead + flushed` lies inside the buffer (reserved
            // above), 64-byte aligned (`lead`, and `flushed` a multiple of
            // 16).
            let mut out = unsafe { undo.olds.as_mut_ptr().add(undo.lead + flushed) };
            let ptrs: Ptrs = (p.as_mut_ptr(), g.as_ptr(), m.as_mut_ptr(), v.as_mut_ptr());
            while lo < end {
                let rem = end - lo;
                // SAFETY (both arms): the lanes passed lie in the chunk
                // (`lo + 32 <= end`, or the masks of the `rem` left).
                let (s0, s1) = unsafe {
                    if rem >= GROUP {
                        if hint {
                            let at = lo + AHEAD;
                            for at in [at, at + 16] {
                                prefetch_ptr(ptrs.0, at);
                                prefetch_ptr(ptrs.1, at);
                                prefetch_ptr(ptrs.2, at);
                                prefetch_ptr(ptrs.3, at);
                            }
                        }
                        (
                            sixteen::<NEAR, DECOUPLED, MAPPED, SCORE>(&c, ptrs, lo, !0, true),
                            sixteen::<NEAR, DECOUPLED, MAPPED, SCORE>(&c, ptrs, lo + 16, !0, true),
                        )
                    } else {
                        // The chunk's last, partial group.
                        let m0 = if rem >= 16 { !0u16 } else { (1u16 << rem) - 1 };
                        let m1 = if rem > 16 {
                            ((1u32 << (rem - 16)) - 1) as u16
                        } else {
                            0
                        };
                        let s0 =
                            sixteen::<NEAR, DECOUPLED, MAPPED, SCORE>(&c, ptrs, lo, m0, rem >= 16);
                        let s1 = if m1 != 0 {
                            sixteen::<NEAR, DECOUPLED, MAPPED, SCORE>(&c, ptrs, lo + 16, m1, false)
                        } else {
                            Sixteen::none()
                        };
                        (s0, s1)
                    }
                };
                // SAFETY: `lo / 32` < `groups`, the masks' length; `out`
                // stays aligned with room for the batch (reserved above).
                unsafe {
                    *masks.add(lo / GROUP) = u32::from(s0.above) | (u32::from(s1.above) << 16);
                    pack.push(s0.packed, s0.above.count_ones() as usize, &mut out);
                    pack.push(s1.packed, s1.above.count_ones() as usize, &mut out);
                }
                if (s0.inb | s1.inb) != 0 && complete {
                    // SAFETY: at most the batch's 256 entries are staged.
                    unsafe {
                        staged.put(&s0, lo, scope_all);
                        staged.put(&s1, lo + 16, scope_all);
                    }
                }
                lo += GROUP.min(rem);
            }
            if staged.n > 0 {
                complete = staged.push_to(cands, cap);
            }
            // SAFETY: `out` moved on from the batch's start inside the log.
            flushed = unsafe { out.offset_from(undo.olds.as_ptr().add(undo.lead)) } as usize;
        }
        // SAFETY: the last packed values (< 16) go after the flushed ones
        // (room reserved for 16 more); the fence orders the streaming
        // stores before whatever reads the log next.
        unsafe {
            let olds = undo.olds.as_mut_ptr().add(undo.lead);
            _mm512_storeu_ps(olds.add(flushed), pack.v);
            _mm_sfence();
        }
        undo.n_olds = flushed + pack.n;
        complete
    }

    /// [`pass_with`]'s signature.
    pub(super) type Pass = unsafe fn(
        &PlainAdamF32,
        (f32, f32),
        &mut [f32],
        &[f32],
        &mut [f32],
        &mut [f32],
        (i32, i32),
        bool,
        bool,
        usize,
        &mut Vec<Candidate>,
        &mut UndoLog<f32>,
    ) -> bool;

    /// The instance of [`pass_with`] for the chunk's choices.
    pub(super) fn pick(near: bool, decoupled: bool, mapped: bool, score: u8) -> Pass {
        fn by_score<const N: bool, const D: bool, const M: bool>(score: u8) -> Pass {
            match score {
                MOMENTUM => pass_with::<N, D, M, MOMENTUM>,
                MV => pass_with::<N, D, M, MV>,
                _ => pass_with::<N, D, M, GV>,
            }
        }
        fn by_map<const N: bool, const D: bool>(mapped: bool, score: u8) -> Pass {
            if mapped {
                by_score::<N, D, true>(score)
            } else {
                by_score::<N, D, false>(score)
            }
        }
        match (near, decoupled) {
            (true, true) => by_map::<true, true>(mapped, score),
            (true, false) => by_map::<true, false>(mapped, score),
            (false, true) => by_map::<false, true>(mapped, score),
            (false, false) => by_map::<false, false>(mapped, score),
        }
    }

    /// Entries from `ptr` to the next 64-byte boundary (0 to 15).
    fn align_lead(ptr: *const f32) -> usize {
        (64 - ptr as usize % 64) % 64 / 4
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::optim::base::AdamCoef;
    use crate::optim::optimizer::fused::key_after_update;
    use crate::optim::optimizer::fused::single_chunk_wide;
    use crate::optim::optimizer::mapped::with_mapped;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Whether the kernel's tests must skip (printing why): no AVX-512,
    /// or `MOFO_GENERIC_SINGLE_PASS` set.
    pub(in crate::optim::optimizer::fused) fn kernel_absent() -> bool {
        let absent = !crate::kernels::simd::has_avx512() || !enabled();
        if absent {
            eprintln!("skipped: this CPU has no AVX-512 (or MOFO_GENERIC_SINGLE_PASS is set)");
        }
        absent
    }

    /// The bases the kernels' tests run on: AdamW, Adam, and AdamW with
    /// β₁ = 0.3 (lerp's first form).
    pub(in crate::optim::optimizer::fused) fn kernel_bases() -> [Adam; 3] {
        let far = Adam {
            betas: (0.3, 0.99),
            ..Adam::adamw(1e-2)
        };
        [Adam::adamw(3e-3), Adam::new(1e-3), far]
    }

    /// Clipping by value at 0.01 (about half of the tests' gradients) and
    /// by a norm's scale of 0.37.
    pub(in crate::optim::optimizer::fused) fn clipped() -> GradPrep<f32> {
        GradPrep {
            clip_value: Some(0.01),
            scale: Some(0.37),
            pull: None,
        }
    }

    /// Inputs of one chunk: θ, g, m, v.
    pub(in crate::optim::optimizer::fused) fn chunk(n: usize, seed: u64) -> [Vec<f32>; 4] {
        let mut r = ChaCha8Rng::seed_from_u64(seed);
        let mut normal = |scale: f32| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    let x: f32 = r.random_range(-1.0f32..1.0);
                    scale * x * x * x * r.random_range(0.1f32..3.0)
                })
                .collect()
        };
        let (p, g, mut m) = (normal(1.0), normal(0.1), normal(0.01));
        let v = normal(1e-3).iter().map(|x| x * x).collect();
        // Zeros of both signs in m, where the sign of a zero g can show
        // (lerp's second form gives −0 for g = −0 on m = −0, +0 for +0).
        for (i, m) in m.iter_mut().enumerate() {
            match i % 13 {
                5 => *m = -0.0,
                6 => *m = 0.0,
                _ => {}
            }
        }
        [p, g, m, v]
    }

    /// The band holding the keys of ranks `n/10 .. n/10 + n/width` (the
    /// filter's keys after the state's update), as the single pass gets
    /// it: (lo, hi].
    fn band_for<F: Filter>(
        filter: &F,
        adam: &Adam,
        c: &AdamCoef<f32>,
        [p, g, m, v]: [&[f32]; 4],
        width: usize,
    ) -> Band {
        let mut keys: Vec<u64> = (0..p.len())
            .map(|i| key_after_update(filter, adam, c, p[i], g[i], &[m[i], v[i], 0.0]))
            .collect();
        keys.sort_unstable_by(|a, b| b.cmp(a));
        let n = keys.len();
        let (hi, lo) = if n < 4 {
            (1u64 << 29, 1u64 << 20)
        } else {
            (keys[n / 10], keys[(n / 10 + n / width).min(n - 1)])
        };
        Band {
            lo: lo.min(hi.saturating_sub(1)) + 1,
            hi,
            above: 0,
            within: 0,
        }
    }

    /// Both passes on the same chunk: θ, m, v, the log, the candidates and
    /// the completion flag equal bit for bit. Returns that flag.
    fn compare(adam: &Adam, n: usize, seed: u64, cap: usize, scope_all: bool) -> bool {
        let momentum = Momentum::new(0.1);
        compare_with(
            &momentum,
            adam,
            n,
            seed,
            cap,
            scope_all,
            30,
            GradPrep::identity(),
        )
    }

    /// [`compare`] with the band `n/width` wide and the gradients'
    /// transform `prep` (the generic pass reads them mapped by
    /// `with_mapped`, as the fused step runs it), for the filter `filter`.
    #[allow(clippy::too_many_arguments)]
    fn compare_with<F: Filter>(
        filter: &F,
        adam: &Adam,
        n: usize,
        seed: u64,
        cap: usize,
        scope_all: bool,
        width: usize,
        prep: GradPrep<f32>,
    ) -> bool {
        let t = 7;
        let c = adam.coef::<f32>(t, adam.lr, adam.weight_decay, &Default::default());
        let [p, g, m, v] = chunk(n, seed);
        let mapped: Vec<f32> = match prep.map() {
            Some(map) => g.iter().map(|&x| map.apply(x)).collect(),
            None => g.clone(),
        };
        let band = band_for(filter, adam, &c, [&p, &mapped, &m, &v], width);
        let ctx = Ctx {
            filter,
            base: adam,
            coefs: std::slice::from_ref(&c),
            prep,
            used: [true, true, false],
            scope_all,
            track: false,
            fused: true,
            known_finite: true,
            t,
        };
        let run = |hand: bool| {
            let (mut p, mut m, mut v, mut z) = (p.clone(), m.clone(), v.clone(), Vec::new());
            let mut cands = Vec::new();
            let mut undo = UndoLog::<f32>::default();
            let mut view = View {
                p: &mut p,
                g: &g,
                pre: &[],
                s: [&mut m, &mut v, &mut z],
                off: 0,
            };
            let complete = if hand {
                try_single_chunk(&ctx, &c, &mut view, band, cap, &mut cands, &mut undo)
                    .expect("the kernel applies")
            } else {
                with_mapped(prep.map(), &mut view, |view| {
                    single_chunk_wide(&ctx, c, view, band, cap, &mut cands, &mut undo)
                })
            };
            // The logged entries, whatever lines hold them (the rooted
            // generic pass logs lines of 16, the others of 32).
            let lines: Vec<u32> = undo
                .logged_lines()
                .flat_map(|(lo, mask)| {
                    (0..32)
                        .filter(move |j| mask >> j & 1 == 1)
                        .map(move |j| lo + j)
                })
                .collect();
            let olds: Vec<u32> = undo.logged_olds().iter().map(|x| x.to_bits()).collect();
            let cands: Vec<(u32, u64, u64, u64)> = cands
                .iter()
                .map(|c| (c.i, c.key, c.new.to_bits(), c.rest.to_bits()))
                .collect();
            let bits = |x: &[f32]| x.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
            (bits(&p), bits(&m), bits(&v), lines, olds, cands, complete)
        };
        let (hand, generic) = (run(true), run(false));
        let what = format!(
            "{} n {n} seed {seed} cap {cap} scope_all {scope_all} width {width} {adam:?} {prep:?}",
            filter.name()
        );
        assert_eq!(hand.0, generic.0, "θ, {what}");
        assert_eq!(hand.1, generic.1, "m, {what}");
        assert_eq!(hand.2, generic.2, "v, {what}");
        assert_eq!(hand.3, generic.3, "logged entries, {what}");
        assert_eq!(hand.4, generic.4, "log olds, {what}");
        assert_eq!(hand.5, generic.5, "candidates, {what}");
        assert_eq!(hand.6, generic.6, "complete, {what}");
        if n >= 300 {
            assert!(
                !hand.4.is_empty() && !hand.5.is_empty(),
                "a test that tests: {what}"
            );
        }
        hand.6
    }

    #[test]
    fn hand_written_pass_equals_the_generic_one_bit_for_bit() {
        if !crate::kernels::simd::has_avx512() || !enabled() {
            eprintln!("skipped: this CPU has no AVX-512 (or MOFO_GENERIC_SINGLE_PASS is set)");
            return;
        }
        let adamw = Adam::adamw(3e-3);
        let adam = Adam::new(1e-3);
        let far = Adam {
            betas: (0.3, 0.99),
            ..Adam::adamw(1e-2)
        };
        let lens = [
            0, 1, 5, 15, 16, 17, 31, 32, 33, 47, 48, 63, 255, 256, 257, 300, 1000, 4099,
        ];
        for (s, &n) in lens.iter().enumerate() {
            for base in [&adamw, &adam, &far] {
                assert!(compare(base, n, s as u64, usize::MAX, false));
                assert!(compare(base, n, s as u64 + 100, usize::MAX, true));
            }
        }
        // A band of a third of the entries: many of them staged per batch.
        for s in 0..4 {
            let (id, f) = (GradPrep::identity(), &Momentum::new(0.1));
            assert!(compare_with(
                f,
                &adamw,
                4099,
                200 + s,
                usize::MAX,
                false,
                3,
                id
            ));
            assert!(compare_with(
                f,
                &adam,
                4099,
                300 + s,
                usize::MAX,
                true,
                3,
                id
            ));
        }
        // A cap the band overflows: recording stops at the same entry.
        assert!(!compare(&adamw, 20_000, 5, 30, false));
        assert!(!compare(&adamw, 20_000, 6, 0, false));
    }

    #[test]
    fn hand_written_pass_maps_the_gradients_as_the_generic_one() {
        if !crate::kernels::simd::has_avx512() || !enabled() {
            eprintln!("skipped: this CPU has no AVX-512 (or MOFO_GENERIC_SINGLE_PASS is set)");
            return;
        }
        let adamw = Adam::adamw(3e-3);
        let far = Adam {
            betas: (0.3, 0.99),
            ..Adam::new(1e-2)
        };
        // g's scale is 0.1 (cubed uniforms): a clamp at 0.01 clips about
        // half of them; c = 0 maps every g to a zero of g's sign.
        let preps = [
            (None, Some(0.37)),
            (Some(0.01), None),
            (Some(0.01), Some(0.37)),
            (Some(0.0), None),
            (Some(0.0), Some(2.0)),
        ]
        .map(|(clip_value, scale)| GradPrep {
            clip_value,
            scale,
            pull: None,
        });
        let f = &Momentum::new(0.1);
        for (s, prep) in preps.into_iter().enumerate() {
            for (j, &n) in [1usize, 17, 33, 300, 4099].iter().enumerate() {
                let seed = (10 * s + j) as u64;
                for base in [&adamw, &far] {
                    assert!(compare_with(f, base, n, seed, usize::MAX, false, 30, prep));
                    assert!(compare_with(
                        f,
                        base,
                        n,
                        seed + 500,
                        usize::MAX,
                        true,
                        3,
                        prep
                    ));
                }
            }
            assert!(!compare_with(f, &adamw, 20_000, 7, 30, false, 30, prep));
        }
        // A pull (a transform reading θ) is not a map: the kernel declines.
        assert_eq!(
            clamp_scale_f32(GradPrep::<f32> {
                pull: Some((false, 0.1)),
                ..GradPrep::identity()
            }),
            None
        );
        assert_eq!(clamp_scale_f32(GradPrep::<f64>::identity()), None);
        assert_eq!(clamp_scale_f32(GradPrep::<f32>::identity()), Some(None));
    }

    /// The mv and gv filters' scores (a square root as PyTorch's, two or
    /// one divisions) in the same pass, with and without clipping.
    #[test]
    fn hand_written_pass_scores_mv_and_gv_as_the_generic_one() {
        if kernel_absent() {
            return;
        }
        let (mv, gv) = (Mv::new(0.1), Gv::new(0.1));
        let bases = kernel_bases();
        let adamw = &bases[0];
        let lens = [1usize, 15, 16, 17, 33, 63, 257, 300, 1000, 4099];
        for (s, &n) in lens.iter().enumerate() {
            for base in &bases {
                for prep in [GradPrep::identity(), clipped()] {
                    let seed = 1000 + 10 * s as u64;
                    assert!(compare_with(
                        &mv,
                        base,
                        n,
                        seed,
                        usize::MAX,
                        false,
                        30,
                        prep
                    ));
                    assert!(compare_with(
                        &gv,
                        base,
                        n,
                        seed + 1,
                        usize::MAX,
                        false,
                        30,
                        prep
                    ));
                    assert!(compare_with(
                        &mv,
                        base,
                        n,
                        seed + 2,
                        usize::MAX,
                        true,
                        3,
                        prep
                    ));
                    assert!(compare_with(
                        &gv,
                        base,
                        n,
                        seed + 3,
                        usize::MAX,
                        true,
                        3,
                        prep
                    ));
                }
            }
        }
        let id = GradPrep::identity();
        assert!(!compare_with(&mv, adamw, 20_000, 8, 30, false, 30, id));
        assert!(!compare_with(&gv, adamw, 20_000, 9, 30, false, 30, id));
    }

    /// The approximate scores' error on their safe lanes stays below half
    /// the margin of their decisions, over scores of every magnitude the
    /// ranges allow, both filters, several steps, betas and ε; and they
    /// mark zero scores exactly.
    #[test]
    fn approximate_scores_stay_within_their_bound() {
        if !crate::kernels::simd::has_avx512() {
            eprintln!("skipped: this CPU has no AVX-512");
            return;
        }
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::*;
            let mut r = ChaCha8Rng::seed_from_u64(17);
            let (mut worst, mut safe_lanes, mut zeros) = (0f64, 0usize, 0usize);
            let bases = [
                Adam::adamw(1e-3),
                Adam {
                    betas: (0.3, 0.99),
                    eps: 0.0,
                    ..Adam::new(1e-2)
                },
                Adam {
                    eps: 1e-30,
                    ..Adam::adamw(1e-3)
                },
                Adam {
                    eps: 1.0,
                    ..Adam::adamw(1e-3)
                },
            ];
            for adam in &bases {
                for t in [1u64, 2, 7, 1000] {
                    let c = adam.coef::<f32>(t, adam.lr, adam.weight_decay, &Default::default());
                    let k = c.plain().expect("plain AdamW");
                    let zero_ok = avx512::approx_eps(&k).1;
                    // SAFETY: the CPU has AVX-512 (checked above).
                    let consts = unsafe { avx512::Consts::new(&k, (f32::INFINITY, 1.0), (0, 0)) };
                    for _ in 0..20_000 {
                        let mut wide = |lo: i32, hi: i32, zero: bool| -> [f32; 16] {
                            std::array::from_fn(|_| {
                                if zero && r.random_range(0..8) == 0 {
                                    return 0.0;
                                }
                                let e = r.random_range(lo..hi);
                                let x = r.random_range(1.0f32..2.0) * 2f32.powi(e);
                                if r.random_bool(0.5) {
                                    -x
                                } else {
                                    x
                                }
                            })
                        };
                        let (g, m1) = (wide(-70, 40, true), wide(-70, 40, true));
                        let v1 = wide(-140, 80, true).map(f32::abs);
                        let (q, keys, safe, zero) = [MV, GV]
                            .map(|score| {
                                // SAFETY: the CPU has AVX-512 (checked above);
                                // the arrays hold 16 lanes.
                                unsafe {
                                    let (g, m1, v1) = (
                                        _mm512_loadu_ps(g.as_ptr()),
                                        _mm512_loadu_ps(m1.as_ptr()),
                                        _mm512_loadu_ps(v1.as_ptr()),
                                    );
                                    let (q, safe, zero) = if score == MV {
                                        avx512::approx_scores::<MV>(&consts, g, m1, v1)
                                    } else {
                                        avx512::approx_scores::<GV>(&consts, g, m1, v1)
                                    };
                                    let key = if score == MV {
                                        avx512::keys::<MV>(&consts, g, m1, v1)
                                    } else {
                                        avx512::keys::<GV>(&consts, g, m1, v1)
                                    };
                                    let (mut qa, mut ka) = ([0f32; 16], [0u32; 16]);
                                    _mm512_storeu_ps(qa.as_mut_ptr(), q);
                                    _mm512_storeu_si512(ka.as_mut_ptr().cast(), key);
                                    (qa, ka, safe, zero)
                                }
                            })
                            .into_iter()
                            .fold(
                                (vec![], vec![], vec![], vec![]),
                                |(mut a, mut b, mut c, mut d), (q, k, s, z)| {
                                    a.push(q);
                                    b.push(k);
                                    c.push(s);
                                    d.push(z);
                                    (a, b, c, d)
                                },
                            );
                        for f in 0..2 {
                            for lane in 0..16 {
                                let exact = f32::from_bits(keys[f][lane]);
                                if safe[f] >> lane & 1 == 1 {
                                    assert!(exact.is_finite() && exact > 0.0, "{exact}");
                                    let err =
                                        (f64::from(q[f][lane]) / f64::from(exact) - 1.0).abs();
                                    worst = worst.max(err);
                                    safe_lanes += 1;
                                }
                                if zero[f] >> lane & 1 == 1 {
                                    assert!(zero_ok);
                                    assert_eq!(keys[f][lane], 0, "a zero lane's exact key");
                                    zeros += 1;
                                }
                            }
                        }
                    }
                }
            }
            let margin = f64::from(avx512::MARGIN);
            assert!(worst < margin / 2.0, "worst relative error {worst:e}");
            assert!(
                worst > margin / 64.0,
                "the estimates' error shows: {worst:e}"
            );
            assert!(
                safe_lanes > 1_000_000 && zeros > 50_000,
                "{safe_lanes} {zeros}"
            );
            eprintln!(
                "approximate scores: worst relative error {worst:e} over {safe_lanes} safe lanes"
            );
        }
    }

    #[test]
    fn the_kernel_applies_only_where_it_is_exact() {
        let amsgrad = Adam {
            amsgrad: true,
            ..Adam::adamw(1e-3)
        };
        let coupled = Adam {
            weight_decay: 0.1,
            ..Adam::new(1e-3)
        };
        let p = |a: &Adam| {
            a.coef::<f32>(3, a.lr, a.weight_decay, &Default::default())
                .plain()
        };
        assert!(p(&amsgrad).is_none());
        assert!(p(&coupled).is_none());
        assert!(p(&Adam::adamw(1e-3)).is_some_and(|k| k.decoupled));
        assert!(p(&Adam::new(1e-3)).is_some_and(|k| !k.decoupled));
    }
}
