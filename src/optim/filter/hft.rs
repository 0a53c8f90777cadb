//! Half fine-tuning (HFT): in every block group (by default a transformer
//! layer, see [`crate::optim::partition`]), a random half (⌈n/2⌉ of n blocks)
//! is updated in full each step and the rest is frozen. Drawn per (seed,
//! step, group).

use super::{Filter, FilterMode};
use crate::optim::base::Base;
use crate::Scalar;

/// Half fine-tuning: a random half of each group's blocks per step.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HalfFineTuning {
    /// Seed of the per-step draws.
    pub seed: u64,
}

impl HalfFineTuning {
    /// HFT with a seed.
    pub fn new(seed: u64) -> Self {
        HalfFineTuning { seed }
    }
}

impl Filter for HalfFineTuning {
    fn name(&self) -> &'static str {
        "hft"
    }
    fn fraction(&self) -> f64 {
        1.0
    }
    fn mode(&self) -> FilterMode {
        FilterMode::BlockRandom { seed: self.seed }
    }
    fn score<B: Base, T: Scalar>(&self, _b: &B, _c: &B::Coef<T>, _p: T, _g: T, _s: &[T; 3]) -> T {
        T::zero()
    }
}
