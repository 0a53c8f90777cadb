//! The 2-D landscape of Example 1 (paper Appendix B.4, Figure 3): contours of
//! log10 L_ft with the paths of several optimizers from θ_pre = 0.
//!
//! ```text
//! L_ft(θ) = (a_1·θ_1 − b_1)² · (a_2·θ_2 − b_2)²      (default a = b = (1, 1))
//! ```
//!
//! Paths (all with the crate's optimizers, full-batch, constant lr):
//! - Adam; MoFO (Adam + momentum filter, α = 1/2: one coordinate per step);
//! - L1 pull toward θ_pre: Adam on the gradient plus λ·sign(θ − θ_pre);
//! - random BCD: Adam + random filter, α = 1/2 (one random coordinate per
//!   step, which in 2-D is also what half fine-tuning does);
//! - rank-1 "LoRA": θ is restricted to the line θ = s·(1, slope) through
//!   θ_pre (θ_2 = slope·θ_1), and Adam optimises the scalar s on
//!   dL/ds = ∂_1 L + slope·∂_2 L (chain rule). This is the fixed-direction
//!   reading of the paper's "θ_2 = c·θ_1"; a product parametrisation would
//!   start at a saddle (zero gradient) when initialised at θ_pre as LoRA is.
//!
//! Every path stops when L_ft < tol or after max_iters steps. Outputs: a PNG
//! (filled contour bands of log10 L_ft with iso-lines, each path in its own
//! colour, end points marked, a legend) and a CSV of every iterate.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use super::example1::Example1;
use super::synthetic::{build_optimizer, run_method, ExperimentError, Method, RunConfig};
use crate::ParamStore;

/// Settings of the landscape.
#[derive(Clone, Debug, PartialEq)]
pub struct LandscapeConfig {
    /// Coefficients a (both > 0).
    pub a: [f64; 2],
    /// Coefficients b (both > 0).
    pub b: [f64; 2],
    /// Learning rate of every path.
    pub lr: f64,
    /// Step budget per path.
    pub max_iters: usize,
    /// Stop when L_ft < tol.
    pub tol: f64,
    /// λ of the L1 pull.
    pub reg: f64,
    /// Slope of the LoRA line θ_2 = slope·θ_1.
    pub lora_slope: f64,
    /// Seed of the random filter.
    pub seed: u64,
}

impl Default for LandscapeConfig {
    fn default() -> Self {
        LandscapeConfig {
            a: [1.0, 1.0],
            b: [1.0, 1.0],
            lr: 1e-2,
            max_iters: 10_000,
            tol: 1e-6,
            reg: 1e-2,
            lora_slope: 0.5,
            seed: 0,
        }
    }
}

/// One optimizer path in the plane.
#[derive(Clone, Debug, PartialEq)]
pub struct Trajectory {
    /// Name (legend and CSV).
    pub name: String,
    /// Iterates θ_0 = 0, θ_1, ...
    pub points: Vec<[f64; 2]>,
    /// Whether L_ft < tol was reached.
    pub converged: bool,
}

impl Trajectory {
    /// The end point.
    pub fn end(&self) -> [f64; 2] {
        *self.points.last().expect("a path has at least θ_0")
    }
}

/// The 2-D problem of `cfg`.
pub fn problem(cfg: &LandscapeConfig) -> Result<Example1, ExperimentError> {
    Ok(Example1::new(cfg.a.to_vec(), cfg.b.to_vec())?)
}

/// Computes the paths of Adam, MoFO, L1 pull, random BCD and rank-1 LoRA.
pub fn compute_paths(cfg: &LandscapeConfig) -> Result<Vec<Trajectory>, ExperimentError> {
    if !(cfg.lr.is_finite() && cfg.lr > 0.0) {
        return Err(ExperimentError::Setting(format!(
            "lr {} must be > 0",
            cfg.lr
        )));
    }
    if !cfg.lora_slope.is_finite() {
        return Err(ExperimentError::Setting(
            "the LoRA slope must be finite".into(),
        ));
    }
    super::synthetic::check_run_settings(cfg.max_iters, cfg.tol, cfg.reg)?;
    let p = problem(cfg)?;
    let rc = RunConfig {
        lr: cfg.lr,
        max_iters: cfg.max_iters,
        tol: cfg.tol,
        seed: cfg.seed,
        reg: cfg.reg,
        record_path: true,
    };
    let mut out = Vec::new();
    for (method, name) in [
        (Method::Adam, "Adam"),
        (Method::Mofo, "MoFO (α = 1/2)"),
        (Method::L1Pull, "L1 pull to θ_pre"),
        (Method::RandomBcd, "random BCD (1 coord/step)"),
    ] {
        let run = run_method(&p, method, &rc)?;
        out.push(Trajectory {
            name: name.to_string(),
            points: run.path.iter().map(|t| [t[0], t[1]]).collect(),
            converged: run.converged,
        });
    }
    out.push(lora_path(&p, cfg, &rc)?);
    Ok(out)
}

