//! f32 `C ← α·A·B + β·C` on AVX-512, bit for bit equal to
//! `matrixmultiply::sgemm`, for a row-contiguous `C`.
//!
//! `matrixmultiply` packs both operands on every call (16×16 tiles), which
//! took 14% of a training step of S on one thread, and its kernel loads one
//! vector of B per 16 broadcasts of A. Here:
//!
//! - an MR×NR register tile, one of two ([`Tile`], chosen per CPU by
//!   timing in [`super::gemm_choice`]): 12×32 (24 accumulators, two
//!   vectors of B and twelve broadcasts of A per step of k: 24 FMAs for 14
//!   loads) or 16×16 (16 accumulators, one vector of B and sixteen
//!   broadcasts: 16 FMAs for 17 loads, but a panel of B of 16 KiB per block
//!   of k against 32). On the Emerald Rapids Xeon (48 KiB L1D, two 512-bit
//!   FMA pipes) the 12×32 tile trained S and M 10–30% faster than
//!   `matrixmultiply`; on a Zen 4 EPYC (32 KiB L1D, 512-bit FMAs split
//!   over two 256-bit pipes) it was 13–15% slower than `matrixmultiply` on
//!   M, and the 16×16 tile 8–10% faster (docs/performance-log.md);
//! - `A` feeding three or more panels is copied, MR rows by one block of k
//!   at a time, so that a step of k reads the MR entries at constant
//!   offsets from one pointer (`vfmadd231ps [p + 4i]{1to16}` in the 16×16
//!   tile, `vbroadcastss [p + 4i]` in the 12×32 one): a transposed
//!   `A` (`rsa = 1`) by masked loads, row-major activations (`csa = 1`)
//!   through 16×16 transposes in registers. With fewer panels (B at most
//!   [`A_IN_PLACE_MAX_COLUMNS`] wide) `A` is read in place: by columns
//!   (`rsa = 1`) from one pointer, by rows (`csa = 1`) through a chain of
//!   additions of `rsa` (too few registers to hold the rows' addresses).
//!   With the 16×16 tile that is 16 dependent additions per 16 FMAs, half
//!   the FMA rate of a Zen 5 core (two 512-bit FMAs per cycle; a Zen 4 core
//!   does one, so there it does not show); with the 12×32 tile twelve per
//!   24 FMAs, which two pipes need as long for. `super::gemm_choice` times
//!   the two tiles on such a product and gives these narrow products the
//!   faster (the 12×32 tile on the Zen 5);
//! - the 12×32 tile broadcasts each of A's entries once into a scratch
//!   register and feeds it to its two FMAs (inline assembly: 14 loads per
//!   24 FMAs). Left to LLVM, a step's twelve broadcasts were loaded ahead
//!   into twelve registers and, with the 24 accumulators, spilled; each FMA
//!   broadcasting from memory itself (26 loads per 24 FMAs, until
//!   2026-12-07) ran M's training step 8% slower on a Zen 5 EPYC;
//! - `B` is packed once per block of k as panels of NR columns (a gather
//!   for a transposed `B`, i.e. the `Wᵀ` of a linear layer);
//! - while the tiles of one block of MR rows run, each asks for its
//!   share of the next block's lines of `A` (PREFETCHT0) and for the lines
//!   of the next block's tile of `C` (PREFETCHW: the exclusive state a
//!   store needs): activations arrive cold from the layer before, and a
//!   fresh output buffer is otherwise fetched line by line by the tile's
//!   stores. The hints are spread over the tile's loop over k, one every
//!   `⌊kc / lines⌋` steps ([`super::gemm_hints`]), not issued in a burst
//!   before it. On the Xeon of 2026-12-03, products of S's shapes over 16
//!   different buffers ran 5–10% faster with hints issued in a burst
//!   (forward and input gradient; the weight gradient, whose A is copied
//!   anyway, unchanged); spreading them (eleventh sitting) made forward
//!   products over 16 buffers another 0–12% faster, 10–30% faster than
//!   without hints, and no slower on one hot buffer (docs/performance-log.md).
//!   `MOFO_NO_PREFETCH=1` turns them off, as for the optimizer's loops.
//!   Every x86-64 CPU with AVX-512 has PREFETCHW.
//!
//! - with a [`Skip`] other than `None` (attention's diagonal blocks), the
//!   register tiles wholly above C's diagonal are left out, or each row
//!   tile's sums start at its first row's diagonal or stop after its last
//!   row's last nonzero term of A: the terms left out are exact zeros at
//!   the head or the tail of a sum, so no computed entry changes.
//!
//! Each entry is computed exactly as `matrixmultiply` computes it, so
//! swapping the kernel changes no result anywhere:
//!
//! ```text
//! for each block K_b of k = 256 (in order), β_b = β for the first block, 1 after:
//!   s      = Σ_{p ∈ K_b} a_ip·b_pj        (one FMA per p, in order, from 0)
//!   C_ij ← fma(α, s, β_b·C_ij)            (entry inside a full 16×16 tile of C)
//!   C_ij ← β_b·C_ij + α·s                 (entry of a partial edge tile:
//!                                           i ≥ ⌊m/16⌋·16 or j ≥ ⌊n/16⌋·16)
//!   with β_b = 0: C_ij ← α·s, C not read.
//! ```
//!
//! (`matrixmultiply` finishes its edge tiles through a buffer, in two
//! roundings; the two forms differ only when α ≠ 1.) The tests compare it
//! bitwise against `matrixmultiply` for every edge size, transposed and
//! strided operands, α and β.

