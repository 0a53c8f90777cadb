//! Random filter (Random BCD): a uniform random subset of k_b entries per
//! block, reseeded every step from (seed, step, block index), so a run is
//! reproducible and independent of the thread count.

use super::{Filter, FilterMode};
use crate::optim::base::Base;
use crate::optim::error::check_fraction;
use crate::optim::OptimError;
use crate::Scalar;

/// Random BCD: update a uniformly random fraction α of each block.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Random {
    /// Fraction α of each block that is updated, in (0, 1].
    pub fraction: f64,
    /// Seed of the per-step draws.
    pub seed: u64,
}

impl Random {
    /// Random BCD with fraction α and a seed.
    pub fn new(fraction: f64, seed: u64) -> Self {
        Random { fraction, seed }
    }
}

impl Filter for Random {
    fn name(&self) -> &'static str {
        "random"
    }
    fn fraction(&self) -> f64 {
        self.fraction
    }
    fn mode(&self) -> FilterMode {
        FilterMode::Random { seed: self.seed }
    }
    fn check<B: Base>(&self, _base: &B) -> Result<(), OptimError> {
        check_fraction(self.fraction)
    }
    fn score<B: Base, T: Scalar>(&self, _b: &B, _c: &B::Coef<T>, _p: T, _g: T, _s: &[T; 3]) -> T {
        T::zero()
    }
}
