//! The per-plant predictions table, one Parquet row per plant.

use std::path::Path;

use domain::{AttributeType, AttributeValue, PredictionTable};
use polars::prelude::*;

use crate::error::{Error, Result};
use crate::table::write_frame;

/// Schema version written to the file's key-value metadata as `pipeline.schema_version`.
pub const PREDICTIONS_SCHEMA_VERSION: &str = "3";

/// Column name of a class's probability: `prob_<class name>`.
pub fn probability_column(class_name: &str) -> String {
    format!("prob_{class_name}")
}

fn build_frame(table: &PredictionTable, path: &Path) -> Result<DataFrame> {
    let n = table.plants.len();
    if table.predictions.len() != n {
        return Err(Error::Invalid {
            path: path.into(),
            message: format!("{} predictions for {n} plants", table.predictions.len()),
        });
    }
    let plants = &table.plants;
    let predictions = &table.predictions;
    let class_of = |i: usize| {
        table
            .classes
            .get(predictions[i].predicted_index)
            .expect("predicted index is a class index")
    };
    // Second-best class and the probability margin to it.
    let second: Vec<(usize, f32)> = predictions
        .iter()
        .map(|p| {
            let best = p.probabilities[p.predicted_index];
            p.probabilities
                .iter()
                .enumerate()
                .filter(|(k, _)| *k != p.predicted_index)
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or((p.predicted_index, 0.0), |(k, &q)| (k, best - q))
        })
        .collect();
    let mut columns = vec![
        Column::new("field_id".into(), vec![table.field_id.as_str(); n]),
        Column::new("scan_date".into(), vec![table.scan_date.as_deref(); n]),
        Column::new("cube".into(), vec![table.cube.as_str(); n]),
        Column::new(
            "plant_id".into(),
            plants.iter().map(|p| p.plant_id).collect::<Vec<u32>>(),
        ),
        Column::new(
            "pixel_count".into(),
            plants.iter().map(|p| p.pixel_count).collect::<Vec<u64>>(),
        ),
        Column::new(
            "centroid_row".into(),
            plants.iter().map(|p| p.centroid_row).collect::<Vec<f64>>(),
        ),
        Column::new(
            "centroid_col".into(),
            plants.iter().map(|p| p.centroid_col).collect::<Vec<f64>>(),
        ),
        Column::new(
            "x".into(),
            plants
                .iter()
                .map(|p| p.centroid_x)
                .collect::<Vec<Option<f64>>>(),
        ),
        Column::new(
            "y".into(),
            plants
                .iter()
                .map(|p| p.centroid_y)
                .collect::<Vec<Option<f64>>>(),
        ),
        Column::new(
            "mean_ndvi".into(),
            plants
                .iter()
                .map(|p| p.mean_ndvi)
                .collect::<Vec<Option<f64>>>(),
        ),
        Column::new(
            "bbox_row_min".into(),
            plants.iter().map(|p| p.bbox.row_min).collect::<Vec<u32>>(),
        ),
        Column::new(
            "bbox_row_max".into(),
            plants.iter().map(|p| p.bbox.row_max).collect::<Vec<u32>>(),
        ),
        Column::new(
            "bbox_col_min".into(),
            plants.iter().map(|p| p.bbox.col_min).collect::<Vec<u32>>(),
        ),
        Column::new(
            "bbox_col_max".into(),
            plants.iter().map(|p| p.bbox.col_max).collect::<Vec<u32>>(),
        ),
        Column::new(
            "predicted_label".into(),
            (0..n).map(|i| class_of(i).code).collect::<Vec<u32>>(),
        ),
        Column::new(
            "predicted_class_name".into(),
            (0..n)
                .map(|i| class_of(i).name.clone())
                .collect::<Vec<String>>(),
        ),
    ];
    for (k, class) in table.classes.iter().enumerate() {
        columns.push(Column::new(
            probability_column(&class.name).into(),
            predictions
                .iter()
                .map(|p| p.probabilities[k])
                .collect::<Vec<f32>>(),
        ));
    }
    columns.extend([
        Column::new(
            "second_class_name".into(),
            second
                .iter()
                .map(|&(k, _)| {
                    table
                        .classes
                        .get(k)
                        .map_or(String::new(), |c| c.name.clone())
                })
                .collect::<Vec<String>>(),
        ),
        Column::new(
            "margin".into(),
            second.iter().map(|&(_, m)| m).collect::<Vec<f32>>(),
        ),
        Column::new(
            "entropy_nats".into(),
            predictions
                .iter()
                .map(|p| p.entropy_nats)
                .collect::<Vec<f64>>(),
        ),
        Column::new(
            "kl_nats".into(),
            predictions.iter().map(|p| p.kl_nats).collect::<Vec<f64>>(),
        ),
        Column::new(
            "kl_bits".into(),
            predictions
                .iter()
                .map(|p| p.kl_nats / std::f64::consts::LN_2)
                .collect::<Vec<f64>>(),
        ),
        Column::new(
            "ood".into(),
            predictions.iter().map(|p| p.ood).collect::<Vec<bool>>(),
        ),
        Column::new("model_id".into(), vec![table.model_id.as_str(); n]),
        Column::new("beta".into(), vec![table.beta; n]),
    ]);
    // Severity (null without per-pixel calls or a healthy class), then the per-pixel counts.
    let healthy = table.classes.healthy_index();
    let pixels = table.pixels.as_deref();
    if pixels.is_some_and(|p| p.len() != n) {
        return Err(Error::Invalid {
            path: path.into(),
            message: format!(
                "pixel counts for {} plants, {n} plants",
                pixels.map_or(0, <[_]>::len)
            ),
        });
    }
    columns.push(Column::new(
        "severity_pct".into(),
        (0..n)
            .map(|i| {
                let (p, h) = (pixels?, healthy?);
                p[i].severity_pct(h)
            })
            .collect::<Vec<Option<f64>>>(),
    ));
    if let Some(pixels) = pixels {
        columns.push(Column::new(
            "scored_pixels".into(),
            pixels.iter().map(|p| p.scored).collect::<Vec<u64>>(),
        ));
        for (k, class) in table.classes.iter().enumerate() {
            columns.push(Column::new(
                format!("pixels_{}", class.name).into(),
                pixels
                    .iter()
                    .map(|p| p.per_class.get(k).copied().unwrap_or(0))
                    .collect::<Vec<u64>>(),
            ));
        }
        columns.extend([
            Column::new(
                "pixel_vote_class_name".into(),
                pixels
                    .iter()
                    .map(|p| {
                        p.vote()
                            .and_then(|k| table.classes.get(k))
                            .map(|c| c.name.clone())
                    })
                    .collect::<Vec<Option<String>>>(),
            ),
            Column::new(
                "ood_pixels_pct".into(),
                pixels
                    .iter()
                    .map(|p| p.ood_pct())
                    .collect::<Vec<Option<f64>>>(),
            ),
            Column::new(
                "pixel_kl_mean_nats".into(),
                pixels
                    .iter()
                    .map(|p| p.kl_mean_nats())
                    .collect::<Vec<Option<f64>>>(),
            ),
        ]);
    }
    // A regression model's predictions (`run --severity-model`): predicted_<target> and its spread.
    if let Some((target, values)) = &table.values {
        if values.len() != n {
            return Err(Error::Invalid {
                path: path.into(),
                message: format!("{} {target} predictions, {n} plants", values.len()),
            });
        }
        let column = |suffix: &str, f: fn(&domain::ValuePrediction) -> f64| {
            Column::new(
                format!("predicted_{target}{suffix}").into(),
                values.iter().map(f).collect::<Vec<f64>>(),
            )
        };
        columns.extend([
            column("", |p| p.mean),
            column("_sd", |p| p.sd),
            column("_lower", |p| p.lower),
            column("_upper", |p| p.upper),
            column("_kl_nats", |p| p.kl_nats),
            Column::new(
                format!("predicted_{target}_ood").into(),
                values.iter().map(|p| p.ood).collect::<Vec<bool>>(),
            ),
        ]);
    }
    for (a, (name, kind)) in table.attributes.iter().enumerate() {
        // A polygon field named like a built-in column (x, y, plant_id, ...) is kept as polygon_<name>.
        let name = if columns.iter().any(|c| c.name().as_str() == name) {
            format!("polygon_{name}")
        } else {
            name.clone()
        };
        let name = name.as_str();
        let value = |i: usize| plants[i].attributes.get(a).unwrap_or(&AttributeValue::Null);
        let column = match kind {
            AttributeType::Integer => Column::new(
                name.into(),
                (0..n)
                    .map(|i| match value(i) {
                        AttributeValue::Integer(v) => Some(*v),
                        _ => None,
                    })
                    .collect::<Vec<Option<i64>>>(),
            ),
            AttributeType::Real => Column::new(
                name.into(),
                (0..n)
                    .map(|i| match value(i) {
                        AttributeValue::Real(v) => Some(*v),
                        AttributeValue::Integer(v) => Some(*v as f64),
                        _ => None,
                    })
                    .collect::<Vec<Option<f64>>>(),
            ),
            AttributeType::Text => Column::new(
                name.into(),
                (0..n)
                    .map(|i| match value(i) {
                        AttributeValue::Text(v) => Some(v.clone()),
                        AttributeValue::Integer(v) => Some(v.to_string()),
                        AttributeValue::Real(v) => Some(v.to_string()),
                        AttributeValue::Null => None,
                    })
                    .collect::<Vec<Option<String>>>(),
            ),
        };
        columns.push(column);
    }
    DataFrame::new(n, columns).map_err(|source| Error::Table {
        path: path.into(),
        source,
    })
}

