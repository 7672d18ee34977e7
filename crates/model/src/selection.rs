//! What a cross-validated selection of the training options searches (the choices), what the
//! user fixed, and what it records in the model card. The search itself (grouped, stratified
//! k-fold cross-validation raced by successive halving under a budget of training work) is the
//! training crate's `selection.rs`.

use domain::Preprocessing;

/// Training work per second of the tuning budget: multiply-adds (forward and backward passes)
/// per second that libtorch trained the default network at on a 2-core machine
/// (`examples/throughput`, 2,000 spectra of 200 bands).
pub const REFERENCE_WORK_PER_SECOND: f64 = 1.0e10;

/// The preprocessing chains searched (on top of the user's band selection): none, smoothing,
/// first derivative at two windows, SNV, derivative then SNV, continuum removal.
/// (continuum removal, Savitzky-Golay window/order/derivative, SNV).
pub type ChainChoice = (bool, Option<(usize, usize, usize)>, bool);

pub const PREPROCESSING_CHOICES: [ChainChoice; 7] = [
    (false, None, false),
    (false, Some((9, 2, 0)), false),
    (false, Some((7, 2, 1)), false),
    (false, Some((15, 2, 1)), false),
    (false, None, true),
    (false, Some((11, 2, 1)), true),
    (true, None, false),
];
/// Betas searched (the rate's price, nats).
pub const BETA_CHOICES: [f64; 5] = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2];
/// (latent dimensions, encoder widths) searched.
pub const CAPACITY_CHOICES: [(usize, [usize; 2]); 3] =
    [(16, [256, 128]), (8, [64, 32]), (32, [512, 256])];
/// (weight decay, input noise) searched.
pub const REGULARISATION_CHOICES: [(f64, f64); 3] = [(0.0, 0.0), (0.05, 0.0), (0.0, 0.2)];

/// How selection runs.
#[derive(Debug, Clone, PartialEq)]
pub struct TuneSettings {
    /// Budget of training work, in seconds at [`REFERENCE_WORK_PER_SECOND`].
    pub budget_seconds: f64,
    /// Folds of the cross-validation (fewer when a class has fewer groups, at least 2).
    pub folds: usize,
}

impl Default for TuneSettings {
    /// 120 s (a 2,000-spectrum, 200-band table tunes in about 2 minutes on 2 cores), 5 folds.
    fn default() -> Self {
        Self {
            budget_seconds: 120.0,
            folds: 5,
        }
    }
}

/// The parts of the search space the user set explicitly: they keep the base config's value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fixed {
    pub preprocessing: bool,
    pub beta: bool,
    /// Latent size and encoder widths.
    pub capacity: bool,
    /// Weight decay and input noise.
    pub regularisation: bool,
}

/// One candidate of the search and how it did.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CandidateRecord {
    pub id: usize,
    /// `preprocessing` or `hyperparameters`: the race it ran in.
    pub race: String,
    pub preprocessing: String,
    pub beta: f64,
    pub latent_dim: usize,
    pub hidden_dims: Vec<usize>,
    pub weight_decay: f64,
    pub input_noise: f64,
    pub folds_evaluated: usize,
    /// Out-of-fold NLL after calibration (temperature and class offsets; for a continuous target,
    /// the variance scale), nats (the selection criterion).
    pub cv_nll_nats: f64,
    /// Out-of-fold NLL of the raw probabilities, nats.
    pub cv_raw_nll_nats: f64,
    /// Out-of-fold accuracy (0 for a continuous target).
    pub cv_accuracy: f64,
    /// Out-of-fold root mean squared error of a continuous target, in its units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cv_rmse: Option<f64>,
    /// Temperature fitted on its out-of-fold predictions (for a continuous target: the factor
    /// on the predictive standard deviation, the square root of the variance scale).
    pub temperature: f64,
    /// Class log-offsets fitted with it (empty: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class_log_bias: Vec<f64>,
    /// Epoch of the kept weights in each evaluated fold.
    pub best_epochs: Vec<usize>,
    /// Training work spent on it, seconds at the reference speed.
    pub work_seconds: f64,
    /// Wall-clock seconds on this run (not stored in the model: it would change its bytes).
    #[serde(skip)]
    pub wall_seconds: f64,
}

/// The whole search: every candidate, the winner and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Selection {
    pub folds: usize,
    pub budget_seconds: f64,
    /// Training work of the search, seconds at the reference speed.
    pub work_seconds: f64,
    pub candidates: Vec<CandidateRecord>,
    /// Index into `candidates`.
    pub winner: usize,
    pub reason: String,
    /// Out-of-fold accuracy of the winner's ensemble (each fold's members averaged), over the
    /// first folds that hold 1,000 samples (all folds for smaller sets); 0 for a continuous target.
    pub ensemble_cv_accuracy: f64,
    #[serde(default)]
    pub ensemble_cv_samples: usize,
    /// Training work of the ensemble's out-of-fold members, seconds at the reference speed.
    pub ensemble_work_seconds: f64,
    /// Epochs of the refit on all training data: the median of the winner's best epochs.
    pub refit_epochs: usize,
}

/// A short name of the searched part of a preprocessing chain.
pub fn describe_preprocessing(p: &Preprocessing) -> String {
    let mut parts = Vec::new();
    if p.continuum_removal {
        parts.push("continuum removal".to_string());
    }
    if let Some(sg) = p.savitzky_golay {
        parts.push(match sg.derivative {
            0 => format!("SG smooth {},{}", sg.window, sg.order),
            d => format!("SG d{d} {},{}", sg.window, sg.order),
        });
    }
    if p.snv {
        parts.push("SNV".to_string());
    }
    if parts.is_empty() {
        "raw".to_string()
    } else {
        parts.join(" + ")
    }
}
