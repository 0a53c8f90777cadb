//! General matrix multiply `C ← α·A·B + β·C` over strided views.
//!
//! `A` is `m×k`, `B` is `k×n`, `C` is `m×n`; each may have arbitrary (row,
//! column) strides, so `A` or `B` may be a transposed view (`.t()`) of a
//! contiguous matrix without any copy. f32 with a row-contiguous `C` goes to
//! [`super::gemm_avx512`] on CPUs with AVX-512 when one of its register
//! tiles ([`Tile`]) was timed faster than `matrixmultiply`'s kernel at the
//! first product (`gemm_choice`; bitwise the same result either way),
//! everything else to `matrixmultiply`'s `sgemm` / `dgemm`. [`gemm`] splits
//! `C` into one chunk of rows (or columns) per thread computed in parallel
//! (unless tasks running side by side already fill the threads,
//! [`super::side_by_side`]); each output entry is computed by the same
//! serial kernel over the same `k` order whatever the split, so the result
//! does not depend on the number of threads (tested bitwise).

use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;
use std::any::TypeId;

use crate::Scalar;

/// The register tile of our f32 kernel (`kernels::gemm_avx512`, x86-64
/// with AVX-512): both compute every entry bit for bit as
/// `matrixmultiply` does, so the tile moves only the speed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tile {
    /// 12 rows × 32 columns: 24 accumulators, two vectors of B and twelve
    /// broadcasts of A per step of k (panels of B 32 KiB per block of k).
    Wide,
    /// 16 rows × 16 columns: 16 accumulators, one vector of B and sixteen
    /// broadcasts of A per step of k (panels of B 16 KiB per block of k).
    Square,
}

/// What a product may leave out, knowing which of `C`'s entries are wanted
/// or where `A` holds zeros (attention's causal blocks). Only our f32
/// kernel ([`super::gemm_avx512`]) leaves anything out; the others compute
/// the whole product, which is why the zeros must really be there. A term
/// left out is an exact zero at the head or the tail of an entry's sum,
/// so every entry computed is the one the whole product gives (up to the
/// sign of a sum that is exactly zero, for [`Skip::ATailZeros`]); only
/// the work changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Every tile, every term.
    None,
    /// Only `C`'s entries on or below its diagonal (`j ≤ i`) are wanted:
    /// register tiles wholly above it are neither computed nor written
    /// (those entries keep what they held, or get the product's value).
    AboveDiagonalOfC,
    /// `A[i][p] = 0` for `p < i`: row `i`'s sum starts at its diagonal
    /// (from the first row of each register tile).
    AHeadZeros,
    /// `A[i][p] = 0` for `p > i + offset`: row `i`'s sum stops after term
    /// `i + offset` (at the last row of each register tile).
    ATailZeros {
        /// Where row 0's last nonzero term is.
        offset: usize,
    },
}

impl Tile {
    /// Both tiles.
    pub const ALL: [Tile; 2] = [Tile::Wide, Tile::Square];

    /// Its shape, rows×columns.
    pub fn shape(self) -> &'static str {
        match self {
            Tile::Wide => "12×32",
            Tile::Square => "16×16",
        }
    }
}

/// Smallest chunk (rows or columns of `C`) of one parallel task in [`gemm`].
pub const MIN_CHUNK: usize = 64;

/// Most parallel tasks of one [`gemm`] call.
pub const MAX_TASKS: usize = 8;

/// Below this many multiply-adds (`m·k·n`) [`gemm`] runs serially.
pub const PARALLEL_MIN_FLOPS: usize = 1 << 18;

fn check_shapes<T>(
    a: &ArrayView2<T>,
    b: &ArrayView2<T>,
    c: &ArrayViewMut2<T>,
) -> (usize, usize, usize) {
    let (m, k) = a.dim();
    let (k2, n) = b.dim();
    assert!(
        k == k2 && c.dim() == (m, n),
        "gemm: shapes {:?} · {:?} → {:?} do not match",
        a.dim(),
        b.dim(),
        c.dim()
    );
    (m, k, n)
}

/// `C ← α·A·B + β·C` on one thread. With `β = 0` the old content of `C` is
/// ignored (it may hold anything, NaN included).
pub fn gemm_serial<T: Scalar>(
    alpha: T,
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    beta: T,
    c: ArrayViewMut2<T>,
) {
    gemm_serial_skip(alpha, a, b, beta, c, Skip::None);
}

