//! Vegetation mask, plants as connected components, and per-region spectra, streaming the cube in
//! blocks of lines.

use domain::{BoundingBox, Plant, PlantSet};

use crate::accumulate::{exact_moments, ndvi_fixed, MAX_EXACT_REGION, NDVI_UNIT};
use crate::components::{label_components, Components};
use crate::cube::Cube;
use crate::error::{Error, Result};
use crate::morphology::{open_mask, otsu_threshold};
use crate::parallel::{in_parts, in_parts_of};
use crate::pixel_scan::PixelScan;
use crate::scan::RegionScan;

/// The spectral index that separates vegetation from soil.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VegetationIndex {
    /// (NIR - red) / (NIR + red), bands nearest `nir_nm` and `red_nm`.
    Ndvi,
    /// Normalised difference red edge, (NIR - red edge) / (NIR + red edge), bands nearest
    /// `nir_nm` and `red_edge_nm`: saturates later than NDVI over dense canopies.
    Ndre,
}

impl VegetationIndex {
    pub fn as_str(self) -> &'static str {
        match self {
            VegetationIndex::Ndvi => "ndvi",
            VegetationIndex::Ndre => "ndre",
        }
    }

    /// Lowest threshold Otsu may pick: bare soil sits below it (NDVI ~0.1-0.2, NDRE ~0-0.1), so a
    /// scene without vegetation never turns its soil into plants.
    pub fn otsu_floor(self) -> f64 {
        match self {
            VegetationIndex::Ndvi => 0.3,
            VegetationIndex::Ndre => 0.15,
        }
    }
}

/// How the vegetation threshold is chosen.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Threshold {
    /// A fixed index value: pixels at or above it are vegetation.
    Fixed(f64),
    /// Chosen from the scene's index histogram.
    Auto(AutoThreshold),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AutoThreshold {
    /// Otsu's method on a 512-bin histogram of the index over [-1, 1], never below the index's
    /// soil floor ([`VegetationIndex::otsu_floor`]).
    Otsu,
}

impl std::str::FromStr for Threshold {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_lowercase().as_str() {
            "otsu" => Ok(Threshold::Auto(AutoThreshold::Otsu)),
            other => match other.parse::<f64>() {
                Ok(v) if (-1.0..=1.0).contains(&v) => Ok(Threshold::Fixed(v)),
                _ => Err(format!(
                    "'{s}' is neither 'otsu' nor an index value in [-1, 1]"
                )),
            },
        }
    }
}

/// How vegetation and plants are found.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct PlantConfig {
    pub index: VegetationIndex,
    pub threshold: Threshold,
    /// Red band: the band nearest this wavelength.
    pub red_nm: f64,
    /// Red-edge band (NDRE): the band nearest this wavelength.
    pub red_edge_nm: f64,
    /// Near-infrared band: the band nearest this wavelength.
    pub nir_nm: f64,
    /// Radius in pixels of the square opening applied to the mask (0: none).
    pub opening_radius_px: usize,
    /// Connected vegetation regions smaller than this are noise, not plants.
    pub min_plant_area_px: u64,
    /// Regions larger than this are not single plants (closed canopy, weeds strips); none when absent.
    pub max_plant_area_px: Option<u64>,
    /// Furthest a band centre may sit from `red_nm`, `red_edge_nm` or `nir_nm`.
    pub max_band_distance_nm: f64,
}

impl Default for PlantConfig {
    /// NDVI (bands nearest 670 and 800 nm, within 30 nm), Otsu threshold, opening of radius 1,
    /// plants of at least 10 pixels.
    fn default() -> Self {
        Self {
            index: VegetationIndex::Ndvi,
            threshold: Threshold::Auto(AutoThreshold::Otsu),
            red_nm: 670.0,
            red_edge_nm: 720.0,
            nir_nm: 800.0,
            opening_radius_px: 1,
            min_plant_area_px: 10,
            max_plant_area_px: None,
            max_band_distance_nm: 30.0,
        }
    }
}

/// The band nearest `target_nm`, or an error naming the cube when none lies within reach.
pub(crate) fn band_near(
    cube: &Cube,
    target_nm: f64,
    what: &str,
    max_distance_nm: f64,
) -> Result<usize> {
    let band = cube.axis().nearest_band(target_nm);
    let found = cube.axis().wavelength_nm()[band];
    if (found - target_nm).abs() > max_distance_nm {
        let (lo, hi) = cube.axis().range_nm();
        return Err(Error::invalid(
            cube.data_path(),
            format!(
                "no {what} band near {target_nm} nm (nearest is {found:.1} nm; the cube covers {lo:.1}-{hi:.1} nm)"
            ),
        ));
    }
    Ok(band)
}

