//! Attention's probabilities kept for the backward: only the causal blocks.
//!
//! The forward's `P = softmax(S)` of one head is `T×T`, zero above the
//! diagonal. The backward reads it by blocks of [`BLOCK`] keys: block `c`
//! (keys `c0..c1`, `c0 = c·BLOCK`) is read only at the queries that meet
//! those keys, `c0..T`. So only these blocks are kept, each as a
//! row-major `(T − c0) × w` matrix with `w = c1 − c0`, its rows padded to a
//! multiple of [`PAD`] values with zeros:
//!
//! ```text
//! head (b, h): block 0 | block 1 | … | block ⌈T/BLOCK⌉−1,  one after another
//! block c:      P[c0 + i, c0 + j] at  i·wp + j,   i < T − c0,  j < w ≤ wp
//! ```
//!
//! At `T = 256` that is 40 960 of the 65 536 entries (5/8: the four
//! diagonal blocks and the six below them), so a training step of M keeps
//! 37.5% less of them.
//!
//! The forward computes a head's `P` in a per-thread scratch block that
//! stays in its core's cache ([`super::scratch`]) and then copies the causal
//! blocks here. Each head's blocks start on a 64-byte boundary and fill
//! whole cache lines, so on AVX-512 the `f32` copy uses streaming stores:
//! its lines go to memory without first being read from there (the first
//! store to a line that is not in cache otherwise fetches it) and without
//! evicting the data the next kernels need.

use ndarray::ArrayView2;

use super::fresh::OutPtr;
use crate::Scalar;

use super::attention::BLOCK;

/// A block's rows are padded to a multiple of this many values (64 bytes
/// of `f32`: whole cache lines).
pub const PAD: usize = 16;

/// The causal blocks of `P` for every (batch, head) pair (see the module
/// docs for the layout).
#[derive(Clone)]
pub struct CausalProbs<T> {
    data: Vec<T>,
    /// Offset of head 0's first value (a 64-byte boundary of `data`).
    start: usize,
    heads: usize,
    seq: usize,
}

/// The shape, not the megabytes of values.
impl<T> std::fmt::Debug for CausalProbs<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CausalProbs")
            .field("heads", &self.heads)
            .field("seq", &self.seq)
            .field("values", &self.data.len())
            .finish()
    }
}

/// Block `c`'s columns `(c0, w, wp)`: its first key, its width and its
/// padded width.
fn block_cols(t: usize, c: usize) -> (usize, usize, usize) {
    let c0 = c * BLOCK;
    let w = BLOCK.min(t - c0);
    (c0, w, w.div_ceil(PAD) * PAD)
}

/// Offset of block `c` inside a head of sequence length `t`.
fn block_offset(t: usize, c: usize) -> usize {
    (0..c)
        .map(|b| {
            let (c0, _, wp) = block_cols(t, b);
            (t - c0) * wp
        })
        .sum()
}

/// Values kept per head at sequence length `t` (a multiple of [`PAD`]).
pub fn head_len(t: usize) -> usize {
    block_offset(t, t.div_ceil(BLOCK))
}

/// Values of slack before head 0, enough to reach a 64-byte boundary.
fn slack<T>() -> usize {
    64_usize.div_ceil(std::mem::size_of::<T>())
}

impl<T: Scalar> CausalProbs<T> {
    /// Length of the buffer that [`CausalProbs::from_parts`] takes for
    /// `heads` heads of sequence length `seq`.
    pub(crate) fn buffer_len(heads: usize, seq: usize) -> usize {
        heads * head_len(seq) + slack::<T>()
    }

    /// Where head 0 starts in a buffer of [`CausalProbs::buffer_len`]
    /// values beginning at `buf`: the first 64-byte boundary (or 0 where
    /// `T`'s size does not divide 64).
    pub(crate) fn start_in(buf: OutPtr<T>) -> usize {
        let s = buf.as_mut_ptr().align_offset(64);
        if s < slack::<T>() {
            s
        } else {
            0
        }
    }

