//! libtorch's errors as the model crate's (`Error::Torch`), with what was being done.

use model::{Error, Result};

pub(crate) trait TorchContext<T> {
    fn doing(self, doing: &str) -> Result<T>;
}

impl<T> TorchContext<T> for std::result::Result<T, tch::TchError> {
    fn doing(self, doing: &str) -> Result<T> {
        self.map_err(|source| Error::Torch {
            doing: doing.to_string(),
            message: source.to_string(),
        })
    }
}
