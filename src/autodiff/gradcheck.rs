//! Central-difference gradient checks (f64).
//!
//! For a scalar function `L(x₁, …, x_n)` recorded on a tape, compares the
//! tape's gradient `a = ∂L/∂x_i` with
//!
//! ```text
//! n_j = (8·(L(x + ε e_j) − L(x − ε e_j)) − (L(x + 2ε e_j) − L(x − 2ε e_j))) / (12ε)
//! ```
//!
//! (the fourth-order central difference: truncation error O(ε⁴), so a
//! step such as ε = 1e-4 keeps truncation and rounding far below 1e-6)
//!
//! entry by entry, and reports per input the relative error
//! `‖a − n‖_∞ / max(‖a‖_∞, ‖n‖_∞, 1e-6)`.

use ndarray::ArrayD;

use super::{Tape, Var};

/// Outcome of [`gradcheck`].
#[derive(Clone, Debug, PartialEq)]
pub struct GradCheck {
    /// Relative error per input (see the module docs).
    pub rel_errors: Vec<f64>,
    /// Largest relative error over all inputs.
    pub max_rel_error: f64,
}

fn scalar(tape: &Tape<f64>, v: Var) -> f64 {
    let val = tape.value(v);
    assert_eq!(
        val.len(),
        1,
        "gradcheck: the function must return one element, got {:?}",
        val.shape()
    );
    val.iter().next().copied().unwrap_or(0.0)
}

/// Checks the gradients of `f` at `inputs` with step `eps`. `f` receives a
/// tape and one variable per input and returns a one-element node.
pub fn gradcheck<F>(inputs: &[ArrayD<f64>], eps: f64, f: F) -> GradCheck
where
    F: Fn(&Tape<f64>, &[Var]) -> Var,
{
    let tape = Tape::new();
    let vars: Vec<Var> = inputs.iter().map(|x| tape.variable(x.clone())).collect();
    let out = f(&tape, &vars);
    let grads = tape.backward(out);
    let eval = |xs: &[ArrayD<f64>]| -> f64 {
        let t = Tape::no_grad();
        let vs: Vec<Var> = xs.iter().map(|x| t.constant(x.clone())).collect();
        let o = f(&t, &vs);
        scalar(&t, o)
    };
    let mut rel_errors = Vec::with_capacity(inputs.len());
    for (i, &v) in vars.iter().enumerate() {
        let analytic = grads
            .get(v)
            .cloned()
            .unwrap_or_else(|| ArrayD::zeros(inputs[i].raw_dim()));
        assert_eq!(
            analytic.shape(),
            inputs[i].shape(),
            "gradcheck: gradient shape of input {i}"
        );
        let analytic = analytic.as_standard_layout().into_owned();
        let mut xs: Vec<ArrayD<f64>> = inputs
            .iter()
            .map(|x| x.as_standard_layout().into_owned())
            .collect();
        let (mut diff, mut na, mut nn) = (0.0f64, 0.0f64, 0.0f64);
        for (j, &a) in analytic.iter().enumerate() {
            let x0 = xs[i].as_slice().expect("standard layout")[j];
            let mut at = |dx: f64| {
                xs[i].as_slice_mut().expect("standard layout")[j] = x0 + dx;
                let f = eval(&xs);
                xs[i].as_slice_mut().expect("standard layout")[j] = x0;
                f
            };
            let (f1, f_1, f2, f_2) = (at(eps), at(-eps), at(2.0 * eps), at(-2.0 * eps));
            let num = (8.0 * (f1 - f_1) - (f2 - f_2)) / (12.0 * eps);
            diff = diff.max((a - num).abs());
            na = na.max(a.abs());
            nn = nn.max(num.abs());
        }
        rel_errors.push(diff / na.max(nn).max(1e-6));
    }
    let max_rel_error = rel_errors.iter().copied().fold(0.0, f64::max);
    GradCheck {
        rel_errors,
        max_rel_error,
    }
}
