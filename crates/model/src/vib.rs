//! The trained model: its networks (one or an ensemble), the temperature that calibrates them, and
//! everything needed to use them correctly later (the model card). Prediction is this crate's
//! own fixed-order CPU code, or a GPU [`Accelerator`] the training crate attaches.

use std::sync::Arc;

use domain::{ClassSet, Prediction, SpectralAxis, ValuePrediction};

use crate::calibration::{calibrate, identity, Calibration};
use crate::config::TrainConfig;
use crate::diagnostics::{OodThresholds, SetDiagnostics};
use crate::ensemble::{average, threads, Accelerator, Member, MemberSums};
use crate::error::{Error, Result};
use crate::inference::{in_chunks, standardise, CpuNet, RawPrediction, Workspace};
use crate::network::Architecture;
use crate::persist::NamedTensor;
use crate::regression::RegressionTarget;
use crate::selection::Selection;

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

/// A VIB classifier (one network or an ensemble) ready to predict.
#[derive(Debug)]
pub struct VibModel {
    pub(crate) members: Vec<Member>,
    pub(crate) card: ModelCard,
    pub(crate) model_id: String,
    /// Where the members run when not on the CPU.
    pub(crate) accelerator: Option<Arc<dyn Accelerator>>,
}

impl VibModel {
    /// A model of `card` from each member's weight tensors (those of
    /// [`Architecture::weight_shapes`], checked); its id is the hash of its file.
    pub fn from_members(card: ModelCard, members: Vec<Vec<NamedTensor>>) -> Result<Self> {
        if members.len() != card.members {
            return Err(Error::Data(format!(
                "{} networks for a card of {} members",
                members.len(),
                card.members
            )));
        }
        let members = members
            .into_iter()
            .map(|tensors| Member::new(&card.architecture, tensors))
            .collect::<Result<Vec<_>>>()?;
        let mut model = Self {
            members,
            card,
            model_id: String::new(),
            accelerator: None,
        };
        model.model_id = crate::persist::content_id(&model.to_bytes()?);
        Ok(model)
    }

    /// The same model predicting on `accelerator` (a GPU) instead of the CPU.
    pub fn with_accelerator(mut self, accelerator: Arc<dyn Accelerator>) -> Self {
        self.accelerator = Some(accelerator);
        self
    }

    /// Change the card (the model id follows the new file's content).
    pub fn update_card(&mut self, change: impl FnOnce(&mut ModelCard)) -> Result<()> {
        change(&mut self.card);
        self.model_id = crate::persist::content_id(&self.to_bytes()?);
        Ok(())
    }

    /// Member `m`'s weight tensors, sorted by name.
    pub fn member_tensors(&self, m: usize) -> &[NamedTensor] {
        &self.members[m].tensors
    }

    /// Member `m` laid out for the CPU forward pass.
    pub fn cpu_net(&self, m: usize) -> &CpuNet {
        &self.members[m].cpu
    }

    /// Member `m`'s predictions for `n` standardised spectra `x`: on the accelerator when the
    /// model has one, else on the CPU.
    pub fn member_predictions(
        &self,
        m: usize,
        x: &[f32],
        n: usize,
        z_samples: usize,
        seed: u64,
    ) -> Result<Vec<RawPrediction>> {
        match &self.accelerator {
            Some(device) => device.predict(m, x, n, z_samples, seed),
            None => Ok(self.members[m]
                .cpu
                .predict(x, n, z_samples, seed, threads())),
        }
    }

    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    /// Record the sweep this model was chosen from in its card (the model id changes with it).
    pub fn set_sweep(&mut self, records: Vec<SweepRecord>) -> Result<()> {
        self.update_card(|card| card.sweep = Some(records))
    }

    /// Record the selection this model's options came from (the model id changes with it).
    pub fn set_selection(&mut self, selection: Selection) -> Result<()> {
        self.update_card(|card| card.selection = Some(selection))
    }

    /// Content hash of the model file.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Device the weights live on, for logs.
    pub fn device_name(&self) -> String {
        self.accelerator
            .as_ref()
            .map_or_else(|| "cpu".to_string(), |device| device.device_name())
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
        self.predict_rows(spectra, n, z_samples, seed, |r| self.finish_value(r))
    }

    /// A regression model's raw prediction in target units, calibrated, with its OOD flag.
    pub fn finish_value(&self, raw: &RawPrediction) -> ValuePrediction {
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
        self.predict_rows(spectra, n, z_samples, seed, |r| self.finish(r, scaling))
    }

    /// `finish` of each of `n` spectra's raw predictions, after their checks. On the CPU, each
    /// chunk of rows goes the whole way (preprocessing, standardisation, every member, the
    /// average, `finish`) on one thread, so every step runs on every core and a chunk stays in
    /// cache; a row's result is the same bits either way.
    fn predict_rows<T: Send>(
        &self,
        spectra: &[f32],
        n: usize,
        z_samples: usize,
        seed: u64,
        finish: impl Fn(&RawPrediction) -> T + Sync,
    ) -> Result<Vec<T>> {
        self.check_input(spectra, n, z_samples)?;
        let preprocessor = self
            .card
            .train_config
            .preprocessing
            .for_axis(&self.card.axis)
            .map_err(|e| Error::Config(e.to_string()))?;
        if self.accelerator.is_some() {
            let x = self.standardised_input(spectra, &preprocessor)?;
            return Ok(self
                .raw_predictions(&x, n, z_samples, seed)?
                .iter()
                .map(finish)
                .collect());
        }
        let bands = self.card.axis.len();
        let eps = self.cpu_eps(seed, z_samples);
        let chunks = in_chunks(n, threads(), |rows| -> Result<Vec<T>> {
            let x = self.standardised_input(
                &spectra[rows.start * bands..rows.end * bands],
                &preprocessor,
            )?;
            Ok(self
                .cpu_raw_predictions(&x, rows.len(), &eps, z_samples)
                .iter()
                .map(&finish)
                .collect())
        });
        let mut out = Vec::with_capacity(n);
        for chunk in chunks {
            out.extend(chunk?);
        }
        Ok(out)
    }

