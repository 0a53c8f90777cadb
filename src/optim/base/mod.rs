//! Base optimizers: the state update and the full update of one entry.
//!
//! A base is a plain config struct (PyTorch's defaults on every field) that
//! implements [`Base`]. Per step the optimizer asks it once per parameter
//! group for its per-step constants ([`Base::coef`], computed in f64 and
//! rounded to `T` once), then calls [`Base::update`] for every entry:
//!
//! ```text
//! (θ', state') = update(coef, θ, g, state)
//! ```
//!
//! Every entry gets its state update; the filter decides whether θ' is kept.
//!
//! Bases whose new parameter depends on the old state only through the
//! updated state ([`Base::SPLITS`]: all but Lion, whose direction uses the
//! momentum before its update) also split the step in two halves,
//!
//! ```text
//! state' = advance(coef, θ, g, state)        θ' = apply_updated(coef, θ, g, state')
//! ```
//!
//! with `update` defined as exactly that composition (so the halves are bit
//! for bit the full step), and give the filter scores from `state'`
//! (`*_updated`). The optimizer's fused step uses them
//! (`optim::fused`).
//! Per-entry state lives in up to three buffers (`s[0..3]`), named by
//! [`Base::buffers`]; unused slots hold zero.

/// The four [`Base`] accessors of a config with `lr` and `weight_decay`
/// fields (every base here has both): `lr`, `weight_decay`, `set_lr` and
/// `set_weight_decay`, written inside its `impl Base`.
macro_rules! lr_and_weight_decay_accessors {
    () => {
        fn lr(&self) -> f64 {
            self.lr
        }
        fn weight_decay(&self) -> f64 {
            self.weight_decay
        }
        fn set_lr(&mut self, lr: f64) {
            self.lr = lr;
        }
        fn set_weight_decay(&mut self, wd: f64) {
            self.weight_decay = wd;
        }
    };
}

/// The scores of a base with a bias-corrected first moment m (slot 0,
/// updated by `lerp(m, g, 1 − β1)` with the coefficient's `w1`, `omw1`) and
/// a second-moment denominator √radicand + ε (Adam, NAdam), written inside
/// its `impl Base`; the base writes its own [`Base::denom_radicand_updated`]
/// and [`Base::denom`]:
///
/// ```text
/// momentum = m_t                    mv_score = |m_t / (1 − β1^t)| / denom
/// denom_updated = torch_sqrt(radicand) + ε
/// ```
macro_rules! bias_corrected_moment_scores {
    () => {
        #[inline(always)]
        fn momentum_updated<T: Scalar>(&self, _c: &Self::Coef<T>, _p: T, _g: T, s: &[T; 3]) -> T {
            s[0]
        }
        #[inline(always)]
        fn denom_updated<T: Scalar>(&self, c: &Self::Coef<T>, p: T, g: T, s: &[T; 3]) -> T {
            let root = self.denom_radicand_updated(c, p, g, s).torch_sqrt();
            self.denom_updated_rooted(c, p, g, s, root)
        }
        #[inline(always)]
        fn mv_score_updated<T: Scalar>(&self, c: &Self::Coef<T>, p: T, g: T, s: &[T; 3]) -> T {
            let root = self.denom_radicand_updated(c, p, g, s).torch_sqrt();
            self.mv_score_updated_rooted(c, p, g, s, root)
        }
        #[inline(always)]
        fn denom_updated_rooted<T: Scalar>(
            &self,
            c: &Self::Coef<T>,
            _p: T,
            _g: T,
            _s: &[T; 3],
            root: T,
        ) -> T {
            root + c.eps
        }
        #[inline(always)]
        fn mv_score_updated_rooted<T: Scalar>(
            &self,
            c: &Self::Coef<T>,
            p: T,
            g: T,
            s: &[T; 3],
            root: T,
        ) -> T {
            // m̂ = m / bc1 (a division, as the reference computes it).
            (s[0] / c.bc1).abs() / self.denom_updated_rooted(c, p, g, s, root)
        }
        #[inline(always)]
        fn momentum<T: Scalar>(&self, c: &Self::Coef<T>, p: T, g: T, s: &[T; 3]) -> T {
            let g = self.effective_grad(c, p, g);
            lerp(s[0], g, c.w1, c.omw1)
        }
        #[inline(always)]
        fn mv_score<T: Scalar>(&self, c: &Self::Coef<T>, p: T, g: T, s: &[T; 3]) -> T {
            let m = self.momentum(c, p, g, s);
            (m / c.bc1).abs() / self.denom(c, p, g, s)
        }
    };
}

mod adam;
mod decay;
mod lion;
mod nadam;
mod rmsprop;
mod sgd;

