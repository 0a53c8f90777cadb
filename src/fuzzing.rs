//! Fuzz target bodies: every parser of outside input, fed arbitrary bytes.
//!
//! Each `pub fn <target>(data: &[u8])` parses `data` through this crate's own
//! loader (not only the third-party crate underneath) and, when the parse
//! succeeds, exercises what a caller does next (read every tensor, encode a
//! text, re-serialize). A target must never panic, hang or allocate more than
//! the input justifies: any of these is a finding. Where a value parses, the
//! targets also check a round trip
//!
//! ```text
//! parse(write(parse(bytes))) == parse(bytes)
//! ```
//!
//! (bitwise for floats), so a writer that emits something its own reader
//! rejects or reads differently is a finding too.
//!
//! The `fuzz/` crate (cargo-fuzz, libFuzzer) wraps each body in a three-line
//! target; `tests/fuzz_smoke.rs` runs every body over the seed corpus plus
//! deterministic mutations in CI. [`TARGETS`] lists them by name and
//! [`seeds`] generates seed inputs with the crate's own writers.

use std::path::Path;

use crate::cli::forward::parse_input_ids;
use crate::model::hf_config::HfConfig;
use crate::model::safetensors_io::{
    params_from_file, params_to_tensors, serialize_tensors, OutTensor,
};
use crate::model::{HfExtras, LlamaConfig, LlamaModel, SafetensorsFile};
use crate::tokenizer::{ByteTokenizer, HfTokenizer, Tokenizer};

/// A fuzz target body: parses arbitrary bytes, never panics.
pub type Target = fn(&[u8]);

/// Every target, by the name of its `fuzz/fuzz_targets/<name>.rs` wrapper
/// and its seed directory `fuzz/corpus/<name>/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("config_json", config_json),
    ("safetensors_weights", safetensors_weights),
    ("tokenizer_json", tokenizer_json),
    ("token_ids_json", token_ids_json),
    ("text_data", text_data),
];

/// The tiny architecture the weight and token-id targets check against:
/// 1 layer, hidden 4, 2 query heads sharing 1 key/value head of width 2,
/// MLP 4, vocabulary 6, untied (`tied` = false) or tied embeddings.
pub fn tiny_config(tied: bool) -> LlamaConfig {
    LlamaConfig {
        vocab_size: 6,
        hidden_size: 4,
        intermediate_size: 4,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        head_dim: 2,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        tie_word_embeddings: tied,
        max_position_embeddings: 16,
    }
}

/// `config.json` through [`HfConfig::from_json_str`] and
/// [`LlamaConfig::from_hf_json`]; an accepted config must re-serialize to
/// text that parses back to the same config, and its parameter layout must
/// be computable.
pub fn config_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = HfConfig::from_json_str(text);
    let model = LlamaConfig::from_hf_json(text);
    assert_eq!(parsed.is_ok(), model.is_ok(), "the two entry points agree");
    if let Ok(cfg) = parsed {
        let again = HfConfig::from_json_str(&cfg.to_json_string())
            .expect("a written config.json parses back");
        assert!(same_hf_config(&cfg, &again), "config.json round trip");
        cfg.validate().expect("a parsed config validates");
        // The layout is bounded by the parser's size limit: cheap to list.
        let n = cfg.model.param_shapes().len();
        assert_eq!(n, 2 + 9 * cfg.model.num_hidden_layers + usize::from(!cfg.model.tie_word_embeddings));
    }
}

/// Equality with floats compared bitwise (NaN never parses, but be exact).
fn same_hf_config(a: &HfConfig, b: &HfConfig) -> bool {
    let (x, y) = (&a.model, &b.model);
    x.rms_norm_eps.to_bits() == y.rms_norm_eps.to_bits()
        && x.rope_theta.to_bits() == y.rope_theta.to_bits()
        && a.extras.initializer_range.to_bits() == b.extras.initializer_range.to_bits()
        && a == b
}

/// `model.safetensors` through [`SafetensorsFile::from_bytes`]: every
/// tensor's shape, dtype and values (as f32 and as i64), then
/// [`params_from_file`] against both [`tiny_config`]s; accepted parameters
/// must survive a write/read round trip bit for bit.
pub fn safetensors_weights(data: &[u8]) {
    let path = Path::new("<fuzz>/model.safetensors");
    let Ok(file) = SafetensorsFile::from_bytes(path, data.to_vec()) else {
        return;
    };
    let _ = file.metadata().len();
    for name in file.names() {
        let shape = file.shape(name).expect("a listed name has a shape").to_vec();
        let _ = file.dtype(name).expect("a listed name has a dtype");
        if let Ok(values) = file.read_float::<f32>(name) {
            assert_eq!(values.shape(), shape.as_slice());
        }
        if let Ok(values) = file.read_float::<f64>(name) {
            assert_eq!(values.shape(), shape.as_slice());
        }
        if let Ok(values) = file.read_i64(name) {
            assert_eq!(values.shape(), shape.as_slice());
        }
    }
    for tied in [false, true] {
        let cfg = tiny_config(tied);
        let Ok(params) = params_from_file::<f32>(&file, &cfg) else {
            continue;
        };
        let tensors = params_to_tensors(&cfg, &params, "").expect("loaded params fit their config");
        let bytes = serialize_tensors(&tensors).expect("loaded params serialize");
        let again = SafetensorsFile::from_bytes(path, bytes).expect("written weights parse back");
        let back = params_from_file::<f32>(&again, &cfg).expect("written weights load back");
        for (a, b) in params.iter().zip(back.iter()) {
            assert_eq!(a.name, b.name);
            let bits = |p: &[f32]| p.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(a.as_slice()), bits(b.as_slice()), "weights round trip");
        }
    }
}

