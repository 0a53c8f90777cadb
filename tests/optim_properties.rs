//! Properties of the optimizer algebra: α = 1 is the base bit for bit,
//! unselected entries are frozen bit for bit, exactly k entries per block
//! (ties to the smaller index), random/HFT filters are reproducible and
//! fair, results do not depend on the thread count, bad input is a typed error.

use mofo::optim::select::reference_indices;
use mofo::optim::{
    Adam, Base, DecayScope, Filter, Gradient, GroupRule, HalfFineTuning, HugePages, Lion, Momentum,
    Mv, NAdam, NoFilter, NonFinitePolicy, OptimConfig, OptimError, Optimizer, Random, RmsProp, Sgd,
};
use mofo::{ParamStore, Scalar};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn store(shapes: &[(&str, &[usize])], seed: u64, scale: f32) -> ParamStore<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut s = ParamStore::new();
    for (n, sh) in shapes {
        let len: usize = sh.iter().product();
        let v = (0..len).map(|_| rng.random_range(-scale..scale)).collect();
        s.insert_vec(*n, sh, v).unwrap();
    }
    s
}

const SHAPES: &[(&str, &[usize])] = &[("a.weight", &[6, 7]), ("b.weight", &[30]), ("c.bias", &[5])];

fn run<F: Filter, B: Base>(f: F, b: B, cfg: OptimConfig, steps: u64) -> ParamStore<f32> {
    let mut p = store(SHAPES, 1, 1.0);
    let mut opt = Optimizer::new(f, b, cfg, &p).unwrap();
    for s in 0..steps {
        let g = store(SHAPES, 100 + s, 1.0);
        opt.step(&mut p, &g).unwrap();
    }
    p
}

fn bits(s: &ParamStore<f32>) -> Vec<u32> {
    s.iter()
        .flat_map(|p| p.as_slice().iter().map(|x| x.to_bits()))
        .collect()
}

fn bases() -> (Adam, Adam, NAdam, RmsProp, Sgd, Lion) {
    (
        Adam {
            weight_decay: 0.1,
            amsgrad: true,
            ..Adam::new(1e-2)
        },
        Adam::adamw(1e-2),
        NAdam::default(),
        RmsProp {
            momentum: 0.9,
            centered: true,
            ..RmsProp::default()
        },
        Sgd {
            lr: 1e-2,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 0.01,
            ..Sgd::default()
        },
        Lion {
            weight_decay: 0.1,
            ..Lion::default()
        },
    )
}

#[test]
fn fraction_one_is_the_base_bit_for_bit() {
    fn check<B: Base>(b: B) {
        let base = bits(&run(NoFilter, b.clone(), OptimConfig::default(), 5));
        assert_eq!(
            base,
            bits(&run(
                Momentum::new(1.0),
                b.clone(),
                OptimConfig::default(),
                5
            ))
        );
        assert_eq!(
            base,
            bits(&run(
                Gradient::new(1.0),
                b.clone(),
                OptimConfig::default(),
                5
            ))
        );
        assert_eq!(
            base,
            bits(&run(Random::new(1.0, 3), b, OptimConfig::default(), 5))
        );
    }
    let (a, aw, n, r, s, l) = bases();
    check(a);
    check(aw);
    check(n);
    check(r);
    check(s);
    check(l);
}

