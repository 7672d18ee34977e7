//! Vegetation mask, plants as connected components, and per-region mean spectra, streaming the
//! cube in blocks of lines.

use domain::{BoundingBox, Plant, PlantSet};

use crate::components::{label_components, Components};
use crate::cube::Cube;
use crate::error::{Error, Result};

/// How vegetation and plants are found.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct PlantConfig {
    /// Pixels with NDVI at or above this are vegetation.
    pub ndvi_threshold: f64,
    /// Red band: the band nearest this wavelength.
    pub red_nm: f64,
    /// Near-infrared band: the band nearest this wavelength.
    pub nir_nm: f64,
    /// Connected vegetation regions smaller than this are noise, not plants.
    pub min_plant_area_px: u64,
    /// Furthest a red or NIR band centre may sit from `red_nm` / `nir_nm`.
    pub max_band_distance_nm: f64,
}

impl Default for PlantConfig {
    /// NDVI >= 0.5 (soil sits near 0.1, canopies at 0.7-0.9), bands nearest 670 and 800 nm within
    /// 30 nm, plants of at least 10 pixels.
    fn default() -> Self {
        Self {
            ndvi_threshold: 0.5,
            red_nm: 670.0,
            nir_nm: 800.0,
            min_plant_area_px: 10,
            max_band_distance_nm: 30.0,
        }
    }
}

/// The band nearest `target_nm`, or an error naming the cube when none lies within reach.
fn band_near(cube: &Cube, target_nm: f64, what: &str, max_distance_nm: f64) -> Result<usize> {
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

/// NDVI vegetation mask of the whole scene, one value per pixel (1 = vegetation), reading only the
/// red and NIR bands. Pixels whose red or NIR value is the cube's no-data value are never vegetation.
pub fn vegetation_mask(cube: &Cube, config: &PlantConfig) -> Result<Vec<u32>> {
    let red = band_near(cube, config.red_nm, "red", config.max_band_distance_nm)?;
    let nir = band_near(
        cube,
        config.nir_nm,
        "near-infrared",
        config.max_band_distance_nm,
    )?;
    let samples = cube.samples();
    let mut mask = vec![0u32; cube.lines() * samples];
    let mut buffer = Vec::new();
    let threshold = config.ndvi_threshold as f32;
    for (first, count) in cube.blocks() {
        cube.read_block_of_bands(first, count, Some(&[red, nir]), &mut buffer)?;
        let plane = count * samples;
        let (red_values, nir_values) = buffer.split_at(plane);
        let out = &mut mask[first * samples..(first + count) * samples];
        let ignore = cube.ignore_reflectance();
        for ((m, &r), &n) in out.iter_mut().zip(red_values).zip(nir_values) {
            let no_data = ignore.is_some_and(|v| r == v || n == v);
            let sum = n + r;
            if !no_data && sum > 0.0 && (n - r) / sum >= threshold {
                *m = 1;
            }
        }
    }
    Ok(mask)
}

/// Plants: 8-connected vegetation regions of at least `min_plant_area_px`, with mean spectra.
pub fn find_plants(cube: &Cube, config: &PlantConfig) -> Result<PlantSet> {
    let _span = tracing::info_span!("plants", cube = %cube.data_path().display()).entered();
    let mask = vegetation_mask(cube, config)?;
    let vegetation_pixels = mask.iter().filter(|&&m| m != 0).count() as u64;
    let components = label_components(&mask, cube.lines(), cube.samples())
        .filter_by_area(config.min_plant_area_px, u64::MAX);
    let plants = region_spectra(cube, &components, false)?;
    tracing::info!(plants = plants.len(), vegetation_pixels, "plants found");
    Ok(PlantSet {
        axis: cube.axis().clone(),
        plants,
        vegetation_pixels,
        total_pixels: (cube.lines() * cube.samples()) as u64,
    })
}

/// Mean spectrum, centroid and bounding box of every region, in one streaming pass over the cube.
/// With `keys_are_labels`, each plant carries its region's key as `label_code`.
pub fn region_spectra(
    cube: &Cube,
    components: &Components,
    keys_are_labels: bool,
) -> Result<Vec<Plant>> {
    let (samples, bands) = (cube.samples(), cube.bands());
    let n = components.region_count;
    let mut sums = vec![0f64; n * bands];
    let mut row_sums = vec![0f64; n];
    let mut col_sums = vec![0f64; n];
    let mut boxes = vec![
        BoundingBox {
            row_min: u32::MAX,
            row_max: 0,
            col_min: u32::MAX,
            col_max: 0,
        };
        n
    ];
    let mut buffer = Vec::new();
    for (first, count) in cube.blocks() {
        let regions = &components.region_of_pixel[first * samples..(first + count) * samples];
        if regions.iter().all(|&r| r == 0) {
            continue;
        }
        cube.read_block(first, count, &mut buffer)?;
        let plane = count * samples;
        for (offset, &region) in regions.iter().enumerate() {
            if region == 0 {
                continue;
            }
            let r = region as usize - 1;
            let (row, col) = ((first + offset / samples) as u32, (offset % samples) as u32);
            row_sums[r] += row as f64;
            col_sums[r] += col as f64;
            let b = &mut boxes[r];
            b.row_min = b.row_min.min(row);
            b.row_max = b.row_max.max(row);
            b.col_min = b.col_min.min(col);
            b.col_max = b.col_max.max(col);
            let sum = &mut sums[r * bands..(r + 1) * bands];
            for (band, s) in sum.iter_mut().enumerate() {
                *s += buffer[band * plane + offset] as f64;
            }
        }
    }
    Ok((0..n)
        .map(|r| {
            let count = components.sizes[r];
            let mean = sums[r * bands..(r + 1) * bands]
                .iter()
                .map(|s| (s / count as f64) as f32)
                .collect();
            Plant {
                plant_id: r as u32 + 1,
                pixel_count: count,
                centroid_row: row_sums[r] / count as f64,
                centroid_col: col_sums[r] / count as f64,
                bbox: boxes[r],
                mean_reflectance: mean,
                label_code: keys_are_labels.then_some(components.keys[r]),
            }
        })
        .collect())
}
