//! The filter h_α and the L_α norm of the paper (Section 3, Appendix A).
//!
//! A vector x ∈ ℝ^d is split by a [`Partition`] into blocks b of d_b
//! entries. In every block the filter keeps the
//!
//! ```text
//! k_b = min(d_b, max(1, ⌈α·d_b − 1e-9⌉))
//! ```
//!
//! entries of largest magnitude |x_i| (ties: smaller flat index first) and
//! zeroes the rest:
//!
//! ```text
//! S(x)      = ∪_b S_b(x)                     (the selected set)
//! h_α(x)_i  = x_i if i ∈ S(x), 0 otherwise    (the filtered vector)
//! ‖x‖_α     = ‖h_α(x)‖_1 = Σ_b Σ_{i∈S_b(x)} |x_i|
//! ```
//!
//! The selection is the optimizer's own: [`selection_count`] for k_b and
//! [`TopK::cut`] on [`Scalar::abs_key`] keys for the set, so the statements
//! tested on this module (Proposition 1, Lemmas 1 and 2 in
//! `tests/theory_norm.rs`) are statements about the filter MoFO uses.
//!
//! Block index lists are kept sorted, so "smaller index first" inside a block
//! means smaller flat index of the whole vector.

use std::ops::Range;

use crate::optim::select::{selection_count, TopK};
use crate::Scalar;

/// Errors of partitions and of the L_α norm.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NormError {
    /// The fraction α is not in (0, 1].
    #[error("fraction alpha = {0} must be in (0, 1]")]
    Alpha(f64),
    /// A block has no entry.
    #[error("block {0} is empty")]
    EmptyBlock(usize),
    /// A block names an index outside `0..dim`.
    #[error("block {block} names index {index}, outside 0..{dim}")]
    OutOfRange {
        /// Block number.
        block: usize,
        /// Offending index.
        index: usize,
        /// Dimension of the partitioned vector.
        dim: usize,
    },
    /// An index belongs to two blocks (or twice to one).
    #[error("index {0} appears in more than one block")]
    Duplicate(usize),
    /// An index belongs to no block.
    #[error("index {0} belongs to no block")]
    Uncovered(usize),
    /// A chunk size of zero was asked for.
    #[error("chunk size must be at least 1")]
    ZeroChunk,
    /// A vector's length differs from the partition's dimension.
    #[error("vector of length {got} given to a partition of dimension {expected}")]
    Length {
        /// Length given.
        got: usize,
        /// Dimension of the partition.
        expected: usize,
    },
}

/// A partition of the indices `0..dim` into non-empty blocks, each block's
/// indices in increasing order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    dim: usize,
    blocks: Vec<Vec<usize>>,
}

impl Partition {
    /// One block holding every index (global top-k). `dim` may be 0 (no block).
    pub fn whole(dim: usize) -> Self {
        let blocks = if dim == 0 {
            Vec::new()
        } else {
            vec![(0..dim).collect()]
        };
        Partition { dim, blocks }
    }

    /// Consecutive blocks of the given sizes (e.g. the tensors of a model,
    /// flattened one after the other).
    pub fn from_sizes(sizes: &[usize]) -> Result<Self, NormError> {
        let mut start = 0;
        let mut ranges = Vec::with_capacity(sizes.len());
        for &s in sizes {
            ranges.push(start..start + s);
            start += s;
        }
        Self::from_ranges(start, &ranges)
    }

    /// Consecutive chunks of `size` entries (the last one may be shorter).
    pub fn chunks(dim: usize, size: usize) -> Result<Self, NormError> {
        if size == 0 {
            return Err(NormError::ZeroChunk);
        }
        let ranges: Vec<Range<usize>> = (0..dim)
            .step_by(size)
            .map(|s| s..(s + size).min(dim))
            .collect();
        Self::from_ranges(dim, &ranges)
    }

