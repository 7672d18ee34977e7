//! The per-field summary: one row per cube.

use std::path::Path;

use domain::PredictionTable;

use crate::error::Result;
use crate::table::{write_table, Table, Values};

/// What a field looks like at a glance.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSummary {
    pub field_id: String,
    pub scan_date: Option<String>,
    pub cube: String,
    pub plants: u64,
    /// Fraction of the scene's pixels in the vegetation mask.
    pub vegetation_fraction: f64,
    /// (class name, plants called that class), in the model's class order.
    pub per_class: Vec<(String, u64)>,
    /// Percentage of plants not called `healthy`; absent when the model has no `healthy` class or
    /// there are no plants.
    pub incidence_pct: Option<f64>,
    pub kl_mean_nats: Option<f64>,
    pub kl_p50_nats: Option<f64>,
    pub kl_p90_nats: Option<f64>,
    pub kl_p99_nats: Option<f64>,
    pub ood_plants: u64,
    /// Per-plant severity (`run --per-pixel`: % of a plant's scored pixels not called healthy):
    /// mean and percentiles over the plants; absent without per-pixel calls or a healthy class.
    pub severity_mean_pct: Option<f64>,
    pub severity_p50_pct: Option<f64>,
    pub severity_p90_pct: Option<f64>,
    pub model_id: String,
    pub beta: f64,
}

/// Linear-interpolation percentile (numpy's default) of sorted values.
pub fn percentile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = q / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64))
}

impl FieldSummary {
    pub fn of(table: &PredictionTable, vegetation_fraction: f64) -> Self {
        let n = table.predictions.len();
        let per_class: Vec<(String, u64)> = table
            .classes
            .iter()
            .enumerate()
            .map(|(k, c)| {
                let count = table
                    .predictions
                    .iter()
                    .filter(|p| p.predicted_index == k)
                    .count() as u64;
                (c.name.clone(), count)
            })
            .collect();
        let incidence_pct = table
            .classes
            .healthy_index()
            .filter(|_| n > 0)
            .map(|h| 100.0 * (n as u64 - per_class[h].1) as f64 / n as f64);
        let mut kl: Vec<f64> = table.predictions.iter().map(|p| p.kl_nats).collect();
        kl.sort_by(f64::total_cmp);
        let mut severity = table.severities_pct();
        severity.sort_by(f64::total_cmp);
        Self {
            field_id: table.field_id.clone(),
            scan_date: table.scan_date.clone(),
            cube: table.cube.clone(),
            plants: n as u64,
            vegetation_fraction,
            per_class,
            incidence_pct,
            kl_mean_nats: (n > 0).then(|| kl.iter().sum::<f64>() / n as f64),
            kl_p50_nats: percentile_sorted(&kl, 50.0),
            kl_p90_nats: percentile_sorted(&kl, 90.0),
            kl_p99_nats: percentile_sorted(&kl, 99.0),
            ood_plants: table.predictions.iter().filter(|p| p.ood).count() as u64,
            severity_mean_pct: (!severity.is_empty())
                .then(|| severity.iter().sum::<f64>() / severity.len() as f64),
            severity_p50_pct: percentile_sorted(&severity, 50.0),
            severity_p90_pct: percentile_sorted(&severity, 90.0),
            model_id: table.model_id.clone(),
            beta: table.beta,
        }
    }
}

/// Write summaries as Parquet, one row each; `plants_<class>` columns follow the first summary's
/// classes (all must share them).
pub fn write_field_summaries(
    path: &Path,
    summaries: &[FieldSummary],
    metadata: &[(String, String)],
) -> Result<()> {
    write_summary_part(path, summaries, metadata, &[])
}

/// [`write_field_summaries`] without the `omit` columns (a Hive dataset part).
pub fn write_summary_part(
    path: &Path,
    summaries: &[FieldSummary],
    metadata: &[(String, String)],
    omit: &[&str],
) -> Result<()> {
    let mut table = Table::default();
    let strings =
        |f: &dyn Fn(&FieldSummary) -> String| Values::Str(summaries.iter().map(f).collect());
    let optional = |f: &dyn Fn(&FieldSummary) -> Option<f64>| {
        Values::OptionalF64(summaries.iter().map(f).collect())
    };
    table
        .push("field_id", strings(&|s| s.field_id.clone()))
        .push(
            "scan_date",
            Values::OptionalStr(summaries.iter().map(|s| s.scan_date.clone()).collect()),
        )
        .push("cube", strings(&|s| s.cube.clone()))
        .push(
            "plants",
            Values::U64(summaries.iter().map(|s| s.plants).collect()),
        )
        .push(
            "vegetation_fraction",
            Values::F64(summaries.iter().map(|s| s.vegetation_fraction).collect()),
        );
    let classes: Vec<String> = summaries
        .first()
        .map(|s| s.per_class.iter().map(|(c, _)| c.clone()).collect())
        .unwrap_or_default();
    for (k, class) in classes.iter().enumerate() {
        table.push(
            &format!("plants_{class}"),
            Values::U64(
                summaries
                    .iter()
                    .map(|s| s.per_class.get(k).map_or(0, |c| c.1))
                    .collect(),
            ),
        );
    }
    table
        .push("incidence_pct", optional(&|s| s.incidence_pct))
        .push("kl_mean_nats", optional(&|s| s.kl_mean_nats))
        .push("kl_p50_nats", optional(&|s| s.kl_p50_nats))
        .push("kl_p90_nats", optional(&|s| s.kl_p90_nats))
        .push("kl_p99_nats", optional(&|s| s.kl_p99_nats))
        .push(
            "ood_plants",
            Values::U64(summaries.iter().map(|s| s.ood_plants).collect()),
        )
        .push("severity_mean_pct", optional(&|s| s.severity_mean_pct))
        .push("severity_p50_pct", optional(&|s| s.severity_p50_pct))
        .push("severity_p90_pct", optional(&|s| s.severity_p90_pct))
        .push("model_id", strings(&|s| s.model_id.clone()))
        .push(
            "beta",
            Values::F64(summaries.iter().map(|s| s.beta).collect()),
        );
    table
        .columns
        .retain(|(name, _)| !omit.contains(&name.as_str()));
    let mut key_values = vec![("pipeline.table".to_string(), "field summary".to_string())];
    key_values.extend(metadata.iter().cloned());
    write_table(path, &table, &key_values)
}

#[cfg(test)]
mod tests {
    use super::percentile_sorted;

    #[test]
    fn percentiles_interpolate_like_numpy() {
        // numpy.percentile([1, 2, 3, 4], [50, 90, 99]) = 2.5, 3.7, 3.97
        let v = [1.0, 2.0, 3.0, 4.0];
        assert!((percentile_sorted(&v, 50.0).unwrap() - 2.5).abs() < 1e-12);
        assert!((percentile_sorted(&v, 90.0).unwrap() - 3.7).abs() < 1e-12);
        assert!((percentile_sorted(&v, 99.0).unwrap() - 3.97).abs() < 1e-12);
        assert_eq!(percentile_sorted(&[], 50.0), None);
        assert_eq!(percentile_sorted(&[5.0], 99.0), Some(5.0));
    }
}
