//! The identity filter (default fine-tuning): every entry is updated.

use super::{Filter, FilterMode};
use crate::optim::base::Base;
use crate::Scalar;

/// No filter: the base optimizer as is.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NoFilter;

impl Filter for NoFilter {
    fn name(&self) -> &'static str {
        "none"
    }
    fn fraction(&self) -> f64 {
        1.0
    }
    fn mode(&self) -> FilterMode {
        FilterMode::All
    }
    fn score<B: Base, T: Scalar>(&self, _b: &B, _c: &B::Coef<T>, _p: T, _g: T, _s: &[T; 3]) -> T {
        T::zero()
    }
}