    /// Blocks given as index ranges; they must cover `0..dim` exactly once.
    pub fn from_ranges(dim: usize, ranges: &[Range<usize>]) -> Result<Self, NormError> {
        Self::from_lists(dim, ranges.iter().map(|r| r.clone().collect()).collect())
    }

    /// Blocks given as index lists (any order inside a list); they must cover
    /// `0..dim` exactly once.
    pub fn from_lists(dim: usize, mut blocks: Vec<Vec<usize>>) -> Result<Self, NormError> {
        let mut seen = vec![false; dim];
        for (b, block) in blocks.iter_mut().enumerate() {
            if block.is_empty() {
                return Err(NormError::EmptyBlock(b));
            }
            block.sort_unstable();
            for &index in block.iter() {
                if index >= dim {
                    return Err(NormError::OutOfRange {
                        block: b,
                        index,
                        dim,
                    });
                }
                if std::mem::replace(&mut seen[index], true) {
                    return Err(NormError::Duplicate(index));
                }
            }
        }
        if let Some(i) = seen.iter().position(|&s| !s) {
            return Err(NormError::Uncovered(i));
        }
        Ok(Partition { dim, blocks })
    }

    /// Dimension of the partitioned vectors.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The blocks, each a sorted list of flat indices.
    pub fn blocks(&self) -> &[Vec<usize>] {
        &self.blocks
    }

    /// Number of blocks.
    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }
}

/// The output of the filter h_α: the selected set S(x) and h_α(x).
#[derive(Clone, Debug, PartialEq)]
pub struct Filtered<T> {
    /// S(x): the selected flat indices, in increasing order.
    pub selected: Vec<usize>,
    /// h_α(x): x on S(x), zero elsewhere.
    pub values: Vec<T>,
}

/// The filter h_α and the L_α norm for one partition and fraction α.
#[derive(Clone, Debug, PartialEq)]
pub struct AlphaNorm {
    partition: Partition,
    alpha: f64,
}

impl AlphaNorm {
    /// The L_α norm over `partition`; α must be in (0, 1].
    pub fn new(partition: Partition, alpha: f64) -> Result<Self, NormError> {
        // Written so that NaN is rejected too.
        if !(alpha > 0.0 && alpha <= 1.0) {
            return Err(NormError::Alpha(alpha));
        }
        Ok(AlphaNorm { partition, alpha })
    }

    /// The partition.
    pub fn partition(&self) -> &Partition {
        &self.partition
    }

    /// The fraction α.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// k_b for every block, from [`selection_count`].
    pub fn block_counts(&self) -> Vec<usize> {
        self.partition
            .blocks
            .iter()
            .map(|b| selection_count(self.alpha, b.len()))
            .collect()
    }

    /// K = Σ_b k_b, the size of every selected set (Lemma 2's constant).
    pub fn total_count(&self) -> usize {
        self.block_counts().iter().sum()
    }

    fn check_len(&self, len: usize) -> Result<(), NormError> {
        if len != self.partition.dim {
            return Err(NormError::Length {
                got: len,
                expected: self.partition.dim,
            });
        }
        Ok(())
    }

    /// The selection mask of S(x) (`true` = selected).
    pub fn mask<T: Scalar>(&self, x: &[T]) -> Result<Vec<bool>, NormError> {
        self.check_len(x.len())?;
        let mut mask = vec![false; x.len()];
        let mut topk = TopK::new();
        let mut keys = Vec::new();
        for block in &self.partition.blocks {
            keys.clear();
            keys.extend(block.iter().map(|&i| x[i].abs_key()));
            let cut = topk.cut(&keys, selection_count(self.alpha, block.len()));
            let mut decider = cut.decider();
            for (&i, &key) in block.iter().zip(&keys) {
                mask[i] = decider.take(key);
            }
        }
        Ok(mask)
    }

    /// S(x): the selected flat indices in increasing order.
    pub fn selected<T: Scalar>(&self, x: &[T]) -> Result<Vec<usize>, NormError> {
        let mask = self.mask(x)?;
        Ok(mask_to_indices(&mask))
    }

