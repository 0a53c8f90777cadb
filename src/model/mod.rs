//! The Llama-style transformer: configuration, parameters (Hugging Face
//! names), forward and backward on the tape, Hugging Face checkpoints.

pub mod config;
pub mod forward;
pub mod generate;
pub mod hf_config;
pub mod init;
pub mod llama;
pub mod safetensors_io;
pub mod shard;

pub use config::LlamaConfig;
pub use generate::{
    generate_greedy, generate_greedy_batch, Decoder, GenerateError, KvCache, Sampling,
};
pub use hf_config::{HfConfig, HfConfigError, HfExtras};
pub use llama::{LlamaModel, ModelIoError};
pub use safetensors_io::{SafetensorsError, SafetensorsFile};
