//! Safetensors files in and out, checked.
//!
//! File layout (little endian):
//!
//! ```text
//! [u64 n] [n bytes of JSON header] [tensor data ...]
//! header: {"<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//!          "__metadata__": {"format": "pt"}}
//! ```
//!
//! Reading checks the declared header length against the file size before
//! anything is allocated from it, then lets the `safetensors` crate validate
//! every offset against the buffer. Float tensors stored as BF16, F16, F32 or
//! F64 are converted to the requested [`Scalar`] (BF16/F16 → f32 widening is
//! exact); integer tensors (I64, I32) are read as `i64`.
//!
//! [`load_params`]/[`save_params`] map a Llama model's parameters (Hugging
//! Face names, [`LlamaConfig::param_shapes`]) to and from a file, with a typed
//! error naming the tensor for anything missing, extra, wrongly shaped or of
//! an unsupported type. Tied models: transformers omits `lm_head.weight`; a
//! file that has it anyway is accepted only if it equals
//! `model.embed_tokens.weight` exactly (after conversion), since a tied model
//! cannot represent two different matrices.

use ndarray::{ArrayD, IxDyn};
use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors, TensorInfo, View};
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::LlamaConfig;
use crate::{ParamStore, Scalar};

/// Largest header a file may declare (the `safetensors` crate's own limit).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Errors reading or writing safetensors files.
#[derive(Debug, thiserror::Error)]
pub enum SafetensorsError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is too short or its declared header length does not fit.
    #[error("{path}: corrupt safetensors file: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The `safetensors` crate rejected the header or offsets.
    #[error("{path}: invalid safetensors file: {source}")]
    Format {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        source: SafeTensorError,
    },
    /// A required tensor is absent.
    #[error("{path}: tensor `{name}` is missing")]
    Missing {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
    },
    /// The file holds a tensor the model does not have.
    #[error("{path}: unexpected tensor `{name}` (not a parameter of this model)")]
    Unexpected {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
    },
    /// A tensor has the wrong shape.
    #[error("{path}: tensor `{name}` has shape {got:?}, expected {expected:?}")]
    Shape {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// Shape in the file.
        got: Vec<usize>,
        /// Shape the model needs.
        expected: Vec<usize>,
    },
    /// A tensor's element type cannot be read as requested.
    #[error("{path}: tensor `{name}` has dtype {dtype}, expected {expected}")]
    Dtype {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// Its dtype.
        dtype: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// A tied model's file holds an `lm_head.weight` different from the embedding.
    #[error(
        "{path}: the model ties lm_head to the embedding, but the file's `lm_head.weight` \
         differs from `model.embed_tokens.weight`"
    )]
    TiedMismatch {
        /// The file.
        path: PathBuf,
    },
    /// Tensors given for writing are inconsistent (shape vs. data length).
    #[error("cannot write tensor `{name}`: {reason}")]
    Write {
        /// The tensor.
        name: String,
        /// Why.
        reason: String,
    },
}

/// An opened safetensors file: the whole file in memory and its validated
/// header.
pub struct SafetensorsFile {
    path: PathBuf,
    bytes: Vec<u8>,
    data_start: usize,
    tensors: HashMap<String, TensorInfo>,
    metadata: HashMap<String, String>,
}

