//! One optimizer step of AdamW and of MoFO-AdamW (α = 0.1) on GPT-2-small
//! shapes at width scale 0.25 (≈40M parameters, the shapes of
//! shared/bench/torch_optim_bench.py). Throughput is reported per parameter
//! (criterion's "elements"), so ns/parameter = time / elements.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mofo::optim::workload::{count, gpt2_shapes, random_stores};
use mofo::optim::{Adam, HugePages, Momentum, NoFilter, OptimConfig, Optimizer};

fn bench(c: &mut Criterion) {
    let shapes = gpt2_shapes(0.25);
    let n = count(&shapes);
    let (mut params, grads) = random_stores(&shapes, 0, HugePages::Use);
    let mut group = c.benchmark_group("optim_step");
    group.sample_size(10);
    group.throughput(Throughput::Elements(n as u64));
    let mut adam =
        Optimizer::new(NoFilter, Adam::adamw(1e-5), OptimConfig::default(), &params).unwrap();
    group.bench_function("adamw", |b| {
        b.iter(|| adam.step(&mut params, &grads).unwrap())
    });
    drop(adam);
    let mut mofo = Optimizer::new(
        Momentum::new(0.1),
        Adam::adamw(1e-5),
        OptimConfig::default(),
        &params,
    )
    .unwrap();
    group.bench_function("mofo_adamw_0.1", |b| {
        b.iter(|| mofo.step(&mut params, &grads).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
