//! Exact top-k selection per block: the one implementation of the filter
//! h_α used by the optimizer, the L_α norm and the step statistics.
//!
//! For a block of d entries and fraction α the filter keeps
//!
//! ```text
//! k = min(d, max(1, ceil(α·d − 1e-9)))
//! ```
//!
//! entries with the largest score. Scores are compared exactly through
//! [`Scalar::abs_key`] (the magnitude's bit pattern as an unsigned integer),
//! and ties are broken by the **smaller flat index first**, so exactly k
//! entries are selected, deterministically.
//!
//! The selection is described by a [`Cut`]: a threshold key τ (the k-th
//! largest key) and the number of entries with key = τ that are taken. Every
//! entry with key > τ is selected; entries with key = τ are selected in index
//! order until the tie quota is used. Finding τ is an O(d) expected-time
//! selection (no full sort) on reusable scratch memory: [`TopK`] keeps its
//! buffer across calls, so a step allocates nothing once warmed up.

use crate::Scalar;

/// Number of entries the filter keeps in a block of `d` entries:
/// `min(d, max(1, ceil(alpha·d − 1e-9)))` (0 for an empty block).
///
/// The 1e-9 guard makes an α·d that is an integer in exact arithmetic
/// (0.15·40 = 6.000000000000001 in f64) give exactly that integer.
pub fn selection_count(alpha: f64, d: usize) -> usize {
    if d == 0 {
        return 0;
    }
    let raw = (alpha * d as f64 - 1e-9).ceil();
    let k = if raw.is_finite() && raw > 1.0 {
        raw as usize
    } else {
        1
    };
    k.min(d)
}

/// The result of a top-k selection over one block of keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cut {
    /// Number of selected entries.
    pub k: usize,
    /// The k-th largest key (τ). Every key above τ is selected.
    pub threshold_key: u64,
    /// How many entries with key exactly τ are selected (the smallest indices
    /// among them). `k = #{key > τ} + ties_taken`.
    pub ties_taken: usize,
}

impl Cut {
    /// A cut that selects every entry of a block of `d` entries.
    pub fn all(d: usize) -> Self {
        Cut {
            k: d,
            threshold_key: 0,
            ties_taken: usize::MAX,
        }
    }

    /// A stateful membership test that must be fed the block's keys in index
    /// order (index 0 first): it returns `true` for exactly the selected ones.
    #[inline]
    pub fn decider(&self) -> Decider {
        Decider {
            threshold_key: self.threshold_key,
            ties_left: self.ties_taken,
        }
    }

    /// Writes the selection mask of `keys` (which must be the keys the cut was
    /// computed from) into `mask`, resized to `keys.len()`.
    pub fn mask_into(&self, keys: &[u64], mask: &mut Vec<bool>) {
        mask.clear();
        let mut d = self.decider();
        mask.extend(keys.iter().map(|&key| d.take(key)));
    }

    /// The selected indices of `keys` in increasing order.
    pub fn indices(&self, keys: &[u64]) -> Vec<usize> {
        let mut d = self.decider();
        keys.iter()
            .enumerate()
            .filter_map(|(i, &key)| d.take(key).then_some(i))
            .collect()
    }
}

/// Membership test for one block, fed keys in index order (see [`Cut::decider`]).
#[derive(Clone, Copy, Debug)]
pub struct Decider {
    threshold_key: u64,
    ties_left: usize,
}

impl Decider {
    /// Whether the next entry (in index order), with this key, is selected.
    #[inline(always)]
    pub fn take(&mut self, key: u64) -> bool {
        if key > self.threshold_key {
            true
        } else if key == self.threshold_key && self.ties_left > 0 {
            self.ties_left -= 1;
            true
        } else {
            false
        }
    }

