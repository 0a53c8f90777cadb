//! Regression inputs for the fuzz targets (`mofo::fuzzing`): inputs that
//! crashed a target once, and the hostile inputs issue 9 names (sizes read
//! from a file that the file cannot back). Each must give a typed error,
//! quickly and without allocating what the input claims, and the target
//! body must not panic on it.

use std::path::Path;

use mofo::cli::forward::parse_input_ids;
use mofo::fuzzing;
use mofo::model::{HfConfig, LlamaConfig, SafetensorsError, SafetensorsFile};
use mofo::tokenizer::HfTokenizer;

fn safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn st_err(bytes: Vec<u8>) -> SafetensorsError {
    fuzzing::safetensors_weights(&bytes);
    SafetensorsFile::from_bytes(Path::new("x.safetensors"), bytes).expect_err("must be rejected")
}

#[test]
fn safetensors_header_length_beyond_the_file_is_rejected() {
    // Claims a 1 TiB header in a 16-byte file.
    let mut bytes = (1u64 << 40).to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}      ");
    assert!(matches!(st_err(bytes), SafetensorsError::Format { .. }));
    // u64::MAX (no overflow in `8 + n`).
    let mut bytes = u64::MAX.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    assert!(matches!(st_err(bytes), SafetensorsError::Format { .. }));
    // Shorter than the length field itself.
    for n in 0..8 {
        st_err(vec![0u8; n]);
    }
}

#[test]
fn safetensors_shapes_the_data_cannot_back_are_rejected() {
    // 2^32 × 2^32 elements (the product overflows u64 when multiplied by 4).
    let huge = safetensors(
        r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#,
        &[0; 4],
    );
    st_err(huge);
    // A shape whose byte count differs from its offsets.
    let short = safetensors(
        r#"{"w":{"dtype":"F32","shape":[1000000],"data_offsets":[0,8]}}"#,
        &[0; 8],
    );
    st_err(short);
    // Offsets past the end of the buffer.
    let past = safetensors(
        r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
        &[0; 4],
    );
    st_err(past);
}

#[test]
fn safetensors_open_checks_the_header_length_before_reading() {
    let dir = std::env::temp_dir().join(format!("mofo-fuzz-reg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("claims-huge-header.safetensors");
    let mut bytes = (1u64 << 60).to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    std::fs::write(&path, bytes).unwrap();
    let err = SafetensorsFile::open(&path).expect_err("must be rejected");
    assert!(
        matches!(err, SafetensorsError::Corrupt { .. }),
        "expected Corrupt, got {err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn tiny_config_json(overrides: &[(&str, serde_json::Value)]) -> String {
    let mut v = serde_json::json!({
        "vocab_size": 32, "hidden_size": 8, "intermediate_size": 12,
        "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
        "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": false,
        "max_position_embeddings": 64
    });
    for (k, val) in overrides {
        v[*k] = val.clone();
    }
    v.to_string()
}

#[test]
fn configs_describing_absurd_sizes_are_rejected() {
    let ok = tiny_config_json(&[]);
    fuzzing::config_json(ok.as_bytes());
    LlamaConfig::from_hf_json(&ok).expect("the base config is valid");
    for (field, value) in [
        ("num_hidden_layers", serde_json::json!(1u64 << 40)),
        ("vocab_size", serde_json::json!(u64::MAX)),
        ("hidden_size", serde_json::json!(1u64 << 32)),
        ("intermediate_size", serde_json::json!(1u64 << 62)),
        ("num_hidden_layers", serde_json::json!(-1)),
        ("rms_norm_eps", serde_json::json!(0.0)),
        ("vocab_size", serde_json::json!(1.5)),
    ] {
        let text = tiny_config_json(&[(field, value.clone())]);
        fuzzing::config_json(text.as_bytes());
        assert!(
            HfConfig::from_json_str(&text).is_err(),
            "{field} = {value} must be rejected"
        );
    }
    // 2^32 heads of width 2^32: the f64 size check must not overflow.
    let text = tiny_config_json(&[
        ("num_attention_heads", serde_json::json!(1u64 << 32)),
        ("num_key_value_heads", serde_json::json!(1u64 << 32)),
        ("head_dim", serde_json::json!(1u64 << 32)),
    ]);
    fuzzing::config_json(text.as_bytes());
    assert!(HfConfig::from_json_str(&text).is_err());
}

#[test]
fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
    let deep = "[".repeat(100_000);
    let cfg = fuzzing::tiny_config(false);
    assert!(parse_input_ids(&deep, &cfg).is_err());
    fuzzing::token_ids_json(deep.as_bytes());
    assert!(HfConfig::from_json_str(&deep).is_err());
    fuzzing::config_json(deep.as_bytes());
    let deep_obj = format!("{{\"model\":{}", "{\"a\":".repeat(50_000));
    assert!(HfTokenizer::from_bytes(deep_obj.as_bytes()).is_err());
    fuzzing::tokenizer_json(deep_obj.as_bytes());
}

#[test]
fn token_ids_beyond_u32_and_vocab_are_rejected() {
    let cfg = fuzzing::tiny_config(false);
    for text in [
        "[[0, 4294967296]]",
        "[[0, 18446744073709551616]]",
        "[[0, 6]]",
        "[[0, -1]]",
        "[[0, 1.0]]",
        "[[0, 1], [1]]",
        "[[0]]",
        "[]",
    ] {
        fuzzing::token_ids_json(text.as_bytes());
        assert!(
            parse_input_ids(text, &cfg).is_err(),
            "{text} must be rejected"
        );
    }
    let long = format!("[[{}]]", vec!["1"; 17].join(","));
    assert!(
        parse_input_ids(&long, &cfg).is_err(),
        "17 > max_position_embeddings 16"
    );
}

/// Found by the `tokenizer_json` campaign: a `\u` escape that is not a code
/// point inside `"decoder"` made `tokenizers` 0.22 panic (`expect("Helper")`)
/// instead of returning an error.
#[test]
fn tokenizer_with_a_bad_escape_in_the_decoder_is_an_error() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fuzz/tokenizer_json-decoder-bad-unicode-escape.json");
    let bytes = std::fs::read(&path).unwrap();
    fuzzing::tokenizer_json(&bytes);
    let err = HfTokenizer::from_bytes(&bytes).expect_err("must be rejected");
    assert!(err.to_string().contains("unicode"), "{err}");
}

/// A `Precompiled` normalizer whose charsmap is not base64 bytes: `tokenizers`
/// 0.22 `expect`s it to parse (panic); we check it first.
#[test]
fn tokenizer_with_a_bad_precompiled_normalizer_is_an_error() {
    let mut v: serde_json::Value =
        serde_json::from_str(&fuzzing::word_level_tokenizer_json()).unwrap();
    for charsmap in [
        serde_json::json!(5),
        serde_json::json!("not base64 !!"),
        serde_json::json!(null),
    ] {
        v["normalizer"] =
            serde_json::json!({"type": "Precompiled", "precompiled_charsmap": charsmap});
        let bytes = v.to_string().into_bytes();
        fuzzing::tokenizer_json(&bytes);
        assert!(HfTokenizer::from_bytes(&bytes).is_err(), "{v}");
    }
}
