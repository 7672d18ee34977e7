//! Radiometric calibration against white and dark reference captures, and band wavelengths from a
//! text file for cubes whose header has none.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::cube::check_envi_geometry;
use crate::envi_header::EnviHeader;
use crate::error::{Error, Result};
use crate::locate::locate;
use crate::raster_io::read_block_f32;

/// White and dark references: reflectance = (raw - dark) / (white - dark).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Calibration {
    /// White reference: a cube or a single-frame capture of the panel, same samples and bands.
    pub white: PathBuf,
    /// Dark reference (shutter closed), same samples and bands.
    pub dark: PathBuf,
    /// Reflectances are clipped to `[0, clip_max]`; the clipped count is reported.
    #[serde(default = "default_clip_max")]
    pub clip_max: f64,
}

fn default_clip_max() -> f64 {
    1.5
}

impl Calibration {
    pub fn new(white: PathBuf, dark: PathBuf) -> Self {
        Self {
            white,
            dark,
            clip_max: default_clip_max(),
        }
    }
}

/// Per (file band, sample) dark level and white - dark span, from references averaged along track.
#[derive(Debug)]
pub(crate) struct CalibrationFrames {
    samples: usize,
    dark: Vec<f32>,
    span: Vec<f32>,
    clip_max: f32,
    clipped: AtomicU64,
    calibrated: AtomicU64,
}

impl CalibrationFrames {
    /// Read both references; each must have the cube's samples and (file) band count.
    pub(crate) fn load(
        calibration: &Calibration,
        cube_data: &Path,
        samples: usize,
        bands: usize,
        block_bytes: usize,
    ) -> Result<Self> {
        let white = mean_frame(&calibration.white, cube_data, samples, bands, block_bytes)?;
        let dark = mean_frame(&calibration.dark, cube_data, samples, bands, block_bytes)?;
        let span: Vec<f32> = white.iter().zip(&dark).map(|(w, d)| w - d).collect();
        let dead = span.iter().filter(|&&s| s.is_nan() || s <= 0.0).count();
        if dead == span.len() {
            return Err(Error::invalid(
                &calibration.white,
                format!(
                    "the white reference is nowhere brighter than the dark reference {}",
                    calibration.dark.display()
                ),
            ));
        }
        if dead > 0 {
            tracing::warn!(
                dead,
                of = span.len(),
                "detector elements (band x sample) with white <= dark: their reflectance is set to 0"
            );
        }
        if calibration.clip_max.is_nan() || calibration.clip_max <= 0.0 {
            return Err(Error::invalid(
                &calibration.white,
                format!("clip maximum {} must be positive", calibration.clip_max),
            ));
        }
        Ok(Self {
            samples,
            dark,
            span,
            clip_max: calibration.clip_max as f32,
            clipped: AtomicU64::new(0),
            calibrated: AtomicU64::new(0),
        })
    }

    /// Calibrate one band's plane of `values` (lines x samples, stored values) in place; no-data
    /// values become NaN.
    pub(crate) fn apply(&self, file_band: usize, values: &mut [f32], ignore: Option<f32>) {
        let row = file_band * self.samples;
        let dark = &self.dark[row..row + self.samples];
        let span = &self.span[row..row + self.samples];
        let mut clipped = 0u64;
        for line in values.chunks_mut(self.samples) {
            for ((v, &d), &w) in line.iter_mut().zip(dark).zip(span) {
                if ignore.is_some_and(|i| *v == i) {
                    *v = f32::NAN;
                    continue;
                }
                let r = if w > 0.0 { (*v - d) / w } else { 0.0 };
                let c = r.clamp(0.0, self.clip_max);
                clipped += u64::from(c != r);
                *v = c;
            }
        }
        self.clipped.fetch_add(clipped, Ordering::Relaxed);
        self.calibrated
            .fetch_add(values.len() as u64, Ordering::Relaxed);
    }

    /// (values clipped, values calibrated) so far.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.clipped.load(Ordering::Relaxed),
            self.calibrated.load(Ordering::Relaxed),
        )
    }
}

