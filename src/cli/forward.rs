//! `mofo forward`: run a model on a batch of token ids and write its logits,
//! loss and gradients as safetensors, in the layout of the reference files
//! (`../shared/reference/models/*/reference.safetensors`):
//!
//! ```text
//! input_ids      i64 [B, T]
//! logits         f32 [B, T, vocab]
//! loss           f32 [1]      L = mean over b, t < T−1 of −log softmax(logits[b, t])[ids[b, t+1]]
//! grad.<name>    f32, the parameter's shape: ∂L/∂parameter   (omitted with --no-grad)
//! ```
//!
//! `IDS.json` is a non-empty list of equal-length lists of token ids, each
//! below the vocabulary size, of length 2 ..= max_position_embeddings.

use std::path::{Path, PathBuf};

use ndarray::{Array2, Array3, Axis};
use rayon::prelude::*;

use super::generate::DtypeArg;
use super::CliResult;
use crate::model::forward::{loss_and_grads, Batch};
use crate::model::generate::{Decoder, GenerateError};
use crate::model::safetensors_io::{params_to_tensors, write_tensors, OutTensor, SafetensorsError};
use crate::model::{LlamaConfig, LlamaModel};
use crate::{ParamStore, Scalar};

/// Arguments of `mofo forward`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model directory (config.json + model.safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// JSON file: a list of equal-length lists of token ids.
    #[arg(long)]
    pub input_ids: PathBuf,
    /// Output safetensors file.
    #[arg(long)]
    pub out: PathBuf,
    /// Element type of the computation (the file is f32 either way).
    #[arg(long, value_enum, default_value_t = DtypeArg::F32)]
    pub dtype: DtypeArg,
    /// Write only input_ids, logits and loss (no backward pass; the logits
    /// then come from the key/value inference forward).
    #[arg(long)]
    pub no_grad: bool,
}

/// Errors in an input-ids file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputIdsError {
    /// The file could not be read.
    #[error("cannot read {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        message: String,
    },
    /// Not JSON, or not a list of lists of integers.
    #[error("input ids must be a JSON list of lists of token ids: {0}")]
    Format(String),
    /// The batch has no sequence.
    #[error("input ids: the batch is empty")]
    EmptyBatch,
    /// Sequences differ in length.
    #[error("input ids: sequence {index} has length {len}, sequence 0 has {expected}")]
    Ragged {
        /// The sequence.
        index: usize,
        /// Its length.
        len: usize,
        /// The first sequence's length.
        expected: usize,
    },
    /// Sequences are too short for a next-token loss.
    #[error("input ids: sequences have length {0}; the next-token loss needs at least 2")]
    TooShort(usize),
    /// Sequences are longer than the model allows.
    #[error("input ids: sequence length {len} exceeds max_position_embeddings = {max}")]
    TooLong {
        /// The length.
        len: usize,
        /// The model's limit.
        max: usize,
    },
    /// An id is not below the vocabulary size.
    #[error("input ids: token {token} at [{row}][{col}] is not below vocab_size = {vocab}")]
    OutOfVocab {
        /// The id.
        token: u64,
        /// Its sequence.
        row: usize,
        /// Its position.
        col: usize,
        /// The vocabulary size.
        vocab: usize,
    },
}

/// Parses and validates the text of an input-ids file for `cfg`.
pub fn parse_input_ids(text: &str, cfg: &LlamaConfig) -> Result<Vec<Vec<u32>>, InputIdsError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| InputIdsError::Format(e.to_string()))?;
    let rows = value
        .as_array()
        .ok_or_else(|| InputIdsError::Format(format!("expected a list, got {value}")))?;
    if rows.is_empty() {
        return Err(InputIdsError::EmptyBatch);
    }
    let mut out = Vec::with_capacity(rows.len());
    for (r, row) in rows.iter().enumerate() {
        let items = row
            .as_array()
            .ok_or_else(|| InputIdsError::Format(format!("sequence {r} is not a list: {row}")))?;
        let mut seq = Vec::with_capacity(items.len());
        for (c, item) in items.iter().enumerate() {
            let token = item.as_u64().ok_or_else(|| {
                InputIdsError::Format(format!("[{r}][{c}] = {item} is not a non-negative integer"))
            })?;
            if token >= cfg.vocab_size as u64 {
                return Err(InputIdsError::OutOfVocab {
                    token,
                    row: r,
                    col: c,
                    vocab: cfg.vocab_size,
                });
            }
            seq.push(token as u32);
        }
        out.push(seq);
    }
    let t = out[0].len();
    if let Some((index, s)) = out.iter().enumerate().find(|(_, s)| s.len() != t) {
        return Err(InputIdsError::Ragged {
            index,
            len: s.len(),
            expected: t,
        });
    }
    if t < 2 {
        return Err(InputIdsError::TooShort(t));
    }
    if t > cfg.max_position_embeddings {
        return Err(InputIdsError::TooLong {
            len: t,
            max: cfg.max_position_embeddings,
        });
    }
    Ok(out)
}

