//! `pipeline train`: fit a VIB classifier to labelled cubes and save it.

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use model::{TrainConfig, VibModel};

use super::{device, labelled};
use crate::cli::{TrainArgs, Unit};
use crate::output::check_writable;

pub fn run(args: TrainArgs) -> Result<()> {
    check_writable(&args.out, args.overwrite)?;
    let device = device(&args.device)?;
    let samples = labelled::collect(&args.cube, &args.labels, args.unit)?;
    let config = TrainConfig {
        beta: args.beta,
        latent_dim: args.latent_dim,
        epochs: args.epochs,
        seed: args.seed,
        ..TrainConfig::default()
    };
    let unit = match args.unit {
        Unit::Plant => "plant",
        Unit::Pixel => "pixel",
    };
    let sources = args.cube.iter().map(|c| c.display().to_string()).collect();
    let bar = ProgressBar::new(config.epochs as u64).with_style(
        ProgressStyle::with_template("{bar:30} epoch {pos}/{len} {msg}")
            .expect("static template is valid"),
    );
    let (model, history) = VibModel::train(&samples, &config, device, sources, unit, |epoch| {
        bar.set_position(epoch.epoch as u64);
        bar.set_message(format!(
            "loss {:.4} ce {:.4} kl {:.2} nats val acc {}",
            epoch.loss,
            epoch.cross_entropy_nats,
            epoch.kl_nats,
            epoch
                .validation_accuracy
                .map_or("-".into(), |a| format!("{:.3}", a))
        ));
    })
    .context("training")?;
    bar.finish_and_clear();
    model
        .save(&args.out)
        .with_context(|| format!("saving model {}", args.out.display()))?;
    let summary = &model.card().training;
    println!("model          {}", args.out.display());
    println!("model id       {}", model.model_id());
    println!("classes        {}", model.card().classes.names().join(", "));
    println!(
        "samples        {} train, {} validation ({unit})",
        summary.train_samples, summary.validation_samples
    );
    println!(
        "epochs         {} run, best {}",
        history.len(),
        summary.best_epoch
    );
    println!("beta           {}", config.beta);
    println!("train accuracy {:.4}", summary.train_accuracy);
    if let Some(accuracy) = summary.validation_accuracy {
        println!("val accuracy   {accuracy:.4}");
    }
    println!("mean KL        {:.3} nats", summary.mean_kl_nats);
    Ok(())
}
