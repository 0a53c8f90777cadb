//! GPU tests (feature `cuda`). Without a CUDA driver they print why they skip.
#![cfg(feature = "cuda")]

use std::sync::Arc;

use mofo::cuda::gpu::{driver_available, GpuBase, GpuContext, GpuError, GpuFilter, GpuOptimizer};
use mofo::optim::selection_count;
use mofo::optim::{Adam, BaseSpec};

fn gpu() -> Option<Arc<GpuContext>> {
    if !driver_available() {
        eprintln!("skipped: no CUDA driver library on this machine");
        return None;
    }
    Some(Arc::new(GpuContext::new(0).expect("CUDA context")))
}

#[test]
fn no_driver_is_an_error_not_a_panic() {
    if driver_available() {
        eprintln!("skipped: a CUDA driver is present");
        return;
    }
    assert!(matches!(GpuContext::new(0), Err(GpuError::NoDriver)));
}

/// Every key ties (|g| = 1 everywhere): the tie rule alone decides, and the
/// first k entries are the selected ones. 3 000 007 entries make 11 719
/// chunks, so the tie scan runs over three tiles of 4 096 chunk counts.
#[test]
fn mofo_adam_selects_exactly_k_with_ties() {
    let Some(gpu) = gpu() else { return };
    for n in [10_000usize, 3_000_007] {
        let values: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut opt = GpuOptimizer::new(
            gpu.clone(),
            GpuBase::Adam {
                lr: 1e-3,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.0,
                decoupled: true,
                amsgrad: false,
            },
            GpuFilter::Momentum,
            0.1,
            false,
            &[("w".into(), values.clone(), true)],
        )
        .unwrap();
        let grads: Vec<f32> = (0..n)
            .map(|i| if i % 3 == 0 { 1.0 } else { -1.0 })
            .collect();
        for step in 0..2 {
            opt.step(&[&grads]).unwrap();
            let mask = &opt.last_selection().unwrap()[0];
            let k = selection_count(0.1, n);
            assert_eq!(
                mask.iter().filter(|&&s| s == 1).count(),
                k,
                "n {n} step {step}"
            );
            assert!(mask[..k].iter().all(|&s| s == 1), "n {n} step {step}");
        }
        let after = &opt.params().unwrap()[0].1;
        let k = selection_count(0.1, n);
        for i in k..n {
            assert_eq!(after[i].to_bits(), values[i].to_bits(), "entry {i} moved");
        }
    }
}

/// Bad input is a typed error and changes nothing: no blocks, α outside
/// (0, 1], a gradient of the wrong length, a non-finite gradient.
#[test]
fn bad_input_is_a_typed_error() {
    let Some(gpu) = gpu() else { return };
    let adam = GpuBase::from_spec(&BaseSpec::Adam(Adam::adamw(1e-3)));
    let block = || vec![("w".to_string(), vec![1.0f32; 4], true)];
    let new = |fraction: f64, blocks: &[(String, Vec<f32>, bool)]| {
        GpuOptimizer::new(
            gpu.clone(),
            adam,
            GpuFilter::Momentum,
            fraction,
            false,
            blocks,
        )
    };
    assert!(matches!(new(0.1, &[]), Err(GpuError::Invalid(_))));
    assert!(matches!(new(1.5, &block()), Err(GpuError::Invalid(_))));
    assert!(matches!(new(0.0, &block()), Err(GpuError::Invalid(_))));
    let mut opt = new(0.5, &block()).unwrap();
    assert!(matches!(opt.step(&[&[1.0; 3]]), Err(GpuError::Invalid(_))));
    let nan = [1.0, f32::NAN, 0.0, 0.0];
    assert!(matches!(opt.step(&[&nan]), Err(GpuError::Invalid(_))));
    assert!(matches!(opt.step(&[]), Err(GpuError::Invalid(_))));
    assert_eq!(opt.step_count(), 0);
    assert_eq!(opt.params().unwrap()[0].1, vec![1.0; 4]);
}

