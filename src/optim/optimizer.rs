//! `Optimizer<F, B, T>`: a base optimizer B whose updates are filtered by F,
//! over parameter groups and blocks (SPEC.md section 2).
//!
//! One step at t (1-based), for every block b with fraction α and k_b entries kept:
//!
//! ```text
//! g      ← transforms(g)                          (clip by value / global norm, pull to θ_pre)
//! keys_i ← abs_key(Filter.score_i)                 (scored filters; from the state after this step's update)
//! S_b    ← top-k_b of keys (ties: smaller index)   (select.rs)
//! for every entry i:  (θ'_i, state_i) ← Base.update(θ_i, g_i, state_i)
//!     θ_i ← θ'_i                 if i ∈ S_b
//!     θ_i ← θ_i·(1 − lr·wd)      if i ∉ S_b and scope = All (decoupled decay)
//!     θ_i unchanged              otherwise
//! ```
//!
//! With a scored filter on a base whose step splits (all but Lion), and no
//! gradient transform or selection tracking, the same step runs as a fused
//! step without a key array (a read-only pass that locates the threshold,
//! then the base's update with a compare) ([`SelectionPath::Fused`], the default;
//! `optimizer/fused.rs`), bit for bit the same result.
//!
//! Blocks run in parallel (rayon) and large blocks are cut into fixed chunks;
//! every entry's arithmetic is independent of the chunking and the top-k is
//! exact, so results are identical for any thread count.

mod fused;
pub use fused::pass0_histogram_bytes;
mod mapped;
mod random_draw;
mod rooted;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::base::{Base, BaseScalars};
use super::filter::{Filter, FilterMode};
use super::finite::FiniteGrads;
use super::group::{GroupRule, ResolvedGroup};
use super::layout::Layout;
use super::partition::Partition;
use super::schedule::Schedule;
use super::select::{selection_count, Cut, Decider, TopK};
use super::stats::{key_to_f64, BlockStats, StepPhases, StepStats};
use super::transform::{Clip, GradMap, GradPrep, Pull};
use super::OptimError;
use crate::kernels::huge_pages::{collapse_runs, huge_zeroed_vec};
use crate::kernels::prefetch;
use crate::kernels::reduce::{all_finite_wide, clamped_sum_squares_wide};
use crate::kernels::simd::{wide_simd_call, wide_simd_fn};
use crate::{ParamError, ParamStore, Scalar};
use std::time::Instant;

/// Entries per parallel work item inside a block.
pub(crate) const CHUNK: usize = 1 << 15;

/// Which entries decoupled weight decay applies to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecayScope {
    /// Only selected entries (unselected entries are frozen bit for bit). Default.
    #[default]
    Selected,
    /// Every entry every step (what the published implementation does).
    All,
}

/// What to do with a non-finite gradient.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NonFinitePolicy {
    /// Return [`OptimError::NonFinite`]; parameters and state untouched. Default.
    #[default]
    Error,
    /// Skip the step (parameters and state untouched) and count it.
    Skip,
}

/// Everything about an optimizer except its base and filter.
#[derive(Clone, Debug, Default)]
pub struct OptimConfig {
    /// Group rules, first match wins; unmatched tensors form the default group.
    pub groups: Vec<GroupRule>,
    /// How tensors are split into blocks.
    pub partition: Partition,
    /// Decoupled weight-decay scope.
    pub decay_scope: DecayScope,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// Gradient clipping.
    pub clip: Clip,
    /// Pull toward the parameters the optimizer was built from.
    pub pull: Option<Pull>,
    /// Non-finite gradient policy.
    pub non_finite: NonFinitePolicy,
    /// Track selections for overlap and ever-updated statistics (1 byte per entry).
    pub track_selection: bool,
    /// Which implementation runs scored selections (both exact, bit for bit
    /// the same results).
    pub selection_path: SelectionPath,
    /// Whether the optimizer asks Linux for 2 MiB pages for the buffers its
    /// step streams (speed only; results are the same either way).
    pub huge_pages: HugePages,
}

/// Transparent huge pages for the buffers a step streams
/// (`kernels::huge_pages`): θ, g, m, v crossing a 4 KiB page every 1024
/// entries cost an Adam step about a sixth of its memory bandwidth.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HugePages {
    /// State buffers are advised (`MADV_HUGEPAGE`) when allocated and
    /// written once; they and the parameters are collapsed into huge pages
    /// (`MADV_COLLAPSE`, a one-time copy) when the optimizer is built, as
    /// runs of neighbouring buffers (`kernels::huge_pages::collapse_runs`),
    /// so that small tensors' buffers get them too. Gradients are the
    /// caller's buffers and stay as they are. Default.
    #[default]
    Use,
    /// No advice: every buffer stays on the pages it has.
    Off,
}

/// The implementation of a scored filter's step. Both select exactly the
/// same entries and give bit-identical results; they differ in speed only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelectionPath {
    /// The fused step (`optimizer/fused.rs`) wherever it applies:
    /// a base whose step splits (all but Lion), a scored filter, no gradient
    /// transform, no selection tracking. Elsewhere, `Keys`. Default.
    #[default]
    Fused,
    /// Always the general step: keys of every entry into a scratch array, an
    /// exact top-k over it, then the base's update.
    Keys,
}

impl OptimConfig {
    /// The published MoFO implementation's setup: "bias"/"norm" tensors
    /// updated in full, decay scope `All`.
    pub fn reference() -> Self {
        OptimConfig {
            groups: vec![GroupRule::reference_unfiltered()],
            decay_scope: DecayScope::All,
            ..Self::default()
        }
    }
}

/// Per-block scratch kept across steps.
#[derive(Clone, Debug, Default)]
pub(crate) struct BlockRuntime<T: Scalar> {
    pub topk: TopK,
    pub keys: Vec<u64>,
    /// bit 0: selected last step; bit 1: updated since the reference point.
    pub track: Vec<u8>,
    pub ever: usize,
    /// Per chunk, the fused step's candidates.
    pub candidates: Vec<Vec<fused::Candidate>>,
    /// The fused step's forecast of this block's next threshold.
    pub forecast: fused::Forecast,
    /// Per chunk, the single pass's log of the entries it updated, to undo
    /// them when the forecast missed.
    pub undo: Vec<fused::UndoLog<T>>,
    /// The random filter's selection mask, a byte per entry
    /// (`random_draw`).
    pub mask: Vec<u8>,
    /// Per chunk, the random filter's candidates (index in the chunk, key).
    pub drawn: Vec<Vec<(u32, u64)>>,
}

/// The per-entry state buffers of one tensor (slots 0..3, empty when unused).
pub(crate) type TensorState<T> = [Vec<T>; 3];

