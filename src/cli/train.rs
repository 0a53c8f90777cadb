//! `mofo train`: trains or fine-tunes a Llama model on your own text file.
//!
//! The file is tokenized (byte level by default, or a Hugging Face
//! `tokenizer.json`), its last `--validation-share` is kept for the
//! validation loss, and the rest is sampled in windows of `--seq-len` tokens
//! (a pure function of `--seed` and the step). Learning rate: linear warmup,
//! then cosine to `--min-lr-ratio`·lr. Writes `OUT/metrics.jsonl`,
//! checkpoints under `OUT/checkpoints/` (model in Hugging Face format,
//! optimizer state, loop state; atomic) and the final model in `OUT/model/`.
//! `--resume` continues from the latest checkpoint exactly as if the run had
//! not been interrupted.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

use super::init_threads;
use super::CliResult;
use crate::data::{load_text_file, mean_loss};
use crate::experiments::forgetting::config::check_grad_clip;
use crate::experiments::forgetting::{MethodConfig, PhaseConfig, METHODS};
use crate::io::write_atomic;
use crate::model::HfConfig;
use crate::tokenizer::{ByteTokenizer, HfTokenizer, Tokenizer};
use crate::train::llama::{build_optimizer, warmup_cosine, LlamaTrainModel};
use crate::train::{
    latest_checkpoint, Bound, NonFinitePolicy, TrainError, TrainOptions, TrainState,
    TrainableModel, Trainer,
};

/// Arguments of `mofo train`.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct Args {
    /// The training text (UTF-8).
    #[arg(long, value_name = "FILE.txt")]
    pub data: PathBuf,
    /// A Hugging Face tokenizer.json (default: the built-in byte tokenizer).
    #[arg(long, value_name = "tokenizer.json")]
    pub tokenizer: Option<PathBuf>,
    /// Fine-tune this model (a Hugging Face model directory).
    #[arg(long, value_name = "DIR", conflicts_with = "config")]
    pub model: Option<PathBuf>,
    /// Train a new model of this architecture (a Hugging Face config.json).
    #[arg(long, value_name = "CONFIG.json")]
    pub config: Option<PathBuf>,
    /// Output directory.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Optimizer steps.
    #[arg(long, default_value_t = 1000)]
    pub steps: u64,
    /// Peak learning rate.
    #[arg(long, default_value_t = 3e-4)]
    pub lr: f64,
    /// Rows per micro-batch.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Tokens per row.
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,
    /// Micro-batches per step (gradient accumulation).
    #[arg(long, default_value_t = 1)]
    pub grad_accum: u64,
    /// Linear warmup steps (default: 5% of the steps).
    #[arg(long)]
    pub warmup: Option<u64>,
    /// Cosine floor as a share of the peak learning rate.
    #[arg(long, default_value_t = 0.1)]
    pub min_lr_ratio: f64,
    /// Optimizer: adam, mofo, lion, lion_mofo, random_bcd, grad_bcd, mv_bcd,
    /// hft, l1_reg, l2_reg.
    #[arg(long, default_value = "adam", value_name = "SPEC")]
    pub optimizer: String,
    /// Fraction α of entries updated per block (filtered optimizers).
    #[arg(long)]
    pub alpha: Option<f64>,
    /// Strength of the L1/L2 pull toward the starting weights.
    #[arg(long)]
    pub lambda: Option<f64>,
    /// Decoupled weight decay.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Clip gradients to this global norm (0: no clipping).
    #[arg(long, default_value_t = 1.0)]
    pub grad_clip: f64,
    /// Evaluate the validation loss every this many steps (0: at the end only).
    #[arg(long, default_value_t = 100)]
    pub eval_every: u64,
    /// Checkpoint every this many steps (0: at the end only).
    #[arg(long, default_value_t = 100)]
    pub checkpoint_every: u64,
    /// Checkpoints kept on disk.
    #[arg(long, default_value_t = 2)]
    pub keep_checkpoints: usize,
    /// Share of the file (its end) kept for validation.
    #[arg(long, default_value_t = 0.05)]
    pub validation_share: f64,
    /// Seed of the batch order (and of the initialisation with --config).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Continue from the latest checkpoint in --out.
    #[arg(long)]
    #[serde(skip)]
    pub resume: bool,
    /// On a NaN/infinite loss or gradient: stop (default) or skip the step.
    #[arg(long, value_enum, default_value_t = NonFinitePolicy::Stop)]
    #[serde(skip)]
    pub on_nonfinite: NonFinitePolicy,
    /// With `--on-nonfinite skip`: most steps skipped before stopping.
    #[arg(long, default_value_t = 10)]
    pub max_skipped: u64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    #[serde(skip)]
    pub threads: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    #[serde(skip)]
    pub quiet: bool,
}

