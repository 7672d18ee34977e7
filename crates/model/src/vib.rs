//! The trained model: network weights plus everything needed to use them correctly later.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use domain::{ClassSet, Prediction, SpectralAxis, SpectralSamples};
use tch::nn::OptimizerConfig;
use tch::{nn, Kind, Tensor};

use crate::config::{ClassBalance, TrainConfig};
use crate::device::{resolve, DeviceChoice};
use crate::diagnostics::{diagnose, label_entropy_nats, OodThresholds, SetDiagnostics};
use crate::error::{Error, Result, TorchContext};
use crate::inference::{eps_table, Conv, CpuNet, Dense, RawPrediction};
use crate::network::{vib_loss, Architecture, EncoderKind, VibNet};
use crate::split::grouped_split;

/// Model file format version; bump when the metadata or tensor names change.
pub const FORMAT_VERSION: u32 = 2;
const METADATA_KEY: &str = "pipeline.model";

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
    pub epochs_run: usize,
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
    pub epoch: usize,
    pub loss: f64,
    pub cross_entropy_nats: f64,
    pub kl_nats: f64,
    pub train_accuracy: f64,
    pub validation_loss: Option<f64>,
    pub validation_accuracy: Option<f64>,
    pub learning_rate: f64,
}

/// Samples of z for the diagnostics recorded at the end of training.
const DIAGNOSTIC_Z_SAMPLES: usize = 12;

/// libtorch's default generator is global: seeded work (training, sampling z at prediction) holds
/// this lock, so that concurrent work in one process cannot interleave draws and break determinism.
static SEEDED_WORK: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub(crate) fn seeded_lock() -> std::sync::MutexGuard<'static, ()> {
    SEEDED_WORK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A VIB classifier ready to predict.
#[derive(Debug)]
pub struct VibModel {
    vs: nn::VarStore,
    net: VibNet,
    /// The weights laid out for the fixed-order CPU forward pass, when the model is on the CPU.
    cpu: Option<CpuNet>,
    card: ModelCard,
    model_id: String,
}

/// (x - mean) / std per band, for row-major spectra of `mean.len()` bands.
fn standardise(spectra: &[f32], mean: &[f32], std: &[f32]) -> Vec<f32> {
    spectra
        .chunks(mean.len())
        .flat_map(|s| {
            s.iter()
                .zip(mean.iter().zip(std))
                .map(|(&v, (&m, &sd))| (v - m) / sd)
        })
        .collect()
}

fn tensor_2d(values: &[f32], rows: usize, cols: usize, device: tch::Device) -> Result<Tensor> {
    Tensor::from_slice(values)
        .f_view([rows as i64, cols as i64])
        .doing("shaping input")
        .map(|t| t.to_device(device))
}

