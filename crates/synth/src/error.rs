/// Errors of scene generation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("spectral library: {0}")]
    Library(String),
    #[error("field spec: {0}")]
    Spec(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
