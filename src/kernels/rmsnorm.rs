//! Fused RMSNorm over the last axis of a row-major `[rows, h]` buffer.
//!
//! ```text
//! r     = 1 / sqrt(mean_j(x_j²) + ε)
//! x̂_j   = x_j·r
//! y_j   = x̂_j·w_j
//! backward, with d̂_j = dy_j·w_j:
//! dx_j  = r·(d̂_j − x̂_j·mean_k(d̂_k·x̂_k))
//! dw_j  = Σ_rows dy_j·x̂_j
//! ```
//!
//! Rows are processed in parallel in fixed blocks of [`ROW_BLOCK`] rows; the
//! weight gradient sums one partial per block in block order, so the result
//! does not depend on the thread count.

use std::mem::MaybeUninit;

use super::fresh::{input_chunk, par_chunks_uninit, zeroed};
use super::reduce::{dot, sum_squares};
use super::simd::{wide_simd_call, wide_simd_fn};
use crate::Scalar;

/// Rows per parallel task.
pub const ROW_BLOCK: usize = 32;

wide_simd_fn! {
    /// Rows of [`rmsnorm`]: `y` and `x` hold whole rows of `w.len()`
    /// entries, `r` one entry per row; every entry of `y` and `r` is
    /// written.
    fn rmsnorm_rows / rmsnorm_rows_wide [T: Scalar] (
        y: &mut [MaybeUninit<T>],
        r: &mut [MaybeUninit<T>],
        x: &[T],
        w: &[T],
        inv_h: T,
        eps: T,
    ) {
        let h = w.len();
        for ((yr, xr), ri) in y.chunks_exact_mut(h).zip(x.chunks_exact(h)).zip(r.iter_mut()) {
            let inv = T::one() / (sum_squares(xr) * inv_h + eps).sqrt();
            ri.write(inv);
            for ((o, &v), &wv) in yr.iter_mut().zip(xr).zip(w) {
                o.write(v * inv * wv);
            }
        }
    }
}

wide_simd_fn! {
    /// Rows of [`rmsnorm_backward`]: writes every entry of `dx` (whole
    /// rows of `w.len()` entries, one per row of `x` and `dy`) and adds
    /// each row's `dy_j·x̂_j` to `dw`.
    fn rmsnorm_backward_rows / rmsnorm_backward_rows_wide [T: Scalar] (
        dx: &mut [MaybeUninit<T>],
        dw: &mut [T],
        x: &[T],
        dy: &[T],
        r: &[T],
        w: &[T],
        inv_h: T,
    ) {
        let h = w.len();
        let mut xhat = vec![T::zero(); h];
        let mut dhat = vec![T::zero(); h];
        for (((dxr, xr), dyr), &ri) in dx
            .chunks_exact_mut(h)
            .zip(x.chunks_exact(h))
            .zip(dy.chunks_exact(h))
            .zip(r)
        {
            for ((((xh, dh), acc), &v), (&d, &wv)) in xhat
                .iter_mut()
                .zip(dhat.iter_mut())
                .zip(dw.iter_mut())
                .zip(xr)
                .zip(dyr.iter().zip(w))
            {
                *xh = v * ri;
                *dh = d * wv;
                *acc += d * *xh;
            }
            let m = dot(&dhat, &xhat) * inv_h;
            for ((o, &dh), &xh) in dxr.iter_mut().zip(&dhat).zip(&xhat) {
                o.write(ri * (dh - xh * m));
            }
        }
    }
}

/// Forward: returns new vectors `(y, r)` (`r` one per row, kept for the
/// backward).
pub fn rmsnorm<T: Scalar>(x: &[T], w: &[T], eps: T) -> (Vec<T>, Vec<T>) {
    let h = w.len();
    assert!(
        h > 0 && x.len().is_multiple_of(h),
        "rmsnorm: x has {} entries, weight {}",
        x.len(),
        h
    );
    let rows = x.len() / h;
    let inv_h = T::one() / T::of(h as f64);
    // SAFETY: block bi holds rows bi·ROW_BLOCK.. of y (h entries each)
    // and the same rows of r (one each), and x's chunk holds those rows
    // too (x has as many entries as y), so `rmsnorm_rows` writes every row
    // of y and its r, each of its h entries zipped with x's row and w (h
    // long).
    let [y, r] = unsafe {
        par_chunks_uninit(
            [x.len(), rows],
            [h * ROW_BLOCK, ROW_BLOCK],
            |bi, [yb, rb]| {
                let xb = input_chunk(x, bi, h * ROW_BLOCK);
                wide_simd_call!(rmsnorm_rows / rmsnorm_rows_wide(yb, rb, xb, w, inv_h, eps));
            },
        )
    };
    (y, r)
}

