//! The key/value-cached inference forward against transformers' reference
//! logits (which also validates the checkpoint loader), and generation.

use std::path::{Path, PathBuf};

use mofo::model::generate::{
    argmax, continuation_logprob, continuation_logprobs, generate_greedy, generate_greedy_batch,
    generate_with, sequence_logits, Decoder, GenerateError, Sampling,
};
use mofo::model::safetensors_io::SafetensorsFile;
use mofo::model::{HfExtras, LlamaConfig, LlamaModel};
use mofo::Scalar;
use ndarray::{Array2, Axis};

/// `../shared/reference/models/<name>`, or `None` (skip) when absent outside CI.
fn reference_model(name: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/reference/models")
        .join(name);
    if dir.join("reference.safetensors").exists() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("reference model {} is missing (CI=true)", dir.display());
    }
    eprintln!("skipping: reference model {} not found", dir.display());
    None
}

const MODELS: [&str; 2] = ["tiny-llama", "tiny-llama-gqa-tied"];

/// Reference input ids `[B, T]` and logits `[B, T, V]`.
fn reference(dir: &Path) -> (Vec<Vec<u32>>, ndarray::ArrayD<f64>) {
    let f = SafetensorsFile::open(&dir.join("reference.safetensors")).unwrap();
    let ids = f.read_i64("input_ids").unwrap();
    let rows = ids
        .outer_iter()
        .map(|r| r.iter().map(|&t| u32::try_from(t).unwrap()).collect())
        .collect();
    (rows, f.read_float::<f64>("logits").unwrap())
}

fn max_abs_diff<T: Scalar>(ours: &Array2<T>, reference: &ndarray::ArrayViewD<f64>) -> f64 {
    assert_eq!(ours.shape(), reference.shape());
    ours.iter()
        .zip(reference.iter())
        .map(|(a, b)| (a.as_f64() - b).abs())
        .fold(0.0, f64::max)
}

/// Logits of `ids` fed to one cache in chunks of the given sizes.
fn chunked<T: Scalar>(decoder: &Decoder<'_, T>, ids: &[u32], chunks: &[usize]) -> Array2<T> {
    let mut cache = decoder.new_cache();
    let mut parts = Vec::new();
    let mut at = 0;
    for &c in chunks {
        parts.push(decoder.forward(&mut cache, &ids[at..at + c]).unwrap());
        at += c;
    }
    assert_eq!(at, ids.len());
    assert_eq!(cache.len(), ids.len());
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    ndarray::concatenate(Axis(0), &views).unwrap()
}

fn parity<T: Scalar>(name: &str) -> Option<f64> {
    let dir = reference_model(name)?;
    let model = LlamaModel::<T>::load(&dir).unwrap();
    let (ids, logits) = reference(&dir);
    let decoder = Decoder::new(&model.config, &model.params).unwrap();
    let mut worst: f64 = 0.0;
    for (b, row) in ids.iter().enumerate() {
        let expected = logits.index_axis(Axis(0), b);
        let one_by_one = chunked(&decoder, row, &vec![1; row.len()]);
        let whole = chunked(&decoder, row, &[row.len()]);
        let mixed = chunked(&decoder, row, &[7, 1, 10, 6]);
        for (how, ours) in [
            ("token by token", &one_by_one),
            ("whole", &whole),
            ("mixed", &mixed),
        ] {
            let err = max_abs_diff(ours, &expected);
            eprintln!(
                "{name} {} batch row {b} {how}: max |Δlogit| = {err:.3e}",
                T::NAME
            );
            assert!(err <= 1e-4, "{name} {how}: {err}");
            worst = worst.max(err);
        }
    }
    Some(worst)
}

#[test]
fn kv_cache_logits_match_transformers_f32() {
    for name in MODELS {
        parity::<f32>(name);
    }
}

#[test]
fn kv_cache_logits_match_transformers_f64() {
    for name in MODELS {
        parity::<f64>(name);
    }
}

fn small_model(tied: bool, seed: u64) -> LlamaModel<f64> {
    let cfg = LlamaConfig {
        vocab_size: 32,
        hidden_size: 16,
        intermediate_size: 24,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 4,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        tie_word_embeddings: tied,
        max_position_embeddings: 20,
    };
    let extras = HfExtras {
        initializer_range: 0.5,
        ..HfExtras::default()
    };
    LlamaModel::init(cfg, extras, seed).unwrap()
}

