//! Domain types shared by the pipeline's crates.
//!
//! Library crates (`ingest`, `model`, `report`, `synth`) never depend on each other: they meet
//! through these plain types. Nothing here links GDAL, libtorch or polars.

#![cfg_attr(test, allow(clippy::unwrap_used))] // tests: a failed unwrap is a failed test

mod classes;
mod error;
mod observation;
mod pixels;
mod plants;
mod prediction;
mod preprocess;
mod raster;
mod samples;
mod spectral_axis;

pub use classes::{ClassInfo, ClassSet};
pub use error::Error;
pub use observation::PlantObservation;
pub use pixels::{scored_pixels, PixelCalls, PlantPixels};
pub use plants::{AttributeType, AttributeValue, BoundingBox, Plant, PlantSet};
pub use prediction::{entropy_nats, Prediction, PredictionTable, ValuePrediction};
pub use preprocess::{Preprocessing, Preprocessor, SavitzkyGolay, WATER_BANDS_NM};
pub use raster::{GeoReference, Interleave, LabelRaster, RasterCube};
pub use samples::{SampleUnit, SpectralSamples};
pub use spectral_axis::{Resampler, SpectralAxis};
