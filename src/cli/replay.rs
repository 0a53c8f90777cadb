//! `mofo replay TRACE.json [--out OUT.json] [--dtype f32|f64]`: runs the
//! optimizer described by a `mofo-trace/1` file on its gradient sequence and
//! writes `{"format": "mofo-replay/1", "name", "params": [one map per step]}`
//! to OUT (stdout without --out). With `expected` in the trace, prints the
//! worst absolute and relative error and fails beyond
//! |ours − expected| ≤ 1e-5·max(1, |expected|).

use std::path::PathBuf;

use serde_json::{json, Map, Value};

use super::CliResult;
use crate::optim::trace::{Trace, TOLERANCE};

/// Element type of the replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Dtype {
    /// 32-bit floats (what the reference traces were made in).
    F32,
    /// 64-bit floats.
    F64,
}

/// Arguments of `mofo replay`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The `mofo-trace/1` file.
    pub trace: PathBuf,
    /// Where to write the `mofo-replay/1` result (stdout if absent).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Element type.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: Dtype,
}

/// Runs `mofo replay`.
pub fn run(args: Args) -> CliResult {
    let text = std::fs::read_to_string(&args.trace)
        .map_err(|e| format!("cannot read {}: {e}", args.trace.display()))?;
    let trace = Trace::parse(&text).map_err(|e| format!("{}: {e}", args.trace.display()))?;
    let params = match args.dtype {
        Dtype::F32 => trace.run::<f32>(),
        Dtype::F64 => trace.run::<f64>(),
    }
    .map_err(|e| format!("{}: {e}", args.trace.display()))?;
    let steps: Vec<Value> = params
        .iter()
        .map(|step| {
            let mut m = Map::new();
            for (b, v) in trace.blocks.iter().zip(step) {
                m.insert(b.name.clone(), json!(v));
            }
            Value::Object(m)
        })
        .collect();
    let out = json!({"format": "mofo-replay/1", "name": trace.name, "params": steps});
    let text = serde_json::to_string(&out)?;
    match &args.out {
        Some(p) => crate::io::write_atomic(p, text.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", p.display()))?,
        None => println!("{text}"),
    }
    if let Some(err) = trace.compare(&params) {
        eprintln!(
            "{}: worst absolute error {:.3e}, worst relative error {:.3e} (tolerance {TOLERANCE:e})",
            trace.name, err.max_abs, err.max_rel
        );
        if !err.passes() {
            return Err(format!(
                "{}: replay differs from expected beyond tolerance (worst relative error {:.3e} > {TOLERANCE:e})",
                trace.name, err.max_rel
            )
            .into());
        }
    }
    Ok(())
}
