//! The GPU path (feature `cuda`).
//!
//! Always built (tested on the CPU): the host model of the GPU's exact top-k
//! ([`radix`]) and the CUDA C kernel sources ([`kernels`]). Built with
//! `--features cuda`: the driver-side code in `gpu` (cudarc, driver loaded
//! at run time, kernels compiled with NVRTC at first use).
//!
//! Without the driver library, `gpu::driver_available()` is false and every
//! entry point returns `gpu::GpuError::NoDriver` instead of creating a
//! context (which would panic inside cudarc).

pub mod kernels;
pub mod radix;

#[cfg(feature = "cuda")]
pub mod gpu;
