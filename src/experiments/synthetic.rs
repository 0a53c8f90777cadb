//! The paper's synthetic experiment (Appendix B.5, Table 4) on the losses of
//! Example 1 ([`super::example1`]), run with the crate's own optimizers.
//!
//! For every seed s an instance is drawn (a_i = |N(0,1)| + 0.3,
//! b_i = |N(0,1)| + 0.1, from ChaCha8 seeded with s). Every optimizer starts
//! at θ_pre = 0 and steps on the full gradient of L_ft until
//!
//! ```text
//! L_ft(θ_t) < tol (1e-6)    or    t = max_iters (10 000)
//! ```
//!
//! For each optimizer the learning rate is chosen from a grid (1e-4 … 1e-1):
//! the lr that converges on the most seeds, then with the fewest mean
//! iterations (non-converged runs count as max_iters). At that lr the row
//! reports, averaged over seeds, the distance ‖θ − θ_pre‖_2 and
//! L_pre(θ) = ½‖θ‖², and how many seeds converged.
//!
//! Methods (one tensor "theta" of n entries, filters per tensor):
//! - `adam`: Adam (β = (0.9, 0.999), ε = 1e-8, no decay);
//! - `mofo`: Adam + momentum filter, α = 1/n (one coordinate per step);
//! - `lion`: Lion (β = (0.9, 0.99));
//! - `random_bcd`: Adam + random filter, α = 1/n;
//! - `hft`: Adam + half fine-tuning: each coordinate its own block, a random
//!   half of the blocks updated per step;
//! - `l1_pull`, `l2_pull`: Adam on L_ft with λ·sign(θ − θ_pre) or
//!   λ·(θ − θ_pre) added to the gradient (λ = `reg`).

use serde::Serialize;

use super::example1::{Example1, Example1Error};
use crate::optim::{
    Adam, Base, Filter, HalfFineTuning, Lion, Momentum, NoFilter, OptimConfig, OptimError,
    Optimizer, Partition, Pull, Random,
};
use crate::ParamStore;

/// Figures of the paper's Table 4 (averaged over three seeds), printed beside
/// ours for comparison: (distance, L_pre) for Adam and MoFO.
pub const PAPER_ADAM: (f64, f64) = (0.549, 0.151);
/// See [`PAPER_ADAM`].
pub const PAPER_MOFO: (f64, f64) = (0.275, 0.038);

/// Errors of the synthetic experiments.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The loss is ill-defined.
    #[error(transparent)]
    Problem(#[from] Example1Error),
    /// The optimizer rejected its configuration or a step.
    #[error("optimizer `{method}`: {message}")]
    Optimizer {
        /// Method name.
        method: &'static str,
        /// The optimizer's error, printed.
        message: String,
    },
    /// A bad experiment setting.
    #[error("invalid setting: {0}")]
    Setting(String),
}

/// An optimizer of the synthetic study.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// Adam.
    Adam,
    /// MoFO: Adam with the momentum filter, α = 1/n.
    Mofo,
    /// Lion.
    Lion,
    /// Adam with the random filter, α = 1/n.
    RandomBcd,
    /// Adam with half fine-tuning (random half of the coordinate blocks).
    Hft,
    /// Adam with an L1 pull toward θ_pre.
    L1Pull,
    /// Adam with an L2 pull toward θ_pre.
    L2Pull,
}

impl Method {
    /// Every method, in table order.
    pub const ALL: [Method; 7] = [
        Method::Adam,
        Method::Mofo,
        Method::Lion,
        Method::RandomBcd,
        Method::Hft,
        Method::L1Pull,
        Method::L2Pull,
    ];

