//! The fine-tuning task: a question/answer skill in another domain than the
//! pre-training corpus (string manipulation or arithmetic).
//!
//! Formats (the answer is followed by the end-of-sequence token when
//! tokenized; the loss is taken on the answer and that token only):
//!
//! ```text
//! reverse:  "Q: reverse abcd\nA: "  → "dcba"
//! shift:    "Q: shift abcd\nA: "    → "bcde"      (each letter +1, z → a)
//! add:      "Q: 12+7=?\nA: "        → "19"
//! ```
//!
//! The training pool and the evaluation set are disjoint, both deterministic
//! functions of the seed.

use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

use super::rng::{derived_rng, stream};
use super::DataError;

/// Which task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Reverse a word of `letters` lowercase letters.
    Reverse,
    /// Shift every letter of a word by one (Caesar +1).
    Shift,
    /// Add two integers in `0..=max_operand`.
    Add,
}

/// How the task is generated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskConfig {
    /// The task. Default reverse.
    pub kind: TaskKind,
    /// Word length for reverse and shift. Default 4.
    pub letters: usize,
    /// Letters drawn from the first `alphabet` lowercase letters. Default 26.
    pub alphabet: usize,
    /// Largest operand for add. Default 49.
    pub max_operand: u32,
    /// Training examples. Default 4000.
    pub train_examples: usize,
    /// Held-out evaluation examples. Default 200.
    pub eval_examples: usize,
    /// Seed. Default 2.
    pub seed: u64,
}

impl Default for TaskConfig {
    fn default() -> Self {
        Self {
            kind: TaskKind::Reverse,
            letters: 4,
            alphabet: 26,
            max_operand: 49,
            train_examples: 4000,
            eval_examples: 200,
            seed: 2,
        }
    }
}

/// One question and its answer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QaExample {
    /// The question, up to and including "A: ".
    pub prompt: String,
    /// The expected answer (without end-of-sequence).
    pub answer: String,
}

/// The generated task.
#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    /// Training pool.
    pub train: Vec<QaExample>,
    /// Held-out evaluation set (disjoint from `train`).
    pub eval: Vec<QaExample>,
}

impl TaskConfig {
    /// Number of distinct examples the task can produce.
    pub fn distinct_examples(&self) -> f64 {
        match self.kind {
            TaskKind::Reverse | TaskKind::Shift => (self.alphabet as f64).powi(self.letters as i32),
            TaskKind::Add => (self.max_operand as f64 + 1.0).powi(2),
        }
    }

    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), DataError> {
        let bad = |m: String| Err(DataError::Config(m));
        if matches!(self.kind, TaskKind::Reverse | TaskKind::Shift) {
            if !(1..=16).contains(&self.letters) {
                return bad(format!(
                    "task.letters must be in 1..=16, got {}",
                    self.letters
                ));
            }
            if !(2..=26).contains(&self.alphabet) {
                return bad(format!(
                    "task.alphabet must be in 2..=26, got {}",
                    self.alphabet
                ));
            }
        }
        if self.kind == TaskKind::Add && !(1..=99_999).contains(&self.max_operand) {
            return bad(format!(
                "task.max_operand must be in 1..=99999, got {}",
                self.max_operand
            ));
        }
        if self.eval_examples == 0 || self.train_examples == 0 {
            return bad("task.train_examples and task.eval_examples must be positive".into());
        }
        let need = (self.train_examples + self.eval_examples) as f64;
        if need > 0.8 * self.distinct_examples() {
            return bad(format!(
                "task asks for {need} distinct examples but only {} exist; lower the counts or enlarge the task",
                self.distinct_examples()
            ));
        }
        Ok(())
    }

    fn example(&self, rng: &mut impl Rng) -> QaExample {
        let letter =
            |rng: &mut dyn rand::RngCore| (b'a' + rng.random_range(0..self.alphabet as u8)) as char;
        match self.kind {
            TaskKind::Reverse => {
                let w: String = (0..self.letters).map(|_| letter(rng)).collect();
                QaExample {
                    prompt: format!("Q: reverse {w}\nA: "),
                    answer: w.chars().rev().collect(),
                }
            }
            TaskKind::Shift => {
                let w: String = (0..self.letters).map(|_| letter(rng)).collect();
                let shifted = w
                    .bytes()
                    .map(|c| (b'a' + (c - b'a' + 1) % 26) as char)
                    .collect();
                QaExample {
                    prompt: format!("Q: shift {w}\nA: "),
                    answer: shifted,
                }
            }
            TaskKind::Add => {
                let a = rng.random_range(0..=self.max_operand);
                let b = rng.random_range(0..=self.max_operand);
                QaExample {
                    prompt: format!("Q: {a}+{b}=?\nA: "),
                    answer: (a + b).to_string(),
                }
            }
        }
    }

    /// Generates the training pool and the evaluation set.
    pub fn generate(&self) -> Result<Task, DataError> {
        self.validate()?;
        let mut rng = derived_rng(self.seed, stream::TASK, 0);
        let mut seen = HashSet::new();
        let mut draw = |n: usize| {
            let mut out = Vec::with_capacity(n);
            while out.len() < n {
                let e = self.example(&mut rng);
                if seen.insert(e.clone()) {
                    out.push(e);
                }
            }
            out
        };
        let eval = draw(self.eval_examples);
        let train = draw(self.train_examples);
        Ok(Task { train, eval })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_right() {
        for kind in [TaskKind::Reverse, TaskKind::Shift, TaskKind::Add] {
            let t = TaskConfig {
                kind,
                train_examples: 50,
                eval_examples: 20,
                ..Default::default()
            }
            .generate()
            .unwrap();
            for e in t.train.iter().chain(&t.eval) {
                let q = e.prompt.trim_start_matches("Q: ").trim_end_matches("\nA: ");
                let expect = match kind {
                    TaskKind::Reverse => q["reverse ".len()..].chars().rev().collect::<String>(),
                    TaskKind::Shift => q["shift ".len()..]
                        .chars()
                        .map(|c| if c == 'z' { 'a' } else { (c as u8 + 1) as char })
                        .collect(),
                    TaskKind::Add => {
                        let (a, b) = q.trim_end_matches("=?").split_once('+').unwrap();
                        (a.parse::<u32>().unwrap() + b.parse::<u32>().unwrap()).to_string()
                    }
                };
                assert_eq!(e.answer, expect, "{kind:?} {}", e.prompt);
            }
            let train: HashSet<_> = t.train.iter().collect();
            assert!(t.eval.iter().all(|e| !train.contains(e)));
        }
    }
}
