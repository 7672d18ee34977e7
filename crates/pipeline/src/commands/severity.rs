//! `run --severity-model`: a regression model's prediction (severity, a disease score) for every
//! plant's mean spectrum, beside the classifier's call.

use std::path::Path;

use anyhow::{bail, Context, Result};
use model::{DeviceChoice, VibModel};

use super::run::{Analysed, CubeJob};
use crate::model_source;

/// Load a regression model; a classifier is an error.
pub(crate) fn load(path: &Path, device: DeviceChoice) -> Result<(VibModel, String)> {
    let (model, name) = model_source::load(Some(path), device)?;
    if model.card().target.is_none() {
        bail!(
            "{}: --severity-model needs a regression model (train --target-column or --severity); \
             this one predicts classes ({})",
            path.display(),
            model.card().classes.names().join(", ")
        );
    }
    Ok((model, name))
}

/// Predict every plant of `analysed` with the regression `model` and attach the predictions to
/// its table (and the model to its metadata).
pub(crate) fn predict_plants(
    analysed: &mut Analysed,
    model: &VibModel,
    model_name: &str,
    job: &CubeJob,
) -> Result<()> {
    let card = model.card();
    let target = card.target.as_ref().expect("load checked the target");
    let resampler = analysed
        .cube
        .axis()
        .resampler_to(&card.axis)
        .with_context(|| {
            format!(
                "{}: the cube's bands cannot feed severity model {model_name}",
                job.cube.display()
            )
        })?;
    let plants = &analysed.plants.plants;
    let mut spectra = Vec::with_capacity(plants.len() * card.axis.len());
    for plant in plants {
        spectra.extend(resampler.apply(&plant.mean_reflectance)?);
    }
    let predictions = {
        let _span = tracing::info_span!("severity", plants = plants.len()).entered();
        model
            .predict_values(&spectra, plants.len(), job.z_samples, 0)
            .with_context(|| format!("predicting {} with {model_name}", target.name))?
    };
    analysed.metadata.push((
        "pipeline.severity_model".into(),
        serde_json::json!({
            "model": model_name,
            "model_id": model.model_id(),
            "target": target.name,
            "interval_level": target.interval_level,
        })
        .to_string(),
    ));
    analysed.table.values = Some((target.name.clone(), predictions));
    Ok(())
}
