//! Log-softmax and cross-entropy over the last axis.
//!
//! ```text
//! y = log_softmax(x) = x − lse(x):      x̄ += ḡ − softmax(x)·Σ_j ḡ_j
//! L = mean over counted rows of −log_softmax(z)[y_r]   (targets < 0 ignored)
//! L_share = Σ over counted rows of −log_softmax(z)[y_r] / N   (one shard of N rows)
//! ```
//! (cross-entropy equations in `crate::kernels::cross_entropy`).

use ndarray::{ArrayD, IxDyn};

use super::{contiguous, contiguous_owned, flat};
use crate::autodiff::{Tape, Var};
use crate::kernels::cross_entropy::mean_over;
use crate::Scalar;

impl<T: Scalar> Tape<T> {
    /// Log-softmax over the last axis.
    pub fn log_softmax(&self, x: Var) -> Var {
        let xv = contiguous(self.value(x));
        let v = *xv.shape().last().expect("log_softmax: 0-d input");
        let k = self.kernels();
        let lse = k.logsumexp_rows(flat(&xv), v);
        let mut y = xv.to_owned();
        for (row, &l) in y
            .as_slice_mut()
            .expect("standard layout")
            .chunks_exact_mut(v)
            .zip(&lse)
        {
            for e in row {
                *e -= l;
            }
        }
        let y = y.into_shared();
        let yc = y.clone();
        self.push_op(y, &[x], move |g, s| {
            let mut g = contiguous_owned(g);
            let ys = flat(&yc);
            for (gr, yr) in g
                .as_slice_mut()
                .expect("standard layout")
                .chunks_exact_mut(v)
                .zip(ys.chunks_exact(v))
            {
                let total = k.sum(gr);
                for (a, &b) in gr.iter_mut().zip(yr) {
                    *a -= b.exp() * total;
                }
            }
            s.add(x, g);
        })
    }

    /// Mean cross-entropy of `logits: [.., V]` against one target per row
    /// (`targets.len()` = number of rows; a negative target, e.g. −100, is
    /// ignored). A 0-d result; 0 when no row is counted. Panics on a target
    /// ≥ V (callers validate labels first).
    pub fn cross_entropy(&self, logits: Var, targets: &[i64]) -> Var {
        self.cross_entropy_over(logits, targets, None).0
    }

    /// This rows' share `S / denom` of a mean cross-entropy taken over
    /// `denom` rows in all (`S` the f64 sum of these counted rows' losses,
    /// returned beside the 0-d variable): one shard of a batch, whose shares
    /// add up to the batch's mean and whose gradients are the batch's,
    /// row for row. 0 when `denom = 0`. Panics as [`Tape::cross_entropy`].
    pub fn cross_entropy_share(&self, logits: Var, targets: &[i64], denom: usize) -> (Var, f64) {
        self.cross_entropy_over(logits, targets, Some(denom))
    }

    /// `S / denom`, `denom` these rows' count when `None`.
    fn cross_entropy_over(&self, logits: Var, targets: &[i64], denom: Option<usize>) -> (Var, f64) {
        let zv = contiguous(self.value(logits));
        let v = *zv.shape().last().expect("cross_entropy: 0-d logits");
        let k = self.kernels();
        let (total, lse, count) = k.cross_entropy_sum(flat(&zv), v, targets);
        let denom = denom.unwrap_or(count);
        let y = ArrayD::from_elem(IxDyn(&[]), mean_over::<T>(total, denom));
        let targets = targets.to_vec();
        let var = self.push_op(y, &[logits], move |g, s| {
            let gv = g.iter().next().copied().unwrap_or_else(T::zero);
            let dz = k.cross_entropy_backward(flat(&zv), v, &targets, &lse, denom, gv);
            s.add(
                logits,
                ArrayD::from_shape_vec(IxDyn(zv.shape()), dz).expect("sizes match"),
            );
        });
        (var, total)
    }
}
