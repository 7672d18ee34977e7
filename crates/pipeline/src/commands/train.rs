//! `pipeline train`: fit a VIB classifier to labelled cubes and save it.

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};

use model::{EpochRecord, TrainConfig, VibModel};
use report::{Table, Values};

use super::{device, labelled, train_config, tune_settings};
use crate::cli::TrainArgs;
use crate::output::check_writable;
use crate::torch::Torch;

pub fn run(args: TrainArgs) -> Result<()> {
    let torch = crate::torch::required("training")?;
    check_writable(&args.out, args.overwrite)?;
    check_writable(&history_path(&args.out), args.overwrite)?;
    let device = device(&args.device)?;
    let samples = labelled::collect(&args.samples, args.unit)?;
    let (base, fixed) = train_config(&args.model, args.beta)?;
    let config = TrainConfig {
        deterministic: args.deterministic,
        ..base
    };
    let unit = labelled::unit_name(&args.samples, args.unit);
    let sources = labelled::source_names(&args.samples);
    let (model, history) = if args.model.no_tune {
        train_with_bar(torch, &samples, &config, device, sources, unit)?
    } else {
        let fixed = model::Fixed {
            beta: fixed.beta || args.deterministic,
            ..fixed
        };
        tune_with_progress(
            torch,
            &samples,
            &config,
            fixed,
            &tune_settings(&args.model),
            device,
            sources,
            unit,
        )?
    };
    model
        .save(&args.out)
        .with_context(|| format!("saving model {}", args.out.display()))?;
    let history_path = history_path(&args.out);
    write_history(
        &history_path,
        &history,
        model.model_id(),
        model.card().selection.as_ref(),
    )
    .with_context(|| format!("writing training history {}", history_path.display()))?;
    let card = model.card();
    let summary = &card.training;
    println!("model            {}", args.out.display());
    println!("model id         {}", model.model_id());
    match &card.target {
        Some(t) => println!(
            "target           {} (regression, Gaussian head): mean {:.4}, sd {:.4}, range {:.4} to {:.4}",
            t.name, t.mean, t.std, t.min, t.max
        ),
        None => println!("classes          {}", card.classes.names().join(", ")),
    }
    println!(
        "epochs           {} run, best {}",
        summary.epochs_run, summary.best_epoch
    );
    println!("beta             {}", card.beta);
    println!(
        "options          {}, latent {}, widths {:?}, weight decay {}, input noise {}, {} member(s)",
        model::describe_preprocessing(&card.train_config.preprocessing),
        card.architecture.latent_dim,
        card.architecture.hidden_dims,
        card.train_config.weight_decay,
        card.train_config.input_noise,
        card.members
    );
    if card.target.is_some() {
        print_regression_sets(card);
    } else {
        print_classifier_sets(card);
    }
    if let Some(selection) = &card.selection {
        print_selection(selection);
    }
    println!("unit             {unit}");
    println!("history          {}", history_path.display());
    Ok(())
}

/// Both sets' rate, likelihood and regression metrics, the OOD thresholds and the variance scale.
fn print_regression_sets(card: &model::ModelCard) {
    let summary = &card.training;
    println!(
        "h(Y) Gaussian    {:.4} nats (entropy of a Gaussian with the targets' variance)",
        summary.label_entropy_nats
    );
    println!(
        "{:<16} {:>8} {:>9} {:>9} {:>8} {:>9} {:>10} {:>10} {:>7}",
        "set", "samples", "RMSE", "MAE", "R2", "coverage", "-ln p nats", "KL nats", "active"
    );
    let sets = [
        ("train", Some(&summary.train)),
        ("validation", summary.validation.as_ref()),
    ];
    for (name, set) in sets {
        if let Some((d, m)) = set.and_then(|d| d.regression.as_ref().map(|m| (d, m))) {
            println!(
                "{name:<16} {:>8} {:>9.4} {:>9.4} {:>8.4} {:>9.3} {:>10.4} {:>10.3} {:>7}",
                d.samples,
                m.rmse,
                m.mae,
                m.r_squared,
                m.coverage,
                d.cross_entropy_nats,
                d.mean_kl_nats,
                d.active_dimensions
            );
        }
    }
    println!(
        "OOD thresholds   KL > {:.3} nats or predictive entropy > {:.4} nats ({}th percentile of {})",
        card.ood.kl_nats, card.ood.entropy_nats, card.ood.percentile, card.ood.calibrated_on
    );
    if let Some(t) = &card.target {
        match &t.calibration {
            Some(c) => println!(
                "calibration      variance x {:.4} (fitted on {} {} predictions: NLL {:.4} -> {:.4} nats, {:.0}% interval coverage {:.3} -> {:.3})",
                t.variance_scale, c.samples, c.fitted_on, c.nll_before_nats, c.nll_after_nats,
                100.0 * t.interval_level, c.coverage_before, c.coverage_after
            ),
            None => println!("calibration      none (no held-out predictions)"),
        }
    }
}

/// Both sets' accuracy, bounds and calibration, the OOD thresholds and the temperature.
fn print_classifier_sets(card: &model::ModelCard) {
    let summary = &card.training;
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
    if let Some(c) = &card.calibration {
        println!(
            "calibration      temperature {:.4}, class offsets {} (fitted on {} {} predictions: NLL {:.4} -> {:.4} nats, ECE {:.4} -> {:.4})",
            c.temperature, c.offsets_text(&card.classes), c.samples, c.fitted_on, c.nll_before_nats, c.nll_after_nats, c.ece_before, c.ece_after
        );
    }
}

