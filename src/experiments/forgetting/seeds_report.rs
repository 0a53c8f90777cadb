//! Reports of `mofo forgetting --seeds N` (the summary of [`super::seeds`]),
//! written beside the runs' own folders `run-0` … `run-(N−1)`:
//!
//! - `seeds.txt`: the printed tables, median (smallest–largest) per run
//!   label and measure, then the paired counts against Adam;
//! - `seeds.md`: the same two tables in Markdown;
//! - `seeds.csv`: one line per run label and measure (median, min, max,
//!   finite count);
//! - `seeds.json`: the whole [`SeedSummary`];
//! - `seeds_forgetting.png`: the rise of the held-out pre-training loss
//!   against the held-out task loss, one point per run and label.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::report::pct;
use super::seeds::{SeedRow, SeedScope, SeedSummary, Spread};
use super::{ExperimentError, ForgettingResults};
use crate::plot::scatter::fitted_axes;
use crate::plot::{scatter_chart, ScatterSeries};

/// The folder of run `r` inside `out`.
pub fn run_dir(out: &Path, r: u64) -> PathBuf {
    out.join(format!("run-{r}"))
}

/// `x` formatted by `f`, or "–" where it is not finite.
fn number(x: f64, f: impl Fn(f64) -> String) -> String {
    if x.is_finite() {
        f(x)
    } else {
        "–".into()
    }
}

/// "median (min–max)", each through `f`; the median alone where every run
/// gave the same value.
fn spread_cell(s: &Spread, f: impl Fn(f64) -> String) -> String {
    let (med, lo, hi) = (number(s.median, &f), number(s.min, &f), number(s.max, &f));
    if lo == hi {
        med
    } else {
        format!("{med} ({lo}–{hi})")
    }
}

/// [`pct`] with its sign, for the base line ("97.5%").
fn percent(x: f64) -> String {
    format!("{}%", pct(x))
}

/// The header and cells of the medians table.
fn spread_cells(s: &SeedSummary) -> Vec<Vec<String>> {
    let mut out = vec![std::iter::once("method")
        .chain(super::report::MEASURES)
        .map(String::from)
        .collect()];
    let row = |r: &SeedRow| {
        vec![
            r.label.clone(),
            spread_cell(&r.finetune_accuracy, pct),
            spread_cell(&r.finetune_loss, |x| format!("{x:.2}")),
            spread_cell(&r.retained_accuracy, pct),
            spread_cell(&r.retained_mc_accuracy, pct),
            spread_cell(&r.pretrain_loss_increase, |x| format!("{x:+.2}")),
            spread_cell(&r.distance, |x| format!("{x:.3}")),
            spread_cell(&r.significant_update_share, |x| format!("{:.0}", 100.0 * x)),
        ]
    };
    out.extend(s.rows.iter().map(row));
    out
}

/// The header and cells of the paired counts against Adam.
fn against_adam_cells(s: &SeedSummary) -> Vec<Vec<String>> {
    let mut out = vec![[
        "method",
        "against",
        "ΔL_pre lower",
        "distance lower",
        "MC higher",
        "facts higher",
        "task % higher",
        "task L lower",
    ]
    .map(String::from)
    .to_vec()];
    for a in &s.against_adam {
        let of = |k: usize| format!("{k}/{}", a.runs);
        out.push(vec![
            a.label.clone(),
            a.adam.clone(),
            of(a.pretrain_loss_increase_lower),
            of(a.distance_lower),
            of(a.retained_mc_accuracy_higher),
            of(a.retained_accuracy_higher),
            of(a.finetune_accuracy_higher),
            of(a.finetune_loss_lower),
        ]);
    }
    out
}

/// The rows as text columns, each padded to its widest cell.
fn aligned(rows: &[Vec<String>]) -> String {
    let width = |c: usize| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..rows[0].len()).map(width).collect();
    let mut s = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, &w)| format!("{cell}{}", " ".repeat(w - cell.chars().count())))
            .collect();
        let _ = writeln!(s, "{}", line.join("  ").trim_end());
    }
    s
}

/// The rows as a Markdown table (the first row is the header).
fn markdown(rows: &[Vec<String>]) -> String {
    let mut s = String::new();
    for (i, r) in rows.iter().enumerate() {
        let _ = writeln!(s, "| {} |", r.join(" | "));
        if i == 0 {
            let _ = writeln!(s, "|{}", "---|".repeat(r.len()));
        }
    }
    s
}

