//! Fused causal softmax attention with grouped-query heads.
//!
//! Inputs are row-major `q: [B, T, H, D]`, `k, v: [B, T, G, D]` with `H = r·G`
//! (query head `h` reads key/value head `g = h / r`). With `s = 1/sqrt(D)`:
//!
//! ```text
//! S   = s · Q_h K_gᵀ                       (T×T)
//! P   = softmax over j ≤ i of S_ij,  P_ij = 0 for j > i   (causal, no mask add)
//! O_h = P V_g
//! backward, given dO_h:
//! dP   = dO_h V_gᵀ
//! dS   = P ⊙ (dP − rowsum(dP ⊙ P))
//! dQ_h = s · dS K_g,   dK_g += s · dSᵀ Q_h,   dV_g += Pᵀ dO_h
//! ```
//!
//! Every product is a strided [`gemm_serial_skip`] on views of the inputs (no copy
//! of Q, K, V per head), done in causal blocks of [`BLOCK`] rows or columns
//! that skip the blocks above the diagonal. The products over D (`Q_h K_gᵀ`,
//! `dO_h V_gᵀ`) go by blocks of keys, so that each key's column of the
//! transposed operand is packed once, not once per block of rows after it;
//! the products over keys (`P V_g`, `dS K_g`, and the transposed ones) go by
//! blocks of their output's rows, so that each entry stays one sum over
//! one block of k (the same bits as a single product). Inside the diagonal
//! blocks the products leave out what the causal mask makes zero or
//! unwanted, at the gemm's register-tile granularity ([`Skip`]): tiles of
//! `S` and `dP` wholly above the diagonal, and the zero terms of `P` and
//! `dS` at the tail of a row (`P V_g`, `dS K_g`) or, transposed, at the head
//! (`Pᵀ dO_h`, `dSᵀ Q_h`); about 15% of the products' work at `T = 256`,
//! no computed entry changed. The forward runs
//! one task per (batch, head); the backward one task per (batch, kv head),
//! looping over that head's query heads in order, so gradients are summed
//! in a fixed order. Each task writes its slices of O, dQ, dK, dV straight
//! into the `[B, T, ·, D]` outputs (row stride `H·D` or `G·D`), allocated
//! without a zero fill ([`par_tasks_uninit`]): every entry is written by a
//! product with `β = 0` before anything reads it.
//!
//! A head's `T×T` blocks (S and P in the forward, P and dS in the
//! backward) live in a scratch buffer of the thread's, reused from head to
//! head and so still in the core's cache ([`with_scratch`]); the forward
//! then keeps only P's blocks on and below the diagonal for the backward
//! ([`CausalProbs`], written with streaming stores), and the backward
//! copies them back into its scratch. Entries above the diagonal blocks
//! are never read, so nothing writes them.

use ndarray::{s, ArrayView2, ArrayView4, ArrayViewMut2};

pub use super::causal_probs::CausalProbs;
use super::causal_probs::{head_len, store_head};
use super::fresh::{par_tasks_uninit, OutPtr};
use super::gemm::{gemm_serial_skip, Skip};
use super::scratch::with_scratch;
use crate::Scalar;

/// Rows (or columns) per causal block: a block of query rows `r0..r1`
/// meets only keys `0..r1`, and a block of keys `c0..c1` only queries
/// `c0..`, so the upper triangle is skipped.
pub const BLOCK: usize = 64;

/// Shape of one attention call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnShape {
    /// Batch size `B`.
    pub batch: usize,
    /// Sequence length `T`.
    pub seq: usize,
    /// Query heads `H`.
    pub heads: usize,
    /// Key/value heads `G` (divides `H`).
    pub kv_heads: usize,
    /// Head width `D`.
    pub head_dim: usize,
}

impl AttnShape {
    fn check(&self, q: usize, k: usize, v: usize) {
        assert!(
            self.kv_heads > 0 && self.heads.is_multiple_of(self.kv_heads),
            "attention: {} heads are not a multiple of {} kv heads",
            self.heads,
            self.kv_heads
        );
        let (b, t, d) = (self.batch, self.seq, self.head_dim);
        assert!(
            q == b * t * self.heads * d && k == b * t * self.kv_heads * d && v == k,
            "attention: q/k/v sizes {q}/{k}/{v} do not fit {self:?}"
        );
    }
    fn scale<T: Scalar>(&self) -> T {
        T::one() / T::of(self.head_dim as f64).sqrt()
    }
    /// Flat index of `(batch, time, head, dim)` in a `[B, T, heads, D]`
    /// tensor (the reference loops').
    fn flat(&self, heads: usize, bi: usize, ti: usize, hi: usize, di: usize) -> usize {
        ((bi * self.seq + ti) * heads + hi) * self.head_dim + di
    }
}

