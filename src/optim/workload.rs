//! Benchmark workloads: GPT-2-small-shaped parameter sets (the shapes of
//! shared/bench/torch_optim_bench.py) filled with seeded random values, and
//! a timed optimizer step used by `mofo bench optim` and benches/optim_step.rs.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::kernels::huge_pages::{collapse_runs, huge_zeroed_vec};
use crate::optim::HugePages;
use crate::ParamStore;

/// The tensor shapes of GPT-2 small at width scale `scale` (1.0 = 124M
/// parameters; 0.25 ≈ 40M): width d = ⌊768·√scale / 64⌋·64, a 50304×d
/// embedding and 12 layers of (3d×d, d×d, 4d×d, d×4d, d, d, 3d, 4d).
pub fn gpt2_shapes(scale: f64) -> Vec<(String, Vec<usize>)> {
    let d = ((768.0 * scale.sqrt()) as usize / 64 * 64).max(64);
    let mut out = vec![("wte".to_string(), vec![50304, d])];
    for l in 0..12 {
        let shapes = [
            ("attn.c_attn.weight", vec![3 * d, d]),
            ("attn.c_proj.weight", vec![d, d]),
            ("mlp.c_fc.weight", vec![4 * d, d]),
            ("mlp.c_proj.weight", vec![d, 4 * d]),
            ("ln_1.weight", vec![d]),
            ("ln_2.weight", vec![d]),
            ("attn.c_attn.bias", vec![3 * d]),
            ("mlp.c_fc.bias", vec![4 * d]),
        ];
        for (n, s) in shapes {
            out.push((format!("h.{l}.{n}"), s));
        }
    }
    out
}

/// Number of entries of [`gpt2_shapes`] at `scale`.
pub fn count(shapes: &[(String, Vec<usize>)]) -> usize {
    shapes
        .iter()
        .map(|(_, s)| s.iter().product::<usize>())
        .sum()
}

/// The GPT-2-like shapes whose size is closest to `n` parameters.
pub fn gpt2_shapes_for(n: usize) -> Vec<(String, Vec<usize>)> {
    let mut best = gpt2_shapes(0.25);
    let mut best_gap = usize::MAX;
    for k in 1..=64usize {
        let d = 64 * k;
        let scale = (d as f64 / 768.0).powi(2) * 1.0001;
        let s = gpt2_shapes(scale);
        let gap = count(&s).abs_diff(n);
        if gap < best_gap {
            best_gap = gap;
            best = s;
        }
    }
    best
}

/// Parameters ~N(0, 0.02²)-like and gradients ~1e-3 scale, seeded; with
/// [`HugePages::Use`] their buffers are advised for 2 MiB pages before the
/// values are written, as a trainer's long-lived buffers would be.
pub fn random_stores(
    shapes: &[(String, Vec<usize>)],
    seed: u64,
    huge: HugePages,
) -> (ParamStore<f32>, ParamStore<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut params = ParamStore::new();
    let mut grads = ParamStore::new();
    for (name, shape) in shapes {
        let n: usize = shape.iter().product();
        let alloc = |n: usize| match huge {
            HugePages::Use => huge_zeroed_vec::<f32>(n),
            HugePages::Off => vec![0.0; n],
        };
        let (mut p, mut g) = (alloc(n), alloc(n));
        p.iter_mut()
            .for_each(|x| *x = rng.random_range(-0.04f32..0.04));
        g.iter_mut()
            .for_each(|x| *x = rng.random_range(-2e-3f32..2e-3));
        params
            .insert_vec(name.clone(), shape, p)
            .expect("unique names");
        grads
            .insert_vec(name.clone(), shape, g)
            .expect("unique names");
    }
    if huge == HugePages::Use {
        // The small tensors sit next to each other: collapse them as runs,
        // huge pages straddling two tensors included.
        let bufs: Vec<&[f32]> = params
            .iter()
            .chain(grads.iter())
            .map(|p| p.as_slice())
            .collect();
        collapse_runs(&bufs);
    }
    (params, grads)
}
