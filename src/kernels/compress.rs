//! Compaction of a line's marked entries: given a line of at most 32
//! values `x` (two cache lines of f32) and a byte of marks per entry, write
//!
//! ```text
//! out[0..c] = [x_j : marks_j & bit ≠ 0]   (in index order),  c = popcount
//! ```
//!
//! and return the line's bit mask (bit j set ⇔ entry j kept) and `c`.
//! The single pass of the fused MoFO step logs the old θ of the entries it
//! updated this way (`optim::optimizer::fused`), on about one entry in ten
//! spread over most lines. As a scalar branch-free loop (a store and an
//! add per entry) that log took the pass from 24 to 65–80 ms on 40.6M
//! parameters; AVX-512's `vcompressps` / `vcompresspd` packs a line in a
//! few instructions, one cache line (one 512-bit vector) at a time.
//! [`compress_marked_reference`] is the plain version the tests compare it
//! against and the fallback on other CPUs.

use crate::scalar::Scalar;

/// Packs the entries of `src` whose mark has `bit` into the front of `dst`
/// (see the module docs) and returns `(mask, count)`. `marks`, `src` and
/// `dst` have the same length, at most 32, packed one cache line at a time
/// (each part's values go where the previous parts' count ends); `wide`
/// says that the CPU has
/// AVX-512 ([`super::simd::has_avx512`]), which the caller reads once.
/// Entries of `dst` past `count` are left as they were or overwritten,
/// as the path takes them.
#[inline(always)]
pub(crate) fn compress_marked<T: Scalar>(
    marks: &[u8],
    bit: u8,
    src: &[T],
    dst: &mut [T],
    wide: bool,
) -> (u32, usize) {
    let n = src.len();
    debug_assert!(n == marks.len() && n == dst.len() && n <= 32);
    let part = crate::kernels::prefetch::line_entries::<T>();
    let (mut mask, mut count) = (0u32, 0usize);
    let mut j = 0;
    while j < n {
        let end = (j + part).min(n);
        let (m, c) = compress_line(
            &marks[j..end],
            bit,
            &src[j..end],
            &mut dst[count..count + end - j],
            wide,
        );
        mask |= m << j;
        count += c;
        j = end;
    }
    (mask, count)
}

/// [`compress_marked`] on at most one cache line (16 f32 or 8 f64 values:
/// one 512-bit vector).
#[inline(always)]
fn compress_line<T: Scalar>(
    marks: &[u8],
    bit: u8,
    src: &[T],
    dst: &mut [T],
    wide: bool,
) -> (u32, usize) {
    let n = src.len();
    #[cfg(target_arch = "x86_64")]
    if wide && n == marks.len() && n == dst.len() {
        use std::any::TypeId;
        if TypeId::of::<T>() == TypeId::of::<f32>() && n <= 16 {
            // SAFETY: T is f32 (same TypeId), so the slices are slices of
            // f32 of the same length; the CPU has AVX-512 F/BW/VL and
            // POPCNT (`wide`: `has_avx512` checks them all).
            return unsafe {
                wide512::compress_f32(
                    marks,
                    bit,
                    &*(src as *const [T] as *const [f32]),
                    &mut *(dst as *mut [T] as *mut [f32]),
                )
            };
        }
        if TypeId::of::<T>() == TypeId::of::<f64>() && n <= 8 {
            // SAFETY: as above, T is f64.
            return unsafe {
                wide512::compress_f64(
                    marks,
                    bit,
                    &*(src as *const [T] as *const [f64]),
                    &mut *(dst as *mut [T] as *mut [f64]),
                )
            };
        }
    }
    compress_marked_reference(marks, bit, src, dst)
}

/// The plain version of [`compress_marked`]: one entry at a time, without
/// a branch on the marks (entry j is written at the cursor, which then
/// advances by its mark bit; the cursor never passes j).
pub(crate) fn compress_marked_reference<T: Scalar>(
    marks: &[u8],
    bit: u8,
    src: &[T],
    dst: &mut [T],
) -> (u32, usize) {
    let mut mask = 0u32;
    let mut w = 0usize;
    for (j, (&m, &x)) in marks.iter().zip(src).enumerate().take(32) {
        let keep = u32::from(m & bit != 0);
        if let Some(d) = dst.get_mut(w) {
            *d = x;
        }
        w += keep as usize;
        mask |= keep << j;
    }
    (mask, w)
}

