//! The random filter's step without a key array (Random BCD, the fused
//! path of `FilterMode::Random`).
//!
//! The general step draws a key per entry into a scratch array (8 bytes
//! written per entry), selects the top k of the array, and reads the keys
//! again beside θ, g and the state: about 50 bytes of memory traffic per
//! entry beyond the base's own, and a selection over every key. The keys
//! do not depend on the data, and they are uniform on [0, 2⁶⁴), so where
//! the k-th largest of them lies is known in advance to within a few
//! standard deviations. For a block of d entries keeping k, with key_i the
//! same draw as the general step's (the i-th `u64` of the block's ChaCha8
//! stream seeded by (seed, step, block)):
//!
//! ```text
//! band [lo, hi]:  E #{key > hi} = k − z·σ,  E #{key ≥ lo} = k + z·σ,
//!                 σ = √(k·(1 − k/d)) + 1,  z = Z_BAND
//! draw pass (writes only a byte per entry), every entry i:
//!     mask_i ← [key_i > hi]
//!     key_i ∈ [lo, hi]  →  candidate (i, key_i)
//!     and the gradient check (g only)
//! above = Σ mask_i,  within = #candidates
//! above < k ≤ above + within:  the r = k − above largest candidates (ties
//!                              to the smaller index, select.rs) get mask 1
//! otherwise:                   the general step (the keys drawn again)
//! update pass, every entry i:  state_i ← the base's update,
//!                              θ_i ← mask_i ? θ'_i : rest(θ_i)
//! ```
//!
//! #{key > x} is binomial, (d, 1 − x/2⁶⁴): the band misses the k-th largest
//! key only when a count lands more than z = 10 standard deviations from
//! its mean (below 10⁻²⁰ per block step), and then the general step runs,
//! so the selection is the general step's in every case: the k largest
//! keys, ties to the smaller index (`tests/optim_fused.rs`). The band holds
//! about 2·z·σ entries (0.4% of a 768 × 3072 block at α = 0.1).
//!
//! Memory traffic: the draw pass reads g (4 bytes per f32 entry) and
//! writes the mask (1); the update pass is the base's (28 for Adam) and
//! reads the mask (1). The draw pass is bound by ChaCha8's arithmetic, not
//! by memory: sixteen blocks at a time on AVX-512 (`kernels::chacha8`).
//! There each group of 128 keys is compared in the registers ChaCha leaves
//! them in (`draw_fast`: a register per block, eight `u64` keys), with no
//! buffer between the generator and the compares; a chunk's last partial
//! group, and CPUs without AVX-512, take the buffered loop
//! (`draw_chunk`). On 40.6M parameters, 2 threads, Zen 5 (2026-12-05,
//! twenty-seventh sitting), random_bcd's step went from 30.0–31.4 to
//! 26.8–28.0 ms (docs/performance-log.md).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::mapped::with_mapped;
use super::{mix_seed, per_chunk, BlockRuntime, Ctx, View};
use crate::kernels::chacha8::ChaCha8Keys;
use crate::kernels::reduce::all_finite_wide;
use crate::kernels::simd::{wide_simd_call, wide_simd_fn};
use crate::optim::base::Base;
use crate::optim::filter::Filter;
use crate::optim::stats::{key_to_f64, BlockStats};
use crate::Scalar;

/// Standard deviations of #{key > x} on each side of k that the band
/// spans (module docs).
const Z_BAND: f64 = 10.0;

/// Keys drawn at a time into a buffer on the stack (2 KiB).
const BATCH: usize = 256;
/// Keys tested at once for a candidate (module docs' band) before they are
/// searched one by one.
const GROUP: usize = 32;

/// A block whose band held its k-th largest key: every entry's selection
/// is in the block's mask, and `threshold_key` is that key.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Drawn {
    threshold_key: u64,
}

/// The band `[lo, hi]` of a block of `len` entries keeping `k` (module
/// docs), with `z` standard deviations on each side.
fn band(len: usize, k: usize, z: f64) -> (u64, u64) {
    let (d, k) = (len as f64, k as f64);
    let sigma = (k * (1.0 - k / d)).max(0.0).sqrt() + 1.0;
    // The key x with E #{key > x} = n: x = (1 − n/d)·2⁶⁴ (saturating casts).
    let at = |n: f64| ((1.0 - n.clamp(0.0, d) / d) * 2f64.powi(64)) as u64;
    (at(k + z * sigma), at(k - z * sigma))
}

