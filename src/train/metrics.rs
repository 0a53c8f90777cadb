//! Metrics as JSON lines (`metrics.jsonl`): one object per logged step
//! `{"step", "loss", "lr", "skipped", "elapsed_s"}` and one per evaluation
//! `{"step", "eval": {...}}`. On resume, lines of steps after the checkpoint
//! are dropped (atomically), so the file reads as one uninterrupted run.

use serde_json::Value;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::TrainError;
use crate::io::write_atomic;

/// An append-only JSON-lines log.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens `path` for appending, first dropping lines whose `step` is
    /// greater than `keep_up_to` (lines that do not parse are dropped too).
    pub fn open(path: &Path, keep_up_to: u64) -> Result<Self, TrainError> {
        if path.exists() {
            let text =
                std::fs::read_to_string(path).map_err(|e| TrainError::io("reading", path, e))?;
            let kept: String = text
                .lines()
                .filter(|l| {
                    serde_json::from_str::<Value>(l)
                        .ok()
                        .and_then(|v| v.get("step").and_then(Value::as_u64))
                        .is_some_and(|s| s <= keep_up_to)
                })
                .map(|l| format!("{l}\n"))
                .collect();
            write_atomic(path, kept.as_bytes()).map_err(|e| TrainError::io("writing", path, e))?;
        } else if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| TrainError::io("creating", parent, e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| TrainError::io("opening", path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one JSON object as a line.
    pub fn write(&mut self, value: &Value) -> Result<(), TrainError> {
        let line = format!("{value}\n");
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| TrainError::io("writing", &self.path, e))
    }
}