/// Reads and validates an input-ids file (see [`parse_input_ids`]).
pub fn read_input_ids(path: &Path, cfg: &LlamaConfig) -> Result<Vec<Vec<u32>>, InputIdsError> {
    let text = std::fs::read_to_string(path).map_err(|e| InputIdsError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    parse_input_ids(&text, cfg)
}

/// Logits `[B, T, vocab]` of each sequence, by the inference forward
/// (sequences in parallel).
pub fn batch_logits<T: Scalar>(
    model: &LlamaModel<T>,
    ids: &[Vec<u32>],
) -> Result<Array3<T>, GenerateError> {
    let decoder = Decoder::new(&model.config, &model.params)?;
    let rows = ids
        .par_iter()
        .map(|seq| decoder.forward(&mut decoder.new_cache(), seq))
        .collect::<Result<Vec<_>, _>>()?;
    let t = ids.first().map_or(0, Vec::len);
    let mut out = Array3::zeros((ids.len(), t, model.config.vocab_size));
    for (mut dst, src) in out.axis_iter_mut(Axis(0)).zip(&rows) {
        dst.assign(src);
    }
    Ok(out)
}

/// Mean next-token cross-entropy (position t predicts token t+1), computed
/// in f64: `mean_{b, t<T−1} [logsumexp(logits[b,t]) − logits[b, t, ids[b][t+1]]]`.
pub fn next_token_loss<T: Scalar>(logits: &Array3<T>, ids: &[Vec<u32>]) -> f64 {
    let mut total = 0.0;
    let mut count = 0usize;
    for (b, seq) in ids.iter().enumerate() {
        for t in 0..seq.len().saturating_sub(1) {
            let row = logits.slice(ndarray::s![b, t, ..]);
            let max = row
                .iter()
                .map(|x| x.as_f64())
                .fold(f64::NEG_INFINITY, f64::max);
            let lse = max
                + row
                    .iter()
                    .map(|x| (x.as_f64() - max).exp())
                    .sum::<f64>()
                    .ln();
            total += lse - row[seq[t + 1] as usize].as_f64();
            count += 1;
        }
    }
    total / count as f64
}

/// Writes the outputs in the reference layout (see the module docs).
pub fn write_outputs<T: Scalar>(
    path: &Path,
    cfg: &LlamaConfig,
    ids: &[Vec<u32>],
    logits: &Array3<T>,
    loss: f64,
    grads: Option<&ParamStore<T>>,
) -> Result<(), SafetensorsError> {
    let (b, t) = (ids.len(), ids.first().map_or(0, Vec::len));
    let mut tensors = vec![
        OutTensor::i64(
            "input_ids",
            &[b, t],
            ids.iter().flatten().map(|&x| x as i64).collect(),
        ),
        OutTensor::f32(
            "logits",
            logits.shape(),
            logits.iter().map(|x| x.as_f32()).collect(),
        ),
        OutTensor::f32("loss", &[1], vec![loss as f32]),
    ];
    if let Some(g) = grads {
        tensors.extend(params_to_tensors(cfg, g, "grad.")?);
    }
    write_tensors(path, &tensors)
}

/// Logits, loss and (unless `no_grad`) gradients of a validated batch.
/// Gradients come from the tape forward/backward
/// ([`crate::model::forward::loss_and_grads`]); without them the key/value
/// inference forward gives the logits and [`next_token_loss`] the loss.
pub fn compute<T: Scalar>(
    model: &LlamaModel<T>,
    ids: &[Vec<u32>],
    no_grad: bool,
) -> CliResult<(Array3<T>, f64, Option<ParamStore<T>>)> {
    if no_grad {
        let logits = batch_logits(model, ids)?;
        let loss = next_token_loss(&logits, ids);
        return Ok((logits, loss, None));
    }
    let (b, t) = (ids.len(), ids.first().map_or(0, Vec::len));
    let flat: Vec<u32> = ids.iter().flatten().copied().collect();
    let input_ids = Array2::from_shape_vec((b, t), flat)
        .map_err(|e| format!("input ids do not form a [{b}, {t}] batch: {e}"))?;
    let out = loss_and_grads(&model.config, &model.params, &Batch::new(input_ids))?;
    Ok((out.logits, out.loss.as_f64(), Some(out.grads)))
}

fn run_typed<T: Scalar>(args: &Args) -> CliResult {
    let model = LlamaModel::<T>::load(&args.model)?;
    let ids = read_input_ids(&args.input_ids, &model.config)?;
    let (logits, loss, grads) = compute(&model, &ids, args.no_grad)?;
    write_outputs(
        &args.out,
        &model.config,
        &ids,
        &logits,
        loss,
        grads.as_ref(),
    )?;
    println!(
        "wrote {} (batch {}, length {}, loss {loss:.6}{})",
        args.out.display(),
        ids.len(),
        ids[0].len(),
        if grads.is_some() {
            ", with gradients"
        } else {
            ""
        }
    );
    Ok(())
}

/// Runs `mofo forward`.
pub fn run(args: Args) -> CliResult {
    match args.dtype {
        DtypeArg::F32 => run_typed::<f32>(&args),
        DtypeArg::F64 => run_typed::<f64>(&args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LlamaConfig {
        LlamaConfig {
            vocab_size: 10,
            hidden_size: 8,
            intermediate_size: 8,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            num_key_value_heads: 2,
            head_dim: 4,
            rms_norm_eps: 1e-6,
            rope_theta: 1e4,
            tie_word_embeddings: true,
            max_position_embeddings: 4,
        }
    }

    #[test]
    fn input_ids_are_validated() {
        let c = cfg();
        assert_eq!(
            parse_input_ids("[[1, 2, 3], [4, 5, 9]]", &c),
            Ok(vec![vec![1, 2, 3], vec![4, 5, 9]])
        );
        let err = |text: &str| parse_input_ids(text, &c).unwrap_err();
        assert!(matches!(err("[[1, 2"), InputIdsError::Format(_)));
        assert!(matches!(err("{\"a\": 1}"), InputIdsError::Format(_)));
        assert!(matches!(err("[1, 2]"), InputIdsError::Format(_)));
        assert!(matches!(err("[[1, -2]]"), InputIdsError::Format(_)));
        assert!(matches!(err("[[1, 2.5]]"), InputIdsError::Format(_)));
        assert!(matches!(err("[[1, \"2\"]]"), InputIdsError::Format(_)));
        assert_eq!(err("[]"), InputIdsError::EmptyBatch);
        assert_eq!(
            err("[[1, 2], [3]]"),
            InputIdsError::Ragged {
                index: 1,
                len: 1,
                expected: 2
            }
        );
        assert_eq!(err("[[1]]"), InputIdsError::TooShort(1));
        assert_eq!(err("[[]]"), InputIdsError::TooShort(0));
        assert_eq!(
            err("[[1, 2, 3, 4, 5]]"),
            InputIdsError::TooLong { len: 5, max: 4 }
        );
        assert_eq!(
            err("[[1, 2], [3, 10]]"),
            InputIdsError::OutOfVocab {
                token: 10,
                row: 1,
                col: 1,
                vocab: 10
            }
        );
    }

    #[test]
    fn loss_is_mean_next_token_cross_entropy() {
        // Uniform logits: every term is ln(vocab).
        let logits = Array3::<f64>::zeros((2, 3, 5));
        let ids = vec![vec![0, 1, 2], vec![3, 4, 0]];
        assert!((next_token_loss(&logits, &ids) - 5f64.ln()).abs() < 1e-12);
        // One confident correct prediction among two terms.
        let mut logits = Array3::<f64>::zeros((1, 3, 2));
        logits[(0, 0, 1)] = 50.0;
        let l = next_token_loss(&logits, &[vec![0, 1, 0]]);
        assert!((l - 2f64.ln() / 2.0).abs() < 1e-12, "{l}");
    }
}