/// [`gemm_serial`] leaving out what `skip` says may be left out: the
/// entries of `C` above its diagonal are then unspecified with
/// [`Skip::AboveDiagonalOfC`], and the entries of `A` it names as zeros
/// must be zeros.
pub fn gemm_serial_skip<T: Scalar>(
    alpha: T,
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    beta: T,
    mut c: ArrayViewMut2<T>,
    skip: Skip,
) {
    let (m, k, n) = check_shapes(&a, &b, &c);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if beta == T::zero() {
            c.fill(T::zero());
        } else {
            c.mapv_inplace(|x| x * beta);
        }
        return;
    }
    let (rsa, csa) = (a.strides()[0], a.strides()[1]);
    let (rsb, csb) = (b.strides()[0], b.strides()[1]);
    let (rsc, csc) = (c.strides()[0], c.strides()[1]);
    #[cfg(target_arch = "x86_64")]
    if TypeId::of::<T>() == TypeId::of::<f32>() && csc == 1 {
        // Asked only here, so that a process without f32 products never
        // times the kernels.
        if let Some(tile) = super::gemm_choice::choice().own_for(n, rsa, csa) {
            // SAFETY: `T` is `f32` (checked through `TypeId`); the CPU has
            // AVX-512F (`own_for`); m, k, n > 0 (returned above
            // otherwise); `c` has unit column stride (checked).
            unsafe { own_kernel_on(tile, alpha, &a, &b, beta, &mut c, skip) };
            return;
        }
    }
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        // SAFETY: `T` is `f32` (checked through `TypeId`), so the pointer casts
        // do not change the element type. The three views guarantee that every
        // element (i, j) inside their dimensions is in bounds at the given
        // strides; `c` is a unique mutable view, so it aliases neither `a` nor
        // `b`. matrixmultiply only reads `a`, `b` and writes `c` in bounds.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                alpha.as_f32(),
                a.as_ptr() as *const f32,
                rsa,
                csa,
                b.as_ptr() as *const f32,
                rsb,
                csb,
                beta.as_f32(),
                c.as_mut_ptr() as *mut f32,
                rsc,
                csc,
            )
        }
    } else if TypeId::of::<T>() == TypeId::of::<f64>() {
        // SAFETY: as above with `T` = `f64`.
        unsafe {
            matrixmultiply::dgemm(
                m,
                k,
                n,
                alpha.as_f64(),
                a.as_ptr() as *const f64,
                rsa,
                csa,
                b.as_ptr() as *const f64,
                rsb,
                csb,
                beta.as_f64(),
                c.as_mut_ptr() as *mut f64,
                rsc,
                csc,
            )
        }
    } else {
        gemm_reference(alpha, a, b, beta, c);
    }
}

/// Which kernel runs the f32 products in this process, and why (for the
/// benchmarks' reports).
pub fn f32_kernel() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        super::gemm_choice::choice().describe()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        "matrixmultiply"
    }
}

/// The chunk length when one dimension of `C` is split into parallel tasks:
/// one task per rayon thread (at most [`MAX_TASKS`]), each at least
/// [`MIN_CHUNK`] long and a multiple of 16.
///
/// Each task packs the other operand once more (matrixmultiply packs both
/// operands per call), so there are as few tasks as there are threads. The
/// split may depend on the thread count without changing any result: every
/// entry of `C` is computed by the same serial kernel over the same `k`
/// blocks in the same order whichever chunk it falls in (tested bitwise
/// against the serial product for several thread counts).
pub fn chunk_len(dim: usize) -> usize {
    let tasks = rayon::current_num_threads().clamp(1, MAX_TASKS);
    let per_task = dim.div_ceil(tasks).div_ceil(16) * 16;
    per_task.max(MIN_CHUNK)
}

