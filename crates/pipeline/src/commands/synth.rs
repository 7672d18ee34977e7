//! `pipeline synth`: the reproducible sample field scans.

use std::path::Path;

use anyhow::{bail, Context, Result};
use domain::Interleave;
use ingest::{Cube, ReadConfig};
use synth::{generate, FieldSpec, SpectralLibrary};

use crate::cli::SynthArgs;

/// The sample fields: field-a to train on, field-b to test on (other seed, size and interleave).
fn fields() -> Vec<(FieldSpec, Interleave)> {
    vec![
        (
            FieldSpec {
                field_id: "field-a".into(),
                lines: 168,
                samples: 168,
                cell_px: 14,
                seed: 1,
                origin_x_m: 512_000.0,
                origin_y_m: 5_350_000.0,
                pixel_size_m: 0.005,
                min_disease_severity: 0.7,
            },
            Interleave::Bsq,
        ),
        (
            FieldSpec {
                field_id: "field-b".into(),
                lines: 126,
                samples: 140,
                cell_px: 14,
                seed: 2,
                origin_x_m: 512_010.0,
                origin_y_m: 5_350_000.0,
                pixel_size_m: 0.005,
                min_disease_severity: 0.7,
            },
            Interleave::Bil,
        ),
    ]
}

pub fn run(args: SynthArgs) -> Result<()> {
    let library = load_library(&args.library)?;
    let all = fields();
    for wanted in &args.field {
        if !all.iter().any(|(f, _)| &f.field_id == wanted) {
            bail!(
                "--field {wanted}: unknown field (known: {})",
                all.iter()
                    .map(|(f, _)| f.field_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    if !args.out_dir.is_dir() {
        bail!("{}: output folder does not exist", args.out_dir.display());
    }
    for (spec, interleave) in all {
        if !args.field.is_empty() && !args.field.contains(&spec.field_id) {
            continue;
        }
        let scene =
            generate(&library, &spec).with_context(|| format!("generating {}", spec.field_id))?;
        let base = args.out_dir.join(&spec.field_id);
        let labels = args.out_dir.join(format!("{}-labels", spec.field_id));
        ingest::write_envi_cube(&base.with_extension("img"), &scene.cube, interleave)?;
        ingest::write_envi_labels(&labels.with_extension("img"), &scene.labels)?;
        ingest::write_geotiff_cube(&base.with_extension("tif"), &scene.cube)?;
        ingest::write_geotiff_labels(&labels.with_extension("tif"), &scene.labels)?;
        let labelled = scene.labels.codes.iter().filter(|&&c| c != 0).count();
        println!(
            "{}: {} lines x {} samples x {} bands ({}), {} plants, {labelled} labelled pixels",
            spec.field_id,
            spec.lines,
            spec.samples,
            scene.cube.bands(),
            interleave.as_str(),
            scene.plants.len()
        );
    }
    Ok(())
}

/// The library's spectra through our ENVI reader, with class names from `canopy.csv`.
fn load_library(dir: &Path) -> Result<SpectralLibrary> {
    let read_rows = |name: &str| -> Result<(Vec<f64>, Vec<f32>)> {
        let path = dir.join(name);
        let cube = Cube::open(&path, &ReadConfig::default())
            .with_context(|| format!("opening spectral library {}", path.display()))?;
        if cube.samples() != 1 {
            bail!(
                "{}: expected one spectrum per line (1 sample), found {} samples",
                path.display(),
                cube.samples()
            );
        }
        let mut block = Vec::new();
        cube.read_block(0, cube.lines(), &mut block)?;
        // Band sequential over lines: transpose to one spectrum per row.
        let (lines, bands) = (cube.lines(), cube.bands());
        let mut rows = vec![0f32; lines * bands];
        for b in 0..bands {
            for l in 0..lines {
                rows[l * bands + b] = block[b * lines + l];
            }
        }
        Ok((cube.axis().wavelength_nm().to_vec(), rows))
    };
    let (wavelength_nm, canopy) = read_rows("canopy.hdr")?;
    let (soil_wavelength_nm, soil) = read_rows("soil.hdr")?;
    if soil_wavelength_nm != wavelength_nm {
        bail!(
            "{}: soil and canopy spectra are on different wavelengths",
            dir.display()
        );
    }
    let csv_path = dir.join("canopy.csv");
    let csv = std::fs::read_to_string(&csv_path)
        .with_context(|| format!("reading {}", csv_path.display()))?;
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|&h| h == name)
            .with_context(|| format!("{}: no '{name}' column", csv_path.display()))
    };
    let (label_column, severity_column) = (column("label")?, column("severity")?);
    let mut canopy_labels = Vec::new();
    let mut canopy_severity = Vec::new();
    for (i, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        let (Some(label), Some(severity)) = (fields.get(label_column), fields.get(severity_column))
        else {
            bail!("{}: line {} has too few columns", csv_path.display(), i + 2);
        };
        canopy_labels.push(label.to_string());
        canopy_severity.push(severity.parse::<f64>().with_context(|| {
            format!(
                "{}: line {}: severity '{severity}' is not a number",
                csv_path.display(),
                i + 2
            )
        })?);
    }
    if canopy_labels.len() * wavelength_nm.len() != canopy.len() {
        bail!(
            "{}: {} labels for {} spectra",
            csv_path.display(),
            canopy_labels.len(),
            canopy.len() / wavelength_nm.len()
        );
    }
    Ok(SpectralLibrary {
        wavelength_nm,
        canopy,
        canopy_labels,
        canopy_severity,
        soil,
    })
}
