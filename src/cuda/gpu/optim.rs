//! The filtered optimizer on the GPU: parameters and every state buffer stay
//! on the device; one step per block is
//!
//! ```text
//! <base>_update      state update + direction + score key + top-digit histogram
//! radix_pick(24), (radix_hist, radix_pick) for shifts 16, 8, 0   → τ, ties
//! tie_count, tie_scan                                          → tie ranks
//! masked_apply       p ← p·decay − dir on the selected entries
//! ```
//!
//! Scalars (β^t, bias corrections, lr/bc1, NAdam's μ schedule) are computed on
//! the host in f64 as on the CPU. The selection is the CPU's exactly
//! (`crate::cuda::radix` is the host model of these kernels). Filters:
//! none, momentum, gradient, mv, gv; the random and half-fine-tuning filters
//! are CPU-only for now.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

use super::context::{GpuContext, GpuError};
use crate::optim::selection_count;

const BLOCK: u32 = 256;

/// A base optimizer's hyperparameters (PyTorch's names and meaning).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GpuBase {
    /// Adam / AdamW (`decoupled`) / AMSGrad.
    Adam {
        /// Learning rate.
        lr: f64,
        /// β1.
        beta1: f64,
        /// β2.
        beta2: f64,
        /// ε (outside the square root, after bias correction).
        eps: f64,
        /// Weight decay.
        weight_decay: f64,
        /// Decoupled decay (AdamW) instead of an L2 term in the gradient.
        decoupled: bool,
        /// AMSGrad: the max of the raw second moments.
        amsgrad: bool,
    },
    /// NAdam.
    NAdam {
        /// Learning rate.
        lr: f64,
        /// β1.
        beta1: f64,
        /// β2.
        beta2: f64,
        /// ε.
        eps: f64,
        /// Weight decay.
        weight_decay: f64,
        /// ψ of the momentum schedule μ_t = β1·(1 − ½·0.96^{tψ}).
        momentum_decay: f64,
        /// Decoupled decay.
        decoupled: bool,
    },
    /// RMSprop.
    RmsProp {
        /// Learning rate.
        lr: f64,
        /// Smoothing constant of the square average.
        alpha: f64,
        /// ε (outside the square root).
        eps: f64,
        /// L2 weight decay.
        weight_decay: f64,
        /// Momentum (0 = none).
        momentum: f64,
        /// Centered variant.
        centered: bool,
    },
    /// SGD.
    Sgd {
        /// Learning rate.
        lr: f64,
        /// Momentum (0 = none).
        momentum: f64,
        /// Dampening.
        dampening: f64,
        /// L2 weight decay.
        weight_decay: f64,
        /// Nesterov momentum.
        nesterov: bool,
    },
    /// Lion (lion-pytorch).
    Lion {
        /// Learning rate.
        lr: f64,
        /// β1 (interpolation for the sign).
        beta1: f64,
        /// β2 (momentum decay).
        beta2: f64,
        /// Decoupled weight decay.
        weight_decay: f64,
    },
}

impl GpuBase {
    fn has_momentum(&self) -> bool {
        match *self {
            GpuBase::RmsProp { momentum, .. } | GpuBase::Sgd { momentum, .. } => momentum > 0.0,
            _ => true,
        }
    }

    fn has_second_moment(&self) -> bool {
        matches!(self, GpuBase::Adam { .. } | GpuBase::NAdam { .. })
    }
}

/// Which entries of each block are updated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuFilter {
    /// Every entry (the plain base).
    None,
    /// |momentum| (MoFO).
    Momentum,
    /// |g|.
    Gradient,
    /// |m̂| / (sqrt(v̂) + ε).
    Mv,
    /// |g| / (sqrt(v̂) + ε).
    Gv,
}

impl GpuFilter {
    fn score_kind(self) -> i32 {
        match self {
            GpuFilter::Momentum => 0,
            GpuFilter::Gradient => 1,
            GpuFilter::Mv => 2,
            GpuFilter::Gv => 3,
            GpuFilter::None => 4,
        }
    }
}

struct Block {
    name: String,
    n: usize,
    k: usize,
    filtered: bool,
    p: CudaSlice<f32>,
    g: CudaSlice<f32>,
    s1: CudaSlice<f32>,
    s2: CudaSlice<f32>,
    s3: CudaSlice<f32>,
    dir: CudaSlice<f32>,
    key: CudaSlice<u32>,
    hist: CudaSlice<u32>,
    state: CudaSlice<u32>,
    chunks: CudaSlice<u32>,
    mask: CudaSlice<u8>,
}

