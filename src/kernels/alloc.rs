//! Allocator tuning for the tape's large, short-lived buffers.
//!
//! One training step allocates and frees tens of megabytes of activations
//! and gradients. With glibc's defaults, buffers above the (adaptive) mmap
//! threshold are mapped and unmapped on every step, and the top of the heap
//! is trimmed back to the OS, so each step pays page faults and the kernel's
//! page zeroing again (measured: ~40% of a Llama block's forward + backward
//! at hidden 256, sequence 256, batch 8). [`tune_allocator`] raises glibc's
//! mmap threshold to its maximum (32 MiB), keeps freed memory (trim threshold
//! 1 GiB) and grows the heap in 64 MiB steps, so buffers are reused from the
//! heap. It runs once per process (the tape calls it on creation); set
//! `MOFO_MALLOC_DEFAULTS=1` to keep the allocator's defaults. On targets other
//! than Linux with glibc it does nothing.

use std::sync::Once;

static TUNE: Once = Once::new();

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply() {
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_TOP_PAD: i32 = -2;
    const M_MMAP_THRESHOLD: i32 = -3;
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    // SAFETY: `mallopt` is glibc's documented, thread-safe tuning call; the
    // parameters are valid option codes with in-range values (the mmap
    // threshold at glibc's 32 MiB maximum). It only changes allocation
    // policy, never invalidates existing allocations, and its failure (a 0
    // return) leaves the defaults in place.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
        mallopt(M_TRIM_THRESHOLD, 1 << 30);
        mallopt(M_TOP_PAD, 64 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() {}

/// Tunes the allocator once per process (see the module docs).
pub fn tune_allocator() {
    TUNE.call_once(|| {
        if std::env::var_os("MOFO_MALLOC_DEFAULTS").is_none() {
            apply();
        }
    });
}
