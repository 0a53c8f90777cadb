//! A run interrupted after a checkpoint and resumed ends bit-identical to an
//! uninterrupted run (tiny Llama, a few steps, every optimizer family).

use mofo::data::{BatchSource, LmBatches, SpecialTokens};
use mofo::experiments::forgetting::{MethodConfig, PhaseConfig};
use mofo::model::{HfExtras, LlamaConfig};
use mofo::train::llama::{build_optimizer, warmup_cosine, LlamaTrainModel};
use mofo::train::{latest_checkpoint, TrainOptions, TrainState, Trainer};
use std::path::Path;

fn model() -> LlamaTrainModel {
    LlamaTrainModel {
        config: LlamaConfig {
            vocab_size: 259,
            hidden_size: 16,
            intermediate_size: 24,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            num_key_value_heads: 1,
            head_dim: 8,
            rms_norm_eps: 1e-6,
            rope_theta: 10000.0,
            tie_word_embeddings: true,
            max_position_embeddings: 64,
        },
        extras: HfExtras::default(),
    }
}

fn data() -> LmBatches {
    let sentences: Vec<String> = (0..20)
        .map(|i| format!("Sentence number {i} is here."))
        .collect();
    let enc = |s: &str| s.bytes().map(u32::from).collect::<Vec<u32>>();
    let sp = SpecialTokens {
        bos: Some(256),
        eos: 257,
        pad: 258,
    };
    LmBatches::new(&enc, &sentences, sp, 2, 24, 3).unwrap()
}

fn phase() -> PhaseConfig {
    PhaseConfig {
        steps: 6,
        batch_size: 2,
        seq_len: 24,
        lr: 1e-2,
        warmup_steps: 2,
        min_lr_ratio: 0.1,
        weight_decay: 0.01,
        grad_clip: 1.0,
        seed: 3,
    }
}

fn run(
    method: &MethodConfig,
    out: &Path,
    stop_after: Option<u64>,
    resume: bool,
) -> mofo::ParamStore<f32> {
    let m = model();
    let data = data();
    let ph = phase();
    let mut params = m.init(5).unwrap();
    let reference = params.clone();
    let mut opt = build_optimizer(method, &ph, &reference).unwrap();
    let lr = warmup_cosine(&ph, ph.lr);
    let trainer = Trainer {
        model: &m,
        data: &data as &dyn BatchSource,
        lr: lr.as_ref(),
        options: TrainOptions {
            steps: ph.steps,
            grad_accum: 2,
            checkpoint_every: 2,
            out_dir: Some(out.to_path_buf()),
            stop_after,
            ..Default::default()
        },
    };
    let mut state = TrainState::default();
    if resume {
        state = trainer
            .resume(&mut params, opt.as_mut())
            .unwrap()
            .expect("a checkpoint");
        assert_eq!(state.step, 2);
    }
    trainer
        .run(&mut params, opt.as_mut(), &mut state, None)
        .unwrap();
    params
}

#[test]
fn resumed_runs_are_bit_identical() {
    let root = std::env::temp_dir().join(format!("mofo-resume-{}", std::process::id()));
    for (name, alpha) in [
        ("adam", None),
        ("mofo", Some(0.2)),
        ("lion_mofo", Some(0.2)),
        ("random_bcd", Some(0.3)),
        ("hft", None),
        ("l2_reg", None),
    ] {
        let method = MethodConfig {
            alpha,
            lambda: (name == "l2_reg").then_some(1e-2),
            ..MethodConfig::named(name)
        };
        let full = run(&method, &root.join(format!("{name}-full")), None, false);
        let cut = root.join(format!("{name}-cut"));
        // Interrupted after step 3: the latest checkpoint is the one of step 2.
        let _ = run(&method, &cut, Some(3), false);
        assert!(latest_checkpoint(&cut)
            .unwrap()
            .unwrap()
            .ends_with("step-00000002"));
        let resumed = run(&method, &cut, None, true);
        for (a, b) in full.iter().zip(resumed.iter()) {
            assert_eq!(a.name, b.name);
            let same = a
                .as_slice()
                .iter()
                .zip(b.as_slice())
                .all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{name}: {} differs after resume", a.name);
        }
        // The metrics file reads as one run: steps 1..=6 once each.
        let text = std::fs::read_to_string(cut.join("metrics.jsonl")).unwrap();
        let steps: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(steps, vec![1, 2, 3, 4, 5, 6], "{name}");
    }
    std::fs::remove_dir_all(&root).unwrap();
}

/// The phase's gradient clip reaches the optimizer's own check unless it
/// is 0 (off): a negative or NaN clip is an error when the optimizer is
/// built, not silently no clipping.
#[test]
fn a_bad_gradient_clip_is_refused_when_the_optimizer_is_built() {
    let reference = model().init(5).unwrap();
    let method = MethodConfig::named("mofo");
    for clip in [-1.0, f64::NAN] {
        let ph = PhaseConfig {
            grad_clip: clip,
            ..phase()
        };
        let err = build_optimizer(&method, &ph, &reference)
            .err()
            .unwrap_or_else(|| panic!("grad_clip {clip} accepted"))
            .to_string();
        assert!(err.contains("clip.max_norm"), "{clip}: {err}");
    }
    for clip in [0.0, 1.0] {
        let ph = PhaseConfig {
            grad_clip: clip,
            ..phase()
        };
        assert!(build_optimizer(&method, &ph, &reference).is_ok(), "{clip}");
    }
}
