//! The tape: a flat list of nodes, each holding its value and a closure that
//! maps the gradient of its output to gradients of its inputs.
//!
//! Reverse mode: for a scalar `L` and a node `y = f(x₁, …, x_n)` recorded
//! after its inputs, `∂L/∂x_i += (∂f/∂x_i)ᵀ · ∂L/∂y`. [`Tape::backward`]
//! visits the nodes in reverse recording order (a topological order), so a
//! node's gradient is complete (all uses summed) before it is propagated.
//!
//! Only nodes that depend on a variable carry a closure; constants and frozen
//! parameters never get a gradient buffer. A tape made by [`Tape::no_grad`]
//! records no closure at all (forward only). `backward` empties the tape.

use ndarray::{ArcArray, ArrayD, IxDyn};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::device::{kernels, Device, Kernels};
use crate::kernels::rope::RopeTable;
use crate::{ParamStore, Scalar};

/// A node's value: a shared, reference-counted n-dimensional array (cheap to
/// clone; views such as transposes share the buffer).
pub type Value<T> = ArcArray<T, IxDyn>;

/// A backward closure: receives the gradient of the node's output.
pub(crate) type BackwardFn<T> = Box<dyn FnOnce(ArrayD<T>, &mut GradSink<T>)>;

static NEXT_TAPE: AtomicU64 = AtomicU64::new(1);

/// A handle to a node on a [`Tape`] (copyable; only meaningful on its tape).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Var {
    tape: u64,
    pub(crate) index: usize,
}

impl Var {
    /// The node's position in recording order.
    pub fn index(self) -> usize {
        self.index
    }
}

struct Node<T> {
    value: Value<T>,
    /// Its value was given up ([`Tape::release`]).
    released: bool,
    requires_grad: bool,
    backward: Option<BackwardFn<T>>,
}

/// A reverse-mode tape over `ndarray` values of element type `T`.
pub struct Tape<T: Scalar> {
    id: u64,
    recording: bool,
    device: Device,
    nodes: RefCell<Vec<Node<T>>>,
    names: RefCell<Vec<(String, Var)>>,
    /// RoPE tables built so far, shared by every `rope` of this tape with
    /// the same positions, head width and base (every layer's q and k).
    pub(super) rope_tables: RefCell<Vec<Arc<RopeTable<T>>>>,
}

impl<T: Scalar> Default for Tape<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Scalar> Tape<T> {
    fn with_recording(recording: bool) -> Self {
        crate::kernels::alloc::tune_allocator();
        Self {
            id: NEXT_TAPE.fetch_add(1, Ordering::Relaxed),
            recording,
            device: Device::Cpu,
            nodes: RefCell::new(Vec::new()),
            names: RefCell::new(Vec::new()),
            rope_tables: RefCell::new(Vec::new()),
        }
    }

    /// A tape that records backward closures.
    pub fn new() -> Self {
        Self::with_recording(true)
    }

    /// A forward-only tape: variables are treated as constants and no
    /// backward closure or saved activation is kept.
    pub fn no_grad() -> Self {
        Self::with_recording(false)
    }

