//! Random initialisation of a Llama model, as transformers does it.
//!
//! ```text
//! linear and embedding weights  ~ N(0, σ²),  σ = initializer_range (default 0.02)
//! RMSNorm weights               = 1
//! embedding row pad_token_id    = 0          (when the config names a pad token)
//! ```
//!
//! Normal draws come from the Box–Muller transform on a `ChaCha8Rng`
//! (`z = sqrt(−2 ln u₁) · cos(2π u₂)`, then `sqrt(−2 ln u₁) · sin(2π u₂)`,
//! `u₁ ∈ (0, 1]`, `u₂ ∈ [0, 1)`), computed in f64 and rounded to `T`, so f32
//! and f64 models from one seed hold the same numbers up to rounding. Each
//! tensor has its own stream (`seed`, stream = its position in
//! [`LlamaConfig::param_shapes`]), so a tensor's values do not depend on how
//! many numbers earlier tensors drew.

use ndarray::{ArrayD, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{HfExtras, LlamaConfig};
use crate::{ParamStore, Scalar};

/// Fills `out` with independent N(0, std²) draws from `rng` (Box–Muller).
pub fn fill_normal<T: Scalar>(rng: &mut ChaCha8Rng, std: f64, out: &mut [T]) {
    let mut chunks = out.chunks_exact_mut(2);
    for pair in &mut chunks {
        let (a, b) = box_muller(rng);
        pair[0] = T::of(std * a);
        pair[1] = T::of(std * b);
    }
    if let [last] = chunks.into_remainder() {
        *last = T::of(std * box_muller(rng).0);
    }
}

fn box_muller(rng: &mut ChaCha8Rng) -> (f64, f64) {
    let u1 = 1.0 - rng.random::<f64>(); // (0, 1]: ln is finite
    let u2 = rng.random::<f64>();
    let r = (-2.0 * u1.ln()).sqrt();
    let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
    (r * c, r * s)
}

/// Whether parameter `name` is an RMSNorm weight (initialised to ones).
pub fn is_norm_weight(name: &str) -> bool {
    name.ends_with("layernorm.weight") || name == "model.norm.weight"
}

/// A freshly initialised parameter store for `cfg` (see the module docs),
/// deterministic in `seed`.
pub fn init_params<T: Scalar>(cfg: &LlamaConfig, extras: &HfExtras, seed: u64) -> ParamStore<T> {
    let std = extras.initializer_range;
    let mut store = ParamStore::new();
    for (index, (name, shape)) in cfg.param_shapes().into_iter().enumerate() {
        let mut value = ArrayD::<T>::zeros(IxDyn(&shape));
        let data = value.as_slice_mut().expect("fresh array is contiguous");
        if is_norm_weight(&name) {
            data.fill(T::one());
        } else {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(index as u64);
            fill_normal(&mut rng, std, data);
            if name == "model.embed_tokens.weight" {
                if let Some(pad) = extras.pad_token_id {
                    let h = cfg.hidden_size;
                    let row = (pad as usize).checked_mul(h);
                    if let Some(row) = row.filter(|r| r + h <= data.len()) {
                        data[row..row + h].fill(T::zero());
                    }
                }
            }
        }
        store
            .insert(name, value)
            .expect("param_shapes names are unique");
    }
    store
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_draws_have_the_right_moments() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut xs = vec![0f64; 40_001];
        fill_normal(&mut rng, 0.5, &mut xs);
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
        // Standard errors: mean 0.5/sqrt(n) ≈ 0.0025, variance ≈ 0.25·sqrt(2/n) ≈ 0.0018.
        assert!(mean.abs() < 0.0125, "mean {mean}");
        assert!((var - 0.25).abs() < 0.01, "variance {var}");
        let within_1sd = xs.iter().filter(|x| x.abs() < 0.5).count() as f64 / n;
        assert!(
            (within_1sd - 0.6827).abs() < 0.01,
            "share within 1 sd {within_1sd}"
        );
    }
}
