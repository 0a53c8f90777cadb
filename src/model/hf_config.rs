//! Hugging Face `config.json` for `LlamaForCausalLM`: parsing into
//! [`LlamaConfig`] (plus the few extra fields we keep in [`HfExtras`]) and
//! writing a file that transformers 5.x loads.
//!
//! Defaults follow transformers' `LlamaConfig` where they are harmless:
//!
//! ```text
//! num_key_value_heads      = num_attention_heads       (no grouped-query attention)
//! head_dim                 = hidden_size / num_attention_heads
//! rms_norm_eps             = 1e-6
//! rope_theta               = 10000     (top level, or rope_parameters.rope_theta)
//! tie_word_embeddings      = false
//! max_position_embeddings  = 2048
//! initializer_range        = 0.02
//! ```
//!
//! The five sizes (`vocab_size`, `hidden_size`, `intermediate_size`,
//! `num_hidden_layers`, `num_attention_heads`) are required: transformers'
//! defaults for them describe a 7B model, which a missing field should never
//! silently turn a tiny config into.
//!
//! Anything we do not implement is rejected, never ignored: `model_type` other
//! than `llama`, `architectures` other than `LlamaForCausalLM`, `hidden_act`
//! other than `silu`, `attention_bias`/`mlp_bias` true, rope scaling other
//! than none/`default`, unknown keys under `rope_parameters`/`rope_scaling`,
//! `attention_dropout` ≠ 0. Bad values (zero sizes, heads not divisible by
//! key/value heads, odd head_dim, eps ≤ 0, wrong JSON types) are typed errors.

use serde_json::{Map, Value};
use std::path::Path;

use super::LlamaConfig;

/// Largest parameter count a config may describe (2^40 ≈ 1.1e12): guards the
/// size arithmetic against overflow on absurd files.
pub const MAX_PARAMETERS: u128 = 1 << 40;

/// Errors reading or validating a Hugging Face `config.json`.
#[derive(Debug, thiserror::Error)]
pub enum HfConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not JSON, or not a JSON object.
    #[error("config is not a valid JSON object: {0}")]
    Json(String),
    /// A required field is absent.
    #[error("config field `{0}` is required")]
    Missing(&'static str),
    /// A field has the wrong JSON type.
    #[error("config field `{field}` must be {expected}, got {got}")]
    Type {
        /// The field.
        field: String,
        /// What was expected (e.g. "a positive integer").
        expected: &'static str,
        /// The value found, as JSON.
        got: String,
    },
    /// A field's value is out of range or inconsistent with another field.
    #[error("config field `{field}`: {reason}")]
    Invalid {
        /// The field.
        field: String,
        /// Why the value is rejected.
        reason: String,
    },
    /// The config asks for a feature this crate does not implement.
    #[error("config asks for {0}, which this crate does not implement")]
    Unsupported(String),
}

fn invalid(field: &str, reason: impl Into<String>) -> HfConfigError {
    HfConfigError::Invalid {
        field: field.to_string(),
        reason: reason.into(),
    }
}

fn type_err(field: &str, expected: &'static str, got: &Value) -> HfConfigError {
    HfConfigError::Type {
        field: field.to_string(),
        expected,
        got: got.to_string(),
    }
}

/// The fields of a Hugging Face Llama config that are not architecture
/// (initialisation scale and special token ids).
#[derive(Clone, Debug, PartialEq)]
pub struct HfExtras {
    /// Standard deviation of the normal initialisation (transformers'
    /// `initializer_range`, default 0.02).
    pub initializer_range: f64,
    /// Beginning-of-sequence token id, if any.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token ids (Hugging Face allows one id or a list).
    pub eos_token_ids: Vec<u32>,
    /// Padding token id, if any (its embedding row is zero at initialisation).
    pub pad_token_id: Option<u32>,
}

impl Default for HfExtras {
    fn default() -> Self {
        Self {
            initializer_range: 0.02,
            bos_token_id: None,
            eos_token_ids: Vec::new(),
            pad_token_id: None,
        }
    }
}

/// A parsed Hugging Face Llama `config.json`: the architecture and the extras.
#[derive(Clone, Debug, PartialEq)]
pub struct HfConfig {
    /// The architecture.
    pub model: LlamaConfig,
    /// Initialisation scale and special tokens.
    pub extras: HfExtras,
}

