//! Forward and backward of the Llama model on the tape.
//!
//! For token ids `x ∈ [0, V)^{B×T}` (positions `0..T`), with RMSNorm
//! `n(x; w) = x·rsqrt(mean(x²) + ε)·w`:
//!
//! ```text
//! h₀ = E[x]
//! for each layer ℓ:
//!   a  = n(h; w_in)
//!   q, k, v = RoPE(a·W_qᵀ), RoPE(a·W_kᵀ), a·W_vᵀ          (rotate-half, θ)
//!   h  = h + Attn_causal(q, k, v)·W_oᵀ                      (GQA, scale 1/√d)
//!   m  = n(h; w_post)
//!   h  = h + (silu(m·W_gateᵀ) ⊙ m·W_upᵀ)·W_downᵀ
//! logits = n(h; w_norm)·W_headᵀ                              (W_head = E when tied)
//! L = mean over counted (b, t < T−1) of −log softmax(logits[b, t])[y[b, t+1]]
//! ```
//!
//! `y` is the labels (default: the input ids); a label −100 is not counted
//! (Hugging Face's shift and ignore index). With tied embeddings `E` is one
//! tape variable used twice, so its gradient sums both uses.
//!
//! [`loss_and_grads`] runs the batch's sequences in [`SHARDS`] shards, one
//! tape each, side by side, and adds their gradients in shard order
//! (`super::shard` has the equations); [`loss_and_grads_sharded`] takes
//! the number of shards (1: one tape for the whole batch).

use ndarray::{s, Array2, Array3, ArrayD, Axis, Ix3, IxDyn};
use rayon::prelude::*;

use super::shard::{shard_rows, sum_in_order, SHARDS};
use super::LlamaConfig;
use crate::autodiff::{Tape, Value, Var};
use crate::kernels::cross_entropy::mean_over;
use crate::kernels::side_by_side::SideBySide;
use crate::params::ParamError;
use crate::{ParamStore, Scalar};

/// Hugging Face's ignore index for labels.
pub const IGNORE_INDEX: i64 = -100;

/// One batch of token sequences.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Token ids, `[batch, seq]`.
    pub input_ids: Array2<u32>,
    /// Labels, `[batch, seq]` (`−100` = ignored); `None` means the input ids.
    pub labels: Option<Array2<i64>>,
}

impl Batch {
    /// A batch whose labels are its input ids.
    pub fn new(input_ids: Array2<u32>) -> Self {
        Self {
            input_ids,
            labels: None,
        }
    }
}

/// Result of [`loss_and_grads`].
#[derive(Clone, Debug)]
pub struct ForwardOutput<T> {
    /// Logits `[batch, seq, vocab]`.
    pub logits: Array3<T>,
    /// Mean next-token cross-entropy.
    pub loss: T,
    /// `∂loss/∂θ` for every parameter, same names and shapes as the params.
    pub grads: ParamStore<T>,
}

/// Errors of the model's forward pass (bad parameters or batch).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ForwardError {
    /// A parameter is missing or has the wrong shape.
    #[error(transparent)]
    Param(#[from] ParamError),
    /// A token id is not below the vocabulary size.
    #[error("token id {id} at [{b}, {t}] is out of range for vocabulary {vocab}")]
    Token {
        /// Offending id.
        id: u32,
        /// Batch row.
        b: usize,
        /// Position.
        t: usize,
        /// Vocabulary size.
        vocab: usize,
    },
    /// A label is neither −100 nor a valid token id.
    #[error("label {label} at [{b}, {t}] is neither -100 nor below vocabulary {vocab}")]
    Label {
        /// Offending label.
        label: i64,
        /// Batch row.
        b: usize,
        /// Position.
        t: usize,
        /// Vocabulary size.
        vocab: usize,
    },
    /// Labels and input ids have different shapes.
    #[error("labels shape {labels:?} differs from input_ids shape {input:?}")]
    LabelShape {
        /// Labels shape.
        labels: Vec<usize>,
        /// Input shape.
        input: Vec<usize>,
    },
    /// The batch has no sequence.
    #[error("empty batch (shape {0:?})")]
    Empty(Vec<usize>),
    /// The configuration is inconsistent.
    #[error("invalid config: {0}")]
    Config(String),
}

