//! The configuration of `mofo forgetting`: model size, data, the two
//! training phases, the methods and their hyperparameters.
//!
//! An experiment file (TOML or JSON) is merged key by key onto a preset
//! (`default` or, with `--quick`, `quick`), so it only needs the keys it
//! changes.

use serde::{Deserialize, Serialize};

use crate::data::{KnowledgeConfig, TaskConfig, TaskKind};

/// The method names the experiment knows (the optimizer builder's names).
pub const METHODS: [&str; 10] = [
    "adam",
    "mofo",
    "lion",
    "lion_mofo",
    "random_bcd",
    "grad_bcd",
    "mv_bcd",
    "hft",
    "l1_reg",
    "l2_reg",
];

/// Size of the Llama model (vocabulary comes from the tokenizer).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSize {
    /// Residual width.
    pub hidden_size: usize,
    /// Transformer layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads.
    pub num_key_value_heads: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Longest sequence.
    pub max_position_embeddings: usize,
    /// Share embedding and output matrices.
    pub tie_word_embeddings: bool,
    /// Initialisation seed.
    pub seed: u64,
}

/// One training phase (pre-training or fine-tuning).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseConfig {
    /// Optimizer steps.
    pub steps: u64,
    /// Rows per batch.
    pub batch_size: usize,
    /// Tokens per row.
    pub seq_len: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warmup steps.
    pub warmup_steps: u64,
    /// Cosine floor as a share of the peak learning rate.
    pub min_lr_ratio: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Gradient clipping by global norm (0: none).
    pub grad_clip: f64,
    /// Batch sampling seed.
    pub seed: u64,
}

/// One method to fine-tune with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodConfig {
    /// Builder name: adam, mofo, lion, lion_mofo, random_bcd, grad_bcd,
    /// mv_bcd, hft, l1_reg, l2_reg.
    pub name: String,
    /// Fraction α of entries updated per block (filtered methods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// Multiplier of the fine-tuning learning rate (e.g. 0.3 for Lion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_scale: Option<f64>,
    /// Fine-tuning peak learning rate replacing the phase's (lr sweeps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// Strength λ of the L1 / L2 pull toward the pre-trained weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda: Option<f64>,
    /// Weight decay (overrides the phase's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,
}

impl MethodConfig {
    /// A method with the builder's defaults.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_string(),
            alpha: None,
            lr_scale: None,
            lr: None,
            lambda: None,
            weight_decay: None,
        }
    }

    /// The label in tables and plots ("mofo α=0.15", "adam lr=0.0003").
    pub fn label(&self) -> String {
        let mut l = match self.alpha {
            Some(a) if self.name.contains("mofo") || self.name.ends_with("bcd") => {
                format!("{} α={}", self.name, a)
            }
            _ => self.name.clone(),
        };
        if let Some(lr) = self.lr {
            l.push_str(&format!(" lr={lr:e}"));
        }
        l
    }

    /// The peak learning rate of this method in `phase`.
    pub fn peak_lr(&self, phase: &PhaseConfig) -> f64 {
        self.lr.unwrap_or(phase.lr) * self.lr_scale.unwrap_or(1.0)
    }
}

/// Evaluation sizes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Knowledge probes evaluated (0: all facts).
    pub probes: usize,
    /// Evaluate the curves every this many fine-tuning steps (0: end only).
    pub every: u64,
}

/// The whole experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgettingConfig {
    /// Model size.
    pub model: ModelSize,
    /// The pre-training world.
    pub knowledge: KnowledgeConfig,
    /// The fine-tuning task.
    pub task: TaskConfig,
    /// Pre-training phase (AdamW).
    pub pretrain: PhaseConfig,
    /// Fine-tuning phase (same budget and schedule for every method).
    pub finetune: PhaseConfig,
    /// Methods to compare.
    pub methods: Vec<MethodConfig>,
    /// Extra MoFO runs at these α (empty: none).
    pub alpha_sweep: Vec<f64>,
    /// Extra runs of `lr_sweep_methods` at these fine-tuning learning rates
    /// (the Pareto view across learning rates; empty: none).
    #[serde(default)]
    pub lr_sweep: Vec<f64>,
    /// The methods of the learning-rate sweep.
    #[serde(default)]
    pub lr_sweep_methods: Vec<String>,
    /// Evaluation.
    pub eval: EvalConfig,
}

