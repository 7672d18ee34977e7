//! `pipeline run`: cube in, one prediction per plant out.

use std::f64::consts::LN_2;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use domain::{LabelRaster, PlantSet, PredictionTable};
use ingest::Cube;
use model::VibModel;

use super::device;
use crate::cli::RunArgs;
use crate::model_source;
use crate::output::{check_writable, check_writable_dir};

/// Longest side of quicklooks and report images, in pixels.
const PICTURE_MAX_PX: usize = 2048;

/// How a cube's plants are found.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum PlantSource {
    /// Connected components of the vegetation mask.
    Components(ingest::PlantConfig),
    /// One plant per polygon (vegetation pixels inside it).
    Polygons(ingest::PlantConfig, PathBuf),
    /// A plant-id raster.
    PlantIds(PathBuf),
}

/// One cube to analyse, with everything that decides the result.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct CubeJob {
    pub cube: PathBuf,
    /// Field id; the cube's file stem when absent.
    pub field_id: Option<String>,
    /// Scan date (YYYY-MM-DD) overriding the cube's own acquisition date.
    pub date: Option<String>,
    pub read: ingest::ReadConfig,
    pub plants: PlantSource,
    pub z_samples: usize,
    /// Classify every scored pixel of every plant too (`--per-pixel`).
    pub pixels: Option<super::pixels::PixelJob>,
}

impl CubeJob {
    pub fn field_id(&self) -> String {
        self.field_id.clone().unwrap_or_else(|| {
            self.cube
                .file_stem()
                .map_or_else(|| "field".into(), |s| s.to_string_lossy().into_owned())
        })
    }
}

/// A cube analysed: its plants, their calls and the field summary.
pub(crate) struct Analysed {
    pub cube: Cube,
    pub plants: PlantSet,
    pub table: PredictionTable,
    /// The per-pixel calls (`--per-pixel`).
    pub pixel_calls: Option<domain::PixelCalls>,
    pub summary: report::FieldSummary,
    pub metadata: Vec<(String, String)>,
    /// Seconds per stage: open, plants, predict.
    pub stage_seconds: Vec<(&'static str, f64)>,
}

impl Analysed {
    pub fn maps(&self) -> Maps<'_> {
        Maps {
            cube: &self.cube,
            plants: &self.plants,
            table: &self.table,
            pixels: self.pixel_calls.as_ref(),
        }
    }
}

/// Open the cube, find its plants and call each one.
pub(crate) fn analyse(job: &CubeJob, model: &VibModel, model_name: &str) -> Result<Analysed> {
    analyse_with(
        job,
        model.card(),
        model.model_id(),
        model_name,
        |spectra, n, z| Ok(model.predict(spectra, n, z, 0)?),
    )
}

