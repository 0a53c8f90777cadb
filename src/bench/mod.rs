//! Benchmarks behind `mofo bench`: training throughput of the S/M/L Llama
//! configurations, the machine's peak f32 FLOP/s and its streaming bandwidth (the optimizer-step
//! benchmark lives with the optimizer, `crate::optim::workload`).

pub mod bandwidth;
pub mod peak;
pub mod train;
