//! New output buffers written chunk by chunk in parallel, without a serial
//! zero fill first.
//!
//! `vec![0; n]` zeroes the whole buffer on the calling thread, then the
//! kernel's parallel tasks overwrite it: every output is written to memory
//! twice, the first time by one thread while the others wait. A training
//! step of the S model allocates about 120 MB of such outputs (attention
//! probabilities and outputs, SwiGLU and their gradients); on the Intel
//! Xeon of 2026-12-01, building them as below made a training step of S
//! 13% faster and one of M 8% (docs/performance-log.md).
//!
//! [`par_chunks_fresh`] instead gives each parallel task its own chunk of
//! every output, zero-filled by that task just before it writes the chunk.
//! The chunk is then in cache, so the fill costs a pass over L1/L2 rather
//! than one over memory, and it runs on all threads. Every value is
//! initialised before the task sees it (no uninitialised memory is ever
//! read or exposed), and the result does not depend on the thread count:
//! each chunk is written by one task, whatever thread runs it.
//!
//! Kernels that write every entry of their outputs skip the fill:
//! [`par_chunks_uninit`] hands out the same chunks uninitialised (SwiGLU
//! and its backward, RMSNorm, RoPE, `x + s·y`: on the Zen 4 of 2026-12-06
//! a training step of M ran 1.7% faster without their fills; RMSNorm's
//! backward zeroes only its partial weight gradients, with [`zeroed`]), and
//! [`par_tasks_uninit`] lets each task write its entries wherever they lie
//! in the output's layout (attention: its output, and the probabilities
//! it keeps).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::Scalar;

/// Builds `N` vectors of `lens[j]` values in parallel tasks: task `i` gets
/// chunk `i` of every output (`chunks[j]` values starting at `i·chunks[j]`,
/// the last one shorter), zero-filled, and must compute it in `f(i, outs)`.
/// Every output must split into the same number of chunks. For kernels that
/// accumulate into their outputs; one that writes every entry saves the
/// fill with [`par_chunks_uninit`].
///
/// # Panics
/// When a chunk length is zero, or the outputs split into different numbers
/// of chunks.
pub fn par_chunks_fresh<T: Scalar, const N: usize>(
    lens: [usize; N],
    chunks: [usize; N],
    f: impl Fn(usize, [&mut [T]; N]) + Sync,
) -> [Vec<T>; N] {
    // SAFETY: every entry of every chunk is written (with zero) by
    // `zeroed` before `f` sees it.
    unsafe { par_chunks_uninit(lens, chunks, |i, outs| f(i, outs.map(zeroed))) }
}

/// [`par_chunks_fresh`] without the zero fill: task `i` gets chunk `i` of
/// every output uninitialised and must write all of it. In debug builds
/// (the tests) every chunk is first filled with a poison value (NaN for
/// floats), so a kernel that skips an entry shows up in its comparison
/// with the reference.
///
/// # Safety
/// `f(i, outs)` must write every entry of every `outs[j]`, and read an
/// entry only after writing it. (A panic in `f` frees the buffers without
/// reading them.)
///
/// # Panics
/// When a chunk length is zero, or the outputs split into different numbers
/// of chunks.
pub unsafe fn par_chunks_uninit<T: Scalar, const N: usize>(
    lens: [usize; N],
    chunks: [usize; N],
    f: impl Fn(usize, [&mut [MaybeUninit<T>]; N]) + Sync,
) -> [Vec<T>; N] {
    assert!(
        chunks.iter().all(|&c| c > 0),
        "par_chunks_uninit: zero chunk"
    );
    let tasks = if N == 0 {
        0
    } else {
        lens[0].div_ceil(chunks[0])
    };
    assert!(
        lens.iter()
            .zip(&chunks)
            .all(|(&n, &c)| n.div_ceil(c) == tasks),
        "par_chunks_uninit: outputs {lens:?} in chunks {chunks:?} split differently"
    );
    let mut outs: [Vec<T>; N] = std::array::from_fn(|j| Vec::with_capacity(lens[j]));
    let ptrs: [OutPtr<T>; N] = std::array::from_fn(|j| OutPtr(outs[j].as_mut_ptr()));
    (0..tasks).into_par_iter().for_each(|i| {
        let views: [&mut [MaybeUninit<T>]; N] = std::array::from_fn(|j| {
            let start = i * chunks[j];
            let len = chunks[j].min(lens[j] - start);
            // SAFETY: `start + len ≤ lens[j]`, the capacity of buffer j, so
            // the range is inside its allocation; task i is the only one
            // touching this range (the tasks' ranges are disjoint), and a
            // slice of `MaybeUninit` may cover uninitialised values.
            let chunk = unsafe {
                std::slice::from_raw_parts_mut(ptrs[j].0.add(start).cast::<MaybeUninit<T>>(), len)
            };
            if cfg!(debug_assertions) {
                chunk.fill(MaybeUninit::new(T::nan()));
            }
            chunk
        });
        f(i, views);
    });
    for (out, &n) in outs.iter_mut().zip(&lens) {
        // SAFETY: the tasks 0..tasks covered [0, n) of this buffer (the
        // chunks are consecutive and `tasks = ⌈n / chunk⌉`), and by the
        // caller's contract each wrote all of its chunk; a panic in `f`
        // would have unwound before this point.
        unsafe { out.set_len(n) };
    }
    outs
}

