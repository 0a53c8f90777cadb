//! The fused step under gradient clipping: each chunk's gradients mapped
//! into a per-thread scratch before its kernel runs.
//!
//! Clipping without a pull is a map of g alone (`GradMap`):
//!
//! ```text
//! g'_i = clamp(g_i, −c, c) · s        (c = ∞ without clipping by value,
//!                                      s = 1 without clipping by norm)
//! ```
//!
//! The fused step's kernels (pass 0, pass 1, the single pass, the redone
//! selection, the random filter's update) read g in many places, some of
//! them hand-written. Rather than thread the map through each, a chunk's
//! g' (at most `CHUNK` = 2¹⁵ entries, 128 KiB of f32) is written into a
//! buffer of the running thread and the kernel runs on a view whose
//! gradients are that buffer: the kernels are unchanged, g is still read
//! from memory once per pass, and g' is read back from L2. The map is the
//! general step's transform bit for bit on every finite gradient, so the
//! fused step stays the general step's (`tests/optim_clip.rs`). The
//! gradients are checked before (the clipping's norm reads them anyway),
//! so no kernel sees a mapped non-finite value.

use std::any::Any;
use std::cell::RefCell;

use super::View;
use crate::kernels::simd::{wide_simd_call, wide_simd_fn};
use crate::optim::transform::GradMap;
use crate::Scalar;

thread_local! {
    /// This thread's mapped gradients of f32 chunks.
    static SCRATCH_F32: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// This thread's mapped gradients of f64 chunks.
    static SCRATCH_F64: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's scratch buffer of `T` (grown as needed, kept
/// for the next chunk). `f` must not call back into this function.
fn with_scratch<T: Scalar, R>(f: impl FnOnce(&mut Vec<T>) -> R) -> R {
    fn typed<T: Scalar, U: Scalar, R>(
        cell: &RefCell<Vec<U>>,
        f: impl FnOnce(&mut Vec<T>) -> R,
    ) -> R {
        let mut buf = cell.borrow_mut();
        let any: &mut dyn Any = &mut *buf;
        f(any.downcast_mut::<Vec<T>>().expect("Scalar is f32 or f64"))
    }
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() {
        SCRATCH_F32.with(|cell| typed(cell, f))
    } else {
        SCRATCH_F64.with(|cell| typed(cell, f))
    }
}

wide_simd_fn! {
    /// `out[i] = map(g[i])`, one loop per kind of map (so that the loop
    /// vectorises).
    fn map_into / map_into_wide [T: Scalar] (map: GradMap<T>, g: &[T], out: &mut [T]) {
        match map {
            GradMap::Scale(s) => {
                for (o, &x) in out.iter_mut().zip(g) {
                    *o = x * s;
                }
            }
            GradMap::ClampScale(c, s) => {
                for (o, &x) in out.iter_mut().zip(g) {
                    *o = x.max(-c).min(c) * s;
                }
            }
        }
    }
}

/// Runs `f` on `v`, or, with a map, on a view of the same θ and state
/// whose gradients are `map(g)` (module docs).
pub(super) fn with_mapped<T: Scalar, R>(
    map: Option<GradMap<T>>,
    v: &mut View<'_, T>,
    f: impl FnOnce(&mut View<'_, T>) -> R,
) -> R {
    let Some(map) = map else {
        return f(v);
    };
    with_scratch(|buf: &mut Vec<T>| {
        buf.resize(v.g.len(), T::zero());
        wide_simd_call!(map_into / map_into_wide(map, v.g, buf));
        let [s0, s1, s2] = &mut v.s;
        let mut mapped = View {
            p: &mut *v.p,
            g: &buf[..],
            pre: v.pre,
            s: [&mut **s0, &mut **s1, &mut **s2],
            off: v.off,
        };
        f(&mut mapped)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mapped_view_holds_the_map_of_g_and_the_same_buffers() {
        let g: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) * 0.01).collect();
        let mut p = vec![1.0f32; 1000];
        let mut m = vec![2.0f32; 1000];
        let maps = [
            GradMap::Scale(0.25),
            GradMap::ClampScale(1.5, 1.0),
            GradMap::ClampScale(0.7, 0.3),
        ];
        for map in maps {
            let mut v = View {
                p: &mut p,
                g: &g,
                pre: &[],
                s: [&mut m, &mut [], &mut []],
                off: 7,
            };
            with_mapped(Some(map), &mut v, |mv| {
                assert_eq!(mv.off, 7);
                for (&x, &y) in g.iter().zip(mv.g) {
                    assert_eq!(y.to_bits(), map.apply(x).to_bits());
                }
                mv.p[3] = 5.0;
                mv.s[0][4] = 6.0;
            });
            // Nested use on another thread's scratch is not needed; the
            // identity runs `f` on the view itself.
            with_mapped(None, &mut v, |mv| assert_eq!(mv.g.as_ptr(), g.as_ptr()));
        }
        assert_eq!((p[3], m[4]), (5.0, 6.0));
        let gd: Vec<f64> = g.iter().map(|&x| x as f64).collect();
        let mut pd = vec![0.0f64; 1000];
        let mut vd = View {
            p: &mut pd,
            g: &gd,
            pre: &[],
            s: [&mut [], &mut [], &mut []],
            off: 0,
        };
        with_mapped(Some(GradMap::Scale(2.0)), &mut vd, |mv| {
            assert!(mv.g.iter().zip(&gd).all(|(&y, &x)| y == 2.0 * x));
        });
    }
}
