//! Checkpoints: model, optimizer state and loop state, committed atomically.
//!
//! ```text
//! OUT/checkpoints/step-00000100/model/          the model (Hugging Face format)
//! OUT/checkpoints/step-00000100/optimizer.state the optimizer's whole state
//! OUT/checkpoints/step-00000100/trainer.json    step, skipped steps, losses, evals
//! OUT/checkpoints/latest                        "step-00000100"
//! ```
//!
//! A checkpoint directory is written completely first; only then is `latest`
//! replaced (atomic rename), so a run killed at any moment leaves `latest`
//! naming a complete checkpoint. Older checkpoints beyond the number to keep
//! are removed afterwards. Parameters with a NaN or infinity are never
//! written.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::drift::first_non_finite;
use super::model::{TrainOptimizer, TrainableModel};
use super::TrainError;
use crate::io::write_atomic;
use crate::ParamStore;

/// The loop's own state: everything besides model and optimizer that a
/// resumed run needs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Steps completed (skipped steps included).
    pub step: u64,
    /// Steps skipped for a non-finite loss or gradient.
    pub skipped: u64,
    /// Training loss of every step (None for a skipped step).
    pub losses: Vec<Option<f64>>,
    /// Evaluations: (step, metrics).
    pub evals: Vec<(u64, BTreeMap<String, f64>)>,
    /// Wall-clock seconds spent in training steps so far (evaluation and
    /// checkpoints excluded).
    pub seconds: f64,
}

/// The directory holding the checkpoints of a run.
pub fn checkpoints_dir(out: &Path) -> PathBuf {
    out.join("checkpoints")
}

fn step_dir_name(step: u64) -> String {
    format!("step-{step:08}")
}

/// Writes a checkpoint of `step` and makes it the latest; keeps the newest
/// `keep` checkpoints (at least one).
pub fn save_checkpoint(
    out: &Path,
    model: &dyn TrainableModel,
    params: &ParamStore<f32>,
    optimizer: &dyn TrainOptimizer,
    state: &TrainState,
    keep: usize,
) -> Result<PathBuf, TrainError> {
    if let Some(name) = first_non_finite(params) {
        return Err(TrainError::NonFinite {
            what: format!("parameter {name} (checkpoint not written)"),
            step: state.step,
        });
    }
    let root = checkpoints_dir(out);
    let name = step_dir_name(state.step);
    let dir = root.join(&name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| TrainError::io("removing", &dir, e))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| TrainError::io("creating", &dir, e))?;
    model.save(params, &dir.join("model"))?;
    optimizer.save_state(&dir.join("optimizer.state"))?;
    let json = serde_json::to_vec_pretty(state).expect("state serialises");
    let tpath = dir.join("trainer.json");
    write_atomic(&tpath, &json).map_err(|e| TrainError::io("writing", &tpath, e))?;
    let latest = root.join("latest");
    write_atomic(&latest, name.as_bytes()).map_err(|e| TrainError::io("writing", &latest, e))?;
    // Prune older checkpoints.
    let mut steps: Vec<String> = std::fs::read_dir(&root)
        .map_err(|e| TrainError::io("listing", &root, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("step-") && *n != name)
        .collect();
    steps.sort();
    let keep_old = keep.max(1) - 1;
    let drop = steps.len().saturating_sub(keep_old);
    for n in &steps[..drop] {
        let _ = std::fs::remove_dir_all(root.join(n));
    }
    Ok(dir)
}

/// The directory of the latest complete checkpoint under `out`, if any.
pub fn latest_checkpoint(out: &Path) -> Result<Option<PathBuf>, TrainError> {
    let latest = checkpoints_dir(out).join("latest");
    if !latest.exists() {
        return Ok(None);
    }
    let name =
        std::fs::read_to_string(&latest).map_err(|e| TrainError::io("reading", &latest, e))?;
    let name = name.trim();
    if !name.starts_with("step-") || name.contains(['/', '\\']) {
        return Err(TrainError::Checkpoint {
            path: latest,
            reason: format!("names `{name}`, not a checkpoint directory"),
        });
    }
    let dir = checkpoints_dir(out).join(name);
    if !dir.is_dir() {
        return Err(TrainError::Checkpoint {
            path: dir,
            reason: "named by `latest` but missing".into(),
        });
    }
    Ok(Some(dir))
}

/// Loads a checkpoint directory: parameters, optimizer state (into
/// `optimizer`) and the loop state.
pub fn load_checkpoint(
    dir: &Path,
    model: &dyn TrainableModel,
    optimizer: &mut dyn TrainOptimizer,
) -> Result<(ParamStore<f32>, TrainState), TrainError> {
    let tpath = dir.join("trainer.json");
    let text = std::fs::read(&tpath).map_err(|e| TrainError::io("reading", &tpath, e))?;
    let state: TrainState = serde_json::from_slice(&text).map_err(|e| TrainError::Checkpoint {
        path: tpath.clone(),
        reason: e.to_string(),
    })?;
    let params = model.load(&dir.join("model"))?;
    optimizer.load_state(&dir.join("optimizer.state"))?;
    Ok((params, state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// trainer.json gives back every f64 bit for bit (losses, evaluations,
    /// seconds), so that a resumed run's history is the uninterrupted one's:
    /// serde_json's default float parser may miss the last bit of a
    /// 17-digit number, hence its `float_roundtrip` feature.
    #[test]
    fn train_state_json_round_trips_every_bit() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut draw = || loop {
            let x = f64::from_bits(rng.random::<u64>());
            if x.is_finite() {
                break x;
            }
        };
        let mut state = TrainState {
            step: 3,
            skipped: 1,
            losses: vec![Some(0.21259230077266694), None],
            evals: Vec::new(),
            seconds: 1.2345678901234567,
        };
        for i in 0..20_000u64 {
            let x = draw();
            state.losses.push(Some(x));
            state.losses.push(Some(x.abs().fract()));
            if i % 100 == 0 {
                state
                    .evals
                    .push((i, BTreeMap::from([("loss".into(), draw())])));
            }
        }
        let text = serde_json::to_vec(&state).unwrap();
        let back: TrainState = serde_json::from_slice(&text).unwrap();
        for (a, b) in state.losses.iter().zip(&back.losses) {
            assert_eq!(
                a.map(f64::to_bits),
                b.map(f64::to_bits),
                "{a:?} came back as {b:?}"
            );
        }
        assert_eq!(back, state);
    }
}
