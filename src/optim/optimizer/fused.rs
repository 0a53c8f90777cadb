//! The fused two-pass step of a scored filter on a base whose step splits
//! (`Base::SPLITS`, every base but Lion).
//!
//! The general step (`process_block` in the parent module) computes a key
//! per entry into a scratch array, selects the top k of the array, then runs
//! the base over every entry: about 60 bytes of memory traffic per entry
//! against Adam's 28. This one needs no key array and no selection over all
//! entries. For a block of d entries keeping k:
//!
//! ```text
//! pass 1, every entry i:   state'_i ← advance(θ_i, g_i, state_i)
//!                          key_i    ← abs_key(score_updated(θ_i, g_i, state'_i))
//!                          hist[top BUCKET_BITS bits of key_i] += 1
//! threshold bucket:        b* = the bucket holding the k-th largest key;
//!                          above = #{keys in buckets > b*},  r = k − above
//! pass 2a, every entry i:  bucket(key_i) = b*  →  candidate (i, key_i)
//! candidates:              the r largest keys among them, ties to the smaller
//!                          index (select.rs): τ and the tie quota per chunk
//! pass 2b, every entry i:  bucket(key_i) > b*  →  θ_i ← apply_updated(θ_i, g_i, state'_i)
//!                          chosen candidate    →  θ_i ← apply_updated(θ_i, g_i, state'_i)
//!                          otherwise              θ_i unchanged (or decayed, scope All)
//! ```
//!
//! Passes 2a and 2b recompute each key from the same θ, g and updated state,
//! so it is bit for bit the key of pass 1; every key in a bucket above b* is larger
//! than every candidate's; so the selection is exactly the top-k of the
//! general step, ties included, and `update = advance ∘ apply_updated` makes
//! the new values bit for bit the same too (tested against the general step
//! in `tests/optim_fused.rs`). Pass 1 reads g and the state and writes the
//! state; pass 2a reads what the score needs (|m| for MoFO); pass 2b reads the
//! state and θ and writes θ; each chunk's chosen candidates are written while
//! the chunk is still in cache. Histograms are
//! summed in integers, so the result does not depend on how chunks are
//! spread over threads.

use rayon::prelude::*;

use super::{chunk_deciders, used_state, BlockRuntime, Ctx, View};
use crate::kernels::simd::{wide_simd_call, wide_simd_fn};
use crate::optim::base::Base;
use crate::optim::filter::Filter;
use crate::optim::select::Decider;
use crate::optim::stats::{key_to_f64, BlockStats};
use crate::Scalar;

/// Bits of a key that index the histogram (its top bits: for f32 the
/// exponent and the first six mantissa bits, buckets 1/64 octave wide).
const BUCKET_BITS: u32 = 14;
/// Number of histogram buckets.
const BUCKETS: usize = 1 << BUCKET_BITS;
/// Entries per tile of the candidate scan (pass 2a).
const SCAN_TILE: usize = 32;

/// The histogram bucket of a key (a `u32`, so that the f32 loops stay in
/// 32-bit lanes).
#[inline(always)]
fn bucket<T: Scalar>(key: u64) -> u32 {
    (key >> (T::KEY_BITS - BUCKET_BITS)) as u32
}

/// Runs one block through the fused step (module docs); `k < len`.
pub(super) fn process_block<F: Filter, B: Base, T: Scalar>(
    ctx: &Ctx<'_, F, B, T>,
    c: &B::Coef<T>,
    len: usize,
    k: usize,
    rt: &mut BlockRuntime,
    chunks: &mut [View<'_, T>],
) -> BlockStats {
    // Pass 1.
    let per_job = chunks.len().div_ceil(4 * rayon::current_num_threads());
    let hist = chunks
        .par_iter_mut()
        .with_min_len(per_job.max(1))
        .fold(
            || vec![0u32; BUCKETS],
            |mut h, ch| {
                wide_simd_call!(advance_chunk / advance_chunk_wide(ctx, *c, ch, &mut h));
                h
            },
        )
        .reduce(
            || vec![0u32; BUCKETS],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                a
            },
        );
    let (b_star, above) = threshold_bucket(&hist, k as u64);
    let r = k - above as usize;

    // Pass 2a: the candidates (keys in the threshold bucket), in index order.
    rt.candidates.resize_with(chunks.len(), Vec::new);
    chunks
        .par_iter_mut()
        .zip(rt.candidates.par_iter_mut())
        .for_each(|(ch, cands)| {
            cands.clear();
            wide_simd_call!(
                collect_candidates / collect_candidates_wide(ctx, *c, ch, b_star, cands)
            );
        });

    // The r largest candidates (ties to the smaller index).
    rt.keys.clear();
    rt.keys
        .extend(rt.candidates.iter().flatten().map(|&(_, key)| key));
    let cut = rt.topk.cut(&rt.keys, r);
    let tau = if cut.k == rt.keys.len() {
        rt.keys.iter().copied().min().unwrap_or(0)
    } else {
        cut.threshold_key
    };
    let candidates = &rt.candidates;
    let deciders = chunk_deciders(cut, rt.topk.last_ties_total(), chunks.len(), |ci| {
        candidates[ci]
            .iter()
            .filter(|&&(_, key)| key == cut.threshold_key)
            .count()
    });

    // Pass 2b: the new values, chunk by chunk.
    chunks
        .par_iter_mut()
        .zip(candidates.par_iter())
        .zip(deciders.into_par_iter())
        .for_each(|((ch, cands), dec)| {
            wide_simd_call!(apply_chunk / apply_chunk_wide(ctx, *c, ch, b_star, cands, dec));
        });
    BlockStats {
        selected: k,
        len,
        threshold: Some(key_to_f64::<T>(tau)),
        overlap: None,
    }
}

