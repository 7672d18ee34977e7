use std::path::PathBuf;

/// Errors of the report writers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {message}")]
    Io {
        path: PathBuf,
        message: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: building the table failed: {source}")]
    Table {
        path: PathBuf,
        #[source]
        source: polars::error::PolarsError,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
