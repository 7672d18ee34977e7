//! Fitting one network: the data prepared once (preprocessed, standardised), then Adam(W) on the VIB
//! loss with class-balanced minibatches, a cosine learning rate, optional input noise, and early
//! stopping on held-out samples. Cross-validation, ensembles and the final model all train here.

use std::collections::HashMap;

use domain::{Preprocessing, SpectralSamples};
use tch::nn::OptimizerConfig;
use tch::{nn, Kind, Tensor};

use model::{
    standardise, Architecture, ClassBalance, EncoderKind, EpochRecord, Error, Head, Result,
    TrainConfig,
};

use crate::error::TorchContext;
use crate::network::{vib_loss, VibNet};
use crate::vib::seeded_lock;

/// Labelled spectra after a preprocessing chain: row-major `[n, features]`.
#[derive(Debug, Clone)]
pub(crate) struct Features {
    pub values: Vec<f32>,
    pub features: usize,
    /// Class index of each row (for a continuous target: its quantile bin, the strata of the
    /// splits).
    pub targets: Vec<usize>,
    /// The standardised continuous target of each row, for a Gaussian head.
    pub target_values: Option<Vec<f32>>,
}

impl Features {
    /// Apply `preprocessing` to every spectrum of `samples`; `targets` are class indices.
    pub(crate) fn prepare(
        samples: &SpectralSamples,
        preprocessing: &Preprocessing,
        targets: &[usize],
    ) -> Result<Self> {
        let preprocessor = preprocessing
            .for_axis(&samples.axis)
            .map_err(|e| Error::Config(e.to_string()))?;
        let features = preprocessor.output_len();
        let mut values = Vec::with_capacity(samples.len() * features);
        for i in 0..samples.len() {
            values.extend(
                preprocessor
                    .apply(samples.spectrum(i))
                    .map_err(|e| Error::Data(e.to_string()))?,
            );
        }
        Ok(Self {
            values,
            features,
            targets: targets.to_vec(),
            target_values: None,
        })
    }

    /// With standardised continuous targets (one per row), for a Gaussian head.
    pub(crate) fn with_target_values(mut self, values: Option<&[f32]>) -> Self {
        self.target_values = values.map(<[f32]>::to_vec);
        self
    }

    pub(crate) fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.features..(i + 1) * self.features]
    }

    /// Per-feature mean and standard deviation over the rows `idx` (f64 sums in index order).
    pub(crate) fn standardisation(&self, idx: &[usize]) -> (Vec<f32>, Vec<f32>) {
        let f = self.features;
        let mut mean = vec![0f64; f];
        for &i in idx {
            for (m, &v) in mean.iter_mut().zip(self.row(i)) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= idx.len() as f64);
        let mut var = vec![0f64; f];
        for &i in idx {
            for ((s, &v), m) in var.iter_mut().zip(self.row(i)).zip(&mean) {
                *s += (v as f64 - m).powi(2);
            }
        }
        (
            mean.iter().map(|&m| m as f32).collect(),
            var.iter()
                .map(|&s| ((s / idx.len() as f64).sqrt().max(1e-6)) as f32)
                .collect(),
        )
    }

    /// Standardised rows `idx`, row-major.
    pub(crate) fn standardised(&self, idx: &[usize], mean: &[f32], std: &[f32]) -> Vec<f32> {
        let raw: Vec<f32> = idx
            .iter()
            .flat_map(|&i| self.row(i).iter().copied())
            .collect();
        standardise(&raw, mean, std)
    }
}

pub(crate) fn tensor_2d(
    values: &[f32],
    rows: usize,
    cols: usize,
    device: tch::Device,
) -> Result<Tensor> {
    Tensor::from_slice(values)
        .f_view([rows as i64, cols as i64])
        .doing("shaping input")
        .map(|t| t.to_device(device))
}

/// Standardised spectra and targets on the device: class indices (int64), or standardised values
/// (float) when the features carry continuous targets.
pub(crate) struct Batch {
    pub x: Tensor,
    pub y: Tensor,
    pub rows: usize,
}

impl Batch {
    pub(crate) fn new(
        data: &Features,
        idx: &[usize],
        mean: &[f32],
        std: &[f32],
        device: tch::Device,
    ) -> Result<Self> {
        let x = data.standardised(idx, mean, std);
        let y = match &data.target_values {
            Some(values) => {
                let y: Vec<f32> = idx.iter().map(|&i| values[i]).collect();
                Tensor::from_slice(&y)
            }
            None => {
                let y: Vec<i64> = idx.iter().map(|&i| data.targets[i] as i64).collect();
                Tensor::from_slice(&y)
            }
        };
        Ok(Self {
            x: tensor_2d(&x, idx.len(), data.features, device)?,
            y: y.to_device(device),
            rows: idx.len(),
        })
    }
}

/// A trained network and how its training went.
#[derive(Debug)]
pub(crate) struct Fitted {
    pub vs: nn::VarStore,
    pub net: VibNet,
    pub history: Vec<EpochRecord>,
    /// The epoch whose weights were kept: the best validation loss, or the last epoch.
    pub best_epoch: usize,
}

