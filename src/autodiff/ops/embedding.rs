//! Embedding lookup (gather) with a scatter-add backward.
//!
//! ```text
//! y[i, :] = W[id_i, :]          W̄[id_i, :] += ḡ[i, :]   (rows in order)
//! ```

use ndarray::{ArrayD, IxDyn};

use super::contiguous;
use crate::autodiff::{Tape, Var};
use crate::Scalar;

impl<T: Scalar> Tape<T> {
    /// Rows of `weight: [vocab, h]` at `ids`; the result has shape
    /// `lead ++ [h]` where `lead` multiplies to `ids.len()`. Panics on an id
    /// out of range (callers validate token ids first).
    pub fn embedding(&self, weight: Var, ids: &[u32], lead: &[usize]) -> Var {
        let wv = contiguous(self.value(weight));
        assert!(
            wv.ndim() == 2,
            "embedding: weight {:?} is not 2-D",
            wv.shape()
        );
        assert_eq!(
            lead.iter().product::<usize>(),
            ids.len(),
            "embedding: {} ids for shape {lead:?}",
            ids.len()
        );
        let (vocab, h) = (wv.shape()[0], wv.shape()[1]);
        let w = wv.as_slice().expect("standard layout");
        let mut out = Vec::with_capacity(ids.len() * h);
        for &id in ids {
            let id = id as usize;
            assert!(
                id < vocab,
                "embedding: id {id} out of range for vocabulary {vocab}"
            );
            out.extend_from_slice(&w[id * h..(id + 1) * h]);
        }
        let mut shape = lead.to_vec();
        shape.push(h);
        let y = ArrayD::from_shape_vec(IxDyn(&shape), out).expect("sizes match");
        let ids = ids.to_vec();
        self.push_op(y, &[weight], move |g, s| {
            let g = super::contiguous_owned(g);
            let gs = g.as_slice().expect("standard layout");
            let mut dw = vec![T::zero(); vocab * h];
            for (&id, row) in ids.iter().zip(gs.chunks_exact(h)) {
                let id = id as usize;
                for (a, &b) in dw[id * h..(id + 1) * h].iter_mut().zip(row) {
                    *a += b;
                }
            }
            s.add(
                weight,
                ArrayD::from_shape_vec(IxDyn(&[vocab, h]), dw).expect("sizes match"),
            );
        })
    }
}
