//! Transparent huge pages for the buffers an optimizer step streams.
//!
//! An Adam step reads θ, g, m, v and writes θ, m, v: seven streams of tens
//! or hundreds of megabytes each. On 4 KiB pages every stream crosses a page
//! boundary every 1024 f32 entries, where the hardware prefetchers stop and
//! a TLB miss may walk the page table; on 2 MiB pages it crosses one every
//! 524 288 entries. Measured on the 2-core development machine (Intel Xeon, KVM,
//! Linux 6.18, THP mode `madvise`), the 4-read/3-write pattern of
//! `bench::bandwidth` over 40.6M entries: 42.4 GB/s on 4 KiB pages,
//! 50.9 GB/s with all four arrays on 2 MiB pages, and no gain at all when
//! only θ, m and v were (the gradient's stream alone kept it at 42.9).
//!
//! Linux backs an anonymous mapping with 2 MiB pages when the system's THP
//! mode is `always`, or `madvise` and the range was advised with
//! `MADV_HUGEPAGE` ([`advise_huge_pages`]; it takes effect for pages touched
//! afterwards). Pages already touched are converted by `MADV_COLLAPSE`
//! (Linux 6.1 and later; [`collapse_huge_pages`]), which copies them into
//! huge pages once. Only the whole, 2 MiB-aligned pages inside a buffer are
//! advised: the advice covers memory the buffer owns and nothing else.
//! Neither call changes the buffer's contents; both are hints the kernel may
//! refuse (mode `never`, no free huge page, an older kernel), in which case
//! the buffer stays on small pages and everything works as before, only
//! slower. On targets other than Linux they do nothing.

/// The size of a transparent huge page (x86-64 and aarch64 Linux).
pub const HUGE_PAGE: usize = 2 << 20;

/// The whole 2 MiB-aligned pages inside `[addr, addr + len)`, as (start,
/// length); `None` when it holds none.
pub fn aligned_interior(addr: usize, len: usize) -> Option<(usize, usize)> {
    let start = addr.checked_add(HUGE_PAGE - 1)? & !(HUGE_PAGE - 1);
    let end = addr.checked_add(len)? & !(HUGE_PAGE - 1);
    (end > start).then(|| (start, end - start))
}

#[cfg(target_os = "linux")]
mod sys {
    /// `MADV_HUGEPAGE` (asm-generic/mman-common.h).
    pub const MADV_HUGEPAGE: i32 = 14;
    /// `MADV_COLLAPSE` (asm-generic/mman-common.h, Linux 6.1).
    pub const MADV_COLLAPSE: i32 = 25;

    extern "C" {
        fn madvise(addr: *mut core::ffi::c_void, len: usize, advice: i32) -> i32;
    }

    /// `madvise(start, len, advice) == 0`.
    pub fn advise(start: usize, len: usize, advice: i32) -> bool {
        // SAFETY: `start..start + len` is a range of whole 2 MiB pages inside
        // one live allocation (`aligned_interior` of a borrowed slice), so it
        // is page-aligned and mapped. MADV_HUGEPAGE only changes how later
        // faults are served and MADV_COLLAPSE copies the pages into huge
        // pages under the page-table lock: neither changes the contents, so
        // the slice's owner sees the same values, and both are safe while
        // other threads read or write the range.
        unsafe { madvise(start as *mut core::ffi::c_void, len, advice) == 0 }
    }
}

/// Asks the kernel to serve `buf`'s whole 2 MiB-aligned pages as huge pages
/// when they are first touched (`MADV_HUGEPAGE`). Returns the number of
/// bytes advised: 0 when `buf` holds no whole aligned huge page, when the
/// kernel refused, or on targets other than Linux.
pub fn advise_huge_pages<T>(buf: &[T]) -> usize {
    advise_range(buf.as_ptr() as usize, std::mem::size_of_val(buf), false)
}

/// [`advise_huge_pages`], then `MADV_COLLAPSE` the range: pages already
/// touched are copied into huge pages now (a one-time copy of the range).
/// Returns the number of bytes collapsed (0 where the kernel refused, for
/// instance before Linux 6.1 or with THP mode `never`).
pub fn collapse_huge_pages<T>(buf: &[T]) -> usize {
    advise_range(buf.as_ptr() as usize, std::mem::size_of_val(buf), true)
}

/// [`collapse_huge_pages`] over runs of buffers that lie next to each
/// other: the buffers are sorted by address and neighbours less than one
/// huge page apart are joined into one range, so the huge pages that
/// straddle two buffers (which neither holds whole) are collapsed too.
/// Buffers allocated one after another usually sit next to each other, on
/// the heap or in adjacent maps. Advice changes no contents, only how the
/// range is mapped, and the few bytes between joined buffers are this
/// process's memory too. Returns the bytes of the runs the kernel collapsed
/// without an error (a run with a region nothing has touched yet reports
/// one, though its other regions are collapsed).
pub fn collapse_runs<T>(bufs: &[&[T]]) -> usize {
    let ranges = bufs
        .iter()
        .filter(|b| !b.is_empty())
        .map(|b| {
            let start = b.as_ptr() as usize;
            (start, start + std::mem::size_of_val(*b))
        })
        .collect();
    join_runs(ranges)
        .iter()
        .map(|&(start, end)| advise_range(start, end - start, true))
        .sum()
}