fn view4<T>(x: &[T], b: usize, t: usize, h: usize, d: usize) -> ArrayView4<'_, T> {
    ArrayView4::from_shape((b, t, h, d), x).expect("attention: size checked")
}

/// One past the last column of row `i`'s diagonal block, in rows of `t`.
#[inline(always)]
fn diagonal_block_end(i: usize, t: usize) -> usize {
    ((i / BLOCK + 1) * BLOCK).min(t)
}

crate::kernels::simd::wide_simd_fn! {
    /// Causal softmax of the rows of a `T×T` score block, in place: per row
    /// i, `p_j = exp(x_j − max) / Σ exp(x_l − max)` over the live keys
    /// j ≤ i, zeros after them up to the end of the row's diagonal block
    /// of [`BLOCK`] columns (the entries past it are neither read nor
    /// written). The maximum in sixteen lanes
    /// ([`reduce::max`](crate::kernels::reduce::max)), the exponentials
    /// ([`Scalar::fast_exp`]) in one vectorised loop, their sum in eight
    /// fixed lanes ([`reduce::sum`](crate::kernels::reduce::sum)).
    fn causal_softmax_rows / causal_softmax_rows_wide [T: Scalar] (p: &mut [T], t: usize) {
        for (i, row) in p.chunks_exact_mut(t).enumerate() {
            let (live, dead) = row[..diagonal_block_end(i, t)].split_at_mut(i + 1);
            let m = crate::kernels::reduce::max(live);
            for x in live.iter_mut() {
                *x = (*x - m).fast_exp();
            }
            let inv = T::one() / crate::kernels::reduce::sum(live);
            for x in live.iter_mut() {
                *x *= inv;
            }
            dead.fill(T::zero());
        }
    }
}

crate::kernels::simd::wide_simd_fn! {
    /// The softmax's backward over causal rows of `t` entries, in place:
    /// `ds` holds `dP` on entry and `dS = P ⊙ (dP − rowsum(dP ⊙ P))` on
    /// return, with zeros at the dead entries `j > i` of the row's diagonal
    /// block (the entries past it are neither read nor written).
    fn causal_softmax_backward_rows / causal_softmax_backward_rows_wide [T: Scalar] (
        ds: &mut [T],
        p: &[T],
        t: usize,
    ) {
        for (i, (dsr, pr)) in ds.chunks_exact_mut(t).zip(p.chunks_exact(t)).enumerate() {
            let live = i + 1;
            let c = crate::kernels::reduce::dot(&dsr[..live], &pr[..live]);
            for (x, &pp) in dsr[..live].iter_mut().zip(&pr[..live]) {
                *x = pp * (*x - c);
            }
            dsr[live..diagonal_block_end(i, t)].fill(T::zero());
        }
    }
}

