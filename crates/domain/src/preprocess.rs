//! Spectral preprocessing, applied identically at training and prediction (the chain is stored in
//! the model file): band selection, continuum removal, Savitzky-Golay smoothing or derivative, SNV.

use serde::{Deserialize, Serialize};

use crate::{Error, SpectralAxis};

/// Atmospheric water-vapour absorption windows dropped by `exclude_water_bands`, nm.
pub const WATER_BANDS_NM: [(f64, f64); 2] = [(1340.0, 1460.0), (1790.0, 1960.0)];

/// Savitzky-Golay filter: a polynomial of `order` fitted over `window` bands (odd) around each band;
/// `derivative` 0 smooths, 1 gives the first derivative per band step. Edges use the polynomial
/// fitted to the first or last full window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SavitzkyGolay {
    pub window: usize,
    pub order: usize,
    pub derivative: usize,
}

/// The preprocessing chain, in the order applied.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Preprocessing {
    /// Keep only bands within this range, nm.
    pub band_range_nm: Option<(f64, f64)>,
    /// Drop bands in [`WATER_BANDS_NM`].
    pub exclude_water_bands: bool,
    /// Divide by the upper convex hull of the spectrum (over wavelength).
    pub continuum_removal: bool,
    pub savitzky_golay: Option<SavitzkyGolay>,
    /// Standard normal variate: centre and scale each spectrum by its own mean and deviation.
    pub snv: bool,
}

/// A preprocessing chain ready to apply to spectra on one axis.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    config: Preprocessing,
    /// Bands kept, sorted by wavelength.
    kept: Vec<usize>,
    kept_nm: Vec<f64>,
    input_bands: usize,
    /// Savitzky-Golay weights per output position (window start, weights).
    filter: Option<Vec<(usize, Vec<f64>)>>,
}

impl Preprocessing {
    /// Whether the chain changes nothing.
    pub fn is_identity(&self) -> bool {
        *self == Preprocessing::default()
    }

    /// Prepare the chain for spectra on `axis`.
    pub fn for_axis(&self, axis: &SpectralAxis) -> Result<Preprocessor, Error> {
        let mut kept: Vec<usize> = (0..axis.len())
            .filter(|&b| {
                let w = axis.wavelength_nm()[b];
                let in_range = self.band_range_nm.is_none_or(|(lo, hi)| w >= lo && w <= hi);
                let water = self.exclude_water_bands
                    && WATER_BANDS_NM.iter().any(|&(lo, hi)| w >= lo && w <= hi);
                in_range && !water
            })
            .collect();
        kept.sort_by(|&a, &b| axis.wavelength_nm()[a].total_cmp(&axis.wavelength_nm()[b]));
        let kept_nm: Vec<f64> = kept.iter().map(|&b| axis.wavelength_nm()[b]).collect();
        let filter = match self.savitzky_golay {
            Some(sg) => {
                if sg.window % 2 == 0
                    || sg.window < 3
                    || sg.order >= sg.window
                    || sg.derivative > sg.order
                {
                    return Err(Error::InvalidPreprocessing(format!(
                        "Savitzky-Golay window {} (odd, >= 3), order {} (< window), derivative {} (<= order)",
                        sg.window, sg.order, sg.derivative
                    )));
                }
                if kept.len() < sg.window {
                    return Err(Error::InvalidPreprocessing(format!(
                        "{} bands left, fewer than the Savitzky-Golay window {}",
                        kept.len(),
                        sg.window
                    )));
                }
                Some(savitzky_golay_weights(kept.len(), sg))
            }
            None => None,
        };
        if kept.len() < 2 {
            return Err(Error::InvalidPreprocessing(format!(
                "{} bands left after band selection",
                kept.len()
            )));
        }
        Ok(Preprocessor {
            config: self.clone(),
            kept,
            kept_nm,
            input_bands: axis.len(),
            filter,
        })
    }
}

impl Preprocessor {
    /// Length of a preprocessed spectrum.
    pub fn output_len(&self) -> usize {
        self.kept.len()
    }

    /// Preprocess one spectrum (on the axis the preprocessor was made for).
    pub fn apply(&self, spectrum: &[f32]) -> Result<Vec<f32>, Error> {
        if spectrum.len() != self.input_bands {
            return Err(Error::LengthMismatch {
                expected: self.input_bands,
                got: spectrum.len(),
            });
        }
        let mut values: Vec<f64> = self.kept.iter().map(|&b| spectrum[b] as f64).collect();
        if self.config.continuum_removal {
            values = continuum_removed(&self.kept_nm, &values);
        }
        if let Some(filter) = &self.filter {
            values = filter
                .iter()
                .map(|(start, weights)| {
                    weights
                        .iter()
                        .zip(&values[*start..])
                        .map(|(w, v)| w * v)
                        .sum()
                })
                .collect();
        }
        if self.config.snv {
            let n = values.len() as f64;
            let mean = values.iter().sum::<f64>() / n;
            let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
            let sd = if sd > 0.0 { sd } else { 1.0 };
            values.iter_mut().for_each(|v| *v = (*v - mean) / sd);
        }
        Ok(values.into_iter().map(|v| v as f32).collect())
    }
}

