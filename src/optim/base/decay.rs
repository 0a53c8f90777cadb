//! Weight decay as the bases apply it, coupled or decoupled.
//!
//! ```text
//! coupled (L2, in the gradient):   g ← g + wd·θ           (Adam, NAdam, RMSProp, SGD)
//! decoupled (on the parameter):    θ ← θ·(1 − lr·wd)      (AdamW, NAdam's decoupled form, Lion)
//! ```
//!
//! A zero `wd` applies neither (θ and g pass unchanged, so the rounding of
//! `θ·1` or `g + 0·θ` never enters a step). `1 − lr·wd` is computed in f64
//! and rounded to the element type once, as PyTorch does.

use crate::Scalar;

/// One parameter group's weight decay at one step, in the element type.
#[derive(Clone, Copy, Debug)]
pub struct WeightDecay<T> {
    wd: T,
    factor: T,
    coupled: bool,
    decoupled: bool,
}

impl<T: Scalar> WeightDecay<T> {
    /// Decay `wd` at learning rate `lr`: decoupled (θ·(1 − lr·wd)) when
    /// `decoupled`, else coupled (g + wd·θ); neither when `wd` is 0.
    pub fn new(lr: f64, wd: f64, decoupled: bool) -> Self {
        WeightDecay {
            wd: T::of(wd),
            factor: T::of(1.0 - lr * wd),
            coupled: !decoupled && wd != 0.0,
            decoupled: decoupled && wd != 0.0,
        }
    }

    /// The gradient that enters the state: `g + wd·θ` when coupled, else `g`.
    #[inline(always)]
    pub fn grad(&self, p: T, g: T) -> T {
        if self.coupled {
            g + self.wd * p
        } else {
            g
        }
    }

    /// The decayed parameter: `θ·(1 − lr·wd)` when decoupled, else `θ`.
    #[inline(always)]
    pub fn shrink(&self, p: T) -> T {
        if self.decoupled {
            p * self.factor
        } else {
            p
        }
    }

    /// Whether the decay is an L2 term in the gradient (and not zero).
    pub fn is_coupled(&self) -> bool {
        self.coupled
    }

    /// Whether the decay scales the parameter (and is not zero).
    pub fn is_decoupled(&self) -> bool {
        self.decoupled
    }

    /// The decoupled factor `1 − lr·wd` (1 rounded from f64 when `wd` is 0).
    pub fn factor(&self) -> T {
        self.factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coupled_decay_changes_the_gradient_only() {
        let d = WeightDecay::<f64>::new(0.1, 0.5, false);
        assert!(d.is_coupled() && !d.is_decoupled());
        assert_eq!(d.grad(2.0, 1.0), 2.0);
        assert_eq!(d.shrink(2.0), 2.0);
    }

    #[test]
    fn decoupled_decay_scales_the_parameter_only() {
        let d = WeightDecay::<f64>::new(0.1, 0.5, true);
        assert!(!d.is_coupled() && d.is_decoupled());
        assert_eq!(d.grad(2.0, 1.0), 1.0);
        assert_eq!(d.shrink(2.0), 2.0 * 0.95);
    }

    #[test]
    fn zero_decay_is_neither() {
        for decoupled in [false, true] {
            let d = WeightDecay::<f32>::new(0.1, 0.0, decoupled);
            assert!(!d.is_coupled() && !d.is_decoupled());
            assert_eq!(d.grad(f32::MAX, -0.0).to_bits(), (-0.0f32).to_bits());
            assert_eq!(d.shrink(3.0), 3.0);
        }
    }
}
