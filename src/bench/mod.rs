//! Benchmarks behind `mofo bench`: training throughput of the S/M/L Llama
//! configurations, the machine's peak f32 FLOP/s and its streaming bandwidth (the optimizer-step
//! benchmark lives with the optimizer, `crate::optim::workload`).

pub mod bandwidth;
pub mod peak;
pub mod train;

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
    use crate::experiments::forgetting::{fnv1a64_extend, FNV1A64_OFFSET};
    let mut bytes = Vec::with_capacity(4 * 4096);
    store.iter().fold(FNV1A64_OFFSET, |h, t| {
        t.as_slice().chunks(4096).fold(h, |h, values| {
            bytes.clear();
            bytes.extend(values.iter().flat_map(|x| x.to_le_bytes()));
            fnv1a64_extend(h, &bytes)
        })
    })
}
