//! The ops of the tape, one file per family, each with its backward.
//!
//! Every op is a method of [`Tape`](super::Tape): it computes its value,
//! and, when an input needs a gradient, records a closure that maps the
//! output gradient `ḡ = ∂L/∂y` to input gradients (formulas in each file).

pub mod activation;
pub mod arith;
pub mod attention;
pub mod embedding;
pub mod loss;
pub mod matmul;
pub mod norm;
pub mod reduce;
pub mod rope;
pub mod shape;
pub mod unary;

use ndarray::{ArrayD, Axis, IxDyn};

use super::tape::Value;
use crate::Scalar;

/// `v` in standard (row-major, contiguous) layout, sharing when it already is.
pub(crate) fn contiguous<T: Scalar>(v: Value<T>) -> Value<T> {
    if v.is_standard_layout() {
        v
    } else {
        v.as_standard_layout().into_owned().into_shared()
    }
}

/// An owned gradient in standard layout.
pub(crate) fn contiguous_owned<T: Scalar>(g: ArrayD<T>) -> ArrayD<T> {
    if g.is_standard_layout() {
        g
    } else {
        g.as_standard_layout().into_owned()
    }
}

/// Below this many entries [`par_clone`] copies on the calling thread.
const PAR_CLONE_MIN: usize = 1 << 15;

/// A copy of `g`, made by all threads when it is large: a
/// gradient handed to two consumers (a residual connection) is megabytes
/// that one thread would copy while the others wait.
pub(crate) fn par_clone<T: Scalar>(g: &ArrayD<T>) -> ArrayD<T> {
    if g.len() < PAR_CLONE_MIN {
        g.clone()
    } else {
        ndarray::Zip::from(g).par_map_collect(|&x| x)
    }
}

/// The flat row-major slice of a standard-layout value.
pub(crate) fn flat<T>(v: &Value<T>) -> &[T] {
    v.as_slice().expect("value in standard layout")
}

/// An array of `shape` from row-major values.
pub(crate) fn from_vec<T>(shape: &[usize], data: Vec<T>) -> ArrayD<T> {
    ArrayD::from_shape_vec(IxDyn(shape), data).expect("kernel output size matches its shape")
}

/// Sums a broadcast gradient back to `shape` (leading axes summed away,
/// axes of size one summed with the axis kept), in a fixed order.
pub(crate) fn sum_to_shape<T: Scalar>(mut g: ArrayD<T>, shape: &[usize]) -> ArrayD<T> {
    if g.shape() == shape {
        return g;
    }
    while g.ndim() > shape.len() {
        g = g.sum_axis(Axis(0));
    }
    for (ax, &n) in shape.iter().enumerate() {
        if n == 1 && g.shape()[ax] != 1 {
            g = g.sum_axis(Axis(ax)).insert_axis(Axis(ax));
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn par_clone_copies_every_layout() {
        for n in [3usize, 300, 1 << 16] {
            let a = ArrayD::from_shape_fn(IxDyn(&[n, 2]), |i| (i[0] * 2 + i[1]) as f32 * 0.5);
            let t = a.clone().reversed_axes();
            for x in [&a, &t] {
                let c = par_clone(x);
                assert_eq!(c.shape(), x.shape());
                assert!(c
                    .iter()
                    .zip(x.iter())
                    .all(|(p, q)| p.to_bits() == q.to_bits()));
            }
        }
    }
}