/// Divide by the upper convex hull through the points (wavelength, value); values <= 0 are kept as
/// they are relative to a hull clamped at a tiny positive value.
fn continuum_removed(wavelength_nm: &[f64], values: &[f64]) -> Vec<f64> {
    // Monotone chain upper hull over points sorted by wavelength.
    let mut hull: Vec<usize> = Vec::new();
    for i in 0..values.len() {
        while hull.len() >= 2 {
            let (a, b) = (hull[hull.len() - 2], hull[hull.len() - 1]);
            let cross = (wavelength_nm[b] - wavelength_nm[a]) * (values[i] - values[a])
                - (values[b] - values[a]) * (wavelength_nm[i] - wavelength_nm[a]);
            if cross >= 0.0 {
                hull.pop();
            } else {
                break;
            }
        }
        hull.push(i);
    }
    let mut out = Vec::with_capacity(values.len());
    let mut segment = 0;
    for i in 0..values.len() {
        while segment + 1 < hull.len() - 1 && hull[segment + 1] < i {
            segment += 1;
        }
        let (a, b) = (hull[segment], hull[(segment + 1).min(hull.len() - 1)]);
        let continuum = if a == b || wavelength_nm[b] == wavelength_nm[a] {
            values[a]
        } else {
            let t = (wavelength_nm[i] - wavelength_nm[a]) / (wavelength_nm[b] - wavelength_nm[a]);
            values[a] + t * (values[b] - values[a])
        };
        out.push(values[i] / continuum.max(1e-9));
    }
    out
}

/// Weights of the least-squares polynomial of `order` over each window, evaluated (or its
/// `derivative`) at each position. Interior positions use the centred window; edges the first or
/// last window, evaluated off-centre.
fn savitzky_golay_weights(n: usize, sg: SavitzkyGolay) -> Vec<(usize, Vec<f64>)> {
    let half = sg.window / 2;
    (0..n)
        .map(|i| {
            let start = i.saturating_sub(half).min(n - sg.window);
            let offset = i as f64 - (start + half) as f64;
            (
                start,
                polynomial_weights(sg.window, sg.order, sg.derivative, offset),
            )
        })
        .collect()
}

/// Weights w such that sum_k w_k y_k is the `derivative` at `offset` (from the window centre) of
/// the least-squares polynomial of `order` through y over the window.
fn polynomial_weights(window: usize, order: usize, derivative: usize, offset: f64) -> Vec<f64> {
    let half = (window / 2) as f64;
    let m = order + 1;
    // Normal matrix A^T A, A[k][j] = x_k^j with x_k = k - half.
    let xs: Vec<f64> = (0..window).map(|k| k as f64 - half).collect();
    let normal: Vec<Vec<f64>> = (0..m)
        .map(|r| {
            (0..m)
                .map(|c| xs.iter().map(|x| x.powi((r + c) as i32)).sum())
                .collect()
        })
        .collect();
    let inverse = invert(normal);
    // d^derivative/dt^derivative of t^j at t = offset.
    let basis: Vec<f64> = (0..m)
        .map(|j| {
            if j < derivative {
                0.0
            } else {
                let falling: f64 = ((j - derivative + 1)..=j).map(|v| v as f64).product();
                falling * offset.powi((j - derivative) as i32)
            }
        })
        .collect();
    // w_k = sum_r sum_c basis_r inverse[r][c] x_k^c
    let projected: Vec<f64> = (0..m)
        .map(|c| (0..m).map(|r| basis[r] * inverse[r][c]).sum())
        .collect();
    xs.iter()
        .map(|x| {
            projected
                .iter()
                .enumerate()
                .map(|(c, p)| p * x.powi(c as i32))
                .sum()
        })
        .collect()
}