/// A filtered optimizer. See the module docs.
#[derive(Clone, Debug)]
pub struct Optimizer<F: Filter, B: Base, T: Scalar = f32> {
    pub(crate) filter: F,
    pub(crate) base: B,
    pub(crate) config: OptimConfig,
    pub(crate) layout: Layout,
    pub(crate) state: Vec<TensorState<T>>,
    pub(crate) pre: Option<Vec<Vec<T>>>,
    pub(crate) runtime: Vec<BlockRuntime<T>>,
    pub(crate) scalars: BaseScalars,
    pub(crate) step: u64,
    pub(crate) skipped: u64,
    pub(crate) phases: StepPhases,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BlockMode {
    Full,
    Frozen,
    Cut(usize),
}

struct View<'a, T> {
    p: &'a mut [T],
    g: &'a [T],
    pre: &'a [T],
    s: [&'a mut [T]; 3],
    off: usize,
}

/// The first `n` entries of each state buffer in use (an empty slice for an
/// unused slot). Borrows only the buffers, so `θ` stays free to be written.
#[inline(always)]
fn used_state<'a, T>(s: &'a [&mut [T]; 3], used: [bool; 3], n: usize) -> [&'a [T]; 3] {
    let slot = |j: usize| -> &'a [T] {
        if used[j] {
            &s[j][..n]
        } else {
            &[]
        }
    };
    [slot(0), slot(1), slot(2)]
}

impl<'a, T> View<'a, T> {
    fn len(&self) -> usize {
        self.p.len()
    }

    fn split(self, at: usize) -> (View<'a, T>, View<'a, T>) {
        let (p0, p1) = self.p.split_at_mut(at);
        let (g0, g1) = self.g.split_at(at);
        let (r0, r1) = if self.pre.is_empty() {
            (self.pre, self.pre)
        } else {
            self.pre.split_at(at)
        };
        let [a, b, c] = self.s;
        let sp = |x: &'a mut [T]| {
            if x.is_empty() {
                (x, &mut [][..])
            } else {
                x.split_at_mut(at)
            }
        };
        let (a0, a1) = sp(a);
        let (b0, b1) = sp(b);
        let (c0, c1) = sp(c);
        (
            View {
                p: p0,
                g: g0,
                pre: r0,
                s: [a0, b0, c0],
                off: self.off,
            },
            View {
                p: p1,
                g: g1,
                pre: r1,
                s: [a1, b1, c1],
                off: self.off + at,
            },
        )
    }
}

struct Ctx<'c, F: Filter, B: Base, T: Scalar> {
    filter: &'c F,
    base: &'c B,
    coefs: &'c [B::Coef<T>],
    prep: GradPrep<T>,
    used: [bool; 3],
    scope_all: bool,
    track: bool,
    fused: bool,
    /// The gradients were checked by the caller (`Optimizer::step_finite`).
    known_finite: bool,
    t: u64,
}