#[cfg(target_arch = "x86_64")]
mod wide512 {
    use std::arch::x86_64::*;

    /// [`super::compress_marked`] for f32 lines of at most 16 entries.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,popcnt")]
    pub(super) fn compress_f32(
        marks: &[u8],
        bit: u8,
        src: &[f32],
        dst: &mut [f32],
    ) -> (u32, usize) {
        let n = src.len().min(marks.len()).min(dst.len()).min(16);
        let live = ((1u32 << n) - 1) as __mmask16;
        // SAFETY: masked loads and stores touch only the lanes of their
        // mask, which lie within the slices: `live` covers the first n ≤
        // len lanes, the store's mask the first `count` ≤ n.
        unsafe {
            let m = _mm_maskz_loadu_epi8(live, marks.as_ptr().cast::<i8>());
            let sel = _mm_mask_test_epi8_mask(live, m, _mm_set1_epi8(bit as i8));
            let x = _mm512_maskz_loadu_ps(live, src.as_ptr());
            let packed = _mm512_maskz_compress_ps(sel, x);
            let count = sel.count_ones();
            let out = ((1u32 << count) - 1) as __mmask16;
            _mm512_mask_storeu_ps(dst.as_mut_ptr(), out, packed);
            (u32::from(sel), count as usize)
        }
    }

    /// [`super::compress_marked`] for f64 lines of at most 8 entries.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,popcnt")]
    pub(super) fn compress_f64(
        marks: &[u8],
        bit: u8,
        src: &[f64],
        dst: &mut [f64],
    ) -> (u32, usize) {
        let n = src.len().min(marks.len()).min(dst.len()).min(8);
        let live = ((1u32 << n) - 1) as __mmask8;
        // SAFETY: as in `compress_f32`, every access is masked to lanes
        // within the slices.
        unsafe {
            let m = _mm_maskz_loadu_epi8(__mmask16::from(live), marks.as_ptr().cast::<i8>());
            let sel = _mm_mask_test_epi8_mask(__mmask16::from(live), m, _mm_set1_epi8(bit as i8))
                as __mmask8;
            let x = _mm512_maskz_loadu_pd(live, src.as_ptr());
            let packed = _mm512_maskz_compress_pd(sel, x);
            let count = sel.count_ones();
            let out = ((1u32 << count) - 1) as __mmask8;
            _mm512_mask_storeu_pd(dst.as_mut_ptr(), out, packed);
            (u32::from(sel), count as usize)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::simd::has_avx512;
    use rand::{Rng, SeedableRng};

    fn check<T: Scalar>(max: usize) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for trial in 0..2000 {
            let n = 1 + trial % max;
            let marks: Vec<u8> = (0..n).map(|_| rng.random_range(0..4u8)).collect();
            let src: Vec<T> = (0..n).map(|_| T::of(rng.random_range(-1.0..1.0))).collect();
            let mut want = vec![T::zero(); n];
            let mut got = vec![T::zero(); n];
            let r = compress_marked_reference(&marks, 2, &src, &mut want);
            let w = compress_marked(&marks, 2, &src, &mut got, has_avx512());
            assert_eq!(r, w, "mask and count, n = {n}");
            let kept: Vec<T> = marks
                .iter()
                .zip(&src)
                .filter(|(&m, _)| m & 2 != 0)
                .map(|(_, &x)| x)
                .collect();
            assert_eq!(r.1, kept.len());
            assert_eq!(&want[..r.1], &kept[..]);
            assert_eq!(&got[..w.1], &kept[..]);
        }
    }

    #[test]
    fn wide_compaction_matches_the_reference_f32() {
        check::<f32>(32);
    }

    #[test]
    fn wide_compaction_matches_the_reference_f64() {
        check::<f64>(32);
    }
}
