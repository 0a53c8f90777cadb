//! The optimizer's view of the parameters: tensors (name, shape, group) and
//! the blocks they are split into, each block a list of contiguous segments.

use std::collections::HashMap;

use super::group::{GroupRule, ResolvedGroup};
use super::partition::{layer_group, Partition};
use super::OptimError;
use crate::{ParamStore, Scalar};

/// One tensor known to the optimizer.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// Name.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Number of entries.
    pub numel: usize,
    /// Index of its parameter group.
    pub group: usize,
}

/// A contiguous piece of a tensor that belongs to a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Tensor index.
    pub tensor: usize,
    /// Offset in the tensor.
    pub offset: usize,
    /// Number of entries.
    pub len: usize,
    /// Offset in the block.
    pub block_offset: usize,
}

/// One block: the unit in which the filter keeps a fraction α.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockInfo {
    /// Name (tensor name, with `[head h]`/`[chunk c]` for split tensors, or the group name).
    pub name: String,
    /// Parameter group index.
    pub group: usize,
    /// Pieces in block order.
    pub segments: Vec<Segment>,
    /// Number of entries.
    pub len: usize,
    /// Block group for half fine-tuning.
    pub hft_group: usize,
}

/// Tensors, groups and blocks.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    /// Tensors in the order of the store the optimizer was built from.
    pub tensors: Vec<TensorInfo>,
    /// Resolved parameter groups (the default group last).
    pub groups: Vec<ResolvedGroup>,
    /// Blocks.
    pub blocks: Vec<BlockInfo>,
    /// Per tensor: (block, segment index in that block), in offset order.
    pub tensor_segments: Vec<Vec<(usize, usize)>>,
    /// Number of half fine-tuning block groups.
    pub num_hft_groups: usize,
    /// Tensor index by name.
    pub index: HashMap<String, usize>,
}

impl Layout {
    /// Builds the layout of `params` under group rules and a partition.
    pub fn build<T: Scalar>(
        params: &ParamStore<T>,
        rules: &[GroupRule],
        defaults: ResolvedGroup,
        partition: &Partition,
    ) -> Result<Self, OptimError> {
        let mut groups: Vec<ResolvedGroup> = rules
            .iter()
            .map(|r| ResolvedGroup {
                name: r.name.clone(),
                lr: r.lr.unwrap_or(defaults.lr),
                weight_decay: r.weight_decay.unwrap_or(defaults.weight_decay),
                fraction: r.fraction.unwrap_or(defaults.fraction),
                filtered: r.filtered,
            })
            .collect();
        let default_group = groups.len();
        groups.push(defaults);
        for g in &groups {
            super::base::check_lr(g.lr)?;
            super::base::check_nonneg("weight_decay", g.weight_decay)?;
            super::error::check_fraction(g.fraction)?;
        }
        let mut tensors = Vec::new();
        let mut index = HashMap::new();
        for p in params.iter() {
            let group = rules
                .iter()
                .position(|r| r.matches.matches(&p.name))
                .unwrap_or(default_group);
            if p.value.is_empty() {
                return Err(OptimError::EmptyBlock(p.name.clone()));
            }
            index.insert(p.name.clone(), tensors.len());
            tensors.push(TensorInfo {
                name: p.name.clone(),
                shape: p.shape().to_vec(),
                numel: p.value.len(),
                group,
            });
        }
        let mut blocks: Vec<BlockInfo> = Vec::new();
        let mut tensor_segments = vec![Vec::new(); tensors.len()];
        let mut hft_names: HashMap<String, usize> = HashMap::new();
        let mut hft_id = |key: String| {
            let n = hft_names.len();
            *hft_names.entry(key).or_insert(n)
        };
        if let Partition::Global = partition {
            let mut group_block: HashMap<usize, usize> = HashMap::new();
            for (ti, t) in tensors.iter().enumerate() {
                let b = *group_block.entry(t.group).or_insert_with(|| {
                    blocks.push(BlockInfo {
                        name: groups[t.group].name.clone(),
                        group: t.group,
                        segments: Vec::new(),
                        len: 0,
                        hft_group: hft_id(format!("group:{}", t.group)),
                    });
                    blocks.len() - 1
                });
                let blk = &mut blocks[b];
                tensor_segments[ti].push((b, blk.segments.len()));
                blk.segments.push(Segment {
                    tensor: ti,
                    offset: 0,
                    len: t.numel,
                    block_offset: blk.len,
                });
                blk.len += t.numel;
            }
        } else {
            for (ti, t) in tensors.iter().enumerate() {
                let lens = split_lengths(partition, t)?;
                let hg = hft_id(format!("{}:{}", t.group, layer_group(&t.name)));
                let mut offset = 0;
                let n = lens.len();
                for (j, len) in lens.into_iter().enumerate() {
                    let name = if n == 1 {
                        t.name.clone()
                    } else {
                        format!("{}[{j}]", t.name)
                    };
                    if len == 0 {
                        return Err(OptimError::EmptyBlock(name));
                    }
                    tensor_segments[ti].push((blocks.len(), 0));
                    blocks.push(BlockInfo {
                        name,
                        group: t.group,
                        segments: vec![Segment {
                            tensor: ti,
                            offset,
                            len,
                            block_offset: 0,
                        }],
                        len,
                        hft_group: hg,
                    });
                    offset += len;
                }
            }
        }
        let num_hft_groups = hft_names.len();
        Ok(Layout {
            tensors,
            groups,
            blocks,
            tensor_segments,
            num_hft_groups,
            index,
        })
    }

    /// Total number of entries.
    pub fn num_elements(&self) -> usize {
        self.tensors.iter().map(|t| t.numel).sum()
    }
}

fn split_lengths(partition: &Partition, t: &TensorInfo) -> Result<Vec<usize>, OptimError> {
    let lens = match partition {
        Partition::PerTensor | Partition::Global => vec![t.numel],
        Partition::PerHead { head_dim, patterns } => {
            if patterns.iter().any(|p| t.name.contains(p.as_str())) {
                let rows = t.shape.first().copied().unwrap_or(1);
                let row_len = t.numel / rows.max(1);
                if *head_dim == 0 || rows % head_dim != 0 {
                    return Err(OptimError::Partition(format!(
                        "`{}` has {rows} rows, not a multiple of head_dim {head_dim}",
                        t.name
                    )));
                }
                vec![head_dim * row_len; rows / head_dim]
            } else {
                vec![t.numel]
            }
        }
        Partition::Chunks(n) => {
            if *n == 0 {
                return Err(OptimError::Partition("chunk size must be > 0".into()));
            }
            let mut v = vec![*n; t.numel / n];
            if !t.numel.is_multiple_of(*n) {
                v.push(t.numel % n);
            }
            v
        }
        Partition::Custom(f) => f(&t.name, &t.shape),
    };
    let total: usize = lens.iter().sum();
    if total != t.numel {
        return Err(OptimError::Partition(format!(
            "blocks of `{}` cover {total} entries, the tensor has {}",
            t.name, t.numel
        )));
    }
    Ok(lens)
}