/// The model's parameters recorded on a tape, by role.
#[derive(Clone, Debug)]
pub struct ModelVars {
    /// `model.embed_tokens.weight`.
    pub embed: Var,
    /// Per layer.
    pub layers: Vec<LayerVars>,
    /// `model.norm.weight`.
    pub norm: Var,
    /// `lm_head.weight`, or the embedding when tied.
    pub lm_head: Var,
}

/// One layer's parameters on a tape.
#[derive(Clone, Debug)]
pub struct LayerVars {
    /// `input_layernorm.weight`.
    pub input_norm: Var,
    /// `self_attn.q_proj.weight`.
    pub q: Var,
    /// `self_attn.k_proj.weight`.
    pub k: Var,
    /// `self_attn.v_proj.weight`.
    pub v: Var,
    /// `self_attn.o_proj.weight`.
    pub o: Var,
    /// `post_attention_layernorm.weight`.
    pub post_norm: Var,
    /// `mlp.gate_proj.weight`.
    pub gate: Var,
    /// `mlp.up_proj.weight`.
    pub up: Var,
    /// `mlp.down_proj.weight`.
    pub down: Var,
}

fn check_config(cfg: &LlamaConfig) -> Result<(), ForwardError> {
    let bad = |m: String| Err(ForwardError::Config(m));
    if cfg.num_key_value_heads == 0
        || !cfg
            .num_attention_heads
            .is_multiple_of(cfg.num_key_value_heads)
    {
        return bad(format!(
            "{} attention heads are not a multiple of {} kv heads",
            cfg.num_attention_heads, cfg.num_key_value_heads
        ));
    }
    if cfg.head_dim == 0 || !cfg.head_dim.is_multiple_of(2) {
        return bad(format!(
            "head_dim {} must be even and positive",
            cfg.head_dim
        ));
    }
    Ok(())
}

/// The model's parameters checked against `cfg` (names and shapes of
/// `cfg.param_shapes()`) and copied once into shared values: every tape of
/// a sharded step records the same copy ([`record_shared`]), where each
/// shard used to copy the whole model (20 MB at M) for its own tape.
#[derive(Clone, Debug)]
pub struct SharedParams<T: Scalar> {
    /// The configuration they were checked against.
    cfg: LlamaConfig,
    values: Vec<(String, Value<T>)>,
}

impl<T: Scalar> SharedParams<T> {
    /// Checks `params` against `cfg` and copies it. The copies are made in
    /// parallel, one tensor per task, since one thread copying the whole
    /// model would keep the others waiting. (The copy is needed: the
    /// optimizer updates the store in place while the values recorded on
    /// a tape must stay as they were.)
    pub fn new(cfg: &LlamaConfig, params: &ParamStore<T>) -> Result<Self, ForwardError> {
        check_config(cfg)?;
        let shapes = cfg.param_shapes();
        let mut found = Vec::with_capacity(shapes.len());
        for (name, shape) in &shapes {
            let p = params
                .get(name)
                .ok_or_else(|| ParamError::Missing(name.to_string()))?;
            if p.shape() != shape.as_slice() {
                return Err(ParamError::Shape {
                    name: name.to_string(),
                    got: p.shape().to_vec(),
                    expected: shape.to_vec(),
                }
                .into());
            }
            found.push((name, p));
        }
        let values = found
            .par_iter()
            .map(|(name, p)| (name.to_string(), p.value.clone().into_shared()))
            .collect();
        Ok(Self {
            cfg: cfg.clone(),
            values,
        })
    }
}

