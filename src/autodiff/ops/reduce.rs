//! Sums and means.
//!
//! ```text
//! y = Σ_{axes} a:        ā += broadcast(ḡ)
//! y = mean_{axes} a:     ā += broadcast(ḡ) / n     (n = entries per output)
//! ```

use ndarray::{ArrayD, Axis, IxDyn};

use super::contiguous;
use crate::autodiff::{Tape, Var};
use crate::Scalar;

impl<T: Scalar> Tape<T> {
    /// Sum of all entries (a 0-d result).
    pub fn sum_all(&self, a: Var) -> Var {
        let av = contiguous(self.value(a));
        let total = crate::kernels::reduce::sum(av.as_slice().expect("standard layout"));
        let shape = av.shape().to_vec();
        self.push_op(ArrayD::from_elem(IxDyn(&[]), total), &[a], move |g, s| {
            let gv = g.iter().next().copied().unwrap_or_else(T::zero);
            s.add(a, ArrayD::from_elem(IxDyn(&shape), gv));
        })
    }

    /// Mean of all entries (a 0-d result).
    pub fn mean_all(&self, a: Var) -> Var {
        let n = self.value(a).len();
        let s = self.sum_all(a);
        self.mul_scalar(s, T::one() / T::of(n as f64))
    }

    /// Sum over `axes` (distinct, in range), keeping them as size-one axes
    /// when `keep_dims`.
    pub fn sum_axes(&self, a: Var, axes: &[usize], keep_dims: bool) -> Var {
        let av = self.value(a);
        let in_shape = av.shape().to_vec();
        let mut sorted = axes.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert!(
            sorted.iter().all(|&ax| ax < in_shape.len()),
            "sum_axes: axes {axes:?} for shape {in_shape:?}"
        );
        let mut y = av.to_owned();
        for &ax in sorted.iter().rev() {
            y = y.sum_axis(Axis(ax));
            if keep_dims {
                y = y.insert_axis(Axis(ax));
            }
        }
        self.push_op(y, &[a], move |g, s| {
            let mut g = g;
            if !keep_dims {
                for &ax in &sorted {
                    g = g.insert_axis(Axis(ax));
                }
            }
            let full = g
                .broadcast(IxDyn(&in_shape))
                .expect("broadcast back")
                .to_owned();
            s.add(a, full);
        })
    }

    /// Mean over `axes`.
    pub fn mean_axes(&self, a: Var, axes: &[usize], keep_dims: bool) -> Var {
        let shape = self.shape(a);
        let mut sorted = axes.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let n: usize = sorted.iter().map(|&ax| shape[ax]).product();
        let s = self.sum_axes(a, &sorted, keep_dims);
        self.mul_scalar(s, T::one() / T::of(n as f64))
    }
}