/// Train exactly `config`, with a progress bar over the members' epochs.
pub(super) fn train_with_bar(
    torch: &dyn Torch,
    samples: &domain::SpectralSamples,
    config: &TrainConfig,
    device: model::DeviceChoice,
    sources: Vec<String>,
    unit: &str,
) -> Result<(VibModel, Vec<EpochRecord>)> {
    let bar = epoch_bar(config);
    let result = torch
        .train(samples, config, device, sources, unit, &mut |epoch| {
            show_epoch(&bar, config, epoch)
        })
        .context("training");
    bar.finish_and_clear();
    result
}

/// Select by cross-validation, then refit; each candidate is logged as it is scored.
#[allow(clippy::too_many_arguments)]
pub(super) fn tune_with_progress(
    torch: &dyn Torch,
    samples: &domain::SpectralSamples,
    config: &TrainConfig,
    fixed: model::Fixed,
    settings: &model::TuneSettings,
    device: model::DeviceChoice,
    sources: Vec<String>,
    unit: &str,
) -> Result<(VibModel, Vec<EpochRecord>)> {
    let spinner = ProgressBar::new_spinner();
    let mut bar: Option<ProgressBar> = None;
    let result = torch
        .tune(
            samples,
            config,
            fixed,
            settings,
            device,
            sources,
            unit,
            &mut |c| {
                spinner.set_message(format!(
                "selecting: candidate {} ({}, beta {:e}, latent {}) CV NLL {:.4} over {} fold(s)",
                c.id, c.preprocessing, c.beta, c.latent_dim, c.cv_nll_nats, c.folds_evaluated
            ));
                tracing::info!(
                    candidate = c.id,
                    preprocessing = %c.preprocessing,
                    beta = c.beta,
                    latent = c.latent_dim,
                    nll = c.cv_nll_nats,
                    accuracy = c.cv_accuracy,
                    folds = c.folds_evaluated,
                    "candidate"
                );
            },
            &mut |epoch| {
                let bar = bar.get_or_insert_with(|| {
                    spinner.finish_and_clear();
                    epoch_bar(config)
                });
                bar.set_position((epoch.member * config.epochs.max(1) + epoch.epoch) as u64);
                bar.set_message(format!("member {} epoch {}", epoch.member + 1, epoch.epoch));
            },
        )
        .context("training");
    spinner.finish_and_clear();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    result
}

fn epoch_bar(config: &TrainConfig) -> ProgressBar {
    ProgressBar::new((config.epochs * config.ensemble) as u64).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .expect("static template is valid"),
    )
}

fn show_epoch(bar: &ProgressBar, config: &TrainConfig, epoch: &EpochRecord) {
    bar.set_position((epoch.member * config.epochs + epoch.epoch) as u64);
    bar.set_message(format!(
        "member {} loss {:.4} ce {:.4} kl {:.2} nats val acc {}",
        epoch.member + 1,
        epoch.loss,
        epoch.cross_entropy_nats,
        epoch.kl_nats,
        epoch
            .validation_accuracy
            .map_or("-".into(), |a| format!("{:.3}", a))
    ));
}

/// The search table: every candidate, its cross-validated scores and cost, the winner marked.
pub(super) fn print_selection(selection: &model::Selection) {
    let regression = selection.candidates.iter().any(|c| c.cv_rmse.is_some());
    println!(
        "selection        {} folds, {:.0} of {:.0} s of training work; refit for {} epochs",
        selection.folds, selection.work_seconds, selection.budget_seconds, selection.refit_epochs
    );
    println!(
        "  {:>3} {:<15} {:<28} {:>7} {:>6} {:>13} {:>6} {:>6} {:>5} {:>9} {:>9} {:>8} {:>7}",
        "id",
        "race",
        "preprocessing",
        "beta",
        "latent",
        "widths",
        "decay",
        "noise",
        "folds",
        "CV NLL",
        "raw NLL",
        if regression { "CV RMSE" } else { "CV acc" },
        "seconds"
    );
    for c in &selection.candidates {
        println!(
            "{} {:>3} {:<15} {:<28} {:>7.0e} {:>6} {:>13} {:>6} {:>6} {:>5} {:>9.4} {:>9.4} {:>8.4} {:>7.1}",
            if c.id == selection.candidates[selection.winner].id { "*" } else { " " },
            c.id,
            c.race,
            c.preprocessing,
            c.beta,
            c.latent_dim,
            format!("{:?}", c.hidden_dims),
            c.weight_decay,
            c.input_noise,
            c.folds_evaluated,
            c.cv_nll_nats,
            c.cv_raw_nll_nats,
            c.cv_rmse.unwrap_or(c.cv_accuracy),
            c.wall_seconds
        );
    }
    println!("  winner: {}", selection.reason);
    if !regression {
        println!(
            "  the winner's ensemble out of fold: accuracy {:.4} ({:.0} s of training work for the other members)",
            selection.ensemble_cv_accuracy, selection.ensemble_work_seconds
        );
    }
}

/// `MODEL.safetensors` -> `MODEL.history.parquet`, beside the model.
pub fn history_path(model: &Path) -> PathBuf {
    model.with_extension("history.parquet")
}

/// One row per epoch: loss, cross-entropy, KL, accuracies, learning rate.
/// The model's selection table, when it has one, is in the file's metadata as JSON
/// (`pipeline.selection`).
pub fn write_history(
    path: &Path,
    history: &[EpochRecord],
    model_id: &str,
    selection: Option<&model::Selection>,
) -> Result<()> {
    let mut table = Table::default();
    table
        .push(
            "member",
            Values::U64(history.iter().map(|e| e.member as u64).collect()),
        )
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
    let mut metadata = vec![("pipeline.model_id".to_string(), model_id.to_string())];
    if let Some(selection) = selection {
        metadata.push((
            "pipeline.selection".to_string(),
            serde_json::to_string(selection)?,
        ));
    }
    report::write_table(path, &table, &metadata)?;
    Ok(())
}
