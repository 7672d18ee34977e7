//! The area under the disease progress curve (AUDPC; Shaner & Finney 1977): the trapezoid rule
//! over the scan dates, in units of the variable times days.

/// AUDPC of `values` (e.g. incidence in %) at `days` (strictly increasing): the sum over
/// consecutive scans of (y_i + y_{i+1}) / 2 * (t_{i+1} - t_i). 0 for fewer than two scans.
pub fn audpc(days: &[i64], values: &[f64]) -> f64 {
    days.windows(2)
        .zip(values.windows(2))
        .map(|(t, y)| (y[0] + y[1]) / 2.0 * (t[1] - t[0]) as f64)
        .sum()
}

/// AUDPC relative to its largest possible value, `maximum` (100 for a percentage) over the whole
/// period: 0 (no disease) to 1 (all plants diseased from the first scan on). `None` for a period
/// of zero days.
pub fn relative_audpc(days: &[i64], values: &[f64], maximum: f64) -> Option<f64> {
    let duration = days.last()? - days.first()?;
    (duration > 0).then(|| audpc(days, values) / (maximum * duration as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// By hand, uneven intervals: days 0, 3, 10, 24 with 0, 10, 40, 80 %:
    /// 3 * 5 + 7 * 25 + 14 * 60 = 15 + 175 + 840 = 1030 %-days; relative 1030 / (100 * 24).
    #[test]
    fn trapezoid_by_hand_with_uneven_intervals() {
        let days = [0, 3, 10, 24];
        let values = [0.0, 10.0, 40.0, 80.0];
        assert_eq!(audpc(&days, &values), 1030.0);
        assert!((relative_audpc(&days, &values, 100.0).unwrap() - 1030.0 / 2400.0).abs() < 1e-15);
        assert_eq!(audpc(&[5], &[50.0]), 0.0);
        assert!(relative_audpc(&[5], &[50.0], 100.0).is_none());
        // All diseased from the start: the relative AUDPC is 1.
        assert_eq!(relative_audpc(&[0, 7, 9], &[100.0; 3], 100.0), Some(1.0));
    }
}