#![allow(clippy::too_many_arguments)]

use std::arch::asm;
use std::arch::x86_64::*;
use std::cell::RefCell;

pub use super::gemm::{Skip, Tile};
use super::gemm_hints::{Hints, LineWalk};

/// Depth of one block of k (`matrixmultiply`'s `S_KC`; the result depends
/// on it).
pub const KC: usize = 256;
/// `matrixmultiply`'s AVX-512 tile: its edge entries are finished in two
/// roundings (see the module docs).
const MM_TILE: usize = 16;
/// `A` is copied (unless neither of its strides is 1, when it always is)
/// only when its rows feed this many panels.
const PACK_A_MIN_PANELS: usize = 3;
/// The widest B (columns) for which both tiles read `A` in place: fewer
/// than `PACK_A_MIN_PANELS` (3) panels of the 16×16 tile, and so of the
/// 12×32 one.
pub const A_IN_PLACE_MAX_COLUMNS: usize = (PACK_A_MIN_PANELS - 1) * 16;
/// The most rows of a register tile (of [`Tile::Square`]).
const MAX_MR: usize = 16;
/// The tile's A: rows in place (`csa = 1`).
const A_ROWS: u8 = 0;
/// The tile's A: unit row stride (`rsa = 1`), in place or copied.
const A_COLUMNS: u8 = 1;

thread_local! {
    /// The packed block of `B` (panels of `NR` columns), 64-byte aligned.
    static PACK_B: RefCell<Vec<__m512>> = const { RefCell::new(Vec::new()) };
    /// `MR` rows of a transposed `A` over one block of k.
    static PACK_A: RefCell<Vec<__m512>> = const { RefCell::new(Vec::new()) };
}

/// `C ← α·A·B + β·C`, `A` m×k at strides `(rsa, csa)`, `B` k×n at
/// `(rsb, csb)`, `C` m×n at `(rsc, 1)`. With `β = 0`, `C` is not read.
/// `skip` leaves out tiles of `C` or terms of the sums as [`Skip`] says:
/// a term left out is one the caller promises to be an exact zero.
///
/// # Safety
///
/// The CPU must have AVX-512F; `m, k, n > 0`; every entry of the three
/// matrices at the given dimensions and strides must be in bounds of its
/// allocation; `C`'s entries must be distinct and alias neither `A` nor `B`.
#[target_feature(enable = "avx512f")]
pub unsafe fn sgemm(
    tile: Tile,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: *const f32,
    rsa: isize,
    csa: isize,
    b: *const f32,
    rsb: isize,
    csb: isize,
    beta: f32,
    c: *mut f32,
    rsc: isize,
    skip: Skip,
) {
    // SAFETY: the caller's contract, passed on unchanged.
    unsafe {
        match tile {
            Tile::Wide => {
                sgemm_tiled::<12, 32>(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, skip)
            }
            Tile::Square => {
                sgemm_tiled::<16, 16>(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, skip)
            }
        }
    }
}

