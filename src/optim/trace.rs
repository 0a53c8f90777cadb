//! `mofo-trace/1` optimizer traces (see shared/reference/README.md): parse,
//! run through the optimizer algebra, compare with the expected parameters.
//!
//! Hyperparameters use PyTorch's names (lr, betas, eps, weight_decay,
//! amsgrad, momentum_decay, decoupled_weight_decay, alpha, centered,
//! momentum, dampening, nesterov); absent ones take PyTorch's defaults.
//! `lr_schedule` overrides lr. Agreement: |ours − expected| ≤ 1e-5·max(1, |expected|).

use serde_json::{Map, Value};

use super::group::{GroupRule, NameMatch};
use super::schedule::Schedule;
use super::spec::{AdamWParams, BaseSpec, FilterSpec, OptimizerSpec, ScheduleSpec};
use super::{Adam, DecayScope, Lion, NAdam, RmsProp, Sgd};
use crate::{ParamStore, Scalar};

/// The relative tolerance of the reference traces.
pub const TOLERANCE: f64 = 1e-5;

/// A malformed trace, naming the bad field.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// Not valid JSON.
    #[error("trace is not valid JSON: {0}")]
    Json(String),
    /// A field is missing or has the wrong type or value.
    #[error("trace field `{field}`: {reason}")]
    Field {
        /// The field's path, e.g. `base.betas`.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The optimizer could not be built or stepped.
    #[error("optimizer: {0}")]
    Optim(#[from] super::OptimError),
}

fn bad(field: &str, reason: impl Into<String>) -> TraceError {
    TraceError::Field {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// One block of a trace.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceBlock {
    /// Name.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Whether the filter applies.
    pub filtered: bool,
}

/// A parsed trace.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    /// The trace's name.
    pub name: String,
    /// The optimizer it describes.
    pub spec: OptimizerSpec,
    /// Blocks (tensors).
    pub blocks: Vec<TraceBlock>,
    /// Initial values per block (row-major).
    pub init: Vec<Vec<f64>>,
    /// Gradients per step, per block.
    pub grads: Vec<Vec<Vec<f64>>>,
    /// Expected parameters per step, per block, if given.
    pub expected: Option<Vec<Vec<Vec<f64>>>>,
}

/// Worst disagreement of a run with the expected values.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TraceErrors {
    /// max |ours − expected|.
    pub max_abs: f64,
    /// max |ours − expected| / max(1, |expected|).
    pub max_rel: f64,
}

impl TraceErrors {
    /// Whether the run agrees within [`TOLERANCE`].
    pub fn passes(&self) -> bool {
        self.max_rel <= TOLERANCE
    }
}

fn obj<'a>(v: &'a Value, field: &str) -> Result<&'a Map<String, Value>, TraceError> {
    v.as_object()
        .ok_or_else(|| bad(field, "expected an object"))
}

fn num(m: &Map<String, Value>, prefix: &str, key: &str, default: f64) -> Result<f64, TraceError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_f64()
            .ok_or_else(|| bad(&format!("{prefix}.{key}"), "expected a number")),
    }
}

fn boolean(
    m: &Map<String, Value>,
    prefix: &str,
    key: &str,
    default: bool,
) -> Result<bool, TraceError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_bool()
            .ok_or_else(|| bad(&format!("{prefix}.{key}"), "expected true or false")),
    }
}

fn betas(m: &Map<String, Value>, default: (f64, f64)) -> Result<(f64, f64), TraceError> {
    match m.get("betas") {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Array(a)) if a.len() == 2 => {
            let b0 = a[0]
                .as_f64()
                .ok_or_else(|| bad("base.betas[0]", "expected a number"))?;
            let b1 = a[1]
                .as_f64()
                .ok_or_else(|| bad("base.betas[1]", "expected a number"))?;
            Ok((b0, b1))
        }
        Some(_) => Err(bad("base.betas", "expected an array of two numbers")),
    }
}

