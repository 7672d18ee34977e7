//! Calibration of the predicted probabilities, fitted on held-out predictions: a temperature
//! (Guo et al. 2017) and one log-offset per class (bias-corrected temperature scaling, Alexandari
//! et al. 2020), and the reliability diagram that shows what they did.
//!
//! The model's probabilities are already averages (over samples of z, and over ensemble members),
//! so calibration acts on their logarithms: p_cal(c) = p(c)^(1/T) e^(b_c) / sum_k p(k)^(1/T) e^(b_k).
//! For a single member and one sample of z this is exactly softmax(logits / T + b). T > 1 softens
//! overconfident probabilities, T < 1 sharpens timid ones. The offsets b (b_0 = 0) correct the
//! class frequencies the networks were trained under: minibatches are class-balanced, so the
//! networks learn posteriors for equally frequent classes, while the held-out predictions carry
//! the training data's real frequencies. With b = 0 the most probable class never changes.

use domain::Prediction;

use crate::exp::exp;

/// 1/T is searched in [1/20, 4]: sharper than T = 1/4 is never supported by a held-out set of
/// the sizes met here.
const INVERSE_T_RANGE: (f64, f64) = (0.05, 4.0);
/// Newton steps of the calibration fit (it converges in well under 20 on every case met).
const NEWTON_STEPS: usize = 100;
/// Probabilities are clamped to this before the log in the NLL, as in the metrics.
const P_FLOOR: f64 = 1e-12;

/// A fitted calibration and what it did on the predictions it was fitted on.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Calibration {
    pub temperature: f64,
    /// Log-offset added per class after the temperature (first class 0); empty in models made
    /// before offsets were fitted, which means all 0.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class_log_bias: Vec<f64>,
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