/// [`sgemm`] with an `MR`×`NR` register tile (`MR` ≤ 16, `NR` 16 or 32).
///
/// # Safety
///
/// As [`sgemm`].
#[target_feature(enable = "avx512f")]
unsafe fn sgemm_tiled<const MR: usize, const NR: usize>(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: *const f32,
    rsa: isize,
    csa: isize,
    b: *const f32,
    rsb: isize,
    csb: isize,
    beta: f32,
    c: *mut f32,
    rsc: isize,
    skip: Skip,
) {
    let panels = n.div_ceil(NR);
    let m16 = m / MM_TILE * MM_TILE;
    let n16 = n / MM_TILE * MM_TILE;
    // A is copied, MR rows by one block of k, when its rows feed
    // PACK_A_MIN_PANELS panels or more, or when neither of its strides is 1
    // (entry by entry: no product here has such an A); else it is read in
    // place, by rows (`csa = 1`) or by columns (`rsa = 1`).
    let pack_a = panels >= PACK_A_MIN_PANELS || (csa != 1 && rsa != 1);
    let rows_in_place = !pack_a && csa == 1;
    let mut bbuf = PACK_B.with(|x| std::mem::take(&mut *x.borrow_mut()));
    let mut abuf = PACK_A.with(|x| std::mem::take(&mut *x.borrow_mut()));
    const { assert!(MR <= MAX_MR && (NR == 16 || NR == 32)) };
    // NR / 16 vectors of 16 per row of a panel.
    let need_b = panels * KC.min(k) * (NR / 16);
    if bbuf.len() < need_b {
        bbuf.resize(need_b, _mm512_setzero_ps());
    }
    if pack_a && abuf.len() < KC * MR / 16 {
        abuf.resize(KC * MR / 16, _mm512_setzero_ps());
    }
    let hint = super::prefetch::enabled();
    let bp = bbuf.as_mut_ptr() as *mut f32;
    let ap = abuf.as_mut_ptr() as *mut f32;
    let mut pc = 0;
    while pc < k {
        let kc = KC.min(k - pc);
        pack_b::<NR>(kc, n, b.offset(pc as isize * rsb), rsb, csb, bp);
        let beta_b = if pc == 0 { beta } else { 1.0 };
        let ak = a.offset(pc as isize * csa);
        for ir in (0..m).step_by(MR) {
            let rows = MR.min(m - ir);
            // The terms p0..p1 of this block that the rows ir..ir + rows
            // need: all, or (Skip) from the first row's diagonal on, or up
            // to the last row's last nonzero term; at least one, so that
            // the tile still finishes C with this block's β.
            let (p0, p1) = match skip {
                Skip::None | Skip::AboveDiagonalOfC => (0, kc),
                Skip::AHeadZeros => (ir.saturating_sub(pc).min(kc - 1), kc),
                Skip::ATailZeros { offset } => {
                    (0, (ir + rows + offset).saturating_sub(pc).clamp(1, kc))
                }
            };
            let (a_t, rs_t, cs_t) = if pack_a {
                if csa == 1 {
                    pack_a_rows::<MR>(ak.offset(ir as isize * rsa), rsa, rows, p0, p1, ap);
                } else if rsa == 1 {
                    let lanes = ((1u32 << rows) - 1) as u16;
                    let src = ak.add(ir);
                    for p in p0..p1 {
                        let v = _mm512_maskz_loadu_ps(lanes, src.offset(p as isize * csa));
                        _mm512_mask_storeu_ps(ap.add(p * MR), lanes, v);
                    }
                } else {
                    let src = ak.offset(ir as isize * rsa);
                    for p in p0..p1 {
                        for i in 0..rows {
                            *ap.add(p * MR + i) = *src.offset(i as isize * rsa + p as isize * csa);
                        }
                    }
                }
                (ap as *const f32, 1, MR as isize)
            } else {
                (ak.offset(ir as isize * rsa), rsa, csa)
            };
            let edge_rows_from = m16.saturating_sub(ir);
            // The block of rows after this one: the next rows of this block
            // of k, or the first rows of the next block of k.
            let next = if ir + MR < m {
                Some((ak.wrapping_offset((ir + MR) as isize * rsa), ir + MR, kc))
            } else if pc + kc < k {
                Some((
                    a.wrapping_offset((pc + kc) as isize * csa),
                    0,
                    KC.min(k - pc - kc),
                ))
            } else {
                None
            };
            let (a_t, kc_t) = (a_t.offset(p0 as isize * cs_t), p1 - p0);
            // Tiles wholly above C's diagonal (Skip::AboveDiagonalOfC).
            let last_panel = match skip {
                Skip::AboveDiagonalOfC => panels.min((ir + rows).div_ceil(NR)),
                _ => panels,
            };
            for jp in 0..last_panel {
                let mut hints = Hints::NONE;
                if let (true, Some((a_next, i_next, kc_next))) = (hint, next) {
                    let rows_next = MR.min(m - i_next);
                    let read = LineWalk::a_part(a_next, rows_next, kc_next, rsa, csa, jp, panels);
                    let write = LineWalk::new(
                        c.wrapping_offset(i_next as isize * rsc + (jp * NR) as isize),
                        NR.min(n - jp * NR),
                        rsc,
                        rows_next,
                    );
                    hints = Hints::spread(read, write, kc_t);
                }
                let j0 = jp * NR;
                let cols = NR.min(n - j0);
                let finish = Finish {
                    alpha,
                    beta: beta_b,
                    valid: lanes_below::<NR>(cols),
                    col_edge: edge_lanes::<NR>(j0, n16),
                    edge_rows_from,
                };
                let tile_c = c.offset(ir as isize * rsc + j0 as isize);
                let panel = bp.add(jp * kc * NR + p0 * NR);
                if rows_in_place {
                    tile_dispatch::<NR, A_ROWS>(
                        rows, kc_t, a_t, rs_t, cs_t, panel, tile_c, rsc, &finish, &mut hints,
                    );
                } else {
                    tile_dispatch::<NR, A_COLUMNS>(
                        rows, kc_t, a_t, rs_t, cs_t, panel, tile_c, rsc, &finish, &mut hints,
                    );
                }
            }
        }
        pc += kc;
    }
    PACK_B.with(|x| *x.borrow_mut() = bbuf);
    PACK_A.with(|x| *x.borrow_mut() = abuf);
}

