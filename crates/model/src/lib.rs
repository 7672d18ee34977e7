//! The Variational Information Bottleneck classifier (Alemi et al. 2017) for spectra: the model
//! file, its card, and prediction, in plain Rust.
//!
//! Encoder q(z|x) = N(mu(x), diag(sigma^2(x))), z = mu + sigma * eps, classifier p(y|z), prior
//! N(0, I); loss = mean cross-entropy + beta * batch mean of KL(q(z|x) || N(0, I)). Prediction
//! averages the softmax over samples of z (and over ensemble members), tempers it, and reports
//! each spectrum's KL. This crate has no libtorch: a process that only predicts on the CPU never
//! loads it (its start-up alone is ~0.2 s). Training, the cross-validated selection of options
//! and prediction on CUDA are the `training` crate's, which builds on this one.

#![cfg_attr(test, allow(clippy::unwrap_used))] // tests: a failed unwrap is a failed test

mod calibration;
mod config;
mod device;
mod diagnostics;
mod ensemble;
mod error;
pub mod exp;
mod gemm;
mod inference;
mod metrics;
mod network;
mod persist;
mod regression;
mod selection;
mod split;
mod vib;

pub use calibration::{
    calibrate, calibrated_nll, fit_calibration, identity, reliability_bins, temper, tempered_nll,
    Calibration, ReliabilityBin, RELIABILITY_BINS,
};
pub use config::{ClassBalance, TrainConfig};
pub use device::DeviceChoice;
pub use diagnostics::{
    auroc, label_entropy_nats, percentile_of, OodThresholds, SetDiagnostics, ACTIVE_DIMENSION_NATS,
};
pub use ensemble::{average, set_threads, threads, Accelerator};
pub use error::{Error, Result};
pub use inference::{eps_table, normals, standardise, CpuNet, RawPrediction};
pub use metrics::{ClassMetrics, Metrics};
pub use network::{Architecture, EncoderKind, Head, LOGVAR_MAX, LOGVAR_MIN};
pub use persist::{content_id, read_model_file, NamedTensor};
pub use regression::{
    active, fit_variance_scale, gaussian_nll_of, mean_nll, moments, normal_quantile, spearman_rho,
    strata, RegressionCalibration, RegressionMetrics, RegressionTarget, DEFAULT_INTERVAL_LEVEL,
};
pub use selection::{
    describe_preprocessing, CandidateRecord, ChainChoice, Fixed, Selection, TuneSettings,
    BETA_CHOICES, CAPACITY_CHOICES, PREPROCESSING_CHOICES, REFERENCE_WORK_PER_SECOND,
    REGULARISATION_CHOICES,
};
pub use split::{fewest_groups_per_class, grouped_folds, grouped_split, SplitMix64};
pub use vib::{EpochRecord, ModelCard, SweepRecord, TrainingSummary, VibModel, FORMAT_VERSION};