fn get_usize(
    obj: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<usize>, HfConfigError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) => usize::try_from(n)
                .map(Some)
                .map_err(|_| invalid(field, format!("{n} is too large"))),
            None => Err(type_err(field, "a non-negative integer", v)),
        },
    }
}

fn req_positive(obj: &Map<String, Value>, field: &'static str) -> Result<usize, HfConfigError> {
    let n = get_usize(obj, field)?.ok_or(HfConfigError::Missing(field))?;
    positive(field, n)
}

fn positive(field: &str, n: usize) -> Result<usize, HfConfigError> {
    if n == 0 {
        Err(invalid(field, "must be positive, got 0"))
    } else {
        Ok(n)
    }
}

fn get_f64(obj: &Map<String, Value>, field: &str) -> Result<Option<f64>, HfConfigError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| type_err(field, "a number", v)),
    }
}

fn get_bool(obj: &Map<String, Value>, field: &str) -> Result<Option<bool>, HfConfigError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(type_err(field, "true or false", v)),
    }
}

fn get_str<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, HfConfigError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(type_err(field, "a string", v)),
    }
}

fn get_token(obj: &Map<String, Value>, field: &'static str) -> Result<Option<u32>, HfConfigError> {
    match get_usize(obj, field)? {
        None => Ok(None),
        Some(n) => u32::try_from(n)
            .map(Some)
            .map_err(|_| invalid(field, format!("token id {n} does not fit in u32"))),
    }
}

fn get_token_list(
    obj: &Map<String, Value>,
    field: &'static str,
) -> Result<Vec<u32>, HfConfigError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| type_err(field, "a token id or a list of token ids", v))
            })
            .collect(),
        Some(_) => Ok(vec![get_token(obj, field)?.expect("non-null")]),
    }
}

/// Checks a rope scaling object (`rope_parameters` or `rope_scaling`): only
/// the default (unscaled) rotary embedding is implemented. Returns its
/// `rope_theta` if it has one.
fn check_rope_object(field: &str, v: &Value) -> Result<Option<f64>, HfConfigError> {
    let obj = match v {
        Value::Null => return Ok(None),
        Value::Object(o) => o,
        _ => return Err(type_err(field, "an object or null", v)),
    };
    let mut theta = None;
    for (key, value) in obj {
        match key.as_str() {
            "rope_type" | "type" => match value.as_str() {
                Some("default") => {}
                Some(other) => {
                    return Err(HfConfigError::Unsupported(format!(
                        "{field}.{key} = \"{other}\" (only \"default\" rotary embeddings)"
                    )))
                }
                None => return Err(type_err(&format!("{field}.{key}"), "a string", value)),
            },
            "rope_theta" => {
                theta =
                    Some(value.as_f64().ok_or_else(|| {
                        type_err(&format!("{field}.rope_theta"), "a number", value)
                    })?)
            }
            other => {
                return Err(HfConfigError::Unsupported(format!(
                    "{field}.{other} (only rope_type \"default\" and rope_theta are understood)"
                )))
            }
        }
    }
    Ok(theta)
}

