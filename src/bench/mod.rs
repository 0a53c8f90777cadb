//! Benchmarks behind `mofo bench`: training throughput of the S/M/L Llama
//! configurations, the machine's peak f32 FLOP/s and its streaming bandwidth (the optimizer-step
//! benchmark lives with the optimizer, `crate::optim::workload`).

pub mod bandwidth;
pub mod peak;
pub mod train;

/// The median of a set of timings (the upper middle one for an even count);
/// sorts `times` in place. Every benchmark here reports it.
///
/// # Panics
/// If `times` is empty (the callers always time at least one run).
pub fn median(times: &mut [f64]) -> f64 {
    times.sort_by(|a, b| a.total_cmp(b));
    times[times.len() / 2]
}
