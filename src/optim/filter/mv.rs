//! MV filter (MV BCD): score |m̂_t| / (√v̂_t + ε), bias-corrected as in Adam.

use super::{Filter, FilterMode};
use crate::optim::base::Base;
use crate::optim::error::check_fraction;
use crate::optim::OptimError;
use crate::Scalar;

/// MV BCD: keep the entries of largest |m̂| / (√v̂ + ε).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Mv {
    /// Fraction α of each block that is updated, in (0, 1] (paper default 0.1–0.15).
    pub fraction: f64,
}

impl Mv {
    /// The filter with fraction α.
    pub fn new(fraction: f64) -> Self {
        Mv { fraction }
    }
}

impl Filter for Mv {
    fn name(&self) -> &'static str {
        "mv"
    }
    fn fraction(&self) -> f64 {
        self.fraction
    }
    fn mode(&self) -> FilterMode {
        FilterMode::Scored
    }
    fn check<B: Base>(&self, base: &B) -> Result<(), OptimError> {
        check_fraction(self.fraction)?;
        let caps = base.capabilities();
        if !(caps.first_moment && caps.second_moment) {
            return Err(super::incompatible(
                "mv",
                base,
                "the mv score needs a first and a second moment (Adam, AdamW, NAdam)",
            ));
        }
        Ok(())
    }
    #[inline(always)]
    fn score<B: Base, T: Scalar>(&self, base: &B, c: &B::Coef<T>, p: T, g: T, s: &[T; 3]) -> T {
        base.mv_score(c, p, g, s)
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
        base.mv_score_updated(c, p, g, s)
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
        base.mv_score_updated_rooted(c, p, g, s, root)
    }
}
