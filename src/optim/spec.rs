//! Runtime-selectable optimizers: an [`OptimizerSpec`] (serde, from JSON or
//! TOML, or from a method name) builds a `Box<dyn DynOptimizer<T>>`. The
//! dynamic dispatch happens once per step; inside, the chosen
//! `Optimizer<F, B, T>` is fully monomorphised.
//!
//! Method names the experiments use ([`OptimizerSpec::method`]):
//!
//! | method | base | filter | extra |
//! |---|---|---|---|
//! | `adam` / `adamw` | Adam / AdamW | none | |
//! | `mofo` | AdamW | momentum | |
//! | `lion` | Lion | none | |
//! | `lion_mofo` | Lion | momentum | |
//! | `random_bcd` | AdamW | random | |
//! | `grad_bcd` | AdamW | gradient | |
//! | `mv_bcd` | AdamW | mv | |
//! | `gv_bcd` | AdamW | gv | |
//! | `hft` | AdamW | half fine-tuning | |
//! | `l1_reg` / `l2_reg` | AdamW | none | L1 / L2 pull toward θ_pre |
//! | `nadam` / `rmsprop` / `sgd` | NAdam / RMSProp / SGD (momentum 0.9) | none | |

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::base::{Adam, Base, Lion, NAdam, RmsProp, Sgd};
use super::filter::{Filter, Gradient, Gv, HalfFineTuning, Momentum, Mv, NoFilter, Random};
use super::finite::FiniteGrads;
use super::group::GroupRule;
use super::partition::Partition;
use super::schedule::Schedule;
use super::stats::StepStats;
use super::transform::{Clip, Pull};
use super::{DecayScope, NonFinitePolicy, OptimConfig, OptimError, Optimizer};
use crate::{ParamStore, Scalar};

/// AdamW's hyperparameters with AdamW's defaults (wd 1e-2, decoupled).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdamWParams {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// (β1, β2) (default (0.9, 0.999)).
    pub betas: (f64, f64),
    /// ε (default 1e-8).
    pub eps: f64,
    /// Decoupled weight decay (default 1e-2).
    pub weight_decay: f64,
    /// AMSGrad (default false).
    pub amsgrad: bool,
}

impl Default for AdamWParams {
    fn default() -> Self {
        let a = Adam::adamw(1e-3);
        AdamWParams {
            lr: a.lr,
            betas: a.betas,
            eps: a.eps,
            weight_decay: a.weight_decay,
            amsgrad: a.amsgrad,
        }
    }
}

impl From<AdamWParams> for Adam {
    fn from(p: AdamWParams) -> Adam {
        Adam {
            lr: p.lr,
            betas: p.betas,
            eps: p.eps,
            weight_decay: p.weight_decay,
            decoupled_weight_decay: true,
            amsgrad: p.amsgrad,
        }
    }
}

/// The base, by kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BaseSpec {
    /// Adam (coupled L2 unless `decoupled_weight_decay`).
    Adam(Adam),
    /// AdamW.
    Adamw(AdamWParams),
    /// NAdam.
    Nadam(NAdam),
    /// RMSProp.
    Rmsprop(RmsProp),
    /// SGD.
    Sgd(Sgd),
    /// Lion.
    Lion(Lion),
}

/// The filter, by kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FilterSpec {
    /// No filter.
    None,
    /// MoFO's momentum filter.
    Momentum {
        /// α.
        fraction: f64,
    },
    /// Gradient filter.
    Gradient {
        /// α.
        fraction: f64,
    },
    /// MV filter.
    Mv {
        /// α.
        fraction: f64,
    },
    /// GV filter.
    Gv {
        /// α.
        fraction: f64,
    },
    /// Random BCD.
    Random {
        /// α.
        fraction: f64,
        /// Seed.
        #[serde(default)]
        seed: u64,
    },
    /// Half fine-tuning.
    Hft {
        /// Seed.
        #[serde(default)]
        seed: u64,
    },
}

