//! One file per subcommand.

mod batch;
mod evaluate;
mod inspect;
mod labelled;
mod run;
mod sweep;
mod synth;
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
    }
}

/// Training settings from the shared model options and a beta.
fn train_config(args: &ModelArgs, beta: f64) -> Result<model::TrainConfig> {
    Ok(model::TrainConfig {
        beta,
        latent_dim: args.latent_dim,
        encoder: args.encoder.into(),
        epochs: args.epochs,
        seed: args.seed,
        preprocessing: preprocessing(&args.preprocess)?,
        ..model::TrainConfig::default()
    })
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