    /// The same tape on another device (set before recording).
    pub fn on_device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// The device whose kernels run this tape's ops.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The kernel set of this tape's device.
    pub fn kernels(&self) -> &'static dyn Kernels<T> {
        kernels::<T>(self.device)
    }

    /// Whether this tape records gradients.
    pub fn is_recording(&self) -> bool {
        self.recording
    }

    /// Number of nodes recorded so far.
    pub fn len(&self) -> usize {
        self.nodes.borrow().len()
    }

    /// Whether no node has been recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check(&self, v: Var) {
        assert_eq!(
            v.tape, self.id,
            "Var from another tape (or a tape already consumed)"
        );
    }

    /// A constant: never gets a gradient.
    pub fn constant(&self, value: impl Into<Value<T>>) -> Var {
        self.push_node(value.into(), false, None)
    }

    /// A variable: `backward` returns its gradient.
    pub fn variable(&self, value: impl Into<Value<T>>) -> Var {
        self.push_node(value.into(), self.recording, None)
    }

    /// A named trainable parameter (a variable whose gradient is also
    /// reported under `name`). Panics if `name` is already registered on
    /// this tape.
    pub fn param(&self, name: impl Into<String>, value: impl Into<Value<T>>) -> Var {
        let name = name.into();
        assert!(
            self.names.borrow().iter().all(|(n, _)| *n != name),
            "parameter `{name}` registered twice on one tape"
        );
        let v = self.variable(value);
        self.names.borrow_mut().push((name, v));
        v
    }

    /// A frozen parameter: a constant (no gradient buffer, no closure).
    pub fn frozen(&self, value: impl Into<Value<T>>) -> Var {
        self.constant(value)
    }

    /// The value of `v` (a cheap shared clone). Panics if it was released.
    pub fn value(&self, v: Var) -> Value<T> {
        self.kept(v).value.clone()
    }

    /// Gives up the tape's own reference to `v`'s value, for an op's result
    /// that no later op reads (a layer's output consumed by the next op
    /// right away): its memory is freed once no backward closure holds it,
    /// instead of when the backward pass reaches `v`. Gradients are
    /// unchanged (a closure keeps what its backward needs); reading `v`
    /// afterwards ([`Tape::value`], [`Tape::shape`], an op taking it)
    /// panics, and so does releasing a named parameter (its shape is its
    /// gradient's).
    pub fn release(&self, v: Var) {
        self.check(v);
        if let Some((name, _)) = self.names.borrow().iter().find(|(_, p)| *p == v) {
            panic!("tape: parameter {name} cannot be released");
        }
        let node = &mut self.nodes.borrow_mut()[v.index];
        node.value = ArcArray::from_elem(IxDyn(&[0]), T::zero());
        node.released = true;
    }

    /// The shape of `v`. Panics if its value was released.
    pub fn shape(&self, v: Var) -> Vec<usize> {
        self.kept(v).value.shape().to_vec()
    }

    /// `v`'s node, whose value must not have been released.
    fn kept(&self, v: Var) -> std::cell::Ref<'_, Node<T>> {
        self.check(v);
        let node = std::cell::Ref::map(self.nodes.borrow(), |n| &n[v.index]);
        assert!(
            !node.released,
            "tape: the value of node {} was released (Tape::release)",
            v.index
        );
        node
    }

    /// Whether a gradient flows to `v`.
    pub fn requires_grad(&self, v: Var) -> bool {
        self.check(v);
        self.nodes.borrow()[v.index].requires_grad
    }

    /// Whether any of `inputs` requires a gradient (and the tape records).
    pub(crate) fn needs_grad(&self, inputs: &[Var]) -> bool {
        self.recording && inputs.iter().any(|&v| self.requires_grad(v))
    }

    fn push_node(
        &self,
        value: Value<T>,
        requires_grad: bool,
        backward: Option<BackwardFn<T>>,
    ) -> Var {
        let mut nodes = self.nodes.borrow_mut();
        nodes.push(Node {
            value,
            released: false,
            requires_grad,
            backward,
        });
        Var {
            tape: self.id,
            index: nodes.len() - 1,
        }
    }

    /// Records the result of an op. The closure is kept only when one of
    /// `inputs` requires a gradient.
    pub(crate) fn push_op<F>(&self, value: impl Into<Value<T>>, inputs: &[Var], backward: F) -> Var
    where
        F: FnOnce(ArrayD<T>, &mut GradSink<T>) + 'static,
    {
        if self.needs_grad(inputs) {
            self.push_node(value.into(), true, Some(Box::new(backward)))
        } else {
            self.push_node(value.into(), false, None)
        }
    }

    /// Records a result with no gradient path (for ops whose inputs need no
    /// gradient, computed without preparing a closure).
    pub(crate) fn push_const_result(&self, value: impl Into<Value<T>>) -> Var {
        self.push_node(value.into(), false, None)
    }

    /// Reverse pass from the scalar `loss` (a one-element node). Returns the
    /// gradients of every variable and parameter that `loss` depends on, and
    /// releases the tape (its nodes are dropped; old `Var`s become invalid).
    pub fn backward(&self, loss: Var) -> Gradients<T> {
        self.check(loss);
        let mut nodes = std::mem::take(&mut *self.nodes.borrow_mut());
        let names = std::mem::take(&mut *self.names.borrow_mut());
        let shapes: Vec<Vec<usize>> = names
            .iter()
            .map(|(_, v)| nodes[v.index].value.shape().to_vec())
            .collect();
        let lv = &nodes[loss.index].value;
        assert_eq!(
            lv.len(),
            1,
            "backward: loss must have one element, has shape {:?}",
            lv.shape()
        );
        let mut sink = GradSink {
            tape: self.id,
            grads: (0..nodes.len()).map(|_| None).collect(),
            requires: nodes.iter().map(|n| n.requires_grad).collect(),
        };
        if nodes[loss.index].requires_grad {
            sink.grads[loss.index] = Some(ArrayD::from_elem(lv.raw_dim(), T::one()));
        }
        let mut leaves = HashMap::new();
        for i in (0..=loss.index).rev() {
            let Some(g) = sink.grads[i].take() else {
                continue;
            };
            match nodes[i].backward.take() {
                Some(f) => f(g, &mut sink),
                None => {
                    leaves.insert(i, g);
                }
            }
            nodes[i].value = ArcArray::from_elem(IxDyn(&[0]), T::zero());
        }
        drop(nodes);
        Gradients {
            tape: self.id,
            by_index: leaves,
            names,
            shapes,
        }
    }
}

