//! When a matrix product splits over the threads: tasks running side by
//! side (a batch's shards) keep their products whole while they fill the
//! threads, and split them again once some of them have finished.
//!
//! A split product packs its other operand once per chunk
//! ([`super::gemm::chunk_len`]), so while `r` tasks run side by side on a
//! pool of `p` threads, splitting buys nothing when `r ≥ p`:
//!
//! ```text
//! a product in a task of a SideBySide group splits  ⇔  running < p
//! ```
//!
//! `running` counts the group's tasks that have started and not yet
//! returned. The shards do the same work, but not always at the same
//! speed (another process, the host's other guests): on the 2-core Zen 4
//! of 2026-12-06, one thread sat idle about 3% of M's training time while
//! the other finished its shard alone, a tenth of a step in the worst
//! steps. Once a shard has returned, the other's remaining products split
//! and the idle thread takes its share (rayon's work stealing).
//!
//! The split never changes a result (a product's entries are computed by
//! the same serial kernel whichever chunk holds them, [`super::gemm`]), so
//! results stay the same whatever the timing.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

thread_local! {
    /// The running count of the group whose task this thread is inside,
    /// if any ([`SideBySide::run`]).
    static GROUP: RefCell<Option<Arc<AtomicUsize>>> = const { RefCell::new(None) };
}

/// A group of tasks run side by side on the rayon pool, one
/// [`SideBySide::run`] each (see the module docs).
#[derive(Debug, Default)]
pub struct SideBySide {
    running: Arc<AtomicUsize>,
}

impl SideBySide {
    /// A group with no task running yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The group's tasks that have started and not yet returned.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// Runs `f` as one of the group's tasks: the products it calls on this
    /// thread split only while fewer of the group's tasks run than the pool
    /// has threads ([`products_may_split`]). The task counts as running
    /// until `f` returns or panics; the thread's previous state is put
    /// back then (groups nest, the inner one deciding).
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        /// Ends the task: one fewer running, the thread's state restored.
        struct Leave {
            running: Arc<AtomicUsize>,
            previous: Option<Arc<AtomicUsize>>,
        }
        impl Drop for Leave {
            fn drop(&mut self) {
                self.running.fetch_sub(1, Ordering::AcqRel);
                GROUP.with(|g| *g.borrow_mut() = self.previous.take());
            }
        }
        self.running.fetch_add(1, Ordering::AcqRel);
        let previous = GROUP.with(|g| g.borrow_mut().replace(Arc::clone(&self.running)));
        let _leave = Leave {
            running: Arc::clone(&self.running),
            previous,
        };
        f()
    }
}

/// Whether a product called on this thread may split over the pool's
/// threads: outside any [`SideBySide`] task always, inside one only while
/// fewer of its group's tasks run than the pool has threads.
pub fn products_may_split() -> bool {
    GROUP.with(|g| match &*g.borrow() {
        None => true,
        Some(running) => running.load(Ordering::Acquire) < rayon::current_num_threads(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    #[test]
    fn products_split_outside_a_group_and_after_the_others_finish() {
        pool(2).install(|| {
            assert!(products_may_split());
            let group = SideBySide::new();
            // Two tasks on two threads: neither splits while both run; the
            // one left splits once the other has returned.
            let started = Barrier::new(2);
            let first_done = Barrier::new(2);
            let seen = rayon::join(
                || {
                    group.run(|| {
                        started.wait();
                        let both = products_may_split();
                        first_done.wait();
                        both
                    })
                },
                || {
                    group.run(|| {
                        started.wait();
                        let both = products_may_split();
                        first_done.wait();
                        // The other task returns; wait for its count.
                        while group.running() > 1 {
                            std::hint::spin_loop();
                        }
                        (both, products_may_split())
                    })
                },
            );
            assert_eq!(seen, (false, (false, true)));
            assert_eq!(group.running(), 0);
            assert!(products_may_split());
        });
    }

    #[test]
    fn fewer_tasks_than_threads_split_and_groups_nest() {
        pool(4).install(|| {
            let outer = SideBySide::new();
            outer.run(|| {
                assert!(products_may_split(), "1 task on 4 threads");
                let inner = SideBySide::new();
                inner.run(|| assert!(products_may_split()));
                assert_eq!(inner.running(), 0);
                assert_eq!(outer.running(), 1);
            });
        });
        pool(1).install(|| {
            let group = SideBySide::new();
            group.run(|| assert!(!products_may_split(), "1 task on 1 thread"));
        });
    }

    #[test]
    fn a_panicking_task_leaves_the_group_and_the_thread_as_before() {
        pool(1).install(|| {
            let group = SideBySide::new();
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                group.run(|| panic!("inside"))
            }));
            assert!(caught.is_err());
            assert_eq!(group.running(), 0);
            assert!(products_may_split());
        });
    }
}
