//! The floating-point element types the crate is generic over (`f32`, `f64`).
//!
//! Everything numeric (optimizer, norms, autodiff, model) is written once over
//! [`Scalar`] and monomorphised for both types. Conversions that cannot fail
//! for these two types are given infallible names ([`Scalar::of`],
//! [`Scalar::as_f64`]) so that hot loops never unwrap.

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

/// A float element type: `f32` or `f64`.
pub trait Scalar:
    num_traits::Float
    + num_traits::FromPrimitive
    + Copy
    + Default
    + Debug
    + Display
    + Send
    + Sync
    + Sum
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + 'static
{
    /// Short type name, "f32" or "f64" (used in file formats and messages).
    const NAME: &'static str;

    /// Number of significant bits of [`Scalar::abs_key`] (31 or 63): keys
    /// are below `1 << KEY_BITS`.
    const KEY_BITS: u32;

    /// Converts from `f64` (rounding to nearest for `f32`).
    fn of(x: f64) -> Self;

    /// Widens to `f64` (exact for both types).
    fn as_f64(self) -> f64;

    /// Converts from `f32` (exact for both types).
    fn of_f32(x: f32) -> Self;

    /// Narrows to `f32` (rounding to nearest for `f64`).
    fn as_f32(self) -> f32;

    /// A key whose unsigned integer order is the order of `|self|`:
    /// the bit pattern with the sign bit cleared, widened to `u64`.
    ///
    /// For non-negative floats (including +inf) the IEEE-754 bit pattern is
    /// monotone in the value, so comparing keys compares magnitudes exactly,
    /// with no NaN special cases (a NaN ranks above +inf). The exact top-k
    /// selection (`optim::select`) works on these keys.
    fn abs_key(self) -> u64;

    /// The square root as PyTorch's CPU tensor `sqrt` computes it
    /// ([`crate::kernels::torch_sqrt`]): MKL's float32 kernel for `f32` on
    /// x86-64, the IEEE square root otherwise. Filter scores use it so that
    /// selections decided by a score's last bit agree with PyTorch's.
    fn torch_sqrt(self) -> Self;

    /// [`Scalar::torch_sqrt`] of 16 values in place, bit for bit, in a form
    /// that vectorises ([`crate::kernels::torch_sqrt::torch_sqrt_f32_16`]
    /// for `f32`): the loops of a base whose step takes this root per
    /// entry gather a line of arguments and call this once.
    fn torch_sqrt_16(xs: &mut [Self; 16]);

    /// eˣ computed so that loops calling it vectorise: [`crate::kernels::exp`]'s
    /// polynomial for `f32` (within 1 ulp where tested, the same bits on every
    /// target),
    /// libm's `exp` for `f64`. The model's softmax and SiLU use it.
    fn fast_exp(self) -> Self;
}

impl Scalar for f32 {
    const NAME: &'static str = "f32";
    const KEY_BITS: u32 = 31;
    #[inline(always)]
    fn of(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn as_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn of_f32(x: f32) -> Self {
        x
    }
    #[inline(always)]
    fn as_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn abs_key(self) -> u64 {
        (self.to_bits() & 0x7fff_ffff) as u64
    }
    #[inline(always)]
    fn torch_sqrt(self) -> Self {
        crate::kernels::torch_sqrt::torch_sqrt_f32(self)
    }
    #[inline(always)]
    fn torch_sqrt_16(xs: &mut [Self; 16]) {
        crate::kernels::torch_sqrt::torch_sqrt_f32_16(xs)
    }
    #[inline(always)]
    fn fast_exp(self) -> Self {
        crate::kernels::exp::exp_f32(self)
    }
}

impl Scalar for f64 {
    const NAME: &'static str = "f64";
    const KEY_BITS: u32 = 63;
    #[inline(always)]
    fn of(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn as_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn of_f32(x: f32) -> Self {
        x as f64
    }
    #[inline(always)]
    fn as_f32(self) -> f32 {
        self as f32
    }
    #[inline(always)]
    fn abs_key(self) -> u64 {
        self.to_bits() & 0x7fff_ffff_ffff_ffff
    }
    #[inline(always)]
    fn torch_sqrt(self) -> Self {
        // MKL's float64 kernel is not emulated: the reference traces are
        // float32, so no f64 selection can reproduce their ties anyway.
        self.sqrt()
    }
    #[inline(always)]
    fn torch_sqrt_16(xs: &mut [Self; 16]) {
        for x in xs {
            *x = x.sqrt();
        }
    }
    #[inline(always)]
    fn fast_exp(self) -> Self {
        self.exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abs_key_orders_magnitudes() {
        let xs = [
            0.0f64,
            -0.0,
            1e-300,
            -2.5,
            3.0,
            f64::INFINITY,
            -f64::INFINITY,
        ];
        for &a in &xs {
            for &b in &xs {
                assert_eq!(
                    a.abs().partial_cmp(&b.abs()).unwrap(),
                    a.abs_key().cmp(&b.abs_key()),
                    "{a} vs {b}"
                );
                let (fa, fb) = (a as f32, b as f32);
                assert_eq!(
                    fa.abs().partial_cmp(&fb.abs()).unwrap(),
                    fa.abs_key().cmp(&fb.abs_key()),
                    "{fa} vs {fb}"
                );
            }
        }
    }
}
