//! The device seam: every numeric kernel an op runs goes through the
//! [`Kernels`] trait, chosen by the tape's [`Device`].
//!
//! Ops (in `ops/`) never call `crate::kernels` directly: they ask the tape for
//! its kernel set (`Tape::kernels`) and call it. The model code and the tape
//! only see `Var`s and ops. A GPU backend (feature `cuda`) adds a `Device`
//! variant and one `Kernels` implementation; nothing above this file changes.

use ndarray::{ArrayView2, ArrayViewMut2};

use crate::kernels::{
    attention, attention::AttnShape, cross_entropy, elementwise, gemm, rmsnorm, rope,
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
    /// RMSNorm forward; returns the per-row `1/rms`.
    fn rmsnorm(&self, x: &[T], w: &[T], eps: T, y: &mut [T]) -> Vec<T>;
    /// RMSNorm backward: `(dx, dw)`.
    fn rmsnorm_backward(&self, x: &[T], w: &[T], r: &[T], dy: &[T]) -> (Vec<T>, Vec<T>);
    /// `silu(g)·u`.
    fn swiglu(&self, g: &[T], u: &[T], out: &mut [T]);
    /// SwiGLU backward into `(dg, du)`.
    fn swiglu_backward(&self, g: &[T], u: &[T], dy: &[T], dg: &mut [T], du: &mut [T]);
    /// `silu(x)`.
    fn silu(&self, x: &[T], out: &mut [T]);
    /// SiLU backward.
    fn silu_backward(&self, x: &[T], dy: &[T], dx: &mut [T]);
    /// Rotary embedding (or its inverse) of `[B, T, heads, d]`.
    fn rope(&self, x: &[T], table: &rope::RopeTable<T>, heads: usize, inverse: bool, y: &mut [T]);
    /// Causal attention forward: `(o, p)`.
    fn attention(&self, q: &[T], k: &[T], v: &[T], sh: AttnShape) -> (Vec<T>, Vec<T>);
    /// Causal attention backward: `(dq, dk, dv)`.
    fn attention_backward(
        &self,
        q: &[T],
        k: &[T],
        v: &[T],
        p: &[T],
        d_o: &[T],
        sh: AttnShape,
    ) -> (Vec<T>, Vec<T>, Vec<T>);
    /// Cross-entropy forward: `(loss, lse, count)`.
    fn cross_entropy(&self, z: &[T], v: usize, targets: &[i64]) -> (T, Vec<T>, usize);
    /// Cross-entropy backward.
    fn cross_entropy_backward(
        &self,
        z: &[T],
        v: usize,
        targets: &[i64],
        lse: &[T],
        count: usize,
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
    fn rmsnorm(&self, x: &[T], w: &[T], eps: T, y: &mut [T]) -> Vec<T> {
        rmsnorm::rmsnorm(x, w, eps, y)
    }
    fn rmsnorm_backward(&self, x: &[T], w: &[T], r: &[T], dy: &[T]) -> (Vec<T>, Vec<T>) {
        rmsnorm::rmsnorm_backward(x, w, r, dy)
    }
    fn swiglu(&self, g: &[T], u: &[T], out: &mut [T]) {
        elementwise::swiglu(g, u, out)
    }
    fn swiglu_backward(&self, g: &[T], u: &[T], dy: &[T], dg: &mut [T], du: &mut [T]) {
        elementwise::swiglu_backward(g, u, dy, dg, du)
    }
    fn silu(&self, x: &[T], out: &mut [T]) {
        elementwise::silu(x, out)
    }
    fn silu_backward(&self, x: &[T], dy: &[T], dx: &mut [T]) {
        elementwise::silu_backward(x, dy, dx)
    }
    fn rope(&self, x: &[T], table: &rope::RopeTable<T>, heads: usize, inverse: bool, y: &mut [T]) {
        rope::rope(x, table, heads, inverse, y)
    }
    fn attention(&self, q: &[T], k: &[T], v: &[T], sh: AttnShape) -> (Vec<T>, Vec<T>) {
        attention::attention(q, k, v, sh)
    }
    fn attention_backward(
        &self,
        q: &[T],
        k: &[T],
        v: &[T],
        p: &[T],
        d_o: &[T],
        sh: AttnShape,
    ) -> (Vec<T>, Vec<T>, Vec<T>) {
        attention::attention_backward(q, k, v, p, d_o, sh)
    }
    fn cross_entropy(&self, z: &[T], v: usize, targets: &[i64]) -> (T, Vec<T>, usize) {
        cross_entropy::cross_entropy(z, v, targets)
    }
    fn cross_entropy_backward(
        &self,
        z: &[T],
        v: usize,
        targets: &[i64],
        lse: &[T],
        count: usize,
        g: T,
    ) -> Vec<T> {
        cross_entropy::cross_entropy_backward(z, v, targets, lse, count, g)
    }
}

/// The kernel set of a device.
pub fn kernels<T: Scalar>(device: Device) -> &'static dyn Kernels<T> {
    match device {
        Device::Cpu => &Cpu,
    }
}