/// Writes zeros over `chunk` and returns it initialised: for the parts of
/// a [`par_chunks_uninit`] task's chunks that it accumulates into.
pub fn zeroed<T: Scalar>(chunk: &mut [MaybeUninit<T>]) -> &mut [T] {
    chunk.fill(MaybeUninit::new(T::zero()));
    // SAFETY: every entry was just written; `MaybeUninit<T>` has the
    // layout of `T`.
    unsafe { &mut *(std::ptr::from_mut(chunk) as *mut [T]) }
}

/// The start of a new output's buffer, shared by the parallel tasks of
/// [`par_chunks_uninit`] and [`par_tasks_uninit`]: each task writes, or
/// makes views of, its own entries only.
#[derive(Clone, Copy)]
pub struct OutPtr<T>(*mut T);

// SAFETY: the tasks of both builders touch disjoint entries of the buffer
// (`par_chunks_uninit`'s chunks; `par_tasks_uninit`'s caller's contract),
// so sharing the pointer lets no two threads touch one element; `T: Send`
// lets the values themselves cross threads.
unsafe impl<T: Send> Send for OutPtr<T> {}
// SAFETY: as above (a shared `OutPtr` only copies the pointer).
unsafe impl<T: Send> Sync for OutPtr<T> {}

impl<T> OutPtr<T> {
    /// The start of a buffer (for kernels and tests that lay out their
    /// own; using it is as unsafe as any raw pointer).
    pub(crate) fn new(start: *mut T) -> Self {
        OutPtr(start)
    }

    /// The start of the buffer.
    pub fn as_mut_ptr(self) -> *mut T {
        self.0
    }

    /// The `rows × cols` matrix of the buffer whose entry `(i, j)` is at
    /// `offset + i·row_stride + j`.
    ///
    /// # Safety
    /// Every such entry must lie inside the buffer; while the view lives no
    /// other view may cover any of its entries; entries must be written
    /// before they are read (the buffer starts uninitialised).
    pub unsafe fn rows<'a>(
        self,
        offset: usize,
        rows: usize,
        cols: usize,
        row_stride: usize,
    ) -> ndarray::ArrayViewMut2<'a, T> {
        use ndarray::ShapeBuilder;
        // SAFETY: in bounds and exclusive by the caller's contract.
        unsafe {
            ndarray::ArrayViewMut2::from_shape_ptr(
                (rows, cols).strides((row_stride, 1)),
                self.0.add(offset),
            )
        }
    }
}

impl<T: Scalar> OutPtr<T> {
    /// Writes zeros over the `len` entries from `offset` (a `memset`: for a
    /// block that a kernel then writes piecewise, filling it first in one
    /// run is faster than letting each first store fetch its line).
    ///
    /// # Safety
    /// The entries must lie inside the buffer and no view may cover them
    /// while this runs.
    pub unsafe fn fill_zero(self, offset: usize, len: usize) {
        // SAFETY: in bounds and exclusive by the caller's contract; the
        // entries are written, not read.
        unsafe {
            let p = self.0.add(offset);
            for x in 0..len {
                p.add(x).write(T::zero());
            }
        }
    }
}

/// Builds `N` vectors of `lens[j]` values in `tasks` parallel tasks, with
/// no zero fill at all: task `i` runs `f(i, ptrs)` with the start of every
/// buffer and writes its own entries in place, at any strides (an output
/// laid out `[B, T, H, D]` written one `(b, h)` slice per task). Where a
/// kernel writes every entry of its outputs (products with `β = 0`, a
/// softmax that writes its dead entries), this saves the fill of
/// [`par_chunks_fresh`] and the copy of a second layout.
///
/// # Safety
/// Over all tasks `f` must write every entry `[0, lens[j])` of every
/// buffer, each entry from one task only, and read an entry only after
/// writing it; every view it makes must satisfy [`OutPtr::rows`]. (A panic
/// in `f` frees the buffers without reading them.)
pub unsafe fn par_tasks_uninit<T: Scalar, const N: usize>(
    lens: [usize; N],
    tasks: usize,
    f: impl Fn(usize, [OutPtr<T>; N]) + Sync,
) -> [Vec<T>; N] {
    let mut outs: [Vec<T>; N] = std::array::from_fn(|j| Vec::with_capacity(lens[j]));
    let ptrs: [OutPtr<T>; N] = std::array::from_fn(|j| OutPtr(outs[j].as_mut_ptr()));
    (0..tasks).into_par_iter().for_each(|i| f(i, ptrs));
    for (out, &n) in outs.iter_mut().zip(&lens) {
        // SAFETY: by the caller's contract the tasks wrote every entry of
        // [0, n), inside the capacity allocated above.
        unsafe { out.set_len(n) };
    }
    outs
}