/// The bucket b* holding the k-th largest key and the number of keys in
/// buckets above it (`hist` sums to at least k ≥ 1).
fn threshold_bucket(hist: &[u32], k: u64) -> (u32, u64) {
    let mut above = 0u64;
    for (b, &n) in hist.iter().enumerate().rev() {
        let n = n as u64;
        if above + n >= k {
            return (b as u32, above);
        }
        above += n;
    }
    (0, above)
}

/// The state of entry `i` of a chunk (unused slots zero).
#[inline(always)]
fn state_at<T: Scalar>(v: &View<'_, T>, used: [bool; 3], i: usize) -> [T; 3] {
    let at = |j: usize| if used[j] { v.s[j][i] } else { T::zero() };
    [at(0), at(1), at(2)]
}

wide_simd_fn! {
    /// Pass 1 over a chunk: advance every entry's state (a loop the compiler
    /// vectorises), then count the keys while the chunk is still in cache.
    fn advance_chunk / advance_chunk_wide [F: Filter, B: Base, T: Scalar] (
        ctx: &Ctx<'_, F, B, T>,
        c: B::Coef<T>,
        v: &mut View<'_, T>,
        hist: &mut [u32],
    ) {
        let c = &c;
        let (filter, base) = (ctx.filter, ctx.base);
        super::for_each_entry(v, ctx.used, |_, p, g, s| base.advance(c, *p, g, s));
        let hist = &mut hist[..BUCKETS];
        for_each_entry_read_state(v, ctx.used, |_, p, g, s| {
            let key = filter.score_updated(base, c, *p, g, s).abs_key();
            hist[bucket::<T>(key) as usize & (BUCKETS - 1)] += 1;
        });
    }
}

wide_simd_fn! {
    /// Pass 2a over a chunk: the entries whose key falls in the threshold
    /// bucket, as (index in the chunk, key), in index order. Candidates are rare
    /// (about 1%), so each tile of `SCAN_TILE` entries is first counted with a
    /// branch-free loop the compiler vectorises, and only tiles that hold a
    /// candidate are scanned entry by entry.
    fn collect_candidates / collect_candidates_wide [F: Filter, B: Base, T: Scalar] (
        ctx: &Ctx<'_, F, B, T>,
        c: B::Coef<T>,
        v: &mut View<'_, T>,
        b_star: u32,
        cands: &mut Vec<(u32, u64)>,
    ) {
        let c = &c;
        let (filter, base, used) = (ctx.filter, ctx.base, ctx.used);
        let n = v.p.len();
        let (p, g) = (&v.p[..n], &v.g[..n]);
        // Unused slots read `g` (any slice of length n) and select zero, so every
        // load is in bounds and the selects vectorise.
        let slot = |j: usize| -> &[T] {
            if used[j] {
                &v.s[j][..n]
            } else {
                g
            }
        };
        let (s0, s1, s2) = (slot(0), slot(1), slot(2));
        let z = T::zero();
        let key_at = |i: usize| -> u64 {
            let s = [
                if used[0] { s0[i] } else { z },
                if used[1] { s1[i] } else { z },
                if used[2] { s2[i] } else { z },
            ];
            filter.score_updated(base, c, p[i], g[i], &s).abs_key()
        };
        let mut start = 0;
        while start < n {
            let end = (start + SCAN_TILE).min(n);
            // A plain loop: an iterator `sum` here is left out of line by
            // LLVM, outside the AVX2 function, and runs one entry at a time.
            let mut hits = 0u32;
            for i in start..end {
                hits += u32::from(bucket::<T>(key_at(i)) == b_star);
            }
            if hits > 0 {
                for i in start..end {
                    let key = key_at(i);
                    if bucket::<T>(key) == b_star {
                        cands.push((i as u32, key));
                    }
                }
            }
            start = end;
        }
    }
}

