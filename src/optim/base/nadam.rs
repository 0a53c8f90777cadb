//! NAdam (torch.optim.NAdam), with its momentum-decay schedule.
//!
//! ```text
//! g ← g + wd·θ  (coupled)   or   θ ← θ·(1 − lr·wd)  (decoupled_weight_decay)
//! μ_t = β1·(1 − ½·0.96^(t·ψ)),  μ_{t+1} = β1·(1 − ½·0.96^((t+1)·ψ))
//! Π_t = Π_{t−1}·μ_t                        (kept in f32, as PyTorch does)
//! m ← lerp(m, g, 1 − β1);   v ← β2·v + (1 − β2)·g²
//! d = √(v / (1 − β2^t)) + ε
//! θ ← θ − lr·(1 − μ_t)/(1 − Π_t) · g/d;   θ ← θ − lr·μ_{t+1}/(1 − Π_t·μ_{t+1}) · m/d
//! ```
//! Buffers: `exp_avg`, `exp_avg_sq`.

use super::{
    check_beta, check_lr, check_nonneg, lerp, Base, BaseScalars, Capabilities, WeightDecay,
};
use crate::optim::OptimError;
use crate::Scalar;

/// NAdam (PyTorch `torch.optim.NAdam`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct NAdam {
    /// Learning rate (PyTorch default 2e-3).
    pub lr: f64,
    /// (β1, β2) (PyTorch default (0.9, 0.999)).
    pub betas: (f64, f64),
    /// ε added outside the square root (PyTorch default 1e-8).
    pub eps: f64,
    /// Weight decay (PyTorch default 0).
    pub weight_decay: f64,
    /// Momentum decay ψ (PyTorch default 4e-3).
    pub momentum_decay: f64,
    /// Decoupled decay as in AdamW (PyTorch default false).
    pub decoupled_weight_decay: bool,
}

impl Default for NAdam {
    fn default() -> Self {
        NAdam {
            lr: 2e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            momentum_decay: 4e-3,
            decoupled_weight_decay: false,
        }
    }
}

/// Per-step constants of [`NAdam`].
#[derive(Clone, Copy, Debug)]
pub struct NAdamCoef<T> {
    w1: T,
    omw1: T,
    b2: T,
    omb2: T,
    bc2: T,
    bc1: T,
    c_grad: T,
    c_mom: T,
    eps: T,
    decay: WeightDecay<T>,
}

impl<T> AsRef<WeightDecay<T>> for NAdamCoef<T> {
    fn as_ref(&self) -> &WeightDecay<T> {
        &self.decay
    }
}

fn mu(b1: f64, psi: f64, t: u64) -> f64 {
    b1 * (1.0 - 0.5 * 0.96f64.powf(t as f64 * psi))
}

impl Base for NAdam {
    type Coef<T: Scalar> = NAdamCoef<T>;

    fn name(&self) -> &'static str {
        "nadam"
    }
    lr_and_weight_decay_accessors!();
    fn decoupled_decay(&self) -> bool {
        self.decoupled_weight_decay
    }
    fn buffers(&self) -> [Option<&'static str>; 3] {
        [Some("exp_avg"), Some("exp_avg_sq"), None]
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
        check_nonneg("weight_decay", self.weight_decay)?;
        check_nonneg("momentum_decay", self.momentum_decay)
    }
    fn advance_scalars(&self, t: u64, s: &mut BaseScalars) {
        s.mu_product *= mu(self.betas.0, self.momentum_decay, t) as f32;
    }
    fn coef<T: Scalar>(&self, t: u64, lr: f64, wd: f64, s: &BaseScalars) -> NAdamCoef<T> {
        let (b1, b2) = self.betas;
        let mu_t = mu(b1, self.momentum_decay, t);
        let mu_next = mu(b1, self.momentum_decay, t + 1);
        let prod = s.mu_product as f64;
        let prod_next = prod * mu_next;
        NAdamCoef {
            w1: T::of(1.0 - b1),
            omw1: T::of(1.0 - (1.0 - b1)),
            b2: T::of(b2),
            omb2: T::of(1.0 - b2),
            bc2: T::of(1.0 - b2.powi(t as i32)),
            bc1: T::of(1.0 - b1.powi(t as i32)),
            c_grad: T::of(-lr * (1.0 - mu_t) / (1.0 - prod)),
            c_mom: T::of((-lr * mu_next) / (1.0 - prod_next)),
            eps: T::of(self.eps),
            decay: WeightDecay::new(lr, wd, self.decoupled_weight_decay),
        }
    }
    #[inline(always)]
    fn update<T: Scalar>(&self, c: &NAdamCoef<T>, p: T, g: T, s: &mut [T; 3]) -> T {
        self.advance(c, p, g, s);
        self.apply_updated(c, p, g, s)
    }
    const SPLITS: bool = true;
    #[inline(always)]
    fn advance<T: Scalar>(&self, c: &NAdamCoef<T>, p: T, g: T, s: &mut [T; 3]) {
        let g = self.effective_grad(c, p, g);
        s[0] = lerp(s[0], g, c.w1, c.omw1);
        s[1] = s[1] * c.b2 + c.omb2 * g * g;
    }
    #[inline(always)]
    fn apply_updated<T: Scalar>(&self, c: &NAdamCoef<T>, p: T, g: T, s: &[T; 3]) -> T {
        let g = self.effective_grad(c, p, g);
        let p = c.decay.shrink(p);
        let d = (s[1] / c.bc2).sqrt() + c.eps;
        let p = p + c.c_grad * g / d;
        p + c.c_mom * s[0] / d
    }
    bias_corrected_moment_scores!();
    #[inline(always)]
    fn denom_radicand_updated<T: Scalar>(&self, c: &NAdamCoef<T>, _p: T, _g: T, s: &[T; 3]) -> T {
        s[1] / c.bc2
    }
    #[inline(always)]
    fn denom<T: Scalar>(&self, c: &NAdamCoef<T>, p: T, g: T, s: &[T; 3]) -> T {
        let g = self.effective_grad(c, p, g);
        let v = s[1] * c.b2 + c.omb2 * g * g;
        (v / c.bc2).torch_sqrt() + c.eps
    }
}
