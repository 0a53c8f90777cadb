//! File helpers shared by every writer in the crate, and the reader of
//! `/proc`'s sizes.

pub mod atomic;
pub mod fnv;
pub mod json_nan;
pub mod proc_kb;

pub use atomic::write_atomic;
