//! The forgetting experiment over several seeds (`mofo forgetting --seeds
//! N`): run r = 0..N−1 is the configured experiment with its seeds moved
//! by r (which seeds: [`SeedScope`]), and the summary gives, for every
//! run label (method, α, learning rate) and measure x,
//!
//! ```text
//! median    the middle value of x over the runs (mean of the two middle ones for even N)
//! range     min over runs of x, max over runs of x
//! finite    #{ r : x_r finite }  (median and range are taken over these)
//! ```
//!
//! and, for every run label against Adam at the same learning rate
//! (`lr = None` is the configured fine-tuning learning rate, so Lion and the
//! BCD methods are paired with the default Adam row), the paired counts
//!
//! ```text
//! #{ r : ΔL_pre_r < ΔL_pre_r(adam) }      forgot less
//! #{ r : distance_r < distance_r(adam) }  moved less
//! #{ r : MC_r > MC_r(adam) }              kept more (multiple choice)
//! #{ r : recall_r > recall_r(adam) }      kept more (greedy recall)
//! #{ r : task_r > task_r(adam) }          learned more (exact match)
//! #{ r : L_task_r < L_task_r(adam) }      learned more (held-out task loss)
//! ```
//!
//! with strict inequalities (ties and non-finite values count for neither).

use serde::{Deserialize, Serialize};

use super::{ForgettingConfig, ForgettingResults, MethodResult};

/// Which seeds of the configuration move from run to run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SeedScope {
    /// The order of the fine-tuning batches only (`finetune.seed`): one
    /// pre-trained base, shared by every run.
    #[default]
    Finetune,
    /// The base: the model's initialisation (`model.seed`) and the order of
    /// the pre-training batches (`pretrain.seed`); one base per run, the
    /// same fine-tuning order.
    Base,
    /// Every seed: the generated facts (`knowledge.seed`), the task
    /// (`task.seed`), the model, pre-training and fine-tuning.
    All,
}

/// The seeds one run used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSeeds {
    /// `model.seed`.
    pub model: u64,
    /// `knowledge.seed`.
    pub knowledge: u64,
    /// `task.seed`.
    pub task: u64,
    /// `pretrain.seed`.
    pub pretrain: u64,
    /// `finetune.seed`.
    pub finetune: u64,
}

impl RunSeeds {
    /// The seeds of `cfg`.
    pub fn of(cfg: &ForgettingConfig) -> Self {
        Self {
            model: cfg.model.seed,
            knowledge: cfg.knowledge.seed,
            task: cfg.task.seed,
            pretrain: cfg.pretrain.seed,
            finetune: cfg.finetune.seed,
        }
    }
}

impl SeedScope {
    /// The configuration of run `offset`: `cfg` with the seeds of this
    /// scope moved by `offset` (run 0 is `cfg` itself); an error where a
    /// seed would pass `u64::MAX`.
    pub fn seeded(self, cfg: &ForgettingConfig, offset: u64) -> Result<ForgettingConfig, String> {
        let shifted = |name: &str, seed: u64| {
            seed.checked_add(offset)
                .ok_or_else(|| format!("{name} {seed} + run {offset} passes 2^64 − 1"))
        };
        let mut c = cfg.clone();
        if self == Self::Finetune || self == Self::All {
            c.finetune.seed = shifted("finetune.seed", c.finetune.seed)?;
        }
        if self == Self::Base || self == Self::All {
            c.model.seed = shifted("model.seed", c.model.seed)?;
            c.pretrain.seed = shifted("pretrain.seed", c.pretrain.seed)?;
        }
        if self == Self::All {
            c.knowledge.seed = shifted("knowledge.seed", c.knowledge.seed)?;
            c.task.seed = shifted("task.seed", c.task.seed)?;
        }
        Ok(c)
    }
}

/// Median, smallest and largest of the finite values of one measure.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// The middle value (mean of the two middle ones for an even count);
    /// NaN where no value is finite.
    #[serde(deserialize_with = "crate::io::json_nan::f64_or_nan")]
    pub median: f64,
    /// The smallest value (NaN where none is finite).
    #[serde(deserialize_with = "crate::io::json_nan::f64_or_nan")]
    pub min: f64,
    /// The largest value (NaN where none is finite).
    #[serde(deserialize_with = "crate::io::json_nan::f64_or_nan")]
    pub max: f64,
    /// How many of the values were finite.
    pub finite: usize,
}

