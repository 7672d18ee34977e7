//! Report writers: per-plant predictions and other tables as Parquet (polars), sweep figures as
//! SVG and PNG (plotters). polars and plotters stay inside this crate.

#![cfg_attr(test, allow(clippy::unwrap_used))] // tests: a failed unwrap is a failed test

mod error;
mod plot;
mod predictions;
mod spectra_table;
mod table;

pub use error::{Error, Result};
pub use plot::{write_png_rgb, write_sweep_plots, SweepPoint};
pub use predictions::{probability_column, write_predictions, PREDICTIONS_SCHEMA_VERSION};
pub use spectra_table::{read_spectral_table, SpectralTable};
pub use table::{write_table, Table, Values};