impl std::fmt::Debug for SafetensorsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsFile")
            .field("path", &self.path)
            .field("bytes", &self.bytes.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl SafetensorsFile {
    /// Opens and validates `path`. The declared header length is checked
    /// against the file size before the file is read.
    pub fn open(path: &Path) -> Result<Self, SafetensorsError> {
        let io = |source| SafetensorsError::Io {
            path: path.to_path_buf(),
            source,
        };
        let corrupt = |reason: String| SafetensorsError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        if file_len < 8 {
            return Err(corrupt(format!(
                "{file_len} bytes, shorter than the 8-byte header length"
            )));
        }
        let mut len_bytes = [0u8; 8];
        file.read_exact(&mut len_bytes).map_err(io)?;
        let header_len = u64::from_le_bytes(len_bytes);
        if header_len > file_len - 8 {
            return Err(corrupt(format!(
                "header length {header_len} exceeds the {} bytes after it (truncated file?)",
                file_len - 8
            )));
        }
        if header_len > MAX_HEADER_BYTES {
            return Err(corrupt(format!(
                "header length {header_len} exceeds the limit {MAX_HEADER_BYTES}"
            )));
        }
        let total = usize::try_from(file_len)
            .map_err(|_| corrupt(format!("{file_len} bytes do not fit in memory")))?;
        let mut bytes = Vec::with_capacity(total);
        bytes.extend_from_slice(&len_bytes);
        file.read_to_end(&mut bytes).map_err(io)?;
        Self::from_bytes(path, bytes)
    }

    /// Validates an in-memory file (`path` is used in messages only).
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self, SafetensorsError> {
        let (n, metadata) =
            SafeTensors::read_metadata(&bytes).map_err(|source| SafetensorsError::Format {
                path: path.to_path_buf(),
                source,
            })?;
        let tensors = metadata
            .tensors()
            .into_iter()
            .map(|(name, info)| (name, info.clone()))
            .collect();
        let metadata = metadata.metadata().clone().unwrap_or_default();
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
            data_start: 8 + n,
            tensors,
            metadata,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The header's `__metadata__` string map (empty when absent).
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.tensors.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Whether the file holds a tensor named `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    fn info(&self, name: &str) -> Result<&TensorInfo, SafetensorsError> {
        self.tensors
            .get(name)
            .ok_or_else(|| SafetensorsError::Missing {
                path: self.path.clone(),
                name: name.to_string(),
            })
    }

    /// The shape of tensor `name`.
    pub fn shape(&self, name: &str) -> Result<&[usize], SafetensorsError> {
        Ok(&self.info(name)?.shape)
    }

    /// The dtype of tensor `name` (e.g. `F32`, `BF16`).
    pub fn dtype(&self, name: &str) -> Result<String, SafetensorsError> {
        Ok(self.info(name)?.dtype.to_string())
    }

    fn data(&self, info: &TensorInfo) -> &[u8] {
        // Offsets were validated against the buffer by `read_metadata`.
        let (b, e) = info.data_offsets;
        &self.bytes[self.data_start + b..self.data_start + e]
    }

    /// Tensor `name` as floats of type `T` (BF16, F16, F32, F64 accepted).
    pub fn read_float<T: Scalar>(&self, name: &str) -> Result<ArrayD<T>, SafetensorsError> {
        let info = self.info(name)?;
        let data = self.data(info);
        let values: Vec<T> = match info.dtype {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| T::of_f32(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|c| T::of(f64::from_le_bytes(c.try_into().expect("chunk of 8"))))
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|c| T::of_f32(bf16_to_f32(u16::from_le_bytes([c[0], c[1]]))))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|c| T::of_f32(f16_to_f32(u16::from_le_bytes([c[0], c[1]]))))
                .collect(),
            other => {
                return Err(SafetensorsError::Dtype {
                    path: self.path.clone(),
                    name: name.to_string(),
                    dtype: other.to_string(),
                    expected: "BF16, F16, F32 or F64",
                })
            }
        };
        Ok(ArrayD::from_shape_vec(IxDyn(&info.shape), values)
            .expect("validated: element count matches the byte length"))
    }

    /// Tensor `name` as `i64` (I64 and I32 accepted).
    pub fn read_i64(&self, name: &str) -> Result<ArrayD<i64>, SafetensorsError> {
        let info = self.info(name)?;
        let data = self.data(info);
        let values: Vec<i64> = match info.dtype {
            Dtype::I64 => data
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("chunk of 8")))
                .collect(),
            Dtype::I32 => data
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                .collect(),
            other => {
                return Err(SafetensorsError::Dtype {
                    path: self.path.clone(),
                    name: name.to_string(),
                    dtype: other.to_string(),
                    expected: "I64 or I32",
                })
            }
        };
        Ok(ArrayD::from_shape_vec(IxDyn(&info.shape), values)
            .expect("validated: element count matches the byte length"))
    }
}

/// bfloat16 bits → f32 (exact: bf16 is the top half of an f32).
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

/// IEEE half-precision bits → f32 (exact, subnormals, infinities and NaN
/// included).
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = ((bits >> 15) as u32) << 31;
    let exp = ((bits >> 10) & 0x1f) as u32;
    let man = (bits & 0x3ff) as u32;
    match exp {
        0 => {
            // Zero or subnormal: man · 2^-24, exact in f32.
            let v = man as f32 * f32::from_bits(0x3380_0000); // 2^-24
            f32::from_bits(v.to_bits() | sign)
        }
        31 => f32::from_bits(sign | 0x7f80_0000 | (man << 13)),
        _ => f32::from_bits(sign | ((exp + 112) << 23) | (man << 13)),
    }
}

/// Tensor data to write.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    /// 32-bit floats.
    F32(Vec<f32>),
    /// 64-bit integers.
    I64(Vec<i64>),
}

/// A named tensor to write.
#[derive(Clone, Debug, PartialEq)]
pub struct OutTensor {
    /// The tensor's name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its row-major values.
    pub data: TensorData,
}

impl OutTensor {
    /// An f32 tensor.
    pub fn f32(name: impl Into<String>, shape: &[usize], values: Vec<f32>) -> Self {
        Self {
            name: name.into(),
            shape: shape.to_vec(),
            data: TensorData::F32(values),
        }
    }

    /// An i64 tensor.
    pub fn i64(name: impl Into<String>, shape: &[usize], values: Vec<i64>) -> Self {
        Self {
            name: name.into(),
            shape: shape.to_vec(),
            data: TensorData::I64(values),
        }
    }

    fn len(&self) -> usize {
        match &self.data {
            TensorData::F32(v) => v.len(),
            TensorData::I64(v) => v.len(),
        }
    }
}

/// A tensor prepared for `safetensors::serialize`.
struct Bytes {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Bytes {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Serializes tensors to safetensors bytes with header metadata
/// `{"format": "pt"}` (which transformers requires).
pub fn serialize_tensors(tensors: &[OutTensor]) -> Result<Vec<u8>, SafetensorsError> {
    let mut prepared = Vec::with_capacity(tensors.len());
    let mut seen = std::collections::HashSet::new();
    for t in tensors {
        if !seen.insert(t.name.as_str()) {
            return Err(SafetensorsError::Write {
                name: t.name.clone(),
                reason: "name given twice".into(),
            });
        }
        let n: usize = t.shape.iter().product();
        if n != t.len() {
            return Err(SafetensorsError::Write {
                name: t.name.clone(),
                reason: format!("shape {:?} needs {n} values, got {}", t.shape, t.len()),
            });
        }
        let (dtype, data) = match &t.data {
            TensorData::F32(v) => (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            TensorData::I64(v) => (Dtype::I64, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        };
        prepared.push((
            t.name.clone(),
            Bytes {
                dtype,
                shape: t.shape.clone(),
                data,
            },
        ));
    }
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::tensor::serialize(prepared.iter().map(|(n, b)| (n.as_str(), b)), Some(meta))
        .map_err(|e| SafetensorsError::Write {
            name: String::new(),
            reason: e.to_string(),
        })
}

/// Writes tensors to `path` atomically (see [`crate::io::write_atomic`]).
pub fn write_tensors(path: &Path, tensors: &[OutTensor]) -> Result<(), SafetensorsError> {
    let bytes = serialize_tensors(tensors)?;
    crate::io::write_atomic(path, &bytes).map_err(|source| SafetensorsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a Llama model's parameters from an opened file, in
/// [`LlamaConfig::param_shapes`] order, converting to `T`.
pub fn params_from_file<T: Scalar>(
    file: &SafetensorsFile,
    cfg: &LlamaConfig,
) -> Result<ParamStore<T>, SafetensorsError> {
    let path = file.path().to_path_buf();
    let expected = cfg.param_shapes();
    let mut store = ParamStore::new();
    for (name, shape) in &expected {
        let got = file.shape(name)?;
        if got != shape.as_slice() {
            return Err(SafetensorsError::Shape {
                path,
                name: name.clone(),
                got: got.to_vec(),
                expected: shape.clone(),
            });
        }
        store
            .insert(name.clone(), file.read_float::<T>(name)?)
            .expect("param_shapes names are unique");
    }
    const LM_HEAD: &str = "lm_head.weight";
    for name in file.names() {
        if store.get(name).is_some() {
            continue;
        }
        if name == LM_HEAD && cfg.tie_word_embeddings {
            let head = file.read_float::<T>(LM_HEAD)?;
            let embed = &store
                .get("model.embed_tokens.weight")
                .expect("always a parameter")
                .value;
            if head.shape() != embed.shape() || head != *embed {
                return Err(SafetensorsError::TiedMismatch { path });
            }
            continue;
        }
        return Err(SafetensorsError::Unexpected {
            path,
            name: name.to_string(),
        });
    }
    Ok(store)
}

/// Loads a Llama model's parameters from the safetensors file `path`
/// (see [`params_from_file`]).
pub fn load_params<T: Scalar>(
    path: &Path,
    cfg: &LlamaConfig,
) -> Result<ParamStore<T>, SafetensorsError> {
    params_from_file(&SafetensorsFile::open(path)?, cfg)
}

/// The parameters as f32 tensors to write, checked against the config's
/// layout (every parameter present with its shape, nothing else).
pub fn params_to_tensors<T: Scalar>(
    cfg: &LlamaConfig,
    params: &ParamStore<T>,
    prefix: &str,
) -> Result<Vec<OutTensor>, SafetensorsError> {
    let expected = cfg.param_shapes();
    let mut out = Vec::with_capacity(expected.len());
    for (name, shape) in &expected {
        let p = params.get(name).ok_or_else(|| SafetensorsError::Write {
            name: name.clone(),
            reason: "the parameter store does not have it".into(),
        })?;
        if p.shape() != shape.as_slice() {
            return Err(SafetensorsError::Write {
                name: name.clone(),
                reason: format!("shape {:?}, the config needs {shape:?}", p.shape()),
            });
        }
        out.push(OutTensor::f32(
            format!("{prefix}{name}"),
            shape,
            p.as_slice().iter().map(|x| x.as_f32()).collect(),
        ));
    }
    if params.len() != expected.len() {
        let extra = params
            .names()
            .find(|n| !expected.iter().any(|(e, _)| e == n))
            .unwrap_or("?")
            .to_string();
        return Err(SafetensorsError::Write {
            name: extra,
            reason: "not a parameter of this config".into(),
        });
    }
    Ok(out)
}

/// Saves a Llama model's parameters to `path` as f32 safetensors with
/// Hugging Face names (no `lm_head.weight` when tied, as transformers does),
/// atomically.
pub fn save_params<T: Scalar>(
    path: &Path,
    cfg: &LlamaConfig,
    params: &ParamStore<T>,
) -> Result<(), SafetensorsError> {
    write_tensors(path, &params_to_tensors(cfg, params, "")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_conversions_are_exact() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8400), -(2f32.powi(-14)));
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
        assert_eq!(bf16_to_f32(0xc040), -3.0);
    }

    #[test]
    fn serialize_rejects_bad_lengths_and_duplicates() {
        let bad = [OutTensor::f32("a", &[2, 2], vec![0.0; 3])];
        assert!(matches!(
            serialize_tensors(&bad),
            Err(SafetensorsError::Write { .. })
        ));
        let dup = [
            OutTensor::f32("a", &[1], vec![0.0]),
            OutTensor::i64("a", &[1], vec![0]),
        ];
        assert!(matches!(
            serialize_tensors(&dup),
            Err(SafetensorsError::Write { .. })
        ));
    }
}
