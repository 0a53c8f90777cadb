//! Benchmarks behind `mofo bench`: training throughput of the S/M/L Llama
//! configurations and the machine's peak f32 FLOP/s (the optimizer-step
//! benchmark lives with the optimizer, `crate::optim::workload`).

pub mod peak;
pub mod train;
