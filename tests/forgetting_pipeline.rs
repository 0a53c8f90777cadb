//! The forgetting pipeline's bookkeeping (cache, methods, α sweep, curves,
//! reports) on a bigram model whose loss and gradient are written out by
//! hand: independent of the Llama model's speed, so it runs in a blink.

use mofo::data::{SpecialTokens, TokenBatch, IGNORE};
use mofo::experiments::forgetting::{
    report, resume, run_forgetting, run_forgetting_seeds, seeds, seeds_report, Backend,
    ExperimentError, ForgettingConfig, ForgettingResults, MethodConfig, ModelSize, PhaseConfig,
    RunOptions, SeedScope, TokenizerInfo,
};
use mofo::optim::FiniteGrads;
use mofo::train::{TrainError, TrainOptimizer, TrainableModel};
use mofo::ParamStore;
use ndarray::{Array2, Array3};
use serde_json::json;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

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

/// The bigram backend, counting the models it makes (one per base) and
/// the optimizers (one per fine-tuning run of a method).
#[derive(Default)]
struct Counting {
    models: AtomicUsize,
    optimizers: AtomicUsize,
}

impl Backend for Counting {
    fn tokenizer(&self) -> TokenizerInfo {
        BigramBackend.tokenizer()
    }
    fn model(
        &self,
        size: &ModelSize,
        v: usize,
    ) -> Result<(Box<dyn TrainableModel>, ParamStore<f32>), TrainError> {
        self.models.fetch_add(1, Ordering::Relaxed);
        BigramBackend.model(size, v)
    }
    fn optimizer(
        &self,
        m: &MethodConfig,
        p: &PhaseConfig,
        r: &ParamStore<f32>,
    ) -> Result<Box<dyn TrainOptimizer>, TrainError> {
        self.optimizers.fetch_add(1, Ordering::Relaxed);
        BigramBackend.optimizer(m, p, r)
    }
    fn schedule(&self, p: &PhaseConfig, lr: f64) -> Box<dyn Fn(u64) -> f64 + Sync> {
        BigramBackend.schedule(p, lr)
    }
}

fn bigram_config() -> ForgettingConfig {
    ForgettingConfig::quick_preset()
        .merged(json!({
            "knowledge": {"entities": 8, "general_sentences": 10},
            "task": {"train_examples": 50, "eval_examples": 10},
            "pretrain": {"steps": 30, "batch_size": 4, "lr": 0.05, "warmup_steps": 0},
            "finetune": {"steps": 6, "batch_size": 4, "lr": 0.05, "warmup_steps": 0},
            "methods": [{"name": "adam"}, {"name": "mofo", "alpha": 0.01}],
            "alpha_sweep": [0.001, 0.01],
            "eval": {"probes": 0, "every": 3}
        }))
        .unwrap()
}

/// `r` without its wall-clock seconds.
fn timeless(mut r: ForgettingResults) -> ForgettingResults {
    r.seconds = 0.0;
    r.base.pretrain_seconds = 0.0;
    for row in &mut r.rows {
        row.seconds = 0.0;
    }
    r
}

