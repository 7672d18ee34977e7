//! The trained model: its networks (one or an ensemble), the temperature that calibrates them, and
//! everything needed to use them correctly later (the model card).

use domain::{ClassSet, Prediction, SpectralAxis, SpectralSamples, ValuePrediction};

use crate::calibration::{
    calibrate, calibrated_nll, fit_calibration, identity, reliability_bins, Calibration,
    RELIABILITY_BINS,
};
use crate::config::TrainConfig;
use crate::device::{resolve, DeviceChoice};
use crate::diagnostics::{diagnose, label_entropy_nats, OodThresholds, SetDiagnostics};
use crate::ensemble::{average, Member};
use crate::error::{Error, Result, TorchContext};
use crate::inference::RawPrediction;
use crate::metrics::Metrics;
use crate::network::{Architecture, Head};
use crate::regression::{
    active, fit_variance_scale, moments, rate_and_likelihood, strata, RegressionCalibration,
    RegressionMetrics, RegressionTarget,
};
use crate::selection::{select, CandidateRecord, Fixed, Selection, TuneSettings};
use crate::split::grouped_split;
use crate::training::{architecture, fit, Batch, Features};

/// Model file format version; bump when the metadata or tensor names change. Version 2 files
/// (one network, no calibration) still load.
pub const FORMAT_VERSION: u32 = 3;

/// Everything a model file records besides its weights.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelCard {
    pub format_version: u32,
    pub architecture: Architecture,
    /// Wavelengths (and FWHM) the model's inputs are on; cubes are resampled to them.
    pub axis: SpectralAxis,
    pub classes: ClassSet,
    /// Input standardisation, per band: x' = (x - mean) / std.
    pub input_mean: Vec<f32>,
    pub input_std: Vec<f32>,
    pub beta: f64,
    pub train_config: TrainConfig,
    pub training: TrainingSummary,
    /// Out-of-distribution thresholds on KL and predictive entropy.
    pub ood: OodThresholds,
    /// The beta sweep this model was chosen from (`pipeline sweep`), one record per beta.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<Vec<SweepRecord>>,
    /// Networks whose probabilities are averaged.
    #[serde(default = "one")]
    pub members: usize,
    /// The temperature applied to the probabilities, and what it did where it was fitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    /// The cross-validated search the training options came from (`train` without `--no-tune`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection: Option<Selection>,
    /// A continuous target (a Gaussian head): its name, scale, interval and calibration. `None`
    /// for a classifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<RegressionTarget>,
}

fn one() -> usize {
    1
}

impl ModelCard {
    /// The temperature predictions are tempered by (1 without calibration).
    pub fn temperature(&self) -> f64 {
        self.calibration.as_ref().map_or(1.0, |c| c.temperature)
    }

    /// The temperature and class log-offsets of the calibration (identity without one).
    pub fn scaling(&self) -> (f64, Vec<f64>) {
        self.calibration
            .as_ref()
            .map_or_else(identity, |c| (c.temperature, c.class_log_bias.clone()))
    }
}

/// One beta of the sweep a model came from: both information bounds, in nats.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SweepRecord {
    pub beta: f64,
    /// Mean KL on the training set: upper bound on I(Z;X).
    pub train_rate_nats: f64,
    /// H(Y) - cross-entropy on the training set: lower bound on I(Z;Y).
    pub train_relevance_nats: f64,
    pub validation_rate_nats: Option<f64>,
    pub validation_relevance_nats: Option<f64>,
    pub train_accuracy: f64,
    pub validation_accuracy: Option<f64>,
}

/// What the model was trained on and how it ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainingSummary {
    pub sources: Vec<String>,
    pub unit: String,
    /// Epochs the first member ran.
    pub epochs_run: usize,
    /// Epoch of the first member's kept weights.
    pub best_epoch: usize,
    /// H(Y) of the training labels' class frequencies, nats.
    pub label_entropy_nats: f64,
    /// The kept weights on the training set.
    pub train: SetDiagnostics,
    /// The kept weights on the held-out plants, when there were any.
    pub validation: Option<SetDiagnostics>,
}

/// One epoch of training history.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EpochRecord {
    /// Ensemble member (0 for a single network).
    pub member: usize,
    pub epoch: usize,
    pub loss: f64,
    pub cross_entropy_nats: f64,
    pub kl_nats: f64,
    pub train_accuracy: f64,
    pub validation_loss: Option<f64>,
    pub validation_accuracy: Option<f64>,
    pub learning_rate: f64,
}

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