/// [`analyse`] with the model's card and id, and its prediction as a function of (spectra,
/// count, samples of z): lets callers share one model between threads behind a lock.
pub(crate) fn analyse_with(
    job: &CubeJob,
    card: &model::ModelCard,
    model_id: &str,
    model_name: &str,
    mut predict: impl FnMut(&[f32], usize, usize) -> Result<Vec<domain::Prediction>>,
) -> Result<Analysed> {
    let started = std::time::Instant::now();
    let mut stage_seconds = Vec::new();
    let mut lap = |name: &'static str, since: &mut std::time::Instant| {
        stage_seconds.push((name, since.elapsed().as_secs_f64()));
        *since = std::time::Instant::now();
    };
    let mut since = started;
    let cube = Cube::open(&job.cube, &job.read)
        .with_context(|| format!("opening cube {}", job.cube.display()))?;
    let resampler = cube.axis().resampler_to(&card.axis).with_context(|| {
        format!(
            "{}: the cube's bands cannot feed model {}",
            job.cube.display(),
            model_name
        )
    })?;
    lap("open", &mut since);
    let plants = match &job.plants {
        PlantSource::Components(config) => ingest::find_plants(&cube, config),
        PlantSource::Polygons(config, path) => ingest::plants_from_polygons(&cube, config, path),
        PlantSource::PlantIds(path) => ingest::plants_from_id_raster(&cube, path),
    }
    .with_context(|| format!("finding plants in {}", job.cube.display()))?;
    if let Some((clipped, values)) = cube.calibration_counts() {
        let clip_max = job
            .read
            .calibration
            .as_ref()
            .map_or(f64::NAN, |c| c.clip_max);
        let message = format!("{clipped} of {values} calibrated values clipped to [0, {clip_max}]");
        if clipped > 0 {
            tracing::warn!(cube = %job.cube.display(), "{message}");
        } else {
            tracing::info!(cube = %job.cube.display(), "{message}");
        }
    }
    lap("plants", &mut since);
    let bands = card.axis.len();
    let mut spectra = Vec::with_capacity(plants.plants.len() * bands);
    for plant in &plants.plants {
        spectra.extend(resampler.apply(&plant.mean_reflectance)?);
    }
    let predictions = {
        let _span = tracing::info_span!("predict", plants = plants.plants.len()).entered();
        predict(&spectra, plants.plants.len(), job.z_samples).context("predicting")?
    };
    lap("predict", &mut since);
    let (pixel_calls, pixel_counts) = match job.pixels {
        Some(pixel_job) => {
            if card.training.unit == "plant" {
                tracing::warn!(
                    model = model_name,
                    "the model was trained on plant mean spectra: single pixels are noisier than \
                     the means it learnt from, so pixel calls (and severity) may be less reliable; \
                     a model trained with --unit pixel suits --per-pixel"
                );
            }
            let _span = tracing::info_span!("pixels").entered();
            let (calls, counts) = super::pixels::classify_pixels(
                &cube,
                &plants,
                &resampler,
                card.classes.len(),
                pixel_job,
                job.z_samples,
                &mut predict,
            )?;
            tracing::info!(
                pixels = counts.iter().map(|p| p.scored).sum::<u64>(),
                erosion_px = pixel_job.erosion_px,
                "pixels classified"
            );
            lap("pixels", &mut since);
            (Some(calls), Some(counts))
        }
        None => (None, None),
    };
    let field_id = job.field_id();
    let georeference = cube.georeference().cloned();
    let table = PredictionTable {
        field_id: field_id.clone(),
        cube: job.cube.display().to_string(),
        scan_date: job.date.clone().or_else(|| cube.acquisition_date()),
        crs_wkt: georeference
            .as_ref()
            .map(|g| g.crs_wkt.clone())
            .filter(|w| !w.is_empty()),
        epsg: georeference.as_ref().and_then(|g| g.epsg),
        model_id: model_id.to_string(),
        beta: card.beta,
        classes: card.classes.clone(),
        plants: plants.plants.clone(),
        attributes: plants.attributes.clone(),
        predictions,
        pixels: pixel_counts,
        values: None,
    };
    let settings = serde_json::json!({
        "job": job,
        "model": model_name,
        "field_id": field_id,
    });
    let metadata = vec![
        ("pipeline.settings".to_string(), settings.to_string()),
        (
            "pipeline.version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
    ];
    let vegetation_fraction = plants.vegetation_pixels as f64 / plants.total_pixels.max(1) as f64;
    let summary = report::FieldSummary::of(&table, vegetation_fraction);
    Ok(Analysed {
        cube,
        plants,
        table,
        pixel_calls,
        summary,
        metadata,
        stage_seconds,
    })
}

