//! Software prefetch for the optimizer's streaming loops (the gemm
//! kernel's own hints, `super::gemm_avx512`, follow the same switch).
//!
//! The optimizer's passes stream arrays far larger than the caches. On the
//! 2-core development machine (Intel Xeon, a KVM virtual machine) the hardware
//! prefetchers alone kept a core's read-only stream of two f32 arrays at
//! 11.4 GB/s (23.6 GB/s on two cores, huge pages); asking for each cache
//! line [`AHEAD`] entries before it is read brought that to 18.9 (38.9)
//! GB/s, and the 4-read/3-write pattern of an Adam step from 50.7 to
//! 54.3 GB/s (those figures asked for a whole sub-block of 512 entries
//! at a time, the scheme before the one below).
//!
//! Every streaming loop of the optimizer issues one hint per cache line
//! it reads, interleaved with the arithmetic ([`prefetch_at`],
//! [`line_entries`]): before each line of entries, the line [`AHEAD`]
//! entries on in every buffer it reads. Measured in the real loops (40.6M
//! parameters, 2 threads, the same binary with the hints on and off):
//!
//! - the update loops (the bases' update, the fused step's pass 1): one
//!   hint per line made AdamW's pass faster on the Intel Xeon (26.1–26.8 →
//!   23.5–24.3 ms, 2026-12-02, third sitting) where asking for a whole
//!   512-entry sub-block's lines at once had made it slower (30.2 → 32.5
//!   ms: a burst of hints stalls the loop until the line fill buffers
//!   drain); on an AMD EPYC (Zen 1) 39.9–40.2 ms with the hints against
//!   43.1–44.3 without;
//! - the fused MoFO step's read-only pass 0 (g and m): sub-block bursts
//!   took it from 24.7–25.9 to 16.2–17.1 ms on the Xeon, but on Zen 1 made
//!   it slower (22.6 ms with them, 14.3–15.1 without); one hint per line
//!   measured the same as the bursts on the Xeon (15.2–16.3 ms) and
//!   16.6–17.9 ms on Zen 1, against 19.0–19.2 for the same loop without
//!   hints, so pass 0 now uses them too;
//! - the one-array non-finite scan of the gradients (`reduce::all_finite`)
//!   has none: 7.0–7.4 ms without, 8.4–8.8 ms with sub-block hints, and the
//!   same (5.7–5.9 ms) with one per line (Xeon).
//!
//! A prefetch is a hint: it never faults, changes no value and no result,
//! only when a line arrives. On targets other than x86-64 it does nothing;
//! `MOFO_NO_PREFETCH=1` turns it off (to compare on another machine), here
//! and in the gemm kernel.

/// How far ahead of the entry being read a loop asks for its line: 512
/// entries (2 KiB of f32 per array) was the best distance measured among
/// 256 to 2048 (the update loops, Xeon).
pub const AHEAD: usize = 512;

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
        prefetch_ptr(s.as_ptr(), i);
    }
}

/// Asks for the cache line holding entry `i` from `base`, wherever it is,
/// without a bound: for kernels that walk raw pointers (a line past the
/// end is asked for and never read). The address is only computed
/// (wrapping), never dereferenced.
#[inline(always)]
pub fn prefetch_ptr<T>(base: *const T, i: usize) {
    line(base.wrapping_add(i).cast::<u8>())
}

/// Walks the entries `0..n` of a streaming loop one cache line of `line`
/// entries at a time: before each whole line `lo..lo + line`, when `hint`
/// holds, the `hints` block with `at = lo + AHEAD` (the loop's
/// [`prefetch_at`] calls for the buffers it streams); then `body` with
/// `(lo, hi)` bound to the line; at the end `body` once more over the
/// partial line `(n / line · line, n)`, empty when `line` divides `n`.
/// The whole lines have a constant trip count, which the loops in `body`
/// vectorise over. Shared by the update loops (`optimizer::for_each_entry`)
/// and the fused step's read-only pass (`fused::for_each_entry_read_state`).
///
/// ```text
/// by_lines!(n, line, hint, |at| { prefetch_at(g, at); }, |lo, hi| { ... })
/// ```
macro_rules! by_lines {
    (
        $n:expr, $line:expr, $hint:expr,
        |$at:ident| $hints:block,
        |$lo:ident, $hi:ident| $body:block
    ) => {{
        let (n, line, hint): (usize, usize, bool) = ($n, $line, $hint);
        let full = n / line * line;
        let mut $lo = 0;
        while $lo < full {
            let $hi = $lo + line;
            if hint {
                let $at = $lo + $crate::kernels::prefetch::AHEAD;
                $hints
            }
            $body
            $lo = $hi;
        }
        let ($lo, $hi) = (full, n);
        $body
    }};
}
pub(crate) use by_lines;

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn line(at: *const u8) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    // SAFETY: a prefetch reads nothing architecturally and cannot fault,
    // whatever the address.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(at.cast::<i8>()) }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn line(_at: *const u8) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetch_at_changes_nothing_and_accepts_any_index() {
        let xs: Vec<f32> = (0..3000).map(|i| i as f32).collect();
        for i in [0, 1, 15, 16, 2999, 3000, 9000, usize::MAX] {
            prefetch_at(&xs, i);
        }
        prefetch_at(&[7u8; 3], 2);
        prefetch_at::<f64>(&[], 0);
        for i in [0, 2999, 3000, 1 << 40, usize::MAX] {
            prefetch_ptr(xs.as_ptr(), i);
        }
        assert!(xs.iter().enumerate().all(|(i, &x)| x == i as f32));
        assert_eq!(line_entries::<f32>(), 16);
        assert_eq!(line_entries::<f64>(), 8);
    }
}
