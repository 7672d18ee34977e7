//! An open hyperspectral cube: metadata resolved once, pixels read in blocks of lines.

use std::path::{Path, PathBuf};
use std::sync::Once;

use domain::{GeoReference, Interleave, SpectralAxis};
use gdal::Metadata;

use crate::calibration::{read_wavelength_file, Calibration, CalibrationFrames};
use crate::envi_header::EnviHeader;
use crate::error::{Error, Result};
use crate::locate::{locate, RasterFiles};
use crate::raster_io::read_block_f32;
use crate::raw_envi::RawEnvi;

/// How reading is done; owned by this crate, filled in by the caller.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ReadConfig {
    /// Upper bound on the f32 block buffer, in bytes; sets how many lines are read at once.
    pub block_bytes: usize,
    /// Band wavelengths from a text file (see [`read_wavelength_file`]), for cubes whose header
    /// has none; they replace the cube's own when given.
    pub wavelengths: Option<PathBuf>,
    /// Raw cube to reflectance with white and dark references.
    pub calibration: Option<Calibration>,
    /// How ENVI pixels are read (metadata always comes from the header and GDAL).
    pub envi_reader: EnviReader,
}

/// The reader of ENVI pixel data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnviReader {
    /// Positioned reads and our own decoding (all data types, fastest).
    #[default]
    Raw,
    /// GDAL's ENVI driver (data types 1-5, 12, 13 in GDAL 3.6).
    Gdal,
}

impl Default for ReadConfig {
    /// 8 MiB blocks: a few lines of a typical push-broom cube, small enough that a block stays in
    /// cache between reading and accumulating it (64 MiB blocks were 1.2-4x slower, see
    /// `scripts/bench-ingest`).
    fn default() -> Self {
        Self {
            block_bytes: 8 << 20,
            wavelengths: None,
            calibration: None,
            envi_reader: EnviReader::Raw,
        }
    }
}

/// The file format a cube was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CubeFormat {
    Envi,
    GeoTiff,
    /// Any other raster GDAL opens, with wavelengths from band metadata.
    Other,
}

/// A cube opened for reading. Reflectance = stored value * `gain` (1 / `reflectance scale
/// factor` for ENVI; the band scale for GeoTIFF).
#[derive(Debug)]
pub struct Cube {
    /// File band (0-based) of each exposed band, when bad bands were dropped.
    band_map: Option<Vec<usize>>,
    /// Stored value marking pixels without data (ENVI `data ignore value`, GDAL nodata).
    ignore_value: Option<f64>,
    files: RasterFiles,
    header: Option<EnviHeader>,
    /// GDAL's view of the file; absent for ENVI files GDAL cannot open (64-bit integer types).
    dataset: Option<gdal::Dataset>,
    /// Direct reader of ENVI data, when used.
    raw: Option<RawEnvi>,
    format: CubeFormat,
    lines: usize,
    samples: usize,
    axis: SpectralAxis,
    gain: f64,
    offset: f64,
    interleave: Option<Interleave>,
    georeference: Option<GeoReference>,
    block_lines: usize,
    calibration: Option<CalibrationFrames>,
}

static GDAL_ERRORS_TO_TRACING: Once = Once::new();

/// Send GDAL's own messages to tracing instead of stderr; errors reach the user through our types.
/// GDAL's block cache is capped at 256 MB unless the user set `GDAL_CACHEMAX` (its default, 5% of
/// RAM, let a streamed cube grow the process by over a GB).
fn route_gdal_messages() {
    GDAL_ERRORS_TO_TRACING.call_once(|| {
        if std::env::var_os("GDAL_CACHEMAX").is_none() {
            if let Err(e) = gdal::config::set_config_option("GDAL_CACHEMAX", "256") {
                tracing::debug!(error = %e, "could not cap GDAL's cache");
            }
        }
        gdal::config::set_error_handler(|class, number, message| {
            tracing::debug!(?class, number, message, "gdal");
        });
    });
}

