//! Labelled samples from pairs of cube and label raster, shared by `train` and `evaluate`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use domain::{ClassInfo, ClassSet, SampleUnit, SpectralAxis, SpectralSamples};
use ingest::{
    labelled_samples, read_label_raster, read_severity_raster, severity_samples, Cube, ReadConfig,
};

use crate::cli::{SamplesArgs, Unit};

pub fn sample_unit(unit: Unit) -> SampleUnit {
    match unit {
        Unit::Plant => SampleUnit::Plant,
        Unit::Pixel => SampleUnit::Pixel,
    }
}

/// What one sample is: `plant` or `pixel` for cubes, `row` for spectral tables.
pub fn unit_name(args: &SamplesArgs, unit: Unit) -> &'static str {
    match (args.spectra.is_empty(), unit) {
        (false, _) => "row",
        (true, Unit::Plant) => "plant",
        (true, Unit::Pixel) => "pixel",
    }
}

/// The files the samples come from, for messages and model cards.
pub fn source_names(args: &SamplesArgs) -> Vec<String> {
    let paths = if args.spectra.is_empty() {
        &args.cube
    } else {
        &args.spectra
    };
    paths.iter().map(|p| p.display().to_string()).collect()
}

/// The files the labels come from.
pub fn label_source_names(args: &SamplesArgs) -> Vec<String> {
    let paths = if !args.spectra.is_empty() {
        &args.spectra
    } else if !args.severity.is_empty() {
        &args.severity
    } else {
        &args.labels
    };
    paths.iter().map(|p| p.display().to_string()).collect()
}

/// Whether the samples carry a continuous target (severity rasters or a target column).
pub fn is_regression(args: &SamplesArgs) -> bool {
    args.target_column.is_some() || !args.severity.is_empty()
}

/// Labelled samples from cubes with label or severity rasters (`unit` applies) or from spectral
/// tables (class labels or a target column).
pub fn collect(args: &SamplesArgs, unit: Unit) -> Result<SpectralSamples> {
    if args.spectra.is_empty() {
        if args.target_column.is_some() {
            bail!("--target-column names a column of --spectra tables; give cubes a --severity raster each");
        }
        if args.severity.is_empty() {
            collect_cubes(&args.cube, &args.labels, false, unit, &args.read.config())
        } else {
            collect_cubes(&args.cube, &args.severity, true, unit, &args.read.config())
        }
    } else {
        match &args.target_column {
            Some(column) => {
                collect_tables(&args.spectra, column, args.group_column.as_deref(), true)
            }
            None => collect_tables(
                &args.spectra,
                &args.label_column,
                args.group_column.as_deref(),
                false,
            ),
        }
    }
}

/// The continuous target of a table's rows: every cell a finite number, else an error naming the
/// file, the column and the row.
fn target_values(path: &std::path::Path, column: &str, cells: &[String]) -> Result<Vec<f64>> {
    cells
        .iter()
        .enumerate()
        .map(|(row, cell)| match cell.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            Ok(_) => bail!(
                "{}: row {} column '{column}': '{cell}' is not a finite number",
                path.display(),
                row + 1
            ),
            Err(_) => bail!(
                "{}: row {} column '{column}': '{cell}' is not a number",
                path.display(),
                row + 1
            ),
        })
        .collect()
}