/// How a tile writes C: `valid` has a bit per column of the tile inside C,
/// `col_edge` per column of a partial 16×16 tile of `matrixmultiply`'s, and
/// rows from `edge_rows_from` on are edge rows.
struct Finish {
    alpha: f32,
    beta: f32,
    valid: u32,
    col_edge: u32,
    edge_rows_from: usize,
}

/// The lanes of the `NR` columns from `j0` at or past `n16`.
fn edge_lanes<const NR: usize>(j0: usize, n16: usize) -> u32 {
    let inside = n16.saturating_sub(j0);
    lanes_below::<NR>(NR) & !lanes_below::<NR>(inside)
}

/// A bit for each of the first `cols` columns of a panel (at most `NR`).
fn lanes_below<const NR: usize>(cols: usize) -> u32 {
    ((1u64 << cols.min(NR)) - 1) as u32
}

/// Packs `B[0..kc, 0..n]` as panels of `NR` columns, each `kc` rows of `NR`
/// contiguous values (zero past `n`).
#[target_feature(enable = "avx512f")]
unsafe fn pack_b<const NR: usize>(
    kc: usize,
    n: usize,
    b: *const f32,
    rsb: isize,
    csb: isize,
    out: *mut f32,
) {
    let gather_ok = rsb == 1 && csb > 0 && csb <= (i32::MAX as isize) / 128;
    for jp in 0..n.div_ceil(NR) {
        let j0 = jp * NR;
        let cols = NR.min(n - j0);
        let dst = out.add(jp * kc * NR);
        let src = b.offset(j0 as isize * csb);
        if csb == 1 {
            let lanes = lanes_below::<NR>(cols);
            for p in 0..kc {
                let s = src.offset(p as isize * rsb);
                let d = dst.add(p * NR);
                for v in 0..NR / 16 {
                    let m = (lanes >> (16 * v)) as u16;
                    _mm512_storeu_ps(d.add(16 * v), _mm512_maskz_loadu_ps(m, s.add(16 * v)));
                }
            }
        } else if gather_ok && cols == NR {
            // B[p, j] = src[j·csb + p]: column j of the panel is contiguous.
            // Sixteen steps of k at a time, each 16×16 block transposed in
            // registers (a gather per row of the panel took 40% of this
            // function's time in training M on the Zen 4); the rest by
            // gathers.
            let full = kc / 16 * 16;
            for p0 in (0..full).step_by(16) {
                for v in 0..NR / 16 {
                    transposed_copy(
                        src.offset(16 * v as isize * csb).add(p0),
                        csb,
                        16,
                        16,
                        dst.add(p0 * NR + 16 * v),
                        NR,
                        u16::MAX,
                    );
                }
            }
            let idx = _mm512_mullo_epi32(
                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                _mm512_set1_epi32(csb as i32),
            );
            for p in full..kc {
                let d = dst.add(p * NR);
                for v in 0..NR / 16 {
                    let from = src.offset(16 * v as isize * csb).add(p);
                    _mm512_storeu_ps(d.add(16 * v), _mm512_i32gather_ps::<4>(idx, from));
                }
            }
        } else {
            for p in 0..kc {
                let d = dst.add(p * NR);
                for l in 0..NR {
                    *d.add(l) = if l < cols {
                        *src.offset(p as isize * rsb + l as isize * csb)
                    } else {
                        0.0
                    };
                }
            }
        }
    }
}

/// Copies rows `0..rows` (`rows` ≤ `MR` ≤ 16) of an A with unit column
/// stride, terms `p0..p1`, to `ap[p·MR + i]`: sixteen terms of every row
/// at a time, through a 16×16 transpose.
///
/// # Safety
///
/// The CPU must have AVX-512F; the rows' terms `p0..p1` must be in bounds
/// from `src` at row stride `rsa`, and `ap` must hold `p1·MR` floats.
#[target_feature(enable = "avx512f")]
unsafe fn pack_a_rows<const MR: usize>(
    src: *const f32,
    rsa: isize,
    rows: usize,
    p0: usize,
    p1: usize,
    ap: *mut f32,
) {
    let keep = ((1u32 << MR) - 1) as u16;
    let mut p = p0;
    while p < p1 {
        let width = (p1 - p).min(16);
        transposed_copy(src.add(p), rsa, rows, width, ap.add(p * MR), MR, keep);
        p += width;
    }
}