impl Cube {
    /// Open a cube from its ENVI header, ENVI data file or GeoTIFF.
    pub fn open(path: &Path, config: &ReadConfig) -> Result<Self> {
        route_gdal_messages();
        let mut files = locate(path)?;
        let mut header = files.header.as_deref().map(EnviHeader::read).transpose()?;
        let is_tiff = files
            .data
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("tif") || e.eq_ignore_ascii_case("tiff"));
        let dataset = match gdal::Dataset::open(&files.data) {
            Ok(dataset) => Some(dataset),
            // GDAL 3.6's ENVI driver refuses data types 14 and 15: our reader takes them.
            Err(e) if header.is_some() && !is_tiff => {
                tracing::warn!(data = %files.data.display(), error = %e, "gdal cannot open this ENVI file: pixels read directly, without georeference");
                None
            }
            Err(e) => return Err(Error::gdal_open(&files.data, "a raster", e)),
        };
        let format = match (dataset.as_ref().map(|d| d.driver().short_name()), &header) {
            (Some(driver), _) if driver == "ENVI" => CubeFormat::Envi,
            (Some(driver), _) if driver == "GTiff" => CubeFormat::GeoTiff,
            (Some(_), _) => CubeFormat::Other,
            (None, _) => CubeFormat::Envi,
        };
        let (samples, lines, bands) = match (&dataset, &header, format) {
            (_, Some(h), CubeFormat::Envi) => (h.samples()?, h.lines()?, h.bands()?),
            (Some(d), _, _) => {
                let (samples, lines) = d.raster_size();
                (samples, lines, d.raster_count())
            }
            (None, _, _) => unreachable!("no dataset only for ENVI"),
        };
        let driver = dataset
            .as_ref()
            .map_or_else(|| "raw ENVI".to_string(), |d| d.driver().short_name());
        if lines == 0 || samples == 0 || bands == 0 {
            return Err(Error::invalid(
                &files.data,
                format!("empty cube: {lines} lines, {samples} samples, {bands} bands"),
            ));
        }
        let mut cube_gain = 1.0;
        let mut cube_offset = 0.0;
        let mut interleave = None;
        let mut raw = None;
        let (wavelengths, fwhm) = match (header.clone(), format, &dataset) {
            (Some(h), CubeFormat::Envi, _) => {
                if let Some(d) = &dataset {
                    let (gdal_samples, gdal_lines) = d.raster_size();
                    check_envi_geometry(
                        &h,
                        &files.data,
                        gdal_lines,
                        gdal_samples,
                        d.raster_count(),
                    )?;
                } else {
                    check_envi_geometry(&h, &files.data, lines, samples, bands)?;
                }
                interleave = Some(h.interleave()?);
                if dataset.is_none() || config.envi_reader == EnviReader::Raw {
                    raw = Some(RawEnvi::open(
                        &files.data,
                        h.header_offset()?.unwrap_or(0),
                        (lines, samples, bands),
                        h.interleave()?,
                        h.data_type()?,
                        h.big_endian()?.unwrap_or(false),
                    )?);
                }
                if let Some(factor) = h.reflectance_scale_factor()? {
                    cube_gain = 1.0 / factor;
                }
                (h.wavelengths_nm(bands)?, h.fwhm_nm(bands)?)
            }
            (_, _, None) => unreachable!("no dataset only for ENVI"),
            (_, _, Some(dataset)) => {
                let (gain, offset) = band_scale(dataset, &files.data)?;
                cube_gain = gain;
                cube_offset = offset;
                match band_wavelengths(dataset, &files.data, bands)? {
                    (Some(w), f) => {
                        // The band metadata has the wavelengths: a `.hdr` beside the file is not
                        // this raster's (e.g. the ENVI copy of the same scan).
                        header = None;
                        files.header = None;
                        (Some(w), f)
                    }
                    // A GeoTIFF without wavelengths may have an ENVI-style sidecar header.
                    (None, _) => match &header {
                        Some(h) => (h.wavelengths_nm(bands)?, h.fwhm_nm(bands)?),
                        None => (None, None),
                    },
                }
            }
        };
        let (wavelengths, fwhm) = match &config.wavelengths {
            Some(file) => {
                let (w, f) = read_wavelength_file(file, bands)?;
                if wavelengths.is_some() {
                    tracing::info!(file = %file.display(), "the cube's own wavelengths are replaced by the wavelength file");
                }
                (Some(w), f)
            }
            None => (wavelengths, fwhm),
        };
        let wavelengths = wavelengths.ok_or_else(|| {
            Error::field(
                files.header.as_deref().unwrap_or(&files.data),
                "wavelength",
                "missing: the cube's band wavelengths are needed (give them with --wavelengths FILE)",
            )
        })?;
        // Bad bands (ENVI `bbl` = 0) are dropped: the cube exposes only the good ones.
        let good_bands: Vec<usize> = match &header {
            Some(h) => match h.number_list("bbl", bands)? {
                Some(bbl) => (0..bands).filter(|&b| bbl[b] != 0.0).collect(),
                None => (0..bands).collect(),
            },
            None => (0..bands).collect(),
        };
        if good_bands.is_empty() {
            return Err(Error::field(
                files.header.as_deref().unwrap_or(&files.data),
                "bbl",
                "marks every band bad",
            ));
        }
        if good_bands.len() < bands {
            let dropped: Vec<String> = (0..bands)
                .filter(|b| !good_bands.contains(b))
                .map(|b| (b + 1).to_string())
                .collect();
            tracing::info!(dropped = dropped.len(), bands = %dropped.join(","), "bad bands (bbl) dropped");
        }
        let keep = |values: Vec<f64>| good_bands.iter().map(|&b| values[b]).collect::<Vec<_>>();
        let fwhm = fwhm.map(keep);
        let axis = SpectralAxis::new(keep(wavelengths), fwhm).map_err(|source| Error::Domain {
            path: files.data.clone(),
            source,
        })?;
        let ignore_value = match &header {
            Some(h) => h.data_ignore_value()?,
            None => dataset
                .as_ref()
                .and_then(|d| d.rasterband(1).ok())
                .and_then(|b| b.no_data_value()),
        };
        let georeference = dataset.as_ref().and_then(georeference);
        let calibration = config
            .calibration
            .as_ref()
            .map(|c| CalibrationFrames::load(c, &files.data, samples, bands, config.block_bytes))
            .transpose()?;
        let line_bytes = samples * bands * std::mem::size_of::<f32>();
        let block_lines = (config.block_bytes / line_bytes.max(1)).clamp(1, lines);
        tracing::debug!(
            data = %files.data.display(),
            lines, samples, bands, driver, block_lines, "cube opened"
        );
        let band_map = (good_bands.len() < bands).then_some(good_bands);
        Ok(Self {
            band_map,
            ignore_value,
            files,
            header,
            dataset,
            raw,
            format,
            lines,
            samples,
            axis,
            gain: cube_gain,
            offset: cube_offset,
            interleave,
            georeference,
            block_lines,
            calibration,
        })
    }

    pub fn data_path(&self) -> &Path {
        &self.files.data
    }

    pub fn header_path(&self) -> Option<&Path> {
        self.files.header.as_deref()
    }

    /// The parsed ENVI header, when the cube has one.
    pub fn header(&self) -> Option<&EnviHeader> {
        self.header.as_ref()
    }

    /// GDAL's dataset, absent for ENVI files GDAL cannot open.
    pub(crate) fn dataset(&self) -> Option<&gdal::Dataset> {
        self.dataset.as_ref()
    }

    /// The no-data marker as reflectance (as it appears in blocks read), when the cube has one.
    /// Calibrated cubes read no-data pixels as NaN instead.
    pub fn ignore_reflectance(&self) -> Option<f32> {
        if self.calibration.is_some() {
            return None;
        }
        self.ignore_value
            .map(|v| (v * self.gain + self.offset) as f32)
    }

    /// Acquisition date (YYYY-MM-DD): ENVI `acquisition time` (ISO 8601), else GDAL's
    /// `TIFFTAG_DATETIME` (`YYYY:MM:DD HH:MM:SS`) or `ACQUISITIONDATETIME` metadata.
    pub fn acquisition_date(&self) -> Option<String> {
        let from_header = self
            .header
            .as_ref()
            .and_then(|h| {
                h.get("acquisition time")
                    .or_else(|| h.get("acquisition date"))
            })
            .map(str::to_string);
        let from_gdal = || {
            let dataset = self.dataset.as_ref()?;
            [
                "TIFFTAG_DATETIME",
                "ACQUISITIONDATETIME",
                "ACQUISITION_DATE",
            ]
            .iter()
            .find_map(|key| dataset.metadata_item(key, ""))
        };
        from_header
            .or_else(from_gdal)
            .and_then(|text| iso_date(&text))
    }

    /// With white/dark calibration: (values clipped to the sane range, values calibrated) so far.
    pub fn calibration_counts(&self) -> Option<(u64, u64)> {
        self.calibration.as_ref().map(CalibrationFrames::counts)
    }

    /// Stored value -> reflectance: value * gain + offset.
    pub fn gain_offset(&self) -> (f64, f64) {
        (self.gain, self.offset)
    }

    pub fn format(&self) -> CubeFormat {
        self.format
    }

    pub fn lines(&self) -> usize {
        self.lines
    }

    pub fn samples(&self) -> usize {
        self.samples
    }

    pub fn bands(&self) -> usize {
        self.axis.len()
    }

    pub fn axis(&self) -> &SpectralAxis {
        &self.axis
    }

    pub fn interleave(&self) -> Option<Interleave> {
        self.interleave
    }

    pub fn georeference(&self) -> Option<&GeoReference> {
        self.georeference.as_ref()
    }

    /// Lines per block read.
    pub fn block_lines(&self) -> usize {
        self.block_lines
    }

    /// Blocks of lines covering the cube, in order: (first line, line count).
    pub fn blocks(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.lines)
            .step_by(self.block_lines)
            .map(|first| (first, self.block_lines.min(self.lines - first)))
    }

    /// Reflectance of lines `first_line..first_line + line_count`, band sequential into `buffer`:
    /// (band b, line l, sample s) at `(b * line_count + l) * samples + s`.
    pub fn read_block(
        &self,
        first_line: usize,
        line_count: usize,
        buffer: &mut Vec<f32>,
    ) -> Result<()> {
        self.read_block_of_bands(first_line, line_count, None, buffer)
    }

    /// The raw ENVI reader with its map, when the parallel scans apply: no calibration (it
    /// needs reflectance, not stored values).
    pub(crate) fn scan_reader(&self) -> Option<&RawEnvi> {
        self.raw
            .as_ref()
            .filter(|raw| raw.is_mapped() && self.calibration.is_none())
    }

    /// File band (0-based) of exposed band `band`.
    pub(crate) fn file_band(&self, band: usize) -> usize {
        self.band_map.as_ref().map_or(band, |map| map[band])
    }

    /// Whether [`Cube::read_block_pixel_major`] works: a BIP ENVI file read directly, every band
    /// kept, no calibration. Pixel-major blocks need no transposition.
    pub fn reads_pixel_major(&self) -> bool {
        self.raw.as_ref().is_some_and(RawEnvi::is_bip)
            && self.band_map.is_none()
            && self.calibration.is_none()
    }

    /// Reflectance of lines `first_line..first_line + line_count`, pixel-major: (pixel p of the
    /// block in line order, band b) at `p * bands + b`. Only where [`Cube::reads_pixel_major`].
    pub fn read_block_pixel_major(
        &self,
        first_line: usize,
        line_count: usize,
        buffer: &mut Vec<f32>,
    ) -> Result<()> {
        match &self.raw {
            Some(raw) if self.reads_pixel_major() => raw.read_block_pixel_major(
                first_line,
                line_count,
                (self.gain as f32, self.offset as f32),
                buffer,
            ),
            _ => Err(Error::invalid(
                &self.files.data,
                "pixel-major reads need a BIP ENVI file without bad bands or calibration",
            )),
        }
    }

    /// Like [`Cube::read_block`] for a subset of bands (0-based, in the order given).
    pub fn read_block_of_bands(
        &self,
        first_line: usize,
        line_count: usize,
        bands: Option<&[usize]>,
        buffer: &mut Vec<f32>,
    ) -> Result<()> {
        self.read_bands(first_line, line_count, bands, false, buffer)
    }

    /// Like [`Cube::read_block`], the stored values (before gain and offset) of an uncalibrated
    /// cube.
    pub(crate) fn read_block_stored(
        &self,
        first_line: usize,
        line_count: usize,
        buffer: &mut Vec<f32>,
    ) -> Result<()> {
        if self.calibration.is_some() {
            return Err(Error::invalid(
                &self.files.data,
                "stored values of a calibrated cube are not reflectance",
            ));
        }
        self.read_bands(first_line, line_count, None, true, buffer)
    }

    /// Whether a white/dark calibration turns stored values into reflectance.
    pub(crate) fn is_calibrated(&self) -> bool {
        self.calibration.is_some()
    }

    /// Whether stored values are integers of at most 16 bits (exact in f32 and in exact sums).
    pub(crate) fn small_integer_data(&self) -> bool {
        use gdal::raster::GdalDataType as T;
        match (&self.raw, &self.header, &self.dataset) {
            (Some(_), Some(h), _) => matches!(h.data_type(), Ok(1 | 2 | 12)),
            (None, _, Some(d)) => d
                .rasterband(1)
                .is_ok_and(|b| matches!(b.band_type(), T::UInt8 | T::UInt16 | T::Int16)),
            _ => false,
        }
    }

    fn read_bands(
        &self,
        first_line: usize,
        line_count: usize,
        bands: Option<&[usize]>,
        stored: bool,
        buffer: &mut Vec<f32>,
    ) -> Result<()> {
        // Exposed band numbers -> file band numbers.
        let mapped: Option<Vec<usize>> = match (&self.band_map, bands) {
            (None, _) => None,
            (Some(map), None) => Some(map.clone()),
            (Some(map), Some(bands)) => {
                if let Some(&bad) = bands.iter().find(|&&b| b >= map.len()) {
                    return Err(Error::invalid(
                        &self.files.data,
                        format!("band {} does not exist ({} good bands)", bad + 1, map.len()),
                    ));
                }
                Some(bands.iter().map(|&b| map[b]).collect())
            }
        };
        let bands = mapped.as_deref().or(bands);
        // Calibration works on stored values; otherwise the scale is applied while decoding.
        let scale = if self.calibration.is_some() || stored {
            (1.0, 0.0)
        } else {
            (self.gain as f32, self.offset as f32)
        };
        match (&self.raw, &self.dataset) {
            (Some(raw), _) => raw.read_block(first_line, line_count, bands, scale, buffer)?,
            (None, Some(dataset)) => {
                read_block_f32(
                    dataset,
                    &self.files.data,
                    first_line,
                    line_count,
                    bands,
                    buffer,
                )?;
                if scale != (1.0, 0.0) {
                    let (gain, offset) = scale;
                    buffer.iter_mut().for_each(|v| *v = *v * gain + offset);
                }
            }
            (None, None) => unreachable!("a cube has a reader"),
        }
        if let Some(frames) = &self.calibration {
            // Stored values against the references: any scale factor cancels in the ratio.
            let plane = line_count * self.samples;
            let ignore = self.ignore_value.map(|v| v as f32);
            for (i, values) in buffer.chunks_mut(plane).enumerate() {
                let file_band = bands.map_or(i, |b| b[i]);
                frames.apply(file_band, values, ignore);
            }
            return Ok(());
        }
        Ok(())
    }
}

