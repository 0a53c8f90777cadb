//! Incremental (key/value-cached) inference forward and text generation.
//!
//! A plain forward pass over `ndarray` (no tape): tokens at positions
//! `p₀ .. p₀+n` are processed given the keys and values of positions
//! `0 .. p₀` kept in a [`KvCache`]. Per layer, with x the residual stream:
//!
//! ```text
//! RMSNorm(x)  = x / sqrt(mean(x²) + eps) · w
//! q, k, v     = RMSNorm(x) Wqᵀ, Wkᵀ, Wvᵀ           (split into heads of head_dim)
//! RoPE        : for i < d/2, with φ = pos · θ^(−2i/d):
//!               (x_i, x_{i+d/2}) ← (x_i cos φ − x_{i+d/2} sin φ, x_{i+d/2} cos φ + x_i sin φ)
//! attention   : head a uses key/value head a / (heads / kv_heads);
//!               o = softmax(q·kᵀ / sqrt(head_dim) over cached positions ≤ pos) · v
//! x           ← x + o Woᵀ
//! x           ← x + (silu(RMSNorm(x) Wgᵀ) ⊙ RMSNorm(x) Wuᵀ) Wdᵀ,   silu(z) = z / (1 + e^(−z))
//! logits      = RMSNorm(x) · lm_headᵀ   (lm_head = embedding when tied)
//! ```
//!
//! These are Hugging Face's conventions (rotate-half RoPE, 1/sqrt(head_dim)
//! scaling, grouped-query attention by repetition); the tests compare the
//! logits with transformers' reference logits.
//!
//! Generation: greedy (argmax, the smallest id among equal maxima) or
//! temperature sampling with an optional top-k cut, from a `ChaCha8Rng` seeded
//! explicitly. [`generate_greedy_batch`] runs prompts in parallel (one cache
//! each); results do not depend on the thread count.

use ndarray::{Array2, ArrayView1, ArrayView2, Ix1, Ix2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::{LlamaConfig, LlamaModel};
use crate::{ParamStore, Scalar};

/// Errors of inference and generation (bad input, never a panic).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GenerateError {
    /// A token id is not below the vocabulary size.
    #[error("token id {token} is out of range (vocabulary size {vocab})")]
    TokenOutOfRange {
        /// The token.
        token: u32,
        /// The vocabulary size.
        vocab: usize,
    },
    /// The prompt is empty.
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// The sequence would exceed `max_position_embeddings`.
    #[error("sequence length {len} exceeds max_position_embeddings = {max}")]
    TooLong {
        /// Length the sequence would have.
        len: usize,
        /// The model's limit.
        max: usize,
    },
    /// A parameter is missing or has the wrong shape for the config.
    #[error("parameters do not match the config: {0}")]
    Params(String),
    /// A sampling setting is out of range.
    #[error("invalid sampling setting: {0}")]
    Sampling(String),
}

/// Keys and values of the positions processed so far, per layer, stored as
/// `[position][kv_heads · head_dim]` rows (keys after RoPE).
#[derive(Clone, Debug)]
pub struct KvCache<T> {
    keys: Vec<Vec<T>>,
    values: Vec<Vec<T>>,
    len: usize,
}

impl<T: Scalar> KvCache<T> {
    /// An empty cache for `cfg`.
    pub fn new(cfg: &LlamaConfig) -> Self {
        Self {
            keys: vec![Vec::new(); cfg.num_hidden_layers],
            values: vec![Vec::new(); cfg.num_hidden_layers],
            len: 0,
        }
    }

    /// Number of positions cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every position (keeps the allocations).
    pub fn clear(&mut self) {
        self.keys.iter_mut().for_each(Vec::clear);
        self.values.iter_mut().for_each(Vec::clear);
        self.len = 0;
    }
}

struct LayerWeights<'a, T> {
    input_norm: ArrayView1<'a, T>,
    q: ArrayView2<'a, T>,
    k: ArrayView2<'a, T>,
    v: ArrayView2<'a, T>,
    o: ArrayView2<'a, T>,
    post_norm: ArrayView1<'a, T>,
    gate: ArrayView2<'a, T>,
    up: ArrayView2<'a, T>,
    down: ArrayView2<'a, T>,
}