/// Backward: returns `(dx, dw)` given the `r` from the forward.
pub fn rmsnorm_backward<T: Scalar>(x: &[T], w: &[T], r: &[T], dy: &[T]) -> (Vec<T>, Vec<T>) {
    let h = w.len();
    let rows = r.len();
    assert!(
        x.len() == rows * h && dy.len() == x.len(),
        "rmsnorm_backward: shapes differ"
    );
    let inv_h = T::one() / T::of(h as f64);
    let blocks = rows.div_ceil(ROW_BLOCK);
    // dx, and one partial weight gradient of h entries per block of rows.
    // SAFETY: block bi's chunk of dx holds rows bi·ROW_BLOCK.. (h entries
    // each), and x's and dy's chunks hold the same rows (both have dx's
    // length), so `rmsnorm_backward_rows` writes every entry of it; the
    // partial dw (h entries) is zeroed before the rows add to it.
    let [dx, partials] = unsafe {
        par_chunks_uninit(
            [x.len(), blocks * h],
            [h * ROW_BLOCK, h],
            |bi, [dxb, dwb]| {
                let dw = zeroed(dwb);
                let (xb, dyb) = (
                    input_chunk(x, bi, h * ROW_BLOCK),
                    input_chunk(dy, bi, h * ROW_BLOCK),
                );
                let rb = input_chunk(r, bi, ROW_BLOCK);
                wide_simd_call!(
                    rmsnorm_backward_rows
                        / rmsnorm_backward_rows_wide(dxb, dw, xb, dyb, rb, w, inv_h)
                );
            },
        )
    };
    let mut dw = vec![T::zero(); h];
    for p in partials.chunks_exact(h) {
        for (a, &b) in dw.iter_mut().zip(p) {
            *a += b;
        }
    }
    (dx, dw)
}

/// Plain per-row forward (reference): `y`.
pub fn rmsnorm_reference<T: Scalar>(x: &[T], w: &[T], eps: T) -> Vec<T> {
    let h = w.len();
    let mut y = vec![T::zero(); x.len()];
    for row in 0..x.len() / h {
        let mut ms = T::zero();
        for j in 0..h {
            ms += x[row * h + j] * x[row * h + j];
        }
        let r = T::one() / (ms / T::of(h as f64) + eps).sqrt();
        for j in 0..h {
            y[row * h + j] = x[row * h + j] * r * w[j];
        }
    }
    y
}

/// Plain per-row backward (reference): `(dx, dw)`.
pub fn rmsnorm_backward_reference<T: Scalar>(
    x: &[T],
    w: &[T],
    eps: T,
    dy: &[T],
) -> (Vec<T>, Vec<T>) {
    let h = w.len();
    let hf = T::of(h as f64);
    let mut dx = vec![T::zero(); x.len()];
    let mut dw = vec![T::zero(); h];
    for row in 0..x.len() / h {
        let xr = &x[row * h..(row + 1) * h];
        let dyr = &dy[row * h..(row + 1) * h];
        let ms = xr.iter().fold(T::zero(), |a, &v| a + v * v) / hf;
        let r = T::one() / (ms + eps).sqrt();
        let mut m = T::zero();
        for j in 0..h {
            m += dyr[j] * w[j] * xr[j] * r;
            dw[j] += dyr[j] * xr[j] * r;
        }
        m /= hf;
        for j in 0..h {
            dx[row * h + j] = r * (dyr[j] * w[j] - xr[j] * r * m);
        }
    }
    (dx, dw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_reference() {
        let (rows, h) = (70, 12);
        let x: Vec<f64> = (0..rows * h)
            .map(|i| ((i * 31 % 19) as f64 - 9.0) * 0.2)
            .collect();
        let w: Vec<f64> = (0..h).map(|i| 0.5 + 0.1 * i as f64).collect();
        let dy: Vec<f64> = (0..rows * h)
            .map(|i| ((i * 7 % 13) as f64 - 6.0) * 0.1)
            .collect();
        let (y, r) = rmsnorm(&x, &w, 1e-5);
        let want = rmsnorm_reference(&x, &w, 1e-5);
        assert!(y.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-12));
        let (dx, dw) = rmsnorm_backward(&x, &w, &r, &dy);
        let (wdx, wdw) = rmsnorm_backward_reference(&x, &w, 1e-5, &dy);
        assert!(dx.iter().zip(&wdx).all(|(a, b)| (a - b).abs() < 1e-12));
        assert!(dw.iter().zip(&wdw).all(|(a, b)| (a - b).abs() < 1e-12));
    }
}
