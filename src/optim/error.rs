//! Typed errors of the optimizer: bad hyperparameters, incompatible
//! filter/base combinations, layout mismatches, bad gradients and bad state
//! files. No optimizer entry point panics on user input.

use crate::ParamError;

/// Everything that can go wrong when building or stepping an optimizer.
#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    /// A hyperparameter is outside its valid range.
    #[error("invalid hyperparameter `{name}` = {value}: {reason}")]
    Hyperparameter {
        /// The hyperparameter (PyTorch's name where there is one).
        name: String,
        /// The value given.
        value: f64,
        /// What the valid range is.
        reason: String,
    },
    /// A filter that cannot work with the chosen base.
    #[error("filter `{filter}` cannot be combined with base `{base}`: {reason}")]
    Incompatible {
        /// The filter's name.
        filter: String,
        /// The base's name.
        base: String,
        /// Why the combination cannot work.
        reason: String,
    },
    /// A block of the partition has no entries.
    #[error("block `{0}` has no entries (empty tensors and empty partitions are not allowed)")]
    EmptyBlock(String),
    /// A partition or group rule that does not fit the parameters.
    #[error("partition: {0}")]
    Partition(String),
    /// Parameters or gradients do not match the layout the optimizer was built for.
    #[error("layout mismatch: {0}")]
    Layout(#[from] ParamError),
    /// A gradient entry is NaN or infinite (parameters and state were left untouched).
    #[error("non-finite gradient in `{name}` at flat index {index} (parameters and optimizer state left untouched)")]
    NonFinite {
        /// The tensor's name.
        name: String,
        /// Flat index of the first bad entry.
        index: usize,
    },
    /// An I/O error while reading or writing a state file.
    #[error("optimizer state file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A state file that is corrupt or truncated.
    #[error("optimizer state file is corrupt: {0}")]
    CorruptState(String),
    /// A state file that is valid but belongs to a different optimizer or layout.
    #[error("optimizer state does not match this optimizer: {0}")]
    StateMismatch(String),
    /// An optimizer specification (JSON/TOML) that cannot be built.
    #[error("optimizer spec: {0}")]
    Spec(String),
}

impl OptimError {
    /// Shorthand for [`OptimError::Hyperparameter`].
    pub fn hyper(name: &str, value: f64, reason: &str) -> Self {
        OptimError::Hyperparameter {
            name: name.to_string(),
            value,
            reason: reason.to_string(),
        }
    }
}

/// Checks that a fraction α lies in (0, 1].
pub(crate) fn check_fraction(x: f64) -> Result<(), OptimError> {
    if x.is_finite() && x > 0.0 && x <= 1.0 {
        Ok(())
    } else {
        Err(OptimError::hyper(
            "fraction",
            x,
            "the filtered fraction α must lie in (0, 1]",
        ))
    }
}
