//! Figures of one field's predictions for the report: the KL histogram with the OOD threshold,
//! and each class's probability over the plants. SVG, text in the bundled font.

use std::path::Path;

use domain::PredictionTable;
use plotters::prelude::*;

use crate::error::Result;
use crate::plot::{plot_error, register_font};

const WIDTH: u32 = 760;
const HEIGHT: u32 = 420;

/// Counts of `values` in `bins` equal bins over [lo, hi] (values outside go to the end bins).
pub fn histogram(values: &[f64], lo: f64, hi: f64, bins: usize) -> Vec<u64> {
    let mut counts = vec![0u64; bins];
    let width = (hi - lo) / bins as f64;
    for &v in values.iter().filter(|v| v.is_finite()) {
        let bin = if width > 0.0 {
            ((v - lo) / width).floor()
        } else {
            0.0
        };
        counts[(bin.max(0.0) as usize).min(bins - 1)] += 1;
    }
    counts
}

/// Histogram of the plants' KL (nats) with the model's OOD threshold as a vertical line.
pub fn write_kl_histogram(path: &Path, table: &PredictionTable, threshold_nats: f64) -> Result<()> {
    let kl: Vec<f64> = table.predictions.iter().map(|p| p.kl_nats).collect();
    let hi = kl.iter().copied().fold(threshold_nats, f64::max) * 1.1;
    let hi = if hi > 0.0 { hi } else { 1.0 };
    write_histogram(
        path,
        &kl,
        (0.0, hi, 40),
        ("KL per plant (nats)", "KL(q(z|x) || N(0, I)), nats"),
        Some((
            threshold_nats,
            format!("OOD threshold {threshold_nats:.1} nats"),
        )),
    )
}

/// Histogram of the plants' severity (`run --per-pixel`: % of each plant's scored pixels not
/// called healthy), 20 bins of 5 points.
pub fn write_severity_histogram(path: &Path, severity_pct: &[f64]) -> Result<()> {
    write_histogram(
        path,
        severity_pct,
        (0.0, 100.0, 20),
        (
            "Severity per plant",
            "severity, % of the plant's pixels not called healthy",
        ),
        None,
    )
}

/// An SVG histogram of `values` over [lo, hi) in `bins` bins (values outside go to the end
/// bins), with an optional labelled vertical line.
fn write_histogram(
    path: &Path,
    values: &[f64],
    (lo, hi, bins): (f64, f64, usize),
    (caption, x_desc): (&str, &str),
    line: Option<(f64, String)>,
) -> Result<()> {
    register_font();
    let counts = histogram(values, lo, hi, bins);
    let top = counts.iter().copied().max().unwrap_or(0).max(1);
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (WIDTH, HEIGHT)).into_drawing_area();
        let draw = || -> std::result::Result<(), String> {
            root.fill(&WHITE).map_err(|e| e.to_string())?;
            let mut chart = ChartBuilder::on(&root)
                .caption(caption, ("sans-serif", 20))
                .margin(15)
                .x_label_area_size(40)
                .y_label_area_size(50)
                .build_cartesian_2d(lo..hi, 0u64..top + top / 10 + 1)
                .map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc("plants")
                .label_style(("sans-serif", 13))
                .draw()
                .map_err(|e| e.to_string())?;
            let width = (hi - lo) / bins as f64;
            chart
                .draw_series(counts.iter().enumerate().map(|(b, &c)| {
                    let x = lo + b as f64 * width;
                    Rectangle::new([(x, 0), (x + width, c)], BLUE.mix(0.6).filled())
                }))
                .map_err(|e| e.to_string())?;
            if let Some((at, label)) = &line {
                chart
                    .draw_series(LineSeries::new(
                        [(*at, 0), (*at, top + top / 10 + 1)],
                        RED.stroke_width(2),
                    ))
                    .map_err(|e| e.to_string())?
                    .label(label.as_str())
                    .legend(|(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2))
                    });
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .label_font(("sans-serif", 13))
                    .draw()
                    .map_err(|e| e.to_string())?;
            }
            root.present().map_err(|e| e.to_string())
        };
        draw().map_err(|e| plot_error(path, e))?;
    }
    crate::table::write_bytes(path, text.as_bytes())
}

/// For each class, the histogram of its probability over the plants (20 bins over [0, 1]), one
/// panel per class in its colour: mass near 1 is confident calls, mass in between is doubt.
pub fn write_probability_distributions(path: &Path, table: &PredictionTable) -> Result<()> {
    register_font();
    let bins = 20;
    let series: Vec<(String, [u8; 3], Vec<u64>)> = table
        .classes
        .iter()
        .enumerate()
        .map(|(k, c)| {
            let p: Vec<f64> = table
                .predictions
                .iter()
                .map(|p| f64::from(p.probabilities[k]))
                .collect();
            (
                c.name.clone(),
                table.classes.colour(k),
                histogram(&p, 0.0, 1.0, bins),
            )
        })
        .collect();
    let top = series
        .iter()
        .flat_map(|s| s.2.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (WIDTH, HEIGHT)).into_drawing_area();
        let draw = || -> std::result::Result<(), String> {
            root.fill(&WHITE).map_err(|e| e.to_string())?;
            let root = root
                .titled("Class probability over plants", ("sans-serif", 20))
                .map_err(|e| e.to_string())?;
            let panels = root.split_evenly((1, series.len().max(1)));
            for ((name, [r, g, b], counts), panel) in series.iter().zip(&panels) {
                let colour = RGBColor(*r, *g, *b);
                let mut chart = ChartBuilder::on(panel)
                    .caption(name.as_str(), ("sans-serif", 16))
                    .margin(8)
                    .x_label_area_size(35)
                    .y_label_area_size(40)
                    .build_cartesian_2d(0.0..1.0, 0u64..top + top / 10 + 1)
                    .map_err(|e| e.to_string())?;
                chart
                    .configure_mesh()
                    .x_desc("probability")
                    .y_desc("plants")
                    .x_labels(5)
                    .label_style(("sans-serif", 12))
                    .draw()
                    .map_err(|e| e.to_string())?;
                let width = 1.0 / bins as f64;
                chart
                    .draw_series(counts.iter().enumerate().map(|(i, &c)| {
                        let x = i as f64 * width;
                        Rectangle::new([(x, 0), (x + width, c)], colour.filled())
                    }))
                    .map_err(|e| e.to_string())?;
            }
            root.present().map_err(|e| e.to_string())
        };
        draw().map_err(|e| plot_error(path, e))?;
    }
    crate::table::write_bytes(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    #[test]
    fn histogram_counts_every_value_once() {
        let values = [0.0, 0.05, 0.5, 0.99, 1.0, 7.0, -1.0, f64::NAN];
        let counts = super::histogram(&values, 0.0, 1.0, 10);
        assert_eq!(counts.iter().sum::<u64>(), 7);
        assert_eq!(counts[0], 3); // 0.0, 0.05 and the clamped -1.0
        assert_eq!(counts[9], 3); // 0.99, 1.0 and the clamped 7.0
        assert_eq!(counts[5], 1);
    }
}
