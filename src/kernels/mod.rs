//! CPU kernels under the tape: the only place with `unsafe` code (the gemm
//! call and the `mallopt` FFI call).
//!
//! Every fast kernel has a plain reference version (a `*_reference`
//! function next to it) that the unit tests compare it against.
//!
//! - [`alloc`]: keeps large freed buffers in the heap (glibc `mallopt`).
//! - [`gemm`]: `C ← α·A·B + β·C` through `matrixmultiply` (sgemm / dgemm with
//!   arbitrary strides, so transposed operands are never copied), threaded over
//!   large fixed chunks of rows or columns with rayon.
//! - [`elementwise`]: SiLU, SwiGLU and accumulation loops written as zipped
//!   slice iterators (no bounds checks, vectorisable).
//! - [`reduce`]: sums and dot products with eight fixed lanes.
//! - [`rmsnorm`]: `y = x · rsqrt(mean(x²) + ε) · w` and its backward.
//! - [`rope`]: rotary position embedding in the rotate-half layout.
//! - [`attention`]: fused causal softmax attention with grouped-query heads.
//! - [`cross_entropy`]: row-wise log-softmax and mean cross-entropy.
//!
//! Determinism: every parallel split depends only on the shapes (fixed panel
//! and chunk sizes), never on the number of threads, and every reduction runs
//! in a fixed order, so results are bitwise identical for any thread count.

pub mod alloc;
pub mod attention;
pub mod cross_entropy;
pub mod elementwise;
pub mod gemm;
pub mod reduce;
pub mod rmsnorm;
pub mod rope;