/// What a resumed run must share with the run it continues.
fn run_identity(args: &Args, data_hash: u64) -> serde_json::Value {
    let mut v = serde_json::to_value(args).expect("arguments serialise");
    if let Some(o) = v.as_object_mut() {
        o.insert("data_fnv1a64".into(), format!("{data_hash:016x}").into());
        // Where the output goes and how often to write are not part of the run.
        for k in ["out", "keep_checkpoints", "eval_every", "checkpoint_every"] {
            o.remove(k);
        }
    }
    v
}

/// The method configuration `--optimizer` and its flags describe.
fn method(args: &Args) -> CliResult<MethodConfig> {
    let name = args.optimizer.trim();
    if !METHODS.contains(&name) {
        return Err(format!(
            "unknown --optimizer `{name}` (known: {})",
            METHODS.join(", ")
        )
        .into());
    }
    if let Some(a) = args.alpha {
        if !(a > 0.0 && a <= 1.0) {
            return Err(format!("--alpha must be in (0, 1], got {a}").into());
        }
    }
    Ok(MethodConfig {
        alpha: args.alpha,
        lambda: args.lambda,
        weight_decay: Some(args.weight_decay),
        ..MethodConfig::named(name)
    })
}

/// [`super::check_memory`] for a micro-batch of `tokens` tokens, at a
/// lower bound of what one training step keeps per token: each layer's six
/// hidden-wide and three MLP-wide activations, and the logits, in f32 (the
/// real step keeps more). A `--batch-size` of 10⁸ ran the machine out of
/// memory before this check.
fn step_fits_in_memory(
    cfg: &crate::model::LlamaConfig,
    tokens: usize,
    available: Option<u64>,
) -> CliResult {
    let per_token = cfg.num_hidden_layers as u64
        * (6 * cfg.hidden_size as u64 + 3 * cfg.intermediate_size as u64)
        + cfg.vocab_size as u64;
    super::check_memory(
        (tokens as u64).saturating_mul(per_token).saturating_mul(4),
        available,
        &format!("the activations of --batch-size × --seq-len = {tokens} tokens per micro-batch"),
        "use a smaller --batch-size (and --grad-accum for a larger effective batch)",
    )
}

