//! Label rasters (ENVI classification or GeoTIFF) and the labelled samples they pick from a cube.

use std::path::Path;

use domain::{ClassInfo, ClassSet, LabelRaster, SampleUnit, SpectralSamples};

use crate::components::label_components;
use crate::cube::Cube;
use crate::envi_header::EnviHeader;
use crate::error::{Error, Result};
use crate::locate::locate;
use crate::plants::{region_spectra, RegionIds};

/// Open a raster that must have exactly one band (`what`: label, severity).
fn open_single_band(data: &Path, what: &str) -> Result<gdal::Dataset> {
    let dataset = gdal::Dataset::open(data).map_err(|e| Error::gdal_open(data, "a raster", e))?;
    if dataset.raster_count() != 1 {
        return Err(Error::invalid(
            data,
            format!(
                "a {what} raster has one band, this one has {}",
                dataset.raster_count()
            ),
        ));
    }
    Ok(dataset)
}

/// Read a single-band label raster. Class names come from the ENVI `class names` field when
/// present, otherwise from GDAL category names, otherwise `class_<code>`.
pub fn read_label_raster(path: &Path) -> Result<LabelRaster> {
    let files = locate(path)?;
    let header = files.header.as_deref().map(EnviHeader::read).transpose()?;
    let dataset = open_single_band(&files.data, "label")?;
    let (samples, lines) = dataset.raster_size();
    let band = dataset
        .rasterband(1)
        .map_err(|e| Error::gdal(&files.data, "open band 1", e))?;
    let codes = read_whole_numbers(&band, &files.data, "label")?;
    let classes = match header
        .as_ref()
        .map(EnviHeader::classes)
        .transpose()?
        .flatten()
    {
        Some(classes) => classes,
        None => {
            let mut present: Vec<u32> = codes.iter().copied().filter(|&c| c != 0).collect();
            present.sort_unstable();
            present.dedup();
            let categories = category_names(&band);
            let classes = present
                .into_iter()
                .map(|code| ClassInfo {
                    code,
                    name: categories
                        .get(code as usize)
                        .filter(|n| !n.is_empty())
                        .cloned()
                        .unwrap_or_else(|| format!("class_{code}")),
                })
                .collect();
            ClassSet::new(classes).map_err(|source| Error::Domain {
                path: files.data.clone(),
                source,
            })?
        }
    };
    if let Some(&code) = codes
        .iter()
        .find(|&&c| c != 0 && classes.index_of_code(c).is_none())
    {
        return Err(Error::invalid(
            &files.data,
            format!(
                "label code {code} is not among the classes ({})",
                classes.names().join(", ")
            ),
        ));
    }
    Ok(LabelRaster {
        lines,
        samples,
        codes,
        classes,
        georeference: None,
    })
}

fn category_names(band: &gdal::raster::RasterBand<'_>) -> Vec<String> {
    // SAFETY: GDALGetRasterCategoryNames returns a NULL-terminated list of C strings owned by the
    // band, valid while the band lives and unchanged during this copy.
    unsafe {
        let list = gdal_sys::GDALGetRasterCategoryNames(band.c_rasterband());
        let mut names = Vec::new();
        if list.is_null() {
            return names;
        }
        let mut i = 0;
        while !(*list.add(i)).is_null() {
            names.push(
                std::ffi::CStr::from_ptr(*list.add(i))
                    .to_string_lossy()
                    .into_owned(),
            );
            i += 1;
        }
        names
    }
}

