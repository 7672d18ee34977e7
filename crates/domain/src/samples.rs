use serde::{Deserialize, Serialize};

use crate::{ClassSet, SpectralAxis};

/// What one training or evaluation sample is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SampleUnit {
    /// Each connected region of one label is one sample: its mean spectrum.
    Plant,
    /// Every labelled pixel is one sample.
    Pixel,
}

/// Labelled spectra, row-major `n x bands`, ready for training or evaluation.
#[derive(Debug, Clone)]
pub struct SpectralSamples {
    pub axis: SpectralAxis,
    pub classes: ClassSet,
    /// `len() == n * axis.len()`.
    pub spectra: Vec<f32>,
    /// Label codes (not indices), one per sample.
    pub label_codes: Vec<u32>,
    /// Group of each sample (plant or region id): samples of one group never sit on both sides of a
    /// validation split.
    pub groups: Vec<u32>,
    /// A continuous target per sample (a regression target such as severity, 0-1, or a disease
    /// score), when the samples are for a regression model; `None` for class labels. With values,
    /// `classes` holds one class named after the target and every label code is its code.
    pub values: Option<Vec<f64>>,
}

impl SpectralSamples {
    pub fn len(&self) -> usize {
        self.label_codes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.label_codes.is_empty()
    }

    pub fn spectrum(&self, i: usize) -> &[f32] {
        let bands = self.axis.len();
        &self.spectra[i * bands..(i + 1) * bands]
    }
}
