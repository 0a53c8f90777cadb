//! # mofo: fine-tuning without forgetting
//!
//! MoFO (Momentum-Filtered Optimizer, Chen et al., arXiv 2407.20999) and its
//! family as a composable optimizer algebra `Optimizer<Filter, Base>`, a tape
//! autodiff over `ndarray`, a small Llama transformer that reads and writes
//! Hugging Face checkpoints, the paper's theory as tests, and experiments that
//! show how much each optimizer forgets.
//!
//! One step of a filtered optimizer, per block b of d_b entries:
//!
//! ```text
//! state ← Base.update(state, g)            (every entry, as the plain base would)
//! S_b   ← top-k_b of Filter.score           k_b = min(d_b, max(1, ⌈α·d_b − 1e-9⌉))
//! θ_i   ← θ_i − u_i   for i ∈ S_b           (others unchanged)
//! ```

#![warn(missing_docs)]

pub mod autodiff;
pub mod bench;
pub mod cli;
pub mod cuda;
pub mod data;
pub mod experiments;
pub mod fuzzing;
pub mod io;
pub mod kernels;
pub mod model;
pub mod norm;
pub mod optim;
pub mod params;
pub mod plot;
pub mod scalar;
pub mod tokenizer;
pub mod train;

pub use params::{Param, ParamError, ParamStore};
pub use scalar::Scalar;
