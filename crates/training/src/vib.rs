//! Training a model: its members fitted, then diagnosed, calibrated and described in its card
//! ([`Train`] for `model::VibModel`).

use std::sync::Arc;

use domain::{Prediction, SpectralSamples, ValuePrediction};
use model::{
    active, average, calibrated_nll, fit_calibration, fit_variance_scale, grouped_split, identity,
    label_entropy_nats, moments, reliability_bins, strata, Calibration, CandidateRecord,
    DeviceChoice, EpochRecord, Error, Fixed, Head, Metrics, ModelCard, OodThresholds,
    RawPrediction, RegressionCalibration, RegressionMetrics, RegressionTarget, Result, Selection,
    SetDiagnostics, TrainConfig, TrainingSummary, TuneSettings, VibModel, FORMAT_VERSION,
    RELIABILITY_BINS,
};

use crate::device::resolve;
use crate::diagnostics::diagnose;
use crate::ensemble::{DeviceMembers, TorchNet};
use crate::error::TorchContext;
use crate::regression::rate_and_likelihood;
use crate::selection::select;
use crate::training::{architecture, fit, Batch, Features};

/// Samples of z for the diagnostics and calibration at the end of training (as at prediction).
const DIAGNOSTIC_Z_SAMPLES: usize = 12;

/// libtorch's default generator is global: seeded work (training, the diagnostics' samples of z)
/// holds this lock, so that concurrent work in one process cannot interleave draws and break
/// determinism.
static SEEDED_WORK: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub(crate) fn seeded_lock() -> std::sync::MutexGuard<'static, ()> {
    SEEDED_WORK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The training and validation sets of one training.
struct Sets<'a> {
    train: &'a Batch,
    validation: Option<&'a Batch>,
    val_idx: &'a [usize],
}

/// Where the temperature and the OOD thresholds are fitted.
enum HeldOut {
    /// The validation split of this training.
    Validation,
    /// Cross-validation predictions of the selected configuration, one per sample.
    OutOfFold(Vec<(usize, RawPrediction)>),
}

/// Checked inputs of a training: class index (or target stratum) of each sample and, for a
/// continuous target, its standardised values and description.
pub(crate) struct Checked {
    pub targets: Vec<usize>,
    pub regression: Option<(Vec<f32>, RegressionTarget)>,
}

impl Checked {
    fn values(&self) -> Option<(&[f32], f64)> {
        self.regression
            .as_ref()
            .map(|(v, target)| (v.as_slice(), target.std))
    }
}

fn check_samples(samples: &SpectralSamples) -> Result<Checked> {
    let targets = check_classes(samples)?;
    let Some(values) = &samples.values else {
        return Ok(Checked {
            targets,
            regression: None,
        });
    };
    if values.len() != samples.len() {
        return Err(Error::Data(format!(
            "{} target values for {} samples",
            values.len(),
            samples.len()
        )));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(Error::Data(format!(
            "sample {}: target value {} is not a finite number",
            i + 1,
            values[i]
        )));
    }
    let name = samples
        .classes
        .iter()
        .next()
        .map_or_else(|| "target".to_string(), |c| c.name.clone());
    let target = RegressionTarget::describe(&name, values);
    Ok(Checked {
        targets: strata(values),
        regression: Some((target.standardise(values), target)),
    })
}

/// Class index of each sample.
fn check_classes(samples: &SpectralSamples) -> Result<Vec<usize>> {
    let (n, bands) = (samples.len(), samples.axis.len());
    if n < 2 {
        return Err(Error::Data(format!("{n} samples; at least 2 are needed")));
    }
    if samples.spectra.len() != n * bands || samples.groups.len() != n {
        return Err(Error::Data(
            "spectra, labels and groups differ in length".into(),
        ));
    }
    if let Some(i) = samples.spectra.iter().position(|v| !v.is_finite()) {
        return Err(Error::Data(format!(
            "sample {} band {} is not a finite number",
            i / bands + 1,
            i % bands + 1
        )));
    }
    samples
        .label_codes
        .iter()
        .map(|&c| {
            samples
                .classes
                .index_of_code(c)
                .ok_or_else(|| Error::Data(format!("label code {c} is not among the classes")))
        })
        .collect()
}

