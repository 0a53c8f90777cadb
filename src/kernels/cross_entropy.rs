//! Row-wise log-softmax and mean cross-entropy over integer targets.
//!
//! For logits `z` of `n` rows and `V` columns, targets `y_r` (a target
//! `< 0` — Hugging Face uses −100 — ignores the row), `c` counted rows and
//! a denominator `N` (`N = c` for the mean over these rows; a larger `N`
//! when these rows are one shard of a batch whose mean is taken over `N`):
//!
//! ```text
//! lse_r = m_r + ln Σ_j exp(z_rj − m_r),   m_r = max_j z_rj
//! S     = Σ_{r counted} (lse_r − z_{r,y_r})     (summed in row order in f64)
//! L     = S / N
//! ∂L/∂z_rj = (g/N)·(exp(z_rj − lse_r) − [j = y_r])   for counted rows, else 0
//! ```
//!
//! With `N = 0` (no counted row) the loss is 0 and the gradient is 0.

use rayon::prelude::*;

use crate::Scalar;

/// Rows per parallel task.
pub const ROW_BLOCK: usize = 16;

/// `lse_r` for every row.
pub fn logsumexp_rows<T: Scalar>(z: &[T], v: usize) -> Vec<T> {
    assert!(
        v > 0 && z.len().is_multiple_of(v),
        "logsumexp_rows: {} entries are not rows of {v}",
        z.len()
    );
    let mut lse = vec![T::zero(); z.len() / v];
    lse.par_chunks_mut(ROW_BLOCK)
        .zip(z.par_chunks(v * ROW_BLOCK))
        .for_each(|(lb, zb)| {
            for (l, row) in lb.iter_mut().zip(zb.chunks_exact(v)) {
                let m = row.iter().fold(T::neg_infinity(), |a, &x| a.max(x));
                let mut s = T::zero();
                for &x in row {
                    s += (x - m).exp();
                }
                *l = m + s.ln();
            }
        });
    lse
}

/// Forward: `(S, lse, counted rows)`, `S` the f64 sum of the counted
/// rows' losses (the loss is `S / N`, see [`mean_over`]).
pub fn cross_entropy_sum<T: Scalar>(z: &[T], v: usize, targets: &[i64]) -> (f64, Vec<T>, usize) {
    let lse = logsumexp_rows(z, v);
    assert_eq!(
        lse.len(),
        targets.len(),
        "cross_entropy: {} rows but {} targets",
        lse.len(),
        targets.len()
    );
    let mut total = 0.0f64;
    let mut count = 0usize;
    for (r, &y) in targets.iter().enumerate() {
        if y < 0 {
            continue;
        }
        let y = y as usize;
        assert!(
            y < v,
            "cross_entropy: target {y} out of range for {v} classes"
        );
        total += (lse[r] - z[r * v + y]).as_f64();
        count += 1;
    }
    (total, lse, count)
}

/// `S / N` rounded to `T` once; 0 when `N = 0`.
pub fn mean_over<T: Scalar>(total: f64, denom: usize) -> T {
    if denom == 0 {
        T::zero()
    } else {
        T::of(total / denom as f64)
    }
}

/// Forward of the mean over the counted rows: `(L, lse, counted rows)`.
pub fn cross_entropy<T: Scalar>(z: &[T], v: usize, targets: &[i64]) -> (T, Vec<T>, usize) {
    let (total, lse, count) = cross_entropy_sum(z, v, targets);
    (mean_over(total, count), lse, count)
}

/// Backward: `∂(g·L)/∂z` for `L = S / denom` (`denom` = the counted rows
/// for the mean over these rows).
pub fn cross_entropy_backward<T: Scalar>(
    z: &[T],
    v: usize,
    targets: &[i64],
    lse: &[T],
    denom: usize,
    g: T,
) -> Vec<T> {
    let mut dz = vec![T::zero(); z.len()];
    if denom == 0 {
        return dz;
    }
    let scale = g / T::of(denom as f64);
    dz.par_chunks_mut(v * ROW_BLOCK)
        .zip(z.par_chunks(v * ROW_BLOCK))
        .zip(targets.par_chunks(ROW_BLOCK).zip(lse.par_chunks(ROW_BLOCK)))
        .for_each(|((db, zb), (tb, lb))| {
            for (((drow, zrow), &y), &l) in db
                .chunks_exact_mut(v)
                .zip(zb.chunks_exact(v))
                .zip(tb)
                .zip(lb)
            {
                if y < 0 {
                    continue;
                }
                for (d, &x) in drow.iter_mut().zip(zrow) {
                    *d = scale * (x - l).exp();
                }
                drow[y as usize] -= scale;
            }
        });
    dz
}

/// Plain reference loss.
pub fn cross_entropy_reference<T: Scalar>(z: &[T], v: usize, targets: &[i64]) -> T {
    let mut total = 0.0f64;
    let mut count = 0;
    for (r, &y) in targets.iter().enumerate() {
        if y < 0 {
            continue;
        }
        let row: Vec<f64> = z[r * v..(r + 1) * v].iter().map(|x| x.as_f64()).collect();
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + row.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
        total += lse - row[y as usize];
        count += 1;
    }
    if count == 0 {
        T::zero()
    } else {
        T::of(total / count as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_reference_and_differences() {
        let v = 7;
        let z: Vec<f64> = (0..40 * v)
            .map(|i| ((i * 13 % 29) as f64 - 14.0) * 0.3)
            .collect();
        let t: Vec<i64> = (0..40)
            .map(|r| if r % 5 == 0 { -100 } else { (r * 3 % 7) as i64 })
            .collect();
        let (loss, lse, count) = cross_entropy(&z, v, &t);
        assert!((loss - cross_entropy_reference(&z, v, &t)).abs() < 1e-12);
        let dz = cross_entropy_backward(&z, v, &t, &lse, count, 1.0);
        for i in (0..z.len()).step_by(3) {
            let mut zp = z.clone();
            zp[i] += 1e-6;
            let mut zm = z.clone();
            zm[i] -= 1e-6;
            let num =
                (cross_entropy_reference(&zp, v, &t) - cross_entropy_reference(&zm, v, &t)) / 2e-6;
            assert!((num - dz[i]).abs() < 1e-8);
        }
    }
}
