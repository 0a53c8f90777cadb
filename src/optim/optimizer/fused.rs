//! The fused step of a scored filter: one read-only pass that locates the
//! threshold, then one pass that is the base's update plus a compare; once
//! the threshold's forecast has settled, on a base whose step splits
//! (`Base::SPLITS`, every base but Lion), the update pass alone with an
//! undo log (the single pass, below). (The random filter's fused step is
//! `optimizer::random_draw`.)
//!
//! The general step (`process_block` in the parent module) computes a key
//! per entry into a scratch array, selects the top k of the array, then runs
//! the base over every entry: about 60 bytes of memory traffic per entry
//! against Adam's 28. This one needs no key array and no selection over all
//! entries. For a block of d entries keeping k, with key_i the key of entry
//! i's score after this step's state update:
//!
//! ```text
//! pass 0 (read only), every entry i:
//!     s'_i  ← advance(θ_i, g_i, state_i)          (in registers, not stored)
//!     key_i ← abs_key(score_updated(θ_i, g_i, s'_i))
//!   forecast known:  c_j += [key_i > t_j]  for the probes t_0 < … < t_{N−1}
//!                    (a compare and an add per probe, vectorised; N = 2
//!                    once the forecast has settled, else 4, or 6 for the
//!                    mv and gv filters)
//!   the band:        the j with c_j ≥ k > c_{j+1}:  K ∈ (t_j, t_{j+1}],
//!                    above = c_{j+1},  band = (t_j, t_{j+1}]
//!   otherwise:       hist[top BUCKET_BITS bits of key_i] += 1, and b* the
//!                    bucket holding the k-th largest key: band = bucket b*,
//!                    above = #{keys in buckets above b*}
//! pass 1, every entry i:
//!     state_i ← advance(θ_i, g_i, state_i)         (stored)
//!     key_i above the band  →  θ_i ← apply_updated(θ_i, g_i, state_i)
//!     key_i in the band     →  candidate (i, key_i, apply_updated(…), rest(θ_i)); θ_i kept
//!     key_i below the band  →  θ_i ← rest(θ_i)     (θ_i, or decayed under scope All)
//! candidates:  the r = k − above largest keys among them, ties to the smaller
//!              index (select.rs); each gets its new value, the others rest(θ_i)
//! ```
//!
//! Lion's step does not split: its direction sign(β1·m + (1 − β1)·g) reads
//! the momentum before its update, so `apply_updated` does not exist. Its
//! pass 1 runs the whole update per entry, `(θ'_i, state_i) ← update(…)`,
//! and gives θ'_i to the entries above the band *and* to those in it,
//! whose candidates take their new value from θ and their rest value from
//! the old θ; the selection then writes every candidate (new or rest). A
//! missed single pass could not redo its selection from the updated state,
//! so Lion never takes the single pass: MoFO-Lion moves 8 + 20 bytes per
//! entry against Lion's 20.
//!
//! K is the k-th largest key. The probes t_j are spread around the forecast
//! K̂, half a spread of max(2·E, 1/16 histogram bucket) on each side. Two
//! predictors run side by side: the extrapolation key(2·x_{t−1} − x_{t−2})
//! of the last two thresholds' values x (a key is its value's bit pattern,
//! linear in the value within a binade; extrapolated in key, a threshold
//! drifting steadily in value misses where it crosses a binade, as its
//! key's steps halve or double there) and the last threshold K_{t−1}; each
//! keeps its last eight errors
//! |K − K̂|, its envelope is the largest of them shrunk by 1/8 per step of
//! age, and K̂ is the one whose envelope (E) is smaller. The extrapolation
//! follows a smooth drift (the momentum settling on a steady gradient) to
//! within a fraction of a bucket; when the gradient is noisy, it doubles
//! the noise and the last threshold does better. (The envelope was the
//! last error, or half the one before if larger, of the extrapolation
//! alone: one lucky small error halved the spread, and on thresholds that
//! wobble the next step missed. Replayed on the thresholds recorded from a
//! `mofo train` run of a 6-layer model, from `bench optim`'s
//! changing-gradient workload, and from MoFO-Lion on it, that rule
//! bracketed 81%, 84% and 85% of the block steps; this one 93%, 100% and
//! 99%, with spreads 0.99, 0.81 and 1.38 times as wide; on the steady
//! headline workload both bracket every step with the same spread. The
//! largest of the last six errors, unshrunk, bracketed 97%, 100% and 100%
//! but with spreads 1.29, 0.99 and 1.73 times as wide, and one outlier
//! kept a band wide for six steps: MoFO-Lion's pass 1 took 15 ms against
//! 8.6 in those steps. The extrapolation was in key until the twenty-fifth
//! sitting: replayed, the value's narrowed MoFO-Lion's bands from 1.38 to
//! 1.19 times the first rule's, the others' unchanged.) The threshold of
//! |m| moves slowly, so the forecast usually brackets K and the band holds
//! a small share of the entries; when it does not (first steps, a jump), or
//! its band holds more than 1/64 of the block, the histogram pass runs
//! instead. Either way the band contains K and exactly
//! `above` keys lie above it, so the selection is exactly the top-k of the
//! general step, ties included. Both passes compute each key by the same
//! arithmetic from the same inputs, and `update = advance ∘ apply_updated`,
//! so parameters, state and statistics are bit for bit those of the general
//! step (`tests/optim_fused.rs`). Counts are integers, so nothing depends on
//! how chunks are spread over threads; the forecast depends only on past
//! thresholds, so it changes the speed, never the result.
//!
//! The single pass. Once the forecast has settled (two probes) and an
//! unselected entry keeps θ (scope `Selected`), pass 0 shrinks to the
//! gradient check (g only) and pass 1 runs with the probes' range as its
//! band before its counts are known:
//!
//! ```text
//! every entry i:  state_i ← advance(…)  (stored),  key_i as above
//!     key_i > t_hi          →  θ_i ← apply_updated(…),  old θ_i logged
//!     key_i ∈ (t_lo, t_hi]  →  candidate, θ_i kept
//!     key_i ≤ t_lo          →  θ_i kept
//! above = #logged,  within = #candidates
//! above < k ≤ above + within  →  the band holds K: candidates as after pass 1
//! otherwise                   →  every logged θ_i restored (θ is the old θ,
//!                                the state the updated one), the keys recomputed
//!                                from the stored state, and the general
//!                                step's selection and update
//! ```
//!
//! Either way the selection is the general step's, bit for bit
//! (`single_pass_is_exact_when_the_forecast_misses` forces misses). The
//! log holds, per pair of cache lines with updated entries, its index and
//! a bit mask, and the old θ of those entries packed (about k values per
//! block), so a
//! step moves about Adam's 32 bytes per entry (the check's 4 and the
//! update's 28) and a few for the log. On 40.6M parameters, 2 threads,
//! alternated three times in one binary (`MOFO_NO_SINGLE_PASS=1` turns it
//! off): MoFO/Adam 1.03–1.12 with the single pass, 1.23–1.25 with pass 0 and
//! pass 1 (docs/performance-log.md).
//!
//! Memory traffic: pass 0 reads g and what the score needs (|m| for MoFO:
//! 8 bytes per entry), pass 1 is Adam's 28 bytes; the candidates' new values
//! are written at the end, while their chunk may be out of cache (a band
//! holding a small share of the entries). A band holding more than an eighth of the
//! block (a mass of exact ties, such as never-updated entries whose keys are
//! all zero) goes to the general step instead: its candidate list would be
//! larger than the general step's key array.
//!
//! Allocation: the histograms of pass 0 come from a pool and go back to it
//! (`histograms`); the candidates' lists are the block's, cleared and
//! reused from step to step. A warm step requests a few kilobytes of
//! bookkeeping, whatever the model's size (tests/optim_alloc.rs).

mod histograms;
pub use histograms::pass0_histogram_bytes;
mod probe_adam_avx512;
mod single_adam_avx512;

use rayon::prelude::*;

use super::mapped::with_mapped;
use super::{chunk_deciders, BlockRuntime, Ctx, View};
use crate::kernels::compress::compress_marked;
use crate::kernels::prefetch;
use crate::kernels::reduce::all_finite_wide;
use crate::kernels::simd::{has_avx512, wide_simd_call, wide_simd_fn};
use crate::optim::base::Base;
use crate::optim::filter::Filter;
use crate::optim::stats::{key_to_f64, BlockStats};
use crate::Scalar;

