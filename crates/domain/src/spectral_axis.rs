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

    /// A resampler from this axis to `target` by linear interpolation between the two nearest
    /// source bands (sorted by wavelength, so unsorted axes work). Never extrapolates: a target band
    /// outside this axis's range is an error.
    pub fn resampler_to(&self, target: &SpectralAxis) -> Result<LinearResampler, Error> {
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
        let weights = target
            .wavelength_nm
            .iter()
            .map(|&t| {
                // First sorted position whose wavelength is >= t.
                let upper = order.partition_point(|&i| self.wavelength_nm[i] < t);
                if upper < order.len() && (self.wavelength_nm[order[upper]] - t).abs() < 1e-9 {
                    return (order[upper], order[upper], 1.0);
                }
                let (a, b) = (order[upper - 1], order[upper]);
                let (wa, wb) = (self.wavelength_nm[a], self.wavelength_nm[b]);
                let fraction = if wb > wa { (t - wa) / (wb - wa) } else { 0.0 };
                (a, b, 1.0 - fraction)
            })
            .collect();
        Ok(LinearResampler {
            source_bands: self.len(),
            weights,
        })
    }
}

/// Maps spectra from one band set to another; see [`SpectralAxis::resampler_to`].
#[derive(Debug, Clone)]
pub struct LinearResampler {
    source_bands: usize,
    /// Per target band: (source band a, source band b, weight of a); b gets 1 - weight.
    weights: Vec<(usize, usize, f64)>,
}

impl LinearResampler {
    /// Whether the mapping is the identity (same bands, same order).
    pub fn is_identity(&self) -> bool {
        self.weights.len() == self.source_bands
            && self
                .weights
                .iter()
                .enumerate()
                .all(|(i, &(a, b, w))| a == i && b == i && w == 1.0)
    }

    /// Resample one spectrum.
    pub fn apply(&self, spectrum: &[f32]) -> Result<Vec<f32>, Error> {
        if spectrum.len() != self.source_bands {
            return Err(Error::LengthMismatch {
                expected: self.source_bands,
                got: spectrum.len(),
            });
        }
        Ok(self
            .weights
            .iter()
            .map(|&(a, b, w)| (w * spectrum[a] as f64 + (1.0 - w) * spectrum[b] as f64) as f32)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
