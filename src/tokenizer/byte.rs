//! The built-in byte-level tokenizer: one id per UTF-8 byte plus three
//! special tokens.
//!
//! ```text
//! 0 ..= 255   the byte values
//! 256         BOS  (beginning of sequence)
//! 257         EOS  (end of sequence)
//! 258         PAD  (padding)
//! vocab_size  259
//! ```
//!
//! Decoding skips the special ids and turns invalid UTF-8 (e.g. a sequence
//! cut inside a multi-byte character) into U+FFFD.

use super::{check_ids, Tokenizer, TokenizerError};

/// Byte-level tokenizer (see the module docs for the id layout).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ByteTokenizer;

impl ByteTokenizer {
    /// Beginning-of-sequence id.
    pub const BOS: u32 = 256;
    /// End-of-sequence id.
    pub const EOS: u32 = 257;
    /// Padding id.
    pub const PAD: u32 = 258;
    /// Vocabulary size (256 bytes + 3 specials).
    pub const VOCAB_SIZE: usize = 259;
}

impl Tokenizer for ByteTokenizer {
    fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        Ok(text.bytes().map(u32::from).collect())
    }

    fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        check_ids(ids, Self::VOCAB_SIZE)?;
        let bytes: Vec<u8> = ids.iter().filter_map(|&id| u8::try_from(id).ok()).collect();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn vocab_size(&self) -> usize {
        Self::VOCAB_SIZE
    }

    fn bos_id(&self) -> Option<u32> {
        Some(Self::BOS)
    }

    fn eos_id(&self) -> Option<u32> {
        Some(Self::EOS)
    }
}