/// A reference averaged along track: per (file band, sample), stored values.
fn mean_frame(
    path: &Path,
    cube_data: &Path,
    samples: usize,
    bands: usize,
    block_bytes: usize,
) -> Result<Vec<f32>> {
    let files = locate(path)?;
    let dataset = gdal::Dataset::open(&files.data)
        .map_err(|e| Error::gdal_open(&files.data, "a raster", e))?;
    let (ref_samples, ref_lines) = dataset.raster_size();
    let ref_bands = dataset.raster_count();
    if let Some(header) = files.header.as_deref().map(EnviHeader::read).transpose()? {
        if dataset.driver().short_name() == "ENVI" {
            check_envi_geometry(&header, &files.data, ref_lines, ref_samples, ref_bands)?;
        }
    }
    if (ref_samples, ref_bands) != (samples, bands) {
        return Err(Error::invalid(
            &files.data,
            format!(
                "reference has {ref_samples} samples x {ref_bands} bands, the cube {} has {samples} x {bands}: a reference must match the cube's width and band set",
                cube_data.display()
            ),
        ));
    }
    if ref_lines == 0 {
        return Err(Error::invalid(&files.data, "reference has no lines"));
    }
    let block_lines = (block_bytes / (samples * bands * 4).max(1)).clamp(1, ref_lines);
    let mut sums = vec![0f64; bands * samples];
    let mut buffer = Vec::new();
    for first in (0..ref_lines).step_by(block_lines) {
        let count = block_lines.min(ref_lines - first);
        read_block_f32(&dataset, &files.data, first, count, None, &mut buffer)?;
        for b in 0..bands {
            for l in 0..count {
                let row = &buffer[(b * count + l) * samples..(b * count + l + 1) * samples];
                for (sum, &v) in sums[b * samples..(b + 1) * samples].iter_mut().zip(row) {
                    *sum += f64::from(v);
                }
            }
        }
    }
    Ok(sums
        .into_iter()
        .map(|s| (s / ref_lines as f64) as f32)
        .collect())
}

/// Band wavelengths (and FWHM when given) in nm from a text file: one band per line as
/// `wavelength[,fwhm]` (commas, semicolons, tabs or spaces), or all wavelengths on one line;
/// `#` starts a comment; an optional first line of column names gives the unit (`nm`, `um`,
/// `micrometers`); without one, values all under 30 are micrometres.
pub fn read_wavelength_file(path: &Path, bands: usize) -> Result<(Vec<f64>, Option<Vec<f64>>)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(path, "cannot read the wavelength file", e))?;
    parse_wavelengths(path, &text, bands)
}

