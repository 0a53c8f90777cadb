//! Hugging Face config.json and safetensors in and out: parsing, rejection of
//! unsupported configs, loading the reference checkpoints, round trips,
//! corrupt files, random initialisation.

use std::path::{Path, PathBuf};

use mofo::model::hf_config::{HfConfig, HfConfigError, HfExtras};
use mofo::model::init::init_params;
use mofo::model::safetensors_io::{
    load_params, save_params, serialize_tensors, OutTensor, SafetensorsError, SafetensorsFile,
};
use mofo::model::{LlamaConfig, LlamaModel, ModelIoError};
use mofo::ParamStore;

/// `../shared/reference/models/<name>`, or `None` (skip) when absent outside CI.
fn reference_model(name: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/reference/models")
        .join(name);
    if dir.join("model.safetensors").exists() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("reference model {} is missing (CI=true)", dir.display());
    }
    eprintln!("skipping: reference model {} not found", dir.display());
    None
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mofo-model-io-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn tiny_config(tied: bool) -> LlamaConfig {
    LlamaConfig {
        vocab_size: 40,
        hidden_size: 16,
        intermediate_size: 24,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 4,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        tie_word_embeddings: tied,
        max_position_embeddings: 64,
    }
}

const BASE: &str = r#"{"vocab_size": 50, "hidden_size": 32, "intermediate_size": 48,
    "num_hidden_layers": 2, "num_attention_heads": 4}"#;

fn with(key: &str, value: serde_json::Value) -> String {
    let mut v: serde_json::Value = serde_json::from_str(BASE).unwrap();
    v[key] = value;
    v.to_string()
}

fn without(key: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(BASE).unwrap();
    v.as_object_mut().unwrap().remove(key);
    v.to_string()
}

#[test]
fn parses_reference_configs() {
    let Some(dir) = reference_model("tiny-llama-gqa-tied") else {
        return;
    };
    let hf = HfConfig::from_file(&dir.join("config.json")).unwrap();
    let c = &hf.model;
    assert_eq!(
        (
            c.vocab_size,
            c.hidden_size,
            c.intermediate_size,
            c.num_hidden_layers
        ),
        (96, 64, 128, 2)
    );
    assert_eq!(
        (c.num_attention_heads, c.num_key_value_heads, c.head_dim),
        (4, 2, 16)
    );
    assert_eq!((c.rms_norm_eps, c.rope_theta), (1e-6, 10000.0));
    assert!(c.tie_word_embeddings);
    assert_eq!(c.max_position_embeddings, 256);
    assert_eq!(hf.extras.initializer_range, 0.08);
    assert_eq!(hf.extras.bos_token_id, Some(1));
    assert_eq!(hf.extras.eos_token_ids, vec![2]);
    assert_eq!(hf.extras.pad_token_id, None);

    let Some(dir) = reference_model("tiny-llama") else {
        return;
    };
    let c = HfConfig::from_file(&dir.join("config.json")).unwrap().model;
    assert_eq!(
        (c.vocab_size, c.intermediate_size, c.num_key_value_heads),
        (128, 160, 4)
    );
    assert!(!c.tie_word_embeddings);
    assert_eq!(c.rms_norm_eps, 1e-5);
}

#[test]
fn defaults_and_alternative_spellings() {
    let c = LlamaConfig::from_hf_json(BASE).unwrap();
    assert_eq!(c.num_key_value_heads, 4);
    assert_eq!(c.head_dim, 8);
    assert_eq!(c.rms_norm_eps, 1e-6);
    assert_eq!(c.rope_theta, 10000.0);
    assert!(!c.tie_word_embeddings);
    assert_eq!(c.max_position_embeddings, 2048);
    // rope_theta at the top level (transformers 4.x) or under rope_parameters (5.x).
    let c = LlamaConfig::from_hf_json(&with("rope_theta", 5e5.into())).unwrap();
    assert_eq!(c.rope_theta, 5e5);
    let c = LlamaConfig::from_hf_json(&with(
        "rope_parameters",
        serde_json::json!({"rope_type": "default", "rope_theta": 123.0}),
    ))
    .unwrap();
    assert_eq!(c.rope_theta, 123.0);
    let c = LlamaConfig::from_hf_json(&with("rope_scaling", serde_json::Value::Null)).unwrap();
    assert_eq!(c.rope_theta, 10000.0);
    // eos as a list.
    let hf = HfConfig::from_json_str(&with("eos_token_id", serde_json::json!([2, 3]))).unwrap();
    assert_eq!(hf.extras.eos_token_ids, vec![2, 3]);
    // Explicit head_dim that does not equal hidden / heads.
    let c = LlamaConfig::from_hf_json(&with("head_dim", 6.into())).unwrap();
    assert_eq!(c.head_dim, 6);
}

