//! The forgetting pipeline's bookkeeping (cache, methods, α sweep, curves,
//! reports) on a bigram model whose loss and gradient are written out by
//! hand: independent of the Llama model's speed, so it runs in a blink.

use mofo::data::{SpecialTokens, TokenBatch, IGNORE};
use mofo::experiments::forgetting::{
    report, run_forgetting, Backend, ForgettingConfig, MethodConfig, ModelSize, PhaseConfig,
    RunOptions, TokenizerInfo,
};
use mofo::optim::FiniteGrads;
use mofo::train::{TrainError, TrainOptimizer, TrainableModel};
use mofo::ParamStore;
use ndarray::{Array2, Array3};
use serde_json::json;
use std::path::Path;

const V: usize = 259;
const NAME: &str = "bigram.weight";

/// logits[b, t, :] = W[x_{b,t}, :].
struct Bigram;

impl TrainableModel for Bigram {
    fn loss_and_grads(
        &self,
        params: &ParamStore<f32>,
        batch: &TokenBatch,
    ) -> Result<(f32, ParamStore<f32>), TrainError> {
        let w = params.get(NAME).unwrap().as_slice();
        let mut grads = params.zeros_like();
        let g = grads.get_mut(NAME).unwrap().as_slice_mut();
        let (b, t) = batch.input_ids.dim();
        let n = batch.target_count().max(1) as f64;
        let mut loss = 0.0f64;
        for i in 0..b {
            for j in 1..t {
                let y = batch.labels[[i, j]];
                if y == IGNORE {
                    continue;
                }
                let x = batch.input_ids[[i, j - 1]] as usize;
                let row = &w[x * V..(x + 1) * V];
                let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
                let z: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
                loss += -(row[y as usize] as f64 - m - z.ln());
                for k in 0..V {
                    let p = (row[k] as f64 - m).exp() / z;
                    let d = p - if k == y as usize { 1.0 } else { 0.0 };
                    g[x * V + k] += (d / n) as f32;
                }
            }
        }
        Ok(((loss / n) as f32, grads))
    }

    fn logits(&self, params: &ParamStore<f32>, ids: &Array2<u32>) -> Array3<f32> {
        let w = params.get(NAME).unwrap().as_slice();
        let (b, t) = ids.dim();
        Array3::from_shape_fn((b, t, V), |(i, j, k)| w[ids[[i, j]] as usize * V + k])
    }

    fn vocab_size(&self) -> usize {
        V
    }

    fn save(&self, params: &ParamStore<f32>, dir: &Path) -> Result<(), TrainError> {
        std::fs::create_dir_all(dir).unwrap();
        let w = params.get(NAME).unwrap().as_slice().to_vec();
        std::fs::write(dir.join("w.json"), serde_json::to_vec(&w).unwrap()).unwrap();
        Ok(())
    }

    fn load(&self, dir: &Path) -> Result<ParamStore<f32>, TrainError> {
        let w: Vec<f32> =
            serde_json::from_slice(&std::fs::read(dir.join("w.json")).unwrap()).unwrap();
        let mut p = ParamStore::new();
        p.insert_vec(NAME, &[V, V], w).unwrap();
        Ok(p)
    }
}

/// Sign descent on the `alpha` share of entries with the largest |g| (all
/// entries without α): enough to tell methods apart.
struct SignDescent {
    alpha: Option<f64>,
}

impl TrainOptimizer for SignDescent {
    fn step(
        &mut self,
        p: &mut ParamStore<f32>,
        g: FiniteGrads<'_, f32>,
        lr: f64,
    ) -> Result<(), TrainError> {
        let gs = g.store().get(NAME).unwrap().as_slice();
        let mut cut = 0.0f32;
        if let Some(a) = self.alpha {
            let mut mags: Vec<f32> = gs.iter().map(|x| x.abs()).collect();
            mags.sort_by(|a, b| b.total_cmp(a));
            cut = mags[((a * mags.len() as f64).ceil() as usize).min(mags.len()) - 1];
        }
        for (w, &d) in p.get_mut(NAME).unwrap().as_slice_mut().iter_mut().zip(gs) {
            if d != 0.0 && d.abs() >= cut {
                *w -= lr as f32 * d.signum();
            }
        }
        Ok(())
    }
    fn save_state(&self, _: &Path) -> Result<(), TrainError> {
        Ok(())
    }
    fn load_state(&mut self, _: &Path) -> Result<(), TrainError> {
        Ok(())
    }
}

struct BigramBackend;

