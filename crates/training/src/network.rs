//! The VIB network in libtorch (the layers of `model::Architecture::weight_shapes`): an encoder (MLP, or 1D convolutions along the spectrum followed by the MLP) to
//! (mu, logvar), reparameterised z, a linear decoder on z: class logits p(y|z), or the mean and
//! log-variance of a Gaussian p(y|z) for a continuous target (severity).

use model::{Architecture, EncoderKind, Head, LOGVAR_MAX, LOGVAR_MIN};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// Encoder q(z|x) = N(mu(x), diag(exp(logvar(x)))) and classifier p(y|z).
#[derive(Debug)]
pub(crate) struct VibNet {
    encoder: nn::Sequential,
    head: nn::Linear,
    classifier: nn::Linear,
    latent_dim: i64,
    deterministic: bool,
    pub(crate) output: Head,
}

impl VibNet {
    pub(crate) fn new(root: &nn::Path, arch: &Architecture) -> Self {
        let mut encoder = nn::seq();
        let mut width = arch.input_dim as i64;
        if arch.encoder == EncoderKind::Conv {
            let conv = |name: &str, c_in, c_out, k| {
                nn::conv1d(
                    root / name,
                    c_in,
                    c_out,
                    k,
                    nn::ConvConfig {
                        padding: k / 2,
                        ..Default::default()
                    },
                )
            };
            let bands = width;
            encoder = encoder
                .add_fn(move |x| x.view([-1, 1, bands]))
                .add(conv("conv0", 1, 16, 7))
                .add_fn(|x| x.relu().max_pool1d(2, 2, 0, 1, false))
                .add(conv("conv1", 16, 32, 5))
                .add_fn(|x| x.relu().max_pool1d(2, 2, 0, 1, false))
                .add_fn(|x| x.flatten(1, -1));
            width = 32 * ((bands / 2) / 2);
        }
        for (i, &h) in arch.hidden_dims.iter().enumerate() {
            encoder = encoder
                .add(nn::linear(
                    root / format!("encoder{i}"),
                    width,
                    h as i64,
                    Default::default(),
                ))
                .add_fn(|x| x.relu());
            width = h as i64;
        }
        let latent_dim = arch.latent_dim as i64;
        let head = nn::linear(
            root / "mu_logvar",
            width,
            2 * latent_dim,
            Default::default(),
        );
        let classifier = nn::linear(
            root / "classifier",
            latent_dim,
            arch.classes as i64,
            Default::default(),
        );
        Self {
            encoder,
            head,
            classifier,
            latent_dim,
            deterministic: arch.deterministic,
            output: arch.head,
        }
    }

    /// z for the classifier: a reparameterised sample, or mu itself for the deterministic baseline.
    pub(crate) fn sample_z(&self, mu: &Tensor, logvar: &Tensor) -> Tensor {
        if self.deterministic {
            mu.shallow_clone()
        } else {
            Self::reparameterise(mu, logvar)
        }
    }

    /// Per-dimension KL [n, latent_dim]; zeros for the deterministic baseline, which has no rate.
    pub(crate) fn rate_per_dimension(&self, mu: &Tensor, logvar: &Tensor) -> Tensor {
        if self.deterministic {
            mu.zeros_like()
        } else {
            kl_per_dimension(mu, logvar)
        }
    }

    /// `x`: [n, input_dim] standardised spectra -> (mu, logvar), each [n, latent_dim].
    pub(crate) fn encode(&self, x: &Tensor) -> (Tensor, Tensor) {
        let out = self.head.forward(&self.encoder.forward(x));
        let mu = out.narrow(1, 0, self.latent_dim);
        let logvar = out
            .narrow(1, self.latent_dim, self.latent_dim)
            .clamp(LOGVAR_MIN, LOGVAR_MAX);
        (mu, logvar)
    }

    /// z = mu + exp(0.5 logvar) * eps, eps ~ N(0, I): [n, latent_dim].
    pub(crate) fn reparameterise(mu: &Tensor, logvar: &Tensor) -> Tensor {
        mu + (logvar * 0.5).exp() * mu.randn_like()
    }

    /// `z`: [n, latent_dim] -> logits [n, classes].
    pub(crate) fn classify(&self, z: &Tensor) -> Tensor {
        self.classifier.forward(z)
    }
}

/// Closed-form KL(N(mu, diag(exp(logvar))) || N(0, I)) per latent dimension: [n, latent_dim], nats.
pub(crate) fn kl_per_dimension(mu: &Tensor, logvar: &Tensor) -> Tensor {
    (mu.square() + logvar.exp() - logvar - 1.0) * 0.5
}

