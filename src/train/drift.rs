//! How far training moved the parameters from a reference (the pre-trained
//! model), SPEC.md section 4:
//!
//! ```text
//! distance = mean over blocks b of  r_b = ‖θ_b − θ_b^pre‖₂ / ‖θ_b^pre‖₂
//! significant share = #{ i : |θ_i − θ_i^pre| > 2e-6 } / #entries
//! ```
//!
//! A block is one parameter tensor. Blocks whose reference norm is zero are
//! left out of the mean (r_b is undefined there). Sums are accumulated in
//! f64 in a fixed order.

use crate::{ParamError, ParamStore, Scalar};

/// The threshold of a "significant" update (paper Table 15).
pub const SIGNIFICANT_UPDATE: f64 = 2e-6;

/// Mean relative distance per block between `params` and `reference`.
pub fn distance_to_reference<T: Scalar>(
    params: &ParamStore<T>,
    reference: &ParamStore<T>,
) -> Result<f64, ParamError> {
    reference.check_same_layout(params)?;
    let mut sum = 0.0;
    let mut blocks = 0usize;
    for r in reference.iter() {
        let p = params.get(&r.name).expect("layout checked");
        let (mut d2, mut r2) = (0.0f64, 0.0f64);
        for (&a, &b) in p.as_slice().iter().zip(r.as_slice()) {
            let d = a.as_f64() - b.as_f64();
            d2 += d * d;
            r2 += b.as_f64() * b.as_f64();
        }
        if r2 > 0.0 {
            sum += (d2 / r2).sqrt();
            blocks += 1;
        }
    }
    Ok(if blocks == 0 {
        0.0
    } else {
        sum / blocks as f64
    })
}

/// Share of entries with |θ − θ_ref| > `threshold`.
pub fn updated_share<T: Scalar>(
    params: &ParamStore<T>,
    reference: &ParamStore<T>,
    threshold: f64,
) -> Result<f64, ParamError> {
    reference.check_same_layout(params)?;
    let mut changed = 0usize;
    let mut total = 0usize;
    for r in reference.iter() {
        let p = params.get(&r.name).expect("layout checked");
        changed += p
            .as_slice()
            .iter()
            .zip(r.as_slice())
            .filter(|(&a, &b)| (a.as_f64() - b.as_f64()).abs() > threshold)
            .count();
        total += r.as_slice().len();
    }
    Ok(if total == 0 {
        0.0
    } else {
        changed as f64 / total as f64
    })
}

/// The name of the first tensor holding a NaN or infinity, if any.
pub fn first_non_finite<T: Scalar>(store: &ParamStore<T>) -> Option<&str> {
    crate::optim::finite::first_non_finite_entry(store)
        .map(|(ti, _)| store.as_slice()[ti].name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_and_share_by_hand() {
        let mut r = ParamStore::<f64>::new();
        r.insert_vec("a", &[2], vec![3.0, 4.0]).unwrap();
        r.insert_vec("b", &[2], vec![1.0, 0.0]).unwrap();
        let mut p = r.clone();
        p.get_mut("a").unwrap().as_slice_mut()[0] = 3.5; // r_a = 0.5 / 5
        p.get_mut("b").unwrap().as_slice_mut()[1] = 1e-6; // tiny, r_b = 1e-6
        let d = distance_to_reference(&p, &r).unwrap();
        assert!((d - (0.1 + 1e-6) / 2.0).abs() < 1e-15);
        assert_eq!(updated_share(&p, &r, SIGNIFICANT_UPDATE).unwrap(), 0.25);
        assert_eq!(updated_share(&p, &r, 0.0).unwrap(), 0.5);
        assert_eq!(first_non_finite(&p), None);
        p.get_mut("b").unwrap().as_slice_mut()[0] = f64::NAN;
        assert_eq!(first_non_finite(&p), Some("b"));
        let mut q = ParamStore::<f64>::new();
        q.insert_vec("a", &[2], vec![0.0; 2]).unwrap();
        assert!(distance_to_reference(&q, &r).is_err());
    }
}
