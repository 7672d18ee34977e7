use std::path::PathBuf;

/// Errors of training, prediction and model files.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("device '{0}': expected auto, cpu, cuda or cuda:N")]
    DeviceSyntax(String),
    #[error("device '{requested}' requested but {reason}")]
    DeviceUnavailable { requested: String, reason: String },
    #[error("{path}: {message}")]
    Io {
        path: PathBuf,
        message: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a model file: {message}")]
    Format { path: PathBuf, message: String },
    #[error("invalid training data: {0}")]
    Data(String),
    #[error("invalid input: {0}")]
    Input(String),
    #[error("invalid setting: {0}")]
    Config(String),
    /// A libtorch call failed (training, or prediction on a CUDA device); its message.
    #[error("libtorch failed while {doing}: {message}")]
    Torch { doing: String, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
