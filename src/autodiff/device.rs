//! The device seam: every numeric kernel an op runs goes through the
//! [`Kernels`] trait, chosen by the tape's [`Device`].
//!
//! Ops (in `ops/`) never call `crate::kernels` directly: they ask the tape for
//! its kernel set (`Tape::kernels`) and call it. Everything the Llama model
//! runs goes through this trait (linear/matmul, embedding, same-shape add,
//! RMSNorm, SwiGLU, RoPE, attention, cross-entropy, sums); the generic
//! broadcasting arithmetic, `exp`/`log`/`sqrt`/`powf`, axis reductions and
//! shape views still compute with `ndarray` on host values. The model code
//! and the tape only see `Var`s and ops. A GPU backend (feature `cuda`) adds a
//! `Device` variant and one `Kernels` implementation; nothing above this file
//! changes except the value storage (see docs/architecture.md).

use ndarray::{ArrayView2, ArrayViewMut2};

use crate::kernels::{
    attention,
    attention::{AttnShape, CausalProbs},
    cross_entropy, elementwise, embedding, gemm, reduce, rmsnorm, rope,
};
use crate::Scalar;

/// Where a tape's tensors live and which kernels run its ops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Device {
    /// Host memory, the kernels of `crate::kernels` (rayon threads).
    #[default]
    Cpu,
}

/// The kernels behind the ops (equations in the `crate::kernels` modules).
pub trait Kernels<T: Scalar>: Sync {
    /// `C ← α·A·B + β·C` on strided views.
    fn gemm(&self, alpha: T, a: ArrayView2<T>, b: ArrayView2<T>, beta: T, c: ArrayViewMut2<T>);
    /// `α·A·B` into a new matrix.
    fn gemm_alloc(&self, alpha: T, a: ArrayView2<T>, b: ArrayView2<T>) -> ndarray::Array2<T>;
    /// `out = x + s·y` (same shapes).
    fn add_scaled(&self, x: &[T], y: &[T], s: T) -> Vec<T>;
    /// `Σ x` in a fixed order.
    fn sum(&self, x: &[T]) -> T;
    /// Row gather `out[i] = w[ids[i]]` (rows of width `h`).
    fn gather_rows(&self, w: &[T], h: usize, ids: &[u32], out: &mut [T]);
    /// Row scatter-add `dw[ids[i]] += dy[i]`.
    fn scatter_add_rows(&self, dy: &[T], h: usize, ids: &[u32], dw: &mut [T]);
    /// Log-sum-exp of each row of width `v`.
    fn logsumexp_rows(&self, z: &[T], v: usize) -> Vec<T>;
    /// RMSNorm forward; returns the per-row `1/rms`.
    fn rmsnorm(&self, x: &[T], w: &[T], eps: T) -> (Vec<T>, Vec<T>);
    /// RMSNorm backward: `(dx, dw)`.
    fn rmsnorm_backward(&self, x: &[T], w: &[T], r: &[T], dy: &[T]) -> (Vec<T>, Vec<T>);
    /// `silu(g)·u`.
    fn swiglu(&self, g: &[T], u: &[T]) -> Vec<T>;
    /// SwiGLU backward into `(dg, du)`.
    fn swiglu_backward(&self, g: &[T], u: &[T], dy: &[T]) -> (Vec<T>, Vec<T>);
    /// `silu(x)`.
    fn silu(&self, x: &[T], out: &mut [T]);
    /// SiLU backward.
    fn silu_backward(&self, x: &[T], dy: &[T], dx: &mut [T]);
    /// Rotary embedding (or its inverse) of `[B, T, heads, d]`.
    fn rope(&self, x: &[T], table: &rope::RopeTable<T>, heads: usize, inverse: bool) -> Vec<T>;
    /// Causal attention forward: `o` and, with `keep_probs`, the
    /// probabilities the backward needs.
    fn attention(
        &self,
        q: &[T],
        k: &[T],
        v: &[T],
        sh: AttnShape,
        keep_probs: bool,
    ) -> (Vec<T>, Option<CausalProbs<T>>);
    /// Causal attention backward: `(dq, dk, dv)`.
    fn attention_backward(
        &self,
        q: &[T],
        k: &[T],
        v: &[T],
        p: &CausalProbs<T>,
        d_o: &[T],
        sh: AttnShape,
    ) -> (Vec<T>, Vec<T>, Vec<T>);
    /// Cross-entropy forward: `(f64 sum of the counted rows' losses, lse,
    /// counted rows)`.
    fn cross_entropy_sum(&self, z: &[T], v: usize, targets: &[i64]) -> (f64, Vec<T>, usize);
    /// Cross-entropy backward of `sum / denom`.
    fn cross_entropy_backward(
        &self,
        z: &[T],
        v: usize,
        targets: &[i64],
        lse: &[T],
        denom: usize,
        g: T,
    ) -> Vec<T>;
}

