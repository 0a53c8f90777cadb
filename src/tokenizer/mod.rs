//! Tokenizers behind one trait: a built-in byte-level tokenizer
//! ([`ByteTokenizer`]) and Hugging Face `tokenizer.json` files
//! ([`HfTokenizer`], through the `tokenizers` crate).
//!
//! `encode(text)` never adds special tokens (callers prepend
//! [`Tokenizer::bos_id`] if they want one); `decode(ids)` skips special
//! tokens and rejects ids outside the vocabulary.

pub mod byte;
pub mod hf;

pub use byte::ByteTokenizer;
pub use hf::HfTokenizer;

/// Errors of tokenizers (bad files, ids out of range).
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The tokenizer file could not be read or parsed.
    #[error("cannot load tokenizer {path}: {message}")]
    Load {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// Encoding failed inside the tokenizer.
    #[error("cannot encode text: {0}")]
    Encode(String),
    /// Decoding failed inside the tokenizer.
    #[error("cannot decode ids: {0}")]
    Decode(String),
    /// An id is not in the vocabulary.
    #[error("token id {id} is out of range (vocabulary size {vocab})")]
    IdOutOfRange {
        /// The id.
        id: u32,
        /// The vocabulary size.
        vocab: usize,
    },
    /// A named special token is not in the vocabulary.
    #[error("special token {0:?} is not in the tokenizer's vocabulary")]
    UnknownSpecial(String),
}

/// Text ↔ token ids.
pub trait Tokenizer: Send + Sync {
    /// Token ids of `text` (no special tokens added).
    fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError>;
    /// Text of `ids` (special tokens skipped); ids ≥ [`Tokenizer::vocab_size`]
    /// are an error.
    fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError>;
    /// Number of ids (including special tokens).
    fn vocab_size(&self) -> usize;
    /// Beginning-of-sequence id, if the tokenizer has one.
    fn bos_id(&self) -> Option<u32>;
    /// End-of-sequence id, if the tokenizer has one.
    fn eos_id(&self) -> Option<u32>;
}

/// Checks that every id is below `vocab`.
pub(crate) fn check_ids(ids: &[u32], vocab: usize) -> Result<(), TokenizerError> {
    match ids.iter().find(|&&id| id as usize >= vocab) {
        Some(&id) => Err(TokenizerError::IdOutOfRange { id, vocab }),
        None => Ok(()),
    }
}
