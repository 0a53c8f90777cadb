//! Training throughput: steps of forward + backward + AdamW on a randomly
//! initialised Llama, as `../shared/bench/torch_llama_train_bench.py` does
//! with transformers (same configurations, same FLOP estimate 6·N·tokens).
//!
//! Configurations (hidden, layers, heads, intermediate, vocab, seq, batch):
//! S = 128 4 4 344 128 128 16 (0.82M parameters), M = 256 6 8 688 256 256 8
//! (4.9M), L = 512 8 8 1376 512 256 8 (about 25M).

use std::time::Instant;

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::model::forward::{loss_and_grads_sharded, Batch, ForwardError};
use crate::model::hf_config::HfExtras;
use crate::model::init::init_params;
use crate::model::LlamaConfig;
use crate::optim::{Adam, NoFilter, OptimConfig, OptimError, Optimizer};

/// One benchmark configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainBenchConfig {
    /// Name (S, M, L).
    pub name: String,
    /// The model.
    pub model: LlamaConfig,
    /// Sequence length.
    pub seq: usize,
    /// Batch size.
    pub batch: usize,
}

impl TrainBenchConfig {
    /// The preset named `name` (S, M or L, case-insensitive).
    pub fn preset(name: &str) -> Option<Self> {
        let (h, layers, heads, inter, vocab, seq, batch) = match name.to_ascii_uppercase().as_str()
        {
            "S" => (128, 4, 4, 344, 128, 128, 16),
            "M" => (256, 6, 8, 688, 256, 256, 8),
            "L" => (512, 8, 8, 1376, 512, 256, 8),
            _ => return None,
        };
        Some(TrainBenchConfig {
            name: name.to_ascii_uppercase(),
            model: LlamaConfig {
                vocab_size: vocab,
                hidden_size: h,
                intermediate_size: inter,
                num_hidden_layers: layers,
                num_attention_heads: heads,
                num_key_value_heads: heads,
                head_dim: h / heads,
                rms_norm_eps: 1e-6,
                rope_theta: 10_000.0,
                tie_word_embeddings: false,
                max_position_embeddings: seq,
            },
            seq,
            batch,
        })
    }

    /// Tokens per step.
    pub fn tokens_per_step(&self) -> usize {
        self.seq * self.batch
    }
}

/// What one benchmark run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainBenchResult {
    /// Parameters of the model.
    pub params: usize,
    /// Tokens per step.
    pub tokens_per_step: usize,
    /// Median milliseconds per step.
    pub ms_per_step: f64,
    /// Tokens per second at the median step time.
    pub tokens_per_s: f64,
    /// 6·N·tokens/s in GFLOP/s (the PyTorch script's estimate).
    pub approx_gflops: f64,
    /// The final loss (a sanity check that training ran).
    pub last_loss: f64,
}

/// Errors of the training benchmark.
#[derive(Debug, thiserror::Error)]
pub enum TrainBenchError {
    /// The forward/backward pass failed.
    #[error(transparent)]
    Forward(#[from] ForwardError),
    /// The optimizer failed.
    #[error(transparent)]
    Optim(#[from] OptimError),
}

/// Runs `warmup` untimed and `steps` timed training steps (f32, AdamW with
/// lr 1e-3, random token ids from `seed`, the batch in `shards` shards as
/// [`crate::model::forward::loss_and_grads_sharded`] runs them) in the
/// current rayon pool.
pub fn run_train_bench(
    cfg: &TrainBenchConfig,
    warmup: usize,
    steps: usize,
    seed: u64,
    shards: usize,
) -> Result<TrainBenchResult, TrainBenchError> {
    let mut params = init_params::<f32>(&cfg.model, &HfExtras::default(), seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x9e37_79b9);
    let vocab = cfg.model.vocab_size as u32;
    let ids = Array2::from_shape_fn((cfg.batch, cfg.seq), |_| rng.random_range(0..vocab));
    let batch = Batch::new(ids);
    let mut opt = Optimizer::new(NoFilter, Adam::adamw(1e-3), OptimConfig::default(), &params)?;
    let mut times = Vec::with_capacity(steps);
    let mut last_loss = f64::NAN;
    for i in 0..warmup + steps.max(1) {
        let t0 = Instant::now();
        let out = loss_and_grads_sharded(&cfg.model, &params, &batch, &|_| true, shards)?;
        opt.step(&mut params, &out.grads)?;
        if i >= warmup {
            times.push(t0.elapsed().as_secs_f64());
        }
        last_loss = out.loss as f64;
    }
    let dt = super::median(&mut times);
    let n = params.num_elements();
    let tokens = cfg.tokens_per_step();
    Ok(TrainBenchResult {
        params: n,
        tokens_per_step: tokens,
        ms_per_step: dt * 1e3,
        tokens_per_s: tokens as f64 / dt,
        approx_gflops: 6.0 * n as f64 * tokens as f64 / dt / 1e9,
        last_loss,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_match_the_pytorch_configurations() {
        let s = TrainBenchConfig::preset("s").unwrap();
        assert_eq!(s.tokens_per_step(), 2048);
        // transformers reports 0.82M parameters for S and 4.9M for M.
        assert_eq!(s.model.num_parameters(), 824_448);
        let m = TrainBenchConfig::preset("M").unwrap();
        assert_eq!(m.tokens_per_step(), 2048);
        assert!((4_800_000..5_000_000).contains(&m.model.num_parameters()));
        assert!(TrainBenchConfig::preset("XL").is_none());
    }

    #[test]
    fn a_tiny_run_trains() {
        let mut cfg = TrainBenchConfig::preset("S").unwrap();
        cfg.model.num_hidden_layers = 1;
        cfg.seq = 16;
        cfg.batch = 2;
        let r = run_train_bench(&cfg, 0, 3, 1, crate::model::shard::SHARDS).unwrap();
        assert!(r.last_loss.is_finite() && r.tokens_per_s > 0.0);
        assert_eq!(r.tokens_per_step, 32);
    }
}