/// Bits of a key that index the histogram (its top bits: for f32 the
/// exponent and the first six mantissa bits, buckets 1/64 octave wide).
const BUCKET_BITS: u32 = 14;
/// Number of histogram buckets.
const BUCKETS: usize = 1 << BUCKET_BITS;
/// Probe thresholds counted by the forecast pass once the forecast has
/// settled (`Forecast::narrow`): two, so the band is the probes' whole
/// range. Each probe costs a compare and an add per entry in pass 0, which
/// is partly compute-bound; fewer probes make the band wider (more
/// candidates in pass 1). Measured on 40.6M parameters, 2 threads, with
/// one probe count for every step (pass 0 and pass 1, ms):
///
/// - AMD Zen 1 (AVX2 on 128-bit units): 4 probes 19.2–19.8 and
///   50.6–56.9, 2 probes 14.6–15.2 and 52.1–53.3;
/// - Intel Xeon with AVX-512 (Emerald Rapids, 2026-12-02, fifth sitting):
///   4 probes 18.2–18.8 and 25.2–26.2, 3 probes 14.7–15.5 and 25.1–26.4,
///   2 probes 11.9–12.7 and 25.7–27.2.
const NARROW_PROBES: usize = 2;
/// Probe thresholds counted while the forecast is unsettled (the first
/// steps, a jump): four, so the band is a third of the probes' range. With
/// two probes on every step, three times wider bands held more than
/// [`loose_band`] in more of the first steps, which then ran the histogram
/// pass as well (869 block-steps of 4 365 against 707 in `bench optim`,
/// and `forecast_path_is_exact_over_many_steps` had 27 forecast hits of
/// 48 against at least 30).
const WIDE_PROBES: usize = 4;
/// The wide probes of the mv and gv filters (`Filter::ROOTED`): six, so
/// the band is a fifth of the probes' range. Their pass 1 computes the
/// exact key of every group of sixteen that holds a band entry
/// (`single_adam_avx512`), so a narrower band saves more there than the
/// probes' compares cost in pass 0. gv on the bench's 40.6M parameters
/// with fresh gradients every step (2 threads, Zen 5, median of 20 steps;
/// 2026-12-05, twenty-sixth sitting), pass 0 and pass 1: 4 probes 9.5 and
/// 18.3–18.6 ms (89 of 1940 block steps also ran the histogram), 6 probes
/// 10.7 and 15.2–15.3 (2 of 1940), 8 probes 13.4 and 13.8–13.9.
const ROOTED_PROBES: usize = 6;
/// The probes' half-spread is at least one histogram bucket shifted right
/// by this (1/1024 octave for f32), however small the forecast errors.
/// A whole bucket, as before, made the band hold so many candidates that
/// pass 1 took 53.4 ms against 45.3 at a sixteenth (and 45.3 at a
/// 64th; 2026-12-02, AMD Zen 1, 4 probes): in a steady phase the threshold
/// moves far less than a bucket per step, and twice the error envelope
/// (`Forecast::err`) still widens the probes when it moves more.
const MIN_SPREAD_SHIFT: u32 = 4;

/// The histogram bucket of a key (a `u32`, so that the f32 loops stay in
/// 32-bit lanes).
#[inline(always)]
fn bucket<T: Scalar>(key: u64) -> u32 {
    (key >> (T::KEY_BITS - BUCKET_BITS)) as u32
}

/// `a > b` for keys of `T` (and bounds made from them, all below
/// 2^KEY_BITS), compared as signed 32-bit integers for f32: its keys are
/// below 2^31, and a signed compare is one AVX2 instruction where an
/// unsigned one is three, so the f32 loops stay 8 lanes wide and short.
#[inline(always)]
fn key_gt<T: Scalar>(a: u64, b: u64) -> bool {
    if T::KEY_BITS < 32 {
        (a as u32 as i32) > (b as u32 as i32)
    } else {
        a > b
    }
}

/// Where the k-th largest key K lies: `lo ≤ K ≤ hi`, with exactly `above`
/// keys greater than `hi` and `within` keys in `[lo, hi]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Band {
    lo: u64,
    hi: u64,
    above: u64,
    within: u64,
}

impl Band {
    /// Whether `key` lies in `[lo, hi]`.
    #[inline(always)]
    fn holds<T: Scalar>(&self, key: u64) -> bool {
        !key_gt::<T>(self.lo, key) & !key_gt::<T>(key, self.hi)
    }
}

/// One entry whose key falls in the band: its index in the chunk, its key,
/// and its value if selected (`new`) or not (`rest`), widened to f64 (exact
/// for f32 and f64).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Candidate {
    i: u32,
    key: u64,
    new: f64,
    rest: f64,
}

/// Forecast errors kept per predictor: the envelope is the largest of the
/// last this many, each shrunk by 1/8 per step of age (module docs).
const ERR_WINDOW: usize = 8;

/// A block's forecast of its next threshold key, from its last two: by
/// the predictor whose recent errors were smaller (module docs).
#[derive(Clone, Debug, Default)]
pub(crate) struct Forecast {
    last: Option<u64>,
    prev: Option<u64>,
    /// The last [`ERR_WINDOW`] errors |K − K̂| of each predictor
    /// (extrapolated, last), in a ring at `errs_at`.
    errs: [[u64; ERR_WINDOW]; 2],
    /// The ring's next slot.
    errs_at: usize,
    /// Steps whose probes bracketed K (the histogram pass was skipped).
    pub(crate) hits: u64,
    /// Steps that ran the histogram pass.
    pub(crate) misses: u64,
    /// Steps whose band was too full of ties (run by the general step).
    pub(crate) crowded: u64,
    /// Steps run by the single pass whose band held K (counted in `hits`
    /// too).
    pub(crate) single: u64,
    /// Steps run by the single pass whose band did not hold K, so that
    /// its updates were undone and the selection redone (counted in
    /// `misses` too).
    pub(crate) single_missed: u64,
    /// Candidates (keys in the band) recorded by the steps that kept their
    /// band, summed over those steps.
    pub(crate) candidates: u64,
    /// Whether the next step counts [`NARROW_PROBES`] (the last band,
    /// widened to the whole range of two probes, held at most half of
    /// [`loose_band`]) rather than [`WIDE_PROBES`] ([`ROOTED_PROBES`]).
    /// Speed only.
    narrow: bool,
}

impl Forecast {
    /// Both predictors' K̂, when there is a last threshold: extrapolated
    /// from the last two ([`extrapolated`]), and the last one.
    fn predictions<T: Scalar>(&self) -> Option<[i128; 2]> {
        let last = self.last?;
        let extrapolated = match self.prev {
            Some(prev) => extrapolated::<T>(last, prev),
            None => last,
        };
        Some([extrapolated as i128, last as i128])
    }

    /// A predictor's error envelope: the largest of its last
    /// [`ERR_WINDOW`] errors, each shrunk by 1/8 per step of age.
    fn envelope(&self, ring: &[u64; ERR_WINDOW]) -> u64 {
        // Oldest first: E ← max(e, E − E/8).
        (0..ERR_WINDOW)
            .map(|age| ring[(self.errs_at + age) % ERR_WINDOW])
            .fold(0, |env, e| e.max(env - env / 8))
    }

    /// The forecast K̂ and its error envelope E: the predictor whose
    /// envelope is smaller, the extrapolation on a tie.
    fn predicted<T: Scalar>(&self) -> Option<(i128, u64)> {
        let p = self.predictions::<T>()?;
        let env = self.errs.map(|ring| self.envelope(&ring));
        let j = usize::from(env[1] < env[0]);
        Some((p[j], env[j]))
    }

    /// The `N ≥ 2` probe thresholds around K̂, ascending (equal where
    /// clamped to the key range).
    fn probes<T: Scalar, const N: usize>(&self) -> Option<[u64; N]> {
        let (center, err) = self.predicted::<T>()?;
        let bucket_width = 1i128 << (T::KEY_BITS - BUCKET_BITS);
        let half = (2 * err as i128).max(bucket_width >> MIN_SPREAD_SHIFT);
        let step = (2 * half / (N as i128 - 1)).max(1);
        let max = (1i128 << T::KEY_BITS) - 1;
        let lo = center - half;
        Some(std::array::from_fn(|j| {
            (lo + j as i128 * step).clamp(0, max) as u64
        }))
    }

    /// Records this step's threshold `k_th` (the k-th largest key, of a
    /// value of `T`).
    pub(crate) fn observe<T: Scalar>(&mut self, k_th: u64) {
        if let Some(p) = self.predictions::<T>() {
            for (ring, p) in self.errs.iter_mut().zip(p) {
                ring[self.errs_at] = (k_th as i128 - p).unsigned_abs().min(u64::MAX as u128) as u64;
            }
            self.errs_at = (self.errs_at + 1) % ERR_WINDOW;
        }
        self.prev = self.last;
        self.last = Some(k_th);
    }

    /// Records how this step's band was found: `spans` gaps between the
    /// probes that located it (0: the histogram did), holding `within`
    /// keys; the next step counts two probes if this band, widened to the
    /// whole range (`spans` such bands), held at most half of `loose`.
    fn settle(&mut self, spans: u64, within: u64, loose: u64) {
        self.narrow = spans > 0 && within.saturating_mul(spans) <= loose / 2;
    }

