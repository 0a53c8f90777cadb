//! Reverse-mode automatic differentiation on a tape over `ndarray` arrays.
//!
//! ```text
//! let tape = Tape::<f64>::new();
//! let w = tape.param("w", w0);        // named variable
//! let x = tape.constant(x0);          // no gradient buffer
//! let y = tape.matmul(x, w);
//! let loss = tape.mean_all(tape.mul(y, y));
//! let grads = tape.backward(loss);    // releases the tape
//! grads.by_name("w")                  // ∂loss/∂w
//! ```
//!
//! Ops are methods of [`Tape`] (one file per family in `ops/`), each with its
//! backward. Coarse fused ops (linear, RMSNorm, SwiGLU, RoPE, causal
//! attention, cross-entropy) keep the tape short; their numeric work runs
//! through the [`device::Kernels`] seam.

pub mod device;
pub mod gradcheck;
pub mod ops;
pub mod tape;

pub use device::{Device, Kernels};
pub use gradcheck::{gradcheck, GradCheck};
pub use tape::{GradSink, Gradients, Tape, Value, Var};
