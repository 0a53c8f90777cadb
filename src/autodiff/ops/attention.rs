//! Fused causal softmax attention with grouped-query heads (equations in
//! `crate::kernels::attention`); no mask tensor is built.

use super::{contiguous, contiguous_owned, flat, from_vec};
use crate::autodiff::{Tape, Var};
use crate::kernels::attention::AttnShape;
use crate::Scalar;

impl<T: Scalar> Tape<T> {
    /// Causal attention of `q: [B, T, heads·d]` over `k, v: [B, T, kv_heads·d]`
    /// (query head `h` uses kv head `h / (heads/kv_heads)`), scale `1/√d`;
    /// the result is `[B, T, heads·d]`.
    pub fn causal_attention(&self, q: Var, k: Var, v: Var, heads: usize, kv_heads: usize) -> Var {
        let (qv, kv, vv) = (
            contiguous(self.value(q)),
            contiguous(self.value(k)),
            contiguous(self.value(v)),
        );
        assert!(
            qv.ndim() == 3
                && kv.ndim() == 3
                && vv.shape() == kv.shape()
                && heads > 0
                && qv.shape()[2] % heads == 0,
            "causal_attention: q {:?}, k {:?}, v {:?} with {heads} heads",
            qv.shape(),
            kv.shape(),
            vv.shape()
        );
        let sh = AttnShape {
            batch: qv.shape()[0],
            seq: qv.shape()[1],
            heads,
            kv_heads,
            head_dim: qv.shape()[2] / heads,
        };
        let kern = self.kernels();
        let keep = self.needs_grad(&[q, k, v]);
        let (o, p) = kern.attention(flat(&qv), flat(&kv), flat(&vv), sh, keep);
        let y = from_vec(qv.shape(), o);
        let Some(p) = p.filter(|_| keep) else {
            return self.push_const_result(y);
        };
        self.push_op(y, &[q, k, v], move |g, s| {
            let g = contiguous_owned(g);
            let (dq, dk, dv) = kern.attention_backward(
                flat(&qv),
                flat(&kv),
                flat(&vv),
                &p,
                g.as_slice().expect("standard layout"),
                sh,
            );
            s.add(q, from_vec(qv.shape(), dq));
            s.add(k, from_vec(kv.shape(), dk));
            s.add(v, from_vec(vv.shape(), dv));
        })
    }
}
