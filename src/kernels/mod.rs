//! CPU kernels under the tape: the only place with `unsafe` code (the gemm
//! kernel and call, the `mallopt` and `madvise` FFI calls, the `rsqrtss`, ChaCha
//! and prefetch intrinsics, the AVX2/AVX-512 dispatch and the chunk-by-chunk
//! initialisation of new output buffers).
//!
//! Every fast kernel has a plain reference version (a `*_reference`
//! function next to it) that the unit tests compare it against.
//!
//! - [`alloc`]: keeps large freed buffers in the heap (glibc `mallopt`).
//! - [`prefetch`]: software prefetch for the optimizer's streaming loops.
//! - [`huge_pages`]: asks Linux for 2 MiB pages for the buffers an optimizer
//!   step streams (`madvise`).
//! - [`fresh`]: new output buffers written chunk by chunk in parallel, each
//!   chunk zero-filled by its task in cache instead of a serial `vec![0; n]`.
//! - [`gemm`]: `C ← α·A·B + β·C` through `matrixmultiply` (sgemm / dgemm with
//!   arbitrary strides, so transposed operands are never copied), threaded over
//!   one chunk of rows or columns per rayon thread.
//! - [`gemm_avx512`]: the f32 product on AVX-512 (a 12×32 or a 16×16
//!   register tile, `A` read in place), bitwise equal to `matrixmultiply`'s.
//! - [`gemm_choice`]: which of the three bitwise-equal f32 kernels (our two
//!   tiles, `matrixmultiply`'s) runs the products on this CPU, timed once
//!   per process.
//! - [`gemm_hints`]: the gemm's cache-line hints, spread over a tile's loop.
//! - [`side_by_side`]: tasks run side by side (a batch's shards) keep their
//!   products whole while they fill the threads, and split them once some
//!   have finished.
//! - [`elementwise`]: SiLU, SwiGLU and accumulation loops written as zipped
//!   slice iterators (no bounds checks, vectorisable).
//! - [`embedding`]: row gather and scatter-add.
//! - `compress`: packs a line's marked entries (AVX-512 `vcompressps`), the
//!   fused MoFO step's undo log.
//! - [`exp`]: eˣ in plain float arithmetic (vectorisable), for softmax and
//!   SiLU.
//! - [`reduce`]: sums and dot products with eight fixed lanes.
//! - [`rmsnorm`]: `y = x · rsqrt(mean(x²) + ε) · w` and its backward.
//! - [`rope`]: rotary position embedding in the rotate-half layout.
//! - [`attention`]: fused causal softmax attention with grouped-query heads.
//! - [`causal_probs`]: the attention probabilities kept for the backward,
//!   only the blocks on and below the diagonal (streaming stores).
//! - [`scratch`]: per-thread scratch buffers reused from call to call
//!   (attention's `T×T` blocks, kept in the core's cache).
//! - [`cross_entropy`]: row-wise log-softmax and mean cross-entropy.
//! - [`chacha8`]: ChaCha8 key streams sixteen blocks at a time on AVX-512,
//!   bit for bit `rand_chacha`'s (the random filter's draw pass).
//! - [`torch_sqrt`]: the square root as PyTorch's CPU `sqrt` (MKL) rounds it.
//! - [`simd`]: runtime dispatch of per-entry loops (the optimizer's, the
//!   causal softmax, SwiGLU/SiLU) to AVX2 or AVX-512.
//!
//! Determinism: the elementwise and row kernels split work in fixed chunks,
//! every reduction runs in a fixed order, and a gemm entry is computed the
//! same way whichever thread's chunk holds it, so results are bitwise
//! identical for any thread count (tested for gemm and the whole model).

pub mod alloc;
pub mod attention;
pub mod causal_probs;
pub mod chacha8;
pub(crate) mod compress;
pub mod cross_entropy;
pub mod elementwise;
pub mod embedding;
pub mod exp;
pub mod fresh;
pub mod gemm;
#[cfg(target_arch = "x86_64")]
pub mod gemm_avx512;
#[cfg(target_arch = "x86_64")]
pub mod gemm_choice;
#[cfg(target_arch = "x86_64")]
pub mod gemm_hints;
pub mod huge_pages;
pub mod prefetch;
pub mod reduce;
pub mod rmsnorm;
pub mod rope;
pub mod scratch;
pub mod side_by_side;
pub mod simd;
pub mod torch_sqrt;
