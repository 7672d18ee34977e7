//! What a trained model does on a labelled set: the two information bounds' ingredients, accuracy,
//! calibration, and the per-dimension rate.

use domain::Prediction;

/// A latent dimension is active when its mean KL exceeds this many nats.
pub const ACTIVE_DIMENSION_NATS: f64 = 0.01;

/// Diagnostics of one labelled set (training or validation).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SetDiagnostics {
    pub samples: usize,
    /// Accuracy of the softmax averaged over samples of z.
    pub accuracy: f64,
    /// E over x and z ~ q(z|x) of -ln p(y|z), by Monte Carlo over the samples of z, nats. H(Y) minus
    /// this is the variational lower bound on I(Z;Y).
    pub cross_entropy_nats: f64,
    /// Mean KL(q(z|x) || N(0, I)), nats: the rate, an upper bound on I(Z;X).
    pub mean_kl_nats: f64,
    pub kl_per_dimension_nats: Vec<f64>,
    /// Dimensions whose mean KL exceeds [`ACTIVE_DIMENSION_NATS`].
    pub active_dimensions: usize,
    /// Mean -ln of the averaged softmax at the true class, nats.
    pub negative_log_likelihood_nats: f64,
    /// Expected calibration error, 15 bins.
    pub expected_calibration_error: f64,
    /// For a continuous target (accuracy and ECE are then 0; the NLL is the Gaussian one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regression: Option<crate::regression::RegressionMetrics>,
}

impl SetDiagnostics {
    /// Diagnostics of no samples (a placeholder until the real ones are computed).
    pub fn empty() -> Self {
        Self {
            samples: 0,
            accuracy: 0.0,
            cross_entropy_nats: 0.0,
            mean_kl_nats: 0.0,
            kl_per_dimension_nats: Vec::new(),
            active_dimensions: 0,
            negative_log_likelihood_nats: 0.0,
            expected_calibration_error: 0.0,
            regression: None,
        }
    }
}

/// Entropy in nats of the class frequencies of `targets` (class indices).
pub fn label_entropy_nats(targets: &[usize], classes: usize) -> f64 {
    let mut counts = vec![0usize; classes];
    for &t in targets {
        counts[t] += 1;
    }
    let n = targets.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.ln()
        })
        .sum()
}

/// Thresholds above which a prediction is flagged out of distribution.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OodThresholds {
    /// Percentile of the calibration set that sets both thresholds (default 99).
    pub percentile: f64,
    pub kl_nats: f64,
    pub entropy_nats: f64,
    /// `validation` or `training` (when training used no validation split).
    pub calibrated_on: String,
}

impl OodThresholds {
    pub fn calibrate(predictions: &[Prediction], percentile: f64, calibrated_on: &str) -> Self {
        Self::from_scores(
            predictions.iter().map(|p| (p.kl_nats, p.entropy_nats)),
            percentile,
            calibrated_on,
        )
    }

    /// Thresholds at `percentile` of the (KL, entropy) pairs of held-out predictions.
    fn from_scores(
        scores: impl Iterator<Item = (f64, f64)>,
        percentile: f64,
        calibrated_on: &str,
    ) -> Self {
        let (kl, entropy): (Vec<f64>, Vec<f64>) = scores.unzip();
        Self {
            percentile,
            kl_nats: percentile_of(&kl, percentile),
            entropy_nats: percentile_of(&entropy, percentile),
            calibrated_on: calibrated_on.to_string(),
        }
    }

    pub fn flags(&self, prediction: &Prediction) -> bool {
        prediction.kl_nats > self.kl_nats || prediction.entropy_nats > self.entropy_nats
    }

    /// Thresholds at `percentile` of a regression model's held-out KL and predictive entropy.
    pub fn calibrate_values(
        predictions: &[domain::ValuePrediction],
        percentile: f64,
        calibrated_on: &str,
    ) -> Self {
        Self::from_scores(
            predictions.iter().map(|p| (p.kl_nats, p.entropy_nats)),
            percentile,
            calibrated_on,
        )
    }

    pub fn flags_value(&self, prediction: &domain::ValuePrediction) -> bool {
        prediction.kl_nats > self.kl_nats || prediction.entropy_nats > self.entropy_nats
    }
}

/// Linear-interpolation percentile (numpy's default), `q` in [0, 100].
pub fn percentile_of(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = q / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

/// Area under the ROC curve of `scores` separating positives (out of distribution) from negatives,
/// ties counted half (the Mann-Whitney statistic).
pub fn auroc(negatives: &[f64], positives: &[f64]) -> f64 {
    let mut all: Vec<(f64, bool)> = negatives
        .iter()
        .map(|&s| (s, false))
        .chain(positives.iter().map(|&s| (s, true)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Average ranks over ties.
    let mut rank_sum_positive = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        let average_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum_positive += average_rank * all[i..j].iter().filter(|(_, p)| *p).count() as f64;
        i = j;
    }
    let (n_pos, n_neg) = (positives.len() as f64, negatives.len() as f64);
    (rank_sum_positive - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy_linear() {
        // numpy.percentile([1, 2, 3, 4, 10], [0, 50, 90, 99, 100]) = 1, 3, 7.6, 9.76, 10
        let v = [10.0, 1.0, 3.0, 2.0, 4.0];
        for (q, expected) in [
            (0.0, 1.0),
            (50.0, 3.0),
            (90.0, 7.6),
            (99.0, 9.76),
            (100.0, 10.0),
        ] {
            assert!((percentile_of(&v, q) - expected).abs() < 1e-12, "q {q}");
        }
    }

    #[test]
    fn auroc_known_answers() {
        assert_eq!(auroc(&[1.0, 2.0], &[3.0, 4.0]), 1.0);
        assert_eq!(auroc(&[3.0, 4.0], &[1.0, 2.0]), 0.0);
        assert_eq!(auroc(&[1.0, 1.0], &[1.0, 1.0]), 0.5);
        // Pairs (neg, pos): (1,2) + (3,2) - (1,4) + (3,4) + -> 3 of 4 pairs ranked right.
        assert_eq!(auroc(&[1.0, 3.0], &[2.0, 4.0]), 0.75);
    }

    #[test]
    fn label_entropy() {
        assert!((label_entropy_nats(&[0, 1, 2, 0, 1, 2], 3) - 3f64.ln()).abs() < 1e-12);
        assert_eq!(label_entropy_nats(&[1, 1, 1], 3), 0.0);
    }
}
