//! The campaign report: disease progress curves, the AUDPC and treatment tables, every scan
//! linked to its own field report, and the cubes that failed. One folder, no scripts, no network.

use std::fmt::Write as _;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::Result;
use crate::html::escape;
use crate::plot::{render_figure, Drawable};

/// One line of a progress figure: (days since the first scan, value in %).
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressCurve {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// A table flattened to text by the caller.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TextTable {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// A scan of the campaign and where its own report is (relative to the campaign report).
#[derive(Debug, Clone, PartialEq)]
pub struct ScanLink {
    pub field_id: String,
    pub date: String,
    pub plants: usize,
    pub incidence_pct: f64,
    pub report_href: Option<String>,
}

/// Everything the campaign report shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CampaignReport {
    pub title: String,
    pub dataset: String,
    /// (label, value) rows: settings, counts.
    pub facts: Vec<(String, String)>,
    /// Incidence per treatment (or per field) over days; severity when the campaign has it.
    pub incidence_curves: Vec<ProgressCurve>,
    pub severity_curves: Vec<ProgressCurve>,
    pub audpc: TextTable,
    pub treatments: TextTable,
    pub treatment_note: String,
    pub scans: Vec<ScanLink>,
    /// Cubes that failed: (cube, field, date, error).
    pub failures: Vec<[String; 4]>,
    pub version: String,
}

struct CurvesFigure<'a> {
    title: &'a str,
    y_desc: &'a str,
    curves: &'a [ProgressCurve],
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

impl Drawable for CurvesFigure<'_> {
    fn draw_on<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let last_day = self
            .curves
            .iter()
            .flat_map(|c| c.points.iter().map(|p| p.0))
            .fold(1.0f64, f64::max);
        let mut chart = ChartBuilder::on(root)
            .caption(self.title, ("sans-serif", 24))
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..last_day * 1.05, 0.0..105.0)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("days since the first scan")
            .y_desc(self.y_desc)
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, curve) in self.curves.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(
                    curve.points.iter().copied(),
                    colour.stroke_width(3),
                ))
                .map_err(|e| e.to_string())?
                .label(curve.label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(3))
                });
            chart
                .draw_series(
                    curve
                        .points
                        .iter()
                        .map(|&p| Circle::new(p, 5, colour.filled())),
                )
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

fn table(html: &mut String, t: &TextTable) {
    html.push_str("<table>\n<tr>");
    for h in &t.header {
        let _ = write!(html, "<th>{}</th>", escape(h));
    }
    html.push_str("</tr>\n");
    for row in &t.rows {
        html.push_str("<tr>");
        for cell in row {
            let _ = write!(html, "<td>{}</td>", escape(cell));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>\n");
}

/// Write `index.html` and the progress figures (SVG and PNG) into `dir`.
pub fn write_campaign_report(dir: &Path, report: &CampaignReport) -> Result<()> {
    let mut figures = Vec::new();
    for (stem, title, y_desc, curves) in [
        (
            "incidence",
            "Disease incidence",
            "plants not called healthy (%)",
            &report.incidence_curves,
        ),
        (
            "severity",
            "Mean severity",
            "severity, % of a plant's pixels",
            &report.severity_curves,
        ),
    ] {
        if curves.is_empty() {
            continue;
        }
        render_figure(
            &dir.join(format!("{stem}.svg")),
            &dir.join(format!("{stem}.png")),
            &CurvesFigure {
                title,
                y_desc,
                curves,
            },
        )?;
        figures.push(format!("{stem}.svg"));
    }
    let mut html = crate::html::page_head(&report.title);
    let _ = writeln!(
        html,
        "<p>Dataset <code>{}</code>; pipeline {}.</p>",
        escape(&report.dataset),
        escape(&report.version)
    );
    html.push_str("<table>\n");
    for (k, v) in &report.facts {
        let _ = writeln!(
            html,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(k),
            escape(v)
        );
    }
    html.push_str("</table>\n<h2>Progress</h2>\n");
    for f in &figures {
        let _ = writeln!(
            html,
            "<figure><img src=\"{f}\" alt=\"{f}\"><figcaption>{f} (PNG beside it)</figcaption></figure>"
        );
    }
    html.push_str("<h2>Area under the disease progress curve, per plot</h2>\n");
    table(&mut html, &report.audpc);
    if !report.treatments.rows.is_empty() {
        html.push_str("<h2>Treatments</h2>\n");
        table(&mut html, &report.treatments);
        let _ = writeln!(html, "<p>{}</p>", escape(&report.treatment_note));
    }
    html.push_str("<h2>Scans</h2>\n<table>\n<tr><th>field</th><th>date</th><th>plants</th><th>incidence</th><th>field report</th></tr>\n");
    for s in &report.scans {
        let link = match &s.report_href {
            Some(href) => format!("<a href=\"{}\">report</a>", escape(href)),
            None => "-".into(),
        };
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}%</td><td>{link}</td></tr>",
            escape(&s.field_id),
            escape(&s.date),
            s.plants,
            s.incidence_pct
        );
    }
    html.push_str("</table>\n<h2>Cubes that failed</h2>\n");
    if report.failures.is_empty() {
        html.push_str("<p>None.</p>\n");
    } else {
        html.push_str("<table>\n<tr><th>cube</th><th>field</th><th>date</th><th>error</th></tr>\n");
        for f in &report.failures {
            html.push_str("<tr>");
            for cell in f {
                let _ = write!(html, "<td>{}</td>", escape(cell));
            }
            html.push_str("</tr>\n");
        }
        html.push_str("</table>\n");
    }
    html.push_str("</body>\n</html>\n");
    crate::html::write_report_html(dir, &html)
}