fn unsupported(text: &str) {
    match HfConfig::from_json_str(text) {
        Err(HfConfigError::Unsupported(msg)) => eprintln!("rejected as expected: {msg}"),
        other => panic!("expected Unsupported for {text}, got {other:?}"),
    }
}

fn invalid(text: &str, field: &str) {
    match HfConfig::from_json_str(text) {
        Err(HfConfigError::Invalid { field: f, reason }) => {
            assert_eq!(f, field, "{reason}");
        }
        other => panic!("expected Invalid({field}) for {text}, got {other:?}"),
    }
}

fn type_error(text: &str, field: &str) {
    match HfConfig::from_json_str(text) {
        Err(HfConfigError::Type { field: f, .. }) => assert_eq!(f, field),
        other => panic!("expected Type({field}) for {text}, got {other:?}"),
    }
}

#[test]
fn rejects_unimplemented_features() {
    use serde_json::json;
    unsupported(&with("model_type", json!("mistral")));
    unsupported(&with(
        "architectures",
        json!(["LlamaForSequenceClassification"]),
    ));
    unsupported(&with("hidden_act", json!("gelu")));
    unsupported(&with("attention_bias", json!(true)));
    unsupported(&with("mlp_bias", json!(true)));
    unsupported(&with("attention_dropout", json!(0.1)));
    unsupported(&with(
        "rope_scaling",
        json!({"rope_type": "llama3", "factor": 8.0}),
    ));
    unsupported(&with(
        "rope_scaling",
        json!({"type": "linear", "factor": 2.0}),
    ));
    unsupported(&with(
        "rope_parameters",
        json!({"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}),
    ));
    unsupported(&with(
        "rope_parameters",
        json!({"rope_type": "default", "rope_theta": 1e4, "partial_rotary_factor": 0.5}),
    ));
    // Explicitly harmless values are accepted.
    for (k, v) in [
        ("attention_bias", json!(false)),
        ("mlp_bias", json!(false)),
        ("hidden_act", json!("silu")),
        ("model_type", json!("llama")),
        ("architectures", json!(["LlamaForCausalLM"])),
        ("attention_dropout", json!(0.0)),
    ] {
        HfConfig::from_json_str(&with(k, v)).unwrap();
    }
}

#[test]
fn rejects_bad_values_with_typed_errors() {
    use serde_json::json;
    for field in [
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
    ] {
        match HfConfig::from_json_str(&without(field)) {
            Err(HfConfigError::Missing(f)) => assert_eq!(f, field),
            other => panic!("expected Missing({field}), got {other:?}"),
        }
        invalid(&with(field, json!(0)), field);
        type_error(&with(field, json!("64")), field);
        type_error(&with(field, json!(-3)), field);
        type_error(&with(field, json!(2.5)), field);
    }
    invalid(
        &with("num_key_value_heads", json!(3)),
        "num_key_value_heads",
    );
    invalid(
        &with("num_key_value_heads", json!(0)),
        "num_key_value_heads",
    );
    invalid(&with("num_attention_heads", json!(5)), "hidden_size");
    invalid(&with("head_dim", json!(5)), "head_dim");
    invalid(&with("rms_norm_eps", json!(0.0)), "rms_norm_eps");
    invalid(&with("rms_norm_eps", json!(-1e-6)), "rms_norm_eps");
    type_error(&with("rms_norm_eps", json!("1e-6")), "rms_norm_eps");
    invalid(&with("rope_theta", json!(-1.0)), "rope_theta");
    invalid(&with("initializer_range", json!(-0.1)), "initializer_range");
    invalid(&with("eos_token_id", json!(50)), "eos_token_id");
    invalid(
        &with("max_position_embeddings", json!(0)),
        "max_position_embeddings",
    );
    type_error(
        &with("tie_word_embeddings", json!("yes")),
        "tie_word_embeddings",
    );
    // Two different rope_theta values.
    let mut v: serde_json::Value = serde_json::from_str(BASE).unwrap();
    v["rope_theta"] = json!(1e4);
    v["rope_parameters"] = json!({"rope_type": "default", "rope_theta": 5e5});
    invalid(&v.to_string(), "rope_theta");
    // Absurd sizes are rejected, not overflowed.
    let mut v: serde_json::Value = serde_json::from_str(BASE).unwrap();
    v["vocab_size"] = json!(u64::MAX / 2);
    assert!(HfConfig::from_json_str(&v.to_string()).is_err());
    let mut v: serde_json::Value = serde_json::from_str(BASE).unwrap();
    v["num_attention_heads"] = json!(1u64 << 40);
    v["num_key_value_heads"] = json!(1u64 << 40);
    v["head_dim"] = json!(1u64 << 40);
    v["hidden_size"] = json!(1u64 << 62);
    invalid(&v.to_string(), "hidden_size");
    // Not JSON / not an object.
    assert!(matches!(
        HfConfig::from_json_str("{\"vocab_size\": "),
        Err(HfConfigError::Json(_))
    ));
    assert!(matches!(
        HfConfig::from_json_str("[1, 2]"),
        Err(HfConfigError::Json(_))
    ));
    assert!(matches!(
        HfConfig::from_file(Path::new("/nonexistent/config.json")),
        Err(HfConfigError::Io { .. })
    ));
}

#[test]
fn config_json_round_trip() {
    for tied in [false, true] {
        let hf = HfConfig {
            model: tiny_config(tied),
            extras: HfExtras {
                initializer_range: 0.05,
                bos_token_id: Some(1),
                eos_token_ids: vec![2],
                pad_token_id: Some(0),
            },
        };
        let text = hf.to_json_string();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["model_type"], "llama");
        assert_eq!(v["architectures"][0], "LlamaForCausalLM");
        assert_eq!(v["dtype"], "float32");
        assert_eq!(v["rope_parameters"]["rope_type"], "default");
        assert_eq!(HfConfig::from_json_str(&text).unwrap(), hf);
    }
}

#[test]
fn loads_reference_checkpoints() {
    for name in ["tiny-llama", "tiny-llama-gqa-tied"] {
        let Some(dir) = reference_model(name) else {
            return;
        };
        let m = LlamaModel::<f32>::load(&dir).unwrap();
        let shapes = m.config.param_shapes();
        assert_eq!(m.params.len(), shapes.len());
        for (p, (n, s)) in m.params.iter().zip(&shapes) {
            assert_eq!((&p.name, p.shape()), (n, s.as_slice()));
        }
        // f64 loading gives the same numbers widened.
        let m64 = LlamaModel::<f64>::load(&dir).unwrap();
        assert_eq!(m64.params, m.params.cast::<f64>());
        // The file holds exactly these tensors (tied: no lm_head.weight).
        let file = SafetensorsFile::open(&dir.join("model.safetensors")).unwrap();
        assert_eq!(file.names().len(), shapes.len());
        assert_eq!(
            file.contains("lm_head.weight"),
            !m.config.tie_word_embeddings
        );
        // Save and reload: bit-identical.
        let out = temp_dir(&format!("ref-{name}"));
        m.save(&out).unwrap();
        let back = LlamaModel::<f32>::load(&out).unwrap();
        assert_eq!(back, m);
        // The saved config parses to the same config as the original.
        let orig = HfConfig::from_file(&dir.join("config.json")).unwrap();
        assert_eq!(back.hf_config(), orig);
        // Same keys as transformers' own config.json (its version stamp aside),
        // and the safetensors metadata transformers requires.
        let keys = |p: &Path| -> Vec<String> {
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.retain(|k| k != "transformers_version");
            k.sort();
            k
        };
        assert_eq!(
            keys(&out.join("config.json")),
            keys(&dir.join("config.json"))
        );
        let saved = SafetensorsFile::open(&out.join("model.safetensors")).unwrap();
        assert_eq!(
            saved.metadata().get("format").map(String::as_str),
            Some("pt")
        );
        assert_eq!(saved.names(), file.names());
        // In fact the weights file is byte-for-byte what transformers wrote.
        assert!(
            std::fs::read(out.join("model.safetensors")).unwrap()
                == std::fs::read(dir.join("model.safetensors")).unwrap(),
            "{name}: re-saved model.safetensors differs from transformers' file"
        );
        std::fs::remove_dir_all(&out).unwrap();
    }
}

#[test]
fn save_load_round_trip_f32_and_f64() {
    for tied in [false, true] {
        let cfg = tiny_config(tied);
        let m = LlamaModel::<f64>::init(cfg.clone(), HfExtras::default(), 11).unwrap();
        let dir = temp_dir(&format!("rt-{tied}"));
        m.save(&dir).unwrap();
        let file = SafetensorsFile::open(&dir.join("model.safetensors")).unwrap();
        assert_eq!(file.contains("lm_head.weight"), !tied);
        assert!(file.names().iter().all(|n| file.dtype(n).unwrap() == "F32"));
        // Files are f32: the f64 model comes back rounded to f32.
        let back = LlamaModel::<f64>::load(&dir).unwrap();
        let rounded: ParamStore<f64> = m.params.cast::<f32>().cast();
        assert_eq!(back.params, rounded);
        let back32 = LlamaModel::<f32>::load(&dir).unwrap();
        assert_eq!(back32.params, m.params.cast::<f32>());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

fn write(path: &Path, tensors: &[OutTensor]) {
    std::fs::write(path, serialize_tensors(tensors).unwrap()).unwrap();
}

fn model_tensors(cfg: &LlamaConfig, seed: u64) -> Vec<OutTensor> {
    let p: ParamStore<f32> = init_params(cfg, &HfExtras::default(), seed);
    p.iter()
        .map(|t| OutTensor::f32(t.name.clone(), t.shape(), t.as_slice().to_vec()))
        .collect()
}

#[test]
fn weight_errors_name_the_tensor() {
    let cfg = tiny_config(false);
    let dir = temp_dir("errors");
    let path = dir.join("w.safetensors");
    let good = model_tensors(&cfg, 3);

    // Missing.
    let missing: Vec<_> = good
        .iter()
        .filter(|t| t.name != "model.layers.1.mlp.up_proj.weight")
        .cloned()
        .collect();
    write(&path, &missing);
    match load_params::<f32>(&path, &cfg) {
        Err(SafetensorsError::Missing { name, .. }) => {
            assert_eq!(name, "model.layers.1.mlp.up_proj.weight")
        }
        other => panic!("expected Missing, got {other:?}"),
    }

    // Extra.
    let mut extra = good.clone();
    extra.push(OutTensor::f32(
        "model.layers.0.self_attn.q_proj.bias",
        &[16],
        vec![0.0; 16],
    ));
    write(&path, &extra);
    match load_params::<f32>(&path, &cfg) {
        Err(SafetensorsError::Unexpected { name, .. }) => {
            assert_eq!(name, "model.layers.0.self_attn.q_proj.bias")
        }
        other => panic!("expected Unexpected, got {other:?}"),
    }

    // Wrong shape (same element count, transposed).
    let mut shaped = good.clone();
    let k = shaped
        .iter_mut()
        .find(|t| t.name == "model.layers.0.mlp.down_proj.weight")
        .unwrap();
    k.shape = vec![24, 16];
    write(&path, &shaped);
    match load_params::<f32>(&path, &cfg) {
        Err(SafetensorsError::Shape {
            name,
            got,
            expected,
            ..
        }) => {
            assert_eq!(name, "model.layers.0.mlp.down_proj.weight");
            assert_eq!((got, expected), (vec![24, 16], vec![16, 24]));
        }
        other => panic!("expected Shape, got {other:?}"),
    }

    // Unsupported dtype for a weight.
    let mut ints = good.clone();
    let n = ints
        .iter()
        .position(|t| t.name == "model.norm.weight")
        .unwrap();
    ints[n] = OutTensor::i64("model.norm.weight", &[16], vec![1; 16]);
    write(&path, &ints);
    match load_params::<f32>(&path, &cfg) {
        Err(SafetensorsError::Dtype { name, dtype, .. }) => {
            assert_eq!(
                (name.as_str(), dtype.as_str()),
                ("model.norm.weight", "I64")
            )
        }
        other => panic!("expected Dtype, got {other:?}"),
    }

    // Saving a store that does not match the config.
    let mut store: ParamStore<f32> = init_params(&cfg, &HfExtras::default(), 1);
    store.insert_vec("extra", &[1], vec![0.0]).unwrap();
    assert!(matches!(
        save_params(&path, &cfg, &store),
        Err(SafetensorsError::Write { name, .. }) if name == "extra"
    ));
    let small: ParamStore<f32> = init_params(&tiny_config(true), &HfExtras::default(), 1);
    assert!(matches!(
        save_params(&path, &cfg, &small),
        Err(SafetensorsError::Write { name, .. }) if name == "lm_head.weight"
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tied_lm_head_in_file_must_equal_embedding() {
    let cfg = tiny_config(true);
    let dir = temp_dir("tied");
    let path = dir.join("w.safetensors");
    let mut tensors = model_tensors(&cfg, 5);
    let embed = tensors
        .iter()
        .find(|t| t.name == "model.embed_tokens.weight")
        .unwrap()
        .clone();
    // Absent: fine (what transformers writes).
    write(&path, &tensors);
    let base = load_params::<f32>(&path, &cfg).unwrap();
    // Present and equal: accepted, same parameters.
    tensors.push(OutTensor {
        name: "lm_head.weight".into(),
        ..embed.clone()
    });
    write(&path, &tensors);
    assert_eq!(load_params::<f32>(&path, &cfg).unwrap(), base);
    // Present and different: rejected.
    let last = tensors.last_mut().unwrap();
    if let mofo::model::safetensors_io::TensorData::F32(v) = &mut last.data {
        v[7] += 1.0;
    }
    write(&path, &tensors);
    assert!(matches!(
        load_params::<f32>(&path, &cfg),
        Err(SafetensorsError::TiedMismatch { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn half_precision_files_are_converted() {
    // A file with one BF16 and one F16 tensor, written byte by byte.
    let header = r#"{"a":{"dtype":"BF16","shape":[3],"data_offsets":[0,6]},"b":{"dtype":"F16","shape":[2],"data_offsets":[6,10]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    for bits in [0x3f80u16, 0xc040, 0x3e80, 0x3c00, 0xb800] {
        bytes.extend_from_slice(&bits.to_le_bytes());
    }
    let dir = temp_dir("half");
    let path = dir.join("h.safetensors");
    std::fs::write(&path, &bytes).unwrap();
    let f = SafetensorsFile::open(&path).unwrap();
    let a = f.read_float::<f64>("a").unwrap();
    assert_eq!(a.as_slice().unwrap(), &[1.0, -3.0, 0.25]);
    let b = f.read_float::<f32>("b").unwrap();
    assert_eq!(b.as_slice().unwrap(), &[1.0, -0.5]);
    assert!(matches!(
        f.read_i64("a"),
        Err(SafetensorsError::Dtype { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corrupt_files_give_typed_errors() {
    let cfg = tiny_config(false);
    let dir = temp_dir("corrupt");
    let path = dir.join("c.safetensors");
    let good = serialize_tensors(&model_tensors(&cfg, 9)).unwrap();

    let check = |bytes: &[u8], what: &str| {
        std::fs::write(&path, bytes).unwrap();
        match load_params::<f32>(&path, &cfg) {
            Err(e @ (SafetensorsError::Corrupt { .. } | SafetensorsError::Format { .. })) => {
                eprintln!("{what}: {e}")
            }
            other => panic!("{what}: expected Corrupt/Format, got {other:?}"),
        }
    };
    check(&[], "empty");
    check(&good[..5], "shorter than the length prefix");
    check(&good[..100], "truncated header");
    check(&good[..good.len() - 1], "truncated data");
    let mut longer = good.clone();
    longer.push(0);
    check(&longer, "trailing byte");
    // A header length far beyond the file: rejected before any allocation.
    let mut huge = good.clone();
    huge[..8].copy_from_slice(&(u64::MAX - 3).to_le_bytes());
    check(&huge, "huge header length");
    let mut garbage = good.clone();
    garbage[8] = b'#';
    check(&garbage, "header not JSON");
    // Offsets that overlap or lie: the crate's validation catches them.
    let header = r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}}"#;
    let mut lying = (header.len() as u64).to_le_bytes().to_vec();
    lying.extend_from_slice(header.as_bytes());
    lying.extend_from_slice(&[0u8; 8]);
    check(&lying, "shape and offsets disagree");

    assert!(matches!(
        load_params::<f32>(&dir.join("absent.safetensors"), &cfg),
        Err(SafetensorsError::Io { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn model_dir_errors() {
    let dir = temp_dir("dir");
    // No config.
    assert!(matches!(
        LlamaModel::<f32>::load(&dir),
        Err(ModelIoError::Config(HfConfigError::Io { .. }))
    ));
    // Config without weights.
    let hf = HfConfig {
        model: tiny_config(false),
        extras: HfExtras::default(),
    };
    std::fs::write(dir.join("config.json"), hf.to_json_string()).unwrap();
    assert!(matches!(
        LlamaModel::<f32>::load(&dir),
        Err(ModelIoError::Weights(SafetensorsError::Io { .. }))
    ));
    // Sharded checkpoint.
    std::fs::write(dir.join("model.safetensors.index.json"), "{}").unwrap();
    assert!(matches!(
        LlamaModel::<f32>::load(&dir),
        Err(ModelIoError::Sharded(_))
    ));
    // Weights of another config.
    std::fs::remove_file(dir.join("model.safetensors.index.json")).unwrap();
    let other = LlamaModel::<f32>::init(tiny_config(true), HfExtras::default(), 0).unwrap();
    save_params(&dir.join("model.safetensors"), &other.config, &other.params).unwrap();
    assert!(matches!(
        LlamaModel::<f32>::load(&dir),
        Err(ModelIoError::Weights(SafetensorsError::Missing { name, .. })) if name == "lm_head.weight"
    ));
    // Invalid config or extras built in code.
    let mut bad = tiny_config(false);
    bad.num_key_value_heads = 3;
    assert!(LlamaModel::<f32>::init(bad, HfExtras::default(), 0).is_err());
    let bad_pad = HfExtras {
        pad_token_id: Some(40),
        ..HfExtras::default()
    };
    assert!(matches!(
        LlamaModel::<f32>::init(tiny_config(false), bad_pad, 0),
        Err(HfConfigError::Invalid { field, .. }) if field == "pad_token_id"
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn init_is_deterministic_and_transformers_like() {
    let cfg = tiny_config(false);
    let extras = HfExtras {
        initializer_range: 0.02,
        pad_token_id: Some(3),
        ..HfExtras::default()
    };
    let a: ParamStore<f32> = init_params(&cfg, &extras, 42);
    let b: ParamStore<f32> = init_params(&cfg, &extras, 42);
    let c: ParamStore<f32> = init_params(&cfg, &extras, 43);
    assert_eq!(a, b);
    assert_ne!(a, c);
    // f64 from the same seed: the same draws, unrounded.
    let a64: ParamStore<f64> = init_params(&cfg, &extras, 42);
    assert_eq!(a64.cast::<f32>(), a);
    // Tying only removes lm_head; the other tensors are unchanged.
    let tied: ParamStore<f32> = init_params(&tiny_config(true), &extras, 42);
    for p in tied.iter() {
        assert_eq!(a.get(&p.name).unwrap(), p);
    }
    let mut all = Vec::new();
    for p in a.iter() {
        if p.name.contains("norm") {
            assert!(p.as_slice().iter().all(|&x| x == 1.0), "{}", p.name);
        } else {
            all.extend(p.as_slice().iter().map(|&x| x as f64));
        }
    }
    let embed = a.get("model.embed_tokens.weight").unwrap().as_slice();
    assert!(embed[3 * 16..4 * 16].iter().all(|&x| x == 0.0));
    assert!(embed[2 * 16..3 * 16].iter().all(|&x| x != 0.0));
    let n = all.len() as f64;
    let mean = all.iter().sum::<f64>() / n;
    let sd = (all.iter().map(|x| x * x).sum::<f64>() / n - mean * mean).sqrt();
    assert!(mean.abs() < 0.002, "mean {mean}");
    assert!((sd - 0.02).abs() < 0.001, "sd {sd}");
    // Different tensors get different draws.
    let q = a.get("model.layers.0.self_attn.q_proj.weight").unwrap();
    let k = a.get("model.layers.1.self_attn.q_proj.weight").unwrap();
    assert_ne!(q.as_slice()[..8], k.as_slice()[..8]);
}

#[test]
fn cli_init_model_writes_the_seeded_model() {
    let dir = temp_dir("cli-init");
    let hf = HfConfig {
        model: tiny_config(true),
        extras: HfExtras {
            initializer_range: 0.1,
            bos_token_id: Some(1),
            eos_token_ids: vec![2],
            pad_token_id: None,
        },
    };
    let config = dir.join("in.json");
    std::fs::write(&config, hf.to_json_string()).unwrap();
    let out = dir.join("model");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_mofo"))
        .args(["init-model", "--seed", "17", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let loaded = LlamaModel::<f32>::load(&out).unwrap();
    let expected = LlamaModel::<f32>::init(hf.model.clone(), hf.extras.clone(), 17).unwrap();
    assert_eq!(loaded, expected);

    // A config we do not implement: a non-zero exit and a message naming it.
    let bad = dir.join("bad.json");
    let mut v = hf.to_json_value();
    v["hidden_act"] = "gelu".into();
    std::fs::write(&bad, v.to_string()).unwrap();
    let res = std::process::Command::new(env!("CARGO_BIN_EXE_mofo"))
        .args(["init-model", "--config"])
        .arg(&bad)
        .arg("--out")
        .arg(dir.join("never"))
        .output()
        .unwrap();
    assert!(!res.status.success());
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(stderr.contains("hidden_act"), "{stderr}");
    assert!(!dir.join("never").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn good_file() -> Vec<u8> {
        serialize_tensors(&model_tensors(&tiny_config(true), 2)).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Truncated or corrupted files give an error or a model, never a panic.
        #[test]
        fn corrupt_bytes_never_panic(
            cut in 0usize..4000,
            flips in proptest::collection::vec((0usize..4000, any::<u8>()), 0..6),
        ) {
            let mut bytes = good_file();
            for (at, v) in flips {
                let n = bytes.len();
                bytes[at % n] = v;
            }
            if cut < bytes.len() && cut % 3 == 0 {
                bytes.truncate(cut);
            }
            let path = Path::new("fuzz.safetensors");
            let cfg = tiny_config(true);
            if let Ok(file) = SafetensorsFile::from_bytes(path, bytes) {
                let _ = mofo::model::safetensors_io::params_from_file::<f32>(&file, &cfg);
                for name in file.names() {
                    let _ = file.read_float::<f64>(name);
                    let _ = file.read_i64(name);
                }
            }
        }

        /// Any valid config survives init → save → load bit for bit (f32).
        #[test]
        fn random_configs_round_trip(
            vocab in 1usize..40,
            kv in 1usize..3,
            group in 1usize..3,
            half_dim in 1usize..4,
            hidden in 1usize..12,
            mlp in 1usize..10,
            layers in 1usize..3,
            tied in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let cfg = LlamaConfig {
                vocab_size: vocab,
                hidden_size: hidden,
                intermediate_size: mlp,
                num_hidden_layers: layers,
                num_attention_heads: kv * group,
                num_key_value_heads: kv,
                head_dim: 2 * half_dim,
                rms_norm_eps: 1e-6,
                rope_theta: 10000.0,
                tie_word_embeddings: tied,
                max_position_embeddings: 16,
            };
            let m = LlamaModel::<f32>::init(cfg, HfExtras::default(), seed).unwrap();
            let dir = temp_dir(&format!("prop-{seed}"));
            m.save(&dir).unwrap();
            let back = LlamaModel::<f32>::load(&dir).unwrap();
            std::fs::remove_dir_all(&dir).unwrap();
            prop_assert_eq!(back, m);
        }
    }
}
