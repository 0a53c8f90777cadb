//! When a matrix product splits over the threads: tasks running side by
//! side (a batch's shards) keep their products whole while they fill the
//! threads, and split them again once some of them have finished.
//!
//! A split product packs its other operand once per chunk
//! ([`super::gemm::chunk_len`]), so while `r` tasks run side by side on a
//! pool of `p` threads, splitting buys nothing when `r ≥ p`:
//!
//! ```text
//! a product in a task of a SideBySide group splits  ⇔  unfinished < p
//! ```
//!
//! `unfinished` counts the group's tasks that have not returned yet,
//! started or not. The shards do the same work, but not always at the same
//! speed (another process, the host's other guests): on the 2-core Zen 4
//! of 2026-12-06, the two CPUs were idle 2.2% of M's training time, one
//! thread waiting while the other finished its shard alone (up to a third
//! of a step in the worst steps). Once a shard has returned, the other's remaining products split
//! and the idle thread takes its share (rayon's work stealing).
//!
//! The split never changes a result (a product's entries are computed by
//! the same serial kernel whichever chunk holds them, [`super::gemm`]), so
//! results stay the same whatever the timing.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

thread_local! {
    /// The unfinished count of the group whose task this thread is
    /// inside, if any ([`SideBySide::run`]).
    static GROUP: RefCell<Option<Arc<AtomicUsize>>> = const { RefCell::new(None) };
}

/// A group of tasks run side by side on the rayon pool, one
/// [`SideBySide::run`] each (see the module docs).
#[derive(Debug)]
pub struct SideBySide {
    unfinished: Arc<AtomicUsize>,
}

impl SideBySide {
    /// A group of `tasks` tasks, none finished: each is to call
    /// [`SideBySide::run`] once.
    pub fn new(tasks: usize) -> Self {
        Self {
            unfinished: Arc::new(AtomicUsize::new(tasks)),
        }
    }

    /// The group's tasks that have not returned yet.
    pub fn unfinished(&self) -> usize {
        self.unfinished.load(Ordering::Acquire)
    }

    /// Runs `f` as one of the group's tasks: the products it calls on this
    /// thread split only while fewer of the group's tasks are unfinished
    /// than the pool has threads ([`products_may_split`]). When `f`
    /// returns or panics the task is finished (a run beyond the group's
    /// count finishes none), and the thread's previous state is put back
    /// (groups nest, the inner one deciding).
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        /// Finishes the task and restores the thread's state.
        struct Leave<'a> {
            unfinished: &'a AtomicUsize,
            previous: Option<Arc<AtomicUsize>>,
        }
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                // Never below zero, whoever calls `run` too often.
                let _ = self
                    .unfinished
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| u.checked_sub(1));
                GROUP.with(|g| *g.borrow_mut() = self.previous.take());
            }
        }
        let previous = GROUP.with(|g| g.borrow_mut().replace(Arc::clone(&self.unfinished)));
        let _leave = Leave {
            unfinished: &self.unfinished,
            previous,
        };
        f()
    }
}

/// Whether a product called on this thread may split over the pool's
/// threads: outside any [`SideBySide`] task always, inside one only while
/// fewer of its group's tasks are unfinished than the pool has threads.
pub fn products_may_split() -> bool {
    GROUP.with(|g| match &*g.borrow() {
        None => true,
        Some(unfinished) => unfinished.load(Ordering::Acquire) < rayon::current_num_threads(),
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
            let group = SideBySide::new(2);
            // Two tasks on two threads: neither splits before the other
            // has finished, the one left splits once it has.
            let first_done = Barrier::new(2);
            let seen = rayon::join(
                || {
                    group.run(|| {
                        let both = products_may_split();
                        first_done.wait();
                        both
                    })
                },
                || {
                    group.run(|| {
                        let both = products_may_split();
                        first_done.wait();
                        // The other task returns; wait for its count.
                        while group.unfinished() > 1 {
                            std::hint::spin_loop();
                        }
                        (both, products_may_split())
                    })
                },
            );
            assert_eq!(seen, (false, (false, true)));
            assert_eq!(group.unfinished(), 0);
            assert!(products_may_split());
        });
    }

    #[test]
    fn a_task_not_yet_started_keeps_the_products_whole() {
        pool(2).install(|| {
            let group = SideBySide::new(2);
            // The second task has not started: the threads are still
            // spoken for.
            group.run(|| assert!(!products_may_split()));
            assert_eq!(group.unfinished(), 1);
            group.run(|| assert!(products_may_split(), "the last task splits"));
            assert_eq!(group.unfinished(), 0);
            // A run beyond the count finishes nothing.
            group.run(|| assert!(products_may_split()));
            assert_eq!(group.unfinished(), 0);
        });
    }

    #[test]
    fn fewer_tasks_than_threads_split_and_groups_nest() {
        pool(4).install(|| {
            let outer = SideBySide::new(1);
            outer.run(|| {
                assert!(products_may_split(), "1 task on 4 threads");
                let inner = SideBySide::new(4);
                inner.run(|| assert!(!products_may_split(), "4 tasks on 4 threads"));
                assert_eq!(inner.unfinished(), 3);
                assert!(products_may_split(), "the outer group decides again");
                assert_eq!(outer.unfinished(), 1);
            });
            assert_eq!(outer.unfinished(), 0);
        });
        pool(1).install(|| {
            let group = SideBySide::new(1);
            group.run(|| assert!(!products_may_split(), "1 task on 1 thread"));
        });
    }

    #[test]
    fn a_panicking_task_finishes_and_leaves_the_thread_as_before() {
        pool(1).install(|| {
            let group = SideBySide::new(1);
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                group.run(|| panic!("inside"))
            }));
            assert!(caught.is_err());
            assert_eq!(group.unfinished(), 0);
            assert!(products_may_split());
        });
    }
}