impl Calibration {
    /// The class offsets for people: `Infected +1.386, Lesion -0.210` (the first class is the
    /// reference, 0), or `none`.
    pub fn offsets_text(&self, classes: &domain::ClassSet) -> String {
        if self.class_log_bias.iter().all(|&b| b == 0.0) {
            return "none".to_string();
        }
        classes
            .iter()
            .zip(&self.class_log_bias)
            .skip(1)
            .map(|(c, b)| format!("{} {b:+.3}", c.name))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Bins of the reliability diagrams (the bins ECE is computed over).
pub const RELIABILITY_BINS: usize = 15;

/// The identity calibration: T = 1, no offsets.
pub fn identity() -> (f64, Vec<f64>) {
    (1.0, Vec::new())
}

/// Probabilities tempered by `temperature` (see the module docs); f64 arithmetic, then f32.
pub fn temper(probabilities: &[f32], temperature: f64) -> Vec<f32> {
    calibrate(probabilities, temperature, &[])
}

/// Probabilities tempered by `temperature` and shifted by the per-class log-offsets `bias`
/// (empty: none); classes with probability 0 stay at 0. f64 arithmetic, then f32.
pub fn calibrate(probabilities: &[f32], temperature: f64, bias: &[f64]) -> Vec<f32> {
    if temperature == 1.0 && bias.iter().all(|&b| b == 0.0) {
        return probabilities.to_vec();
    }
    let logs = calibrated_logs(probabilities, temperature, bias);
    let top = logs
        .iter()
        .flatten()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = logs
        .iter()
        .map(|l| l.map_or(0.0, |l| exp(l - top)))
        .collect();
    let total: f64 = weights.iter().sum();
    weights.iter().map(|w| (w / total) as f32).collect()
}

/// ln p(k) / T + b_k for the classes with p(k) > 0.
fn calibrated_logs(probabilities: &[f32], temperature: f64, bias: &[f64]) -> Vec<Option<f64>> {
    let inverse = 1.0 / temperature;
    probabilities
        .iter()
        .enumerate()
        .map(|(k, &p)| {
            (p > 0.0).then(|| (p as f64).ln() * inverse + bias.get(k).copied().unwrap_or(0.0))
        })
        .collect()
}

/// Mean -ln p_T(true class) of `probabilities` (one vector per sample) at `temperature`.
pub fn tempered_nll(probabilities: &[&[f32]], truth: &[usize], temperature: f64) -> f64 {
    calibrated_nll(probabilities, truth, temperature, &[])
}

/// Mean -ln p_cal(true class) of `probabilities` (one vector per sample) calibrated by
/// `temperature` and `bias`, with the floor on the true class's probability as in the metrics.
pub fn calibrated_nll(
    probabilities: &[&[f32]],
    truth: &[usize],
    temperature: f64,
    bias: &[f64],
) -> f64 {
    let mut sum = 0.0;
    for (p, &t) in probabilities.iter().zip(truth) {
        let logs = calibrated_logs(p, temperature, bias);
        let top = logs
            .iter()
            .flatten()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        let log_total = top
            + logs
                .iter()
                .flatten()
                .map(|l| exp(l - top))
                .sum::<f64>()
                .ln();
        let own =
            (p[t] as f64).max(P_FLOOR).ln() / temperature + bias.get(t).copied().unwrap_or(0.0);
        sum += log_total - own;
    }
    sum / truth.len().max(1) as f64
}

/// The temperature and class offsets minimising the NLL of `probabilities` against `truth`.
///
/// The NLL is convex in (1/T, b) (the calibrated log-probabilities are linear in them), so
/// Newton's method with a backtracking line search finds the one minimum; a weak Gaussian prior
/// (unit variance, one sample's weight) on the offsets keeps them finite when a class is
/// missing from the held-out set. A fixed procedure, so the same inputs always give the same
/// calibration. The result is never worse than the identity on these predictions, and it is
/// the identity when every held-out prediction is right: the NLL then falls without bound as
/// T -> 0, and there is no evidence to fit.
pub fn fit_calibration(probabilities: &[&[f32]], truth: &[usize]) -> (f64, Vec<f64>) {
    if truth.is_empty() {
        return identity();
    }
    let all_right = probabilities
        .iter()
        .zip(truth)
        .all(|(p, &t)| p.iter().enumerate().all(|(c, &v)| c == t || v < p[t]));
    if all_right {
        return identity();
    }
    let classes = probabilities[0].len();
    let logs: Vec<Vec<f64>> = probabilities
        .iter()
        .map(|p| p.iter().map(|&v| (v as f64).max(P_FLOOR).ln()).collect())
        .collect();
    let n = truth.len() as f64;
    // theta = (1/T, b_1, ..., b_{K-1}); b_0 = 0.
    let scores = |theta: &[f64], l: &[f64], out: &mut Vec<f64>| {
        out.clear();
        out.extend(
            l.iter()
                .enumerate()
                .map(|(k, &v)| theta[0] * v + if k == 0 { 0.0 } else { theta[k] }),
        );
    };
    let objective = |theta: &[f64]| {
        let mut s = Vec::with_capacity(classes);
        let mut sum = 0.0;
        for (l, &t) in logs.iter().zip(truth) {
            scores(theta, l, &mut s);
            sum += log_sum_exp(&s) - s[t];
        }
        sum / n + theta[1..].iter().map(|b| b * b).sum::<f64>() * 0.5 / n
    };
    let mut theta = vec![0.0; classes];
    theta[0] = 1.0;
    let mut value = objective(&theta);
    let mut s = Vec::with_capacity(classes);
    for _ in 0..NEWTON_STEPS {
        // Gradient and Hessian: per sample, E_q[f] - f_y and Cov_q[f], with features
        // f_k = (ln p_k, e_k) of the calibrated scores.
        let mut gradient = vec![0.0; classes];
        let mut hessian = vec![vec![0.0; classes]; classes];
        for (l, &t) in logs.iter().zip(truth) {
            scores(&theta, l, &mut s);
            let lse = log_sum_exp(&s);
            let q: Vec<f64> = s.iter().map(|v| exp(v - lse)).collect();
            let mean_l: f64 = q.iter().zip(l).map(|(q, l)| q * l).sum();
            let mean_ll: f64 = q.iter().zip(l).map(|(q, l)| q * l * l).sum();
            gradient[0] += mean_l - l[t];
            hessian[0][0] += mean_ll - mean_l * mean_l;
            for j in 1..classes {
                gradient[j] += q[j] - f64::from(u8::from(j == t));
                let cross = q[j] * l[j] - q[j] * mean_l;
                hessian[0][j] += cross;
                hessian[j][0] += cross;
                for m in 1..classes {
                    hessian[j][m] += f64::from(u8::from(j == m)) * q[j] - q[j] * q[m];
                }
            }
        }
        gradient.iter_mut().for_each(|g| *g /= n);
        hessian.iter_mut().flatten().for_each(|h| *h /= n);
        for j in 1..classes {
            gradient[j] += theta[j] / n;
            hessian[j][j] += 1.0 / n;
        }
        hessian[0][0] += 1e-12;
        let Some(step) = solve(hessian, gradient.clone()) else {
            break;
        };
        let decrease: f64 = gradient.iter().zip(&step).map(|(g, s)| g * s).sum();
        let mut length = 1.0;
        let mut accepted = None;
        for _ in 0..60 {
            let mut candidate: Vec<f64> = theta
                .iter()
                .zip(&step)
                .map(|(t, s)| t - length * s)
                .collect();
            candidate[0] = candidate[0].clamp(INVERSE_T_RANGE.0, INVERSE_T_RANGE.1);
            let v = objective(&candidate);
            if v <= value - 1e-4 * length * decrease.max(0.0) && v < value {
                accepted = Some((candidate, v));
                break;
            }
            length /= 2.0;
        }
        let Some((candidate, v)) = accepted else {
            break;
        };
        let moved = theta
            .iter()
            .zip(&candidate)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        theta = candidate;
        value = v;
        if moved < 1e-10 {
            break;
        }
    }
    let temperature = 1.0 / theta[0];
    let mut bias = theta;
    bias[0] = 0.0;
    if calibrated_nll(probabilities, truth, temperature, &bias)
        < calibrated_nll(probabilities, truth, 1.0, &[])
    {
        (temperature, bias)
    } else {
        identity()
    }
}

fn log_sum_exp(values: &[f64]) -> f64 {
    let top = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    top + values.iter().map(|v| exp(v - top)).sum::<f64>().ln()
}

/// Solve the small symmetric system `a x = b` by Gaussian elimination with partial pivoting;
/// None when it is singular.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-300 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        for row in col + 1..n {
            let factor = a[row][col] / a[col][col];
            let (upper, lower) = a.split_at_mut(row);
            for (target, &source) in lower[0][col..].iter_mut().zip(&upper[col][col..]) {
                *target -= factor * source;
            }
            b[row] -= factor * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let tail: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - tail) / a[row][row];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
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