    /// The decisions [`Decider::take`] makes from this state on `keys` (the
    /// chunk's keys, fed in order), as a rule on each entry's own key and
    /// index ([`IndexRule::take`]), which a loop applies without a
    /// loop-carried count, so that it vectorises. Finds where the tie quota
    /// runs out: a scan of `keys` only when some but maybe not all of its
    /// ties are taken (`ties_left` neither 0 nor `usize::MAX`).
    pub fn index_rule(&self, keys: &[u64]) -> IndexRule {
        let tie_end = match self.ties_left {
            0 => 0,
            usize::MAX => keys.len(),
            left => keys
                .iter()
                .enumerate()
                .filter(|(_, &k)| k == self.threshold_key)
                .nth(left - 1)
                .map_or(keys.len(), |(i, _)| i + 1),
        };
        IndexRule {
            threshold_key: self.threshold_key,
            tie_end,
        }
    }
}

/// A [`Decider`]'s decisions over one chunk as a rule without state: entry
/// `i` with key `key` is selected iff `key > threshold_key`, or
/// `key == threshold_key` and `i < tie_end` (the ties taken are the
/// first ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexRule {
    threshold_key: u64,
    tie_end: usize,
}

impl IndexRule {
    /// Whether entry `i` (its index in the chunk), with this key, is selected.
    #[inline(always)]
    pub fn take(&self, i: usize, key: u64) -> bool {
        (key > self.threshold_key) | ((key == self.threshold_key) & (i < self.tie_end))
    }
}

/// Blocks at least this long use the sampled candidate search.
const SAMPLED_MIN: usize = 1 << 16;
/// Sample size of the candidate search.
const SAMPLE: usize = 4096;

/// Reusable scratch for exact top-k selection.
#[derive(Clone, Debug, Default)]
pub struct TopK {
    work: Vec<u64>,
    sample: Vec<u64>,
    ties_total: usize,
}

impl TopK {
    /// New selector with no scratch allocated yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Selects the `k` largest of `keys` (ties: smaller index first).
    /// `k` is clamped to `keys.len()`.
    pub fn cut(&mut self, keys: &[u64], k: usize) -> Cut {
        let d = keys.len();
        let k = k.min(d);
        self.ties_total = usize::MAX;
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
        self.work.clear();
        if d >= SAMPLED_MIN && k <= d / 4 {
            // Candidates: estimate from a deterministic sample a key τ_lo that
            // at least k keys reach, keep only keys ≥ τ_lo (≈ k + margin of
            // them), and select exactly among those. Every key ≥ τ (the k-th
            // largest) is a candidate, so τ and the tie count are exact.
            if let Some(cut) = self.cut_sampled(keys, k) {
                return cut;
            }
            self.work.clear();
        }
        self.work.extend_from_slice(keys);
        // k-th largest = element at position d - k in ascending order.
        let pos = d - k;
        let (_, &mut tau, above) = self.work.select_nth_unstable(pos);
        let greater = above.iter().filter(|&&x| x > tau).count();
        self.ties_total = self.work.iter().filter(|&&x| x == tau).count();
        Cut {
            k,
            threshold_key: tau,
            ties_taken: k - greater,
        }
    }

    /// How many keys of the last [`TopK::cut`] equal its threshold (every
    /// key ≥ τ is a candidate, so this is exact); `usize::MAX` after a cut
    /// that selected everything or nothing. When it equals the cut's
    /// `ties_taken`, every tie is selected and a caller that splits the block
    /// into chunks need not count the ties before each chunk.
    pub fn last_ties_total(&self) -> usize {
        self.ties_total
    }

    fn cut_sampled(&mut self, keys: &[u64], k: usize) -> Option<Cut> {
        let d = keys.len();
        let stride = d / SAMPLE;
        let sample = &mut self.sample;
        sample.clear();
        sample.extend((0..SAMPLE).map(|i| keys[i * stride]));
        // Sample rank that, with a margin of ~4 standard deviations, stays
        // below the true k-th largest.
        let expect = k as f64 * SAMPLE as f64 / d as f64;
        let margin = 4.0 * expect.sqrt() + 8.0;
        let r = ((expect + margin).ceil() as usize).min(SAMPLE - 1);
        let (_, &mut lo, _) = sample.select_nth_unstable(SAMPLE - 1 - r);
        self.work.extend(keys.iter().copied().filter(|&x| x >= lo));
        let m = self.work.len();
        if m < k {
            return None;
        }
        let pos = m - k;
        let (_, &mut tau, above) = self.work.select_nth_unstable(pos);
        let greater = above.iter().filter(|&&x| x > tau).count();
        self.ties_total = self.work.iter().filter(|&&x| x == tau).count();
        Some(Cut {
            k,
            threshold_key: tau,
            ties_taken: k - greater,
        })
    }