/// Forward: returns `o: [B, T, H, D]` and, with `keep_probs`, the causal
/// blocks of the probabilities `P` for the backward ([`CausalProbs`]).
pub fn attention<T: Scalar>(
    q: &[T],
    k: &[T],
    v: &[T],
    sh: AttnShape,
    keep_probs: bool,
) -> (Vec<T>, Option<CausalProbs<T>>) {
    sh.check(q.len(), k.len(), v.len());
    let AttnShape {
        batch: b,
        seq: t,
        heads: h,
        kv_heads: g,
        head_dim: d,
    } = sh;
    let r = h / g;
    let scale = sh.scale::<T>();
    let (q4, k4, v4) = (
        view4(q, b, t, h, d),
        view4(k, b, t, g, d),
        view4(v, b, t, g, d),
    );
    let p_len = if keep_probs {
        CausalProbs::<T>::buffer_len(b * h, t)
    } else {
        0
    };
    let head = head_len(t);
    // SAFETY: task bh writes the entries (bi, ·, hi, ·) of o, which no
    // other task touches, and, with `keep_probs`, head bh's values of p
    // ([start + bh·head, start + (bh+1)·head)) and (task 0) p's slack
    // outside every head; together the tasks cover both buffers. The
    // products into o (β = 0) write all its rows. The view of o is in
    // bounds: t×d at row stride h·d from (bi·t·h + hi)·d, whose last entry
    // ((bi·t + t − 1)·h + hi)·d + d − 1 < b·t·h·d.
    let [p, o] = unsafe {
        par_tasks_uninit([p_len, b * t * h * d], b * h, |bh, [pp, op]| {
            let (bi, hi) = (bh / h, bh % h);
            let gi = hi / r;
            let qh = q4.slice(s![bi, .., hi, ..]);
            let kg = k4.slice(s![bi, .., gi, ..]);
            let vg = v4.slice(s![bi, .., gi, ..]);
            // The head's T×T block in this thread's scratch, still in cache
            // from the previous head. Every entry read is written first:
            // the causal products (β = 0) write the tiles on and below the
            // diagonal of rows c0..t of each block of columns c0..c1, which
            // hold every live entry j ≤ i, the softmax reads only those and
            // zeroes the dead ones of each row's diagonal block, and the
            // products into o and the copy into p read only the blocks on
            // and below the diagonal.
            with_scratch(t * t, |pc: &mut [T]| {
                let mut pm = ArrayViewMut2::from_shape((t, t), &mut *pc).expect("block size");
                // Causal blocks by columns: keys c0..c1 only meet queries
                // c0..t, and each key is packed (transposed) once.
                for c0 in (0..t).step_by(BLOCK) {
                    let c1 = (c0 + BLOCK).min(t);
                    gemm_serial_skip(
                        scale,
                        qh.slice(s![c0..t, ..]),
                        kg.slice(s![c0..c1, ..]).t(),
                        T::zero(),
                        pm.slice_mut(s![c0..t, c0..c1]),
                        Skip::AboveDiagonalOfC,
                    );
                }
                crate::kernels::simd::wide_simd_call!(
                    causal_softmax_rows / causal_softmax_rows_wide(pc, t)
                );
                let pv = ArrayView2::from_shape((t, t), &*pc).expect("block size");
                // o's view as above, exclusive to this task.
                let mut om = op.rows((bi * t * h + hi) * d, t, d, h * d);
                for r0 in (0..t).step_by(BLOCK) {
                    let r1 = (r0 + BLOCK).min(t);
                    gemm_serial_skip(
                        T::one(),
                        pv.slice(s![r0..r1, 0..r1]),
                        vg.slice(s![0..r1, ..]),
                        T::zero(),
                        om.slice_mut(s![r0..r1, ..]),
                        Skip::ATailZeros { offset: r0 },
                    );
                }
                if keep_probs {
                    let start = CausalProbs::<T>::start_in(pp);
                    // p holds buffer_len(b·h, t) values; head bh's `head`
                    // values from start + bh·head and (task 0) the slack
                    // are this task's alone.
                    if bh == 0 {
                        CausalProbs::<T>::zero_slack(pp, b * h, t);
                    }
                    store_head(pc, t, pp.as_mut_ptr().add(start + bh * head));
                }
            });
        })
    };
    let probs = keep_probs.then(|| {
        let mut p = p;
        let start = CausalProbs::<T>::start_in(OutPtr::new(p.as_mut_ptr()));
        CausalProbs::from_parts(p, start, b * h, t)
    });
    (o, probs)
}

