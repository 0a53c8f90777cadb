//! The histograms of pass 0's counting path, kept for reuse.
//!
//! When no forecast locates a block's band, pass 0 counts the keys of the
//! block's chunks into histograms of [`BUCKETS`] buckets (64 KiB of `u32`),
//! one per split of the parallel fold, and sums them. A fold that made its
//! accumulators with `vec![0; BUCKETS]` allocated and zeroed 64 KiB per
//! split, per block and per step: megabytes per step on a model whose
//! forecasts miss. Here they come from a process-wide pool and go back to
//! it zeroed, so after the first steps the counting path allocates nothing;
//! the pool holds as many histograms as were ever in use at once.
//!
//! The counts are integers, so which histogram a chunk lands in, and the
//! order of the sums, leave the result unchanged.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use super::BUCKETS;

/// Zeroed histograms not in use, and how many were ever allocated.
struct Pool {
    free: Mutex<Vec<Vec<u32>>>,
    allocated: AtomicUsize,
}

impl Pool {
    const fn new() -> Self {
        Pool {
            free: Mutex::new(Vec::new()),
            allocated: AtomicUsize::new(0),
        }
    }

    fn take(&self) -> Vec<u32> {
        let reused = self
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        reused.unwrap_or_else(|| {
            self.allocated.fetch_add(1, Ordering::Relaxed);
            vec![0; BUCKETS]
        })
    }

    fn give_back(&self, mut hist: Vec<u32>) {
        debug_assert_eq!(hist.len(), BUCKETS);
        hist.fill(0);
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(hist);
    }
}

/// The process's pool.
static POOL: Pool = Pool::new();

/// A zeroed histogram of [`BUCKETS`] counts: one from the pool, else a new
/// one.
pub(super) fn take() -> Vec<u32> {
    POOL.take()
}

/// Returns a histogram of [`take`]'s to the pool, zeroed.
pub(super) fn give_back(hist: Vec<u32>) {
    POOL.give_back(hist);
}

/// Bytes of the histograms of pass 0 this process has allocated so far
/// (64 KiB each): the most that were ever in use at once, since every one
/// goes back to the pool. For diagnostics and tests: the pool grows with
/// the number of threads, not with the model.
pub fn pass0_histogram_bytes() -> usize {
    POOL.allocated.load(Ordering::Relaxed) * BUCKETS * std::mem::size_of::<u32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_come_back_zeroed_and_are_reused() {
        let pool = Pool::new();
        let (mut a, mut b) = (pool.take(), pool.take());
        assert!(a.len() == BUCKETS && b.len() == BUCKETS);
        a[7] = 3;
        b[BUCKETS - 1] = 1;
        let ptrs = [a.as_ptr(), b.as_ptr()];
        pool.give_back(a);
        pool.give_back(b);
        // The last given back comes out first; both zeroed, no new one.
        let (c, d) = (pool.take(), pool.take());
        assert_eq!([d.as_ptr(), c.as_ptr()], ptrs);
        assert!(c.iter().chain(&d).all(|&n| n == 0));
        assert_eq!(pool.allocated.load(Ordering::Relaxed), 2);
    }
}