/// Summed over latent dimensions: [n], nats.
#[cfg(test)]
pub(crate) fn kl_nats(mu: &Tensor, logvar: &Tensor) -> Tensor {
    kl_per_dimension(mu, logvar).sum_dim_intlist(1, false, Kind::Float)
}

/// The VIB loss and its parts: mean cross-entropy + beta * batch mean of the KL.
pub(crate) struct Loss {
    pub total: Tensor,
    pub cross_entropy: Tensor,
    pub kl: Tensor,
}

/// Gaussian -ln p(y|z) per row of the decoder's outputs [n, 2] (mean, log-variance clamped as the
/// encoder's) for targets `y` [n] (float): 0.5 (ln 2 pi + logvar + (y - mean)^2 / exp(logvar)).
pub(crate) fn gaussian_nll(outputs: &Tensor, y: &Tensor) -> Tensor {
    let mean = outputs.select(1, 0);
    let logvar = outputs.select(1, 1).clamp(LOGVAR_MIN, LOGVAR_MAX);
    ((y - mean).square() * (-&logvar).exp() + logvar + (2.0 * std::f64::consts::PI).ln()) * 0.5
}

/// -ln p(y|z) averaged over the batch, for the decoder's outputs and targets `y` (class indices,
/// int64, for the classifier; standardised values, float, for the Gaussian head).
pub(crate) fn likelihood_loss(head: Head, outputs: &Tensor, y: &Tensor) -> Tensor {
    match head {
        Head::Classifier => outputs.cross_entropy_for_logits(y),
        Head::Gaussian => gaussian_nll(outputs, y).mean(Kind::Float),
    }
}

