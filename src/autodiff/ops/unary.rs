//! Elementwise functions.
//!
//! ```text
//! y = exp a:   ā += ḡ ⊙ y
//! y = ln a:    ā += ḡ / a
//! y = √a:      ā += ḡ / (2y)
//! y = a^p:     ā += ḡ ⊙ p·a^(p−1)      (p a constant)
//! y = silu a:  ā += ḡ ⊙ σ(a)(1 + a(1 − σ(a)))
//! ```

use super::{contiguous, flat, from_vec};
use crate::autodiff::{Tape, Var};
use crate::Scalar;

impl<T: Scalar> Tape<T> {
    /// `exp(a)`.
    pub fn exp(&self, a: Var) -> Var {
        let y = self.value(a).mapv(|x| x.exp()).into_shared();
        let yc = y.clone();
        self.push_op(y, &[a], move |g, s| s.add(a, g * &yc))
    }

    /// `ln(a)`.
    pub fn log(&self, a: Var) -> Var {
        let av = self.value(a);
        let y = av.mapv(|x| x.ln());
        self.push_op(y, &[a], move |g, s| s.add(a, g / &av))
    }

    /// `√a`.
    pub fn sqrt(&self, a: Var) -> Var {
        let y = self.value(a).mapv(|x| x.sqrt()).into_shared();
        let yc = y.clone();
        let two = T::one() + T::one();
        self.push_op(y, &[a], move |g, s| {
            s.add(
                a,
                ndarray::Zip::from(&g)
                    .and(&yc)
                    .map_collect(|&gv, &yv| gv / (two * yv)),
            )
        })
    }

    /// `a^p` for a constant exponent `p`.
    pub fn powf(&self, a: Var, p: T) -> Var {
        let av = self.value(a);
        let y = av.mapv(|x| x.powf(p));
        self.push_op(y, &[a], move |g, s| {
            s.add(
                a,
                ndarray::Zip::from(&g)
                    .and(&av)
                    .map_collect(|&gv, &x| gv * p * x.powf(p - T::one())),
            )
        })
    }

    /// `silu(a) = a·σ(a)`.
    pub fn silu(&self, a: Var) -> Var {
        let av = contiguous(self.value(a));
        let k = self.kernels();
        let mut out = vec![T::zero(); av.len()];
        k.silu(flat(&av), &mut out);
        let y = from_vec(av.shape(), out);
        self.push_op(y, &[a], move |g, s| {
            let g = super::contiguous_owned(g);
            let mut dx = vec![T::zero(); av.len()];
            k.silu_backward(flat(&av), g.as_slice().expect("standard layout"), &mut dx);
            s.add(a, from_vec(av.shape(), dx));
        })
    }
}
