use serde::{Deserialize, Serialize};

use crate::Error;

/// The band centres of a sensor, in nanometres, in file order (not necessarily sorted: spectrometer
/// overlaps put bands out of order), with each band's full width at half maximum when known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpectralAxis {
    wavelength_nm: Vec<f64>,
    fwhm_nm: Option<Vec<f64>>,
}

impl SpectralAxis {
    /// Band centres in file order; each must be finite and positive.
    pub fn new(wavelength_nm: Vec<f64>, fwhm_nm: Option<Vec<f64>>) -> Result<Self, Error> {
        if wavelength_nm.is_empty() {
            return Err(Error::InvalidWavelengths("no bands".into()));
        }
        if let Some((band, value)) = wavelength_nm
            .iter()
            .enumerate()
            .find(|(_, w)| !w.is_finite() || **w <= 0.0)
        {
            return Err(Error::InvalidWavelengths(format!(
                "band {} has wavelength {value}",
                band + 1
            )));
        }
        if let Some(fwhm) = &fwhm_nm {
            if fwhm.len() != wavelength_nm.len() {
                return Err(Error::InvalidWavelengths(format!(
                    "{} fwhm values for {} bands",
                    fwhm.len(),
                    wavelength_nm.len()
                )));
            }
        }
        Ok(Self {
            wavelength_nm,
            fwhm_nm,
        })
    }

    pub fn wavelength_nm(&self) -> &[f64] {
        &self.wavelength_nm
    }

    pub fn fwhm_nm(&self) -> Option<&[f64]> {
        self.fwhm_nm.as_deref()
    }

    pub fn len(&self) -> usize {
        self.wavelength_nm.len()
    }

    pub fn is_empty(&self) -> bool {
        self.wavelength_nm.is_empty()
    }

    /// Shortest and longest band centre.
    pub fn range_nm(&self) -> (f64, f64) {
        self.wavelength_nm
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &w| {
                (lo.min(w), hi.max(w))
            })
    }

    /// Index (in file order) of the band whose centre is nearest to `target_nm`; ties go to the
    /// first in file order. Correct for unsorted axes.
    pub fn nearest_band(&self, target_nm: f64) -> usize {
        let mut best = 0;
        let mut best_distance = f64::INFINITY;
        for (band, &w) in self.wavelength_nm.iter().enumerate() {
            let distance = (w - target_nm).abs();
            if distance < best_distance {
                best = band;
                best_distance = distance;
            }
        }
        best
    }

    /// Whether every band of `target` lies within this axis's range.
    pub fn covers(&self, target: &SpectralAxis) -> bool {
        let (lo, hi) = self.range_nm();
        let (target_lo, target_hi) = target.range_nm();
        target_lo >= lo - 1e-9 && target_hi <= hi + 1e-9
    }

    /// A resampler from this axis to `target`. Never extrapolates: a target band centre outside
    /// this axis's range is an error.
    ///
    /// When `target` gives each band's FWHM and this axis samples finer than half of it, each target
    /// band is the Gaussian spectral response of that FWHM over these bands (cut at 3 sigma and at
    /// this axis's ends, weights scaled by band spacing and normalised): what the target sensor would
    /// have measured. Otherwise, linear interpolation between the two nearest bands (by wavelength,
    /// so unsorted axes work).
    pub fn resampler_to(&self, target: &SpectralAxis) -> Result<Resampler, Error> {
        let (lo, hi) = self.range_nm();
        let (target_lo, target_hi) = target.range_nm();
        if !self.covers(target) {
            return Err(Error::NotCovered {
                source_min_nm: lo,
                source_max_nm: hi,
                target_min_nm: target_lo,
                target_max_nm: target_hi,
            });
        }
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by(|&a, &b| self.wavelength_nm[a].total_cmp(&self.wavelength_nm[b]));
        let sorted_nm: Vec<f64> = order.iter().map(|&i| self.wavelength_nm[i]).collect();
        let mut spacings: Vec<f64> = sorted_nm
            .windows(2)
            .map(|w| w[1] - w[0])
            .filter(|d| *d > 0.0)
            .collect();
        spacings.sort_by(f64::total_cmp);
        let median_spacing = spacings
            .get(spacings.len() / 2)
            .copied()
            .unwrap_or(f64::INFINITY);
        let weights = target
            .wavelength_nm
            .iter()
            .enumerate()
            .map(|(t, &centre)| {
                let fwhm = target.fwhm_nm.as_ref().map(|f| f[t]).filter(|f| *f > 0.0);
                match fwhm {
                    Some(fwhm) if median_spacing < fwhm / 2.0 => {
                        gaussian_weights(&order, &sorted_nm, centre, fwhm)
                    }
                    _ => linear_weights(&order, &sorted_nm, centre),
                }
            })
            .collect();
        Ok(Resampler {
            source_bands: self.len(),
            weights,
        })
    }
}