/// Labelled samples of `cube`: one per connected region of one label (`Plant`, the region's mean
/// spectrum) or one per labelled pixel (`Pixel`). `label_path` names the label file in errors.
pub fn labelled_samples(
    cube: &Cube,
    labels: &LabelRaster,
    label_path: &Path,
    unit: SampleUnit,
) -> Result<SpectralSamples> {
    if (labels.lines, labels.samples) != (cube.lines(), cube.samples()) {
        return Err(Error::invalid(
            label_path,
            format!(
                "label raster is {} lines x {} samples, the cube {} is {} x {}",
                labels.lines,
                labels.samples,
                cube.data_path().display(),
                cube.lines(),
                cube.samples()
            ),
        ));
    }
    let components = label_components(&labels.codes, labels.lines, labels.samples);
    let bands = cube.bands();
    let (spectra, label_codes, groups) = match unit {
        SampleUnit::Plant => {
            let regions = region_spectra(cube, &components, RegionIds::Labels)?;
            let mut spectra = Vec::with_capacity(regions.len() * bands);
            let mut codes = Vec::with_capacity(regions.len());
            let mut groups = Vec::with_capacity(regions.len());
            for region in regions {
                spectra.extend_from_slice(&region.mean_reflectance);
                codes.push(
                    region
                        .label_code
                        .expect("regions of labels carry their code"),
                );
                groups.push(region.plant_id);
            }
            (spectra, codes, groups)
        }
        SampleUnit::Pixel => {
            let samples = cube.samples();
            let labelled = labels.codes.iter().filter(|&&c| c != 0).count();
            let mut spectra = Vec::with_capacity(labelled * bands);
            let mut codes = Vec::with_capacity(labelled);
            let mut groups = Vec::with_capacity(labelled);
            let mut buffer = Vec::new();
            for (first, count) in cube.blocks() {
                let block_codes = &labels.codes[first * samples..(first + count) * samples];
                if block_codes.iter().all(|&c| c == 0) {
                    continue;
                }
                cube.read_block(first, count, &mut buffer)?;
                let plane = count * samples;
                for (offset, &code) in block_codes.iter().enumerate() {
                    if code == 0 {
                        continue;
                    }
                    spectra.extend((0..bands).map(|b| buffer[b * plane + offset]));
                    codes.push(code);
                    groups.push(components.region_of_pixel[first * samples + offset]);
                }
            }
            (spectra, codes, groups)
        }
    };
    if label_codes.is_empty() {
        return Err(Error::invalid(
            label_path,
            "no labelled pixels (all codes are 0)",
        ));
    }
    Ok(SpectralSamples {
        axis: cube.axis().clone(),
        classes: labels.classes.clone(),
        spectra,
        label_codes,
        groups,
        values: None,
    })
}

/// Read a single-band severity raster: the share (0-1) of symptomatic tissue of each pixel or of
/// its plant. No-data, NaN and negative pixels are unlabelled (NaN in the result); a value above 1
/// is an error naming the pixel.
pub fn read_severity_raster(path: &Path) -> Result<(usize, usize, Vec<f64>)> {
    let files = locate(path)?;
    let dataset = open_single_band(&files.data, "severity")?;
    let (samples, lines) = dataset.raster_size();
    let band = dataset
        .rasterband(1)
        .map_err(|e| Error::gdal(&files.data, "open band 1", e))?;
    let no_data = band.no_data_value();
    let read = band
        .read_as::<f64>((0, 0), (samples, lines), (samples, lines), None)
        .map_err(|e| Error::gdal(&files.data, "read the severities", e))?;
    let mut values = Vec::with_capacity(lines * samples);
    for (i, &v) in read.data().iter().enumerate() {
        if v.is_nan() || v < 0.0 || no_data == Some(v) {
            values.push(f64::NAN);
        } else if v > 1.0 {
            return Err(Error::invalid(
                &files.data,
                format!(
                    "pixel (line {}, sample {}) has severity {v}; severities are shares of tissue, 0-1",
                    i / samples,
                    i % samples
                ),
            ));
        } else {
            values.push(v);
        }
    }
    Ok((lines, samples, values))
}

