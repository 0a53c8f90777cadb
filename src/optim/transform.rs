//! Gradient transforms applied inside the optimizer step, composable with
//! any base and filter. In order, per entry:
//!
//! ```text
//! g ← clamp(g, −c, c)                               (clip by value)
//! g ← g · min(1, max_norm / ‖g‖₂)                   (clip by global norm, over all tensors)
//! g ← g + λ·sign(θ − θ_pre)   or   g + λ·(θ − θ_pre)  (L1 / L2 pull toward the pre-trained weights)
//! ```
//! Clipping acts on the loss gradient; the pull (a regulariser's gradient)
//! is added afterwards and is not clipped. The global norm is reduced in f64
//! over fixed chunks in a fixed order, so it does not depend on the thread count.

use serde::{Deserialize, Serialize};

use crate::Scalar;

/// Gradient clipping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Clip {
    /// Clip by global L2 norm to at most this (None: off).
    #[serde(default)]
    pub max_norm: Option<f64>,
    /// Clip every entry to [−c, c] (None: off).
    #[serde(default)]
    pub max_value: Option<f64>,
}

/// Pull toward the pre-trained weights θ_pre (the parameters the optimizer was built from).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Pull {
    /// g += λ·sign(θ − θ_pre) (L1 regularisation).
    L1 {
        /// λ.
        lambda: f64,
    },
    /// g += λ·(θ − θ_pre) (L2 regularisation).
    L2 {
        /// λ.
        lambda: f64,
    },
}

/// Per-step constants of the transforms, in the element type.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GradPrep<T> {
    pub clip_value: Option<T>,
    pub scale: Option<T>,
    pub pull: Option<(bool, T)>,
}

impl<T: Scalar> GradPrep<T> {
    pub fn identity() -> Self {
        GradPrep {
            clip_value: None,
            scale: None,
            pull: None,
        }
    }

    #[inline(always)]
    pub fn clip(&self, g: T) -> T {
        match self.clip_value {
            Some(c) => g.max(-c).min(c),
            None => g,
        }
    }

    #[inline(always)]
    pub fn apply(&self, g: T, p: T, pre: T) -> T {
        let mut g = self.clip(g);
        if let Some(s) = self.scale {
            g *= s;
        }
        if let Some((l1, lambda)) = self.pull {
            let d = p - pre;
            g += if l1 {
                lambda
                    * if d > T::zero() {
                        T::one()
                    } else if d < T::zero() {
                        -T::one()
                    } else {
                        T::zero()
                    }
            } else {
                lambda * d
            };
        }
        g
    }
}