/// Records every parameter of `params` on `tape`: as a named variable when
/// `trainable(name)`, else as a frozen constant. Checks names and shapes
/// against `cfg.param_shapes()`.
pub fn record_params<T: Scalar>(
    tape: &Tape<T>,
    cfg: &LlamaConfig,
    params: &ParamStore<T>,
    trainable: &dyn Fn(&str) -> bool,
) -> Result<ModelVars, ForwardError> {
    let shared = SharedParams::new(cfg, params)?;
    Ok(record_shared(tape, &shared, trainable))
}

/// [`record_params`] from values already checked against their
/// configuration and copied: each value is recorded as a shared clone (no
/// copy of its entries).
pub fn record_shared<T: Scalar>(
    tape: &Tape<T>,
    shared: &SharedParams<T>,
    trainable: &dyn Fn(&str) -> bool,
) -> ModelVars {
    let cfg = &shared.cfg;
    let mut vars = std::collections::HashMap::new();
    for (name, value) in &shared.values {
        let var = if trainable(name) {
            tape.param(name.as_str(), value.clone())
        } else {
            tape.frozen(value.clone())
        };
        vars.insert(name.clone(), var);
    }
    let v = |name: String| vars[&name];
    let embed = v("model.embed_tokens.weight".into());
    let layers = (0..cfg.num_hidden_layers)
        .map(|i| {
            let l = |s: &str| v(LlamaConfig::layer_param(i, s));
            LayerVars {
                input_norm: l("input_layernorm.weight"),
                q: l("self_attn.q_proj.weight"),
                k: l("self_attn.k_proj.weight"),
                v: l("self_attn.v_proj.weight"),
                o: l("self_attn.o_proj.weight"),
                post_norm: l("post_attention_layernorm.weight"),
                gate: l("mlp.gate_proj.weight"),
                up: l("mlp.up_proj.weight"),
                down: l("mlp.down_proj.weight"),
            }
        })
        .collect();
    let norm = v("model.norm.weight".into());
    let lm_head = if cfg.tie_word_embeddings {
        embed
    } else {
        v("lm_head.weight".into())
    };
    ModelVars {
        embed,
        layers,
        norm,
        lm_head,
    }
}

fn check_ids(cfg: &LlamaConfig, ids: &Array2<u32>) -> Result<(), ForwardError> {
    if ids.is_empty() {
        return Err(ForwardError::Empty(ids.shape().to_vec()));
    }
    for ((b, t), &id) in ids.indexed_iter() {
        if id as usize >= cfg.vocab_size {
            return Err(ForwardError::Token {
                id,
                b,
                t,
                vocab: cfg.vocab_size,
            });
        }
    }
    Ok(())
}

/// One decoder layer on the tape: `h: [B, T, hidden]` → `[B, T, hidden]`.
pub fn layer_forward<T: Scalar>(tape: &Tape<T>, cfg: &LlamaConfig, lv: &LayerVars, h: Var) -> Var {
    let (nh, nkv, d) = (
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.head_dim,
    );
    let a = tape.rms_norm(h, lv.input_norm, cfg.rms_norm_eps);
    // Results that no later op reads (q and k before RoPE, the attention's
    // and the MLP's projections before their residual additions) are
    // released once consumed (`Tape::release`): M's peak resident memory
    // 432 → 384 MB (docs/performance-log.md).
    let q_lin = tape.linear(a, lv.q);
    let q = tape.rope(q_lin, nh, d, cfg.rope_theta);
    tape.release(q_lin);
    let k_lin = tape.linear(a, lv.k);
    let k = tape.rope(k_lin, nkv, d, cfg.rope_theta);
    tape.release(k_lin);
    let v = tape.linear(a, lv.v);
    let att = tape.causal_attention(q, k, v, nh, nkv);
    let o = tape.linear(att, lv.o);
    let h = tape.add(h, o);
    tape.release(o);
    let m = tape.rms_norm(h, lv.post_norm, cfg.rms_norm_eps);
    let mlp = tape.swiglu(tape.linear(m, lv.gate), tape.linear(m, lv.up));
    let down = tape.linear(mlp, lv.down);
    let out = tape.add(h, down);
    tape.release(down);
    out
}