/// A VIB classifier (one network or an ensemble) ready to predict.
#[derive(Debug)]
pub struct VibModel {
    pub(crate) members: Vec<Member>,
    pub(crate) card: ModelCard,
    pub(crate) model_id: String,
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

impl VibModel {
    /// Train exactly `config` on labelled spectra (`config.ensemble` networks); the temperature
    /// and OOD thresholds are fitted on the validation split when there is one. `sources` and
    /// `unit` are recorded in the model card.
    pub fn train(
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
        Self::assemble(
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

    /// Select the options by cross-validation (see `selection.rs`), searching what `fixed` does
    /// not name around `config`, then refit the winner on all the training data for the epochs
    /// the cross-validation found, with the temperature and OOD thresholds fitted on its
    /// out-of-fold predictions. The search is recorded in the model card.
    #[allow(clippy::too_many_arguments)]
    pub fn tune(
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
            Self::run_selection(samples, config, fixed, settings, device, &mut on_candidate)?;
        Self::assemble(
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

    /// Only the selection of [`VibModel::tune`]: the winning options (with `config`'s epochs and
    /// validation fraction, to train as [`VibModel::train`] does) and the search.
    pub fn select(
        samples: &SpectralSamples,
        config: &TrainConfig,
        fixed: Fixed,
        settings: &TuneSettings,
        device: DeviceChoice,
        mut on_candidate: impl FnMut(&CandidateRecord),
    ) -> Result<(TrainConfig, Selection)> {
        let (_, _, outcome) =
            Self::run_selection(samples, config, fixed, settings, device, &mut on_candidate)?;
        Ok((
            TrainConfig {
                epochs: config.epochs,
                validation_fraction: config.validation_fraction,
                ..outcome.config
            },
            outcome.selection,
        ))
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
    ) -> Result<(Self, Vec<EpochRecord>)> {
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
        let _span =
            tracing::info_span!("train", samples = samples.len(), device = ?device).entered();
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
            members.push(Member::new(fitted.vs, fitted.net, &architecture)?);
        }
        let classes = &samples.classes;
        let mut model = Self {
            members,
            card: ModelCard {
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
            },
            model_id: String::new(),
        };
        if let Some((values, _)) = &checked.regression {
            let sets = Sets {
                train: &train,
                validation: validation.as_ref(),
                val_idx: &val_idx,
            };
            model.finish_regression(values, held_out, &sets, config)?;
            return Ok((model, history));
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
                        model.raw_predictions(&x, v.rows, DIAGNOSTIC_Z_SAMPLES, config.seed)?;
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
            let before: Vec<Prediction> =
                raw.iter().map(|r| model.finish(r, &identity())).collect();
            let after: Vec<Prediction> = raw.iter().map(|r| model.finish(r, &scaling)).collect();
            let m_before = Metrics::compute(classes, &held_truth, &before);
            let m_after = Metrics::compute(classes, &held_truth, &after);
            model.card.calibration = Some(Calibration {
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
            });
            model.card.ood = OodThresholds::calibrate(&after, config.ood_percentile, fitted_on);
        }

        // Diagnostics of the kept weights on both sets, with 12 samples of z as at prediction.
        let (train_diagnostics, train_predictions) = model.diagnose_set(&train, config.seed)?;
        if held_predictions.is_none() {
            model.card.ood =
                OodThresholds::calibrate(&train_predictions, config.ood_percentile, "training");
        }
        let validation_diagnostics = match &validation {
            Some(v) => Some(model.diagnose_set(v, config.seed)?.0),
            None => None,
        };
        let train_targets: Vec<usize> = train_idx.iter().map(|&i| targets[i]).collect();
        model.card.training.label_entropy_nats = label_entropy_nats(&train_targets, classes.len());
        model.card.training.train = train_diagnostics;
        model.card.training.validation = validation_diagnostics;
        model.model_id = crate::persist::content_id(&model.to_bytes()?);
        Ok((model, history))
    }

    /// The regression counterpart of the end of [`VibModel::assemble`]: the variance scale and the
    /// OOD thresholds from the held-out predictions, diagnostics on both sets, the model id.
    fn finish_regression(
        &mut self,
        values: &[f32],
        held_out: HeldOut,
        sets: &Sets,
        config: &TrainConfig,
    ) -> Result<()> {
        let mut target = self
            .card
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
                    let raw =
                        self.raw_predictions(&x, v.rows, DIAGNOSTIC_Z_SAMPLES, config.seed)?;
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
            self.card.ood =
                OodThresholds::calibrate_values(&after, config.ood_percentile, fitted_on);
        }
        self.card.target = Some(target.clone());
        let (train_diagnostics, train_predictions) =
            self.diagnose_values(sets.train, config.seed)?;
        if held.is_none() {
            self.card.ood = OodThresholds::calibrate_values(
                &train_predictions,
                config.ood_percentile,
                "training",
            );
        }
        let validation_diagnostics = match sets.validation {
            Some(v) => Some(self.diagnose_values(v, config.seed)?.0),
            None => None,
        };
        self.card.training.label_entropy_nats = target.gaussian_entropy_nats();
        self.card.training.train = train_diagnostics;
        self.card.training.validation = validation_diagnostics;
        self.model_id = crate::persist::content_id(&self.to_bytes()?);
        Ok(())
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
            .card
            .target
            .as_ref()
            .expect("a regression model has a target");
        let mut per_member = Vec::with_capacity(self.members.len());
        {
            let _seeded = seeded_lock();
            tch::manual_seed(seed as i64);
            for member in &self.members {
                per_member.push(rate_and_likelihood(
                    &member.net,
                    &set.x,
                    &set.y,
                    DIAGNOSTIC_Z_SAMPLES,
                )?);
            }
        }
        let members = per_member.len() as f64;
        let dims = self.card.architecture.latent_dim;
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
            .raw_predictions(&x, set.rows, DIAGNOSTIC_Z_SAMPLES, seed)?
            .iter()
            .map(|r| self.finish_value(r))
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

    /// Diagnostics of the ensemble on one set: each member's rate and cross-entropy by libtorch's
    /// Monte Carlo (averaged over members), accuracy, NLL and ECE of the tempered ensemble.
    fn diagnose_set(&self, set: &Batch, seed: u64) -> Result<(SetDiagnostics, Vec<Prediction>)> {
        let classes = &self.card.classes;
        let mut per_member = Vec::with_capacity(self.members.len());
        {
            let _seeded = seeded_lock();
            tch::manual_seed(seed as i64);
            for member in &self.members {
                per_member.push(diagnose(
                    &member.net,
                    &set.x,
                    &set.y,
                    classes,
                    DIAGNOSTIC_Z_SAMPLES,
                )?);
            }
        }
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
        let scaling = self.card.scaling();
        let predictions: Vec<Prediction> = average(raw)
            .iter()
            .map(|r| self.finish(r, &scaling))
            .collect();
        let metrics = Metrics::compute(classes, &truth, &predictions);
        let members = per_member.len() as f64;
        let mean_of = |f: &dyn Fn(&SetDiagnostics) -> f64| {
            per_member.iter().map(|(d, _)| f(d)).sum::<f64>() / members
        };
        let dims = self.card.architecture.latent_dim;
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
                    .filter(|&&k| k > crate::diagnostics::ACTIVE_DIMENSION_NATS)
                    .count(),
                kl_per_dimension_nats,
                negative_log_likelihood_nats: metrics.negative_log_likelihood_nats,
                expected_calibration_error: metrics.expected_calibration_error,
                regression: None,
            },
            predictions,
        ))
    }

    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    /// Record the sweep this model was chosen from in its card (the model id changes with it).
    pub fn set_sweep(&mut self, records: Vec<SweepRecord>) -> Result<()> {
        self.card.sweep = Some(records);
        self.model_id = crate::persist::content_id(&self.to_bytes()?);
        Ok(())
    }