/// Training for [`VibModel`]: `VibModel::train`, `tune` and `select` with this trait in scope.
pub trait Train: Sized {
    /// Train exactly `config` on labelled spectra (`config.ensemble` networks); the temperature
    /// and OOD thresholds are fitted on the validation split when there is one. `sources` and
    /// `unit` are recorded in the model card.
    fn train(
        samples: &SpectralSamples,
        config: &TrainConfig,
        device: DeviceChoice,
        sources: Vec<String>,
        unit: &str,
        on_epoch: impl FnMut(&EpochRecord),
    ) -> Result<(Self, Vec<EpochRecord>)>;

    /// Select the options by cross-validation (see `selection.rs`), searching what `fixed` does
    /// not name around `config`, then refit the winner on all the training data for the epochs
    /// the cross-validation found, with the temperature and OOD thresholds fitted on its
    /// out-of-fold predictions. The search is recorded in the model card.
    #[allow(clippy::too_many_arguments)]
    fn tune(
        samples: &SpectralSamples,
        config: &TrainConfig,
        fixed: Fixed,
        settings: &TuneSettings,
        device: DeviceChoice,
        sources: Vec<String>,
        unit: &str,
        on_candidate: impl FnMut(&CandidateRecord),
        on_epoch: impl FnMut(&EpochRecord),
    ) -> Result<(Self, Vec<EpochRecord>)>;

    /// Only the selection of [`Train::tune`]: the winning options (with `config`'s epochs and
    /// validation fraction, to train as [`Train::train`] does) and the search.
    fn select(
        samples: &SpectralSamples,
        config: &TrainConfig,
        fixed: Fixed,
        settings: &TuneSettings,
        device: DeviceChoice,
        on_candidate: impl FnMut(&CandidateRecord),
    ) -> Result<(TrainConfig, Selection)>;
}

impl Train for VibModel {
    fn train(
        samples: &SpectralSamples,
        config: &TrainConfig,
        device: DeviceChoice,
        sources: Vec<String>,
        unit: &str,
        mut on_epoch: impl FnMut(&EpochRecord),
    ) -> Result<(Self, Vec<EpochRecord>)> {
        config.validate()?;
        let device = resolve(device)?;
        let checked = check_samples(samples)?;
        assemble(
            samples,
            &checked,
            config,
            device,
            HeldOut::Validation,
            None,
            sources,
            unit,
            &mut on_epoch,
        )
    }

    fn tune(
        samples: &SpectralSamples,
        config: &TrainConfig,
        fixed: Fixed,
        settings: &TuneSettings,
        device: DeviceChoice,
        sources: Vec<String>,
        unit: &str,
        mut on_candidate: impl FnMut(&CandidateRecord),
        mut on_epoch: impl FnMut(&EpochRecord),
    ) -> Result<(Self, Vec<EpochRecord>)> {
        let (device, checked, outcome) =
            run_selection(samples, config, fixed, settings, device, &mut on_candidate)?;
        assemble(
            samples,
            &checked,
            &outcome.config,
            device,
            HeldOut::OutOfFold(outcome.out_of_fold),
            Some(outcome.selection),
            sources,
            unit,
            &mut on_epoch,
        )
    }

    fn select(
        samples: &SpectralSamples,
        config: &TrainConfig,
        fixed: Fixed,
        settings: &TuneSettings,
        device: DeviceChoice,
        mut on_candidate: impl FnMut(&CandidateRecord),
    ) -> Result<(TrainConfig, Selection)> {
        let (_, _, outcome) =
            run_selection(samples, config, fixed, settings, device, &mut on_candidate)?;
        Ok((
            TrainConfig {
                epochs: config.epochs,
                validation_fraction: config.validation_fraction,
                ..outcome.config
            },
            outcome.selection,
        ))
    }
}