/// The vegetation index of every pixel of the scene (NaN where undefined: no data, or a zero sum),
/// reading only the index's two bands.
pub fn index_raster(cube: &Cube, config: &PlantConfig) -> Result<Vec<f32>> {
    let low = match config.index {
        VegetationIndex::Ndvi => {
            band_near(cube, config.red_nm, "red", config.max_band_distance_nm)?
        }
        VegetationIndex::Ndre => band_near(
            cube,
            config.red_edge_nm,
            "red-edge",
            config.max_band_distance_nm,
        )?,
    };
    let nir = band_near(
        cube,
        config.nir_nm,
        "near-infrared",
        config.max_band_distance_nm,
    )?;
    let samples = cube.samples();
    let mut index = vec![f32::NAN; cube.lines() * samples];
    let ignore = cube.ignore_reflectance();
    // BIP: the two bands are in every pixel, so the map's parallel pass is the fastest read.
    // BIL and BSQ: positioned reads of just the two bands' lines are (0.022 vs 0.051 s on a 2 GiB
    // BIL cube: mapping pages costs more than copying these few bytes).
    let bip = cube.interleave() == Some(domain::Interleave::Bip);
    if let Some(raw) = cube.scan_reader().filter(|_| bip) {
        let (gain, offset) = cube.gain_offset();
        let bands = (cube.file_band(low), cube.file_band(nir));
        if raw.scan_index(
            cube.block_lines(),
            bands,
            (gain as f32, offset as f32),
            ignore,
            &mut index,
        ) {
            return Ok(index);
        }
    }
    let mut buffer = Vec::new();
    for (first, count) in cube.blocks() {
        cube.read_block_of_bands(first, count, Some(&[low, nir]), &mut buffer)?;
        let plane = count * samples;
        let (low_values, nir_values) = buffer.split_at(plane);
        let out = &mut index[first * samples..(first + count) * samples];
        for ((v, &r), &n) in out.iter_mut().zip(low_values).zip(nir_values) {
            let no_data = ignore.is_some_and(|i| r == i || n == i);
            let sum = n + r;
            if !no_data && sum > 0.0 {
                *v = (n - r) / sum;
            }
        }
    }
    Ok(index)
}

/// The threshold in index units: the fixed value, or Otsu's (raised to the soil floor).
pub fn resolve_threshold(index: &[f32], config: &PlantConfig) -> f64 {
    match config.threshold {
        Threshold::Fixed(t) => t,
        Threshold::Auto(AutoThreshold::Otsu) => {
            let floor = config.index.otsu_floor();
            match otsu_threshold(index, -1.0, 1.0, 512) {
                Some(t) if f64::from(t) >= floor => f64::from(t),
                found => {
                    tracing::warn!(
                        index = config.index.as_str(),
                        otsu = ?found,
                        floor,
                        "Otsu's threshold is below the soil floor (little or no vegetation?): using the floor"
                    );
                    floor
                }
            }
        }
    }
}

/// The vegetation mask (1 = vegetation) after thresholding and opening, with the threshold used.
pub fn vegetation_mask(cube: &Cube, config: &PlantConfig) -> Result<(Vec<u32>, f64)> {
    let index = index_raster(cube, config)?;
    Ok(mask_of_index(&index, cube, config))
}

/// [`vegetation_mask`] of an index raster.
fn mask_of_index(index: &[f32], cube: &Cube, config: &PlantConfig) -> (Vec<u32>, f64) {
    let threshold = resolve_threshold(index, config);
    let t = threshold as f32;
    let mut mask = vec![0u32; index.len()];
    in_parts(&mut mask, 1, |first, part| {
        for (m, &v) in part.iter_mut().zip(&index[first..]) {
            *m = u32::from(v >= t);
        }
    });
    open_mask(
        &mut mask,
        cube.lines(),
        cube.samples(),
        config.opening_radius_px,
    );
    (mask, threshold)
}

