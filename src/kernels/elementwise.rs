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

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::fresh::{input_chunk, par_chunks_uninit};
use super::simd::{wide_simd_call, wide_simd_fn};
use crate::Scalar;

/// Entries per parallel task.
pub const CHUNK: usize = 1 << 14;

/// `σ(x) = 1 / (1 + e⁻ˣ)`, with [`Scalar::fast_exp`] so that the loops
/// calling it vectorise.
#[inline(always)]
fn sigmoid<T: Scalar>(x: T) -> T {
    T::one() / (T::one() + (-x).fast_exp())
}

wide_simd_fn! {
    /// `o_i = silu(g_i)·u_i` over one chunk (every `o_i` written when the
    /// three have one length).
    fn swiglu_chunk / swiglu_chunk_wide [T: Scalar] (o: &mut [MaybeUninit<T>], g: &[T], u: &[T]) {
        for ((o, &gv), &uv) in o.iter_mut().zip(g).zip(u) {
            o.write(gv * sigmoid(gv) * uv);
        }
    }
}

wide_simd_fn! {
    /// The backward of [`swiglu_chunk`] over one chunk (every `dg_i`,
    /// `du_i` written when the five have one length).
    fn swiglu_backward_chunk / swiglu_backward_chunk_wide [T: Scalar] (
        dg: &mut [MaybeUninit<T>],
        du: &mut [MaybeUninit<T>],
        g: &[T],
        u: &[T],
        dy: &[T],
    ) {
        for ((((a, b), &gv), &uv), &d) in dg.iter_mut().zip(du.iter_mut()).zip(g).zip(u).zip(dy) {
            let s = sigmoid(gv);
            a.write(d * uv * s * (T::one() + gv * (T::one() - s)));
            b.write(d * gv * s);
        }
    }
}

wide_simd_fn! {
    /// `o_i = silu(x_i)` over one chunk.
    fn silu_chunk / silu_chunk_wide [T: Scalar] (o: &mut [T], x: &[T]) {
        for (o, &v) in o.iter_mut().zip(x) {
            *o = v * sigmoid(v);
        }
    }
}

wide_simd_fn! {
    /// `o_i = dy_i·silu'(x_i)` over one chunk.
    fn silu_backward_chunk / silu_backward_chunk_wide [T: Scalar] (o: &mut [T], x: &[T], dy: &[T]) {
        for ((o, &v), &d) in o.iter_mut().zip(x).zip(dy) {
            let s = sigmoid(v);
            *o = d * s * (T::one() + v * (T::one() - s));
        }
    }
}

wide_simd_fn! {
    /// `y_i ← y_i + x_i` over one chunk.
    fn add_chunk / add_chunk_wide [T: Scalar] (y: &mut [T], x: &[T]) {
        for (a, &b) in y.iter_mut().zip(x) {
            *a += b;
        }
    }
}

wide_simd_fn! {
    /// `o_i = x_i + s·y_i` over one chunk (every `o_i` written when the
    /// three have one length).
    fn add_scaled_chunk / add_scaled_chunk_wide [T: Scalar] (
        o: &mut [MaybeUninit<T>],
        x: &[T],
        y: &[T],
        s: T,
    ) {
        for ((o, &a), &b) in o.iter_mut().zip(x).zip(y) {
            o.write(a + s * b);
        }
    }
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
        .for_each(|(yc, xc)| wide_simd_call!(add_chunk / add_chunk_wide(yc, xc)));
}

/// `out_i = x_i + s·y_i`, a new vector.
pub fn add_scaled<T: Scalar>(x: &[T], y: &[T], s: T) -> Vec<T> {
    assert!(x.len() == y.len(), "add_scaled: lengths differ");
    // SAFETY: chunk i of x and of y has the length of chunk i of out
    // (the three have one length), so the zip writes every entry of it.
    let [out] = unsafe {
        par_chunks_uninit([x.len()], [CHUNK], |i, [oc]| {
            let (xc, yc) = (input_chunk(x, i, CHUNK), input_chunk(y, i, CHUNK));
            wide_simd_call!(add_scaled_chunk / add_scaled_chunk_wide(oc, xc, yc, s));
        })
    };
    out
}

