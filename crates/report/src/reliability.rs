//! The reliability diagram: accuracy against confidence per confidence bin, before and after
//! calibration, with the diagonal a calibrated model lies on.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::Result;
use crate::plot::{render_figure, Drawable};

/// One confidence bin.
#[derive(Debug, Clone, PartialEq)]
pub struct ReliabilityPoint {
    pub lower: f64,
    pub upper: f64,
    pub samples: u64,
    pub mean_confidence: f64,
    pub accuracy: f64,
}

/// One curve of the diagram.
#[derive(Debug, Clone, PartialEq)]
pub struct ReliabilityCurve {
    /// Legend, e.g. "before calibration (ECE 0.081)".
    pub label: String,
    pub bins: Vec<ReliabilityPoint>,
}

struct Diagram<'a> {
    title: &'a str,
    curves: &'a [ReliabilityCurve],
}

const COLOURS: [RGBColor; 3] = [
    RGBColor(200, 60, 40),
    RGBColor(30, 90, 200),
    RGBColor(40, 150, 60),
];

impl Drawable for Diagram<'_> {
    fn draw_on<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(root)
            .caption(self.title, ("sans-serif", 22))
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("confidence (top-class probability)")
            .y_desc("accuracy")
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new(
                [(0.0, 0.0), (1.0, 1.0)],
                BLACK.mix(0.4).stroke_width(1),
            ))
            .map_err(|e| e.to_string())?
            .label("perfect calibration")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.4)));
        let total: u64 = self
            .curves
            .first()
            .map_or(0, |c| c.bins.iter().map(|b| b.samples).sum());
        for (i, curve) in self.curves.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let points: Vec<(f64, f64)> = curve
                .bins
                .iter()
                .filter(|b| b.samples > 0)
                .map(|b| (b.mean_confidence, b.accuracy))
                .collect();
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    colour.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(curve.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
            // Marker area in proportion to the bin's share of samples.
            chart
                .draw_series(curve.bins.iter().filter(|b| b.samples > 0).map(|b| {
                    let share = b.samples as f64 / total.max(1) as f64;
                    Circle::new(
                        (b.mean_confidence, b.accuracy),
                        (3.0 + 20.0 * share.sqrt()) as i32,
                        colour.mix(0.5).filled(),
                    )
                }))
                .map_err(|e| e.to_string())?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 15))
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())
    }
}

/// Write the diagram to `stem.svg` and `stem.png`; returns both paths.
pub fn write_reliability_diagram(
    stem: &Path,
    title: &str,
    curves: &[ReliabilityCurve],
) -> Result<[PathBuf; 2]> {
    render_figure(
        &stem.with_extension("svg"),
        &stem.with_extension("png"),
        &Diagram { title, curves },
    )
}