impl Spread {
    /// The spread of the finite numbers among `values`.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n == 0 {
            return Self {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
                finite: 0,
            };
        }
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            0.5 * (v[n / 2 - 1] + v[n / 2])
        };
        Self {
            median,
            min: v[0],
            max: v[n - 1],
            finite: n,
        }
    }
}

/// The measures of a run label over the runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeedRow {
    /// Builder name.
    pub method: String,
    /// Label ("mofo α=0.15 lr=3e-3").
    pub label: String,
    /// Task exact match.
    pub finetune_accuracy: Spread,
    /// Held-out task loss.
    pub finetune_loss: Spread,
    /// Greedy fact recall.
    pub retained_accuracy: Spread,
    /// Multiple-choice fact accuracy.
    pub retained_mc_accuracy: Spread,
    /// Rise of the held-out pre-training loss.
    pub pretrain_loss_increase: Spread,
    /// Distance to the base.
    pub distance: Spread,
    /// Share of entries with |Δ| > 2e-6.
    pub significant_update_share: Spread,
    /// Seconds of fine-tuning steps.
    pub seconds: Spread,
}

/// The paired counts of one run label against Adam at the same learning
/// rate (module docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgainstAdam {
    /// The label compared.
    pub label: String,
    /// Adam's label it is compared with.
    pub adam: String,
    /// Runs in which both have a row.
    pub runs: usize,
    /// Runs where its pre-training loss rose less.
    pub pretrain_loss_increase_lower: usize,
    /// Runs where it ended closer to the base.
    pub distance_lower: usize,
    /// Runs where its multiple-choice accuracy was higher.
    pub retained_mc_accuracy_higher: usize,
    /// Runs where its greedy recall was higher.
    pub retained_accuracy_higher: usize,
    /// Runs where its task exact match was higher.
    pub finetune_accuracy_higher: usize,
    /// Runs where its held-out task loss was lower.
    pub finetune_loss_lower: usize,
}

/// The base model over the runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeedBase {
    /// Parameters of the model.
    pub parameters: usize,
    /// Task exact match before fine-tuning.
    pub finetune_accuracy: Spread,
    /// Greedy fact recall.
    pub retained_accuracy: Spread,
    /// Multiple-choice fact accuracy.
    pub retained_mc_accuracy: Spread,
    /// Held-out pre-training loss.
    pub pretrain_loss: Spread,
}

/// Everything `--seeds` reports (`seeds.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeedSummary {
    /// "mofo-forgetting-seeds/1".
    pub format: String,
    /// Which seeds moved.
    pub scope: SeedScope,
    /// The seeds of each run, in run order.
    pub seeds: Vec<RunSeeds>,
    /// The base model (one value per run; the same in every run for the
    /// `finetune` scope).
    pub base: SeedBase,
    /// One row per run label, in the runs' order.
    pub rows: Vec<SeedRow>,
    /// Every run label that is not Adam's, against Adam at its learning rate.
    pub against_adam: Vec<AgainstAdam>,
    /// Total wall time of the runs.
    #[serde(deserialize_with = "crate::io::json_nan::f64_or_nan")]
    pub seconds: f64,
}