/// In one optimizer, a block marked unfiltered takes every entry while a
/// filtered one takes k; the unfiltered block's step is the plain AdamW
/// step (the same as with no filter at all).
#[test]
fn unfiltered_blocks_take_every_entry() {
    let Some(gpu) = gpu() else { return };
    let adamw = GpuBase::from_spec(&BaseSpec::Adam(Adam::adamw(1e-3)));
    let a: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.1).cos()).collect();
    let b: Vec<f32> = (0..700).map(|i| (i as f32 * 0.3).sin()).collect();
    let blocks = vec![
        ("a".to_string(), a.clone(), true),
        ("b".to_string(), b.clone(), false),
    ];
    let mut mixed =
        GpuOptimizer::new(gpu.clone(), adamw, GpuFilter::Momentum, 0.1, false, &blocks).unwrap();
    let mut plain =
        GpuOptimizer::new(gpu.clone(), adamw, GpuFilter::None, 1.0, false, &blocks).unwrap();
    let ga: Vec<f32> = a.iter().map(|x| x * 0.5 - 0.1).collect();
    let gb: Vec<f32> = b.iter().map(|x| x * 0.25 + 0.05).collect();
    for step in 0..3 {
        mixed.step(&[&ga, &gb]).unwrap();
        plain.step(&[&ga, &gb]).unwrap();
        if step == 0 {
            // The general way: plan, update, 4 picks, 3 histograms, tie
            // count and scan, masked apply.
            assert_eq!(mixed.launches_per_step(), 12);
            assert_eq!(plain.launches_per_step(), 1);
        }
    }
    let mask = mixed.last_selection().unwrap();
    assert_eq!(mask[0].iter().filter(|&&s| s == 1).count(), 100);
    assert!(mask[1].iter().all(|&s| s == 1));
    let (m, p) = (mixed.params().unwrap(), plain.params().unwrap());
    assert_eq!(m[1].1, p[1].1, "the unfiltered block is the plain step");
    assert_ne!(m[0].1, p[0].1);
}

mod parity {
    //! The GPU optimizer against the CPU's `Optimizer<F, B>` in f32, for
    //! every base (and its variants) under every filter it accepts, under
    //! both decay scopes, on blocks of 300 001 (a tie scan over more chunks
    //! than its 1024 threads), 70 001, 960 and 3 entries.

    use super::*;
    use mofo::optim::spec::AdamWParams;
    use mofo::optim::{DecayScope, FilterSpec, Lion, NAdam, OptimizerSpec, RmsProp, Sgd};
    use mofo::ParamStore;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    const SIZES: &[usize] = &[300_001, 70_001, 960, 3];
    const STEPS: u64 = 4;