fn linear_weights(order: &[usize], sorted_nm: &[f64], t: f64) -> Vec<(usize, f64)> {
    // First sorted position whose wavelength is >= t.
    let upper = sorted_nm.partition_point(|&w| w < t);
    if upper < sorted_nm.len() && (sorted_nm[upper] - t).abs() < 1e-9 {
        return vec![(order[upper], 1.0)];
    }
    let (wa, wb) = (sorted_nm[upper - 1], sorted_nm[upper]);
    let fraction = if wb > wa { (t - wa) / (wb - wa) } else { 0.0 };
    vec![(order[upper - 1], 1.0 - fraction), (order[upper], fraction)]
}

fn gaussian_weights(
    order: &[usize],
    sorted_nm: &[f64],
    centre: f64,
    fwhm: f64,
) -> Vec<(usize, f64)> {
    let sigma = fwhm / (8.0 * 2f64.ln()).sqrt();
    let first = sorted_nm.partition_point(|&w| w < centre - 3.0 * sigma);
    let last = sorted_nm.partition_point(|&w| w <= centre + 3.0 * sigma);
    let n = sorted_nm.len();
    let mut weights: Vec<(usize, f64)> = (first..last)
        .map(|k| {
            // Width of the wavelength interval this band stands for (half-way to its neighbours).
            let left = if k > 0 {
                (sorted_nm[k] - sorted_nm[k - 1]) / 2.0
            } else {
                0.0
            };
            let right = if k + 1 < n {
                (sorted_nm[k + 1] - sorted_nm[k]) / 2.0
            } else {
                0.0
            };
            let width = (left + right).max(1e-9);
            (
                order[k],
                (-0.5 * ((sorted_nm[k] - centre) / sigma).powi(2)).exp() * width,
            )
        })
        .collect();
    let total: f64 = weights.iter().map(|(_, w)| w).sum();
    if weights.is_empty() || total <= 0.0 {
        return linear_weights(order, sorted_nm, centre);
    }
    weights.iter_mut().for_each(|(_, w)| *w /= total);
    weights
}

/// Maps spectra from one band set to another; see [`SpectralAxis::resampler_to`].
#[derive(Debug, Clone)]
pub struct Resampler {
    source_bands: usize,
    /// Per target band: (source band, weight) pairs summing to 1.
    weights: Vec<Vec<(usize, f64)>>,
}

impl Resampler {
    /// Whether the mapping is the identity (same bands, same order).
    pub fn is_identity(&self) -> bool {
        self.weights.len() == self.source_bands
            && self
                .weights
                .iter()
                .enumerate()
                .all(|(i, w)| w.as_slice() == [(i, 1.0)])
    }

    /// Resample one spectrum.
    pub fn apply(&self, spectrum: &[f32]) -> Result<Vec<f32>, Error> {
        let mut out = Vec::with_capacity(self.weights.len());
        self.apply_into(spectrum, &mut out)?;
        Ok(out)
    }