/// Adam on s for θ = s·(1, slope), from s = 0.
fn lora_path(
    p: &Example1,
    cfg: &LandscapeConfig,
    rc: &RunConfig,
) -> Result<Trajectory, ExperimentError> {
    let dir = [1.0, cfg.lora_slope];
    let mut params = ParamStore::<f64>::new();
    params
        .insert_vec("s", &[1], vec![0.0])
        .map_err(|e| ExperimentError::Setting(e.to_string()))?;
    let mut grads = params.zeros_like();
    let mut opt = build_optimizer(Method::Adam, &params, rc)?;
    let mut points = Vec::new();
    loop {
        let s = params.as_slice()[0].as_slice()[0];
        let theta = [s * dir[0], s * dir[1]];
        points.push(theta);
        let loss = p.ft_loss(&theta);
        if loss < rc.tol || points.len() > rc.max_iters || !loss.is_finite() {
            return Ok(Trajectory {
                name: format!("rank-1 LoRA (θ₂ = {}·θ₁)", cfg.lora_slope),
                points,
                converged: loss < rc.tol,
            });
        }
        let g = p.ft_grad(&theta);
        grads.as_mut_slice()[0].as_slice_mut()[0] = g[0] * dir[0] + g[1] * dir[1];
        opt.step(&mut params, &grads)?;
    }
}

/// The CSV of every path: `method,step,theta1,theta2,ft_loss,pre_loss`.
pub fn paths_csv(p: &Example1, paths: &[Trajectory]) -> String {
    let mut s = String::from("method,step,theta1,theta2,ft_loss,pre_loss\n");
    for t in paths {
        for (i, q) in t.points.iter().enumerate() {
            let _ = writeln!(
                s,
                "\"{}\",{},{:e},{:e},{:e},{:e}",
                t.name,
                i,
                q[0],
                q[1],
                p.ft_loss(q),
                Example1::pre_loss(q)
            );
        }
    }
    s
}

/// Colours of the paths, in [`compute_paths`] order.
const PATH_COLOURS: [RGBColor; 6] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(0, 0, 0),
];

/// A light viridis-like colour for t in [0, 1].
fn band_colour(t: f64) -> RGBColor {
    const STOPS: [(f64, f64, f64); 5] = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (253.0, 231.0, 37.0),
    ];
    let t = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let i = (t.floor() as usize).min(STOPS.len() - 2);
    let f = t - i as f64;
    let mix = |a: f64, b: f64| {
        let v = a + (b - a) * f;
        // Lighten toward white so the paths stand out.
        (v + (255.0 - v) * 0.45).round() as u8
    };
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Iso-line segments of a scalar field on a regular grid (marching squares).
/// `v[j][i]` is the value at (xs[i], ys[j]).
fn iso_segments(xs: &[f64], ys: &[f64], v: &[Vec<f64>], level: f64) -> Vec<[(f64, f64); 2]> {
    let mut segs = Vec::new();
    for j in 0..ys.len().saturating_sub(1) {
        for i in 0..xs.len().saturating_sub(1) {
            // Corners counter-clockwise from bottom-left.
            let c = [
                (xs[i], ys[j], v[j][i]),
                (xs[i + 1], ys[j], v[j][i + 1]),
                (xs[i + 1], ys[j + 1], v[j + 1][i + 1]),
                (xs[i], ys[j + 1], v[j + 1][i]),
            ];
            let mut cross = Vec::with_capacity(4);
            for e in 0..4 {
                let (p, q) = (c[e], c[(e + 1) % 4]);
                if (p.2 < level) != (q.2 < level) {
                    let t = (level - p.2) / (q.2 - p.2);
                    cross.push((p.0 + t * (q.0 - p.0), p.1 + t * (q.1 - p.1)));
                }
            }
            if cross.len() >= 2 {
                segs.push([cross[0], cross[1]]);
            }
            if cross.len() == 4 {
                segs.push([cross[2], cross[3]]);
            }
        }
    }
    segs
}

/// Plot bounds covering the minima hyperplanes near 0 and every path.
fn bounds(p: &Example1, paths: &[Trajectory]) -> (f64, f64, f64, f64) {
    let m = [p.b()[0] / p.a()[0], p.b()[1] / p.a()[1]];
    let (mut x0, mut x1, mut y0, mut y1) = (0.0f64, 1.5 * m[0], 0.0f64, 1.5 * m[1]);
    for q in paths.iter().flat_map(|t| t.points.iter()) {
        if q[0].is_finite() && q[1].is_finite() {
            x0 = x0.min(q[0]);
            x1 = x1.max(q[0]);
            y0 = y0.min(q[1]);
            y1 = y1.max(q[1]);
        }
    }
    let (px, py) = (0.08 * (x1 - x0), 0.08 * (y1 - y0));
    (x0 - px, x1 + px, y0 - py, y1 + py)
}

fn plot_err<E: std::fmt::Debug>(e: E) -> ExperimentError {
    ExperimentError::Setting(format!("drawing the landscape failed: {e:?}"))
}