fn default_methods(alpha: f64, lion_scale: f64, l1: f64, l2: f64) -> Vec<MethodConfig> {
    METHODS
        .iter()
        .map(|&n| {
            let mut m = MethodConfig::named(n);
            if n.contains("mofo") || n.ends_with("bcd") {
                m.alpha = Some(alpha);
            }
            if n.starts_with("lion") {
                m.lr_scale = Some(lion_scale);
            }
            if n == "l1_reg" {
                m.lambda = Some(l1);
            }
            if n == "l2_reg" {
                m.lambda = Some(l2);
            }
            m
        })
        .collect()
}

impl ForgettingConfig {
    /// The preset of a full run (about 5 to 10 minutes on 2 cores).
    pub fn default_preset() -> Self {
        Self {
            model: ModelSize {
                hidden_size: 96,
                num_hidden_layers: 3,
                num_attention_heads: 4,
                num_key_value_heads: 4,
                intermediate_size: 256,
                max_position_embeddings: 128,
                tie_word_embeddings: true,
                seed: 0,
            },
            knowledge: KnowledgeConfig {
                entities: 80,
                ..Default::default()
            },
            task: TaskConfig {
                kind: TaskKind::Shift,
                letters: 4,
                train_examples: 4000,
                eval_examples: 200,
                ..Default::default()
            },
            pretrain: PhaseConfig {
                steps: 1200,
                batch_size: 16,
                seq_len: 96,
                lr: 3e-3,
                warmup_steps: 50,
                min_lr_ratio: 0.1,
                weight_decay: 0.0,
                grad_clip: 1.0,
                seed: 10,
            },
            finetune: PhaseConfig {
                steps: 200,
                batch_size: 8,
                seq_len: 64,
                lr: 1e-3,
                warmup_steps: 10,
                min_lr_ratio: 0.1,
                weight_decay: 0.0,
                grad_clip: 1.0,
                seed: 20,
            },
            methods: default_methods(0.15, 0.3, 1e-3, 1e-2),
            alpha_sweep: Vec::new(),
            lr_sweep: vec![3e-3, 3e-4],
            lr_sweep_methods: vec!["adam".into(), "mofo".into()],
            eval: EvalConfig {
                probes: 0,
                every: 25,
            },
        }
    }

    /// The `--quick` preset (under 2 minutes on 2 cores).
    pub fn quick_preset() -> Self {
        let mut c = Self::default_preset();
        c.model.hidden_size = 64;
        c.model.num_hidden_layers = 2;
        c.model.intermediate_size = 172;
        c.knowledge.entities = 40;
        c.knowledge.general_sentences = 100;
        c.task.train_examples = 1000;
        c.task.eval_examples = 100;
        c.pretrain.steps = 700;
        c.pretrain.batch_size = 12;
        c.pretrain.seq_len = 80;
        c.finetune.steps = 100;
        c.eval.every = 20;
        c.lr_sweep = Vec::new();
        c
    }