/// `C ← α·A·B + β·C`, parallel over chunks of the larger of C's two
/// dimensions (see [`chunk_len`]) when the product is large enough and
/// [`super::side_by_side::products_may_split`].
pub fn gemm<T: Scalar>(
    alpha: T,
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    beta: T,
    mut c: ArrayViewMut2<T>,
) {
    let (m, k, n) = check_shapes(&a, &b, &c);
    if m.max(n) <= MIN_CHUNK
        || m.saturating_mul(k).saturating_mul(n) < PARALLEL_MIN_FLOPS
        || !super::side_by_side::products_may_split()
    {
        gemm_serial(alpha, a, b, beta, c);
        return;
    }
    if m >= n {
        let rows = chunk_len(m);
        a.axis_chunks_iter(Axis(0), rows)
            .into_par_iter()
            .zip(c.axis_chunks_iter_mut(Axis(0), rows))
            .for_each(|(ap, cp)| gemm_serial(alpha, ap, b, beta, cp));
    } else {
        let cols = chunk_len(n);
        b.axis_chunks_iter(Axis(1), cols)
            .into_par_iter()
            .zip(c.axis_chunks_iter_mut(Axis(1), cols))
            .for_each(|(bp, cp)| gemm_serial(alpha, a, bp, beta, cp));
    }
}

/// `C ← α·A·B + β·C` in f32 through `matrixmultiply::sgemm` always, on any
/// strided views: what [`gemm_serial`] computes bit for bit whichever
/// kernel it takes (the tests and the `gemm_kernel` benchmark compare the
/// two).
pub fn sgemm_matrixmultiply(
    alpha: f32,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    beta: f32,
    mut c: ArrayViewMut2<f32>,
) {
    let (m, k, n) = check_shapes(&a, &b, &c);
    let (rsc, csc) = (c.strides()[0], c.strides()[1]);
    // SAFETY: the three views guarantee that every element (i, j) inside
    // their dimensions is in bounds at the given strides; `c` is a unique
    // mutable view, so it aliases neither `a` nor `b`. matrixmultiply only
    // reads `a`, `b` and writes `c` in bounds (nothing when m, k or n is 0
    // besides scaling C by β).
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            a.strides()[0],
            a.strides()[1],
            b.as_ptr(),
            b.strides()[0],
            b.strides()[1],
            beta,
            c.as_mut_ptr(),
            rsc,
            csc,
        )
    }
}

/// `C ← α·A·B + β·C` in f32 through our kernel ([`super::gemm_avx512`])
/// with register tile `tile`, whatever [`super::gemm_choice`] chose, where it can
/// run (x86-64 with AVX-512, a row-contiguous `C`, no empty dimension);
/// through [`sgemm_matrixmultiply`] otherwise. For the kernel's timing and
/// the benchmarks.
pub fn sgemm_own(
    tile: Tile,
    alpha: f32,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    beta: f32,
    c: ArrayViewMut2<f32>,
) {
    sgemm_own_skip(tile, alpha, a, b, beta, c, Skip::None);
}

/// [`sgemm_own`] leaving out what `skip` says (as [`gemm_serial_skip`]),
/// where our kernel runs; the whole product otherwise.
pub fn sgemm_own_skip(
    tile: Tile,
    alpha: f32,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    beta: f32,
    mut c: ArrayViewMut2<f32>,
    skip: Skip,
) {
    let (m, k, n) = check_shapes(&a, &b, &c);
    #[cfg(target_arch = "x86_64")]
    if m > 0 && k > 0 && n > 0 && c.strides()[1] == 1 && super::simd::has_avx512() {
        // SAFETY: `f32`; the CPU has AVX-512F, m, k, n > 0 and `c` has
        // unit column stride (all checked).
        unsafe { own_kernel_on(tile, alpha, &a, &b, beta, &mut c, skip) };
        return;
    }
    let _ = (tile, skip);
    sgemm_matrixmultiply(alpha, a, b, beta, c)
}