/// The lines above the tables: which seeds moved, and the base model.
fn preamble(s: &SeedSummary) -> String {
    let list = |f: fn(&super::seeds::RunSeeds) -> u64| {
        s.seeds
            .iter()
            .map(|x| f(x).to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let moved = match s.scope {
        SeedScope::Finetune => format!("fine-tuning seeds {}", list(|x| x.finetune)),
        SeedScope::Base => format!(
            "model seeds {}, pre-training seeds {}",
            list(|x| x.model),
            list(|x| x.pretrain)
        ),
        SeedScope::All => format!(
            "model seeds {}, knowledge {}, task {}, pre-training {}, fine-tuning {}",
            list(|x| x.model),
            list(|x| x.knowledge),
            list(|x| x.task),
            list(|x| x.pretrain),
            list(|x| x.finetune)
        ),
    };
    let b = &s.base;
    format!(
        "{} runs ({moved})\nbase model: {} parameters, task acc {}, facts recalled {} (multiple choice {}), held-out pre-training loss {}\nmedian (smallest–largest) over the runs:\n",
        s.seeds.len(),
        b.parameters,
        spread_cell(&b.finetune_accuracy, percent),
        spread_cell(&b.retained_accuracy, percent),
        spread_cell(&b.retained_mc_accuracy, percent),
        spread_cell(&b.pretrain_loss, |x| format!("{x:.4}")),
    )
}

const AGAINST_ADAM: &str = "against Adam at the same learning-rate setting (the lr sweep's runs against Adam at their lr, every other run against the plain Adam run), in how many runs (strictly; ties count for neither):\n";

/// The summary as printed text (`seeds.txt`).
pub fn table(s: &SeedSummary) -> String {
    let mut t = preamble(s);
    t.push_str(&aligned(&spread_cells(s)));
    if !s.against_adam.is_empty() {
        t.push('\n');
        t.push_str(AGAINST_ADAM);
        t.push_str(&aligned(&against_adam_cells(s)));
    }
    t
}

/// The summary as Markdown (`seeds.md`).
pub fn markdown_tables(s: &SeedSummary) -> String {
    let mut t = preamble(s).replace('\n', "\n\n");
    t.push_str(&markdown(&spread_cells(s)));
    if !s.against_adam.is_empty() {
        t.push('\n');
        t.push_str(AGAINST_ADAM);
        t.push('\n');
        t.push_str(&markdown(&against_adam_cells(s)));
    }
    t
}

/// The summary as CSV: one line per run label and measure.
pub fn csv(s: &SeedSummary) -> String {
    let mut t = String::from("label,method,measure,median,min,max,finite\n");
    for r in &s.rows {
        for (measure, v) in [
            ("finetune_accuracy", &r.finetune_accuracy),
            ("finetune_loss", &r.finetune_loss),
            ("retained_accuracy", &r.retained_accuracy),
            ("retained_mc_accuracy", &r.retained_mc_accuracy),
            ("pretrain_loss_increase", &r.pretrain_loss_increase),
            ("distance", &r.distance),
            ("significant_update_share", &r.significant_update_share),
            ("seconds", &r.seconds),
        ] {
            let _ = writeln!(
                t,
                "{},{},{measure},{},{},{},{}",
                r.label.replace(',', ";"),
                r.method,
                v.median,
                v.min,
                v.max,
                v.finite
            );
        }
    }
    t
}

/// Draws `seeds_forgetting.png` into `dir`: ΔL_pre against the held-out
/// task loss, one series per run label, one point per run.
pub fn plot(runs: &[ForgettingResults], dir: &Path) -> Result<PathBuf, ExperimentError> {
    let labels: Vec<&str> = runs
        .first()
        .map(|r| r.rows.iter().map(|x| x.label.as_str()).collect())
        .unwrap_or_default();
    let series: Vec<ScatterSeries> = labels
        .iter()
        .enumerate()
        .map(|(i, label)| ScatterSeries {
            name: label.to_string(),
            points: runs
                .iter()
                .filter_map(|r| r.rows.get(i))
                .map(|x| (x.finetune_loss, x.pretrain_loss_increase, String::new()))
                .collect(),
            joined: false,
        })
        .collect();
    let p = dir.join("seeds_forgetting.png");
    scatter_chart(
        &p,
        "forgetting against learning, one point per run",
        "held-out task loss after fine-tuning (lower: learned more)",
        "rise of the held-out pre-training loss (lower: forgot less)",
        &series,
        legend_room(&series),
        (1000, 760),
    )?;
    Ok(p)
}

/// The fitted axes with the y axis doubled upward, so that the points sit
/// in the lower half and the legend (a line per run label) in the upper.
fn legend_room(series: &[ScatterSeries]) -> Option<((f64, f64), (f64, f64))> {
    fitted_axes(series).map(|(x, (y0, y1))| (x, (y0, y1 + (y1 - y0))))
}

/// Writes seeds.txt, seeds.md, seeds.csv, seeds.json and the plot into
/// `dir`; returns the paths written.
pub fn write_reports(
    summary: &SeedSummary,
    runs: &[ForgettingResults],
    dir: &Path,
) -> Result<Vec<PathBuf>, ExperimentError> {
    let mut out = super::report::write_files(
        dir,
        [
            ("seeds.txt", table(summary).into_bytes()),
            ("seeds.md", markdown_tables(summary).into_bytes()),
            ("seeds.csv", csv(summary).into_bytes()),
            (
                "seeds.json",
                serde_json::to_vec_pretty(summary).expect("the summary serialises"),
            ),
        ],
    )?;
    out.push(plot(runs, dir)?);
    Ok(out)
}