/// Greedy generation by the definition: re-run the whole sequence without a
/// cache and take the argmax of the last position, each step.
fn greedy_without_cache(model: &LlamaModel<f64>, prompt: &[u32], max_new: usize) -> Vec<u32> {
    let mut seq = prompt.to_vec();
    for _ in 0..max_new {
        let logits = sequence_logits(model, &seq).unwrap();
        let last = logits.row(seq.len() - 1).to_vec();
        seq.push(argmax(&last) as u32);
    }
    seq[prompt.len()..].to_vec()
}

#[test]
fn greedy_generation_equals_uncached_argmax() {
    for tied in [false, true] {
        let model = small_model(tied, 7);
        let prompt = [3, 1, 4, 1, 5];
        let got = generate_greedy(&model, &prompt, 8, None).unwrap();
        assert_eq!(got.len(), 8);
        assert_eq!(got, greedy_without_cache(&model, &prompt, 8));
        // A stop token ends generation before it.
        let stop = got[3];
        let first = got.iter().position(|&t| t == stop).unwrap();
        let cut = generate_greedy(&model, &prompt, 8, Some(stop)).unwrap();
        assert_eq!(cut, got[..first].to_vec());
        // f32 agrees with f64 on this well-separated small model.
        let m32 = model.cast::<f32>();
        assert_eq!(generate_greedy(&m32, &prompt, 8, None).unwrap(), got);
    }
}

#[test]
fn greedy_stops_at_max_position_embeddings() {
    let model = small_model(false, 3);
    let prompt: Vec<u32> = (0..17).collect();
    let got = generate_greedy(&model, &prompt, 10, None).unwrap();
    assert_eq!(got.len(), 3, "20 positions in all");
    let full: Vec<u32> = (0..20).collect();
    assert!(generate_greedy(&model, &full, 10, None).unwrap().is_empty());
    let too_long: Vec<u32> = (0..21).map(|i| i % 32).collect();
    assert_eq!(
        generate_greedy(&model, &too_long, 1, None),
        Err(GenerateError::TooLong { len: 21, max: 20 })
    );
}

#[test]
fn batched_greedy_equals_one_by_one() {
    let model = small_model(true, 11);
    let prompts: Vec<Vec<u32>> = vec![vec![1], vec![2, 3, 4], vec![31, 0, 7, 7], vec![5; 9]];
    let batch = generate_greedy_batch(&model, &prompts, 6, Some(0)).unwrap();
    for (p, b) in prompts.iter().zip(&batch) {
        assert_eq!(*b, generate_greedy(&model, p, 6, Some(0)).unwrap());
    }
    let bad = vec![vec![1], vec![]];
    assert_eq!(
        generate_greedy_batch(&model, &bad, 2, None),
        Err(GenerateError::EmptyPrompt)
    );
}

#[test]
fn sampling_is_seeded_and_reduces_to_greedy() {
    let model = small_model(false, 5);
    let decoder = Decoder::new(&model.config, &model.params).unwrap();
    let prompt = [9, 8, 7];
    let s = |temperature, top_k, seed| Sampling {
        temperature,
        top_k,
        seed,
    };
    let run = |sampling: &Sampling| {
        generate_with(&decoder, &prompt, 12, &[], sampling)
            .unwrap()
            .tokens
    };
    let greedy = run(&Sampling::greedy());
    assert_eq!(run(&s(1.0, Some(1), 4)), greedy);
    let a = run(&s(1.5, None, 4));
    assert_eq!(a, run(&s(1.5, None, 4)));
    // Different seeds give different continuations here (checked for these seeds).
    let others: Vec<_> = (5..10).map(|seed| run(&s(1.5, None, seed))).collect();
    assert!(others.iter().any(|o| *o != a));
    // Temperature → 0⁺ approaches greedy.
    assert_eq!(run(&s(1e-6, None, 4)), greedy);
}

