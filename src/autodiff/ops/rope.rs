//! Rotary position embedding, rotate-half layout, positions `0..T`
//! (equations in `crate::kernels::rope`); the backward rotates `ḡ` by the
//! opposite angle.

use std::sync::Arc;

use super::{contiguous, contiguous_owned, flat, from_vec};
use crate::autodiff::{Tape, Var};
use crate::kernels::rope::RopeTable;
use crate::Scalar;

impl<T: Scalar> Tape<T> {
    /// The RoPE table for `seq` positions of width `head_dim` and base
    /// `theta`, built once per tape: the q and k of every layer share it.
    fn rope_table(&self, seq: usize, head_dim: usize, theta: f64) -> Arc<RopeTable<T>> {
        let mut tables = self.rope_tables.borrow_mut();
        let same = |t: &&Arc<RopeTable<T>>| {
            t.seq == seq && t.head_dim == head_dim && t.theta.to_bits() == theta.to_bits()
        };
        if let Some(t) = tables.iter().find(same) {
            return Arc::clone(t);
        }
        let t = Arc::new(RopeTable::new(seq, head_dim, theta));
        tables.push(Arc::clone(&t));
        t
    }

    /// RoPE of `x: [B, T, heads·head_dim]` with base `theta`.
    pub fn rope(&self, x: Var, heads: usize, head_dim: usize, theta: f64) -> Var {
        let xv = contiguous(self.value(x));
        assert!(
            xv.ndim() == 3 && xv.shape()[2] == heads * head_dim,
            "rope: x {:?} is not [B, T, {heads}·{head_dim}]",
            xv.shape()
        );
        let table = self.rope_table(xv.shape()[1], head_dim, theta);
        let k = self.kernels();
        let y = k.rope(flat(&xv), &table, heads, false);
        let shape = xv.shape().to_vec();
        let y = from_vec(&shape, y);
        self.push_op(y, &[x], move |g, s| {
            let g = contiguous_owned(g);
            let dx = k.rope(g.as_slice().expect("standard layout"), &table, heads, true);
            s.add(x, from_vec(&shape, dx));
        })
    }
}
