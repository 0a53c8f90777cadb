//! Rotary position embedding in Hugging Face's rotate-half layout.
//!
//! For a head vector `x` of width `d` (even) at position `t`, with
//! `h = d/2`, `f_i = θ^(−2i/d)` and angle `a_i = t·f_i` (i < h):
//!
//! ```text
//! y_i     = x_i·cos a_i − x_{i+h}·sin a_i
//! y_{i+h} = x_{i+h}·cos a_i + x_i·sin a_i
//! ```
//!
//! The backward applies the inverse (transposed) rotation, angle `−a_i`.
//! Data layout: row-major `[batch, seq, heads, d]`. Parallel tasks take
//! whole rows (positions), about 2^14 entries each, and run on the widest
//! vector unit of the CPU (the same bits on any: no sums, no FMAs).

use std::mem::MaybeUninit;

use super::fresh::{input_chunk, par_chunks_uninit};
use super::simd::{wide_simd_call, wide_simd_fn};

use crate::Scalar;

/// Cosine and sine tables, `[seq, d/2]` each, row-major.
#[derive(Clone, Debug)]
pub struct RopeTable<T> {
    /// `cos(t·f_i)`.
    pub cos: Vec<T>,
    /// `sin(t·f_i)`.
    pub sin: Vec<T>,
    /// Head width `d`.
    pub head_dim: usize,
    /// Number of positions.
    pub seq: usize,
    /// The base θ of the frequencies.
    pub theta: f64,
}

impl<T: Scalar> RopeTable<T> {
    /// Tables for positions `0..seq`. Like Hugging Face, the inverse
    /// frequencies and angles are computed in f32 and the cos/sin in f32
    /// before conversion to `T` when `T` is f32; for f64 everything is f64.
    pub fn new(seq: usize, head_dim: usize, theta: f64) -> Self {
        assert!(
            head_dim.is_multiple_of(2),
            "rope: head_dim {head_dim} must be even"
        );
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(seq * half);
        let mut sin = Vec::with_capacity(seq * half);
        let single = T::NAME == "f32";
        for t in 0..seq {
            for i in 0..half {
                if single {
                    let inv = 1.0f32 / (theta as f32).powf((2 * i) as f32 / head_dim as f32);
                    let a = t as f32 * inv;
                    cos.push(T::of_f32(a.cos()));
                    sin.push(T::of_f32(a.sin()));
                } else {
                    let inv = 1.0 / theta.powf((2 * i) as f64 / head_dim as f64);
                    let a = t as f64 * inv;
                    cos.push(T::of(a.cos()));
                    sin.push(T::of(a.sin()));
                }
            }
        }
        Self {
            cos,
            sin,
            head_dim,
            seq,
            theta,
        }
    }
}

/// Entries per parallel task (whole rows).
const ROPE_CHUNK: usize = 1 << 14;

wide_simd_fn! {
    /// Whole rows of [`rope`] (`row` entries each: heads of `d` entries),
    /// the first at position `first` of the table; every entry of `y` is
    /// written when `x` has as many entries and `d` is even.
    fn rope_rows / rope_rows_wide [T: Scalar] (
        y: &mut [MaybeUninit<T>],
        x: &[T],
        table: &RopeTable<T>,
        row: usize,
        first: usize,
        inverse: bool,
    ) {
        let d = table.head_dim;
        let half = d / 2;
        for (k, (yr, xr)) in y.chunks_exact_mut(row).zip(x.chunks_exact(row)).enumerate() {
            let t = (first + k) % table.seq;
            let c = &table.cos[t * half..(t + 1) * half];
            let s = &table.sin[t * half..(t + 1) * half];
            for (yh, xh) in yr.chunks_exact_mut(d).zip(xr.chunks_exact(d)) {
                let (y1, y2) = yh.split_at_mut(half);
                let (x1, x2) = xh.split_at(half);
                for (((((a, b), &u), &v), &cv), &sv) in y1
                    .iter_mut()
                    .zip(y2.iter_mut())
                    .zip(x1)
                    .zip(x2)
                    .zip(c)
                    .zip(s)
                {
                    let sv = if inverse { -sv } else { sv };
                    a.write(u * cv - v * sv);
                    b.write(v * cv + u * sv);
                }
            }
        }
    }
}

/// Rotates `x` (`[batch, seq, heads, d]`) into `y`; `inverse` rotates by the
/// opposite angle (the backward).
pub fn rope<T: Scalar>(x: &[T], table: &RopeTable<T>, heads: usize, inverse: bool) -> Vec<T> {
    let d = table.head_dim;
    let row = heads * d;
    assert!(d.is_multiple_of(2), "rope: head_dim {d} must be even");
    assert!(
        x.len().is_multiple_of(row * table.seq),
        "rope: {} entries do not fit [*, {}, {heads}, {d}]",
        x.len(),
        table.seq
    );
    // Whole rows per task, about ROPE_CHUNK entries.
    let rows = (ROPE_CHUNK / row).max(1);
    // SAFETY: x has as many entries as y, a multiple of the row, so chunk
    // i of x holds the same whole rows as y's; d is even, so each head's
    // two halves of y are d/2 long like x's and the angles' slices (exactly
    // d/2, or the slicing panics), and `rope_rows` writes every entry of
    // every row.
    let [y] = unsafe {
        par_chunks_uninit([x.len()], [rows * row], |i, [yc]| {
            let xc = input_chunk(x, i, rows * row);
            wide_simd_call!(rope_rows / rope_rows_wide(yc, xc, table, row, i * rows, inverse));
        })
    };
    y
}

/// Plain indexed forward rotation (reference).
pub fn rope_reference<T: Scalar>(
    x: &[T],
    seq: usize,
    heads: usize,
    d: usize,
    theta: f64,
) -> Vec<T> {
    let half = d / 2;
    let mut y = vec![T::zero(); x.len()];
    for bt in 0..x.len() / (heads * d) {
        let t = (bt % seq) as f64;
        for hd in 0..heads {
            let base = bt * heads * d + hd * d;
            for i in 0..half {
                let a = t / theta.powf(2.0 * i as f64 / d as f64);
                let (c, s) = (T::of(a.cos()), T::of(a.sin()));
                y[base + i] = x[base + i] * c - x[base + i + half] * s;
                y[base + i + half] = x[base + i + half] * c + x[base + i] * s;
            }
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_reference_and_inverts() {
        check_against_reference(2, 5, 3, 8);
    }

    /// Several tasks of whole rows, the last one shorter, each starting
    /// mid-sequence: every row still gets its own position's angles.
    #[test]
    fn tasks_of_many_rows_keep_each_rows_position() {
        let (b, t, h, d) = (8, 37, 4, 32);
        assert!(b * t * h * d > 2 * ROPE_CHUNK);
        check_against_reference(b, t, h, d);
    }

    /// `rope` against `rope_reference` on `[b, t, h, d]`, and back.
    fn check_against_reference(b: usize, t: usize, h: usize, d: usize) {
        let x: Vec<f64> = (0..b * t * h * d)
            .map(|i| ((i * 29 % 17) as f64 - 8.0) * 0.1)
            .collect();
        let table = RopeTable::<f64>::new(t, d, 10000.0);
        let y = rope(&x, &table, h, false);
        let want = rope_reference(&x, t, h, d, 10000.0);
        assert!(y.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-12));
        let back = rope(&y, &table, h, true);
        assert!(back.iter().zip(&x).all(|(a, b)| (a - b).abs() < 1e-12));
    }
}
