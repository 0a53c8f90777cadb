//! SGD (torch.optim.SGD) with momentum, dampening and Nesterov.
//!
//! ```text
//! g ← g + wd·θ
//! b ← g  (t = 1)   else   b ← μ·b + (1 − τ)·g          (momentum μ > 0, dampening τ)
//! d = g + μ·b  (Nesterov)   else   d = b                (d = g without momentum)
//! θ ← θ − lr·d
//! ```
//! Buffer: `momentum_buffer` (momentum > 0).

use super::{check_lr, check_nonneg, Base, BaseScalars, Capabilities, WeightDecay};
use crate::optim::OptimError;
use crate::Scalar;

/// SGD (PyTorch `torch.optim.SGD`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Sgd {
    /// Learning rate (PyTorch default 1e-3).
    pub lr: f64,
    /// Momentum μ (PyTorch default 0).
    pub momentum: f64,
    /// Dampening τ (PyTorch default 0).
    pub dampening: f64,
    /// L2 weight decay added to the gradient (PyTorch default 0).
    pub weight_decay: f64,
    /// Nesterov momentum (PyTorch default false; needs momentum > 0 and dampening 0).
    pub nesterov: bool,
}

impl Default for Sgd {
    fn default() -> Self {
        Sgd {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
}

/// Per-step constants of [`Sgd`].
#[derive(Clone, Copy, Debug)]
pub struct SgdCoef<T> {
    mu: T,
    omd: T,
    decay: WeightDecay<T>,
    neg_lr: T,
    first: bool,
    has_momentum: bool,
    nesterov: bool,
}

impl<T> AsRef<WeightDecay<T>> for SgdCoef<T> {
    fn as_ref(&self) -> &WeightDecay<T> {
        &self.decay
    }
}

impl Sgd {
    #[inline(always)]
    fn buf<T: Scalar>(c: &SgdCoef<T>, g: T, s: &[T; 3]) -> T {
        if c.first {
            g
        } else {
            s[0] * c.mu + c.omd * g
        }
    }
}

impl Base for Sgd {
    type Coef<T: Scalar> = SgdCoef<T>;

    fn name(&self) -> &'static str {
        "sgd"
    }
    lr_and_weight_decay_accessors!();
    fn decoupled_decay(&self) -> bool {
        false
    }
    fn buffers(&self) -> [Option<&'static str>; 3] {
        [
            (self.momentum != 0.0).then_some("momentum_buffer"),
            None,
            None,
        ]
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            momentum: self.momentum != 0.0,
            first_moment: false,
            second_moment: false,
        }
    }
    fn validate(&self) -> Result<(), OptimError> {
        check_lr(self.lr)?;
        check_nonneg("momentum", self.momentum)?;
        check_nonneg("dampening", self.dampening)?;
        check_nonneg("weight_decay", self.weight_decay)?;
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(OptimError::hyper(
                "nesterov",
                1.0,
                "Nesterov momentum requires momentum > 0 and dampening = 0",
            ));
        }
        Ok(())
    }
    fn coef<T: Scalar>(&self, t: u64, lr: f64, wd: f64, _s: &BaseScalars) -> SgdCoef<T> {
        SgdCoef {
            mu: T::of(self.momentum),
            omd: T::of(1.0 - self.dampening),
            decay: WeightDecay::new(lr, wd, false),
            neg_lr: T::of(-lr),
            first: t <= 1,
            has_momentum: self.momentum != 0.0,
            nesterov: self.nesterov,
        }
    }
    #[inline(always)]
    fn update<T: Scalar>(&self, c: &SgdCoef<T>, p: T, g: T, s: &mut [T; 3]) -> T {
        self.advance(c, p, g, s);
        self.apply_updated(c, p, g, s)
    }
    const SPLITS: bool = true;
    #[inline(always)]
    fn advance<T: Scalar>(&self, c: &SgdCoef<T>, p: T, g: T, s: &mut [T; 3]) {
        if c.has_momentum {
            let g = self.effective_grad(c, p, g);
            s[0] = Self::buf(c, g, s);
        }
    }
    #[inline(always)]
    fn apply_updated<T: Scalar>(&self, c: &SgdCoef<T>, p: T, g: T, s: &[T; 3]) -> T {
        let g = self.effective_grad(c, p, g);
        let d = if c.has_momentum {
            if c.nesterov {
                g + c.mu * s[0]
            } else {
                s[0]
            }
        } else {
            g
        };
        p + c.neg_lr * d
    }
    #[inline(always)]
    fn momentum_updated<T: Scalar>(&self, c: &SgdCoef<T>, p: T, g: T, s: &[T; 3]) -> T {
        if c.has_momentum {
            s[0]
        } else {
            self.effective_grad(c, p, g)
        }
    }
    #[inline(always)]
    fn denom_updated<T: Scalar>(&self, _c: &SgdCoef<T>, _p: T, _g: T, _s: &[T; 3]) -> T {
        T::one()
    }
    #[inline(always)]
    fn mv_score_updated<T: Scalar>(&self, c: &SgdCoef<T>, p: T, g: T, s: &[T; 3]) -> T {
        self.momentum_updated(c, p, g, s).abs()
    }
    #[inline(always)]
    fn momentum<T: Scalar>(&self, c: &SgdCoef<T>, p: T, g: T, s: &[T; 3]) -> T {
        let g = self.effective_grad(c, p, g);
        if c.has_momentum {
            Self::buf(c, g, s)
        } else {
            g
        }
    }
    #[inline(always)]
    fn denom<T: Scalar>(&self, _c: &SgdCoef<T>, _p: T, _g: T, _s: &[T; 3]) -> T {
        T::one()
    }
    #[inline(always)]
    fn mv_score<T: Scalar>(&self, c: &SgdCoef<T>, p: T, g: T, s: &[T; 3]) -> T {
        self.momentum(c, p, g, s).abs()
    }
}