/// The CPU kernel set.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu;

impl<T: Scalar> Kernels<T> for Cpu {
    fn gemm(&self, alpha: T, a: ArrayView2<T>, b: ArrayView2<T>, beta: T, c: ArrayViewMut2<T>) {
        gemm::gemm(alpha, a, b, beta, c)
    }
    fn gemm_alloc(&self, alpha: T, a: ArrayView2<T>, b: ArrayView2<T>) -> ndarray::Array2<T> {
        gemm::gemm_alloc(alpha, a, b)
    }
    fn add_scaled(&self, x: &[T], y: &[T], s: T) -> Vec<T> {
        elementwise::add_scaled(x, y, s)
    }
    fn sum(&self, x: &[T]) -> T {
        reduce::sum(x)
    }
    fn gather_rows(&self, w: &[T], h: usize, ids: &[u32], out: &mut [T]) {
        embedding::gather_rows(w, h, ids, out)
    }
    fn scatter_add_rows(&self, dy: &[T], h: usize, ids: &[u32], dw: &mut [T]) {
        embedding::scatter_add_rows(dy, h, ids, dw)
    }
    fn logsumexp_rows(&self, z: &[T], v: usize) -> Vec<T> {
        cross_entropy::logsumexp_rows(z, v)
    }
    fn rmsnorm(&self, x: &[T], w: &[T], eps: T) -> (Vec<T>, Vec<T>) {
        rmsnorm::rmsnorm(x, w, eps)
    }
    fn rmsnorm_backward(&self, x: &[T], w: &[T], r: &[T], dy: &[T]) -> (Vec<T>, Vec<T>) {
        rmsnorm::rmsnorm_backward(x, w, r, dy)
    }
    fn swiglu(&self, g: &[T], u: &[T]) -> Vec<T> {
        elementwise::swiglu(g, u)
    }
    fn swiglu_backward(&self, g: &[T], u: &[T], dy: &[T]) -> (Vec<T>, Vec<T>) {
        elementwise::swiglu_backward(g, u, dy)
    }
    fn silu(&self, x: &[T], out: &mut [T]) {
        elementwise::silu(x, out)
    }
    fn silu_backward(&self, x: &[T], dy: &[T], dx: &mut [T]) {
        elementwise::silu_backward(x, dy, dx)
    }
    fn rope(&self, x: &[T], table: &rope::RopeTable<T>, heads: usize, inverse: bool) -> Vec<T> {
        rope::rope(x, table, heads, inverse)
    }
    fn attention(
        &self,
        q: &[T],
        k: &[T],
        v: &[T],
        sh: AttnShape,
        keep_probs: bool,
    ) -> (Vec<T>, Option<CausalProbs<T>>) {
        attention::attention(q, k, v, sh, keep_probs)
    }
    fn attention_backward(
        &self,
        q: &[T],
        k: &[T],
        v: &[T],
        p: &CausalProbs<T>,
        d_o: &[T],
        sh: AttnShape,
    ) -> (Vec<T>, Vec<T>, Vec<T>) {
        attention::attention_backward(q, k, v, p, d_o, sh)
    }
    fn cross_entropy_sum(&self, z: &[T], v: usize, targets: &[i64]) -> (f64, Vec<T>, usize) {
        cross_entropy::cross_entropy_sum(z, v, targets)
    }
    fn cross_entropy_backward(
        &self,
        z: &[T],
        v: usize,
        targets: &[i64],
        lse: &[T],
        denom: usize,
        g: T,
    ) -> Vec<T> {
        cross_entropy::cross_entropy_backward(z, v, targets, lse, denom, g)
    }
}

/// The kernel set of a device.
pub fn kernels<T: Scalar>(device: Device) -> &'static dyn Kernels<T> {
    match device {
        Device::Cpu => &Cpu,
    }
}
