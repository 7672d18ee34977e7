//! `pipeline run`: cube in, one prediction per plant out.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use domain::PredictionTable;
use ingest::Cube;

use super::device;
use crate::cli::RunArgs;
use crate::model_source;
use crate::output::check_writable;

pub fn run(args: RunArgs) -> Result<()> {
    check_writable(&args.out, args.overwrite)?;
    if let Some(path) = &args.plant_spectra {
        check_writable(path, args.overwrite)?;
    }
    let device = device(&args.device)?;
    let read_config = args.read.config();
    let cube = Cube::open(&args.cube, &read_config)
        .with_context(|| format!("opening cube {}", args.cube.display()))?;
    let (model, model_name) = model_source::load(args.model.as_deref(), device)?;
    let resampler = cube
        .axis()
        .resampler_to(&model.card().axis)
        .with_context(|| {
            format!(
                "{}: the cube's bands cannot feed model {}",
                args.cube.display(),
                model_name
            )
        })?;
    let plant_config = args.plants.config();
    let plants = args
        .plants
        .find(&cube)
        .with_context(|| format!("finding plants in {}", args.cube.display()))?;
    if let Some((clipped, values)) = cube.calibration_counts() {
        let message = format!(
            "{clipped} of {values} calibrated values clipped to [0, {}]",
            args.read.clip_max
        );
        if clipped > 0 {
            tracing::warn!("{message}");
        }
        println!("calibration  {message}");
    }
    let bands = model.card().axis.len();
    let mut spectra = Vec::with_capacity(plants.plants.len() * bands);
    for plant in &plants.plants {
        spectra.extend(resampler.apply(&plant.mean_reflectance)?);
    }
    let predictions = {
        let _span = tracing::info_span!("predict", plants = plants.plants.len(), device = %model.device_name()).entered();
        model
            .predict(&spectra, plants.plants.len(), args.z_samples, 0)
            .context("predicting")?
    };
    let field_id = args.field_id.clone().unwrap_or_else(|| {
        args.cube
            .file_stem()
            .map_or_else(|| "field".into(), |s| s.to_string_lossy().into_owned())
    });
    if let Some(path) = &args.plant_spectra {
        write_plant_spectra(path, &field_id, &plants)
            .with_context(|| format!("writing plant spectra {}", path.display()))?;
    }
    let table = PredictionTable {
        field_id: field_id.clone(),
        model_id: model.model_id().to_string(),
        beta: model.card().beta,
        classes: model.card().classes.clone(),
        plants: plants.plants,
        attributes: plants.attributes,
        predictions,
    };
    let settings = serde_json::json!({
        "cube": args.cube.display().to_string(),
        "model": model_name,
        "field_id": field_id,
        "z_samples": args.z_samples,
        "plants": plant_config,
        "polygons": args.plants.polygons.as_ref().map(|p| p.display().to_string()),
        "plant_ids": args.plants.plant_ids.as_ref().map(|p| p.display().to_string()),
        "read": read_config,
        "device": args.device.device,
    });
    report::write_predictions(
        &args.out,
        &table,
        &[
            ("pipeline.settings".into(), settings.to_string()),
            ("pipeline.version".into(), env!("CARGO_PKG_VERSION").into()),
        ],
    )
    .with_context(|| format!("writing predictions {}", args.out.display()))?;
    print_summary(
        &table,
        plants.vegetation_pixels,
        plants.total_pixels,
        &args.out.display().to_string(),
    );
    Ok(())
}

fn print_summary(table: &PredictionTable, vegetation_pixels: u64, total_pixels: u64, out: &str) {
    let mut per_class: BTreeMap<usize, usize> = BTreeMap::new();
    for p in &table.predictions {
        *per_class.entry(p.predicted_index).or_default() += 1;
    }
    let n = table.predictions.len();
    let mean_kl = table.predictions.iter().map(|p| p.kl_nats).sum::<f64>() / n.max(1) as f64;
    println!("field        {}", table.field_id);
    println!(
        "plants       {n} ({:.1}% of pixels are vegetation)",
        100.0 * vegetation_pixels as f64 / total_pixels.max(1) as f64
    );
    for (k, class) in table.classes.iter().enumerate() {
        let count = per_class.get(&k).copied().unwrap_or(0);
        println!(
            "  {:<10} {count:>5} ({:.1}%)",
            class.name,
            100.0 * count as f64 / n.max(1) as f64
        );
    }
    println!("mean KL      {mean_kl:.3} nats");
    println!(
        "OOD flagged  {}",
        table.predictions.iter().filter(|p| p.ood).count()
    );
    println!("model        {} (beta {})", table.model_id, table.beta);
    println!("written      {out}");
}

/// One row per plant: ids, pixel count, mean NDVI, the mean spectrum in columns named by wavelength
/// (nm) and the standard deviation in `std_<wavelength>` (a repeated wavelength gets `#<band>`).
fn write_plant_spectra(
    path: &std::path::Path,
    field_id: &str,
    plants: &domain::PlantSet,
) -> Result<()> {
    use report::{Table, Values};
    let rows = &plants.plants;
    let mut table = Table::default();
    table
        .push(
            "field_id",
            Values::Str(vec![field_id.to_string(); rows.len()]),
        )
        .push(
            "plant_id",
            Values::U64(rows.iter().map(|p| u64::from(p.plant_id)).collect()),
        )
        .push(
            "pixel_count",
            Values::U64(rows.iter().map(|p| p.pixel_count).collect()),
        )
        .push(
            "mean_ndvi",
            Values::OptionalF64(rows.iter().map(|p| p.mean_ndvi).collect()),
        );
    let wavelengths = plants.axis.wavelength_nm();
    let names: Vec<String> = wavelengths
        .iter()
        .enumerate()
        .map(|(b, w)| {
            if wavelengths.iter().filter(|&&x| x == *w).count() > 1 {
                format!("{w}#{}", b + 1)
            } else {
                format!("{w}")
            }
        })
        .collect();
    for (b, name) in names.iter().enumerate() {
        table.push(
            name,
            Values::F64(
                rows.iter()
                    .map(|p| f64::from(p.mean_reflectance[b]))
                    .collect(),
            ),
        );
    }
    for (b, name) in names.iter().enumerate() {
        table.push(
            &format!("std_{name}"),
            Values::F64(
                rows.iter()
                    .map(|p| f64::from(p.std_reflectance[b]))
                    .collect(),
            ),
        );
    }
    report::write_table(
        path,
        &table,
        &[("pipeline.table".into(), "plant spectra".into())],
    )?;
    Ok(())
}
