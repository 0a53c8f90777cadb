//! Lion (lion-pytorch 0.2.5).
//!
//! ```text
//! θ ← θ·(1 − lr·wd)
//! θ ← θ − lr·sign(β1·m + (1 − β1)·g)          (sign(0) = 0)
//! m ← β2·m + (1 − β2)·g
//! ```
//! Buffer: `exp_avg`. The "momentum" a filter scores is m after this step.

use super::{check_beta, check_lr, check_nonneg, Base, BaseScalars, Capabilities, WeightDecay};
use crate::optim::OptimError;
use crate::Scalar;

/// Lion (Chen et al. 2023, as in lion-pytorch).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Lion {
    /// Learning rate (lion-pytorch default 1e-4).
    pub lr: f64,
    /// (β1, β2) (lion-pytorch default (0.9, 0.99)).
    pub betas: (f64, f64),
    /// Decoupled weight decay (lion-pytorch default 0).
    pub weight_decay: f64,
}

impl Default for Lion {
    fn default() -> Self {
        Lion {
            lr: 1e-4,
            betas: (0.9, 0.99),
            weight_decay: 0.0,
        }
    }
}

/// Per-step constants of [`Lion`].
#[derive(Clone, Copy, Debug)]
pub struct LionCoef<T> {
    b1: T,
    omb1: T,
    b2: T,
    omb2: T,
    neg_lr: T,
    decay: WeightDecay<T>,
}

impl<T> AsRef<WeightDecay<T>> for LionCoef<T> {
    fn as_ref(&self) -> &WeightDecay<T> {
        &self.decay
    }
}

#[inline(always)]
fn sign<T: Scalar>(x: T) -> T {
    if x > T::zero() {
        T::one()
    } else if x < T::zero() {
        -T::one()
    } else {
        T::zero()
    }
}

impl Base for Lion {
    type Coef<T: Scalar> = LionCoef<T>;

    fn name(&self) -> &'static str {
        "lion"
    }
    lr_and_weight_decay_accessors!();
    fn decoupled_decay(&self) -> bool {
        true
    }
    fn buffers(&self) -> [Option<&'static str>; 3] {
        [Some("exp_avg"), None, None]
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            momentum: true,
            first_moment: false,
            second_moment: false,
        }
    }
    fn validate(&self) -> Result<(), OptimError> {
        check_lr(self.lr)?;
        check_beta("betas[0]", self.betas.0)?;
        check_beta("betas[1]", self.betas.1)?;
        check_nonneg("weight_decay", self.weight_decay)
    }
    fn coef<T: Scalar>(&self, _t: u64, lr: f64, wd: f64, _s: &BaseScalars) -> LionCoef<T> {
        let (b1, b2) = self.betas;
        LionCoef {
            b1: T::of(b1),
            omb1: T::of(1.0 - b1),
            b2: T::of(b2),
            omb2: T::of(1.0 - b2),
            neg_lr: T::of(-lr),
            decay: WeightDecay::new(lr, wd, true),
        }
    }
    #[inline(always)]
    fn update<T: Scalar>(&self, c: &LionCoef<T>, p: T, g: T, s: &mut [T; 3]) -> T {
        let p = c.decay.shrink(p);
        let u = sign(s[0] * c.b1 + c.omb1 * g);
        s[0] = s[0] * c.b2 + c.omb2 * g;
        p + c.neg_lr * u
    }
    fn apply_updated<T: Scalar>(&self, _c: &LionCoef<T>, _p: T, _g: T, _s: &[T; 3]) -> T {
        // Lion::SPLITS is false: its direction sign(β1·m + (1 − β1)·g) needs
        // the momentum before the update, so the optimizer never calls this.
        unreachable!("Lion's step does not split (Base::SPLITS is false)")
    }
    #[inline(always)]
    fn momentum_updated<T: Scalar>(&self, _c: &LionCoef<T>, _p: T, _g: T, s: &[T; 3]) -> T {
        s[0]
    }
    #[inline(always)]
    fn denom_updated<T: Scalar>(&self, _c: &LionCoef<T>, _p: T, _g: T, _s: &[T; 3]) -> T {
        T::one()
    }
    #[inline(always)]
    fn mv_score_updated<T: Scalar>(&self, _c: &LionCoef<T>, _p: T, _g: T, s: &[T; 3]) -> T {
        s[0].abs()
    }
    #[inline(always)]
    fn momentum<T: Scalar>(&self, c: &LionCoef<T>, _p: T, g: T, s: &[T; 3]) -> T {
        s[0] * c.b2 + c.omb2 * g
    }
    #[inline(always)]
    fn denom<T: Scalar>(&self, _c: &LionCoef<T>, _p: T, _g: T, _s: &[T; 3]) -> T {
        T::one()
    }
    #[inline(always)]
    fn mv_score<T: Scalar>(&self, c: &LionCoef<T>, p: T, g: T, s: &[T; 3]) -> T {
        self.momentum(c, p, g, s).abs()
    }
}