/// Gauss-Jordan inverse of a small symmetric positive-definite matrix.
fn invert(mut a: Vec<Vec<f64>>) -> Vec<Vec<f64>> {
    let n = a.len();
    let mut inv: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| f64::from(u8::from(i == j))).collect())
        .collect();
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))
            .expect("non-empty range");
        a.swap(col, pivot);
        inv.swap(col, pivot);
        let p = a[col][col];
        for j in 0..n {
            a[col][j] /= p;
            inv[col][j] /= p;
        }
        for row in 0..n {
            if row != col {
                let f = a[row][col];
                for j in 0..n {
                    a[row][j] -= f * a[col][j];
                    inv[row][j] -= f * inv[col][j];
                }
            }
        }
    }
    inv
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn axis(n: usize, step: f64) -> SpectralAxis {
        SpectralAxis::new((0..n).map(|i| 400.0 + step * i as f64).collect(), None).unwrap()
    }

    #[test]
    fn known_savitzky_golay_coefficients() {
        // The classic 5-point quadratic smoothing weights: (-3, 12, 17, 12, -3) / 35.
        let w = polynomial_weights(5, 2, 0, 0.0);
        for (got, want) in w.iter().zip([-3.0, 12.0, 17.0, 12.0, -3.0]) {
            assert!((got - want / 35.0).abs() < 1e-12);
        }
        // 5-point first derivative: (-2, -1, 0, 1, 2) / 10.
        let d = polynomial_weights(5, 2, 1, 0.0);
        for (got, want) in d.iter().zip([-2.0, -1.0, 0.0, 1.0, 2.0]) {
            assert!((got - want / 10.0).abs() < 1e-12);
        }
    }

    #[test]
    fn water_bands_and_range_are_dropped() {
        let a = SpectralAxis::new(vec![500.0, 1400.0, 1850.0, 2200.0, 2490.0], None).unwrap();
        let p = Preprocessing {
            band_range_nm: Some((400.0, 2450.0)),
            exclude_water_bands: true,
            ..Default::default()
        };
        let prep = p.for_axis(&a).unwrap();
        assert_eq!(
            prep.apply(&[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap(),
            vec![1.0, 4.0]
        );
    }

    #[test]
    fn continuum_of_a_convex_down_spectrum_is_one() {
        let a = axis(5, 10.0);
        let p = Preprocessing {
            continuum_removal: true,
            ..Default::default()
        };
        // Concave (hull passes through every point) -> all ones; a dip below the chord -> < 1.
        let out = p
            .for_axis(&a)
            .unwrap()
            .apply(&[0.2, 0.5, 0.7, 0.8, 0.85])
            .unwrap();
        assert!(out.iter().all(|v| (v - 1.0).abs() < 1e-6), "{out:?}");
        let out = p
            .for_axis(&a)
            .unwrap()
            .apply(&[0.5, 0.5, 0.25, 0.5, 0.5])
            .unwrap();
        assert_eq!(out, vec![1.0, 1.0, 0.5, 1.0, 1.0]);
    }

    proptest! {
        /// Savitzky-Golay reproduces polynomials up to its order exactly, edges included, and their
        /// first derivative per band step.
        #[test]
        fn savitzky_golay_is_exact_on_polynomials(c0 in -1.0f64..1.0, c1 in -0.1f64..0.1, c2 in -0.01f64..0.01, n in 9usize..40) {
            let a = axis(n, 5.0);
            let y: Vec<f32> = (0..n).map(|i| { let x = i as f64; (c0 + c1 * x + c2 * x * x) as f32 }).collect();
            let smooth = Preprocessing { savitzky_golay: Some(SavitzkyGolay { window: 7, order: 2, derivative: 0 }), ..Default::default() };
            let out = smooth.for_axis(&a).unwrap().apply(&y).unwrap();
            for (o, v) in out.iter().zip(&y) {
                prop_assert!((o - v).abs() < 1e-4);
            }
            let deriv = Preprocessing { savitzky_golay: Some(SavitzkyGolay { window: 7, order: 2, derivative: 1 }), ..Default::default() };
            let out = deriv.for_axis(&a).unwrap().apply(&y).unwrap();
            for (i, o) in out.iter().enumerate() {
                let expected = c1 + 2.0 * c2 * i as f64;
                prop_assert!((*o as f64 - expected).abs() < 1e-4, "band {i}: {o} vs {expected}");
            }
        }

        /// SNV output has mean 0 and sample deviation 1, and ignores offset and gain.
        #[test]
        fn snv_removes_offset_and_gain(values in proptest::collection::vec(0.01f32..1.0, 5..50), gain in 0.5f32..2.0, offset in -0.2f32..0.2) {
            let a = axis(values.len(), 10.0);
            let p = Preprocessing { snv: true, ..Default::default() }.for_axis(&a).unwrap();
            let out = p.apply(&values).unwrap();
            let mean = out.iter().map(|&v| v as f64).sum::<f64>() / out.len() as f64;
            prop_assume!(values.iter().any(|v| (v - values[0]).abs() > 1e-3));
            prop_assert!(mean.abs() < 1e-4);
            let scaled: Vec<f32> = values.iter().map(|v| v * gain + offset).collect();
            let again = p.apply(&scaled).unwrap();
            for (x, y) in out.iter().zip(&again) {
                prop_assert!((x - y).abs() < 1e-3);
            }
        }
    }
}