    /// The name used in tables, JSON and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Method::Adam => "adam",
            Method::Mofo => "mofo",
            Method::Lion => "lion",
            Method::RandomBcd => "random_bcd",
            Method::Hft => "hft",
            Method::L1Pull => "l1_pull",
            Method::L2Pull => "l2_pull",
        }
    }

    /// The method called `name` (see [`Method::name`]).
    pub fn parse(name: &str) -> Result<Method, ExperimentError> {
        Method::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
                ExperimentError::Setting(format!(
                    "unknown optimizer `{name}` (known: {})",
                    names.join(", ")
                ))
            })
    }
}

/// Settings of one optimizer run.
#[derive(Clone, Debug, PartialEq)]
pub struct RunConfig {
    /// Learning rate (constant).
    pub lr: f64,
    /// Iteration budget.
    pub max_iters: usize,
    /// Stop when L_ft(θ) < tol.
    pub tol: f64,
    /// Seed of the random filters (random BCD, HFT).
    pub seed: u64,
    /// λ of the L1/L2 pull toward θ_pre.
    pub reg: f64,
    /// Keep every iterate in [`Run::path`].
    pub record_path: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            lr: 1e-2,
            max_iters: 10_000,
            tol: 1e-6,
            seed: 0,
            reg: 1e-3,
            record_path: false,
        }
    }
}

/// The largest dimension n the study accepts. Its loss is a product of n
/// factors, which under- or overflows an f64 long before this, and every
/// instance holds a few vectors of n entries: n = 10¹¹ aborted the process
/// when their allocation failed.
pub const MAX_N: usize = 1 << 20;

/// The most seeds (instances) the study accepts: every instance is drawn
/// and kept before the runs, and each seed runs every method at every lr.
pub const MAX_SEEDS: usize = 1 << 20;

/// `Err` naming the first run setting that cannot be honoured: a budget of
/// no step, or a tolerance or λ that is not a finite number ≥ 0 (a NaN
/// tolerance would never stop a path). The learning rates are checked by
/// the callers, with their grid.
pub fn check_run_settings(max_iters: usize, tol: f64, reg: f64) -> Result<(), ExperimentError> {
    if max_iters == 0 {
        return Err(ExperimentError::Setting(
            "max_iters must be at least 1".into(),
        ));
    }
    if !(tol.is_finite() && tol >= 0.0) {
        return Err(ExperimentError::Setting(format!(
            "tol {tol} must be finite and ≥ 0"
        )));
    }
    if !(reg.is_finite() && reg >= 0.0) {
        return Err(ExperimentError::Setting(format!(
            "reg (λ) {reg} must be finite and ≥ 0"
        )));
    }
    Ok(())
}

/// The outcome of one run.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// End point θ.
    pub theta: Vec<f64>,
    /// Steps taken.
    pub iterations: usize,
    /// Whether L_ft < tol was reached within the budget.
    pub converged: bool,
    /// L_ft at the end point.
    pub ft_loss: f64,
    /// Every iterate θ_0 = 0, θ_1, ... (empty unless asked for).
    pub path: Vec<Vec<f64>>,
}

/// Name of the single parameter tensor of the synthetic problems.
pub const THETA: &str = "theta";

/// Runs `method` from θ_pre = 0 on `problem` (full-batch gradients).
pub fn run_method(
    problem: &Example1,
    method: Method,
    cfg: &RunConfig,
) -> Result<Run, ExperimentError> {
    let n = problem.dim();
    let mut params = ParamStore::<f64>::new();
    params
        .insert_vec(THETA, &[n], vec![0.0; n])
        .map_err(|e| ExperimentError::Setting(e.to_string()))?;
    let mut grads = params.zeros_like();
    let mut opt = build_optimizer(method, &params, cfg)?;
    let mut path = Vec::new();
    let theta_of = |p: &ParamStore<f64>| p.as_slice()[0].as_slice().to_vec();
    let mut iterations = 0;
    loop {
        let theta = theta_of(&params);
        if cfg.record_path {
            path.push(theta.clone());
        }
        let loss = problem.ft_loss(&theta);
        if loss < cfg.tol || iterations >= cfg.max_iters || !loss.is_finite() {
            return Ok(Run {
                converged: loss < cfg.tol,
                ft_loss: loss,
                iterations,
                theta,
                path,
            });
        }
        grads.as_mut_slice()[0]
            .as_slice_mut()
            .copy_from_slice(&problem.ft_grad(&theta));
        opt.step(&mut params, &grads)?;
        iterations += 1;
    }
}