/// The architecture `config` gives for `features` inputs and a `head` over `classes` classes.
pub(crate) fn architecture(
    config: &TrainConfig,
    features: usize,
    head: Head,
    classes: usize,
) -> Result<Architecture> {
    if config.encoder == EncoderKind::Conv && features < 8 {
        return Err(Error::Config(format!(
            "the convolutional encoder needs at least 8 bands, not {features}"
        )));
    }
    Ok(Architecture {
        encoder: config.encoder,
        input_dim: features,
        hidden_dims: config.hidden_dims.clone(),
        latent_dim: config.latent_dim,
        classes: head.outputs(classes),
        head,
        deterministic: config.deterministic,
    })
}

/// Train one network with `seed` on `train`, early-stopping on `validation` when given (the best
/// weights restored), for at most `config.epochs` epochs. Holds the seeded-work lock throughout.
pub(crate) fn fit(
    train: &Batch,
    validation: Option<&Batch>,
    architecture: &Architecture,
    config: &TrainConfig,
    seed: u64,
    device: tch::Device,
    on_epoch: &mut dyn FnMut(&EpochRecord),
) -> Result<Fitted> {
    let _seeded = seeded_lock();
    tch::manual_seed(seed as i64);
    let vs = nn::VarStore::new(device);
    let net = VibNet::new(&vs.root(), architecture);
    let mut optimizer = if config.weight_decay > 0.0 {
        nn::AdamW {
            wd: config.weight_decay,
            ..Default::default()
        }
        .build(&vs, config.learning_rate)
    } else {
        nn::Adam::default().build(&vs, config.learning_rate)
    }
    .doing("building the optimiser")?;

    let n_train = train.rows as i64;
    let classifier = architecture.head == Head::Classifier;
    // A continuous target is never rebalanced: that would change the distribution it is fitted to.
    let sample_weights = match config.class_balance {
        ClassBalance::Sampling if classifier => {
            let y: Vec<i64> =
                Vec::try_from(train.y.to_device(tch::Device::Cpu)).doing("copying labels")?;
            let mut counts = vec![0usize; architecture.classes];
            y.iter().for_each(|&c| counts[c as usize] += 1);
            let w: Vec<f64> = y.iter().map(|&c| 1.0 / counts[c as usize] as f64).collect();
            Some(Tensor::from_slice(&w).to_device(device))
        }
        _ => None,
    };
    let mut history = Vec::new();
    let mut best: Option<(f64, usize, HashMap<String, Tensor>)> = None;
    let mut since_best = 0;
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
            let (mut x, y) = (
                train.x.index_select(0, &batch),
                train.y.index_select(0, &batch),
            );
            if config.input_noise > 0.0 {
                x = &x + x.randn_like() * config.input_noise;
            }
            let (loss, logits) = vib_loss(&net, &x, &y, config.beta);
            optimizer.zero_grad();
            loss.total.backward();
            optimizer.clip_grad_norm(config.max_grad_norm);
            optimizer.step();
            let weight = len as f64;
            loss_sum += loss.total.double_value(&[]) * weight;
            ce_sum += loss.cross_entropy.double_value(&[]) * weight;
            kl_sum += loss.kl.double_value(&[]) * weight;
            if classifier {
                correct += logits
                    .argmax(-1, false)
                    .eq_tensor(&y)
                    .sum(Kind::Int64)
                    .int64_value(&[]);
            }
            start += len;
        }
        let (validation_loss, validation_accuracy) = match validation {
            Some(v) => {
                let (loss, accuracy) = tch::no_grad(|| {
                    let (loss, logits) = vib_loss(&net, &v.x, &v.y, config.beta);
                    let accuracy = classifier.then(|| {
                        logits
                            .argmax(-1, false)
                            .eq_tensor(&v.y)
                            .to_kind(Kind::Float)
                            .mean(Kind::Float)
                            .double_value(&[])
                    });
                    (loss.total.double_value(&[]), accuracy)
                });
                (Some(loss), accuracy)
            }
            None => (None, None),
        };
        let record = EpochRecord {
            member: 0,
            epoch,
            loss: loss_sum / n_train as f64,
            cross_entropy_nats: ce_sum / n_train as f64,
            kl_nats: kl_sum / n_train as f64,
            // No accuracy for a continuous target (NaN in the history table).
            train_accuracy: if classifier {
                correct as f64 / n_train as f64
            } else {
                f64::NAN
            },
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
                    tracing::debug!(epoch, "early stop");
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
    Ok(Fitted {
        vs,
        net,
        history,
        best_epoch,
    })
}

/// Multiply-adds of one forward pass of one spectrum: the unit of training work the tuning budget
/// is counted in (a backward pass costs about twice as much, for every architecture alike).
pub(crate) fn forward_cost(arch: &Architecture) -> f64 {
    let mut cost = 0f64;
    let mut width = arch.input_dim as f64;
    if arch.encoder == EncoderKind::Conv {
        let bands = arch.input_dim as f64;
        cost += bands * 16.0 * 7.0 + (bands / 2.0) * 32.0 * 16.0 * 5.0;
        width = 32.0 * ((arch.input_dim / 2) / 2) as f64;
    }
    for &h in &arch.hidden_dims {
        cost += width * h as f64;
        width = h as f64;
    }
    cost += width * 2.0 * arch.latent_dim as f64;
    cost += (arch.latent_dim * arch.classes) as f64;
    cost
}