/// A splitmix64-style mix of (seed, a, b) for per-step, per-block seeds.
pub(crate) fn mix_seed(seed: u64, a: u64, b: u64) -> u64 {
    let mut z = seed
        ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F).rotate_left(17);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl<F: Filter, B: Base, T: Scalar> Optimizer<F, B, T> {
    /// Builds an optimizer for the tensors of `params` (names and shapes; their
    /// current values are θ_pre for [`OptimConfig::pull`]).
    ///
    /// Errors: a bad hyperparameter (lr < 0, α ∉ (0, 1], ...), a filter that
    /// cannot work with the base (momentum filter on RMSProp/SGD without
    /// momentum, mv/gv without a second moment), an empty tensor or block,
    /// a partition that does not fit.
    pub fn new(
        filter: F,
        base: B,
        config: OptimConfig,
        params: &ParamStore<T>,
    ) -> Result<Self, OptimError> {
        base.validate()?;
        filter.check(&base)?;
        if let Some(c) = config.clip.max_norm {
            super::base::check_nonneg("clip.max_norm", c)?;
        }
        if let Some(c) = config.clip.max_value {
            super::base::check_nonneg("clip.max_value", c)?;
        }
        if let Some(Pull::L1 { lambda } | Pull::L2 { lambda }) = config.pull {
            super::base::check_nonneg("pull.lambda", lambda)?;
        }
        let defaults = ResolvedGroup {
            name: "default".to_string(),
            lr: base.lr(),
            weight_decay: base.weight_decay(),
            fraction: filter.fraction(),
            filtered: true,
        };
        let layout = Layout::build(params, &config.groups, defaults, &config.partition)?;
        let used = base.buffers().map(|b| b.is_some());
        let huge = config.huge_pages == HugePages::Use;
        let mut state: Vec<TensorState<T>> = layout
            .tensors
            .iter()
            .map(|t| {
                used.map(|u| match (u, huge) {
                    (true, true) => huge_zeroed_vec(t.numel),
                    (true, false) => vec![T::zero(); t.numel],
                    (false, _) => Vec::new(),
                })
            })
            .collect();
        if huge {
            // The state is written once first, so that the collapse below
            // finds its pages present: in a 2 MiB region whose first page is
            // already mapped (an allocator's header), later faults map 4 KiB
            // pages, and the first step would read the rest before writing
            // it (4 KiB copies of the zero page). Then runs of neighbouring
            // buffers are collapsed, so that the huge pages straddling two
            // small tensors are included (`collapse_runs`).
            state
                .iter_mut()
                .flat_map(|s| s.iter_mut())
                .for_each(|v| std::hint::black_box(v.as_mut_slice()).fill(T::zero()));
            let bufs: Vec<&[T]> = state
                .iter()
                .flat_map(|s| s.iter().map(|v| v.as_slice()))
                .collect();
            collapse_runs(&bufs);
            let bufs: Vec<&[T]> = params.iter().map(|p| p.as_slice()).collect();
            collapse_runs(&bufs);
        }
        let pre = config
            .pull
            .map(|_| params.iter().map(|p| p.as_slice().to_vec()).collect());
        let runtime = layout
            .blocks
            .iter()
            .map(|b| BlockRuntime {
                track: if config.track_selection {
                    vec![0u8; b.len]
                } else {
                    Vec::new()
                },
                ..BlockRuntime::default()
            })
            .collect();
        Ok(Optimizer {
            filter,
            base,
            config,
            layout,
            state,
            pre,
            runtime,
            scalars: BaseScalars::default(),
            step: 0,
            skipped: 0,
            phases: StepPhases::default(),
        })
    }

    /// An optimizer with the default configuration (one group, one block per
    /// tensor, constant lr, decay scope `Selected`): the quick way to run
    /// full-batch Adam/MoFO/Lion/random BCD/HFT on a few vectors.
    pub fn simple(filter: F, base: B, params: &ParamStore<T>) -> Result<Self, OptimError> {
        Self::new(filter, base, OptimConfig::default(), params)
    }

    /// Wall-clock time of the read-only phase and the update phase of the
    /// last step that ran to the end (zero before the first; a step stopped
    /// by a non-finite gradient leaves it as it was); for benchmarks.
    pub fn last_step_phases(&self) -> StepPhases {
        self.phases
    }

    /// Number of steps taken (skipped steps not counted).
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// Number of steps skipped for non-finite gradients.
    pub fn skipped_steps(&self) -> u64 {
        self.skipped
    }

    /// The base.
    pub fn base(&self) -> &B {
        &self.base
    }

    /// The filter.
    pub fn filter(&self) -> &F {
        &self.filter
    }

    /// The configuration.
    pub fn config(&self) -> &OptimConfig {
        &self.config
    }

    /// The tensors, groups and blocks.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Replaces the learning-rate schedule.
    pub fn set_schedule(&mut self, schedule: Schedule) {
        self.config.schedule = schedule;
    }

    /// Sets the base learning rate η of every group (before the schedule).
    pub fn set_lr(&mut self, lr: f64) -> Result<(), OptimError> {
        super::base::check_lr(lr)?;
        for g in &mut self.layout.groups {
            g.lr = lr;
        }
        self.base.set_lr(lr);
        Ok(())
    }

    /// The learning rate of each group at the next step.
    pub fn next_lrs(&self) -> Vec<f64> {
        self.layout
            .groups
            .iter()
            .map(|g| self.config.schedule.lr(self.step + 1, g.lr))
            .collect()
    }

    /// Clears the "updated since the reference point" marks (selection tracking).
    pub fn reset_reference(&mut self) {
        for rt in &mut self.runtime {
            for b in &mut rt.track {
                *b &= 1;
            }
            rt.ever = 0;
        }
    }

    /// A state buffer of a tensor by name (`exp_avg`, `exp_avg_sq`, ...).
    pub fn buffer(&self, tensor: &str, buffer: &str) -> Option<&[T]> {
        let ti = *self.layout.index.get(tensor)?;
        let slot = self
            .base
            .buffers()
            .iter()
            .position(|b| *b == Some(buffer))?;
        Some(&self.state[ti][slot])
    }

    fn check_store(&self, store: &ParamStore<T>) -> Result<(), OptimError> {
        for t in &self.layout.tensors {
            let p = store
                .get(&t.name)
                .ok_or_else(|| ParamError::Missing(t.name.clone()))?;
            if p.shape() != t.shape.as_slice() {
                return Err(ParamError::Shape {
                    name: t.name.clone(),
                    got: p.shape().to_vec(),
                    expected: t.shape.clone(),
                }
                .into());
            }
        }
        if store.len() != self.layout.tensors.len() {
            let extra = store
                .names()
                .find(|n| !self.layout.index.contains_key(*n))
                .unwrap_or("?");
            return Err(ParamError::Missing(extra.to_string()).into());
        }
        Ok(())
    }

    /// How the fused step located its thresholds so far, summed over blocks
    /// and steps: (forecast hits, histogram passes, crowded bands left to
    /// the general step); for the random filter, (draw passes whose band
    /// held the threshold, 0, draws left to the general step). Speed only:
    /// every way selects the same entries.
    pub fn fused_path_counts(&self) -> (u64, u64, u64) {
        self.runtime.iter().fold((0, 0, 0), |(h, m, c), rt| {
            let f = &rt.forecast;
            (h + f.hits, m + f.misses, c + f.crowded)
        })
    }

    /// How many of the fused step's block steps ran as one pass over the
    /// entries (its forecast settled, decay scope `Selected`), summed over
    /// blocks and steps: (those whose band held the threshold, those that
    /// undid their updates and redid the selection). Both are also counted
    /// by [`Optimizer::fused_path_counts`] (as forecast hits and histogram
    /// passes). Speed only.
    pub fn fused_single_pass_counts(&self) -> (u64, u64) {
        self.runtime.iter().fold((0, 0), |(h, m), rt| {
            let f = &rt.forecast;
            (h + f.single, m + f.single_missed)
        })
    }

    /// Candidates the fused step's single passes recorded (entries whose
    /// key fell in the forecast's band) and the entries of their blocks,
    /// each summed over the block steps whose band held the threshold.
    /// Speed only.
    pub fn fused_single_pass_candidates(&self) -> (u64, u64) {
        // A block's length is fixed, so its entries over those steps are
        // its length times their count.
        self.runtime
            .iter()
            .zip(&self.layout.blocks)
            .fold((0, 0), |(c, n), (rt, block)| {
                let f = &rt.forecast;
                (c + f.candidates, n + f.single * block.len as u64)
            })
    }

    /// The outcome of a step whose gradient `index` of tensor `ti` is not
    /// finite, by the policy; parameters and state are untouched.
    fn non_finite(&mut self, ti: usize, index: usize) -> Result<StepStats, OptimError> {
        match self.config.non_finite {
            NonFinitePolicy::Error => Err(OptimError::NonFinite {
                name: self.layout.tensors[ti].name.clone(),
                index,
            }),
            NonFinitePolicy::Skip => {
                self.skipped += 1;
                Ok(StepStats {
                    step: self.step,
                    skipped: true,
                    lrs: Vec::new(),
                    grad_norm: None,
                    blocks: Vec::new(),
                    selected: 0,
                    total: self.layout.num_elements(),
                    ever_updated_share: None,
                })
            }
        }
    }

    /// First non-finite gradient (tensor, index) and the sum of squares of
    /// the value-clipped gradient (f64, fixed order).
    fn scan_grads(&self, grads: &[&[T]], prep: &GradPrep<T>) -> (Option<(usize, usize)>, f64) {
        let want_norm = self.config.clip.max_norm.is_some();
        let items: Vec<(usize, usize)> = grads
            .iter()
            .enumerate()
            .flat_map(|(ti, g)| (0..g.len().div_ceil(CHUNK)).map(move |c| (ti, c * CHUNK)))
            .collect();
        let parts: Vec<(Option<usize>, f64)> = items
            .par_iter()
            .map(|&(ti, start)| {
                let g = &grads[ti][start..(start + CHUNK).min(grads[ti].len())];
                // The branch-free check first (with the norm's sum of
                // squares when clipping by norm: one read); the search only
                // on a bad chunk.
                let (finite, ss) = if want_norm {
                    let c = prep.clip_value.unwrap_or_else(T::infinity);
                    match wide_simd_call!(clamped_sum_squares / clamped_sum_squares_wide(g, c)) {
                        Some(ss) => (true, ss),
                        None => (false, 0.0),
                    }
                } else {
                    (wide_simd_call!(all_finite / all_finite_wide(g)), 0.0)
                };
                let bad = (!finite)
                    .then(|| g.iter().position(|x| !x.is_finite()))
                    .flatten()
                    .map(|i| start + i);
                (bad, ss)
            })
            .collect();
        let mut total = 0.0;
        for (&(ti, _), (bad, ss)) in items.iter().zip(parts) {
            if let Some(i) = bad {
                return (Some((ti, i)), total);
            }
            total += ss;
        }
        (None, total)
    }

    fn block_modes(&self, t: u64) -> Vec<BlockMode> {
        let mode = self.filter.mode();
        let mut modes: Vec<BlockMode> = self
            .layout
            .blocks
            .iter()
            .map(|b| {
                let g = &self.layout.groups[b.group];
                if !g.filtered {
                    return BlockMode::Full;
                }
                match mode {
                    FilterMode::All | FilterMode::BlockRandom { .. } => BlockMode::Full,
                    FilterMode::Scored | FilterMode::Random { .. } => {
                        let k = selection_count(g.fraction, b.len);
                        if k >= b.len {
                            BlockMode::Full
                        } else {
                            BlockMode::Cut(k)
                        }
                    }
                }
            })
            .collect();
        if let FilterMode::BlockRandom { seed } = mode {
            let mut members: Vec<Vec<usize>> = vec![Vec::new(); self.layout.num_hft_groups];
            for (i, b) in self.layout.blocks.iter().enumerate() {
                if self.layout.groups[b.group].filtered {
                    members[b.hft_group].push(i);
                }
            }
            for (gi, m) in members.iter().enumerate() {
                if m.is_empty() {
                    continue;
                }
                let keep = selection_count(0.5, m.len());
                let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(seed, t, gi as u64));
                let chosen = rand::seq::index::sample(&mut rng, m.len(), keep);
                for &bi in m {
                    modes[bi] = BlockMode::Frozen;
                }
                for j in chosen.iter() {
                    modes[m[j]] = BlockMode::Full;
                }
            }
        }
        modes
    }

    /// One optimizer step: updates `params` in place from `grads` (same
    /// names and shapes as the store the optimizer was built from).
    ///
    /// On a non-finite gradient, returns [`OptimError::NonFinite`] (or, with
    /// [`NonFinitePolicy::Skip`], returns skipped statistics); parameters and
    /// state are untouched either way.
    pub fn step(
        &mut self,
        params: &mut ParamStore<T>,
        grads: &ParamStore<T>,
    ) -> Result<StepStats, OptimError> {
        self.step_inner(params, grads, false)
    }

    /// [`Optimizer::step`] on gradients already found finite: the same
    /// update bit for bit, without the step's own read of every gradient
    /// before it changes anything (4 of Adam's 32 bytes per f32 entry; see
    /// [`super::finite`]). The gradients are still read by the norm clip
    /// ([`Clip::max_norm`]) when one is set.
    pub fn step_finite(
        &mut self,
        params: &mut ParamStore<T>,
        grads: FiniteGrads<'_, T>,
    ) -> Result<StepStats, OptimError> {
        self.step_inner(params, grads.store(), true)
    }

    /// A step; `known_finite` skips the non-finite checks.
    fn step_inner(
        &mut self,
        params: &mut ParamStore<T>,
        grads: &ParamStore<T>,
        known_finite: bool,
    ) -> Result<StepStats, OptimError> {
        self.check_store(params)?;
        self.check_store(grads)?;
        let t = self.step + 1;
        let gslices: Vec<&[T]> = self
            .layout
            .tensors
            .iter()
            .map(|ti| grads.get(&ti.name).expect("checked above").as_slice())
            .collect();
        let mut prep = GradPrep::identity();
        prep.clip_value = self.config.clip.max_value.map(T::of);
        // The fused step's read-only pass 0 checks the gradients itself, for
        // every block before any block changes; else they are scanned here.
        // (A base whose step does not split, Lion, runs pass 0 and pass 1
        // but not the single pass; a rooted filter needs the split. The
        // random filter's fused step is `random_draw`.) Under clipping the
        // fused kernels take the clipped gradients chunk by chunk
        // (`optimizer/mapped.rs`), checked here first (with the norm).
        let clipping = self.config.clip.max_value.is_some() || self.config.clip.max_norm.is_some();
        let fused = (B::SPLITS || !F::ROOTED)
            && self.config.selection_path == SelectionPath::Fused
            && matches!(
                self.filter.mode(),
                FilterMode::Scored | FilterMode::Random { .. }
            )
            && !self.config.track_selection
            && self.config.pull.is_none();
        let started = Instant::now();
        let scanned = if known_finite {
            self.config.clip.max_norm.is_some()
        } else {
            !fused || clipping
        };
        let (bad, sumsq) = if scanned {
            self.scan_grads(&gslices, &prep)
        } else {
            (None, 0.0)
        };
        if let Some((ti, index)) = bad {
            return self.non_finite(ti, index);
        }
        let grad_norm = self.config.clip.max_norm.map(|_| sumsq.sqrt());
        if let (Some(max), Some(norm)) = (self.config.clip.max_norm, grad_norm) {
            if norm > max {
                // PyTorch's clip_grad_norm_: g · max/(norm + 1e-6).
                prep.scale = Some(T::of(max / (norm + 1e-6)));
            }
        }
        prep.pull = self.config.pull.map(|p| match p {
            Pull::L1 { lambda } => (true, T::of(lambda)),
            Pull::L2 { lambda } => (false, T::of(lambda)),
        });
        let lrs: Vec<f64> = self
            .layout
            .groups
            .iter()
            .map(|g| self.config.schedule.lr(t, g.lr))
            .collect();
        for &lr in &lrs {
            super::base::check_lr(lr)?;
        }
        let mut scalars = self.scalars;
        self.base.advance_scalars(t, &mut scalars);
        let coefs: Vec<B::Coef<T>> = self
            .layout
            .groups
            .iter()
            .zip(&lrs)
            .map(|(g, &lr)| self.base.coef::<T>(t, lr, g.weight_decay, &scalars))
            .collect();
        let modes = self.block_modes(t);
        debug_assert!(!fused || prep.pull.is_none());
        let ctx = Ctx {
            filter: &self.filter,
            base: &self.base,
            coefs: &coefs,
            prep,
            used: self.base.buffers().map(|b| b.is_some()),
            scope_all: self.config.decay_scope == DecayScope::All,
            track: self.config.track_selection,
            fused,
            known_finite: known_finite || scanned,
            t,
        };

        // Mutable views of every block's pieces, in block order.
        let layout = &self.layout;
        let mut pslices: Vec<Option<&mut [T]>> = (0..layout.tensors.len()).map(|_| None).collect();
        for p in params.iter_mut() {
            let ti = layout.index[&p.name];
            pslices[ti] = Some(p.as_slice_mut());
        }
        let mut views: Vec<Vec<View<'_, T>>> = layout.blocks.iter().map(|_| Vec::new()).collect();
        for ((ti, st), pslice) in self.state.iter_mut().enumerate().zip(pslices) {
            let [a, b, c] = st;
            let mut rest = View {
                p: pslice.expect("checked above"),
                g: gslices[ti],
                pre: self.pre.as_ref().map(|v| v[ti].as_slice()).unwrap_or(&[]),
                s: [a.as_mut_slice(), b.as_mut_slice(), c.as_mut_slice()],
                off: 0,
            };
            for &(bi, si) in &layout.tensor_segments[ti] {
                let seg = layout.blocks[bi].segments[si];
                let (mut head, tail) = rest.split(seg.len);
                rest = tail;
                head.off = seg.block_offset;
                // Cut the piece into chunks for parallelism within the block.
                while head.len() > CHUNK {
                    let (h, t2) = head.split(CHUNK);
                    views[bi].push(h);
                    head = t2;
                }
                views[bi].push(head);
            }
        }
        // The fused step's pass 0 (read only) for every block first.
        let mut located = vec![None; views.len()];
        if fused {
            let filter_mode = self.filter.mode();
            let (found, finite): (Vec<_>, Vec<bool>) = views
                .par_iter_mut()
                .zip(self.runtime.par_iter_mut())
                .zip(modes.par_iter())
                .enumerate()
                .map(|(bi, ((chunks, rt), &mode))| {
                    let info = &layout.blocks[bi];
                    match (mode, filter_mode) {
                        (BlockMode::Cut(k), FilterMode::Random { seed })
                            if info.len <= u32::MAX as usize =>
                        {
                            let (drawn, finite) =
                                random_draw::draw(&ctx, seed, bi, info.len, k, rt, &*chunks);
                            (drawn.map(fused::Plan::Drawn), finite)
                        }
                        (BlockMode::Cut(k), _) if info.len <= u32::MAX as usize => {
                            let c = &ctx.coefs[info.group];
                            fused::locate(&ctx, c, info.len, k, &rt.forecast, chunks)
                        }
                        _ => (
                            None,
                            ctx.known_finite || chunks.iter().all(|ch| grads_finite(ch.g)),
                        ),
                    }
                })
                .unzip();
            if finite.contains(&false) {
                drop(views);
                let (bad, _) = self.scan_grads(&gslices, &prep);
                let (ti, index) = bad.expect("pass 0 and the scan apply the same test");
                return self.non_finite(ti, index);
            }
            located = found;
        }
        let read_done = Instant::now();
        let block_stats: Vec<BlockStats> = views
            .into_par_iter()
            .zip(self.runtime.par_iter_mut())
            .zip(modes.par_iter())
            .zip(located.into_par_iter())
            .enumerate()
            .map(|(bi, (((chunks, rt), &mode), found))| {
                let info = &layout.blocks[bi];
                process_block(&ctx, bi, info.group, info.len, rt, chunks, mode, found)
            })
            .collect();
        self.phases = StepPhases {
            read_only: read_done - started,
            update: read_done.elapsed(),
        };
        self.step = t;
        self.scalars = scalars;
        let selected = block_stats.iter().map(|b| b.selected).sum();
        let total = layout.num_elements();
        let ever_updated_share = self
            .config
            .track_selection
            .then(|| self.runtime.iter().map(|r| r.ever).sum::<usize>() as f64 / total as f64);
        Ok(StepStats {
            step: t,
            skipped: false,
            lrs,
            grad_norm,
            blocks: block_stats,
            selected,
            total,
            ever_updated_share,
        })
    }
}

