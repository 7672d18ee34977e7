//! The field report: one self-contained HTML page (no scripts, no network) beside its images.

use std::fmt::Write as _;
use std::path::Path;

use domain::PredictionTable;

use crate::error::Result;
use crate::summary::FieldSummary;

/// What the report says about the model, flattened from its card by the caller.
#[derive(Debug, Clone, Default)]
pub struct ModelReport {
    pub name: String,
    pub model_id: String,
    pub beta: f64,
    /// (label, value) rows: architecture, training data, metrics, thresholds.
    pub facts: Vec<(String, String)>,
    /// The full model card, pretty JSON.
    pub card_json: String,
    /// The cross-validated search the options came from: column names, one row per candidate,
    /// the winner's row, and why it won; empty when there was none.
    pub search_header: Vec<String>,
    pub search_rows: Vec<Vec<String>>,
    pub search_winner: Option<usize>,
    pub search_note: String,
}

/// Images in the report directory, by file name.
#[derive(Debug, Clone, Default)]
pub struct ReportImages {
    pub quicklook: Option<String>,
    pub class_map: Option<String>,
    pub kl_histogram: String,
    pub probabilities: String,
    pub information_plane: Option<String>,
    /// Reliability diagram of the predictions the temperature was fitted on.
    pub reliability: Option<String>,
    /// Per-pixel class map and the severity histogram (`run --per-pixel`).
    pub lesion_map: Option<String>,
    pub severity_histogram: Option<String>,
}

/// HTML-escape text.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The reports' stylesheet (field and campaign reports look alike).
pub(crate) const STYLE: &str = "\
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }\n\
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }\n\
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }\n\
th { background: #f3f3f3; }\n\
figure { display: inline-block; margin: 0 1em 1em 0; vertical-align: top; }\n\
figure img { max-width: 520px; border: 1px solid #ccc; }\n\
figure img.map { width: 520px; image-rendering: pixelated; }\n\
.swatch { display: inline-block; width: 0.9em; height: 0.9em; margin-right: 0.3em; border: 1px solid #666; }\n\
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: 0.85em; }\n\
";

/// The start of a report page: doctype, title, stylesheet, heading.
pub(crate) fn page_head(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{t}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n<h1>{t}</h1>\n",
        t = escape(title)
    )
}

fn row(html: &mut String, key: &str, value: &str) {
    let _ = writeln!(
        html,
        "<tr><th>{}</th><td>{}</td></tr>",
        escape(key),
        escape(value)
    );
}

fn figure(html: &mut String, src: &str, caption: &str) {
    // Raster maps are scaled up without blurring; SVG figures keep their size.
    let class = if src.ends_with(".png") {
        " class=\"map\""
    } else {
        ""
    };
    let _ = writeln!(
        html,
        "<figure><img{class} src=\"{}\" alt=\"{}\"><figcaption>{}</figcaption></figure>",
        escape(src),
        escape(caption),
        escape(caption)
    );
}