    /// Records a step whose band was too full of ties (it ran the general
    /// step); the next one counts the wide probes.
    pub(crate) fn note_crowded(&mut self) {
        self.crowded += 1;
        self.narrow = false;
    }
}

/// The key of the value extrapolated from the last two thresholds' values,
/// 2·x(K₁) − x(K₂) rounded to `T` (0 when that is not positive). Keys are
/// the bit patterns of the values: a threshold that moves steadily in value
/// moves steadily in key within a binade, but its key's steps halve (or
/// double) where it crosses one, and blocks with similar thresholds cross
/// together; the value's extrapolation follows it across (replayed on
/// MoFO-Lion's thresholds: the bands 14% narrower for the same share
/// bracketed, the other recordings unchanged; docs/performance-log.md,
/// twenty-fifth sitting).
fn extrapolated<T: Scalar>(last: u64, prev: u64) -> u64 {
    let x = 2.0 * key_to_f64::<T>(last) - key_to_f64::<T>(prev);
    if x.is_nan() {
        last
    } else if x > 0.0 {
        T::of(x).abs_key()
    } else {
        0
    }
}

/// The band from the probes' counts (`counts[j]` = #{key > probes[j]}), or
/// `None` when K lies outside the probes' range.
fn band_from_probes<const N: usize>(probes: &[u64; N], counts: &[u64; N], k: u64) -> Option<Band> {
    (0..N - 1).find_map(|j| {
        (counts[j] >= k && counts[j + 1] < k).then(|| Band {
            lo: probes[j] + 1,
            hi: probes[j + 1],
            above: counts[j + 1],
            within: counts[j] - counts[j + 1],
        })
    })
}

/// The band of the histogram's threshold bucket.
fn band_from_histogram<T: Scalar>(hist: &[u32], k: u64) -> Band {
    let (b, above) = threshold_bucket(hist, k);
    let shift = T::KEY_BITS - BUCKET_BITS;
    Band {
        lo: (b as u64) << shift,
        hi: (((b as u64) + 1) << shift) - 1,
        above,
        within: hist[b as usize] as u64,
    }
}

/// What pass 0 found in a block: the band, and how many gaps between the
/// forecast's probes located it (none: the histogram did).
#[derive(Clone, Copy, Debug)]
pub(super) struct Located {
    band: Band,
    /// Gaps between the probes that located the band (0: the histogram
    /// did).
    spans: u64,
}

/// How the fused step runs a block, decided before any block changes.
#[derive(Clone, Copy, Debug)]
pub(super) enum Plan {
    /// Pass 0 located the band; pass 1 follows.
    Located(Located),
    /// The single pass (module docs) with the forecast's band, whose
    /// counts (`above`, `within`) are not known yet.
    Single(Band),
    /// The random filter's draw pass found the selection
    /// (`optimizer::random_draw`); its update pass follows.
    Drawn(super::random_draw::Drawn),
}

/// The read-only phase of a block, before any block changes: its plan and
/// whether every gradient of the block is finite (when one is not, the
/// plan is meaningless and nothing may change). With a settled forecast
/// and unselected entries that keep θ, that is the gradient check alone
/// and the single pass follows; else pass 0 (module docs) locates the band
/// (`None` when it holds more than an eighth of the block, so the general
/// step should run). `0 < k < len`.
pub(super) fn locate<F: Filter, B: Base, T: Scalar>(
    ctx: &Ctx<'_, F, B, T>,
    c: &B::Coef<T>,
    len: usize,
    k: usize,
    forecast: &Forecast,
    chunks: &mut [View<'_, T>],
) -> (Option<Plan>, bool) {
    let per_job = per_job(chunks.len());
    let map = ctx.prep.map();
    if let Some(band) = single_pass_band::<B, T>(ctx.scope_all, forecast) {
        // Pass 0 is only the gradient check here: nothing to read when the
        // caller has checked them (`Optimizer::step_finite`).
        let finite = ctx.known_finite
            || chunks
                .par_iter()
                .with_min_len(per_job)
                .all(|ch| wide_simd_call!(all_finite / all_finite_wide(ch.g)));
        return (Some(Plan::Single(band)), finite);
    }
    let k64 = k as u64;
    let reads = key_reads(ctx.filter, ctx.base, c);
    let (spans, (by_forecast, finite)) = if forecast.narrow {
        let found =
            band_by_probes::<_, _, _, NARROW_PROBES>(ctx, c, len, k64, forecast, chunks, reads);
        (NARROW_PROBES as u64 - 1, found)
    } else if F::ROOTED {
        let found =
            band_by_probes::<_, _, _, ROOTED_PROBES>(ctx, c, len, k64, forecast, chunks, reads);
        (ROOTED_PROBES as u64 - 1, found)
    } else {
        let found =
            band_by_probes::<_, _, _, WIDE_PROBES>(ctx, c, len, k64, forecast, chunks, reads);
        (WIDE_PROBES as u64 - 1, found)
    };
    if !finite {
        return (None, false);
    }
    let located = match by_forecast {
        Some(band) => Located { band, spans },
        None => {
            // The histograms come from a pool and go back to it
            // (`histograms`): the fold allocates nothing once warm.
            let (hist, ok) = chunks
                .par_iter_mut()
                .with_min_len(per_job)
                .fold(
                    || (histograms::take(), true),
                    |(mut h, ok), ch| {
                        let f = probe_adam_avx512::try_count_chunk(ctx, c, ch, &mut h)
                            .unwrap_or_else(|| {
                                with_mapped(map, ch, |ch| {
                                    wide_simd_call!(
                                        count_chunk / count_chunk_wide(ctx, *c, ch, &mut h, reads)
                                    )
                                })
                            });
                        (h, ok & f)
                    },
                )
                .reduce(
                    || (histograms::take(), true),
                    |(mut a, oa), (b, ob)| {
                        a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                        histograms::give_back(b);
                        (a, oa & ob)
                    },
                );
            let band = ok.then(|| band_from_histogram::<T>(&hist, k64));
            histograms::give_back(hist);
            let Some(band) = band else {
                return (None, false);
            };
            Located { band, spans: 0 }
        }
    };
    let crowded = located.band.within as usize > len / 8 && located.band.within > 1024;
    ((!crowded).then_some(Plan::Located(located)), true)
}

/// The band of the single pass: the range of the narrow probes, when the
/// forecast has settled (`Forecast::narrow`) and an unselected entry keeps
/// θ (scope `Selected`: under scope `All` it is decayed, which the undo
/// log could not reverse when the forecast misses), on a base whose step
/// splits (a miss redoes the selection from the updated state, which
/// Lion's direction cannot be computed from). `None` also when a probe is
/// clamped at the top of the key range.
fn single_pass_band<B: Base, T: Scalar>(scope_all: bool, forecast: &Forecast) -> Option<Band> {
    if !B::SPLITS || scope_all || !forecast.narrow || !single_pass_enabled() {
        return None;
    }
    let probes = forecast.probes::<T, NARROW_PROBES>()?;
    let (lo, hi) = (probes[0], probes[NARROW_PROBES - 1]);
    (lo < hi && hi < (1u64 << T::KEY_BITS) - 1).then_some(Band {
        lo: lo + 1,
        hi,
        above: 0,
        within: 0,
    })
}

/// Whether the single pass may run: `MOFO_NO_SINGLE_PASS` unset (set, every
/// forecast block takes pass 0's probes and pass 1, for A/B runs; results
/// are the same either way). Read once.
fn single_pass_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("MOFO_NO_SINGLE_PASS").is_none())
}

