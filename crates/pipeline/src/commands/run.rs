//! `pipeline run`: cube in, one prediction per plant out.

use std::f64::consts::LN_2;
use std::path::Path;

use anyhow::{bail, Context, Result};
use domain::{LabelRaster, PlantSet, PredictionTable};
use ingest::Cube;
use model::VibModel;

use super::device;
use crate::cli::RunArgs;
use crate::model_source;
use crate::output::check_writable;

/// Longest side of quicklooks and report images, in pixels.
const PICTURE_MAX_PX: usize = 2048;

pub fn run(args: RunArgs) -> Result<()> {
    for path in [
        Some(&args.out),
        args.plant_spectra.as_ref(),
        args.summary.as_ref(),
        args.class_map.as_ref(),
        args.kl_map.as_ref(),
        args.quicklook.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        check_writable(path, args.overwrite)?;
    }
    if let Some(dir) = &args.report {
        check_report_dir(dir, args.overwrite)?;
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
    let georeference = cube.georeference().cloned();
    let table = PredictionTable {
        field_id: field_id.clone(),
        cube: args.cube.display().to_string(),
        scan_date: cube.acquisition_date(),
        crs_wkt: georeference
            .as_ref()
            .map(|g| g.crs_wkt.clone())
            .filter(|w| !w.is_empty()),
        epsg: georeference.as_ref().and_then(|g| g.epsg),
        model_id: model.model_id().to_string(),
        beta: model.card().beta,
        classes: model.card().classes.clone(),
        plants: plants.plants.clone(),
        attributes: plants.attributes.clone(),
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
    let metadata = [
        ("pipeline.settings".to_string(), settings.to_string()),
        (
            "pipeline.version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
    ];
    let vegetation_fraction = plants.vegetation_pixels as f64 / plants.total_pixels.max(1) as f64;
    let summary = report::FieldSummary::of(&table, vegetation_fraction);
    let maps = Maps {
        cube: &cube,
        plants: &plants,
        table: &table,
    };

    report::write_predictions(&args.out, &table, &metadata)
        .with_context(|| format!("writing predictions {}", args.out.display()))?;
    if let Some(path) = &args.plant_spectra {
        write_plant_spectra(path, &field_id, &plants)
            .with_context(|| format!("writing plant spectra {}", path.display()))?;
    }
    if let Some(path) = &args.summary {
        report::write_field_summaries(path, std::slice::from_ref(&summary), &metadata)
            .with_context(|| format!("writing the field summary {}", path.display()))?;
    }
    if let Some(path) = &args.class_map {
        maps.write_class_map(path)?;
    }
    if let Some(path) = &args.kl_map {
        maps.write_kl_map(path)?;
    }
    if let Some(path) = &args.quicklook {
        maps.write_quicklook(path)?;
    }
    if let Some(dir) = &args.report {
        write_report(
            dir,
            &maps,
            &summary,
            &model,
            &model_name,
            &metadata,
            args.overwrite,
        )
        .with_context(|| format!("writing the report {}", dir.display()))?;
    }
    print_summary(&table, &summary, &args.out.display().to_string());
    if let Some(dir) = &args.report {
        println!("report       {}", dir.join("index.html").display());
    }
    Ok(())
}

/// The report folder must not exist (unless `overwrite`) and its parent must.
fn check_report_dir(dir: &Path, overwrite: bool) -> Result<()> {
    if dir.exists() && !overwrite {
        bail!(
            "{}: report folder exists; pass --overwrite to replace it",
            dir.display()
        );
    }
    if dir.exists() && !dir.is_dir() {
        bail!("{}: exists and is not a folder", dir.display());
    }
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        bail!(
            "{}: folder {} does not exist",
            dir.display(),
            parent.display()
        );
    }
    Ok(())
}

/// A cube's plants and their calls, drawn.
struct Maps<'a> {
    cube: &'a Cube,
    plants: &'a PlantSet,
    table: &'a PredictionTable,
}

impl Maps<'_> {
    fn class_index(&self, plant: usize) -> usize {
        self.table.predictions[plant].predicted_index
    }

    fn write_class_map(&self, path: &Path) -> Result<()> {
        let classes = &self.table.classes;
        let codes = self
            .plants
            .pixel_plants
            .iter()
            .map(|&p| match p {
                0 => 0,
                p => classes
                    .get(self.class_index(p as usize - 1))
                    .map_or(0, |c| c.code),
            })
            .collect();
        let labels = LabelRaster {
            lines: self.plants.lines,
            samples: self.plants.samples,
            codes,
            classes: classes.clone(),
            georeference: self.cube.georeference().cloned(),
        };
        let colours: Vec<[u8; 3]> = (0..classes.len()).map(|k| classes.colour(k)).collect();
        ingest::write_class_map(path, &labels, &colours)
            .with_context(|| format!("writing the class map {}", path.display()))
    }

    fn write_kl_map(&self, path: &Path) -> Result<()> {
        let values: Vec<f32> = self
            .plants
            .pixel_plants
            .iter()
            .map(|&p| match p {
                0 => f32::NAN,
                p => self.table.predictions[p as usize - 1].kl_nats as f32,
            })
            .collect();
        ingest::write_float_map(
            path,
            (self.plants.lines, self.plants.samples),
            &values,
            self.cube.georeference(),
            "KL(q(z|x) || N(0, I)) of the plant, nats",
        )
        .with_context(|| format!("writing the KL map {}", path.display()))
    }

    fn write_quicklook(&self, path: &Path) -> Result<()> {
        let step = self.cube.quicklook_step(PICTURE_MAX_PX);
        let (width, height, mut rgb) = self
            .cube
            .quicklook_rgb(PICTURE_MAX_PX)
            .with_context(|| format!("quicklook of {}", self.cube.data_path().display()))?;
        let classes = &self.table.classes;
        report::draw_plant_outlines(
            &mut rgb,
            (width, height, step),
            self.plants,
            |p| classes.colour(self.class_index(p)),
            |p| self.table.predictions[p].ood,
        );
        report::write_png_rgb(path, width, height, &rgb)
            .with_context(|| format!("writing the quicklook {}", path.display()))
    }

    fn write_class_map_png(&self, path: &Path) -> Result<()> {
        let step = self.cube.quicklook_step(PICTURE_MAX_PX);
        let classes = &self.table.classes;
        let (width, height, rgb) =
            report::class_map_rgb(self.plants, step, |p| classes.colour(self.class_index(p)));
        report::write_png_rgb(path, width, height, &rgb)
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// The report folder, built under a temporary name and renamed into place when complete.
fn write_report(
    dir: &Path,
    maps: &Maps<'_>,
    summary: &report::FieldSummary,
    model: &VibModel,
    model_name: &str,
    metadata: &[(String, String)],
    overwrite: bool,
) -> Result<()> {
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| -> Result<()> {
        std::fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        report::write_field_summaries(
            &tmp.join("summary.parquet"),
            std::slice::from_ref(summary),
            metadata,
        )?;
        maps.write_class_map(&tmp.join("class-map.tif"))?;
        maps.write_kl_map(&tmp.join("kl-map.tif"))?;
        maps.write_class_map_png(&tmp.join("class-map.png"))?;
        let quicklook = match maps.write_quicklook(&tmp.join("quicklook.png")) {
            Ok(()) => Some("quicklook.png".to_string()),
            Err(e) => {
                tracing::warn!("no quicklook in the report: {e:#}");
                None
            }
        };
        let card = model.card();
        report::write_kl_histogram(&tmp.join("kl-histogram.svg"), maps.table, card.ood.kl_nats)?;
        report::write_probability_distributions(&tmp.join("probabilities.svg"), maps.table)?;
        let information_plane = match &card.sweep {
            Some(records) if !records.is_empty() => {
                let points: Vec<report::SweepPoint> = records
                    .iter()
                    .map(|r| report::SweepPoint {
                        beta: r.beta,
                        rate_bits: r.train_rate_nats / LN_2,
                        relevance_bits: r.train_relevance_nats / LN_2,
                        train_accuracy: r.train_accuracy,
                        validation_accuracy: r.validation_accuracy,
                        validation_rate_bits: r.validation_rate_nats.map(|v| v / LN_2),
                        validation_relevance_bits: r.validation_relevance_nats.map(|v| v / LN_2),
                    })
                    .collect();
                report::write_sweep_plots(&tmp, &points)?;
                Some("information-plane.svg".to_string())
            }
            _ => None,
        };
        let images = report::ReportImages {
            quicklook,
            class_map: Some("class-map.png".into()),
            kl_histogram: "kl-histogram.svg".into(),
            probabilities: "probabilities.svg".into(),
            information_plane,
        };
        let html = report::report_html(
            summary,
            maps.table,
            &model_report(model, model_name)?,
            &images,
            env!("CARGO_PKG_VERSION"),
        );
        report::write_report_html(&tmp, &html)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if dir.exists() {
        if !overwrite {
            let _ = std::fs::remove_dir_all(&tmp);
            bail!(
                "{}: report folder appeared meanwhile; not replaced",
                dir.display()
            );
        }
        let old = dir.with_file_name(format!(".{name}.old-{}", std::process::id()));
        std::fs::rename(dir, &old)
            .with_context(|| format!("moving the old {} aside", dir.display()))?;
        std::fs::rename(&tmp, dir).with_context(|| format!("renaming into {}", dir.display()))?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(&tmp, dir).with_context(|| format!("renaming into {}", dir.display()))?;
    }
    Ok(())
}

/// The model card, flattened for the report.
fn model_report(model: &VibModel, model_name: &str) -> Result<report::ModelReport> {
    let card = model.card();
    let t = &card.training;
    let a = &card.architecture;
    let pct = |v: f64| format!("{:.1}%", 100.0 * v);
    let mut facts = vec![
        (
            "network".to_string(),
            format!(
                "{:?} encoder, hidden {:?}, latent {}{}",
                a.encoder,
                a.hidden_dims,
                a.latent_dim,
                if a.deterministic {
                    ", deterministic baseline"
                } else {
                    ""
                }
            ),
        ),
        ("wavelengths".to_string(), {
            let (lo, hi) = card.axis.range_nm();
            format!("{} bands, {lo:.0}-{hi:.0} nm", card.axis.len())
        }),
        ("classes".to_string(), card.classes.names().join(", ")),
        (
            "trained on".to_string(),
            format!("{} ({} units)", t.sources.join(", "), t.unit),
        ),
        (
            "epochs".to_string(),
            format!("{} run, best {}", t.epochs_run, t.best_epoch),
        ),
        ("training accuracy".to_string(), pct(t.train.accuracy)),
        (
            "training rate (KL)".to_string(),
            format!("{:.2} nats", t.train.mean_kl_nats),
        ),
        (
            "training H(Y) - CE".to_string(),
            format!(
                "{:.3} nats",
                t.label_entropy_nats - t.train.cross_entropy_nats
            ),
        ),
    ];
    if let Some(v) = &t.validation {
        facts.extend([
            (
                "validation accuracy".to_string(),
                format!("{} ({} samples)", pct(v.accuracy), v.samples),
            ),
            (
                "validation NLL".to_string(),
                format!("{:.3} nats", v.negative_log_likelihood_nats),
            ),
            (
                "validation ECE".to_string(),
                format!("{:.3}", v.expected_calibration_error),
            ),
            (
                "validation rate (KL)".to_string(),
                format!("{:.2} nats", v.mean_kl_nats),
            ),
        ]);
    }
    facts.push((
        "OOD thresholds".to_string(),
        format!(
            "KL {:.2} nats, entropy {:.3} nats ({}th percentile of {})",
            card.ood.kl_nats, card.ood.entropy_nats, card.ood.percentile, card.ood.calibrated_on
        ),
    ));
    Ok(report::ModelReport {
        name: model_name.to_string(),
        model_id: model.model_id().to_string(),
        beta: card.beta,
        facts,
        card_json: serde_json::to_string_pretty(card).context("model card as JSON")?,
    })
}

fn print_summary(table: &PredictionTable, summary: &report::FieldSummary, out: &str) {
    println!("field        {}", table.field_id);
    println!(
        "plants       {} ({:.1}% of pixels are vegetation)",
        summary.plants,
        100.0 * summary.vegetation_fraction
    );
    for (class, count) in &summary.per_class {
        println!(
            "  {:<10} {count:>5} ({:.1}%)",
            class,
            100.0 * *count as f64 / summary.plants.max(1) as f64
        );
    }
    if let Some(incidence) = summary.incidence_pct {
        println!("incidence    {incidence:.1}% of plants not healthy");
    }
    println!(
        "mean KL      {:.3} nats",
        summary.kl_mean_nats.unwrap_or(f64::NAN)
    );
    println!("OOD flagged  {}", summary.ood_plants);
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
