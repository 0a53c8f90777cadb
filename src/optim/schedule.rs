//! Learning-rate schedules: lr_t as a function of the step t (1-based) and
//! the group's base learning rate η.
//!
//! ```text
//! constant        lr_t = η
//! linear warmup   lr_t = η·min(1, t / w)
//! warmup + cosine lr_t = η·t/w (t < w);  floor + (η − floor)·½(1 + cos(π·(t − w)/(T − w)))  (w ≤ t ≤ T);  floor after T
//! inverse sqrt    lr_t = η / √t                       (the paper's Theorem 1)
//! table           lr_t = table[t − 1] (last value after the end), scaled by η / η_ref
//! custom          lr_t = f(t, η)
//! ```

use std::fmt;
use std::sync::Arc;

/// A learning-rate schedule.
#[derive(Clone, Default)]
pub enum Schedule {
    /// lr_t = η.
    #[default]
    Constant,
    /// lr_t = η·min(1, t/warmup).
    LinearWarmup {
        /// Warmup steps.
        warmup: u64,
    },
    /// Linear warmup, then cosine decay from η to `floor` at step `total`.
    WarmupCosine {
        /// Warmup steps.
        warmup: u64,
        /// Step at which the floor is reached.
        total: u64,
        /// Final learning rate (absolute).
        floor: f64,
    },
    /// lr_t = η/√t (Theorem 1 of the paper).
    InverseSqrt,
    /// Explicit learning rates per step for the reference lr `reference`;
    /// a group with base lr η gets table[t−1]·η/reference.
    Table {
        /// lr at step 1, 2, ...
        lrs: Vec<f64>,
        /// The base lr the table was written for.
        reference: f64,
    },
    /// Any function of (step, base lr).
    Custom(Arc<dyn Fn(u64, f64) -> f64 + Send + Sync>),
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Constant => write!(f, "Constant"),
            Schedule::LinearWarmup { warmup } => write!(f, "LinearWarmup({warmup})"),
            Schedule::WarmupCosine {
                warmup,
                total,
                floor,
            } => write!(f, "WarmupCosine({warmup}, {total}, {floor})"),
            Schedule::InverseSqrt => write!(f, "InverseSqrt"),
            Schedule::Table { lrs, reference } => {
                write!(f, "Table({} steps, ref {reference})", lrs.len())
            }
            Schedule::Custom(_) => write!(f, "Custom(fn)"),
        }
    }
}

impl Schedule {
    /// A user function of (step, base lr).
    pub fn custom(f: impl Fn(u64, f64) -> f64 + Send + Sync + 'static) -> Self {
        Schedule::Custom(Arc::new(f))
    }

    /// The learning rate at step `t` (1-based) for base learning rate `eta`.
    pub fn lr(&self, t: u64, eta: f64) -> f64 {
        let t = t.max(1);
        match self {
            Schedule::Constant => eta,
            Schedule::LinearWarmup { warmup } => {
                if *warmup == 0 {
                    eta
                } else {
                    eta * (t as f64 / *warmup as f64).min(1.0)
                }
            }
            Schedule::WarmupCosine {
                warmup,
                total,
                floor,
            } => {
                if t < *warmup {
                    eta * t as f64 / *warmup as f64
                } else if t >= *total || total <= warmup {
                    if t >= *total {
                        *floor
                    } else {
                        eta
                    }
                } else {
                    let progress = (t - warmup) as f64 / (total - warmup) as f64;
                    floor + (eta - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
                }
            }
            Schedule::InverseSqrt => eta / (t as f64).sqrt(),
            Schedule::Table { lrs, reference } => {
                let raw = lrs
                    .get((t - 1) as usize)
                    .or(lrs.last())
                    .copied()
                    .unwrap_or(eta);
                if *reference == eta || *reference == 0.0 {
                    raw
                } else {
                    raw * eta / reference
                }
            }
            Schedule::Custom(f) => f(t, eta),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(Schedule::Constant.lr(5, 0.1), 0.1);
        let w = Schedule::LinearWarmup { warmup: 4 };
        assert_eq!(w.lr(1, 1.0), 0.25);
        assert_eq!(w.lr(9, 1.0), 1.0);
        let c = Schedule::WarmupCosine {
            warmup: 2,
            total: 12,
            floor: 0.1,
        };
        assert_eq!(c.lr(1, 1.0), 0.5);
        assert!((c.lr(2, 1.0) - 1.0).abs() < 1e-12);
        assert!((c.lr(7, 1.0) - 0.55).abs() < 1e-12);
        assert_eq!(c.lr(20, 1.0), 0.1);
        assert!((Schedule::InverseSqrt.lr(4, 1.0) - 0.5).abs() < 1e-15);
        let t = Schedule::Table {
            lrs: vec![1.0, 2.0],
            reference: 1.0,
        };
        assert_eq!(t.lr(2, 1.0), 2.0);
        assert_eq!(t.lr(3, 2.0), 4.0);
        assert_eq!(Schedule::custom(|t, e| e * t as f64).lr(3, 2.0), 6.0);
    }
}
