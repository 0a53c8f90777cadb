//! GPU tests (feature `cuda`). Without a CUDA driver they print why they skip.
#![cfg(feature = "cuda")]

use std::sync::Arc;

use mofo::cuda::gpu::{driver_available, GpuBase, GpuContext, GpuFilter, GpuOptimizer};
use mofo::optim::selection_count;

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
    assert!(matches!(
        GpuContext::new(0),
        Err(mofo::cuda::gpu::GpuError::NoDriver)
    ));
}

#[test]
fn mofo_adam_selects_exactly_k_with_ties() {
    let Some(gpu) = gpu() else { return };
    let n = 10_000usize;
    let values: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
    let mut opt = GpuOptimizer::new(
        gpu,
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
    // Many equal magnitudes: the tie rule decides.
    let grads: Vec<f32> = (0..n)
        .map(|i| if i % 3 == 0 { 1.0 } else { -1.0 })
        .collect();
    opt.step(&[&grads]).unwrap();
    let mask = &opt.last_selection().unwrap()[0];
    let k = selection_count(0.1, n);
    assert_eq!(mask.iter().filter(|&&s| s == 1).count(), k);
    // Ties go to the smaller index: the first k entries are the selected ones.
    assert!(mask[..k].iter().all(|&s| s == 1));
    let after = &opt.params().unwrap()[0].1;
    for i in k..n {
        assert_eq!(after[i].to_bits(), values[i].to_bits(), "entry {i} moved");
    }
}