/// Runs `$body` with `$i` bound to each constant 0..16 below `$r`.
macro_rules! unroll_below {
    ($r:expr, $i:ident, $body:block) => {
        unroll_below!(@ $r, $i, $body, 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15)
    };
    (@ $r:expr, $i:ident, $body:block, $($n:literal)*) => {
        $(
            if $n < $r {
                let $i: usize = $n;
                $body
            }
        )*
    };
}

/// One step of k of the 12×32 tile (`V = 2`) for rows `0..R` whose
/// entries of A lie at `p`, `p + 1`, …: per row one broadcast into a
/// scratch register and its two FMAs, the broadcast's address written as
/// `p` plus a constant displacement. Passing each row's own address in a
/// register instead made LLVM compute it with one `lea` per row: twelve
/// integer operations per 24 FMAs, which on Intel cores can issue to ports
/// 0 and 5, the 512-bit FMA ports (M trained about 3% faster without them
/// on an Intel Xeon, no faster on a Zen 5: docs/performance-log.md).
macro_rules! wide_step_at_offsets {
    ($r:expr, $acc:ident, $bv:ident, $p:expr) => {
        wide_step_at_offsets!(@ $r, $acc, $bv, $p, 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15)
    };
    (@ $r:expr, $acc:ident, $bv:ident, $p:expr, $($n:literal)*) => {
        $(
            if $n < $r {
                asm!(
                    "vbroadcastss {t}, dword ptr [{p} + {o}]",
                    "vfmadd231ps {a0}, {b0}, {t}",
                    "vfmadd231ps {a1}, {b1}, {t}",
                    a0 = inout(zmm_reg) $acc[$n][0],
                    a1 = inout(zmm_reg) $acc[$n][1],
                    b0 = in(zmm_reg) $bv[0],
                    b1 = in(zmm_reg) $bv[1],
                    p = in(reg) $p,
                    o = const 4 * $n,
                    t = out(zmm_reg) _,
                    options(pure, readonly, nostack, preserves_flags),
                );
            }
        )*
    };
}

/// Reads `width` (≤ 16) floats of each of `lines` (≤ 16) lines, line `l`
/// at `from + l·stride` (the missing lines read as zeros), and writes the
/// transposed block: vector `q < width` (entry `q` of every line) at
/// `to + q·to_stride`, the lanes of `keep` only.
///
/// # Safety
///
/// The CPU must have AVX-512F; the lines' first `width` floats must be in
/// bounds, and so must the `keep` lanes of the `width` vectors written.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn transposed_copy(
    from: *const f32,
    stride: isize,
    lines: usize,
    width: usize,
    to: *mut f32,
    to_stride: usize,
    keep: u16,
) {
    let lanes = ((1u32 << width) - 1) as u16;
    let r: [__m512; 16] = std::array::from_fn(|l| {
        if l < lines {
            _mm512_maskz_loadu_ps(lanes, from.offset(l as isize * stride))
        } else {
            _mm512_setzero_ps()
        }
    });
    let cols = transpose16(r);
    // One masked store per column, unrolled with constant indices: as a
    // loop over `width` columns, LLVM kept the block on the stack and, for
    // contiguous full columns (`to_stride = 16`, all lanes: A's copy for
    // the 16×16 tile, B's gather for its panels), called `memcpy` for it.
    unroll_below!(16, q, {
        if q < width {
            _mm512_mask_storeu_ps(to.add(q * to_stride), keep, cols[q]);
        }
    });
}

