//! Elementwise loops over slices: SiLU, SwiGLU and accumulation.
//!
//! ```text
//! σ(x)        = 1 / (1 + e^{−x})
//! silu(x)     = x·σ(x)                  silu'(x) = σ(x)·(1 + x·(1 − σ(x)))
//! swiglu(g,u) = silu(g)·u               ∂/∂g = silu'(g)·u,   ∂/∂u = silu(g)
//! ```
//!
//! The loops are zipped slice iterators (no bounds checks inside) processed
//! in fixed chunks of [`CHUNK`] entries, in parallel for long inputs.

use rayon::prelude::*;

use super::fresh::{input_chunk, par_chunks_fresh};
use crate::Scalar;

/// Entries per parallel task.
pub const CHUNK: usize = 1 << 14;

#[inline(always)]
fn sigmoid<T: Scalar>(x: T) -> T {
    T::one() / (T::one() + (-x).exp())
}

/// `y ← x + y`.
pub fn add_assign<T: Scalar>(y: &mut [T], x: &[T]) {
    assert_eq!(
        x.len(),
        y.len(),
        "add_assign: lengths {} and {}",
        x.len(),
        y.len()
    );
    y.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(yc, xc)| {
            for (a, &b) in yc.iter_mut().zip(xc) {
                *a += b;
            }
        });
}

/// `out_i = x_i + s·y_i`, a new vector.
pub fn add_scaled<T: Scalar>(x: &[T], y: &[T], s: T) -> Vec<T> {
    assert!(x.len() == y.len(), "add_scaled: lengths differ");
    let [out] = par_chunks_fresh([x.len()], [CHUNK], |i, [oc]| {
        for ((o, &a), &b) in oc
            .iter_mut()
            .zip(input_chunk(x, i, CHUNK))
            .zip(input_chunk(y, i, CHUNK))
        {
            *o = a + s * b;
        }
    });
    out
}

/// `out_i = silu(g_i)·u_i`, a new vector.
pub fn swiglu<T: Scalar>(g: &[T], u: &[T]) -> Vec<T> {
    assert!(g.len() == u.len(), "swiglu: lengths differ");
    let [out] = par_chunks_fresh([g.len()], [CHUNK], |i, [oc]| {
        for ((o, &gv), &uv) in oc
            .iter_mut()
            .zip(input_chunk(g, i, CHUNK))
            .zip(input_chunk(u, i, CHUNK))
        {
            *o = gv * sigmoid(gv) * uv;
        }
    });
    out
}

/// Backward of [`swiglu`]: new vectors `(dg, du)` with
/// `dg_i = dy_i·u_i·silu'(g_i)`, `du_i = dy_i·silu(g_i)`.
pub fn swiglu_backward<T: Scalar>(g: &[T], u: &[T], dy: &[T]) -> (Vec<T>, Vec<T>) {
    let n = g.len();
    assert!(
        u.len() == n && dy.len() == n,
        "swiglu_backward: lengths differ"
    );
    let [dg, du] = par_chunks_fresh([n, n], [CHUNK, CHUNK], |i, [dgc, duc]| {
        for ((((a, b), &gv), &uv), &d) in dgc
            .iter_mut()
            .zip(duc.iter_mut())
            .zip(input_chunk(g, i, CHUNK))
            .zip(input_chunk(u, i, CHUNK))
            .zip(input_chunk(dy, i, CHUNK))
        {
            let s = sigmoid(gv);
            *a = d * uv * s * (T::one() + gv * (T::one() - s));
            *b = d * gv * s;
        }
    });
    (dg, du)
}

/// `out_i = silu(x_i)`.
pub fn silu<T: Scalar>(x: &[T], out: &mut [T]) {
    assert_eq!(x.len(), out.len(), "silu: lengths differ");
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(oc, xc)| {
            for (o, &v) in oc.iter_mut().zip(xc) {
                *o = v * sigmoid(v);
            }
        });
}

/// `dx_i = dy_i·silu'(x_i)`.
pub fn silu_backward<T: Scalar>(x: &[T], dy: &[T], dx: &mut [T]) {
    assert!(
        x.len() == dy.len() && dy.len() == dx.len(),
        "silu_backward: lengths differ"
    );
    dx.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK)))
        .for_each(|(oc, (xc, dc))| {
            for ((o, &v), &d) in oc.iter_mut().zip(xc).zip(dc) {
                let s = sigmoid(v);
                *o = d * s * (T::one() + v * (T::one() - s));
            }
        });
}

/// Plain indexed SwiGLU (reference).
pub fn swiglu_reference<T: Scalar>(g: &[T], u: &[T]) -> Vec<T> {
    (0..g.len())
        .map(|i| g[i] / (T::one() + (-g[i]).exp()) * u[i])
        .collect()
}

/// Plain indexed SwiGLU backward (reference): `(dg, du)`.
pub fn swiglu_backward_reference<T: Scalar>(g: &[T], u: &[T], dy: &[T]) -> (Vec<T>, Vec<T>) {
    let mut dg = vec![T::zero(); g.len()];
    let mut du = vec![T::zero(); g.len()];
    for i in 0..g.len() {
        let s = T::one() / (T::one() + (-g[i]).exp());
        du[i] = dy[i] * g[i] * s;
        dg[i] = dy[i] * u[i] * (s + g[i] * s * (T::one() - s));
    }
    (dg, du)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swiglu_and_silu_match_reference() {
        let n = CHUNK + 37;
        let g: Vec<f64> = (0..n).map(|i| ((i % 23) as f64 - 11.0) * 0.4).collect();
        let u: Vec<f64> = (0..n).map(|i| ((i % 17) as f64 - 8.0) * 0.3).collect();
        let dy: Vec<f64> = (0..n).map(|i| ((i % 5) as f64 - 2.0) * 0.9).collect();
        let out = swiglu(&g, &u);
        let want = swiglu_reference(&g, &u);
        let (dg, du) = swiglu_backward(&g, &u, &dy);
        let (wdg, wdu) = swiglu_backward_reference(&g, &u, &dy);
        let ones = vec![1.0; n];
        let mut s = vec![0.0; n];
        silu(&g, &mut s);
        let mut ds = vec![0.0; n];
        silu_backward(&g, &dy, &mut ds);
        let (wds, _) = swiglu_backward_reference(&g, &ones, &dy);
        for i in 0..n {
            assert!((out[i] - want[i]).abs() < 1e-12);
            assert!((dg[i] - wdg[i]).abs() < 1e-12);
            assert!((du[i] - wdu[i]).abs() < 1e-12);
            assert!((s[i] - swiglu_reference(&g[i..=i], &[1.0])[0]).abs() < 1e-12);
            assert!((ds[i] - wds[i]).abs() < 1e-12);
        }
        let z = add_scaled(&u, &g, -0.5);
        assert!(z
            .iter()
            .zip(u.iter().zip(&g))
            .all(|(a, (b, c))| *a == b - 0.5 * c));
        let mut y = u.clone();
        add_assign(&mut y, &g);
        assert!(y
            .iter()
            .zip(u.iter().zip(&g))
            .all(|(a, (b, c))| *a == b + c));
    }
}