/// Draws the PNG: filled contour bands of log10 L_ft (clipped at −8) with
/// iso-lines at every integer, the paths, their end points and a legend.
pub fn draw_png(p: &Example1, paths: &[Trajectory], file: &Path) -> Result<(), ExperimentError> {
    // Registering the same font twice is harmless.
    plotters::style::register_font(
        "sans-serif",
        FontStyle::Normal,
        include_bytes!("../../assets/DejaVuSans.ttf"),
    )
    .map_err(|_| ExperimentError::Setting("the bundled font is invalid".into()))?;
    let (x0, x1, y0, y1) = bounds(p, paths);
    const CELLS: usize = 240;
    const FLOOR: f64 = -8.0;
    let xs: Vec<f64> = (0..=CELLS)
        .map(|i| x0 + (x1 - x0) * i as f64 / CELLS as f64)
        .collect();
    let ys: Vec<f64> = (0..=CELLS)
        .map(|j| y0 + (y1 - y0) * j as f64 / CELLS as f64)
        .collect();
    let field: Vec<Vec<f64>> = ys
        .iter()
        .map(|&y| {
            xs.iter()
                .map(|&x| p.ft_loss(&[x, y]).log10().max(FLOOR))
                .collect()
        })
        .collect();
    let top = field
        .iter()
        .flatten()
        .fold(FLOOR + 1.0, |m, &v| m.max(v))
        .ceil();

    crate::plot::drawn_atomically(
        file,
        |file| {
            let root = BitMapBackend::new(file, (960, 860)).into_drawing_area();
            root.fill(&WHITE).map_err(plot_err)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(
                    format!(
                "Example 1: log10 L_ft (bands, lines at integers), a = ({}, {}), b = ({}, {})",
                p.a()[0],
                p.a()[1],
                p.b()[0],
                p.b()[1]
            ),
                    ("sans-serif", 20),
                )
                .margin(12)
                .x_label_area_size(45)
                .y_label_area_size(55)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(plot_err)?;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_desc("θ₁")
                .y_desc("θ₂")
                .label_style(("sans-serif", 15))
                .draw()
                .map_err(plot_err)?;

            let mut cells = Vec::with_capacity(CELLS * CELLS);
            for j in 0..CELLS {
                for i in 0..CELLS {
                    let mid = p.ft_loss(&[0.5 * (xs[i] + xs[i + 1]), 0.5 * (ys[j] + ys[j + 1])]);
                    let level = mid.log10().max(FLOOR).floor();
                    let colour = band_colour((level - FLOOR) / (top - FLOOR));
                    cells.push(Rectangle::new(
                        [(xs[i], ys[j]), (xs[i + 1], ys[j + 1])],
                        colour.filled(),
                    ));
                }
            }
            chart.draw_series(cells).map_err(plot_err)?;
            let mut level = FLOOR + 1.0;
            while level <= top {
                let segs = iso_segments(&xs, &ys, &field, level);
                chart
                    .draw_series(
                        segs.into_iter()
                            .map(|s| PathElement::new(s.to_vec(), RGBColor(60, 60, 60).mix(0.5))),
                    )
                    .map_err(plot_err)?;
                level += 1.0;
            }

            for (t, colour) in paths.iter().zip(PATH_COLOURS.iter().cycle()) {
                let colour = *colour;
                let pts: Vec<(f64, f64)> = t.points.iter().map(|q| (q[0], q[1])).collect();
                chart
                    .draw_series(LineSeries::new(pts, colour.stroke_width(3)))
                    .map_err(plot_err)?
                    .label(format!(
                        "{}: end ({:.3}, {:.3}), L_pre {:.3}",
                        t.name,
                        t.end()[0],
                        t.end()[1],
                        Example1::pre_loss(&t.end())
                    ))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 22, y)], colour.stroke_width(3))
                    });
                let e = t.end();
                chart
                    .draw_series([
                        Circle::new((e[0], e[1]), 7, colour.filled()),
                        Circle::new((e[0], e[1]), 7, BLACK.stroke_width(1)),
                    ])
                    .map_err(plot_err)?;
            }
            chart
                .draw_series([Cross::new((0.0, 0.0), 8, BLACK.stroke_width(2))])
                .map_err(plot_err)?
                .label("θ_pre = 0")
                .legend(|(x, y)| Cross::new((x + 11, y), 6, BLACK.stroke_width(2)));
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .label_font(("sans-serif", 15))
                .draw()
                .map_err(plot_err)?;
            root.present().map_err(plot_err)?;
            Ok(())
        },
        plot_err,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_segments_of_a_plane_are_a_line() {
        let xs: Vec<f64> = (0..=4).map(|i| i as f64).collect();
        let ys = xs.clone();
        let v: Vec<Vec<f64>> = ys.iter().map(|_| xs.clone()).collect();
        let segs = iso_segments(&xs, &ys, &v, 1.5);
        assert_eq!(segs.len(), 4);
        for s in segs {
            assert!((s[0].0 - 1.5).abs() < 1e-12 && (s[1].0 - 1.5).abs() < 1e-12);
        }
    }

    #[test]
    fn band_colours_are_ordered_and_light() {
        let lo = band_colour(0.0);
        let hi = band_colour(1.0);
        assert_ne!(lo, hi);
        assert!(lo.0 > 100 && hi.2 > 100);
    }
}