/// FNV-1a 64 of the model file: a content id for reports.
fn content_id(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= b as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

impl VibModel {
    /// Train on labelled spectra. `sources` and `unit` are recorded in the model card.
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
        let targets: Vec<usize> = samples
            .label_codes
            .iter()
            .map(|&c| {
                samples
                    .classes
                    .index_of_code(c)
                    .ok_or_else(|| Error::Data(format!("label code {c} is not among the classes")))
            })
            .collect::<Result<_>>()?;
        let (train_idx, val_idx) = grouped_split(
            &targets,
            &samples.groups,
            config.validation_fraction,
            config.seed,
        );
        // The preprocessing chain, then standardisation from training samples only.
        let preprocessor = config
            .preprocessing
            .for_axis(&samples.axis)
            .map_err(|e| Error::Config(e.to_string()))?;
        let features = preprocessor.output_len();
        let mut preprocessed = Vec::with_capacity(n * features);
        for i in 0..n {
            preprocessed.extend(
                preprocessor
                    .apply(samples.spectrum(i))
                    .map_err(|e| Error::Data(e.to_string()))?,
            );
        }
        let feature = |i: usize| &preprocessed[i * features..(i + 1) * features];
        let mut mean = vec![0f64; features];
        for &i in &train_idx {
            for (m, &v) in mean.iter_mut().zip(feature(i)) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= train_idx.len() as f64);
        let mut var = vec![0f64; features];
        for &i in &train_idx {
            for ((s, &v), m) in var.iter_mut().zip(feature(i)).zip(&mean) {
                *s += (v as f64 - m).powi(2);
            }
        }
        let input_mean: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
        let input_std: Vec<f32> = var
            .iter()
            .map(|&s| ((s / train_idx.len() as f64).sqrt().max(1e-6)) as f32)
            .collect();

        let gather = |idx: &[usize]| -> Result<(Tensor, Tensor)> {
            let raw: Vec<f32> = idx
                .iter()
                .flat_map(|&i| feature(i).iter().copied())
                .collect();
            let x = standardise(&raw, &input_mean, &input_std);
            let y: Vec<i64> = idx.iter().map(|&i| targets[i] as i64).collect();
            Ok((
                tensor_2d(&x, idx.len(), features, device)?,
                Tensor::from_slice(&y).to_device(device),
            ))
        };
        let (x_train, y_train) = gather(&train_idx)?;
        let validation = if val_idx.is_empty() {
            None
        } else {
            Some(gather(&val_idx)?)
        };

        let _seeded = seeded_lock();
        tch::manual_seed(config.seed as i64);
        if config.encoder == EncoderKind::Conv && features < 8 {
            return Err(Error::Config(format!(
                "the convolutional encoder needs at least 8 bands, not {features}"
            )));
        }
        let architecture = Architecture {
            encoder: config.encoder,
            input_dim: features,
            hidden_dims: config.hidden_dims.clone(),
            latent_dim: config.latent_dim,
            classes: samples.classes.len(),
            deterministic: config.deterministic,
        };
        let vs = nn::VarStore::new(device);
        let net = VibNet::new(&vs.root(), &architecture);
        let mut optimizer = nn::Adam::default()
            .build(&vs, config.learning_rate)
            .doing("building the optimiser")?;

        let n_train = train_idx.len() as i64;
        let sample_weights = match config.class_balance {
            ClassBalance::Sampling => {
                let mut counts = vec![0usize; samples.classes.len()];
                train_idx.iter().for_each(|&i| counts[targets[i]] += 1);
                let w: Vec<f64> = train_idx
                    .iter()
                    .map(|&i| 1.0 / counts[targets[i]] as f64)
                    .collect();
                Some(Tensor::from_slice(&w).to_device(device))
            }
            ClassBalance::None => None,
        };
        let mut history = Vec::new();
        let mut best: Option<(f64, usize, HashMap<String, Tensor>)> = None;
        let mut since_best = 0;
        let _span = tracing::info_span!("train", samples = n, device = ?device).entered();
        for epoch in 1..=config.epochs {
            let progress = (epoch - 1) as f64 / config.epochs.max(2) as f64;
            let lr = config.learning_rate
                * (0.05 + 0.95 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()));
            optimizer.set_lr(lr);
            // Class balance: each class drawn equally often (with replacement), or a plain shuffle.
            let order = match &sample_weights {
                Some(w) => w.multinomial(n_train, true),
                None => Tensor::randperm(n_train, (Kind::Int64, device)),
            };
            let (mut loss_sum, mut ce_sum, mut kl_sum, mut correct) = (0.0, 0.0, 0.0, 0i64);
            let mut start = 0;
            while start < n_train {
                let len = (config.batch_size as i64).min(n_train - start);
                let batch = order.narrow(0, start, len);
                let (x, y) = (
                    x_train.index_select(0, &batch),
                    y_train.index_select(0, &batch),
                );
                let (loss, logits) = vib_loss(&net, &x, &y, config.beta);
                optimizer.zero_grad();
                loss.total.backward();
                optimizer.clip_grad_norm(config.max_grad_norm);
                optimizer.step();
                let weight = len as f64;
                loss_sum += loss.total.double_value(&[]) * weight;
                ce_sum += loss.cross_entropy.double_value(&[]) * weight;
                kl_sum += loss.kl.double_value(&[]) * weight;
                correct += logits
                    .argmax(-1, false)
                    .eq_tensor(&y)
                    .sum(Kind::Int64)
                    .int64_value(&[]);
                start += len;
            }
            let (validation_loss, validation_accuracy) = match &validation {
                Some((x, y)) => {
                    let (loss, accuracy) = tch::no_grad(|| {
                        let (loss, logits) = vib_loss(&net, x, y, config.beta);
                        let accuracy = logits
                            .argmax(-1, false)
                            .eq_tensor(y)
                            .to_kind(Kind::Float)
                            .mean(Kind::Float);
                        (loss.total.double_value(&[]), accuracy.double_value(&[]))
                    });
                    (Some(loss), Some(accuracy))
                }
                None => (None, None),
            };
            let record = EpochRecord {
                epoch,
                loss: loss_sum / n_train as f64,
                cross_entropy_nats: ce_sum / n_train as f64,
                kl_nats: kl_sum / n_train as f64,
                train_accuracy: correct as f64 / n_train as f64,
                validation_loss,
                validation_accuracy,
                learning_rate: lr,
            };
            tracing::trace!(epoch, loss = record.loss, kl = record.kl_nats, "epoch");
            on_epoch(&record);
            history.push(record);
            if let Some(v) = validation_loss {
                if best.as_ref().is_none_or(|(b, _, _)| v < *b) {
                    let snapshot = vs
                        .variables()
                        .into_iter()
                        .map(|(k, t)| (k, t.detach().copy()))
                        .collect();
                    best = Some((v, epoch, snapshot));
                    since_best = 0;
                } else {
                    since_best += 1;
                    if since_best >= config.patience {
                        tracing::info!(epoch, "early stop");
                        break;
                    }
                }
            }
        }
        let best_epoch = match best {
            Some((_, epoch, snapshot)) => {
                let mut variables = vs.variables();
                tch::no_grad(|| {
                    for (name, tensor) in variables.iter_mut() {
                        tensor.copy_(&snapshot[name]);
                    }
                });
                epoch
            }
            None => history.len(),
        };
        // The kept weights on both sets, with 12 samples of z as at prediction.
        let classes = &samples.classes;
        let (train, train_predictions) =
            diagnose(&net, &x_train, &y_train, classes, DIAGNOSTIC_Z_SAMPLES)?;
        let (validation, validation_predictions) = match &validation {
            Some((x, y)) => {
                let (d, p) = diagnose(&net, x, y, classes, DIAGNOSTIC_Z_SAMPLES)?;
                (Some(d), Some(p))
            }
            None => (None, None),
        };
        let ood = match &validation_predictions {
            Some(p) => OodThresholds::calibrate(p, config.ood_percentile, "validation"),
            None => OodThresholds::calibrate(&train_predictions, config.ood_percentile, "training"),
        };
        let train_targets: Vec<usize> = train_idx.iter().map(|&i| targets[i]).collect();
        let card = ModelCard {
            format_version: FORMAT_VERSION,
            architecture,
            axis: samples.axis.clone(),
            classes: samples.classes.clone(),
            input_mean,
            input_std,
            beta: config.beta,
            train_config: config.clone(),
            training: TrainingSummary {
                sources,
                unit: unit.to_string(),
                epochs_run: history.len(),
                best_epoch,
                label_entropy_nats: label_entropy_nats(&train_targets, samples.classes.len()),
                train,
                validation,
            },
            ood,
            sweep: None,
        };
        let cpu = cpu_net(&vs, &card.architecture)?;
        let mut model = Self {
            vs,
            net,
            cpu,
            card,
            model_id: String::new(),
        };
        model.model_id = content_id(&model.to_bytes()?);
        Ok((model, history))
    }

    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    /// Record the sweep this model was chosen from in its card (the model id changes with it).
    pub fn set_sweep(&mut self, records: Vec<SweepRecord>) -> Result<()> {
        self.card.sweep = Some(records);
        self.model_id = content_id(&self.to_bytes()?);
        Ok(())
    }

    /// Content hash of the model file.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Device the weights live on, for logs.
    pub fn device_name(&self) -> String {
        format!("{:?}", self.vs.device()).to_lowercase()
    }

    /// Predict `n` spectra (row-major, on the model's wavelengths): the softmax averaged over
    /// `z_samples` draws of z, and each spectrum's KL. Each spectrum's result depends only on its
    /// own values, the model, `z_samples` and `seed`: not on the batch, its size, the thread count
    /// or alignment (see `inference.rs`).
    pub fn predict(
        &self,
        spectra: &[f32],
        n: usize,
        z_samples: usize,
        seed: u64,
    ) -> Result<Vec<Prediction>> {
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
        let x = standardise(&preprocessed, &self.card.input_mean, &self.card.input_std);
        let raw = match &self.cpu {
            Some(cpu) => {
                let threads = usize::try_from(tch::get_num_threads()).unwrap_or(1).max(1);
                cpu.predict(&x, n, z_samples, seed, threads)
            }
            None => self.predict_on_device(&x, n, z_samples, seed)?,
        };
        Ok(raw
            .into_iter()
            .map(|r| {
                let mut prediction = Prediction::from_probabilities(r.probabilities, r.kl_nats);
                prediction.ood = self.card.ood.flags(&prediction);
                prediction
            })
            .collect())
    }

    /// The same computation with libtorch on the model's (CUDA) device, in batches, with the
    /// same eps as the CPU path; reproducible on one device, equal to the CPU path
    /// to float rounding.
    fn predict_on_device(
        &self,
        x: &[f32],
        n: usize,
        z_samples: usize,
        seed: u64,
    ) -> Result<Vec<RawPrediction>> {
        const BATCH: usize = 4096;
        let device = self.vs.device();
        let features = self.card.architecture.input_dim;
        let latent = self.card.architecture.latent_dim;
        let classes = self.card.classes.len();
        let eps = Tensor::from_slice(&eps_table(seed, z_samples, latent))
            .f_view([z_samples as i64, latent as i64])
            .doing("shaping eps")?
            .to_device(device);
        let mut out = Vec::with_capacity(n);
        for start in (0..n).step_by(BATCH) {
            let len = BATCH.min(n - start);
            let batch = tensor_2d(
                &x[start * features..(start + len) * features],
                len,
                features,
                device,
            )?;
            let (probabilities, kl) = tch::no_grad(|| {
                let (mu, logvar) = self.net.encode(&batch);
                let kl = self.net.rate_per_dimension(&mu, &logvar).sum_dim_intlist(
                    1,
                    false,
                    Kind::Float,
                );
                let samples = if self.card.architecture.deterministic {
                    1
                } else {
                    z_samples
                };
                let sigma = (&logvar * 0.5).exp();
                let mut sum = Tensor::zeros([len as i64, classes as i64], (Kind::Float, device));
                for s in 0..samples {
                    let z = if self.card.architecture.deterministic {
                        mu.shallow_clone()
                    } else {
                        &mu + &sigma * eps.select(0, s as i64)
                    };
                    sum += self.net.classify(&z).softmax(-1, Kind::Float);
                }
                (sum / samples as f64, kl)
            });
            let probabilities: Vec<f32> =
                Vec::try_from(probabilities.to_device(tch::Device::Cpu).flatten(0, -1))
                    .doing("copying probabilities")?;
            let kl: Vec<f32> = Vec::try_from(kl.to_device(tch::Device::Cpu)).doing("copying KL")?;
            for (p, k) in probabilities.chunks(classes).zip(kl) {
                out.push(RawPrediction {
                    probabilities: p.to_vec(),
                    kl_nats: k as f64,
                });
            }
        }
        Ok(out)
    }

    fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for (name, tensor) in self.vs.variables() {
            let shape: Vec<usize> = tensor.size().iter().map(|&d| d as usize).collect();
            let values: Vec<f32> = Vec::try_from(
                tensor
                    .detach()
                    .to_device(tch::Device::Cpu)
                    .to_kind(Kind::Float)
                    .flatten(0, -1),
            )
            .doing("copying weights")?;
            tensors.push((
                name,
                shape,
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ));
        }
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        let views = tensors
            .iter()
            .map(|(name, shape, bytes)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                    .map(|view| (name.clone(), view))
                    .map_err(|e| Error::Data(format!("weights of {name}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let card = serde_json::to_string(&self.card)
            .map_err(|e| Error::Data(format!("model card: {e}")))?;
        let metadata = HashMap::from([(METADATA_KEY.to_string(), card)]);
        safetensors::serialize(views, Some(metadata))
            .map_err(|e| Error::Data(format!("serialising weights: {e}")))
    }

    /// Save as safetensors with the model card in the metadata; written to a temporary name, then renamed.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = self.to_bytes()?;
        let tmp = PathBuf::from(format!("{}.tmp", path.display()));
        std::fs::write(&tmp, &bytes)
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|source| {
                let _ = std::fs::remove_file(&tmp);
                Error::Io {
                    path: path.into(),
                    message: "cannot write model".into(),
                    source,
                }
            })
    }

    /// Read only the model card of a model file (no libtorch work).
    pub fn read_card(path: &Path) -> Result<ModelCard> {
        let bytes = read_file(path)?;
        card_from_bytes(path, &bytes)
    }

    /// Load a model file onto a device.
    pub fn load(path: &Path, device: DeviceChoice) -> Result<Self> {
        let bytes = read_file(path)?;
        Self::from_bytes(&bytes, path, device)
    }

    /// Load a model from the bytes of a model file; `path` names it in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path, device: DeviceChoice) -> Result<Self> {
        let card = card_from_bytes(path, bytes)?;
        let format = |message: String| Error::Format {
            path: path.into(),
            message,
        };
        let tensors =
            safetensors::SafeTensors::deserialize(bytes).map_err(|e| format(e.to_string()))?;
        let device = resolve(device)?;
        let mut vs = nn::VarStore::new(device);
        // Initialising the layers draws from the global generator before the weights overwrite them.
        let net = {
            let _seeded = seeded_lock();
            VibNet::new(&vs.root(), &card.architecture)
        };
        let mut variables = vs.variables();
        if variables.len() != tensors.len() {
            return Err(format(format!(
                "{} tensors, the architecture has {}",
                tensors.len(),
                variables.len()
            )));
        }
        for (name, variable) in variables.iter_mut() {
            let view = tensors
                .tensor(name)
                .map_err(|_| format(format!("tensor '{name}' is missing")))?;
            let expected: Vec<usize> = variable.size().iter().map(|&d| d as usize).collect();
            if view.dtype() != safetensors::Dtype::F32 || view.shape() != expected.as_slice() {
                return Err(format(format!(
                    "tensor '{name}' is {:?} {:?}, expected F32 {expected:?}",
                    view.dtype(),
                    view.shape()
                )));
            }
            let values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let source = Tensor::from_slice(&values)
                .view(variable.size().as_slice())
                .to_device(device);
            tch::no_grad(|| variable.copy_(&source));
        }
        vs.freeze();
        let cpu = cpu_net(&vs, &card.architecture)?;
        Ok(Self {
            vs,
            net,
            cpu,
            card,
            model_id: content_id(bytes),
        })
    }
}