/// Settings of the whole synthetic study.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticConfig {
    /// Dimension n.
    pub n: usize,
    /// Number of seeds (instances); seeds are 0..seeds.
    pub seeds: usize,
    /// Learning-rate grid.
    pub lrs: Vec<f64>,
    /// Iteration budget.
    pub max_iters: usize,
    /// Convergence threshold on L_ft.
    pub tol: f64,
    /// λ of the L1/L2 pulls.
    pub reg: f64,
    /// Methods to run, in table order.
    pub methods: Vec<Method>,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            n: 4,
            seeds: 3,
            lrs: vec![1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1],
            max_iters: 10_000,
            tol: 1e-6,
            reg: 1e-3,
            methods: Method::ALL.to_vec(),
        }
    }
}

/// One row of the table (one optimizer at its chosen lr).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    /// Method name.
    pub optimizer: String,
    /// Mean over seeds of ‖θ − θ_pre‖_2.
    pub distance: f64,
    /// Mean over seeds of L_pre(θ) = ½‖θ‖².
    pub pretrain_loss: f64,
    /// Number of seeds that reached L_ft < tol.
    pub converged: usize,
    /// The chosen learning rate.
    pub lr: f64,
    /// Mean number of iterations at that lr.
    pub mean_iterations: f64,
    /// Mean over seeds of the nearest minimum's distance min_i b_i/a_i.
    pub nearest_distance: f64,
}

/// The whole study, as written by `--json` (format "mofo-synthetic/1").
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SyntheticReport {
    /// Always "mofo-synthetic/1".
    pub format: &'static str,
    /// Dimension n.
    pub n: usize,
    /// Number of seeds.
    pub seeds: usize,
    /// Iteration budget.
    pub max_iters: usize,
    /// Convergence threshold.
    pub tol: f64,
    /// λ of the pulls.
    pub reg: f64,
    /// The lr grid.
    pub lrs: Vec<f64>,
    /// One row per method.
    pub rows: Vec<Row>,
}

impl SyntheticReport {
    /// The row of `method`, if it was run.
    pub fn row(&self, method: Method) -> Option<&Row> {
        self.rows.iter().find(|r| r.optimizer == method.name())
    }
}