#[test]
fn unselected_entries_are_frozen_under_selected_scope() {
    let mut p = store(SHAPES, 1, 1.0);
    let mut opt = Optimizer::new(
        Momentum::new(0.2),
        Adam::adamw(1e-2),
        OptimConfig::default(),
        &p,
    )
    .unwrap();
    for s in 0..6 {
        let before = p.clone();
        let g = store(SHAPES, 200 + s, 1.0);
        let stats = opt.step(&mut p, &g).unwrap();
        for (blk, (q, q0)) in stats.blocks.iter().zip(p.iter().zip(before.iter())) {
            let changed = q
                .as_slice()
                .iter()
                .zip(q0.as_slice())
                .filter(|(x, y)| x.to_bits() != y.to_bits())
                .count();
            let k = mofo::optim::selection_count(0.2, q.value.len());
            assert_eq!(blk.selected, k);
            assert_eq!(
                changed, k,
                "{}: only the k selected entries may change",
                q.name
            );
        }
    }
    // Scope All: every entry decays.
    let mut p = store(SHAPES, 1, 1.0);
    let cfg = OptimConfig {
        decay_scope: DecayScope::All,
        ..OptimConfig::default()
    };
    let mut opt = Optimizer::new(Momentum::new(0.2), Adam::adamw(1e-2), cfg, &p).unwrap();
    let before = p.clone();
    opt.step(&mut p, &store(SHAPES, 300, 1.0)).unwrap();
    let unchanged = bits(&p)
        .iter()
        .zip(bits(&before))
        .filter(|(a, b)| **a == *b)
        .count();
    assert_eq!(unchanged, 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn exactly_k_selected_with_ties(levels in proptest::collection::vec(0usize..3, 1..120), frac in 0.01f64..1.0) {
        // Gradient filter on plain SGD: each selected entry moves by −lr·g ≠ 0.
        let d = levels.len();
        let gv: Vec<f32> = levels.iter().enumerate().map(|(i, &l)| [1.0f32, -2.0, 4.0][l] * if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        let mut p = ParamStore::<f32>::new();
        p.insert_vec("w", &[d], vec![0.0; d]).unwrap();
        let mut g = ParamStore::<f32>::new();
        g.insert_vec("w", &[d], gv.clone()).unwrap();
        let mut opt = Optimizer::simple(Gradient::new(frac), Sgd { lr: 0.5, ..Sgd::default() }, &p).unwrap();
        let stats = opt.step(&mut p, &g).unwrap();
        let k = mofo::optim::selection_count(frac, d);
        let changed: Vec<usize> = p.get("w").unwrap().as_slice().iter().enumerate().filter(|(_, x)| **x != 0.0).map(|(i, _)| i).collect();
        prop_assert_eq!(stats.selected, k);
        let keys: Vec<u64> = gv.iter().map(|x| x.abs_key()).collect();
        prop_assert_eq!(changed, reference_indices(&keys, k));
    }
}

fn changed_mask(before: &ParamStore<f32>, after: &ParamStore<f32>) -> Vec<bool> {
    bits(before)
        .iter()
        .zip(bits(after))
        .map(|(a, b)| *a != b)
        .collect()
}

#[test]
fn random_filter_is_reproducible_and_uniform() {
    let a = bits(&run(
        Random::new(0.3, 7),
        Adam::adamw(1e-2),
        OptimConfig::default(),
        4,
    ));
    let b = bits(&run(
        Random::new(0.3, 7),
        Adam::adamw(1e-2),
        OptimConfig::default(),
        4,
    ));
    let c = bits(&run(
        Random::new(0.3, 8),
        Adam::adamw(1e-2),
        OptimConfig::default(),
        4,
    ));
    assert_eq!(a, b);
    assert_ne!(a, c);
    // Uniformity: 20 entries, k = 5, 2000 steps; each entry expects 500 picks.
    let d = 20;
    let mut p = ParamStore::<f32>::new();
    p.insert_vec("w", &[d], vec![0.0; d]).unwrap();
    let mut g = ParamStore::<f32>::new();
    g.insert_vec("w", &[d], vec![1.0; d]).unwrap();
    let mut opt = Optimizer::simple(
        Random::new(0.25, 42),
        Sgd {
            lr: 1.0,
            ..Sgd::default()
        },
        &p,
    )
    .unwrap();
    let steps = 2000;
    for _ in 0..steps {
        opt.step(&mut p, &g).unwrap();
    }
    let picks: Vec<f64> = p
        .get("w")
        .unwrap()
        .as_slice()
        .iter()
        .map(|x| -x.as_f64())
        .collect();
    assert_eq!(picks.iter().sum::<f64>(), (5 * steps) as f64);
    let e = (5 * steps) as f64 / d as f64;
    let chi2: f64 = picks.iter().map(|o| (o - e).powi(2) / e).sum();
    // 19 degrees of freedom: P(χ² > 43.8) = 0.001.
    assert!(chi2 < 43.8, "chi² = {chi2} over {picks:?}");
}

#[test]
fn half_fine_tuning_updates_half_of_each_layer() {
    let names: Vec<String> = (0..3)
        .flat_map(|l| {
            ["q", "k", "v", "o", "up", "down"].map(|t| format!("model.layers.{l}.{t}.weight"))
        })
        .collect();
    let shapes: Vec<(&str, &[usize])> = names
        .iter()
        .map(|n| (n.as_str(), &[4usize, 3][..]))
        .collect();
    let mut p = store(&shapes, 1, 1.0);
    let mut opt = Optimizer::simple(HalfFineTuning::new(5), Adam::adamw(1e-2), &p).unwrap();
    let mut seen_sets = std::collections::HashSet::new();
    for s in 0..10 {
        let before = p.clone();
        opt.step(&mut p, &store(&shapes, 50 + s, 1.0)).unwrap();
        let mask = changed_mask(&before, &p);
        let per_tensor: Vec<bool> = mask.chunks(12).map(|c| c.iter().all(|&x| x)).collect();
        let any: Vec<bool> = mask.chunks(12).map(|c| c.iter().any(|&x| x)).collect();
        assert_eq!(per_tensor, any, "a tensor is updated in full or not at all");
        for layer in per_tensor.chunks(6) {
            assert_eq!(layer.iter().filter(|&&x| x).count(), 3);
        }
        seen_sets.insert(per_tensor);
    }
    assert!(seen_sets.len() > 1, "the half changes from step to step");
}

/// Three steps on one tensor large enough that its buffers hold whole 2 MiB
/// pages to advise.
fn run_large<F: Filter>(f: F, huge: HugePages) -> Vec<u32> {
    let n = 1_200_000;
    let random = |seed: u64| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut s = ParamStore::<f32>::new();
        let v = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        s.insert_vec("w", &[n], v).unwrap();
        s
    };
    let mut p = random(5);
    let cfg = OptimConfig {
        huge_pages: huge,
        ..OptimConfig::default()
    };
    let mut opt = Optimizer::new(f, Adam::adamw(1e-2), cfg, &p).unwrap();
    for s in 0..3 {
        opt.step(&mut p, &random(100 + s)).unwrap();
    }
    bits(&p)
}

#[test]
fn huge_page_advice_changes_no_result() {
    assert_eq!(
        run_large(NoFilter, HugePages::Use),
        run_large(NoFilter, HugePages::Off)
    );
    assert_eq!(
        run_large(Momentum::new(0.1), HugePages::Use),
        run_large(Momentum::new(0.1), HugePages::Off)
    );
}

#[test]
fn results_do_not_depend_on_thread_count() {
    // One block larger than a parallel chunk, with many tied scores.
    let n = 100_000;
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let g: Vec<f32> = (0..n)
        .map(|_| [0.5f32, -0.5, 1.0, 0.25][rng.random_range(0..4)])
        .collect();
    let runs: Vec<Vec<u32>> = [1, 3]
        .iter()
        .map(|&t| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap();
            pool.install(|| {
                let mut p = ParamStore::<f32>::new();
                p.insert_vec("w", &[n], vec![0.1; n]).unwrap();
                let mut gs = ParamStore::<f32>::new();
                gs.insert_vec("w", &[n], g.clone()).unwrap();
                let mut opt = Optimizer::simple(Momentum::new(0.1), Adam::adamw(1e-2), &p).unwrap();
                for _ in 0..3 {
                    opt.step(&mut p, &gs).unwrap();
                }
                bits(&p)
            })
        })
        .collect();
    assert_eq!(runs[0], runs[1]);
    // The tie quota crosses the parallel chunks in index order: at step 1
    // |m| = 0.1·|g|, so the selection is the first k entries with |g| = 1.
    let mut p = ParamStore::<f32>::new();
    p.insert_vec("w", &[n], vec![0.1; n]).unwrap();
    let before = p.clone();
    let mut gs = ParamStore::<f32>::new();
    gs.insert_vec("w", &[n], g.clone()).unwrap();
    let mut opt = Optimizer::simple(Momentum::new(0.1), Adam::adamw(1e-2), &p).unwrap();
    opt.step(&mut p, &gs).unwrap();
    let k = mofo::optim::selection_count(0.1, n);
    let want: Vec<bool> = {
        let mut left = k;
        g.iter()
            .map(|&x| {
                let take = x.abs() == 1.0 && left > 0;
                left -= take as usize;
                take
            })
            .collect()
    };
    assert_eq!(changed_mask(&before, &p), want);
}