fn values(v: &Value, field: &str, len: usize) -> Result<Vec<f64>, TraceError> {
    let a = v
        .as_array()
        .ok_or_else(|| bad(field, "expected an array of numbers"))?;
    if a.len() != len {
        return Err(bad(
            field,
            format!("has {} values, the block's shape needs {len}", a.len()),
        ));
    }
    a.iter()
        .enumerate()
        .map(|(i, x)| {
            x.as_f64()
                .ok_or_else(|| bad(&format!("{field}[{i}]"), "expected a number"))
        })
        .collect()
}

fn parse_base(v: &Value) -> Result<BaseSpec, TraceError> {
    let m = obj(v, "base")?;
    let kind = m.get("kind").and_then(Value::as_str).ok_or_else(|| {
        bad(
            "base.kind",
            "missing (adam, adamw, nadam, rmsprop, sgd, lion)",
        )
    })?;
    let p = "base";
    Ok(match kind {
        "adam" | "adamw" => {
            let d = if kind == "adam" {
                Adam::default()
            } else {
                Adam::from(AdamWParams::default())
            };
            let a = Adam {
                lr: num(m, p, "lr", d.lr)?,
                betas: betas(m, d.betas)?,
                eps: num(m, p, "eps", d.eps)?,
                weight_decay: num(m, p, "weight_decay", d.weight_decay)?,
                decoupled_weight_decay: boolean(
                    m,
                    p,
                    "decoupled_weight_decay",
                    d.decoupled_weight_decay,
                )?,
                amsgrad: boolean(m, p, "amsgrad", d.amsgrad)?,
            };
            BaseSpec::Adam(a)
        }
        "nadam" => {
            let d = NAdam::default();
            BaseSpec::Nadam(NAdam {
                lr: num(m, p, "lr", d.lr)?,
                betas: betas(m, d.betas)?,
                eps: num(m, p, "eps", d.eps)?,
                weight_decay: num(m, p, "weight_decay", d.weight_decay)?,
                momentum_decay: num(m, p, "momentum_decay", d.momentum_decay)?,
                decoupled_weight_decay: boolean(
                    m,
                    p,
                    "decoupled_weight_decay",
                    d.decoupled_weight_decay,
                )?,
            })
        }
        "rmsprop" => {
            let d = RmsProp::default();
            BaseSpec::Rmsprop(RmsProp {
                lr: num(m, p, "lr", d.lr)?,
                alpha: num(m, p, "alpha", d.alpha)?,
                eps: num(m, p, "eps", d.eps)?,
                weight_decay: num(m, p, "weight_decay", d.weight_decay)?,
                momentum: num(m, p, "momentum", d.momentum)?,
                centered: boolean(m, p, "centered", d.centered)?,
            })
        }
        "sgd" => {
            let d = Sgd::default();
            BaseSpec::Sgd(Sgd {
                lr: num(m, p, "lr", d.lr)?,
                momentum: num(m, p, "momentum", d.momentum)?,
                dampening: num(m, p, "dampening", d.dampening)?,
                weight_decay: num(m, p, "weight_decay", d.weight_decay)?,
                nesterov: boolean(m, p, "nesterov", d.nesterov)?,
            })
        }
        "lion" => {
            let d = Lion::default();
            BaseSpec::Lion(Lion {
                lr: num(m, p, "lr", d.lr)?,
                betas: betas(m, d.betas)?,
                weight_decay: num(m, p, "weight_decay", d.weight_decay)?,
            })
        }
        other => {
            return Err(bad(
                "base.kind",
                format!("unknown base `{other}` (adam, adamw, nadam, rmsprop, sgd, lion)"),
            ))
        }
    })
}

