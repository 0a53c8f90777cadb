//! The Llama-style transformer: configuration, parameters (Hugging Face
//! names), forward and backward on the tape, Hugging Face checkpoints.

pub mod config;
pub mod forward;

pub use config::LlamaConfig;
