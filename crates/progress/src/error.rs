/// Why a campaign cannot give a progress curve.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("date '{0}' is not a calendar date YYYY-MM-DD")]
    Date(String),
    #[error("{0}")]
    Campaign(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
