//! Reproducible synthetic field scans from a spectral library (see `library/README.md` for the
//! spectra and their attribution): plants on soil, mixed edges, illumination and shadow, the
//! sensor's Gaussian spectral response, noise and integer quantisation.

#![cfg_attr(test, allow(clippy::unwrap_used))] // tests: a failed unwrap is a failed test

mod campaign;
mod error;
mod rng;
mod scene;
mod sensor;

pub use campaign::{generate_campaign, Campaign, CampaignSpec, Treatment};
pub use error::{Error, Result};
pub use scene::{generate, FieldSpec, Scene, SpectralLibrary, CLASSES};
pub use sensor::{vnir_swir_axis, SpectralResponse};
