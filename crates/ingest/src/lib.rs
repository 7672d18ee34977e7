//! Ingest: hyperspectral cubes in, plants and their spectra out.
//!
//! Cubes open through GDAL from an ENVI header, an ENVI data file or a GeoTIFF; ENVI headers are
//! parsed here (GDAL 3.6 drops long header lines). Pixels are read in blocks of lines, never the
//! whole cube: only per-pixel keys (mask, region ids) are held for the whole scene.

#![cfg_attr(test, allow(clippy::unwrap_used))] // tests: a failed unwrap is a failed test

mod accumulate;
mod calibration;
mod components;
mod cube;
mod describe;
mod envi_header;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod labels;
mod locate;
mod mapped;
mod morphology;
mod parallel;
mod pixel_scan;
mod plants;
mod polygons;
mod raster_io;
mod raw_envi;
mod scan;
mod write;

pub use calibration::{parse_wavelengths, read_wavelength_file, Calibration};
pub use components::{label_components, Components};
pub use cube::{Cube, CubeFormat, EnviReader, ReadConfig};
pub use describe::CubeDescription;
pub use envi_header::EnviHeader;
pub use error::{Error, Result};
pub use labels::{
    labelled_samples, pixel_spectra, read_label_raster, read_severity_raster, severity_samples,
};
pub use locate::{locate, RasterFiles};
pub use morphology::{open_mask, otsu_threshold};
pub use parallel::{scan_threads, set_scan_threads};
pub use plants::{
    find_plants, index_raster, region_spectra, resolve_threshold, stream_pixel_spectra,
    vegetation_mask, AutoThreshold, PlantConfig, RegionIds, Threshold, VegetationIndex,
};
pub use polygons::{plants_from_id_raster, plants_from_polygons};
pub use write::{
    write_class_map, write_envi_cube, write_envi_labels, write_float_map, write_geotiff_cube,
    write_geotiff_labels,
};
