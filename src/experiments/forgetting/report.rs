//! Reports of the forgetting experiment: the printed table, results.json
//! (everything), results.csv (one line per run), the `--json` summary
//! (`mofo-forgetting/1`) and the PNG plots:
//!
//! - `pareto.png`: fine-tune accuracy against retained (multiple-choice and
//!   greedy) accuracy, one point per method and α;
//! - `distance.png`: distance to the pre-trained model per run (bars);
//! - `loss_curves.png`: fine-tuning training loss per run;
//! - `pretrain_loss.png`: held-out pre-training loss during fine-tuning.

use serde_json::json;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{ExperimentError, ForgettingResults};
use crate::io::write_atomic;
use crate::plot::{bar_chart, line_chart, scatter_chart, ScatterSeries};

/// A share as a percentage with one decimal ("97.5"), or "–" where it is
/// not finite.
pub(super) fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:.1}", 100.0 * x)
    } else {
        "–".into()
    }
}

/// The column heads of the measures, in the order of the tables (the
/// `--seeds` summary's too).
pub const MEASURES: [&str; 7] = [
    "task %", "task L", "facts %", "MC %", "ΔL_pre", "distance", "updated%",
];

/// The results as a plain-text table (percentages for accuracies and shares).
pub fn table(r: &ForgettingResults) -> String {
    let mut s = String::new();
    let b = &r.base;
    let _ = writeln!(
        s,
        "base model: {} parameters, task acc {}%, facts recalled {}% (multiple choice {}%), held-out pre-training loss {:.4}{}",
        b.parameters,
        pct(b.finetune_accuracy),
        pct(b.retained_accuracy),
        pct(b.retained_mc_accuracy),
        b.pretrain_loss,
        if b.cached { " (cached)" } else { "" }
    );
    let [task, task_loss, facts, mc, rise, distance, updated] = MEASURES;
    let _ = writeln!(
        s,
        "{:<18} {task:>8} {task_loss:>8} {facts:>8} {mc:>8} {rise:>9} {distance:>9} {updated:>9} {:>8}",
        "method", "seconds"
    );
    for row in &r.rows {
        let _ = writeln!(
            s,
            "{:<18} {:>8} {:>8.4} {:>8} {:>8} {:>+9.4} {:>9.4} {:>9} {:>8.1}",
            row.label,
            pct(row.finetune_accuracy),
            row.finetune_loss,
            pct(row.retained_accuracy),
            pct(row.retained_mc_accuracy),
            row.pretrain_loss_increase,
            row.distance,
            pct(row.significant_update_share),
            row.seconds
        );
    }
    s
}

/// The results as CSV (one line per run).
pub fn csv(r: &ForgettingResults) -> String {
    let mut s = String::from(
        "method,label,alpha,lr,finetune_accuracy,finetune_loss,retained_accuracy,retained_mc_accuracy,pretrain_loss,pretrain_loss_increase,distance,significant_update_share,seconds,skipped_steps\n",
    );
    for row in &r.rows {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            row.method,
            row.label.replace(',', ";"),
            row.config.alpha.map(|a| a.to_string()).unwrap_or_default(),
            row.config.peak_lr(&r.config.finetune),
            row.finetune_accuracy,
            row.finetune_loss,
            row.retained_accuracy,
            row.retained_mc_accuracy,
            row.pretrain_loss,
            row.pretrain_loss_increase,
            row.distance,
            row.significant_update_share,
            row.seconds,
            row.skipped_steps
        );
    }
    s
}

fn finite(x: f64) -> serde_json::Value {
    if x.is_finite() {
        json!(x)
    } else {
        serde_json::Value::Null
    }
}

/// The `--json` summary: `{"format": "mofo-forgetting/1", "base": {...},
/// "rows": [...]}`, one row per method of the configuration; the MoFO runs
/// of the α sweep are under `"alpha_sweep"` and the runs of the
/// learning-rate sweep under `"lr_sweep"`.
pub fn summary_json(r: &ForgettingResults) -> serde_json::Value {
    let row = |m: &super::MethodResult| {
        json!({
            "method": m.method,
            "label": m.label,
            "alpha": m.config.alpha,
            "lr": m.config.peak_lr(&r.config.finetune),
            "finetune_accuracy": finite(m.finetune_accuracy),
            "finetune_loss": finite(m.finetune_loss),
            "retained_accuracy": finite(m.retained_accuracy),
            "retained_mc_accuracy": finite(m.retained_mc_accuracy),
            "pretrain_loss_increase": finite(m.pretrain_loss_increase),
            "distance": finite(m.distance),
            "significant_update_share": finite(m.significant_update_share),
            "seconds": finite(m.seconds),
        })
    };
    let n = r.config.methods.len().min(r.rows.len());
    let b = &r.base;
    json!({
        "format": "mofo-forgetting/1",
        "base": {
            "parameters": b.parameters,
            "finetune_accuracy": finite(b.finetune_accuracy),
            "finetune_loss": finite(b.finetune_loss),
            "retained_accuracy": finite(b.retained_accuracy),
            "retained_mc_accuracy": finite(b.retained_mc_accuracy),
            "pretrain_loss": finite(b.pretrain_loss),
            "pretrain_seconds": finite(b.pretrain_seconds),
            "cached": b.cached,
        },
        "rows": r.rows[..n].iter().map(row).collect::<Vec<_>>(),
        "alpha_sweep": r.rows[n..].iter().filter(|m| m.config.lr.is_none()).map(row).collect::<Vec<_>>(),
        "lr_sweep": r.rows[n..].iter().filter(|m| m.config.lr.is_some()).map(row).collect::<Vec<_>>(),
    })
}