/// The weights of a CPU model, copied out of libtorch for the fixed-order forward pass; `None`
/// for a model on another device.
fn cpu_net(vs: &nn::VarStore, arch: &Architecture) -> Result<Option<CpuNet>> {
    if vs.device() != tch::Device::Cpu {
        return Ok(None);
    }
    let variables = vs.variables();
    let values = |name: &str| -> Result<(Vec<f32>, Vec<usize>)> {
        let tensor = variables
            .get(name)
            .ok_or_else(|| Error::Data(format!("the network has no tensor '{name}'")))?;
        let shape = tensor.size().iter().map(|&d| d as usize).collect();
        let flat: Vec<f32> = Vec::try_from(tensor.detach().to_kind(Kind::Float).flatten(0, -1))
            .doing("copying weights")?;
        Ok((flat, shape))
    };
    let dense = |name: &str| -> Result<Dense> {
        let (weight, shape) = values(&format!("{name}.weight"))?;
        let (bias, _) = values(&format!("{name}.bias"))?;
        Ok(Dense {
            weight,
            bias,
            inputs: shape[1],
            outputs: shape[0],
        })
    };
    let mut convs = Vec::new();
    if arch.encoder == EncoderKind::Conv {
        for name in ["conv0", "conv1"] {
            let (weight, shape) = values(&format!("{name}.weight"))?;
            let (bias, _) = values(&format!("{name}.bias"))?;
            convs.push(Conv {
                weight,
                bias,
                out_channels: shape[0],
                in_channels: shape[1],
                kernel: shape[2],
            });
        }
    }
    let hidden = (0..arch.hidden_dims.len())
        .map(|i| dense(&format!("encoder{i}")))
        .collect::<Result<_>>()?;
    Ok(Some(CpuNet {
        encoder: arch.encoder,
        input_dim: arch.input_dim,
        convs,
        hidden,
        head: dense("mu_logvar")?,
        classifier: dense("classifier")?,
        latent_dim: arch.latent_dim,
        deterministic: arch.deterministic,
    }))
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.into(),
        message: match source.kind() {
            std::io::ErrorKind::NotFound => "model file not found".into(),
            _ => "cannot read model".into(),
        },
        source,
    })
}

