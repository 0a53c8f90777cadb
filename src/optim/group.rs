//! Parameter groups: per-group learning rate, weight decay, fraction α and
//! filter on/off, assigned by rules on the parameter's name.
//!
//! Rules are tried in order; the first rule whose pattern matches a tensor's
//! name decides its group. Tensors no rule matches form the default group,
//! which uses the base's lr and weight decay and the filter's fraction.
//! The published MoFO implementation updates every tensor whose name
//! contains "bias" or "norm" in full: [`GroupRule::full_update`] with those
//! patterns (see [`GroupRule::reference_unfiltered`]).

use serde::{Deserialize, Serialize};

/// How a rule matches parameter names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NameMatch {
    /// The name contains any of these substrings.
    Contains(Vec<String>),
    /// The name equals one of these.
    Exact(Vec<String>),
    /// Every name.
    All,
}

impl NameMatch {
    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            NameMatch::Contains(subs) => subs.iter().any(|s| name.contains(s.as_str())),
            NameMatch::Exact(names) => names.iter().any(|s| s == name),
            NameMatch::All => true,
        }
    }
}

/// One parameter group: which tensors, and what overrides they get.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupRule {
    /// The group's name (for statistics and state files).
    pub name: String,
    /// Which tensors belong to it.
    pub matches: NameMatch,
    /// Base learning rate of the group (default: the base's lr).
    #[serde(default)]
    pub lr: Option<f64>,
    /// Weight decay of the group (default: the base's weight decay).
    #[serde(default)]
    pub weight_decay: Option<f64>,
    /// Fraction α of the group's blocks that is updated (default: the filter's).
    #[serde(default)]
    pub fraction: Option<f64>,
    /// Whether the filter applies (false: every entry is updated).
    #[serde(default = "yes")]
    pub filtered: bool,
}

fn yes() -> bool {
    true
}

impl GroupRule {
    /// A filtered group of the tensors matching `matches`, with no overrides.
    pub fn new(name: impl Into<String>, matches: NameMatch) -> Self {
        GroupRule {
            name: name.into(),
            matches,
            lr: None,
            weight_decay: None,
            fraction: None,
            filtered: true,
        }
    }

    /// A group of tensors whose name contains any of `patterns`, updated in full.
    pub fn full_update(name: impl Into<String>, patterns: &[&str]) -> Self {
        GroupRule {
            filtered: false,
            ..Self::new(
                name,
                NameMatch::Contains(patterns.iter().map(|s| s.to_string()).collect()),
            )
        }
    }

    /// The published implementation's rule: names containing "bias" or "norm"
    /// are updated in full.
    pub fn reference_unfiltered() -> Self {
        Self::full_update("bias_and_norm", &["bias", "norm"])
    }

    /// Sets the group's learning rate.
    pub fn with_lr(mut self, lr: f64) -> Self {
        self.lr = Some(lr);
        self
    }

    /// Sets the group's weight decay.
    pub fn with_weight_decay(mut self, wd: f64) -> Self {
        self.weight_decay = Some(wd);
        self
    }

    /// Sets the group's fraction α.
    pub fn with_fraction(mut self, fraction: f64) -> Self {
        self.fraction = Some(fraction);
        self
    }
}

/// A group after resolution against the base and filter.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedGroup {
    /// Name ("default" for the default group).
    pub name: String,
    /// Base learning rate (before the schedule).
    pub lr: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Fraction α.
    pub fraction: f64,
    /// Whether the filter applies.
    pub filtered: bool,
}