/// The inference forward of one model: weights resolved once by name,
/// shared (read-only) by any number of caches and threads.
pub struct Decoder<'a, T> {
    cfg: &'a LlamaConfig,
    embed: ArrayView2<'a, T>,
    layers: Vec<LayerWeights<'a, T>>,
    norm: ArrayView1<'a, T>,
    lm_head: ArrayView2<'a, T>,
    inv_freq: Vec<f64>,
}

fn view1<'a, T: Scalar>(
    params: &'a ParamStore<T>,
    name: &str,
) -> Result<ArrayView1<'a, T>, GenerateError> {
    params
        .get(name)
        .ok_or_else(|| GenerateError::Params(format!("`{name}` is missing")))?
        .value
        .view()
        .into_dimensionality::<Ix1>()
        .map_err(|e| GenerateError::Params(format!("`{name}`: {e}")))
}

fn view2<'a, T: Scalar>(
    params: &'a ParamStore<T>,
    name: &str,
) -> Result<ArrayView2<'a, T>, GenerateError> {
    params
        .get(name)
        .ok_or_else(|| GenerateError::Params(format!("`{name}` is missing")))?
        .value
        .view()
        .into_dimensionality::<Ix2>()
        .map_err(|e| GenerateError::Params(format!("`{name}`: {e}")))
}

