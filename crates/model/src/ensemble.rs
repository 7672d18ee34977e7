//! The networks of a model: one, or an ensemble whose probabilities are averaged (for a Gaussian
//! head: the mixture's first two moments, E[y] and E[y^2], which average the same way).
//!
//! Every member sees the same standardised spectra; each gives the softmax averaged over the
//! samples of z (the same eps table for all) and its KL. The ensemble's probabilities are the
//! members' mean, its KL the mean of their KLs, both summed in member order in f64, so the result
//! is as reproducible as one member's.

use tch::{nn, Kind, Tensor};

use crate::error::{Error, Result, TorchContext};
use crate::inference::{eps_table, Conv, CpuNet, Dense, RawPrediction};
use crate::network::{Architecture, EncoderKind, Head, VibNet, LOGVAR_MAX, LOGVAR_MIN};
use crate::training::tensor_2d;

/// One trained network.
#[derive(Debug)]
pub(crate) struct Member {
    pub vs: nn::VarStore,
    pub net: VibNet,
    /// The weights laid out for the fixed-order CPU forward pass, when the member is on the CPU.
    pub cpu: Option<CpuNet>,
}

impl Member {
    pub(crate) fn new(vs: nn::VarStore, net: VibNet, arch: &Architecture) -> Result<Self> {
        let cpu = cpu_net(&vs, arch)?;
        Ok(Self { vs, net, cpu })
    }

    /// Predictions for `n` standardised spectra `x`.
    pub(crate) fn predict(
        &self,
        x: &[f32],
        n: usize,
        arch: &Architecture,
        z_samples: usize,
        seed: u64,
    ) -> Result<Vec<RawPrediction>> {
        match &self.cpu {
            Some(cpu) => {
                let threads = usize::try_from(tch::get_num_threads()).unwrap_or(1).max(1);
                Ok(cpu.predict(x, n, z_samples, seed, threads))
            }
            None => self.predict_on_device(x, n, arch, z_samples, seed),
        }
    }

    /// The same computation with libtorch on the member's (CUDA) device, in batches, with the
    /// same eps as the CPU path; reproducible on one device, equal to the CPU path to float
    /// rounding.
    pub(crate) fn predict_on_device(
        &self,
        x: &[f32],
        n: usize,
        arch: &Architecture,
        z_samples: usize,
        seed: u64,
    ) -> Result<Vec<RawPrediction>> {
        const BATCH: usize = 4096;
        let device = self.vs.device();
        let (features, latent, classes) = (arch.input_dim, arch.latent_dim, arch.classes);
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
                let samples = if arch.deterministic { 1 } else { z_samples };
                let sigma = (&logvar * 0.5).exp();
                let mut sum = Tensor::zeros([len as i64, classes as i64], (Kind::Float, device));
                for s in 0..samples {
                    let z = if arch.deterministic {
                        mu.shallow_clone()
                    } else {
                        &mu + &sigma * eps.select(0, s as i64)
                    };
                    let outputs = self.net.classify(&z);
                    sum += match arch.head {
                        Head::Classifier => outputs.softmax(-1, Kind::Float),
                        Head::Gaussian => gaussian_moments(&outputs),
                    };
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
}

/// A Gaussian head's outputs [n, 2] (mean, log-variance) as the moments (E[y], E[y^2]) [n, 2]
/// that average into the mixture's moments.
fn gaussian_moments(outputs: &Tensor) -> Tensor {
    let mean = outputs.select(1, 0);
    let variance = outputs.select(1, 1).clamp(LOGVAR_MIN, LOGVAR_MAX).exp();
    let second = &variance + mean.square();
    Tensor::stack(&[mean, second], 1)
}

/// The members' mean probabilities and mean KL, per spectrum; a single member's predictions are
/// returned as they are.
pub(crate) fn average(mut per_member: Vec<Vec<RawPrediction>>) -> Vec<RawPrediction> {
    if per_member.len() == 1 {
        return per_member.pop().unwrap_or_default();
    }
    let members = per_member.len() as f64;
    let n = per_member.first().map_or(0, Vec::len);
    (0..n)
        .map(|i| {
            let classes = per_member[0][i].probabilities.len();
            let mut probabilities = vec![0f64; classes];
            let mut kl = 0f64;
            for member in &per_member {
                let r = &member[i];
                probabilities
                    .iter_mut()
                    .zip(&r.probabilities)
                    .for_each(|(s, &p)| *s += p as f64);
                kl += r.kl_nats;
            }
            RawPrediction {
                probabilities: probabilities
                    .into_iter()
                    .map(|s| (s / members) as f32)
                    .collect(),
                kl_nats: kl / members,
            }
        })
        .collect()
}

/// The weights of a CPU member, copied out of libtorch for the fixed-order forward pass; `None`
/// for a member on another device.
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
        output: arch.head,
    }))
}