    /// Writes zeros over the slack of a buffer of `heads` heads, `seq`
    /// long, that starts at `buf` (the values outside every head).
    ///
    /// # Safety
    /// `buf` must hold [`CausalProbs::buffer_len`] values; nothing may view
    /// the slack while this runs.
    pub(crate) unsafe fn zero_slack(buf: OutPtr<T>, heads: usize, seq: usize) {
        let start = Self::start_in(buf);
        let end = start + heads * head_len(seq);
        // SAFETY: [0, start) and [end, buffer_len) are inside the buffer
        // (start < slack, end + (slack − start) = buffer_len) and belong
        // to no head; exclusive by the caller's contract.
        unsafe {
            buf.fill_zero(0, start);
            buf.fill_zero(end, Self::buffer_len(heads, seq) - end);
        }
    }

    /// The probabilities of a buffer whose every value was written: head
    /// `bh`'s blocks by [`store_head`] at `start + bh·head_len(seq)`
    /// (`start` from [`CausalProbs::start_in`]), the rest by
    /// [`CausalProbs::zero_slack`].
    pub(crate) fn from_parts(data: Vec<T>, start: usize, heads: usize, seq: usize) -> Self {
        assert!(
            data.len() == Self::buffer_len(heads, seq) && start < slack::<T>(),
            "CausalProbs: buffer of {} values from {start} for {heads} heads of {seq}",
            data.len()
        );
        CausalProbs {
            data,
            start,
            heads,
            seq,
        }
    }

    /// Number of (batch, head) pairs.
    pub fn heads(&self) -> usize {
        self.heads
    }

    /// Sequence length `T`.
    pub fn seq(&self) -> usize {
        self.seq
    }

    /// Block `c` of head `bh`: `P[c0.., c0..c1]` as a `(T − c0) × w` view.
    pub fn block(&self, bh: usize, c: usize) -> ArrayView2<'_, T> {
        let t = self.seq;
        assert!(
            bh < self.heads && c * BLOCK < t,
            "CausalProbs: block ({bh}, {c})"
        );
        let (c0, w, wp) = block_cols(t, c);
        let at = self.start + bh * head_len(t) + block_offset(t, c);
        let all = ArrayView2::from_shape((t - c0, wp), &self.data[at..at + (t - c0) * wp])
            .expect("block inside the buffer");
        all.slice_move(ndarray::s![.., ..w])
    }

    /// Writes head `bh`'s causal blocks into the `T×T` row-major `out`
    /// (rows `c0..T`, columns `c0..c1` of every block `c`); the entries
    /// above the blocks are left as they were.
    pub fn load_head(&self, bh: usize, out: &mut [T]) {
        let t = self.seq;
        assert_eq!(out.len(), t * t, "CausalProbs::load_head: output size");
        for c in 0..t.div_ceil(BLOCK) {
            let (c0, w, _) = block_cols(t, c);
            let blk = self.block(bh, c);
            for (i, row) in blk.outer_iter().enumerate() {
                let dst = &mut out[(c0 + i) * t + c0..(c0 + i) * t + c0 + w];
                dst.copy_from_slice(row.as_slice().expect("contiguous row"));
            }
        }
    }

    /// Head `bh` as a dense `T×T` matrix (zeros above the blocks), for
    /// tests and inspection.
    pub fn dense_head(&self, bh: usize) -> ndarray::Array2<T> {
        let t = self.seq;
        let mut out = vec![T::zero(); t * t];
        self.load_head(bh, &mut out);
        ndarray::Array2::from_shape_vec((t, t), out).expect("T×T")
    }
}