/// Records the logits `[B, T, vocab]` of `input_ids` (validated by the caller).
pub fn record_logits<T: Scalar>(
    tape: &Tape<T>,
    cfg: &LlamaConfig,
    vars: &ModelVars,
    input_ids: &Array2<u32>,
) -> Var {
    let (b, t) = input_ids.dim();
    let ids: Vec<u32> = input_ids.iter().copied().collect();
    let mut h = tape.embedding(vars.embed, &ids, &[b, t]);
    for lv in &vars.layers {
        h = layer_forward(tape, cfg, lv, h);
    }
    let h = tape.rms_norm(h, vars.norm, cfg.rms_norm_eps);
    tape.linear(h, vars.lm_head)
}

/// The shifted targets: row `(b, t)` predicts `labels[b, t+1]`; the last
/// position of each sequence is ignored.
pub fn shifted_targets(cfg: &LlamaConfig, batch: &Batch) -> Result<Vec<i64>, ForwardError> {
    let (b, t) = batch.input_ids.dim();
    let labels = match &batch.labels {
        Some(l) => {
            if l.dim() != (b, t) {
                return Err(ForwardError::LabelShape {
                    labels: l.shape().to_vec(),
                    input: vec![b, t],
                });
            }
            l.clone()
        }
        None => batch.input_ids.mapv(|x| x as i64),
    };
    let mut out = Vec::with_capacity(b * t);
    for bi in 0..b {
        for ti in 0..t {
            let y = if ti + 1 < t {
                labels[(bi, ti + 1)]
            } else {
                IGNORE_INDEX
            };
            if y != IGNORE_INDEX && !(0..cfg.vocab_size as i64).contains(&y) {
                return Err(ForwardError::Label {
                    label: y,
                    b: bi,
                    t: ti + 1,
                    vocab: cfg.vocab_size,
                });
            }
            out.push(y);
        }
    }
    Ok(out)
}

/// Loss, logits and the gradient of every parameter, the batch's sequences
/// in [`SHARDS`] shards run side by side ([`super::shard`]).
pub fn loss_and_grads<T: Scalar>(
    cfg: &LlamaConfig,
    params: &ParamStore<T>,
    batch: &Batch,
) -> Result<ForwardOutput<T>, ForwardError> {
    loss_and_grads_with(cfg, params, batch, &|_| true)
}

/// Like [`loss_and_grads`], with only the parameters where `trainable(name)`
/// recorded as variables; the others are frozen (no gradient buffer on the
/// tape) and read as zeros in the returned gradients.
pub fn loss_and_grads_with<T: Scalar>(
    cfg: &LlamaConfig,
    params: &ParamStore<T>,
    batch: &Batch,
    trainable: &(dyn Fn(&str) -> bool + Sync),
) -> Result<ForwardOutput<T>, ForwardError> {
    loss_and_grads_sharded(cfg, params, batch, trainable, SHARDS)
}