/// `x`: [n, input_dim], `y`: [n] class indices (int64) or standardised targets (float, Gaussian
/// head). Returns the loss and the decoder's outputs [n, classes or 2]. `cross_entropy` is the
/// mean -ln p(y|z) of either head.
pub(crate) fn vib_loss(net: &VibNet, x: &Tensor, y: &Tensor, beta: f64) -> (Loss, Tensor) {
    let (mu, logvar) = net.encode(x);
    let z = net.sample_z(&mu, &logvar);
    let logits = net.classify(&z);
    let cross_entropy = likelihood_loss(net.output, &logits, y);
    let kl = net
        .rate_per_dimension(&mu, &logvar)
        .sum_dim_intlist(1, false, Kind::Float)
        .mean(Kind::Float);
    let total = &cross_entropy + &kl * beta;
    (
        Loss {
            total,
            cross_entropy,
            kl,
        },
        logits,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// libtorch's Gaussian -ln p(y|z) against the closed form computed by hand: y = 1.3, mean 1,
    /// variance 0.25: 0.5 (ln 2 pi + ln 0.25 + 0.09 / 0.25) = 0.405791.
    #[test]
    fn gaussian_nll_by_hand() {
        let outputs = Tensor::from_slice(&[1.0f32, 0.25f32.ln()]).view([1, 2]);
        let y = Tensor::from_slice(&[1.3f32]);
        let nll = gaussian_nll(&outputs, &y).double_value(&[0]);
        assert!((nll - 0.405_791_5).abs() < 1e-6, "{nll}");
    }

    /// The tensors the model file names for an architecture (`Architecture::weight_shapes`, what
    /// the libtorch-free loader checks) are exactly the layers libtorch builds here.
    #[test]
    fn weight_shapes_are_the_libtorch_layers() {
        for (encoder, input_dim, hidden_dims, head, classes) in [
            (EncoderKind::Mlp, 6, vec![8], Head::Classifier, 3),
            (EncoderKind::Mlp, 224, vec![256, 128], Head::Classifier, 5),
            (EncoderKind::Conv, 37, vec![16], Head::Gaussian, 2),
            (EncoderKind::Conv, 200, vec![], Head::Classifier, 4),
        ] {
            let arch = Architecture {
                encoder,
                input_dim,
                hidden_dims,
                latent_dim: 5,
                classes,
                head,
                deterministic: false,
            };
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let _net = {
                let _seeded = crate::vib::seeded_lock();
                VibNet::new(&vs.root(), &arch)
            };
            let mut built: Vec<(String, Vec<usize>)> = vs
                .variables()
                .into_iter()
                .map(|(name, t)| (name, t.size().iter().map(|&d| d as usize).collect()))
                .collect();
            built.sort();
            assert_eq!(arch.weight_shapes(), built, "{arch:?}");
        }
    }

    /// Independent check of the closed form: KL(q || p) = E_q[log q(z) - log p(z)], estimated by
    /// Monte Carlo with z drawn from q, within 4 standard errors.
    #[test]
    fn closed_form_kl_matches_monte_carlo() {
        let _seeded = crate::vib::seeded_lock();
        tch::manual_seed(3);
        let mu = Tensor::from_slice(&[0.5f32, -1.2, 0.0, 2.0]).view([1, 4]);
        let logvar = Tensor::from_slice(&[-0.7f32, 0.4, -2.0, 0.1]).view([1, 4]);
        let closed = kl_nats(&mu, &logvar).double_value(&[0]);
        let draws = 200_000i64;
        let sigma = (&logvar * 0.5).exp();
        let eps = Tensor::randn([draws, 4], (Kind::Double, tch::Device::Cpu));
        let z = mu.to_kind(Kind::Double) + sigma.to_kind(Kind::Double) * &eps;
        // log q(z) - log p(z), summed over dimensions; the 0.5 log(2 pi) terms cancel.
        let log_q = (eps.square() * -0.5 - logvar.to_kind(Kind::Double) * 0.5).sum_dim_intlist(
            1,
            false,
            Kind::Double,
        );
        let log_p = (z.square() * -0.5).sum_dim_intlist(1, false, Kind::Double);
        let terms = log_q - log_p;
        let estimate = terms.mean(Kind::Double).double_value(&[]);
        let standard_error = terms.std(true).double_value(&[]) / (draws as f64).sqrt();
        assert!(
            (estimate - closed).abs() < 4.0 * standard_error,
            "closed form {closed}, Monte Carlo {estimate} +- {standard_error}"
        );
        // Hand-computed for one dimension: mu 0.5, logvar -0.7.
        let one = 0.5 * (0.25 + (-0.7f64).exp() + 0.7 - 1.0);
        let first = kl_per_dimension(&mu, &logvar).double_value(&[0, 0]);
        assert!((first - one).abs() < 1e-6);
    }

    #[test]
    fn kl_per_dimension_sums_to_total() {
        let _seeded = crate::vib::seeded_lock();
        tch::manual_seed(1);
        let mu = Tensor::randn([5, 7], (Kind::Float, tch::Device::Cpu));
        let logvar = Tensor::randn([5, 7], (Kind::Float, tch::Device::Cpu));
        let total = kl_nats(&mu, &logvar);
        let summed = kl_per_dimension(&mu, &logvar).sum_dim_intlist(1, false, Kind::Float);
        assert!(total.allclose(&summed, 1e-6, 1e-6, false));
        assert!(bool::try_from(kl_per_dimension(&mu, &logvar).ge(0.0).all()).unwrap());
    }

    /// Gradients of both loss terms flow into the encoder's first layer through z = mu + sigma * eps.
    #[test]
    fn gradients_reach_the_encoder() {
        let _seeded = crate::vib::seeded_lock();
        tch::manual_seed(2);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let arch = Architecture {
            encoder: EncoderKind::Mlp,
            input_dim: 6,
            hidden_dims: vec![8],
            latent_dim: 3,
            classes: 3,
            head: Head::Classifier,
            deterministic: false,
        };
        let net = VibNet::new(&vs.root(), &arch);
        let x = Tensor::randn([10, 6], (Kind::Float, tch::Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 1, 2, 0, 1, 2, 0, 1, 2, 0]);
        for beta in [0.0, 1.0] {
            vs.trainable_variables()
                .iter_mut()
                .for_each(|t| t.zero_grad());
            let (loss, _) = vib_loss(&net, &x, &y, beta);
            loss.total.backward();
            let variables = vs.variables();
            let weight = &variables["encoder0.weight"];
            let grad_norm = weight.grad().norm().double_value(&[]);
            assert!(
                grad_norm > 0.0,
                "beta {beta}: encoder gradient norm {grad_norm}"
            );
        }
        // The KL term alone also reaches the encoder (through mu and logvar).
        vs.trainable_variables()
            .iter_mut()
            .for_each(|t| t.zero_grad());
        let (mu, logvar) = net.encode(&x);
        kl_nats(&mu, &logvar).mean(Kind::Float).backward();
        assert!(
            vs.variables()["encoder0.weight"]
                .grad()
                .norm()
                .double_value(&[])
                > 0.0
        );
    }
}
