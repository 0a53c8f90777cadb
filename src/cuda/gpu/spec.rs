//! The GPU optimizer's description from the CPU's (the base and filter of
//! a [`crate::optim::OptimizerSpec`]), so that one spec runs on either
//! device with the same hyperparameters.

use super::context::GpuError;
use super::optim::{GpuBase, GpuFilter};
use crate::optim::{Adam, BaseSpec, FilterSpec};

impl GpuBase {
    /// The GPU base with the hyperparameters of `spec` (every base has one).
    pub fn from_spec(spec: &BaseSpec) -> GpuBase {
        let adam = |a: &Adam| GpuBase::Adam {
            lr: a.lr,
            beta1: a.betas.0,
            beta2: a.betas.1,
            eps: a.eps,
            weight_decay: a.weight_decay,
            decoupled: a.decoupled_weight_decay,
            amsgrad: a.amsgrad,
        };
        match spec {
            BaseSpec::Adam(a) => adam(a),
            BaseSpec::Adamw(a) => adam(&Adam::from(a.clone())),
            BaseSpec::Nadam(b) => GpuBase::NAdam {
                lr: b.lr,
                beta1: b.betas.0,
                beta2: b.betas.1,
                eps: b.eps,
                weight_decay: b.weight_decay,
                momentum_decay: b.momentum_decay,
                decoupled: b.decoupled_weight_decay,
            },
            BaseSpec::Rmsprop(b) => GpuBase::RmsProp {
                lr: b.lr,
                alpha: b.alpha,
                eps: b.eps,
                weight_decay: b.weight_decay,
                momentum: b.momentum,
                centered: b.centered,
            },
            BaseSpec::Sgd(b) => GpuBase::Sgd {
                lr: b.lr,
                momentum: b.momentum,
                dampening: b.dampening,
                weight_decay: b.weight_decay,
                nesterov: b.nesterov,
            },
            BaseSpec::Lion(b) => GpuBase::Lion {
                lr: b.lr,
                beta1: b.betas.0,
                beta2: b.betas.1,
                weight_decay: b.weight_decay,
            },
        }
    }
}

impl GpuFilter {
    /// The GPU filter and its fraction α of `spec` (1 for no filter). The
    /// random and half-fine-tuning filters run on the CPU only: a typed error.
    pub fn from_spec(spec: &FilterSpec) -> Result<(GpuFilter, f64), GpuError> {
        Ok(match *spec {
            FilterSpec::None => (GpuFilter::None, 1.0),
            FilterSpec::Momentum { fraction } => (GpuFilter::Momentum, fraction),
            FilterSpec::Gradient { fraction } => (GpuFilter::Gradient, fraction),
            FilterSpec::Mv { fraction } => (GpuFilter::Mv, fraction),
            FilterSpec::Gv { fraction } => (GpuFilter::Gv, fraction),
            FilterSpec::Random { .. } | FilterSpec::Hft { .. } => {
                return Err(GpuError::Invalid(
                    "the random and half-fine-tuning filters run on the CPU only".into(),
                ))
            }
        })
    }
}