/// Address ranges `[start, end)` sorted and joined where less than one huge
/// page lies between neighbours (overlapping ones too).
fn join_runs(mut ranges: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    ranges.sort_unstable();
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (start, end) in ranges {
        match runs.last_mut() {
            Some(run) if start <= run.1.saturating_add(HUGE_PAGE) => run.1 = run.1.max(end),
            _ => runs.push((start, end)),
        }
    }
    runs
}

/// `MADV_HUGEPAGE`, then with `collapse` also `MADV_COLLAPSE`, on the whole
/// aligned huge pages inside `[addr, addr + len)`; the bytes advised, 0 when
/// there are none or the kernel refused.
#[cfg(target_os = "linux")]
fn advise_range(addr: usize, len: usize, collapse: bool) -> usize {
    let Some((start, len)) = aligned_interior(addr, len) else {
        return 0;
    };
    let ok = sys::advise(start, len, sys::MADV_HUGEPAGE)
        && (!collapse || sys::advise(start, len, sys::MADV_COLLAPSE));
    if ok {
        len
    } else {
        0
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_range(_addr: usize, _len: usize, _collapse: bool) -> usize {
    0
}

/// A vector of `n` zeros whose whole 2 MiB pages are advised as huge pages
/// before anything touches them (a large zeroed allocation is fresh mapped
/// memory, so its first touch is served from huge pages where the kernel
/// has them).
pub fn huge_zeroed_vec<T: num_traits::Zero + Clone>(n: usize) -> Vec<T> {
    let v = vec![T::zero(); n];
    advise_huge_pages(&v);
    v
}

/// Bytes of this process's anonymous memory on huge pages
/// (`AnonHugePages` of `/proc/self/smaps_rollup`), where the kernel says.
pub fn process_huge_page_bytes() -> Option<u64> {
    crate::io::proc_kb::read_kb("/proc/self/smaps_rollup", "AnonHugePages").map(|kib| kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_closer_than_a_huge_page_are_joined() {
        let h = HUGE_PAGE;
        assert_eq!(join_runs(vec![]), vec![]);
        // Out of order, touching, overlapping, a gap under a huge page, and
        // one far away.
        let runs = join_runs(vec![
            (10 * h, 11 * h),
            (0, 100),
            (100, 5000),
            (4000, 6000),
            (6000 + h, 2 * h + 7000),
        ]);
        assert_eq!(runs, vec![(0, 2 * h + 7000), (10 * h, 11 * h)]);
        // A gap of more than a huge page keeps two runs.
        assert_eq!(join_runs(vec![(0, 10), (h + 11, h + 20)]).len(), 2);
    }

    #[test]
    fn collapsing_runs_keeps_every_value() {
        let a: Vec<f32> = (0..3_000_000).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..1_000_000).map(|i| -(i as f32)).collect();
        collapse_runs(&[a.as_slice(), b.as_slice(), &[]]);
        assert!(a.iter().enumerate().all(|(i, &x)| x == i as f32));
        assert!(b.iter().enumerate().all(|(i, &x)| x == -(i as f32)));
    }

    #[test]
    fn the_interior_is_whole_aligned_pages_inside_the_range() {
        let h = HUGE_PAGE;
        assert_eq!(aligned_interior(0, h), Some((0, h)));
        assert_eq!(aligned_interior(1, h), None);
        assert_eq!(aligned_interior(1, 2 * h), Some((h, h)));
        assert_eq!(aligned_interior(1, 2 * h - 2), None);
        assert_eq!(aligned_interior(1, 3 * h), Some((h, 2 * h)));
        assert_eq!(aligned_interior(h - 4096, 3 * h + 8192), Some((h, 3 * h)));
        assert_eq!(aligned_interior(4096, h - 4096), None);
        assert_eq!(aligned_interior(usize::MAX - 10, 100), None);
        // Every result lies inside the range and is aligned.
        for (addr, len) in [(12_345usize, 9 * h + 7), (h, 5 * h), (3 * h + 1, h)] {
            if let Some((s, l)) = aligned_interior(addr, len) {
                assert!(s >= addr && s + l <= addr + len);
                assert_eq!((s % h, l % h), (0, 0));
            }
        }
    }

    #[test]
    fn advice_keeps_the_contents() {
        let n = 3 * HUGE_PAGE / 4 + 1000;
        let z: Vec<f32> = huge_zeroed_vec(n);
        assert_eq!(z.len(), n);
        assert!(z.iter().all(|&x| x == 0.0));
        let v: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let advised = collapse_huge_pages(&v);
        assert!(advised <= n * 4 && advised.is_multiple_of(HUGE_PAGE));
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as f32));
        // Too small to hold a whole huge page: nothing is advised.
        assert_eq!(advise_huge_pages(&[1.0f32; 16]), 0);
    }

    #[test]
    fn the_huge_page_figure_parses_where_linux_reports_it() {
        if std::path::Path::new("/proc/self/smaps_rollup").exists() {
            assert!(process_huge_page_bytes().is_some());
        }
    }
}