/// Whether every gradient of a chunk is finite (the branch-free check; the
/// position of a bad one is found by `scan_grads`).
fn grads_finite<T: Scalar>(g: &[T]) -> bool {
    wide_simd_call!(all_finite / all_finite_wide(g))
}

/// One block's step. `located`: what the fused step's pass 0 found (for a
/// block cut by a fused step; `None` there means a crowded band, which the
/// general step runs).
#[allow(clippy::too_many_arguments)]
fn process_block<F: Filter, B: Base, T: Scalar>(
    ctx: &Ctx<'_, F, B, T>,
    block_index: usize,
    group: usize,
    len: usize,
    rt: &mut BlockRuntime<T>,
    mut chunks: Vec<View<'_, T>>,
    mode: BlockMode,
    located: Option<fused::Plan>,
) -> BlockStats {
    let c = &ctx.coefs[group];
    // Histogram counts are u32 (blocks of up to 4G entries).
    if let (BlockMode::Cut(k), true) = (mode, ctx.fused && len <= u32::MAX as usize) {
        match located {
            Some(found) => return fused::process_block(ctx, c, len, k, rt, &mut chunks, found),
            None => rt.forecast.note_crowded(),
        }
    }
    let mut threshold = None;
    let mut deciders: Option<Vec<Decider>> = None;
    if let BlockMode::Cut(k) = mode {
        rt.keys.resize(len, 0);
        chunks
            .par_iter()
            .zip(per_chunk(&mut rt.keys, &chunks).into_par_iter())
            .for_each(|(ch, keys)| {
                wide_simd_call!(fill_keys / fill_keys_wide(ctx, *c, block_index, ch, keys))
            });
        let ct = rt.topk.cut(&rt.keys, k);
        threshold = Some(key_to_f64::<T>(ct.threshold_key));
        if ctx.fused {
            rt.forecast.observe::<T>(ct.threshold_key);
        }
        let keys = &rt.keys;
        deciders = Some(chunk_deciders(
            ct,
            rt.topk.last_ties_total(),
            chunks.len(),
            |ci| {
                let ch = &chunks[ci];
                keys[ch.off..ch.off + ch.len()]
                    .iter()
                    .filter(|&&k| k == ct.threshold_key)
                    .count()
            },
        ));
    }
    let track_slices: Vec<&mut [u8]> = if ctx.track {
        per_chunk(&mut rt.track, &chunks)
    } else {
        chunks.iter().map(|_| &mut [][..]).collect()
    };
    let keys = &rt.keys;
    let (selected, overlap, newly) = chunks
        .par_iter_mut()
        .zip(track_slices.into_par_iter())
        .enumerate()
        .map(|(ci, (ch, track))| {
            let dec = deciders.as_ref().map(|d| d[ci]);
            let ks = if dec.is_some() {
                &keys[ch.off..ch.off + ch.len()]
            } else {
                &[][..]
            };
            wide_simd_call!(
                apply_chunk
                    / apply_chunk_wide(ctx, *c, ch, ks, dec, mode == BlockMode::Full, track)
            )
        })
        .reduce(|| (0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2));
    rt.ever += newly;
    BlockStats {
        selected,
        len,
        threshold,
        overlap: (ctx.track && ctx.t > 1 && selected > 0).then(|| overlap as f64 / selected as f64),
    }
}

