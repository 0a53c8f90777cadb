//! What the training loop needs from a model and from an optimizer.
//!
//! The loop is written against two small traits so that the model (tape
//! forward/backward, Hugging Face checkpoints) and the optimizer algebra plug
//! in through thin adapters ([`super::llama`]):
//!
//! - [`TrainableModel`]: mean cross-entropy and its gradient by parameter
//!   name, logits without gradients, save/load of the parameters;
//! - [`TrainOptimizer`]: one step at a given learning rate, state save/load.

use ndarray::{Array2, Array3};
use std::path::Path;

use super::TrainError;
use crate::data::{LanguageModel, TokenBatch};
use crate::optim::FiniteGrads;
use crate::ParamStore;

/// A model the loop can train: parameters live outside, in a `ParamStore`.
pub trait TrainableModel: Sync {
    /// Mean next-token cross-entropy over the batch's targets and its
    /// gradient with respect to every parameter (same names and shapes).
    fn loss_and_grads(
        &self,
        params: &ParamStore<f32>,
        batch: &TokenBatch,
    ) -> Result<(f32, ParamStore<f32>), TrainError>;

    /// Logits [batch, seq, vocab], no gradients.
    fn logits(&self, params: &ParamStore<f32>, input_ids: &Array2<u32>) -> Array3<f32>;

    /// Greedy continuation (see [`LanguageModel::greedy`]); models with a
    /// key/value cache override it.
    fn greedy(
        &self,
        params: &ParamStore<f32>,
        prompts: &[Vec<u32>],
        max_new: usize,
        stop: Option<u32>,
    ) -> Vec<Vec<u32>> {
        Bound::plain(self, params).greedy(prompts, max_new, stop)
    }

    /// Vocabulary size.
    fn vocab_size(&self) -> usize;

    /// Saves the parameters (with whatever configuration the format needs)
    /// into directory `dir`.
    fn save(&self, params: &ParamStore<f32>, dir: &Path) -> Result<(), TrainError>;

    /// Loads parameters saved by [`TrainableModel::save`].
    fn load(&self, dir: &Path) -> Result<ParamStore<f32>, TrainError>;
}

/// An optimizer the loop can drive.
pub trait TrainOptimizer {
    /// One update of `params` with `grads` (checked finite by the loop) at
    /// learning rate `lr`.
    fn step(
        &mut self,
        params: &mut ParamStore<f32>,
        grads: FiniteGrads<'_, f32>,
        lr: f64,
    ) -> Result<(), TrainError>;

    /// Writes the whole state (buffers, step counters, RNG) to `path`.
    fn save_state(&self, path: &Path) -> Result<(), TrainError>;

    /// Restores a state written by [`TrainOptimizer::save_state`].
    fn load_state(&mut self, path: &Path) -> Result<(), TrainError>;
}

/// A model bound to its parameters: a [`LanguageModel`] for the evaluators.
pub struct Bound<'a, M: ?Sized> {
    model: &'a M,
    params: &'a ParamStore<f32>,
    plain: bool,
}

impl<'a, M: TrainableModel + ?Sized> Bound<'a, M> {
    /// Binds `model` to `params`.
    pub fn new(model: &'a M, params: &'a ParamStore<f32>) -> Self {
        Self {
            model,
            params,
            plain: false,
        }
    }

    /// Binds, always using the default (logits-based) greedy decoding.
    fn plain(model: &'a M, params: &'a ParamStore<f32>) -> Self {
        Self {
            model,
            params,
            plain: true,
        }
    }
}

impl<M: TrainableModel + ?Sized> LanguageModel for Bound<'_, M> {
    fn logits(&self, input_ids: &Array2<u32>) -> Array3<f32> {
        self.model.logits(self.params, input_ids)
    }

    fn greedy(&self, prompts: &[Vec<u32>], max_new: usize, stop: Option<u32>) -> Vec<Vec<u32>> {
        if self.plain {
            crate::data::eval::greedy_by_logits(self, prompts, max_new, stop)
        } else {
            self.model.greedy(self.params, prompts, max_new, stop)
        }
    }
}
