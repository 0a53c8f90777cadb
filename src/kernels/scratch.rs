//! Per-thread scratch buffers, reused from one call to the next.
//!
//! A kernel that works on a block too large for registers but small enough
//! for the core's L2 (attention's `T×T` scores of one head: 256 KiB at
//! `T = 256`) used to allocate it per task. A fresh allocation is cold: its
//! first stores fetch their lines from memory (or, through `calloc`, pay a
//! zero fill first), and its pages leave the cache when freed.
//! [`with_scratch`] hands the task a buffer kept by its thread instead, which
//! is still in that core's cache from the previous task.
//!
//! The buffer's contents are left over from the previous use (initialised
//! values, never uninitialised memory): a kernel must write every entry it
//! reads. Debug builds (the tests) fill it with NaN before each use, so a
//! kernel that reads an entry it did not write shows up in its comparison
//! with the reference, as with [`super::fresh::par_chunks_uninit`].

use std::any::Any;
use std::cell::RefCell;

use crate::Scalar;

/// Buffers above this many bytes are freed after use instead of kept (a
/// thread should not hold a long sequence's `T×T` block for ever).
const KEEP_MAX_BYTES: usize = 64 << 20;

thread_local! {
    /// Free buffers of this thread, one `Vec<T>` per element type used.
    static FREE: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on a buffer of `len` values of this thread's own, reused across
/// calls (see the module docs: its values are left over, so `f` must write
/// what it reads). A call inside `f` gets a second buffer.
pub fn with_scratch<T: Scalar, R>(len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
    let mut buf: Vec<T> = FREE
        .with(|free| {
            let mut free = free.borrow_mut();
            let at = free.iter().position(|b| b.is::<Vec<T>>())?;
            free.swap_remove(at).downcast::<Vec<T>>().ok().map(|b| *b)
        })
        .unwrap_or_default();
    if buf.len() < len {
        buf.resize(len, T::zero());
    }
    let out = &mut buf[..len];
    if cfg!(debug_assertions) {
        out.fill(T::nan());
    }
    let r = f(out);
    if std::mem::size_of_val(buf.as_slice()) <= KEEP_MAX_BYTES {
        FREE.with(|free| free.borrow_mut().push(Box::new(buf)));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_gets_its_buffer_back_and_nested_calls_get_another() {
        let first = with_scratch::<f32, _>(1000, |b| {
            b.fill(1.0);
            b.as_ptr() as usize
        });
        let again = with_scratch::<f32, _>(500, |b| {
            assert_eq!(b.len(), 500);
            let inner = with_scratch::<f32, _>(10, |c| {
                assert_eq!(c.len(), 10);
                c.as_ptr() as usize
            });
            assert_ne!(inner, b.as_ptr() as usize);
            b.as_ptr() as usize
        });
        assert_eq!(first, again);
        // Another element type has its own buffer.
        with_scratch::<f64, _>(3, |b| {
            assert_eq!(b.len(), 3);
            b.fill(2.0);
        });
    }

    #[test]
    fn debug_builds_poison_the_buffer() {
        with_scratch::<f64, _>(8, |b| b.fill(0.0));
        with_scratch::<f64, _>(8, |b| {
            if cfg!(debug_assertions) {
                assert!(b.iter().all(|x| x.is_nan()));
            }
        });
    }

    #[test]
    fn a_panic_inside_loses_only_that_buffer() {
        let r = std::panic::catch_unwind(|| with_scratch::<f32, _>(4, |_| panic!("inside")));
        assert!(r.is_err());
        assert_eq!(with_scratch::<f32, _>(4, |b| b.len()), 4);
    }
}