/// A schedule that can be written in a file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScheduleSpec {
    /// Constant.
    #[default]
    Constant,
    /// Linear warmup.
    LinearWarmup {
        /// Warmup steps.
        warmup: u64,
    },
    /// Warmup + cosine to a floor.
    WarmupCosine {
        /// Warmup steps.
        warmup: u64,
        /// Step where the floor is reached.
        total: u64,
        /// Final lr.
        floor: f64,
    },
    /// η/√t.
    InverseSqrt,
    /// Explicit lr per step (for the base lr).
    Table {
        /// lr at steps 1, 2, ...
        lrs: Vec<f64>,
    },
}

/// A partition that can be written in a file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PartitionSpec {
    /// One block per tensor.
    #[default]
    PerTensor,
    /// q/k/v split by head.
    PerHead {
        /// Rows per head.
        head_dim: usize,
    },
    /// One block per group.
    Global,
    /// Fixed-size chunks.
    Chunks {
        /// Chunk size.
        size: usize,
    },
}

/// A complete optimizer description.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimizerSpec {
    /// The base.
    pub base: BaseSpec,
    /// The filter.
    #[serde(default = "no_filter")]
    pub filter: FilterSpec,
    /// Group rules.
    #[serde(default)]
    pub groups: Vec<GroupRule>,
    /// Decay scope.
    #[serde(default)]
    pub decay_scope: DecayScope,
    /// Schedule.
    #[serde(default)]
    pub schedule: ScheduleSpec,
    /// Partition.
    #[serde(default)]
    pub partition: PartitionSpec,
    /// Clipping.
    #[serde(default)]
    pub clip: Clip,
    /// Pull toward θ_pre.
    #[serde(default)]
    pub pull: Option<Pull>,
    /// Non-finite policy.
    #[serde(default)]
    pub non_finite: NonFinitePolicy,
    /// Selection tracking.
    #[serde(default)]
    pub track_selection: bool,
}

fn no_filter() -> FilterSpec {
    FilterSpec::None
}

impl OptimizerSpec {
    /// A spec with the given base and filter and default everything else.
    pub fn new(base: BaseSpec, filter: FilterSpec) -> Self {
        OptimizerSpec {
            base,
            filter,
            groups: Vec::new(),
            decay_scope: DecayScope::default(),
            schedule: ScheduleSpec::default(),
            partition: PartitionSpec::default(),
            clip: Clip::default(),
            pull: None,
            non_finite: NonFinitePolicy::default(),
            track_selection: false,
        }
    }

    /// The spec of a named method (see the module table) with learning rate
    /// `lr`, fraction α (filtered methods) or λ (`l1_reg`/`l2_reg`), and seed.
    pub fn method(name: &str, lr: f64, fraction: f64, seed: u64) -> Result<Self, OptimError> {
        let adamw = || {
            BaseSpec::Adamw(AdamWParams {
                lr,
                ..AdamWParams::default()
            })
        };
        let lion = || {
            BaseSpec::Lion(Lion {
                lr,
                ..Lion::default()
            })
        };
        let spec = match name {
            "adam" => Self::new(BaseSpec::Adam(Adam::new(lr)), FilterSpec::None),
            "adamw" => Self::new(adamw(), FilterSpec::None),
            "mofo" => Self::new(adamw(), FilterSpec::Momentum { fraction }),
            "lion" => Self::new(lion(), FilterSpec::None),
            "lion_mofo" => Self::new(lion(), FilterSpec::Momentum { fraction }),
            "random_bcd" => Self::new(adamw(), FilterSpec::Random { fraction, seed }),
            "grad_bcd" => Self::new(adamw(), FilterSpec::Gradient { fraction }),
            "mv_bcd" => Self::new(adamw(), FilterSpec::Mv { fraction }),
            "gv_bcd" => Self::new(adamw(), FilterSpec::Gv { fraction }),
            "hft" => Self::new(adamw(), FilterSpec::Hft { seed }),
            "l1_reg" | "l2_reg" => {
                let mut s = Self::new(adamw(), FilterSpec::None);
                s.pull = Some(if name == "l1_reg" {
                    Pull::L1 { lambda: fraction }
                } else {
                    Pull::L2 { lambda: fraction }
                });
                s
            }
            "nadam" => Self::new(
                BaseSpec::Nadam(NAdam {
                    lr,
                    ..NAdam::default()
                }),
                FilterSpec::None,
            ),
            "rmsprop" => Self::new(
                BaseSpec::Rmsprop(RmsProp {
                    lr,
                    ..RmsProp::default()
                }),
                FilterSpec::None,
            ),
            "sgd" => Self::new(
                BaseSpec::Sgd(Sgd {
                    lr,
                    momentum: 0.9,
                    ..Sgd::default()
                }),
                FilterSpec::None,
            ),
            other => {
                return Err(OptimError::Spec(format!(
                    "unknown method `{other}` (known: adam, adamw, mofo, lion, lion_mofo, random_bcd, grad_bcd, mv_bcd, gv_bcd, hft, l1_reg, l2_reg, nadam, rmsprop, sgd)"
                )))
            }
        };
        Ok(spec)
    }