/// Runs the study: every method on every seed and lr, the lr picked per
/// method as described in the module docs.
pub fn run_study(cfg: &SyntheticConfig) -> Result<SyntheticReport, ExperimentError> {
    if cfg.n == 0 || cfg.seeds == 0 || cfg.lrs.is_empty() {
        return Err(ExperimentError::Setting(
            "n, seeds and the lr grid must be non-empty".into(),
        ));
    }
    if cfg.n > MAX_N || cfg.seeds > MAX_SEEDS {
        return Err(ExperimentError::Setting(format!(
            "n = {} and seeds = {} must be at most {MAX_N} and {MAX_SEEDS}",
            cfg.n, cfg.seeds
        )));
    }
    if let Some(lr) = cfg.lrs.iter().find(|lr| !(lr.is_finite() && **lr > 0.0)) {
        return Err(ExperimentError::Setting(format!("lr {lr} must be > 0")));
    }
    check_run_settings(cfg.max_iters, cfg.tol, cfg.reg)?;
    let problems: Vec<Example1> = (0..cfg.seeds as u64)
        .map(|s| Example1::draw(cfg.n, &mut instance_rng(s)))
        .collect::<Result<_, _>>()?;
    let nearest = problems.iter().map(|p| p.nearest_minimum().1).sum::<f64>() / cfg.seeds as f64;
    let mut rows = Vec::new();
    for &method in &cfg.methods {
        // (converged, mean iterations, runs) of the best lr so far.
        let mut best: Option<(usize, f64, f64, Vec<Run>)> = None;
        for &lr in &cfg.lrs {
            let runs: Vec<Run> = problems
                .iter()
                .enumerate()
                .map(|(s, p)| {
                    let rc = RunConfig {
                        lr,
                        max_iters: cfg.max_iters,
                        tol: cfg.tol,
                        seed: s as u64,
                        reg: cfg.reg,
                        record_path: false,
                    };
                    run_method(p, method, &rc)
                })
                .collect::<Result<_, _>>()?;
            let conv = runs.iter().filter(|r| r.converged).count();
            let iters = runs.iter().map(|r| r.iterations as f64).sum::<f64>() / runs.len() as f64;
            let better = match &best {
                None => true,
                Some((c, it, _, _)) => conv > *c || (conv == *c && iters < *it),
            };
            if better {
                best = Some((conv, iters, lr, runs));
            }
        }
        let (converged, mean_iterations, lr, runs) = best.expect("lr grid is non-empty");
        let k = runs.len() as f64;
        rows.push(Row {
            optimizer: method.name().to_string(),
            distance: runs
                .iter()
                .map(|r| Example1::distance(&r.theta))
                .sum::<f64>()
                / k,
            pretrain_loss: runs
                .iter()
                .map(|r| Example1::pre_loss(&r.theta))
                .sum::<f64>()
                / k,
            converged,
            lr,
            mean_iterations,
            nearest_distance: nearest,
        });
    }
    Ok(SyntheticReport {
        format: "mofo-synthetic/1",
        n: cfg.n,
        seeds: cfg.seeds,
        max_iters: cfg.max_iters,
        tol: cfg.tol,
        reg: cfg.reg,
        lrs: cfg.lrs.clone(),
        rows,
    })
}

/// The random generator of instance `seed`.
pub fn instance_rng(seed: u64) -> rand_chacha::ChaCha8Rng {
    use rand::SeedableRng;
    rand_chacha::ChaCha8Rng::seed_from_u64(seed)
}

/// The printed table: our rows, the paper's Adam/MoFO figures beside them,
/// and the Adam/MoFO ratios (ours and the paper's).
pub fn format_table(report: &SyntheticReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Synthetic experiment (paper App. B.5, Table 4): n = {}, {} seeds, stop at L_ft < {:e} or {} iterations",
        report.n, report.seeds, report.tol, report.max_iters
    );
    let _ = writeln!(
        s,
        "{:<11} {:>7} {:>9} {:>10} {:>10} {:>9} | {:>10} {:>10}",
        "optimizer", "lr", "converged", "distance", "L_pre", "iters", "paper dist", "paper Lpre"
    );
    for r in &report.rows {
        let paper = match r.optimizer.as_str() {
            "adam" => Some(PAPER_ADAM),
            "mofo" => Some(PAPER_MOFO),
            _ => None,
        };
        let (pd, pl) = match paper {
            Some((d, l)) => (format!("{d:.3}"), format!("{l:.3}")),
            None => ("-".into(), "-".into()),
        };
        let _ = writeln!(
            s,
            "{:<11} {:>7.0e} {:>7}/{} {:>10.4} {:>10.4} {:>9.0} | {:>10} {:>10}",
            r.optimizer,
            r.lr,
            r.converged,
            report.seeds,
            r.distance,
            r.pretrain_loss,
            r.mean_iterations,
            pd,
            pl
        );
    }
    if let Some(r) = report.rows.first() {
        let _ = writeln!(
            s,
            "nearest minimum (mean of min_i b_i/a_i): distance {:.4}, L_pre {:.4}",
            r.nearest_distance,
            0.5 * r.nearest_distance * r.nearest_distance
        );
    }
    if let (Some(adam), Some(mofo)) = (
        report.rows.iter().find(|r| r.optimizer == "adam"),
        report.rows.iter().find(|r| r.optimizer == "mofo"),
    ) {
        let _ = writeln!(
            s,
            "Adam/MoFO ratio: distance {:.2} (paper {:.2}), L_pre {:.2} (paper {:.2})",
            adam.distance / mofo.distance,
            PAPER_ADAM.0 / PAPER_MOFO.0,
            adam.pretrain_loss / mofo.pretrain_loss,
            PAPER_ADAM.1 / PAPER_MOFO.1
        );
    }
    s
}