fn card_from_bytes(path: &Path, bytes: &[u8]) -> Result<ModelCard> {
    let format = |message: String| Error::Format {
        path: path.into(),
        message,
    };
    let (_, metadata) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| format(format!("not safetensors ({e})")))?;
    let json = metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get(METADATA_KEY))
        .ok_or_else(|| format(format!("no '{METADATA_KEY}' metadata")))?;
    let card: ModelCard =
        serde_json::from_str(json).map_err(|e| format(format!("model card: {e}")))?;
    if card.format_version != FORMAT_VERSION {
        return Err(format(format!(
            "format version {} (this build reads {FORMAT_VERSION})",
            card.format_version
        )));
    }
    let features = card
        .train_config
        .preprocessing
        .for_axis(&card.axis)
        .map_err(|e| format(format!("preprocessing: {e}")))?
        .output_len();
    if card.input_mean.len() != features
        || card.input_std.len() != features
        || card.architecture.input_dim != features
    {
        return Err(format(
            "standardisation or input size does not match the preprocessed wavelengths".into(),
        ));
    }
    if card.architecture.classes != card.classes.len() {
        return Err(format("class count does not match the classifier".into()));
    }
    Ok(card)
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::ClassInfo;

    /// Three classes of noisy spectra with distinct shapes, 40 groups of 5.
    fn toy_samples(seed: u64) -> SpectralSamples {
        let bands = 12;
        let mut rng = crate::split::SplitMix64::new(seed);
        let mut uniform = move || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let (mut spectra, mut codes, mut groups) = (Vec::new(), Vec::new(), Vec::new());
        for g in 0..60u32 {
            let class = (g % 3) as usize;
            for _ in 0..5 {
                for b in 0..bands {
                    let shape = match class {
                        0 => b as f64 / bands as f64,
                        1 => 1.0 - b as f64 / bands as f64,
                        _ => ((b as f64) * 0.8).sin() * 0.5 + 0.5,
                    };
                    spectra.push((shape * 0.5 + 0.2 + (uniform() - 0.5) * 0.1) as f32);
                }
                codes.push(class as u32 * 10 + 1);
                groups.push(g);
            }
        }
        SpectralSamples {
            axis: SpectralAxis::new((0..bands).map(|b| 400.0 + 50.0 * b as f64).collect(), None)
                .unwrap(),
            classes: ClassSet::new(
                ["a", "b", "c"]
                    .iter()
                    .enumerate()
                    .map(|(i, n)| ClassInfo {
                        code: i as u32 * 10 + 1,
                        name: n.to_string(),
                    })
                    .collect(),
            )
            .unwrap(),
            spectra,
            label_codes: codes,
            groups,
        }
    }

    /// The device the tests run on: `PIPELINE_TEST_DEVICE` (`cuda`, `cuda:1`, ...; for
    /// `scripts/gpu-check`), else the CPU. The determinism test always uses the CPU.
    fn test_device() -> DeviceChoice {
        std::env::var("PIPELINE_TEST_DEVICE")
            .ok()
            .map_or(DeviceChoice::Cpu, |d| d.parse().unwrap())
    }

    fn quick_config() -> TrainConfig {
        TrainConfig {
            epochs: 40,
            hidden_dims: vec![32],
            latent_dim: 4,
            ..TrainConfig::default()
        }
    }

    #[test]
    fn learns_separable_classes_and_reloads_identically() {
        let samples = toy_samples(1);
        let (model, history) = VibModel::train(
            &samples,
            &quick_config(),
            test_device(),
            vec!["toy".into()],
            "pixel",
            |_| {},
        )
        .unwrap();
        assert!(!history.is_empty());
        assert!(
            model.card().training.train.accuracy > 0.95,
            "{:?}",
            model.card().training
        );
        let test = toy_samples(2);
        let predictions = model.predict(&test.spectra, test.len(), 12, 0).unwrap();
        let correct = predictions
            .iter()
            .zip(&test.label_codes)
            .filter(|(p, &c)| model.card().classes.get(p.predicted_index).unwrap().code == c)
            .count();
        assert!(
            correct as f64 / test.len() as f64 > 0.95,
            "{correct}/{}",
            test.len()
        );
        for p in &predictions {
            assert!((p.probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-4);
            assert!(p.kl_nats >= 0.0);
        }

        assert_reloads_identically(&model, &test, &predictions);
    }

    /// A small model with `encoder`, trained for `epochs` on the CPU.
    fn quick_cpu_model(samples: &SpectralSamples, encoder: EncoderKind, epochs: usize) -> VibModel {
        let config = TrainConfig {
            epochs,
            encoder,
            ..quick_config()
        };
        VibModel::train(samples, &config, DeviceChoice::Cpu, vec![], "pixel", |_| {})
            .unwrap()
            .0
    }

    /// The fixed-order CPU forward pass against libtorch's forward pass of the same weights with
    /// the same eps (an independent implementation of the same arithmetic), for both encoders.
    #[test]
    fn cpu_forward_pass_matches_libtorch() {
        let samples = toy_samples(4);
        for encoder in [EncoderKind::Mlp, EncoderKind::Conv] {
            let model = quick_cpu_model(&samples, encoder, 15);
            let n = samples.len();
            let ours = model.predict(&samples.spectra, n, 12, 5).unwrap();
            let x = standardise(
                &samples.spectra,
                &model.card.input_mean,
                &model.card.input_std,
            );
            let torch = model.predict_on_device(&x, n, 12, 5).unwrap();
            assert_eq!(ours.len(), torch.len());
            for (a, b) in ours.iter().zip(&torch) {
                assert!(
                    (a.kl_nats - b.kl_nats).abs() <= 1e-4 * b.kl_nats.abs().max(1.0),
                    "{encoder:?}: KL {} vs libtorch {}",
                    a.kl_nats,
                    b.kl_nats
                );
                for (p, q) in a.probabilities.iter().zip(&b.probabilities) {
                    assert!((p - q).abs() < 1e-5, "{encoder:?}: {p} vs libtorch {q}");
                }
            }
            // mu and logvar themselves, against the libtorch encoder.
            let cpu = model.cpu.as_ref().unwrap();
            let (mu, logvar) = cpu.encode(&x, n);
            let xt = tensor_2d(&x, n, x.len() / n, tch::Device::Cpu).unwrap();
            let (tmu, tlogvar) = tch::no_grad(|| model.net.encode(&xt));
            let tmu: Vec<f32> = Vec::try_from(tmu.flatten(0, -1)).unwrap();
            let tlogvar: Vec<f32> = Vec::try_from(tlogvar.flatten(0, -1)).unwrap();
            for (a, b) in mu.iter().chain(&logvar).zip(tmu.iter().chain(&tlogvar)) {
                assert!(
                    (a - b).abs() < 1e-4 * b.abs().max(1.0),
                    "{encoder:?}: {a} vs {b}"
                );
            }
        }
    }

    /// One spectrum gives bit-identical probabilities, entropy and KL alone, inside batches of 1, 7
    /// and 4096 rows at offsets that move it and its memory alignment, and on 1, 2 or 3 threads.
    #[test]
    fn predictions_depend_only_on_the_spectrum() {
        let samples = toy_samples(6);
        for encoder in [EncoderKind::Mlp, EncoderKind::Conv] {
            let model = quick_cpu_model(&samples, encoder, 10);
            let bands = samples.axis.len();
            let cpu = model.cpu.as_ref().unwrap();
            let key = |p: &Prediction| {
                (
                    p.probabilities
                        .iter()
                        .map(|v| v.to_bits())
                        .collect::<Vec<_>>(),
                    p.entropy_nats.to_bits(),
                    p.kl_nats.to_bits(),
                )
            };
            let lone = |i: usize| {
                let one = &samples.spectra[i * bands..(i + 1) * bands];
                key(&model.predict(one, 1, 12, 0).unwrap()[0])
            };
            let targets = [0usize, 3, samples.len() - 1];
            let expected: Vec<_> = targets.iter().map(|&i| lone(i)).collect();
            for rows in [1usize, 7, 4096] {
                for offset in [0usize, 1, 5] {
                    for (&target, expected) in targets.iter().zip(&expected) {
                        // A batch of `rows` spectra, the target at `offset` (mod rows), the rest
                        // other spectra; one leading spare float shifts the alignment on odd offsets.
                        let at = offset % rows;
                        let shift = offset % 2;
                        let mut buffer = vec![0f32; shift];
                        for r in 0..rows {
                            let i = if r == at {
                                target
                            } else {
                                (r * 7 + offset) % samples.len()
                            };
                            buffer.extend_from_slice(&samples.spectra[i * bands..(i + 1) * bands]);
                        }
                        let batch = &buffer[shift..];
                        for threads in [1usize, 2, 3] {
                            let x =
                                standardise(batch, &model.card.input_mean, &model.card.input_std);
                            let raw = cpu.predict(&x, rows, 12, 0, threads);
                            let got = Prediction::from_probabilities(
                                raw[at].probabilities.clone(),
                                raw[at].kl_nats,
                            );
                            assert_eq!(
                                &key(&got),
                                expected,
                                "{encoder:?}: spectrum {target} at row {at} of {rows}, shift {shift}, {threads} threads"
                            );
                        }
                        if rows != 4096 || offset == 0 {
                            let through_api = model.predict(batch, rows, 12, 0).unwrap();
                            assert_eq!(&key(&through_api[at]), expected);
                        }
                    }
                }
            }
        }
    }

    /// Save, load, and predict `samples` again: same card, same id, the same `predictions`.
    fn assert_reloads_identically(
        model: &VibModel,
        samples: &SpectralSamples,
        predictions: &[Prediction],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        model.save(&path).unwrap();
        let loaded = VibModel::load(&path, test_device()).unwrap();
        assert_eq!(loaded.card(), model.card());
        assert_eq!(loaded.model_id(), model.model_id());
        let again = loaded
            .predict(&samples.spectra, samples.len(), 12, 0)
            .unwrap();
        assert_eq!(again, predictions, "a reloaded model predicts identically");
    }

    #[test]
    fn training_is_deterministic_on_cpu() {
        let samples = toy_samples(3);
        let config = TrainConfig {
            epochs: 5,
            ..quick_config()
        };
        let run = || {
            VibModel::train(
                &samples,
                &config,
                DeviceChoice::Cpu,
                vec![],
                "pixel",
                |_| {},
            )
            .unwrap()
        };
        let (a, history_a) = run();
        let (b, history_b) = run();
        assert_eq!(history_a, history_b);
        assert_eq!(a.model_id(), b.model_id());
    }

    /// The sweep's bounds, recomputed here without the training code: H(Y) from label counts, the
    /// rate from the encoder's mu and logvar with f64 loops, the cross-entropy by our own Monte Carlo
    /// (another generator, 200 draws) through the classifier's weights.
    #[test]
    fn information_bounds_match_an_independent_computation() {
        let samples = toy_samples(5);
        let config = TrainConfig {
            epochs: 15,
            validation_fraction: 0.0,
            beta: 1e-2,
            ..quick_config()
        };
        let (model, _) =
            VibModel::train(&samples, &config, test_device(), vec![], "pixel", |_| {}).unwrap();
        let summary = &model.card().training;
        assert!(summary.validation.is_none());
        let n = samples.len();

        let mut counts = std::collections::BTreeMap::new();
        for c in &samples.label_codes {
            *counts.entry(*c).or_insert(0usize) += 1;
        }
        let h_y: f64 = counts
            .values()
            .map(|&c| c as f64 / n as f64)
            .map(|p| -p * p.ln())
            .sum();
        assert!((summary.label_entropy_nats - h_y).abs() < 1e-12);

        let x = tensor_2d(
            &standardise(
                &samples.spectra,
                &model.card().input_mean,
                &model.card().input_std,
            ),
            n,
            samples.axis.len(),
            model.vs.device(),
        )
        .unwrap();
        let (mu, logvar) = tch::no_grad(|| model.net.encode(&x));
        let k = model.card().architecture.latent_dim;
        let cpu = |t: Tensor| t.to_device(tch::Device::Cpu).flatten(0, -1);
        let mu: Vec<f32> = Vec::try_from(cpu(mu)).unwrap();
        let logvar: Vec<f32> = Vec::try_from(cpu(logvar)).unwrap();
        let mut rate = 0.0;
        for i in 0..n {
            for j in 0..k {
                let (m, lv) = (mu[i * k + j] as f64, logvar[i * k + j] as f64);
                rate += 0.5 * (m * m + lv.exp() - lv - 1.0);
            }
        }
        rate /= n as f64;
        assert!(
            (rate - summary.train.mean_kl_nats).abs() < 1e-4 * rate.max(1.0),
            "{rate} vs {}",
            summary.train.mean_kl_nats
        );

        let variables = model.vs.variables();
        let weight: Vec<f32> =
            Vec::try_from(cpu(variables["classifier.weight"].shallow_clone())).unwrap();
        let bias: Vec<f32> =
            Vec::try_from(cpu(variables["classifier.bias"].shallow_clone())).unwrap();
        let classes = bias.len();
        let mut rng = crate::split::SplitMix64::new(99);
        let mut normal = move || {
            let u1 = ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            let u2 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        };
        let draws = 200;
        let mut cross_entropy = 0.0;
        for i in 0..n {
            let target = model
                .card()
                .classes
                .index_of_code(samples.label_codes[i])
                .unwrap();
            for _ in 0..draws {
                let z: Vec<f64> = (0..k)
                    .map(|j| {
                        mu[i * k + j] as f64 + (0.5 * logvar[i * k + j] as f64).exp() * normal()
                    })
                    .collect();
                let logits: Vec<f64> = (0..classes)
                    .map(|c| {
                        bias[c] as f64
                            + (0..k).map(|j| weight[c * k + j] as f64 * z[j]).sum::<f64>()
                    })
                    .collect();
                let max = logits.iter().copied().fold(f64::MIN, f64::max);
                let log_sum = max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
                cross_entropy += log_sum - logits[target];
            }
        }
        cross_entropy /= (n * draws) as f64;
        let recorded = summary.train.cross_entropy_nats;
        assert!(
            (cross_entropy - recorded).abs() < 0.02 + 0.1 * cross_entropy,
            "independent {cross_entropy} vs recorded {recorded}"
        );
        // So the I(Z;Y) lower bound H(Y) - CE agrees too.
        assert!(h_y - cross_entropy > 0.0);
    }

    #[test]
    fn deterministic_baseline_has_no_rate() {
        let samples = toy_samples(4);
        let config = TrainConfig {
            deterministic: true,
            ..quick_config()
        };
        let (model, history) =
            VibModel::train(&samples, &config, test_device(), vec![], "pixel", |_| {}).unwrap();
        assert!(history
            .iter()
            .all(|e| e.kl_nats == 0.0 && (e.loss - e.cross_entropy_nats).abs() < 1e-9));
        assert!(model.card().architecture.deterministic);
        assert!(model.card().training.train.accuracy > 0.95);
        let p = model
            .predict(&samples.spectra, samples.len(), 12, 0)
            .unwrap();
        assert!(p.iter().all(|p| p.kl_nats == 0.0));
        // One sample or twelve: z = mu, so the same probabilities (up to float rounding of the mean).
        let single = model
            .predict(&samples.spectra, samples.len(), 1, 0)
            .unwrap();
        for (a, b) in single.iter().zip(&p) {
            assert!(a
                .probabilities
                .iter()
                .zip(&b.probabilities)
                .all(|(x, y)| (x - y).abs() < 1e-6));
        }
    }

    #[test]
    fn preprocessing_is_stored_and_reapplied() {
        let samples = toy_samples(6);
        let preprocessing = domain::Preprocessing {
            band_range_nm: Some((420.0, 1000.0)),
            savitzky_golay: Some(domain::SavitzkyGolay {
                window: 5,
                order: 2,
                derivative: 0,
            }),
            snv: true,
            ..Default::default()
        };
        let config = TrainConfig {
            preprocessing: preprocessing.clone(),
            ..quick_config()
        };
        let (model, _) =
            VibModel::train(&samples, &config, test_device(), vec![], "pixel", |_| {}).unwrap();
        assert_eq!(
            model.card().architecture.input_dim,
            11,
            "band 400 nm dropped"
        );
        assert_eq!(model.card().train_config.preprocessing, preprocessing);
        let predictions = model
            .predict(&samples.spectra, samples.len(), 12, 0)
            .unwrap();
        assert_reloads_identically(&model, &samples, &predictions);
        let correct = predictions
            .iter()
            .zip(&samples.label_codes)
            .filter(|(p, &c)| model.card().classes.get(p.predicted_index).unwrap().code == c)
            .count();
        assert!(correct as f64 / samples.len() as f64 > 0.9, "{correct}");
    }

    #[test]
    fn convolutional_encoder_learns_and_reloads() {
        let samples = toy_samples(8);
        let config = TrainConfig {
            encoder: EncoderKind::Conv,
            ..quick_config()
        };
        let (model, _) =
            VibModel::train(&samples, &config, test_device(), vec![], "pixel", |_| {}).unwrap();
        assert_eq!(model.card().architecture.encoder, EncoderKind::Conv);
        assert!(model.vs.variables().contains_key("conv0.weight"));
        assert!(
            model.card().training.train.accuracy > 0.9,
            "{:?}",
            model.card().training.train
        );
        let predictions = model
            .predict(&samples.spectra, samples.len(), 12, 0)
            .unwrap();
        assert_reloads_identically(&model, &samples, &predictions);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let samples = toy_samples(1);
        let (model, _) = VibModel::train(
            &samples,
            &TrainConfig {
                epochs: 1,
                ..quick_config()
            },
            test_device(),
            vec![],
            "pixel",
            |_| {},
        )
        .unwrap();
        assert!(model.predict(&[0.0; 5], 1, 12, 0).is_err());
        assert!(model.predict(&[f32::NAN; 12], 1, 12, 0).is_err());
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.safetensors");
        std::fs::write(&junk, b"not a model").unwrap();
        let err = VibModel::load(&junk, test_device())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("junk.safetensors") && err.contains("not a model file"),
            "{err}"
        );
    }
}
