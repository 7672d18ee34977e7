//! `pipeline sweep`: the beta trade-off made visible.

use anyhow::{bail, Context, Result};
use model::{TrainConfig, VibModel};
use report::{SweepPoint, Table, Values};

use super::train::{history_path, write_history};
use super::{device, labelled, train_config, tune_settings};
use crate::cli::SweepArgs;
use crate::output::{check_writable, write_atomically};

const LN_2: f64 = std::f64::consts::LN_2;

/// Per beta: the bounds, accuracies and calibration of the kept weights.
struct Row {
    beta: f64,
    model: VibModel,
    history: Vec<model::EpochRecord>,
}

pub fn run(args: SweepArgs) -> Result<()> {
    let torch = crate::torch::required("sweep")?;
    if args.betas.is_empty() {
        bail!("--betas: give at least one beta");
    }
    if let Some(b) = args.betas.iter().find(|b| !(b.is_finite() && **b >= 0.0)) {
        bail!("--betas: {b} is not a finite number >= 0");
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create the output folder", args.out.display()))?;
    let outputs = [
        "sweep.parquet",
        "sweep.json",
        "information-plane.svg",
        "information-plane.png",
        "beta-curves.svg",
        "beta-curves.png",
        "model.safetensors",
        "model.history.parquet",
    ];
    for name in outputs {
        check_writable(&args.out.join(name), args.overwrite)?;
    }
    let device = device(&args.device)?;
    let (base, fixed) = train_config(&args.model, None)?;
    let samples = labelled::collect(&args.samples, args.unit)?;
    // Select the other options once (beta searched too), then sweep beta with them.
    let (base, selection) = if args.model.no_tune {
        (base, None)
    } else {
        let (config, selection) = torch
            .select(
                &samples,
                &base,
                fixed,
                &tune_settings(&args.model),
                device,
                &mut |c| tracing::info!(candidate = c.id, nll = c.cv_nll_nats, "candidate"),
            )
            .context("selecting the options")?;
        super::train::print_selection(&selection);
        (config, Some(selection))
    };
    let unit = labelled::unit_name(&args.samples, args.unit);
    let sources: Vec<String> = labelled::source_names(&args.samples);
    let mut rows = Vec::new();
    for &beta in &args.betas {
        let _span = tracing::info_span!("sweep", beta).entered();
        let config = TrainConfig {
            beta,
            ..base.clone()
        };
        let (model, history) = torch
            .train(
                &samples,
                &config,
                device,
                sources.clone(),
                unit,
                &mut |_| {},
            )
            .with_context(|| format!("training with beta {beta}"))?;
        tracing::info!(beta, epochs = history.len(), "trained");
        rows.push(Row {
            beta,
            model,
            history,
        });
    }
    // Recommend the lowest validation NLL (training NLL when there is no validation split).
    let score = |r: &Row| {
        let t = &r.model.card().training;
        t.validation
            .as_ref()
            .unwrap_or(&t.train)
            .negative_log_likelihood_nats
    };
    let best = (0..rows.len())
        .min_by(|&a, &b| score(&rows[a]).total_cmp(&score(&rows[b])))
        .expect("at least one beta");

    let table = sweep_table(&rows, best);
    report::write_table(
        &args.out.join("sweep.parquet"),
        &table,
        &[("pipeline.unit".into(), unit.into())],
    )?;
    let points: Vec<SweepPoint> = rows
        .iter()
        .map(|r| {
            let t = &r.model.card().training;
            SweepPoint {
                beta: r.beta,
                rate_bits: t.train.mean_kl_nats / LN_2,
                relevance_bits: (t.label_entropy_nats - t.train.cross_entropy_nats) / LN_2,
                train_accuracy: t.train.accuracy,
                validation_accuracy: t.validation.as_ref().map(|v| v.accuracy),
                validation_rate_bits: t.validation.as_ref().map(|v| v.mean_kl_nats / LN_2),
                validation_relevance_bits: t
                    .validation
                    .as_ref()
                    .map(|v| (t.label_entropy_nats - v.cross_entropy_nats) / LN_2),
            }
        })
        .collect();
    report::write_sweep_plots(&args.out, &points)?;
    let records: Vec<model::SweepRecord> = rows
        .iter()
        .map(|r| {
            let t = &r.model.card().training;
            model::SweepRecord {
                beta: r.beta,
                train_rate_nats: t.train.mean_kl_nats,
                train_relevance_nats: t.label_entropy_nats - t.train.cross_entropy_nats,
                validation_rate_nats: t.validation.as_ref().map(|v| v.mean_kl_nats),
                validation_relevance_nats: t
                    .validation
                    .as_ref()
                    .map(|v| t.label_entropy_nats - v.cross_entropy_nats),
                train_accuracy: t.train.accuracy,
                validation_accuracy: t.validation.as_ref().map(|v| v.accuracy),
            }
        })
        .collect();
    let chosen = &mut rows[best];
    chosen.model.set_sweep(records)?;
    if let Some(selection) = selection {
        chosen.model.set_selection(selection)?;
    }
    let chosen = &rows[best];
    let model_path = args.out.join("model.safetensors");
    chosen.model.save(&model_path)?;
    write_history(
        &history_path(&model_path),
        &chosen.history,
        chosen.model.model_id(),
        chosen.model.card().selection.as_ref(),
    )?;
    let summary = serde_json::json!({
        "recommended_beta": chosen.beta,
        "criterion": if chosen.model.card().training.validation.is_some() { "lowest validation NLL" } else { "lowest training NLL (no validation split)" },
        "model": model_path.display().to_string(),
        "model_id": chosen.model.model_id(),
        "betas": args.betas,
        "cubes": sources,
        "unit": unit,
        "seed": args.model.seed,
        "latent_dim": chosen.model.card().architecture.latent_dim,
    });
    write_atomically(
        &args.out.join("sweep.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;

    let regression = rows[0].model.card().target.is_some();
    // A regression model's accuracy columns show its RMSE.
    let score = |d: &model::SetDiagnostics| d.regression.as_ref().map_or(d.accuracy, |m| m.rmse);
    let (train_score, val_score) = if regression {
        ("train RMSE", "val RMSE")
    } else {
        ("train acc", "val acc")
    };
    println!(
        "{:>8} {:>10} {:>12} {:>10} {:>10} {:>10} {:>8}",
        "beta", "rate bits", "I(Z;Y)>= bits", train_score, val_score, "val NLL", "active"
    );
    for (i, r) in rows.iter().enumerate() {
        let t = &r.model.card().training;
        let v = t.validation.as_ref();
        println!(
            "{:>8.0e} {:>10.3} {:>12.4} {:>10.4} {:>10} {:>10} {:>8}{}",
            r.beta,
            t.train.mean_kl_nats / LN_2,
            (t.label_entropy_nats - t.train.cross_entropy_nats) / LN_2,
            score(&t.train),
            v.map_or("-".into(), |v| format!("{:.4}", score(v))),
            v.map_or("-".into(), |v| format!(
                "{:.4}",
                v.negative_log_likelihood_nats
            )),
            t.train.active_dimensions,
            if i == best { "  <- recommended" } else { "" }
        );
    }
    println!(
        "{} = {:.4} bits; written to {}",
        if regression {
            "h(Y) of a Gaussian of the targets' variance"
        } else {
            "H(Y)"
        },
        rows[0].model.card().training.label_entropy_nats / LN_2,
        args.out.display()
    );
    Ok(())
}

fn sweep_table(rows: &[Row], best: usize) -> Table {
    let training = |f: &dyn Fn(&model::TrainingSummary) -> f64| -> Vec<f64> {
        rows.iter().map(|r| f(&r.model.card().training)).collect()
    };
    let validation = |f: &dyn Fn(&model::SetDiagnostics, f64) -> f64| -> Vec<Option<f64>> {
        rows.iter()
            .map(|r| {
                let t = &r.model.card().training;
                t.validation.as_ref().map(|v| f(v, t.label_entropy_nats))
            })
            .collect()
    };
    let mut table = Table::default();
    table
        .push("beta", Values::F64(rows.iter().map(|r| r.beta).collect()))
        .push(
            "rate_nats",
            Values::F64(training(&|t| t.train.mean_kl_nats)),
        )
        .push(
            "rate_bits",
            Values::F64(training(&|t| t.train.mean_kl_nats / LN_2)),
        )
        .push(
            "label_entropy_nats",
            Values::F64(training(&|t| t.label_entropy_nats)),
        )
        .push(
            "cross_entropy_nats",
            Values::F64(training(&|t| t.train.cross_entropy_nats)),
        )
        .push(
            "izy_lower_bound_nats",
            Values::F64(training(&|t| {
                t.label_entropy_nats - t.train.cross_entropy_nats
            })),
        )
        .push(
            "izy_lower_bound_bits",
            Values::F64(training(&|t| {
                (t.label_entropy_nats - t.train.cross_entropy_nats) / LN_2
            })),
        )
        .push(
            "train_accuracy",
            Values::F64(training(&|t| t.train.accuracy)),
        )
        .push(
            "train_nll_nats",
            Values::F64(training(&|t| t.train.negative_log_likelihood_nats)),
        )
        .push(
            "validation_accuracy",
            Values::OptionalF64(validation(&|v, _| v.accuracy)),
        )
        .push(
            "validation_nll_nats",
            Values::OptionalF64(validation(&|v, _| v.negative_log_likelihood_nats)),
        )
        .push(
            "validation_ece",
            Values::OptionalF64(validation(&|v, _| v.expected_calibration_error)),
        )
        .push(
            "validation_rate_nats",
            Values::OptionalF64(validation(&|v, _| v.mean_kl_nats)),
        )
        .push(
            "validation_izy_lower_bound_nats",
            Values::OptionalF64(validation(&|v, h| h - v.cross_entropy_nats)),
        )
        .push(
            "active_dimensions",
            Values::U64(
                rows.iter()
                    .map(|r| r.model.card().training.train.active_dimensions as u64)
                    .collect(),
            ),
        )
        .push(
            "epochs_run",
            Values::U64(
                rows.iter()
                    .map(|r| r.model.card().training.epochs_run as u64)
                    .collect(),
            ),
        )
        .push(
            "best_epoch",
            Values::U64(
                rows.iter()
                    .map(|r| r.model.card().training.best_epoch as u64)
                    .collect(),
            ),
        )
        .push(
            "model_id",
            Values::Str(
                rows.iter()
                    .map(|r| r.model.model_id().to_string())
                    .collect(),
            ),
        )
        .push(
            "recommended",
            Values::Bool((0..rows.len()).map(|i| i == best).collect()),
        );
    // A regression model's own scores (its accuracy columns are 0).
    if rows.iter().all(|r| r.model.card().target.is_some()) {
        let regression = |d: &model::SetDiagnostics, f: fn(&model::RegressionMetrics) -> f64| {
            d.regression.as_ref().map(f)
        };
        let training = |f: fn(&model::RegressionMetrics) -> f64| -> Vec<Option<f64>> {
            rows.iter()
                .map(|r| regression(&r.model.card().training.train, f))
                .collect()
        };
        let validation = |f: fn(&model::RegressionMetrics) -> f64| -> Vec<Option<f64>> {
            rows.iter()
                .map(|r| {
                    r.model
                        .card()
                        .training
                        .validation
                        .as_ref()
                        .and_then(|v| regression(v, f))
                })
                .collect()
        };
        table
            .push("train_rmse", Values::OptionalF64(training(|m| m.rmse)))
            .push(
                "train_r_squared",
                Values::OptionalF64(training(|m| m.r_squared)),
            )
            .push(
                "validation_rmse",
                Values::OptionalF64(validation(|m| m.rmse)),
            )
            .push(
                "validation_r_squared",
                Values::OptionalF64(validation(|m| m.r_squared)),
            )
            .push(
                "validation_interval_coverage",
                Values::OptionalF64(validation(|m| m.coverage)),
            );
    }
    table
}