/// One step of a crate optimizer on the synthetic parameters (the runtime
/// dispatch happens once per step, never per entry).
pub trait Stepper {
    /// Updates `params` from `grads`.
    fn step(
        &mut self,
        params: &mut ParamStore<f64>,
        grads: &ParamStore<f64>,
    ) -> Result<(), ExperimentError>;
}

/// The crate's optimizer `Optimizer<F, B, f64>` behind [`Stepper`].
struct CrateOptimizer<F: Filter, B: Base> {
    method: Method,
    opt: Optimizer<F, B, f64>,
}

impl<F: Filter, B: Base> Stepper for CrateOptimizer<F, B> {
    fn step(
        &mut self,
        params: &mut ParamStore<f64>,
        grads: &ParamStore<f64>,
    ) -> Result<(), ExperimentError> {
        self.opt
            .step(params, grads)
            .map(|_| ())
            .map_err(|e| optim_error(self.method, e))
    }
}

fn optim_error(method: Method, e: OptimError) -> ExperimentError {
    ExperimentError::Optimizer {
        method: method.name(),
        message: e.to_string(),
    }
}

fn boxed<F: Filter, B: Base>(
    method: Method,
    filter: F,
    base: B,
    config: OptimConfig,
    params: &ParamStore<f64>,
) -> Result<Box<dyn Stepper>, ExperimentError> {
    let opt = Optimizer::new(filter, base, config, params).map_err(|e| optim_error(method, e))?;
    Ok(Box::new(CrateOptimizer { method, opt }))
}

/// The crate optimizer of `method` for the tensors of `params` (each method
/// as listed in the module docs; lr, seed and λ from `cfg`). The filtered
/// methods keep one entry per step of a tensor of n entries (α = 1/n).
pub fn build_optimizer(
    method: Method,
    params: &ParamStore<f64>,
    cfg: &RunConfig,
) -> Result<Box<dyn Stepper>, ExperimentError> {
    let n = params
        .iter()
        .map(|p| p.value.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let alpha = 1.0 / n as f64;
    let adam = Adam::new(cfg.lr);
    let plain = OptimConfig::default();
    match method {
        Method::Adam => boxed(method, NoFilter, adam, plain, params),
        Method::Mofo => boxed(method, Momentum::new(alpha), adam, plain, params),
        Method::Lion => {
            let lion = Lion {
                lr: cfg.lr,
                ..Lion::default()
            };
            boxed(method, NoFilter, lion, plain, params)
        }
        Method::RandomBcd => boxed(method, Random::new(alpha, cfg.seed), adam, plain, params),
        Method::Hft => {
            let config = OptimConfig {
                partition: Partition::Chunks(1),
                ..OptimConfig::default()
            };
            boxed(method, HalfFineTuning::new(cfg.seed), adam, config, params)
        }
        Method::L1Pull | Method::L2Pull => {
            let lambda = cfg.reg;
            let pull = if method == Method::L1Pull {
                Pull::L1 { lambda }
            } else {
                Pull::L2 { lambda }
            };
            let config = OptimConfig {
                pull: Some(pull),
                ..OptimConfig::default()
            };
            boxed(method, NoFilter, adam, config, params)
        }
    }
}