/// `C ← α·A·B + β·C` through [`super::gemm_avx512`] on views of `T`.
///
/// # Safety
///
/// `T` must be `f32`, the CPU must have AVX-512F, `m, k, n > 0`, and `c`
/// must have unit column stride.
#[cfg(target_arch = "x86_64")]
unsafe fn own_kernel_on<T: Scalar>(
    tile: Tile,
    alpha: T,
    a: &ArrayView2<T>,
    b: &ArrayView2<T>,
    beta: T,
    c: &mut ArrayViewMut2<T>,
    skip: Skip,
) {
    // SAFETY: `T` is `f32` (the caller's contract), so the pointer casts
    // do not change the element type; the CPU has AVX-512F and the
    // dimensions are nonzero (the caller's contract). The views guarantee
    // that every element inside their dimensions is in bounds at the given
    // strides, and `c` is a unique mutable view with unit column stride, so
    // its entries are distinct and alias neither `a` nor `b`.
    unsafe {
        super::gemm_avx512::sgemm(
            tile,
            a.nrows(),
            a.ncols(),
            b.ncols(),
            alpha.as_f32(),
            a.as_ptr() as *const f32,
            a.strides()[0],
            a.strides()[1],
            b.as_ptr() as *const f32,
            b.strides()[0],
            b.strides()[1],
            beta.as_f32(),
            c.as_mut_ptr() as *mut f32,
            c.strides()[0],
            skip,
        )
    }
}

/// `α·A·B` into a new matrix, without zero-filling it first (the product
/// with `β = 0` writes every entry).
pub fn gemm_alloc<T: Scalar>(alpha: T, a: ArrayView2<T>, b: ArrayView2<T>) -> Array2<T> {
    let (m, n) = (a.nrows(), b.ncols());
    let mut c = Array2::<T>::uninit((m, n));
    // SAFETY: `c` is a freshly allocated, contiguous m×n buffer of
    // `MaybeUninit<T>`, which has the layout of `T`; the view covers exactly
    // that buffer. With β = 0 no kernel reads C: matrixmultiply documents
    // that C need not be initialised when β is zero, the k = 0 path fills
    // it, and the generic fallback reads C only when β ≠ 0. Every entry is
    // therefore written before `assume_init`.
    unsafe {
        let view = ArrayViewMut2::from_shape_ptr((m, n), c.as_mut_ptr() as *mut T);
        gemm(alpha, a, b, T::zero(), view);
        c.assume_init()
    }
}