/// `buf`, as long as the block, cut into one slice per chunk, in order.
fn per_chunk<'b, X, T>(buf: &'b mut [X], chunks: &[View<'_, T>]) -> Vec<&'b mut [X]> {
    let mut out = Vec::with_capacity(chunks.len());
    let mut rest = buf;
    for ch in chunks {
        let (h, tl) = rest.split_at_mut(ch.len());
        out.push(h);
        rest = tl;
    }
    out
}

/// One decider per chunk of a block selected by `cut`, in index order. The
/// tie quota goes to the smaller indices, so a chunk gets what the chunks
/// before it left of it; `ties_in(i)` counts chunk i's keys equal to τ. When
/// every tie is taken (`ties_total`: [`TopK::last_ties_total`]), nothing is
/// counted.
fn chunk_deciders(
    cut: Cut,
    ties_total: usize,
    n_chunks: usize,
    ties_in: impl Fn(usize) -> usize + Sync + Send,
) -> Vec<Decider> {
    if cut.ties_taken >= ties_total {
        let every_tie = Cut {
            ties_taken: usize::MAX,
            ..cut
        };
        return vec![every_tie.decider(); n_chunks];
    }
    let counts: Vec<usize> = (0..n_chunks).into_par_iter().map(ties_in).collect();
    let mut left = cut.ties_taken;
    counts
        .iter()
        .map(|&n| {
            // A chunk whose ties all fit in what is left takes every one
            // (`usize::MAX`: its `Decider::index_rule` then needs no scan).
            let d = Cut {
                ties_taken: if n <= left { usize::MAX } else { left },
                ..cut
            }
            .decider();
            left = left.saturating_sub(n);
            d
        })
        .collect()
}

wide_simd_fn! {
    fn fill_keys / fill_keys_wide [F: Filter, B: Base, T: Scalar] (
        ctx: &Ctx<'_, F, B, T>,
        c: B::Coef<T>,
        block_index: usize,
        v: &View<'_, T>,
        keys: &mut [u64],
    ) {
        let c = &c;
        match ctx.filter.mode() {
            FilterMode::Random { seed } => {
                let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(seed, ctx.t, block_index as u64));
                rng.set_word_pos(2 * v.off as u128);
                for k in keys.iter_mut() {
                    *k = rng.next_u64();
                }
            }
            _ => {
                let n = keys.len();
                let (p, g) = (&v.p[..n], &v.g[..n]);
                let pre = if v.pre.is_empty() {
                    &[][..]
                } else {
                    &v.pre[..n]
                };
                let used = ctx.used;
                let [s0, s1, s2] = used_state(&v.s, used, n);
                let plain = pre.is_empty() && ctx.prep.is_identity();
                for (i, k) in keys.iter_mut().enumerate() {
                    let s = [
                        if used[0] { s0[i] } else { T::zero() },
                        if used[1] { s1[i] } else { T::zero() },
                        if used[2] { s2[i] } else { T::zero() },
                    ];
                    let gi = if plain {
                        g[i]
                    } else {
                        let r = if pre.is_empty() { T::zero() } else { pre[i] };
                        ctx.prep.apply(g[i], p[i], r)
                    };
                    *k = ctx.filter.score(ctx.base, c, p[i], gi, &s).abs_key();
                }
            }
        }
    }
}

