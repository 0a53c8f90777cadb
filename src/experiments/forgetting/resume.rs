//! Continuing an interrupted `mofo forgetting` (`--resume`).
//!
//! A run's folder holds `results.json` once the run is done (written whole
//! or not at all). While it runs, `results.partial.json` holds the same
//! record with the rows of the methods fine-tuned so far, rewritten
//! atomically after each one, and [`super::report::write_reports`] removes
//! it once `results.json` is in place (a caller of
//! [`super::run_forgetting`] that writes no reports keeps it, whole). On
//! `--resume`, a run is kept whole
//! where `results.json` holds its configuration; otherwise the leading
//! rows of `results.partial.json` are kept where the partial run had the
//! same configuration and each row the method the run would fine-tune at
//! its place, and only the methods after them are fine-tuned. Runs are
//! deterministic, so a kept row is the row a new run would make (its
//! seconds aside); the kept numbers are not recomputed, so after a change
//! to the code run without `--resume`.

use std::path::Path;

use super::{ExperimentError, ForgettingConfig, ForgettingResults, MethodConfig, MethodResult};

/// The file that holds a run's rows while it runs.
pub const PARTIAL: &str = "results.partial.json";

/// What a file of a run's folder holds from an earlier invocation.
#[derive(Debug)]
pub enum Finished {
    /// No such file.
    Absent,
    /// A record of this very configuration.
    Done(Box<ForgettingResults>),
    /// A file that cannot be kept, and why.
    Stale(String),
}

/// Reads the record `dir/name` and keeps it only where it holds a run of
/// `cfg` exactly (every seed and number of the configuration; its floats
/// read back bit for bit).
pub fn read_record(dir: &Path, name: &str, cfg: &ForgettingConfig) -> Finished {
    let path = dir.join(name);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Finished::Absent,
        Err(e) => return Finished::Stale(format!("cannot read {}: {e}", path.display())),
    };
    match serde_json::from_slice::<ForgettingResults>(&bytes) {
        Err(e) => Finished::Stale(format!("{} is unreadable: {e}", path.display())),
        Ok(r) if r.config != *cfg => {
            Finished::Stale(format!("{} holds another configuration", path.display()))
        }
        Ok(r) => Finished::Done(Box::new(r)),
    }
}

/// The run of `cfg` that `dir/results.json` holds, if it finished.
pub fn finished(dir: &Path, cfg: &ForgettingConfig) -> Finished {
    read_record(dir, "results.json", cfg)
}

/// The leading rows of `dir/results.partial.json` that a run of `cfg`,
/// fine-tuning `methods` in this order, keeps, with their wall-clock
/// seconds; or why the file is not used (None where there is none).
pub fn partial_rows(
    dir: &Path,
    cfg: &ForgettingConfig,
    methods: &[MethodConfig],
) -> Result<(Vec<MethodResult>, f64), Option<String>> {
    match read_record(dir, PARTIAL, cfg) {
        Finished::Absent => Err(None),
        Finished::Stale(why) => Err(Some(why)),
        Finished::Done(p) => {
            let rows: Vec<MethodResult> = p
                .rows
                .into_iter()
                .zip(methods)
                .take_while(|(row, m)| row.config == **m && row.label == m.label())
                .map(|(row, _)| row)
                .collect();
            Ok((rows, p.seconds))
        }
    }
}

/// Writes `dir/results.partial.json` (atomically).
pub fn write_partial(dir: &Path, partial: &ForgettingResults) -> Result<(), ExperimentError> {
    let bytes = serde_json::to_vec(partial).expect("results serialise");
    super::report::write_files(dir, [(PARTIAL, bytes)]).map(drop)
}

/// Removes `dir/results.partial.json` (nothing where there is none).
pub fn remove_partial(dir: &Path) -> Result<(), ExperimentError> {
    let p = dir.join(PARTIAL);
    match std::fs::remove_file(&p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(ExperimentError::Io { path: p, source: e })
        }
        _ => Ok(()),
    }
}
