//! Welch's t-test and t confidence intervals, from the Student t distribution (its CDF through
//! the regularised incomplete beta function, evaluated by Lentz's continued fraction).
//!
//! Why Welch: treatments are compared on a handful of plots each, whose AUDPC spreads need not
//! be equal; Welch's test does not assume equal variances, and with 3-6 plots per treatment a
//! permutation test has too few distinct arrangements to reach small p-values.

/// ln Gamma(x), x > 0 (Lanczos, g = 7, n = 9; relative error about 1e-15).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Continued fraction of the incomplete beta function (modified Lentz).
fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..500 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + aa / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + aa / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// The regularised incomplete beta function I_x(a, b).
fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(a, b, x) / a
    } else {
        1.0 - front * beta_fraction(b, a, 1.0 - x) / b
    }
}

/// P(T <= t) for Student's t with `df` > 0 degrees of freedom (not necessarily whole).
pub fn student_t_cdf(t: f64, df: f64) -> f64 {
    let tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t));
    if t >= 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// The t with P(T <= t) = `p`, by bisection on the CDF (to 1e-12).
pub fn student_t_quantile(p: f64, df: f64) -> f64 {
    if !(0.0..=1.0).contains(&p) || p == 0.0 || p == 1.0 {
        return if p == 0.0 {
            f64::NEG_INFINITY
        } else if p == 1.0 {
            f64::INFINITY
        } else {
            f64::NAN
        };
    }
    let (mut lo, mut hi) = (-1.0, 1.0);
    while student_t_cdf(lo, df) > p {
        lo *= 2.0;
    }
    while student_t_cdf(hi, df) < p {
        hi *= 2.0;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if student_t_cdf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-12 * hi.abs().max(1.0) {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// Mean and sample variance (n - 1).
fn mean_variance(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, variance)
}

/// The mean of `values` and its two-sided `level` (0.95) t confidence interval; the interval is
/// `None` for fewer than two values.
pub fn mean_confidence_interval(values: &[f64], level: f64) -> (f64, Option<(f64, f64)>) {
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n.max(1) as f64;
    if n < 2 {
        return (mean, None);
    }
    let (_, variance) = mean_variance(values);
    let half = student_t_quantile(0.5 + level / 2.0, (n - 1) as f64) * (variance / n as f64).sqrt();
    (mean, Some((mean - half, mean + half)))
}

/// Welch's unequal-variances t-test of two samples' means.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WelchTest {
    /// (mean of a - mean of b) / its standard error.
    pub t: f64,
    /// Welch-Satterthwaite degrees of freedom.
    pub df: f64,
    /// Two-sided p-value.
    pub p_value: f64,
}

/// Welch's t-test of `a` against `b`; `None` when either has fewer than two values or both have
/// no spread.
pub fn welch_t_test(a: &[f64], b: &[f64]) -> Option<WelchTest> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let ((ma, va), (mb, vb)) = (mean_variance(a), mean_variance(b));
    let (sa, sb) = (va / a.len() as f64, vb / b.len() as f64);
    let se2 = sa + sb;
    if se2 <= 0.0 {
        return None;
    }
    let t = (ma - mb) / se2.sqrt();
    let df = se2 * se2 / (sa * sa / (a.len() - 1) as f64 + sb * sb / (b.len() - 1) as f64);
    let p_value = 2.0 * student_t_cdf(-t.abs(), df);
    Some(WelchTest { t, df, p_value })
}

/// Per treatment: plots, mean AUDPC with its 95% interval, and Welch's test against the control.
#[derive(Debug, Clone, PartialEq)]
pub struct TreatmentRow {
    pub treatment: String,
    pub plots: usize,
    pub mean: f64,
    pub ci95: Option<(f64, f64)>,
    /// Against the control (none for the control itself, or with too few plots).
    pub versus_control: Option<WelchTest>,
}

