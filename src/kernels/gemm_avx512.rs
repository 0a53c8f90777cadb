//! f32 `C ← α·A·B + β·C` on AVX-512, bit for bit equal to
//! `matrixmultiply::sgemm`, for a row-contiguous `C`.
//!
//! `matrixmultiply` packs both operands on every call (16×16 tiles), which
//! took 14% of a training step of S on one thread, and its kernel loads one
//! vector of B per 16 broadcasts of A. Here:
//!
//! - a 12×32 register tile (24 accumulators, two vectors of B and twelve
//!   broadcasts of A per step of k: 24 FMAs for 14 loads);
//! - `A` is read in place at its strides (row-major activations, or a
//!   transposed view); only a transposed `A` (`rsa = 1`) feeding three or
//!   more panels is copied, twelve rows by one block of k at a time;
//! - `B` is packed once per block of k as panels of 32 columns (a gather
//!   for a transposed `B`, i.e. the `Wᵀ` of a linear layer);
//! - while the tiles of one block of twelve rows run, each asks for its
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
//!   without hints, and no slower on one hot buffer (docs/performance.md).
//!   `MOFO_NO_PREFETCH=1` turns them off, as for the optimizer's loops.
//!   Every x86-64 CPU with AVX-512 has PREFETCHW.
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

use std::arch::x86_64::*;
use std::cell::RefCell;

use super::gemm_hints::{Hints, LineWalk};

/// Rows of the register tile.
pub const MR: usize = 12;
/// Columns of the register tile (two 16-lane vectors).
pub const NR: usize = 32;
/// Depth of one block of k (`matrixmultiply`'s `S_KC`; the result depends
/// on it).
pub const KC: usize = 256;
/// `matrixmultiply`'s AVX-512 tile: its edge entries are finished in two
/// roundings (see the module docs).
const MM_TILE: usize = 16;
/// A transposed `A` is copied only when its rows feed this many panels.
const PACK_A_MIN_PANELS: usize = 3;

thread_local! {
    /// The packed block of `B` (panels of 32 columns), 64-byte aligned.
    static PACK_B: RefCell<Vec<__m512>> = const { RefCell::new(Vec::new()) };
    /// Twelve rows of a transposed `A` over one block of k.
    static PACK_A: RefCell<Vec<__m512>> = const { RefCell::new(Vec::new()) };
}

