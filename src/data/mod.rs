//! Built-in data: generated, deterministic from a seed, nothing downloaded.
//!
//! - [`facts`]: a world of generated people with a city and a job each,
//!   written as sentences with several paraphrase templates (the
//!   pre-training corpus that carries checkable knowledge), with held-out
//!   sentences, greedy-recall probes and multiple-choice questions;
//! - [`task`]: the fine-tuning task in another domain (string reversal,
//!   letter shift or addition, in a question/answer format);
//! - [`tokens`]: token batches (labels −100 where no loss is taken) and the
//!   samplers, a pure function of (seed, batch index);
//! - [`eval`]: held-out loss, exact match under greedy decoding, multiple
//!   choice by log-likelihood;
//! - [`text_file`]: a user's text file for `mofo train`;
//! - [`rng`]: seed derivation.

use std::path::PathBuf;

pub mod eval;
pub mod facts;
pub mod rng;
pub mod task;
pub mod text_file;
pub mod tokens;

pub use eval::{
    exact_match, exact_match_decoding, mean_loss, multiple_choice, ChoiceItem, LanguageModel,
};
pub use facts::{KnowledgeBase, KnowledgeConfig, Probe, Relation};
pub use task::{QaExample, Task, TaskConfig, TaskKind};
pub use text_file::{load_text_file, TextData};
pub use tokens::{
    BatchSource, Encode, LmBatches, QaBatches, QaTokens, SpecialTokens, StreamBatches, TokenBatch,
    IGNORE,
};

/// Errors of the data layer.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A configuration value is out of range.
    #[error("invalid data configuration: {0}")]
    Config(String),
    /// A collection that must not be empty is.
    #[error("no {0} to train on")]
    Empty(String),
    /// Something is shorter than it must be.
    #[error("{what} must be at least {need} tokens, got {got}")]
    TooShort {
        /// What is too short.
        what: String,
        /// Required length.
        need: usize,
        /// Actual length.
        got: usize,
    },
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A data file is empty (or only whitespace).
    #[error("{0} is empty: nothing to train on")]
    EmptyFile(PathBuf),
    /// A data file is not UTF-8 text.
    #[error("{path} is not UTF-8 text (invalid byte sequence at byte {offset})")]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// The tokenizer failed on a data file.
    #[error("{path}: the tokenizer failed: {reason}")]
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// The tokenizer's message.
        reason: String,
    },
    /// A data file is shorter than one training sequence.
    #[error("{path} has {tokens} tokens, fewer than one sequence of {seq_len}: use a longer file or a smaller --seq-len")]
    FileTooShort {
        /// The file.
        path: PathBuf,
        /// Tokens in the file.
        tokens: usize,
        /// Sequence length asked for.
        seq_len: usize,
    },
    /// The tokenizer produced an id the model cannot embed.
    #[error("{path}: token {position} has id {id}, outside the model's vocabulary of {vocab_size} (tokenizer and model do not match)")]
    TokenOutOfVocab {
        /// The file.
        path: PathBuf,
        /// Position of the token.
        position: usize,
        /// The id.
        id: u32,
        /// The model's vocabulary size.
        vocab_size: usize,
    },
}
