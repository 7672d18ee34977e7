//! `pipeline synth`: the reproducible sample field scans.

use std::path::Path;

use anyhow::{bail, Context, Result};
use domain::Interleave;
use ingest::{Cube, ReadConfig};
use synth::{generate, FieldSpec, SpectralLibrary};

use crate::cli::SynthArgs;

/// The sample fields: field-a to train on, field-b to test on (other seed, size and interleave);
/// lesions-a and lesions-b the same with lesioned plants on larger cells (per-pixel severity).
fn fields() -> Vec<(FieldSpec, Interleave)> {
    let lesions = |field_id: &str, seed: u64, origin_x_m: f64, interleave| {
        (
            FieldSpec {
                field_id: field_id.into(),
                lines: 140,
                samples: 140,
                cell_px: 20,
                seed,
                origin_x_m,
                origin_y_m: 5_350_000.0,
                pixel_size_m: 0.005,
                min_disease_severity: 0.7,
                lesions: true,
                plant_classes: None,
                scan_seed: None,
            },
            interleave,
        )
    };
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
                lesions: false,
                plant_classes: None,
                scan_seed: None,
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
                lesions: false,
                plant_classes: None,
                scan_seed: None,
            },
            Interleave::Bil,
        ),
        lesions("lesions-a", 3, 512_020.0, Interleave::Bil),
        lesions("lesions-b", 4, 512_030.0, Interleave::Bip),
    ]
}

pub fn run(args: SynthArgs) -> Result<()> {
    let library = load_library(&args.library)?;
    let all = fields();
    for wanted in &args.field {
        if wanted != "campaign" && !all.iter().any(|(f, _)| &f.field_id == wanted) {
            bail!(
                "--field {wanted}: unknown field (known: {})",
                all.iter()
                    .map(|(f, _)| f.field_id.as_str())
                    .chain(["campaign"])
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    if !args.out_dir.is_dir() {
        bail!("{}: output folder does not exist", args.out_dir.display());
    }
    if args.field.is_empty() || args.field.iter().any(|f| f == "campaign") {
        super::synth_campaign::write(&library, &args.out_dir)?;
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
        if spec.lesions {
            // Lesion fields: ENVI only (kept small), with the per-pixel truth, a plant-id raster
            // and the per-plant truth table.
            if let Some(truth) = &scene.pixel_truth {
                let path = args
                    .out_dir
                    .join(format!("{}-pixel-truth.img", spec.field_id));
                ingest::write_envi_labels(&path, truth)?;
            }
            write_plant_ids(&args.out_dir, &spec.field_id, &scene)?;
        } else {
            ingest::write_geotiff_cube(&base.with_extension("tif"), &scene.cube)?;
            ingest::write_geotiff_labels(&labels.with_extension("tif"), &scene.labels)?;
        }
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

/// `NAME-plant-ids.tif` (1 + plant index on each labelled pixel) and `NAME-truth.csv` (per plant:
/// id, class, severity as % of its labelled pixels, pixels, centroid).
fn write_plant_ids(dir: &Path, field_id: &str, scene: &synth::Scene) -> Result<()> {
    let n = scene.plants.len();
    let classes = domain::ClassSet::new(
        (1..=n as u32)
            .map(|code| domain::ClassInfo {
                code,
                name: format!("plant {code}"),
            })
            .collect(),
    )?;
    let ids = domain::LabelRaster {
        lines: scene.labels.lines,
        samples: scene.labels.samples,
        codes: scene.plant_ids.clone(),
        classes,
        georeference: scene.labels.georeference.clone(),
    };
    ingest::write_geotiff_labels(&dir.join(format!("{field_id}-plant-ids.tif")), &ids)?;
    let samples = scene.labels.samples;
    let mut sums = vec![(0u64, 0f64, 0f64); n];
    for (i, &id) in scene.plant_ids.iter().enumerate() {
        if id != 0 {
            let s = &mut sums[id as usize - 1];
            s.0 += 1;
            s.1 += (i / samples) as f64;
            s.2 += (i % samples) as f64;
        }
    }
    let mut csv = String::from("plant_id,class,severity_pct,pixels,centroid_row,centroid_col\n");
    for (p, (&(code, _), &severity)) in scene.plants.iter().zip(&scene.severity).enumerate() {
        let (count, rows, cols) = sums[p];
        let name = synth::CLASSES
            .iter()
            .find(|(c, _)| *c == code)
            .map_or("?", |(_, name)| name);
        let mean = |v: f64| {
            if count > 0 {
                v / count as f64
            } else {
                f64::NAN
            }
        };
        csv.push_str(&format!(
            "{},{name},{:.4},{count},{:.3},{:.3}\n",
            p + 1,
            100.0 * severity,
            mean(rows),
            mean(cols)
        ));
    }
    let path = dir.join(format!("{field_id}-truth.csv"));
    let tmp = path.with_extension("csv.tmp");
    std::fs::write(&tmp, csv).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
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
