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
use crate::experiments::forgetting::{
    Backend, MethodConfig, ModelSize, PhaseConfig, TokenizerInfo,
};
use crate::model::generate::{generate_with, Decoder, Sampling};
use crate::model::{HfExtras, LlamaConfig, LlamaModel};
use crate::optim::spec::BaseSpec;
use crate::optim::{DynOptimizer, FiniteGrads, OptimizerSpec, Schedule};
use crate::tokenizer::ByteTokenizer;
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
        let out = crate::model::forward::loss_and_grads(&self.config, params, &b)
            .map_err(|e| TrainError::Model(e.to_string()))?;
        Ok((out.loss, out.grads))
    }

    fn logits(&self, params: &ParamStore<f32>, input_ids: &Array2<u32>) -> Array3<f32> {
        crate::model::forward::logits(&self.config, params, input_ids)
            .expect("token ids checked by the caller and parameters match the configuration")
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

/// The optimizer algebra's runtime optimizer as a [`TrainOptimizer`]: the
/// learning rate of every step is set before the step (the optimizer's own
/// schedule stays constant).
pub struct AlgebraOptimizer {
    inner: Box<dyn DynOptimizer<f32>>,
}

impl AlgebraOptimizer {
    /// Wraps a built optimizer.
    pub fn new(inner: Box<dyn DynOptimizer<f32>>) -> Self {
        Self { inner }
    }

    /// "filter+base", e.g. "momentum+adamw".
    pub fn describe(&self) -> String {
        self.inner.describe()
    }
}

impl TrainOptimizer for AlgebraOptimizer {
    fn step(
        &mut self,
        params: &mut ParamStore<f32>,
        grads: FiniteGrads<'_, f32>,
        lr: f64,
    ) -> Result<(), TrainError> {
        self.inner
            .set_lr(lr)
            .map_err(|e| TrainError::Optimizer(e.to_string()))?;
        self.inner
            .step_finite(params, grads)
            .map(|_| ())
            .map_err(|e| TrainError::Optimizer(e.to_string()))
    }

    fn save_state(&self, path: &Path) -> Result<(), TrainError> {
        self.inner
            .save(path)
            .map_err(|e| TrainError::Optimizer(format!("saving {}: {e}", path.display())))
    }

    fn load_state(&mut self, path: &Path) -> Result<(), TrainError> {
        self.inner
            .load(path)
            .map_err(|e| TrainError::Optimizer(format!("loading {}: {e}", path.display())))
    }
}

/// The optimizer spec of an experiment method: the builder's method (Default
/// FT `adam` is AdamW), with the method's α or λ, weight decay (the method's,
/// else the phase's), gradient clipping by global norm (the phase's, 0 = off)
/// and a seed for the random filters derived from the phase's seed.
pub fn method_spec(
    method: &MethodConfig,
    phase: &PhaseConfig,
) -> Result<OptimizerSpec, TrainError> {
    let name = if method.name == "adam" {
        "adamw"
    } else {
        method.name.as_str()
    };
    let knob = if name.ends_with("_reg") {
        method.lambda.unwrap_or(1e-3)
    } else {
        method.alpha.unwrap_or(0.15)
    };
    let seed = phase.seed.wrapping_mul(0x9E37_79B9).wrapping_add(17);
    let mut spec = OptimizerSpec::method(name, phase.lr, knob, seed)
        .map_err(|e| TrainError::Optimizer(e.to_string()))?;
    let wd = method.weight_decay.unwrap_or(phase.weight_decay);
    match &mut spec.base {
        BaseSpec::Adamw(p) => p.weight_decay = wd,
        BaseSpec::Lion(p) => p.weight_decay = wd,
        _ => {}
    }
    if phase.grad_clip != 0.0 {
        spec.clip.max_norm = Some(phase.grad_clip);
    }
    Ok(spec)
}

/// Builds the optimizer of `method` for `phase` over the tensors of
/// `reference` (also the θ_pre of the L1/L2 pulls).
pub fn build_optimizer(
    method: &MethodConfig,
    phase: &PhaseConfig,
    reference: &ParamStore<f32>,
) -> Result<Box<dyn TrainOptimizer>, TrainError> {
    let spec = method_spec(method, phase)?;
    let inner = spec
        .build(reference)
        .map_err(|e| TrainError::Optimizer(format!("{}: {e}", method.name)))?;
    Ok(Box::new(AlgebraOptimizer::new(inner)))
}

/// η_t: linear warmup over `phase.warmup_steps`, then cosine from `peak` to
/// `phase.min_lr_ratio · peak` at `phase.steps` (the optimizer module's
/// `Schedule::WarmupCosine`).
pub fn warmup_cosine(phase: &PhaseConfig, peak: f64) -> Box<dyn Fn(u64) -> f64 + Sync> {
    let s = Schedule::WarmupCosine {
        warmup: phase.warmup_steps,
        total: phase.steps,
        floor: peak * phase.min_lr_ratio,
    };
    Box::new(move |t| s.lr(t, peak))
}

/// The forgetting experiment on the crate's Llama model, byte-level
/// tokenizer and optimizer algebra.
#[derive(Clone, Copy, Debug, Default)]
pub struct LlamaBackend;

impl Backend for LlamaBackend {
    fn tokenizer(&self) -> TokenizerInfo {
        TokenizerInfo {
            encoder: Box::new(|s: &str| s.bytes().map(u32::from).collect::<Vec<u32>>()),
            special: SpecialTokens {
                bos: Some(ByteTokenizer::BOS),
                eos: ByteTokenizer::EOS,
                pad: ByteTokenizer::PAD,
            },
            vocab_size: ByteTokenizer::VOCAB_SIZE,
        }
    }

    fn model(
        &self,
        size: &ModelSize,
        vocab_size: usize,
    ) -> Result<(Box<dyn TrainableModel>, ParamStore<f32>), TrainError> {
        let m = LlamaTrainModel {
            config: LlamaConfig {
                vocab_size,
                hidden_size: size.hidden_size,
                intermediate_size: size.intermediate_size,
                num_hidden_layers: size.num_hidden_layers,
                num_attention_heads: size.num_attention_heads,
                num_key_value_heads: size.num_key_value_heads,
                head_dim: size.hidden_size / size.num_attention_heads,
                rms_norm_eps: 1e-5,
                rope_theta: 10000.0,
                tie_word_embeddings: size.tie_word_embeddings,
                max_position_embeddings: size.max_position_embeddings,
            },
            extras: HfExtras {
                bos_token_id: Some(ByteTokenizer::BOS),
                eos_token_ids: vec![ByteTokenizer::EOS],
                pad_token_id: Some(ByteTokenizer::PAD),
                ..HfExtras::default()
            },
        };
        let p = m.init(size.seed)?;
        Ok((Box::new(m), p))
    }

    fn optimizer(
        &self,
        method: &MethodConfig,
        phase: &PhaseConfig,
        reference: &ParamStore<f32>,
    ) -> Result<Box<dyn TrainOptimizer>, TrainError> {
        build_optimizer(method, phase, reference)
    }

    fn schedule(&self, phase: &PhaseConfig, lr: f64) -> Box<dyn Fn(u64) -> f64 + Sync> {
        warmup_cosine(phase, lr)
    }
}