/// [`read_wavelength_file`] on text already read; `path` names it in errors.
pub fn parse_wavelengths(
    path: &Path,
    text: &str,
    bands: usize,
) -> Result<(Vec<f64>, Option<Vec<f64>>)> {
    let mut rows: Vec<(usize, Vec<f64>)> = Vec::new();
    let mut unit_factor: Option<f64> = None;
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let tokens: Vec<&str> = line
            .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
            .filter(|t| !t.is_empty())
            .collect();
        if tokens.is_empty() {
            continue; // only separators
        }
        let numbers: Vec<Option<f64>> = tokens
            .iter()
            .map(|t| t.parse::<f64>().ok().filter(|v| v.is_finite()))
            .collect();
        if numbers.iter().all(Option::is_some) {
            rows.push((number + 1, numbers.into_iter().flatten().collect()));
            continue;
        }
        if rows.is_empty() && unit_factor.is_none() && numbers.iter().all(Option::is_none) {
            let names = line.to_lowercase();
            let words: Vec<&str> = names
                .split(|c: char| !c.is_alphanumeric() && c != 'µ')
                .collect();
            let has = |units: &[&str]| words.iter().any(|w| units.contains(w));
            unit_factor = Some(
                if has(&[
                    "um",
                    "µm",
                    "micrometers",
                    "micrometer",
                    "micrometres",
                    "microns",
                    "micron",
                ]) {
                    1000.0
                } else if has(&["nm", "nanometers", "nanometer", "nanometres"]) {
                    1.0
                } else {
                    0.0 // column names without a unit: infer below
                },
            );
            continue;
        }
        let bad = tokens
            .iter()
            .zip(&numbers)
            .find(|(_, n)| n.is_none())
            .map_or("", |(t, _)| *t);
        return Err(Error::invalid(
            path,
            format!("line {}: '{bad}' is not a number", number + 1),
        ));
    }
    let (wavelengths, fwhm): (Vec<f64>, Option<Vec<f64>>) = match rows.as_slice() {
        [] => return Err(Error::invalid(path, "no wavelengths in the file")),
        [(_, single)] if single.len() > 2 || bands <= 2 && single.len() == bands => {
            (single.clone(), None)
        }
        _ => {
            if let Some((line, row)) = rows
                .iter()
                .find(|(_, r)| r.len() > 2 || r.len() != rows[0].1.len())
            {
                return Err(Error::invalid(
                    path,
                    format!(
                        "line {line}: {} values; every line must hold a wavelength, or a wavelength and a FWHM",
                        row.len()
                    ),
                ));
            }
            let wavelengths = rows.iter().map(|(_, r)| r[0]).collect();
            let fwhm = (rows[0].1.len() == 2).then(|| rows.iter().map(|(_, r)| r[1]).collect());
            (wavelengths, fwhm)
        }
    };
    if wavelengths.len() != bands {
        return Err(Error::invalid(
            path,
            format!(
                "{} wavelengths for a cube of {bands} bands",
                wavelengths.len()
            ),
        ));
    }
    let factor = match unit_factor {
        Some(f) if f > 0.0 => f,
        _ => {
            let max = wavelengths.iter().copied().fold(0.0, f64::max);
            if max > 0.0 && max < 30.0 {
                1000.0
            } else {
                1.0
            }
        }
    };
    let scale = |v: Vec<f64>| v.into_iter().map(|x| x * factor).collect::<Vec<_>>();
    Ok((scale(wavelengths), fwhm.map(scale)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, bands: usize) -> Result<(Vec<f64>, Option<Vec<f64>>)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.txt");
        std::fs::write(&path, text).unwrap();
        read_wavelength_file(&path, bands)
    }

    proptest::proptest! {
        /// Any text: a result or an error naming the file, never a panic.
        #[test]
        fn wavelength_files_never_panic(text in "([0-9.,; a-z#_\\-]{0,20}\n){0,8}", bands in 1usize..6) {
            match parse(&text, bands) {
                Ok((w, f)) => {
                    proptest::prop_assert_eq!(w.len(), bands);
                    proptest::prop_assert!(f.is_none_or(|f| f.len() == bands));
                }
                Err(e) => proptest::prop_assert!(e.to_string().contains("w.txt")),
            }
        }
    }

    #[test]
    fn wavelength_files() {
        assert_eq!(
            parse("450\n550\n650\n", 3).unwrap(),
            (vec![450.0, 550.0, 650.0], None)
        );
        assert_eq!(
            parse(
                "# from the vendor sheet\nwavelength_um,fwhm_um\n0.45,0.01\n0.55, 0.012\n",
                2
            )
            .unwrap(),
            (vec![450.0, 550.0], Some(vec![10.0, 12.0]))
        );
        assert_eq!(
            parse("0.4 0.5 0.6 0.7", 4).unwrap().0,
            vec![400.0, 500.0, 600.0, 700.0]
        );
        let err = parse("450\n55O\n", 2).unwrap_err().to_string();
        assert!(
            err.contains("w.txt") && err.contains("line 2") && err.contains("'55O'"),
            "{err}"
        );
        let err = parse("450\n550\n", 3).unwrap_err().to_string();
        assert!(err.contains("2 wavelengths for a cube of 3 bands"), "{err}");
        let err = parse("450,10\n550\n", 2).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(parse("# nothing\n", 2).is_err());
    }
}