    /// Merges a partial experiment (a JSON value) onto this configuration:
    /// objects are merged key by key, everything else replaces.
    pub fn merged(&self, overrides: serde_json::Value) -> Result<Self, String> {
        let mut base = serde_json::to_value(self).expect("config serialises");
        merge(&mut base, overrides);
        let c: Self = serde_json::from_value(base).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    /// Checks the values a run needs.
    pub fn validate(&self) -> Result<(), String> {
        self.knowledge.validate().map_err(|e| e.to_string())?;
        self.task.validate().map_err(|e| e.to_string())?;
        let m = &self.model;
        if m.hidden_size == 0
            || m.num_hidden_layers == 0
            || m.num_attention_heads == 0
            || m.num_key_value_heads == 0
            || m.intermediate_size == 0
        {
            return Err("model sizes must be positive".into());
        }
        if !m.hidden_size.is_multiple_of(m.num_attention_heads)
            || !m.num_attention_heads.is_multiple_of(m.num_key_value_heads)
        {
            return Err(format!(
                "model: heads ({}) must divide hidden size ({}) and key/value heads ({}) must divide heads",
                m.num_attention_heads, m.hidden_size, m.num_key_value_heads
            ));
        }
        for (name, p) in [("pretrain", &self.pretrain), ("finetune", &self.finetune)] {
            if p.steps == 0 || p.batch_size == 0 || p.seq_len < 8 {
                return Err(format!(
                    "{name}: steps and batch_size must be positive and seq_len ≥ 8"
                ));
            }
            if p.seq_len > m.max_position_embeddings {
                return Err(format!(
                    "{name}.seq_len {} exceeds model.max_position_embeddings {}",
                    p.seq_len, m.max_position_embeddings
                ));
            }
            if !(p.lr > 0.0 && p.lr.is_finite() && (0.0..=1.0).contains(&p.min_lr_ratio)) {
                return Err(format!("{name}: lr must be > 0 and min_lr_ratio in [0, 1]"));
            }
            if p.warmup_steps >= p.steps {
                return Err(format!("{name}: warmup_steps must be below steps"));
            }
            check_grad_clip(&format!("{name}: grad_clip"), p.grad_clip)?;
        }
        if self.methods.is_empty() && self.alpha_sweep.is_empty() {
            return Err("no methods to run".into());
        }
        for meth in &self.methods {
            if !METHODS.contains(&meth.name.as_str()) {
                return Err(format!(
                    "unknown method `{}` (known: {})",
                    meth.name,
                    METHODS.join(", ")
                ));
            }
            if let Some(a) = meth.alpha {
                if !(a > 0.0 && a <= 1.0) {
                    return Err(format!("{}: alpha must be in (0, 1], got {a}", meth.name));
                }
            }
        }
        for &a in &self.alpha_sweep {
            if !(a > 0.0 && a <= 1.0) {
                return Err(format!("alpha sweep: alpha must be in (0, 1], got {a}"));
            }
        }
        for &lr in &self.lr_sweep {
            if !(lr > 0.0 && lr.is_finite()) {
                return Err(format!("lr sweep: learning rates must be > 0, got {lr}"));
            }
        }
        for n in &self.lr_sweep_methods {
            if !METHODS.contains(&n.as_str()) {
                return Err(format!("lr sweep: unknown method `{n}`"));
            }
        }
        Ok(())
    }

    /// The runs to make: the methods, then MoFO at every α of the sweep
    /// (skipping an α already run), then the learning-rate sweep.
    pub fn runs(&self) -> Vec<MethodConfig> {
        let mut out = self.methods.clone();
        let template = self
            .methods
            .iter()
            .find(|m| m.name == "mofo")
            .cloned()
            .unwrap_or_else(|| MethodConfig::named("mofo"));
        for &a in &self.alpha_sweep {
            if !out.iter().any(|m| m.name == "mofo" && m.alpha == Some(a)) {
                out.push(MethodConfig {
                    alpha: Some(a),
                    ..template.clone()
                });
            }
        }
        for &lr in &self.lr_sweep {
            if lr == self.finetune.lr {
                continue;
            }
            for name in &self.lr_sweep_methods {
                let m = self
                    .methods
                    .iter()
                    .find(|m| &m.name == name)
                    .cloned()
                    .unwrap_or_else(|| MethodConfig::named(name));
                out.push(MethodConfig { lr: Some(lr), ..m });
            }
        }
        out
    }
}

fn merge(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Refuses a gradient-clipping norm that is not a finite number ≥ 0 (0
/// means no clipping), naming the setting `name` (`--grad-clip`,
/// `finetune: grad_clip`): the up-front form of the optimizer's own
/// `clip.max_norm` check, before any data is read.
pub fn check_grad_clip(name: &str, grad_clip: f64) -> Result<(), String> {
    if grad_clip.is_finite() && grad_clip >= 0.0 {
        Ok(())
    } else {
        Err(format!(
            "{name} must be a finite norm ≥ 0 (0: no clipping), not {grad_clip}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_merge_works() {
        ForgettingConfig::default_preset().validate().unwrap();
        let q = ForgettingConfig::quick_preset();
        q.validate().unwrap();
        let m = q
            .merged(serde_json::json!({"finetune": {"steps": 70}, "alpha_sweep": [0.05]}))
            .unwrap();
        assert_eq!(m.finetune.steps, 70);
        assert_eq!(m.finetune.lr, q.finetune.lr);
        assert_eq!(m.runs().len(), q.methods.len() + 1);
        assert!(q
            .merged(serde_json::json!({"finetune": {"stepz": 7}}))
            .is_err());
        assert!(q
            .merged(serde_json::json!({"methods": [{"name": "sgdx"}]}))
            .is_err());
        let mut bad = q.clone();
        bad.finetune.grad_clip = -1.0;
        let err = bad.validate().unwrap_err();
        assert!(
            err.contains("finetune: grad_clip must be a finite norm"),
            "{err}"
        );
        bad.finetune.grad_clip = f64::NAN;
        assert!(bad.validate().is_err());
    }
}