/// Plain triple loop `C ← α·A·B + β·C` (the reference the fast kernel is
/// tested against).
pub fn gemm_reference<T: Scalar>(
    alpha: T,
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    beta: T,
    mut c: ArrayViewMut2<T>,
) {
    let (m, k, n) = check_shapes(&a, &b, &c);
    for i in 0..m {
        for j in 0..n {
            let mut s = T::zero();
            for p in 0..k {
                s += a[(i, p)] * b[(p, j)];
            }
            let old = if beta == T::zero() {
                T::zero()
            } else {
                beta * c[(i, j)]
            };
            c[(i, j)] = alpha * s + old;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn rand_mat(rng: &mut ChaCha8Rng, r: usize, c: usize) -> Array2<f64> {
        Array2::from_shape_fn((r, c), |_| rng.random_range(-1.0..1.0))
    }

    #[test]
    fn matches_reference_with_transposes_and_panels() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for &(m, k, n) in &[
            (1, 1, 1),
            (3, 5, 2),
            (130, 70, 90),
            (200, 33, 65),
            (5, 0, 3),
        ] {
            let a = rand_mat(&mut rng, m, k);
            let at = rand_mat(&mut rng, k, m);
            let b = rand_mat(&mut rng, k, n);
            let c0 = rand_mat(&mut rng, m, n);
            for (av, beta) in [(a.view(), 0.0), (at.t(), 0.5)] {
                let mut want = c0.clone();
                gemm_reference(1.5, av, b.view(), beta, want.view_mut());
                let mut got = c0.clone();
                gemm(1.5, av, b.view(), beta, got.view_mut());
                let mut got32 = c0.mapv(|x| x as f32);
                gemm(
                    1.5f32,
                    av.mapv(|x| x as f32).view(),
                    b.mapv(|x| x as f32).view(),
                    beta as f32,
                    got32.view_mut(),
                );
                for ((w, g), g32) in want.iter().zip(&got).zip(&got32) {
                    assert!((w - g).abs() < 1e-12, "{m}x{k}x{n}: {w} vs {g}");
                    assert!((w - *g32 as f64).abs() < 1e-4, "{m}x{k}x{n}: {w} vs {g32}");
                }
            }
        }
    }

    #[test]
    fn gemm_alloc_writes_every_entry() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for &(m, k, n) in &[(3, 4, 5), (300, 20, 40), (7, 0, 2), (0, 3, 3)] {
            let a = rand_mat(&mut rng, m, k);
            let b = rand_mat(&mut rng, k, n);
            let mut want = Array2::zeros((m, n));
            gemm_reference(2.0, a.view(), b.view(), 0.0, want.view_mut());
            let got = gemm_alloc(2.0, a.view(), b.view());
            assert!(want.iter().zip(&got).all(|(w, g)| (w - g).abs() < 1e-12));
        }
    }

    /// `gemm` on f32 views (strided, reversed, transposed) gives exactly
    /// what `matrixmultiply::sgemm` gives on the same views
    /// ([`sgemm_matrixmultiply`]), whichever kernel `gemm_choice` picks.
    #[test]
    fn f32_products_are_bitwise_those_of_matrixmultiply() {
        use ndarray::s;
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let a_store = rand_mat(&mut rng, 90, 140).mapv(|x| x as f32);
        let b_store = rand_mat(&mut rng, 140, 150).mapv(|x| x as f32);
        let a_views = [
            a_store.slice(s![..45, ..70]),
            a_store.slice(s![..;2, ..;2]),
            a_store.slice(s![..;-1, 5..75]),
            a_store.slice(s![..70, ..45]).reversed_axes(),
        ];
        let b_views = [
            b_store.slice(s![..70, ..]),
            b_store.slice(s![..;2, 3..]),
            b_store.slice(s![..70;-1, ..;-3]),
            b_store.slice(s![..77, ..70]).reversed_axes(),
        ];
        for a in &a_views {
            for b in &b_views {
                let (m, k, n) = (a.nrows(), a.ncols().min(b.nrows()), b.ncols());
                let (a, b) = (a.slice(s![.., ..k]), b.slice(s![..k, ..]));
                for (alpha, beta) in [(1.0f32, 0.0f32), (0.3, 1.0), (1.0, 0.5)] {
                    let c0 = rand_mat(&mut rng, m, n).mapv(|x| x as f32);
                    let mut want = c0.clone();
                    sgemm_matrixmultiply(alpha, a, b, beta, want.view_mut());
                    // Through the kernel chosen for this CPU, and through
                    // ours whichever was chosen.
                    let mut got = c0.clone();
                    gemm(alpha, a, b, beta, got.view_mut());
                    let own = Tile::ALL.map(|tile| {
                        let mut own = c0.clone();
                        sgemm_own(tile, alpha, a, b, beta, own.view_mut());
                        own
                    });
                    for got in [&got, &own[0], &own[1]] {
                        assert!(
                            want.iter()
                                .zip(got)
                                .all(|(w, g)| w.to_bits() == g.to_bits()),
                            "{m}x{k}x{n} strides {:?} {:?}",
                            a.strides(),
                            b.strides()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn same_result_for_any_thread_count() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for &(m, k, n, transposed) in &[
            (300, 80, 70, false),
            (70, 500, 260, true),
            (1000, 64, 130, false),
        ] {
            let a = rand_mat(&mut rng, m, k).mapv(|x| x as f32);
            let at = a.t().as_standard_layout().into_owned();
            let b = rand_mat(&mut rng, k, n).mapv(|x| x as f32);
            let av = if transposed { at.t() } else { a.view() };
            let mut serial = Array2::<f32>::zeros((m, n));
            gemm_serial(1.0, av, b.view(), 0.0, serial.view_mut());
            for threads in [1, 2, 3, 4, 8] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut c = Array2::<f32>::zeros((m, n));
                pool.install(|| gemm(1.0, av, b.view(), 0.0, c.view_mut()));
                assert_eq!(c, serial, "{m}x{k}x{n} with {threads} threads");
            }
        }
    }

    #[test]
    fn products_kept_whole_side_by_side_give_the_same_result() {
        use crate::kernels::side_by_side::{products_may_split, SideBySide};
        use std::sync::Barrier;
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let a = rand_mat(&mut rng, 300, 90).mapv(|x| x as f32);
        let b = rand_mat(&mut rng, 90, 200).mapv(|x| x as f32);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            let mut split = Array2::<f32>::zeros((300, 200));
            gemm(1.0, a.view(), b.view(), 0.0, split.view_mut());
            // Two tasks on two threads: both products run whole.
            let group = SideBySide::new(2);
            let both_computed = Barrier::new(2);
            let whole = || {
                group.run(|| {
                    assert!(!products_may_split());
                    let mut c = Array2::<f32>::zeros((300, 200));
                    gemm(1.0, a.view(), b.view(), 0.0, c.view_mut());
                    both_computed.wait();
                    c
                })
            };
            let (c0, c1) = rayon::join(whole, whole);
            assert_eq!(c0, split);
            assert_eq!(c1, split);
        });
    }

    /// Every skip leaves each computed entry bitwise what the whole product
    /// gives, for both tiles, transposed (copied) and in-place `A`, several
    /// blocks of k, edge tiles and `β ≠ 0`; the zeros it skips are there.
    #[test]
    fn skips_change_no_computed_entry() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        // (50, 300, 32): a narrow B, which both tiles multiply with A's
        // rows read in place (`gemm_choice::narrow_rows_in_place`).
        for &(m, k, n) in &[
            (64, 32, 64),
            (37, 300, 53),
            (70, 520, 100),
            (13, 9, 130),
            (50, 300, 32),
        ] {
            for skip in [
                Skip::AboveDiagonalOfC,
                Skip::AHeadZeros,
                Skip::ATailZeros { offset: 0 },
                Skip::ATailZeros { offset: 40 },
            ] {
                let mut a = rand_mat(&mut rng, m, k).mapv(|x| x as f32);
                for ((i, p), x) in a.indexed_iter_mut() {
                    let zero = match skip {
                        Skip::AHeadZeros => p < i,
                        Skip::ATailZeros { offset } => p > i + offset,
                        _ => false,
                    };
                    if zero {
                        *x = 0.0;
                    }
                }
                // Where our kernel reads nothing, with either tile (rows in
                // blocks of 48, a multiple of both tiles' heights; a block
                // of k wholly inside a row's zeros still has one term read):
                // NaN there shows the skip really skips.
                let mut a_own = a.clone();
                if crate::kernels::simd::has_avx512() {
                    for ((i, p), x) in a_own.indexed_iter_mut() {
                        let first = i / 48 * 48;
                        // p's block of k, and its length.
                        let (pc, kc) = (p / 256 * 256, 256.min(k - p / 256 * 256));
                        let unread = match skip {
                            Skip::AHeadZeros => p < first && p - pc < kc - 1,
                            Skip::ATailZeros { offset } => p > first + 47 + offset && p != pc,
                            _ => false,
                        };
                        if unread {
                            *x = f32::NAN;
                        }
                    }
                }
                let b = rand_mat(&mut rng, k, n).mapv(|x| x as f32);
                let c0 = rand_mat(&mut rng, m, n).mapv(|x| x as f32);
                let (at, at_own) = (a.t().to_owned(), a_own.t().to_owned());
                for (a_view, a_own_view, how) in [
                    (a.view(), a_own.view(), "in place"),
                    (at.t(), at_own.t(), "transposed"),
                ] {
                    for tile in Tile::ALL {
                        for beta in [0.0, 0.5] {
                            let mut want = c0.clone();
                            sgemm_matrixmultiply(0.7, a_view, b.view(), beta, want.view_mut());
                            let mut got = c0.clone();
                            if skip == Skip::AboveDiagonalOfC {
                                for ((i, j), x) in got.indexed_iter_mut() {
                                    if j > i {
                                        *x = f32::NAN;
                                    }
                                }
                            }
                            sgemm_own_skip(
                                tile,
                                0.7,
                                a_own_view,
                                b.view(),
                                beta,
                                got.view_mut(),
                                skip,
                            );
                            for ((i, j), w) in want.indexed_iter() {
                                if skip == Skip::AboveDiagonalOfC && j > i {
                                    continue;
                                }
                                assert_eq!(
                                    w.to_bits(),
                                    got[[i, j]].to_bits(),
                                    "{m}x{k}x{n} {skip:?} {tile:?} {how} β {beta} at ({i}, {j})"
                                );
                            }
                            // Tiles wholly above the diagonal are not written
                            // (the NaN fill stays, on our kernel).
                            if skip == Skip::AboveDiagonalOfC
                                && crate::kernels::simd::has_avx512()
                                && m >= 64
                                && n >= 64
                            {
                                assert!(got[[0, n - 1]].is_nan(), "{m}x{k}x{n} {tile:?}");
                            }
                        }
                    }
                }
            }
        }
    }
}
