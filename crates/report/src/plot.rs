//! The sweep's figures, each drawn once and rendered to both SVG and PNG (plotters; the PNG's text
//! uses the bundled DejaVu Sans, so no system font is needed).

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{Error, Result};

/// One beta of a sweep, as plotted.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepPoint {
    pub beta: f64,
    /// Upper bound on I(Z;X): the mean KL, bits.
    pub rate_bits: f64,
    /// Lower bound on I(Z;Y): H(Y) minus the cross-entropy, bits.
    pub relevance_bits: f64,
    pub train_accuracy: f64,
    pub validation_accuracy: Option<f64>,
    pub validation_rate_bits: Option<f64>,
    pub validation_relevance_bits: Option<f64>,
}

const WIDTH: u32 = 900;
const HEIGHT: u32 = 600;
static FONT: Once = Once::new();

pub(crate) fn register_font() {
    FONT.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../fonts/DejaVuSans.ttf");
        // A bundled, valid TrueType file: registration cannot fail.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, bytes);
    });
}

pub(crate) fn plot_error(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::Invalid {
        path: path.into(),
        message: format!("drawing failed: {message}"),
    }
}

fn beta_label(beta: f64) -> String {
    if beta == 0.0 {
        "0".into()
    } else {
        format!("{beta:.0e}")
    }
}

fn padded(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.08).max(1e-3);
    (lo - pad, hi + pad)
}

fn draw_information_plane<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    points: &[SweepPoint],
) -> Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    // Rates span orders of magnitude across betas: log axis, floored at 1e-3 bits.
    let floor = |r: f64| r.max(1e-3);
    let (x_lo, x_hi) = points
        .iter()
        .flat_map(|p| [Some(p.rate_bits), p.validation_rate_bits])
        .flatten()
        .map(floor)
        .fold((f64::INFINITY, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
    let (x_lo, x_hi) = if x_lo.is_finite() {
        (x_lo / 1.5, x_hi * 1.5)
    } else {
        (1e-3, 1.0)
    };
    let (y_lo, y_hi) = padded(
        points
            .iter()
            .flat_map(|p| [Some(p.relevance_bits), p.validation_relevance_bits])
            .flatten(),
    );
    let mut chart = ChartBuilder::on(root)
        .caption(
            "Information plane (VIB bounds per beta)",
            ("sans-serif", 24),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d((x_lo..x_hi).log_scale(), y_lo.min(0.0)..y_hi)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("I(Z;X) upper bound: mean KL (bits, log scale)")
        .y_desc("I(Z;Y) lower bound: H(Y) - CE (bits)")
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|e| e.to_string())?;
    let mut sorted = points.to_vec();
    sorted.sort_by(|a, b| a.rate_bits.total_cmp(&b.rate_bits));
    for p in &mut sorted {
        p.rate_bits = floor(p.rate_bits);
        p.validation_rate_bits = p.validation_rate_bits.map(floor);
    }
    chart
        .draw_series(LineSeries::new(
            sorted.iter().map(|p| (p.rate_bits, p.relevance_bits)),
            BLUE.stroke_width(2),
        ))
        .map_err(|e| e.to_string())?
        .label("training set")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    chart
        .draw_series(
            sorted
                .iter()
                .map(|p| Circle::new((p.rate_bits, p.relevance_bits), 5, BLUE.filled())),
        )
        .map_err(|e| e.to_string())?;
    let validation: Vec<(f64, f64)> = sorted
        .iter()
        .filter_map(|p| Some((p.validation_rate_bits?, p.validation_relevance_bits?)))
        .collect();
    if !validation.is_empty() {
        chart
            .draw_series(LineSeries::new(
                validation.iter().copied(),
                RED.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label("validation set")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
        chart
            .draw_series(
                validation
                    .iter()
                    .map(|&xy| TriangleMarker::new(xy, 6, RED.filled())),
            )
            .map_err(|e| e.to_string())?;
    }
    chart
        .draw_series(sorted.iter().map(|p| {
            Text::new(
                format!("β={}", beta_label(p.beta)),
                (p.rate_bits, p.relevance_bits),
                ("sans-serif", 14).into_font(),
            )
        }))
        .map_err(|e| e.to_string())?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

fn draw_beta_curves<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    points: &[SweepPoint],
) -> Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut sorted: Vec<&SweepPoint> = points.iter().filter(|p| p.beta > 0.0).collect();
    sorted.sort_by(|a, b| a.beta.total_cmp(&b.beta));
    let log_betas: Vec<f64> = sorted.iter().map(|p| p.beta.log10()).collect();
    let (x_lo, x_hi) = padded(log_betas.iter().copied());
    let (top, bottom) = root.split_vertically(HEIGHT / 2);
    let mut accuracy = ChartBuilder::on(&top)
        .caption("Accuracy and rate versus beta", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(x_lo..x_hi, 0.0..1.02)
        .map_err(|e| e.to_string())?;
    accuracy
        .configure_mesh()
        .x_desc("log10(beta)")
        .y_desc("accuracy")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| e.to_string())?;
    accuracy
        .draw_series(LineSeries::new(
            log_betas
                .iter()
                .zip(&sorted)
                .map(|(&x, p)| (x, p.train_accuracy)),
            BLUE.stroke_width(2),
        ))
        .map_err(|e| e.to_string())?
        .label("training")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    let validation: Vec<(f64, f64)> = log_betas
        .iter()
        .zip(&sorted)
        .filter_map(|(&x, p)| Some((x, p.validation_accuracy?)))
        .collect();
    if !validation.is_empty() {
        accuracy
            .draw_series(LineSeries::new(validation, RED.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label("validation")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    }
    accuracy
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| e.to_string())?;
    let (_, rate_hi) = padded(sorted.iter().map(|p| p.rate_bits));
    let mut rate = ChartBuilder::on(&bottom)
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(x_lo..x_hi, 0.0..rate_hi.max(0.1))
        .map_err(|e| e.to_string())?;
    rate.configure_mesh()
        .x_desc("log10(beta)")
        .y_desc("rate: mean KL (bits)")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| e.to_string())?;
    rate.draw_series(LineSeries::new(
        log_betas
            .iter()
            .zip(&sorted)
            .map(|(&x, p)| (x, p.rate_bits)),
        BLACK.stroke_width(2),
    ))
    .map_err(|e| e.to_string())?;
    rate.draw_series(
        log_betas
            .iter()
            .zip(&sorted)
            .map(|(&x, p)| Circle::new((x, p.rate_bits), 4, BLACK.filled())),
    )
    .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

#[derive(Clone, Copy)]
enum Figure {
    InformationPlane,
    BetaCurves,
}

/// A figure that can draw itself on any backend (SVG and PNG).
pub(crate) trait Drawable {
    fn draw_on<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>;
}

struct SweepFigure<'a>(Figure, &'a [SweepPoint]);

impl Drawable for SweepFigure<'_> {
    fn draw_on<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        match self.0 {
            Figure::InformationPlane => draw_information_plane(root, self.1),
            Figure::BetaCurves => draw_beta_curves(root, self.1),
        }
    }
}

