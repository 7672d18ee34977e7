//! A push-broom VNIR + SWIR band set and its Gaussian spectral response.

use domain::SpectralAxis;

/// VNIR 400-1000 nm every 10 nm (FWHM 10 nm) and SWIR 1025-2475 nm every 25 nm (FWHM 25 nm):
/// 120 bands, the layout of a co-registered VNIR/SWIR pair of imagers.
pub fn vnir_swir_axis() -> SpectralAxis {
    let mut wavelength = Vec::new();
    let mut fwhm = Vec::new();
    for i in 0..=60 {
        wavelength.push(400.0 + 10.0 * i as f64);
        fwhm.push(10.0);
    }
    for i in 0..59 {
        wavelength.push(1025.0 + 25.0 * i as f64);
        fwhm.push(25.0);
    }
    SpectralAxis::new(wavelength, Some(fwhm)).expect("fixed band set is valid")
}

/// Convolution weights from a finely sampled spectrum onto the sensor's bands: each band a
/// Gaussian of its FWHM, cut at 3 sigma and at the ends of the fine grid, normalised to sum 1.
#[derive(Debug, Clone)]
pub struct SpectralResponse {
    /// Per band: (first fine index, weights).
    bands: Vec<(usize, Vec<f64>)>,
    fine_len: usize,
}

impl SpectralResponse {
    pub fn new(fine_nm: &[f64], sensor: &SpectralAxis) -> Self {
        let fwhm = sensor
            .fwhm_nm()
            .map(<[f64]>::to_vec)
            .unwrap_or_else(|| vec![1.0; sensor.len()]);
        let bands = sensor
            .wavelength_nm()
            .iter()
            .zip(fwhm)
            .map(|(&centre, width)| {
                let sigma = width / (8.0 * 2f64.ln()).sqrt();
                let first = fine_nm.partition_point(|&w| w < centre - 3.0 * sigma);
                let last = fine_nm.partition_point(|&w| w <= centre + 3.0 * sigma);
                let mut weights: Vec<f64> = fine_nm[first..last]
                    .iter()
                    .map(|&w| (-0.5 * ((w - centre) / sigma).powi(2)).exp())
                    .collect();
                let total: f64 = weights.iter().sum();
                weights.iter_mut().for_each(|w| *w /= total);
                (first, weights)
            })
            .collect();
        Self {
            bands,
            fine_len: fine_nm.len(),
        }
    }

    /// Sensor-band values of one finely sampled spectrum.
    pub fn apply(&self, fine: &[f32]) -> Vec<f64> {
        assert_eq!(fine.len(), self.fine_len, "spectrum on the fine grid");
        self.bands
            .iter()
            .map(|(first, weights)| {
                weights
                    .iter()
                    .zip(&fine[*first..])
                    .map(|(w, &v)| w * v as f64)
                    .sum()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_preserves_linear_spectra_and_constants() {
        let fine: Vec<f64> = (400..=2500).map(f64::from).collect();
        let axis = vnir_swir_axis();
        let response = SpectralResponse::new(&fine, &axis);
        let constant = vec![0.3f32; fine.len()];
        assert!(response
            .apply(&constant)
            .iter()
            .all(|v| (v - 0.3).abs() < 1e-6));
        // A symmetric kernel leaves a linear spectrum's value at the band centre (away from the ends).
        let linear: Vec<f32> = fine.iter().map(|w| (w / 5000.0) as f32).collect();
        let out = response.apply(&linear);
        for (band, &centre) in axis.wavelength_nm().iter().enumerate().skip(3).take(100) {
            assert!(
                (out[band] - centre / 5000.0).abs() < 1e-5,
                "band at {centre}"
            );
        }
    }
}
