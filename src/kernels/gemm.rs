//! General matrix multiply `C ← α·A·B + β·C` over strided views.
//!
//! `A` is `m×k`, `B` is `k×n`, `C` is `m×n`; each may have arbitrary (row,
//! column) strides, so `A` or `B` may be a transposed view (`.t()`) of a
//! contiguous matrix without any copy. f32 and f64 go to `matrixmultiply`'s
//! `sgemm` / `dgemm`. [`gemm`] splits `C` into
//! large fixed chunks computed in parallel; the split depends only on the
//! shapes, and each output entry is computed by the same serial kernel, so
//! the result does not depend on the number of threads.

use ndarray::{ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;
use std::any::TypeId;

use crate::Scalar;

/// Smallest chunk (rows or columns of `C`) of one parallel task in [`gemm`].
pub const MIN_CHUNK: usize = 128;

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
    mut c: ArrayViewMut2<T>,
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

/// The split of one dimension of `C` into parallel tasks: chunks of at
/// least [`MIN_CHUNK`] (a multiple of 16), at most [`MAX_TASKS`] of them. It
/// depends only on the length, never on the thread count.
pub fn chunk_len(dim: usize) -> usize {
    let per_task = dim.div_ceil(MAX_TASKS).div_ceil(16) * 16;
    per_task.max(MIN_CHUNK)
}

/// `C ← α·A·B + β·C`, parallel over fixed chunks of the larger of C's two
/// dimensions when the product is large enough. Each task packs the other
/// operand once (matrixmultiply packs both operands per call), so chunks
/// are large: at least [`MIN_CHUNK`] rows or columns, at most [`MAX_TASKS`]
/// tasks. Every entry of `C` is computed by the same serial kernel with the
/// same `k` order whatever the split, and the split depends only on shapes.
pub fn gemm<T: Scalar>(
    alpha: T,
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    beta: T,
    mut c: ArrayViewMut2<T>,
) {
    let (m, k, n) = check_shapes(&a, &b, &c);
    if m.max(n) <= MIN_CHUNK || m.saturating_mul(k).saturating_mul(n) < PARALLEL_MIN_FLOPS {
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
    fn same_result_for_any_thread_count() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let a = rand_mat(&mut rng, 300, 80).mapv(|x| x as f32);
        let b = rand_mat(&mut rng, 80, 70).mapv(|x| x as f32);
        let mut serial = Array2::<f32>::zeros((300, 70));
        gemm_serial(1.0, a.view(), b.view(), 0.0, serial.view_mut());
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut c = Array2::<f32>::zeros((300, 70));
            pool.install(|| gemm(1.0, a.view(), b.view(), 0.0, c.view_mut()));
            c
        };
        assert_eq!(run(1), run(3));
        assert_eq!(run(2), serial);
    }
}
