/// Errors of the domain types' own checks.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A wavelength list that cannot describe a sensor.
    #[error("invalid wavelengths: {0}")]
    InvalidWavelengths(String),
    /// The source bands do not cover a wavelength the target needs; resampling never extrapolates.
    #[error(
        "wavelengths {source_min_nm:.1}-{source_max_nm:.1} nm do not cover {target_min_nm:.1}-{target_max_nm:.1} nm"
    )]
    NotCovered {
        source_min_nm: f64,
        source_max_nm: f64,
        target_min_nm: f64,
        target_max_nm: f64,
    },
    /// A spectrum whose length is not the band count of its axis.
    #[error("spectrum has {got} values, the spectral axis has {expected} bands")]
    LengthMismatch { expected: usize, got: usize },
    /// A preprocessing chain that cannot apply.
    #[error("invalid preprocessing: {0}")]
    InvalidPreprocessing(String),
    /// Class codes or names that repeat.
    #[error("invalid class set: {0}")]
    InvalidClasses(String),
}
