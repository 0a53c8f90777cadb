//! Host model of the GPU's exact per-block top-k: a most-significant-digit
//! radix select over the bit patterns of the scores, then a tie ranking by
//! index.
//!
//! The GPU kernels (`kernels/optim.cu`) run exactly this algorithm, one pass
//! per 8-bit digit of a 32-bit key (`f32::abs_key`):
//!
//! ```text
//! prefix ← 0, mask ← 0, need ← k
//! for shift in 24, 16, 8, 0:
//!     hist[d] ← #{ i : key_i & mask = prefix, (key_i >> shift) & 255 = d }
//!     d* ← largest d with Σ_{e ≥ d} hist[e] ≥ need
//!     need ← need − Σ_{e > d*} hist[e]
//!     prefix ← prefix | d* << shift,  mask ← mask | 255 << shift
//! τ ← prefix;  ties taken ← need
//! ```
//!
//! Every key above τ is selected, and the `need` entries with key = τ of
//! smallest index (their rank among equal keys is an exclusive prefix count,
//! which the GPU computes per chunk and scans; when `need` equals the
//! number of keys equal to τ, the usual case, every tie is taken and the GPU
//! skips the ranking). The result is the same
//! [`Cut`] that [`TopK::cut`](crate::optim::TopK::cut) returns on the CPU,
//! which the tests check on random and tie-heavy inputs. It reads the keys
//! four times and never sorts.

use crate::optim::Cut;

/// Number of 8-bit digits of a 32-bit key, most significant first.
pub const DIGIT_PASSES: [u32; 4] = [24, 16, 8, 0];

/// The state the GPU keeps in device memory between radix passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RadixState {
    /// Bits of τ fixed so far.
    pub prefix: u32,
    /// Which bits of the prefix are fixed.
    pub mask: u32,
    /// How many entries are still to be selected among the keys matching the prefix.
    pub need: u32,
}

impl RadixState {
    /// The state before the first pass, selecting `k` entries.
    pub fn start(k: u32) -> Self {
        RadixState {
            prefix: 0,
            mask: 0,
            need: k,
        }
    }

    /// One pass: the histogram of digit `shift` among the candidates, then the
    /// choice of the digit (the GPU's `radix_hist` and `radix_pick` kernels).
    pub fn pass(self, keys: &[u32], shift: u32) -> Self {
        let mut hist = [0u32; 256];
        for &key in keys {
            if key & self.mask == self.prefix {
                hist[((key >> shift) & 255) as usize] += 1;
            }
        }
        self.pick(&hist, shift)
    }

    /// Chooses the digit from a finished histogram (the `radix_pick` kernel).
    pub fn pick(self, hist: &[u32; 256], shift: u32) -> Self {
        let mut above = 0u32;
        for d in (0..256usize).rev() {
            if above + hist[d] >= self.need {
                return RadixState {
                    prefix: self.prefix | ((d as u32) << shift),
                    mask: self.mask | (255 << shift),
                    need: self.need - above,
                };
            }
            above += hist[d];
        }
        // Only reached when need exceeds the candidates (k > d), which the
        // callers exclude; keep the state unchanged.
        self
    }
}

/// Exact top-k of 32-bit keys by radix select (ties: smaller index first).
/// `k` is clamped to `keys.len()`.
pub fn radix_cut(keys: &[u32], k: usize) -> Cut {
    let d = keys.len();
    let k = k.min(d);
    if k == d {
        return Cut::all(d);
    }
    if k == 0 {
        return Cut {
            k: 0,
            threshold_key: u64::MAX,
            ties_taken: 0,
        };
    }
    let mut state = RadixState::start(k as u32);
    for shift in DIGIT_PASSES {
        state = state.pass(keys, shift);
    }
    Cut {
        k,
        threshold_key: state.prefix as u64,
        ties_taken: state.need as usize,
    }
}

/// The rank of each tied entry among the entries equal to τ, computed the way
/// the GPU does it: per chunk of `chunk` entries a count, an exclusive scan of
/// the counts, then a rank inside the chunk. Returns whether each entry is
/// selected.
pub fn chunked_selection(keys: &[u32], cut: &Cut, chunk: usize) -> Vec<bool> {
    if cut.k == keys.len() {
        return vec![true; keys.len()];
    }
    let tau = cut.threshold_key as u32;
    let chunk = chunk.max(1);
    let counts: Vec<usize> = keys
        .chunks(chunk)
        .map(|c| c.iter().filter(|&&key| key == tau).count())
        .collect();
    let mut offsets = Vec::with_capacity(counts.len());
    let mut acc = 0usize;
    for c in &counts {
        offsets.push(acc);
        acc += c;
    }
    let mut out = Vec::with_capacity(keys.len());
    for (ci, c) in keys.chunks(chunk).enumerate() {
        let mut rank = offsets[ci];
        for &key in c {
            let take = key > tau || (key == tau && rank < cut.ties_taken);
            if key == tau {
                rank += 1;
            }
            out.push(take);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::select::reference_indices;
    use crate::optim::TopK;
    use crate::Scalar;
    use proptest::prelude::*;

    fn check(keys: &[u32], k: usize) {
        let wide: Vec<u64> = keys.iter().map(|&x| x as u64).collect();
        let cpu = TopK::new().cut(&wide, k);
        let gpu = radix_cut(keys, k);
        assert_eq!(cpu, gpu, "keys {keys:?} k {k}");
        let sel = chunked_selection(keys, &gpu, 7);
        let idx: Vec<usize> = sel
            .iter()
            .enumerate()
            .filter_map(|(i, &s)| s.then_some(i))
            .collect();
        assert_eq!(idx, reference_indices(&wide, k));
    }

    #[test]
    fn float_scores_and_ties() {
        let scores = [0.5f32, -0.5, 2.0, 0.0, 2.0, 1e-30, -3.0, 0.5];
        let keys: Vec<u32> = scores.iter().map(|s| s.abs_key() as u32).collect();
        for k in 0..=scores.len() {
            check(&keys, k);
        }
    }

    proptest! {
        #[test]
        fn matches_cpu_top_k(keys in proptest::collection::vec(any::<u32>(), 1..300), frac in 0.0f64..1.0) {
            let k = (keys.len() as f64 * frac) as usize;
            check(&keys, k);
        }

        #[test]
        fn matches_cpu_top_k_with_ties(keys in proptest::collection::vec(0u32..4, 1..300), frac in 0.0f64..1.0) {
            let k = (keys.len() as f64 * frac) as usize;
            check(&keys, k);
        }
    }
}
