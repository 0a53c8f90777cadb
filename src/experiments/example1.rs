//! The losses of the paper's Example 1 (Section 3.2, Theorem 2) and of its
//! synthetic experiment (Appendix B.5).
//!
//! Pre-training loss and pre-trained point:
//!
//! ```text
//! L_pre(θ) = ½‖θ‖²,    θ_pre = 0
//! ```
//!
//! Fine-tuning loss, with a_i, b_i > 0 and residuals r_i = a_i·θ_i − b_i:
//!
//! ```text
//! L_ft(θ)       = Π_{i=1..n} r_i²
//! ∂L_ft/∂θ_i    = 2·a_i·r_i · Π_{j≠i} r_j²
//! ```
//!
//! Its global minima (L_ft = 0) are the hyperplanes θ_i = b_i/a_i. The one
//! nearest to θ_pre = 0 is that of the largest a_i/b_i, at distance
//! min_i b_i/a_i; at θ = 0 the gradient is ∂_i = −2·(a_i/b_i)·Π_j b_j², so
//! the largest |gradient| entry is exactly that coordinate, which is why
//! MoFO with α = 1/n finds the nearest minimum (Theorem 2).
//!
//! The synthetic experiment draws a_i = |N(0,1)| + 0.3 and
//! b_i = |N(0,1)| + 0.1 ([`Example1::draw`]).

use rand::Rng;

/// Errors in the definition of an Example 1 loss.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Example1Error {
    /// `a` and `b` have different lengths.
    #[error("a has {a} entries but b has {b}")]
    Length {
        /// Length of a.
        a: usize,
        /// Length of b.
        b: usize,
    },
    /// No coordinate at all.
    #[error("the dimension n must be at least 1")]
    Empty,
    /// A coefficient is not a finite positive number.
    #[error("{name}[{index}] = {value} must be finite and > 0")]
    Coefficient {
        /// "a" or "b".
        name: &'static str,
        /// Position.
        index: usize,
        /// Value given.
        value: f64,
    },
}

/// L_ft(θ) = Π (a_i·θ_i − b_i)² and L_pre(θ) = ½‖θ‖².
#[derive(Clone, Debug, PartialEq)]
pub struct Example1 {
    a: Vec<f64>,
    b: Vec<f64>,
}

/// A standard normal draw (Box–Muller on two uniforms of `rng`).
pub fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    // u1 in (0, 1] so the logarithm is finite.
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

impl Example1 {
    /// The loss with coefficients `a` and `b` (same length ≥ 1, all > 0).
    pub fn new(a: Vec<f64>, b: Vec<f64>) -> Result<Self, Example1Error> {
        if a.len() != b.len() {
            return Err(Example1Error::Length {
                a: a.len(),
                b: b.len(),
            });
        }
        if a.is_empty() {
            return Err(Example1Error::Empty);
        }
        for (name, v) in [("a", &a), ("b", &b)] {
            if let Some((index, &value)) = v
                .iter()
                .enumerate()
                .find(|(_, x)| !(x.is_finite() && **x > 0.0))
            {
                return Err(Example1Error::Coefficient { name, index, value });
            }
        }
        Ok(Example1 { a, b })
    }

    /// The paper's random instance (Appendix B.5): a_i = |N(0,1)| + 0.3,
    /// b_i = |N(0,1)| + 0.1, drawn a_1, b_1, a_2, b_2, ... from `rng`.
    pub fn draw<R: Rng + ?Sized>(n: usize, rng: &mut R) -> Result<Self, Example1Error> {
        let mut a = Vec::with_capacity(n);
        let mut b = Vec::with_capacity(n);
        for _ in 0..n {
            a.push(standard_normal(rng).abs() + 0.3);
            b.push(standard_normal(rng).abs() + 0.1);
        }
        Self::new(a, b)
    }

    /// The dimension n.
    pub fn dim(&self) -> usize {
        self.a.len()
    }

    /// The coefficients a.
    pub fn a(&self) -> &[f64] {
        &self.a
    }

    /// The coefficients b.
    pub fn b(&self) -> &[f64] {
        &self.b
    }

