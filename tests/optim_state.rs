//! Saving mid-run, loading into a fresh optimizer and continuing gives
//! bit-identical parameters to an uninterrupted run, for every base and
//! filter; corrupt, truncated and mismatched files are typed errors.

use std::path::PathBuf;

use mofo::optim::{
    Adam, Base, Filter, Gradient, Gv, HalfFineTuning, Lion, Momentum, Mv, NAdam, NoFilter,
    OptimConfig, OptimError, Optimizer, Pull, Random, RmsProp, Sgd,
};
use mofo::ParamStore;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SHAPES: &[(&str, &[usize])] = &[
    ("model.layers.0.q.weight", &[5, 8]),
    ("model.layers.0.k.weight", &[17]),
    ("model.norm.weight", &[6]),
];

fn store(seed: u64) -> ParamStore<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut s = ParamStore::new();
    for (n, sh) in SHAPES {
        let len: usize = sh.iter().product();
        s.insert_vec(
            *n,
            sh,
            (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
        )
        .unwrap();
    }
    s
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("mofo-state-{}-{name}", std::process::id()))
}

fn cfg() -> OptimConfig {
    OptimConfig {
        pull: Some(Pull::L2 { lambda: 0.01 }),
        track_selection: true,
        ..OptimConfig::default()
    }
}

fn roundtrip<F: Filter, B: Base>(f: F, b: B) {
    let name = format!("{}-{}", f.name(), b.name());
    let mut p1 = store(1);
    let mut full = Optimizer::new(f.clone(), b.clone(), cfg(), &p1).unwrap();
    let mut p2 = p1.clone();
    let mut first = Optimizer::new(f.clone(), b.clone(), cfg(), &p2).unwrap();
    for s in 0..3 {
        full.step(&mut p1, &store(10 + s)).unwrap();
        first.step(&mut p2, &store(10 + s)).unwrap();
    }
    let path = tmp(&name);
    first.save(&path).unwrap();
    drop(first);
    let mut resumed = Optimizer::new(f, b, cfg(), &store(1)).unwrap();
    resumed.load(&path).unwrap();
    for s in 3..7 {
        full.step(&mut p1, &store(10 + s)).unwrap();
        resumed.step(&mut p2, &store(10 + s)).unwrap();
    }
    assert_eq!(resumed.step_count(), 7);
    assert_eq!(p1, p2, "{name}: resumed run differs");
    std::fs::remove_file(&path).unwrap();
}

fn all_filters<B: Base>(b: B, momentum: bool, mv: bool, gv: bool) {
    roundtrip(NoFilter, b.clone());
    roundtrip(Gradient::new(0.3), b.clone());
    roundtrip(Random::new(0.3, 5), b.clone());
    roundtrip(HalfFineTuning::new(5), b.clone());
    if momentum {
        roundtrip(Momentum::new(0.3), b.clone());
    }
    if mv {
        roundtrip(Mv::new(0.3), b.clone());
    }
    if gv {
        roundtrip(Gv::new(0.3), b);
    }
}

#[test]
fn resume_is_bit_identical_for_every_base_and_filter() {
    all_filters(
        Adam {
            amsgrad: true,
            weight_decay: 0.1,
            ..Adam::new(1e-2)
        },
        true,
        true,
        true,
    );
    all_filters(Adam::adamw(1e-2), true, true, true);
    all_filters(NAdam::default(), true, true, true);
    all_filters(
        RmsProp {
            momentum: 0.9,
            centered: true,
            ..RmsProp::default()
        },
        true,
        false,
        true,
    );
    all_filters(
        Sgd {
            lr: 1e-2,
            momentum: 0.9,
            ..Sgd::default()
        },
        true,
        false,
        false,
    );
    all_filters(
        Lion {
            weight_decay: 0.1,
            ..Lion::default()
        },
        true,
        false,
        false,
    );
}

#[test]
fn bad_state_files_are_rejected() {
    let mut p = store(1);
    let mut opt = Optimizer::new(Momentum::new(0.3), Adam::adamw(1e-2), cfg(), &p).unwrap();
    opt.step(&mut p, &store(2)).unwrap();
    let path = tmp("good");
    opt.save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let mut fresh =
        Optimizer::new(Momentum::new(0.3), Adam::adamw(1e-2), cfg(), &store(1)).unwrap();

    let bad = tmp("bad");
    std::fs::write(&bad, &bytes[..bytes.len() - 9]).unwrap();
    assert!(matches!(fresh.load(&bad), Err(OptimError::CorruptState(_))));
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    std::fs::write(&bad, &flipped).unwrap();
    assert!(matches!(fresh.load(&bad), Err(OptimError::CorruptState(_))));
    let mut huge = bytes.clone();
    huge[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&bad, &huge).unwrap();
    assert!(matches!(fresh.load(&bad), Err(OptimError::CorruptState(_))));
    std::fs::write(&bad, b"not a state file at all, just text").unwrap();
    assert!(matches!(fresh.load(&bad), Err(OptimError::CorruptState(_))));
    assert!(matches!(
        fresh.load(&tmp("missing")),
        Err(OptimError::Io { .. })
    ));
    assert_eq!(fresh.step_count(), 0);

    let mut other_base =
        Optimizer::new(Momentum::new(0.3), Lion::default(), cfg(), &store(1)).unwrap();
    assert!(matches!(
        other_base.load(&path),
        Err(OptimError::StateMismatch(_))
    ));
    let mut other_layout = ParamStore::<f32>::new();
    other_layout.insert_vec("x", &[3], vec![0.0; 3]).unwrap();
    let mut o =
        Optimizer::new(Momentum::new(0.3), Adam::adamw(1e-2), cfg(), &other_layout).unwrap();
    assert!(matches!(o.load(&path), Err(OptimError::StateMismatch(_))));
    let mut f64opt = Optimizer::<_, _, f64>::new(
        Momentum::new(0.3),
        Adam::adamw(1e-2),
        cfg(),
        &store(1).cast(),
    )
    .unwrap();
    assert!(matches!(
        f64opt.load(&path),
        Err(OptimError::StateMismatch(_))
    ));
    fresh.load(&path).unwrap();
    assert_eq!(fresh.step_count(), 1);
    std::fs::remove_file(&path).unwrap();
    std::fs::remove_file(&bad).unwrap();
}