/// Plants: 8-connected vegetation regions within the area limits, with their spectra.
pub fn find_plants(cube: &Cube, config: &PlantConfig) -> Result<PlantSet> {
    let _span = tracing::info_span!("plants", cube = %cube.data_path().display()).entered();
    let mut since = std::time::Instant::now();
    let mut lap = || {
        let seconds = since.elapsed().as_secs_f64();
        since = std::time::Instant::now();
        format!("{seconds:.3}s")
    };
    let index = index_raster(cube, config)?;
    let index_s = lap();
    let (mask, threshold) = mask_of_index(&index, cube, config);
    drop(index);
    let vegetation_pixels: u64 = in_parts_of(&mask, 1, |_, part| {
        part.iter().filter(|&&m| m != 0).count() as u64
    })
    .into_iter()
    .sum();
    let mask_s = lap();
    let components = label_components(&mask, cube.lines(), cube.samples()).filter_by_area(
        config.min_plant_area_px,
        config.max_plant_area_px.unwrap_or(u64::MAX),
    );
    drop(mask);
    let components_s = lap();
    let plants = region_spectra(cube, &components, RegionIds::Sequential)?;
    let spectra_s = lap();
    tracing::info!(
        plants = plants.len(),
        vegetation_pixels,
        index = config.index.as_str(),
        threshold,
        "plants found"
    );
    tracing::debug!(
        index_s,
        mask_s,
        components_s,
        spectra_s,
        "plant stage timings"
    );
    Ok(PlantSet {
        axis: cube.axis().clone(),
        plants,
        attributes: Vec::new(),
        vegetation_pixels,
        total_pixels: (cube.lines() * cube.samples()) as u64,
        pixel_plants: components.region_of_pixel,
        lines: cube.lines(),
        samples: cube.samples(),
    })
}

/// What a region's key means for the plant made from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionIds {
    /// Plants are numbered 1.. in region order; keys are not kept.
    Sequential,
    /// Keys are class codes: plants numbered 1.., each with `label_code` = key.
    Labels,
    /// Keys are plant ids (a plant-id raster, polygons): `plant_id` = key.
    Keys,
}

/// Per-region statistics, however they were gathered.
struct RegionStats {
    /// Mean reflectance and its standard deviation, band b of region r at r * bands + b.
    mean: Vec<f32>,
    std: Vec<f32>,
    row_sums: Vec<u64>,
    col_sums: Vec<u64>,
    /// In units of [`NDVI_UNIT`].
    ndvi_sums: Vec<i128>,
    ndvi_counts: Vec<u64>,
    boxes: Vec<BoundingBox>,
}

/// Mean and standard deviation spectrum, mean NDVI, centroid (pixel and map) and bounding box of
/// every region, in one pass over the cube: in parallel over units of lines from the mapped
/// file for ENVI cubes read directly (exact integer sums for integer data of up to 16 bits), else
/// streaming blocks of reflectance.
pub fn region_spectra(cube: &Cube, components: &Components, ids: RegionIds) -> Result<Vec<Plant>> {
    let n = components.region_count;
    let ndvi_bands = band_near(cube, 670.0, "red", 30.0)
        .and_then(|red| Ok((red, band_near(cube, 800.0, "near-infrared", 30.0)?)))
        .ok();
    // The exact sums take regions of up to MAX_EXACT_REGION pixels (any real plant or plot).
    let small_regions = components.sizes.iter().all(|&s| s < MAX_EXACT_REGION);
    let scanned = cube
        .scan_reader()
        .filter(|_| small_regions)
        .and_then(|raw| {
            let bands: Vec<usize> = (0..cube.bands()).map(|b| cube.file_band(b)).collect();
            let (gain, offset) = cube.gain_offset();
            let moments = raw.scan_regions(
                cube.block_lines(),
                &RegionScan {
                    region_of_pixel: &components.region_of_pixel,
                    regions: n,
                    sizes: &components.sizes,
                    bands: &bands,
                    ndvi: ndvi_bands.map(|(r, n)| (cube.file_band(r), cube.file_band(n))),
                    reflectance: (gain, offset),
                    ignore: cube.ignore_reflectance(),
                },
            )?;
            Some(RegionStats {
                mean: moments.mean,
                std: moments.std,
                row_sums: moments.row_sums,
                col_sums: moments.col_sums,
                ndvi_sums: moments.ndvi_sums,
                ndvi_counts: moments.ndvi_counts,
                boxes: moments.boxes,
            })
        });
    let stats = match scanned {
        Some(stats) => stats,
        None => streamed_stats(cube, components, ndvi_bands)?,
    };
    let bands = cube.bands();
    let georeference = cube.georeference();
    Ok((0..n)
        .map(|r| {
            let count = components.sizes[r] as f64;
            let range = r * bands..(r + 1) * bands;
            let (centroid_row, centroid_col) = (
                stats.row_sums[r] as f64 / count,
                stats.col_sums[r] as f64 / count,
            );
            let map = georeference.map(|g| g.map_xy(centroid_row + 0.5, centroid_col + 0.5));
            let key = components.keys[r];
            Plant {
                plant_id: match ids {
                    RegionIds::Keys => key,
                    RegionIds::Sequential | RegionIds::Labels => r as u32 + 1,
                },
                pixel_count: components.sizes[r],
                centroid_row,
                centroid_col,
                centroid_x: map.map(|m| m.0),
                centroid_y: map.map(|m| m.1),
                bbox: stats.boxes[r],
                mean_reflectance: stats.mean[range.clone()].to_vec(),
                std_reflectance: stats.std[range].to_vec(),
                mean_ndvi: (stats.ndvi_counts[r] > 0)
                    .then(|| stats.ndvi_sums[r] as f64 / NDVI_UNIT / stats.ndvi_counts[r] as f64),
                label_code: (ids == RegionIds::Labels).then_some(key),
                attributes: Vec::new(),
            }
        })
        .collect())
}