/// Render the page.
pub fn report_html(
    summary: &FieldSummary,
    table: &PredictionTable,
    model: &ModelReport,
    images: &ReportImages,
    version: &str,
) -> String {
    let mut html = String::new();
    let title = format!("Field {}", summary.field_id);
    html.push_str(&page_head(&title));
    let _ = writeln!(
        html,
        "<p>Cube <code>{}</code>{}; model <code>{}</code> (beta {}); pipeline {}.</p>",
        escape(&summary.cube),
        summary
            .scan_date
            .as_ref()
            .map_or(String::new(), |d| format!(", scanned {}", escape(d))),
        escape(&model.model_id),
        model.beta,
        escape(version)
    );

    html.push_str("<h2>Field summary</h2>\n<table>\n");
    row(&mut html, "plants", &summary.plants.to_string());
    row(
        &mut html,
        "vegetation",
        &format!("{:.1}% of pixels", 100.0 * summary.vegetation_fraction),
    );
    for (k, (class, count)) in summary.per_class.iter().enumerate() {
        let [r, g, b] = table.classes.colour(k);
        let share = 100.0 * *count as f64 / summary.plants.max(1) as f64;
        let _ = writeln!(
            html,
            "<tr><th><span class=\"swatch\" style=\"background: rgb({r},{g},{b})\"></span>{}</th><td>{count} ({share:.1}%)</td></tr>",
            escape(class)
        );
    }
    row(
        &mut html,
        "disease incidence",
        &summary
            .incidence_pct
            .map_or("n/a (no healthy class)".into(), |p| {
                format!("{p:.1}% of plants")
            }),
    );
    let nats = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{v:.2} nats"));
    row(&mut html, "mean KL", &nats(summary.kl_mean_nats));
    row(
        &mut html,
        "KL percentiles 50 / 90 / 99",
        &format!(
            "{} / {} / {}",
            nats(summary.kl_p50_nats),
            nats(summary.kl_p90_nats),
            nats(summary.kl_p99_nats)
        ),
    );
    row(
        &mut html,
        "out-of-distribution plants",
        &summary.ood_plants.to_string(),
    );
    if let Some(mean) = summary.severity_mean_pct {
        let pct = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{v:.1}%"));
        row(
            &mut html,
            "severity (mean; median / 90th percentile)",
            &format!(
                "{mean:.1}% of a plant's pixels; {} / {}",
                pct(summary.severity_p50_pct),
                pct(summary.severity_p90_pct)
            ),
        );
    }
    html.push_str("</table>\n");

    html.push_str("<h2>Maps</h2>\n");
    if let Some(q) = &images.quicklook {
        figure(
            &mut html,
            q,
            "True colour with plant outlines in their class colour; magenta outline and cross: out of distribution",
        );
    }
    if let Some(c) = &images.class_map {
        figure(&mut html, c, "Predicted class per plant");
    }
    if let Some(l) = &images.lesion_map {
        figure(
            &mut html,
            l,
            "Predicted class per pixel (lesion map); grey: plant edge pixels, not scored",
        );
    }
    if let Some(s) = &images.severity_histogram {
        figure(
            &mut html,
            s,
            "Severity per plant: share of its pixels not called healthy",
        );
    }

    html.push_str("<h2>How sure the model is</h2>\n");
    figure(
        &mut html,
        &images.kl_histogram,
        "KL per plant: plants right of the threshold are flagged out of distribution",
    );
    figure(
        &mut html,
        &images.probabilities,
        "Each class's probability over the plants",
    );
    let mut flagged: Vec<usize> = (0..table.predictions.len())
        .filter(|&i| table.predictions[i].ood)
        .collect();
    flagged.sort_by(|&a, &b| {
        table.predictions[b]
            .kl_nats
            .total_cmp(&table.predictions[a].kl_nats)
    });
    if !flagged.is_empty() {
        let _ = writeln!(
            html,
            "<h3>Out-of-distribution plants ({}; highest KL first, at most 25)</h3>\n<table>\n<tr><th>plant</th><th>pixels</th><th>call</th><th>probability</th><th>KL (nats)</th><th>entropy (nats)</th></tr>",
            flagged.len()
        );
        for &i in flagged.iter().take(25) {
            let (plant, p) = (&table.plants[i], &table.predictions[i]);
            let class = table
                .classes
                .get(p.predicted_index)
                .map_or("?", |c| c.name.as_str());
            let _ = writeln!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.2}</td><td>{:.3}</td></tr>",
                plant.plant_id,
                plant.pixel_count,
                escape(class),
                p.probabilities[p.predicted_index],
                p.kl_nats,
                p.entropy_nats
            );
        }
        html.push_str("</table>\n");
    }

    let _ = writeln!(html, "<h2>Model {}</h2>\n<table>", escape(&model.name));
    row(&mut html, "model id", &model.model_id);
    row(&mut html, "beta", &model.beta.to_string());
    for (key, value) in &model.facts {
        row(&mut html, key, value);
    }
    html.push_str("</table>\n");
    if let Some(reliability) = &images.reliability {
        figure(
            &mut html,
            reliability,
            "Reliability of the model's probabilities where its temperature was fitted (held-out predictions), before and after calibration",
        );
    }
    if !model.search_rows.is_empty() {
        html.push_str("<h3>How the options were chosen</h3>\n<table>\n<tr>");
        for h in &model.search_header {
            let _ = write!(html, "<th>{}</th>", escape(h));
        }
        html.push_str("</tr>\n");
        for (i, r) in model.search_rows.iter().enumerate() {
            let style = if model.search_winner == Some(i) {
                " style=\"font-weight:bold\""
            } else {
                ""
            };
            let _ = write!(html, "<tr{style}>");
            for v in r {
                let _ = write!(html, "<td>{}</td>", escape(v));
            }
            html.push_str("</tr>\n");
        }
        let _ = writeln!(html, "</table>\n<p>{}</p>", escape(&model.search_note));
    }
    if let Some(plane) = &images.information_plane {
        figure(
            &mut html,
            plane,
            "The model's beta sweep: information plane (I(Z;X) upper bound vs I(Z;Y) lower bound)",
        );
    }
    let _ = writeln!(
        html,
        "<details><summary>Full model card (JSON)</summary>\n<pre>{}</pre>\n</details>\n</body>\n</html>",
        escape(&model.card_json)
    );
    html
}

/// Write the page to `dir/index.html` through a temporary name.
pub fn write_report_html(dir: &Path, html: &str) -> Result<()> {
    crate::table::write_bytes(&dir.join("index.html"), html.as_bytes())
}
