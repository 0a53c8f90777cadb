//! The forgetting experiment (`mofo forgetting`): pre-train a small Llama on
//! a generated world of facts once (cached on disk), fine-tune it on a task
//! of another domain with each method under the same budget and schedule,
//! and measure per method (SPEC.md section 4):
//!
//! ```text
//! fine-tune accuracy     exact match (greedy) on held-out task questions
//! retained accuracy      greedy fact recall; also multiple choice by log-likelihood
//! pre-training loss rise L_pre(θ_ft) − L_pre(θ_pre) on held-out pre-training sentences
//! distance               mean over tensors b of ‖θ_b − θ_b^pre‖₂ / ‖θ_b^pre‖₂
//! updated share          #{ i : |θ_i − θ_i^pre| > 2e-6 } / #entries
//! seconds                wall time of the fine-tuning steps
//! ```
//!
//! The model, tokenizer and optimizers come through a [`Backend`] (the Llama
//! backend is in `crate::train::llama`); the pipeline itself only needs the
//! training traits.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::data::eval::{exact_match, mean_loss, multiple_choice, ChoiceItem};
use crate::data::tokens::tokenize_qa;
use crate::data::{Encode, LmBatches, QaBatches, SpecialTokens, TokenBatch};
use crate::io::write_atomic;
use crate::train::{
    distance_to_reference, updated_share, Bound, TrainError, TrainOptimizer, TrainOptions,
    TrainState, TrainableModel, Trainer, SIGNIFICANT_UPDATE,
};
use crate::ParamStore;

pub mod config;
pub mod report;
pub mod resume;
pub mod seeds;
pub mod seeds_report;

pub use config::{EvalConfig, ForgettingConfig, MethodConfig, ModelSize, PhaseConfig, METHODS};
pub use seeds::{SeedScope, SeedSummary};

/// A tokenizer as the experiment needs it.
pub struct TokenizerInfo {
    /// Text to ids.
    pub encoder: Box<dyn Encode + Sync>,
    /// Special ids.
    pub special: SpecialTokens,
    /// Vocabulary size.
    pub vocab_size: usize,
}

/// What the experiment needs from the model and optimizer code.
pub trait Backend {
    /// The tokenizer (byte level).
    fn tokenizer(&self) -> TokenizerInfo;

    /// A model of `size` with freshly initialised parameters.
    fn model(
        &self,
        size: &ModelSize,
        vocab_size: usize,
    ) -> Result<(Box<dyn TrainableModel>, ParamStore<f32>), TrainError>;

    /// The optimizer of `method` for `phase`; `reference` is the starting
    /// point (the pre-trained weights, for the L1/L2 pulls).
    fn optimizer(
        &self,
        method: &MethodConfig,
        phase: &PhaseConfig,
        reference: &ParamStore<f32>,
    ) -> Result<Box<dyn TrainOptimizer>, TrainError>;

    /// The learning rate of step t = 1..=steps (warmup + cosine).
    fn schedule(&self, phase: &PhaseConfig, lr: f64) -> Box<dyn Fn(u64) -> f64 + Sync>;
}

/// Errors of the experiment.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// Bad configuration or experiment file.
    #[error("experiment configuration: {0}")]
    Config(String),
    /// Training failed.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// Data generation failed.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// Writing results failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Drawing a plot failed.
    #[error(transparent)]
    Plot(#[from] crate::plot::PlotError),
}

/// Options of a run that are not part of the experiment's identity.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Output directory (results, plots, metrics).
    pub out_dir: PathBuf,
    /// Cache of pre-trained base models (None: no cache).
    pub cache_dir: Option<PathBuf>,
    /// Progress bars.
    pub progress: bool,
    /// Print progress lines to stderr.
    pub verbose: bool,
    /// Keep what an earlier invocation finished (see [`resume`]): a run
    /// whose folder holds the results of its configuration, or the
    /// methods its partial record holds.
    pub resume: bool,
}