fn err<F: Filter, B: Base>(r: Result<Optimizer<F, B, f32>, OptimError>) -> OptimError {
    match r {
        Ok(_) => panic!("must fail"),
        Err(e) => e,
    }
}

#[test]
fn bad_input_is_a_typed_error() {
    let p = store(SHAPES, 1, 1.0);
    assert!(matches!(
        err(Optimizer::simple(
            Momentum::new(0.1),
            RmsProp::default(),
            &p
        )),
        OptimError::Incompatible { .. }
    ));
    assert!(matches!(
        err(Optimizer::simple(Momentum::new(0.1), Sgd::default(), &p)),
        OptimError::Incompatible { .. }
    ));
    assert!(matches!(
        err(Optimizer::simple(Mv::new(0.1), Lion::default(), &p)),
        OptimError::Incompatible { .. }
    ));
    assert!(matches!(
        err(Optimizer::simple(Momentum::new(0.0), Adam::default(), &p)),
        OptimError::Hyperparameter { .. }
    ));
    assert!(matches!(
        err(Optimizer::simple(Momentum::new(1.5), Adam::default(), &p)),
        OptimError::Hyperparameter { .. }
    ));
    assert!(matches!(
        err(Optimizer::simple(NoFilter, Adam::new(-1.0), &p)),
        OptimError::Hyperparameter { .. }
    ));
    let mut empty = ParamStore::<f32>::new();
    empty.insert_vec("e", &[0], vec![]).unwrap();
    assert!(matches!(
        err(Optimizer::simple(NoFilter, Adam::default(), &empty)),
        OptimError::EmptyBlock(_)
    ));
    let bad_group = OptimConfig {
        groups: vec![GroupRule::full_update("x", &["bias"]).with_fraction(2.0)],
        ..OptimConfig::default()
    };
    assert!(Optimizer::new(Momentum::new(0.1), Adam::default(), bad_group, &p).is_err());

    // Step-time errors leave parameters and state untouched.
    let mut params = p.clone();
    let mut opt = Optimizer::simple(Momentum::new(0.3), Adam::adamw(1e-2), &params).unwrap();
    opt.step(&mut params, &store(SHAPES, 2, 1.0)).unwrap();
    let snapshot = (
        params.clone(),
        opt.buffer("a.weight", "exp_avg").unwrap().to_vec(),
    );
    let mut g = store(SHAPES, 3, 1.0);
    g.get_mut("b.weight").unwrap().as_slice_mut()[4] = f32::NAN;
    match opt.step(&mut params, &g) {
        Err(OptimError::NonFinite { name, index }) => {
            assert_eq!((name.as_str(), index), ("b.weight", 4))
        }
        other => panic!("expected NonFinite, got {other:?}"),
    }
    assert_eq!(params, snapshot.0);
    assert_eq!(opt.buffer("a.weight", "exp_avg").unwrap(), &snapshot.1[..]);
    assert_eq!(opt.step_count(), 1);
    let wrong = store(
        &[("a.weight", &[7, 6]), ("b.weight", &[30]), ("c.bias", &[5])],
        4,
        1.0,
    );
    assert!(matches!(
        opt.step(&mut params, &wrong),
        Err(OptimError::Layout(_))
    ));
    let missing = store(&[("a.weight", &[6, 7]), ("b.weight", &[30])], 4, 1.0);
    assert!(matches!(
        opt.step(&mut params, &missing),
        Err(OptimError::Layout(_))
    ));
    assert_eq!(params, snapshot.0);

    // Skip policy: counted, nothing changes.
    let cfg = OptimConfig {
        non_finite: NonFinitePolicy::Skip,
        ..OptimConfig::default()
    };
    let mut opt = Optimizer::new(NoFilter, Adam::default(), cfg, &params).unwrap();
    let before = params.clone();
    let stats = opt.step(&mut params, &g).unwrap();
    assert!(stats.skipped);
    assert_eq!(opt.skipped_steps(), 1);
    assert_eq!(opt.step_count(), 0);
    assert_eq!(params, before);
}