pub fn run(args: RunArgs) -> Result<()> {
    for path in [
        Some(&args.out),
        args.plant_spectra.as_ref(),
        args.summary.as_ref(),
        args.class_map.as_ref(),
        args.kl_map.as_ref(),
        args.quicklook.as_ref(),
        args.pixel_class_map.as_ref(),
        args.pixel_kl_map.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        check_writable(path, args.overwrite)?;
    }
    if let Some(dir) = &args.report {
        check_writable_dir(dir, args.overwrite)?;
    }
    let device = device(&args.device)?;
    let job = CubeJob {
        cube: args.cube.clone(),
        field_id: args.field_id.clone(),
        date: None,
        read: args.read.config(),
        plants: args.plants.source(),
        z_samples: args.z_samples,
        pixels: args.per_pixel.then_some(super::pixels::PixelJob {
            erosion_px: args.pixel_erosion_px,
        }),
    };
    let started = std::time::Instant::now();
    let (model, model_name) = model_source::load(args.model.as_deref(), device)?;
    if let Some(target) = &model.card().target {
        bail!(
            "model {model_name} predicts a continuous target ('{}'), not classes: give it as \
             --severity-model beside a classifier (--model, or the bundled default)",
            target.name
        );
    }
    let severity_model = args
        .severity_model
        .as_deref()
        .map(|path| super::severity::load(path, device))
        .transpose()?;
    let model_seconds = started.elapsed().as_secs_f64();
    let mut analysed = analyse(&job, &model, &model_name)?;
    if let Some((severity_model, name)) = &severity_model {
        let since = std::time::Instant::now();
        super::severity::predict_plants(&mut analysed, severity_model, name, &job)?;
        analysed
            .stage_seconds
            .push(("severity", since.elapsed().as_secs_f64()));
    }
    let writing = std::time::Instant::now();
    let (table, summary, metadata) = (&analysed.table, &analysed.summary, &analysed.metadata);
    report::write_predictions(&args.out, table, metadata)
        .with_context(|| format!("writing predictions {}", args.out.display()))?;
    if let Some(path) = &args.plant_spectra {
        write_plant_spectra(path, &table.field_id, &analysed.plants)
            .with_context(|| format!("writing plant spectra {}", path.display()))?;
    }
    if let Some(path) = &args.summary {
        report::write_field_summaries(path, std::slice::from_ref(summary), metadata)
            .with_context(|| format!("writing the field summary {}", path.display()))?;
    }
    let maps = analysed.maps();
    if let Some(path) = &args.class_map {
        maps.write_class_map(path)?;
    }
    if let Some(path) = &args.kl_map {
        maps.write_kl_map(path)?;
    }
    if let Some(path) = &args.quicklook {
        maps.write_quicklook(path)?;
    }
    if let Some(path) = &args.pixel_class_map {
        maps.write_pixel_class_map(path)?;
    }
    if let Some(path) = &args.pixel_kl_map {
        maps.write_pixel_kl_map(path)?;
    }
    if let Some(dir) = &args.report {
        write_report(
            dir,
            &maps,
            summary,
            &model,
            &model_name,
            metadata,
            args.overwrite,
        )
        .with_context(|| format!("writing the report {}", dir.display()))?;
    }
    let mut stages = vec![("model", model_seconds)];
    stages.extend(analysed.stage_seconds.iter().copied());
    stages.push(("write", writing.elapsed().as_secs_f64()));
    tracing::info!(
        stages = %stages.iter().map(|(n, s)| format!("{n} {s:.3}s")).collect::<Vec<_>>().join(", "),
        total_s = format!("{:.3}", started.elapsed().as_secs_f64()),
        "run timings"
    );
    if let Some((clipped, values)) = analysed.cube.calibration_counts() {
        println!(
            "calibration  {clipped} of {values} calibrated values clipped to [0, {}]",
            args.read.clip_max
        );
    }
    print_summary(table, summary, &args.out.display().to_string());
    if let Some(dir) = &args.report {
        println!("report       {}", dir.join("index.html").display());
    }
    Ok(())
}

/// A cube's plants and their calls, drawn.
pub(crate) struct Maps<'a> {
    cube: &'a Cube,
    plants: &'a PlantSet,
    table: &'a PredictionTable,
    pixels: Option<&'a domain::PixelCalls>,
}

