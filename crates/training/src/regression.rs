//! The rate and likelihood of a network with a Gaussian head, by libtorch's Monte Carlo.

use model::Result;
use tch::{Kind, Tensor};

use crate::error::TorchContext;
use crate::network::{gaussian_nll, VibNet};

/// The rate and likelihood of one network on standardised `x` [n, bands] with standardised
/// targets `y` [n]: (mean -ln p(y|z) over `z_samples` samples of z, standardised units; mean KL per
/// latent dimension). Callers hold the seeded-work lock.
pub(crate) fn rate_and_likelihood(
    net: &VibNet,
    x: &Tensor,
    y: &Tensor,
    z_samples: usize,
) -> Result<(f64, Vec<f64>)> {
    let (nll, kl_dims) = tch::no_grad(|| {
        let (mu, logvar) = net.encode(x);
        let kl_dims = net.rate_per_dimension(&mu, &logvar);
        let mut nll = 0.0;
        for _ in 0..z_samples {
            let outputs = net.classify(&net.sample_z(&mu, &logvar));
            nll += gaussian_nll(&outputs, y)
                .mean(Kind::Float)
                .double_value(&[]);
        }
        (
            nll / z_samples as f64,
            kl_dims.mean_dim(0, false, Kind::Float),
        )
    });
    let kl_per_dimension: Vec<f64> = Vec::<f32>::try_from(kl_dims.to_device(tch::Device::Cpu))
        .doing("copying KL")?
        .into_iter()
        .map(f64::from)
        .collect();
    Ok((nll, kl_per_dimension))
}