fn render(dir: &Path, stem: &str, points: &[SweepPoint], figure: Figure) -> Result<[PathBuf; 2]> {
    render_figure(
        &dir.join(format!("{stem}.svg")),
        &dir.join(format!("{stem}.png")),
        &SweepFigure(figure, points),
    )
}

/// Draw `figure` into an SVG and a PNG file (each written through a temporary name).
pub(crate) fn render_figure(
    svg_path: &Path,
    png_path: &Path,
    figure: &impl Drawable,
) -> Result<[PathBuf; 2]> {
    register_font();
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (WIDTH, HEIGHT)).into_drawing_area();
        figure.draw_on(&root).map_err(|e| plot_error(svg_path, e))?;
    }
    let mut pixels = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (WIDTH, HEIGHT)).into_drawing_area();
        figure.draw_on(&root).map_err(|e| plot_error(png_path, e))?;
    }
    let mut png_bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png_bytes, WIDTH, HEIGHT);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .map_err(|e| plot_error(png_path, e))?;
        writer
            .write_image_data(&pixels)
            .map_err(|e| plot_error(png_path, e))?;
    }
    crate::table::write_bytes(svg_path, text.as_bytes())?;
    crate::table::write_bytes(png_path, &png_bytes)?;
    Ok([svg_path.to_path_buf(), png_path.to_path_buf()])
}

/// Write `information-plane.{svg,png}` and `beta-curves.{svg,png}` into `dir`; returns the paths.
pub fn write_sweep_plots(dir: &Path, points: &[SweepPoint]) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    written.extend(render(
        dir,
        "information-plane",
        points,
        Figure::InformationPlane,
    )?);
    written.extend(render(dir, "beta-curves", points, Figure::BetaCurves)?);
    Ok(written)
}

/// Write an 8-bit RGB image (row-major, `width * height * 3` bytes) as PNG, through a temporary name.
pub fn write_png_rgb(path: &Path, width: usize, height: usize, rgb: &[u8]) -> Result<()> {
    if rgb.len() != width * height * 3 || width == 0 || height == 0 {
        return Err(plot_error(
            path,
            format!("{} bytes for a {width} x {height} RGB image", rgb.len()),
        ));
    }
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, width as u32, height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| plot_error(path, e))?;
        writer
            .write_image_data(rgb)
            .map_err(|e| plot_error(path, e))?;
    }
    crate::table::write_bytes(path, &bytes)
}
