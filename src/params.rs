//! Named parameter tensors: the one place a parameter is created and named.
//!
//! A [`ParamStore`] is an ordered list of named, contiguous (row-major)
//! tensors. The model creates its parameters here once; the optimizer state,
//! the filter statistics, checkpoints and the distance metrics all find a
//! parameter by its name (Hugging Face's names for the Llama model). A store
//! of gradients has the same names and shapes as the store of parameters.

use ndarray::{ArrayD, IxDyn};
use std::collections::HashMap;

use crate::Scalar;

/// Errors of [`ParamStore`] operations.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamError {
    /// A name was inserted twice.
    #[error("parameter `{0}` is defined twice")]
    Duplicate(String),
    /// A name was looked up that the store does not have.
    #[error("no parameter named `{0}`")]
    Missing(String),
    /// A tensor's shape differs from what was expected.
    #[error("parameter `{name}`: shape {got:?} does not match expected {expected:?}")]
    Shape {
        /// Parameter name.
        name: String,
        /// Shape found.
        got: Vec<usize>,
        /// Shape expected.
        expected: Vec<usize>,
    },
}

/// One named tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Param<T> {
    /// The parameter's name (e.g. `model.layers.0.self_attn.q_proj.weight`).
    pub name: String,
    /// Its value, always in standard (row-major, contiguous) layout.
    pub value: ArrayD<T>,
}

impl<T: Scalar> Param<T> {
    /// The values as a flat row-major slice.
    pub fn as_slice(&self) -> &[T] {
        self.value
            .as_slice()
            .expect("ParamStore keeps tensors in standard layout")
    }

    /// The values as a flat mutable row-major slice.
    pub fn as_slice_mut(&mut self) -> &mut [T] {
        self.value
            .as_slice_mut()
            .expect("ParamStore keeps tensors in standard layout")
    }

    /// The tensor's shape.
    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }
}

/// An ordered collection of named tensors with lookup by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParamStore<T> {
    params: Vec<Param<T>>,
    index: HashMap<String, usize>,
}

impl<T: Scalar> ParamStore<T> {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            params: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// Appends a tensor (copied into standard layout if it is not already).
    pub fn insert(&mut self, name: impl Into<String>, value: ArrayD<T>) -> Result<(), ParamError> {
        let name = name.into();
        if self.index.contains_key(&name) {
            return Err(ParamError::Duplicate(name));
        }
        let value = if value.is_standard_layout() {
            value
        } else {
            value.as_standard_layout().into_owned()
        };
        self.index.insert(name.clone(), self.params.len());
        self.params.push(Param { name, value });
        Ok(())
    }

    /// Appends a tensor given as a shape and row-major values.
    pub fn insert_vec(
        &mut self,
        name: impl Into<String>,
        shape: &[usize],
        values: Vec<T>,
    ) -> Result<(), ParamError> {
        let name = name.into();
        let expected: usize = shape.iter().product();
        if expected != values.len() {
            return Err(ParamError::Shape {
                name,
                got: vec![values.len()],
                expected: shape.to_vec(),
            });
        }
        let value = ArrayD::from_shape_vec(IxDyn(shape), values).expect("length checked above");
        self.insert(name, value)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// Whether the store holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// Total number of scalar entries over all tensors.
    pub fn num_elements(&self) -> usize {
        self.params.iter().map(|p| p.value.len()).sum()
    }

    /// The tensor named `name`.
    pub fn get(&self, name: &str) -> Option<&Param<T>> {
        self.index.get(name).map(|&i| &self.params[i])
    }

    /// The tensor named `name`, mutably.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Param<T>> {
        match self.index.get(name) {
            Some(&i) => Some(&mut self.params[i]),
            None => None,
        }
    }

    /// The position of `name` in insertion order.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// Tensors in insertion order.
    pub fn iter(&self) -> std::slice::Iter<'_, Param<T>> {
        self.params.iter()
    }

    /// Tensors in insertion order, mutably (names cannot be changed).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Param<T>> {
        self.params.iter_mut()
    }

    /// The tensors as a slice, in insertion order.
    pub fn as_slice(&self) -> &[Param<T>] {
        &self.params
    }

    /// The tensors as a mutable slice, in insertion order. Callers must not
    /// rename or reshape them.
    pub fn as_mut_slice(&mut self) -> &mut [Param<T>] {
        &mut self.params
    }

    /// Names in insertion order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|p| p.name.as_str())
    }

    /// A store with the same names and shapes, filled with zeros.
    pub fn zeros_like(&self) -> Self {
        let mut out = Self::new();
        for p in &self.params {
            out.insert(p.name.clone(), ArrayD::zeros(p.value.raw_dim()))
                .expect("names are unique in self");
        }
        out
    }

    /// Checks that `other` has exactly the same names (in any order) and
    /// shapes as `self`.
    pub fn check_same_layout<U: Scalar>(&self, other: &ParamStore<U>) -> Result<(), ParamError> {
        for p in &self.params {
            let q = other
                .get(&p.name)
                .ok_or_else(|| ParamError::Missing(p.name.clone()))?;
            if q.shape() != p.shape() {
                return Err(ParamError::Shape {
                    name: p.name.clone(),
                    got: q.shape().to_vec(),
                    expected: p.shape().to_vec(),
                });
            }
        }
        if let Some(extra) = other.names().find(|n| self.get(n).is_none()) {
            return Err(ParamError::Missing(extra.to_string()));
        }
        Ok(())
    }

    /// Converts every tensor to another element type.
    pub fn cast<U: Scalar>(&self) -> ParamStore<U> {
        let mut out = ParamStore::new();
        for p in &self.params {
            out.insert(p.name.clone(), p.value.mapv(|x| U::of(x.as_f64())))
                .expect("names are unique in self");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_lookup_layout() {
        let mut s = ParamStore::<f32>::new();
        s.insert_vec("a", &[2, 3], vec![1.0; 6]).unwrap();
        s.insert_vec("b", &[4], vec![2.0; 4]).unwrap();
        assert_eq!(
            s.insert_vec("a", &[1], vec![0.0]),
            Err(ParamError::Duplicate("a".into()))
        );
        assert!(s.insert_vec("c", &[2], vec![0.0; 3]).is_err());
        assert_eq!(s.num_elements(), 10);
        assert_eq!(s.get("b").unwrap().as_slice(), &[2.0; 4]);
        let z = s.zeros_like();
        s.check_same_layout(&z).unwrap();
        let t = ndarray::Array2::<f32>::zeros((3, 2))
            .reversed_axes()
            .into_dyn();
        s.insert("t", t).unwrap();
        assert!(s.get("t").unwrap().value.is_standard_layout());
        assert!(s.check_same_layout(&z).is_err());
    }
}
