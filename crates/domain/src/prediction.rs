use serde::{Deserialize, Serialize};

use crate::{AttributeType, ClassSet, Plant};

/// The model's call for one spectrum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Softmax averaged over samples of z, one per class in the model's class order.
    pub probabilities: Vec<f32>,
    /// Index into the class set of the highest probability.
    pub predicted_index: usize,
    /// Entropy of `probabilities`, in nats.
    pub entropy_nats: f64,
    /// KL(q(z|x) || N(0, I)) in nats: the spectrum's rate. High for spectra unlike the training data.
    pub kl_nats: f64,
    /// KL or entropy above the model's out-of-distribution thresholds.
    pub ood: bool,
}

impl Prediction {
    /// A prediction from averaged probabilities and the spectrum's KL.
    pub fn from_probabilities(probabilities: Vec<f32>, kl_nats: f64) -> Self {
        let predicted_index = probabilities
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i);
        let entropy_nats = entropy_nats(&probabilities);
        Self {
            probabilities,
            predicted_index,
            entropy_nats,
            kl_nats,
            ood: false,
        }
    }
}

/// A regression model's prediction for one spectrum (a continuous target such as severity): the
/// predictive distribution (the mixture over samples of z and ensemble members, moment-matched to
/// a Gaussian and scaled by the model's calibration), its central interval, and the KL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValuePrediction {
    pub mean: f64,
    /// Standard deviation of the predictive distribution.
    pub sd: f64,
    /// Central interval of the model's level (90% by default): mean -/+ z sd.
    pub lower: f64,
    pub upper: f64,
    /// Differential entropy of the predictive Gaussian, nats: 0.5 ln(2 pi e sd^2).
    pub entropy_nats: f64,
    /// KL(q(z|x) || N(0, I)) in nats, as for classes.
    pub kl_nats: f64,
    /// KL or entropy above the model's out-of-distribution thresholds.
    pub ood: bool,
}

/// Shannon entropy in nats of a probability vector (zeros contribute nothing).
pub fn entropy_nats(probabilities: &[f32]) -> f64 {
    probabilities
        .iter()
        .map(|&p| p as f64)
        .filter(|&p| p > 0.0)
        .map(|p| -p * p.ln())
        .sum()
}

/// Everything the report writers need for one cube's plants.
#[derive(Debug, Clone)]
pub struct PredictionTable {
    pub field_id: String,
    /// The cube as the user named it.
    pub cube: String,
    /// Acquisition date (YYYY-MM-DD) from the cube's metadata, when it has one.
    pub scan_date: Option<String>,
    /// CRS of `x`/`y` (WKT) and its EPSG code, when the cube is georeferenced.
    pub crs_wkt: Option<String>,
    pub epsg: Option<u32>,
    pub model_id: String,
    pub beta: f64,
    pub classes: ClassSet,
    pub plants: Vec<Plant>,
    /// Attribute columns the plants carry (from polygons), in [`Plant::attributes`] order.
    pub attributes: Vec<(String, AttributeType)>,
    pub predictions: Vec<Prediction>,
    /// Per plant, the counts of its pixels' calls (`run --per-pixel`), in `plants` order.
    pub pixels: Option<Vec<crate::PlantPixels>>,
    /// A regression model's prediction for every plant's mean spectrum (`run --severity-model`):
    /// the target's name and one prediction per plant, in `plants` order.
    pub values: Option<(String, Vec<ValuePrediction>)>,
}

impl PredictionTable {
    /// Severity (%) of every plant that has one: per-pixel counts, a healthy class and at least
    /// one scored pixel; in plant order.
    pub fn severities_pct(&self) -> Vec<f64> {
        match (&self.pixels, self.classes.healthy_index()) {
            (Some(pixels), Some(h)) => pixels.iter().filter_map(|p| p.severity_pct(h)).collect(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_of_uniform_is_log_k() {
        let p = vec![0.25f32; 4];
        assert!((entropy_nats(&p) - 4f64.ln()).abs() < 1e-6);
        assert_eq!(entropy_nats(&[1.0, 0.0]), 0.0);
    }

    #[test]
    fn predicted_index_is_argmax() {
        let prediction = Prediction::from_probabilities(vec![0.2, 0.7, 0.1], 1.5);
        assert_eq!(prediction.predicted_index, 1);
    }
}