/// Copies the causal blocks of one head's `T×T` row-major `p` (rows
/// `c0..T`, columns `c0..c1` of every block `c`) to `dst` in the layout of
/// the module docs, padding with zeros: [`head_len`]`(t)` values.
/// Streaming stores where `T` is `f32`, the CPU has AVX-512 and `dst` is on
/// a 64-byte boundary; plain stores otherwise.
///
/// # Safety
/// `dst` must point to `head_len(t)` values of a buffer that nothing else
/// reads or writes while this runs; `p.len() == t·t`.
pub(crate) unsafe fn store_head<T: Scalar>(p: &[T], t: usize, dst: *mut T) {
    assert_eq!(p.len(), t * t, "store_head: block size");
    #[cfg(target_arch = "x86_64")]
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
        && (dst as usize).is_multiple_of(64)
        && super::simd::has_avx512()
    {
        // SAFETY: `T` is `f32` (TypeId), so the casts keep the element
        // type; the CPU has AVX-512F; `dst` is 64-byte aligned and valid
        // for `head_len(t)` values (the caller's contract).
        unsafe { store_head_stream(p.as_ptr() as *const f32, t, dst as *mut f32) };
        return;
    }
    for c in 0..t.div_ceil(BLOCK) {
        let (c0, w, wp) = block_cols(t, c);
        let base = block_offset(t, c);
        for i in 0..t - c0 {
            let src = &p[(c0 + i) * t + c0..][..w];
            let padded = src.iter().copied().chain(std::iter::repeat(T::zero()));
            for (j, v) in padded.take(wp).enumerate() {
                // SAFETY: base + i·wp + j < block_offset(t, c + 1) ≤
                // head_len(t), inside `dst`'s values (caller's contract).
                unsafe { dst.add(base + i * wp + j).write(v) };
            }
        }
    }
}

