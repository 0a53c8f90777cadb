//! RMSProp (torch.optim.RMSprop), centered and with momentum.
//!
//! ```text
//! g ← g + wd·θ
//! s ← α·s + (1 − α)·g²
//! a ← lerp(a, g, 1 − α);  d = √(s − a²) + ε      (centered)      else  d = √s + ε
//! b ← μ·b + g/d;  θ ← θ − lr·b                   (momentum > 0)  else  θ ← θ − lr·g/d
//! ```
//! ε is outside the square root and there is no bias correction. Buffers:
//! `square_avg`, `grad_avg` (centered), `momentum_buffer` (momentum > 0).

use super::{check_lr, check_nonneg, lerp, Base, BaseScalars, Capabilities, WeightDecay};
use crate::optim::OptimError;
use crate::Scalar;

/// RMSProp (PyTorch `torch.optim.RMSprop`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RmsProp {
    /// Learning rate (PyTorch default 1e-2).
    pub lr: f64,
    /// Smoothing constant α (PyTorch default 0.99).
    pub alpha: f64,
    /// ε added outside the square root (PyTorch default 1e-8).
    pub eps: f64,
    /// L2 weight decay added to the gradient (PyTorch default 0).
    pub weight_decay: f64,
    /// Momentum μ (PyTorch default 0: no momentum buffer).
    pub momentum: f64,
    /// Centered: normalise by the estimated variance (PyTorch default false).
    pub centered: bool,
}

impl Default for RmsProp {
    fn default() -> Self {
        RmsProp {
            lr: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
        }
    }
}

/// Per-step constants of [`RmsProp`].
#[derive(Clone, Copy, Debug)]
pub struct RmsPropCoef<T> {
    alpha: T,
    oma: T,
    oma_w: T,
    omw: T,
    eps: T,
    decay: WeightDecay<T>,
    mu: T,
    neg_lr: T,
    centered: bool,
    has_momentum: bool,
}

impl<T> AsRef<WeightDecay<T>> for RmsPropCoef<T> {
    fn as_ref(&self) -> &WeightDecay<T> {
        &self.decay
    }
}

impl RmsProp {
    /// The updated square average `sq` and gradient average `a` (the old
    /// one when not centered) from the effective gradient and the old state.
    #[inline(always)]
    fn averages<T: Scalar>(c: &RmsPropCoef<T>, g: T, s: &[T; 3]) -> (T, T) {
        let sq = s[0] * c.alpha + c.oma * g * g;
        let a = if c.centered {
            lerp(s[1], g, c.oma_w, c.omw)
        } else {
            s[1]
        };
        (sq, a)
    }

    /// What the denominator takes the square root of: sq − a² (centered)
    /// or sq.
    #[inline(always)]
    fn radicand<T: Scalar>(c: &RmsPropCoef<T>, sq: T, a: T) -> T {
        if c.centered {
            sq + (-a) * a
        } else {
            sq
        }
    }

    /// The denominator √(sq − a²) + ε (centered) or √sq + ε from the updated
    /// square average `sq` and gradient average `a`.
    #[inline(always)]
    fn denom_from<T: Scalar>(c: &RmsPropCoef<T>, sq: T, a: T) -> T {
        Self::radicand(c, sq, a).torch_sqrt() + c.eps
    }

    #[inline(always)]
    fn denom_of<T: Scalar>(c: &RmsPropCoef<T>, g: T, s: &[T; 3]) -> (T, T, T) {
        let (sq, a) = Self::averages(c, g, s);
        (Self::denom_from(c, sq, a), sq, a)
    }

    /// The state half of the step: the averages `sq`, `a` and, with
    /// momentum, `b ← μ·b + g/d`, for the effective gradient `g` and the
    /// denominator `d`.
    #[inline(always)]
    fn write_state<T: Scalar>(c: &RmsPropCoef<T>, g: T, s: &mut [T; 3], sq: T, a: T, d: T) {
        s[0] = sq;
        s[1] = a;
        if c.has_momentum {
            s[2] = s[2] * c.mu + g / d;
        }
    }

    /// The parameter half of the step from the updated state `s`, the
    /// effective gradient `g` and the denominator `d` (read without
    /// momentum only).
    #[inline(always)]
    fn apply_with<T: Scalar>(c: &RmsPropCoef<T>, p: T, g: T, s: &[T; 3], d: T) -> T {
        if c.has_momentum {
            p + c.neg_lr * s[2]
        } else {
            p + c.neg_lr * g / d
        }
    }
}

impl Base for RmsProp {
    type Coef<T: Scalar> = RmsPropCoef<T>;

