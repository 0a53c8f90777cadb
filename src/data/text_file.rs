//! A user's own text file as training data (`mofo train --data FILE.txt`).
//!
//! The file must be non-empty UTF-8. It is tokenized once; every id must be
//! below the model's vocabulary size; the last `validation_share` of the
//! tokens (at least one window when the file allows it) is kept for the
//! validation loss and the rest is sampled in windows of `seq_len` tokens.

use std::path::{Path, PathBuf};

use super::tokens::{StreamBatches, TokenBatch};
use super::DataError;

/// The tokenized file, split into a training and a validation stream.
#[derive(Clone, Debug)]
pub struct TextData {
    /// Training tokens.
    pub train: Vec<u32>,
    /// Validation tokens (possibly empty).
    pub validation: Vec<u32>,
}

/// Reads and tokenizes `path`, checking everything a user can get wrong.
pub fn load_text_file(
    path: &Path,
    encode: &dyn Fn(&str) -> Result<Vec<u32>, String>,
    vocab_size: usize,
    seq_len: usize,
    validation_share: f64,
) -> Result<TextData, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::Io {
        path: PathBuf::from(path),
        source: e,
    })?;
    text_data_from_bytes(bytes, path, encode, vocab_size, seq_len, validation_share)
}

/// [`load_text_file`] on the bytes of a file already read (`path` names it
/// in messages only).
pub fn text_data_from_bytes(
    bytes: Vec<u8>,
    path: &Path,
    encode: &dyn Fn(&str) -> Result<Vec<u32>, String>,
    vocab_size: usize,
    seq_len: usize,
    validation_share: f64,
) -> Result<TextData, DataError> {
    let file = || PathBuf::from(path);
    if bytes.is_empty() || bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(DataError::EmptyFile(file()));
    }
    let text = String::from_utf8(bytes).map_err(|e| DataError::NotUtf8 {
        path: file(),
        offset: e.utf8_error().valid_up_to(),
    })?;
    let tokens = encode(&text).map_err(|reason| DataError::Tokenizer {
        path: file(),
        reason,
    })?;
    if let Some((pos, &id)) = tokens
        .iter()
        .enumerate()
        .find(|(_, &t)| t as usize >= vocab_size)
    {
        return Err(DataError::TokenOutOfVocab {
            path: file(),
            position: pos,
            id,
            vocab_size,
        });
    }
    if tokens.len() < seq_len {
        return Err(DataError::FileTooShort {
            path: file(),
            tokens: tokens.len(),
            seq_len,
        });
    }
    let mut n_val = ((tokens.len() as f64) * validation_share).round() as usize;
    if n_val > 0 && n_val < seq_len {
        n_val = seq_len;
    }
    if tokens.len() < n_val + seq_len {
        n_val = 0;
    }
    let split = tokens.len() - n_val;
    Ok(TextData {
        validation: tokens[split..].to_vec(),
        train: tokens[..split].to_vec(),
    })
}

impl TextData {
    /// The training sampler.
    pub fn train_batches(
        &self,
        batch_size: usize,
        seq_len: usize,
        seed: u64,
    ) -> Result<StreamBatches, DataError> {
        StreamBatches::new(self.train.clone(), batch_size, seq_len, seed)
    }

    /// Validation batches (empty when there is no validation split).
    pub fn validation_batches(&self, batch_size: usize, seq_len: usize) -> Vec<TokenBatch> {
        match StreamBatches::new(self.validation.clone(), batch_size, seq_len, 0) {
            Ok(s) => s.eval_batches(),
            Err(_) => Vec::new(),
        }
    }
}