/// Write the table as Parquet (zstd, statistics on) at `path`, through a temporary file renamed
/// into place. `metadata` is added to the file's key-value metadata.
pub fn write_predictions(
    path: &Path,
    table: &PredictionTable,
    metadata: &[(String, String)],
) -> Result<()> {
    write_prediction_part(path, table, metadata, &[])
}

/// [`write_predictions`] without the `omit` columns: a part of a Hive-partitioned dataset, whose
/// partition columns (e.g. `field_id`) come from its folder names instead.
pub fn write_prediction_part(
    path: &Path,
    table: &PredictionTable,
    metadata: &[(String, String)],
    omit: &[&str],
) -> Result<()> {
    let mut frame = build_frame(table, path)?;
    for name in omit {
        frame = frame.drop(name).map_err(|source| Error::Table {
            path: path.into(),
            source,
        })?;
    }
    let mut key_values = vec![(
        "pipeline.schema_version".to_string(),
        PREDICTIONS_SCHEMA_VERSION.to_string(),
    )];
    if let Some(wkt) = &table.crs_wkt {
        key_values.push(("pipeline.crs_wkt".into(), wkt.clone()));
    }
    if let Some(epsg) = table.epsg {
        key_values.push(("pipeline.crs_epsg".into(), epsg.to_string()));
    }
    key_values.extend(metadata.iter().cloned());
    write_frame(path, &mut frame, key_values)
}
