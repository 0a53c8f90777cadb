//! Step statistics: what a researcher prototyping filters wants to see.
//!
//! Per block: the number of selected entries k_b and the threshold score τ_b
//! (the k-th largest score; None when the block was updated in full or
//! frozen). With selection tracking on ([`crate::optim::OptimConfig::track_selection`]):
//! the overlap |S_t ∩ S_{t−1}| / |S_t| of this step's selection with the
//! previous one, and the share of entries updated at least once since the
//! reference point (construction or [`crate::optim::Optimizer::reset_reference`]).

/// Wall-clock time of the two phases of an optimizer step, for benchmarks
/// (`mofo bench optim` prints them): nothing in a step depends on them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepPhases {
    /// The read-only phase, before anything changes: the non-finite gradient
    /// check, or the fused step's pass 0 (which includes that check),
    /// with the step's set-up.
    pub read_only: std::time::Duration,
    /// The rest: every block's update pass (and the fused step's candidates).
    pub update: std::time::Duration,
}

/// Statistics of one block in one step.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockStats {
    /// Entries updated this step.
    pub selected: usize,
    /// Entries in the block.
    pub len: usize,
    /// The threshold score τ (k-th largest score) when the block was filtered.
    pub threshold: Option<f64>,
    /// |S_t ∩ S_{t−1}| / |S_t| (selection tracking on, from the second step).
    pub overlap: Option<f64>,
}

/// Statistics of one optimizer step.
#[derive(Clone, Debug, PartialEq)]
pub struct StepStats {
    /// The step counter after this call (unchanged when the step was skipped).
    pub step: u64,
    /// Whether the step was skipped because of a non-finite gradient.
    pub skipped: bool,
    /// Learning rate used per parameter group.
    pub lrs: Vec<f64>,
    /// Global gradient norm before clipping by norm (when clipping by norm).
    pub grad_norm: Option<f64>,
    /// Per block, in the optimizer's block order.
    pub blocks: Vec<BlockStats>,
    /// Total entries updated this step.
    pub selected: usize,
    /// Total entries.
    pub total: usize,
    /// Share of entries updated at least once since the reference point
    /// (selection tracking on).
    pub ever_updated_share: Option<f64>,
}

impl StepStats {
    /// Share of entries updated this step.
    pub fn selected_share(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.selected as f64 / self.total as f64
        }
    }
}

/// The score value of a selection key (`Scalar::abs_key` inverted).
pub fn key_to_f64<T: crate::Scalar>(key: u64) -> f64 {
    if std::mem::size_of::<T>() == 4 {
        f32::from_bits(key as u32) as f64
    } else {
        f64::from_bits(key)
    }
}