/// The transpose of a 16×16 block: `out[c][r] = rows[r][c]`, in four
/// rounds of 16 shuffles (pairs of rows interleaved by 32 then 64 bits
/// within each 128-bit lane, then the lanes regrouped twice).
///
/// # Safety
///
/// The CPU must have AVX-512F.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
    // t[2i], t[2i+1]: rows 2i and 2i+1 interleaved; in lane L, t[2i] holds
    // columns 4L and 4L+1, t[2i+1] columns 4L+2 and 4L+3.
    let t: [__m512; 16] = std::array::from_fn(|x| {
        let (a, b) = (r[x & !1], r[x | 1]);
        if x % 2 == 0 {
            _mm512_unpacklo_ps(a, b)
        } else {
            _mm512_unpackhi_ps(a, b)
        }
    });
    // u[4g + j], lane L: column 4L + j of rows 4g..4g+4.
    let u: [__m512; 16] = std::array::from_fn(|x| {
        let (g, j) = (x / 4, x % 4);
        let a = _mm512_castps_pd(t[4 * g + (j / 2)]);
        let b = _mm512_castps_pd(t[4 * g + 2 + (j / 2)]);
        _mm512_castpd_ps(if j % 2 == 0 {
            _mm512_unpacklo_pd(a, b)
        } else {
            _mm512_unpackhi_pd(a, b)
        })
    });
    // v[j] (lanes 0, 1 of u[j], then of u[4 + j]) and v[4 + j] (lanes 2,
    // 3); w the same for rows 8..16.
    let v: [__m512; 8] = std::array::from_fn(|x| {
        let j = x % 4;
        if x < 4 {
            _mm512_shuffle_f32x4::<0x44>(u[j], u[4 + j])
        } else {
            _mm512_shuffle_f32x4::<0xEE>(u[j], u[4 + j])
        }
    });
    let w: [__m512; 8] = std::array::from_fn(|x| {
        let j = x % 4;
        if x < 4 {
            _mm512_shuffle_f32x4::<0x44>(u[8 + j], u[12 + j])
        } else {
            _mm512_shuffle_f32x4::<0xEE>(u[8 + j], u[12 + j])
        }
    });
    // Column c = 4L + j: lane L of u[j], u[4 + j], u[8 + j], u[12 + j].
    std::array::from_fn(|c| {
        let (l, j) = (c / 4, c % 4);
        let (a, b) = if l < 2 {
            (v[j], w[j])
        } else {
            (v[4 + j], w[4 + j])
        };
        if l % 2 == 0 {
            _mm512_shuffle_f32x4::<0x88>(a, b)
        } else {
            _mm512_shuffle_f32x4::<0xDD>(a, b)
        }
    })
}

/// Calls the tile kernel compiled for `rows` rows (1–16) and one or two
/// vectors of columns, on panels `NR` columns wide.
///
/// With `NR = 16` the two-vector tiles are never called (a panel of 16
/// columns has one vector). They are compiled anyway, on purpose: leaving
/// them out (2026-12-07) made this function small enough for LLVM to
/// inline its 16×16 instances into `sgemm_tiled` even with
/// `#[inline(never)]`, where the tile's loop kept its step of A on the
/// stack (`add 0xe0(%rsp), %r13`), and M trained 5% slower on the Zen 5.
#[target_feature(enable = "avx512f")]
unsafe fn tile_dispatch<const NR: usize, const L: u8>(
    rows: usize,
    kc: usize,
    a: *const f32,
    rsa: isize,
    csa: isize,
    panel: *const f32,
    c: *mut f32,
    rsc: isize,
    fin: &Finish,
    hints: &mut Hints,
) {
    macro_rules! go {
        ($r:literal) => {
            if fin.valid >> 16 == 0 {
                tile::<$r, 1, NR, L>(kc, a, rsa, csa, panel, c, rsc, fin, hints)
            } else {
                tile::<$r, 2, NR, L>(kc, a, rsa, csa, panel, c, rsc, fin, hints)
            }
        };
    }
    match rows {
        16 => go!(16),
        15 => go!(15),
        14 => go!(14),
        13 => go!(13),
        12 => go!(12),
        11 => go!(11),
        10 => go!(10),
        9 => go!(9),
        8 => go!(8),
        7 => go!(7),
        6 => go!(6),
        5 => go!(5),
        4 => go!(4),
        3 => go!(3),
        2 => go!(2),
        _ => go!(1),
    }
}

