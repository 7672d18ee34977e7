use serde::{Deserialize, Serialize};

use crate::{ClassSet, SpectralAxis};

/// How band, line and sample are ordered in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interleave {
    /// Band sequential: all lines of band 1, then band 2, ...
    Bsq,
    /// Band interleaved by line: line 1 of every band, then line 2, ...
    Bil,
    /// Band interleaved by pixel: every band of pixel 1, then pixel 2, ...
    Bip,
}

impl Interleave {
    pub fn as_str(self) -> &'static str {
        match self {
            Interleave::Bsq => "bsq",
            Interleave::Bil => "bil",
            Interleave::Bip => "bip",
        }
    }
}

/// A north-up affine georeference: map x = origin_x + col * pixel_width, y = origin_y - row * pixel_height.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeoReference {
    pub origin_x: f64,
    pub origin_y: f64,
    pub pixel_width: f64,
    pub pixel_height: f64,
    /// EPSG code of the CRS, when it has one.
    pub epsg: Option<u32>,
    /// The CRS as WKT (empty when unknown).
    pub crs_wkt: String,
}

impl GeoReference {
    /// Map coordinates of a (fractional) pixel position; (0, 0) is the top-left corner.
    pub fn map_xy(&self, row: f64, col: f64) -> (f64, f64) {
        (
            self.origin_x + col * self.pixel_width,
            self.origin_y - row * self.pixel_height,
        )
    }
}

/// An in-memory integer cube, band sequential: value of (band b, line l, sample s) at
/// `(b * lines + l) * samples + s`. Reflectance = value / `reflectance_scale_factor`.
#[derive(Debug, Clone, PartialEq)]
pub struct RasterCube {
    pub lines: usize,
    pub samples: usize,
    pub axis: SpectralAxis,
    pub values_bsq: Vec<u16>,
    pub reflectance_scale_factor: f64,
    pub georeference: Option<GeoReference>,
    pub description: String,
}

impl RasterCube {
    pub fn bands(&self) -> usize {
        self.axis.len()
    }
}

/// A single-band classification raster: 0 = unlabelled, other codes name classes.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelRaster {
    pub lines: usize,
    pub samples: usize,
    pub codes: Vec<u32>,
    pub classes: ClassSet,
    pub georeference: Option<GeoReference>,
}
