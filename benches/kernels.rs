//! The kernels one by one, at the shapes of the S and M training benchmarks
//! (`../shared/bench/README.md`): the projection matmuls (and, on one
//! thread, our gemm kernel next to `matrixmultiply`'s), causal attention
//! (forward, and backward from the kept probabilities),
//! RMSNorm, SwiGLU and its backward, the exact top-k select of the
//! optimizer, and the vectorisable exponential next to libm's. Run with
//! `RAYON_NUM_THREADS=2 cargo bench --bench kernels`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mofo::kernels::attention::{attention, attention_backward, AttnShape};
use mofo::kernels::elementwise::{swiglu, swiglu_backward};
use mofo::kernels::gemm::{gemm_alloc, sgemm_matrixmultiply, sgemm_own, Tile};
use mofo::kernels::rmsnorm::rmsnorm;
use mofo::optim::select::TopK;
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// (name, hidden, intermediate, heads, seq, batch) of S and M.
const CONFIGS: [(&str, usize, usize, usize, usize, usize); 2] =
    [("S", 128, 344, 4, 128, 16), ("M", 256, 688, 8, 256, 8)];

fn matmuls(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut group = c.benchmark_group("matmul");
    for (name, h, inter, _, seq, batch) in CONFIGS {
        let rows = seq * batch;
        for (what, k, n) in [("qkvo", h, h), ("mlp_up", h, inter), ("mlp_down", inter, h)] {
            let x = Array2::from_shape_vec((rows, k), random(&mut rng, rows * k)).unwrap();
            let w = Array2::from_shape_vec((n, k), random(&mut rng, n * k)).unwrap();
            group.throughput(Throughput::Elements((2 * rows * k * n) as u64));
            // x·Wᵀ with W stored [out, in], as the model's linear layers.
            group.bench_function(format!("{name}_{what}_{rows}x{k}x{n}"), |b| {
                b.iter(|| gemm_alloc(1.0, x.view(), w.t()))
            });
        }
    }
    group.finish();
}

/// One thread, the three products of a linear layer (forward `x·Wᵀ`, input
/// gradient `ḡ·W`, weight gradient `ḡᵀ·x`) for one thread's half of the
/// rows: our kernel with each of its two tiles (`sgemm_own`, i.e.
/// `kernels::gemm_avx512` on AVX-512 CPUs, `matrixmultiply` elsewhere)
/// next to
/// `matrixmultiply::sgemm` on the same views
/// (`sgemm_matrixmultiply`).
fn gemm_kernels(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut group = c.benchmark_group("gemm_kernel");
    for (name, h, inter, _, seq, batch) in CONFIGS {
        let rows = seq * batch / 2;
        for (what, k, n) in [("qkvo", h, h), ("mlp_up", h, inter), ("mlp_down", inter, h)] {
            let x = Array2::from_shape_vec((rows, k), random(&mut rng, rows * k)).unwrap();
            let w = Array2::from_shape_vec((n, k), random(&mut rng, n * k)).unwrap();
            let g = Array2::from_shape_vec((rows, n), random(&mut rng, rows * n)).unwrap();
            let products = [
                ("fwd", x.view(), w.t()),
                ("dx", g.view(), w.view()),
                ("dw", g.t(), x.view()),
            ];
            for (pass, a, b) in products {
                let (m, kk, nn) = (a.nrows(), a.ncols(), b.ncols());
                group.throughput(Throughput::Elements((2 * m * kk * nn) as u64));
                let mut out = Array2::<f32>::zeros((m, nn));
                let id = format!("{name}_{what}_{pass}_{m}x{kk}x{nn}");
                for (tile, tag) in [(Tile::Wide, "ours12x32"), (Tile::Square, "ours16x16")] {
                    group.bench_function(format!("{id}_{tag}"), |bch| {
                        bch.iter(|| sgemm_own(tile, 1.0, a, b, 0.0, out.view_mut()))
                    });
                }
                group.bench_function(format!("{id}_matrixmultiply"), |bch| {
                    bch.iter(|| sgemm_matrixmultiply(1.0, a, b, 0.0, out.view_mut()))
                });
            }
        }
    }
    group.finish();
}

fn attention_and_norm(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut group = c.benchmark_group("kernels");
    for (name, h, inter, heads, seq, batch) in CONFIGS {
        let sh = AttnShape {
            batch,
            seq,
            heads,
            kv_heads: heads,
            head_dim: h / heads,
        };
        let n = batch * seq * h;
        let (q, k, v) = (
            random(&mut rng, n),
            random(&mut rng, n),
            random(&mut rng, n),
        );
        group.bench_function(format!("{name}_causal_attention_fwd"), |b| {
            b.iter(|| attention(&q, &k, &v, sh, true))
        });
        let (_, probs) = attention(&q, &k, &v, sh, true);
        let probs = probs.expect("kept");
        let d_o = random(&mut rng, n);
        group.bench_function(format!("{name}_causal_attention_bwd"), |b| {
            b.iter(|| attention_backward(&q, &k, &v, &probs, &d_o, sh))
        });
        let w = random(&mut rng, h);
        group.bench_function(format!("{name}_rmsnorm_fwd"), |b| {
            b.iter(|| rmsnorm(&q, &w, 1e-6))
        });
        let m = batch * seq * inter;
        let (g, u, dy) = (
            random(&mut rng, m),
            random(&mut rng, m),
            random(&mut rng, m),
        );
        group.bench_function(format!("{name}_swiglu_fwd"), |b| b.iter(|| swiglu(&g, &u)));
        group.bench_function(format!("{name}_swiglu_bwd"), |b| {
            b.iter(|| swiglu_backward(&g, &u, &dy))
        });
    }
    group.finish();
}

/// `Scalar::fast_exp` (the polynomial of `kernels::exp`) against libm's
/// `expf` over the same arguments, one thread. This loop is the baseline
/// (SSE2) build; the kernels run theirs on AVX2 or AVX-512
/// (`kernels::simd`), so the ratio here is a lower bound of theirs.
fn exponential(c: &mut Criterion) {
    use mofo::Scalar;
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let x: Vec<f32> = (0..1 << 20)
        .map(|_| rng.random_range(-20.0f32..0.0))
        .collect();
    let mut out = vec![0.0f32; x.len()];
    let mut group = c.benchmark_group("exp");
    group.throughput(Throughput::Elements(x.len() as u64));
    group.bench_function("fast_exp_1M", |b| {
        b.iter(|| {
            for (o, &v) in out.iter_mut().zip(&x) {
                *o = v.fast_exp();
            }
        })
    });
    group.bench_function("libm_expf_1M", |b| {
        b.iter(|| {
            for (o, &v) in out.iter_mut().zip(&x) {
                *o = v.exp();
            }
        })
    });
    group.finish();
}

fn topk(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let mut group = c.benchmark_group("topk_select");
    for d in [1usize << 16, 1 << 20, 1 << 24] {
        let keys: Vec<u64> = (0..d)
            .map(|_| (rng.random_range(-1.0f32..1.0)).abs().to_bits() as u64)
            .collect();
        let mut t = TopK::new();
        group.throughput(Throughput::Elements(d as u64));
        group.bench_function(format!("alpha0.1_d{d}"), |b| {
            b.iter(|| t.cut(&keys, d / 10))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = matmuls, gemm_kernels, attention_and_norm, topk, exponential
}
criterion_main!(benches);
