use serde::{Deserialize, Serialize};

use crate::SpectralAxis;

/// Inclusive pixel bounds of a plant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundingBox {
    pub row_min: u32,
    pub row_max: u32,
    pub col_min: u32,
    pub col_max: u32,
}

/// One plant found in a cube: a connected region of vegetation (or of one label), with its mean
/// reflectance spectrum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plant {
    /// 1-based, in order of first pixel in the scan (row-major).
    pub plant_id: u32,
    pub pixel_count: u64,
    /// Mean pixel row and column (pixel centres at integer + 0.5 are not used: row 0 is the first line).
    pub centroid_row: f64,
    pub centroid_col: f64,
    /// Map coordinates of the centroid (pixel centres) in the cube's CRS, when it is georeferenced.
    pub centroid_x: Option<f64>,
    pub centroid_y: Option<f64>,
    pub bbox: BoundingBox,
    /// Mean reflectance per band, in the cube's band order.
    pub mean_reflectance: Vec<f32>,
    /// Population standard deviation (ddof = 0) of the plant's pixels per band.
    pub std_reflectance: Vec<f32>,
    /// Mean of the pixels' NDVI (bands nearest 670 and 800 nm), when the cube covers both.
    pub mean_ndvi: Option<f64>,
    /// The label code of the region, when the plants came from a label raster.
    pub label_code: Option<u32>,
    /// Values of [`PlantSet::attributes`], in that order (plants from polygons).
    pub attributes: Vec<AttributeValue>,
}

/// A polygon attribute carried to a plant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AttributeValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
}

/// The type of an attribute column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttributeType {
    Integer,
    Real,
    Text,
}

/// All plants of one cube and the spectral axis their spectra are on.
#[derive(Debug, Clone, PartialEq)]
pub struct PlantSet {
    pub axis: SpectralAxis,
    pub plants: Vec<Plant>,
    /// Names and types of the attribute columns every plant carries (empty unless from polygons).
    pub attributes: Vec<(String, AttributeType)>,
    /// Pixels in the vegetation mask (or labelled), including those of regions too small to count.
    pub vegetation_pixels: u64,
    pub total_pixels: u64,
    /// Scene raster (lines x samples, row-major): 1-based index into `plants` of each pixel's
    /// plant, 0 for none. Maps and quicklooks draw plants from it.
    pub pixel_plants: Vec<u32>,
    pub lines: usize,
    pub samples: usize,
}
