//! No allocation proportional to the model inside the optimizer step (the
//! memory goal of the speed issue): a counting global allocator, installed
//! in this test binary only, sums the bytes requested while every method of
//! the family (`mofo bench optim --methods all`'s list) takes warm steps,
//! with and without the norm clip, on a model and on one with four times
//! its entries in as many tensors.
//!
//! What a warm step requests is bookkeeping per tensor, block and chunk,
//! plus the growth of the buffers the optimizer reuses (the selection's
//! candidates and scratch) to the largest band seen so far; the state is
//! allocated when the optimizer is built. So the bytes stay a small share
//! of the model's and do not grow with it. The histograms pass 0's pool
//! adds (`mofo::optim::pass0_histogram_bytes`) are left out of the
//! count: the pool grows to the most histograms in use at once, which
//! follows the threads' timing. Before the histograms were pooled
//! (`fused/histograms.rs`), a MoFO step on the larger model requested
//! about 2.8 MB, 122% of the model's bytes.
//!
//! The allocator forwards every call to [`System`] unchanged; its `unsafe`
//! is the `GlobalAlloc` contract, which it passes through.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use mofo::cli::bench_methods::ALL_METHODS;
use mofo::optim::workload::{count, random_stores};
use mofo::optim::{pass0_histogram_bytes, FiniteGrads, HugePages, OptimConfig, OptimizerSpec};
use mofo::ParamStore;

/// Bytes requested from the allocator since the start (allocations and the
/// growth of reallocations; frees are not subtracted).
static REQUESTED: AtomicUsize = AtomicUsize::new(0);

/// [`System`], counting the bytes requested.
struct Counting;

// SAFETY: every method forwards its arguments unchanged to `System`, which
// upholds the `GlobalAlloc` contract; the counter is an atomic add.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        REQUESTED.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's layout, as `GlobalAlloc::alloc` requires.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        REQUESTED.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout (every
        // allocation of this program goes through `Counting`).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        REQUESTED.fetch_add(new_size.saturating_sub(layout.size()), Ordering::Relaxed);
        // SAFETY: as in `dealloc`, with the caller's new size.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Tensors of a small decoder's shapes, the leading dimension scaled by
/// `scale`: the same names, tensor count and block count at every scale.
fn shapes(scale: usize) -> Vec<(String, Vec<usize>)> {
    let mut v = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![64 * scale, 96],
    )];
    for l in 0..2 {
        for (n, rows, cols) in [
            ("self_attn.q_proj", 96, 96),
            ("self_attn.k_proj", 96, 96),
            ("mlp.up_proj", 256, 96),
            ("mlp.down_proj", 96, 256),
        ] {
            v.push((
                format!("model.layers.{l}.{n}.weight"),
                vec![rows * scale, cols],
            ));
        }
        v.push((
            format!("model.layers.{l}.input_layernorm.weight"),
            vec![96 * scale],
        ));
    }
    v
}

/// Steps before the count: the thread pool, the state's first moments and
/// the forecasts settle, and the reused buffers reach most of their size.
const WARM: u64 = 10;

/// What `steps` steps of `method` request, after [`WARM`] steps, on the
/// model of `scale`: the bytes, less the histograms the pool of pass 0
/// added (it grows to the most histograms in use at once, which depends
/// on the threads' timing, not on the model), and the bytes it added. The
/// gradient changes every step, and the steps alternate between `step`
/// and `step_finite`.
fn bytes_in_steps(method: &str, config: &OptimConfig, scale: usize, steps: u64) -> (usize, usize) {
    let sh = shapes(scale);
    let (mut params, _) = random_stores(&sh, 0, HugePages::Off);
    let grads: Vec<ParamStore<f32>> = (1..4)
        .map(|s| random_stores(&sh, s, HugePages::Off).1)
        .collect();
    let spec = OptimizerSpec::method(method, 1e-3, 0.1, 0).unwrap();
    let mut opt = spec.build_with_config(config.clone(), &params).unwrap();
    let mut step = |i: u64, opt: &mut Box<dyn mofo::optim::DynOptimizer<f32>>| {
        let g = &grads[i as usize % grads.len()];
        if i.is_multiple_of(2) {
            opt.step(&mut params, g).unwrap();
        } else {
            opt.step_finite(&mut params, FiniteGrads::check(g).unwrap())
                .unwrap();
        }
    };
    for i in 0..WARM {
        step(i, &mut opt);
    }
    let (before, pooled) = (REQUESTED.load(Ordering::Relaxed), pass0_histogram_bytes());
    for i in WARM..WARM + steps {
        step(i, &mut opt);
    }
    let added = pass0_histogram_bytes() - pooled;
    let bytes = REQUESTED.load(Ordering::Relaxed) - before;
    (bytes - added, added)
}

/// One test function, so that no other test allocates while it counts.
/// Its steps run on a pool of two threads whatever the machine: the
/// buffers kept per thread (the clip's mapped gradients, one chunk each)
/// and the histograms in use at once follow the threads, not the model,
/// and with more threads than cores a thread may first need its buffer
/// late in the run.
#[test]
fn steps_allocate_nothing_that_grows_with_the_model() {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap()
        .install(check_every_method);
}

fn check_every_method() {
    let steps = 20;
    let clipped = OptimConfig {
        clip: mofo::optim::Clip {
            max_norm: Some(1.0),
            max_value: None,
        },
        ..OptimConfig::default()
    };
    let model_bytes = |scale: usize| count(&shapes(scale)) * 4;
    let (small, large) = (model_bytes(1), model_bytes(4));
    assert!(large > 3 * small);
    for (what, config) in [("plain", OptimConfig::default()), ("clipped", clipped)] {
        for method in ALL_METHODS {
            let (a, added_a) = bytes_in_steps(method, &config, 1, steps);
            let (b, added_b) = bytes_in_steps(method, &config, 4, steps);
            println!(
                "{method} ({what}): {a} and {b} bytes in {steps} steps on {small} and {large} bytes of parameters (besides {added_a} and {added_b} bytes of histograms added to the pool)"
            );
            // Not growing with the model: on four times the entries, at
            // most twice the bytes (and some slack for the reused buffers'
            // growth to a larger band).
            assert!(
                b <= 2 * a + 16384,
                "{method} ({what}): {b} bytes in {steps} steps on the larger model, {a} on the smaller"
            );
            assert!(
                b * 100 < large * steps as usize,
                "{method} ({what}): {b} bytes in {steps} steps on a {large}-byte model"
            );
        }
    }
}