/// Pass 0 with the forecast's `N` probes (when it has a forecast): the
/// band they locate, unless K lies outside their range or the band holds
/// more than [`loose_band`], and whether every gradient is finite.
fn band_by_probes<F: Filter, B: Base, T: Scalar, const N: usize>(
    ctx: &Ctx<'_, F, B, T>,
    c: &B::Coef<T>,
    len: usize,
    k: u64,
    forecast: &Forecast,
    chunks: &mut [View<'_, T>],
    reads: [bool; 4],
) -> (Option<Band>, bool) {
    let Some(probes) = forecast.probes::<T, N>() else {
        return (None, true);
    };
    let per_job = per_job(chunks.len());
    let map = ctx.prep.map();
    let (counts, finite) = chunks
        .par_iter_mut()
        .with_min_len(per_job)
        .map(|ch| {
            // The hand-written pass takes the map itself, in registers.
            probe_adam_avx512::try_probe_chunk(ctx, c, ch, &probes).unwrap_or_else(|| {
                with_mapped(map, ch, |ch| {
                    wide_simd_call!(probe_chunk / probe_chunk_wide(ctx, *c, ch, &probes, reads))
                })
            })
        })
        .reduce(
            || ([0u64; N], true),
            |a, b| (std::array::from_fn(|j| a.0[j] + b.0[j]), a.1 & b.1),
        );
    // A band this wide costs more in candidates than the histogram pass.
    let band = band_from_probes(&probes, &counts, k).filter(|b| b.within <= loose_band(len));
    (band, finite)
}

/// Chunks per rayon job: about four jobs per thread.
fn per_job(chunks: usize) -> usize {
    chunks.div_ceil(4 * rayon::current_num_threads()).max(1)
}

/// The widest band taken from the forecast: 1/64 of the block (at least
/// 256 entries), wider ones are narrowed by the histogram pass.
fn loose_band(len: usize) -> u64 {
    (len as u64 / 64).max(256)
}

/// A block's step by its plan (`locate`); `0 < k < len`.
pub(super) fn process_block<F: Filter, B: Base, T: Scalar>(
    ctx: &Ctx<'_, F, B, T>,
    c: &B::Coef<T>,
    len: usize,
    k: usize,
    rt: &mut BlockRuntime<T>,
    chunks: &mut [View<'_, T>],
    plan: Plan,
) -> BlockStats {
    match plan {
        Plan::Located(located) => pass_1(ctx, c, len, k, rt, chunks, located),
        Plan::Single(band) => single_pass(ctx, c, len, k, rt, chunks, band),
        Plan::Drawn(drawn) => super::random_draw::process_block(ctx, c, len, k, rt, chunks, drawn),
    }
}

/// Pass 1 and the candidates of a block whose band pass 0 located (module
/// docs).
fn pass_1<F: Filter, B: Base, T: Scalar>(
    ctx: &Ctx<'_, F, B, T>,
    c: &B::Coef<T>,
    len: usize,
    k: usize,
    rt: &mut BlockRuntime<T>,
    chunks: &mut [View<'_, T>],
    located: Located,
) -> BlockStats {
    let per_job = per_job(chunks.len());
    let band = located.band;
    if located.spans > 0 {
        rt.forecast.hits += 1;
    } else {
        rt.forecast.misses += 1;
    }

    // Pass 1: the update, and the candidates in the band. Under scope
    // `Selected` (an entry below the band keeps θ) that is the single pass
    // with a band known to hold K, which the hand-written kernel runs where
    // it applies (its log, in the block's undo buffers, goes unread).
    rt.candidates.resize_with(chunks.len(), Vec::new);
    rt.undo.resize_with(chunks.len(), UndoLog::default);
    let map = ctx.prep.map();
    chunks
        .par_iter_mut()
        .zip(rt.candidates.par_iter_mut().zip(rt.undo.par_iter_mut()))
        .with_min_len(per_job)
        .for_each(|(ch, (cands, undo))| {
            cands.clear();
            undo.clear();
            let hand = !ctx.scope_all
                && single_adam_avx512::try_single_chunk(ctx, c, ch, band, usize::MAX, cands, undo)
                    .is_some();
            if !hand {
                with_mapped(map, ch, |ch| {
                    wide_simd_call!(update_chunk / update_chunk_wide(ctx, *c, ch, band, cands))
                });
            }
        });
    select_candidates(ctx, len, k, rt, chunks, band, located.spans)
}

/// The single pass over a block (module docs): the update of the entries
/// above the forecast's band, logged in `rt.undo`, and the candidates in
/// it. When the counts show that the band holds K, the candidates are
/// selected as after pass 1; otherwise [`redo_selection`].
fn single_pass<F: Filter, B: Base, T: Scalar>(
    ctx: &Ctx<'_, F, B, T>,
    c: &B::Coef<T>,
    len: usize,
    k: usize,
    rt: &mut BlockRuntime<T>,
    chunks: &mut [View<'_, T>],
    band: Band,
) -> BlockStats {
    let per_job = per_job(chunks.len());
    rt.candidates.resize_with(chunks.len(), Vec::new);
    rt.undo.resize_with(chunks.len(), UndoLog::default);
    let cap = candidate_cap(len, chunks.len());
    let map = ctx.prep.map();
    let complete = chunks
        .par_iter_mut()
        .zip(rt.candidates.par_iter_mut().zip(rt.undo.par_iter_mut()))
        .with_min_len(per_job)
        .map(|(ch, (cands, undo))| {
            cands.clear();
            undo.clear();
            // The hand-written pass takes the map itself, in registers.
            single_adam_avx512::try_single_chunk(ctx, c, ch, band, cap, cands, undo).unwrap_or_else(
                || {
                    with_mapped(map, ch, |ch| {
                        wide_simd_call!(
                            single_chunk / single_chunk_wide(ctx, *c, ch, band, cap, cands, undo)
                        )
                    })
                },
            )
        })
        .reduce(|| true, |a, b| a & b);
    // Every entry above the band was updated and logged, every one in it
    // recorded (when `complete`): the counts of pass 0, exactly.
    let above: u64 = rt.undo.iter().map(|u| u.len() as u64).sum();
    let within: u64 = rt.candidates.iter().map(|u| u.len() as u64).sum();
    let k64 = k as u64;
    if complete && above < k64 && k64 <= above + within {
        rt.forecast.hits += 1;
        rt.forecast.single += 1;
        rt.forecast.candidates += within;
        let band = Band {
            above,
            within,
            ..band
        };
        return select_candidates(ctx, len, k, rt, chunks, band, NARROW_PROBES as u64 - 1);
    }
    rt.forecast.misses += 1;
    rt.forecast.single_missed += 1;
    redo_selection(ctx, c, len, k, rt, chunks)
}

/// The single pass's log of one chunk, to undo its updates when the
/// forecast missed: per line holding updated entries, its first index and
/// a bit per updated entry, and the old θ of those entries in index order.
/// Both are written by a cursor into buffers kept across steps (they grow,
/// by doubling, only while a step logs more than any before). The old
/// values start at `olds[lead]`: 0 for the generic pass; the hand-written
/// one ([`single_adam_avx512`]) streams whole cache lines past the caches
/// and starts them where the buffer is 64-byte aligned, and it logs the
/// lines densely instead: `masks[j]` the mask of the 32 entries from
/// `32·j`, for every group of the chunk (`n_masks` of them), no index.
#[derive(Clone, Debug, Default)]
pub(crate) struct UndoLog<T> {
    lines: Vec<(u32, u32)>,
    n_lines: usize,
    masks: Vec<u32>,
    n_masks: usize,
    olds: Vec<T>,
    lead: usize,
    n_olds: usize,
}

impl<T: Scalar> UndoLog<T> {
    /// Forgets what was logged.
    fn clear(&mut self) {
        self.n_lines = 0;
        self.n_olds = 0;
        self.lead = 0;
        self.n_masks = 0;
    }

    /// The logged lines as (first index, mask), the masks' empty lines
    /// left out, whichever form holds them.
    fn logged_lines(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        let dense = self.masks[..self.n_masks]
            .iter()
            .enumerate()
            .filter(|(_, &m)| m != 0)
            .map(|(j, &m)| ((32 * j) as u32, m));
        self.lines[..self.n_lines].iter().copied().chain(dense)
    }

    /// The logged old values, in index order.
    fn logged_olds(&self) -> &[T] {
        &self.olds[self.lead..self.lead + self.n_olds]
    }

    /// Number of entries logged.
    fn len(&self) -> usize {
        self.n_olds
    }

    /// Logs the entries of the line at `lo` marked [`ABOVE_BAND`], whose θ
    /// was `old[j]`, without a branch on the marks: a line entry is written
    /// whatever the marks and the cursors advance by what is kept; the old
    /// values are packed by [`compress_marked`] (`wide`: on AVX-512).
    #[inline(always)]
    fn log_line(&mut self, lo: usize, marks: &[u8], old: &[T], wide: bool) {
        let n = old.len();
        debug_assert_eq!(self.lead, 0, "the generic pass logs from the start");
        if self.lines.len() <= self.n_lines || self.olds.len() < self.n_olds + n {
            self.reserve(1, n);
        }
        let at = self.n_olds;
        let (mask, count) =
            compress_marked(marks, ABOVE_BAND, old, &mut self.olds[at..at + n], wide);
        self.lines[self.n_lines] = (lo as u32, mask);
        self.n_lines += usize::from(mask != 0);
        self.n_olds += count;
    }

    /// Room for `lines` more lines and `olds` more old values past the
    /// cursors, by doubling.
    #[cold]
    fn reserve(&mut self, lines: usize, olds: usize) {
        let want = self.n_lines + lines;
        if self.lines.len() < want {
            self.lines.resize(want.max(2 * self.lines.len()), (0, 0));
        }
        let want = self.lead + self.n_olds + olds;
        if self.olds.len() < want {
            self.olds.resize(want.max(2 * self.olds.len()), T::zero());
        }
    }

    /// Puts the logged old values back into the chunk's θ.
    fn undo(&self, p: &mut [T]) {
        let mut olds = self.logged_olds().iter();
        for (lo, mask) in self.logged_lines() {
            let mut m = mask;
            while m != 0 {
                let j = m.trailing_zeros() as usize;
                if let Some(&o) = olds.next() {
                    p[lo as usize + j] = o;
                }
                m &= m - 1;
            }
        }
    }
}

/// Candidates a chunk of the single pass records before it gives up (the
/// step then takes [`redo_selection`]): a band holding more than an eighth
/// of the block (at least 1024 entries), spread over its chunks, as the
/// crowded bands that pass 0 leaves to the general step.
fn candidate_cap(len: usize, chunks: usize) -> usize {
    (len / 8).max(1024).div_ceil(chunks.max(1))
}

/// The selection of a block whose single pass missed: every logged update
/// undone (θ is then the old θ everywhere, the state the updated one),
/// then the general step's selection on keys computed from the stored
/// state, and the selected entries' update.
fn redo_selection<F: Filter, B: Base, T: Scalar>(
    ctx: &Ctx<'_, F, B, T>,
    c: &B::Coef<T>,
    len: usize,
    k: usize,
    rt: &mut BlockRuntime<T>,
    chunks: &mut [View<'_, T>],
) -> BlockStats {
    let per_job = per_job(chunks.len());
    chunks
        .par_iter_mut()
        .zip(rt.undo.par_iter())
        .with_min_len(per_job)
        .for_each(|(ch, undo)| undo.undo(ch.p));
    rt.keys.resize(len, 0);
    let reads = key_reads(ctx.filter, ctx.base, c);
    let map = ctx.prep.map();
    let parts = super::per_chunk(&mut rt.keys, chunks);
    chunks
        .par_iter_mut()
        .zip(parts.into_par_iter())
        .with_min_len(per_job)
        .for_each(|(ch, keys)| {
            with_mapped(map, ch, |ch| {
                wide_simd_call!(
                    stored_keys_chunk / stored_keys_chunk_wide(ctx, *c, ch, reads, keys)
                )
            })
        });
    let cut = rt.topk.cut(&rt.keys, k);
    let keys = &rt.keys;
    let deciders = chunk_deciders(cut, rt.topk.last_ties_total(), chunks.len(), |ci| {
        let ch = &chunks[ci];
        keys[ch.off..ch.off + ch.len()]
            .iter()
            .filter(|&&x| x == cut.threshold_key)
            .count()
    });
    let (base, used) = (ctx.base, ctx.used);
    chunks
        .par_iter_mut()
        .zip(deciders.into_par_iter())
        .with_min_len(per_job)
        .for_each(|(ch, dec)| {
            // As in the general step's apply loop: the decider as a rule
            // on (index, key), branch-free, so the loop vectorises.
            let ks = &keys[ch.off..ch.off + ch.len()];
            let rule = dec.index_rule(ks);
            with_mapped(map, ch, |ch| {
                super::for_each_entry(ch, used, |i, p, g, s| {
                    let take = ks.get(i).is_some_and(|&key| rule.take(i, key));
                    let new = base.apply_updated(c, *p, g, s);
                    *p = if take { new } else { *p };
                })
            });
        });
    rt.forecast.observe::<T>(cut.threshold_key);
    rt.forecast.settle(0, 0, 0);
    BlockStats {
        selected: k,
        len,
        threshold: Some(key_to_f64::<T>(cut.threshold_key)),
        overlap: None,
    }
}

/// The r = k − `band.above` largest candidates of a block (ties to the
/// smaller index) get their new value, the others their rest value; the
/// forecast learns the threshold. `spans`: as in [`Located`].
fn select_candidates<F: Filter, B: Base, T: Scalar>(
    ctx: &Ctx<'_, F, B, T>,
    len: usize,
    k: usize,
    rt: &mut BlockRuntime<T>,
    chunks: &mut [View<'_, T>],
    band: Band,
    spans: u64,
) -> BlockStats {
    let r = k - band.above as usize;
    // The r largest candidates (ties to the smaller index), then their values.
    rt.keys.clear();
    rt.keys
        .extend(rt.candidates.iter().flatten().map(|cand| cand.key));
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
            .filter(|cand| cand.key == cut.threshold_key)
            .count()
    });
    let scope_all = ctx.scope_all;
    chunks
        .par_iter_mut()
        .zip(candidates.par_iter())
        .zip(deciders.into_par_iter())
        .for_each(|((ch, cands), mut dec)| {
            for cand in cands {
                let i = cand.i as usize;
                if dec.take(cand.key) {
                    ch.p[i] = T::of(cand.new);
                } else if scope_all || !B::SPLITS {
                    // (Without a split, pass 1 left the new value in θ.)
                    ch.p[i] = T::of(cand.rest);
                }
            }
        });
    rt.forecast.observe::<T>(tau);
    rt.forecast.settle(spans, band.within, loose_band(len));
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

/// The key of entry (θ, g, state) after this step's state update, computed
/// without storing the update.
#[inline(always)]
fn key_after_update<F: Filter, B: Base, T: Scalar>(
    filter: &F,
    base: &B,
    c: &B::Coef<T>,
    p: T,
    g: T,
    s: &[T; 3],
) -> u64 {
    let mut s = *s;
    base.advance(c, p, g, &mut s);
    filter.score_updated(base, c, p, g, &s).abs_key()
}

/// [`key_after_update`] of every entry of a chunk, for a filter whose
/// score takes the base's denominator root (`Filter::ROOTED`), sixteen
/// entries at a time (`optimizer::rooted`): `see(keys, g)` per line, with
/// the line's keys and gradients in index order.
#[inline(always)]
fn keys_rooted<F: Filter, B: Base, T: Scalar>(
    ctx: &Ctx<'_, F, B, T>,
    c: &B::Coef<T>,
    v: &View<'_, T>,
    mut see: impl FnMut(&[u64], &[T]),
) {
    let (filter, base) = (ctx.filter, ctx.base);
    super::rooted::for_each_line(
        v,
        ctx.used,
        |p, g, s| radicand_after_update(base, c, p, g, s),
        |p, g, s, root| {
            filter
                .score_updated_rooted(base, c, *p, g, s, root)
                .abs_key()
        },
        |_, line, keys| see(keys, &line.g[..keys.len()]),
    );
}

/// Pass 1 and the single pass for a rooted filter, sixteen entries at a
/// time (`optimizer::rooted`): every entry's state advanced, its key from
/// the line's roots, then `mark(key, θ, g, state)` (which may write θ) gives
/// its mark; after each line `done(lo, line, marks)`.
#[inline(always)]
fn marked_rooted<F: Filter, B: Base, T: Scalar>(
    ctx: &Ctx<'_, F, B, T>,
    c: &B::Coef<T>,
    v: &mut View<'_, T>,
    mut mark: impl FnMut(u64, &mut T, T, &[T; 3]) -> u8,
    done: impl FnMut(usize, &super::rooted::Line<T>, &[u8]),
) {
    let (filter, base) = (ctx.filter, ctx.base);
    super::rooted::for_each_line_mut(
        v,
        ctx.used,
        true,
        |p, g, s| radicand_after_update(base, c, p, g, s),
        |p, g, s, root| {
            let key = filter
                .score_updated_rooted(base, c, *p, g, s, root)
                .abs_key();
            mark(key, p, g, s)
        },
        done,
    );
}

/// `pre` of the rooted loops for a rooted filter: advances the line's
/// state of the entry and gives the radicand of the base's denominator.
#[inline(always)]
fn radicand_after_update<B: Base, T: Scalar>(
    base: &B,
    c: &B::Coef<T>,
    p: T,
    g: T,
    s: &mut [T; 3],
) -> T {
    base.advance(c, p, g, s);
    base.denom_radicand_updated(c, p, g, s)
}

/// Which inputs of [`key_after_update`] the key depends on, as
/// `[θ, s₀, s₁, s₂]`, found by giving each in turn a NaN (a key that reads
/// it changes). Pass 0 prefetches these and g (`kernels::prefetch`); a
/// prefetch is only a hint, so this decides speed, never a result. For
/// MoFO on AdamW: s₀ (m) only, so pass 0 asks for 8 bytes per entry.
fn key_reads<F: Filter, B: Base, T: Scalar>(filter: &F, base: &B, c: &B::Coef<T>) -> [bool; 4] {
    let (p, g) = (T::of(0.3), T::of(0.01));
    let s = [T::of(0.02), T::of(0.001), T::of(0.002)];
    let key = key_after_update(filter, base, c, p, g, &s);
    let nan = T::nan();
    std::array::from_fn(|j| {
        let (mut p2, mut s2) = (p, s);
        if j == 0 {
            p2 = nan;
        } else {
            s2[j - 1] = nan;
        }
        key_after_update(filter, base, c, p2, g, &s2) != key
    })
}

/// Entries per lane array of pass 0's accumulators: a cache line of f32
/// (the loops hand each entry its place in its line, below 16).
const LANES: usize = 16;

/// The largest |g| seen so far in each lane of a line, as a key (in 32-bit
/// lanes for f32, so that the loops around it stay 8 or 16 lanes wide):
/// one `max` per entry, where a compare-and-or per entry took three more
/// vector instructions, and per lane, where one running maximum was
/// reduced across the vector at the end of every line. Every gradient is
/// finite iff the largest key is at most the largest finite value's
/// (NaN's key lies above infinity's).
#[derive(Clone, Copy, Default)]
struct LaneWorst {
    narrow: [u32; LANES],
    wide: [u64; LANES],
}

impl LaneWorst {
    /// Sees the gradient `g` at place `lane` of its line.
    #[inline(always)]
    fn see<T: Scalar>(&mut self, lane: usize, g: T) {
        let key = g.abs_key();
        let l = lane % LANES;
        if T::KEY_BITS < 32 {
            self.narrow[l] = self.narrow[l].max(key as u32);
        } else {
            self.wide[l] = self.wide[l].max(key);
        }
    }

    /// Whether every gradient seen is finite.
    fn all_finite<T: Scalar>(&self) -> bool {
        let worst = if T::KEY_BITS < 32 {
            self.narrow.iter().map(|&x| u64::from(x)).max()
        } else {
            self.wide.iter().copied().max()
        };
        worst.unwrap_or(0) <= T::max_value().abs_key()
    }
}

wide_simd_fn! {
    /// Pass 0 with a forecast over a chunk: per probe, the number of keys
    /// above it, and whether every gradient is finite (a branch-free loop
    /// the compiler vectorises).
    fn probe_chunk / probe_chunk_wide [F: Filter, B: Base, T: Scalar, const N: usize] (
        ctx: &Ctx<'_, F, B, T>,
        c: B::Coef<T>,
        v: &View<'_, T>,
        probes: &[u64; N],
        reads: [bool; 4],
    ) -> ([u64; N], bool) {
        let c = &c;
        let (filter, base) = (ctx.filter, ctx.base);
        let t = *probes;
        // Counts and the worst |g| per lane of a line, summed at the end:
        // scalars were summed across the vector at the end of every line.
        let mut n = [[0u32; LANES]; N];
        let mut worst = LaneWorst::default();
        let mut see = |lane: usize, key: u64, g: T| {
            for j in 0..N {
                n[j][lane % LANES] += u32::from(key_gt::<T>(key, t[j]));
            }
            worst.see(lane, g);
        };
        if F::ROOTED {
            keys_rooted(ctx, c, v, |keys, g| {
                for (lane, (&key, &g)) in keys.iter().zip(g).enumerate() {
                    see(lane, key, g);
                }
            });
        } else {
            for_each_entry_read_state(v, ctx.used, reads, |lane, p, g, s| {
                see(lane, key_after_update(filter, base, c, p, g, s), g)
            });
        }
        let counts = n.map(|lanes| lanes.iter().map(|&x| u64::from(x)).sum());
        (counts, worst.all_finite::<T>())
    }
}

wide_simd_fn! {
    /// Pass 0 without a forecast over a chunk: the histogram of the keys'
    /// top bits; returns whether every gradient is finite.
    fn count_chunk / count_chunk_wide [F: Filter, B: Base, T: Scalar] (
        ctx: &Ctx<'_, F, B, T>,
        c: B::Coef<T>,
        v: &View<'_, T>,
        hist: &mut [u32],
        reads: [bool; 4],
    ) -> bool {
        let c = &c;
        let (filter, base) = (ctx.filter, ctx.base);
        let hist = &mut hist[..BUCKETS];
        let mut worst = LaneWorst::default();
        let mut see = |lane: usize, key: u64, g: T| {
            hist[bucket::<T>(key) as usize & (BUCKETS - 1)] += 1;
            worst.see(lane, g);
        };
        if F::ROOTED {
            keys_rooted(ctx, c, v, |keys, g| {
                for (lane, (&key, &g)) in keys.iter().zip(g).enumerate() {
                    see(lane, key, g);
                }
            });
        } else {
            for_each_entry_read_state(v, ctx.used, reads, |lane, p, g, s| {
                see(lane, key_after_update(filter, base, c, p, g, s), g)
            });
        }
        worst.all_finite::<T>()
    }
}

/// Mark of an entry of pass 1 or the single pass whose key lies in the band.
const IN_BAND: u8 = 1;
/// Mark of an entry of the single pass whose key lies above the band (it
/// was updated, and is logged).
const ABOVE_BAND: u8 = 2;

/// Records the marked entries of one line of pass 1 or the single pass
/// (`marks[j]` has [`IN_BAND`]: entry `lo + j` lies in the band, its state
/// `st` updated). `before` is the line's θ before the step; `after` is
/// its θ now, read only on a base whose step does not split (Lion), where
/// pass 1 left a band entry's new value there ([`update_chunk`]); on the
/// others a band entry kept θ, and its new value is computed here.
/// Kept out of line: most lines hold no such entry, and inlined into each
/// buffer pattern's loop it kept the compiler from inlining the per-entry
/// update, which then ran one entry at a time.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn record_band<F: Filter, B: Base, T: Scalar>(
    ctx: &Ctx<'_, F, B, T>,
    c: &B::Coef<T>,
    lo: usize,
    marks: &[u8],
    before: &[T],
    after: &[T],
    gs: &[T],
    st: [&[T]; 3],
    cands: &mut Vec<Candidate>,
) {
    let (filter, base) = (ctx.filter, ctx.base);
    let z = T::zero();
    for (j, _) in marks.iter().enumerate().filter(|(_, &m)| m & IN_BAND != 0) {
        let s = st.map(|buf| buf.get(j).copied().unwrap_or(z));
        let (p, g) = (before[j], gs[j]);
        let rest = if ctx.scope_all {
            base.decay_only(c, p)
        } else {
            p
        };
        let new = if B::SPLITS {
            base.apply_updated(c, p, g, &s)
        } else {
            after[j]
        };
        cands.push(Candidate {
            i: (lo + j) as u32,
            key: filter.score_updated(base, c, p, g, &s).abs_key(),
            new: new.as_f64(),
            rest: rest.as_f64(),
        });
    }
}

wide_simd_fn! {
    /// The single pass over a chunk (module docs), as pass 1
    /// ([`update_chunk`]) but with the forecast's band, whose counts are
    /// not known: the entries above it are updated and logged in `undo`
    /// (index, old θ), those in it recorded in `cands`, those below it
    /// keep θ (scope `Selected`). After each two cache lines,
    /// [`SingleLine`] logs their updated entries branch-free
    /// ([`UndoLog::log_line`], packed by `vcompressps` on AVX-512), inlined
    /// into the loop (two lines a time halve that bookkeeping against
    /// one). Measured on 40.6M parameters, 2 threads (this pass against AdamW's update pass, 23–25
    /// ms): a push per updated entry from a function kept out of line, 68
    /// ms (the call on most lines spilled the loop's vector registers); a
    /// scalar branch-free log in a closure, 65–80; the packed log, 34–35
    /// (the closure still a baseline function called per line); inlined,
    /// 27–31. Returns false when the chunk recorded more than `cap`
    /// candidates and stopped recording (the block then redoes its
    /// selection).
    fn single_chunk / single_chunk_wide [F: Filter, B: Base, T: Scalar] (
        ctx: &Ctx<'_, F, B, T>,
        c: B::Coef<T>,
        v: &mut View<'_, T>,
        band: Band,
        cap: usize,
        cands: &mut Vec<Candidate>,
        undo: &mut UndoLog<T>,
    ) -> bool {
        let c = &c;
        let (filter, base, used) = (ctx.filter, ctx.base, ctx.used);
        let mut sink = SingleLine {
            ctx,
            c,
            cap,
            cands,
            undo,
            complete: true,
            wide: has_avx512(),
        };
        let mark = |key: u64, p: &mut T, g: T, s: &[T; 3]| {
            let new = base.apply_updated(c, *p, g, s);
            let above = key_gt::<T>(key, band.hi);
            *p = if above { new } else { *p };
            u8::from(band.holds::<T>(key)) | (u8::from(above) << 1)
        };
        if F::ROOTED {
            marked_rooted(ctx, c, v, mark, |lo, line, marks| {
                let k = marks.len();
                let any = marks.iter().fold(0, |a, &m| a | m);
                let (p, g, st) = (&line.p[..k], &line.g[..k], line.state(k, used));
                super::LineSink::line_done(&mut sink, lo, any, marks, &line.old[..k], p, g, st);
            });
            return sink.complete;
        }
        super::for_each_entry_marked::<2, T>(
            v,
            used,
            |_, p, g, s| {
                base.advance(c, *p, g, s);
                let key = filter.score_updated(base, c, *p, g, s).abs_key();
                mark(key, p, g, s)
            },
            &mut sink,
        );
        sink.complete
    }
}

/// The single pass's work after each line ([`single_chunk`]): the band's
/// entries recorded (while the chunk has recorded at most `cap`), the
/// updated ones logged.
struct SingleLine<'a, 'c, F: Filter, B: Base, T: Scalar> {
    ctx: &'a Ctx<'c, F, B, T>,
    c: &'a B::Coef<T>,
    cap: usize,
    cands: &'a mut Vec<Candidate>,
    undo: &'a mut UndoLog<T>,
    complete: bool,
    wide: bool,
}

impl<F: Filter, B: Base, T: Scalar> super::LineSink<T> for SingleLine<'_, '_, F, B, T> {
    #[inline(always)]
    fn line_done(
        &mut self,
        lo: usize,
        any: u8,
        marks: &[u8],
        old: &[T],
        p: &[T],
        g: &[T],
        st: [&[T]; 3],
    ) {
        if any & IN_BAND != 0 && self.complete {
            record_band(self.ctx, self.c, lo, marks, p, p, g, st, self.cands);
            self.complete = self.cands.len() <= self.cap;
        }
        self.undo.log_line(lo, marks, old, self.wide);
    }
}

wide_simd_fn! {
    /// The keys of a chunk's entries from the stored (updated) state, in
    /// index order (the single pass's redone selection).
    fn stored_keys_chunk / stored_keys_chunk_wide [F: Filter, B: Base, T: Scalar] (
        ctx: &Ctx<'_, F, B, T>,
        c: B::Coef<T>,
        v: &View<'_, T>,
        reads: [bool; 4],
        keys: &mut [u64],
    ) {
        let c = &c;
        let (filter, base) = (ctx.filter, ctx.base);
        let mut at = 0;
        if F::ROOTED {
            // The state is the updated one already: no `advance` here.
            super::rooted::for_each_line(
                v,
                ctx.used,
                |p, g, s| base.denom_radicand_updated(c, p, g, s),
                |p, g, s, root| filter.score_updated_rooted(base, c, *p, g, s, root).abs_key(),
                |_, _, line_keys| {
                    keys[at..at + line_keys.len()].copy_from_slice(line_keys);
                    at += line_keys.len();
                },
            );
            return;
        }
        for_each_entry_read_state(v, ctx.used, reads, |_, p, g, s| {
            keys[at] = filter.score_updated(base, c, p, g, s).abs_key();
            at += 1;
        });
    }
}

wide_simd_fn! {
    /// Pass 1 over a chunk, one cache line at a time, in a branch-free loop
    /// the compiler vectorises: advance every entry's state, give the
    /// entries above the band their new value and those below it their rest
    /// value, and mark the entries in the band (which keep θ). After each
    /// line its marks are OR-ed, and the marked entries (a small share)
    /// recorded one by one ([`record_band`]). The scheme before kept a
    /// byte of marks per entry of the chunk (32 KiB, zeroed, filled, then
    /// scanned after the loop); marks per line took pass 1 from 25.5–30.1
    /// to 23.6–28.0 ms (40.6M parameters, 2 threads, Intel Xeon, alternated
    /// three times).
    fn update_chunk / update_chunk_wide [F: Filter, B: Base, T: Scalar] (
        ctx: &Ctx<'_, F, B, T>,
        c: B::Coef<T>,
        v: &mut View<'_, T>,
        band: Band,
        cands: &mut Vec<Candidate>,
    ) {
        let c = &c;
        let (filter, base, used, scope_all) = (ctx.filter, ctx.base, ctx.used, ctx.scope_all);
        let rest = |p: T| if scope_all { base.decay_only(c, p) } else { p };
        // The band's entries are recorded right after their line, from the
        // line's marks (most lines hold none), while it is in L1:
        // θ is still the old value there (entries in the band keep it) and
        // the state the updated one, as the key and the values need.
        let mark = |key: u64, p: &mut T, g: T, s: &[T; 3]| {
            let new = base.apply_updated(c, *p, g, s);
            let hold = band.holds::<T>(key);
            let out = if hold { *p } else { rest(*p) };
            *p = if key_gt::<T>(key, band.hi) { new } else { out };
            u8::from(hold)
        };
        if F::ROOTED {
            marked_rooted(ctx, c, v, mark, |lo, line, marks| {
                if marks.iter().any(|&m| m != 0) {
                    let k = marks.len();
                    let st = line.state(k, used);
                    let p = &line.p[..k];
                    record_band(ctx, c, lo, marks, p, p, &line.g[..k], st, cands);
                }
            });
            return;
        }
        if !B::SPLITS {
            // Lion: the new θ needs the state before its update, so it is
            // computed with the update and left in θ for the band's
            // entries too; `record_band` reads it from there, and
            // `select_candidates` gives every candidate its value.
            super::for_each_entry_marked::<1, T>(
                v,
                used,
                |_, p, g, s| {
                    let old = *p;
                    let new = base.update(c, old, g, s);
                    let key = filter.score_updated(base, c, old, g, s).abs_key();
                    let hold = band.holds::<T>(key);
                    let take = hold | key_gt::<T>(key, band.hi);
                    *p = if take { new } else { rest(old) };
                    u8::from(hold)
                },
                &mut |lo, any: u8, marks: &[u8], old: &[T], ps: &[T], gs: &[T], st: [&[T]; 3]| {
                    if any != 0 {
                        record_band(ctx, c, lo, marks, old, ps, gs, st, cands);
                    }
                },
            );
            return;
        }
        super::for_each_entry_marked::<1, T>(
            v,
            used,
            |_, p, g, s| {
                base.advance(c, *p, g, s);
                let key = filter.score_updated(base, c, *p, g, s).abs_key();
                mark(key, p, g, s)
            },
            &mut |lo, any: u8, marks: &[u8], _: &[T], ps: &[T], gs: &[T], st: [&[T]; 3]| {
                if any != 0 {
                    record_band(ctx, c, lo, marks, ps, ps, gs, st, cands);
                }
            },
        );
    }
}

/// Runs `f(j, θ_i, g_i, state_i)` over a chunk (`j`: i's place in its
/// cache line, below [`LANES`]), reading only (one loop per
/// buffer pattern), one cache line of entries at a time, each preceded by
/// a hint for the line [`prefetch::AHEAD`] entries on in g and in the
/// inputs `reads` names (`[θ, s₀, s₁, s₂]`, from [`key_reads`]), as in the
/// update loops (`optimizer::for_each_entry`). A hint is only a hint: this
/// decides speed, never a result.
#[inline(always)]
fn for_each_entry_read_state<T: Scalar>(
    v: &View<'_, T>,
    used: [bool; 3],
    reads: [bool; 4],
    mut f: impl FnMut(usize, T, T, &[T; 3]),
) {
    let n = v.p.len();
    let z = T::zero();
    let p = &v.p[..n];
    let g = &v.g[..n];
    let [a, b, c] = super::used_state(&v.s, used, n);
    let line = prefetch::line_entries::<T>();
    let hint = prefetch::enabled();
    let [hp, ha, hb, hc] = reads;
    // `prefetch::by_lines!`, as in `for_each_entry`: the hint goes to g and
    // the inputs the key reads.
    macro_rules! by_lines {
        (|$lo:ident, $hi:ident| $body:block) => {
            prefetch::by_lines!(
                n,
                line,
                hint,
                |at| {
                    prefetch::prefetch_at(g, at);
                    if hp {
                        prefetch::prefetch_at(p, at);
                    }
                    if ha {
                        prefetch::prefetch_at(a, at);
                    }
                    if hb {
                        prefetch::prefetch_at(b, at);
                    }
                    if hc {
                        prefetch::prefetch_at(c, at);
                    }
                },
                |$lo, $hi| $body
            )
        };
    }
    match used {
        [true, false, false] => by_lines!(|lo, hi| {
            for (j, ((&p, &g), &a)) in p[lo..hi].iter().zip(&g[lo..hi]).zip(&a[lo..hi]).enumerate()
            {
                f(j, p, g, &[a, z, z]);
            }
        }),
        [true, true, false] => by_lines!(|lo, hi| {
            for (j, ((&p, &g), (&a, &b))) in p[lo..hi]
                .iter()
                .zip(&g[lo..hi])
                .zip(a[lo..hi].iter().zip(&b[lo..hi]))
                .enumerate()
            {
                f(j, p, g, &[a, b, z]);
            }
        }),
        _ => {
            for (i, (&p, &g)) in p.iter().zip(g).enumerate() {
                let s = [
                    if used[0] { a[i] } else { z },
                    if used[1] { b[i] } else { z },
                    if used[2] { c[i] } else { z },
                ];
                f(i % line, p, g, &s);
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

    /// Keys, their k-th largest, and the band each way of locating it
    /// finds: the band holds K, `above` keys lie above it, `within` in it.
    #[test]
    fn bands_contain_the_kth_key_and_count_exactly() {
        let keys: Vec<u64> = (0..5000u64)
            .map(|i| ((i * 7919) % 5000 + 1).pow(2) * 1000)
            .collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        for k in [1u64, 17, 500, 2500, 4999] {
            let kth = sorted[k as usize - 1];
            let check = |band: Band| {
                assert!(band.lo <= kth && kth <= band.hi, "k={k} {band:?}");
                let above = keys.iter().filter(|&&x| x > band.hi).count() as u64;
                let within = keys.iter().filter(|&&x| band.holds::<f64>(x)).count() as u64;
                assert_eq!((above, within), (band.above, band.within), "k={k}");
            };
            let mut hist = vec![0u32; BUCKETS];
            for &x in &keys {
                hist[bucket::<f64>(x) as usize] += 1;
            }
            check(band_from_histogram::<f64>(&hist, k));
            for width in [1u64, 5_000, 400_000] {
                for shift in [0, width / 2, width + 1] {
                    let narrow: [u64; NARROW_PROBES] = probes_below(kth + shift, width);
                    check_probes(&keys, &narrow, k, &check);
                    let wide: [u64; WIDE_PROBES] = probes_below(kth + shift, width);
                    check_probes(&keys, &wide, k, &check);
                    let rooted: [u64; ROOTED_PROBES] = probes_below(kth + shift, width);
                    check_probes(&keys, &rooted, k, &check);
                }
            }
        }
    }

    /// `N` probes `width` apart, ascending, the one at index N/2 equal to
    /// `top` (clamped at zero).
    fn probes_below<const N: usize>(top: u64, width: u64) -> [u64; N] {
        std::array::from_fn(|j| {
            (top + (N as u64 / 2) * width).saturating_sub((N - j) as u64 * width)
        })
    }

    /// The band from `probes` contains K with the right counts (`check`),
    /// or there is none and K lies outside the probes' range.
    fn check_probes<const N: usize>(
        keys: &[u64],
        probes: &[u64; N],
        k: u64,
        check: &impl Fn(Band),
    ) {
        let counts = probes.map(|t| keys.iter().filter(|&&x| x > t).count() as u64);
        match band_from_probes(probes, &counts, k) {
            Some(band) => check(band),
            None => assert!(
                counts[0] < k || counts[N - 1] >= k,
                "k={k}: K inside the probes but no band"
            ),
        }
    }

    /// What pass 0 prefetches: MoFO on AdamW reads m only; the gradient
    /// score on Adam with coupled (L2) decay reads θ through g + wd·θ; the
    /// m/√v score reads m and v.
    #[test]
    fn key_reads_names_what_the_key_depends_on() {
        use crate::optim::base::{Adam, BaseScalars};
        use crate::optim::filter::{Gradient, Momentum, Mv};
        let adamw = Adam::adamw(1e-3);
        let c = adamw.coef::<f32>(3, 1e-3, 1e-2, &BaseScalars::default());
        assert_eq!(
            key_reads(&Momentum::new(0.1), &adamw, &c),
            [false, true, false, false]
        );
        assert_eq!(
            key_reads(&Mv::new(0.1), &adamw, &c),
            [false, true, true, false]
        );
        let coupled = Adam {
            weight_decay: 1e-2,
            ..Adam::default()
        };
        let c = coupled.coef::<f64>(3, 1e-3, 1e-2, &BaseScalars::default());
        assert_eq!(
            key_reads(&Gradient::new(0.1), &coupled, &c),
            [true, false, false, false]
        );
    }

    #[test]
    fn forecast_extrapolates_and_widens_with_its_error() {
        forecast_probes_extrapolate_and_widen::<NARROW_PROBES>();
        forecast_probes_extrapolate_and_widen::<WIDE_PROBES>();
        forecast_probes_extrapolate_and_widen::<ROOTED_PROBES>();
    }

    fn forecast_probes_extrapolate_and_widen<const N: usize>() {
        let mut f = Forecast::default();
        assert!(f.probes::<f32, N>().is_none());
        f.observe::<f32>(999_000_000);
        let p = f.probes::<f32, N>().unwrap();
        assert!(p.windows(2).all(|w| w[0] < w[1]));
        assert!(p[0] < 999_000_000 && 999_000_000 < p[N - 1]);
        f.observe::<f32>(1_001_000_000);
        // K̂ = 1.003e9 (the extrapolation: the three keys lie in one
        // binade, [119, 120)·2²³, where value and key are linear in each
        // other), spread ≥ twice the error 2e6.
        let p = f.probes::<f32, N>().unwrap();
        assert!(p[0] <= 999_000_000 && 1_006_990_000 <= p[N - 1], "{p:?}");
        let mid = (p[0] + p[N - 1]) / 2;
        assert!(mid.abs_diff(1_003_000_000) < 100_000, "{mid}");
        // Clamped at zero.
        let mut g = Forecast::default();
        g.observe::<f32>(0);
        let p = g.probes::<f32, N>().unwrap();
        assert_eq!(p[0], 0);
    }

    /// Thresholds that wobble (a period of four steps on a slow drift, as
    /// with gradients that cycle) are bracketed once the last threshold's
    /// errors are the smaller; a steady drift keeps the extrapolation and
    /// a spread of its small errors.
    #[test]
    fn forecast_takes_the_predictor_with_the_smaller_errors() {
        let bracketed = |f: &Forecast, k: u64| {
            let p = f.probes::<f32, NARROW_PROBES>().unwrap();
            p[0] < k && k <= p[NARROW_PROBES - 1]
        };
        let mut f = Forecast::default();
        let wobble = [0i64, 300_000, -300_000, 100_000];
        let mut hits = 0;
        for t in 0..40u64 {
            let k = (1_000_000_000 + 20_000 * t as i64 + wobble[t as usize % 4]) as u64;
            if t >= 12 {
                hits += u32::from(bracketed(&f, k));
            }
            f.observe::<f32>(k);
        }
        assert_eq!(
            hits, 28,
            "every step bracketed once the rings hold the wobble"
        );
        let (center, err) = f.predicted::<f32>().unwrap();
        assert_eq!(center, f.last.unwrap() as i128, "the last threshold");
        assert!(err < 700_000, "{err}");

        let mut g = Forecast::default();
        for t in 0..40u64 {
            let k = 1_000_000_000 + 50_000 * t;
            if t >= 3 {
                assert!(bracketed(&g, k), "step {t}");
            }
            g.observe::<f32>(k);
        }
        let (center, err) = g.predicted::<f32>().unwrap();
        assert_eq!(
            (center, err),
            (1_000_000_000 + 50_000 * 40, 0),
            "extrapolated, exact"
        );
    }

    /// A threshold that grows linearly in value is forecast exactly from
    /// its third step on, across binades (where its key's steps double),
    /// for f32 and f64 keys alike.
    #[test]
    fn forecast_extrapolates_the_value_across_binades() {
        fn check<T: Scalar>() {
            let mut f = Forecast::default();
            for t in 0..40 {
                // 1, 1.25, …, 10.75: exact, crossing 2, 4 and 8.
                let k = T::of(1.0 + 0.25 * t as f64).abs_key();
                if t >= 2 {
                    let (center, err) = f.predicted::<T>().unwrap();
                    assert_eq!(center, k as i128, "{} step {t}", T::NAME);
                    assert!(t < 3 || err <= k / 4, "{} step {t}: {err}", T::NAME);
                }
                f.observe::<T>(k);
            }
            let (_, err) = f.predicted::<T>().unwrap();
            assert_eq!(err, 0, "{}: eight exact steps", T::NAME);
            // Falling to zero and below: the key is clamped at 0.
            assert_eq!(
                extrapolated::<T>(T::of(0.5).abs_key(), T::of(2.0).abs_key()),
                0
            );
        }
        check::<f32>();
        check::<f64>();
    }

    /// Two probes follow a narrow band, four a wide one, a histogram step
    /// or a crowded one.
    #[test]
    fn forecast_narrows_only_after_a_narrow_band() {
        let mut f = Forecast::default();
        assert!(!f.narrow);
        f.settle(3, 100, 1000);
        assert!(f.narrow, "3 × 100 ≤ 1000 / 2");
        f.settle(1, 501, 1000);
        assert!(!f.narrow, "501 > 1000 / 2");
        f.settle(1, 500, 1000);
        assert!(f.narrow);
        f.settle(0, 0, 1000);
        assert!(!f.narrow, "the histogram located the band");
        f.settle(3, 0, 1000);
        f.note_crowded();
        assert!(!f.narrow && f.crowded == 1);
    }
}