/// The seed of block `block_index`'s keys at step `t`.
fn block_seed(seed: u64, t: u64, block_index: usize) -> u64 {
    mix_seed(seed, t, block_index as u64)
}

/// The draw pass over a block's chunks (module docs), before any block
/// changes: the mask and candidates in `rt`, and the block's selection
/// when its band held the k-th largest key (`None`: the general step
/// runs). The second value: whether every gradient of the block is finite
/// (when one is not, nothing may change; the first value is then
/// meaningless). `0 < k < len`.
pub(crate) fn draw<F: Filter, B: Base, T: Scalar>(
    ctx: &Ctx<'_, F, B, T>,
    seed: u64,
    block_index: usize,
    len: usize,
    k: usize,
    rt: &mut BlockRuntime<T>,
    chunks: &[View<'_, T>],
) -> (Option<Drawn>, bool) {
    draw_with_band(ctx, seed, block_index, len, k, rt, chunks, Z_BAND)
}

/// [`draw`] with a band of `z` standard deviations on each side (tests
/// narrow it to force misses).
#[allow(clippy::too_many_arguments)]
fn draw_with_band<F: Filter, B: Base, T: Scalar>(
    ctx: &Ctx<'_, F, B, T>,
    seed: u64,
    block_index: usize,
    len: usize,
    k: usize,
    rt: &mut BlockRuntime<T>,
    chunks: &[View<'_, T>],
    z: f64,
) -> (Option<Drawn>, bool) {
    let (lo, hi) = band(len, k, z);
    let seed = ChaCha8Rng::seed_from_u64(block_seed(seed, ctx.t, block_index)).get_seed();
    rt.mask.resize(len, 0);
    rt.drawn.resize_with(chunks.len(), Vec::new);
    let check = !ctx.known_finite;
    let (above, finite) = chunks
        .par_iter()
        .zip(per_chunk(&mut rt.mask, chunks).into_par_iter())
        .zip(rt.drawn.par_iter_mut())
        .map(|((ch, mask), cands)| {
            cands.clear();
            // The general step's stream: `ChaCha8Rng::seed_from_u64(block_seed)`
            // from word 2·off on, sixteen blocks at a time (`kernels::chacha8`):
            // the whole groups of 128 keys compared in registers where the
            // CPU has AVX-512 (`draw_fast`), the rest through a buffer.
            let (g, word) = (ch.g, 2 * ch.off as u64);
            let (done, above) = draw_fast(&seed, word, (lo, hi), mask, cands);
            let finite = !check || wide_simd_call!(all_finite / all_finite_wide(&g[..done]));
            let mut stream = ChaCha8Keys::new(seed, word + 2 * done as u64);
            let (rest, rest_finite) = wide_simd_call!(
                draw_chunk
                    / draw_chunk_wide(
                        &mut stream,
                        &g[done..],
                        check,
                        (lo, hi),
                        &mut mask[done..],
                        done as u32,
                        cands
                    )
            );
            (above + rest, finite & rest_finite)
        })
        .reduce(|| (0, true), |a, b| (a.0 + b.0, a.1 & b.1));
    if !finite {
        return (None, false);
    }
    let k64 = k as u64;
    let within: u64 = rt.drawn.iter().map(|c| c.len() as u64).sum();
    if !(above < k64 && k64 <= above + within) {
        // (Counted as a crowded band by the general step.)
        return (None, true);
    }
    rt.forecast.hits += 1;
    // The r largest candidates, ties to the smaller index (candidates are
    // in index order chunk by chunk, and chunks in block order).
    let r = (k64 - above) as usize;
    rt.keys.clear();
    rt.keys
        .extend(rt.drawn.iter().flatten().map(|&(_, key)| key));
    let cut = rt.topk.cut(&rt.keys, r);
    let threshold_key = if cut.k == rt.keys.len() {
        rt.keys.iter().copied().min().unwrap_or(0)
    } else {
        cut.threshold_key
    };
    let mut dec = cut.decider();
    for (ch, cands) in chunks.iter().zip(&rt.drawn) {
        let mask = &mut rt.mask[ch.off..];
        for &(i, key) in cands {
            mask[i as usize] = u8::from(dec.take(key));
        }
    }
    (Some(Drawn { threshold_key }), true)
}

/// Keys per group of the register path: sixteen ChaCha blocks.
const FAST_GROUP: usize = 128;

/// The draw pass's keys and mask over the whole groups of 128 entries of a
/// chunk whose keys start at stream word `word`, computed and compared in
/// registers (`chacha8::blocks16_regs`: each register one block, its eight
/// `u64` lanes eight consecutive keys): the mask of the keys above `hi`
/// and the candidates in `[lo, hi]` (chunk index, key) in index order, as
/// [`draw_chunk`] finds them, with no buffer between the generator and the
/// compares. Returns (entries done, keys above `hi`); (0, 0) without
/// AVX-512 or when `word` is not at a group of sixteen blocks (every chunk
/// of a block starts at one, being 2¹⁵ entries long), leaving every entry
/// to [`draw_chunk`].
fn draw_fast(
    seed: &[u8; 32],
    word: u64,
    band: (u64, u64),
    mask: &mut [u8],
    cands: &mut Vec<(u32, u64)>,
) -> (usize, u64) {
    let group_words = 2 * FAST_GROUP as u64;
    if !crate::kernels::simd::has_avx512() || !word.is_multiple_of(group_words) {
        return (0, 0);
    }
    let done = mask.len() / FAST_GROUP * FAST_GROUP;
    #[cfg(target_arch = "x86_64")]
    {
        let key = crate::kernels::chacha8::key_words(seed);
        // SAFETY: the CPU has AVX-512 F and BW (`has_avx512`).
        let above = unsafe { draw_fast_avx512(&key, word / 16, band, &mut mask[..done], cands) };
        (done, above)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (seed, band, cands, done);
        unreachable!("has_avx512 is false off x86-64")
    }
}

/// [`draw_fast`]'s loop: `mask.len()` (a multiple of 128) keys from ChaCha
/// block `block` of `key`'s stream on.
///
/// # Safety
/// The CPU has AVX-512 F and BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,popcnt")]
unsafe fn draw_fast_avx512(
    key: &[u32; 8],
    block: u64,
    (lo, hi): (u64, u64),
    mask: &mut [u8],
    cands: &mut Vec<(u32, u64)>,
) -> u64 {
    use std::arch::x86_64::*;
    let (lo_v, hi_v) = (_mm512_set1_epi64(lo as i64), _mm512_set1_epi64(hi as i64));
    let width = _mm512_set1_epi64(hi.wrapping_sub(lo) as i64);
    let one = _mm512_set1_epi8(1);
    let mut above = 0u64;
    for (t, out) in mask.chunks_exact_mut(FAST_GROUP).enumerate() {
        let regs = crate::kernels::chacha8::blocks16_regs!(key, block + 16 * t as u64);
        // Bit 8·l + j of `bits`: key j of block l is above `hi`.
        let mut bits = [0u64; 2];
        for (l, &r) in regs.iter().enumerate() {
            bits[l / 8] |= u64::from(_mm512_cmpgt_epu64_mask(r, hi_v)) << (8 * (l % 8));
            // In the band: key − lo ≤ hi − lo, unsigned (a few keys in a
            // thousand, so the branch is taken for about one register in
            // thirty).
            let inb = _mm512_cmple_epu64_mask(_mm512_sub_epi64(r, lo_v), width);
            if inb != 0 {
                let mut lanes = [0u64; 8];
                // SAFETY: `lanes` holds 8 `u64`; the store is unaligned.
                unsafe { _mm512_storeu_si512(lanes.as_mut_ptr().cast(), r) };
                for (j, &key) in lanes.iter().enumerate() {
                    if inb >> j & 1 == 1 {
                        cands.push(((t * FAST_GROUP + 8 * l + j) as u32, key));
                    }
                }
            }
        }
        above += u64::from(bits[0].count_ones() + bits[1].count_ones());
        // SAFETY: `out` holds 128 bytes; the stores are unaligned.
        unsafe {
            _mm512_storeu_si512(out.as_mut_ptr().cast(), _mm512_maskz_mov_epi8(bits[0], one));
            _mm512_storeu_si512(
                out.as_mut_ptr().add(64).cast(),
                _mm512_maskz_mov_epi8(bits[1], one),
            );
        }
    }
    above
}

wide_simd_fn! {
    /// The draw pass over one chunk (or its rest after [`draw_fast`]), its
    /// keys from `stream`: the mask of the keys above `hi`, the candidates
    /// in `[lo, hi]` (chunk index, counted from `first`, and key) in index
    /// order, and, when `check`, whether every gradient is finite. Returns
    /// the number above `hi`.
    fn draw_chunk / draw_chunk_wide [T: Scalar] (
        stream: &mut ChaCha8Keys,
        g: &[T],
        check: bool,
        band: (u64, u64),
        mask: &mut [u8],
        first: u32,
        cands: &mut Vec<(u32, u64)>,
    ) -> (u64, bool) {
        let (lo, hi) = band;
        let mut buf = [0u64; BATCH];
        let mut above = 0u64;
        let mut finite = true;
        for (b, (mask, g)) in mask.chunks_mut(BATCH).zip(g.chunks(BATCH)).enumerate() {
            let keys = &mut buf[..mask.len()];
            stream.fill(keys);
            if check {
                finite &= all_finite_wide(g);
            }
            for (m, &key) in mask.iter_mut().zip(keys.iter()) {
                let a = key > hi;
                *m = u8::from(a);
                above += u64::from(a);
            }
            // The band holds a few keys in a thousand: a branch-free test
            // of each group of 32 first, the search only in a group that
            // holds one.
            let in_band = |key: u64| key.wrapping_sub(lo) <= hi - lo;
            for (s, group) in keys.chunks(GROUP).enumerate() {
                if group.iter().fold(false, |a, &key| a | in_band(key)) {
                    for (j, &key) in group.iter().enumerate() {
                        if in_band(key) {
                            cands.push((first + (b * BATCH + s * GROUP + j) as u32, key));
                        }
                    }
                }
            }
        }
        (above, finite)
    }
}

/// The update pass of a block whose band held its k-th largest key (module
/// docs).
pub(crate) fn process_block<F: Filter, B: Base, T: Scalar>(
    ctx: &Ctx<'_, F, B, T>,
    c: &B::Coef<T>,
    len: usize,
    k: usize,
    rt: &mut BlockRuntime<T>,
    chunks: &mut [View<'_, T>],
    drawn: Drawn,
) -> BlockStats {
    let mask = &rt.mask;
    let map = ctx.prep.map();
    chunks.par_iter_mut().for_each(|ch| {
        let m = &mask[ch.off..ch.off + ch.len()];
        with_mapped(map, ch, |ch| {
            wide_simd_call!(update_chunk / update_chunk_wide(ctx, *c, ch, m))
        });
    });
    BlockStats {
        selected: k,
        len,
        threshold: Some(key_to_f64::<T>(drawn.threshold_key)),
        overlap: None,
    }
}

wide_simd_fn! {
    /// The update pass over one chunk: the base's update on every entry,
    /// the new θ where the mask is set, the rest value elsewhere, in a
    /// branch-free loop the compiler vectorises.
    fn update_chunk / update_chunk_wide [F: Filter, B: Base, T: Scalar] (
        ctx: &Ctx<'_, F, B, T>,
        c: B::Coef<T>,
        v: &mut View<'_, T>,
        mask: &[u8],
    ) {
        // The constants owned, as in the general step's loops.
        let (base, scope_all) = (ctx.base, ctx.scope_all);
        super::for_each_entry(v, ctx.used, |i, p, g, s| {
            let new = base.update(&c, *p, g, s);
            // `get`, not an index: a bounds check's panic branch would keep
            // the loop one entry at a time.
            let take = mask.get(i).is_some_and(|&m| m != 0);
            let rest = if scope_all { base.decay_only(&c, *p) } else { *p };
            *p = if take { new } else { rest };
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::base::{Adam, BaseScalars};
    use crate::optim::filter::Random;
    use crate::optim::select::reference_indices;
    use crate::optim::transform::GradPrep;
    use rand::RngCore;

    /// The draw pass on a block of three and a half chunks, and on one
    /// whose last chunk ends in a partial group of 128 (the register path
    /// leaves it to the buffered one), against the general step's keys
    /// (one ChaCha8 stream per block, a `u64` per entry) and the plain
    /// top-k: with the module's band every block step finds its selection,
    /// and with bands narrowed to a fraction of a deviation, where many
    /// miss, a band that holds the k-th key gives exactly the top-k mask
    /// and one that does not is reported (`None`) for the general step.
    #[test]
    fn the_draw_pass_selects_the_top_k_or_reports_a_miss() {
        const CHUNK: usize = 1 << 15;
        for len in [3 * CHUNK + CHUNK / 2, 2 * CHUNK + 1000 + 77] {
            draw_pass_on(len);
        }
    }

    fn draw_pass_on(len: usize) {
        const CHUNK: usize = 1 << 15;
        let base = Adam::adamw(1e-3);
        let filter = Random::new(0.1, 7);
        let coefs = vec![base.coef::<f32>(1, 1e-3, 0.0, &BaseScalars::default())];
        let ctx = Ctx {
            filter: &filter,
            base: &base,
            coefs: &coefs,
            prep: GradPrep::identity(),
            used: [true, true, false],
            scope_all: false,
            track: false,
            fused: true,
            known_finite: false,
            t: 3,
        };
        let mut p = vec![0f32; len];
        let g = vec![0.5f32; len];
        let (mut m, mut v) = (vec![0f32; len], vec![0f32; len]);
        let mut chunks = Vec::new();
        let (mut pr, mut mr, mut vr) = (&mut p[..], &mut m[..], &mut v[..]);
        let mut off = 0;
        while off < len {
            let n = CHUNK.min(len - off);
            let (ph, pt) = std::mem::take(&mut pr).split_at_mut(n);
            let (mh, mt) = std::mem::take(&mut mr).split_at_mut(n);
            let (vh, vt) = std::mem::take(&mut vr).split_at_mut(n);
            (pr, mr, vr) = (pt, mt, vt);
            chunks.push(View {
                p: ph,
                g: &g[off..off + n],
                pre: &[],
                s: [mh, vh, &mut []],
                off,
            });
            off += n;
        }
        let (mut hits, mut misses) = (0, 0);
        for (block, k, z) in [(0, 3000, 10.0), (1, len / 2, 10.0), (2, 1, 10.0)]
            .into_iter()
            .chain((3..40).map(|b| (b, 2000 + 37 * b, 0.05 * b as f64)))
        {
            let mut rng = ChaCha8Rng::seed_from_u64(block_seed(7, 3, block));
            let keys: Vec<u64> = (0..len).map(|_| rng.next_u64()).collect();
            let want = reference_indices(&keys, k);
            let mut rt = BlockRuntime::<f32>::default();
            let (drawn, finite) = draw_with_band(&ctx, 7, block, len, k, &mut rt, &chunks, z);
            assert!(finite);
            let mut sorted = keys.clone();
            sorted.sort_unstable();
            let kth = sorted[len - k];
            let (lo, hi) = band(len, k, z);
            let held = lo <= kth && kth <= hi;
            match drawn {
                Some(d) => {
                    hits += 1;
                    assert!(held, "block {block}: a band without K gave a selection");
                    assert_eq!(d.threshold_key, kth, "block {block}");
                    let got: Vec<usize> = (0..len).filter(|&i| rt.mask[i] != 0).collect();
                    assert_eq!(got, want, "block {block}, z {z}");
                }
                None => {
                    misses += 1;
                    assert!(!held, "block {block}: a band holding K was reported missed");
                    assert!(z < 10.0, "block {block}: the module's band missed");
                }
            }
        }
        assert!(hits >= 10 && misses >= 10, "{hits} hits, {misses} misses");
    }

    #[test]
    fn the_band_brackets_k_by_z_deviations() {
        let (len, k) = (2_359_296usize, 235_930usize);
        let (lo, hi) = band(len, k, 10.0);
        let frac = |x: u64| 1.0 - x as f64 / 2f64.powi(64);
        let sigma = (k as f64 * (1.0 - k as f64 / len as f64)).sqrt() + 1.0;
        let (above, reach) = (frac(hi) * len as f64, frac(lo) * len as f64);
        assert!((k as f64 - above - 10.0 * sigma).abs() < 1.0, "{above}");
        assert!((reach - k as f64 - 10.0 * sigma).abs() < 1.0, "{reach}");
        assert!(lo < hi);
        // Nearly every key above, or every key in: clamped, never wrapped.
        let (lo, hi) = band(10, 9, 10.0);
        assert_eq!(lo, 0);
        assert!(hi > 0);
        let (lo, hi) = band(1000, 1, 10.0);
        assert!(lo < hi && hi == u64::MAX);
    }
}
