//! Bar chart of named values (one bar per category, value printed above).

use plotters::prelude::*;
use std::path::Path;

use super::{color, draw_err, ensure_font, PlotError, FONT};

/// Draws one bar per `(name, value)` to `path` (PNG).
pub fn bar_chart(
    path: &Path,
    title: &str,
    y_label: &str,
    bars: &[(String, f64)],
    size: (u32, u32),
) -> Result<(), PlotError> {
    ensure_font()?;
    if bars.is_empty() {
        return Err(PlotError::Empty(path.to_path_buf()));
    }
    let top = bars
        .iter()
        .map(|b| b.1)
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let top = if top > 0.0 { top * 1.15 } else { 1.0 };
    let n = bars.len();
    super::png(path, size, title, |builder| {
        let mut chart = builder
            .x_label_area_size(60)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..n as f64, 0f64..top)
            .map_err(|e| draw_err(path, e))?;
        let names: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if (x - i as f64 - 0.5).abs() < 1e-6 && i < names.len() {
                    names[i].clone()
                } else {
                    String::new()
                }
            })
            .y_desc(y_label)
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 15))
            .draw()
            .map_err(|e| draw_err(path, e))?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| {
                let v = if b.1.is_finite() { b.1 } else { 0.0 };
                Rectangle::new(
                    [(i as f64 + 0.15, 0.0), (i as f64 + 0.85, v)],
                    color(i).filled(),
                )
            }))
            .map_err(|e| draw_err(path, e))?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| {
                let v = if b.1.is_finite() { b.1 } else { 0.0 };
                Text::new(
                    format!("{:.3}", b.1),
                    (i as f64 + 0.2, v + top * 0.02),
                    (FONT, 12).into_font().color(&BLACK),
                )
            }))
            .map_err(|e| draw_err(path, e))?;
        Ok(())
    })
}
