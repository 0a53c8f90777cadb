//! The filtered optimizer on the GPU: parameters and every state buffer stay
//! on the device, all blocks in flat buffers (each block padded to whole
//! chunks of [`CHUNK`] entries), and one step is the same few launches for
//! every block at once. The general way, for any block:
//!
//! ```text
//! forecast_plan      per block: the general way or the single pass, this step
//! <base>_update      state update; blocks that take every entry: p ← p·decay − d
//!                    others: direction + score key + top-digit histogram
//! radix_pick(24), (radix_hist, radix_pick) for shifts 16, 8, 0   → τ, ties
//! tie_count, tie_scan                                          → tie ranks
//! masked_apply       p ← p·decay − dir on the selected entries
//! ```
//!
//! and, once a block has two past thresholds, the single pass
//! (`forecast.rs`): the update kernel applies the step at once to the
//! entries above a band forecast to hold this step's threshold, logging
//! their old θ, and lists those in the band; a small radix select over that
//! list finishes the selection. When the band missed, the logged θ are put
//! back and the block takes the general way, so the result is the same bit
//! for bit (`tests/cuda_gpu.rs`). A step is 1 launch without a filter; with
//! one, 12 the general way and 8 when every block's forecast held (plus one
//! read of 16 bytes of flags), whatever the number of blocks (one launch
//! sequence per block made a MoFO step of GPT-2-small's 97 tensors 1 067
//! launches, bound by launch latency).
//!
//! Scalars (β^t, bias corrections, lr/bc1, NAdam's μ schedule) are computed on
//! the host in f64 as on the CPU. The selection is the CPU's exactly
//! (`crate::cuda::radix` is the host model of the general way). Filters:
//! none, momentum, gradient, mv, gv; the random and half-fine-tuning filters
//! are CPU-only for now.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, LaunchArgs, LaunchConfig, PushKernelArg};

use super::context::{GpuContext, GpuError};
use super::forecast::{ForecastBuffers, Ways};
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

    /// Whether the step splits into a state update and a step computed from
    /// the updated state (every base but Lion, whose step needs the old
    /// momentum): the single pass and its redo rest on that.
    fn splits(&self) -> bool {
        !matches!(self, GpuBase::Lion { .. })
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
    /// Whether steps may take the single pass (a base whose step splits,
    /// scope `Selected`; see [`GpuOptimizer::set_single_pass`]).
    single_pass: bool,
    /// Kernel launches the last step queued.
    launches: usize,
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
/// order (`OUT_PARAMS` in `optim.cu`); the later kernels read them too.
struct UpdateOutputs {
    /// Per entry: the step's direction d (blocks taking the general way).
    dir: CudaSlice<f32>,
    /// Per entry: the score's key (blocks taking the general way).
    key: CudaSlice<u32>,
    /// 256 bins per block.
    hist: CudaSlice<u32>,
    /// Selection bits of the last step, one word per 32 entries.
    sel: CudaSlice<u32>,
    /// Per chunk: its block.
    chunk_block: CudaSlice<u32>,
    /// Per block: (first chunk, n, k, selects every entry).
    info: CudaSlice<u32>,
    /// The single pass's buffers.
    fc: ForecastBuffers,
    /// 0: the step; 1: recompute dir and keys of the blocks that missed.
    phase: i32,
}

impl UpdateOutputs {
    /// Pushes the buffers and the phase onto an update kernel's arguments.
    fn push<'a>(&'a mut self, l: &mut LaunchArgs<'a>) {
        l.arg(&mut self.dir).arg(&mut self.key).arg(&mut self.hist);
        l.arg(&mut self.sel).arg(&self.chunk_block).arg(&self.info);
        let f = &mut self.fc;
        l.arg(&mut f.fc).arg(&f.fcinfo).arg(&mut f.lanes);
        l.arg(&mut f.log_i).arg(&mut f.log_p);
        l.arg(&mut f.cand_i).arg(&mut f.cand_k).arg(&mut f.cand_d);
        l.arg(&self.phase);
    }
}