/// Backward: returns `(dq, dk, dv)` in the layouts of `q`, `k`, `v`, from
/// the probabilities the forward kept.
pub fn attention_backward<T: Scalar>(
    q: &[T],
    k: &[T],
    v: &[T],
    p: &CausalProbs<T>,
    d_o: &[T],
    sh: AttnShape,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    sh.check(q.len(), k.len(), v.len());
    let AttnShape {
        batch: b,
        seq: t,
        heads: h,
        kv_heads: g,
        head_dim: d,
    } = sh;
    assert!(
        p.heads() == b * h && p.seq() == t && d_o.len() == q.len(),
        "attention_backward: p ({} heads of {}) or dO ({}) do not fit {sh:?}",
        p.heads(),
        p.seq(),
        d_o.len()
    );
    let r = h / g;
    let scale = sh.scale::<T>();
    let (q4, k4, v4, do4) = (
        view4(q, b, t, h, d),
        view4(k, b, t, g, d),
        view4(v, b, t, g, d),
        view4(d_o, b, t, h, d),
    );
    // SAFETY: task bg writes the entries (bi, ·, gi, ·) of dk and dv and
    // (bi, ·, hi, ·) of dq for its query heads hi = gi·r + j, j < r: no
    // other task touches them, and together the tasks cover the three
    // buffers. Every entry is written before it is read: for j = 0 the
    // products into dv and dk have β = 0 and their blocks of rows cover
    // 0..t (dv's c0..c1, dk's r0..r1), later heads add to them (β = 1);
    // each dq slice is written once, by β = 0 products over every block of
    // rows. Views are t×d at row stride h·d (dq) or g·d (dk, dv), in
    // bounds as in the forward.
    let [dq, dk, dv] = unsafe {
        par_tasks_uninit(
            [b * t * h * d, b * t * g * d, b * t * g * d],
            b * g,
            |bg, [qp, kp, vp]| {
                let (bi, gi) = (bg / g, bg % g);
                let kg = k4.slice(s![bi, .., gi, ..]);
                let vg = v4.slice(s![bi, .., gi, ..]);
                let mut dk = kp.rows((bi * t * g + gi) * d, t, d, g * d);
                let mut dv = vp.rows((bi * t * g + gi) * d, t, d, g * d);
                // dS and P in this thread's scratch. Every entry read is
                // written first: P's blocks on and below the diagonal by
                // `load_head`, which hold every entry the softmax reads
                // (the products read the kept blocks themselves); dS's live
                // entries by the products over D (β = 0, every tile on or
                // below the diagonal) and the softmax, which
                // zeroes the dead entries of each row's diagonal block,
                // and the products over keys read only those blocks.
                with_scratch(2 * t * t, |buf: &mut [T]| {
                    let (ds, pd) = buf.split_at_mut(t * t);
                    for j in 0..r {
                        let hi = gi * r + j;
                        let qh = q4.slice(s![bi, .., hi, ..]);
                        let doh = do4.slice(s![bi, .., hi, ..]);
                        let beta = if j == 0 { T::zero() } else { T::one() };
                        // dV[c0..c1] = P[c0.., c0..c1]ᵀ dO[c0..]   (P is zero above the diagonal),
                        // straight from the kept blocks: their reads from
                        // memory overlap the products' arithmetic, and
                        // leave them in cache for the copy below.
                        for (c, c0) in (0..t).step_by(BLOCK).enumerate() {
                            let c1 = (c0 + BLOCK).min(t);
                            gemm_serial_skip(
                                T::one(),
                                p.block(bi * h + hi, c).t(),
                                doh.slice(s![c0..t, ..]),
                                beta,
                                dv.slice_mut(s![c0..c1, ..]),
                                Skip::AHeadZeros,
                            );
                        }
                        p.load_head(bi * h + hi, pd);
                        {
                            let mut dsm =
                                ArrayViewMut2::from_shape((t, t), &mut *ds).expect("block size");
                            for c0 in (0..t).step_by(BLOCK) {
                                let c1 = (c0 + BLOCK).min(t);
                                gemm_serial_skip(
                                    T::one(),
                                    doh.slice(s![c0..t, ..]),
                                    vg.slice(s![c0..c1, ..]).t(),
                                    T::zero(),
                                    dsm.slice_mut(s![c0..t, c0..c1]),
                                    Skip::AboveDiagonalOfC,
                                );
                            }
                        }
                        crate::kernels::simd::wide_simd_call!(
                            causal_softmax_backward_rows
                                / causal_softmax_backward_rows_wide(ds, pd, t)
                        );
                        let dsv = ArrayView2::from_shape((t, t), &*ds).expect("block size");
                        let mut dqm = qp.rows((bi * t * h + hi) * d, t, d, h * d);
                        for r0 in (0..t).step_by(BLOCK) {
                            let r1 = (r0 + BLOCK).min(t);
                            gemm_serial_skip(
                                scale,
                                dsv.slice(s![r0..r1, 0..r1]),
                                kg.slice(s![0..r1, ..]),
                                T::zero(),
                                dqm.slice_mut(s![r0..r1, ..]),
                                Skip::ATailZeros { offset: r0 },
                            );
                            // dK[r0..r1] = s · dS[r0.., r0..r1]ᵀ Q[r0..]
                            gemm_serial_skip(
                                scale,
                                dsv.slice(s![r0..t, r0..r1]).t(),
                                qh.slice(s![r0..t, ..]),
                                beta,
                                dk.slice_mut(s![r0..r1, ..]),
                                Skip::AHeadZeros,
                            );
                        }
                    }
                });
            },
        )
    };
    (dq, dk, dv)
}

