//! Broadcasting arithmetic and scalar ops.
//!
//! ```text
//! y = a + b:  ā += ḡ,        b̄ += ḡ
//! y = a − b:  ā += ḡ,        b̄ −= ḡ
//! y = a ⊙ b:  ā += ḡ ⊙ b,    b̄ += ḡ ⊙ a
//! y = a / b:  ā += ḡ / b,    b̄ −= ḡ ⊙ a / b²
//! y = a + c, y = c·a, y = −a  (c a constant scalar)
//! ```
//!
//! Operands broadcast like NumPy; each input's gradient is summed back to its
//! shape (`sum_to_shape`).

use ndarray::IxDyn;

use super::sum_to_shape;
use crate::autodiff::{Tape, Var};
use crate::Scalar;

/// NumPy broadcasting of two shapes (panics naming both when incompatible).
pub(crate) fn co_broadcast(a: &[usize], b: &[usize]) -> IxDyn {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for (i, o) in out.iter_mut().enumerate() {
        let x = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let y = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        assert!(
            x == y || x == 1 || y == 1,
            "broadcast: shapes {a:?} and {b:?} are incompatible"
        );
        *o = if x == 1 { y } else { x };
    }
    IxDyn(&out)
}

impl<T: Scalar> Tape<T> {
    fn binary(
        &self,
        a: Var,
        b: Var,
        op: fn(T, T) -> T,
        da: fn(T, T, T) -> T,
        db: fn(T, T, T) -> T,
    ) -> Var {
        let (av, bv) = (self.value(a), self.value(b));
        let shape = co_broadcast(av.shape(), bv.shape());
        let out = {
            let (ab, bb) = (
                av.broadcast(shape.clone()).expect("broadcast"),
                bv.broadcast(shape.clone()).expect("broadcast"),
            );
            ndarray::Zip::from(&ab)
                .and(&bb)
                .map_collect(|&x, &y| op(x, y))
        };
        if !self.needs_grad(&[a, b]) {
            return self.push_const_result(out);
        }
        self.push_op(out, &[a, b], move |g, s| {
            let (ab, bb) = (
                av.broadcast(shape.clone()).expect("broadcast"),
                bv.broadcast(shape.clone()).expect("broadcast"),
            );
            if s.wants(a) {
                let ga = ndarray::Zip::from(&g)
                    .and(&ab)
                    .and(&bb)
                    .map_collect(|&gv, &x, &y| da(gv, x, y));
                s.add(a, sum_to_shape(ga, av.shape()));
            }
            if s.wants(b) {
                let gb = ndarray::Zip::from(&g)
                    .and(&ab)
                    .and(&bb)
                    .map_collect(|&gv, &x, &y| db(gv, x, y));
                s.add(b, sum_to_shape(gb, bv.shape()));
            }
        })
    }

    /// `a ± b` with gradients passed through (no product to form).
    fn add_sub(&self, a: Var, b: Var, sign: T) -> Var {
        let (av, bv) = (self.value(a), self.value(b));
        let out = if av.shape() == bv.shape() && av.is_standard_layout() && bv.is_standard_layout()
        {
            let out = self
                .kernels()
                .add_scaled(super::flat(&av), super::flat(&bv), sign);
            super::from_vec(av.shape(), out)
        } else {
            let shape = co_broadcast(av.shape(), bv.shape());
            let (ab, bb) = (
                av.broadcast(shape.clone()).expect("broadcast"),
                bv.broadcast(shape).expect("broadcast"),
            );
            ndarray::Zip::from(&ab)
                .and(&bb)
                .map_collect(|&x, &y| x + sign * y)
        };
        let (sa, sb) = (av.shape().to_vec(), bv.shape().to_vec());
        drop((av, bv));
        self.push_op(out, &[a, b], move |g, s| {
            let gb = if s.wants(b) {
                let gb = if sign == T::one() {
                    super::par_clone(&g)
                } else {
                    g.mapv(|x| -x)
                };
                Some(sum_to_shape(gb, &sb))
            } else {
                None
            };
            if s.wants(a) {
                s.add(a, sum_to_shape(g, &sa));
            }
            if let Some(gb) = gb {
                s.add(b, gb);
            }
        })
    }

    /// `a + b` (broadcasting).
    pub fn add(&self, a: Var, b: Var) -> Var {
        self.add_sub(a, b, T::one())
    }

    /// `a − b` (broadcasting).
    pub fn sub(&self, a: Var, b: Var) -> Var {
        self.add_sub(a, b, -T::one())
    }

    /// `a ⊙ b` (broadcasting).
    pub fn mul(&self, a: Var, b: Var) -> Var {
        self.binary(a, b, |x, y| x * y, |g, _, y| g * y, |g, x, _| g * x)
    }

    /// `a / b` (broadcasting).
    pub fn div(&self, a: Var, b: Var) -> Var {
        self.binary(
            a,
            b,
            |x, y| x / y,
            |g, _, y| g / y,
            |g, x, y| -g * x / (y * y),
        )
    }

    /// `a + c`.
    pub fn add_scalar(&self, a: Var, c: T) -> Var {
        let out = self.value(a).mapv(|x| x + c);
        self.push_op(out, &[a], move |g, s| s.add(a, g))
    }

    /// `c · a`.
    pub fn mul_scalar(&self, a: Var, c: T) -> Var {
        let out = self.value(a).mapv(|x| x * c);
        self.push_op(out, &[a], move |g, s| s.add(a, g.mapv(|x| x * c)))
    }

    /// `−a`.
    pub fn neg(&self, a: Var) -> Var {
        self.mul_scalar(a, -T::one())
    }
}
