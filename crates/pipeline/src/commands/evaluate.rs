//! `pipeline evaluate`: a model's scores on labelled cubes.

use anyhow::{bail, Context, Result};
use model::Metrics;

use super::{device, labelled};
use crate::cli::EvaluateArgs;
use crate::model_source;
use crate::output::{check_writable, write_atomically};

pub fn run(args: EvaluateArgs) -> Result<()> {
    check_writable(&args.metrics, args.overwrite)?;
    let device = device(&args.device)?;
    let (model, model_name) = model_source::load(args.model.as_deref(), device)?;
    let samples = labelled::collect(&args.cube, &args.labels, args.unit)?;
    let card = model.card();
    let resampler = samples.axis.resampler_to(&card.axis).with_context(|| {
        format!(
            "{}: the cube's bands cannot feed model {model_name}",
            args.cube[0].display()
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
                args.labels[0].display(),
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
    let mut json = serde_json::to_value(&metrics)?;
    json["model"] = model_name.clone().into();
    json["model_id"] = model.model_id().into();
    json["beta"] = card.beta.into();
    json["unit"] = format!("{:?}", args.unit).to_lowercase().into();
    json["cubes"] = args
        .cube
        .iter()
        .map(|c| c.display().to_string())
        .collect::<Vec<_>>()
        .into();
    write_atomically(
        &args.metrics,
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;

    println!("samples            {} ({:?})", metrics.n_samples, args.unit);
    println!("overall accuracy   {:.4}", metrics.overall_accuracy);
    println!("average accuracy   {:.4}", metrics.average_accuracy);
    println!("kappa              {:.4}", metrics.kappa);
    println!(
        "NLL                {:.4} nats",
        metrics.negative_log_likelihood_nats
    );
    println!(
        "ECE (15 bins)      {:.4}",
        metrics.expected_calibration_error
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
    println!("written            {}", args.metrics.display());
    Ok(())
}
