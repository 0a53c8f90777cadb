//! Reusable PNG plots (plotters, bitmap backend): labelled scatter plots,
//! bar charts and line charts. Text uses the bundled DejaVu Sans
//! (assets/DejaVuSans.ttf), registered once as "sans-serif" before the first
//! drawing, so no system font is needed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use plotters::coord::ranged1d::ValueFormatter;
use plotters::prelude::{
    BitMapBackend, Cartesian2d, ChartBuilder, ChartContext, Color, IntoDrawingArea, Ranged,
    SeriesLabelPosition, BLACK, WHITE,
};

use crate::io::write_atomic;

pub mod bars;
pub mod lines;
pub mod scatter;

pub use bars::bar_chart;
pub use lines::line_chart;
pub use scatter::{scatter_chart, ScatterSeries};

/// Errors of plotting.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The bundled font could not be registered.
    #[error("cannot register the bundled font: {0}")]
    Font(String),
    /// Drawing or writing the PNG failed.
    #[error("cannot draw {path}: {reason}")]
    Draw {
        /// The PNG being drawn.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// Nothing to plot.
    #[error("nothing to plot in {0}")]
    Empty(PathBuf),
}

/// The font family name used by every plot.
pub const FONT: &str = "sans-serif";

static FONT_BYTES: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// Registers the bundled font (once per process).
pub fn ensure_font() -> Result<(), PlotError> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        plotters::style::register_font(FONT, plotters::style::FontStyle::Normal, FONT_BYTES)
            .map_err(|_| "invalid font data".to_string())
    })
    .clone()
    .map_err(PlotError::Font)
}

/// The i-th colour of the plots' palette (distinct for the first 12).
pub fn color(i: usize) -> plotters::style::RGBColor {
    const C: [(u8, u8, u8); 12] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
        (0, 0, 0),
        (120, 120, 220),
    ];
    let (r, g, b) = C[i % C.len()];
    plotters::style::RGBColor(r, g, b)
}

/// Draws a PNG with `draw` into a scratch file in the temporary directory
/// (its name ends in `.png`, which the bitmap encoder needs), then puts the
/// bytes in place with [`write_atomic`]: a run killed while drawing leaves
/// the old plot or none, never part of one, and a link or special file at
/// `target` is treated as [`write_atomic`] treats it. The scratch file is removed
/// either way; `io_error` turns a failure to read it or to write `target`
/// into the caller's error.
pub fn drawn_atomically<E>(
    target: &Path,
    draw: impl FnOnce(&Path) -> Result<(), E>,
    io_error: impl FnOnce(std::io::Error) -> E,
) -> Result<(), E> {
    // The scratch file's place does not matter to the write (its bytes are
    // copied), so it goes to the temporary directory rather than beside a
    // target that may be a device or a link (`--png /dev/null`); the
    // counter keeps two drawings of one process apart.
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let scratch = std::env::temp_dir().join(format!(
        "mofo-plot-{}-{}.png",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let result = draw(&scratch).and_then(|()| {
        std::fs::read(&scratch)
            .and_then(|bytes| write_atomic(target, &bytes))
            .map_err(io_error)
    });
    let _ = std::fs::remove_file(&scratch);
    result
}

/// A chart of this module: `draw` builds it from a [`ChartBuilder`] on a
/// white `size` canvas that already has the `title` and the margin every
/// chart here uses, and [`drawn_atomically`] puts it at `target`; errors
/// name `target`.
pub(crate) fn png(
    target: &Path,
    size: (u32, u32),
    title: &str,
    draw: impl FnOnce(&mut ChartBuilder<'_, '_, BitMapBackend<'_>>) -> Result<(), PlotError>,
) -> Result<(), PlotError> {
    drawn_atomically(
        target,
        |scratch| {
            let root = BitMapBackend::new(scratch, size).into_drawing_area();
            root.fill(&WHITE).map_err(|e| draw_err(target, e))?;
            let mut builder = ChartBuilder::on(&root);
            builder.caption(title, (FONT, 22)).margin(12);
            draw(&mut builder)?;
            root.present().map_err(|e| draw_err(target, e))
        },
        |e| draw_err(target, e),
    )
}

/// The axes of a line or scatter chart: the mesh with its tick labels and
/// the two axis descriptions, in the fonts every chart here uses.
pub(crate) fn draw_axes<'a, 'b: 'a, X, Y>(
    chart: &mut ChartContext<'a, BitMapBackend<'b>, Cartesian2d<X, Y>>,
    path: &Path,
    x_label: &str,
    y_label: &str,
) -> Result<(), PlotError>
where
    X: Ranged + ValueFormatter<X::ValueType>,
    Y: Ranged + ValueFormatter<Y::ValueType>,
{
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(|e| draw_err(path, e))
}

/// The legend of a line or scatter chart at `position`, on a white box.
pub(crate) fn draw_legend<'a, 'b: 'a, X: Ranged, Y: Ranged>(
    chart: &mut ChartContext<'a, BitMapBackend<'b>, Cartesian2d<X, Y>>,
    path: &Path,
    position: SeriesLabelPosition,
) -> Result<(), PlotError> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .position(position)
        .draw()
        .map_err(|e| draw_err(path, e))
}