/// The pre-trained base model's scores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaseResult {
    /// Parameters of the model.
    pub parameters: usize,
    /// Fine-tune task accuracy before fine-tuning.
    #[serde(deserialize_with = "crate::io::json_nan::f64_or_nan")]
    pub finetune_accuracy: f64,
    /// Fine-tune task loss (answers) before fine-tuning.
    #[serde(deserialize_with = "crate::io::json_nan::f64_or_nan")]
    pub finetune_loss: f64,
    /// Greedy fact recall.
    #[serde(deserialize_with = "crate::io::json_nan::f64_or_nan")]
    pub retained_accuracy: f64,
    /// Multiple-choice fact accuracy.
    #[serde(deserialize_with = "crate::io::json_nan::f64_or_nan")]
    pub retained_mc_accuracy: f64,
    /// Held-out pre-training loss.
    #[serde(deserialize_with = "crate::io::json_nan::f64_or_nan")]
    pub pretrain_loss: f64,
    /// Last pre-training loss (mean of the last 10 steps).
    #[serde(deserialize_with = "crate::io::json_nan::f64_or_nan")]
    pub pretrain_train_loss: f64,
    /// Seconds of pre-training (of the run that made the cached model).
    #[serde(deserialize_with = "crate::io::json_nan::f64_or_nan")]
    pub pretrain_seconds: f64,
    /// Whether the base came from the cache.
    pub cached: bool,
    /// The cache key.
    pub cache_key: String,
}

/// One point of the curves recorded during fine-tuning.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Fine-tuning step.
    pub step: u64,
    /// Held-out task loss.
    #[serde(deserialize_with = "crate::io::json_nan::f64_or_nan")]
    pub finetune_loss: f64,
    /// Held-out pre-training loss.
    #[serde(deserialize_with = "crate::io::json_nan::f64_or_nan")]
    pub pretrain_loss: f64,
}

/// The scores of one fine-tuning method.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MethodResult {
    /// Builder name.
    pub method: String,
    /// Label ("mofo α=0.15").
    pub label: String,
    /// The method's configuration.
    pub config: MethodConfig,
    /// Task exact-match accuracy after fine-tuning.
    #[serde(deserialize_with = "crate::io::json_nan::f64_or_nan")]
    pub finetune_accuracy: f64,
    /// Held-out task loss after fine-tuning.
    #[serde(deserialize_with = "crate::io::json_nan::f64_or_nan")]
    pub finetune_loss: f64,
    /// Greedy fact recall after fine-tuning.
    #[serde(deserialize_with = "crate::io::json_nan::f64_or_nan")]
    pub retained_accuracy: f64,
    /// Multiple-choice fact accuracy after fine-tuning.
    #[serde(deserialize_with = "crate::io::json_nan::f64_or_nan")]
    pub retained_mc_accuracy: f64,
    /// Held-out pre-training loss after fine-tuning.
    #[serde(deserialize_with = "crate::io::json_nan::f64_or_nan")]
    pub pretrain_loss: f64,
    /// Its increase over the base.
    #[serde(deserialize_with = "crate::io::json_nan::f64_or_nan")]
    pub pretrain_loss_increase: f64,
    /// Mean relative distance per tensor to the base.
    #[serde(deserialize_with = "crate::io::json_nan::f64_or_nan")]
    pub distance: f64,
    /// Share of entries with |Δ| > 2e-6.
    #[serde(deserialize_with = "crate::io::json_nan::f64_or_nan")]
    pub significant_update_share: f64,
    /// Seconds of fine-tuning steps.
    #[serde(deserialize_with = "crate::io::json_nan::f64_or_nan")]
    pub seconds: f64,
    /// Steps skipped for non-finite values.
    pub skipped_steps: u64,
    /// Training loss per step.
    pub loss_curve: Vec<Option<f64>>,
    /// Held-out losses during fine-tuning.
    pub curve: Vec<CurvePoint>,
}

