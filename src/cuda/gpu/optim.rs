//! The filtered optimizer on the GPU: parameters and every state buffer stay
//! on the device, all blocks in flat buffers (each block padded to whole
//! chunks of [`CHUNK`] entries), and one step is the same few launches for
//! every block at once:
//!
//! ```text
//! <base>_update      state update; blocks that take every entry: p ← p·decay − d
//!                    others: direction + score key + top-digit histogram
//! radix_pick(24), (radix_hist, radix_pick) for shifts 16, 8, 0   → τ, ties
//! tie_count, tie_scan                                          → tie ranks
//! masked_apply       p ← p·decay − dir on the selected entries
//! ```
//!
//! that is 1 launch for a step without a filter and 11 with one, whatever
//! the number of blocks (one launch sequence per block made a MoFO step of
//! GPT-2-small's 97 tensors 1 067 launches, bound by launch latency).
//!
//! Scalars (β^t, bias corrections, lr/bc1, NAdam's μ schedule) are computed on
//! the host in f64 as on the CPU. The selection is the CPU's exactly
//! (`crate::cuda::radix` is the host model of these kernels). Filters:
//! none, momentum, gradient, mv, gv; the random and half-fine-tuning filters
//! are CPU-only for now.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, LaunchArgs, LaunchConfig, PushKernelArg};

use super::context::{GpuContext, GpuError};
use crate::optim::selection_count;

/// Entries per chunk: one CUDA block of the element-wise kernels (`CHUNK`
/// in `optim.cu`).
pub const CHUNK: usize = 256;

/// Chunks per CUDA block of the digit histograms and the tie count
/// (`HIST_CHUNKS` in `optim.cu`).
const HIST_CHUNKS: usize = 32;

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

    fn has_first_and_second_moment(&self) -> bool {
        matches!(self, GpuBase::Adam { .. } | GpuBase::NAdam { .. })
    }

    fn has_second_moment(&self) -> bool {
        self.has_first_and_second_moment() || matches!(self, GpuBase::RmsProp { .. })
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
    /// |g| / (sqrt(v̂) + ε) (RMSProp: its denominator).
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

/// One parameter block's place in the flat buffers.
struct Block {
    name: String,
    n: usize,
    /// First entry (a multiple of [`CHUNK`]).
    offset: usize,
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
    /// Chunks in all (the element-wise kernels' grid).
    chunks: usize,
    /// Whether some block selects fewer than all of its entries.
    any_filtered: bool,
    p: CudaSlice<f32>,
    g: CudaSlice<f32>,
    s1: CudaSlice<f32>,
    s2: CudaSlice<f32>,
    s3: CudaSlice<f32>,
    out: UpdateOutputs,
    /// (prefix, mask, need, every tie taken) per block.
    state: CudaSlice<u32>,
    /// Per chunk: ties counted, then their exclusive scan within the block.
    chunk_counts: CudaSlice<u32>,
}

/// The buffers every `<base>_update` kernel ends with, in its argument
/// order (`finish` in `optim.cu`); the later kernels read them too.
struct UpdateOutputs {
    /// Per entry: the step's direction d (filtered blocks).
    dir: CudaSlice<f32>,
    /// Per entry: the score's key (filtered blocks).
    key: CudaSlice<u32>,
    /// 256 bins per block.
    hist: CudaSlice<u32>,
    /// Per entry: selected by the last step (1) or not (0).
    mask: CudaSlice<u8>,
    /// Per chunk: its block.
    chunk_block: CudaSlice<u32>,
    /// Per block: (first chunk, n, k, selects every entry).
    info: CudaSlice<u32>,
}

impl UpdateOutputs {
    /// Pushes the six buffers onto an update kernel's arguments.
    fn push<'a>(&'a mut self, l: &mut LaunchArgs<'a>) {
        l.arg(&mut self.dir).arg(&mut self.key).arg(&mut self.hist);
        l.arg(&mut self.mask).arg(&self.chunk_block).arg(&self.info);
    }
}

