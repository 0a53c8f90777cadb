//! The fused step (`SelectionPath::Fused`, the default) against the
//! general step (`SelectionPath::Keys`): for every base and every scored
//! filter it accepts (Lion, whose step does not split, without the single
//! pass), and for the random filter (its draw pass, `random_draw`), under both decay scopes, in f32 and f64,
//! with heavy ties and blocks spanning several parallel chunks, the two give
//! bit-identical parameters, state and step statistics.

use mofo::optim::{
    Adam, Base, DecayScope, Filter, FiniteGrads, Gradient, Gv, Lion, Momentum, Mv, NAdam, NoFilter,
    OptimConfig, Optimizer, Random, RmsProp, SelectionPath, Sgd,
};
use mofo::{ParamStore, Scalar};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Tensors: one larger than a parallel chunk (2^15 entries), small ones.
const SHAPES: &[(&str, &[usize])] = &[
    ("embed.weight", &[70_001]),
    ("q.weight", &[24, 40]),
    ("tiny.weight", &[3]),
];

/// Values drawn from a small set (`levels` distinct magnitudes), so that
/// many scores tie exactly; `levels = 0` draws continuous values.
fn store<T: Scalar>(seed: u64, levels: u32, scale: f64) -> ParamStore<T> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut s = ParamStore::new();
    for (n, sh) in SHAPES {
        let len: usize = sh.iter().product();
        let v = (0..len)
            .map(|_| {
                let x = if levels == 0 {
                    rng.random_range(-1.0..1.0)
                } else {
                    let l = rng.random_range(1..=levels) as f64 / levels as f64;
                    if rng.random::<bool>() {
                        l
                    } else {
                        -l
                    }
                };
                T::of(x * scale)
            })
            .collect();
        s.insert_vec(*n, sh, v).unwrap();
    }
    s
}

struct Outcome {
    params: Vec<u64>,
    state: Vec<u64>,
    stats: Vec<String>,
    /// `Optimizer::fused_path_counts` at the end.
    paths: (u64, u64, u64),
    /// `Optimizer::fused_single_pass_counts` at the end.
    single: (u64, u64),
    /// `Optimizer::fused_single_pass_candidates` at the end.
    candidates: (u64, u64),
}

fn run<F: Filter, B: Base, T: Scalar>(
    filter: F,
    base: B,
    scope: DecayScope,
    path: SelectionPath,
    levels: u32,
    steps: u64,
) -> Outcome {
    run_with(filter, base, scope, path, steps, |s| {
        store::<T>(100 + s, levels, 0.5)
    })
}

/// Gradients that drift slowly from step to step (a fixed draw, scaled
/// by 1 + t/50, plus a small fresh draw), as in training, so that the
/// threshold forecast brackets the k-th key.
fn drifting<T: Scalar>(step: u64) -> ParamStore<T> {
    let fixed = store::<f64>(7, 0, 0.5);
    let noise = store::<f64>(1000 + step, 0, 0.01);
    let mut s = ParamStore::new();
    for (n, sh) in SHAPES {
        let a = fixed.get(n).unwrap().as_slice();
        let b = noise.get(n).unwrap().as_slice();
        let v = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| T::of(x * (1.0 + step as f64 / 50.0) + y))
            .collect();
        s.insert_vec(*n, sh, v).unwrap();
    }
    s
}

/// [`drifting`] gradients that jump 40-fold at step 12 and back (and a
/// further 40-fold down) at step 24, so that the forecast misses twice
/// (the second jump comes after the first has left the forecast's error
/// window, whose widened band would otherwise catch it).
fn jumping<T: Scalar>(step: u64) -> ParamStore<T> {
    let mut g = drifting::<T>(step);
    let scale = if (12..24).contains(&step) { 40.0 } else { 1.0 };
    let scale = T::of(if step >= 24 { 1.0 / 40.0 } else { scale });
    for t in g.iter_mut() {
        t.as_slice_mut().iter_mut().for_each(|x| *x *= scale);
    }
    g
}

