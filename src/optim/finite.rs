//! Gradients checked once to be finite, so that a step does not read them
//! a second time to check them again.
//!
//! [`Optimizer::step`](super::Optimizer::step) must leave parameters and
//! state untouched when a gradient is NaN or infinite, so it reads every
//! gradient before it changes anything: for Adam on f32 that is 4 bytes
//! per entry on top of the update's 28 (read θ, g, m, v; write θ, m, v).
//! A caller that checks its gradients anyway (the training loop does, to
//! apply its own non-finite policy) makes a [`FiniteGrads`] with that
//! check and passes it to
//! [`Optimizer::step_finite`](super::Optimizer::step_finite), which skips
//! its own. [`FiniteGrads::check`] is the only way to make one, and the
//! value borrows the gradients, so they cannot change between the check
//! and the step.
//!
//! ```text
//! check:  every entry g_i of every tensor, in chunks of 2^15 on all threads:
//!         |g_i| < ∞ and g_i = g_i   (else the first bad (tensor, index) in store order)
//! ```

use rayon::prelude::*;

use super::optimizer::CHUNK;
use crate::kernels::reduce::all_finite_wide;
use crate::kernels::simd::wide_simd_call;
use crate::{ParamStore, Scalar};

/// The first entry of `store` (tensor position, flat index) that is NaN or
/// infinite, in store order; every chunk of 2^15 entries is tested on all
/// threads by a branch-free vectorised test, and searched only when bad.
pub fn first_non_finite_entry<T: Scalar>(store: &ParamStore<T>) -> Option<(usize, usize)> {
    let tensors = store.as_slice();
    let items: Vec<(usize, usize)> = tensors
        .iter()
        .enumerate()
        .flat_map(|(ti, p)| (0..p.as_slice().len().div_ceil(CHUNK)).map(move |c| (ti, c * CHUNK)))
        .collect();
    items.par_iter().find_map_first(|&(ti, start)| {
        let g = tensors[ti].as_slice();
        let g = &g[start..(start + CHUNK).min(g.len())];
        if wide_simd_call!(all_finite / all_finite_wide(g)) {
            None
        } else {
            g.iter()
                .position(|x| !x.is_finite())
                .map(|i| (ti, start + i))
        }
    })
}

/// A gradient that is NaN or infinite: the first in store order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("gradient of {name} is not finite at flat index {index}")]
pub struct NonFiniteGrad {
    /// The tensor's name.
    pub name: String,
    /// Its first non-finite entry (row-major flat index).
    pub index: usize,
}

/// Gradients every entry of which was found finite by [`FiniteGrads::check`].
#[derive(Clone, Copy, Debug)]
pub struct FiniteGrads<'a, T> {
    store: &'a ParamStore<T>,
}

impl<'a, T: Scalar> FiniteGrads<'a, T> {
    /// Checks every entry of `store` (all threads, vectorised), or names
    /// the first non-finite one in store order.
    pub fn check(store: &'a ParamStore<T>) -> Result<Self, NonFiniteGrad> {
        match first_non_finite_entry(store) {
            None => Ok(Self { store }),
            Some((ti, index)) => Err(NonFiniteGrad {
                name: store.as_slice()[ti].name.clone(),
                index,
            }),
        }
    }

    /// The checked gradients.
    pub fn store(&self) -> &'a ParamStore<T> {
        self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_bad_entry_in_store_order() {
        let mut s = ParamStore::<f32>::new();
        s.insert_vec("a", &[3], vec![1.0, 2.0, 3.0]).unwrap();
        let big = CHUNK * 2 + 5;
        s.insert_vec("b", &[big], vec![0.5; big]).unwrap();
        s.insert_vec("c", &[2], vec![f32::NAN, 1.0]).unwrap();
        let err = FiniteGrads::check(&s).unwrap_err();
        assert_eq!((err.name.as_str(), err.index), ("c", 0));
        s.get_mut("b").unwrap().as_slice_mut()[CHUNK + 7] = f32::INFINITY;
        s.get_mut("b").unwrap().as_slice_mut()[2 * CHUNK + 1] = f32::NEG_INFINITY;
        let err = FiniteGrads::check(&s).unwrap_err();
        assert_eq!((err.name.as_str(), err.index), ("b", CHUNK + 7));
        assert_eq!(
            err.to_string(),
            format!("gradient of b is not finite at flat index {}", CHUNK + 7)
        );
        for x in s.get_mut("b").unwrap().as_slice_mut() {
            *x = -0.0;
        }
        s.get_mut("c").unwrap().as_slice_mut()[0] = f32::MAX;
        let ok = FiniteGrads::check(&s).unwrap();
        assert_eq!(ok.store().len(), 3);
    }
}