/// Everything a run produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForgettingResults {
    /// "mofo-forgetting-results/1".
    pub format: String,
    /// The configuration.
    pub config: ForgettingConfig,
    /// The base model.
    pub base: BaseResult,
    /// One row per run.
    pub rows: Vec<MethodResult>,
    /// Total wall time.
    #[serde(deserialize_with = "crate::io::json_nan::f64_or_nan")]
    pub seconds: f64,
}

/// The prepared data of an experiment.
pub struct Prepared {
    /// Tokenizer.
    pub tok: TokenizerInfo,
    /// Pre-training batches.
    pub pretrain: LmBatches,
    /// Held-out pre-training loss batches.
    pub pretrain_heldout: Vec<TokenBatch>,
    /// Fine-tuning batches.
    pub finetune: QaBatches,
    /// Held-out task loss batches.
    pub finetune_heldout: Vec<TokenBatch>,
    /// Held-out task questions (prompt, answer + EOS).
    pub task_items: Vec<(Vec<u32>, Vec<u32>)>,
    /// Fact recall questions (prompt, answer).
    pub probe_items: Vec<(Vec<u32>, Vec<u32>)>,
    /// Fact multiple-choice questions.
    pub choice_items: Vec<ChoiceItem>,
}

fn with_bos(special: &SpecialTokens, mut ids: Vec<u32>) -> Vec<u32> {
    if let Some(b) = special.bos {
        ids.insert(0, b);
    }
    ids
}

/// Generates and tokenizes the data of `cfg`.
pub fn prepare(cfg: &ForgettingConfig, tok: TokenizerInfo) -> Result<Prepared, ExperimentError> {
    let kb = cfg.knowledge.generate()?;
    let task = cfg.task.generate()?;
    let enc: &dyn Encode = tok.encoder.as_ref();
    let sp = tok.special;
    let longest = kb
        .train_sentences
        .iter()
        .chain(&kb.heldout_sentences)
        .map(|s| enc.encode(s).len() + 2)
        .max()
        .unwrap_or(0);
    if longest > cfg.pretrain.seq_len {
        return Err(ExperimentError::Config(format!(
            "pretrain.seq_len {} is shorter than the longest sentence ({longest} tokens)",
            cfg.pretrain.seq_len
        )));
    }
    let p = &cfg.pretrain;
    let pretrain = LmBatches::new(
        enc,
        &kb.train_sentences,
        sp,
        p.batch_size,
        p.seq_len,
        p.seed,
    )?;
    let pretrain_heldout =
        LmBatches::new(enc, &kb.heldout_sentences, sp, 32, p.seq_len, 0)?.eval_batches();
    let f = &cfg.finetune;
    let finetune = QaBatches::new(
        tokenize_qa(enc, &task.train, sp.eos),
        sp,
        f.batch_size,
        f.seq_len,
        f.seed,
    )?;
    let eval_qa = tokenize_qa(enc, &task.eval, sp.eos);
    let finetune_heldout = QaBatches::new(eval_qa.clone(), sp, 32, f.seq_len, 0)?.eval_batches();
    let task_items = eval_qa
        .into_iter()
        .map(|q| (with_bos(&sp, q.prompt), q.answer))
        .collect();
    let n = if cfg.eval.probes == 0 {
        kb.probes.len()
    } else {
        cfg.eval.probes.min(kb.probes.len())
    };
    let probes = &kb.probes[..n];
    let probe_items = probes
        .iter()
        .map(|p| (with_bos(&sp, enc.encode(&p.prompt)), enc.encode(&p.answer)))
        .collect();
    let choice_items = probes
        .iter()
        .map(|p| ChoiceItem {
            prompt: with_bos(&sp, enc.encode(&p.prompt)),
            choices: p.choices.iter().map(|c| enc.encode(c)).collect(),
            correct: p.correct,
        })
        .collect();
    Ok(Prepared {
        tok,
        pretrain,
        pretrain_heldout,
        finetune,
        finetune_heldout,
        task_items,
        probe_items,
        choice_items,
    })
}