pub(crate) fn draw_err(path: &Path, e: impl std::fmt::Display) -> PlotError {
    PlotError::Draw {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// A range [lo, hi] padded by 5% on each side (and widened if degenerate).
pub(crate) fn padded(lo: f64, hi: f64) -> (f64, f64) {
    let (lo, hi) = if lo.is_finite() && hi.is_finite() {
        (lo, hi)
    } else {
        (0.0, 1.0)
    };
    let span = (hi - lo).abs().max(1e-9 + 0.05 * hi.abs().max(lo.abs()));
    (lo - 0.05 * span, hi + 0.05 * span)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_png(p: &Path) -> bool {
        std::fs::read(p).is_ok_and(|b| b.len() > 2000 && b.starts_with(b"\x89PNG\r\n\x1a\n"))
    }

    #[test]
    fn draws_every_chart_kind() {
        let dir = std::env::temp_dir().join(format!("mofo-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let s = dir.join("s.png");
        scatter_chart(
            &s,
            "t",
            "x",
            "y",
            &[ScatterSeries {
                name: "a".into(),
                points: vec![(0.0, 1.0, "p".into()), (1.0, f64::NAN, String::new())],
                joined: true,
            }],
            None,
            (300, 200),
        )
        .unwrap();
        assert!(is_png(&s));
        let b = dir.join("b.png");
        bar_chart(
            &b,
            "t",
            "y",
            &[("a".into(), 1.0), ("b".into(), 0.5)],
            (300, 200),
        )
        .unwrap();
        assert!(is_png(&b));
        let l = dir.join("l.png");
        let pts = vec![(1.0, 2.0), (2.0, 1.0), (3.0, 0.5)];
        line_chart(
            &l,
            "t",
            "x",
            "y",
            &[("a".into(), pts.clone())],
            true,
            (300, 200),
        )
        .unwrap();
        line_chart(&l, "t", "x", "y", &[("a".into(), pts)], false, (300, 200)).unwrap();
        assert!(is_png(&l));
        assert!(matches!(
            bar_chart(&b, "t", "y", &[], (300, 200)),
            Err(PlotError::Empty(ref p)) if p == &b
        ));
        // The failed chart left the old one whole, and no scratch file stays.
        assert!(is_png(&b));
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names
                .iter()
                .all(|n| ["s.png", "b.png", "l.png"].contains(&n.as_str())),
            "{names:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_drawing_that_fails_leaves_the_target_and_no_scratch_file() {
        let dir = std::env::temp_dir().join(format!("mofo-plot-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("p.png");
        std::fs::write(&target, b"old").unwrap();
        let mut scratch = PathBuf::new();
        let r = drawn_atomically(
            &target,
            |p| {
                scratch = p.to_path_buf();
                std::fs::write(p, b"half a png").unwrap();
                Err("the drawing failed")
            },
            |_| "io",
        );
        assert_eq!(r, Err("the drawing failed"));
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        assert!(scratch.starts_with(std::env::temp_dir()) && scratch.extension().unwrap() == "png");
        assert!(!scratch.exists());
        // A drawing that succeeds replaces the target with the scratch bytes.
        drawn_atomically(&target, |p| std::fs::write(p, b"new"), |e| e).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
