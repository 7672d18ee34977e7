//! Classification metrics from true and predicted class indices (pure arithmetic, no libtorch).

use std::collections::BTreeMap;

use domain::{ClassSet, Prediction};

/// Per-class scores.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ClassMetrics {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

/// What `pipeline evaluate` writes to METRICS.json.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Metrics {
    pub n_samples: u64,
    pub overall_accuracy: f64,
    /// Mean of per-class recall over classes present in the truth.
    pub average_accuracy: f64,
    /// Cohen's kappa.
    pub kappa: f64,
    pub per_class: BTreeMap<String, ClassMetrics>,
    /// Rows: true class, columns: predicted class, both in `class_names` order.
    pub confusion_matrix: Vec<Vec<u64>>,
    pub class_names: Vec<String>,
    /// Mean of -ln p(true class), nats.
    pub negative_log_likelihood_nats: f64,
    /// Expected calibration error over 15 equal-width confidence bins.
    pub expected_calibration_error: f64,
    pub mean_kl_nats: f64,
    pub mean_entropy_nats: f64,
}

impl Metrics {
    /// Metrics of `predictions` against true class indices.
    pub fn compute(classes: &ClassSet, truth: &[usize], predictions: &[Prediction]) -> Self {
        assert_eq!(
            truth.len(),
            predictions.len(),
            "one prediction per true label"
        );
        let k = classes.len();
        let n = truth.len() as u64;
        let mut confusion = vec![vec![0u64; k]; k];
        for (&t, p) in truth.iter().zip(predictions) {
            confusion[t][p.predicted_index] += 1;
        }
        let diagonal: u64 = (0..k).map(|i| confusion[i][i]).sum();
        let overall_accuracy = ratio(diagonal, n);
        let row_sum = |i: usize| confusion[i].iter().sum::<u64>();
        let col_sum = |j: usize| (0..k).map(|i| confusion[i][j]).sum::<u64>();
        let mut per_class = BTreeMap::new();
        let mut recalls = Vec::new();
        for (i, class) in classes.iter().enumerate() {
            let (support, predicted) = (row_sum(i), col_sum(i));
            let precision = ratio(confusion[i][i], predicted);
            let recall = ratio(confusion[i][i], support);
            if support > 0 {
                recalls.push(recall);
            }
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            per_class.insert(
                class.name.clone(),
                ClassMetrics {
                    precision,
                    recall,
                    f1,
                    support,
                },
            );
        }
        let average_accuracy = if recalls.is_empty() {
            0.0
        } else {
            recalls.iter().sum::<f64>() / recalls.len() as f64
        };
        let expected_agreement: f64 = (0..k)
            .map(|i| ratio(row_sum(i), n) * ratio(col_sum(i), n))
            .sum();
        let kappa = if expected_agreement < 1.0 {
            (overall_accuracy - expected_agreement) / (1.0 - expected_agreement)
        } else {
            1.0
        };
        let nll = truth
            .iter()
            .zip(predictions)
            .map(|(&t, p)| -(p.probabilities[t] as f64).max(1e-12).ln())
            .sum::<f64>()
            / n.max(1) as f64;
        let mean =
            |f: fn(&Prediction) -> f64| predictions.iter().map(f).sum::<f64>() / n.max(1) as f64;
        Self {
            n_samples: n,
            overall_accuracy,
            average_accuracy,
            kappa,
            per_class,
            confusion_matrix: confusion,
            class_names: classes.names().into_iter().map(String::from).collect(),
            negative_log_likelihood_nats: nll,
            expected_calibration_error: expected_calibration_error(truth, predictions, 15),
            mean_kl_nats: mean(|p| p.kl_nats),
            mean_entropy_nats: mean(|p| p.entropy_nats),
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Sum over bins of |accuracy - confidence| weighted by the bin's share of samples.
fn expected_calibration_error(truth: &[usize], predictions: &[Prediction], bins: usize) -> f64 {
    let n = truth.len().max(1) as f64;
    crate::calibration::reliability_bins(predictions, truth, bins)
        .iter()
        .map(|b| b.samples as f64 * (b.accuracy - b.mean_confidence).abs() / n)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::ClassInfo;

    fn classes() -> ClassSet {
        ClassSet::new(
            ["healthy", "rust", "blight"]
                .iter()
                .enumerate()
                .map(|(i, n)| ClassInfo {
                    code: i as u32 + 1,
                    name: n.to_string(),
                })
                .collect(),
        )
        .unwrap()
    }

    fn one_hot(i: usize) -> Prediction {
        let mut p = vec![0.0f32; 3];
        p[i] = 1.0;
        Prediction::from_probabilities(p, 0.5)
    }

    /// Hand-computed: confusion [[4,1,0],[0,3,2],[1,0,4]], n = 15.
    #[test]
    fn against_hand_computed_confusion_matrix() {
        let pairs = [
            (0, 0, 4),
            (0, 1, 1),
            (1, 1, 3),
            (1, 2, 2),
            (2, 0, 1),
            (2, 2, 4),
        ];
        let (mut truth, mut predictions) = (Vec::new(), Vec::new());
        for (t, p, count) in pairs {
            for _ in 0..count {
                truth.push(t);
                predictions.push(one_hot(p));
            }
        }
        let m = Metrics::compute(&classes(), &truth, &predictions);
        assert_eq!(
            m.confusion_matrix,
            vec![vec![4, 1, 0], vec![0, 3, 2], vec![1, 0, 4]]
        );
        assert!((m.overall_accuracy - 11.0 / 15.0).abs() < 1e-12);
        // Recalls 4/5, 3/5, 4/5.
        assert!((m.average_accuracy - 11.0 / 15.0).abs() < 1e-12);
        // p_e = (5*5 + 5*4 + 5*6) / 225 = 75/225 = 1/3; kappa = (11/15 - 1/3) / (2/3) = 0.6.
        assert!((m.kappa - 0.6).abs() < 1e-12, "{}", m.kappa);
        let rust = &m.per_class["rust"];
        assert!((rust.precision - 0.75).abs() < 1e-12);
        assert!((rust.recall - 0.6).abs() < 1e-12);
        assert!((rust.f1 - 2.0 * 0.75 * 0.6 / 1.35).abs() < 1e-12);
        assert_eq!(rust.support, 5);
        // Confident one-hot predictions: ECE = 1 - accuracy.
        assert!((m.expected_calibration_error - 4.0 / 15.0).abs() < 1e-12);
        assert!((m.mean_kl_nats - 0.5).abs() < 1e-12);
    }
}
