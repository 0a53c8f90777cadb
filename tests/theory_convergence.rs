//! Theorem 1 of the paper (SPEC.md section 3): full-batch MoFO with
//! lr_t = η/√t and β1 < √β2 on an L-smooth loss bounded below satisfies
//!
//! ```text
//! min_{t≤T} ‖∇L(θ_t)‖_α = O(log T / √T).
//! ```
//!
//! Checked with the crate's MoFO (AdamW + momentum filter, no decay, the
//! crate's η/√t schedule) on three families of random smooth non-convex (or
//! coupled) losses, in f64 with small n: the scaled quantity
//! min_{t≤T}‖∇L‖_α·√T/log T must not grow from T = 256 to T = 4096, and the
//! minimum gradient must fall below a tolerance (a fraction of the initial
//! gradient's L_α norm). Every step is also checked to move only entries of
//! S(m_t), the L_α filter of the optimizer's own first moment.

use mofo::norm::{AlphaNorm, Partition};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod theory_common;
use theory_common::{Kind, OptRun};

/// A smooth loss given by its gradient (the value is never needed).
trait Loss {
    fn dim(&self) -> usize;
    fn grad(&self, x: &[f64]) -> Vec<f64>;
}

/// L(θ) = ½(θ − c)ᵀ A (θ − c) with A = MᵀM + 0.1·I, M dense random: every
/// coordinate is coupled to every other.
struct CoupledQuadratic {
    a: Vec<Vec<f64>>,
    c: Vec<f64>,
}

impl CoupledQuadratic {
    fn draw(n: usize, rng: &mut ChaCha8Rng) -> Self {
        let m: Vec<Vec<f64>> = (0..n)
            .map(|_| (0..n).map(|_| rng.random_range(-1.0..1.0)).collect())
            .collect();
        let a = (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| {
                        (0..n).map(|k| m[k][i] * m[k][j]).sum::<f64>()
                            + if i == j { 0.1 } else { 0.0 }
                    })
                    .collect()
            })
            .collect();
        let c = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        CoupledQuadratic { a, c }
    }
}

impl Loss for CoupledQuadratic {
    fn dim(&self) -> usize {
        self.c.len()
    }
    fn grad(&self, x: &[f64]) -> Vec<f64> {
        let d: Vec<f64> = x.iter().zip(&self.c).map(|(x, c)| x - c).collect();
        self.a
            .iter()
            .map(|row| row.iter().zip(&d).map(|(a, d)| a * d).sum())
            .collect()
    }
}

/// L(θ) = Σ_i log(1 + (θ_i − c_i)²) + ½·ε·Σ_i (θ_i − θ_{i+1})²: non-convex
/// (concave beyond |θ_i − c_i| > 1), bounded below, smooth; the small chain
/// coupling ε = 0.05 ties neighbours together.
struct LogCauchy {
    c: Vec<f64>,
}

impl Loss for LogCauchy {
    fn dim(&self) -> usize {
        self.c.len()
    }
    fn grad(&self, x: &[f64]) -> Vec<f64> {
        let n = x.len();
        let mut g: Vec<f64> = (0..n)
            .map(|i| {
                let d = x[i] - self.c[i];
                2.0 * d / (1.0 + d * d)
            })
            .collect();
        for i in 0..n - 1 {
            let r = 0.05 * (x[i] - x[i + 1]);
            g[i] += r;
            g[i + 1] -= r;
        }
        g
    }
}

/// Rosenbrock-like chain L(θ) = Σ_i (1 − θ_i)² + 10·Σ_i (θ_{i+1} − θ_i²)²
/// (non-convex, curved valley; smooth on the bounded region the runs visit).
struct Rosenbrock {
    n: usize,
}

impl Loss for Rosenbrock {
    fn dim(&self) -> usize {
        self.n
    }
    fn grad(&self, x: &[f64]) -> Vec<f64> {
        let n = self.n;
        let mut g = vec![0.0; n];
        for i in 0..n {
            g[i] -= 2.0 * (1.0 - x[i]);
            if i + 1 < n {
                let r = x[i + 1] - x[i] * x[i];
                g[i + 1] += 20.0 * r;
                g[i] -= 40.0 * r * x[i];
            }
        }
        g
    }
}