/// Runs `f(i, θ_i, g_i, state_i)` over a chunk, one cache line of
/// entries at a time (16 f32 or 8 f64), each preceded by a prefetch of the
/// line [`prefetch::AHEAD`] entries further on in every buffer the loop
/// streams (θ, g and the state buffers the base uses). The buffer pattern
/// is matched once per chunk; the entries of a whole line run in one
/// bounds-check free loop of constant trip count, which the compiler
/// vectorises. One hint per line, interleaved with the arithmetic, made
/// AdamW's update pass 10% faster (26.1–26.8 → 23.5–24.3 ms on 40.6M
/// parameters, 2 threads, alternated in one binary); asking for a whole
/// sub-block's lines at once had made it slower (30.2 → 32.5 ms), as the
/// burst of hints stalls the loop until the line fill buffers drain. A
/// first version that matched the pattern once per line ran AdamW's pass
/// one entry at a time (63.7–66.9 ms).
///
/// The per-chunk functions around it take the per-step constants
/// (`Base::Coef`) by value: read through a reference, the compiler reloaded
/// them and kept their branches (decay mode, AMSGrad, lerp's weight) inside
/// the loop, which then ran one entry at a time; as locals they are
/// loop-invariant and the loops vectorise.
#[inline(always)]
fn for_each_entry<T: Scalar>(
    v: &mut View<'_, T>,
    used: [bool; 3],
    mut f: impl FnMut(usize, &mut T, T, &mut [T; 3]),
) {
    for_each_entry_marked::<1, T>(
        v,
        used,
        |i, p, g, s| {
            f(i, p, g, s);
            0
        },
        &mut |_, _, _: &[u8], _: &[T], _: &[T], _: &[T], _: [&[T]; 3]| {},
    );
}

