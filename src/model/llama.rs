//! A Llama model as a value: architecture, Hugging Face extras and named
//! parameters, loaded from and saved to a Hugging Face model directory
//! (`config.json` + `model.safetensors`).

use std::path::{Path, PathBuf};

use super::hf_config::{HfConfig, HfConfigError, HfExtras};
use super::init::init_params;
use super::safetensors_io::{load_params, params_to_tensors, write_tensors, SafetensorsError};
use super::LlamaConfig;
use crate::{ParamStore, Scalar};

/// File name of the configuration in a model directory.
pub const CONFIG_FILE: &str = "config.json";
/// File name of the weights in a model directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// Errors loading or saving a model directory.
#[derive(Debug, thiserror::Error)]
pub enum ModelIoError {
    /// `config.json` is missing, unreadable or rejected.
    #[error("model config: {0}")]
    Config(#[from] HfConfigError),
    /// `model.safetensors` is missing, corrupt or does not match the config.
    #[error("model weights: {0}")]
    Weights(#[from] SafetensorsError),
    /// The directory holds sharded weights, which are not supported.
    #[error(
        "{0}: sharded checkpoints (model.safetensors.index.json) are not supported; \
         save the model as a single model.safetensors"
    )]
    Sharded(PathBuf),
    /// Writing the config failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A Llama model: configuration and parameters (Hugging Face names).
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaModel<T> {
    /// The architecture.
    pub config: LlamaConfig,
    /// Initialisation scale and special token ids from `config.json`.
    pub extras: HfExtras,
    /// The parameters, in [`LlamaConfig::param_shapes`] order.
    pub params: ParamStore<T>,
}

impl<T: Scalar> LlamaModel<T> {
    /// A randomly initialised model (see [`crate::model::init`]),
    /// deterministic in `seed`. The config and extras are validated first.
    pub fn init(config: LlamaConfig, extras: HfExtras, seed: u64) -> Result<Self, HfConfigError> {
        HfConfig {
            model: config.clone(),
            extras: extras.clone(),
        }
        .validate()?;
        let params = init_params(&config, &extras, seed);
        Ok(Self {
            config,
            extras,
            params,
        })
    }

    /// The config and extras as one [`HfConfig`].
    pub fn hf_config(&self) -> HfConfig {
        HfConfig {
            model: self.config.clone(),
            extras: self.extras.clone(),
        }
    }

    /// Loads `dir/config.json` and `dir/model.safetensors` (any of BF16, F16,
    /// F32, F64 weights, converted to `T`).
    pub fn load(dir: &Path) -> Result<Self, ModelIoError> {
        let hf = HfConfig::from_file(&dir.join(CONFIG_FILE))?;
        let weights = dir.join(WEIGHTS_FILE);
        let index = dir.join("model.safetensors.index.json");
        if !weights.exists() && index.exists() {
            return Err(ModelIoError::Sharded(index));
        }
        let params = load_params(&weights, &hf.model)?;
        Ok(Self {
            config: hf.model,
            extras: hf.extras,
            params,
        })
    }

    /// Saves `dir/config.json` and `dir/model.safetensors` (f32), each file
    /// atomically, in the form transformers'
    /// `LlamaForCausalLM.from_pretrained(dir)` loads. The weights are written
    /// first, so a directory with a config always has complete weights.
    pub fn save(&self, dir: &Path) -> Result<(), ModelIoError> {
        self.hf_config().validate()?;
        let tensors = params_to_tensors(&self.config, &self.params, "")?;
        write_tensors(&dir.join(WEIGHTS_FILE), &tensors)?;
        let path = dir.join(CONFIG_FILE);
        crate::io::write_atomic(&path, self.hf_config().to_json_string().as_bytes())
            .map_err(|source| ModelIoError::Write { path, source })
    }

    /// The same model with parameters converted to another element type.
    pub fn cast<U: Scalar>(&self) -> LlamaModel<U> {
        LlamaModel {
            config: self.config.clone(),
            extras: self.extras.clone(),
            params: self.params.cast(),
        }
    }
}