/// Gradient accumulator handed to backward closures.
pub struct GradSink<T> {
    tape: u64,
    grads: Vec<Option<ArrayD<T>>>,
    requires: Vec<bool>,
}

impl<T: Scalar> GradSink<T> {
    /// Whether `v` wants a gradient (closures skip work for inputs that do not).
    pub fn wants(&self, v: Var) -> bool {
        v.tape == self.tape && self.requires[v.index]
    }

    /// Adds `g` to the gradient of `v` (ignored if `v` wants none).
    pub fn add(&mut self, v: Var, g: ArrayD<T>) {
        if !self.wants(v) {
            return;
        }
        match &mut self.grads[v.index] {
            Some(acc) => {
                assert_eq!(acc.shape(), g.shape(), "gradient shape mismatch");
                // The same sums in parallel chunks when both are contiguous
                // (an activation's gradient is summed from two or three
                // consumers, megabytes each, while the other threads wait).
                match (acc.as_slice_mut(), g.as_slice()) {
                    (Some(a), Some(b)) => crate::kernels::elementwise::add_assign(a, b),
                    _ => *acc += &g,
                }
            }
            slot @ None => *slot = Some(g),
        }
    }
}

/// The result of [`Tape::backward`]: gradients keyed by variable and by
/// parameter name. Variables the loss does not depend on have none
/// (parameters then read as zeros in [`Gradients::into_param_store`]).
pub struct Gradients<T> {
    tape: u64,
    by_index: HashMap<usize, ArrayD<T>>,
    names: Vec<(String, Var)>,
    shapes: Vec<Vec<usize>>,
}

impl<T: Scalar> Gradients<T> {
    /// The gradient of variable `v`, if the loss depends on it.
    pub fn get(&self, v: Var) -> Option<&ArrayD<T>> {
        if v.tape != self.tape {
            return None;
        }
        self.by_index.get(&v.index)
    }

    /// Removes and returns the gradient of `v`.
    pub fn take(&mut self, v: Var) -> Option<ArrayD<T>> {
        if v.tape != self.tape {
            return None;
        }
        self.by_index.remove(&v.index)
    }

    /// The gradient of the parameter named `name`.
    pub fn by_name(&self, name: &str) -> Option<&ArrayD<T>> {
        let (_, v) = self.names.iter().find(|(n, _)| n == name)?;
        self.get(*v)
    }