fn grid(chunks: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (chunks as u32, 1, 1),
        block_dim: (CHUNK as u32, 1, 1),
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
        if filter == GpuFilter::Mv && !base.has_first_and_second_moment() {
            return Err(GpuError::Invalid(
                "the mv filter needs a base with first and second moments (Adam, NAdam)".into(),
            ));
        }
        if filter == GpuFilter::Gv && !base.has_second_moment() {
            return Err(GpuError::Invalid(
                "the gv filter needs a base with a second moment (Adam, NAdam, RMSProp)".into(),
            ));
        }
        if params.is_empty() {
            return Err(GpuError::Invalid("no parameter blocks".into()));
        }
        let mut blocks = Vec::with_capacity(params.len());
        let (mut chunk_block, mut info) = (Vec::new(), Vec::new());
        let mut any_filtered = false;
        let mut offset = 0usize;
        for (index, (name, values, filtered)) in params.iter().enumerate() {
            let n = values.len();
            if n == 0 {
                return Err(GpuError::Invalid(format!("block `{name}` has no entries")));
            }
            let k = selection_count(fraction, n);
            let select_all = !*filtered || filter == GpuFilter::None || k == n;
            any_filtered |= !select_all;
            let first = offset / CHUNK;
            info.extend([first as u32, n as u32, k as u32, u32::from(select_all)]);
            chunk_block.extend(std::iter::repeat_n(index as u32, n.div_ceil(CHUNK)));
            blocks.push(Block {
                name: name.clone(),
                n,
                offset,
            });
            offset += n.div_ceil(CHUNK) * CHUNK;
            if offset > i32::MAX as usize {
                return Err(GpuError::Invalid(format!(
                    "{offset} entries (padded) at block `{name}`: at most 2^31 − 1 in all"
                )));
            }
        }
        let chunks = offset / CHUNK;
        let mut flat = vec![0f32; offset];
        for (b, (_, values, _)) in blocks.iter().zip(params) {
            flat[b.offset..b.offset + b.n].copy_from_slice(values);
        }
        let stream = gpu.stream().clone();
        let nb = blocks.len();
        Ok(GpuOptimizer {
            base,
            filter,
            decay_all,
            step: 0,
            mu_product: 1.0,
            chunks,
            any_filtered,
            p: stream.clone_htod(&flat)?,
            g: stream.alloc_zeros(offset)?,
            s1: stream.alloc_zeros(offset)?,
            s2: stream.alloc_zeros(offset)?,
            s3: stream.alloc_zeros(offset)?,
            out: UpdateOutputs {
                dir: stream.alloc_zeros(offset)?,
                key: stream.alloc_zeros(offset)?,
                hist: stream.alloc_zeros(256 * nb)?,
                mask: stream.alloc_zeros(offset)?,
                chunk_block: stream.clone_htod(&chunk_block)?,
                info: stream.clone_htod(&info)?,
            },
            state: stream.alloc_zeros(4 * nb)?,
            chunk_counts: stream.alloc_zeros(chunks)?,
            blocks,
            gpu,
        })
    }

    /// Number of steps taken.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// Kernel launches one step queues: the base update, and when some
    /// block is filtered, the four digit picks, three digit histograms, the
    /// tie count and scan and the masked apply.
    pub fn launches_per_step(&self) -> usize {
        if self.any_filtered {
            11
        } else {
            1
        }
    }

    /// One step with host gradients, one slice per block in construction
    /// order: [`GpuOptimizer::upload_grads`] then
    /// [`GpuOptimizer::step_resident`].
    pub fn step(&mut self, grads: &[&[f32]]) -> Result<(), GpuError> {
        self.upload_grads(grads)?;
        self.step_resident()
    }

    /// Checks host gradients (one slice per block, construction order: the
    /// lengths, every entry finite) and copies them to the device, where
    /// [`GpuOptimizer::step_resident`] reads them. Nothing is copied when a
    /// check fails.
    pub fn upload_grads(&mut self, grads: &[&[f32]]) -> Result<(), GpuError> {
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
        let stream = self.gpu.stream().clone();
        for (b, g) in self.blocks.iter().zip(grads) {
            let mut view = self.g.slice_mut(b.offset..b.offset + b.n);
            stream.memcpy_htod(*g, &mut view)?;
        }
        Ok(())
    }

    /// One step on the gradients already on the device (those of the last
    /// [`GpuOptimizer::upload_grads`]): no host transfer, so that a
    /// benchmark times the device work alone, as a device backward pass
    /// would leave it. Launches are queued on the context's stream.
    pub fn step_resident(&mut self) -> Result<(), GpuError> {
        self.step += 1;
        let t = self.step as f64;
        let stream = self.gpu.stream().clone();
        let gpu = self.gpu.clone();
        let score_kind = self.filter.score_kind();
        let cfg = grid(self.chunks);
        let f32of = |x: f64| x as f32;
        // (1 − w) of PyTorch's lerp, computed as the CPU does.
        let lerp_weights = |beta: f64| (f32of(1.0 - beta), f32of(1.0 - (1.0 - beta)));
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
        let decay_f = f32of(decay);
        match self.base {
            GpuBase::Adam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
                decoupled,
                amsgrad,
            } => {
                let bc1 = 1.0 - beta1.powi(t as i32);
                let bc2 = 1.0 - beta2.powi(t as i32);
                let l2 = if decoupled { 0.0 } else { f32of(weight_decay) };
                let (w1, omw1) = lerp_weights(beta1);
                let (b2, omb2, e) = (f32of(beta2), f32of(1.0 - beta2), f32of(eps));
                let (ss, bc1f, bc2s, bc2f) =
                    (f32of(lr / bc1), f32of(bc1), f32of(bc2.sqrt()), f32of(bc2));
                let ams = amsgrad as i32;
                let mut l = stream.launch_builder(gpu.function("adam_update"));
                l.arg(&mut self.p).arg(&self.g);
                l.arg(&mut self.s1).arg(&mut self.s2).arg(&mut self.s3);
                self.out.push(&mut l);
                l.arg(&w1).arg(&omw1).arg(&b2).arg(&omb2).arg(&e).arg(&l2);
                l.arg(&ss).arg(&bc1f).arg(&bc2s).arg(&bc2f).arg(&decay_f);
                l.arg(&ams).arg(&score_kind);
                // SAFETY: the arguments match `adam_update`'s signature; every
                // flat buffer holds chunks·CHUNK entries, hist 256 per block.
                unsafe { l.launch(cfg) }?;
            }
            GpuBase::NAdam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
                momentum_decay,
                decoupled,
            } => {
                let mu = beta1 * (1.0 - 0.5 * 0.96f64.powf(t * momentum_decay));
                let mu_next = beta1 * (1.0 - 0.5 * 0.96f64.powf((t + 1.0) * momentum_decay));
                self.mu_product *= mu as f32;
                let prod = self.mu_product as f64;
                let c_g = f32of(lr * (1.0 - mu) / (1.0 - prod));
                let c_m = f32of((lr * mu_next) / (1.0 - prod * mu_next));
                let bc1 = f32of(1.0 - beta1.powi(t as i32));
                let bc2 = f32of(1.0 - beta2.powi(t as i32));
                let l2 = if decoupled { 0.0 } else { f32of(weight_decay) };
                let (w1, omw1) = lerp_weights(beta1);
                let (b2, omb2, e) = (f32of(beta2), f32of(1.0 - beta2), f32of(eps));
                let mut l = stream.launch_builder(gpu.function("nadam_update"));
                l.arg(&mut self.p).arg(&self.g);
                l.arg(&mut self.s1).arg(&mut self.s2);
                self.out.push(&mut l);
                l.arg(&w1).arg(&omw1).arg(&b2).arg(&omb2).arg(&e).arg(&l2);
                l.arg(&c_g).arg(&c_m).arg(&bc1).arg(&bc2).arg(&decay_f);
                l.arg(&score_kind);
                // SAFETY: the arguments match `nadam_update`'s signature.
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
                let (a, oma, omw) = (f32of(alpha), f32of(1.0 - alpha), f32of(1.0 - (1.0 - alpha)));
                let (e, l2, lrf, mom) =
                    (f32of(eps), f32of(weight_decay), f32of(lr), f32of(momentum));
                let cen = centered as i32;
                let mut l = stream.launch_builder(gpu.function("rmsprop_update"));
                l.arg(&mut self.p).arg(&self.g);
                l.arg(&mut self.s1).arg(&mut self.s2).arg(&mut self.s3);
                self.out.push(&mut l);
                l.arg(&a)
                    .arg(&oma)
                    .arg(&omw)
                    .arg(&e)
                    .arg(&l2)
                    .arg(&lrf)
                    .arg(&mom);
                l.arg(&cen).arg(&score_kind);
                // SAFETY: the arguments match `rmsprop_update`'s signature.
                unsafe { l.launch(cfg) }?;
            }
            GpuBase::Sgd {
                lr,
                momentum,
                dampening,
                weight_decay,
                nesterov,
            } => {
                let (lrf, l2, mom, omd) = (
                    f32of(lr),
                    f32of(weight_decay),
                    f32of(momentum),
                    f32of(1.0 - dampening),
                );
                let (nes, first) = (nesterov as i32, (self.step == 1) as i32);
                let mut l = stream.launch_builder(gpu.function("sgd_update"));
                l.arg(&mut self.p).arg(&self.g).arg(&mut self.s1);
                self.out.push(&mut l);
                l.arg(&lrf)
                    .arg(&l2)
                    .arg(&mom)
                    .arg(&omd)
                    .arg(&nes)
                    .arg(&first);
                l.arg(&score_kind);
                // SAFETY: the arguments match `sgd_update`'s signature.
                unsafe { l.launch(cfg) }?;
            }
            GpuBase::Lion {
                lr, beta1, beta2, ..
            } => {
                let (lrf, b1, omb1) = (f32of(lr), f32of(beta1), f32of(1.0 - beta1));
                let (b2, omb2) = (f32of(beta2), f32of(1.0 - beta2));
                let mut l = stream.launch_builder(gpu.function("lion_update"));
                l.arg(&mut self.p).arg(&self.g).arg(&mut self.s1);
                self.out.push(&mut l);
                l.arg(&lrf)
                    .arg(&b1)
                    .arg(&omb1)
                    .arg(&b2)
                    .arg(&omb2)
                    .arg(&decay_f);
                l.arg(&score_kind);
                // SAFETY: the arguments match `lion_update`'s signature.
                unsafe { l.launch(cfg) }?;
            }
        }
        if !self.any_filtered {
            return Ok(());
        }
        let per_block = LaunchConfig {
            grid_dim: (self.blocks.len() as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let chunks = self.chunks as i32;
        let hist_cfg = LaunchConfig {
            grid_dim: (self.chunks.div_ceil(HIST_CHUNKS) as u32, 1, 1),
            ..cfg
        };
        for shift in crate::cuda::radix::DIGIT_PASSES {
            let s = shift as i32;
            if shift != 24 {
                let mut l = stream.launch_builder(gpu.function("radix_hist"));
                l.arg(&self.out.key)
                    .arg(&self.state)
                    .arg(&self.out.chunk_block);
                l.arg(&self.out.info)
                    .arg(&chunks)
                    .arg(&s)
                    .arg(&mut self.out.hist);
                // SAFETY: matches `radix_hist`; HIST_CHUNKS chunks per CUDA
                // block, the last one bounded by `chunks`.
                unsafe { l.launch(hist_cfg) }?;
            }
            let mut l = stream.launch_builder(gpu.function("radix_pick"));
            l.arg(&mut self.state)
                .arg(&mut self.out.hist)
                .arg(&self.out.info);
            l.arg(&s);
            // SAFETY: matches `radix_pick`; one CUDA block of 256 threads (one
            // per bin) per parameter block, a 4-word state per block.
            unsafe { l.launch(per_block) }?;
        }
        let mut l = stream.launch_builder(gpu.function("tie_count"));
        l.arg(&self.out.key)
            .arg(&self.state)
            .arg(&self.out.chunk_block);
        l.arg(&self.out.info)
            .arg(&chunks)
            .arg(&mut self.chunk_counts);
        // SAFETY: matches `tie_count`; one count per chunk, HIST_CHUNKS
        // chunks per CUDA block, the last one bounded by `chunks`.
        unsafe { l.launch(hist_cfg) }?;
        let mut l = stream.launch_builder(gpu.function("tie_scan"));
        l.arg(&mut self.chunk_counts)
            .arg(&self.state)
            .arg(&self.out.info);
        let scan = LaunchConfig {
            grid_dim: (self.blocks.len() as u32, 1, 1),
            block_dim: (1024, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: matches `tie_scan`; one CUDA block of 1024 threads per
        // block, each scanning that block's own chunks.
        unsafe { l.launch(scan) }?;
        let dec_all = self.decay_all as i32;
        let mut l = stream.launch_builder(gpu.function("masked_apply"));
        l.arg(&mut self.p)
            .arg(&self.out.dir)
            .arg(&self.out.key)
            .arg(&self.state);
        l.arg(&self.chunk_counts)
            .arg(&self.out.chunk_block)
            .arg(&self.out.info);
        l.arg(&decay_f).arg(&dec_all).arg(&mut self.out.mask);
        // SAFETY: matches `masked_apply`; one CUDA block per chunk, as
        // `tie_count` counted them.
        unsafe { l.launch(cfg) }?;
        Ok(())
    }

    /// Copies the parameters back to the host (name, values), in block order.
    pub fn params(&self) -> Result<Vec<(String, Vec<f32>)>, GpuError> {
        let stream = self.gpu.stream();
        self.blocks
            .iter()
            .map(|b| {
                let view = self.p.slice(b.offset..b.offset + b.n);
                Ok((b.name.clone(), stream.clone_dtoh(&view)?))
            })
            .collect()
    }

    /// The selection mask of the last step for each block (1 = updated).
    pub fn last_selection(&self) -> Result<Vec<Vec<u8>>, GpuError> {
        let stream = self.gpu.stream();
        self.blocks
            .iter()
            .map(|b| Ok(stream.clone_dtoh(&self.out.mask.slice(b.offset..b.offset + b.n))?))
            .collect()
    }
}
