//! Temperature scaling of the predicted probabilities (Guo et al. 2017), fitted on held-out
//! predictions, and the reliability diagram that shows what it did.
//!
//! The model's probabilities are already averages (over samples of z, and over ensemble members),
//! so the temperature acts on their logarithms: p_T(c) = p(c)^(1/T) / sum_k p(k)^(1/T). For a
//! single member and one sample of z this is exactly softmax(logits / T). T > 1 softens
//! overconfident probabilities, T < 1 sharpens timid ones, and the most probable class never
//! changes.

use domain::Prediction;

/// Temperatures are searched in [1/4, 20]: sharper than 1/4 is never supported by a held-out set
/// of the sizes met here.
const LN_T_RANGE: (f64, f64) = (-1.386_294_361_119_890_6, 2.995_732_273_553_991);
/// Golden-section steps: the bracket shrinks by 0.618 per step, to below 1e-9 of ln T.
const GOLDEN_STEPS: usize = 50;
/// Probabilities are clamped to this before the log in the NLL, as in the metrics.
const P_FLOOR: f64 = 1e-12;

/// A fitted temperature and what it did on the predictions it was fitted on.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Calibration {
    pub temperature: f64,
    /// `out-of-fold` (cross-validation predictions) or `validation` (the held-out plants).
    pub fitted_on: String,
    pub samples: usize,
    pub nll_before_nats: f64,
    pub nll_after_nats: f64,
    pub ece_before: f64,
    pub ece_after: f64,
    /// Reliability diagram of those predictions before and after, [`RELIABILITY_BINS`] bins.
    #[serde(default)]
    pub reliability_before: Vec<ReliabilityBin>,
    #[serde(default)]
    pub reliability_after: Vec<ReliabilityBin>,
}

/// Bins of the reliability diagrams (the bins ECE is computed over).
pub const RELIABILITY_BINS: usize = 15;

/// Probabilities tempered by `temperature` (see the module docs); f64 arithmetic, then f32.
pub fn temper(probabilities: &[f32], temperature: f64) -> Vec<f32> {
    if temperature == 1.0 {
        return probabilities.to_vec();
    }
    let inverse = 1.0 / temperature;
    let logs: Vec<Option<f64>> = probabilities
        .iter()
        .map(|&p| (p > 0.0).then(|| (p as f64).ln() * inverse))
        .collect();
    let top = logs
        .iter()
        .flatten()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = logs
        .iter()
        .map(|l| l.map_or(0.0, |l| (l - top).exp()))
        .collect();
    let total: f64 = weights.iter().sum();
    weights.iter().map(|w| (w / total) as f32).collect()
}

/// Mean -ln p_T(true class) of `probabilities` (one vector per sample) at `temperature`.
pub fn tempered_nll(probabilities: &[&[f32]], truth: &[usize], temperature: f64) -> f64 {
    let inverse = 1.0 / temperature;
    let mut sum = 0.0;
    for (p, &t) in probabilities.iter().zip(truth) {
        // ln p_T(t) = ln p(t) / T - ln sum_k p(k)^(1/T), with the floor on p(t) as in the metrics.
        let logs: Vec<f64> = p
            .iter()
            .filter(|&&v| v > 0.0)
            .map(|&v| (v as f64).ln() * inverse)
            .collect();
        let top = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let log_total = top + logs.iter().map(|l| (l - top).exp()).sum::<f64>().ln();
        let own = (p[t] as f64).max(P_FLOOR).ln() * inverse;
        sum += log_total - own;
    }
    sum / truth.len().max(1) as f64
}

/// The temperature minimising the NLL of `probabilities` against `truth`: golden-section search
/// over ln T (the NLL is convex in 1/T, so unimodal in ln T), a fixed number of steps, so the
/// same inputs always give the same temperature.
pub fn fit_temperature(probabilities: &[&[f32]], truth: &[usize]) -> f64 {
    if truth.is_empty() {
        return 1.0;
    }
    // With every held-out prediction right, the NLL falls without bound as T -> 0: there is no
    // evidence to fit, so the probabilities are left alone.
    let all_right = probabilities
        .iter()
        .zip(truth)
        .all(|(p, &t)| p.iter().enumerate().all(|(c, &v)| c == t || v < p[t]));
    if all_right {
        return 1.0;
    }
    let nll = |ln_t: f64| tempered_nll(probabilities, truth, ln_t.exp());
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let (mut a, mut b) = LN_T_RANGE;
    let mut c = b - ratio * (b - a);
    let mut d = a + ratio * (b - a);
    let (mut fc, mut fd) = (nll(c), nll(d));
    for _ in 0..GOLDEN_STEPS {
        if fc <= fd {
            b = d;
            d = c;
            fd = fc;
            c = b - ratio * (b - a);
            fc = nll(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + ratio * (b - a);
            fd = nll(d);
        }
    }
    let best = (a + b) / 2.0;
    // Never worse than leaving the probabilities alone.
    if nll(best) < nll(0.0) {
        best.exp()
    } else {
        1.0
    }
}

/// One bin of a reliability diagram.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReliabilityBin {
    /// Confidence range [lower, upper).
    pub lower: f64,
    pub upper: f64,
    pub samples: u64,
    /// Mean top-class probability of the bin's samples.
    pub mean_confidence: f64,
    /// Fraction of the bin's samples whose top class is right.
    pub accuracy: f64,
}