impl<'a, T: Scalar> Decoder<'a, T> {
    /// Resolves the weights of `params` for `cfg`; every parameter must be
    /// present with the shape of [`LlamaConfig::param_shapes`].
    pub fn new(cfg: &'a LlamaConfig, params: &'a ParamStore<T>) -> Result<Self, GenerateError> {
        for (name, shape) in cfg.param_shapes() {
            let p = params
                .get(&name)
                .ok_or_else(|| GenerateError::Params(format!("`{name}` is missing")))?;
            if p.shape() != shape.as_slice() {
                return Err(GenerateError::Params(format!(
                    "`{name}` has shape {:?}, expected {shape:?}",
                    p.shape()
                )));
            }
        }
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let n = |s: &str| LlamaConfig::layer_param(i, s);
                Ok(LayerWeights {
                    input_norm: view1(params, &n("input_layernorm.weight"))?,
                    q: view2(params, &n("self_attn.q_proj.weight"))?,
                    k: view2(params, &n("self_attn.k_proj.weight"))?,
                    v: view2(params, &n("self_attn.v_proj.weight"))?,
                    o: view2(params, &n("self_attn.o_proj.weight"))?,
                    post_norm: view1(params, &n("post_attention_layernorm.weight"))?,
                    gate: view2(params, &n("mlp.gate_proj.weight"))?,
                    up: view2(params, &n("mlp.up_proj.weight"))?,
                    down: view2(params, &n("mlp.down_proj.weight"))?,
                })
            })
            .collect::<Result<Vec<_>, GenerateError>>()?;
        let embed = view2(params, "model.embed_tokens.weight")?;
        let lm_head = if cfg.tie_word_embeddings {
            embed
        } else {
            view2(params, "lm_head.weight")?
        };
        let d = cfg.head_dim;
        let inv_freq = (0..d / 2)
            .map(|i| cfg.rope_theta.powf(-((2 * i) as f64) / d as f64))
            .collect();
        Ok(Self {
            cfg,
            embed,
            layers,
            norm: view1(params, "model.norm.weight")?,
            lm_head,
            inv_freq,
        })
    }

    /// The config this decoder runs.
    pub fn config(&self) -> &LlamaConfig {
        self.cfg
    }

    /// An empty cache for this model.
    pub fn new_cache(&self) -> KvCache<T> {
        KvCache::new(self.cfg)
    }

    /// Processes `tokens` at positions `cache.len() ..`, appends their keys
    /// and values to the cache and returns their logits `[tokens.len(), vocab]`.
    /// On error the cache is unchanged.
    pub fn forward(
        &self,
        cache: &mut KvCache<T>,
        tokens: &[u32],
    ) -> Result<Array2<T>, GenerateError> {
        let cfg = self.cfg;
        let n = tokens.len();
        let start = cache.len;
        if start + n > cfg.max_position_embeddings {
            return Err(GenerateError::TooLong {
                len: start + n,
                max: cfg.max_position_embeddings,
            });
        }
        if let Some(&token) = tokens.iter().find(|&&t| t as usize >= cfg.vocab_size) {
            return Err(GenerateError::TokenOutOfRange {
                token,
                vocab: cfg.vocab_size,
            });
        }
        let (cos, sin) = self.rope_tables(start, n);
        let mut x = Array2::<T>::zeros((n, cfg.hidden_size));
        for (mut row, &t) in x.outer_iter_mut().zip(tokens) {
            row.assign(&self.embed.row(t as usize));
        }
        for (layer, w) in self.layers.iter().enumerate() {
            let xn = rms_norm(&x.view(), &w.input_norm, cfg.rms_norm_eps);
            let mut q = matmul_t(&xn, &w.q);
            let mut k = matmul_t(&xn, &w.k);
            let v = matmul_t(&xn, &w.v);
            apply_rope(&mut q, cfg.head_dim, &cos, &sin);
            apply_rope(&mut k, cfg.head_dim, &cos, &sin);
            cache.keys[layer].extend(k.iter().copied());
            cache.values[layer].extend(v.iter().copied());
            let attn = self.attention(&q, &cache.keys[layer], &cache.values[layer], start);
            x += &matmul_t(&attn, &w.o);
            let xn = rms_norm(&x.view(), &w.post_norm, cfg.rms_norm_eps);
            let mut gate = matmul_t(&xn, &w.gate);
            let up = matmul_t(&xn, &w.up);
            gate.zip_mut_with(&up, |g, &u| *g = silu(*g) * u);
            x += &matmul_t(&gate, &w.down);
        }
        cache.len = start + n;
        let xn = rms_norm(&x.view(), &self.norm, cfg.rms_norm_eps);
        Ok(matmul_t(&xn, &self.lm_head))
    }

    /// cos/sin tables `[n, head_dim/2]` for positions `start .. start+n`.
    fn rope_tables(&self, start: usize, n: usize) -> (Array2<T>, Array2<T>) {
        let half = self.inv_freq.len();
        let mut cos = Array2::zeros((n, half));
        let mut sin = Array2::zeros((n, half));
        for t in 0..n {
            let pos = (start + t) as f64;
            for (i, &f) in self.inv_freq.iter().enumerate() {
                let (s, c) = (pos * f).sin_cos();
                cos[(t, i)] = T::of(c);
                sin[(t, i)] = T::of(s);
            }
        }
        (cos, sin)
    }

    /// Causal attention of the `n` new queries (positions `start ..`) over
    /// the cached keys/values (positions `0 .. start+n`). Returns `[n, heads·d]`.
    fn attention(&self, q: &Array2<T>, keys: &[T], values: &[T], start: usize) -> Array2<T> {
        let cfg = self.cfg;
        let d = cfg.head_dim;
        let kv_dim = cfg.num_key_value_heads * d;
        let group = cfg.num_attention_heads / cfg.num_key_value_heads;
        let scale = T::of(1.0 / (d as f64).sqrt());
        let n = q.nrows();
        let mut out = Array2::<T>::zeros((n, cfg.num_attention_heads * d));
        let mut scores = Vec::with_capacity(start + n);
        let q = q.as_standard_layout();
        let qs = q.as_slice().expect("standard layout");
        let width = cfg.num_attention_heads * d;
        let os = out.as_slice_mut().expect("fresh array");
        for t in 0..n {
            let visible = start + t + 1;
            for head in 0..cfg.num_attention_heads {
                let kv_off = (head / group) * d;
                let qh = &qs[t * width + head * d..t * width + (head + 1) * d];
                scores.clear();
                scores.extend((0..visible).map(|p| {
                    let at = p * kv_dim + kv_off;
                    dot(qh, &keys[at..at + d]) * scale
                }));
                softmax_in_place(&mut scores);
                let oh = &mut os[t * width + head * d..t * width + (head + 1) * d];
                for (p, &w) in scores.iter().enumerate() {
                    let at = p * kv_dim + kv_off;
                    oh.iter_mut()
                        .zip(&values[at..at + d])
                        .for_each(|(o, &v)| *o += w * v);
                }
            }
        }
        out
    }
}

/// Rows up to which [`matmul_t`] uses the row-dot kernel instead of a packed GEMM.
const GEMV_MAX_ROWS: usize = 4;

