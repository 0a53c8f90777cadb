//! Adam and AdamW (torch.optim.Adam / AdamW), with AMSGrad.
//!
//! ```text
//! g ← g + wd·θ                       (coupled L2, Adam)   or   θ ← θ·(1 − lr·wd)   (decoupled, AdamW)
//! m ← lerp(m, g, 1 − β1)
//! v ← β2·v + (1 − β2)·g²
//! v_max ← max(v_max, v)               (AMSGrad; the raw v)
//! θ ← θ − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε)
//! ```
//! β^t, the bias corrections and lr/bc1 are computed in f64. Buffers:
//! `exp_avg`, `exp_avg_sq`, `max_exp_avg_sq` (AMSGrad only).

use super::{
    check_beta, check_lr, check_nonneg, lerp, Base, BaseScalars, Capabilities, WeightDecay,
};
use crate::optim::OptimError;
use crate::Scalar;

/// Adam (PyTorch `torch.optim.Adam`); `decoupled_weight_decay = true` is AdamW.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Adam {
    /// Learning rate (PyTorch default 1e-3).
    pub lr: f64,
    /// (β1, β2) (PyTorch default (0.9, 0.999)).
    pub betas: (f64, f64),
    /// ε added outside the square root (PyTorch default 1e-8).
    pub eps: f64,
    /// Weight decay (PyTorch default 0 for Adam, 1e-2 for AdamW).
    pub weight_decay: f64,
    /// Decoupled decay θ·(1 − lr·wd) instead of L2 (false for Adam, true for AdamW).
    pub decoupled_weight_decay: bool,
    /// AMSGrad: use the running max of v (PyTorch default false).
    pub amsgrad: bool,
}

impl Default for Adam {
    fn default() -> Self {
        Adam {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled_weight_decay: false,
            amsgrad: false,
        }
    }
}

impl Adam {
    /// Adam with learning rate `lr` and PyTorch's other defaults.
    pub fn new(lr: f64) -> Self {
        Adam {
            lr,
            ..Self::default()
        }
    }

    /// AdamW (PyTorch `torch.optim.AdamW`): decoupled decay, default wd 1e-2.
    pub fn adamw(lr: f64) -> Self {
        Adam {
            lr,
            weight_decay: 1e-2,
            decoupled_weight_decay: true,
            ..Self::default()
        }
    }
}

/// Per-step constants of [`Adam`].
#[derive(Clone, Copy, Debug)]
pub struct AdamCoef<T> {
    w1: T,
    omw1: T,
    b2: T,
    omb2: T,
    neg_step_size: T,
    bc1: T,
    bc2: T,
    bc2_sqrt: T,
    eps: T,
    decay: WeightDecay<T>,
    amsgrad: bool,
}

impl<T> AsRef<WeightDecay<T>> for AdamCoef<T> {
    fn as_ref(&self) -> &WeightDecay<T> {
        &self.decay
    }
}

/// The constants of an f32 Adam(W) step without AMSGrad or coupled decay
/// (`None` otherwise), as the hand-written AVX-512 single pass of MoFO-Adam
/// (`optim::optimizer::fused::single_adam_avx512`) reads them:
/// `m ← lerp(m, g, w1)`, `v ← v·b2 + (omb2·g)·g`,
/// `θ ← θ·decay (decoupled) + (neg_step_size·m) / (√v / bc2_sqrt + eps)`;
/// the mv and gv scores' `bc1`, `bc2` (`|m / bc1|` or `|g|` over
/// `torch_sqrt(v / bc2) + eps`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct PlainAdamF32 {
    pub(crate) w1: f32,
    pub(crate) omw1: f32,
    pub(crate) b2: f32,
    pub(crate) omb2: f32,
    pub(crate) neg_step_size: f32,
    pub(crate) bc1: f32,
    pub(crate) bc2: f32,
    pub(crate) bc2_sqrt: f32,
    pub(crate) eps: f32,
    pub(crate) decay: f32,
    pub(crate) decoupled: bool,
}

