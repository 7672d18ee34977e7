//! A continuous target (severity as a fraction, a disease score) through the same bottleneck.
//!
//! The decoder p(y|z) is a Gaussian whose mean and log-variance are two linear outputs of z, on
//! the target standardised with the training set's mean and standard deviation. The loss is the
//! VIB's with -ln p(y|z) in place of the cross-entropy. At prediction every sample of z (and every
//! ensemble member) gives one Gaussian; the predictive distribution is their equal-weight mixture,
//! reported by its mean and variance (the mixture's first two moments, which average exactly
//! across members) and a central interval of the moment-matched Gaussian. The calibration is one
//! factor on the predictive variance, fitted by maximum likelihood on held-out predictions (the
//! regression counterpart of the temperature).

use domain::ValuePrediction;

use crate::diagnostics::ACTIVE_DIMENSION_NATS;
use crate::inference::RawPrediction;

/// Level of the central interval every prediction carries.
pub const DEFAULT_INTERVAL_LEVEL: f64 = 0.9;

/// Quantile bins of a continuous target, the strata of the grouped splits.
const STRATA: usize = 5;

/// The model card's record of a continuous target.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RegressionTarget {
    /// What the target is (the column or raster it came from), e.g. `severity`.
    pub name: String,
    /// Standardisation of the target: the network predicts (y - mean) / std.
    pub mean: f64,
    pub std: f64,
    /// Range of the training targets.
    pub min: f64,
    pub max: f64,
    /// Level of the central interval reported with every prediction.
    pub interval_level: f64,
    /// The predictive variance is multiplied by this (1: no calibration), fitted by maximum
    /// likelihood on held-out predictions.
    pub variance_scale: f64,
    /// Where the variance scale was fitted and what it did there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<RegressionCalibration>,
}

/// What the variance scale did on the predictions it was fitted on (target units).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RegressionCalibration {
    /// `out-of-fold` or `validation`.
    pub fitted_on: String,
    pub samples: usize,
    pub nll_before_nats: f64,
    pub nll_after_nats: f64,
    pub coverage_before: f64,
    pub coverage_after: f64,
}

impl RegressionTarget {
    /// The record of training targets `values` (mean, std, range), uncalibrated.
    pub fn describe(name: &str, values: &[f64]) -> Self {
        let n = values.len().max(1) as f64;
        let mean = values.iter().sum::<f64>() / n;
        let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        Self {
            name: name.to_string(),
            mean,
            // A constant target still standardises to finite values.
            std: variance.sqrt().max(1e-9),
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            interval_level: DEFAULT_INTERVAL_LEVEL,
            variance_scale: 1.0,
            calibration: None,
        }
    }

    /// `values` standardised with the target's mean and std.
    pub fn standardise(&self, values: &[f64]) -> Vec<f32> {
        values
            .iter()
            .map(|v| ((v - self.mean) / self.std) as f32)
            .collect()
    }

    /// Entropy in nats of a Gaussian with the training targets' variance: the stand-in for H(Y)
    /// in the relevance bound (see docs/vib.md).
    pub fn gaussian_entropy_nats(&self) -> f64 {
        0.5 * (2.0 * std::f64::consts::PI * std::f64::consts::E * self.std * self.std).ln()
    }

    /// A raw prediction (first and second moments of the standardised mixture) in target units,
    /// with the predictive variance multiplied by `variance_scale`.
    pub fn value_prediction(&self, raw: &RawPrediction, variance_scale: f64) -> ValuePrediction {
        let (m, v) = moments(raw);
        let mean = self.mean + self.std * m;
        let sd = (v * variance_scale).sqrt() * self.std;
        let z = normal_quantile(0.5 + self.interval_level / 2.0);
        ValuePrediction {
            mean,
            sd,
            lower: mean - z * sd,
            upper: mean + z * sd,
            entropy_nats: gaussian_entropy(sd),
            kl_nats: raw.kl_nats,
            ood: false,
        }
    }
}

/// Differential entropy of N(., sd^2), nats.
fn gaussian_entropy(sd: f64) -> f64 {
    0.5 * (2.0 * std::f64::consts::PI * std::f64::consts::E).ln() + sd.max(1e-300).ln()
}

/// Mean and variance of a raw regression prediction, whose "probabilities" are the mixture's
/// E[y] and E[y^2] (standardised units).
pub fn moments(raw: &RawPrediction) -> (f64, f64) {
    let (first, second) = (raw.probabilities[0] as f64, raw.probabilities[1] as f64);
    (first, (second - first * first).max(1e-12))
}