/// [`region_spectra`]'s statistics from blocks read one after the other (GDAL readers,
/// calibrated cubes, files that cannot be mapped). Uncalibrated cubes are summed in stored values,
/// exactly for integers of up to 16 bits, as the mapped scan does: the same bits from either.
fn streamed_stats(
    cube: &Cube,
    components: &Components,
    ndvi_bands: Option<(usize, usize)>,
) -> Result<RegionStats> {
    let (samples, bands) = (cube.samples(), cube.bands());
    let n = components.region_count;
    let ignore = cube.ignore_reflectance();
    let stored = !cube.is_calibrated();
    let exact = stored && cube.small_integer_data();
    let (gain, bias) = if stored {
        cube.gain_offset()
    } else {
        (1.0, 0.0)
    };
    let mut exact_totals = vec![(0i128, 0u128); if exact { n * bands } else { 0 }];
    let mut float_totals = vec![(0f64, 0f64); if exact { 0 } else { n * bands }];
    let mut stats = RegionStats {
        mean: Vec::with_capacity(n * bands),
        std: Vec::with_capacity(n * bands),
        row_sums: vec![0; n],
        col_sums: vec![0; n],
        ndvi_sums: vec![0; n],
        ndvi_counts: vec![0; n],
        boxes: vec![
            BoundingBox {
                row_min: u32::MAX,
                row_max: 0,
                col_min: u32::MAX,
                col_max: 0,
            };
            n
        ],
    };
    let mut buffer = Vec::new();
    // (first offset, length, region) of runs of one region in the block.
    let mut runs: Vec<(u32, u32, u32)> = Vec::new();
    for (first, count) in cube.blocks() {
        let regions = &components.region_of_pixel[first * samples..(first + count) * samples];
        if regions.iter().all(|&r| r == 0) {
            continue;
        }
        if stored {
            cube.read_block_stored(first, count, &mut buffer)?;
        } else {
            cube.read_block(first, count, &mut buffer)?;
        }
        let plane = count * samples;
        runs.clear();
        for (offset, &region) in regions.iter().enumerate() {
            if region == 0 {
                continue;
            }
            let r = region as usize - 1;
            match runs.last_mut() {
                Some(run)
                    if run.2 == r as u32
                        && (run.0 + run.1) as usize == offset
                        && offset % samples != 0 =>
                {
                    run.1 += 1;
                }
                _ => runs.push((offset as u32, 1, r as u32)),
            }
            let (row, col) = ((first + offset / samples) as u32, (offset % samples) as u32);
            stats.row_sums[r] += u64::from(row);
            stats.col_sums[r] += u64::from(col);
            let b = &mut stats.boxes[r];
            b.row_min = b.row_min.min(row);
            b.row_max = b.row_max.max(row);
            b.col_min = b.col_min.min(col);
            b.col_max = b.col_max.max(col);
            if let Some((red, nir)) = ndvi_bands {
                // Reflectance in f32, as the mapped scan computes it.
                let reflectance = |v: f32| v * gain as f32 + bias as f32;
                let (red, nir) = (
                    reflectance(buffer[red * plane + offset]),
                    reflectance(buffer[nir * plane + offset]),
                );
                let no_data = ignore.is_some_and(|i| red == i || nir == i);
                if !no_data && red + nir > 0.0 {
                    stats.ndvi_sums[r] += i128::from(ndvi_fixed(red, nir));
                    stats.ndvi_counts[r] += 1;
                }
            }
        }
        // Band by band: each plane is read in order, a run's sum kept in registers.
        for band in 0..bands {
            let values = &buffer[band * plane..(band + 1) * plane];
            for &(start, len, r) in &runs {
                let run = &values[start as usize..(start + len) as usize];
                let at = r as usize * bands + band;
                if exact {
                    let (mut s, mut q) = (0i64, 0u64);
                    for &v in run {
                        let v = v as i64;
                        s += v;
                        q += v.unsigned_abs() * v.unsigned_abs();
                    }
                    exact_totals[at].0 += i128::from(s);
                    exact_totals[at].1 += u128::from(q);
                } else {
                    let (mut s, mut q) = (0f64, 0f64);
                    for &v in run {
                        let v = f64::from(v);
                        s += v;
                        q += v * v;
                    }
                    float_totals[at].0 += s;
                    float_totals[at].1 += q;
                }
            }
        }
    }
    for r in 0..n {
        let count = components.sizes[r];
        for at in r * bands..(r + 1) * bands {
            let (mean, variance) = if exact {
                exact_moments(exact_totals[at].0, exact_totals[at].1, count)
            } else {
                let (s, q) = float_totals[at];
                let mean = s / count as f64;
                (mean, (q / count as f64 - mean * mean).max(0.0))
            };
            stats.mean.push((mean * gain + bias) as f32);
            stats.std.push((variance.sqrt() * gain.abs()) as f32);
        }
    }
    Ok(stats)
}