/// Samples of `cube` with a severity (`values`, row-major, NaN = unlabelled; `lines` x `samples`
/// as the cube): every labelled pixel, or one mean spectrum per connected region of labelled
/// pixels with its mean severity. The samples' one class is named `severity`; groups are the
/// regions. `path` names the severity raster in errors.
pub fn severity_samples(
    cube: &Cube,
    (lines, samples, values): (usize, usize, &[f64]),
    path: &Path,
    unit: SampleUnit,
) -> Result<SpectralSamples> {
    let classes = ClassSet::new(vec![ClassInfo {
        code: 1,
        name: "severity".into(),
    }])
    .map_err(|source| Error::Domain {
        path: path.into(),
        source,
    })?;
    let labels = LabelRaster {
        lines,
        samples,
        codes: values.iter().map(|v| u32::from(!v.is_nan())).collect(),
        classes,
        georeference: None,
    };
    let mut found = labelled_samples(cube, &labels, path, unit)?;
    let targets = match unit {
        // labelled_samples takes pixels in row-major order.
        SampleUnit::Pixel => values.iter().copied().filter(|v| !v.is_nan()).collect(),
        SampleUnit::Plant => {
            // Groups are the regions' ids (1..), as in the components of the label raster.
            let components = label_components(&labels.codes, lines, samples);
            let mut sums = vec![(0.0f64, 0usize); components.region_count + 1];
            for (&region, &v) in components.region_of_pixel.iter().zip(values) {
                if region != 0 {
                    sums[region as usize].0 += v;
                    sums[region as usize].1 += 1;
                }
            }
            found
                .groups
                .iter()
                .map(|&g| sums[g as usize].0 / sums[g as usize].1.max(1) as f64)
                .collect()
        }
    };
    found.values = Some(targets);
    Ok(found)
}

/// Spectra of the pixels for which `keep(pixel index)` holds (row-major index), every `stride`-th
/// such pixel so that at most `max_pixels` are returned; row-major `n x bands`.
pub fn pixel_spectra(
    cube: &Cube,
    keep: impl Fn(usize) -> bool,
    max_pixels: usize,
) -> Result<Vec<f32>> {
    let samples = cube.samples();
    let total = (0..cube.lines() * samples).filter(|&i| keep(i)).count();
    let stride = total.div_ceil(max_pixels.max(1)).max(1);
    let bands = cube.bands();
    let mut spectra = Vec::with_capacity(total.min(max_pixels) * bands);
    let mut seen = 0usize;
    let mut buffer = Vec::new();
    for (first, count) in cube.blocks() {
        let plane = count * samples;
        let mut loaded = false;
        for offset in 0..plane {
            if !keep(first * samples + offset) {
                continue;
            }
            seen += 1;
            if !(seen - 1).is_multiple_of(stride) {
                continue;
            }
            if !loaded {
                cube.read_block(first, count, &mut buffer)?;
                loaded = true;
            }
            spectra.extend((0..bands).map(|b| buffer[b * plane + offset]));
        }
    }
    Ok(spectra)
}

/// Band values as whole numbers >= 0 (labels, plant ids); anything else is an error naming the pixel.
pub(crate) fn read_whole_numbers(
    band: &gdal::raster::RasterBand<'_>,
    path: &Path,
    what: &str,
) -> Result<Vec<u32>> {
    let (samples, lines) = band.size();
    let values = band
        .read_as::<f64>((0, 0), (samples, lines), (samples, lines), None)
        .map_err(|e| Error::gdal(path, &format!("read the {what}s"), e))?;
    let mut codes = Vec::with_capacity(lines * samples);
    for (i, &v) in values.data().iter().enumerate() {
        if v < 0.0 || v.fract() != 0.0 || v > u32::MAX as f64 {
            return Err(Error::invalid(
                path,
                format!(
                    "pixel (line {}, sample {}) has {what} {v}; {what}s are whole numbers >= 0",
                    i / samples,
                    i % samples
                ),
            ));
        }
        codes.push(v as u32);
    }
    Ok(codes)
}