    /// Record the selection this model's options came from (the model id changes with it).
    pub fn set_selection(&mut self, selection: Selection) -> Result<()> {
        self.card.selection = Some(selection);
        self.model_id = crate::persist::content_id(&self.to_bytes()?);
        Ok(())
    }

    /// Content hash of the model file.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Device the weights live on, for logs.
    pub fn device_name(&self) -> String {
        format!("{:?}", self.members[0].vs.device()).to_lowercase()
    }

    /// Predict `n` spectra (row-major, on the model's wavelengths): the softmax averaged over
    /// `z_samples` draws of z and over the members, tempered by the model's temperature, and
    /// each spectrum's KL (the members' mean). Each spectrum's result depends only on its own
    /// values, the model, `z_samples` and `seed`: not on the batch, its size, the thread count
    /// or alignment (see `inference.rs`).
    pub fn predict(
        &self,
        spectra: &[f32],
        n: usize,
        z_samples: usize,
        seed: u64,
    ) -> Result<Vec<Prediction>> {
        self.predict_at(spectra, n, z_samples, seed, &self.card.scaling())
    }

    /// As [`VibModel::predict`], without the temperature: the probabilities before calibration.
    pub fn predict_uncalibrated(
        &self,
        spectra: &[f32],
        n: usize,
        z_samples: usize,
        seed: u64,
    ) -> Result<Vec<Prediction>> {
        self.predict_at(spectra, n, z_samples, seed, &identity())
    }