/// Runs `mofo train`.
pub fn run(args: Args) -> CliResult {
    init_threads(args.threads)?;
    super::at_least_one("--steps", args.steps)?;
    super::at_least_one("--batch-size", args.batch_size)?;
    super::at_least_one("--grad-accum", args.grad_accum)?;
    if !(args.lr > 0.0 && args.lr.is_finite()) {
        return Err(format!("--lr must be a positive number, got {}", args.lr).into());
    }
    if !(0.0..=1.0).contains(&args.min_lr_ratio) || !(0.0..0.9).contains(&args.validation_share) {
        return Err("--min-lr-ratio must be in [0, 1] and --validation-share in [0, 0.9)".into());
    }
    check_grad_clip("--grad-clip", args.grad_clip)?;
    let meth = method(&args)?;
    let tokenizer: Box<dyn Tokenizer> = match &args.tokenizer {
        Some(p) => Box::new(HfTokenizer::from_file(p)?),
        None => Box::new(ByteTokenizer),
    };
    let (model, mut params) =
        match (&args.model, &args.config) {
            (Some(dir), _) => LlamaTrainModel::load_dir(dir)?,
            (None, Some(cfg)) => {
                let hf = HfConfig::from_file(cfg)?;
                let m = LlamaTrainModel {
                    config: hf.model,
                    extras: hf.extras,
                };
                let p = m.init(args.seed)?;
                (m, p)
            }
            (None, None) => return Err(
                "give --model DIR to fine-tune a model or --config CONFIG.json to train a new one"
                    .into(),
            ),
        };
    let vocab = model.vocab_size();
    if args.seq_len < 2 || args.seq_len > model.config.max_position_embeddings {
        return Err(format!(
            "--seq-len must be in 2..={} (the model's max_position_embeddings), got {}",
            model.config.max_position_embeddings, args.seq_len
        )
        .into());
    }
    step_fits_in_memory(
        &model.config,
        args.batch_size.saturating_mul(args.seq_len),
        super::available_memory(),
    )?;
    let encode = |s: &str| tokenizer.encode(s).map_err(|e| e.to_string());
    let data = load_text_file(
        &args.data,
        &encode,
        vocab,
        args.seq_len,
        args.validation_share,
    )?;
    let bytes = std::fs::read(&args.data)?;
    let identity = run_identity(&args, crate::experiments::forgetting::fnv1a64(&bytes));
    let run_file = args.out.join("run.json");

    let reference = params.clone();
    let phase = PhaseConfig {
        steps: args.steps,
        batch_size: args.batch_size,
        seq_len: args.seq_len,
        lr: args.lr,
        warmup_steps: args.warmup.unwrap_or(args.steps / 20),
        min_lr_ratio: args.min_lr_ratio,
        weight_decay: args.weight_decay,
        grad_clip: args.grad_clip,
        seed: args.seed,
    };
    let mut opt = build_optimizer(&meth, &phase, &reference)?;
    let lr = warmup_cosine(&phase, args.lr);
    let batches = data.train_batches(args.batch_size, args.seq_len, args.seed)?;
    let val: Vec<_> = data
        .validation_batches(args.batch_size, args.seq_len)
        .into_iter()
        .take(50)
        .collect();
    let trainer = Trainer {
        model: &model,
        data: &batches,
        lr: lr.as_ref(),
        options: TrainOptions {
            steps: args.steps,
            grad_accum: args.grad_accum,
            eval_every: args.eval_every,
            checkpoint_every: args.checkpoint_every,
            log_every: 1,
            nonfinite: args.on_nonfinite,
            max_skipped: args.max_skipped,
            progress: !args.quiet,
            label: "train".into(),
            out_dir: Some(args.out.clone()),
            keep_checkpoints: args.keep_checkpoints,
            stop_after: None,
        },
    };
    let mut state = TrainState::default();
    if args.resume {
        let saved: serde_json::Value = std::fs::read(&run_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| {
                format!(
                    "{}: no run to resume (run.json missing)",
                    args.out.display()
                )
            })?;
        if saved != identity {
            let mut diff = Vec::new();
            if let (Some(a), Some(b)) = (saved.as_object(), identity.as_object()) {
                for (k, v) in b {
                    if a.get(k) != Some(v) {
                        diff.push(k.clone());
                    }
                }
            }
            return Err(format!(
                "--resume: the arguments differ from the run in {} ({}); resume with the same ones",
                args.out.display(),
                diff.join(", ")
            )
            .into());
        }
        match trainer.resume(&mut params, opt.as_mut())? {
            Some(s) => {
                if !args.quiet {
                    eprintln!("resuming {} at step {}", args.out.display(), s.step);
                }
                state = s;
            }
            None => {
                return Err(format!(
                    "--resume: no checkpoint in {}; run without --resume",
                    args.out.display()
                )
                .into())
            }
        }
    } else {
        if latest_checkpoint(&args.out)?.is_some() {
            return Err(format!(
                "{} already holds checkpoints: pass --resume to continue, or choose another --out",
                args.out.display()
            )
            .into());
        }
        write_atomic(
            &run_file,
            serde_json::to_string_pretty(&identity)?.as_bytes(),
        )?;
    }
    let mut eval =
        |_: u64, p: &crate::ParamStore<f32>| -> Result<BTreeMap<String, f64>, TrainError> {
            let mut m = BTreeMap::new();
            if !val.is_empty() {
                m.insert(
                    "validation_loss".into(),
                    mean_loss(&Bound::new(&model, p), &val),
                );
            }
            Ok(m)
        };
    trainer.run(&mut params, opt.as_mut(), &mut state, Some(&mut eval))?;
    let final_dir = args.out.join("model");
    model.save(&params, &final_dir)?;
    if let Some(t) = &args.tokenizer {
        std::fs::copy(t, final_dir.join("tokenizer.json"))?;
    }
    let last = state.losses.iter().rev().flatten().next().copied();
    let val_loss = state
        .evals
        .last()
        .and_then(|e| e.1.get("validation_loss").copied());
    println!(
        "trained {} steps ({} skipped) in {:.1}s; last loss {}; validation loss {}; model in {}",
        state.step,
        state.skipped,
        state.seconds,
        last.map_or("–".into(), |l| format!("{l:.4}")),
        val_loss.map_or("–".into(), |l| format!("{l:.4}")),
        final_dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_micro_batch_larger_than_the_memory_available_is_refused() {
        let cfg = crate::model::LlamaConfig {
            vocab_size: 256,
            hidden_size: 256,
            intermediate_size: 688,
            num_hidden_layers: 6,
            num_attention_heads: 8,
            num_key_value_heads: 8,
            head_dim: 32,
            rms_norm_eps: 1e-6,
            rope_theta: 10_000.0,
            tie_word_embeddings: false,
            max_position_embeddings: 256,
        };
        // 6·(6·256 + 3·688) + 256 = 21 856 floats, 87 424 bytes per token.
        let per_token = 87_424u64;
        assert!(step_fits_in_memory(&cfg, 2048, Some(2048 * per_token)).is_ok());
        let err = step_fits_in_memory(&cfg, 2048, Some(2048 * per_token - 1))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("2048 tokens per micro-batch need about 0.2 GB"),
            "{err}"
        );
        assert!(step_fits_in_memory(&cfg, usize::MAX, Some(u64::MAX - 1)).is_err());
    }
}