/// A filtered optimizer whose parameters and state live on the GPU.
pub struct GpuOptimizer {
    gpu: Arc<GpuContext>,
    base: GpuBase,
    filter: GpuFilter,
    decay_all: bool,
    step: u64,
    mu_product: f32,
    blocks: Vec<Block>,
}

fn grid(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: ((n as u32).div_ceil(BLOCK).max(1), 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

impl GpuOptimizer {
    /// Uploads the parameters (name, values, filtered?) and allocates the
    /// state. `fraction` is α in (0, 1]; `decay_all` is weight-decay scope All.
    pub fn new(
        gpu: Arc<GpuContext>,
        base: GpuBase,
        filter: GpuFilter,
        fraction: f64,
        decay_all: bool,
        params: &[(String, Vec<f32>, bool)],
    ) -> Result<Self, GpuError> {
        if !(fraction > 0.0 && fraction <= 1.0) {
            return Err(GpuError::Invalid(format!(
                "fraction α must be in (0, 1], got {fraction}"
            )));
        }
        if filter == GpuFilter::Momentum && !base.has_momentum() {
            return Err(GpuError::Invalid(
                "the momentum filter needs a base with a momentum state (momentum > 0)".into(),
            ));
        }
        if matches!(filter, GpuFilter::Mv | GpuFilter::Gv) && !base.has_second_moment() {
            return Err(GpuError::Invalid(
                "the mv/gv filters need a base with first and second moments (Adam, NAdam)".into(),
            ));
        }
        let stream = gpu.stream().clone();
        let mut blocks = Vec::with_capacity(params.len());
        for (name, values, filtered) in params {
            let n = values.len();
            if n == 0 || n >= i32::MAX as usize {
                return Err(GpuError::Invalid(format!(
                    "block `{name}` has {n} entries (must be 1 ..= 2^31 − 2)"
                )));
            }
            let chunks = n.div_ceil(BLOCK as usize);
            blocks.push(Block {
                name: name.clone(),
                n,
                k: selection_count(fraction, n),
                filtered: *filtered && filter != GpuFilter::None,
                p: stream.clone_htod(values.as_slice())?,
                g: stream.alloc_zeros(n)?,
                s1: stream.alloc_zeros(n)?,
                s2: stream.alloc_zeros(n)?,
                s3: stream.alloc_zeros(n)?,
                dir: stream.alloc_zeros(n)?,
                key: stream.alloc_zeros(n)?,
                hist: stream.alloc_zeros(256)?,
                state: stream.alloc_zeros(3)?,
                chunks: stream.alloc_zeros(chunks)?,
                mask: stream.alloc_zeros(n)?,
            });
        }
        Ok(GpuOptimizer {
            gpu,
            base,
            filter,
            decay_all,
            step: 0,
            mu_product: 1.0,
            blocks,
        })
    }

    /// Number of steps taken.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// One step with host gradients, one slice per block in construction order.
    pub fn step(&mut self, grads: &[&[f32]]) -> Result<(), GpuError> {
        if grads.len() != self.blocks.len() {
            return Err(GpuError::Invalid(format!(
                "{} gradients for {} blocks",
                grads.len(),
                self.blocks.len()
            )));
        }
        for (b, g) in self.blocks.iter().zip(grads) {
            if g.len() != b.n {
                return Err(GpuError::Invalid(format!(
                    "gradient of `{}` has {} entries, expected {}",
                    b.name,
                    g.len(),
                    b.n
                )));
            }
            if let Some(bad) = g.iter().position(|x| !x.is_finite()) {
                return Err(GpuError::Invalid(format!(
                    "non-finite gradient in `{}` at entry {bad}",
                    b.name
                )));
            }
        }
        self.step += 1;
        let t = self.step as f64;
        let stream = self.gpu.stream().clone();
        let decay = match self.base {
            GpuBase::Adam {
                lr,
                weight_decay,
                decoupled: true,
                ..
            }
            | GpuBase::NAdam {
                lr,
                weight_decay,
                decoupled: true,
                ..
            }
            | GpuBase::Lion {
                lr, weight_decay, ..
            } => 1.0 - lr * weight_decay,
            _ => 1.0,
        };
        let nadam_coeffs = if let GpuBase::NAdam {
            lr,
            beta1,
            momentum_decay,
            ..
        } = self.base
        {
            let mu = beta1 * (1.0 - 0.5 * 0.96f64.powf(t * momentum_decay));
            let mu_next = beta1 * (1.0 - 0.5 * 0.96f64.powf((t + 1.0) * momentum_decay));
            self.mu_product *= mu as f32;
            let prod = self.mu_product as f64;
            Some((
                lr * (1.0 - mu) / (1.0 - prod),
                lr * mu_next / (1.0 - prod * mu_next),
            ))
        } else {
            None
        };
        for (b, g) in self.blocks.iter_mut().zip(grads) {
            stream.memcpy_htod(*g, &mut b.g)?;
            let select_all = !b.filtered || b.k == b.n;
            let score_kind = if select_all {
                GpuFilter::None.score_kind()
            } else {
                self.filter.score_kind()
            };
            let n = b.n as i32;
            let cfg = grid(b.n);
            let gpu = &self.gpu;
            match self.base {
                GpuBase::Adam {
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                    decoupled,
                    amsgrad,
                    lr,
                } => {
                    let bc1 = 1.0 - beta1.powf(t);
                    let bc2 = 1.0 - beta2.powf(t);
                    let l2 = if decoupled { 0.0 } else { weight_decay as f32 };
                    let (b1, b2, e) = (beta1 as f32, beta2 as f32, eps as f32);
                    let (ss, bc1f, bc2s) = ((lr / bc1) as f32, bc1 as f32, bc2.sqrt() as f32);
                    let bc2f = bc2 as f32;
                    let ams = amsgrad as i32;
                    let f = gpu.function("adam_update");
                    let mut l = stream.launch_builder(f);
                    l.arg(&b.p)
                        .arg(&b.g)
                        .arg(&mut b.s1)
                        .arg(&mut b.s2)
                        .arg(&mut b.s3);
                    l.arg(&mut b.dir).arg(&mut b.key).arg(&mut b.hist);
                    l.arg(&n).arg(&b1).arg(&b2).arg(&e).arg(&l2).arg(&ss);
                    l.arg(&bc1f)
                        .arg(&bc2s)
                        .arg(&bc2f)
                        .arg(&ams)
                        .arg(&score_kind);
                    // SAFETY: argument list matches `adam_update`'s signature;
                    // every buffer holds n entries (hist 256).
                    unsafe { l.launch(cfg) }?;
                }
                GpuBase::NAdam {
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                    decoupled,
                    ..
                } => {
                    let (c_g, c_m) = nadam_coeffs.expect("computed above for NAdam");
                    let bc1 = (1.0 - beta1.powf(t)) as f32;
                    let bc2 = (1.0 - beta2.powf(t)) as f32;
                    let l2 = if decoupled { 0.0 } else { weight_decay as f32 };
                    let (b1, b2, e) = (beta1 as f32, beta2 as f32, eps as f32);
                    let (cg, cm) = (c_g as f32, c_m as f32);
                    let f = gpu.function("nadam_update");
                    let mut l = stream.launch_builder(f);
                    l.arg(&b.p).arg(&b.g).arg(&mut b.s1).arg(&mut b.s2);
                    l.arg(&mut b.dir).arg(&mut b.key).arg(&mut b.hist);
                    l.arg(&n)
                        .arg(&b1)
                        .arg(&b2)
                        .arg(&e)
                        .arg(&l2)
                        .arg(&cg)
                        .arg(&cm);
                    l.arg(&bc1).arg(&bc2).arg(&score_kind);
                    // SAFETY: argument list matches `nadam_update`'s signature.
                    unsafe { l.launch(cfg) }?;
                }
                GpuBase::RmsProp {
                    lr,
                    alpha,
                    eps,
                    weight_decay,
                    momentum,
                    centered,
                } => {
                    let (a, e, l2) = (alpha as f32, eps as f32, weight_decay as f32);
                    let (lrf, mom, cen) = (lr as f32, momentum as f32, centered as i32);
                    let f = gpu.function("rmsprop_update");
                    let mut l = stream.launch_builder(f);
                    l.arg(&b.p)
                        .arg(&b.g)
                        .arg(&mut b.s1)
                        .arg(&mut b.s2)
                        .arg(&mut b.s3);
                    l.arg(&mut b.dir).arg(&mut b.key).arg(&mut b.hist);
                    l.arg(&n)
                        .arg(&a)
                        .arg(&e)
                        .arg(&l2)
                        .arg(&lrf)
                        .arg(&mom)
                        .arg(&cen);
                    l.arg(&score_kind);
                    // SAFETY: argument list matches `rmsprop_update`'s signature.
                    unsafe { l.launch(cfg) }?;
                }
                GpuBase::Sgd {
                    lr,
                    momentum,
                    dampening,
                    weight_decay,
                    nesterov,
                } => {
                    let (lrf, l2, mom) = (lr as f32, weight_decay as f32, momentum as f32);
                    let (damp, nes, first) =
                        (dampening as f32, nesterov as i32, (self.step == 1) as i32);
                    let f = gpu.function("sgd_update");
                    let mut l = stream.launch_builder(f);
                    l.arg(&b.p).arg(&b.g).arg(&mut b.s1);
                    l.arg(&mut b.dir).arg(&mut b.key).arg(&mut b.hist);
                    l.arg(&n).arg(&lrf).arg(&l2).arg(&mom).arg(&damp).arg(&nes);
                    l.arg(&first).arg(&score_kind);
                    // SAFETY: argument list matches `sgd_update`'s signature.
                    unsafe { l.launch(cfg) }?;
                }
                GpuBase::Lion {
                    lr, beta1, beta2, ..
                } => {
                    let (lrf, b1, b2) = (lr as f32, beta1 as f32, beta2 as f32);
                    let f = gpu.function("lion_update");
                    let mut l = stream.launch_builder(f);
                    l.arg(&b.g).arg(&mut b.s1);
                    l.arg(&mut b.dir).arg(&mut b.key).arg(&mut b.hist);
                    l.arg(&n).arg(&lrf).arg(&b1).arg(&b2).arg(&score_kind);
                    // SAFETY: argument list matches `lion_update`'s signature.
                    unsafe { l.launch(cfg) }?;
                }
            }
            if !select_all {
                stream.memcpy_htod(&[0u32, 0, b.k as u32], &mut b.state)?;
                let one = LaunchConfig {
                    grid_dim: (1, 1, 1),
                    block_dim: (1, 1, 1),
                    shared_mem_bytes: 0,
                };
                for shift in crate::cuda::radix::DIGIT_PASSES {
                    let s = shift as i32;
                    if shift != 24 {
                        let mut l = stream.launch_builder(gpu.function("radix_hist"));
                        l.arg(&b.key).arg(&n).arg(&b.state).arg(&s).arg(&mut b.hist);
                        let hcfg = LaunchConfig {
                            grid_dim: (cfg.grid_dim.0.min(1024), 1, 1),
                            ..cfg
                        };
                        // SAFETY: matches `radix_hist`; grid-stride loop bounded by n.
                        unsafe { l.launch(hcfg) }?;
                    }
                    let mut l = stream.launch_builder(gpu.function("radix_pick"));
                    l.arg(&mut b.state).arg(&mut b.hist).arg(&s);
                    // SAFETY: matches `radix_pick`; one thread, 256-entry histogram.
                    unsafe { l.launch(one) }?;
                }
                let chunks = cfg.grid_dim.0 as i32;
                let mut l = stream.launch_builder(gpu.function("tie_count"));
                l.arg(&b.key).arg(&n).arg(&b.state).arg(&mut b.chunks);
                // SAFETY: matches `tie_count`; one count per launched block.
                unsafe { l.launch(cfg) }?;
                let mut l = stream.launch_builder(gpu.function("tie_scan"));
                l.arg(&mut b.chunks).arg(&chunks);
                let scfg = LaunchConfig {
                    grid_dim: (1, 1, 1),
                    block_dim: (1024, 1, 1),
                    shared_mem_bytes: 0,
                };
                // SAFETY: matches `tie_scan`; one block of 1024 threads.
                unsafe { l.launch(scfg) }?;
            }
            let decay_f = decay as f32;
            let (sel_all, dec_all) = (select_all as i32, self.decay_all as i32);
            let mut l = stream.launch_builder(gpu.function("masked_apply"));
            l.arg(&mut b.p)
                .arg(&b.dir)
                .arg(&b.key)
                .arg(&n)
                .arg(&b.state);
            l.arg(&b.chunks)
                .arg(&decay_f)
                .arg(&sel_all)
                .arg(&dec_all)
                .arg(&mut b.mask);
            // SAFETY: matches `masked_apply`; block size equals tie_count's chunk.
            unsafe { l.launch(cfg) }?;
        }
        Ok(())
    }

    /// Copies the parameters back to the host (name, values), in block order.
    pub fn params(&self) -> Result<Vec<(String, Vec<f32>)>, GpuError> {
        let stream = self.gpu.stream();
        self.blocks
            .iter()
            .map(|b| Ok((b.name.clone(), stream.clone_dtoh(&b.p)?)))
            .collect()
    }

    /// The selection mask of the last step for each block (1 = updated).
    pub fn last_selection(&self) -> Result<Vec<Vec<u8>>, GpuError> {
        let stream = self.gpu.stream();
        self.blocks
            .iter()
            .map(|b| Ok(stream.clone_dtoh(&b.mask)?))
            .collect()
    }
}
