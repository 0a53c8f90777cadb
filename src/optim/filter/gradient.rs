//! Gradient filter (Grad BCD, Gauss–Southwell rule): score |g|, the gradient that enters the state (coupled L2 term included).

use super::{Filter, FilterMode};
use crate::optim::base::Base;
use crate::optim::error::check_fraction;
use crate::optim::OptimError;
use crate::Scalar;

/// Grad BCD: keep the entries of largest gradient magnitude.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Gradient {
    /// Fraction α of each block that is updated, in (0, 1] (paper default 0.1–0.15).
    pub fraction: f64,
}

impl Gradient {
    /// The filter with fraction α.
    pub fn new(fraction: f64) -> Self {
        Gradient { fraction }
    }
}

impl Filter for Gradient {
    fn name(&self) -> &'static str {
        "gradient"
    }
    fn fraction(&self) -> f64 {
        self.fraction
    }
    fn mode(&self) -> FilterMode {
        FilterMode::Scored
    }
    fn check<B: Base>(&self, _base: &B) -> Result<(), OptimError> {
        check_fraction(self.fraction)
    }
    #[inline(always)]
    fn score<B: Base, T: Scalar>(&self, base: &B, c: &B::Coef<T>, p: T, g: T, _s: &[T; 3]) -> T {
        base.effective_grad(c, p, g).abs()
    }
    #[inline(always)]
    fn score_updated<B: Base, T: Scalar>(
        &self,
        base: &B,
        c: &B::Coef<T>,
        p: T,
        g: T,
        _s: &[T; 3],
    ) -> T {
        base.effective_grad(c, p, g).abs()
    }
}