impl AdamCoef<f32> {
    /// This step's constants for the hand-written single pass, when the
    /// step is plain (no AMSGrad, no coupled L2 term).
    pub(crate) fn plain(&self) -> Option<PlainAdamF32> {
        (!self.amsgrad && !self.decay.is_coupled()).then_some(PlainAdamF32 {
            w1: self.w1,
            omw1: self.omw1,
            b2: self.b2,
            omb2: self.omb2,
            neg_step_size: self.neg_step_size,
            bc1: self.bc1,
            bc2: self.bc2,
            bc2_sqrt: self.bc2_sqrt,
            eps: self.eps,
            decay: self.decay.factor(),
            decoupled: self.decay.is_decoupled(),
        })
    }
}

impl Base for Adam {
    type Coef<T: Scalar> = AdamCoef<T>;

    fn name(&self) -> &'static str {
        if self.decoupled_weight_decay {
            "adamw"
        } else {
            "adam"
        }
    }
    lr_and_weight_decay_accessors!();
    fn decoupled_decay(&self) -> bool {
        self.decoupled_weight_decay
    }
    fn buffers(&self) -> [Option<&'static str>; 3] {
        [
            Some("exp_avg"),
            Some("exp_avg_sq"),
            self.amsgrad.then_some("max_exp_avg_sq"),
        ]
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            momentum: true,
            first_moment: true,
            second_moment: true,
        }
    }
    fn validate(&self) -> Result<(), OptimError> {
        check_lr(self.lr)?;
        check_beta("betas[0]", self.betas.0)?;
        check_beta("betas[1]", self.betas.1)?;
        check_nonneg("eps", self.eps)?;
        check_nonneg("weight_decay", self.weight_decay)
    }
    fn coef<T: Scalar>(&self, t: u64, lr: f64, wd: f64, _s: &BaseScalars) -> AdamCoef<T> {
        let (b1, b2) = self.betas;
        let bc1 = 1.0 - b1.powi(t as i32);
        let bc2 = 1.0 - b2.powi(t as i32);
        AdamCoef {
            w1: T::of(1.0 - b1),
            omw1: T::of(1.0 - (1.0 - b1)),
            b2: T::of(b2),
            omb2: T::of(1.0 - b2),
            neg_step_size: T::of(-(lr / bc1)),
            bc1: T::of(bc1),
            bc2: T::of(bc2),
            bc2_sqrt: T::of(bc2.sqrt()),
            eps: T::of(self.eps),
            decay: WeightDecay::new(lr, wd, self.decoupled_weight_decay),
            amsgrad: self.amsgrad,
        }
    }
    #[inline(always)]
    fn update<T: Scalar>(&self, c: &AdamCoef<T>, p: T, g: T, s: &mut [T; 3]) -> T {
        self.advance(c, p, g, s);
        self.apply_updated(c, p, g, s)
    }
    const SPLITS: bool = true;
    #[inline(always)]
    fn advance<T: Scalar>(&self, c: &AdamCoef<T>, p: T, g: T, s: &mut [T; 3]) {
        let g = self.effective_grad(c, p, g);
        let m = lerp(s[0], g, c.w1, c.omw1);
        let v = s[1] * c.b2 + c.omb2 * g * g;
        s[0] = m;
        s[1] = v;
        if c.amsgrad {
            s[2] = if s[2] > v { s[2] } else { v };
        }
    }
    #[inline(always)]
    fn apply_updated<T: Scalar>(&self, c: &AdamCoef<T>, p: T, _g: T, s: &[T; 3]) -> T {
        let p = c.decay.shrink(p);
        let vd = if c.amsgrad { s[2] } else { s[1] };
        let denom = vd.sqrt() / c.bc2_sqrt + c.eps;
        p + c.neg_step_size * s[0] / denom
    }
    bias_corrected_moment_scores!();
    #[inline(always)]
    fn denom_radicand_updated<T: Scalar>(&self, c: &AdamCoef<T>, _p: T, _g: T, s: &[T; 3]) -> T {
        let vd = if c.amsgrad { s[2] } else { s[1] };
        vd / c.bc2
    }
    #[inline(always)]
    fn denom<T: Scalar>(&self, c: &AdamCoef<T>, p: T, g: T, s: &[T; 3]) -> T {
        let g = self.effective_grad(c, p, g);
        let v = s[1] * c.b2 + c.omb2 * g * g;
        let vd = if c.amsgrad && s[2] > v { s[2] } else { v };
        // The score's v̂ = v / bc2 (divided before the square root), as the
        // reference computes it; the step itself uses √v / √bc2 (PyTorch).
        (vd / c.bc2).torch_sqrt() + c.eps
    }
}
