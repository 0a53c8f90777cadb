//! Matrix products.
//!
//! ```text
//! y = a·b     a: [.., m, k], b: [k, n]        ā += ḡ·bᵀ,  b̄ += Σ_batch aᵀ·ḡ
//! y = a·b     a: [B, m, k],  b: [B, k, n]     ā_i += ḡ_i·b_iᵀ,  b̄_i += a_iᵀ·ḡ_i
//! y = x·wᵀ    x: [.., k],    w: [n, k]        x̄ += ḡ·w,   w̄ += ḡᵀ·x      (linear)
//! ```
//!
//! Transposed operands are strided views handed to the gemm kernel, never
//! copies. Leading axes of a 2-D-weight product are merged into one big gemm.

use ndarray::{ArrayBase, ArrayView2, Axis, Data, Ix2, Ix3, IxDyn};
use rayon::prelude::*;

use super::{contiguous, contiguous_owned};
use crate::autodiff::{Kernels, Tape, Value, Var};
use crate::Scalar;

/// `v` (standard layout, ≥ 1-D) as a 2-D view `[rows, last]`.
fn as_rows<S: Data<Elem = T>, T>(v: &ArrayBase<S, IxDyn>) -> ArrayView2<'_, T> {
    let last = *v.shape().last().expect("at least 1-D");
    let rows = v.len().checked_div(last).unwrap_or(0);
    v.view()
        .into_shape_with_order((rows, last))
        .expect("standard layout")
}

fn view2<T>(v: &Value<T>) -> ArrayView2<'_, T> {
    v.view().into_dimensionality::<Ix2>().expect("2-D")
}

fn gemm_new<T: Scalar>(
    k: &dyn Kernels<T>,
    a: ArrayView2<T>,
    b: ArrayView2<T>,
) -> ndarray::Array2<T> {
    k.gemm_alloc(T::one(), a, b)
}

fn batched<T: Scalar>(
    k: &'static dyn Kernels<T>,
    a: ndarray::ArrayView3<T>,
    b: ndarray::ArrayView3<T>,
    out_shape: (usize, usize, usize),
) -> ndarray::Array3<T> {
    let mut c = ndarray::Array3::zeros(out_shape);
    c.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(
            a.axis_iter(Axis(0))
                .into_par_iter()
                .zip(b.axis_iter(Axis(0)).into_par_iter()),
        )
        .for_each(|(ci, (ai, bi))| k.gemm(T::one(), ai, bi, T::zero(), ci));
    c
}

impl<T: Scalar> Tape<T> {
    /// Matrix product: `a: [.., m, k]` with `b: [k, n]`, or batched
    /// `a: [B, m, k]` with `b: [B, k, n]`. Operands may be transposed or
    /// permuted views (no copy for the batched form).
    pub fn matmul(&self, a: Var, b: Var) -> Var {
        let (av, bv) = (self.value(a), self.value(b));
        let k = self.kernels();
        match (av.ndim(), bv.ndim()) {
            (na, 2) if na >= 2 => {
                let av = contiguous(av);
                let (kk, n) = (bv.shape()[0], bv.shape()[1]);
                assert_eq!(
                    av.shape()[na - 1],
                    kk,
                    "matmul: {:?} · {:?}",
                    av.shape(),
                    bv.shape()
                );
                let a2 = as_rows(&av);
                let y = gemm_new(k, a2, view2(&bv));
                let mut shape = av.shape().to_vec();
                shape[na - 1] = n;
                let y = y
                    .into_shape_with_order(IxDyn(&shape))
                    .expect("standard layout");
                self.push_op(y, &[a, b], move |g, s| {
                    let g = contiguous_owned(g);
                    let g2 = as_rows(&g);
                    if s.wants(a) {
                        let da = gemm_new(k, g2, view2(&bv).t());
                        s.add(
                            a,
                            da.into_shape_with_order(IxDyn(av.shape()))
                                .expect("standard layout"),
                        );
                    }
                    if s.wants(b) {
                        s.add(b, gemm_new(k, as_rows(&av).t(), g2).into_dyn());
                    }
                })
            }
            (3, 3) => {
                let (bt, m, kk) = (av.shape()[0], av.shape()[1], av.shape()[2]);
                let n = bv.shape()[2];
                assert!(
                    bv.shape()[0] == bt && bv.shape()[1] == kk,
                    "matmul: {:?} · {:?}",
                    av.shape(),
                    bv.shape()
                );
                let a3 = av.view().into_dimensionality::<Ix3>().expect("3-D");
                let b3 = bv.view().into_dimensionality::<Ix3>().expect("3-D");
                let y = batched(k, a3, b3, (bt, m, n)).into_dyn();
                self.push_op(y, &[a, b], move |g, s| {
                    let g3 = g.view().into_dimensionality::<Ix3>().expect("3-D");
                    let a3 = av.view().into_dimensionality::<Ix3>().expect("3-D");
                    let b3 = bv.view().into_dimensionality::<Ix3>().expect("3-D");
                    if s.wants(a) {
                        s.add(
                            a,
                            batched(k, g3, b3.permuted_axes([0, 2, 1]), (bt, m, kk)).into_dyn(),
                        );
                    }
                    if s.wants(b) {
                        s.add(
                            b,
                            batched(k, a3.permuted_axes([0, 2, 1]), g3, (bt, kk, n)).into_dyn(),
                        );
                    }
                })
            }
            _ => panic!(
                "matmul: unsupported shapes {:?} · {:?}",
                av.shape(),
                bv.shape()
            ),
        }
    }

    /// Linear map without bias, `y = x·wᵀ` for `x: [.., k]`, `w: [n, k]`
    /// (Hugging Face's `nn.Linear` weight layout), fused: no transpose copy
    /// in the forward or the backward.
    pub fn linear(&self, x: Var, w: Var) -> Var {
        let xv = contiguous(self.value(x));
        let wv = self.value(w);
        assert!(
            wv.ndim() == 2 && xv.ndim() >= 1 && xv.shape()[xv.ndim() - 1] == wv.shape()[1],
            "linear: x {:?} with weight {:?}",
            xv.shape(),
            wv.shape()
        );
        let k = self.kernels();
        let y = gemm_new(k, as_rows(&xv), view2(&wv).t());
        let mut shape = xv.shape().to_vec();
        let last = shape.len() - 1;
        shape[last] = wv.shape()[0];
        let y = y
            .into_shape_with_order(IxDyn(&shape))
            .expect("standard layout");
        self.push_op(y, &[x, w], move |g, s| {
            let g = contiguous_owned(g);
            let g2 = as_rows(&g);
            if s.wants(w) {
                s.add(w, gemm_new(k, g2.t(), as_rows(&xv)).into_dyn());
            }
            if s.wants(x) {
                let dx = gemm_new(k, g2, view2(&wv));
                s.add(
                    x,
                    dx.into_shape_with_order(IxDyn(xv.shape()))
                        .expect("standard layout"),
                );
            }
        })
    }
}
