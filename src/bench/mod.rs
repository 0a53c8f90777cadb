//! Benchmarks behind `mofo bench`: training throughput of the S/M/L Llama
//! configurations and the process's peak resident memory, the machine's
//! peak f32 FLOP/s and its streaming bandwidths, the optimizer's
//! 4-read/3-write pattern and a read-only pass (the optimizer-step
//! benchmark lives with the optimizer, `crate::optim::workload`).

pub mod bandwidth;
pub mod memory;
pub mod peak;
pub mod train;

use crate::io::fnv::{fnv1a64_extend, FNV1A64_OFFSET};
use crate::ParamStore;

/// The median of a set of timings (the upper middle one for an even count);
/// sorts `times` in place. Every benchmark here reports it.
///
/// # Panics
/// If `times` is empty (the callers always time at least one run).
pub fn median(times: &mut [f64]) -> f64 {
    times.sort_by(|a, b| a.total_cmp(b));
    times[times.len() / 2]
}

/// FNV-1a 64 of every value of `store`, tensor after tensor in the store's
/// order, each value's little-endian bytes: equal digests mean equal
/// values bit for bit (with overwhelming probability), so two runs of a
/// benchmark on different thread counts can be compared by one number.
pub fn values_digest(store: &ParamStore<f32>) -> u64 {
    store
        .iter()
        .flat_map(|t| t.as_slice())
        .fold(FNV1A64_OFFSET, |h, x| fnv1a64_extend(h, &x.to_le_bytes()))
}