    /// The filter h_α: S(x) and the filtered vector.
    pub fn filter<T: Scalar>(&self, x: &[T]) -> Result<Filtered<T>, NormError> {
        let mask = self.mask(x)?;
        let values = x
            .iter()
            .zip(&mask)
            .map(|(&v, &m)| if m { v } else { T::zero() })
            .collect();
        Ok(Filtered {
            selected: mask_to_indices(&mask),
            values,
        })
    }

    /// ‖x‖_α = Σ_{i∈S(x)} |x_i|, summed in f64 in index order.
    pub fn norm<T: Scalar>(&self, x: &[T]) -> Result<T, NormError> {
        let mask = self.mask(x)?;
        Ok(T::of(masked_l1(x, &mask)))
    }
}

/// ‖x ⊙ 1_S‖_1 for a selection mask: Σ_{mask_i} |x_i|, summed in f64 in
/// index order. Panics if the lengths differ (a programming error).
pub fn masked_l1<T: Scalar>(x: &[T], mask: &[bool]) -> f64 {
    assert_eq!(x.len(), mask.len(), "masked_l1: vector and mask lengths");
    x.iter()
        .zip(mask)
        .filter(|(_, &m)| m)
        .map(|(v, _)| v.abs().as_f64())
        .sum()
}

fn mask_to_indices(mask: &[bool]) -> Vec<usize> {
    mask.iter()
        .enumerate()
        .filter_map(|(i, &m)| m.then_some(i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_validation() {
        assert_eq!(
            Partition::from_lists(3, vec![vec![0, 1], vec![1, 2]]),
            Err(NormError::Duplicate(1))
        );
        assert_eq!(
            Partition::from_lists(3, vec![vec![0, 1]]),
            Err(NormError::Uncovered(2))
        );
        assert_eq!(
            Partition::from_lists(2, vec![vec![0, 1], vec![]]),
            Err(NormError::EmptyBlock(1))
        );
        assert!(matches!(
            Partition::from_lists(2, vec![vec![0, 5]]),
            Err(NormError::OutOfRange { index: 5, .. })
        ));
        assert_eq!(Partition::chunks(3, 0), Err(NormError::ZeroChunk));
        let p = Partition::chunks(7, 3).unwrap();
        assert_eq!(p.blocks(), &[vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
        assert_eq!(Partition::from_sizes(&[3, 3, 1]).unwrap(), p);
        let q = Partition::from_lists(4, vec![vec![3, 0], vec![2, 1]]).unwrap();
        assert_eq!(q.blocks(), &[vec![0, 3], vec![1, 2]]);
        for bad in [0.0, -0.5, 1.5, f64::NAN] {
            assert!(AlphaNorm::new(Partition::whole(3), bad).is_err());
        }
    }

    #[test]
    fn filter_small_example() {
        // Blocks {0, 3} and {1, 2, 4}; α = 0.5 → k = 1 and 2.
        let p = Partition::from_lists(5, vec![vec![3, 0], vec![1, 2, 4]]).unwrap();
        let n = AlphaNorm::new(p, 0.5).unwrap();
        let x = [-2.0f64, 1.0, -1.0, 2.0, 0.5];
        let f = n.filter(&x).unwrap();
        // Block {0, 3}: |−2| = |2|, the tie goes to index 0.
        // Block {1, 2, 4}: |1| = |−1| > 0.5, both taken.
        assert_eq!(f.selected, vec![0, 1, 2]);
        assert_eq!(f.values, vec![-2.0, 1.0, -1.0, 0.0, 0.0]);
        assert_eq!(n.norm(&x).unwrap(), 4.0);
        assert_eq!(n.total_count(), 3);
        assert_eq!(
            n.norm(&[1.0f32, 2.0, 3.0]).unwrap_err(),
            NormError::Length {
                got: 3,
                expected: 5
            }
        );
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        assert_eq!(n.norm(&x32).unwrap(), 4.0f32);
    }
}
