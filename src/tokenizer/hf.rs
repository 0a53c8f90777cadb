//! Hugging Face `tokenizer.json` files through the `tokenizers` crate.
//!
//! The BOS/EOS ids are found, in order: from `bos_token`/`eos_token` of a
//! `tokenizer_config.json` beside the file (as transformers stores them),
//! otherwise from the first of the usual names present in the vocabulary
//! (`<s>`, `<|begin_of_text|>`, `<bos>`, ... and `</s>`, `<|end_of_text|>`,
//! `<|endoftext|>`, `<eos>`, ...). [`HfTokenizer::with_special_tokens`]
//! overrides both.

use std::path::Path;

use super::{check_ids, Tokenizer, TokenizerError};

const BOS_NAMES: [&str; 5] = [
    "<s>",
    "<|begin_of_text|>",
    "<bos>",
    "[BOS]",
    "<|startoftext|>",
];
const EOS_NAMES: [&str; 6] = [
    "</s>",
    "<|end_of_text|>",
    "<|endoftext|>",
    "<eos>",
    "[EOS]",
    "<|eot_id|>",
];

/// A Hugging Face tokenizer loaded from `tokenizer.json`.
pub struct HfTokenizer {
    inner: tokenizers::Tokenizer,
    bos: Option<u32>,
    eos: Option<u32>,
}

impl std::fmt::Debug for HfTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish()
    }
}

/// A special token in `tokenizer_config.json`: a string or `{"content": ...}`.
fn config_token(cfg: &serde_json::Value, key: &str) -> Option<String> {
    match cfg.get(key)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// Every `{"type": "Precompiled", ...}` object must deserialize as the
/// `tokenizers` crate will (it `expect`s success, i.e. panics otherwise).
fn check_precompiled(v: &serde_json::Value) -> Result<(), String> {
    match v {
        serde_json::Value::Object(m) => {
            if m.get("type").and_then(serde_json::Value::as_str) == Some("Precompiled") {
                serde_json::from_str::<tokenizers::normalizers::precompiled::Precompiled>(
                    &v.to_string(),
                )
                .map_err(|e| format!("bad Precompiled normalizer: {e}"))?;
            }
            m.values().try_for_each(check_precompiled)
        }
        serde_json::Value::Array(a) => a.iter().try_for_each(check_precompiled),
        _ => Ok(()),
    }
}

impl HfTokenizer {
    /// Loads `path` (a `tokenizer.json`); bad files are [`TokenizerError::Load`].
    pub fn from_file(path: &Path) -> Result<Self, TokenizerError> {
        let load_err = |message: String| TokenizerError::Load {
            path: path.display().to_string(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| load_err(e.to_string()))?;
        let mut tok = Self::from_bytes(&bytes).map_err(|e| match e {
            TokenizerError::Load { message, .. } => load_err(message),
            other => other,
        })?;
        let config_path = path.with_file_name("tokenizer_config.json");
        if let Ok(text) = std::fs::read_to_string(&config_path) {
            let cfg: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| TokenizerError::Load {
                    path: config_path.display().to_string(),
                    message: e.to_string(),
                })?;
            if let Some(b) = config_token(&cfg, "bos_token") {
                tok.bos = Some(tok.id_of(&b)?);
            }
            if let Some(e) = config_token(&cfg, "eos_token") {
                tok.eos = Some(tok.id_of(&e)?);
            }
        }
        Ok(tok)
    }

    /// Parses the bytes of a `tokenizer.json` (no `tokenizer_config.json`:
    /// BOS/EOS guessed as in [`HfTokenizer::from_tokenizer`]); bad bytes are
    /// [`TokenizerError::Load`] with path `<bytes>`.
    ///
    /// `tokenizers` 0.22 panics instead of returning an error on some
    /// malformed files (a JSON syntax error inside `"decoder"`, a bad
    /// `Precompiled` normalizer; found by `fuzz/` target `tokenizer_json`), so
    /// the JSON syntax and those normalizers are checked first, and any
    /// remaining panic inside the crate is caught and reported as an error.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TokenizerError> {
        let load = |message: String| TokenizerError::Load {
            path: "<bytes>".to_string(),
            message,
        };
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| load(e.to_string()))?;
        check_precompiled(&value).map_err(load)?;
        let parsed = std::panic::catch_unwind(|| tokenizers::Tokenizer::from_bytes(bytes))
            .map_err(|_| load("the tokenizers crate panicked on this file".to_string()))?;
        let inner = parsed.map_err(|e| load(e.to_string()))?;
        Ok(Self::from_tokenizer(inner))
    }

    /// Wraps a `tokenizers::Tokenizer`, guessing BOS/EOS from the usual names.
    pub fn from_tokenizer(inner: tokenizers::Tokenizer) -> Self {
        let find = |names: &[&str]| names.iter().find_map(|n| inner.token_to_id(n));
        let bos = find(&BOS_NAMES);
        let eos = find(&EOS_NAMES);
        Self { inner, bos, eos }
    }

    /// Sets BOS and EOS by their token strings (`None` clears one).
    pub fn with_special_tokens(
        mut self,
        bos: Option<&str>,
        eos: Option<&str>,
    ) -> Result<Self, TokenizerError> {
        self.bos = bos.map(|b| self.id_of(b)).transpose()?;
        self.eos = eos.map(|e| self.id_of(e)).transpose()?;
        Ok(self)
    }

    /// The id of a token string.
    pub fn id_of(&self, token: &str) -> Result<u32, TokenizerError> {
        self.inner
            .token_to_id(token)
            .ok_or_else(|| TokenizerError::UnknownSpecial(token.to_string()))
    }

    /// The wrapped `tokenizers::Tokenizer`.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

impl Tokenizer for HfTokenizer {
    fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        self.inner
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| TokenizerError::Encode(e.to_string()))
    }

    fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        check_ids(ids, self.vocab_size())?;
        self.inner
            .decode(ids, true)
            .map_err(|e| TokenizerError::Decode(e.to_string()))
    }

    fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    fn eos_id(&self) -> Option<u32> {
        self.eos
    }
}
