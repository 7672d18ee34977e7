//! Plants from a vector file of plant or plot polygons (GeoJSON, Shapefile, GeoPackage: anything
//! OGR reads), or from a plant-id raster.

use std::path::Path;

use domain::{AttributeType, AttributeValue, PlantSet};
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::vector::{Geometry, LayerAccess, OGRFieldType};
use gdal::DriverManager;

use crate::components::Components;
use crate::cube::Cube;
use crate::error::{Error, Result};
use crate::labels::read_whole_numbers;
use crate::locate::locate;
use crate::plants::{region_spectra, vegetation_mask, PlantConfig, RegionIds};

/// Plants from polygons: each polygon's vegetation pixels (pixel centres inside it, vegetation by
/// `config`'s mask) make one plant, `plant_id` = the polygon's 1-based position in the layer, its
/// attributes carried along. Polygons are reprojected into the cube's CRS when theirs differs.
pub fn plants_from_polygons(cube: &Cube, config: &PlantConfig, path: &Path) -> Result<PlantSet> {
    let _span = tracing::info_span!("polygons", file = %path.display()).entered();
    if !path.exists() {
        return Err(Error::NotFound { path: path.into() });
    }
    let vector =
        gdal::Dataset::open(path).map_err(|e| Error::gdal_open(path, "a vector file", e))?;
    if vector.layer_count() == 0 {
        return Err(Error::invalid(path, "no vector layer in the file"));
    }
    let mut layer = vector
        .layer(0)
        .map_err(|e| Error::gdal(path, "open the first layer", e))?;
    let fields: Vec<(String, AttributeType)> = layer
        .defn()
        .fields()
        .map(|f| {
            let kind = match f.field_type() {
                OGRFieldType::OFTInteger | OGRFieldType::OFTInteger64 => AttributeType::Integer,
                OGRFieldType::OFTReal => AttributeType::Real,
                _ => AttributeType::Text,
            };
            (f.name(), kind)
        })
        .collect();
    let Some(dataset) = cube.dataset() else {
        return Err(Error::invalid(
            cube.data_path(),
            "GDAL cannot open this cube, so its georeference is unknown: polygons cannot be placed on it",
        ));
    };
    let transform = dataset.geo_transform().map_err(|_| {
        Error::invalid(
            cube.data_path(),
            "the cube has no georeference: polygons cannot be placed on it",
        )
    })?;
    let mut cube_srs = dataset.spatial_ref().map_err(|_| {
        Error::invalid(
            cube.data_path(),
            "the cube has no coordinate system: polygons cannot be placed on it",
        )
    })?;
    cube_srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let reprojection = match layer.spatial_ref() {
        Some(mut layer_srs) => {
            layer_srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
            if same_crs(&layer_srs, &cube_srs) {
                None
            } else {
                Some(CoordTransform::new(&layer_srs, &cube_srs).map_err(|e| {
                    Error::gdal(path, "reproject the polygons into the cube's CRS", e)
                })?)
            }
        }
        None => {
            tracing::warn!(file = %path.display(), "polygons have no CRS: taken to be in the cube's");
            None
        }
    };
    let mut geometries = Vec::new();
    let mut attributes = Vec::new();
    for (index, feature) in layer.features().enumerate() {
        let Some(geometry) = feature.geometry() else {
            return Err(Error::invalid(
                path,
                format!("feature {} has no geometry", index + 1),
            ));
        };
        let mut geometry: Geometry = geometry.clone();
        if let Some(t) = &reprojection {
            geometry
                .transform_inplace(t)
                .map_err(|e| Error::gdal(path, &format!("reproject feature {}", index + 1), e))?;
        }
        let values = fields
            .iter()
            .enumerate()
            .map(|(f, (_, kind))| {
                let value = match kind {
                    AttributeType::Integer => feature
                        .field_as_integer64(f)
                        .ok()
                        .flatten()
                        .map(AttributeValue::Integer),
                    AttributeType::Real => feature
                        .field_as_double(f)
                        .ok()
                        .flatten()
                        .map(AttributeValue::Real),
                    AttributeType::Text => feature
                        .field_as_string(f)
                        .ok()
                        .flatten()
                        .map(AttributeValue::Text),
                };
                value.unwrap_or(AttributeValue::Null)
            })
            .collect::<Vec<_>>();
        geometries.push(geometry);
        attributes.push(values);
    }
    if geometries.is_empty() {
        return Err(Error::invalid(path, "the layer has no polygons"));
    }
    // Which polygons touch the cube at all.
    let (lines, samples) = (cube.lines(), cube.samples());
    let corners = [
        (0.0, 0.0),
        (samples as f64, 0.0),
        (0.0, lines as f64),
        (samples as f64, lines as f64),
    ]
    .map(|(c, r)| {
        (
            transform[0] + c * transform[1] + r * transform[2],
            transform[3] + c * transform[4] + r * transform[5],
        )
    });
    let (cube_min_x, cube_max_x) = min_max(corners.iter().map(|c| c.0));
    let (cube_min_y, cube_max_y) = min_max(corners.iter().map(|c| c.1));
    let outside: Vec<usize> = geometries
        .iter()
        .enumerate()
        .filter(|(_, g)| {
            let e = g.envelope();
            e.MaxX < cube_min_x || e.MinX > cube_max_x || e.MaxY < cube_min_y || e.MinY > cube_max_y
        })
        .map(|(i, _)| i + 1)
        .collect();
    if outside.len() == geometries.len() {
        return Err(Error::invalid(
            path,
            format!(
                "none of the {} polygons overlaps the cube {} (x {cube_min_x:.3}..{cube_max_x:.3}, y {cube_min_y:.3}..{cube_max_y:.3} in its CRS)",
                geometries.len(),
                cube.data_path().display()
            ),
        ));
    }
    if !outside.is_empty() {
        tracing::warn!(count = outside.len(), features = ?outside, "polygons outside the cube are skipped");
    }
    // Burn polygon numbers (1-based; a later polygon wins where they overlap) into a scene raster.
    let mut raster = DriverManager::get_driver_by_name("MEM")
        .and_then(|d| d.create_with_band_type::<u32, _>("", samples, lines, 1))
        .map_err(|e| Error::gdal(path, "create the polygon raster", e))?;
    raster
        .set_geo_transform(&transform)
        .and_then(|()| raster.set_spatial_ref(&cube_srs))
        .map_err(|e| Error::gdal(path, "georeference the polygon raster", e))?;
    let burn: Vec<f64> = (1..=geometries.len()).map(|i| i as f64).collect();
    gdal::raster::rasterize(&mut raster, &[1], &geometries, &burn, None)
        .map_err(|e| Error::gdal(path, "rasterize the polygons", e))?;
    let band = raster
        .rasterband(1)
        .map_err(|e| Error::gdal(path, "read the polygon raster", e))?;
    let mut keys = read_whole_numbers(&band, path, "polygon number")?;
    let (mask, threshold) = vegetation_mask(cube, config)?;
    for (key, &m) in keys.iter_mut().zip(&mask) {
        if m == 0 {
            *key = 0;
        }
    }
    let vegetation_pixels = keys.iter().filter(|&&k| k != 0).count() as u64;
    let components = components_of_keys(&keys, geometries.len());
    let empty = geometries.len() - outside.len() - components.region_count;
    if empty > 0 {
        tracing::warn!(
            count = empty,
            "polygons over the cube without vegetation pixels make no plant"
        );
    }
    let mut plants = region_spectra(cube, &components, RegionIds::Keys)?;
    for plant in &mut plants {
        plant.attributes = attributes[plant.plant_id as usize - 1].clone();
    }
    tracing::info!(
        plants = plants.len(),
        polygons = geometries.len(),
        threshold,
        "plants from polygons"
    );
    Ok(PlantSet {
        axis: cube.axis().clone(),
        plants,
        attributes: fields,
        vegetation_pixels,
        total_pixels: (lines * samples) as u64,
        pixel_plants: components.region_of_pixel,
        lines,
        samples,
    })
}