fn parse_filter(v: Option<&Value>) -> Result<(FilterSpec, DecayScope), TraceError> {
    let Some(v) = v else {
        return Ok((FilterSpec::None, DecayScope::Selected));
    };
    let m = obj(v, "filter")?;
    let kind = match m.get("kind") {
        None => "none",
        Some(k) => k
            .as_str()
            .ok_or_else(|| bad("filter.kind", "expected a string"))?,
    };
    let fraction = num(m, "filter", "fraction", 1.0)?;
    let seed = num(m, "filter", "seed", 0.0)? as u64;
    let scope = match m.get("weight_decay_scope").map(|s| s.as_str()) {
        None | Some(Some("selected")) => DecayScope::Selected,
        Some(Some("all")) => DecayScope::All,
        _ => {
            return Err(bad(
                "filter.weight_decay_scope",
                "expected \"selected\" or \"all\"",
            ))
        }
    };
    let f = match kind {
        "none" => FilterSpec::None,
        "momentum" => FilterSpec::Momentum { fraction },
        "gradient" => FilterSpec::Gradient { fraction },
        "mv" => FilterSpec::Mv { fraction },
        "gv" => FilterSpec::Gv { fraction },
        "random" => FilterSpec::Random { fraction, seed },
        "hft" | "block_random" => FilterSpec::Hft { seed },
        other => {
            return Err(bad(
                "filter.kind",
                format!("unknown filter `{other}` (none, momentum, gradient, mv, gv, random, hft)"),
            ))
        }
    };
    Ok((f, scope))
}