fn run_with<F: Filter, B: Base, T: Scalar>(
    filter: F,
    base: B,
    scope: DecayScope,
    path: SelectionPath,
    steps: u64,
    grads: impl Fn(u64) -> ParamStore<T>,
) -> Outcome {
    run_checked(filter, base, scope, path, steps, grads, false)
}

/// [`run_with`], through `Optimizer::step_finite` when `checked`.
fn run_checked<F: Filter, B: Base, T: Scalar>(
    filter: F,
    base: B,
    scope: DecayScope,
    path: SelectionPath,
    steps: u64,
    grads: impl Fn(u64) -> ParamStore<T>,
    checked: bool,
) -> Outcome {
    let mut p = store::<T>(1, 0, 1.0);
    let cfg = OptimConfig {
        decay_scope: scope,
        selection_path: path,
        ..OptimConfig::default()
    };
    let mut opt = Optimizer::<F, B, T>::new(filter, base.clone(), cfg, &p).unwrap();
    let mut stats = Vec::new();
    for s in 0..steps {
        let g = grads(s);
        let st = if checked {
            opt.step_finite(&mut p, FiniteGrads::check(&g).unwrap())
        } else {
            opt.step(&mut p, &g)
        }
        .unwrap();
        stats.push(format!("{:?}", st.blocks));
    }
    let params = p
        .iter()
        .flat_map(|t| t.as_slice().iter().map(|x| x.as_f64().to_bits()))
        .collect();
    let mut state = Vec::new();
    for (name, _) in SHAPES {
        for buf in base.buffers().into_iter().flatten() {
            let b = opt.buffer(name, buf).unwrap();
            state.extend(b.iter().map(|x| x.as_f64().to_bits()));
        }
    }
    Outcome {
        params,
        state,
        stats,
        paths: opt.fused_path_counts(),
        single: opt.fused_single_pass_counts(),
        candidates: opt.fused_single_pass_candidates(),
    }
}

/// `run_path` on the fused and the general path: bit-identical
/// parameters, state and statistics (the general path never counts a
/// fused path), and the fused path's results and its paths' counts (hits,
/// misses, single passes: a chunk's log and its cap on candidates) the
/// same on 1 and 3 threads. Returns the fused path's outcome.
fn fused_is_general(run_path: impl Fn(SelectionPath) -> Outcome + Sync, name: &str) -> Outcome {
    let (f, k) = (
        run_path(SelectionPath::Fused),
        run_path(SelectionPath::Keys),
    );
    assert!(f.params == k.params, "params {name}");
    assert!(f.state == k.state, "state {name}");
    assert_eq!(f.stats, k.stats, "{name}");
    assert_eq!(k.paths, (0, 0, 0), "{name}");
    for threads in [1, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let t = pool.install(|| run_path(SelectionPath::Fused));
        assert!(
            t.params == f.params && t.state == f.state && t.stats == f.stats,
            "{name}, {threads} threads"
        );
        assert_eq!(
            (t.paths, t.single),
            (f.paths, f.single),
            "{name}, {threads} threads"
        );
    }
    f
}

fn same<F: Filter, B: Base>(filter: F, base: B, levels: u32) {
    for scope in [DecayScope::Selected, DecayScope::All] {
        let label = format!(
            "{} on {:?}, {scope:?}, levels {levels}",
            filter.name(),
            base
        );
        let fused = run::<F, B, f32>(
            filter.clone(),
            base.clone(),
            scope,
            SelectionPath::Fused,
            levels,
            3,
        );
        let keys = run::<F, B, f32>(
            filter.clone(),
            base.clone(),
            scope,
            SelectionPath::Keys,
            levels,
            3,
        );
        assert!(fused.params == keys.params, "f32 params: {label}");
        assert!(fused.state == keys.state, "f32 state: {label}");
        assert_eq!(fused.stats, keys.stats, "f32 stats: {label}");
        let fused = run::<F, B, f64>(
            filter.clone(),
            base.clone(),
            scope,
            SelectionPath::Fused,
            levels,
            2,
        );
        let keys = run::<F, B, f64>(
            filter.clone(),
            base.clone(),
            scope,
            SelectionPath::Keys,
            levels,
            2,
        );
        assert!(fused.params == keys.params, "f64 params: {label}");
        assert!(fused.state == keys.state, "f64 state: {label}");
        assert_eq!(fused.stats, keys.stats, "f64 stats: {label}");
    }
}