fn grid(chunks: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (chunks as u32, 1, 1),
        block_dim: (CHUNK as u32, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One CUDA block of `threads` per parameter block.
fn per_block(blocks: usize, threads: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks as u32, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One thread per parameter block.
fn per_block_thread(blocks: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks.div_ceil(128) as u32, 1, 1),
        block_dim: (128, 1, 1),
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
        let (mut chunk_block, mut info, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
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
            sizes.push((n, k, select_all));
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
            single_pass: base.splits() && !decay_all,
            launches: 0,
            p: stream.clone_htod(&flat)?,
            g: stream.alloc_zeros(offset)?,
            s1: stream.alloc_zeros(offset)?,
            s2: stream.alloc_zeros(offset)?,
            s3: stream.alloc_zeros(offset)?,
            out: UpdateOutputs {
                dir: stream.alloc_zeros(offset)?,
                key: stream.alloc_zeros(offset)?,
                hist: stream.alloc_zeros(256 * nb)?,
                sel: stream.alloc_zeros(offset / 32)?,
                chunk_block: stream.clone_htod(&chunk_block)?,
                info: stream.clone_htod(&info)?,
                fc: ForecastBuffers::new(&stream, &sizes)?,
                phase: 0,
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

    /// Turns the single pass off (or back on where the base and scope allow
    /// it): every filtered block then takes the general way. The result is
    /// the same bit for bit; only the speed changes.
    pub fn set_single_pass(&mut self, on: bool) {
        self.single_pass = on && self.base.splits() && !self.decay_all;
    }

    /// Kernel launches the last step queued: 1 for a step without a filter;
    /// with one, 12 for the general way (the plan, the base update, four
    /// digit picks, three digit histograms, the tie count and scan and the
    /// masked apply),
    /// 8 for a single pass that held every block's threshold, more when some
    /// block missed.
    pub fn launches_per_step(&self) -> usize {
        self.launches
    }

    /// Forecast outcomes so far, summed over blocks: (steps whose single
    /// pass held the threshold, steps whose single pass missed and were
    /// redone the general way).
    pub fn forecast_counts(&self) -> Result<(u64, u64), GpuError> {
        self.out.fc.counts(self.gpu.stream())
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
    /// would leave it. Launches are queued on the context's stream; a step
    /// that may take the single pass waits once for the device, to read
    /// which ways it needs.
    pub fn step_resident(&mut self) -> Result<(), GpuError> {
        self.step += 1;
        self.launches = 0;
        if let GpuBase::NAdam {
            beta1,
            momentum_decay,
            ..
        } = self.base
        {
            let t = self.step as f64;
            self.mu_product *= (beta1 * (1.0 - 0.5 * 0.96f64.powf(t * momentum_decay))) as f32;
        }
        if !self.any_filtered {
            return self.launch_update(0);
        }
        let nb = self.blocks.len();
        let stream = self.gpu.stream().clone();
        let gpu = self.gpu.clone();
        let allow = i32::from(self.single_pass);
        let mut l = stream.launch_builder(gpu.function("forecast_plan"));
        let (nbi, f) = (nb as i32, &mut self.out.fc);
        l.arg(&mut f.fc).arg(&mut f.lanes).arg(&self.out.info);
        l.arg(&nbi).arg(&allow).arg(&mut f.flags);
        // SAFETY: matches `forecast_plan`; one thread per block, 16 forecast
        // words per block, 4 flags.
        unsafe { l.launch(per_block_thread(nb)) }?;
        self.launches += 1;
        self.launch_update(0)?;
        let ways = if self.single_pass && self.step > 2 {
            self.check_forecast()?
        } else {
            Ways::GENERAL
        };
        if ways.miss {
            self.restore_missed()?;
            self.launch_update(1)?;
        }
        if ways.general {
            self.general_way()?;
        }
        if ways.hit {
            self.apply_candidates()?;
        }
        Ok(())
    }

    /// forecast_check, then the candidates' two digits; returns the flags.
    fn check_forecast(&mut self) -> Result<Ways, GpuError> {
        let nb = self.blocks.len();
        let stream = self.gpu.stream().clone();
        let gpu = self.gpu.clone();
        let nbi = nb as i32;
        let f = &mut self.out.fc;
        let mut l = stream.launch_builder(gpu.function("forecast_check"));
        l.arg(&mut f.fc)
            .arg(&f.lanes)
            .arg(&self.out.info)
            .arg(&f.fcinfo);
        l.arg(&nbi).arg(&mut f.flags);
        // SAFETY: matches `forecast_check`; one thread per block.
        unsafe { l.launch(per_block_thread(nb)) }?;
        let tiles = f.tile_grid();
        for level in [0i32, 1] {
            let mut l = stream.launch_builder(gpu.function("cand_hist"));
            l.arg(&f.cand_k).arg(&f.fc).arg(&f.lanes).arg(&f.tile_lane);
            l.arg(&f.fcinfo).arg(&level).arg(&mut f.chist);
            // SAFETY: matches `cand_hist`; one CUDA block per candidate tile,
            // each tile inside its block's candidate list.
            unsafe { l.launch(tiles) }?;
            let mut l = stream.launch_builder(gpu.function("cand_pick"));
            l.arg(&mut f.fc).arg(&mut f.chist).arg(&self.out.info);
            l.arg(&f.fcinfo).arg(&f.lanes).arg(&f.cand_i).arg(&f.cand_k);
            l.arg(&level).arg(&mut f.flags);
            // SAFETY: matches `cand_pick`; 1024 threads per block, which
            // its CAND_BINS / 1024 bins per thread assume.
            unsafe { l.launch(per_block(nb, 1024)) }?;
        }
        self.launches += 5;
        f.ways(&stream)
    }

    /// forecast_restore: the logged θ of the blocks that missed.
    fn restore_missed(&mut self) -> Result<(), GpuError> {
        let stream = self.gpu.stream().clone();
        let gpu = self.gpu.clone();
        let f = &self.out.fc;
        let mut l = stream.launch_builder(gpu.function("forecast_restore"));
        l.arg(&mut self.p).arg(&f.log_i).arg(&f.log_p).arg(&f.fc);
        l.arg(&f.lanes).arg(&self.out.info).arg(&f.fcinfo);
        let cfg = LaunchConfig {
            grid_dim: (self.blocks.len() as u32, 32, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: matches `forecast_restore`; each block's log lies in its
        // own region, its indices inside the flat buffers.
        unsafe { l.launch(cfg) }?;
        self.launches += 1;
        Ok(())
    }

    /// cand_apply: the chosen candidates of the blocks whose band held.
    fn apply_candidates(&mut self) -> Result<(), GpuError> {
        let stream = self.gpu.stream().clone();
        let gpu = self.gpu.clone();
        let decay = self.decay() as f32;
        let f = &self.out.fc;
        let mut l = stream.launch_builder(gpu.function("cand_apply"));
        l.arg(&mut self.p)
            .arg(&f.cand_i)
            .arg(&f.cand_k)
            .arg(&f.cand_d);
        l.arg(&f.fc).arg(&f.lanes).arg(&f.tile_lane).arg(&f.fcinfo);
        l.arg(&decay);
        l.arg(&mut self.out.sel);
        // SAFETY: matches `cand_apply`; one CUDA block per candidate tile.
        unsafe { l.launch(f.tile_grid()) }?;
        self.launches += 1;
        Ok(())
    }

    /// θ's factor under decoupled weight decay (1 without).
    fn decay(&self) -> f64 {
        match self.base {
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
        }
    }

    /// The base's update kernel: phase 0 is the step (state update), phase
    /// 1 recomputes dir and the keys of the blocks that missed from their
    /// stored state (the same scalars, so the same values bit for bit).
    fn launch_update(&mut self, phase: i32) -> Result<(), GpuError> {
        let t = self.step as f64;
        let stream = self.gpu.stream().clone();
        let gpu = self.gpu.clone();
        let score_kind = self.filter.score_kind();
        let cfg = grid(self.chunks);
        let f32of = |x: f64| x as f32;
        // (1 − w) of PyTorch's lerp, computed as the CPU does.
        let lerp_weights = |beta: f64| (f32of(1.0 - beta), f32of(1.0 - (1.0 - beta)));
        let decay_f = f32of(self.decay());
        self.out.phase = phase;
        self.launches += 1;
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
        Ok(())
    }

    /// The general way for the blocks that take it: radix select over
    /// every key, tie ranking, masked apply.
    fn general_way(&mut self) -> Result<(), GpuError> {
        let stream = self.gpu.stream().clone();
        let gpu = self.gpu.clone();
        let cfg = grid(self.chunks);
        let nb = self.blocks.len();
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
                    .arg(&self.out.fc.fc)
                    .arg(&chunks)
                    .arg(&s);
                l.arg(&mut self.out.hist);
                // SAFETY: matches `radix_hist`; HIST_CHUNKS chunks per CUDA
                // block, the last one bounded by `chunks`.
                unsafe { l.launch(hist_cfg) }?;
                self.launches += 1;
            }
            let mut l = stream.launch_builder(gpu.function("radix_pick"));
            l.arg(&mut self.state)
                .arg(&mut self.out.hist)
                .arg(&self.out.info);
            l.arg(&mut self.out.fc.fc).arg(&s);
            // SAFETY: matches `radix_pick`; one CUDA block of 256 threads (one
            // per bin) per parameter block, a 4-word state per block.
            unsafe { l.launch(per_block(nb, 256)) }?;
            self.launches += 1;
        }
        let fc = &self.out.fc.fc;
        let mut l = stream.launch_builder(gpu.function("tie_count"));
        l.arg(&self.out.key)
            .arg(&self.state)
            .arg(&self.out.chunk_block);
        l.arg(&self.out.info)
            .arg(fc)
            .arg(&chunks)
            .arg(&mut self.chunk_counts);
        // SAFETY: matches `tie_count`; one count per chunk, HIST_CHUNKS
        // chunks per CUDA block, the last one bounded by `chunks`.
        unsafe { l.launch(hist_cfg) }?;
        let mut l = stream.launch_builder(gpu.function("tie_scan"));
        l.arg(&mut self.chunk_counts)
            .arg(&self.state)
            .arg(&self.out.info)
            .arg(fc);
        // SAFETY: matches `tie_scan`; one CUDA block of 1024 threads per
        // block, each scanning that block's own chunks.
        unsafe { l.launch(per_block(nb, 1024)) }?;
        let (decay_f, dec_all) = (self.decay() as f32, self.decay_all as i32);
        let mut l = stream.launch_builder(gpu.function("masked_apply"));
        l.arg(&mut self.p)
            .arg(&self.out.dir)
            .arg(&self.out.key)
            .arg(&self.state);
        l.arg(&self.chunk_counts)
            .arg(&self.out.chunk_block)
            .arg(&self.out.info)
            .arg(fc);
        l.arg(&decay_f).arg(&dec_all).arg(&mut self.out.sel);
        // SAFETY: matches `masked_apply`; one CUDA block per chunk, as
        // `tie_count` counted them.
        unsafe { l.launch(cfg) }?;
        self.launches += 3;
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
            .map(|b| {
                let (first, words) = (b.offset / 32, b.n.div_ceil(32));
                let bits = stream.clone_dtoh(&self.out.sel.slice(first..first + words))?;
                Ok((0..b.n)
                    .map(|i| ((bits[i / 32] >> (i % 32)) & 1) as u8)
                    .collect())
            })
            .collect()
    }
}
