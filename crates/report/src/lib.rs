//! Report writers: per-plant predictions as Parquet (polars). polars stays inside this crate.

mod error;
mod predictions;

pub use error::{Error, Result};
pub use predictions::{probability_column, write_predictions, PREDICTIONS_SCHEMA_VERSION};
