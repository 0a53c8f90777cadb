//! GV filter (GV BCD, paper App. F.4): score |g| / (√v̂_t + ε).

use super::{Filter, FilterMode};
use crate::optim::base::Base;
use crate::optim::error::check_fraction;
use crate::optim::OptimError;
use crate::Scalar;

/// GV BCD: keep the entries of largest |g| / (√v̂ + ε).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Gv {
    /// Fraction α of each block that is updated, in (0, 1] (paper default 0.1–0.15).
    pub fraction: f64,
}

impl Gv {
    /// The filter with fraction α.
    pub fn new(fraction: f64) -> Self {
        Gv { fraction }
    }
}

impl Filter for Gv {
    fn name(&self) -> &'static str {
        "gv"
    }
    fn fraction(&self) -> f64 {
        self.fraction
    }
    fn mode(&self) -> FilterMode {
        FilterMode::Scored
    }
    fn check<B: Base>(&self, base: &B) -> Result<(), OptimError> {
        check_fraction(self.fraction)?;
        if !base.capabilities().second_moment {
            return Err(super::incompatible(
                "gv",
                base,
                "the gv score needs a second moment (Adam, AdamW, NAdam, RMSProp)",
            ));
        }
        Ok(())
    }
    #[inline(always)]
    fn score<B: Base, T: Scalar>(&self, base: &B, c: &B::Coef<T>, p: T, g: T, s: &[T; 3]) -> T {
        base.effective_grad(c, p, g).abs() / base.denom(c, p, g, s)
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
        base.effective_grad(c, p, g).abs() / base.denom_updated(c, p, g, s)
    }
    const ROOTED: bool = true;
    #[inline(always)]
    fn score_updated_rooted<B: Base, T: Scalar>(
        &self,
        base: &B,
        c: &B::Coef<T>,
        p: T,
        g: T,
        s: &[T; 3],
        root: T,
    ) -> T {
        base.effective_grad(c, p, g).abs() / base.denom_updated_rooted(c, p, g, s, root)
    }
}
