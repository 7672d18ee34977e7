/// How unequal class sizes are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClassBalance {
    /// Minibatches drawn with replacement, each class equally likely: the loss stays the plain
    /// mean cross-entropy + beta * KL of the VIB, and minority classes are not drowned out.
    Sampling,
    /// A plain shuffle of the training set each epoch.
    None,
}

/// Training settings of the VIB classifier.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct TrainConfig {
    /// Weight of the KL (rate) term: larger squeezes the bottleneck.
    pub beta: f64,
    /// Dimensions of z.
    pub latent_dim: usize,
    /// The encoder's first stage: fully connected or convolutional.
    pub encoder: crate::EncoderKind,
    /// Widths of the encoder's hidden layers.
    pub hidden_dims: Vec<usize>,
    /// Passes over the training set (an upper bound when early stopping is on).
    pub epochs: usize,
    pub batch_size: usize,
    /// Adam's initial learning rate; it decays on a cosine schedule to 5% over the epochs.
    pub learning_rate: f64,
    /// Gradient norm clip.
    pub max_grad_norm: f64,
    /// Fraction of groups (plants) held out for validation and early stopping; 0 disables both.
    pub validation_fraction: f64,
    /// Epochs without a better validation loss before training stops (best weights restored).
    pub patience: usize,
    pub seed: u64,
    /// Percentile of validation KL and entropy above which predictions are flagged `ood`.
    pub ood_percentile: f64,
    pub class_balance: ClassBalance,
    /// Train the same network without the bottleneck (z = mu, no KL), for comparison.
    pub deterministic: bool,
    /// Spectral preprocessing, applied the same way at prediction (stored in the model).
    pub preprocessing: domain::Preprocessing,
    /// Decoupled weight decay (AdamW) per step, relative to the learning rate; 0 is plain Adam.
    pub weight_decay: f64,
    /// Standard deviation of Gaussian noise added to the standardised spectra at each training
    /// step (a regulariser for small data sets); 0 adds none. Prediction never adds noise.
    pub input_noise: f64,
    /// Members of the ensemble: networks trained with seeds `seed`, `seed + 1`, ... whose
    /// probabilities are averaged. 1 is a single network.
    pub ensemble: usize,
}

impl Default for TrainConfig {
    /// beta 1e-3, 16 latent dimensions, encoder 256-128, 300 epochs of 64, Adam 2e-3, clip 5,
    /// 20% of plants for validation, patience 40, seed 0, OOD thresholds at the 99th percentile, class-balanced sampling, the VIB (not the deterministic
    /// baseline).
    fn default() -> Self {
        Self {
            beta: 1e-3,
            latent_dim: 16,
            encoder: crate::EncoderKind::Mlp,
            hidden_dims: vec![256, 128],
            epochs: 300,
            batch_size: 64,
            learning_rate: 2e-3,
            max_grad_norm: 5.0,
            validation_fraction: 0.2,
            patience: 40,
            seed: 0,
            ood_percentile: 99.0,
            class_balance: ClassBalance::Sampling,
            deterministic: false,
            preprocessing: domain::Preprocessing::default(),
            weight_decay: 0.0,
            input_noise: 0.0,
            ensemble: 1,
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::Error::Config(m));
        if !(self.beta >= 0.0 && self.beta.is_finite()) {
            return bad(format!(
                "beta must be a finite number >= 0, not {}",
                self.beta
            ));
        }
        if self.latent_dim == 0 || self.batch_size == 0 || self.epochs == 0 {
            return bad("latent-dim, batch-size and epochs must be at least 1".into());
        }
        if self.ensemble == 0 {
            return bad("an ensemble needs at least 1 member".into());
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad(format!(
                "weight decay must be a finite number >= 0, not {}",
                self.weight_decay
            ));
        }
        if !(self.input_noise >= 0.0 && self.input_noise.is_finite()) {
            return bad(format!(
                "input noise must be a finite number >= 0, not {}",
                self.input_noise
            ));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return bad(format!(
                "learning rate must be positive, not {}",
                self.learning_rate
            ));
        }
        if !(0.0..0.9).contains(&self.validation_fraction) {
            return bad(format!(
                "validation fraction must be in [0, 0.9), not {}",
                self.validation_fraction
            ));
        }
        if !(0.0..=100.0).contains(&self.ood_percentile) {
            return bad(format!(
                "OOD percentile must be in [0, 100], not {}",
                self.ood_percentile
            ));
        }
        Ok(())
    }
}
