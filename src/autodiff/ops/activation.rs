//! Fused SwiGLU gate: `y = silu(g) ⊙ u`
//! (`ḡ_g = ḡ ⊙ u ⊙ silu'(g)`, `ḡ_u = ḡ ⊙ silu(g)`).

use super::{contiguous, contiguous_owned, flat, from_vec};
use crate::autodiff::{Tape, Var};
use crate::Scalar;

impl<T: Scalar> Tape<T> {
    /// `silu(gate) ⊙ up` (same shapes).
    pub fn swiglu(&self, gate: Var, up: Var) -> Var {
        let gv = contiguous(self.value(gate));
        let uv = contiguous(self.value(up));
        assert_eq!(
            gv.shape(),
            uv.shape(),
            "swiglu: gate {:?} and up {:?}",
            gv.shape(),
            uv.shape()
        );
        let k = self.kernels();
        let y = from_vec(gv.shape(), k.swiglu(flat(&gv), flat(&uv)));
        self.push_op(y, &[gate, up], move |g, s| {
            let g = contiguous_owned(g);
            let (dg, du) =
                k.swiglu_backward(flat(&gv), flat(&uv), g.as_slice().expect("standard layout"));
            s.add(gate, from_vec(gv.shape(), dg));
            s.add(up, from_vec(gv.shape(), du));
        })
    }
}