/// Like [`loss_and_grads_with`], with the batch's sequences split into
/// `min(B, shards)` shards (`shards = 1`: one tape for the whole batch).
/// The result depends on `shards` only through the grouping of the weight
/// gradients' sums (see [`super::shard`]), never on the thread count.
pub fn loss_and_grads_sharded<T: Scalar>(
    cfg: &LlamaConfig,
    params: &ParamStore<T>,
    batch: &Batch,
    trainable: &(dyn Fn(&str) -> bool + Sync),
    shards: usize,
) -> Result<ForwardOutput<T>, ForwardError> {
    check_ids(cfg, &batch.input_ids)?;
    let targets = shifted_targets(cfg, batch)?;
    let denom = targets.iter().filter(|&&y| y != IGNORE_INDEX).count();
    let (b, t) = batch.input_ids.dim();
    let rows = shard_rows(b, shards);
    // The shards run side by side: while they fill the threads, each
    // shard's products run whole (a split would pack their other operand
    // once per chunk, for parallelism the other shards already provide);
    // once a shard has finished, the others' products split again so its
    // thread takes a share. Results unchanged either way.
    let group = SideBySide::new(rows.len());
    let shared = SharedParams::new(cfg, params)?;
    let parts: Vec<Result<ShardOutput<T>, ForwardError>> = rows
        .par_iter()
        .map(|r| {
            let ids = batch.input_ids.slice(s![r.clone(), ..]).to_owned();
            let targets = &targets[r.start * t..r.end * t];
            group.run(|| shard_pass(params, &shared, &ids, targets, denom, trainable))
        })
        .collect();
    // The first error in shard order, whichever shard finished first.
    let parts = parts.into_iter().collect::<Result<Vec<_>, _>>()?;
    let total: f64 = parts.iter().map(|p| p.total).sum();
    let logits = if parts.len() == 1 {
        parts[0].logits.clone()
    } else {
        let views: Vec<_> = parts.iter().map(|p| p.logits.view()).collect();
        ndarray::concatenate(Axis(0), &views).expect("shards share the vocabulary")
    };
    let grads = sum_in_order(parts.into_iter().map(|p| p.grads).collect());
    Ok(ForwardOutput {
        logits,
        loss: mean_over(total, denom),
        grads,
    })
}

/// What one shard's tape computed.
struct ShardOutput<T> {
    /// Its logits `[rows, T, V]`.
    logits: Array3<T>,
    /// The f64 sum of its counted rows' losses.
    total: f64,
    /// Gradients of its share of the batch's loss, every parameter (zeros
    /// for frozen ones).
    grads: ParamStore<T>,
}

/// Forward and backward of one shard: `shared` the values of `params`
/// (and the configuration they were checked against),
/// `ids` its sequences, `targets` their shifted targets, `denom` the
/// batch's counted targets.
fn shard_pass<T: Scalar>(
    params: &ParamStore<T>,
    shared: &SharedParams<T>,
    ids: &Array2<u32>,
    targets: &[i64],
    denom: usize,
    trainable: &(dyn Fn(&str) -> bool + Sync),
) -> Result<ShardOutput<T>, ForwardError> {
    let tape = Tape::new();
    let vars = record_shared(&tape, shared, trainable);
    let logits = record_logits(&tape, &shared.cfg, &vars, ids);
    let (loss, total) = tape.cross_entropy_share(logits, targets, denom);
    let logits_v = tape.value(logits);
    let grads_by_var = tape.backward(loss);
    let mut store = grads_by_var.into_param_store();
    let mut grads = ParamStore::new();
    for p in params.iter() {
        let g = match store.get_mut(&p.name) {
            Some(g) => std::mem::replace(&mut g.value, ArrayD::zeros(IxDyn(&[0]))),
            None => ArrayD::zeros(p.value.raw_dim()),
        };
        grads.insert(p.name.clone(), g)?;
    }
    Ok(ShardOutput {
        logits: logits_v
            .into_owned()
            .into_dimensionality::<Ix3>()
            .expect("logits are 3-D"),
        total,
        grads,
    })
}

/// Logits `[B, T, vocab]` without recording gradients.
pub fn logits<T: Scalar>(
    cfg: &LlamaConfig,
    params: &ParamStore<T>,
    input_ids: &Array2<u32>,
) -> Result<Array3<T>, ForwardError> {
    check_ids(cfg, input_ids)?;
    let tape = Tape::no_grad();
    let vars = record_params(&tape, cfg, params, &|_| false)?;
    let logits = record_logits(&tape, cfg, &vars, input_ids);
    let v = tape.value(logits);
    drop(tape);
    Ok(v.into_owned()
        .into_dimensionality::<Ix3>()
        .expect("logits are 3-D"))
}

