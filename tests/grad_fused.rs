//! Gradient checks (f64, fourth-order central differences, relative error ≤ 1e-6) of the
//! fused Llama ops: RMSNorm, SwiGLU, RoPE, causal grouped-query attention.

use mofo::autodiff::{gradcheck, Tape, Var};
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TOL: f64 = 1e-6;
const EPS: f64 = 1e-4;

fn rand_array(rng: &mut ChaCha8Rng, shape: &[usize], lo: f64, hi: f64) -> ArrayD<f64> {
    ArrayD::from_shape_fn(IxDyn(shape), |_| rng.random_range(lo..hi))
}

fn check(inputs: &[ArrayD<f64>], seed: u64, f: impl Fn(&Tape<f64>, &[Var]) -> Var) {
    let r = gradcheck(inputs, EPS, |t, v| {
        let y = f(t, v);
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x77);
        let w = t.constant(rand_array(&mut rng, &t.shape(y), -1.0, 1.0));
        t.sum_all(t.mul(y, w))
    });
    assert!(r.max_rel_error <= TOL, "relative errors {:?}", r.rel_errors);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]

    #[test]
    fn rms_norm(rows in 1usize..5, h in 2usize..6, seed in any::<u64>()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x = rand_array(&mut rng, &[rows, h], -2.0, 2.0);
        let w = rand_array(&mut rng, &[h], 0.5, 1.5);
        check(&[x.clone(), w.clone()], seed, |t, v| t.rms_norm(v[0], v[1], 1e-5));
        let x3 = rand_array(&mut rng, &[2, rows, h], -2.0, 2.0);
        check(&[x3, w], seed, |t, v| t.rms_norm(v[0], v[1], 1e-6));
    }

    #[test]
    fn swiglu(shape in prop::collection::vec(1usize..5, 1..4), seed in any::<u64>()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let g = rand_array(&mut rng, &shape, -3.0, 3.0);
        let u = rand_array(&mut rng, &shape, -3.0, 3.0);
        check(&[g, u], seed, |t, v| t.swiglu(v[0], v[1]));
    }

    #[test]
    fn rope(b in 1usize..3, seq in 1usize..5, heads in 1usize..3, half in 1usize..4, seed in any::<u64>()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let d = 2 * half;
        let x = rand_array(&mut rng, &[b, seq, heads * d], -2.0, 2.0);
        check(&[x], seed, |t, v| t.rope(v[0], heads, d, 10000.0));
    }

    #[test]
    fn causal_attention(b in 1usize..3, seq in 1usize..5, kv in 1usize..3, rep in 1usize..3, d in 1usize..4, seed in any::<u64>()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let heads = kv * rep;
        let q = rand_array(&mut rng, &[b, seq, heads * d], -1.5, 1.5);
        let k = rand_array(&mut rng, &[b, seq, kv * d], -1.5, 1.5);
        let v = rand_array(&mut rng, &[b, seq, kv * d], -1.5, 1.5);
        check(&[q, k, v], seed, |t, x| t.causal_attention(x[0], x[1], x[2], heads, kv));
    }
}

/// The fused attention equals the same computation from elementary ops
/// (explicit mask add, softmax via log_softmax, GQA by repeating heads).
#[test]
fn fused_attention_equals_composed_ops() {
    let (b, seq, heads, kv, d) = (2, 4, 4, 2, 3);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let q = rand_array(&mut rng, &[b, seq, heads * d], -1.0, 1.0);
    let k = rand_array(&mut rng, &[b, seq, kv * d], -1.0, 1.0);
    let v = rand_array(&mut rng, &[b, seq, kv * d], -1.0, 1.0);
    let t = Tape::<f64>::new();
    let (qv, kv_, vv) = (t.constant(q), t.constant(k), t.constant(v));
    let fused = t.value(t.causal_attention(qv, kv_, vv, heads, kv));
    let mut mask = ArrayD::zeros(IxDyn(&[seq, seq]));
    for i in 0..seq {
        for j in i + 1..seq {
            mask[[i, j]] = -1e30;
        }
    }
    let mask = t.constant(mask);
    let q4 = t.permute(t.reshape(qv, &[b, seq, heads, d]), &[0, 2, 1, 3]);
    let k4 = t.permute(t.reshape(kv_, &[b, seq, kv, d]), &[0, 2, 1, 3]);
    let v4 = t.permute(t.reshape(vv, &[b, seq, kv, d]), &[0, 2, 1, 3]);
    let mut outs = Vec::new();
    for bi in 0..b {
        for h in 0..heads {
            let g = h / (heads / kv);
            let qh = t.reshape(
                t.slice(t.slice(q4, 0, bi, bi + 1), 1, h, h + 1),
                &[1, seq, d],
            );
            let kh = t.reshape(
                t.slice(t.slice(k4, 0, bi, bi + 1), 1, g, g + 1),
                &[1, seq, d],
            );
            let vh = t.reshape(
                t.slice(t.slice(v4, 0, bi, bi + 1), 1, g, g + 1),
                &[1, seq, d],
            );
            let s = t.mul_scalar(t.matmul(qh, t.transpose(kh, 1, 2)), 1.0 / (d as f64).sqrt());
            let p = t.exp(t.log_softmax(t.add(s, mask)));
            outs.push(t.matmul(p, vh));
        }
    }
    let o = t.reshape(t.concat(&outs, 0), &[b, heads, seq, d]);
    let o = t.value(t.reshape(t.permute(o, &[0, 2, 1, 3]), &[b, seq, heads * d]));
    let err = fused
        .iter()
        .zip(o.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(err < 1e-12, "fused vs composed attention: {err}");
}