    /// The gradients of all named parameters, in registration order, as a
    /// [`ParamStore`] (zeros for parameters the loss does not depend on).
    pub fn into_param_store(mut self) -> ParamStore<T> {
        let mut out = ParamStore::new();
        let names = std::mem::take(&mut self.names);
        for ((name, v), shape) in names.into_iter().zip(&self.shapes) {
            let g = self
                .by_index
                .remove(&v.index)
                .unwrap_or_else(|| ArrayD::zeros(IxDyn(shape)));
            out.insert(name, g)
                .expect("parameter names are unique on a tape");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{arr1, arr2};

    #[test]
    fn released_values_leave_the_gradients_unchanged() {
        let grads = |release: bool| {
            let t = Tape::<f64>::new();
            let x = t.variable(arr2(&[[1.0, -2.0], [0.5, 3.0]]).into_dyn());
            let w = t.param("w", arr2(&[[0.25, -1.0], [2.0, 0.5]]).into_dyn());
            let u = t.linear(x, w);
            let y = t.mul(u, t.add(u, x));
            if release {
                t.release(u);
            }
            let g = t.backward(t.sum_all(y));
            (g.get(x).unwrap().clone(), g.by_name("w").unwrap().clone())
        };
        assert_eq!(grads(true), grads(false));
    }

    #[test]
    #[should_panic(expected = "parameter w cannot be released")]
    fn parameters_cannot_be_released() {
        let t = Tape::<f64>::new();
        let w = t.param("w", arr1(&[1.0, 2.0]).into_dyn());
        t.release(w);
    }

    #[test]
    #[should_panic(expected = "was released")]
    fn reading_a_released_value_panics() {
        let t = Tape::<f64>::new();
        let x = t.variable(arr1(&[1.0, 2.0]).into_dyn());
        let y = t.mul(x, x);
        t.release(y);
        let _ = t.shape(y);
    }

    #[test]
    fn reused_nodes_accumulate() {
        let t = Tape::<f64>::new();
        let x = t.variable(arr1(&[1.0, -2.0, 3.0]).into_dyn());
        let y = t.add(t.mul(x, x), x);
        let l = t.sum_all(y);
        let g = t.backward(l);
        assert_eq!(g.get(x).unwrap().as_slice().unwrap(), &[3.0, -3.0, 7.0]);
    }

    #[test]
    fn constants_and_frozen_get_no_gradient() {
        let t = Tape::<f64>::new();
        let c = t.constant(arr2(&[[1.0, 2.0]]).into_dyn());
        let f = t.frozen(arr2(&[[3.0], [4.0]]).into_dyn());
        let w = t.param("w", arr2(&[[0.5], [0.25]]).into_dyn());
        let cf = t.matmul(c, f);
        assert!(!t.requires_grad(c) && !t.requires_grad(f) && !t.requires_grad(cf));
        let l = t.sum_all(t.add(t.matmul(c, w), cf));
        assert!(t.requires_grad(l));
        let g = t.backward(l);
        assert!(g.get(c).is_none() && g.get(f).is_none() && g.get(cf).is_none());
        assert_eq!(g.by_name("w").unwrap().as_slice().unwrap(), &[1.0, 2.0]);
        let store = g.into_param_store();
        assert_eq!(store.len(), 1);
        assert_eq!(store.get("w").unwrap().shape(), &[2, 1]);
    }

    #[test]
    fn backward_releases_the_tape() {
        let t = Tape::<f32>::new();
        let x = t.param("x", arr1(&[2.0f32]).into_dyn());
        let unused = t.param("unused", arr1(&[1.0f32, 1.0]).into_dyn());
        let l = t.sum_all(t.exp(x));
        assert_eq!(t.len(), 4);
        let g = t.backward(l);
        assert!(t.is_empty());
        assert!(g.get(unused).is_none());
        let store = g.into_param_store();
        assert_eq!(store.get("unused").unwrap().as_slice(), &[0.0, 0.0]);
        assert!((store.get("x").unwrap().as_slice()[0] - 2.0f32.exp()).abs() < 1e-6);
    }

    #[test]
    fn no_grad_records_no_closure() {
        let t = Tape::<f64>::no_grad();
        let x = t.variable(arr1(&[1.0, 2.0]).into_dyn());
        let y = t.sum_all(t.mul(x, x));
        assert!(!t.is_recording() && !t.requires_grad(x) && !t.requires_grad(y));
        assert_eq!(t.value(y)[IxDyn(&[])], 5.0);
        let g = t.backward(y);
        assert!(g.get(x).is_none());
    }

    #[test]
    #[should_panic(expected = "another tape")]
    fn vars_are_tied_to_their_tape() {
        let a = Tape::<f64>::new();
        let b = Tape::<f64>::new();
        let x = a.variable(arr1(&[1.0]).into_dyn());
        b.value(x);
    }
}