/// The header's size fields must agree with what GDAL opened, and the data file must be long enough.
pub(crate) fn check_envi_geometry(
    header: &EnviHeader,
    data: &Path,
    lines: usize,
    samples: usize,
    bands: usize,
) -> Result<()> {
    let (h_lines, h_samples, h_bands) = (header.lines()?, header.samples()?, header.bands()?);
    if (h_lines, h_samples, h_bands) != (lines, samples, bands) {
        return Err(Error::invalid(
            header.path(),
            format!(
                "header says {h_lines} lines x {h_samples} samples x {h_bands} bands, gdal read {lines} x {samples} x {bands}"
            ),
        ));
    }
    let value_bytes = match header.data_type()? {
        1 => 1,
        2 | 12 => 2,
        3 | 4 | 13 => 4,
        _ => 8,
    };
    if header.big_endian()?.is_none() {
        tracing::warn!(header = %header.path().display(), "no 'byte order' in header: reading as little-endian (0)");
    }
    let offset = header.header_offset()?.unwrap_or(0);
    let expected = lines
        .checked_mul(samples)
        .and_then(|v| v.checked_mul(bands))
        .and_then(|v| v.checked_mul(value_bytes))
        .and_then(|v| u64::try_from(v).ok())
        .and_then(|v| v.checked_add(offset as u64))
        .ok_or_else(|| {
            Error::invalid(
                header.path(),
                format!("{lines} lines x {samples} samples x {bands} bands of {value_bytes} bytes (offset {offset}) is more data than a file can hold"),
            )
        })?;
    let actual = std::fs::metadata(data)
        .map_err(|e| Error::io(data, "cannot stat data file", e))?
        .len();
    if actual < expected {
        return Err(Error::invalid(
            data,
            format!("data file is {actual} bytes, the header implies {expected} (offset {offset} + {lines} x {samples} x {bands} x {value_bytes})"),
        ));
    }
    Ok(())
}