/// Check the inputs, then select: the device, the class index of each sample, the outcome.
fn run_selection(
    samples: &SpectralSamples,
    config: &TrainConfig,
    fixed: Fixed,
    settings: &TuneSettings,
    device: DeviceChoice,
    on_candidate: &mut dyn FnMut(&CandidateRecord),
) -> Result<(tch::Device, Checked, crate::selection::Outcome)> {
    config.validate()?;
    let device = resolve(device)?;
    let checked = check_samples(samples)?;
    let outcome = select(
        samples,
        &checked.targets,
        checked.values(),
        config,
        fixed,
        settings,
        device,
        on_candidate,
    )?;
    Ok((device, checked, outcome))
}

/// Train the members, then diagnose, calibrate and describe them.
#[allow(clippy::too_many_arguments)]
fn assemble(
    samples: &SpectralSamples,
    checked: &Checked,
    config: &TrainConfig,
    device: tch::Device,
    held_out: HeldOut,
    selection: Option<Selection>,
    sources: Vec<String>,
    unit: &str,
    on_epoch: &mut dyn FnMut(&EpochRecord),
) -> Result<(VibModel, Vec<EpochRecord>)> {
    let targets = checked.targets.as_slice();
    let (train_idx, val_idx) = grouped_split(
        targets,
        &samples.groups,
        config.validation_fraction,
        config.seed,
    );
    // The preprocessing chain, then standardisation from training samples only.
    let data = Features::prepare(samples, &config.preprocessing, targets)?
        .with_target_values(checked.values().map(|(v, _)| v));
    let (input_mean, input_std) = data.standardisation(&train_idx);
    let train = Batch::new(&data, &train_idx, &input_mean, &input_std, device)?;
    let validation = if val_idx.is_empty() {
        None
    } else {
        Some(Batch::new(
            &data,
            &val_idx,
            &input_mean,
            &input_std,
            device,
        )?)
    };
    let head = if checked.regression.is_some() {
        Head::Gaussian
    } else {
        Head::Classifier
    };
    let architecture = architecture(config, data.features, head, samples.classes.len())?;
    let _span = tracing::info_span!("train", samples = samples.len(), device = ?device).entered();
    let mut history = Vec::new();
    let mut members = Vec::with_capacity(config.ensemble);
    let mut first = (0, 0);
    for m in 0..config.ensemble {
        let fitted = fit(
            &train,
            validation.as_ref(),
            &architecture,
            config,
            config.seed.wrapping_add(m as u64),
            device,
            &mut |record: &EpochRecord| {
                let record = EpochRecord {
                    member: m,
                    ..record.clone()
                };
                on_epoch(&record);
            },
        )?;
        if m == 0 {
            first = (fitted.history.len(), fitted.best_epoch);
        }
        history.extend(
            fitted
                .history
                .into_iter()
                .map(|r| EpochRecord { member: m, ..r }),
        );
        members.push(TorchNet {
            vs: fitted.vs,
            net: fitted.net,
        });
    }
    let classes = &samples.classes;
    let tensors = members
        .iter()
        .map(TorchNet::tensors)
        .collect::<Result<Vec<_>>>()?;
    let card = ModelCard {
        format_version: FORMAT_VERSION,
        architecture,
        axis: samples.axis.clone(),
        classes: classes.clone(),
        input_mean,
        input_std,
        beta: config.beta,
        train_config: config.clone(),
        training: TrainingSummary {
            sources,
            unit: unit.to_string(),
            epochs_run: first.0,
            best_epoch: first.1,
            label_entropy_nats: 0.0,
            train: SetDiagnostics::empty(),
            validation: None,
        },
        ood: OodThresholds::calibrate(&[], config.ood_percentile, "training"),
        sweep: None,
        members: config.ensemble,
        calibration: None,
        selection,
        target: checked.regression.as_ref().map(|(_, t)| t.clone()),
    };
    let members = Arc::new(DeviceMembers::new(members, card.architecture.clone()));
    let mut model = VibModel::from_members(card, tensors)?;
    if device != tch::Device::Cpu {
        model = model.with_accelerator(members.clone());
    }
    let mut model = Assembly { model, members };
    if let Some((values, _)) = &checked.regression {
        let sets = Sets {
            train: &train,
            validation: validation.as_ref(),
            val_idx: &val_idx,
        };
        model.finish_regression(values, held_out, &sets, config)?;
        return Ok((model.model, history));
    }

    // Calibration: the temperature from held-out predictions.
    let (held_predictions, held_truth, fitted_on) = match held_out {
        HeldOut::OutOfFold(predictions) => {
            let truth = predictions.iter().map(|(i, _)| targets[*i]).collect();
            let raw = predictions.into_iter().map(|(_, p)| p).collect();
            (Some(raw), truth, "out-of-fold")
        }
        HeldOut::Validation => match &validation {
            Some(v) => {
                let x: Vec<f32> = Vec::try_from(v.x.to_device(tch::Device::Cpu).flatten(0, -1))
                    .doing("copying validation spectra")?;
                let raw =
                    model
                        .model
                        .raw_predictions(&x, v.rows, DIAGNOSTIC_Z_SAMPLES, config.seed)?;
                (
                    Some(raw),
                    val_idx.iter().map(|&i| targets[i]).collect(),
                    "validation",
                )
            }
            None => (None, Vec::new(), "training"),
        },
    };
    if let Some(raw) = &held_predictions {
        let views: Vec<&[f32]> = raw.iter().map(|r| r.probabilities.as_slice()).collect();
        let scaling = fit_calibration(&views, &held_truth);
        let before: Vec<Prediction> = raw
            .iter()
            .map(|r| model.model.finish(r, &identity()))
            .collect();
        let after: Vec<Prediction> = raw
            .iter()
            .map(|r| model.model.finish(r, &scaling))
            .collect();
        let m_before = Metrics::compute(classes, &held_truth, &before);
        let m_after = Metrics::compute(classes, &held_truth, &after);
        let calibration = Calibration {
            temperature: scaling.0,
            class_log_bias: scaling.1.clone(),
            fitted_on: fitted_on.to_string(),
            samples: held_truth.len(),
            nll_before_nats: calibrated_nll(&views, &held_truth, 1.0, &[]),
            nll_after_nats: calibrated_nll(&views, &held_truth, scaling.0, &scaling.1),
            ece_before: m_before.expected_calibration_error,
            ece_after: m_after.expected_calibration_error,
            reliability_before: reliability_bins(&before, &held_truth, RELIABILITY_BINS),
            reliability_after: reliability_bins(&after, &held_truth, RELIABILITY_BINS),
        };
        let ood = OodThresholds::calibrate(&after, config.ood_percentile, fitted_on);
        model.model.update_card(|card| {
            card.calibration = Some(calibration);
            card.ood = ood;
        })?;
    }

    // Diagnostics of the kept weights on both sets, with 12 samples of z as at prediction.
    let (train_diagnostics, train_predictions) = model.diagnose_set(&train, config.seed)?;
    if held_predictions.is_none() {
        let ood = OodThresholds::calibrate(&train_predictions, config.ood_percentile, "training");
        model.model.update_card(|card| card.ood = ood)?;
    }
    let validation_diagnostics = match &validation {
        Some(v) => Some(model.diagnose_set(v, config.seed)?.0),
        None => None,
    };
    let train_targets: Vec<usize> = train_idx.iter().map(|&i| targets[i]).collect();
    model.model.update_card(|card| {
        card.training.label_entropy_nats = label_entropy_nats(&train_targets, classes.len());
        card.training.train = train_diagnostics;
        card.training.validation = validation_diagnostics;
    })?;
    Ok((model.model, history))
}