    /// Parses a spec from JSON text.
    pub fn from_json(text: &str) -> Result<Self, OptimError> {
        serde_json::from_str(text).map_err(|e| OptimError::Spec(e.to_string()))
    }

    /// Parses a spec from TOML text.
    pub fn from_toml(text: &str) -> Result<Self, OptimError> {
        toml::from_str(text).map_err(|e| OptimError::Spec(e.to_string()))
    }

    fn base_lr(&self) -> f64 {
        match &self.base {
            BaseSpec::Adam(b) => b.lr,
            BaseSpec::Adamw(b) => b.lr,
            BaseSpec::Nadam(b) => b.lr,
            BaseSpec::Rmsprop(b) => b.lr,
            BaseSpec::Sgd(b) => b.lr,
            BaseSpec::Lion(b) => b.lr,
        }
    }

    /// The [`OptimConfig`] part of the spec.
    pub fn config(&self) -> OptimConfig {
        OptimConfig {
            groups: self.groups.clone(),
            partition: match &self.partition {
                PartitionSpec::PerTensor => Partition::PerTensor,
                PartitionSpec::PerHead { head_dim } => Partition::per_head(*head_dim),
                PartitionSpec::Global => Partition::Global,
                PartitionSpec::Chunks { size } => Partition::Chunks(*size),
            },
            decay_scope: self.decay_scope,
            schedule: match &self.schedule {
                ScheduleSpec::Constant => Schedule::Constant,
                ScheduleSpec::LinearWarmup { warmup } => Schedule::LinearWarmup { warmup: *warmup },
                ScheduleSpec::WarmupCosine {
                    warmup,
                    total,
                    floor,
                } => Schedule::WarmupCosine {
                    warmup: *warmup,
                    total: *total,
                    floor: *floor,
                },
                ScheduleSpec::InverseSqrt => Schedule::InverseSqrt,
                ScheduleSpec::Table { lrs } => Schedule::Table {
                    lrs: lrs.clone(),
                    reference: self.base_lr(),
                },
            },
            clip: self.clip,
            pull: self.pull,
            non_finite: self.non_finite,
            track_selection: self.track_selection,
            selection_path: Default::default(),
            huge_pages: Default::default(),
        }
    }

    /// Builds the optimizer for the tensors of `params`.
    pub fn build<T: Scalar>(
        &self,
        params: &ParamStore<T>,
    ) -> Result<Box<dyn DynOptimizer<T>>, OptimError> {
        self.build_with_config(self.config(), params)
    }

    /// Builds the spec's filter and base with `cfg` in place of
    /// [`OptimizerSpec::config`] (for settings the spec does not carry, such
    /// as [`OptimConfig::huge_pages`]).
    pub fn build_with_config<T: Scalar>(
        &self,
        cfg: OptimConfig,
        params: &ParamStore<T>,
    ) -> Result<Box<dyn DynOptimizer<T>>, OptimError> {
        match &self.base {
            BaseSpec::Adam(b) => with_filter(&self.filter, b.clone(), cfg, params),
            BaseSpec::Adamw(b) => with_filter(&self.filter, Adam::from(b.clone()), cfg, params),
            BaseSpec::Nadam(b) => with_filter(&self.filter, b.clone(), cfg, params),
            BaseSpec::Rmsprop(b) => with_filter(&self.filter, b.clone(), cfg, params),
            BaseSpec::Sgd(b) => with_filter(&self.filter, b.clone(), cfg, params),
            BaseSpec::Lion(b) => with_filter(&self.filter, b.clone(), cfg, params),
        }
    }
}

