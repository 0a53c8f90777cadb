//! A CUDA context and stream, created only when the driver library is present,
//! with the optimizer kernels compiled by NVRTC at first use.

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaStream};

use crate::cuda::kernels::{OPTIM_KERNELS, OPTIM_SOURCE};

/// Errors of the GPU path.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// The CUDA driver library could not be loaded (no GPU or no driver).
    #[error("no CUDA driver library found on this machine (libcuda); use --device cpu")]
    NoDriver,
    /// A driver call failed.
    #[error("CUDA driver error: {0}")]
    Driver(#[from] cudarc::driver::DriverError),
    /// NVRTC failed to compile a kernel source.
    #[error("NVRTC failed to compile the kernels: {0}")]
    Compile(String),
    /// Inputs do not match the optimizer's blocks.
    #[error("{0}")]
    Invalid(String),
}

/// Whether the CUDA driver library can be loaded. Creating a context without
/// it panics inside cudarc, so every entry point checks this first.
pub fn driver_available() -> bool {
    // SAFETY: `is_culib_present` only tries to dlopen the driver library by
    // its usual names; it has no preconditions.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// A CUDA device: context, stream and the compiled optimizer kernels.
pub struct GpuContext {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    functions: HashMap<&'static str, CudaFunction>,
}

impl GpuContext {
    /// Opens device `ordinal` and compiles the kernels with NVRTC.
    pub fn new(ordinal: usize) -> Result<Self, GpuError> {
        if !driver_available() {
            return Err(GpuError::NoDriver);
        }
        let ctx = CudaContext::new(ordinal)?;
        let stream = ctx.default_stream();
        // No contraction into fused multiply-adds: every operation is
        // rounded on its own, as on the CPU.
        let options = cudarc::nvrtc::CompileOptions {
            fmad: Some(false),
            ..Default::default()
        };
        let ptx = cudarc::nvrtc::compile_ptx_with_opts(OPTIM_SOURCE, options)
            .map_err(|e| GpuError::Compile(format!("{e:?}")))?;
        let module = ctx.load_module(ptx)?;
        let mut functions = HashMap::new();
        for &name in OPTIM_KERNELS {
            functions.insert(name, module.load_function(name)?);
        }
        Ok(GpuContext {
            ctx,
            stream,
            functions,
        })
    }

    /// The device's name as the driver reports it.
    pub fn name(&self) -> Result<String, GpuError> {
        Ok(self.ctx.name()?)
    }

    /// The stream every operation runs on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// A compiled kernel by name.
    pub(crate) fn function(&self, name: &str) -> &CudaFunction {
        self.functions
            .get(name)
            .unwrap_or_else(|| panic!("kernel `{name}` is listed in OPTIM_KERNELS"))
    }

    /// Waits for all queued work.
    pub fn synchronize(&self) -> Result<(), GpuError> {
        Ok(self.stream.synchronize()?)
    }
}
