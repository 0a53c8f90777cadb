//! Errors of the training loop.

use std::path::PathBuf;

/// Errors of training, checkpointing and resuming.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Bad data or data configuration.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// A file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A loss or gradient was NaN or infinite and the policy is to stop.
    #[error("non-finite {what} at step {step}; the last good checkpoint is kept (try a lower --lr, or --on-nonfinite skip)")]
    NonFinite {
        /// "loss", "gradient of `<name>`" or "parameter `<name>`".
        what: String,
        /// The step.
        step: u64,
    },
    /// Too many steps were skipped for non-finite values.
    #[error("{skipped} steps skipped for non-finite loss or gradients (limit {limit}); stopping")]
    TooManySkipped {
        /// Steps skipped.
        skipped: u64,
        /// The limit.
        limit: u64,
    },
    /// The optimizer rejected a step or its state file.
    #[error("optimizer: {0}")]
    Optimizer(String),
    /// The model could not be saved or loaded.
    #[error("model: {0}")]
    Model(String),
    /// A checkpoint is missing, corrupt or does not match the run.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The checkpoint directory or file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A training option is out of range.
    #[error("invalid training option: {0}")]
    Config(String),
}

impl TrainError {
    /// An I/O error with context.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