impl Backend for BigramBackend {
    fn tokenizer(&self) -> TokenizerInfo {
        TokenizerInfo {
            encoder: Box::new(|s: &str| s.bytes().map(u32::from).collect::<Vec<u32>>()),
            special: SpecialTokens {
                bos: Some(256),
                eos: 257,
                pad: 258,
            },
            vocab_size: V,
        }
    }
    fn model(
        &self,
        _: &ModelSize,
        v: usize,
    ) -> Result<(Box<dyn TrainableModel>, ParamStore<f32>), TrainError> {
        let mut p = ParamStore::new();
        p.insert_vec(NAME, &[v, v], vec![0.01; v * v]).unwrap();
        Ok((Box::new(Bigram), p))
    }
    fn optimizer(
        &self,
        m: &MethodConfig,
        _: &PhaseConfig,
        _: &ParamStore<f32>,
    ) -> Result<Box<dyn TrainOptimizer>, TrainError> {
        Ok(Box::new(SignDescent { alpha: m.alpha }))
    }
    fn schedule(&self, _: &PhaseConfig, lr: f64) -> Box<dyn Fn(u64) -> f64 + Sync> {
        Box::new(move |_| lr)
    }
}

#[test]
fn pipeline_bookkeeping_on_a_bigram_model() {
    let dir = std::env::temp_dir().join(format!("mofo-pipeline-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = ForgettingConfig::quick_preset()
        .merged(json!({
            "knowledge": {"entities": 8, "general_sentences": 10},
            "task": {"train_examples": 50, "eval_examples": 10},
            "pretrain": {"steps": 30, "batch_size": 4, "lr": 0.05, "warmup_steps": 0},
            "finetune": {"steps": 6, "batch_size": 4, "lr": 0.05, "warmup_steps": 0},
            "methods": [{"name": "adam"}, {"name": "mofo", "alpha": 0.01}],
            "alpha_sweep": [0.001, 0.01],
            "eval": {"probes": 0, "every": 3}
        }))
        .unwrap();
    let opts = RunOptions {
        out_dir: dir.join("out"),
        cache_dir: Some(dir.join("cache")),
        progress: false,
        verbose: false,
    };
    let r = run_forgetting(&cfg, &BigramBackend, &opts).unwrap();
    // adam, mofo α=0.01, then the sweep's new α only.
    let labels: Vec<&str> = r.rows.iter().map(|x| x.label.as_str()).collect();
    assert_eq!(labels, vec!["adam", "mofo α=0.01", "mofo α=0.001"]);
    // A learning-rate sweep run really uses its learning rate.
    let mut swept = cfg.clone();
    swept.lr_sweep = vec![0.01];
    swept.lr_sweep_methods = vec!["adam".into()];
    let rs = run_forgetting(&swept, &BigramBackend, &opts).unwrap();
    let last = rs.rows.last().unwrap();
    assert_eq!(last.label, "adam lr=1e-2");
    assert!(
        last.distance < rs.rows[0].distance,
        "{} vs {}",
        last.distance,
        rs.rows[0].distance
    );
    assert!(!r.base.cached);
    // Pre-training taught the bigram something: held-out loss below uniform.
    assert!(
        r.base.pretrain_loss < (V as f64).ln() - 1.0,
        "{}",
        r.base.pretrain_loss
    );
    let adam = &r.rows[0];
    let (m1, m2) = (&r.rows[1], &r.rows[2]);
    assert!(adam.significant_update_share > m1.significant_update_share);
    assert!(m1.significant_update_share > m2.significant_update_share);
    assert!(adam.distance > m1.distance && m1.distance > m2.distance);
    for row in &r.rows {
        assert_eq!(
            row.curve.iter().map(|c| c.step).collect::<Vec<_>>(),
            vec![0, 3, 6]
        );
        assert_eq!(row.curve[0].pretrain_loss, r.base.pretrain_loss);
        assert!((row.pretrain_loss - row.curve[2].pretrain_loss).abs() < 1e-12);
        assert!(
            (row.pretrain_loss_increase - (row.pretrain_loss - r.base.pretrain_loss)).abs() < 1e-12
        );
    }
    report::write_reports(&r, &opts.out_dir).unwrap();
    let table = std::fs::read_to_string(opts.out_dir.join("table.txt")).unwrap();
    assert!(table.contains("mofo α=0.001"));
    let j = report::summary_json(&r);
    assert_eq!(j["rows"].as_array().unwrap().len(), 2);
    assert_eq!(j["alpha_sweep"][0]["alpha"], 0.001);

    // The cache: same base key → reused, bit-identical scores.
    let r2 = run_forgetting(&cfg, &BigramBackend, &opts).unwrap();
    assert!(r2.base.cached);
    assert_eq!(r2.base.pretrain_loss, r.base.pretrain_loss);
    assert_eq!(r2.rows[1].loss_curve, r.rows[1].loss_curve);
    // A fine-tuning change keeps the base; a pre-training change does not.
    let mut c3 = cfg.clone();
    c3.finetune.lr = 0.02;
    assert!(
        run_forgetting(&c3, &BigramBackend, &opts)
            .unwrap()
            .base
            .cached
    );
    c3.pretrain.lr = 0.02;
    assert!(
        !run_forgetting(&c3, &BigramBackend, &opts)
            .unwrap()
            .base
            .cached
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