/// A model being assembled, and its members in libtorch (for the diagnostics).
struct Assembly {
    model: VibModel,
    members: Arc<DeviceMembers>,
}

impl Assembly {
    /// The regression counterpart of the end of [`assemble`]: the variance scale and the
    /// OOD thresholds from the held-out predictions, diagnostics on both sets, the model id.
    fn finish_regression(
        &mut self,
        values: &[f32],
        held_out: HeldOut,
        sets: &Sets,
        config: &TrainConfig,
    ) -> Result<()> {
        let mut target = self
            .model
            .card()
            .target
            .clone()
            .expect("a regression model has a target");
        // (sample indices, their raw predictions) held out of the fit, and where they come from.
        type Held = Option<(Vec<usize>, Vec<RawPrediction>)>;
        let (held, fitted_on): (Held, &str) = match held_out {
            HeldOut::OutOfFold(predictions) => {
                (Some(predictions.into_iter().unzip()), "out-of-fold")
            }
            HeldOut::Validation => match sets.validation {
                Some(v) => {
                    let x: Vec<f32> = Vec::try_from(v.x.to_device(tch::Device::Cpu).flatten(0, -1))
                        .doing("copying validation spectra")?;
                    let raw = self.model.raw_predictions(
                        &x,
                        v.rows,
                        DIAGNOSTIC_Z_SAMPLES,
                        config.seed,
                    )?;
                    (Some((sets.val_idx.to_vec(), raw)), "validation")
                }
                None => (None, "training"),
            },
        };
        let to_units = |i: &usize| target.mean + target.std * values[*i] as f64;
        if let Some((idx, raw)) = &held {
            let predicted: Vec<(f64, f64)> = raw.iter().map(moments).collect();
            let standardised: Vec<f64> = idx.iter().map(|&i| values[i] as f64).collect();
            let scale = fit_variance_scale(&predicted, &standardised);
            let truth: Vec<f64> = idx.iter().map(to_units).collect();
            let before: Vec<ValuePrediction> = raw
                .iter()
                .map(|r| target.value_prediction(r, 1.0))
                .collect();
            let after: Vec<ValuePrediction> = raw
                .iter()
                .map(|r| target.value_prediction(r, scale))
                .collect();
            let m_before = RegressionMetrics::compute(&truth, &before, target.interval_level);
            let m_after = RegressionMetrics::compute(&truth, &after, target.interval_level);
            target.variance_scale = scale;
            target.calibration = Some(RegressionCalibration {
                fitted_on: fitted_on.to_string(),
                samples: truth.len(),
                nll_before_nats: m_before.negative_log_likelihood_nats,
                nll_after_nats: m_after.negative_log_likelihood_nats,
                coverage_before: m_before.coverage,
                coverage_after: m_after.coverage,
            });
            let ood = OodThresholds::calibrate_values(&after, config.ood_percentile, fitted_on);
            self.model.update_card(|card| card.ood = ood)?;
        }
        let entropy = target.gaussian_entropy_nats();
        self.model.update_card(|card| card.target = Some(target))?;
        let (train_diagnostics, train_predictions) =
            self.diagnose_values(sets.train, config.seed)?;
        if held.is_none() {
            let ood = OodThresholds::calibrate_values(
                &train_predictions,
                config.ood_percentile,
                "training",
            );
            self.model.update_card(|card| card.ood = ood)?;
        }
        let validation_diagnostics = match sets.validation {
            Some(v) => Some(self.diagnose_values(v, config.seed)?.0),
            None => None,
        };
        self.model.update_card(|card| {
            card.training.label_entropy_nats = entropy;
            card.training.train = train_diagnostics;
            card.training.validation = validation_diagnostics;
        })
    }