fn boxed<F: Filter, B: Base, T: Scalar>(
    f: F,
    b: B,
    cfg: OptimConfig,
    params: &ParamStore<T>,
) -> Result<Box<dyn DynOptimizer<T>>, OptimError> {
    Ok(Box::new(Optimizer::new(f, b, cfg, params)?))
}

fn with_filter<B: Base, T: Scalar>(
    filter: &FilterSpec,
    base: B,
    cfg: OptimConfig,
    params: &ParamStore<T>,
) -> Result<Box<dyn DynOptimizer<T>>, OptimError> {
    match *filter {
        FilterSpec::None => boxed(NoFilter, base, cfg, params),
        FilterSpec::Momentum { fraction } => boxed(Momentum::new(fraction), base, cfg, params),
        FilterSpec::Gradient { fraction } => boxed(Gradient::new(fraction), base, cfg, params),
        FilterSpec::Mv { fraction } => boxed(Mv::new(fraction), base, cfg, params),
        FilterSpec::Gv { fraction } => boxed(Gv::new(fraction), base, cfg, params),
        FilterSpec::Random { fraction, seed } => {
            boxed(Random::new(fraction, seed), base, cfg, params)
        }
        FilterSpec::Hft { seed } => boxed(HalfFineTuning::new(seed), base, cfg, params),
    }
}

/// An optimizer behind a trait object (one virtual call per step).
pub trait DynOptimizer<T: Scalar>: Send {
    /// One step (see [`Optimizer::step`]).
    fn step(
        &mut self,
        params: &mut ParamStore<T>,
        grads: &ParamStore<T>,
    ) -> Result<StepStats, OptimError>;
    /// [`Optimizer::step_finite`]: a step on gradients the caller has checked.
    fn step_finite(
        &mut self,
        params: &mut ParamStore<T>,
        grads: FiniteGrads<'_, T>,
    ) -> Result<StepStats, OptimError>;
    /// Steps taken.
    fn step_count(&self) -> u64;
    /// Replaces the schedule.
    fn set_schedule(&mut self, schedule: Schedule);
    /// Sets the base lr of every group.
    fn set_lr(&mut self, lr: f64) -> Result<(), OptimError>;
    /// Clears the ever-updated marks.
    fn reset_reference(&mut self);
    /// "filter+base", e.g. "momentum+adamw".
    fn describe(&self) -> String;
    /// How the fused step located its thresholds so far (see
    /// [`Optimizer::fused_path_counts`]).
    fn fused_path_counts(&self) -> (u64, u64, u64);
    /// Saves the state to a file (atomic write).
    fn save(&self, path: &Path) -> Result<(), OptimError>;
    /// Loads the state from a file written by the same kind of optimizer.
    fn load(&mut self, path: &Path) -> Result<(), OptimError>;
}

impl<F: Filter, B: Base, T: Scalar> DynOptimizer<T> for Optimizer<F, B, T> {
    fn step(
        &mut self,
        params: &mut ParamStore<T>,
        grads: &ParamStore<T>,
    ) -> Result<StepStats, OptimError> {
        Optimizer::step(self, params, grads)
    }
    fn step_finite(
        &mut self,
        params: &mut ParamStore<T>,
        grads: FiniteGrads<'_, T>,
    ) -> Result<StepStats, OptimError> {
        Optimizer::step_finite(self, params, grads)
    }
    fn step_count(&self) -> u64 {
        Optimizer::step_count(self)
    }
    fn set_schedule(&mut self, schedule: Schedule) {
        Optimizer::set_schedule(self, schedule)
    }
    fn set_lr(&mut self, lr: f64) -> Result<(), OptimError> {
        Optimizer::set_lr(self, lr)
    }
    fn reset_reference(&mut self) {
        Optimizer::reset_reference(self)
    }
    fn describe(&self) -> String {
        format!("{}+{}", self.filter.name(), self.base.name())
    }
    fn fused_path_counts(&self) -> (u64, u64, u64) {
        Optimizer::fused_path_counts(self)
    }
    fn save(&self, path: &Path) -> Result<(), OptimError> {
        Optimizer::save(self, path)
    }
    fn load(&mut self, path: &Path) -> Result<(), OptimError> {
        Optimizer::load(self, path)
    }
}
