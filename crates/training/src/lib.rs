//! Training the Variational Information Bottleneck classifier (Alemi et al. 2017) with libtorch.
//!
//! Minimises mean cross-entropy + beta * batch mean of KL(q(z|x) || N(0, I)) with Adam(W); options
//! chosen by grouped cross-validation (`selection`); ensembles, temperature calibration and OOD
//! thresholds; the diagnostics (both information bounds) by libtorch's Monte Carlo. The result is a
//! `model::VibModel`, which predicts without libtorch; [`load`] puts a model file on a GPU.
//! libtorch stays inside this crate: its API takes and returns plain slices and domain types.

#![cfg_attr(test, allow(clippy::unwrap_used))] // tests: a failed unwrap is a failed test

mod device;
mod diagnostics;
mod ensemble;
mod error;
mod network;
mod persist;
mod regression;
mod selection;
mod training;
mod vib;

pub use device::cuda_available;
pub use persist::{from_bytes, load};
pub use vib::Train;

/// Threads libtorch and the CPU forward pass use from now on (at least 1). Predictions do not
/// depend on it.
pub fn set_threads(threads: usize) {
    model::set_threads(threads);
    tch::set_num_threads(i32::try_from(threads.max(1)).unwrap_or(i32::MAX));
}