/// `C ← α·A·B + β·C`, `A` m×k at strides `(rsa, csa)`, `B` k×n at
/// `(rsb, csb)`, `C` m×n at `(rsc, 1)`. With `β = 0`, `C` is not read.
///
/// # Safety
///
/// The CPU must have AVX-512F; `m, k, n > 0`; every entry of the three
/// matrices at the given dimensions and strides must be in bounds of its
/// allocation; `C`'s entries must be distinct and alias neither `A` nor `B`.
#[target_feature(enable = "avx512f")]
pub unsafe fn sgemm(
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
) {
    let panels = n.div_ceil(NR);
    let m16 = m / MM_TILE * MM_TILE;
    let n16 = n / MM_TILE * MM_TILE;
    let pack_a = rsa == 1 && csa != 1 && panels >= PACK_A_MIN_PANELS;
    let mut bbuf = PACK_B.with(|x| std::mem::take(&mut *x.borrow_mut()));
    let mut abuf = PACK_A.with(|x| std::mem::take(&mut *x.borrow_mut()));
    // Two vectors of 16 per row of a panel.
    let need_b = panels * KC.min(k) * 2;
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
        pack_b(kc, n, b.offset(pc as isize * rsb), rsb, csb, bp);
        let beta_b = if pc == 0 { beta } else { 1.0 };
        let ak = a.offset(pc as isize * csa);
        for ir in (0..m).step_by(MR) {
            let rows = MR.min(m - ir);
            let (a_t, rs_t, cs_t) = if pack_a {
                let lanes = ((1u32 << rows) - 1) as u16;
                let src = ak.add(ir);
                for p in 0..kc {
                    let v = _mm512_maskz_loadu_ps(lanes, src.offset(p as isize * csa));
                    _mm512_mask_storeu_ps(ap.add(p * MR), lanes, v);
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
            for jp in 0..panels {
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
                    hints = Hints::spread(read, write, kc);
                }
                let j0 = jp * NR;
                let cols = NR.min(n - j0);
                let finish = Finish {
                    alpha,
                    beta: beta_b,
                    valid: if cols >= NR {
                        u32::MAX
                    } else {
                        (1u32 << cols) - 1
                    },
                    col_edge: edge_lanes(j0, n16),
                    edge_rows_from,
                };
                let tile_c = c.offset(ir as isize * rsc + j0 as isize);
                let panel = bp.add(jp * kc * NR);
                tile_dispatch(
                    rows, kc, a_t, rs_t, cs_t, panel, tile_c, rsc, &finish, &mut hints,
                );
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

/// The lanes of the 32 columns from `j0` at or past `n16`.
fn edge_lanes(j0: usize, n16: usize) -> u32 {
    let inside = n16.saturating_sub(j0);
    if inside >= NR {
        0
    } else {
        u32::MAX << inside
    }
}

/// Packs `B[0..kc, 0..n]` as panels of 32 columns, each `kc` rows of 32
/// contiguous values (zero past `n`).
#[target_feature(enable = "avx512f")]
unsafe fn pack_b(kc: usize, n: usize, b: *const f32, rsb: isize, csb: isize, out: *mut f32) {
    let gather_ok = rsb == 1 && csb > 0 && csb <= (i32::MAX as isize) / 128;
    for jp in 0..n.div_ceil(NR) {
        let j0 = jp * NR;
        let cols = NR.min(n - j0);
        let dst = out.add(jp * kc * NR);
        let src = b.offset(j0 as isize * csb);
        if csb == 1 {
            let lanes = if cols >= NR {
                u32::MAX
            } else {
                (1u32 << cols) - 1
            };
            let (m0, m1) = (lanes as u16, (lanes >> 16) as u16);
            for p in 0..kc {
                let s = src.offset(p as isize * rsb);
                let d = dst.add(p * NR);
                _mm512_storeu_ps(d, _mm512_maskz_loadu_ps(m0, s));
                _mm512_storeu_ps(d.add(16), _mm512_maskz_loadu_ps(m1, s.add(16)));
            }
        } else if gather_ok && cols == NR {
            // B[p, j] = src[j·csb + p]: column j of the panel is contiguous.
            let idx = _mm512_mullo_epi32(
                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                _mm512_set1_epi32(csb as i32),
            );
            let src16 = src.offset(16 * csb);
            for p in 0..kc {
                let d = dst.add(p * NR);
                _mm512_storeu_ps(d, _mm512_i32gather_ps::<4>(idx, src.add(p)));
                _mm512_storeu_ps(d.add(16), _mm512_i32gather_ps::<4>(idx, src16.add(p)));
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

/// Calls the tile kernel compiled for `rows` rows (1–12) and one or two
/// vectors of columns.
#[target_feature(enable = "avx512f")]
unsafe fn tile_dispatch(
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
                tile::<$r, 1>(kc, a, rsa, csa, panel, c, rsc, fin, hints)
            } else {
                tile::<$r, 2>(kc, a, rsa, csa, panel, c, rsc, fin, hints)
            }
        };
    }
    match rows {
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

/// Runs `$body` with `$i` bound to each constant 0..12 below `$r`.
macro_rules! unroll_rows {
    ($r:expr, $i:ident, $body:block) => {
        unroll_rows!(@ $r, $i, $body, 0 1 2 3 4 5 6 7 8 9 10 11)
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

/// One R×(16·V) tile over one block of k: accumulate in registers, then
/// finish C as the module docs say.
#[inline]
#[target_feature(enable = "avx512f")]
#[allow(clippy::needless_range_loop)]
unsafe fn tile<const R: usize, const V: usize>(
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
        for i in 0..R {
            let av = _mm512_set1_ps(*ap.offset(i as isize * rsa));
            for v in 0..V {
                acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
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
    unroll_rows!(R, i, {
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

    /// Runs both kernels on one case, returns whether C is bitwise equal.
    fn same_as_matrixmultiply(
        rng: &mut ChaCha8Rng,
        (m, k, n): (usize, usize, usize),
        a_transposed: bool,
        b_transposed: bool,
        (alpha, beta): (f32, f32),
    ) -> bool {
        // A one wider than needed, so its rows are strided (padding column).
        let a_store: Vec<f32> = (0..(m + 1) * (k + 1))
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let b_store: Vec<f32> = (0..(k + 1) * (n + 1))
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let (rsa, csa) = if a_transposed {
            (1, (m + 1) as isize)
        } else {
            ((k + 1) as isize, 1)
        };
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
            );
        }
        want.iter()
            .zip(&got)
            .all(|(w, g)| w.to_bits() == g.to_bits())
    }

    #[test]
    fn edge_lanes_mark_the_columns_at_or_past_n16() {
        for n16 in (0..200).step_by(16) {
            for j0 in (0..240).step_by(NR) {
                let want = (0..NR)
                    .filter(|l| j0 + l >= n16)
                    .fold(0u32, |mask, l| mask | (1 << l));
                assert_eq!(edge_lanes(j0, n16), want, "j0 {j0}, n16 {n16}");
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
        for &shape in &shapes {
            for a_t in [false, true] {
                for b_t in [false, true] {
                    for &ab in &scalings {
                        assert!(
                            same_as_matrixmultiply(&mut rng, shape, a_t, b_t, ab),
                            "{shape:?} Aᵀ {a_t} Bᵀ {b_t} (α, β) = {ab:?}"
                        );
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
        let mut c = vec![f32::NAN; m * n];
        // SAFETY: contiguous m×k, k×n and m×n buffers of exactly that size.
        unsafe {
            sgemm(
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
            );
        }
        assert!(c.iter().all(|&x| x == 14.0));
    }
}
