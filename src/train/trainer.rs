//! The training loop.
//!
//! Step t = 1..=steps (learning rate η_t from the schedule):
//!
//! ```text
//! for micro = 0..A:   (L_μ, g_μ) = loss_and_grads(θ, batch[(t−1)·A + micro])
//! L_t = (1/A) Σ L_μ,   g_t = (1/A) Σ g_μ                    (gradient accumulation)
//! if L_t or g_t is not finite: stop with an error, or skip the step and count it
//! θ ← optimizer.step(θ, g_t, η_t)
//! ```
//!
//! Batches are a pure function of (seed, batch index), the optimizer saves
//! its whole state and the loop state is saved with every checkpoint, so a
//! run resumed from a checkpoint is bit-identical to an uninterrupted one.
//! Every `eval_every` steps (and at the end) an evaluation callback runs;
//! every `checkpoint_every` steps (and at the end) a checkpoint is written.
//! `TrainState::seconds` counts the training steps only (not evaluation or
//! checkpoints).

use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use super::checkpoint::{latest_checkpoint, load_checkpoint, save_checkpoint, TrainState};
use super::drift::first_non_finite;
use super::metrics::MetricsLog;
use super::model::{TrainOptimizer, TrainableModel};
use super::progress::Progress;
use super::TrainError;
use crate::data::BatchSource;
use crate::optim::FiniteGrads;
use crate::ParamStore;

/// What to do when a loss or a gradient is NaN or infinite.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum NonFinitePolicy {
    /// Stop with an error (the last checkpoint stays as it was).
    #[default]
    Stop,
    /// Skip the update, count it, and go on (up to a limit).
    Skip,
}

/// Options of the loop.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Total number of steps.
    pub steps: u64,
    /// Micro-batches per step (gradient accumulation, ≥ 1).
    pub grad_accum: u64,
    /// Evaluate every this many steps (0: only at the end).
    pub eval_every: u64,
    /// Checkpoint every this many steps (0: only at the end); needs `out_dir`.
    pub checkpoint_every: u64,
    /// Write a metrics line every this many steps (≥ 1).
    pub log_every: u64,
    /// Non-finite loss or gradient policy.
    pub nonfinite: NonFinitePolicy,
    /// Most steps that may be skipped before stopping.
    pub max_skipped: u64,
    /// Show a progress bar (only on a terminal).
    pub progress: bool,
    /// Label of the progress bar.
    pub label: String,
    /// Where metrics.jsonl and checkpoints go (None: nothing written).
    pub out_dir: Option<PathBuf>,
    /// Checkpoints kept on disk.
    pub keep_checkpoints: usize,
    /// Stop after this step as if the process were killed (no final
    /// evaluation or checkpoint beyond the periodic ones); for tests and
    /// time-boxed runs.
    pub stop_after: Option<u64>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            steps: 100,
            grad_accum: 1,
            eval_every: 0,
            checkpoint_every: 0,
            log_every: 1,
            nonfinite: NonFinitePolicy::Stop,
            max_skipped: 10,
            progress: false,
            label: "train".into(),
            out_dir: None,
            keep_checkpoints: 2,
            stop_after: None,
        }
    }
}

/// The evaluation callback: metrics of the parameters after a step.
pub type EvalFn<'a> =
    dyn FnMut(u64, &ParamStore<f32>) -> Result<BTreeMap<String, f64>, TrainError> + 'a;

/// A training run: model, data and learning-rate schedule.
pub struct Trainer<'a> {
    /// The model.
    pub model: &'a dyn TrainableModel,
    /// The training batches.
    pub data: &'a dyn BatchSource,
    /// Learning rate of step t (t = 1, 2, ...).
    pub lr: &'a dyn Fn(u64) -> f64,
    /// Options.
    pub options: TrainOptions,
}