    /// Diagnostics of a regression ensemble on one set: each member's rate and -ln p(y|z) by
    /// libtorch's Monte Carlo (averaged over members, in target units), and the metrics of the
    /// calibrated predictions.
    fn diagnose_values(
        &self,
        set: &Batch,
        seed: u64,
    ) -> Result<(SetDiagnostics, Vec<ValuePrediction>)> {
        let target = self
            .model
            .card()
            .target
            .as_ref()
            .expect("a regression model has a target");
        let per_member = self.each_member_seeded(seed, |net| {
            rate_and_likelihood(net, &set.x, &set.y, DIAGNOSTIC_Z_SAMPLES)
        })?;
        let members = per_member.len() as f64;
        let dims = self.model.card().architecture.latent_dim;
        let kl_per_dimension_nats: Vec<f64> = (0..dims)
            .map(|j| per_member.iter().map(|(_, k)| k[j]).sum::<f64>() / members)
            .collect();
        let nll_standardised = per_member.iter().map(|(n, _)| n).sum::<f64>() / members;
        let x: Vec<f32> = Vec::try_from(set.x.to_device(tch::Device::Cpu).flatten(0, -1))
            .doing("copying spectra")?;
        let standardised: Vec<f32> =
            Vec::try_from(set.y.to_device(tch::Device::Cpu)).doing("copying targets")?;
        let truth: Vec<f64> = standardised
            .iter()
            .map(|&v| target.mean + target.std * v as f64)
            .collect();
        let predictions: Vec<ValuePrediction> = self
            .model
            .raw_predictions(&x, set.rows, DIAGNOSTIC_Z_SAMPLES, seed)?
            .iter()
            .map(|r| self.model.finish_value(r))
            .collect();
        let metrics = RegressionMetrics::compute(&truth, &predictions, target.interval_level);
        Ok((
            SetDiagnostics {
                samples: set.rows,
                accuracy: 0.0,
                cross_entropy_nats: nll_standardised + target.std.ln(),
                mean_kl_nats: kl_per_dimension_nats.iter().sum(),
                active_dimensions: active(&kl_per_dimension_nats),
                kl_per_dimension_nats,
                negative_log_likelihood_nats: metrics.negative_log_likelihood_nats,
                expected_calibration_error: 0.0,
                regression: Some(metrics),
            },
            predictions,
        ))
    }