/// Plain loops (reference): row `i` of head `hi`'s causal probabilities in
/// batch `bi`, `softmax_j(scale·q_i·k_j)` for `j ≤ i`.
fn reference_probs_row<T: Scalar>(
    q: &[T],
    k: &[T],
    sh: AttnShape,
    bi: usize,
    hi: usize,
    i: usize,
) -> Vec<T> {
    let qi = |bi, ti, hi, di| sh.flat(sh.heads, bi, ti, hi, di);
    let ki = |bi, ti, gi, di| sh.flat(sh.kv_heads, bi, ti, gi, di);
    let gi = hi / (sh.heads / sh.kv_heads);
    let scale = sh.scale::<T>();
    let mut p = vec![T::zero(); i + 1];
    for (j, x) in p.iter_mut().enumerate() {
        let mut acc = T::zero();
        for di in 0..sh.head_dim {
            acc += q[qi(bi, i, hi, di)] * k[ki(bi, j, gi, di)];
        }
        *x = acc * scale;
    }
    let m = p.iter().fold(T::neg_infinity(), |a, &x| a.max(x));
    let z: T = p.iter().map(|&x| (x - m).exp()).sum();
    for x in p.iter_mut() {
        *x = (*x - m).exp() / z;
    }
    p
}

/// Plain loop forward (reference): `o` in `[B, T, H, D]`.
pub fn attention_reference<T: Scalar>(q: &[T], k: &[T], v: &[T], sh: AttnShape) -> Vec<T> {
    let qi = |bi, ti, hi, di| sh.flat(sh.heads, bi, ti, hi, di);
    let ki = |bi, ti, gi, di| sh.flat(sh.kv_heads, bi, ti, gi, di);
    let gr = sh.heads / sh.kv_heads;
    let mut o = vec![T::zero(); q.len()];
    for bi in 0..sh.batch {
        for hi in 0..sh.heads {
            let gi = hi / gr;
            for i in 0..sh.seq {
                let p = reference_probs_row(q, k, sh, bi, hi, i);
                for (j, &pij) in p.iter().enumerate() {
                    for di in 0..sh.head_dim {
                        o[qi(bi, i, hi, di)] += pij * v[ki(bi, j, gi, di)];
                    }
                }
            }
        }
    }
    o
}

