//! Fused RMSNorm over the last axis (equations in `crate::kernels::rmsnorm`):
//! `y = x · rsqrt(mean(x²) + ε) · w`.

use super::{contiguous, contiguous_owned, flat, from_vec};
use crate::autodiff::{Tape, Var};
use crate::Scalar;

impl<T: Scalar> Tape<T> {
    /// RMSNorm of `x: [.., h]` with weight `w: [h]`.
    pub fn rms_norm(&self, x: Var, w: Var, eps: f64) -> Var {
        let xv = contiguous(self.value(x));
        let wv = contiguous(self.value(w));
        assert!(
            wv.ndim() == 1 && xv.ndim() >= 1 && xv.shape()[xv.ndim() - 1] == wv.len(),
            "rms_norm: x {:?} with weight {:?}",
            xv.shape(),
            wv.shape()
        );
        let k = self.kernels();
        let (y, r) = k.rmsnorm(flat(&xv), flat(&wv), T::of(eps));
        let y = from_vec(xv.shape(), y);
        self.push_op(y, &[x, w], move |g, s| {
            let g = contiguous_owned(g);
            let (dx, dw) = k.rmsnorm_backward(
                flat(&xv),
                flat(&wv),
                &r,
                g.as_slice().expect("standard layout"),
            );
            s.add(w, from_vec(wv.shape(), dw));
            s.add(x, from_vec(xv.shape(), dx));
        })
    }
}