/// Writes each (file name, bytes) into `dir` atomically; returns the paths.
pub fn write_files(
    dir: &Path,
    files: impl IntoIterator<Item = (&'static str, Vec<u8>)>,
) -> Result<Vec<PathBuf>, ExperimentError> {
    let mut out = Vec::new();
    for (name, bytes) in files {
        let p = dir.join(name);
        write_atomic(&p, &bytes).map_err(|source| ExperimentError::Io {
            path: p.clone(),
            source,
        })?;
        out.push(p);
    }
    Ok(out)
}

/// Writes results.json, results.csv, table.txt and the plots into `dir`
/// and removes the partial record of the run ([`super::resume`]); returns
/// the paths written.
pub fn write_reports(r: &ForgettingResults, dir: &Path) -> Result<Vec<PathBuf>, ExperimentError> {
    // serde_json writes NaN as null, which is what we want in results.json.
    let mut out = write_files(
        dir,
        [
            (
                "results.json",
                serde_json::to_vec_pretty(r).expect("results serialise"),
            ),
            ("results.csv", csv(r).into_bytes()),
            ("table.txt", table(r).into_bytes()),
        ],
    )?;
    out.extend(write_plots(r, dir)?);
    // results.json holds every row now: the partial record has done its part.
    super::resume::remove_partial(dir)?;
    Ok(out)
}

/// Draws the plots into `dir`; returns their paths.
pub fn write_plots(r: &ForgettingResults, dir: &Path) -> Result<Vec<PathBuf>, ExperimentError> {
    std::fs::create_dir_all(dir).map_err(|source| ExperimentError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let size = (900, 640);
    let mut paths = Vec::new();

    // Pareto view: one series per method name (α sweep joined).
    for (file, retained, ylabel) in [
        (
            "pareto.png",
            true,
            "retained knowledge (multiple choice, %)",
        ),
        (
            "pareto_recall.png",
            false,
            "retained knowledge (greedy recall, %)",
        ),
    ] {
        let y = |mc: f64, gr: f64| 100.0 * if retained { mc } else { gr };
        let mut series = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        for row in &r.rows {
            if !names.contains(&row.method.as_str()) {
                names.push(&row.method);
            }
        }
        for name in names {
            let mut pts: Vec<(f64, f64, String)> = r
                .rows
                .iter()
                .filter(|row| row.method == name)
                .map(|row| {
                    (
                        100.0 * row.finetune_accuracy,
                        y(row.retained_mc_accuracy, row.retained_accuracy),
                        row.label.clone(),
                    )
                })
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            series.push(ScatterSeries {
                name: name.to_string(),
                points: pts,
                joined: true,
            });
        }
        series.push(ScatterSeries {
            name: "pre-trained base".into(),
            points: vec![(
                100.0 * r.base.finetune_accuracy,
                y(r.base.retained_mc_accuracy, r.base.retained_accuracy),
                "base".into(),
            )],
            joined: true,
        });
        let p = dir.join(file);
        scatter_chart(
            &p,
            "fine-tuning gain vs. retained knowledge",
            "fine-tune task accuracy (%)",
            ylabel,
            &series,
            Some(((-2.0, 102.0), (-2.0, 102.0))),
            size,
        )?;
        paths.push(p);
    }

    let bars: Vec<(String, f64)> = r
        .rows
        .iter()
        .map(|x| (x.label.clone(), x.distance))
        .collect();
    let p = dir.join("distance.png");
    bar_chart(
        &p,
        "distance to the pre-trained model (mean over tensors of ‖Δθ‖/‖θ_pre‖)",
        "relative distance",
        &bars,
        (1100, 560),
    )?;
    paths.push(p);

    let smooth = |v: &[Option<f64>]| -> Vec<(f64, f64)> {
        let w = (v.len() / 30).max(1);
        let vals: Vec<(usize, f64)> = v
            .iter()
            .enumerate()
            .filter_map(|(i, x)| x.map(|x| (i + 1, x)))
            .collect();
        vals.windows(w)
            .map(|win| {
                let last = win[win.len() - 1].0 as f64;
                (
                    last,
                    win.iter().map(|x| x.1).sum::<f64>() / win.len() as f64,
                )
            })
            .collect()
    };
    let series: Vec<(String, Vec<(f64, f64)>)> = r
        .rows
        .iter()
        .map(|x| (x.label.clone(), smooth(&x.loss_curve)))
        .collect();
    let p = dir.join("loss_curves.png");
    line_chart(
        &p,
        "fine-tuning loss (answers only, moving average)",
        "step",
        "training loss",
        &series,
        true,
        size,
    )?;
    paths.push(p);

    let series: Vec<(String, Vec<(f64, f64)>)> = r
        .rows
        .iter()
        .map(|x| {
            (
                x.label.clone(),
                x.curve
                    .iter()
                    .map(|c| (c.step as f64, c.pretrain_loss))
                    .collect(),
            )
        })
        .collect();
    let p = dir.join("pretrain_loss.png");
    line_chart(
        &p,
        "held-out pre-training loss during fine-tuning",
        "fine-tuning step",
        "held-out pre-training loss",
        &series,
        false,
        size,
    )?;
    paths.push(p);
    Ok(paths)
}
