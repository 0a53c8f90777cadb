//! MoFO's momentum filter: score |m_t|, the base's momentum after this step's update (Adam/NAdam m_t, Lion m_t, RMSProp/SGD momentum buffer).

use super::{Filter, FilterMode};
use crate::optim::base::Base;
use crate::optim::error::check_fraction;
use crate::optim::OptimError;
use crate::Scalar;

/// MoFO: keep the entries of largest momentum magnitude.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Momentum {
    /// Fraction α of each block that is updated, in (0, 1] (paper default 0.1–0.15).
    pub fraction: f64,
}

impl Momentum {
    /// The filter with fraction α.
    pub fn new(fraction: f64) -> Self {
        Momentum { fraction }
    }
}

impl Filter for Momentum {
    fn name(&self) -> &'static str {
        "momentum"
    }
    fn fraction(&self) -> f64 {
        self.fraction
    }
    fn mode(&self) -> FilterMode {
        FilterMode::Scored
    }
    fn check<B: Base>(&self, base: &B) -> Result<(), OptimError> {
        check_fraction(self.fraction)?;
        if !base.capabilities().momentum {
            return Err(super::incompatible(
                "momentum",
                base,
                "the base keeps no momentum state (RMSProp/SGD need momentum > 0)",
            ));
        }
        Ok(())
    }
    #[inline(always)]
    fn score<B: Base, T: Scalar>(&self, base: &B, c: &B::Coef<T>, p: T, g: T, s: &[T; 3]) -> T {
        base.momentum(c, p, g, s).abs()
    }
    #[inline(always)]
    fn score_updated<B: Base, T: Scalar>(
        &self,
        base: &B,
        c: &B::Coef<T>,
        p: T,
        g: T,
        s: &[T; 3],
    ) -> T {
        base.momentum_updated(c, p, g, s).abs()
    }
}
