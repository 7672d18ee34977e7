use std::path::PathBuf;

/// Everything that can go wrong while reading a cube, a label raster or their headers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {message}")]
    Io {
        path: PathBuf,
        message: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: file not found")]
    NotFound { path: PathBuf },
    #[error("{path}: {message}")]
    Locate { path: PathBuf, message: String },
    #[error("{path}: line {line}: {message}")]
    HeaderSyntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: field '{field}': {message}")]
    HeaderField {
        path: PathBuf,
        field: String,
        message: String,
    },
    #[error("{path}: gdal could not {action}: {source}")]
    Gdal {
        path: PathBuf,
        action: String,
        #[source]
        source: gdal::errors::GdalError,
    },
    #[error("{path}: not {what} GDAL can read (GDAL: {message})")]
    Unreadable {
        path: PathBuf,
        what: String,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Domain {
        path: PathBuf,
        #[source]
        source: domain::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        message: impl Into<String>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            path: path.into(),
            message: message.into(),
            source,
        }
    }

    pub(crate) fn field(path: impl Into<PathBuf>, field: &str, message: impl Into<String>) -> Self {
        Error::HeaderField {
            path: path.into(),
            field: field.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn invalid(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }

    /// GDAL could not open `path` at all: say so in words, with GDAL's own message, instead of
    /// "returned a NULL pointer". `what` is "a raster", "a vector file", ...
    pub(crate) fn gdal_open(
        path: impl Into<PathBuf>,
        what: &str,
        source: gdal::errors::GdalError,
    ) -> Self {
        let message = match source {
            gdal::errors::GdalError::NullPointer { msg, .. } if !msg.trim().is_empty() => {
                msg.trim().to_string()
            }
            gdal::errors::GdalError::NullPointer { .. } => "no message".to_string(),
            other => other.to_string(),
        };
        Error::Unreadable {
            path: path.into(),
            what: what.to_string(),
            message,
        }
    }

    pub(crate) fn gdal(
        path: impl Into<PathBuf>,
        action: &str,
        source: gdal::errors::GdalError,
    ) -> Self {
        Error::Gdal {
            path: path.into(),
            action: action.to_string(),
            source,
        }
    }
}