#[test]
fn unfiltered_groups_and_selection_statistics() {
    let cfg = OptimConfig {
        groups: vec![GroupRule::reference_unfiltered()],
        track_selection: true,
        ..OptimConfig::default()
    };
    let mut p = store(SHAPES, 1, 1.0);
    let mut opt = Optimizer::new(Momentum::new(0.1), Adam::adamw(1e-2), cfg, &p).unwrap();
    let s1 = opt.step(&mut p, &store(SHAPES, 10, 1.0)).unwrap();
    // c.bias (5 entries) is updated in full; a (42) keeps 5, b (30) keeps 3.
    assert_eq!(
        s1.blocks.iter().map(|b| b.selected).collect::<Vec<_>>(),
        vec![5, 3, 5]
    );
    assert!(s1.blocks[0].threshold.is_some() && s1.blocks[2].threshold.is_none());
    assert!(s1.blocks[0].overlap.is_none());
    let share1 = s1.ever_updated_share.unwrap();
    assert!((share1 - 13.0 / 77.0).abs() < 1e-12);
    // Same gradient again: momentum keeps its ordering, so the selection repeats.
    let s2 = opt.step(&mut p, &store(SHAPES, 10, 1.0)).unwrap();
    assert_eq!(s2.blocks[0].overlap, Some(1.0));
    assert!((s2.ever_updated_share.unwrap() - share1).abs() < 1e-12);
    opt.reset_reference();
    let s3 = opt.step(&mut p, &store(SHAPES, 11, 1.0)).unwrap();
    assert!((s3.ever_updated_share.unwrap() - 13.0 / 77.0).abs() < 1e-12);
}
