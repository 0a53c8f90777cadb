//! The Llama adapters: the crate's Llama model (tape forward/backward,
//! key/value-cached inference, Hugging Face checkpoints) as a
//! [`TrainableModel`], the optimizer algebra as a [`TrainOptimizer`], and
//! both as the forgetting experiment's [`Backend`].
//!
//! Learning rates: the loop computes η_t with the optimizer module's
//! `Schedule` (linear warmup, then cosine to a floor) and sets it on the
//! optimizer before every step.

use ndarray::{Array2, Array3};
use rayon::prelude::*;
use std::path::Path;

use super::model::{TrainOptimizer, TrainableModel};
use super::TrainError;
use crate::data::{SpecialTokens, TokenBatch};
use crate::experiments::forgetting::{Backend, MethodConfig, ModelSize, PhaseConfig, TokenizerInfo};
use crate::model::generate::{generate_with, Decoder, Sampling};
use crate::model::{HfExtras, LlamaConfig, LlamaModel};
use crate::ParamStore;

/// A Llama architecture to train (parameters are kept outside).
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaTrainModel {
    /// The architecture.
    pub config: LlamaConfig,
    /// Initialisation scale and special tokens written to `config.json`.
    pub extras: HfExtras,
}

impl LlamaTrainModel {
    /// The model of a saved directory: architecture and parameters.
    pub fn load_dir(dir: &Path) -> Result<(Self, ParamStore<f32>), TrainError> {
        let m = LlamaModel::<f32>::load(dir)
            .map_err(|e| TrainError::Model(format!("{}: {e}", dir.display())))?;
        Ok((
            Self {
                config: m.config,
                extras: m.extras,
            },
            m.params,
        ))
    }

    /// Freshly initialised parameters (deterministic in `seed`).
    pub fn init(&self, seed: u64) -> Result<ParamStore<f32>, TrainError> {
        LlamaModel::<f32>::init(self.config.clone(), self.extras.clone(), seed)
            .map(|m| m.params)
            .map_err(|e| TrainError::Model(e.to_string()))
    }

    fn decoder<'a>(&'a self, params: &'a ParamStore<f32>) -> Decoder<'a, f32> {
        Decoder::new(&self.config, params).expect("parameters match the model's configuration")
    }
}

impl TrainableModel for LlamaTrainModel {
    fn loss_and_grads(
        &self,
        params: &ParamStore<f32>,
        batch: &TokenBatch,
    ) -> Result<(f32, ParamStore<f32>), TrainError> {
        let b = crate::model::forward::Batch {
            input_ids: batch.input_ids.clone(),
            labels: Some(batch.labels.clone()),
        };
        let out = crate::model::forward::loss_and_grads(&self.config, params, &b);
        Ok((out.loss, out.grads))
    }

    fn logits(&self, params: &ParamStore<f32>, input_ids: &Array2<u32>) -> Array3<f32> {
        let (b, t) = input_ids.dim();
        let v = self.config.vocab_size;
        let dec = self.decoder(params);
        let rows: Vec<Array2<f32>> = (0..b)
            .into_par_iter()
            .map(|i| {
                let ids: Vec<u32> = input_ids.row(i).to_vec();
                dec.forward(&mut dec.new_cache(), &ids)
                    .expect("token ids and length checked by the caller")
            })
            .collect();
        let mut out = Array3::zeros((b, t, v));
        for (i, r) in rows.iter().enumerate() {
            out.slice_mut(ndarray::s![i, .., ..]).assign(r);
        }
        out
    }

    fn greedy(
        &self,
        params: &ParamStore<f32>,
        prompts: &[Vec<u32>],
        max_new: usize,
        stop: Option<u32>,
    ) -> Vec<Vec<u32>> {
        let dec = self.decoder(params);
        let stops: Vec<u32> = stop.into_iter().collect();
        prompts
            .par_iter()
            .map(|p| {
                let g = generate_with(&dec, p, max_new, &stops, &Sampling::greedy())
                    .expect("prompt checked by the caller");
                let mut t = g.tokens;
                if g.stopped {
                    t.extend(stop);
                }
                t
            })
            .collect()
    }

    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    fn save(&self, params: &ParamStore<f32>, dir: &Path) -> Result<(), TrainError> {
        LlamaModel {
            config: self.config.clone(),
            extras: self.extras.clone(),
            params: params.clone(),
        }
        .save(dir)
        .map_err(|e| TrainError::Model(format!("saving {}: {e}", dir.display())))
    }

    fn load(&self, dir: &Path) -> Result<ParamStore<f32>, TrainError> {
        let (m, p) = Self::load_dir(dir)?;
        if m.config != self.config {
            return Err(TrainError::Model(format!(
                "{} holds a model of another architecture",
                dir.display()
            )));
        }
        Ok(p)
    }
}