#[test]
fn bad_inputs_are_errors() {
    let model = small_model(false, 1);
    assert_eq!(
        generate_greedy(&model, &[1, 32], 1, None),
        Err(GenerateError::TokenOutOfRange {
            token: 32,
            vocab: 32
        })
    );
    assert_eq!(
        generate_greedy(&model, &[], 1, None),
        Err(GenerateError::EmptyPrompt)
    );
    let decoder = Decoder::new(&model.config, &model.params).unwrap();
    let bad = Sampling {
        temperature: -1.0,
        top_k: None,
        seed: 0,
    };
    assert!(matches!(
        generate_with(&decoder, &[1], 1, &[], &bad),
        Err(GenerateError::Sampling(_))
    ));
    // A cache is unchanged by a rejected call.
    let mut cache = decoder.new_cache();
    decoder.forward(&mut cache, &[1, 2]).unwrap();
    assert!(decoder.forward(&mut cache, &[40]).is_err());
    assert_eq!(cache.len(), 2);
    // Parameters that do not match the config.
    let mut params = model.params.clone();
    let other = small_model(true, 1);
    // An extra lm_head is simply unused by a tied config.
    assert!(Decoder::new(&other.config, &params).is_ok());
    params = other.params.clone();
    assert!(matches!(
        Decoder::new(&model.config, &params),
        Err(GenerateError::Params(_))
    ));
}