/// Compare treatments on one per-plot value (e.g. AUDPC of incidence): `plots` are
/// (treatment, value) pairs; treatments in order of first appearance, the control tested against.
pub fn compare_treatments(plots: &[(String, f64)], control: Option<&str>) -> Vec<TreatmentRow> {
    let mut names: Vec<&str> = Vec::new();
    for (t, _) in plots {
        if !names.contains(&t.as_str()) {
            names.push(t);
        }
    }
    let values_of = |name: &str| -> Vec<f64> {
        plots
            .iter()
            .filter(|(t, _)| t == name)
            .map(|(_, v)| *v)
            .collect()
    };
    let control_values = control.map(values_of);
    names
        .iter()
        .map(|&name| {
            let values = values_of(name);
            let (mean, ci95) = mean_confidence_interval(&values, 0.95);
            let versus_control = match (&control_values, control) {
                (Some(c), Some(control)) if control != name => welch_t_test(&values, c),
                _ => None,
            };
            TreatmentRow {
                treatment: name.to_string(),
                plots: values.len(),
                mean,
                ci95,
                versus_control,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Closed forms: df 1 is the Cauchy distribution (1/2 + atan(t)/pi), df 2 has
    /// F(t) = 1/2 + t / (2 sqrt(2 + t^2)); and tabled quantiles.
    #[test]
    fn t_distribution_against_closed_forms_and_tables() {
        for t in [-7.0, -1.3, 0.0, 0.4, 2.0, 30.0] {
            let cauchy = 0.5 + f64::atan(t) / std::f64::consts::PI;
            assert!((student_t_cdf(t, 1.0) - cauchy).abs() < 1e-12, "{t}");
            let two = 0.5 + t / (2.0 * (2.0 + t * t).sqrt());
            assert!((student_t_cdf(t, 2.0) - two).abs() < 1e-12, "{t}");
        }
        for (df, q) in [
            (1.0, 12.706_204_736_174_705),
            (4.0, 2.776_445_105_197_799),
            (10.0, 2.228_138_851_964_938_5),
        ] {
            assert!((student_t_quantile(0.975, df) - q).abs() < 1e-8, "df {df}");
        }
        // Large df approaches the normal: the 97.5% quantile tends to 1.959964.
        assert!((student_t_quantile(0.975, 1e6) - 1.959_966).abs() < 1e-5);
    }

    /// Welch by hand: a = 1,2,3,4 (mean 2.5, var 5/3), b = 2,4,6 (mean 4, var 4):
    /// se^2 = 5/12 + 4/3 = 1.75, t = -1.5 / sqrt(1.75), df = 1.75^2 / ((5/12)^2/3 + (4/3)^2/2).
    #[test]
    fn welch_by_hand() {
        let w = welch_t_test(&[1.0, 2.0, 3.0, 4.0], &[2.0, 4.0, 6.0]).unwrap();
        assert!((w.t + 1.5 / 1.75f64.sqrt()).abs() < 1e-12);
        let df = 1.75f64.powi(2) / ((5.0f64 / 12.0).powi(2) / 3.0 + (4.0f64 / 3.0).powi(2) / 2.0);
        assert!((w.df - df).abs() < 1e-12);
        assert!((w.p_value - 2.0 * student_t_cdf(w.t, w.df)).abs() < 1e-15);
        assert!(welch_t_test(&[1.0], &[2.0, 3.0]).is_none());
        let rows = compare_treatments(
            &[
                ("control".into(), 10.0),
                ("fungicide".into(), 4.0),
                ("control".into(), 12.0),
                ("fungicide".into(), 5.0),
                ("control".into(), 11.0),
            ],
            Some("control"),
        );
        assert_eq!(rows[0].treatment, "control");
        assert!(rows[0].versus_control.is_none());
        assert_eq!(rows[1].plots, 2);
        assert!((rows[1].mean - 4.5).abs() < 1e-12);
        let (lo, hi) = rows[0].ci95.unwrap();
        // mean 11, sd 1, n 3: 11 -/+ t(0.975, 2) / sqrt(3), t(0.975, 2) = 4.302653.
        assert!(
            (hi - 11.0 - 4.302_652_729_696_14 / 3f64.sqrt()).abs() < 1e-7,
            "{lo} {hi}"
        );
        assert!(rows[1].versus_control.unwrap().t < 0.0);
    }
}
