//! `pipeline evaluate` for a regression model (severity, a disease score): RMSE, MAE, R^2,
//! Spearman's rho, interval coverage and the Gaussian NLL, before and after the model's variance
//! scale.

use anyhow::{Context, Result};
use domain::{SpectralSamples, ValuePrediction};
use model::{RegressionMetrics, VibModel};
use report::{Table, Values};

use super::labelled;
use crate::cli::EvaluateArgs;
use crate::output::write_atomically;

pub fn run(
    args: &EvaluateArgs,
    model: &VibModel,
    model_name: &str,
    samples: &SpectralSamples,
) -> Result<()> {
    let card = model.card();
    let target = card
        .target
        .as_ref()
        .expect("called for regression models only");
    let truth = samples
        .values
        .as_ref()
        .expect("regression samples carry values");
    let resampler = samples.axis.resampler_to(&card.axis).with_context(|| {
        format!(
            "{}: the bands cannot feed model {model_name}",
            labelled::source_names(&args.samples).join(", ")
        )
    })?;
    let mut spectra = Vec::with_capacity(samples.len() * card.axis.len());
    for i in 0..samples.len() {
        spectra.extend(resampler.apply(samples.spectrum(i))?);
    }
    let predictions = model
        .predict_values(&spectra, samples.len(), args.z_samples, 0)
        .context("predicting")?;
    let metrics = RegressionMetrics::compute(truth, &predictions, target.interval_level);
    // The same predictions without the variance scale: what calibration did on this set.
    let unscaled: Vec<ValuePrediction> = predictions
        .iter()
        .map(|p| {
            let sd = p.sd / target.variance_scale.sqrt();
            let half = (p.upper - p.mean) / target.variance_scale.sqrt();
            ValuePrediction {
                sd,
                lower: p.mean - half,
                upper: p.mean + half,
                ..p.clone()
            }
        })
        .collect();
    let before = RegressionMetrics::compute(truth, &unscaled, target.interval_level);
    let mut json = serde_json::to_value(&metrics)?;
    json["target"] = target.name.clone().into();
    json["calibration"] = serde_json::json!({
        "variance_scale": target.variance_scale,
        "fitted_on": target.calibration.as_ref().map(|c| c.fitted_on.clone()),
        "nll_before_nats": before.negative_log_likelihood_nats,
        "nll_after_nats": metrics.negative_log_likelihood_nats,
        "coverage_before": before.coverage,
        "coverage_after": metrics.coverage,
    });
    json["flagged_ood"] = predictions.iter().filter(|p| p.ood).count().into();
    json["members"] = card.members.into();
    json["model"] = model_name.into();
    json["model_id"] = model.model_id().into();
    json["beta"] = card.beta.into();
    json["unit"] = labelled::unit_name(&args.samples, args.unit).into();
    json["sources"] = labelled::source_names(&args.samples).into();
    if let Some(path) = &args.predictions {
        write_predictions(path, truth, &predictions, model.model_id())
            .with_context(|| format!("writing predictions {}", path.display()))?;
    }
    write_atomically(
        &args.metrics,
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;
    println!(
        "samples            {} ({})",
        metrics.samples,
        labelled::unit_name(&args.samples, args.unit)
    );
    println!("target             {}", target.name);
    println!("RMSE               {:.4}", metrics.rmse);
    println!("MAE                {:.4}", metrics.mae);
    println!("R^2                {:.4}", metrics.r_squared);
    println!("Spearman rho       {:.4}", metrics.spearman_rho);
    println!(
        "{:.0}% interval       coverage {:.3} (before calibration {:.3}), mean width {:.4}",
        100.0 * metrics.interval_level,
        metrics.coverage,
        before.coverage,
        metrics.mean_interval_width
    );
    println!(
        "NLL                {:.4} nats (before calibration {:.4})",
        metrics.negative_log_likelihood_nats, before.negative_log_likelihood_nats
    );
    println!(
        "model              {} member(s), variance scale {:.4}",
        card.members, target.variance_scale
    );
    println!("mean KL            {:.3} nats", metrics.mean_kl_nats);
    println!(
        "flagged OOD        {}",
        predictions.iter().filter(|p| p.ood).count()
    );
    if let Some(path) = &args.predictions {
        println!("predictions        {}", path.display());
    }
    println!("written            {}", args.metrics.display());
    Ok(())
}

/// One row per sample: truth, predicted mean, sd, interval, entropy, KL, OOD.
fn write_predictions(
    path: &std::path::Path,
    truth: &[f64],
    predictions: &[ValuePrediction],
    model_id: &str,
) -> Result<()> {
    let column = |f: fn(&ValuePrediction) -> f64| Values::F64(predictions.iter().map(f).collect());
    let mut table = Table::default();
    table
        .push("row", Values::U64((1..=truth.len() as u64).collect()))
        .push("target", Values::F64(truth.to_vec()))
        .push("predicted_mean", column(|p| p.mean))
        .push("predicted_sd", column(|p| p.sd))
        .push("interval_lower", column(|p| p.lower))
        .push("interval_upper", column(|p| p.upper))
        .push("entropy_nats", column(|p| p.entropy_nats))
        .push("kl_nats", column(|p| p.kl_nats))
        .push(
            "ood",
            Values::Bool(predictions.iter().map(|p| p.ood).collect()),
        );
    report::write_table(
        path,
        &table,
        &[("pipeline.model_id".into(), model_id.into())],
    )?;
    Ok(())
}
