//! Evaluators: held-out loss, exact match under greedy decoding, and
//! multiple choice by log-likelihood.
//!
//! ```text
//! loss          = Σ_{b,t: y_{b,t+1} ≠ −100} −log softmax(z_{b,t})[y_{b,t+1}] / #targets
//! exact match   = #{ i : greedy(prompt_i, |expected_i|) = expected_i } / n
//!               = #{ i : ∀j argmax z(prompt_i ++ expected_i[..j]) = expected_i[j] } / n
//! multiple choice: pick argmax_c Σ_{j} log p(c_j | prompt, c_<j); accuracy = share right
//! ```
//!
//! Greedy decoding stops at `stop` (kept in the output) or after `max_new`
//! tokens. Multiple-choice ties go to the earlier choice.

use ndarray::{Array2, Array3, ArrayView1};
use std::collections::BTreeMap;

use super::tokens::{TokenBatch, IGNORE};

/// What evaluation needs from a model: logits of a batch of equal-length
/// token sequences.
pub trait LanguageModel: Sync {
    /// Logits [batch, seq, vocab] of `input_ids` [batch, seq].
    fn logits(&self, input_ids: &Array2<u32>) -> Array3<f32>;

    /// Greedy continuation of every prompt: up to `max_new` tokens, stopping
    /// after `stop` (kept). Default: [`greedy_by_logits`].
    fn greedy(&self, prompts: &[Vec<u32>], max_new: usize, stop: Option<u32>) -> Vec<Vec<u32>> {
        greedy_by_logits(self, prompts, max_new, stop)
    }
}

/// Greedy decoding through [`LanguageModel::logits`] alone: prompts in groups
/// of equal length (at most [`EVAL_BATCH`] rows), the logits of the whole
/// prefix recomputed for each new token; stops after `stop` or `max_new`.
pub fn greedy_by_logits<M: LanguageModel + ?Sized>(
    model: &M,
    prompts: &[Vec<u32>],
    max_new: usize,
    stop: Option<u32>,
) -> Vec<Vec<u32>> {
    let mut out = vec![Vec::new(); prompts.len()];
    for group in equal_length_groups(prompts.iter().map(Vec::len)) {
        for chunk in group.chunks(EVAL_BATCH) {
            let mut seqs: Vec<Vec<u32>> = chunk.iter().map(|&i| prompts[i].clone()).collect();
            let mut done = vec![false; chunk.len()];
            for _ in 0..max_new {
                if done.iter().all(|&d| d) {
                    break;
                }
                let t = seqs[0].len();
                if t == 0 {
                    break;
                }
                let ids = Array2::from_shape_fn((seqs.len(), t), |(b, j)| seqs[b][j]);
                let z = model.logits(&ids);
                for (b, seq) in seqs.iter_mut().enumerate() {
                    let next = argmax(z.slice(ndarray::s![b, t - 1, ..])) as u32;
                    seq.push(next);
                    if !done[b] {
                        out[chunk[b]].push(next);
                        done[b] = Some(next) == stop;
                    }
                }
            }
        }
    }
    out
}

/// Largest number of rows evaluated at once.
pub const EVAL_BATCH: usize = 64;

/// Indices grouped by equal length (groups ordered by length, indices in order).
pub fn equal_length_groups(lengths: impl Iterator<Item = usize>) -> Vec<Vec<usize>> {
    let mut by_len: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, l) in lengths.enumerate() {
        by_len.entry(l).or_default().push(i);
    }
    by_len.into_values().collect()
}

/// Index of the largest entry (first one on ties; NaN never wins).
pub fn argmax(v: ArrayView1<'_, f32>) -> usize {
    let mut best = 0;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &x) in v.iter().enumerate() {
        if x > best_v {
            best = i;
            best_v = x;
        }
    }
    best
}

/// `log softmax(z)[k]`, computed stably in f64.
pub fn log_prob(z: ArrayView1<'_, f32>, k: usize) -> f64 {
    let m = z.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let lse = z.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln() + m;
    z[k] as f64 - lse
}

/// Summed loss and number of targets of one batch (labels shifted as the
/// model does: logits at t score `labels[t + 1]`).
pub fn batch_loss_sum(model: &dyn LanguageModel, batch: &TokenBatch) -> (f64, usize) {
    let z = model.logits(&batch.input_ids);
    let (b, t) = batch.labels.dim();
    let mut sum = 0.0;
    let mut n = 0;
    for i in 0..b {
        for j in 1..t {
            let y = batch.labels[[i, j]];
            if y != IGNORE {
                sum -= log_prob(z.slice(ndarray::s![i, j - 1, ..]), y as usize);
                n += 1;
            }
        }
    }
    (sum, n)
}

/// Mean loss over all targets of `batches` (NaN when there is none).
pub fn mean_loss(model: &dyn LanguageModel, batches: &[TokenBatch]) -> f64 {
    let (s, n) = batches
        .iter()
        .map(|b| batch_loss_sum(model, b))
        .fold((0.0, 0), |(s, n), (s2, n2)| (s + s2, n + n2));
    if n == 0 {
        f64::NAN
    } else {
        s / n as f64
    }
}