    /// A regression model's predictions for `n` spectra: the mixture over `z_samples` draws of z
    /// and the members, moment-matched, with the calibrated variance and the model's central
    /// interval, in the target's units; reproducible as [`VibModel::predict`].
    pub fn predict_values(
        &self,
        spectra: &[f32],
        n: usize,
        z_samples: usize,
        seed: u64,
    ) -> Result<Vec<ValuePrediction>> {
        if self.card.target.is_none() {
            return Err(Error::Input(
                "this model predicts classes, not a continuous target".into(),
            ));
        }
        let x = self.standardised_input(spectra, n, z_samples)?;
        Ok(self
            .raw_predictions(&x, n, z_samples, seed)?
            .iter()
            .map(|r| self.finish_value(r))
            .collect())
    }

    /// A regression model's raw prediction in target units, calibrated, with its OOD flag.
    fn finish_value(&self, raw: &RawPrediction) -> ValuePrediction {
        let target = self
            .card
            .target
            .as_ref()
            .expect("only regression models finish values");
        let mut prediction = target.value_prediction(raw, target.variance_scale);
        prediction.ood = self.card.ood.flags_value(&prediction);
        prediction
    }

    fn predict_at(
        &self,
        spectra: &[f32],
        n: usize,
        z_samples: usize,
        seed: u64,
        scaling: &(f64, Vec<f64>),
    ) -> Result<Vec<Prediction>> {
        if let Some(target) = &self.card.target {
            return Err(Error::Input(format!(
                "this model predicts a continuous target ('{}'), not classes",
                target.name
            )));
        }
        let x = self.standardised_input(spectra, n, z_samples)?;
        Ok(self
            .raw_predictions(&x, n, z_samples, seed)?
            .iter()
            .map(|r| self.finish(r, scaling))
            .collect())
    }

    /// Checked spectra on the model's wavelengths, through its preprocessing, standardised.
    fn standardised_input(&self, spectra: &[f32], n: usize, z_samples: usize) -> Result<Vec<f32>> {
        let bands = self.card.axis.len();
        if spectra.len() != n * bands {
            return Err(Error::Input(format!(
                "{} values for {n} spectra of {bands} bands",
                spectra.len()
            )));
        }
        if let Some(i) = spectra.iter().position(|v| !v.is_finite()) {
            return Err(Error::Input(format!(
                "spectrum {} band {} is not a finite number",
                i / bands + 1,
                i % bands + 1
            )));
        }
        if z_samples == 0 {
            return Err(Error::Config("at least one sample of z is needed".into()));
        }
        let preprocessor = self
            .card
            .train_config
            .preprocessing
            .for_axis(&self.card.axis)
            .map_err(|e| Error::Config(e.to_string()))?;
        let features = preprocessor.output_len();
        let preprocessed: std::borrow::Cow<'_, [f32]> =
            if self.card.train_config.preprocessing.is_identity() {
                std::borrow::Cow::Borrowed(spectra)
            } else {
                let mut out = Vec::with_capacity(n * features);
                for spectrum in spectra.chunks(bands) {
                    out.extend(
                        preprocessor
                            .apply(spectrum)
                            .map_err(|e| Error::Input(e.to_string()))?,
                    );
                }
                std::borrow::Cow::Owned(out)
            };
        Ok(crate::training::standardise(
            &preprocessed,
            &self.card.input_mean,
            &self.card.input_std,
        ))
    }

    /// The members' averaged predictions for standardised spectra `x`.
    pub(crate) fn raw_predictions(
        &self,
        x: &[f32],
        n: usize,
        z_samples: usize,
        seed: u64,
    ) -> Result<Vec<RawPrediction>> {
        let per_member = self
            .members
            .iter()
            .map(|m| m.predict(x, n, &self.card.architecture, z_samples, seed))
            .collect::<Result<Vec<_>>>()?;
        Ok(average(per_member))
    }

    /// A raw prediction calibrated by `scaling` (temperature, class offsets), with its OOD flag.
    fn finish(&self, raw: &RawPrediction, scaling: &(f64, Vec<f64>)) -> Prediction {
        let mut prediction = Prediction::from_probabilities(
            calibrate(&raw.probabilities, scaling.0, &scaling.1),
            raw.kl_nats,
        );
        prediction.ood = self.card.ood.flags(&prediction);
        prediction
    }
}

#[cfg(test)]
#[path = "vib_tests.rs"]
mod tests;