    struct Lcg(u64);
    impl Lcg {
        fn uniform(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
        fn draw(&mut self, p: &[f32]) -> usize {
            let u = self.uniform() as f32;
            let mut cumulative = 0.0;
            for (k, &v) in p.iter().enumerate() {
                cumulative += v;
                if u < cumulative {
                    return k;
                }
            }
            p.len() - 1
        }
    }

    /// Labels drawn from softmax(l) but the model reports softmax(3 l): overconfident by a
    /// factor 3. The fitted temperature is near 3, the offsets near 0, the NLL falls, and every
    /// argmax stays.
    #[test]
    fn temperature_undoes_overconfidence_and_keeps_argmax() {
        let mut rng = Lcg(12345);
        let (mut reported, mut truth) = (Vec::new(), Vec::new());
        for _ in 0..4000 {
            let logits: Vec<f64> = (0..3).map(|_| 3.0 * (rng.uniform() - 0.5)).collect();
            truth.push(rng.draw(&softmax(&logits)));
            reported.push(softmax(&logits.iter().map(|l| 3.0 * l).collect::<Vec<_>>()));
        }
        let views: Vec<&[f32]> = reported.iter().map(Vec::as_slice).collect();
        let (t, bias) = fit_calibration(&views, &truth);
        assert!((t - 3.0).abs() < 0.3, "temperature {t}");
        assert!(bias.iter().all(|b| b.abs() < 0.15), "offsets {bias:?}");
        assert!(tempered_nll(&views, &truth, t) < tempered_nll(&views, &truth, 1.0) - 0.05);
        for p in &reported {
            let before = Prediction::from_probabilities(p.clone(), 0.0).predicted_index;
            let after = Prediction::from_probabilities(temper(p, t), 0.0).predicted_index;
            assert_eq!(before, after);
        }
        // Held-out predictions that are all right give no evidence: no calibration.
        let right: Vec<usize> = reported
            .iter()
            .map(|p| Prediction::from_probabilities(p.clone(), 0.0).predicted_index)
            .collect();
        assert_eq!(fit_calibration(&views, &right), identity());
        // Well-calibrated probabilities need no temperature.
        let calibrated: Vec<Vec<f32>> = reported.iter().map(|p| temper(p, 3.0)).collect();
        let views: Vec<&[f32]> = calibrated.iter().map(Vec::as_slice).collect();
        assert!((fit_calibration(&views, &truth).0 - 1.0).abs() < 0.1);
    }