/// Chunk `i` of an input read beside [`par_chunks_fresh`]'s chunk `i` of
/// an output: `x[i·len .. (i+1)·len]`, the last one shorter.
#[inline(always)]
pub fn input_chunk<T>(x: &[T], i: usize, len: usize) -> &[T] {
    &x[i * len..((i + 1) * len).min(x.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_output_once() {
        for (n, c) in [(0usize, 4usize), (1, 4), (4, 4), (10, 4), (1000, 64)] {
            let [a, b] = par_chunks_fresh([n, 2 * n], [c, 2 * c], |i, [x, y]: [&mut [f64]; 2]| {
                assert!(x.iter().chain(y.iter()).all(|&v| v == 0.0));
                for (k, v) in x.iter_mut().enumerate() {
                    *v = (i * c + k) as f64;
                }
                for (k, v) in y.iter_mut().enumerate() {
                    *v = -((2 * i * c + k) as f64);
                }
            });
            assert_eq!(a, (0..n).map(|k| k as f64).collect::<Vec<_>>());
            assert_eq!(b, (0..2 * n).map(|k| -(k as f64)).collect::<Vec<_>>());
        }
    }

    #[test]
    fn uninit_chunks_cover_every_output_once() {
        for (n, c) in [(0usize, 4usize), (1, 4), (4, 4), (10, 4), (1000, 64)] {
            // SAFETY: both loops write every entry of their chunk.
            let [a, b] = unsafe {
                par_chunks_uninit([n, 2 * n], [c, 2 * c], |i, [x, y]| {
                    for (k, v) in x.iter_mut().enumerate() {
                        v.write((i * c + k) as f64);
                    }
                    for (k, v) in y.iter_mut().enumerate() {
                        v.write(-((2 * i * c + k) as f64));
                    }
                })
            };
            assert_eq!(a, (0..n).map(|k| k as f64).collect::<Vec<_>>());
            assert_eq!(b, (0..2 * n).map(|k| -(k as f64)).collect::<Vec<_>>());
        }
    }

    /// Debug builds hand out NaN, so that a kernel's test against its
    /// reference catches an entry the kernel does not write.
    #[test]
    #[cfg(debug_assertions)]
    fn uninit_chunks_arrive_poisoned_in_debug_builds() {
        // SAFETY: every entry is written; it is read first only in debug
        // builds, where the poison has initialised it.
        let [a] = unsafe {
            par_chunks_uninit([20], [8], |_, [x]: [&mut [MaybeUninit<f32>]; 1]| {
                for v in x.iter_mut() {
                    assert!(v.assume_init().is_nan());
                    v.write(1.0);
                }
            })
        };
        assert_eq!(a, vec![1.0; 20]);
    }

    #[test]
    fn input_chunks_match_the_output_chunks() {
        let x: Vec<u32> = (0..10).collect();
        assert_eq!(input_chunk(&x, 0, 4), &[0, 1, 2, 3]);
        assert_eq!(input_chunk(&x, 2, 4), &[8, 9]);
    }

    #[test]
    fn untouched_values_stay_zero() {
        let [a] = par_chunks_fresh([37], [8], |_, [x]: [&mut [f32]; 1]| x[0] = 1.0);
        let want: Vec<f32> = (0..37)
            .map(|k| if k % 8 == 0 { 1.0 } else { 0.0 })
            .collect();
        assert_eq!(a, want);
    }

    #[test]
    fn uninit_tasks_write_strided_slices() {
        // Task (b, h) writes the [T, D] slice (b, ·, h, ·) of a [B, T, H, D]
        // buffer, every entry once.
        let (b, t, h, d) = (2, 3, 4, 5);
        // SAFETY: the (b, h) slices are disjoint, in bounds, cover the
        // buffer and are only written.
        let [x] = unsafe {
            par_tasks_uninit([b * t * h * d], b * h, |bh, [out]: [OutPtr<f64>; 1]| {
                let (bi, hi) = (bh / h, bh % h);
                let mut v = out.rows((bi * t * h + hi) * d, t, d, h * d);
                for ((ti, di), e) in v.indexed_iter_mut() {
                    *e = (((bi * t + ti) * h + hi) * d + di) as f64;
                }
            })
        };
        assert_eq!(x, (0..b * t * h * d).map(|k| k as f64).collect::<Vec<_>>());
    }

    #[test]
    #[should_panic(expected = "split differently")]
    fn mismatched_splits_are_refused() {
        let _ = par_chunks_fresh([10, 10], [5, 2], |_, _: [&mut [f32]; 2]| {});
    }
}