impl Maps<'_> {
    fn class_index(&self, plant: usize) -> usize {
        self.table.predictions[plant].predicted_index
    }

    pub(crate) fn write_class_map(&self, path: &Path) -> Result<()> {
        let class_of = self.plants.pixel_plants.iter().map(|&p| match p {
            0 => None,
            p => Some(self.class_index(p as usize - 1)),
        });
        self.write_classes(path, class_of, "class map")
    }

    /// A class-map GeoTIFF from each pixel's class index (None: no class), with the colour
    /// table and category names.
    fn write_classes(
        &self,
        path: &Path,
        class_of: impl Iterator<Item = Option<usize>>,
        what: &str,
    ) -> Result<()> {
        let classes = &self.table.classes;
        let labels = LabelRaster {
            lines: self.plants.lines,
            samples: self.plants.samples,
            codes: class_of
                .map(|k| k.and_then(|k| classes.get(k)).map_or(0, |c| c.code))
                .collect(),
            classes: classes.clone(),
            georeference: self.cube.georeference().cloned(),
        };
        let colours: Vec<[u8; 3]> = (0..classes.len()).map(|k| classes.colour(k)).collect();
        ingest::write_class_map(path, &labels, &colours)
            .with_context(|| format!("writing the {what} {}", path.display()))
    }

    pub(crate) fn write_kl_map(&self, path: &Path) -> Result<()> {
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

    pub(crate) fn write_quicklook(&self, path: &Path) -> Result<()> {
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
        if let Some(pixels) = self.pixels {
            report::paint_pixel_classes(
                &mut rgb,
                (width, height, step),
                (pixels.lines, pixels.samples),
                &pixels.class_of_pixel,
                classes.healthy_index(),
                |k| classes.colour(k),
            );
        }
        report::write_png_rgb(path, width, height, &rgb)
            .with_context(|| format!("writing the quicklook {}", path.display()))
    }

    fn pixel_calls(&self, path: &Path) -> Result<&domain::PixelCalls> {
        self.pixels.with_context(|| {
            format!(
                "{}: a per-pixel map needs the per-pixel calls (--per-pixel)",
                path.display()
            )
        })
    }

    /// Class code of every scored pixel (GeoTIFF with colour table and category names).
    pub(crate) fn write_pixel_class_map(&self, path: &Path) -> Result<()> {
        let pixels = self.pixel_calls(path)?;
        let class_of = pixels
            .class_of_pixel
            .iter()
            .map(|&c| (c > 0).then(|| c as usize - 1));
        self.write_classes(path, class_of, "pixel class map")
    }

    /// KL of every scored pixel (float32 GeoTIFF, NaN elsewhere).
    pub(crate) fn write_pixel_kl_map(&self, path: &Path) -> Result<()> {
        let pixels = self.pixel_calls(path)?;
        ingest::write_float_map(
            path,
            (pixels.lines, pixels.samples),
            &pixels.kl_of_pixel,
            self.cube.georeference(),
            "KL(q(z|x) || N(0, I)) of the pixel, nats",
        )
        .with_context(|| format!("writing the pixel KL map {}", path.display()))
    }

    fn write_lesion_map_png(&self, path: &Path) -> Result<()> {
        let pixels = self.pixel_calls(path)?;
        let step = self.cube.quicklook_step(PICTURE_MAX_PX);
        let classes = &self.table.classes;
        let (width, height, rgb) =
            report::pixel_class_rgb(self.plants, &pixels.class_of_pixel, step, |k| {
                classes.colour(k)
            });
        report::write_png_rgb(path, width, height, &rgb)
            .with_context(|| format!("writing {}", path.display()))
    }

    pub(crate) fn write_class_map_png(&self, path: &Path) -> Result<()> {
        let step = self.cube.quicklook_step(PICTURE_MAX_PX);
        let classes = &self.table.classes;
        let (width, height, rgb) =
            report::class_map_rgb(self.plants, step, |p| classes.colour(self.class_index(p)));
        report::write_png_rgb(path, width, height, &rgb)
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// The report folder, built under a temporary name and renamed into place when complete.
pub(crate) fn write_report(
    dir: &Path,
    maps: &Maps<'_>,
    summary: &report::FieldSummary,
    model: &VibModel,
    model_name: &str,
    metadata: &[(String, String)],
    overwrite: bool,
) -> Result<()> {
    crate::output::write_folder_atomically(dir, overwrite, |tmp| {
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
                report::write_sweep_plots(tmp, &points)?;
                Some("information-plane.svg".to_string())
            }
            _ => None,
        };
        let reliability = match &card.calibration {
            Some(c) if !c.reliability_after.is_empty() => {
                let curve = super::reliability_curve;
                report::write_reliability_diagram(
                    &tmp.join("reliability"),
                    &format!(
                        "Reliability on {} {} predictions (temperature {:.3})",
                        c.samples, c.fitted_on, c.temperature
                    ),
                    &[
                        curve("before calibration", c.ece_before, &c.reliability_before),
                        curve("after calibration", c.ece_after, &c.reliability_after),
                    ],
                )?;
                Some("reliability.svg".to_string())
            }
            _ => None,
        };
        let (lesion_map, severity_histogram) = match maps.pixels {
            Some(_) => {
                maps.write_pixel_class_map(&tmp.join("pixel-class-map.tif"))?;
                maps.write_pixel_kl_map(&tmp.join("pixel-kl-map.tif"))?;
                maps.write_lesion_map_png(&tmp.join("lesion-map.png"))?;
                let severity = maps.table.severities_pct();
                let histogram = (!severity.is_empty())
                    .then(|| {
                        report::write_severity_histogram(
                            &tmp.join("severity-histogram.svg"),
                            &severity,
                        )
                        .map(|()| "severity-histogram.svg".to_string())
                    })
                    .transpose()?;
                (Some("lesion-map.png".to_string()), histogram)
            }
            None => (None, None),
        };
        let images = report::ReportImages {
            lesion_map,
            severity_histogram,
            quicklook,
            class_map: Some("class-map.png".into()),
            kl_histogram: "kl-histogram.svg".into(),
            probabilities: "probabilities.svg".into(),
            information_plane,
            reliability,
        };
        let html = report::report_html(
            summary,
            maps.table,
            &model_report(model, model_name)?,
            &images,
            env!("CARGO_PKG_VERSION"),
        );
        report::write_report_html(tmp, &html)?;
        Ok(())
    })
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
    facts.push((
        "ensemble".to_string(),
        format!("{} member(s)", card.members),
    ));
    facts.push((
        "preprocessing".to_string(),
        model::describe_preprocessing(&card.train_config.preprocessing),
    ));
    facts.push((
        "regularisation".to_string(),
        format!(
            "weight decay {}, input noise {}",
            card.train_config.weight_decay, card.train_config.input_noise
        ),
    ));
    if let Some(c) = &card.calibration {
        facts.push((
            "calibration".to_string(),
            format!(
                "temperature {:.3}, class offsets {}, fitted on {} {} predictions: NLL {:.3} -> {:.3} nats, ECE {:.3} -> {:.3}",
                c.temperature, c.offsets_text(&card.classes), c.samples, c.fitted_on, c.nll_before_nats, c.nll_after_nats, c.ece_before, c.ece_after
            ),
        ));
    }
    let (search_header, search_rows, search_winner, search_note) = match &card.selection {
        Some(s) => (
            [
                "id", "race", "preprocessing", "beta", "latent", "widths", "weight decay",
                "input noise", "folds", "CV NLL (calibrated)", "CV NLL (raw)", "CV accuracy",
                "work (s)",
            ]
            .map(String::from)
            .to_vec(),
            s.candidates
                .iter()
                .map(|c| {
                    vec![
                        c.id.to_string(),
                        c.race.clone(),
                        c.preprocessing.clone(),
                        format!("{:e}", c.beta),
                        c.latent_dim.to_string(),
                        format!("{:?}", c.hidden_dims),
                        c.weight_decay.to_string(),
                        c.input_noise.to_string(),
                        c.folds_evaluated.to_string(),
                        format!("{:.4}", c.cv_nll_nats),
                        format!("{:.4}", c.cv_raw_nll_nats),
                        format!("{:.4}", c.cv_accuracy),
                        format!("{:.1}", c.work_seconds),
                    ]
                })
                .collect(),
            Some(s.winner),
            format!(
                "Winner: candidate {}, {}. Its ensemble's out-of-fold accuracy: {:.4}. Refitted on all training data for {} epochs.",
                s.candidates[s.winner].id, s.reason, s.ensemble_cv_accuracy, s.refit_epochs
            ),
        ),
        None => (Vec::new(), Vec::new(), None, String::new()),
    };
    Ok(report::ModelReport {
        name: model_name.to_string(),
        model_id: model.model_id().to_string(),
        beta: card.beta,
        facts,
        card_json: serde_json::to_string_pretty(card).context("model card as JSON")?,
        search_header,
        search_rows,
        search_winner,
        search_note,
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
    if let Some(mean) = summary.severity_mean_pct {
        println!(
            "severity     mean {mean:.1}%, median {:.1}%, 90th percentile {:.1}% of a plant's pixels not healthy",
            summary.severity_p50_pct.unwrap_or(f64::NAN),
            summary.severity_p90_pct.unwrap_or(f64::NAN)
        );
    }
    if let Some((target, values)) = &table.values {
        let mut means: Vec<f64> = values.iter().map(|v| v.mean).collect();
        means.sort_by(f64::total_cmp);
        let mean = means.iter().sum::<f64>() / means.len().max(1) as f64;
        println!(
            "{:<12} predicted per plant: mean {mean:.3}, median {:.3}, 90th percentile {:.3}; {} flagged OOD",
            target,
            model::percentile_of(&means, 50.0),
            model::percentile_of(&means, 90.0),
            values.iter().filter(|v| v.ood).count()
        );
    }
    println!("model        {} (beta {})", table.model_id, table.beta);
    println!("written      {out}");
}

/// One row per plant: ids, pixel count, mean NDVI, the mean spectrum in columns named by wavelength
/// (nm) and the standard deviation in `std_<wavelength>` (a repeated wavelength gets `#<band>`).
pub(crate) fn write_plant_spectra(
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
