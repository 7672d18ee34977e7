//! The VIB network's shape: an encoder (MLP, or 1D convolutions along the spectrum followed by the
//! MLP) to (mu, logvar), reparameterised z, a linear decoder on z: class logits p(y|z), or the mean
//! and log-variance of a Gaussian p(y|z) for a continuous target (severity). The weights' names and
//! shapes (`weight_shapes`) are the model file's tensors; the training crate builds the same
//! layers in libtorch.

/// logvar is clamped to this range before use, so exp(logvar) never overflows or vanishes.
pub const LOGVAR_MIN: f64 = -12.0;
pub const LOGVAR_MAX: f64 = 8.0;

/// The encoder's first stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EncoderKind {
    /// Fully connected layers on the whole spectrum.
    #[default]
    Mlp,
    /// Two 1D convolutions along the bands (16 filters of 7, 32 of 5, each with ReLU and max-pool
    /// by 2), flattened into the fully connected layers: local spectral shapes, fewer weights.
    Conv,
}

/// What the decoder p(y|z) predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Head {
    /// Class logits; the likelihood is the softmax (cross-entropy loss).
    #[default]
    Classifier,
    /// A continuous target: two outputs, the mean and log-variance of a Gaussian p(y|z) on the
    /// standardised target; the loss is its negative log-likelihood.
    Gaussian,
}

impl Head {
    fn is_classifier(&self) -> bool {
        *self == Head::Classifier
    }

    /// Outputs of the decoder for `classes` classes.
    pub fn outputs(self, classes: usize) -> usize {
        match self {
            Head::Classifier => classes,
            Head::Gaussian => 2,
        }
    }
}

/// Architecture, stored in the model file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Architecture {
    #[serde(default)]
    pub encoder: EncoderKind,
    pub input_dim: usize,
    pub hidden_dims: Vec<usize>,
    pub latent_dim: usize,
    /// Outputs of the decoder: the number of classes, or 2 (mean, log-variance) for a Gaussian head.
    pub classes: usize,
    /// Written only for a Gaussian head, so that a classifier's file is byte for byte what it was
    /// before heads existed.
    #[serde(default, skip_serializing_if = "Head::is_classifier")]
    pub head: Head,
    /// The deterministic baseline: z = mu, no sampling, no KL term (and no rate to report).
    #[serde(default)]
    pub deterministic: bool,
}

impl Architecture {
    /// Every weight tensor of one network of this architecture, by name (as in the model file,
    /// without the member prefix), with its shape, sorted by name: `conv0`/`conv1` (convolutional
    /// encoder: [out channels, in channels, kernel]), `encoder{i}` (hidden layers), `mu_logvar`
    /// (the encoder's head, 2 x latent outputs) and `classifier` (the decoder), each a `.weight`
    /// [outputs, inputs] and a `.bias` [outputs].
    pub fn weight_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut shapes = Vec::new();
        let mut layer = |name: String, weight: Vec<usize>| {
            shapes.push((format!("{name}.bias"), vec![weight[0]]));
            shapes.push((format!("{name}.weight"), weight));
        };
        let mut width = self.input_dim;
        if self.encoder == EncoderKind::Conv {
            layer("conv0".into(), vec![16, 1, 7]);
            layer("conv1".into(), vec![32, 16, 5]);
            width = 32 * ((width / 2) / 2);
        }
        for (i, &h) in self.hidden_dims.iter().enumerate() {
            layer(format!("encoder{i}"), vec![h, width]);
            width = h;
        }
        layer("mu_logvar".into(), vec![2 * self.latent_dim, width]);
        layer("classifier".into(), vec![self.classes, self.latent_dim]);
        shapes.sort();
        shapes
    }
}