pub(crate) use adam::PlainAdamF32;
pub use adam::{Adam, AdamCoef};
pub use decay::WeightDecay;
pub use lion::{Lion, LionCoef};
pub use nadam::{NAdam, NAdamCoef};
pub use rmsprop::{RmsProp, RmsPropCoef};
pub use sgd::{Sgd, SgdCoef};

use crate::optim::OptimError;
use crate::Scalar;

/// Step-wide scalar state of a base (saved with the optimizer state).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BaseScalars {
    /// NAdam's running product of μ_t, kept in f32 as PyTorch does (1 at start).
    pub mu_product: f32,
}

impl Default for BaseScalars {
    fn default() -> Self {
        BaseScalars { mu_product: 1.0 }
    }
}

/// Which optional state a base keeps (what filters may score).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Has a momentum state (first moment or momentum buffer).
    pub momentum: bool,
    /// Has an Adam-style bias-corrected first moment m̂.
    pub first_moment: bool,
    /// Has a second moment v (for mv/gv scores).
    pub second_moment: bool,
}

/// A base optimizer (PyTorch semantics, see SPEC.md section 2).
pub trait Base: Clone + std::fmt::Debug + Send + Sync + 'static {
    /// Per-step constants for one parameter group, in the element type,
    /// its [`WeightDecay`] among them.
    type Coef<T: Scalar>: Copy + Send + Sync + AsRef<WeightDecay<T>>;

    /// Short name (`adam`, `adamw`, `nadam`, `rmsprop`, `sgd`, `lion`).
    fn name(&self) -> &'static str;
    /// The configured learning rate.
    fn lr(&self) -> f64;
    /// The configured weight decay.
    fn weight_decay(&self) -> f64;
    /// Sets the learning rate (used by parameter groups and schedules).
    fn set_lr(&mut self, lr: f64);
    /// Sets the weight decay (used by parameter groups).
    fn set_weight_decay(&mut self, wd: f64);
    /// Whether weight decay is decoupled (θ ← θ·(1 − lr·wd)) rather than L2 in the gradient.
    fn decoupled_decay(&self) -> bool;
    /// Names of the per-entry state buffers in slots 0..3 (None: slot unused).
    fn buffers(&self) -> [Option<&'static str>; 3];
    /// What state this base keeps.
    fn capabilities(&self) -> Capabilities;
    /// Checks every hyperparameter; called at construction.
    fn validate(&self) -> Result<(), OptimError>;
    /// Advances the step-wide scalar state to step `t` (once per step).
    fn advance_scalars(&self, _t: u64, _s: &mut BaseScalars) {}
    /// Per-step constants at step `t` (1-based) for a group with this lr and wd.
    fn coef<T: Scalar>(&self, t: u64, lr: f64, wd: f64, s: &BaseScalars) -> Self::Coef<T>;
    /// The gradient that enters the state (coupled L2 term included).
    #[inline(always)]
    fn effective_grad<T: Scalar>(&self, c: &Self::Coef<T>, p: T, g: T) -> T {
        c.as_ref().grad(p, g)
    }
    /// One entry's full step: updates `s` and returns the new parameter value.
    fn update<T: Scalar>(&self, c: &Self::Coef<T>, p: T, g: T, s: &mut [T; 3]) -> T;
    /// Whether the step takes one rounded square root per entry
    /// ([`Scalar::torch_sqrt`], RMSProp's denominator): the update loops
    /// then gather a line of [`Base::root_arg`]s, take their roots at once
    /// with [`Scalar::torch_sqrt_16`] (which vectorises, where a loop
    /// calling the scalar root does not) and call [`Base::update_rooted`].
    const ROOTED: bool = false;
    /// The argument of the step's square root, from the state before the
    /// step (only called when [`Base::ROOTED`]).
    #[inline(always)]
    fn root_arg<T: Scalar>(&self, _c: &Self::Coef<T>, _p: T, _g: T, _s: &[T; 3]) -> T {
        T::zero()
    }
    /// [`Base::update`] given `root`, the [`Scalar::torch_sqrt`] of
    /// [`Base::root_arg`] of the same inputs: bit for bit the same step.
    #[inline(always)]
    fn update_rooted<T: Scalar>(
        &self,
        c: &Self::Coef<T>,
        p: T,
        g: T,
        s: &mut [T; 3],
        _root: T,
    ) -> T {
        self.update(c, p, g, s)
    }
    /// The momentum after this step's update, without writing state
    /// (Adam/NAdam: m_t; Lion: m_t; RMSProp/SGD: the momentum buffer).
    /// Bases without momentum return their update direction; the optimizer
    /// never scores those with the momentum filter (construction error).
    fn momentum<T: Scalar>(&self, c: &Self::Coef<T>, p: T, g: T, s: &[T; 3]) -> T;
    /// The second-moment denominator √v̂ + ε after this step's update
    /// (bases without a second moment return 1; never used by filters).
    fn denom<T: Scalar>(&self, c: &Self::Coef<T>, p: T, g: T, s: &[T; 3]) -> T;
    /// |m̂| / (√v̂ + ε) after this step's update (m̂ bias-corrected as in Adam).
    fn mv_score<T: Scalar>(&self, c: &Self::Coef<T>, p: T, g: T, s: &[T; 3]) -> T;
    /// Whether [`Base::apply_updated`] exists (the step splits into
    /// `advance` + `apply_updated`, module docs). Lion: false.
    const SPLITS: bool = false;
    /// The state half of [`Base::update`]: writes the updated state into `s`.
    #[inline(always)]
    fn advance<T: Scalar>(&self, c: &Self::Coef<T>, p: T, g: T, s: &mut [T; 3]) {
        let _ = self.update(c, p, g, s);
    }
    /// The parameter half of [`Base::update`]: θ' from θ, g and the state
    /// *after* [`Base::advance`]. Only called when [`Base::SPLITS`] is true.
    fn apply_updated<T: Scalar>(&self, c: &Self::Coef<T>, p: T, g: T, s: &[T; 3]) -> T;
    /// [`Base::momentum`] computed from the state after [`Base::advance`]
    /// (bit for bit the same value).
    fn momentum_updated<T: Scalar>(&self, c: &Self::Coef<T>, p: T, g: T, s: &[T; 3]) -> T;
    /// [`Base::denom`] computed from the state after [`Base::advance`].
    fn denom_updated<T: Scalar>(&self, c: &Self::Coef<T>, p: T, g: T, s: &[T; 3]) -> T;
    /// [`Base::mv_score`] computed from the state after [`Base::advance`].
    fn mv_score_updated<T: Scalar>(&self, c: &Self::Coef<T>, p: T, g: T, s: &[T; 3]) -> T;
    /// What [`Base::denom_updated`] takes the square root of
    /// ([`Scalar::torch_sqrt`]; bases with a second moment), from the state
    /// after [`Base::advance`]. The fused step's loops for the mv and gv
    /// filters take these roots sixteen at a time
    /// ([`Scalar::torch_sqrt_16`]) and call the `*_rooted` forms below.
    #[inline(always)]
    fn denom_radicand_updated<T: Scalar>(
        &self,
        _c: &Self::Coef<T>,
        _p: T,
        _g: T,
        _s: &[T; 3],
    ) -> T {
        T::zero()
    }
    /// [`Base::denom_updated`] given `root`, the [`Scalar::torch_sqrt`] of
    /// [`Base::denom_radicand_updated`] on the same inputs: bit for bit the
    /// same value.
    #[inline(always)]
    fn denom_updated_rooted<T: Scalar>(
        &self,
        c: &Self::Coef<T>,
        p: T,
        g: T,
        s: &[T; 3],
        _root: T,
    ) -> T {
        self.denom_updated(c, p, g, s)
    }
    /// [`Base::mv_score_updated`] given the same `root` as
    /// [`Base::denom_updated_rooted`]: bit for bit the same value.
    #[inline(always)]
    fn mv_score_updated_rooted<T: Scalar>(
        &self,
        c: &Self::Coef<T>,
        p: T,
        g: T,
        s: &[T; 3],
        _root: T,
    ) -> T {
        self.mv_score_updated(c, p, g, s)
    }
    /// Only the decoupled decay θ·(1 − lr·wd) (θ itself when decay is coupled or zero).
    #[inline(always)]
    fn decay_only<T: Scalar>(&self, c: &Self::Coef<T>, p: T) -> T {
        c.as_ref().shrink(p)
    }
}

/// PyTorch's `lerp`: `a + w·(b − a)` for |w| < 0.5, else `b − (b − a)·(1 − w)`.
#[inline(always)]
pub fn lerp<T: Scalar>(a: T, b: T, w: T, one_minus_w: T) -> T {
    if w < T::of(0.5) {
        a + w * (b - a)
    } else {
        b - (b - a) * one_minus_w
    }
}

pub(crate) fn check_lr(lr: f64) -> Result<(), OptimError> {
    if lr.is_finite() && lr >= 0.0 {
        Ok(())
    } else {
        Err(OptimError::hyper(
            "lr",
            lr,
            "the learning rate must be finite and ≥ 0",
        ))
    }
}

pub(crate) fn check_beta(name: &str, b: f64) -> Result<(), OptimError> {
    if b.is_finite() && (0.0..1.0).contains(&b) {
        Ok(())
    } else {
        Err(OptimError::hyper(name, b, "must lie in [0, 1)"))
    }
}

pub(crate) fn check_nonneg(name: &str, x: f64) -> Result<(), OptimError> {
    if x.is_finite() && x >= 0.0 {
        Ok(())
    } else {
        Err(OptimError::hyper(name, x, "must be finite and ≥ 0"))
    }
}
