//! Shared helper of the theory tests: the crate's own full-batch Adam and
//! MoFO (AdamW with the momentum filter, no weight decay) on one f64 vector.
//! Each test binary uses part of it.
#![allow(dead_code)]

use mofo::norm::Partition as NormPartition;
use mofo::optim::{Adam, Momentum, NoFilter, OptimConfig, Optimizer, Partition, Schedule};
use mofo::ParamStore;

/// Which optimizer.
#[derive(Clone, Debug)]
pub enum Kind {
    /// Adam (β = (0.9, 0.999), ε = 1e-8, no decay).
    Adam,
    /// MoFO: the same Adam with the momentum filter at fraction α, blocks
    /// given by a partition into consecutive ranges.
    Mofo {
        /// Fraction α.
        alpha: f64,
        /// Blocks (consecutive ranges of the vector).
        partition: NormPartition,
    },
}

enum Opt {
    Adam(Optimizer<NoFilter, Adam, f64>),
    Mofo(Optimizer<Momentum, Adam, f64>),
}

/// One optimizer run on a vector θ stored as the tensor "theta".
pub struct OptRun {
    params: ParamStore<f64>,
    grads: ParamStore<f64>,
    opt: Opt,
}

impl OptRun {
    /// Starts at `x0` with learning rate `lr` (η/√t if `inverse_sqrt`).
    pub fn new(kind: Kind, x0: Vec<f64>, lr: f64, inverse_sqrt: bool) -> Self {
        let n = x0.len();
        let mut params = ParamStore::new();
        params.insert_vec("theta", &[n], x0).unwrap();
        let grads = params.zeros_like();
        let mut config = OptimConfig::default();
        if inverse_sqrt {
            config.schedule = Schedule::InverseSqrt;
        }
        let base = Adam::new(lr);
        let opt = match kind {
            Kind::Adam => Opt::Adam(Optimizer::new(NoFilter, base, config, &params).unwrap()),
            Kind::Mofo { alpha, partition } => {
                let sizes: Vec<usize> = partition.blocks().iter().map(|b| b.len()).collect();
                // The crate's optimizer takes consecutive blocks; check that is what we have.
                let mut next = 0;
                for b in partition.blocks() {
                    assert_eq!(b[0], next, "blocks must be consecutive ranges");
                    next += b.len();
                }
                config.partition = Partition::custom(move |_, _| sizes.clone());
                Opt::Mofo(Optimizer::new(Momentum::new(alpha), base, config, &params).unwrap())
            }
        };
        OptRun { params, grads, opt }
    }

    /// The current θ.
    pub fn theta(&self) -> &[f64] {
        self.params.get("theta").unwrap().as_slice()
    }

    /// The first moment m_t (Adam's `exp_avg`) after the last step.
    pub fn momentum(&self) -> &[f64] {
        match &self.opt {
            Opt::Adam(o) => o.buffer("theta", "exp_avg"),
            Opt::Mofo(o) => o.buffer("theta", "exp_avg"),
        }
        .expect("Adam keeps exp_avg")
    }

    /// One step on the full gradient `g`.
    pub fn step(&mut self, g: &[f64]) {
        self.grads
            .get_mut("theta")
            .unwrap()
            .as_slice_mut()
            .copy_from_slice(g);
        match &mut self.opt {
            Opt::Adam(o) => o.step(&mut self.params, &self.grads).map(|_| ()),
            Opt::Mofo(o) => o.step(&mut self.params, &self.grads).map(|_| ()),
        }
        .unwrap();
    }
}
