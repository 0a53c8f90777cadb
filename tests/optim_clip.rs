//! Gradient clipping (`OptimConfig::clip`) against its definition: a step
//! with clipping by global norm and/or by value gives bit for bit the
//! parameters of the same optimizer without clipping fed the clipped
//! gradient `clamp(g, −c, c) · s`, `s = max_norm / (‖clamp(g)‖ + 1e-6)` when
//! the norm exceeds `max_norm` (PyTorch's `clip_grad_norm_`), the norm taken
//! from the clipped step's statistics and checked against a plain f64 sum.
//! Every base, the scored, random, half-fine-tuning and no filters, both
//! decay scopes, both selection paths, f32 and f64; the result does not
//! depend on the thread count, nor on whether the caller checked the
//! gradients (`Optimizer::step_finite`).

use mofo::optim::{
    Adam, Base, Clip, DecayScope, Filter, FiniteGrads, Gradient, HalfFineTuning, Lion, Momentum,
    Mv, NAdam, NoFilter, OptimConfig, Optimizer, Random, RmsProp, SelectionPath, Sgd,
};
use mofo::{ParamStore, Scalar};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Tensors: one spanning several parallel chunks (2^15 entries), small ones.
const SHAPES: &[(&str, &[usize])] = &[
    ("embed.weight", &[70_001]),
    ("q.weight", &[24, 40]),
    ("tiny.weight", &[3]),
];

fn store<T: Scalar>(seed: u64, scale: f64) -> ParamStore<T> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut s = ParamStore::new();
    for (n, sh) in SHAPES {
        let len: usize = sh.iter().product();
        let v = (0..len)
            .map(|_| T::of(rng.random_range(-1.0..1.0) * scale))
            .collect();
        s.insert_vec(*n, sh, v).unwrap();
    }
    s
}

fn bits<T: Scalar>(s: &ParamStore<T>) -> Vec<u64> {
    s.iter()
        .flat_map(|t| t.as_slice().iter().map(|x| x.as_f64().to_bits()))
        .collect()
}

/// The clipped gradient by its definition, and the norm's plain f64 sum.
fn clipped<T: Scalar>(g: &ParamStore<T>, clip: Clip, norm: Option<f64>) -> (ParamStore<T>, f64) {
    let c = clip.max_value.map(T::of);
    let clamp = |x: T| c.map_or(x, |c| x.max(-c).min(c));
    let plain: f64 = g
        .iter()
        .flat_map(|t| t.as_slice().iter().map(|&x| clamp(x).as_f64().powi(2)))
        .sum::<f64>()
        .sqrt();
    let scale = match (clip.max_norm, norm) {
        (Some(max), Some(n)) if n > max => Some(T::of(max / (n + 1e-6))),
        _ => None,
    };
    let mut out = g.clone();
    for t in g.iter() {
        let o = out.get_mut(&t.name).unwrap().as_slice_mut();
        for (o, &x) in o.iter_mut().zip(t.as_slice()) {
            let x = clamp(x);
            *o = scale.map_or(x, |s| x * s);
        }
    }
    (out, plain)
}

const STEPS: u64 = 5;

/// Clipping by norm, by value, and both (the norm is about 77 for the
/// large gradients of [`run`] and [`drifting`], so the norm clips).
const CLIPS: [Clip; 3] = [
    Clip {
        max_norm: Some(10.0),
        max_value: None,
    },
    Clip {
        max_norm: None,
        max_value: Some(0.3),
    },
    Clip {
        max_norm: Some(5.0),
        max_value: Some(0.3),
    },
];

