//! Gradient checks (f64, fourth-order central differences, relative error ≤ 1e-6) of the
//! elementary ops over random shapes and values. The loss is `Σ y ⊙ W` for a
//! fixed random `W`, so every output entry is exercised.

use mofo::autodiff::{gradcheck, Tape, Var};
use ndarray::{s, ArrayD, IxDyn};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TOL: f64 = 1e-6;
const EPS: f64 = 1e-4;

fn rand_array(rng: &mut ChaCha8Rng, shape: &[usize], lo: f64, hi: f64) -> ArrayD<f64> {
    ArrayD::from_shape_fn(IxDyn(shape), |_| rng.random_range(lo..hi))
}

/// `Σ y ⊙ W` with `W` drawn from `seed` (a constant).
fn weighted_sum(t: &Tape<f64>, y: Var, seed: u64) -> Var {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let w = t.constant(rand_array(&mut rng, &t.shape(y), -1.0, 1.0));
    t.sum_all(t.mul(y, w))
}

fn check(inputs: &[ArrayD<f64>], seed: u64, f: impl Fn(&Tape<f64>, &[Var]) -> Var) {
    let r = gradcheck(inputs, EPS, |t, v| {
        let y = f(t, v);
        weighted_sum(t, y, seed)
    });
    assert!(r.max_rel_error <= TOL, "relative errors {:?}", r.rel_errors);
}

fn cfg() -> ProptestConfig {
    ProptestConfig {
        cases: 12,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(cfg())]

    #[test]
    fn broadcasting_arithmetic(m in 1usize..4, n in 1usize..4, bcast in 0usize..4, seed in any::<u64>()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let a = rand_array(&mut rng, &[m, n], -2.0, 2.0);
        let b_shape: Vec<usize> = match bcast { 0 => vec![m, n], 1 => vec![n], 2 => vec![m, 1], _ => vec![1, 1, n] };
        let b = rand_array(&mut rng, &b_shape, 0.5, 2.0);
        check(&[a.clone(), b.clone()], seed, |t, v| t.add(v[0], v[1]));
        check(&[a.clone(), b.clone()], seed, |t, v| t.sub(v[1], v[0]));
        check(&[a.clone(), b.clone()], seed, |t, v| t.mul(v[0], v[1]));
        check(&[a.clone(), b.clone()], seed, |t, v| t.div(v[0], v[1]));
        check(&[a.clone(), b], seed, |t, v| t.div(v[1], t.add_scalar(t.mul(v[0], v[0]), 1.0)));
        check(&[a], seed, |t, v| t.neg(t.mul_scalar(t.add_scalar(v[0], 0.3), -1.7)));
    }

    #[test]
    fn unary(shape in prop::collection::vec(1usize..4, 1..4), seed in any::<u64>()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let a = rand_array(&mut rng, &shape, -2.0, 2.0);
        let p = rand_array(&mut rng, &shape, 0.2, 3.0);
        check(std::slice::from_ref(&a), seed, |t, v| t.exp(v[0]));
        check(std::slice::from_ref(&a), seed, |t, v| t.silu(v[0]));
        check(std::slice::from_ref(&p), seed, |t, v| t.log(v[0]));
        check(std::slice::from_ref(&p), seed, |t, v| t.sqrt(v[0]));
        check(&[p], seed, |t, v| t.powf(v[0], 2.5));
        check(&[a], seed, |t, v| t.powf(v[0], 3.0));
    }

    #[test]
    fn matmuls(b in 1usize..3, m in 1usize..4, k in 1usize..4, n in 1usize..4, seed in any::<u64>()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let a2 = rand_array(&mut rng, &[m, k], -1.0, 1.0);
        let b2 = rand_array(&mut rng, &[k, n], -1.0, 1.0);
        let a3 = rand_array(&mut rng, &[b, m, k], -1.0, 1.0);
        let b3 = rand_array(&mut rng, &[b, k, n], -1.0, 1.0);
        let w = rand_array(&mut rng, &[n, k], -1.0, 1.0);
        check(&[a2.clone(), b2.clone()], seed, |t, v| t.matmul(v[0], v[1]));
        check(&[a3.clone(), b2], seed, |t, v| t.matmul(v[0], v[1]));
        check(&[a3.clone(), b3.clone()], seed, |t, v| t.matmul(v[0], v[1]));
        check(&[a3.clone(), w.clone()], seed, |t, v| t.linear(v[0], v[1]));
        // Transposed / permuted operands (views, no copy).
        let at = rand_array(&mut rng, &[k, m], -1.0, 1.0);
        check(&[at, w.clone()], seed, |t, v| t.matmul(t.transpose(v[0], 0, 1), t.transpose(v[1], 0, 1)));
        let a_perm = rand_array(&mut rng, &[m, b, k], -1.0, 1.0);
        check(&[a_perm, b3], seed, |t, v| t.matmul(t.permute(v[0], &[1, 0, 2]), v[1]));
    }

    #[test]
    fn reductions(shape in prop::collection::vec(1usize..4, 1..4), keep in any::<bool>(), seed in any::<u64>()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let a = rand_array(&mut rng, &shape, -2.0, 2.0);
        let axis = (seed as usize) % shape.len();
        check(std::slice::from_ref(&a), seed, |t, v| t.mul(t.sum_all(v[0]), t.mean_all(v[0])));
        check(std::slice::from_ref(&a), seed, |t, v| t.sum_axes(v[0], &[axis], keep));
        check(std::slice::from_ref(&a), seed, |t, v| t.mean_axes(v[0], &[axis], keep));
        let all: Vec<usize> = (0..shape.len()).collect();
        check(&[a], seed, |t, v| t.mean_axes(v[0], &all, keep));
    }

    #[test]
    fn shape_ops(d0 in 1usize..4, d1 in 1usize..4, d2 in 2usize..4, seed in any::<u64>()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let a = rand_array(&mut rng, &[d0, d1, d2], -2.0, 2.0);
        let b = rand_array(&mut rng, &[d0, 2, d2], -2.0, 2.0);
        check(std::slice::from_ref(&a), seed, |t, v| t.reshape(v[0], &[d1 * d0, d2]));
        check(std::slice::from_ref(&a), seed, |t, v| t.permute(v[0], &[2, 0, 1]));
        check(std::slice::from_ref(&a), seed, |t, v| t.reshape(t.transpose(v[0], 0, 2), &[d2 * d1 * d0]));
        check(std::slice::from_ref(&a), seed, |t, v| t.slice(v[0], 2, 1, d2));
        check(&[a.clone(), b], seed, |t, v| t.concat(&[v[0], v[1], v[0]], 1));
        check(&[a], seed, |t, v| {
            let parts = t.split(v[0], 2, &[1, d2 - 1]);
            t.mul(t.sum_all(parts[0]), t.sum_all(t.exp(parts[1])))
        });
    }

    #[test]
    fn embedding_and_losses(n in 1usize..6, vocab in 2usize..6, h in 1usize..4, seed in any::<u64>()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let w = rand_array(&mut rng, &[vocab, h], -1.0, 1.0);
        let ids: Vec<u32> = (0..n).map(|_| rng.random_range(0..vocab as u32)).collect();
        check(std::slice::from_ref(&w), seed, |t, v| t.embedding(v[0], &ids, &[n]));
        let z = rand_array(&mut rng, &[n, vocab], -3.0, 3.0);
        check(std::slice::from_ref(&z), seed, |t, v| t.log_softmax(v[0]));
        let targets: Vec<i64> = (0..n).map(|i| if i % 3 == 2 { -100 } else { rng.random_range(0..vocab as i64) }).collect();
        let r = gradcheck(std::slice::from_ref(&z), EPS, |t, v| t.cross_entropy(v[0], &targets));
        prop_assert!(r.max_rel_error <= TOL, "cross-entropy {:?}", r.rel_errors);
        let denom = n + 3;
        let r = gradcheck(&[z], EPS, |t, v| t.cross_entropy_share(v[0], &targets, denom).0);
        prop_assert!(r.max_rel_error <= TOL, "cross-entropy share {:?}", r.rel_errors);
    }
}

