//! What `pipeline inspect` shows about a cube, and its RGB quicklook.

use domain::Interleave;

use crate::cube::{Cube, CubeFormat};
use crate::error::{Error, Result};

/// A cube's layout and metadata, for people.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CubeDescription {
    pub data_path: String,
    pub header_path: Option<String>,
    pub driver: String,
    pub lines: usize,
    pub samples: usize,
    pub bands: usize,
    /// GDAL's name of the stored type (UInt16, Float32, ...).
    pub data_type: String,
    pub interleave: Option<String>,
    /// `little-endian (0)`, `big-endian (1)`, or `missing (read as little-endian)`; None for GeoTIFF.
    pub byte_order: Option<String>,
    pub wavelength_min_nm: f64,
    pub wavelength_max_nm: f64,
    pub wavelengths_sorted: bool,
    pub fwhm_known: bool,
    /// Bands the header's `bbl` marks bad (0), when it has one.
    pub bad_bands: Option<Vec<usize>>,
    /// ENVI `reflectance scale factor` (or 1 / the GeoTIFF band scale).
    pub reflectance_scale_factor: Option<f64>,
    pub data_ignore_value: Option<f64>,
    pub crs: Option<String>,
    /// Map units per pixel (x, y).
    pub pixel_size: Option<(f64, f64)>,
}

impl Cube {
    /// Describe the cube's layout and metadata.
    pub fn describe(&self) -> Result<CubeDescription> {
        let dataset = self.dataset();
        let band = dataset
            .map(|d| d.rasterband(1))
            .transpose()
            .map_err(|e| Error::gdal(self.data_path(), "open band 1", e))?;
        let header = self.header();
        let byte_order = match (self.format(), header) {
            (CubeFormat::Envi, Some(h)) => Some(
                match h.big_endian()? {
                    Some(false) => "little-endian (0)",
                    Some(true) => "big-endian (1)",
                    None => "missing (read as little-endian)",
                }
                .to_string(),
            ),
            _ => None,
        };
        let bad_bands = match header {
            Some(h) => h.number_list("bbl", h.bands()?)?.map(|bbl| {
                bbl.iter()
                    .enumerate()
                    .filter(|(_, v)| **v == 0.0)
                    .map(|(b, _)| b + 1)
                    .collect()
            }),
            None => None,
        };
        let (gain, _) = self.gain_offset();
        let reflectance_scale_factor = match (self.format(), header) {
            (CubeFormat::Envi, Some(h)) => h.reflectance_scale_factor()?,
            _ => (gain != 1.0).then(|| 1.0 / gain),
        };
        let data_ignore_value = match header {
            Some(h) => h.data_ignore_value()?,
            None => band.as_ref().and_then(|b| b.no_data_value()),
        };
        let sorted = self.axis().wavelength_nm().windows(2).all(|w| w[0] <= w[1]);
        let (lo, hi) = self.axis().range_nm();
        let georeference = self.georeference();
        Ok(CubeDescription {
            data_path: self.data_path().display().to_string(),
            header_path: self.header_path().map(|p| p.display().to_string()),
            driver: dataset.map_or_else(
                || "ENVI (read directly; GDAL cannot open it)".to_string(),
                |d| d.driver().short_name(),
            ),
            lines: self.lines(),
            samples: self.samples(),
            bands: self.bands(),
            data_type: match (self.format(), header) {
                (CubeFormat::Envi, Some(h)) => envi_type_name(h.data_type()?).to_string(),
                _ => band.map_or_else(|| "unknown".into(), |b| b.band_type().name()),
            },
            interleave: self
                .interleave()
                .map(|i: Interleave| i.as_str().to_string()),
            byte_order,
            wavelength_min_nm: lo,
            wavelength_max_nm: hi,
            wavelengths_sorted: sorted,
            fwhm_known: self.axis().fwhm_nm().is_some(),
            bad_bands,
            reflectance_scale_factor,
            data_ignore_value,
            crs: georeference.map(|g| match g.epsg {
                Some(code) => format!("EPSG:{code}"),
                None => g.crs_wkt.chars().take(60).collect(),
            }),
            pixel_size: georeference.map(|g| (g.pixel_width, g.pixel_height)),
        })
    }

    /// The decimation of a quicklook whose sides stay within `max_side`: every `step`-th line and
    /// sample.
    pub fn quicklook_step(&self, max_side: usize) -> usize {
        self.lines()
            .max(self.samples())
            .div_ceil(max_side.max(1))
            .max(1)
    }

    /// An 8-bit RGB composite of the bands nearest 640, 550 and 460 nm, each stretched between its
    /// 2nd and 98th percentile, decimated so that neither side exceeds `max_side` pixels.
    /// Returns (width, height, row-major RGB bytes).
    pub fn quicklook_rgb(&self, max_side: usize) -> Result<(usize, usize, Vec<u8>)> {
        let targets = [640.0, 550.0, 460.0];
        let bands: Vec<usize> = targets
            .iter()
            .map(|&t| self.axis().nearest_band(t))
            .collect();
        for (&t, &b) in targets.iter().zip(&bands) {
            let found = self.axis().wavelength_nm()[b];
            if (found - t).abs() > 40.0 {
                let (lo, hi) = self.axis().range_nm();
                return Err(Error::invalid(
                    self.data_path(),
                    format!("no band near {t} nm for a true-colour quicklook (nearest {found:.1} nm; the cube covers {lo:.1}-{hi:.1} nm)"),
                ));
            }
        }
        let step = self.quicklook_step(max_side);
        let (height, width) = (self.lines().div_ceil(step), self.samples().div_ceil(step));
        let mut channels: Vec<Vec<f32>> =
            (0..3).map(|_| Vec::with_capacity(width * height)).collect();
        let mut buffer = Vec::new();
        for (first, count) in self.blocks() {
            self.read_block_of_bands(first, count, Some(&bands), &mut buffer)?;
            let plane = count * self.samples();
            for line in (first..first + count).filter(|l| l % step == 0) {
                for sample in (0..self.samples()).step_by(step) {
                    let offset = (line - first) * self.samples() + sample;
                    for (c, channel) in channels.iter_mut().enumerate() {
                        channel.push(buffer[c * plane + offset]);
                    }
                }
            }
        }
        let stretch: Vec<(f32, f32)> = channels
            .iter()
            .map(|values| {
                let mut finite: Vec<f32> =
                    values.iter().copied().filter(|v| v.is_finite()).collect();
                finite.sort_by(f32::total_cmp);
                if finite.is_empty() {
                    return (0.0, 1.0);
                }
                let at = |q: f64| finite[((finite.len() - 1) as f64 * q).round() as usize];
                let (lo, hi) = (at(0.02), at(0.98));
                (lo, if hi > lo { hi } else { lo + 1.0 })
            })
            .collect();
        let rgb: Vec<u8> = (0..width * height)
            .flat_map(|i| {
                stretch
                    .iter()
                    .zip(&channels)
                    .map(move |(&(lo, hi), channel)| {
                        let v = ((channel[i] - lo) / (hi - lo)).clamp(0.0, 1.0);
                        if v.is_finite() {
                            (v * 255.0).round() as u8
                        } else {
                            0
                        }
                    })
            })
            .collect();
        Ok((width, height, rgb))
    }
}

/// GDAL's name of an ENVI data type code.
fn envi_type_name(code: u32) -> &'static str {
    match code {
        1 => "UInt8",
        2 => "Int16",
        3 => "Int32",
        4 => "Float32",
        5 => "Float64",
        12 => "UInt16",
        13 => "UInt32",
        14 => "Int64",
        15 => "UInt64",
        _ => "unknown",
    }
}