impl Trainer<'_> {
    fn check(&self) -> Result<(), TrainError> {
        let o = &self.options;
        if o.grad_accum == 0 || o.log_every == 0 {
            return Err(TrainError::Config(
                "gradient accumulation and log interval must be ≥ 1".into(),
            ));
        }
        if o.checkpoint_every > 0 && o.out_dir.is_none() {
            return Err(TrainError::Config(
                "checkpoints need an output directory".into(),
            ));
        }
        Ok(())
    }

    /// Restores the latest checkpoint of `out_dir` into `params` and
    /// `optimizer`; returns its loop state, or None when there is none.
    pub fn resume(
        &self,
        params: &mut ParamStore<f32>,
        optimizer: &mut dyn TrainOptimizer,
    ) -> Result<Option<TrainState>, TrainError> {
        let Some(out) = &self.options.out_dir else {
            return Err(TrainError::Config(
                "resuming needs an output directory".into(),
            ));
        };
        let Some(dir) = latest_checkpoint(out)? else {
            return Ok(None);
        };
        let (loaded, state) = load_checkpoint(&dir, self.model, optimizer)?;
        params
            .check_same_layout(&loaded)
            .map_err(|e| TrainError::Checkpoint {
                path: dir.clone(),
                reason: format!("model does not match this run: {e}"),
            })?;
        if state.step > self.options.steps {
            return Err(TrainError::Checkpoint {
                path: dir,
                reason: format!(
                    "is at step {} but the run has only {} steps",
                    state.step, self.options.steps
                ),
            });
        }
        *params = loaded;
        Ok(Some(state))
    }

    /// Trains `params` from `state.step` to `options.steps`.
    pub fn run(
        &self,
        params: &mut ParamStore<f32>,
        optimizer: &mut dyn TrainOptimizer,
        state: &mut TrainState,
        mut eval: Option<&mut EvalFn<'_>>,
    ) -> Result<(), TrainError> {
        self.check()?;
        let o = &self.options;
        let mut log = match &o.out_dir {
            Some(d) => Some(MetricsLog::open(&d.join("metrics.jsonl"), state.step)?),
            None => None,
        };
        let bar = Progress::new(&o.label, o.steps, state.step, o.progress);
        while state.step < o.steps {
            let started = Instant::now();
            let step = state.step + 1;
            let lr = (self.lr)(step);
            let mut loss_sum = 0.0f64;
            let mut grads: Option<ParamStore<f32>> = None;
            for micro in 0..o.grad_accum {
                let batch = self.data.batch((step - 1) * o.grad_accum + micro);
                let (loss, g) = self.model.loss_and_grads(params, &batch)?;
                loss_sum += loss as f64;
                match &mut grads {
                    None => grads = Some(g),
                    Some(acc) => {
                        for (a, b) in acc.iter_mut().zip(g.iter()) {
                            a.value += &b.value;
                        }
                    }
                }
            }
            let mut grads = grads.expect("grad_accum ≥ 1");
            if o.grad_accum > 1 {
                let s = 1.0 / o.grad_accum as f32;
                for p in grads.iter_mut() {
                    p.value.mapv_inplace(|x| x * s);
                }
            }
            let loss = loss_sum / o.grad_accum as f64;
            // The one check of the gradients: the optimizer is handed the
            // proof and does not read them again to check them.
            let checked = if loss.is_finite() {
                FiniteGrads::check(&grads).map_err(|e| format!("gradient of {}", e.name))
            } else {
                Err("loss".to_string())
            };
            state.step = step;
            match checked {
                Err(what) if o.nonfinite == NonFinitePolicy::Stop => {
                    bar.finish();
                    return Err(TrainError::NonFinite { what, step });
                }
                Err(_) => {
                    state.skipped += 1;
                    state.losses.push(None);
                    if state.skipped > o.max_skipped {
                        bar.finish();
                        return Err(TrainError::TooManySkipped {
                            skipped: state.skipped,
                            limit: o.max_skipped,
                        });
                    }
                }
                Ok(finite) => {
                    optimizer.step(params, finite, lr)?;
                    if let Some(n) = first_non_finite(params) {
                        bar.finish();
                        return Err(TrainError::NonFinite {
                            what: format!("parameter {n} after the update"),
                            step,
                        });
                    }
                    state.losses.push(Some(loss));
                }
            }
            state.seconds += started.elapsed().as_secs_f64();
            if let Some(log) = &mut log {
                if step.is_multiple_of(o.log_every) || step == o.steps {
                    log.write(&json!({
                        "step": step,
                        "loss": state.losses.last().copied().flatten(),
                        "lr": lr,
                        "skipped": state.skipped,
                        "elapsed_s": state.seconds,
                    }))?;
                }
            }
            bar.update(step, format!("loss {loss:.4}"));
            let last = step == o.steps;
            if let Some(ev) = eval.as_deref_mut() {
                if (o.eval_every > 0 && step.is_multiple_of(o.eval_every)) || last {
                    let m = ev(step, params)?;
                    if let Some(log) = &mut log {
                        log.write(&json!({ "step": step, "eval": m }))?;
                    }
                    state.evals.push((step, m));
                }
            }
            if let Some(out) = &o.out_dir {
                if (o.checkpoint_every > 0 && step.is_multiple_of(o.checkpoint_every)) || last {
                    save_checkpoint(
                        out,
                        self.model,
                        params,
                        optimizer,
                        state,
                        o.keep_checkpoints,
                    )?;
                }
            }
            if o.stop_after == Some(step) {
                break;
            }
        }
        bar.finish();
        Ok(())
    }
}