#[test]
fn seeds_runs_are_the_single_runs_and_share_their_base() {
    let dir = std::env::temp_dir().join(format!("mofo-pipeline-seeds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = bigram_config();
    cfg.lr_sweep = vec![0.01];
    cfg.lr_sweep_methods = vec!["adam".into(), "mofo".into()];
    let opts = RunOptions {
        out_dir: dir.join("out"),
        cache_dir: None,
        progress: false,
        verbose: false,
        resume: false,
    };
    let backend = Counting::default();
    let runs = run_forgetting_seeds(&cfg, 3, SeedScope::Finetune, &backend, &opts).unwrap();
    // One base for the three runs (no cache: it was pre-trained once).
    assert_eq!(backend.models.load(Ordering::Relaxed), 1);
    assert_eq!(runs.len(), 3);
    for (r, run) in runs.iter().enumerate() {
        assert_eq!(run.config.finetune.seed, cfg.finetune.seed + r as u64);
        assert_eq!(run.config.pretrain.seed, cfg.pretrain.seed);
        // Run r is the single run of its configuration, bit for bit.
        let single = run_forgetting(&run.config, &BigramBackend, &opts).unwrap();
        assert_eq!(timeless(run.clone()), timeless(single), "run {r}");
        let written = seeds_report::run_dir(&opts.out_dir, r as u64).join("results.json");
        let back: ForgettingResults =
            serde_json::from_slice(&std::fs::read(&written).unwrap()).unwrap();
        assert_eq!(back.rows[0].loss_curve, run.rows[0].loss_curve);
    }
    // A run whose numbers went NaN (written as null) reads back.
    let mut broken = runs[0].clone();
    broken.rows[0].distance = f64::NAN;
    broken.base.pretrain_train_loss = f64::NAN;
    broken.rows[1].curve[1].pretrain_loss = f64::INFINITY;
    let back: ForgettingResults =
        serde_json::from_slice(&serde_json::to_vec(&broken).unwrap()).unwrap();
    assert!(back.rows[0].distance.is_nan() && back.base.pretrain_train_loss.is_nan());
    assert!(back.rows[1].curve[1].pretrain_loss.is_nan());
    assert_eq!(back.rows[2], broken.rows[2]);
    // The fine-tuning order really moved.
    assert_ne!(runs[0].rows[0].loss_curve, runs[1].rows[0].loss_curve);

    let s = seeds::summarize(SeedScope::Finetune, &runs).unwrap();
    assert_eq!(
        s.seeds.iter().map(|x| x.finetune).collect::<Vec<_>>(),
        vec![20, 21, 22]
    );
    let labels: Vec<&str> = s.rows.iter().map(|x| x.label.as_str()).collect();
    assert_eq!(
        labels,
        vec![
            "adam",
            "mofo α=0.01",
            "mofo α=0.001",
            "adam lr=1e-2",
            "mofo α=0.01 lr=1e-2"
        ]
    );
    for (i, row) in s.rows.iter().enumerate() {
        let mut v: Vec<f64> = runs.iter().map(|r| r.rows[i].distance).collect();
        v.sort_by(f64::total_cmp);
        assert_eq!(
            (row.distance.min, row.distance.median, row.distance.max),
            (v[0], v[1], v[2])
        );
        assert_eq!(row.distance.finite, 3);
    }
    // Every row but Adam's against Adam at its learning rate.
    let pairs: Vec<(&str, &str)> = s
        .against_adam
        .iter()
        .map(|a| (a.label.as_str(), a.adam.as_str()))
        .collect();
    assert_eq!(
        pairs,
        vec![
            ("mofo α=0.01", "adam"),
            ("mofo α=0.001", "adam"),
            ("mofo α=0.01 lr=1e-2", "adam lr=1e-2")
        ]
    );
    let a = &s.against_adam[2];
    let counted = runs
        .iter()
        .filter(|r| r.rows[4].pretrain_loss_increase < r.rows[3].pretrain_loss_increase)
        .count();
    assert_eq!((a.runs, a.pretrain_loss_increase_lower), (3, counted));
    // MoFO moves fewer entries than Adam in every run.
    assert_eq!(s.against_adam[0].distance_lower, 3);

    let files = seeds_report::write_reports(&s, &runs, &opts.out_dir).unwrap();
    assert_eq!(files.len(), 5);
    let md = std::fs::read_to_string(opts.out_dir.join("seeds.md")).unwrap();
    assert!(md.contains("| mofo α=0.001 |"), "{md}");
    assert!(md.contains("fine-tuning seeds 20, 21, 22"), "{md}");
    let csv = std::fs::read_to_string(opts.out_dir.join("seeds.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 5 * 8);
    let back: seeds::SeedSummary =
        serde_json::from_slice(&std::fs::read(opts.out_dir.join("seeds.json")).unwrap()).unwrap();
    assert_eq!(back.against_adam, s.against_adam);

    // Moving the base's seeds makes a base per run.
    let backend = Counting::default();
    let based = run_forgetting_seeds(&cfg, 2, SeedScope::Base, &backend, &opts).unwrap();
    assert_eq!(backend.models.load(Ordering::Relaxed), 2);
    assert_eq!(based[1].config.pretrain.seed, cfg.pretrain.seed + 1);
    assert_eq!(based[1].config.finetune.seed, cfg.finetune.seed);
    assert_ne!(based[0].base.pretrain_loss, based[1].base.pretrain_loss);
    let text = seeds_report::table(&seeds::summarize(SeedScope::Base, &based).unwrap());
    assert!(
        text.contains("model seeds 0, 1, pre-training seeds 10, 11"),
        "{text}"
    );
    let loss = |r: &ForgettingResults| format!("{:.4}", r.base.pretrain_loss);
    let (lo, hi) = if based[0].base.pretrain_loss < based[1].base.pretrain_loss {
        (loss(&based[0]), loss(&based[1]))
    } else {
        (loss(&based[1]), loss(&based[0]))
    };
    assert!(text.contains(&format!("({lo}–{hi})")), "{text}");
    assert!(!text.contains(")%"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn seeds_resume_keeps_the_finished_runs_and_runs_the_others() {
    let dir = std::env::temp_dir().join(format!("mofo-pipeline-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = bigram_config();
    let mut opts = RunOptions {
        out_dir: dir.join("out"),
        cache_dir: None,
        progress: false,
        verbose: false,
        resume: false,
    };
    let first = Counting::default();
    let whole = run_forgetting_seeds(&cfg, 3, SeedScope::Base, &first, &opts).unwrap();
    let rows = whole[0].rows.len();
    // Pre-training runs its one optimizer per base, fine-tuning one per row.
    assert_eq!(first.optimizers.load(Ordering::Relaxed), 3 * (1 + rows));
    let run = |r: u64| seeds_report::run_dir(&opts.out_dir, r);

    // An invocation killed during run 2 left runs 0 and 1; run 1 lost a plot
    // (killed between its files).
    std::fs::remove_dir_all(run(2)).unwrap();
    std::fs::remove_file(run(1).join("pareto.png")).unwrap();
    opts.resume = true;
    let again = Counting::default();
    let resumed = run_forgetting_seeds(&cfg, 3, SeedScope::Base, &again, &opts).unwrap();
    assert_eq!(again.models.load(Ordering::Relaxed), 1);
    assert_eq!(again.optimizers.load(Ordering::Relaxed), 1 + rows);
    // The kept runs are the files' results to the bit, seconds included.
    assert_eq!(resumed[..2], whole[..2]);
    assert_eq!(timeless(resumed[2].clone()), timeless(whole[2].clone()));
    assert!(run(1).join("pareto.png").exists() && run(2).join("results.json").exists());
    let summary = |runs: &[ForgettingResults]| {
        let runs: Vec<_> = runs.iter().cloned().map(timeless).collect();
        seeds::summarize(SeedScope::Base, &runs).unwrap()
    };
    assert_eq!(summary(&resumed), summary(&whole));

    // A run of another configuration, or a file that does not parse, runs
    // again; without --resume every run does.
    std::fs::write(run(0).join("results.json"), b"{\"format\": \"mofo-forg").unwrap();
    let mut other = cfg.clone();
    other.finetune.lr *= 0.5;
    let counted = |c: &ForgettingConfig, o: &RunOptions| {
        let b = Counting::default();
        run_forgetting_seeds(c, 3, SeedScope::Base, &b, o).unwrap();
        b.optimizers.load(Ordering::Relaxed) / (1 + rows)
    };
    assert_eq!(counted(&cfg, &opts), 1);
    assert_eq!(counted(&other, &opts), 3);
    assert_eq!(counted(&other, &opts), 0);
    opts.resume = false;
    assert_eq!(counted(&other, &opts), 3);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resume_keeps_the_methods_a_killed_run_finished() {
    let dir = std::env::temp_dir().join(format!("mofo-pipeline-partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = bigram_config();
    let mut opts = RunOptions {
        out_dir: dir.join("out"),
        cache_dir: Some(dir.join("cache")),
        progress: false,
        verbose: false,
        resume: false,
    };
    let whole = run_forgetting(&cfg, &BigramBackend, &opts).unwrap();
    let n = whole.rows.len();
    assert!(n >= 3);
    // Until the reports are written the partial record holds every row.
    let partial_path = opts.out_dir.join(resume::PARTIAL);
    let read = |p: &Path| -> ForgettingResults {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let partial = read(&partial_path);
    assert_eq!(partial.rows, whole.rows);
    let write = |r: &ForgettingResults| {
        std::fs::write(&partial_path, serde_json::to_vec(r).unwrap()).unwrap()
    };
    let resumed = |o: &RunOptions| {
        let b = Counting::default();
        let r = run_forgetting(&cfg, &b, o).unwrap();
        (r, b.optimizers.load(Ordering::Relaxed))
    };

    // Killed after its first method: only the others fine-tune.
    opts.resume = true;
    let mut cut = partial.clone();
    cut.rows.truncate(1);
    write(&cut);
    let (r, optimizers) = resumed(&opts);
    assert_eq!(optimizers, n - 1);
    assert_eq!(r.rows[0], whole.rows[0]);
    // The same run, its base read from the cache this time.
    let mut expected = timeless(whole.clone());
    expected.base.cached = true;
    assert_eq!(timeless(r.clone()), expected);
    // Rows are kept only while each is the method of its place.
    let mut swapped = partial.clone();
    swapped.rows.swap(1, 2);
    write(&swapped);
    assert_eq!(resumed(&opts).1, n - 1);
    // A record of another configuration is not used.
    let mut other = partial.clone();
    other.config.finetune.steps += 1;
    write(&other);
    assert_eq!(resumed(&opts).1, n);
    opts.resume = false;
    write(&partial);
    assert_eq!(resumed(&opts).1, n);

    // The reports replace the partial record; a finished run is kept whole.
    report::write_reports(&r, &opts.out_dir).unwrap();
    assert!(!partial_path.exists());
    opts.resume = true;
    let b = Counting::default();
    assert_eq!(run_forgetting(&cfg, &b, &opts).unwrap(), r);
    assert_eq!(
        (
            b.models.load(Ordering::Relaxed),
            b.optimizers.load(Ordering::Relaxed)
        ),
        (0, 0)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn seeds_refuse_what_cannot_run() {
    let opts = RunOptions {
        out_dir: std::env::temp_dir().join(format!(
            "mofo-pipeline-seeds-refused-{}",
            std::process::id()
        )),
        cache_dir: None,
        progress: false,
        verbose: false,
        resume: false,
    };
    let cfg = bigram_config();
    let err = run_forgetting_seeds(&cfg, 0, SeedScope::Finetune, &BigramBackend, &opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("at least 1"), "{err}");
    let mut last = cfg.clone();
    last.task.seed = u64::MAX;
    // The task's seed moves only with `all`.
    assert!(SeedScope::Base.seeded(&last, 1).is_ok());
    match run_forgetting_seeds(&last, 2, SeedScope::All, &BigramBackend, &opts) {
        Err(ExperimentError::Config(m)) => assert!(m.contains("task.seed"), "{m}"),
        other => panic!(
            "expected a configuration error, got {:?}",
            other.map(|_| ())
        ),
    }
    assert!(!opts.out_dir.exists());
    // Runs that do not share their labels are not summarised.
    let a = run_forgetting(&cfg, &BigramBackend, &opts).unwrap();
    std::fs::remove_dir_all(&opts.out_dir).unwrap();
    let mut b = a.clone();
    b.rows.pop();
    let err = seeds::summarize(SeedScope::Finetune, &[a, b]).unwrap_err();
    assert!(err.contains("run 1"), "{err}");
    assert!(seeds::summarize(SeedScope::Finetune, &[]).is_err());
}

#[test]
fn pipeline_bookkeeping_on_a_bigram_model() {
    let dir = std::env::temp_dir().join(format!("mofo-pipeline-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = bigram_config();
    let opts = RunOptions {
        out_dir: dir.join("out"),
        cache_dir: Some(dir.join("cache")),
        progress: false,
        verbose: false,
        resume: false,
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