    /// `work` on each member's network in member order, holding the seeded-work lock with
    /// libtorch's generator seeded by `seed` (the diagnostics' samples of z).
    fn each_member_seeded<T>(
        &self,
        seed: u64,
        work: impl Fn(&crate::network::VibNet) -> Result<T>,
    ) -> Result<Vec<T>> {
        let _seeded = seeded_lock();
        tch::manual_seed(seed as i64);
        self.members
            .nets()
            .iter()
            .map(|member| work(&member.net))
            .collect()
    }

    /// Diagnostics of the ensemble on one set: each member's rate and cross-entropy by libtorch's
    /// Monte Carlo (averaged over members), accuracy, NLL and ECE of the tempered ensemble.
    fn diagnose_set(&self, set: &Batch, seed: u64) -> Result<(SetDiagnostics, Vec<Prediction>)> {
        let classes = &self.model.card().classes;
        let per_member = self.each_member_seeded(seed, |net| {
            diagnose(net, &set.x, &set.y, classes, DIAGNOSTIC_Z_SAMPLES)
        })?;
        let truth: Vec<usize> = Vec::<i64>::try_from(set.y.to_device(tch::Device::Cpu))
            .doing("copying labels")?
            .into_iter()
            .map(|c| c as usize)
            .collect();
        let raw: Vec<Vec<RawPrediction>> = per_member
            .iter()
            .map(|(_, predictions)| {
                predictions
                    .iter()
                    .map(|p| RawPrediction {
                        probabilities: p.probabilities.clone(),
                        kl_nats: p.kl_nats,
                    })
                    .collect()
            })
            .collect();
        let scaling = self.model.card().scaling();
        let predictions: Vec<Prediction> = average(raw)
            .iter()
            .map(|r| self.model.finish(r, &scaling))
            .collect();
        let metrics = Metrics::compute(classes, &truth, &predictions);
        let members = per_member.len() as f64;
        let mean_of = |f: &dyn Fn(&SetDiagnostics) -> f64| {
            per_member.iter().map(|(d, _)| f(d)).sum::<f64>() / members
        };
        let dims = self.model.card().architecture.latent_dim;
        let kl_per_dimension_nats: Vec<f64> = (0..dims)
            .map(|j| mean_of(&|d| d.kl_per_dimension_nats[j]))
            .collect();
        Ok((
            SetDiagnostics {
                samples: truth.len(),
                accuracy: metrics.overall_accuracy,
                cross_entropy_nats: mean_of(&|d| d.cross_entropy_nats),
                mean_kl_nats: mean_of(&|d| d.mean_kl_nats),
                active_dimensions: kl_per_dimension_nats
                    .iter()
                    .filter(|&&k| k > model::ACTIVE_DIMENSION_NATS)
                    .count(),
                kl_per_dimension_nats,
                negative_log_likelihood_nats: metrics.negative_log_likelihood_nats,
                expected_calibration_error: metrics.expected_calibration_error,
                regression: None,
            },
            predictions,
        ))
    }
}

#[cfg(test)]
#[path = "vib_tests.rs"]
mod tests;