    /// A network trained on class-balanced minibatches reports p(y|x) for equal class
    /// frequencies; the held-out data have 80% of class 0. The offset recovers ln(0.2/0.8)
    /// (the prior ratio), T stays near 1, and the corrected calls are more often right.
    #[test]
    fn offsets_undo_a_class_prior_shift() {
        let mut rng = Lcg(99);
        let prior = [0.8f64, 0.2];
        let (mut reported, mut truth) = (Vec::new(), Vec::new());
        for _ in 0..6000 {
            let logit = 4.0 * (rng.uniform() - 0.5);
            // True posterior: balanced likelihood ratio times the prior.
            let balanced = softmax(&[0.0, logit]);
            let true_p = softmax(&[
                (balanced[0] as f64).ln() + prior[0].ln(),
                (balanced[1] as f64).ln() + prior[1].ln(),
            ]);
            truth.push(rng.draw(&true_p));
            reported.push(balanced);
        }
        let views: Vec<&[f32]> = reported.iter().map(Vec::as_slice).collect();
        let (t, bias) = fit_calibration(&views, &truth);
        let expected = (prior[1] / prior[0]).ln();
        assert!((t - 1.0).abs() < 0.1, "temperature {t}");
        assert!(
            (bias[1] - expected).abs() < 0.15,
            "offset {} vs {expected}",
            bias[1]
        );
        let accuracy = |p: &dyn Fn(&[f32]) -> Vec<f32>| {
            reported
                .iter()
                .zip(&truth)
                .filter(|(r, &y)| Prediction::from_probabilities(p(r), 0.0).predicted_index == y)
                .count()
        };
        assert!(accuracy(&|r| calibrate(r, t, &bias)) > accuracy(&|r| r.to_vec()));
    }

    /// The Newton fit against an independent search: no point of a fine grid over (1/T, b)
    /// has a lower NLL than the fit (beyond the weak prior on b).
    #[test]
    fn calibration_fit_is_the_minimum_of_a_grid_search() {
        let mut rng = Lcg(7);
        let (mut reported, mut truth) = (Vec::new(), Vec::new());
        for _ in 0..800 {
            let logits: Vec<f64> = (0..3).map(|_| 2.0 * (rng.uniform() - 0.5)).collect();
            let shifted = [logits[0] + 0.7, logits[1], logits[2] - 0.4];
            truth.push(rng.draw(&softmax(&shifted)));
            reported.push(softmax(&logits.iter().map(|l| 2.0 * l).collect::<Vec<_>>()));
        }
        let views: Vec<&[f32]> = reported.iter().map(Vec::as_slice).collect();
        let (t, bias) = fit_calibration(&views, &truth);
        let fitted = calibrated_nll(&views, &truth, t, &bias);
        let mut best = f64::INFINITY;
        for i in 0..=20 {
            let inverse = 0.3 + 0.025 * i as f64;
            for j in 0..=20 {
                for k in 0..=20 {
                    let b = [0.0, -1.7 + 0.1 * j as f64, -1.7 + 0.1 * k as f64];
                    best = best.min(calibrated_nll(&views, &truth, 1.0 / inverse, &b));
                }
            }
        }
        assert!(fitted <= best + 1e-3, "fit {fitted} vs grid {best}");
        assert!(
            fitted > best - 0.01,
            "fit {fitted} below the grid minimum {best}"
        );
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
