//! Line chart of several named series (e.g. loss curves).

use plotters::prelude::*;
use std::path::Path;

use super::{color, draw_axes, draw_err, draw_legend, ensure_font, padded, PlotError};

/// Draws every `(name, points)` series as a line to `path` (PNG); non-finite
/// points are left out. With `log_y` the y axis is logarithmic (values ≤ 0
/// are left out too).
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    log_y: bool,
    size: (u32, u32),
) -> Result<(), PlotError> {
    ensure_font()?;
    let keep = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite() && (!log_y || p.1 > 0.0);
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.1.iter().filter(keep).copied())
        .collect();
    if all.is_empty() {
        return Err(PlotError::Empty(path.to_path_buf()));
    }
    let x0 = all.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let x1 = all.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    let y0 = all.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let y1 = all.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let (x0, x1) = if x1 > x0 { (x0, x1) } else { padded(x0, x1) };
    super::png(path, size, title, |builder| {
        builder.x_label_area_size(42).y_label_area_size(64);
        macro_rules! finish {
            ($chart:expr) => {{
                let mut chart = $chart.map_err(|e| draw_err(path, e))?;
                draw_axes(&mut chart, path, x_label, y_label)?;
                for (i, (name, pts)) in series.iter().enumerate() {
                    let c = color(i);
                    chart
                        .draw_series(LineSeries::new(
                            pts.iter().filter(keep).copied(),
                            c.stroke_width(2),
                        ))
                        .map_err(|e| draw_err(path, e))?
                        .label(name.clone())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                        });
                }
                draw_legend(&mut chart, path, SeriesLabelPosition::UpperRight)?;
            }};
        }
        if log_y {
            let (a, b) = (y0 * 0.9, y1 * 1.1);
            finish!(builder.build_cartesian_2d(x0..x1, (a..b).log_scale()));
        } else {
            let (a, b) = padded(y0, y1);
            finish!(builder.build_cartesian_2d(x0..x1, a..b));
        }
        Ok(())
    })
}