/// Stream the spectra of the pixels where `select` (scene raster, row-major) is non-zero, block
/// by block in scan order: `each(pixel indices, spectra)` gets the block's selected pixels
/// (row-major scene indices, ascending) and their spectra, pixel-major in the cube's band order.
/// Pixels with a no-data or non-finite value in any band are left out. ENVI files read directly
/// are read in parallel while `each` works on the previous block. Memory: a few blocks.
pub fn stream_pixel_spectra<E: From<Error>>(
    cube: &Cube,
    select: &[u32],
    mut each: impl FnMut(&[usize], &[f32]) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let (samples, bands) = (cube.samples(), cube.bands());
    if select.len() != cube.lines() * samples {
        return Err(Error::invalid(
            cube.data_path(),
            format!(
                "a pixel selection of {} pixels for a {} x {samples} scene",
                select.len(),
                cube.lines()
            ),
        )
        .into());
    }
    let ignore = cube.ignore_reflectance();
    if let Some(raw) = cube.scan_reader() {
        let bands: Vec<usize> = (0..bands).map(|b| cube.file_band(b)).collect();
        let (gain, offset) = cube.gain_offset();
        let mut failed = None;
        let scanned = raw.scan_pixels(
            cube.block_lines(),
            &PixelScan {
                select,
                bands: &bands,
                scale: (gain as f32, offset as f32),
                ignore,
            },
            &mut |indices, spectra| match each(indices, spectra) {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            },
        );
        if scanned {
            return failed.map_or(Ok(()), Err);
        }
    }
    let pixel_major = cube.reads_pixel_major();
    let (mut buffer, mut indices, mut spectra) = (Vec::new(), Vec::new(), Vec::new());
    for (first, count) in cube.blocks() {
        let keys = &select[first * samples..(first + count) * samples];
        if keys.iter().all(|&k| k == 0) {
            continue;
        }
        if pixel_major {
            cube.read_block_pixel_major(first, count, &mut buffer)?;
        } else {
            cube.read_block(first, count, &mut buffer)?;
        }
        let plane = count * samples;
        indices.clear();
        spectra.clear();
        for (offset, _) in keys.iter().enumerate().filter(|(_, &k)| k != 0) {
            let start = spectra.len();
            if pixel_major {
                spectra.extend_from_slice(&buffer[offset * bands..(offset + 1) * bands]);
            } else {
                spectra.extend((0..bands).map(|b| buffer[b * plane + offset]));
            }
            let valid = spectra[start..]
                .iter()
                .all(|&v| v.is_finite() && ignore.is_none_or(|i| v != i));
            if valid {
                indices.push(first * samples + offset);
            } else {
                spectra.truncate(start);
            }
        }
        if !indices.is_empty() {
            each(&indices, &spectra)?;
        }
    }
    Ok(())
}
