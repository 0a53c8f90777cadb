//! The single pass of a filtered GPU step: the device buffers of the
//! threshold forecast (the launches are in `optim.rs`, the kernels and the
//! equations in `kernels/optim.cu`), in this order:
//!
//! ```text
//! forecast_plan        per block: mode, band (lo, hi] around K̂ = 2·τ_{t−1} − τ_{t−2}
//! <base>_update        key > hi: θ logged and updated; key ∈ (lo, hi]: candidate
//! forecast_check       HIT iff above < k ≤ above + within, else MISS
//! cand_hist, cand_pick the need = k − above largest candidates, ≤ 2 digits
//! — the host reads the flags: which ways the step needs —
//! forecast_restore     MISS blocks: logged θ back (then phase 1 and the general way)
//! cand_apply           HIT blocks: θ ← θ·decay − d on the chosen candidates
//! ```
//!
//! A block's lists are split into lanes, min(16, its chunks), each with its
//! own 64-bit counter (entries above the band | in it << 32), and a CUDA
//! block takes the slots of its chunk with one atomic on the counter of
//! lane (chunk mod lanes). Returning atomics are what this pass waits on:
//! on the H200 it took 544 µs per step on 40.6M parameters with two
//! counters per block and 1.02 ms with one atomic per warp, against 408 µs
//! for AdamW's whole step. A lane's log holds k/lanes entries and its
//! candidates max(n/64, 256)/lanes (the CPU's loose band), each plus an
//! eighth (at least 64) for the spread between lanes, the candidates padded
//! to whole tiles of [`CAND_TILE`]; an entry that finds its lane full makes
//! the step a miss.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, LaunchConfig};

use super::context::GpuError;

/// Candidates per CUDA block of `cand_hist` and `cand_apply` (`CAND_TILE`
/// in `optim.cu`).
const CAND_TILE: usize = 2048;
/// Bins of a candidate digit (`CAND_BINS`).
const CAND_BINS: usize = 2048;
/// Words of a block's `Forecast` struct.
const FORECAST_WORDS: usize = 20;
/// Most lanes per block (`LANES`).
const LANES: usize = 16;
/// Word of `Forecast::hits` (`misses` follows).
const HITS_WORD: usize = 14;

/// Which ways this step needs, as `forecast_check` and `cand_pick` flag them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Ways {
    /// Some block takes the general way (radix select over every key).
    pub general: bool,
    /// Some block's band held its threshold (its candidates are applied).
    pub hit: bool,
    /// Some block's single pass missed (its logged θ are restored).
    pub miss: bool,
}

impl Ways {
    /// A step without the single pass: every filtered block the general way.
    pub const GENERAL: Ways = Ways {
        general: true,
        hit: false,
        miss: false,
    };
}

/// The forecast's device buffers.
pub(super) struct ForecastBuffers {
    /// Per block, a `Forecast` struct of [`FORECAST_WORDS`] words.
    pub fc: CudaSlice<u32>,
    /// Per block: (log start, candidate start, log entries per lane,
    /// candidates per lane).
    pub fcinfo: CudaSlice<u32>,
    /// Per block and lane: entries above the band | in it << 32.
    pub lanes: CudaSlice<u64>,
    /// Logged flat indices and old values of entries updated by the pass.
    pub log_i: CudaSlice<u32>,
    /// See `log_i`.
    pub log_p: CudaSlice<f32>,
    /// Candidates: flat index, key, direction.
    pub cand_i: CudaSlice<u32>,
    /// See `cand_i`.
    pub cand_k: CudaSlice<u32>,
    /// See `cand_i`.
    pub cand_d: CudaSlice<f32>,
    /// Per candidate tile: its block · LANES + its lane.
    pub tile_lane: CudaSlice<u32>,
    /// Candidate tiles in all.
    pub tiles: usize,
    /// CAND_BINS bins per block.
    pub chist: CudaSlice<u32>,
    /// general, hit, miss, unused.
    pub flags: CudaSlice<u32>,
}

impl ForecastBuffers {
    /// Buffers for blocks of (n, k, selects every entry).
    pub fn new(
        stream: &Arc<CudaStream>,
        blocks: &[(usize, usize, bool)],
    ) -> Result<Self, GpuError> {
        let (mut fcinfo, mut tile_lane) = (Vec::new(), Vec::new());
        let (mut logs, mut cands) = (0usize, 0usize);
        // A lane's share of `total`, plus an eighth (at least 64).
        let share = |total: usize, lanes: usize| {
            let s = total.div_ceil(lanes);
            s + (s / 8).max(64)
        };
        for (b, &(n, k, all)) in blocks.iter().enumerate() {
            if all {
                fcinfo.extend([logs as u32, cands as u32, 0, 0]);
                continue;
            }
            let lanes = LANES.min(n.div_ceil(super::optim::CHUNK));
            let cap = n.min((n / 64).max(256));
            let (log_lane, cand_lane) = (
                share(k, lanes),
                share(cap, lanes).next_multiple_of(CAND_TILE),
            );
            fcinfo.extend([logs as u32, cands as u32, log_lane as u32, cand_lane as u32]);
            for lane in 0..lanes {
                let id = (b * LANES + lane) as u32;
                tile_lane.extend(std::iter::repeat_n(id, cand_lane / CAND_TILE));
            }
            logs += lanes * log_lane;
            cands += lanes * cand_lane;
        }
        if logs > u32::MAX as usize || cands > u32::MAX as usize {
            return Err(GpuError::Invalid(
                "too many entries for the forecast's lists".into(),
            ));
        }
        let tiles = tile_lane.len();
        tile_lane.push(0);
        let (logs, cands) = (logs.max(1), cands.max(1));
        Ok(ForecastBuffers {
            fc: stream.alloc_zeros(FORECAST_WORDS * blocks.len())?,
            fcinfo: stream.clone_htod(&fcinfo)?,
            lanes: stream.alloc_zeros(LANES * blocks.len())?,
            log_i: stream.alloc_zeros(logs)?,
            log_p: stream.alloc_zeros(logs)?,
            cand_i: stream.alloc_zeros(cands)?,
            cand_k: stream.alloc_zeros(cands)?,
            cand_d: stream.alloc_zeros(cands)?,
            tile_lane: stream.clone_htod(&tile_lane)?,
            tiles,
            chist: stream.alloc_zeros(CAND_BINS * blocks.len())?,
            flags: stream.alloc_zeros(4)?,
        })
    }

    /// The grid of the candidate kernels: one CUDA block per tile.
    pub fn tile_grid(&self) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (self.tiles.max(1) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    /// Reads the flags the step's kernels set (waits for them).
    pub fn ways(&self, stream: &Arc<CudaStream>) -> Result<Ways, GpuError> {
        let f = stream.clone_dtoh(&self.flags)?;
        Ok(Ways {
            general: f[0] != 0,
            hit: f[1] != 0,
            miss: f[2] != 0,
        })
    }

    /// Steps whose band held the threshold, and steps whose single pass
    /// missed, summed over blocks.
    pub fn counts(&self, stream: &Arc<CudaStream>) -> Result<(u64, u64), GpuError> {
        let f = stream.clone_dtoh(&self.fc)?;
        Ok(f.chunks(FORECAST_WORDS).fold((0, 0), |(h, m), w| {
            (h + w[HITS_WORD] as u64, m + w[HITS_WORD + 1] as u64)
        }))
    }
}
