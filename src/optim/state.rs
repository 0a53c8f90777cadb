//! Saving and loading optimizer state: every buffer, the step counters, the
//! base's scalar state (NAdam's μ product), θ_pre for pulls and the
//! selection-tracking marks. Random filters are reseeded from (seed, step,
//! block), so the step counter is their whole RNG state.
//!
//! File layout (one self-describing binary, little-endian):
//!
//! ```text
//! "MOFOST01"                      8 bytes magic
//! meta_len: u64                   length of the JSON metadata
//! meta: JSON                      format, dtype, base, filter, step, tensors (name, shape, buffers), ...
//! payload                         buffers per tensor, then θ_pre per tensor, then tracking bytes per block
//! checksum: u64                   FNV-1a 64 of every preceding byte
//! ```
//!
//! Loading checks the sizes announced by the file against the file's real
//! size before allocating, verifies the checksum, then checks that the
//! state belongs to this optimizer (dtype, base, filter, tensor names and
//! shapes, buffers) before replacing anything. Writes go through
//! [`crate::io::write_atomic_with`].

use std::io::{BufWriter, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::base::{Base, BaseScalars};
use super::filter::Filter;
use super::{OptimError, Optimizer};
use crate::io::fnv::{fnv1a64_extend, FNV1A64_OFFSET};
use crate::Scalar;

const MAGIC: &[u8; 8] = b"MOFOST01";
const FORMAT: &str = "mofo-optim-state/1";

#[derive(Serialize, Deserialize)]
struct TensorMeta {
    name: String,
    shape: Vec<usize>,
    buffers: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    format: String,
    dtype: String,
    base: String,
    filter: String,
    step: u64,
    skipped: u64,
    scalars: BaseScalars,
    tensors: Vec<TensorMeta>,
    has_pre: bool,
    block_lens: Vec<usize>,
    track: bool,
    ever: Vec<usize>,
}

/// The running checksum (`io::fnv`'s FNV-1a 64).
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(FNV1A64_OFFSET)
    }
    fn update(&mut self, bytes: &[u8]) {
        self.0 = fnv1a64_extend(self.0, bytes);
    }
}

struct HashWriter<W: Write> {
    inner: W,
    hash: Fnv,
}

impl<W: Write> HashWriter<W> {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.hash.update(bytes);
        self.inner.write_all(bytes)
    }
}

fn put_values<T: Scalar, W: Write>(w: &mut HashWriter<W>, xs: &[T]) -> std::io::Result<()> {
    let size = std::mem::size_of::<T>();
    let mut buf = Vec::with_capacity(size * 4096);
    for chunk in xs.chunks(4096) {
        buf.clear();
        for &x in chunk {
            if size == 4 {
                buf.extend_from_slice(&x.as_f32().to_le_bytes());
            } else {
                buf.extend_from_slice(&x.as_f64().to_le_bytes());
            }
        }
        w.put(&buf)?;
    }
    Ok(())
}