fn adams() -> Vec<Adam> {
    vec![
        Adam::adamw(1e-2),
        Adam {
            weight_decay: 0.1,
            amsgrad: true,
            ..Adam::new(1e-2)
        },
    ]
}

fn rmsprops() -> Vec<RmsProp> {
    vec![
        RmsProp {
            momentum: 0.9,
            ..RmsProp::default()
        },
        RmsProp {
            momentum: 0.5,
            centered: true,
            weight_decay: 0.01,
            ..RmsProp::default()
        },
    ]
}

fn sgds() -> Vec<Sgd> {
    vec![
        Sgd {
            momentum: 0.9,
            nesterov: true,
            lr: 0.1,
            ..Sgd::default()
        },
        Sgd {
            momentum: 0.5,
            dampening: 0.1,
            weight_decay: 0.01,
            lr: 0.1,
            ..Sgd::default()
        },
    ]
}

#[test]
fn fused_step_equals_the_general_step_for_every_base_and_scored_filter() {
    for levels in [0, 3] {
        for a in adams() {
            same(Momentum::new(0.1), a.clone(), levels);
            same(Gradient::new(0.2), a.clone(), levels);
            same(Mv::new(0.1), a.clone(), levels);
            same(Gv::new(0.3), a, levels);
        }
        let n = NAdam {
            weight_decay: 0.01,
            ..NAdam::default()
        };
        same(Momentum::new(0.15), n.clone(), levels);
        same(Mv::new(0.1), n, levels);
        for r in rmsprops() {
            same(Momentum::new(0.1), r.clone(), levels);
            same(Gv::new(0.1), r, levels);
        }
        for s in sgds() {
            same(Momentum::new(0.1), s.clone(), levels);
            same(Gradient::new(0.5), s, levels);
        }
        for l in lions() {
            same(Momentum::new(0.1), l.clone(), levels);
            same(Gradient::new(0.3), l, levels);
        }
    }
}

fn lions() -> Vec<Lion> {
    vec![
        Lion {
            lr: 1e-2,
            ..Lion::default()
        },
        Lion {
            lr: 1e-2,
            betas: (0.95, 0.98),
            weight_decay: 0.1,
        },
    ]
}