/// Summarises the runs of [`super::run_forgetting_seeds`]: an error where
/// the runs are empty or do not share their run labels in the same order.
pub fn summarize(scope: SeedScope, runs: &[ForgettingResults]) -> Result<SeedSummary, String> {
    let first = runs.first().ok_or("no runs to summarise")?;
    let labels: Vec<&str> = first.rows.iter().map(|r| r.label.as_str()).collect();
    for (i, r) in runs.iter().enumerate() {
        let these: Vec<&str> = r.rows.iter().map(|r| r.label.as_str()).collect();
        if these != labels {
            return Err(format!(
                "run {i} has the runs [{}], run 0 [{}]",
                these.join(", "),
                labels.join(", ")
            ));
        }
    }
    let spread =
        |i: usize, f: fn(&MethodResult) -> f64| Spread::of(runs.iter().map(|r| f(&r.rows[i])));
    let rows = first
        .rows
        .iter()
        .enumerate()
        .map(|(i, row)| SeedRow {
            method: row.method.clone(),
            label: row.label.clone(),
            finetune_accuracy: spread(i, |m| m.finetune_accuracy),
            finetune_loss: spread(i, |m| m.finetune_loss),
            retained_accuracy: spread(i, |m| m.retained_accuracy),
            retained_mc_accuracy: spread(i, |m| m.retained_mc_accuracy),
            pretrain_loss_increase: spread(i, |m| m.pretrain_loss_increase),
            distance: spread(i, |m| m.distance),
            significant_update_share: spread(i, |m| m.significant_update_share),
            seconds: spread(i, |m| m.seconds),
        })
        .collect();
    let mut against_adam = Vec::new();
    for (i, row) in first.rows.iter().enumerate() {
        if row.method == "adam" {
            continue;
        }
        let Some(a) = first
            .rows
            .iter()
            .position(|x| x.method == "adam" && x.config.lr == row.config.lr)
        else {
            continue;
        };
        let pairs: Vec<(&MethodResult, &MethodResult)> =
            runs.iter().map(|r| (&r.rows[i], &r.rows[a])).collect();
        let lower = |f: fn(&MethodResult) -> f64| pairs.iter().filter(|(x, a)| f(x) < f(a)).count();
        let higher =
            |f: fn(&MethodResult) -> f64| pairs.iter().filter(|(x, a)| f(x) > f(a)).count();
        against_adam.push(AgainstAdam {
            label: row.label.clone(),
            adam: first.rows[a].label.clone(),
            runs: pairs.len(),
            pretrain_loss_increase_lower: lower(|m| m.pretrain_loss_increase),
            distance_lower: lower(|m| m.distance),
            retained_mc_accuracy_higher: higher(|m| m.retained_mc_accuracy),
            retained_accuracy_higher: higher(|m| m.retained_accuracy),
            finetune_accuracy_higher: higher(|m| m.finetune_accuracy),
            finetune_loss_lower: lower(|m| m.finetune_loss),
        });
    }
    let base = |f: fn(&super::BaseResult) -> f64| Spread::of(runs.iter().map(|r| f(&r.base)));
    Ok(SeedSummary {
        format: "mofo-forgetting-seeds/1".into(),
        scope,
        seeds: runs.iter().map(|r| RunSeeds::of(&r.config)).collect(),
        base: SeedBase {
            parameters: first.base.parameters,
            finetune_accuracy: base(|b| b.finetune_accuracy),
            retained_accuracy: base(|b| b.retained_accuracy),
            retained_mc_accuracy: base(|b| b.retained_mc_accuracy),
            pretrain_loss: base(|b| b.pretrain_loss),
        },
        rows,
        against_adam,
        seconds: runs.iter().map(|r| r.seconds).sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_takes_the_finite_values() {
        let s = Spread::of([3.0, f64::NAN, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max, s.finite), (2.0, 1.0, 3.0, 3));
        let s = Spread::of([4.0, 1.0, f64::INFINITY, 2.0, 10.0]);
        assert_eq!((s.median, s.min, s.max, s.finite), (3.0, 1.0, 10.0, 4));
        let s = Spread::of([f64::NAN]);
        assert!(s.median.is_nan() && s.min.is_nan() && s.max.is_nan());
        assert_eq!(s.finite, 0);
        assert_eq!(Spread::of([-0.5]).median, -0.5);
        // As seeds.json holds it: NaN as null, read back as NaN.
        let text = serde_json::to_string(&s).unwrap();
        let back: Spread = serde_json::from_str(&text).unwrap();
        assert!(back.median.is_nan() && back.min.is_nan() && back.max.is_nan());
        assert_eq!(back.finite, 0);
    }

    #[test]
    fn each_scope_moves_its_seeds() {
        let cfg = ForgettingConfig::quick_preset();
        let at = |scope: SeedScope, r: u64| RunSeeds::of(&scope.seeded(&cfg, r).unwrap());
        let s0 = RunSeeds::of(&cfg);
        assert_eq!(at(SeedScope::All, 0), s0);
        assert_eq!(
            at(SeedScope::Finetune, 2),
            RunSeeds {
                finetune: s0.finetune + 2,
                ..s0
            }
        );
        assert_eq!(
            at(SeedScope::Base, 2),
            RunSeeds {
                model: s0.model + 2,
                pretrain: s0.pretrain + 2,
                ..s0
            }
        );
        assert_eq!(
            at(SeedScope::All, 3),
            RunSeeds {
                model: s0.model + 3,
                knowledge: s0.knowledge + 3,
                task: s0.task + 3,
                pretrain: s0.pretrain + 3,
                finetune: s0.finetune + 3,
            }
        );
        let mut last = cfg.clone();
        last.model.seed = u64::MAX;
        let err = SeedScope::Base.seeded(&last, 1).unwrap_err();
        assert!(err.contains("model.seed"), "{err}");
        assert!(SeedScope::Finetune.seeded(&last, 1).is_ok());
    }
}
