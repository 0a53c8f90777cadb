//! Parity of the Llama forward/backward with Hugging Face transformers
//! (reference data in `../shared/reference/models/<name>/`): logits within
//! 1e-4, loss within 1e-5, every gradient within 1e-4·max(1, max|grad|), in
//! f32 and f64.

use std::collections::HashMap;
use std::path::PathBuf;

use mofo::model::forward::{logits, loss_and_grads, Batch};
use mofo::model::LlamaConfig;
use mofo::{ParamStore, Scalar};
use ndarray::Array2;
use safetensors::{Dtype, SafeTensors};

fn model_dir(name: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/reference/models")
        .join(name);
    let needed = ["config.json", "model.safetensors", "reference.safetensors"];
    if needed.iter().all(|f| dir.join(f).is_file()) {
        return Some(dir);
    }
    if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
        panic!("reference model {} missing (CI=true)", dir.display());
    }
    eprintln!("skipping: reference model {} not found", dir.display());
    None
}

fn parse_config(dir: &std::path::Path) -> LlamaConfig {
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let j: serde_json::Value = serde_json::from_str(&text).unwrap();
    let u = |k: &str| j[k].as_u64().unwrap_or_else(|| panic!("config.json: {k}")) as usize;
    let heads = u("num_attention_heads");
    let hidden = u("hidden_size");
    let theta = j["rope_parameters"]["rope_theta"]
        .as_f64()
        .or_else(|| j["rope_theta"].as_f64())
        .unwrap_or(10000.0);
    LlamaConfig {
        vocab_size: u("vocab_size"),
        hidden_size: hidden,
        intermediate_size: u("intermediate_size"),
        num_hidden_layers: u("num_hidden_layers"),
        num_attention_heads: heads,
        num_key_value_heads: j["num_key_value_heads"]
            .as_u64()
            .map(|x| x as usize)
            .unwrap_or(heads),
        head_dim: j["head_dim"]
            .as_u64()
            .map(|x| x as usize)
            .unwrap_or(hidden / heads),
        rms_norm_eps: j["rms_norm_eps"].as_f64().unwrap(),
        rope_theta: theta,
        tie_word_embeddings: j["tie_word_embeddings"].as_bool().unwrap_or(false),
        max_position_embeddings: u("max_position_embeddings"),
    }
}

/// Every tensor of a safetensors file as (shape, f64 values); i64 tensors too.
fn read_tensors(path: &std::path::Path) -> HashMap<String, (Vec<usize>, Vec<f64>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut out = HashMap::new();
    for name in st.names() {
        let t = st.tensor(name).unwrap();
        let data = t.data();
        let vals: Vec<f64> = match t.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            Dtype::I64 => data
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            other => panic!("{name}: unsupported dtype {other:?}"),
        };
        out.insert(name.to_string(), (t.shape().to_vec(), vals));
    }
    out
}

fn check_model<T: Scalar>(name: &str) {
    let Some(dir) = model_dir(name) else { return };
    let cfg = parse_config(&dir);
    let weights = read_tensors(&dir.join("model.safetensors"));
    let reference = read_tensors(&dir.join("reference.safetensors"));
    let mut params = ParamStore::<T>::new();
    for (pname, shape) in cfg.param_shapes() {
        let (s, v) = &weights[&pname];
        assert_eq!(s, &shape, "{pname}");
        params
            .insert_vec(pname, &shape, v.iter().map(|&x| T::of(x)).collect())
            .unwrap();
    }
    let (ids_shape, ids) = &reference["input_ids"];
    let input_ids = Array2::from_shape_vec(
        (ids_shape[0], ids_shape[1]),
        ids.iter().map(|&x| x as u32).collect(),
    )
    .unwrap();
    let out = loss_and_grads(&cfg, &params, &Batch::new(input_ids.clone())).unwrap();

    let (_, want_logits) = &reference["logits"];
    let logit_err = out
        .logits
        .iter()
        .zip(want_logits)
        .map(|(a, b)| (a.as_f64() - b).abs())
        .fold(0.0, f64::max);
    assert_eq!(out.logits.len(), want_logits.len());
    let want_loss = reference["loss"].1[0];
    let loss_err = (out.loss.as_f64() - want_loss).abs();
    let mut worst = (0.0f64, String::new());
    for (pname, shape) in cfg.param_shapes() {
        let (s, want) = &reference[&format!("grad.{pname}")];
        assert_eq!(s, &shape, "grad.{pname}");
        let got = out.grads.get(&pname).unwrap();
        assert_eq!(got.shape(), &shape[..]);
        let scale = want.iter().fold(1.0f64, |m, x| m.max(x.abs()));
        let err = got
            .as_slice()
            .iter()
            .zip(want)
            .map(|(a, b)| (a.as_f64() - b).abs())
            .fold(0.0, f64::max)
            / scale;
        assert!(
            err <= 1e-4,
            "{name} {}: grad {pname} relative error {err:.3e}",
            T::NAME
        );
        if err > worst.0 {
            worst = (err, pname);
        }
    }
    let no_grad = logits(&cfg, &params, &input_ids).unwrap();
    assert_eq!(
        no_grad, out.logits,
        "no_grad logits equal the recorded ones"
    );
    println!(
        "{name} {}: max |logit err| {logit_err:.3e}, |loss err| {loss_err:.3e}, worst grad err {:.3e} ({})",
        T::NAME,
        worst.0,
        worst.1
    );
    assert!(
        logit_err <= 1e-4,
        "{name} {}: logits error {logit_err:.3e}",
        T::NAME
    );
    assert!(
        loss_err <= 1e-5,
        "{name} {}: loss error {loss_err:.3e}",
        T::NAME
    );
    assert_eq!(out.grads.len(), params.len());
    params.check_same_layout(&out.grads).unwrap();
}

#[test]
fn tiny_llama_f32() {
    check_model::<f32>("tiny-llama");
}

#[test]
fn tiny_llama_f64() {
    check_model::<f64>("tiny-llama");
}

#[test]
fn tiny_llama_gqa_tied_f32() {
    check_model::<f32>("tiny-llama-gqa-tied");
}

#[test]
fn tiny_llama_gqa_tied_f64() {
    check_model::<f64>("tiny-llama-gqa-tied");
}
