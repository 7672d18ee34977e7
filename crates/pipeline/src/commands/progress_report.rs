//! `pipeline progress --report DIR`: the campaign report's content, gathered from the progress
//! tables and the dataset's manifests and failure records.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use ::progress::{AudpcRow, ProgressRow, TreatmentRow};
use report::{CampaignReport, ProgressCurve, ScanLink, TextTable};

/// Mean of `value` over the rows of each group, per day since the first scan.
fn curves(
    rows: &[ProgressRow],
    group: impl Fn(&ProgressRow) -> String,
    value: impl Fn(&ProgressRow) -> Option<f64>,
) -> Vec<ProgressCurve> {
    let mut sums: BTreeMap<String, BTreeMap<i64, (f64, usize)>> = BTreeMap::new();
    for r in rows {
        if let Some(v) = value(r) {
            let s = sums
                .entry(group(r))
                .or_default()
                .entry(r.days_since_first)
                .or_insert((0.0, 0));
            s.0 += v;
            s.1 += 1;
        }
    }
    sums.into_iter()
        .map(|(label, days)| ProgressCurve {
            label,
            points: days
                .into_iter()
                .map(|(d, (sum, n))| (d as f64, sum / n as f64))
                .collect(),
        })
        .collect()
}

/// `to` relative to the folder `from` (both made absolute), for links inside the report.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let absolute = |p: &Path| -> Vec<std::ffi::OsString> {
        std::path::absolute(p)
            .unwrap_or_else(|_| p.to_path_buf())
            .components()
            .filter(|c| !matches!(c, Component::CurDir))
            .map(|c| c.as_os_str().to_os_string())
            .collect()
    };
    let (from, to) = (absolute(from), absolute(to));
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c);
    }
    out
}

/// The scans (field, date) with their plants and incidence, linked to their field reports.
fn scans(progress: &[ProgressRow], dataset: &Path, report_dir: &Path) -> Vec<ScanLink> {
    // (field, date) -> key of the cube, from the manifests.
    let mut keys: BTreeMap<(String, String), String> = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(dataset.join("manifests")) {
        for entry in entries.flatten() {
            let Ok(text) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            let Ok(manifest) = serde_json::from_str::<serde_json::Value>(&text) else {
                continue;
            };
            if let (Some(key), Some(field), Some(date)) = (
                manifest["key"].as_str(),
                manifest["field_id"].as_str(),
                manifest["date"].as_str(),
            ) {
                keys.insert((field.into(), date.into()), key.into());
            }
        }
    }
    let mut totals: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
    for r in progress {
        let t = totals
            .entry((r.field_id.clone(), r.date.clone()))
            .or_insert((0, 0));
        t.0 += r.plants;
        t.1 += r.diseased_plants;
    }
    totals
        .into_iter()
        .map(|((field_id, date), (plants, diseased))| {
            let report_href = keys
                .get(&(field_id.clone(), date.clone()))
                .map(|key| dataset.join("cubes").join(key).join("index.html"))
                .filter(|p| p.is_file())
                .map(|p| relative(report_dir, &p).display().to_string());
            ScanLink {
                field_id,
                date,
                plants,
                incidence_pct: 100.0 * diseased as f64 / plants.max(1) as f64,
                report_href,
            }
        })
        .collect()
}

/// The dataset's `failures/*.json` records (written by `batch` for cubes that failed).
fn failures(dataset: &Path) -> Vec<[String; 4]> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dataset.join("failures")) else {
        return out;
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let field = |k: &str| v[k].as_str().unwrap_or("-").to_string();
        out.push([
            field("cube"),
            field("field_id"),
            field("date"),
            field("error"),
        ]);
    }
    out
}

fn number(v: Option<f64>, decimals: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.decimals$}"))
}

/// Everything the campaign report shows.
#[allow(clippy::too_many_arguments)]
pub(super) fn content(
    dataset: &Path,
    report_dir: &Path,
    progress: &[ProgressRow],
    audpc: &[AudpcRow],
    treatments: Option<&(Vec<TreatmentRow>, Option<Vec<TreatmentRow>>)>,
    control: Option<&str>,
    facts: Vec<(String, String)>,
) -> CampaignReport {
    let by_treatment = treatments.is_some();
    let group = |r: &ProgressRow| {
        if by_treatment {
            r.treatment.clone().unwrap_or_else(|| "-".into())
        } else {
            r.field_id.clone()
        }
    };
    let audpc_table = TextTable {
        header: [
            "field",
            "plot",
            "treatment",
            "dates",
            "days",
            "AUDPC incidence (%-days)",
            "relative",
            "AUDPC severity (%-days)",
            "relative",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        rows: audpc
            .iter()
            .map(|r| {
                vec![
                    r.field_id.clone(),
                    r.plot_id.clone(),
                    r.treatment.clone().unwrap_or_else(|| "-".into()),
                    r.dates.to_string(),
                    r.duration_days.to_string(),
                    format!("{:.1}", r.audpc_incidence),
                    number(r.relative_audpc_incidence, 3),
                    number(r.audpc_severity, 1),
                    number(r.relative_audpc_severity, 3),
                ]
            })
            .collect(),
    };
    let treatment_table = TextTable {
        header: [
            "treatment",
            "plots",
            "mean AUDPC incidence",
            "95% interval",
            "Welch t",
            "df",
            "p (two-sided)",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        rows: treatments
            .map(|(incidence, _)| {
                incidence
                    .iter()
                    .map(|r| {
                        vec![
                            r.treatment.clone(),
                            r.plots.to_string(),
                            format!("{:.1}", r.mean),
                            r.ci95
                                .map_or("-".into(), |(lo, hi)| format!("{lo:.1} to {hi:.1}")),
                            number(r.versus_control.map(|w| w.t), 3),
                            number(r.versus_control.map(|w| w.df), 2),
                            number(r.versus_control.map(|w| w.p_value), 4),
                        ]
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };
    CampaignReport {
        title: "Campaign report".into(),
        dataset: dataset.display().to_string(),
        facts,
        incidence_curves: curves(progress, group, |r| Some(r.incidence_pct)),
        severity_curves: curves(progress, group, |r| r.severity_mean_pct),
        audpc: audpc_table,
        treatments: treatment_table,
        treatment_note: match control {
            Some(c) => format!(
                "Each treatment's plots against the control '{c}' by Welch's t-test (unequal \
                 variances) on their AUDPC of incidence; the interval is the Student t interval \
                 of the mean over plots."
            ),
            None => "No control given (--control): intervals only.".into(),
        },
        scans: scans(progress, dataset, report_dir),
        failures: failures(dataset),
        version: env!("CARGO_PKG_VERSION").into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_links() {
        assert_eq!(
            relative(
                Path::new("/a/b/report"),
                Path::new("/a/data/cubes/k/index.html")
            ),
            PathBuf::from("../../data/cubes/k/index.html")
        );
        assert_eq!(
            relative(Path::new("/a"), Path::new("/a/x.html")),
            PathBuf::from("x.html")
        );
    }
}