    /// Selects the `k` entries of largest magnitude `|x_i|` of `values`.
    pub fn cut_abs<T: Scalar>(&mut self, values: &[T], k: usize) -> Cut {
        let keys: Vec<u64> = values.iter().map(|v| v.abs_key()).collect();
        self.cut(&keys, k)
    }
}

/// Plain reference: the selected indices by a full stable sort on
/// (key descending, index ascending). Used to test [`TopK`].
pub fn reference_indices(keys: &[u64], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..keys.len()).collect();
    idx.sort_by(|&a, &b| keys[b].cmp(&keys[a]).then(a.cmp(&b)));
    idx.truncate(k.min(keys.len()));
    idx.sort_unstable();
    idx
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn count_rule() {
        assert_eq!(selection_count(0.15, 40), 6);
        assert_eq!(selection_count(0.1, 25), 3);
        assert_eq!(selection_count(1e-6, 10), 1);
        assert_eq!(selection_count(1.0, 7), 7);
        assert_eq!(selection_count(0.5, 0), 0);
        assert_eq!(selection_count(0.25, 4), 1);
        assert_eq!(selection_count(0.26, 4), 2);
    }

    #[test]
    fn ties_go_to_smaller_index() {
        let keys = [5u64, 7, 5, 7, 5, 1];
        let mut t = TopK::new();
        let cut = t.cut(&keys, 3);
        assert_eq!(cut.indices(&keys), vec![0, 1, 3]);
        let cut = t.cut(&keys, 4);
        assert_eq!(cut.indices(&keys), vec![0, 1, 2, 3]);
    }

    #[test]
    fn sampled_path_matches_reference() {
        // Blocks long enough for the candidate search, with heavy ties.
        let mut x: u64 = 1;
        for (d, levels) in [(70_000usize, 5u64), (100_000, 1_000_000), (65_536, 1)] {
            let keys: Vec<u64> = (0..d)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (x >> 33) % levels
                })
                .collect();
            let mut t = TopK::new();
            for k in [1, 7, d / 10, d / 4] {
                let cut = t.cut(&keys, k);
                assert_eq!(
                    cut.indices(&keys),
                    reference_indices(&keys, k),
                    "d={d} k={k}"
                );
                let ties = keys.iter().filter(|&&x| x == cut.threshold_key).count();
                assert_eq!(t.last_ties_total(), ties, "d={d} k={k}");
            }
        }
    }

    proptest! {
        #[test]
        fn matches_reference(keys in proptest::collection::vec(0u64..6, 1..200), frac in 0.0f64..1.0) {
            let k = ((keys.len() as f64) * frac) as usize;
            let mut t = TopK::new();
            let cut = t.cut(&keys, k);
            let got = cut.indices(&keys);
            prop_assert_eq!(got.len(), k);
            prop_assert_eq!(got, reference_indices(&keys, k));
            if 0 < k && k < keys.len() {
                let ties = keys.iter().filter(|&&x| x == cut.threshold_key).count();
                prop_assert_eq!(t.last_ties_total(), ties);
            }
        }

        #[test]
        fn index_rule_decides_as_the_decider(
            keys in proptest::collection::vec(0u64..4, 0..120),
            threshold_key in 0u64..5,
            ties_left in prop_oneof![0usize..40, Just(usize::MAX)],
        ) {
            let cut = Cut { k: 0, threshold_key, ties_taken: ties_left };
            let mut d = cut.decider();
            let rule = d.index_rule(&keys);
            for (i, &key) in keys.iter().enumerate() {
                prop_assert_eq!(rule.take(i, key), d.take(key), "entry {}", i);
            }
        }
    }
}