/// Wavelengths and FWHM in nm, each when known.
type BandWavelengths = (Option<Vec<f64>>, Option<Vec<f64>>);

/// Wavelengths from band metadata (`wavelength` + `wavelength_units`, as GDAL's ENVI and GTiff
/// drivers write them) and `fwhm` when present.
fn band_wavelengths(dataset: &gdal::Dataset, path: &Path, bands: usize) -> Result<BandWavelengths> {
    let mut wavelengths = Vec::with_capacity(bands);
    let mut fwhm = Vec::with_capacity(bands);
    for b in 1..=bands {
        let band = dataset
            .rasterband(b)
            .map_err(|e| Error::gdal(path, "open a band", e))?;
        let Some(value) = band.metadata_item("wavelength", "") else {
            return Ok((None, None));
        };
        let parse = |text: &str, field: &str| {
            text.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| {
                    Error::field(path, field, format!("band {b}: '{text}' is not a number"))
                })
        };
        let units = band
            .metadata_item("wavelength_units", "")
            .unwrap_or_default()
            .to_lowercase();
        let factor = match units.trim() {
            "micrometers" | "micrometer" | "um" | "µm" | "microns" => 1000.0,
            "" | "nanometers" | "nanometer" | "nm" => 1.0,
            other => {
                return Err(Error::field(
                    path,
                    "wavelength_units",
                    format!("band {b}: '{other}' is not a wavelength unit"),
                ))
            }
        };
        wavelengths.push(parse(&value, "wavelength")? * factor);
        if let Some(value) = band.metadata_item("fwhm", "") {
            fwhm.push(parse(&value, "fwhm")? * factor);
        }
    }
    let fwhm = (fwhm.len() == bands).then_some(fwhm);
    Ok((Some(wavelengths), fwhm))
}