/// Plants from a plant-id raster of the cube's size: every pixel with id k > 0 belongs to plant k
/// (connected or not; no vegetation mask is applied).
pub fn plants_from_id_raster(cube: &Cube, path: &Path) -> Result<PlantSet> {
    let files = locate(path)?;
    let dataset = gdal::Dataset::open(&files.data)
        .map_err(|e| Error::gdal_open(&files.data, "a raster", e))?;
    if dataset.raster_count() != 1 {
        return Err(Error::invalid(
            &files.data,
            format!(
                "a plant-id raster has one band, this one has {}",
                dataset.raster_count()
            ),
        ));
    }
    let (samples, lines) = dataset.raster_size();
    if (lines, samples) != (cube.lines(), cube.samples()) {
        return Err(Error::invalid(
            &files.data,
            format!(
                "plant-id raster is {lines} x {samples}, the cube {} is {} x {}",
                cube.data_path().display(),
                cube.lines(),
                cube.samples()
            ),
        ));
    }
    let band = dataset
        .rasterband(1)
        .map_err(|e| Error::gdal(&files.data, "open band 1", e))?;
    let ids = read_whole_numbers(&band, &files.data, "plant id")?;
    let max = ids.iter().copied().max().unwrap_or(0) as usize;
    let components = components_of_keys(&ids, max);
    if components.region_count == 0 {
        return Err(Error::invalid(
            &files.data,
            "no plant ids (every pixel is 0)",
        ));
    }
    let plants = region_spectra(cube, &components, RegionIds::Keys)?;
    Ok(PlantSet {
        axis: cube.axis().clone(),
        vegetation_pixels: components.sizes.iter().sum(),
        plants,
        attributes: Vec::new(),
        total_pixels: (lines * samples) as u64,
        pixel_plants: components.region_of_pixel,
        lines,
        samples,
    })
}

/// Regions = pixels sharing a key in 1..=max_key (not necessarily connected), in key order; keys
/// without pixels are dropped.
fn components_of_keys(keys: &[u32], max_key: usize) -> Components {
    let mut sizes = vec![0u64; max_key];
    for &k in keys {
        if k != 0 {
            sizes[k as usize - 1] += 1;
        }
    }
    Components {
        region_of_pixel: keys.to_vec(),
        region_count: max_key,
        sizes,
        keys: (1..=max_key as u32).collect(),
    }
    .filter_by_area(1, u64::MAX)
}

/// OGR's own comparison (OSRIsSame): same CRS even when the WKT is spelled differently.
fn same_crs(a: &SpatialRef, b: &SpatialRef) -> bool {
    a == b
}

fn min_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}