#[test]
fn cross_entropy_equals_log_softmax_pick() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let z = rand_array(&mut rng, &[5, 4], -3.0, 3.0);
    let targets = [0i64, 3, -100, 1, 2];
    let t = Tape::<f64>::new();
    let zv = t.constant(z.clone());
    let ce = t.value(t.cross_entropy(zv, &targets))[IxDyn(&[])];
    let ls = t.value(t.log_softmax(zv));
    let want: f64 = -[(0, 0), (1, 3), (3, 1), (4, 2)]
        .iter()
        .map(|&(r, c)| ls[IxDyn(&[r, c])])
        .sum::<f64>()
        / 4.0;
    assert!((ce - want).abs() < 1e-12);
    // Two shards' shares over the 4 counted rows add up to the mean, and
    // each share's sum is its rows' losses.
    let (top, bottom) = (
        z.slice(s![..2, ..]).to_owned(),
        z.slice(s![2.., ..]).to_owned(),
    );
    let t2 = Tape::<f64>::new();
    let (a, sa) = t2.cross_entropy_share(t2.constant(top.into_dyn()), &targets[..2], 4);
    let (b, sb) = t2.cross_entropy_share(t2.constant(bottom.into_dyn()), &targets[2..], 4);
    let (a, b) = (t2.value(a)[IxDyn(&[])], t2.value(b)[IxDyn(&[])]);
    assert!((a + b - want).abs() < 1e-12);
    assert!((sa / 4.0 - a).abs() < 1e-15 && (sb / 4.0 - b).abs() < 1e-15);
    assert!((sa + sb - 4.0 * want).abs() < 1e-12);
}
