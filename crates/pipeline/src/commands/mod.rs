//! One file per subcommand.

mod batch;
mod evaluate;
mod evaluate_values;
mod inspect;
mod labelled;
pub(crate) mod pixels;
mod progress;
mod progress_report;
mod run;
pub(crate) mod severity;
mod sweep;
mod synth;
mod synth_campaign;
pub(crate) mod train;

use anyhow::{Context, Result};

pub(crate) use batch::{Stopped, EXIT_STOPPED};
pub(crate) use run::PlantSource;

use crate::cli::{Command, DeviceArgs, ModelArgs, PreprocessArgs};

pub fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Run(args) => run::run(args),
        Command::Train(args) => train::run(args),
        Command::Evaluate(args) => evaluate::run(args),
        Command::Sweep(args) => sweep::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Synth(args) => synth::run(args),
        Command::Batch(args) => batch::run(args),
        Command::Merge(args) => batch::merge(args),
        Command::Progress(args) => progress::run(args),
    }
}

/// Training settings from the shared model options and a beta, and which searched options the
/// user gave (they stay fixed in the selection).
fn train_config(args: &ModelArgs, beta: Option<f64>) -> Result<(model::TrainConfig, model::Fixed)> {
    let defaults = model::TrainConfig::default();
    let config = model::TrainConfig {
        beta: beta.unwrap_or(defaults.beta),
        latent_dim: args.latent_dim.unwrap_or(defaults.latent_dim),
        hidden_dims: args
            .hidden_dims
            .clone()
            .unwrap_or_else(|| defaults.hidden_dims.clone()),
        weight_decay: args.weight_decay.unwrap_or(defaults.weight_decay),
        input_noise: args.input_noise.unwrap_or(defaults.input_noise),
        ensemble: args.ensemble,
        encoder: args.encoder.into(),
        epochs: args.epochs,
        validation_fraction: args.validation_fraction,
        seed: args.seed,
        preprocessing: preprocessing(&args.preprocess)?,
        ..defaults
    };
    if config.hidden_dims.contains(&0) {
        anyhow::bail!("--hidden-dims: every width must be at least 1");
    }
    let p = &args.preprocess;
    let fixed = model::Fixed {
        preprocessing: p.continuum_removal || p.savgol.is_some() || p.snv,
        beta: beta.is_some(),
        capacity: args.latent_dim.is_some() || args.hidden_dims.is_some(),
        regularisation: args.weight_decay.is_some() || args.input_noise.is_some(),
    };
    Ok((config, fixed))
}

/// The selection's settings from the shared model options.
fn tune_settings(args: &ModelArgs) -> model::TuneSettings {
    model::TuneSettings {
        budget_seconds: args.tune_budget,
        folds: args.tune_folds,
    }
}

fn preprocessing(args: &PreprocessArgs) -> Result<domain::Preprocessing> {
    let band_range_nm = match args.band_range_nm.as_deref() {
        Some(&[lo, hi]) if lo < hi => Some((lo, hi)),
        Some(range) => anyhow::bail!("--band-range-nm: {range:?} is not MIN,MAX with MIN < MAX"),
        None => None,
    };
    let savitzky_golay = match args.savgol.as_deref() {
        Some(&[window, order, derivative]) => Some(domain::SavitzkyGolay {
            window,
            order,
            derivative,
        }),
        Some(other) => anyhow::bail!("--savgol: {other:?} is not WINDOW,ORDER,DERIVATIVE"),
        None => None,
    };
    Ok(domain::Preprocessing {
        band_range_nm,
        exclude_water_bands: args.exclude_water_bands,
        continuum_removal: args.continuum_removal,
        savitzky_golay,
        snv: args.snv,
    })
}

fn device(args: &DeviceArgs) -> Result<model::DeviceChoice> {
    args.device.parse().context("--device")
}

/// A reliability-diagram curve for the report crate from the model's bins.
fn reliability_curve(
    label: &str,
    ece: f64,
    bins: &[model::ReliabilityBin],
) -> report::ReliabilityCurve {
    report::ReliabilityCurve {
        label: format!("{label} (ECE {ece:.3})"),
        bins: bins
            .iter()
            .map(|b| report::ReliabilityPoint {
                lower: b.lower,
                upper: b.upper,
                samples: b.samples,
                mean_confidence: b.mean_confidence,
                accuracy: b.accuracy,
            })
            .collect(),
    }
}