/// Plain loop backward (reference): `(dq, dk, dv)`.
pub fn attention_backward_reference<T: Scalar>(
    q: &[T],
    k: &[T],
    v: &[T],
    d_o: &[T],
    sh: AttnShape,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let qi = |bi, ti, hi, di| sh.flat(sh.heads, bi, ti, hi, di);
    let ki = |bi, ti, gi, di| sh.flat(sh.kv_heads, bi, ti, gi, di);
    let (gr, d) = (sh.heads / sh.kv_heads, sh.head_dim);
    let scale = sh.scale::<T>();
    let (mut dq, mut dk, mut dv) = (
        vec![T::zero(); q.len()],
        vec![T::zero(); k.len()],
        vec![T::zero(); v.len()],
    );
    for bi in 0..sh.batch {
        for hi in 0..sh.heads {
            let gi = hi / gr;
            for i in 0..sh.seq {
                let p = reference_probs_row(q, k, sh, bi, hi, i);
                let mut dp = vec![T::zero(); i + 1];
                for (j, x) in dp.iter_mut().enumerate() {
                    for di in 0..d {
                        *x += d_o[qi(bi, i, hi, di)] * v[ki(bi, j, gi, di)];
                        dv[ki(bi, j, gi, di)] += p[j] * d_o[qi(bi, i, hi, di)];
                    }
                }
                let c: T = (0..=i).map(|j| dp[j] * p[j]).sum();
                for j in 0..=i {
                    let ds = p[j] * (dp[j] - c) * scale;
                    for di in 0..d {
                        dq[qi(bi, i, hi, di)] += ds * k[ki(bi, j, gi, di)];
                        dk[ki(bi, j, gi, di)] += ds * q[qi(bi, i, hi, di)];
                    }
                }
            }
        }
    }
    (dq, dk, dv)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic inputs for `sh`: `[q, k, v, w]`, with q and the
    /// output's weights w `heads` wide and k, v `kv_heads` wide; `sq` and
    /// `sk` scale q's and k's patterns (centred integers mod 23 and 19).
    fn inputs<T: Scalar>(sh: AttnShape, sq: f64, sk: f64) -> [Vec<T>; 4] {
        let rows = sh.batch * sh.seq * sh.head_dim;
        let pattern = |heads: usize, mul: usize, modulus: usize, scale: f64| -> Vec<T> {
            (0..rows * heads)
                .map(|i| T::of(((i * mul % modulus) as f64 - (modulus / 2) as f64) * scale))
                .collect()
        };
        [
            pattern(sh.heads, 31, 23, sq),
            pattern(sh.kv_heads, 17, 19, sk),
            pattern(sh.kv_heads, 7, 13, 0.2),
            pattern(sh.heads, 5, 11, 0.3),
        ]
    }

    #[test]
    fn forward_matches_reference_and_backward_matches_differences() {
        let sh = AttnShape {
            batch: 2,
            seq: 5,
            heads: 4,
            kv_heads: 2,
            head_dim: 3,
        };
        let [q, k, v, w] = inputs::<f64>(sh, 0.13, 0.11);
        let (o, p) = attention(&q, &k, &v, sh, true);
        let p = p.expect("kept");
        let want = attention_reference(&q, &k, &v, sh);
        assert!(o.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-12));
        let (dq, dk, dv) = attention_backward(&q, &k, &v, &p, &w, sh);
        let f = |q: &[f64], k: &[f64], v: &[f64]| -> f64 {
            attention_reference(q, k, v, sh)
                .iter()
                .zip(&w)
                .map(|(a, b)| a * b)
                .sum()
        };
        let eps = 1e-6;
        for (which, grad) in [(0, &dq), (1, &dk), (2, &dv)] {
            let n = grad.len();
            for i in 0..n {
                let mut args = [q.clone(), k.clone(), v.clone()];
                args[which][i] += eps;
                let fp = f(&args[0], &args[1], &args[2]);
                args[which][i] -= 2.0 * eps;
                let fm = f(&args[0], &args[1], &args[2]);
                let num = (fp - fm) / (2.0 * eps);
                assert!(
                    (num - grad[i]).abs() < 1e-6,
                    "input {which} entry {i}: {num} vs {}",
                    grad[i]
                );
            }
        }
    }

    #[test]
    fn blocked_kernel_matches_reference_on_long_sequences() {
        let sh = AttnShape {
            batch: 1,
            seq: 2 * BLOCK + 5,
            heads: 2,
            kv_heads: 1,
            head_dim: 3,
        };
        let [q, k, v, w] = inputs::<f64>(sh, 0.05, 0.07);
        let (o, p) = attention(&q, &k, &v, sh, true);
        let p = p.expect("kept");
        let want = attention_reference(&q, &k, &v, sh);
        assert!(o.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-12));
        let got = attention_backward(&q, &k, &v, &p, &w, sh);
        let want = attention_backward_reference(&q, &k, &v, &w, sh);
        for (g, w) in [(&got.0, &want.0), (&got.1, &want.1), (&got.2, &want.2)] {
            assert!(g.iter().zip(w).all(|(a, b)| (a - b).abs() < 1e-12));
        }
    }

    /// In f32 the softmax uses the polynomial exponential and a lane-wise
    /// sum: the output stays within float rounding of the f32 reference
    /// (libm's `expf`, a sequential sum), and the probabilities of every
    /// row sum to one.
    #[test]
    fn f32_forward_matches_reference_within_rounding() {
        let sh = AttnShape {
            batch: 2,
            seq: BLOCK + 9,
            heads: 2,
            kv_heads: 1,
            head_dim: 8,
        };
        let [q, k, v, w] = inputs::<f32>(sh, 0.3, 0.2);
        let (o, p) = attention(&q, &k, &v, sh, true);
        let p = p.expect("kept");
        let want = attention_reference(&q, &k, &v, sh);
        for (a, b) in o.iter().zip(&want) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
        for bh in 0..p.heads() {
            for row in p.dense_head(bh).rows() {
                let total: f64 = row.iter().map(|&x| x as f64).sum();
                assert!((total - 1.0).abs() < 1e-5, "{total}");
            }
        }
        // The backward through the kept blocks (streaming stores on
        // AVX-512) against the f64 reference.
        let wide = |x: &[f32]| x.iter().map(|&a| a as f64).collect::<Vec<f64>>();
        let got = attention_backward(&q, &k, &v, &p, &w, sh);
        let want = attention_backward_reference(&wide(&q), &wide(&k), &wide(&v), &wide(&w), sh);
        for (g, w) in [(&got.0, &want.0), (&got.1, &want.1), (&got.2, &want.2)] {
            for (a, b) in g.iter().zip(w) {
                assert!(
                    (*a as f64 - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "{a} vs {b}"
                );
            }
        }
        // Without the probabilities, the same output.
        let (o2, none) = attention(&q, &k, &v, sh, false);
        assert!(none.is_none());
        assert_eq!(o, o2);
    }
}