impl HfConfig {
    /// Parses and validates the text of a `config.json`.
    pub fn from_json_str(text: &str) -> Result<Self, HfConfigError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| HfConfigError::Json(e.to_string()))?;
        Self::from_json_value(&value)
    }

    /// Reads, parses and validates a `config.json` file.
    pub fn from_file(path: &Path) -> Result<Self, HfConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| HfConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json_str(&text)
    }

    /// Parses and validates a parsed JSON value.
    pub fn from_json_value(value: &Value) -> Result<Self, HfConfigError> {
        let obj = value
            .as_object()
            .ok_or_else(|| HfConfigError::Json(format!("expected an object, got {value}")))?;

        // Architecture family: reject anything that is not a plain Llama.
        if let Some(mt) = get_str(obj, "model_type")? {
            if mt != "llama" {
                return Err(HfConfigError::Unsupported(format!(
                    "model_type \"{mt}\" (only \"llama\")"
                )));
            }
        }
        match obj.get("architectures") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for item in items {
                    match item.as_str() {
                        Some("LlamaForCausalLM") => {}
                        Some(other) => {
                            return Err(HfConfigError::Unsupported(format!(
                                "architecture \"{other}\" (only LlamaForCausalLM)"
                            )))
                        }
                        None => return Err(type_err("architectures", "a list of strings", item)),
                    }
                }
            }
            Some(v) => return Err(type_err("architectures", "a list of strings", v)),
        }
        if let Some(act) = get_str(obj, "hidden_act")? {
            if act != "silu" {
                return Err(HfConfigError::Unsupported(format!(
                    "hidden_act \"{act}\" (only \"silu\")"
                )));
            }
        }
        for flag in ["attention_bias", "mlp_bias"] {
            if get_bool(obj, flag)? == Some(true) {
                return Err(HfConfigError::Unsupported(format!("{flag} = true")));
            }
        }
        if let Some(p) = get_f64(obj, "attention_dropout")? {
            if p != 0.0 {
                return Err(HfConfigError::Unsupported(format!(
                    "attention_dropout = {p} (only 0)"
                )));
            }
        }
        let theta_scaling = match obj.get("rope_scaling") {
            Some(v) => check_rope_object("rope_scaling", v)?,
            None => None,
        };
        let theta_params = match obj.get("rope_parameters") {
            Some(v) => check_rope_object("rope_parameters", v)?,
            None => None,
        };
        let theta_top = get_f64(obj, "rope_theta")?;
        let thetas: Vec<f64> = [theta_top, theta_params, theta_scaling]
            .into_iter()
            .flatten()
            .collect();
        if thetas.windows(2).any(|w| w[0] != w[1]) {
            return Err(invalid(
                "rope_theta",
                format!("given several times with different values {thetas:?}"),
            ));
        }
        let rope_theta = thetas.first().copied().unwrap_or(10000.0);
        if !(rope_theta.is_finite() && rope_theta > 0.0) {
            return Err(invalid(
                "rope_theta",
                format!("must be a finite number > 0, got {rope_theta}"),
            ));
        }

        // Sizes.
        let vocab_size = req_positive(obj, "vocab_size")?;
        let hidden_size = req_positive(obj, "hidden_size")?;
        let intermediate_size = req_positive(obj, "intermediate_size")?;
        let num_hidden_layers = req_positive(obj, "num_hidden_layers")?;
        let num_attention_heads = req_positive(obj, "num_attention_heads")?;
        let num_key_value_heads = match get_usize(obj, "num_key_value_heads")? {
            Some(n) => positive("num_key_value_heads", n)?,
            None => num_attention_heads,
        };
        if num_attention_heads % num_key_value_heads != 0 {
            return Err(invalid(
                "num_key_value_heads",
                format!(
                    "{num_key_value_heads} does not divide num_attention_heads = {num_attention_heads}"
                ),
            ));
        }
        let head_dim = match get_usize(obj, "head_dim")? {
            Some(d) => positive("head_dim", d)?,
            None => {
                if hidden_size % num_attention_heads != 0 {
                    return Err(invalid(
                        "hidden_size",
                        format!(
                            "{hidden_size} is not divisible by num_attention_heads = \
                             {num_attention_heads} (give head_dim explicitly)"
                        ),
                    ));
                }
                hidden_size / num_attention_heads
            }
        };
        if head_dim % 2 != 0 {
            return Err(invalid(
                "head_dim",
                format!("rotary embeddings need an even head_dim, got {head_dim}"),
            ));
        }
        let rms_norm_eps = get_f64(obj, "rms_norm_eps")?.unwrap_or(1e-6);
        if !(rms_norm_eps.is_finite() && rms_norm_eps > 0.0) {
            return Err(invalid(
                "rms_norm_eps",
                format!("must be a finite number > 0, got {rms_norm_eps}"),
            ));
        }
        let tie_word_embeddings = get_bool(obj, "tie_word_embeddings")?.unwrap_or(false);
        let max_position_embeddings = match get_usize(obj, "max_position_embeddings")? {
            Some(n) => positive("max_position_embeddings", n)?,
            None => 2048,
        };

        // Extras.
        let initializer_range = get_f64(obj, "initializer_range")?.unwrap_or(0.02);
        if !(initializer_range.is_finite() && initializer_range >= 0.0) {
            return Err(invalid(
                "initializer_range",
                format!("must be a finite number ≥ 0, got {initializer_range}"),
            ));
        }
        let bos_token_id = get_token(obj, "bos_token_id")?;
        let eos_token_ids = get_token_list(obj, "eos_token_id")?;
        let pad_token_id = get_token(obj, "pad_token_id")?;
        for (field, id) in bos_token_id
            .iter()
            .map(|&i| ("bos_token_id", i))
            .chain(eos_token_ids.iter().map(|&i| ("eos_token_id", i)))
            .chain(pad_token_id.iter().map(|&i| ("pad_token_id", i)))
        {
            if id as usize >= vocab_size {
                return Err(invalid(
                    field,
                    format!("token id {id} is not below vocab_size = {vocab_size}"),
                ));
            }
        }

        let model = LlamaConfig {
            vocab_size,
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps,
            rope_theta,
            tie_word_embeddings,
            max_position_embeddings,
        };
        check_size(&model)?;
        Ok(Self {
            model,
            extras: HfExtras {
                initializer_range,
                bos_token_id,
                eos_token_ids,
                pad_token_id,
            },
        })
    }

    /// The `config.json` value that transformers 5.x loads as a
    /// `LlamaForCausalLM` with float32 weights (the key set transformers 5.24
    /// itself writes).
    pub fn to_json_value(&self) -> Value {
        let m = &self.model;
        let e = &self.extras;
        let eos = match e.eos_token_ids.as_slice() {
            [] => Value::Null,
            [one] => Value::from(*one),
            many => Value::from(many.to_vec()),
        };
        serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "attention_bias": false,
            "attention_dropout": 0.0,
            "bos_token_id": e.bos_token_id,
            "dtype": "float32",
            "eos_token_id": eos,
            "head_dim": m.head_dim,
            "hidden_act": "silu",
            "hidden_size": m.hidden_size,
            "initializer_range": e.initializer_range,
            "intermediate_size": m.intermediate_size,
            "max_position_embeddings": m.max_position_embeddings,
            "mlp_bias": false,
            "model_type": "llama",
            "num_attention_heads": m.num_attention_heads,
            "num_hidden_layers": m.num_hidden_layers,
            "num_key_value_heads": m.num_key_value_heads,
            "pad_token_id": e.pad_token_id,
            "pretraining_tp": 1,
            "rms_norm_eps": m.rms_norm_eps,
            "rope_parameters": {
                "rope_theta": m.rope_theta,
                "rope_type": "default",
            },
            "tie_word_embeddings": m.tie_word_embeddings,
            "use_cache": true,
            "vocab_size": m.vocab_size,
        })
    }

    /// Checks a config built in code with the parser's rules (architecture
    /// as in [`LlamaConfig::validate`], token ids below the vocabulary,
    /// initializer_range finite and ≥ 0).
    pub fn validate(&self) -> Result<(), HfConfigError> {
        Self::from_json_value(&self.to_json_value()).map(|_| ())
    }

    /// The `config.json` text (pretty-printed, trailing newline).
    pub fn to_json_string(&self) -> String {
        let mut s = serde_json::to_string_pretty(&self.to_json_value())
            .expect("a JSON value always serializes");
        s.push('\n');
        s
    }
}