/// -ln N(y; mean, variance).
pub fn gaussian_nll_of(mean: f64, variance: f64, y: f64) -> f64 {
    0.5 * ((2.0 * std::f64::consts::PI).ln() + variance.ln() + (y - mean).powi(2) / variance)
}

/// The variance factor c that maximises the likelihood of `truth` under N(mean, c variance):
/// c = mean of (y - mean)^2 / variance, kept in [1/100, 100]; 1 without samples.
pub fn fit_variance_scale(predicted: &[(f64, f64)], truth: &[f64]) -> f64 {
    if truth.is_empty() {
        return 1.0;
    }
    let c = predicted
        .iter()
        .zip(truth)
        .map(|(&(m, v), &y)| (y - m).powi(2) / v)
        .sum::<f64>()
        / truth.len() as f64;
    if c.is_finite() {
        c.clamp(1e-2, 1e2)
    } else {
        1.0
    }
}

/// Mean Gaussian NLL of `truth` under N(mean, c variance).
pub fn mean_nll(predicted: &[(f64, f64)], truth: &[f64], c: f64) -> f64 {
    predicted
        .iter()
        .zip(truth)
        .map(|(&(m, v), &y)| gaussian_nll_of(m, c * v, y))
        .sum::<f64>()
        / truth.len().max(1) as f64
}

/// Strata for stratified splits of a continuous target: the index of the value among the distinct
/// values when there are at most 5 (an ordinal score), else its quintile.
pub fn strata(values: &[f64]) -> Vec<usize> {
    let mut distinct: Vec<f64> = values.to_vec();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    if distinct.len() <= STRATA {
        return values
            .iter()
            .map(|v| distinct.partition_point(|d| d < v))
            .collect();
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let cuts: Vec<f64> = (1..STRATA)
        .map(|q| sorted[q * sorted.len() / STRATA])
        .collect();
    values
        .iter()
        .map(|v| cuts.partition_point(|c| c <= v))
        .collect()
}

/// The standard normal quantile (Acklam's rational approximation, relative error below 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    let low = 0.02425;
    if p < low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    }
}

/// Ranks with ties averaged (1-based).
fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j < order.len() && values[order[j]] == values[order[i]] {
            j += 1;
        }
        let average = (i + 1 + j) as f64 / 2.0;
        for &k in &order[i..j] {
            ranks[k] = average;
        }
        i = j;
    }
    ranks
}

/// Pearson correlation; NaN when either side is constant.
fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma).powi(2);
        sbb += (y - mb).powi(2);
    }
    sab / (saa * sbb).sqrt()
}

/// Spearman's rank correlation (Pearson on tie-averaged ranks).
pub fn spearman_rho(a: &[f64], b: &[f64]) -> f64 {
    pearson(&ranks(a), &ranks(b))
}

/// How a regression model does on a set with known targets.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RegressionMetrics {
    pub samples: usize,
    pub rmse: f64,
    pub mae: f64,
    /// 1 - SSE / SST (SST about the set's own mean).
    pub r_squared: f64,
    pub spearman_rho: f64,
    /// Level of the intervals and the share of targets inside them.
    pub interval_level: f64,
    pub coverage: f64,
    pub mean_interval_width: f64,
    /// Mean -ln N(y; predicted mean, predicted variance), target units.
    pub negative_log_likelihood_nats: f64,
    pub mean_kl_nats: f64,
}

impl RegressionMetrics {
    pub fn compute(truth: &[f64], predictions: &[ValuePrediction], interval_level: f64) -> Self {
        let n = truth.len().max(1) as f64;
        let mean_truth = truth.iter().sum::<f64>() / n;
        let (mut sse, mut sae, mut sst, mut inside, mut width, mut nll, mut kl) =
            (0.0, 0.0, 0.0, 0usize, 0.0, 0.0, 0.0);
        for (&y, p) in truth.iter().zip(predictions) {
            sse += (y - p.mean).powi(2);
            sae += (y - p.mean).abs();
            sst += (y - mean_truth).powi(2);
            inside += usize::from(p.lower <= y && y <= p.upper);
            width += p.upper - p.lower;
            nll += gaussian_nll_of(p.mean, (p.sd * p.sd).max(1e-300), y);
            kl += p.kl_nats;
        }
        let means: Vec<f64> = predictions.iter().map(|p| p.mean).collect();
        Self {
            samples: truth.len(),
            rmse: (sse / n).sqrt(),
            mae: sae / n,
            r_squared: if sst > 0.0 { 1.0 - sse / sst } else { f64::NAN },
            spearman_rho: spearman_rho(truth, &means),
            interval_level,
            coverage: inside as f64 / n,
            mean_interval_width: width / n,
            negative_log_likelihood_nats: nll / n,
            mean_kl_nats: kl / n,
        }
    }
}