    /// L_ft(θ) = Π (a_i·θ_i − b_i)².
    pub fn ft_loss(&self, theta: &[f64]) -> f64 {
        debug_assert_eq!(theta.len(), self.dim());
        self.residuals(theta).map(|r| r * r).product()
    }

    /// ∇L_ft(θ), computed with prefix and suffix products (no division, so a
    /// zero residual is fine).
    pub fn ft_grad(&self, theta: &[f64]) -> Vec<f64> {
        let r: Vec<f64> = self.residuals(theta).collect();
        let n = r.len();
        let mut prefix = vec![1.0; n + 1];
        for i in 0..n {
            prefix[i + 1] = prefix[i] * r[i] * r[i];
        }
        let mut grad = vec![0.0; n];
        let mut suffix = 1.0;
        for i in (0..n).rev() {
            grad[i] = 2.0 * self.a[i] * r[i] * prefix[i] * suffix;
            suffix *= r[i] * r[i];
        }
        grad
    }

    /// L_pre(θ) = ½‖θ‖².
    pub fn pre_loss(theta: &[f64]) -> f64 {
        0.5 * theta.iter().map(|t| t * t).sum::<f64>()
    }

    /// ‖θ − θ_pre‖_2 = ‖θ‖_2.
    pub fn distance(theta: &[f64]) -> f64 {
        theta.iter().map(|t| t * t).sum::<f64>().sqrt()
    }

    /// The coordinate i* of largest a_i/b_i (smallest index on ties) and the
    /// distance b_{i*}/a_{i*} of its hyperplane from 0: the minimum of L_ft
    /// nearest to θ_pre.
    pub fn nearest_minimum(&self) -> (usize, f64) {
        let mut best = 0;
        for i in 1..self.dim() {
            if self.a[i] / self.b[i] > self.a[best] / self.b[best] {
                best = i;
            }
        }
        (best, self.b[best] / self.a[best])
    }

    fn residuals<'a>(&'a self, theta: &'a [f64]) -> impl Iterator<Item = f64> + 'a {
        self.a
            .iter()
            .zip(&self.b)
            .zip(theta)
            .map(|((a, b), t)| a * t - b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn gradient_matches_finite_differences() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for n in 1..6 {
            let p = Example1::draw(n, &mut rng).unwrap();
            let theta: Vec<f64> = (0..n).map(|_| standard_normal(&mut rng)).collect();
            let g = p.ft_grad(&theta);
            for i in 0..n {
                let h = 1e-6;
                let mut tp = theta.clone();
                let mut tm = theta.clone();
                tp[i] += h;
                tm[i] -= h;
                let fd = (p.ft_loss(&tp) - p.ft_loss(&tm)) / (2.0 * h);
                assert!(
                    (fd - g[i]).abs() <= 1e-6 * (1.0 + g[i].abs()),
                    "{fd} vs {}",
                    g[i]
                );
            }
        }
    }

    #[test]
    fn minima_and_validation() {
        let p = Example1::new(vec![1.0, 2.0, 0.5], vec![1.0, 1.0, 1.0]).unwrap();
        assert_eq!(p.nearest_minimum(), (1, 0.5));
        assert_eq!(p.ft_loss(&[0.0, 0.5, 0.0]), 0.0);
        assert_eq!(p.ft_grad(&[1.0, 0.5, 0.0]), vec![0.0, 0.0, 0.0]);
        // At 0 the largest |gradient| is at the largest a/b.
        let g = p.ft_grad(&[0.0; 3]);
        assert!(g[1].abs() > g[0].abs() && g[0].abs() > g[2].abs());
        assert!(Example1::new(vec![1.0], vec![1.0, 2.0]).is_err());
        assert!(Example1::new(vec![], vec![]).is_err());
        assert!(Example1::new(vec![1.0, -1.0], vec![1.0, 2.0]).is_err());
        assert!(Example1::new(vec![1.0], vec![f64::NAN]).is_err());
        assert_eq!(Example1::pre_loss(&[3.0, 4.0]), 12.5);
        assert_eq!(Example1::distance(&[3.0, 4.0]), 5.0);
    }
}
