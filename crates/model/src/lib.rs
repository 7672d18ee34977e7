//! The Variational Information Bottleneck classifier (Alemi et al. 2017) for spectra.
//!
//! Encoder q(z|x) = N(mu(x), diag(sigma^2(x))), z = mu + sigma * eps, classifier p(y|z), prior
//! N(0, I); loss = mean cross-entropy + beta * batch mean of KL(q(z|x) || N(0, I)). Prediction
//! averages the softmax over samples of z (and over ensemble members), tempers it, and reports
//! each spectrum's KL. Options are chosen by cross-validation (`selection`). libtorch stays inside
//! this crate: its API takes and returns plain slices and domain types.

#![cfg_attr(test, allow(clippy::unwrap_used))] // tests: a failed unwrap is a failed test

mod calibration;
mod config;
mod device;
mod diagnostics;
mod ensemble;
mod error;
mod inference;
mod metrics;
mod network;
mod persist;
mod regression;
mod selection;
mod split;
mod training;
mod vib;

pub use calibration::{
    calibrate, fit_calibration, reliability_bins, temper, Calibration, ReliabilityBin,
    RELIABILITY_BINS,
};
pub use config::{ClassBalance, TrainConfig};

/// Threads libtorch and the CPU forward pass use from now on (at least 1). Predictions do not
/// depend on it.
pub fn set_threads(threads: usize) {
    tch::set_num_threads(i32::try_from(threads.max(1)).unwrap_or(i32::MAX));
}
pub use device::{cuda_available, DeviceChoice};
pub use diagnostics::{
    auroc, label_entropy_nats, percentile_of, OodThresholds, SetDiagnostics, ACTIVE_DIMENSION_NATS,
};
pub use error::{Error, Result};
pub use metrics::{ClassMetrics, Metrics};
pub use network::{Architecture, EncoderKind, Head};
pub use regression::{
    normal_quantile, spearman_rho, RegressionCalibration, RegressionMetrics, RegressionTarget,
    DEFAULT_INTERVAL_LEVEL,
};
pub use selection::{
    describe_preprocessing, CandidateRecord, Fixed, Selection, TuneSettings, BETA_CHOICES,
    CAPACITY_CHOICES, PREPROCESSING_CHOICES, REFERENCE_WORK_PER_SECOND, REGULARISATION_CHOICES,
};
pub use vib::{EpochRecord, ModelCard, SweepRecord, TrainingSummary, VibModel, FORMAT_VERSION};