/// Share of items whose greedy continuation of `prompt` equals `expected`
/// exactly, found by decoding (`expected.len()` tokens, stopping at `stop`)
/// with [`LanguageModel::greedy`].
pub fn exact_match_decoding(
    model: &dyn LanguageModel,
    items: &[(Vec<u32>, Vec<u32>)],
    stop: Option<u32>,
) -> f64 {
    if items.is_empty() {
        return f64::NAN;
    }
    let mut hits = 0usize;
    for group in equal_length_groups(items.iter().map(|i| i.1.len())) {
        let prompts: Vec<Vec<u32>> = group.iter().map(|&i| items[i].0.clone()).collect();
        let max_new = items[group[0]].1.len();
        let got = model.greedy(&prompts, max_new, stop);
        hits += group
            .iter()
            .zip(&got)
            .filter(|(&i, g)| **g == items[i].1)
            .count();
    }
    hits as f64 / items.len() as f64
}

/// Per item, whether greedy decoding of `prompt` reproduces `expected`
/// exactly, found in one teacher-forced pass: greedy decoding yields
/// `expected` if and only if, for every j, the argmax of the logits after
/// `prompt ++ expected[..j]` is `expected[j]` (the first mismatch is where
/// greedy decoding would leave the expected text). Same result as
/// [`exact_match_decoding`] whenever `stop` occurs in `expected` only at its
/// end, with one forward pass instead of one per token.
pub fn exact_match_hits(model: &dyn LanguageModel, items: &[(Vec<u32>, Vec<u32>)]) -> Vec<bool> {
    let mut out = vec![false; items.len()];
    let lens = items.iter().map(|(p, e)| p.len() + e.len());
    for group in equal_length_groups(lens) {
        for chunk in group.chunks(EVAL_BATCH) {
            let seqs: Vec<Vec<u32>> = chunk
                .iter()
                .map(|&i| {
                    let mut s = items[i].0.clone();
                    s.extend_from_slice(&items[i].1);
                    s
                })
                .collect();
            let t = seqs[0].len();
            if t == 0 {
                continue;
            }
            let ids = Array2::from_shape_fn((seqs.len(), t), |(b, j)| seqs[b][j]);
            let z = model.logits(&ids);
            for (b, &i) in chunk.iter().enumerate() {
                let start = items[i].0.len().max(1);
                out[i] = items[i].0.len() + items[i].1.len() > 0
                    && !items[i].0.is_empty()
                    && (start..t)
                        .all(|j| argmax(z.slice(ndarray::s![b, j - 1, ..])) as u32 == seqs[b][j]);
            }
        }
    }
    out
}

/// Share of items whose greedy continuation of `prompt` is exactly
/// `expected` (one teacher-forced pass, see [`exact_match_hits`]).
pub fn exact_match(model: &dyn LanguageModel, items: &[(Vec<u32>, Vec<u32>)]) -> f64 {
    if items.is_empty() {
        return f64::NAN;
    }
    let hits = exact_match_hits(model, items);
    hits.iter().filter(|&&h| h).count() as f64 / items.len() as f64
}

/// A multiple-choice question in tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChoiceItem {
    /// The shared prefix.
    pub prompt: Vec<u32>,
    /// Candidate completions.
    pub choices: Vec<Vec<u32>>,
    /// Index of the right completion.
    pub correct: usize,
}

/// Log-likelihood of each completion given its prompt, for all items
/// (`out[i][c]`), evaluated in batches of equal total length.
pub fn choice_log_likelihoods(model: &dyn LanguageModel, items: &[ChoiceItem]) -> Vec<Vec<f64>> {
    let mut out: Vec<Vec<f64>> = items.iter().map(|it| vec![0.0; it.choices.len()]).collect();
    let pairs: Vec<(usize, usize)> = items
        .iter()
        .enumerate()
        .flat_map(|(i, it)| (0..it.choices.len()).map(move |c| (i, c)))
        .collect();
    let lens = pairs
        .iter()
        .map(|&(i, c)| items[i].prompt.len() + items[i].choices[c].len());
    for group in equal_length_groups(lens) {
        for chunk in group.chunks(EVAL_BATCH) {
            let seqs: Vec<Vec<u32>> = chunk
                .iter()
                .map(|&p| {
                    let (i, c) = pairs[p];
                    let mut s = items[i].prompt.clone();
                    s.extend_from_slice(&items[i].choices[c]);
                    s
                })
                .collect();
            let t = seqs[0].len();
            let ids = Array2::from_shape_fn((seqs.len(), t), |(b, j)| seqs[b][j]);
            let z = model.logits(&ids);
            for (b, &p) in chunk.iter().enumerate() {
                let (i, c) = pairs[p];
                let start = items[i].prompt.len().max(1);
                out[i][c] = (start..t)
                    .map(|j| log_prob(z.slice(ndarray::s![b, j - 1, ..]), seqs[b][j] as usize))
                    .sum();
            }
        }
    }
    out
}

/// Share of items whose right completion has the highest log-likelihood
/// (ties go to the earlier choice).
pub fn multiple_choice(model: &dyn LanguageModel, items: &[ChoiceItem]) -> f64 {
    if items.is_empty() {
        return f64::NAN;
    }
    let ll = choice_log_likelihoods(model, items);
    let hits = items
        .iter()
        .zip(&ll)
        .filter(|(it, l)| {
            let mut best = 0;
            for (c, &v) in l.iter().enumerate() {
                if v > l[best] {
                    best = c;
                }
            }
            best == it.correct
        })
        .count();
    hits as f64 / items.len() as f64
}