/// Checks that the parameter count of `cfg` is representable and below
/// [`MAX_PARAMETERS`], so that later size arithmetic cannot overflow.
fn check_size(cfg: &LlamaConfig) -> Result<(), HfConfigError> {
    // In f64: exact enough for a limit check, and no product can overflow.
    let v = cfg.vocab_size as f64;
    let h = cfg.hidden_size as f64;
    let q = cfg.num_attention_heads as f64 * cfg.head_dim as f64;
    let kv = cfg.num_key_value_heads as f64 * cfg.head_dim as f64;
    let m = cfg.intermediate_size as f64;
    let layer = 2.0 * h + 2.0 * q * h + 2.0 * kv * h + 3.0 * m * h;
    let heads = if cfg.tie_word_embeddings { 1.0 } else { 2.0 };
    let total = heads * v * h + h + cfg.num_hidden_layers as f64 * layer;
    if total > MAX_PARAMETERS as f64 {
        return Err(invalid(
            "hidden_size",
            format!(
                "the config describes {total:.3e} parameters, more than the limit {MAX_PARAMETERS}"
            ),
        ));
    }
    Ok(())
}

impl LlamaConfig {
    /// Parses a Hugging Face `config.json` text into the architecture
    /// (see [`HfConfig::from_json_str`] for the extras too).
    pub fn from_hf_json(text: &str) -> Result<Self, HfConfigError> {
        HfConfig::from_json_str(text).map(|c| c.model)
    }

    /// Checks the same invariants as the `config.json` parser for a config
    /// built in code (positive sizes, divisibility, even head_dim, eps > 0,
    /// θ > 0, bounded size).
    pub fn validate(&self) -> Result<(), HfConfigError> {
        HfConfig {
            model: self.clone(),
            extras: HfExtras::default(),
        }
        .validate()
    }
}
