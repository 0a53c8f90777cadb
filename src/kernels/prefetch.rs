//! Software prefetch for the optimizer's streaming loops.
//!
//! The optimizer's passes stream arrays far larger than the caches. On the
//! 2-core development machine (Intel Xeon, a KVM virtual machine) the hardware
//! prefetchers alone kept a core's read-only stream of two f32 arrays at
//! 11.4 GB/s (23.6 GB/s on two cores, huge pages); asking for each cache
//! line [`AHEAD`] entries before it is read brought that to 18.9 (38.9)
//! GB/s, and the 4-read/3-write pattern of an Adam step from 50.7 to
//! 54.3 GB/s. Loops walk their chunk in sub-blocks of [`SUB`] entries and,
//! before each, call [`prefetch`] on the next sub-block of every array they
//! read ([`sub_blocks`] gives the ranges).
//!
//! Where it is used is decided by measurement in the real loops (40.6M
//! parameters, 2 threads, the same binary with the hints on and off, three
//! alternations): the fused MoFO step's read-only pass 0, which reads g
//! and m, went from 24.7–25.9 to 16.2–17.1 ms.
//!
//! The update loops (the bases' update, the fused step's pass 1) issue one
//! hint per cache line they read instead, interleaved with the arithmetic
//! ([`prefetch_at`], [`line_entries`]): before each line of entries, the
//! line [`AHEAD`] entries on in every buffer. Asking for a whole
//! sub-block's lines at once had made AdamW's pass slower (30.2 → 32.5 ms):
//! a burst of hints stalls the loop until the line fill buffers drain. One
//! per line made it faster (26.1–26.8 → 23.5–24.3 ms, 2026-12-02, third
//! sitting). Pass 0 measured the same either way (15.2–16.3 ms) and keeps
//! its sub-blocks. The one-array non-finite scan of the gradients
//! (`reduce::all_finite`) has none: 7.0–7.4 ms without, 8.4–8.8 ms with
//! the sub-block hints, and the same (5.7–5.9 ms) with one per line.
//!
//! A prefetch is a hint: it never faults, changes no value and no result,
//! only when a line arrives. On targets other than x86-64 it does nothing;
//! `MOFO_NO_PREFETCH=1` turns it off (to compare on another machine).

/// Entries per sub-block of a streaming loop, and how far ahead its lines
/// are asked for: 512 entries (2 KiB of f32 per array) was the best
/// distance measured among 256 to 4096.
pub const SUB: usize = 512;

/// The prefetch distance in entries (one sub-block).
pub const AHEAD: usize = SUB;

/// Whether `MOFO_NO_PREFETCH` is set (read once per process): the hints
/// are then skipped, to measure what they bring on another machine.
fn disabled() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| std::env::var_os("MOFO_NO_PREFETCH").is_some())
}

/// Bytes of a cache line.
const LINE: usize = 64;

/// Entries of `T` per cache line.
#[inline(always)]
pub const fn line_entries<T>() -> usize {
    LINE / std::mem::size_of::<T>()
}

/// Whether hints are on (`MOFO_NO_PREFETCH` unset); loops that call
/// [`prefetch_at`] read it once, before the loop.
#[inline(always)]
pub fn enabled() -> bool {
    !disabled()
}

/// Asks for the one cache line holding `s[i]` (nothing when `i` is past
/// the end): the per-line hint that loops issue once per line they read.
#[inline(always)]
pub fn prefetch_at<T>(s: &[T], i: usize) {
    if i < s.len() {
        line(s.as_ptr().cast::<u8>(), i * std::mem::size_of::<T>());
    }
}

/// Asks the CPU to bring the cache lines of `s[from..to]` (clamped to `s`)
/// into its caches.
#[inline(always)]
pub fn prefetch<T>(s: &[T], from: usize, to: usize) {
    if disabled() {
        return;
    }
    let to = to.min(s.len());
    if from >= to {
        return;
    }
    let size = std::mem::size_of::<T>();
    let (lo, hi) = (from * size, to * size);
    let base = s.as_ptr().cast::<u8>();
    let mut off = lo;
    while off < hi {
        line(base, off);
        off += LINE;
    }
    // The last line, when `lo` is not line-aligned and the steps skipped it.
    line(base, hi - 1);
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn line(base: *const u8, off: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    // SAFETY: `base + off` lies inside the slice `prefetch` was given
    // (`off < len · size_of::<T>()`), so the pointer arithmetic stays in one
    // allocation. A prefetch reads nothing architecturally and cannot fault.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(base.add(off).cast::<i8>()) }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn line(_base: *const u8, _off: usize) {}

/// The sub-blocks `(start, end)` of `0..n`, [`SUB`] entries each (the last
/// one shorter).
#[inline(always)]
pub fn sub_blocks(n: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..n.div_ceil(SUB)).map(move |b| (b * SUB, ((b + 1) * SUB).min(n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_blocks_cover_the_range_once_in_order() {
        for n in [0usize, 1, SUB - 1, SUB, SUB + 1, 5 * SUB + 17] {
            let blocks: Vec<_> = sub_blocks(n).collect();
            let mut next = 0;
            for &(s, e) in &blocks {
                assert_eq!(s, next);
                assert!(e > s && e - s <= SUB);
                next = e;
            }
            assert_eq!(next, n);
        }
    }

    #[test]
    fn prefetch_changes_nothing_and_accepts_any_range() {
        let xs: Vec<f32> = (0..3000).map(|i| i as f32).collect();
        for (from, to) in [
            (0, 0),
            (0, 3000),
            (2999, 5000),
            (4000, 9000),
            (17, 18),
            (5, 2),
        ] {
            prefetch(&xs, from, to);
        }
        let bytes = [7u8; 3];
        prefetch(&bytes, 1, 3);
        prefetch::<f64>(&[], 0, 10);
        assert!(xs.iter().enumerate().all(|(i, &x)| x == i as f32));
    }
}