/// Rows of every table, on the first table's wavelengths. Labels are class names, or integer
/// codes (then named by their code); classes in order of first appearance. With `continuous`,
/// the label column holds a continuous target instead (the one class is named after it).
fn collect_tables(
    paths: &[PathBuf],
    label_column: &str,
    group_column: Option<&str>,
    continuous: bool,
) -> Result<SpectralSamples> {
    let mut tables = Vec::new();
    let mut values = Vec::new();
    for path in paths {
        let mut table = report::read_spectral_table(path, Some(label_column), group_column)
            .with_context(|| format!("reading spectral table {}", path.display()))?;
        let axis = SpectralAxis::new(table.wavelength_nm.clone(), None)
            .with_context(|| format!("{}: band columns", path.display()))?;
        if continuous {
            values.extend(target_values(path, label_column, &table.labels)?);
            table
                .labels
                .iter_mut()
                .for_each(|l| *l = label_column.to_string());
        }
        tables.push((path, axis, table));
    }
    let mut names: Vec<String> = Vec::new();
    for (_, _, table) in &tables {
        for label in &table.labels {
            if !names.contains(label) {
                names.push(label.clone());
            }
        }
    }
    let all_codes = !continuous && names.iter().all(|n| n.parse::<u32>().is_ok_and(|c| c > 0));
    let classes: Vec<ClassInfo> = names
        .iter()
        .enumerate()
        .map(|(i, n)| ClassInfo {
            code: if all_codes {
                n.parse().expect("checked above")
            } else {
                i as u32 + 1
            },
            name: n.clone(),
        })
        .collect();
    let classes =
        ClassSet::new(classes).with_context(|| format!("{}: labels", paths[0].display()))?;
    let axis = tables[0].1.clone();
    let (mut spectra, mut label_codes, mut groups) = (Vec::new(), Vec::new(), Vec::new());
    let mut group_ids: std::collections::HashMap<(usize, String), u32> =
        std::collections::HashMap::new();
    for (t, (path, table_axis, table)) in tables.iter().enumerate() {
        let resampler = table_axis.resampler_to(&axis).with_context(|| {
            format!(
                "{}: bands do not cover those of {}",
                path.display(),
                paths[0].display()
            )
        })?;
        let bands = table_axis.len();
        for (row, label) in table.labels.iter().enumerate() {
            spectra.extend(resampler.apply(&table.spectra[row * bands..(row + 1) * bands])?);
            label_codes.push(
                classes
                    .iter()
                    .find(|c| &c.name == label)
                    .expect("every label is a class")
                    .code,
            );
            let key = match &table.groups {
                Some(g) => (t, g[row].clone()),
                None => (t, format!("row {row}")),
            };
            let next = group_ids.len() as u32 + 1;
            groups.push(*group_ids.entry(key).or_insert(next));
        }
    }
    tracing::info!(
        tables = paths.len(),
        samples = label_codes.len(),
        classes = classes.len(),
        "spectral tables read"
    );
    Ok(SpectralSamples {
        axis,
        classes,
        spectra,
        label_codes,
        groups,
        values: continuous.then_some(values),
    })
}

/// Samples of every (cube, labels) pair, all on the first cube's wavelengths and classes. Group ids
/// are made unique across cubes. With `severity`, the rasters are severity rasters.
fn collect_cubes(
    cubes: &[PathBuf],
    labels: &[PathBuf],
    severity: bool,
    unit: Unit,
    read: &ReadConfig,
) -> Result<SpectralSamples> {
    let flag = if severity { "--severity" } else { "--labels" };
    if cubes.len() != labels.len() {
        bail!(
            "{} --cube but {} {flag}: give one raster per cube, in the same order",
            cubes.len(),
            labels.len()
        );
    }
    let mut all: Option<SpectralSamples> = None;
    for (cube_path, label_path) in cubes.iter().zip(labels) {
        let cube = Cube::open(cube_path, read)
            .with_context(|| format!("opening cube {}", cube_path.display()))?;
        let samples = if severity {
            let (lines, samples, values) = read_severity_raster(label_path)
                .with_context(|| format!("reading severities {}", label_path.display()))?;
            severity_samples(
                &cube,
                (lines, samples, &values),
                label_path,
                sample_unit(unit),
            )
        } else {
            let raster = read_label_raster(label_path)
                .with_context(|| format!("reading labels {}", label_path.display()))?;
            labelled_samples(&cube, &raster, label_path, sample_unit(unit))
        }
        .with_context(|| format!("collecting labelled spectra of {}", cube_path.display()))?;
        tracing::info!(cube = %cube_path.display(), samples = samples.len(), "labelled samples");
        all = Some(match all {
            None => samples,
            Some(mut acc) => {
                if acc.classes != samples.classes {
                    bail!(
                        "{}: classes ({}) differ from those of {} ({})",
                        label_path.display(),
                        samples.classes.names().join(", "),
                        labels[0].display(),
                        acc.classes.names().join(", ")
                    );
                }
                let resampler = samples.axis.resampler_to(&acc.axis).with_context(|| {
                    format!(
                        "{}: bands do not cover those of {}",
                        cube_path.display(),
                        cubes[0].display()
                    )
                })?;
                let group_offset = acc.groups.iter().copied().max().unwrap_or(0) + 1;
                for i in 0..samples.len() {
                    acc.spectra.extend(resampler.apply(samples.spectrum(i))?);
                }
                acc.label_codes.extend(&samples.label_codes);
                if let (Some(all), Some(more)) = (&mut acc.values, &samples.values) {
                    all.extend(more);
                }
                acc.groups
                    .extend(samples.groups.iter().map(|g| g + group_offset));
                acc
            }
        });
    }
    all.context("no cube given")
}
