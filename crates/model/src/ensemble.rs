//! The networks of a model: one, or an ensemble whose probabilities are averaged (for a Gaussian
//! head: the mixture's first two moments, E[y] and E[y^2], which average the same way).
//!
//! Every member sees the same standardised spectra; each gives the softmax averaged over the
//! samples of z (the same eps table for all) and its KL. The ensemble's probabilities are the
//! members' mean, its KL the mean of their KLs, both summed in member order in f64, so the result
//! is as reproducible as one member's.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{Error, Result};
use crate::inference::{CpuNet, RawPrediction};
use crate::network::Architecture;
use crate::persist::NamedTensor;

/// Threads of the CPU forward pass; 0 until set: the machine's available parallelism.
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// Threads the CPU forward pass uses from now on (at least 1). Predictions do not depend on it.
pub fn set_threads(threads: usize) {
    THREADS.store(threads.max(1), Ordering::Relaxed);
}

/// Threads of the CPU forward pass.
pub fn threads() -> usize {
    match THREADS.load(Ordering::Relaxed) {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    }
}

/// Prediction on a device other than the CPU: the training crate's libtorch networks on CUDA.
/// It computes what [`CpuNet::predict`] computes (the same eps), equal to it to float rounding.
pub trait Accelerator: std::fmt::Debug + Send + Sync {
    /// Member `member`'s predictions for `n` standardised spectra `x`.
    fn predict(
        &self,
        member: usize,
        x: &[f32],
        n: usize,
        z_samples: usize,
        seed: u64,
    ) -> Result<Vec<RawPrediction>>;

    /// The device, for logs.
    fn device_name(&self) -> String;
}

/// One trained network: its weights as the model file stores them, and laid out for the
/// fixed-order CPU forward pass.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub tensors: Vec<NamedTensor>,
    pub cpu: CpuNet,
}

impl Member {
    /// A network of `arch` from its tensors, which must be exactly those of
    /// [`Architecture::weight_shapes`] (names and shapes); they are kept sorted by name.
    pub(crate) fn new(arch: &Architecture, mut tensors: Vec<NamedTensor>) -> Result<Self> {
        tensors.sort_by(|a, b| a.name.cmp(&b.name));
        let expected = arch.weight_shapes();
        let found: Vec<(&str, &[usize])> = tensors
            .iter()
            .map(|t| (t.name.as_str(), t.shape.as_slice()))
            .collect();
        let wanted: Vec<(&str, &[usize])> = expected
            .iter()
            .map(|(n, s)| (n.as_str(), s.as_slice()))
            .collect();
        if found != wanted {
            return Err(Error::Data(format!(
                "the network's tensors are {found:?}, this architecture has {wanted:?}"
            )));
        }
        if let Some(t) = tensors
            .iter()
            .find(|t| t.values.len() != t.shape.iter().product::<usize>())
        {
            return Err(Error::Data(format!(
                "tensor '{}' has {} values for shape {:?}",
                t.name,
                t.values.len(),
                t.shape
            )));
        }
        let cpu = CpuNet::new(arch, &tensors)?;
        Ok(Self { tensors, cpu })
    }
}

/// The members' mean probabilities and mean KL, per spectrum (see `MemberSums`); a single
/// member's predictions are returned as they are (the mean of one is the same bits).
pub fn average(mut per_member: Vec<Vec<RawPrediction>>) -> Vec<RawPrediction> {
    if per_member.len() == 1 {
        return per_member.pop().unwrap_or_default();
    }
    let n = per_member.first().map_or(0, Vec::len);
    let outputs = per_member
        .first()
        .and_then(|m| m.first())
        .map_or(0, |r| r.probabilities.len());
    let mut sums = MemberSums::new(n, outputs);
    for member in &per_member {
        sums.add_rows(member);
    }
    sums.mean()
}

/// The sums behind the members' mean: per spectrum, each output and the KL summed in f64 in
/// member order, divided by the member count at the end (so the mean of one member is its own
/// values, bit for bit).
#[derive(Debug)]
pub(crate) struct MemberSums {
    outputs: usize,
    probabilities: Vec<f64>,
    kl: Vec<f64>,
    members: usize,
}

impl MemberSums {
    /// Sums for `rows` spectra of `outputs` outputs each.
    pub(crate) fn new(rows: usize, outputs: usize) -> Self {
        Self {
            outputs,
            probabilities: vec![0.0; rows * outputs],
            kl: vec![0.0; rows],
            members: 0,
        }
    }

    /// One member's predictions, flat: `probabilities` [rows, outputs], `kl` [rows].
    pub(crate) fn add(&mut self, probabilities: &[f32], kl: &[f64]) {
        for (sum, &p) in self.probabilities.iter_mut().zip(probabilities) {
            *sum += p as f64;
        }
        for (sum, &k) in self.kl.iter_mut().zip(kl) {
            *sum += k;
        }
        self.members += 1;
    }

    /// One member's predictions, a row each.
    fn add_rows(&mut self, rows: &[RawPrediction]) {
        for ((sums, sum_kl), r) in self
            .probabilities
            .chunks_exact_mut(self.outputs.max(1))
            .zip(&mut self.kl)
            .zip(rows)
        {
            for (sum, &p) in sums.iter_mut().zip(&r.probabilities) {
                *sum += p as f64;
            }
            *sum_kl += r.kl_nats;
        }
        self.members += 1;
    }

    /// The means, a prediction per spectrum.
    pub(crate) fn mean(&self) -> Vec<RawPrediction> {
        let members = self.members as f64;
        self.probabilities
            .chunks_exact(self.outputs.max(1))
            .zip(&self.kl)
            .map(|(sums, &kl)| RawPrediction {
                probabilities: sums.iter().map(|&s| (s / members) as f32).collect(),
                kl_nats: kl / members,
            })
            .collect()
    }
}