/// `tokenizer.json` through [`HfTokenizer::from_bytes`]; an accepted
/// tokenizer encodes a short text and decodes the ids back without error
/// or panic (errors are fine, panics are not).
pub fn tokenizer_json(data: &[u8]) {
    let Ok(tok) = HfTokenizer::from_bytes(data) else {
        return;
    };
    let vocab = tok.vocab_size();
    let _ = (tok.bos_id(), tok.eos_id());
    for text in ["Hello world! abc", "", "ünïcödé 123 \n\t<s>"] {
        if let Ok(ids) = tok.encode(text) {
            let _ = tok.decode(&ids);
        }
    }
    let _ = tok.decode(&[0, 1, 2, u32::MAX]);
    if vocab > 0 {
        let _ = tok.decode(&[(vocab - 1) as u32]);
    }
}

/// The token-id JSON of `mofo forward --input-ids` through
/// [`parse_input_ids`] (vocabulary 6, at most 16 positions); accepted
/// batches are rectangular, in vocabulary and of a valid length.
pub fn token_ids_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let cfg = tiny_config(false);
    if let Ok(ids) = parse_input_ids(text, &cfg) {
        let t = ids[0].len();
        assert!((2..=cfg.max_position_embeddings).contains(&t));
        assert!(ids.iter().all(|s| s.len() == t));
        assert!(ids.iter().flatten().all(|&id| (id as usize) < cfg.vocab_size));
    }
}

/// User text: arbitrary bytes through the byte tokenizer (must round-trip
/// valid UTF-8 exactly) and through a small word-level `tokenizer.json`.
pub fn text_data(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let bytes = ByteTokenizer;
    if let Ok(ids) = bytes.encode(text) {
        assert!(ids.iter().all(|&i| (i as usize) < bytes.vocab_size()));
        assert_eq!(bytes.decode(&ids).expect("own ids decode"), text);
    }
    thread_local! {
        static WORDS: HfTokenizer = HfTokenizer::from_bytes(word_level_tokenizer_json().as_bytes())
            .expect("the built-in word-level tokenizer parses");
    }
    WORDS.with(|tok| {
        if let Ok(ids) = tok.encode(text) {
            assert!(ids.iter().all(|&i| (i as usize) < tok.vocab_size()));
            let _ = tok.decode(&ids);
        }
    });
}

/// A word-level `tokenizer.json` (lowercasing, whitespace pre-tokenizer,
/// `[UNK]`, `<s>`, `</s>`): a seed for [`tokenizer_json`].
pub fn word_level_tokenizer_json() -> String {
    let added = |id: u32, content: &str| {
        serde_json::json!({"id": id, "content": content, "single_word": false,
            "lstrip": false, "rstrip": false, "normalized": false, "special": true})
    };
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [added(0, "[UNK]"), added(1, "<s>"), added(2, "</s>")],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel",
            "vocab": {"[UNK]": 0, "<s>": 1, "</s>": 2, "hello": 3, "world": 4, "!": 5},
            "unk_token": "[UNK]"}
    })
    .to_string()
}

/// A byte-pair-encoding `tokenizer.json` with two merges and a byte-level
/// pre-tokenizer and decoder: a seed for [`tokenizer_json`].
pub fn bpe_tokenizer_json() -> String {
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [{"id": 0, "content": "<unk>", "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true}],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
            "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
            "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>",
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false,
            "vocab": {"<unk>": 0, "a": 1, "b": 2, "c": 3, "ab": 4, "abc": 5, "Ġ": 6},
            "merges": ["a b", "ab c"]}
    })
    .to_string()
}

/// Seed inputs for target `name`, written by this crate's own writers
/// (configs and weights of the [`tiny_config`] models, the tokenizers
/// above, token-id batches); empty for an unknown name.
pub fn seeds(name: &str) -> Vec<Vec<u8>> {
    let models = || {
        [false, true].map(|tied| {
            let extras = HfExtras {
                bos_token_id: Some(1),
                eos_token_ids: vec![2],
                ..HfExtras::default()
            };
            LlamaModel::<f32>::init(tiny_config(tied), extras, 7).expect("tiny config is valid")
        })
    };
    match name {
        "config_json" => models()
            .iter()
            .map(|m| m.hf_config().to_json_string().into_bytes())
            .collect(),
        "safetensors_weights" => {
            let mut out: Vec<Vec<u8>> = models()
                .iter()
                .map(|m| {
                    let tensors = params_to_tensors(&m.config, &m.params, "").expect("own params");
                    serialize_tensors(&tensors).expect("own params serialize")
                })
                .collect();
            let ids = OutTensor::i64("input_ids", &[2, 3], vec![0, 1, 2, 3, 4, 5]);
            out.push(serialize_tensors(&[ids]).expect("i64 tensor serializes"));
            out
        }
        "tokenizer_json" => vec![
            word_level_tokenizer_json().into_bytes(),
            bpe_tokenizer_json().into_bytes(),
        ],
        "token_ids_json" => vec![
            b"[[1, 2, 3, 4], [5, 0, 1, 2]]".to_vec(),
            b"[[0,5]]".to_vec(),
        ],
        "text_data" => vec![
            b"Hello world! hello mofo.\nSecond line\twith tabs.\n".to_vec(),
            "ünïcödé — 日本語 🦀\r\n".as_bytes().to_vec(),
        ],
        _ => Vec::new(),
    }
}