/// Active latent dimensions of a per-dimension rate.
pub fn active(kl_per_dimension: &[f64]) -> usize {
    kl_per_dimension
        .iter()
        .filter(|&&k| k > ACTIVE_DIMENSION_NATS)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_quantile_matches_tables() {
        // Values from standard normal tables (and scipy.stats.norm.ppf).
        for (p, z) in [
            (0.5, 0.0),
            (0.95, 1.644_853_626_951_472_2),
            (0.975, 1.959_963_984_540_054),
            (0.01, -2.326_347_874_040_841),
            (0.999, 3.090_232_306_167_813_6),
        ] {
            assert!(
                (normal_quantile(p) - z).abs() < 1e-8,
                "p {p}: {}",
                normal_quantile(p)
            );
        }
    }

    /// The closed form against a hand computation: y = 1.3, mean 1, variance 0.25:
    /// 0.5 (ln 2 pi + ln 0.25 + 0.09 / 0.25) = 0.5 (1.837877 - 1.386294 + 0.36) = 0.405791.
    #[test]
    fn gaussian_nll_by_hand() {
        assert!((gaussian_nll_of(1.0, 0.25, 1.3) - 0.405_791_5).abs() < 1e-6);
    }

    /// Predictions with sd too small by 2 get a variance scale of about 4, and the NLL falls.
    #[test]
    fn variance_scale_undoes_overconfidence() {
        let normals = crate::inference::normals(5, 20_000);
        let truth: Vec<f64> = normals.iter().map(|&e| 2.0 * e as f64).collect();
        let predicted = vec![(0.0, 1.0); truth.len()];
        let c = fit_variance_scale(&predicted, &truth);
        assert!((c - 4.0).abs() < 0.15, "{c}");
        assert!(mean_nll(&predicted, &truth, c) < mean_nll(&predicted, &truth, 1.0));
    }

    #[test]
    fn spearman_by_hand() {
        // Ranks of b with a tie: [1, 2.5, 2.5, 4]; a's ranks [1, 2, 3, 4].
        let rho = spearman_rho(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 20.0, 40.0]);
        // Pearson of [1,2,3,4] and [1,2.5,2.5,4]: cov 3.75/4.. = 0.9487
        assert!((rho - 0.948_683_298).abs() < 1e-6, "{rho}");
        assert!((spearman_rho(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
    }

    #[test]
    fn strata_of_scores_and_fractions() {
        assert_eq!(strata(&[0.0, 4.0, 2.0, 2.0, 1.0]), vec![0, 3, 2, 2, 1]);
        let fractions: Vec<f64> = (0..100).map(|i| i as f64 / 100.0).collect();
        let s = strata(&fractions);
        for bin in 0..5 {
            assert_eq!(s.iter().filter(|&&b| b == bin).count(), 20);
        }
    }

    /// Intervals of a known-noise case: targets y ~ N(mu, 1) against predictions N(mu, 1) cover
    /// 90% (binomial 5 standard errors).
    #[test]
    fn interval_coverage_with_known_noise() {
        let target = RegressionTarget::describe("y", &[0.0, 2.0]); // mean 1, std 1
        let noise = crate::inference::normals(11, 10_000);
        let mut truth = Vec::new();
        let mut predictions = Vec::new();
        for (i, e) in noise.iter().enumerate() {
            let mu = (i % 7) as f64 * 0.3 - 1.0;
            // E[y] = mu, E[y^2] = 1 + mu^2 in standardised units (std 1).
            let raw = RawPrediction {
                probabilities: vec![mu as f32, (1.0 + mu * mu) as f32],
                kl_nats: 0.0,
            };
            predictions.push(target.value_prediction(&raw, 1.0));
            truth.push(1.0 + mu + *e as f64);
        }
        let m = RegressionMetrics::compute(&truth, &predictions, 0.9);
        let se = (0.9 * 0.1 / truth.len() as f64).sqrt();
        assert!(
            (m.coverage - 0.9).abs() < 5.0 * se,
            "coverage {}",
            m.coverage
        );
        assert!((m.mean_interval_width - 2.0 * 1.644_853_6).abs() < 1e-3);
        assert!((m.rmse - 1.0).abs() < 0.05);
    }
}
