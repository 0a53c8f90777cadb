//! A batch's sequences split into shards whose forward and backward passes
//! run side by side, one tape each.
//!
//! For a batch of `B` sequences cut into `s = min(B, shards)` shards of
//! consecutive sequences (the first `B mod s` shards one sequence longer),
//! with `N` counted targets in the whole batch, shard `j` with the sum
//! `S_j` of its counted rows' losses and its gradient `g_j` of `S_j / N`:
//!
//! ```text
//! L = (S_0 + S_1 + … + S_{s−1}) / N                      (in f64, rounded once)
//! ∂L/∂θ = (…((g_0 + g_1) + g_2) + …) + g_{s−1}            (in shard order)
//! ```
//!
//! Every row of the logits and of their gradient is computed by the same
//! arithmetic as without shards; only the weight gradients' sums over the
//! batch's tokens are grouped per shard, so a result depends on `shards`
//! (and on nothing else: not on the thread count nor on which thread runs
//! which shard).
//!
//! Why: the shards' tapes are independent, so while one waits at the end
//! of a parallel kernel the other's kernels keep the cores busy, and each
//! kernel works on half the activations. On the 2-core Intel Xeon of
//! 2026-12-03, forward + backward of S and M took about 10% less time with
//! two shards than with one (docs/performance-log.md). While the shards fill
//! the threads, a shard's matrix products run whole
//! ([`crate::kernels::side_by_side`]): splitting one would pack its other
//! operand once per chunk for parallelism the other shards already provide
//! (M's step 1–3% faster on the Zen 4 of 2026-12-06). Once a shard has
//! finished, the others' products split again and its thread takes a share.

use std::ops::Range;

use crate::kernels::elementwise::add_assign;
use crate::{ParamStore, Scalar};

/// Shards of a training step's batch ([`crate::model::forward::loss_and_grads`]).
pub const SHARDS: usize = 2;

/// The rows of each shard of a batch of `batch` sequences: `min(batch,
/// shards)` ranges of consecutive rows covering `0..batch` in order, the
/// first `batch mod s` of them one row longer. No range for an empty batch.
pub fn shard_rows(batch: usize, shards: usize) -> Vec<Range<usize>> {
    let s = batch.min(shards.max(1));
    let mut out = Vec::with_capacity(s);
    let mut start = 0;
    for j in 0..s {
        let len = batch / s + usize::from(j < batch % s);
        out.push(start..start + len);
        start += len;
    }
    out
}

/// Adds the shards' gradients in shard order into the first one's.
///
/// # Panics
/// When `parts` is empty or the stores' layouts differ (every shard
/// records the same parameters).
pub fn sum_in_order<T: Scalar>(parts: Vec<ParamStore<T>>) -> ParamStore<T> {
    let mut it = parts.into_iter();
    let mut acc = it.next().expect("sum_in_order: no shard");
    for part in it {
        assert_eq!(acc.len(), part.len(), "sum_in_order: layouts differ");
        for (a, p) in acc.as_mut_slice().iter_mut().zip(part.as_slice()) {
            assert_eq!(a.name, p.name, "sum_in_order: layouts differ");
            add_assign(a.as_slice_mut(), p.as_slice());
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ArrayD;

    #[test]
    fn rows_cover_the_batch_in_order() {
        assert_eq!(shard_rows(16, 2), vec![0..8, 8..16]);
        assert_eq!(shard_rows(5, 2), vec![0..3, 3..5]);
        assert_eq!(shard_rows(7, 3), vec![0..3, 3..5, 5..7]);
        assert_eq!(shard_rows(1, 2), vec![0..1]);
        assert_eq!(shard_rows(4, 1), vec![0..4]);
        assert_eq!(shard_rows(3, 0), vec![0..3]);
        assert!(shard_rows(0, 2).is_empty());
    }

    #[test]
    fn gradients_add_up_in_shard_order() {
        let store = |x: f32| {
            let mut s = ParamStore::new();
            s.insert("a", ArrayD::from_elem(ndarray::IxDyn(&[3]), x))
                .unwrap();
            s.insert("b", ArrayD::from_elem(ndarray::IxDyn(&[2, 2]), 2.0 * x))
                .unwrap();
            s
        };
        // (1e8 + 1) + (−1e8) in f32 is 0, 1e8 + (1 − 1e8) is 0 too, but
        // (1e8 − 1e8) + 1 is 1: the order is the shards'.
        let sum = sum_in_order(vec![store(1e8), store(1.0), store(-1e8)]);
        assert_eq!(sum.get("a").unwrap().as_slice(), &[0.0; 3]);
        let sum = sum_in_order(vec![store(1e8), store(-1e8), store(1.0)]);
        assert_eq!(sum.get("a").unwrap().as_slice(), &[1.0; 3]);
        assert_eq!(sum.get("b").unwrap().as_slice(), &[2.0; 4]);
    }
}