/// Multiply-adds per row below which [`matmul_t`] stays on the calling thread.
const PARALLEL_MIN_WORK: usize = 1 << 20;

/// `x · wᵀ` for `x: [n, k]`, `w: [m, k]` (a linear layer with weight `w`).
///
/// For the few rows of a decoding step, a packed GEMM spends most of its time
/// packing `w`; there each output is a contiguous dot product instead
/// ([`dot`], fixed association order, outputs in parallel). Larger `n` use
/// `ndarray`'s GEMM ([`matmul_t_reference`]), which the tests compare with.
fn matmul_t<T: Scalar>(x: &Array2<T>, w: &ArrayView2<'_, T>) -> Array2<T> {
    let (n, k) = x.dim();
    let (m, k2) = w.dim();
    assert_eq!(k, k2, "matmul_t: x is [{n}, {k}] but w is [{m}, {k2}]");
    let (Some(ws), true) = (w.as_slice(), n <= GEMV_MAX_ROWS) else {
        return matmul_t_reference(x, w);
    };
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let mut out = Array2::<T>::zeros((n, m));
    let os = out.as_slice_mut().expect("fresh array");
    let row = |xr: &[T], j0: usize, chunk: &mut [T]| {
        for (dj, o) in chunk.iter_mut().enumerate() {
            let j = j0 + dj;
            *o = dot(xr, &ws[j * k..(j + 1) * k]);
        }
    };
    for (xr, or) in xs.chunks_exact(k.max(1)).zip(os.chunks_exact_mut(m.max(1))) {
        if m * k < PARALLEL_MIN_WORK {
            row(xr, 0, or);
        } else {
            // Chunks of output columns, large enough to amortise the task overhead.
            let cols_per_task = PARALLEL_MIN_WORK / 4 / k + 1;
            or.par_chunks_mut(cols_per_task)
                .enumerate()
                .for_each(|(c, chunk)| row(xr, c * cols_per_task, chunk));
        }
    }
    out
}

/// `x · wᵀ` by `ndarray`'s matrix product (the plain reference of [`matmul_t`]).
fn matmul_t_reference<T: Scalar>(x: &Array2<T>, w: &ArrayView2<'_, T>) -> Array2<T> {
    x.dot(&w.t())
}

/// Dot product with eight interleaved partial sums (lane i sums the entries
/// ≡ i mod 8, then the lanes and the tail are added in a fixed order), so the
/// compiler can vectorise it and the result does not depend on threads.
fn dot<T: Scalar>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::zero(); 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (at, bt) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (&x, &y) in at.iter().zip(bt) {
        s += x * y;
    }
    s
}

/// RMSNorm of each row: `x / sqrt(mean(x²) + eps) · w` (mean accumulated in f64).
fn rms_norm<T: Scalar>(x: &ArrayView2<T>, w: &ArrayView1<T>, eps: f64) -> Array2<T> {
    let mut out = x.to_owned();
    for mut row in out.outer_iter_mut() {
        let ms = row.iter().map(|v| v.as_f64() * v.as_f64()).sum::<f64>() / row.len() as f64;
        let r = T::of(1.0 / (ms + eps).sqrt());
        row.zip_mut_with(w, |v, &g| *v = g * (*v * r));
    }
    out
}

/// Rotate-half RoPE on every head of every row of `x` (`[n, heads·d]`).
fn apply_rope<T: Scalar>(x: &mut Array2<T>, d: usize, cos: &Array2<T>, sin: &Array2<T>) {
    let half = d / 2;
    for (t, mut row) in x.outer_iter_mut().enumerate() {
        let row = row
            .as_slice_mut()
            .expect("fresh matmul output is contiguous");
        for head in row.chunks_exact_mut(d) {
            for i in 0..half {
                let (c, s) = (cos[(t, i)], sin[(t, i)]);
                let (a, b) = (head[i], head[i + half]);
                head[i] = a * c - b * s;
                head[i + half] = b * c + a * s;
            }
        }
    }
}

fn silu<T: Scalar>(z: T) -> T {
    z / (T::one() + (-z).exp())
}

/// Numerically stable softmax in place (max subtracted).
fn softmax_in_place<T: Scalar>(xs: &mut [T]) {
    let max = xs.iter().copied().fold(T::neg_infinity(), T::max);
    let mut sum = T::zero();
    for x in xs.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    for x in xs.iter_mut() {
        *x /= sum;
    }
}