/// Lion, whose step does not split (its direction reads the momentum
/// before the update): pass 1 computes each entry's new value with its
/// update and leaves it in θ for the band's entries until their selection.
/// Over 30 steps of gradients that drift and jump, the forecast's probes
/// and the histogram both locate bands, the single pass never runs, and
/// parameters, state and statistics are the general step's, bit for bit,
/// whatever the thread count.
#[test]
fn lion_takes_the_two_passes_exactly() {
    fn case<T: Scalar>(base: &Lion, scope: DecayScope) {
        let run_path = |path| {
            run_with::<Momentum, Lion, T>(
                Momentum::new(0.1),
                base.clone(),
                scope,
                path,
                30,
                jumping::<T>,
            )
        };
        let name = format!("{base:?}, {scope:?}, {}", T::NAME);
        let f = fused_is_general(run_path, &name);
        let (hits, misses, crowded) = f.paths;
        assert_eq!(hits + misses + crowded, 3 * 30, "{name}: {:?}", f.paths);
        assert!(hits >= 30 && misses > 0, "{name}: paths {:?}", f.paths);
        assert_eq!(f.single, (0, 0), "{name}");
    }
    for base in lions() {
        for scope in [DecayScope::Selected, DecayScope::All] {
            case::<f32>(&base, scope);
            case::<f64>(&base, scope);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn fused_momentum_filter_is_exact_for_any_fraction_and_tie_pattern(
        fraction in 0.001f64..1.0,
        levels in 0u32..6,
    ) {
        for scope in [DecayScope::Selected, DecayScope::All] {
            let f = run::<Momentum, Adam, f32>(
                Momentum::new(fraction), Adam::adamw(1e-2), scope, SelectionPath::Fused, levels, 2);
            let k = run::<Momentum, Adam, f32>(
                Momentum::new(fraction), Adam::adamw(1e-2), scope, SelectionPath::Keys, levels, 2);
            prop_assert!(f.params == k.params);
            prop_assert!(f.state == k.state);
            prop_assert_eq!(f.stats, k.stats);
        }
    }
}

/// Many steps with drifting gradients: the fused step's forecast brackets
/// the threshold on most steps (its histogram pass is skipped), and
/// parameters, state and statistics are still those of the general step.
#[test]
fn forecast_path_is_exact_over_many_steps() {
    for scope in [DecayScope::Selected, DecayScope::All] {
        for base in adams() {
            let f = run_with::<Momentum, Adam, f32>(
                Momentum::new(0.1),
                base.clone(),
                scope,
                SelectionPath::Fused,
                24,
                drifting::<f32>,
            );
            let k = run_with::<Momentum, Adam, f32>(
                Momentum::new(0.1),
                base.clone(),
                scope,
                SelectionPath::Keys,
                24,
                drifting::<f32>,
            );
            assert!(f.params == k.params, "params {base:?} {scope:?}");
            assert!(f.state == k.state, "state {base:?} {scope:?}");
            assert_eq!(f.stats, k.stats);
            let (hits, misses, crowded) = f.paths;
            assert_eq!(hits + misses + crowded, 3 * 24, "{:?}", f.paths);
            assert!(
                hits >= 40,
                "forecast used on {hits} of 72 block steps: {:?}",
                f.paths
            );
            assert_eq!(k.paths, (0, 0, 0));
        }
        let f = run_with::<Mv, Adam, f64>(
            Mv::new(0.2),
            Adam::adamw(1e-2),
            scope,
            SelectionPath::Fused,
            12,
            drifting::<f64>,
        );
        let k = run_with::<Mv, Adam, f64>(
            Mv::new(0.2),
            Adam::adamw(1e-2),
            scope,
            SelectionPath::Keys,
            12,
            drifting::<f64>,
        );
        assert!(f.params == k.params && f.state == k.state && f.stats == k.stats);
        assert!(f.paths.0 > 0, "{:?}", f.paths);
    }
}

/// The single pass (settled forecast, scope `Selected`) when the forecast
/// misses: the gradients jump up by 40× at step 12, and down by 1/1600 at
/// step 24, after steady phases, so the threshold leaves the forecast's
/// band in both directions. The misses undo their updates and redo the
/// selection; parameters, state and statistics are still the general
/// step's, bit for bit, on 1, 3 or the default number of threads.
#[test]
fn single_pass_is_exact_when_the_forecast_misses() {
    single_pass_case::<f32>();
    single_pass_case::<f64>();
}

fn single_pass_case<T: Scalar>() {
    let jumping = jumping::<T>;
    for base in adams() {
        let run_path = |path| {
            run_with::<Momentum, Adam, T>(
                Momentum::new(0.1),
                base.clone(),
                DecayScope::Selected,
                path,
                36,
                jumping,
            )
        };
        let name = format!("{base:?} {}", T::NAME);
        let f = fused_is_general(run_path, &name);
        let (single, redone) = f.single;
        assert!(
            single >= 20,
            "single pass hits {single} ({:?}) {name}",
            f.paths
        );
        assert!(
            redone >= 2,
            "single pass misses {redone} ({:?}) {name}",
            f.paths
        );
        // A kept band holds the threshold key (k − above ≥ 1 candidates),
        // and less than its block.
        let (cands, of) = f.candidates;
        assert!(
            single <= cands && cands < of,
            "{cands} candidates of {of} entries in {single} single passes {name}"
        );
    }
}

/// The random filter (Random BCD): its draw pass and update pass
/// (`optimizer::random_draw`) select the general step's entries, on every
/// base (Lion included), both scopes, f32 and f64, any thread count; each
/// step draws new keys, so each block step is a fresh draw.
#[test]
fn random_filter_draws_exactly_the_general_steps_subset() {
    fn case<B: Base, T: Scalar>(base: &B, fraction: f64, scope: DecayScope) {
        let run_path = |path| {
            run_with::<Random, B, T>(
                Random::new(fraction, 42),
                base.clone(),
                scope,
                path,
                8,
                drifting::<T>,
            )
        };
        let name = format!("{base:?}, α {fraction}, {scope:?}, {}", T::NAME);
        let f = fused_is_general(run_path, &name);
        // Every block step that cuts (the 3-entry tensor keeps all at
        // α = 0.97) takes the draw pass; none misses its band.
        let (drawn, histograms, general) = f.paths;
        assert!(drawn >= 2 * 8, "{name}: {:?}", f.paths);
        assert_eq!((histograms, general), (0, 0), "{name}");
    }
    for scope in [DecayScope::Selected, DecayScope::All] {
        for fraction in [0.1, 0.5, 0.97] {
            case::<Adam, f32>(&Adam::adamw(1e-2), fraction, scope);
        }
        case::<Adam, f64>(&adams()[1], 0.2, scope);
        case::<Lion, f32>(&lions()[1], 0.1, scope);
        case::<Lion, f64>(&lions()[0], 0.3, scope);
        case::<RmsProp, f32>(&rmsprops()[1], 0.1, scope);
        case::<Sgd, f32>(&sgds()[0], 0.1, scope);
    }
}

/// The mv and gv filters, whose scores divide by a rounded square root
/// that the fused step takes sixteen entries at a time (`Filter::ROOTED`),
/// over 30 steps of jumping gradients: pass 0 with and without a forecast,
/// pass 1 and the single pass (hits and misses) are the general step's, bit
/// for bit, in f32 (MKL's square root from the packed estimate) and f64.
#[test]
fn rooted_scores_are_exact_on_every_fused_path() {
    rooted_case(Mv::new(0.1), adams());
    rooted_case(Gv::new(0.2), adams());
    rooted_case(Mv::new(0.1), vec![NAdam::default()]);
}

fn rooted_case<F: Filter, B: Base>(filter: F, bases: Vec<B>) {
    fn both<F: Filter, B: Base, T: Scalar>(filter: &F, base: &B, scope: DecayScope) {
        let run_path =
            |path| run_with::<F, B, T>(filter.clone(), base.clone(), scope, path, 30, jumping::<T>);
        let name = format!("{} on {base:?}, {scope:?}, {}", filter.name(), T::NAME);
        let f = fused_is_general(run_path, &name);
        let (hits, misses, _) = f.paths;
        assert!(hits > 0 && misses > 0, "{name}: paths {:?}", f.paths);
        if scope == DecayScope::Selected {
            assert!(f.single.0 > 0, "{name}: single passes {:?}", f.single);
        }
    }
    for base in bases {
        for scope in [DecayScope::Selected, DecayScope::All] {
            both::<F, B, f32>(&filter, &base, scope);
            both::<F, B, f64>(&filter, &base, scope);
        }
    }
}

/// `step_finite` on checked gradients is `step` bit for bit: the single
/// pass (which then reads no gradient before updating), the two passes, the
/// general step and a filterless Adam, on drifting gradients that also jump.
#[test]
fn a_step_on_checked_gradients_is_the_plain_step() {
    let jumping = jumping::<f32>;
    for base in adams() {
        for path in [SelectionPath::Fused, SelectionPath::Keys] {
            let go = |checked| {
                run_checked::<Momentum, Adam, f32>(
                    Momentum::new(0.1),
                    base.clone(),
                    DecayScope::Selected,
                    path,
                    30,
                    jumping,
                    checked,
                )
            };
            let (plain, checked) = (go(false), go(true));
            assert!(plain.params == checked.params, "params {base:?} {path:?}");
            assert!(plain.state == checked.state, "state {base:?} {path:?}");
            assert_eq!(plain.stats, checked.stats);
            assert_eq!(plain.single, checked.single);
            if path == SelectionPath::Fused {
                assert!(checked.single.0 >= 20, "single passes {:?}", checked.single);
            }
        }
        let go = |checked| {
            run_checked::<NoFilter, Adam, f32>(
                NoFilter,
                base.clone(),
                DecayScope::Selected,
                SelectionPath::Fused,
                10,
                jumping,
                checked,
            )
        };
        let (plain, checked) = (go(false), go(true));
        assert!(plain.params == checked.params && plain.state == checked.state);
    }
}

/// A block whose threshold falls in a mass of exact ties (zero gradients,
/// so zero momentum, for most entries) is left to the general step, with
/// the same result.
#[test]
fn crowded_bands_fall_back_to_the_general_step() {
    let sparse = |step: u64| {
        let mut g = store::<f32>(300 + step, 0, 0.5);
        for t in g.iter_mut() {
            let v = t.as_slice_mut();
            let keep = v.len() / 20;
            v[keep..].iter_mut().for_each(|x| *x = 0.0);
        }
        g
    };
    let f = run_with::<Momentum, Adam, f32>(
        Momentum::new(0.5),
        Adam::adamw(1e-2),
        DecayScope::All,
        SelectionPath::Fused,
        3,
        sparse,
    );
    let k = run_with::<Momentum, Adam, f32>(
        Momentum::new(0.5),
        Adam::adamw(1e-2),
        DecayScope::All,
        SelectionPath::Keys,
        3,
        sparse,
    );
    assert!(f.params == k.params && f.state == k.state && f.stats == k.stats);
    assert!(f.paths.2 > 0, "no crowded band: {:?}", f.paths);
}

/// The fused step checks the gradients in its read-only pass 0 (the
/// random filter's in its draw pass), for every block before any changes:
/// a non-finite gradient anywhere (in the pass with a forecast, the
/// histogram pass, the draw pass, or a block updated in full) leaves
/// parameters and state untouched and is reported at its first position.
#[test]
fn non_finite_gradients_change_nothing_on_the_fused_path() {
    case(Momentum::new(0.1), Adam::adamw(1e-2));
    // Lion's two passes, and the random filter's draw pass.
    case(Momentum::new(0.1), lions()[1].clone());
    case(Random::new(0.1, 5), Adam::adamw(1e-2));
    case(Random::new(0.2, 5), lions()[0].clone());

    fn case<F: Filter, B: Base>(filter: F, base: B) {
        let buffer = base.buffers()[0].unwrap();
        for (tensor, index, value) in [
            ("embed.weight", 69_999, f32::INFINITY),
            ("embed.weight", 3, f32::NAN),
            ("q.weight", 17, f32::NEG_INFINITY),
            ("tiny.weight", 2, f32::NAN),
        ] {
            for warm in [0u64, 8] {
                let label = format!("{} on {base:?}, {tensor}[{index}] = {value}", filter.name());
                let mut p = store::<f32>(1, 0, 1.0);
                let cfg = OptimConfig {
                    groups: vec![mofo::optim::GroupRule::full_update("tiny", &["tiny"])],
                    ..OptimConfig::default()
                };
                let mut opt =
                    Optimizer::<F, B, f32>::new(filter.clone(), base.clone(), cfg, &p).unwrap();
                for s in 0..warm {
                    opt.step(&mut p, &drifting::<f32>(s)).unwrap();
                }
                let before = p.clone();
                let m = opt.buffer("embed.weight", buffer).unwrap().to_vec();
                let mut g = drifting::<f32>(warm);
                g.get_mut(tensor).unwrap().as_slice_mut()[index] = value;
                match opt.step(&mut p, &g) {
                    Err(mofo::optim::OptimError::NonFinite { name, index: i }) => {
                        assert_eq!((name.as_str(), i), (tensor, index), "{label}")
                    }
                    other => panic!("{label}: got {other:?}"),
                }
                assert_eq!(p, before, "{label}");
                assert_eq!(
                    opt.buffer("embed.weight", buffer).unwrap(),
                    &m[..],
                    "{label}"
                );
                assert_eq!(opt.step_count(), warm, "{label}");
                if warm > 0 {
                    let (hits, misses, _) = opt.fused_path_counts();
                    assert!(hits + misses > 0, "{label}: {:?}", opt.fused_path_counts());
                }
            }
        }
    }
}
