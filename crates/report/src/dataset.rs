//! Reading back a batch dataset's predictions (`predictions/field_id=<id>/date=<date>/part-*.parquet`)
//! as one [`PlantObservation`] per plant and date, for progress curves.
//!
//! Each part file is read on its own with only the columns needed, so memory is bounded by the
//! largest cube's plants, not by the campaign. (polars' lazy scans would need its `lazy` feature,
//! which roughly doubles the cold build of polars for a reader this simple.)

use std::fs::File;
use std::path::{Path, PathBuf};

use domain::PlantObservation;
use polars::prelude::*;

use crate::error::{Error, Result};

/// Which attribute columns carry the plot and the treatment, and which class is healthy.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetColumns {
    /// Polygon attribute naming the plot; `None`: the whole field is one plot.
    pub plot: Option<String>,
    /// Polygon attribute naming the plot's treatment.
    pub treatment: Option<String>,
    /// Class name of healthy plants (case-insensitive).
    pub healthy_class: String,
}

fn invalid(path: &Path, message: impl Into<String>) -> Error {
    Error::Invalid {
        path: path.into(),
        message: message.into(),
    }
}

/// The `name=value` folders of `dir`, sorted by value.
fn partitions(dir: &Path, name: &str) -> Result<Vec<(String, PathBuf)>> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
        path: dir.into(),
        message: "cannot list the dataset folder".into(),
        source,
    })?;
    let prefix = format!("{name}=");
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if let Some(value) = file_name.strip_prefix(&prefix) {
            if entry.path().is_dir() {
                found.push((value.to_string(), entry.path()));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Every plant of every part file under `dataset/predictions`, in field, date and file order.
pub fn read_dataset_plants(
    dataset: &Path,
    columns: &DatasetColumns,
) -> Result<Vec<PlantObservation>> {
    let predictions = dataset.join("predictions");
    if !predictions.is_dir() {
        return Err(invalid(
            dataset,
            "no predictions/ folder: not a dataset written by `pipeline batch`",
        ));
    }
    let mut plants = Vec::new();
    let mut parts = 0usize;
    for (field_id, field_dir) in partitions(&predictions, "field_id")? {
        for (date, date_dir) in partitions(&field_dir, "date")? {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&date_dir)
                .map_err(|source| Error::Io {
                    path: date_dir.clone(),
                    message: "cannot list the partition".into(),
                    source,
                })?
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.extension().is_some_and(|e| e == "parquet")
                        && !p
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect();
            files.sort();
            for file in files {
                if date == "unknown" {
                    return Err(invalid(
                        &file,
                        "the cube has no scan date (partition date=unknown): give each input a \
                         `date` in the pipeline file",
                    ));
                }
                read_part(&file, &field_id, &date, columns, &mut plants)?;
                parts += 1;
            }
        }
    }
    if parts == 0 {
        return Err(invalid(&predictions, "no prediction files in the dataset"));
    }
    tracing::info!(parts, plants = plants.len(), "dataset read");
    Ok(plants)
}

fn read_part(
    path: &Path,
    field_id: &str,
    date: &str,
    columns: &DatasetColumns,
    out: &mut Vec<PlantObservation>,
) -> Result<()> {
    let table = |source| Error::Table {
        path: path.into(),
        source,
    };
    let file = File::open(path).map_err(|source| Error::Io {
        path: path.into(),
        message: "cannot open prediction file".into(),
        source,
    })?;
    let mut reader = ParquetReader::new(file);
    let schema = reader.schema().map_err(table)?;
    let has = |name: &str| schema.get(name).is_some();
    let mut wanted: Vec<String> = [
        "plant_id",
        "x",
        "y",
        "predicted_class_name",
        "kl_nats",
        "ood",
        "model_id",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for name in &wanted {
        if !has(name) {
            return Err(invalid(
                path,
                format!("no column '{name}': not a predictions table"),
            ));
        }
    }
    if has("severity_pct") {
        wanted.push("severity_pct".into());
    }
    for (what, column) in [("plot", &columns.plot), ("treatment", &columns.treatment)] {
        if let Some(name) = column {
            if !has(name) {
                return Err(invalid(
                    path,
                    format!(
                        "no column '{name}' for the {what} (plots and treatments are polygon \
                         attributes: run the campaign with polygons that carry them)"
                    ),
                ));
            }
            if !wanted.contains(name) {
                wanted.push(name.clone());
            }
        }
    }
    let frame = reader.with_columns(Some(wanted)).finish().map_err(table)?;
    let column = |name: &str, kind: &DataType| -> Result<Column> {
        frame.column(name).and_then(|c| c.cast(kind)).map_err(table)
    };
    let plant_id = column("plant_id", &DataType::UInt32)?;
    let x = column("x", &DataType::Float64)?;
    let y = column("y", &DataType::Float64)?;
    let class = column("predicted_class_name", &DataType::String)?;
    let kl = column("kl_nats", &DataType::Float64)?;
    let ood = column("ood", &DataType::Boolean)?;
    let model = column("model_id", &DataType::String)?;
    let severity = match frame.column("severity_pct") {
        Ok(_) => Some(column("severity_pct", &DataType::Float64)?),
        Err(_) => None,
    };
    let plot = columns
        .plot
        .as_deref()
        .map(|n| column(n, &DataType::String))
        .transpose()?;
    let treatment = columns
        .treatment
        .as_deref()
        .map(|n| column(n, &DataType::String))
        .transpose()?;
    let (plant_id, x, y) = (
        plant_id.u32().map_err(table)?,
        x.f64().map_err(table)?,
        y.f64().map_err(table)?,
    );
    let (class, kl, ood, model) = (
        class.str().map_err(table)?,
        kl.f64().map_err(table)?,
        ood.bool().map_err(table)?,
        model.str().map_err(table)?,
    );
    let severity = severity
        .as_ref()
        .map(|c| c.f64())
        .transpose()
        .map_err(table)?;
    let plot = plot.as_ref().map(|c| c.str()).transpose().map_err(table)?;
    let treatment = treatment
        .as_ref()
        .map(|c| c.str())
        .transpose()
        .map_err(table)?;
    for i in 0..frame.height() {
        let row = |what: &str| invalid(path, format!("row {}: {what} is missing", i + 1));
        let plot_id = match &plot {
            Some(p) => p
                .get(i)
                .ok_or_else(|| row(columns.plot.as_deref().unwrap_or("plot")))?
                .to_string(),
            None => field_id.to_string(),
        };
        out.push(PlantObservation {
            field_id: field_id.to_string(),
            date: date.to_string(),
            plot_id,
            treatment: treatment
                .as_ref()
                .and_then(|t| t.get(i))
                .map(str::to_string),
            plant_id: plant_id.get(i).ok_or_else(|| row("plant_id"))?,
            x: x.get(i),
            y: y.get(i),
            diseased: !class
                .get(i)
                .ok_or_else(|| row("predicted_class_name"))?
                .eq_ignore_ascii_case(&columns.healthy_class),
            severity_pct: severity.as_ref().and_then(|s| s.get(i)),
            kl_nats: kl.get(i).ok_or_else(|| row("kl_nats"))?,
            ood: ood.get(i).unwrap_or(false),
            model_id: model.get(i).ok_or_else(|| row("model_id"))?.to_string(),
        });
    }
    Ok(())
}