fn read_values<T: Scalar>(bytes: &[u8], out: &mut Vec<T>) {
    out.clear();
    if std::mem::size_of::<T>() == 4 {
        out.extend(
            bytes
                .chunks_exact(4)
                .map(|b| T::of_f32(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        );
    } else {
        out.extend(bytes.chunks_exact(8).map(|b| {
            T::of(f64::from_le_bytes([
                b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
            ]))
        }));
    }
}

fn corrupt(msg: impl Into<String>) -> OptimError {
    OptimError::CorruptState(msg.into())
}

fn mismatch(msg: impl Into<String>) -> OptimError {
    OptimError::StateMismatch(msg.into())
}

impl<F: Filter, B: Base, T: Scalar> Optimizer<F, B, T> {
    fn meta(&self) -> Meta {
        let names: Vec<String> = self
            .base
            .buffers()
            .iter()
            .flatten()
            .map(|s| s.to_string())
            .collect();
        Meta {
            format: FORMAT.to_string(),
            dtype: T::NAME.to_string(),
            base: self.base.name().to_string(),
            filter: self.filter.name().to_string(),
            step: self.step,
            skipped: self.skipped,
            scalars: self.scalars,
            tensors: self
                .layout
                .tensors
                .iter()
                .map(|t| TensorMeta {
                    name: t.name.clone(),
                    shape: t.shape.clone(),
                    buffers: names.clone(),
                })
                .collect(),
            has_pre: self.pre.is_some(),
            block_lens: self.layout.blocks.iter().map(|b| b.len).collect(),
            track: self.config.track_selection,
            ever: self.runtime.iter().map(|r| r.ever).collect(),
        }
    }

    /// Writes the whole optimizer state to `path` (atomic: temp file + rename).
    pub fn save(&self, path: &Path) -> Result<(), OptimError> {
        let meta = serde_json::to_vec(&self.meta()).map_err(|e| corrupt(e.to_string()))?;
        crate::io::atomic::write_atomic_with(path, |f| {
            let mut w = HashWriter {
                inner: BufWriter::new(f),
                hash: Fnv::new(),
            };
            w.put(MAGIC)?;
            w.put(&(meta.len() as u64).to_le_bytes())?;
            w.put(&meta)?;
            for st in &self.state {
                for b in st.iter().filter(|b| !b.is_empty()) {
                    put_values(&mut w, b)?;
                }
            }
            if let Some(pre) = &self.pre {
                for p in pre {
                    put_values(&mut w, p)?;
                }
            }
            if self.config.track_selection {
                for rt in &self.runtime {
                    w.put(&rt.track)?;
                }
            }
            let sum = w.hash.0;
            w.inner.write_all(&sum.to_le_bytes())?;
            w.inner.flush()
        })
        .map_err(|e| OptimError::Io {
            path: path.display().to_string(),
            source: e,
        })
    }

    /// Loads state written by [`Optimizer::save`] of an optimizer with the
    /// same dtype, base, filter and tensors. On any error the optimizer is
    /// unchanged.
    pub fn load(&mut self, path: &Path) -> Result<(), OptimError> {
        let io = |e| OptimError::Io {
            path: path.display().to_string(),
            source: e,
        };
        let file_len = std::fs::metadata(path).map_err(io)?.len();
        if file_len < 24 {
            return Err(corrupt(format!("file of {file_len} bytes is too short")));
        }
        let bytes = std::fs::read(path).map_err(io)?;
        self.load_bytes(&bytes)
    }

    /// Loads state from the bytes of a file written by [`Optimizer::save`]
    /// (what [`Optimizer::load`] does after reading the file). On any error
    /// the optimizer is unchanged.
    pub fn load_bytes(&mut self, bytes: &[u8]) -> Result<(), OptimError> {
        let file_len = bytes.len() as u64;
        if file_len < 24 {
            return Err(corrupt(format!("file of {file_len} bytes is too short")));
        }
        if &bytes[..8] != MAGIC {
            return Err(corrupt("bad magic (not a mofo optimizer state file)"));
        }
        let meta_len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
        if meta_len > file_len - 24 {
            return Err(corrupt(format!(
                "metadata length {meta_len} exceeds the file size {file_len}"
            )));
        }
        let meta_end = 16 + meta_len as usize;
        let body_end = bytes.len() - 8;
        let stored = u64::from_le_bytes(bytes[body_end..].try_into().expect("8 bytes"));
        let mut h = Fnv::new();
        h.update(&bytes[..body_end]);
        if h.0 != stored {
            return Err(corrupt("checksum mismatch (file damaged or truncated)"));
        }
        let meta: Meta = serde_json::from_slice(&bytes[16..meta_end])
            .map_err(|e| corrupt(format!("metadata: {e}")))?;
        if meta.format != FORMAT {
            return Err(corrupt(format!("unknown format `{}`", meta.format)));
        }
        let mine = self.meta();
        if meta.dtype != mine.dtype {
            return Err(mismatch(format!(
                "dtype {} in the file, {} here",
                meta.dtype, mine.dtype
            )));
        }
        if meta.base != mine.base || meta.filter != mine.filter {
            return Err(mismatch(format!(
                "file holds {}+{}, this optimizer is {}+{}",
                meta.filter, meta.base, mine.filter, mine.base
            )));
        }
        if meta.tensors.len() != mine.tensors.len() {
            return Err(mismatch(format!(
                "{} tensors in the file, {} here",
                meta.tensors.len(),
                mine.tensors.len()
            )));
        }
        for (a, b) in meta.tensors.iter().zip(&mine.tensors) {
            if a.name != b.name || a.shape != b.shape || a.buffers != b.buffers {
                return Err(mismatch(format!(
                    "tensor `{}` {:?} {:?} in the file, `{}` {:?} {:?} here",
                    a.name, a.shape, a.buffers, b.name, b.shape, b.buffers
                )));
            }
        }
        if meta.has_pre != mine.has_pre
            || meta.track != mine.track
            || meta.block_lens != mine.block_lens
            || meta.ever.len() != mine.ever.len()
        {
            return Err(mismatch(
                "pull reference, selection tracking or block partition differ",
            ));
        }
        // Expected payload size from the metadata, checked against the file.
        let size = std::mem::size_of::<T>() as u64;
        let nbuf = mine.tensors.first().map_or(0, |t| t.buffers.len()) as u64;
        let numel: u64 = self.layout.tensors.iter().map(|t| t.numel as u64).sum();
        let mut expected = numel * nbuf * size;
        if meta.has_pre {
            expected += numel * size;
        }
        if meta.track {
            expected += meta.block_lens.iter().map(|&l| l as u64).sum::<u64>();
        }
        let payload = (body_end - meta_end) as u64;
        if payload != expected {
            return Err(corrupt(format!(
                "payload has {payload} bytes, the metadata describes {expected}"
            )));
        }
        // Everything checked: replace the state.
        let mut pos = meta_end;
        let used = self.base.buffers().map(|b| b.is_some());
        for (st, t) in self.state.iter_mut().zip(&self.layout.tensors) {
            let n = t.numel * size as usize;
            for (slot, &u) in used.iter().enumerate() {
                if u {
                    read_values(&bytes[pos..pos + n], &mut st[slot]);
                    pos += n;
                }
            }
        }
        if let Some(pre) = &mut self.pre {
            for (p, t) in pre.iter_mut().zip(&self.layout.tensors) {
                let n = t.numel * size as usize;
                read_values(&bytes[pos..pos + n], p);
                pos += n;
            }
        }
        if meta.track {
            for rt in &mut self.runtime {
                let n = rt.track.len();
                rt.track.copy_from_slice(&bytes[pos..pos + n]);
                pos += n;
            }
        }
        for (rt, &e) in self.runtime.iter_mut().zip(&meta.ever) {
            rt.ever = e;
        }
        self.step = meta.step;
        self.skipped = meta.skipped;
        self.scalars = meta.scalars;
        Ok(())
    }
}
