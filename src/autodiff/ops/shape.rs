//! Shape ops: reshape, permute/transpose, slice, concat, split.
//!
//! ```text
//! reshape:   ā += reshape(ḡ, shape(a))
//! permute:   ā += permute(ḡ, inverse permutation)       (no copy either way)
//! slice:     ā[range] += ḡ
//! concat:    ā_i += ḡ[range_i]
//! ```

use ndarray::{ArrayD, Axis, IxDyn, Slice};

use super::{contiguous, contiguous_owned};
use crate::autodiff::{Tape, Var};
use crate::Scalar;

impl<T: Scalar> Tape<T> {
    /// Row-major reshape (no copy when `a` is contiguous).
    pub fn reshape(&self, a: Var, shape: &[usize]) -> Var {
        let av = contiguous(self.value(a));
        let in_shape = av.shape().to_vec();
        let y = av
            .into_shape_with_order(IxDyn(shape))
            .unwrap_or_else(|e| panic!("reshape: {in_shape:?} → {shape:?}: {e}"));
        self.push_op(y, &[a], move |g, s| {
            let g = contiguous_owned(g)
                .into_shape_with_order(IxDyn(&in_shape))
                .expect("sizes match");
            s.add(a, g);
        })
    }

    /// Axis permutation: output axis `i` is input axis `axes[i]` (a view, no copy).
    pub fn permute(&self, a: Var, axes: &[usize]) -> Var {
        let av = self.value(a);
        let mut seen = vec![false; av.ndim()];
        assert!(
            axes.len() == av.ndim()
                && axes
                    .iter()
                    .all(|&x| x < seen.len() && !std::mem::replace(&mut seen[x], true)),
            "permute: {axes:?} is not a permutation of the axes of {:?}",
            av.shape()
        );
        let y = av.permuted_axes(IxDyn(axes));
        let mut inverse = vec![0; axes.len()];
        for (i, &x) in axes.iter().enumerate() {
            inverse[x] = i;
        }
        self.push_op(y, &[a], move |g, s| {
            s.add(a, g.permuted_axes(IxDyn(&inverse)))
        })
    }

    /// Swaps axes `i` and `j` (a view, no copy).
    pub fn transpose(&self, a: Var, i: usize, j: usize) -> Var {
        let mut axes: Vec<usize> = (0..self.shape(a).len()).collect();
        axes.swap(i, j);
        self.permute(a, &axes)
    }

    /// `a[.., start..end, ..]` along `axis` (a view, no copy).
    pub fn slice(&self, a: Var, axis: usize, start: usize, end: usize) -> Var {
        let av = self.value(a);
        assert!(
            axis < av.ndim() && start <= end && end <= av.shape()[axis],
            "slice: axis {axis} range {start}..{end} of {:?}",
            av.shape()
        );
        let shape = av.shape().to_vec();
        let mut y = av;
        y.slice_axis_inplace(Axis(axis), Slice::from(start..end));
        self.push_op(y, &[a], move |g, s| {
            let mut full = ArrayD::zeros(IxDyn(&shape));
            full.slice_axis_mut(Axis(axis), Slice::from(start..end))
                .assign(&g);
            s.add(a, full);
        })
    }

    /// Concatenation along `axis`.
    pub fn concat(&self, parts: &[Var], axis: usize) -> Var {
        assert!(!parts.is_empty(), "concat: no inputs");
        let vals: Vec<_> = parts.iter().map(|&p| self.value(p)).collect();
        let views: Vec<_> = vals.iter().map(|v| v.view()).collect();
        let y = ndarray::concatenate(Axis(axis), &views).unwrap_or_else(|e| {
            panic!(
                "concat: shapes {:?} along axis {axis}: {e}",
                vals.iter().map(|v| v.shape().to_vec()).collect::<Vec<_>>()
            )
        });
        let sizes: Vec<usize> = vals.iter().map(|v| v.shape()[axis]).collect();
        let parts_v = parts.to_vec();
        self.push_op(y, parts, move |g, s| {
            let mut start = 0;
            for (&p, &n) in parts_v.iter().zip(&sizes) {
                if s.wants(p) {
                    s.add(
                        p,
                        g.slice_axis(Axis(axis), Slice::from(start..start + n))
                            .to_owned(),
                    );
                }
                start += n;
            }
        })
    }

    /// Splits `a` along `axis` into parts of the given sizes (views).
    pub fn split(&self, a: Var, axis: usize, sizes: &[usize]) -> Vec<Var> {
        let total: usize = sizes.iter().sum();
        assert_eq!(
            total,
            self.shape(a)[axis],
            "split: sizes {sizes:?} along axis {axis} of {:?}",
            self.shape(a)
        );
        let mut start = 0;
        sizes
            .iter()
            .map(|&n| {
                let v = self.slice(a, axis, start, start + n);
                start += n;
                v
            })
            .collect()
    }
}