    /// Each member's draws of z for the CPU forward pass.
    fn cpu_eps(&self, seed: u64, z_samples: usize) -> Vec<Vec<f32>> {
        self.members
            .iter()
            .map(|m| m.cpu.eps(seed, z_samples))
            .collect()
    }

    /// Every member's predictions for `rows` standardised spectra `x` on this thread (member
    /// `m` with the draws `eps[m]`), averaged, through buffers reused from member to member.
    fn cpu_raw_predictions(
        &self,
        x: &[f32],
        rows: usize,
        eps: &[Vec<f32>],
        z_samples: usize,
    ) -> Vec<RawPrediction> {
        let outputs = self.members.first().map_or(0, |m| m.cpu.outputs());
        let mut sums = MemberSums::new(rows, outputs);
        let mut work = Workspace::default();
        let (mut probabilities, mut kl) = (Vec::new(), Vec::new());
        for (member, eps) in self.members.iter().zip(eps) {
            member.cpu.predict_chunk_into(
                x,
                rows,
                eps,
                z_samples,
                &mut work,
                &mut probabilities,
                &mut kl,
            );
            sums.add(&probabilities, &kl);
        }
        sums.mean()
    }

    /// The checks of spectra to predict: `n` spectra of the model's bands, finite values, at
    /// least one sample of z.
    fn check_input(&self, spectra: &[f32], n: usize, z_samples: usize) -> Result<()> {
        let bands = self.card.axis.len();
        if spectra.len() != n * bands {
            return Err(Error::Input(format!(
                "{} values for {n} spectra of {bands} bands",
                spectra.len()
            )));
        }
        // Blocks tested without a branch per value; the position looked for only on failure.
        let finite = |block: &[f32]| block.iter().fold(true, |ok, v| ok & v.is_finite());
        if !spectra.chunks(4096).all(finite) {
            let i = spectra
                .iter()
                .position(|v| !v.is_finite())
                .unwrap_or_default();
            return Err(Error::Input(format!(
                "spectrum {} band {} is not a finite number",
                i / bands + 1,
                i % bands + 1
            )));
        }
        if z_samples == 0 {
            return Err(Error::Config("at least one sample of z is needed".into()));
        }
        Ok(())
    }

    /// Checked spectra (see [`VibModel::check_input`]) on the model's wavelengths, through its
    /// `preprocessor` (the card's, for its axis: built once per call, not per chunk),
    /// standardised.
    fn standardised_input(
        &self,
        spectra: &[f32],
        preprocessor: &domain::Preprocessor,
    ) -> Result<Vec<f32>> {
        let bands = self.card.axis.len();
        let n = spectra.len() / bands.max(1);
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
        Ok(standardise(
            &preprocessed,
            &self.card.input_mean,
            &self.card.input_std,
        ))
    }

    /// The members' averaged predictions for standardised spectra `x`.
    pub fn raw_predictions(
        &self,
        x: &[f32],
        n: usize,
        z_samples: usize,
        seed: u64,
    ) -> Result<Vec<RawPrediction>> {
        if self.accelerator.is_some() {
            let per_member = (0..self.members.len())
                .map(|m| self.member_predictions(m, x, n, z_samples, seed))
                .collect::<Result<Vec<_>>>()?;
            return Ok(average(per_member));
        }
        let eps = self.cpu_eps(seed, z_samples);
        let features = x.len() / n.max(1);
        Ok(in_chunks(n, threads(), |rows| {
            let x = &x[rows.start * features..rows.end * features];
            self.cpu_raw_predictions(x, rows.len(), &eps, z_samples)
        })
        .into_iter()
        .flatten()
        .collect())
    }

    /// A raw prediction calibrated by `scaling` (temperature, class offsets), with its OOD flag.
    pub fn finish(&self, raw: &RawPrediction, scaling: &(f64, Vec<f64>)) -> Prediction {
        let mut prediction = Prediction::from_probabilities(
            calibrate(&raw.probabilities, scaling.0, &scaling.1),
            raw.kl_nats,
        );
        prediction.ood = self.card.ood.flags(&prediction);
        prediction
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value that is not a number is reported by its spectrum and band (1-based), wherever it
    /// sits in the batch, past the first block of values the check tests at once included.
    #[test]
    fn a_spectrum_that_is_not_finite_is_named() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../pipeline/models/default.safetensors");
        let model = VibModel::from_bytes(&std::fs::read(&path).unwrap(), &path).unwrap();
        let bands = model.card().axis.len();
        let n = 5000 / bands + 40;
        let spectra = vec![0.3f32; n * bands];
        assert!(model.predict(&spectra, n, 2, 0).is_ok());
        for (spectrum, band, value) in [
            (1, 1, f32::NAN),
            (n - 3, 7, f32::INFINITY),
            (n, bands, -f32::INFINITY),
        ] {
            let mut bad = spectra.clone();
            bad[(spectrum - 1) * bands + band - 1] = value;
            let error = model.predict(&bad, n, 2, 0).unwrap_err().to_string();
            assert!(
                error.contains(&format!(
                    "spectrum {spectrum} band {band} is not a finite number"
                )),
                "{error}"
            );
        }
    }
}
