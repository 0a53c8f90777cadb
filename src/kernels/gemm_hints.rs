//! The cache-line hints of [`super::gemm_avx512`], spread over a tile's
//! loop over k.
//!
//! While the tiles of one block of rows (the tile's height) run, each asks for its
//! share of the next block's lines of `A` and for the lines of the next
//! block's tile of `C`. Asked for all at once at the start of a tile, the
//! ~50–70 lines of a tile of S's shapes outnumber the core's line-fill
//! buffers (16 on recent Intel cores): the prefetch instructions then wait
//! for free buffers, and the tile's first steps with them. [`Hints`]
//! instead issues one hint every `⌊kc / lines⌋` steps of the tile's loop
//! over k (and any left over after the loop), so that the misses overlap
//! the tile's multiply-adds.
//!
//! A span of `len ≥ 1` contiguous values from `p` gets one hint per line's
//! worth of values, `p + 16·j` for `16·j < len − 1`, and one for its last
//! value `p + len − 1` (whose line the steps miss when `p` is not
//! line-aligned): `⌈(len − 1)/16⌉ + 1` hints.

use std::arch::{
    asm,
    x86_64::{_mm_prefetch, _MM_HINT_T0},
};

use super::prefetch::line_entries;

/// `spans` spans of `len` contiguous f32 values, the `s`-th starting at
/// `p + s·stride`, walked one line at a time.
#[derive(Clone, Copy)]
pub struct LineWalk {
    p: *const f32,
    off: usize,
    len: usize,
    stride: isize,
    spans: usize,
}

impl LineWalk {
    /// No lines.
    pub const EMPTY: Self = Self {
        p: std::ptr::null(),
        off: 0,
        len: 1,
        stride: 0,
        spans: 0,
    };

    /// `spans` spans of `len` values from `p`, `stride` values apart
    /// (nothing when `len` or `spans` is zero).
    pub fn new(p: *const f32, len: usize, stride: isize, spans: usize) -> Self {
        if len == 0 || spans == 0 {
            return Self::EMPTY;
        }
        Self {
            p,
            off: 0,
            len,
            stride,
            spans,
        }
    }

    /// Part `part` of `parts` of the lines of a `rows × kc` block of A at
    /// strides `(rsa, csa)`: every `parts`-th row of a row-major A, or every
    /// `parts`-th column of a transposed one; other strides get no hint.
    pub fn a_part(
        a: *const f32,
        rows: usize,
        kc: usize,
        rsa: isize,
        csa: isize,
        part: usize,
        parts: usize,
    ) -> Self {
        let every = |count: usize| count.saturating_sub(part).div_ceil(parts);
        if csa == 1 {
            let base = a.wrapping_offset(part as isize * rsa);
            Self::new(base, kc, parts as isize * rsa, every(rows))
        } else if rsa == 1 {
            let base = a.wrapping_offset(part as isize * csa);
            Self::new(base, rows, parts as isize * csa, every(kc))
        } else {
            Self::EMPTY
        }
    }

    /// How many hints the walk issues.
    pub fn lines(&self) -> usize {
        self.spans * ((self.len - 1).div_ceil(line_entries::<f32>()) + 1)
    }

    /// The address of the next hint, if any.
    #[inline(always)]
    pub fn next_line(&mut self) -> Option<*const f32> {
        if self.spans == 0 {
            return None;
        }
        let last = self.len - 1;
        let at = self.p.wrapping_add(self.off.min(last));
        if self.off >= last {
            self.spans -= 1;
            self.p = self.p.wrapping_offset(self.stride);
            self.off = 0;
        } else {
            self.off += line_entries::<f32>();
        }
        Some(at)
    }
}

/// The hints of one tile: lines to read (PREFETCHT0), then lines to write
/// (PREFETCHW, for the exclusive state a store needs), one every `every` steps of the tile's loop.
pub struct Hints {
    read: LineWalk,
    write: LineWalk,
    /// Steps of k between two hints (`usize::MAX`: none in the loop).
    pub every: usize,
}

impl Hints {
    /// No hints.
    pub const NONE: Self = Self {
        read: LineWalk::EMPTY,
        write: LineWalk::EMPTY,
        every: usize::MAX,
    };

    /// `read` and `write` spread evenly over a loop of `kc` steps.
    pub fn spread(read: LineWalk, write: LineWalk, kc: usize) -> Self {
        let lines = read.lines() + write.lines();
        let every = kc.checked_div(lines).map_or(usize::MAX, |e| e.max(1));
        Self { read, write, every }
    }