/// The index of the largest value, the smallest index among equal maxima
/// (NaN never wins over a number).
pub fn argmax<T: Scalar>(xs: &[T]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] || (xs[best].is_nan() && !x.is_nan()) {
            best = i;
        }
    }
    best
}

/// How to choose the next token.
#[derive(Clone, Debug, PartialEq)]
pub struct Sampling {
    /// Softmax temperature; 0 means greedy (argmax).
    pub temperature: f64,
    /// Keep only the k most likely tokens before sampling (ties at the k-th
    /// value resolved by smaller id); `None` keeps all.
    pub top_k: Option<usize>,
    /// Seed of the `ChaCha8Rng` that draws the samples.
    pub seed: u64,
}

impl Sampling {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: None,
            seed: 0,
        }
    }

    /// Checks the settings (temperature finite and ≥ 0, top_k ≥ 1).
    pub fn validate(&self) -> Result<(), GenerateError> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(GenerateError::Sampling(format!(
                "temperature must be a finite number ≥ 0, got {}",
                self.temperature
            )));
        }
        if self.top_k == Some(0) {
            return Err(GenerateError::Sampling("top_k must be at least 1".into()));
        }
        Ok(())
    }
}

/// Draws a token from `logits` under `sampling` (greedy when the temperature
/// is 0): probabilities `softmax(logits / temperature)` over the top-k ids,
/// computed in f64, and one uniform draw from `rng` inverted through the
/// cumulative sum in id order.
pub fn sample_token<T: Scalar>(logits: &[T], sampling: &Sampling, rng: &mut ChaCha8Rng) -> u32 {
    if sampling.temperature == 0.0 || sampling.top_k == Some(1) {
        return argmax(logits) as u32;
    }
    let mut ids: Vec<usize> = (0..logits.len()).collect();
    if let Some(k) = sampling.top_k.filter(|&k| k < logits.len()) {
        // Stable sort: equal logits keep id order, so the cut is deterministic.
        ids.sort_by(|&a, &b| logits[b].as_f64().total_cmp(&logits[a].as_f64()));
        ids.truncate(k);
        ids.sort_unstable();
    }
    let max = ids
        .iter()
        .map(|&i| logits[i].as_f64())
        .fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = ids
        .iter()
        .map(|&i| ((logits[i].as_f64() - max) / sampling.temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    if !(total.is_finite() && total > 0.0) {
        return argmax(logits) as u32;
    }
    let mut u = rng.random::<f64>() * total;
    for (&i, &w) in ids.iter().zip(&weights) {
        if u < w {
            return i as u32;
        }
        u -= w;
    }
    // Rounding left u ≥ the last weight: take the last id with weight > 0.
    let last = ids
        .iter()
        .zip(&weights)
        .rev()
        .find(|(_, &w)| w > 0.0)
        .map_or(ids[0], |(&i, _)| i);
    last as u32
}

/// The result of one generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generation {
    /// The new tokens (the prompt excluded, the stop token excluded).
    pub tokens: Vec<u32>,
    /// Whether generation ended on a stop token (rather than on the length
    /// limit or `max_position_embeddings`).
    pub stopped: bool,
}

/// Generates up to `max_new` tokens after `prompt` with a key/value cache,
/// stopping early at any token in `stop`. Generation also ends when the
/// sequence reaches `max_position_embeddings`.
pub fn generate_with<T: Scalar>(
    decoder: &Decoder<'_, T>,
    prompt: &[u32],
    max_new: usize,
    stop: &[u32],
    sampling: &Sampling,
) -> Result<Generation, GenerateError> {
    sampling.validate()?;
    if prompt.is_empty() {
        return Err(GenerateError::EmptyPrompt);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(sampling.seed);
    let mut cache = decoder.new_cache();
    let logits = decoder.forward(&mut cache, prompt)?;
    let mut last = logits.row(logits.nrows() - 1).to_vec();
    let mut tokens = Vec::new();
    // The whole sequence (prompt + new tokens) stays within max_position_embeddings.
    let room = decoder.config().max_position_embeddings - prompt.len();
    let limit = max_new.min(room);
    while tokens.len() < limit {
        let next = sample_token(&last, sampling, &mut rng);
        if stop.contains(&next) {
            return Ok(Generation {
                tokens,
                stopped: true,
            });
        }
        tokens.push(next);
        if tokens.len() == limit {
            break;
        }
        let logits = decoder.forward(&mut cache, &[next])?;
        last = logits.row(0).to_vec();
    }
    Ok(Generation {
        tokens,
        stopped: false,
    })
}

/// Greedy generation: up to `max_new` new tokens after `prompt_ids`, stopping
/// before `stop_token` (which is not included in the result).
pub fn generate_greedy<T: Scalar>(
    model: &LlamaModel<T>,
    prompt_ids: &[u32],
    max_new: usize,
    stop_token: Option<u32>,
) -> Result<Vec<u32>, GenerateError> {
    let decoder = Decoder::new(&model.config, &model.params)?;
    let stop: Vec<u32> = stop_token.into_iter().collect();
    generate_with(&decoder, prompt_ids, max_new, &stop, &Sampling::greedy()).map(|g| g.tokens)
}

/// [`generate_greedy`] for many prompts at once, in parallel (one cache per
/// prompt; the result for each prompt is the same as alone).
pub fn generate_greedy_batch<T: Scalar>(
    model: &LlamaModel<T>,
    prompts: &[Vec<u32>],
    max_new: usize,
    stop_token: Option<u32>,
) -> Result<Vec<Vec<u32>>, GenerateError> {
    let decoder = Decoder::new(&model.config, &model.params)?;
    let stop: Vec<u32> = stop_token.into_iter().collect();
    prompts
        .par_iter()
        .map(|p| generate_with(&decoder, p, max_new, &stop, &Sampling::greedy()).map(|g| g.tokens))
        .collect()
}

/// Logits `[len, vocab]` of one sequence, computed in one pass with a fresh
/// cache (the full-sequence inference forward).
pub fn sequence_logits<T: Scalar>(
    model: &LlamaModel<T>,
    tokens: &[u32],
) -> Result<Array2<T>, GenerateError> {
    let decoder = Decoder::new(&model.config, &model.params)?;
    decoder.forward(&mut decoder.new_cache(), tokens)
}

/// Log-probability of `continuation` after `prompt`:
/// `Σ_j log softmax(logits at position |prompt|+j−1)[continuation_j]`, in f64
/// (the log-likelihood scoring of multiple-choice evaluation). One forward
/// pass over prompt + continuation.
pub fn continuation_logprob<T: Scalar>(
    decoder: &Decoder<'_, T>,
    prompt: &[u32],
    continuation: &[u32],
) -> Result<f64, GenerateError> {
    if prompt.is_empty() {
        return Err(GenerateError::EmptyPrompt);
    }
    let seq: Vec<u32> = prompt.iter().chain(continuation).copied().collect();
    let logits = decoder.forward(&mut decoder.new_cache(), &seq)?;
    let mut total = 0.0;
    for (j, &tok) in continuation.iter().enumerate() {
        let row = logits.row(prompt.len() + j - 1);
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
        total += row[tok as usize].as_f64() - lse;
    }
    Ok(total)
}

/// [`continuation_logprob`] for many `(prompt, continuation)` pairs, in
/// parallel (each result is the same as computed alone).
pub fn continuation_logprobs<T: Scalar>(
    model: &LlamaModel<T>,
    items: &[(Vec<u32>, Vec<u32>)],
) -> Result<Vec<f64>, GenerateError> {
    let decoder = Decoder::new(&model.config, &model.params)?;
    items
        .par_iter()
        .map(|(p, c)| continuation_logprob(&decoder, p, c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_dot_matmul_matches_gemm() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for &(n, k, m) in &[
            (1, 1, 1),
            (1, 7, 5),
            (2, 8, 3),
            (3, 33, 70),
            (4, 64, 20000),
            (6, 17, 9),
        ] {
            let x = Array2::from_shape_fn((n, k), |_| rng.random::<f64>() - 0.5);
            let w = Array2::from_shape_fn((m, k), |_| rng.random::<f64>() - 0.5);
            let fast = matmul_t(&x, &w.view());
            let reference = matmul_t_reference(&x, &w.view());
            assert_eq!(fast.dim(), (n, m));
            for (a, b) in fast.iter().zip(&reference) {
                assert!((a - b).abs() < 1e-12, "{n}x{k}x{m}: {a} vs {b}");
            }
            let x32 = x.mapv(|v| v as f32);
            let w32 = w.mapv(|v| v as f32);
            let fast32 = matmul_t(&x32, &w32.view());
            for (a, b) in fast32.iter().zip(&reference) {
                assert!((*a as f64 - b).abs() < 1e-5, "f32 {n}x{k}x{m}: {a} vs {b}");
            }
        }
        // Bit-identical whatever the thread count (parallel path: m·k ≥ 2^20).
        let x = Array2::from_shape_fn((2, 300), |_| rng.random::<f32>() - 0.5);
        let w = Array2::from_shape_fn((4000, 300), |_| rng.random::<f32>() - 0.5);
        let on = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| matmul_t(&x, &w.view()))
        };
        assert_eq!(on(1), on(3));
        // Exact on integers, whatever the association order.
        let x = Array2::from_shape_fn((1, 19), |(_, j)| j as f32);
        let w = Array2::from_shape_fn((2, 19), |(i, j)| (i + j) as f32);
        assert_eq!(matmul_t(&x, &w.view()), matmul_t_reference(&x, &w.view()));
    }

    #[test]
    fn argmax_takes_first_maximum() {
        assert_eq!(argmax(&[1.0f32, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.5, 0.5]), 1);
        assert_eq!(argmax(&[-1.0f64]), 0);
    }

    #[test]
    fn sampling_follows_the_softmax() {
        let logits = [0.0f64, 1.0, 2.0, -1.0];
        let temp = 0.7;
        let z: Vec<f64> = logits.iter().map(|l| (l / temp).exp()).collect();
        let total: f64 = z.iter().sum();
        let sampling = Sampling {
            temperature: temp,
            top_k: None,
            seed: 1,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let n = 40_000;
        let mut counts = [0usize; 4];
        for _ in 0..n {
            counts[sample_token(&logits, &sampling, &mut rng) as usize] += 1;
        }
        for i in 0..4 {
            let p = z[i] / total;
            let f = counts[i] as f64 / n as f64;
            // 5 standard errors of a binomial proportion.
            let se = (p * (1.0 - p) / n as f64).sqrt();
            assert!((f - p).abs() < 5.0 * se + 1e-9, "id {i}: {f} vs {p}");
        }
        // top-k = 2 never draws outside the two largest.
        let top2 = Sampling {
            top_k: Some(2),
            ..sampling.clone()
        };
        for _ in 0..2000 {
            let t = sample_token(&logits, &top2, &mut rng);
            assert!(t == 1 || t == 2, "{t}");
        }
        // Ties at the k-th value are cut by smaller id.
        let tied = [1.0f32, 1.0, 1.0];
        let top1of3 = Sampling {
            top_k: Some(2),
            ..sampling
        };
        for _ in 0..200 {
            assert!(sample_token(&tied, &top1of3, &mut rng) < 2);
        }
    }

    #[test]
    fn sampling_settings_are_checked() {
        let bad = |temperature, top_k| {
            Sampling {
                temperature,
                top_k,
                seed: 0,
            }
            .validate()
            .is_err()
        };
        assert!(bad(-1.0, None));
        assert!(bad(f64::NAN, None));
        assert!(bad(1.0, Some(0)));
        assert!(!bad(0.0, Some(3)));
    }

    #[test]
    fn softmax_and_rms_norm_match_plain_formulas() {
        let mut xs = [1.0f64, 2.0, 3.0];
        softmax_in_place(&mut xs);
        let e: Vec<f64> = [1.0f64, 2.0, 3.0].iter().map(|x| x.exp()).collect();
        let s: f64 = e.iter().sum();
        for (a, b) in xs.iter().zip(&e) {
            assert!((a - b / s).abs() < 1e-15);
        }
        let x = Array2::from_shape_vec((1, 2), vec![3.0f64, 4.0]).unwrap();
        let w = ndarray::arr1(&[1.0f64, 2.0]);
        let y = rms_norm(&x.view(), &w.view(), 0.0);
        let r = (12.5f64).sqrt();
        assert!((y[(0, 0)] - 3.0 / r).abs() < 1e-15);
        assert!((y[(0, 1)] - 8.0 / r).abs() < 1e-15);
    }
}