/// `out_i = silu(g_i)·u_i`, a new vector.
pub fn swiglu<T: Scalar>(g: &[T], u: &[T]) -> Vec<T> {
    assert!(g.len() == u.len(), "swiglu: lengths differ");
    // SAFETY: the chunks of g and u have the lengths of out's, so
    // `swiglu_chunk` writes every entry.
    let [out] = unsafe {
        par_chunks_uninit([g.len()], [CHUNK], |i, [oc]| {
            let (gc, uc) = (input_chunk(g, i, CHUNK), input_chunk(u, i, CHUNK));
            wide_simd_call!(swiglu_chunk / swiglu_chunk_wide(oc, gc, uc));
        })
    };
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
    // SAFETY: the five chunks i have one length, so
    // `swiglu_backward_chunk` writes every entry of dg's and du's.
    let [dg, du] = unsafe {
        par_chunks_uninit([n, n], [CHUNK, CHUNK], |i, [dgc, duc]| {
            let (gc, uc, dc) = (
                input_chunk(g, i, CHUNK),
                input_chunk(u, i, CHUNK),
                input_chunk(dy, i, CHUNK),
            );
            wide_simd_call!(
                swiglu_backward_chunk / swiglu_backward_chunk_wide(dgc, duc, gc, uc, dc)
            );
        })
    };
    (dg, du)
}

/// `out_i = silu(x_i)`.
pub fn silu<T: Scalar>(x: &[T], out: &mut [T]) {
    assert_eq!(x.len(), out.len(), "silu: lengths differ");
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(oc, xc)| wide_simd_call!(silu_chunk / silu_chunk_wide(oc, xc)));
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
            wide_simd_call!(silu_backward_chunk / silu_backward_chunk_wide(oc, xc, dc));
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

    /// In f32 the kernels use the polynomial exponential: within a few
    /// ulp of the references (libm's `expf`), and every entry the same
    /// whichever vector width ran it (the plain per-chunk loop is the
    /// baseline build).
    #[test]
    fn f32_kernels_match_reference_within_ulps() {
        let n = CHUNK + 37;
        let g: Vec<f32> = (0..n).map(|i| ((i % 29) as f32 - 14.0) * 0.7).collect();
        let u: Vec<f32> = (0..n).map(|i| ((i % 17) as f32 - 8.0) * 0.3).collect();
        let dy: Vec<f32> = (0..n).map(|i| ((i % 5) as f32 - 2.0) * 0.9).collect();
        let close =
            |a: f32, b: f32| (a - b).abs() <= 4.0 * f32::EPSILON * a.abs().max(b.abs()) + 1e-30;
        let out = swiglu(&g, &u);
        let want = swiglu_reference(&g, &u);
        let (dg, du) = swiglu_backward(&g, &u, &dy);
        let (wdg, wdu) = swiglu_backward_reference(&g, &u, &dy);
        for i in 0..n {
            assert!(close(out[i], want[i]), "{i}: {} {}", out[i], want[i]);
            assert!(close(du[i], wdu[i]), "{i}: {} {}", du[i], wdu[i]);
            assert!((dg[i] - wdg[i]).abs() <= 1e-5 * (1.0 + wdg[i].abs()), "{i}");
        }
        // The plain loops, into buffers initialised with NaN.
        let bits = |x: &[MaybeUninit<f32>]| -> Vec<u32> {
            // SAFETY: every entry was initialised by `MaybeUninit::new`.
            x.iter()
                .map(|v| unsafe { v.assume_init() }.to_bits())
                .collect()
        };
        let want_bits = |x: &[f32]| -> Vec<u32> { x.iter().map(|v| v.to_bits()).collect() };
        let mut plain = vec![MaybeUninit::new(f32::NAN); n];
        swiglu_chunk(&mut plain, &g, &u);
        assert_eq!(bits(&plain), want_bits(&out));
        let (mut pdg, mut pdu) = (
            vec![MaybeUninit::new(f32::NAN); n],
            vec![MaybeUninit::new(f32::NAN); n],
        );
        swiglu_backward_chunk(&mut pdg, &mut pdu, &g, &u, &dy);
        assert_eq!(bits(&pdg), want_bits(&dg));
        assert_eq!(bits(&pdu), want_bits(&du));
    }
}