/// What [`for_each_entry_marked`] runs after each line:
/// `line_done(lo, any, marks, old θ, θ, g, state)`, where `any` is the OR
/// of the line's marks. The entry loop accumulates `any` in a register as
/// it stores each mark: folding the 32 marks out of their array after the
/// loop loaded them right behind their vector stores and stalled there
/// (the fused step's single pass, 40.6M parameters, 1 thread: 27.4 ms
/// against 24.3 with `any`; 2 threads at 128 GB/s, 14.2 against 12.8).
///
/// A closure is one; a pass whose per-line work is more than a few
/// instructions implements it on a struct, whose `#[inline(always)]` method is inlined into the loop. A
/// large closure is not: it stays a function of its own, compiled for the
/// baseline (not the AVX-512 twin of `wide_simd_fn!`), and called on every
/// line, which spills the loop's vector registers; the single pass of the
/// fused step ran 34 ms that way against 24 for pass 1.
pub(super) trait LineSink<T> {
    /// The line of entries `lo..lo + marks.len()` is done; `any` is the OR
    /// of `marks`. (Eight arguments, not a struct of them: the single pass
    /// is sensitive to how the compiler lays out its loop, a small change
    /// to its sink's layout once cost it 36%, and only this form was
    /// measured.)
    #[allow(clippy::too_many_arguments)]
    fn line_done(
        &mut self,
        lo: usize,
        any: u8,
        marks: &[u8],
        old: &[T],
        p: &[T],
        g: &[T],
        st: [&[T]; 3],
    );
}

impl<T, F: FnMut(usize, u8, &[u8], &[T], &[T], &[T], [&[T]; 3])> LineSink<T> for F {
    #[inline(always)]
    fn line_done(
        &mut self,
        lo: usize,
        any: u8,
        marks: &[u8],
        old: &[T],
        p: &[T],
        g: &[T],
        st: [&[T]; 3],
    ) {
        self(lo, any, marks, old, p, g, st)
    }
}

/// [`for_each_entry`] where `f` also returns a mark per entry (a few
/// bits), and after each line `line_done(lo, any, marks, old θ, θ, g,
/// state)` sees the line's marks (and their OR), θ as it was before `f`,
/// and its entries as they are now (θ and state after `f`; a state slice
/// is empty when the base does not use that buffer). The old θ costs
/// nothing where `line_done` does not read it (the compiler drops the dead stores). The marks stay
/// in a 32-byte array, so a pass that records the few marked entries
/// (the fused step's pass 1, its band) does so while the line is in L1,
/// without a mark array over the chunk. With a `line_done` that does
/// nothing (the bases' update loops) AdamW's update pass measured the same
/// as before this function existed (22.6–25.2 ms against 22.7–23.5).
///
/// A "line" here is `LINES` (1 or 2) cache lines: the fused step's single
/// pass, whose `line_done` logs its updated entries, takes two at a time
/// to halve that per-line bookkeeping; the others take one.
#[inline(always)]
fn for_each_entry_marked<const LINES: usize, T: Scalar>(
    v: &mut View<'_, T>,
    used: [bool; 3],
    mut f: impl FnMut(usize, &mut T, T, &mut [T; 3]) -> u8,
    line_done: &mut impl LineSink<T>,
) {
    let n = v.p.len();
    let [a, b, c] = &mut v.s;
    let z = T::zero();
    let p = &mut *v.p;
    let g = &v.g[..n];
    const { assert!(LINES == 1 || LINES == 2) };
    let cache_line = prefetch::line_entries::<T>();
    let line = LINES * cache_line;
    let hint = prefetch::enabled();
    let mut marks = [0u8; 32];
    let mut olds = [z; 32];
    let none: &[T] = &[];
    // `prefetch::by_lines!` over `LINES` cache lines at a time, with a hint
    // for each of them in each named buffer; after the lines' entries,
    // `line_done` with their marks. `j & 31` changes no index (two lines
    // hold at most 32 entries) and lets the compiler drop the bounds
    // check.
    macro_rules! by_lines {
        ([$($buf:ident),*], |$lo:ident, $hi:ident, $any:ident| $body:block, [$sa:expr, $sb:expr, $sc:expr]) => {
            prefetch::by_lines!(
                n, line, hint,
                |at| {
                    for l in 0..LINES {
                        $(prefetch::prefetch_at(&*$buf, at + l * cache_line);)*
                    }
                },
                |$lo, $hi| {
                    let mut $any = 0u8;
                    $body
                    line_done.line_done($lo, $any, &marks[..$hi - $lo], &olds[..$hi - $lo], &p[$lo..$hi], &g[$lo..$hi], [$sa, $sb, $sc]);
                }
            )
        };
    }
    match used {
        [false, false, false] => by_lines!(
            [p, g],
            |lo, hi, any| {
                for (j, (p, &g)) in p[lo..hi].iter_mut().zip(&g[lo..hi]).enumerate() {
                    let mut s = [z; 3];
                    olds[j & 31] = *p;
                    let mark = f(lo + j, p, g, &mut s);
                    marks[j & 31] = mark;
                    any |= mark;
                }
            },
            [none, none, none]
        ),
        [true, false, false] => {
            let a = &mut a[..n];
            by_lines!(
                [p, g, a],
                |lo, hi, any| {
                    for (j, ((p, &g), a)) in p[lo..hi]
                        .iter_mut()
                        .zip(&g[lo..hi])
                        .zip(&mut a[lo..hi])
                        .enumerate()
                    {
                        let mut s = [*a, z, z];
                        olds[j & 31] = *p;
                        let mark = f(lo + j, p, g, &mut s);
                        marks[j & 31] = mark;
                        any |= mark;
                        *a = s[0];
                    }
                },
                [&a[lo..hi], none, none]
            )
        }
        [true, true, false] => {
            let (a, b) = (&mut a[..n], &mut b[..n]);
            by_lines!(
                [p, g, a, b],
                |lo, hi, any| {
                    for (j, ((p, &g), (a, b))) in p[lo..hi]
                        .iter_mut()
                        .zip(&g[lo..hi])
                        .zip(a[lo..hi].iter_mut().zip(&mut b[lo..hi]))
                        .enumerate()
                    {
                        let mut s = [*a, *b, z];
                        olds[j & 31] = *p;
                        let mark = f(lo + j, p, g, &mut s);
                        marks[j & 31] = mark;
                        any |= mark;
                        *a = s[0];
                        *b = s[1];
                    }
                },
                [&a[lo..hi], &b[lo..hi], none]
            )
        }
        [true, false, true] => {
            let (a, c) = (&mut a[..n], &mut c[..n]);
            by_lines!(
                [p, g, a, c],
                |lo, hi, any| {
                    for (j, ((p, &g), (a, c))) in p[lo..hi]
                        .iter_mut()
                        .zip(&g[lo..hi])
                        .zip(a[lo..hi].iter_mut().zip(&mut c[lo..hi]))
                        .enumerate()
                    {
                        let mut s = [*a, z, *c];
                        olds[j & 31] = *p;
                        let mark = f(lo + j, p, g, &mut s);
                        marks[j & 31] = mark;
                        any |= mark;
                        *a = s[0];
                        *c = s[2];
                    }
                },
                [&a[lo..hi], none, &c[lo..hi]]
            )
        }
        [true, true, true] => {
            let (a, b, c) = (&mut a[..n], &mut b[..n], &mut c[..n]);
            by_lines!(
                [p, g, a, b, c],
                |lo, hi, any| {
                    for (j, ((p, &g), ((a, b), c))) in p[lo..hi]
                        .iter_mut()
                        .zip(&g[lo..hi])
                        .zip(a[lo..hi].iter_mut().zip(&mut b[lo..hi]).zip(&mut c[lo..hi]))
                        .enumerate()
                    {
                        let mut s = [*a, *b, *c];
                        olds[j & 31] = *p;
                        let mark = f(lo + j, p, g, &mut s);
                        marks[j & 31] = mark;
                        any |= mark;
                        *a = s[0];
                        *b = s[1];
                        *c = s[2];
                    }
                },
                [&a[lo..hi], &b[lo..hi], &c[lo..hi]]
            )
        }
        _ => {
            let st = [&mut **a, &mut **b, &mut **c];
            for i in 0..n {
                let mut s = [z; 3];
                for j in 0..3 {
                    if used[j] {
                        s[j] = st[j][i];
                    }
                }
                olds[0] = p[i];
                let mark = f(i, &mut p[i], g[i], &mut s);
                marks[0] = mark;
                for j in 0..3 {
                    if used[j] {
                        st[j][i] = s[j];
                    }
                }
                let one = |j: usize| if used[j] { &st[j][i..=i] } else { none };
                line_done.line_done(
                    i,
                    mark,
                    &marks[..1],
                    &olds[..1],
                    &p[i..=i],
                    &g[i..=i],
                    [one(0), one(1), one(2)],
                );
            }
        }
    }
}