    /// Issues the next hint, if any.
    ///
    /// # Safety
    /// The CPU must have PREFETCHW (every x86-64 CPU with AVX-512 has it).
    #[inline(always)]
    pub unsafe fn issue_one(&mut self) {
        if let Some(p) = self.read.next_line() {
            // SAFETY: a prefetch never faults and changes no memory,
            // whatever the address; `p` is never dereferenced.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p as *const i8) };
        } else if let Some(p) = self.write.next_line() {
            // SAFETY: PREFETCHW (present: the caller's contract) never
            // faults and changes no memory or flags, whatever the address.
            // Written as assembly because `_MM_HINT_ET0` compiles to a
            // plain PREFETCHT0 unless the `prfchw` target feature is
            // enabled, which stable Rust does not allow.
            unsafe {
                asm!("prefetchw [{0}]", in(reg) p, options(nostack, preserves_flags, readonly))
            };
        }
    }

    /// Issues every hint not yet issued.
    ///
    /// # Safety
    /// As [`Hints::issue_one`].
    #[inline(always)]
    pub unsafe fn issue_rest(&mut self) {
        while self.read.spans + self.write.spans > 0 {
            // SAFETY: the caller's contract.
            unsafe { self.issue_one() };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(mut w: LineWalk, base: *const f32) -> Vec<isize> {
        let n = w.lines();
        let mut out = Vec::new();
        while let Some(p) = w.next_line() {
            // SAFETY: test only: both pointers come from the same base.
            out.push(unsafe { p.offset_from(base) });
        }
        assert_eq!(out.len(), n, "lines() counts every hint");
        out
    }

    #[test]
    fn spans_get_one_hint_per_line_and_one_for_the_last_value() {
        let buf = vec![0f32; 1024];
        let b = buf.as_ptr();
        assert_eq!(offsets(LineWalk::new(b, 1, 100, 2), b), [0, 100]);
        assert_eq!(offsets(LineWalk::new(b, 16, 0, 1), b), [0, 15]);
        assert_eq!(offsets(LineWalk::new(b, 17, 0, 1), b), [0, 16]);
        assert_eq!(
            offsets(LineWalk::new(b, 40, 50, 2), b),
            [0, 16, 32, 39, 50, 66, 82, 89]
        );
        assert_eq!(offsets(LineWalk::new(b, 0, 1, 3), b), Vec::<isize>::new());
    }

    #[test]
    fn a_parts_cover_the_block_between_them() {
        let buf = vec![0f32; 4096];
        let b = buf.as_ptr();
        // Row-major A, 5 rows of 20 at row stride 64, in 2 parts: rows 0, 2, 4
        // and rows 1, 3.
        let p0 = offsets(LineWalk::a_part(b, 5, 20, 64, 1, 0, 2), b);
        let p1 = offsets(LineWalk::a_part(b, 5, 20, 64, 1, 1, 2), b);
        assert_eq!(p0, [0, 16, 19, 128, 144, 147, 256, 272, 275]);
        assert_eq!(p1, [64, 80, 83, 192, 208, 211]);
        // Transposed A (rsa = 1): 3 columns of 12 rows at column stride 100.
        let t = offsets(LineWalk::a_part(b, 12, 3, 1, 100, 1, 2), b);
        assert_eq!(t, [100, 111]);
        // More parts than rows: nothing for the extra parts.
        assert_eq!(
            offsets(LineWalk::a_part(b, 2, 8, 64, 1, 3, 4), b),
            Vec::<isize>::new()
        );
        // Other strides: no hints.
        assert_eq!(
            offsets(LineWalk::a_part(b, 4, 4, 8, 2, 0, 1), b),
            Vec::<isize>::new()
        );
    }

    #[test]
    fn spread_fits_the_hints_into_the_loop() {
        let buf = vec![0f32; 64];
        let b = buf.as_ptr();
        let read = LineWalk::new(b, 16, 16, 2); // 4 hints
        let write = LineWalk::new(b, 1, 1, 4); // 4 hints
        assert_eq!(Hints::spread(read, write, 256).every, 32);
        assert_eq!(Hints::spread(read, write, 5).every, 1);
        assert_eq!(
            Hints::spread(LineWalk::EMPTY, LineWalk::EMPTY, 256).every,
            usize::MAX
        );
        let mut h = Hints::spread(read, write, 8);
        // SAFETY: hints only, on pointers into `buf`; every x86-64 CPU that
        // runs this crate's AVX-512 gemm has PREFETCHW, and CPUs without it
        // decode its opcode (0F 0D) as a no-op.
        unsafe { h.issue_rest() };
        assert_eq!(h.read.spans + h.write.spans, 0);
    }
}