/// Steps a clipped optimizer and an unclipped one fed the clipped
/// gradients on `threads` threads; returns the clipped run's parameters
/// and reported norms (as bits), after asserting that both runs agree.
fn run<F: Filter + Clone, B: Base + Clone, T: Scalar>(
    filter: &F,
    base: &B,
    config: &OptimConfig,
    threads: usize,
    label: &str,
) -> (Vec<u64>, Vec<u64>) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let mut pa = store::<T>(1, 0.5);
        let mut pb = pa.clone();
        let mut pc = pa.clone();
        let mut a = Optimizer::new(filter.clone(), base.clone(), config.clone(), &pa).unwrap();
        // The same clipped steps on gradients the caller has checked.
        let mut c = Optimizer::new(filter.clone(), base.clone(), config.clone(), &pc).unwrap();
        let plain_config = OptimConfig {
            clip: Clip::default(),
            ..config.clone()
        };
        let mut b = Optimizer::new(filter.clone(), base.clone(), plain_config, &pb).unwrap();
        let mut norms = Vec::new();
        for t in 0..STEPS {
            // Alternate large and small gradients, so that some steps clip
            // by norm and some do not.
            let g = store::<T>(10 + t, if t % 2 == 0 { 0.5 } else { 1e-3 });
            let stats = a.step(&mut pa, &g).unwrap();
            let (gc, plain) = clipped(&g, config.clip, stats.grad_norm);
            if let Some(n) = stats.grad_norm {
                assert!(
                    (n - plain).abs() <= 1e-12 * plain,
                    "{label}: norm {n} against a plain sum {plain}"
                );
                norms.push(n.to_bits());
            }
            let plain_stats = b.step(&mut pb, &gc).unwrap();
            assert_eq!(stats.selected, plain_stats.selected, "{label}, step {t}");
            assert_eq!(bits(&pa), bits(&pb), "{label}, step {t}: parameters");
            let checked = c
                .step_finite(&mut pc, FiniteGrads::check(&g).unwrap())
                .unwrap();
            assert_eq!(checked.grad_norm, stats.grad_norm, "{label}, step {t}");
            assert_eq!(bits(&pc), bits(&pa), "{label}, step {t}: step_finite");
        }
        (bits(&pa), norms)
    })
}

fn check<F: Filter + Clone, B: Base + Clone>(filter: F, base: B) {
    for clip in CLIPS {
        for scope in [DecayScope::Selected, DecayScope::All] {
            for path in [SelectionPath::Fused, SelectionPath::Keys] {
                let config = OptimConfig {
                    clip,
                    decay_scope: scope,
                    selection_path: path,
                    ..OptimConfig::default()
                };
                let label = format!(
                    "{} with {}, {clip:?}, {scope:?}, {path:?}",
                    std::any::type_name::<F>(),
                    std::any::type_name::<B>()
                );
                let one = run::<F, B, f32>(&filter, &base, &config, 1, &label);
                let three = run::<F, B, f32>(&filter, &base, &config, 3, &label);
                assert_eq!(one, three, "{label}: f32, 1 and 3 threads");
                let one = run::<F, B, f64>(&filter, &base, &config, 1, &label);
                let three = run::<F, B, f64>(&filter, &base, &config, 3, &label);
                assert_eq!(one, three, "{label}: f64, 1 and 3 threads");
            }
        }
    }
}

#[test]
fn clipping_is_the_clipped_gradient_on_adam_and_adamw() {
    let amsgrad = Adam {
        weight_decay: 0.1,
        amsgrad: true,
        ..Adam::new(1e-2)
    };
    for base in [Adam::adamw(1e-2), amsgrad] {
        check(NoFilter, base.clone());
        check(Momentum::new(0.1), base.clone());
        check(Gradient::new(0.2), base.clone());
        check(Mv::new(0.1), base.clone());
        check(Random::new(0.2, 3), base.clone());
        check(HalfFineTuning::new(5), base);
    }
}

#[test]
fn clipping_is_the_clipped_gradient_on_the_other_bases() {
    let nadam = NAdam {
        weight_decay: 0.01,
        ..NAdam::default()
    };
    check(NoFilter, nadam.clone());
    check(Momentum::new(0.15), nadam);
    let rmsprop = RmsProp {
        momentum: 0.9,
        weight_decay: 0.01,
        ..RmsProp::default()
    };
    check(NoFilter, rmsprop.clone());
    check(Momentum::new(0.1), rmsprop);
    let sgd = Sgd {
        momentum: 0.9,
        nesterov: true,
        lr: 0.1,
        ..Sgd::default()
    };
    check(NoFilter, sgd.clone());
    check(Momentum::new(0.1), sgd);
    let lion = Lion {
        lr: 1e-2,
        weight_decay: 0.1,
        ..Lion::default()
    };
    check(NoFilter, lion.clone());
    check(Momentum::new(0.1), lion.clone());
    check(Random::new(0.3, 1), lion);
}

