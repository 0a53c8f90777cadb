//! File helpers shared by every writer in the crate.

pub mod atomic;
pub mod fnv;

pub use atomic::write_atomic;
