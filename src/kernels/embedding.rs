//! Embedding gather and its scatter-add backward.
//!
//! ```text
//! y[i, :]   = W[id_i, :]
//! W̄[id_i, :] += ȳ[i, :]        (rows added in index order: deterministic)
//! ```

use crate::Scalar;

/// Copies row `ids[i]` of `w` (`[vocab, h]`, row-major) into row `i` of `out`.
/// Panics on an id out of range (callers validate ids first).
pub fn gather_rows<T: Scalar>(w: &[T], h: usize, ids: &[u32], out: &mut [T]) {
    let vocab = w.len().checked_div(h).unwrap_or(0);
    assert_eq!(out.len(), ids.len() * h, "gather_rows: output size");
    for (row, &id) in out.chunks_exact_mut(h.max(1)).zip(ids) {
        let id = id as usize;
        assert!(
            id < vocab,
            "embedding: id {id} out of range for vocabulary {vocab}"
        );
        row.copy_from_slice(&w[id * h..(id + 1) * h]);
    }
}

/// Adds row `i` of `dy` to row `ids[i]` of `dw`, for `i` in order.
pub fn scatter_add_rows<T: Scalar>(dy: &[T], h: usize, ids: &[u32], dw: &mut [T]) {
    assert_eq!(dy.len(), ids.len() * h, "scatter_add_rows: gradient size");
    for (row, &id) in dy.chunks_exact(h.max(1)).zip(ids) {
        let id = id as usize;
        for (a, &b) in dw[id * h..(id + 1) * h].iter_mut().zip(row) {
            *a += b;
        }
    }
}

/// Plain indexed gather (reference).
pub fn gather_rows_reference<T: Scalar>(w: &[T], h: usize, ids: &[u32]) -> Vec<T> {
    let mut out = Vec::with_capacity(ids.len() * h);
    for &id in ids {
        for j in 0..h {
            out.push(w[id as usize * h + j]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_and_scatter() {
        let w: Vec<f64> = (0..12).map(|x| x as f64).collect();
        let ids = [2u32, 0, 2, 3];
        let mut out = vec![0.0; 12];
        gather_rows(&w, 3, &ids, &mut out);
        assert_eq!(out, gather_rows_reference(&w, 3, &ids));
        let mut dw = vec![0.0; 12];
        scatter_add_rows(&out, 3, &ids, &mut dw);
        let mut want = vec![0.0; 12];
        for (i, &id) in ids.iter().enumerate() {
            for j in 0..3 {
                want[id as usize * 3 + j] += out[i * 3 + j];
            }
        }
        assert_eq!(dw, want);
    }
}