/// Gradients that drift slowly (a fixed draw scaled by 1 + t/50, plus a
/// small fresh draw), so that the fused step's forecast settles and its
/// single pass runs.
fn drifting<T: Scalar>(t: u64) -> ParamStore<T> {
    let fixed = store::<f64>(7, 0.5);
    let fresh = store::<f64>(1000 + t, 0.01);
    let mut out = store::<T>(0, 0.0);
    for ((o, f), n) in out.iter_mut().zip(fixed.iter()).zip(fresh.iter()) {
        let o = o.as_slice_mut();
        for ((o, &a), &b) in o.iter_mut().zip(f.as_slice()).zip(n.as_slice()) {
            *o = T::of(a * (1.0 + t as f64 / 50.0) + b);
        }
    }
    out
}

/// The single pass (a settled forecast) and the forecast's pass 0 under
/// clipping: 40 steps of MoFO-AdamW, bit for bit the unclipped optimizer
/// fed the clipped gradients, on 1 and 3 threads.
fn single_pass_under_clipping<T: Scalar>(clip: Clip) {
    let outcome = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let config = OptimConfig {
                clip,
                ..OptimConfig::default()
            };
            let mut pa = store::<T>(1, 0.5);
            let mut pb = pa.clone();
            let base = Adam::adamw(1e-3);
            let mut a = Optimizer::new(Momentum::new(0.1), base.clone(), config, &pa).unwrap();
            let mut b =
                Optimizer::new(Momentum::new(0.1), base, OptimConfig::default(), &pb).unwrap();
            for t in 0..40 {
                let g = drifting::<T>(t);
                let stats = a.step(&mut pa, &g).unwrap();
                let (gc, _) = clipped(&g, clip, stats.grad_norm);
                b.step(&mut pb, &gc).unwrap();
                assert_eq!(bits(&pa), bits(&pb), "{clip:?}, step {t}");
            }
            let (single, _) = a.fused_single_pass_counts();
            let (hits, _, _) = a.fused_path_counts();
            assert!(single >= 20, "{clip:?}: {single} single passes");
            assert!(hits >= 30, "{clip:?}: {hits} forecast hits");
            assert_eq!(a.fused_path_counts(), b.fused_path_counts(), "{clip:?}");
            (
                bits(&pa),
                a.fused_path_counts(),
                a.fused_single_pass_counts(),
            )
        })
    };
    assert_eq!(outcome(1), outcome(3), "{clip:?}: 1 and 3 threads");
}

#[test]
fn the_single_pass_takes_the_clipped_gradients() {
    for clip in [CLIPS[0], CLIPS[2]] {
        single_pass_under_clipping::<f32>(clip);
        single_pass_under_clipping::<f64>(clip);
    }
}

/// A NaN or ±∞ gradient under clipping (by value too, which would clamp
/// ±∞ to ±c and NaN to −c) is reported at its first position and changes
/// nothing, on both paths.
#[test]
fn non_finite_gradients_under_clipping_change_nothing() {
    for clip in [CLIPS[0], CLIPS[1]] {
        for path in [SelectionPath::Fused, SelectionPath::Keys] {
            let config = OptimConfig {
                clip,
                selection_path: path,
                ..OptimConfig::default()
            };
            let mut p = store::<f32>(1, 0.5);
            let mut opt =
                Optimizer::new(Momentum::new(0.1), Adam::adamw(1e-2), config, &p).unwrap();
            // Settle the forecast first, so that the single pass is next.
            for t in 0..12 {
                opt.step(&mut p, &drifting::<f32>(t)).unwrap();
            }
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut g = drifting::<f32>(12);
                let e = g.get_mut("embed.weight").unwrap().as_slice_mut();
                e[40_000] = bad;
                e[60_000] = bad;
                let before = bits(&p);
                let err = opt.step(&mut p, &g).unwrap_err().to_string();
                assert!(
                    err.contains("embed.weight") && err.contains("40000"),
                    "{clip:?} {path:?} {bad}: {err}"
                );
                assert_eq!(bits(&p), before, "{clip:?} {path:?} {bad}");
            }
            // The step after goes on as if the bad one had not been tried.
            opt.step(&mut p, &drifting::<f32>(12)).unwrap();
        }
    }
}
