//! `pipeline train`: fit a VIB classifier to labelled cubes and save it.

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};

use model::{EpochRecord, TrainConfig, VibModel};
use report::{Table, Values};

use super::{device, labelled, train_config};
use crate::cli::TrainArgs;
use crate::output::check_writable;

pub fn run(args: TrainArgs) -> Result<()> {
    check_writable(&args.out, args.overwrite)?;
    check_writable(&history_path(&args.out), args.overwrite)?;
    let device = device(&args.device)?;
    let samples = labelled::collect(&args.samples, args.unit)?;
    let config = TrainConfig {
        deterministic: args.deterministic,
        ..train_config(&args.model, args.beta)?
    };
    let unit = labelled::unit_name(&args.samples, args.unit);
    let sources = labelled::source_names(&args.samples);
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
    let history_path = history_path(&args.out);
    write_history(&history_path, &history, model.model_id())
        .with_context(|| format!("writing training history {}", history_path.display()))?;
    let card = model.card();
    let summary = &card.training;
    println!("model            {}", args.out.display());
    println!("model id         {}", model.model_id());
    println!("classes          {}", card.classes.names().join(", "));
    println!(
        "epochs           {} run, best {}",
        summary.epochs_run, summary.best_epoch
    );
    println!("beta             {}", card.beta);
    println!("H(Y)             {:.4} nats", summary.label_entropy_nats);
    println!(
        "{:<16} {:>8} {:>9} {:>10} {:>10} {:>7} {:>7}",
        "set", "samples", "accuracy", "CE nats", "KL nats", "active", "ECE"
    );
    let sets = [
        ("train", Some(&summary.train)),
        ("validation", summary.validation.as_ref()),
    ];
    for (name, set) in sets {
        if let Some(d) = set {
            println!(
                "{name:<16} {:>8} {:>9.4} {:>10.4} {:>10.3} {:>7} {:>7.4}",
                d.samples,
                d.accuracy,
                d.cross_entropy_nats,
                d.mean_kl_nats,
                d.active_dimensions,
                d.expected_calibration_error
            );
        }
    }
    println!(
        "OOD thresholds   KL > {:.3} nats or entropy > {:.4} nats ({}th percentile of {})",
        card.ood.kl_nats, card.ood.entropy_nats, card.ood.percentile, card.ood.calibrated_on
    );
    println!("unit             {unit}");
    println!("history          {}", history_path.display());
    Ok(())
}

/// `MODEL.safetensors` -> `MODEL.history.parquet`, beside the model.
pub fn history_path(model: &Path) -> PathBuf {
    model.with_extension("history.parquet")
}

/// One row per epoch: loss, cross-entropy, KL, accuracies, learning rate.
pub fn write_history(path: &Path, history: &[EpochRecord], model_id: &str) -> Result<()> {
    let mut table = Table::default();
    table
        .push(
            "epoch",
            Values::U64(history.iter().map(|e| e.epoch as u64).collect()),
        )
        .push(
            "loss",
            Values::F64(history.iter().map(|e| e.loss).collect()),
        )
        .push(
            "cross_entropy_nats",
            Values::F64(history.iter().map(|e| e.cross_entropy_nats).collect()),
        )
        .push(
            "kl_nats",
            Values::F64(history.iter().map(|e| e.kl_nats).collect()),
        )
        .push(
            "train_accuracy",
            Values::F64(history.iter().map(|e| e.train_accuracy).collect()),
        )
        .push(
            "validation_loss",
            Values::OptionalF64(history.iter().map(|e| e.validation_loss).collect()),
        )
        .push(
            "validation_accuracy",
            Values::OptionalF64(history.iter().map(|e| e.validation_accuracy).collect()),
        )
        .push(
            "learning_rate",
            Values::F64(history.iter().map(|e| e.learning_rate).collect()),
        );
    report::write_table(
        path,
        &table,
        &[("pipeline.model_id".into(), model_id.into())],
    )?;
    Ok(())
}
