//! Filters: which entries of a block get the base's update.
//!
//! A scored filter gives every entry a score; the optimizer keeps, per block
//! of d entries, the k = min(d, max(1, ⌈α·d − 1e-9⌉)) entries of largest
//! score (ties: smaller flat index first) through [`crate::optim::select`].
//!
//! | filter | score | needs |
//! |---|---|---|
//! | [`Momentum`] (MoFO) | \|m_t\| | a momentum state |
//! | [`Gradient`] | \|g\| (coupled L2 included) | any base |
//! | [`Mv`] | \|m̂\| / (√v̂ + ε) | first and second moments |
//! | [`Gv`] | \|g\| / (√v̂ + ε) | a second moment |
//! | [`Random`] | uniform random k-subset, reseeded per step | any base |
//! | [`HalfFineTuning`] | a random half of the blocks of each layer, in full | any base |
//! | [`NoFilter`] | every entry | any base |

mod gradient;
mod gv;
mod hft;
mod momentum;
mod mv;
mod none;
mod random;

pub use gradient::Gradient;
pub use gv::Gv;
pub use hft::HalfFineTuning;
pub use momentum::Momentum;
pub use mv::Mv;
pub use none::NoFilter;
pub use random::Random;

use crate::optim::base::Base;
use crate::optim::OptimError;
use crate::Scalar;

/// How a filter chooses entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterMode {
    /// Every entry is updated.
    All,
    /// Top-k of [`Filter::score`] per block.
    Scored,
    /// Top-k of random keys drawn per (seed, step, block): a uniform k-subset.
    Random {
        /// The seed.
        seed: u64,
    },
    /// A random half of the blocks of each block group, each updated in full.
    BlockRandom {
        /// The seed.
        seed: u64,
    },
}

/// A filter (see the module docs for the list).
pub trait Filter: Clone + std::fmt::Debug + Send + Sync + 'static {
    /// Short name (`momentum`, `gradient`, `mv`, `gv`, `random`, `hft`, `none`).
    fn name(&self) -> &'static str;
    /// The default fraction α of each block that is updated (groups may override).
    fn fraction(&self) -> f64;
    /// How the filter chooses entries.
    fn mode(&self) -> FilterMode;
    /// Checks that the filter can work with `base`; called at construction.
    fn check<B: Base>(&self, _base: &B) -> Result<(), OptimError> {
        Ok(())
    }
    /// The score of one entry, from the state *before* this step's update
    /// (the base computes the updated quantities). Only called in
    /// [`FilterMode::Scored`] mode; other modes return zero.
    fn score<B: Base, T: Scalar>(&self, base: &B, c: &B::Coef<T>, p: T, g: T, s: &[T; 3]) -> T;
    /// The same score computed from the state *after* this step's update
    /// (`Base::advance`), bit for bit equal to [`Filter::score`] on the state
    /// before it; used by the fused step when `Base::SPLITS`. Filters that
    /// are not scored keep the default (zero).
    #[inline(always)]
    fn score_updated<B: Base, T: Scalar>(
        &self,
        _base: &B,
        _c: &B::Coef<T>,
        _p: T,
        _g: T,
        _s: &[T; 3],
    ) -> T {
        T::zero()
    }
    /// Whether [`Filter::score_updated`] divides by the base's denominator
    /// `Base::denom_updated`, a rounded square root per entry (mv, gv): the
    /// fused step's loops then take those roots sixteen at a time and call
    /// [`Filter::score_updated_rooted`].
    const ROOTED: bool = false;
    /// [`Filter::score_updated`] given `root`, the [`Scalar::torch_sqrt`]
    /// of `Base::denom_radicand_updated` on the same inputs: bit for bit
    /// the same score.
    #[inline(always)]
    fn score_updated_rooted<B: Base, T: Scalar>(
        &self,
        base: &B,
        c: &B::Coef<T>,
        p: T,
        g: T,
        s: &[T; 3],
        _root: T,
    ) -> T {
        self.score_updated(base, c, p, g, s)
    }
}

pub(crate) fn incompatible<B: Base>(filter: &str, base: &B, reason: &str) -> OptimError {
    OptimError::Incompatible {
        filter: filter.to_string(),
        base: base.name().to_string(),
        reason: reason.to_string(),
    }
}