wide_simd_fn! {
    /// Pass 2b over a chunk: the entries above the threshold bucket get the new
    /// value through a branch-free select the compiler vectorises; then, while
    /// the chunk is still in cache, the candidates `dec` selects get it too (the
    /// others stay, or are only decayed under scope All). State is read only.
    fn apply_chunk / apply_chunk_wide [F: Filter, B: Base, T: Scalar] (
        ctx: &Ctx<'_, F, B, T>,
        c: B::Coef<T>,
        v: &mut View<'_, T>,
        b_star: u32,
        cands: &[(u32, u64)],
        dec: Decider,
    ) {
            let mut dec = dec;
        let c = &c;
        let (filter, base, scope_all) = (ctx.filter, ctx.base, ctx.scope_all);
        for_each_entry_read_state(v, ctx.used, |_, p, g, s| {
            let b = bucket::<T>(filter.score_updated(base, c, *p, g, s).abs_key());
            let pn = base.apply_updated(c, *p, g, s);
            let rest = if scope_all && b < b_star {
                base.decay_only(c, *p)
            } else {
                *p
            };
            *p = if b > b_star { pn } else { rest };
        });
        for &(i, key) in cands {
            let i = i as usize;
            let s = state_at(v, ctx.used, i);
            let p = v.p[i];
            if dec.take(key) {
                v.p[i] = base.apply_updated(c, p, v.g[i], &s);
            } else if scope_all {
                v.p[i] = base.decay_only(c, p);
            }
        }
    }
}

/// Runs `f(i, θ_i, g_i, state_i)` over a chunk with the state read only (one
/// loop per buffer pattern, so no store ever touches a state buffer).
#[inline(always)]
fn for_each_entry_read_state<T: Scalar>(
    v: &mut View<'_, T>,
    used: [bool; 3],
    mut f: impl FnMut(usize, &mut T, T, &[T; 3]),
) {
    let n = v.p.len();
    let z = T::zero();
    let p = &mut v.p[..n];
    let g = &v.g[..n];
    let [a, b, c] = used_state(&v.s, used, n);
    match used {
        [true, false, false] => {
            for (i, ((p, &g), &a)) in p.iter_mut().zip(g).zip(a).enumerate() {
                f(i, p, g, &[a, z, z]);
            }
        }
        [true, true, false] => {
            for (i, ((p, &g), (&a, &b))) in p.iter_mut().zip(g).zip(a.iter().zip(b)).enumerate() {
                f(i, p, g, &[a, b, z]);
            }
        }
        _ => {
            for (i, (p, &g)) in p.iter_mut().zip(g).enumerate() {
                let s = [
                    if used[0] { a[i] } else { z },
                    if used[1] { b[i] } else { z },
                    if used[2] { c[i] } else { z },
                ];
                f(i, p, g, &s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_bucket_counts_keys_above() {
        let mut hist = vec![0u32; BUCKETS];
        hist[10] = 5;
        hist[7] = 3;
        hist[2] = 4;
        assert_eq!(threshold_bucket(&hist, 1), (10, 0));
        assert_eq!(threshold_bucket(&hist, 5), (10, 0));
        assert_eq!(threshold_bucket(&hist, 6), (7, 5));
        assert_eq!(threshold_bucket(&hist, 8), (7, 5));
        assert_eq!(threshold_bucket(&hist, 9), (2, 8));
        assert_eq!(threshold_bucket(&hist, 12), (2, 8));
    }

    #[test]
    fn buckets_are_monotone_in_the_key() {
        let xs = [
            0.0f32,
            1e-30,
            1e-3,
            0.5,
            0.50001,
            1.0,
            3.0,
            1e30,
            f32::INFINITY,
        ];
        for w in xs.windows(2) {
            assert!(bucket::<f32>(w[0].abs_key()) <= bucket::<f32>(w[1].abs_key()));
        }
        assert!((bucket::<f32>(f32::NAN.abs_key()) as usize) < BUCKETS);
        assert!((bucket::<f64>(f64::NAN.abs_key()) as usize) < BUCKETS);
        assert!(bucket::<f64>(1.0f64.abs_key()) < bucket::<f64>(4.0f64.abs_key()));
    }
}
