//! Networks in libtorch: a trained network's weights as the model file's tensors, a model's
//! tensors back into libtorch networks, and prediction with them on a GPU (the model's
//! [`Accelerator`]), computing what the CPU forward pass computes with the same eps.

use std::sync::{Arc, Mutex};

use model::{
    eps_table, Accelerator, Architecture, CpuNet, Error, Head, NamedTensor, RawPrediction, Result,
    VibModel, LOGVAR_MAX, LOGVAR_MIN,
};
use tch::{nn, Kind, Tensor};

use crate::error::TorchContext;
use crate::network::VibNet;
use crate::training::tensor_2d;
use crate::vib::seeded_lock;

/// One network in libtorch.
#[derive(Debug)]
pub(crate) struct TorchNet {
    pub vs: nn::VarStore,
    pub net: VibNet,
}

impl TorchNet {
    /// A network of `arch` on `device` holding `tensors` (a model's member).
    pub(crate) fn from_tensors(
        arch: &Architecture,
        tensors: &[NamedTensor],
        device: tch::Device,
    ) -> Result<Self> {
        let mut vs = nn::VarStore::new(device);
        // Initialising the layers draws from the global generator before the weights overwrite them.
        let net = {
            let _seeded = seeded_lock();
            VibNet::new(&vs.root(), arch)
        };
        let mut variables = vs.variables();
        if variables.len() != tensors.len() {
            return Err(Error::Data(format!(
                "{} tensors for a network of {} layers' weights",
                tensors.len(),
                variables.len()
            )));
        }
        for tensor in tensors {
            let variable = variables.get_mut(&tensor.name).ok_or_else(|| {
                Error::Data(format!("the network has no tensor '{}'", tensor.name))
            })?;
            let source = Tensor::from_slice(&tensor.values)
                .f_view(variable.size().as_slice())
                .doing("shaping weights")?
                .to_device(device);
            tch::no_grad(|| variable.copy_(&source));
        }
        vs.freeze();
        Ok(Self { vs, net })
    }

    /// The weights as the model file stores them, sorted by name.
    pub(crate) fn tensors(&self) -> Result<Vec<NamedTensor>> {
        let mut tensors = self
            .vs
            .variables()
            .into_iter()
            .map(|(name, tensor)| {
                let values: Vec<f32> = Vec::try_from(
                    tensor
                        .detach()
                        .to_device(tch::Device::Cpu)
                        .to_kind(Kind::Float)
                        .flatten(0, -1),
                )
                .doing("copying weights")?;
                Ok(NamedTensor {
                    name,
                    shape: tensor.size().iter().map(|&d| d as usize).collect(),
                    values,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        tensors.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(tensors)
    }

    /// Predictions for `n` standardised spectra `x`: on the CPU by the model crate's fixed-order
    /// forward pass (as the saved model will predict), on a GPU by libtorch.
    pub(crate) fn predict(
        &self,
        x: &[f32],
        n: usize,
        arch: &Architecture,
        z_samples: usize,
        seed: u64,
    ) -> Result<Vec<RawPrediction>> {
        if self.vs.device() == tch::Device::Cpu {
            let cpu = CpuNet::new(arch, &self.tensors()?)?;
            Ok(cpu.predict(x, n, z_samples, seed, model::threads()))
        } else {
            self.predict_on_device(x, n, arch, z_samples, seed)
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

/// A model's members in libtorch on a GPU: its [`Accelerator`]. libtorch's modules may not be
/// shared between threads, so one thread at a time uses them.
#[derive(Debug)]
pub(crate) struct DeviceMembers {
    pub nets: Mutex<Vec<TorchNet>>,
    pub arch: Architecture,
}

impl DeviceMembers {
    pub(crate) fn new(nets: Vec<TorchNet>, arch: Architecture) -> Self {
        Self {
            nets: Mutex::new(nets),
            arch,
        }
    }

    /// The networks, for this thread alone.
    pub(crate) fn nets(&self) -> std::sync::MutexGuard<'_, Vec<TorchNet>> {
        self.nets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Accelerator for DeviceMembers {
    fn predict(
        &self,
        member: usize,
        x: &[f32],
        n: usize,
        z_samples: usize,
        seed: u64,
    ) -> Result<Vec<RawPrediction>> {
        self.nets()[member].predict_on_device(x, n, &self.arch, z_samples, seed)
    }

    fn device_name(&self) -> String {
        format!("{:?}", self.nets()[0].vs.device()).to_lowercase()
    }
}

/// `model`'s members in libtorch on `device`.
pub(crate) fn torch_nets(model: &VibModel, device: tch::Device) -> Result<Vec<TorchNet>> {
    let arch = &model.card().architecture;
    (0..model.card().members)
        .map(|m| TorchNet::from_tensors(arch, model.member_tensors(m), device))
        .collect()
}

/// `model` predicting on `device`: as it is on the CPU, else with its members copied there.
pub(crate) fn on_device(model: VibModel, device: tch::Device) -> Result<VibModel> {
    if device == tch::Device::Cpu {
        return Ok(model);
    }
    let nets = torch_nets(&model, device)?;
    let arch = model.card().architecture.clone();
    Ok(model.with_accelerator(Arc::new(DeviceMembers::new(nets, arch))))
}

/// A Gaussian head's outputs [n, 2] (mean, log-variance) as the moments (E[y], E[y^2]) [n, 2]
/// that average into the mixture's moments.
fn gaussian_moments(outputs: &Tensor) -> Tensor {
    let mean = outputs.select(1, 0);
    let variance = outputs.select(1, 1).clamp(LOGVAR_MIN, LOGVAR_MAX).exp();
    let second = &variance + mean.square();
    Tensor::stack(&[mean, second], 1)
}
