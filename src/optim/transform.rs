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

    pub fn is_identity(&self) -> bool {
        self.clip_value.is_none() && self.scale.is_none() && self.pull.is_none()
    }

    /// The transform as a map of g alone, when it has no pull (which reads
    /// θ and θ_pre): `None` for the identity.
    pub fn map(&self) -> Option<GradMap<T>> {
        if self.pull.is_some() || (self.clip_value.is_none() && self.scale.is_none()) {
            return None;
        }
        let scale = self.scale.unwrap_or_else(T::one);
        Some(match self.clip_value {
            Some(c) => GradMap::ClampScale(c, scale),
            None => GradMap::Scale(scale),
        })
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

/// Clipping as a map of the gradient alone (no pull), for the update loops
/// that take it per entry in registers; equal to [`GradPrep::apply`] bit for
/// bit on every finite gradient (a clamp and a product, or the product
/// alone; `g · 1` is `g`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum GradMap<T> {
    /// `g · s` (clip by norm).
    Scale(T),
    /// `clamp(g, −c, c) · s` (clip by value, and by norm when `s ≠ 1`).
    ClampScale(T, T),
}

impl<T: Scalar> GradMap<T> {
    /// The mapped gradient (the loops that take the map match on its kind
    /// once and inline the arithmetic; this is their definition, for
    /// tests).
    #[cfg(test)]
    pub fn apply(self, g: T) -> T {
        match self {
            GradMap::Scale(s) => g * s,
            GradMap::ClampScale(c, s) => g.max(-c).min(c) * s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_is_the_transform_bit_for_bit() {
        let gs: Vec<f32> = (0..2001).map(|i| (i as f32 - 1000.0) * 1.3e-3).collect();
        for clip_value in [None, Some(0.4f32)] {
            for scale in [None, Some(0.37f32)] {
                let prep = GradPrep {
                    clip_value,
                    scale,
                    pull: None,
                };
                match prep.map() {
                    None => assert!(prep.is_identity()),
                    Some(map) => {
                        for &g in &gs {
                            let want = prep.apply(g, 0.0, 0.0);
                            assert_eq!(map.apply(g).to_bits(), want.to_bits(), "{prep:?} {g}");
                        }
                    }
                }
            }
        }
        let pulled = GradPrep {
            clip_value: None,
            scale: Some(0.5f64),
            pull: Some((false, 0.1)),
        };
        assert_eq!(pulled.map(), None, "a pull reads θ: not a map of g");
    }
}
