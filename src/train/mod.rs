//! Training: the loop, checkpoints and resume, metrics, progress, and the
//! measures of how far training moved a model.
//!
//! - [`trainer`]: the loop (gradient accumulation, schedule, evaluation,
//!   checkpoints, non-finite policy);
//! - [`checkpoint`]: atomic checkpoints (model in Hugging Face format,
//!   optimizer state, loop state) and `--resume`;
//! - [`model`]: the two traits the loop is written against
//!   ([`TrainableModel`], [`TrainOptimizer`]);
//! - [`metrics`]: JSON-lines metrics; [`progress`]: progress bars;
//! - [`drift`]: distance to the pre-trained model and share of updated
//!   entries (SPEC.md section 4).

pub mod checkpoint;
pub mod drift;
pub mod error;
pub mod llama;
pub mod metrics;
pub mod model;
pub mod progress;
pub mod trainer;

pub use checkpoint::{latest_checkpoint, load_checkpoint, save_checkpoint, TrainState};
pub use drift::{distance_to_reference, first_non_finite, updated_share, SIGNIFICANT_UPDATE};
pub use error::TrainError;
pub use model::{Bound, TrainOptimizer, TrainableModel};
pub use trainer::{EvalFn, NonFinitePolicy, TrainOptions, Trainer};