/// One R×(16·V) tile over one block of k: accumulate in registers, then
/// finish C as the module docs say.
#[inline]
#[target_feature(enable = "avx512f")]
#[allow(clippy::needless_range_loop)]
unsafe fn tile<const R: usize, const V: usize, const NR: usize, const L: u8>(
    kc: usize,
    a: *const f32,
    rsa: isize,
    csa: isize,
    panel: *const f32,
    c: *mut f32,
    rsc: isize,
    fin: &Finish,
    hints: &mut Hints,
) {
    debug_assert!(L != A_COLUMNS || rsa == 1);
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    let mut ap = a;
    let mut bp = panel;
    let every = hints.every;
    let mut countdown = every;
    for _ in 0..kc {
        let mut bv = [_mm512_setzero_ps(); V];
        for v in 0..V {
            bv[v] = _mm512_loadu_ps(bp.add(16 * v));
        }
        if V == 2 && L == A_COLUMNS {
            // SAFETY: reads the R floats at `ap`..`ap + R` (in bounds: the
            // caller's contract); AVX-512F is enabled for this function.
            wide_step_at_offsets!(R, acc, bv, ap);
        } else {
            for i in 0..R {
                // With A's columns contiguous (copied, or `rsa = 1`), row i at
                // a constant offset from `ap`: the broadcasts' addresses
                // independent of each other, one pointer step per k. With A's
                // rows in place (fewer than PACK_A_MIN_PANELS panels), a chain
                // of additions of `rsa`.
                let at: *const f32 = if L == A_COLUMNS {
                    ap.add(i)
                } else {
                    ap.offset(i as isize * rsa)
                };
                if V == 2 {
                    // One broadcast into a scratch register, then the two
                    // FMAs: left to LLVM, the twelve broadcasts of a step were
                    // loaded ahead into registers, and with the 24
                    // accumulators they did not fit in the 32 (spilled
                    // accumulators, the 12×32 tile 20% slower than the 16×16
                    // one on Zen 5); with each FMA broadcasting from memory
                    // itself (two loads per entry), M trained 8% slower on
                    // Zen 5 than with this one load.
                    // SAFETY: reads the one f32 at `at` (in bounds: the
                    // caller's contract), as `*at` would; AVX-512F is enabled
                    // for this function.
                    asm!(
                        "vbroadcastss {t}, dword ptr [{p}]",
                        "vfmadd231ps {a0}, {b0}, {t}",
                        "vfmadd231ps {a1}, {b1}, {t}",
                        a0 = inout(zmm_reg) acc[i][0],
                        a1 = inout(zmm_reg) acc[i][V - 1],
                        b0 = in(zmm_reg) bv[0],
                        b1 = in(zmm_reg) bv[V - 1],
                        p = in(reg) at,
                        t = out(zmm_reg) _,
                        options(pure, readonly, nostack, preserves_flags),
                    );
                } else {
                    let av = _mm512_set1_ps(*at);
                    for v in 0..V {
                        acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
                    }
                }
            }
        }
        ap = ap.offset(csa);
        bp = bp.add(NR);
        countdown -= 1;
        if countdown == 0 {
            countdown = every;
            // SAFETY: hints only; this kernel runs on AVX-512 CPUs (the
            // caller's contract), and every one of them has PREFETCHW.
            hints.issue_one();
        }
    }
    // SAFETY: as above.
    hints.issue_rest();
    let alphav = _mm512_set1_ps(fin.alpha);
    let betav = _mm512_set1_ps(fin.beta);
    // Unrolled with constant indices, so that `acc` stays in registers (a
    // loop here made LLVM keep it on the stack and zero it with `memset`).
    unroll_below!(R, i, {
        let row = c.offset(i as isize * rsc);
        let edge_row = i >= fin.edge_rows_from;
        for v in 0..V {
            let lanes = (fin.valid >> (16 * v)) as u16;
            let edge = if edge_row {
                u16::MAX
            } else {
                (fin.col_edge >> (16 * v)) as u16
            };
            let dst = row.add(16 * v);
            let scaled = _mm512_mul_ps(alphav, acc[i][v]);
            let out = if fin.beta == 0.0 {
                scaled
            } else {
                let old = _mm512_mul_ps(_mm512_maskz_loadu_ps(lanes, dst), betav);
                let inner = _mm512_fmadd_ps(alphav, acc[i][v], old);
                let outer = _mm512_add_ps(old, scaled);
                _mm512_mask_blend_ps(edge, inner, outer)
            };
            _mm512_mask_storeu_ps(dst, lanes, out);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Where A's entry (i, p) lies in its store: at `i·rsa + p·csa`.
    #[derive(Clone, Copy, Debug)]
    enum ALayout {
        /// Rows one wider than needed (a padding column): `(k + 1, 1)`.
        Rows,
        /// Transposed, columns one longer than needed: `(1, m + 1)`.
        Columns,
        /// Every other column of a wider store: no unit stride.
        EveryOtherColumn,
        /// Every other row of a transposed store: no unit stride.
        EveryOtherRow,
    }

    impl ALayout {
        fn strides(self, m: usize, k: usize) -> (isize, isize) {
            let (m, k) = (m as isize, k as isize);
            match self {
                ALayout::Rows => (k + 1, 1),
                ALayout::Columns => (1, m + 1),
                ALayout::EveryOtherColumn => (2 * k + 1, 2),
                ALayout::EveryOtherRow => (2, 2 * m + 1),
            }
        }
    }

    /// Runs both kernels on one case, returns whether C is bitwise equal.
    fn same_as_matrixmultiply(
        tile: Tile,
        rng: &mut ChaCha8Rng,
        (m, k, n): (usize, usize, usize),
        a_layout: ALayout,
        b_transposed: bool,
        (alpha, beta): (f32, f32),
    ) -> bool {
        let (rsa, csa) = a_layout.strides(m, k);
        let a_store: Vec<f32> = (0..(m - 1) * rsa as usize + (k - 1) * csa as usize + 1)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let b_store: Vec<f32> = (0..(k + 1) * (n + 1))
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let (rsb, csb) = if b_transposed {
            (1, (k + 1) as isize)
        } else {
            ((n + 1) as isize, 1)
        };
        let rsc = (n + 3) as isize;
        let c0: Vec<f32> = (0..m * (n + 3))
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let (mut want, mut got) = (c0.clone(), c0);
        // SAFETY: every index reached (i·rs + j·cs for i, j inside the
        // dimensions) lies inside the padded stores above; C is its own Vec.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                alpha,
                a_store.as_ptr(),
                rsa,
                csa,
                b_store.as_ptr(),
                rsb,
                csb,
                beta,
                want.as_mut_ptr(),
                rsc,
                1,
            );
            sgemm(
                tile,
                m,
                k,
                n,
                alpha,
                a_store.as_ptr(),
                rsa,
                csa,
                b_store.as_ptr(),
                rsb,
                csb,
                beta,
                got.as_mut_ptr(),
                rsc,
                Skip::None,
            );
        }
        want.iter()
            .zip(&got)
            .all(|(w, g)| w.to_bits() == g.to_bits())
    }

    #[test]
    fn edge_lanes_mark_the_columns_at_or_past_n16() {
        fn check<const NR: usize>() {
            for n16 in (0..200).step_by(16) {
                for j0 in (0..240).step_by(NR) {
                    let want = (0..NR)
                        .filter(|l| j0 + l >= n16)
                        .fold(0u32, |mask, l| mask | (1 << l));
                    assert_eq!(edge_lanes::<NR>(j0, n16), want, "j0 {j0}, n16 {n16}");
                }
            }
        }
        check::<16>();
        check::<32>();
    }

    #[test]
    fn transpose16_transposes() {
        if !crate::kernels::simd::has_avx512() {
            eprintln!("skipped: this CPU has no AVX-512");
            return;
        }
        let m: Vec<f32> = (0..256).map(|x| x as f32).collect();
        // SAFETY: AVX-512F is present (checked above); each load reads 16
        // values inside `m`, each store writes 16 inside `out`.
        let out = unsafe {
            let rows: [__m512; 16] =
                std::array::from_fn(|r| _mm512_loadu_ps(m.as_ptr().add(16 * r)));
            let cols = transpose16(rows);
            let mut out = vec![0f32; 256];
            for (c, v) in cols.iter().enumerate() {
                _mm512_storeu_ps(out.as_mut_ptr().add(16 * c), *v);
            }
            out
        };
        for r in 0..16 {
            for c in 0..16 {
                assert_eq!(out[16 * c + r], m[16 * r + c], "row {r} column {c}");
            }
        }
    }

    #[test]
    fn bitwise_equal_to_matrixmultiply() {
        if !crate::kernels::simd::has_avx512() {
            eprintln!("skipped: this CPU has no AVX-512");
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let shapes = [
            (1, 1, 1),
            (3, 5, 2),
            (12, 256, 32),
            (16, 256, 16),
            (33, 256, 50),
            (20, 128, 64),
            (9, 300, 96),
            (13, 257, 47),
            (17, 300, 33),
            (31, 600, 48),
            (64, 1000, 16),
            (130, 70, 90),
            (200, 33, 65),
            (5, 3, 100),
            (40, 513, 97),
        ];
        let scalings = [(1.0, 0.0), (0.37, 0.0), (1.0, 1.0), (0.37, 1.0), (0.7, 0.3)];
        for tile in Tile::ALL {
            for &shape in &shapes {
                for a_layout in [
                    ALayout::Rows,
                    ALayout::Columns,
                    ALayout::EveryOtherColumn,
                    ALayout::EveryOtherRow,
                ] {
                    for b_t in [false, true] {
                        for &ab in &scalings {
                            assert!(
                                same_as_matrixmultiply(tile, &mut rng, shape, a_layout, b_t, ab),
                                "{tile:?}: {shape:?} A {a_layout:?} Bᵀ {b_t} (α, β) = {ab:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn beta_zero_does_not_read_c() {
        if !crate::kernels::simd::has_avx512() {
            eprintln!("skipped: this CPU has no AVX-512");
            return;
        }
        let (m, k, n) = (20, 7, 40);
        let a = vec![1.0f32; m * k];
        let b = vec![2.0f32; k * n];
        for tile in Tile::ALL {
            let mut c = vec![f32::NAN; m * n];
            // SAFETY: contiguous m×k, k×n and m×n buffers of exactly that size.
            unsafe {
                sgemm(
                    tile,
                    m,
                    k,
                    n,
                    1.0,
                    a.as_ptr(),
                    k as isize,
                    1,
                    b.as_ptr(),
                    n as isize,
                    1,
                    0.0,
                    c.as_mut_ptr(),
                    n as isize,
                    Skip::None,
                );
            }
            assert!(c.iter().all(|&x| x == 14.0), "{tile:?}");
        }
    }
}
