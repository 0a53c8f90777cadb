//! Driver-side GPU code (feature `cuda`): context, kernels, the filtered
//! optimizer with its state on the GPU.

mod context;
mod forecast;
mod optim;
mod spec;

pub use context::{driver_available, GpuContext, GpuError};
pub use optim::{GpuBase, GpuFilter, GpuOptimizer};
