//! `mofo train` on bad input: clear errors, never a panic, and no
//! checkpoint written over a good one.

use clap::Parser;
use mofo::cli::{run, Cli};
use mofo::model::{HfExtras, LlamaConfig};
use mofo::train::llama::LlamaTrainModel;
use mofo::train::TrainableModel;
use std::path::{Path, PathBuf};

fn tiny_model(dir: &Path, vocab: usize) -> PathBuf {
    let m = LlamaTrainModel {
        config: LlamaConfig {
            vocab_size: vocab,
            hidden_size: 8,
            intermediate_size: 16,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            num_key_value_heads: 2,
            head_dim: 4,
            rms_norm_eps: 1e-6,
            rope_theta: 10000.0,
            tie_word_embeddings: true,
            max_position_embeddings: 64,
        },
        extras: HfExtras::default(),
    };
    let p = m.init(1).unwrap();
    let d = dir.join(format!("model-{vocab}"));
    m.save(&p, &d).unwrap();
    d
}

fn train(args: &[&str]) -> Result<(), String> {
    let mut argv = vec!["mofo", "train", "--quiet"];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
    run(cli).map_err(|e| {
        let mut s = e.to_string();
        let mut src = e.source();
        while let Some(c) = src {
            s.push_str(&format!(": {c}"));
            src = c.source();
        }
        s
    })
}

#[test]
fn bad_files_and_flags_get_clear_errors() {
    let dir = std::env::temp_dir().join(format!("mofo-train-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let model = tiny_model(&dir, 259);
    let model_s = model.to_str().unwrap();
    let file = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    };
    let out = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let good = file(
        "good.txt",
        "the quick brown fox jumps over the lazy dog. "
            .repeat(20)
            .as_bytes(),
    );
    let base = |data: &str, o: &str| -> Vec<String> {
        [
            "--data",
            data,
            "--model",
            model_s,
            "--out",
            o,
            "--steps",
            "2",
            "--seq-len",
            "16",
            "--batch-size",
            "2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let call = |v: Vec<String>| train(&v.iter().map(String::as_str).collect::<Vec<_>>());

    let e = call(base(&file("empty.txt", b""), &out("o1"))).unwrap_err();
    assert!(e.contains("is empty"), "{e}");
    let e = call(base(&file("blank.txt", b" \n\n "), &out("o1"))).unwrap_err();
    assert!(e.contains("is empty"), "{e}");
    let e = call(base(&file("latin1.txt", b"caf\xe9 au lait"), &out("o1"))).unwrap_err();
    assert!(e.contains("not UTF-8") && e.contains("byte 3"), "{e}");
    let e = call(base(&file("short.txt", b"tiny"), &out("o1"))).unwrap_err();
    assert!(e.contains("fewer than one sequence"), "{e}");
    let e = call(base(&dir.join("missing.txt").to_string_lossy(), &out("o1"))).unwrap_err();
    assert!(e.contains("cannot read"), "{e}");

    // A model whose vocabulary is smaller than the tokenizer's.
    let small = tiny_model(&dir, 100);
    let mut v = base(&good, &out("o2"));
    v[3] = small.to_str().unwrap().to_string();
    let e = call(v).unwrap_err();
    assert!(e.contains("outside the model's vocabulary of 100"), "{e}");

    let e = train(&["--data", &good, "--out", &out("o3")]).unwrap_err();
    assert!(e.contains("--model") && e.contains("--config"), "{e}");
    let mut v = base(&good, &out("o3"));
    v.extend(["--optimizer".into(), "sgdx".into()]);
    assert!(call(v).unwrap_err().contains("unknown --optimizer"));
    let mut v = base(&good, &out("o3"));
    v[9] = "1000".into(); // --seq-len
    assert!(call(v).unwrap_err().contains("max_position_embeddings"));
    // A micro-batch whose activations cannot fit in any machine's memory
    // (10¹⁸ tokens; it used to run the machine out of memory).
    let mut v = base(&good, &out("o3"));
    v[11] = "1000000000000000000".into(); // --batch-size
    let e = call(v).unwrap_err();
    assert!(e.contains("tokens per micro-batch need about"), "{e}");
    // Each count names itself (these three once shared one message).
    for (at, flag) in [(7, "--steps"), (11, "--batch-size")] {
        let mut v = base(&good, &out("o3"));
        v[at] = "0".into();
        let e = call(v).unwrap_err();
        assert_eq!(e, format!("{flag} must be at least 1"));
    }
    let mut v = base(&good, &out("o3"));
    v.extend(["--grad-accum".into(), "0".into()]);
    assert_eq!(call(v).unwrap_err(), "--grad-accum must be at least 1");
    for clip in ["--grad-clip=-1", "--grad-clip=NaN"] {
        let mut v = base(&good, &out("o3"));
        v.push(clip.into());
        let e = call(v).unwrap_err();
        assert!(e.contains("--grad-clip must be a finite norm ≥ 0"), "{e}");
    }

    // Resume without a checkpoint; a second run over checkpoints.
    let mut v = base(&good, &out("o4"));
    v.push("--resume".into());
    assert!(call(v).unwrap_err().contains("resume"));
    call(base(&good, &out("o4"))).unwrap();
    let e = call(base(&good, &out("o4"))).unwrap_err();
    assert!(e.contains("--resume"), "{e}");
    let mut v = base(&good, &out("o4"));
    v.extend(["--resume".into(), "--lr".into(), "0.1".into()]);
    let e = call(v).unwrap_err();
    assert!(e.contains("differ") && e.contains("lr"), "{e}");
    assert!(dir.join("o4/model/model.safetensors").exists());

    // A learning rate that blows the weights up: a clear stop, no checkpoint.
    let mut v = base(&good, &out("o5"));
    v.extend([
        "--lr".into(),
        "1e38".into(),
        "--grad-clip".into(),
        "0".into(),
    ]);
    let e = call(v).unwrap_err();
    assert!(e.contains("non-finite"), "{e}");
    assert!(!dir.join("o5/checkpoints/latest").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
