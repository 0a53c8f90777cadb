//! Scatter plot of labelled points, one colour per series; the points of a
//! joined series are joined by a line in the given order (e.g. a sweep over
//! α), those of a series not joined stand alone (e.g. one point per seed).

use plotters::prelude::*;
use std::path::Path;

use super::{color, draw_axes, draw_err, draw_legend, ensure_font, padded, PlotError, FONT};

/// One series of the scatter plot.
#[derive(Clone, Debug, PartialEq)]
pub struct ScatterSeries {
    /// Legend entry.
    pub name: String,
    /// Points (x, y, label drawn beside the point; empty for none).
    pub points: Vec<(f64, f64, String)>,
    /// Whether a line joins the points in their order.
    pub joined: bool,
}

/// Draws a scatter chart to `path` (PNG, `size` = width×height); `ranges`
/// fixes the axes ((x0, x1), (y0, y1)), otherwise they fit the points.
pub fn scatter_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[ScatterSeries],
    ranges: Option<((f64, f64), (f64, f64))>,
    size: (u32, u32),
) -> Result<(), PlotError> {
    ensure_font()?;
    let pts = finite_points(series);
    let Some(fit) = fitted_axes(series) else {
        return Err(PlotError::Empty(path.to_path_buf()));
    };
    let ((x0, x1), (y0, y1)) = ranges.unwrap_or(fit);
    super::png(path, size, title, |builder| {
        let mut chart = builder
            .x_label_area_size(42)
            .y_label_area_size(58)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| draw_err(path, e))?;
        draw_axes(&mut chart, path, x_label, y_label)?;
        for (i, s) in series.iter().enumerate() {
            let c = color(i);
            let finite: Vec<&(f64, f64, String)> = s
                .points
                .iter()
                .filter(|p| p.0.is_finite() && p.1.is_finite())
                .collect();
            if s.joined && finite.len() > 1 {
                chart
                    .draw_series(LineSeries::new(
                        finite.iter().map(|p| (p.0, p.1)),
                        c.stroke_width(1),
                    ))
                    .map_err(|e| draw_err(path, e))?;
            }
            let style = marker(i);
            chart
                .draw_series(finite.iter().map(|p| Circle::new((p.0, p.1), 5, style)))
                .map_err(|e| draw_err(path, e))?
                .label(s.name.clone())
                .legend(move |(x, y)| Circle::new((x + 8, y), 5, style));
            chart
                .draw_series(finite.iter().filter(|p| !p.2.is_empty()).map(|p| {
                    Text::new(
                        p.2.clone(),
                        (p.0, p.1),
                        (FONT, 12).into_font().color(&BLACK),
                    )
                }))
                .map_err(|e| draw_err(path, e))?;
        }
        draw_legend(&mut chart, path, emptiest_corner(&pts, (x0, x1), (y0, y1)))
    })
}

/// The finite points of every series.
fn finite_points(series: &[ScatterSeries]) -> Vec<(f64, f64)> {
    series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| (p.0, p.1)))
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect()
}

/// The axes ((x0, x1), (y0, y1)) that [`scatter_chart`] fits to the finite
/// points of `series` (their range, 5% wider on each side); None where no
/// point is finite.
pub fn fitted_axes(series: &[ScatterSeries]) -> Option<((f64, f64), (f64, f64))> {
    let pts = finite_points(series);
    if pts.is_empty() {
        return None;
    }
    let range = |of: fn(&(f64, f64)) -> f64| {
        let lo = pts.iter().map(of).fold(f64::INFINITY, f64::min);
        let hi = pts.iter().map(of).fold(f64::NEG_INFINITY, f64::max);
        padded(lo, hi)
    };
    Some((range(|p| p.0), range(|p| p.1)))
}

/// The marker of series `i`: a filled circle in the palette's colour for
/// the first twelve series, a ring in the same colours for the next twelve,
/// and so on alternately, so that no two of 24 series look alike.
fn marker(i: usize) -> ShapeStyle {
    let c = color(i);
    if (i / 12).is_multiple_of(2) {
        c.filled()
    } else {
        c.stroke_width(2)
    }
}

/// The corner of the plot area holding the fewest points (a corner is the
/// outer 40% of the width and 45% of the height, where the legend goes);
/// ties prefer upper right, lower right, upper left, lower left.
fn emptiest_corner(
    pts: &[(f64, f64)],
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
) -> SeriesLabelPosition {
    let (w, h) = (
        (x1 - x0).max(f64::MIN_POSITIVE),
        (y1 - y0).max(f64::MIN_POSITIVE),
    );
    let count = |right: bool, upper: bool| {
        pts.iter()
            .filter(|&&(x, y)| {
                let (u, v) = ((x - x0) / w, (y - y0) / h);
                (if right { u >= 0.6 } else { u <= 0.4 })
                    && (if upper { v >= 0.55 } else { v <= 0.45 })
            })
            .count()
    };
    [
        (SeriesLabelPosition::UpperRight, true, true),
        (SeriesLabelPosition::LowerRight, true, false),
        (SeriesLabelPosition::UpperLeft, false, true),
        (SeriesLabelPosition::LowerLeft, false, false),
    ]
    .into_iter()
    .min_by_key(|&(_, right, upper)| count(right, upper))
    .map(|(pos, _, _)| pos)
    .expect("four corners")
}

#[cfg(test)]
mod legend_tests {
    use super::*;

    #[test]
    fn the_legend_goes_to_the_emptiest_corner() {
        let lower_left = [(0.0, 0.0), (0.1, 0.2), (0.2, 0.1)];
        let upper_right = [(1.0, 1.0), (0.9, 0.8)];
        let r = ((0.0, 1.0), (0.0, 1.0));
        assert!(matches!(
            emptiest_corner(&lower_left, r.0, r.1),
            SeriesLabelPosition::UpperRight
        ));
        let both: Vec<_> = lower_left.iter().chain(&upper_right).copied().collect();
        assert!(matches!(
            emptiest_corner(&both, r.0, r.1),
            SeriesLabelPosition::LowerRight
        ));
    }
}