/// min_{t≤T} ‖∇L(θ_t)‖_α over the first `t` entries of `history`.
fn min_upto(history: &[f64], t: usize) -> f64 {
    history[..t].iter().copied().fold(f64::INFINITY, f64::min)
}

fn scaled(history: &[f64], t: usize) -> f64 {
    min_upto(history, t) * (t as f64).sqrt() / (t as f64).ln()
}

/// Runs MoFO for 4096 steps from x0 and checks the rate and the tolerance.
fn check_rate(
    family: &str,
    loss: &dyn Loss,
    x0: Vec<f64>,
    eta: f64,
    norm: &AlphaNorm,
    rel_tol: f64,
) {
    assert_eq!(x0.len(), loss.dim());
    let kind = Kind::Mofo {
        alpha: norm.alpha(),
        partition: norm.partition().clone(),
    };
    let mut run = OptRun::new(kind, x0, eta, true);
    let mut history = Vec::with_capacity(4096);
    for _ in 0..4096 {
        let g = loss.grad(run.theta());
        history.push(norm.norm(&g).unwrap());
        let before = run.theta().to_vec();
        run.step(&g);
        // MoFO's update is h_α of the momentum: only entries of S(m_t) move.
        let selected = norm.mask(run.momentum()).unwrap();
        for (i, (b, a)) in before.iter().zip(run.theta()).enumerate() {
            assert!(
                b == a || selected[i],
                "{family}: entry {i} outside S(m_t) moved"
            );
        }
    }
    let (s256, s4096) = (scaled(&history, 256), scaled(&history, 4096));
    let g0 = history[0];
    let end = min_upto(&history, 4096);
    println!(
        "{family} α={} η={eta}: ‖∇L(θ_1)‖_α = {g0:.3e}, min to 256 {:.3e}, to 4096 {end:.3e}; scaled {s256:.3e} → {s4096:.3e}",
        norm.alpha(),
        min_upto(&history, 256)
    );
    assert!(
        s4096 <= s256,
        "{family}: min‖∇L‖_α·√T/log T grew from {s256:e} (T=256) to {s4096:e} (T=4096)"
    );
    assert!(
        end <= rel_tol * g0,
        "{family}: min‖∇L‖_α = {end:e} not below {rel_tol}·{g0:e}"
    );
}

fn norms(n: usize) -> Vec<AlphaNorm> {
    vec![
        AlphaNorm::new(Partition::whole(n), 0.25).unwrap(),
        AlphaNorm::new(Partition::chunks(n, n / 2).unwrap(), 0.5).unwrap(),
    ]
}

#[test]
fn theorem1_coupled_quadratics() {
    let mut rng = ChaCha8Rng::seed_from_u64(101);
    for _ in 0..3 {
        let n = 8;
        let loss = CoupledQuadratic::draw(n, &mut rng);
        let x0: Vec<f64> = (0..n).map(|_| rng.random_range(-2.0..2.0)).collect();
        for norm in norms(n) {
            check_rate("quadratic", &loss, x0.clone(), 0.2, &norm, 1e-2);
        }
    }
}

#[test]
fn theorem1_sums_of_log_cauchy() {
    let mut rng = ChaCha8Rng::seed_from_u64(102);
    for _ in 0..3 {
        let n = 8;
        let loss = LogCauchy {
            c: (0..n).map(|_| rng.random_range(-1.0..1.0)).collect(),
        };
        let x0: Vec<f64> = (0..n).map(|_| rng.random_range(-2.0..2.0)).collect();
        for norm in norms(n) {
            check_rate("log-cauchy", &loss, x0.clone(), 0.1, &norm, 1e-2);
        }
    }
}

#[test]
fn theorem1_rosenbrock_chains() {
    let mut rng = ChaCha8Rng::seed_from_u64(103);
    for _ in 0..3 {
        let n = 4;
        let loss = Rosenbrock { n };
        let x0: Vec<f64> = (0..n).map(|_| rng.random_range(-1.5..1.5)).collect();
        for norm in norms(n) {
            check_rate("rosenbrock", &loss, x0.clone(), 0.2, &norm, 1e-2);
        }
    }
}