/// Reliability diagram: predictions binned by top-class probability into `bins` equal-width bins
/// (the ones ECE is computed over); empty bins are kept with 0 samples.
pub fn reliability_bins(
    predictions: &[Prediction],
    truth: &[usize],
    bins: usize,
) -> Vec<ReliabilityBin> {
    let mut count = vec![0u64; bins];
    let mut confidence = vec![0f64; bins];
    let mut correct = vec![0f64; bins];
    for (p, &t) in predictions.iter().zip(truth) {
        let c = p.probabilities[p.predicted_index] as f64;
        let bin = ((c * bins as f64) as usize).min(bins - 1);
        count[bin] += 1;
        confidence[bin] += c;
        correct[bin] += f64::from(u8::from(p.predicted_index == t));
    }
    (0..bins)
        .map(|b| ReliabilityBin {
            lower: b as f64 / bins as f64,
            upper: (b + 1) as f64 / bins as f64,
            samples: count[b],
            mean_confidence: if count[b] > 0 {
                confidence[b] / count[b] as f64
            } else {
                0.0
            },
            accuracy: if count[b] > 0 {
                correct[b] / count[b] as f64
            } else {
                0.0
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn softmax(logits: &[f64]) -> Vec<f32> {
        let top = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = logits.iter().map(|l| (l - top).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|v| (v / s) as f32).collect()
    }

    /// For one sample of z, tempering the probabilities is softmax(logits / T): checked against
    /// the logits directly.
    #[test]
    fn tempering_is_softmax_of_scaled_logits() {
        let logits = [2.0, -1.0, 0.5, 0.0];
        for t in [0.3, 1.0, 2.5, 10.0] {
            let direct = softmax(&logits.map(|l| l / t));
            let tempered = temper(&softmax(&logits), t);
            for (a, b) in direct.iter().zip(&tempered) {
                assert!((a - b).abs() < 1e-6, "T {t}: {direct:?} vs {tempered:?}");
            }
        }
    }

    /// Labels drawn from softmax(l) but the model reports softmax(3 l): overconfident by a
    /// factor 3. The fitted temperature is near 3, lowers the NLL, and keeps every argmax.
    #[test]
    fn temperature_undoes_overconfidence_and_keeps_argmax() {
        let mut state = 12345u64;
        let mut uniform = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let (mut reported, mut truth) = (Vec::new(), Vec::new());
        for _ in 0..4000 {
            let logits: Vec<f64> = (0..3).map(|_| 3.0 * (uniform() - 0.5)).collect();
            let true_p = softmax(&logits);
            let u = uniform() as f32;
            let label = if u < true_p[0] {
                0
            } else if u < true_p[0] + true_p[1] {
                1
            } else {
                2
            };
            truth.push(label);
            reported.push(softmax(&logits.iter().map(|l| 3.0 * l).collect::<Vec<_>>()));
        }
        let views: Vec<&[f32]> = reported.iter().map(Vec::as_slice).collect();
        let t = fit_temperature(&views, &truth);
        assert!((t - 3.0).abs() < 0.3, "temperature {t}");
        assert!(tempered_nll(&views, &truth, t) < tempered_nll(&views, &truth, 1.0) - 0.05);
        for p in &reported {
            let before = Prediction::from_probabilities(p.clone(), 0.0).predicted_index;
            let after = Prediction::from_probabilities(temper(p, t), 0.0).predicted_index;
            assert_eq!(before, after);
        }
        // Held-out predictions that are all right give no evidence: no temperature.
        let right: Vec<usize> = reported
            .iter()
            .map(|p| Prediction::from_probabilities(p.clone(), 0.0).predicted_index)
            .collect();
        assert_eq!(fit_temperature(&views, &right), 1.0);
        // Well-calibrated probabilities need no temperature.
        let calibrated: Vec<Vec<f32>> = reported.iter().map(|p| temper(p, 3.0)).collect();
        let views: Vec<&[f32]> = calibrated.iter().map(Vec::as_slice).collect();
        assert!((fit_temperature(&views, &truth) - 1.0).abs() < 0.1);
    }

    #[test]
    fn reliability_bins_count_and_average() {
        let predictions: Vec<Prediction> =
            [[0.97f32, 0.03], [0.93, 0.07], [0.35, 0.65], [0.15, 0.85]]
                .iter()
                .map(|p| Prediction::from_probabilities(p.to_vec(), 0.0))
                .collect();
        let bins = reliability_bins(&predictions, &[0, 1, 1, 1], 10);
        assert_eq!(bins.len(), 10);
        assert_eq!(bins[9].samples, 2);
        assert!((bins[9].mean_confidence - 0.95).abs() < 1e-6);
        assert!((bins[9].accuracy - 0.5).abs() < 1e-12);
        assert_eq!(bins[6].samples, 1);
        assert_eq!(bins[7].samples, 0);
        assert_eq!(bins[8].samples, 1);
        assert_eq!(bins.iter().map(|b| b.samples).sum::<u64>(), 4);
    }
}