fn mofo(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_mofo"))
        .args(args)
        .output()
        .unwrap()
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mofo-generate-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn cli_forward_matches_reference() {
    for name in MODELS {
        let Some(dir) = reference_model(name) else {
            return;
        };
        let (ids, logits) = reference(&dir);
        let f = SafetensorsFile::open(&dir.join("reference.safetensors")).unwrap();
        let ref_loss = f.read_float::<f64>("loss").unwrap()[[0]];
        let tmp = temp_dir(&format!("fwd-{name}"));
        let ids_path = tmp.join("ids.json");
        std::fs::write(&ids_path, serde_json::to_string(&ids).unwrap()).unwrap();
        let out = tmp.join("out.safetensors");
        for (dtype, no_grad) in [("f32", false), ("f64", false), ("f32", true), ("f64", true)] {
            let mut args = vec![
                "forward",
                "--model",
                dir.to_str().unwrap(),
                "--input-ids",
                ids_path.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--dtype",
                dtype,
            ];
            if no_grad {
                args.push("--no-grad");
            }
            let res = mofo(&args);
            assert!(res.status.success(), "{res:?}");
            let o = SafetensorsFile::open(&out).unwrap();
            assert_eq!(o.dtype("logits").unwrap(), "F32");
            assert_eq!(
                o.read_i64("input_ids").unwrap(),
                f.read_i64("input_ids").unwrap()
            );
            let ours = o.read_float::<f64>("logits").unwrap();
            let err = ours
                .iter()
                .zip(logits.iter())
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            let loss = o.read_float::<f64>("loss").unwrap()[[0]];
            // Gradients: every reference grad.* present, within 1e-4·max(1, max|g|).
            let mut worst_grad: f64 = 0.0;
            let grad_names: Vec<&str> = f
                .names()
                .into_iter()
                .filter(|n| n.starts_with("grad."))
                .collect();
            assert!(!grad_names.is_empty());
            for g in &grad_names {
                if no_grad {
                    assert!(!o.contains(g), "{g} written with --no-grad");
                    continue;
                }
                let expected = f.read_float::<f64>(g).unwrap();
                let got = o.read_float::<f64>(g).unwrap();
                assert_eq!(got.shape(), expected.shape(), "{g}");
                let scale = expected.iter().fold(1.0f64, |m, x| m.max(x.abs()));
                let e = got
                    .iter()
                    .zip(expected.iter())
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f64::max)
                    / scale;
                assert!(e <= 1e-4, "{name} {dtype} {g}: {e}");
                worst_grad = worst_grad.max(e);
            }
            if !no_grad {
                assert_eq!(o.names().len(), 3 + grad_names.len());
            }
            eprintln!(
                "{name} {dtype} no_grad={no_grad}: max |Δlogit| {err:.3e}, |Δloss| {:.3e}, \
                 max scaled |Δgrad| {worst_grad:.3e}",
                (loss - ref_loss).abs()
            );
            assert!(err <= 1e-4);
            assert!((loss - ref_loss).abs() <= 1e-5, "{loss} vs {ref_loss}");
        }
        // Validation errors reach the user as messages.
        std::fs::write(&ids_path, "[[1, 2, 3], [4, 5]]").unwrap();
        let res = mofo(&[
            "forward",
            "--model",
            dir.to_str().unwrap(),
            "--input-ids",
            ids_path.to_str().unwrap(),
            "--out",
            tmp.join("x.safetensors").to_str().unwrap(),
        ]);
        assert!(!res.status.success());
        assert!(String::from_utf8_lossy(&res.stderr).contains("sequence 1 has length 2"));
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}

#[test]
fn cli_generate_ids_and_text() {
    let tmp = temp_dir("cli-gen");
    // A model whose vocabulary covers the byte tokenizer (259 ids).
    let mut model = small_model(false, 21);
    model.config.vocab_size = 259;
    let model = LlamaModel::<f32>::init(model.config, model.extras, 21).unwrap();
    model.save(&tmp).unwrap();
    let dir = tmp.to_str().unwrap();

    let res = mofo(&[
        "generate",
        "--model",
        dir,
        "--prompt-ids",
        "5,6,7",
        "--max-new-tokens",
        "5",
        "--json",
    ]);
    assert!(res.status.success(), "{res:?}");
    let v: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
    let new: Vec<u32> = serde_json::from_value(v["new_ids"].clone()).unwrap();
    assert_eq!(new, generate_greedy(&model, &[5, 6, 7], 5, None).unwrap());

    let res = mofo(&[
        "generate",
        "--model",
        dir,
        "--prompt",
        "hi",
        "--max-new-tokens",
        "4",
        "--json",
        "--temperature",
        "0.8",
        "--top-k",
        "5",
        "--seed",
        "3",
    ]);
    assert!(res.status.success(), "{res:?}");
    let v: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
    assert_eq!(v["prompt_ids"], serde_json::json!([104, 105]));
    assert!(v["text"].is_string());
    let again = mofo(&[
        "generate",
        "--model",
        dir,
        "--prompt",
        "hi",
        "--max-new-tokens",
        "4",
        "--json",
        "--temperature",
        "0.8",
        "--top-k",
        "5",
        "--seed",
        "3",
    ]);
    assert_eq!(again.stdout, res.stdout, "same seed, same output");

    // Errors: an id outside the vocabulary, a bad temperature, no prompt.
    let res = mofo(&["generate", "--model", dir, "--prompt-ids", "1,300"]);
    assert!(!res.status.success());
    assert!(String::from_utf8_lossy(&res.stderr).contains("token id 300"));
    let res = mofo(&[
        "generate",
        "--model",
        dir,
        "--prompt-ids",
        "1",
        "--temperature=-1",
    ]);
    assert!(!res.status.success());
    assert!(String::from_utf8_lossy(&res.stderr).contains("temperature"));
    assert!(!mofo(&["generate", "--model", dir]).status.success());
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn continuation_logprob_sums_next_token_log_softmax() {
    let model = small_model(true, 13);
    let decoder = Decoder::new(&model.config, &model.params).unwrap();
    let (prompt, cont) = ([4u32, 9, 2], [7u32, 7, 1]);
    // By the definition, one token at a time from the full-sequence logits.
    let mut seq = prompt.to_vec();
    let mut expected = 0.0;
    for &t in &cont {
        let logits = sequence_logits(&model, &seq).unwrap();
        let row = logits.row(seq.len() - 1);
        let z: f64 = row.iter().map(|x| x.exp()).sum();
        expected += (row[t as usize].exp() / z).ln();
        seq.push(t);
    }
    let got = continuation_logprob(&decoder, &prompt, &cont).unwrap();
    assert!((got - expected).abs() < 1e-10, "{got} vs {expected}");
    assert!(got < 0.0);
    let items = vec![(prompt.to_vec(), cont.to_vec()), (vec![1], vec![2, 3])];
    let many = continuation_logprobs(&model, &items).unwrap();
    assert_eq!(many[0], got);
    assert_eq!(
        many[1],
        continuation_logprob(&decoder, &[1], &[2, 3]).unwrap()
    );
    assert_eq!(continuation_logprob(&decoder, &prompt, &[]).unwrap(), 0.0);
    assert_eq!(
        continuation_logprob(&decoder, &[], &cont),
        Err(GenerateError::EmptyPrompt)
    );
}

#[test]
fn cli_generate_with_tokenizer_json() {
    let tmp = temp_dir("cli-tok");
    let mut model = small_model(true, 8);
    model.config.vocab_size = 7;
    model.extras.bos_token_id = Some(1);
    let model = LlamaModel::<f32>::init(model.config, model.extras, 8).unwrap();
    model.save(&tmp).unwrap();
    let added = |id: u32, content: &str| {
        serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true})
    };
    let tok = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [added(0, "[UNK]"), added(1, "<s>"), added(2, "</s>")],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "unk_token": "[UNK]",
            "vocab": {"[UNK]": 0, "<s>": 1, "</s>": 2, "a": 3, "b": 4, "c": 5, "d": 6}}
    });
    std::fs::write(tmp.join("tokenizer.json"), tok.to_string()).unwrap();
    let dir = tmp.to_str().unwrap();
    let res = mofo(&[
        "generate",
        "--model",
        dir,
        "--prompt",
        "a b c",
        "--add-bos",
        "--json",
        "--max-new-tokens",
        "6",
    ]);
    assert!(res.status.success(), "{res:?}");
    let v: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
    assert_eq!(v["prompt_ids"], serde_json::json!([1, 3, 4, 5]));
    // Stops before the tokenizer's EOS (</s> = 2); the text is the decoded ids.
    let new: Vec<u32> = serde_json::from_value(v["new_ids"].clone()).unwrap();
    let full = generate_greedy(&model, &[1, 3, 4, 5], 6, None).unwrap();
    let end = full.iter().position(|&t| t == 2).unwrap_or(full.len());
    assert_eq!(new, full[..end].to_vec());
    let words: Vec<&str> = new
        .iter()
        .filter(|&&t| t > 2)
        .map(|&t| ["a", "b", "c", "d"][t as usize - 3])
        .collect();
    assert_eq!(v["text"], words.join(" "));
    // A tokenizer larger than the model's vocabulary is refused.
    let mut big = tok.clone();
    big["model"]["vocab"]["e"] = 7.into();
    std::fs::write(tmp.join("tokenizer.json"), big.to_string()).unwrap();
    let res = mofo(&["generate", "--model", dir, "--prompt", "a"]);
    assert!(!res.status.success());
    assert!(String::from_utf8_lossy(&res.stderr).contains("vocabulary"));
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// The inference forward and the tape forward are written independently;
/// on configs the reference models do not cover (head_dim ≠ hidden/heads,
/// 3 query heads per key/value head, one layer, odd sizes) they must agree.
#[test]
fn kv_cache_forward_agrees_with_tape_forward() {
    let configs = [
        (24, 10, 6, 1, 6, 2, 6, false), // head_dim 6 with hidden 10, GQA 3:1
        (17, 8, 5, 3, 2, 1, 8, true),   // MQA, head_dim 8 = hidden
        (9, 6, 3, 2, 2, 2, 2, false),
    ];
    for (i, &(vocab, hidden, mlp, layers, heads, kv, head_dim, tied)) in configs.iter().enumerate()
    {
        let cfg = LlamaConfig {
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: mlp,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: kv,
            head_dim,
            rms_norm_eps: 1e-5,
            rope_theta: 500.0,
            tie_word_embeddings: tied,
            max_position_embeddings: 32,
        };
        let extras = HfExtras {
            initializer_range: 0.4,
            ..HfExtras::default()
        };
        let model = LlamaModel::<f64>::init(cfg, extras, 100 + i as u64).unwrap();
        let ids: Vec<Vec<u32>> = (0..2)
            .map(|b| {
                (0..11)
                    .map(|t| ((7 * t + 3 * b + i) % vocab) as u32)
                    .collect()
            })
            .collect();
        let flat: Vec<u32> = ids.iter().flatten().copied().collect();
        let batch = ndarray::Array2::from_shape_vec((2, 11), flat).unwrap();
        let tape = mofo::model::forward::logits(&model.config, &model.params, &batch).unwrap();
        let decoder = Decoder::new(&model.config, &model.params).unwrap();
        for (b, row) in ids.iter().enumerate() {
            let ours = chunked(&decoder, row, &[1; 11]);
            let theirs = tape.index_axis(Axis(0), b).into_dyn();
            let err = max_abs_diff(&ours, &theirs.view());
            assert!(err < 1e-10, "config {i} row {b}: {err}");
        }
    }
}