    /// Resample one spectrum, appending the result to `out` (no allocation when it has room).
    pub fn apply_into(&self, spectrum: &[f32], out: &mut Vec<f32>) -> Result<(), Error> {
        if spectrum.len() != self.source_bands {
            return Err(Error::LengthMismatch {
                expected: self.source_bands,
                got: spectrum.len(),
            });
        }
        out.extend(
            self.weights
                .iter()
                .map(|w| w.iter().map(|&(b, x)| x * spectrum[b] as f64).sum::<f64>() as f32),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The identity resampler (the model's own bands) gives back every value bit for bit, so a
    /// caller may skip it: zeros of both signs, subnormals, extremes.
    #[test]
    fn identity_resampling_returns_the_values_unchanged() {
        let axis = SpectralAxis::new(vec![400.0, 500.0, 600.0, 700.0, 800.0, 900.0], None).unwrap();
        let resampler = axis.resampler_to(&axis).unwrap();
        assert!(resampler.is_identity());
        let values = [-0.0, 0.0, 1e-45, -3.4e38, 0.123_456_79, f32::MAX];
        let out = resampler.apply(&values).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&out), bits(&values));
        let shifted = SpectralAxis::new(vec![450.0, 500.0, 600.0], None).unwrap();
        assert!(!axis.resampler_to(&shifted).unwrap().is_identity());
    }

    #[test]
    fn nearest_band_in_unsorted_axis() {
        let axis = SpectralAxis::new(vec![900.0, 400.0, 670.0, 680.0, 800.0], None).unwrap();
        assert_eq!(axis.nearest_band(672.0), 2);
        assert_eq!(axis.nearest_band(810.0), 4);
        assert_eq!(axis.nearest_band(100.0), 1);
    }

    #[test]
    fn resampling_refuses_to_extrapolate() {
        let source = SpectralAxis::new(vec![500.0, 600.0, 700.0], None).unwrap();
        let target = SpectralAxis::new(vec![450.0, 650.0], None).unwrap();
        let err = source.resampler_to(&target).unwrap_err();
        assert!(err.to_string().contains("do not cover"), "{err}");
    }

    #[test]
    fn gaussian_response_when_fwhm_is_known() {
        // 1 nm source, a 10 nm-FWHM target band: a linear spectrum keeps its centre value; a
        // narrow spike is spread out.
        let source = SpectralAxis::new((400..=700).map(f64::from).collect(), None).unwrap();
        let target = SpectralAxis::new(vec![550.0], Some(vec![10.0])).unwrap();
        let r = source.resampler_to(&target).unwrap();
        let linear: Vec<f32> = (400..=700).map(|w| w as f32 / 1000.0).collect();
        assert!((r.apply(&linear).unwrap()[0] - 0.55).abs() < 1e-6);
        let mut spike = vec![0f32; 301];
        spike[150] = 1.0;
        let sigma = 10.0 / (8.0 * 2f64.ln()).sqrt();
        let peak = r.apply(&spike).unwrap()[0] as f64;
        let expected = 1.0 / (sigma * (2.0 * std::f64::consts::PI).sqrt());
        assert!((peak - expected).abs() < 1e-3, "{peak} vs {expected}");
        // Coarse source (20 nm) for a 10 nm band: linear interpolation instead.
        let coarse =
            SpectralAxis::new((0..16).map(|i| 400.0 + 20.0 * i as f64).collect(), None).unwrap();
        let r = coarse.resampler_to(&target).unwrap();
        let values: Vec<f32> = (0..16).map(|i| i as f32).collect();
        assert!((r.apply(&values).unwrap()[0] - 7.5).abs() < 1e-6);
    }

    proptest! {
        /// A linear function of wavelength is reproduced exactly by linear interpolation, whatever the
        /// order of the source bands.
        #[test]
        fn linear_spectra_resample_exactly(
            mut source_nm in proptest::collection::btree_set(400u32..2500, 3..40),
            slope in -1.0f64..1.0,
            intercept in -5.0f64..5.0,
            shuffle_seed in 0u64..1000,
            fractions in proptest::collection::vec(0.0f64..1.0, 1..20),
        ) {
            let mut nm: Vec<f64> = std::mem::take(&mut source_nm).into_iter().map(f64::from).collect();
            // Deterministic shuffle.
            let mut state = shuffle_seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            for i in (1..nm.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                nm.swap(i, (state >> 33) as usize % (i + 1));
            }
            let (lo, hi) = nm.iter().fold((f64::MAX, f64::MIN), |(a, b), &w| (a.min(w), b.max(w)));
            let target_nm: Vec<f64> = fractions.iter().map(|f| lo + f * (hi - lo)).collect();
            let source = SpectralAxis::new(nm.clone(), None).unwrap();
            let target = SpectralAxis::new(target_nm.clone(), None).unwrap();
            let spectrum: Vec<f32> = nm.iter().map(|w| (slope * w / 1000.0 + intercept) as f32).collect();
            let out = source.resampler_to(&target).unwrap().apply(&spectrum).unwrap();
            for (t, v) in target_nm.iter().zip(out) {
                let expected = slope * t / 1000.0 + intercept;
                prop_assert!((v as f64 - expected).abs() < 1e-4, "{t}: {v} vs {expected}");
            }
        }
    }
}
