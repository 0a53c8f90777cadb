//! Optimizer algebra: `Optimizer<Filter, Base>` (see SPEC.md section 2 and
//! docs/optimizer.md).
//!
//! One step, per block b of d_b entries with fraction α:
//!
//! ```text
//! state ← Base.update(state, g)              every entry, as the plain base would
//! S_b   ← top-k_b of Filter.score            k_b = min(d_b, max(1, ⌈α·d_b − 1e-9⌉)), ties: smaller index
//! θ_i   ← θ_i − u_i  for i ∈ S_b             others unchanged (or decayed, scope All)
//! ```
//!
//! # Core API
//!
//! ```
//! use mofo::optim::{Adam, Momentum, Optimizer, OptimConfig};
//! use mofo::ParamStore;
//!
//! let mut params = ParamStore::<f32>::new();
//! params.insert_vec("w", &[2, 3], vec![0.5; 6]).unwrap();
//! let mut grads = params.zeros_like();
//! grads.get_mut("w").unwrap().as_slice_mut().copy_from_slice(&[1., -2., 3., -4., 5., -6.]);
//!
//! // MoFO = AdamW + momentum filter with α = 0.5 (3 of 6 entries per step).
//! let mut opt = Optimizer::new(Momentum::new(0.5), Adam::adamw(1e-2), OptimConfig::default(), &params).unwrap();
//! let stats = opt.step(&mut params, &grads).unwrap();
//! assert_eq!(stats.selected, 3);
//! ```
//!
//! - [`Optimizer::new`]`(filter, base, config, &params)` → `Result<Optimizer, OptimError>`;
//!   [`Optimizer::simple`] uses the default [`OptimConfig`].
//! - [`Optimizer::step`]`(&mut params, &grads)` → `Result<StepStats, OptimError>`;
//!   [`Optimizer::step_finite`]`(&mut params, FiniteGrads::check(&grads)?)` on
//!   gradients the caller has checked (the step then reads them once).
//! - [`Optimizer::set_schedule`], [`Optimizer::set_lr`], [`Optimizer::save`], [`Optimizer::load`].
//! - Bases: [`Adam`] (Adam/AdamW/AMSGrad), [`NAdam`], [`RmsProp`], [`Sgd`], [`Lion`].
//! - Filters: [`Momentum`], [`Gradient`], [`Mv`], [`Gv`], [`Random`], [`HalfFineTuning`], [`NoFilter`].
//! - Runtime selection: [`OptimizerSpec`] → `Box<dyn DynOptimizer<T>>` (dispatch once per step).

pub mod base;
pub mod error;
pub mod filter;
pub mod finite;
pub mod group;
pub mod layout;
mod optimizer;
pub mod partition;
pub mod schedule;
pub mod select;
pub mod spec;
mod state;
pub mod stats;
pub mod trace;
pub mod transform;
pub mod workload;

pub use base::{Adam, Base, Lion, NAdam, RmsProp, Sgd};
pub use error::OptimError;
pub use filter::{Filter, Gradient, Gv, HalfFineTuning, Momentum, Mv, NoFilter, Random};
pub use finite::{FiniteGrads, NonFiniteGrad};
pub use group::{GroupRule, NameMatch};
pub use optimizer::{
    pass0_histogram_bytes, DecayScope, HugePages, NonFinitePolicy, OptimConfig, Optimizer,
    SelectionPath,
};
pub use partition::Partition;
pub use schedule::Schedule;
pub use select::{selection_count, Cut, TopK};
pub use spec::{BaseSpec, DynOptimizer, FilterSpec, OptimizerSpec};
pub use stats::{BlockStats, StepPhases, StepStats};
pub use transform::{Clip, Pull};