    fn name(&self) -> &'static str {
        "rmsprop"
    }
    lr_and_weight_decay_accessors!();
    fn decoupled_decay(&self) -> bool {
        false
    }
    fn buffers(&self) -> [Option<&'static str>; 3] {
        [
            Some("square_avg"),
            self.centered.then_some("grad_avg"),
            (self.momentum > 0.0).then_some("momentum_buffer"),
        ]
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            momentum: self.momentum > 0.0,
            first_moment: false,
            second_moment: true,
        }
    }
    fn validate(&self) -> Result<(), OptimError> {
        check_lr(self.lr)?;
        check_nonneg("alpha", self.alpha)?;
        check_nonneg("eps", self.eps)?;
        check_nonneg("weight_decay", self.weight_decay)?;
        check_nonneg("momentum", self.momentum)
    }
    fn coef<T: Scalar>(&self, _t: u64, lr: f64, wd: f64, _s: &BaseScalars) -> RmsPropCoef<T> {
        RmsPropCoef {
            alpha: T::of(self.alpha),
            oma: T::of(1.0 - self.alpha),
            oma_w: T::of(1.0 - self.alpha),
            omw: T::of(1.0 - (1.0 - self.alpha)),
            eps: T::of(self.eps),
            decay: WeightDecay::new(lr, wd, false),
            mu: T::of(self.momentum),
            neg_lr: T::of(-lr),
            centered: self.centered,
            has_momentum: self.momentum > 0.0,
        }
    }
    #[inline(always)]
    fn update<T: Scalar>(&self, c: &RmsPropCoef<T>, p: T, g: T, s: &mut [T; 3]) -> T {
        self.advance(c, p, g, s);
        self.apply_updated(c, p, g, s)
    }
    const ROOTED: bool = true;
    #[inline(always)]
    fn root_arg<T: Scalar>(&self, c: &RmsPropCoef<T>, p: T, g: T, s: &[T; 3]) -> T {
        let g = self.effective_grad(c, p, g);
        let (sq, a) = Self::averages(c, g, s);
        Self::radicand(c, sq, a)
    }
    #[inline(always)]
    fn update_rooted<T: Scalar>(
        &self,
        c: &RmsPropCoef<T>,
        p: T,
        g: T,
        s: &mut [T; 3],
        root: T,
    ) -> T {
        // `advance` then `apply_updated`, with `root + ε` as the
        // denominator both take.
        let g = self.effective_grad(c, p, g);
        let (sq, a) = Self::averages(c, g, s);
        let d = root + c.eps;
        Self::write_state(c, g, s, sq, a, d);
        Self::apply_with(c, p, g, s, d)
    }
    const SPLITS: bool = true;
    #[inline(always)]
    fn advance<T: Scalar>(&self, c: &RmsPropCoef<T>, p: T, g: T, s: &mut [T; 3]) {
        let g = self.effective_grad(c, p, g);
        let (d, sq, a) = Self::denom_of(c, g, s);
        Self::write_state(c, g, s, sq, a, d);
    }
    #[inline(always)]
    fn apply_updated<T: Scalar>(&self, c: &RmsPropCoef<T>, p: T, g: T, s: &[T; 3]) -> T {
        let g = self.effective_grad(c, p, g);
        Self::apply_with(c, p, g, s, Self::denom_from(c, s[0], s[1]))
    }
    #[inline(always)]
    fn momentum_updated<T: Scalar>(&self, c: &RmsPropCoef<T>, p: T, g: T, s: &[T; 3]) -> T {
        if c.has_momentum {
            s[2]
        } else {
            self.effective_grad(c, p, g) / Self::denom_from(c, s[0], s[1])
        }
    }
    #[inline(always)]
    fn denom_updated<T: Scalar>(&self, c: &RmsPropCoef<T>, _p: T, _g: T, s: &[T; 3]) -> T {
        Self::denom_from(c, s[0], s[1])
    }
    #[inline(always)]
    fn denom_radicand_updated<T: Scalar>(&self, c: &RmsPropCoef<T>, _p: T, _g: T, s: &[T; 3]) -> T {
        Self::radicand(c, s[0], s[1])
    }
    #[inline(always)]
    fn denom_updated_rooted<T: Scalar>(
        &self,
        c: &RmsPropCoef<T>,
        _p: T,
        _g: T,
        _s: &[T; 3],
        root: T,
    ) -> T {
        root + c.eps
    }
    #[inline(always)]
    fn mv_score_updated<T: Scalar>(&self, c: &RmsPropCoef<T>, p: T, g: T, s: &[T; 3]) -> T {
        self.momentum_updated(c, p, g, s).abs()
    }
    #[inline(always)]
    fn momentum<T: Scalar>(&self, c: &RmsPropCoef<T>, p: T, g: T, s: &[T; 3]) -> T {
        let g = self.effective_grad(c, p, g);
        let (d, _, _) = Self::denom_of(c, g, s);
        if c.has_momentum {
            s[2] * c.mu + g / d
        } else {
            g / d
        }
    }
    #[inline(always)]
    fn denom<T: Scalar>(&self, c: &RmsPropCoef<T>, p: T, g: T, s: &[T; 3]) -> T {
        let g = self.effective_grad(c, p, g);
        Self::denom_of(c, g, s).0
    }
    #[inline(always)]
    fn mv_score<T: Scalar>(&self, c: &RmsPropCoef<T>, p: T, g: T, s: &[T; 3]) -> T {
        self.momentum(c, p, g, s).abs()
    }
}