/// The apply loops without a pull or tracking: the base's update on every
/// entry (`full`), a frozen block's state step, or a scored selection by a
/// decider's rule without decay of the rest, each taking `map(g)` (the
/// clipping's map of g, or the identity); `None` when none of them applies.
#[inline(always)]
fn hot_paths<F: Filter, B: Base, T: Scalar>(
    ctx: &Ctx<'_, F, B, T>,
    c: B::Coef<T>,
    v: &mut View<'_, T>,
    keys: &[u64],
    dec: Option<Decider>,
    full: bool,
    map: impl Fn(T) -> T + Copy,
) -> Option<(usize, usize, usize)> {
    let c = &c;
    let used = ctx.used;
    let base = ctx.base;
    if dec.is_none() && full {
        // Hot path: the base's update on every entry. The closure owns
        // a copy of the constants: borrowing them (their address also
        // reaches the other paths' calls) left every flag of the base
        // (decoupled, AMSGrad, lerp's form) loaded and applied as a
        // mask per entry, with a masked gather for AMSGrad's slot; owned,
        // the loop is the plain update (AdamW's update pass on 3.8M
        // entries, 1 thread: 1.7 -> 1.1 ms; docs/performance-log.md).
        let c = *c;
        if B::ROOTED {
            rooted::update_chunk(base, c, v, used, true, map);
        } else {
            for_each_entry(v, used, move |_, p, g, s| {
                *p = base.update(&c, *p, map(g), s)
            });
        }
        return Some((v.len(), 0, 0));
    }
    if dec.is_none() && !ctx.scope_all {
        // Frozen block: state only (the constants owned, as above).
        let c = *c;
        if B::ROOTED {
            rooted::update_chunk(base, c, v, used, false, map);
        } else {
            for_each_entry(v, used, move |_, p, g, s| {
                base.update(&c, *p, map(g), s);
            });
        }
        return Some((0, 0, 0));
    }
    if !ctx.scope_all {
        if let Some(d) = dec {
            // Scored selection without a pull, tracking or decay of the
            // unselected entries: a small loop body the compiler inlines
            // (the general loop below is not inlined into every buffer
            // pattern), with a branch-free select of the new value.
            // The decider as a rule on (index, key): no count carried
            // from entry to entry, so the loop vectorises.
            let keys = &keys[..v.len()];
            let rule = d.index_rule(keys);
            let c = *c;
            let mut selected = 0usize;
            for_each_entry(v, used, |i, p, g, s| {
                let pn = base.update(&c, *p, map(g), s);
                // `get`, not an index: the bounds check's panic
                // branch kept this loop one entry at a time.
                let sel = keys.get(i).is_some_and(|&key| rule.take(i, key));
                selected += sel as usize;
                *p = if sel { pn } else { *p };
            });
            return Some((selected, 0, 0));
        }
    }
    None
}

wide_simd_fn! {
    fn apply_chunk / apply_chunk_wide [F: Filter, B: Base, T: Scalar] (
        ctx: &Ctx<'_, F, B, T>,
        c: B::Coef<T>,
        v: &mut View<'_, T>,
        keys: &[u64],
        dec: Option<Decider>,
        full: bool,
        track: &mut [u8],
    ) -> (usize, usize, usize) {
        let mut dec = dec;
        // Without a pull or tracking, the transform is a map of g alone,
        // taken in registers by the hot loops (one instance per kind of
        // map, so the identity's loops are what they were without it).
        if v.pre.is_empty() && !ctx.track {
            let hot = match ctx.prep.map() {
                None => hot_paths(ctx, c, v, keys, dec, full, |g| g),
                Some(GradMap::Scale(s)) => hot_paths(ctx, c, v, keys, dec, full, move |g| g * s),
                Some(GradMap::ClampScale(cl, s)) => {
                    hot_paths(ctx, c, v, keys, dec, full, move |g: T| g.max(-cl).min(cl) * s)
                }
            };
            if let Some(counts) = hot {
                return counts;
            }
        }
        let c = &c;
        let used = ctx.used;
        let base = ctx.base;
        let pre = v.pre;
        let has_pre = !pre.is_empty();
        let scope_all = ctx.scope_all;
        let tracking = ctx.track;
        let prep = ctx.prep;
        let mut selected = 0;
        let mut overlap = 0;
        let mut newly = 0;
        for_each_entry(v, used, |i, pr, g, s| {
            let p = *pr;
            let g = prep.apply(g, p, if has_pre { pre[i] } else { T::zero() });
            let pn = base.update(c, p, g, s);
            let sel = match &mut dec {
                Some(d) => d.take(keys[i]),
                None => full,
            };
            if sel {
                *pr = pn;
                selected += 1;
            } else if scope_all {
                *pr = base.decay_only(c, p);
            }
            if tracking {
                let old = track[i];
                if sel {
                    overlap += (old & 1) as usize;
                    newly += ((old & 2) == 0) as usize;
                    track[i] = 3;
                } else {
                    track[i] = old & 2;
                }
            }
        });
        (selected, overlap, newly)
    }
}