/// The scores of a model on everything.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scores {
    /// Task exact match.
    pub finetune_accuracy: f64,
    /// Held-out task loss.
    pub finetune_loss: f64,
    /// Greedy fact recall.
    pub retained_accuracy: f64,
    /// Multiple-choice fact accuracy.
    pub retained_mc_accuracy: f64,
    /// Held-out pre-training loss.
    pub pretrain_loss: f64,
}

/// Scores `params` on the prepared evaluation sets.
pub fn score(model: &dyn TrainableModel, params: &ParamStore<f32>, data: &Prepared) -> Scores {
    let lm = Bound::new(model, params);
    Scores {
        finetune_accuracy: exact_match(&lm, &data.task_items),
        finetune_loss: mean_loss(&lm, &data.finetune_heldout),
        retained_accuracy: exact_match(&lm, &data.probe_items),
        retained_mc_accuracy: multiple_choice(&lm, &data.choice_items),
        pretrain_loss: mean_loss(&lm, &data.pretrain_heldout),
    }
}

/// FNV-1a 64-bit hash (stable across runs and platforms), `io::fnv`'s.
pub use crate::io::fnv::fnv1a64;

/// What determines the base model (the cache key is its hash).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct BaseKey {
    format: String,
    model: ModelSize,
    knowledge: crate::data::KnowledgeConfig,
    pretrain: PhaseConfig,
    vocab_size: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct CachedBase {
    key: BaseKey,
    pretrain_train_loss: f64,
    pretrain_seconds: f64,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ExperimentError + '_ {
    move |source| ExperimentError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn log(opts: &RunOptions, msg: &str) {
    if opts.verbose {
        eprintln!("{msg}");
    }
}

fn tail_mean(losses: &[Option<f64>], n: usize) -> f64 {
    let v: Vec<f64> = losses.iter().rev().flatten().take(n).copied().collect();
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// The pre-trained base: model, parameters, scores, and what they were
/// made for.
struct Base {
    model: Box<dyn TrainableModel>,
    params: ParamStore<f32>,
    result: BaseResult,
    /// What determined the parameters.
    key: BaseKey,
    /// What determined the scores besides the parameters.
    scored_for: ScoreSets,
}

/// What the evaluation sets of [`score`] depend on besides the base key.
type ScoreSets = (crate::data::TaskConfig, EvalConfig, usize);

fn score_sets(cfg: &ForgettingConfig) -> ScoreSets {
    (cfg.task.clone(), cfg.eval.clone(), cfg.finetune.seq_len)
}

fn base_key(cfg: &ForgettingConfig, vocab_size: usize) -> BaseKey {
    BaseKey {
        format: "mofo-forgetting-base/1".into(),
        model: cfg.model.clone(),
        knowledge: cfg.knowledge.clone(),
        pretrain: cfg.pretrain.clone(),
        vocab_size,
    }
}

/// `result` with the scores `s`.
fn with_scores(result: BaseResult, s: Scores) -> BaseResult {
    BaseResult {
        finetune_accuracy: s.finetune_accuracy,
        finetune_loss: s.finetune_loss,
        retained_accuracy: s.retained_accuracy,
        retained_mc_accuracy: s.retained_mc_accuracy,
        pretrain_loss: s.pretrain_loss,
        ..result
    }
}

/// Pre-trains the base model, or loads it from the cache when its key matches.
fn base_model(
    cfg: &ForgettingConfig,
    backend: &dyn Backend,
    data: &Prepared,
    opts: &RunOptions,
) -> Result<Base, ExperimentError> {
    let (model, mut params) = backend.model(&cfg.model, data.tok.vocab_size)?;
    let key = base_key(cfg, data.tok.vocab_size);
    let key_json = serde_json::to_string(&key).expect("key serialises");
    let hash = format!("{:016x}", fnv1a64(key_json.as_bytes()));
    let cache = opts.cache_dir.as_ref().map(|d| d.join(&hash));
    let mut cached = None;
    if let Some(dir) = &cache {
        let meta = dir.join("base.json");
        if let Ok(bytes) = std::fs::read(&meta) {
            match serde_json::from_slice::<CachedBase>(&bytes) {
                Ok(c) if c.key == key => match model.load(&dir.join("model")) {
                    Ok(p) if p.check_same_layout(&params).is_ok() => {
                        log(opts, &format!("base model: cached in {}", dir.display()));
                        params = p;
                        cached = Some(c);
                    }
                    _ => log(opts, "base model: cache unreadable, pre-training again"),
                },
                _ => log(opts, "base model: cache key differs, pre-training again"),
            }
        }
    }
    let (train_loss, seconds, was_cached) = match cached {
        Some(c) => (c.pretrain_train_loss, c.pretrain_seconds, true),
        None => {
            log(
                opts,
                &format!(
                    "pre-training {} parameters for {} steps",
                    params.num_elements(),
                    cfg.pretrain.steps
                ),
            );
            let adam = MethodConfig {
                weight_decay: Some(cfg.pretrain.weight_decay),
                ..MethodConfig::named("adam")
            };
            let mut opt = backend.optimizer(&adam, &cfg.pretrain, &params)?;
            let lr = backend.schedule(&cfg.pretrain, cfg.pretrain.lr);
            let trainer = Trainer {
                model: model.as_ref(),
                data: &data.pretrain,
                lr: lr.as_ref(),
                options: TrainOptions {
                    steps: cfg.pretrain.steps,
                    progress: opts.progress,
                    label: "pre-train".into(),
                    ..Default::default()
                },
            };
            let mut state = TrainState::default();
            trainer.run(&mut params, opt.as_mut(), &mut state, None)?;
            let tl = tail_mean(&state.losses, 10);
            if let Some(dir) = &cache {
                model.save(&params, &dir.join("model"))?;
                let meta = CachedBase {
                    key: key.clone(),
                    pretrain_train_loss: tl,
                    pretrain_seconds: state.seconds,
                };
                let p = dir.join("base.json");
                write_atomic(&p, &serde_json::to_vec_pretty(&meta).expect("serialises"))
                    .map_err(io_err(&p))?;
            }
            (tl, state.seconds, false)
        }
    };
    let s = score(model.as_ref(), &params, data);
    let unscored = BaseResult {
        parameters: params.num_elements(),
        finetune_accuracy: f64::NAN,
        finetune_loss: f64::NAN,
        retained_accuracy: f64::NAN,
        retained_mc_accuracy: f64::NAN,
        pretrain_loss: f64::NAN,
        pretrain_train_loss: train_loss,
        pretrain_seconds: seconds,
        cached: was_cached,
        cache_key: hash,
    };
    Ok(Base {
        model,
        params,
        result: with_scores(unscored, s),
        key,
        scored_for: score_sets(cfg),
    })
}

/// What every fine-tuning run shares.
struct Context<'a> {
    cfg: &'a ForgettingConfig,
    backend: &'a dyn Backend,
    data: &'a Prepared,
    base: &'a Base,
    opts: &'a RunOptions,
}

/// Fine-tunes a copy of `base` with `method` and scores it.
fn fine_tune(ctx: &Context<'_>, method: &MethodConfig) -> Result<MethodResult, ExperimentError> {
    let Context {
        cfg,
        backend,
        data,
        opts,
        ..
    } = *ctx;
    let model = ctx.base.model.as_ref();
    let base = &ctx.base.params;
    let base_scores = &ctx.base.result;
    let mut params = base.clone();
    let mut opt = backend.optimizer(method, &cfg.finetune, base)?;
    let lr = backend.schedule(&cfg.finetune, method.peak_lr(&cfg.finetune));
    let label = method.label();
    let trainer = Trainer {
        model,
        data: &data.finetune,
        lr: lr.as_ref(),
        options: TrainOptions {
            steps: cfg.finetune.steps,
            eval_every: cfg.eval.every,
            progress: opts.progress,
            label: label.clone(),
            out_dir: None,
            ..Default::default()
        },
    };
    let mut state = TrainState::default();
    let mut curve = vec![CurvePoint {
        step: 0,
        finetune_loss: base_scores.finetune_loss,
        pretrain_loss: base_scores.pretrain_loss,
    }];
    let mut eval = |step: u64, p: &ParamStore<f32>| -> Result<BTreeMap<String, f64>, TrainError> {
        let lm = Bound::new(model, p);
        let point = CurvePoint {
            step,
            finetune_loss: mean_loss(&lm, &data.finetune_heldout),
            pretrain_loss: mean_loss(&lm, &data.pretrain_heldout),
        };
        let m = BTreeMap::from([
            ("finetune_loss".to_string(), point.finetune_loss),
            ("pretrain_loss".to_string(), point.pretrain_loss),
        ]);
        curve.push(point);
        Ok(m)
    };
    trainer.run(&mut params, opt.as_mut(), &mut state, Some(&mut eval))?;
    let s = score(model, &params, data);
    let distance =
        distance_to_reference(&params, base).map_err(|e| TrainError::Model(e.to_string()))?;
    let share = updated_share(&params, base, SIGNIFICANT_UPDATE)
        .map_err(|e| TrainError::Model(e.to_string()))?;
    Ok(MethodResult {
        method: method.name.clone(),
        label,
        config: method.clone(),
        finetune_accuracy: s.finetune_accuracy,
        finetune_loss: s.finetune_loss,
        retained_accuracy: s.retained_accuracy,
        retained_mc_accuracy: s.retained_mc_accuracy,
        pretrain_loss: s.pretrain_loss,
        pretrain_loss_increase: s.pretrain_loss - base_scores.pretrain_loss,
        distance,
        significant_update_share: share,
        seconds: state.seconds,
        skipped_steps: state.skipped,
        loss_curve: state.losses,
        curve,
    })
}

/// Runs the whole experiment: base model, every method, results in memory
/// (see [`report`] for the files).
pub fn run_forgetting(
    cfg: &ForgettingConfig,
    backend: &dyn Backend,
    opts: &RunOptions,
) -> Result<ForgettingResults, ExperimentError> {
    run_resumable(cfg, backend, opts, &opts.out_dir, &mut None)
}

/// Runs the experiment `runs` times, run r with the seeds of `scope` moved
/// by r (see [`seeds`]; run 0 is [`run_forgetting`]'s run of `cfg`), each
/// writing its reports into `opts.out_dir/run-r` once it is done. A base
/// model whose configuration a run shares with the run before it is
/// pre-trained (or read from the cache) once. With `opts.resume`, each
/// run keeps what an earlier invocation finished (see [`resume`]).
pub fn run_forgetting_seeds(
    cfg: &ForgettingConfig,
    runs: u64,
    scope: SeedScope,
    backend: &dyn Backend,
    opts: &RunOptions,
) -> Result<Vec<ForgettingResults>, ExperimentError> {
    if runs == 0 {
        return Err(ExperimentError::Config("--seeds must be at least 1".into()));
    }
    // Seeds change nothing that is validated, and the last run's are the
    // largest: both checks are made before the first run starts.
    cfg.validate().map_err(ExperimentError::Config)?;
    scope
        .seeded(cfg, runs - 1)
        .map_err(ExperimentError::Config)?;
    let mut kept = None;
    let mut out = Vec::new();
    for r in 0..runs {
        let c = &scope.seeded(cfg, r).map_err(ExperimentError::Config)?;
        let seeds = seeds::RunSeeds::of(c);
        log(
            opts,
            &format!(
                "run {r} of runs 0–{}: seeds model {}, knowledge {}, task {}, pre-training {}, fine-tuning {}",
                runs - 1,
                seeds.model,
                seeds.knowledge,
                seeds.task,
                seeds.pretrain,
                seeds.finetune
            ),
        );
        let dir = seeds_report::run_dir(&opts.out_dir, r);
        let result = run_resumable(c, backend, opts, &dir, &mut kept)?;
        report::write_reports(&result, &dir)?;
        out.push(result);
    }
    Ok(out)
}

/// One run of the experiment whose files go to `dir`: with `opts.resume`,
/// the results `dir` holds where they are of `cfg`, otherwise
/// [`run_once`].
fn run_resumable(
    cfg: &ForgettingConfig,
    backend: &dyn Backend,
    opts: &RunOptions,
    dir: &Path,
    kept: &mut Option<Base>,
) -> Result<ForgettingResults, ExperimentError> {
    if opts.resume {
        match resume::finished(dir, cfg) {
            resume::Finished::Done(done) => {
                log(
                    opts,
                    &format!("finished before: kept from {}", dir.display()),
                );
                return Ok(*done);
            }
            resume::Finished::Stale(why) => log(opts, &format!("{why}; running it again")),
            resume::Finished::Absent => {}
        }
    }
    run_once(cfg, backend, opts, dir, kept)
}

/// One run of the experiment; `kept` holds the base of the run before,
/// reused where its key matches, and this run's base afterwards. After
/// each method its rows so far go to `dir`'s partial record, whose rows
/// it keeps with `opts.resume` ([`resume`]).
fn run_once(
    cfg: &ForgettingConfig,
    backend: &dyn Backend,
    opts: &RunOptions,
    dir: &Path,
    kept: &mut Option<Base>,
) -> Result<ForgettingResults, ExperimentError> {
    cfg.validate().map_err(ExperimentError::Config)?;
    let started = Instant::now();
    let methods = cfg.runs();
    let (mut rows, seconds_before) = match opts
        .resume
        .then(|| resume::partial_rows(dir, cfg, &methods))
    {
        Some(Ok((rows, seconds))) => {
            log(
                opts,
                &format!(
                    "{} of {} methods fine-tuned before: kept from {}",
                    rows.len(),
                    methods.len(),
                    dir.join(resume::PARTIAL).display()
                ),
            );
            (rows, seconds)
        }
        Some(Err(Some(why))) => {
            log(opts, &format!("{why}; every method runs"));
            (Vec::new(), 0.0)
        }
        _ => (Vec::new(), 0.0),
    };
    let data = prepare(cfg, backend.tokenizer())?;
    let base = match kept.take() {
        Some(mut b) if b.key == base_key(cfg, data.tok.vocab_size) => {
            log(opts, "base model: the one of the run before");
            if b.scored_for != score_sets(cfg) {
                let s = score(b.model.as_ref(), &b.params, &data);
                b.result = with_scores(b.result, s);
                b.scored_for = score_sets(cfg);
            }
            b
        }
        _ => base_model(cfg, backend, &data, opts)?,
    };
    let base_res = base.result.clone();
    log(
        opts,
        &format!(
            "base: task accuracy {:.3}, facts recalled {:.3} (multiple choice {:.3}), held-out pre-training loss {:.4}",
            base_res.finetune_accuracy,
            base_res.retained_accuracy,
            base_res.retained_mc_accuracy,
            base_res.pretrain_loss
        ),
    );
    let record = |rows: Vec<MethodResult>| ForgettingResults {
        format: "mofo-forgetting-results/1".into(),
        config: cfg.clone(),
        base: base_res.clone(),
        rows,
        seconds: seconds_before + started.elapsed().as_secs_f64(),
    };
    for m in &methods[rows.len()..] {
        let ctx = Context {
            cfg,
            backend,
            data: &data,
            base: &base,
            opts,
        };
        let r = fine_tune(&ctx, m)?;
        log(
            opts,
            &format!(
                "{:<16} task {:.3}  facts {:.3} (mc {:.3})  ΔL_pre {:+.4}  distance {:.4}  updated {:.1}%  {:.1}s",
                r.label,
                r.finetune_accuracy,
                r.retained_accuracy,
                r.retained_mc_accuracy,
                r.pretrain_loss_increase,
                r.distance,
                100.0 * r.significant_update_share,
                r.seconds
            ),
        );
        rows.push(r);
        resume::write_partial(dir, &record(rows.clone()))?;
    }
    let results = record(rows);
    *kept = Some(base);
    Ok(results)
}
