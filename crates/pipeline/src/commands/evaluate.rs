//! `pipeline evaluate`: a model's scores on labelled cubes.

use anyhow::{bail, Context, Result};
use model::Metrics;

use super::{device, labelled};
use crate::cli::EvaluateArgs;
use crate::model_source;
use crate::output::{check_writable, write_atomically};

pub fn run(args: EvaluateArgs) -> Result<()> {
    check_writable(&args.metrics, args.overwrite)?;
    if let Some(stem) = &args.reliability {
        check_writable(&stem.with_extension("svg"), args.overwrite)?;
        check_writable(&stem.with_extension("png"), args.overwrite)?;
    }
    if let Some(path) = &args.predictions {
        check_writable(path, args.overwrite)?;
    }
    let device = device(&args.device)?;
    let (model, model_name) = model_source::load(args.model.as_deref(), device)?;
    let card = model.card();
    match (&card.target, labelled::is_regression(&args.samples)) {
        (Some(target), false) => bail!(
            "model {model_name} predicts a continuous target ('{}'): give its values with \
             --target-column (tables) or --severity (cubes)",
            target.name
        ),
        (None, true) => bail!(
            "model {model_name} predicts classes ({}): give class labels, not --target-column or --severity",
            card.classes.names().join(", ")
        ),
        (Some(_), true) => {
            if args.reliability.is_some() || !args.ood_cube.is_empty() || !args.ood_spectra.is_empty() {
                bail!("--reliability and the OOD options apply to classifiers; model {model_name} is a regression model");
            }
            let samples = labelled::collect(&args.samples, args.unit)?;
            return super::evaluate_values::run(&args, &model, &model_name, &samples);
        }
        (None, false) => {}
    }
    let samples = labelled::collect(&args.samples, args.unit)?;
    let resampler = samples.axis.resampler_to(&card.axis).with_context(|| {
        format!(
            "{}: the bands cannot feed model {model_name}",
            labelled::source_names(&args.samples).join(", ")
        )
    })?;
    // Truth: label classes matched to the model's classes by name.
    let mut truth = Vec::with_capacity(samples.len());
    for &code in &samples.label_codes {
        let class = samples
            .classes
            .iter()
            .find(|c| c.code == code)
            .expect("labelled samples carry known codes");
        let Some(index) = card.classes.iter().position(|c| c.name == class.name) else {
            bail!(
                "{}: class '{}' is not one the model {model_name} knows ({})",
                labelled::label_source_names(&args.samples).join(", "),
                class.name,
                card.classes.names().join(", ")
            );
        };
        truth.push(index);
    }
    let mut spectra = Vec::with_capacity(samples.len() * card.axis.len());
    for i in 0..samples.len() {
        spectra.extend(resampler.apply(samples.spectrum(i))?);
    }
    let predictions = model
        .predict(&spectra, samples.len(), args.z_samples, 0)
        .context("predicting")?;
    let metrics = Metrics::compute(&card.classes, &truth, &predictions);
    // The same predictions before the temperature: what calibration did on this set.
    let uncalibrated = model
        .predict_uncalibrated(&spectra, samples.len(), args.z_samples, 0)
        .context("predicting")?;
    let before = Metrics::compute(&card.classes, &truth, &uncalibrated);
    let bins_before = model::reliability_bins(&uncalibrated, &truth, model::RELIABILITY_BINS);
    let bins_after = model::reliability_bins(&predictions, &truth, model::RELIABILITY_BINS);
    let mut json = serde_json::to_value(&metrics)?;
    json["calibration"] = serde_json::json!({
        "temperature": card.temperature(),
        "class_log_bias": card.scaling().1,
        "fitted_on": card.calibration.as_ref().map(|c| c.fitted_on.clone()),
        "nll_before_nats": before.negative_log_likelihood_nats,
        "nll_after_nats": metrics.negative_log_likelihood_nats,
        "ece_before": before.expected_calibration_error,
        "ece_after": metrics.expected_calibration_error,
        "reliability_before": bins_before,
        "reliability_after": bins_after,
    });
    json["members"] = card.members.into();
    let ood = if args.ood_cube.is_empty() && args.ood_spectra.is_empty() {
        None
    } else {
        Some(ood_report(&args, &model, &predictions)?)
    };
    if let Some(ood) = &ood {
        json["ood"] = serde_json::to_value(ood)?;
    }
    json["in_distribution_flagged"] = predictions.iter().filter(|p| p.ood).count().into();
    json["model"] = model_name.clone().into();
    json["model_id"] = model.model_id().into();
    json["beta"] = card.beta.into();
    json["unit"] = labelled::unit_name(&args.samples, args.unit).into();
    json["sources"] = labelled::source_names(&args.samples).into();
    if let Some(stem) = &args.reliability {
        let curve = super::reliability_curve;
        report::write_reliability_diagram(
            stem,
            &format!(
                "Reliability on {} samples (temperature {:.3})",
                metrics.n_samples,
                card.temperature()
            ),
            &[
                curve(
                    "before calibration",
                    before.expected_calibration_error,
                    &bins_before,
                ),
                curve(
                    "after calibration",
                    metrics.expected_calibration_error,
                    &bins_after,
                ),
            ],
        )?;
    }
    if let Some(path) = &args.predictions {
        let mut table = report::Table::default();
        let name = |i: usize| card.classes.names()[i].to_string();
        table
            .push(
                "row",
                report::Values::U64((1..=truth.len() as u64).collect()),
            )
            .push(
                "true_class_name",
                report::Values::Str(truth.iter().map(|&t| name(t)).collect()),
            )
            .push(
                "predicted_class_name",
                report::Values::Str(
                    predictions
                        .iter()
                        .map(|p| name(p.predicted_index))
                        .collect(),
                ),
            );
        for (c, class) in card.classes.names().iter().enumerate() {
            table.push(
                &format!("prob_{class}"),
                report::Values::F64(
                    predictions
                        .iter()
                        .map(|p| p.probabilities[c] as f64)
                        .collect(),
                ),
            );
        }
        table
            .push(
                "entropy_nats",
                report::Values::F64(predictions.iter().map(|p| p.entropy_nats).collect()),
            )
            .push(
                "kl_nats",
                report::Values::F64(predictions.iter().map(|p| p.kl_nats).collect()),
            )
            .push(
                "ood",
                report::Values::Bool(predictions.iter().map(|p| p.ood).collect()),
            );
        report::write_table(
            path,
            &table,
            &[("pipeline.model_id".into(), model.model_id().into())],
        )
        .with_context(|| format!("writing predictions {}", path.display()))?;
    }
    write_atomically(
        &args.metrics,
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;

    println!(
        "samples            {} ({})",
        metrics.n_samples,
        labelled::unit_name(&args.samples, args.unit)
    );
    println!("overall accuracy   {:.4}", metrics.overall_accuracy);
    println!("average accuracy   {:.4}", metrics.average_accuracy);
    println!("kappa              {:.4}", metrics.kappa);
    println!(
        "NLL                {:.4} nats (before calibration {:.4})",
        metrics.negative_log_likelihood_nats, before.negative_log_likelihood_nats
    );
    println!(
        "ECE (15 bins)      {:.4} (before calibration {:.4})",
        metrics.expected_calibration_error, before.expected_calibration_error
    );
    println!(
        "model              {} member(s), temperature {:.4}, class offsets {}",
        card.members,
        card.temperature(),
        card.calibration
            .as_ref()
            .map_or_else(|| "none".to_string(), |c| c.offsets_text(&card.classes))
    );
    println!("mean KL            {:.3} nats", metrics.mean_kl_nats);
    println!(
        "{:<12} {:>9} {:>9} {:>9} {:>8}",
        "class", "precision", "recall", "f1", "support"
    );
    for name in &metrics.class_names {
        let c = &metrics.per_class[name];
        println!(
            "{name:<12} {:>9.4} {:>9.4} {:>9.4} {:>8}",
            c.precision, c.recall, c.f1, c.support
        );
    }
    println!(
        "confusion (rows true, columns predicted: {})",
        metrics.class_names.join(", ")
    );
    for row in &metrics.confusion_matrix {
        println!(
            "  {}",
            row.iter().map(|v| format!("{v:>6}")).collect::<String>()
        );
    }
    if let Some(ood) = &ood {
        println!(
            "OOD                {} spectra: AUROC of KL {:.4}, of entropy {:.4}; flagged {:.1}% (in-distribution flagged {:.1}%)",
            ood.n_ood_spectra,
            ood.auroc_kl,
            ood.auroc_entropy,
            100.0 * ood.flagged_fraction,
            100.0 * ood.in_distribution_flagged_fraction
        );
    }
    if let Some(stem) = &args.reliability {
        println!(
            "reliability        {} and .png",
            stem.with_extension("svg").display()
        );
    }
    println!("written            {}", args.metrics.display());
    Ok(())
}

/// How well the model's KL and entropy tell out-of-distribution spectra from the evaluation samples.
#[derive(Debug, serde::Serialize)]
struct OodReport {
    sources: Vec<String>,
    n_ood_spectra: usize,
    n_in_distribution: usize,
    auroc_kl: f64,
    auroc_entropy: f64,
    /// Share of OOD spectra the model's thresholds flag.
    flagged_fraction: f64,
    /// Share of in-distribution samples flagged (false alarms).
    in_distribution_flagged_fraction: f64,
    mean_kl_nats_ood: f64,
    mean_kl_nats_in_distribution: f64,
}

fn ood_report(
    args: &EvaluateArgs,
    model: &model::VibModel,
    inside: &[domain::Prediction],
) -> Result<OodReport> {
    if !args.ood_labels.is_empty() && args.ood_labels.len() != args.ood_cube.len() {
        bail!(
            "{} --ood-cube but {} --ood-labels: give none or one per cube",
            args.ood_cube.len(),
            args.ood_labels.len()
        );
    }
    let mut outside = Vec::new();
    for (i, path) in args.ood_cube.iter().enumerate() {
        let cube = ingest::Cube::open(path, &ingest::ReadConfig::default())
            .with_context(|| format!("opening OOD cube {}", path.display()))?;
        let spectra = match args.ood_labels.get(i) {
            Some(label_path) => {
                let labels = ingest::read_label_raster(label_path)
                    .with_context(|| format!("reading OOD labels {}", label_path.display()))?;
                if (labels.lines, labels.samples) != (cube.lines(), cube.samples()) {
                    bail!(
                        "{}: label raster is {} x {}, the cube {} x {}",
                        label_path.display(),
                        labels.lines,
                        labels.samples,
                        cube.lines(),
                        cube.samples()
                    );
                }
                ingest::pixel_spectra(&cube, |p| labels.codes[p] != 0, args.ood_max_pixels)?
            }
            None => ingest::pixel_spectra(&cube, |_| true, args.ood_max_pixels)?,
        };
        outside.extend(
            predict_on_model_axis(model, cube.axis(), &spectra, args.z_samples)
                .with_context(|| path.display().to_string())?,
        );
    }
    for path in &args.ood_spectra {
        let table = report::read_spectral_table(path, None, None)
            .with_context(|| format!("reading OOD spectra {}", path.display()))?;
        let axis = domain::SpectralAxis::new(table.wavelength_nm.clone(), None)
            .with_context(|| format!("{}: band columns", path.display()))?;
        outside.extend(
            predict_on_model_axis(model, &axis, &table.spectra, args.z_samples)
                .with_context(|| path.display().to_string())?,
        );
    }
    if outside.is_empty() {
        bail!("the OOD cubes and tables gave no spectra");
    }
    let kl = |p: &[domain::Prediction]| p.iter().map(|p| p.kl_nats).collect::<Vec<_>>();
    let entropy = |p: &[domain::Prediction]| p.iter().map(|p| p.entropy_nats).collect::<Vec<_>>();
    let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let flagged = |p: &[domain::Prediction]| {
        p.iter().filter(|p| p.ood).count() as f64 / p.len().max(1) as f64
    };
    Ok(OodReport {
        sources: args
            .ood_cube
            .iter()
            .chain(&args.ood_spectra)
            .map(|c| c.display().to_string())
            .collect(),
        n_ood_spectra: outside.len(),
        n_in_distribution: inside.len(),
        auroc_kl: model::auroc(&kl(inside), &kl(&outside)),
        auroc_entropy: model::auroc(&entropy(inside), &entropy(&outside)),
        flagged_fraction: flagged(&outside),
        in_distribution_flagged_fraction: flagged(inside),
        mean_kl_nats_ood: mean(kl(&outside)),
        mean_kl_nats_in_distribution: mean(kl(inside)),
    })
}

/// Predict row-major `spectra` on `axis` after resampling them onto the model's wavelengths.
fn predict_on_model_axis(
    model: &model::VibModel,
    axis: &domain::SpectralAxis,
    spectra: &[f32],
    z_samples: usize,
) -> Result<Vec<domain::Prediction>> {
    let card = model.card();
    let resampler = axis
        .resampler_to(&card.axis)
        .context("the bands cannot feed the model")?;
    let n = spectra.len() / axis.len();
    let mut resampled = Vec::with_capacity(n * card.axis.len());
    for spectrum in spectra.chunks(axis.len()) {
        resampled.extend(resampler.apply(spectrum)?);
    }
    model
        .predict(&resampled, n, z_samples, 1)
        .context("predicting OOD spectra")
}
