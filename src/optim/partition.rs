//! Partitions: how each parameter group is split into blocks. Filtering is
//! per block: block b of d_b entries keeps k_b = min(d_b, max(1, ⌈α·d_b − 1e-9⌉))
//! entries.
//!
//! - [`Partition::PerTensor`] (default): one block per tensor.
//! - [`Partition::PerHead`]: the q/k/v projections are split by attention
//!   head (rows `h·head_dim .. (h+1)·head_dim`, contiguous in row-major
//!   order); other tensors stay whole (paper App. F.6).
//! - [`Partition::Global`]: one block per parameter group (global top-k).
//! - [`Partition::Chunks`]: fixed-size chunks of each tensor (last one shorter).
//! - [`Partition::Custom`]: a user function giving each tensor's contiguous
//!   block lengths.
//!
//! Blocks are also grouped for half fine-tuning: by default by transformer
//! layer (the `layers.{i}` part of the name), everything else one group.

use std::fmt;
use std::sync::Arc;

/// A user partition: (tensor name, shape) → lengths of its consecutive
/// blocks (must sum to the number of entries).
pub type CustomPartition = Arc<dyn Fn(&str, &[usize]) -> Vec<usize> + Send + Sync>;

/// How tensors are split into blocks.
#[derive(Clone, Default)]
pub enum Partition {
    /// One block per tensor.
    #[default]
    PerTensor,
    /// Rows of every tensor whose name contains one of `patterns` split by
    /// head of `head_dim` rows each.
    PerHead {
        /// Rows per head.
        head_dim: usize,
        /// Name patterns of the split tensors (e.g. q_proj, k_proj, v_proj).
        patterns: Vec<String>,
    },
    /// One block per parameter group.
    Global,
    /// Fixed-size chunks of every tensor.
    Chunks(usize),
    /// A user-defined split.
    Custom(CustomPartition),
}

impl fmt::Debug for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Partition::PerTensor => write!(f, "PerTensor"),
            Partition::PerHead { head_dim, patterns } => {
                write!(f, "PerHead({head_dim}, {patterns:?})")
            }
            Partition::Global => write!(f, "Global"),
            Partition::Chunks(n) => write!(f, "Chunks({n})"),
            Partition::Custom(_) => write!(f, "Custom(fn)"),
        }
    }
}

impl Partition {
    /// Per-head split of Llama's `q_proj`, `k_proj`, `v_proj`.
    pub fn per_head(head_dim: usize) -> Self {
        Partition::PerHead {
            head_dim,
            patterns: ["q_proj", "k_proj", "v_proj"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }

    /// A user partition from a function of (name, shape).
    pub fn custom(f: impl Fn(&str, &[usize]) -> Vec<usize> + Send + Sync + 'static) -> Self {
        Partition::Custom(Arc::new(f))
    }

    /// A short description for state files ("custom" partitions are not
    /// reconstructed from files, only checked by block sizes).
    pub fn describe(&self) -> String {
        format!("{self:?}")
    }
}

/// The block group of a tensor for half fine-tuning: `layers.{i}` if the name
/// has it, otherwise "other".
pub fn layer_group(name: &str) -> String {
    let mut parts = name.split('.');
    while let Some(p) = parts.next() {
        if p == "layers" || p == "h" || p == "blocks" {
            if let Some(i) = parts.next() {
                if i.parse::<usize>().is_ok() {
                    return format!("{p}.{i}");
                }
            }
        }
    }
    "other".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_groups() {
        assert_eq!(
            layer_group("model.layers.3.self_attn.q_proj.weight"),
            "layers.3"
        );
        assert_eq!(layer_group("model.norm.weight"), "other");
    }
}