/// GDAL band scale and offset (physical = raw * scale + offset); all bands must agree.
fn band_scale(dataset: &gdal::Dataset, path: &Path) -> Result<(f64, f64)> {
    let first = dataset
        .rasterband(1)
        .map_err(|e| Error::gdal(path, "open band 1", e))?;
    let scale = first.scale().unwrap_or(1.0);
    let offset = first.offset().unwrap_or(0.0);
    for b in 2..=dataset.raster_count() {
        let band = dataset
            .rasterband(b)
            .map_err(|e| Error::gdal(path, "open a band", e))?;
        if band.scale().unwrap_or(1.0) != scale || band.offset().unwrap_or(0.0) != offset {
            return Err(Error::invalid(path, format!("band {b} has another scale/offset than band 1; per-band scales are not supported")));
        }
    }
    Ok((scale, offset))
}

fn georeference(dataset: &gdal::Dataset) -> Option<GeoReference> {
    let transform = dataset.geo_transform().ok()?;
    if transform[2] != 0.0 || transform[4] != 0.0 {
        return None;
    }
    let spatial_ref = dataset.spatial_ref().ok()?;
    Some(GeoReference {
        origin_x: transform[0],
        origin_y: transform[3],
        pixel_width: transform[1],
        pixel_height: -transform[5],
        epsg: spatial_ref
            .auth_code()
            .ok()
            .and_then(|c| u32::try_from(c).ok()),
        crs_wkt: spatial_ref.to_wkt().unwrap_or_default(),
    })
}

/// The date at the start of an ISO 8601 (`2024-06-14T10:00Z`) or TIFF (`2024:06:14 10:00:00`)
/// time stamp, as YYYY-MM-DD.
pub(crate) fn iso_date(text: &str) -> Option<String> {
    let text = text.trim();
    let date = text.get(..10)?;
    let parts: Vec<&str> = date.split(['-', ':']).collect();
    let [y, m, d] = parts.as_slice() else {
        return None;
    };
    let (y, m, d): (u32, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    ((1900..=2200).contains(&y) && (1..=12).contains(&m) && (1..=31).contains(&d))
        .then(|| format!("{y:04}-{m:02}-{d:02}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates() {
        use super::iso_date;
        assert_eq!(
            iso_date("2024-06-14T10:23:45.000Z").as_deref(),
            Some("2024-06-14")
        );
        assert_eq!(
            iso_date(" 2024:06:14 10:23:45").as_deref(),
            Some("2024-06-14")
        );
        assert_eq!(iso_date("14-06-2024"), None);
        assert_eq!(iso_date("2024-13-01"), None);
        assert_eq!(iso_date("soon"), None);
    }
}