    fn draw(seed: u64, levels: u32, scale: f32) -> Vec<Vec<f32>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        SIZES
            .iter()
            .map(|&n| {
                (0..n)
                    .map(|_| {
                        let x: f32 = if levels == 0 {
                            rng.random_range(-1.0..1.0)
                        } else {
                            let l = rng.random_range(1..=levels) as f32 / levels as f32;
                            if rng.random::<bool>() {
                                l
                            } else {
                                -l
                            }
                        };
                        x * scale
                    })
                    .collect()
            })
            .collect()
    }

    fn store(values: &[Vec<f32>]) -> ParamStore<f32> {
        let mut s = ParamStore::new();
        for (i, v) in values.iter().enumerate() {
            s.insert_vec(format!("b{i}"), &[v.len()], v.clone())
                .unwrap();
        }
        s
    }

    /// The bases, with ε = `eps` where they have one.
    fn bases(eps: f64) -> Vec<(&'static str, BaseSpec)> {
        let wd = |mut a: Adam| {
            a.weight_decay = 0.1;
            a.eps = eps;
            a
        };
        vec![
            ("adam-l2", BaseSpec::Adam(wd(Adam::new(1e-2)))),
            (
                "adamw",
                BaseSpec::Adamw(AdamWParams {
                    lr: 1e-2,
                    eps,
                    weight_decay: 0.1,
                    ..AdamWParams::default()
                }),
            ),
            (
                "amsgrad",
                BaseSpec::Adamw(AdamWParams {
                    lr: 1e-2,
                    eps,
                    amsgrad: true,
                    ..AdamWParams::default()
                }),
            ),
            (
                "nadam",
                BaseSpec::Nadam(NAdam {
                    eps,
                    weight_decay: 0.1,
                    ..NAdam::default()
                }),
            ),
            (
                "nadamw",
                BaseSpec::Nadam(NAdam {
                    eps,
                    weight_decay: 0.1,
                    decoupled_weight_decay: true,
                    ..NAdam::default()
                }),
            ),
            (
                "rmsprop",
                BaseSpec::Rmsprop(RmsProp {
                    eps,
                    ..RmsProp::default()
                }),
            ),
            (
                "rmsprop-centered-momentum",
                BaseSpec::Rmsprop(RmsProp {
                    eps,
                    momentum: 0.9,
                    centered: true,
                    weight_decay: 0.1,
                    ..RmsProp::default()
                }),
            ),
            (
                "sgd-momentum",
                BaseSpec::Sgd(Sgd {
                    lr: 1e-2,
                    momentum: 0.9,
                    dampening: 0.1,
                    weight_decay: 0.1,
                    ..Sgd::default()
                }),
            ),
            (
                "sgd-nesterov",
                BaseSpec::Sgd(Sgd {
                    lr: 1e-2,
                    momentum: 0.9,
                    nesterov: true,
                    ..Sgd::default()
                }),
            ),
            ("sgd-plain", BaseSpec::Sgd(Sgd::default())),
            (
                "lion",
                BaseSpec::Lion(Lion {
                    weight_decay: 0.1,
                    ..Lion::default()
                }),
            ),
        ]
    }

    fn filters() -> Vec<FilterSpec> {
        vec![
            FilterSpec::None,
            FilterSpec::Momentum { fraction: 0.1 },
            FilterSpec::Gradient { fraction: 0.1 },
            FilterSpec::Mv { fraction: 0.1 },
            FilterSpec::Gv { fraction: 0.3 },
        ]
    }

    /// How the GPU's final values compare with the CPU's.
    struct Agreement {
        /// Entries that differ by more than float rounding.
        off: usize,
        /// Entries not bitwise equal.
        unequal: usize,
        /// Entries compared.
        total: usize,
        /// The largest difference among the entries within rounding,
        /// relative to the largest value the entry held.
        max_rel: f32,
    }

    /// Runs `spec` for `STEPS` steps on the CPU and on the GPU from the same
    /// values and gradients and compares the final values, or `None` when
    /// the CPU refuses the combination (the GPU must refuse it too).
    fn compare(
        gpu: &Arc<GpuContext>,
        spec: &OptimizerSpec,
        levels: u32,
        label: &str,
    ) -> Option<Agreement> {
        let start = draw(1, 0, 1.0);
        let mut cpu_params = store(&start);
        let cpu = spec.build::<f32>(&cpu_params);
        let (filter, fraction) = GpuFilter::from_spec(&spec.filter).unwrap();
        let named: Vec<(String, Vec<f32>, bool)> = start
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("b{i}"), v.clone(), true))
            .collect();
        let on_gpu = GpuOptimizer::new(
            gpu.clone(),
            GpuBase::from_spec(&spec.base),
            filter,
            fraction,
            spec.decay_scope == DecayScope::All,
            &named,
        );
        let (mut cpu, mut on_gpu) = match (cpu, on_gpu) {
            (Ok(c), Ok(g)) => (c, g),
            (Err(_), Err(_)) => return None,
            (c, g) => panic!(
                "{label}: CPU {} but GPU {}",
                c.map(|_| "accepts").unwrap_or("refuses"),
                g.map(|_| "accepts").unwrap_or("refuses")
            ),
        };
        for step in 0..STEPS {
            let grads = draw(100 + step, levels, 0.5);
            cpu.step(&mut cpu_params, &store(&grads)).unwrap();
            let slices: Vec<&[f32]> = grads.iter().map(|g| g.as_slice()).collect();
            on_gpu.step(&slices).unwrap();
            // Exactly k entries of each block are selected on the GPU.
            for (b, mask) in on_gpu.last_selection().unwrap().iter().enumerate() {
                let n = SIZES[b];
                let k = if filter == GpuFilter::None {
                    n
                } else {
                    selection_count(fraction, n)
                };
                let got = mask.iter().filter(|&&s| s == 1).count();
                assert_eq!(got, k, "{label}: block {b} step {step}");
            }
        }
        let mut a = Agreement {
            off: 0,
            unequal: 0,
            total: 0,
            max_rel: 0.0,
        };
        for (b, (_, g)) in on_gpu.params().unwrap().iter().enumerate() {
            let c = cpu_params.get(&format!("b{b}")).unwrap().as_slice();
            for (i, (&x, &y)) in g.iter().zip(c).enumerate() {
                a.total += 1;
                a.unequal += usize::from(x.to_bits() != y.to_bits());
                // Rounding differences are a few ulps of the largest value
                // the entry held: its start, where it ends, or an
                // intermediate value after a step of up to 0.1 (RMSProp's
                // first steps are lr/√(1 − α) = 0.1).
                let scale = x.abs().max(y.abs()).max(start[b][i].abs()).max(0.1);
                let diff = (x - y).abs();
                if diff > 1e-6 * scale {
                    if a.off < 3 {
                        eprintln!("{label}: block {b} entry {i}: GPU {x:e} CPU {y:e}");
                    }
                    a.off += 1;
                } else if diff > 0.0 {
                    a.max_rel = a.max_rel.max(diff / scale);
                }
            }
        }
        Some(a)
    }

    /// Continuous draws: every value within float rounding of the CPU's,
    /// except where two scores within an ulp of each other straddle the
    /// threshold; at most one such entry per block and step is allowed.
    ///
    /// ε = 0.1: with ε ≪ |g| the first step's mv and gv scores are
    /// |g|/(|g| + ε) ≈ 1 and RMSProp's g/√v ≈ ±10 up to rounding, so the
    /// last bit of a square root decides the selection (docs/optimizer.md):
    /// the CPU rounds it as PyTorch's CPU kernel (MKL) does, the GPU
    /// correctly, as PyTorch's CUDA `sqrt` does.
    #[test]
    fn gpu_matches_cpu_for_every_base_and_filter() {
        let Some(gpu) = gpu() else { return };
        let (mut runs, mut unequal, mut total, mut max_rel) = (0, 0, 0, 0.0f32);
        for (name, base) in bases(0.1) {
            for filter in filters() {
                for scope in [DecayScope::Selected, DecayScope::All] {
                    let mut spec = OptimizerSpec::new(base.clone(), filter.clone());
                    spec.decay_scope = scope;
                    let label = format!("{name} / {filter:?} / {scope:?}");
                    if let Some(a) = compare(&gpu, &spec, 0, &label) {
                        assert!(
                            a.off <= SIZES.len() * STEPS as usize,
                            "{label}: {} entries differ",
                            a.off
                        );
                        eprintln!(
                            "{label}: {} of {} entries bitwise equal, {} beyond rounding, largest relative difference {:e}",
                            a.total - a.unequal,
                            a.total,
                            a.off,
                            a.max_rel
                        );
                        runs += 1;
                        (unequal, total) = (unequal + a.unequal, total + a.total);
                        max_rel = max_rel.max(a.max_rel);
                    }
                }
            }
        }
        eprintln!(
            "{runs} base × filter × scope combinations match the CPU: {} of {total} entries bitwise equal, largest relative difference {max_rel:e}",
            total - unequal
        );
        assert!(runs >= 70, "only {runs} combinations ran");
    }

    /// Gradients drawn from 3 magnitudes: most scores tie exactly, and the
    /// tie rule (smaller index first) decides; ties are ties on both devices,
    /// so every value matches (bases with coupled weight decay left out: it
    /// adds the continuous θ to the gradient).
    #[test]
    fn gpu_matches_cpu_under_heavy_ties() {
        let Some(gpu) = gpu() else { return };
        // Coupled weight decay adds θ (continuous) to the gradient: left out.
        let no_l2 = [
            "adamw",
            "amsgrad",
            "nadamw",
            "rmsprop",
            "sgd-nesterov",
            "sgd-plain",
            "lion",
        ];
        for (name, base) in bases(1e-8).into_iter().filter(|(n, _)| no_l2.contains(n)) {
            for filter in [
                FilterSpec::Momentum { fraction: 0.1 },
                FilterSpec::Gradient { fraction: 0.25 },
            ] {
                let spec = OptimizerSpec::new(base.clone(), filter.clone());
                let label = format!("{name} / {filter:?} / ties");
                if let Some(a) = compare(&gpu, &spec, 3, &label) {
                    assert_eq!(a.off, 0, "{label}: {} entries differ", a.off);
                    eprintln!(
                        "{label}: {} of {} entries bitwise equal",
                        a.total - a.unequal,
                        a.total
                    );
                }
            }
        }
    }

    /// The single pass against the general way on the same GPU, for every
    /// base and filter, over 30 steps of a gradient that drifts smoothly
    /// (the forecast holds the threshold), jumps 40-fold at step 18 and
    /// back at step 22 (it misses, and the logged updates are undone):
    /// every value and every selection bit for bit the same, and both
    /// outcomes seen. Blocks of 2 000 003 entries (a candidate list of
    /// several tiles per lane), 70 001, 960 and 3. Run twice: with noisy
    /// continuous gradients, and with gradients on a grid of 1/4096 and no
    /// noise, so that about 240 keys of the large block tie at τ and the
    /// single pass ranks the tied candidates by index.
    #[test]
    fn single_pass_is_the_general_way_bit_for_bit() {
        let Some(gpu) = gpu() else { return };
        const BLOCKS: &[usize] = &[2_000_003, 70_001, 960, 3];
        const STEPS: usize = 30;
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut uniform =
            |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1.0..1.0)).collect() };
        let start: Vec<Vec<f32>> = BLOCKS.iter().map(|&n| uniform(n)).collect();
        let dirs: Vec<Vec<f32>> = BLOCKS.iter().map(|&n| uniform(n)).collect();
        let named: Vec<(String, Vec<f32>, bool)> = start
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("b{i}"), v.clone(), true))
            .collect();
        for tied in [false, true] {
            let grads: Vec<Vec<Vec<f32>>> = (0..STEPS)
                .map(|step| {
                    let jump = if (18..22).contains(&step) { 40.0 } else { 1.0 };
                    let scale = jump * (1.0 + 0.05 * (step as f32 * 0.7).sin());
                    dirs.iter()
                        .map(|d| {
                            d.iter()
                                .map(|&x| {
                                    if tied {
                                        (x * 4096.0).round() / 4096.0 * scale
                                    } else {
                                        x * scale + 0.01 * uniform(1)[0]
                                    }
                                })
                                .collect()
                        })
                        .collect()
                })
                .collect();
            let (mut runs, mut hits, mut misses) = (0, 0, 0);
            for (name, base) in bases(1e-8) {
                for filter in filters().into_iter().filter(|f| *f != FilterSpec::None) {
                    let label = format!("{name} / {filter:?} / tied {tied}");
                    let (gf, fraction) = GpuFilter::from_spec(&filter).unwrap();
                    let gb = GpuBase::from_spec(&base);
                    let make = || GpuOptimizer::new(gpu.clone(), gb, gf, fraction, false, &named);
                    let (Ok(mut single), Ok(mut general)) = (make(), make()) else {
                        continue;
                    };
                    general.set_single_pass(false);
                    for (step, g) in grads.iter().enumerate() {
                        let slices: Vec<&[f32]> = g.iter().map(|x| x.as_slice()).collect();
                        single.step(&slices).unwrap();
                        general.step(&slices).unwrap();
                        let (a, b) = (single.params().unwrap(), general.params().unwrap());
                        for (block, (x, y)) in a.iter().zip(&b).enumerate() {
                            let same =
                                x.1.iter()
                                    .zip(&y.1)
                                    .all(|(u, v)| u.to_bits() == v.to_bits());
                            assert!(same, "{label}: block {block} differs after step {step}");
                        }
                        if step % 7 == 6 || step == STEPS - 1 {
                            assert_eq!(
                                single.last_selection().unwrap(),
                                general.last_selection().unwrap(),
                                "{label}: selections differ at step {step}"
                            );
                        }
                    }
                    let (h, m) = single.forecast_counts().unwrap();
                    assert_eq!(general.forecast_counts().unwrap(), (0, 0));
                    eprintln!(
                        "{label}: {h} block-steps held by the forecast, {m} missed and redone"
                    );
                    (runs, hits, misses) = (runs + 1, hits + h, misses + m);
                }
            }
            eprintln!(
                "tied {tied}: {runs} combinations, single pass = general way; {hits} hits, {misses} misses"
            );
            assert!(runs >= 30, "only {runs} combinations ran");
            assert!(hits > 0 && misses > 0, "{hits} hits, {misses} misses");
        }
    }
}