impl Trace {
    /// Parses a trace from JSON text.
    pub fn parse(text: &str) -> Result<Trace, TraceError> {
        let v: Value = serde_json::from_str(text).map_err(|e| TraceError::Json(e.to_string()))?;
        let root = obj(&v, "(root)")?;
        match root.get("format").and_then(Value::as_str) {
            Some("mofo-trace/1") => {}
            Some(f) => return Err(bad("format", format!("`{f}` is not mofo-trace/1"))),
            None => return Err(bad("format", "missing (expected \"mofo-trace/1\")")),
        }
        let name = root
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("trace")
            .to_string();
        let base = parse_base(root.get("base").ok_or_else(|| bad("base", "missing"))?)?;
        let (filter, scope) = parse_filter(root.get("filter"))?;
        let blocks_v = root
            .get("blocks")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("blocks", "missing or not an array"))?;
        let mut blocks = Vec::new();
        for (i, b) in blocks_v.iter().enumerate() {
            let f = format!("blocks[{i}]");
            let m = obj(b, &f)?;
            let name = m
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(&format!("{f}.name"), "missing or not a string"))?
                .to_string();
            let shape = m
                .get("shape")
                .and_then(Value::as_array)
                .ok_or_else(|| bad(&format!("{f}.shape"), "missing or not an array"))?
                .iter()
                .map(|x| {
                    x.as_u64()
                        .map(|u| u as usize)
                        .ok_or_else(|| bad(&format!("{f}.shape"), "expected non-negative integers"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let filtered = boolean(m, &f, "filtered", true)?;
            blocks.push(TraceBlock {
                name,
                shape,
                filtered,
            });
        }
        let lens: Vec<usize> = blocks.iter().map(|b| b.shape.iter().product()).collect();
        let init_m = obj(
            root.get("init").ok_or_else(|| bad("init", "missing"))?,
            "init",
        )?;
        let init = blocks
            .iter()
            .zip(&lens)
            .map(|(b, &n)| {
                let f = format!("init.{}", b.name);
                values(
                    init_m.get(&b.name).ok_or_else(|| bad(&f, "missing"))?,
                    &f,
                    n,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let steps = |key: &str| -> Result<Option<Vec<Vec<Vec<f64>>>>, TraceError> {
            let Some(a) = root.get(key) else {
                return Ok(None);
            };
            let a = a
                .as_array()
                .ok_or_else(|| bad(key, "expected an array of maps, one per step"))?;
            a.iter()
                .enumerate()
                .map(|(s, m)| {
                    let m = obj(m, &format!("{key}[{s}]"))?;
                    blocks
                        .iter()
                        .zip(&lens)
                        .map(|(b, &n)| {
                            let f = format!("{key}[{s}].{}", b.name);
                            values(m.get(&b.name).ok_or_else(|| bad(&f, "missing"))?, &f, n)
                        })
                        .collect()
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
        };
        let grads = steps("grads")?.ok_or_else(|| bad("grads", "missing"))?;
        let expected = steps("expected")?;
        if let Some(e) = &expected {
            if e.len() != grads.len() {
                return Err(bad(
                    "expected",
                    format!("has {} steps, grads has {}", e.len(), grads.len()),
                ));
            }
        }
        let mut spec = OptimizerSpec::new(base, filter);
        spec.decay_scope = scope;
        let unfiltered: Vec<String> = blocks
            .iter()
            .filter(|b| !b.filtered)
            .map(|b| b.name.clone())
            .collect();
        if !unfiltered.is_empty() {
            let mut rule = GroupRule::new("unfiltered", NameMatch::Exact(unfiltered));
            rule.filtered = false;
            spec.groups.push(rule);
        }
        if let Some(s) = root.get("lr_schedule") {
            let a = s
                .as_array()
                .ok_or_else(|| bad("lr_schedule", "expected an array of numbers"))?;
            let lrs = a
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    x.as_f64()
                        .ok_or_else(|| bad(&format!("lr_schedule[{i}]"), "expected a number"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            spec.schedule = ScheduleSpec::Table { lrs };
        }
        Ok(Trace {
            name,
            spec,
            blocks,
            init,
            grads,
            expected,
        })
    }

    /// The initial parameters as a store.
    pub fn init_store<T: Scalar>(&self) -> ParamStore<T> {
        let mut s = ParamStore::new();
        for (b, v) in self.blocks.iter().zip(&self.init) {
            s.insert_vec(
                b.name.clone(),
                &b.shape,
                v.iter().map(|&x| T::of(x)).collect(),
            )
            .expect("block names and lengths checked at parse time");
        }
        s
    }

    /// Runs the trace; returns the parameters after every step (per block).
    pub fn run<T: Scalar>(&self) -> Result<Vec<Vec<Vec<f64>>>, TraceError> {
        let mut params = self.init_store::<T>();
        let mut opt = self.spec.build(&params)?;
        if let ScheduleSpec::Table { lrs } = &self.spec.schedule {
            // Absolute per-step lrs (they override the base lr).
            let lrs = lrs.clone();
            opt.set_schedule(Schedule::custom(move |t, eta| {
                lrs.get((t - 1) as usize).copied().unwrap_or(eta)
            }));
        }
        let mut grads = params.zeros_like();
        let mut out = Vec::with_capacity(self.grads.len());
        for step in &self.grads {
            for (b, g) in self.blocks.iter().zip(step) {
                let dst = grads.get_mut(&b.name).expect("same names").as_slice_mut();
                for (d, &x) in dst.iter_mut().zip(g) {
                    *d = T::of(x);
                }
            }
            opt.step(&mut params, &grads)?;
            out.push(
                self.blocks
                    .iter()
                    .map(|b| {
                        params
                            .get(&b.name)
                            .expect("same names")
                            .as_slice()
                            .iter()
                            .map(|x| x.as_f64())
                            .collect()
                    })
                    .collect(),
            );
        }
        Ok(out)
    }

    /// Compares a run with the expected values (None if the trace has none).
    pub fn compare(&self, ours: &[Vec<Vec<f64>>]) -> Option<TraceErrors> {
        let expected = self.expected.as_ref()?;
        let mut e = TraceErrors::default();
        for (so, se) in ours.iter().zip(expected) {
            for (bo, be) in so.iter().zip(se) {
                for (&o, &x) in bo.iter().zip(be) {
                    let d = (o - x).abs();
                    let d = if d.is_nan() { f64::INFINITY } else { d };
                    e.max_abs = e.max_abs.max(d);
                    e.max_rel = e.max_rel.max(d / x.abs().max(1.0));
                }
            }
        }
        Some(e)
    }
}
