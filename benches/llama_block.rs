//! Forward + backward of one Llama decoder block (hidden 256, sequence 256,
//! batch 8, 4 heads of 64, SwiGLU width 688) in f32, and, separately, the same
//! block's matrix products alone (the 7 projections and the attention
//! products, forward and backward, as gemm calls with the same shapes and
//! strides) so that `block_matmuls / block_fwd_bwd` is the share of time in
//! matmul.
//!
//! `small_model_step` times a whole ≈0.8M-parameter model's loss and gradients.
//!
//! Run: `cargo bench --bench llama_block` (set `RAYON_NUM_THREADS=2` to
//! pin the thread count).

use criterion::{criterion_group, criterion_main, Criterion};
use mofo::autodiff::Tape;
use mofo::kernels::attention::BLOCK;
use mofo::kernels::gemm::{gemm_alloc, gemm_serial};
use mofo::model::forward::{layer_forward, LayerVars};
use mofo::model::LlamaConfig;
use ndarray::{s, Array2, ArrayD, ArrayView4, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::hint::black_box;

const B: usize = 8;
const T: usize = 256;
const HID: usize = 256;
const HEADS: usize = 4;
const D: usize = 64;
const MLP: usize = 688;

fn config() -> LlamaConfig {
    LlamaConfig {
        vocab_size: 256,
        hidden_size: HID,
        intermediate_size: MLP,
        num_hidden_layers: 1,
        num_attention_heads: HEADS,
        num_key_value_heads: HEADS,
        head_dim: D,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        tie_word_embeddings: false,
        max_position_embeddings: T,
    }
}

fn rand(rng: &mut ChaCha8Rng, shape: &[usize], scale: f32) -> ArrayD<f32> {
    ArrayD::from_shape_fn(IxDyn(shape), |_| rng.random_range(-scale..scale))
}

fn block(c: &mut Criterion) {
    let cfg = config();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let w = |rng: &mut ChaCha8Rng, o: usize, i: usize| rand(rng, &[o, i], 1.0 / (i as f32).sqrt());
    let weights = [
        rand(&mut rng, &[HID], 1.0).mapv(|x| 1.0 + 0.1 * x),
        w(&mut rng, HEADS * D, HID),
        w(&mut rng, HEADS * D, HID),
        w(&mut rng, HEADS * D, HID),
        w(&mut rng, HID, HEADS * D),
        rand(&mut rng, &[HID], 1.0).mapv(|x| 1.0 + 0.1 * x),
        w(&mut rng, MLP, HID),
        w(&mut rng, MLP, HID),
        w(&mut rng, HID, MLP),
    ];
    let x = rand(&mut rng, &[B, T, HID], 1.0);
    c.bench_function("block_fwd_bwd", |bench| {
        bench.iter(|| {
            let tape = Tape::<f32>::new();
            let p: Vec<_> = weights
                .iter()
                .enumerate()
                .map(|(i, v)| tape.param(format!("w{i}"), v.clone()))
                .collect();
            let lv = LayerVars {
                input_norm: p[0],
                q: p[1],
                k: p[2],
                v: p[3],
                o: p[4],
                post_norm: p[5],
                gate: p[6],
                up: p[7],
                down: p[8],
            };
            let h = tape.variable(x.clone());
            let y = layer_forward(&tape, &cfg, &lv, h);
            let loss = tape.mean_all(y);
            tape.backward(loss)
        })
    });
}

/// The block's gemms with the shapes and strides the ops use.
fn matmuls(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let n = B * T;
    let m2 = |rng: &mut ChaCha8Rng, r: usize, c: usize| {
        Array2::from_shape_fn((r, c), |_| rng.random_range(-1.0f32..1.0))
    };
    // (input width, output width) of the 7 projections.
    let proj = [
        (HID, HEADS * D),
        (HID, HEADS * D),
        (HID, HEADS * D),
        (HEADS * D, HID),
        (HID, MLP),
        (HID, MLP),
        (MLP, HID),
    ];
    let xs: Vec<_> = proj.iter().map(|&(i, _)| m2(&mut rng, n, i)).collect();
    let ws: Vec<_> = proj.iter().map(|&(i, o)| m2(&mut rng, o, i)).collect();
    let gs: Vec<_> = proj.iter().map(|&(_, o)| m2(&mut rng, n, o)).collect();
    let q: Vec<f32> = (0..n * HEADS * D)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    c.bench_function("block_matmuls", |bench| {
        bench.iter(|| {
            for ((x, w), g) in xs.iter().zip(&ws).zip(&gs) {
                black_box(gemm_alloc(1.0, x.view(), w.t())); // forward
                black_box(gemm_alloc(1.0, g.t(), x.view())); // weight gradient
                black_box(gemm_alloc(1.0, g.view(), w.view())); // input gradient
            }
            // Attention: per (batch, head) the causal-blocked products of
            // kernels::attention (2 forward, 4 backward).
            let q4 = ArrayView4::from_shape((B, T, HEADS, D), &q[..]).unwrap();
            (0..B * HEADS).into_par_iter().for_each(|bh| {
                let (bi, hi) = (bh / HEADS, bh % HEADS);
                let qh = q4.slice(s![bi, .., hi, ..]);
                let mut p = Array2::<f32>::zeros((T, T));
                let mut o = Array2::<f32>::zeros((T, D));
                let mut o2 = Array2::<f32>::zeros((T, D));
                for r0 in (0..T).step_by(BLOCK) {
                    let r1 = (r0 + BLOCK).min(T);
                    let (qr, kr) = (qh.slice(s![r0..r1, ..]), qh.slice(s![0..r1, ..]));
                    gemm_serial(1.0, qr, kr.t(), 0.0, p.slice_mut(s![r0..r1, 0..r1]));
                }
                for r0 in (0..T).step_by(BLOCK) {
                    let r1 = (r0 + BLOCK).min(T);
                    gemm_serial(
                        1.0,
                        p.slice(s![r0..r1, 0..r1]),
                        qh.slice(s![0..r1, ..]),
                        0.0,
                        o.slice_mut(s![r0..r1, ..]),
                    );
                    gemm_serial(
                        1.0,
                        p.slice(s![r0..T, r0..r1]).t(),
                        qh.slice(s![r0..T, ..]),
                        0.0,
                        o2.slice_mut(s![r0..r1, ..]),
                    );
                    let (qr, kr) = (qh.slice(s![r0..r1, ..]), qh.slice(s![0..r1, ..]));
                    gemm_serial(1.0, qr, kr.t(), 0.0, p.slice_mut(s![r0..r1, 0..r1]));
                }
                for r0 in (0..T).step_by(BLOCK) {
                    let r1 = (r0 + BLOCK).min(T);
                    gemm_serial(
                        1.0,
                        p.slice(s![r0..r1, 0..r1]),
                        qh.slice(s![0..r1, ..]),
                        0.0,
                        o.slice_mut(s![r0..r1, ..]),
                    );
                    gemm_serial(
                        1.0,
                        p.slice(s![r0..T, r0..r1]).t(),
                        qh.slice(s![r0..T, ..]),
                        1.0,
                        o2.slice_mut(s![r0..r1, ..]),
                    );
                }
            });
        })
    });
}

/// One `loss_and_grads` of a whole small model (≈0.8M parameters: vocab
/// 256, hidden 128, 4 layers, 4 heads, MLP 344; batch 16 × 128 tokens), the
/// regime of CPU fine-tuning experiments.
fn small_model_step(c: &mut Criterion) {
    let cfg = LlamaConfig {
        vocab_size: 256,
        hidden_size: 128,
        intermediate_size: 344,
        num_hidden_layers: 4,
        num_attention_heads: 4,
        num_key_value_heads: 4,
        head_dim: 32,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        tie_word_embeddings: true,
        max_position_embeddings: 128,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let mut params = mofo::ParamStore::<f32>::new();
    for (name, shape) in cfg.param_shapes() {
        let v = if name.ends_with("norm.weight") {
            ArrayD::from_elem(IxDyn(&shape), 1.0)
        } else {
            rand(&mut rng, &shape, 0.05)
        };
        params.insert(name, v).unwrap();
    }
    let ids = Array2::from_shape_fn((16, 128), |_| rng.random_range(0..256u32));
    let batch = mofo::model::forward::Batch::new(ids);
    c.bench_function("small_model_step", |bench| {
        bench.iter(|| mofo::model::forward::loss_and_grads(&cfg, &params, &batch).unwrap())
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = block, matmuls, small_model_step
}
criterion_main!(benches);