/// [`store_head`] for `f32` on AVX-512 with streaming stores.
///
/// # Safety
/// As [`store_head`], and: the CPU has AVX-512F, `dst` is 64-byte aligned.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn store_head_stream(p: *const f32, t: usize, dst: *mut f32) {
    use std::arch::x86_64::*;
    for c in 0..t.div_ceil(BLOCK) {
        let (c0, w, wp) = block_cols(t, c);
        let base = block_offset(t, c);
        for i in 0..t - c0 {
            // SAFETY: the row's `w` values are inside `p` (t·t values) and
            // the masked loads read no lane past them; every store is a
            // whole 64-byte line of the block (base and wp are multiples of
            // 16 values and dst is aligned), inside `dst`'s `head_len(t)`.
            unsafe {
                let src = p.add((c0 + i) * t + c0);
                let out = dst.add(base + i * wp);
                for v in 0..wp / PAD {
                    let lanes = (w - (v * PAD).min(w)).min(PAD);
                    let m = ((1u32 << lanes) - 1) as u16;
                    let x = _mm512_maskz_loadu_ps(m, src.add(v * PAD));
                    _mm512_stream_ps(out.add(v * PAD), x);
                }
            }
        }
    }
    // Streaming stores are weakly ordered: make them visible before the
    // task reports that it is done.
    _mm_sfence();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dense(t: usize, seed: u32) -> Vec<f32> {
        (0..t * t)
            .map(|x| {
                let (i, j) = (x / t, x % t);
                if j > i {
                    0.0
                } else {
                    ((x as u32).wrapping_mul(2654435761) ^ seed) as f32 * 1e-9
                }
            })
            .collect()
    }

    #[test]
    fn layout_sizes() {
        let probs =
            CausalProbs::from_parts(vec![0f32; CausalProbs::<f32>::buffer_len(2, 3)], 0, 2, 3);
        assert_eq!(
            format!("{probs:?}"),
            "CausalProbs { heads: 2, seq: 3, values: 112 }"
        );
        assert_eq!(head_len(256), (256 + 192 + 128 + 64) * 64);
        assert_eq!(head_len(1), 16);
        assert_eq!(head_len(BLOCK + 5), BLOCK * (BLOCK + 5) + 5 * 16);
        assert_eq!(head_len(BLOCK + 17), BLOCK * (BLOCK + 17) + 17 * 32);
    }

    #[test]
    fn stored_heads_read_back_on_every_path() {
        for t in [1usize, 5, 16, BLOCK, BLOCK + 5, 2 * BLOCK + 17, 256] {
            let heads = 3;
            // Buffers at several offsets: each head still starts on a
            // 64-byte boundary (the streaming path on AVX-512).
            for shift in 0..3 {
                let len = CausalProbs::<f32>::buffer_len(heads, t) + shift;
                let mut buf = vec![f32::NAN; len];
                let ptr = OutPtr::new(buf[shift..].as_mut_ptr());
                let start = CausalProbs::<f32>::start_in(ptr);
                let srcs: Vec<Vec<f32>> = (0..heads).map(|h| dense(t, h as u32)).collect();
                // SAFETY: the buffer holds buffer_len values from `shift`;
                // each head's region is inside it.
                unsafe {
                    CausalProbs::<f32>::zero_slack(ptr, heads, t);
                    for (h, s) in srcs.iter().enumerate() {
                        store_head(s, t, ptr.as_mut_ptr().add(start + h * head_len(t)));
                    }
                }
                assert!(
                    buf[shift..].iter().all(|x| !x.is_nan()),
                    "t {t}: unwritten value"
                );
                let probs = CausalProbs::from_parts(buf[shift..].to_vec(), start, heads, t);
                for (h, s) in srcs.iter().enumerate() {
                    let got = probs.dense_head(h);
                    let want = ndarray::Array2::from_shape_vec((t, t), s.clone()).unwrap();
                    // Only the causal blocks are kept: compare those.
                    for c in 0..t.div_ceil(BLOCK) {
                        let (c0, w, _) = block_cols(t, c);
                        let sl = ndarray::s![c0.., c0..c0 + w];
                        assert_eq!(got.slice(sl), want.slice(sl), "t {t} head {h} block {c}");
                        assert_eq!(probs.block(h, c), want.slice(sl));
                    }
                }
            }
        }
    }

    #[test]
    fn an_unaligned_head_goes_through_the_plain_path() {
        let t = 2 * BLOCK + 17;
        let src = dense(t, 3);
        let mut buf = vec![f32::NAN; head_len(t) + 32];
        let at = OutPtr::new(buf.as_mut_ptr()).as_mut_ptr().align_offset(64) + 1;
        // SAFETY: `at + head_len(t)` ≤ the buffer's length (at ≤ 16).
        unsafe { store_head(&src, t, buf.as_mut_ptr().add(at)) };
        let mut aligned = vec![f32::NAN; head_len(t) + 16];
        let at2 = aligned.as_mut_ptr().align_offset(64);
        // SAFETY: as above.
        unsafe { store_head(&src, t, aligned.as_mut_ptr().add(at2)) };
        assert_eq!(
            buf[at..at + head_len(t)],
            aligned[at2..at2 + head_len(t)],
            "the two paths write the same values"
        );
        assert!(buf[at..at + head_len(t)].iter().all(|x| !x.is_nan()));
    }

    #[test]
    fn f64_heads_go_through_the_plain_path() {
        let t = BLOCK + 3;
        let src: Vec<f64> = dense(t, 7).iter().map(|&x| x as f64).collect();
        let mut buf = vec![f64::NAN; CausalProbs::<f64>::buffer_len(1, t)];
        let ptr = OutPtr::new(buf.as_mut_ptr());
        let start = CausalProbs::<f64>::start_in(ptr);
        // SAFETY: the buffer holds buffer_len values.
        unsafe {
            CausalProbs::<f64>::zero_slack(ptr, 1, t);
            store_head(&src, t, ptr.as_mut_ptr().add(start));
        }
        assert!(buf.iter().all(|x| !x.is_nan()));
        let probs = CausalProbs::from_parts(buf, start, 1, t);
        let (c0, w, _) = block_cols(t, 1);
        let want = ndarray::Array2::from_shape_vec((t, t), src).unwrap();
        assert_eq!(probs.block(0, 1), want.slice(ndarray::s![c0.., c0..c0 + w]));
    }
}