/// Mean next-token cross-entropy without recording gradients.
pub fn loss<T: Scalar>(
    cfg: &LlamaConfig,
    params: &ParamStore<T>,
    batch: &Batch,
) -> Result<T, ForwardError> {
    check_ids(cfg, &batch.input_ids)?;
    let targets = shifted_targets(cfg, batch)?;
    let tape = Tape::no_grad();
    let vars = record_params(&tape, cfg, params, &|_| false)?;
    let logits = record_logits(&tape, cfg, &vars, &batch.input_ids);
    let loss = tape.cross_entropy(logits, &targets);
    let v = tape
        .value(loss)
        .iter()
        .next()
        .copied()
        .unwrap_or_else(T::zero);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn setup() -> (LlamaConfig, ParamStore<f32>, Batch) {
        let cfg = LlamaConfig {
            vocab_size: 50,
            hidden_size: 32,
            intermediate_size: 48,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 8,
            rms_norm_eps: 1e-5,
            rope_theta: 10000.0,
            tie_word_embeddings: false,
            max_position_embeddings: 128,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut params = ParamStore::new();
        for (name, shape) in cfg.param_shapes() {
            params
                .insert(
                    name,
                    ArrayD::from_shape_fn(IxDyn(&shape), |_| rng.random_range(-0.3f32..0.3)),
                )
                .unwrap();
        }
        let ids = Array2::from_shape_fn((3, 70), |_| rng.random_range(0..50u32));
        (cfg, params, Batch::new(ids))
    }

    #[test]
    fn tapes_share_one_copy_of_the_parameters() {
        let (cfg, mut params, _) = setup();
        let shared = SharedParams::new(&cfg, &params).unwrap();
        let (t1, t2) = (Tape::<f32>::new(), Tape::<f32>::new());
        let (v1, v2) = (
            record_shared(&t1, &shared, &|_| true),
            record_shared(&t2, &shared, &|n| n != "model.norm.weight"),
        );
        let (a, b) = (t1.value(v1.layers[1].up), t2.value(v2.layers[1].up));
        assert_eq!(a.as_ptr(), b.as_ptr(), "one copy for both tapes");
        let name = LlamaConfig::layer_param(1, "mlp.up_proj.weight");
        assert_ne!(a.as_ptr(), params.get(&name).unwrap().value.as_ptr());
        assert_eq!(a, params.get(&name).unwrap().value.clone().into_shared());
        // The store may change afterwards; the recorded values do not.
        let before = a.clone().into_owned();
        params.get_mut(&name).unwrap().value.fill(7.0);
        assert_eq!(t1.value(v1.layers[1].up).into_owned(), before);
        // A frozen parameter (a constant on t2) shares the copy too.
        assert_eq!(
            t2.value(v2.norm).as_ptr(),
            t1.value(v1.norm).as_ptr(),
            "frozen or not, one copy"
        );
    }

    #[test]
    fn identical_for_any_thread_count() {
        let (cfg, params, batch) = setup();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| loss_and_grads(&cfg, &params, &batch).unwrap())
        };
        let (a, b) = (run(1), run(3));
        assert_eq!(a.loss.to_bits(), b.loss.to_bits());
        assert_eq!(a.logits, b.logits);
        assert_eq!(a.grads, b.grads);
    }

    #[test]
    fn shards_give_the_loss_and_gradients_of_one_tape() {
        let (cfg, params, batch) = setup();
        let all = |p: &ParamStore<f32>| {
            p.iter()
                .flat_map(|x| x.as_slice().to_vec())
                .collect::<Vec<_>>()
        };
        let one = loss_and_grads_sharded(&cfg, &params, &batch, &|_| true, 1).unwrap();
        let scale = all(&one.grads).iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(scale > 0.0);
        for shards in [2, 3, 7] {
            let out = loss_and_grads_sharded(&cfg, &params, &batch, &|_| true, shards).unwrap();
            assert!(
                (out.loss - one.loss).abs() <= 1e-6 * one.loss.abs(),
                "{shards}"
            );
            assert_eq!(out.logits.dim(), one.logits.dim());
            for (a, b) in out.logits.iter().zip(one.logits.iter()) {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "{shards}: {a} vs {b}"
                );
            }
            assert_eq!(
                out.grads.names().collect::<Vec<_>>(),
                one.grads.names().collect::<Vec<_>>()
            );
            for (a, b) in all(&out.grads).iter().zip(all(&one.grads)) {
                assert!((a - b).abs() <= 1e-5 * scale, "{shards}: {a} vs {b}");
            }
        }
        // The default is SHARDS, and 7 shards of a batch of 3 are 3 shards.
        let default = loss_and_grads(&cfg, &params, &batch).unwrap();
        let two = loss_and_grads_sharded(&cfg, &params, &batch, &|_| true, SHARDS).unwrap();
        assert_eq!(default.grads, two.grads);
        let three = loss_and_grads_sharded(&cfg, &params, &batch, &|_| true, 3).unwrap();
        let seven = loss_and_grads_sharded(&cfg, &params, &batch, &|_| true, 7).unwrap();
        assert_eq!(three.grads, seven.grads);
        assert_eq!(three.loss.to_bits(), seven.loss.to_bits());
    }

    #[test]
    fn bad_labels_are_reported_alike_for_any_shard_count() {
        let (cfg, params, batch) = setup();
        let mut labels = batch.input_ids.mapv(|x| x as i64);
        labels[(2, 4)] = 99;
        labels[(0, 9)] = 77;
        let bad = Batch {
            input_ids: batch.input_ids.clone(),
            labels: Some(labels),
        };
        for shards in [1, 2, 3] {
            let err = loss_and_grads_sharded(&cfg, &params, &bad, &|_| true, shards).unwrap_err();
            assert!(
                matches!(
                    err,
                    ForwardError::Label {
                        label: 77,
                        b: 0,
                        t: 9,
                        ..
                    }
                ),
                "{err:?}"
            );
        }
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        let (cfg, params, batch) = setup();
        let mut ids = batch.input_ids.clone();
        ids[(1, 2)] = 50;
        assert!(matches!(
            loss_and_grads(&cfg, &params, &Batch::new(ids)),
            Err(ForwardError::Token {
                id: 50,
                b: 1,
                t: 2,
                ..
            })
        ));
        let mut labels = batch.input_ids.mapv(|x| x as i64);
        labels[(0, 5)] = -3;
        let bad = Batch {
            input_ids: batch.input_ids.clone(),
            labels: Some(labels),
        };
        assert!(matches!(
            loss(&cfg, &params, &bad),
            Err(ForwardError::Label { label: -3, .. })
        ));
        let mut missing = ParamStore::new();
        for p in params.iter().skip(1) {
            missing.insert(p.name.clone(), p.value.clone()).unwrap();
        }
        assert!(matches!(
            logits(&cfg, &missing, &batch.input_ids),
            Err(ForwardError::Param(ParamError::Missing(_)))
        ));
    }

    #[test]
    fn frozen_parameters_get_zero_gradients_and_ignored_labels_count_nothing() {
        let (cfg, params, batch) = setup();
        let full = loss_and_grads(&cfg, &params, &batch).unwrap();
        let frozen = loss_and_grads_with(&cfg, &params, &batch, &|n| !n.contains("mlp")).unwrap();
        assert_eq!(full.loss, frozen.loss);
        for p in frozen.grads.iter() {
            let g = full.grads.get(&p.name).unwrap();
            if p.name.contains("mlp") {
                assert!(p.as_slice().iter().all(|&x| x == 0.0));
            } else {
                assert_eq!(p, g);
            }
        }
        let ignored = Batch {
            input_ids: batch.input_ids.clone(),
            labels: Some(batch.input_ids.mapv(|_| IGNORE_INDEX)),
        };
        let out = loss_and_grads(&cfg, &params, &ignored).unwrap();
        assert_eq!(out.loss, 0.0);
        assert!(out
            .grads
            .iter()
            .all(|p| p.as_slice().iter().all(|&x| x == 0.0)));
    }
}
