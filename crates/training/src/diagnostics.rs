//! The information bounds' ingredients of one network on a labelled set, by libtorch's Monte
//! Carlo over samples of z.

use domain::{ClassSet, Prediction};
use model::{Metrics, Result, SetDiagnostics, ACTIVE_DIMENSION_NATS};
use tch::{Kind, Tensor};

use crate::error::TorchContext;
use crate::network::VibNet;

/// Run the network on standardised `x` [n, bands] with class indices `y` [n], drawing `z_samples`
/// samples of z per spectrum. Callers hold the seeded-work lock.
pub(crate) fn diagnose(
    net: &VibNet,
    x: &Tensor,
    y: &Tensor,
    classes: &ClassSet,
    z_samples: usize,
) -> Result<(SetDiagnostics, Vec<Prediction>)> {
    let n = x.size()[0];
    let (probabilities, kl_dims, cross_entropy) = tch::no_grad(|| {
        let (mu, logvar) = net.encode(x);
        let kl_dims = net.rate_per_dimension(&mu, &logvar);
        let mut sum = Tensor::zeros([n, classes.len() as i64], (Kind::Float, x.device()));
        let mut cross_entropy = 0.0;
        for _ in 0..z_samples {
            let logits = net.classify(&net.sample_z(&mu, &logvar));
            cross_entropy += logits.cross_entropy_for_logits(y).double_value(&[]);
            sum += logits.softmax(-1, Kind::Float);
        }
        (
            sum / z_samples as f64,
            kl_dims,
            cross_entropy / z_samples as f64,
        )
    });
    let kl_per_dimension_nats: Vec<f64> = Vec::<f32>::try_from(
        kl_dims
            .mean_dim(0, false, Kind::Float)
            .to_device(tch::Device::Cpu),
    )
    .doing("copying KL")?
    .into_iter()
    .map(f64::from)
    .collect();
    let kl: Vec<f32> = Vec::try_from(
        kl_dims
            .sum_dim_intlist(1, false, Kind::Float)
            .to_device(tch::Device::Cpu),
    )
    .doing("copying KL")?;
    let probabilities: Vec<f32> =
        Vec::try_from(probabilities.to_device(tch::Device::Cpu).flatten(0, -1))
            .doing("copying probabilities")?;
    let truth: Vec<usize> = Vec::<i64>::try_from(y.to_device(tch::Device::Cpu))
        .doing("copying labels")?
        .into_iter()
        .map(|c| c as usize)
        .collect();
    let predictions: Vec<Prediction> = probabilities
        .chunks(classes.len())
        .zip(&kl)
        .map(|(p, &k)| Prediction::from_probabilities(p.to_vec(), k as f64))
        .collect();
    let metrics = Metrics::compute(classes, &truth, &predictions);
    Ok((
        SetDiagnostics {
            samples: n as usize,
            accuracy: metrics.overall_accuracy,
            cross_entropy_nats: cross_entropy,
            mean_kl_nats: metrics.mean_kl_nats,
            active_dimensions: kl_per_dimension_nats
                .iter()
                .filter(|&&k| k > ACTIVE_DIMENSION_NATS)
                .count(),
            kl_per_dimension_nats,
            negative_log_likelihood_nats: metrics.negative_log_likelihood_nats,
            expected_calibration_error: metrics.expected_calibration_error,
            regression: None,
        },
        predictions,
    ))
}
